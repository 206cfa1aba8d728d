//! Ids of events sent without one (`Idempotency-Key` on every ingest route), the 503 an ingest
//! request answers after its timeout, and the previous platform's route: events the old
//! platform accepted kept as design events, and keyless clients of listed games. In-process
//! (`actix_web::test`) with an in-memory log producer; the timeout against a real Kafka is
//! `tests/ingest_timeout.rs`.

use actix_web::http::{header, StatusCode};
use actix_web::{test, web};
use async_trait::async_trait;
use chrono::Utc;
use gm_gateway::compat::KeylessLegacy;
use gm_gateway::{app, ApiKeyConfig, AppState, GatewayConfig};
use gm_ports::{LogError, LogProducer, NewRecord, Position, StoreError};
use gm_projections::model::{ActiveUsersDay, FunnelStep, PlayerProfile, RevenueDay, SessionsDay};
use gm_projections::{AnalyticsQueries, DateRange};
use gm_schemas::{EventBody, GameId, PlayerId, RawRecord};
use gm_telemetry::Metrics;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

const KEY: &str = "space-key";

#[derive(Default)]
struct Log {
    records: Mutex<Vec<NewRecord>>,
    delay: Option<Duration>,
}

#[async_trait]
impl LogProducer for Log {
    async fn append(&self, _topic: &str, records: Vec<NewRecord>) -> Result<Vec<Position>, LogError> {
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        let positions = (0..records.len()).map(|i| Position { partition: 0, offset: i as u64 }).collect();
        self.records.lock().unwrap().extend(records);
        Ok(positions)
    }
}

impl Log {
    fn events(&self) -> Vec<gm_schemas::EventEnvelope> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .map(|r| match serde_json::from_slice::<RawRecord>(&r.payload).unwrap() {
                RawRecord::Event(e) => e,
                other => panic!("not an event: {other:?}"),
            })
            .collect()
    }
}

struct NoQueries;

#[async_trait]
impl AnalyticsQueries for NoQueries {
    async fn player_profile(&self, _: &GameId, _: &PlayerId) -> Result<Option<PlayerProfile>, StoreError> {
        Ok(None)
    }
    async fn active_users(&self, _: &GameId, _: DateRange) -> Result<Vec<ActiveUsersDay>, StoreError> {
        Ok(vec![])
    }
    async fn sessions(&self, _: &GameId, _: DateRange) -> Result<Vec<SessionsDay>, StoreError> {
        Ok(vec![])
    }
    async fn revenue(&self, _: &GameId, _: DateRange) -> Result<Vec<RevenueDay>, StoreError> {
        Ok(vec![])
    }
    async fn funnel(&self, _: &GameId) -> Result<Vec<FunnelStep>, StoreError> {
        Ok(vec![])
    }
}

struct Harness {
    log: Arc<Log>,
    metrics: Metrics,
    data: web::Data<AppState>,
}

fn harness_with(log: Log, timeout: Duration, keyless: KeylessLegacy) -> Harness {
    let log = Arc::new(log);
    let metrics = Metrics::new();
    let config = GatewayConfig {
        api_keys: vec![
            ApiKeyConfig { game_id: GameId::parse("space-race").unwrap(), key: KEY.into() },
            ApiKeyConfig { game_id: GameId::parse("farm").unwrap(), key: "farm-key".into() },
        ],
        request_timeout: timeout,
        ..GatewayConfig::default()
    };
    let state = AppState::new(config, log.clone(), Arc::new(NoQueries), metrics.clone(), gm_gateway::Readiness::new())
        .with_keyless_legacy(keyless)
        .unwrap();
    Harness { log, metrics, data: web::Data::new(state) }
}

fn harness() -> Harness {
    harness_with(Log::default(), Duration::from_secs(5), KeylessLegacy::default())
}

fn keyless(burst: u32, trust_forwarded_for: bool) -> KeylessLegacy {
    KeylessLegacy {
        games: [GameId::parse("space-race").unwrap()].into_iter().collect(),
        per_address_per_second: 1,
        per_address_burst: burst,
        trust_forwarded_for,
    }
}

