//! The consumer side of the embedded log: a member of a consumer group on one topic, its
//! fair fetch across partitions and its commits (the group and fencing rules are in
//! [`super::group`]).

use super::{group, log_err, read_partition, Answer, Op, SqliteLog};
use crate::sql::to_u64;
use async_trait::async_trait;
use gm_ports::{LogConsumer, LogError, NewRecord, Polled, Position, Record};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;

impl SqliteLog {
    /// A consumer of `topic` in `group` (the concrete type behind [`EventLog::consumer`]).
    /// It joins the group now: the previous member of this group and topic is revoked.
    pub async fn sqlite_consumer(&self, group: &str, topic: &str) -> Result<SqliteConsumer, LogError> {
        let partitions = self.inner.shared.partitions(topic)?;
        // Subscribe before joining, so that no change after the join can be missed.
        let changes = self.inner.shared.changes.subscribe();
        let answer = self.request(Op::Join { group: group.to_string(), topic: topic.to_string(), partitions }).await?;
        let Answer::Joined { generation, committed } = answer else {
            return Err(LogError::Other("unexpected answer to join".into()));
        };
        Ok(SqliteConsumer {
            log: self.clone(),
            group: group.to_string(),
            topic: topic.to_string(),
            partitions,
            generation,
            state: State::Joined,
            positions: committed.iter().map(|c| c.unwrap_or(0)).collect(),
            seen: committed,
            sought: HashMap::new(),
            next_first: 0,
            changes,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Joined; the next poll announces the assignment.
    Joined,
    Active,
    /// Superseded by a newer member of the group.
    Revoked,
}

/// A member of a consumer group on one topic of the embedded log. See the module doc for
/// the group and fencing rules.
pub struct SqliteConsumer {
    log: SqliteLog,
    group: String,
    topic: String,
    partitions: u32,
    generation: u64,
    state: State,
    /// Next offset to read, per partition.
    positions: Vec<u64>,
    /// The group's stored offset as this consumer last saw it (assignment or own commit).
    seen: Vec<Option<u64>>,
    /// Seeks made before the assignment was announced.
    sought: HashMap<u32, u64>,
    /// Partition that goes first in the next fetch (round robin, for fairness).
    next_first: u32,
    changes: watch::Receiver<u64>,
}

impl SqliteConsumer {
    fn all(&self) -> Vec<u32> {
        (0..self.partitions).collect()
    }

    fn superseded(&self) -> bool {
        self.log.inner.shared.generation(&self.group, &self.topic) != self.generation
    }

    /// Reads up to `max` records, fairly across partitions: each partition first gets an
    /// equal share, then partitions that filled their share get what is left. Cancel-safe:
    /// positions only move, all at once, after every read succeeded (a `poll` dropped by a
    /// `select!` loses no record).
    async fn fetch(&mut self, max: usize) -> Result<Vec<Record>, LogError> {
        let n = self.partitions as usize;
        let max = max.max(1);
        let share = max.div_ceil(n).max(1);
        let mut positions = self.positions.clone();
        let mut conn = self.log.inner.reads.acquire().await.map_err(log_err)?;
        let mut out: Vec<Record> = Vec::new();
        let mut full = Vec::new();
        let first = self.next_first;
        for i in 0..self.partitions {
            let p = (first + i) % self.partitions;
            let limit = share.min(max - out.len());
            if limit == 0 {
                break;
            }
            let recs = read_partition(&mut conn, &self.topic, p, positions[p as usize], limit).await?;
            if recs.len() == limit {
                full.push(p);
            }
            if let Some(last) = recs.last() {
                positions[p as usize] = last.offset + 1;
            }
            out.extend(recs);
        }
        for p in full {
            let limit = max - out.len();
            if limit == 0 {
                break;
            }
            let recs = read_partition(&mut conn, &self.topic, p, positions[p as usize], limit).await?;
            if let Some(last) = recs.last() {
                positions[p as usize] = last.offset + 1;
            }
            out.extend(recs);
        }
        self.positions = positions;
        self.next_first = (first + 1) % self.partitions;
        Ok(out)
    }

    async fn send_commit(
        &mut self,
        offsets: &[Position],
        outputs: Vec<(String, Vec<(u32, NewRecord)>)>,
    ) -> Result<(), LogError> {
        if self.state == State::Revoked || self.superseded() {
            return Err(LogError::Fenced(
                format!("consumer of group {} on {} was superseded by a newer member", self.group, self.topic).into(),
            ));
        }
        let mut expected = Vec::with_capacity(offsets.len());
        for pos in offsets {
            let seen = self.seen.get(pos.partition as usize).ok_or_else(|| {
                LogError::Other(format!("topic {} has no partition {}", self.topic, pos.partition).into())
            })?;
            expected.push((pos.partition, *seen));
        }
        let op = Op::Commit(group::Commit {
            group: self.group.clone(),
            topic: self.topic.clone(),
            generation: self.generation,
            expected,
            offsets: offsets.to_vec(),
            outputs,
        });
        self.log.request(op).await?;
        for pos in offsets {
            self.seen[pos.partition as usize] = Some(pos.offset);
        }
        Ok(())
    }
}

#[async_trait]
impl LogConsumer for SqliteConsumer {
    async fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Polled, LogError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.changes.borrow_and_update();
            match self.state {
                State::Revoked => {}
                _ if self.superseded() => {
                    let was_active = self.state == State::Active;
                    self.state = State::Revoked;
                    if was_active {
                        return Ok(Polled::Revoked(self.all()));
                    }
                }
                State::Joined => {
                    self.state = State::Active;
                    for (p, offset) in self.sought.drain() {
                        if let Some(pos) = self.positions.get_mut(p as usize) {
                            *pos = offset;
                        }
                    }
                    return Ok(Polled::Assigned(self.all()));
                }
                State::Active => {
                    let records = self.fetch(max_records).await?;
                    if !records.is_empty() {
                        return Ok(Polled::Records(records));
                    }
                }
            }
            match tokio::time::timeout_at(deadline, self.changes.changed()).await {
                Err(_) => return Ok(Polled::Idle),
                Ok(Ok(())) => continue,
                Ok(Err(_)) => {
                    // The log was dropped: nothing will ever arrive.
                    tokio::time::sleep_until(deadline).await;
                    return Ok(Polled::Idle);
                }
            }
        }
    }

    fn seek(&mut self, partition: u32, offset: u64) {
        if self.state == State::Joined {
            self.sought.insert(partition, offset);
        } else if let Some(pos) = self.positions.get_mut(partition as usize) {
            *pos = offset;
        }
    }

    async fn committed(&self, partition: u32) -> Result<Option<u64>, LogError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT next_offset FROM group_offsets WHERE grp = ? AND topic = ? AND partition = ?")
                .bind(&self.group)
                .bind(&self.topic)
                .bind(i64::from(partition))
                .fetch_optional(&self.log.inner.reads)
                .await
                .map_err(log_err)?;
        Ok(v.map(to_u64))
    }

    async fn commit(&mut self, offsets: &[Position]) -> Result<(), LogError> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.send_commit(offsets, Vec::new()).await
    }

    async fn commit_with_outputs_to(
        &mut self,
        outputs: Vec<(String, Vec<NewRecord>)>,
        offsets: &[Position],
    ) -> Result<(), LogError> {
        let mut keyed = Vec::with_capacity(outputs.len());
        for (topic, records) in outputs {
            let rows = self.log.keyed(&topic, records)?;
            keyed.push((topic, rows));
        }
        self.send_commit(offsets, keyed).await
    }
}
