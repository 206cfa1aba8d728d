//! # gm-redis
//!
//! The Redis cache of GameMetrics (Data flow 4: "Redis first where it helps").
//!
//! * [`RedisConfig`] — URL (or a cluster's seed nodes with `cluster = true`), per-deployment
//!   `key_prefix`, TTLs, `op_timeout` (serde).
//! * [`RedisCache`] — a resilient client of one Redis or of a Redis Cluster (keys that one
//!   atomic operation names together share a hash tag, see [`cache`]): starts and keeps
//!   running while Redis is down,
//!   reconnects by itself, bounds every operation by `op_timeout`, pipelines bulk writes
//!   (`set_many`: one round trip for any number of keys), deletes by key or by prefix
//!   (SCAN + UNLINK, for erasure), counts errors and logs them rate-limited, and answers
//!   readiness probes with [`RedisCache::health`].
//! * [`CachedQueries`] — a read-through decorator of any
//!   [`AnalyticsQueries`](gm_projections::AnalyticsQueries): hits come from Redis, misses
//!   and every Redis failure go to the store; staleness is bounded by the TTLs (see the
//!   module docs of [`queries`]). [`CachedQueries::invalidate_player`] serves erasure.
//!
//! Redis is never the source of truth: losing it, or any key in it, loses no data.

pub mod cache;
pub mod config;
pub mod leaderboards;
pub mod queries;
pub mod recommendations;

pub use cache::{key_slot, CacheError, CacheStats, RedisCache};
pub use config::RedisConfig;
pub use leaderboards::{board_key, board_marker_key, CachedGameQueries};
pub use queries::{
    erased_marker_key, funnel_key, player_tag, profile_key, query_key, CachedQueries, QueryCacheStats, QueryKind,
};
pub use recommendations::{recommendations_key, CachedRecommendations};
