//! Readiness that tells the truth, per role: background watchers that set the components of
//! `/health/ready` (never a probe per request).
//!
//! - `kafka`: the brokers answer a metadata request of this process's producer;
//! - `postgres`: the pool answers `SELECT 1`;
//! - `actors.consumer`, `projections.consumer`: the role's consumer joined, owns partitions,
//!   polls, and moves forward wherever the log holds records past its position
//!   ([`gm_telemetry::health::ConsumerHealth`]).
//!
//! Each probe is bounded by a timeout and the states are set every interval, so a component
//! turns not ready within about one interval plus one timeout of an outage, and ready again
//! at the first probe after recovery. The embedded default has none of these: its log and
//! store are in the process (`storage`, ready once opened).

use gm_gateway::{ComponentState, Readiness};
use gm_ports::EventLog;
use gm_telemetry::health::{ConsumerHealth, Verdict};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub const KAFKA: &str = "kafka";
pub const POSTGRES: &str = "postgres";
pub const ACTORS_CONSUMER: &str = "actors.consumer";
pub const PROJECTIONS_CONSUMER: &str = "projections.consumer";

/// `[health]` (see [`crate::config::HealthSettings`]).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub interval: Duration,
    pub timeout: Duration,
    pub consumer_stall: Duration,
}

/// The production dependencies a role probes.
#[derive(Clone)]
pub struct Probes {
    pub kafka: gm_kafka::KafkaLog,
    /// The topic whose metadata the producer asks for (the raw topic, namespaced).
    pub kafka_topic: String,
    pub postgres: gm_postgres::PgStore,
}

impl Probes {
    async fn kafka(&self, timeout: Duration) -> ComponentState {
        match self.kafka.probe_producer(&self.kafka_topic, timeout).await {
            Ok(()) => ComponentState::Ready,
            Err(e) => ComponentState::NotReady(e.to_string()),
        }
    }

    async fn postgres(&self, timeout: Duration) -> ComponentState {
        let select = sqlx::query("SELECT 1").execute(self.postgres.pool());
        match tokio::time::timeout(timeout, select).await {
            Ok(Ok(_)) => ComponentState::Ready,
            Ok(Err(e)) => ComponentState::NotReady(format!("SELECT 1 failed: {e}")),
            Err(_) => ComponentState::NotReady(format!("SELECT 1 not answered within {timeout:?}")),
        }
    }
}

/// Registers `kafka` and `postgres` (not ready until the first probe) and returns the task
/// that probes them every interval until shutdown.
pub fn watch_dependencies(
    probes: Probes,
    readiness: Readiness,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> {
    readiness.register(KAFKA);
    readiness.register(POSTGRES);
    async move {
        loop {
            let (kafka, postgres) = tokio::join!(probes.kafka(settings.timeout), probes.postgres(settings.timeout));
            report(&readiness, KAFKA, kafka);
            report(&readiness, POSTGRES, postgres);
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(settings.interval) => {}
            }
        }
    }
}

/// Registers `component` (not ready until judged) and returns the task that judges the
/// consumer reporting to `health` every interval, checking against `topic` of `log` the
/// partitions that did not move.
pub fn watch_consumer(
    component: &'static str,
    health: ConsumerHealth,
    log: Arc<dyn EventLog>,
    topic: &'static str,
    readiness: Readiness,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> {
    readiness.register(component);
    async move {
        loop {
            let state = judge(&health, log.as_ref(), topic, settings.consumer_stall, Instant::now()).await;
            // None: the log cannot tell now (Kafka down, which `kafka` reports): keep the state.
            if let Some(state) = state {
                report(&readiness, component, state);
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(settings.interval) => {}
            }
        }
    }
}

/// The consumer's state at `now`; `None` when the log cannot tell.
async fn judge(
    health: &ConsumerHealth,
    log: &dyn EventLog,
    topic: &str,
    limit: Duration,
    now: Instant,
) -> Option<ComponentState> {
    match health.verdict(now, limit) {
        Verdict::Ready => Some(ComponentState::Ready),
        Verdict::NotReady(reason) => Some(ComponentState::NotReady(reason)),
        Verdict::Check(partitions) => check(health, log, topic, &partitions, now).await,
    }
}

/// Stalled or idle: a partition that did not move is stalled only if the log holds a committed
/// record at its position (the end offset alone cannot tell: transaction markers take offsets
/// no read_committed consumer is given).
async fn check(
    health: &ConsumerHealth,
    log: &dyn EventLog,
    topic: &str,
    partitions: &[(u32, u64)],
    now: Instant,
) -> Option<ComponentState> {
    let ends = log.end_offsets(topic).await.ok()?;
    for &(partition, next) in partitions {
        let end = ends.get(partition as usize).copied().unwrap_or(0);
        if next >= end {
            health.idle(partition, next, now);
            continue;
        }
        let records = log.read(topic, partition, next, 1).await.ok()?;
        if records.is_empty() {
            health.idle(partition, next, now);
            continue;
        }
        return Some(ComponentState::NotReady(format!(
            "partition {partition}: {} records behind at offset {next} and no progress for {} s",
            end - next,
            health.quiet_for(partition, now).as_secs()
        )));
    }
    Some(ComponentState::Ready)
}

/// Sets the state, logging each change once (not every probe): a component that was ready and
/// fails at WARN, the start (a consumer joining its group) at INFO.
fn report(readiness: &Readiness, component: &str, state: ComponentState) {
    let ready = readiness.snapshot().get(component).copied().unwrap_or(false);
    let failing = readiness.reasons().contains_key(component);
    match &state {
        ComponentState::Ready if !ready => tracing::info!(component, "ready"),
        ComponentState::NotReady(reason) if ready => tracing::warn!(component, %reason, "not ready"),
        ComponentState::NotReady(reason) if !failing => tracing::info!(component, %reason, "not ready yet"),
        _ => {}
    }
    readiness.set(component, state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use gm_ports::{NewRecord, TopicSpec};

    const LIMIT: Duration = Duration::from_secs(30);

    /// The judgement against a real log (the embedded one): a consumer that did not move is
    /// stalled only while the log holds records at its position.
    #[tokio::test]
    async fn a_quiet_consumer_is_stalled_with_records_behind_it_and_ready_when_it_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let topic = "t";
        let spec = TopicSpec { name: topic.into(), partitions: 1, compacted: false };
        let log = gm_embedded::SqliteLog::open(&dir.path().join("log.db"), &[spec]).await.unwrap();
        let records = (0..5).map(|i| NewRecord::new("k", format!("{i}").into_bytes())).collect();
        log.producer().append(topic, records).await.unwrap();

        let t = Instant::now();
        let health = ConsumerHealth::new();
        health.joined(t);
        health.assigned(&[0], t);
        health.at(0, 2, t);
        let later = t + LIMIT + Duration::from_secs(1);
        health.polled(later);
        // Polling, but offsets 2..5 wait and the position has not moved: stalled.
        let state = judge(&health, &log, topic, LIMIT, later).await;
        assert_eq!(
            state,
            Some(ComponentState::NotReady("partition 0: 3 records behind at offset 2 and no progress for 31 s".into()))
        );

        // Caught up, then quiet for longer than the limit: idle, ready.
        health.at(0, 5, later);
        let much_later = later + LIMIT + Duration::from_secs(1);
        health.polled(much_later);
        assert_eq!(judge(&health, &log, topic, LIMIT, much_later).await, Some(ComponentState::Ready));
        assert_eq!(health.verdict(much_later, LIMIT), Verdict::Ready, "found idle: not checked again at once");
        log.close().await;
    }
}
