//! Failover of the real Redis Cluster under the cache: SIGKILL of a master, its replica takes
//! over, and the cache serves and writes that master's slots again within a bounded time —
//! while the other masters keep serving throughout, and erasure is told the truth (fails)
//! as long as a master is missing. The killed node is restarted at the end (it rejoins as a
//! replica), so the cluster is whole again for other tests. A test binary of its own: it
//! takes a master away from every test that would run beside it.

mod common;

use common::*;
use gm_redis::{key_slot, RedisCache};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long the cluster may take to notice the dead master and promote its replica
/// (`cluster-node-timeout` 3 s in scripts/services, then the election).
const PROMOTION_LIMIT: Duration = Duration::from_secs(60);

/// Scheduling slack on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(300);

/// `scripts/services up redis-cluster` for the cluster of GM_REDIS_CLUSTER_URLS (its first
/// port is the base port), which restarts a killed node and waits until the cluster is
/// whole: explicitly at the end of the test, or on drop if the test fails before.
struct RestartCluster {
    base_port: u16,
    done: bool,
}

impl RestartCluster {
    fn up(&mut self) -> Result<(), String> {
        self.done = true;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services");
        let out = Command::new(script)
            .args(["up", "redis-cluster"])
            .env("GM_REDIS_CLUSTER_PORT", self.base_port.to_string())
            .output()
            .map_err(|e| format!("{script}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("scripts/services up redis-cluster failed: {}", String::from_utf8_lossy(&out.stderr)))
        }
    }
}

impl Drop for RestartCluster {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.up() {
                eprintln!("{e}");
            }
        }
    }
}

async fn role(node: &ClusterNode) -> Option<String> {
    let client = redis::Client::open(node.url()).ok()?;
    let attempt = async {
        let mut con = client.get_multiplexed_async_connection().await?;
        redis::cmd("INFO").arg("replication").query_async::<String>(&mut con).await
    };
    let info = tokio::time::timeout(Duration::from_secs(2), attempt).await.ok()?.ok()?;
    info.lines().find_map(|l| l.trim().strip_prefix("role:")).map(str::to_string)
}

