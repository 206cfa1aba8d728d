//! The embedded log: Kafka's model (topics, partitions, keys, dense offsets, consumer groups,
//! consume-transform-produce transactions) on one SQLite file.
//!
//! # Writes: group commit
//! One writer thread owns the only write connection. Appends, commits and joins arrive over
//! a channel; the writer drains everything pending (up to [`MAX_BATCH_RECORDS`] records),
//! executes it in ONE `BEGIN IMMEDIATE` transaction with multi-row `INSERT`s, commits
//! (`synchronous=FULL`, so the batch is on disk), and only then answers each request. If the
//! transaction fails, it is rolled back and every request of it fails (`Unavailable` for
//! transient errors); a request refused on its own merits (`Fenced`, `UnknownTopic`) writes
//! nothing and does not affect the others. The next offset of a partition is read inside
//! the transaction (`MAX(offset) + 1`), so offsets stay dense and correct even if a second
//! process writes to the same file.
//!
//! # Reads
//! A small pool of read connections (WAL lets them run beside the writer). Only committed
//! transactions are visible, so consumers naturally read "read_committed". Consumers wait
//! for new data on a `watch` channel the writer bumps after each commit.
//!
//! # Consumer groups (in one process)
//! Each new consumer of a `(group, topic)` takes over all partitions; commits are fenced
//! against superseded members and stale offsets: the rules are in `log/group.rs`.
//!
//! # Parts
//! `log/writer.rs` (the group-commit thread), `log/consumer.rs` ([`SqliteConsumer`]), `log/group.rs`
//! (membership and the fencing rule, run by the writer); this file holds the handle
//! ([`SqliteLog`]), the requests it sends the writer and the partition reads.

use crate::sql::{is_transient, to_i64, to_u64};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gm_ports::{partition_for, EventLog, LogConsumer, LogError, LogProducer, NewRecord, Position, Record, TopicSpec};
use sqlx::sqlite::SqlitePool;
use sqlx::{Row, SqliteConnection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{mpsc, oneshot, watch};

/// At most this many records are written by one transaction of the writer (a single larger
/// request is still written whole, in its own transaction).
pub const MAX_BATCH_RECORDS: usize = 5_000;

fn log_err(e: sqlx::Error) -> LogError {
    if is_transient(&e) {
        LogError::unavailable(e)
    } else {
        LogError::other(e)
    }
}

/// State shared by the handle, its consumers and the writer thread.
struct Shared {
    topics: RwLock<HashMap<String, TopicSpec>>,
    /// Bumped after every committed write transaction and every group join.
    changes: watch::Sender<u64>,
    /// Current generation per (group, topic); only the writer changes it.
    generations: Mutex<HashMap<(String, String), u64>>,
}

impl Shared {
    fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        let topics = self.topics.read().map_err(|_| LogError::Other("topics lock poisoned".into()))?;
        topics.get(topic).map(|t| t.partitions).ok_or_else(|| LogError::UnknownTopic(topic.to_string()))
    }
    fn generation(&self, group: &str, topic: &str) -> u64 {
        self.generations
            .lock()
            .map(|g| g.get(&(group.to_string(), topic.to_string())).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

enum Op {
    Append { topic: String, rows: Vec<(u32, NewRecord)> },
    Commit(group::Commit),
    Join { group: String, topic: String, partitions: u32 },
    EnsureTopics(Vec<TopicSpec>),
    Compact(String),
    Shutdown,
}

enum Answer {
    Positions(Vec<Position>),
    Removed(u64),
    Joined { generation: u64, committed: Vec<Option<u64>> },
    Done,
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Answer, LogError>>,
}

impl Request {
    fn weight(&self) -> usize {
        match &self.op {
            Op::Append { rows, .. } => rows.len(),
            Op::Commit(c) => 1 + c.outputs.iter().map(|(_, r)| r.len()).sum::<usize>(),
            _ => 1,
        }
    }
}

struct Inner {
    path: PathBuf,
    reads: SqlitePool,
    writer: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

/// The embedded log. Cheap to clone; every clone talks to the same writer.
#[derive(Clone)]
pub struct SqliteLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLog").field("path", &self.inner.path).finish()
    }
}

impl SqliteLog {
    /// Opens (creating if needed) the log database at `path` and creates missing `topics`.
    pub async fn open(path: &Path, topics: &[TopicSpec]) -> Result<Self, LogError> {
        let shared = Arc::new(Shared {
            topics: RwLock::new(HashMap::new()),
            changes: watch::channel(0).0,
            generations: Mutex::new(HashMap::new()),
        });
        let (tx, rx) = mpsc::channel::<Request>(4096);
        let (ready_tx, ready_rx) = oneshot::channel();
        let writer_shared = shared.clone();
        let writer_path = path.to_path_buf();
        std::thread::Builder::new()
            .name("gm-log-writer".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(LogError::Other(gm_ports::Cause::context("writer runtime", e))));
                        return;
                    }
                };
                rt.block_on(writer::writer_main(writer_path, rx, writer_shared, ready_tx));
            })
            .map_err(|e| LogError::Other(gm_ports::Cause::context("spawn writer", e)))?;
        ready_rx.await.map_err(|_| LogError::Other("log writer failed to start".into()))??;

        let reads = crate::sql::read_pool(path, 8).await.map_err(log_err)?;
        let log = SqliteLog { inner: Arc::new(Inner { path: path.to_path_buf(), reads, writer: tx, shared }) };
        log.ensure_topics(topics).await?;
        Ok(log)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Log compaction of a compacted topic: removes every record that has a later record
    /// with the same key in its partition (the latest value of each key, tombstones
    /// included, stays; offsets of the remaining records do not change, so a partition's
    /// end offset is kept). Returns how many records were removed. Refused for a topic that
    /// is not compacted.
    pub async fn compact(&self, topic: &str) -> Result<u64, LogError> {
        let compacted = {
            let topics = self.inner.shared.topics.read().map_err(|_| LogError::Other("topics lock poisoned".into()))?;
            topics.get(topic).map(|t| t.compacted).ok_or_else(|| LogError::UnknownTopic(topic.to_string()))?
        };
        if !compacted {
            return Err(LogError::Other(format!("topic {topic} is not compacted").into()));
        }
        match self.request(Op::Compact(topic.to_string())).await? {
            Answer::Removed(n) => Ok(n),
            _ => Err(LogError::Other("unexpected answer to compact".into())),
        }
    }

    /// The committed next offset of `group` on each partition of `topic` (`None`: nothing
    /// committed), read without joining the group (the operators' status page).
    pub async fn group_offsets(&self, group: &str, topic: &str) -> Result<Vec<Option<u64>>, LogError> {
        let partitions = self.inner.shared.partitions(topic)?;
        let rows: Vec<(i64, i64)> =
            sqlx::query_as("SELECT partition, next_offset FROM group_offsets WHERE grp = ? AND topic = ?")
                .bind(group)
                .bind(topic)
                .fetch_all(&self.inner.reads)
                .await
                .map_err(log_err)?;
        let mut out = vec![None; partitions as usize];
        for (partition, next) in rows {
            if let Some(slot) = usize::try_from(partition).ok().and_then(|p| out.get_mut(p)) {
                *slot = Some(to_u64(next));
            }
        }
        Ok(out)
    }

    /// Finishes pending writes and closes the database. Later calls on any clone fail
    /// with `Unavailable`.
    pub async fn close(&self) {
        let _ = self.request(Op::Shutdown).await;
        self.inner.reads.close().await;
    }

    async fn request(&self, op: Op) -> Result<Answer, LogError> {
        let (reply, rx) = oneshot::channel();
        self.inner.writer.send(Request { op, reply }).await.map_err(|_| LogError::Unavailable("log closed".into()))?;
        rx.await.map_err(|_| LogError::Unavailable("log writer stopped".into()))?
    }

    fn keyed(&self, topic: &str, records: Vec<NewRecord>) -> Result<Vec<(u32, NewRecord)>, LogError> {
        let partitions = self.inner.shared.partitions(topic)?;
        Ok(records.into_iter().map(|r| (partition_for(&r.key, partitions), r)).collect())
    }
}

