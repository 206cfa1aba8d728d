//! The cache in cluster mode against the real Redis Cluster (3 masters + 3 replicas,
//! GM_REDIS_CLUSTER_URLS; `scripts/services up redis-cluster`): RedisCache's operations,
//! cached queries, recommendation lists and leaderboards work with keys spread over every
//! master; the keys one atomic operation names are in one slot; erasure reaches every master.
//! Each test uses its own prefix `gm:test:<uuid>:` and removes its keys. (The failover test
//! is `cluster_failover.rs`, a binary of its own: it kills a master.)

mod common;

use chrono::Utc;
use common::fakes::{Board, Lists};
use common::*;
use gm_projections::leaderboard::{BoardPeriod, Period};
use gm_projections::model::DateRange;
use gm_projections::{AnalyticsQueries, GameQueries, RecommendationQueries};
use gm_redis::{
    board_key, board_marker_key, erased_marker_key, funnel_key, key_slot, profile_key, query_key, recommendations_key,
    CacheError, CachedGameQueries, CachedQueries, CachedRecommendations, QueryKind, RedisCache,
};
use gm_schemas::{GameId, PlayerId};
use std::sync::atomic::Ordering;
use std::time::Duration;

async fn connect() -> RedisCache {
    let cache = RedisCache::connect(cluster_config().await).await.unwrap();
    assert!(cache.is_cluster());
    assert!(cache.health().await, "health() must be true against the real cluster");
    cache
}

fn board(game_id: &str, name: &str, start: &str) -> BoardPeriod {
    BoardPeriod { game_id: game(game_id), board: name.into(), period: Period::Daily, start: day(start) }
}

#[tokio::test]
async fn key_slots_agree_with_the_cluster_and_related_keys_share_one() {
    let cache = connect().await;
    let mut con = node_connection(&seed_urls(&cluster_urls().await)[0]).await;
    let g = game("space-race");
    let mut keys: Vec<String> =
        ["foo", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}", "{}", "{", "}{a}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let mut profiles = Vec::new();
    for i in 0..40 {
        let p = player(&format!("player-{i}"));
        let profile = cache.full_key(&profile_key(&g, &p));
        let marker = cache.full_key(&erased_marker_key(&g, &p));
        let list = cache.full_key(&recommendations_key(&g, &p, 10, 14.0));
        let slot = server_slot(&mut con, &profile).await;
        assert_eq!(server_slot(&mut con, &marker).await, slot, "{marker} and {profile}");
        assert_eq!(server_slot(&mut con, &list).await, slot, "{list} and {profile}");
        let b = board("space-race", &format!("board-{i}"), "2024-03-11");
        let (set, ok) = (cache.full_key(&board_key(&b)), cache.full_key(&board_marker_key(&b)));
        assert_eq!(server_slot(&mut con, &set).await, server_slot(&mut con, &ok).await, "{set} and {ok}");
        profiles.push(profile.clone());
        keys.extend([profile, marker, list, set, ok]);
    }
    let r = range(day("2024-01-01"), day("2024-01-31"));
    keys.extend([cache.full_key(&query_key(QueryKind::Revenue, &g, r)), cache.full_key(&funnel_key(&g))]);
    for k in &keys {
        assert_eq!(key_slot(k.as_bytes()), server_slot(&mut con, k).await, "slot of {k:?}");
    }
    // Forty players' keys are spread over every master, not piled on one.
    let masters = masters_of(&profiles).await;
    assert_eq!(masters.len(), 3, "profiles of 40 players on {masters:?}");
}

