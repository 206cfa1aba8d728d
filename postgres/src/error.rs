//! Mapping sqlx errors to `StoreError`: what a retry may fix is `Unavailable`.

use chrono::{DateTime, DurationRound, Utc};
use gm_ports::StoreError;

/// Whether `e` is a failure of the connection or of the server's current state (a restart,
/// overload, a lock or serialization conflict), which a retry may fix.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            code.starts_with("08") // connection exception
                || code.starts_with("53") // insufficient resources
                || matches!(
                    code,
                    "57P01" | "57P02" | "57P03" // admin/crash shutdown, cannot connect now
                        | "40001" | "40P01" // serialization failure, deadlock
                        | "55P03" // lock not available (lock_timeout)
                        | "57014" // statement timeout / cancelled
                )
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// `Unavailable` for transient failures, `Other` for the rest.
pub fn store_err(e: sqlx::Error) -> StoreError {
    if is_transient(&e) {
        StoreError::unavailable(e)
    } else {
        StoreError::other(e)
    }
}

pub(crate) fn migrate_err(e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(e) => store_err(e),
        sqlx::migrate::MigrateError::ExecuteMigration(e, version) => match store_err(e) {
            StoreError::Unavailable(m) => StoreError::Unavailable(format!("migration {version}: {m}").into()),
            other => StoreError::Other(format!("migration {version}: {other}").into()),
        },
        other => StoreError::Other(format!("migrations: {other}").into()),
    }
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `t` to the millisecond. Times are answered to the millisecond, as the embedded store keeps
/// them, so that both stores give the same answers (the store contract checks it);
/// PostgreSQL's `timestamptz` would give microseconds.
pub(crate) fn to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::milliseconds(1)).unwrap_or(t)
}
