//! [`PgStore`]: snapshots, read models and analytics queries on PostgreSQL, with the
//! semantics of the embedded SQLite store.
//!
//! # Read-model tables and their owners
//! | projection | tables |
//! |---|---|
//! | player_profiles | `player_profiles`, `profile_revenue` |
//! | daily_activity | `player_days`, `activity_gaps` (counters, see `gm_projections::counters`) |
//! | sessions | `session_days` |
//! | revenue | `revenue_days`, `payer_days`, `payer_gaps` |
//! | funnel | `funnel`, `funnel_players` |
//! | leaderboards | `leaderboard_scores` (see `store/games.rs`) |
//! | retention | `cohort_players`, `cohort_days`, `retention_days` |
//!
//! # Parts
//! This file holds the handle (connect, partitions of the `events` table); `store/snapshots.rs`,
//! `store/apply.rs` (read-model writes and rebuilds), `store/queries.rs` (analytics queries),
//! and per area `store/games.rs` (leaderboards, retention, monetisation), `store/reco.rs`
//! (recommendations). The tables themselves are the migrations'.

use crate::error::{store_err, to_u64};
use chrono::NaiveDate;
use gm_ports::StoreError;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use std::time::Duration;

mod apply;
mod games;
mod queries;
mod reco;
mod snapshots;

use apply::{insert_days, unique_erased};

/// The PostgreSQL snapshot and read-model store. Cheap to clone (wraps the pool).
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects a pool of at most `max_connections` to `url` (does not migrate; see
    /// [`crate::migrate`] / [`PgStore::migrate`]).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(true)
            .connect(url)
            .await
            .map_err(|e| match store_err(e) {
                StoreError::Other(m) => StoreError::Unavailable(m),
                e => e,
            })?;
        Ok(Self { pool })
    }

    /// Wraps an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the embedded migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        crate::migrate(&self.pool).await
    }

    /// Retention on the `events` fact table; see [`crate::drop_event_partitions_before`].
    pub async fn drop_event_partitions_before(&self, cutoff: NaiveDate) -> Result<Vec<String>, StoreError> {
        crate::events::drop_partitions_before(&self.pool, cutoff).await
    }

    /// Creates the daily `events` partitions of `[from, to]` (a no-op under TimescaleDB);
    /// returns how many were created.
    pub async fn ensure_event_partitions(&self, from: NaiveDate, to: NaiveDate) -> Result<u32, StoreError> {
        let n: i32 = sqlx::query_scalar("SELECT gm_ensure_event_partitions($1, $2)")
            .bind(from)
            .bind(to)
            .fetch_one(&self.pool)
            .await
            .map_err(store_err)?;
        Ok(u32::try_from(n).unwrap_or(0))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn u(row: &PgRow, i: usize) -> Result<u64, StoreError> {
    row.try_get::<i64, _>(i).map(to_u64).map_err(store_err)
}
