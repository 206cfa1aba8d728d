//! [`RedisCache`]: a Redis client that never takes the platform down with it.
//!
//! * **Starts without Redis.** Construction never connects on the caller's path: the first
//!   operation (or [`RedisCache::connect`], which tries once, bounded) starts a background
//!   connection attempt, repeated at most every `reconnect_interval` while Redis is down.
//!   Until it succeeds, operations fail fast with [`CacheError::NotConnected`].
//! * **Reconnects by itself.** Once connected, a `redis::aio::ConnectionManager` (one
//!   multiplexed connection shared by every clone of the cache) re-establishes a dropped
//!   connection in the background. In cluster mode (`cluster = true`) a
//!   `redis::cluster_async::ClusterConnection` holds one multiplexed connection per node,
//!   reconnects to a node that dropped, and re-reads the slot map when a node answers
//!   `MOVED` (after a failover or resharding); the breaker below replaces it altogether
//!   (fresh topology from the seed nodes) when it keeps failing.
//! * **Bounded.** Every round trip is bounded by `op_timeout` (bulk ones by `op_timeout`
//!   per started 1,000 keys). After `breaker_threshold` consecutive failures the
//!   connection is dropped (a hung connection does not recover by itself) and read/write
//!   operations are skipped for `breaker_cooldown`, so a sick Redis costs requests
//!   nothing but a failed atomic check. Deletions (invalidation, erasure) ignore the
//!   breaker: they must really be attempted, and they report failure to their caller.
//! * **Quiet.** Errors are counted ([`RedisCache::stats`]) and logged at most once per
//!   `error_log_interval`, with the number of errors since the last log line.
//!
//! Keys are given relative to the deployment's `key_prefix`.
//!
//! ## Cluster mode: one key format, hash tags
//! A Redis Cluster spreads keys over its masters by hash slot ([`key_slot`]); a command or
//! transaction that names several keys must keep them in one slot. So the keys that an
//! atomic operation names together share a *hash tag* (`{…}`: only that part is hashed), in
//! both modes alike, so that there is one key format: a player's profile, recommendation
//! lists and erasure marker share `{game:h}` (`h` = 16 hex digits of the SHA-256 of the
//! player id, since the marker must not name the player), a leaderboard's sorted set and its
//! marker share `{game:board:period:start}`. [`RedisCache::set_unless_marked`] and
//! [`RedisCache::mark_and_delete`] refuse keys of different slots in both modes, so a key
//! builder that forgets its tag fails every test, not only the cluster ones. Everything else
//! works key by key: `set_many` sends one pipeline per slot, all at once (single node: one
//! pipeline), deletions one UNLINK per slot; `delete_prefix` SCANs every master (the slot
//! owners of `CLUSTER SLOTS`); `health` PINGs every master.
//! `key_prefix` must not contain `{` in cluster mode, or every key lands in one slot.

use crate::config::RedisConfig;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Why a cache operation did not happen. Callers on a request path treat every variant as
/// a miss; erasure treats every variant as "retry later".
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis not connected (connecting in the background)")]
    NotConnected,
    #[error("redis bypassed: too many consecutive failures (circuit open)")]
    CircuitOpen,
    #[error("redis operation timed out after {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("refused: {0}")]
    Refused(&'static str),
}

/// Counters since start (for metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Operations that failed with a Redis error (including connection errors).
    pub errors: u64,
    /// Operations that exceeded their timeout.
    pub timeouts: u64,
    /// Operations not attempted: not connected yet, or circuit open.
    pub skipped: u64,
    /// Successful connection establishments (1 normally; more after a circuit reset).
    pub connects: u64,
    /// Whether a connection (manager) is currently held.
    pub connected: bool,
}

/// How the cache reaches Redis: one server, or a cluster through its seed nodes.
enum Client {
    Single(redis::Client),
    Cluster(ClusterClient),
}

/// A connection of either kind, shared by clones. It implements `ConnectionLike`, so every
/// command and pipeline runs on it unchanged; in cluster mode the client routes each one to
/// the master of its slot.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipe: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipe, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipe, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Runs `cmd` on one cluster node (`Some(node)`), or as usual (`None`, and single mode).
    async fn query_on(&mut self, node: Option<&Node>, cmd: &Cmd) -> RedisResult<Value> {
        match (self, node) {
            (Conn::Cluster(c), Some((host, port))) => {
                let to = SingleNodeRoutingInfo::ByAddress { host: host.clone(), port: *port };
                c.route_command(cmd, RoutingInfo::SingleNode(to)).await
            }
            (con, _) => cmd.query_async(con).await,
        }
    }
}

