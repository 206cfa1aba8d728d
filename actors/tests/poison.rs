//! A record whose processing fails (here a panic, injected with the fail point
//! `actors::process_record` for keys ending in `:poison`) is tried `max_attempts` times, the
//! partition rebuilt from its snapshot between tries, then dead-lettered to `system.dlq` with
//! the reason and the attempts in headers; the records after it are processed, so the
//! partition never stalls, and a restart replays past it without dead-lettering it again.
//! Runs the real actors runtime on the embedded log and store.

mod common;

use common::score;
use gm_actors::shard::{dlq_headers, POISON_SUFFIX};
use gm_actors::{ActorsConfig, ActorsRuntime};
use gm_embedded::SqliteStore;
use gm_ports::{EventLog, NewRecord};
use gm_schemas::{topics, ProcessedEvent};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[actix::test]
async fn a_record_failing_every_attempt_is_dead_lettered_after_max_attempts_and_the_partition_moves_on() {
    let scenario = fail::FailScenario::setup();
    fail::cfg("actors::process_record", "panic").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let log = common::one_partition_log(dir.path()).await;
    let store = SqliteStore::open(&dir.path().join("store.db")).await.unwrap();
    let poison_key = format!("space-race:p2{POISON_SUFFIX}");
    // Offsets 0, 2, 3: p1; offset 1: the poison record.
    let poison = score("p2", 2);
    let records = vec![
        NewRecord::new("space-race:p1", score("p1", 1)),
        NewRecord::new(poison_key.clone(), poison.clone()),
        NewRecord::new("space-race:p1", score("p1", 3)),
        NewRecord::new("space-race:p1", score("p1", 4)),
    ];
    log.producer().append(topics::RAW, records).await.unwrap();

    let config = ActorsConfig { max_attempts: 3, ..ActorsConfig::default() };
    let start = |store: &SqliteStore, metrics: &gm_telemetry::Metrics| {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let runtime =
            ActorsRuntime::new(Arc::new(log.clone()), Arc::new(store.clone()), config.clone(), metrics.clone());
        (stop, actix::spawn(runtime.run(shutdown)))
    };
    let metrics = gm_telemetry::Metrics::default();
    let (stop, task) = start(&store, &metrics);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let processed = log.read(topics::PROCESSED, 0, 0, 100).await.unwrap().len();
        let dead = log.read(topics::DLQ, 0, 0, 100).await.unwrap().len();
        if processed >= 3 && dead >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "stalled: {processed} processed, {dead} dead-lettered after 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();

    // p1's three events, numbered without a gap, as if the poison record had never been.
    let processed: Vec<ProcessedEvent> = log
        .read(topics::PROCESSED, 0, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .collect();
    let seqs: Vec<(String, u64)> = processed.iter().map(|e| (e.player_id.to_string(), e.seq)).collect();
    assert_eq!(seqs, vec![("p1".to_string(), 1), ("p1".to_string(), 2), ("p1".to_string(), 3)]);

    let dlq = log.read(topics::DLQ, 0, 0, 100).await.unwrap();
    assert_eq!(dlq.len(), 1, "dead-lettered once");
    let dead = &dlq[0];
    assert_eq!(dead.key, poison_key, "the original key");
    assert_eq!(dead.payload, poison, "the original payload");
    assert_eq!(dead.header(dlq_headers::ATTEMPTS), Some("3"));
    assert_eq!(dead.header(dlq_headers::SOURCE_OFFSET), Some("1"));
    let reason = dead.header(dlq_headers::ERROR).unwrap();
    assert!(reason.contains("processing panicked") && reason.contains("actors::process_record"), "{reason}");
    assert_eq!(metrics.actors.batch_failures.get(), 3, "one failure per attempt");

    let consumer = log.consumer(gm_actors::runtime::GROUP, topics::RAW).await.unwrap();
    assert_eq!(consumer.committed(0).await.unwrap(), Some(4), "committed past everything");
    drop(consumer);

    // A restart that lost its snapshots replays the partition from offset 0: the poison
    // record fails again below the committed offset and is skipped; p1's state is rebuilt
    // and nothing is emitted or dead-lettered twice.
    let empty_store = SqliteStore::open(&dir.path().join("store-lost.db")).await.unwrap();
    let (stop, task) = start(&empty_store, &gm_telemetry::Metrics::default());
    log.producer().append(topics::RAW, vec![NewRecord::new("space-race:p1", score("p1", 5))]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.read(topics::PROCESSED, 0, 0, 100).await.unwrap().len() < 4 {
        assert!(Instant::now() < deadline, "the restarted runtime did not process offset 4");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let last: ProcessedEvent =
        serde_json::from_slice(&log.read(topics::PROCESSED, 0, 3, 1).await.unwrap()[0].payload).unwrap();
    assert_eq!(last.seq, 4);
    assert_eq!(log.read(topics::PROCESSED, 0, 0, 100).await.unwrap().len(), 4);
    assert_eq!(log.read(topics::DLQ, 0, 0, 100).await.unwrap().len(), 1);
    scenario.teardown();
}
