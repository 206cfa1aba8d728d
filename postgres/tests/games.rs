//! The leaderboard and retention read models on a real PostgreSQL: the embedded store's
//! behaviours (best score kept, ties, erasure, cohorts moving back on late events), the
//! byte order of player ids within a tie (as a Redis sorted set lists them), and a rebuild.

mod common;

use chrono::NaiveDate;
use common::TestDb;
use gm_projections::leaderboard::{BoardPeriod, Period, ScoreEntry};
use gm_projections::model::{ChangeSet, DateRange, PlayerDay, ProjectionName, Target};
use gm_projections::{GameQueries, ReadModelStore};
use gm_schemas::{GameId, PlayerId};

fn game() -> GameId {
    GameId::parse("space-race").unwrap()
}
fn day(n: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, n).unwrap()
}
fn board() -> BoardPeriod {
    BoardPeriod { game_id: game(), board: "main".into(), period: Period::Weekly, start: day(1) }
}
fn entry(p: &str, score: i64) -> ScoreEntry {
    ScoreEntry {
        game_id: game(),
        board: "main".into(),
        period: Period::Weekly,
        period_start: day(1),
        player_id: PlayerId::parse(p).unwrap(),
        score,
    }
}
fn active(p: &str, d: u32) -> PlayerDay {
    PlayerDay { game_id: game(), day: day(d), player_id: PlayerId::parse(p).unwrap() }
}

#[tokio::test]
async fn leaderboard_keeps_best_scores_orders_ties_bytewise_and_forgets_an_erased_player() {
    let db = TestDb::new().await;
    let store = &db.store;
    let lb = ProjectionName::Leaderboards;
    // "B" < "a" < "b" in byte order; a linguistic collation would say a < B < b.
    let first = ChangeSet {
        scores: vec![entry("a", 10), entry("B", 10), entry("b", 10), entry("top", 50), entry("a", 5)],
        ..Default::default()
    };
    store.apply(Target::Live, lb, 0, None, 1, &first).await.unwrap();
    store
        .apply(Target::Live, lb, 0, Some(1), 2, &ChangeSet { scores: vec![entry("top", 1)], ..Default::default() })
        .await
        .unwrap();
    let page = store.leaderboard(&board(), 0, 10).await.unwrap();
    let got: Vec<(u64, &str, i64)> = page.entries.iter().map(|e| (e.rank, e.player_id.as_str(), e.score)).collect();
    assert_eq!(got, vec![(1, "top", 50), (2, "b", 10), (2, "a", 10), (2, "B", 10)]);
    let a = PlayerId::parse("a").unwrap();
    let s = store.leaderboard_player(&board(), &a, 1).await.unwrap().unwrap();
    assert_eq!(s.entry.rank, 2);
    let around: Vec<&str> = s.around.iter().map(|e| e.player_id.as_str()).collect();
    assert_eq!(around, vec!["b", "a", "B"]);
    let mut all = store.leaderboard_scores(&board()).await.unwrap();
    all.sort();
    assert_eq!(all.len(), 4);

    let erase = ChangeSet { erased: vec![(game(), a.clone())], ..Default::default() };
    store.apply(Target::Live, lb, 0, Some(2), 3, &erase).await.unwrap();
    assert_eq!(store.leaderboard_player(&board(), &a, 1).await.unwrap(), None);
    let page = store.leaderboard(&board(), 0, 10).await.unwrap();
    assert_eq!(page.total, 3);
    assert!(page.entries.iter().all(|e| e.player_id != "a"));

    // A rebuild from nothing swaps in an empty board.
    store.begin_rebuild(lb).await.unwrap();
    store
        .apply(Target::Rebuild, lb, 0, None, 1, &ChangeSet { scores: vec![entry("new", 3)], ..Default::default() })
        .await
        .unwrap();
    store.finish_rebuild(lb).await.unwrap();
    let page = store.leaderboard(&board(), 0, 10).await.unwrap();
    assert_eq!(page.entries.iter().map(|e| e.player_id.as_str()).collect::<Vec<_>>(), vec!["new"]);
}

#[tokio::test]
async fn retention_follows_the_earliest_day_and_survives_erasure_anonymised() {
    let db = TestDb::new().await;
    let store = &db.store;
    let r = ProjectionName::Retention;
    let batch = ChangeSet {
        active_days: vec![active("p1", 3), active("p2", 2), active("p2", 9), active("p2", 9)],
        ..Default::default()
    };
    store.apply(Target::Live, r, 0, None, 1, &batch).await.unwrap();
    let late = ChangeSet { active_days: vec![active("p1", 2)], ..Default::default() };
    store.apply(Target::Live, r, 0, Some(1), 2, &late).await.unwrap();
    let range = DateRange::parse(day(1), day(3)).unwrap();
    let cohorts = store.retention(&game(), range).await.unwrap();
    let got: Vec<(u64, u64, u64)> = cohorts.iter().map(|c| (c.players, c.d1, c.d7)).collect();
    assert_eq!(got, vec![(0, 0, 0), (2, 1, 1), (0, 0, 0)]);
    let week = DateRange::parse(day(1), day(9)).unwrap();
    let nr = store.new_returning(&game(), week).await.unwrap();
    let got: Vec<(u64, u64, u64)> = nr.iter().map(|d| (d.active, d.new_players, d.returning_players)).collect();
    assert_eq!(got[1..3], [(2, 2, 0), (1, 0, 1)]);
    assert_eq!(got[8], (1, 0, 1));

    let erase = ChangeSet { erased: vec![(game(), PlayerId::parse("p1").unwrap())], ..Default::default() };
    store.apply(Target::Live, r, 0, Some(2), 3, &erase).await.unwrap();
    assert_eq!(store.retention(&game(), range).await.unwrap(), cohorts, "figures stay right after erasure");
    assert_eq!(store.new_returning(&game(), week).await.unwrap(), nr);
    for table in ["cohort_players", "cohort_days"] {
        let ids: Vec<String> = sqlx::query_scalar(&format!("SELECT DISTINCT player_id FROM {table}"))
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert!(!ids.iter().any(|i| i == "p1"), "{table}: {ids:?}");
        assert_eq!(ids.iter().filter(|i| i.starts_with("erased-")).count(), 1, "one pseudonym: {ids:?}");
    }
}
