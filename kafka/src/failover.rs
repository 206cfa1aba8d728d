//! Failing over to a mirror cluster (MirrorMaker 2 with the identity replication policy: the
//! same topic names, the records in the same order, offsets of their own).
//!
//! The platform keeps positions in two places: the actors' consumer group commits its
//! offsets in Kafka, and the snapshot watermarks and projection checkpoints live in
//! PostgreSQL. All of them are offsets of the primary cluster, meaningless on the mirror:
//! its offsets differ (transaction markers are not copied, the mirror may have started
//! later). MirrorMaker's own checkpoints translate consumer-group offsets only, and only
//! approximately (they may lag, which re-delivers records).
//!
//! [`translate_position`] maps a position exactly, by content: the first committed record
//! at or after the position on the primary is looked up on the mirror (same key and
//! payload, searched from its timestamp, which MirrorMaker keeps); a position past the
//! last record maps to the mirror's end once the mirror holds that last record. It needs
//! the primary to be readable: a planned failover (region evacuation, maintenance, a
//! drill). After an unplanned loss of the primary, only MirrorMaker's approximate
//! checkpoints remain (docs/runbooks/kafka-failover.md says what that costs).

use crate::error::{join_err, map_err};
use crate::log::{base_client_config, KafkaLog};
use gm_ports::{EventLog, LogError, Position, Record};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

/// Records read per step while searching the mirror.
const SEARCH_CHUNK: usize = 2_000;
/// How far before a record's timestamp the search on the mirror starts (timestamps in a
/// partition are nearly, not strictly, ordered).
const SEARCH_SLACK_MS: i64 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{topic}/{partition}: the record at primary offset {offset} is not on the mirror (mirror behind, or not mirroring this topic)")]
    NotMirrored { topic: String, partition: u32, offset: u64 },
    #[error("{topic}/{partition}: the mirror does not end with the primary's last record (offset {offset}): wait until MirrorMaker caught up")]
    MirrorBehind { topic: String, partition: u32, offset: u64 },
}

/// Where a primary position continues on the mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translated {
    pub primary: u64,
    pub mirror: u64,
    /// The primary record the translation was anchored on (`None`: the position was at the
    /// end of the partition).
    pub anchor: Option<u64>,
}

fn same(a: &Record, b: &Record) -> bool {
    a.key == b.key && a.payload == b.payload
}

/// The last committed record of a partition before `end` (reading back in growing steps).
async fn last_record_before(log: &KafkaLog, topic: &str, partition: u32, end: u64) -> Result<Option<Record>, LogError> {
    let mut back = 64u64;
    loop {
        let from = end.saturating_sub(back);
        let records = log.read(topic, partition, from, usize::MAX >> 1).await?;
        if let Some(last) = records.into_iter().rfind(|r| r.offset < end) {
            return Ok(Some(last));
        }
        if from == 0 {
            return Ok(None);
        }
        back = back.saturating_mul(8);
    }
}

/// Maps `position` (a "next offset" of `topic`/`partition` on `primary`) to the mirror.
pub async fn translate_position(
    primary: &KafkaLog,
    mirror: &KafkaLog,
    topic: &str,
    partition: u32,
    position: u64,
) -> Result<Translated, FailoverError> {
    let primary_end = primary.end_offsets(topic).await?[partition as usize];
    let mirror_end = mirror.end_offsets(topic).await?[partition as usize];
    let next = if position < primary_end {
        primary.read(topic, partition, position, 1).await?.into_iter().next()
    } else {
        None
    };
    let Some(anchor) = next else {
        // Everything before the position was consumed: continue at the mirror's end, once
        // the mirror holds the primary's last record as its own last.
        let last_primary = last_record_before(primary, topic, partition, primary_end).await?;
        let last_mirror = last_record_before(mirror, topic, partition, mirror_end).await?;
        return match (last_primary, last_mirror) {
            (None, _) => Ok(Translated { primary: position, mirror: mirror_end, anchor: None }),
            (Some(p), Some(m)) if same(&p, &m) => {
                Ok(Translated { primary: position, mirror: mirror_end, anchor: None })
            }
            (Some(p), _) => Err(FailoverError::MirrorBehind { topic: topic.to_string(), partition, offset: p.offset }),
        };
    };
    let since = anchor.timestamp.timestamp_millis() - SEARCH_SLACK_MS;
    let mut from = mirror.offset_for_time(topic, partition, since).await?.unwrap_or(mirror_end);
    // offsets_for_times answers the first offset at or after the time; the slack covers
    // records appended slightly out of timestamp order. Search forward from there.
    while from < mirror_end {
        let chunk = mirror.read(topic, partition, from, SEARCH_CHUNK).await?;
        let Some(last) = chunk.last().map(|r| r.offset) else { break };
        if let Some(found) = chunk.iter().find(|r| same(r, &anchor)) {
            return Ok(Translated { primary: position, mirror: found.offset, anchor: Some(anchor.offset) });
        }
        from = last + 1;
    }
    Err(FailoverError::NotMirrored { topic: topic.to_string(), partition, offset: anchor.offset })
}

