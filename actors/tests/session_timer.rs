//! The session timer through the real actors runtime on the embedded log and store: a
//! partition that receives nothing more still closes its sessions (the runtime appends ticks
//! to it), a restart between the events and the close (snapshot + replay, players not in
//! memory) closes them the same, and replaying the whole raw partition — ticks included —
//! through a fresh shard emits exactly what the runtime emitted.

mod common;

use actix::prelude::*;
use chrono::{DateTime, SecondsFormat, Utc};
use common::raw_payloads;
use gm_actors::session::SessionPolicy;
use gm_actors::shard::{tick_at, Process, Shard};
use gm_actors::{ActorsConfig, ActorsRuntime, Policy};
use gm_embedded::{SqliteLog, SqliteStore};
use gm_ports::{EventLog, NewRecord, Record};
use gm_schemas::{topics, ProcessedBody, ProcessedEvent};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config() -> ActorsConfig {
    ActorsConfig {
        snapshot_every_events: 1,
        session_tick_every: Duration::from_millis(200),
        policy: Policy {
            session: SessionPolicy { timeout: chrono::Duration::seconds(4), end_grace: chrono::Duration::seconds(1) },
            ..Policy::default()
        },
        ..ActorsConfig::default()
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Three visits of three players, each arriving as a real client sends them: in order; the
/// later events before the session_start; Segment's identify (no session) then the session.
fn events(now: DateTime<Utc>) -> Vec<Value> {
    let at = |s: i64| ts(now - chrono::Duration::seconds(120 - s));
    let score = |p: &str, sid: Option<&str>, s: i64| {
        let mut e =
            json!({"player_id": p, "client_ts": at(s), "type": "score", "properties": {"board": "main", "value": s}});
        if let Some(sid) = sid {
            e["session_id"] = json!(sid);
        }
        e
    };
    let start = |p: &str, sid: &str, s: i64| json!({"player_id": p, "session_id": sid, "client_ts": at(s), "type": "session_start"});
    vec![
        start("a", "sa", 0),
        score("a", Some("sa"), 10),
        score("b", Some("sb"), 30),
        start("b", "sb", 5),
        json!({"player_id": "c", "client_ts": at(0), "type": "profile_update", "properties": {"country": "DE"}}),
        start("c", "sc", 2),
        score("c", None, 40),
    ]
}

async fn processed(log: &SqliteLog) -> Vec<ProcessedEvent> {
    log.read(topics::PROCESSED, 0, 0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .collect()
}

fn timer_closes(events: &[ProcessedEvent]) -> Vec<(String, String, u64)> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            ProcessedBody::Event { derived, .. } if derived.closed_by_timer => {
                let c = derived.closed_session.as_ref()?;
                Some((e.player_id.as_str().to_string(), c.session_id.as_str().to_string(), c.length_seconds))
            }
            _ => None,
        })
        .collect()
}

async fn run_until(log: &SqliteLog, dir: &Path, done: impl Fn(&[ProcessedEvent]) -> bool) -> Vec<ProcessedEvent> {
    let store = SqliteStore::open(&dir.join("store.db")).await.unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let runtime = ActorsRuntime::new(Arc::new(log.clone()), Arc::new(store), config(), Default::default());
    let task = actix::spawn(runtime.run(shutdown));
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = processed(log).await;
        if done(&events) {
            break events;
        }
        assert!(Instant::now() < deadline, "not done after 30 s: {events:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    events
}

#[actix::test]
async fn a_quiet_partition_closes_its_sessions_and_a_restart_and_a_replay_close_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::one_partition_log(dir.path()).await;
    let now = Utc::now();
    let payloads = raw_payloads(events(now), &ts(now));
    let sent = payloads.len();
    let records: Vec<NewRecord> = payloads
        .into_iter()
        .zip(["a", "a", "b", "b", "c", "c", "c"])
        .map(|(p, player)| NewRecord::new(format!("space-race:{player}"), p))
        .collect();
    log.producer().append(topics::RAW, records).await.unwrap();

    // First run: the events, then a stop before the timer's 4 s are over.
    let first = run_until(&log, dir.path(), |e| e.len() >= sent).await;
    assert_eq!(first.len(), sent, "nothing closed yet: {first:#?}");
    let started: BTreeSet<(String, String)> = first
        .iter()
        .filter_map(|e| match &e.body {
            ProcessedBody::Event { derived, .. } if derived.session_started => {
                Some((e.player_id.as_str().to_string(), derived.session_id.as_ref()?.as_str().to_string()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 3, "one session per visit: {started:?}");

    // Second run, from the snapshots: nothing arrives any more, the ticks close all three.
    let all = run_until(&log, dir.path(), |e| timer_closes(e).len() >= 3).await;
    let mut closes = timer_closes(&all);
    closes.sort();
    assert_eq!(
        closes,
        vec![("a".into(), "sa".into(), 10), ("b".into(), "sb".into(), 25), ("c".into(), "sc".into(), 40)],
        "each visit closed once, at its last event, under the client's id"
    );
    let ids: BTreeSet<_> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), all.len(), "nothing emitted twice across the restart");

    // A replay of the raw partition (events and ticks) through a fresh shard emits the same.
    let raw: Vec<Record> = log.read(topics::RAW, 0, 0, 10_000).await.unwrap();
    assert!(raw.iter().any(|r| tick_at(r).is_some()), "the runtime appended ticks");
    let replayed = Shard::new(0, 0, 0).with_policy(config().policy).start().send(Process(raw)).await.unwrap();
    let replayed: Vec<ProcessedEvent> =
        replayed.outputs.iter().map(|o| serde_json::from_slice(&o.payload).unwrap()).collect();
    assert_eq!(replayed, all);
}
