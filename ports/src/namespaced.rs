//! A log decorator that prefixes every topic and consumer-group name, so that several
//! deployments (or parallel test runs) share one Kafka cluster without seeing each other.
//! Domain code keeps using the logical names of DESIGN.md.

use crate::{EventLog, LogConsumer, LogError, LogProducer, NewRecord, Polled, Position, Record, TopicSpec};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

pub struct Namespaced {
    inner: Arc<dyn EventLog>,
    prefix: String,
}

impl Namespaced {
    pub fn new(inner: Arc<dyn EventLog>, prefix: impl Into<String>) -> Self {
        Self { inner, prefix: prefix.into() }
    }
}

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
