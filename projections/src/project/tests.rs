use super::*;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use gm_schemas::events::*;
use gm_schemas::{ClosedSession, Derived, MinorUnits, Name, SessionId};
use uuid::Uuid;

const G: &str = "space-race";

fn game() -> GameId {
    GameId::parse(G).unwrap()
}
fn pid(p: &str) -> PlayerId {
    PlayerId::parse(p).unwrap()
}
fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}
fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}
fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}
fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 3, d).unwrap()
}
/// 2024-03-`d` `h`:`m` UTC.
fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, d, h, m, 0).unwrap()
}

fn ev(player: &str, seq: u64, t: DateTime<Utc>, body: EventBody) -> ProcessedEvent {
    ev_d(player, seq, t, body, Derived::default())
}
fn ev_d(player: &str, seq: u64, t: DateTime<Utc>, body: EventBody, derived: Derived) -> ProcessedEvent {
    ProcessedEvent {
        game_id: game(),
        player_id: pid(player),
        seq,
        event_id: Uuid::from_u128(u128::from(seq) << 32 | u128::from(player.len() as u32)),
        timestamp: t,
        received_at: t,
        body: ProcessedBody::Event { event: body, derived },
    }
}
fn erased_ev(player: &str, seq: u64, t: DateTime<Utc>) -> ProcessedEvent {
    ProcessedEvent {
        game_id: game(),
        player_id: pid(player),
        seq,
        event_id: Uuid::from_u128(999),
        timestamp: t,
        received_at: t,
        body: ProcessedBody::PlayerErased { erasure_id: Uuid::from_u128(999), requested_at: t },
    }
}

fn started(id: &str) -> Derived {
    Derived { session_id: Some(SessionId::parse(id).unwrap()), session_started: true, ..Derived::default() }
}
fn closing(id: &str, start: DateTime<Utc>, length_seconds: u64) -> Derived {
    Derived {
        session_id: Some(SessionId::parse(id).unwrap()),
        session_started: false,
        closed_session: Some(ClosedSession {
            session_id: SessionId::parse(id).unwrap(),
            started_at: start,
            ended_at: start + Duration::seconds(length_seconds as i64),
            length_seconds,
        }),
        first_seen: false,
        ..Derived::default()
    }
}

fn score() -> EventBody {
    EventBody::Score(Score { board: name("main"), value: 1 })
}
fn buy(amount: i64, currency: Currency) -> EventBody {
    EventBody::Purchase(Purchase {
        amount_minor: MinorUnits::parse(amount).unwrap(),
        currency,
        item_id: name("gem"),
        quantity: 1,
        store: None,
    })
}
fn prog(status: ProgressionStatus, level: &str, score: Option<i64>) -> EventBody {
    EventBody::Progression(Progression { status, level_id: name(level), score })
}
fn end() -> EventBody {
    EventBody::SessionEnd(SessionEnd::default())
}

fn player_day(p: &str, d: u32) -> PlayerDay {
    PlayerDay { game_id: game(), day: day(d), player_id: pid(p) }
}

// ---- daily activity ----

#[test]
fn daily_activity_gives_distinct_player_days_across_midnight_utc() {
    let events = vec![
        ev("a", 1, at(10, 23, 50), score()),
        ev("a", 2, at(10, 23, 59), score()),
        ev("a", 3, at(11, 0, 1), score()),
        ev("b", 1, at(11, 8, 0), score()),
        ev("b", 2, at(11, 9, 0), score()),
    ];
    let cs = changes(ProjectionName::DailyActivity, &events);
    let mut got = cs.active_days.clone();
    got.sort_by(|x, y| (x.day, &x.player_id).cmp(&(y.day, &y.player_id)));
    assert_eq!(got, vec![player_day("a", 10), player_day("a", 11), player_day("b", 11)]);
    assert!(cs.erased.is_empty());
    assert!(cs.profiles.is_empty() && cs.session_days.is_empty() && cs.revenue.is_empty());
}

#[test]
fn empty_batch_changes_nothing() {
    for p in ProjectionName::ALL {
        assert!(changes(p, &[]).is_empty(), "{p}");
    }
}

