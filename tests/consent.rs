//! Consent end to end on the embedded default (issue 16, item 4): alice withdraws consent to
//! analytics and personalisation, plays a day (session, purchase, level completed, a high
//! score, an item used), then gives consent back and plays again; bob plays beside her. Every
//! read model leaves out her day without consent and counts the rest; her recommendations
//! fall back to the popular items, saying why, until personalisation returns.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const DAY1: &str = "2024-04-01";
const DAY2: &str = "2024-04-02";
const DAY3: &str = "2024-04-03";

fn event(player: &str, ts: &str, kind: &str, properties: Value) -> Value {
    let mut e = json!({"type": kind, "player_id": player, "client_ts": ts});
    if !properties.is_null() {
        e["properties"] = properties;
    }
    e
}

fn purchase(player: &str, ts: &str, amount: i64, item: &str) -> Value {
    event(player, ts, "purchase", json!({"amount_minor": amount, "currency": "USD", "item_id": item}))
}

fn consent(player: &str, ts: &str, on: bool) -> Value {
    event(player, ts, "consent_update", json!({"analytics": on, "personalisation": on}))
}

async fn send(base: &str, events: Vec<Value>) {
    let n = events.len() as u64;
    let (status, body) = post_events(base, Some(KEY), serde_json::to_vec(&json!({ "events": events })).unwrap()).await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(n)), "{body}");
}

async fn profile(base: &str, player: &str) -> Value {
    let (status, p) = get_json(&format!("{base}/v1/players/{GAME}/{player}")).await;
    if status == 200 {
        p
    } else {
        Value::Null
    }
}

/// Waits until alice's profile shows `consent` (every event of hers before it is projected:
/// one partition, in order) and bob's shows `bob_events`.
async fn until_projected(base: &str, consent: bool, bob_events: u64) {
    eventually(Duration::from_secs(60), || async {
        let (a, b) = (profile(base, "alice").await, profile(base, "bob").await);
        let seen = (a["consent_analytics"].as_bool(), a["consent_personalisation"].as_bool(), b["events"].as_u64());
        if seen == (Some(consent), Some(consent), Some(bob_events)) {
            Ok(())
        } else {
            Err(format!("alice {a}, bob {b}"))
        }
    })
    .await
    .unwrap();
}

async fn recommendations(base: &str, player: &str) -> Value {
    let (status, r) = get_json(&format!("{base}/v1/players/{GAME}/{player}/recommendations?limit=10")).await;
    assert_eq!(status, 200, "{r}");
    r
}

fn reasons(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|i| i["reason"]["kind"].as_str().unwrap().to_string()).collect()
}

