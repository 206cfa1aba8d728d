// Compliance: request an erasure (with a confirmation step), the erasures of the game with the
// selected one's timeline (refreshed every second until it completes), its signed receipt
// (downloaded, and verified by the platform: only it holds the signing key), the right-of-
// access export, and the audit trail with filters.
// API: POST/GET /v1/privacy/erasures, GET /v1/privacy/erasures/{id},
// POST /v1/privacy/receipts/verify, GET /v1/privacy/exports/{game}/{player},
// GET /v1/privacy/audit (?game_id&limit).
// Page parameters: erasure (the erasure shown), status (list filter), action (audit filter).
// data-testid: erasure-form, erasure-player, erasure-reason, erasure-review, erasure-confirm-panel,
// erasure-confirm, erasure-cancel, erasure-result, erasures-status, erasures-table (+ -csv),
// erasure-show-<id>, erasure-detail, erasure-state, timeline, timeline-step-<step>,
// receipt-download, receipt-verified, receipt-file, receipt-file-result, export-form,
// export-player, export-download, export-result, audit-action, audit-limit, audit-table (+ -csv).

import { h, panel, table, empty, saveFile, fmt } from '../ui.js';

const TIMELINE_POLL_MS = 1000;
const AUDIT_ACTIONS = ['erasure_requested', 'erasure_completed', 'export', 'retention_run'];

/** Why a request failed, for the page. */
const reasonOf = (e) => e.reason || e.message || String(e);

function field(label, input) {
  return h('label', { class: 'field' }, h('span', {}, label), input);
}

export const page = {
  route: 'compliance',
  title: 'Compliance',
  needs: 'privacy',
  range: false,
  async render(view, ctx) {
    const game = ctx.game;
    const detail = h('div', { 'data-testid': 'erasure-detail-slot' });
    const list = h('div');
    view.append(
      panel(`Request an erasure (${game})`, 'erasure-panel', erasureForm(ctx, game)),
      panel('Erasures', 'erasures-panel', listFilters(ctx), list),
      detail,
      panel(`Right of access (${game})`, 'export-panel', exportForm(ctx, game)),
      panel('Verify a receipt file', 'receipt-file-panel', receiptFile(ctx)),
      panel('Audit trail', 'audit-panel', await auditTrail(ctx, game)),
    );
    const shown = ctx.param('erasure');
    if (shown) showErasure(ctx, shown, detail);
    await ctx.live(async () => {
      const status = ctx.param('status');
      const query = new URLSearchParams({ game_id: game, limit: '100' });
      if (status) query.set('status', status);
      const r = await ctx.api(`/v1/privacy/erasures?${query}`, { signal: ctx.signal });
      list.replaceChildren(table([
        { key: 'requested_at', label: 'Requested', format: fmt.time, text: true },
        { key: 'status', label: 'Status', text: true, format: (s) => h('span', { class: s === 'completed' ? 'badge' : 'badge warn' }, s) },
        { key: 'reason', label: 'Reason', text: true },
        { key: 'requested_by', label: 'Requested by', text: true },
        { key: 'completed_at', label: 'Completed', format: fmt.time, text: true },
        {
          key: 'erasure_id', label: 'Erasure', text: true,
          format: (id) => h('button', {
            type: 'button', 'data-testid': `erasure-show-${id}`, 'aria-label': `Show erasure ${id}`,
            onclick: () => ctx.setParams({ erasure: id }),
          }, id.slice(0, 8)),
        },
      ], r.erasures.map((e) => ({ ...e, completed_at: e.completed_at ?? null })), {
        testid: 'erasures-table', caption: `Erasures of ${game}, the latest first`, filename: `${game}-erasures`,
      }));
    });
  },
};

