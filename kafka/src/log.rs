//! `KafkaLog`: the `EventLog` on a Kafka cluster — admin, idempotent producer, group
//! consumers, watermarks and partition reads.

use crate::config::{KafkaConfig, TopicConfig};
use crate::consumer::KafkaConsumer;
use crate::error::{join_err, map_err};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::join_all;
use gm_ports::{partition_for, EventLog, LogConsumer, LogError, LogProducer, NewRecord, Position, Record, TopicSpec};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer as RdBaseConsumer, Consumer};

use crate::context::ClientLog;

/// The clients of this crate log librdkafka's reports at their real level (see
/// [`crate::context`]).
pub(crate) type FutureProducer = RdFutureProducer<ClientLog>;
pub(crate) type BaseConsumer = RdBaseConsumer<ClientLog>;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer as RdFutureProducer, FutureRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Cached partition counts are re-read after this long (partitions may be added).
const PARTITIONS_TTL: Duration = Duration::from_secs(60);

/// The settings every client shares: brokers, identity, security, extras.
pub(crate) fn base_client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", &cfg.client_id)
        .set("security.protocol", cfg.security.protocol.as_librdkafka())
        .set("allow.auto.create.topics", "false")
        .set_log_level(RDKafkaLogLevel::Warning);
    let sec = &cfg.security;
    if sec.protocol.uses_sasl() {
        c.set("sasl.mechanism", sec.sasl_mechanism.as_librdkafka());
        if let Some(u) = &sec.sasl_username {
            c.set("sasl.username", u);
        }
        if let Some(p) = &sec.sasl_password {
            c.set("sasl.password", p.expose());
        }
    }
    if sec.protocol.uses_ssl() {
        if let Some(v) = &sec.ssl_ca_location {
            c.set("ssl.ca.location", v);
        }
        if let Some(v) = &sec.ssl_certificate_location {
            c.set("ssl.certificate.location", v);
        }
        if let Some(v) = &sec.ssl_key_location {
            c.set("ssl.key.location", v);
        }
        if let Some(v) = &sec.ssl_key_password {
            c.set("ssl.key.password", v.expose());
        }
    }
    for (k, v) in &cfg.extra.0 {
        c.set(k, v);
    }
    c
}

/// Producer settings: idempotent, acks=all, the configured batching and compression.
pub(crate) fn producer_client_config(cfg: &KafkaConfig) -> ClientConfig {
    let p = &cfg.producer;
    let mut c = base_client_config(cfg);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", p.linger_ms.to_string())
        .set("batch.size", p.batch_size.to_string())
        .set("batch.num.messages", "100000")
        .set("compression.type", p.compression.as_librdkafka())
        .set("message.timeout.ms", p.message_timeout_ms.to_string())
        .set("queue.buffering.max.kbytes", p.queue_buffering_max_kbytes.to_string())
        .set("queue.buffering.max.messages", "1000000");
    c
}

/// A client error turned into `Unavailable` (creation problems are configuration or
/// connectivity problems the caller may retry after fixing).
fn creation_err(what: &str, e: KafkaError) -> LogError {
    match e {
        KafkaError::ClientConfig(..) => LogError::Other(gm_ports::Cause::context(what, e)),
        _ => LogError::Unavailable(gm_ports::Cause::context(what, e)),
    }
}

pub(crate) struct Inner {
    pub(crate) config: KafkaConfig,
    admin: AdminClient<ClientLog>,
    producer: FutureProducer,
    /// For metadata and watermarks (read_committed: watermarks are last stable offsets).
    meta: Arc<BaseConsumer>,
    partitions: Mutex<HashMap<String, (u32, Instant)>>,
    /// A reusable assign-only reader for `read` (no group, no commits).
    reader: Mutex<Option<BaseConsumer>>,
    /// Set by [`KafkaLog::instrument`]: client metrics (queue depth, delivery latency,
    /// consumer lag) go to the role's registry.
    pub(crate) metrics: OnceLock<gm_telemetry::Metrics>,
}

