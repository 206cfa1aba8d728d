use super::*;
use crate::test_support::*;
use chrono::Duration;
use gm_schemas::events::{ProgressionStatus::*, ResourceFlow::*};

/// handle + apply, as the shard does; panics on a refusal.
fn record(actor: &mut PlayerActor, event: &EventEnvelope) -> ProcessedEvent {
    let out = actor.handle(PlayerCommand::Record(event)).expect("accepted");
    actor.apply(&out);
    out
}

fn fresh() -> PlayerActor {
    PlayerActor::new(key())
}

/// A fresh actor that already saw one session_start at `at(0)` in client session "s1".
fn started() -> PlayerActor {
    let mut a = fresh();
    record(&mut a, &envelope(0, at(0), Some("s1"), session_start()));
    a
}

fn derived(e: &ProcessedEvent) -> &Derived {
    match &e.body {
        ProcessedBody::Event { derived, .. } => derived,
        ProcessedBody::PlayerErased { .. } => panic!("not an event"),
    }
}

/// A mixed sequence of every event type, with a derived session and a client session.
fn script() -> Vec<EventEnvelope> {
    vec![
        envelope(1, at(0), Some("s1"), session_start()),
        envelope(2, at(1), None, progression(Start, "l1", None)),
        envelope(3, at(2), None, progression(Complete, "l1", Some(40))),
        envelope(4, at(3), None, purchase(499, "USD", "sword", 2)),
        envelope(5, at(4), None, item_use("sword", 1)),
        envelope(6, at(5), None, resource(Source, "gold", 100)),
        envelope(7, at(6), None, resource(Sink, "gold", 30)),
        envelope(8, at(7), None, score(10)),
        envelope(9, at(8), None, achievement("first")),
        envelope(10, at(9), None, design("boss:forest:defeated")),
        envelope(11, at(10), None, profile_update(Some("DE"), Some("de"))),
        envelope(12, at(11), None, consent(true, false)),
        envelope(13, at(12), Some("s1"), session_end(None)),
        envelope(14, at(100), None, progression(Fail, "l2", None)),
        envelope(15, at(200), None, purchase(100, "EUR", "gem", 1)),
        envelope(16, at(150), None, score(3)),
    ]
}

#[test]
fn session_start_counts_a_session_and_opens_it() {
    let a = started();
    assert_eq!(a.state.session_count, 1);
    assert_eq!(a.state.session.open.iter().map(|o| o.id.clone()).collect::<Vec<_>>(), vec![sid("s1")]);
    assert_eq!(a.state.playtime_seconds, 0);
}

#[test]
fn session_end_adds_client_length_to_playtime_and_closes_session() {
    let mut a = started();
    let out = record(&mut a, &envelope(1, at(10), Some("s1"), session_end(Some(500))));
    assert_eq!(derived(&out).closed_session.as_ref().map(|c| c.length_seconds), Some(500));
    assert_eq!(a.state.playtime_seconds, 500);
    assert!(a.state.session.open.is_empty());
    assert_eq!(a.state.session_count, 1);
}

#[test]
fn session_end_without_length_adds_measured_playtime() {
    let mut a = started();
    record(&mut a, &envelope(1, at(10), None, session_end(None)));
    assert_eq!(a.state.playtime_seconds, 600);
}

#[test]
fn progression_start_sets_level_without_xp_or_completion() {
    let mut a = started();
    record(&mut a, &envelope(1, at(1), None, progression(Start, "l1", Some(99))));
    assert_eq!(a.state.current_level.as_deref(), Some("l1"));
    assert_eq!((a.state.levels_completed, a.state.xp), (0, 0));
}

#[test]
fn progression_complete_adds_score_as_xp_and_counts_level() {
    let mut a = started();
    record(&mut a, &envelope(1, at(1), None, progression(Complete, "l1", Some(40))));
    record(&mut a, &envelope(2, at(2), None, progression(Complete, "l2", None)));
    assert_eq!(a.state.current_level.as_deref(), Some("l2"));
    assert_eq!((a.state.levels_completed, a.state.xp), (2, 40));
}

