//! Writes and queries of the leaderboard and retention projections, and the monetisation
//! summary, on PostgreSQL (tables in `migrations/0010_leaderboards_retention.sql`); the
//! same semantics as the embedded store's `store/games.rs`.

use super::apply::{delete_players, pseudonymise};
use super::{insert_days, u, PgStore};
use crate::error::{store_err, to_i64, to_u64};
use async_trait::async_trait;
use chrono::NaiveDate;
use gm_ports::StoreError;
use gm_projections::counters;
use gm_projections::leaderboard::{BoardPeriod, LeaderboardEntry, LeaderboardPage, PlayerStanding};
use gm_projections::model::{ChangeSet, DateRange, PlayerDay};
use gm_projections::retention::{Monetisation, NewReturningDay, RetentionCohort};
use gm_projections::GameQueries;
use gm_schemas::{GameId, PlayerId};
use sqlx::postgres::PgConnection;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(super) const LEADERBOARD_TABLES: &[&str] = &["leaderboard_scores"];
pub(super) const RETENTION_TABLES: &[&str] = &["cohort_players", "cohort_days", "retention_days"];

pub(super) async fn apply_leaderboards(conn: &mut PgConnection, table: &str, c: &ChangeSet) -> Result<(), sqlx::Error> {
    delete_players(conn, &[table], &c.erased).await?;
    if c.scores.is_empty() {
        return Ok(());
    }
    // One row per key (PostgreSQL refuses to update a row twice in one statement).
    let mut best: BTreeMap<(&str, &str, &str, NaiveDate, &str), i64> = BTreeMap::new();
    for s in &c.scores {
        let key = (s.game_id.as_str(), s.board.as_str(), s.period.as_str(), s.period_start, s.player_id.as_str());
        let slot = best.entry(key).or_insert(s.score);
        *slot = (*slot).max(s.score);
    }
    let games: Vec<&str> = best.keys().map(|k| k.0).collect();
    let boards: Vec<&str> = best.keys().map(|k| k.1).collect();
    let periods: Vec<&str> = best.keys().map(|k| k.2).collect();
    let starts: Vec<NaiveDate> = best.keys().map(|k| k.3).collect();
    let players: Vec<&str> = best.keys().map(|k| k.4).collect();
    let scores: Vec<i64> = best.values().copied().collect();
    sqlx::query(&format!(
        "INSERT INTO {table} AS t (game_id, board, period, period_start, player_id, score)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::date[], $5::text[], $6::int8[])
         ON CONFLICT (game_id, board, period, period_start, player_id) DO UPDATE SET
             score = GREATEST(t.score, excluded.score)"
    ))
    .bind(games)
    .bind(boards)
    .bind(periods)
    .bind(starts)
    .bind(players)
    .bind(scores)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn apply_retention(
    conn: &mut PgConnection,
    cohorts: &str,
    days: &str,
    counts: &str,
    c: &ChangeSet,
) -> Result<(), sqlx::Error> {
    // One pseudonym per player for both tables, so the player's days stay with the cohort.
    pseudonymise(conn, &[cohorts, days], &c.erased).await?;
    if c.active_days.is_empty() {
        return Ok(());
    }
    let deltas = retention_deltas(conn, cohorts, days, &c.active_days).await?;
    let mut first: BTreeMap<(&str, &str), NaiveDate> = BTreeMap::new();
    for d in &c.active_days {
        let slot = first.entry((d.game_id.as_str(), d.player_id.as_str())).or_insert(d.day);
        *slot = (*slot).min(d.day);
    }
    let games: Vec<&str> = first.keys().map(|k| k.0).collect();
    let players: Vec<&str> = first.keys().map(|k| k.1).collect();
    let firsts: Vec<NaiveDate> = first.values().copied().collect();
    sqlx::query(&format!(
        "INSERT INTO {cohorts} AS t (game_id, player_id, first_day)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::date[])
         ON CONFLICT (game_id, player_id) DO UPDATE SET first_day = LEAST(t.first_day, excluded.first_day)"
    ))
    .bind(games)
    .bind(players)
    .bind(firsts)
    .execute(&mut *conn)
    .await?;
    insert_days(conn, days, &c.active_days).await?;
    upsert_retention(conn, counts, &deltas).await
}

/// The retention counter changes of a batch's player-days (`gm_projections::counters`), from
/// one statement that reads every touched player's first day and stored days among the span
/// of their new days and the +1/+7/+30 of both their stored and their new first day. Read
/// before the batch's rows are written.
async fn retention_deltas(
    conn: &mut PgConnection,
    cohorts: &str,
    days: &str,
    active: &[PlayerDay],
) -> Result<counters::RetentionDeltas, sqlx::Error> {
    let touched = counters::touched(active);
    let keys: Vec<_> = touched.iter().collect();
    let games: Vec<&str> = keys.iter().map(|((g, _), _)| g.as_str()).collect();
    let players: Vec<&str> = keys.iter().map(|((_, p), _)| p.as_str()).collect();
    let (los, his): (Vec<NaiveDate>, Vec<NaiveDate>) = keys.iter().map(|(_, d)| counters::span(d)).unzip();
    // The +1/+7/+30 are RETENTION_DAYS; LEAST ignores a NULL first day.
    let rows: Vec<(i64, Option<NaiveDate>, Option<NaiveDate>)> = sqlx::query_as(&format!(
        "SELECT t.i, c.first_day, n.day FROM UNNEST($1::text[], $2::text[], $3::date[], $4::date[])
             WITH ORDINALITY AS t(g, p, lo, hi, i)
         LEFT JOIN {cohorts} c ON c.game_id = t.g AND c.player_id = t.p
         LEFT JOIN LATERAL (
             SELECT d.day FROM {days} d WHERE d.game_id = t.g AND d.player_id = t.p AND d.day BETWEEN t.lo AND t.hi
             UNION ALL
             SELECT d.day FROM {days} d WHERE d.game_id = t.g AND d.player_id = t.p AND d.day = ANY(ARRAY[
                 c.first_day + 1, c.first_day + 7, c.first_day + 30,
                 LEAST(c.first_day, t.lo) + 1, LEAST(c.first_day, t.lo) + 7, LEAST(c.first_day, t.lo) + 30])
         ) n ON true"
    ))
    .bind(&games)
    .bind(&players)
    .bind(&los)
    .bind(&his)
    .fetch_all(&mut *conn)
    .await?;
    let mut near: Vec<(Option<NaiveDate>, BTreeSet<NaiveDate>)> = vec![(None, BTreeSet::new()); keys.len()];
    for (i, first, day) in rows {
        // WITH ORDINALITY counts from 1.
        if let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| near.get_mut(i)) {
            slot.0 = first;
            slot.1.extend(day);
        }
    }
    let mut deltas = counters::RetentionDeltas::default();
    for (((game, _), new_days), (first, stored)) in keys.iter().zip(&near) {
        deltas.add(game, counters::retention_deltas(*first, stored, new_days));
    }
    Ok(deltas)
}

