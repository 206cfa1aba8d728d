//! The actors role: one consumer-group member on `player.events.raw`, a shard actor per
//! assigned partition, and the loop that feeds them and writes what they return.
//!
//! For each poll: load the snapshots of players not in memory (one batched query per
//! shard), let every shard apply its records, then append all outputs to
//! `player.events.processed` **and** commit the consumed offsets in one log transaction.
//! Snapshots are written after that commit, so a snapshot never runs ahead of what was
//! emitted. Any failure after a shard applied records in memory resets that partition
//! (drop the shard, recover it from snapshot + replay): memory never runs ahead of the log.
//!
//! A snapshot save moves the partition's watermark only from the value this runtime last
//! read or wrote. When the store went back in time (restored from a backup, a failover that
//! lost its last commits) or another member saved the partition (this one was paused past a
//! rebalance), the save is refused and the partition recovered from what the store really
//! holds; otherwise players whose lost snapshots are not rewritten would later be loaded
//! stale under a newer watermark and derive their events a second time.

use crate::shard::*;
use actix::prelude::*;
use gm_ports::{EventLog, LogConsumer, LogError, Polled, Position, Record, SnapshotStore, StoreError};
use gm_schemas::topics;
use gm_telemetry::health::ConsumerHealth;
use gm_telemetry::Metrics;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub const GROUP: &str = "actors";

#[derive(Debug, Clone)]
pub struct ActorsConfig {
    /// Snapshot a shard after this many applied events…
    pub snapshot_every_events: u64,
    /// …or this long after its last snapshot.
    pub snapshot_every: Duration,
    /// Players idle this long (and snapshotted) leave memory.
    pub passivate_after: Duration,
    pub max_batch: usize,
    /// Arbiters (threads) the shards are spread over.
    pub threads: usize,
    /// Snapshot reads (each one batched query for a shard's missing players) in flight at
    /// once, so that a rebalance handing this process many partitions of players nobody
    /// holds in memory does not stampede the database.
    pub max_concurrent_loads: usize,
    /// Times a record whose processing fails is tried (the partition rebuilt from its
    /// snapshot between tries) before it is dead-lettered to `system.dlq`.
    pub max_attempts: u32,
    /// A partition that has records to process but made no progress this long (its
    /// consumer stopped delivering, or every batch fails) is stalled: the runtime leaves the
    /// group and joins again with a fresh consumer (and transactional producer).
    pub stall_after: Duration,
    /// The rules players decide by: how long and how many event ids are remembered, when
    /// the session timer closes a session.
    pub policy: crate::player::Policy,
    /// How often a tick of the session timer is appended to each owned partition that has
    /// open sessions (see [`crate::shard::Tick`]).
    pub session_tick_every: Duration,
}

/// `[actors]` of the configuration as the file writes it (config/default.toml holds every
/// default; the reasons are there).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ActorsSettings {
    pub snapshot_every_events: u64,
    pub snapshot_every_ms: u64,
    pub passivate_after_ms: u64,
    /// Records taken from the log per poll.
    pub max_batch: usize,
    pub threads: usize,
    /// Batched snapshot reads in flight at once (recovery after a rebalance is throttled by it).
    pub max_concurrent_loads: usize,
    /// Times a record whose processing fails is tried before it goes to `system.dlq`.
    pub max_attempts: u32,
    /// A partition with records to process that made no progress this long is stalled.
    pub stall_after_ms: u64,
    /// An event id received for a player within this many hours counts once.
    pub dedup_window_hours: u64,
    /// At most this many event ids are remembered per player (16 bytes each).
    pub dedup_max_ids: usize,
    /// The session timer closes a session none of whose events was received this long.
    pub session_timeout_ms: u64,
    /// … or this long after the last event of a session whose end arrived first.
    pub session_end_grace_ms: u64,
    /// How often the actors append a timer tick to each partition with open sessions.
    pub session_tick_ms: u64,
}