// ---- sessions ----

#[test]
fn sessions_count_starts_per_start_day() {
    let events = vec![
        ev_d("a", 1, at(10, 9, 0), score(), started("s1")),
        ev_d("b", 1, at(10, 23, 59), score(), started("s2")),
        ev_d("a", 2, at(11, 0, 0), score(), started("s3")),
        ev("a", 3, at(11, 0, 5), score()),
    ];
    let cs = changes(ProjectionName::Sessions, &events);
    let started: Vec<(NaiveDate, u64, u64)> = cs.session_days.iter().map(|d| (d.day, d.started, d.closed)).collect();
    assert_eq!(started, vec![(day(10), 2, 0), (day(11), 1, 0)]);
}

#[test]
fn closed_sessions_count_on_their_start_day_and_bucket() {
    // A session started 23:30 on the 10th is closed on the 11th: it belongs to the 10th.
    let events = vec![
        ev_d("a", 5, at(11, 0, 30), end(), closing("s1", at(10, 23, 30), 3600)),
        ev_d("b", 5, at(11, 12, 0), end(), closing("s2", at(11, 11, 59), 59)),
        ev_d("c", 5, at(11, 14, 0), end(), closing("s3", at(11, 12, 0), 7200)),
    ];
    let cs = changes(ProjectionName::Sessions, &events);
    assert_eq!(
        cs.session_days,
        vec![
            SessionDayDelta {
                game_id: game(),
                day: day(10),
                started: 0,
                closed: 1,
                total_length_seconds: 3600,
                buckets: [0, 0, 0, 0, 0, 1, 0],
            },
            SessionDayDelta {
                game_id: game(),
                day: day(11),
                started: 0,
                closed: 2,
                total_length_seconds: 7259,
                buckets: [1, 0, 0, 0, 0, 0, 1],
            },
        ]
    );
}

#[test]
fn an_implicit_session_renamed_and_closed_by_the_timer_counts_one_session_and_no_extra_event() {
    let implicit = started("d-1");
    let named = Derived {
        session_id: Some(SessionId::parse("seg-1").unwrap()),
        merged_session: Some(SessionId::parse("d-1").unwrap()),
        ..Derived::default()
    };
    let timer = Derived { closed_by_timer: true, ..closing("seg-1", at(10, 9, 0), 600) };
    let events = vec![
        ev_d("a", 1, at(10, 9, 0), score(), implicit),
        ev_d("a", 2, at(10, 9, 1), score(), named),
        ev_d("a", 3, at(10, 9, 10), end(), timer),
    ];
    let cs = changes(ProjectionName::Sessions, &events);
    let counts: Vec<(NaiveDate, u64, u64, u64)> =
        cs.session_days.iter().map(|d| (d.day, d.started, d.closed, d.total_length_seconds)).collect();
    assert_eq!(counts, vec![(day(10), 1, 1, 600)]);
    let profile = &changes(ProjectionName::PlayerProfiles, &events).profiles[0];
    assert_eq!((profile.events, profile.sessions, profile.playtime_seconds, profile.last_seq), (2, 1, 600, 3));
}

#[test]
fn an_event_that_closes_one_session_and_starts_another_counts_both() {
    let mut d = closing("s1", at(10, 8, 0), 120);
    d.session_id = Some(SessionId::parse("s2").unwrap());
    d.session_started = true;
    let cs = changes(ProjectionName::Sessions, &[ev_d("a", 9, at(10, 9, 0), score(), d)]);
    assert_eq!(cs.session_days.len(), 1);
    let s = &cs.session_days[0];
    assert_eq!((s.started, s.closed, s.total_length_seconds, s.buckets[1]), (1, 1, 120, 1));
}

// ---- revenue ----

