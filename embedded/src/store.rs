//! The embedded store (`<data_dir>/store.db`): player snapshots with per-partition
//! watermarks ([`SnapshotStore`]) and the projections' read models ([`ReadModelStore`],
//! [`AnalyticsQueries`]).
//!
//! Writes go through one write connection (SQLite has one writer anyway), each in a
//! `BEGIN IMMEDIATE` transaction; reads use a small pool beside it (WAL).
//!
//! # Read-model tables and their owners
//! | projection | tables |
//! |---|---|
//! | player_profiles | `player_profiles`, `profile_revenue` |
//! | daily_activity | `player_days` |
//! | sessions | `session_days` |
//! | revenue | `revenue_days`, `payer_days` |
//! | funnel | `funnel`, `funnel_players` |
//! | leaderboards, retention | see [`games`] |
//! | recommendations | see [`reco`] |
//!
//! `apply` only touches the tables of the projection it is called for; parts of a change
//! set that belong to other projections are ignored. The DDL is a template over the table
//! name, so a rebuild table (`<name>_rebuild`, checkpoints under `<projection>#rebuild`)
//! cannot drift from the live one.
//!
//! # Erasure
//! `player_profiles` deletes the player's profile and revenue rows. `daily_activity` and
//! `revenue` (and `funnel`) replace the player's id in `player_days` / `payer_days`
//! (`funnel_players`) by an irreversible
//! pseudonym `erased-<uuid v4>` (a fresh one per erased player and call), so counts of
//! distinct players per day stay right. Erasure is applied before the rows of the same
//! change set, because the projections only build rows from events after a player's last
//! erasure in the batch.

use crate::sql::{insert_rows, is_transient, to_i64, to_u64, V};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use gm_ports::{SnapshotStore, StoreError};
use gm_projections::model::{
    erased_pseudonym, order_funnel, sessions_over, ActiveUsersDay, ChangeSet, DateRange, FunnelCounts, FunnelStep,
    PlayerDay, PlayerProfile, ProjectionName, RevenueDay, SessionCounts, SessionsDay, Target,
};
use gm_projections::{AnalyticsQueries, CheckpointMove, ProjectionBatch, ReadModelStore};
use gm_schemas::{GameId, PlayerId};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use sqlx::{Connection, Row, SqliteConnection};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

mod games;
mod privacy;
mod reco;

/// Rows per `IN (...)` lookup of `load_many`.
const LOOKUP_CHUNK: usize = 500;

const BASE_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS snapshots (
        key TEXT PRIMARY KEY,
        partition INTEGER NOT NULL,
        state BLOB NOT NULL
    ) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS watermarks (
        partition INTEGER PRIMARY KEY,
        next_offset INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS projection_checkpoints (
        projection TEXT NOT NULL,
        partition INTEGER NOT NULL,
        next_offset INTEGER NOT NULL,
        PRIMARY KEY (projection, partition)
    ) WITHOUT ROWID",
];

/// A read-model table: its DDL and index DDL as templates over `{t}` (the table name).
struct Table {
    name: &'static str,
    ddl: &'static str,
    indexes: &'static [&'static str],
}

