//! The analytics read models on hand-built change sets: DAU/WAU/MAU and their window edges,
//! revenue per currency and payer, sessions, the funnel, player profiles, and erasure.

use crate::data::*;
use crate::Fixture;
use chrono::{Duration, NaiveDate};
use gm_projections::model::{
    ActiveUsersDay, ChangeSet, DateRange, FunnelCounts, FunnelPlayerDelta, FunnelStep, ProjectionName, RevenueDay,
    SessionDayDelta, Target, SESSION_BUCKETS,
};
use gm_projections::{AnalyticsQueries, ReadModelStore};
use gm_schemas::GameId;

/// p1 plays days 1..=10 of January; p2 days 1 and 8; p3 day 10; p4 day 10. On day 10, p1
/// pays 600 + 400 USD cents and p3 pays 500 EUR cents.
async fn hand_built<F: Fixture>(f: &F) {
    let store = f.store();
    let mut active: Vec<(&str, NaiveDate)> = (1..=10).map(|d| ("p1", jan(d))).collect();
    active.extend([("p2", jan(1)), ("p2", jan(8)), ("p3", jan(10)), ("p4", jan(10))]);
    // Two batches with an overlapping row (insert-or-ignore), the second with a duplicate.
    let (a, b) = active.split_at(6);
    let mut b = b.to_vec();
    b.push(("p1", jan(1)));
    b.push(("p4", jan(10)));
    let activity = ProjectionName::DailyActivity;
    let first = ChangeSet { active_days: player_days(&game(), a), ..Default::default() };
    store.apply(Target::Live, activity, 0, None, 5, &first).await.unwrap();
    let second = ChangeSet { active_days: player_days(&game(), &b), ..Default::default() };
    store.apply(Target::Live, activity, 0, Some(5), 9, &second).await.unwrap();
    store.apply(Target::Live, ProjectionName::Revenue, 0, None, 3, &revenue_batch()).await.unwrap();
}

pub async fn dau_wau_mau_and_revenue_per_payer_on_hand_built_change_sets<F: Fixture>(f: F) {
    let store = f.store();
    hand_built(&f).await;

    let au = store.active_users(&game(), range(jan(8), jan(10))).await.unwrap();
    assert_eq!(
        au,
        vec![
            ActiveUsersDay::new(jan(8), 2, 2, 2),
            ActiveUsersDay::new(jan(9), 1, 2, 2),
            ActiveUsersDay::new(jan(10), 3, 4, 4)
        ]
    );
    assert!((au[2].stickiness - 0.75).abs() < 1e-12);
    // Day 1: p2's day-1 activity is inside the 30-day window of day 10 but not the 7-day one.
    assert_eq!(
        store.active_users(&game(), range(jan(1), jan(1))).await.unwrap(),
        vec![ActiveUsersDay::new(jan(1), 2, 2, 2)]
    );
    let other = other_game();
    assert_eq!(
        store.active_users(&other, range(jan(10), jan(10))).await.unwrap(),
        vec![ActiveUsersDay::new(jan(10), 0, 0, 0)]
    );
    // Window edges: one play on day 1 counts in the WAU of day 7 (not 8), the MAU of day 30 (not 31).
    let once = ChangeSet { active_days: player_days(&other, &[("x", jan(1))]), ..Default::default() };
    store.apply(Target::Live, ProjectionName::DailyActivity, 5, None, 1, &once).await.unwrap();
    let w: Vec<(u64, u64, u64)> = store
        .active_users(&other, range(jan(7), jan(8)))
        .await
        .unwrap()
        .iter()
        .map(|d| (d.dau, d.wau, d.mau))
        .collect();
    assert_eq!(w, vec![(0, 1, 1), (0, 0, 1)]);
    let m: Vec<u64> =
        store.active_users(&other, range(jan(30), jan(31))).await.unwrap().iter().map(|d| d.mau).collect();
    assert_eq!(m, vec![1, 0]);
    // A full year's range answers one row per day, in order.
    let year = DateRange::parse(jan(1), jan(1) + Duration::days(365)).unwrap();
    let all = store.active_users(&game(), year).await.unwrap();
    assert_eq!(all.len(), 366);
    assert!(all.windows(2).all(|w| w[0].day + Duration::days(1) == w[1].day));
    assert_eq!(all.iter().map(|d| d.dau).sum::<u64>(), 10 + 2 + 2);

    let rev = store.revenue(&game(), range(jan(1), jan(31))).await.unwrap();
    assert_eq!(
        rev,
        vec![
            RevenueDay::new(jan(10), "EUR".into(), 500, 1, 2, 3),
            RevenueDay::new(jan(10), "USD".into(), 1000, 2, 2, 3)
        ],
        "only days and currencies with revenue"
    );
    assert!((rev[1].arppu_minor - 500.0).abs() < 1e-12);
    assert!((rev[1].arpdau_minor - 1000.0 / 3.0).abs() < 1e-12);
    assert!((rev[1].conversion - 2.0 / 3.0).abs() < 1e-12);
    assert!((rev[0].arppu_minor - 250.0).abs() < 1e-12);
    assert!(store.revenue(&other, range(jan(1), jan(31))).await.unwrap().is_empty());
}

