//! # gm-ports
//!
//! The traits that adapters implement, so that domain code never knows whether it runs on
//! the embedded default (SQLite) or on production services (Kafka, PostgreSQL, Redis).
//!
//! The log follows Kafka's model: topics split into partitions, a record's partition chosen
//! by a stable hash of its key (Kafka's own murmur2, so a key lands on the same partition in
//! both implementations), offsets per partition, and consumer groups with committed offsets.
//! `commit_with_outputs` is Kafka's consume-transform-produce transaction: the outputs and
//! the consumed offsets become visible together or not at all.

pub mod dlq;
pub mod namespaced;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// A record to append; the log chooses its partition from the key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewRecord {
    pub key: String,
    pub payload: Vec<u8>,
    /// Record headers (Kafka headers; a JSON column in the embedded log). Usually empty;
    /// dead letters carry their reason here (`gm.error`, `gm.source.*`, ...).
    pub headers: Vec<(String, String)>,
}

impl NewRecord {
    pub fn new(key: impl Into<String>, payload: Vec<u8>) -> Self {
        Self { key: key.into(), payload, headers: Vec::new() }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub key: String,
    pub payload: Vec<u8>,
    pub timestamp: DateTime<Utc>,
    /// The headers the record was appended with (empty when none).
    pub headers: Vec<(String, String)>,
}

impl Record {
    /// The first value of header `name`, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A place in a partition. For commits, `offset` is the next offset to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub partition: u32,
    pub offset: u64,
}

/// The cause of a port error: the adapter's own error (a driver's, a client's), kept as the
/// error's source so that logs and callers see the whole chain; or a message where the
/// adapter has nothing more than that. Cloneable (errors are handed to several waiters) and
/// compared by its text.
#[derive(Clone)]
pub struct Cause(std::sync::Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(error))
    }

    /// `error` met while doing `what`: shown as "what: error", the error kept as the source.
    pub fn context(what: impl Into<String>, error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(Context { what: what.into(), error: Box::new(error) })
    }
}

/// An error with what was being done when it happened.
#[derive(Debug)]
struct Context {
    what: String,
    error: Box<dyn std::error::Error + Send + Sync>,
}

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.error)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.error)
    }
}

/// A cause that is a message only.
struct Message(String);

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Self::new(Message(message))
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        Self::from(message.to_string())
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Transparent: the error it holds, and that error's own source.
impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Cause {}
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The log cannot take or give records now; the caller may retry (HTTP 503).
    #[error("log unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// Another consumer committed in between (a rebalance); re-read the committed offsets.
    #[error("fenced: {0}")]
    Fenced(#[source] Cause),
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("log error: {0}")]
    Other(#[source] Cause),
}

impl LogError {
    pub fn unavailable(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Cause::new(cause))
    }

    pub fn other(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Other(Cause::new(cause))
    }
}

/// Appends records durably.
#[async_trait]
pub trait LogProducer: Send + Sync {
    /// Returns once every record is durable (acks=all), with positions in input order.
    async fn append(&self, topic: &str, records: Vec<NewRecord>) -> Result<Vec<Position>, LogError>;
}

/// What a poll brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled {
    /// These partitions are now ours: recover them, then seek.
    Assigned(Vec<u32>),
    /// These partitions are no longer ours: stop and forget them.
    Revoked(Vec<u32>),
    /// Records of assigned partitions, each partition in offset order.
    Records(Vec<Record>),
    /// Nothing new within the timeout.
    Idle,
}

/// A member of a consumer group on one topic.
#[async_trait]
pub trait LogConsumer: Send {
    async fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Polled, LogError>;
    /// Next reads of `partition` start at `offset`.
    fn seek(&mut self, partition: u32, offset: u64);
    /// The group's committed next offset for `partition`.
    async fn committed(&self, partition: u32) -> Result<Option<u64>, LogError>;
    /// Commits the group's next offsets.
    async fn commit(&mut self, offsets: &[Position]) -> Result<(), LogError>;
    /// Appends `records` to `topic` and commits `offsets` atomically.
    async fn commit_with_outputs(
        &mut self,
        topic: &str,
        records: Vec<NewRecord>,
        offsets: &[Position],
    ) -> Result<(), LogError> {
        self.commit_with_outputs_to(vec![(topic.to_string(), records)], offsets).await
    }
    /// Appends each `(topic, records)` and commits `offsets`, all in one atomic unit (one
    /// Kafka transaction; one SQLite transaction): e.g. the processed events and the dead
    /// letters of a batch together with its consumed offsets.
    async fn commit_with_outputs_to(
        &mut self,
        outputs: Vec<(String, Vec<NewRecord>)>,
        offsets: &[Position],
    ) -> Result<(), LogError>;
}