/// A cluster node's address as the cluster announces it (`CLUSTER SLOTS`).
type Node = (String, u16);

/// Retries of one command inside the cluster client (following a `MOVED`/`ASK` redirect,
/// reconnecting to a node, `TRYAGAIN`), each after at most `op_timeout`; the whole command
/// stays bounded by `op_timeout` like every other.
const CLUSTER_RETRIES: u32 = 3;

/// Number of hash slots of a Redis Cluster.
pub const CLUSTER_SLOTS: u16 = 16_384;

/// The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag — the part between
/// the first `{` and the first `}` after it, when not empty — or of the whole key, modulo
/// 16,384 (as `CLUSTER KEYSLOT`).
pub fn key_slot(key: &[u8]) -> u16 {
    let tag = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.iter().position(|&b| b == b'}').filter(|&close| close > 0).map(|close| &rest[..close])
    });
    crc16_xmodem(tag.unwrap_or(key)) % CLUSTER_SLOTS
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// Whether all `keys` hash to one slot (so that one script or MULTI may name them together).
fn one_slot<'a>(mut keys: impl Iterator<Item = &'a str>) -> bool {
    match keys.next() {
        None => true,
        Some(first) => {
            let slot = key_slot(first.as_bytes());
            keys.all(|k| key_slot(k.as_bytes()) == slot)
        }
    }
}

const CROSS_SLOT: &str = "the keys of one atomic operation must share a hash tag (one cluster slot)";

/// A cheap-to-clone handle; clones share the connection, counters and breaker.
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: RedisConfig,
    client: Client,
    manager: RwLock<Option<Conn>>,
    connecting: AtomicBool,
    epoch: Instant,
    /// Milliseconds since `epoch` before which no new background connect starts.
    next_connect_ms: AtomicU64,
    consecutive_failures: AtomicU32,
    /// Milliseconds since `epoch` until which the circuit is open.
    open_until_ms: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    skipped: AtomicU64,
    connects: AtomicU64,
    /// Milliseconds since `epoch` of the last error log line; `u64::MAX` = never.
    last_log_ms: AtomicU64,
    unlogged: AtomicU64,
}

/// Keys per SCAN step and per UNLINK in `delete_prefix`.
const SCAN_BATCH: usize = 1_000;

