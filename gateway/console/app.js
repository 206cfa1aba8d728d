// GameMetrics console: the shell. Sign-in, the router, the game and date pickers, the nav, live
// refresh. Served by the gateway (gateway/src/console.rs) under a CSP that allows no inline
// script or style: no HTML strings, no style attributes; everything is built with ui.js's h().
//
// ================================ PAGE INTERFACE (every module in pages/) ================================
//
//   export const page = {
//     route: 'overview',      // URL: /#/overview?game=demo&from=2026-11-08&to=2026-12-07[&page params]
//     title: 'Overview',      // nav label, <h1> and document title
//     needs: 'query',         // a permission of GET /v1/me (`permissions`): 'query' | 'privacy' |
//                             // 'read_metrics' | null (any signed-in token). The nav shows, and the
//                             // router opens, only pages whose permission the token has.
//     game: true,             // the game picker applies (default true); false hides it
//     range: true,            // the date range picker applies (default true); false hides it
//     async render(view, ctx) // fills `view` (an empty element, the page's <h1> already in it)
//   };
//
//   ctx = {
//     me,               // GET /v1/me: {subject, kind, roles, permissions, games, all_games}
//     game, from, to,   // the selection (strings; from/to are YYYY-MM-DD UTC days, inclusive)
//     api(path, init),  // fetch JSON with the token: resolves the parsed body; rejects with an
//                       // ApiError {status, code, reason} (401 signs out). init as fetch(), plus
//                       // `json` (a body to send as JSON) and `raw: true` (resolve the Response).
//     param(name),      // a page parameter from the URL (e.g. the player looked up)
//     setParams(obj),   // sets page parameters in the URL (shareable) and renders the page again
//     live(fn),         // runs async fn() now and again every `live` interval while the tab is
//                       // visible, Live is on and the page is still shown; returns fn()'s first
//                       // promise. Errors are shown in the page's status line. Every page calls it
//                       // once, even with nothing to load (then with a no-op), so that the status
//                       // line reaches "Updated …" (the browser test waits for it).
//     signal,           // an AbortSignal, aborted when the page is left or rendered again
//     announce(text),   // says `text` to screen readers (aria-live region)
//   };
//
//   Helpers for pages are in ui.js (import { h, table, lineChart, barChart, heat, cards, panel, slots,
//   analytics, rangeFile, lookupForm, fmt } from '../ui.js'): tables come with a "Download CSV" button;
//   slots() lays out the page's panels, analytics() loads a read model over the selection.
//   Register a page by adding its module to PAGES below.
//
// Stable hooks for the browser test (data-testid): nav, nav-<route>, account, who, sign-out, picker,
// game, from, to, range-7/30/90, live, sign-in, token, token-submit, dev-sign-in,
// dev-sign-in-<role>, sign-in-error, view, page-<route> (the page's root), page-title, status
// (a page's loading/error line), updated (time of the last refresh). Pages document their own.
// ===========================================================================================================

import { h } from './ui.js';

/** The pages, in nav order (module paths relative to this file). */
const PAGES = [
  './pages/overview.js',
  './pages/revenue.js',
  './pages/retention.js',
  './pages/sessions.js',
  './pages/funnel.js',
  './pages/leaderboards.js',
  './pages/players.js',
  './pages/compliance.js',
  './pages/status.js',
];

const TOKEN_KEY = 'gamemetrics.token';
const LIVE_SECONDS = 30;
const $ = (id) => document.getElementById(id);

export class ApiError extends Error {
  constructor(status, code, reason) {
    super(reason || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.reason = reason;
  }
}

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null,
  pages: [],
  generation: 0, // bumps on every render; live loops of older renders stop
  controller: null,
};

// ------------------------------------------------------------------------------- the API

async function api(path, init = {}) {
  const headers = new Headers(init.headers || {});
  if (state.token) headers.set('Authorization', `Bearer ${state.token}`);
  let body = init.body;
  if (init.json !== undefined) {
    headers.set('Content-Type', 'application/json');
    body = JSON.stringify(init.json);
  }
  const response = await fetch(path, { ...init, headers, body, cache: 'no-store' });
  if (init.raw && response.ok) return response;
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    if (response.status === 401 && state.token && path !== '/v1/me') signOut('Your sign-in is no longer valid: sign in again.');
    throw new ApiError(response.status, json?.error, json?.reason || text.slice(0, 200));
  }
  return json;
}

// --------------------------------------------------------------------------- dates, URL

