//! `KafkaConsumer`: a consumer-group member on one topic, with its own transactional
//! producer for consume-transform-produce.
//!
//! # Assignment announcements
//! Rebalances run inside librdkafka's poll, which calls our [`GroupContext`]: it records
//! `Revoked` (before the partitions go) and `Assigned` (after they were assigned) in a
//! queue. `poll` returns queued announcements before anything else, and records fetched
//! afterwards can only belong to partitions assigned by then, so `Polled::Assigned(ps)`
//! always comes before the first record of `ps`. Records buffered from a partition that
//! is then revoked are dropped.
//!
//! # Seeks
//! librdkafka refuses to seek a partition whose fetcher has not started yet ("Erroneous
//! state" right after an assignment, while the committed offset is being fetched). So
//! `seek` only records the wish; every `poll` tries the pending seeks (`seek_partitions`),
//! keeps those that failed for the next attempt, and drops every record of a partition
//! while its seek is pending. Once a seek succeeded, records of that partition already
//! buffered are dropped and later ones below the target are filtered out (librdkafka's
//! op versioning already discards stale fetches).
//!
//! # Transactions (exactly-once consume-transform-produce)
//! `commit_with_outputs` uses a transactional producer owned by this member
//! (`transactional.id = prefix + group + "-" + unique suffix`, `init_transactions` once):
//! begin, send outputs and await them, `send_offsets_to_transaction` with the consumer's
//! group metadata, commit. Zombie fencing is KIP-447's: the offsets carry the member id
//! and generation, so a member that was rebalanced away fails with `ILLEGAL_GENERATION` /
//! `UNKNOWN_MEMBER_ID` → the transaction is aborted and `LogError::Fenced` is returned. A
//! producer fenced by a newer producer with the same transactional id (fatal error) is
//! dropped and `Fenced` returned; the next call creates a fresh one. Other errors abort
//! the transaction and return `Unavailable` (retry) or `Other`.
//!
//! Downstream consumers read `read_committed`: outputs of aborted transactions are never
//! seen. Because transaction markers occupy offsets, offsets are NOT dense: the next
//! offset to commit is `last record's offset + 1` (never `first + count`), and an end
//! offset may be one or more past the last data record.
//!
//! # Fencing compared with the embedded log
//! The embedded log fences a commit when the stored offset moved since this member last
//! saw it. Kafka fences by group generation instead: a member that still owns a partition
//! in the current generation may commit any offset (plain `commit` as well as
//! transactional ones), and a member of an older generation is refused (`Fenced`).

use crate::context::{report_error, report_log, ClientLog};
use crate::error::{is_group_fencing_code, is_producer_fencing_code, join_err, map_err};
use crate::log::{
    await_deliveries, base_client_config, enqueue, producer_client_config, to_record, FutureProducer, Inner,
};
use async_trait::async_trait;
use futures::FutureExt;
use gm_ports::{Cause, LogConsumer, LogError, NewRecord, Polled, Position, Record};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A change of membership seen in a rebalance callback.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Membership {
    Assigned(Vec<u32>),
    Revoked(Vec<u32>),
}

/// Records rebalances for `poll` to announce; reports lag from librdkafka's statistics.
pub struct GroupContext {
    topic: String,
    events: Mutex<VecDeque<Membership>>,
    group: String,
    metrics: Option<gm_telemetry::Metrics>,
    /// Partitions whose lag series we export, so that revoked ones are removed.
    lag_reported: Mutex<BTreeSet<i32>>,
}