const PLAYER_PROFILES: Table = Table {
    name: "player_profiles",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        player_id TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        events INTEGER NOT NULL,
        sessions INTEGER NOT NULL,
        playtime_seconds INTEGER NOT NULL,
        purchases INTEGER NOT NULL,
        levels_completed INTEGER NOT NULL,
        xp INTEGER NOT NULL,
        current_level TEXT,
        country TEXT,
        language TEXT,
        consent_analytics INTEGER,
        consent_personalisation INTEGER,
        last_seq INTEGER NOT NULL,
        PRIMARY KEY (game_id, player_id)
    ) WITHOUT ROWID",
    indexes: &[],
};
const PROFILE_REVENUE: Table = Table {
    name: "profile_revenue",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        player_id TEXT NOT NULL,
        currency TEXT NOT NULL,
        amount_minor INTEGER NOT NULL,
        PRIMARY KEY (game_id, player_id, currency)
    ) WITHOUT ROWID",
    indexes: &[],
};
const PLAYER_DAYS: Table = Table {
    name: "player_days",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        day TEXT NOT NULL,
        player_id TEXT NOT NULL,
        PRIMARY KEY (game_id, day, player_id)
    ) WITHOUT ROWID",
    indexes: &["CREATE INDEX IF NOT EXISTS {t}_by_player ON {t} (game_id, player_id)"],
};
const SESSION_DAYS: Table = Table {
    name: "session_days",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        day TEXT NOT NULL,
        started INTEGER NOT NULL,
        closed INTEGER NOT NULL,
        total_length_seconds INTEGER NOT NULL,
        b0 INTEGER NOT NULL, b1 INTEGER NOT NULL, b2 INTEGER NOT NULL, b3 INTEGER NOT NULL,
        b4 INTEGER NOT NULL, b5 INTEGER NOT NULL, b6 INTEGER NOT NULL,
        PRIMARY KEY (game_id, day)
    ) WITHOUT ROWID",
    indexes: &[],
};
const REVENUE_DAYS: Table = Table {
    name: "revenue_days",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        day TEXT NOT NULL,
        currency TEXT NOT NULL,
        amount_minor INTEGER NOT NULL,
        purchases INTEGER NOT NULL,
        PRIMARY KEY (game_id, day, currency)
    ) WITHOUT ROWID",
    indexes: &[],
};
const PAYER_DAYS: Table = Table {
    name: "payer_days",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        day TEXT NOT NULL,
        player_id TEXT NOT NULL,
        PRIMARY KEY (game_id, day, player_id)
    ) WITHOUT ROWID",
    indexes: &["CREATE INDEX IF NOT EXISTS {t}_by_player ON {t} (game_id, player_id)"],
};
const FUNNEL: Table = Table {
    name: "funnel",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        level_id TEXT NOT NULL,
        starts INTEGER NOT NULL,
        completes INTEGER NOT NULL,
        fails INTEGER NOT NULL,
        PRIMARY KEY (game_id, level_id)
    ) WITHOUT ROWID",
    indexes: &[],
};
/// One row per (game, level, player): the player's first start, completion and failure of the
/// level (ms since the epoch), for distinct players and the median time to complete.
const FUNNEL_PLAYERS: Table = Table {
    name: "funnel_players",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        level_id TEXT NOT NULL,
        player_id TEXT NOT NULL,
        first_start_ms INTEGER,
        first_complete_ms INTEGER,
        first_fail_ms INTEGER,
        PRIMARY KEY (game_id, level_id, player_id)
    ) WITHOUT ROWID",
    indexes: &["CREATE INDEX IF NOT EXISTS {t}_by_player ON {t} (game_id, player_id)"],
};

/// The tables a projection owns.
fn tables(projection: ProjectionName) -> &'static [Table] {
    match projection {
        ProjectionName::PlayerProfiles => &[PLAYER_PROFILES, PROFILE_REVENUE],
        ProjectionName::DailyActivity => &[PLAYER_DAYS],
        ProjectionName::Sessions => &[SESSION_DAYS],
        ProjectionName::Revenue => &[REVENUE_DAYS, PAYER_DAYS],
        ProjectionName::Funnel => &[FUNNEL, FUNNEL_PLAYERS],
        ProjectionName::Leaderboards => &[games::LEADERBOARD_SCORES],
        ProjectionName::Retention => &[games::COHORT_PLAYERS, games::COHORT_DAYS],
        ProjectionName::Recommendations => {
            &[reco::RECO_AFFINITY, reco::RECO_ITEMS, reco::RECO_PAIRS, reco::RECO_OUTBOX]
        }
    }
}

fn table_name(base: &str, target: Target) -> String {
    match target {
        Target::Live => base.to_string(),
        Target::Rebuild => format!("{base}_rebuild"),
    }
}

fn checkpoint_name(projection: ProjectionName, target: Target) -> String {
    match target {
        Target::Live => projection.as_str().to_string(),
        Target::Rebuild => format!("{}#rebuild", projection.as_str()),
    }
}

fn fill(template: &str, table: &str) -> String {
    template.replace("{t}", table)
}

fn store_err(e: sqlx::Error) -> StoreError {
    if is_transient(&e) {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Other(e.to_string())
    }
}

