// Shared building blocks of the console's pages: elements, number formats, tables with a CSV
// download, SVG charts and heat-map colours. No framework and no HTML strings: every text goes
// through textContent, so data from the API can never become markup.

const SVG = 'http://www.w3.org/2000/svg';

/** Element `tag` with attributes (`class`, `data-testid`, `aria-*`, `on*` functions as listeners)
 *  and children (strings, numbers, nodes, arrays; null/false skipped). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** The same for SVG elements. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

// ---------------------------------------------------------------------------------- formats

const integer = new Intl.NumberFormat('en', { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat('en', { maximumFractionDigits: 2 });

export const fmt = {
  int: (n) => (n === null || n === undefined ? '–' : integer.format(n)),
  num: (n) => (n === null || n === undefined ? '–' : decimal.format(n)),
  pct: (r) => (r === null || r === undefined || Number.isNaN(r) ? '–' : `${decimal.format(r * 100)} %`),
  /** Minor units of an ISO 4217 currency as major units (2 decimals; 0 for JPY-like codes). */
  money: (minor, currency) => {
    if (minor === null || minor === undefined) return '–';
    const digits = ZERO_DECIMAL.has(currency) ? 0 : 2;
    const value = minor / 10 ** digits;
    return `${new Intl.NumberFormat('en', { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(value)} ${currency}`;
  },
  /** Minor units as a number of major units (for charts). */
  major: (minor, currency) => (minor === null || minor === undefined ? null : minor / 10 ** (ZERO_DECIMAL.has(currency) ? 0 : 2)),
  seconds: (sec) => {
    if (sec === null || sec === undefined) return '–';
    if (sec < 90) return `${decimal.format(sec)} s`;
    if (sec < 5400) return `${decimal.format(sec / 60)} min`;
    return `${decimal.format(sec / 3600)} h`;
  },
  time: (iso) => (iso ? new Date(iso).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '–'),
};

const ZERO_DECIMAL = new Set(['JPY', 'KRW', 'VND', 'CLP', 'ISK', 'HUF', 'TWD', 'UGX', 'XAF', 'XOF']);

// --------------------------------------------------------------------------------- sections

/** A titled panel: `<section>` with an h2, optional notes, then the content. */
export function panel(title, testid, ...content) {
  const id = `${testid}-title`;
  return h('section', { class: 'panel', 'aria-labelledby': id, 'data-testid': testid },
    h('div', { class: 'panel-head' }, h('h2', { id }, title)), ...content);
}

/** Headline figures: [{label, value, testid}]. */
export function cards(items) {
  return h('div', { class: 'cards' }, items.map((c) =>
    h('div', { class: 'card', 'data-testid': c.testid },
      h('div', { class: 'label' }, c.label),
      h('div', { class: 'value', 'data-testid': c.testid && `${c.testid}-value` }, c.value))));
}

export function empty(text) {
  return h('p', { class: 'empty', 'data-testid': 'empty' }, text);
}

/**
 * Appends the page's sections to `view` and returns the slot of each, an empty `<div>` that the
 * page's live load fills: a spec [title, testid, ...notes] is a panel (the notes before the
 * slot), `null` a bare slot (headline cards above the panels).
 */
export function slots(view, ...specs) {
  return specs.map((spec) => {
    const slot = h('div');
    if (spec === null) {
      view.append(slot);
    } else {
      const [title, testid, ...notes] = spec;
      view.append(panel(title, testid, ...notes, slot));
    }
    return slot;
  });
}

/**
 * A one-field form of a page that looks something up: submitted, it sets the page parameter
 * `param` (trimmed; the field starts with its value). ids: {form, input, submit}, the
 * data-testids (the input's id too). Returns [form, input].
 */
export function lookupForm(ctx, param, { ids, label, button, ariaLabel }) {
  const input = h('input', { id: ids.input, name: param, value: ctx.param(param) || '', required: true, autocomplete: 'off', 'data-testid': ids.input });
  const form = h('form', { class: 'toolbar', 'data-testid': ids.form, 'aria-label': ariaLabel },
    h('label', { for: ids.input }, label, input),
    h('button', { type: 'submit', 'data-testid': ids.submit }, button));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    ctx.setParams({ [param]: input.value.trim() });
  });
  return [form, input];
}

