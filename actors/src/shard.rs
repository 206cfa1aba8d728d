//! A shard: the actix actor that owns the PlayerActors (and their SessionActors) of one
//! partition of `player.events.raw`. Its handlers are synchronous and do no I/O: the runtime
//! loads snapshots before handing it records, and writes what it returns.

use crate::player::{PlayerActor, PlayerCommand, PlayerState, Policy, Refusal};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use gm_ports::{NewRecord, Record};
use gm_schemas::RawRecord;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

struct Entry {
    actor: PlayerActor,
    dirty: bool,
    last_used: Instant,
}

pub struct Shard {
    partition: u32,
    players: HashMap<String, Entry>,
    /// Records before this offset were already emitted: replay them into state only.
    replay_until: u64,
    /// Offset after the last record applied.
    applied_next: u64,
    events_since_snapshot: u64,
    last_snapshot: Instant,
    /// Records (by offset) that failed processing as often as the runtime allows: they are
    /// dead-lettered when reached instead of being tried again.
    give_up: HashMap<u64, Failure>,
    /// Set when processing panicked: the state may be damaged, so nothing is snapshotted
    /// until the runtime rebuilds the partition.
    broken: bool,
    /// The rules the players of this shard decide by (from the actors configuration).
    policy: Policy,
    /// Every player of the partition with an open session, in memory or not, and the log time
    /// from which the session timer closes one (snapshotted under [`index_key`] with the
    /// players, so a restart knows whom a tick closes without loading everyone).
    open_sessions: BTreeMap<String, DateTime<Utc>>,
    index_dirty: bool,
}

/// Keys of the session timer's tick records on `player.events.raw` start with this (no
/// player key does: a game id holds no `.`-free `gm.tick` prefix with a `:` after it).
pub const TICK_KEY_PREFIX: &str = "gm.tick:";

/// A tick of the session timer: the actors role appends one to each partition it owns
/// every `actors.session_tick_ms` while the partition has open sessions. Processing it closes
/// the sessions whose last event was received `timeout` (or `end_grace`) before `at`. It is
/// in the log, so a replay closes the same sessions at the same point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename = "tick")]
pub struct Tick {
    pub partition: u32,
    /// The appending role's clock.
    pub at: DateTime<Utc>,
}

/// The tick's time, if `record` is a tick.
pub fn tick_at(record: &Record) -> Option<Result<DateTime<Utc>, serde_json::Error>> {
    record.key.starts_with(TICK_KEY_PREFIX).then(|| serde_json::from_slice::<Tick>(&record.payload).map(|t| t.at))
}

/// A key of the tick records that lands on `partition` of a topic of `partitions` partitions
/// (the log partitions by the key's murmur2, so the key is searched for).
pub fn tick_key(partition: u32, partitions: u32) -> String {
    (0u64..)
        .map(|n| format!("{TICK_KEY_PREFIX}{n}"))
        .find(|k| gm_ports::partition_for(k, partitions.max(1)) == partition)
        .expect("some key lands on every partition")
}

/// The tick record for `partition` at `at`.
pub fn tick_record(key: &str, partition: u32, at: DateTime<Utc>) -> NewRecord {
    let payload = serde_json::to_vec(&Tick { partition, at }).expect("a tick serialises");
    NewRecord::new(key.to_string(), payload)
}

/// The snapshot key of a partition's open-session index (no player key has this form).
pub fn index_key(partition: u32) -> String {
    format!("gm.sessions:{partition}")
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OpenSessionIndex {
    due: BTreeMap<String, DateTime<Utc>>,
}

/// Why a record could not be processed, and how many times it was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub offset: u64,
    pub reason: String,
    pub attempts: u32,
}

impl Shard {
    pub fn new(partition: u32, start: u64, replay_until: u64) -> Self {
        Self {
            partition,
            players: HashMap::new(),
            replay_until,
            applied_next: start,
            events_since_snapshot: 0,
            last_snapshot: Instant::now(),
            give_up: HashMap::new(),
            broken: false,
            policy: Policy::default(),
            open_sessions: BTreeMap::new(),
            index_dirty: false,
        }
    }

    /// Starts from the open-session index saved with the partition's snapshots.
    pub fn with_open_sessions(mut self, snapshot: Option<&[u8]>) -> Self {
        if let Some(bytes) = snapshot {
            match serde_json::from_slice::<OpenSessionIndex>(bytes) {
                Ok(index) => self.open_sessions = index.due,
                // Players re-enter the index as their events arrive.
                Err(e) => tracing::error!(partition = self.partition, error = %e, "unreadable open-session index"),
            }
        }
        self
    }

