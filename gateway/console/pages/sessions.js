// Sessions: sessions started and closed per day, average length, and the length distribution
// (summed over the range, and per day in the table).
// API: GET /v1/analytics/{game}/sessions (?from&to).
// data-testid: sessions-cards, card-started / card-closed / card-average (+ -value),
// sessions-chart, length-chart, distribution-chart, sessions-table (+ -csv),
// distribution-table (+ -csv).

import { h, cards, slots, analytics, rangeFile, table, lineChart, barChart, fmt } from '../ui.js';

export const page = {
  route: 'sessions',
  title: 'Sessions',
  needs: 'query',
  async render(view, ctx) {
    const [head, perDay, lengths] = slots(view, null,
      ['Sessions per day', 'sessions-panel'],
      ['Session lengths', 'lengths-panel']);
    await ctx.live(async () => {
      const r = await analytics(ctx, 'sessions');
      const days = r.days;
      const started = days.reduce((s, d) => s + d.sessions_started, 0);
      const closed = days.reduce((s, d) => s + d.sessions_closed, 0);
      // The range's average: each day's average weighted by its closed sessions.
      const average = closed ? days.reduce((s, d) => s + d.average_length_seconds * d.sessions_closed, 0) / closed : null;
      head.replaceChildren(h('div', { 'data-testid': 'sessions-cards' }, cards([
        { label: 'Sessions started', value: fmt.int(started), testid: 'card-started' },
        { label: 'Sessions closed', value: fmt.int(closed), testid: 'card-closed' },
        { label: 'Average length', value: fmt.seconds(average), testid: 'card-average' },
      ])));
      // Buckets in the order the API gives them (shortest first).
      const buckets = [];
      for (const d of days) for (const b of d.length_distribution) if (!buckets.includes(b.bucket)) buckets.push(b.bucket);
      const count = (d, bucket) => d.length_distribution.find((b) => b.bucket === bucket)?.sessions ?? 0;
      const labels = days.map((d) => d.day);
      perDay.replaceChildren(
        barChart(labels, [{ label: 'Started', values: days.map((d) => d.sessions_started) }],
          { title: 'Sessions started per day', testid: 'sessions-chart', yFormat: fmt.num }),
        lineChart(labels, [{ label: 'Average length', values: days.map((d) => d.average_length_seconds) }],
          { title: 'Average session length per day', testid: 'length-chart', yFormat: fmt.seconds }),
        table([
          { key: 'day', label: 'Day', text: true },
          { key: 'sessions_started', label: 'Started', format: fmt.int },
          { key: 'sessions_closed', label: 'Closed', format: fmt.int },
          { key: 'average_length_seconds', label: 'Average length', format: fmt.seconds },
          ...buckets.map((b) => ({ key: `bucket ${b}`, label: b, format: fmt.int })),
        ], days.map((d) => Object.fromEntries([...Object.entries(d), ...buckets.map((b) => [`bucket ${b}`, count(d, b)])])),
        { testid: 'sessions-table', caption: 'Sessions per day (closed sessions per length)', filename: rangeFile(ctx, 'sessions') }));
      const totals = buckets.map((b) => ({ bucket: b, sessions: days.reduce((s, d) => s + count(d, b), 0) }));
      const bucketed = totals.reduce((s, t) => s + t.sessions, 0);
      lengths.replaceChildren(
        barChart(totals.map((t) => t.bucket), [{ label: 'Sessions', values: totals.map((t) => t.sessions) }],
          { title: 'Closed sessions per length over the range', testid: 'distribution-chart', yFormat: fmt.num }),
        table([
          { key: 'bucket', label: 'Length', text: true },
          { key: 'sessions', label: 'Sessions', format: fmt.int },
          { key: 'share', label: 'Share', format: fmt.pct },
        ], totals.map((t) => ({ ...t, share: bucketed ? t.sessions / bucketed : null })),
        { testid: 'distribution-table', caption: 'Length distribution over the range', filename: rangeFile(ctx, 'session-lengths') }));
    });
  },
};
