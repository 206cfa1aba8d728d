//! `--fill-players N --fill-events M`: before a run's phases, its stores are filled with N
//! players and M events through the production write path — the gateway's batched route
//! (`POST /v1/events`: validation, pseudonymisation, sealing, new players' keys), Kafka, the
//! actors and the projections, each role in its own process as in production — so the later
//! phases measure a platform that holds data rather than an empty one. The fill's roles are
//! then stopped gracefully (the actors snapshot their players) and the run starts its own.
//! Right after the fill, the bytes stored per event are read: PostgreSQL per table, and Kafka
//! per topic from the broker's log directory when `--kafka-log-dir` is given.

use super::process::RoleProcess;
use super::run::Bench;
use super::send::prepare;
use super::GAME;
use crate::simulate::{plan_life, SentEvent};
use anyhow::{bail, Context as _};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

/// Who and what the fill sends, deterministic from the seed: `players` players named
/// `fill-0000000`…, `events` events split evenly between them, over the last `days` days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FillPlan {
    pub players: usize,
    pub events: usize,
    pub seed: u64,
    pub days: u32,
}

impl FillPlan {
    /// Players generated (and sent) at a time: ~100,000 events with the default shares, so
    /// memory stays bounded while the next chunk is generated during the sending of one.
    pub const CHUNK_PLAYERS: usize = 10_000;

    /// The plan of `--fill-players`/`--fill-events` (`None`: no fill). Every player needs at
    /// least one event.
    pub fn new(players: usize, events: usize) -> anyhow::Result<Option<Self>> {
        match (players, events) {
            (0, 0) => Ok(None),
            (p, e) if p == 0 || e < p => {
                bail!("--fill-events ({e}) must be at least --fill-players ({p}), and both > 0")
            }
            (players, events) => Ok(Some(Self { players, events, seed: 0xF111, days: 7 })),
        }
    }

    /// Player `i`'s share of the events: an even split, the remainder to the first players.
    pub fn quota(&self, i: usize) -> usize {
        self.events / self.players + usize::from(i < self.events % self.players)
    }

    pub fn player_id(i: usize) -> String {
        format!("fill-{i:07}")
    }

    /// Player `i`'s events in time order: the simulator's plan of a life in the window (more
    /// lives of the same player while shorter than the quota), cut to the quota.
    pub fn player_events(&self, game: &str, i: usize, now: DateTime<Utc>) -> Vec<SentEvent> {
        let quota = self.quota(i);
        let from = now - ChronoDuration::days(i64::from(self.days.max(1)));
        let player = Self::player_id(i);
        let mut events = Vec::with_capacity(quota + 16);
        let mut round = 0u64;
        while events.len() < quota {
            events.extend(plan_life(game, &player, self.seed.wrapping_add(round), from, now));
            round += 1;
        }
        events.sort_by_key(|e| e.timestamp);
        events.truncate(quota);
        events
    }

    /// The events of `players`, player after player.
    pub fn chunk(&self, game: &str, players: Range<usize>, now: DateTime<Utc>) -> Vec<SentEvent> {
        players.flat_map(|i| self.player_events(game, i, now)).collect()
    }

    /// The player ranges sent one after the other.
    pub fn chunks(&self) -> impl Iterator<Item = Range<usize>> {
        let players = self.players;
        (0..players).step_by(Self::CHUNK_PLAYERS).map(move |s| s..(s + Self::CHUNK_PLAYERS).min(players))
    }
}

/// What the fill did, and what the stores hold after it.
pub(super) struct FillReport {
    pub plan: FillPlan,
    pub accepted: u64,
    pub requests: u64,
    pub retries: u64,
    /// From the first request to the last answer.
    pub sent: Duration,
    /// From the first request until every projection had applied every event.
    pub applied: Duration,
    /// The graceful stop of the fill's roles (SIGTERM → exit), and whether all exited in time.
    pub stopped: Duration,
    pub stopped_cleanly: bool,
    /// Production: (table, bytes with indexes and TOAST; a partitioned table with its
    /// partitions), largest first; embedded: (entry of the data directory, bytes on disk).
    pub store_parts: Vec<(String, u64)>,
    /// The whole database (production) or data directory (embedded).
    pub store_total: u64,
    /// Per topic of the run's namespace (absent without `--kafka-log-dir`).
    pub kafka_topics: Option<Vec<TopicBytes>>,
}

