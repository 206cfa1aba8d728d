//! CachedQueries against the real Redis with a counting in-memory store behind it.

mod common;

use chrono::Utc;
use common::*;
use gm_projections::AnalyticsQueries;
use gm_redis::{erased_marker_key, funnel_key, profile_key, query_key, CachedQueries, QueryKind, RedisCache};
use std::sync::atomic::Ordering;

async fn setup(store: CountingStore) -> CachedQueries<CountingStore> {
    let cache = RedisCache::connect(test_config().await).await.unwrap();
    assert!(cache.health().await);
    CachedQueries::new(store, cache)
}

#[tokio::test]
async fn a_miss_asks_the_store_and_a_hit_does_not() {
    let store = CountingStore::default().with_profile(profile("g1", "alice", 12));
    let q = setup(store.clone()).await;
    let (g, p) = (game("g1"), player("alice"));
    let r = range(day("2024-03-01"), day("2024-03-31"));

    for round in 0..3 {
        assert_eq!(q.player_profile(&g, &p).await.unwrap(), Some(profile("g1", "alice", 12)));
        assert_eq!(q.active_users(&g, r).await.unwrap(), active_users_of(&g, r));
        assert_eq!(q.sessions(&g, r).await.unwrap(), sessions_of(&g, r));
        assert_eq!(q.revenue(&g, r).await.unwrap(), revenue_of(&g, r));
        assert_eq!(q.funnel(&g).await.unwrap(), funnel_of(&g));
        q.wait_idle().await;
        assert_eq!(store.total(), 5, "round {round}: only the first round reaches the store");
    }
    let s = q.stats();
    assert_eq!((s.misses, s.hits, s.lookup_errors, s.decode_errors), (5, 10, 0, 0), "{s:?}");

    // Another game and another range are other keys.
    let r2 = range(day("2024-03-01"), day("2024-03-30"));
    assert_eq!(q.active_users(&g, r2).await.unwrap(), active_users_of(&g, r2));
    assert_eq!(q.funnel(&game("g2")).await.unwrap(), funnel_of(&game("g2")));
    assert_eq!(store.total(), 7);
    q.wait_idle().await;
    cleanup(q.cache()).await;
}

#[tokio::test]
async fn ttls_are_set_per_kind_and_range() {
    let store = CountingStore::default().with_profile(profile("g1", "bob", 1));
    let q = setup(store).await;
    let g = game("g1");
    let today = Utc::now().date_naive();
    let past = range(day("2024-01-01"), day("2024-01-31"));
    let recent = range(today - chrono::Duration::days(6), today);
    let yesterday = range(today - chrono::Duration::days(1), today - chrono::Duration::days(1));

    q.player_profile(&g, &player("bob")).await.unwrap();
    q.active_users(&g, past).await.unwrap();
    q.sessions(&g, recent).await.unwrap();
    q.revenue(&g, yesterday).await.unwrap();
    q.funnel(&g).await.unwrap();
    q.wait_idle().await;

    let c = q.cache();
    let mut con = raw().await;
    let t = pttl(&mut con, &c.full_key(&profile_key(&g, &player("bob")))).await;
    assert!(t > 25_000 && t <= 30_000, "profile PTTL {t}");
    let t = pttl(&mut con, &c.full_key(&query_key(QueryKind::ActiveUsers, &g, past))).await;
    assert!(t > 290_000 && t <= 300_000, "past range PTTL {t}");
    let t = pttl(&mut con, &c.full_key(&query_key(QueryKind::Sessions, &g, recent))).await;
    assert!(t > 0 && t <= 5_000, "range ending today PTTL {t}");
    let t = pttl(&mut con, &c.full_key(&query_key(QueryKind::Revenue, &g, yesterday))).await;
    assert!(t > 0 && t <= 5_000, "range ending yesterday PTTL {t}");
    let t = pttl(&mut con, &c.full_key(&funnel_key(&g))).await;
    assert!(t > 0 && t <= 5_000, "funnel PTTL {t}");
    cleanup(c).await;
}

#[tokio::test]
async fn absent_profiles_and_store_errors_are_not_cached() {
    let store = CountingStore::default();
    let q = setup(store.clone()).await;
    let (g, p) = (game("g1"), player("nobody"));
    assert_eq!(q.player_profile(&g, &p).await.unwrap(), None);
    q.wait_idle().await;
    assert_eq!(q.player_profile(&g, &p).await.unwrap(), None);
    assert_eq!(store.0.profile_calls.load(Ordering::SeqCst), 2, "None is not cached");

    // A player who appears is visible at once.
    store.0.profiles.lock().unwrap().insert(("g1".into(), "nobody".into()), profile("g1", "nobody", 1));
    assert_eq!(q.player_profile(&g, &p).await.unwrap(), Some(profile("g1", "nobody", 1)));

    // Store errors pass through and leave nothing behind.
    store.0.fail.store(true, Ordering::SeqCst);
    let r = range(day("2024-02-01"), day("2024-02-02"));
    assert!(matches!(q.revenue(&g, r).await, Err(gm_ports::StoreError::Unavailable(_))));
    q.wait_idle().await;
    let mut con = raw().await;
    assert!(!exists(&mut con, &q.cache().full_key(&query_key(QueryKind::Revenue, &g, r))).await);
    store.0.fail.store(false, Ordering::SeqCst);
    assert_eq!(q.revenue(&g, r).await.unwrap(), revenue_of(&g, r));
    q.wait_idle().await;
    cleanup(q.cache()).await;
}

