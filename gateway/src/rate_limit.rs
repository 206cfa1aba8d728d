//! Rate limits: requests per API key, and events per player.
//!
//! A request over its key's quota is refused with 429 and `Retry-After`. Events over their
//! player's quota are refused one by one with code `rate_limited` (the others of the batch
//! still land); a batch of which nothing was accepted because of it answers 429 too. A
//! quota of 0 per second disables that limit.
//!
//! **Shared by every gateway** when Redis is configured ([`RateLimits::with_shared`]): each
//! quota is counted in fixed windows of `burst / per_second` seconds allowing `burst` each
//! (the same average rate and the same burst as the local limit). A check never waits for
//! Redis: it answers from what this gateway knows (the deployment's count as of the last
//! exchange plus what it let through since), and every [`SYNC_EVERY`] a background task adds
//! this gateway's new counts to the shared counters and reads back the totals, in one
//! round trip per kind of quota. So several gateways together let through at most a quota,
//! give or take what each lets through before its first exchange about a key and within one
//! exchange interval after, and at a window's boundary up to two bursts (the fixed-window
//! edge). While Redis cannot answer, each gateway falls back
//! to its own limits (governor, GCRA) until an exchange succeeds again.
//!
//! Local limits forget players not seen for a while (`retain_recent`), and the shared state
//! keeps only the current window's counters, so both stay as large as the set of recently
//! active keys and players.

use gm_ports::SharedCounters;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Quotas, `[rate_limits]` of the configuration; 0 per second = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct RateLimitConfig {
    /// Requests per second per API key, and the burst above it.
    pub per_key_per_second: u32,
    pub per_key_burst: u32,
    /// Events per second per player, and the burst above it.
    pub per_player_per_second: u32,
    pub per_player_burst: u32,
}

impl RateLimitConfig {
    /// No limit at all (tests that send more than a real client would).
    pub const UNLIMITED: Self =
        Self { per_key_per_second: 0, per_key_burst: 0, per_player_per_second: 0, per_player_burst: 0 };
}

impl Default for RateLimitConfig {
    /// `[rate_limits]` of config/default.toml.
    fn default() -> Self {
        gm_schemas::defaults::section("rate_limits")
    }
}

fn quota(per_second: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// Every how many checks the tables drop entries that are back to a full quota.
const SWEEP_EVERY: u64 = 1 << 16;

/// How often a gateway exchanges its counts with the shared counters.
pub const SYNC_EVERY: Duration = Duration::from_millis(100);

/// A quota counted in fixed windows: `limit` per `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    window_ms: u64,
    limit: u64,
}

impl Window {
    /// `burst` per the time the rate takes to grant a whole burst (at least one second).
    fn of(per_second: u32, burst: u32) -> Option<Self> {
        let per_second = u64::from(per_second);
        if per_second == 0 {
            return None;
        }
        let limit = u64::from(burst).max(per_second);
        Some(Self { window_ms: (limit * 1000).div_ceil(per_second).max(1000), limit })
    }
}

/// One quota's shared counting: what the deployment counted per key in the current window
/// (as of the last exchange), and what this gateway let through since.
struct SharedQuota {
    /// Names the counters of this kind: `rl:{<kind>:<window>}:<hash of the key>` (the window
    /// in the hash tag, so one window's counters are in one Redis Cluster slot: one pipeline).
    kind: &'static str,
    window: Window,
    counts: Mutex<HashMap<String, Count>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Count {
    window: u64,
    known: u64,
    pending: u64,
    /// Checked since the last exchange (allowed or refused): the next one refreshes it.
    touched: bool,
}

impl SharedQuota {
    fn check(&self, key: &str, now_ms: u64) -> Result<(), Duration> {
        let window = now_ms / self.window.window_ms;
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key.to_owned()).or_default();
        if count.window != window {
            *count = Count { window, ..Count::default() };
        }
        count.touched = true;
        if count.known + count.pending >= self.window.limit {
            return Err(Duration::from_millis((window + 1) * self.window.window_ms - now_ms));
        }
        count.pending += 1;
        Ok(())
    }