impl FillReport {
    pub fn events_per_second(&self) -> f64 {
        self.accepted as f64 / self.applied.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TopicBytes {
    pub topic: String,
    /// The segments' record bytes (`*.log` files).
    pub log_bytes: u64,
    /// Every file of the topic's partition directories, as allocated on disk (indexes too).
    pub disk_bytes: u64,
}

impl Bench<'_> {
    /// Fills the run's stores (see the module's doc); the roles are the fill's own.
    pub async fn fill_phase(&self, plan: FillPlan) -> anyhow::Result<FillReport> {
        eprintln!("bench: fill, {} players and {} events through the write path", plan.players, plan.events);
        let mut roles = if self.production() {
            vec![
                self.spawner.spawn("gateway (fill)", &["gateway"])?,
                self.spawner.spawn("actors (fill)", &["actors"])?,
                self.spawner.spawn("projections (fill)", &["projections"])?,
            ]
        } else {
            vec![self.spawner.spawn("serve (fill)", &["serve"])?]
        };
        for role in &mut roles {
            role.wait_ready(&self.client).await?;
        }
        let gateway = roles[0].url();
        let projections = roles.last().map(RoleProcess::url).unwrap_or_default();
        let before = self.cpu(&roles);
        let now = Utc::now();
        let started = Instant::now();
        // The next chunk is generated (and its bodies serialised) on a blocking thread while
        // this one is sent.
        let generate = move |players: Range<usize>| {
            actix_rt::task::spawn_blocking(move || prepare(&plan.chunk(GAME, players, now), 100, 32))
        };
        let mut chunks = plan.chunks();
        let mut next = chunks.next().map(generate);
        let (mut accepted, mut requests, mut retries) = (0u64, 0u64, 0u64);
        while let Some(handle) = next.take() {
            let prepared = handle.await.context("generating the fill's events")?;
            next = chunks.next().map(generate);
            let sent = self.send(&gateway, prepared, 0.0, None).await;
            sent.check("fill")?;
            (accepted, requests, retries) =
                (accepted + sent.accepted, requests + sent.requests, retries + sent.retries);
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "bench: fill, {accepted} events accepted in {secs:.0} s ({:.0} events/s)",
                accepted as f64 / secs
            );
        }
        let sent = started.elapsed();
        let mut last_report = Instant::now();
        loop {
            let applied = self.applied(&projections).await.unwrap_or(0);
            if applied >= accepted {
                break;
            }
            if started.elapsed() > sent + Duration::from_secs(3600) {
                bail!(
                    "fill: the projections applied {applied} of {accepted} events within an hour of the last request"
                );
            }
            if last_report.elapsed() >= Duration::from_secs(30) {
                eprintln!("bench: fill, {applied} of {accepted} events applied");
                last_report = Instant::now();
            }
            actix_rt::time::sleep(Duration::from_millis(500)).await;
        }
        let applied = started.elapsed();
        self.cost(
            &roles,
            "fill (through the write path: gateway → Kafka → actors → projections)",
            "events",
            accepted,
            &before,
        );
        eprintln!("bench: fill done; stopping its roles");
        let stop_started = Instant::now();
        let mut stopped_cleanly = true;
        for role in &mut roles {
            stopped_cleanly &= role.terminate(Duration::from_secs(300)).await;
        }
        let stopped = stop_started.elapsed();
        let (store_parts, store_total) = match self.database {
            Some(db) => postgres_bytes(&db.url).await?,
            None => data_dir_bytes(&self.work_dir.join("data"))?,
        };
        let namespace = format!("bench-{}.", self.id);
        let kafka_topics = self.options.kafka_log_dir.as_deref().map(|dir| topic_bytes(dir, &namespace)).transpose()?;
        // Printed at once: the report comes only at the end of the run.
        eprintln!(
            "bench: fill, {accepted} events applied in {:.1} s (sent in {:.1} s); store {store_total} bytes: {store_parts:?}; Kafka: {kafka_topics:?}",
            applied.as_secs_f64(),
            sent.as_secs_f64()
        );
        Ok(FillReport {
            plan,
            accepted,
            requests,
            retries,
            sent,
            applied,
            stopped,
            stopped_cleanly,
            store_parts,
            store_total,
            kafka_topics,
        })
    }
}

/// Bytes of every table of the database (partitions summed into their root), largest first,
/// and of the whole database.
async fn postgres_bytes(url: &str) -> anyhow::Result<(Vec<(String, u64)>, u64)> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.context("connecting to the bench database")?;
    let tables: Vec<(String, i64)> = sqlx::query_as(
        "SELECT coalesce(pg_partition_root(c.oid), c.oid)::regclass::text, \
                sum(pg_total_relation_size(c.oid))::bigint \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg_toast%' \
         GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    .fetch_all(&mut conn)
    .await
    .context("reading the tables' sizes")?;
    let (database,): (i64,) = sqlx::query_as("SELECT pg_database_size(current_database())")
        .fetch_one(&mut conn)
        .await
        .context("reading the database's size")?;
    let _ = conn.close().await;
    Ok((tables.into_iter().map(|(t, b)| (t, b.max(0) as u64)).collect(), database.max(0) as u64))
}

/// Bytes on disk of each entry of the embedded default's data directory (a directory's
/// files summed), largest first, and of all of them.
fn data_dir_bytes(dir: &Path) -> anyhow::Result<(Vec<(String, u64)>, u64)> {
    fn disk(path: &Path) -> std::io::Result<u64> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::symlink_metadata(path)?;
        if !meta.is_dir() {
            return Ok(meta.blocks() * 512);
        }
        std::fs::read_dir(path)?.try_fold(0, |sum, entry| Ok(sum + disk(&entry?.path())?))
    }
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        parts.push((entry.file_name().to_string_lossy().into_owned(), disk(&entry.path())?));
    }
    parts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let total = parts.iter().map(|p| p.1).sum();
    Ok((parts, total))
}

