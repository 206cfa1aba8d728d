//! [`CachedQueries`]: a read-through cache in front of any [`AnalyticsQueries`].
//!
//! Every query first looks up its key; a hit is returned as is. A miss — or **any** cache
//! failure: not connected, circuit open, timeout, Redis error, undecodable value — asks
//! the inner store, returns its answer, and writes it back in the background. The cache
//! can therefore make a query slower by at most `op_timeout` and never makes it fail or
//! wrong beyond the staleness below.
//!
//! ## Staleness (the trade-off)
//! A cached value is not updated when the projections change the read model; it lives
//! until its TTL expires. So an answer can lag the store by at most:
//! * a player profile: `profile_ttl` (default 30 s);
//! * DAU/sessions/revenue for a range ending yesterday, today or later, and the (all-time)
//!   funnel: `recent_query_ttl` (default 5 s) — these still change: today's events, and
//!   yesterday's through pipeline lag, offline clients and sessions crossing midnight;
//! * a range that ended before yesterday: `query_ttl` (default 5 min). Late events (wrong
//!   client clocks, devices that were offline for days) and projection rebuilds can still
//!   change such days; the TTL bounds how long that goes unseen.
//!
//! Errors and "no such player" are never cached (a new player shows up at once).
//!
//! ## Erasure
//! [`CachedQueries::invalidate_player`] deletes the player's profile key and, in the same
//! MULTI, sets a short-lived marker that refuses read-through writes of that profile
//! (`erasure_guard`, default 10 min): a query that read the profile from the store just
//! before the erasure removed it cannot put it back into Redis afterwards. Unlike queries,
//! it reports failure (the erasure must retry until Redis confirms).
//!
//! ## Background writes
//! Write-backs run as tokio tasks, at most `max_pending_writes` at once, each bounded by
//! `op_timeout`; beyond that they are dropped (counted in [`QueryCacheStats`]), so a slow
//! Redis cannot accumulate tasks. [`CachedQueries::wait_idle`] waits for them (tests,
//! shutdown).
//!
//! ## Single flight
//! Concurrent misses of one range query or the funnel in one process share one load: the
//! first asks the store, the others wait for its answer or its error. Nothing of a failed
//! load is kept: the next miss asks again.
//! A popular key that expires under load thus costs the store one query per gateway, not
//! one per request in flight.

use crate::cache::{CacheError, RedisCache};
use async_trait::async_trait;
use chrono::{NaiveDate, Utc};
use gm_ports::StoreError;
use gm_projections::model::{ActiveUsersDay, DateRange, FunnelStep, PlayerProfile, RevenueDay, SessionsDay};
use gm_projections::AnalyticsQueries;
use gm_schemas::{GameId, PlayerId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Counters of the decorator since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueryCacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Lookups that failed (Redis down, slow, erroring): answered by the store.
    pub lookup_errors: u64,
    /// Cached values that could not be decoded (e.g. written by another version).
    pub decode_errors: u64,
    /// Write-backs dropped because `max_pending_writes` were already in flight.
    pub writes_dropped: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    lookup_errors: AtomicU64,
    decode_errors: AtomicU64,
    writes_dropped: AtomicU64,
}

/// Which kind of analytics query a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    ActiveUsers,
    Sessions,
    Revenue,
}

impl QueryKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ActiveUsers => "active_users",
            Self::Sessions => "sessions",
            Self::Revenue => "revenue",
        }
    }
}

/// The hash tag of a player's keys, literally `{<game>:<h>}` with `h` the first 16 hex digits
/// of SHA-256(player id): the profile, the recommendation lists and the erasure marker carry
/// it, so that one script or MULTI may name them together in a Redis Cluster (one slot).
/// It is a hash, not the player id, because the marker must not name the player. Neither
/// id contains `{` or `}`, so this is always the key's tag.
pub fn player_tag(game: &GameId, player: &PlayerId) -> String {
    format!("{{{game}:{}}}", &player_hash(player)[..16])
}

fn player_hash(player: &PlayerId) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(player.as_str().as_bytes()))
}

/// Key of a player's profile (relative to `key_prefix`): `profile:{<game>:<h>}:<player>`
/// (see [`player_tag`]). Unambiguous: a game id has no `:`.
pub fn profile_key(game: &GameId, player: &PlayerId) -> String {
    format!("profile:{}:{player}", player_tag(game, player))
}

/// Key of the erasure marker of a player: `erased:{<game>:<h>}:<sha256(player)>`. The marker
/// outlives the erasure (it keeps stale read-through writes out), so it must not name the
/// player; it shares the player's tag, so it is in the slot of the keys it guards.
pub fn erased_marker_key(game: &GameId, player: &PlayerId) -> String {
    format!("erased:{}:{}", player_tag(game, player), player_hash(player))
}

/// Key of a range query (relative to `key_prefix`): `q:{kind}:{game}:{from}:{to}` (the
/// braces here are placeholders: no hash tag, a single-key value may go to any slot).
pub fn query_key(kind: QueryKind, game: &GameId, range: DateRange) -> String {
    format!("q:{}:{game}:{}:{}", kind.as_str(), range.from(), range.to())
}

