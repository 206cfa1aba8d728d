//! Read-model queries: player profiles and per-game analytics.

use crate::auth::{authorize, Action};
use crate::error::{ErrorBody, GatewayError};
use crate::{within, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDate;
use gm_projections::model::{order_funnel, ActiveUsersDay, FunnelStep, PlayerProfile, RevenueDay, SessionsDay};
use gm_projections::DateRange;
use gm_schemas::{GameId, PlayerId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::openapi::{RefOr, Response};
use utoipa::{IntoParams, ToSchema};

/// An inclusive range of UTC days, at most 366 days long.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    // Required, but an `Option` so that its absence gets a clear 400 of ours.
    /// First day, `YYYY-MM-DD` (UTC).
    #[param(required = true, format = Date, example = "2025-01-01")]
    pub from: Option<String>,
    /// Last day, inclusive, `YYYY-MM-DD` (UTC).
    #[param(required = true, format = Date, example = "2025-01-31")]
    pub to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActiveUsersResponse {
    pub game_id: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// One row per day that has data, in day order.
    pub days: Vec<ActiveUsersDay>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionsResponse {
    pub game_id: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub days: Vec<SessionsDay>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RevenueResponse {
    pub game_id: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// One row per day and currency.
    pub days: Vec<RevenueDay>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FunnelResponse {
    pub game_id: String,
    /// One step per level: the levels of the game's configured order (`[funnel] order`)
    /// first, in that order, then the others in natural order (`level-2` before `level-10`).
    pub steps: Vec<FunnelStep>,
}

fn parse_game(raw: &str) -> Result<GameId, GatewayError> {
    GameId::parse(raw).map_err(|e| GatewayError::InvalidInput(format!("game_id: {e}")))
}

fn parse_day(name: &str, raw: Option<&str>) -> Result<NaiveDate, GatewayError> {
    let raw =
        raw.ok_or_else(|| GatewayError::InvalidInput(format!("query parameter '{name}' (YYYY-MM-DD) is required")))?;
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|e| GatewayError::InvalidInput(format!("{name}: '{raw}' is not a date YYYY-MM-DD: {e}")))
}

fn parse_range(params: &RangeParams) -> Result<DateRange, GatewayError> {
    let from = parse_day("from", params.from.as_deref())?;
    let to = parse_day("to", params.to.as_deref())?;
    DateRange::parse(from, to).map_err(|e| GatewayError::InvalidInput(format!("date range: {e}")))
}

/// Authenticates, checks the game id and authorizes reading it: one player's data
/// (`read_player`) or the game's analytics. Every query route starts here.
pub(crate) fn authorized_game(
    req: &HttpRequest,
    state: &AppState,
    raw_game: &str,
    read_player: bool,
) -> Result<GameId, GatewayError> {
    let principal = state.auth.authenticate(req.headers())?;
    let game = parse_game(raw_game)?;
    let action = if read_player { Action::ReadPlayer(&game) } else { Action::ReadAnalytics(&game) };
    authorize(&principal, action)?;
    Ok(game)
}

/// The game and the player of a route about one player, once authorised to read their data.
pub(crate) fn authorized_player(
    req: &HttpRequest,
    state: &AppState,
    (raw_game, raw_player): (String, String),
) -> Result<(GameId, PlayerId), GatewayError> {
    let game = authorized_game(req, state, &raw_game, true)?;
    let player = PlayerId::parse(raw_player).map_err(|e| GatewayError::InvalidInput(format!("player_id: {e}")))?;
    Ok((game, player))
}

/// The game and the days of an analytics query over a date range, once authorised.
pub(crate) fn authorized_range(
    req: &HttpRequest,
    state: &AppState,
    raw_game: &str,
    params: &RangeParams,
) -> Result<(GameId, DateRange), GatewayError> {
    let game = authorized_game(req, state, raw_game, false)?;
    Ok((game, parse_range(params)?))
}

/// An analytics route over a date range, written once with its OpenAPI operation: `name`
/// (`GET path`) authorises reading the game's analytics, parses the range, asks
/// `source.query(game, range)` (`source` an expression of the app state `state`) and answers
/// `Response { game_id, from, to, rows }` (200, `description`), within the request timeout.
/// The doc comment goes on the route; `RangeParams` and `RangeQueryErrors` must be in scope.
macro_rules! range_route {
    ($(#[$attr:meta])* $name:ident at $path:tt, $description:tt,
     |$state:ident| $source:expr => $query:ident, $response:ident { $rows:ident }) => {
        $(#[$attr])*
        #[utoipa::path(
            get,
            path = $path,
            tag = "queries",
            params(("game_id" = String, Path, description = "The game"), RangeParams),
            responses((status = 200, description = $description, body = $response), RangeQueryErrors),
            security(("jwt" = ["analyst", "admin"]))
        )]
        pub async fn $name(
            req: actix_web::HttpRequest,
            path: actix_web::web::Path<String>,
            params: actix_web::web::Query<$crate::queries::RangeParams>,
            $state: actix_web::web::Data<$crate::AppState>,
        ) -> Result<actix_web::HttpResponse, $crate::error::GatewayError> {
            $crate::within($state.config.request_timeout, async move {
                let (game, range) = $crate::queries::authorized_range(&req, &$state, &path, &params)?;
                let $rows = $source.$query(&game, range).await?;
                let (game_id, from, to) = (game.to_string(), range.from(), range.to());
                Ok(actix_web::HttpResponse::Ok().json($response { game_id, from, to, $rows }))
            })
            .await
        }
    };
}
pub(crate) use range_route;

crate::openapi::error_answers! {
    /// The answers every query route gives when it cannot answer (401, 403, 503).
    QueryErrors {
        "401" => "Missing, expired or invalid token",
        "403" => "Credentials without the analyst or admin role (game API keys only ingest), or a token whose \
                  `games` claim does not name this game",
        "503" => "Read model store unavailable",
    }
}

/// [`QueryErrors`] and the 400 of an analytics query over a date range.
pub(crate) struct RangeQueryErrors;

impl utoipa::IntoResponses for RangeQueryErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut responses = <QueryErrors as utoipa::IntoResponses>::responses();
        let bad = crate::openapi::error_response("Invalid game id or date range (bad date, reversed, too wide)");
        responses.insert("400".into(), bad);
        responses
    }
}

/// One player's profile.
#[utoipa::path(
    get,
    path = "/v1/players/{game_id}/{player_id}",
    tag = "queries",
    params(("game_id" = String, Path, description = "The game"), ("player_id" = String, Path, description = "The player")),
    responses(
        (status = 200, description = "The player's profile", body = PlayerProfile),
        (status = 400, description = "Invalid game or player id", body = ErrorBody),
        (status = 404, description = "No such player", body = ErrorBody),
        QueryErrors,
    ),
    security(("jwt" = ["analyst", "admin"]))
)]
pub async fn player_profile(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    within(state.config.request_timeout, async move {
        let (game, player) = authorized_player(&req, &state, path.into_inner())?;
        match state.queries.player_profile(&game, &player).await? {
            Some(profile) => Ok(HttpResponse::Ok().json(profile)),
            None => Err(GatewayError::NotFound(format!("no player '{player}' in game '{game}'"))),
        }
    })
    .await
}