#[tokio::test]
async fn cache_operations_work_with_keys_on_every_master() {
    let cache = connect().await;
    let entries: Vec<(String, Vec<u8>)> =
        (0..600).map(|i| (format!("k:{i}"), format!("value-{i}").into_bytes())).collect();
    cache.set_many(&entries, Duration::from_secs(60)).await.unwrap();
    let full: Vec<String> = entries.iter().map(|(k, _)| cache.full_key(k)).collect();
    let masters = masters_of(&full).await;
    assert_eq!(masters.len(), 3, "600 keys on {masters:?}");
    for (k, v) in &entries {
        assert_eq!(cache.get(k).await.unwrap().as_ref(), Some(v), "{k}");
    }
    assert_eq!(cache.get("absent").await.unwrap(), None);
    let mut raw = raw_cluster().await;
    for k in full.iter().step_by(50) {
        let t: i64 = redis::cmd("PTTL").arg(k).query_async(&mut raw).await.unwrap();
        assert!(t > 50_000 && t <= 60_000, "PTTL of {k}: {t}");
    }
    // A zero TTL means "do not cache".
    cache.set_many(&[("zero", b"x".to_vec())], Duration::ZERO).await.unwrap();
    assert_eq!(cache.get("zero").await.unwrap(), None);

    // delete_many over many slots and every master counts exactly what it deleted.
    let mut doomed: Vec<String> = (0..300).map(|i| format!("k:{i}")).collect();
    doomed.push("absent".into());
    assert_eq!(cache.delete_many(&doomed).await.unwrap(), 300);
    let mut expected: Vec<String> = (300..600).map(|i| cache.full_key(&format!("k:{i}"))).collect();
    expected.sort();
    assert_eq!(cluster_keys_under(&cache.config().key_prefix).await, expected);

    // delete_prefix scans every master: 2,500 keys (several SCAN/UNLINK batches on each),
    // and keys that must survive, here and under another deployment's prefix.
    let neighbour = connect().await;
    let doomed: Vec<(String, &[u8])> = (0..2500).map(|i| (format!("player:g1:{i}"), &b"x"[..])).collect();
    cache.set_many(&doomed, Duration::from_secs(60)).await.unwrap();
    neighbour.set_many(&doomed[..30], Duration::from_secs(60)).await.unwrap();
    let survivors = ["player:g2:1", "player:g1", "playe", "other:player:g1:1", "player:g*:1"];
    let kept: Vec<(&str, &[u8])> = survivors.iter().map(|k| (*k, &b"y"[..])).collect();
    cache.set_many(&kept, Duration::from_secs(60)).await.unwrap();
    let doomed_full: Vec<String> = doomed.iter().map(|(k, _)| cache.full_key(k)).collect();
    assert_eq!(masters_of(&doomed_full).await.len(), 3);
    let started = std::time::Instant::now();
    assert_eq!(cache.delete_prefix("player:g1:").await.unwrap(), 2500);
    eprintln!("MEASURE cluster delete_prefix of 2500 keys on 3 masters: {:?}", started.elapsed());
    let mut expected: Vec<String> = survivors.iter().map(|k| cache.full_key(k)).collect();
    expected.extend((300..600).map(|i| cache.full_key(&format!("k:{i}"))));
    expected.sort();
    assert_eq!(cluster_keys_under(&cache.config().key_prefix).await, expected);
    assert_eq!(cluster_keys_under(&neighbour.config().key_prefix).await.len(), 30, "another prefix is untouched");

    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
    cleanup_cluster(&cache).await;
    cleanup_cluster(&neighbour).await;
}

#[tokio::test]
async fn atomic_operations_keep_to_one_slot_on_every_master() {
    let cache = connect().await;
    // Keys without a common tag are refused before they reach Redis (on one node too).
    let ttl = Duration::from_secs(60);
    assert!(matches!(cache.set_unless_marked("v:1", b"x", ttl, "m:1").await, Err(CacheError::Refused(_))));
    assert!(matches!(cache.mark_and_delete(&["v:1"], "m:1", ttl).await, Err(CacheError::Refused(_))));

    // Thirty tags, spread over the masters: the marker set by mark_and_delete keeps
    // set_unless_marked out, the other tags are unaffected.
    let tags: Vec<String> = (0..30).map(|i| format!("{{t{i}}}")).collect();
    for t in &tags {
        assert!(cache.set_unless_marked(&format!("v:{t}"), b"1", ttl, &format!("m:{t}")).await.unwrap());
    }
    let values: Vec<String> = tags.iter().map(|t| cache.full_key(&format!("v:{t}"))).collect();
    assert_eq!(masters_of(&values).await.len(), 3);
    for t in tags.iter().step_by(2) {
        assert_eq!(cache.mark_and_delete(&[format!("v:{t}")], &format!("m:{t}"), ttl).await.unwrap(), 1);
    }
    for (i, t) in tags.iter().enumerate() {
        let written = cache.set_unless_marked(&format!("v:{t}"), b"2", ttl, &format!("m:{t}")).await.unwrap();
        assert_eq!(written, i % 2 == 1, "{t}");
        assert_eq!(cache.get(&format!("v:{t}")).await.unwrap().is_some(), i % 2 == 1, "{t}");
    }
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
    cleanup_cluster(&cache).await;
}

