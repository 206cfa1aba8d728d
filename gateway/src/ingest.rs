//! `POST /v1/events`: a batch of events in, one log append, a result per event out.

use crate::auth::{authorize, Action, Principal};
use crate::error::{or_error_components, or_error_schema, ErrorBody, GatewayError};
use crate::rate_limit::retry_after_secs;
use crate::{within, AppState};
use actix_web::http::header::{HeaderMap, CONTENT_ENCODING, CONTENT_LENGTH, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use flate2::read::MultiGzDecoder;
use gm_ports::NewRecord;
use gm_schemas::idempotency::IdempotencyKey;
use gm_schemas::validate::{decode_batch_keyed, BatchError, DecodedEvents, Limits};
use gm_schemas::{player_key, topics, EventEnvelope, GameId, PersonalData, RawRecord};
use gm_telemetry::ReasonLabels;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::time::{Duration, Instant};
use utoipa::ToSchema;
use uuid::Uuid;

/// A batch of events, as posted. The full JSON Schema of an event is published in
/// `schemas/json/batch.schema.json` (generated from `gm_schemas`).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documentation only: the body is decoded by `gm_schemas::validate`
pub struct EventBatch {
    /// The client's clock when the batch was sent (RFC 3339), used to correct clock skew.
    sent_at: Option<DateTime<Utc>>,
    /// The events: each an object with `player_id`, `type`, `client_ts` and optionally
    /// `event_id` (UUID, for deduplication), `session_id`, `game_id` (must be the key's
    /// game), `schema_version`, `properties` (per type) and `personal`.
    #[schema(value_type = Vec<Object>)]
    events: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Accepted,
    Rejected,
}

/// The outcome for one event of the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventResult {
    /// Position of the event in the posted `events` array.
    pub index: usize,
    pub status: EventStatus,
    /// The event's id, when accepted: the client's; else, with an `Idempotency-Key`, the id
    /// derived from the key, the event's position and content (the same on a retry); else a
    /// UUIDv7 assigned by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    /// Why it was rejected: `too_large`, `malformed`, `missing_field`, `invalid_field`,
    /// `unknown_type`, `bad_timestamp`, `unsupported_version`, `wrong_game`,
    /// `rate_limited` (the player is over its event quota: retry later), `erased` (the player
    /// was erased: refused for the suppression window), `personal_unsupported`. A resent
    /// event is not refused: it is accepted again with the same `event_id` and counted once
    /// by the player actors, which the gateway does not ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The offending field, e.g. `properties.currency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer to a batch: counts and a result per event, in the order they were sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IngestResponse {
    pub accepted: usize,
    pub rejected: usize,
    pub results: Vec<EventResult>,
}

/// Documentation only: an [`IngestResponse`] or an [`ErrorBody`].
pub struct IngestResponseOrError;

impl utoipa::PartialSchema for IngestResponseOrError {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        or_error_schema("IngestResponse")
    }
}

impl ToSchema for IngestResponseOrError {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        or_error_components::<IngestResponse>(schemas);
    }
}

