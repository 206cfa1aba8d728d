//! Poison records: a record the actors cannot process goes to `system.dlq` with its reason
//! in headers, in the same log transaction as the consumed offsets, and the records after it
//! are processed (the partition never stalls). Runs the real actors runtime on the embedded
//! log and store.

mod common;

use chrono::DateTime;
use gm_actors::shard::dlq_headers;
use gm_actors::{ActorsConfig, ActorsRuntime};
use gm_embedded::{SqliteLog, SqliteStore};
use gm_ports::{EventLog, NewRecord};
use gm_schemas::topics;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const KEY: &str = "space-race:p1";

fn score_events(n: usize) -> Vec<Vec<u8>> {
    (0..n as i64).map(|i| common::score("p1", i)).collect()
}

/// Starts the actors runtime on `log` and `store`: send `true` to stop it, then await the task.
fn start(
    log: &SqliteLog,
    store: &SqliteStore,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<Result<(), gm_actors::runtime::ActorsError>>) {
    let (stop, shutdown) = watch::channel(false);
    let runtime = ActorsRuntime::new(
        Arc::new(log.clone()),
        Arc::new(store.clone()),
        ActorsConfig::default(),
        gm_telemetry::Metrics::default(),
    );
    (stop, actix::spawn(runtime.run(shutdown)))
}

#[actix::test]
async fn a_poison_record_mid_partition_is_dead_lettered_with_headers_and_the_rest_is_processed() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::one_partition_log(dir.path()).await;
    let store = SqliteStore::open(&dir.path().join("store.db")).await.unwrap();

    // Offsets 0, 1: good; 2: not JSON; 3, 4: good.
    let mut payloads = score_events(4);
    payloads.insert(2, b"{this is not a raw record".to_vec());
    let records = payloads.into_iter().map(|p| NewRecord::new(KEY, p)).collect();
    log.producer().append(topics::RAW, records).await.unwrap();

    let (stop, task) = start(&log, &store);

    let deadline = Instant::now() + Duration::from_secs(20);
    let processed = loop {
        let processed = log.read(topics::PROCESSED, 0, 0, 100).await.unwrap();
        if processed.len() >= 4 || Instant::now() > deadline {
            break processed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();

    assert_eq!(processed.len(), 4, "every good record, including those after the poison one, was processed");
    let dlq = log.read(topics::DLQ, 0, 0, 100).await.unwrap();
    assert_eq!(dlq.len(), 1);
    let dead = &dlq[0];
    assert_eq!(dead.key, KEY);
    assert_eq!(dead.payload, b"{this is not a raw record");
    assert!(dead.header(dlq_headers::ERROR).unwrap().contains("undecodable"), "{:?}", dead.headers);
    assert_eq!(dead.header(dlq_headers::SOURCE_TOPIC), Some(topics::RAW));
    assert_eq!(dead.header(dlq_headers::SOURCE_PARTITION), Some("0"));
    assert_eq!(dead.header(dlq_headers::SOURCE_OFFSET), Some("2"));
    assert_eq!(dead.header(dlq_headers::ATTEMPTS), Some("1"));
    assert!(DateTime::parse_from_rfc3339(dead.header(dlq_headers::FAILED_AT).unwrap()).is_ok());

    // The offsets moved past everything; a restart replays without dead-lettering again.
    let consumer = log.consumer(gm_actors::runtime::GROUP, topics::RAW).await.unwrap();
    assert_eq!(consumer.committed(0).await.unwrap(), Some(5));
    drop(consumer);
    let (stop, task) = start(&log, &store);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(log.read(topics::DLQ, 0, 0, 100).await.unwrap().len(), 1);
    assert_eq!(log.read(topics::PROCESSED, 0, 0, 100).await.unwrap().len(), 4);
}
