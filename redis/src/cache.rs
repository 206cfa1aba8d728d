//! [`RedisCache`]: a Redis client that never takes the platform down with it.
//!
//! * **Starts without Redis.** Construction never connects on the caller's path: the first
//!   operation (or [`RedisCache::connect`], which tries once, bounded) starts a background
//!   connection attempt, repeated at most every `reconnect_interval` while Redis is down.
//!   Until it succeeds, operations fail fast with [`CacheError::NotConnected`].
//! * **Reconnects by itself.** Once connected, a `redis::aio::ConnectionManager` (one
//!   multiplexed connection shared by every clone of the cache) re-establishes a dropped
//!   connection in the background.
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

use crate::config::RedisConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisResult;
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

/// A cheap-to-clone handle; clones share the connection, counters and breaker.
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: RedisConfig,
    client: redis::Client,
    manager: RwLock<Option<ConnectionManager>>,
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
    /// only on a malformed URL. The connection is made in the background on first use.
    pub fn new(cfg: RedisConfig) -> Result<Self, CacheError> {
        let client = redis::Client::open(cfg.url.as_str())?;
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
    pub async fn health(&self) -> bool {
        let Some(con) = self.current() else {
            self.spawn_connect();
            return false;
        };
        let timeout = self.inner.cfg.op_timeout();
        let ping = async move {
            let mut con = con;
            redis::cmd("PING").query_async::<String>(&mut con).await
        };
        match tokio::time::timeout(timeout, ping).await {
            Ok(Ok(pong)) => pong == "PONG",
            _ => false,
        }
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
        let mut pipe = redis::pipe();
        for (k, v) in entries {
            pipe.cmd("SET").arg(self.full_key(k.as_ref())).arg(v.as_ref()).arg("PX").arg(ms).ignore();
        }
        self.run("set_many", self.bulk_timeout(entries.len()), Mode::Fast, move |mut con| async move {
            pipe.exec_async(&mut con).await
        })
        .await
    }

    /// Deletes `keys` (UNLINK: freed off the main thread) in one round trip; returns how
    /// many existed. Attempted even when the circuit is open; failures are returned.
    pub async fn delete_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<u64, CacheError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("UNLINK");
        for k in keys {
            cmd.arg(self.full_key(k.as_ref()));
        }
        self.run("delete_many", self.bulk_timeout(keys.len()), Mode::Must, move |mut con| async move {
            cmd.query_async::<u64>(&mut con).await
        })
        .await
    }

    /// Deletes every key starting with `key_prefix` + `prefix` (SCAN + UNLINK in batches of
    /// 1,000; each round trip bounded by `op_timeout`), returning how many were deleted.
    /// Never reaches beyond this deployment's `key_prefix`; refuses an empty overall prefix.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, CacheError> {
        let full = self.full_key(prefix);
        if full.is_empty() {
            return Err(CacheError::Refused("delete_prefix with an empty prefix would empty the database"));
        }
        let pattern = format!("{}*", glob_escape(&full));
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let pat = pattern.clone();
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .run("delete_prefix.scan", self.inner.cfg.op_timeout(), Mode::Must, move |mut con| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pat)
                        .arg("COUNT")
                        .arg(SCAN_BATCH)
                        .query_async(&mut con)
                        .await
                })
                .await?;
            if !keys.is_empty() {
                let n = keys.len();
                deleted += self
                    .run("delete_prefix.unlink", self.bulk_timeout(n), Mode::Must, move |mut con| async move {
                        redis::cmd("UNLINK").arg(keys).query_async::<u64>(&mut con).await
                    })
                    .await?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
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
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SCRIPT).arg(2).arg(self.full_key(key)).arg(self.full_key(marker)).arg(value).arg(ms);
        self.run("set_unless_marked", self.inner.cfg.op_timeout(), Mode::Fast, move |mut con| async move {
            cmd.query_async::<i64>(&mut con).await.map(|n| n == 1)
        })
        .await
    }

    /// Sets `marker` for `marker_ttl` and deletes `keys`, atomically (MULTI/EXEC). After
    /// it returns `Ok`, no [`set_unless_marked`](Self::set_unless_marked) naming `marker`
    /// writes anything until the marker expires. Returns how many keys existed.
    pub async fn mark_and_delete<K: AsRef<str>>(
        &self,
        keys: &[K],
        marker: &str,
        marker_ttl: Duration,
    ) -> Result<u64, CacheError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("SET").arg(self.full_key(marker)).arg(1).arg("PX").arg(marker_ttl.as_millis().max(1) as u64).ignore();
        let mut unlink = redis::cmd("UNLINK");
        for k in keys {
            unlink.arg(self.full_key(k.as_ref()));
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

    fn current(&self) -> Option<ConnectionManager> {
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

    /// Connects now (bounded by `connect_timeout`) unless already connected.
    async fn connect_now(&self) -> Option<ConnectionManager> {
        if let Some(m) = self.current() {
            return Some(m);
        }
        let attempt = ConnectionManager::new_with_config(self.inner.client.clone(), self.manager_config());
        match tokio::time::timeout(self.inner.cfg.connect_timeout(), attempt).await {
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
        F: FnOnce(ConnectionManager) -> Fut,
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

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_string(),
    }
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
    }

    #[test]
    fn malformed_url_fails_construction_but_down_redis_does_not() {
        assert!(RedisCache::new(RedisConfig::new("not a url", "gm:")).is_err());
        assert!(RedisCache::new(RedisConfig::new("redis://127.0.0.1:1", "gm:")).is_ok());
    }
}
