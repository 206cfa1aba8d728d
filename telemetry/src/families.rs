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

/// A group of metrics: the struct of handles and its `register`, from one entry per handle
/// (type, how it is made, exported name and help), so that no handle goes unregistered.
macro_rules! metric_group {
    (
        $(#[$meta:meta])*
        pub struct $group:ident {
            $(
                $(#[$field_meta:meta])*
                $field:ident: $ty:ty = $make:expr => ($name:literal, $help:literal),
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $group {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl $group {
            fn register(registry: &mut Registry) -> Self {
                let m = Self { $( $field: $make, )* };
                $( registry.register($name, $help, m.$field.clone()); )*
                m
            }
        }
    };
}

metric_group! {
    /// The Kafka clients (kafka/src). Absent in the embedded default, which has no client queue.
    pub struct KafkaMetrics {
        /// Messages in the producer's local queue not yet acknowledged by the brokers.
        producer_queue_messages: Gauge = Gauge::default() => (
            "kafka_producer_queue_messages",
            "Messages in the Kafka producer's queue awaiting acknowledgement"
        ),
        /// Enqueue → acknowledgement by the in-sync replicas of one append call, per topic.
        delivery_duration: Family<TopicLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(seconds_histogram) => (
            "kafka_delivery_duration_seconds",
            "Time from enqueue to acknowledgement (acks=all) of an append, per topic"
        ),
        /// Appends that failed after the client's retries, per topic.
        delivery_errors: Family<TopicLabels, Counter> = Family::default() => (
            "kafka_delivery_errors",
            "Appends to Kafka that failed after the client's retries, per topic"
        ),
        /// Records between a group's position and the last stable offset of each assigned
        /// partition (librdkafka statistics; read_committed). Series go when a partition is revoked.
        consumer_lag: Family<PartitionLabels, Gauge> = Family::default() => (
            "kafka_consumer_lag_messages",
            "Records behind the last stable offset, per consumer group and assigned partition"
        ),
        /// Partitions assigned to or revoked from this member.
        rebalances: Family<RebalanceLabels, Counter> = Family::default() => (
            "kafka_consumer_rebalances",
            "Partition assignments and revocations seen by this group member"
        ),
    }
}

metric_group! {
    /// Player actors and their snapshots (actors/src/runtime.rs).
    pub struct ActorMetrics {
        /// Players dropped from memory after being idle (their state is in a snapshot).
        passivated: Counter = Counter::default() => ("actors_passivated", "Idle player actors dropped from memory"),
        /// Players brought back into memory from a snapshot.
        recovered: Counter = Counter::default() => ("actors_recovered", "Player actors restored from a snapshot"),
        /// Partitions (shards) rebuilt from snapshot + replay: assignment, or after a failure.
        partition_recoveries: Counter = Counter::default() => (
            "actor_partition_recoveries",
            "Partitions rebuilt from snapshot and replay (assignment or failure)"
        ),
        /// Partitions (shards) this process owns.
        shards: Gauge = Gauge::default() => ("actor_shards", "Partitions of player.events.raw this process owns"),
        /// Time to write one batch of snapshots.
        snapshot_duration: Histogram = seconds_histogram() => (
            "snapshot_duration_seconds",
            "Time to write one batch of player snapshots"
        ),
        /// Time to load the snapshots of the players a batch needs.
        snapshot_load_duration: Histogram = seconds_histogram() => (
            "snapshot_load_duration_seconds",
            "Time to load the snapshots of the players a batch needs"
        ),
        /// Records sent to `system.dlq` (undecodable input, unencodable output).
        dead_letters: Counter = Counter::default() => ("dead_letters", "Records dead-lettered to system.dlq"),
        /// Batches that failed (log or store error); their partitions are recovered.
        batch_failures: Counter = Counter::default() => (
            "actor_batch_failures",
            "Actor batches that failed; their partitions are recovered from snapshot and replay"
        ),
        /// Times the consumer was replaced because a partition with records to process made no
        /// progress for `actors.stall_after_ms`.
        stalls: Counter = Counter::default() => (
            "actor_stalls",
            "Times the actors' consumer was replaced: a partition with records to process made no progress"
        ),
    }
}

fn batch_size_histogram() -> Histogram {
    // 1 .. 16384 events
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

metric_group! {
    /// Projection workers (projections/src/worker.rs), beside the lag, applied and duration
    /// families of [`crate::Metrics`].
    pub struct ProjectionMetrics {
        /// Events per applied batch (one transaction with its checkpoint).
        batch_size: Family<crate::ProjectionLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(batch_size_histogram) => (
            "projection_batch_size_events",
            "Events per applied batch"
        ),
        /// Unix time of the last batch committed, per projection.
        last_applied: Family<crate::ProjectionLabels, Gauge> = Family::default() => (
            "projection_last_applied_timestamp_seconds",
            "Unix time of the last batch committed, per projection"
        ),
        /// Batches refused because another writer moved the checkpoint (rebuild swap, rebalance).
        checkpoint_conflicts: Family<crate::ProjectionLabels, Counter> = Family::default() => (
            "projection_checkpoint_conflicts",
            "Batches refused because the checkpoint had moved"
        ),
        /// Polls or batches that failed (store or log error); the worker re-reads its checkpoints.
        batch_failures: Family<crate::ProjectionLabels, Counter> = Family::default() => (
            "projection_batch_failures",
            "Polls or batches that failed; the worker retries from its checkpoints"
        ),
        /// Processed records this projection reads that could not be decoded, sent to
        /// `system.dlq` (one per record and projection that reads its kind).
        dead_letters: Family<crate::ProjectionLabels, Counter> = Family::default() => (
            "projection_dead_letters",
            "Processed records a projection reads that could not be decoded, dead-lettered to system.dlq"
        ),
    }
}

fn erasure_histogram() -> Histogram {
    // 0.25 s .. ~17 min: the target is p99 < 60 s.
    Histogram::new(exponential_buckets(0.25, 2.0, 13))
}

metric_group! {
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
    pub struct PrivacyMetrics {
        requested: Counter = Counter::default() => ("erasures_requested", "Erasure requests accepted"),
        completed: Counter = Counter::default() => (
            "erasures_completed",
            "Erasure requests completed in every store"
        ),
        pending: Gauge = Gauge::default() => ("erasures_pending", "Erasure requests accepted and not yet completed"),
        oldest_pending_age: Gauge = Gauge::default() => (
            "erasure_oldest_pending_age_seconds",
            "Age of the oldest pending erasure request (0 when none)"
        ),
        duration: Histogram = erasure_histogram() => (
            "erasure_duration_seconds",
            "Time from an erasure request to its completion"
        ),
        /// Events refused at ingest as `erased` (their player's erasure exists and suppresses
        /// them). Only a recorded erasure may answer this; see docs/runbooks/erased-refusals.md.
        refused_erased: Counter = Counter::default() => (
            "events_refused_erased",
            "Events refused at ingest because their player was erased (suppression window)"
        ),
        /// Ingest requests answered 503 because the privacy store left a player's key
        /// unanswered (created nor found): retried by the client, never refused.
        keys_unanswered: Counter = Counter::default() => (
            "privacy_keys_unanswered",
            "Ingest requests failed (503, retried) because the privacy store answered for no key of a player"
        ),
    }
}

metric_group! {
    /// The Redis read-through cache of analytics queries (redis/src).
    pub struct CacheMetrics {
        hits: Counter = Counter::default() => ("cache_hits", "Query lookups answered from Redis"),
        misses: Counter = Counter::default() => ("cache_misses", "Query lookups not answered from Redis"),
        /// Cache operations that failed or timed out (the query then went to PostgreSQL).
        errors: Counter = Counter::default() => ("cache_errors", "Redis operations that failed or timed out"),
        /// 1 while a Redis connection is held.
        connected: Gauge = Gauge::default() => ("cache_connected", "1 while a Redis connection is held"),
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
