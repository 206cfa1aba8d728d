//! The scenario of [`crate::data::scenario`] through `project::changes` into every
//! projection, as the workers apply it, and every read model's answer pinned to figures
//! worked out by hand from the event table in its doc.

use crate::data::*;
use crate::{Fixture, PLAYER_TABLES};
use chrono::{DateTime, NaiveDate, Utc};
use gm_privacy::PrivacyStore;
use gm_projections::leaderboard::{LeaderboardEntry, LeaderboardPage, Period, ALL_TIME_START};
use gm_projections::model::{
    ActiveUsersDay, FunnelCounts, FunnelStep, PlayerProfile, ProjectionName, RevenueDay, SessionCounts, SessionsDay,
    Target,
};
use gm_projections::recommend::{publish_pending, Reason, RecommendationList, RecommendationStore};
use gm_projections::retention::{Monetisation, NewReturningDay, RetentionCohort};
use gm_projections::{AnalyticsQueries, GameQueries, ReadModelStore, RecommendationQueries};
use std::collections::BTreeMap;

fn page(total: u64, entries: &[(u64, &str, i64)]) -> LeaderboardPage {
    LeaderboardPage {
        total,
        entries: entries
            .iter()
            .map(|(rank, p, score)| LeaderboardEntry { rank: *rank, player_id: p.to_string(), score: *score })
            .collect(),
    }
}

struct Expected<'a> {
    player: &'a str,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    /// events, sessions, playtime, purchases, levels completed, xp, last seq
    counts: (u64, u64, u64, u64, u64, i64, u64),
    revenue: &'a [(&'a str, i64)],
    level: Option<&'a str>,
}

fn profile_of(game: &str, e: Expected) -> PlayerProfile {
    let (events, sessions, playtime_seconds, purchases, levels_completed, xp, last_seq) = e.counts;
    PlayerProfile {
        game_id: game.into(),
        player_id: e.player.into(),
        first_seen: e.first,
        last_seen: e.last,
        events,
        sessions,
        playtime_seconds,
        purchases,
        revenue_minor: e.revenue.iter().map(|(c, a)| (c.to_string(), *a)).collect::<BTreeMap<_, _>>(),
        levels_completed,
        xp,
        current_level: e.level.map(String::from),
        country: None,
        language: None,
        consent_analytics: None,
        consent_personalisation: None,
        last_seq,
    }
}

fn counts(started: u64, closed: u64, total_length_seconds: u64, buckets: [u64; 7]) -> SessionCounts {
    SessionCounts { started, closed, total_length_seconds, buckets }
}

/// A recommendation's item, reason and score, the score within 1e-12 relative.
fn assert_list(list: &RecommendationList, expected: &[(&str, Reason, f64)], who: &str) {
    let got: Vec<(&str, &Reason)> = list.items.iter().map(|r| (r.item.as_str(), &r.reason)).collect();
    let want: Vec<(&str, &Reason)> = expected.iter().map(|(i, r, _)| (*i, r)).collect();
    assert_eq!(got, want, "{who}: {list:?}");
    for (r, (_, _, score)) in list.items.iter().zip(expected) {
        assert!((r.score - score).abs() <= score.abs() * 1e-12, "{who}: {} scored {} not {score}", r.item, r.score);
    }
    assert_eq!((list.game_id.as_str(), list.player_id.as_str(), list.generated_at), (GAME, who, scoring_now()));
}

/// The affinity of an interaction of `weight` last made at `last`, at [`scoring_now`]
/// with a half-life of 14 days.
fn affinity(weight: f64, last: DateTime<Utc>) -> f64 {
    let age = (scoring_now() - last).num_seconds() as f64;
    weight * (-age / (14.0 * 86_400.0)).exp2()
}

fn similar(item: &str) -> Reason {
    Reason::SimilarTo { item: item.into() }
}