/// Bytes per topic whose name starts with `prefix`, from a broker's log directory (one
/// directory per partition, `TOPIC-N`).
pub(super) fn topic_bytes(log_dir: &Path, prefix: &str) -> anyhow::Result<Vec<TopicBytes>> {
    use std::os::unix::fs::MetadataExt as _;
    let mut topics: BTreeMap<String, TopicBytes> = BTreeMap::new();
    let entries = std::fs::read_dir(log_dir).with_context(|| format!("reading {}", log_dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(topic) = name.strip_prefix(prefix).and_then(|_| name.rsplit_once('-')).map(|(t, _)| t) else {
            continue;
        };
        let sum = topics.entry(topic.to_string()).or_insert_with(|| TopicBytes {
            topic: topic.to_string(),
            log_bytes: 0,
            disk_bytes: 0,
        });
        for file in std::fs::read_dir(entry.path())? {
            let file = file?;
            let meta = file.metadata()?;
            if file.file_name().to_string_lossy().ends_with(".log") {
                sum.log_bytes += meta.len();
            }
            sum.disk_bytes += meta.blocks() * 512;
        }
    }
    Ok(topics.into_values().collect())
}

impl RoleProcess {
    /// SIGTERM, then up to `timeout` for the process to exit; false if it had to be killed.
    pub async fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn at() -> DateTime<Utc> {
        "2026-12-07T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn yields_the_asked_players_and_events_deterministically() {
        let plan = FillPlan::new(2_503, 25_037).unwrap().unwrap();
        let chunks: Vec<Range<usize>> = plan.chunks().collect();
        assert_eq!(chunks, vec![0..2_503]);
        let events = plan.chunk("g", 0..plan.players, at());
        assert_eq!(events.len(), 25_037);
        let players: HashSet<&str> = events.iter().map(|e| e.player_id.as_str()).collect();
        assert_eq!(players.len(), 2_503);
        let ids: HashSet<_> = events.iter().map(|e| e.event_id).collect();
        assert_eq!(ids.len(), events.len(), "event ids repeat");
        // The remainder goes to the first players; a player's events are in time order,
        // start with a session and stay in the window.
        let first = plan.player_events("g", 0, at());
        assert_eq!((first.len(), plan.player_events("g", 2_502, at()).len()), (11, 10));
        assert_eq!(first[0].kind(), "session_start");
        assert!(first.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert!(events.iter().all(|e| e.timestamp >= at() - ChronoDuration::days(7)));
        assert_eq!(plan.chunk("g", 0..plan.players, at()), events, "not deterministic");
        let other = FillPlan { seed: 1, ..plan };
        assert_ne!(other.player_events("g", 0, at()), first);
    }

    #[test]
    fn chunks_cover_every_player_once() {
        let plan = FillPlan::new(25_001, 250_010).unwrap().unwrap();
        let chunks: Vec<Range<usize>> = plan.chunks().collect();
        assert_eq!(chunks, vec![0..10_000, 10_000..20_000, 20_000..25_001]);
        assert_eq!((0..plan.players).map(|i| plan.quota(i)).sum::<usize>(), 250_010);
    }

    #[test]
    fn lives_shorter_than_the_quota_are_extended() {
        let plan = FillPlan::new(10, 1_000).unwrap().unwrap();
        for i in 0..10 {
            let events = plan.player_events("g", i, at());
            assert_eq!(events.len(), 100);
            assert!(events.iter().all(|e| e.player_id == FillPlan::player_id(i)));
        }
    }

    #[test]
    fn refuses_a_plan_with_players_without_events() {
        assert_eq!(FillPlan::new(0, 0).unwrap(), None);
        assert!(FillPlan::new(10, 9).is_err());
        assert!(FillPlan::new(0, 9).is_err());
    }

    #[test]
    fn sums_a_topics_partitions_from_the_log_dir() {
        let dir = std::env::temp_dir().join(format!("gm-fill-test-{}", uuid::Uuid::new_v4().simple()));
        for (partition, bytes) in [("bench-x.player.events.raw-0", 1000), ("bench-x.player.events.raw-1", 500)] {
            std::fs::create_dir_all(dir.join(partition)).unwrap();
            std::fs::write(dir.join(partition).join("00000000000000000000.log"), vec![1u8; bytes]).unwrap();
            std::fs::write(dir.join(partition).join("00000000000000000000.index"), vec![0u8; 8]).unwrap();
        }
        std::fs::create_dir_all(dir.join("bench-y.player.events.raw-0")).unwrap();
        std::fs::write(dir.join("bench-y.player.events.raw-0").join("0.log"), vec![1u8; 7]).unwrap();
        let topics = topic_bytes(&dir, "bench-x.").unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(topics.len(), 1);
        assert_eq!((topics[0].topic.as_str(), topics[0].log_bytes), ("bench-x.player.events.raw", 1500));
        assert!(topics[0].disk_bytes >= 1500);
    }
}
