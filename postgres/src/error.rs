//! Mapping sqlx errors to `StoreError`: what a retry may fix is `Unavailable`.

use chrono::{DateTime, DurationRound, Utc};
use gm_ports::{Cause, StoreError};

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
        // The migration named, its error kept as the source.
        sqlx::migrate::MigrateError::ExecuteMigration(e, version) => {
            let transient = is_transient(&e);
            let cause = Cause::context(format!("migration {version}"), e);
            if transient {
                StoreError::Unavailable(cause)
            } else {
                StoreError::Other(cause)
            }
        }
        other => StoreError::Other(Cause::context("migrations", other)),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed migration is named, and its sqlx error stays reachable as a source.
    #[test]
    fn a_failed_migration_keeps_its_error_as_the_source() {
        let e = migrate_err(sqlx::migrate::MigrateError::ExecuteMigration(sqlx::Error::PoolTimedOut, 7));
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        assert!(e.to_string().starts_with("store unavailable: migration 7: "), "{e}");
        let mut source = std::error::Error::source(&e);
        let mut found = false;
        while let Some(s) = source {
            found |= s.downcast_ref::<sqlx::Error>().is_some();
            source = s.source();
        }
        assert!(found, "the sqlx error is not among the sources of {e:?}");
        let other = migrate_err(sqlx::migrate::MigrateError::ExecuteMigration(sqlx::Error::RowNotFound, 8));
        assert!(matches!(other, StoreError::Other(_)), "{other:?}");
    }
}