#[tokio::test]
async fn cached_queries_and_profile_erasure_work_across_masters() {
    let mut store = CountingStore::default();
    let players: Vec<String> = (0..30).map(|i| format!("player-{i}")).collect();
    for (i, p) in players.iter().enumerate() {
        store = store.with_profile(profile("g1", p, i as u64 + 1));
    }
    let q = CachedQueries::new(store.clone(), connect().await);
    let g = game("g1");
    let ranges: Vec<DateRange> =
        (1..=5).map(|d| range(day("2024-03-01"), day("2024-03-01") + chrono::Duration::days(d))).collect();
    for round in 0..2 {
        for (i, p) in players.iter().enumerate() {
            assert_eq!(q.player_profile(&g, &player(p)).await.unwrap(), Some(profile("g1", p, i as u64 + 1)));
        }
        for r in &ranges {
            assert_eq!(q.active_users(&g, *r).await.unwrap(), active_users_of(&g, *r));
            assert_eq!(q.sessions(&g, *r).await.unwrap(), sessions_of(&g, *r));
            assert_eq!(q.revenue(&g, *r).await.unwrap(), revenue_of(&g, *r));
        }
        assert_eq!(q.funnel(&g).await.unwrap(), funnel_of(&g));
        q.wait_idle().await;
        assert_eq!(store.total(), 30 + 15 + 1, "round {round}: only the first round reaches the store");
    }
    let s = q.stats();
    assert_eq!((s.misses, s.hits, s.lookup_errors, s.decode_errors), (46, 46, 0, 0), "{s:?}");
    let c = q.cache();
    let profiles: Vec<String> = players.iter().map(|p| c.full_key(&profile_key(&g, &player(p)))).collect();
    assert_eq!(masters_of(&profiles).await.len(), 3, "profiles spread over every master");

    // Erasure of every third player: profile purged, marker set for erasure_guard, a stale
    // read-through cannot put the profile back; the other players stay cached.
    let mut raw = raw_cluster().await;
    let erased: Vec<&String> = players.iter().step_by(3).collect();
    for p in &erased {
        assert_eq!(q.invalidate_player(&g, &player(p)).await.unwrap(), 1, "{p}");
        let guard: i64 =
            redis::cmd("PTTL").arg(c.full_key(&erased_marker_key(&g, &player(p)))).query_async(&mut raw).await.unwrap();
        assert!(guard > 590_000 && guard <= 600_000, "erasure guard PTTL {guard}");
        // The store still has the profile (the projection has not erased it yet).
        assert!(q.player_profile(&g, &player(p)).await.unwrap().is_some());
    }
    q.wait_idle().await;
    let left = cluster_keys_under(&c.full_key("profile:")).await;
    for p in &players {
        let cached = left.contains(&c.full_key(&profile_key(&g, &player(p))));
        assert_eq!(cached, !erased.contains(&p), "{p}: stale write-backs refused, others untouched");
    }
    assert_eq!(q.invalidate_player(&g, &player(erased[0])).await.unwrap(), 0, "idempotent");
    assert_eq!(c.stats().errors, 0, "{:?}", c.stats());
    cleanup_cluster(c).await;
}

/// Whether a read of the list is answered by Redis within a second (write-backs are
/// background tasks).
async fn warm(cached: &CachedRecommendations<Lists>, store: &Lists, g: &GameId, p: &PlayerId, limit: usize) -> bool {
    answered_by_redis(&store.0, || cached.recommendations(g, p, limit, 14.0, Utc::now())).await.is_some()
}

