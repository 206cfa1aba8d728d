//! Rate limits (governor, GCRA): requests per API key, and events per player.
//!
//! A request over its key's quota is refused with 429 and `Retry-After`. Events over their
//! player's quota are refused one by one with code `rate_limited` (the others of the batch
//! still land); a batch of which nothing was accepted because of it answers 429 too. A
//! quota of 0 per second disables that limit. Players not seen for a while are forgotten
//! (`retain_recent`), so the table stays as large as the set of recently active players.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Quotas; 0 per second = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimitConfig {
    pub per_key_per_second: u32,
    pub per_key_burst: u32,
    pub per_player_per_second: u32,
    pub per_player_burst: u32,
}

fn quota(per_second: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// Every how many checks the tables drop entries that are back to a full quota.
const SWEEP_EVERY: u64 = 1 << 16;

pub struct RateLimits {
    keys: Option<DefaultKeyedRateLimiter<String>>,
    players: Option<DefaultKeyedRateLimiter<String>>,
    checks: AtomicU64,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("per_key", &self.keys.is_some())
            .field("per_player", &self.players.is_some())
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
        }
    }

    fn check(&self, limiter: &Option<DefaultKeyedRateLimiter<String>>, key: &str) -> Result<(), Duration> {
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
        self.check(&self.keys, key_id)
    }

    /// One event of the player `player_key` (`game:player`): `Err(wait)` when over quota.
    pub fn check_player(&self, player_key: &str) -> Result<(), Duration> {
        self.check(&self.players, player_key)
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
        let limits = RateLimits::new(RateLimitConfig::default());
        for _ in 0..10_000 {
            assert!(limits.check_player("g:p").is_ok());
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