fn day_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn parse_day(s: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| StoreError::Other(format!("bad day '{s}' in store: {e}")))
}

struct Writer {
    conn: SqliteConnection,
    /// A transaction was begun and not finished (the future that ran it was dropped).
    in_tx: bool,
}

/// The embedded snapshot and read-model store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: std::sync::Arc<StoreInner>,
}

struct StoreInner {
    path: PathBuf,
    writer: Mutex<Writer>,
    reads: SqlitePool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.path).finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, with every live table.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = SqliteConnection::connect_with(&crate::sql::options(path)).await.map_err(store_err)?;
        for ddl in BASE_SCHEMA.iter().chain(privacy::PRIVACY_SCHEMA) {
            sqlx::query(ddl).execute(&mut conn).await.map_err(store_err)?;
        }
        for projection in ProjectionName::ALL {
            for t in tables(projection) {
                for ddl in std::iter::once(t.ddl).chain(t.indexes.iter().copied()) {
                    sqlx::query(&fill(ddl, t.name)).execute(&mut conn).await.map_err(store_err)?;
                }
            }
        }
        let reads = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(crate::sql::options(path).pragma("query_only", "ON"))
            .await
            .map_err(store_err)?;
        Ok(SqliteStore {
            inner: std::sync::Arc::new(StoreInner {
                path: path.to_path_buf(),
                writer: Mutex::new(Writer { conn, in_tx: false }),
                reads,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Closes the connections (pending writes have finished when their calls returned).
    pub async fn close(&self) {
        self.inner.reads.close().await;
    }

    async fn begin(&self) -> Result<MutexGuard<'_, Writer>, StoreError> {
        let mut w = self.inner.writer.lock().await;
        if w.in_tx {
            let _ = sqlx::query("ROLLBACK").execute(&mut w.conn).await;
            w.in_tx = false;
        }
        sqlx::query("BEGIN IMMEDIATE").execute(&mut w.conn).await.map_err(store_err)?;
        w.in_tx = true;
        Ok(w)
    }

    async fn finish<T>(w: &mut Writer, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Ok(v) => match sqlx::query("COMMIT").execute(&mut w.conn).await {
                Ok(_) => {
                    w.in_tx = false;
                    Ok(v)
                }
                Err(e) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut w.conn).await;
                    w.in_tx = false;
                    Err(store_err(e))
                }
            },
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut w.conn).await;
                w.in_tx = false;
                Err(e)
            }
        }
    }
}

// ---------------------------------------------------------------- snapshots

#[async_trait]
impl SnapshotStore for SqliteStore {
    async fn watermark(&self, partition: u32) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT next_offset FROM watermarks WHERE partition = ?")
            .bind(i64::from(partition))
            .fetch_optional(&self.inner.reads)
            .await
            .map_err(store_err)?;
        Ok(v.map(to_u64))
    }

    async fn load_many(&self, keys: &[String]) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        if keys.is_empty() {
            return Ok(out);
        }
        let mut conn = self.inner.reads.acquire().await.map_err(store_err)?;
        for chunk in keys.chunks(LOOKUP_CHUNK) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!("SELECT key, state FROM snapshots WHERE key IN ({marks})");
            let mut q = sqlx::query(&sql);
            for k in chunk {
                q = q.bind(k);
            }
            for row in q.fetch_all(&mut *conn).await.map_err(store_err)? {
                out.push((row.try_get(0).map_err(store_err)?, row.try_get(1).map_err(store_err)?));
            }
        }
        Ok(out)
    }

    async fn save(
        &self,
        partition: u32,
        expected: Option<u64>,
        next_offset: u64,
        players: Vec<(String, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let mut w = self.begin().await?;
        let result = async {
            // Moving the watermark only from `expected` fences a writer whose view of the
            // store is stale (writes are serialised, so reading then writing is safe here).
            let found: Option<i64> = sqlx::query_scalar("SELECT next_offset FROM watermarks WHERE partition = ?")
                .bind(i64::from(partition))
                .fetch_optional(&mut w.conn)
                .await
                .map_err(store_err)?;
            let found = found.map(to_u64);
            if found != expected {
                return Err(StoreError::Conflict { expected, found });
            }
            let rows =
                players.into_iter().map(|(k, state)| vec![V::T(k), V::I(i64::from(partition)), V::B(state)]).collect();
            insert_rows(
                &mut w.conn,
                "INSERT INTO snapshots (key, partition, state) VALUES",
                "ON CONFLICT (key) DO UPDATE SET partition = excluded.partition, state = excluded.state",
                3,
                rows,
            )
            .await
            .map_err(store_err)?;
            sqlx::query(
                "INSERT INTO watermarks (partition, next_offset) VALUES (?, ?)
                 ON CONFLICT (partition) DO UPDATE SET next_offset = excluded.next_offset",
            )
            .bind(i64::from(partition))
            .bind(to_i64(next_offset))
            .execute(&mut w.conn)
            .await
            .map_err(store_err)?;
            Ok(())
        }
        .await;
        Self::finish(&mut w, result).await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM snapshots")
            .fetch_one(&self.inner.reads)
            .await
            .map_err(store_err)?;
        Ok(to_u64(n))
    }
}