function erasureForm(ctx, game) {
  const player = h('input', { id: 'erasure-player', 'data-testid': 'erasure-player', required: true, autocomplete: 'off', maxlength: 256 });
  const reason = h('input', { id: 'erasure-reason', 'data-testid': 'erasure-reason', required: true, maxlength: 200, placeholder: 'e.g. ticket 4711' });
  const confirmSlot = h('div', { 'aria-live': 'polite' });
  const result = h('div', { 'data-testid': 'erasure-result', 'aria-live': 'polite' });
  const form = h('form', {
    class: 'form-row', 'data-testid': 'erasure-form',
    onsubmit: (ev) => {
      ev.preventDefault();
      result.replaceChildren();
      const who = player.value.trim();
      const why = reason.value.trim();
      if (!who || !why) return;
      // The confirmation step: an erasure cannot be undone.
      const confirm = h('button', {
        type: 'button', class: 'danger', 'data-testid': 'erasure-confirm',
        onclick: async () => {
          confirm.disabled = true;
          try {
            const erasure = await ctx.api('/v1/privacy/erasures', { method: 'POST', json: { game_id: game, player_id: who, reason: why } });
            confirmSlot.replaceChildren();
            ctx.announce(`Erasure ${erasure.erasure_id} ${erasure.status}`);
            ctx.setParams({ erasure: erasure.erasure_id });
          } catch (e) {
            confirm.disabled = false;
            result.replaceChildren(h('p', { class: 'error', role: 'alert' }, reasonOf(e)));
          }
        },
      }, `Erase ${who}`);
      const cancel = h('button', { type: 'button', 'data-testid': 'erasure-cancel', onclick: () => { confirmSlot.replaceChildren(); player.focus(); } }, 'Cancel');
      confirmSlot.replaceChildren(h('div', { class: 'confirm', role: 'alertdialog', 'aria-labelledby': 'erasure-confirm-text', 'data-testid': 'erasure-confirm-panel' },
        h('p', { id: 'erasure-confirm-text' },
          `Erase player “${who}” of ${game}? Their data key is destroyed at once: their personal data becomes unreadable everywhere, `
          + 'their rows leave every read model, and their events are refused for the suppression period. This cannot be undone.'),
        h('div', { class: 'actions' }, confirm, cancel)));
      confirm.focus();
    },
  },
  field('Player id', player),
  field('Reason (no personal data)', reason),
  h('button', { type: 'submit', 'data-testid': 'erasure-review' }, 'Review erasure…'));
  return h('div', {}, form, confirmSlot, result);
}

function listFilters(ctx) {
  const status = h('select', {
    id: 'erasures-status', 'data-testid': 'erasures-status',
    onchange: () => ctx.setParams({ status: status.value }),
  }, [['', 'Any'], ['pending', 'Pending'], ['completed', 'Completed']].map(([value, label]) =>
    h('option', { value, selected: (ctx.param('status') || '') === value }, label)));
  return h('div', { class: 'form-row' }, field('Status', status));
}

/** The erasure `id`: its timeline, refreshed every second until completed, then its receipt. */
function showErasure(ctx, id, slot) {
  const state = h('p', { 'data-testid': 'erasure-state', role: 'status' }, 'Loading…');
  const timeline = h('ol', { class: 'timeline', 'data-testid': 'timeline' });
  const receipt = h('div', { 'data-testid': 'receipt' });
  slot.replaceChildren(panel(`Erasure ${id}`, 'erasure-detail', state, timeline, receipt));
  let last = '';
  const poll = async () => {
    if (ctx.signal.aborted) return;
    let erasure;
    try {
      erasure = await ctx.api(`/v1/privacy/erasures/${encodeURIComponent(id)}`, { signal: ctx.signal });
    } catch (e) {
      if (ctx.signal.aborted) return;
      state.replaceChildren(h('span', { class: 'error', role: 'alert' }, reasonOf(e)));
      setTimeout(poll, TIMELINE_POLL_MS * 3);
      return;
    }
    const steps = erasure.timeline.map((s) => `${s.step}@${s.at}`).join();
    if (steps !== last) {
      last = steps;
      timeline.replaceChildren(...erasure.timeline.map((s) => h('li', { 'data-testid': `timeline-step-${s.step}` },
        h('span', { class: 'step' }, s.step.replace(/_/g, ' ')), ' ', h('time', { datetime: s.at }, fmt.time(s.at)),
        s.detail ? h('span', { class: 'muted' }, ` — ${s.detail}`) : null)));
    }
    state.replaceChildren(`Game ${erasure.game_id} · requested ${fmt.time(erasure.requested_at)} by ${erasure.requested_by} · `,
      h('span', { class: erasure.status === 'completed' ? 'badge' : 'badge warn', 'data-testid': 'erasure-status' }, erasure.status));
    if (erasure.status === 'completed' && erasure.receipt) {
      ctx.announce(`Erasure ${id} completed`);
      showReceipt(ctx, erasure.receipt, receipt);
      return;
    }
    setTimeout(poll, TIMELINE_POLL_MS);
  };
  poll();
}

/** Asks the platform whether `receipt` is as it signed it. */
async function verify(ctx, receipt) {
  return ctx.api('/v1/privacy/receipts/verify', { method: 'POST', json: receipt });
}

function verdict(result, testid) {
  return result.valid
    ? h('p', { class: 'ok', 'data-testid': testid, 'data-valid': 'true' }, '✔ Verified: signed by this platform, unaltered.')
    : h('p', { class: 'error', 'data-testid': testid, 'data-valid': 'false', role: 'alert' }, `✘ Not valid: ${result.reason}`);
}

async function showReceipt(ctx, receipt, slot) {
  const download = h('button', {
    type: 'button', 'data-testid': 'receipt-download',
    onclick: () => saveFile(`erasure-receipt-${receipt.erasure_id}.json`, `${JSON.stringify(receipt, null, 2)}\n`, 'application/json'),
  }, 'Download signed receipt');
  const stores = table([
    { key: 'store', label: 'Store', text: true },
    { key: 'removed', label: 'What was removed', text: true },
  ], receipt.stores, { testid: 'receipt-stores', caption: 'What the erasure removed, store by store', filename: `erasure-receipt-${receipt.erasure_id}-stores` });
  slot.replaceChildren(h('h3', {}, 'Receipt'), h('p', { class: 'muted' }, `Signature (HMAC-SHA256): ${receipt.signature}`), stores, download);
  try {
    slot.append(verdict(await verify(ctx, receipt), 'receipt-verified'));
  } catch (e) {
    slot.append(h('p', { class: 'error', role: 'alert' }, `Verification failed: ${reasonOf(e)}`));
  }
}

