//! Projection workers: the live worker of a process (one consumer-group member for all its
//! projections: each record decoded once, every projection's changes of a batch applied
//! with their checkpoints in one transaction), and the rebuild that replays one projection
//! from offset 0.

use crate::model::{ProjectionName, Target};
use crate::ports::{CheckpointMove, ProjectionBatch, ReadModelStore};
use crate::project::changes;
use gm_ports::{EventLog, LogConsumer, LogError, NewRecord, Polled, Record, StoreError};
use gm_privacy::{is_pseudonym, PrivacyStore};
use gm_schemas::{topics, PlayerId, ProcessedBody, ProcessedEvent};
use gm_telemetry::health::ConsumerHealth;
use gm_telemetry::Metrics;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Partition `partition` has records to apply but its consumer delivered none of them
    /// for this long: the consumer is stuck (a seek that never applies, a fetcher that did
    /// not resume after a broker restart). The caller starts the worker again with a fresh
    /// consumer.
    #[error("partition {partition}: behind by {lag} events and no record delivered for {seconds} s")]
    Stalled { partition: u32, lag: u64, seconds: u64 },
}

/// How long a partition may be behind without its consumer delivering a record before the
/// worker gives up on that consumer ([`WorkerError::Stalled`]).
pub const STALL_AFTER: Duration = Duration::from_secs(30);

pub struct ProjectionWorker {
    /// The projections this worker applies, in [`ProjectionName::ALL`] order.
    names: Vec<ProjectionName>,
    /// Its consumer group: `projection.<name>` for one projection, `projections` for the
    /// combined worker of a process.
    group: String,
    /// Turns the pseudonyms the log carries back into player ids for the read models.
    players: Option<Reveal>,
    target: Target,
    log: Arc<dyn EventLog>,
    store: Arc<dyn ReadModelStore>,
    metrics: Metrics,
    /// A batch is applied once it holds this many records ...
    max_batch: usize,
    /// ... or this long after its first record arrived, whichever comes first.
    max_wait: Duration,
    /// For each assigned partition whose checkpoints were read: every projection's
    /// checkpoint (next offset to apply), exactly as stored.
    positions: HashMap<u32, BTreeMap<ProjectionName, Option<u64>>>,
    /// Partitions assigned whose checkpoints could not be read yet (their records are
    /// skipped until they are, then read again from the smallest).
    unready: BTreeSet<u32>,
    /// When each assigned partition last delivered a record or was caught up.
    last_delivery: HashMap<u32, Instant>,
    stall_after: Duration,
    /// Recommendations: the outbox to publish to `recommendations.generated` after each batch.
    publisher: Option<Arc<dyn crate::recommend::RecommendationStore>>,
    /// The outbox may hold lists not yet published (at start: left by a crash).
    unpublished: bool,
    /// Records of this run already sent to the dead-letter topic (partition, offset): a
    /// batch that fails after its dead letters were appended is read again, and must not
    /// dead-letter them twice.
    dead_lettered: BTreeSet<(u32, u64)>,
    /// What `/health/ready` judges the consumer by (see [`ConsumerHealth`]).
    health: ConsumerHealth,
}

/// The consumer group of the combined worker ([`ProjectionWorker::combined`]).
pub const COMBINED_GROUP: &str = "projections";

/// Default bounds of a batch: records, and time from its first record.
pub const MAX_BATCH: usize = 5_000;
pub const MAX_WAIT: Duration = Duration::from_millis(100);

/// Header names of a dead letter on `system.dlq` (those of [`gm_ports::dlq::headers`]),
/// plus the projections that could not read it.
pub mod dlq_headers {
    pub use gm_ports::dlq::headers::*;
    /// Comma-separated names of the projections that read the record's kind.
    pub const PROJECTIONS: &str = "gm.projections";
}

