//! Clients of Segment and of the previous platform, unchanged, against the whole pipeline:
//! their events land in the read models with the right values.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

async fn post(url: String, auth: (&str, String), body: serde_json::Value) -> (u16, serde_json::Value) {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut response = client
        .post(url)
        .insert_header(auth)
        .insert_header(("Content-Type", "application/json"))
        .send_body(body.to_string())
        .await
        .expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

#[actix_rt::test]
async fn a_segment_batch_and_a_legacy_event_land_in_the_read_models_with_the_right_values() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let base = app.url();
    let now = chrono::Utc::now();
    let today = now.date_naive();
    let write_key =
        ("Authorization", format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"))));
    let segment = json!({"sentAt": now.to_rfc3339(), "batch": [
        {"type": "track", "event": "Application Opened", "userId": "seg-1", "messageId": "m1", "timestamp": now.to_rfc3339()},
        {"type": "track", "event": "Order Completed", "userId": "seg-1", "messageId": "m2", "timestamp": now.to_rfc3339(),
         "properties": {"revenue": 4.99, "currency": "USD", "product_id": "gems"}},
        {"type": "track", "event": "Level Completed", "userId": "seg-1", "messageId": "m3", "timestamp": now.to_rfc3339(),
         "properties": {"level": "compat-1", "score": 50}},
        {"type": "identify", "userId": "seg-1", "messageId": "m4", "timestamp": now.to_rfc3339(),
         "traits": {"email": "seg-1@example.com"}, "context": {"locale": "de-DE"}}
    ]});
    let (status, reply) = post(format!("{base}/v1/batch"), write_key.clone(), segment).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"], 4, "{reply}");
    let legacy = json!({"event_type": "purchase", "player_id": "legacy-1", "game_id": GAME,
                        "timestamp": now.timestamp(), "data": {"amount": 2.50, "currency": "USD", "item_id": "sword"}});
    let (status, reply) = post(format!("{base}/api/v1/events"), ("X-API-Key", KEY.to_string()), legacy).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "success", "{reply}");
    assert!(reply["event_id"].is_string(), "{reply}");

    eventually(Duration::from_secs(30), || {
        let base = base.clone();
        async move {
            let (_, revenue) = get_json(&format!("{base}/v1/analytics/{GAME}/revenue?from={today}&to={today}")).await;
            let usd = revenue["days"].as_array().and_then(|d| d.iter().find(|r| r["currency"] == "USD").cloned());
            match usd {
                Some(r) if r["revenue_minor"] == 749 && r["purchases"] == 2 && r["payers"] == 2 => Ok(()),
                _ => Err(format!("revenue {revenue}")),
            }
        }
    })
    .await
    .unwrap();
    let (status, profile) = get_json(&format!("{base}/v1/players/{GAME}/seg-1")).await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!((profile["events"].as_u64(), profile["sessions"].as_u64()), (Some(4), Some(1)), "{profile}");
    assert_eq!((profile["purchases"].as_u64(), profile["levels_completed"].as_u64()), (Some(1), Some(1)));
    assert_eq!(profile["xp"], 50);
    assert_eq!(profile["language"], "de");
    assert!(!profile.to_string().contains("seg-1@example.com"), "personal data in a read model: {profile}");
    let (_, funnel) = get_json(&format!("{base}/v1/analytics/{GAME}/funnel")).await;
    assert!(funnel["steps"].as_array().unwrap().iter().any(|s| s["level_id"] == "compat-1" && s["completes"] == 1));
    app.stop().await;
}

