//! The leaderboard and retention read models, and the monetisation summary.

use crate::data::*;
use crate::Fixture;
use gm_projections::leaderboard::{LeaderboardEntry, Period, ScoreEntry};
use gm_projections::model::{ChangeSet, PlayerDay, ProjectionName, RevenueDelta, Target};
use gm_projections::retention::{Monetisation, RetentionCohort};
use gm_projections::{GameQueries, ReadModelStore};

fn entry(period: Period, p: &str, score: i64) -> ScoreEntry {
    ScoreEntry { game_id: game(), board: "main".into(), period, period_start: jan(1), player_id: pid(p), score }
}

fn ranked(entries: &[LeaderboardEntry]) -> Vec<(u64, &str, i64)> {
    entries.iter().map(|e| (e.rank, e.player_id.as_str(), e.score)).collect()
}

pub async fn leaderboard_keeps_best_scores_ranks_ties_bytewise_and_forgets_an_erased_player<F: Fixture>(f: F) {
    let store = f.store();
    let lb = ProjectionName::Leaderboards;
    let (weekly, daily) = (board(Period::Weekly, jan(1)), board(Period::Daily, jan(1)));
    let w = |p: &str, s: i64| entry(Period::Weekly, p, s);
    let d = |p: &str, s: i64| entry(Period::Daily, p, s);
    // "B" < "a" < "b" in byte order; a linguistic collation would say a < B < b. "a" twice in
    // one change set: the best counts.
    let first = ChangeSet {
        scores: vec![w("a", 10), w("B", 10), w("b", 10), w("top", 50), w("a", 5), d("a", 10), d("b", 30), d("c", 20)],
        ..Default::default()
    };
    store.apply(Target::Live, lb, 0, None, 1, &first).await.unwrap();
    let second = ChangeSet { scores: vec![w("top", 1), d("a", 40), d("b", 5)], ..Default::default() };
    store.apply(Target::Live, lb, 0, Some(1), 2, &second).await.unwrap();

    let page = store.leaderboard(&weekly, 0, 10).await.unwrap();
    assert_eq!(page.total, 4);
    assert_eq!(ranked(&page.entries), vec![(1, "top", 50), (2, "b", 10), (2, "a", 10), (2, "B", 10)]);
    let a = store.leaderboard_player(&weekly, &pid("a"), 1).await.unwrap().unwrap();
    assert_eq!((a.total, a.entry.rank, a.entry.score), (4, 2, 10));
    assert_eq!(ranked(&a.around), vec![(2, "b", 10), (2, "a", 10), (2, "B", 10)]);
    let mut all = store.leaderboard_scores(&weekly).await.unwrap();
    all.sort();
    let expected = [("B", 10), ("a", 10), ("b", 10), ("top", 50)].map(|(p, s)| (p.to_string(), s));
    assert_eq!(all, expected.to_vec());
    // A lower score does not replace a best.
    let page = store.leaderboard(&daily, 0, 10).await.unwrap();
    assert_eq!(ranked(&page.entries), vec![(1, "a", 40), (2, "b", 30), (3, "c", 20)]);
    let b = store.leaderboard_player(&daily, &pid("b"), 1).await.unwrap().unwrap();
    assert_eq!((b.entry.rank, ranked(&b.around)), (2, vec![(1, "a", 40), (2, "b", 30), (3, "c", 20)]));

    let erase = ChangeSet { erased: vec![(game(), pid("a")), (game(), pid("a"))], ..Default::default() };
    store.apply(Target::Live, lb, 0, Some(2), 3, &erase).await.unwrap();
    assert_eq!(store.leaderboard_player(&weekly, &pid("a"), 1).await.unwrap(), None);
    assert_eq!(store.leaderboard_player(&daily, &pid("a"), 1).await.unwrap(), None);
    let page = store.leaderboard(&weekly, 0, 10).await.unwrap();
    assert_eq!((page.total, ranked(&page.entries)), (3, vec![(1, "top", 50), (2, "b", 10), (2, "B", 10)]));
    let page = store.leaderboard(&daily, 0, 10).await.unwrap();
    assert_eq!(ranked(&page.entries), vec![(1, "b", 30), (2, "c", 20)], "ranks close up");
    assert!(!f.player_ids("leaderboard_scores").await.contains(&"a".to_string()));

    // A rebuild from nothing swaps in an empty table; what it applied is all there is.
    store.begin_rebuild(lb).await.unwrap();
    let new = ChangeSet { scores: vec![w("new", 3)], ..Default::default() };
    store.apply(Target::Rebuild, lb, 0, None, 1, &new).await.unwrap();
    assert_eq!(store.leaderboard(&weekly, 0, 10).await.unwrap().total, 3, "live untouched until the swap");
    store.finish_rebuild(lb).await.unwrap();
    assert_eq!(ranked(&store.leaderboard(&weekly, 0, 10).await.unwrap().entries), vec![(1, "new", 3)]);
    assert_eq!(store.leaderboard(&daily, 0, 10).await.unwrap().total, 0);
}