pub async fn sessions_funnel_and_profiles_add_up_across_and_within_batches<F: Fixture>(f: F) {
    let store = f.store();
    let mut buckets = [0; 7];
    buckets[1] = 1;
    let delta =
        SessionDayDelta { game_id: game(), day: jan(10), started: 2, closed: 1, total_length_seconds: 120, buckets };
    let s = ChangeSet { session_days: vec![delta.clone()], ..Default::default() };
    let sessions = ProjectionName::Sessions;
    store.apply(Target::Live, sessions, 0, None, 1, &s).await.unwrap();
    store.apply(Target::Live, sessions, 0, Some(1), 2, &s).await.unwrap();
    let days = store.sessions(&game(), range(jan(9), jan(10))).await.unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!((days[0].day, days[0].sessions_started, days[0].average_length_seconds), (jan(9), 0, 0.0));
    assert_eq!(days[0].length_distribution.iter().map(|b| b.sessions).sum::<u64>(), 0);
    assert_eq!((days[1].sessions_started, days[1].sessions_closed), (4, 2));
    assert!((days[1].average_length_seconds - 120.0).abs() < 1e-12);
    let labels: Vec<&str> = days[1].length_distribution.iter().map(|b| b.bucket.as_str()).collect();
    assert_eq!(labels, SESSION_BUCKETS.iter().map(|(l, _)| *l).collect::<Vec<_>>());
    let counts: Vec<u64> = days[1].length_distribution.iter().map(|b| b.sessions).collect();
    assert_eq!(counts, vec![0, 2, 0, 0, 0, 0, 0]);
    // The same key twice in one change set adds up.
    let twice = ChangeSet { session_days: vec![delta.clone(), delta], ..Default::default() };
    store.apply(Target::Live, sessions, 0, Some(2), 3, &twice).await.unwrap();
    let day = &store.sessions(&game(), range(jan(10), jan(10))).await.unwrap()[0];
    assert_eq!((day.sessions_started, day.sessions_closed, day.length_distribution[1].sessions), (8, 4, 4));

    let funnel_p = ProjectionName::Funnel;
    store.apply(Target::Live, funnel_p, 0, None, 1, &funnel("level-2", 5)).await.unwrap();
    store.apply(Target::Live, funnel_p, 0, Some(1), 2, &funnel("level-1", 4)).await.unwrap();
    let mut both = funnel("level-1", 1);
    both.funnel.extend(funnel("level-1", 1).funnel);
    store.apply(Target::Live, funnel_p, 0, Some(2), 3, &both).await.unwrap();
    let steps = store.funnel(&game()).await.unwrap();
    let events = |starts, completes| FunnelCounts { starts, completes, ..Default::default() };
    assert_eq!(
        steps,
        vec![FunnelStep::new("level-1".into(), events(6, 3)), FunnelStep::new("level-2".into(), events(5, 1))]
    );
    // Events without a player's row: no player started, so no completion rate.
    assert_eq!((steps[0].players_started, steps[0].completion_rate), (0, None));
    assert!(store.funnel(&other_game()).await.unwrap().is_empty());

    let profiles = ProjectionName::PlayerProfiles;
    let mut second = profile("p1", 2, 5, 3);
    second.country = None;
    second.current_level = Some("level-2".into());
    second.consent = Some((true, false));
    second.revenue.push((eur(), 50));
    let first = ChangeSet { profiles: vec![profile("p1", 3, 4, 2)], ..Default::default() };
    let second = ChangeSet { profiles: vec![second], ..Default::default() };
    store.apply(Target::Live, profiles, 0, None, 1, &first).await.unwrap();
    store.apply(Target::Live, profiles, 0, Some(1), 2, &second).await.unwrap();
    let p = store.player_profile(&game(), &pid("p1")).await.unwrap().unwrap();
    assert_eq!((p.game_id.as_str(), p.player_id.as_str()), (GAME, "p1"));
    assert_eq!((p.first_seen, p.last_seen), (jan_at(2), jan_at(5)));
    assert_eq!((p.events, p.sessions, p.playtime_seconds, p.purchases, p.xp, p.last_seq), (5, 2, 200, 2, 10, 3));
    assert_eq!(p.levels_completed, 0);
    assert_eq!(p.country.as_deref(), Some("DE"), "a None delta keeps the setting");
    assert_eq!((p.current_level.as_deref(), p.language.as_deref()), (Some("level-2"), None));
    assert_eq!((p.consent_analytics, p.consent_personalisation), (Some(true), Some(false)));
    let revenue: Vec<(&str, i64)> = p.revenue_minor.iter().map(|(c, a)| (c.as_str(), *a)).collect();
    assert_eq!(revenue, vec![("EUR", 50), ("USD", 398)]);
    assert_eq!(store.player_profile(&game(), &pid("p9")).await.unwrap(), None);
    assert_eq!(store.player_profile(&other_game(), &pid("p1")).await.unwrap(), None);

    // Both deltas in one change set give the same profile as two batches.
    let mut a = profile("p2", 3, 4, 2);
    a.language = Some("de".into());
    let mut b = profile("p2", 2, 5, 3);
    b.country = None;
    b.current_level = Some("level-2".into());
    b.consent = Some((true, false));
    b.revenue.push((eur(), 50));
    let one = ChangeSet { profiles: vec![a, b], ..Default::default() };
    store.apply(Target::Live, profiles, 0, Some(2), 3, &one).await.unwrap();
    let q = store.player_profile(&game(), &pid("p2")).await.unwrap().unwrap();
    assert_eq!(q.language.as_deref(), Some("de"));
    assert_eq!(gm_projections::model::PlayerProfile { player_id: "p1".into(), language: None, ..q }, p);
}

