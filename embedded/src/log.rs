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
//! Each new consumer of a `(group, topic)` takes over all partitions: its first `poll`
//! returns `Polled::Assigned(all)`; the previous consumer of that group and topic sees
//! `Polled::Revoked(all)` on its next poll, and from then on only `Idle` (it never gets the
//! partitions back). Positions start at the group's committed offset, or 0, unless `seek`
//! is called.
//!
//! # Fencing rule of `commit` / `commit_with_outputs`
//! A commit succeeds only if (1) the consumer is still the group's current member (its
//! generation was not superseded by a newer consumer) and (2) for every partition it
//! commits, the group's stored offset equals the value this consumer last saw: the value
//! read when it was assigned, or the value of its own last successful commit. `seek` does
//! not change that value. Otherwise it fails with `LogError::Fenced` and writes nothing
//! (neither offsets nor outputs). Rule (2) also fences a member of another process that
//! shares the file.

use crate::sql::{insert_rows, is_transient, to_i64, to_u64, V};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gm_ports::{
    partition_for, EventLog, LogConsumer, LogError, LogProducer, NewRecord, Polled, Position, Record, TopicSpec,
};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use sqlx::{Connection, Row, SqliteConnection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// At most this many records are written by one transaction of the writer (a single larger
/// request is still written whole, in its own transaction).
pub const MAX_BATCH_RECORDS: usize = 5_000;

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

fn log_err(e: sqlx::Error) -> LogError {
    if is_transient(&e) {
        LogError::Unavailable(e.to_string())
    } else {
        LogError::Other(e.to_string())
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
    Append {
        topic: String,
        rows: Vec<(u32, NewRecord)>,
    },
    Commit {
        group: String,
        topic: String,
        generation: u64,
        expected: Vec<(u32, Option<u64>)>,
        offsets: Vec<Position>,
        outputs: Vec<(String, Vec<(u32, NewRecord)>)>,
    },
    Join {
        group: String,
        topic: String,
        partitions: u32,
    },
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
            Op::Commit { outputs, .. } => 1 + outputs.iter().map(|(_, r)| r.len()).sum::<usize>(),
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
                        let _ = ready_tx.send(Err(LogError::Other(format!("writer runtime: {e}"))));
                        return;
                    }
                };
                rt.block_on(writer_main(writer_path, rx, writer_shared, ready_tx));
            })
            .map_err(|e| LogError::Other(format!("spawn writer: {e}")))?;
        ready_rx.await.map_err(|_| LogError::Other("log writer failed to start".into()))??;

        let reads = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(crate::sql::options(path).pragma("query_only", "ON"))
            .await
            .map_err(log_err)?;
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
            return Err(LogError::Other(format!("topic {topic} is not compacted")));
        }
        match self.request(Op::Compact(topic.to_string())).await? {
            Answer::Removed(n) => Ok(n),
            _ => Err(LogError::Other("unexpected answer to compact".into())),
        }
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
            return Err(LogError::Other(format!("topic {topic} has no partition {partition}")));
        }
        let mut conn = self.inner.reads.acquire().await.map_err(log_err)?;
        read_partition(&mut conn, topic, partition, from, max).await
    }
}

