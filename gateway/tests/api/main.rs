//! The gateway's HTTP contract, exercised in-process through `actix_web::test` with an
//! in-memory log producer and read-model fakes (test doubles for these tests only). One test
//! binary, a module per concern; the harness is here.

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
    /// The gateway's privacy service, when it has one (its coordinator is not running: tests
    /// drive it).
    privacy: Option<Arc<gm_privacy::PrivacyService>>,
}

/// A harness whose gateway pseudonymises and seals (privacy store: embedded SQLite).
async fn harness_with_privacy(dir: &std::path::Path) -> Harness {
    let store = Arc::new(gm_embedded::SqliteStore::open(&dir.join("store.db")).await.unwrap());
    harness_with_privacy_store(store)
}

/// The same on a given privacy store.
fn harness_with_privacy_store(store: Arc<dyn gm_privacy::PrivacyStore>) -> Harness {
    harness_with_privacy_and(store, |state| state)
}

/// A harness whose gateway has privacy on `store`, its app state completed by `more`.
fn harness_with_privacy_and(
    store: Arc<dyn gm_privacy::PrivacyStore>,
    more: impl FnOnce(AppState) -> AppState,
) -> Harness {
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
        .with_privacy(privacy.clone());
    Harness { log, metrics, readiness, data: web::Data::new(more(state)), privacy: Some(privacy) }
}

fn harness_with(limits: Limits, timeout: Duration) -> Harness {
    harness_from(harness_config(limits, timeout))
}

fn harness_from(config: GatewayConfig) -> Harness {
    let log = Arc::new(FakeLog::default());
    let metrics = Metrics::new();
    let readiness = Readiness::new();
    let state = AppState::new(config, log.clone(), Arc::new(FakeQueries), metrics.clone(), readiness.clone());
    Harness { log, metrics, readiness, data: web::Data::new(state), privacy: None }
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

mod auth;
mod console;
mod ingest;
mod privacy;
mod queries;
mod serve;