#[tokio::test]
async fn recommendation_lists_and_their_erasure_work_across_masters() {
    let cache = connect().await;
    let store = Lists::default();
    let cached = CachedRecommendations::new(store.clone(), cache.clone());
    let profiles = CachedQueries::new(CountingStore::default(), cache.clone());
    let g = game("space-race");
    let players: Vec<PlayerId> = (0..20).map(|i| player(&format!("p{i}"))).collect();
    for p in &players {
        for limit in [3, 5] {
            cached.recommendations(&g, p, limit, 14.0, Utc::now()).await.unwrap();
            assert!(warm(&cached, &store, &g, p, limit).await, "{p} limit {limit}: a later read is answered by Redis");
        }
    }
    let lists: Vec<String> = players.iter().map(|p| cache.full_key(&recommendations_key(&g, p, 3, 14.0))).collect();
    assert_eq!(masters_of(&lists).await.len(), 3, "lists spread over every master");

    // Erasure of a quarter of the players: the marker (profile cache), then the lists.
    let erased: Vec<&PlayerId> = players.iter().step_by(4).collect();
    for p in &erased {
        profiles.invalidate_player(&g, p).await.unwrap();
        assert_eq!(cached.invalidate_player(&g, p).await.unwrap(), 2, "{p}: both lists");
    }
    let left = cluster_keys_under(&cache.full_key("reco:")).await;
    assert_eq!(left.len(), 2 * (players.len() - erased.len()), "{left:?}");
    for p in &erased {
        assert!(left.iter().all(|k| !k.contains(&format!(":{p}:"))), "a list of {p} is left: {left:?}");
        let before = store.0.load(Ordering::SeqCst);
        cached.recommendations(&g, p, 3, 14.0, Utc::now()).await.unwrap();
        assert_eq!(store.0.load(Ordering::SeqCst), before + 1, "recomputed, not cached");
    }
    assert!(!warm(&cached, &store, &g, erased[1], 3).await, "the erasure marker keeps read-through writes out");
    assert!(warm(&cached, &store, &g, &players[1], 3).await, "other players' lists are still served");
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
    cleanup_cluster(&cache).await;
}

#[tokio::test]
async fn leaderboards_and_their_erasure_work_across_masters() {
    let cache = connect().await;
    let store = Board::default();
    store.scores.lock().unwrap().extend((0..200i64).map(|i| (format!("p{i:03}"), (i % 23 - 5) * 1_000)));
    let cached = CachedGameQueries::new(store.clone(), cache.clone());
    let boards: Vec<BoardPeriod> = (0..12).map(|i| board("space-race", &format!("board-{i}"), "2024-03-11")).collect();
    let elsewhere = board("other-game", "board-0", "2024-03-11");
    for b in boards.iter().chain([&elsewhere]) {
        cached.leaderboard(b, 0, 10).await.unwrap(); // cold: rebuilds the set
        let before = store.calls.load(Ordering::SeqCst);
        for (offset, limit) in [(0, 10), (0, 500), (17, 13)] {
            let warm = cached.leaderboard(b, offset, limit).await.unwrap();
            assert_eq!(warm, store.leaderboard(b, offset, limit).await.unwrap(), "{b:?} page {offset}+{limit}");
        }
        for p in ["p000", "p022", "p150"] {
            let p = player(p);
            let warm = cached.leaderboard_player(b, &p, 2).await.unwrap();
            assert_eq!(warm, store.leaderboard_player(b, &p, 2).await.unwrap(), "{b:?} standing of {p}");
        }
        assert_eq!(store.calls.load(Ordering::SeqCst) - before, 3 + 3, "{b:?}: warm reads come from Redis alone");
    }
    let sets: Vec<String> = boards.iter().map(|b| cache.full_key(&board_key(b))).collect();
    let masters = masters_of(&sets).await;
    assert!(masters.len() >= 2, "12 boards on {masters:?}");

    // Erasure: the store forgets p150; invalidation drops every board of the game on every
    // master (not the other game's), and the next reads rebuild without the player.
    store.scores.lock().unwrap().retain(|(p, _)| p != "p150");
    let dropped = cached.invalidate_player(&game("space-race"), &player("p150")).await.unwrap();
    assert_eq!(dropped, 2 * boards.len() as u64, "a set and a marker per board");
    let left = cluster_keys_under(&cache.config().key_prefix).await;
    let mut expected = vec![cache.full_key(&board_key(&elsewhere)), cache.full_key(&board_marker_key(&elsewhere))];
    expected.sort();
    assert_eq!(left, expected, "only the other game's board is left");
    for b in &boards {
        let page = cached.leaderboard(b, 0, 500).await.unwrap();
        assert!(page.entries.iter().all(|e| e.player_id != "p150") && page.total == 199, "{b:?}");
        assert_eq!(cached.leaderboard_player(b, &player("p150"), 2).await.unwrap(), None);
    }
    // Retention reads through a plain key.
    let r = range(day("2024-03-01"), day("2024-03-07"));
    let first = cached.retention(&game("space-race"), r).await.unwrap();
    let g = game("space-race");
    let again = answered_by_redis(&store.calls, || cached.retention(&g, r)).await.map(Result::unwrap);
    assert_eq!(again.expect("a later read is answered by Redis"), first);
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
    cleanup_cluster(&cache).await;
}
