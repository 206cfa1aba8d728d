//! Configuration of the Redis cache (file + environment, like the rest of the platform:
//! durations are plain milliseconds, as in `request_timeout_ms`).

use serde::Deserialize;
use std::time::Duration;

/// How to reach Redis and how long cached values live.
///
/// Every default is in config/default.toml's `[redis]`, read by [`RedisConfig::default`]; the
/// platform layers its file and environment over it. An empty `url` there means no cache. A TTL
/// of 0 disables caching of that kind of value (reads still work, they just always go to the
/// store).
///
/// Cluster mode (`cluster = true`, `GM_REDIS__CLUSTER=true`) talks to a Redis Cluster (or
/// ElastiCache with cluster mode enabled): `url` then lists one or more seed nodes,
/// comma-separated (`rediss://:token@clustercfg.example:6379`, or
/// `redis://10.0.0.1:6379,redis://10.0.0.2:6379`); the client discovers every other node and
/// follows failovers and resharding by itself.
///
/// TLS: a `rediss://` URL (in cluster mode every seed URL) speaks TLS (rustls) and verifies
/// the server's certificate and name, against the bundled webpki roots (Mozilla's CA set, which
/// verifies ElastiCache's in-transit encryption certificates) or, with `tls_ca_file`, against
/// the CAs of that file only. The password of the URL (`rediss://:token@host:6379`, or
/// `rediss://user:token@…` with RBAC) is sent as AUTH inside the TLS session.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`; in cluster mode one or more seed nodes,
    /// comma-separated, all with the same user and password, database 0 (a cluster has no
    /// other). `rediss://…` for TLS (see above): in cluster mode all seed URLs or none.
    pub url: String,
    /// PEM file (`GM_REDIS__TLS_CA_FILE`) of the root CA certificates that the server's
    /// certificate must chain to, for a Redis whose certificate a private CA signed. They
    /// replace the bundled webpki roots (not added to them). `None` (default): the webpki
    /// roots. Only with `rediss://` URLs: refused with `redis://`, which has no TLS to verify.
    /// Read when the cache is built; a missing file, or one without a certificate, is refused.
    pub tls_ca_file: Option<String>,
    /// Speak the Redis Cluster protocol: keys are spread over the masters by hash slot,
    /// multi-key operations stay within one slot (see [`crate::cache`]), SCANs visit every
    /// master. `false` (default): one Redis (or a primary endpoint that follows failovers).
    pub cluster: bool,
    /// Prepended to every key, per deployment (e.g. `gm:prod:`), so that several
    /// deployments (or test runs) can share one Redis and `delete_prefix` never reaches
    /// another deployment's keys.
    pub key_prefix: String,
    /// TTL of cached player profiles: the longest a profile can lag behind its read model.
    pub profile_ttl_ms: u64,
    /// TTL of cached analytics results whose range lies in the past (ends before yesterday).
    pub query_ttl_ms: u64,
    /// TTL of cached analytics results that are still changing: ranges ending yesterday,
    /// today or later, and the (all-time) funnel.
    pub recent_query_ttl_ms: u64,
    /// TTL of a player's cached recommendation list. Lists move slowly (they blend the
    /// player's history with co-occurrence over everyone's), so a minute of lag is the
    /// default; an erasure deletes the player's lists at once whatever this is.
    pub recommendation_ttl_ms: u64,
    /// Upper bound of one cache operation (one round trip). A slow or dead Redis costs a
    /// request at most this much; after `breaker_threshold` consecutive failures the cache
    /// is skipped outright for `breaker_cooldown_ms`.
    pub op_timeout_ms: u64,
    /// Upper bound of establishing a connection (done in the background, never on a
    /// request's path).
    pub connect_timeout_ms: u64,
    /// Pause between background connection attempts while Redis is unreachable at start.
    pub reconnect_interval_ms: u64,
    /// Consecutive failures (errors or timeouts) after which the cache is bypassed...
    pub breaker_threshold: u32,
    /// ...for this long, before it is tried again.
    pub breaker_cooldown_ms: u64,
    /// At most this many background cache writes in flight; more are dropped (and counted).
    pub max_pending_writes: usize,
    /// After `invalidate_player`, read-through writes of that player's profile are refused
    /// for this long, so that a read that started before the erasure cannot put the
    /// profile back. Must exceed the longest store query (default 10 minutes).
    pub erasure_guard_ms: u64,
    /// Errors are logged at most once per this interval (with the count of those not logged).
    pub error_log_interval_ms: u64,
}