impl GroupContext {
    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<u32> {
        let mut ps: Vec<u32> =
            tpl.elements_for_topic(&self.topic).iter().map(|e| e.partition().max(0) as u32).collect();
        ps.sort_unstable();
        ps.dedup();
        ps
    }
    fn push(&self, m: Membership) {
        if let Ok(mut events) = self.events.lock() {
            events.push_back(m);
        }
    }
    fn pop(&self) -> Option<Membership> {
        self.events.lock().ok().and_then(|mut e| e.pop_front())
    }
    fn count_rebalance(&self, kind: &str) {
        if let Some(m) = &self.metrics {
            let labels = gm_telemetry::RebalanceLabels { group: self.group.clone(), kind: kind.to_string() };
            m.kafka.rebalances.get_or_create(&labels).inc();
        }
    }
    fn lag_labels(&self, partition: i32) -> gm_telemetry::PartitionLabels {
        gm_telemetry::PartitionLabels {
            group: self.group.clone(),
            topic: self.topic.clone(),
            partition: partition.to_string(),
        }
    }
}

impl ClientContext for GroupContext {
    /// At the level of what it means (an end of partition is not an error): see
    /// [`crate::context`].
    fn error(&self, error: KafkaError, reason: &str) {
        report_error(&format!("consumer of {} ({})", self.topic, self.group), &error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        report_log(&format!("consumer of {} ({})", self.topic, self.group), level, fac, log_message);
    }

    /// Lag of every partition this member fetches: last stable offset (`ls_offset`,
    /// read_committed) minus the position (`app_offset`, the next offset the application
    /// gets). librdkafka's own `consumer_lag` is measured from the group's committed offset,
    /// which it never sees here: the actors commit through their producer's transaction and
    /// the projections checkpoint in PostgreSQL. Partitions no longer fetched lose their
    /// series, so a revoked partition is not reported by two members. Read from the raw
    /// JSON: only the fields used here.
    fn stats_raw(&self, statistics: &[u8]) {
        let Some(m) = &self.metrics else { return };
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(statistics) else {
            tracing::debug!(topic = %self.topic, "unreadable librdkafka statistics");
            return;
        };
        let mut now = BTreeSet::new();
        if let Some(partitions) = doc["topics"][&self.topic]["partitions"].as_object() {
            for part in partitions.values() {
                let (Some(p), Some(end), Some(position)) =
                    (part["partition"].as_i64(), part["ls_offset"].as_i64(), part["app_offset"].as_i64())
                else {
                    continue;
                };
                // Negative offsets are librdkafka's "not known yet" (-1001).
                if p < 0 || end < 0 || position < 0 || part["fetch_state"] != "active" {
                    continue;
                }
                let lag = (end - position).max(0);
                let p = p as i32;
                m.kafka.consumer_lag.get_or_create(&self.lag_labels(p)).set(lag);
                now.insert(p);
            }
        }
        if let Ok(mut reported) = self.lag_reported.lock() {
            for &gone in reported.difference(&now) {
                m.kafka.consumer_lag.remove(&self.lag_labels(gone));
            }
            *reported = now;
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let ps = self.partitions(tpl);
            tracing::info!(topic = %self.topic, partitions = ?ps, "partitions revoked");
            self.count_rebalance("revoked");
            if !ps.is_empty() {
                self.push(Membership::Revoked(ps));
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let ps = self.partitions(tpl);
                tracing::info!(topic = %self.topic, partitions = ?ps, "partitions assigned");
                self.count_rebalance("assigned");
                if !ps.is_empty() {
                    self.push(Membership::Assigned(ps));
                }
            }
            Rebalance::Error(e) => tracing::warn!(topic = %self.topic, error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// A member of a consumer group on one topic of Kafka. See the module doc.
pub struct KafkaConsumer {
    inner: Arc<Inner>,
    consumer: Arc<StreamConsumer<GroupContext>>,
    group: String,
    topic: String,
    assigned: BTreeSet<u32>,
    /// Rebalances applied to `assigned` but not yet returned by `poll`.
    announcements: VecDeque<Membership>,
    buffer: VecDeque<Record>,
    pending_seeks: BTreeMap<u32, u64>,
    /// After a seek: records below this offset are stale.
    floor: HashMap<u32, u64>,
    seek_attempts: u32,
    txn: Option<FutureProducer>,
    /// Set when a transaction could not be aborted; the next transaction aborts first.
    needs_abort: bool,
    transactional_id: Option<String>,
}

impl KafkaConsumer {
    pub(crate) async fn new(inner: Arc<Inner>, group: &str, topic: &str) -> Result<Self, LogError> {
        // Fail early on a topic that does not exist.
        inner.partitions(topic).await?;
        let c = &inner.config.consumer;
        let mut cfg = base_client_config(&inner.config);
        cfg.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", c.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", c.heartbeat_interval_ms.to_string())
            .set("max.poll.interval.ms", c.max_poll_interval_ms.max(c.session_timeout_ms).to_string())
            .set("partition.assignment.strategy", &c.assignment_strategy)
            .set("fetch.max.bytes", c.fetch_max_bytes.to_string());
        let metrics = inner.metrics.get().cloned();
        if metrics.is_some() {
            // Lag is read from the statistics librdkafka emits at this interval.
            cfg.set("statistics.interval.ms", "5000");
        }
        let context = GroupContext {
            topic: topic.to_string(),
            events: Mutex::new(VecDeque::new()),
            group: group.to_string(),
            metrics,
            lag_reported: Mutex::new(BTreeSet::new()),
        };
        let consumer: StreamConsumer<GroupContext> = cfg.create_with_context(context).map_err(|e| {
            LogError::Unavailable(gm_ports::Cause::context(format!("consumer of {topic} in group {group}"), e))
        })?;
        consumer.subscribe(&[topic]).map_err(|e| map_err(topic, &e))?;
        Ok(Self {
            inner,
            consumer: Arc::new(consumer),
            group: group.to_string(),
            topic: topic.to_string(),
            assigned: BTreeSet::new(),
            announcements: VecDeque::new(),
            buffer: VecDeque::new(),
            pending_seeks: BTreeMap::new(),
            floor: HashMap::new(),
            seek_attempts: 0,
            txn: None,
            needs_abort: false,
            transactional_id: None,
        })
    }

    /// Uses this exact transactional id instead of `prefix + group + unique suffix`
    /// (tests of producer fencing; tools). Takes effect before the first transaction.
    pub fn with_transactional_id(mut self, id: impl Into<String>) -> Self {
        self.transactional_id = Some(id.into());
        self
    }

    /// The partitions this member currently owns (as announced by `poll`).
    pub fn assignment(&self) -> Vec<u32> {
        self.assigned.iter().copied().collect()
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Takes the rebalances the context recorded and applies them to our state at once
    /// (so records that follow them are judged against the new assignment); `poll`
    /// announces them, in order, before any record.
    fn sync_membership(&mut self) {
        while let Some(m) = self.consumer.context().pop() {
            match &m {
                Membership::Revoked(ps) => {
                    for p in ps {
                        self.assigned.remove(p);
                        self.pending_seeks.remove(p);
                        self.floor.remove(p);
                    }
                    self.buffer.retain(|r| !ps.contains(&r.partition));
                }
                Membership::Assigned(ps) => {
                    for p in ps {
                        self.assigned.insert(*p);
                        self.pending_seeks.remove(p);
                        self.floor.remove(p);
                    }
                }
            }
            self.announcements.push_back(m);
        }
    }

    fn accept(&mut self, r: Record) {
        self.sync_membership();
        if r.topic != self.topic
            || !self.assigned.contains(&r.partition)
            || self.pending_seeks.contains_key(&r.partition)
        {
            return;
        }
        if let Some(&floor) = self.floor.get(&r.partition) {
            if r.offset < floor {
                return;
            }
            self.floor.remove(&r.partition);
        }
        self.buffer.push_back(r);
    }

    /// Tries the pending seeks once.
    async fn apply_seeks(&mut self) {
        let assigned = &self.assigned;
        self.pending_seeks.retain(|p, _| assigned.contains(p));
        if self.pending_seeks.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (&p, &offset) in &self.pending_seeks {
            if tpl.add_partition_offset(&self.topic, p as i32, Offset::Offset(offset as i64)).is_err() {
                return;
            }
        }
        let consumer = self.consumer.clone();
        let result = tokio::task::spawn_blocking(move || consumer.seek_partitions(tpl, Duration::from_secs(2))).await;
        self.seek_attempts += 1;
        let tpl = match result {
            Ok(Ok(tpl)) => tpl,
            Ok(Err(e)) => {
                tracing::debug!(topic = %self.topic, error = %e, "seek failed; will retry");
                return;
            }
            Err(e) => {
                tracing::debug!(topic = %self.topic, error = %e, "seek task failed; will retry");
                return;
            }
        };
        for elem in tpl.elements_for_topic(&self.topic) {
            let p = elem.partition().max(0) as u32;
            let Offset::Offset(target) = elem.offset() else { continue };
            match elem.error() {
                Ok(()) => {
                    if self.pending_seeks.get(&p) == Some(&(target as u64)) {
                        self.pending_seeks.remove(&p);
                    }
                    self.floor.insert(p, target as u64);
                    self.buffer.retain(|r| r.partition != p);
                    tracing::debug!(topic = %self.topic, partition = p, offset = target, "seek applied");
                }
                Err(e) => {
                    if self.seek_attempts == 100 {
                        tracing::warn!(topic = %self.topic, partition = p, error = %e, "seek still pending");
                    }
                }
            }
        }
        if self.pending_seeks.is_empty() {
            self.seek_attempts = 0;
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&StreamConsumer<GroupContext>) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, LogError> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || f(&consumer).map_err(|e| map_err(&topic, &e))).await.map_err(join_err)?
    }

    fn offsets_tpl(&self, offsets: &[Position]) -> Result<TopicPartitionList, LogError> {
        let mut tpl = TopicPartitionList::new();
        for pos in offsets {
            tpl.add_partition_offset(&self.topic, pos.partition as i32, Offset::Offset(pos.offset as i64))
                .map_err(|e| map_err(&self.topic, &e))?;
        }
        Ok(tpl)
    }

    async fn txn_producer(&mut self) -> Result<FutureProducer, LogError> {
        if let Some(p) = &self.txn {
            return Ok(p.clone());
        }
        let id = self.transactional_id.clone().unwrap_or_else(|| {
            format!("{}{}-{}", self.inner.config.transactional_id_prefix, self.group, uuid::Uuid::new_v4().simple())
        });
        let producer_cfg = &self.inner.config.producer;
        let txn_timeout = producer_cfg.transaction_timeout_ms;
        let producer: FutureProducer = producer_client_config(&self.inner.config)
            .set("transactional.id", &id)
            .set("transaction.timeout.ms", txn_timeout.to_string())
            .set("message.timeout.ms", producer_cfg.message_timeout_ms.min(txn_timeout).to_string())
            .create_with_context(ClientLog::new("transactional producer"))
            .map_err(|e| LogError::Unavailable(gm_ports::Cause::context(format!("transactional producer {id}"), e)))?;
        let p = producer.clone();
        let timeout = self.inner.timeout();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || p.init_transactions(timeout))
            .await
            .map_err(join_err)?
            .map_err(|e| map_err(&topic, &e))?;
        tracing::debug!(transactional_id = %id, "transactional producer ready");
        self.txn = Some(producer.clone());
        self.needs_abort = false;
        Ok(producer)
    }

    /// Aborts the open transaction; on failure remembers to abort before the next one,
    /// and drops a producer that is in a fatal state.
    async fn abort(&mut self, producer: &FutureProducer) {
        let p = producer.clone();
        let timeout = self.inner.timeout();
        match tokio::task::spawn_blocking(move || p.abort_transaction(timeout)).await {
            Ok(Ok(())) => self.needs_abort = false,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "abort_transaction failed");
                if matches!(&e, KafkaError::Transaction(t) if t.is_fatal()) {
                    self.txn = None;
                    self.needs_abort = false;
                } else {
                    self.needs_abort = true;
                }
            }
            Err(_) => self.needs_abort = true,
        }
    }

    /// What a failed transactional step means, after cleaning up the transaction.
    async fn fail(&mut self, producer: &FutureProducer, e: TxnError) -> LogError {
        let (mut fatal, fencing, mut mapped) = match &e {
            TxnError::Kafka(k) => {
                let fatal = matches!(k, KafkaError::Transaction(t) if t.is_fatal());
                let code = k.rdkafka_error_code();
                let fencing = code.is_some_and(|c| is_group_fencing_code(c) || (fatal && is_producer_fencing_code(c)));
                (fatal, fencing, map_err(&self.topic, k))
            }
            TxnError::Log(l) => (false, matches!(l, LogError::Fenced(_)), l.clone()),
        };
        // A producer fenced while sending fails its deliveries ("purged"); the cause is
        // the client's fatal error.
        if let Some((code, reason)) = producer.client().fatal_error() {
            fatal = true;
            mapped = LogError::Fenced(format!("{code}: {reason}").into());
        }
        if fatal {
            tracing::warn!(group = %self.group, error = %mapped, "transactional producer fenced or failed fatally; dropping it");
            self.txn = None;
            self.needs_abort = false;
            return match mapped {
                LogError::Fenced(m) => LogError::Fenced(m),
                other => LogError::Fenced(Cause::new(other)),
            };
        }
        self.abort(producer).await;
        if fencing {
            return match mapped {
                LogError::Fenced(m) => LogError::Fenced(m),
                other => LogError::Fenced(Cause::new(other)),
            };
        }
        match mapped {
            LogError::Other(m) => LogError::Unavailable(m),
            other => other,
        }
    }

    async fn run_transaction(
        &mut self,
        producer: &FutureProducer,
        outputs: &[(String, Vec<NewRecord>)],
        offsets: &[Position],
    ) -> Result<(), TxnError> {
        let timeout = self.inner.timeout();
        producer.begin_transaction().map_err(TxnError::Kafka)?;
        for (topic, records) in outputs.iter().filter(|(_, r)| !r.is_empty()) {
            let partitions = self.inner.partitions(topic).await.map_err(TxnError::Log)?;
            let futures = enqueue(producer, topic, partitions, records, timeout).await.map_err(TxnError::Log)?;
            await_deliveries(topic, futures).await.map_err(TxnError::Log)?;
        }
        if !offsets.is_empty() {
            let tpl = self.offsets_tpl(offsets).map_err(TxnError::Log)?;
            let cgm = self
                .consumer
                .group_metadata()
                .ok_or_else(|| TxnError::Log(LogError::Unavailable("no consumer group metadata yet".into())))?;
            let p = producer.clone();
            tokio::task::spawn_blocking(move || p.send_offsets_to_transaction(&tpl, &cgm, timeout))
                .await
                .map_err(|e| TxnError::Log(join_err(e)))?
                .map_err(TxnError::Kafka)?;
        }
        let mut attempts = 0;
        loop {
            let p = producer.clone();
            let result = tokio::task::spawn_blocking(move || p.commit_transaction(timeout))
                .await
                .map_err(|e| TxnError::Log(join_err(e)))?;
            match result {
                Ok(()) => return Ok(()),
                Err(KafkaError::Transaction(t)) if t.is_retriable() && attempts < 3 => {
                    attempts += 1;
                    tracing::debug!(error = %t, attempts, "commit_transaction retriable error; retrying");
                }
                Err(e) => return Err(TxnError::Kafka(e)),
            }
        }
    }
}

enum TxnError {
    Kafka(KafkaError),
    Log(LogError),
}

#[async_trait]
impl LogConsumer for KafkaConsumer {
    async fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Polled, LogError> {
        let max = max_records.min(self.inner.config.consumer.max_poll_records).max(1);
        let deadline = Instant::now() + timeout;
        loop {
            self.sync_membership();
            if let Some(m) = self.announcements.pop_front() {
                return Ok(match m {
                    Membership::Assigned(ps) => Polled::Assigned(ps),
                    Membership::Revoked(ps) => Polled::Revoked(ps),
                });
            }
            self.apply_seeks().await;
            if !self.buffer.is_empty() {
                let n = max.min(self.buffer.len());
                return Ok(Polled::Records(self.buffer.drain(..n).collect()));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Polled::Idle);
            }
            let mut wait = deadline - now;
            if !self.pending_seeks.is_empty() {
                wait = wait.min(Duration::from_millis(20));
            }
            // `recv` is cancel-safe and each record goes to the buffer before the next await.
            let first = match tokio::time::timeout(wait, self.consumer.recv()).await {
                Err(_) => continue,
                Ok(r) => r.map(|m| to_record(&m)),
            };
            match first {
                Ok(r) => self.accept(r),
                Err(KafkaError::MessageConsumptionFatal(code)) => {
                    return Err(LogError::Other(format!("fatal consumer error: {code}").into()));
                }
                Err(KafkaError::PartitionEOF(_)) => {}
                Err(e) => {
                    tracing::warn!(topic = %self.topic, group = %self.group, error = %e, "consumer error");
                    continue;
                }
            }
            // Drain what is already fetched, without waiting; stop at a rebalance event.
            while self.buffer.len() < max {
                let next = match self.consumer.recv().now_or_never() {
                    Some(Ok(m)) => to_record(&m),
                    _ => break,
                };
                self.accept(next);
                if !self.consumer.context().events.lock().map(|e| e.is_empty()).unwrap_or(true) {
                    break;
                }
            }
        }
    }