pub async fn leaderboard_pages_and_standings_at_the_edges<F: Fixture>(f: F) {
    let store = f.store();
    let scores = [
        ("p00", -5),
        ("p01", 30),
        ("p02", 30),
        ("p03", 10),
        ("p04", -5),
        ("p05", 100),
        ("p06", 30),
        ("p07", 0),
        ("p08", 10),
        ("p09", -20),
        ("p10", 0),
        ("p11", 30),
    ];
    let c =
        ChangeSet { scores: scores.iter().map(|(p, s)| entry(Period::AllTime, p, *s)).collect(), ..Default::default() };
    store.apply(Target::Live, ProjectionName::Leaderboards, 3, None, 12, &c).await.unwrap();
    let b = board(Period::AllTime, jan(1));
    let full: Vec<(u64, &str, i64)> = vec![
        (1, "p05", 100),
        (2, "p11", 30),
        (2, "p06", 30),
        (2, "p02", 30),
        (2, "p01", 30),
        (6, "p08", 10),
        (6, "p03", 10),
        (8, "p10", 0),
        (8, "p07", 0),
        (10, "p04", -5),
        (10, "p00", -5),
        (12, "p09", -20),
    ];
    for (offset, limit) in [(0, 5), (5, 5), (10, 5), (12, 5), (0, 100), (3, 1)] {
        let page = store.leaderboard(&b, offset, limit).await.unwrap();
        assert_eq!(page.total, 12);
        let from = (offset as usize).min(full.len());
        let to = ((offset + limit) as usize).min(full.len());
        assert_eq!(ranked(&page.entries), full[from..to].to_vec(), "offset {offset}, limit {limit}");
    }
    for (player, neighbours, from, to) in
        [("p05", 2, 0, 3), ("p09", 2, 9, 12), ("p06", 1, 1, 4), ("p03", 0, 6, 7), ("p00", 5, 5, 12)]
    {
        let s = store.leaderboard_player(&b, &pid(player), neighbours).await.unwrap().unwrap();
        assert_eq!(s.total, 12);
        let me = full.iter().find(|(_, p, _)| *p == player).unwrap();
        assert_eq!((s.entry.rank, s.entry.player_id.as_str(), s.entry.score), *me);
        assert_eq!(ranked(&s.around), full[from..to].to_vec(), "{player} ±{neighbours}");
    }
    assert_eq!(store.leaderboard_player(&b, &pid("p99"), 2).await.unwrap(), None);
    let other = board(Period::Daily, jan(1));
    assert_eq!(store.leaderboard(&other, 0, 10).await.unwrap().total, 0);
    assert_eq!(store.leaderboard_player(&other, &pid("p05"), 2).await.unwrap(), None);
    let elsewhere = board(Period::AllTime, jan(2));
    assert!(store.leaderboard_scores(&elsewhere).await.unwrap().is_empty());
}

