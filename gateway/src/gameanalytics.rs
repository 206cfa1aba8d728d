//! The GameAnalytics collector API v2, so that games shipping a GameAnalytics SDK send here by
//! changing the SDK's host, nothing else (mapping in docs/compat.md, decoding in
//! `gm_schemas::compat::gameanalytics`).
//!
//! - `POST /v2/{game_key}/init` and `POST /remote_configs/v1/init?game_key=…` (what SDKs
//!   since 2019 call) answer `enabled`, `server_ts` and `flags` (and empty remote configs):
//!   the SDKs correct their clock with `server_ts` before stamping `client_ts`.
//! - `POST /v2/{game_key}/events`: a JSON array of events, gzip or not.
//!
//! **Authentication** is the SDKs': the game key in the path names the game, and
//! `Authorization` carries the base64 HMAC-SHA256 of the raw body as sent (the gzip bytes
//! when it is gzip) under the game's secret key. Several secrets per game key may be valid at
//! once (rotation). The size limits, gzip inflation, per-key and per-player rate limits,
//! validation, sealing of personal fields and the single log append are those of
//! `/v1/events` ([`crate::ingest`]).
//!
//! **Answers follow what the SDKs do with them** (read in their source: JavaScript, C++,
//! Android, Roblox): an answer with a body is final — on 200 the SDK deletes the events it
//! sent, and on any other status with a body it deletes them too (a 400 whose body is an
//! array is logged as "N events failed validation"); only an answer **without a body** makes
//! it put the events back and send them again. So:
//! - 200 `{}`: every event is in the log.
//! - 400 with the array of refused events (`index`, `category`, `event_uuid`, `errors`:
//!   `[{"error_type", "path", "reason"}]`): the valid events of the request ARE in the log;
//!   the refused ones would be refused again.
//! - 401, 413, 415 and a 400 for a body that is not an array of events: final, with
//!   `{"error", "reason"}`.
//! - 429 (a key or a player over its quota) and 503 (the log did not acknowledge in time)
//!   with an **empty body**, `Retry-After` and the reason in `X-GM-Error`: the SDK sends the
//!   whole request again later. Events it had sent with an `event_uuid` (every official SDK
//!   sends one) count once whatever the number of retries.

use crate::auth::constant_time_eq;
use crate::error::{ErrorBody, GatewayError};
use crate::ingest::{append_decoded, decompress_body, idempotency_key, ingest_within, is_gzip, read_raw, RATE_LIMITED};
use crate::rate_limit::retry_after_secs;
use crate::signature::Secret;
use crate::AppState;
use actix_web::body::MessageBody;
use actix_web::http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use base64::Engine as _;
use chrono::Utc;
use gm_schemas::compat::gameanalytics::{self as ga, RequestContext};
use gm_schemas::GameId;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// The header that carries the reason of a 429 or 503 (whose body stays empty: see above).
pub const ERROR_HEADER: &str = "x-gm-error";

/// One GameAnalytics game key of a game, with one of its secret keys. `Debug` never prints
/// the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameAnalyticsKey {
    pub game_id: GameId,
    /// The game key the SDK is configured with (it appears in the URL).
    pub game_key: String,
    /// The secret key the SDK signs every request body with.
    pub secret: Secret,
}

/// The configured game keys: each names one game and has one or more secrets. Clones share
/// the keys, which [`GameKeys::replace`] swaps all at once (rotation without a restart).
#[derive(Clone, Default)]
pub(crate) struct GameKeys {
    by_key: Arc<RwLock<KeyMap>>,
}

type KeyMap = HashMap<String, (GameId, Vec<Vec<u8>>)>;

impl fmt::Debug for GameKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.by_key.read().map(|m| m.len()).unwrap_or_default();
        f.debug_struct("GameKeys").field("game_keys", &n).finish()
    }
}

impl GameKeys {
    /// A game key given for a second game is ignored with a warning (the configuration
    /// refuses it before: `gamemetrics` checks `gameanalytics.keys` at start and on reload).
    pub(crate) fn new(keys: &[GameAnalyticsKey]) -> Self {
        Self { by_key: Arc::new(RwLock::new(Self::map(keys))) }
    }