/// Configuration of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub compacted: bool,
}

/// The log itself: topics, producers, consumers.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Creates missing topics; existing ones are left as they are.
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), LogError>;
    fn producer(&self) -> Arc<dyn LogProducer>;
    async fn consumer(&self, group: &str, topic: &str) -> Result<Box<dyn LogConsumer>, LogError>;
    /// Next offset to be written, per partition (index = partition).
    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, LogError>;
    /// Reads records of one partition from `from`, at most `max` (for tools and rebuilds).
    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<Record>, LogError>;
}

/// Kafka's default partitioner: murmur2 of the key, made positive, modulo the partition count.
pub fn partition_for(key: &str, partitions: u32) -> u32 {
    (murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions.max(1)
}

/// Kafka's murmur2 (seed 0x9747b28c), byte for byte as `org.apache.kafka.common.utils.Utils`.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// A checkpoint moved under us: another worker applied this batch first.
    #[error("checkpoint conflict: expected {expected:?}, found {found:?}")]
    Conflict { expected: Option<u64>, found: Option<u64> },
    #[error("store error: {0}")]
    Other(#[source] Cause),
}

impl StoreError {
    pub fn unavailable(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Cause::new(cause))
    }

    pub fn other(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Other(Cause::new(cause))
    }
}

/// Short-lived facts that every gateway of a deployment must share (Redis when configured):
/// which request signatures were already used, so a captured request cannot be replayed
/// through another gateway.
#[async_trait]
pub trait SharedClaims: Send + Sync {
    /// Claims `key` for `ttl`: `Ok(true)` the first time, `Ok(false)` while an earlier claim
    /// of it lives. Atomic across every caller.
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, StoreError>;
}

/// Counters every gateway of a deployment adds to (Redis when configured): the shared rate
/// limits.
#[async_trait]
pub trait SharedCounters: Send + Sync {
    /// Adds each `(name, n)` to its counter (created to expire after `ttl`) and returns the
    /// counters' new values, in order, in one round trip. The names of one call must share a
    /// Redis Cluster hash tag (`{...}`).
    async fn add(&self, counts: &[(String, u64)], ttl: Duration) -> Result<Vec<u64>, StoreError>;
}

/// Snapshots of player state, per partition of `player.events.raw`.
///
/// A partition's watermark is the raw offset that every snapshot of that partition reflects
/// (all events before it): each `save` holds every player changed since the previous save,
/// so recovery = load the watermark, replay from it, loading a player's snapshot on first use.
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    async fn watermark(&self, partition: u32) -> Result<Option<u64>, StoreError>;
    async fn load_many(&self, keys: &[String]) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Saves `players` and moves the partition's watermark from `expected` to `next_offset`,
    /// atomically. Fails with [`StoreError::Conflict`] (saving nothing) when the stored
    /// watermark is not `expected`: the store went back in time (restored from a backup, a
    /// failover that lost recent commits) or another process saved this partition, so the
    /// snapshots the caller believes saved may be gone and it must recover from the store.
    async fn save(
        &self,
        partition: u32,
        expected: Option<u64>,
        next_offset: u64,
        players: Vec<(String, Vec<u8>)>,
    ) -> Result<(), StoreError>;
    /// How many snapshots are stored (for tools and tests).
    async fn count(&self) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    /// The adapter's error stays reachable as the source, under the same message as before.
    #[test]
    fn a_port_error_keeps_its_cause() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = StoreError::unavailable(refused());
        assert_eq!(e.to_string(), "store unavailable: connection refused");
        let io = e.source().and_then(|c| c.downcast_ref::<Cause>()).map(|c| c.to_string());
        assert_eq!(io.as_deref(), Some("connection refused"));

        let e = LogError::Unavailable(Cause::context("consumer of t in group g", refused()));
        assert_eq!(e.to_string(), "log unavailable: consumer of t in group g: connection refused");
        let cause = e.source().and_then(Error::source).expect("the io error under the context");
        assert_eq!(
            cause.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionRefused)
        );

        // A message alone compares and prints as the text did.
        assert_eq!(StoreError::Other("t".into()), StoreError::Other(Cause::from("t".to_string())));
        assert_eq!(format!("{:?}", LogError::Fenced("stale".into())), "Fenced(\"stale\")");
    }

    #[test]
    fn murmur2_matches_kafka_reference_values() {
        // Values from Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 5] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input) as i32, expected, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        for n in 1..20 {
            let p = partition_for("space-race:player-1", n);
            assert!(p < n);
            assert_eq!(p, partition_for("space-race:player-1", n));
        }
    }
}