impl Inner {
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms.max(1))
    }

    /// The partition count of `topic` (cached), `UnknownTopic` when it does not exist.
    pub(crate) async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        if let Ok(cache) = self.partitions.lock() {
            if let Some((n, at)) = cache.get(topic) {
                if at.elapsed() < PARTITIONS_TTL {
                    return Ok(*n);
                }
            }
        }
        let n = self.fetch_partitions(topic).await?;
        if let Ok(mut cache) = self.partitions.lock() {
            cache.insert(topic.to_string(), (n, Instant::now()));
        }
        Ok(n)
    }

    async fn fetch_partitions(&self, topic: &str) -> Result<u32, LogError> {
        let meta = self.meta.clone();
        let name = topic.to_string();
        let timeout = self.timeout();
        tokio::task::spawn_blocking(move || {
            let md = meta.fetch_metadata(Some(&name), timeout).map_err(|e| map_err(&name, &e))?;
            let Some(t) = md.topics().iter().find(|t| t.name() == name) else {
                return Err(LogError::UnknownTopic(name));
            };
            match t.error() {
                None if !t.partitions().is_empty() => Ok(t.partitions().len() as u32),
                None => Err(LogError::UnknownTopic(name)),
                Some(code) => {
                    let code = RDKafkaErrorCode::from(code);
                    if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                        Err(LogError::UnknownTopic(name))
                    } else {
                        Err(map_err(&name, &KafkaError::MetadataFetch(code)))
                    }
                }
            }
        })
        .await
        .map_err(join_err)?
    }

    fn forget_partitions(&self, topic: &str) {
        if let Ok(mut cache) = self.partitions.lock() {
            cache.remove(topic);
        }
    }
}

/// The Kafka log. Cheap to clone; clones share clients.
#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog").field("config", &self.inner.config).finish()
    }
}

impl KafkaLog {
    /// Creates the clients and checks that the cluster answers (metadata request), so a
    /// wrong address fails here with `Unavailable` rather than at the first append.
    pub async fn connect(config: KafkaConfig) -> Result<Self, LogError> {
        let admin: AdminClient<ClientLog> = base_client_config(&config)
            .create_with_context(ClientLog::new("admin"))
            .map_err(|e| creation_err("admin client", e))?;
        let producer: FutureProducer = producer_client_config(&config)
            .create_with_context(ClientLog::new("producer"))
            .map_err(|e| creation_err("producer", e))?;
        let meta: BaseConsumer = base_client_config(&config)
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .create_with_context(ClientLog::new("metadata"))
            .map_err(|e| creation_err("metadata client", e))?;
        let inner = Arc::new(Inner {
            config,
            admin,
            producer,
            meta: Arc::new(meta),
            partitions: Mutex::new(HashMap::new()),
            reader: Mutex::new(None),
            metrics: OnceLock::new(),
        });
        let meta = inner.meta.clone();
        let timeout = inner.timeout().min(Duration::from_secs(10));
        let brokers = inner.config.brokers.clone();
        tokio::task::spawn_blocking(move || meta.fetch_metadata(None, timeout).map(|_| ()))
            .await
            .map_err(join_err)?
            .map_err(|e| {
                LogError::Unavailable(gm_ports::Cause::context(format!("Kafka at {brokers} does not answer"), e))
            })?;
        Ok(Self { inner })
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.inner.config
    }

    /// Reports the clients' metrics into `metrics` (first call wins): the producer's queue
    /// depth and delivery latency, and — for consumers created afterwards — the lag of each
    /// assigned partition from librdkafka's statistics.
    pub fn instrument(&self, metrics: gm_telemetry::Metrics) {
        let _ = self.inner.metrics.set(metrics);
    }

    /// Readiness: whether the brokers answer the producer now — a metadata request for `topic`
    /// on the producer's own client, within `timeout` (one small request, for a periodic
    /// probe; never per append).
    pub async fn probe_producer(&self, topic: &str, timeout: Duration) -> Result<(), LogError> {
        let producer = self.inner.producer.clone();
        let name = topic.to_string();
        tokio::task::spawn_blocking(move || match producer.client().fetch_metadata(Some(&name), timeout) {
            Ok(md) if md.brokers().is_empty() => Err(LogError::Unavailable("no broker in the metadata".into())),
            Ok(_) => Ok(()),
            Err(e) => Err(LogError::Unavailable(
                format!("the brokers did not answer the producer's metadata request within {timeout:?}: {e}").into(),
            )),
        })
        .await
        .map_err(join_err)?
    }