    fn map(keys: &[GameAnalyticsKey]) -> KeyMap {
        let mut by_key: KeyMap = HashMap::new();
        for k in keys.iter().filter(|k| !k.secret.0.is_empty() && !k.game_key.is_empty()) {
            let entry = by_key.entry(k.game_key.clone()).or_insert_with(|| (k.game_id.clone(), Vec::new()));
            if entry.0 != k.game_id {
                tracing::warn!(first = %entry.0, ignored = %k.game_id, "a GameAnalytics game key is given for two games");
                continue;
            }
            entry.1.push(k.secret.0.as_bytes().to_vec());
        }
        by_key
    }

    /// From now on, exactly these game keys and secrets are accepted.
    pub(crate) fn replace(&self, keys: &[GameAnalyticsKey]) {
        let map = Self::map(keys);
        match self.by_key.write() {
            Ok(mut current) => *current = map,
            Err(poisoned) => *poisoned.into_inner() = map,
        }
    }

    /// The games that have a GameAnalytics game key now.
    pub(crate) fn games(&self) -> Vec<GameId> {
        let map = self.by_key.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.values().map(|(game, _)| game.clone()).collect()
    }

    /// The game of `game_key` and its secrets; 401 when the key is not configured.
    fn lookup(&self, game_key: &str) -> Result<(GameId, Vec<Vec<u8>>), GatewayError> {
        let map = self.by_key.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(game_key).cloned().ok_or_else(|| {
            GatewayError::Unauthenticated("unknown GameAnalytics game key: configure it in gameanalytics.keys".into())
        })
    }
}

/// The base64 HMAC-SHA256 of `body` under `secret`: the `Authorization` an SDK sends.
pub fn authorization(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks the request's `Authorization` against every secret of the game key (all of them,
/// in constant time each).
fn verify(secrets: &[Vec<u8>], req: &HttpRequest, raw: &[u8]) -> Result<(), GatewayError> {
    let presented = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::trim);
    let Some(presented) = presented.filter(|p| !p.is_empty()) else {
        return Err(GatewayError::Unauthenticated(
            "missing Authorization: the base64 HMAC-SHA256 of the body as sent, under the game's secret key".into(),
        ));
    };
    let mut ok = false;
    for secret in secrets {
        ok |= constant_time_eq(authorization(secret, raw).as_bytes(), presented.as_bytes());
    }
    if ok {
        Ok(())
    } else {
        Err(GatewayError::Unauthenticated(
            "Authorization is not the base64 HMAC-SHA256 of the body as sent (compressed when gzip) under a secret \
             key of this game key"
                .into(),
        ))
    }
}

/// The key id the per-key request quota counts under: `ga-` and the first 16 hex digits of
/// the game key's SHA-256.
fn key_id(game_key: &str) -> String {
    format!("ga-{}", &hex::encode(Sha256::digest(game_key.as_bytes()))[..16])
}

/// What every collector route does before decoding: the game key is configured and within
/// its request quota, the raw body is read within the size limit and carries the right
/// signature, then gzip is inflated (within the limit too). Returns the game and the body.
async fn accept(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    game_key: &str,
) -> Result<(GameId, Vec<u8>), GatewayError> {
    let (game, secrets) = state.gameanalytics.lookup(game_key)?;
    let id = key_id(game_key);
    state.rate_limits.check_key(&id).map_err(|wait| GatewayError::RateLimited {
        retry_after_secs: retry_after_secs(wait),
        reason: format!("GameAnalytics game key {id} is over its request quota"),
    })?;
    let limits = &state.config.limits;
    let gzip = is_gzip(req.headers())?;
    let raw = read_raw(req.headers(), payload, limits).await?;
    verify(&secrets, req, &raw)?;
    Ok((game, decompress_body(&raw, gzip, limits.max_body_bytes)?))
}

