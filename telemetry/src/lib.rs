//! # gm-telemetry
//!
//! One Prometheus registry (prometheus-client) with every metric the roles expose, and the
//! tracing set-up. Labels are low-cardinality by construction: routes are patterns, reasons
//! are codes, never a player or a personal value.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;

mod families;
pub mod health;
pub mod trace;
pub use families::{
    ActorMetrics, BuildLabels, CacheMetrics, KafkaMetrics, PartitionLabels, PrivacyMetrics, ProjectionMetrics,
    RebalanceLabels, TopicLabels,
};
pub use trace::{TracingGuard, TracingSettings};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// An event type (a fixed set: the typed event types).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabels {
    pub projection: String,
}

/// A dependency or loop a role needs to be ready (`kafka`, `postgres`, `actors.consumer`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component: String,
}

/// `gamemetrics_ready`: one gauge per component.
pub type ComponentGauge = Family<ComponentLabels, Gauge>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric of GameMetrics. Cheap to clone (all handles are `Arc`s inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub events_accepted: Counter,
    pub events_rejected: Family<ReasonLabels, Counter>,
    pub log_append_duration: Histogram,
    /// Events of the previous platform's route kept as design events because their typed
    /// event could not take their data, by the typed event type they would have been.
    pub compat_events_downgraded: Family<TypeLabels, Counter>,
    pub actors_live: Gauge,
    pub actor_events_processed: Counter,
    pub actor_duplicates_dropped: Counter,
    pub snapshots_written: Counter,
    pub projection_lag: Family<ProjectionLabels, Gauge>,
    pub projection_events_applied: Family<ProjectionLabels, Counter>,
    pub projection_batch_duration: Family<ProjectionLabels, Histogram, fn() -> Histogram>,
    /// 1 while a component the role needs (served by `/health/ready`) is ready, else 0.
    pub ready: ComponentGauge,
    pub build_info: Family<BuildLabels, Gauge>,
    pub kafka: KafkaMetrics,
    pub actors: ActorMetrics,
    pub projections: ProjectionMetrics,
    /// Erasure metrics: see [`PrivacyMetrics`] for what to increment when.
    pub privacy: PrivacyMetrics,
    pub cache: CacheMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gamemetrics");
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by route pattern, method and status", http_requests.clone());
        let http_request_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route pattern",
            http_request_duration.clone(),
        );
        let events_accepted = Counter::default();
        registry.register("events_accepted", "Events validated and acknowledged by the log", events_accepted.clone());
        let events_rejected = Family::<ReasonLabels, Counter>::default();
        registry.register("events_rejected", "Events refused, by reason code", events_rejected.clone());
        let log_append_duration = latency_histogram();
        registry.register(
            "log_append_duration_seconds",
            "Time for the log to acknowledge an append",
            log_append_duration.clone(),
        );
        let compat_events_downgraded = Family::<TypeLabels, Counter>::default();
        registry.register(
            "compat_events_downgraded",
            "Events of the previous platform's route kept as design events, by the typed event type they could not be",
            compat_events_downgraded.clone(),
        );
        let actors_live = Gauge::default();
        registry.register("actors_live", "Player actors held in memory (not passivated)", actors_live.clone());
        let actor_events_processed = Counter::default();
        registry.register(
            "actor_events_processed",
            "Raw records applied by player actors",
            actor_events_processed.clone(),
        );
        let actor_duplicates_dropped = Counter::default();
        registry.register(
            "actor_duplicates_dropped",
            "Events dropped as duplicates of an event id already applied",
            actor_duplicates_dropped.clone(),
        );
        let snapshots_written = Counter::default();
        registry.register("snapshots_written", "Player snapshots written", snapshots_written.clone());
        let projection_lag = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "projection_lag_events",
            "Processed events not yet applied, per projection",
            projection_lag.clone(),
        );
        let projection_events_applied = Family::<ProjectionLabels, Counter>::default();
        registry.register(
            "projection_events_applied",
            "Processed events applied, per projection",
            projection_events_applied.clone(),
        );
        let projection_batch_duration =
            Family::<ProjectionLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "projection_batch_duration_seconds",
            "Time to apply one batch with its checkpoint",
            projection_batch_duration.clone(),
        );
        let ready = Family::<ComponentLabels, Gauge>::default();
        registry.register(
            "ready",
            "1 while the component is ready, 0 while it makes /health/ready answer 503",
            ready.clone(),
        );
        let groups = families::register(&mut registry);
        Self {
            registry: Arc::new(registry),
            build_info: groups.build_info,
            kafka: groups.kafka,
            actors: groups.actors,
            projections: groups.projections,
            privacy: groups.privacy,
            cache: groups.cache,
            http_requests,
            http_request_duration,
            events_accepted,
            events_rejected,
            log_append_duration,
            compat_events_downgraded,
            actors_live,
            actor_events_processed,
            actor_duplicates_dropped,
            snapshots_written,
            projection_lag,
            projection_events_applied,
            projection_batch_duration,
            ready,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn projection(&self, name: &str) -> ProjectionLabels {
        ProjectionLabels { projection: name.to_string() }
    }
}

