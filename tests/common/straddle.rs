//! A client that sends one player's events in several requests at the same moment, as a game
//! with several requests in flight does (issue 14: the simulator keeps each player on one
//! lane, so a new player's key was never created by two requests at once).
//!
//! The plan is sent in waves of `in_flight` concurrent batches, in time order, a wave after
//! the previous one was answered. Inside a wave each player's events stay in one batch, in
//! order, and a copy of the player's first event of the wave (same `event_id`) also goes at
//! the front of another batch of the wave: that batch and the player's own reach the gateway
//! together, both for a player never seen before, and whichever is appended first, the
//! player's events are processed in their order (the copy is the same first event; the
//! later one is dropped as a duplicate). So the read models must match counts computed from
//! the plan, whatever the interleaving.

use gamemetrics::simulate::SentEvent;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct StraddleReport {
    /// Every event acknowledged `accepted` (copies included).
    pub accepted: Vec<SentEvent>,
    /// Refusals by reason code (`erased`, …), with one example reason each.
    pub refused: BTreeMap<String, (u64, String)>,
    /// Answers other than 202/400, by status (a 503 is retried, as a client would).
    pub retried: BTreeMap<u16, u64>,
    /// Events of batches never answered 202/400 within the retry time.
    pub unsent: u64,
    pub requests: u64,
    /// Players whose events were in two concurrent requests.
    pub straddling_players: usize,
}

impl StraddleReport {
    pub fn refused_total(&self) -> u64 {
        self.refused.values().map(|(n, _)| n).sum()
    }
}

