//! Phases 1–3: ingest in batches of 100 as fast as the gateway answers, the same at half
//! that rate (for the latency), and one event per request — on the typed route
//! (`POST /v1/events`) and on the previous platform's (`POST /api/v1/events`), each with a
//! share of its requests being the first event of a player never seen before.

use super::process::RoleProcess;
use super::run::{Bench, Plans};
use super::send::{prepare, prepare_single, Route, SendReport};
use crate::simulate::SentEvent;
use std::collections::HashSet;

pub(super) struct IngestPhases {
    pub full: SendReport,
    pub half: SendReport,
    pub half_rate: f64,
    /// One event per request on `/v1/events`, then on `/api/v1/events`.
    pub single: SendReport,
    pub single_legacy: SendReport,
    /// Events acknowledged over every ingest phase, the warm-up included.
    pub sent: u64,
}

/// The requests of a one-event phase: events of players the earlier phases sent (known)
/// with, evenly spread among them, the first event of each of `fresh` new players.
#[derive(Debug, Clone, Default)]
pub(super) struct SinglePlan {
    pub events: Vec<SentEvent>,
}

impl SinglePlan {
    /// `known` events with `fresh` (one event per new player) spread evenly among them:
    /// fresh event k goes after about `(k + 1) × len / (fresh + 1)` events in all.
    pub fn mix(known: Vec<SentEvent>, fresh: Vec<SentEvent>) -> Self {
        let (total, n) = (known.len() + fresh.len(), fresh.len());
        let mut events = Vec::with_capacity(total);
        let (mut known, mut fresh) = (known.into_iter(), fresh.into_iter());
        let mut placed = 0;
        loop {
            let want_fresh = placed < n && events.len() >= (placed + 1) * total / (n + 1);
            let next = if want_fresh { fresh.next() } else { known.next() };
            let (next, is_fresh) = match next {
                Some(e) => (Some(e), want_fresh),
                None => (fresh.next(), true),
            };
            match next {
                Some(e) => {
                    placed += usize::from(is_fresh);
                    events.push(e);
                }
                None => break,
            }
        }
        Self { events }
    }
}

/// Requests (of those `sendable` keeps) that are the first event of a player absent from
/// `seen`; adds this plan's players to `seen`.
pub(super) fn first_events(
    events: &[SentEvent],
    seen: &mut HashSet<String>,
    sendable: impl Fn(&SentEvent) -> bool,
) -> usize {
    let mut firsts = 0;
    for e in events.iter().filter(|e| sendable(e)) {
        if seen.insert(e.player_id.clone()) {
            firsts += 1;
        }
    }
    firsts
}

/// The first event of each player of `events` (plans list a player's events together, in
/// time order), renamed `{prefix}-{player}` so that no earlier phase knows the player.
pub(super) fn first_of_each_player(
    events: &[SentEvent],
    prefix: &str,
    sendable: impl Fn(&SentEvent) -> bool,
) -> Vec<SentEvent> {
    let mut seen = HashSet::new();
    events
        .iter()
        .filter(|e| sendable(e) && seen.insert(e.player_id.clone()))
        .map(|e| SentEvent { player_id: format!("{prefix}-{}", e.player_id), ..e.clone() })
        .collect()
}