/// Key of the (all-time) funnel: `q:funnel:{game}`.
pub fn funnel_key(game: &GameId) -> String {
    format!("q:funnel:{game}")
}

/// The read-through cache decorator. Cheap to share behind an `Arc`.
pub struct CachedQueries<Q> {
    inner: Q,
    cache: RedisCache,
    writes: Arc<Semaphore>,
    max_writes: u32,
    counters: Arc<Counters>,
    /// The role's Prometheus counters (hits, misses, errors), when instrumented.
    metrics: Option<gm_telemetry::CacheMetrics>,
    /// The loads in flight in this process, by key (single flight): a miss that finds one
    /// waits for its answer instead of sending the same query to the store. Without it, a
    /// popular key that expires sends every concurrent request to PostgreSQL at once.
    flights: Arc<Mutex<HashMap<String, Flight>>>,
}

/// One load of a key, shared by the misses that arrive while it runs: the answer, serialised
/// as the cache holds it, or what went wrong (shared too: with a failing store, waiters must
/// not each try again in turn).
type Flight = Arc<tokio::sync::OnceCell<Result<Arc<Vec<u8>>, Arc<str>>>>;

/// The error of a load another request ran for the same key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SharedLoadFailed(Arc<str>);

impl<Q: AnalyticsQueries> CachedQueries<Q> {
    pub fn new(inner: Q, cache: RedisCache) -> Self {
        let max_writes = cache.config().max_pending_writes.clamp(1, Semaphore::MAX_PERMITS) as u32;
        Self {
            inner,
            cache,
            writes: Arc::new(Semaphore::new(max_writes as usize)),
            max_writes,
            counters: Arc::default(),
            metrics: None,
            flights: Arc::default(),
        }
    }

    /// Counts hits, misses and failed lookups in the role's registry as well.
    pub fn with_metrics(mut self, metrics: gm_telemetry::CacheMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn inner(&self) -> &Q {
        &self.inner
    }

    pub fn cache(&self) -> &RedisCache {
        &self.cache
    }

    pub fn stats(&self) -> QueryCacheStats {
        let c = &self.counters;
        QueryCacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            lookup_errors: c.lookup_errors.load(Ordering::Relaxed),
            decode_errors: c.decode_errors.load(Ordering::Relaxed),
            writes_dropped: c.writes_dropped.load(Ordering::Relaxed),
        }
    }

    /// Waits until every background write-back has finished.
    pub async fn wait_idle(&self) {
        if let Ok(all) = self.writes.acquire_many(self.max_writes).await {
            drop(all);
        }
    }

    /// Removes a player's cached profile and keeps read-through writes of it out for
    /// `erasure_guard`. `Err` means Redis did not confirm: retry (erasure must not complete).
    pub async fn invalidate_player(&self, game: &GameId, player: &PlayerId) -> Result<u64, CacheError> {
        self.cache
            .mark_and_delete(
                &[profile_key(game, player)],
                &erased_marker_key(game, player),
                self.cache.config().erasure_guard(),
            )
            .await
    }

    /// The TTL of a range query's result: short while the range can still change.
    pub fn range_ttl(&self, range: DateRange, today: NaiveDate) -> Duration {
        let cfg = self.cache.config();
        match today.pred_opt() {
            Some(yesterday) if range.to() < yesterday => cfg.query_ttl(),
            _ => cfg.recent_query_ttl(),
        }
    }

    /// Looks `key` up; `Some` only on a decodable hit.
    async fn lookup<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        match self.cache.get(key).await {
            Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(v) => {
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    if let Some(m) = &self.metrics {
                        m.hits.inc();
                    }
                    Some(v)
                }
                Err(e) => {
                    self.counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(m) = &self.metrics {
                        m.misses.inc();
                    }
                    // Neither the key (`profile:{game}:{player}`) nor serde's message, which may
                    // quote the value, is logged: the log must hold no player's data.
                    let kind = key.split(':').next().unwrap_or_default();
                    let (error, column) = (e.classify(), e.column());
                    tracing::debug!(kind, ?error, column, "undecodable cached value; treated as a miss");
                    None
                }
            },
            Ok(None) => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = &self.metrics {
                    m.misses.inc();
                }
                None
            }
            Err(_) => {
                // Already counted and (rate-limited) logged by the cache.
                self.counters.lookup_errors.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = &self.metrics {
                    m.misses.inc();
                    m.errors.inc();
                }
                None
            }
        }
    }

    /// Runs `write` in the background if a write slot is free; drops it otherwise.
    fn write_back<F>(&self, write: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.cache.config().max_pending_writes == 0 {
            return;
        }
        match self.writes.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    write.await;
                    drop(permit);
                });
            }
            Err(_) => {
                self.counters.writes_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn read_through<T, F>(&self, key: String, ttl: Duration, load: F) -> Result<T, StoreError>
    where
        T: Serialize + DeserializeOwned,
        F: Future<Output = Result<T, StoreError>>,
    {
        if ttl.is_zero() {
            return load.await;
        }
        if let Some(v) = self.lookup(&key).await {
            return Ok(v);
        }
        let flight = self.flights.lock().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_default().clone();
        let (mut loaded_here, mut own_error) = (false, None);
        // The first miss loads; the others wait for its answer.
        let answer = flight
            .get_or_init(|| async {
                loaded_here = true;
                match load.await {
                    Ok(value) => serde_json::to_vec(&value).map(Arc::new).map_err(|e| Arc::from(e.to_string())),
                    Err(e) => {
                        let message = Arc::from(e.to_string());
                        own_error = Some(e);
                        Err(message)
                    }
                }
            })
            .await
            .clone();
        if loaded_here {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            if flights.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                flights.remove(&key);
            }
        }
        let bytes = match answer {
            Ok(bytes) => bytes,
            Err(message) => return Err(own_error.unwrap_or_else(|| StoreError::unavailable(SharedLoadFailed(message)))),
        };
        if loaded_here {
            let cache = self.cache.clone();
            let written = bytes.clone();
            self.write_back(async move {
                let _ = cache.set_many(&[(key, written.to_vec())], ttl).await;
            });
        }
        serde_json::from_slice(&bytes).map_err(StoreError::other)
    }
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