#[test]
fn progression_fail_sets_level_without_xp_or_completion() {
    let mut a = started();
    record(&mut a, &envelope(1, at(1), None, progression(Fail, "l3", Some(70))));
    assert_eq!(a.state.current_level.as_deref(), Some("l3"));
    assert_eq!((a.state.levels_completed, a.state.xp), (0, 0));
}

#[test]
fn purchase_counts_revenue_per_currency_and_adds_inventory() {
    let mut a = started();
    record(&mut a, &envelope(1, at(1), None, purchase(499, "USD", "sword", 2)));
    record(&mut a, &envelope(2, at(2), None, purchase(1, "USD", "shield", 1)));
    record(&mut a, &envelope(3, at(3), None, purchase(250, "EUR", "sword", 3)));
    let s = &a.state;
    assert_eq!(s.purchases, 3);
    assert_eq!(s.revenue_minor, BTreeMap::from([("EUR".to_string(), 250), ("USD".to_string(), 500)]));
    assert_eq!(s.inventory, BTreeMap::from([("shield".to_string(), 1), ("sword".to_string(), 5)]));
}

#[test]
fn resource_source_adds_and_sink_subtracts_balance() {
    let mut a = started();
    record(&mut a, &envelope(1, at(1), None, resource(Source, "gold", 100)));
    record(&mut a, &envelope(2, at(2), None, resource(Sink, "gold", 130)));
    record(&mut a, &envelope(3, at(3), None, resource(Source, "gems", 7)));
    assert_eq!(a.state.balances, BTreeMap::from([("gems".to_string(), 7), ("gold".to_string(), -30)]));
}

/// Score and design change nothing but the bookkeeping every event does.
fn assert_only_bookkeeping_changes(body: EventBody) {
    let mut a = started();
    let before = a.state.clone();
    let e = envelope(1, at(5), None, body);
    record(&mut a, &e);
    let mut expected = before;
    expected.seq += 1;
    expected.last_seen = Some(at(5));
    expected.recent_ids.remember(e.event_id, e.received_at, &Policy::default().dedup);
    expected.session.open[0].last_event_at = at(5);
    expected.session.open[0].last_received_at = at(5);
    assert_eq!(a.state, expected);
}

#[test]
fn score_changes_only_seq_last_seen_and_session_activity() {
    assert_only_bookkeeping_changes(score(12345));
}

#[test]
fn design_changes_only_seq_last_seen_and_session_activity() {
    assert_only_bookkeeping_changes(design("boss:forest:defeated"));
}

#[test]
fn achievements_are_counted() {
    let mut a = started();
    record(&mut a, &envelope(1, at(1), None, achievement("a")));
    record(&mut a, &envelope(2, at(2), None, achievement("b")));
    assert_eq!(a.state.achievements, 2);
}

#[test]
fn item_use_decrements_inventory() {
    let mut a = started();
    record(&mut a, &envelope(1, at(1), None, purchase(100, "USD", "potion", 5)));
    record(&mut a, &envelope(2, at(2), None, item_use("potion", 2)));
    assert_eq!(a.state.inventory.get("potion"), Some(&3));
}

#[test]
fn profile_update_replaces_only_given_fields() {
    let mut a = started();
    record(&mut a, &envelope(1, at(1), None, profile_update(Some("DE"), Some("de"))));
    record(&mut a, &envelope(2, at(2), None, profile_update(Some("FR"), None)));
    assert_eq!((a.state.country.as_deref(), a.state.language.as_deref()), (Some("FR"), Some("de")));
    record(&mut a, &envelope(3, at(3), None, profile_update(None, Some("fr"))));
    assert_eq!((a.state.country.as_deref(), a.state.language.as_deref()), (Some("FR"), Some("fr")));
}

#[test]
fn consent_update_replaces_consent() {
    let mut a = started();
    record(&mut a, &envelope(1, at(1), None, consent(true, false)));
    assert_eq!(a.state.consent, Some(Consent { analytics: true, personalisation: false }));
    record(&mut a, &envelope(2, at(2), None, consent(false, true)));
    assert_eq!(a.state.consent, Some(Consent { analytics: false, personalisation: true }));
}

