//! Issue 16 item 3, for real: a gateway answers 503 after its timeout while its append is
//! still under way, the append completes afterwards, and the client's retry of the same
//! request (same `Idempotency-Key`, or the same event ids) counts once.
//!
//! Production roles as processes on Kafka, PostgreSQL and Redis: gateway A has a request
//! timeout (1 s) shorter than its producer's linger (4 s), so every append it starts is
//! acknowledged by Kafka only after it answered 503 — deterministic, with no fault injected
//! into the shared broker. The client retries through gateway B (as behind a load balancer).
//! The test checks that the timed-out attempt really reached the log (each event twice in
//! `player.events.raw`), that the actors dropped the second copies, and that each event is in
//! `player.events.processed` exactly once, by id, and counted once in the player's profile.

mod common;

use common::services::{Role, TestServices};
use common::*;
use gamemetrics::platform::Backends;
use gm_schemas::idempotency::IdempotencyKey;
use gm_schemas::{topics, RawRecord};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use uuid::Uuid;

struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

async fn post(url: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut request = client.post(url).insert_header(("Content-Type", "application/json"));
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    let mut response = request.send_body(body.to_string()).await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let status = response.status().as_u16();
    Reply { status, retry_after, body: response.json::<Value>().await.unwrap_or(Value::Null) }
}

/// How many times each event id is on `topic` (every partition, from the start).
async fn id_counts(backends: &Backends, topic: &str) -> BTreeMap<Uuid, usize> {
    let mut counts = BTreeMap::new();
    let ends = backends.log.end_offsets(topic).await.unwrap();
    for (partition, end) in ends.iter().enumerate() {
        let mut from = 0;
        while from < *end {
            let records = backends.log.read(topic, partition as u32, from, 1000).await.unwrap();
            let Some(last) = records.last() else { break };
            from = last.offset + 1;
            for record in records {
                let id = if topic == topics::RAW {
                    match serde_json::from_slice::<RawRecord>(&record.payload) {
                        Ok(RawRecord::Event(e)) => Some(e.event_id),
                        _ => None,
                    }
                } else {
                    serde_json::from_slice::<Value>(&record.payload)
                        .ok()
                        .and_then(|v| v["event_id"].as_str().and_then(|s| s.parse().ok()))
                };
                if let Some(id) = id {
                    *counts.entry(id).or_default() += 1;
                }
            }
        }
    }
    counts
}

/// Waits until every id of `ids` is on `topic` `times` times; fails on more.
async fn wait_on_topic(backends: &Backends, topic: &str, ids: &BTreeSet<Uuid>, times: usize) {
    eventually(Duration::from_secs(60), || async {
        let counts = id_counts(backends, topic).await;
        let got: BTreeMap<Uuid, usize> = ids.iter().map(|id| (*id, counts.get(id).copied().unwrap_or(0))).collect();
        assert!(got.values().all(|n| *n <= times), "{topic}: an event more than {times} times: {got:?}");
        if got.values().all(|n| *n == times) {
            Ok(())
        } else {
            Err(format!("{topic}: {got:?}"))
        }
    })
    .await
    .unwrap();
}

fn counter(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

/// The 503 of a timed-out ingest request, and what it tells the client.
fn assert_retry_same(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 503, "{what}: {}", reply.body);
    assert_eq!(reply.retry_after.as_deref(), Some("1"), "{what}: Retry-After");
    assert_eq!(reply.body["error"], "timeout", "{what}: {}", reply.body);
    let reason = reply.body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("may be in the log already") && reason.contains("same Idempotency-Key"), "{reason}");
}

