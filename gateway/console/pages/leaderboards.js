// Leaderboards: a board's ranking for a period (daily, weekly, all time; the period containing
// the "day" chosen) and a player's standing with their neighbours. Board, period, day, page and
// player are URL parameters (board, period, at, offset, player), so a view can be shared.
// API: GET /v1/leaderboards/{game}/{board}?period&at&offset&limit and
//      /v1/leaderboards/{game}/{board}/players/{player}?period&at&neighbours.
// data-testid: board-form, board, at, board-submit, period-daily / period-weekly /
// period-all_time (aria-pressed), leaderboard-table (+ -csv), page-prev, page-next,
// standing-form, standing-player, standing-submit, standing-summary, standing-table (+ -csv).

import { h, slots, lookupForm, table, fmt } from '../ui.js';

const PERIODS = [['daily', 'Daily'], ['weekly', 'Weekly'], ['all_time', 'All time']];
const LIMIT = 50;

export const page = {
  route: 'leaderboards',
  title: 'Leaderboards',
  needs: 'query',
  range: false,
  async render(view, ctx) {
    const board = ctx.param('board') || localStorage.getItem('gamemetrics.board') || '';
    const period = PERIODS.some(([p]) => p === ctx.param('period')) ? ctx.param('period') : 'daily';
    const at = /^\d{4}-\d{2}-\d{2}$/.test(ctx.param('at') || '') ? ctx.param('at') : new Date().toISOString().slice(0, 10);
    const offset = Math.max(0, Number(ctx.param('offset')) || 0);
    const player = ctx.param('player') || '';

    const boardInput = h('input', { id: 'board', name: 'board', value: board, required: true, placeholder: 'e.g. arena', 'data-testid': 'board', autocomplete: 'off' });
    const atInput = h('input', { id: 'at', name: 'at', type: 'date', value: at, 'data-testid': 'at' });
    const form = h('form', { class: 'toolbar', 'data-testid': 'board-form', 'aria-label': 'Board and period' },
      h('label', { for: 'board' }, 'Board', boardInput),
      h('label', { for: 'at' }, 'Day in the period', atInput),
      h('button', { type: 'submit', 'data-testid': 'board-submit' }, 'Show'),
      h('span', { role: 'group', 'aria-label': 'Period', class: 'presets' }, PERIODS.map(([p, label]) =>
        h('button', {
          type: 'button', 'aria-pressed': p === period ? 'true' : 'false', 'data-testid': `period-${p}`,
          onclick: () => ctx.setParams({ period: p, offset: null }),
        }, label))));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      localStorage.setItem('gamemetrics.board', boardInput.value.trim());
      ctx.setParams({ board: boardInput.value.trim(), at: atInput.value, offset: null });
    });
    const [standingForm] = lookupForm(ctx, 'player', {
      ids: { form: 'standing-form', input: 'standing-player', submit: 'standing-submit' },
      label: 'Player id', button: 'Find standing', ariaLabel: 'A player\u2019s standing',
    });
    view.append(form);
    const [ranking, standing] = slots(view, ['Ranking', 'ranking-panel'], ['A player\u2019s standing', 'standing-panel', standingForm]);
    if (!board) {
      ranking.append(h('p', { class: 'notice' }, 'Enter the name of a board (the "board" of the game\u2019s score events).'));
      // Nothing to load yet; the status line still says the page is ready (see app.js, live()).
      await ctx.live(async () => {});
      return;
    }
    const base = `/v1/leaderboards/${encodeURIComponent(ctx.game)}/${encodeURIComponent(board)}`;
    const q = `period=${period}&at=${at}`;
    await ctx.live(async () => {
      const page = await ctx.api(`${base}?${q}&offset=${offset}&limit=${LIMIT}`, { signal: ctx.signal });
      const columns = [
        { key: 'rank', label: 'Rank', format: fmt.int },
        { key: 'player_id', label: 'Player', text: true },
        { key: 'score', label: 'Score', format: fmt.int },
      ];
      ranking.replaceChildren(
        h('p', { class: 'notice', 'data-testid': 'ranking-summary' },
          `${board}, ${PERIODS.find(([p]) => p === period)[1].toLowerCase()} from ${page.period_start}: ${fmt.int(page.total)} players; showing ${page.entries.length ? `${offset + 1}\u2013${offset + page.entries.length}` : 'none'}.`),
        table(columns, page.entries, { testid: 'leaderboard-table', caption: `Leaderboard ${board}`, filename: `${ctx.game}-${board}-${period}-${page.period_start}` }),
        h('div', { class: 'toolbar' },
          h('button', { type: 'button', 'data-testid': 'page-prev', disabled: offset === 0, onclick: () => ctx.setParams({ offset: Math.max(0, offset - LIMIT) || null }) }, 'Previous'),
          h('button', { type: 'button', 'data-testid': 'page-next', disabled: offset + LIMIT >= page.total, onclick: () => ctx.setParams({ offset: offset + LIMIT }) }, 'Next')));
      if (!player) return;
      try {
        const s = await ctx.api(`${base}/players/${encodeURIComponent(player)}?${q}&neighbours=5`, { signal: ctx.signal });
        standing.replaceChildren(
          h('p', { 'data-testid': 'standing-summary' }, `${player}: rank ${fmt.int(s.entry.rank)} of ${fmt.int(s.total)}, score ${fmt.int(s.entry.score)}.`),
          table(columns, s.around, { testid: 'standing-table', caption: `Around ${player}`, filename: `${ctx.game}-${board}-${period}-around-${player}` }));
        for (const tr of standing.querySelectorAll('tbody tr')) {
          if (tr.querySelector('[data-key="player_id"]')?.textContent === player) tr.setAttribute('aria-current', 'true');
        }
      } catch (e) {
        if (e.status !== 404) throw e;
        standing.replaceChildren(h('p', { class: 'notice', 'data-testid': 'standing-summary' }, `${player} has no score on ${board} in this period.`));
      }
    });
  },
};
