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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabels {
    pub projection: String,
}

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
    pub actors_live: Gauge,
    pub actor_events_processed: Counter,
    pub actor_duplicates_dropped: Counter,
    pub snapshots_written: Counter,
    pub projection_lag: Family<ProjectionLabels, Gauge>,
    pub projection_events_applied: Family<ProjectionLabels, Counter>,
    pub projection_batch_duration: Family<ProjectionLabels, Histogram, fn() -> Histogram>,
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
        Self {
            registry: Arc::new(registry),
            http_requests,
            http_request_duration,
            events_accepted,
            events_rejected,
            log_append_duration,
            actors_live,
            actor_events_processed,
            actor_duplicates_dropped,
            snapshots_written,
            projection_lag,
            projection_events_applied,
            projection_batch_duration,
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

/// Initialises tracing once: `RUST_LOG` filter (default `info`), JSON lines when `json`.
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
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
}