#[test]
fn seq_increments_by_one_per_emitted_event() {
    let mut a = fresh();
    let seqs: Vec<u64> = script().iter().map(|e| record(&mut a, e).seq).collect();
    assert_eq!(seqs, (1..=16).collect::<Vec<u64>>());
    assert_eq!(a.state.seq, 16);
}

#[test]
fn first_seen_flag_only_on_first_event() {
    let mut a = fresh();
    let flags: Vec<bool> = script().iter().map(|e| derived(&record(&mut a, e)).first_seen).collect();
    assert!(flags[0]);
    assert!(flags[1..].iter().all(|f| !f));
    assert_eq!(a.state.first_seen, Some(at(0)));
    assert_eq!(a.state.last_seen, Some(at(200)), "an earlier timestamp does not move last_seen back");
}

#[test]
fn duplicate_event_id_is_refused() {
    let mut a = started();
    let e = envelope(1, at(1), None, purchase(100, "USD", "x", 1));
    record(&mut a, &e);
    let before = a.state.clone();
    assert_eq!(a.handle(PlayerCommand::Record(&e)), Err(Refusal::Duplicate(e.event_id)));
    // Same id with another body is still the same event.
    let retry = envelope(1, at(2), None, score(1));
    assert_eq!(a.handle(PlayerCommand::Record(&retry)), Err(Refusal::Duplicate(e.event_id)));
    assert_eq!(a.state, before);
}

/// A score event `n` received `minutes` after `at(0)`.
fn received(n: u128, minutes: i64) -> EventEnvelope {
    let mut e = envelope(n, at(minutes), None, score(1));
    e.received_at = at(minutes);
    e
}

#[test]
fn a_retry_after_thousands_of_other_events_within_7_days_counts_once() {
    let mut a = fresh();
    let first = received(0, 0);
    record(&mut a, &first);
    // 3,000 other events (far more than the 256 ids remembered before), over 6 days.
    for n in 1..=3_000u128 {
        record(&mut a, &received(n, n as i64 * 2 * 60 * 24 / 1_000));
    }
    let mut retry = first.clone();
    retry.received_at = at(7 * 24 * 60 - 1); // resent 7 days minus a minute later
    assert_eq!(a.handle(PlayerCommand::Record(&retry)), Err(Refusal::Duplicate(first.event_id)));
}

#[test]
fn an_id_received_more_than_the_window_ago_counts_again() {
    let mut a = fresh();
    let first = received(0, 0);
    record(&mut a, &first);
    // Another event 7 days and 61 minutes later: the first id's hour bucket is past the window.
    record(&mut a, &received(1, 7 * 24 * 60 + 61));
    let mut late = first.clone();
    late.received_at = at(7 * 24 * 60 + 62);
    assert!(a.handle(PlayerCommand::Record(&late)).is_ok(), "older than the window: counted again (documented)");
}

#[test]
fn the_window_and_cap_come_from_the_policy() {
    let policy =
        Policy { dedup: crate::dedup::DedupPolicy { window: Duration::hours(1), max_ids: 2 }, ..Policy::default() };
    let mut a = PlayerActor::with_policy(key(), PlayerState::default(), policy);
    for n in 0..3 {
        record(&mut a, &received(n, 0));
    }
    assert_eq!(a.state.recent_ids.len(), 2);
    assert!(a.handle(PlayerCommand::Record(&received(0, 1))).is_ok(), "over the cap: the oldest id went first");
    assert!(a.handle(PlayerCommand::Record(&received(2, 1))).is_err());
    record(&mut a, &received(5, 3 * 60));
    assert!(a.handle(PlayerCommand::Record(&received(2, 3 * 60))).is_ok(), "past the 1 h window (+1 h bucket)");
}

