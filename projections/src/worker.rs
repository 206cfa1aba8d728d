//! Projection workers: a consumer-group member per projection that applies batches with
//! their checkpoint in one transaction, and the rebuild that replays from offset 0.

use crate::model::{ProjectionName, Target};
use crate::ports::ReadModelStore;
use crate::project::changes;
use gm_ports::{EventLog, LogConsumer, LogError, Polled, Record, StoreError};
use gm_privacy::{is_pseudonym, PrivacyStore};
use gm_schemas::{topics, PlayerId, ProcessedBody, ProcessedEvent};
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
    name: ProjectionName,
    /// Turns the pseudonyms the log carries back into player ids for the read models.
    players: Option<Reveal>,
    target: Target,
    log: Arc<dyn EventLog>,
    store: Arc<dyn ReadModelStore>,
    metrics: Metrics,
    max_batch: usize,
    /// The checkpoint (next offset to apply) of each assigned partition, exactly as stored.
    positions: HashMap<u32, Option<u64>>,
    /// Partitions assigned whose checkpoint could not be read yet (their records are
    /// skipped until it is, then read again from it).
    unready: BTreeSet<u32>,
    /// When each assigned partition last delivered a record or was caught up.
    last_delivery: HashMap<u32, Instant>,
    stall_after: Duration,
    /// Recommendations: the outbox to publish to `recommendations.generated` after each batch.
    publisher: Option<Arc<dyn crate::recommend::RecommendationStore>>,
    /// The outbox may hold lists not yet published (at start: left by a crash).
    unpublished: bool,
}

impl ProjectionWorker {
    pub fn new(name: ProjectionName, log: Arc<dyn EventLog>, store: Arc<dyn ReadModelStore>, metrics: Metrics) -> Self {
        Self {
            name,
            players: None,
            target: Target::Live,
            log,
            store,
            metrics,
            max_batch: 5_000,
            positions: HashMap::new(),
            unready: BTreeSet::new(),
            last_delivery: HashMap::new(),
            stall_after: STALL_AFTER,
            publisher: None,
            unpublished: true,
        }
    }

