//! Leaderboards from Redis sorted sets against the real Redis: a cold read rebuilds the set
//! from the store, warm reads do not ask the store and give the same pages, ranks and
//! neighbours; an erased player is gone after `invalidate_player`.

mod common;

use common::fakes::Board;
use common::*;
use gm_projections::leaderboard::{BoardPeriod, Period};
use gm_projections::GameQueries;
use gm_redis::{CachedGameQueries, RedisCache};
use gm_schemas::PlayerId;
use std::sync::atomic::Ordering;

fn board() -> BoardPeriod {
    BoardPeriod { game_id: game("space-race"), board: "main".into(), period: Period::Daily, start: day("2024-03-11") }
}

#[tokio::test]
async fn warm_reads_come_from_the_sorted_set_and_match_the_store() {
    let cache = RedisCache::connect(test_config().await).await.unwrap();
    let store = Board::default();
    {
        let mut s = store.scores.lock().unwrap();
        for i in 0..300i64 {
            // Many ties (scores repeat every 37 players), negative and large values.
            s.push((format!("p{i:03}"), (i % 37 - 10) * 1_000_000_000_000));
        }
        s.push(("Zed".into(), 999_999_999_999_999));
    }
    let cached = CachedGameQueries::new(store.clone(), cache.clone());
    let b = board();
    let cold = cached.leaderboard(&b, 0, 10).await.unwrap();
    assert!(store.calls.load(Ordering::SeqCst) >= 2, "a cold read rebuilds from the store");
    let before = store.calls.load(Ordering::SeqCst);
    for (offset, limit) in [(0, 10), (0, 1000), (7, 13), (290, 50)] {
        let warm = cached.leaderboard(&b, offset, limit).await.unwrap();
        assert_eq!(warm, store.leaderboard(&b, offset, limit).await.unwrap(), "page {offset}+{limit}");
    }
    for p in ["p000", "p036", "p150", "Zed", "p299"] {
        let player = PlayerId::parse(p).unwrap();
        let warm = cached.leaderboard_player(&b, &player, 3).await.unwrap();
        assert_eq!(warm, store.leaderboard_player(&b, &player, 3).await.unwrap(), "standing of {p}");
    }
    assert_eq!(cached.leaderboard_player(&b, &PlayerId::parse("nobody").unwrap(), 3).await.unwrap(), None);
    // The store was asked only by this test's own comparisons (one call per comparison).
    assert_eq!(store.calls.load(Ordering::SeqCst) - before, 4 + 5);
    assert_eq!(cold, store.leaderboard(&b, 0, 10).await.unwrap());

    // Erasure: the store forgets p150; after invalidation the cache does too.
    store.scores.lock().unwrap().retain(|(p, _)| p != "p150");
    cached.invalidate_player(&b.game_id, &PlayerId::parse("p150").unwrap()).await.unwrap();
    let page = cached.leaderboard(&b, 0, 1000).await.unwrap();
    assert!(page.entries.iter().all(|e| e.player_id != "p150"));
    assert_eq!(page.total, 300);
    let warm = cached.leaderboard(&b, 0, 1000).await.unwrap();
    assert_eq!(warm, page);
    assert_eq!(cached.leaderboard_player(&b, &PlayerId::parse("p150").unwrap(), 3).await.unwrap(), None);
    cleanup(&cache).await;
}

#[tokio::test]
async fn retention_is_read_through_the_cache() {
    let cache = RedisCache::connect(test_config().await).await.unwrap();
    let store = Board::default();
    let cached = CachedGameQueries::new(store.clone(), cache.clone());
    let r = range(day("2024-03-01"), day("2024-03-07"));
    let first = cached.retention(&game("space-race"), r).await.unwrap();
    assert_eq!(store.calls.load(Ordering::SeqCst), 1);
    let g = game("space-race");
    let again = answered_by_redis(&store.calls, || cached.retention(&g, r)).await.map(Result::unwrap);
    assert_eq!(again.expect("a later read is answered by Redis"), first);
    assert_eq!(first.len(), 7);
    cleanup(&cache).await;
}
