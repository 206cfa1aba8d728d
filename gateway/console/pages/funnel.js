// Funnel: the progression funnel since the game began (no date range), one step per level in the
// game's configured order, with the step-to-step conversion.
// API: GET /v1/analytics/{game}/funnel.
// data-testid: funnel-chart, conversion-chart, funnel-table (+ -csv).

import { h, slots, analytics, table, barChart, lineChart, fmt } from '../ui.js';

export const page = {
  route: 'funnel',
  title: 'Funnel',
  needs: 'query',
  range: false,
  async render(view, ctx) {
    const [body] = slots(view, ['Progression', 'funnel-panel',
      h('p', { class: 'notice' }, 'Distinct players per level since the beginning; conversion is the share of the previous level\u2019s players who started this one.')]);
    await ctx.live(async () => {
      const f = await analytics(ctx, 'funnel', { range: false });
      const steps = f.steps;
      const levels = steps.map((s) => s.level_id);
      const first = steps[0]?.players_started || 0;
      const rows = steps.map((s) => ({ ...s, of_first: first ? s.players_started / first : null }));
      body.replaceChildren(
        barChart(levels, [
          { label: 'Completed', values: steps.map((s) => s.players_completed) },
          { label: 'Started, not completed', values: steps.map((s) => Math.max(0, s.players_started - s.players_completed)) },
        ], { title: 'Players who started each level, and how many of them completed it', testid: 'funnel-chart', yFormat: fmt.num }),
        steps.length > 1 ? lineChart(levels, [
          { label: 'Conversion from the step before', values: steps.map((s) => s.conversion_from_previous) },
          { label: 'Completion rate', values: steps.map((s) => s.completion_rate) },
        ], { title: 'Step conversion and completion rate per level', testid: 'conversion-chart', yFormat: fmt.pct }) : null,
        table([
          { key: 'level_id', label: 'Level', text: true },
          { key: 'players_started', label: 'Started', format: fmt.int },
          { key: 'players_completed', label: 'Completed', format: fmt.int },
          { key: 'players_failed', label: 'Failed', format: fmt.int },
          { key: 'completion_rate', label: 'Completion', format: fmt.pct },
          { key: 'conversion_from_previous', label: 'Step conversion', format: fmt.pct },
          { key: 'of_first', label: 'Of first level', format: fmt.pct },
          { key: 'median_seconds_to_complete', label: 'Median time to complete', format: fmt.seconds },
          { key: 'starts', label: 'Start events', format: fmt.int },
          { key: 'completes', label: 'Complete events', format: fmt.int },
          { key: 'fails', label: 'Fail events', format: fmt.int },
        ], rows, { testid: 'funnel-table', caption: 'Funnel steps', filename: `${ctx.game}-funnel` }));
    });
  },
};
