use super::*;
use crate::test_support::*;
use gm_schemas::{EventBody, EventEnvelope, ProcessedEvent};

fn rec(offset: u64, key: &str, payload: Vec<u8>) -> Record {
    Record {
        topic: gm_schemas::topics::RAW.into(),
        partition: 0,
        offset,
        key: key.into(),
        payload,
        timestamp: at(0),
        headers: Vec::new(),
    }
}

/// The raw record of a score event of `player` with event id `n`, at `offset`.
fn event_rec(offset: u64, player: &str, n: u128) -> Record {
    let e: EventEnvelope = envelope_for(player, n, at(n as i64), None, score(1));
    rec(offset, &format!("{GAME}:{player}"), serde_json::to_vec(&RawRecord::Event(e)).unwrap())
}

/// Score events of PLAYER at `offsets`, event id = offset.
fn batch(offsets: std::ops::Range<u64>) -> Process {
    Process(offsets.map(|o| event_rec(o, PLAYER, o as u128)).collect())
}

fn seqs(outputs: &[NewRecord]) -> Vec<u64> {
    outputs.iter().map(|o| serde_json::from_slice::<ProcessedEvent>(&o.payload).unwrap().seq).collect()
}

async fn seq_of(shard: &Addr<Shard>, key: &str) -> Option<u64> {
    shard.send(GetState(key.into())).await.unwrap().map(|s| s.seq)
}

/// The player snapshots of a batch, without the partition's open-session index.
fn player_snapshots(batch: &SnapshotBatch) -> Vec<(String, Vec<u8>)> {
    batch.players.iter().filter(|(k, _)| *k != index_key(0)).cloned().collect()
}

const SNAPSHOT_NOW: TakeSnapshot = TakeSnapshot { every_events: 1, every: Duration::from_secs(3600), force: false };

#[actix::test]
async fn records_before_replay_until_update_state_without_outputs_or_commit() {
    let shard = Shard::new(0, 0, 3).start();
    let p = shard.send(batch(0..3)).await.unwrap();
    assert!(p.outputs.is_empty());
    assert_eq!(p.commit_next, None);
    assert_eq!(p.applied, 3);
    assert_eq!(seq_of(&shard, &key()).await, Some(3));
}

#[actix::test]
async fn records_from_replay_until_emit_one_output_each_keyed_like_input_and_commit_after_last() {
    let shard = Shard::new(0, 0, 2).start();
    let p = shard.send(batch(0..5)).await.unwrap();
    assert_eq!(p.applied, 5);
    assert_eq!(p.outputs.len(), 3);
    assert!(p.outputs.iter().all(|o| o.key == key()));
    assert_eq!(seqs(&p.outputs), vec![3, 4, 5]);
    let ids: Vec<_> =
        p.outputs.iter().map(|o| serde_json::from_slice::<ProcessedEvent>(&o.payload).unwrap().event_id).collect();
    assert_eq!(ids, vec![eid(2), eid(3), eid(4)]);
    assert_eq!(p.commit_next, Some(5));
}

#[actix::test]
async fn outputs_keep_each_input_records_key() {
    let shard = Shard::new(0, 0, 0).start();
    let p = shard.send(Process(vec![event_rec(0, "a", 1), event_rec(1, "b", 2), event_rec(2, "a", 3)])).await.unwrap();
    let keys: Vec<&str> = p.outputs.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, vec!["space-race:a", "space-race:b", "space-race:a"]);
    assert_eq!(seqs(&p.outputs), vec![1, 1, 2]);
    assert_eq!(p.commit_next, Some(3));
}

#[actix::test]
async fn redelivered_offsets_below_applied_next_are_ignored() {
    let shard = Shard::new(0, 0, 0).start();
    shard.send(batch(0..3)).await.unwrap();
    let p = shard.send(batch(1..5)).await.unwrap();
    assert_eq!(p.applied, 2);
    assert_eq!(p.duplicates, 0, "a re-delivery is skipped by offset, not by the dedup window");
    assert_eq!(seqs(&p.outputs), vec![4, 5]);
    assert_eq!(p.commit_next, Some(5));
    // A batch made only of re-deliveries does nothing and commits nothing.
    let p = shard.send(batch(0..5)).await.unwrap();
    assert_eq!((p.applied, p.outputs.len(), p.commit_next), (0, 0, None));
    assert_eq!(seq_of(&shard, &key()).await, Some(5));
}