/// What the SDKs expect from init.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InitResponse {
    /// Always true: the gateway takes the game's events.
    pub enabled: bool,
    /// The gateway's clock (Unix seconds): the SDK stamps `client_ts` with its own clock
    /// shifted by `server_ts` minus its time at the answer.
    pub server_ts: i64,
    /// None.
    pub flags: Vec<String>,
    /// No remote configs (SDKs since 2019 read them from this answer).
    #[schema(value_type = Vec<Object>)]
    pub configs: Vec<serde_json::Value>,
    pub configs_hash: String,
    pub ab_id: String,
    pub ab_variant_id: String,
}

async fn init(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>, game_key: String) -> HttpResponse {
    let timeout = state.config.request_timeout;
    let result = crate::within(timeout, async move {
        let (_game, body) = accept(&req, payload, &state, &game_key).await?;
        ga::check_init(&body)?;
        let answer = InitResponse {
            enabled: true,
            server_ts: Utc::now().timestamp(),
            flags: Vec::new(),
            configs: Vec::new(),
            configs_hash: String::new(),
            ab_id: String::new(),
            ab_variant_id: String::new(),
        };
        Ok(HttpResponse::Ok().json(answer))
    })
    .await;
    for_sdk(result).await
}

/// The SDK's annotations (`user_id`, `sdk_version`, `os_version`, `platform`, `build`,
/// `session_num`, …); checked to be a JSON object, not kept.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documentation only
pub struct InitRequest {
    user_id: Option<String>,
    sdk_version: Option<String>,
    os_version: Option<String>,
    platform: Option<String>,
    build: Option<String>,
}

crate::openapi::error_answers! {
    /// The refusals every GameAnalytics route gives (401, 413).
    GameAnalyticsErrors {
        "401" => "Unknown game key, or missing or wrong Authorization",
        "413" => "Body larger than allowed, after decompression",
    }
}

/// GameAnalytics init (collector API v2).
///
/// Answers the gateway's clock so that the SDK corrects its own; `Authorization` is the
/// base64 HMAC-SHA256 of the body as sent under the game's secret key.
#[utoipa::path(
    post,
    path = "/v2/{game_key}/init",
    tag = "compatibility",
    params(
        ("game_key" = String, Path, description = "The GameAnalytics game key the SDK is configured with (`gameanalytics.keys`)"),
        ("Authorization" = String, Header, description = "base64 HMAC-SHA256 of the raw body (the gzip bytes when gzip) under the game's secret key"),
        ("Content-Encoding" = Option<String>, Header, description = "`gzip` or `identity`"),
    ),
    request_body(content = InitRequest, description = "The SDK's annotations",
        example = json!({"platform": "ios", "os_version": "ios 8.2", "sdk_version": "rest api v2"})),
    responses(
        (status = 200, description = "Enabled, with the gateway's clock", body = InitResponse),
        (status = 400, description = "The body is not a JSON object", body = ErrorBody),
        GameAnalyticsErrors,
        (status = 429, description = "The game key is over its request quota: empty body (so that the SDK retries), `Retry-After`, reason in `X-GM-Error`"),
        (status = 503, description = "Not answered in time: empty body, `Retry-After`, reason in `X-GM-Error`"),
    ),
    security(("gameanalytics_hmac" = []))
)]
pub async fn init_v2(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    init(req, payload, state, path.into_inner()).await
}

/// The query of the remote-configs init.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoteConfigsQuery {
    /// The GameAnalytics game key.
    pub game_key: String,
    /// Ignored (the SDKs send 0).
    pub interval_seconds: Option<i64>,
    /// Ignored: there are no remote configs.
    pub configs_hash: Option<String>,
}

