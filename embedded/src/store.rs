//! The embedded store (`<data_dir>/store.db`): player snapshots with per-partition
//! watermarks ([`SnapshotStore`]) and the projections' read models ([`ReadModelStore`],
//! [`AnalyticsQueries`]).
//!
//! Writes go through one write connection (SQLite has one writer anyway), each in a
//! `BEGIN IMMEDIATE` transaction; reads use a small pool beside it (WAL).
//!
//! # Parts
//! This file holds the handle ([`SqliteStore`]: open, the writer's transactions) and the
//! helpers its parts share: `store/schema.rs` (tables and their owners), `store/snapshots.rs`,
//! `store/apply.rs` (read-model writes, rebuilds, erasure), `store/queries.rs` (analytics
//! queries), and per area `store/games.rs` (leaderboards, retention, monetisation),
//! `store/reco.rs` (recommendations), `store/privacy.rs` (player registry, erasures, audit).
//!
//! [`SnapshotStore`]: gm_ports::SnapshotStore
//! [`ReadModelStore`]: gm_projections::ReadModelStore
//! [`AnalyticsQueries`]: gm_projections::AnalyticsQueries

use crate::sql::{is_transient, to_u64};
use chrono::NaiveDate;
use gm_ports::StoreError;
use schema::BASE_SCHEMA;
use sqlx::sqlite::SqlitePool;
use sqlx::{Connection, Row, SqliteConnection};
use std::path::{Path, PathBuf};
use tokio::sync::{Mutex, MutexGuard};

mod apply;
mod games;
mod privacy;
mod queries;
mod reco;
mod schema;
mod snapshots;

use schema::Table;

/// Rows per `IN (...)` lookup (snapshots' `load_many`, pseudonyms of the privacy store).
const LOOKUP_CHUNK: usize = 500;

fn store_err(e: sqlx::Error) -> StoreError {
    if is_transient(&e) {
        StoreError::unavailable(e)
    } else {
        StoreError::other(e)
    }
}

fn day_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn parse_day(s: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| StoreError::Other(gm_ports::Cause::context(format!("bad day '{s}' in store"), e)))
}

fn u(row: &sqlx::sqlite::SqliteRow, i: usize) -> Result<u64, StoreError> {
    row.try_get::<i64, _>(i).map(to_u64).map_err(store_err)
}

struct Writer {
    conn: SqliteConnection,
    /// A transaction was begun and not finished (the future that ran it was dropped).
    in_tx: bool,
    /// Commits so far (shared with [`StoreInner::changes`]): what [`crate::Memoised`] checks.
    changes: std::sync::Arc<std::sync::atomic::AtomicU64>,
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
    changes: std::sync::Arc<std::sync::atomic::AtomicU64>,
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
        schema::create_tables(&mut conn).await.map_err(store_err)?;
        let reads = crate::sql::read_pool(path, 4).await.map_err(store_err)?;
        let changes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        Ok(SqliteStore {
            inner: std::sync::Arc::new(StoreInner {
                path: path.to_path_buf(),
                writer: Mutex::new(Writer { conn, in_tx: false, changes: changes.clone() }),
                reads,
                changes,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How many write transactions have committed since the store was opened. Counted after
    /// each COMMIT, so an answer read after loading this count is at least as new as it.
    pub fn changes(&self) -> u64 {
        self.inner.changes.load(std::sync::atomic::Ordering::Acquire)
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
                    w.changes.fetch_add(1, std::sync::atomic::Ordering::Release);
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