    /// The counts to add: those of the current window's keys checked since the last
    /// exchange (0 for a key only refused, to read its total), taken out of `pending`.
    fn take_pending(&self, now_ms: u64) -> (u64, Vec<(String, String, u64)>) {
        let window = now_ms / self.window.window_ms;
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.retain(|_, c| c.window == window);
        let taken = counts
            .iter_mut()
            .filter(|(_, c)| c.touched)
            .map(|(key, c)| {
                c.touched = false;
                let n = std::mem::take(&mut c.pending);
                c.known += n;
                (key.clone(), format!("rl:{{{}:{window}}}:{}", self.kind, counter_id(key)), n)
            })
            .collect();
        (window, taken)
    }

    /// The deployment's totals after an exchange.
    fn learn(&self, window: u64, totals: impl IntoIterator<Item = (String, u64)>) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for (key, total) in totals {
            if let Some(c) = counts.get_mut(&key).filter(|c| c.window == window) {
                c.known = c.known.max(total);
            }
        }
    }
}

/// The name a key or player is counted under in Redis: a hash, so that no player id is
/// stored there (an erasure must not have to find rate-limit counters; they expire anyway).
fn counter_id(key: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(key.as_bytes())[..16])
}

struct Shared {
    counters: Arc<dyn SharedCounters>,
    keys: Option<SharedQuota>,
    players: Option<SharedQuota>,
    /// The last exchange succeeded: checks use the shared counts (else the local limits).
    healthy: AtomicBool,
    epoch: std::time::SystemTime,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().unwrap_or_default().as_millis() as u64
    }

    /// One exchange per quota kind; `false` when Redis did not answer.
    async fn exchange(&self) -> bool {
        let mut ok = true;
        for quota in [&self.keys, &self.players].into_iter().flatten() {
            let (window, taken) = quota.take_pending(self.now_ms());
            // An empty exchange still tells whether Redis answers (to leave the fallback).
            let names: Vec<(String, u64)> = if taken.is_empty() {
                vec![(format!("rl:{{{}:{window}}}:-", quota.kind), 0)]
            } else {
                taken.iter().map(|(_, name, n)| (name.clone(), *n)).collect()
            };
            let ttl = Duration::from_millis(quota.window.window_ms * 2);
            match self.counters.add(&names, ttl).await {
                Ok(totals) if !taken.is_empty() => {
                    quota.learn(window, taken.into_iter().map(|(key, _, _)| key).zip(totals));
                }
                Ok(_) => {}
                Err(e) => {
                    if self.healthy.load(Ordering::Relaxed) {
                        tracing::warn!(error = %e, "shared rate limits unavailable; this gateway's own limits apply");
                    }
                    ok = false;
                }
            }
        }
        ok
    }
}

