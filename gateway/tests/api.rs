//! The gateway's HTTP contract, exercised in-process through `actix_web::test` with an
//! in-memory log producer and read-model fakes (test doubles for these tests only).

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::{header, StatusCode};
use actix_web::{test, web};
use async_trait::async_trait;
use chrono::Utc;
use flate2::write::GzEncoder;
use flate2::Compression;
use gm_gateway::jwt::testing::{TestIssuer, AUDIENCE, ISSUER};
use gm_gateway::{app, ApiKeyConfig, AppState, GatewayConfig, Jwks, JwtConfig, Readiness, Secret};
use gm_ports::{LogError, LogProducer, NewRecord, Position, StoreError};
use gm_privacy::PrivacyStore as _;
use gm_projections::model::{ActiveUsersDay, FunnelCounts, FunnelStep, PlayerProfile, RevenueDay, SessionsDay};
use gm_projections::{AnalyticsQueries, DateRange};
use gm_schemas::validate::Limits;
use gm_schemas::{GameId, PlayerId, RawRecord};
use gm_telemetry::Metrics;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "space-key";
const OTHER_KEY: &str = "farm-key";
const METRICS_TOKEN: &str = "metrics-scrape-token";

/// One key pair per test process, generated at run time.
fn issuer() -> &'static TestIssuer {
    static ISSUER_KEYS: std::sync::OnceLock<TestIssuer> = std::sync::OnceLock::new();
    ISSUER_KEYS.get_or_init(|| TestIssuer::generate("test-key"))
}

fn bearer(roles: &[&str]) -> (header::HeaderName, String) {
    (header::AUTHORIZATION, format!("Bearer {}", issuer().token("someone", roles)))
}

fn analyst() -> (header::HeaderName, String) {
    bearer(&["analyst"])
}

#[derive(Default)]
struct FakeLog {
    appends: Mutex<Vec<(String, Vec<NewRecord>)>>,
    fail: AtomicBool,
    delay: Mutex<Option<Duration>>,
}

impl FakeLog {
    fn records(&self) -> Vec<NewRecord> {
        self.appends.lock().unwrap().iter().flat_map(|(_, r)| r.clone()).collect()
    }
    fn append_calls(&self) -> usize {
        self.appends.lock().unwrap().len()
    }
}

#[async_trait]
impl LogProducer for FakeLog {
    async fn append(&self, topic: &str, records: Vec<NewRecord>) -> Result<Vec<Position>, LogError> {
        let delay = *self.delay.lock().unwrap();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(LogError::Unavailable("broker down".into()));
        }
        let positions = (0..records.len()).map(|i| Position { partition: 0, offset: i as u64 }).collect();
        self.appends.lock().unwrap().push((topic.to_string(), records));
        Ok(positions)
    }
}

struct FakeQueries;

#[async_trait]
impl AnalyticsQueries for FakeQueries {
    async fn player_profile(&self, game: &GameId, player: &PlayerId) -> Result<Option<PlayerProfile>, StoreError> {
        if player.as_str() != "p1" {
            return Ok(None);
        }
        Ok(Some(PlayerProfile {
            game_id: game.to_string(),
            player_id: player.to_string(),
            first_seen: Utc::now(),
            last_seen: Utc::now(),
            events: 3,
            sessions: 1,
            playtime_seconds: 60,
            purchases: 0,
            revenue_minor: Default::default(),
            levels_completed: 0,
            xp: 0,
            current_level: None,
            country: None,
            language: None,
            consent_analytics: None,
            consent_personalisation: None,
            last_seq: 3,
        }))
    }
    async fn active_users(&self, _: &GameId, range: DateRange) -> Result<Vec<ActiveUsersDay>, StoreError> {
        Ok(range.days().map(|d| ActiveUsersDay { day: d, dau: 1, wau: 1, mau: 1, stickiness: 1.0 }).collect())
    }
    async fn sessions(&self, _: &GameId, _: DateRange) -> Result<Vec<SessionsDay>, StoreError> {
        Ok(vec![])
    }
    async fn revenue(&self, _: &GameId, _: DateRange) -> Result<Vec<RevenueDay>, StoreError> {
        Err(StoreError::Unavailable("db restarting".into()))
    }
    async fn funnel(&self, _: &GameId) -> Result<Vec<FunnelStep>, StoreError> {
        let step = |level: &str, players_started| {
            FunnelStep::new(level.into(), FunnelCounts { starts: 2, players_started, ..Default::default() })
        };
        Ok(vec![step("level-10", 1), step("tutorial", 4), step("level-2", 2)])
    }
}

struct Harness {
    log: Arc<FakeLog>,
    metrics: Metrics,
    readiness: Readiness,
    data: web::Data<AppState>,
}

/// A harness whose gateway pseudonymises and seals (privacy store: embedded SQLite).
async fn harness_with_privacy(dir: &std::path::Path) -> Harness {
    let store = Arc::new(gm_embedded::SqliteStore::open(&dir.join("store.db")).await.unwrap());
    harness_with_privacy_store(store)
}

/// The same on a given privacy store.
fn harness_with_privacy_store(store: Arc<dyn gm_privacy::PrivacyStore>) -> Harness {
    let log = Arc::new(FakeLog::default());
    let metrics = Metrics::new();
    let readiness = Readiness::new();
    let settings = gm_privacy::PrivacySettings {
        master_key: gm_privacy::MasterKey::from_bytes([5; 32]),
        suppression: chrono::Duration::days(30),
        key_cache_ttl: Duration::from_secs(30),
        poll_interval: Duration::from_millis(100),
    };
    let privacy = Arc::new(gm_privacy::PrivacyService::new(
        store,
        log.clone(),
        settings,
        &gm_projections::ProjectionName::ALL.map(|p| p.as_str()),
        metrics.clone(),
    ));
    let config = harness_config(Limits::default(), Duration::from_secs(10));
    let state = AppState::new(config, log.clone(), Arc::new(FakeQueries), metrics.clone(), readiness.clone())
        .with_privacy(privacy);
    Harness { log, metrics, readiness, data: web::Data::new(state) }
}

fn harness_with(limits: Limits, timeout: Duration) -> Harness {
    harness_from(harness_config(limits, timeout))
}

fn harness_from(config: GatewayConfig) -> Harness {
    let log = Arc::new(FakeLog::default());
    let metrics = Metrics::new();
    let readiness = Readiness::new();
    let state = AppState::new(config, log.clone(), Arc::new(FakeQueries), metrics.clone(), readiness.clone());
    Harness { log, metrics, readiness, data: web::Data::new(state) }
}

fn harness_config(limits: Limits, timeout: Duration) -> GatewayConfig {
    GatewayConfig {
        api_keys: vec![
            ApiKeyConfig { game_id: GameId::parse("space-race").unwrap(), key: KEY.into() },
            ApiKeyConfig { game_id: GameId::parse("farm").unwrap(), key: OTHER_KEY.into() },
        ],
        jwt: Some((
            JwtConfig { issuer: ISSUER.into(), audience: AUDIENCE.into(), ..JwtConfig::default() },
            Jwks::from_json(&issuer().jwks().to_string()).unwrap(),
        )),
        metrics_token: Some(Secret(METRICS_TOKEN.into())),
        limits,
        request_timeout: timeout,
        ..GatewayConfig::default()
    }
}

fn harness() -> Harness {
    harness_with(Limits::default(), Duration::from_secs(5))
}

fn harness_configured(change: impl FnOnce(&mut GatewayConfig)) -> Harness {
    let mut config = harness_config(Limits::default(), Duration::from_secs(5));
    change(&mut config);
    harness_from(config)
}

fn harness_revoking(key_ids: &[&str]) -> Harness {
    harness_configured(|c| c.revoked_keys = key_ids.iter().map(|s| s.to_string()).collect())
}

fn session_start(player: &str) -> Value {
    json!({"player_id": player, "type": "session_start", "client_ts": Utc::now().to_rfc3339()})
}

fn bad_purchase(player: &str) -> Value {
    json!({"player_id": player, "type": "purchase", "client_ts": Utc::now().to_rfc3339(),
           "properties": {"amount_minor": 199, "currency": "NOPE", "item_id": "gems"}})
}

/// Sends `$req` (a `TestRequest`) to `$app`; yields (status, headers, JSON or Null, text).
macro_rules! call {
    ($app:expr, $req:expr) => {
        respond(test::call_service($app, $req.to_request()).await)
    };
}

async fn respond<B: MessageBody>(
    res: ServiceResponse<B>,
) -> (StatusCode, actix_web::http::header::HeaderMap, Value, String) {
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = test::read_body(res).await;
    let text = String::from_utf8_lossy(&bytes).to_string();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, json, text)
}