#[actix::test]
async fn duplicate_event_id_at_a_new_offset_is_counted_not_emitted() {
    let shard = Shard::new(0, 0, 0).start();
    let p = shard.send(Process(vec![event_rec(0, PLAYER, 7), event_rec(1, PLAYER, 7)])).await.unwrap();
    assert_eq!((p.applied, p.duplicates, p.outputs.len()), (1, 1, 1));
    assert_eq!(p.commit_next, Some(2));
}

#[actix::test]
async fn unreadable_payload_is_dead_lettered_and_counted_without_a_stall() {
    let shard = Shard::new(0, 0, 0).start();
    let p = shard
        .send(Process(vec![rec(0, &key(), b"{not json".to_vec()), event_rec(1, PLAYER, 1), rec(2, &key(), vec![])]))
        .await
        .unwrap();
    assert_eq!(p.unreadable, 2);
    assert_eq!(p.applied, 1);
    assert_eq!(seqs(&p.outputs), vec![1]);
    assert_eq!(p.commit_next, Some(3), "the skipped record is consumed, never a stall");
    let dead: Vec<Option<&str>> = p.dead_letters.iter().map(|d| header(d, dlq_headers::SOURCE_OFFSET)).collect();
    assert_eq!(dead, vec![Some("0"), Some("2")]);
    assert_eq!(p.dead_letters[0].payload, b"{not json");
    assert!(header(&p.dead_letters[0], dlq_headers::ERROR).unwrap().starts_with("undecodable raw record"));
}

fn header<'a>(r: &'a NewRecord, name: &str) -> Option<&'a str> {
    r.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A score event of PLAYER at `offset` under a key that fails at the configured fail point.
fn poison_rec(offset: u64) -> Record {
    let mut r = event_rec(offset, PLAYER, 900 + offset as u128);
    r.key = format!("{}{POISON_SUFFIX}", r.key);
    r
}

#[actix::test]
async fn a_panic_stops_the_batch_before_the_record_and_blocks_snapshots_until_rebuilt() {
    fail::cfg("actors::process_record", "panic").unwrap();
    let shard = Shard::new(0, 0, 0).start();
    let p = shard.send(Process(vec![event_rec(0, PLAYER, 0), poison_rec(1), event_rec(2, PLAYER, 2)])).await.unwrap();
    let failed = p.failed.expect("the failure is reported");
    assert_eq!((failed.offset, failed.attempts), (1, 0));
    assert!(failed.reason.starts_with("processing panicked"), "{}", failed.reason);
    assert_eq!(seqs(&p.outputs), vec![1], "the record before it is emitted, the one after it is not processed");
    assert_eq!(p.commit_next, Some(1), "the commit stops before the failed record");
    assert!(shard.send(SNAPSHOT_NOW).await.unwrap().is_none(), "a shard that panicked is not snapshotted");
}

#[actix::test]
async fn a_record_given_up_on_is_dead_lettered_when_reached_and_skipped_in_a_replay() {
    fail::cfg("actors::process_record", "panic").unwrap();
    let failure = Failure { offset: 1, reason: "processing panicked: boom".into(), attempts: 3 };
    let shard = Shard::new(0, 0, 0).giving_up_on([failure.clone()]).start();
    let p = shard.send(Process(vec![event_rec(0, PLAYER, 0), poison_rec(1), event_rec(2, PLAYER, 2)])).await.unwrap();
    assert!(p.failed.is_none());
    assert_eq!(seqs(&p.outputs), vec![1, 2]);
    assert_eq!(p.commit_next, Some(3));
    assert_eq!(p.dead_letters.len(), 1);
    assert_eq!(header(&p.dead_letters[0], dlq_headers::ATTEMPTS), Some("3"));
    assert_eq!(header(&p.dead_letters[0], dlq_headers::ERROR), Some("processing panicked: boom"));
    // Below the committed offset the same record is skipped quietly (it was dead-lettered).
    let replay = Shard::new(0, 0, 3).start();
    let p = replay.send(Process(vec![event_rec(0, PLAYER, 0), poison_rec(1), event_rec(2, PLAYER, 2)])).await.unwrap();
    assert!(p.failed.is_none() && p.dead_letters.is_empty() && p.outputs.is_empty());
    assert_eq!(seq_of(&replay, &key()).await, Some(2));
}