#[test]
fn dedup_survives_a_snapshot_and_restart() {
    let mut a = fresh();
    for n in 0..1_000u128 {
        record(&mut a, &received(n, n as i64));
    }
    let bytes = a.state.to_snapshot().unwrap();
    let restored = PlayerActor::with_policy(key(), PlayerState::from_snapshot(&bytes).unwrap(), Policy::default());
    assert_eq!(restored.state, a.state);
    for n in [0u128, 500, 999] {
        assert!(matches!(restored.handle(PlayerCommand::Record(&received(n, 2_000))), Err(Refusal::Duplicate(_))));
    }
}

#[test]
fn erase_emits_player_erased_with_next_seq() {
    let mut a = fresh();
    for e in script() {
        record(&mut a, &e);
    }
    let request = erasure(99, at(300));
    let out = a.handle(PlayerCommand::Erase(&request)).unwrap();
    assert_eq!(out.seq, 17);
    assert_eq!(out.event_id, request.erasure_id);
    assert_eq!(
        out.body,
        ProcessedBody::PlayerErased { erasure_id: request.erasure_id, requested_at: request.requested_at }
    );
}

#[test]
fn applying_erasure_wipes_state_but_keeps_seq_and_sets_erased_at() {
    let mut a = fresh();
    for e in script() {
        record(&mut a, &e);
    }
    let out = a.handle(PlayerCommand::Erase(&erasure(99, at(300)))).unwrap();
    a.apply(&out);
    assert_eq!(a.state, PlayerState { seq: 17, erased_at: Some(at(300)), ..PlayerState::default() });
}

#[test]
fn events_after_an_erasure_are_refused_and_change_nothing() {
    let mut a = fresh();
    for e in script() {
        record(&mut a, &e);
    }
    let out = a.handle(PlayerCommand::Erase(&erasure(99, at(300)))).unwrap();
    a.apply(&out);
    let before = a.state.clone();
    let late = envelope(100, at(301), None, score(1));
    assert_eq!(a.handle(PlayerCommand::Record(&late)), Err(Refusal::Erased(at(300))));
    assert_eq!(a.state, before);
    // A repeated erasure request (a retry) is still answered, so its projections confirm.
    assert!(a.handle(PlayerCommand::Erase(&erasure(99, at(302)))).is_ok());
}

#[test]
fn replay_is_deterministic_across_fresh_actors() {
    let (mut a, mut b) = (fresh(), fresh());
    let out_a: Vec<ProcessedEvent> = script().iter().map(|e| record(&mut a, e)).collect();
    let out_b: Vec<ProcessedEvent> = script().iter().map(|e| record(&mut b, e)).collect();
    assert_eq!(out_a, out_b);
    assert_eq!(a.state, b.state);
    // Folding the emitted events alone (no decisions) rebuilds the same state.
    let mut c = fresh();
    for e in &out_a {
        c.apply(e);
    }
    assert_eq!(c.state, a.state);
    // The script crossed the inactivity gap: the derived session id is the same in both runs.
    assert!(out_a.iter().any(|e| derived(e).session_id.as_ref().is_some_and(|s| s.as_str().starts_with("d-"))));
}

#[test]
fn snapshot_round_trips_through_json() {
    let mut a = fresh();
    for e in script() {
        record(&mut a, &e);
    }
    record(&mut a, &envelope(50, at(201), None, score(1))); // leaves a session open
    assert!(!a.state.session.open.is_empty());
    let bytes = serde_json::to_vec(&a.state).unwrap();
    let back: PlayerState = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, a.state);
}