// ---------------------------------------------------------------- read models: writes

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

fn day_rows(days: &[PlayerDay]) -> Vec<Vec<V>> {
    days.iter()
        .map(|d| vec![V::T(d.game_id.to_string()), V::T(day_text(d.day)), V::T(d.player_id.to_string())])
        .collect()
}

/// Replaces each erased player's id in `table` by a fresh pseudonym.
async fn pseudonymise(
    conn: &mut SqliteConnection,
    table: &str,
    erased: &[(GameId, PlayerId)],
) -> Result<(), sqlx::Error> {
    let sql = format!("UPDATE {table} SET player_id = ? WHERE game_id = ? AND player_id = ?");
    for (game, player) in erased {
        let pseudonym = erased_pseudonym();
        sqlx::query(&sql).bind(pseudonym).bind(game.as_str()).bind(player.as_str()).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes one projection's change set to its tables (`target`'s) with multi-row statements
/// (see [`insert_rows`]); the SQL texts repeat, so the connection's statement cache keeps
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
    let t = |base: &str| table_name(base, target);
    let profiles = t(PLAYER_PROFILES.name);
    let revenue = t(PROFILE_REVENUE.name);
    for (game, player) in &c.erased {
        for table in [&profiles, &revenue] {
            sqlx::query(&format!("DELETE FROM {table} WHERE game_id = ? AND player_id = ?"))
                .bind(game.as_str())
                .bind(player.as_str())
                .execute(&mut *conn)
                .await?;
        }
    }
    if !c.profiles.is_empty() {
        let rows = c
            .profiles
            .iter()
            .map(|p| {
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
            })
            .collect();
        let head = format!(
            "INSERT INTO {profiles} (game_id, player_id, first_seen_ms, last_seen_ms, events, sessions,
             playtime_seconds, purchases, levels_completed, xp, current_level, country, language,
             consent_analytics, consent_personalisation, last_seq) VALUES"
        );
        let tail = "ON CONFLICT (game_id, player_id) DO UPDATE SET
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
             last_seq = max(last_seq, excluded.last_seq)";
        insert_rows(conn, &head, tail, 16, rows).await?;
        let rev: Vec<Vec<V>> = c
            .profiles
            .iter()
            .flat_map(|p| {
                p.revenue.iter().map(move |(cur, amount)| {
                    vec![
                        V::T(p.game_id.to_string()),
                        V::T(p.player_id.to_string()),
                        V::T(cur.code().to_string()),
                        V::I(*amount),
                    ]
                })
            })
            .collect();
        if !rev.is_empty() {
            insert_rows(
                conn,
                &format!("INSERT INTO {revenue} (game_id, player_id, currency, amount_minor) VALUES"),
                "ON CONFLICT (game_id, player_id, currency) DO UPDATE SET
                 amount_minor = amount_minor + excluded.amount_minor",
                4,
                rev,
            )
            .await?;
        }
    }
    Ok(())
}