pub struct RateLimits {
    keys: Option<DefaultKeyedRateLimiter<String>>,
    players: Option<DefaultKeyedRateLimiter<String>>,
    checks: AtomicU64,
    clock: DefaultClock,
    config: RateLimitConfig,
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("per_key", &self.keys.is_some())
            .field("per_player", &self.players.is_some())
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl RateLimits {
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            keys: quota(config.per_key_per_second, config.per_key_burst).map(RateLimiter::keyed),
            players: quota(config.per_player_per_second, config.per_player_burst).map(RateLimiter::keyed),
            checks: AtomicU64::new(0),
            clock: DefaultClock::default(),
            config,
            shared: None,
        }
    }

    /// Counts the quotas with every other gateway in `counters` (Redis), exchanging every
    /// [`SYNC_EVERY`] on a background task (which ends when these limits are dropped). Call
    /// within a Tokio runtime.
    pub fn with_shared(mut self, counters: Arc<dyn SharedCounters>) -> Self {
        let c = self.config;
        let shared = Arc::new(Shared {
            counters,
            keys: Window::of(c.per_key_per_second, c.per_key_burst).map(|window| SharedQuota {
                kind: "k",
                window,
                counts: Mutex::default(),
            }),
            players: Window::of(c.per_player_per_second, c.per_player_burst).map(|window| SharedQuota {
                kind: "p",
                window,
                counts: Mutex::default(),
            }),
            healthy: AtomicBool::new(false),
            epoch: std::time::UNIX_EPOCH,
        });
        if shared.keys.is_none() && shared.players.is_none() {
            return self;
        }
        tokio::spawn(exchange_forever(Arc::downgrade(&shared)));
        self.shared = Some(shared);
        self
    }

    /// Whether the checks count with the other gateways now (Redis answered the last exchange).
    pub fn is_shared(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| s.healthy.load(Ordering::Relaxed))
    }

    fn check(
        &self,
        limiter: &Option<DefaultKeyedRateLimiter<String>>,
        shared: Option<&SharedQuota>,
        key: &str,
    ) -> Result<(), Duration> {
        if let (Some(s), Some(quota)) = (self.shared.as_ref().filter(|s| s.healthy.load(Ordering::Relaxed)), shared) {
            return quota.check(key, s.now_ms());
        }
        let Some(limiter) = limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        // governor's keyed `check` needs an owned key; most players are already in the table.
        limiter.check_key(&key.to_string()).map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// One request of the key `key_id`: `Err(wait)` when over quota.
    pub fn check_key(&self, key_id: &str) -> Result<(), Duration> {
        self.check(&self.keys, self.shared.as_ref().and_then(|s| s.keys.as_ref()), key_id)
    }

    /// One event of the player `player_key` (`game:player`): `Err(wait)` when over quota.
    pub fn check_player(&self, player_key: &str) -> Result<(), Duration> {
        self.check(&self.players, self.shared.as_ref().and_then(|s| s.players.as_ref()), player_key)
    }

    /// One exchange with the shared counters now (tests; the background task does it every
    /// [`SYNC_EVERY`]).
    pub async fn exchange(&self) -> bool {
        match &self.shared {
            Some(shared) => {
                let ok = shared.exchange().await;
                shared.healthy.store(ok, Ordering::Relaxed);
                ok
            }
            None => false,
        }
    }
}

async fn exchange_forever(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(SYNC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let ok = shared.exchange().await;
        if ok && !shared.healthy.load(Ordering::Relaxed) {
            tracing::info!("rate limits shared with the other gateways (Redis)");
        }
        shared.healthy.store(ok, Ordering::Relaxed);
    }
}