    /// The partition count of a topic (cached for a minute).
    pub async fn partition_count(&self, topic: &str) -> Result<u32, LogError> {
        self.inner.partitions(topic).await
    }

    /// The concrete consumer behind [`EventLog::consumer`] (with extra controls for tests
    /// and tools, e.g. [`KafkaConsumer::with_transactional_id`]).
    pub async fn kafka_consumer(&self, group: &str, topic: &str) -> Result<KafkaConsumer, LogError> {
        KafkaConsumer::new(self.inner.clone(), group, topic).await
    }

    /// The concrete producer behind [`EventLog::producer`].
    pub fn kafka_producer(&self) -> KafkaProducer {
        KafkaProducer { inner: self.inner.clone() }
    }

    /// Deletes topics (tests and tools). Unknown topics are not an error.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<(), LogError> {
        let opts = AdminOptions::new().operation_timeout(Some(self.inner.timeout()));
        let results = self.inner.admin.delete_topics(names, &opts).await.map_err(|e| map_err("", &e))?;
        for r in results {
            match r {
                Ok(name) => self.inner.forget_partitions(&name),
                Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((name, code)) => return Err(LogError::Other(format!("delete topic {name}: {code}").into())),
            }
        }
        Ok(())
    }

    /// Waits until the metadata shows `topic` with `partitions` partitions, all with a leader.
    async fn wait_for_topic(&self, topic: &str, partitions: u32) -> Result<(), LogError> {
        let deadline = Instant::now() + self.inner.timeout();
        loop {
            let meta = self.inner.meta.clone();
            let name = topic.to_string();
            let timeout = self.inner.timeout();
            let ready = tokio::task::spawn_blocking(move || {
                meta.fetch_metadata(Some(&name), timeout).ok().and_then(|md| {
                    md.topics().iter().find(|t| t.name() == name && t.error().is_none()).map(|t| {
                        t.partitions().len() as u32 >= partitions
                            && t.partitions().iter().all(|p| p.leader() >= 0 && p.error().is_none())
                    })
                })
            })
            .await
            .map_err(join_err)?
            .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LogError::Unavailable(format!("topic {topic} did not become ready").into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Sends `records` in input order with their partition set to
/// `partition_for(key, partitions)` (Kafka's murmur2, stated explicitly rather than left to
/// the client's default partitioner). Waits (briefly) while the local queue is full, so
/// records are never reordered. The returned futures resolve on acknowledgement.
pub(crate) async fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    partitions: u32,
    records: &[NewRecord],
    queue_timeout: Duration,
) -> Result<Vec<DeliveryFuture>, LogError> {
    let mut futures = Vec::with_capacity(records.len());
    for r in records {
        let partition = partition_for(&r.key, partitions) as i32;
        let mut record = FutureRecord::to(topic).key(r.key.as_bytes()).partition(partition);
        // An empty payload is a tombstone: Kafka's compaction wants a null value for it.
        if !r.payload.is_empty() {
            record = record.payload(&r.payload);
        }
        if !r.headers.is_empty() {
            let headers = r.headers.iter().fold(OwnedHeaders::new_with_capacity(r.headers.len()), |h, (k, v)| {
                h.insert(Header { key: k, value: Some(v.as_bytes()) })
            });
            record = record.headers(headers);
        }
        let started = Instant::now();
        loop {
            match producer.send_result(record) {
                Ok(f) => {
                    futures.push(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if started.elapsed() >= queue_timeout {
                        return Err(LogError::Unavailable("producer queue full".into()));
                    }
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => return Err(map_err(topic, &e)),
            }
        }
    }
    Ok(futures)
}

/// Awaits every delivery; positions in input order, or the first error.
pub(crate) async fn await_deliveries(topic: &str, futures: Vec<DeliveryFuture>) -> Result<Vec<Position>, LogError> {
    let results = join_all(futures).await;
    let mut positions = Vec::with_capacity(results.len());
    let mut first_error = None;
    for r in results {
        match r {
            Ok(Ok(d)) => positions.push(Position { partition: d.partition as u32, offset: d.offset.max(0) as u64 }),
            Ok(Err((e, _))) => {
                first_error.get_or_insert_with(|| map_err(topic, &e));
            }
            Err(_) => {
                first_error.get_or_insert_with(|| LogError::Unavailable("producer dropped the delivery".into()));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(positions),
    }
}

/// The idempotent producer (acks=all) shared by every caller of [`EventLog::producer`].
#[derive(Clone)]
pub struct KafkaProducer {
    inner: Arc<Inner>,
}

#[async_trait]
impl LogProducer for KafkaProducer {
    /// Sends every record and returns only when ALL are acknowledged by the in-sync
    /// replicas (so the gateway's 202 means durable). On error some records may have been
    /// written; the caller retries and consumers dedup by event id.
    async fn append(&self, topic: &str, records: Vec<NewRecord>) -> Result<Vec<Position>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let partitions = self.inner.partitions(topic).await?;
        let queue_timeout = Duration::from_millis(u64::from(self.inner.config.producer.message_timeout_ms));
        let started = Instant::now();
        let metrics = self.inner.metrics.get();
        let queued = enqueue(&self.inner.producer, topic, partitions, &records, queue_timeout).await;
        if let Some(m) = metrics {
            m.kafka.producer_queue_messages.set(i64::from(self.inner.producer.in_flight_count()));
        }
        let delivered = match queued {
            Ok(futures) => await_deliveries(topic, futures).await,
            Err(e) => Err(e),
        };
        if let Some(m) = metrics {
            let labels = gm_telemetry::TopicLabels { topic: topic.to_string() };
            match &delivered {
                Ok(_) => m.kafka.delivery_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64()),
                Err(_) => {
                    m.kafka.delivery_errors.get_or_create(&labels).inc();
                }
            }
            m.kafka.producer_queue_messages.set(i64::from(self.inner.producer.in_flight_count()));
        }
        delivered
    }
}

pub(crate) fn to_record(m: &BorrowedMessage<'_>) -> Record {
    Record {
        topic: m.topic().to_string(),
        partition: m.partition().max(0) as u32,
        offset: m.offset().max(0) as u64,
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        timestamp: m.timestamp().to_millis().and_then(DateTime::<Utc>::from_timestamp_millis).unwrap_or_default(),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            h.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    /// Creates missing topics with the configured partitions, replication factor and
    /// topic configs (see [`crate::TopicsConfig::resolve`]); existing topics are left as
    /// they are ("already exists" is success). Returns once the new topics have leaders.
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), LogError> {
        if topics.iter().any(|t| t.partitions == 0 || t.name.is_empty()) {
            return Err(LogError::Other("a topic needs a name and at least one partition".into()));
        }
        if topics.is_empty() {
            return Ok(());
        }
        let resolved: Vec<(String, TopicConfig, Vec<(String, String)>)> = topics
            .iter()
            .map(|s| {
                let t = self.inner.config.topics.resolve(s);
                let configs = t.topic_configs();
                (s.name.clone(), t, configs)
            })
            .collect();
        let new_topics: Vec<NewTopic<'_>> = resolved
            .iter()
            .map(|(name, t, configs)| {
                let mut nt =
                    NewTopic::new(name, t.partitions as i32, TopicReplication::Fixed(i32::from(t.replication_factor)));
                for (k, v) in configs {
                    nt = nt.set(k, v);
                }
                nt
            })
            .collect();
        let opts = AdminOptions::new()
            .operation_timeout(Some(self.inner.timeout()))
            .request_timeout(Some(self.inner.timeout()));
        let results = self.inner.admin.create_topics(&new_topics, &opts).await.map_err(|e| map_err("", &e))?;
        let mut created = Vec::new();
        for r in results {
            match r {
                Ok(name) => created.push(name),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    let e = map_err(&name, &KafkaError::AdminOp(code));
                    return Err(match e {
                        LogError::Other(m) => {
                            LogError::Other(gm_ports::Cause::context(format!("create topic {name}"), m))
                        }
                        LogError::UnknownTopic(m) => LogError::Other(format!("create topic {name}: {m}").into()),
                        other => other,
                    });
                }
            }
        }
        for name in &created {
            self.inner.forget_partitions(name);
            let partitions = resolved.iter().find(|(n, ..)| n == name).map_or(1, |(_, t, _)| t.partitions);
            self.wait_for_topic(name, partitions).await?;
            tracing::info!(topic = %name, partitions, "topic created");
        }
        Ok(())
    }

    fn producer(&self) -> Arc<dyn LogProducer> {
        Arc::new(self.kafka_producer())
    }

    async fn consumer(&self, group: &str, topic: &str) -> Result<Box<dyn LogConsumer>, LogError> {
        Ok(Box::new(self.kafka_consumer(group, topic).await?))
    }

    /// The next offset per partition as a read_committed reader sees it: the last stable
    /// offset (LSO), which equals the high watermark unless a transaction is open on the
    /// partition. Offsets are not dense (transaction markers take offsets), so this can be
    /// larger than the last data record's offset + 1.
    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, LogError> {
        let partitions = self.inner.partitions(topic).await?;
        let meta = self.inner.meta.clone();
        let name = topic.to_string();
        let timeout = self.inner.timeout();
        tokio::task::spawn_blocking(move || {
            (0..partitions as i32)
                .map(|p| {
                    meta.fetch_watermarks(&name, p, timeout)
                        .map(|(_, high)| high.max(0) as u64)
                        .map_err(|e| map_err(&name, &e))
                })
                .collect()
        })
        .await
        .map_err(join_err)?
    }

    /// Reads committed records of one partition from `from` (at most `max`), with an
    /// assign-only consumer (no group, nothing committed). Stops at the end of the
    /// partition (partition EOF) or after `max` records. Returned offsets are not dense.
    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<Record>, LogError> {
        let partitions = self.inner.partitions(topic).await?;
        if partition >= partitions {
            return Err(LogError::Other(format!("topic {topic} has no partition {partition}").into()));
        }
        if max == 0 {
            return Ok(Vec::new());
        }
        let reader = self.inner.reader.lock().ok().and_then(|mut r| r.take());
        let reader = match reader {
            Some(r) => r,
            None => base_client_config(&self.inner.config)
                .set("isolation.level", "read_committed")
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "true")
                // assign() needs a group id; this group never joins, fetches or commits.
                .set(
                    "group.id",
                    format!("{}reader-{}", self.inner.config.transactional_id_prefix, uuid::Uuid::new_v4().simple()),
                )
                .create_with_context::<_, BaseConsumer>(ClientLog::new("reader"))
                .map_err(|e| creation_err("reader", e))?,
        };
        let name = topic.to_string();
        let timeout = self.inner.timeout();
        let (reader, result) = tokio::task::spawn_blocking(move || {
            let result = read_blocking(&reader, &name, partition, from, max, timeout);
            (reader, result)
        })
        .await
        .map_err(join_err)?;
        if result.is_ok() {
            if let Ok(mut slot) = self.inner.reader.lock() {
                *slot = Some(reader);
            }
        }
        result
    }
}

fn read_blocking(
    reader: &BaseConsumer,
    topic: &str,
    partition: u32,
    from: u64,
    max: usize,
    timeout: Duration,
) -> Result<Vec<Record>, LogError> {
    let (_, end) = reader.fetch_watermarks(topic, partition as i32, timeout).map_err(|e| map_err(topic, &e))?;
    let end = end.max(0) as u64;
    if from >= end {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition as i32, Offset::Offset(from as i64)).map_err(|e| map_err(topic, &e))?;
    reader.assign(&tpl).map_err(|e| map_err(topic, &e))?;
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let result = loop {
        if out.len() >= max {
            break Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            break if out.is_empty() {
                Err(LogError::Unavailable(
                    format!("no records from {topic}/{partition} at {from} within {timeout:?}").into(),
                ))
            } else {
                Ok(())
            };
        }
        match reader.poll(deadline - now) {
            None => {}
            Some(Ok(m)) if m.partition() as u32 == partition && m.offset() >= from as i64 => {
                let r = to_record(&m);
                let next = r.offset + 1;
                out.push(r);
                if next >= end {
                    break Ok(());
                }
            }
            Some(Ok(_)) => {}
            Some(Err(KafkaError::PartitionEOF(_))) => break Ok(()),
            Some(Err(e))
                if !crate::error::is_retriable_code(e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail)) =>
            {
                break Err(map_err(topic, &e));
            }
            Some(Err(_)) => {}
        }
    };
    let _ = reader.unassign();
    result.map(|()| out)
}
