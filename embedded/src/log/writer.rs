//! The writer of the embedded log: one thread owns the only write connection and
//! group-commits what arrives over its channel (see the module doc of [`super`]).

use super::{group, log_err, Answer, Op, Request, Shared, MAX_BATCH_RECORDS};
use crate::sql::{insert_rows, to_i64, to_u64, V};
use chrono::Utc;
use gm_ports::{LogError, NewRecord, Position, TopicSpec};
use sqlx::{Connection, Row, SqliteConnection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS topics (
        name TEXT PRIMARY KEY,
        partitions INTEGER NOT NULL,
        compacted INTEGER NOT NULL
    ) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS records (
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        offset INTEGER NOT NULL,
        key TEXT NOT NULL,
        payload BLOB NOT NULL,
        ts_ms INTEGER NOT NULL,
        headers TEXT,
        PRIMARY KEY (topic, partition, offset)
    ) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS group_offsets (
        grp TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        next_offset INTEGER NOT NULL,
        PRIMARY KEY (grp, topic, partition)
    ) WITHOUT ROWID",
];

pub(super) async fn writer_main(
    path: PathBuf,
    mut rx: mpsc::Receiver<Request>,
    shared: Arc<Shared>,
    ready: oneshot::Sender<Result<(), LogError>>,
) {
    let mut conn = match open_writer(&path, &shared).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Some(first) = rx.recv().await {
        let mut weight = first.weight();
        let mut batch = vec![first];
        while weight < MAX_BATCH_RECORDS {
            match rx.try_recv() {
                Ok(r) => {
                    weight += r.weight();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let stop = run_batch(&mut conn, &shared, batch).await;
        if let Some(reply) = stop {
            let _ = conn.close().await;
            let _ = reply.send(Ok(Answer::Done));
            rx.close();
            // Fail whatever is still queued.
            while let Ok(r) = rx.try_recv() {
                let _ = r.reply.send(Err(LogError::Unavailable("log closed".into())));
            }
            return;
        }
    }
    let _ = conn.close().await;
}

async fn open_writer(path: &Path, shared: &Shared) -> Result<SqliteConnection, LogError> {
    let mut conn = SqliteConnection::connect_with(&crate::sql::options(path)).await.map_err(log_err)?;
    for ddl in SCHEMA {
        sqlx::query(ddl).execute(&mut conn).await.map_err(log_err)?;
    }
    // Logs created before record headers existed: add the (nullable) column.
    let has_headers: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pragma_table_info('records') WHERE name = 'headers'")
            .fetch_one(&mut conn)
            .await
            .map_err(log_err)?;
    if has_headers == 0 {
        sqlx::query("ALTER TABLE records ADD COLUMN headers TEXT").execute(&mut conn).await.map_err(log_err)?;
    }
    load_topics(&mut conn, shared).await.map_err(log_err)?;
    Ok(conn)
}

async fn load_topics(conn: &mut SqliteConnection, shared: &Shared) -> Result<(), sqlx::Error> {
    let rows = sqlx::query("SELECT name, partitions, compacted FROM topics").fetch_all(&mut *conn).await?;
    let mut map = HashMap::new();
    for row in rows {
        let name: String = row.try_get(0)?;
        let partitions: i64 = row.try_get(1)?;
        let compacted: i64 = row.try_get(2)?;
        map.insert(
            name.clone(),
            TopicSpec { name, partitions: u32::try_from(partitions).unwrap_or(1), compacted: compacted != 0 },
        );
    }
    if let Ok(mut topics) = shared.topics.write() {
        *topics = map;
    }
    Ok(())
}

/// What one transaction accumulates: next offsets per partition, rows to insert.
pub(super) struct Tx {
    next: HashMap<(String, u32), u64>,
    rows: Vec<Vec<V>>,
    ts_ms: i64,
    pub(super) changed: bool,
}

impl Tx {
    pub(super) async fn assign(
        &mut self,
        conn: &mut SqliteConnection,
        topic: &str,
        rows: Vec<(u32, NewRecord)>,
    ) -> Result<Vec<Position>, sqlx::Error> {
        let mut positions = Vec::with_capacity(rows.len());
        for (partition, record) in rows {
            let key = (topic.to_string(), partition);
            let next = match self.next.get(&key) {
                Some(n) => *n,
                None => {
                    let max: Option<i64> =
                        sqlx::query_scalar("SELECT MAX(offset) FROM records WHERE topic = ? AND partition = ?")
                            .bind(topic)
                            .bind(i64::from(partition))
                            .fetch_one(&mut *conn)
                            .await?;
                    max.map_or(0, |m| to_u64(m) + 1)
                }
            };
            self.next.insert(key, next + 1);
            self.rows.push(vec![
                V::T(topic.to_string()),
                V::I(i64::from(partition)),
                V::I(to_i64(next)),
                V::T(record.key),
                V::B(record.payload),
                V::I(self.ts_ms),
                V::NT((!record.headers.is_empty()).then(|| serde_json::to_string(&record.headers).unwrap_or_default())),
            ]);
            positions.push(Position { partition, offset: next });
        }
        self.changed = true;
        Ok(positions)
    }
}

/// Runs one batch in one transaction. Returns the reply of a shutdown request, if any.
async fn run_batch(
    conn: &mut SqliteConnection,
    shared: &Shared,
    batch: Vec<Request>,
) -> Option<oneshot::Sender<Result<Answer, LogError>>> {
    let mut tx = Tx { next: HashMap::new(), rows: Vec::new(), ts_ms: Utc::now().timestamp_millis(), changed: false };
    let mut shutdown = None;
    let mut answers = Vec::with_capacity(batch.len());
    let mut failure: Option<sqlx::Error> = None;
    if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        let err = log_err(e);
        for r in batch {
            match r.op {
                Op::Shutdown => shutdown = Some(r.reply),
                _ => {
                    let _ = r.reply.send(Err(err.clone()));
                }
            }
        }
        return shutdown;
    }
    for r in batch {
        if let Op::Shutdown = r.op {
            shutdown = Some(r.reply);
            continue;
        }
        if failure.is_some() {
            answers.push((r.reply, Err(LogError::Unavailable("transaction aborted".into()))));
            continue;
        }
        match handle(conn, shared, &mut tx, r.op).await {
            Ok(answer) => answers.push((r.reply, answer)),
            Err(e) => {
                failure = Some(e);
                answers.push((r.reply, Err(LogError::Unavailable("transaction aborted".into()))));
            }
        }
    }
    if failure.is_none() && !tx.rows.is_empty() {
        let rows = std::mem::take(&mut tx.rows);
        if let Err(e) = insert_rows(
            conn,
            "INSERT INTO records (topic, partition, offset, key, payload, ts_ms, headers) VALUES",
            "",
            7,
            rows,
        )
        .await
        {
            failure = Some(e);
        }
    }
    if failure.is_none() {
        if let Err(e) = sqlx::query("COMMIT").execute(&mut *conn).await {
            failure = Some(e);
        }
    }
    match failure {
        None => {
            if tx.changed {
                shared.changes.send_modify(|v| *v = v.wrapping_add(1));
            }
            for (reply, answer) in answers {
                let _ = reply.send(answer);
            }
        }
        Some(e) => {
            tracing::warn!(error = %e, "embedded log transaction failed; rolled back");
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            let err = log_err(e);
            for (reply, _) in answers {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
    shutdown
}

/// One request inside the batch's transaction. The outer error aborts the transaction; the
/// inner one refuses this request alone (having written nothing).
async fn handle(
    conn: &mut SqliteConnection,
    shared: &Shared,
    tx: &mut Tx,
    op: Op,
) -> Result<Result<Answer, LogError>, sqlx::Error> {
    match op {
        Op::Append { topic, rows } => {
            if let Err(e) = shared.partitions(&topic) {
                return Ok(Err(e));
            }
            Ok(Ok(Answer::Positions(tx.assign(conn, &topic, rows).await?)))
        }
        Op::Commit(c) => group::commit(conn, shared, tx, c).await,
        Op::Join { group, topic, partitions } => {
            Ok(Ok(group::join(conn, shared, tx, &group, &topic, partitions).await?))
        }
        Op::EnsureTopics(specs) => {
            for spec in specs {
                sqlx::query("INSERT OR IGNORE INTO topics (name, partitions, compacted) VALUES (?, ?, ?)")
                    .bind(&spec.name)
                    .bind(i64::from(spec.partitions))
                    .bind(i64::from(spec.compacted))
                    .execute(&mut *conn)
                    .await?;
            }
            load_topics(conn, shared).await?;
            Ok(Ok(Answer::Done))
        }
        Op::Compact(topic) => {
            let removed = sqlx::query(
                "DELETE FROM records WHERE topic = ?1 AND (partition, offset) NOT IN
                     (SELECT partition, MAX(offset) FROM records WHERE topic = ?1 GROUP BY partition, key)",
            )
            .bind(&topic)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            tx.changed |= removed > 0;
            Ok(Ok(Answer::Removed(removed)))
        }
        Op::Shutdown => Ok(Ok(Answer::Done)),
    }
}
