//! Security headers on every response, `Allow` on 405, configurable CORS, and logs that never
//! hold a secret or a personal value, checked over real sockets against the platform and the
//! binary.

mod common;

use common::*;
use gamemetrics::platform::Platform;
use serde_json::json;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ORIGIN: &str = "https://play.example.com";

fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(30)).finish()
}

fn header<'a, S>(res: &'a awc::ClientResponse<S>, name: &str) -> Option<&'a str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

fn assert_security_headers<S>(res: &awc::ClientResponse<S>, what: &str) {
    for (name, value) in gm_gateway::middleware::SECURITY_HEADERS {
        assert_eq!(header(res, name), Some(*value), "{what}: header {name}");
    }
}

#[actix_rt::test]
async fn every_response_has_the_security_headers_and_only_configured_origins_get_cors() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.http.cors_allowed_origins = format!("{ORIGIN}, https://dash.example.com");
    let app = Platform::start_on(&config, TcpListener::bind("127.0.0.1:0").unwrap()).await.expect("platform starts");
    let base = app.url();
    let c = client();

    let live = c.get(format!("{base}/health/live")).send().await.unwrap();
    assert_security_headers(&live, "health");
    assert_eq!(header(&live, "access-control-allow-origin"), None, "no Origin, no CORS header");
    let missing = c.get(format!("{base}/no/such/route")).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    assert_security_headers(&missing, "404");
    // RFC 9110: a 405 says which methods the resource has.
    let wrong_method = c.post(format!("{base}/health/live")).send().await.unwrap();
    assert_eq!(wrong_method.status().as_u16(), 405);
    assert_eq!(header(&wrong_method, "allow"), Some("GET"));
    assert_security_headers(&wrong_method, "405");
    let wrong_method = c.get(format!("{base}/v1/events")).send().await.unwrap();
    assert_eq!((wrong_method.status().as_u16(), header(&wrong_method, "allow")), (405, Some("POST")));
    let refused = c.get(format!("{base}/v1/analytics/{GAME}/funnel")).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    assert_security_headers(&refused, "401");

    // A browser game's preflight, then its post.
    let preflight = c
        .request(actix_web::http::Method::OPTIONS, format!("{base}/v1/events"))
        .insert_header(("Origin", ORIGIN))
        .insert_header(("Access-Control-Request-Method", "POST"))
        .insert_header(("Access-Control-Request-Headers", "authorization, content-type, x-gm-signature"))
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 204);
    assert_eq!(header(&preflight, "access-control-allow-origin"), Some(ORIGIN));
    let allowed_headers = header(&preflight, "access-control-allow-headers").unwrap_or_default();
    for h in ["authorization", "content-type", "content-encoding", "x-api-key", "x-gm-signature", "x-gm-timestamp"] {
        assert!(allowed_headers.contains(h), "{h} not in {allowed_headers}");
    }
    assert!(header(&preflight, "access-control-allow-methods").unwrap_or_default().contains("POST"));
    assert_security_headers(&preflight, "preflight");

    let event = json!({"events": [{"type": "session_start", "player_id": "browser-1",
                                    "client_ts": chrono::Utc::now().to_rfc3339()}]});
    let posted = c
        .post(format!("{base}/v1/events"))
        .insert_header(("Origin", ORIGIN))
        .insert_header(("Authorization", format!("Bearer {KEY}")))
        .send_json(&event)
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 202);
    assert_eq!(header(&posted, "access-control-allow-origin"), Some(ORIGIN));
    assert!(header(&posted, "access-control-expose-headers").unwrap_or_default().contains("retry-after"));
    assert!(header(&posted, "vary").unwrap_or_default().contains("Origin"));

    // Another origin gets nothing it could use, and its preflight is not granted.
    let evil = c
        .get(format!("{base}/health/live"))
        .insert_header(("Origin", "https://evil.example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&evil, "access-control-allow-origin"), None);
    let evil_preflight = c
        .request(actix_web::http::Method::OPTIONS, format!("{base}/v1/events"))
        .insert_header(("Origin", "https://evil.example.com"))
        .insert_header(("Access-Control-Request-Method", "POST"))
        .send()
        .await
        .unwrap();
    assert_ne!(evil_preflight.status().as_u16(), 204);
    assert_eq!(header(&evil_preflight, "access-control-allow-origin"), None);
    app.stop().await;
}

/// The binary at `debug` level, fed every kind of credential and personal value (valid,
/// revoked, wrong), must not write any of them to its log.
#[actix_rt::test]
async fn no_secret_or_personal_value_reaches_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let log_path = dir.path().join("gamemetrics.log");
    let revoked = "revoked-key-secret-0001";
    let signing_secret = "signing-secret-value-0001";
    let keys_file = dir.path().join("api-keys");
    std::fs::write(&keys_file, format!("{GAME}={KEY}\n{GAME}={revoked}\nsim-2=sim-key-0002\n")).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_gamemetrics"))
        .env("GM_DATA_DIR", dir.path().join("data"))
        .env("GM_HTTP__BIND", format!("127.0.0.1:{port}"))
        .env("GM_API_KEYS_FILE", &keys_file)
        .env("GM_AUTH__REVOKED_KEYS", gm_gateway::auth::key_id(revoked))
        .env("GM_AUTH__SIGNING_SECRETS", format!("sim-2={signing_secret}"))
        .env("RUST_LOG", "debug")
        .envs(auth_env())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start the gamemetrics binary");
    let deadline = Instant::now() + Duration::from_secs(30);
    while client().get(format!("{base}/health/ready")).send().await.map(|r| r.status().is_success()).ok() != Some(true)
    {
        assert!(Instant::now() < deadline, "the binary did not become ready");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }

    let player = "player-personal-4711";
    let email = "astra.secret@example.com";
    let ip = "203.0.113.77";
    let device = "DEVICE-SECRET-0123456789";
    let name = "Astra Secretname";
    let now = chrono::Utc::now().to_rfc3339();
    let batch = json!({"events": [
        {"type": "session_start", "player_id": player, "client_ts": now},
        {"type": "profile_update", "player_id": player, "client_ts": now, "properties": {"country": "FR"},
         "personal": {"email": email, "ip": ip, "device_id": device, "display_name": name}},
        {"type": "purchase", "player_id": player, "client_ts": now,
         "properties": {"amount_minor": -5, "currency": "USD", "item_id": email}},
        {"type": "no_such_type", "player_id": player, "client_ts": now, "personal": {"email": email}}
    ]});
    let c = client();
    let post = |key: String, body: serde_json::Value| {
        let c = c.clone();
        let base = base.clone();
        async move {
            let mut res = c
                .post(format!("{base}/v1/events"))
                .insert_header(("Authorization", format!("Bearer {key}")))
                .send_json(&body)
                .await
                .expect("answered");
            (res.status().as_u16(), res.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let (status, reply) = post(KEY.to_string(), batch.clone()).await;
    // The session start at least goes through the whole pipeline (the personal fields too once
    // the platform keeps them; refused by name otherwise, which must not log them either).
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["results"].as_array().map(Vec::len), Some(4), "{reply}");
    assert_eq!(post(revoked.to_string(), batch.clone()).await.0, 401);
    assert_eq!(post("unknown-key-secret-0002".to_string(), batch.clone()).await.0, 401);
    // A game that signs its bodies, with a wrong signature.
    let wrong_signature = c
        .post(format!("{base}/v1/events"))
        .insert_header(("Authorization", "Bearer sim-key-0002"))
        .insert_header(("X-GM-Signature", "00ff"))
        .send_json(&batch)
        .await
        .unwrap();
    assert_eq!(wrong_signature.status().as_u16(), 401);
    let analyst = analyst_token();
    let profile = c
        .get(format!("{base}/v1/players/{GAME}/{player}"))
        .insert_header(("Authorization", format!("Bearer {analyst}")))
        .send()
        .await
        .unwrap();
    assert!(profile.status().is_success() || profile.status().as_u16() == 404, "{}", profile.status());
    let metrics = c
        .get(format!("{base}/metrics"))
        .insert_header(("Authorization", format!("Bearer {METRICS_TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    // Let the pipeline process the events (actors, projections log at debug too).
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    server.kill().expect("stop the binary");
    server.wait().unwrap();

    let log = std::fs::read_to_string(&log_path).unwrap();
    // The log was written, and at the level asked: the revoked key was noticed, by its id.
    assert!(log.contains("a revoked API key was presented"), "no log captured:\n{log}");
    assert!(log.contains("batch ingested"), "no debug line captured:\n{log}");
    assert!(log.contains(&gm_gateway::auth::key_id(revoked)), "the revoked key's id is not logged");
    let signature = analyst.rsplit('.').next().unwrap().to_string();
    let secrets = [
        ("API key", KEY.to_string()),
        ("revoked API key", revoked.to_string()),
        ("unknown API key", "unknown-key-secret-0002".to_string()),
        ("signing secret", signing_secret.to_string()),
        ("JWT", analyst.clone()),
        ("JWT signature", signature),
        ("metrics token", METRICS_TOKEN.to_string()),
        ("player id", player.to_string()),
        ("email", email.to_string()),
        ("IP address", ip.to_string()),
        ("device id", device.to_string()),
        ("display name", name.to_string()),
    ];
    for (what, value) in secrets {
        if let Some(line) = log.lines().find(|l| l.contains(&value)) {
            panic!("the {what} is in the log: {line}");
        }
    }
}

#[actix_rt::test]
async fn two_gateways_count_a_game_keys_requests_together_through_redis() {
    use gamemetrics::platform::Roles;
    let services = common::services::TestServices::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = services.config(dir.path());
    // Windows of 10 s allowing 10 requests per key, for the whole deployment.
    config.rate_limits.per_key_per_second = 1;
    config.rate_limits.per_key_burst = 10;
    let start = || Platform::start_roles(&config, TcpListener::bind("127.0.0.1:0").unwrap(), Roles::GATEWAY);
    let (a, b) = (start().await.expect("gateway a"), start().await.expect("gateway b"));
    // Past both gateways' first exchange with Redis, and far enough from the end of a window
    // that every request below falls in the same one.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let in_window = std::time::UNIX_EPOCH.elapsed().unwrap().as_millis() as u64 % 10_000;
    if in_window > 6_000 {
        actix_rt::time::sleep(Duration::from_millis(10_050 - in_window)).await;
    }
    let body = json!({"events": [{"type": "session_start", "player_id": "rate-limited-one",
        "client_ts": chrono::Utc::now().to_rfc3339()}]})
    .to_string();
    let (mut accepted, mut limited) = (0, 0);
    for i in 0..20 {
        let base = if i % 2 == 0 { a.url() } else { b.url() };
        let (status, reply) = post_events(&base, Some(KEY), body.clone().into_bytes()).await;
        match status {
            202 => accepted += 1,
            429 => limited += 1,
            other => panic!("request {i}: {other} {reply}"),
        }
        // Longer than an exchange interval: each gateway hears of the other's requests.
        actix_rt::time::sleep(Duration::from_millis(150)).await;
    }
    // Each gateway alone would take 10 (20 in all). Together: the quota, plus at most the
    // one request a gateway let through before it heard of the other's last.
    assert!((10..=11).contains(&accepted), "accepted {accepted}, limited {limited}");
    a.stop().await;
    b.stop().await;
    services.drop_database().await;
}
