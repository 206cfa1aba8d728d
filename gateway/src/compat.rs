//! Ingest in the formats existing clients already send, so they work by pointing their host at
//! the gateway: the Segment HTTP tracking API (`/v1/batch`, `/v1/track`, `/v1/identify`) and
//! the previous GameMetrics platform (`/api/v1/events`). Authentication, limits, signature,
//! validation and the log append are those of `/v1/events` ([`accept_body`],
//! [`append_decoded`]); only the decoding differs (`gm_schemas::compat`, mappings in
//! docs/compat.md).

use crate::error::{or_error_components, or_error_schema, ErrorBody, GatewayError};
use crate::ingest::{
    accept_body, append_decoded, check_signature, decompress_body, idempotency_key, ingest_within, is_gzip, read_raw,
    EventStatus, IngestErrors, IngestResponse, IngestResponseOrError, SignedBodyHeaders,
};
use crate::rate_limit::retry_after_secs;
use crate::AppState;
use actix_web::http::header::{AUTHORIZATION, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use gm_schemas::compat::{legacy, segment};
use gm_schemas::GameId;
use gm_telemetry::TypeLabels;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::num::NonZeroU32;
use utoipa::ToSchema;
use uuid::Uuid;

/// A Segment batch: `{"batch": [message, ...], "sentAt", "context"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documentation only: decoded by `gm_schemas::compat::segment`
pub struct SegmentBatch {
    /// Messages of type `track`, `identify`, `screen` or `page` (`alias` and `group` are
    /// refused per message).
    #[schema(value_type = Vec<Object>)]
    batch: Vec<serde_json::Value>,
    /// The client's clock when it sent the batch (RFC 3339), used to correct clock skew.
    #[serde(rename = "sentAt")]
    sent_at: Option<String>,
    /// Context shared by the messages that have none of their own.
    #[schema(value_type = Option<Object>)]
    context: Option<serde_json::Value>,
}

/// One Segment message: `userId` or `anonymousId`, `messageId`, `timestamp`, `sentAt`,
/// `context`, and `event` + `properties` (track) or `traits` (identify).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documentation only
pub struct SegmentMessage {
    #[serde(rename = "userId")]
    user_id: Option<String>,
    #[serde(rename = "anonymousId")]
    anonymous_id: Option<String>,
    #[serde(rename = "messageId")]
    message_id: Option<String>,
    /// The event name (track).
    event: Option<String>,
    #[schema(value_type = Option<Object>)]
    properties: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    traits: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    context: Option<serde_json::Value>,
    timestamp: Option<String>,
    #[serde(rename = "sentAt")]
    sent_at: Option<String>,
}

async fn segment(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    call: Option<segment::Call>,
) -> Result<HttpResponse, GatewayError> {
    let timeout = state.config.request_timeout;
    ingest_within(timeout, async move {
        let (game, body) = accept_body(&req, payload, &state).await?;
        let key = idempotency_key(req.headers())?;
        let limits = &state.config.limits;
        let decoded = match call {
            None => segment::decode_batch_keyed(&body, &game, Utc::now(), limits, key.as_ref())?,
            Some(call) => vec![segment::decode_single_keyed(&body, call, &game, Utc::now(), limits, key.as_ref())?],
        };
        // Segment answers 200; its SDKs retry on 429 and 5xx only.
        Ok(append_decoded(&state, &game, decoded).await?.respond(StatusCode::OK))
    })
    .await
}

/// Segment `batch`: several track/identify/screen/page messages.
///
/// The write key is the game's API key, as HTTP basic auth user (what Segment SDKs send), or
/// as for `/v1/events`. Each message is mapped to a GameMetrics event (docs/compat.md) and
/// validated like one; the answer has a result per message.
#[utoipa::path(
    post,
    path = "/v1/batch",
    tag = "compatibility",
    request_body(content = SegmentBatch, description = "A Segment batch",
        example = json!({"sentAt": "2025-01-01T12:00:05Z", "batch": [
            {"type": "track", "event": "Order Completed", "userId": "seg-1", "messageId": "m-1",
             "timestamp": "2025-01-01T12:00:00Z", "properties": {"revenue": 4.99, "currency": "USD", "product_id": "gems"}},
            {"type": "identify", "userId": "seg-1", "traits": {"country": "de"}, "context": {"locale": "de-DE"}}]})),
    params(
        SignedBodyHeaders,
        ("Idempotency-Key" = Option<String>, Header, description = "A key of the client's own for this request (1 to 255 visible ASCII characters), sent again unchanged with every retry: a message without `messageId` gets an id derived from the game, the key, its position and content (without `sentAt`), so a retry counts once. Messages with a `messageId` keep the id derived from it, key or not. 400 `invalid_input` when malformed"),
    ),
    responses(
        (status = 200, description = "Every valid message is durably in the log", body = IngestResponse),
        (status = 400, description = "No message was valid (IngestResponse), or the body itself or its Idempotency-Key was refused (ErrorBody)", body = IngestResponseOrError),
        (status = 401, description = "Missing, unknown or revoked write key; missing or wrong signature", body = ErrorBody),
        (status = 429, description = "The API key is over its request quota (ErrorBody), or every message was over its player's quota (IngestResponse); retry after `Retry-After` seconds", body = IngestResponseOrError),
        IngestErrors,
    ),
    security(("basic" = []), ("bearer" = []), ("api_key" = []))
)]
pub async fn segment_batch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    segment(req, payload, state, None).await
}

