//! Who a token is (`GET /v1/me`) and the development sign-in of the embedded default
//! (`GET /v1/dev-sign-in`): what the web console needs to show only the games and pages a
//! token may use.

use crate::auth::{Permission, Principal, Role};
use crate::error::{ErrorBody, GatewayError};
use crate::{AppState, Secret};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use utoipa::ToSchema;

/// A token the console offers for one-click sign-in: the embedded default's development
/// tokens (config/default.toml), never a deployment's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevSignIn {
    /// The role the token has.
    pub role: Role,
    /// The token itself (also configured as accepted, e.g. `auth.dev_analyst_token`).
    pub token: Secret,
}

/// What kind of credentials a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A person's token (a JWT, or the development token).
    Person,
    /// A game's API key.
    GameKey,
    /// The metrics token.
    MetricsScraper,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MeResponse {
    pub kind: PrincipalKind,
    /// The token's subject (`sub`); for an API key, its key id; `metrics` for the metrics token.
    pub subject: String,
    /// The person's roles (`analyst`, `compliance`, `admin`); empty for keys.
    pub roles: Vec<String>,
    /// What the token may do: `ingest`, `query`, `privacy`, `read_metrics`, `read_api_docs`.
    pub permissions: Vec<String>,
    /// The games this token may act on among those this platform knows (those with an API key,
    /// a GameAnalytics key or keyless ingest configured), sorted.
    pub games: Vec<String>,
    /// Whether the token reaches every game (`"*"`), also games configured later.
    pub all_games: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DevToken {
    /// The role the token has.
    pub role: String,
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DevSignInResponse {
    /// The development tokens of the embedded default; empty everywhere else (production mode,
    /// or a deployment that configured its own token).
    pub tokens: Vec<DevToken>,
}

/// The games the platform knows now: API keys (rotation included), GameAnalytics keys and
/// keyless legacy games.
fn known_games(state: &AppState) -> BTreeSet<String> {
    let mut games: BTreeSet<String> = state.auth.key_games().iter().map(|g| g.to_string()).collect();
    games.extend(state.gameanalytics.games().iter().map(|g| g.to_string()));
    if let Some(keyless) = &state.keyless_legacy {
        games.extend(keyless.games().map(|g| g.to_string()));
    }
    games
}

/// Who this token is: its kind, subject, roles, permissions and games.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "operations",
    responses(
        (status = 200, description = "The token's identity and what it may do", body = MeResponse),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []), ("jwt" = []))
)]
pub async fn me(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, GatewayError> {
    let principal = state.auth.authenticate(req.headers())?;
    let scope = principal.game_scope();
    let games =
        known_games(&state).into_iter().filter(|g| gm_schemas::GameId::parse(g).is_ok_and(|g| scope.allows(&g)));
    let (kind, subject, roles) = match &principal {
        Principal::Person { subject, roles, .. } => {
            (PrincipalKind::Person, subject.clone(), roles.iter().map(|r| r.as_str().to_string()).collect())
        }
        Principal::GameKey { key_id, .. } => (PrincipalKind::GameKey, key_id.clone(), Vec::new()),
        Principal::MetricsScraper => (PrincipalKind::MetricsScraper, "metrics".to_string(), Vec::new()),
    };
    let permissions = Permission::ALL.iter().filter(|p| principal.has(**p)).map(|p| p.as_str().to_string()).collect();
    Ok(HttpResponse::Ok().json(MeResponse {
        kind,
        subject,
        roles,
        permissions,
        games: games.collect(),
        all_games: scope == crate::GameScope::All,
    }))
}

/// The embedded default's development tokens, for the console's one-click sign-in. Open (no
/// credentials): these tokens are the public ones of config/default.toml, which the first
/// run's startup message prints too; production mode and deployments with their own tokens
/// list none.
#[utoipa::path(
    get,
    path = "/v1/dev-sign-in",
    tag = "operations",
    responses((status = 200, description = "The development tokens (none outside the embedded default)", body = DevSignInResponse))
)]
pub async fn dev_sign_in(state: web::Data<AppState>) -> HttpResponse {
    let tokens = state
        .config
        .dev_sign_ins
        .iter()
        .map(|d| DevToken { role: d.role.as_str().to_string(), token: d.token.0.clone() })
        .collect();
    HttpResponse::Ok().json(DevSignInResponse { tokens })
}
