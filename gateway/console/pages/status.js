// Status (operators): this process's readiness with the roles it runs, each consumer's lag
// (the actors' group and every projection, per partition), the dead letters on system.dlq,
// and what this deployment's page cannot show. Every figure is read by the gateway when asked.
// API: GET /v1/status.
// data-testid: status-ready, status-roles, components-table, lag-table (+ -csv), lag-total,
// dead-letters-count, dead-letters-table, not-shown.

import { h, panel, table, cards, empty, fmt } from '../ui.js';

export const page = {
  route: 'status',
  title: 'Status',
  needs: 'read_status',
  game: false,
  range: false,
  async render(view, ctx) {
    const body = h('div');
    view.append(body);
    await ctx.live(async () => {
      const s = await ctx.api('/v1/status', { signal: ctx.signal });
      const lagRows = [
        { consumer: 'actors (group)', ...s.actors },
        ...s.projections.map((p) => ({ consumer: `projection ${p.projection}`, ...p })),
      ];
      const known = lagRows.filter((r) => r.lag !== undefined && r.lag !== null);
      const totalLag = known.reduce((sum, r) => sum + r.lag, 0);
      const dl = s.dead_letters;
      body.replaceChildren(
        cards([
          { label: `Process (${s.mode})`, value: s.process.ready ? 'Ready' : 'Not ready', testid: 'status-ready' },
          { label: 'Records waiting (all consumers)', value: known.length === lagRows.length ? fmt.int(totalLag) : `≥ ${fmt.int(totalLag)}`, testid: 'lag-total' },
          { label: 'Dead letters', value: dl.count === undefined ? 'unknown' : `${dl.at_least ? '≥ ' : ''}${fmt.int(dl.count)}`, testid: 'dead-letters-count' },
        ]),
        panel('Readiness', 'readiness-panel',
          h('p', { 'data-testid': 'status-roles' }, `This process runs: ${s.process.roles.join(', ')}. Checked ${fmt.time(s.checked_at)}.`),
          table([
            { key: 'name', label: 'Component', text: true },
            { key: 'ready', label: 'State', text: true, format: (r) => h('span', { class: r ? 'badge' : 'badge warn' }, r ? 'ready' : 'not ready') },
            { key: 'reason', label: 'Why not', text: true },
          ], [
            ...s.process.components,
            ...s.process.degraded.map((name) => ({ name, ready: false, reason: 'degraded (optional: slower, still ready)' })),
          ], { testid: 'components-table', caption: 'Components of /health/ready', filename: 'status-components' })),
        panel('Consumer lag', 'lag-panel',
          h('p', {}, 'Records between each consumer\'s position and the end of its topic; a projection\'s position is its checkpoint, kept with its rows.'),
          table([
            { key: 'consumer', label: 'Consumer', text: true },
            { key: 'topic', label: 'Topic', text: true },
            { key: 'lag', label: 'Waiting', format: (v, row) => (row.error ? h('span', { class: 'error' }, row.error) : fmt.int(v)) },
            {
              key: 'partitions', label: 'Per partition (position / end)', text: true,
              format: (ps) => (ps || []).map((p) => `${p.partition}: ${p.position ?? '–'} / ${p.end}`).join(' · '),
              csv: (row) => (row.partitions || []).map((p) => `${p.partition}:${p.position ?? ''}/${p.end}`).join(' '),
            },
          ], lagRows, { testid: 'lag-table', caption: 'Lag per consumer', filename: 'status-lag' })),
        panel('Dead letters', 'dead-letters-panel',
          h('p', {}, `Records on ${dl.topic} that a consumer could not process. Replaying (gamemetrics dlq replay) does not remove them: a count that grows means new failures.`),
          dl.error ? h('p', { class: 'error', role: 'alert' }, dl.error)
            : dl.latest.length ? table([
              { key: 'failed_at', label: 'Failed at', text: true },
              { key: 'source_topic', label: 'From', text: true },
              { key: 'error', label: 'Reason', text: true },
              { key: 'offset', label: 'Offset', format: fmt.int },
            ], dl.latest, { testid: 'dead-letters-table', caption: 'The latest dead letters', filename: 'status-dead-letters' })
              : h('div', { 'data-testid': 'dead-letters-table' }, empty('No dead letters.'))),
        s.not_shown.length ? panel('Not shown here', 'not-shown', h('ul', {}, s.not_shown.map((t) => h('li', {}, t)))) : null,
      );
    });
  },
};
