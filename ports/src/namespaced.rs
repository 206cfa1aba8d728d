//! A log decorator that puts every topic and consumer-group name in a namespace, so that
//! several deployments (or parallel test runs) share one Kafka cluster without seeing each
//! other: namespace `sbs` turns `player.events.raw` into `sbs.player.events.raw` and the group
//! `actors` into `sbs.actors`. Domain code keeps using the logical names of
//! docs/design.md#topics.

use crate::{EventLog, LogConsumer, LogError, LogProducer, NewRecord, Polled, Position, Record, TopicSpec};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

pub struct Namespaced {
    inner: Arc<dyn EventLog>,
    prefix: String,
}

/// What joins a namespace and a logical name.
pub const SEPARATOR: char = '.';

/// The name `name` (a topic or a consumer group) has on the broker in `namespace`: the
/// namespace, [`SEPARATOR`], the name; an empty namespace leaves the name as it is.
pub fn physical_name(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}{SEPARATOR}{name}")
    }
}

/// Why a namespace cannot name topics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceError {
    #[error("'{namespace}' contains '{c}'; use letters, digits, '.', '_' and '-'")]
    Character { namespace: String, c: char },
    #[error(
        "'{namespace}' starts or ends with '{SEPARATOR}', which the platform adds itself: set '{trimmed}' (topics become {raw})"
    )]
    Separator { namespace: String, trimmed: String, raw: String },
    #[error("'{namespace}' is longer than 150 characters (Kafka topic names stop at 249)")]
    TooLong { namespace: String },
}

/// Why `namespace` cannot name topics, if it cannot: Kafka allows `[A-Za-z0-9._-]` in topic
/// names, and the separator belongs to the platform, so a namespace neither starts nor ends
/// with it (`sbs`, not `sbs.`). The empty namespace (no prefix at all) is valid.
pub fn check_namespace(namespace: &str) -> Result<(), NamespaceError> {
    if namespace.is_empty() {
        return Ok(());
    }
    if let Some(c) = namespace.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(NamespaceError::Character { namespace: namespace.to_string(), c });
    }
    if namespace.starts_with(SEPARATOR) || namespace.ends_with(SEPARATOR) {
        let trimmed = namespace.trim_matches(SEPARATOR).to_string();
        let raw = physical_name(&trimmed, "player.events.raw");
        return Err(NamespaceError::Separator { namespace: namespace.to_string(), trimmed, raw });
    }
    if namespace.len() > 150 {
        return Err(NamespaceError::TooLong { namespace: namespace.to_string() });
    }
    Ok(())
}

impl Namespaced {
    /// `namespace` is the bare name (`sbs`); an empty one changes no name.
    pub fn new(inner: Arc<dyn EventLog>, namespace: &str) -> Self {
        Self { inner, prefix: physical_name(namespace, "") }
    }
}

/// `prefix` is the namespace with its separator (`sbs.`), or empty.
fn physical(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}

fn logical(prefix: &str, mut records: Vec<Record>) -> Vec<Record> {
    for r in &mut records {
        if let Some(stripped) = r.topic.strip_prefix(prefix) {
            r.topic = stripped.to_string();
        }
    }
    records
}

#[async_trait]
impl EventLog for Namespaced {
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), LogError> {
        let specs: Vec<TopicSpec> =
            topics.iter().map(|t| TopicSpec { name: physical(&self.prefix, &t.name), ..t.clone() }).collect();
        self.inner.ensure_topics(&specs).await
    }

    fn producer(&self) -> Arc<dyn LogProducer> {
        Arc::new(NamespacedProducer { inner: self.inner.producer(), prefix: self.prefix.clone() })
    }

    async fn consumer(&self, group: &str, topic: &str) -> Result<Box<dyn LogConsumer>, LogError> {
        let inner = self.inner.consumer(&physical(&self.prefix, group), &physical(&self.prefix, topic)).await?;
        Ok(Box::new(NamespacedConsumer { inner: tokio::sync::Mutex::new(inner), prefix: self.prefix.clone() }))
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, LogError> {
        self.inner.end_offsets(&physical(&self.prefix, topic)).await
    }

    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<Record>, LogError> {
        let records = self.inner.read(&physical(&self.prefix, topic), partition, from, max).await?;
        Ok(logical(&self.prefix, records))
    }
}

struct NamespacedProducer {
    inner: Arc<dyn LogProducer>,
    prefix: String,
}

#[async_trait]
impl LogProducer for NamespacedProducer {
    async fn append(&self, topic: &str, records: Vec<NewRecord>) -> Result<Vec<Position>, LogError> {
        self.inner.append(&physical(&self.prefix, topic), records).await
    }
}

struct NamespacedConsumer {
    // A mutex only so that `committed(&self)` is Send; `&mut self` methods bypass it.
    inner: tokio::sync::Mutex<Box<dyn LogConsumer>>,
    prefix: String,
}