impl RedisCache {
    /// A cache for `cfg`. Does not connect (and cannot fail because Redis is down); fails
    /// only on a malformed URL (or several URLs without `cluster`). The connection is made
    /// in the background on first use.
    pub fn new(cfg: RedisConfig) -> Result<Self, CacheError> {
        let client = open_client(&cfg)?;
        if cfg.cluster && cfg.key_prefix.contains('{') {
            tracing::warn!(key_prefix = %cfg.key_prefix, "redis key_prefix contains '{{': in cluster mode every key then hashes to one slot (one master)");
        }
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                client,
                manager: RwLock::new(None),
                connecting: AtomicBool::new(false),
                epoch: Instant::now(),
                next_connect_ms: AtomicU64::new(0),
                consecutive_failures: AtomicU32::new(0),
                open_until_ms: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                timeouts: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
                connects: AtomicU64::new(0),
                last_log_ms: AtomicU64::new(u64::MAX),
                unlogged: AtomicU64::new(0),
            }),
        })
    }

    /// Like [`new`](Self::new), then tries once to connect (bounded by `connect_timeout`).
    /// Still returns the cache when Redis is down: it keeps connecting in the background.
    pub async fn connect(cfg: RedisConfig) -> Result<Self, CacheError> {
        let cache = Self::new(cfg)?;
        if cache.connect_now().await.is_none() {
            tracing::warn!(url = %redact(&cache.inner.cfg.url), "redis unreachable at start; cache degraded, connecting in the background");
        }
        Ok(cache)
    }

    pub fn config(&self) -> &RedisConfig {
        &self.inner.cfg
    }

    /// Whether this cache speaks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.client, Client::Cluster(_))
    }

    /// `key_prefix` + `key`.
    pub fn full_key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.inner.cfg.key_prefix.len() + key.len());
        k.push_str(&self.inner.cfg.key_prefix);
        k.push_str(key);
        k
    }

    pub fn stats(&self) -> CacheStats {
        let i = &self.inner;
        CacheStats {
            errors: i.errors.load(Ordering::Relaxed),
            timeouts: i.timeouts.load(Ordering::Relaxed),
            skipped: i.skipped.load(Ordering::Relaxed),
            connects: i.connects.load(Ordering::Relaxed),
            connected: i.manager.read().map(|m| m.is_some()).unwrap_or(false),
        }
    }

    /// Readiness probe: `true` when a PING answered within `op_timeout`. Ignores the
    /// circuit breaker (it reports the truth), and starts a connection attempt when there
    /// is none. A `false` means "cache degraded", not "not ready": every query still
    /// answers from the store.
    ///
    /// In cluster mode: every master (each slot owner in `CLUSTER SLOTS`, as the cluster
    /// says now) answered PING, so `false` while a master is down and its replica has not
    /// taken over yet (its slots are not served).
    pub async fn health(&self) -> bool {
        let Some(con) = self.current() else {
            self.spawn_connect();
            return false;
        };
        let timeout = self.inner.cfg.op_timeout();
        let ping = async move {
            let mut con = con;
            let masters = match &con {
                Conn::Single(_) => vec![None],
                Conn::Cluster(_) => {
                    let slots = redis::cmd("CLUSTER").arg("SLOTS").query_async::<Value>(&mut con).await?;
                    slot_owners(&slots)?.into_iter().map(Some).collect()
                }
            };
            let pongs = futures::future::try_join_all(masters.into_iter().map(|node| {
                let mut con = con.clone();
                async move {
                    redis::from_owned_redis_value::<String>(con.query_on(node.as_ref(), &redis::cmd("PING")).await?)
                }
            }))
            .await?;
            RedisResult::Ok(pongs.iter().all(|p| p == "PONG"))
        };
        matches!(tokio::time::timeout(timeout, ping).await, Ok(Ok(true)))
    }

    /// The value at `key`, or `None` when absent.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let k = self.full_key(key);
        self.run("get", self.inner.cfg.op_timeout(), Mode::Fast, move |mut con| async move {
            redis::cmd("GET").arg(k).query_async::<Option<Vec<u8>>>(&mut con).await
        })
        .await
    }

    /// Sets every `(key, value)` with the TTL `ttl`, in one pipelined round trip
    /// (`SET key value PX ttl` × n). A zero TTL means "do not cache": nothing is sent.
    pub async fn set_many<K: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        entries: &[(K, V)],
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let ms = ttl.as_millis() as u64;
        if entries.is_empty() || ms == 0 {
            return Ok(());
        }
        // Single node: one pipeline. Cluster: one pipeline per slot (a pipeline goes to one
        // node, and the server refuses one naming several slots), all sent at once.
        let mut pipes: BTreeMap<u16, Pipeline> = BTreeMap::new();
        let cluster = self.is_cluster();
        for (k, v) in entries {
            let key = self.full_key(k.as_ref());
            let slot = if cluster { key_slot(key.as_bytes()) } else { 0 };
            pipes.entry(slot).or_default().cmd("SET").arg(key).arg(v.as_ref()).arg("PX").arg(ms).ignore();
        }
        self.run("set_many", self.bulk_timeout(entries.len()), Mode::Fast, move |con| async move {
            futures::future::try_join_all(pipes.into_values().map(|pipe| {
                let mut con = con.clone();
                async move { pipe.exec_async(&mut con).await }
            }))
            .await
            .map(|_| ())
        })
        .await
    }

    /// Deletes `keys` (UNLINK: freed off the main thread) in one round trip; returns how
    /// many existed. Attempted even when the circuit is open; failures are returned.
    pub async fn delete_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<u64, CacheError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let full = keys.iter().map(|k| self.full_key(k.as_ref()).into_bytes()).collect();
        self.unlink("delete_many", full).await
    }

    /// UNLINK of full keys, attempted even when the circuit is open: one command on a
    /// single node; in cluster mode one per slot, all at once. (The cluster client would
    /// split a multi-slot UNLINK by itself, but it silently leaves out the keys of a node it
    /// holds no connection to; a deletion must fail instead.)
    async fn unlink(&self, what: &'static str, keys: Vec<Vec<u8>>) -> Result<u64, CacheError> {
        let timeout = self.bulk_timeout(keys.len());
        let cluster = self.is_cluster();
        let mut commands: BTreeMap<u16, Cmd> = BTreeMap::new();
        for key in keys {
            let slot = if cluster { key_slot(&key) } else { 0 };
            commands.entry(slot).or_insert_with(|| redis::cmd("UNLINK")).arg(key);
        }
        self.run(what, timeout, Mode::Must, move |con| async move {
            let counts = futures::future::try_join_all(commands.into_values().map(|cmd| {
                let mut con = con.clone();
                async move { cmd.query_async::<u64>(&mut con).await }
            }))
            .await?;
            Ok(counts.into_iter().sum())
        })
        .await
    }

    /// Deletes every key starting with `key_prefix` + `prefix` (SCAN + UNLINK in batches of
    /// 1,000; each round trip bounded by `op_timeout`), returning how many were deleted.
    /// Never reaches beyond this deployment's `key_prefix`; refuses an empty overall prefix.
    /// In cluster mode it SCANs every master (the owners of the slots in `CLUSTER SLOTS`);
    /// a master that does not answer fails the call (erasure retries), never skips it.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, CacheError> {
        let full = self.full_key(prefix);
        if full.is_empty() {
            return Err(CacheError::Refused("delete_prefix with an empty prefix would empty the database"));
        }
        let pattern = format!("{}*", glob_escape(&full));
        let nodes: Vec<Option<Node>> =
            if self.is_cluster() { self.primaries().await?.into_iter().map(Some).collect() } else { vec![None] };
        let mut deleted = 0;
        for node in nodes {
            deleted += self.delete_matching(node, &pattern).await?;
        }
        Ok(deleted)
    }

    /// The masters of the cluster: the nodes that own slots, as `CLUSTER SLOTS` says now.
    async fn primaries(&self) -> Result<Vec<Node>, CacheError> {
        self.run("cluster_slots", self.inner.cfg.op_timeout(), Mode::Must, move |mut con| async move {
            let slots = redis::cmd("CLUSTER").arg("SLOTS").query_async::<Value>(&mut con).await?;
            slot_owners(&slots)
        })
        .await
    }

    /// SCAN + UNLINK of `pattern` on one node (cluster) or on the server.
    async fn delete_matching(&self, node: Option<Node>, pattern: &str) -> Result<u64, CacheError> {
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(SCAN_BATCH);
            let node = node.clone();
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .run("delete_prefix.scan", self.inner.cfg.op_timeout(), Mode::Must, move |mut con| async move {
                    redis::from_owned_redis_value(con.query_on(node.as_ref(), &scan).await?)
                })
                .await?;
            if !keys.is_empty() {
                deleted += self.unlink("delete_prefix.unlink", keys).await?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// `SET key 1 NX PX ttl`: whether `key` was absent (and is now set). One round trip,
    /// atomic on the server, so two gateways claiming the same key get one `true`.
    pub async fn set_absent(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        let ms = (ttl.as_millis() as u64).max(1);
        let key = self.full_key(key);
        self.run("set_absent", self.inner.cfg.op_timeout(), Mode::Fast, move |mut con| async move {
            let set: Option<String> =
                redis::cmd("SET").arg(key).arg(1u8).arg("NX").arg("PX").arg(ms).query_async(&mut con).await?;
            Ok(set.is_some())
        })
        .await
    }

    /// `SET key value PX ttl` unless `marker` exists (atomically, one round trip). Returns
    /// whether the value was written. Used for values that an erasure must be able to
    /// keep out: see [`mark_and_delete`](Self::mark_and_delete).
    pub async fn set_unless_marked(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        marker: &str,
    ) -> Result<bool, CacheError> {
        const SCRIPT: &str = "if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end \
                              redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1";
        let ms = ttl.as_millis() as u64;
        if ms == 0 {
            return Ok(false);
        }
        let (key, marker) = (self.full_key(key), self.full_key(marker));
        if !one_slot([key.as_str(), marker.as_str()].into_iter()) {
            return Err(CacheError::Refused(CROSS_SLOT));
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SCRIPT).arg(2).arg(key).arg(marker).arg(value).arg(ms);
        self.run("set_unless_marked", self.inner.cfg.op_timeout(), Mode::Fast, move |mut con| async move {
            cmd.query_async::<i64>(&mut con).await.map(|n| n == 1)
        })
        .await
    }

    /// Sets `marker` for `marker_ttl` and deletes `keys`, atomically (MULTI/EXEC). After
    /// it returns `Ok`, no [`set_unless_marked`](Self::set_unless_marked) naming `marker`
    /// writes anything until the marker expires. Returns how many keys existed. The keys and
    /// the marker must share a hash tag (refused otherwise, in both modes).
    pub async fn mark_and_delete<K: AsRef<str>>(
        &self,
        keys: &[K],
        marker: &str,
        marker_ttl: Duration,
    ) -> Result<u64, CacheError> {
        let marker = self.full_key(marker);
        let keys: Vec<String> = keys.iter().map(|k| self.full_key(k.as_ref())).collect();
        if !one_slot(std::iter::once(marker.as_str()).chain(keys.iter().map(String::as_str))) {
            return Err(CacheError::Refused(CROSS_SLOT));
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("SET").arg(marker).arg(1).arg("PX").arg(marker_ttl.as_millis().max(1) as u64).ignore();
        let mut unlink = redis::cmd("UNLINK");
        for k in &keys {
            unlink.arg(k);
        }
        if !keys.is_empty() {
            pipe.add_command(unlink);
        }
        let timeout = self.bulk_timeout(keys.len());
        let has_keys = !keys.is_empty();
        self.run("mark_and_delete", timeout, Mode::Must, move |mut con| async move {
            if has_keys {
                pipe.query_async::<(u64,)>(&mut con).await.map(|(n,)| n)
            } else {
                pipe.exec_async(&mut con).await.map(|()| 0)
            }
        })
        .await
    }

    /// Runs a pipeline of full keys (see [`full_key`](Self::full_key)) in one round trip,
    /// bounded by `op_timeout`, skipped while the circuit is open (reads and cache fills).
    /// In cluster mode every key of the pipeline must be in one slot (share a hash tag).
    pub async fn query_pipe<T: redis::FromRedisValue + Send + 'static>(
        &self,
        what: &'static str,
        pipe: redis::Pipeline,
    ) -> Result<T, CacheError> {
        self.run(what, self.inner.cfg.op_timeout(), Mode::Fast, move |mut con| async move {
            pipe.query_async::<T>(&mut con).await
        })
        .await
    }

    // ---- machinery ----

    fn bulk_timeout(&self, n: usize) -> Duration {
        self.inner.cfg.op_timeout() * (1 + (n / 1_000) as u32)
    }

    fn now_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64
    }

    fn current(&self) -> Option<Conn> {
        self.inner.manager.read().ok().and_then(|m| m.clone())
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        // No retry loop inside the manager: a refused connection fails at once (start-up
        // with Redis down returns immediately). Retrying is ours: after a drop, the next
        // request makes the manager reconnect; while down, the breaker and
        // `reconnect_interval` pace the attempts. Per-request bounds are our tokio timeouts.
        ConnectionManagerConfig::new()
            .set_connection_timeout(self.inner.cfg.connect_timeout())
            .set_number_of_retries(0)
            .set_max_delay(self.inner.cfg.reconnect_interval_ms.max(1))
    }

    /// A new connection: a connection manager, or a cluster connection (which connects to
    /// the seed nodes, reads the slot map and connects to every node in it).
    async fn open(&self) -> RedisResult<Conn> {
        match &self.inner.client {
            Client::Single(client) => {
                ConnectionManager::new_with_config(client.clone(), self.manager_config()).await.map(Conn::Single)
            }
            Client::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
        }
    }

    /// Connects now (bounded by `connect_timeout`) unless already connected.
    async fn connect_now(&self) -> Option<Conn> {
        if let Some(m) = self.current() {
            return Some(m);
        }
        match tokio::time::timeout(self.inner.cfg.connect_timeout(), self.open()).await {
            Ok(Ok(m)) => {
                let mut slot = self.inner.manager.write().unwrap_or_else(|e| e.into_inner());
                if slot.is_none() {
                    *slot = Some(m);
                    self.inner.connects.fetch_add(1, Ordering::Relaxed);
                    self.inner.consecutive_failures.store(0, Ordering::Relaxed);
                    tracing::info!(url = %redact(&self.inner.cfg.url), "redis cache connected");
                }
                slot.clone()
            }
            Ok(Err(e)) => {
                self.report("connect", &CacheError::Redis(e));
                None
            }
            Err(_) => {
                self.report("connect", &CacheError::Timeout(self.inner.cfg.connect_timeout()));
                None
            }
        }
    }

    /// Starts one background connection attempt unless one is running or the last failed
    /// less than `reconnect_interval` ago. Needs a tokio runtime (every caller is async).
    fn spawn_connect(&self) {
        let now = self.now_ms();
        if now < self.inner.next_connect_ms.load(Ordering::Relaxed) {
            return;
        }
        if self.inner.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if this.connect_now().await.is_none() {
                let next = this.now_ms() + this.inner.cfg.reconnect_interval().as_millis() as u64;
                this.inner.next_connect_ms.store(next, Ordering::Relaxed);
            }
            this.inner.connecting.store(false, Ordering::Release);
        });
    }

    async fn run<T, F, Fut>(&self, what: &'static str, timeout: Duration, mode: Mode, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let con = match mode {
            Mode::Fast => {
                if self.now_ms() < self.inner.open_until_ms.load(Ordering::Relaxed) {
                    self.inner.skipped.fetch_add(1, Ordering::Relaxed);
                    return Err(CacheError::CircuitOpen);
                }
                match self.current() {
                    Some(c) => c,
                    None => {
                        self.spawn_connect();
                        self.inner.skipped.fetch_add(1, Ordering::Relaxed);
                        return Err(CacheError::NotConnected);
                    }
                }
            }
            Mode::Must => match self.connect_now().await {
                Some(c) => c,
                None => return Err(CacheError::NotConnected),
            },
        };
        let result = match tokio::time::timeout(timeout, op(con)).await {
            Ok(Ok(v)) => {
                self.inner.consecutive_failures.store(0, Ordering::Relaxed);
                return Ok(v);
            }
            Ok(Err(e)) => CacheError::Redis(e),
            Err(_) => CacheError::Timeout(timeout),
        };
        self.report(what, &result);
        let failures = self.inner.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.inner.cfg.breaker_threshold.max(1) {
            self.trip();
        }
        Err(result)
    }

    /// Opens the circuit and drops the connection: a hung connection (server stopped
    /// answering without closing) is never replaced by the manager itself.
    fn trip(&self) {
        let until = self.now_ms() + self.inner.cfg.breaker_cooldown().as_millis() as u64;
        self.inner.open_until_ms.store(until, Ordering::Relaxed);
        self.inner.next_connect_ms.store(until, Ordering::Relaxed);
        self.inner.consecutive_failures.store(0, Ordering::Relaxed);
        if let Ok(mut slot) = self.inner.manager.write() {
            *slot = None;
        }
    }

    /// Counts the error and logs it, at most once per `error_log_interval`.
    fn report(&self, what: &'static str, err: &CacheError) {
        let i = &self.inner;
        match err {
            CacheError::Timeout(_) => i.timeouts.fetch_add(1, Ordering::Relaxed),
            _ => i.errors.fetch_add(1, Ordering::Relaxed),
        };
        let now = self.now_ms();
        let last = i.last_log_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= i.cfg.error_log_interval().as_millis() as u64;
        if due && i.last_log_ms.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            let unlogged = i.unlogged.swap(0, Ordering::Relaxed);
            tracing::warn!(operation = what, error = %err, errors_not_logged = unlogged, "redis cache degraded");
        } else {
            i.unlogged.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Shared counters: `INCRBY` and `PEXPIRE` per counter, all in one pipeline.
#[async_trait::async_trait]
impl gm_ports::SharedCounters for RedisCache {
    async fn add(&self, counts: &[(String, u64)], ttl: Duration) -> Result<Vec<u64>, gm_ports::StoreError> {
        if counts.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = counts.iter().map(|(name, _)| self.full_key(name)).collect();
        if !one_slot(names.iter().map(String::as_str)) {
            return Err(gm_ports::StoreError::Other(CROSS_SLOT.into()));
        }
        let ms = (ttl.as_millis() as u64).max(1);
        let mut pipe = redis::pipe();
        for (name, (_, n)) in names.iter().zip(counts) {
            pipe.cmd("INCRBY").arg(name).arg(*n).cmd("PEXPIRE").arg(name).arg(ms).ignore();
        }
        self.query_pipe::<Vec<u64>>("shared_counters", pipe).await.map_err(gm_ports::StoreError::unavailable)
    }
}

/// Claims live in Redis so that every gateway sees them (see [`gm_ports::SharedClaims`]).
#[async_trait::async_trait]
impl gm_ports::SharedClaims for RedisCache {
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, gm_ports::StoreError> {
        self.set_absent(key, ttl).await.map_err(gm_ports::StoreError::unavailable)
    }
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("url", &redact(&self.inner.cfg.url))
            .field("key_prefix", &self.inner.cfg.key_prefix)
            .field("stats", &self.stats())
            .finish()
    }
}

