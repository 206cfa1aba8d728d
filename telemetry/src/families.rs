//! The metric groups beyond HTTP and ingest: build, Kafka clients, actors, projections,
//! privacy, cache. Each group registers itself on the shared registry; the roles increment
//! the handles where the work happens (kafka/, actors/, projections/, redis/, gateway/).
//!
//! Naming follows Prometheus conventions: base units (seconds, bytes), `_total` on counters
//! (added by prometheus-client), a unit suffix on gauges and histograms. Labels are bounded:
//! topic, consumer group, partition number, projection name, result — never a player, a key
//! or a personal value.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

/// One partition of a topic read by one consumer group.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub group: String,
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RebalanceLabels {
    pub group: String,
    /// `assigned` or `revoked`.
    pub kind: String,
}

fn seconds_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// `gamemetrics_build_info{version} 1`: which release each process runs.
pub(crate) fn register_build_info(registry: &mut Registry) -> Family<BuildLabels, Gauge> {
    let build_info = Family::<BuildLabels, Gauge>::default();
    build_info.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_string() }).set(1);
    registry.register("build_info", "The GameMetrics release this process runs (always 1)", build_info.clone());
    build_info
}

/// The Kafka clients (kafka/src). Absent in the embedded default, which has no client queue.
#[derive(Clone)]
pub struct KafkaMetrics {
    /// Messages in the producer's local queue not yet acknowledged by the brokers.
    pub producer_queue_messages: Gauge,
    /// Enqueue → acknowledgement by the in-sync replicas of one append call, per topic.
    pub delivery_duration: Family<TopicLabels, Histogram, fn() -> Histogram>,
    /// Appends that failed after the client's retries, per topic.
    pub delivery_errors: Family<TopicLabels, Counter>,
    /// Records between a group's position and the last stable offset of each assigned
    /// partition (librdkafka statistics; read_committed). Series go when a partition is revoked.
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    /// Partitions assigned to or revoked from this member.
    pub rebalances: Family<RebalanceLabels, Counter>,
}

impl KafkaMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            producer_queue_messages: Gauge::default(),
            delivery_duration: Family::new_with_constructor(seconds_histogram),
            delivery_errors: Family::default(),
            consumer_lag: Family::default(),
            rebalances: Family::default(),
        };
        registry.register(
            "kafka_producer_queue_messages",
            "Messages in the Kafka producer's queue awaiting acknowledgement",
            m.producer_queue_messages.clone(),
        );
        registry.register(
            "kafka_delivery_duration_seconds",
            "Time from enqueue to acknowledgement (acks=all) of an append, per topic",
            m.delivery_duration.clone(),
        );
        registry.register(
            "kafka_delivery_errors",
            "Appends to Kafka that failed after the client's retries, per topic",
            m.delivery_errors.clone(),
        );
        registry.register(
            "kafka_consumer_lag_messages",
            "Records behind the last stable offset, per consumer group and assigned partition",
            m.consumer_lag.clone(),
        );
        registry.register(
            "kafka_consumer_rebalances",
            "Partition assignments and revocations seen by this group member",
            m.rebalances.clone(),
        );
        m
    }
}

/// Player actors and their snapshots (actors/src/runtime.rs).
#[derive(Clone)]
pub struct ActorMetrics {
    /// Players dropped from memory after being idle (their state is in a snapshot).
    pub passivated: Counter,
    /// Players brought back into memory from a snapshot.
    pub recovered: Counter,
    /// Partitions (shards) rebuilt from snapshot + replay: assignment, or after a failure.
    pub partition_recoveries: Counter,
    /// Partitions (shards) this process owns.
    pub shards: Gauge,
    /// Time to write one batch of snapshots.
    pub snapshot_duration: Histogram,
    /// Time to load the snapshots of the players a batch needs.
    pub snapshot_load_duration: Histogram,
    /// Records sent to `system.dlq` (undecodable input, unencodable output).
    pub dead_letters: Counter,
    /// Batches that failed (log or store error); their partitions are recovered.
    pub batch_failures: Counter,
    /// Times the consumer was replaced because a partition with records to process made no
    /// progress for `actors.stall_after_ms`.
    pub stalls: Counter,
}