pub async fn erasure_keeps_dau_and_payer_counts_under_one_pseudonym<F: Fixture>(f: F) {
    let store = f.store();
    hand_built(&f).await;
    let profiles =
        ChangeSet { profiles: vec![profile("p1", 1, 10, 4), profile("p3", 10, 10, 1)], ..Default::default() };
    store.apply(Target::Live, ProjectionName::PlayerProfiles, 0, None, 1, &profiles).await.unwrap();
    let before_au = store.active_users(&game(), range(jan(1), jan(10))).await.unwrap();
    let before_rev = store.revenue(&game(), range(jan(10), jan(10))).await.unwrap();

    // Erased twice in the same change set: still one pseudonym, so WAU/MAU stay right.
    let erased = vec![(game(), pid("p1")), (game(), pid("p1"))];
    for (projection, expected) in
        [(ProjectionName::PlayerProfiles, 1), (ProjectionName::DailyActivity, 9), (ProjectionName::Revenue, 3)]
    {
        let c = ChangeSet { erased: erased.clone(), ..Default::default() };
        store.apply(Target::Live, projection, 0, Some(expected), expected + 1, &c).await.unwrap();
    }
    assert_eq!(store.player_profile(&game(), &pid("p1")).await.unwrap(), None);
    assert!(store.player_profile(&game(), &pid("p3")).await.unwrap().is_some(), "others untouched");
    assert!(!f.player_ids("profile_revenue").await.contains(&"p1".to_string()));
    assert_eq!(f.player_ids("profile_revenue").await, vec!["p3".to_string()]);
    for table in ["player_days", "payer_days"] {
        let ids = f.player_ids(table).await;
        assert!(!ids.iter().any(|id| id == "p1"), "{table}: {ids:?}");
        let pseudonyms: Vec<&String> = ids.iter().filter(|id| id.starts_with("erased-")).collect();
        let distinct: std::collections::BTreeSet<&String> = pseudonyms.iter().copied().collect();
        let rows = if table == "player_days" { 10 } else { 1 };
        assert_eq!((pseudonyms.len(), distinct.len()), (rows, 1), "{table}: {ids:?}");
    }
    assert_eq!(store.active_users(&game(), range(jan(1), jan(10))).await.unwrap(), before_au);
    assert_eq!(store.revenue(&game(), range(jan(10), jan(10))).await.unwrap(), before_rev);
}

