//! Tables and queries of the leaderboard and retention projections, and the monetisation
//! summary (over the daily-activity and revenue tables).
//!
//! | projection | tables |
//! |---|---|
//! | leaderboards | `leaderboard_scores` (best score per game, board, period, period start, player) |
//! | retention | `cohort_players` (first day per player), `cohort_days` (player-days) |
//!
//! Erasure: leaderboard rows of the player are deleted; in the retention tables the
//! player's id becomes one fresh pseudonym in both tables, so cohort sizes and retention
//! stay right.

use super::apply::{day_rows, delete_players, pseudonymise, stored_day, touched_json, DAY_COLUMNS, TOUCHED_CTE};
use super::{day_text, parse_day, store_err, u, SqliteStore, Table};
use crate::sql::{insert_new, to_i64, upsert, V};
use async_trait::async_trait;
use gm_ports::StoreError;
use gm_projections::counters;
use gm_projections::leaderboard::{BoardPeriod, LeaderboardEntry, LeaderboardPage, PlayerStanding};
use gm_projections::model::{ChangeSet, DateRange};
use gm_projections::retention::{Monetisation, NewReturningDay, RetentionCohort};
use gm_projections::GameQueries;
use gm_schemas::{GameId, PlayerId};
use sqlx::{Row, SqliteConnection};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(super) const LEADERBOARD_SCORES: Table = Table {
    name: "leaderboard_scores",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        board TEXT NOT NULL,
        period TEXT NOT NULL,
        period_start TEXT NOT NULL,
        player_id TEXT NOT NULL,
        score INTEGER NOT NULL,
        PRIMARY KEY (game_id, board, period, period_start, player_id)
    ) WITHOUT ROWID",
    indexes: &[
        "CREATE INDEX IF NOT EXISTS {t}_by_score ON {t} (game_id, board, period, period_start, score, player_id)",
        "CREATE INDEX IF NOT EXISTS {t}_by_player ON {t} (game_id, player_id)",
    ],
};
pub(super) const COHORT_PLAYERS: Table = Table {
    name: "cohort_players",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        player_id TEXT NOT NULL,
        first_day TEXT NOT NULL,
        PRIMARY KEY (game_id, player_id)
    ) WITHOUT ROWID",
    indexes: &["CREATE INDEX IF NOT EXISTS {t}_by_day ON {t} (game_id, first_day)"],
};
pub(super) const COHORT_DAYS: Table = Table {
    name: "cohort_days",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        day TEXT NOT NULL,
        player_id TEXT NOT NULL,
        PRIMARY KEY (game_id, day, player_id)
    ) WITHOUT ROWID",
    indexes: &["CREATE INDEX IF NOT EXISTS {t}_by_player ON {t} (game_id, player_id)"],
};

/// Retention counters per day (see `gm_projections::counters`): active players, the cohort
/// (players first seen that day), and of it those active on day +1, +7, +30.
pub(super) const RETENTION_DAYS: Table = Table {
    name: "retention_days",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        day TEXT NOT NULL,
        active INTEGER NOT NULL,
        cohort INTEGER NOT NULL,
        d1 INTEGER NOT NULL,
        d7 INTEGER NOT NULL,
        d30 INTEGER NOT NULL,
        PRIMARY KEY (game_id, day)
    ) WITHOUT ROWID",
    indexes: &[],
};

pub(super) async fn apply_leaderboards(
    conn: &mut SqliteConnection,
    table: &str,
    c: &ChangeSet,
) -> Result<(), sqlx::Error> {
    delete_players(conn, &[table], &c.erased).await?;
    let rows = c.scores.iter().map(|s| {
        vec![
            V::T(s.game_id.to_string()),
            V::T(s.board.clone()),
            V::T(s.period.as_str().to_string()),
            V::T(day_text(s.period_start)),
            V::T(s.player_id.to_string()),
            V::I(s.score),
        ]
    });
    upsert(
        conn,
        table,
        "game_id, board, period, period_start, player_id, score",
        "ON CONFLICT (game_id, board, period, period_start, player_id) DO UPDATE SET
         score = max(score, excluded.score)",
        rows.collect(),
    )
    .await
}

