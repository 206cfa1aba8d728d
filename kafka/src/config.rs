//! Configuration of the Kafka log: connection and security, producer and consumer tuning,
//! and the topics the platform creates.
//!
//! Every default is in config/default.toml (`[kafka]` and its tables), read by
//! [`KafkaConfig::default`]; the platform layers a file and the environment over it, so they
//! only name what differs:
//!
//! ```toml
//! [kafka]
//! brokers = "kafka-0.kafka:9093,kafka-1.kafka:9093"
//! client_id = "gamemetrics-gateway"
//! transactional_id_prefix = "gamemetrics-"
//!
//! [kafka.security]
//! protocol = "sasl_ssl"                 # plaintext | ssl | sasl_plaintext | sasl_ssl
//! sasl_mechanism = "SCRAM-SHA-512"
//! sasl_username = "gamemetrics"
//! sasl_password = "…"                   # never printed by Debug
//! ssl_ca_location = "/etc/kafka/ca.crt"
//!
//! [kafka.producer]
//! linger_ms = 5
//! batch_size = 1048576
//! compression = "lz4"                   # none | lz4 | zstd
//!
//! [kafka.consumer]
//! session_timeout_ms = 10000
//! max_poll_records = 5000
//!
//! [kafka.topics.raw]
//! partitions = 12
//! replication_factor = 3
//! min_insync_replicas = 2
//! ```
//!
//! `acks=all` and `enable.idempotence=true` are not configurable: an event acknowledged to
//! a client must never be lost or duplicated by a producer retry.

use gm_ports::TopicSpec;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// Names of the platform's topics (same strings as `gm_schemas::topics`).
pub mod topic_names {
    pub const RAW: &str = "player.events.raw";
    pub const PROCESSED: &str = "player.events.processed";
    pub const RECOMMENDATIONS: &str = "recommendations.generated";
    pub const DLQ: &str = "system.dlq";
}

const SEVEN_DAYS_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// A secret string: deserialised like a string, never printed by `Debug`/`Display`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret value, for handing to the client library only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"***\"")
        }
    }
}

/// The whole Kafka configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub brokers: String,
    /// `client.id`, visible in broker logs and quotas.
    pub client_id: String,
    pub security: SecurityConfig,
    pub producer: ProducerConfig,
    pub consumer: ConsumerConfig,
    pub topics: TopicsConfig,
    /// Prefix of the transactional ids of consume-transform-produce transactions. Each
    /// consumer-group member uses `prefix + group + "-" + <unique member suffix>`; fencing of
    /// zombies is by the group generation (KIP-447), not by reuse of the id.
    pub transactional_id_prefix: String,
    /// Timeout of admin, metadata, offset and transaction calls, in milliseconds.
    pub request_timeout_ms: u64,
    /// Extra librdkafka properties applied to every client (escape hatch; values are not
    /// printed by `Debug`, in case one holds a secret).
    #[serde(default)]
    pub extra: Extra,
}

/// config/default.toml's `[kafka]`: the only place its defaults are written.
impl Default for KafkaConfig {
    fn default() -> Self {
        gm_schemas::defaults::section("kafka")
    }
}

impl KafkaConfig {
    /// Defaults with the given brokers (development topic sizes).
    pub fn with_brokers(brokers: impl Into<String>) -> Self {
        Self { brokers: brokers.into(), ..Self::default() }
    }
}

/// Extra librdkafka properties; `Debug` shows the keys only.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Extra(pub BTreeMap<String, String>);

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
    pub fn uses_ssl(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum SaslMechanism {
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "PLAIN")]
    Plain,
}

impl SaslMechanism {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::Plain => "PLAIN",
        }
    }
}

/// How to reach the brokers (Strimzi: `sasl_ssl` + SCRAM-SHA-512 and the cluster CA).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    pub protocol: SecurityProtocol,
    pub sasl_mechanism: SaslMechanism,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<Secret>,
    /// `ssl.ca.location`: CA certificate(s) that signed the brokers' certificates.
    pub ssl_ca_location: Option<String>,
    /// `ssl.certificate.location`: client certificate (mutual TLS).
    pub ssl_certificate_location: Option<String>,
    /// `ssl.key.location`: client private key (mutual TLS).
    pub ssl_key_location: Option<String>,
    pub ssl_key_password: Option<Secret>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// Producer tuning, throughput-minded. `acks=all` and idempotence are always on.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerConfig {
    /// `linger.ms`: how long a batch may wait for more records.
    pub linger_ms: u32,
    /// `batch.size` in bytes.
    pub batch_size: u32,
    pub compression: Compression,
    /// `message.timeout.ms`: an append fails (503) if not acknowledged within this time.
    pub message_timeout_ms: u32,
    /// `queue.buffering.max.kbytes`: the producer's local buffer.
    pub queue_buffering_max_kbytes: u32,
    /// `transaction.timeout.ms` of the consume-transform-produce transactions. A member that
    /// crashes mid-transaction blocks read_committed readers of the output partitions and
    /// the group's offset fetch (unstable offsets) until this expires, so keep it short
    /// (Kafka Streams uses 10 s for exactly-once); it caps `message.timeout.ms` of the
    /// transactional producer.
    pub transaction_timeout_ms: u32,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        KafkaConfig::default().producer
    }
}