#[actix::test]
async fn an_unreadable_record_replayed_below_the_committed_offset_is_not_dead_lettered_again() {
    let shard = Shard::new(0, 0, 2).start();
    let p = shard.send(Process(vec![rec(0, &key(), b"{not json".to_vec()), event_rec(1, PLAYER, 1)])).await.unwrap();
    assert_eq!(p.unreadable, 1);
    assert!(p.dead_letters.is_empty());
}

#[actix::test]
async fn take_snapshot_returns_only_dirty_players_then_none_until_new_events() {
    let shard = Shard::new(0, 0, 0).start();
    shard.send(Process(vec![event_rec(0, "a", 1), event_rec(1, "b", 2)])).await.unwrap();
    let first = shard.send(SNAPSHOT_NOW).await.unwrap().expect("due");
    assert!(first.players.iter().any(|(k, _)| *k == index_key(0)), "the open-session index changed: saved with them");
    let mut keys: Vec<String> = player_snapshots(&first).iter().map(|(k, _)| k.clone()).collect();
    keys.sort();
    assert_eq!(keys, vec!["space-race:a", "space-race:b"]);
    assert_eq!(first.next_offset, 2);
    assert!(shard.send(SNAPSHOT_NOW).await.unwrap().is_none());

    shard.send(Process(vec![event_rec(2, "a", 3)])).await.unwrap();
    let second = shard.send(SNAPSHOT_NOW).await.unwrap().expect("due");
    let second_players = player_snapshots(&second);
    assert_eq!(second_players.len(), 1);
    assert_eq!(second_players[0].0, "space-race:a");
    let state: PlayerState = serde_json::from_slice(&second_players[0].1).unwrap();
    assert_eq!(state.seq, 2);
    assert_eq!(second.next_offset, 3);
    assert!(shard.send(SNAPSHOT_NOW).await.unwrap().is_none());
}

#[actix::test]
async fn take_snapshot_waits_for_the_event_threshold_unless_forced() {
    let shard = Shard::new(0, 0, 0).start();
    shard.send(batch(0..2)).await.unwrap();
    let policy = |force| TakeSnapshot { every_events: 3, every: Duration::from_secs(3600), force };
    assert!(shard.send(policy(false)).await.unwrap().is_none());
    let forced = shard.send(policy(true)).await.unwrap().expect("forced");
    assert_eq!(player_snapshots(&forced).len(), 1);
}

#[actix::test]
async fn passivate_drops_idle_clean_players_but_never_dirty_ones() {
    let shard = Shard::new(0, 0, 0).start();
    shard.send(Process(vec![event_rec(0, "a", 1), event_rec(1, "b", 2)])).await.unwrap();
    // Both dirty: nothing leaves memory however idle.
    assert_eq!(shard.send(Passivate(Duration::ZERO)).await.unwrap(), 2);
    shard.send(SNAPSHOT_NOW).await.unwrap().expect("due");
    shard.send(Process(vec![event_rec(2, "a", 3)])).await.unwrap();
    // Not idle long enough: both stay.
    assert_eq!(shard.send(Passivate(Duration::from_secs(3600))).await.unwrap(), 2);
    // a is dirty again, b is clean and idle.
    assert_eq!(shard.send(Passivate(Duration::ZERO)).await.unwrap(), 1);
    assert_eq!(seq_of(&shard, "space-race:a").await, Some(2));
    assert_eq!(seq_of(&shard, "space-race:b").await, None);
    let missing = shard.send(MissingKeys(vec!["space-race:a".into(), "space-race:b".into()], None)).await.unwrap();
    assert_eq!(missing, vec!["space-race:b".to_string()]);
}

