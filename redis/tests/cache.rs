//! RedisCache against the real Redis: pipelined writes with TTL, reads, deletes by key and
//! by prefix. Each test uses its own prefix `gm:test:<uuid>:` and removes its keys.

mod common;

use common::*;
use gm_redis::RedisCache;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[tokio::test]
async fn get_set_roundtrip_with_ttl() {
    let cache = RedisCache::connect(test_config().await).await.unwrap();
    assert!(cache.health().await, "health() must be true against the real Redis");
    assert_eq!(cache.get("absent").await.unwrap(), None);
    cache.set_many(&[("a", b"1".to_vec()), ("b", b"2".to_vec())], Duration::from_secs(7)).await.unwrap();
    assert_eq!(cache.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(cache.get("b").await.unwrap().as_deref(), Some(&b"2"[..]));
    let mut con = raw().await;
    let ttl = pttl(&mut con, &cache.full_key("a")).await;
    assert!(ttl > 5_000 && ttl <= 7_000, "PTTL {ttl}");
    // A zero TTL means "do not cache".
    cache.set_many(&[("zero", b"x".to_vec())], Duration::ZERO).await.unwrap();
    assert_eq!(cache.get("zero").await.unwrap(), None);
    cleanup(&cache).await;
}

#[tokio::test]
async fn set_many_of_1000_keys_is_one_round_trip() {
    let mut cfg = test_config().await;
    let entries: Vec<(String, Vec<u8>)> =
        (0..1000).map(|i| (format!("bulk:{i}"), format!("value-{i}").into_bytes())).collect();

    // 1. Proof through a proxy that holds Redis' first reply back until all 1,000 SETs
    //    arrived: a client that waited for replies between commands would have sent 1.
    let proxy = Proxy::start("127.0.0.1:0").await;
    let real_prefix = cfg.key_prefix.clone();
    cfg.url = proxy.url();
    let via_proxy = RedisCache::connect(cfg.clone()).await.unwrap();
    assert_eq!(via_proxy.get("warm-up").await.unwrap(), None);
    proxy.control.expect_sets.store(1000, Ordering::SeqCst);
    proxy.control.armed.store(true, Ordering::SeqCst);
    via_proxy.set_many(&entries, Duration::from_secs(60)).await.unwrap();
    proxy.control.armed.store(false, Ordering::SeqCst);
    assert_eq!(
        proxy.control.sets_before_first_reply.load(Ordering::SeqCst),
        1000,
        "all 1,000 SETs must be on the wire before the first reply (one round trip)"
    );

    // 2. Correctness: every key, with its value and TTL.
    let mut con = raw().await;
    let keys: Vec<String> = entries.iter().map(|(k, _)| format!("{real_prefix}{k}")).collect();
    let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query_async(&mut con).await.unwrap();
    for ((_, v), got) in entries.iter().zip(&values) {
        assert_eq!(got.as_ref(), Some(v));
    }
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.cmd("PTTL").arg(k);
    }
    let ttls: Vec<i64> = pipe.query_async(&mut con).await.unwrap();
    assert!(ttls.iter().all(|t| *t > 50_000 && *t <= 60_000), "every key has the TTL");

    // 3. Measurement, directly against Redis: one pipelined set_many vs 1,000 single sets.
    let cache = RedisCache::connect(test_config().await).await.unwrap();
    let start = Instant::now();
    cache.set_many(&entries, Duration::from_secs(60)).await.unwrap();
    let pipelined = start.elapsed();
    let start = Instant::now();
    for e in &entries {
        cache.set_many(std::slice::from_ref(e), Duration::from_secs(60)).await.unwrap();
    }
    let sequential = start.elapsed();
    eprintln!("MEASURE set_many 1000 keys: pipelined {pipelined:?}, 1000 single round trips {sequential:?}");
    assert!(pipelined < sequential, "pipelined {pipelined:?} vs sequential {sequential:?}");

    cleanup(&via_proxy).await;
    cleanup(&cache).await;
}

#[tokio::test]
async fn delete_many_deletes_exactly_the_given_keys() {
    let cache = RedisCache::connect(test_config().await).await.unwrap();
    let entries: Vec<(String, &[u8])> = (0..10).map(|i| (format!("k{i}"), &b"v"[..])).collect();
    cache.set_many(&entries, Duration::from_secs(60)).await.unwrap();
    assert_eq!(cache.delete_many(&["k1", "k2", "k3", "absent"]).await.unwrap(), 3);
    let mut con = raw().await;
    for i in 0..10 {
        assert_eq!(exists(&mut con, &cache.full_key(&format!("k{i}"))).await, !(1..=3).contains(&i), "k{i}");
    }
    assert_eq!(cache.delete_many::<&str>(&[]).await.unwrap(), 0);
    cleanup(&cache).await;
}