// ------------------------------------------------------------------------------------ loading

/** GET /v1/analytics/{game}/{what} of the selected game, over the selected days unless `range` is false. */
export function analytics(ctx, what, { range = true } = {}) {
  const days = range ? `?from=${ctx.from}&to=${ctx.to}` : '';
  return ctx.api(`/v1/analytics/${encodeURIComponent(ctx.game)}/${what}${days}`, { signal: ctx.signal });
}

/** The CSV file name of `what` over the selected game and days. */
export function rangeFile(ctx, what) {
  return `${ctx.game}-${what}-${ctx.from}-${ctx.to}`;
}

// ------------------------------------------------------------------------------------ tables

/**
 * A table with a CSV download under it.
 * columns: [{key, label, format?(value, row), text?: true (left-aligned), csv?(row) (raw value)}]
 * options: {testid, caption, filename, cell?(td, row, column) to decorate cells}
 * The CSV holds the raw values (numbers unformatted, minor units as given by the API).
 */
export function table(columns, rows, options = {}) {
  const { testid = 'table', caption, filename = testid } = options;
  if (!rows.length) return h('div', { 'data-testid': testid }, empty('No data for this selection.'));
  const head = h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.text ? 'text' : null }, c.label)));
  const body = rows.map((row) => h('tr', {}, columns.map((c, i) => {
    const raw = row[c.key];
    const cell = h(i === 0 ? 'th' : 'td', { class: c.text ? 'text' : null, scope: i === 0 ? 'row' : null, 'data-key': c.key },
      c.format ? c.format(raw, row) : raw ?? '–');
    if (options.cell) options.cell(cell, row, c);
    return cell;
  })));
  const download = h('button', {
    type: 'button', 'data-testid': `${testid}-csv`,
    'aria-label': `Download CSV: ${caption || 'table'}`,
    onclick: () => downloadCsv(`${filename}.csv`, columns, rows),
  }, 'Download CSV');
  return h('div', { 'data-testid': testid },
    h('div', { class: 'table-wrap' },
      h('table', {}, caption ? h('caption', {}, caption) : null, h('thead', {}, head), h('tbody', {}, body))),
    h('div', { class: 'table-actions' }, download));
}