#[actix::test]
async fn hydrate_restores_snapshot_so_next_event_continues_its_seq() {
    let mut actor = PlayerActor::new(key());
    for n in 0..5u128 {
        let e = envelope(n, at(n as i64), None, score(1));
        let out = actor.handle(PlayerCommand::Record(&e)).unwrap();
        actor.apply(&out);
    }
    let snapshot = serde_json::to_vec(&actor.state).unwrap();

    let shard = Shard::new(0, 10, 10).start();
    let missing = shard.send(MissingKeys(vec![key(), key()], None)).await.unwrap();
    assert_eq!(missing, vec![key()], "missing keys are deduplicated");
    let live = shard.send(Hydrate { requested: missing, loaded: vec![(key(), snapshot)] }).await.unwrap();
    assert_eq!(live, 1);
    assert_eq!(shard.send(GetState(key())).await.unwrap(), Some(actor.state.clone()));

    let p = shard.send(Process(vec![event_rec(10, PLAYER, 100)])).await.unwrap();
    assert_eq!(seqs(&p.outputs), vec![6]);
    // The snapshot's dedup memory came along: an event it saw is refused.
    let p = shard.send(Process(vec![event_rec(11, PLAYER, 3)])).await.unwrap();
    assert_eq!((p.duplicates, p.outputs.len()), (1, 0));
}

#[actix::test]
async fn hydrate_without_or_with_unreadable_snapshot_starts_fresh() {
    let shard = Shard::new(0, 0, 0).start();
    let requested = vec!["space-race:a".to_string(), "space-race:b".to_string()];
    let loaded = vec![("space-race:b".to_string(), b"garbage".to_vec())];
    assert_eq!(shard.send(Hydrate { requested, loaded }).await.unwrap(), 2);
    assert_eq!(shard.send(GetState("space-race:a".into())).await.unwrap(), Some(PlayerState::default()));
    assert_eq!(shard.send(GetState("space-race:b".into())).await.unwrap(), Some(PlayerState::default()));
}

#[actix::test]
async fn hydrate_never_overwrites_a_player_in_memory() {
    let shard = Shard::new(0, 0, 0).start();
    shard.send(batch(0..2)).await.unwrap();
    let stale = serde_json::to_vec(&PlayerState::default()).unwrap();
    shard.send(Hydrate { requested: vec![key()], loaded: vec![(key(), stale)] }).await.unwrap();
    assert_eq!(seq_of(&shard, &key()).await, Some(2));
}

fn tick_rec(offset: u64, t: chrono::DateTime<chrono::Utc>) -> Record {
    rec(offset, &tick_key(0, 1), serde_json::to_vec(&Tick { partition: 0, at: t }).unwrap())
}

fn session_rec(offset: u64, player: &str, n: u128, minute: i64, session: &str, body: EventBody) -> Record {
    let e: EventEnvelope = envelope_for(player, n, at(minute), Some(session), body);
    rec(offset, &format!("{GAME}:{player}"), serde_json::to_vec(&RawRecord::Event(e)).unwrap())
}

/// Two players' sessions, then (after passivation) a tick 30 minutes later.
fn timer_log() -> Vec<Record> {
    vec![
        session_rec(0, "a", 1, 0, "sa", session_start()),
        session_rec(1, "b", 2, 1, "sb", session_start()),
        session_rec(2, "a", 3, 4, "sa", score(1)),
        tick_rec(3, at(31)),
        tick_rec(4, at(34)),
        tick_rec(5, at(35)),
    ]
}

fn timer_ends(outputs: &[NewRecord]) -> Vec<ProcessedEvent> {
    outputs
        .iter()
        .map(|o| serde_json::from_slice::<ProcessedEvent>(&o.payload).unwrap())
        .filter(|e| matches!(&e.body, gm_schemas::ProcessedBody::Event { derived, .. } if derived.closed_by_timer))
        .collect()
}