#[async_trait]
impl<Q: AnalyticsQueries> AnalyticsQueries for CachedQueries<Q> {
    async fn player_profile(&self, game: &GameId, player: &PlayerId) -> Result<Option<PlayerProfile>, StoreError> {
        let ttl = self.cache.config().profile_ttl();
        if ttl.is_zero() {
            return self.inner.player_profile(game, player).await;
        }
        let key = profile_key(game, player);
        if let Some(p) = self.lookup::<PlayerProfile>(&key).await {
            return Ok(Some(p));
        }
        let profile = self.inner.player_profile(game, player).await?;
        if let Some(p) = &profile {
            if let Ok(bytes) = serde_json::to_vec(p) {
                let cache = self.cache.clone();
                let marker = erased_marker_key(game, player);
                self.write_back(async move {
                    let _ = cache.set_unless_marked(&key, &bytes, ttl, &marker).await;
                });
            }
        }
        Ok(profile)
    }

    async fn active_users(&self, game: &GameId, range: DateRange) -> Result<Vec<ActiveUsersDay>, StoreError> {
        let ttl = self.range_ttl(range, today());
        self.read_through(query_key(QueryKind::ActiveUsers, game, range), ttl, self.inner.active_users(game, range))
            .await
    }

    async fn sessions(&self, game: &GameId, range: DateRange) -> Result<Vec<SessionsDay>, StoreError> {
        let ttl = self.range_ttl(range, today());
        self.read_through(query_key(QueryKind::Sessions, game, range), ttl, self.inner.sessions(game, range)).await
    }

    async fn revenue(&self, game: &GameId, range: DateRange) -> Result<Vec<RevenueDay>, StoreError> {
        let ttl = self.range_ttl(range, today());
        self.read_through(query_key(QueryKind::Revenue, game, range), ttl, self.inner.revenue(game, range)).await
    }

    async fn funnel(&self, game: &GameId) -> Result<Vec<FunnelStep>, StoreError> {
        let ttl = self.cache.config().recent_query_ttl();
        self.read_through(funnel_key(game), ttl, self.inner.funnel(game)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn keys_follow_the_documented_shape() {
        let g = GameId::parse("space-race").unwrap();
        let p = PlayerId::parse("p.1@x").unwrap();
        // SHA-256("p.1@x") starts with the 16 hex digits of the tag.
        let h = "3af947b9b7423789";
        assert_eq!(player_tag(&g, &p), format!("{{space-race:{h}}}"));
        assert_eq!(profile_key(&g, &p), format!("profile:{{space-race:{h}}}:p.1@x"));
        let marker = erased_marker_key(&g, &p);
        assert!(marker.starts_with(&format!("erased:{{space-race:{h}}}:{h}")), "{marker}");
        assert_eq!(marker.len(), "erased:{space-race:}:".len() + 16 + 64);
        assert!(!marker.contains("p.1@x"), "the marker does not name the player");
        // The player's keys are in one slot, another player's in (most likely) another.
        let slot = |k: &str| crate::cache::key_slot(format!("gm:prod:{k}").as_bytes());
        assert_eq!(slot(&profile_key(&g, &p)), slot(&marker));
        let q = PlayerId::parse("p.2@x").unwrap();
        assert_ne!(slot(&profile_key(&g, &p)), slot(&profile_key(&g, &q)));
        let r = DateRange::parse(d("2024-01-01"), d("2024-01-31")).unwrap();
        assert_eq!(query_key(QueryKind::Revenue, &g, r), "q:revenue:space-race:2024-01-01:2024-01-31");
        assert_eq!(funnel_key(&g), "q:funnel:space-race");
    }
}