/// Ingest a batch of events.
///
/// Valid events are appended to the log (`player.events.raw`, keyed `game_id:player_id`)
/// in one call; the answer comes only after the log acknowledged them. Invalid events are
/// reported one by one and never block the valid ones. Bodies may be gzip-compressed
/// (`Content-Encoding: gzip`); the size limit applies to the decompressed body.
///
/// Retries count once: an event with an `event_id` is counted once per id, and a
/// batch sent with an `Idempotency-Key` gives its events without `event_id` ids derived from
/// the key, their position and their content, so resending the same batch with the same key
/// (after a 503, a timeout or a lost answer) counts every event once. Without either, a
/// resent event counts again.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "ingest",
    request_body(content = EventBatch, description = "A batch of events; JSON Schema in schemas/json/batch.schema.json",
        example = json!({"sent_at": "2025-01-01T12:01:05Z", "events": [
            {"type": "session_start", "player_id": "player-7f3a", "session_id": "s-1", "client_ts": "2025-01-01T12:00:00Z",
             "properties": {"platform": "ios", "app_version": "2.4.1"}},
            {"type": "purchase", "player_id": "player-7f3a", "session_id": "s-1", "client_ts": "2025-01-01T12:01:00Z",
             "properties": {"amount_minor": 499, "currency": "USD", "item_id": "gem-pack"}}]})),
    params(
        SignedBodyHeaders,
        ("Idempotency-Key" = Option<String>, Header, description = "A key of the client's own for this request (1 to 255 visible ASCII characters, e.g. a UUID), sent again unchanged with every retry of the same batch: events without `event_id` get ids derived from the game, the key, their position and content, so a retry counts once. 400 `invalid_input` when empty, too long or with other characters"),
    ),
    responses(
        (status = 202, description = "Every valid event is durably in the log", body = IngestResponse),
        (status = 400, description = "No event was valid (IngestResponse), or the batch itself or its Idempotency-Key was refused (ErrorBody)", body = IngestResponseOrError),
        (status = 401, description = "Missing, unknown or revoked API key; missing or wrong X-GM-Signature when the game requires one", body = ErrorBody),
        (status = 429, description = "The API key is over its request quota (ErrorBody), or every event was over its player's quota (IngestResponse); retry after `Retry-After` seconds", body = IngestResponseOrError),
        IngestErrors,
    ),
    security(("bearer" = []), ("api_key" = []), ("basic" = []))
)]
pub async fn post_events(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let timeout = state.config.request_timeout;
    // The root of the batch's trace (or a continuation of the client's traceparent); its
    // context goes into every record's headers (append_decoded). No personal field here.
    let span = tracing::info_span!(
        "POST /v1/events",
        otel.kind = "server",
        http.route = "/v1/events",
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let client_context: Vec<(String, String)> = req
        .headers()
        .get(gm_telemetry::trace::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| vec![(gm_telemetry::trace::TRACEPARENT.to_string(), v.to_string())])
        .unwrap_or_default();
    gm_telemetry::trace::continue_from(&span, &client_context);
    tracing::Instrument::instrument(ingest_within(timeout, ingest(req, payload, state)), span).await
}

async fn ingest(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let (game, body) = accept_body(&req, payload, &state).await?;
    let key = idempotency_key(req.headers())?;
    let decoded = decode_batch_keyed(&body, &game, Utc::now(), &state.config.limits, key.as_ref())?;
    let outcome = append_decoded(&state, &game, decoded).await?;
    Ok(outcome.respond(StatusCode::ACCEPTED))
}

crate::openapi::error_answers! {
    /// The answers every route that ingest events in any format with a game API key gives
    /// when it refuses the request (403, 413) or cannot answer (503).
    IngestErrors {
        "403" => "Credentials that may not ingest (only game API keys do)",
        "413" => "Body larger than allowed, after decompression",
        "503" => "The events were not acknowledged in time (`timeout`) or the log failed (`unavailable`). Some or \
                  all of them may be in the log already: resend the same request after `Retry-After` seconds, \
                  with the same `Idempotency-Key` (or the same `event_id`s), and every event counts once. \
                  Without either, a resent event may count twice",
    }
}

/// The request headers of a route that takes a signed, possibly compressed body, written once
/// for the OpenAPI document (`params(SignedBodyHeaders, ..)`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documentation only: the handlers read these headers themselves
pub(crate) struct SignedBodyHeaders {
    /// `gzip` or `identity`
    #[param(rename = "Content-Encoding")]
    content_encoding: Option<String>,
    /// HMAC-SHA256(game secret, X-GM-Timestamp + "." + raw body as sent, compressed if gzip), hex or base64; required for games with a signing secret (README, "Signed requests"). A signature is accepted once
    #[param(rename = "X-GM-Signature")]
    signature: Option<String>,
    /// When the request was signed, Unix seconds; required with X-GM-Signature. Refused (401) when more than 300 s from the gateway's clock
    #[param(rename = "X-GM-Timestamp")]
    timestamp: Option<i64>,
}

/// What an ingest route says when it answers 503: retry, the same way.
const RETRY_SAME: &str = "retry this request unchanged after Retry-After seconds, with the same Idempotency-Key (or the same event ids): events already in the log then count once";

/// The `Idempotency-Key` header of an ingest request, checked: `None` when absent; 400 when
/// empty, too long, with characters other than visible ASCII, or sent more than once.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, GatewayError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(GatewayError::InvalidInput("Idempotency-Key is sent more than once; send one key".into()));
    }
    let text = value.to_str().map_err(|_| {
        GatewayError::InvalidInput(
            "Idempotency-Key holds characters other than visible ASCII (! to ~, no space)".into(),
        )
    })?;
    IdempotencyKey::parse(text).map(Some).map_err(|e| GatewayError::InvalidInput(format!("Idempotency-Key {e}")))
}