pub async fn events_through_every_projection_give_the_pinned_figures<F: Fixture>(f: F) {
    let store = f.store();
    let end = project_all(store, Target::Live, &scenario()).await;
    assert_eq!(end, 37);
    for projection in ProjectionName::ALL {
        assert_eq!(store.checkpoint(Target::Live, projection, 0).await.unwrap(), Some(37), "{projection}");
    }
    let g = game();
    let days = range(mar(4), mar(12));
    let d = |n: u32| mar(n);

    // Activity: alice 4, 5, 11 March; bob 4, 5; carol 5, 12; dave 6 and (late) 4.
    let au = store.active_users(&g, days).await.unwrap();
    let expected: Vec<ActiveUsersDay> = [
        (4, 3, 3, 3),
        (5, 3, 4, 4),
        (6, 1, 4, 4),
        (7, 0, 4, 4),
        (8, 0, 4, 4),
        (9, 0, 4, 4),
        (10, 0, 4, 4),
        (11, 1, 4, 4),
        (12, 1, 3, 4),
    ]
    .into_iter()
    .map(|(n, dau, wau, mau)| ActiveUsersDay::new(d(n), dau, wau, mau))
    .collect();
    assert_eq!(au, expected);

    // Sessions count on the day they started; closed ones with their length.
    let sessions = store.sessions(&g, days).await.unwrap();
    let by_day: std::collections::HashMap<NaiveDate, SessionCounts> = [
        (d(4), counts(2, 2, 2400 + 780, [0, 0, 1, 0, 1, 0, 0])),
        (d(5), counts(3, 2, 1500 + 30, [1, 0, 0, 1, 0, 0, 0])),
        (d(6), counts(1, 0, 0, [0; 7])),
        (d(11), counts(1, 0, 0, [0; 7])),
        (d(12), counts(1, 0, 0, [0; 7])),
    ]
    .into_iter()
    .collect();
    assert_eq!(sessions, gm_projections::model::sessions_over(days, &by_day));
    assert_eq!(sessions[0], SessionsDay::from_counts(d(4), &counts(2, 2, 3180, [0, 0, 1, 0, 1, 0, 0])));
    assert!((sessions[1].average_length_seconds - 765.0).abs() < 1e-12);

    // Revenue per day and currency; payers and DAU of the day.
    assert_eq!(
        store.revenue(&g, days).await.unwrap(),
        vec![
            RevenueDay::new(d(4), "EUR".into(), 999, 1, 2, 3),
            RevenueDay::new(d(4), "USD".into(), 499 + 199, 2, 2, 3),
            RevenueDay::new(d(5), "USD".into(), 499, 1, 1, 3),
        ]
    );
    // level-1: alice 10:05 → 10:20 (900 s), bob started and failed, carol 20:01 → 20:02 (60 s).
    let level_1 = FunnelCounts {
        starts: 3,
        completes: 2,
        fails: 1,
        players_started: 3,
        players_completed: 2,
        players_failed: 1,
        players_started_and_completed: 2,
        median_seconds_to_complete: Some(480.0),
    };
    let level_2 = FunnelCounts { starts: 1, players_started: 1, ..Default::default() };
    let funnel = store.funnel(&g).await.unwrap();
    let mut expected = vec![FunnelStep::new("level-1".into(), level_1), FunnelStep::new("level-2".into(), level_2)];
    expected[1].conversion_from_previous = Some(1.0 / 3.0);
    assert_eq!(funnel, expected);
    assert_eq!((funnel[0].completion_rate, funnel[1].completion_rate), (Some(2.0 / 3.0), Some(0.0)));

    // Profiles.
    let alice = PlayerProfile {
        country: Some("DE".into()),
        language: Some("de".into()),
        consent_analytics: Some(true),
        consent_personalisation: Some(false),
        ..profile_of(
            GAME,
            Expected {
                player: "alice",
                first: at(4, 10, 0),
                last: at(11, 8, 5),
                counts: (13, 3, 2400 + 1500, 1, 1, 100, 13),
                revenue: &[("USD", 499)],
                level: Some("level-1"),
            },
        )
    };
    let bob = Expected {
        player: "bob",
        first: at(4, 11, 0),
        last: at(5, 12, 1),
        counts: (9, 2, 780, 2, 0, 0, 9),
        revenue: &[("EUR", 999), ("USD", 199)],
        level: Some("level-1"),
    };
    let carol = Expected {
        player: "carol",
        first: at(5, 20, 0),
        last: at(12, 20, 0),
        counts: (8, 2, 30, 1, 1, 40, 8),
        revenue: &[("USD", 499)],
        level: Some("level-2"),
    };
    let dave = Expected {
        player: "dave",
        first: at(4, 23, 59),
        last: at(6, 7, 2),
        counts: (4, 1, 0, 0, 0, 0, 4),
        revenue: &[],
        level: None,
    };
    let profile = |p: &'static str| async move { store.player_profile(&game(), &pid(p)).await };
    assert_eq!(profile("alice").await.unwrap(), Some(alice));
    assert_eq!(profile("bob").await.unwrap(), Some(profile_of(GAME, bob)));
    assert_eq!(profile("carol").await.unwrap(), Some(profile_of(GAME, carol)));
    assert_eq!(profile("dave").await.unwrap(), Some(profile_of(GAME, dave)));
    assert_eq!(profile("nobody").await.unwrap(), None);
    let moon_alice = Expected {
        player: "alice",
        first: at(4, 12, 0),
        last: at(4, 12, 2),
        counts: (3, 1, 0, 1, 0, 0, 3),
        revenue: &[("USD", 100)],
        level: None,
    };
    assert_eq!(
        store.player_profile(&other_game(), &pid("alice")).await.unwrap(),
        Some(profile_of(OTHER_GAME, moon_alice))
    );

    // Leaderboards: best score per UTC day, ISO week (from Monday 4 March) and all time; ties
    // share a rank and list by player id descending.
    let board_of = |period, start| async move { store.leaderboard(&board(period, start), 0, 10).await };
    assert_eq!(board_of(Period::Daily, d(4)).await.unwrap(), page(2, &[(1, "bob", 1200), (1, "alice", 1200)]));
    assert_eq!(
        board_of(Period::Daily, d(5)).await.unwrap(),
        page(3, &[(1, "carol", 2000), (2, "alice", 900), (3, "bob", 50)])
    );
    assert_eq!(board_of(Period::Daily, d(6)).await.unwrap(), page(1, &[(1, "dave", 10)]));
    let week = page(4, &[(1, "carol", 2000), (2, "bob", 1200), (2, "alice", 1200), (4, "dave", 10)]);
    assert_eq!(board_of(Period::Weekly, d(4)).await.unwrap(), week);
    assert_eq!(board_of(Period::Weekly, d(11)).await.unwrap(), page(1, &[(1, "alice", 300)]));
    assert_eq!(board_of(Period::AllTime, ALL_TIME_START).await.unwrap(), week);
    assert_eq!(board_of(Period::Weekly, d(5)).await.unwrap(), page(0, &[]), "a week starts on its Monday");
    let moon_board =
        gm_projections::leaderboard::BoardPeriod { game_id: other_game(), ..board(Period::AllTime, ALL_TIME_START) };
    assert_eq!(store.leaderboard(&moon_board, 0, 10).await.unwrap(), page(1, &[(1, "alice", 5)]));
    let standing = store.leaderboard_player(&board(Period::Weekly, d(4)), &pid("alice"), 1).await.unwrap().unwrap();
    assert_eq!((standing.total, standing.entry.clone()), (4, week.entries[2].clone()));
    assert_eq!(standing.around, week.entries[1..4].to_vec());

    // Retention: cohorts by first day (dave's late event moved him to 4 March).
    assert_eq!(
        store.retention(&g, range(d(3), d(6))).await.unwrap(),
        vec![
            RetentionCohort::new(d(3), 0, 0, 0, 0),
            RetentionCohort::new(d(4), 3, 2, 1, 0),
            RetentionCohort::new(d(5), 1, 0, 1, 0),
            RetentionCohort::new(d(6), 0, 0, 0, 0),
        ]
    );
    let nr: Vec<NewReturningDay> =
        [(4, 3, 3), (5, 3, 1), (6, 1, 0), (7, 0, 0), (8, 0, 0), (9, 0, 0), (10, 0, 0), (11, 1, 0), (12, 1, 0)]
            .into_iter()
            .map(|(n, active, new_players)| NewReturningDay {
                day: d(n),
                active,
                new_players,
                returning_players: active - new_players,
            })
            .collect();
    assert_eq!(store.new_returning(&g, days).await.unwrap(), nr);

    // Monetisation over the range and over one day.
    let usd_total = 499 + 199 + 499;
    assert_eq!(
        store.monetisation(&g, days).await.unwrap(),
        Monetisation::new(4, 3 + 3 + 1 + 1 + 1, 3, vec![("EUR".into(), 999, 1), ("USD".into(), usd_total, 3)])
    );
    assert_eq!(
        store.monetisation(&g, range(d(5), d(5))).await.unwrap(),
        Monetisation::new(3, 3, 1, vec![("USD".into(), 499, 1)])
    );

    // Recommendations. Items: sword (alice, bob, carol), shield (alice, bob), potion (carol,
    // dave); pairs sword+shield 2 players, sword+potion 1. Jaccard: sword~shield 2/3,
    // sword~potion 1/4. Popular: sword 3, then potion and shield 2 (by name).
    let reco = |p: &'static str| async move { store.recommendations(&game(), &pid(p), 5, 14.0, scoring_now()).await };
    let popular = |players: f64| players / 3.0 * 1e-6;
    // alice withdrew consent to personalisation on 5 March: her interactions are forgotten
    // (the counts she added stay), so she gets the popular items, as a player never seen.
    let popular_only = [
        ("sword", Reason::Popular, popular(3.0)),
        ("potion", Reason::Popular, popular(2.0)),
        ("shield", Reason::Popular, popular(2.0)),
    ];
    assert_list(&reco("alice").await.unwrap(), &popular_only, "alice");
    assert_list(
        &reco("bob").await.unwrap(),
        &[("potion", similar("sword"), affinity(2.0, at(4, 11, 11)) / 4.0)],
        "bob",
    );
    assert_list(
        &reco("carol").await.unwrap(),
        &[("shield", similar("sword"), affinity(2.0, at(5, 20, 4)) * 2.0 / 3.0)],
        "carol",
    );
    assert_list(
        &reco("dave").await.unwrap(),
        &[("sword", similar("potion"), affinity(1.0, at(6, 7, 1)) / 4.0), ("shield", Reason::Popular, popular(2.0))],
        "dave",
    );
    assert_list(&reco("nobody").await.unwrap(), &popular_only, "nobody");
    let input = store.scoring_input(&g, &pid("bob"), 10).await.unwrap();
    let mut owned: Vec<(&str, f64)> = input.owned.iter().map(|(i, w, _)| (i.as_str(), *w)).collect();
    owned.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(owned, vec![("shield", 2.0), ("sword", 2.0)]);
    assert!(store.scoring_input(&g, &pid("alice"), 10).await.unwrap().owned.is_empty(), "alice forgotten");
    assert_eq!(input.item_players.get("sword"), Some(&3));
    assert_eq!(input.popular, vec![("sword".to_string(), 3), ("potion".to_string(), 2), ("shield".to_string(), 2)]);
    // Every player whose interactions changed is published once.
    let log = Captured::default();
    assert_eq!(publish_pending(store, &log, scoring_now()).await.unwrap(), 5);
    assert!(store.pending(10).await.unwrap().is_empty());
}