fn post_events(body: impl Into<Vec<u8>>) -> test::TestRequest {
    test::TestRequest::post()
        .uri("/v1/events")
        .insert_header((header::AUTHORIZATION, format!("Bearer {KEY}")))
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload(body.into())
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[actix_web::test]
async fn accepted_batch_appends_one_record_per_event_keyed_game_player_in_one_call() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let body = json!({"sent_at": Utc::now().to_rfc3339(), "events": [session_start("p1"), session_start("p2")]});
    let (status, _, json, text) = call!(&app, post_events(body.to_string())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert_eq!(json["accepted"], 2);
    assert_eq!(json["rejected"], 0);
    assert_eq!(h.log.append_calls(), 1);
    assert_eq!(h.log.appends.lock().unwrap()[0].0, gm_schemas::topics::RAW);
    let records = h.log.records();
    assert_eq!(records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["space-race:p1", "space-race:p2"]);
    let RawRecord::Event(envelope) = serde_json::from_slice::<RawRecord>(&records[0].payload).unwrap() else {
        panic!("not an event record");
    };
    assert_eq!(envelope.game_id.as_str(), "space-race");
    assert_eq!(json["results"][0]["event_id"], envelope.event_id.to_string());
    assert_eq!(json["results"][0]["status"], "accepted");
    assert!(h.metrics.encode().contains("gamemetrics_events_accepted_total 2"));
}

#[actix_web::test]
async fn mixed_batch_is_202_with_reasons_and_appends_only_the_good_events() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let body = json!({"events": [session_start("p1"), bad_purchase("p2"), {"type": "session_start"}]});
    let (status, _, json, text) = call!(&app, post_events(body.to_string())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert_eq!((json["accepted"].as_u64(), json["rejected"].as_u64()), (Some(1), Some(2)));
    let bad = &json["results"][1];
    assert_eq!(bad["index"], 1);
    assert_eq!(bad["status"], "rejected");
    assert_eq!(bad["code"], "invalid_field");
    assert!(bad["field"].as_str().unwrap().starts_with("properties"), "{bad}");
    assert!(!bad["reason"].as_str().unwrap().is_empty());
    assert_eq!(json["results"][2]["code"], "missing_field");
    assert_eq!(json["results"][2]["field"], "player_id");
    let keys: Vec<String> = h.log.records().into_iter().map(|r| r.key).collect();
    assert_eq!(keys, ["space-race:p1"]);
    let metrics = h.metrics.encode();
    assert!(metrics.contains("gamemetrics_events_rejected_total{reason=\"invalid_field\"} 1"), "{metrics}");
}

#[actix_web::test]
async fn batch_with_no_valid_event_is_400_with_results_and_appends_nothing() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let body = json!({"events": [bad_purchase("p1"), bad_purchase("p2")]});
    let (status, _, json, text) = call!(&app, post_events(body.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(json["accepted"], 0);
    assert_eq!(json["rejected"], 2);
    assert_eq!(json["results"].as_array().unwrap().len(), 2);
    assert_eq!(h.log.append_calls(), 0);
}

#[actix_web::test]
async fn malformed_json_and_invalid_bodies_are_400_never_5xx() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let bodies: [&[u8]; 7] =
        [b"{not json", b"", b"[]", b"{\"events\": 3}", b"\xff\xfe\x00", b"{\"events\": []}", b"null"];
    for body in bodies {
        let (status, _, json, text) = call!(&app, post_events(body.to_vec())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{:?}: {text}", String::from_utf8_lossy(body));
        assert!(json["error"].is_string() && json["reason"].is_string(), "{text}");
    }
    // A corrupt gzip body is the client's fault too.
    let req = post_events(b"definitely not gzip".to_vec()).insert_header((header::CONTENT_ENCODING, "gzip"));
    let (status, _, _, text) = call!(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(h.log.append_calls(), 0);
}

#[actix_web::test]
async fn body_over_the_limit_is_413_with_json_reason() {
    let h = harness_with(Limits { max_body_bytes: 1000, ..Limits::default() }, Duration::from_secs(5));
    let app = test::init_service(app(h.data.clone())).await;
    let events: Vec<Value> = (0..40).map(|i| session_start(&format!("p{i}"))).collect();
    let (status, _, json, text) = call!(&app, post_events(json!({ "events": events }).to_string())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert_eq!(json["error"], "too_large");
    assert_eq!(h.log.append_calls(), 0);
}

#[actix_web::test]
async fn too_many_events_is_400() {
    let h = harness_with(Limits { max_events: 3, ..Limits::default() }, Duration::from_secs(5));
    let app = test::init_service(app(h.data.clone())).await;
    let events: Vec<Value> = (0..4).map(|i| session_start(&format!("p{i}"))).collect();
    let (status, _, json, text) = call!(&app, post_events(json!({ "events": events }).to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(json["error"], "too_many_events");
    assert_eq!(h.log.append_calls(), 0);
}

#[actix_web::test]
async fn missing_or_unknown_api_key_is_401_with_reason() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let body = json!({"events": [session_start("p1")]}).to_string();
    let missing = test::TestRequest::post().uri("/v1/events").set_payload(body.clone());
    let (status, headers, json, _) = call!(&app, missing).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["error"], "unauthenticated");
    assert!(json["reason"].as_str().unwrap().contains("missing"));
    assert!(headers.contains_key(header::WWW_AUTHENTICATE));
    let unknown =
        test::TestRequest::post().uri("/v1/events").insert_header(("X-API-Key", "guess")).set_payload(body.clone());
    let (status, _, json, _) = call!(&app, unknown).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(json["reason"].as_str().unwrap().contains("unknown"));
    let via_header = test::TestRequest::post().uri("/v1/events").insert_header(("X-API-Key", KEY)).set_payload(body);
    assert_eq!(call!(&app, via_header).await.0, StatusCode::ACCEPTED);
    let analytics = test::TestRequest::get().uri("/v1/analytics/space-race/funnel");
    assert_eq!(call!(&app, analytics).await.0, StatusCode::UNAUTHORIZED);
    let revoked_body = json!({"events": [session_start("p1")]}).to_string();
    let h = harness_revoking(&[&gm_gateway::auth::key_id(KEY)[..8]]);
    let revoking = test::init_service(gm_gateway::app(h.data.clone())).await;
    let revoked =
        test::TestRequest::post().uri("/v1/events").insert_header(("X-API-Key", KEY)).set_payload(revoked_body);
    let (status, _, json, _) = call!(&revoking, revoked).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(json["reason"].as_str().unwrap().contains("revoked"), "{json}");
    let other = test::TestRequest::post()
        .uri("/v1/events")
        .insert_header(("X-API-Key", OTHER_KEY))
        .set_payload(json!({"events": [session_start("p1")]}).to_string());
    assert_eq!(call!(&revoking, other).await.0, StatusCode::ACCEPTED, "other keys stay valid");
}

#[actix_web::test]
async fn game_keys_only_ingest_and_queries_need_an_analyst_or_admin_token() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let uris = [
        "/v1/players/space-race/p1",
        "/v1/analytics/space-race/funnel",
        "/v1/analytics/space-race/active-users?from=2025-01-01&to=2025-01-02",
    ];
    for uri in uris {
        // A game key, even of the game itself, does not read (game API keys only ingest).
        for key in [KEY, OTHER_KEY] {
            let req = test::TestRequest::get().uri(uri).insert_header(("X-API-Key", key));
            let (status, _, json, text) = call!(&app, req).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{uri}: {text}");
            assert_eq!(json["error"], "forbidden");
        }
        for roles in [&["compliance"][..], &[], &["superuser"]] {
            let req = test::TestRequest::get().uri(uri).insert_header(bearer(roles));
            assert_eq!(call!(&app, req).await.0, StatusCode::FORBIDDEN, "{uri} with {roles:?}");
        }
        let req = test::TestRequest::get().uri(uri).insert_header(("Authorization", format!("Bearer {METRICS_TOKEN}")));
        assert_eq!(call!(&app, req).await.0, StatusCode::FORBIDDEN, "{uri} with the metrics token");
        for roles in [&["analyst"][..], &["admin"]] {
            let req = test::TestRequest::get().uri(uri).insert_header(bearer(roles));
            let (status, _, _, text) = call!(&app, req).await;
            assert_eq!(status, StatusCode::OK, "{uri} with {roles:?}: {text}");
        }
    }
    // People do not ingest: the game is named by the key.
    let body = json!({"events": [session_start("p1")]}).to_string();
    for roles in [&["admin"][..], &["analyst"]] {
        let req = test::TestRequest::post().uri("/v1/events").insert_header(bearer(roles)).set_payload(body.clone());
        assert_eq!(call!(&app, req).await.0, StatusCode::FORBIDDEN);
    }
    assert_eq!(h.log.append_calls(), 0);
}

#[actix_web::test]
async fn expired_forged_and_foreign_tokens_are_401_on_queries() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let now = Utc::now().timestamp();
    let claims =
        |iss: &str, aud: &str, exp: i64| json!({"sub": "x", "iss": iss, "aud": aud, "exp": exp, "roles": ["admin"]});
    let tokens = [
        ("expired", issuer().sign(&claims(ISSUER, AUDIENCE, now - 600))),
        ("issuer", issuer().sign(&claims("https://elsewhere", AUDIENCE, now + 600))),
        ("audience", issuer().sign(&claims(ISSUER, "another-api", now + 600))),
        ("signature", TestIssuer::generate("test-key").sign(&claims(ISSUER, AUDIENCE, now + 600))),
    ];
    for (expected, token) in tokens {
        let req = test::TestRequest::get()
            .uri("/v1/analytics/space-race/funnel")
            .insert_header(("Authorization", format!("Bearer {token}")));
        let (status, headers, json, text) = call!(&app, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{expected}: {text}");
        assert!(json["reason"].as_str().unwrap().contains(expected), "{expected}: {text}");
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
    }
}

#[actix_web::test]
async fn every_route_but_health_requires_credentials() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    for (path, method, _) in gm_gateway::routes() {
        let mut uri = path.replace("{game_id}", "space-race").replace("{player_id}", "p1");
        if path == "/remote_configs/v1/init" {
            // The GameAnalytics SDKs name their game key in the query (400 without it).
            uri.push_str("?game_key=0123456789abcdef0123456789abcdef");
        }
        let req = match method {
            "get" => test::TestRequest::get(),
            _ => test::TestRequest::post().set_payload("{}"),
        }
        .uri(&uri);
        let status = call!(&app, req).await.0;
        // The development sign-in is open: it lists only the embedded default's public tokens.
        if path.starts_with("/health/") || path == "/v1/dev-sign-in" {
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{path}");
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} answered without credentials");
        }
    }
}

#[actix_web::test]
async fn metrics_need_the_metrics_token_or_an_admin_and_docs_any_credentials() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let get = |uri: &str, auth: String| test::TestRequest::get().uri(uri).insert_header(("Authorization", auth));
    let admin = format!("Bearer {}", issuer().token("root", &["admin"]));
    let analyst_token = format!("Bearer {}", issuer().token("ana", &["analyst"]));
    let key = format!("Bearer {KEY}");
    let metrics_token = format!("Bearer {METRICS_TOKEN}");
    assert_eq!(call!(&app, get("/metrics", metrics_token.clone())).await.0, StatusCode::OK);
    assert_eq!(call!(&app, get("/metrics", admin.clone())).await.0, StatusCode::OK);
    assert_eq!(call!(&app, get("/metrics", analyst_token.clone())).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call!(&app, get("/metrics", key.clone())).await.0, StatusCode::FORBIDDEN);
    for auth in [admin, analyst_token, key] {
        assert_eq!(call!(&app, get("/openapi.json", auth)).await.0, StatusCode::OK);
    }
    assert_eq!(call!(&app, get("/openapi.json", metrics_token)).await.0, StatusCode::FORBIDDEN);
}

