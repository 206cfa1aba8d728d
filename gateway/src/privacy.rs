//! The privacy routes (erasure, its status and receipt, export, the audit trail) over
//! [`gm_privacy::PrivacyService`], which holds the erasure coordinator and the privacy of
//! ingest; here only HTTP: parsing, authorisation, and the answers.

use crate::auth::{authorize, Action, GameScope, Principal};
use crate::error::{ErrorBody, GatewayError};
use crate::{within, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use gm_privacy::{AuditEntry, Erasure, ErasureStatus, PlayerExport, PrivacyService, Receipt};
use gm_schemas::{GameId, PlayerId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use uuid::Uuid;

// ---- routes ----

crate::openapi::error_answers! {
    /// The answers every privacy route gives when it cannot answer (401, 403, 503).
    PrivacyErrors {
        "401" => "No valid token",
        "403" => "Not a compliance or admin token, or a game (asked, or of the erasure or receipt) that the \
                  token's `games` claim does not name",
        "503" => "Privacy is not configured on this gateway, or a store cannot serve now; retry",
    }
}

fn service(state: &AppState) -> Result<&Arc<PrivacyService>, GatewayError> {
    state.privacy.as_ref().ok_or_else(|| GatewayError::Unavailable("privacy is not configured on this gateway".into()))
}

fn actor_name(principal: &Principal) -> String {
    match principal {
        Principal::Person { subject, .. } => subject.clone(),
        Principal::GameKey { key_id, .. } => format!("api-key:{key_id}"),
        Principal::MetricsScraper => "metrics-scraper".into(),
    }
}

/// How many entries a privacy list answers: 1..=1000, 100 when not asked.
fn list_limit(asked: Option<u32>) -> Result<u32, GatewayError> {
    let limit = asked.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(GatewayError::InvalidInput("limit must be 1..=1000".into()));
    }
    Ok(limit)
}

/// The games a privacy list covers: the one asked (which the token must reach), else every
/// game of the token (`None`: all, entries of no game included).
fn listed_games(principal: &Principal, asked: Option<&str>) -> Result<Option<Vec<String>>, GatewayError> {
    Ok(match asked {
        Some(raw) => {
            let game = GameId::parse(raw).map_err(|e| GatewayError::InvalidInput(format!("game_id: {e}")))?;
            authorize(principal, Action::Privacy(&game))?;
            Some(vec![game.to_string()])
        }
        None => match principal.game_scope() {
            GameScope::All => None,
            GameScope::Only(games) => Some(games.iter().map(GameId::to_string).collect()),
        },
    })
}

/// Body of `POST /v1/privacy/erasures`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequestBody {
    pub game_id: String,
    pub player_id: String,
    /// Why (e.g. `user request`, a ticket number); kept in the erasure record only. Must not
    /// itself contain personal data. At most 200 characters.
    pub reason: String,
}

/// Request the erasure of a player everywhere.
///
/// Destroys the player's data key at once (crypto-shredding), refuses their new events for
/// the suppression window, and appends `ErasureRequested` to the player's partition. The
/// erasure completes when every projection has removed the player's rows; follow it at
/// `GET /v1/privacy/erasures/{erasure_id}`. A second request for the same player returns
/// the first erasure (200).
#[utoipa::path(
    post,
    path = "/v1/privacy/erasures",
    tag = "privacy",
    request_body = ErasureRequestBody,
    responses(
        (status = 202, description = "Erasure started", body = Erasure),
        (status = 200, description = "This player's erasure already exists: here it is", body = Erasure),
        (status = 400, description = "Invalid game or player id, or reason", body = ErrorBody),
        PrivacyErrors,
    ),
    security(("jwt" = ["compliance", "admin"]))
)]
pub async fn post_erasure(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    within(state.config.request_timeout, async {
        // Credentials first: an anonymous caller learns nothing, not even what a body is.
        let principal = state.auth.authenticate(req.headers())?;
        let body: ErasureRequestBody = serde_json::from_slice(&body)
            .map_err(|e| GatewayError::InvalidInput(format!("body: {e} (expected {{game_id, player_id, reason}})")))?;
        let game =
            GameId::parse(body.game_id.as_str()).map_err(|e| GatewayError::InvalidInput(format!("game_id: {e}")))?;
        authorize(&principal, Action::Privacy(&game))?;
        let player = PlayerId::parse(body.player_id.as_str())
            .map_err(|e| GatewayError::InvalidInput(format!("player_id: {e}")))?;
        let reason = body.reason.trim();
        if reason.is_empty() || reason.chars().count() > 200 {
            return Err(GatewayError::InvalidInput("reason: required, at most 200 characters".into()));
        }
        let privacy = service(&state)?;
        let (erasure, created) = privacy.request_erasure(&game, &player, reason, &actor_name(&principal)).await?;
        Ok(if created { HttpResponse::Accepted().json(erasure) } else { HttpResponse::Ok().json(erasure) })
    })
    .await
}