impl SqliteLog {
    /// A consumer of `topic` in `group` (the concrete type behind [`EventLog::consumer`]).
    /// It joins the group now: the previous member of this group and topic is revoked.
    pub async fn sqlite_consumer(&self, group: &str, topic: &str) -> Result<SqliteConsumer, LogError> {
        let partitions = self.inner.shared.partitions(topic)?;
        // Subscribe before joining, so that no change after the join can be missed.
        let changes = self.inner.shared.changes.subscribe();
        let answer = self.request(Op::Join { group: group.to_string(), topic: topic.to_string(), partitions }).await?;
        let Answer::Joined { generation, committed } = answer else {
            return Err(LogError::Other("unexpected answer to join".into()));
        };
        Ok(SqliteConsumer {
            log: self.clone(),
            group: group.to_string(),
            topic: topic.to_string(),
            partitions,
            generation,
            state: State::Joined,
            positions: committed.iter().map(|c| c.unwrap_or(0)).collect(),
            seen: committed,
            sought: HashMap::new(),
            next_first: 0,
            changes,
        })
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Joined; the next poll announces the assignment.
    Joined,
    Active,
    /// Superseded by a newer member of the group.
    Revoked,
}

/// A member of a consumer group on one topic of the embedded log. See the module doc for
/// the group and fencing rules.
pub struct SqliteConsumer {
    log: SqliteLog,
    group: String,
    topic: String,
    partitions: u32,
    generation: u64,
    state: State,
    /// Next offset to read, per partition.
    positions: Vec<u64>,
    /// The group's stored offset as this consumer last saw it (assignment or own commit).
    seen: Vec<Option<u64>>,
    /// Seeks made before the assignment was announced.
    sought: HashMap<u32, u64>,
    /// Partition that goes first in the next fetch (round robin, for fairness).
    next_first: u32,
    changes: watch::Receiver<u64>,
}

impl SqliteConsumer {
    fn all(&self) -> Vec<u32> {
        (0..self.partitions).collect()
    }

    fn superseded(&self) -> bool {
        self.log.inner.shared.generation(&self.group, &self.topic) != self.generation
    }

    /// Reads up to `max` records, fairly across partitions: each partition first gets an
    /// equal share, then partitions that filled their share get what is left. Cancel-safe:
    /// positions only move, all at once, after every read succeeded (a `poll` dropped by a
    /// `select!` loses no record).
    async fn fetch(&mut self, max: usize) -> Result<Vec<Record>, LogError> {
        let n = self.partitions as usize;
        let max = max.max(1);
        let share = max.div_ceil(n).max(1);
        let mut positions = self.positions.clone();
        let mut conn = self.log.inner.reads.acquire().await.map_err(log_err)?;
        let mut out: Vec<Record> = Vec::new();
        let mut full = Vec::new();
        let first = self.next_first;
        for i in 0..self.partitions {
            let p = (first + i) % self.partitions;
            let limit = share.min(max - out.len());
            if limit == 0 {
                break;
            }
            let recs = read_partition(&mut conn, &self.topic, p, positions[p as usize], limit).await?;
            if recs.len() == limit {
                full.push(p);
            }
            if let Some(last) = recs.last() {
                positions[p as usize] = last.offset + 1;
            }
            out.extend(recs);
        }
        for p in full {
            let limit = max - out.len();
            if limit == 0 {
                break;
            }
            let recs = read_partition(&mut conn, &self.topic, p, positions[p as usize], limit).await?;
            if let Some(last) = recs.last() {
                positions[p as usize] = last.offset + 1;
            }
            out.extend(recs);
        }
        self.positions = positions;
        self.next_first = (first + 1) % self.partitions;
        Ok(out)
    }

