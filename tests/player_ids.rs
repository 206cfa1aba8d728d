//! Player ids as real SDKs send them (issue 17, item 11): tagged e-mail addresses, base64
//! ids, platform-prefixed ids, through every route that names a player, on the embedded
//! default and on PostgreSQL + Kafka + Redis. Each id reaches its own profile, leaderboard
//! standing, recommendations, export and erasure, and no other player's: ids that are
//! prefixes of one another (`steam`, `steam:7656…`) and ids that differ only by where a `/`
//! is stay apart in every key and store.

mod common;

use common::services::TestServices;
use common::*;
use gamemetrics::platform::Platform;
use serde_json::json;
use std::net::TcpListener;
use std::time::Duration;

/// (player id, the amount of their one purchase: distinct, so a profile shows whose it is)
const PLAYERS: [(&str, i64); 9] = [
    ("ana+beta@example.com", 101),
    ("ana@example.com", 102),
    ("q1Zx/9+AbC==", 103),
    ("q1Zx", 104),
    ("steam:76561198000000000", 105),
    ("steam", 106),
    ("auth0|5f7c8ec7c33c6c004bbafe82", 107),
    ("a/b:c=d+e", 108),
    ("...", 109),
];

async fn every_route_keeps_each_player_apart(base: &str) {
    let now = chrono::Utc::now();
    let ts = now.to_rfc3339();
    let mut events = Vec::new();
    for (i, (player, amount)) in PLAYERS.iter().enumerate() {
        events.extend([
            json!({"type": "session_start", "player_id": player, "client_ts": ts}),
            json!({"type": "purchase", "player_id": player, "client_ts": ts,
                   "properties": {"amount_minor": amount, "currency": "USD", "item_id": format!("item-{i}")}}),
            json!({"type": "score", "player_id": player, "client_ts": ts,
                   "properties": {"board": "ids", "value": amount}}),
            json!({"type": "profile_update", "player_id": player, "client_ts": ts, "properties": {},
                   "personal": {"email": format!("mail-{i}@example.com")}}),
        ]);
    }
    let (status, reply) = post_events(base, Some(KEY), json!({"events": events}).to_string().into_bytes()).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["accepted"], PLAYERS.len() * 4, "every id is accepted: {reply}");

    let analyst = analyst_token();
    let compliance = test_issuer().token("ids-compliance", &["compliance"]);
    let today = now.date_naive();
    // Profiles: each id, percent-encoded in the path, reaches its own.
    for (player, amount) in PLAYERS {
        let url = format!("{base}/v1/players/{GAME}/{}", percent_encode(player));
        eventually(Duration::from_secs(90), || async {
            let (status, profile) = call("GET", &url, Some(&analyst), None).await;
            if status != 200 {
                return Err(format!("{url}: {status} {profile}"));
            }
            if profile["player_id"] != player || profile["purchases"] != 1 || profile["revenue_minor"]["USD"] != amount
            {
                return Err(format!("{url}: another player's or an incomplete profile: {profile}"));
            }
            Ok(())
        })
        .await
        .unwrap();
    }
    // Characters a path segment may carry as they are (RFC 3986 pchar) may also come unencoded.
    let (status, profile) =
        call("GET", &format!("{base}/v1/players/{GAME}/ana+beta@example.com"), Some(&analyst), None).await;
    assert_eq!((status, &profile["player_id"]), (200, &json!("ana+beta@example.com")), "{profile}");
    let (status, profile) =
        call("GET", &format!("{base}/v1/players/{GAME}/steam:76561198000000000"), Some(&analyst), None).await;
    assert_eq!((status, &profile["player_id"]), (200, &json!("steam:76561198000000000")), "{profile}");
    // An unencoded `/` makes two segments: never another player's profile.
    let (status, profile) = call("GET", &format!("{base}/v1/players/{GAME}/q1Zx/9+AbC=="), Some(&analyst), None).await;
    assert_eq!(status, 404, "{profile}");

    // Leaderboard: the board lists every id as sent; each standing is the player's own.
    let board = format!("{base}/v1/leaderboards/{GAME}/ids");
    eventually(Duration::from_secs(60), || async {
        let (status, page) = call("GET", &format!("{board}?period=all_time&limit=100"), Some(&analyst), None).await;
        let mut listed: Vec<String> = page["entries"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["player_id"].as_str().map(String::from)).collect())
            .unwrap_or_default();
        listed.sort();
        let mut expected: Vec<String> = PLAYERS.iter().map(|(p, _)| p.to_string()).collect();
        expected.sort();
        if status != 200 || listed != expected {
            return Err(format!("{status} {page}"));
        }
        Ok(())
    })
    .await
    .unwrap();
    for (player, amount) in PLAYERS {
        let url = format!("{board}/players/{}?period=all_time", percent_encode(player));
        let (status, standing) = call("GET", &url, Some(&analyst), None).await;
        assert_eq!(status, 200, "{url}: {standing}");
        let entry = &standing["entry"];
        assert_eq!((&entry["player_id"], &entry["score"]), (&json!(player), &json!(amount)), "{standing}");
    }

    // Recommendations and the export: the player's own.
    for (player, _) in PLAYERS {
        let url = format!("{base}/v1/players/{GAME}/{}/recommendations", percent_encode(player));
        let (status, list) = call("GET", &url, Some(&analyst), None).await;
        assert_eq!((status, &list["player_id"]), (200, &json!(player)), "{url}: {list}");
    }
    for (i, (player, _)) in PLAYERS.iter().enumerate() {
        let url = format!("{base}/v1/privacy/exports/{GAME}/{}", percent_encode(player));
        let (status, export) = call("GET", &url, Some(&compliance), None).await;
        assert_eq!((status, &export["player_id"]), (200, &json!(player)), "{url}: {export}");
        assert!(export.to_string().contains(&format!("mail-{i}@example.com")), "{export}");
        for (j, _) in PLAYERS.iter().enumerate().filter(|(j, _)| *j != i) {
            assert!(!export.to_string().contains(&format!("mail-{j}@example.com")), "{player}'s export: {export}");
        }
    }

    // Erasure of the ids that are others' extensions: the shorter ones stay whole.
    for erased in ["steam:76561198000000000", "q1Zx/9+AbC==", "ana+beta@example.com"] {
        let body = json!({"game_id": GAME, "player_id": erased, "reason": "ids test"});
        let (status, erasure) =
            call("POST", &format!("{base}/v1/privacy/erasures"), Some(&compliance), Some(body)).await;
        assert_eq!(status, 202, "{erasure}");
        let status_url = format!("{base}/v1/privacy/erasures/{}", erasure["erasure_id"].as_str().unwrap());
        eventually(Duration::from_secs(120), || async {
            let (_, e) = call("GET", &status_url, Some(&compliance), None).await;
            if e["status"] == "completed" {
                Ok(())
            } else {
                Err(e.to_string())
            }
        })
        .await
        .unwrap();
        let (status, _) =
            call("GET", &format!("{base}/v1/players/{GAME}/{}", percent_encode(erased)), Some(&analyst), None).await;
        assert_eq!(status, 404, "{erased} is erased");
    }
    for (player, amount) in [("steam", 106), ("q1Zx", 104), ("ana@example.com", 102)] {
        let url = format!("{base}/v1/players/{GAME}/{}", percent_encode(player));
        let (status, profile) = call("GET", &url, Some(&analyst), None).await;
        assert_eq!((status, &profile["player_id"]), (200, &json!(player)), "{profile}");
        assert_eq!(profile["revenue_minor"]["USD"], amount, "{profile}");
    }
    let (status, days) =
        call("GET", &format!("{base}/v1/analytics/{GAME}/active-users?from={today}&to={today}"), Some(&analyst), None)
            .await;
    assert_eq!(status, 200, "{days}");
}

#[actix_rt::test]
async fn player_ids_of_real_sdks_work_through_every_route_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    every_route_keeps_each_player_apart(&app.url()).await;
    app.stop().await;
}

#[actix_rt::test]
async fn player_ids_of_real_sdks_work_through_every_route_on_kafka_postgres_and_redis() {
    let services = TestServices::create().await;
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = Platform::start_on(&services.config(dir.path()), listener).await.expect("platform starts");
    every_route_keeps_each_player_apart(&app.url()).await;
    app.stop().await;
    services.drop_database().await;
}
