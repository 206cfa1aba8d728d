//! A Redis that is down, hung, or comes up late: every query still answers correctly from
//! the store, each call costs at most `op_timeout` plus a small margin, health() says so.

mod common;

use common::*;
use gm_projections::AnalyticsQueries;
use gm_redis::{CachedQueries, RedisCache, RedisConfig};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Scheduling slack on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(100);

/// Runs every query `rounds` times, checks every answer, returns the slowest call.
async fn query_everything(q: &CachedQueries<CountingStore>, rounds: usize) -> Duration {
    let (g, p) = (game("g1"), player("alice"));
    let r = range(day("2024-03-01"), day("2024-03-31"));
    let mut slowest = Duration::ZERO;
    for _ in 0..rounds {
        let (v, t) = timed(q.player_profile(&g, &p)).await;
        assert_eq!(v.unwrap(), Some(profile("g1", "alice", 12)));
        slowest = slowest.max(t);
        let (v, t) = timed(q.active_users(&g, r)).await;
        assert_eq!(v.unwrap(), active_users_of(&g, r));
        slowest = slowest.max(t);
        let (v, t) = timed(q.sessions(&g, r)).await;
        assert_eq!(v.unwrap(), sessions_of(&g, r));
        slowest = slowest.max(t);
        let (v, t) = timed(q.revenue(&g, r)).await;
        assert_eq!(v.unwrap(), revenue_of(&g, r));
        slowest = slowest.max(t);
        let (v, t) = timed(q.funnel(&g)).await;
        assert_eq!(v.unwrap(), funnel_of(&g));
        slowest = slowest.max(t);
    }
    slowest
}

fn dead_config(url: String) -> RedisConfig {
    let mut cfg = RedisConfig::new(url, format!("gm:test:{}:", uuid::Uuid::new_v4()));
    cfg.op_timeout_ms = 50;
    cfg.reconnect_interval_ms = 200;
    cfg
}

#[tokio::test]
async fn a_dead_redis_costs_correctness_nothing_and_latency_little() {
    let cfg = dead_config("redis://127.0.0.1:1".into());
    let op_timeout = cfg.op_timeout();
    // Starting never fails because Redis is down.
    let (cache, start) = timed(RedisCache::connect(cfg)).await;
    let cache = cache.expect("the process must start while Redis is down");
    eprintln!("MEASURE connect() to a dead port returned after {start:?}");
    assert!(!cache.health().await, "health() is false on a dead Redis");

    let store = CountingStore::default().with_profile(profile("g1", "alice", 12));
    let q = CachedQueries::new(store.clone(), cache);
    let slowest = query_everything(&q, 20).await;
    q.wait_idle().await;
    eprintln!("MEASURE dead Redis: slowest of 100 queries {slowest:?}");
    assert!(slowest < op_timeout + MARGIN, "slowest call {slowest:?}");
    assert_eq!(store.total(), 100, "every query answered by the store");
    let s = q.stats();
    assert_eq!(s.hits, 0);
    assert_eq!(s.lookup_errors, 100, "{s:?}");
    assert!(q.cache().stats().skipped > 0, "{:?}", q.cache().stats());
    assert!(!q.cache().health().await);

    // Erasure is told the truth: it must retry.
    assert!(q.invalidate_player(&game("g1"), &player("alice")).await.is_err());
    assert!(q.cache().delete_prefix("x").await.is_err());
}

#[tokio::test]
async fn a_hung_redis_costs_at_most_op_timeout_then_is_bypassed_and_recovers() {
    let proxy = Proxy::start("127.0.0.1:0").await;
    let mut cfg = dead_config(proxy.url());
    cfg.breaker_cooldown_ms = 300;
    let op_timeout = cfg.op_timeout();
    let cache = RedisCache::connect(cfg).await.unwrap();
    assert!(cache.health().await);
    let store = CountingStore::default().with_profile(profile("g1", "alice", 12));
    let q = CachedQueries::new(store.clone(), cache.clone());
    query_everything(&q, 1).await;
    q.wait_idle().await;
    assert_eq!(store.total(), 5);

    // Redis stops answering without closing the connection.
    proxy.control.frozen.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let slowest = query_everything(&q, 20).await;
    let elapsed = started.elapsed();
    eprintln!("MEASURE hung Redis: slowest of 100 queries {slowest:?}, all 100 in {elapsed:?}");
    assert!(slowest < op_timeout + MARGIN, "slowest call {slowest:?}");
    assert!(!cache.health().await);
    let cs = cache.stats();
    assert!(cs.timeouts >= 5, "{cs:?}");
    assert!(cs.skipped > 0, "the breaker bypasses a hung Redis: {cs:?}");
    // 100 calls at 50 ms each would take 5 s; the breaker keeps the total far below.
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    // Redis answers again: the cache reconnects by itself and serves hits.
    proxy.control.frozen.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cache.health().await {
        assert!(Instant::now() < deadline, "did not reconnect: {:?}", cache.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = store.total();
    let hits_before = q.stats().hits;
    query_everything(&q, 1).await; // values cached before the freeze are still there
    assert!(q.stats().hits > hits_before, "hits again after recovery: {:?}", q.stats());
    assert!(store.total() - before < 5);
    q.wait_idle().await;
    cleanup(&cache).await;
}

#[tokio::test]
async fn a_redis_that_comes_up_after_the_process_is_used_once_it_answers() {
    let port = free_port().await;
    let cfg = dead_config(format!("redis://127.0.0.1:{port}"));
    let cache = RedisCache::connect(cfg).await.unwrap();
    let store = CountingStore::default().with_profile(profile("g1", "alice", 12));
    let q = CachedQueries::new(store.clone(), cache.clone());
    query_everything(&q, 2).await;
    assert_eq!(store.total(), 10);
    assert!(!cache.health().await);

    let _proxy = Proxy::start(&format!("127.0.0.1:{port}")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cache.health().await {
        assert!(Instant::now() < deadline, "never connected: {:?}", cache.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    query_everything(&q, 1).await; // misses, written back
    q.wait_idle().await;
    let before = store.total();
    query_everything(&q, 1).await;
    assert_eq!(store.total(), before, "served from Redis now");
    assert_eq!(cache.stats().connects, 1);
    cleanup(&cache).await;
}

#[tokio::test]
async fn a_dropped_connection_is_reestablished() {
    let proxy = Proxy::start("127.0.0.1:0").await;
    let port = proxy.addr.port();
    let cache = RedisCache::connect(dead_config(proxy.url())).await.unwrap();
    let store = CountingStore::default().with_profile(profile("g1", "alice", 12));
    let q = CachedQueries::new(store.clone(), cache.clone());
    query_everything(&q, 1).await;
    q.wait_idle().await;

    // Redis goes away (every connection closed, nothing listening): still correct.
    drop(proxy);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let slowest = query_everything(&q, 5).await;
    assert!(slowest < cache.config().op_timeout() + MARGIN, "slowest call {slowest:?}");
    assert!(!cache.health().await);

    // And comes back on the same address: hits again without any help.
    let _proxy = Proxy::start(&format!("127.0.0.1:{port}")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cache.health().await {
        assert!(Instant::now() < deadline, "never reconnected: {:?}", cache.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = store.total();
    query_everything(&q, 1).await;
    assert_eq!(store.total(), before, "the values cached before the outage are hits");
    q.wait_idle().await;
    cleanup(&cache).await;
}