/// Every metric family a role exposes, as named in its `# TYPE` line (counters without
/// `_total`), with its type. scripts/check-monitoring reads this list to check that every
/// rule and dashboard query names a metric that exists; the tests below hold it to the encoder.
pub const EXPORTED: &[(&str, &str)] = &[
    ("gamemetrics_http_requests", "counter"),
    ("gamemetrics_http_request_duration_seconds", "histogram"),
    ("gamemetrics_events_accepted", "counter"),
    ("gamemetrics_events_rejected", "counter"),
    ("gamemetrics_log_append_duration_seconds", "histogram"),
    ("gamemetrics_compat_events_downgraded", "counter"),
    ("gamemetrics_actors_live", "gauge"),
    ("gamemetrics_actor_events_processed", "counter"),
    ("gamemetrics_actor_duplicates_dropped", "counter"),
    ("gamemetrics_snapshots_written", "counter"),
    ("gamemetrics_projection_lag_events", "gauge"),
    ("gamemetrics_projection_events_applied", "counter"),
    ("gamemetrics_projection_batch_duration_seconds", "histogram"),
    ("gamemetrics_build_info", "gauge"),
    ("gamemetrics_kafka_producer_queue_messages", "gauge"),
    ("gamemetrics_kafka_delivery_duration_seconds", "histogram"),
    ("gamemetrics_kafka_delivery_errors", "counter"),
    ("gamemetrics_kafka_consumer_lag_messages", "gauge"),
    ("gamemetrics_kafka_consumer_rebalances", "counter"),
    ("gamemetrics_actors_passivated", "counter"),
    ("gamemetrics_actors_recovered", "counter"),
    ("gamemetrics_actor_partition_recoveries", "counter"),
    ("gamemetrics_actor_shards", "gauge"),
    ("gamemetrics_snapshot_duration_seconds", "histogram"),
    ("gamemetrics_snapshot_load_duration_seconds", "histogram"),
    ("gamemetrics_dead_letters", "counter"),
    ("gamemetrics_actor_batch_failures", "counter"),
    ("gamemetrics_actor_stalls", "counter"),
    ("gamemetrics_projection_batch_size_events", "histogram"),
    ("gamemetrics_projection_last_applied_timestamp_seconds", "gauge"),
    ("gamemetrics_projection_checkpoint_conflicts", "counter"),
    ("gamemetrics_projection_batch_failures", "counter"),
    ("gamemetrics_projection_dead_letters", "counter"),
    ("gamemetrics_erasures_requested", "counter"),
    ("gamemetrics_erasures_completed", "counter"),
    ("gamemetrics_erasures_pending", "gauge"),
    ("gamemetrics_erasure_oldest_pending_age_seconds", "gauge"),
    ("gamemetrics_erasure_duration_seconds", "histogram"),
    ("gamemetrics_events_refused_erased", "counter"),
    ("gamemetrics_privacy_keys_unanswered", "counter"),
    ("gamemetrics_cache_hits", "counter"),
    ("gamemetrics_cache_misses", "counter"),
    ("gamemetrics_cache_errors", "counter"),
    ("gamemetrics_cache_connected", "gauge"),
    ("gamemetrics_ready", "gauge"),
];