pub async fn retention_follows_the_earliest_day_and_survives_erasure_anonymised<F: Fixture>(f: F) {
    let store = f.store();
    let r = ProjectionName::Retention;
    let active = |p: &str, d: u32| PlayerDay { game_id: game(), day: jan(d), player_id: pid(p) };
    // p1 is seen on day 3 first; a late event moves its cohort to day 2 (then day 3 is its
    // D1). p2: days 2 and 9 (D7), a duplicate day in the batch. p3: days 1 and 31 (D30).
    let batch = ChangeSet {
        active_days: vec![
            active("p1", 3),
            active("p2", 2),
            active("p2", 9),
            active("p2", 9),
            active("p3", 1),
            active("p3", 31),
        ],
        ..Default::default()
    };
    store.apply(Target::Live, r, 0, None, 1, &batch).await.unwrap();
    let late = ChangeSet { active_days: vec![active("p1", 2)], ..Default::default() };
    store.apply(Target::Live, r, 0, Some(1), 2, &late).await.unwrap();
    let days = range(jan(1), jan(3));
    let cohorts = store.retention(&game(), days).await.unwrap();
    assert_eq!(
        cohorts,
        vec![
            RetentionCohort::new(jan(1), 1, 0, 0, 1),
            RetentionCohort::new(jan(2), 2, 1, 1, 0),
            RetentionCohort::new(jan(3), 0, 0, 0, 0)
        ]
    );
    assert!((cohorts[1].d1_rate - 0.5).abs() < 1e-12);
    let month = range(jan(1), jan(31));
    let nr = store.new_returning(&game(), month).await.unwrap();
    assert_eq!(nr.len(), 31);
    let got: Vec<(u32, u64, u64, u64)> = nr
        .iter()
        .filter(|d| d.active > 0)
        .map(|d| (chrono::Datelike::day(&d.day), d.active, d.new_players, d.returning_players))
        .collect();
    assert_eq!(got, vec![(1, 1, 1, 0), (2, 2, 2, 0), (3, 1, 0, 1), (9, 1, 0, 1), (31, 1, 0, 1)]);
    assert!(store.retention(&other_game(), days).await.unwrap().iter().all(|c| c.players == 0));

    let erase = ChangeSet { erased: vec![(game(), pid("p1")), (game(), pid("p1"))], ..Default::default() };
    store.apply(Target::Live, r, 0, Some(2), 3, &erase).await.unwrap();
    assert_eq!(store.retention(&game(), days).await.unwrap(), cohorts, "figures stay right after erasure");
    assert_eq!(store.new_returning(&game(), month).await.unwrap(), nr);
    for table in ["cohort_players", "cohort_days"] {
        let ids = f.player_ids(table).await;
        assert!(!ids.iter().any(|i| i == "p1"), "{table}: {ids:?}");
        let pseudonyms: std::collections::BTreeSet<&String> = ids.iter().filter(|i| i.starts_with("erased-")).collect();
        assert_eq!(pseudonyms.len(), 1, "one pseudonym: {ids:?}");
    }
    // Later events of the erased id start a new cohort.
    let back = ChangeSet { active_days: vec![active("p1", 3)], ..Default::default() };
    store.apply(Target::Live, r, 0, Some(3), 4, &back).await.unwrap();
    assert_eq!(store.retention(&game(), days).await.unwrap()[2], RetentionCohort::new(jan(3), 1, 0, 0, 0));
}

pub async fn monetisation_over_a_range_counts_distinct_players_and_player_days<F: Fixture>(f: F) {
    let store = f.store();
    // p1 active days 1-3, p2 day 2, p3 day 3; p1 pays on days 1 and 3, p2 on day 2;
    // revenue: day 1 100 USD, day 2 250 EUR (2 purchases), day 3 50 USD.
    let g = game();
    let activity = ChangeSet {
        active_days: player_days(&g, &[("p1", jan(1)), ("p1", jan(2)), ("p1", jan(3)), ("p2", jan(2)), ("p3", jan(3))]),
        ..Default::default()
    };
    store.apply(Target::Live, ProjectionName::DailyActivity, 0, None, 1, &activity).await.unwrap();
    let delta = |day, currency, amount_minor, purchases| RevenueDelta {
        game_id: g.clone(),
        day,
        currency,
        amount_minor,
        purchases,
    };
    let revenue = ChangeSet {
        revenue: vec![delta(jan(1), usd(), 100, 1), delta(jan(2), eur(), 250, 2), delta(jan(3), usd(), 50, 1)],
        payer_days: player_days(&g, &[("p1", jan(1)), ("p1", jan(3)), ("p2", jan(2))]),
        ..Default::default()
    };
    store.apply(Target::Live, ProjectionName::Revenue, 0, None, 1, &revenue).await.unwrap();
    let m = store.monetisation(&g, range(jan(1), jan(3))).await.unwrap();
    assert_eq!(m, Monetisation::new(3, 5, 2, vec![("EUR".into(), 250, 2), ("USD".into(), 150, 2)]));
    assert!((m.conversion - 2.0 / 3.0).abs() < 1e-12);
    assert!((m.currencies[1].arpdau_minor - 30.0).abs() < 1e-12);
    assert!((m.currencies[1].arppu_minor - 75.0).abs() < 1e-12);
    assert_eq!(
        store.monetisation(&g, range(jan(3), jan(3))).await.unwrap(),
        Monetisation::new(2, 2, 1, vec![("USD".into(), 50, 1)])
    );
    let empty = store.monetisation(&g, range(jan(4), jan(30))).await.unwrap();
    assert_eq!(empty, Monetisation::new(0, 0, 0, vec![]));
    assert_eq!(empty.conversion, 0.0);
    assert_eq!(
        store.monetisation(&other_game(), range(jan(1), jan(3))).await.unwrap(),
        Monetisation::new(0, 0, 0, vec![])
    );
}