/// Times come back to the millisecond, whatever finer part they were written with (the
/// embedded store keeps milliseconds): profiles' first and last seen, interactions' last
/// time, sealed values' reception, an erasure's request and completion, the audit trail.
pub async fn times_are_kept_to_the_millisecond<F: Fixture>(f: F) {
    use chrono::{DateTime, DurationRound, Utc};
    use gm_privacy::PrivacyStore;
    use gm_projections::recommend::{Interaction, RecommendationStore};
    let store = f.store();
    let fine = |t: DateTime<Utc>| t + Duration::nanoseconds(123_456_789);
    let ms = |t: DateTime<Utc>| t.duration_trunc(Duration::milliseconds(1)).unwrap();
    let mut delta = profile("p1", 2, 3, 1);
    delta.first_seen = fine(jan_at(2));
    delta.last_seen = fine(jan_at(3));
    let c = ChangeSet { profiles: vec![delta], ..Default::default() };
    store.apply(Target::Live, ProjectionName::PlayerProfiles, 0, None, 1, &c).await.unwrap();
    let p = store.player_profile(&game(), &pid("p1")).await.unwrap().unwrap();
    assert_eq!((p.first_seen, p.last_seen), (ms(fine(jan_at(2))), ms(fine(jan_at(3)))));
    assert_eq!(p.first_seen, jan_at(2) + Duration::milliseconds(123));

    let used = Interaction {
        game_id: game(),
        player_id: pid("p1"),
        item: "sword".into(),
        weight: 1.0,
        last_at: fine(jan_at(4)),
    };
    let c = ChangeSet { interactions: vec![used], ..Default::default() };
    store.apply(Target::Live, ProjectionName::Recommendations, 0, None, 1, &c).await.unwrap();
    let input = store.scoring_input(&game(), &pid("p1"), 1).await.unwrap();
    assert_eq!(input.owned, vec![("sword".to_string(), 1.0, ms(fine(jan_at(4))))]);

    let master = gm_privacy::MasterKey::from_bytes([5; 32]);
    let subject = master.subject_hasher().subject(&game(), &pid("p1"));
    let pseudonym = master.pseudonymizer().pseudonym(&game(), &pid("p1"));
    let key = master.wrap(&gm_privacy::DataKey::generate().unwrap()).unwrap();
    let new = gm_privacy::NewPlayer {
        subject,
        game_id: game(),
        player_id: pid("p1"),
        pseudonym: pseudonym.clone(),
        wrapped_key: key,
    };
    store.ensure_players(vec![new]).await.unwrap();
    let now = fine(Utc::now().duration_trunc(Duration::seconds(1)).unwrap());
    let sealed = gm_schemas::SealedPersonal { alg: "A256GCM".into(), nonce: "n".into(), sealed: "s".into() };
    let kept = gm_privacy::StoredPersonal {
        subject,
        game_id: game(),
        pseudonym,
        event_id: uuid::Uuid::from_u128(1),
        received_at: now,
        sealed,
    };
    store.keep_personal(vec![kept]).await.unwrap();
    assert_eq!(store.personal_of(&subject).await.unwrap()[0].received_at, ms(now));
    let request = gm_privacy::NewErasure {
        erasure_id: uuid::Uuid::from_u128(7),
        subject,
        game_id: game(),
        reason: "r".into(),
        requested_by: "a".into(),
        requested_at: now,
        suppressed_until: now + Duration::days(1),
    };
    store.begin_erasure(request).await.unwrap();
    let erasure = store.erasure(uuid::Uuid::from_u128(7)).await.unwrap().unwrap();
    assert_eq!(erasure.requested_at, ms(now));
    let record = store.player(&subject).await.unwrap().unwrap();
    assert_eq!((record.erased_at, record.suppressed_until), (Some(ms(now)), Some(ms(now + Duration::days(1)))));
    assert_eq!(store.audit_trail(1, None).await.unwrap()[0].at, ms(now));
}

/// A player's first start / completion / failure of `level` (minutes after 9:00 on 10 January).
fn funnel_player(game: &GameId, level: &str, player: &str, times: [Option<i64>; 3]) -> FunnelPlayerDelta {
    let t = |m: Option<i64>| m.map(|m| jan_at(10) + Duration::hours(9) + Duration::minutes(m));
    FunnelPlayerDelta {
        game_id: game.clone(),
        level_id: level.into(),
        player_id: pid(player),
        first_start: t(times[0]),
        first_complete: t(times[1]),
        first_fail: t(times[2]),
    }
}