impl KafkaLog {
    /// A client of `group` that never joins it: reads and commits offsets as a "simple"
    /// consumer, which the coordinator only accepts while the group has no members.
    fn group_client(&self, group: &str) -> Result<BaseConsumer, LogError> {
        base_client_config(self.config())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| LogError::Unavailable(gm_ports::Cause::context(format!("client of group {group}"), e)))
    }

    /// The committed offset of `group` on each partition of `topic` (`None`: none).
    pub async fn group_offsets(&self, group: &str, topic: &str) -> Result<Vec<Option<u64>>, LogError> {
        let partitions = self.partition_count(topic).await?;
        let client = self.group_client(group)?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p as i32);
        }
        let (name, timeout) = (topic.to_string(), self.request_timeout());
        let tpl = tokio::task::spawn_blocking(move || client.committed_offsets(tpl, timeout))
            .await
            .map_err(join_err)?
            .map_err(|e| map_err(&name, &e))?;
        Ok((0..partitions)
            .map(|p| match tpl.find_partition(topic, p as i32).map(|e| e.offset()) {
                Some(Offset::Offset(o)) if o >= 0 => Some(o as u64),
                _ => None,
            })
            .collect())
    }

    /// Commits `offsets` for `group` on `topic` without joining the group. Refused by the
    /// coordinator while the group has live members (stop the role first).
    pub async fn commit_group_offsets(&self, group: &str, topic: &str, offsets: &[Position]) -> Result<(), LogError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let client = self.group_client(group)?;
        let mut tpl = TopicPartitionList::new();
        for pos in offsets {
            tpl.add_partition_offset(topic, pos.partition as i32, Offset::Offset(pos.offset as i64))
                .map_err(|e| map_err(topic, &e))?;
        }
        let name = topic.to_string();
        tokio::task::spawn_blocking(move || client.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(join_err)?
            .map_err(|e| map_err(&name, &e))
    }

    /// The first offset of `topic`/`partition` whose timestamp is at or after `time_ms`
    /// (`None`: no such record).
    pub async fn offset_for_time(&self, topic: &str, partition: u32, time_ms: i64) -> Result<Option<u64>, LogError> {
        let client = self.group_client(&format!("{}time-lookup", self.config().transactional_id_prefix))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition as i32, Offset::Offset(time_ms.max(0)))
            .map_err(|e| map_err(topic, &e))?;
        let (name, timeout) = (topic.to_string(), self.request_timeout());
        let tpl = tokio::task::spawn_blocking(move || client.offsets_for_times(tpl, timeout))
            .await
            .map_err(join_err)?
            .map_err(|e| map_err(&name, &e))?;
        Ok(match tpl.find_partition(topic, partition as i32).map(|e| e.offset()) {
            Some(Offset::Offset(o)) if o >= 0 => Some(o as u64),
            _ => None,
        })
    }

    /// The cluster's id (KRaft cluster id), to tell two clusters apart.
    pub async fn cluster_id(&self) -> Result<String, LogError> {
        let client = self.group_client(&format!("{}cluster-id", self.config().transactional_id_prefix))?;
        let timeout = self.request_timeout();
        let brokers = self.config().brokers.clone();
        tokio::task::spawn_blocking(move || client.client().fetch_cluster_id(timeout))
            .await
            .map_err(join_err)?
            .ok_or_else(|| LogError::Unavailable(format!("Kafka at {brokers} did not give its cluster id").into()))
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config().request_timeout_ms.max(1))
    }
}