#[actix_web::test]
async fn log_failure_is_503_with_retry_after_and_claims_nothing() {
    let h = harness();
    h.log.fail.store(true, Ordering::SeqCst);
    let app = test::init_service(app(h.data.clone())).await;
    let body = json!({"events": [session_start("p1"), bad_purchase("p2")]});
    let (status, headers, json, text) = call!(&app, post_events(body.to_string())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
    assert_eq!(json["error"], "unavailable");
    assert!(json.get("accepted").is_none(), "{text}");
    assert!(h.log.records().is_empty());
    let metrics = h.metrics.encode();
    assert!(metrics.contains("gamemetrics_events_accepted_total 0"), "{metrics}");
}

#[actix_web::test]
async fn slow_log_times_out_with_503() {
    let h = harness_with(Limits::default(), Duration::from_millis(50));
    *h.log.delay.lock().unwrap() = Some(Duration::from_secs(2));
    let app = test::init_service(app(h.data.clone())).await;
    let (status, headers, json, _) =
        call!(&app, post_events(json!({"events": [session_start("p1")]}).to_string())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["error"], "timeout");
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
}

#[actix_web::test]
async fn gzipped_batch_is_accepted() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let body = json!({"events": [session_start("p1"), session_start("p2")]}).to_string();
    let req = post_events(gzip(body.as_bytes())).insert_header((header::CONTENT_ENCODING, "gzip"));
    let (status, _, json, text) = call!(&app, req).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert_eq!(json["accepted"], 2);
    assert_eq!(h.log.records().len(), 2);
}

#[actix_web::test]
async fn gzip_bomb_is_refused_with_413_after_inflating_at_most_the_limit() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    // 50 MB of zeros compress to ~50 KB: under the 1 MB limit on the wire, far over it inflated.
    let bomb = gzip(&vec![0u8; 50 * 1024 * 1024]);
    assert!(bomb.len() < Limits::default().max_body_bytes);
    let started = std::time::Instant::now();
    let req = post_events(bomb).insert_header((header::CONTENT_ENCODING, "gzip"));
    let (status, _, json, text) = call!(&app, req).await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert_eq!(json["error"], "too_large");
    // Inflating 50 MB takes far longer than the ~1 MB we allow ourselves to inflate.
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(h.log.append_calls(), 0);
}

#[actix_web::test]
async fn unsupported_content_encoding_is_415() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let req = post_events(b"{}".to_vec()).insert_header((header::CONTENT_ENCODING, "br"));
    let (status, _, json, _) = call!(&app, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(json["error"], "unsupported_encoding");
}

#[actix_web::test]
async fn reversed_wide_or_bad_date_ranges_are_400_with_reason() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let cases = [
        ("from=2025-02-01&to=2025-01-01", "after"),
        ("from=2020-01-01&to=2025-01-01", "at most"),
        ("from=2025-13-01&to=2025-01-01", "not a date"),
        ("to=2025-01-01", "'from'"),
    ];
    for (query, expected) in cases {
        let req = test::TestRequest::get()
            .uri(&format!("/v1/analytics/space-race/sessions?{query}"))
            .insert_header(analyst());
        let (status, _, json, text) = call!(&app, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {text}");
        assert!(json["reason"].as_str().unwrap().contains(expected), "{query}: {text}");
    }
}