#[tokio::test]
async fn a_killed_master_is_replaced_by_its_replica_and_the_cache_serves_and_writes_again() {
    let urls = cluster_urls().await;
    let mut cfg = cluster_config().await;
    cfg.breaker_cooldown_ms = 500;
    cfg.reconnect_interval_ms = 200;
    let (op_timeout, cooldown) = (cfg.op_timeout(), cfg.breaker_cooldown());
    let cache = RedisCache::connect(cfg.clone()).await.unwrap();
    assert!(cache.health().await);
    // A second cache that asks only for the dead master's keys during the failover: its
    // breaker trips (consecutive failures), drops the connection and reconnects from the
    // seed nodes after each cooldown.
    let lone = RedisCache::connect(cfg).await.unwrap();

    // 300 keys over the three masters; the victim is the master of the first one.
    let entries: Vec<(String, Vec<u8>)> = (0..300).map(|i| (format!("k:{i}"), format!("v{i}").into_bytes())).collect();
    cache.set_many(&entries, Duration::from_secs(600)).await.unwrap();
    let nodes = cluster_nodes_of(&urls).await;
    let owner = |key: &str| {
        let slot = key_slot(cache.full_key(key).as_bytes());
        nodes.iter().find(|n| n.is_master() && n.serves(slot)).unwrap_or_else(|| panic!("no master for {key}")).clone()
    };
    let victim = owner(&entries[0].0);
    let replica = nodes
        .iter()
        .find(|n| n.master_of.as_deref() == Some(victim.id.as_str()))
        .unwrap_or_else(|| panic!("master {} has no replica: {nodes:#?}", victim.addr))
        .clone();
    let (on_victim, elsewhere): (Vec<_>, Vec<_>) = entries.iter().partition(|(k, _)| owner(k).id == victim.id);
    assert!(!on_victim.is_empty() && !elsewhere.is_empty());
    // A key for writes after the failover, in the victim's slots.
    let fresh = (0..).map(|i| format!("after:{i}")).find(|k| owner(k).id == victim.id).unwrap();

    // Every write has reached the replica before the kill, so the takeover loses none.
    let mut victim_con = node_connection(&victim.url()).await;
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5_000).query_async(&mut victim_con).await.unwrap();
    assert!(acked >= 1, "the replica of {} did not acknowledge the writes", victim.addr);
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut victim_con).await.unwrap();
    let pid: u32 = info.lines().find_map(|l| l.trim().strip_prefix("process_id:")).unwrap().parse().unwrap();
    drop(victim_con);

    let base_port = seed_urls(&urls)
        .iter()
        .map(|u| u.rsplit(':').next().unwrap().trim_end_matches('/').parse::<u16>().unwrap())
        .min()
        .unwrap();
    let mut restart = RestartCluster { base_port, done: false };
    let status = Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -KILL {pid} (master {})", victim.addr);
    let killed = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(killed.elapsed() < Duration::from_secs(10), "pid {pid} survived SIGKILL");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("killed master {} (pid {pid}); its replica is {}", victim.addr, replica.addr);

    // While no one serves the victim's slots: erasure and health are told so...
    let erasure = cache.delete_prefix("nothing-here:").await;
    let health = cache.health().await;
    if role(&replica).await.as_deref() != Some("master") {
        assert!(erasure.is_err(), "delete_prefix must fail while a master is missing: {erasure:?}");
        assert!(!health, "health() must be false while a master's slots are not served");
    }
    // ...the other masters keep serving, and the victim's keys fail within op_timeout.
    let (mut served, mut failed, mut slowest) = (0, 0, Duration::ZERO);
    let promoted = loop {
        if role(&replica).await.as_deref() == Some("master") {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < PROMOTION_LIMIT, "replica {} not promoted within {PROMOTION_LIMIT:?}", replica.addr);
        for (i, (k, v)) in elsewhere.iter().enumerate().take(3) {
            let (got, t) = timed(cache.get(k)).await;
            slowest = slowest.max(t);
            if got.as_ref().ok() == Some(&Some(v.clone())) {
                served += 1;
            }
            let (k, _) = on_victim[i % on_victim.len()];
            let (got, t) = timed(cache.get(k)).await;
            slowest = slowest.max(t);
            if got.is_err() {
                failed += 1;
            }
            let (got, t) = timed(lone.get(k)).await;
            slowest = slowest.max(t);
            if got.is_ok() {
                // Only possible if the takeover happened since the role was checked.
                assert_eq!(role(&replica).await.as_deref(), Some("master"), "{k} read from a dead master: {got:?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("MEASURE failover: replica promoted {promoted:?} after the kill; meanwhile {served} reads served, {failed} failed, slowest {slowest:?}");
    assert!(served > 0, "the surviving masters must keep serving during the failover");
    assert!(failed > 0, "reads of the dead master's slots cannot succeed before the takeover");
    assert!(slowest < op_timeout + MARGIN, "a read during the failover took {slowest:?}");

    // After the takeover, health() is true again (with no other traffic to show the client
    // the new master), then the cache reads the victim's keys (from the promoted replica)
    // and writes its slots again: each within the breaker's cooldown and a reconnection.
    let bound = cooldown + Duration::from_secs(2);
    let taken_over = Instant::now();
    while !cache.health().await {
        assert!(taken_over.elapsed() < bound, "health() still false {:?} after the takeover", taken_over.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let healthy = taken_over.elapsed();
    let recovered = loop {
        let (k, v) = on_victim[0];
        let read = cache.get(k).await;
        let wrote = cache.set_many(&[(fresh.as_str(), &b"new"[..])], Duration::from_secs(600)).await;
        if read.as_ref().ok() == Some(&Some(v.clone())) && wrote.is_ok() {
            break taken_over.elapsed();
        }
        assert!(
            taken_over.elapsed() < Duration::from_secs(30),
            "the cache does not serve the new master: read {read:?}, write {wrote:?}, {:?}",
            cache.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "MEASURE failover: after the takeover, health() true after {healthy:?}, reads and writes of the new master served after {recovered:?}"
    );
    assert!(recovered < bound, "recovered after {recovered:?}, bound {bound:?}");
    let (k, v) = on_victim[0];
    let recovered = loop {
        let read = lone.get(k).await;
        if read.as_ref().ok() == Some(&Some(v.clone())) {
            break taken_over.elapsed();
        }
        assert!(taken_over.elapsed() < bound, "the tripped cache does not recover: {read:?}, {:?}", lone.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stats = lone.stats();
    eprintln!("MEASURE failover: the cache whose breaker tripped served the new master {recovered:?} after the takeover; {stats:?}");
    assert!(stats.connects >= 2 && stats.skipped > 0, "the breaker tripped and the connection was rebuilt: {stats:?}");
    assert_eq!(cache.get(&fresh).await.unwrap().as_deref(), Some(&b"new"[..]));

    // Nothing written before the kill is lost; writes, health and erasure work on the new
    // set of masters.
    for (k, v) in &entries {
        assert_eq!(cache.get(k).await.unwrap().as_ref(), Some(v), "{k} after the failover");
    }
    let more: Vec<(String, Vec<u8>)> = (0..300).map(|i| (format!("m:{i}"), vec![b'x'; 8])).collect();
    cache.set_many(&more, Duration::from_secs(600)).await.unwrap();
    assert!(cache.health().await);
    assert_eq!(cache.delete_prefix("m:").await.unwrap(), 300);

    // The killed node comes back as a replica of its former replica: the cluster is whole.
    restart.up().unwrap();
    let nodes = cluster_nodes_of(&urls).await;
    let back = nodes.iter().find(|n| n.id == victim.id).unwrap();
    assert_eq!(back.master_of.as_deref(), Some(replica.id.as_str()), "{nodes:#?}");
    assert!(nodes.iter().all(|n| !n.failed()), "{nodes:#?}");
    assert!(cache.health().await);
    for (k, v) in entries.iter().step_by(10) {
        assert_eq!(cache.get(k).await.unwrap().as_ref(), Some(v));
    }
    cleanup_cluster(&cache).await;
}