/// daily_activity: erased players pseudonymised, player-days inserted (insert-or-ignore).
async fn apply_daily_activity(conn: &mut SqliteConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let t = |base: &str| table_name(base, target);
    let days = t(PLAYER_DAYS.name);
    pseudonymise(conn, &days, &c.erased).await?;
    if !c.active_days.is_empty() {
        let head = format!("INSERT OR IGNORE INTO {days} (game_id, day, player_id) VALUES");
        insert_rows(conn, &head, "", 3, day_rows(&c.active_days)).await?;
    }
    Ok(())
}

/// sessions: one upsert per touched (game, day).
async fn apply_sessions(conn: &mut SqliteConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let t = |base: &str| table_name(base, target);
    if !c.session_days.is_empty() {
        let table = t(SESSION_DAYS.name);
        let rows = c
            .session_days
            .iter()
            .map(|s| {
                let mut row = vec![
                    V::T(s.game_id.to_string()),
                    V::T(day_text(s.day)),
                    V::I(to_i64(s.started)),
                    V::I(to_i64(s.closed)),
                    V::I(to_i64(s.total_length_seconds)),
                ];
                row.extend(s.buckets.iter().map(|b| V::I(to_i64(*b))));
                row
            })
            .collect();
        let head = format!(
            "INSERT INTO {table} (game_id, day, started, closed, total_length_seconds,
             b0, b1, b2, b3, b4, b5, b6) VALUES"
        );
        let tail = "ON CONFLICT (game_id, day) DO UPDATE SET
             started = started + excluded.started,
             closed = closed + excluded.closed,
             total_length_seconds = total_length_seconds + excluded.total_length_seconds,
             b0 = b0 + excluded.b0, b1 = b1 + excluded.b1, b2 = b2 + excluded.b2,
             b3 = b3 + excluded.b3, b4 = b4 + excluded.b4, b5 = b5 + excluded.b5,
             b6 = b6 + excluded.b6";
        insert_rows(conn, &head, tail, 12, rows).await?;
    }
    Ok(())
}

/// revenue: one upsert per touched (game, day, currency), payer-days inserted.
async fn apply_revenue(conn: &mut SqliteConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let t = |base: &str| table_name(base, target);
    let payers = t(PAYER_DAYS.name);
    pseudonymise(conn, &payers, &c.erased).await?;
    if !c.revenue.is_empty() {
        let table = t(REVENUE_DAYS.name);
        let rows = c
            .revenue
            .iter()
            .map(|r| {
                vec![
                    V::T(r.game_id.to_string()),
                    V::T(day_text(r.day)),
                    V::T(r.currency.code().to_string()),
                    V::I(r.amount_minor),
                    V::I(to_i64(r.purchases)),
                ]
            })
            .collect();
        insert_rows(
            conn,
            &format!("INSERT INTO {table} (game_id, day, currency, amount_minor, purchases) VALUES"),
            "ON CONFLICT (game_id, day, currency) DO UPDATE SET
             amount_minor = amount_minor + excluded.amount_minor,
             purchases = purchases + excluded.purchases",
            5,
            rows,
        )
        .await?;
    }
    if !c.payer_days.is_empty() {
        let head = format!("INSERT OR IGNORE INTO {payers} (game_id, day, player_id) VALUES");
        insert_rows(conn, &head, "", 3, day_rows(&c.payer_days)).await?;
    }
    Ok(())
}