/// Consumer-group tuning. `enable.auto.commit=false`, `isolation.level=read_committed` and
/// `auto.offset.reset=earliest` are always set.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// `session.timeout.ms`: a member silent this long is removed from the group
    /// (the broker's `group.min.session.timeout.ms`, 6000 by default, is the floor).
    pub session_timeout_ms: u32,
    /// `heartbeat.interval.ms`; at most a third of the session timeout.
    pub heartbeat_interval_ms: u32,
    /// `max.poll.interval.ms`: a member that does not poll this long leaves the group.
    pub max_poll_interval_ms: u32,
    /// Upper bound on the records one `poll` returns (the caller's `max_records` is
    /// capped by it).
    pub max_poll_records: usize,
    /// `partition.assignment.strategy`: `cooperative-sticky` (incremental: only moved
    /// partitions are revoked) or an eager one such as `range,roundrobin`.
    pub assignment_strategy: String,
    /// `fetch.max.bytes`.
    pub fetch_max_bytes: u32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        KafkaConfig::default().consumer
    }
}

/// Settings of one topic, applied when `ensure_topics` creates it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    pub partitions: u32,
    pub replication_factor: u16,
    /// Topic-level `min.insync.replicas` (with acks=all: how many replicas must have a
    /// record before it is acknowledged).
    pub min_insync_replicas: u16,
    /// `cleanup.policy=compact` when true, `delete` otherwise.
    pub compacted: bool,
    /// `retention.ms` (`-1`: forever; for a compacted topic the latest record of each key
    /// is kept whatever this says).
    pub retention_ms: i64,
    /// Further topic configs (e.g. `segment.bytes`).
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

impl TopicConfig {
    /// The production shape of the platform's readiness review: 3 replicas, 2 in sync.
    fn prod(partitions: u32, compacted: bool) -> Self {
        Self {
            partitions,
            replication_factor: 3,
            min_insync_replicas: 2,
            compacted,
            retention_ms: if compacted { -1 } else { SEVEN_DAYS_MS },
            configs: BTreeMap::new(),
        }
    }

    /// The topic configs to create the topic with (`cleanup.policy`, `min.insync.replicas`,
    /// `retention.ms`, then `configs`).
    pub fn topic_configs(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("cleanup.policy".to_string(), if self.compacted { "compact" } else { "delete" }.to_string()),
            ("min.insync.replicas".to_string(), self.min_insync_replicas.to_string()),
        ];
        out.push(("retention.ms".to_string(), self.retention_ms.to_string()));
        for (k, v) in &self.configs {
            out.retain(|(key, _)| key != k);
            out.push((k.clone(), v.clone()));
        }
        out
    }
}

/// The platform's topics.
///
/// | topic | DEV (default) | PROD ([`TopicsConfig::production`]) |
/// |---|---|---|
/// | `player.events.raw` | 3 partitions, RF 1, min ISR 1, retention 7 d | 12, RF 3, min ISR 2, retention 7 d |
/// | `player.events.processed` | 3, RF 1, min ISR 1 | 6, RF 3, min ISR 2 |
/// | `recommendations.generated` | 3, RF 1, compacted | 6, RF 3, min ISR 2, `cleanup.policy=compact` |
/// | `system.dlq` | 1, RF 1 | 3, RF 3, min ISR 2 |
///
/// Topics not named here (e.g. tests' random topics) are created with the `TopicSpec`
/// they are asked for and [`TopicsConfig::default_replication_factor`] /
/// [`TopicsConfig::default_min_insync_replicas`].
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    pub raw: TopicConfig,
    pub processed: TopicConfig,
    pub recommendations: TopicConfig,
    pub dlq: TopicConfig,
    pub default_replication_factor: u16,
    pub default_min_insync_replicas: u16,
    /// `retention.ms` of the topics not named here.
    pub default_retention_ms: i64,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        KafkaConfig::default().topics
    }
}

impl TopicsConfig {
    /// The production values of the platform's readiness review.
    pub fn production() -> Self {
        Self {
            raw: TopicConfig::prod(12, false),
            processed: TopicConfig::prod(6, false),
            recommendations: TopicConfig::prod(6, true),
            dlq: TopicConfig::prod(3, false),
            default_replication_factor: 3,
            default_min_insync_replicas: 2,
            default_retention_ms: SEVEN_DAYS_MS,
        }
    }

