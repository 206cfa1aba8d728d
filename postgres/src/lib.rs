//! # gm-postgres
//!
//! The production store on PostgreSQL: player snapshots with per-partition watermarks
//! ([`gm_ports::SnapshotStore`]), the projections' read models
//! ([`gm_projections::ReadModelStore`], [`gm_projections::AnalyticsQueries`]) and the
//! `events` fact table for analysts and retention. [`PgStore`] reproduces the semantics of
//! the embedded SQLite store (`gm-embedded`, `store.rs`) exactly; the same behaviour tests run
//! against both (here in `tests/`, against a real server, each in its own database).
//!
//! ## Schema and migrations
//! The schema is a set of SQL migrations embedded in the binary (`migrations/`, applied by
//! [`migrate`], i.e. `gamemetrics migrate`). sqlx records applied migrations in
//! `_sqlx_migrations` and takes an advisory lock, so running it twice, or from two processes
//! at once, is harmless.
//!
//! ## Writes
//! Every write is batched: each part of a change set is one `INSERT … SELECT … FROM
//! UNNEST($1::text[], $2::date[], …) ON CONFLICT …` per table (rows with the same key are
//! merged in Rust first, since PostgreSQL refuses to update one row twice in a statement).
//! `apply` takes the checkpoint row first (`SELECT … FOR UPDATE`, or claims it with an
//! `INSERT … ON CONFLICT DO NOTHING` when none is expected), compares it with the expected
//! offset, and fails with [`gm_ports::StoreError::Conflict`] (rolling back) when another
//! worker moved it; the rows and the new checkpoint commit together.
//!
//! A rebuild writes into `<table>_rebuild` tables created with
//! `CREATE TABLE <table>_rebuild (LIKE <table> INCLUDING ALL)` (so they cannot drift from the
//! live DDL); `finish_rebuild` drops the live tables, renames the rebuilt ones (and their
//! indexes, back to the live names) and moves the checkpoints, all in one transaction
//! (PostgreSQL DDL is transactional).
//!
//! ## Erasure
//! As in the embedded store: `player_profiles` deletes the profile and revenue rows;
//! `daily_activity`, `revenue` and `funnel` replace the player's id in `player_days` /
//! `payer_days` / `funnel_players` by one fresh pseudonym `erased-<uuid v4>` per player and call, so distinct-player counts
//! stay right. In the `events` fact table, [`PgStore::insert_events`] does the same when a
//! batch contains a `PlayerErased` event (earlier rows of the player get a pseudonym).
//!
//! ## The `events` fact table: two layouts
//! Chosen once, by the migration `0002_events.sql`, in a `DO` block that branches on whether
//! TimescaleDB can be used (`pg_available_extensions` has `timescaledb` and it is in
//! `shared_preload_libraries`):
//!
//! * **TimescaleDB** — `CREATE EXTENSION timescaledb`, `events` becomes a hypertable on `ts`
//!   (daily chunks), compressed after 7 days segmented by `game_id`, a 90-day retention
//!   policy, and a continuous aggregate `daily_active_players` (`time_bucket('1 day', ts)`,
//!   `game_id`, `count(DISTINCT player_id)`) with an hourly refresh policy. **This path is
//!   written but untested here**: the extension is not installable on the machines this
//!   crate is tested on.
//! * **Plain PostgreSQL** (tested) — `events` is `PARTITION BY RANGE (ts)` with daily
//!   partitions `events_YYYYMMDD` created by the SQL function
//!   `gm_ensure_event_partitions(from date, to date)` (which moves rows of a new day out of
//!   the default partition) and a `DEFAULT` partition so that an insert never fails.
//!   [`PgStore::insert_events`] creates the partitions of a batch's days (within
//!   [`PARTITION_WINDOW_PAST_DAYS`] before and [`PARTITION_WINDOW_FUTURE_DAYS`] after today;
//!   other days land in the default partition) in the same transaction.
//!
//! Retention ([`drop_event_partitions_before`], i.e. `gamemetrics retention run`) calls the
//! SQL function `gm_drop_event_partitions_before(cutoff date)`: whole daily partitions before
//! the cutoff are dropped (plus default-partition rows older than it); under TimescaleDB it is
//! `drop_chunks`. Both functions exist in both layouts, so callers need not know which one
//! is in use.
//!
//! ## Errors
//! Connection-level failures (I/O, pool timeouts, SQLSTATE classes 08 and 53, shutdowns
//! 57P01–57P03, serialization failures and deadlocks, lock timeouts) map to
//! [`gm_ports::StoreError::Unavailable`]: the caller retries, so a PostgreSQL restart is
//! survivable (the pool replaces broken connections). Everything else is `Other`.

mod error;
mod events;
mod keys;
mod positions;
mod privacy;
mod store;

pub use error::{is_transient, store_err};
pub use events::{PARTITION_WINDOW_FUTURE_DAYS, PARTITION_WINDOW_PAST_DAYS};
pub use positions::{LogPositions, Moved};
pub use store::PgStore;

use chrono::NaiveDate;
use gm_ports::StoreError;
use sqlx::PgPool;

/// The embedded migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Applies every pending migration (idempotent; safe to run concurrently).
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await.map_err(error::migrate_err)
}

/// Retention: drops the `events` partitions (or TimescaleDB chunks) holding only days
/// before `cutoff` (a UTC day; events of `cutoff` itself are kept) and returns their names.
pub async fn drop_event_partitions_before(pool: &PgPool, cutoff: NaiveDate) -> Result<Vec<String>, StoreError> {
    events::drop_partitions_before(pool, cutoff).await
}