const day = (d) => d.toISOString().slice(0, 10);
function daysAgo(n) {
  const d = new Date();
  d.setUTCDate(d.getUTCDate() - n);
  return day(d);
}
const isDay = (v) => /^\d{4}-\d{2}-\d{2}$/.test(v || '');

/** The route and its parameters from location.hash: `#/route?a=b`. */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [route, query = ''] = raw.split('?');
  return { route: route || '', params: new URLSearchParams(query) };
}

function hashFor(route, params) {
  const query = params.toString();
  return `#/${route}${query ? `?${query}` : ''}`;
}

/** Sets the URL without adding a history entry for mere refreshes; `push` for user navigation. */
function go(route, params, push = true) {
  const target = hashFor(route, params);
  if (location.hash === target) return render();
  if (push) location.hash = target;
  else {
    history.replaceState(null, '', target);
    render();
  }
}

// ------------------------------------------------------------------------------ sign-in

function signOut(message) {
  state.token = null;
  state.me = null;
  sessionStorage.removeItem(TOKEN_KEY);
  showSignIn(message);
}

async function signIn(token) {
  state.token = token.trim();
  try {
    state.me = await api('/v1/me');
  } catch (e) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(e.status === 401 ? `This token is not accepted: ${e.reason}` : `Sign-in failed: ${e.message}`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $('sign-in').hidden = true;
  $('token').value = '';
  await start();
}

async function showSignIn(message = '') {
  state.generation++;
  state.controller?.abort();
  for (const id of ['nav', 'account', 'picker']) $(id).hidden = true;
  $('view').replaceChildren();
  $('sign-in').hidden = false;
  $('sign-in-error').textContent = message;
  document.title = 'Sign in · GameMetrics';
  try {
    const dev = await api('/v1/dev-sign-in');
    const buttons = (dev?.tokens || []).map((t) => h('button', {
      type: 'button', class: 'primary', 'data-testid': `dev-sign-in-${t.role}`,
      onclick: () => signIn(t.token),
    }, `Sign in as the development ${t.role}`));
    $('dev-buttons').replaceChildren(...buttons);
    $('dev-sign-in').hidden = buttons.length === 0;
  } catch {
    $('dev-sign-in').hidden = true;
  }
  $('token').focus();
}

// ---------------------------------------------------------------------------- the shell

function allowed(page) {
  return !page.needs || (state.me?.permissions || []).includes(page.needs);
}

async function start() {
  if (!state.pages.length) {
    const modules = await Promise.all(PAGES.map((p) => import(p)));
    state.pages = modules.map((m) => m.page);
  }
  const me = state.me;
  $('who').textContent = `${me.subject} (${me.roles.length ? me.roles.join(', ') : me.kind})`;
  $('account').hidden = false;
  const games = me.games || [];
  $('game').replaceChildren(...games.map((g) => h('option', { value: g }, g)));
  render();
}

function buildNav(current) {
  const links = state.pages.filter(allowed).map((p) => {
    const { params } = parseHash();
    // Links keep the selection (game and range), not the page's own parameters.
    const keep = new URLSearchParams();
    for (const k of ['game', 'from', 'to']) if (params.get(k)) keep.set(k, params.get(k));
    return h('a', {
      href: hashFor(p.route, keep), 'data-testid': `nav-${p.route}`,
      'aria-current': p.route === current ? 'page' : null,
    }, p.title);
  });
  $('nav').replaceChildren(...links);
  $('nav').hidden = false;
}

/** Renders the page of the URL (after filling in and normalising the selection). */
async function render() {
  if (!state.me) return;
  const { route, params } = parseHash();
  const visible = state.pages.filter(allowed);
  const page = visible.find((p) => p.route === route) || visible[0];
  if (!page) {
    $('picker').hidden = true;
    $('nav').hidden = true;
    $('view').replaceChildren(h('p', { class: 'notice', 'data-testid': 'no-pages' },
      'This token may not use any page of the console (it has none of the analyst, compliance or admin roles).'));
    return;
  }
  // Normalise the selection: a game of the token, a valid range (default: the last 30 days).
  const games = state.me.games || [];
  let changed = page.route !== route;
  if (page.game !== false && games.length && !games.includes(params.get('game'))) {
    params.set('game', games.includes(localStorage.getItem('gamemetrics.game')) ? localStorage.getItem('gamemetrics.game') : games[0]);
    changed = true;
  }
  if (page.range !== false && !(isDay(params.get('from')) && isDay(params.get('to')) && params.get('from') <= params.get('to'))) {
    params.set('from', daysAgo(29));
    params.set('to', daysAgo(0));
    changed = true;
  }
  if (changed) return go(page.route, params, false);
  if (params.get('game')) localStorage.setItem('gamemetrics.game', params.get('game'));

  buildNav(page.route);
  $('picker').hidden = page.game === false && page.range === false;
  $('game').closest('label').hidden = page.game === false;
  for (const id of ['from', 'to']) $(id).closest('label').hidden = page.range === false;
  $('picker').querySelector('.presets').hidden = page.range === false;
  $('game').value = params.get('game') || '';
  $('from').value = params.get('from') || '';
  $('to').value = params.get('to') || '';

  state.controller?.abort();
  const controller = new AbortController();
  state.controller = controller;
  const generation = ++state.generation;
  const status = h('p', { class: 'updated', 'data-testid': 'status', role: 'status' });
  const view = h('div', { 'data-testid': `page-${page.route}`, class: 'page' },
    h('h1', { 'data-testid': 'page-title', id: 'page-title' }, page.title), status);
  $('view').replaceChildren(view);
  document.title = `${page.title} · GameMetrics`;

  const ctx = {
    me: state.me,
    game: params.get('game'),
    from: params.get('from'),
    to: params.get('to'),
    api,
    signal: controller.signal,
    param: (name) => params.get(name),
    setParams(values) {
      const next = new URLSearchParams(params);
      for (const [k, v] of Object.entries(values)) {
        if (v === null || v === undefined || v === '') next.delete(k);
        else next.set(k, v);
      }
      go(page.route, next, true);
    },
    live(fn) {
      const run = async () => {
        if (generation !== state.generation) return;
        status.textContent = 'Loading…';
        try {
          await fn();
          if (generation === state.generation) {
            status.replaceChildren(h('span', { 'data-testid': 'updated' }, `Updated ${new Date().toLocaleTimeString()}`));
          }
        } catch (e) {
          if (generation !== state.generation) return;
          status.replaceChildren(h('span', { class: 'error', role: 'alert' }, errorText(e)));
        }
      };
      const timer = setInterval(() => {
        if (generation !== state.generation) return clearInterval(timer);
        if (document.visibilityState === 'visible' && $('live').checked) run();
      }, LIVE_SECONDS * 1000);
      // Coming back to the tab refreshes at once instead of waiting for the next tick.
      const onVisible = () => {
        if (document.visibilityState === 'visible' && $('live').checked) run();
      };
      document.addEventListener('visibilitychange', onVisible);
      controller.signal.addEventListener('abort', () => {
        clearInterval(timer);
        document.removeEventListener('visibilitychange', onVisible);
      });
      return run();
    },
    announce(text) {
      $('announcer').textContent = text;
    },
  };
  try {
    await page.render(view, ctx);
  } catch (e) {
    if (generation === state.generation) status.replaceChildren(h('span', { class: 'error', role: 'alert' }, errorText(e)));
  }
}

function errorText(e) {
  if (e instanceof ApiError) {
    if (e.status === 403) return `Not allowed: ${e.reason}`;
    if (e.status === 503) return `Not available right now: ${e.reason}`;
    return `${e.status} ${e.code || ''}: ${e.reason}`;
  }
  return `Error: ${e.message}`;
}

// ------------------------------------------------------------------------------ wiring

function selectionChanged() {
  const { route, params } = parseHash();
  params.set('game', $('game').value);
  if (isDay($('from').value)) params.set('from', $('from').value);
  if (isDay($('to').value)) params.set('to', $('to').value);
  go(route, params, true);
}

function init() {
  $('live-seconds').textContent = String(LIVE_SECONDS);
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    signIn($('token').value);
  });
  $('sign-out').addEventListener('click', () => signOut('Signed out.'));
  $('picker').addEventListener('submit', (e) => e.preventDefault());
  $('game').addEventListener('change', selectionChanged);
  $('from').addEventListener('change', selectionChanged);
  $('to').addEventListener('change', selectionChanged);
  for (const b of $('picker').querySelectorAll('[data-days]')) {
    b.addEventListener('click', () => {
      $('from').value = daysAgo(Number(b.dataset.days) - 1);
      $('to').value = daysAgo(0);
      selectionChanged();
    });
  }
  window.addEventListener('hashchange', () => render());
  if (state.token) signIn(state.token);
  else showSignIn();
}

init();