/// An erasure's status, timeline and (once completed) signed receipt.
#[utoipa::path(
    get,
    path = "/v1/privacy/erasures/{erasure_id}",
    tag = "privacy",
    params(("erasure_id" = Uuid, Path, description = "As returned by POST /v1/privacy/erasures")),
    responses(
        (status = 200, description = "The erasure", body = Erasure),
        (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "No such erasure", body = ErrorBody),
        PrivacyErrors,
    ),
    security(("jwt" = ["compliance", "admin"]))
)]
pub async fn get_erasure(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    within(state.config.request_timeout, async {
        let principal = state.auth.authenticate(req.headers())?;
        if !principal.has(crate::auth::Permission::Privacy) {
            return Err(GatewayError::Forbidden("the privacy routes need a compliance or admin token".into()));
        }
        let id = Uuid::parse_str(&path.into_inner())
            .map_err(|_| GatewayError::InvalidInput("erasure_id: not a UUID".into()))?;
        let privacy = service(&state)?;
        let erasure = privacy.erasure(id).await?;
        let Some(erasure) = erasure else { return Err(GatewayError::NotFound("no such erasure".into())) };
        let game = GameId::parse(erasure.game_id.as_str()).map_err(|e| GatewayError::Internal(e.to_string()))?;
        authorize(&principal, Action::Privacy(&game))?;
        Ok(HttpResponse::Ok().json(erasure))
    })
    .await
}