    fn seek(&mut self, partition: u32, offset: u64) {
        if !self.assigned.contains(&partition) {
            tracing::debug!(topic = %self.topic, partition, offset, "seek on a partition not assigned; ignored");
            return;
        }
        self.pending_seeks.insert(partition, offset);
        self.buffer.retain(|r| r.partition != partition);
    }

    async fn committed(&self, partition: u32) -> Result<Option<u64>, LogError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, partition as i32);
        let timeout = self.inner.timeout();
        let topic = self.topic.clone();
        let tpl = self.blocking(move |c| c.committed_offsets(tpl, timeout)).await?;
        let offset = tpl
            .find_partition(&topic, partition as i32)
            .map(|e| e.offset())
            .ok_or_else(|| LogError::Other(format!("no committed offset answer for {topic}/{partition}").into()))?;
        match offset {
            Offset::Offset(o) if o >= 0 => Ok(Some(o as u64)),
            _ => Ok(None),
        }
    }

    async fn commit(&mut self, offsets: &[Position]) -> Result<(), LogError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let tpl = self.offsets_tpl(offsets)?;
        self.blocking(move |c| c.commit(&tpl, CommitMode::Sync)).await
    }

    async fn commit_with_outputs_to(
        &mut self,
        outputs: Vec<(String, Vec<NewRecord>)>,
        offsets: &[Position],
    ) -> Result<(), LogError> {
        if outputs.iter().all(|(_, r)| r.is_empty()) && offsets.is_empty() {
            return Ok(());
        }
        let producer = self.txn_producer().await?;
        if self.needs_abort {
            self.abort(&producer).await;
            if self.needs_abort {
                return Err(LogError::Unavailable("previous transaction could not be aborted yet".into()));
            }
        }
        let producer = match &self.txn {
            Some(p) => p.clone(),
            None => self.txn_producer().await?,
        };
        match self.run_transaction(&producer, &outputs, offsets).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(&producer, e).await),
        }
    }
}