/// The dead letter of a processed record no projection could decode: its key, payload and
/// kind header unchanged, the reason, origin and projections in headers, so that
/// `gamemetrics dlq replay` can re-append it to `player.events.processed` as it was.
pub fn dead_letter(record: &Record, reason: &str, projections: &[ProjectionName]) -> NewRecord {
    let names: Vec<&str> = projections.iter().map(|p| p.as_str()).collect();
    let mut dead = gm_ports::dlq::dead_letter(record, reason, 1).with_header(dlq_headers::PROJECTIONS, names.join(","));
    if let Some(kind) = record.header(gm_schemas::processed::KIND_HEADER) {
        dead = dead.with_header(gm_schemas::processed::KIND_HEADER, kind);
    }
    dead
}

/// The records of one batch that some projection reads, decoded once.
struct Decoded {
    events: Vec<ProcessedEvent>,
    /// (partition, offset) of each of `events`.
    at: Vec<(u32, u64)>,
}

impl ProjectionWorker {
    /// A worker for one projection, in its own consumer group `projection.<name>`.
    pub fn new(name: ProjectionName, log: Arc<dyn EventLog>, store: Arc<dyn ReadModelStore>, metrics: Metrics) -> Self {
        Self::with_group(vec![name], name.group(), log, store, metrics)
    }

    /// One worker for `names` (a process's live projections), in the consumer group
    /// [`COMBINED_GROUP`]: each record is decoded once and handed to every projection that
    /// reads it, and a batch's change sets of every projection are applied, with each
    /// projection's checkpoints, in one transaction ([`ReadModelStore::apply_batch`]).
    pub fn combined(
        names: &[ProjectionName],
        log: Arc<dyn EventLog>,
        store: Arc<dyn ReadModelStore>,
        metrics: Metrics,
    ) -> Self {
        Self::with_group(names.to_vec(), COMBINED_GROUP.to_string(), log, store, metrics)
    }

    fn with_group(
        mut names: Vec<ProjectionName>,
        group: String,
        log: Arc<dyn EventLog>,
        store: Arc<dyn ReadModelStore>,
        metrics: Metrics,
    ) -> Self {
        names.sort();
        names.dedup();
        Self {
            names,
            group,
            players: None,
            target: Target::Live,
            log,
            store,
            metrics,
            max_batch: MAX_BATCH,
            max_wait: MAX_WAIT,
            positions: HashMap::new(),
            unready: BTreeSet::new(),
            last_delivery: HashMap::new(),
            stall_after: STALL_AFTER,
            publisher: None,
            unpublished: true,
            dead_lettered: BTreeSet::new(),
            health: ConsumerHealth::new(),
        }
    }

    /// Reports the consumer's assignment, polls and progress to `health` (readiness).
    pub fn with_health(mut self, health: ConsumerHealth) -> Self {
        self.health = health;
        self
    }

    /// Publishes the lists the recommendations projection queued in its outbox (in the
    /// batch's transaction) after each batch; see [`crate::recommend::publish_pending`].
    /// Only used when the worker applies the recommendations projection.
    pub fn with_recommendations(mut self, store: Arc<dyn crate::recommend::RecommendationStore>) -> Self {
        if self.names.contains(&ProjectionName::Recommendations) {
            self.publisher = Some(store);
        }
        self
    }

    /// Bounds of a batch: at most `max_records` records, applied at most `max_wait` after
    /// its first record arrived (defaults [`MAX_BATCH`], [`MAX_WAIT`]).
    pub fn with_batch_limits(mut self, max_records: usize, max_wait: Duration) -> Self {
        self.max_batch = max_records.max(1);
        self.max_wait = max_wait;
        self
    }

    async fn publish(&mut self) {
        let Some(store) = self.publisher.clone() else { return };
        if !self.unpublished {
            return;
        }
        let producer = self.log.producer();
        match crate::recommend::publish_pending(store.as_ref(), producer.as_ref(), chrono::Utc::now()).await {
            Ok(_) => self.unpublished = false,
            // The outbox keeps them: retried after the next poll.
            Err(e) => {
                tracing::warn!(group = %self.group, error = %e, "publishing recommendations failed; will retry")
            }
        }
    }

    /// Gives up on the consumer after this long without a delivery (default [`STALL_AFTER`]).
    pub fn with_stall_after(mut self, stall_after: Duration) -> Self {
        self.stall_after = stall_after;
        self
    }

