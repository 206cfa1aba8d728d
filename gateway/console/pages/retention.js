// Retention: the cohort triangle. One row per cohort (players first seen that UTC day), D1, D7 and
// D30 as a heat map (darker = more retained); a day N not reached yet is shown as "not yet".
// API: GET /v1/analytics/{game}/retention (?from&to).
// data-testid: retention-cards, card-d1 / card-d7 / card-d30 (+ -value: the players-weighted
// rates over the cohorts old enough), retention-chart, retention-table (+ -csv); heat cells
// carry data-key d1_rate / d7_rate / d30_rate.

import { h, cards, slots, analytics, rangeFile, table, lineChart, heat, fmt } from '../ui.js';

const today = () => new Date().toISOString().slice(0, 10);
function plusDays(day, n) {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

export const page = {
  route: 'retention',
  title: 'Retention',
  needs: 'query',
  async render(view, ctx) {
    const [head, body] = slots(view, null, ['Cohorts', 'cohorts-panel',
      h('p', { class: 'notice' }, 'Share of each day\u2019s new players who were active again 1, 7 and 30 days later.')]);
    await ctx.live(async () => {
      const r = await analytics(ctx, 'retention');
      // A cohort's day N is known once that day is over (UTC).
      const reached = (c, n) => plusDays(c.day, n) < today();
      const rows = r.cohorts.map((c) => ({
        ...c,
        d1_rate: reached(c, 1) ? c.d1_rate : null,
        d7_rate: reached(c, 7) ? c.d7_rate : null,
        d30_rate: reached(c, 30) ? c.d30_rate : null,
      }));
      const weighted = (n) => {
        const known = r.cohorts.filter((c) => reached(c, n) && c.players > 0);
        const players = known.reduce((s, c) => s + c.players, 0);
        return players ? known.reduce((s, c) => s + c[`d${n}`], 0) / players : null;
      };
      head.replaceChildren(h('div', { 'data-testid': 'retention-cards' }, cards([
        { label: 'New players (range)', value: fmt.int(r.cohorts.reduce((s, c) => s + c.players, 0)), testid: 'card-cohort-players' },
        { label: 'D1 retention', value: fmt.pct(weighted(1)), testid: 'card-d1' },
        { label: 'D7 retention', value: fmt.pct(weighted(7)), testid: 'card-d7' },
        { label: 'D30 retention', value: fmt.pct(weighted(30)), testid: 'card-d30' },
      ])));
      const rate = (v) => (v === null ? 'not yet' : fmt.pct(v));
      const withPlayers = rows.filter((c) => c.players > 0);
      body.replaceChildren(
        lineChart(withPlayers.map((c) => c.day), [
          { label: 'D1', values: withPlayers.map((c) => c.d1_rate) },
          { label: 'D7', values: withPlayers.map((c) => c.d7_rate) },
          { label: 'D30', values: withPlayers.map((c) => c.d30_rate) },
        ], { title: 'D1, D7 and D30 retention per cohort', testid: 'retention-chart', yFormat: fmt.pct, max: 1 }),
        table([
          { key: 'day', label: 'Cohort (first seen)', text: true },
          { key: 'players', label: 'Players', format: fmt.int },
          { key: 'd1_rate', label: 'D1', format: rate },
          { key: 'd7_rate', label: 'D7', format: rate },
          { key: 'd30_rate', label: 'D30', format: rate },
          { key: 'd1', label: 'D1 players', format: fmt.int },
          { key: 'd7', label: 'D7 players', format: fmt.int },
          { key: 'd30', label: 'D30 players', format: fmt.int },
        ], rows, {
          testid: 'retention-table', caption: 'Retention per cohort', filename: rangeFile(ctx, 'retention'),
          cell: (td, row, column) => {
            if (column.key.endsWith('_rate') && row.players > 0) heat(td, row[column.key]);
          },
        }));
    });
  },
};
