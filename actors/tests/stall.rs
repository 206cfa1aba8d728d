//! A consumer that stops delivering (seen after a Kafka broker restart: a partition holding
//! records that the client never hands over) does not stall the actors for good: after
//! `stall_after` without progress while the log holds a record at the partition's next
//! offset, the runtime leaves the group and joins again with a fresh consumer. A partition
//! with nothing to process is never taken for stalled. Runs the real actors runtime on the
//! embedded log and store; the first consumer it gets is deaf (it drops every record).

mod common;

use async_trait::async_trait;
use common::score;
use gm_actors::{ActorsConfig, ActorsRuntime};
use gm_embedded::{SqliteConsumer, SqliteLog, SqliteStore};
use gm_ports::{EventLog, LogConsumer, LogError, LogProducer, NewRecord, Polled, Position, Record, TopicSpec};
use gm_schemas::{topics, ProcessedEvent};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The embedded log, except that the first consumer it creates never delivers a record.
struct FirstConsumerDeaf {
    log: SqliteLog,
    consumers: AtomicUsize,
}

struct Deaf(SqliteConsumer);

#[async_trait]
impl LogConsumer for Deaf {
    async fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Polled, LogError> {
        match self.0.poll(max_records, timeout).await? {
            Polled::Records(_) => Ok(Polled::Idle),
            other => Ok(other),
        }
    }
    fn seek(&mut self, partition: u32, offset: u64) {
        self.0.seek(partition, offset)
    }
    async fn committed(&self, partition: u32) -> Result<Option<u64>, LogError> {
        self.0.committed(partition).await
    }
    async fn commit(&mut self, offsets: &[Position]) -> Result<(), LogError> {
        self.0.commit(offsets).await
    }
    async fn commit_with_outputs_to(
        &mut self,
        outputs: Vec<(String, Vec<NewRecord>)>,
        offsets: &[Position],
    ) -> Result<(), LogError> {
        self.0.commit_with_outputs_to(outputs, offsets).await
    }
}

#[async_trait]
impl EventLog for FirstConsumerDeaf {
    async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<(), LogError> {
        self.log.ensure_topics(specs).await
    }
    fn producer(&self) -> Arc<dyn LogProducer> {
        self.log.producer()
    }
    async fn consumer(&self, group: &str, topic: &str) -> Result<Box<dyn LogConsumer>, LogError> {
        let consumer = self.log.sqlite_consumer(group, topic).await?;
        Ok(if self.consumers.fetch_add(1, Ordering::SeqCst) == 0 {
            Box::new(Deaf(consumer))
        } else {
            Box::new(consumer)
        })
    }
    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, LogError> {
        self.log.end_offsets(topic).await
    }
    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<Record>, LogError> {
        self.log.read(topic, partition, from, max).await
    }
}

#[actix::test]
async fn a_consumer_that_stops_delivering_is_replaced_and_every_record_is_processed_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::one_partition_log(dir.path()).await;
    let store = SqliteStore::open(&dir.path().join("store.db")).await.unwrap();
    let records: Vec<NewRecord> = (1..=5).map(|i| NewRecord::new("space-race:p1", score("p1", i))).collect();
    log.producer().append(topics::RAW, records).await.unwrap();

    let deaf_first = Arc::new(FirstConsumerDeaf { log: log.clone(), consumers: AtomicUsize::new(0) });
    let config = ActorsConfig { stall_after: Duration::from_secs(1), ..ActorsConfig::default() };
    let metrics = gm_telemetry::Metrics::default();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let runtime = ActorsRuntime::new(deaf_first.clone(), Arc::new(store.clone()), config, metrics.clone());
    let task = actix::spawn(runtime.run(shutdown));

    let deadline = Instant::now() + Duration::from_secs(30);
    while log.read(topics::PROCESSED, 0, 0, 100).await.unwrap().len() < 5 {
        assert!(Instant::now() < deadline, "still stalled after 30 s; stalls seen: {}", metrics.actors.stalls.get());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metrics.actors.stalls.get(), 1, "the deaf consumer was replaced once");
    assert_eq!(deaf_first.consumers.load(Ordering::SeqCst), 2, "a second consumer joined");

    // Caught up: an idle partition is not stalled, however long it stays idle.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(metrics.actors.stalls.get(), 1, "an idle partition was taken for stalled");
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();

    let seqs: Vec<u64> = log
        .read(topics::PROCESSED, 0, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice::<ProcessedEvent>(&r.payload).unwrap().seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5], "each record processed once, in order");
}
