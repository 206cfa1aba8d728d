//! Ingest in the formats existing clients already send, so they work by pointing their host at
//! the gateway: the Segment HTTP tracking API (`/v1/batch`, `/v1/track`, `/v1/identify`) and
//! the previous GameMetrics platform (`/api/v1/events`). Authentication, limits, signature,
//! validation and the log append are those of `/v1/events` ([`accept_body`],
//! [`append_decoded`]); only the decoding differs (`gm_schemas::compat`, mappings in
//! docs/compat.md).

use crate::error::{or_error_components, or_error_schema, ErrorBody, GatewayError};
use crate::ingest::{accept_body, append_decoded, EventStatus, IngestResponse, IngestResponseOrError};
use crate::{within, AppState};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use gm_schemas::compat::{legacy, segment};
use serde::{Deserialize, Serialize};
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
    within(timeout, async move {
        let (game, body) = accept_body(&req, payload, &state).await?;
        let limits = &state.config.limits;
        let decoded = match call {
            None => segment::decode_batch(&body, &game, Utc::now(), limits)?,
            Some(call) => vec![segment::decode_single(&body, call, &game, Utc::now(), limits)?],
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
        ("Content-Encoding" = Option<String>, Header, description = "`gzip` or `identity`"),
        ("X-GM-Signature" = Option<String>, Header, description = "HMAC-SHA256 of the raw body (hex or base64), required for games with a signing secret"),
    ),
    responses(
        (status = 200, description = "Every valid message is durably in the log", body = IngestResponse),
        (status = 400, description = "No message was valid (IngestResponse), or the body itself was refused (ErrorBody)", body = IngestResponseOrError),
        (status = 401, description = "Missing, unknown or revoked write key; missing or wrong signature", body = ErrorBody),
        (status = 403, description = "Credentials that may not ingest", body = ErrorBody),
        (status = 413, description = "Body larger than allowed, after decompression", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Encoding", body = ErrorBody),
        (status = 429, description = "The API key is over its request quota (ErrorBody), or every message was over its player's quota (IngestResponse); retry after `Retry-After` seconds", body = IngestResponseOrError),
        (status = 503, description = "The log cannot take events now; retry", body = ErrorBody),
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
        ("Content-Encoding" = Option<String>, Header, description = "`gzip` or `identity`"),
        ("X-GM-Signature" = Option<String>, Header, description = "HMAC-SHA256 of the raw body, for games with a signing secret"),
    ),
    responses(
        (status = 200, description = "The event is durably in the log", body = IngestResponse),
        (status = 400, description = "The event was refused (IngestResponse with its reason), or the body was not a message (ErrorBody)", body = IngestResponseOrError),
        (status = 401, description = "Missing, unknown or revoked write key; missing or wrong signature", body = ErrorBody),
        (status = 403, description = "Credentials that may not ingest", body = ErrorBody),
        (status = 413, description = "Body larger than allowed", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Encoding", body = ErrorBody),
        (status = 429, description = "The API key is over its request quota (ErrorBody), or every message was over its player's quota (IngestResponse); retry after `Retry-After` seconds", body = IngestResponseOrError),
        (status = 503, description = "The log cannot take events now; retry", body = ErrorBody),
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
        ("Content-Encoding" = Option<String>, Header, description = "`gzip` or `identity`"),
        ("X-GM-Signature" = Option<String>, Header, description = "HMAC-SHA256 of the raw body, for games with a signing secret"),
    ),
    responses(
        (status = 200, description = "The update is durably in the log", body = IngestResponse),
        (status = 400, description = "The call was refused (IngestResponse with its reason), or the body was not a message (ErrorBody)", body = IngestResponseOrError),
        (status = 401, description = "Missing, unknown or revoked write key; missing or wrong signature", body = ErrorBody),
        (status = 403, description = "Credentials that may not ingest", body = ErrorBody),
        (status = 413, description = "Body larger than allowed", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Encoding", body = ErrorBody),
        (status = 429, description = "The API key is over its request quota (ErrorBody), or every message was over its player's quota (IngestResponse); retry after `Retry-After` seconds", body = IngestResponseOrError),
        (status = 503, description = "The log cannot take events now; retry", body = ErrorBody),
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
#[utoipa::path(
    post,
    path = "/api/v1/events",
    tag = "compatibility",
    request_body(content = LegacyEvent, description = "One event in the previous platform's format",
        example = json!({"event_type": "level_up", "player_id": "legacy-1", "timestamp": "2025-01-01T12:00:00Z",
                         "data": {"level": 7}})),
    params(
        ("Content-Encoding" = Option<String>, Header, description = "`gzip` or `identity`"),
        ("X-GM-Signature" = Option<String>, Header, description = "HMAC-SHA256 of the raw body, for games with a signing secret"),
    ),
    responses(
        (status = 200, description = "The event is durably in the log", body = LegacyResponse),
        (status = 400, description = "The event was refused (LegacyResponse with the reason), or the body was not an object (ErrorBody)", body = LegacyResponseOrError),
        (status = 401, description = "Missing, unknown or revoked API key; missing or wrong signature", body = ErrorBody),
        (status = 403, description = "Credentials that may not ingest", body = ErrorBody),
        (status = 413, description = "Body larger than allowed", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Encoding", body = ErrorBody),
        (status = 429, description = "The API key (ErrorBody) or the player (LegacyResponse) is over its quota; retry after `Retry-After` seconds", body = LegacyResponseOrError),
        (status = 503, description = "The log cannot take events now; retry", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []), ("basic" = []))
)]
pub async fn legacy_event(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let timeout = state.config.request_timeout;
    within(timeout, async move {
        let (game, body) = accept_body(&req, payload, &state).await?;
        let decoded = legacy::decode_event(&body, &game, Utc::now(), &state.config.limits)?;
        let outcome = append_decoded(&state, &game, vec![decoded]).await?;
        let limited = outcome.rate_limited;
        let Some(result) = outcome.response.results.into_iter().next() else {
            return Err(GatewayError::Internal("no result for the one event".into()));
        };
        if result.status == EventStatus::Accepted {
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
                .insert_header((
                    actix_web::http::header::RETRY_AFTER,
                    crate::rate_limit::retry_after_secs(wait).to_string(),
                ))
                .json(refused),
            None => HttpResponse::BadRequest().json(refused),
        })
    })
    .await
}
