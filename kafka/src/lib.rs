//! # gm-kafka
//!
//! The production implementation of [`gm_ports::EventLog`] on Apache Kafka (rdkafka /
//! librdkafka), with the same semantics as the embedded log:
//!
//! * **Topics** are created by [`KafkaLog::ensure_topics`] through the admin client with
//!   the partitions, replication factor and topic configs of [`TopicsConfig`] (DEV defaults,
//!   PROD values in [`TopicsConfig::production`]); existing topics are left alone.
//! * **Appends** ([`KafkaProducer`]) go through one idempotent producer with `acks=all`;
//!   each record's partition is set explicitly to [`gm_ports::partition_for`]`(key, n)`
//!   (Kafka's murmur2, so it matches the Java client and the embedded log), and `append`
//!   returns only after every record was acknowledged — a 202 means durable.
//! * **Consumers** ([`KafkaConsumer`]) are consumer-group members with manual commits,
//!   `read_committed` isolation and `auto.offset.reset=earliest`; `poll` announces
//!   `Assigned`/`Revoked` before records of the new assignment.
//! * **`commit_with_outputs`** is Kafka's consume-transform-produce transaction (KIP-447
//!   fencing by group generation).
//!
//! ## Offsets are not dense
//! Transaction markers (commit/abort control records) take offsets that no consumer ever
//! sees. So: the next offset to commit is the last record's offset + 1; `end_offsets` (the
//! last stable offset) can exceed the last data record's offset + 1; consecutive records
//! of a partition may have gaps. Code above this crate must not assume density (the actors
//! and projections already compute `last.offset + 1`).

mod config;
mod consumer;
pub mod context;
mod error;
pub mod failover;
mod log;

pub use config::{
    topic_names, Compression, ConsumerConfig, Extra, KafkaConfig, ProducerConfig, SaslMechanism, Secret,
    SecurityConfig, SecurityProtocol, TopicConfig, TopicsConfig,
};
pub use consumer::{GroupContext, KafkaConsumer};
pub use log::{KafkaLog, KafkaProducer};
