//! Writes of the read models ([`ReadModelStore`]): each projection's change set applied to
//! its tables with a compare-and-set checkpoint in one transaction, and rebuilds into
//! `_rebuild` tables swapped in at the end.
//!
//! `apply` only touches the tables of the projection it is called for; parts of a change
//! set that belong to other projections are ignored.
//!
//! # Erasure
//! `player_profiles` deletes the player's profile and revenue rows. `daily_activity` and
//! `revenue` (and `funnel`) replace the player's id in `player_days` / `payer_days`
//! (`funnel_players`) by an irreversible
//! pseudonym `erased-<uuid v4>` (a fresh one per erased player and call), so counts of
//! distinct players per day stay right. Erasure is applied before the rows of the same
//! change set, because the projections only build rows from events after a player's last
//! erasure in the batch.

use super::schema::{
    checkpoint_name, fill, index_name, table_name, tables, ACTIVITY_GAPS, FUNNEL, FUNNEL_PLAYERS, PAYER_DAYS,
    PAYER_GAPS, PLAYER_DAYS, PLAYER_PROFILES, PROFILE_REVENUE, REVENUE_DAYS, SESSION_DAYS,
};
use super::{day_text, games, reco, store_err, SqliteStore};
use crate::sql::{insert_new, to_i64, to_u64, upsert, V};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use gm_ports::StoreError;
use gm_projections::counters;
use gm_projections::model::{erased_pseudonym, ChangeSet, PlayerDay, ProjectionName, Target};
use gm_projections::{CheckpointMove, ProjectionBatch, ReadModelStore};
use gm_schemas::{GameId, PlayerId};
use sqlx::SqliteConnection;
use std::collections::BTreeSet;

async fn read_checkpoint(conn: &mut SqliteConnection, name: &str, partition: u32) -> Result<Option<u64>, StoreError> {
    let v: Option<i64> =
        sqlx::query_scalar("SELECT next_offset FROM projection_checkpoints WHERE projection = ? AND partition = ?")
            .bind(name)
            .bind(i64::from(partition))
            .fetch_optional(&mut *conn)
            .await
            .map_err(store_err)?;
    Ok(v.map(to_u64))
}

/// The columns of a player-days table (`player_days`, `payer_days`), as [`day_rows`] fills them.
pub(super) const DAY_COLUMNS: &str = "game_id, day, player_id";

pub(super) fn day_rows(days: &[PlayerDay]) -> Vec<Vec<V>> {
    days.iter()
        .map(|d| vec![V::T(d.game_id.to_string()), V::T(day_text(d.day)), V::T(d.player_id.to_string())])
        .collect()
}

/// The touched players of a batch as the JSON array `[[game, player, lo, hi], …]` that one
/// statement reads with `json_each` (one statement per batch, not one per player), with the
/// players in the same order.
pub(super) fn touched_json(days: &[PlayerDay]) -> (Vec<(GameId, PlayerId, BTreeSet<NaiveDate>)>, String) {
    let touched: Vec<_> = counters::touched(days).into_iter().map(|((g, p), d)| (g, p, d)).collect();
    let rows: Vec<[String; 4]> = touched
        .iter()
        .map(|(g, p, d)| {
            let (lo, hi) = counters::span(d);
            [g.to_string(), p.to_string(), day_text(lo), day_text(hi)]
        })
        .collect();
    let json = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_string());
    (touched, json)
}

/// The columns of [`touched_json`]'s rows as a CTE `t(i, g, p, lo, hi)`.
pub(super) const TOUCHED_CTE: &str = "t AS (SELECT key AS i, json_extract(value, '$[0]') AS g,
    json_extract(value, '$[1]') AS p, json_extract(value, '$[2]') AS lo, json_extract(value, '$[3]') AS hi
    FROM json_each(?1))";

