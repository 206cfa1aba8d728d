// Revenue: per currency over the range (revenue, ARPDAU, ARPPU), conversion, and per day.
// API: GET /v1/analytics/{game}/monetisation and /revenue (?from&to). Amounts are shown in major
// units (the API's minor units / 100, or as they are for zero-decimal currencies); CSVs keep the
// API's minor units.
// data-testid: revenue-cards, card-payers / card-active / card-conversion (+ -value),
// currency-table (+ -csv), revenue-chart, conversion-chart, revenue-table (+ -csv).

import { h, cards, slots, analytics, rangeFile, table, lineChart, fmt } from '../ui.js';

export const page = {
  route: 'revenue',
  title: 'Revenue',
  needs: 'query',
  async render(view, ctx) {
    const [summary, daily, conversion] = slots(view,
      ['Over the range', 'summary-panel'],
      ['Revenue per day', 'daily-panel'],
      ['Conversion per day (payers / DAU)', 'conversion-panel']);
    await ctx.live(async () => {
      const [m, r] = await Promise.all([analytics(ctx, 'monetisation'), analytics(ctx, 'revenue')]);
      summary.replaceChildren(
        h('div', { 'data-testid': 'revenue-cards' }, cards([
          { label: 'Active players', value: fmt.int(m.active_players), testid: 'card-active' },
          { label: 'Payers', value: fmt.int(m.payers), testid: 'card-payers' },
          { label: 'Conversion (payers / active)', value: fmt.pct(m.conversion), testid: 'card-conversion' },
          ...m.currencies.map((c) => ({ label: `Revenue ${c.currency}`, value: fmt.money(c.revenue_minor, c.currency), testid: `card-revenue-${c.currency}` })),
        ])),
        table([
          { key: 'currency', label: 'Currency', text: true },
          { key: 'revenue_minor', label: 'Revenue', format: (v, row) => fmt.money(v, row.currency) },
          { key: 'purchases', label: 'Purchases', format: fmt.int },
          { key: 'arpdau_minor', label: 'ARPDAU', format: (v, row) => fmt.money(v, row.currency) },
          { key: 'arppu_minor', label: 'ARPPU', format: (v, row) => fmt.money(v, row.currency) },
        ], m.currencies, { testid: 'currency-table', caption: 'Per currency over the range (CSV: minor units)', filename: rangeFile(ctx, 'monetisation') }));

      const days = [...new Set(r.days.map((d) => d.day))].sort();
      const currencies = [...new Set(r.days.map((d) => d.currency))].sort();
      const at = (day, currency, key) => r.days.find((d) => d.day === day && d.currency === currency)?.[key] ?? null;
      const major = fmt.major;
      daily.replaceChildren(
        lineChart(days, currencies.map((c) => ({ label: `Revenue ${c}`, values: days.map((d) => major(at(d, c, 'revenue_minor'), c)) })),
          { title: 'Revenue per day and currency (major units)', testid: 'revenue-chart' }),
        lineChart(days, currencies.map((c) => ({ label: `ARPDAU ${c}`, values: days.map((d) => major(at(d, c, 'arpdau_minor'), c)) })),
          { title: 'ARPDAU per day and currency (major units)', testid: 'arpdau-chart' }),
        table([
          { key: 'day', label: 'Day', text: true },
          { key: 'currency', label: 'Currency', text: true },
          { key: 'revenue_minor', label: 'Revenue', format: (v, row) => fmt.money(v, row.currency) },
          { key: 'purchases', label: 'Purchases', format: fmt.int },
          { key: 'payers', label: 'Payers', format: fmt.int },
          { key: 'dau', label: 'DAU', format: fmt.int },
          { key: 'arpdau_minor', label: 'ARPDAU', format: (v, row) => fmt.money(v, row.currency) },
          { key: 'arppu_minor', label: 'ARPPU', format: (v, row) => fmt.money(v, row.currency) },
          { key: 'conversion', label: 'Conversion', format: fmt.pct },
        ], r.days, { testid: 'revenue-table', caption: 'Revenue per day and currency (CSV: minor units)', filename: rangeFile(ctx, 'revenue') }));
      const byDay = days.map((d) => r.days.find((x) => x.day === d));
      conversion.replaceChildren(
        lineChart(days, [{ label: 'Conversion', values: byDay.map((d) => d.conversion) }],
          { title: 'Share of the day\u2019s active players who paid', testid: 'conversion-chart', yFormat: fmt.pct })
        ?? h('p', { class: 'empty' }, 'No purchases in this range.'));
    });
  },
};
