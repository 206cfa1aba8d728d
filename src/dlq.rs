//! `gamemetrics dlq list|replay`: inspect the dead letters on `system.dlq` and re-drive them
//! into the topic they came from once the cause is fixed: `player.events.raw` (the actors'
//! dead letters) or `player.events.processed` (a processed record no projection could
//! decode; its `gm.kind` header is kept). Written over the [`EventLog`] trait
//! (`read` + the producer), so it works on the embedded log and on Kafka alike.
//!
//! Replay re-appends each dead letter's original payload with its original key, so it lands
//! on the player's partition again, after everything already there. The actors deduplicate
//! by `event_id`, so replaying a record twice (or one that was processed after all) counts
//! once. Replay does not remove anything from `system.dlq` (a log is append-only); it
//! prints what it re-drove, and the replayed records carry a `gm.replayed_from` header.

use gm_ports::{EventLog, NewRecord, Record};
use gm_schemas::topics;

/// At most this many records are read per call.
const PAGE: usize = 500;

/// Every dead letter from the start of `system.dlq`, partition by partition in offset order,
/// at most `limit`.
pub async fn list(log: &dyn EventLog, limit: usize) -> anyhow::Result<Vec<Record>> {
    let ends = log.end_offsets(topics::DLQ).await?;
    let mut out = Vec::new();
    for (partition, end) in ends.iter().enumerate() {
        let partition = u32::try_from(partition)?;
        let mut from = 0;
        while from < *end && out.len() < limit {
            let page = log.read(topics::DLQ, partition, from, PAGE.min(limit - out.len())).await?;
            let Some(last) = page.last() else { break };
            from = last.offset + 1;
            out.extend(page);
        }
    }
    Ok(out)
}

/// What to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    All,
    /// One dead letter, by its offset in `system.dlq` (partition 0 unless `partition`).
    Offset {
        partition: u32,
        offset: u64,
    },
}

/// Re-appends the selected dead letters' payloads with their keys to the topic they came
/// from (`gm.source.topic`): `player.events.processed` for the projections' dead letters
/// (with their `gm.kind` header), `player.events.raw` for every other. A processed record
/// is dead-lettered before any projection applied it, so its replay is applied once by each.
/// Returns the dead letters replayed.
pub async fn replay(log: &dyn EventLog, selection: Selection) -> anyhow::Result<Vec<Record>> {
    let chosen: Vec<Record> = match selection {
        Selection::All => list(log, usize::MAX).await?,
        Selection::Offset { partition, offset } => {
            let got = log.read(topics::DLQ, partition, offset, 1).await?;
            match got.into_iter().next() {
                Some(r) if r.offset == offset => vec![r],
                _ => anyhow::bail!("no dead letter at {}/{partition} offset {offset}", topics::DLQ),
            }
        }
    };
    let mut raw = Vec::new();
    let mut processed = Vec::new();
    for r in &chosen {
        let mut record = NewRecord::new(r.key.clone(), r.payload.clone())
            .with_header("gm.replayed_from", format!("{}/{}/{}", r.topic, r.partition, r.offset));
        if is_from_processed(r) {
            if let Some(kind) = r.header(gm_schemas::processed::KIND_HEADER) {
                record = record.with_header(gm_schemas::processed::KIND_HEADER, kind);
            }
            processed.push(record);
        } else {
            raw.push(record);
        }
    }
    if !raw.is_empty() {
        log.producer().append(topics::RAW, raw).await?;
    }
    if !processed.is_empty() {
        log.producer().append(topics::PROCESSED, processed).await?;
    }
    Ok(chosen)
}

/// Whether a dead letter came from `player.events.processed` (records come back from a
/// namespaced log with their logical topic names, so the header holds the logical name).
fn is_from_processed(r: &Record) -> bool {
    r.header("gm.source.topic") == Some(topics::PROCESSED)
}

/// One line per dead letter: where it is, its key, its headers, and the payload (lossy UTF-8,
/// cut at 200 bytes).
pub fn describe(r: &Record) -> String {
    let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let payload = String::from_utf8_lossy(&r.payload[..r.payload.len().min(200)]).into_owned();
    format!("{}/{} offset {} key {} [{}] {}", r.topic, r.partition, r.offset, r.key, headers.join(", "), payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gm_ports::TopicSpec;

    #[tokio::test]
    async fn list_then_replay_round_trips_the_original_payloads_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let specs: Vec<TopicSpec> = [topics::RAW, topics::PROCESSED, topics::DLQ]
            .iter()
            .map(|t| TopicSpec { name: t.to_string(), partitions: 1, compacted: false })
            .collect();
        let log = gm_embedded::SqliteLog::open(&dir.path().join("log.db"), &specs).await.unwrap();
        let dead = |n: u8| {
            NewRecord::new(format!("g:p{n}"), vec![b'x', n])
                .with_header("gm.error", "boom")
                .with_header("gm.source.offset", n.to_string())
        };
        log.producer().append(topics::DLQ, vec![dead(1), dead(2), dead(3)]).await.unwrap();

        let listed = list(&log, 10).await.unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[1].header("gm.error"), Some("boom"));
        assert!(describe(&listed[1]).contains("gm.source.offset=2"));
        assert_eq!(list(&log, 2).await.unwrap().len(), 2);

        let one = replay(&log, Selection::Offset { partition: 0, offset: 1 }).await.unwrap();
        assert_eq!(one.len(), 1);
        let raw = log.read(topics::RAW, 0, 0, 10).await.unwrap();
        assert_eq!((raw[0].key.as_str(), raw[0].payload.clone()), ("g:p2", vec![b'x', 2]));
        assert_eq!(raw[0].header("gm.replayed_from"), Some("system.dlq/0/1"));

        assert_eq!(replay(&log, Selection::All).await.unwrap().len(), 3);
        let raw = log.read(topics::RAW, 0, 0, 10).await.unwrap();
        let keys: Vec<&str> = raw.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, vec!["g:p2", "g:p1", "g:p2", "g:p3"]);
        assert!(replay(&log, Selection::Offset { partition: 0, offset: 9 }).await.is_err());

        // A projection's dead letter goes back to player.events.processed, with its kind.
        let projection_letter = NewRecord::new("g:p4", vec![b'y'])
            .with_header("gm.error", "undecodable processed record")
            .with_header("gm.source.topic", topics::PROCESSED)
            .with_header("gm.kind", "purchase");
        log.producer().append(topics::DLQ, vec![projection_letter]).await.unwrap();
        let replayed = replay(&log, Selection::Offset { partition: 0, offset: 3 }).await.unwrap();
        assert_eq!(replayed.len(), 1);
        assert_eq!(log.read(topics::RAW, 0, 0, 10).await.unwrap().len(), 4, "nothing more on the raw topic");
        let processed = log.read(topics::PROCESSED, 0, 0, 10).await.unwrap();
        assert_eq!((processed.len(), processed[0].key.as_str(), processed[0].payload.clone()), (1, "g:p4", vec![b'y']));
        assert_eq!(processed[0].header("gm.kind"), Some("purchase"));
        assert_eq!(processed[0].header("gm.replayed_from"), Some("system.dlq/0/3"));
        log.close().await;
    }
}