#[actix_rt::test]
async fn a_batch_appended_after_its_503_and_retried_counts_once() {
    let services = TestServices::create().await;
    let logs = tempfile::tempdir().unwrap();
    let _show = ShowLogsOnPanic(logs.path().to_path_buf());
    let keys = format!("{GAME}={KEY}");
    let slow = Role::start_with("gateway", &services, &keys, |command| {
        command.env("GM_HTTP__REQUEST_TIMEOUT_MS", "1000").env("GM_KAFKA__PRODUCER__LINGER_MS", "4000");
        services::logged(logs.path(), "gateway-slow")(command);
    });
    let gateway = Role::start_with("gateway", &services, &keys, services::logged(logs.path(), "gateway"));
    let actors = Role::start_with("actors", &services, &keys, services::logged(logs.path(), "actors"));
    let projections = Role::start_with("projections", &services, &keys, services::logged(logs.path(), "projections"));
    for role in [&slow, &gateway, &actors, &projections] {
        role.wait_ready().await;
    }
    let backends = Backends::open(&services.config(logs.path())).await.unwrap();
    let (slow_url, url) = (slow.url(), gateway.url());
    let auth = format!("Bearer {KEY}");
    let now = chrono::Utc::now();
    let ts = now.to_rfc3339();

    // Warm-up: gateway A's producer learns the topic's partitions (its first append may spend
    // its whole second on that, and then nothing would be in flight when it answers).
    let warm_up = json!({"events": [{"type": "session_start", "player_id": "warm-up", "client_ts": ts,
                                      "event_id": Uuid::now_v7()}]});
    let reply = post(&format!("{slow_url}/v1/events"), &[("Authorization", &auth)], &warm_up).await;
    assert_retry_same(&reply, "warm-up");
    let warm_id: Uuid = warm_up["events"][0]["event_id"].as_str().unwrap().parse().unwrap();
    wait_on_topic(&backends, topics::RAW, &[warm_id].into(), 1).await;

    // 1. Events without ids, with an Idempotency-Key.
    let key = "retry-after-timeout-0001";
    let keyed = json!({"sent_at": ts, "events": [
        {"type": "session_start", "player_id": "keyed", "session_id": "s-1", "client_ts": ts},
        {"type": "purchase", "player_id": "keyed", "session_id": "s-1", "client_ts": ts,
         "properties": {"amount_minor": 499, "currency": "USD", "item_id": "gems"}},
        {"type": "design", "player_id": "keyed", "session_id": "s-1", "client_ts": ts, "properties": {"event_id": "tap"}},
        {"type": "design", "player_id": "keyed", "session_id": "s-1", "client_ts": ts, "properties": {"event_id": "tap"}},
    ]});
    let headers = [("Authorization", auth.as_str()), ("Idempotency-Key", key)];
    let reply = post(&format!("{slow_url}/v1/events"), &headers, &keyed).await;
    assert_retry_same(&reply, "keyed batch");
    // The ids the events get: derived from the key, so known before any answer gave them.
    let k = IdempotencyKey::parse(key).unwrap();
    let keyed_ids: BTreeSet<Uuid> = keyed["events"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, e)| k.event_id(GAME, i, e.as_object().unwrap()))
        .collect();
    assert_eq!(keyed_ids.len(), 4, "two identical events of one batch are two events");
    // The append of the request answered 503 completes: the events are in the log.
    wait_on_topic(&backends, topics::RAW, &keyed_ids, 1).await;
    let retry = post(&format!("{url}/v1/events"), &headers, &keyed).await;
    assert_eq!(retry.status, 202, "{}", retry.body);
    let answered: BTreeSet<Uuid> = retry.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(answered, keyed_ids, "the retry's events carry the ids of the first attempt");

    // 2. Events with their own ids, no key.
    let own: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let with_ids = json!({"events": [
        {"type": "session_start", "player_id": "with-ids", "client_ts": ts, "event_id": own[0]},
        {"type": "progression", "player_id": "with-ids", "client_ts": ts, "event_id": own[1],
         "properties": {"status": "start", "level_id": "level-2"}},
        {"type": "progression", "player_id": "with-ids", "client_ts": ts, "event_id": own[2],
         "properties": {"status": "complete", "level_id": "level-2", "score": 30}},
    ]});
    let reply = post(&format!("{slow_url}/v1/events"), &[("Authorization", &auth)], &with_ids).await;
    assert_retry_same(&reply, "batch with ids");
    let own_ids: BTreeSet<Uuid> = own.iter().copied().collect();
    wait_on_topic(&backends, topics::RAW, &own_ids, 1).await;
    let retry = post(&format!("{url}/v1/events"), &[("Authorization", &auth)], &with_ids).await;
    assert_eq!(retry.status, 202, "{}", retry.body);

    // 3. The previous platform's route, with a key (one event per request).
    let legacy = json!({"event_type": "level_up", "player_id": "legacy", "timestamp": now.timestamp(),
                        "data": {"level": 3, "xp": 20}});
    let headers = [("X-API-Key", KEY), ("Idempotency-Key", "legacy-0001")];
    let reply = post(&format!("{slow_url}/api/v1/events"), &headers, &legacy).await;
    assert_retry_same(&reply, "legacy event");
    let retry = post(&format!("{url}/api/v1/events"), &headers, &legacy).await;
    assert_eq!((retry.status, retry.body["status"].as_str()), (200, Some("success")), "{}", retry.body);
    let legacy_id: Uuid = retry.body["event_id"].as_str().unwrap().parse().unwrap();
    wait_on_topic(&backends, topics::RAW, &[legacy_id].into(), 2).await;

    // Every event twice in the raw log (the timed-out append and the retry), once processed.
    let all: BTreeSet<Uuid> = keyed_ids.iter().chain(&own_ids).copied().chain([legacy_id]).collect();
    wait_on_topic(&backends, topics::RAW, &all, 2).await;
    eventually(Duration::from_secs(90), || async {
        let dropped = counter(&services::scrape(&actors.url()).await, "gamemetrics_actor_duplicates_dropped_total");
        if dropped >= all.len() as f64 {
            Ok(())
        } else {
            Err(format!("actors dropped {dropped} duplicates, {} expected", all.len()))
        }
    })
    .await
    .unwrap();
    wait_on_topic(&backends, topics::PROCESSED, &all, 1).await;
    let dropped = counter(&services::scrape(&actors.url()).await, "gamemetrics_actor_duplicates_dropped_total");
    assert_eq!(dropped, all.len() as f64, "the second copy of each event, and nothing else, dropped");

    // And the read models count each event once.
    // (Sessions are left out: how events without a session_start make sessions is not this
    // test's subject.)
    let expect = [("keyed", 4, 0, 0), ("with-ids", 3, 1, 30), ("legacy", 1, 1, 20)];
    for (player, events, levels, xp) in expect {
        eventually(Duration::from_secs(60), || {
            let url = url.clone();
            async move {
                let (status, p) = get_json(&format!("{url}/v1/players/{GAME}/{player}")).await;
                let got = (p["events"].as_u64(), p["levels_completed"].as_u64(), p["xp"].as_i64());
                if status == 200 && got == (Some(events), Some(levels), Some(xp)) {
                    Ok(())
                } else {
                    Err(format!("{player}: HTTP {status} {p}"))
                }
            }
        })
        .await
        .unwrap();
    }
    let (_, profile) = get_json(&format!("{url}/v1/players/{GAME}/keyed")).await;
    assert_eq!(profile["purchases"], 1, "{profile}");
    let today = now.date_naive();
    let (_, revenue) = get_json(&format!("{url}/v1/analytics/{GAME}/revenue?from={today}&to={today}")).await;
    let usd = revenue["days"].as_array().unwrap().iter().find(|d| d["currency"] == "USD").cloned();
    assert_eq!(usd.map(|d| (d["revenue_minor"].clone(), d["purchases"].clone())), Some((json!(499), json!(1))));

    drop((slow, gateway, actors, projections));
    backends.close().await;
    services.drop_database().await;
}
