// Player lookup: one player's profile and their recommendations with the reason of each.
// The player id is the URL parameter `player`.
// API: GET /v1/players/{game}/{player} and /v1/players/{game}/{player}/recommendations.
// data-testid: player-form, player-id, player-submit, profile (a <dl>; each <dd> has
// data-testid profile-<field>), revenue-table (+ -csv), recommendations-basis,
// recommendations-table (+ -csv).

import { h, slots, lookupForm, table, fmt } from '../ui.js';

function reason(r) {
  if (r.kind === 'similar_to') return `Players who have ${r.item} also have it`;
  if (r.kind === 'popular') return 'Popular among players';
  return r.kind;
}

export const page = {
  route: 'players',
  title: 'Player lookup',
  needs: 'query',
  range: false,
  async render(view, ctx) {
    const player = ctx.param('player') || '';
    const [form, input] = lookupForm(ctx, 'player', {
      ids: { form: 'player-form', input: 'player-id', submit: 'player-submit' },
      label: 'Player id', button: 'Look up', ariaLabel: 'Find a player',
    });
    view.append(form);
    const [profile, recommendations] = slots(view, ['Profile', 'profile-panel'], ['Recommendations', 'recommendations-panel']);
    if (!player) {
      profile.append(h('p', { class: 'notice' }, 'Enter a player id (as the game sends it).'));
      input.focus();
      // Nothing to load yet; the status line still says the page is ready (see app.js, live()).
      await ctx.live(async () => {});
      return;
    }
    const base = `/v1/players/${encodeURIComponent(ctx.game)}/${encodeURIComponent(player)}`;
    await ctx.live(async () => {
      let p;
      try {
        p = await ctx.api(base, { signal: ctx.signal });
      } catch (e) {
        if (e.status !== 404) throw e;
        profile.replaceChildren(h('p', { class: 'notice', 'data-testid': 'profile-missing' }, `No player "${player}" in ${ctx.game}.`));
        recommendations.replaceChildren();
        return;
      }
      const consent = (v) => (v === true ? 'given' : v === false ? 'withdrawn' : 'not recorded');
      const fields = [
        ['First seen', 'first_seen', fmt.time(p.first_seen)],
        ['Last seen', 'last_seen', fmt.time(p.last_seen)],
        ['Events', 'events', fmt.int(p.events)],
        ['Sessions', 'sessions', fmt.int(p.sessions)],
        ['Play time', 'playtime_seconds', fmt.seconds(p.playtime_seconds)],
        ['Purchases', 'purchases', fmt.int(p.purchases)],
        ['Levels completed', 'levels_completed', fmt.int(p.levels_completed)],
        ['Current level', 'current_level', p.current_level ?? '–'],
        ['XP', 'xp', fmt.int(p.xp)],
        ['Country', 'country', p.country ?? '–'],
        ['Language', 'language', p.language ?? '–'],
        ['Analytics consent', 'consent_analytics', consent(p.consent_analytics)],
        ['Personalisation consent', 'consent_personalisation', consent(p.consent_personalisation)],
      ];
      const revenue = Object.entries(p.revenue_minor || {}).map(([currency, minor]) => ({ currency, revenue_minor: minor }));
      profile.replaceChildren(
        h('dl', { class: 'profile', 'data-testid': 'profile' }, fields.map(([label, key, value]) =>
          [h('dt', {}, label), h('dd', { 'data-testid': `profile-${key}` }, value)])),
        h('h3', {}, 'Revenue'),
        table([
          { key: 'currency', label: 'Currency', text: true },
          { key: 'revenue_minor', label: 'Revenue', format: (v, row) => fmt.money(v, row.currency) },
        ], revenue, { testid: 'revenue-table', caption: `Revenue of ${player} (CSV: minor units)`, filename: `${ctx.game}-${player}-revenue` }));
      const r = await ctx.api(`${base}/recommendations`, { signal: ctx.signal });
      recommendations.replaceChildren(
        h('p', {}, 'Basis: ', h('span', { class: r.basis === 'personalised' ? 'badge' : 'badge warn', 'data-testid': 'recommendations-basis' }, r.basis),
          r.reason ? ` (${r.reason === 'personalisation_consent_withdrawn' ? 'the player withdrew consent to personalisation' : r.reason})` : '',
          ` \u00b7 generated ${fmt.time(r.generated_at)}`),
        table([
          { key: 'item', label: 'Item', text: true },
          { key: 'why', label: 'Why', text: true, csv: (row) => (row.reason.kind === 'similar_to' ? `similar_to:${row.reason.item}` : row.reason.kind) },
          { key: 'score', label: 'Score', format: fmt.num },
        ], r.items.map((i) => ({ ...i, why: reason(i.reason) })),
        { testid: 'recommendations-table', caption: `Recommended for ${player}`, filename: `${ctx.game}-${player}-recommendations` }));
    });
  },
};