#[derive(Clone, Copy)]
enum Mode {
    /// Request path: skipped when not connected or circuit open.
    Fast,
    /// Invalidation/erasure: connects if needed and ignores the breaker.
    Must,
}

/// The client for `cfg`: one server, or a cluster through its seed nodes. Inside the cluster
/// client, retries (redirects, reconnects) wait a few milliseconds, not the crate's default
/// 1.28 s and more: an operation is bounded by `op_timeout` anyway.
///
/// TLS: `rediss://` URLs (all seed URLs or none); the server certificate is verified against
/// the webpki roots, or against the CAs of `tls_ca_file` only (refused without `rediss://`).
fn open_client(cfg: &RedisConfig) -> RedisResult<Client> {
    let urls = cfg.urls();
    if !cfg.cluster && urls.len() > 1 {
        return Err(RedisError::from((
            ErrorKind::InvalidClientConfig,
            "redis url lists several nodes: set cluster = true (GM_REDIS__CLUSTER=true) for a Redis Cluster",
        )));
    }
    let mut tls_urls = 0;
    for url in &urls {
        let info = redis::IntoConnectionInfo::into_connection_info(*url)?;
        if matches!(info.addr, redis::ConnectionAddr::TcpTls { .. }) {
            tls_urls += 1;
        }
        if cfg.cluster && info.redis.db != 0 {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "a Redis Cluster has database 0 only: drop the /<db> of the seed URLs",
            )));
        }
    }
    if tls_urls != 0 && tls_urls != urls.len() {
        return Err(RedisError::from((
            ErrorKind::InvalidClientConfig,
            "redis seed URLs mix rediss:// (TLS) and redis://: use rediss:// for every one or for none",
        )));
    }
    let tls = tls_urls != 0;
    let certs = match &cfg.tls_ca_file {
        Some(_) if !tls => {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "redis tls_ca_file (GM_REDIS__TLS_CA_FILE) is set but the url is not rediss://: \
                 use rediss:// URLs (TLS) or unset tls_ca_file",
            )));
        }
        Some(path) => Some(redis::TlsCertificates { client_tls: None, root_cert: Some(read_ca_file(path)?) }),
        None => None,
    };
    if tls {
        // rustls's process-wide crypto provider: ring, the one this crate enables. (Done
        // explicitly so that another crate enabling a second provider cannot leave rustls
        // without a default; an already installed provider is kept.)
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    if !cfg.cluster {
        return match certs {
            Some(certs) => redis::Client::build_with_tls(cfg.url.trim(), certs),
            None => redis::Client::open(cfg.url.trim()),
        }
        .map(Client::Single);
    }
    let mut builder = ClusterClientBuilder::new(urls)
        .connection_timeout(cfg.connect_timeout())
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(1)
        .max_retry_wait(cfg.op_timeout_ms.max(2));
    if let Some(certs) = certs {
        builder = builder.certs(certs);
    }
    builder.build().map(Client::Cluster)
}