/// funnel: erased players pseudonymised in `funnel_players`, one upsert per touched
/// (game, level) and per touched (game, level, player) (the earliest times kept).
async fn apply_funnel(conn: &mut SqliteConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let t = |base: &str| table_name(base, target);
    let players = t(FUNNEL_PLAYERS.name);
    pseudonymise(conn, &players, &c.erased).await?;
    if !c.funnel_players.is_empty() {
        let ms = |t: Option<DateTime<Utc>>| V::NI(t.map(|t| t.timestamp_millis()));
        let rows = c
            .funnel_players
            .iter()
            .map(|f| {
                vec![
                    V::T(f.game_id.to_string()),
                    V::T(f.level_id.clone()),
                    V::T(f.player_id.to_string()),
                    ms(f.first_start),
                    ms(f.first_complete),
                    ms(f.first_fail),
                ]
            })
            .collect();
        // min() of SQLite is NULL when an argument is: coalesce keeps the known time.
        insert_rows(
            conn,
            &format!(
                "INSERT INTO {players} (game_id, level_id, player_id, first_start_ms, first_complete_ms,
                 first_fail_ms) VALUES"
            ),
            "ON CONFLICT (game_id, level_id, player_id) DO UPDATE SET
             first_start_ms = coalesce(min(first_start_ms, excluded.first_start_ms), first_start_ms, excluded.first_start_ms),
             first_complete_ms = coalesce(min(first_complete_ms, excluded.first_complete_ms), first_complete_ms,
                 excluded.first_complete_ms),
             first_fail_ms = coalesce(min(first_fail_ms, excluded.first_fail_ms), first_fail_ms, excluded.first_fail_ms)",
            6,
            rows,
        )
        .await?;
    }
    if !c.funnel.is_empty() {
        let table = t(FUNNEL.name);
        let rows = c
            .funnel
            .iter()
            .map(|f| {
                vec![
                    V::T(f.game_id.to_string()),
                    V::T(f.level_id.clone()),
                    V::I(to_i64(f.starts)),
                    V::I(to_i64(f.completes)),
                    V::I(to_i64(f.fails)),
                ]
            })
            .collect();
        insert_rows(
            conn,
            &format!("INSERT INTO {table} (game_id, level_id, starts, completes, fails) VALUES"),
            "ON CONFLICT (game_id, level_id) DO UPDATE SET
             starts = starts + excluded.starts,
             completes = completes + excluded.completes,
             fails = fails + excluded.fails",
            5,
            rows,
        )
        .await?;
    }
    Ok(())
}

/// leaderboards (see `store/games.rs`).
async fn apply_leaderboards(conn: &mut SqliteConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let t = |base: &str| table_name(base, target);
    games::apply_leaderboards(conn, &t(games::LEADERBOARD_SCORES.name), c).await?;
    Ok(())
}

/// retention (see `store/games.rs`).
async fn apply_retention(conn: &mut SqliteConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let t = |base: &str| table_name(base, target);
    games::apply_retention(conn, &t(games::COHORT_PLAYERS.name), &t(games::COHORT_DAYS.name), c).await?;
    Ok(())
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

    async fn apply(
        &self,
        target: Target,
        projection: ProjectionName,
        partition: u32,
        expected: Option<u64>,
        next: u64,
        changes: &ChangeSet,
    ) -> Result<(), StoreError> {
        let moves = [CheckpointMove { partition, expected, next }];
        self.apply_parts(target, &[(projection, &moves, changes)]).await
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
                    return Err(StoreError::Other(format!(
                        "no rebuild of {projection} to finish (table {rebuild} missing)"
                    )));
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

/// The name an index template gives for `table` (the word after `EXISTS`).
fn index_name(template: &str, table: &str) -> String {
    fill(template, table).split_whitespace().skip_while(|w| *w != "EXISTS").nth(1).unwrap_or_default().to_string()
}

// ---------------------------------------------------------------- read models: queries

fn u(row: &sqlx::sqlite::SqliteRow, i: usize) -> Result<u64, StoreError> {
    row.try_get::<i64, _>(i).map(to_u64).map_err(store_err)
}

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
        let rows = sqlx::query(
            "WITH RECURSIVE days(d) AS (
                 SELECT ?2 UNION ALL SELECT date(d, '+1 day') FROM days WHERE d < ?3
             )
             SELECT d,
                 (SELECT COUNT(*) FROM player_days WHERE game_id = ?1 AND day = d),
                 (SELECT COUNT(DISTINCT player_id) FROM player_days
                     WHERE game_id = ?1 AND day BETWEEN date(d, '-6 days') AND d),
                 (SELECT COUNT(DISTINCT player_id) FROM player_days
                     WHERE game_id = ?1 AND day BETWEEN date(d, '-29 days') AND d)
             FROM days ORDER BY d",
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
                Ok(ActiveUsersDay::new(day, u(row, 1)?, u(row, 2)?, u(row, 3)?))
            })
            .collect()
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
                 (SELECT COUNT(*) FROM payer_days p WHERE p.game_id = r.game_id AND p.day = r.day),
                 (SELECT COUNT(*) FROM player_days a WHERE a.game_id = r.game_id AND a.day = r.day)
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