async fn post_plain(url: String, headers: &[(&str, &str)], body: serde_json::Value) -> (u16, serde_json::Value) {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut request = client.post(url).insert_header(("Content-Type", "application/json"));
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    let mut response = request.send_body(body.to_string()).await.expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

async fn metrics_text(base: &str) -> String {
    let mut response = awc::Client::default()
        .get(format!("{base}/metrics"))
        .insert_header(("Authorization", format!("Bearer {METRICS_TOKEN}")))
        .send()
        .await
        .expect("GET /metrics");
    String::from_utf8_lossy(&response.body().limit(16 << 20).await.unwrap()).into_owned()
}

/// Issue 16 item 6: what the previous platform's own test script sends — a `purchase` without
/// an amount, an `achievement` without an id — is kept (as design events named after their
/// type) and counted, where 28% of its events used to be refused; events it could map stay
/// typed; nothing is lost, nothing counted twice when resent with its key.
#[actix_rt::test]
async fn old_platform_events_the_typed_schema_cannot_take_are_kept_as_design_events() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let base = app.url();
    let now = chrono::Utc::now();
    let today = now.date_naive();
    let ts = now.timestamp();
    let script = [
        json!({"event_type": "login", "player_id": 1001, "game_id": GAME, "timestamp": ts, "data": {"platform": "android"}}),
        json!({"event_type": "purchase", "player_id": 1001, "game_id": GAME, "timestamp": ts, "data": {"item_id": "sword"}}),
        json!({"event_type": "achievement", "player_id": 1001, "game_id": GAME, "timestamp": ts}),
        json!({"event_type": "achievement", "player_id": 1001, "game_id": GAME, "timestamp": ts, "data": {"value": 2}}),
        json!({"event_type": "purchase", "player_id": 1001, "game_id": GAME, "timestamp": ts,
               "data": {"amount": 0.99, "currency": "usd", "item_id": "gems"}}),
        json!({"event_type": "level_up", "player_id": 1001, "game_id": GAME, "timestamp": ts, "data": {"level": 2, "xp": 15}}),
    ];
    let mut ids = Vec::new();
    for (i, body) in script.iter().enumerate() {
        let key = format!("old-script-{i}");
        let headers = [("X-API-Key", KEY), ("Idempotency-Key", key.as_str())];
        let (status, reply) = post_plain(format!("{base}/api/v1/events"), &headers, body.clone()).await;
        assert_eq!((status, reply["status"].as_str()), (200, Some("success")), "{body}: {reply}");
        ids.push(reply["event_id"].as_str().unwrap().to_string());
        // The old client resends (it never saw the answer): same key, same id, counted once.
        let (status, again) = post_plain(format!("{base}/api/v1/events"), &headers, body.clone()).await;
        assert_eq!((status, &again["event_id"]), (200, &reply["event_id"]), "{again}");
    }
    // Refused as before: what no platform could store.
    let (status, reply) =
        post_plain(format!("{base}/api/v1/events"), &[("X-API-Key", KEY)], json!({"event_type": "purchase"})).await;
    assert_eq!((status, reply["field"].as_str()), (400, Some("player_id")), "{reply}");

    eventually(Duration::from_secs(30), || {
        let base = base.clone();
        async move {
            let (status, p) = get_json(&format!("{base}/v1/players/{GAME}/1001")).await;
            let got = (p["events"].as_u64(), p["purchases"].as_u64(), p["levels_completed"].as_u64());
            if status == 200 && got == (Some(6), Some(1), Some(1)) {
                Ok(())
            } else {
                Err(format!("HTTP {status} {p}"))
            }
        }
    })
    .await
    .unwrap();
    let (_, revenue) = get_json(&format!("{base}/v1/analytics/{GAME}/revenue?from={today}&to={today}")).await;
    let usd = revenue["days"].as_array().unwrap().iter().find(|d| d["currency"] == "USD").cloned().unwrap();
    assert_eq!((usd["revenue_minor"].as_i64(), usd["purchases"].as_u64()), (Some(99), Some(1)), "{revenue}");
    let text = metrics_text(&base).await;
    // The gateway counts what it answered: each request, resent ones too (the actors then
    // count each event once, as the profile shows).
    assert!(text.contains("gamemetrics_compat_events_downgraded_total{type=\"purchase\"} 2"), "{text}");
    assert!(text.contains("gamemetrics_compat_events_downgraded_total{type=\"achievement\"} 4"), "{text}");
    app.stop().await;
}

/// Issue 16 item 6: a listed game's old clients post without a key, rate-limited per client
/// address; other games still need one.
#[actix_rt::test]
async fn listed_games_take_keyless_old_clients_within_a_rate_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.compat.keyless_games = GAME.into();
    config.compat.keyless_per_address_per_second = 1;
    config.compat.keyless_per_address_burst = 3;
    let app = gamemetrics::platform::Platform::start_on(&config, std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .await
        .expect("platform starts");
    let base = app.url();
    let ts = chrono::Utc::now().to_rfc3339();
    let event = |player: &str, game: &str| json!({"event_type": "login", "player_id": player, "game_id": game, "timestamp": ts});
    // The address's quota (burst 3) is spent by every keyless request, refused ones too: it is
    // checked before the body is read.
    let (status, _) = post_plain(format!("{base}/api/v1/events"), &[], event("nokey-9", "sim-2")).await;
    assert_eq!(status, 401, "an unlisted game needs its key");
    for i in 0..2 {
        let (status, reply) =
            post_plain(format!("{base}/api/v1/events"), &[], event(&format!("nokey-{i}"), GAME)).await;
        assert_eq!((status, reply["status"].as_str()), (200, Some("success")), "{reply}");
    }
    let (status, reply) = post_plain(format!("{base}/api/v1/events"), &[], event("nokey-3", GAME)).await;
    assert_eq!((status, reply["error"].as_str()), (429, Some("rate_limited")), "{reply}");
    // With its key, the same client is not limited by the keyless quota.
    let (status, _) = post_plain(format!("{base}/api/v1/events"), &[("X-API-Key", KEY)], event("nokey-2", GAME)).await;
    assert_eq!(status, 200);
    let segment = json!({"batch": [{"type": "track", "event": "Boss Defeated", "userId": "nokey-5"}]});
    let (status, _) = post_plain(format!("{base}/v1/batch"), &[], segment).await;
    assert_eq!(status, 401, "only the old route has the keyless mode");
    eventually(Duration::from_secs(30), || {
        let base = base.clone();
        async move {
            for i in 0..3 {
                let (status, p) = get_json(&format!("{base}/v1/players/{GAME}/nokey-{i}")).await;
                if status != 200 || p["events"] != 1 {
                    return Err(format!("nokey-{i}: HTTP {status} {p}"));
                }
            }
            Ok(())
        }
    })
    .await
    .unwrap();
    app.stop().await;
}