    /// The settings of a platform topic by name.
    pub fn get(&self, name: &str) -> Option<&TopicConfig> {
        match name {
            topic_names::RAW => Some(&self.raw),
            topic_names::PROCESSED => Some(&self.processed),
            topic_names::RECOMMENDATIONS => Some(&self.recommendations),
            topic_names::DLQ => Some(&self.dlq),
            _ => None,
        }
    }

    /// The platform's topics as `TopicSpec`s, for `EventLog::ensure_topics`.
    pub fn specs(&self) -> Vec<TopicSpec> {
        [
            (topic_names::RAW, &self.raw),
            (topic_names::PROCESSED, &self.processed),
            (topic_names::RECOMMENDATIONS, &self.recommendations),
            (topic_names::DLQ, &self.dlq),
        ]
        .into_iter()
        .map(|(name, t)| TopicSpec { name: name.to_string(), partitions: t.partitions, compacted: t.compacted })
        .collect()
    }

    /// What a `TopicSpec` is created with: the configured settings for a platform topic
    /// (they win over the spec's partition count, with a warning when they differ), the
    /// spec plus the default replication otherwise.
    pub fn resolve(&self, spec: &TopicSpec) -> TopicConfig {
        match self.get(&spec.name) {
            Some(cfg) => {
                if cfg.partitions != spec.partitions || cfg.compacted != spec.compacted {
                    tracing::warn!(
                        topic = %spec.name,
                        requested_partitions = spec.partitions,
                        configured_partitions = cfg.partitions,
                        "topic spec differs from the Kafka topic configuration; the configuration wins"
                    );
                }
                cfg.clone()
            }
            None => TopicConfig {
                partitions: spec.partitions,
                replication_factor: self.default_replication_factor,
                min_insync_replicas: self.default_min_insync_replicas,
                compacted: spec.compacted,
                retention_ms: self.default_retention_ms,
                configs: BTreeMap::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_secrets() {
        let cfg = KafkaConfig {
            security: serde_json::from_value(serde_json::json!({
                "protocol": "sasl_ssl",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": "gm",
                "sasl_password": "hunter2-very-secret",
                "ssl_key_password": "key-secret"
            }))
            .unwrap(),
            extra: serde_json::from_value(serde_json::json!({ "sasl.oauthbearer.client.secret": "extra-secret" }))
                .unwrap(),
            ..KafkaConfig::default()
        };
        let printed = format!("{cfg:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("key-secret"), "{printed}");
        assert!(!printed.contains("extra-secret"), "{printed}");
        assert!(printed.contains("sasl.oauthbearer.client.secret"));
        assert_eq!(cfg.security.sasl_password.as_ref().unwrap().expose(), "hunter2-very-secret");
        assert_eq!(cfg.security.protocol, SecurityProtocol::SaslSsl);
    }

    #[test]
    fn defaults_are_dev_and_production_matches_the_review() {
        let dev = TopicsConfig::default();
        assert_eq!(dev.specs().iter().map(|s| s.partitions).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
        assert!(dev.recommendations.compacted);
        assert_eq!(dev.raw.replication_factor, 1);
        let prod = TopicsConfig::production();
        assert_eq!(prod.specs().iter().map(|s| s.partitions).collect::<Vec<_>>(), vec![12, 6, 6, 3]);
        assert!(prod.specs()[2].compacted);
        for t in [&prod.raw, &prod.processed, &prod.recommendations, &prod.dlq] {
            assert_eq!((t.replication_factor, t.min_insync_replicas), (3, 2));
        }
        let raw = prod.raw.topic_configs();
        assert!(raw.contains(&("retention.ms".into(), "604800000".into())));
        assert!(prod.recommendations.topic_configs().contains(&("cleanup.policy".into(), "compact".into())));
        let p = ProducerConfig::default();
        assert_eq!((p.linger_ms, p.batch_size, p.compression), (5, 1_048_576, Compression::Lz4));
    }

    #[test]
    fn the_defaults_are_the_files_and_unknown_topics_use_the_spec() {
        let cfg = KafkaConfig::default();
        assert_eq!(cfg.brokers, "127.0.0.1:9092");
        assert_eq!(cfg.security.protocol, SecurityProtocol::Plaintext);
        assert!(cfg.security.sasl_username.is_none());
        assert_eq!(cfg.consumer.assignment_strategy, "cooperative-sticky");
        assert_eq!(cfg.topics.dlq.partitions, 1);
        let t = cfg.topics.resolve(&TopicSpec { name: "test-x".into(), partitions: 7, compacted: true });
        assert_eq!((t.partitions, t.compacted, t.replication_factor), (7, true, 1));
    }
}
