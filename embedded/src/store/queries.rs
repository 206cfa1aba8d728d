//! Queries of the read models of profiles, activity, sessions, revenue and funnel
//! ([`AnalyticsQueries`]).

use super::{day_text, parse_day, store_err, u, SqliteStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
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
impl AnalyticsQueries for SqliteStore {
    async fn player_profile(&self, game: &GameId, player: &PlayerId) -> Result<Option<PlayerProfile>, StoreError> {
        let mut conn = self.inner.reads.acquire().await.map_err(store_err)?;
        let Some(row) = sqlx::query(
            "SELECT first_seen_ms, last_seen_ms, events, sessions, playtime_seconds, purchases,
                    levels_completed, xp, current_level, country, language, consent_analytics,
                    consent_personalisation, last_seq
             FROM player_profiles WHERE game_id = ? AND player_id = ?",
        )
        .bind(game.as_str())
        .bind(player.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(store_err)?
        else {
            return Ok(None);
        };
        let revenue_rows =
            sqlx::query("SELECT currency, amount_minor FROM profile_revenue WHERE game_id = ? AND player_id = ?")
                .bind(game.as_str())
                .bind(player.as_str())
                .fetch_all(&mut *conn)
                .await
                .map_err(store_err)?;
        let mut revenue_minor = BTreeMap::new();
        for r in revenue_rows {
            revenue_minor
                .insert(r.try_get::<String, _>(0).map_err(store_err)?, r.try_get::<i64, _>(1).map_err(store_err)?);
        }
        let ms = |i: usize| -> Result<DateTime<Utc>, StoreError> {
            let v: i64 = row.try_get(i).map_err(store_err)?;
            Ok(DateTime::<Utc>::from_timestamp_millis(v).unwrap_or_default())
        };
        let flag = |i: usize| -> Result<Option<bool>, StoreError> {
            Ok(row.try_get::<Option<i64>, _>(i).map_err(store_err)?.map(|v| v != 0))
        };
        Ok(Some(PlayerProfile {
            game_id: game.to_string(),
            player_id: player.to_string(),
            first_seen: ms(0)?,
            last_seen: ms(1)?,
            events: u(&row, 2)?,
            sessions: u(&row, 3)?,
            playtime_seconds: u(&row, 4)?,
            purchases: u(&row, 5)?,
            revenue_minor,
            levels_completed: u(&row, 6)?,
            xp: row.try_get(7).map_err(store_err)?,
            current_level: row.try_get(8).map_err(store_err)?,
            country: row.try_get(9).map_err(store_err)?,
            language: row.try_get(10).map_err(store_err)?,
            consent_analytics: flag(11)?,
            consent_personalisation: flag(12)?,
            last_seq: u(&row, 13)?,
        }))
    }

    async fn active_users(&self, game: &GameId, range: DateRange) -> Result<Vec<ActiveUsersDay>, StoreError> {
        // Gap counts (`counters`): gaps of 30 days or more count alike in 30-day windows.
        let rows = sqlx::query(
            "SELECT day, min(gap, 30), SUM(players) FROM activity_gaps
             WHERE game_id = ?1 AND day BETWEEN ?2 AND ?3 GROUP BY 1, 2",
        )
        .bind(game.as_str())
        .bind(day_text(counters::active_users_from(range)))
        .bind(day_text(range.to()))
        .fetch_all(&self.inner.reads)
        .await
        .map_err(store_err)?;
        let rows = rows
            .iter()
            .map(|row| {
                let day = parse_day(&row.try_get::<String, _>(0).map_err(store_err)?)?;
                Ok((day, row.try_get::<i32, _>(1).map_err(store_err)?, u(row, 2)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(counters::active_users(range, &rows))
    }

    async fn sessions(&self, game: &GameId, range: DateRange) -> Result<Vec<SessionsDay>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, started, closed, total_length_seconds, b0, b1, b2, b3, b4, b5, b6
             FROM session_days WHERE game_id = ? AND day BETWEEN ? AND ?",
        )
        .bind(game.as_str())
        .bind(day_text(range.from()))
        .bind(day_text(range.to()))
        .fetch_all(&self.inner.reads)
        .await
        .map_err(store_err)?;
        let mut by_day = HashMap::new();
        for row in &rows {
            let day = parse_day(&row.try_get::<String, _>(0).map_err(store_err)?)?;
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
                 (SELECT coalesce(SUM(players), 0) FROM payer_gaps p WHERE p.game_id = r.game_id AND p.day = r.day),
                 (SELECT coalesce(SUM(players), 0) FROM activity_gaps a WHERE a.game_id = r.game_id AND a.day = r.day)
             FROM revenue_days r
             WHERE r.game_id = ? AND r.day BETWEEN ? AND ?
             ORDER BY r.day, r.currency",
        )
        .bind(game.as_str())
        .bind(day_text(range.from()))
        .bind(day_text(range.to()))
        .fetch_all(&self.inner.reads)
        .await
        .map_err(store_err)?;
        rows.iter()
            .map(|row| {
                let day = parse_day(&row.try_get::<String, _>(0).map_err(store_err)?)?;
                let currency = row.try_get(1).map_err(store_err)?;
                let revenue_minor = row.try_get(2).map_err(store_err)?;
                Ok(RevenueDay::new(day, currency, revenue_minor, u(row, 3)?, u(row, 4)?, u(row, 5)?))
            })
            .collect()
    }

    async fn funnel(&self, game: &GameId) -> Result<Vec<FunnelStep>, StoreError> {
        let mut levels: BTreeMap<String, FunnelCounts> = BTreeMap::new();
        let events = sqlx::query("SELECT level_id, starts, completes, fails FROM funnel WHERE game_id = ?")
            .bind(game.as_str())
            .fetch_all(&self.inner.reads)
            .await
            .map_err(store_err)?;
        for row in &events {
            let c = levels.entry(row.try_get(0).map_err(store_err)?).or_default();
            (c.starts, c.completes, c.fails) = (u(row, 1)?, u(row, 2)?, u(row, 3)?);
        }
        let players = sqlx::query(
            "SELECT level_id, COUNT(first_start_ms), COUNT(first_complete_ms), COUNT(first_fail_ms),
                 SUM(first_start_ms IS NOT NULL AND first_complete_ms IS NOT NULL)
             FROM funnel_players WHERE game_id = ? GROUP BY level_id",
        )
        .bind(game.as_str())
        .fetch_all(&self.inner.reads)
        .await
        .map_err(store_err)?;
        for row in &players {
            let c = levels.entry(row.try_get(0).map_err(store_err)?).or_default();
            c.players_started = u(row, 1)?;
            c.players_completed = u(row, 2)?;
            c.players_failed = u(row, 3)?;
            c.players_started_and_completed = u(row, 4)?;
        }
        // The median per level: the middle row (or the mean of the two middle rows) of the
        // players' times to complete, in order.
        let medians = sqlx::query(
            "SELECT level_id, AVG(d) / 1000.0 FROM (
                 SELECT level_id, first_complete_ms - first_start_ms AS d,
                     ROW_NUMBER() OVER (PARTITION BY level_id ORDER BY first_complete_ms - first_start_ms) AS rn,
                     COUNT(*) OVER (PARTITION BY level_id) AS n
                 FROM funnel_players
                 WHERE game_id = ? AND first_complete_ms >= first_start_ms
             ) WHERE rn IN ((n + 1) / 2, (n + 2) / 2) GROUP BY level_id",
        )
        .bind(game.as_str())
        .fetch_all(&self.inner.reads)
        .await
        .map_err(store_err)?;
        for row in &medians {
            let c = levels.entry(row.try_get(0).map_err(store_err)?).or_default();
            c.median_seconds_to_complete = row.try_get(1).map_err(store_err)?;
        }
        let steps = levels.into_iter().map(|(level, c)| FunnelStep::new(level, c)).collect();
        Ok(order_funnel(steps, &[]))
    }
}