pub(super) async fn apply_retention(
    conn: &mut SqliteConnection,
    players: &str,
    days: &str,
    counts: &str,
    c: &ChangeSet,
) -> Result<(), sqlx::Error> {
    pseudonymise(conn, &[players, days], &c.erased).await?;
    // Counter changes from each touched player's first day and stored days among their new
    // days and the +1/+7/+30 of both first days (`counters`), read in one statement before
    // the rows are written. The +1/+7/+30 are RETENTION_DAYS.
    let (touched, json) = touched_json(&c.active_days);
    let near_sql = format!(
        "WITH {TOUCHED_CTE},
         f AS (SELECT t.*, c.first_day AS first, min(coalesce(c.first_day, t.lo), t.lo) AS after
               FROM t LEFT JOIN {players} c ON c.game_id = t.g AND c.player_id = t.p)
         SELECT f.i, f.first, d.day FROM f LEFT JOIN {days} d ON d.game_id = f.g AND d.player_id = f.p
             AND (d.day BETWEEN f.lo AND f.hi OR d.day IN (date(f.first, '+1 day'), date(f.first, '+7 day'),
                 date(f.first, '+30 day'), date(f.after, '+1 day'), date(f.after, '+7 day'), date(f.after, '+30 day')))"
    );
    let rows: Vec<(i64, Option<String>, Option<String>)> =
        sqlx::query_as(&near_sql).bind(json).fetch_all(&mut *conn).await?;
    let mut near: Vec<(Option<chrono::NaiveDate>, BTreeSet<chrono::NaiveDate>)> =
        vec![(None, BTreeSet::new()); touched.len()];
    for (i, first, day) in rows {
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| near.get_mut(i)) {
            slot.0 = first.as_deref().map(stored_day).transpose()?;
            if let Some(day) = day {
                slot.1.insert(stored_day(&day)?);
            }
        }
    }
    let mut deltas = counters::RetentionDeltas::default();
    for ((game, _, new_days), (first, stored)) in touched.iter().zip(&near) {
        deltas.add(game, counters::retention_deltas(*first, stored, new_days));
    }
    let mut first: BTreeMap<(&str, &str), chrono::NaiveDate> = BTreeMap::new();
    for d in &c.active_days {
        let slot = first.entry((d.game_id.as_str(), d.player_id.as_str())).or_insert(d.day);
        *slot = (*slot).min(d.day);
    }
    let rows = first.iter().map(|((g, p), day)| vec![V::T(g.to_string()), V::T(p.to_string()), V::T(day_text(*day))]);
    upsert(
        conn,
        players,
        "game_id, player_id, first_day",
        "ON CONFLICT (game_id, player_id) DO UPDATE SET first_day = min(first_day, excluded.first_day)",
        rows.collect(),
    )
    .await?;
    insert_new(conn, days, DAY_COLUMNS, day_rows(&c.active_days)).await?;
    let rows = deltas
        .rows()
        .map(|(g, d, r)| {
            let mut row = vec![V::T(g.to_string()), V::T(day_text(d)), V::I(r.active), V::I(r.cohort)];
            row.extend(r.returned.iter().map(|n| V::I(*n)));
            row
        })
        .collect();
    upsert(
        conn,
        counts,
        "game_id, day, active, cohort, d1, d7, d30",
        "ON CONFLICT (game_id, day) DO UPDATE SET
         active = active + excluded.active, cohort = cohort + excluded.cohort,
         d1 = d1 + excluded.d1, d7 = d7 + excluded.d7, d30 = d30 + excluded.d30",
        rows,
    )
    .await
}

/// The WHERE clause selecting one board and period (5 binds: game, board, period, start).
const BOARD: &str = "game_id = ? AND board = ? AND period = ? AND period_start = ?";

fn bind_board<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    b: &BoardPeriod,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    q.bind(b.game_id.to_string()).bind(b.board.clone()).bind(b.period.as_str()).bind(day_text(b.start))
}

impl SqliteStore {
    /// Rows at 0-based positions `offset..offset + limit` (score desc, player id desc), ranked.
    async fn board_rows(&self, b: &BoardPeriod, offset: u64, limit: u64) -> Result<Vec<LeaderboardEntry>, StoreError> {
        let sql = format!(
            "SELECT s.player_id, s.score,
                 (SELECT COUNT(*) FROM leaderboard_scores h WHERE h.{} AND h.score > s.score)
             FROM leaderboard_scores s WHERE s.{}
             ORDER BY s.score DESC, s.player_id DESC LIMIT ? OFFSET ?",
            BOARD.replace(" AND ", " AND h."),
            BOARD.replace(" AND ", " AND s."),
        );
        let q = bind_board(bind_board(sqlx::query(&sql), b), b).bind(to_i64(limit)).bind(to_i64(offset));
        let rows = q.fetch_all(&self.inner.reads).await.map_err(store_err)?;
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
        let sql = format!("SELECT COUNT(*) FROM leaderboard_scores WHERE {BOARD}");
        let n: i64 = bind_board(sqlx::query(&sql), b)
            .fetch_one(&self.inner.reads)
            .await
            .map_err(store_err)?
            .try_get(0)
            .map_err(store_err)?;
        Ok(crate::sql::to_u64(n))
    }
}

#[async_trait]
impl GameQueries for SqliteStore {
    async fn leaderboard(&self, b: &BoardPeriod, offset: u64, limit: u64) -> Result<LeaderboardPage, StoreError> {
        Ok(LeaderboardPage { total: self.board_total(b).await?, entries: self.board_rows(b, offset, limit).await? })
    }

