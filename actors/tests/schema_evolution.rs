//! Schema evolution end to end through the actors: a log holding `purchase` v1 and v2 records
//! of the same logical events replays to the same state as an all-v1 log, and snapshots of
//! either version load and continue.

use actix::prelude::*;
use chrono::{DateTime, Utc};
use gm_actors::player::SNAPSHOT_VERSION;
use gm_actors::shard::{GetState, Hydrate, Process, Shard};
use gm_actors::PlayerState;
use gm_embedded::SqliteLog;
use gm_ports::{EventLog, NewRecord, Record, TopicSpec};
use gm_schemas::validate::{decode_batch, Limits};
use gm_schemas::{topics, GameId, RawRecord};
use serde_json::{json, Value};

const KEY: &str = "space-race:p1";

fn received_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z").unwrap().with_timezone(&Utc)
}

fn event(n: u32, ty: &str, props: Value) -> Value {
    json!({
        "event_id": format!("00000000-0000-7000-8000-{n:012}"),
        "player_id": "p1",
        "client_ts": format!("2024-05-01T11:{n:02}:00Z"),
        "type": ty,
        "properties": props,
    })
}

/// A purchase in the v1 or the v2 wire form.
fn purchase(v2: bool, n: u32, amount: i64, currency: &str, item: &str, quantity: u32) -> Value {
    if v2 {
        let props = json!({
            "price": {"amount_minor": amount, "currency": currency},
            "item_id": item,
            "quantity": quantity,
            "store": "app_store",
        });
        let mut e = event(n, "purchase", props);
        e["schema_version"] = json!(2);
        e
    } else {
        event(
            n,
            "purchase",
            json!({"amount_minor": amount, "currency": currency, "item_id": item, "quantity": quantity}),
        )
    }
}

/// The logical events of one player; purchases in the v1 or the v2 wire form.
fn public_events(v2: bool) -> Vec<Value> {
    vec![
        event(1, "session_start", json!({})),
        purchase(v2, 2, 499, "USD", "gems-100", 2),
        event(3, "progression", json!({"status": "complete", "level_id": "w1", "score": 10})),
        purchase(v2, 4, 199, "EUR", "sword", 1),
        event(5, "item_use", json!({"item_id": "gems-100", "quantity": 1})),
        // A client retry of the first purchase: deduplicated in either form.
        purchase(v2, 2, 499, "USD", "gems-100", 2),
        purchase(v2, 6, 99, "USD", "gems-100", 1),
        event(7, "session_end", json!({})),
    ]
}

/// The raw records the gateway would append for `events` (validated, then serialised).
fn raw_payloads(events: Vec<Value>) -> Vec<Vec<u8>> {
    let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
    let game = GameId::parse("space-race").unwrap();
    decode_batch(&body, &game, received_at(), &Limits::default())
        .unwrap()
        .into_iter()
        .map(|r| serde_json::to_vec(&RawRecord::Event(r.expect("valid event"))).unwrap())
        .collect()
}

/// A fresh embedded log holding `payloads` on one partition of `player.events.raw`; returns
/// its records as read back.
async fn log_with(dir: &tempfile::TempDir, name: &str, payloads: Vec<Vec<u8>>) -> Vec<Record> {
    let spec = TopicSpec { name: topics::RAW.into(), partitions: 1, compacted: false };
    let log = SqliteLog::open(&dir.path().join(name), &[spec]).await.unwrap();
    let records = payloads.into_iter().map(|payload| NewRecord::new(KEY, payload)).collect();
    log.producer().append(topics::RAW, records).await.unwrap();
    let read = log.read(topics::RAW, 0, 0, 1000).await.unwrap();
    log.close().await;
    read
}

/// Replays `records` from `start` through a shard, after hydrating `snapshot`.
async fn replay(records: &[Record], snapshot: Option<Vec<u8>>, start: u64) -> PlayerState {
    let shard = Shard::new(0, start, 0).start();
    let loaded = snapshot.map(|s| vec![(KEY.to_string(), s)]).unwrap_or_default();
    shard.send(Hydrate { requested: vec![KEY.into()], loaded }).await.unwrap();
    let batch = records.iter().filter(|r| r.offset >= start).cloned().collect();
    let processed = shard.send(Process(batch)).await.unwrap();
    assert_eq!(processed.unreadable, 0);
    shard.send(GetState(KEY.into())).await.unwrap().unwrap()
}

/// v1 everywhere except every other record, taken from the v2 form (so purchases of both forms).
fn mixed_payloads() -> Vec<Vec<u8>> {
    let v1 = raw_payloads(public_events(false));
    let v2 = raw_payloads(public_events(true));
    v1.into_iter().zip(v2).enumerate().map(|(i, (a, b))| if i % 4 == 3 { b } else { a }).collect()
}

#[actix::test]
async fn a_log_of_v1_and_v2_purchases_replays_to_the_same_state_as_an_all_v1_log() {
    let dir = tempfile::tempdir().unwrap();
    let all_v1 = log_with(&dir, "v1.db", raw_payloads(public_events(false))).await;
    let mixed = log_with(&dir, "mixed.db", mixed_payloads()).await;

    // The mixed log keeps what was ingested: both stored forms of `purchase`.
    let forms: Vec<(u64, bool)> = mixed
        .iter()
        .filter_map(|r| {
            let v: Value = serde_json::from_slice(&r.payload).unwrap();
            let version = v["schema_version"].as_u64().unwrap();
            (v["type"] == "purchase").then(|| (version, v["properties"].get("price").is_some()))
        })
        .collect();
    assert!(forms.contains(&(1, false)) && forms.contains(&(2, true)), "{forms:?}");

    let expected = replay(&all_v1, None, 0).await;
    assert_eq!(expected.purchases, 3, "the retried purchase is counted once");
    assert_eq!(expected.revenue_minor.get("USD"), Some(&598));
    assert_eq!(expected.inventory.get("gems-100"), Some(&2));
    assert_eq!(replay(&mixed, None, 0).await, expected);
    let all_v2 = log_with(&dir, "v2.db", raw_payloads(public_events(true))).await;
    assert_eq!(replay(&all_v2, None, 0).await, expected);
}

#[actix::test]
async fn a_v1_snapshot_without_a_version_loads_and_continues_to_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let mixed = log_with(&dir, "mixed.db", mixed_payloads()).await;
    let expected = replay(&mixed, None, 0).await;
    assert_eq!(expected.version, SNAPSHOT_VERSION);

    // The state after the first four records, as a version 1 snapshot (no `version` field).
    let halfway = replay(&mixed[..4], None, 0).await;
    let mut v1: Value = serde_json::to_value(&halfway).unwrap();
    v1.as_object_mut().unwrap().remove("version");
    let v1 = serde_json::to_vec(&v1).unwrap();
    assert_eq!(PlayerState::from_snapshot(&v1).unwrap().version, SNAPSHOT_VERSION);
    assert_eq!(replay(&mixed, Some(v1), 4).await, expected);

    // A current snapshot continues the same way.
    assert_eq!(replay(&mixed, Some(halfway.to_snapshot().unwrap()), 4).await, expected);

    // A snapshot from a newer build is refused (the player is rebuilt from the log instead).
    let mut future: Value = serde_json::to_value(&halfway).unwrap();
    future["version"] = json!(SNAPSHOT_VERSION + 1);
    assert!(PlayerState::from_snapshot(&serde_json::to_vec(&future).unwrap()).is_err());
}