    /// Read models keyed by player ids rather than the log's pseudonyms (see [`Reveal`]).
    pub fn with_pseudonyms(mut self, privacy: Arc<dyn PrivacyStore>) -> Self {
        self.players = Some(Reveal::waiting(privacy, WAIT_FOR_MAPPING));
        self
    }

    /// Runs the live worker until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), WorkerError> {
        let mut consumer = self.log.consumer(&self.group, topics::PROCESSED).await?;
        self.health.joined(Instant::now());
        let mut last_lag = Instant::now() - Duration::from_secs(10);
        // A rebalance event that arrived while a batch was filling: handled after the batch.
        let mut pending: Option<Polled> = None;
        while !*shutdown.borrow() {
            let polled = match pending.take() {
                Some(p) => Ok(p),
                None => tokio::select! {
                    _ = shutdown.changed() => break,
                    polled = consumer.poll(self.max_batch, Duration::from_millis(200)) => polled,
                },
            };
            if polled.is_ok() {
                self.health.polled(Instant::now());
            }
            let result = match polled {
                Ok(Polled::Assigned(partitions)) => {
                    self.health.assigned(&partitions, Instant::now());
                    self.assign(consumer.as_mut(), &partitions).await
                }
                Ok(Polled::Revoked(partitions)) => {
                    self.health.revoked(&partitions, Instant::now());
                    partitions.iter().for_each(|p| {
                        self.positions.remove(p);
                        self.unready.remove(p);
                        self.last_delivery.remove(p);
                    });
                    Ok(())
                }
                Ok(Polled::Records(mut records)) => {
                    // Fill the batch up to its count, for at most `max_wait` after the first
                    // record (so a light load is applied promptly, a heavy one in big batches).
                    let deadline = Instant::now() + self.max_wait;
                    while records.len() < self.max_batch {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        match consumer.poll(self.max_batch - records.len(), left).await {
                            Ok(Polled::Records(more)) => records.extend(more),
                            Ok(Polled::Idle) => break,
                            Ok(other) => {
                                pending = Some(other);
                                break;
                            }
                            Err(e) => {
                                pending = None;
                                tracing::warn!(group = %self.group, error = %e, "poll failed while filling a batch");
                                break;
                            }
                        }
                    }
                    let now = Instant::now();
                    for r in &records {
                        self.last_delivery.insert(r.partition, now);
                    }
                    self.apply(consumer.as_mut(), records).await
                }
                Ok(Polled::Idle) => Ok(()),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = result {
                tracing::warn!(group = %self.group, error = %e, "projection batch failed; re-reading checkpoints");
                for name in &self.names {
                    let labels = self.metrics.projection(name.as_str());
                    self.metrics.projections.batch_failures.get_or_create(&labels).inc();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                let partitions: Vec<u32> = self.positions.keys().chain(&self.unready).copied().collect();
                if let Err(e) = self.assign(consumer.as_mut(), &partitions).await {
                    tracing::warn!(group = %self.group, error = %e, "cannot re-read checkpoints yet");
                }
            }
            self.publish().await;
            if last_lag.elapsed() >= Duration::from_secs(1) {
                last_lag = Instant::now();
                if !self.unready.is_empty() {
                    let partitions: Vec<u32> = self.unready.iter().copied().collect();
                    if let Err(e) = self.assign(consumer.as_mut(), &partitions).await {
                        tracing::warn!(group = %self.group, error = %e, "cannot read checkpoints yet");
                    }
                }
                self.report_lag().await?;
            }
        }
        Ok(())
    }

    /// Reads every projection's checkpoint of each partition and seeks the partition to the
    /// smallest (each projection then skips the records below its own). A partition whose
    /// checkpoints cannot all be read stays `unready` (its records are skipped) and is tried
    /// again on the next failure round. Returns the projections whose checkpoint differed
    /// from the one held (moved by another writer).
    async fn assign(&mut self, consumer: &mut dyn LogConsumer, partitions: &[u32]) -> Result<(), WorkerError> {
        let mut failed = None;
        for &p in partitions {
            self.last_delivery.entry(p).or_insert_with(Instant::now);
            let mut read = BTreeMap::new();
            for &name in &self.names {
                match self.store.checkpoint(self.target, name, p).await {
                    Ok(checkpoint) => {
                        read.insert(name, checkpoint);
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if read.len() == self.names.len() {
                let from = read.values().map(|c| c.unwrap_or(0)).min().unwrap_or(0);
                consumer.seek(p, from);
                self.health.at(p, from, Instant::now());
                self.positions.insert(p, read);
                self.unready.remove(&p);
            } else {
                self.positions.remove(&p);
                self.unready.insert(p);
            }
        }
        failed.map_or(Ok(()), |e| Err(e.into()))
    }

    /// Decodes, once, each record past the checkpoint of some projection that reads its
    /// kind. A record none can decode is dead-lettered (returned with the projections that
    /// wanted it); it still counts as applied for every projection.
    fn decode(&self, records: &[Record]) -> (Decoded, Vec<(NewRecord, Vec<ProjectionName>)>) {
        let mut decoded = Decoded { events: Vec::with_capacity(records.len()), at: Vec::with_capacity(records.len()) };
        let mut dead = Vec::new();
        for r in records {
            let Some(positions) = self.positions.get(&r.partition) else { continue };
            let wanting: Vec<ProjectionName> = positions
                .iter()
                .filter(|(name, next)| r.offset >= next.unwrap_or(0) && wanted(**name, r))
                .map(|(name, _)| *name)
                .collect();
            if wanting.is_empty() {
                continue;
            }
            match serde_json::from_slice::<ProcessedEvent>(&r.payload) {
                Ok(e) => {
                    decoded.events.push(e);
                    decoded.at.push((r.partition, r.offset));
                }
                Err(e) => {
                    if self.dead_lettered.contains(&(r.partition, r.offset)) {
                        continue;
                    }
                    let names: Vec<&str> = wanting.iter().map(|p| p.as_str()).collect();
                    tracing::error!(
                        projections = %names.join(","),
                        partition = r.partition,
                        offset = r.offset,
                        error = %e,
                        "undecodable processed record dead-lettered"
                    );
                    let reason = format!("undecodable processed record: {e}");
                    dead.push((dead_letter(r, &reason, &wanting), wanting));
                }
            }
        }
        (decoded, dead)
    }

    async fn apply(&mut self, consumer: &mut dyn LogConsumer, mut records: Vec<Record>) -> Result<(), WorkerError> {
        // Per partition in offset order (a batch may hold a partition's records twice after a
        // seek: the first occurrence of each offset counts).
        records.sort_by_key(|r| (r.partition, r.offset));
        records.dedup_by_key(|r| (r.partition, r.offset));
        records.retain(|r| {
            self.positions.get(&r.partition).is_some_and(|p| p.values().any(|next| r.offset >= next.unwrap_or(0)))
        });
        if records.is_empty() {
            return Ok(());
        }
        let (mut decoded, dead) = self.decode(&records);
        if !dead.is_empty() {
            // The dead letters are on the log before the checkpoints move past them.
            let letters: Vec<NewRecord> = dead.iter().map(|(letter, _)| letter.clone()).collect();
            self.log.producer().append(topics::DLQ, letters).await?;
            for (letter, wanting) in &dead {
                let at = letter_position(letter);
                if let Some(at) = at {
                    self.dead_lettered.insert(at);
                }
                self.metrics.actors.dead_letters.inc();
                for name in wanting {
                    let labels = self.metrics.projection(name.as_str());
                    self.metrics.projections.dead_letters.get_or_create(&labels).inc();
                }
            }
        }
        if let Some(players) = &mut self.players {
            players.reveal(&mut decoded.events).await?;
        }
        let started = Instant::now();
        // The last offset of each partition in this batch.
        let mut last: BTreeMap<u32, u64> = BTreeMap::new();
        for r in &records {
            last.insert(r.partition, r.offset);
        }
        let mut batches = Vec::with_capacity(self.names.len());
        // Per projection: records applied (skipped kinds count: applied as no-ops), events read.
        let mut counts: Vec<(ProjectionName, u64, usize)> = Vec::with_capacity(self.names.len());
        for &name in &self.names {
            let from = |p: u32| self.positions.get(&p).and_then(|c| c.get(&name)).copied().flatten().unwrap_or(0);
            let checkpoints: Vec<CheckpointMove> = last
                .iter()
                .filter(|(&p, &last)| last >= from(p))
                .map(|(&p, &last)| CheckpointMove { partition: p, expected: self.positions[&p][&name], next: last + 1 })
                .collect();
            if checkpoints.is_empty() {
                continue;
            }
            let fresh = records.iter().filter(|r| r.offset >= from(r.partition)).count() as u64;
            // One span per projection and batch, continuing the trace of the batch's first record.
            let span = tracing::info_span!(
                "projection.apply",
                projection = %name,
                events = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            );
            gm_telemetry::trace::continue_batch(&span, records.iter().map(|r| r.headers.as_slice()));
            let (change_set, events) = span.in_scope(|| {
                // Usually every projection stands at the same offsets: the decoded events
                // as they are (kinds a projection does not read change nothing in it).
                // Otherwise (after a rebuild swap moved one) its own part of them.
                if decoded.at.iter().all(|&(p, offset)| offset >= from(p)) {
                    (changes(name, &decoded.events), decoded.events.len())
                } else {
                    let own: Vec<ProcessedEvent> = decoded
                        .events
                        .iter()
                        .zip(&decoded.at)
                        .filter(|(_, &(p, offset))| offset >= from(p))
                        .map(|(e, _)| e.clone())
                        .collect();
                    (changes(name, &own), own.len())
                }
            });
            span.record("events", events);
            counts.push((name, fresh, events));
            batches.push(ProjectionBatch { name, checkpoints, changes: change_set });
        }
        if batches.is_empty() {
            return Ok(());
        }
        let span = tracing::info_span!(
            "projections.commit",
            group = %self.group,
            projections = batches.len(),
            records = records.len(),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        gm_telemetry::trace::continue_batch(&span, records.iter().map(|r| r.headers.as_slice()));
        let applied = tracing::Instrument::instrument(self.store.apply_batch(self.target, &batches), span).await;
        match applied {
            Ok(()) => {
                for b in &batches {
                    for m in &b.checkpoints {
                        if let Some(p) = self.positions.get_mut(&m.partition) {
                            p.insert(b.name, Some(m.next));
                        }
                    }
                }
                let min: BTreeMap<u32, u64> = self
                    .positions
                    .iter()
                    .map(|(&p, c)| (p, c.values().map(|n| n.unwrap_or(0)).min().unwrap_or(0)))
                    .collect();
                self.dead_lettered.retain(|(p, offset)| min.get(p).is_some_and(|m| offset >= m));
                let moved = Instant::now();
                for (&p, &next) in &min {
                    self.health.at(p, next, moved);
                }
                self.unpublished = true;
                let elapsed = started.elapsed().as_secs_f64();
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                for (name, fresh, events) in counts {
                    let labels = self.metrics.projection(name.as_str());
                    self.metrics.projection_events_applied.get_or_create(&labels).inc_by(fresh);
                    self.metrics.projection_batch_duration.get_or_create(&labels).observe(elapsed);
                    self.metrics.projections.batch_size.get_or_create(&labels).observe(events as f64);
                    self.metrics.projections.last_applied.get_or_create(&labels).set(now.as_secs() as i64);
                }
            }
            Err(StoreError::Conflict { expected, found }) => {
                // Someone else (a rebuild swap, another member after a rebalance) moved a
                // checkpoint, and nothing of the batch was applied: re-read every
                // checkpoint of these partitions and seek each to its smallest.
                tracing::info!(group = %self.group, ?expected, ?found, "a checkpoint moved; re-reading them");
                let held = self.positions.clone();
                let partitions: Vec<u32> = last.keys().copied().collect();
                self.assign(consumer, &partitions).await?;
                for (p, now) in &self.positions {
                    for (name, next) in now {
                        if held.get(p).and_then(|h| h.get(name)) != Some(next) {
                            let labels = self.metrics.projection(name.as_str());
                            self.metrics.projections.checkpoint_conflicts.get_or_create(&labels).inc();
                        }
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Publishes each projection's lag (from its own checkpoints), and fails with
    /// [`WorkerError::Stalled`] when a partition has a committed record to apply while its
    /// consumer has delivered nothing for [`STALL_AFTER`]. (The lag alone cannot tell:
    /// transaction markers and aborted records take offsets that no read_committed consumer
    /// is ever given.)
    async fn report_lag(&mut self) -> Result<(), WorkerError> {
        let Ok(ends) = self.log.end_offsets(topics::PROCESSED).await else { return Ok(()) };
        let now = Instant::now();
        let mut totals: BTreeMap<ProjectionName, u64> = self.names.iter().map(|n| (*n, 0)).collect();
        let mut suspects = Vec::new();
        for (&p, checkpoints) in &self.positions {
            let end = ends.get(p as usize).copied().unwrap_or(0);
            for (name, next) in checkpoints {
                *totals.entry(*name).or_default() += end.saturating_sub(next.unwrap_or(0));
            }
            let next = checkpoints.values().map(|n| n.unwrap_or(0)).min().unwrap_or(0);
            let lag = end.saturating_sub(next);
            let last = self.last_delivery.entry(p).or_insert(now);
            if lag == 0 {
                *last = now;
                self.health.idle(p, next, now);
            } else if now.duration_since(*last) >= self.stall_after {
                suspects.push((p, next, lag, now.duration_since(*last).as_secs()));
            }
        }
        for (name, total) in totals {
            let labels = self.metrics.projection(name.as_str());
            self.metrics.projection_lag.get_or_create(&labels).set(total as i64);
        }
        for (partition, next, lag, seconds) in suspects {
            match self.log.read(topics::PROCESSED, partition, next, 1).await {
                // Nothing committed to apply: caught up; the lag is markers.
                Ok(records) if records.is_empty() => {
                    self.last_delivery.insert(partition, now);
                }
                Ok(_) => return Err(WorkerError::Stalled { partition, lag, seconds }),
                Err(_) => {}
            }
        }
        Ok(())
    }
}

/// The (partition, offset) a dead letter came from, read back from its headers.
fn letter_position(letter: &NewRecord) -> Option<(u32, u64)> {
    let header = |name: &str| letter.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    Some((header(dlq_headers::SOURCE_PARTITION)?.parse().ok()?, header(dlq_headers::SOURCE_OFFSET)?.parse().ok()?))
}

/// Whether `projection` needs to parse `record`: a record without the kind header (written
/// before it existed) always.
fn wanted(projection: ProjectionName, record: &Record) -> bool {
    record.header(gm_schemas::processed::KIND_HEADER).is_none_or(|kind| projection.reads(kind))
}

/// Replays `name` from offset 0 into fresh tables, then swaps them in place of the live ones.
/// A live worker running meanwhile finds its checkpoint moved and follows it.
pub async fn rebuild(
    name: ProjectionName,
    log: Arc<dyn EventLog>,
    store: Arc<dyn ReadModelStore>,
    privacy: Option<Arc<dyn PrivacyStore>>,
    metrics: Metrics,
    progress: impl Fn(u64, u64),
) -> Result<u64, WorkerError> {
    let mut players = privacy.map(Reveal::new);
    store.begin_rebuild(name).await?;
    let ends = log.end_offsets(topics::PROCESSED).await?;
    let total: u64 = ends.iter().sum();
    let mut applied = 0u64;
    for (partition, &end) in ends.iter().enumerate() {
        let partition = partition as u32;
        let mut next = 0u64;
        while next < end {
            let records = log.read(topics::PROCESSED, partition, next, 5_000).await?;
            if records.is_empty() {
                break;
            }
            let mut events: Vec<ProcessedEvent> = records
                .iter()
                .filter(|r| wanted(name, r))
                .filter_map(|r| serde_json::from_slice(&r.payload).ok())
                .collect();
            if let Some(players) = &mut players {
                players.reveal(&mut events).await?;
            }
            let upto = records.last().map(|r| r.offset + 1).unwrap_or(next);
            let expected = if next == 0 { None } else { Some(next) };
            store.apply(Target::Rebuild, name, partition, expected, upto, &changes(name, &events)).await?;
            applied += records.len() as u64;
            next = upto;
            progress(applied, total);
        }
    }
    store.finish_rebuild(name).await?;
    let labels = metrics.projection(name.as_str());
    metrics.projection_events_applied.get_or_create(&labels).inc_by(applied);
    Ok(applied)
}

/// The gateway appends events under the player's pseudonym (so that the log, the actors and
/// the snapshots hold nothing that names the player). Projections put the player's id back,
/// one lookup per batch for the pseudonyms not seen yet.
///
/// A pseudonym without a mapping: the gateway writes the mapping before it appends, so in a
/// live worker this only happens after PostgreSQL was restored to a point before the mapping
/// was written; the gateway writes it again (same pseudonym) at the player's next request.
/// The live worker waits for it, up to `wait_for_mapping`, rather than count the player under
/// two names; past that (a player who never came back) the pseudonym is kept. A rebuild does
/// not wait: pseudonyms of players whose erasure completed have no mapping, on purpose.
pub struct Reveal {
    privacy: Arc<dyn PrivacyStore>,
    known: HashMap<String, PlayerId>,
    wait_for_mapping: Duration,
    unknown_since: HashMap<String, Instant>,
}

/// Mappings kept in memory per worker; beyond it the cache starts over.
const REVEAL_CACHE: usize = 200_000;

/// How long a live worker holds a batch whose pseudonym has no mapping (see [`Reveal`]).
pub const WAIT_FOR_MAPPING: Duration = Duration::from_secs(120);

impl Reveal {
    pub fn new(privacy: Arc<dyn PrivacyStore>) -> Self {
        Self { privacy, known: HashMap::new(), wait_for_mapping: Duration::ZERO, unknown_since: HashMap::new() }
    }

    /// A live worker's: waits up to `wait` for a missing mapping.
    pub fn waiting(privacy: Arc<dyn PrivacyStore>, wait: Duration) -> Self {
        Self { wait_for_mapping: wait, ..Self::new(privacy) }
    }

    pub async fn reveal(&mut self, events: &mut [ProcessedEvent]) -> Result<(), StoreError> {
        let missing: Vec<String> = events
            .iter()
            .map(|e| e.player_id.as_str())
            .filter(|p| is_pseudonym(p) && !self.known.contains_key(*p))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(str::to_string)
            .collect();
        if !missing.is_empty() {
            if self.known.len() + missing.len() > REVEAL_CACHE {
                self.known.clear();
            }
            for (pseudonym, player) in self.privacy.resolve_pseudonyms(&missing).await? {
                if let Ok(player) = PlayerId::parse(player) {
                    self.unknown_since.remove(&pseudonym);
                    self.known.insert(pseudonym, player);
                }
            }
            if !self.wait_for_mapping.is_zero() {
                // Events (not erasures: those need no id once done) still without a mapping.
                let now = Instant::now();
                for e in events.iter().filter(|e| !matches!(e.body, ProcessedBody::PlayerErased { .. })) {
                    let p = e.player_id.as_str();
                    if !is_pseudonym(p) || self.known.contains_key(p) {
                        continue;
                    }
                    let since = *self.unknown_since.entry(p.to_string()).or_insert(now);
                    if now.duration_since(since) < self.wait_for_mapping {
                        return Err(StoreError::Unavailable(
                            "a pseudonym has no player id yet (PostgreSQL restored?); waiting for the gateway to write it again"
                                .into(),
                        ));
                    }
                    tracing::warn!("pseudonym without a player id after the wait; kept as the player's id");
                }
            }
        }
        for e in events.iter_mut() {
            let erased = matches!(e.body, ProcessedBody::PlayerErased { .. });
            let player = if erased {
                self.known.remove(e.player_id.as_str())
            } else {
                self.known.get(e.player_id.as_str()).cloned()
            };
            if let Some(player) = player {
                e.player_id = player;
            }
        }
        Ok(())
    }
}