/// alice of space-race is erased after the scenario: a `PlayerErased` through every
/// projection. No read model row names her, every aggregate stays, every projection
/// confirms, and her list is tombstoned.
pub async fn an_erasure_through_every_projection_leaves_no_row_and_keeps_aggregates<F: Fixture>(f: F) {
    let store = f.store();
    let end = project_all(store, Target::Live, &scenario()).await;
    let log = Captured::default();
    assert_eq!(publish_pending(store, &log, scoring_now()).await.unwrap(), 5);
    let before = answers(store).await.unwrap();
    let erasure = uuid::Uuid::from_u128(0xe1);
    let end =
        project_from(store, Target::Live, Some(end), &[vec![erased_ev("alice", 14, at(13, 9, 0), erasure)]]).await;
    assert_eq!(end, 38);

    let after = answers(store).await.unwrap();
    assert_eq!(after.profiles[0], None, "alice's profile");
    assert_eq!(after.profiles[1..], before.profiles[1..], "the others' profiles");
    assert_eq!(
        (&after.active_users, &after.sessions, &after.revenue, &after.funnel),
        (&before.active_users, &before.sessions, &before.revenue, &before.funnel),
        "aggregates stay"
    );
    assert_eq!((&after.retention, &after.new_returning), (&before.retention, &before.new_returning));
    assert_eq!(after.monetisation, before.monetisation);
    assert_eq!(after.other_game, before.other_game, "alice of another game is someone else");
    assert_eq!(after.boards[0], page(1, &[(1, "bob", 1200)]));
    assert_eq!(after.boards[2], page(3, &[(1, "carol", 2000), (2, "bob", 1200), (3, "dave", 10)]));
    assert_eq!(after.boards[3], page(0, &[]));
    assert_eq!(store.leaderboard_player(&board(Period::Weekly, mar(4)), &pid("alice"), 2).await.unwrap(), None);
    // alice is now a new player to the recommender; the counts she added stay.
    assert_eq!(after.recommendations[0].items, before.recommendations[4].items);
    assert_eq!(after.recommendations[1..], before.recommendations[1..]);
    assert_eq!(store.scoring_input(&game(), &pid("nobody"), 10).await.unwrap().popular[0], ("sword".to_string(), 3));

    // The tombstone, then no row anywhere names her (of this game).
    assert_eq!(store.pending(10).await.unwrap(), vec![(game(), pid("alice"), true)]);
    let log = Captured::default();
    assert_eq!(publish_pending(store, &log, scoring_now()).await.unwrap(), 1);
    let records = log.0.lock().unwrap().clone();
    let key = gm_projections::recommend::topic_key(&game(), &pid("alice"));
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].key.as_str(), records[0].payload.is_empty()), (key.as_str(), true));
    for table in PLAYER_TABLES {
        let rows = f.player_rows(table).await;
        assert!(!rows.iter().any(|(g, p)| g == GAME && p == "alice"), "{table}: {rows:?}");
    }
    // Where distinct players are counted, one pseudonym per table stands for her.
    for table in ["player_days", "payer_days", "cohort_players", "cohort_days"] {
        let ids = f.player_ids(table).await;
        let pseudonyms: std::collections::BTreeSet<&String> = ids.iter().filter(|i| i.starts_with("erased-")).collect();
        assert_eq!(pseudonyms.len(), 1, "{table}: {ids:?}");
    }
    let cohort: std::collections::BTreeSet<String> =
        f.player_ids("cohort_players").await.into_iter().filter(|i| i.starts_with("erased-")).collect();
    let days: std::collections::BTreeSet<String> =
        f.player_ids("cohort_days").await.into_iter().filter(|i| i.starts_with("erased-")).collect();
    assert_eq!(cohort, days, "one pseudonym across the retention tables");
    assert!(f.player_rows("player_profiles").await.contains(&(OTHER_GAME.to_string(), "alice".to_string())));

    // Every projection confirmed the erasure.
    let confirmed: Vec<String> = store.confirmations(erasure).await.unwrap().into_iter().map(|(p, _)| p).collect();
    let mut confirmed_sorted = confirmed.clone();
    confirmed_sorted.sort();
    let mut all: Vec<String> = ProjectionName::ALL.iter().map(|p| p.as_str().to_string()).collect();
    all.sort();
    assert_eq!(confirmed_sorted, all);
}

