//! `gamemetrics bench --recovery-players N [--recovery-sample K]`: actor recovery at scale
//! (production mode: Kafka + PostgreSQL).
//!
//! 1. N player snapshots are written in bulk through the `SnapshotStore` port into a fresh
//!    PostgreSQL database (5,000 per `save`), each to the partition its key hashes to, so
//!    recovery runs against a table of N players.
//! 2. The actors role and a gateway start; K sampled players get one event each through the
//!    gateway (the real keys: the gateway may key a player by a pseudonym), are snapshotted
//!    and passivated. RSS of the actors process before, with the K players live, and after
//!    all were passivated (`gamemetrics_actors_live` = 0); the deltas ÷ K are the bytes per
//!    live and per idle player.
//! 3. The actors process is SIGKILLed and restarted: time to `/health/ready` (target < 30 s
//!    with N = 1,000,000) and to owning every partition again (the group rebalance).
//!    Recovery is lazy — a shard seeks to its snapshot watermark and loads a player's
//!    snapshot when a record of that player arrives, one batched read per shard and poll, at
//!    most `actors.max_concurrent_loads` reads at a time — so readiness does not depend on N.
//! 4. A second event for each sampled player: the time until all K were restored from their
//!    snapshots (`gamemetrics_actors_recovered_total`) and applied gives restores per second.

use super::database::BenchDatabase;
use super::process::{RoleProcess, Spawner};
use super::{Mode, Target, GAME};
use anyhow::{bail, Context as _};
use gm_actors::PlayerState;
use gm_ports::SnapshotStore;
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

const TARGET_READY_S: f64 = 30.0;
const TARGET_IDLE_BYTES: f64 = 1024.0;

pub struct RecoveryReport {
    players: usize,
    snapshot_bytes: usize,
    write_seconds: f64,
    first_ready_seconds: f64,
    restart_ready_seconds: f64,
    restart_assigned_seconds: f64,
    partitions: u32,
    sample: usize,
    restore_seconds: f64,
    rss_base_kb: u64,
    rss_live_kb: u64,
    rss_idle_kb: u64,
    rss_idle_second_kb: u64,
    max_concurrent_loads: usize,
}

/// A realistic mid-life player: a few sessions, levels, purchases, a full-ish dedup window.
fn snapshot(i: usize) -> anyhow::Result<Vec<u8>> {
    let now = chrono::Utc::now();
    let mut state = PlayerState {
        seq: 40 + (i % 60) as u64,
        first_seen: Some(now - chrono::Duration::days(30)),
        last_seen: Some(now - chrono::Duration::hours(2)),
        current_level: Some(format!("level-{}", 1 + i % 12)),
        levels_completed: (i % 12) as u64,
        xp: (i % 5000) as i64,
        playtime_seconds: 3600 + (i % 7200) as u64,
        session_count: 3 + (i % 20) as u64,
        purchases: (i % 3) as u64,
        ..PlayerState::default()
    };
    if !i.is_multiple_of(3) {
        state.revenue_minor.insert("USD".into(), 499);
        state.inventory.insert("gem-pack".into(), 1);
    }
    state.balances.insert("gold".into(), (i % 1000) as i64);
    for _ in 0..32 {
        state.recent_ids.remember(uuid::Uuid::now_v7(), now, &Default::default());
    }
    Ok(state.to_snapshot()?)
}

fn player_key(i: usize) -> String {
    format!("{GAME}:player-{i:07}")
}

fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
}

