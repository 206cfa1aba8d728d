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