impl ActorMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            passivated: Counter::default(),
            recovered: Counter::default(),
            partition_recoveries: Counter::default(),
            shards: Gauge::default(),
            snapshot_duration: seconds_histogram(),
            snapshot_load_duration: seconds_histogram(),
            dead_letters: Counter::default(),
            batch_failures: Counter::default(),
            stalls: Counter::default(),
        };
        registry.register("actors_passivated", "Idle player actors dropped from memory", m.passivated.clone());
        registry.register("actors_recovered", "Player actors restored from a snapshot", m.recovered.clone());
        registry.register(
            "actor_partition_recoveries",
            "Partitions rebuilt from snapshot and replay (assignment or failure)",
            m.partition_recoveries.clone(),
        );
        registry.register("actor_shards", "Partitions of player.events.raw this process owns", m.shards.clone());
        registry.register(
            "snapshot_duration_seconds",
            "Time to write one batch of player snapshots",
            m.snapshot_duration.clone(),
        );
        registry.register(
            "snapshot_load_duration_seconds",
            "Time to load the snapshots of the players a batch needs",
            m.snapshot_load_duration.clone(),
        );
        registry.register("dead_letters", "Records dead-lettered to system.dlq", m.dead_letters.clone());
        registry.register(
            "actor_batch_failures",
            "Actor batches that failed; their partitions are recovered from snapshot and replay",
            m.batch_failures.clone(),
        );
        registry.register(
            "actor_stalls",
            "Times the actors' consumer was replaced: a partition with records to process made no progress",
            m.stalls.clone(),
        );
        m
    }
}

/// Projection workers (projections/src/worker.rs), beside the lag, applied and duration
/// families of [`crate::Metrics`].
#[derive(Clone)]
pub struct ProjectionMetrics {
    /// Events per applied batch (one transaction with its checkpoint).
    pub batch_size: Family<crate::ProjectionLabels, Histogram, fn() -> Histogram>,
    /// Unix time of the last batch committed, per projection.
    pub last_applied: Family<crate::ProjectionLabels, Gauge>,
    /// Batches refused because another writer moved the checkpoint (rebuild swap, rebalance).
    pub checkpoint_conflicts: Family<crate::ProjectionLabels, Counter>,
    /// Polls or batches that failed (store or log error); the worker re-reads its checkpoints.
    pub batch_failures: Family<crate::ProjectionLabels, Counter>,
    /// Processed records this projection reads that could not be decoded, sent to
    /// `system.dlq` (one per record and projection that reads its kind).
    pub dead_letters: Family<crate::ProjectionLabels, Counter>,
}

fn batch_size_histogram() -> Histogram {
    // 1 .. 16384 events
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

impl ProjectionMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            batch_size: Family::new_with_constructor(batch_size_histogram),
            last_applied: Family::default(),
            checkpoint_conflicts: Family::default(),
            batch_failures: Family::default(),
            dead_letters: Family::default(),
        };
        registry.register("projection_batch_size_events", "Events per applied batch", m.batch_size.clone());
        registry.register(
            "projection_last_applied_timestamp_seconds",
            "Unix time of the last batch committed, per projection",
            m.last_applied.clone(),
        );
        registry.register(
            "projection_checkpoint_conflicts",
            "Batches refused because the checkpoint had moved",
            m.checkpoint_conflicts.clone(),
        );
        registry.register(
            "projection_batch_failures",
            "Polls or batches that failed; the worker retries from its checkpoints",
            m.batch_failures.clone(),
        );
        registry.register(
            "projection_dead_letters",
            "Processed records a projection reads that could not be decoded, dead-lettered to system.dlq",
            m.dead_letters.clone(),
        );
        m
    }
}