#[actix_web::test]
async fn the_funnel_follows_the_games_configured_order_with_conversions_and_null_rates() {
    let log = Arc::new(FakeLog::default());
    let config = harness_config(Limits::default(), Duration::from_secs(10));
    let orders = [("space-race".to_string(), vec!["tutorial".to_string(), "level-2".to_string()])].into();
    let state =
        AppState::new(config, log, Arc::new(FakeQueries), Metrics::new(), Readiness::new()).with_funnel_orders(orders);
    let app = test::init_service(app(web::Data::new(state))).await;
    let req = test::TestRequest::get().uri("/v1/analytics/space-race/funnel").insert_header(analyst());
    let (status, _, json, text) = call!(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let steps = json["steps"].as_array().unwrap();
    let levels: Vec<&str> = steps.iter().map(|s| s["level_id"].as_str().unwrap()).collect();
    assert_eq!(levels, ["tutorial", "level-2", "level-10"], "configured, then the others");
    let conversions: Vec<&Value> = steps.iter().map(|s| &s["conversion_from_previous"]).collect();
    assert_eq!(conversions, [&Value::Null, &serde_json::json!(0.5), &serde_json::json!(0.5)]);
    // Nobody completed (the fake's counts): rate 0.0 where players started, never NaN.
    assert_eq!(steps[0]["completion_rate"], serde_json::json!(0.0));
    assert_eq!(steps[0]["median_seconds_to_complete"], Value::Null);
}

#[actix_web::test]
async fn queries_answer_rows_404_and_503() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let get = |uri: &str| test::TestRequest::get().uri(uri).insert_header(analyst());
    let (status, _, json, text) =
        call!(&app, get("/v1/analytics/space-race/active-users?from=2025-01-01&to=2025-01-03")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(json["game_id"], "space-race");
    assert_eq!(json["from"], "2025-01-01");
    assert_eq!(json["days"].as_array().unwrap().len(), 3);
    let (status, _, json, _) = call!(&app, get("/v1/players/space-race/p1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["player_id"], "p1");
    assert_eq!(call!(&app, get("/v1/players/space-race/nobody")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call!(&app, get("/v1/players/space-race/bad%20id")).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call!(&app, get("/v1/analytics/Space/funnel")).await.0, StatusCode::BAD_REQUEST);
    let (status, _, json, _) = call!(&app, get("/v1/analytics/space-race/funnel")).await;
    assert_eq!(status, StatusCode::OK);
    // Levels in natural order when the game has no configured order.
    let levels: Vec<&str> = json["steps"].as_array().unwrap().iter().map(|s| s["level_id"].as_str().unwrap()).collect();
    assert_eq!(levels, ["level-2", "level-10", "tutorial"]);
    let (status, headers, _, _) =
        call!(&app, get("/v1/analytics/space-race/revenue?from=2025-01-01&to=2025-01-03")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
}

#[actix_web::test]
async fn metrics_label_routes_by_pattern_never_by_raw_ids() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let req = test::TestRequest::get().uri("/v1/players/space-race/secret-player-42").insert_header(analyst());
    call!(&app, req).await;
    call!(&app, test::TestRequest::get().uri("/nowhere/secret-player-43")).await;
    let metrics = test::TestRequest::get().uri("/metrics").insert_header(("X-API-Key", METRICS_TOKEN));
    let (status, headers, _, text) = call!(&app, metrics).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get(header::CONTENT_TYPE).unwrap().to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    assert!(text.contains("route=\"/v1/players/{game_id}/{player_id}\""), "{text}");
    assert!(text.contains("status=\"404\""), "{text}");
    assert!(text.contains("route=\"unmatched\""), "{text}");
    assert!(text.contains("gamemetrics_http_request_duration_seconds"), "{text}");
    assert!(!text.contains("secret-player"), "{text}");
}

#[actix_web::test]
async fn unknown_routes_and_methods_answer_json() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let (status, _, json, _) = call!(&app, test::TestRequest::get().uri("/v2/nothing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["error"], "not_found");
    let (status, _, json, _) = call!(&app, test::TestRequest::get().uri("/v1/events")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(json["error"], "method_not_allowed");
}

#[actix_web::test]
async fn ready_is_503_naming_components_until_all_are_ready() {
    let h = harness();
    h.readiness.register("log");
    h.readiness.register("store");
    let app = test::init_service(app(h.data.clone())).await;
    assert_eq!(call!(&app, test::TestRequest::get().uri("/health/live")).await.0, StatusCode::OK);
    h.readiness.set_ready("log", true);
    let (status, _, json, _) = call!(&app, test::TestRequest::get().uri("/health/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["not_ready"], json!(["store"]));
    h.readiness.set("store", Err("SELECT 1 timed out after 2 s".into()));
    let (status, _, json, _) = call!(&app, test::TestRequest::get().uri("/health/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["reasons"], json!({"store": "SELECT 1 timed out after 2 s"}));
    h.readiness.set_ready("store", true);
    let (status, _, json, _) = call!(&app, test::TestRequest::get().uri("/health/ready")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["reasons"], json!({}));
    // Back to 503 when a component fails again, 200 after it recovers.
    h.readiness.set("log", Err("brokers unreachable".into()));
    assert_eq!(call!(&app, test::TestRequest::get().uri("/health/ready")).await.0, StatusCode::SERVICE_UNAVAILABLE);
    h.readiness.set("log", Ok(()));
    assert_eq!(call!(&app, test::TestRequest::get().uri("/health/ready")).await.0, StatusCode::OK);
}

#[actix_web::test]
async fn openapi_document_is_served() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let (status, _, json, _) =
        call!(&app, test::TestRequest::get().uri("/openapi.json").insert_header(analyst())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(json["paths"]["/v1/events"]["post"].is_object());
}

fn http_exchange(addr: std::net::SocketAddr, request: Vec<u8>) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(&request).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

#[actix_web::test]
async fn serve_answers_on_a_real_socket_and_inflates_gzip_exactly_once() {
    let h = harness();
    let log = h.log.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::try_unwrap(h.data.into_inner()).ok().expect("sole owner of the state");
    let server = gm_gateway::serve(listener, state).await.unwrap();
    let handle = server.handle();
    let running = actix_web::rt::spawn(server);

    let live = b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec();
    let body = gzip(json!({"events": [session_start("p1")]}).to_string().as_bytes());
    let mut post = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-API-Key: {KEY}\r\n\
         Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    post.extend_from_slice(&body);
    let (live, posted) =
        tokio::task::spawn_blocking(move || (http_exchange(addr, live), http_exchange(addr, post))).await.unwrap();
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    assert!(posted.starts_with("HTTP/1.1 202"), "{posted}");
    assert_eq!(log.records().len(), 1);

    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// A client that sends its request head slowly (slowloris) is cut off after the head timeout
/// instead of holding a worker: `serve` bounds it by the request timeout, at most 5 s.
#[actix_web::test]
async fn a_client_sending_its_headers_slowly_is_disconnected() {
    let h = harness_configured(|c| c.request_timeout = Duration::from_secs(1));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::try_unwrap(h.data.into_inner()).ok().expect("sole owner of the state");
    let server = gm_gateway::serve(listener, state).await.unwrap();
    let handle = server.handle();
    let running = actix_web::rt::spawn(server);

    let (elapsed, answer) = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = std::time::Instant::now();
        // Half a request head, then nothing more.
        stream.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n").unwrap();
        let mut out = Vec::new();
        let read = stream.read_to_end(&mut out);
        assert!(read.is_ok(), "the server closed the connection rather than letting the read time out: {read:?}");
        (started.elapsed(), String::from_utf8_lossy(&out).to_string())
    })
    .await
    .unwrap();
    assert!(elapsed < Duration::from_secs(4), "cut off after {elapsed:?}");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");

    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

const SECRET: &str = "space-signing-secret-0001";

fn signing_harness() -> Harness {
    harness_configured(|c| {
        c.signing_secrets = vec![gm_gateway::SigningSecret {
            game_id: GameId::parse("space-race").unwrap(),
            secret: Secret(SECRET.into()),
        }]
    })
}

#[actix_web::test]
async fn a_game_with_a_secret_needs_the_hmac_of_the_timestamp_and_raw_possibly_gzipped_body_once() {
    use gm_gateway::signature::sign_hex;
    let h = signing_harness();
    let app = test::init_service(app(h.data.clone())).await;
    let body = gzip(json!({"events": [session_start("p1")]}).to_string().as_bytes());
    let now = chrono::Utc::now().timestamp();
    let signed = |timestamp: i64, sig: String| {
        post_events(body.clone())
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .insert_header(("X-GM-Timestamp", timestamp.to_string()))
            .insert_header(("X-GM-Signature", sig))
    };
    let good = sign_hex(SECRET.as_bytes(), now, &body);
    let (status, _, _, text) = call!(&app, signed(now, good.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    // The same request again is a replay: 401, and nothing lands.
    let (status, _, json, text) = call!(&app, signed(now, good.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert!(json["reason"].as_str().unwrap().contains("replay"), "{text}");
    // Signed again a second later (a client's retry), in base64: accepted.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD
        .encode(hex::decode(sign_hex(SECRET.as_bytes(), now - 1, &body)).unwrap());
    assert_eq!(call!(&app, signed(now - 1, b64)).await.0, StatusCode::ACCEPTED);
    // A signature of the inflated body, of another secret, or for another time: 401.
    let inflated = json!({"events": [session_start("p1")]}).to_string();
    for bad in [
        sign_hex(SECRET.as_bytes(), now, inflated.as_bytes()),
        sign_hex(b"another-secret", now, &body),
        sign_hex(SECRET.as_bytes(), now - 2, &body),
    ] {
        let (status, _, json, text) = call!(&app, signed(now, bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
        assert!(json["reason"].as_str().unwrap().contains("does not match"), "{text}");
    }
    // Signed ten minutes ago: refused, whatever the signature.
    let old = now - 600;
    let (status, _, json, text) = call!(&app, signed(old, sign_hex(SECRET.as_bytes(), old, &body))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert!(json["reason"].as_str().unwrap().contains("from the gateway's clock"), "{text}");
    let unsigned = post_events(body.clone()).insert_header((header::CONTENT_ENCODING, "gzip"));
    let (status, _, json, _) = call!(&app, unsigned).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(json["reason"].as_str().unwrap().contains("requires signed requests"));
    assert_eq!(h.log.records().len(), 2, "only the two signed batches landed");
    // A game without a secret needs no signature.
    let farm = test::TestRequest::post()
        .uri("/v1/events")
        .insert_header(("X-API-Key", OTHER_KEY))
        .set_payload(json!({"events": [session_start("p1")]}).to_string());
    assert_eq!(call!(&app, farm).await.0, StatusCode::ACCEPTED);
}

#[actix_web::test]
async fn an_unsigned_gzip_bomb_is_refused_before_inflating() {
    let h = signing_harness();
    let app = test::init_service(app(h.data.clone())).await;
    let bomb = gzip(&vec![0u8; 50 * 1024 * 1024]);
    let started = std::time::Instant::now();
    let req = post_events(bomb).insert_header((header::CONTENT_ENCODING, "gzip"));
    assert_eq!(call!(&app, req).await.0, StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
}

fn rate_limited_harness(config: gm_gateway::RateLimitConfig) -> Harness {
    harness_configured(|c| c.rate_limits = config)
}

#[actix_web::test]
async fn a_key_over_its_request_quota_gets_429_with_retry_after_and_recovers() {
    let h = rate_limited_harness(gm_gateway::RateLimitConfig {
        per_key_per_second: 5,
        per_key_burst: 2,
        ..Default::default()
    });
    let app = test::init_service(app(h.data.clone())).await;
    let batch = || post_events(json!({"events": [session_start("p1")]}).to_string());
    assert_eq!(call!(&app, batch()).await.0, StatusCode::ACCEPTED);
    assert_eq!(call!(&app, batch()).await.0, StatusCode::ACCEPTED);
    let (status, headers, json, text) = call!(&app, batch()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    assert_eq!(json["error"], "rate_limited");
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
    // Another key has its own quota.
    let farm = test::TestRequest::post()
        .uri("/v1/events")
        .insert_header(("X-API-Key", OTHER_KEY))
        .set_payload(json!({"events": [session_start("p1")]}).to_string());
    assert_eq!(call!(&app, farm).await.0, StatusCode::ACCEPTED);
    // 5 per second: a slot is free again after 200 ms.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(call!(&app, batch()).await.0, StatusCode::ACCEPTED);
    assert_eq!(h.log.append_calls(), 4);
}

#[actix_web::test]
async fn events_of_a_player_over_its_quota_are_refused_one_by_one_and_the_others_land() {
    let h = rate_limited_harness(gm_gateway::RateLimitConfig {
        per_player_per_second: 10,
        per_player_burst: 2,
        ..Default::default()
    });
    let app = test::init_service(app(h.data.clone())).await;
    let events: Vec<Value> = ["hot", "hot", "hot", "cold", "hot"].iter().map(|p| session_start(p)).collect();
    let (status, _, json, text) = call!(&app, post_events(json!({ "events": events }).to_string())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let codes: Vec<&str> =
        json["results"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap_or("ok")).collect();
    assert_eq!(codes, ["ok", "ok", "rate_limited", "ok", "rate_limited"]);
    assert_eq!(h.log.records().len(), 3);
    // Nothing accepted because of the limit: 429 with Retry-After and the per-event results.
    let (status, headers, json, _) =
        call!(&app, post_events(json!({"events": [session_start("hot")]}).to_string())).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert_eq!(json["results"][0]["code"], "rate_limited");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, _, _, _) = call!(&app, post_events(json!({"events": [session_start("hot")]}).to_string())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the player's quota recovered");
    assert!(h.metrics.encode().contains("gamemetrics_events_rejected_total{reason=\"rate_limited\"} 3"));
}

fn basic(key: &str) -> (header::HeaderName, String) {
    use base64::Engine as _;
    (header::AUTHORIZATION, format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))))
}

#[actix_web::test]
async fn a_segment_batch_with_the_write_key_as_basic_user_lands_with_a_result_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness_with_privacy(dir.path()).await;
    let app = test::init_service(app(h.data.clone())).await;
    let now = Utc::now().to_rfc3339();
    let body = json!({"sentAt": now, "batch": [
        {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m-1", "timestamp": now,
         "properties": {"revenue": 4.99, "currency": "USD", "product_id": "gems"}},
        {"type": "identify", "userId": "u1", "timestamp": now, "traits": {"email": "u1@example.com"}},
        {"type": "alias", "userId": "u1", "previousId": "x"},
    ]});
    let req = test::TestRequest::post().uri("/v1/batch").insert_header(basic(KEY)).set_payload(body.to_string());
    let (status, _, json, text) = call!(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!((json["accepted"].as_u64(), json["rejected"].as_u64()), (Some(2), Some(1)), "{text}");
    assert_eq!(json["results"][2]["code"], "unknown_type");
    let records = h.log.records();
    // Both under the player's pseudonym; the e-mail sealed, nowhere in clear.
    assert_eq!(records[0].key, records[1].key);
    assert!(records[0].key.starts_with("space-race:pz_"), "{}", records[0].key);
    for r in &records {
        let text = String::from_utf8_lossy(&r.payload);
        assert!(!text.contains("u1@example.com") && !text.contains("\"u1\""), "{text}");
    }
    let RawRecord::Event(identify) = serde_json::from_slice::<RawRecord>(&records[1].payload).unwrap() else {
        panic!()
    };
    assert!(matches!(identify.personal, Some(gm_schemas::PersonalData::Sealed(_))), "{:?}", identify.personal);
    let RawRecord::Event(purchase) = serde_json::from_slice::<RawRecord>(&records[0].payload).unwrap() else {
        panic!()
    };
    assert_eq!(purchase.body.type_name(), "purchase");
    assert_eq!(purchase.event_id, gm_schemas::compat::event_id_for("space-race", "m-1"));
    // track and identify alone; a wrong write key is 401.
    let track = json!({"userId": "u2", "event": "Level Started", "properties": {"level": 1}});
    let req = test::TestRequest::post().uri("/v1/track").insert_header(basic(KEY)).set_payload(track.to_string());
    assert_eq!(call!(&app, req).await.0, StatusCode::OK);
    let identify = json!({"userId": "u2", "traits": {"name": "Bo"}});
    let req = test::TestRequest::post().uri("/v1/identify").insert_header(basic(KEY)).set_payload(identify.to_string());
    assert_eq!(call!(&app, req).await.0, StatusCode::OK);
    let req = test::TestRequest::post().uri("/v1/track").insert_header(basic("wrong")).set_payload(track.to_string());
    assert_eq!(call!(&app, req).await.0, StatusCode::UNAUTHORIZED);
    let bad = json!({"event": "Level Started"});
    let req = test::TestRequest::post().uri("/v1/track").insert_header(basic(KEY)).set_payload(bad.to_string());
    let (status, _, json, _) = call!(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["results"][0]["field"], "userId");
    assert_eq!(h.log.records().len(), 4);
}

#[actix_web::test]
async fn a_legacy_event_answers_status_and_event_id() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let post = |body: Value| {
        test::TestRequest::post().uri("/api/v1/events").insert_header(("X-API-Key", KEY)).set_payload(body.to_string())
    };
    let (status, _, json, text) = call!(
        &app,
        post(json!({"event_type": "level_up", "player_id": "p1", "game_id": "space-race",
                    "timestamp": Utc::now().to_rfc3339(), "data": {"level": 5}}))
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(json["status"], "success");
    let RawRecord::Event(e) = serde_json::from_slice::<RawRecord>(&h.log.records()[0].payload).unwrap() else {
        panic!()
    };
    assert_eq!(json["event_id"], e.event_id.to_string());
    assert_eq!(e.body.type_name(), "progression");
    let (status, _, json, _) = call!(
        &app,
        post(
            json!({"event_type": "login", "player_id": "p1", "game_id": "farm", "timestamp": Utc::now().to_rfc3339()})
        )
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!((json["status"].as_str(), json["error"].as_str()), (Some("error"), Some("wrong_game")));
    let (status, _, json, _) = call!(&app, post(json!([1, 2]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["error"], "malformed");
    assert_eq!(h.log.records().len(), 1);
}

/// The embedded privacy store, except that `ensure_players` leaves out its answer for every
/// player while `forget` is set (as the PostgreSQL upsert did for a player a concurrent
/// request had just created; issue 14).
struct ForgetfulPrivacy {
    inner: gm_embedded::SqliteStore,
    forget: AtomicBool,
}

#[async_trait]
impl gm_privacy::PrivacyStore for ForgetfulPrivacy {
    async fn ensure_players(
        &self,
        players: Vec<gm_privacy::NewPlayer>,
    ) -> Result<Vec<gm_privacy::PlayerEntry>, StoreError> {
        let answer = self.inner.ensure_players(players).await?;
        Ok(if self.forget.load(Ordering::SeqCst) { Vec::new() } else { answer })
    }
    async fn keep_personal(&self, rows: Vec<gm_privacy::StoredPersonal>) -> Result<(), StoreError> {
        self.inner.keep_personal(rows).await
    }
    async fn player(&self, s: &gm_privacy::Subject) -> Result<Option<gm_privacy::PlayerRecord>, StoreError> {
        self.inner.player(s).await
    }
    async fn personal_of(&self, s: &gm_privacy::Subject) -> Result<Vec<gm_privacy::StoredPersonal>, StoreError> {
        self.inner.personal_of(s).await
    }
    async fn resolve_pseudonyms(&self, p: &[String]) -> Result<std::collections::HashMap<String, String>, StoreError> {
        self.inner.resolve_pseudonyms(p).await
    }
    async fn begin_erasure(&self, r: gm_privacy::NewErasure) -> Result<gm_privacy::Begun, StoreError> {
        self.inner.begin_erasure(r).await
    }
    async fn add_step(&self, id: uuid::Uuid, step: gm_privacy::Step) -> Result<(), StoreError> {
        self.inner.add_step(id, step).await
    }
    async fn erasure(&self, id: uuid::Uuid) -> Result<Option<gm_privacy::Erasure>, StoreError> {
        self.inner.erasure(id).await
    }
    async fn pending_erasures(&self) -> Result<Vec<gm_privacy::Erasure>, StoreError> {
        self.inner.pending_erasures().await
    }
    async fn confirmations(&self, id: uuid::Uuid) -> Result<Vec<(String, chrono::DateTime<Utc>)>, StoreError> {
        self.inner.confirmations(id).await
    }
    async fn complete_erasure(
        &self,
        id: uuid::Uuid,
        receipt: gm_privacy::Receipt,
        steps: Vec<gm_privacy::Step>,
    ) -> Result<(), StoreError> {
        self.inner.complete_erasure(id, receipt, steps).await
    }
    async fn audit(&self, entry: gm_privacy::AuditEntry) -> Result<(), StoreError> {
        self.inner.audit(entry).await
    }
    async fn audit_trail(
        &self,
        limit: u32,
        games: Option<&[String]>,
    ) -> Result<Vec<gm_privacy::AuditEntry>, StoreError> {
        self.inner.audit_trail(limit, games).await
    }
    async fn erasures(
        &self,
        filter: &gm_privacy::store::ErasureFilter,
    ) -> Result<Vec<gm_privacy::Erasure>, StoreError> {
        self.inner.erasures(filter).await
    }
}

fn metric(h: &Harness, name: &str) -> f64 {
    let text = h.metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
}

#[actix_web::test]
async fn a_player_the_privacy_store_does_not_answer_for_is_a_503_to_retry_never_erased() {
    let dir = tempfile::tempdir().unwrap();
    let inner = gm_embedded::SqliteStore::open(&dir.path().join("store.db")).await.unwrap();
    let store = Arc::new(ForgetfulPrivacy { inner, forget: AtomicBool::new(true) });
    let h = harness_with_privacy_store(store.clone());
    let app = test::init_service(app(h.data.clone())).await;
    let now = Utc::now().to_rfc3339();
    let body = json!({"events": [
        {"type": "score", "player_id": "newcomer", "client_ts": now, "properties": {"board": "b", "value": 1}},
        {"type": "score", "player_id": "newcomer", "client_ts": now, "properties": {"board": "b", "value": 2}},
    ]})
    .to_string();
    // No answer for the player: the request fails whole, retryable; nothing refused as erased.
    let (status, headers, _, text) = call!(&app, post_events(body.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(headers.contains_key(header::RETRY_AFTER), "{headers:?}");
    assert!(!text.contains("erased"), "{text}");
    assert!(h.log.records().is_empty(), "nothing appended");
    assert_eq!(metric(&h, "gamemetrics_privacy_keys_unanswered_total"), 1.0);
    assert_eq!(metric(&h, "gamemetrics_events_refused_erased_total"), 0.0);
    // The client's retry lands both events.
    store.forget.store(false, Ordering::SeqCst);
    let (status, _, json, text) = call!(&app, post_events(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert_eq!(json["accepted"], 2, "{text}");
    assert_eq!(h.log.records().len(), 2);
}

#[actix_web::test]
async fn only_a_player_whose_erasure_exists_is_refused_as_erased_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let inner = gm_embedded::SqliteStore::open(&dir.path().join("store.db")).await.unwrap();
    let store = Arc::new(ForgetfulPrivacy { inner, forget: AtomicBool::new(false) });
    let h = harness_with_privacy_store(store.clone());
    let app = test::init_service(app(h.data.clone())).await;
    let master = gm_privacy::MasterKey::from_bytes([5; 32]);
    let game = GameId::parse("space-race").unwrap();
    let now = Utc::now();
    store
        .begin_erasure(gm_privacy::NewErasure {
            erasure_id: uuid::Uuid::now_v7(),
            subject: master.subject_hasher().subject(&game, &PlayerId::parse("gone").unwrap()),
            game_id: game,
            reason: "test".into(),
            requested_by: "test".into(),
            requested_at: now,
            suppressed_until: now + chrono::Duration::days(30),
        })
        .await
        .unwrap();
    let ts = now.to_rfc3339();
    let body = json!({"events": [
        {"type": "score", "player_id": "gone", "client_ts": ts, "properties": {"board": "b", "value": 1}},
        {"type": "score", "player_id": "stays", "client_ts": ts, "properties": {"board": "b", "value": 2}},
        {"type": "score", "player_id": "gone", "client_ts": ts, "properties": {"board": "b", "value": 3}},
    ]})
    .to_string();
    let (status, _, json, text) = call!(&app, post_events(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let codes: Vec<&str> =
        json["results"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap_or("accepted")).collect();
    assert_eq!(codes, ["erased", "accepted", "erased"], "{text}");
    assert_eq!(metric(&h, "gamemetrics_events_refused_erased_total"), 2.0);
    assert_eq!(metric(&h, "gamemetrics_privacy_keys_unanswered_total"), 0.0);
}

/// A gateway on one embedded store for privacy, leaderboards, retention and recommendations
/// (every game-bound route answers from a real store).
fn harness_on_store(store: Arc<gm_embedded::SqliteStore>) -> Harness {
    let log = Arc::new(FakeLog::default());
    let metrics = Metrics::new();
    let readiness = Readiness::new();
    let settings = gm_privacy::PrivacySettings {
        master_key: gm_privacy::MasterKey::from_bytes([5; 32]),
        suppression: chrono::Duration::days(30),
        key_cache_ttl: Duration::from_secs(30),
        poll_interval: Duration::from_millis(100),
    };
    let privacy = Arc::new(gm_privacy::PrivacyService::new(
        store.clone(),
        log.clone(),
        settings,
        &gm_projections::ProjectionName::ALL.map(|p| p.as_str()),
        metrics.clone(),
    ));
    let config = harness_config(Limits::default(), Duration::from_secs(10));
    let state = AppState::new(config, log.clone(), Arc::new(FakeQueries), metrics.clone(), readiness.clone())
        .with_privacy(privacy)
        .with_game_queries(store.clone())
        .with_recommendations(store);
    Harness { log, metrics, readiness, data: web::Data::new(state) }
}

/// `Authorization` with a token of both the analyst and the compliance role on `games`.
fn scoped(games: &[&str]) -> (header::HeaderName, String) {
    (header::AUTHORIZATION, format!("Bearer {}", issuer().token_for_games("scoped", &["analyst", "compliance"], games)))
}

/// Item 1 of issue 17: a token reaches only the games of its `games` claim, on every route
/// about a game (in the path, in the body, or the game of the erasure or audit entry asked
/// for); `*` reaches every game; a token without the claim reaches none.
#[actix_web::test]
async fn tokens_reach_only_the_games_of_their_games_claim_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(gm_embedded::SqliteStore::open(&dir.path().join("store.db")).await.unwrap());
    let h = harness_on_store(store);
    let app = test::init_service(app(h.data.clone())).await;
    // Something held about a player of each game.
    for key in [KEY, OTHER_KEY] {
        let req = post_events(json!({"events": [session_start("p1")]}).to_string())
            .insert_header((header::AUTHORIZATION, format!("Bearer {key}")));
        assert_eq!(call!(&app, req).await.0, StatusCode::ACCEPTED);
    }
    let no_claim = {
        let now = Utc::now().timestamp();
        let claims = json!({"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600,
                            "roles": ["analyst", "compliance"]});
        (header::AUTHORIZATION, format!("Bearer {}", issuer().sign(&claims)))
    };
    let refused = |status: StatusCode, json: &Value, text: &str, game: &str, what: &str| {
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {text}");
        assert_eq!(json["error"], "forbidden", "{what}: {text}");
        assert!(
            json["reason"].as_str().unwrap_or("").contains(&format!("may not access game '{game}'")),
            "{what}: {text}"
        );
    };
    // Past authorization: whatever the route answers then (the fake revenue store is a 503).
    let allowed = |status: StatusCode, text: &str, what: &str| {
        assert!(![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status), "{what}: {status} {text}");
    };

    // Every route, classified: a route added later without a game check fails here.
    let ungamed = [
        "/v1/events",
        "/v1/batch",
        "/v1/track",
        "/v1/identify",
        "/api/v1/events",
        // GameAnalytics' ingest: the game key in the path names the game.
        "/v2/{game_key}/init",
        "/v2/{game_key}/events",
        "/remote_configs/v1/init",
        "/v1/privacy/erasures",
        "/v1/privacy/erasures/{erasure_id}",
        "/v1/privacy/audit",
        "/v1/privacy/receipts/verify",
        // Who the token is, and the development sign-in: no game named.
        "/v1/me",
        "/v1/dev-sign-in",
        // Operators' status: no game's data (gateway/src/status.rs).
        "/v1/status",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/openapi.json",
    ];
    let mut game_routes = 0;
    for (path, method, _) in gm_gateway::routes() {
        if !path.contains("{game_id}") {
            assert!(ungamed.contains(&path), "{method} {path}: a new route; say how it checks the game");
            continue;
        }
        assert_eq!(method, "get", "{path}");
        game_routes += 1;
        let uri = |game: &str| {
            format!(
                "{}?from=2025-01-01&to=2025-01-02",
                path.replace("{game_id}", game).replace("{player_id}", "p1").replace("{board}", "b")
            )
        };
        for (game, other) in [("space-race", "farm"), ("farm", "space-race")] {
            let what = format!("{path} for {game} with a token of {other}");
            let (status, _, json, text) =
                call!(&app, test::TestRequest::get().uri(&uri(game)).insert_header(scoped(&[other]))).await;
            refused(status, &json, &text, game, &what);
            let (status, _, json, text) =
                call!(&app, test::TestRequest::get().uri(&uri(game)).insert_header(no_claim.clone())).await;
            refused(status, &json, &text, game, &format!("{path} with no games claim"));
            assert!(json["reason"].as_str().unwrap().contains("names no game"), "{text}");
            for games in [&[game][..], &[other, game], &["*"]] {
                let req = test::TestRequest::get().uri(&uri(game)).insert_header(scoped(games));
                let (status, _, _, text) = call!(&app, req).await;
                allowed(status, &text, &format!("{path} for {game} with a token of {games:?}"));
            }
        }
    }
    assert_eq!(game_routes, 12, "every route naming a game in its path was tried");

    // Erasure: the game is in the body.
    let erase = |game: &str, token: (header::HeaderName, String)| {
        test::TestRequest::post()
            .uri("/v1/privacy/erasures")
            .insert_header(token)
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .set_payload(json!({"game_id": game, "player_id": "p1", "reason": "ticket 17"}).to_string())
    };
    let (status, _, json, text) = call!(&app, erase("space-race", scoped(&["farm"]))).await;
    refused(status, &json, &text, "space-race", "erasure of another game");
    let (status, _, json, text) = call!(&app, erase("space-race", no_claim.clone())).await;
    refused(status, &json, &text, "space-race", "erasure with no games claim");
    let (status, _, space_erasure, text) = call!(&app, erase("space-race", scoped(&["space-race"]))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let (status, _, farm_erasure, text) = call!(&app, erase("farm", scoped(&["*"]))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");

    // An erasure by id: the game is the erasure's.
    for (erasure, game, other) in [(&space_erasure, "space-race", "farm"), (&farm_erasure, "farm", "space-race")] {
        let uri = format!("/v1/privacy/erasures/{}", erasure["erasure_id"].as_str().unwrap());
        let (status, _, json, text) =
            call!(&app, test::TestRequest::get().uri(&uri).insert_header(scoped(&[other]))).await;
        refused(status, &json, &text, game, "an erasure of another game");
        for token in [scoped(&[game]), scoped(&["*"])] {
            let (status, _, json, text) = call!(&app, test::TestRequest::get().uri(&uri).insert_header(token)).await;
            assert_eq!(status, StatusCode::OK, "{text}");
            assert_eq!(json["game_id"], game);
        }
    }

    // The audit trail: only the entries of the token's games; `*` sees them all.
    let audit =
        |query: &str, token| test::TestRequest::get().uri(&format!("/v1/privacy/audit{query}")).insert_header(token);
    let games_listed = |json: &Value| -> std::collections::BTreeSet<String> {
        json["entries"].as_array().unwrap().iter().map(|e| e["game_id"].as_str().unwrap_or("").to_string()).collect()
    };
    let (status, _, json, text) = call!(&app, audit("", scoped(&["farm"]))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(games_listed(&json), ["farm".to_string()].into(), "{text}");
    let (status, _, json, text) = call!(&app, audit("", scoped(&["space-race"]))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(games_listed(&json), ["space-race".to_string()].into(), "{text}");
    let (status, _, json, text) = call!(&app, audit("", scoped(&["*"]))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(games_listed(&json), ["farm".to_string(), "space-race".to_string()].into(), "{text}");
    let (status, _, json, text) = call!(&app, audit("", no_claim.clone())).await;
    assert_eq!((status, json["entries"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{text}");
    let (status, _, json, text) = call!(&app, audit("?game_id=space-race", scoped(&["farm"]))).await;
    refused(status, &json, &text, "space-race", "the audit of another game");
    let (status, _, json, text) = call!(&app, audit("?game_id=farm", scoped(&["*"]))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(games_listed(&json), ["farm".to_string()].into(), "{text}");

    // The list of erasures: only those of the token's games, the latest first.
    let list =
        |query: &str, token| test::TestRequest::get().uri(&format!("/v1/privacy/erasures{query}")).insert_header(token);
    let ids = |json: &Value| -> Vec<String> {
        json["erasures"].as_array().unwrap().iter().map(|e| e["erasure_id"].as_str().unwrap().to_string()).collect()
    };
    let (space_id, farm_id) =
        (space_erasure["erasure_id"].as_str().unwrap(), farm_erasure["erasure_id"].as_str().unwrap());
    let (status, _, json, text) = call!(&app, list("", scoped(&["*"]))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(ids(&json), vec![farm_id, space_id], "{text}");
    assert_eq!(json["erasures"][0]["timeline"][0]["step"], "requested", "{text}");
    let (_, _, json, text) = call!(&app, list("", scoped(&["farm"]))).await;
    assert_eq!(ids(&json), vec![farm_id], "{text}");
    let (_, _, json, text) = call!(&app, list("?game_id=space-race&status=pending", scoped(&["*"]))).await;
    assert_eq!(ids(&json), vec![space_id], "{text}");
    let (_, _, json, text) = call!(&app, list("?status=completed", scoped(&["*"]))).await;
    assert_eq!(ids(&json), Vec::<String>::new(), "{text}");
    let (_, _, json, text) = call!(&app, list("", no_claim.clone())).await;
    assert_eq!(ids(&json), Vec::<String>::new(), "{text}");
    let (status, _, json, text) = call!(&app, list("?game_id=space-race", scoped(&["farm"]))).await;
    refused(status, &json, &text, "space-race", "the erasures of another game");
    for bad in ["?status=done", "?limit=0", "?limit=1001", "?game_id=no%20game"] {
        assert_eq!(call!(&app, list(bad, scoped(&["*"]))).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, _, _, text) = call!(&app, list("", bearer(&["analyst"]))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an analyst lists no erasure: {text}");
}

/// A receipt is valid only as this deployment signed it: altered, or signed under another
/// master key, it is `valid: false`; only compliance or admin tokens of its game may ask.
#[actix_web::test]
async fn receipts_verify_only_as_signed_by_this_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(gm_embedded::SqliteStore::open(&dir.path().join("store.db")).await.unwrap());
    let h = harness_on_store(store);
    let app = test::init_service(app(h.data.clone())).await;
    let erasure = gm_privacy::Erasure {
        erasure_id: uuid::Uuid::now_v7(),
        game_id: "space-race".into(),
        subject: "ab".repeat(32),
        status: gm_privacy::ErasureStatus::Pending,
        reason: "ticket 18".into(),
        requested_by: "someone".into(),
        requested_at: Utc::now(),
        completed_at: None,
        timeline: Vec::new(),
        receipt: None,
    };
    let stores = gm_privacy::receipt_stores(&[("funnel".into(), Utc::now())], true, false);
    // The harness's master key, and another deployment's.
    let ours = gm_privacy::MasterKey::from_bytes([5; 32]).receipt_signer();
    let theirs = gm_privacy::MasterKey::from_bytes([6; 32]).receipt_signer();
    let receipt = gm_privacy::Receipt::signed(&erasure, Utc::now(), stores, &ours);
    let verify = |body: String, token| {
        test::TestRequest::post()
            .uri("/v1/privacy/receipts/verify")
            .insert_header(token)
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .set_payload(body)
    };
    // As downloaded: the JSON the erasure route serves.
    let (status, _, json, text) =
        call!(&app, verify(serde_json::to_string(&receipt).unwrap(), scoped(&["space-race"]))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        (json["valid"].as_bool(), json["erasure_id"].as_str()),
        (Some(true), Some(erasure.erasure_id.to_string().as_str()))
    );
    assert!(json.get("reason").is_none(), "{text}");
    let mut altered = receipt.clone();
    altered.stores.pop();
    let foreign = gm_privacy::Receipt::signed(&erasure, receipt.completed_at, receipt.stores.clone(), &theirs);
    for (what, r) in [("altered", altered), ("signed by another deployment", foreign)] {
        let (status, _, json, text) =
            call!(&app, verify(serde_json::to_string(&r).unwrap(), bearer(&["compliance"]))).await;
        assert_eq!((status, json["valid"].as_bool()), (StatusCode::OK, Some(false)), "{what}: {text}");
        assert!(json["reason"].as_str().unwrap().contains("does not match"), "{text}");
    }
    let body = serde_json::to_string(&receipt).unwrap();
    let (status, _, json, text) = call!(&app, verify(body.clone(), scoped(&["farm"]))).await;
    assert_eq!((status, json["error"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{text}");
    assert_eq!(call!(&app, verify(body.clone(), analyst())).await.0, StatusCode::FORBIDDEN);
    let req = test::TestRequest::post().uri("/v1/privacy/receipts/verify").set_payload(body);
    assert_eq!(call!(&app, req).await.0, StatusCode::UNAUTHORIZED);
    let (status, _, json, text) = call!(&app, verify(r#"{"erasure_id": 1}"#.into(), bearer(&["admin"]))).await;
    assert_eq!((status, json["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_input")), "{text}");
}

/// Issue 17, item 7: a body declared as something other than JSON is 415
/// `unsupported_media_type` on every route that takes JSON, before anything is appended;
/// what Segment's SDKs send (analytics.js: `text/plain` with a JSON body) stays accepted, and
/// so does a body with no `Content-Type`.
#[actix_web::test]
async fn a_body_that_is_not_json_is_415_and_segments_text_plain_stays_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness_with_privacy(dir.path()).await;
    let app = test::init_service(app(h.data.clone())).await;
    let batch = json!({"events": [session_start("p1")]}).to_string();
    let post = |uri: &str, content_type: Option<&str>, body: String| {
        let mut req = test::TestRequest::post().uri(uri).insert_header(basic(KEY)).set_payload(body);
        if let Some(t) = content_type {
            req = req.insert_header((header::CONTENT_TYPE, t));
        }
        req
    };
    let refused = [
        ("/v1/events", "text/plain", batch.clone()),
        ("/v1/events", "application/x-www-form-urlencoded", format!("events={batch}")),
        ("/v1/events", "multipart/form-data; boundary=x", batch.clone()),
        ("/v1/events", "application/xml", "<events/>".to_string()),
        ("/v1/events", "application/json; charset=iso-8859-1", batch.clone()),
        ("/api/v1/events", "text/plain", json!({"event_type": "login", "player_id": "p1"}).to_string()),
        ("/v1/batch", "text/html", json!({"batch": []}).to_string()),
        ("/v1/track", "application/octet-stream", json!({"userId": "u1", "event": "x"}).to_string()),
    ];
    for (uri, content_type, body) in refused {
        let (status, _, json, text) = call!(&app, post(uri, Some(content_type), body)).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{uri} {content_type}: {text}");
        assert_eq!(json["error"], "unsupported_media_type", "{text}");
        let reason = json["reason"].as_str().unwrap();
        assert!(reason.contains("application/json") || reason.contains("UTF-8"), "{text}");
    }
    let erasure = test::TestRequest::post()
        .uri("/v1/privacy/erasures")
        .insert_header(bearer(&["compliance"]))
        .insert_header((header::CONTENT_TYPE, "text/plain"))
        .set_payload(json!({"game_id": "space-race", "player_id": "p1", "reason": "r"}).to_string());
    assert_eq!(call!(&app, erasure).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(h.log.append_calls(), 0, "nothing refused reached the log");

    // JSON in its forms, no Content-Type, and Segment's text/plain: accepted.
    for (uri, content_type, body) in [
        ("/v1/events", Some("application/json"), batch.clone()),
        ("/v1/events", Some("application/json; charset=UTF-8"), batch.clone()),
        ("/v1/events", Some("application/vnd.gamemetrics+json"), batch.clone()),
        ("/v1/events", None, batch.clone()),
        (
            "/v1/batch",
            Some("text/plain;charset=UTF-8"),
            json!({"batch": [{"type": "track", "userId": "u1", "event": "x"}]}).to_string(),
        ),
        ("/v1/track", Some("text/plain"), json!({"userId": "u1", "event": "Button Clicked"}).to_string()),
        ("/v1/identify", Some("text/plain"), json!({"userId": "u1", "traits": {"name": "Bo"}}).to_string()),
    ] {
        let (status, _, _, text) = call!(&app, post(uri, content_type, body)).await;
        assert!(status.is_success(), "{uri} {content_type:?}: {status} {text}");
    }
    // A GET is not checked; a wrong method still gets its 405.
    let get = test::TestRequest::get()
        .uri("/v1/analytics/space-race/funnel")
        .insert_header(analyst())
        .insert_header((header::CONTENT_TYPE, "text/xml"));
    assert_eq!(call!(&app, get).await.0, StatusCode::OK);
    let put = test::TestRequest::get().uri("/v1/events").insert_header((header::CONTENT_TYPE, "text/xml"));
    assert_eq!(call!(&app, put).await.0, StatusCode::METHOD_NOT_ALLOWED);
}

/// The web console: `/` and `/console/{file}` with the console's CSP (not the API's), their
/// media types, ETag revalidation and gzip; unknown files are a JSON 404.
#[actix_web::test]
async fn the_console_is_served_with_its_csp_types_etags_and_gzip() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let (status, headers, _, text) = call!(&app, test::TestRequest::get().uri("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hv(&headers, header::CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(hv(&headers, header::CONTENT_SECURITY_POLICY), gm_gateway::console::CSP);
    assert!(gm_gateway::console::CSP.contains("script-src 'self';") && !gm_gateway::console::CSP.contains("unsafe"));
    assert_eq!(hv(&headers, header::CACHE_CONTROL), "no-cache");
    assert_eq!(hv(&headers, header::X_FRAME_OPTIONS), "DENY");
    assert!(text.contains(r#"<script type="module" src="/console/app.js"></script>"#), "{text}");
    let etag = hv(&headers, header::ETAG).to_string();
    let (status, headers, _, text) =
        call!(&app, test::TestRequest::get().uri("/").insert_header((header::IF_NONE_MATCH, etag.as_str()))).await;
    assert_eq!((status, text.as_str()), (StatusCode::NOT_MODIFIED, ""));
    assert_eq!(hv(&headers, header::ETAG), etag.as_str());

    for asset in gm_gateway::console::ASSETS {
        let uri = format!("/console/{}", asset.path);
        let (status, headers, _, text) = call!(&app, test::TestRequest::get().uri(&uri)).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(hv(&headers, header::CONTENT_TYPE), gm_gateway::console::content_type(asset.path), "{uri}");
        assert_eq!(hv(&headers, header::CONTENT_SECURITY_POLICY), gm_gateway::console::CSP, "{uri}");
        assert_eq!(text.as_bytes(), asset.body, "{uri}");
    }
    assert_eq!(gm_gateway::console::content_type("app.js"), "text/javascript; charset=utf-8");
    assert_eq!(gm_gateway::console::content_type("console.css"), "text/css; charset=utf-8");

    let req = test::TestRequest::get().uri("/console/app.js").insert_header((header::ACCEPT_ENCODING, "gzip"));
    let res = test::call_service(&app, req.to_request()).await;
    assert_eq!(hv(res.headers(), header::CONTENT_ENCODING), "gzip");
    let gz = test::read_body(res).await;
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).unwrap();
    assert_eq!(plain, gm_gateway::console::asset("app.js").unwrap().body);
    // The API's answers are not compressed (clients never asked for it before the console).
    let req = test::TestRequest::get().uri("/health/live").insert_header((header::ACCEPT_ENCODING, "gzip"));
    assert!(!call!(&app, req).await.1.contains_key(header::CONTENT_ENCODING));

    for uri in ["/console/nope.js", "/console/../Cargo.toml", "/console/"] {
        let (status, headers, json, _) = call!(&app, test::TestRequest::get().uri(uri)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(json["error"], "not_found", "{uri}");
        assert_eq!(
            hv(&headers, header::CONTENT_SECURITY_POLICY),
            "default-src 'none'; frame-ancestors 'none'",
            "{uri}"
        );
    }
}

/// `GET /v1/me` for each kind of credentials: the games are the token's among those the
/// gateway knows (here the keys' games, space-race and farm).
#[actix_web::test]
async fn me_says_who_each_kind_of_token_is_and_its_known_games() {
    let h = harness_configured(|c| c.dev_analyst_token = Some(Secret("dev-analyst-token-0001".into())));
    let app = test::init_service(app(h.data.clone())).await;
    let me = |auth: String| test::TestRequest::get().uri("/v1/me").insert_header((header::AUTHORIZATION, auth));
    let (status, _, json, text) = call!(&app, me(format!("Bearer {}", issuer().token("ana", &["analyst"])))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        json,
        json!({"kind": "person", "subject": "ana", "roles": ["analyst"], "permissions": ["query", "read_api_docs", "read_status"],
               "games": ["farm", "space-race"], "all_games": true})
    );
    let scoped = issuer().token_for_games("cleo", &["compliance"], &["space-race", "not-configured"]);
    let (_, _, json, _) = call!(&app, me(format!("Bearer {scoped}"))).await;
    assert_eq!(json["games"], json!(["space-race"]), "unknown games are left out: {json}");
    assert_eq!(
        (json["all_games"].clone(), json["permissions"].clone()),
        (json!(false), json!(["privacy", "read_api_docs", "read_status"]))
    );
    let (_, _, json, _) = call!(&app, me(format!("Bearer {}", issuer().token("root", &["admin"])))).await;
    assert_eq!(json["permissions"], json!(["query", "privacy", "read_metrics", "read_api_docs", "read_status"]));
    let (_, _, json, _) = call!(&app, me(format!("Bearer {KEY}"))).await;
    assert_eq!(json["kind"], "game_key");
    assert_eq!(
        (json["games"].clone(), json["permissions"].clone()),
        (json!(["space-race"]), json!(["ingest", "read_api_docs"]))
    );
    assert_eq!(json["subject"], gm_gateway::auth::key_id(KEY), "a key is named by its id, never itself");
    let (_, _, json, _) = call!(&app, me(format!("Bearer {METRICS_TOKEN}"))).await;
    assert_eq!((json["kind"].clone(), json["games"].clone()), (json!("metrics_scraper"), json!([])));
    let (_, _, json, _) = call!(&app, me("Bearer dev-analyst-token-0001".into())).await;
    assert_eq!((json["subject"].clone(), json["roles"].clone()), (json!("dev-analyst-token"), json!(["analyst"])));
    assert_eq!(json["games"], json!(["farm", "space-race"]));
    for auth in ["Bearer wrong-token", "Bearer eyJhbGciOiJFZERTQSJ9.e30.x"] {
        assert_eq!(call!(&app, me(auth.into())).await.0, StatusCode::UNAUTHORIZED, "{auth}");
    }
    assert_eq!(call!(&app, test::TestRequest::get().uri("/v1/me")).await.0, StatusCode::UNAUTHORIZED);
}

/// The one-click development sign-in lists only the tokens the configuration hands it (the
/// embedded default's), and none otherwise; it needs no credentials.
#[actix_web::test]
async fn dev_sign_in_lists_only_the_configured_development_tokens() {
    let service = test::init_service(app(harness().data.clone())).await;
    let (status, _, json, _) = call!(&service, test::TestRequest::get().uri("/v1/dev-sign-in")).await;
    assert_eq!((status, json), (StatusCode::OK, json!({"tokens": []})));
    let mut config = harness_config(Limits::default(), Duration::from_secs(5));
    config.dev_analyst_token = Some(Secret("dev-analyst-token-0001".into()));
    config.dev_sign_ins = vec![gm_gateway::me::DevSignIn {
        role: gm_gateway::Role::Analyst,
        token: Secret("dev-analyst-token-0001".into()),
    }];
    let debug = format!("{config:?}");
    assert!(!debug.contains("dev-analyst-token-0001"), "{debug}");
    let service = test::init_service(app(harness_from(config).data.clone())).await;
    let (_, _, json, _) = call!(&service, test::TestRequest::get().uri("/v1/dev-sign-in")).await;
    assert_eq!(json, json!({"tokens": [{"role": "analyst", "token": "dev-analyst-token-0001"}]}));
    let (status, _, json, _) = call!(&service, me_request("Bearer dev-analyst-token-0001")).await;
    assert_eq!(
        (status, json["subject"].clone()),
        (StatusCode::OK, json!("dev-analyst-token")),
        "the token it gives signs in"
    );
}

/// A response header as text ("" when absent).
fn hv(headers: &header::HeaderMap, name: header::HeaderName) -> &str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

fn me_request(auth: &str) -> test::TestRequest {
    test::TestRequest::get().uri("/v1/me").insert_header((header::AUTHORIZATION, auth.to_string()))
}