/// A batch holding a player's events, their erasure and events after it: the rows are built
/// from what came after the erasure only, under the player's id, and what came before is
/// gone (aggregates without player ids keep it).
pub async fn events_after_an_erasure_in_the_same_batch_count_as_a_new_player<F: Fixture>(f: F) {
    let store = f.store();
    let erasure = uuid::Uuid::from_u128(0xe2);
    let batch = vec![
        start("dave", 1, at(4, 9, 0), "s-d1", None),
        ev("dave", 2, at(4, 9, 1), score(70)),
        ev("dave", 3, at(4, 9, 2), buy(300, usd(), "sword")),
        erased_ev("dave", 4, at(5, 9, 0), erasure),
        ev("dave", 5, at(6, 9, 0), score(20)),
        ev("dave", 6, at(6, 9, 1), use_item("potion")),
    ];
    project_all(store, Target::Live, &[batch]).await;
    let g = game();
    let p = store.player_profile(&g, &pid("dave")).await.unwrap().unwrap();
    assert_eq!(
        (p.first_seen, p.last_seen, p.events, p.sessions, p.purchases, p.last_seq),
        (at(6, 9, 0), at(6, 9, 1), 2, 0, 0, 6)
    );
    assert!(p.revenue_minor.is_empty());
    let au: Vec<(NaiveDate, u64)> =
        store.active_users(&g, range(mar(4), mar(6))).await.unwrap().iter().map(|d| (d.day, d.dau)).collect();
    assert_eq!(au, vec![(mar(4), 0), (mar(5), 0), (mar(6), 1)]);
    assert_eq!(f.player_ids("player_days").await, vec!["dave".to_string()]);
    assert_eq!(
        store.revenue(&g, range(mar(4), mar(6))).await.unwrap(),
        vec![RevenueDay::new(mar(4), "USD".into(), 300, 1, 0, 0)]
    );
    assert!(f.player_ids("payer_days").await.is_empty());
    assert_eq!(store.sessions(&g, range(mar(4), mar(4))).await.unwrap()[0].sessions_started, 1);
    assert_eq!(store.leaderboard(&board(Period::Daily, mar(4)), 0, 10).await.unwrap(), page(0, &[]));
    assert_eq!(store.leaderboard(&board(Period::Weekly, mar(4)), 0, 10).await.unwrap(), page(1, &[(1, "dave", 20)]));
    assert_eq!(
        store.retention(&g, range(mar(4), mar(6))).await.unwrap(),
        vec![
            RetentionCohort::new(mar(4), 0, 0, 0, 0),
            RetentionCohort::new(mar(5), 0, 0, 0, 0),
            RetentionCohort::new(mar(6), 1, 0, 0, 0)
        ]
    );
    let input = store.scoring_input(&g, &pid("dave"), 10).await.unwrap();
    assert_eq!(input.owned.iter().map(|(i, w, _)| (i.as_str(), *w)).collect::<Vec<_>>(), vec![("potion", 1.0)]);
    assert_eq!(input.popular, vec![("potion".to_string(), 1)], "the sword bought before the erasure is not counted");
    assert_eq!(store.pending(10).await.unwrap(), vec![(g, pid("dave"), false)]);
    assert_eq!(store.confirmations(erasure).await.unwrap().len(), ProjectionName::ALL.len());
}

/// A log producer that keeps what it is given.
#[derive(Default)]
pub struct Captured(pub std::sync::Mutex<Vec<gm_ports::NewRecord>>);

#[async_trait::async_trait]
impl gm_ports::LogProducer for Captured {
    async fn append(
        &self,
        topic: &str,
        records: Vec<gm_ports::NewRecord>,
    ) -> Result<Vec<gm_ports::Position>, gm_ports::LogError> {
        assert_eq!(topic, gm_schemas::topics::RECOMMENDATIONS);
        let mut all = self.0.lock().unwrap();
        let first = all.len() as u64;
        let n = records.len() as u64;
        all.extend(records);
        Ok((first..first + n).map(|offset| gm_ports::Position { partition: 0, offset }).collect())
    }
}
