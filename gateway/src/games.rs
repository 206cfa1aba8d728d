//! Leaderboards, retention, new vs returning players and the monetisation summary.
//! Lists are paginated (`offset`, `limit`); date ranges are validated like the other
//! analytics (400 with a reason when reversed, too wide or malformed).

use crate::error::{ErrorBody, GatewayError};
use crate::queries::{authorized_game, authorized_player, range_route, QueryErrors, RangeParams, RangeQueryErrors};
use crate::{within, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{NaiveDate, Utc};
use gm_projections::leaderboard::{BoardPeriod, LeaderboardEntry, Period, PlayerStanding};
use gm_projections::retention::{Monetisation, NewReturningDay, RetentionCohort};
use gm_projections::GameQueries;
use gm_schemas::{GameId, Name};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Longest page of a leaderboard.
pub const MAX_LIMIT: u64 = 1_000;
/// Deepest offset into a leaderboard (deeper pages cost a scan; use a player's standing).
pub const MAX_OFFSET: u64 = 100_000;
pub const MAX_NEIGHBOURS: u64 = 50;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BoardParams {
    /// `daily`, `weekly` (ISO weeks, from Monday 00:00 UTC) or `all_time` (default `daily`).
    pub period: Option<String>,
    /// A UTC day inside the period wanted, `YYYY-MM-DD` (default: today, UTC).
    pub at: Option<String>,
    /// Players to skip, 0..=100000 (default 0).
    pub offset: Option<u64>,
    /// Players to return, 1..=1000 (default 10).
    pub limit: Option<u64>,
    /// For a player's standing: players shown above and below, 0..=50 (default 5).
    pub neighbours: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaderboardResponse {
    pub game_id: String,
    pub board: String,
    pub period: Period,
    /// First UTC day of the period.
    pub period_start: NaiveDate,
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
    /// Best first; ties share a rank and are ordered by player id, descending.
    pub entries: Vec<LeaderboardEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StandingResponse {
    pub game_id: String,
    pub board: String,
    pub period: Period,
    pub period_start: NaiveDate,
    #[serde(flatten)]
    pub standing: PlayerStanding,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RetentionResponse {
    pub game_id: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// One cohort per day of the range.
    pub cohorts: Vec<RetentionCohort>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewReturningResponse {
    pub game_id: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub days: Vec<NewReturningDay>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MonetisationResponse {
    pub game_id: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    #[serde(flatten)]
    pub summary: Monetisation,
}

fn games(state: &AppState) -> Result<&Arc<dyn GameQueries>, GatewayError> {
    state
        .games
        .as_ref()
        .ok_or_else(|| GatewayError::Unavailable("leaderboard and retention read models are not configured".into()))
}

fn in_bounds(name: &str, value: Option<u64>, default: u64, min: u64, max: u64) -> Result<u64, GatewayError> {
    let v = value.unwrap_or(default);
    if v < min || v > max {
        return Err(GatewayError::InvalidInput(format!("{name}: {v} is out of range {min}..={max}")));
    }
    Ok(v)
}

fn board_period(game: GameId, raw_board: &str, params: &BoardParams) -> Result<BoardPeriod, GatewayError> {
    let board = Name::parse(raw_board).map_err(|e| GatewayError::InvalidInput(format!("board: {e}")))?;
    let period = match params.period.as_deref() {
        None => Period::Daily,
        Some(p) => Period::parse(p).ok_or_else(|| {
            GatewayError::InvalidInput(format!("period: '{p}' is not one of daily, weekly, all_time"))
        })?,
    };
    let at = match params.at.as_deref() {
        None => Utc::now().date_naive(),
        Some(raw) => NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .map_err(|e| GatewayError::InvalidInput(format!("at: '{raw}' is not a date YYYY-MM-DD: {e}")))?,
    };
    Ok(BoardPeriod { game_id: game, board: board.to_string(), period, start: period.start(at) })
}

/// A page of a leaderboard, best first.
#[utoipa::path(
    get,
    path = "/v1/leaderboards/{game_id}/{board}",
    tag = "queries",
    params(("game_id" = String, Path, description = "The game"), ("board" = String, Path, description = "The board (the `board` of score events)"), BoardParams),
    responses(
        (status = 200, description = "The page", body = LeaderboardResponse),
        (status = 400, description = "Invalid game, board, period, day, offset or limit", body = ErrorBody),
        QueryErrors,
    ),
    security(("jwt" = ["analyst", "admin"]))
)]
pub async fn leaderboard(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    params: web::Query<BoardParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    within(state.config.request_timeout, async move {
        let (raw_game, raw_board) = path.into_inner();
        let game = authorized_game(&req, &state, &raw_game, false)?;
        let b = board_period(game, &raw_board, &params)?;
        let offset = in_bounds("offset", params.offset, 0, 0, MAX_OFFSET)?;
        let limit = in_bounds("limit", params.limit, 10, 1, MAX_LIMIT)?;
        let page = games(&state)?.leaderboard(&b, offset, limit).await?;
        Ok(HttpResponse::Ok().json(LeaderboardResponse {
            game_id: b.game_id.to_string(),
            board: b.board,
            period: b.period,
            period_start: b.start,
            total: page.total,
            offset,
            limit,
            entries: page.entries,
        }))
    })
    .await
}

/// A player's rank and score on a board, with the players around them.
#[utoipa::path(
    get,
    path = "/v1/leaderboards/{game_id}/{board}/players/{player_id}",
    tag = "queries",
    params(
        ("game_id" = String, Path, description = "The game"),
        ("board" = String, Path, description = "The board"),
        ("player_id" = String, Path, description = "The player"),
        BoardParams
    ),
    responses(
        (status = 200, description = "The player's standing", body = StandingResponse),
        (status = 400, description = "Invalid game, board, player, period, day or neighbours", body = ErrorBody),
        (status = 404, description = "The player has no score on this board in this period", body = ErrorBody),
        QueryErrors,
    ),
    security(("jwt" = ["analyst", "admin"]))
)]
pub async fn standing(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    params: web::Query<BoardParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    within(state.config.request_timeout, async move {
        let (raw_game, raw_board, raw_player) = path.into_inner();
        let (game, player) = authorized_player(&req, &state, (raw_game, raw_player))?;
        let b = board_period(game, &raw_board, &params)?;
        let neighbours = in_bounds("neighbours", params.neighbours, 5, 0, MAX_NEIGHBOURS)?;
        let Some(standing) = games(&state)?.leaderboard_player(&b, &player, neighbours).await? else {
            return Err(GatewayError::NotFound(format!(
                "player '{player}' has no {} score on board '{}' from {}",
                b.period, b.board, b.start
            )));
        };
        Ok(HttpResponse::Ok().json(StandingResponse {
            game_id: b.game_id.to_string(),
            board: b.board,
            period: b.period,
            period_start: b.start,
            standing,
        }))
    })
    .await
}

range_route! {
    /// D1, D7 and D30 retention of the first-seen cohort of each day.
    retention at "/v1/analytics/{game_id}/retention",
    "One cohort per day: players first seen that UTC day and how many came back on day 1, 7 and 30",
    |state| games(&state)? => retention, RetentionResponse { cohorts }
}

range_route! {
    /// New (first seen that day) and returning players, per day.
    new_returning at "/v1/analytics/{game_id}/new-returning",
    "Active, new and returning players per day",
    |state| games(&state)? => new_returning, NewReturningResponse { days }
}

range_route! {
    /// Revenue per daily active user and per payer, and conversion to payer, over a range.
    monetisation at "/v1/analytics/{game_id}/monetisation",
    "ARPDAU and ARPPU per currency, payers and conversion over the whole range",
    |state| games(&state)? => monetisation, MonetisationResponse { summary }
}

/// Longest list of recommendations.
pub const MAX_RECOMMENDATIONS: u64 = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecommendationParams {
    /// Items to return, 1..=100 (default 10).
    pub limit: Option<u64>,
    /// Half-life of a player's interest in an item, in days, 0.01..=3650 (default 14).
    pub half_life_days: Option<f64>,
}

/// What a recommendations answer is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecommendationBasis {
    /// The player's own interactions (item-to-item co-occurrence, time-decayed affinity),
    /// filled up with popular items.
    Personalised,
    /// The game's popular items only, nothing of the player's: see `reason`.
    Popular,
}

/// A player's recommendations and what they are built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecommendationsResponse {
    #[serde(flatten)]
    pub list: gm_projections::recommend::RecommendationList,
    pub basis: RecommendationBasis,
    /// Why the list is not personalised (`personalisation_consent_withdrawn`: the player's
    /// last `consent_update` said `personalisation: false`); absent when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Items recommended to a player, best first, with a score and a reason each.
#[utoipa::path(
    get,
    path = "/v1/players/{game_id}/{player_id}/recommendations",
    tag = "queries",
    params(("game_id" = String, Path, description = "The game"), ("player_id" = String, Path, description = "The player"), RecommendationParams),
    responses(
        (status = 200, description = "Items similar to the player's (item-to-item co-occurrence, time-decayed affinity), filled up with popular items; never an item the player already has. A player without interactions gets the popular items. A player who withdrew consent to personalisation (`consent_update` with `personalisation: false`) gets the popular items only, with `basis` `popular` and the reason, until consent returns.", body = RecommendationsResponse),
        (status = 400, description = "Invalid game, player, limit or half-life", body = ErrorBody),
        QueryErrors,
    ),
    security(("jwt" = ["analyst", "admin"]))
)]
pub async fn recommendations(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    params: web::Query<RecommendationParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    within(state.config.request_timeout, async move {
        let (game, player) = authorized_player(&req, &state, path.into_inner())?;
        let limit = in_bounds("limit", params.limit, 10, 1, MAX_RECOMMENDATIONS)?;
        let half_life = params.half_life_days.unwrap_or(gm_projections::recommend::DEFAULT_HALF_LIFE_DAYS);
        if !(0.01..=3650.0).contains(&half_life) {
            return Err(GatewayError::InvalidInput(format!("half_life_days: {half_life} is out of range 0.01..=3650")));
        }
        let queries = state
            .recommendations
            .as_ref()
            .ok_or_else(|| GatewayError::Unavailable("the recommendation read model is not configured".into()))?;
        // The player's consent as their profile last recorded it: without consent to
        // personalisation, their interactions were forgotten when it was withdrawn (the
        // recommendations projection), so the store's answer is the non-personal fallback.
        let profile = state.queries.player_profile(&game, &player).await?;
        let withdrawn = profile.is_some_and(|p| p.consent_personalisation == Some(false));
        let mut list = queries.recommendations(&game, &player, limit as usize, half_life, Utc::now()).await?;
        if withdrawn {
            // A list cached before the withdrawal (Redis, `recommendation_ttl`) may still hold
            // items similar to the player's: only the popular ones are answered.
            list.items.retain(|item| item.reason == gm_projections::recommend::Reason::Popular);
        }
        let (basis, reason) = if withdrawn {
            (RecommendationBasis::Popular, Some("personalisation_consent_withdrawn".to_string()))
        } else {
            (RecommendationBasis::Personalised, None)
        };
        Ok(HttpResponse::Ok().json(RecommendationsResponse { list, basis, reason }))
    })
    .await
}