/// The idempotency key header's name.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Runs an ingest request under the request timeout. On expiry the append may still complete
/// (the log took the records, the answer came too late): the 503 says so, and how to retry
/// so that those events count once.
pub(crate) async fn ingest_within(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<HttpResponse, GatewayError>>,
) -> Result<HttpResponse, GatewayError> {
    match within(timeout, fut).await {
        Err(GatewayError::Timeout) => {
            tracing::warn!(timeout_ms = timeout.as_millis() as u64, "ingest request timed out; answered 503");
            let body = ErrorBody {
                error: GatewayError::Timeout.code().to_string(),
                reason: format!(
                    "the events were not acknowledged within {} ms; some may be in the log already: {RETRY_SAME}",
                    timeout.as_millis()
                ),
            };
            Ok(HttpResponse::ServiceUnavailable().insert_header((RETRY_AFTER, "1")).json(body))
        }
        Err(GatewayError::Unavailable(reason)) => {
            Err(GatewayError::Unavailable(format!("{reason}; some events may be in the log already: {RETRY_SAME}")))
        }
        other => other,
    }
}

/// What every ingest route does before decoding: the caller is a game key allowed to ingest
/// and within its request quota; the raw body is read within the size limit; the game's body
/// signature, if it has a secret, is checked over those raw bytes; then gzip is inflated
/// (within the limit too). Returns the key's game and the decompressed body.
pub(crate) async fn accept_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<(GameId, Vec<u8>), GatewayError> {
    let principal = state.auth.authenticate(req.headers())?;
    authorize(&principal, Action::Ingest)?;
    let game = principal.ingest_game()?.clone();
    if let Principal::GameKey { key_id, .. } = &principal {
        state.rate_limits.check_key(key_id).map_err(|wait| GatewayError::RateLimited {
            retry_after_secs: retry_after_secs(wait),
            reason: format!("API key {key_id} is over its request quota"),
        })?;
    }
    let limits = &state.config.limits;
    let gzip = is_gzip(req.headers())?;
    let raw = read_raw(req.headers(), payload, limits).await?;
    check_signature(req, state, &game, &raw).await?;
    Ok((game, decompress_body(&raw, gzip, limits.max_body_bytes)?))
}

/// Checks `game`'s body signature (when the game has a signing secret) over the raw body.
pub(crate) async fn check_signature(
    req: &HttpRequest,
    state: &AppState,
    game: &GameId,
    raw: &[u8],
) -> Result<(), GatewayError> {
    state.signing.verify(game, req.headers(), raw).await
}

/// The body the decoders see: `raw` as sent, inflated when `gzip`; 413 when larger than `max`
/// bytes (after inflation, which stops one byte past `max`). Public for the fuzz targets.
pub fn decompress_body(raw: &[u8], gzip: bool, max: usize) -> Result<Vec<u8>, GatewayError> {
    if !gzip {
        if raw.len() > max {
            return Err(BatchError::TooLarge { bytes: raw.len(), max }.into());
        }
        return Ok(raw.to_vec());
    }
    let body = inflate_at_most(raw, max.saturating_add(1))?;
    if body.len() > max {
        return Err(GatewayError::TooLarge(format!("body is larger than {max} bytes after gzip decompression")));
    }
    Ok(body)
}

/// The result of appending a decoded batch.
pub(crate) struct Outcome {
    pub response: IngestResponse,
    /// Set when events were refused by their player's rate limit: the longest wait.
    pub rate_limited: Option<Duration>,
}