/// Everything held about a player (right of access), personal values decrypted.
#[utoipa::path(
    get,
    path = "/v1/privacy/exports/{game_id}/{player_id}",
    tag = "privacy",
    params(
        ("game_id" = String, Path, description = "The game"),
        ("player_id" = String, Path, description = "The player, as the game knows them"),
    ),
    responses(
        (status = 200, description = "The export", body = PlayerExport),
        (status = 400, description = "Invalid game or player id", body = ErrorBody),
        (status = 404, description = "Nothing is held about this player", body = ErrorBody),
        PrivacyErrors,
    ),
    security(("jwt" = ["compliance", "admin"]))
)]
pub async fn get_export(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    within(state.config.request_timeout, async {
        let principal = state.auth.authenticate(req.headers())?;
        let (game, player) = path.into_inner();
        let game = GameId::parse(game).map_err(|e| GatewayError::InvalidInput(format!("game_id: {e}")))?;
        authorize(&principal, Action::Privacy(&game))?;
        let player = PlayerId::parse(player).map_err(|e| GatewayError::InvalidInput(format!("player_id: {e}")))?;
        let privacy = service(&state)?;
        let profile = state.queries.player_profile(&game, &player).await?;
        let profile = profile.map(|p| serde_json::to_value(p).unwrap_or_default());
        let export = privacy.export(&game, &player, profile).await?;
        let Some(export) = export else {
            return Err(GatewayError::NotFound("nothing is held about this player".into()));
        };
        privacy
            .audit(AuditEntry {
                at: Utc::now(),
                actor: actor_name(&principal),
                action: "export".into(),
                game_id: Some(game.to_string()),
                erasure_id: None,
                subject: Some(privacy.subject(&game, &player).to_hex()),
                detail: None,
            })
            .await?;
        Ok(HttpResponse::Ok().json(export))
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
pub struct AuditParams {
    /// How many entries, newest first (1..=1000, default 100).
    pub limit: Option<u32>,
    /// Only the entries of this game (403 when the token's `games` claim does not name it).
    pub game_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditTrail {
    pub entries: Vec<AuditEntry>,
}

/// The privacy audit trail (append-only; players appear only as subject hashes).
///
/// A token whose `games` claim is `*` sees every entry (those of no game too, such as
/// retention runs); any other token sees only the entries of its games.
#[utoipa::path(
    get,
    path = "/v1/privacy/audit",
    tag = "privacy",
    params(AuditParams),
    responses(
        (status = 200, description = "Newest first", body = AuditTrail),
        (status = 400, description = "limit out of range, or an invalid game_id", body = ErrorBody),
        PrivacyErrors,
    ),
    security(("jwt" = ["compliance", "admin"]))
)]
pub async fn get_audit(
    req: HttpRequest,
    params: web::Query<AuditParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    within(state.config.request_timeout, async {
        let principal = state.auth.authenticate(req.headers())?;
        authorize(&principal, Action::PrivacyAudit)?;
        let limit = list_limit(params.limit)?;
        let games = listed_games(&principal, params.game_id.as_deref())?;
        let entries = service(&state)?.audit_trail(limit, games.as_deref()).await?;
        Ok(HttpResponse::Ok().json(AuditTrail { entries }))
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
pub struct ErasureListParams {
    /// Only the erasures of this game (403 when the token's `games` claim does not name it);
    /// without it, those of every game of the token.
    pub game_id: Option<String>,
    /// `pending` or `completed`.
    pub status: Option<String>,
    /// How many, the latest requested first (1..=1000, default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErasureList {
    /// The latest requested first, each with its timeline (and receipt once completed).
    pub erasures: Vec<Erasure>,
}

/// The erasures of the token's games, the latest requested first: each one's status, timeline
/// and (once completed) receipt.
#[utoipa::path(
    get,
    path = "/v1/privacy/erasures",
    tag = "privacy",
    params(ErasureListParams),
    responses(
        (status = 200, description = "The latest requested first", body = ErasureList),
        (status = 400, description = "An invalid game_id, status or limit", body = ErrorBody),
        PrivacyErrors,
    ),
    security(("jwt" = ["compliance", "admin"]))
)]
pub async fn list_erasures(
    req: HttpRequest,
    params: web::Query<ErasureListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    within(state.config.request_timeout, async {
        let principal = state.auth.authenticate(req.headers())?;
        if !principal.has(crate::auth::Permission::Privacy) {
            return Err(GatewayError::Forbidden("the privacy routes need a compliance or admin token".into()));
        }
        let limit = list_limit(params.limit)?;
        let status = match params.status.as_deref() {
            None => None,
            Some(s) => Some(ErasureStatus::parse(s).ok_or_else(|| {
                GatewayError::InvalidInput(format!("status: '{s}' is not one of pending, completed"))
            })?),
        };
        let games = listed_games(&principal, params.game_id.as_deref())?;
        let filter = gm_privacy::store::ErasureFilter { games, status, limit };
        let erasures = service(&state)?.store().erasures(&filter).await?;
        Ok(HttpResponse::Ok().json(ErasureList { erasures }))
    })
    .await
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReceiptVerification {
    /// The signature is this deployment's over exactly these fields.
    pub valid: bool,
    pub erasure_id: Uuid,
    /// Why it is not valid (absent when valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Checks an erasure receipt's signature (HMAC-SHA256 under a key only the platform holds, so
/// only the platform can tell): valid when the receipt is exactly as this deployment signed it.
#[utoipa::path(
    post,
    path = "/v1/privacy/receipts/verify",
    tag = "privacy",
    request_body = Receipt,
    responses(
        (status = 200, description = "Whether the receipt is valid (an altered or foreign receipt is `valid: false`)", body = ReceiptVerification),
        (status = 400, description = "Not a receipt", body = ErrorBody),
        PrivacyErrors,
    ),
    security(("jwt" = ["compliance", "admin"]))
)]
pub async fn verify_receipt(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    within(state.config.request_timeout, async {
        let principal = state.auth.authenticate(req.headers())?;
        let receipt: Receipt = serde_json::from_slice(&body)
            .map_err(|e| GatewayError::InvalidInput(format!("body: {e} (expected an erasure receipt)")))?;
        let game =
            GameId::parse(receipt.game_id.as_str()).map_err(|e| GatewayError::InvalidInput(format!("game_id: {e}")))?;
        authorize(&principal, Action::Privacy(&game))?;
        let valid = receipt.verify(service(&state)?.receipt_signer());
        let reason = (!valid).then(|| {
            "the signature does not match: the receipt was altered, or another deployment signed it".to_string()
        });
        Ok(HttpResponse::Ok().json(ReceiptVerification { valid, erasure_id: receipt.erasure_id, reason }))
    })
    .await
}