#[async_trait]
impl LogProducer for SqliteLog {
    async fn append(&self, topic: &str, records: Vec<NewRecord>) -> Result<Vec<Position>, LogError> {
        let rows = self.keyed(topic, records)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        match self.request(Op::Append { topic: topic.to_string(), rows }).await? {
            Answer::Positions(p) => Ok(p),
            _ => Err(LogError::Other("unexpected answer to append".into())),
        }
    }
}

#[async_trait]
impl EventLog for SqliteLog {
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), LogError> {
        if topics.iter().any(|t| t.partitions == 0 || t.name.is_empty()) {
            return Err(LogError::Other("a topic needs a name and at least one partition".into()));
        }
        self.request(Op::EnsureTopics(topics.to_vec())).await.map(|_| ())
    }

    fn producer(&self) -> Arc<dyn LogProducer> {
        Arc::new(self.clone())
    }

    async fn consumer(&self, group: &str, topic: &str) -> Result<Box<dyn LogConsumer>, LogError> {
        Ok(Box::new(self.sqlite_consumer(group, topic).await?))
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, LogError> {
        let partitions = self.inner.shared.partitions(topic)?;
        let mut conn = self.inner.reads.acquire().await.map_err(log_err)?;
        let mut out = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let max: Option<i64> =
                sqlx::query_scalar("SELECT MAX(offset) FROM records WHERE topic = ? AND partition = ?")
                    .bind(topic)
                    .bind(i64::from(p))
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(log_err)?;
            out.push(max.map_or(0, |m| to_u64(m) + 1));
        }
        Ok(out)
    }

    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<Record>, LogError> {
        let partitions = self.inner.shared.partitions(topic)?;
        if partition >= partitions {
            return Err(LogError::Other(format!("topic {topic} has no partition {partition}").into()));
        }
        let mut conn = self.inner.reads.acquire().await.map_err(log_err)?;
        read_partition(&mut conn, topic, partition, from, max).await
    }
}

async fn read_partition(
    conn: &mut SqliteConnection,
    topic: &str,
    partition: u32,
    from: u64,
    max: usize,
) -> Result<Vec<Record>, LogError> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT offset, key, payload, ts_ms, headers FROM records
         WHERE topic = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?",
    )
    .bind(topic)
    .bind(i64::from(partition))
    .bind(to_i64(from))
    .bind(to_i64(max as u64))
    .fetch_all(&mut *conn)
    .await
    .map_err(log_err)?;
    rows.into_iter()
        .map(|row| {
            let ts: i64 = row.try_get(3)?;
            let headers: Option<String> = row.try_get(4)?;
            Ok(Record {
                topic: topic.to_string(),
                partition,
                offset: to_u64(row.try_get(0)?),
                key: row.try_get(1)?,
                payload: row.try_get(2)?,
                timestamp: DateTime::<Utc>::from_timestamp_millis(ts).unwrap_or_default(),
                headers: headers.and_then(|h| serde_json::from_str(&h).ok()).unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(log_err)
}

mod consumer;
mod group;
mod writer;

pub use consumer::SqliteConsumer;

#[cfg(test)]
mod tests;