/// Adds folded retention counter changes to `table` (one multi-row upsert, in key order).
async fn upsert_retention(
    conn: &mut PgConnection,
    table: &str,
    deltas: &counters::RetentionDeltas,
) -> Result<(), sqlx::Error> {
    if deltas.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = deltas.rows().collect();
    let games: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let dates: Vec<NaiveDate> = rows.iter().map(|r| r.1).collect();
    let col = |f: &dyn Fn(&counters::RetentionDelta) -> i64| -> Vec<i64> { rows.iter().map(|r| f(r.2)).collect() };
    sqlx::query(&format!(
        "INSERT INTO {table} AS t (game_id, day, active, cohort, d1, d7, d30)
         SELECT * FROM UNNEST($1::text[], $2::date[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[])
         ON CONFLICT (game_id, day) DO UPDATE SET
             active = t.active + excluded.active, cohort = t.cohort + excluded.cohort,
             d1 = t.d1 + excluded.d1, d7 = t.d7 + excluded.d7, d30 = t.d30 + excluded.d30"
    ))
    .bind(&games)
    .bind(&dates)
    .bind(col(&|d| d.active))
    .bind(col(&|d| d.cohort))
    .bind(col(&|d| d.returned[0]))
    .bind(col(&|d| d.returned[1]))
    .bind(col(&|d| d.returned[2]))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

const BOARD: &str = "game_id = $1 AND board = $2 AND period = $3 AND period_start = $4";

impl PgStore {
    async fn board_rows(&self, b: &BoardPeriod, offset: u64, limit: u64) -> Result<Vec<LeaderboardEntry>, StoreError> {
        let sql = format!(
            "SELECT s.player_id, s.score,
                 (SELECT COUNT(*) FROM leaderboard_scores h WHERE h.{} AND h.score > s.score)
             FROM leaderboard_scores s WHERE s.{}
             ORDER BY s.score DESC, s.player_id COLLATE \"C\" DESC LIMIT $5 OFFSET $6",
            BOARD.replace(" AND ", " AND h."),
            BOARD.replace(" AND ", " AND s."),
        );
        let rows = sqlx::query(&sql)
            .bind(b.game_id.as_str())
            .bind(&b.board)
            .bind(b.period.as_str())
            .bind(b.start)
            .bind(to_i64(limit))
            .bind(to_i64(offset))
            .fetch_all(&self.pool)
            .await
            .map_err(store_err)?;
        rows.iter()
            .map(|r| {
                Ok(LeaderboardEntry {
                    rank: u(r, 2)? + 1,
                    player_id: r.try_get(0).map_err(store_err)?,
                    score: r.try_get(1).map_err(store_err)?,
                })
            })
            .collect()
    }

    async fn board_total(&self, b: &BoardPeriod) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM leaderboard_scores WHERE {BOARD}"))
            .bind(b.game_id.as_str())
            .bind(&b.board)
            .bind(b.period.as_str())
            .bind(b.start)
            .fetch_one(&self.pool)
            .await
            .map_err(store_err)?;
        Ok(to_u64(n))
    }
}

#[async_trait]
impl GameQueries for PgStore {
    async fn leaderboard(&self, b: &BoardPeriod, offset: u64, limit: u64) -> Result<LeaderboardPage, StoreError> {
        Ok(LeaderboardPage { total: self.board_total(b).await?, entries: self.board_rows(b, offset, limit).await? })
    }

    async fn leaderboard_player(
        &self,
        b: &BoardPeriod,
        player: &PlayerId,
        neighbours: u64,
    ) -> Result<Option<PlayerStanding>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT s.score,
                 (SELECT COUNT(*) FROM leaderboard_scores h WHERE h.{h} AND h.score > s.score),
                 (SELECT COUNT(*) FROM leaderboard_scores h WHERE h.{h} AND h.score = s.score
                     AND h.player_id COLLATE \"C\" > s.player_id COLLATE \"C\")
             FROM leaderboard_scores s WHERE s.{s} AND s.player_id = $5",
            h = BOARD.replace(" AND ", " AND h."),
            s = BOARD.replace(" AND ", " AND s."),
        ))
        .bind(b.game_id.as_str())
        .bind(&b.board)
        .bind(b.period.as_str())
        .bind(b.start)
        .bind(player.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_err)?;
        let Some(row) = row else { return Ok(None) };
        let score: i64 = row.try_get(0).map_err(store_err)?;
        let (higher, position) = (u(&row, 1)?, u(&row, 1)? + u(&row, 2)?);
        let from = position.saturating_sub(neighbours);
        let around = self.board_rows(b, from, position - from + neighbours + 1).await?;
        Ok(Some(PlayerStanding {
            total: self.board_total(b).await?,
            entry: LeaderboardEntry { rank: higher + 1, player_id: player.to_string(), score },
            around,
        }))
    }

    async fn leaderboard_scores(&self, b: &BoardPeriod) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(&format!("SELECT player_id, score FROM leaderboard_scores WHERE {BOARD}"))
            .bind(b.game_id.as_str())
            .bind(&b.board)
            .bind(b.period.as_str())
            .bind(b.start)
            .fetch_all(&self.pool)
            .await
            .map_err(store_err)
    }

    async fn retention(&self, game: &GameId, range: DateRange) -> Result<Vec<RetentionCohort>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, cohort, d1, d7, d30 FROM retention_days WHERE game_id = $1 AND day BETWEEN $2 AND $3",
        )
        .bind(game.as_str())
        .bind(range.from())
        .bind(range.to())
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?;
        let mut by_day = HashMap::new();
        for r in &rows {
            let day: NaiveDate = r.try_get(0).map_err(store_err)?;
            by_day.insert(day, RetentionCohort::new(day, u(r, 1)?, u(r, 2)?, u(r, 3)?, u(r, 4)?));
        }
        Ok(range.days().map(|d| by_day.remove(&d).unwrap_or_else(|| RetentionCohort::new(d, 0, 0, 0, 0))).collect())
    }

    async fn new_returning(&self, game: &GameId, range: DateRange) -> Result<Vec<NewReturningDay>, StoreError> {
        // A day's new players are its cohort.
        let rows =
            sqlx::query("SELECT day, active, cohort FROM retention_days WHERE game_id = $1 AND day BETWEEN $2 AND $3")
                .bind(game.as_str())
                .bind(range.from())
                .bind(range.to())
                .fetch_all(&self.pool)
                .await
                .map_err(store_err)?;
        let mut by_day = HashMap::new();
        for r in &rows {
            let day: NaiveDate = r.try_get(0).map_err(store_err)?;
            by_day.insert(day, (u(r, 1)?, u(r, 2)?));
        }
        Ok(range
            .days()
            .map(|day| {
                let (active, new_players) = by_day.get(&day).copied().unwrap_or((0, 0));
                NewReturningDay { day, active, new_players, returning_players: active - new_players }
            })
            .collect())
    }

    async fn monetisation(&self, game: &GameId, range: DateRange) -> Result<Monetisation, StoreError> {
        // Distinct players of the range from the gap counts (`counters::distinct_in`): a
        // player-day counts when it is its player's first in the range.
        let row = sqlx::query(
            "SELECT (SELECT COALESCE(SUM(players) FILTER (WHERE gap = 0 OR gap > day - $2), 0)::int8
                     FROM activity_gaps WHERE game_id = $1 AND day BETWEEN $2 AND $3),
                    (SELECT COALESCE(SUM(players), 0)::int8
                     FROM activity_gaps WHERE game_id = $1 AND day BETWEEN $2 AND $3),
                    (SELECT COALESCE(SUM(players) FILTER (WHERE gap = 0 OR gap > day - $2), 0)::int8
                     FROM payer_gaps WHERE game_id = $1 AND day BETWEEN $2 AND $3)",
        )
        .bind(game.as_str())
        .bind(range.from())
        .bind(range.to())
        .fetch_one(&self.pool)
        .await
        .map_err(store_err)?;
        let revenue: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT currency, SUM(amount_minor)::int8, SUM(purchases)::int8 FROM revenue_days
             WHERE game_id = $1 AND day BETWEEN $2 AND $3 GROUP BY currency ORDER BY currency",
        )
        .bind(game.as_str())
        .bind(range.from())
        .bind(range.to())
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?;
        let revenue = revenue.into_iter().map(|(c, a, p)| (c, a, to_u64(p))).collect();
        Ok(Monetisation::new(u(&row, 0)?, u(&row, 1)?, u(&row, 2)?, revenue))
    }
}