/// Segment `track`: one event.
#[utoipa::path(
    post,
    path = "/v1/track",
    tag = "compatibility",
    request_body(content = SegmentMessage, description = "A Segment track call",
        example = json!({"event": "Level Completed", "userId": "seg-1", "timestamp": "2025-01-01T12:00:00Z",
                         "properties": {"level": "world-1", "score": 50}})),
    params(
        SignedBodyHeaders,
        ("Idempotency-Key" = Option<String>, Header, description = "A key of the client's own for this request (1 to 255 visible ASCII characters), sent again unchanged with every retry: a message without `messageId` gets an id derived from the game, the key, its position and content (without `sentAt`), so a retry counts once. Messages with a `messageId` keep the id derived from it, key or not. 400 `invalid_input` when malformed"),
    ),
    responses(
        (status = 200, description = "The event is durably in the log", body = IngestResponse),
        (status = 400, description = "The event was refused (IngestResponse with its reason), or the body was not a message or the Idempotency-Key was malformed (ErrorBody)", body = IngestResponseOrError),
        (status = 401, description = "Missing, unknown or revoked write key; missing or wrong signature", body = ErrorBody),
        (status = 429, description = "The API key is over its request quota (ErrorBody), or every message was over its player's quota (IngestResponse); retry after `Retry-After` seconds", body = IngestResponseOrError),
        IngestErrors,
    ),
    security(("basic" = []), ("bearer" = []), ("api_key" = []))
)]
pub async fn segment_track(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    segment(req, payload, state, Some(segment::Call::Track)).await
}

/// Segment `identify`: the player's traits, as a profile update with personal fields.
#[utoipa::path(
    post,
    path = "/v1/identify",
    tag = "compatibility",
    request_body(content = SegmentMessage, description = "A Segment identify call",
        example = json!({"userId": "seg-1", "traits": {"country": "DE"}, "context": {"locale": "de-DE"}})),
    params(
        SignedBodyHeaders,
        ("Idempotency-Key" = Option<String>, Header, description = "A key of the client's own for this request (1 to 255 visible ASCII characters), sent again unchanged with every retry: a message without `messageId` gets an id derived from the game, the key, its position and content (without `sentAt`), so a retry counts once. Messages with a `messageId` keep the id derived from it, key or not. 400 `invalid_input` when malformed"),
    ),
    responses(
        (status = 200, description = "The update is durably in the log", body = IngestResponse),
        (status = 400, description = "The call was refused (IngestResponse with its reason), or the body was not a message or the Idempotency-Key was malformed (ErrorBody)", body = IngestResponseOrError),
        (status = 401, description = "Missing, unknown or revoked write key; missing or wrong signature", body = ErrorBody),
        (status = 429, description = "The API key is over its request quota (ErrorBody), or every message was over its player's quota (IngestResponse); retry after `Retry-After` seconds", body = IngestResponseOrError),
        IngestErrors,
    ),
    security(("basic" = []), ("bearer" = []), ("api_key" = []))
)]
pub async fn segment_identify(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    segment(req, payload, state, Some(segment::Call::Identify)).await
}

/// The previous platform's event body.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documentation only: decoded by `gm_schemas::compat::legacy`
pub struct LegacyEvent {
    /// `login`, `logout`, `level_up`, `purchase`, `achievement`, ... (docs/compat.md); any
    /// other becomes a design event.
    event_type: String,
    #[schema(value_type = String)]
    player_id: serde_json::Value,
    /// Must be the API key's game when given.
    game_id: Option<String>,
    /// RFC 3339, or Unix time in seconds or milliseconds.
    #[schema(value_type = Option<String>)]
    timestamp: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Value>,
}