/// Seconds to announce in `Retry-After`: the wait rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_burst_waits_and_recovers() {
        let limits =
            RateLimits::new(RateLimitConfig { per_key_per_second: 20, per_key_burst: 2, ..Default::default() });
        assert!(limits.check_key("a").is_ok());
        assert!(limits.check_key("a").is_ok());
        let wait = limits.check_key("a").unwrap_err();
        assert!(wait <= Duration::from_millis(50), "{wait:?}");
        assert!(limits.check_key("b").is_ok(), "keys are limited separately");
        std::thread::sleep(wait + Duration::from_millis(5));
        assert!(limits.check_key("a").is_ok(), "recovers after the announced wait");
    }

    #[test]
    fn zero_disables_a_limit() {
        let limits = RateLimits::new(RateLimitConfig::UNLIMITED);
        for _ in 0..10_000 {
            assert!(limits.check_player("g:p").is_ok());
        }
    }

    /// A deployment's shared counters (Redis in production), in memory.
    #[derive(Default)]
    struct Counters {
        values: Mutex<HashMap<String, u64>>,
        down: AtomicBool,
    }

    #[async_trait::async_trait]
    impl SharedCounters for Counters {
        async fn add(&self, counts: &[(String, u64)], _ttl: Duration) -> Result<Vec<u64>, gm_ports::StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(gm_ports::StoreError::Unavailable("redis down".into()));
            }
            let mut values = self.values.lock().unwrap();
            Ok(counts
                .iter()
                .map(|(name, n)| {
                    let v = values.entry(name.clone()).or_default();
                    *v += n;
                    *v
                })
                .collect())
        }
    }

    fn per_player(per_second: u32, burst: u32) -> RateLimitConfig {
        RateLimitConfig { per_player_per_second: per_second, per_player_burst: burst, ..Default::default() }
    }

    fn allowed(limits: &RateLimits, key: &str, n: usize) -> usize {
        (0..n).filter(|_| limits.check_player(key).is_ok()).count()
    }

    #[test]
    fn a_window_grants_the_burst_over_the_time_the_rate_takes_to_refill_it() {
        assert_eq!(Window::of(200, 2000), Some(Window { window_ms: 10_000, limit: 2000 }));
        assert_eq!(Window::of(20_000, 40_000), Some(Window { window_ms: 2_000, limit: 40_000 }));
        assert_eq!(Window::of(5, 0), Some(Window { window_ms: 1_000, limit: 5 }), "no burst: a second's worth");
        assert_eq!(Window::of(0, 10), None);
    }

    #[actix_web::test]
    async fn two_gateways_share_one_quota_and_fall_back_to_their_own_while_redis_is_down() {
        let counters = Arc::new(Counters::default());
        // 10 events a second, no burst: windows of one second allowing 10.
        let a = RateLimits::new(per_player(10, 10)).with_shared(counters.clone());
        let b = RateLimits::new(per_player(10, 10)).with_shared(counters.clone());
        assert!(a.exchange().await && b.exchange().await);
        assert!(a.is_shared() && b.is_shared());
        // Stay clear of a window's end, so that the whole test is in one window.
        let ms = std::time::UNIX_EPOCH.elapsed().unwrap().as_millis() % 1000;
        if ms > 600 {
            tokio::time::sleep(Duration::from_millis(1010 - ms as u64)).await;
        }
        assert_eq!(allowed(&a, "g:p", 6), 6);
        a.exchange().await;
        b.exchange().await;
        // b learns the deployment's count of a player at its first exchange after it saw
        // them (until then it counts alone: the exchange interval's slack).
        assert_eq!(allowed(&b, "g:p", 1), 1);
        b.exchange().await;
        assert_eq!(allowed(&b, "g:p", 10), 3, "b lets through what is left of the shared quota");
        b.exchange().await;
        a.exchange().await;
        // a has not checked the player since b's three: it has not heard of them yet.
        assert!(a.check_player("g:p").is_ok(), "the exchange interval's slack");
        a.exchange().await;
        let wait = a.check_player("g:p").unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(allowed(&a, "g:other", 3), 3, "players are counted separately");
        // Redis down: each gateway applies its own limits again (here the local burst of 10).
        counters.down.store(true, Ordering::SeqCst);
        assert!(!a.exchange().await);
        assert!(!a.is_shared());
        assert_eq!(allowed(&a, "g:fresh", 15), 10);
        counters.down.store(false, Ordering::SeqCst);
        assert!(a.exchange().await && a.is_shared(), "shared again once Redis answers");
    }

    #[actix_web::test]
    async fn counters_name_a_hash_of_the_player_never_the_player() {
        let counters = Arc::new(Counters::default());
        let limits = RateLimits::new(per_player(10, 10)).with_shared(counters.clone());
        assert!(limits.exchange().await);
        limits.check_player("space-race:victim@example.org").unwrap();
        assert!(limits.exchange().await);
        let names: Vec<String> = counters.values.lock().unwrap().keys().cloned().collect();
        assert!(names.iter().any(|n| n.ends_with(&counter_id("space-race:victim@example.org"))), "{names:?}");
        assert!(names.iter().all(|n| !n.contains("victim")), "{names:?}");
    }

    #[actix_web::test]
    async fn the_background_exchange_keeps_gateways_in_step() {
        let counters = Arc::new(Counters::default());
        let a = RateLimits::new(per_player(100, 100)).with_shared(counters.clone());
        let b = RateLimits::new(per_player(100, 100)).with_shared(counters.clone());
        // The background tasks' first exchange makes them shared.
        tokio::time::sleep(SYNC_EVERY * 3).await;
        assert!(a.is_shared() && b.is_shared());
        let ms = std::time::UNIX_EPOCH.elapsed().unwrap().as_millis() % 1000;
        if ms > 500 {
            tokio::time::sleep(Duration::from_millis(1010 - ms as u64)).await;
        }
        assert_eq!(allowed(&a, "g:p", 70), 70);
        assert_eq!(allowed(&b, "g:p", 1), 1);
        tokio::time::sleep(SYNC_EVERY * 3).await;
        assert_eq!(allowed(&b, "g:p", 70), 29, "b learned a's 70 from the counters");
        drop(a);
        drop(b);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