    /// Brings `key`'s entry of the open-session index up to date with its state.
    fn reindex(&mut self, key: &str) {
        let due = self.players.get(key).and_then(|e| e.actor.state.session.next_due(&self.policy.session));
        let changed = match (due, self.open_sessions.get_mut(key)) {
            (Some(due), Some(known)) => std::mem::replace(known, due) != due,
            (Some(due), None) => self.open_sessions.insert(key.to_string(), due).is_none(),
            (None, _) => self.open_sessions.remove(key).is_some(),
        };
        self.index_dirty |= changed;
    }

    /// Decide by `policy` instead of the defaults.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Dead-letters these records when they are reached (they failed too often).
    pub fn giving_up_on(mut self, failures: impl IntoIterator<Item = Failure>) -> Self {
        self.give_up = failures.into_iter().map(|f| (f.offset, f)).collect();
        self
    }
}

/// Players whose key ends with this fail at the fail point `actors::process_record` when it
/// is configured (feature `failpoints`, tests only): a poison record on demand.
pub const POISON_SUFFIX: &str = ":poison";

/// The text of a caught panic.
fn panic_reason(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-text payload".into())
}

impl Actor for Shard {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        tracing::info!(partition = self.partition, players = self.players.len(), "shard stopped");
    }
}

/// Which of these keys are not in memory (their snapshots must be loaded first), and, when
/// the batch holds ticks up to the given time, which players those ticks close sessions of.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct MissingKeys(pub Vec<String>, pub Option<DateTime<Utc>>);

impl Handler<MissingKeys> for Shard {
    type Result = MessageResult<MissingKeys>;
    fn handle(&mut self, msg: MissingKeys, _: &mut Context<Self>) -> Self::Result {
        let mut seen = HashSet::new();
        let due = msg
            .1
            .into_iter()
            .flat_map(|tick| self.open_sessions.iter().filter(move |(_, due)| **due <= tick).map(|(k, _)| k.clone()));
        let keys: Vec<String> = msg.0.into_iter().chain(due).collect();
        MessageResult(keys.into_iter().filter(|k| !self.players.contains_key(k) && seen.insert(k.clone())).collect())
    }
}

/// Snapshots loaded for `requested` keys; keys without one start fresh.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Hydrate {
    pub requested: Vec<String>,
    pub loaded: Vec<(String, Vec<u8>)>,
}

impl Handler<Hydrate> for Shard {
    type Result = usize;
    fn handle(&mut self, msg: Hydrate, _: &mut Context<Self>) -> usize {
        let now = Instant::now();
        let mut loaded: HashMap<String, Vec<u8>> = msg.loaded.into_iter().collect();
        for key in msg.requested {
            let state = loaded
                .remove(&key)
                .and_then(|bytes| match PlayerState::from_snapshot(&bytes) {
                    Ok(state) => Some(state),
                    Err(e) => {
                        tracing::error!(partition = self.partition, error = %e, "unreadable snapshot; replaying from the log");
                        None
                    }
                })
                .unwrap_or_default();
            let fresh = !self.players.contains_key(&key);
            self.players.entry(key.clone()).or_insert(Entry {
                actor: PlayerActor::with_policy(key.clone(), state, self.policy),
                dirty: false,
                last_used: now,
            });
            if fresh {
                // Snapshots written before the index existed hold open sessions too.
                self.reindex(&key);
            }
        }
        self.players.len()
    }
}

/// Apply these records (one partition, offset order).
#[derive(Message)]
#[rtype(result = "Processed")]
pub struct Process(pub Vec<Record>);

#[derive(Debug, Default)]
pub struct Processed {
    pub outputs: Vec<NewRecord>,
    /// Offset to commit, when the batch held records beyond the replay boundary.
    pub commit_next: Option<u64>,
    pub applied: u64,
    pub duplicates: u64,
    /// Events of erased players, dropped.
    pub suppressed: u64,
    pub unreadable: u64,
    /// Session timer ticks processed, and the sessions they closed.
    pub ticks: u64,
    pub sessions_timed_out: u64,
    /// Records that cannot be processed, for `system.dlq`: the original key and payload,
    /// with the reason and origin in headers (see [`dead_letter`]). The runtime commits them
    /// with the outputs and the consumed offsets in one log transaction.
    pub dead_letters: Vec<NewRecord>,
    /// A record at or past the replay boundary whose processing panicked. The batch stopped
    /// before it (outputs and `commit_next` cover the records before it); the shard's state
    /// may be damaged, so the runtime rebuilds the partition and tries the record again, or
    /// dead-letters it once it failed `max_attempts` times.
    pub failed: Option<Failure>,
}

/// The dead letter of `record` (see [`gm_ports::dlq`]).
pub use gm_ports::dlq::dead_letter;
/// Header names of a dead letter on `system.dlq`.
pub use gm_ports::dlq::headers as dlq_headers;