/// Initialises logging once, without span export: `RUST_LOG` filter (default `info`), JSON
/// lines when `json`. Roles use [`trace::init`], which also exports spans over OTLP.
pub fn init_tracing(json: bool) {
    let settings =
        TracingSettings { json, otlp_endpoint: None, sampling_ratio: 0.0, service_name: "gamemetrics".into() };
    // Without an exporter there is nothing to build that could fail.
    let _ = trace::init(&settings);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_registered_metrics_with_prefix() {
        let m = Metrics::new();
        m.events_accepted.inc();
        m.events_rejected.get_or_create(&ReasonLabels { reason: "malformed".into() }).inc();
        let text = m.encode();
        assert!(text.contains("gamemetrics_events_accepted_total 1"), "{text}");
        assert!(text.contains("gamemetrics_events_rejected_total{reason=\"malformed\"} 1"), "{text}");
    }

    #[test]
    fn exposes_every_metric_family_of_the_dashboards_and_alerts() {
        let m = Metrics::new();
        // Families without a child are not encoded: give each one a series first.
        let p = m.projection("sessions");
        let _ = m.http_requests.get_or_create(&RequestLabels {
            route: "/v1/events".into(),
            method: "POST".into(),
            status: 202,
        });
        let _ = m.http_request_duration.get_or_create(&RouteLabels { route: "/v1/events".into() });
        let _ = m.events_rejected.get_or_create(&ReasonLabels { reason: "malformed".into() });
        let _ = m.compat_events_downgraded.get_or_create(&TypeLabels { r#type: "purchase".into() });
        let _ = m.projection_lag.get_or_create(&p);
        let _ = m.projection_events_applied.get_or_create(&p);
        let _ = m.projection_batch_duration.get_or_create(&p);
        let _ = m.projections.batch_size.get_or_create(&p);
        let _ = m.projections.last_applied.get_or_create(&p);
        let _ = m.projections.checkpoint_conflicts.get_or_create(&p);
        let _ = m.projections.batch_failures.get_or_create(&p);
        let _ = m.projections.dead_letters.get_or_create(&p);
        let topic = TopicLabels { topic: "player.events.raw".into() };
        let _ = m.kafka.delivery_duration.get_or_create(&topic);
        let _ = m.kafka.delivery_errors.get_or_create(&topic);
        let _ = m.kafka.consumer_lag.get_or_create(&PartitionLabels {
            group: "actors".into(),
            topic: "player.events.raw".into(),
            partition: "0".into(),
        });
        let _ = m.kafka.rebalances.get_or_create(&RebalanceLabels { group: "actors".into(), kind: "assigned".into() });
        let _ = m.ready.get_or_create(&ComponentLabels { component: "kafka".into() });
        let text = m.encode();
        for (name, kind) in EXPORTED {
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name} ({kind}) missing from:\n{text}");
        }
        let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(families, EXPORTED.len(), "a metric is registered but not listed in EXPORTED:\n{text}");
        assert!(text.contains(&format!("gamemetrics_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))));
    }

    #[test]
    fn privacy_and_cache_counters_carry_the_names_the_lead_and_the_rules_use() {
        let m = Metrics::new();
        m.privacy.requested.inc();
        m.privacy.pending.set(1);
        m.privacy.duration.observe(3.0);
        m.cache.hits.inc_by(3);
        let text = m.encode();
        assert!(text.contains("gamemetrics_erasures_requested_total 1"), "{text}");
        assert!(text.contains("gamemetrics_erasures_completed_total 0"), "{text}");
        assert!(text.contains("gamemetrics_erasures_pending 1"), "{text}");
        assert!(text.contains("gamemetrics_erasure_duration_seconds_count 1"), "{text}");
        assert!(text.contains("gamemetrics_cache_hits_total 3"), "{text}");
    }
}