function receiptFile(ctx) {
  const result = h('div', { 'data-testid': 'receipt-file-result', 'aria-live': 'polite' });
  const input = h('input', {
    type: 'file', id: 'receipt-file', accept: 'application/json,.json', 'data-testid': 'receipt-file',
    onchange: async () => {
      const file = input.files[0];
      if (!file) return;
      try {
        const receipt = JSON.parse(await file.text());
        result.replaceChildren(verdict(await verify(ctx, receipt), 'receipt-file-verdict'));
      } catch (e) {
        result.replaceChildren(h('p', { class: 'error', role: 'alert', 'data-testid': 'receipt-file-verdict', 'data-valid': 'false' }, `Not a receipt: ${reasonOf(e)}`));
      }
    },
  });
  return h('div', {}, h('p', {}, 'A downloaded receipt is checked by the platform, which alone holds the key that signed it.'),
    field('Receipt (JSON)', input), result);
}

function exportForm(ctx, game) {
  const player = h('input', { id: 'export-player', 'data-testid': 'export-player', required: true, autocomplete: 'off', maxlength: 256 });
  const result = h('div', { 'data-testid': 'export-result', 'aria-live': 'polite' });
  const form = h('form', {
    class: 'form-row', 'data-testid': 'export-form',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const who = player.value.trim();
      if (!who) return;
      result.replaceChildren('Exporting…');
      try {
        const data = await ctx.api(`/v1/privacy/exports/${encodeURIComponent(game)}/${encodeURIComponent(who)}`);
        saveFile(`export-${game}-${who.replace(/[^A-Za-z0-9_.-]/g, '_')}.json`, `${JSON.stringify(data, null, 2)}\n`, 'application/json');
        result.replaceChildren(h('p', { class: 'ok' }, `Downloaded: ${data.personal.length} personal record(s), status ${data.status}.`));
      } catch (e) {
        result.replaceChildren(h('p', { class: 'error', role: 'alert' }, reasonOf(e)));
      }
    },
  }, field('Player id', player), h('button', { type: 'submit', 'data-testid': 'export-download' }, 'Download export (JSON)'));
  return h('div', {}, h('p', {}, 'Everything held about a player, personal values decrypted while their key exists. The export is itself recorded in the audit trail.'), form, result);
}

async function auditTrail(ctx, game) {
  const action = h('select', {
    id: 'audit-action', 'data-testid': 'audit-action',
    onchange: () => ctx.setParams({ action: action.value }),
  }, [['', 'Any action'], ...AUDIT_ACTIONS.map((a) => [a, a.replace(/_/g, ' ')])].map(([value, label]) =>
    h('option', { value, selected: (ctx.param('action') || '') === value }, label)));
  const scope = h('select', {
    id: 'audit-scope', 'data-testid': 'audit-scope',
    onchange: () => ctx.setParams({ audit_game: scope.value }),
  }, [[game, `This game (${game})`], ['*', 'Every game of this token']].map(([value, label]) =>
    h('option', { value, selected: (ctx.param('audit_game') || game) === value }, label)));
  const body = h('div');
  const load = async () => {
    const query = new URLSearchParams({ limit: '500' });
    if ((ctx.param('audit_game') || game) !== '*') query.set('game_id', game);
    const r = await ctx.api(`/v1/privacy/audit?${query}`, { signal: ctx.signal });
    const wanted = ctx.param('action');
    const rows = r.entries.filter((e) => !wanted || e.action === wanted);
    body.replaceChildren(rows.length ? table([
      { key: 'at', label: 'When', format: fmt.time, text: true },
      { key: 'action', label: 'Action', text: true },
      { key: 'actor', label: 'Who', text: true },
      { key: 'game_id', label: 'Game', text: true },
      { key: 'erasure_id', label: 'Erasure', text: true },
      { key: 'subject', label: 'Subject (hash)', text: true, format: (s) => (s ? `${s.slice(0, 12)}…` : '–') },
      { key: 'detail', label: 'Detail', text: true },
    ], rows, { testid: 'audit-table', caption: 'Audit trail, the newest first (players appear only as hashes)', filename: 'privacy-audit' })
      : h('div', { 'data-testid': 'audit-table' }, empty('No audit entries for these filters.')));
  };
  await load().catch((e) => body.replaceChildren(h('p', { class: 'error', role: 'alert' }, reasonOf(e))));
  return h('div', {}, h('div', { class: 'form-row' }, field('Action', action), field('Games', scope)), body);
}