/// Inserts player-days (insert-or-ignore) and keeps their gap counts in `gaps` right
/// (`gm_projections::counters`): for each touched player, one read of their stored days in
/// the span of their new days and the nearest one on either side (in-process, on the
/// writer's connection, before the insert).
pub(super) async fn insert_days_counted(
    conn: &mut SqliteConnection,
    table: &str,
    gaps: &str,
    days: &[PlayerDay],
) -> Result<(), sqlx::Error> {
    if days.is_empty() {
        return Ok(());
    }
    let near_sql = format!(
        "WITH {TOUCHED_CTE}
         SELECT t.i, d.day FROM t JOIN {table} d ON d.game_id = t.g AND d.player_id = t.p AND d.day BETWEEN t.lo AND t.hi
         UNION ALL SELECT t.i, (SELECT max(day) FROM {table} d WHERE d.game_id = t.g AND d.player_id = t.p AND d.day < t.lo)
             FROM t
         UNION ALL SELECT t.i, (SELECT min(day) FROM {table} d WHERE d.game_id = t.g AND d.player_id = t.p AND d.day > t.hi)
             FROM t"
    );
    let (touched, json) = touched_json(days);
    let near: Vec<(i64, Option<String>)> = sqlx::query_as(&near_sql).bind(json).fetch_all(&mut *conn).await?;
    let mut stored: Vec<BTreeSet<NaiveDate>> = vec![BTreeSet::new(); touched.len()];
    for (i, day) in near {
        if let (Some(s), Some(day)) = (usize::try_from(i).ok().and_then(|i| stored.get_mut(i)), day) {
            s.insert(stored_day(&day)?);
        }
    }
    let mut deltas = counters::GapDeltas::default();
    for ((game, _, new_days), s) in touched.iter().zip(&stored) {
        deltas.add(game, counters::gap_deltas(s, new_days));
    }
    insert_new(conn, table, DAY_COLUMNS, day_rows(days)).await?;
    let rows = deltas
        .rows()
        .map(|(g, d, gap, n)| vec![V::T(g.to_string()), V::T(day_text(d)), V::I(i64::from(gap)), V::I(n)])
        .collect();
    upsert(
        conn,
        gaps,
        "game_id, day, gap, players",
        "ON CONFLICT (game_id, day, gap) DO UPDATE SET players = players + excluded.players",
        rows,
    )
    .await
}

