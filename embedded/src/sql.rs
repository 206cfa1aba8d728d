//! Shared SQLite plumbing: connection options, batched multi-row inserts, error mapping.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqliteConnection;
use std::path::Path;
use std::time::Duration;

/// SQLite's default maximum number of bound variables per statement (since 3.32).
pub(crate) const MAX_VARIABLES: usize = 32_766;

/// Rows per multi-row statement, greedily: a handful of distinct SQL texts, so that the
/// connection's prepared-statement cache keeps them all.
const CHUNK_SIZES: [usize; 6] = [512, 128, 32, 8, 2, 1];

/// Options for a database file: WAL, `synchronous=FULL` (a commit is on disk when it
/// returns), a busy timeout so a second connection waits rather than fails, and
/// `secure_delete` (deleted rows are overwritten with zeros, so an erased player's id and
/// values do not stay readable in free pages).
pub(crate) fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(false)
        .statement_cache_capacity(256)
        .pragma("secure_delete", "ON")
}

/// A pool of read-only connections (`query_only`) to the database file at `path`, the
/// readers beside a file's one writer.
pub(crate) async fn read_pool(path: &Path, max_connections: u32) -> Result<SqlitePool, sqlx::Error> {
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options(path).pragma("query_only", "ON"))
        .await
}

/// Copies the WAL into the database file and truncates it to zero bytes, so that the page
/// images it held (with whatever rows they had before a delete) are gone from the disk
/// files. Readers in the middle of a read can hold the checkpoint back: retried for a while,
/// then `false`.
pub(crate) async fn truncate_wal(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    for attempt in 0..50u64 {
        // (busy, frames in the WAL, frames checkpointed): busy 0 = the WAL was emptied.
        let (busy, _, _): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *conn).await?;
        if busy == 0 {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(20 * (attempt + 1).min(10))).await;
    }
    Ok(false)
}

/// One bound value of a batched insert.
#[derive(Debug, Clone)]
pub(crate) enum V {
    I(i64),
    F(f64),
    T(String),
    NT(Option<String>),
    NI(Option<i64>),
    B(Vec<u8>),
}

/// `head` is `INSERT INTO t (a, b, c) VALUES`, `tail` what follows the values (an
/// `ON CONFLICT` clause, or empty). Each row has exactly `cols` values. Inserts with as few
/// statements as the variable limit allows.
pub(crate) async fn insert_rows(
    conn: &mut SqliteConnection,
    head: &str,
    tail: &str,
    cols: usize,
    rows: Vec<Vec<V>>,
) -> Result<(), sqlx::Error> {
    let mut rows = rows.into_iter().peekable();
    let mut remaining = rows.len();
    let max_rows = (MAX_VARIABLES / cols.max(1)).max(1);
    while remaining > 0 {
        let n = CHUNK_SIZES.iter().copied().find(|s| *s <= remaining && *s <= max_rows).unwrap_or(1);
        let sql = values_sql(head, tail, cols, n);
        let mut q = sqlx::query(&sql);
        for row in rows.by_ref().take(n) {
            debug_assert_eq!(row.len(), cols);
            for v in row {
                q = match v {
                    V::I(x) => q.bind(x),
                    V::F(x) => q.bind(x),
                    V::T(x) => q.bind(x),
                    V::NT(x) => q.bind(x),
                    V::NI(x) => q.bind(x),
                    V::B(x) => q.bind(x),
                };
            }
        }
        q.execute(&mut *conn).await?;
        remaining -= n;
    }
    Ok(())
}

/// `INSERT INTO {table} ({columns}) VALUES ... {tail}` of `rows` by [`insert_rows`], each row
/// with one value per column of `columns`; `tail` is the `ON CONFLICT` clause.
pub(crate) async fn upsert(
    conn: &mut SqliteConnection,
    table: &str,
    columns: &str,
    tail: &str,
    rows: Vec<Vec<V>>,
) -> Result<(), sqlx::Error> {
    let cols = columns.split(',').count();
    insert_rows(conn, &format!("INSERT INTO {table} ({columns}) VALUES"), tail, cols, rows).await
}

/// [`upsert`] as `INSERT OR IGNORE`: rows whose key is there already are left as they are.
pub(crate) async fn insert_new(
    conn: &mut SqliteConnection,
    table: &str,
    columns: &str,
    rows: Vec<Vec<V>>,
) -> Result<(), sqlx::Error> {
    let cols = columns.split(',').count();
    insert_rows(conn, &format!("INSERT OR IGNORE INTO {table} ({columns}) VALUES"), "", cols, rows).await
}

fn values_sql(head: &str, tail: &str, cols: usize, rows: usize) -> String {
    let mut one = String::with_capacity(cols * 2 + 2);
    one.push('(');
    for c in 0..cols {
        if c > 0 {
            one.push(',');
        }
        one.push('?');
    }
    one.push(')');
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * (one.len() + 1) + 2);
    sql.push_str(head);
    sql.push(' ');
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push_str(&one);
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// Whether an error is worth retrying (busy, locked, I/O, disk full, pool exhausted).
pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code();
            let primary = code.as_deref().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
            // SQLITE_BUSY 5, SQLITE_LOCKED 6, SQLITE_IOERR 10, SQLITE_FULL 13, SQLITE_CANTOPEN 14
            matches!(primary, Some(5 | 6 | 10 | 13 | 14))
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_sql_has_one_group_per_row() {
        let sql = values_sql("INSERT INTO t (a, b) VALUES", "", 2, 3);
        assert_eq!(sql.trim(), "INSERT INTO t (a, b) VALUES (?,?),(?,?),(?,?)");
    }
}