/// The previous platform's answer: `status` `success` with the event id, or `error` with the
/// reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LegacyResponse {
    /// `success` or `error`.
    pub status: String,
    pub event_id: Option<Uuid>,
    /// The rejection code when refused (as in `/v1/events` results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Documentation only: a [`LegacyResponse`] or an [`ErrorBody`].
pub struct LegacyResponseOrError;

impl utoipa::PartialSchema for LegacyResponseOrError {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        or_error_schema("LegacyResponse")
    }
}

impl ToSchema for LegacyResponseOrError {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        or_error_components::<LegacyResponse>(schemas);
    }
}

/// The previous GameMetrics platform's ingest: one event per request.
///
/// Events of a known type whose `data` the typed event cannot take (a `purchase` without an
/// amount, an `achievement` without an id: the old platform accepted them) are kept as design
/// events named after their type (`purchase`, `achievement`), counted in
/// `gamemetrics_compat_events_downgraded_total{type}`, and answered `success`. Only what the
/// old platform could not have stored either is refused (no player, a bad timestamp, another
/// game). With `compat.keyless_games` set, those games' clients may post without an API key
/// (the body's `game_id` names the game), rate-limited per client address.
#[utoipa::path(
    post,
    path = "/api/v1/events",
    tag = "compatibility",
    request_body(content = LegacyEvent, description = "One event in the previous platform's format",
        example = json!({"event_type": "level_up", "player_id": "legacy-1", "timestamp": "2025-01-01T12:00:00Z",
                         "data": {"level": 7}})),
    params(
        SignedBodyHeaders,
        ("Idempotency-Key" = Option<String>, Header, description = "A key of the client's own for this request (1 to 255 visible ASCII characters), sent again unchanged with every retry: an event without `event_id` gets an id derived from the game, the key and the body, so a retry counts once. An `event_id` in the body is used instead (the id itself when a UUID, else UUIDv5 of `game:event_id`). 400 `invalid_input` when malformed"),
    ),
    responses(
        (status = 200, description = "The event is durably in the log (possibly kept as a design event named after its type: see above)", body = LegacyResponse),
        (status = 400, description = "The event was refused (LegacyResponse with the reason), or the body was not an object or the Idempotency-Key was malformed (ErrorBody)", body = LegacyResponseOrError),
        (status = 401, description = "Missing, unknown or revoked API key (without a key: a body whose `game_id` is not a game open to keyless clients); missing or wrong signature", body = ErrorBody),
        (status = 429, description = "The API key or, without a key, the client address (ErrorBody), or the player (LegacyResponse) is over its quota; retry after `Retry-After` seconds", body = LegacyResponseOrError),
        IngestErrors,
    ),
    security(("bearer" = []), ("api_key" = []), ("basic" = []))
)]
pub async fn legacy_event(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let timeout = state.config.request_timeout;
    ingest_within(timeout, async move {
        let (game, body) = match &state.keyless_legacy {
            Some(keyless) if !presents_credentials(&req) => keyless_body(&req, payload, &state, keyless).await?,
            _ => accept_body(&req, payload, &state).await?,
        };
        let key = idempotency_key(req.headers())?;
        let decoded = legacy::decode_event_keyed(&body, &game, Utc::now(), &state.config.limits, key.as_ref())?;
        let outcome = append_decoded(&state, &game, vec![decoded.outcome]).await?;
        let limited = outcome.rate_limited;
        let Some(result) = outcome.response.results.into_iter().next() else {
            return Err(GatewayError::Internal("no result for the one event".into()));
        };
        if result.status == EventStatus::Accepted {
            if let Some(down) = &decoded.downgraded {
                state.metrics.compat_events_downgraded.get_or_create(&TypeLabels { r#type: down.typed.clone() }).inc();
                tracing::debug!(game_id = %game, typed = %down.typed, field = ?down.rejection.field,
                    "legacy event kept as a design event");
            }
            let ok = LegacyResponse {
                status: "success".into(),
                event_id: result.event_id,
                error: None,
                field: None,
                reason: None,
            };
            return Ok(HttpResponse::Ok().json(ok));
        }
        let refused = LegacyResponse {
            status: "error".into(),
            event_id: None,
            error: result.code,
            field: result.field,
            reason: result.reason,
        };
        Ok(match limited {
            Some(wait) => HttpResponse::TooManyRequests()
                .insert_header((RETRY_AFTER, retry_after_secs(wait).to_string()))
                .json(refused),
            None => HttpResponse::BadRequest().json(refused),
        })
    })
    .await
}

/// The previous platform's route without an API key (off unless games are listed): for old
/// clients that cannot add a header. The body's `game_id` names the game, which must be
/// listed; requests are rate-limited per client address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeylessLegacy {
    /// Games whose clients may post to `/api/v1/events` without a key.
    pub games: BTreeSet<GameId>,
    /// Requests per second per client address (more than 0).
    pub per_address_per_second: u32,
    /// Burst per client address (0: the per-second rate).
    pub per_address_burst: u32,
    /// The client's address is the last `X-Forwarded-For` entry (the one the trusted proxy in
    /// front of the gateways appended) instead of the connection's peer.
    pub trust_forwarded_for: bool,
}

/// Games listed for keyless legacy ingest without a rate: the mode must be rate-limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("keyless legacy ingest needs a rate per client address above 0")]
pub struct KeylessWithoutRate;

/// [`KeylessLegacy`] with its rate limiter.
pub(crate) struct Keyless {
    settings: KeylessLegacy,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: governor::clock::DefaultClock,
}

impl std::fmt::Debug for Keyless {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyless").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Keyless {
    /// `None` when no game is listed (the mode is off); an error when games are listed without
    /// a rate (the mode must be rate-limited).
    pub(crate) fn new(settings: KeylessLegacy) -> Result<Option<Self>, KeylessWithoutRate> {
        if settings.games.is_empty() {
            return Ok(None);
        }
        let Some(rate) = NonZeroU32::new(settings.per_address_per_second) else {
            return Err(KeylessWithoutRate);
        };
        let burst = NonZeroU32::new(settings.per_address_burst).unwrap_or(rate);
        let limiter = RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst));
        Ok(Some(Self { settings, limiter, clock: governor::clock::DefaultClock::default() }))
    }

    /// The games that may post without a key.
    pub(crate) fn games(&self) -> impl Iterator<Item = &GameId> {
        self.settings.games.iter()
    }

    /// The client's address: the connection's peer, or the last `X-Forwarded-For` entry.
    fn client_address(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr().map(|a| a.ip());
        if !self.settings.trust_forwarded_for {
            return peer;
        }
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .and_then(|last| last.trim().parse::<IpAddr>().ok());
        forwarded.or(peer)
    }

    fn check(&self, address: IpAddr) -> Result<(), GatewayError> {
        use governor::clock::Clock as _;
        if self.limiter.len() > 100_000 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&address).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            GatewayError::RateLimited {
                retry_after_secs: retry_after_secs(wait),
                reason: format!("client address {address} is over its quota of keyless requests"),
            }
        })
    }
}

