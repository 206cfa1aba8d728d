//! Players' recommendation lists through Redis against the real Redis: a warm list is not
//! recomputed; after an erasure (`invalidate_player` of the profile cache, which sets the
//! marker, and of the lists) the list is gone and a read racing the erasure cannot put it back.

mod common;

use chrono::Utc;
use common::fakes::Lists;
use common::*;
use gm_projections::RecommendationQueries;
use gm_redis::{CachedQueries, CachedRecommendations, RedisCache};
use gm_schemas::{GameId, PlayerId};
use std::sync::atomic::Ordering;

async fn warm(cached: &CachedRecommendations<Lists>, store: &Lists, g: &GameId, p: &PlayerId) -> bool {
    answered_by_redis(&store.0, || cached.recommendations(g, p, 3, 14.0, Utc::now())).await.is_some()
}

#[tokio::test]
async fn warm_lists_come_from_redis_and_an_erasure_removes_them_for_good() {
    let cache = RedisCache::connect(test_config().await).await.unwrap();
    let store = Lists::default();
    let cached = CachedRecommendations::new(store.clone(), cache.clone());
    let profiles = CachedQueries::new(CountingStore::default(), cache.clone());
    let (g, p) = (game("space-race"), player("p1"));
    let first = cached.recommendations(&g, &p, 3, 14.0, Utc::now()).await.unwrap();
    assert!(warm(&cached, &store, &g, &p).await, "a later read is answered by Redis");
    assert_eq!(cached.recommendations(&g, &p, 3, 14.0, Utc::now()).await.unwrap().items, first.items);

    // Erasure: the marker first (profile cache), then the lists.
    profiles.invalidate_player(&g, &p).await.unwrap();
    assert!(cached.invalidate_player(&g, &p).await.unwrap() >= 1);
    let before = store.0.load(Ordering::SeqCst);
    let after = cached.recommendations(&g, &p, 3, 14.0, Utc::now()).await.unwrap();
    assert_ne!(after.items, first.items, "recomputed, not the cached list");
    assert!(!warm(&cached, &store, &g, &p).await, "the erasure marker keeps read-through writes out");
    assert!(store.0.load(Ordering::SeqCst) > before + 1);
    cleanup(&cache).await;
}