#[tokio::test]
async fn an_undecodable_value_is_a_miss_and_is_replaced() {
    let store = CountingStore::default();
    let q = setup(store.clone()).await;
    let g = game("g1");
    let r = range(day("2024-02-01"), day("2024-02-10"));
    let key = query_key(QueryKind::Sessions, &g, r);
    q.cache().set_many(&[(key.as_str(), &b"{not json"[..])], std::time::Duration::from_secs(60)).await.unwrap();
    assert_eq!(q.sessions(&g, r).await.unwrap(), sessions_of(&g, r));
    assert_eq!(q.stats().decode_errors, 1);
    q.wait_idle().await;
    assert_eq!(q.sessions(&g, r).await.unwrap(), sessions_of(&g, r));
    assert_eq!(store.0.sessions_calls.load(Ordering::SeqCst), 1, "the replaced value is a hit");
    cleanup(q.cache()).await;
}

#[tokio::test]
async fn invalidate_player_removes_the_profile_and_keeps_stale_reads_out() {
    let store = CountingStore::default().with_profile(profile("g1", "carol", 5)).with_profile(profile("g1", "dave", 6));
    let q = setup(store.clone()).await;
    let (g, carol, dave) = (game("g1"), player("carol"), player("dave"));
    q.player_profile(&g, &carol).await.unwrap();
    q.player_profile(&g, &dave).await.unwrap();
    q.wait_idle().await;
    let c = q.cache();
    let mut con = raw().await;
    assert!(exists(&mut con, &c.full_key(&profile_key(&g, &carol))).await);

    assert_eq!(q.invalidate_player(&g, &carol).await.unwrap(), 1);
    assert!(!exists(&mut con, &c.full_key(&profile_key(&g, &carol))).await, "profile purged");
    assert!(exists(&mut con, &c.full_key(&profile_key(&g, &dave))).await, "other players untouched");
    let guard = pttl(&mut con, &c.full_key(&erased_marker_key(&g, &carol))).await;
    assert!(guard > 590_000 && guard <= 600_000, "erasure guard PTTL {guard}");

    // A read that got the profile from the store before the projection erased it (here:
    // the store still has it) must not put it back into Redis.
    assert_eq!(q.player_profile(&g, &carol).await.unwrap(), Some(profile("g1", "carol", 5)));
    q.wait_idle().await;
    assert!(!exists(&mut con, &c.full_key(&profile_key(&g, &carol))).await, "stale write-back refused");

    // After the projection erased the row, the store says None and nothing is cached.
    store.remove_profile("g1", "carol");
    assert_eq!(q.player_profile(&g, &carol).await.unwrap(), None);
    assert_eq!(q.invalidate_player(&g, &carol).await.unwrap(), 0, "idempotent");
    q.wait_idle().await;
    cleanup(c).await;
}

#[tokio::test]
async fn concurrent_queries_all_answer_correctly() {
    let store = CountingStore::default();
    let q = std::sync::Arc::new(setup(store.clone()).await);
    let g = game("g1");
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let q = q.clone();
        let g = g.clone();
        tasks.push(tokio::spawn(async move {
            let r = range(day("2024-04-01"), day("2024-04-01") + chrono::Duration::days((i % 10) as i64));
            assert_eq!(q.active_users(&g, r).await.unwrap(), active_users_of(&g, r));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    q.wait_idle().await;
    assert!(store.total() >= 10 && store.total() <= 200);
    let before = store.total();
    for i in 0..10 {
        let r = range(day("2024-04-01"), day("2024-04-01") + chrono::Duration::days(i));
        q.active_users(&g, r).await.unwrap();
    }
    assert_eq!(store.total(), before, "all ten ranges are cached now");
    cleanup(q.cache()).await;
}

/// Single flight: the misses of one key that arrive while its load runs wait for that load
/// instead of each asking the store, and share its error too; a failed load is not kept for
/// later requests.
#[tokio::test]
async fn concurrent_misses_of_one_key_ask_the_store_once() {
    let store = CountingStore::default();
    store.0.active_delay_ms.store(200, Ordering::SeqCst);
    let q = std::sync::Arc::new(setup(store.clone()).await);
    let g = game("g1");
    let r = range(day("2024-03-01"), day("2024-03-07"));
    let asks = (0..32).map(|_| {
        let (q, g) = (q.clone(), g.clone());
        tokio::spawn(async move { q.active_users(&g, r).await })
    });
    for answer in futures::future::join_all(asks).await {
        assert_eq!(answer.unwrap().unwrap(), active_users_of(&g, r));
    }
    assert_eq!(store.0.active_calls.load(Ordering::SeqCst), 1, "32 concurrent misses, one load");

    // Another key while the store fails: each waiter gets the error, nothing is cached, and
    // the next request (the store back) loads again.
    store.0.fail.store(true, Ordering::SeqCst);
    let other = range(day("2024-04-01"), day("2024-04-07"));
    let asks = (0..8).map(|_| {
        let (q, g) = (q.clone(), g.clone());
        tokio::spawn(async move { q.active_users(&g, other).await })
    });
    for answer in futures::future::join_all(asks).await {
        assert!(answer.unwrap().is_err());
    }
    assert_eq!(store.0.active_calls.load(Ordering::SeqCst), 2, "the failed load is shared, not retried in turn");
    store.0.fail.store(false, Ordering::SeqCst);
    assert_eq!(q.active_users(&g, other).await.unwrap(), active_users_of(&g, other));
    q.wait_idle().await;
    cleanup(q.cache()).await;
}
