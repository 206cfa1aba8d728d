//! Helpers of the tests against a real broker: configuration from `GM_KAFKA_BROKERS`
//! (panics when unset or unreachable — these tests never skip), random names, and
//! topics that delete themselves.
#![allow(dead_code)]

use gm_kafka::{KafkaConfig, KafkaLog};
use gm_ports::{EventLog, LogConsumer, Polled, Record, TopicSpec};
use std::time::{Duration, Instant};

pub fn brokers() -> String {
    match std::env::var("GM_KAFKA_BROKERS") {
        Ok(b) if !b.trim().is_empty() => b,
        _ => panic!(
            "GM_KAFKA_BROKERS is not set: these tests need a running Kafka broker. \
             Start one with `scripts/services up kafka` and `eval \"$(scripts/services env)\"`."
        ),
    }
}

/// Test settings: short session timeout so rebalances take seconds, not minutes.
pub fn config() -> KafkaConfig {
    let mut c = KafkaConfig::with_brokers(brokers());
    c.client_id = "gm-kafka-tests".into();
    c.request_timeout_ms = 20_000;
    c.consumer.session_timeout_ms = 6_000;
    c.consumer.heartbeat_interval_ms = 500;
    c.consumer.max_poll_interval_ms = 20_000;
    c.producer.transaction_timeout_ms = 10_000;
    c.transactional_id_prefix = "gm-test-".into();
    c
}

pub async fn connect_with(config: KafkaConfig) -> KafkaLog {
    let brokers = config.brokers.clone();
    match KafkaLog::connect(config).await {
        Ok(log) => log,
        Err(e) => panic!(
            "Kafka at {brokers} (GM_KAFKA_BROKERS) is unreachable: {e}. Start it with `scripts/services up kafka`."
        ),
    }
}

pub async fn connect() -> KafkaLog {
    connect_with(config()).await
}

pub fn random_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A topic `test-<uuid>` created through the admin client and deleted on drop.
pub struct EphemeralTopic {
    pub name: String,
    pub partitions: u32,
    log: KafkaLog,
}

impl EphemeralTopic {
    pub async fn new(log: &KafkaLog, partitions: u32) -> Self {
        Self::with_compaction(log, partitions, false).await
    }

    pub async fn with_compaction(log: &KafkaLog, partitions: u32, compacted: bool) -> Self {
        let name = random_name("test");
        log.ensure_topics(&[TopicSpec { name: name.clone(), partitions, compacted }])
            .await
            .unwrap_or_else(|e| panic!("cannot create topic {name}: {e}"));
        Self { name, partitions, log: log.clone() }
    }
}

impl Drop for EphemeralTopic {
    fn drop(&mut self) {
        // The admin client's futures are driven by librdkafka's own thread.
        if let Err(e) = futures::executor::block_on(self.log.delete_topics(&[&self.name])) {
            eprintln!("could not delete test topic {}: {e}", self.name);
        }
    }
}

/// Polls until `n` records arrived (or panics after `within`); returns every `Polled`
/// other than `Idle`, in order.
pub async fn poll_records(consumer: &mut dyn LogConsumer, n: usize, within: Duration) -> Vec<Polled> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut got = 0;
    while got < n {
        assert!(Instant::now() < deadline, "only {got} of {n} records within {within:?}; saw {out:?}");
        match consumer.poll(1000, Duration::from_millis(200)).await.expect("poll") {
            Polled::Idle => {}
            Polled::Records(r) => {
                got += r.len();
                out.push(Polled::Records(r));
            }
            other => out.push(other),
        }
    }
    out
}

pub fn records_of(polled: &[Polled]) -> Vec<Record> {
    polled
        .iter()
        .flat_map(|p| match p {
            Polled::Records(r) => r.clone(),
            _ => Vec::new(),
        })
        .collect()
}

/// Every record of a topic, as a read_committed reader sees it.
pub async fn read_all(log: &KafkaLog, topic: &str) -> Vec<Record> {
    let ends = log.end_offsets(topic).await.expect("end offsets");
    let mut out = Vec::new();
    for (p, &end) in ends.iter().enumerate() {
        let mut next = 0;
        while next < end {
            let recs = log.read(topic, p as u32, next, 1000).await.expect("read");
            let Some(last) = recs.last() else { break };
            next = last.offset + 1;
            out.extend(recs);
        }
    }
    out
}