/// The PEM bundle of root CAs at `path`, refused unless it holds at least one certificate
/// (an empty trust store would fail every connection later, and less clearly).
fn read_ca_file(path: &str) -> RedisResult<Vec<u8>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let invalid = |detail: String| RedisError::from((ErrorKind::InvalidClientConfig, "redis tls_ca_file", detail));
    let pem = std::fs::read(path).map_err(|e| invalid(format!("cannot read {path}: {e}")))?;
    let mut certs = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| invalid(format!("{path}: not a PEM certificate bundle: {e}")))?;
        certs += 1;
    }
    if certs == 0 {
        return Err(invalid(format!("{path} holds no PEM certificate")));
    }
    Ok(pem)
}

/// The masters in a `CLUSTER SLOTS` reply: `[[start, end, [ip, port, id, ...], replicas...], ...]`.
fn slot_owners(reply: &Value) -> RedisResult<Vec<Node>> {
    let bad = || RedisError::from((ErrorKind::TypeError, "unexpected CLUSTER SLOTS reply"));
    let Value::Array(ranges) = reply else { return Err(bad()) };
    let mut owners = BTreeSet::new();
    for range in ranges {
        let Value::Array(range) = range else { return Err(bad()) };
        let Some(Value::Array(master)) = range.get(2) else { return Err(bad()) };
        let (Some(host), Some(port)) = (master.first(), master.get(1)) else { return Err(bad()) };
        let host: String = redis::from_redis_value(host)?;
        if host.is_empty() {
            return Err(RedisError::from((ErrorKind::ClientError, "a cluster master has no address in CLUSTER SLOTS")));
        }
        owners.insert((host, redis::from_redis_value::<u16>(port)?));
    }
    if owners.is_empty() {
        return Err(RedisError::from((ErrorKind::ClientError, "the cluster has no slot assigned")));
    }
    Ok(owners.into_iter().collect())
}