/// GDPR erasure (docs/design.md#privacy). For the erasure service to increment:
///
/// - `requested.inc()` when an erasure request is accepted (`POST`, compliance role);
/// - `pending` = requests accepted and not yet `completed` (set it from the store, so it
///   survives restarts and is right whichever process reports it);
/// - `oldest_pending_age.set(seconds)` = age of the oldest pending request (0 when none):
///   the backlog alert fires on it, past the deadline;
/// - on completion: `completed.inc()` and `duration.observe(request → completed, seconds)`;
/// - at ingest: `refused_erased.inc()` per event refused as `erased`, `keys_unanswered.inc()`
///   per request failed because a player's key was neither created nor found.
///
/// Exported as `gamemetrics_erasures_requested_total`, `gamemetrics_erasures_completed_total`,
/// `gamemetrics_erasures_pending`, `gamemetrics_erasure_oldest_pending_age_seconds`,
/// `gamemetrics_erasure_duration_seconds`, `gamemetrics_events_refused_erased_total` and
/// `gamemetrics_privacy_keys_unanswered_total`. No player id in any label.
#[derive(Clone)]
pub struct PrivacyMetrics {
    pub requested: Counter,
    pub completed: Counter,
    pub pending: Gauge,
    pub oldest_pending_age: Gauge,
    pub duration: Histogram,
    /// Events refused at ingest as `erased` (their player's erasure exists and suppresses
    /// them). Only a recorded erasure may answer this; see docs/runbooks/erased-refusals.md.
    pub refused_erased: Counter,
    /// Ingest requests answered 503 because the privacy store left a player's key
    /// unanswered (created nor found): retried by the client, never refused.
    pub keys_unanswered: Counter,
}

fn erasure_histogram() -> Histogram {
    // 0.25 s .. ~17 min: the target is p99 < 60 s.
    Histogram::new(exponential_buckets(0.25, 2.0, 13))
}

impl PrivacyMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requested: Counter::default(),
            completed: Counter::default(),
            pending: Gauge::default(),
            oldest_pending_age: Gauge::default(),
            duration: erasure_histogram(),
            refused_erased: Counter::default(),
            keys_unanswered: Counter::default(),
        };
        registry.register("erasures_requested", "Erasure requests accepted", m.requested.clone());
        registry.register("erasures_completed", "Erasure requests completed in every store", m.completed.clone());
        registry.register("erasures_pending", "Erasure requests accepted and not yet completed", m.pending.clone());
        registry.register(
            "erasure_oldest_pending_age_seconds",
            "Age of the oldest pending erasure request (0 when none)",
            m.oldest_pending_age.clone(),
        );
        registry.register(
            "erasure_duration_seconds",
            "Time from an erasure request to its completion",
            m.duration.clone(),
        );
        registry.register(
            "events_refused_erased",
            "Events refused at ingest because their player was erased (suppression window)",
            m.refused_erased.clone(),
        );
        registry.register(
            "privacy_keys_unanswered",
            "Ingest requests failed (503, retried) because the privacy store answered for no key of a player",
            m.keys_unanswered.clone(),
        );
        m
    }
}

/// The Redis read-through cache of analytics queries (redis/src).
#[derive(Clone)]
pub struct CacheMetrics {
    pub hits: Counter,
    pub misses: Counter,
    /// Cache operations that failed or timed out (the query then went to PostgreSQL).
    pub errors: Counter,
    /// 1 while a Redis connection is held.
    pub connected: Gauge,
}

impl CacheMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            hits: Counter::default(),
            misses: Counter::default(),
            errors: Counter::default(),
            connected: Gauge::default(),
        };
        registry.register("cache_hits", "Query lookups answered from Redis", m.hits.clone());
        registry.register("cache_misses", "Query lookups not answered from Redis", m.misses.clone());
        registry.register("cache_errors", "Redis operations that failed or timed out", m.errors.clone());
        registry.register("cache_connected", "1 while a Redis connection is held", m.connected.clone());
        m
    }
}

/// Every group, registered at once by [`crate::Metrics::new`].
#[derive(Clone)]
pub(crate) struct Groups {
    pub build_info: Family<BuildLabels, Gauge>,
    pub kafka: KafkaMetrics,
    pub actors: ActorMetrics,
    pub projections: ProjectionMetrics,
    pub privacy: PrivacyMetrics,
    pub cache: CacheMetrics,
}

pub(crate) fn register(registry: &mut Registry) -> Groups {
    Groups {
        build_info: register_build_info(registry),
        kafka: KafkaMetrics::register(registry),
        actors: ActorMetrics::register(registry),
        projections: ProjectionMetrics::register(registry),
        privacy: PrivacyMetrics::register(registry),
        cache: CacheMetrics::register(registry),
    }
}