#[test]
fn a_version_2_snapshot_upcasts_its_last_256_ids_into_the_time_window() {
    let ids: Vec<Uuid> = (0..256u128).map(eid).collect();
    let v2 = serde_json::json!({
        "version": 2, "seq": 300, "first_seen": "2024-03-01T10:00:00Z", "last_seen": "2024-03-10T12:00:00Z",
        "current_level": null, "levels_completed": 0, "xp": 0, "playtime_seconds": 0, "session_count": 1,
        "purchases": 0, "revenue_minor": {}, "inventory": {}, "balances": {}, "achievements": 0,
        "country": null, "language": null, "consent": null, "erased_at": null,
        "session": {"open": null},
        "recent_event_ids": ids,
    });
    let state = PlayerState::from_snapshot(&serde_json::to_vec(&v2).unwrap()).unwrap();
    assert_eq!(state.version, SNAPSHOT_VERSION);
    assert_eq!(state.seq, 300);
    assert_eq!(state.recent_ids.len(), 256);
    let a = PlayerActor::with_policy(key(), state, Policy::default());
    // Taken as received in the hour of the last event: remembered for 7 days from there.
    let mut retry = envelope(7, at(6 * 24 * 60), None, score(1));
    retry.received_at = at(6 * 24 * 60);
    assert_eq!(a.handle(PlayerCommand::Record(&retry)), Err(Refusal::Duplicate(eid(7))));
    let back = PlayerState::from_snapshot(&a.state.to_snapshot().unwrap()).unwrap();
    assert_eq!(back, a.state, "a v3 snapshot reads back as written");
}

#[test]
fn a_session_start_after_other_events_of_its_session_counts_one_session() {
    let mut a = fresh();
    let later = record(&mut a, &envelope(2, at(2), Some("s1"), score(1)));
    let start = record(&mut a, &envelope(1, at(0), Some("s1"), session_start()));
    assert!(derived(&later).session_started);
    assert!(!derived(&start).session_started);
    assert_eq!(a.state.session_count, 1);
    let end = record(&mut a, &envelope(3, at(10), Some("s1"), session_end(None)));
    assert_eq!(derived(&end).closed_session.as_ref().map(|c| (c.started_at, c.length_seconds)), Some((at(0), 600)));
}

#[test]
fn an_implicit_session_then_a_client_session_start_is_one_session() {
    let mut a = fresh();
    let identify = record(&mut a, &envelope(1, at(0), None, profile_update(Some("DE"), None)));
    let implicit = derived(&identify).session_id.clone().unwrap();
    assert!(implicit.as_str().starts_with("d-") && derived(&identify).session_started);
    let started = record(&mut a, &envelope(2, at(1), Some("seg-1"), session_start()));
    assert_eq!(
        derived(&started),
        &Derived { session_id: Some(sid("seg-1")), merged_session: Some(implicit), ..Derived::default() }
    );
    record(&mut a, &envelope(3, at(5), None, score(1)));
    assert_eq!(a.state.session_count, 1);
    let ends = a.handle_tick(at(35));
    assert_eq!(ends.len(), 1);
    let closed = derived(&ends[0]).closed_session.clone().unwrap();
    assert_eq!((closed.session_id, closed.started_at, closed.length_seconds), (sid("seg-1"), at(0), 300));
}

#[test]
fn the_session_timer_emits_a_session_end_after_the_timeout_deterministically() {
    let mut a = started();
    record(&mut a, &envelope(1, at(7), Some("s1"), score(1)));
    assert_eq!(a.handle_tick(at(36)), vec![], "29 minutes after the last event was received");
    let ends = a.handle_tick(at(37));
    assert_eq!(ends.len(), 1);
    let end = &ends[0];
    assert_eq!((end.seq, end.timestamp, end.received_at, end.kind()), (3, at(7), at(37), "session_end"));
    let d = derived(end);
    assert!(d.closed_by_timer && !d.session_started && !d.first_seen);
    assert_eq!(d.closed_session.as_ref().map(|c| (c.session_id.clone(), c.length_seconds)), Some((sid("s1"), 420)));
    // The same state decides the same, whenever and wherever it runs (ids included).
    let restored = PlayerActor::with_policy(
        key(),
        PlayerState::from_snapshot(&a.state.to_snapshot().unwrap()).unwrap(),
        Policy::default(),
    );
    assert_eq!(restored.handle_tick(at(37)), ends);
    a.apply(end);
    assert!(a.state.session.open.is_empty());
    assert_eq!((a.state.seq, a.state.playtime_seconds, a.state.session_count), (3, 420, 1));
    assert_eq!(a.handle_tick(at(1000)), vec![], "closed once");
    // A late event of the closed session changes no count.
    let late = record(&mut a, &envelope(9, at(6), Some("s1"), score(1)));
    assert!(!derived(&late).session_started && derived(&late).closed_session.is_none());
}