impl ActorsSettings {
    pub fn config(&self) -> ActorsConfig {
        ActorsConfig {
            snapshot_every_events: self.snapshot_every_events,
            snapshot_every: Duration::from_millis(self.snapshot_every_ms),
            passivate_after: Duration::from_millis(self.passivate_after_ms),
            max_batch: self.max_batch,
            threads: self.threads,
            max_concurrent_loads: self.max_concurrent_loads,
            max_attempts: self.max_attempts,
            stall_after: Duration::from_millis(self.stall_after_ms),
            policy: crate::player::Policy {
                dedup: crate::dedup::DedupPolicy {
                    window: chrono::Duration::hours(self.dedup_window_hours as i64),
                    max_ids: self.dedup_max_ids,
                },
                session: crate::session::SessionPolicy {
                    timeout: chrono::Duration::milliseconds(self.session_timeout_ms as i64),
                    end_grace: chrono::Duration::milliseconds(self.session_end_grace_ms as i64),
                },
            },
            session_tick_every: Duration::from_millis(self.session_tick_ms),
        }
    }
}

impl Default for ActorsConfig {
    /// `[actors]` of config/default.toml.
    fn default() -> Self {
        gm_schemas::defaults::section::<ActorsSettings>("actors").config()
    }
}

/// Where a partition's processing stands, for the stall watchdog.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The next offset to process.
    next: u64,
    /// When the partition last moved forward (or was found to have nothing to process).
    since: Instant,
}