/// The funnel by players: distinct players per level whatever they sent and in which order
/// (the earliest times kept), the median time from first start to first completion (odd and
/// even counts; a completion before the start left out), natural order of the levels, the
/// completion rate null where nobody started, and an erasure that changes no figure.
pub async fn funnel_counts_distinct_players_and_the_median_time_to_complete<F: Fixture>(f: F) {
    let store = f.store();
    let (g, p) = (game(), ProjectionName::Funnel);
    let fp = |level, player, times| funnel_player(&g, level, player, times);
    let first = ChangeSet {
        funnel_players: vec![
            // level-1: p2 5 min, p3 15 min; p1's start is corrected below.
            fp("level-1", "p1", [Some(10), None, None]),
            fp("level-1", "p2", [Some(0), Some(5), Some(2)]),
            fp("level-1", "p3", [Some(0), Some(15), None]),
            // level-10 sorts after level-2: p1 completed without a start we know of.
            fp("level-10", "p1", [None, Some(30), None]),
            // level-2: p1 2 min (p2 4 min below): median 3 min.
            fp("level-2", "p1", [Some(20), Some(22), None]),
        ],
        ..Default::default()
    };
    store.apply(Target::Live, p, 0, None, 1, &first).await.unwrap();
    let second = ChangeSet {
        funnel_players: vec![
            // An earlier start of p1 arrives late, then a completion; the same key twice in
            // one change set keeps the earliest of each.
            fp("level-1", "p1", [Some(9), Some(11), None]),
            fp("level-1", "p1", [Some(12), Some(10), Some(3)]),
            fp("level-2", "p2", [Some(20), Some(24), None]),
            // Completed before the start recorded: counted, but not in the median.
            fp("level-2", "p3", [Some(40), Some(30), None]),
            funnel_player(&other_game(), "level-1", "p9", [Some(0), Some(1), None]),
        ],
        ..Default::default()
    };
    store.apply(Target::Live, p, 0, Some(1), 2, &second).await.unwrap();

    let steps = store.funnel(&g).await.unwrap();
    type Rates = (Option<f64>, Option<f64>);
    let summary: Vec<(&str, u64, u64, u64, Rates)> = steps
        .iter()
        .map(|s| {
            let level = s.level_id.as_str();
            let rates = (s.completion_rate, s.conversion_from_previous);
            (level, s.players_started, s.players_completed, s.players_failed, rates)
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("level-1", 3, 3, 2, (Some(1.0), None)),
            ("level-2", 3, 3, 0, (Some(1.0), Some(1.0))),
            ("level-10", 0, 1, 0, (None, Some(0.0))),
        ]
    );
    let medians: Vec<Option<f64>> = steps.iter().map(|s| s.median_seconds_to_complete).collect();
    // level-1: p1 9→10 (60 s), p2 300 s, p3 900 s; level-2: p1 120 s, p2 240 s.
    assert_eq!(medians, vec![Some(300.0), Some(180.0), None]);
    let other = store.funnel(&other_game()).await.unwrap();
    assert_eq!((other.len(), other[0].players_started, other[0].median_seconds_to_complete), (1, 1, Some(60.0)));

    // p1 erased: the rows are re-keyed to one pseudonym, every figure stays.
    let erased = ChangeSet { erased: vec![(g.clone(), pid("p1")), (g.clone(), pid("p1"))], ..Default::default() };
    store.apply(Target::Live, p, 0, Some(2), 3, &erased).await.unwrap();
    assert_eq!(store.funnel(&g).await.unwrap(), steps);
    let rows = f.player_rows("funnel_players").await;
    assert!(!rows.iter().any(|(game, player)| game == GAME && player == "p1"), "{rows:?}");
    let pseudonyms: std::collections::BTreeSet<&String> =
        rows.iter().filter(|(_, player)| player.starts_with("erased-")).map(|(_, player)| player).collect();
    assert_eq!(pseudonyms.len(), 1, "{rows:?}");
    assert_eq!(rows.iter().filter(|(_, player)| player.starts_with("erased-")).count(), 3, "{rows:?}");
    // p1 again after the erasure: a new player.
    let again = ChangeSet { funnel_players: vec![fp("level-1", "p1", [Some(50), None, None])], ..Default::default() };
    store.apply(Target::Live, p, 0, Some(3), 4, &again).await.unwrap();
    let level_1 = &store.funnel(&g).await.unwrap()[0];
    assert_eq!((level_1.players_started, level_1.completion_rate), (4, Some(0.75)));
}
