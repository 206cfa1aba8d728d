//! What the actors' integration tests share: a one-partition embedded log and raw records
//! built through the gateway's own decoder.
#![allow(dead_code)] // each test binary uses a part

use chrono::{DateTime, Utc};
use gm_embedded::SqliteLog;
use gm_ports::TopicSpec;
use gm_schemas::validate::{decode_batch, Limits};
use gm_schemas::{topics, GameId, RawRecord};
use serde_json::{json, Value};
use std::path::Path;

/// `player.events.raw`, `player.events.processed` and `system.dlq`, one partition each.
pub async fn one_partition_log(dir: &Path) -> SqliteLog {
    let specs: Vec<TopicSpec> = [topics::RAW, topics::PROCESSED, topics::DLQ]
        .iter()
        .map(|t| TopicSpec { name: t.to_string(), partitions: 1, compacted: false })
        .collect();
    SqliteLog::open(&dir.join("log.db"), &specs).await.unwrap()
}

/// The raw records (payloads) of `events` (wire JSON) of game `space-race`, received at
/// `received_at`, each with a fresh event id.
pub fn raw_payloads(events: Vec<Value>, received_at: &str) -> Vec<Vec<u8>> {
    let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
    let received_at: DateTime<Utc> = received_at.parse().unwrap();
    decode_batch(&body, &GameId::parse("space-race").unwrap(), received_at, &Limits::default())
        .unwrap()
        .into_iter()
        .map(|e| serde_json::to_vec(&RawRecord::Event(e.unwrap())).unwrap())
        .collect()
}

/// One score event of `player` (board `main`).
pub fn score(player: &str, value: i64) -> Vec<u8> {
    let event = json!({"player_id": player, "client_ts": "2024-05-01T11:59:00Z", "type": "score",
                       "properties": {"board": "main", "value": value}});
    raw_payloads(vec![event], "2024-05-01T12:00:00Z").remove(0)
}