impl Handler<Process> for Shard {
    type Result = MessageResult<Process>;
    fn handle(&mut self, msg: Process, _: &mut Context<Self>) -> Self::Result {
        let mut out = Processed::default();
        let now = Instant::now();
        for record in msg.0 {
            if record.offset < self.applied_next {
                continue; // already applied (a re-delivery after a seek)
            }
            let emit = record.offset >= self.replay_until;
            if let Some(failure) = self.give_up.get(&record.offset).filter(|_| emit) {
                tracing::error!(
                    partition = self.partition,
                    offset = record.offset,
                    attempts = failure.attempts,
                    reason = %failure.reason,
                    "record failed processing too often; dead-lettered"
                );
                out.dead_letters.push(dead_letter(&record, &failure.reason, failure.attempts));
                out.commit_next = Some(record.offset + 1);
                self.applied_next = record.offset + 1;
                self.events_since_snapshot += 1;
                continue;
            }
            // Where the commit stands if this record fails (the records before it).
            let commit_before = out.commit_next;
            self.applied_next = record.offset + 1;
            if emit {
                out.commit_next = Some(record.offset + 1);
            }
            match tick_at(&record) {
                Some(Ok(at)) => {
                    self.tick(at, emit, &record, &mut out);
                    continue;
                }
                Some(Err(e)) => {
                    tracing::error!(partition = self.partition, offset = record.offset, error = %e, "unreadable tick dead-lettered");
                    out.unreadable += 1;
                    if emit {
                        out.dead_letters.push(dead_letter(&record, &format!("undecodable tick record: {e}"), 1));
                    }
                    continue;
                }
                None => {}
            }
            let raw: RawRecord = match gm_schemas::upcast::decode_raw(&record.payload) {
                Ok(raw) => raw,
                Err(e) => {
                    // A decode failure is deterministic: retrying cannot help, so the record
                    // is dead-lettered on its first attempt and the partition moves on. Below
                    // the committed offset (a replay) it was dead-lettered already.
                    tracing::error!(partition = self.partition, offset = record.offset, error = %e, "unreadable raw record dead-lettered");
                    out.unreadable += 1;
                    if emit {
                        out.dead_letters.push(dead_letter(&record, &format!("undecodable raw record: {e}"), 1));
                    }
                    continue;
                }
            };
            let policy = self.policy;
            // Known players (nearly every record) are found without allocating a key.
            if !self.players.contains_key(&record.key) {
                let actor = PlayerActor::with_policy(record.key.clone(), PlayerState::default(), policy);
                self.players.insert(record.key.clone(), Entry { actor, dirty: false, last_used: now });
            }
            let Some(entry) = self.players.get_mut(&record.key) else { continue };
            let command = match &raw {
                RawRecord::Event(e) => PlayerCommand::Record(e),
                RawRecord::ErasureRequested(r) => PlayerCommand::Erase(r),
            };
            // A panic (a bug meeting an unusual event) must not take the shard's arbiter down
            // and stall the partition: it is caught and reported as this record's failure.
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                fail::fail_point!("actors::process_record", record.key.ends_with(POISON_SUFFIX), |_| {
                    panic!("fail point actors::process_record")
                });
                let decided = entry.actor.handle(command);
                if let Ok(event) = &decided {
                    entry.actor.apply(event);
                }
                decided
            }));
            let decided = match outcome {
                Ok(decided) => decided,
                Err(panic) => {
                    let reason = format!("processing panicked: {}", panic_reason(panic.as_ref()));
                    if !emit {
                        // Below the committed offset it was dead-lettered already (the same
                        // code fails the same way), so the replay skips it as the emitting
                        // run did. `handle` does not touch state and `apply` holds no logic.
                        tracing::warn!(partition = self.partition, offset = record.offset, %reason, "replayed record failed again; skipped");
                        continue;
                    }
                    tracing::error!(partition = self.partition, offset = record.offset, %reason, "record processing failed");
                    out.commit_next = commit_before;
                    self.applied_next = record.offset;
                    self.broken = true;
                    out.failed = Some(Failure { offset: record.offset, reason, attempts: 0 });
                    break;
                }
            };
            match decided {
                Ok(event) => {
                    entry.dirty = true;
                    entry.last_used = now;
                    out.applied += 1;
                    self.events_since_snapshot += 1;
                    if emit {
                        emit_output(&mut out, &record, &record.key, &event);
                    }
                    self.reindex(&record.key);
                }
                // Dropped records still move the position: counting them lets the next
                // snapshot carry the watermark past them (an empty snapshot if need be).
                Err(Refusal::Duplicate(_)) => {
                    out.duplicates += 1;
                    self.events_since_snapshot += 1;
                }
                Err(Refusal::Erased(_)) => {
                    out.suppressed += 1;
                    self.events_since_snapshot += 1;
                }
            }
        }
        MessageResult(out)
    }
}

