//! The snapshot store goes back in time under a running actors runtime (a database restored
//! from a backup, a failover that lost its last commits). Snapshots the runtime believes
//! saved are gone, so its next save must be refused (the watermark moved from elsewhere) and
//! the partition recovered from what the store really holds; otherwise a later restart loads
//! a player's stale snapshot under a newer watermark and derives events a second time (here:
//! a session closed twice). Runs the real runtime on the embedded log.

mod common;

use async_trait::async_trait;
use gm_actors::{ActorsConfig, ActorsRuntime};
use gm_embedded::SqliteLog;
use gm_ports::{EventLog, NewRecord, SnapshotStore, StoreError};
use gm_schemas::{topics, ProcessedBody, ProcessedEvent};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Snapshots and watermarks in memory, with the fenced save of the real stores, and the
/// ability to be put back to an earlier copy of itself.
#[derive(Clone, Default)]
struct Contents {
    snapshots: HashMap<String, Vec<u8>>,
    watermarks: HashMap<u32, u64>,
}

#[derive(Clone, Default)]
struct RewindableStore(Arc<Mutex<Contents>>);

impl RewindableStore {
    fn backup(&self) -> Contents {
        self.0.lock().unwrap().clone()
    }
    fn restore(&self, contents: Contents) {
        *self.0.lock().unwrap() = contents;
    }
    fn watermark_now(&self) -> Option<u64> {
        self.0.lock().unwrap().watermarks.get(&0).copied()
    }
}

#[async_trait]
impl SnapshotStore for RewindableStore {
    async fn watermark(&self, partition: u32) -> Result<Option<u64>, StoreError> {
        Ok(self.0.lock().unwrap().watermarks.get(&partition).copied())
    }
    async fn load_many(&self, keys: &[String]) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let c = self.0.lock().unwrap();
        Ok(keys.iter().filter_map(|k| c.snapshots.get(k).map(|s| (k.clone(), s.clone()))).collect())
    }
    async fn save(
        &self,
        partition: u32,
        expected: Option<u64>,
        next_offset: u64,
        players: Vec<(String, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let mut c = self.0.lock().unwrap();
        let found = c.watermarks.get(&partition).copied();
        if found != expected {
            return Err(StoreError::Conflict { expected, found });
        }
        c.snapshots.extend(players);
        c.watermarks.insert(partition, next_offset);
        Ok(())
    }
    async fn count(&self) -> Result<u64, StoreError> {
        Ok(self.0.lock().unwrap().snapshots.len() as u64)
    }
}

fn raw(player: &str, session: &str, kind: &str, at: &str) -> NewRecord {
    let properties = if kind == "score" { json!({"board": "main", "value": 1}) } else { json!({}) };
    let event =
        json!({"player_id": player, "session_id": session, "client_ts": at, "type": kind, "properties": properties});
    NewRecord::new(format!("space-race:{player}"), common::raw_payloads(vec![event], at).remove(0))
}

async fn processed(log: &SqliteLog) -> Vec<ProcessedEvent> {
    log.read(topics::PROCESSED, 0, 0, 1_000)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .collect()
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix::test]
async fn a_store_restored_to_an_earlier_point_is_noticed_and_no_session_is_closed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::one_partition_log(dir.path()).await;
    let store = RewindableStore::default();
    // Every batch is snapshotted at once.
    let config = ActorsConfig { snapshot_every_events: 1, ..ActorsConfig::default() };
    let run = |log: &SqliteLog, store: &RewindableStore| {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let runtime = ActorsRuntime::new(
            Arc::new(log.clone()),
            Arc::new(store.clone()),
            config.clone(),
            gm_telemetry::Metrics::default(),
        );
        (stop, actix::spawn(runtime.run(shutdown)))
    };
    let append = |records: Vec<NewRecord>| {
        let log = log.clone();
        async move { log.producer().append(topics::RAW, records).await.unwrap() }
    };
    let (stop, task) = run(&log, &store);

    // Offsets 0, 1: both players open a session. The backup is taken once they are saved.
    append(vec![
        raw("p1", "s1", "session_start", "2024-05-01T12:00:00Z"),
        raw("p2", "t1", "session_start", "2024-05-01T12:00:00Z"),
    ])
    .await;
    wait_until("offsets 0-1 are snapshotted", async || store.watermark_now() == Some(2)).await;
    let backup = store.backup();

    // Offset 2: p1 ends s1; that snapshot is then lost with the restore.
    append(vec![raw("p1", "s1", "session_end", "2024-05-01T12:10:00Z")]).await;
    wait_until("offset 2 is snapshotted", async || store.watermark_now() == Some(3)).await;
    store.restore(backup);

    // Offset 3: only p2 changes, so only p2 is dirty at the next save.
    append(vec![raw("p2", "t1", "score", "2024-05-01T12:11:00Z")]).await;
    wait_until("offset 3 is processed", async || processed(&log).await.len() == 4).await;
    // Whatever happened to the save of offset 3, the store must end up describing offsets
    // 0-3 with p1's session closed: after a clean stop, a new runtime starts from it.
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let (stop, task) = run(&log, &store);

    // Offset 4: p1 starts s2. With a stale p1 (s1 still open) under watermark 4, the new
    // runtime would close s1 a second time here.
    append(vec![raw("p1", "s2", "session_start", "2024-05-01T13:00:00Z")]).await;
    wait_until("offset 4 is processed", async || processed(&log).await.len() == 5).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();

    let events = processed(&log).await;
    let closes: Vec<Value> = events
        .iter()
        .filter_map(|e| match &e.body {
            ProcessedBody::Event { derived, .. } => derived.closed_session.as_ref(),
            _ => None,
        })
        .map(|c| json!({"session": c.session_id.to_string(), "length": c.length_seconds}))
        .collect();
    assert_eq!(closes, vec![json!({"session": "s1", "length": 600})], "each session is closed exactly once");
}