#[test]
fn the_timeout_comes_from_the_policy() {
    let policy = Policy {
        session: crate::session::SessionPolicy { timeout: Duration::minutes(5), end_grace: Duration::seconds(10) },
        ..Policy::default()
    };
    let mut a = PlayerActor::with_policy(key(), PlayerState::default(), policy);
    record(&mut a, &envelope(0, at(0), Some("s1"), session_start()));
    assert!(a.handle_tick(at(4)).is_empty());
    assert_eq!(a.handle_tick(at(5)).len(), 1);
}

#[test]
fn a_version_3_snapshot_upcasts_its_open_session_into_the_list() {
    let mut v3: serde_json::Value = serde_json::to_value(started().state).unwrap();
    v3["version"] = serde_json::json!(3);
    v3["session"] = serde_json::json!({"open": {"id": "s1", "started_at": at(0), "last_event_at": at(4)}});
    let state = PlayerState::from_snapshot(&serde_json::to_vec(&v3).unwrap()).unwrap();
    assert_eq!(state.version, SNAPSHOT_VERSION);
    let open = &state.session.open;
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].id.clone(), open[0].last_event_at, open[0].last_received_at), (sid("s1"), at(4), at(4)));
    v3["session"] = serde_json::json!({"open": null});
    assert!(PlayerState::from_snapshot(&serde_json::to_vec(&v3).unwrap()).unwrap().session.open.is_empty());
}

/// (analytics withheld, personalisation withheld) of an emitted event.
fn withheld(e: &ProcessedEvent) -> (bool, bool) {
    (derived(e).analytics_withheld, derived(e).personalisation_withheld)
}

#[test]
fn consent_withdrawn_marks_the_players_later_events_until_it_returns() {
    let mut a = started();
    assert_eq!(
        withheld(&record(&mut a, &envelope(1, at(1), Some("s1"), score(1)))),
        (false, false),
        "no consent given"
    );
    // The consent_update itself is the record of the choice: never withheld.
    assert_eq!(withheld(&record(&mut a, &envelope(2, at(2), Some("s1"), consent(false, true)))), (false, false));
    let off = record(&mut a, &envelope(3, at(3), Some("s1"), purchase(99, "USD", "gem", 1)));
    assert_eq!(withheld(&off), (true, false));
    // State still folds (the actor keeps its facts; only the read models leave the event out).
    assert_eq!((a.state.purchases, a.state.seq), (1, 4));
    assert_eq!(withheld(&record(&mut a, &envelope(4, at(4), Some("s1"), consent(false, false)))), (false, false));
    assert_eq!(withheld(&record(&mut a, &envelope(5, at(5), Some("s1"), item_use("gem", 1)))), (true, true));
    record(&mut a, &envelope(6, at(6), Some("s1"), consent(true, false)));
    assert_eq!(withheld(&record(&mut a, &envelope(7, at(7), Some("s1"), score(2)))), (false, true));
    record(&mut a, &envelope(8, at(8), Some("s1"), consent(true, true)));
    assert_eq!(withheld(&record(&mut a, &envelope(9, at(9), Some("s1"), score(3)))), (false, false));
}

#[test]
fn consent_decisions_survive_a_snapshot_and_mark_the_session_timers_end() {
    let mut a = started();
    record(&mut a, &envelope(1, at(1), Some("s1"), consent(false, false)));
    let restored = PlayerActor::with_policy(
        key(),
        PlayerState::from_snapshot(&a.state.to_snapshot().unwrap()).unwrap(),
        Policy::default(),
    );
    let next = envelope(2, at(2), Some("s1"), score(1));
    assert_eq!(withheld(&restored.handle(PlayerCommand::Record(&next)).unwrap()), (true, true));
    let ends = restored.handle_tick(at(40));
    assert_eq!(ends.len(), 1);
    assert!(derived(&ends[0]).closed_by_timer);
    assert_eq!(withheld(&ends[0]), (true, true), "the timer's session_end of a player without consent");
}