    async fn leaderboard_player(
        &self,
        b: &BoardPeriod,
        player: &PlayerId,
        neighbours: u64,
    ) -> Result<Option<PlayerStanding>, StoreError> {
        let sql = format!("SELECT score FROM leaderboard_scores WHERE {BOARD} AND player_id = ?");
        let Some(row) = bind_board(sqlx::query(&sql), b)
            .bind(player.as_str())
            .fetch_optional(&self.inner.reads)
            .await
            .map_err(store_err)?
        else {
            return Ok(None);
        };
        let score: i64 = row.try_get(0).map_err(store_err)?;
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM leaderboard_scores WHERE {BOARD} AND score > ?1),
                    (SELECT COUNT(*) FROM leaderboard_scores WHERE {BOARD} AND score = ?1 AND player_id > ?2)"
        )
        .replace("?1", "?")
        .replace("?2", "?");
        let row = bind_board(bind_board(sqlx::query(&sql), b).bind(score), b)
            .bind(score)
            .bind(player.as_str())
            .fetch_one(&self.inner.reads)
            .await
            .map_err(store_err)?;
        let (higher, position) = (u(&row, 0)?, u(&row, 0)? + u(&row, 1)?);
        let from = position.saturating_sub(neighbours);
        let around = self.board_rows(b, from, position - from + neighbours + 1).await?;
        Ok(Some(PlayerStanding {
            total: self.board_total(b).await?,
            entry: LeaderboardEntry { rank: higher + 1, player_id: player.to_string(), score },
            around,
        }))
    }

    async fn leaderboard_scores(&self, b: &BoardPeriod) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = format!("SELECT player_id, score FROM leaderboard_scores WHERE {BOARD}");
        let rows = bind_board(sqlx::query(&sql), b).fetch_all(&self.inner.reads).await.map_err(store_err)?;
        rows.iter().map(|r| Ok((r.try_get(0).map_err(store_err)?, r.try_get(1).map_err(store_err)?))).collect()
    }

    async fn retention(&self, game: &GameId, range: DateRange) -> Result<Vec<RetentionCohort>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, cohort, d1, d7, d30 FROM retention_days WHERE game_id = ? AND day BETWEEN ? AND ?",
        )
        .bind(game.as_str())
        .bind(day_text(range.from()))
        .bind(day_text(range.to()))
        .fetch_all(&self.inner.reads)
        .await
        .map_err(store_err)?;
        let mut by_day = HashMap::new();
        for r in &rows {
            let day = parse_day(&r.try_get::<String, _>(0).map_err(store_err)?)?;
            by_day.insert(day, RetentionCohort::new(day, u(r, 1)?, u(r, 2)?, u(r, 3)?, u(r, 4)?));
        }
        Ok(range.days().map(|d| by_day.remove(&d).unwrap_or_else(|| RetentionCohort::new(d, 0, 0, 0, 0))).collect())
    }

    async fn new_returning(&self, game: &GameId, range: DateRange) -> Result<Vec<NewReturningDay>, StoreError> {
        // A day's new players are its cohort.
        let rows =
            sqlx::query("SELECT day, active, cohort FROM retention_days WHERE game_id = ? AND day BETWEEN ? AND ?")
                .bind(game.as_str())
                .bind(day_text(range.from()))
                .bind(day_text(range.to()))
                .fetch_all(&self.inner.reads)
                .await
                .map_err(store_err)?;
        let mut by_day = HashMap::new();
        for r in &rows {
            let day = parse_day(&r.try_get::<String, _>(0).map_err(store_err)?)?;
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
        let (from, to) = (day_text(range.from()), day_text(range.to()));
        // Distinct players of the range from the gap counts (`counters::distinct_in`): a
        // player-day counts when it is its player's first in the range.
        let row = sqlx::query(
            "SELECT (SELECT coalesce(SUM(players), 0) FROM activity_gaps WHERE game_id = ?1 AND day BETWEEN ?2 AND ?3
                         AND (gap = 0 OR gap > julianday(day) - julianday(?2))),
                    (SELECT coalesce(SUM(players), 0) FROM activity_gaps WHERE game_id = ?1 AND day BETWEEN ?2 AND ?3),
                    (SELECT coalesce(SUM(players), 0) FROM payer_gaps WHERE game_id = ?1 AND day BETWEEN ?2 AND ?3
                         AND (gap = 0 OR gap > julianday(day) - julianday(?2)))",
        )
        .bind(game.as_str())
        .bind(&from)
        .bind(&to)
        .fetch_one(&self.inner.reads)
        .await
        .map_err(store_err)?;
        let revenue = sqlx::query(
            "SELECT currency, SUM(amount_minor), SUM(purchases) FROM revenue_days
             WHERE game_id = ? AND day BETWEEN ? AND ? GROUP BY currency ORDER BY currency",
        )
        .bind(game.as_str())
        .bind(&from)
        .bind(&to)
        .fetch_all(&self.inner.reads)
        .await
        .map_err(store_err)?;
        let revenue = revenue
            .iter()
            .map(|r| Ok((r.try_get(0).map_err(store_err)?, r.try_get(1).map_err(store_err)?, u(r, 2)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Monetisation::new(u(&row, 0)?, u(&row, 1)?, u(&row, 2)?, revenue))
    }
}
