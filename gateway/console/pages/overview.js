// Overview: DAU, WAU, MAU and stickiness per day, and new vs returning players.
// API: GET /v1/analytics/{game}/active-users and /new-returning (?from&to).
// data-testid: overview-cards, card-dau / card-wau / card-mau / card-stickiness / card-new /
// card-returning (each with <id>-value: the latest day's figure, and the range's sums for new
// and returning), active-chart, stickiness-chart, active-table (+ active-table-csv),
// new-returning-chart, new-returning-table (+ new-returning-table-csv).

import { h, cards, slots, analytics, rangeFile, table, lineChart, barChart, fmt } from '../ui.js';

export const page = {
  route: 'overview',
  title: 'Overview',
  needs: 'query',
  async render(view, ctx) {
    const [head, active, stickiness, newReturning] = slots(view, null,
      ['Active players', 'active-panel'],
      ['Stickiness (DAU / MAU)', 'stickiness-panel'],
      ['New and returning players', 'new-returning-panel']);
    await ctx.live(async () => {
      const [au, nr] = await Promise.all([analytics(ctx, 'active-users'), analytics(ctx, 'new-returning')]);
      const days = au.days;
      const last = days[days.length - 1];
      const sum = (key) => nr.days.reduce((n, d) => n + d[key], 0);
      head.replaceChildren(h('div', { 'data-testid': 'overview-cards' }, cards([
        { label: `DAU${last ? ` (${last.day})` : ''}`, value: fmt.int(last?.dau ?? 0), testid: 'card-dau' },
        { label: 'WAU (7 days)', value: fmt.int(last?.wau ?? 0), testid: 'card-wau' },
        { label: 'MAU (30 days)', value: fmt.int(last?.mau ?? 0), testid: 'card-mau' },
        { label: 'Stickiness', value: fmt.pct(last?.stickiness ?? null), testid: 'card-stickiness' },
        { label: 'New players (range)', value: fmt.int(sum('new_players')), testid: 'card-new' },
        { label: 'Returning player-days (range)', value: fmt.int(sum('returning_players')), testid: 'card-returning' },
      ])));
      const labels = days.map((d) => d.day);
      active.replaceChildren(
        lineChart(labels, [
          { label: 'DAU', values: days.map((d) => d.dau) },
          { label: 'WAU', values: days.map((d) => d.wau) },
          { label: 'MAU', values: days.map((d) => d.mau) },
        ], { title: 'Daily, weekly and monthly active players per day', testid: 'active-chart', yFormat: fmt.num }),
        table([
          { key: 'day', label: 'Day', text: true },
          { key: 'dau', label: 'DAU', format: fmt.int },
          { key: 'wau', label: 'WAU', format: fmt.int },
          { key: 'mau', label: 'MAU', format: fmt.int },
          { key: 'stickiness', label: 'Stickiness', format: fmt.pct },
        ], days, { testid: 'active-table', caption: 'Active players per day', filename: rangeFile(ctx, 'active-users') }));
      stickiness.replaceChildren(
        lineChart(labels, [{ label: 'Stickiness', values: days.map((d) => d.stickiness) }],
          { title: 'Stickiness: DAU / MAU per day', testid: 'stickiness-chart', yFormat: fmt.pct })
        ?? h('p', { class: 'empty' }, 'No active players in this range.'));
      newReturning.replaceChildren(
        barChart(nr.days.map((d) => d.day), [
          { label: 'New', values: nr.days.map((d) => d.new_players) },
          { label: 'Returning', values: nr.days.map((d) => d.returning_players) },
        ], { title: 'New and returning active players per day', testid: 'new-returning-chart', yFormat: fmt.num }),
        table([
          { key: 'day', label: 'Day', text: true },
          { key: 'active', label: 'Active', format: fmt.int },
          { key: 'new_players', label: 'New', format: fmt.int },
          { key: 'returning_players', label: 'Returning', format: fmt.int },
          { key: 'new_share', label: 'New share', format: fmt.pct, csv: (r) => (r.active ? r.new_players / r.active : '') },
        ], nr.days.map((d) => ({ ...d, new_share: d.active ? d.new_players / d.active : null })),
        { testid: 'new-returning-table', caption: 'New and returning players per day', filename: rangeFile(ctx, 'new-returning') }));
    });
  },
};
