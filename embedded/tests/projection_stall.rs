//! A projection worker whose consumer stops delivering a partition that still has committed
//! records to apply (a seek that never applies, a fetcher that did not resume after a broker
//! restart) gives up on that consumer with `WorkerError::Stalled`, so that its supervisor
//! starts it again with a fresh one; a worker that is merely caught up does not. Runs the
//! real worker on the embedded log and store, with a consumer wrapper that drops records.

use async_trait::async_trait;
use gm_embedded::{SqliteLog, SqliteStore};
use gm_ports::{EventLog, LogConsumer, LogError, LogProducer, NewRecord, Polled, Position, Record, TopicSpec};
use gm_projections::worker::{ProjectionWorker, WorkerError};
use gm_projections::ProjectionName;
use gm_schemas::topics;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The embedded log, except that its consumers never deliver a record when `deaf`.
struct DeafLog {
    inner: SqliteLog,
    deaf: bool,
}

struct DeafConsumer(tokio::sync::Mutex<Box<dyn LogConsumer>>);

#[async_trait]
impl LogConsumer for DeafConsumer {
    async fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Polled, LogError> {
        match self.0.get_mut().poll(max_records, timeout).await? {
            Polled::Records(_) => Ok(Polled::Idle),
            other => Ok(other),
        }
    }
    fn seek(&mut self, partition: u32, offset: u64) {
        self.0.get_mut().seek(partition, offset)
    }
    async fn committed(&self, partition: u32) -> Result<Option<u64>, LogError> {
        self.0.lock().await.committed(partition).await
    }
    async fn commit(&mut self, offsets: &[Position]) -> Result<(), LogError> {
        self.0.get_mut().commit(offsets).await
    }
    async fn commit_with_outputs_to(
        &mut self,
        outputs: Vec<(String, Vec<NewRecord>)>,
        offsets: &[Position],
    ) -> Result<(), LogError> {
        self.0.get_mut().commit_with_outputs_to(outputs, offsets).await
    }
}

#[async_trait]
impl EventLog for DeafLog {
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), LogError> {
        self.inner.ensure_topics(topics).await
    }
    fn producer(&self) -> Arc<dyn LogProducer> {
        self.inner.producer()
    }
    async fn consumer(&self, group: &str, topic: &str) -> Result<Box<dyn LogConsumer>, LogError> {
        let consumer = self.inner.consumer(group, topic).await?;
        Ok(if self.deaf { Box::new(DeafConsumer(tokio::sync::Mutex::new(consumer))) } else { consumer })
    }
    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, LogError> {
        self.inner.end_offsets(topic).await
    }
    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<Record>, LogError> {
        self.inner.read(topic, partition, from, max).await
    }
}

/// A processed score event of player p1, as the actors emit it.
fn processed(seq: u64) -> NewRecord {
    let event = serde_json::json!({
        "game_id": "space-race", "player_id": "p1", "seq": seq,
        "event_id": uuid::Uuid::new_v4(), "timestamp": "2024-05-01T12:00:00Z", "received_at": "2024-05-01T12:00:00Z",
        "body": {"kind": "event", "event": {"type": "score", "properties": {"board": "main", "value": 1}},
                 "derived": {"session_id": null, "session_started": false, "closed_session": null, "first_seen": seq == 1}}
    });
    NewRecord::new("space-race:p1", serde_json::to_vec(&event).unwrap())
}

async fn setup(dir: &std::path::Path, deaf: bool) -> (Arc<DeafLog>, SqliteStore) {
    let specs: Vec<TopicSpec> = [topics::PROCESSED]
        .iter()
        .map(|t| TopicSpec { name: t.to_string(), partitions: 1, compacted: false })
        .collect();
    let inner = SqliteLog::open(&dir.join("log.db"), &specs).await.unwrap();
    let store = SqliteStore::open(&dir.join("store.db")).await.unwrap();
    (Arc::new(DeafLog { inner, deaf }), store)
}

async fn run_for(log: Arc<DeafLog>, store: SqliteStore, limit: Duration) -> Option<Result<(), WorkerError>> {
    let worker = ProjectionWorker::new(ProjectionName::PlayerProfiles, log, Arc::new(store), Default::default())
        .with_stall_after(Duration::from_secs(2));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(worker.run(shutdown));
    let started = Instant::now();
    while started.elapsed() < limit {
        if task.is_finished() {
            return Some(task.await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(true).unwrap();
    let _ = task.await;
    None
}

#[tokio::test]
async fn a_consumer_that_delivers_nothing_while_records_wait_is_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let (log, store) = setup(dir.path(), true).await;
    log.producer().append(topics::PROCESSED, (1..=3).map(processed).collect()).await.unwrap();
    let outcome = run_for(log, store, Duration::from_secs(15)).await;
    assert!(
        matches!(outcome, Some(Err(WorkerError::Stalled { partition: 0, lag: 3, .. }))),
        "expected the worker to give up on its consumer, got {outcome:?}"
    );
}

#[tokio::test]
async fn a_worker_that_is_caught_up_is_not_stalled() {
    let dir = tempfile::tempdir().unwrap();
    let (log, store) = setup(dir.path(), false).await;
    log.producer().append(topics::PROCESSED, (1..=3).map(processed).collect()).await.unwrap();
    // Well past the 2 s stall limit: it applies the three events, then stays idle.
    let outcome = run_for(log.clone(), store.clone(), Duration::from_secs(6)).await;
    assert!(outcome.is_none(), "the worker stopped: {outcome:?}");
    use gm_projections::ReadModelStore;
    let checkpoint = store.checkpoint(gm_projections::Target::Live, ProjectionName::PlayerProfiles, 0).await.unwrap();
    assert_eq!(checkpoint, Some(3), "the three events were applied");
}