#[test]
fn revenue_sums_per_day_and_currency_with_distinct_payer_days() {
    let events = vec![
        ev("a", 1, at(10, 9, 0), buy(100, usd())),
        ev("a", 2, at(10, 10, 0), buy(250, usd())),
        ev("a", 3, at(10, 11, 0), buy(300, eur())),
        ev("b", 1, at(10, 23, 59), buy(1, usd())),
        ev("b", 2, at(11, 0, 0), buy(5, usd())),
        ev("c", 1, at(11, 1, 0), score()),
    ];
    let cs = changes(ProjectionName::Revenue, &events);
    let mut rows: Vec<(NaiveDate, String, i64, u64)> =
        cs.revenue.iter().map(|r| (r.day, r.currency.to_string(), r.amount_minor, r.purchases)).collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            (day(10), "EUR".to_string(), 300, 1),
            (day(10), "USD".to_string(), 351, 3),
            (day(11), "USD".to_string(), 5, 1),
        ]
    );
    let mut payers = cs.payer_days.clone();
    payers.sort_by(|x, y| (x.day, &x.player_id).cmp(&(y.day, &y.player_id)));
    assert_eq!(payers, vec![player_day("a", 10), player_day("b", 10), player_day("b", 11)]);
}

// ---- funnel ----