/// Escapes Redis glob metacharacters so a prefix matches literally.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The URL (or comma-separated URLs) without passwords, for logs.
fn redact(urls: &str) -> String {
    urls.split(',')
        .map(|url| match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
            _ => url.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(glob_escape("gm:a*b?[c]\\"), "gm:a\\*b\\?\\[c\\]\\\\");
        assert_eq!(glob_escape("gm:prod:"), "gm:prod:");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://user:secret@host:6379/0"), "redis://***@host:6379/0");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact("redis://:a@h1:1,redis://:a@h2:2"), "redis://***@h1:1,redis://***@h2:2");
        assert_eq!(redact("rediss://:tok@en@h:6379"), "rediss://***@h:6379");
        assert_eq!(redact("rediss://default:t@h1:1, rediss://default:t@h2:2"), "rediss://***@h1:1, rediss://***@h2:2");
    }

    #[test]
    fn key_slots_match_redis() {
        // Values of CLUSTER KEYSLOT (and of the Redis Cluster specification's CRC16 test vector).
        assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), crc16_xmodem(b"foo{}{bar}") % CLUSTER_SLOTS, "an empty tag: the whole key");
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert!(one_slot(["gm:profile:{g:1}:a", "gm:erased:{g:1}:x"].into_iter()));
        assert!(!one_slot(["gm:profile:g:a", "gm:erased:g:x"].into_iter()));
    }

    #[test]
    fn several_urls_need_cluster_mode() {
        assert!(RedisCache::new(RedisConfig::new("redis://127.0.0.1:1,redis://127.0.0.1:2", "gm:")).is_err());
        let cache = RedisCache::new(RedisConfig::cluster("redis://127.0.0.1:1,redis://127.0.0.1:2", "gm:")).unwrap();
        assert!(cache.is_cluster());
        assert!(RedisCache::new(RedisConfig::cluster("not a url", "gm:")).is_err());
        assert!(RedisCache::new(RedisConfig::cluster(" , ", "gm:")).is_err(), "no seed node");
        assert!(RedisCache::new(RedisConfig::cluster("redis://127.0.0.1:1/0", "gm:")).is_ok());
        assert!(
            RedisCache::new(RedisConfig::cluster("redis://127.0.0.1:1/2", "gm:")).is_err(),
            "a cluster has db 0 only"
        );
    }

    #[test]
    fn cluster_slots_replies_give_the_masters() {
        let node = |ip: &str, port: i64, id: &str| {
            Value::Array(vec![Value::BulkString(ip.into()), Value::Int(port), Value::BulkString(id.into())])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000, "a"),
                node("10.0.0.4", 7003, "d"),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(10922), node("10.0.0.2", 7001, "b")]),
            Value::Array(vec![Value::Int(10923), Value::Int(16383), node("10.0.0.1", 7000, "a")]),
        ]);
        assert_eq!(slot_owners(&reply).unwrap(), [("10.0.0.1".to_string(), 7000), ("10.0.0.2".to_string(), 7001)]);
        assert!(slot_owners(&Value::Array(vec![])).is_err(), "no slot assigned");
        assert!(slot_owners(&Value::Int(1)).is_err());
    }

    #[test]
    fn tls_settings_are_checked_at_construction() {
        let dir = tempfile::tempdir().unwrap();
        let no_cert = dir.path().join("empty.pem");
        std::fs::write(&no_cert, "not a certificate\n").unwrap();
        let with_ca = |url: &str, cluster: bool, ca: &std::path::Path| {
            let cfg = if cluster { RedisConfig::cluster(url, "gm:") } else { RedisConfig::new(url, "gm:") };
            RedisCache::new(RedisConfig { tls_ca_file: Some(ca.to_string_lossy().into_owned()), ..cfg })
        };
        assert!(RedisCache::new(RedisConfig::new("rediss://:t@127.0.0.1:1", "gm:")).is_ok());
        assert!(RedisCache::new(RedisConfig::cluster("rediss://:t@127.0.0.1:1,rediss://:t@127.0.0.1:2", "gm:")).is_ok());
        let mixed = RedisCache::new(RedisConfig::cluster("rediss://127.0.0.1:1,redis://127.0.0.1:2", "gm:"));
        assert!(mixed.unwrap_err().to_string().contains("mix rediss://"));
        let plain = with_ca("redis://127.0.0.1:1", false, &no_cert).unwrap_err().to_string();
        assert!(plain.contains("not rediss://"), "{plain}");
        assert!(with_ca("redis://127.0.0.1:1", true, &no_cert).is_err());
        let missing = with_ca("rediss://127.0.0.1:1", false, &dir.path().join("none.pem")).unwrap_err().to_string();
        assert!(missing.contains("cannot read"), "{missing}");
        let empty = with_ca("rediss://127.0.0.1:1", true, &no_cert).unwrap_err().to_string();
        assert!(empty.contains("no PEM certificate"), "{empty}");
    }

    #[test]
    fn malformed_url_fails_construction_but_down_redis_does_not() {
        assert!(RedisCache::new(RedisConfig::new("not a url", "gm:")).is_err());
        assert!(RedisCache::new(RedisConfig::new("redis://127.0.0.1:1", "gm:")).is_ok());
    }
}