/** RFC 4180 text of the rows (header line first). */
export function csvText(columns, rows) {
  const quote = (v) => {
    const text = v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
    return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  const lines = [columns.map((c) => quote(c.key)).join(',')];
  for (const row of rows) lines.push(columns.map((c) => quote(c.csv ? c.csv(row) : row[c.key])).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

export function downloadCsv(filename, columns, rows) {
  saveFile(filename, csvText(columns, rows), 'text/csv;charset=utf-8');
}

/** Offers `text` as a download named `filename`. */
export function saveFile(filename, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// ------------------------------------------------------------------------------------ charts

const W = 760;
const H = 260;
const PAD = { left: 56, right: 16, top: 12, bottom: 34 };
export const PALETTE = ['#1f5fbf', '#b3541e', '#2e7d32', '#7b1fa2', '#4a5360', '#0e7c86'];

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function legend(series) {
  return h('ul', { class: 'legend' }, series.map((sr, i) =>
    h('li', {}, h('span', { class: `swatch s${i % PALETTE.length}`, 'aria-hidden': 'true' }), sr.label)));
}

function axes(svg, labels, max, yFormat, x) {
  const plotH = H - PAD.top - PAD.bottom;
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    const y = PAD.top + plotH - (plotH * i) / 4;
    svg.append(s('line', { class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: y, y2: y }));
    svg.append(s('text', { x: PAD.left - 6, y: y + 4, 'text-anchor': 'end' }, yFormat(v)));
  }
  svg.append(s('line', { class: 'axis', x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom }));
  const step = Math.max(1, Math.ceil(labels.length / 8));
  labels.forEach((label, i) => {
    if (i % step !== 0 && i !== labels.length - 1) return;
    svg.append(s('text', { x: x(i), y: H - PAD.bottom + 16, 'text-anchor': 'middle' }, label));
  });
}

/**
 * A line chart. labels: x labels (days); series: [{label, values: [number|null]}].
 * options: {title (accessible name), testid, yFormat, max}. null without labels: nothing to draw
 * (the table below says so), so a page writes `lineChart(…) ?? note` where it wants a note.
 */
export function lineChart(labels, series, options = {}) {
  if (!labels.length) return null;
  const { title, testid = 'chart', yFormat = fmt.num } = options;
  const all = series.flatMap((sr) => sr.values).filter((v) => typeof v === 'number');
  const max = options.max ?? niceMax(Math.max(0, ...all));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const x = (i) => PAD.left + (labels.length <= 1 ? plotW / 2 : (plotW * i) / (labels.length - 1));
  const y = (v) => PAD.top + plotH - (plotH * Math.min(v, max)) / max;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, focusable: 'false' });
  axes(svg, labels, max, yFormat, x);
  series.forEach((sr, k) => {
    const colour = PALETTE[k % PALETTE.length];
    let d = '';
    sr.values.forEach((v, i) => {
      if (typeof v !== 'number') return;
      d += `${d && sr.values[i - 1] !== null && sr.values[i - 1] !== undefined ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    });
    svg.append(s('path', { d, fill: 'none', stroke: colour, 'stroke-width': 2.2 }));
    sr.values.forEach((v, i) => {
      if (typeof v !== 'number') return;
      svg.append(s('circle', { cx: x(i), cy: y(v), r: labels.length > 60 ? 1.5 : 3, fill: colour },
        s('title', {}, `${sr.label}, ${labels[i]}: ${yFormat(v)}`)));
    });
  });
  return h('figure', { class: 'chart', 'data-testid': testid },
    svg, legend(series), title ? h('figcaption', {}, title, ' (the table below holds every value)') : null);
}

/**
 * A bar chart, stacked when there are several series. labels: x labels; series as lineChart.
 */
export function barChart(labels, series, options = {}) {
  if (!labels.length) return null;
  const { title, testid = 'chart', yFormat = fmt.num } = options;
  const totals = labels.map((_, i) => series.reduce((sum, sr) => sum + (sr.values[i] || 0), 0));
  const max = options.max ?? niceMax(Math.max(0, ...totals));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const band = plotW / Math.max(1, labels.length);
  const x = (i) => PAD.left + band * i + band / 2;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, focusable: 'false' });
  axes(svg, labels, max, yFormat, x);
  labels.forEach((label, i) => {
    let base = 0;
    series.forEach((sr, k) => {
      const v = sr.values[i] || 0;
      if (v <= 0) return;
      const hgt = (plotH * v) / max;
      const top = PAD.top + plotH - (plotH * (base + v)) / max;
      svg.append(s('rect', {
        x: (x(i) - band * 0.38).toFixed(1), y: top.toFixed(1), width: (band * 0.76).toFixed(1), height: hgt.toFixed(1),
        fill: PALETTE[k % PALETTE.length],
      }, s('title', {}, `${sr.label}, ${label}: ${yFormat(v)}`)));
      base += v;
    });
  });
  return h('figure', { class: 'chart', 'data-testid': testid },
    svg, series.length > 1 ? legend(series) : null, title ? h('figcaption', {}, title, ' (the table below holds every value)') : null);
}

/** Colours a table cell by `rate` in 0..1 (white to dark blue); text turns white on dark cells. */
export function heat(cell, rate) {
  if (typeof rate !== 'number' || Number.isNaN(rate)) return;
  const t = Math.max(0, Math.min(1, rate));
  // From #f4f8fd (t = 0) to #0f3d80 (t = 1).
  const mix = (a, b) => Math.round(a + (b - a) * t);
  cell.style.backgroundColor = `rgb(${mix(244, 15)}, ${mix(248, 61)}, ${mix(253, 128)})`;
  cell.classList.add('heat');
  if (t > 0.45) cell.classList.add('dark');
}