    /// Publishes the lists the recommendations projection queued in its outbox (in the
    /// batch's transaction) after each batch; see [`crate::recommend::publish_pending`].
    pub fn with_recommendations(mut self, store: Arc<dyn crate::recommend::RecommendationStore>) -> Self {
        self.publisher = Some(store);
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
                tracing::warn!(projection = %self.name, error = %e, "publishing recommendations failed; will retry")
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
        let mut consumer = self.log.consumer(&self.name.group(), topics::PROCESSED).await?;
        let mut last_lag = Instant::now() - Duration::from_secs(10);
        while !*shutdown.borrow() {
            let polled = tokio::select! {
                _ = shutdown.changed() => break,
                polled = consumer.poll(self.max_batch, Duration::from_millis(200)) => polled,
            };
            let result = match polled {
                Ok(Polled::Assigned(partitions)) => self.assign(consumer.as_mut(), &partitions).await,
                Ok(Polled::Revoked(partitions)) => {
                    partitions.iter().for_each(|p| {
                        self.positions.remove(p);
                        self.unready.remove(p);
                        self.last_delivery.remove(p);
                    });
                    Ok(())
                }
                Ok(Polled::Records(records)) => {
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
                tracing::warn!(projection = %self.name, error = %e, "projection batch failed; re-reading checkpoints");
                let labels = self.metrics.projection(self.name.as_str());
                self.metrics.projections.batch_failures.get_or_create(&labels).inc();
                tokio::time::sleep(Duration::from_millis(200)).await;
                let partitions: Vec<u32> = self.positions.keys().chain(&self.unready).copied().collect();
                if let Err(e) = self.assign(consumer.as_mut(), &partitions).await {
                    tracing::warn!(projection = %self.name, error = %e, "cannot re-read checkpoints yet");
                }
            }
            self.publish().await;
            if last_lag.elapsed() >= Duration::from_secs(1) {
                last_lag = Instant::now();
                if !self.unready.is_empty() {
                    let partitions: Vec<u32> = self.unready.iter().copied().collect();
                    if let Err(e) = self.assign(consumer.as_mut(), &partitions).await {
                        tracing::warn!(projection = %self.name, error = %e, "cannot read checkpoints yet");
                    }
                }
                self.report_lag().await?;
            }
        }
        Ok(())
    }

    /// Seeks each partition to the checkpoint stored with the read model. A partition whose
    /// checkpoint cannot be read stays `unready` (its records are skipped) and is tried
    /// again on the next failure round.
    async fn assign(&mut self, consumer: &mut dyn LogConsumer, partitions: &[u32]) -> Result<(), WorkerError> {
        let mut failed = None;
        for &p in partitions {
            self.last_delivery.entry(p).or_insert_with(Instant::now);
            match self.store.checkpoint(self.target, self.name, p).await {
                Ok(checkpoint) => {
                    consumer.seek(p, checkpoint.unwrap_or(0));
                    self.positions.insert(p, checkpoint);
                    self.unready.remove(&p);
                }
                Err(e) => {
                    self.positions.remove(&p);
                    self.unready.insert(p);
                    failed = Some(e);
                }
            }
        }
        failed.map_or(Ok(()), |e| Err(e.into()))
    }

    async fn apply(&mut self, consumer: &mut dyn LogConsumer, records: Vec<Record>) -> Result<(), WorkerError> {
        let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        for r in records {
            by_partition.entry(r.partition).or_default().push(r);
        }
        for (partition, records) in by_partition {
            let Some(&expected) = self.positions.get(&partition) else { continue };
            let from = expected.unwrap_or(0);
            let fresh: Vec<&Record> = records.iter().filter(|r| r.offset >= from).collect();
            let Some(last) = fresh.last() else { continue };
            let next = last.offset + 1;
            let mut events: Vec<ProcessedEvent> = fresh
                .iter()
                .filter(|r| wanted(self.name, r))
                .filter_map(|r| match serde_json::from_slice(&r.payload) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        tracing::error!(projection = %self.name, partition, offset = r.offset, error = %e, "unreadable processed event skipped");
                        None
                    }
                })
                .collect();
            if let Some(players) = &mut self.players {
                players.reveal(&mut events).await?;
            }
            let started = Instant::now();
            // One span per applied batch, continuing the trace of its first record.
            let span = tracing::info_span!(
                "projection.apply",
                projection = %self.name,
                partition,
                events = events.len(),
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            );
            gm_telemetry::trace::continue_batch(&span, fresh.iter().map(|r| r.headers.as_slice()));
            let change_set = changes(self.name, &events);
            let applied = tracing::Instrument::instrument(
                self.store.apply(self.target, self.name, partition, expected, next, &change_set),
                span,
            )
            .await;
            match applied {
                Ok(()) => {
                    self.positions.insert(partition, Some(next));
                    self.unpublished = true;
                    let labels = self.metrics.projection(self.name.as_str());
                    // Records of kinds this projection does not read count too: applied as no-ops.
                    self.metrics.projection_events_applied.get_or_create(&labels).inc_by(fresh.len() as u64);
                    self.metrics
                        .projection_batch_duration
                        .get_or_create(&labels)
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.projections.batch_size.get_or_create(&labels).observe(events.len() as f64);
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    self.metrics.projections.last_applied.get_or_create(&labels).set(now.as_secs() as i64);
                }
                Err(StoreError::Conflict { found, .. }) => {
                    // Someone else (a rebuild swap, another worker) moved the checkpoint: follow it.
                    tracing::info!(projection = %self.name, partition, ?found, "checkpoint moved; seeking to it");
                    let labels = self.metrics.projection(self.name.as_str());
                    self.metrics.projections.checkpoint_conflicts.get_or_create(&labels).inc();
                    consumer.seek(partition, found.unwrap_or(0));
                    self.positions.insert(partition, found);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Publishes the lag, and fails with [`WorkerError::Stalled`] when a partition has a
    /// committed record to apply while its consumer has delivered nothing for
    /// [`STALL_AFTER`]. (The lag alone cannot tell: transaction markers and aborted records
    /// take offsets that no read_committed consumer is ever given.)
    async fn report_lag(&mut self) -> Result<(), WorkerError> {
        let Ok(ends) = self.log.end_offsets(topics::PROCESSED).await else { return Ok(()) };
        let now = Instant::now();
        let mut total = 0;
        let mut suspects = Vec::new();
        for (&p, next) in &self.positions {
            let next = next.unwrap_or(0);
            let lag = ends.get(p as usize).copied().unwrap_or(0).saturating_sub(next);
            total += lag;
            let last = self.last_delivery.entry(p).or_insert(now);
            if lag == 0 {
                *last = now;
            } else if now.duration_since(*last) >= self.stall_after {
                suspects.push((p, next, lag, now.duration_since(*last).as_secs()));
            }
        }
        let labels = self.metrics.projection(self.name.as_str());
        self.metrics.projection_lag.get_or_create(&labels).set(total as i64);
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