    async fn send_commit(
        &mut self,
        offsets: &[Position],
        outputs: Vec<(String, Vec<(u32, NewRecord)>)>,
    ) -> Result<(), LogError> {
        if self.state == State::Revoked || self.superseded() {
            return Err(LogError::Fenced(format!(
                "consumer of group {} on {} was superseded by a newer member",
                self.group, self.topic
            )));
        }
        let mut expected = Vec::with_capacity(offsets.len());
        for pos in offsets {
            let seen = self
                .seen
                .get(pos.partition as usize)
                .ok_or_else(|| LogError::Other(format!("topic {} has no partition {}", self.topic, pos.partition)))?;
            expected.push((pos.partition, *seen));
        }
        let op = Op::Commit {
            group: self.group.clone(),
            topic: self.topic.clone(),
            generation: self.generation,
            expected,
            offsets: offsets.to_vec(),
            outputs,
        };
        self.log.request(op).await?;
        for pos in offsets {
            self.seen[pos.partition as usize] = Some(pos.offset);
        }
        Ok(())
    }
}

#[async_trait]
impl LogConsumer for SqliteConsumer {
    async fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Polled, LogError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.changes.borrow_and_update();
            match self.state {
                State::Revoked => {}
                _ if self.superseded() => {
                    let was_active = self.state == State::Active;
                    self.state = State::Revoked;
                    if was_active {
                        return Ok(Polled::Revoked(self.all()));
                    }
                }
                State::Joined => {
                    self.state = State::Active;
                    for (p, offset) in self.sought.drain() {
                        if let Some(pos) = self.positions.get_mut(p as usize) {
                            *pos = offset;
                        }
                    }
                    return Ok(Polled::Assigned(self.all()));
                }
                State::Active => {
                    let records = self.fetch(max_records).await?;
                    if !records.is_empty() {
                        return Ok(Polled::Records(records));
                    }
                }
            }
            match tokio::time::timeout_at(deadline, self.changes.changed()).await {
                Err(_) => return Ok(Polled::Idle),
                Ok(Ok(())) => continue,
                Ok(Err(_)) => {
                    // The log was dropped: nothing will ever arrive.
                    tokio::time::sleep_until(deadline).await;
                    return Ok(Polled::Idle);
                }
            }
        }
    }

    fn seek(&mut self, partition: u32, offset: u64) {
        if self.state == State::Joined {
            self.sought.insert(partition, offset);
        } else if let Some(pos) = self.positions.get_mut(partition as usize) {
            *pos = offset;
        }
    }

    async fn committed(&self, partition: u32) -> Result<Option<u64>, LogError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT next_offset FROM group_offsets WHERE grp = ? AND topic = ? AND partition = ?")
                .bind(&self.group)
                .bind(&self.topic)
                .bind(i64::from(partition))
                .fetch_optional(&self.log.inner.reads)
                .await
                .map_err(log_err)?;
        Ok(v.map(to_u64))
    }

    async fn commit(&mut self, offsets: &[Position]) -> Result<(), LogError> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.send_commit(offsets, Vec::new()).await
    }

    async fn commit_with_outputs_to(
        &mut self,
        outputs: Vec<(String, Vec<NewRecord>)>,
        offsets: &[Position],
    ) -> Result<(), LogError> {
        let mut keyed = Vec::with_capacity(outputs.len());
        for (topic, records) in outputs {
            let rows = self.log.keyed(&topic, records)?;
            keyed.push((topic, rows));
        }
        self.send_commit(offsets, keyed).await
    }
}

// ---------------------------------------------------------------- the writer