/// A stored day's text as a date (a bad one is the store's corruption: a decode error).
pub(super) fn stored_day(text: &str) -> Result<NaiveDate, sqlx::Error> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Replaces each erased player's id in `tables` by a fresh pseudonym (the same in each of
/// them, so rows that belong together stay together).
pub(super) async fn pseudonymise(
    conn: &mut SqliteConnection,
    tables: &[&str],
    erased: &[(GameId, PlayerId)],
) -> Result<(), sqlx::Error> {
    for (game, player) in erased {
        let pseudonym = erased_pseudonym();
        for table in tables {
            sqlx::query(&format!("UPDATE {table} SET player_id = ? WHERE game_id = ? AND player_id = ?"))
                .bind(&pseudonym)
                .bind(game.as_str())
                .bind(player.as_str())
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Deletes each erased player's rows from `tables`.
pub(super) async fn delete_players(
    conn: &mut SqliteConnection,
    tables: &[&str],
    erased: &[(GameId, PlayerId)],
) -> Result<(), sqlx::Error> {
    for (game, player) in erased {
        for table in tables {
            sqlx::query(&format!("DELETE FROM {table} WHERE game_id = ? AND player_id = ?"))
                .bind(game.as_str())
                .bind(player.as_str())
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Writes one projection's change set to its tables (`target`'s) with multi-row statements
/// (see [`crate::sql::insert_rows`]); the SQL texts repeat, so the connection's statement cache keeps
/// them prepared across the statements of a transaction and across transactions.
async fn apply_changes(
    conn: &mut SqliteConnection,
    target: Target,
    projection: ProjectionName,
    c: &ChangeSet,
) -> Result<(), sqlx::Error> {
    match projection {
        ProjectionName::PlayerProfiles => apply_profiles(conn, target, c).await,
        ProjectionName::DailyActivity => apply_daily_activity(conn, target, c).await,
        ProjectionName::Sessions => apply_sessions(conn, target, c).await,
        ProjectionName::Revenue => apply_revenue(conn, target, c).await,
        ProjectionName::Funnel => apply_funnel(conn, target, c).await,
        ProjectionName::Leaderboards => apply_leaderboards(conn, target, c).await,
        ProjectionName::Retention => apply_retention(conn, target, c).await,
        ProjectionName::Recommendations => apply_recommendations(conn, target, c).await,
    }
}

/// player_profiles: erased players' rows deleted, one upsert per touched profile and currency.
async fn apply_profiles(conn: &mut SqliteConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let profiles = table_name(PLAYER_PROFILES.name, target);
    let revenue = table_name(PROFILE_REVENUE.name, target);
    delete_players(conn, &[&profiles, &revenue], &c.erased).await?;
    let rows = c.profiles.iter().map(|p| {
        vec![
            V::T(p.game_id.to_string()),
            V::T(p.player_id.to_string()),
            V::I(p.first_seen.timestamp_millis()),
            V::I(p.last_seen.timestamp_millis()),
            V::I(to_i64(p.events)),
            V::I(to_i64(p.sessions)),
            V::I(to_i64(p.playtime_seconds)),
            V::I(to_i64(p.purchases)),
            V::I(to_i64(p.levels_completed)),
            V::I(p.xp),
            V::NT(p.current_level.clone()),
            V::NT(p.country.clone()),
            V::NT(p.language.clone()),
            V::NI(p.consent.map(|(a, _)| i64::from(a))),
            V::NI(p.consent.map(|(_, b)| i64::from(b))),
            V::I(to_i64(p.last_seq)),
        ]
    });
    upsert(
        conn,
        &profiles,
        "game_id, player_id, first_seen_ms, last_seen_ms, events, sessions, playtime_seconds, purchases,
         levels_completed, xp, current_level, country, language, consent_analytics, consent_personalisation, last_seq",
        "ON CONFLICT (game_id, player_id) DO UPDATE SET
         first_seen_ms = min(first_seen_ms, excluded.first_seen_ms),
         last_seen_ms = max(last_seen_ms, excluded.last_seen_ms),
         events = events + excluded.events,
         sessions = sessions + excluded.sessions,
         playtime_seconds = playtime_seconds + excluded.playtime_seconds,
         purchases = purchases + excluded.purchases,
         levels_completed = levels_completed + excluded.levels_completed,
         xp = xp + excluded.xp,
         current_level = coalesce(excluded.current_level, current_level),
         country = coalesce(excluded.country, country),
         language = coalesce(excluded.language, language),
         consent_analytics = coalesce(excluded.consent_analytics, consent_analytics),
         consent_personalisation = coalesce(excluded.consent_personalisation, consent_personalisation),
         last_seq = max(last_seq, excluded.last_seq)",
        rows.collect(),
    )
    .await?;
    let rev = c.profiles.iter().flat_map(|p| {
        p.revenue.iter().map(move |(cur, amount)| {
            vec![
                V::T(p.game_id.to_string()),
                V::T(p.player_id.to_string()),
                V::T(cur.code().to_string()),
                V::I(*amount),
            ]
        })
    });
    upsert(
        conn,
        &revenue,
        "game_id, player_id, currency, amount_minor",
        "ON CONFLICT (game_id, player_id, currency) DO UPDATE SET amount_minor = amount_minor + excluded.amount_minor",
        rev.collect(),
    )
    .await
}

/// daily_activity: erased players pseudonymised, player-days inserted (insert-or-ignore).
async fn apply_daily_activity(conn: &mut SqliteConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let days = table_name(PLAYER_DAYS.name, target);
    pseudonymise(conn, &[&days], &c.erased).await?;
    insert_days_counted(conn, &days, &table_name(ACTIVITY_GAPS.name, target), &c.active_days).await
}

/// sessions: one upsert per touched (game, day).
async fn apply_sessions(conn: &mut SqliteConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let rows = c.session_days.iter().map(|s| {
        let mut row = vec![
            V::T(s.game_id.to_string()),
            V::T(day_text(s.day)),
            V::I(to_i64(s.started)),
            V::I(to_i64(s.closed)),
            V::I(to_i64(s.total_length_seconds)),
        ];
        row.extend(s.buckets.iter().map(|b| V::I(to_i64(*b))));
        row
    });
    upsert(
        conn,
        &table_name(SESSION_DAYS.name, target),
        "game_id, day, started, closed, total_length_seconds, b0, b1, b2, b3, b4, b5, b6",
        "ON CONFLICT (game_id, day) DO UPDATE SET
         started = started + excluded.started,
         closed = closed + excluded.closed,
         total_length_seconds = total_length_seconds + excluded.total_length_seconds,
         b0 = b0 + excluded.b0, b1 = b1 + excluded.b1, b2 = b2 + excluded.b2,
         b3 = b3 + excluded.b3, b4 = b4 + excluded.b4, b5 = b5 + excluded.b5,
         b6 = b6 + excluded.b6",
        rows.collect(),
    )
    .await
}

/// revenue: one upsert per touched (game, day, currency), payer-days inserted.
async fn apply_revenue(conn: &mut SqliteConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let payers = table_name(PAYER_DAYS.name, target);
    pseudonymise(conn, &[&payers], &c.erased).await?;
    let rows = c.revenue.iter().map(|r| {
        vec![
            V::T(r.game_id.to_string()),
            V::T(day_text(r.day)),
            V::T(r.currency.code().to_string()),
            V::I(r.amount_minor),
            V::I(to_i64(r.purchases)),
        ]
    });
    upsert(
        conn,
        &table_name(REVENUE_DAYS.name, target),
        "game_id, day, currency, amount_minor, purchases",
        "ON CONFLICT (game_id, day, currency) DO UPDATE SET
         amount_minor = amount_minor + excluded.amount_minor,
         purchases = purchases + excluded.purchases",
        rows.collect(),
    )
    .await?;
    insert_days_counted(conn, &payers, &table_name(PAYER_GAPS.name, target), &c.payer_days).await
}

/// funnel: erased players pseudonymised in `funnel_players`, one upsert per touched
/// (game, level) and per touched (game, level, player) (the earliest times kept).
async fn apply_funnel(conn: &mut SqliteConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let players = table_name(FUNNEL_PLAYERS.name, target);
    pseudonymise(conn, &[&players], &c.erased).await?;
    let ms = |t: Option<DateTime<Utc>>| V::NI(t.map(|t| t.timestamp_millis()));
    let rows = c.funnel_players.iter().map(|f| {
        vec![
            V::T(f.game_id.to_string()),
            V::T(f.level_id.clone()),
            V::T(f.player_id.to_string()),
            ms(f.first_start),
            ms(f.first_complete),
            ms(f.first_fail),
        ]
    });
    // min() of SQLite is NULL when an argument is: coalesce keeps the known time.
    upsert(
        conn,
        &players,
        "game_id, level_id, player_id, first_start_ms, first_complete_ms, first_fail_ms",
        "ON CONFLICT (game_id, level_id, player_id) DO UPDATE SET
         first_start_ms = coalesce(min(first_start_ms, excluded.first_start_ms), first_start_ms, excluded.first_start_ms),
         first_complete_ms = coalesce(min(first_complete_ms, excluded.first_complete_ms), first_complete_ms,
             excluded.first_complete_ms),
         first_fail_ms = coalesce(min(first_fail_ms, excluded.first_fail_ms), first_fail_ms, excluded.first_fail_ms)",
        rows.collect(),
    )
    .await?;
    let rows = c.funnel.iter().map(|f| {
        vec![
            V::T(f.game_id.to_string()),
            V::T(f.level_id.clone()),
            V::I(to_i64(f.starts)),
            V::I(to_i64(f.completes)),
            V::I(to_i64(f.fails)),
        ]
    });
    upsert(
        conn,
        &table_name(FUNNEL.name, target),
        "game_id, level_id, starts, completes, fails",
        "ON CONFLICT (game_id, level_id) DO UPDATE SET
         starts = starts + excluded.starts,
         completes = completes + excluded.completes,
         fails = fails + excluded.fails",
        rows.collect(),
    )
    .await
}

/// leaderboards (see `store/games.rs`).
async fn apply_leaderboards(conn: &mut SqliteConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    games::apply_leaderboards(conn, &table_name(games::LEADERBOARD_SCORES.name, target), c).await
}

/// retention (see `store/games.rs`).
async fn apply_retention(conn: &mut SqliteConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let t = |base: &str| table_name(base, target);
    games::apply_retention(
        conn,
        &t(games::COHORT_PLAYERS.name),
        &t(games::COHORT_DAYS.name),
        &t(games::RETENTION_DAYS.name),
        c,
    )
    .await
}

/// recommendations (see `store/reco.rs`).
async fn apply_recommendations(conn: &mut SqliteConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let t = |base: &str| table_name(base, target);
    let names = [reco::RECO_AFFINITY.name, reco::RECO_ITEMS.name, reco::RECO_PAIRS.name, reco::RECO_OUTBOX.name].map(t);
    reco::apply(conn, [&names[0], &names[1], &names[2], &names[3]], c).await?;
    Ok(())
}

/// One projection's part of a transaction: its checkpoint moves and its changes.
type Part<'a> = (ProjectionName, &'a [CheckpointMove], &'a ChangeSet);

impl SqliteStore {
    /// Applies every part and moves every checkpoint in one transaction (the writer's
    /// `BEGIN IMMEDIATE`), compare-and-set on each checkpoint, checked before any write.
    async fn apply_parts(&self, target: Target, parts: &[Part<'_>]) -> Result<(), StoreError> {
        let mut w = self.begin().await?;
        let result = async {
            for (projection, moves, _) in parts {
                let name = checkpoint_name(*projection, target);
                for m in moves.iter() {
                    let found = read_checkpoint(&mut w.conn, &name, m.partition).await?;
                    if found != m.expected {
                        return Err(StoreError::Conflict { expected: m.expected, found });
                    }
                }
            }
            for (projection, moves, changes) in parts {
                apply_changes(&mut w.conn, target, *projection, changes).await.map_err(store_err)?;
                if target == Target::Live {
                    for erasure in &changes.confirmed_erasures {
                        sqlx::query(
                            "INSERT OR IGNORE INTO erasure_confirmations (erasure_id, projection, confirmed_at) VALUES (?, ?, ?)",
                        )
                        .bind(erasure.to_string())
                        .bind(projection.as_str())
                        .bind(chrono::Utc::now().timestamp_millis())
                        .execute(&mut w.conn)
                        .await
                        .map_err(store_err)?;
                    }
                }
                let name = checkpoint_name(*projection, target);
                for m in moves.iter() {
                    sqlx::query(
                        "INSERT INTO projection_checkpoints (projection, partition, next_offset) VALUES (?, ?, ?)
                         ON CONFLICT (projection, partition) DO UPDATE SET next_offset = excluded.next_offset",
                    )
                    .bind(&name)
                    .bind(i64::from(m.partition))
                    .bind(to_i64(m.next))
                    .execute(&mut w.conn)
                    .await
                    .map_err(store_err)?;
                }
            }
            Ok(())
        }
        .await;
        Self::finish(&mut w, result).await
    }
}

#[async_trait]
impl ReadModelStore for SqliteStore {
    async fn checkpoint(
        &self,
        target: Target,
        projection: ProjectionName,
        partition: u32,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.inner.reads.acquire().await.map_err(store_err)?;
        read_checkpoint(&mut conn, &checkpoint_name(projection, target), partition).await
    }

    async fn apply_batch(&self, target: Target, batch: &[ProjectionBatch]) -> Result<(), StoreError> {
        let parts: Vec<Part<'_>> = batch.iter().map(|b| (b.name, b.checkpoints.as_slice(), &b.changes)).collect();
        self.apply_parts(target, &parts).await
    }

    async fn begin_rebuild(&self, projection: ProjectionName) -> Result<(), StoreError> {
        let mut w = self.begin().await?;
        let result = async {
            for t in tables(projection) {
                let rebuild = table_name(t.name, Target::Rebuild);
                sqlx::query(&format!("DROP TABLE IF EXISTS {rebuild}"))
                    .execute(&mut w.conn)
                    .await
                    .map_err(store_err)?;
                for ddl in std::iter::once(t.ddl).chain(t.indexes.iter().copied()) {
                    sqlx::query(&fill(ddl, &rebuild)).execute(&mut w.conn).await.map_err(store_err)?;
                }
            }
            sqlx::query("DELETE FROM projection_checkpoints WHERE projection = ?")
                .bind(checkpoint_name(projection, Target::Rebuild))
                .execute(&mut w.conn)
                .await
                .map_err(store_err)?;
            Ok(())
        }
        .await;
        Self::finish(&mut w, result).await
    }

    async fn finish_rebuild(&self, projection: ProjectionName) -> Result<(), StoreError> {
        let mut w = self.begin().await?;
        let result = async {
            for t in tables(projection) {
                let live = table_name(t.name, Target::Live);
                let rebuild = table_name(t.name, Target::Rebuild);
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?")
                        .bind(&rebuild)
                        .fetch_optional(&mut w.conn)
                        .await
                        .map_err(store_err)?;
                if exists.is_none() {
                    return Err(StoreError::Other(
                        format!("no rebuild of {projection} to finish (table {rebuild} missing)").into(),
                    ));
                }
                sqlx::query(&format!("DROP TABLE IF EXISTS {live}")).execute(&mut w.conn).await.map_err(store_err)?;
                sqlx::query(&format!("ALTER TABLE {rebuild} RENAME TO {live}"))
                    .execute(&mut w.conn)
                    .await
                    .map_err(store_err)?;
                // Indexes keep their names across a rename: give them the live names.
                for ddl in t.indexes {
                    let old_name = index_name(ddl, &rebuild);
                    sqlx::query(&format!("DROP INDEX IF EXISTS {old_name}"))
                        .execute(&mut w.conn)
                        .await
                        .map_err(store_err)?;
                    sqlx::query(&fill(ddl, &live)).execute(&mut w.conn).await.map_err(store_err)?;
                }
            }
            sqlx::query("DELETE FROM projection_checkpoints WHERE projection = ?")
                .bind(checkpoint_name(projection, Target::Live))
                .execute(&mut w.conn)
                .await
                .map_err(store_err)?;
            sqlx::query("UPDATE projection_checkpoints SET projection = ? WHERE projection = ?")
                .bind(checkpoint_name(projection, Target::Live))
                .bind(checkpoint_name(projection, Target::Rebuild))
                .execute(&mut w.conn)
                .await
                .map_err(store_err)?;
            Ok(())
        }
        .await;
        Self::finish(&mut w, result).await
    }
}