/// Why the consume loop ended.
enum LoopEnd {
    Shutdown,
    /// A partition stalled (or the consumer failed fatally): join the group again.
    Rejoin(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ActorsError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("shard mailbox closed: {0}")]
    Mailbox(#[from] MailboxError),
}

pub struct ActorsRuntime {
    log: Arc<dyn EventLog>,
    snapshots: Arc<dyn SnapshotStore>,
    config: ActorsConfig,
    metrics: Metrics,
    arbiters: Vec<Arbiter>,
    shards: BTreeMap<u32, Addr<Shard>>,
    /// Each shard's watermark as last read from or saved to the snapshot store: the next
    /// save moves it only from there, so a store that went back in time (a restore, a
    /// failover) is noticed instead of silently keeping snapshots older than its watermark.
    watermarks: HashMap<u32, Option<u64>>,
    live: HashMap<u32, usize>,
    loads: Arc<tokio::sync::Semaphore>,
    /// Records whose processing failed, per partition and offset, with their attempts so far.
    failures: BTreeMap<(u32, u64), Failure>,
    progress: HashMap<u32, Progress>,
    /// The key of the tick records of each partition, and when one was last appended.
    tick_keys: HashMap<u32, String>,
    last_tick: HashMap<u32, Instant>,
    /// What `/health/ready` judges the consumer by (see [`ConsumerHealth`]).
    health: ConsumerHealth,
}

impl ActorsRuntime {
    pub fn new(
        log: Arc<dyn EventLog>,
        snapshots: Arc<dyn SnapshotStore>,
        config: ActorsConfig,
        metrics: Metrics,
    ) -> Self {
        let arbiters = (0..config.threads.max(1)).map(|_| Arbiter::new()).collect();
        let loads = Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_loads.max(1)));
        Self {
            log,
            snapshots,
            config,
            metrics,
            arbiters,
            shards: BTreeMap::new(),
            watermarks: HashMap::new(),
            live: HashMap::new(),
            loads,
            failures: BTreeMap::new(),
            progress: HashMap::new(),
            tick_keys: HashMap::new(),
            last_tick: HashMap::new(),
            health: ConsumerHealth::new(),
        }
    }

    /// Reports the consumer's assignment, polls and progress to `health` (readiness).
    pub fn with_health(mut self, health: ConsumerHealth) -> Self {
        self.health = health;
        self
    }

    /// Runs until `shutdown` turns true; then snapshots every shard so the next start replays little.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), ActorsError> {
        while !*shutdown.borrow() {
            let Some(mut consumer) = self.join(&mut shutdown).await else { break };
            match self.consume(consumer.as_mut(), &mut shutdown).await {
                LoopEnd::Shutdown => break,
                LoopEnd::Rejoin(reason) => {
                    // Memory may be ahead of the snapshots: drop the shards, they are rebuilt
                    // from snapshot + replay when the partitions are assigned again.
                    tracing::error!(reason = %reason, "actors stalled; leaving the group and joining again");
                    self.metrics.actors.stalls.inc();
                    for p in self.shards.keys().copied().collect::<Vec<_>>() {
                        self.stop_shard(p);
                    }
                    drop(consumer);
                }
            }
        }
        self.snapshot_all(true).await?;
        for shard in std::mem::take(&mut self.shards).into_values() {
            drop(shard);
        }
        Ok(())
    }

    /// A consumer in the actors' group; `None` on shutdown. The log may be unreachable (Kafka
    /// restarting): keep trying rather than leave a process that reports ready with no
    /// actors running.
    async fn join(&mut self, shutdown: &mut watch::Receiver<bool>) -> Option<Box<dyn LogConsumer>> {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.log.consumer(GROUP, topics::RAW).await {
                Ok(consumer) => {
                    self.health.joined(Instant::now());
                    return Some(consumer);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot join the actors' consumer group yet; retrying");
                    tokio::select! {
                        _ = shutdown.changed() => return None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn consume(&mut self, consumer: &mut dyn LogConsumer, shutdown: &mut watch::Receiver<bool>) -> LoopEnd {
        let mut last_housekeeping = Instant::now();
        let mut last_stall_check = Instant::now();
        while !*shutdown.borrow() {
            let polled = tokio::select! {
                _ = shutdown.changed() => break,
                polled = consumer.poll(self.config.max_batch, Duration::from_millis(200)) => polled,
            };
            if polled.is_ok() {
                self.health.polled(Instant::now());
            }
            match polled {
                Ok(Polled::Assigned(partitions)) => {
                    self.health.assigned(&partitions, Instant::now());
                    for p in partitions {
                        // The snapshot store may be down (a failover): retry, never give up.
                        self.recover_with_retry(consumer, p, shutdown).await;
                    }
                }
                Ok(Polled::Revoked(partitions)) => {
                    self.health.revoked(&partitions, Instant::now());
                    for p in partitions {
                        self.stop_shard(p);
                    }
                }
                Ok(Polled::Records(records)) => {
                    // One span per consumed batch, continuing the first record's trace.
                    let span = tracing::info_span!(
                        "actors.process_batch",
                        records = records.len(),
                        trace_id = tracing::field::Empty,
                        span_id = tracing::field::Empty,
                    );
                    gm_telemetry::trace::continue_batch(&span, records.iter().map(|r| r.headers.as_slice()));
                    let processed = tracing::Instrument::instrument(self.process(consumer, records), span).await;
                    match processed {
                        Ok(failed) => {
                            // The records before each failure were committed; the partition
                            // is rebuilt and the failed record tried again, or dead-lettered.
                            for p in failed {
                                self.metrics.actors.batch_failures.inc();
                                self.recover_with_retry(consumer, p, shutdown).await;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "batch failed; recovering partitions");
                            self.metrics.actors.batch_failures.inc();
                            self.recover_all(consumer, shutdown).await;
                        }
                    }
                }
                Ok(Polled::Idle) => {}
                // A consumer that failed fatally never recovers: replace it.
                Err(LogError::Other(e)) if e.to_string().starts_with("fatal consumer error") => {
                    return LoopEnd::Rejoin(e.to_string())
                }
                Err(e) => {
                    tracing::warn!(error = %e, "poll failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            if last_housekeeping.elapsed() >= Duration::from_secs(1) {
                last_housekeeping = Instant::now();
                if let Err(e) = self.snapshot_all(false).await {
                    // Players were marked clean for a snapshot that was not saved: rebuild
                    // the shards so that the next snapshot holds every changed player again.
                    tracing::warn!(error = %e, "periodic snapshot failed; recovering partitions");
                    self.recover_all(consumer, shutdown).await;
                }
                self.passivate().await;
                self.append_ticks().await;
            }
            if last_stall_check.elapsed() >= Duration::from_secs(5) {
                last_stall_check = Instant::now();
                if let Some(reason) = self.stalled().await {
                    return LoopEnd::Rejoin(reason);
                }
            }
        }
        LoopEnd::Shutdown
    }

    /// A partition that made no progress for `stall_after` while the log holds a record at
    /// its next offset. (An idle partition is not stalled: it has nothing to process.)
    async fn stalled(&mut self) -> Option<String> {
        let now = Instant::now();
        let suspects: Vec<(u32, Progress)> = self
            .progress
            .iter()
            .filter(|(_, progress)| now.duration_since(progress.since) >= self.config.stall_after)
            .map(|(&p, &progress)| (p, progress))
            .collect();
        for (partition, progress) in suspects {
            match self.log.read(topics::RAW, partition, progress.next, 1).await {
                Ok(records) if records.is_empty() => {
                    if let Some(known) = self.progress.get_mut(&partition) {
                        known.since = now;
                    }
                }
                Ok(_) => {
                    return Some(format!(
                        "partition {partition} has records from offset {} and made no progress for {} s",
                        progress.next,
                        now.duration_since(progress.since).as_secs()
                    ))
                }
                // The log cannot tell now (Kafka restarting): ask again later.
                Err(_) => {}
            }
        }
        None
    }

    async fn recover_all(&mut self, consumer: &mut dyn LogConsumer, shutdown: &watch::Receiver<bool>) {
        let partitions: Vec<u32> = self.shards.keys().copied().collect();
        for p in partitions {
            self.recover_with_retry(consumer, p, shutdown).await;
        }
    }

    async fn recover_with_retry(
        &mut self,
        consumer: &mut dyn LogConsumer,
        partition: u32,
        shutdown: &watch::Receiver<bool>,
    ) {
        let mut delay = Duration::from_millis(100);
        while !*shutdown.borrow() {
            match self.recover(consumer, partition).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(partition, error = %e, "recovery failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// (Re)builds a partition's shard: replay from the snapshot watermark, emitting only
    /// from the committed offset on.
    async fn recover(&mut self, consumer: &mut dyn LogConsumer, partition: u32) -> Result<(), ActorsError> {
        // A partition rebuilt again and again (every batch fails) is not progressing: keep
        // its clock; a newly assigned one starts it.
        let since = self.progress.get(&partition).map_or_else(Instant::now, |p| p.since);
        self.stop_shard(partition);
        let committed = consumer.committed(partition).await?.unwrap_or(0);
        let watermark = self.snapshots.watermark(partition).await?;
        let start = watermark.unwrap_or(0).min(committed);
        // Failures below the committed offset were dead-lettered and committed: forgotten.
        self.failures.retain(|&(p, offset), _| p != partition || offset >= committed);
        let give_up: Vec<Failure> = self
            .failures
            .range((partition, 0)..=(partition, u64::MAX))
            .map(|(_, f)| f.clone())
            .filter(|f| f.attempts >= self.config.max_attempts.max(1))
            .collect();
        // The open-session index saved with the snapshots at the watermark (none without one:
        // the replay from offset 0 rebuilds it).
        let index = match watermark {
            Some(_) => self.snapshots.load_many(&[index_key(partition)]).await?.into_iter().next().map(|(_, b)| b),
            None => None,
        };
        let arbiter = &self.arbiters[partition as usize % self.arbiters.len()];
        let policy = self.config.policy;
        let shard = Shard::start_in_arbiter(&arbiter.handle(), move |_| {
            Shard::new(partition, start, committed)
                .giving_up_on(give_up)
                .with_policy(policy)
                .with_open_sessions(index.as_deref())
        });
        consumer.seek(partition, start);
        self.shards.insert(partition, shard);
        self.watermarks.insert(partition, watermark);
        self.progress.insert(partition, Progress { next: start, since });
        self.health.at(partition, start, Instant::now());
        // The first tick one interval after the partition was assigned.
        self.last_tick.entry(partition).or_insert_with(Instant::now);
        self.metrics.actors.partition_recoveries.inc();
        self.metrics.actors.shards.set(self.shards.len() as i64);
        tracing::info!(partition, start, committed, "partition assigned; replaying from snapshot watermark");
        Ok(())
    }

    fn stop_shard(&mut self, partition: u32) {
        self.shards.remove(&partition);
        self.watermarks.remove(&partition);
        self.progress.remove(&partition);
        self.live.remove(&partition);
        self.metrics.actors.shards.set(self.shards.len() as i64);
        self.metrics.actors_live.set(self.live.values().sum::<usize>() as i64);
    }

    /// Processes one polled batch; returns the partitions where a record failed (the runtime
    /// rebuilds them; the records before the failure are committed).
    async fn process(&mut self, consumer: &mut dyn LogConsumer, records: Vec<Record>) -> Result<Vec<u32>, ActorsError> {
        let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        for r in records {
            by_partition.entry(r.partition).or_default().push(r);
        }
        let reached: Vec<(u32, u64)> =
            by_partition.iter().filter_map(|(&p, recs)| Some((p, recs.last()?.offset + 1))).collect();
        let work = by_partition.into_iter().filter_map(|(p, recs)| {
            let shard = self.shards.get(&p)?.clone();
            let snapshots = self.snapshots.clone();
            let metrics = self.metrics.clone();
            let loads = self.loads.clone();
            Some(async move {
                let mut keys = Vec::with_capacity(recs.len());
                let mut tick = None;
                for r in &recs {
                    match tick_at(r) {
                        Some(Ok(at)) => tick = tick.max(Some(at)),
                        Some(Err(_)) => {}
                        None => keys.push(r.key.clone()),
                    }
                }
                let missing = shard.send(MissingKeys(keys, tick)).await?;
                let mut live = None;
                if !missing.is_empty() {
                    // Never closed, so acquiring cannot fail; held for the read only.
                    let permit = loads.acquire().await.ok();
                    let started = Instant::now();
                    let loaded = snapshots.load_many(&missing).await?;
                    drop(permit);
                    metrics.actors.snapshot_load_duration.observe(started.elapsed().as_secs_f64());
                    metrics.actors.recovered.inc_by(loaded.len() as u64);
                    live = Some(shard.send(Hydrate { requested: missing, loaded }).await?);
                }
                let processed = shard.send(Process(recs)).await?;
                Ok::<_, ActorsError>((p, processed, live))
            })
        });
        // Shards live on their own arbiters: sending to all before awaiting runs them in parallel.
        let results = futures::future::join_all(work).await;
        let mut outputs = Vec::new();
        let mut dead_letters = Vec::new();
        let mut offsets = Vec::new();
        let mut failed = Vec::new();
        for result in results {
            let (partition, processed, live) = result?;
            if let Some(failure) = processed.failed {
                let known = self.failures.entry((partition, failure.offset)).or_insert(failure);
                known.attempts += 1;
                tracing::error!(
                    partition,
                    offset = known.offset,
                    attempts = known.attempts,
                    max_attempts = self.config.max_attempts,
                    reason = %known.reason,
                    "record processing failed; rebuilding the partition"
                );
                failed.push(partition);
            }
            if let Some(live) = live {
                // Every key of the batch is in memory after Hydrate, so this count is the
                // shard's size until the next passivation.
                self.live.insert(partition, live);
            }
            self.metrics.actor_events_processed.inc_by(processed.applied);
            self.metrics.actors.dead_letters.inc_by(processed.dead_letters.len() as u64);
            self.metrics.actor_duplicates_dropped.inc_by(processed.duplicates);
            outputs.extend(processed.outputs);
            dead_letters.extend(processed.dead_letters);
            if let Some(offset) = processed.commit_next {
                offsets.push(Position { partition, offset });
            }
        }
        self.metrics.actors_live.set(self.live.values().sum::<usize>() as i64);
        // The processed records continue this batch's trace into the projections.
        let trace_headers = gm_telemetry::trace::inject(&tracing::Span::current());
        if !trace_headers.is_empty() {
            for output in &mut outputs {
                output.headers.extend(trace_headers.iter().cloned());
            }
        }
        if !offsets.is_empty() {
            // Dead letters go in the same transaction as the outputs and the consumed
            // offsets: a poison record is never lost and never stalls its partition.
            let mut per_topic = vec![(topics::PROCESSED.to_string(), outputs)];
            if !dead_letters.is_empty() {
                tracing::warn!(count = dead_letters.len(), "records dead-lettered to {}", topics::DLQ);
                per_topic.push((topics::DLQ.to_string(), dead_letters));
            }
            consumer.commit_with_outputs_to(per_topic, &offsets).await?;
        }
        self.snapshot_all(false).await?;
        let now = Instant::now();
        for (partition, next) in reached {
            if failed.contains(&partition) {
                continue;
            }
            if let Some(progress) = self.progress.get_mut(&partition) {
                *progress = Progress { next: next.max(progress.next), since: now };
            }
            self.health.at(partition, next, now);
        }
        Ok(failed)
    }

    async fn snapshot_all(&mut self, force: bool) -> Result<(), ActorsError> {
        for (&partition, shard) in &self.shards {
            let msg = TakeSnapshot {
                every_events: self.config.snapshot_every_events,
                every: self.config.snapshot_every,
                force,
            };
            if let Some(batch) = shard.send(msg).await? {
                let written = batch.players.len() as u64;
                let started = Instant::now();
                let expected = self.watermarks.get(&partition).copied().flatten();
                self.snapshots.save(partition, expected, batch.next_offset, batch.players).await?;
                self.watermarks.insert(partition, Some(batch.next_offset));
                self.metrics.actors.snapshot_duration.observe(started.elapsed().as_secs_f64());
                self.metrics.snapshots_written.inc_by(written);
            }
        }
        Ok(())
    }

    /// Appends a tick of the session timer (this process's clock) to each owned partition
    /// that has open sessions and had no tick for `session_tick_every`. The tick is in the log,
    /// so processing it — now, in a replay, after a restart — closes the same sessions. A
    /// failed append is tried again next second.
    async fn append_ticks(&mut self) {
        let mut due = Vec::new();
        for (&partition, shard) in &self.shards {
            if self.last_tick.get(&partition).is_some_and(|t| t.elapsed() < self.config.session_tick_every) {
                continue;
            }
            if shard.send(OpenSessions).await.unwrap_or(0) > 0 {
                due.push(partition);
            }
        }
        if due.is_empty() {
            return;
        }
        if due.iter().any(|p| !self.tick_keys.contains_key(p)) {
            let partitions = match self.log.end_offsets(topics::RAW).await {
                Ok(ends) => ends.len() as u32,
                Err(e) => {
                    tracing::warn!(error = %e, "session ticks: partition count unknown; retrying");
                    return;
                }
            };
            for &p in &due {
                self.tick_keys.entry(p).or_insert_with(|| tick_key(p, partitions));
            }
        }
        let now = chrono::Utc::now();
        let records: Vec<_> = due.iter().map(|p| tick_record(&self.tick_keys[p], *p, now)).collect();
        match self.log.producer().append(topics::RAW, records).await {
            Ok(_) => {
                let at = Instant::now();
                for p in due {
                    self.last_tick.insert(p, at);
                }
            }
            Err(e) => tracing::warn!(error = %e, "session ticks not appended; retrying"),
        }
    }

    async fn passivate(&mut self) {
        for (&partition, shard) in &self.shards {
            if let Ok(live) = shard.send(Passivate(self.config.passivate_after)).await {
                let before = self.live.insert(partition, live).unwrap_or(live);
                self.metrics.actors.passivated.inc_by(before.saturating_sub(live) as u64);
            }
        }
        self.metrics.actors_live.set(self.live.values().sum::<usize>() as i64);
    }
}