/// The value of an unlabelled metric (sum over its series) in a Prometheus text page.
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub(super) async fn run(
    target: &Target,
    players: usize,
    sample: usize,
    work_dir: &Path,
) -> anyhow::Result<RecoveryReport> {
    if target.mode != Mode::Production {
        bail!("the recovery bench needs production mode (GM_MODE=production: Kafka + PostgreSQL)");
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let db = BenchDatabase::create(&target.postgres_url, &id).await?;
    let result = measure(target, players, sample.min(players), work_dir, &db, &id).await;
    db.drop_database().await;
    result
}

async fn measure(
    target: &Target,
    players: usize,
    sample: usize,
    work_dir: &Path,
    db: &BenchDatabase,
    id: &str,
) -> anyhow::Result<RecoveryReport> {
    let partitions = target.kafka.topics.raw.partitions.max(1);
    let store = gm_postgres::PgStore::connect(&db.url, 4).await.context("connecting to the bench database")?;
    let (write_seconds, snapshot_bytes) = write_snapshots(&store, players, partitions).await?;
    let key = format!("bench-key-{}", &id[..12]);
    let spawner = Spawner::new(target, work_dir, id, &key, Some(&db.url)).with_env([
        // Snapshot and passivate quickly so the idle measurement does not wait 5 minutes.
        ("GM_ACTORS__SNAPSHOT_EVERY_MS".to_string(), "500".to_string()),
        ("GM_ACTORS__PASSIVATE_AFTER_MS".to_string(), "2000".to_string()),
    ]);
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let t0 = Instant::now();
    let mut actors = spawner.spawn("recovery-actors", &["actors"])?;
    actors.wait_ready(&client).await?;
    let first_ready_seconds = t0.elapsed().as_secs_f64();
    let mut gateway = spawner.spawn("recovery-gateway", &["gateway"])?;
    gateway.wait_ready(&client).await?;
    wait_metric(&client, &actors.url(), "gamemetrics_actor_shards", partitions as f64, "own every partition").await?;
    let sampled = Sampled { client: &client, gateway: gateway.url(), key: &key, sample };
    let memory = sampled.memory(&actors).await?;
    let restart = sampled.restart(&spawner, actors, partitions).await?;
    drop(gateway);
    store.pool().close().await;
    Ok(RecoveryReport {
        players,
        snapshot_bytes,
        write_seconds,
        first_ready_seconds,
        restart_ready_seconds: restart.ready_seconds,
        restart_assigned_seconds: restart.assigned_seconds,
        partitions,
        sample,
        restore_seconds: restart.restore_seconds,
        rss_base_kb: memory.base_kb,
        rss_live_kb: memory.live_kb,
        rss_idle_kb: memory.idle_kb,
        rss_idle_second_kb: memory.idle_second_kb,
        max_concurrent_loads: target.max_concurrent_loads,
    })
}

/// Writes `players` snapshots through `SnapshotStore::save` (5,000 per call, each to the
/// partition its key hashes to); returns the seconds it took and the bytes written.
async fn write_snapshots(
    store: &gm_postgres::PgStore,
    players: usize,
    partitions: u32,
) -> anyhow::Result<(f64, usize)> {
    eprintln!("bench recovery: writing {players} snapshots over {partitions} partitions");
    let started = Instant::now();
    let mut snapshot_bytes = 0;
    let mut per_partition: Vec<Vec<(String, Vec<u8>)>> = vec![Vec::new(); partitions as usize];
    // The watermark each partition's next save moves from (saves are fenced on it).
    let mut watermarks: Vec<Option<u64>> = vec![None; partitions as usize];
    for i in 0..players {
        let key = player_key(i);
        let bytes = snapshot(i)?;
        snapshot_bytes += bytes.len();
        let p = gm_ports::partition_for(&key, partitions);
        per_partition[p as usize].push((key, bytes));
        if per_partition[p as usize].len() == 5_000 {
            store.save(p, watermarks[p as usize].replace(0), 0, std::mem::take(&mut per_partition[p as usize])).await?;
        }
    }
    for (p, batch) in per_partition.into_iter().enumerate() {
        if !batch.is_empty() {
            store.save(p as u32, watermarks[p].replace(0), 0, batch).await?;
        }
    }
    let write_seconds = started.elapsed().as_secs_f64();
    let stored = store.count().await?;
    if stored < players as u64 {
        bail!("{stored} snapshots stored, {players} written");
    }
    eprintln!("bench recovery: {players} snapshots in {write_seconds:.1} s");
    Ok((write_seconds, snapshot_bytes))
}

/// RSS of the actors process (kB) before, with the sample live, and after passivations.
struct Memory {
    base_kb: u64,
    live_kb: u64,
    idle_kb: u64,
    idle_second_kb: u64,
}

/// Times of the restart after SIGKILL.
struct Restart {
    ready_seconds: f64,
    assigned_seconds: f64,
    restore_seconds: f64,
}

/// The sampled players and the gateway they are sent through.
struct Sampled<'a> {
    client: &'a awc::Client,
    gateway: String,
    key: &'a str,
    sample: usize,
}