#[test]
fn funnel_counts_start_complete_fail_per_level() {
    use ProgressionStatus::*;
    let events = vec![
        ev("a", 1, at(10, 9, 0), prog(Start, "l1", None)),
        ev("a", 2, at(10, 9, 1), prog(Fail, "l1", None)),
        ev("a", 3, at(10, 9, 2), prog(Start, "l1", None)),
        ev("a", 4, at(10, 9, 3), prog(Complete, "l1", Some(10))),
        ev("b", 1, at(10, 9, 0), prog(Start, "l1", None)),
        ev("b", 2, at(10, 9, 5), prog(Start, "l2", None)),
        ev("b", 3, at(10, 9, 6), score()),
    ];
    let cs = changes(ProjectionName::Funnel, &events);
    let rows: Vec<(&str, u64, u64, u64)> =
        cs.funnel.iter().map(|f| (f.level_id.as_str(), f.starts, f.completes, f.fails)).collect();
    assert_eq!(rows, vec![("l1", 3, 1, 1), ("l2", 1, 0, 0)]);
    // One row per player and level: the earliest start, completion and failure.
    type Times = (Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let players: Vec<(&str, &str, Times)> = cs
        .funnel_players
        .iter()
        .map(|f| (f.level_id.as_str(), f.player_id.as_str(), (f.first_start, f.first_complete, f.first_fail)))
        .collect();
    assert_eq!(
        players,
        vec![
            ("l1", "a", (Some(at(10, 9, 0)), Some(at(10, 9, 3)), Some(at(10, 9, 1)))),
            ("l1", "b", (Some(at(10, 9, 0)), None, None)),
            ("l2", "b", (Some(at(10, 9, 5)), None, None)),
        ]
    );
}

#[test]
fn funnel_players_keep_the_earliest_times_whatever_the_order_of_arrival() {
    use ProgressionStatus::*;
    let events = vec![
        ev("a", 5, at(10, 9, 30), prog(Complete, "l1", None)),
        ev("a", 4, at(10, 9, 20), prog(Start, "l1", None)),
        ev("a", 3, at(10, 9, 10), prog(Start, "l1", None)),
        ev("a", 6, at(10, 9, 25), prog(Complete, "l1", None)),
    ];
    let cs = changes(ProjectionName::Funnel, &events);
    assert_eq!(cs.funnel_players.len(), 1);
    assert_eq!(
        (cs.funnel_players[0].first_start, cs.funnel_players[0].first_complete),
        (Some(at(10, 9, 10)), Some(at(10, 9, 25)))
    );
    assert_eq!(cs.funnel_players[0].first_fail, None);
}

// ---- profiles ----

#[test]
fn profiles_aggregate_counters_times_settings_and_revenue_per_currency() {
    use ProgressionStatus::*;
    let events = vec![
        ev_d("a", 4, at(10, 9, 0), EventBody::SessionStart(SessionStart::default()), started("s1")),
        ev("a", 5, at(10, 9, 5), prog(Complete, "l1", Some(40))),
        ev("a", 6, at(10, 9, 6), prog(Complete, "l2", None)),
        ev("a", 7, at(10, 9, 7), prog(Start, "l3", None)),
        ev("a", 8, at(10, 9, 8), buy(100, usd())),
        ev("a", 9, at(10, 9, 9), buy(50, usd())),
        ev("a", 10, at(10, 9, 10), buy(70, eur())),
        ev(
            "a",
            11,
            at(10, 9, 11),
            EventBody::ProfileUpdate(ProfileUpdate { country: Some("DE".into()), language: Some("de".into()) }),
        ),
        ev(
            "a",
            12,
            at(10, 9, 12),
            EventBody::ProfileUpdate(ProfileUpdate { country: Some("FR".into()), language: None }),
        ),
        ev("a", 13, at(10, 9, 13), EventBody::ConsentUpdate(ConsentUpdate { analytics: true, personalisation: false })),
        // Out of order in time: first_seen takes the minimum, last_seq the maximum.
        ev("a", 14, at(10, 8, 0), score()),
        ev_d("a", 15, at(10, 9, 30), end(), closing("s1", at(10, 9, 0), 1800)),
        ev("b", 1, at(10, 10, 0), score()),
    ];
    let cs = changes(ProjectionName::PlayerProfiles, &events);
    assert_eq!(cs.profiles.len(), 2);
    let a = cs.profiles.iter().find(|p| p.player_id == pid("a")).unwrap();
    assert_eq!(
        *a,
        ProfileDelta {
            game_id: game(),
            player_id: pid("a"),
            first_seen: at(10, 8, 0),
            last_seen: at(10, 9, 30),
            events: 12,
            sessions: 1,
            playtime_seconds: 1800,
            purchases: 3,
            levels_completed: 2,
            xp: 40,
            current_level: Some("l3".into()),
            country: Some("FR".into()),
            language: Some("de".into()),
            consent: Some((true, false)),
            revenue: vec![(usd(), 150), (eur(), 70)],
            last_seq: 15,
        }
    );
    let b = cs.profiles.iter().find(|p| p.player_id == pid("b")).unwrap();
    assert_eq!((b.events, b.first_seen, b.last_seen, b.last_seq, b.purchases), (1, at(10, 10, 0), at(10, 10, 0), 1, 0));
    assert!(b.revenue.is_empty());
}

// ---- erasure ----

/// a buys, plays a session and progresses, then is erased, then comes back; b is untouched.
fn batch_with_erasure() -> Vec<ProcessedEvent> {
    use ProgressionStatus::*;
    vec![
        ev_d("a", 1, at(10, 9, 0), EventBody::SessionStart(SessionStart::default()), started("s1")),
        ev("a", 2, at(10, 9, 1), buy(100, usd())),
        ev("a", 3, at(10, 9, 2), prog(Start, "l1", None)),
        ev_d("a", 4, at(10, 9, 10), end(), closing("s1", at(10, 9, 0), 600)),
        ev("b", 1, at(10, 9, 3), buy(40, usd())),
        erased_ev("a", 5, at(10, 12, 0)),
        ev("a", 6, at(11, 8, 0), score()),
    ]
}

#[test]
fn erasure_drops_players_earlier_profile_rows_and_lists_player() {
    let cs = changes(ProjectionName::PlayerProfiles, &batch_with_erasure());
    assert_eq!(cs.erased, vec![(game(), pid("a"))]);
    let a = cs.profiles.iter().find(|p| p.player_id == pid("a")).expect("a's events after the erasure");
    assert_eq!((a.events, a.purchases, a.sessions, a.playtime_seconds), (1, 0, 0, 0));
    assert_eq!((a.first_seen, a.last_seq), (at(11, 8, 0), 6));
    assert!(a.revenue.is_empty());
    assert!(cs.profiles.iter().any(|p| p.player_id == pid("b")));
}

#[test]
fn erasure_drops_players_earlier_activity_days_and_lists_player() {
    let cs = changes(ProjectionName::DailyActivity, &batch_with_erasure());
    assert_eq!(cs.erased, vec![(game(), pid("a"))]);
    let mut got = cs.active_days.clone();
    got.sort_by(|x, y| (x.day, &x.player_id).cmp(&(y.day, &y.player_id)));
    assert_eq!(got, vec![player_day("b", 10), player_day("a", 11)]);
}

#[test]
fn erasure_drops_earlier_payer_days_but_keeps_revenue_sums() {
    let cs = changes(ProjectionName::Revenue, &batch_with_erasure());
    assert_eq!(cs.erased, vec![(game(), pid("a"))]);
    assert_eq!(cs.payer_days, vec![player_day("b", 10)]);
    assert_eq!(cs.revenue.len(), 1);
    assert_eq!((cs.revenue[0].amount_minor, cs.revenue[0].purchases), (140, 2));
}

#[test]
fn erasure_leaves_session_and_funnel_aggregates_unchanged() {
    let with = batch_with_erasure();
    let without: Vec<ProcessedEvent> =
        with.iter().filter(|e| !matches!(e.body, ProcessedBody::PlayerErased { .. })).cloned().collect();
    let mut erased = changes(ProjectionName::Sessions, &with);
    assert_eq!(erased.confirmed_erasures, vec![Uuid::from_u128(999)]);
    erased.confirmed_erasures.clear();
    assert_eq!(erased, changes(ProjectionName::Sessions, &without));
    let sessions = changes(ProjectionName::Sessions, &with);
    assert_eq!(sessions.session_days.len(), 1);
    assert_eq!((sessions.session_days[0].started, sessions.session_days[0].closed), (1, 1));
    // The funnel's event counts stay; its per-player rows follow the player-days: the erased
    // player's rows are re-keyed by the store, none is built from events before the erasure.
    let funnel = changes(ProjectionName::Funnel, &with);
    assert_eq!(funnel.confirmed_erasures, vec![Uuid::from_u128(999)]);
    assert_eq!(funnel.funnel, changes(ProjectionName::Funnel, &without).funnel);
    assert_eq!(funnel.funnel.len(), 1);
    assert_eq!(funnel.funnel[0].starts, 1);
    assert_eq!(funnel.erased, vec![(game(), pid("a"))]);
    assert!(funnel.funnel_players.is_empty(), "{:?}", funnel.funnel_players);
    assert_eq!(changes(ProjectionName::Funnel, &without).funnel_players.len(), 1, "a's start, without the erasure");
}

#[test]
fn erasure_only_cuts_the_erased_players_events_before_it() {
    // b's events before a's erasure are kept; a's only after it.
    let events = vec![
        ev("b", 1, at(10, 9, 0), score()),
        ev("a", 1, at(10, 9, 1), score()),
        erased_ev("a", 2, at(10, 9, 2)),
        erased_ev("a", 3, at(10, 9, 3)),
    ];
    let cs = changes(ProjectionName::DailyActivity, &events);
    assert_eq!(cs.active_days, vec![player_day("b", 10)]);
    assert_eq!(cs.erased.len(), 2);
    assert!(cs.erased.iter().all(|e| *e == (game(), pid("a"))));
}

#[test]
fn every_projection_confirms_each_erasure_of_the_batch() {
    for p in ProjectionName::ALL {
        let cs = changes(p, &batch_with_erasure());
        assert_eq!(cs.confirmed_erasures, vec![Uuid::from_u128(999)], "{p}");
        assert!(!cs.is_empty(), "{p}: an erasure alone must still be applied, to record its confirmation");
        assert!(changes(p, &[ev("b", 1, at(10, 9, 3), score())]).confirmed_erasures.is_empty(), "{p}");
        // Still under a pseudonym (no id found for it): nothing keyed by the id was removed.
        let unresolved = erased_ev("pz_0123456789abcdef0123456789abcdef", 2, at(10, 9, 4));
        assert!(changes(p, &[unresolved]).confirmed_erasures.is_empty(), "{p}");
    }
}

/// One event of each type, as the gateway's example batch sends them.
fn one_of_each_type() -> Vec<EventBody> {
    let wire = serde_json::json!([
        {"type": "session_start", "properties": {"platform": "ios", "app_version": "2.4.1"}},
        {"type": "session_end", "properties": {"length_seconds": 1800}},
        {"type": "progression", "properties": {"status": "complete", "level_id": "world-1:level-3", "score": 10}},
        {"type": "purchase", "properties": {"amount_minor": 499, "currency": "EUR", "item_id": "gem-pack", "quantity": 1}},
        {"type": "resource", "properties": {"flow": "sink", "virtual_currency": "gems", "amount": 25, "item_id": "magnet"}},
        {"type": "score", "properties": {"board": "weekly-high", "value": 18450}},
        {"type": "achievement", "properties": {"achievement_id": "first-three-stars"}},
        {"type": "item_use", "properties": {"item_id": "booster-magnet", "quantity": 2}},
        {"type": "design", "properties": {"event_id": "boss:forest:defeated", "value": 3.5}},
        {"type": "profile_update", "properties": {"country": "FR", "language": "fr"}},
        {"type": "consent_update", "properties": {"analytics": true, "personalisation": false}},
    ]);
    let bodies: Vec<EventBody> = serde_json::from_value(wire).unwrap();
    let types: Vec<&str> = bodies.iter().map(EventBody::type_name).collect();
    assert_eq!(types, EventBody::TYPES, "one event of every type, in TYPES order");
    bodies
}

#[test]
fn a_projection_skips_only_kinds_that_change_nothing_in_it() {
    // Derived values that session-driven rows would count, on every event.
    let derived = Derived {
        session_id: Some(SessionId::parse("s-9").unwrap()),
        session_started: true,
        closed_session: Some(ClosedSession {
            session_id: SessionId::parse("s-8").unwrap(),
            started_at: at(1, 10, 0),
            ended_at: at(1, 10, 30),
            length_seconds: 1800,
        }),
        first_seen: true,
        ..Derived::default()
    };
    for body in one_of_each_type() {
        let event = ev_d("p1", 1, at(1, 11, 0), body, derived.clone());
        for projection in ProjectionName::ALL {
            if !projection.reads(event.kind()) {
                let changes = changes(projection, std::slice::from_ref(&event));
                assert!(changes.is_empty(), "{projection} skips {} but builds {changes:?}", event.kind());
            }
        }
    }
    // An erasure is read by every projection (each must forget the player and confirm).
    let erasure = erased_ev("p1", 2, at(1, 12, 0));
    assert!(ProjectionName::ALL.iter().all(|p| p.reads(erasure.kind())));
    // And the filter does skip: revenue reads purchases only.
    assert!(!ProjectionName::Revenue.reads("score") && ProjectionName::Revenue.reads("purchase"));
}

// ---- consent ----

fn consent(analytics: bool, personalisation: bool) -> EventBody {
    EventBody::ConsentUpdate(ConsentUpdate { analytics, personalisation })
}

#[test]
fn events_withheld_from_analytics_change_no_analytics_read_model() {
    let closing = closing("s-8", at(1, 10, 0), 1800);
    let counted = Derived { session_started: true, first_seen: true, ..closing };
    let withheld = Derived { analytics_withheld: true, ..counted.clone() };
    for body in one_of_each_type() {
        let event = ev_d("p1", 1, at(1, 11, 0), body.clone(), withheld.clone());
        for projection in ProjectionName::ALL.into_iter().filter(|p| *p != ProjectionName::Recommendations) {
            let cs = changes(projection, std::slice::from_ref(&event));
            assert!(cs.is_empty(), "{projection} counts a withheld {}: {cs:?}", event.kind());
        }
        // The same event counted: at least the profile, activity and sessions change.
        let event = ev_d("p1", 1, at(1, 11, 0), body, counted.clone());
        for projection in [ProjectionName::PlayerProfiles, ProjectionName::DailyActivity, ProjectionName::Sessions] {
            assert!(!changes(projection, std::slice::from_ref(&event)).is_empty(), "{projection}");
        }
    }
}

#[test]
fn a_batch_counts_a_players_events_around_the_withheld_ones() {
    use ProgressionStatus::*;
    let off = Derived { analytics_withheld: true, ..Derived::default() };
    let events = vec![
        ev("a", 1, at(1, 9, 0), prog(Start, "l1", None)),
        ev("a", 2, at(1, 9, 1), consent(false, true)),
        ev_d("a", 3, at(2, 9, 0), buy(100, usd()), off.clone()),
        ev_d("a", 4, at(2, 9, 1), prog(Complete, "l1", None), off),
        ev("a", 5, at(3, 9, 0), consent(true, true)),
        ev("a", 6, at(3, 9, 1), score()),
        ev("b", 1, at(2, 9, 0), buy(40, usd())),
    ];
    let days: Vec<(String, NaiveDate)> = changes(ProjectionName::DailyActivity, &events)
        .active_days
        .into_iter()
        .map(|d| (d.player_id.to_string(), d.day))
        .collect();
    assert_eq!(days, vec![("a".into(), day(1)), ("b".into(), day(2)), ("a".into(), day(3))], "not a's day 2");
    let revenue = changes(ProjectionName::Revenue, &events);
    assert_eq!((revenue.revenue[0].amount_minor, revenue.payer_days.len()), (40, 1), "only b's purchase");
    let funnel = changes(ProjectionName::Funnel, &events);
    assert_eq!((funnel.funnel[0].starts, funnel.funnel[0].completes), (1, 0));
    assert_eq!(funnel.funnel_players[0].first_complete, None);
    let profile =
        changes(ProjectionName::PlayerProfiles, &events).profiles.into_iter().find(|p| p.player_id == pid("a"));
    let profile = profile.unwrap();
    assert_eq!((profile.events, profile.purchases, profile.levels_completed), (4, 0, 0));
    assert_eq!((profile.last_seen, profile.consent), (at(3, 9, 1), Some((true, true))));
}

#[test]
fn personalisation_withdrawn_forgets_the_players_interactions_until_it_returns() {
    let use_item = |item: &str| EventBody::ItemUse(ItemUse { item_id: name(item), quantity: 1 });
    let off = Derived { personalisation_withheld: true, ..Derived::default() };
    let events = vec![
        ev("a", 1, at(1, 9, 0), buy(100, usd())),
        ev("a", 2, at(1, 9, 1), consent(true, false)),
        ev_d("a", 3, at(1, 9, 2), use_item("sword"), off.clone()),
        ev("b", 1, at(1, 9, 3), use_item("shield")),
    ];
    let cs = changes(ProjectionName::Recommendations, &events);
    // a's purchase counts in the items (as in an earlier batch), then a is forgotten.
    assert_eq!((cs.forgotten, cs.erased), (vec![(game(), pid("a"))], vec![]));
    let kept: Vec<(&str, &str)> = cs.interactions.iter().map(|i| (i.player_id.as_str(), i.item.as_str())).collect();
    assert_eq!(kept, vec![("a", "gem"), ("b", "shield")]);
    assert!(ProjectionName::Recommendations.reads("consent_update"));
    // Given back in a later batch: a's interactions count again, nobody is forgotten.
    let back = vec![ev("a", 4, at(1, 9, 4), consent(true, true)), ev("a", 5, at(1, 9, 5), use_item("bow"))];
    let cs = changes(ProjectionName::Recommendations, &back);
    let kept: Vec<(&str, &str)> = cs.interactions.iter().map(|i| (i.player_id.as_str(), i.item.as_str())).collect();
    assert_eq!(kept, vec![("a", "bow")]);
    assert!(cs.forgotten.is_empty());
    // Withheld events add nothing, whatever the batch.
    let withheld = vec![ev_d("a", 6, at(1, 9, 6), use_item("axe"), off)];
    assert!(changes(ProjectionName::Recommendations, &withheld).is_empty());
    // Analytics consent alone leaves recommendations as they are.
    let analytics_off = vec![ev("a", 1, at(1, 9, 0), consent(false, true)), ev("a", 2, at(1, 9, 1), buy(1, usd()))];
    let cs = changes(ProjectionName::Recommendations, &analytics_off);
    assert!(cs.forgotten.is_empty() && cs.interactions.len() == 1);
}