async fn writer_main(
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
struct Tx {
    next: HashMap<(String, u32), u64>,
    rows: Vec<Vec<V>>,
    ts_ms: i64,
    changed: bool,
}

impl Tx {
    async fn assign(
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
        Op::Commit { group, topic, generation, expected, offsets, outputs } => {
            if shared.generation(&group, &topic) != generation {
                return Ok(Err(LogError::Fenced(format!(
                    "consumer of group {group} on {topic} was superseded by a newer member"
                ))));
            }
            for (out_topic, _) in &outputs {
                if let Err(e) = shared.partitions(out_topic) {
                    return Ok(Err(e));
                }
            }
            let stored = committed_offsets(conn, &group, &topic).await?;
            for (partition, seen) in &expected {
                let now = stored.get(partition).copied();
                if now != *seen {
                    return Ok(Err(LogError::Fenced(format!(
                        "group {group} on {topic} partition {partition}: committed offset is {now:?}, \
                         this consumer last saw {seen:?}"
                    ))));
                }
            }
            if !offsets.is_empty() {
                let rows = offsets
                    .iter()
                    .map(|p| {
                        vec![
                            V::T(group.clone()),
                            V::T(topic.clone()),
                            V::I(i64::from(p.partition)),
                            V::I(to_i64(p.offset)),
                        ]
                    })
                    .collect();
                insert_rows(
                    conn,
                    "INSERT INTO group_offsets (grp, topic, partition, next_offset) VALUES",
                    "ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                    4,
                    rows,
                )
                .await?;
                tx.changed = true;
            }
            for (out_topic, rows) in outputs {
                tx.assign(conn, &out_topic, rows).await?;
            }
            Ok(Ok(Answer::Done))
        }
        Op::Join { group, topic, partitions } => {
            let generation = {
                let mut g = shared.generations.lock().unwrap_or_else(|p| p.into_inner());
                let entry = g.entry((group.clone(), topic.clone())).or_insert(0);
                *entry += 1;
                *entry
            };
            tx.changed = true; // wakes the previous member, which then sees its revocation
            let stored = committed_offsets(conn, &group, &topic).await?;
            let committed = (0..partitions).map(|p| stored.get(&p).copied()).collect();
            Ok(Ok(Answer::Joined { generation, committed }))
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

async fn committed_offsets(
    conn: &mut SqliteConnection,
    group: &str,
    topic: &str,
) -> Result<HashMap<u32, u64>, sqlx::Error> {
    let rows = sqlx::query("SELECT partition, next_offset FROM group_offsets WHERE grp = ? AND topic = ?")
        .bind(group)
        .bind(topic)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = HashMap::new();
    for row in rows {
        let p: i64 = row.try_get(0)?;
        let o: i64 = row.try_get(1)?;
        out.insert(u32::try_from(p).unwrap_or(u32::MAX), to_u64(o));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(name: &str, partitions: u32) -> TopicSpec {
        TopicSpec { name: name.into(), partitions, compacted: false }
    }

    fn rec(key: &str, payload: &str) -> NewRecord {
        NewRecord::new(key, payload.as_bytes().to_vec())
    }

    async fn open(dir: &tempfile::TempDir) -> SqliteLog {
        SqliteLog::open(&dir.path().join("log.db"), &[spec("in", 3), spec("out", 2)]).await.unwrap()
    }

    /// Polls until `n` records arrived (assignment and idle polls are skipped).
    async fn collect(c: &mut dyn LogConsumer, n: usize) -> Vec<Record> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while out.len() < n {
            assert!(tokio::time::Instant::now() < deadline, "only {} of {n} records arrived", out.len());
            if let Polled::Records(r) = c.poll(n - out.len(), Duration::from_millis(200)).await.unwrap() {
                out.extend(r);
            }
        }
        out
    }

    #[tokio::test]
    async fn appends_get_dense_offsets_per_partition_and_keys_map_to_partition_for() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir).await;
        let mut expected_next: BTreeMap<u32, u64> = BTreeMap::new();
        for round in 0..3 {
            let records: Vec<NewRecord> =
                (0..40).map(|i| rec(&format!("game:p{i}"), &format!("{round}-{i}"))).collect();
            let positions = log.append("in", records.clone()).await.unwrap();
            assert_eq!(positions.len(), records.len());
            for (r, pos) in records.iter().zip(&positions) {
                assert_eq!(pos.partition, partition_for(&r.key, 3), "key {}", r.key);
                let next = expected_next.entry(pos.partition).or_insert(0);
                assert_eq!(pos.offset, *next, "offsets must be dense and in input order");
                *next += 1;
            }
        }
        let ends = log.end_offsets("in").await.unwrap();
        assert_eq!(ends, (0..3).map(|p| expected_next.get(&p).copied().unwrap_or(0)).collect::<Vec<_>>());
        assert_eq!(ends.iter().sum::<u64>(), 120);
        let p0 = log.read("in", 0, 0, 1000).await.unwrap();
        assert_eq!(p0.len() as u64, ends[0]);
        assert!(p0.iter().enumerate().all(|(i, r)| r.offset == i as u64 && partition_for(&r.key, 3) == 0));
        assert!(matches!(log.append("nope", vec![rec("k", "v")]).await, Err(LogError::UnknownTopic(_))));
    }

    #[tokio::test]
    async fn consumer_reads_in_offset_order_and_resumes_from_committed_offset_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir).await;
        let records: Vec<NewRecord> = (0..60).map(|i| rec(&format!("k{}", i % 7), &i.to_string())).collect();
        log.append("in", records).await.unwrap();

        let mut c = log.consumer("g", "in").await.unwrap();
        assert_eq!(c.poll(10, Duration::from_millis(100)).await.unwrap(), Polled::Assigned(vec![0, 1, 2]));
        let got = collect(c.as_mut(), 60).await;
        // Per partition: offsets 0,1,2,... in order, payloads in append order.
        let mut by_partition: BTreeMap<u32, Vec<&Record>> = BTreeMap::new();
        for r in &got {
            by_partition.entry(r.partition).or_default().push(r);
        }
        for recs in by_partition.values() {
            assert!(recs.iter().enumerate().all(|(i, r)| r.offset == i as u64));
            let payloads: Vec<u32> =
                recs.iter().map(|r| String::from_utf8_lossy(&r.payload).parse().unwrap()).collect();
            assert!(payloads.windows(2).all(|w| w[0] < w[1]));
        }
        // Commit half of each partition, then close and reopen.
        let commits: Vec<Position> =
            by_partition.iter().map(|(p, recs)| Position { partition: *p, offset: recs.len() as u64 / 2 }).collect();
        c.commit(&commits).await.unwrap();
        drop(c);
        log.close().await;
        drop(log);

        let log = open(&dir).await;
        let mut c = log.consumer("g", "in").await.unwrap();
        for pos in &commits {
            assert_eq!(c.committed(pos.partition).await.unwrap(), Some(pos.offset));
        }
        assert!(matches!(c.poll(10, Duration::from_millis(100)).await.unwrap(), Polled::Assigned(_)));
        let remaining: usize = by_partition.values().map(|r| r.len() - r.len() / 2).sum();
        let got = collect(c.as_mut(), remaining).await;
        for pos in &commits {
            let first = got.iter().filter(|r| r.partition == pos.partition).map(|r| r.offset).min();
            assert_eq!(first, Some(pos.offset), "partition {} resumes at its committed offset", pos.partition);
        }
        assert_eq!(c.poll(10, Duration::from_millis(50)).await.unwrap(), Polled::Idle);
    }

    #[tokio::test]
    async fn poll_wakes_up_on_a_new_append() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir).await;
        let mut c = log.consumer("g", "in").await.unwrap();
        assert!(matches!(c.poll(10, Duration::from_millis(10)).await.unwrap(), Polled::Assigned(_)));
        let producer = log.producer();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            producer.append("in", vec![rec("a", "1")]).await.unwrap();
        });
        let started = std::time::Instant::now();
        let polled = c.poll(10, Duration::from_secs(5)).await.unwrap();
        assert!(matches!(polled, Polled::Records(ref r) if r.len() == 1), "{polled:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn headers_are_stored_and_one_commit_writes_several_topics() {
        let dir = tempfile::tempdir().unwrap();
        let topics = [
            TopicSpec { name: "in".into(), partitions: 1, compacted: false },
            TopicSpec { name: "out".into(), partitions: 1, compacted: false },
            TopicSpec { name: "dlq".into(), partitions: 1, compacted: false },
        ];
        let log = SqliteLog::open(&dir.path().join("log.db"), &topics).await.unwrap();
        log.append("in", vec![rec("k", "a").with_header("h", "v"), rec("k", "b")]).await.unwrap();
        let read = log.read("in", 0, 0, 10).await.unwrap();
        assert_eq!(read[0].headers, vec![("h".to_string(), "v".to_string())]);
        assert!(read[1].headers.is_empty());
        let mut c = log.sqlite_consumer("g", "in").await.unwrap();
        let outputs = vec![
            ("out".to_string(), vec![rec("k", "x")]),
            ("dlq".to_string(), vec![rec("k", "y").with_header("gm.error", "boom")]),
        ];
        c.commit_with_outputs_to(outputs, &[Position { partition: 0, offset: 2 }]).await.unwrap();
        assert_eq!(c.committed(0).await.unwrap(), Some(2));
        assert_eq!(log.read("out", 0, 0, 10).await.unwrap().len(), 1);
        let dlq = log.read("dlq", 0, 0, 10).await.unwrap();
        assert_eq!(dlq[0].header("gm.error"), Some("boom"));
        // An unknown output topic fails the whole unit: nothing written, nothing committed.
        let bad = vec![("out".to_string(), vec![rec("k", "z")]), ("nope".to_string(), vec![rec("k", "w")])];
        assert!(c.commit_with_outputs_to(bad, &[Position { partition: 0, offset: 2 }]).await.is_err());
        assert_eq!(log.read("out", 0, 0, 10).await.unwrap().len(), 1);
        log.close().await;
    }

    #[tokio::test]
    async fn commit_with_outputs_is_atomic_and_a_stale_commit_is_fenced_with_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir).await;
        log.append("in", (0..10).map(|i| rec("same-key", &i.to_string())).collect()).await.unwrap();
        let p = partition_for("same-key", 3);

        let mut a = log.consumer("g", "in").await.unwrap();
        assert!(matches!(a.poll(10, Duration::from_millis(10)).await.unwrap(), Polled::Assigned(_)));
        let got = collect(a.as_mut(), 10).await;
        assert_eq!(got.len(), 10);
        a.commit_with_outputs("out", vec![rec("o1", "x"), rec("o2", "y")], &[Position { partition: p, offset: 4 }])
            .await
            .unwrap();
        assert_eq!(a.committed(p).await.unwrap(), Some(4));
        assert_eq!(log.end_offsets("out").await.unwrap().iter().sum::<u64>(), 2);

        // Another process (a second handle on the same file) commits in between.
        let other = open(&dir).await;
        let mut b = other.consumer("g", "in").await.unwrap();
        b.commit(&[Position { partition: p, offset: 7 }]).await.unwrap();

        let stale = a.commit_with_outputs("out", vec![rec("o3", "z")], &[Position { partition: p, offset: 10 }]).await;
        assert!(matches!(stale, Err(LogError::Fenced(_))), "{stale:?}");
        assert_eq!(log.end_offsets("out").await.unwrap().iter().sum::<u64>(), 2, "no output written");
        assert_eq!(a.committed(p).await.unwrap(), Some(7), "offset unchanged");
        // b, which saw the stored value, may go on.
        b.commit_with_outputs("out", vec![rec("o3", "z")], &[Position { partition: p, offset: 10 }]).await.unwrap();
        assert_eq!(other.end_offsets("out").await.unwrap().iter().sum::<u64>(), 3);
        assert_eq!(b.committed(p).await.unwrap(), Some(10));
    }

    #[tokio::test]
    async fn a_second_consumer_of_the_same_group_revokes_the_first_and_fences_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir).await;
        log.append("in", vec![rec("k", "1")]).await.unwrap();
        let mut first = log.consumer("g", "in").await.unwrap();
        assert_eq!(first.poll(10, Duration::from_millis(10)).await.unwrap(), Polled::Assigned(vec![0, 1, 2]));
        assert_eq!(collect(first.as_mut(), 1).await.len(), 1);

        let mut second = log.consumer("g", "in").await.unwrap();
        assert_eq!(first.poll(10, Duration::from_millis(10)).await.unwrap(), Polled::Revoked(vec![0, 1, 2]));
        assert_eq!(second.poll(10, Duration::from_millis(10)).await.unwrap(), Polled::Assigned(vec![0, 1, 2]));
        let p = partition_for("k", 3);
        let zombie = first.commit(&[Position { partition: p, offset: 1 }]).await;
        assert!(matches!(zombie, Err(LogError::Fenced(_))), "{zombie:?}");
        assert_eq!(second.committed(p).await.unwrap(), None);
        // The new member reads from the (absent) committed offset, i.e. from 0.
        assert_eq!(collect(second.as_mut(), 1).await[0].offset, 0);
        second.commit(&[Position { partition: p, offset: 1 }]).await.unwrap();
        // Another group is independent.
        let mut other = log.consumer("h", "in").await.unwrap();
        assert!(matches!(other.poll(10, Duration::from_millis(10)).await.unwrap(), Polled::Assigned(_)));
        assert_eq!(second.poll(10, Duration::from_millis(10)).await.unwrap(), Polled::Idle);
    }

    #[tokio::test]
    async fn poll_is_fair_across_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir).await;
        // 100 records on each partition.
        let mut keys: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for i in 0.. {
            let k = format!("k{i}");
            keys.entry(partition_for(&k, 3)).or_default().push(k);
            if keys.values().all(|v| v.len() >= 100) && keys.len() == 3 {
                break;
            }
        }
        for ks in keys.values() {
            log.append("in", ks.iter().take(100).map(|k| rec(k, "v")).collect()).await.unwrap();
        }
        let mut c = log.consumer("g", "in").await.unwrap();
        assert!(matches!(c.poll(30, Duration::from_millis(10)).await.unwrap(), Polled::Assigned(_)));
        let Polled::Records(got) = c.poll(30, Duration::from_millis(100)).await.unwrap() else { panic!("no records") };
        assert_eq!(got.len(), 30);
        for p in 0..3 {
            assert_eq!(got.iter().filter(|r| r.partition == p).count(), 10, "partition {p}");
        }
        // When only one partition has data left, it gets the whole budget.
        log.append("in", (0..50).map(|_| rec(&keys[&1][0], "more")).collect()).await.unwrap();
        c.seek(0, 100);
        c.seek(2, 100);
        c.seek(1, 100);
        let Polled::Records(got) = c.poll(30, Duration::from_millis(100)).await.unwrap() else { panic!("no records") };
        assert_eq!(got.len(), 30);
        assert!(got.iter().all(|r| r.partition == 1));
    }

    #[tokio::test]
    async fn compaction_keeps_the_latest_record_of_each_key_and_the_end_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteLog::open(
            &dir.path().join("log.db"),
            &[spec("in", 3), TopicSpec { name: "recs".into(), partitions: 1, compacted: true }],
        )
        .await
        .unwrap();
        log.append("recs", vec![rec("a", "1"), rec("b", "1"), rec("a", "2"), rec("b", "")]).await.unwrap();
        assert!(log.compact("in").await.is_err(), "not a compacted topic");
        assert_eq!(log.compact("recs").await.unwrap(), 2);
        let left: Vec<(u64, String, Vec<u8>)> =
            log.read("recs", 0, 0, 10).await.unwrap().into_iter().map(|r| (r.offset, r.key, r.payload)).collect();
        assert_eq!(left, vec![(2, "a".into(), b"2".to_vec()), (3, "b".into(), vec![])]);
        assert_eq!(log.end_offsets("recs").await.unwrap(), vec![4]);
        assert_eq!(log.append("recs", vec![rec("c", "1")]).await.unwrap()[0].offset, 4);
    }

    #[tokio::test]
    async fn seek_moves_the_read_position() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir).await;
        log.append("in", (0..5).map(|i| rec("k", &i.to_string())).collect()).await.unwrap();
        let p = partition_for("k", 3);
        let mut c = log.consumer("g", "in").await.unwrap();
        assert!(matches!(c.poll(10, Duration::from_millis(10)).await.unwrap(), Polled::Assigned(_)));
        c.seek(p, 3);
        let got = collect(c.as_mut(), 2).await;
        assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![3, 4]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_from_many_tasks_all_get_distinct_dense_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir).await;
        let tasks = 32;
        let appends = 20;
        let per = 50;
        let started = std::time::Instant::now();
        let mut handles = Vec::new();
        for t in 0..tasks {
            let producer = log.producer();
            handles.push(tokio::spawn(async move {
                let mut positions = Vec::new();
                for a in 0..appends {
                    let records = (0..per).map(|i| rec(&format!("g:t{t}-{i}"), &format!("{t}/{a}/{i}"))).collect();
                    positions.extend(producer.append("in", records).await.unwrap());
                }
                positions
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        let elapsed = started.elapsed();
        let total = tasks * appends * per;
        eprintln!("appended {total} records in {elapsed:?}: {:.0} records/s", total as f64 / elapsed.as_secs_f64());
        assert_eq!(all.len(), total);
        let mut by_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for p in &all {
            by_partition.entry(p.partition).or_default().push(p.offset);
        }
        for (p, mut offsets) in by_partition {
            offsets.sort_unstable();
            assert_eq!(offsets, (0..offsets.len() as u64).collect::<Vec<_>>(), "partition {p}");
        }
        assert_eq!(log.end_offsets("in").await.unwrap().iter().sum::<u64>(), total as u64);
    }
}