impl Outcome {
    /// `ok` when something was accepted; 429 with `Retry-After` when nothing was, because of
    /// rate limits; 400 otherwise.
    pub fn respond(self, ok: StatusCode) -> HttpResponse {
        if self.response.accepted > 0 {
            return HttpResponse::build(ok).json(self.response);
        }
        match self.rate_limited {
            Some(wait) => HttpResponse::TooManyRequests()
                .insert_header((RETRY_AFTER, retry_after_secs(wait).to_string()))
                .json(self.response),
            None => HttpResponse::BadRequest().json(self.response),
        }
    }
}

/// Appends the valid events of `decoded` to the log in ONE call (answering only once the log
/// holds them), after the per-player rate limit; a result per event, in order.
pub(crate) async fn append_decoded(
    state: &AppState,
    game: &GameId,
    decoded: DecodedEvents,
) -> Result<Outcome, GatewayError> {
    let mut results: Vec<Option<EventResult>> = Vec::with_capacity(decoded.len());
    let mut rejected_codes = Vec::new();
    let mut rate_limited: Option<Duration> = None;
    let mut valid: Vec<(usize, EventEnvelope)> = Vec::with_capacity(decoded.len());
    for (index, outcome) in decoded.into_iter().enumerate() {
        match outcome {
            Ok(envelope) => {
                let key = player_key(&envelope.game_id, &envelope.player_id);
                if let Err(wait) = state.rate_limits.check_player(&key) {
                    rate_limited = Some(rate_limited.map_or(wait, |w| w.max(wait)));
                    rejected_codes.push(RATE_LIMITED);
                    let reason = format!(
                        "player '{}' is over its event quota; retry after {} s",
                        envelope.player_id,
                        retry_after_secs(wait)
                    );
                    results.push(Some(rejected(index, RATE_LIMITED, Some("player_id".into()), reason)));
                    continue;
                }
                results.push(None);
                valid.push((index, envelope));
            }
            Err(rejection) => {
                rejected_codes.push(rejection.code.as_str());
                results.push(Some(rejected(index, rejection.code.as_str(), rejection.field, rejection.reason)));
            }
        }
    }

    // Pseudonyms and sealed personal fields (one privacy round trip for the new players).
    let (indices, envelopes): (Vec<usize>, Vec<EventEnvelope>) = valid.into_iter().unzip();
    let protected: Vec<Result<EventEnvelope, (&'static str, String, String)>> = match &state.privacy {
        Some(privacy) => privacy
            .protect(envelopes)
            .await?
            .into_iter()
            .map(|r| {
                r.map_err(|s| {
                    let reason = format!(
                        "this player was erased; their events are refused until {}",
                        s.until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    );
                    (ERASED, "player_id".to_string(), reason)
                })
            })
            .collect(),
        None => envelopes
            .into_iter()
            .map(|e| match &e.personal {
                Some(PersonalData::Plain(_)) => Err((
                    PERSONAL_UNSUPPORTED,
                    "personal".to_string(),
                    "this gateway has no privacy key store, so it cannot keep personal fields".to_string(),
                )),
                _ => Ok(e),
            })
            .collect(),
    };
    let mut records = Vec::with_capacity(protected.len());
    // The request's trace context, the same for every record of the batch.
    let trace_headers = gm_telemetry::trace::inject(&tracing::Span::current());
    for (index, outcome) in indices.into_iter().zip(protected) {
        let result = match outcome {
            Ok(envelope) => {
                let key = player_key(&envelope.game_id, &envelope.player_id);
                let event_id = envelope.event_id;
                // Sized for a typical record (a few hundred bytes), so the buffer is not
                // grown and copied several times per event.
                let mut payload = Vec::with_capacity(512);
                serde_json::to_writer(&mut payload, &RawRecord::Event(envelope))
                    .map_err(|e| GatewayError::Internal(format!("serialising an envelope: {e}")))?;
                let mut record = NewRecord::new(key, payload);
                record.headers.extend(trace_headers.iter().cloned());
                records.push(record);
                EventResult {
                    index,
                    status: EventStatus::Accepted,
                    event_id: Some(event_id),
                    code: None,
                    field: None,
                    reason: None,
                }
            }
            Err((code, field, reason)) => {
                rejected_codes.push(code);
                rejected(index, code, Some(field), reason)
            }
        };
        results[index] = Some(result);
    }
    let results: Vec<EventResult> = results.into_iter().flatten().collect();

    let accepted = records.len();
    if accepted > 0 {
        let started = Instant::now();
        let appended = state.producer.append(topics::RAW, records).await;
        state.metrics.log_append_duration.observe(started.elapsed().as_secs_f64());
        appended?;
        state.metrics.events_accepted.inc_by(accepted as u64);
    }
    for code in &rejected_codes {
        state.metrics.events_rejected.get_or_create(&ReasonLabels { reason: (*code).to_string() }).inc();
    }

    tracing::debug!(game_id = %game, accepted, rejected = rejected_codes.len(), "batch ingested");
    let response = IngestResponse { accepted, rejected: rejected_codes.len(), results };
    Ok(Outcome { response, rate_limited })
}