impl Sampled<'_> {
    fn ids(&self, prefix: &str) -> Vec<String> {
        (0..self.sample).map(|i| format!("{prefix}-{i:07}")).collect()
    }

    /// The sampled players live through the real path (the gateway may key a player by a
    /// pseudonym, so the bench does not guess keys): one event each, snapshotted, passivated;
    /// then a second set, whose RSS growth is what passivated players keep (freed pages of
    /// the first set are reused).
    async fn memory(&self, actors: &RoleProcess) -> anyhow::Result<Memory> {
        let (client, url, sample) = (self.client, actors.url(), self.sample as f64);
        let base_kb = rss_kb(actors.child.id())?;
        send_one_each(client, &self.gateway, self.key, &self.ids("sampled")).await?;
        wait_metric(client, &url, "gamemetrics_actor_events_processed_total", sample, "apply the sample").await?;
        let live_kb = rss_kb(actors.child.id())?;
        wait_metric(client, &url, "gamemetrics_snapshots_written_total", sample, "snapshot the sample").await?;
        wait_passivated(client, &url, "the sample").await?;
        let idle_kb = rss_kb(actors.child.id())?;
        send_one_each(client, &self.gateway, self.key, &self.ids("second")).await?;
        wait_metric(client, &url, "gamemetrics_actor_events_processed_total", 2.0 * sample, "apply the second set")
            .await?;
        wait_metric(client, &url, "gamemetrics_snapshots_written_total", 2.0 * sample, "snapshot the second set")
            .await?;
        wait_passivated(client, &url, "the second set").await?;
        Ok(Memory { base_kb, live_kb, idle_kb, idle_second_kb: rss_kb(actors.child.id())? })
    }

    /// The crash: SIGKILL, restart with every snapshot in the database, and a second event
    /// for each sampled player, each of whom must be restored from their snapshot.
    async fn restart(&self, spawner: &Spawner<'_>, actors: RoleProcess, partitions: u32) -> anyhow::Result<Restart> {
        let client = self.client;
        drop(actors);
        let t0 = Instant::now();
        let mut actors = spawner.spawn("recovery-actors", &["actors"])?;
        actors.wait_ready(client).await?;
        let ready_seconds = t0.elapsed().as_secs_f64();
        eprintln!("bench recovery: actors ready {ready_seconds:.2} s after the restart");
        // Owning every partition again needs the group to drop the killed member (its session
        // timeout) unless the restart rejoins first.
        let url = actors.url();
        wait_metric(client, &url, "gamemetrics_actor_shards", partitions as f64, "own every partition").await?;
        let assigned_seconds = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        send_one_each(client, &self.gateway, self.key, &self.ids("sampled")).await?;
        let sample = self.sample as f64;
        wait_metric(client, &url, "gamemetrics_actors_recovered_total", sample, "restore the sample").await?;
        wait_metric(client, &url, "gamemetrics_actor_events_processed_total", sample, "apply the sample").await?;
        Ok(Restart { ready_seconds, assigned_seconds, restore_seconds: t0.elapsed().as_secs_f64() })
    }
}

