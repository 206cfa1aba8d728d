//! # gm-embedded
//!
//! The embedded adapters behind `gm-ports` and `gm-projections`: no service to install, one
//! data directory of SQLite files.
//!
//! - [`SqliteLog`] (`<data_dir>/log.db`): the log with Kafka's semantics — topics,
//!   partitions by murmur2 of the key, dense offsets per partition, consumer groups with
//!   fenced commits, and consume-transform-produce (`commit_with_outputs`) in one SQLite
//!   transaction. Writes are group-committed by one writer; an append returns only once it
//!   is on disk (`synchronous=FULL`).
//! - [`SqliteStore`] (`<data_dir>/store.db`): player snapshots with per-partition
//!   watermarks, and the read models of the projections (apply with a compare-and-set
//!   checkpoint in one transaction, rebuild into `_rebuild` tables and swap, analytics
//!   queries).
//! - [`Memoised`]: the store's query ports with their answers kept in memory until the
//!   store's next committed write (the embedded default's query cache; no staleness).

mod sql;

pub mod log;
pub mod memo;
pub mod store;

pub use log::{SqliteConsumer, SqliteLog, MAX_BATCH_RECORDS};
pub use memo::{MemoStats, Memoised};
pub use store::SqliteStore;

use std::path::Path;

/// Errors of [`open_data_dir`].
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("data directory {0}: {1}")]
    Dir(String, std::io::Error),
    #[error(transparent)]
    Log(#[from] gm_ports::LogError),
    #[error(transparent)]
    Store(#[from] gm_ports::StoreError),
}

/// Opens (creating if needed) `<dir>/log.db` with `topics` and `<dir>/store.db`.
pub async fn open_data_dir(dir: &Path, topics: &[gm_ports::TopicSpec]) -> Result<(SqliteLog, SqliteStore), OpenError> {
    std::fs::create_dir_all(dir).map_err(|e| OpenError::Dir(dir.display().to_string(), e))?;
    let log = SqliteLog::open(&dir.join("log.db"), topics).await?;
    let store = SqliteStore::open(&dir.join("store.db")).await?;
    Ok((log, store))
}