/// POSTs `body` to `uri` with `headers`; the status, the `Retry-After` header and the JSON.
async fn post(h: &Harness, uri: &str, headers: &[(&str, &str)], body: &Value) -> (StatusCode, Option<String>, Value) {
    let app = test::init_service(app(h.data.clone())).await;
    let mut req = test::TestRequest::post()
        .uri(uri)
        .peer_addr("203.0.113.7:50000".parse().unwrap())
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload(body.to_string());
    for (name, value) in headers {
        req = req.append_header((*name, *value));
    }
    let res = test::call_service(&app, req.to_request()).await;
    let status = res.status();
    let retry_after = res.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_string());
    let bytes = test::read_body(res).await;
    (status, retry_after, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn ids(reply: &Value) -> Vec<Uuid> {
    reply["results"].as_array().unwrap().iter().map(|r| r["event_id"].as_str().unwrap().parse().unwrap()).collect()
}

fn batch(own_id: Uuid) -> Value {
    let ts = Utc::now().to_rfc3339();
    json!({"events": [
        {"type": "session_start", "player_id": "p1", "client_ts": ts},
        {"type": "session_start", "player_id": "p1", "client_ts": ts},
        {"type": "design", "player_id": "p1", "client_ts": ts, "properties": {"event_id": "tap"}, "event_id": own_id},
    ]})
}

#[actix_web::test]
async fn a_batch_resent_with_its_idempotency_key_carries_the_same_ids() {
    let h = harness();
    let own = Uuid::now_v7();
    let body = batch(own);
    let auth = ("Authorization", "Bearer space-key");
    let (status, _, first) = post(&h, "/v1/events", &[auth, ("Idempotency-Key", "batch-7f3a")], &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (_, _, again) = post(&h, "/v1/events", &[auth, ("Idempotency-Key", "batch-7f3a")], &body).await;
    let (_, _, other_key) = post(&h, "/v1/events", &[auth, ("Idempotency-Key", "batch-0001")], &body).await;
    let (_, _, no_key) = post(&h, "/v1/events", &[auth], &body).await;
    let (first, again, other_key, no_key) = (ids(&first), ids(&again), ids(&other_key), ids(&no_key));
    assert_eq!(first, again, "the retry's events have the first attempt's ids");
    assert_ne!(first[0], first[1], "two identical events of one batch stay two events");
    assert_eq!((first[2], other_key[2], no_key[2]), (own, own, own), "an event's own id is kept");
    assert!(first[..2].iter().all(|id| id.get_version_num() == 5));
    assert!(other_key[..2].iter().all(|id| !first.contains(id)), "another key, other ids");
    assert!(no_key[..2].iter().all(|id| id.get_version_num() == 7), "no key: fresh ids");
    // What went to the log carries the ids answered.
    let logged: Vec<Uuid> = h.log.events().iter().map(|e| e.event_id).collect();
    assert_eq!(logged[..3], first[..]);
    assert_eq!(logged[3..6], first[..]);
}

#[actix_web::test]
async fn malformed_idempotency_keys_are_refused_with_the_reason_on_every_route() {
    let h = harness();
    let auth = ("Authorization", "Bearer space-key");
    let long = "k".repeat(256);
    let legacy = json!({"event_type": "login", "player_id": "p1"});
    let segment = json!({"batch": [{"type": "track", "event": "Boss Defeated", "userId": "p1"}]});
    let cases: [(&str, &str); 3] = [("", "empty"), (&long, "at most 255"), ("two words", "' '")];
    for (route, body) in [("/v1/events", batch(Uuid::now_v7())), ("/v1/batch", segment), ("/api/v1/events", legacy)] {
        for (key, says) in cases {
            let (status, _, reply) = post(&h, route, &[auth, ("Idempotency-Key", key)], &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{route} {key:?}: {reply}");
            assert_eq!(reply["error"], "invalid_input", "{reply}");
            let reason = reply["reason"].as_str().unwrap();
            assert!(reason.starts_with("Idempotency-Key") && reason.contains(says), "{route}: {reason}");
        }
        let twice = [auth, ("Idempotency-Key", "a"), ("Idempotency-Key", "b")];
        let (status, _, reply) = post(&h, route, &twice, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert!(reply["reason"].as_str().unwrap().contains("more than once"), "{reply}");
    }
    let (status, _, reply) = post(&h, "/v1/events", &[auth, ("Idempotency-Key", "ключ")], &batch(Uuid::now_v7())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(h.log.events().is_empty(), "nothing appended for a refused request");
}

#[actix_web::test]
async fn segment_and_legacy_retries_with_a_key_carry_the_same_ids() {
    let h = harness();
    let auth = ("Authorization", "Bearer space-key");
    let now = Utc::now().to_rfc3339();
    let seg = |sent_at: &str| {
        json!({"sentAt": sent_at, "batch": [
            {"type": "track", "event": "Boss Defeated", "userId": "p1", "timestamp": now},
            {"type": "track", "event": "Boss Defeated", "userId": "p1", "timestamp": now, "messageId": "ajs-1"}]})
    };
    let key = ("Idempotency-Key", "seg-1");
    let (status, _, first) = post(&h, "/v1/batch", &[auth, key], &seg(&now)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (_, _, again) = post(&h, "/v1/batch", &[auth, key], &seg(&Utc::now().to_rfc3339())).await;
    assert_eq!(ids(&first), ids(&again), "a Segment retry (with a new sentAt) carries the same ids");
    let (_, _, unkeyed) = post(&h, "/v1/batch", &[auth], &seg(&now)).await;
    assert_eq!(ids(&unkeyed)[1], ids(&first)[1], "messageId gives the id, key or not");
    assert_ne!(ids(&unkeyed)[0], ids(&first)[0]);

    let track = json!({"event": "Level Started", "userId": "p1", "properties": {"level": "2"}, "timestamp": now});
    let (_, _, t1) = post(&h, "/v1/track", &[auth, ("Idempotency-Key", "t-1")], &track).await;
    let (_, _, t2) = post(&h, "/v1/track", &[auth, ("Idempotency-Key", "t-1")], &track).await;
    assert_eq!(ids(&t1), ids(&t2), "{t1}");

    let legacy = json!({"event_type": "login", "player_id": "p1", "timestamp": now});
    let (status, _, l1) = post(&h, "/api/v1/events", &[auth, ("Idempotency-Key", "l-1")], &legacy).await;
    assert_eq!(status, StatusCode::OK, "{l1}");
    let (_, _, l2) = post(&h, "/api/v1/events", &[auth, ("Idempotency-Key", "l-1")], &legacy).await;
    let (_, _, l3) = post(&h, "/api/v1/events", &[auth], &legacy).await;
    assert_eq!(l1["event_id"], l2["event_id"], "{l1} {l2}");
    assert_ne!(l1["event_id"], l3["event_id"], "no key, no id: a fresh one");
}

#[actix_web::test]
async fn an_ingest_timeout_answers_503_asking_for_the_same_request_with_the_same_key() {
    let log = Log { delay: Some(Duration::from_millis(500)), ..Log::default() };
    let h = harness_with(log, Duration::from_millis(100), KeylessLegacy::default());
    let auth = ("Authorization", "Bearer space-key");
    let legacy = json!({"event_type": "login", "player_id": "p1"});
    let segment = json!({"batch": [{"type": "track", "event": "Boss Defeated", "userId": "p1"}]});
    for (route, body) in [("/v1/events", batch(Uuid::now_v7())), ("/v1/batch", segment), ("/api/v1/events", legacy)] {
        let (status, retry_after, reply) = post(&h, route, &[auth, ("Idempotency-Key", "k-1")], &body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{route}: {reply}");
        assert_eq!(retry_after.as_deref(), Some("1"), "{route}");
        assert_eq!(reply["error"], "timeout", "{reply}");
        let reason = reply["reason"].as_str().unwrap();
        assert!(reason.contains("may be in the log already") && reason.contains("same Idempotency-Key"), "{reason}");
    }
}

#[actix_web::test]
async fn legacy_events_the_typed_schema_cannot_take_are_kept_and_counted() {
    let h = harness();
    let auth = ("X-API-Key", KEY);
    let now = Utc::now().to_rfc3339();
    let sent = [
        json!({"event_type": "purchase", "player_id": "p1", "timestamp": now, "data": {"item_id": "sword"}}),
        json!({"event_type": "achievement", "player_id": "p1", "timestamp": now}),
        json!({"event_type": "achievement", "player_id": "p2", "timestamp": now, "data": {}}),
        json!({"event_type": "purchase", "player_id": "p1", "timestamp": now,
               "data": {"amount": 1.99, "currency": "usd", "item_id": "gems"}}),
    ];
    for body in &sent {
        let (status, _, reply) = post(&h, "/api/v1/events", &[auth], body).await;
        assert_eq!(status, StatusCode::OK, "{body}: {reply}");
        assert_eq!(reply["status"], "success", "{reply}");
    }
    let kinds: Vec<String> = h
        .log
        .events()
        .iter()
        .map(|e| match &e.body {
            EventBody::Design(d) => format!("design:{}", d.event_id.as_str()),
            other => other.type_name().to_string(),
        })
        .collect();
    assert_eq!(kinds, ["design:purchase", "design:achievement", "design:achievement", "purchase"]);
    let text = h.metrics.encode();
    assert!(text.contains("gamemetrics_compat_events_downgraded_total{type=\"purchase\"} 1"), "{text}");
    assert!(text.contains("gamemetrics_compat_events_downgraded_total{type=\"achievement\"} 2"), "{text}");
    // Still refused: what names no player.
    let (status, _, reply) =
        post(&h, "/api/v1/events", &[auth], &json!({"event_type": "purchase", "timestamp": now})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!((reply["error"].as_str(), reply["field"].as_str()), (Some("missing_field"), Some("player_id")));
}

#[actix_web::test]
async fn without_keyless_games_the_legacy_route_needs_a_key() {
    let h = harness();
    let body = json!({"event_type": "login", "player_id": "p1", "game_id": "space-race"});
    let (status, _, reply) = post(&h, "/api/v1/events", &[], &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    assert!(h.log.events().is_empty());
}

#[actix_web::test]
async fn listed_games_take_keyless_legacy_events_rate_limited_per_client_address() {
    let h = harness_with(Log::default(), Duration::from_secs(5), keyless(2, false));
    let body = json!({"event_type": "login", "player_id": "p1", "game_id": "space-race"});
    for _ in 0..2 {
        let (status, _, reply) = post(&h, "/api/v1/events", &[], &body).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["status"], "success", "{reply}");
    }
    let (status, retry_after, reply) = post(&h, "/api/v1/events", &[], &body).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{reply}");
    assert_eq!(reply["error"], "rate_limited", "{reply}");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
    // Forwarded-for is not trusted unless configured: a forged header changes nothing.
    let (status, _, _) = post(&h, "/api/v1/events", &[("X-Forwarded-For", "198.51.100.1")], &body).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // A request with a key is authenticated as always, and not counted against the address.
    let (status, _, _) = post(&h, "/api/v1/events", &[("X-API-Key", KEY)], &body).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = post(&h, "/api/v1/events", &[("X-API-Key", "wrong-key")], &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a wrong key is never taken as keyless");
    let events = h.log.events();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.game_id.as_str() == "space-race"));
}

#[actix_web::test]
async fn keyless_legacy_events_must_name_a_listed_game() {
    let h = harness_with(Log::default(), Duration::from_secs(5), keyless(10, false));
    for body in [
        json!({"event_type": "login", "player_id": "p1", "game_id": "farm"}),
        json!({"event_type": "login", "player_id": "p1"}),
        json!({"event_type": "login", "player_id": "p1", "game_id": "Not A Game!"}),
    ] {
        let (status, _, reply) = post(&h, "/api/v1/events", &[], &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}: {reply}");
        assert!(reply["reason"].as_str().unwrap().contains("keyless"), "{reply}");
    }
    // The other routes never take keyless requests.
    let (status, _, _) = post(&h, "/v1/events", &[], &batch(Uuid::now_v7())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(h.log.events().is_empty());
}

#[actix_web::test]
async fn behind_a_trusted_proxy_the_last_forwarded_address_has_the_quota() {
    let h = harness_with(Log::default(), Duration::from_secs(5), keyless(1, true));
    let body = json!({"event_type": "login", "player_id": "p1", "game_id": "space-race"});
    let a = ("X-Forwarded-For", "198.51.100.9, 192.0.2.1");
    let b = ("X-Forwarded-For", "192.0.2.2");
    assert_eq!(post(&h, "/api/v1/events", &[a], &body).await.0, StatusCode::OK);
    assert_eq!(post(&h, "/api/v1/events", &[a], &body).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(post(&h, "/api/v1/events", &[b], &body).await.0, StatusCode::OK, "another client, its own quota");
}

#[actix_web::test]
async fn keyless_games_without_a_rate_are_refused() {
    let settings = KeylessLegacy { per_address_per_second: 0, ..keyless(5, false) };
    let log: Arc<dyn LogProducer> = Arc::new(Log::default());
    let state = AppState::new(GatewayConfig::default(), log, Arc::new(NoQueries), Metrics::new(), Default::default());
    assert!(state.with_keyless_legacy(settings).is_err());
}