#[actix::test]
async fn a_tick_closes_the_due_sessions_of_players_in_memory_or_not_and_a_restart_closes_the_same() {
    let log = timer_log();
    // Run 1: everything in memory.
    let shard = Shard::new(0, 0, 0).start();
    let all = shard.send(Process(log.clone())).await.unwrap();
    assert_eq!(all.ticks, 3);
    let ends = timer_ends(&all.outputs);
    let closed: Vec<(String, u64, u64)> = ends
        .iter()
        .map(|e| (e.player_id.as_str().to_string(), e.seq, e.received_at.timestamp() - at(0).timestamp()))
        .map(|(p, seq, secs)| (p, seq, secs as u64))
        .collect();
    // b's last event at 12:01 is due at 12:31; a's at 12:04 is due at 12:34.
    assert_eq!(closed, vec![("b".into(), 2, 31 * 60), ("a".into(), 3, 34 * 60)]);
    let outputs_before_timer = all.outputs.iter().filter(|o| header(o, "gm.kind") != Some("session_end")).count();
    assert_eq!(outputs_before_timer, 3);
    assert_eq!(shard.send(OpenSessions).await.unwrap(), 0);

    // Run 2: snapshot after the events, passivate everybody, restart from the snapshot.
    let shard = Shard::new(0, 0, 0).start();
    shard.send(Process(log[..3].to_vec())).await.unwrap();
    let snapshot = shard
        .send(TakeSnapshot { every_events: 1, every: Duration::from_secs(1), force: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.next_offset, 3);
    let index = snapshot.players.iter().find(|(k, _)| *k == index_key(0)).map(|(_, b)| b.clone());
    assert!(index.is_some(), "the open-session index is saved with the players");
    let restarted = Shard::new(0, 3, 3).with_open_sessions(index.as_deref()).start();
    assert_eq!(restarted.send(OpenSessions).await.unwrap(), 2, "known without loading anyone");
    let missing = restarted.send(MissingKeys(vec![], Some(at(35)))).await.unwrap();
    assert_eq!(missing, vec!["space-race:a".to_string(), "space-race:b".to_string()]);
    let loaded = player_snapshots(&snapshot);
    restarted.send(Hydrate { requested: missing, loaded }).await.unwrap();
    let after = restarted.send(Process(log[3..].to_vec())).await.unwrap();
    assert_eq!(after.outputs, all.outputs[3..].to_vec(), "the same session_end events, ids and seqs included");

    // Run 3: a replay from offset 0 of what was already emitted emits nothing, and continues
    // to the same state.
    let replay = Shard::new(0, 0, 6).start();
    let replayed = replay.send(Process(log.clone())).await.unwrap();
    assert!(replayed.outputs.is_empty());
    for p in ["space-race:a", "space-race:b"] {
        assert_eq!(
            replay.send(GetState(p.into())).await.unwrap(),
            shard_state_after(&log, p).await,
            "replayed state of {p}"
        );
    }
}

async fn shard_state_after(log: &[Record], key: &str) -> Option<PlayerState> {
    let shard = Shard::new(0, 0, 0).start();
    shard.send(Process(log.to_vec())).await.unwrap();
    shard.send(GetState(key.into())).await.unwrap()
}

#[actix::test]
async fn a_tick_with_nothing_due_changes_nothing_and_an_unreadable_tick_is_dead_lettered() {
    let shard = Shard::new(0, 0, 0).start();
    shard.send(Process(timer_log()[..3].to_vec())).await.unwrap();
    let early = shard.send(Process(vec![tick_rec(3, at(30))])).await.unwrap();
    assert_eq!((early.ticks, early.outputs.len(), early.commit_next), (1, 0, Some(4)));
    let bad = shard.send(Process(vec![rec(4, &tick_key(0, 1), b"{}".to_vec())])).await.unwrap();
    assert_eq!((bad.unreadable, bad.dead_letters.len(), bad.commit_next), (1, 1, Some(5)));
    assert_eq!(shard.send(OpenSessions).await.unwrap(), 2);
}

#[actix::test]
async fn an_erased_player_leaves_the_open_session_index_in_the_same_snapshot() {
    let shard = Shard::new(0, 0, 0).start();
    shard.send(Process(vec![session_rec(0, PLAYER, 1, 0, "s", session_start())])).await.unwrap();
    assert_eq!(shard.send(OpenSessions).await.unwrap(), 1);
    shard.send(TakeSnapshot { every_events: 1, every: Duration::from_secs(1), force: true }).await.unwrap();
    let erase = RawRecord::ErasureRequested(erasure(9, at(1)));
    shard.send(Process(vec![rec(1, &key(), serde_json::to_vec(&erase).unwrap())])).await.unwrap();
    assert_eq!(shard.send(OpenSessions).await.unwrap(), 0);
    let snapshot = shard.send(SNAPSHOT_NOW).await.unwrap().expect("due");
    let index = snapshot.players.iter().find(|(k, _)| *k == index_key(0)).expect("the index changed: saved");
    assert!(!String::from_utf8_lossy(&index.1).contains(PLAYER), "the erased player's key is gone from it");
    assert!(snapshot.players.iter().any(|(k, _)| *k == key()), "with the erased player's own snapshot");
    // Nothing left for a tick to close.
    let p = shard.send(Process(vec![tick_rec(2, at(100))])).await.unwrap();
    assert!(p.outputs.is_empty());
}