#[async_trait]
impl LogConsumer for NamespacedConsumer {
    async fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Polled, LogError> {
        Ok(match self.inner.get_mut().poll(max_records, timeout).await? {
            Polled::Records(records) => Polled::Records(logical(&self.prefix, records)),
            other => other,
        })
    }
    fn seek(&mut self, partition: u32, offset: u64) {
        self.inner.get_mut().seek(partition, offset)
    }
    async fn committed(&self, partition: u32) -> Result<Option<u64>, LogError> {
        self.inner.lock().await.committed(partition).await
    }
    async fn commit(&mut self, offsets: &[Position]) -> Result<(), LogError> {
        self.inner.get_mut().commit(offsets).await
    }
    async fn commit_with_outputs_to(
        &mut self,
        outputs: Vec<(String, Vec<NewRecord>)>,
        offsets: &[Position],
    ) -> Result<(), LogError> {
        let outputs = outputs.into_iter().map(|(topic, records)| (physical(&self.prefix, &topic), records)).collect();
        self.inner.get_mut().commit_with_outputs_to(outputs, offsets).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn the_namespace_and_the_name_are_joined_by_the_separator() {
        assert_eq!(physical_name("sbs", "player.events.raw"), "sbs.player.events.raw");
        assert_eq!(physical_name("sbs", "projection.sessions"), "sbs.projection.sessions");
        assert_eq!(physical_name("", "player.events.raw"), "player.events.raw");
        assert_eq!(physical_name("", "actors"), "actors");
    }

    #[test]
    fn a_namespace_is_checked() {
        for ok in ["", "sbs", "team-a", "eu.prod_2"] {
            assert_eq!(check_namespace(ok), Ok(()), "{ok}");
        }
        let e = check_namespace("sbs.").unwrap_err().to_string();
        assert!(e.contains("set 'sbs'") && e.contains("sbs.player.events.raw"), "{e}");
        assert!(check_namespace(".sbs").is_err());
        assert!(check_namespace("s b").unwrap_err().to_string().contains("' '"));
        assert!(check_namespace("a/b").is_err());
        assert!(check_namespace(&"x".repeat(151)).is_err());
    }

    /// Records the names the decorator hands to the log underneath.
    #[derive(Default)]
    struct Recording {
        names: Arc<Mutex<Vec<String>>>,
    }

    struct RecordingProducer {
        names: Arc<Mutex<Vec<String>>>,
    }

    #[async_trait]
    impl LogProducer for RecordingProducer {
        async fn append(&self, topic: &str, records: Vec<NewRecord>) -> Result<Vec<Position>, LogError> {
            self.names.lock().unwrap().push(topic.to_string());
            Ok(records.iter().map(|_| Position { partition: 0, offset: 0 }).collect())
        }
    }

    #[async_trait]
    impl EventLog for Recording {
        async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), LogError> {
            self.names.lock().unwrap().extend(topics.iter().map(|t| t.name.clone()));
            Ok(())
        }
        fn producer(&self) -> Arc<dyn LogProducer> {
            Arc::new(RecordingProducer { names: self.names.clone() })
        }
        async fn consumer(&self, group: &str, topic: &str) -> Result<Box<dyn LogConsumer>, LogError> {
            self.names.lock().unwrap().extend([group.to_string(), topic.to_string()]);
            Err(LogError::Unavailable("recording only".into()))
        }
        async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, LogError> {
            self.names.lock().unwrap().push(topic.to_string());
            Ok(vec![0])
        }
        async fn read(&self, topic: &str, partition: u32, from: u64, _max: usize) -> Result<Vec<Record>, LogError> {
            self.names.lock().unwrap().push(topic.to_string());
            Ok(vec![Record {
                topic: topic.to_string(),
                partition,
                offset: from,
                key: "demo:alice".into(),
                payload: Vec::new(),
                timestamp: chrono::Utc::now(),
                headers: Vec::new(),
            }])
        }
    }

    async fn names_seen(namespace: &str) -> (Vec<String>, String) {
        let inner = Arc::new(Recording::default());
        let log = Namespaced::new(inner.clone(), namespace);
        let spec = TopicSpec { name: "player.events.raw".into(), partitions: 3, compacted: false };
        log.ensure_topics(&[spec]).await.unwrap();
        assert!(log.consumer("actors", "player.events.raw").await.is_err());
        log.end_offsets("player.events.processed").await.unwrap();
        log.producer().append("recommendations.generated", vec![NewRecord::new("k", Vec::new())]).await.unwrap();
        let read = log.read("system.dlq", 0, 0, 1).await.unwrap();
        let names = inner.names.lock().unwrap().clone();
        (names, read[0].topic.clone())
    }

    #[tokio::test]
    async fn topics_and_groups_get_the_namespace_and_records_come_back_with_logical_names() {
        let (names, read_topic) = names_seen("sbs").await;
        assert_eq!(
            names,
            [
                "sbs.player.events.raw",
                "sbs.actors",
                "sbs.player.events.raw",
                "sbs.player.events.processed",
                "sbs.recommendations.generated",
                "sbs.system.dlq"
            ]
        );
        assert_eq!(read_topic, "system.dlq");

        let (names, read_topic) = names_seen("").await;
        assert_eq!(
            names,
            [
                "player.events.raw",
                "actors",
                "player.events.raw",
                "player.events.processed",
                "recommendations.generated",
                "system.dlq"
            ]
        );
        assert_eq!(read_topic, "system.dlq");
    }
}