/// Appends `event` (of player `key`) to the outputs, or dead-letters `record` if it cannot be
/// encoded.
fn emit_output(out: &mut Processed, record: &Record, key: &str, event: &gm_schemas::ProcessedEvent) {
    // A processed event is its raw record plus a few derived fields: sized from the record,
    // the buffer is not grown (reallocated and copied) several times per event.
    let mut payload = Vec::with_capacity(record.payload.len() + 256);
    match serde_json::to_writer(&mut payload, event) {
        Ok(()) => out.outputs.push(
            NewRecord::new(key.to_string(), payload).with_header(gm_schemas::processed::KIND_HEADER, event.kind()),
        ),
        Err(e) => out.dead_letters.push(dead_letter(record, &format!("processed event could not be encoded: {e}"), 1)),
    }
}

impl Shard {
    /// The session timer at log time `at`: closes every due session of the partition (the
    /// players were loaded by [`MissingKeys`]), in key order.
    fn tick(&mut self, at: DateTime<Utc>, emit: bool, record: &Record, out: &mut Processed) {
        // A tick moves the position like any record.
        self.events_since_snapshot += 1;
        out.ticks += 1;
        let due: Vec<String> =
            self.open_sessions.iter().filter(|(_, due)| **due <= at).map(|(k, _)| k.clone()).collect();
        let policy = self.policy;
        for key in due {
            let entry = self.players.entry(key.clone()).or_insert_with(|| Entry {
                // Not in memory and no snapshot: nothing open to close (it leaves the index).
                actor: PlayerActor::with_policy(key.clone(), PlayerState::default(), policy),
                dirty: false,
                last_used: Instant::now(),
            });
            for event in entry.actor.handle_tick(at) {
                entry.actor.apply(&event);
                entry.dirty = true;
                out.sessions_timed_out += 1;
                if emit {
                    emit_output(out, record, &key, &event);
                }
            }
            self.reindex(&key);
        }
    }
}

/// How many players of the shard have an open session (the runtime appends ticks only then).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct OpenSessions;

impl Handler<OpenSessions> for Shard {
    type Result = usize;
    fn handle(&mut self, _: OpenSessions, _: &mut Context<Self>) -> usize {
        self.open_sessions.len()
    }
}

/// Snapshot the players changed since the last snapshot, when the policy says so.
#[derive(Message)]
#[rtype(result = "Option<SnapshotBatch>")]
pub struct TakeSnapshot {
    pub every_events: u64,
    pub every: Duration,
    pub force: bool,
}

pub struct SnapshotBatch {
    pub next_offset: u64,
    pub players: Vec<(String, Vec<u8>)>,
}

impl Handler<TakeSnapshot> for Shard {
    type Result = Option<SnapshotBatch>;
    fn handle(&mut self, msg: TakeSnapshot, _: &mut Context<Self>) -> Option<SnapshotBatch> {
        let due = msg.force
            || self.events_since_snapshot >= msg.every_events
            || (self.events_since_snapshot > 0 && self.last_snapshot.elapsed() >= msg.every);
        if self.broken || !due || self.events_since_snapshot == 0 && !msg.force {
            return None;
        }
        let mut players = Vec::new();
        for (key, entry) in self.players.iter_mut().filter(|(_, e)| e.dirty) {
            if let Ok(bytes) = entry.actor.state.to_snapshot() {
                players.push((key.clone(), bytes));
            }
            entry.dirty = false;
        }
        if self.index_dirty {
            let index = OpenSessionIndex { due: self.open_sessions.clone() };
            if let Ok(bytes) = serde_json::to_vec(&index) {
                players.push((index_key(self.partition), bytes));
                self.index_dirty = false;
            }
        }
        self.events_since_snapshot = 0;
        self.last_snapshot = Instant::now();
        Some(SnapshotBatch { next_offset: self.applied_next, players })
    }
}

/// Drop from memory the players idle for longer than this whose state is snapshotted.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Passivate(pub Duration);

impl Handler<Passivate> for Shard {
    type Result = usize;
    fn handle(&mut self, msg: Passivate, _: &mut Context<Self>) -> usize {
        // One clock read for the whole shard, not one per player.
        let now = Instant::now();
        self.players.retain(|_, e| e.dirty || now.duration_since(e.last_used) < msg.0);
        self.players.len()
    }
}

/// Read a player's state (tests and tools).
#[derive(Message)]
#[rtype(result = "Option<PlayerState>")]
pub struct GetState(pub String);

impl Handler<GetState> for Shard {
    type Result = Option<PlayerState>;
    fn handle(&mut self, msg: GetState, _: &mut Context<Self>) -> Option<PlayerState> {
        self.players.get(&msg.0).map(|e| e.actor.state.clone())
    }
}

#[cfg(test)]
mod tests;