#[tokio::test]
async fn delete_prefix_removes_only_that_prefix() {
    let cache = RedisCache::connect(test_config().await).await.unwrap();
    let neighbour = RedisCache::connect(test_config().await).await.unwrap();
    // 2,500 keys to delete (several SCAN/UNLINK batches), and keys that must survive: a
    // sibling prefix, a key equal to the prefix without its last char, glob-looking keys,
    // and another deployment's keys with the same relative names.
    let doomed: Vec<(String, &[u8])> = (0..2500).map(|i| (format!("player:g1:{i}"), &b"x"[..])).collect();
    cache.set_many(&doomed, Duration::from_secs(60)).await.unwrap();
    let survivors = ["player:g2:1", "player:g1", "playe", "other:player:g1:1", "player:g*:1"];
    let kept: Vec<(&str, &[u8])> = survivors.iter().map(|k| (*k, &b"y"[..])).collect();
    cache.set_many(&kept, Duration::from_secs(60)).await.unwrap();
    neighbour.set_many(&doomed[..10], Duration::from_secs(60)).await.unwrap();

    let start = Instant::now();
    let deleted = cache.delete_prefix("player:g1:").await.unwrap();
    eprintln!("MEASURE delete_prefix of 2500 keys: {:?}", start.elapsed());
    assert_eq!(deleted, 2500);

    let mut con = raw().await;
    let mut left = keys_under(&mut con, &cache.config().key_prefix).await;
    left.sort();
    let mut expected: Vec<String> = survivors.iter().map(|k| cache.full_key(k)).collect();
    expected.sort();
    assert_eq!(left, expected);
    assert_eq!(keys_under(&mut con, &neighbour.config().key_prefix).await.len(), 10, "another prefix is untouched");

    // A prefix with glob characters matches literally.
    assert_eq!(cache.delete_prefix("player:g*").await.unwrap(), 1);
    assert!(exists(&mut con, &cache.full_key("player:g2:1")).await);

    cleanup(&cache).await;
    cleanup(&neighbour).await;
}

#[tokio::test]
async fn delete_prefix_refuses_to_empty_the_database() {
    let mut cfg = test_config().await;
    cfg.key_prefix = String::new();
    let cache = RedisCache::new(cfg).unwrap();
    assert!(matches!(cache.delete_prefix("").await, Err(gm_redis::CacheError::Refused(_))));
}

#[tokio::test]
async fn a_claim_is_granted_once_across_clients_until_it_expires() {
    use gm_ports::SharedClaims;
    let cfg = test_config().await;
    // Two gateways: two clients of the same Redis and prefix.
    let (a, b) = (RedisCache::connect(cfg.clone()).await.unwrap(), RedisCache::connect(cfg).await.unwrap());
    let ttl = Duration::from_millis(400);
    let claims = futures::future::join_all((0..8).map(|i| {
        let cache = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { cache.claim("sig:space-race:00ff", ttl).await.unwrap() }
    }))
    .await;
    assert_eq!(claims.iter().filter(|first| **first).count(), 1, "exactly one claim wins: {claims:?}");
    let mut con = raw().await;
    let left = pttl(&mut con, &a.full_key("sig:space-race:00ff")).await;
    assert!(left > 0 && left <= 400, "PTTL {left}");
    assert!(a.claim("sig:space-race:other", ttl).await.unwrap(), "another key is its own claim");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(b.claim("sig:space-race:00ff", ttl).await.unwrap(), "claimable again once expired");
    cleanup(&a).await;
}

#[tokio::test]
async fn shared_counters_add_in_one_pipeline_across_clients_and_expire() {
    use gm_ports::SharedCounters;
    let cfg = test_config().await;
    let (a, b) = (RedisCache::connect(cfg.clone()).await.unwrap(), RedisCache::connect(cfg).await.unwrap());
    let ttl = Duration::from_millis(500);
    let names = |n: &[u64]| -> Vec<(String, u64)> {
        n.iter().enumerate().map(|(i, n)| (format!("rl:{{p:42}}:g:player-{i}"), *n)).collect()
    };
    assert_eq!(a.add(&names(&[3, 1]), ttl).await.unwrap(), vec![3, 1]);
    assert_eq!(b.add(&names(&[2, 0]), ttl).await.unwrap(), vec![5, 1], "b reads a's counts, 0 reads only");
    let mut con = raw().await;
    let left = pttl(&mut con, &a.full_key("rl:{p:42}:g:player-0")).await;
    assert!(left > 0 && left <= 500, "PTTL {left}");
    // Counters of different hash tags would be in different cluster slots: refused.
    let mixed = vec![("rl:{p:42}:x".to_string(), 1), ("rl:{p:43}:x".to_string(), 1)];
    assert!(a.add(&mixed, ttl).await.is_err());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(a.add(&names(&[1]), ttl).await.unwrap(), vec![1], "expired: counting starts again");
    cleanup(&a).await;
}