impl Bench<'_> {
    /// The one-event phase's requests for `route`: `requests` in all, `share` of them the
    /// first event of a new player.
    pub fn single_plan(&self, seed: u64, requests: usize, share: f64, route: Route) -> SinglePlan {
        let fresh_count = ((requests as f64) * share.clamp(0.0, 1.0)).round() as usize;
        let sendable = |e: &SentEvent| route == Route::Typed || super::send::legacy_wire(e).is_some();
        // The simulator plans about 12 events per player: plan enough for `fresh_count` players.
        let prefix = match route {
            Route::Typed => format!("new-typed-{}", &self.id[..8]),
            Route::Legacy => format!("new-legacy-{}", &self.id[..8]),
        };
        let mut fresh = first_of_each_player(&self.plan(seed + 50, fresh_count * 14 + 100), &prefix, sendable);
        fresh.truncate(fresh_count);
        let known: Vec<SentEvent> =
            self.plan(seed, requests.saturating_sub(fresh.len()) * 2).into_iter().filter(|e| sendable(e)).collect();
        let known = known.into_iter().take(requests.saturating_sub(fresh.len())).collect();
        SinglePlan::mix(known, fresh)
    }

    pub async fn ingest_phases(
        &self,
        gateway: &str,
        plans: &Plans,
        roles: &[RoleProcess],
    ) -> anyhow::Result<IngestPhases> {
        eprintln!("bench: warm-up");
        let warmup = self.send(gateway, prepare(&plans.warmup, 100, 32), 0.0, None).await;
        eprintln!("bench: ingest, batches of 100, {} events", plans.full.len());
        let full = self.measured_send("ingest, batches of 100", gateway, &plans.full, (100, 32), 0.0, roles).await;
        full.check("ingest")?;
        let half_rate = full.events_per_second() / 2.0;
        eprintln!("bench: ingest at half that rate ({half_rate:.0} events/s), {} events", plans.half.len());
        let phase = "ingest, batches of 100, half rate";
        let half = self.measured_send(phase, gateway, &plans.half, (100, 32), half_rate, roles).await;
        half.check("half-rate ingest")?;
        let mut single = Vec::new();
        for (route, events) in [(Route::Typed, &plans.single.events), (Route::Legacy, &plans.single_legacy.events)] {
            eprintln!("bench: one event per request on {}, {} requests", route.path(), events.len());
            let prepared = prepare_single(events, route, self.options.single_lanes);
            let before = self.cpu(roles);
            let report = self.send_to(route, gateway, prepared, 0.0, None).await;
            let phase = format!("ingest, one event per request, {}", route.path());
            self.cost(roles, &phase, "events", report.accepted, &before);
            if !report.errors.is_empty() {
                eprintln!("bench: {}: answers retried: {}", route.path(), report.error_summary());
            }
            report.check(&phase)?;
            single.push(report);
        }
        let single_legacy = single.pop().unwrap_or_default();
        let single = single.pop().unwrap_or_default();
        let sent = warmup.accepted + full.accepted + half.accepted + single.accepted + single_legacy.accepted;
        Ok(IngestPhases { full, half, half_rate, single, single_legacy, sent })
    }

    /// Sends `events` (`shape`: batch size, concurrent requests) and records the phase's CPU.
    async fn measured_send(
        &self,
        phase: &str,
        gateway: &str,
        events: &[SentEvent],
        shape: (usize, usize),
        rate: f64,
        roles: &[RoleProcess],
    ) -> SendReport {
        let prepared = prepare(events, shape.0, shape.1);
        let before = self.cpu(roles);
        let report = self.send(gateway, prepared, rate, None).await;
        self.cost(roles, phase, "events", report.accepted, &before);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;
    use uuid::Uuid;

    fn event(player: &str, n: u128) -> SentEvent {
        SentEvent {
            game_id: "bench".into(),
            player_id: player.into(),
            event_id: Uuid::from_u128(n),
            timestamp: Utc::now(),
            session_id: "s".into(),
            body: json!({"type": "session_start", "properties": {}}),
        }
    }

    #[test]
    fn fresh_players_are_spread_evenly_among_known_ones() {
        let known: Vec<SentEvent> = (0..90).map(|i| event(&format!("player-{}", i % 9), i)).collect();
        let fresh: Vec<SentEvent> = (0..10).map(|i| event(&format!("new-{i}"), 1000 + i)).collect();
        let plan = SinglePlan::mix(known, fresh);
        assert_eq!(plan.events.len(), 100);
        let positions: Vec<usize> =
            plan.events.iter().enumerate().filter(|(_, e)| e.player_id.starts_with("new-")).map(|(i, _)| i).collect();
        assert_eq!(positions.len(), 10);
        // Every tenth-ish request, never all at one end.
        for pair in positions.windows(2) {
            assert!((7..=11).contains(&(pair[1] - pair[0])), "{positions:?}");
        }
        assert!(positions[0] >= 5 && *positions.last().unwrap() < 100, "{positions:?}");
        // Known events keep their order.
        let known_ids: Vec<u128> =
            plan.events.iter().filter(|e| !e.player_id.starts_with("new-")).map(|e| e.event_id.as_u128()).collect();
        assert_eq!(known_ids, (0..90).collect::<Vec<_>>());
    }

    #[test]
    fn mixing_without_fresh_or_without_known_players_keeps_everything() {
        let only_known = SinglePlan::mix((0..5).map(|i| event("a", i)).collect(), Vec::new());
        assert_eq!(only_known.events.len(), 5);
        let only_fresh = SinglePlan::mix(Vec::new(), (0..5).map(|i| event(&format!("n{i}"), i)).collect());
        assert_eq!(only_fresh.events.len(), 5);
    }

    #[test]
    fn first_events_count_players_not_seen_before() {
        let mut seen: HashSet<String> = ["player-1".to_string()].into();
        let events = vec![event("player-1", 1), event("new-1", 2), event("new-1", 3), event("new-2", 4)];
        assert_eq!(first_events(&events, &mut seen, |_| true), 2);
        assert!(seen.contains("new-2"));
        // A second phase over the same players has no first event left.
        assert_eq!(first_events(&events, &mut seen, |_| true), 0);
        let mut fresh_seen = HashSet::new();
        assert_eq!(first_events(&events, &mut fresh_seen, |e| e.event_id.as_u128() != 2), 3);
    }

    #[test]
    fn first_of_each_player_renames_and_keeps_one_event_per_player() {
        let events = vec![event("p1", 1), event("p1", 2), event("p2", 3), event("p2", 4), event("p3", 5)];
        let firsts = first_of_each_player(&events, "new-x", |e| e.event_id.as_u128() != 3);
        let got: Vec<(String, u128)> = firsts.iter().map(|e| (e.player_id.clone(), e.event_id.as_u128())).collect();
        assert_eq!(got, vec![("new-x-p1".into(), 1), ("new-x-p2".into(), 4), ("new-x-p3".into(), 5)]);
    }
}