/// config/default.toml's `[redis]` (its `url` empty): the only place its defaults are written.
impl Default for RedisConfig {
    fn default() -> Self {
        gm_schemas::defaults::section("redis")
    }
}

impl RedisConfig {
    /// The defaults, with `url` and `key_prefix` set.
    pub fn new(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self { url: url.into(), key_prefix: key_prefix.into(), ..Self::default() }
    }
    /// Cluster mode with the given seed nodes (comma-separated URLs) and the defaults.
    pub fn cluster(urls: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self { cluster: true, ..Self::new(urls, key_prefix) }
    }
    /// The URLs of `url`: one, or the comma-separated seed nodes (blanks trimmed, empty
    /// entries dropped).
    pub fn urls(&self) -> Vec<&str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
    }
    pub fn profile_ttl(&self) -> Duration {
        Duration::from_millis(self.profile_ttl_ms)
    }
    pub fn query_ttl(&self) -> Duration {
        Duration::from_millis(self.query_ttl_ms)
    }
    pub fn recent_query_ttl(&self) -> Duration {
        Duration::from_millis(self.recent_query_ttl_ms)
    }
    pub fn recommendation_ttl(&self) -> Duration {
        Duration::from_millis(self.recommendation_ttl_ms)
    }
    pub fn op_timeout(&self) -> Duration {
        Duration::from_millis(self.op_timeout_ms.max(1))
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.max(1))
    }
    pub fn reconnect_interval(&self) -> Duration {
        Duration::from_millis(self.reconnect_interval_ms)
    }
    pub fn breaker_cooldown(&self) -> Duration {
        Duration::from_millis(self.breaker_cooldown_ms)
    }
    pub fn erasure_guard(&self) -> Duration {
        Duration::from_millis(self.erasure_guard_ms.max(1))
    }
    pub fn error_log_interval(&self) -> Duration {
        Duration::from_millis(self.error_log_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_files_with_no_cache() {
        let c = RedisConfig::new("redis://h:1", "gm:prod:");
        assert_eq!(c.url, "redis://h:1");
        assert_eq!(c.key_prefix, "gm:prod:");
        assert_eq!(c.op_timeout(), Duration::from_millis(50));
        assert_eq!(c.recent_query_ttl(), Duration::from_secs(5));
        assert!(!c.cluster, "single-node by default");
        assert_eq!(RedisConfig::default().url, "", "no cache unless a url is given");
        assert_eq!(RedisConfig::default().tls_ca_file, None);
    }

    #[test]
    fn cluster_mode_takes_comma_separated_seed_nodes() {
        let c = RedisConfig::cluster("redis://a:7000, redis://b:7001,", "p:");
        assert!(c.cluster);
        assert_eq!(c.urls(), ["redis://a:7000", "redis://b:7001"]);
        assert_eq!(
            RedisConfig::cluster("redis://a:1", "p:"),
            RedisConfig { cluster: true, ..RedisConfig::new("redis://a:1", "p:") }
        );
    }

    /// What the platform's layered configuration hands over: every field, a CA file or not.
    #[test]
    fn a_whole_section_parses_and_unknown_fields_are_refused() {
        let mut section: serde_json::Value =
            serde_json::to_value(gm_schemas::defaults::section::<serde_json::Map<String, serde_json::Value>>("redis"))
                .unwrap();
        section["tls_ca_file"] = "/etc/gm/redis-ca.pem".into();
        let c: RedisConfig = serde_json::from_value(section.clone()).unwrap();
        assert_eq!(c.tls_ca_file.as_deref(), Some("/etc/gm/redis-ca.pem"));
        section["op_timeout"] = 5.into();
        assert!(serde_json::from_value::<RedisConfig>(section).is_err());
    }
}