fn wire(e: &SentEvent) -> Value {
    let mut v = e.body.clone();
    v["event_id"] = json!(e.event_id);
    v["player_id"] = json!(e.player_id);
    v["session_id"] = json!(e.session_id);
    v["client_ts"] = json!(e.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    v
}

/// The batches of one wave: players dealt round-robin to `in_flight` batches in order of
/// their first event, each player's events in order, plus the copies (see the module).
fn wave_batches(wave: &[SentEvent], in_flight: usize) -> (Vec<Vec<SentEvent>>, usize) {
    let mut by_player: Vec<(String, Vec<SentEvent>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for e in wave {
        let i = *index.entry(e.player_id.as_str()).or_insert_with(|| {
            by_player.push((e.player_id.clone(), Vec::new()));
            by_player.len() - 1
        });
        by_player[i].1.push(e.clone());
    }
    let mut batches: Vec<Vec<SentEvent>> = vec![Vec::new(); in_flight];
    let mut copies: Vec<Vec<SentEvent>> = vec![Vec::new(); in_flight];
    for (n, (_, events)) in by_player.iter().enumerate() {
        let own = n % in_flight;
        batches[own].extend(events.iter().cloned());
        if in_flight > 1 {
            copies[(own + 1 + n / in_flight % (in_flight - 1)) % in_flight].push(events[0].clone());
        }
    }
    let straddling = if in_flight > 1 { by_player.len() } else { 0 };
    let batches = batches
        .into_iter()
        .zip(copies)
        .map(|(own, mut front)| {
            front.extend(own);
            front
        })
        .filter(|b| !b.is_empty())
        .collect();
    (batches, straddling)
}

async fn send_batch(client: &awc::Client, url: &str, key: &str, batch: &[SentEvent]) -> Result<Value, u16> {
    let body = serde_json::to_vec(&json!({"events": batch.iter().map(wire).collect::<Vec<_>>()})).unwrap();
    let response = client
        .post(format!("{url}/v1/events"))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .insert_header(("Content-Type", "application/json"))
        .send_body(body)
        .await;
    match response {
        Ok(mut r) if r.status().as_u16() == 202 || r.status().as_u16() == 400 => {
            Ok(r.json::<Value>().limit(16 * 1024 * 1024).await.unwrap_or(Value::Null))
        }
        Ok(r) => Err(r.status().as_u16()),
        Err(_) => Err(0),
    }
}

/// Sends `plan` (sorted by time here) in waves of `in_flight` concurrent batches of about
/// `batch_size` events each, to `urls` in turn (several gateways), with `key`.
pub async fn send(
    urls: &[String],
    key: &str,
    mut plan: Vec<SentEvent>,
    batch_size: usize,
    in_flight: usize,
) -> StraddleReport {
    plan.sort_by_key(|e| e.timestamp);
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut report = StraddleReport::default();
    let mut next_url = 0;
    for wave in plan.chunks(batch_size * in_flight) {
        let (batches, straddling) = wave_batches(wave, in_flight);
        report.straddling_players += straddling;
        let mut pending: Vec<_> = Vec::new();
        for batch in batches {
            let url = urls[next_url % urls.len()].clone();
            next_url += 1;
            let client = client.clone();
            let key = key.to_string();
            pending.push(async move {
                let give_up = Instant::now() + Duration::from_secs(60);
                let mut statuses = Vec::new();
                loop {
                    match send_batch(&client, &url, &key, &batch).await {
                        Ok(answer) => return (batch, Some(answer), statuses),
                        Err(status) => {
                            statuses.push(status);
                            if Instant::now() >= give_up {
                                return (batch, None, statuses);
                            }
                            actix_rt::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
        }
        for (batch, answer, statuses) in futures::future::join_all(pending).await {
            report.requests += 1 + statuses.len() as u64;
            for s in statuses {
                *report.retried.entry(s).or_default() += 1;
            }
            let Some(answer) = answer else {
                report.unsent += batch.len() as u64;
                continue;
            };
            let results = answer["results"].as_array().cloned().unwrap_or_default();
            assert_eq!(results.len(), batch.len(), "a result per event: {answer}");
            for (event, result) in batch.into_iter().zip(results) {
                if result["status"] == "accepted" {
                    report.accepted.push(event);
                } else {
                    let code = result["code"].as_str().unwrap_or("?").to_string();
                    let entry = report.refused.entry(code).or_insert((0, result["reason"].to_string()));
                    entry.0 += 1;
                }
            }
        }
    }
    report
}

/// Sends `plan` in batches of `batch_size` events WITHOUT event ids, each batch with an
/// `Idempotency-Key` of its own and sent twice at the same moment, once to each of the first
/// two `urls` (a client that resends after a lost answer, to another gateway). Both answers
/// must give the same ids (derived from the key); the events are reported once, with those
/// ids, so that the read models and the processed topic can be compared with the plan.
pub async fn send_keyed_twice(
    urls: &[String],
    key: &str,
    mut plan: Vec<SentEvent>,
    batch_size: usize,
) -> StraddleReport {
    plan.sort_by_key(|e| e.timestamp);
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut report = StraddleReport::default();
    for batch in plan.chunks(batch_size) {
        let idempotency_key = uuid::Uuid::new_v4().to_string();
        let events: Vec<Value> = batch
            .iter()
            .map(|e| {
                let mut v = wire(e);
                v.as_object_mut().unwrap().remove("event_id");
                v
            })
            .collect();
        let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
        let send = |url: String| {
            let (client, body, idempotency_key) = (client.clone(), body.clone(), idempotency_key.clone());
            let key = key.to_string();
            async move {
                let give_up = Instant::now() + Duration::from_secs(60);
                loop {
                    let response = client
                        .post(format!("{url}/v1/events"))
                        .insert_header(("Authorization", format!("Bearer {key}")))
                        .insert_header(("Content-Type", "application/json"))
                        .insert_header(("Idempotency-Key", idempotency_key.clone()))
                        .send_body(body.clone())
                        .await;
                    match response {
                        Ok(mut r) if r.status().as_u16() == 202 => {
                            return r.json::<Value>().limit(16 * 1024 * 1024).await.unwrap_or(Value::Null)
                        }
                        other => {
                            let status = other.map(|r| r.status().as_u16()).unwrap_or(0);
                            assert!(Instant::now() < give_up, "a keyed batch not accepted within 60 s: {status}");
                            actix_rt::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        };
        let (first, second) = futures::join!(send(urls[0].clone()), send(urls[1 % urls.len()].clone()));
        report.requests += 2;
        let ids = |answer: &Value| -> Vec<String> {
            answer["results"]
                .as_array()
                .map(|r| r.iter().map(|x| x["event_id"].to_string()).collect())
                .unwrap_or_default()
        };
        assert_eq!(ids(&first).len(), batch.len(), "a result per event: {first}");
        assert_eq!(ids(&first), ids(&second), "the same key gives the same ids on either gateway");
        for (event, result) in batch.iter().zip(first["results"].as_array().unwrap()) {
            assert_eq!(result["status"], "accepted", "{result}");
            let mut event = event.clone();
            event.event_id = result["event_id"].as_str().and_then(|s| s.parse().ok()).expect("an accepted event's id");
            report.accepted.push(event);
        }
    }
    report
}