/// The rejection code of an event over its player's rate limit.
pub const RATE_LIMITED: &str = "rate_limited";
/// The rejection code of an event of an erased player (within the suppression window).
pub const ERASED: &str = "erased";
/// The rejection code of personal fields sent to a gateway without a privacy key store.
pub const PERSONAL_UNSUPPORTED: &str = "personal_unsupported";

fn rejected(index: usize, code: &'static str, field: Option<String>, reason: String) -> EventResult {
    EventResult {
        index,
        status: EventStatus::Rejected,
        event_id: None,
        code: Some(code.to_string()),
        field,
        reason: Some(reason),
    }
}

pub(crate) fn is_gzip(headers: &HeaderMap) -> Result<bool, GatewayError> {
    match headers.get(CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(e) if e.is_empty() || e == "identity" => Ok(false),
        Some(e) if e == "gzip" || e == "x-gzip" => Ok(true),
        Some(e) => Err(GatewayError::UnsupportedEncoding(format!(
            "Content-Encoding '{e}' is not supported; use gzip or identity"
        ))),
    }
}

/// Reads the raw body (as sent, possibly compressed), at most `limits.max_body_bytes`.
pub(crate) async fn read_raw(
    headers: &HeaderMap,
    payload: web::Payload,
    limits: &Limits,
) -> Result<Bytes, GatewayError> {
    let max = limits.max_body_bytes;
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if let Some(len) = declared.filter(|len| *len > max) {
        return Err(BatchError::TooLarge { bytes: len, max }.into());
    }
    payload
        .to_bytes_limited(max)
        .await
        .map_err(|_| GatewayError::from(BatchError::TooLarge { bytes: max + 1, max }))?
        .map_err(|e| GatewayError::InvalidInput(format!("reading the body: {e}")))
}

// Why the gateway inflates gzip itself: actix's own decoder (`compress-gzip`) applies
// `PayloadConfig`'s limit to the decoded size, but only after inflating a whole network
// chunk: a 1 MB chunk of compressed zeros becomes ~1 GB before the check. Here compressed
// bytes are capped at the limit, and inflation stops one byte past it.

/// Inflates gzip `data`, stopping after `cap` output bytes: memory stays O(cap) whatever
/// the compression ratio.
fn inflate_at_most(data: &[u8], cap: usize) -> Result<Vec<u8>, GatewayError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(cap));
    MultiGzDecoder::new(data)
        .take(cap as u64)
        .read_to_end(&mut out)
        .map_err(|e| GatewayError::InvalidInput(format!("body is not valid gzip: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    #[test]
    fn inflation_of_a_gzip_bomb_stops_at_the_cap() {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 50 * 1024 * 1024]).unwrap();
        let bomb = enc.finish().unwrap();
        let cap = 1024 * 1024 + 1;
        let out = inflate_at_most(&bomb, cap).unwrap();
        assert_eq!(out.len(), cap);
        // Growth by doubling at worst: nowhere near the 50 MB the bomb expands to.
        assert!(out.capacity() <= 2 * cap, "capacity {}", out.capacity());
    }

    #[test]
    fn small_gzip_bodies_inflate_whole() {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"{\"events\": []}").unwrap();
        assert_eq!(inflate_at_most(&enc.finish().unwrap(), 100).unwrap(), b"{\"events\": []}");
    }
}