/// Waits (at most 120 s) until no player is live in the actors process.
async fn wait_passivated(client: &awc::Client, url: &str, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while metric(&metrics(client, url).await?, "gamemetrics_actors_live") > 0.0 {
        if Instant::now() >= deadline {
            bail!("{what} was not passivated within 120 s");
        }
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Waits (at most 600 s) until `name` on `url`'s /metrics reaches `target`.
async fn wait_metric(client: &awc::Client, url: &str, name: &str, target: f64, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last_report = Instant::now();
    loop {
        let value = metric(&metrics(client, url).await?, name);
        if value >= target {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("actors did not {what}: {name} = {value}, expected {target}");
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            eprintln!("bench recovery: waiting to {what}: {name} = {value} of {target}");
            last_report = Instant::now();
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One `session_start` per player, in batches of 100; every one must be accepted.
async fn send_one_each(client: &awc::Client, gateway: &str, key: &str, players: &[String]) -> anyhow::Result<()> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for chunk in players.chunks(100) {
        let events: Vec<_> =
            chunk.iter().map(|p| json!({"type": "session_start", "player_id": p, "client_ts": now})).collect();
        let response = client
            .post(format!("{gateway}/v1/events"))
            .insert_header(("Authorization", format!("Bearer {key}")))
            .insert_header(("Content-Type", "application/json"))
            .send_body(json!({"events": events}).to_string())
            .await
            .map_err(|e| anyhow::anyhow!("ingest: {e}"))?;
        if response.status().as_u16() != 202 {
            bail!("ingest answered {}", response.status());
        }
    }
    Ok(())
}

async fn metrics(client: &awc::Client, url: &str) -> anyhow::Result<String> {
    let mut response =
        client.get(format!("{url}/metrics")).send().await.map_err(|e| anyhow::anyhow!("GET /metrics: {e}"))?;
    let body = response.body().limit(16 << 20).await.map_err(|e| anyhow::anyhow!("GET /metrics: {e}"))?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

impl RecoveryReport {
    fn per_player_bytes(&self, kb: u64) -> f64 {
        (kb as f64 - self.rss_base_kb as f64) * 1024.0 / self.sample.max(1) as f64
    }

    pub fn markdown(&self, machine: &str) -> String {
        let mut out = String::new();
        let idle = self.per_player_bytes(self.rss_idle_kb);
        let live = self.per_player_bytes(self.rss_live_kb);
        let _ = writeln!(out, "\n### Actor recovery at scale ({} UTC)\n", chrono::Utc::now().format("%Y-%m-%d %H:%M"));
        let _ = writeln!(out, "`gamemetrics bench --recovery-players {}` on {machine}.\n", self.players);
        let _ = writeln!(out, "| what | measured | target |");
        let _ = writeln!(out, "|---|---:|---:|");
        let _ = writeln!(
            out,
            "| snapshots written through `SnapshotStore::save` (5,000 per call) | {} in {:.1} s ({:.0}/s, {:.0} B each) | — |",
            self.players,
            self.write_seconds,
            self.players as f64 / self.write_seconds.max(1e-9),
            self.snapshot_bytes as f64 / self.players.max(1) as f64
        );
        let _ = writeln!(out, "| actors first start → `/health/ready` | {:.2} s | — |", self.first_ready_seconds);
        let _ = writeln!(
            out,
            "| actors restart after SIGKILL, {} players snapshotted → `/health/ready` | {:.2} s | < {TARGET_READY_S:.0} s {} |",
            self.players,
            self.restart_ready_seconds,
            if self.restart_ready_seconds < TARGET_READY_S { "✅" } else { "❌" }
        );
        let _ = writeln!(
            out,
            "| actors restart → owns all {} partitions again (group rebalance) | {:.2} s | — |",
            self.partitions, self.restart_assigned_seconds
        );
        let _ = writeln!(
            out,
            "| {} sampled players restored from snapshot and applied an event | {:.1} s ({:.0} players/s; at most {} snapshot reads at a time) | — |",
            self.sample,
            self.restore_seconds,
            self.sample as f64 / self.restore_seconds.max(1e-9),
            self.max_concurrent_loads
        );
        let _ = writeln!(out, "| actors RSS per live player (RSS delta ÷ {}) | {:.0} B | — |", self.sample, live);
        let _ = writeln!(
            out,
            "| actors RSS per passivated player (RSS delta ÷ {}; upper bound: the allocator keeps freed pages) | {:.0} B | — |",
            self.sample,
            idle
        );
        let kept = (self.rss_idle_second_kb as f64 - self.rss_idle_kb as f64) * 1024.0 / self.sample.max(1) as f64;
        let _ = writeln!(
            out,
            "| actors RSS growth per player from a second set of {} brought live and passivated (what a passivated player keeps) | {kept:.0} B | < {TARGET_IDLE_BYTES:.0} B {} |",
            self.sample,
            if kept < TARGET_IDLE_BYTES { "✅" } else { "❌" }
        );
        out
    }
}