#[actix_web::test]
async fn consent_withdrawn_keeps_later_events_out_of_every_read_model_until_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let base = app.url();
    let t = |day: &str, time: &str| format!("{day}T{time}Z");

    // Day 1: both play; alice and bob own items (co-occurrence for recommendations).
    send(
        &base,
        vec![
            event("alice", &t(DAY1, "09:00:00"), "session_start", Value::Null),
            purchase("alice", &t(DAY1, "09:01:00"), 500, "sword"),
            event("alice", &t(DAY1, "09:02:00"), "progression", json!({"status": "start", "level_id": "level-1"})),
            event("alice", &t(DAY1, "09:03:00"), "score", json!({"board": "main", "value": 100})),
            purchase("bob", &t(DAY1, "10:00:00"), 200, "sword"),
            purchase("bob", &t(DAY1, "10:01:00"), 200, "shield"),
            event("carol", &t(DAY1, "11:00:00"), "item_use", json!({"item_id": "shield", "quantity": 1})),
        ],
    )
    .await;
    send(&base, vec![consent("alice", &t(DAY1, "09:10:00"), true)]).await;
    until_projected(&base, true, 2).await;
    let r = recommendations(&base, "alice").await;
    assert_eq!((r["basis"].as_str(), r.get("reason")), (Some("personalised"), None), "{r}");
    assert!(reasons(&r).iter().any(|k| k == "similar_to"), "shield, like bob: {r}");

    // Consent withdrawn, then a day of play without it.
    send(&base, vec![consent("alice", &t(DAY1, "09:20:00"), false)]).await;
    send(
        &base,
        vec![
            event("alice", &t(DAY2, "09:00:00"), "session_start", Value::Null),
            purchase("alice", &t(DAY2, "09:01:00"), 999, "bow"),
            event("alice", &t(DAY2, "09:02:00"), "progression", json!({"status": "complete", "level_id": "level-1"})),
            event("alice", &t(DAY2, "09:03:00"), "score", json!({"board": "main", "value": 5000})),
            event("alice", &t(DAY2, "09:04:00"), "item_use", json!({"item_id": "shield", "quantity": 1})),
            event("bob", &t(DAY2, "10:00:00"), "score", json!({"board": "main", "value": 10})),
        ],
    )
    .await;
    // Wait for both days: alice's withheld events come before her next consent_update, so
    // send a marker that changes nothing of hers (bob's event) and wait for it.
    send(&base, vec![event("bob", &t(DAY2, "10:05:00"), "design", json!({"event_id": "marker"}))]).await;
    until_projected(&base, false, 4).await;
    // Her interactions are forgotten: the popular items, and why.
    let r = recommendations(&base, "alice").await;
    assert_eq!(
        (r["basis"].as_str(), r["reason"].as_str()),
        (Some("popular"), Some("personalisation_consent_withdrawn")),
        "{r}"
    );
    assert!(reasons(&r).iter().all(|k| k == "popular"), "{r}");

    // Consent back, and a third day.
    send(
        &base,
        vec![
            consent("alice", &t(DAY3, "09:00:00"), true),
            event("alice", &t(DAY3, "09:01:00"), "score", json!({"board": "main", "value": 7})),
            purchase("alice", &t(DAY3, "09:02:00"), 300, "axe"),
        ],
    )
    .await;
    send(&base, vec![event("bob", &t(DAY3, "10:00:00"), "design", json!({"event_id": "marker"}))]).await;
    until_projected(&base, true, 5).await;
    eventually(Duration::from_secs(30), || async {
        let p = profile(&base, "alice").await;
        if p["purchases"].as_u64() == Some(2) {
            Ok(())
        } else {
            Err(format!("{p}"))
        }
    })
    .await
    .unwrap();

    // Profile: day 1 (4 events and 2 consent updates, one session) and day 3 (3 events, an
    // implicit session), nothing of day 2.
    let a = profile(&base, "alice").await;
    let got = (
        a["events"].as_u64(),
        a["sessions"].as_u64(),
        a["purchases"].as_u64(),
        a["revenue_minor"]["USD"].as_i64(),
        a["levels_completed"].as_u64(),
        a["current_level"].as_str(),
    );
    assert_eq!(got, (Some(9), Some(2), Some(2), Some(800), Some(0), Some("level-1")), "{a}");
    assert_eq!(a["last_seen"].as_str().map(|s| s.starts_with(DAY3)), Some(true), "{a}");

    // Activity: alice not active on day 2.
    let (_, au) = get_json(&format!("{base}/v1/analytics/{GAME}/active-users?from={DAY1}&to={DAY3}")).await;
    let dau: Vec<u64> = au["days"].as_array().unwrap().iter().map(|d| d["dau"].as_u64().unwrap()).collect();
    assert_eq!(dau, vec![3, 1, 2], "{au}");

    // Revenue: no USD 999 on day 2; alice's 300 on day 3.
    let (_, rev) = get_json(&format!("{base}/v1/analytics/{GAME}/revenue?from={DAY1}&to={DAY3}")).await;
    let days: Vec<(String, i64, u64)> = rev["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap().to_string(),
                d["revenue_minor"].as_i64().unwrap(),
                d["payers"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(days, vec![(DAY1.to_string(), 900, 2), (DAY3.to_string(), 300, 1)], "{rev}");

    // Sessions: one per player and day (events without a session id start implicit ones),
    // but not alice's of day 2.
    let (_, s) = get_json(&format!("{base}/v1/analytics/{GAME}/sessions?from={DAY1}&to={DAY3}")).await;
    let started: Vec<u64> =
        s["days"].as_array().unwrap().iter().map(|d| d["sessions_started"].as_u64().unwrap()).collect();
    assert_eq!(started, vec![3, 1, 2], "{s}");

    // Funnel: she started level-1; her completion came without consent.
    let (_, f) = get_json(&format!("{base}/v1/analytics/{GAME}/funnel")).await;
    let step = &f["steps"][0];
    let got = (step["level_id"].as_str(), step["players_started"].as_u64(), step["players_completed"].as_u64());
    assert_eq!(got, (Some("level-1"), Some(1), Some(0)), "{f}");
    assert_eq!((step["completes"].as_u64(), step["completion_rate"].as_f64()), (Some(0), Some(0.0)), "{f}");

    // Leaderboards: her 5000 of day 2 is on no board; her 100 and 7 are.
    let (_, board) = get_json(&format!("{base}/v1/leaderboards/{GAME}/main?period=all_time&limit=10")).await;
    let entries: Vec<(String, i64)> = board["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["player_id"].as_str().unwrap().to_string(), e["score"].as_i64().unwrap()))
        .collect();
    assert_eq!(entries, vec![("alice".to_string(), 100), ("bob".to_string(), 10)], "{board}");
    let (_, daily) = get_json(&format!("{base}/v1/leaderboards/{GAME}/main?period=daily&at={DAY2}&limit=10")).await;
    assert_eq!(daily["total"].as_u64(), Some(1), "only bob on day 2: {daily}");

    // Retention: of day 1's cohort, only bob came back on day 2.
    let (_, ret) = get_json(&format!("{base}/v1/analytics/{GAME}/retention?from={DAY1}&to={DAY1}")).await;
    let cohort = &ret["cohorts"][0];
    assert_eq!((cohort["players"].as_u64(), cohort["d1"].as_u64()), (Some(3), Some(1)), "{ret}");

    // Personalisation back: her list is built from her interactions again (the axe on).
    let r = recommendations(&base, "alice").await;
    assert_eq!((r["basis"].as_str(), r.get("reason")), (Some("personalised"), None), "{r}");
    app.stop().await;
}