range_route! {
    /// Daily, weekly and monthly active users and stickiness, per day.
    active_users at "/v1/analytics/{game_id}/active-users",
    "DAU, WAU, MAU and stickiness per day",
    |state| state.queries => active_users, ActiveUsersResponse { days }
}

range_route! {
    /// Sessions started and closed, average length and length distribution, per day.
    sessions at "/v1/analytics/{game_id}/sessions",
    "Session figures per day",
    |state| state.queries => sessions, SessionsResponse { days }
}

range_route! {
    /// Revenue, purchases, payers, ARPDAU, ARPPU and conversion, per day and currency.
    revenue at "/v1/analytics/{game_id}/revenue",
    "Revenue figures per day and currency",
    |state| state.queries => revenue, RevenueResponse { days }
}

/// The progression funnel since the beginning: per level, the distinct players who started,
/// completed and failed it, the completion rate (null where nobody started), the conversion
/// from the step before, the median time from a player's first start to their first
/// completion, and the start / complete / fail events.
#[utoipa::path(
    get,
    path = "/v1/analytics/{game_id}/funnel",
    tag = "queries",
    params(("game_id" = String, Path, description = "The game")),
    responses(
        (status = 200, description = "One step per level", body = FunnelResponse),
        (status = 400, description = "Invalid game id", body = ErrorBody),
        QueryErrors,
    ),
    security(("jwt" = ["analyst", "admin"]))
)]
pub async fn funnel(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    within(state.config.request_timeout, async move {
        let game = authorized_game(&req, &state, &path, false)?;
        let steps = state.queries.funnel(&game).await?;
        let order = state.funnel_orders.get(game.as_str()).map(Vec::as_slice).unwrap_or_default();
        let steps = order_funnel(steps, order);
        Ok(HttpResponse::Ok().json(FunnelResponse { game_id: game.to_string(), steps }))
    })
    .await
}
