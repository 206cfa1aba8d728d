//! Queries of the read models of profiles, activity, sessions, revenue and funnel
//! ([`AnalyticsQueries`]).

use super::{u, PgStore};
use crate::error::{store_err, to_millis, to_u64};
use async_trait::async_trait;
use chrono::NaiveDate;
use gm_ports::StoreError;
use gm_projections::model::{
    order_funnel, sessions_over, ActiveUsersDay, DateRange, FunnelCounts, FunnelStep, PlayerProfile, RevenueDay,
    SessionCounts, SessionsDay,
};
use gm_projections::{counters, AnalyticsQueries};
use gm_schemas::{GameId, PlayerId};
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};

#[async_trait]
impl AnalyticsQueries for PgStore {
    async fn player_profile(&self, game: &GameId, player: &PlayerId) -> Result<Option<PlayerProfile>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(store_err)?;
        let Some(row) = sqlx::query(
            "SELECT first_seen, last_seen, events, sessions, playtime_seconds, purchases,
                    levels_completed, xp, current_level, country, language, consent_analytics,
                    consent_personalisation, last_seq
             FROM player_profiles WHERE game_id = $1 AND player_id = $2",
        )
        .bind(game.as_str())
        .bind(player.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(store_err)?
        else {
            return Ok(None);
        };
        let revenue_rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT currency, amount_minor FROM profile_revenue WHERE game_id = $1 AND player_id = $2")
                .bind(game.as_str())
                .bind(player.as_str())
                .fetch_all(&mut *conn)
                .await
                .map_err(store_err)?;
        Ok(Some(PlayerProfile {
            game_id: game.to_string(),
            player_id: player.to_string(),
            first_seen: to_millis(row.try_get(0).map_err(store_err)?),
            last_seen: to_millis(row.try_get(1).map_err(store_err)?),
            events: u(&row, 2)?,
            sessions: u(&row, 3)?,
            playtime_seconds: u(&row, 4)?,
            purchases: u(&row, 5)?,
            revenue_minor: revenue_rows.into_iter().collect(),
            levels_completed: u(&row, 6)?,
            xp: row.try_get(7).map_err(store_err)?,
            current_level: row.try_get(8).map_err(store_err)?,
            country: row.try_get(9).map_err(store_err)?,
            language: row.try_get(10).map_err(store_err)?,
            consent_analytics: row.try_get(11).map_err(store_err)?,
            consent_personalisation: row.try_get(12).map_err(store_err)?,
            last_seq: u(&row, 13)?,
        }))
    }

    async fn active_users(&self, game: &GameId, range: DateRange) -> Result<Vec<ActiveUsersDay>, StoreError> {
        // Gap counts (`counters`): gaps of 30 days or more count alike in 30-day windows.
        let rows: Vec<(NaiveDate, i32, i64)> = sqlx::query_as(
            "SELECT day, LEAST(gap, 30), SUM(players)::int8 FROM activity_gaps
             WHERE game_id = $1 AND day BETWEEN $2 AND $3 GROUP BY 1, 2",
        )
        .bind(game.as_str())
        .bind(counters::active_users_from(range))
        .bind(range.to())
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?;
        let rows: Vec<(NaiveDate, i32, u64)> = rows.into_iter().map(|(d, g, n)| (d, g, to_u64(n))).collect();
        Ok(counters::active_users(range, &rows))
    }

    async fn sessions(&self, game: &GameId, range: DateRange) -> Result<Vec<SessionsDay>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, started, closed, total_length_seconds, b0, b1, b2, b3, b4, b5, b6
             FROM session_days WHERE game_id = $1 AND day BETWEEN $2 AND $3",
        )
        .bind(game.as_str())
        .bind(range.from())
        .bind(range.to())
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?;
        let mut by_day = HashMap::new();
        for row in &rows {
            let day: NaiveDate = row.try_get(0).map_err(store_err)?;
            let mut buckets = [0u64; 7];
            for (i, b) in buckets.iter_mut().enumerate() {
                *b = u(row, 4 + i)?;
            }
            let (started, closed, total_length_seconds) = (u(row, 1)?, u(row, 2)?, u(row, 3)?);
            by_day.insert(day, SessionCounts { started, closed, total_length_seconds, buckets });
        }
        Ok(sessions_over(range, &by_day))
    }

    async fn revenue(&self, game: &GameId, range: DateRange) -> Result<Vec<RevenueDay>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.day, r.currency, r.amount_minor, r.purchases,
                 (SELECT COALESCE(SUM(players), 0)::int8 FROM payer_gaps p WHERE p.game_id = r.game_id AND p.day = r.day),
                 (SELECT COALESCE(SUM(players), 0)::int8 FROM activity_gaps a WHERE a.game_id = r.game_id AND a.day = r.day)
             FROM revenue_days r
             WHERE r.game_id = $1 AND r.day BETWEEN $2 AND $3
             ORDER BY r.day, r.currency COLLATE \"C\"",
        )
        .bind(game.as_str())
        .bind(range.from())
        .bind(range.to())
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?;
        rows.iter()
            .map(|row| {
                let day: NaiveDate = row.try_get(0).map_err(store_err)?;
                let currency = row.try_get(1).map_err(store_err)?;
                let revenue_minor = row.try_get(2).map_err(store_err)?;
                Ok(RevenueDay::new(day, currency, revenue_minor, u(row, 3)?, u(row, 4)?, u(row, 5)?))
            })
            .collect()
    }

    async fn funnel(&self, game: &GameId) -> Result<Vec<FunnelStep>, StoreError> {
        let mut levels: BTreeMap<String, FunnelCounts> = BTreeMap::new();
        let events = sqlx::query("SELECT level_id, starts, completes, fails FROM funnel WHERE game_id = $1")
            .bind(game.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(store_err)?;
        for row in &events {
            let c = levels.entry(row.try_get(0).map_err(store_err)?).or_default();
            (c.starts, c.completes, c.fails) = (u(row, 1)?, u(row, 2)?, u(row, 3)?);
        }
        let players = sqlx::query(
            "SELECT level_id, COUNT(first_start), COUNT(first_complete), COUNT(first_fail),
                 COUNT(*) FILTER (WHERE first_start IS NOT NULL AND first_complete IS NOT NULL),
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM first_complete - first_start)::float8)
                     FILTER (WHERE first_complete >= first_start)
             FROM funnel_players WHERE game_id = $1 GROUP BY level_id",
        )
        .bind(game.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?;
        for row in &players {
            let c = levels.entry(row.try_get(0).map_err(store_err)?).or_default();
            c.players_started = u(row, 1)?;
            c.players_completed = u(row, 2)?;
            c.players_failed = u(row, 3)?;
            c.players_started_and_completed = u(row, 4)?;
            c.median_seconds_to_complete = row.try_get(5).map_err(store_err)?;
        }
        let steps = levels.into_iter().map(|(level, c)| FunnelStep::new(level, c)).collect();
        Ok(order_funnel(steps, &[]))
    }
}