/// GameAnalytics init as the SDKs since 2019 call it (remote configs).
///
/// The same as `/v2/{game_key}/init`, with the game key in the query.
#[utoipa::path(
    post,
    path = "/remote_configs/v1/init",
    tag = "compatibility",
    params(
        RemoteConfigsQuery,
        ("Authorization" = String, Header, description = "base64 HMAC-SHA256 of the raw body under the game's secret key"),
        ("Content-Encoding" = Option<String>, Header, description = "`gzip` or `identity`"),
    ),
    request_body(content = InitRequest, description = "The SDK's annotations",
        example = json!({"user_id": "a3f1c2d4-1111-4e2b-9c55-0123456789ab", "sdk_version": "javascript 4.4.7", "platform": "webgl", "session_num": 1})),
    responses(
        (status = 200, description = "Enabled, with the gateway's clock", body = InitResponse),
        (status = 400, description = "The body is not a JSON object, or the query lacks game_key", body = ErrorBody),
        GameAnalyticsErrors,
        (status = 429, description = "The game key is over its request quota: empty body, `Retry-After`, reason in `X-GM-Error`"),
        (status = 503, description = "Not answered in time: empty body, `Retry-After`, reason in `X-GM-Error`"),
    ),
    security(("gameanalytics_hmac" = []))
)]
pub async fn init_remote_configs(
    req: HttpRequest,
    query: web::Query<RemoteConfigsQuery>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    init(req, payload, state, query.into_inner().game_key).await
}

/// One error of a refused event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventError {
    /// The rejection code: `missing_field`, `invalid_field`, `unknown_type`, `bad_timestamp`,
    /// `malformed`, `too_large`, `erased`, `personal_unsupported`, …
    pub error_type: String,
    /// The offending field of the event, as a JSON pointer (`/currency`); `/` for the event.
    pub path: String,
    pub reason: String,
}

/// A refused event of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RejectedEvent {
    /// Its position in the posted array.
    pub index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_uuid: Option<String>,
    pub errors: Vec<EventError>,
}

/// Documentation only: the refused events, or an [`ErrorBody`] when the body itself was
/// refused.
pub struct RejectedEventsOrError;

impl PartialSchema for RejectedEventsOrError {
    fn schema() -> RefOr<Schema> {
        let list = ArrayBuilder::new().items(RefOr::Ref(Ref::from_schema_name(RejectedEvent::name())));
        AnyOfBuilder::new().item(list).item(Ref::from_schema_name(ErrorBody::name())).into()
    }
}

impl ToSchema for RejectedEventsOrError {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((RejectedEvent::name().into_owned(), RejectedEvent::schema()));
        RejectedEvent::schemas(schemas);
        schemas.push((ErrorBody::name().into_owned(), ErrorBody::schema()));
    }
}

/// The answer to an events request that stored every event: an empty object.
#[derive(Debug, Serialize, ToSchema)]
pub struct Collected {}

