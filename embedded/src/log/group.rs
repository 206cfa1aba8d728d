//! Consumer groups of the embedded log (in one process), executed by the writer inside its
//! batch transaction.
//!
//! # Membership
//! Each new consumer of a `(group, topic)` takes over all partitions: its first `poll`
//! returns `Polled::Assigned(all)`; the previous consumer of that group and topic sees
//! `Polled::Revoked(all)` on its next poll, and from then on only `Idle` (it never gets the
//! partitions back). Positions start at the group's committed offset, or 0, unless `seek`
//! is called.
//!
//! # Fencing rule of `commit` / `commit_with_outputs`
//! A commit succeeds only if (1) the consumer is still the group's current member (its
//! generation was not superseded by a newer consumer) and (2) for every partition it
//! commits, the group's stored offset equals the value this consumer last saw: the value
//! read when it was assigned, or the value of its own last successful commit. `seek` does
//! not change that value. Otherwise it fails with `LogError::Fenced` and writes nothing
//! (neither offsets nor outputs). Rule (2) also fences a member of another process that
//! shares the file.

use super::writer::Tx;
use super::{Answer, Shared};
use crate::sql::{insert_rows, to_i64, to_u64, V};
use gm_ports::{LogError, NewRecord, Position};
use sqlx::{Row, SqliteConnection};
use std::collections::HashMap;

/// A commit of a member: its offsets and the records to write with them, all or nothing.
pub(super) struct Commit {
    pub group: String,
    pub topic: String,
    pub generation: u64,
    /// Per partition committed, the group's stored offset as the member last saw it.
    pub expected: Vec<(u32, Option<u64>)>,
    pub offsets: Vec<Position>,
    pub outputs: Vec<(String, Vec<(u32, NewRecord)>)>,
}

/// Joins a new member: a new generation of `(group, topic)`, which supersedes the previous
/// member, and the group's committed offsets for the new one to start from.
pub(super) async fn join(
    conn: &mut SqliteConnection,
    shared: &Shared,
    tx: &mut Tx,
    group: &str,
    topic: &str,
    partitions: u32,
) -> Result<Answer, sqlx::Error> {
    let generation = {
        let mut g = shared.generations.lock().unwrap_or_else(|p| p.into_inner());
        let entry = g.entry((group.to_string(), topic.to_string())).or_insert(0);
        *entry += 1;
        *entry
    };
    tx.changed = true; // wakes the previous member, which then sees its revocation
    let stored = committed_offsets(conn, group, topic).await?;
    let committed = (0..partitions).map(|p| stored.get(&p).copied()).collect();
    Ok(Answer::Joined { generation, committed })
}

/// Applies the fencing rule, then writes the offsets and outputs. The outer error aborts the
/// transaction; the inner one refuses this commit alone (having written nothing).
pub(super) async fn commit(
    conn: &mut SqliteConnection,
    shared: &Shared,
    tx: &mut Tx,
    c: Commit,
) -> Result<Result<Answer, LogError>, sqlx::Error> {
    let Commit { group, topic, generation, expected, offsets, outputs } = c;
    if shared.generation(&group, &topic) != generation {
        return Ok(Err(LogError::Fenced(
            format!("consumer of group {group} on {topic} was superseded by a newer member").into(),
        )));
    }
    for (out_topic, _) in &outputs {
        if let Err(e) = shared.partitions(out_topic) {
            return Ok(Err(e));
        }
    }
    let stored = committed_offsets(conn, &group, &topic).await?;
    for (partition, seen) in &expected {
        let now = stored.get(partition).copied();
        if now != *seen {
            return Ok(Err(LogError::Fenced(
                format!(
                    "group {group} on {topic} partition {partition}: committed offset is {now:?}, \
                     this consumer last saw {seen:?}"
                )
                .into(),
            )));
        }
    }
    if !offsets.is_empty() {
        let rows = offsets
            .iter()
            .map(|p| {
                vec![V::T(group.clone()), V::T(topic.clone()), V::I(i64::from(p.partition)), V::I(to_i64(p.offset))]
            })
            .collect();
        insert_rows(
            conn,
            "INSERT INTO group_offsets (grp, topic, partition, next_offset) VALUES",
            "ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
            4,
            rows,
        )
        .await?;
        tx.changed = true;
    }
    for (out_topic, rows) in outputs {
        tx.assign(conn, &out_topic, rows).await?;
    }
    Ok(Ok(Answer::Done))
}

async fn committed_offsets(
    conn: &mut SqliteConnection,
    group: &str,
    topic: &str,
) -> Result<HashMap<u32, u64>, sqlx::Error> {
    let rows = sqlx::query("SELECT partition, next_offset FROM group_offsets WHERE grp = ? AND topic = ?")
        .bind(group)
        .bind(topic)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = HashMap::new();
    for row in rows {
        let p: i64 = row.try_get(0)?;
        let o: i64 = row.try_get(1)?;
        out.insert(u32::try_from(p).unwrap_or(u32::MAX), to_u64(o));
    }
    Ok(out)
}