/// Whether the request carries any credential (then it is authenticated as usual, and a
/// wrong key is refused, never taken as keyless).
fn presents_credentials(req: &HttpRequest) -> bool {
    req.headers().contains_key(AUTHORIZATION) || req.headers().contains_key("x-api-key")
}

/// What [`accept_body`] does, for a request without credentials on a gateway with keyless
/// legacy games: the client address's quota, the body within the limits, its `game_id` one of
/// the listed games, and that game's body signature when it has a signing secret.
async fn keyless_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    keyless: &Keyless,
) -> Result<(GameId, Vec<u8>), GatewayError> {
    let address = keyless.client_address(req).ok_or_else(|| {
        GatewayError::Unauthenticated("missing credentials, and the client address is unknown".into())
    })?;
    keyless.check(address)?;
    let limits = &state.config.limits;
    let gzip = is_gzip(req.headers())?;
    let raw = read_raw(req.headers(), payload, limits).await?;
    let body = decompress_body(&raw, gzip, limits.max_body_bytes)?;
    let named = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("game_id").and_then(|g| g.as_str()).map(str::to_string));
    let game = named.as_deref().and_then(|g| GameId::parse(g).ok()).filter(|g| keyless.settings.games.contains(g));
    let Some(game) = game else {
        return Err(GatewayError::Unauthenticated(
            "missing credentials: send 'Authorization: Bearer <API key>' or 'X-API-Key: <key>' (without a key, \
             only games open to keyless clients are taken, named in the body's game_id)"
                .into(),
        ));
    };
    check_signature(req, state, &game, &raw).await?;
    Ok((game, body))
}