/// GameAnalytics events (collector API v2).
///
/// A JSON array of events (`category` user, session_end, business, progression, resource,
/// design, error, ads, impression), each mapped to a GameMetrics event (docs/compat.md) and
/// validated on its own: a refused event never keeps the others out of the log. Retry
/// semantics follow the SDKs: an answer with a body is final, one without (429, 503) is
/// retried by them.
#[utoipa::path(
    post,
    path = "/v2/{game_key}/events",
    tag = "compatibility",
    params(
        ("game_key" = String, Path, description = "The GameAnalytics game key the SDK is configured with (`gameanalytics.keys`)"),
        ("Authorization" = String, Header, description = "base64 HMAC-SHA256 of the raw body (the gzip bytes when gzip) under the game's secret key"),
        ("Content-Encoding" = Option<String>, Header, description = "`gzip` or `identity`"),
        ("Idempotency-Key" = Option<String>, Header, description = "A key of the client's own for this request (1 to 255 visible ASCII characters), sent again unchanged with every retry: events without `event_uuid` get ids derived from the game, the key, their position and content, so a retry counts once. Events with an `event_uuid` keep the id derived from it. 400 `invalid_input` when malformed"),
    ),
    request_body(content = Vec<Object>, description = "The events",
        example = json!([
            {"category": "user", "v": 2, "user_id": "a3f1c2d4-1111-4e2b-9c55-0123456789ab", "session_id": "5e0c8a57-2222-4c1d-8f00-0123456789ab",
             "session_num": 1, "client_ts": 1735732800, "platform": "ios", "os_version": "ios 17.1", "build": "1.4.0",
             "event_uuid": "0b4e1d2c-3333-4a5b-8c6d-0123456789ab"},
            {"category": "business", "v": 2, "user_id": "a3f1c2d4-1111-4e2b-9c55-0123456789ab", "session_id": "5e0c8a57-2222-4c1d-8f00-0123456789ab",
             "session_num": 1, "client_ts": 1735732860, "event_id": "GemPacks:Gems100", "amount": 99, "currency": "USD",
             "transaction_num": 1, "event_uuid": "0b4e1d2c-4444-4a5b-8c6d-0123456789ab"}])),
    responses(
        (status = 200, description = "Every event is durably in the log", body = Collected),
        (status = 400, description = "Some events were refused (the array lists them; the others are durably in the log), or the body is not an array of events or the Idempotency-Key is malformed (ErrorBody)", body = RejectedEventsOrError),
        GameAnalyticsErrors,
        (status = 429, description = "The game key, or a player of the request, is over its quota: empty body (so that the SDK sends the request again), `Retry-After`, reason in `X-GM-Error`; events already stored count once on the retry"),
        (status = 503, description = "The events were not acknowledged in time or the log failed: empty body (so that the SDK sends the request again), `Retry-After`, reason in `X-GM-Error`; some may be in the log already and count once on the retry"),
    ),
    security(("gameanalytics_hmac" = []))
)]
pub async fn events(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let game_key = path.into_inner();
    let timeout = state.config.request_timeout;
    let result = ingest_within(timeout, async move {
        let (game, body) = accept(&req, payload, &state, &game_key).await?;
        let key = idempotency_key(req.headers())?;
        let peer = req.peer_addr().map(|a| a.ip().to_string());
        let ctx = RequestContext {
            game: &game,
            received_at: Utc::now(),
            limits: &state.config.limits,
            client_ip: peer.as_deref(),
            key: key.as_ref(),
        };
        let decoded = ga::decode_events(&body, ctx)?;
        let refs = decoded.refs;
        let outcome = append_decoded(&state, &game, decoded.events).await?;
        let results = outcome.response.results;
        if let Some(wait) = outcome.rate_limited {
            if results.iter().any(|r| r.code.as_deref() == Some(RATE_LIMITED)) {
                return Err(GatewayError::RateLimited {
                    retry_after_secs: retry_after_secs(wait),
                    reason: "a player of this request is over its event quota; events already stored count once \
                             when the request is sent again"
                        .into(),
                });
            }
        }
        let refused: Vec<RejectedEvent> = results
            .into_iter()
            .filter(|r| r.code.is_some())
            .map(|r| {
                let at = refs.get(r.index).cloned().unwrap_or_default();
                RejectedEvent {
                    index: r.index,
                    category: at.category,
                    event_uuid: at.event_uuid,
                    errors: vec![EventError {
                        error_type: r.code.unwrap_or_default(),
                        path: format!("/{}", r.field.unwrap_or_default().replace('.', "/")),
                        reason: r.reason.unwrap_or_default(),
                    }],
                }
            })
            .collect();
        if refused.is_empty() {
            Ok(HttpResponse::Ok().json(Collected {}))
        } else {
            Ok(HttpResponse::BadRequest().json(refused))
        }
    })
    .await;
    for_sdk(result).await
}

/// Turns a 429 or 5xx answer into one without a body (the only kind the SDKs send again),
/// keeping its headers and moving its reason to `X-GM-Error`.
async fn for_sdk(result: Result<HttpResponse, GatewayError>) -> HttpResponse {
    let response = match result {
        Ok(r) => r,
        Err(e) => e.error_response(),
    };
    let status = response.status();
    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
        return response;
    }
    let headers = response.headers().clone();
    let body = response.into_body().try_into_bytes().unwrap_or_default();
    let reason = serde_json::from_slice::<ErrorBody>(&body).map(|e| format!("{}: {}", e.error, e.reason)).ok();
    let mut out = HttpResponse::build(status);
    for (name, value) in headers.iter().filter(|(n, _)| **n != CONTENT_TYPE && **n != CONTENT_LENGTH) {
        out.append_header((name.clone(), value.clone()));
    }
    if !headers.contains_key(RETRY_AFTER) {
        out.insert_header((RETRY_AFTER, "1"));
    }
    if let Some(reason) = reason {
        let visible: String =
            reason.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).take(512).collect();
        if let Ok(value) = HeaderValue::from_str(&visible) {
            out.insert_header((HeaderName::from_static(ERROR_HEADER), value));
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(game: &str, game_key: &str, secret: &str) -> GameAnalyticsKey {
        GameAnalyticsKey {
            game_id: GameId::parse(game).unwrap(),
            game_key: game_key.into(),
            secret: Secret(secret.into()),
        }
    }

    #[test]
    fn the_authorization_is_the_documented_base64_hmac_of_the_body() {
        // The collector docs' sandbox secret key; value computed with
        // `printf %s '[]' | openssl dgst -sha256 -hmac "$SECRET" -binary | base64`.
        let secret = b"16813a12f718bc5c620f56944e1abc3ea13ccbac";
        assert_eq!(authorization(secret, b"[]"), "BvRPkIqao98oRNnPIsPRbAL/pkdCDlrBkbmv8OHAFoE=");
    }

    #[actix_web::test]
    async fn answers_the_sdks_retry_lose_their_body_and_keep_the_reason_in_a_header() {
        let unavailable = for_sdk(Err(GatewayError::Unavailable("the log is down".into()))).await;
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.headers().get(RETRY_AFTER).unwrap(), "1");
        let reason = unavailable.headers().get(ERROR_HEADER).unwrap().to_str().unwrap().to_string();
        assert!(reason.starts_with("unavailable: the log is down"), "{reason}");
        let body = unavailable.into_body().try_into_bytes().unwrap();
        assert!(body.is_empty(), "an SDK retries only an answer without a body");

        let limited = GatewayError::RateLimited { retry_after_secs: 7, reason: "over quota".into() };
        let limited = for_sdk(Err(limited)).await;
        assert_eq!(
            (limited.status(), limited.headers().get(RETRY_AFTER).unwrap().to_str().unwrap()),
            (StatusCode::TOO_MANY_REQUESTS, "7")
        );
        assert!(limited.into_body().try_into_bytes().unwrap().is_empty());

        // Final answers keep their body: the SDK drops the events, and the body says why.
        let refused = for_sdk(Err(GatewayError::Unauthenticated("wrong signature".into()))).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let body = refused.into_body().try_into_bytes().unwrap();
        assert!(String::from_utf8_lossy(&body).contains("wrong signature"));
    }

    #[test]
    fn several_secrets_per_game_key_are_valid_and_a_game_key_names_one_game() {
        let keys = GameKeys::new(&[key("g", "gk-1", "old-secret-000001"), key("g", "gk-1", "new-secret-000002")]);
        let (game, secrets) = keys.lookup("gk-1").unwrap();
        assert_eq!((game.as_str(), secrets.len()), ("g", 2));
        assert!(keys.lookup("gk-2").is_err());
        // Rotation: a clone (the state's) sees the replacement at once.
        let shared = keys.clone();
        keys.replace(&[key("g", "gk-2", "newer-secret-000003")]);
        assert!(shared.lookup("gk-1").is_err());
        assert_eq!(shared.lookup("gk-2").unwrap().1, vec![b"newer-secret-000003".to_vec()]);
        let twice = GameKeys::new(&[key("g", "gk-1", "s-0000000000000001"), key("h", "gk-1", "s-0000000000000002")]);
        let (game, secrets) = twice.lookup("gk-1").unwrap();
        assert_eq!((game.as_str(), secrets.len()), ("g", 1), "the first game keeps the key");
        assert!(!format!("{keys:?}").contains("secret"));
    }
}
