//! PlayerActor: one player's state. `handle` decides (dedup, sequence numbers, sessions via
//! the SessionActor, first sight) and returns the event to emit; `apply` folds an emitted
//! event into state and holds no logic, so replay is pure and cannot fail.

use crate::dedup::{DedupPolicy, RecentIds};
use crate::session::{SessionActor, SessionPolicy};
use chrono::{DateTime, Utc};
use gm_schemas::events::SessionEnd;
use gm_schemas::events::{EventBody, ProgressionStatus, ResourceFlow};
use gm_schemas::{Derived, ErasureRequest, EventEnvelope, GameId, PlayerId, ProcessedBody, ProcessedEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The rules a player's actor decides by, from the actors configuration. Not part of the
/// state: a snapshot holds facts (ids and times), and the policy in force reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub dedup: DedupPolicy,
    pub session: SessionPolicy,
}

impl Default for Policy {
    /// The `[actors]` settings of config/default.toml.
    fn default() -> Self {
        crate::ActorsConfig::default().policy
    }
}

/// Namespace of the ids of the `session_end` events the session timer emits (UUIDv5 of the
/// player and the session), so a replay emits the same ids.
const TIMER_END_NAMESPACE: Uuid = Uuid::from_u128(0x2f0c_93d1_5b7a_4c2e_8e64_a1d9_07b3_c5f8);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub analytics: bool,
    pub personalisation: bool,
}

/// The version of the [`PlayerState`] snapshot format written today.
///
/// | version | change |
/// |---|---|
/// | 1 | no `version` field (snapshots written before schema evolution) |
/// | 2 | `version` field; state built from canonical events (`purchase` v1 and v2 alike) |
/// | 3 | `recent_ids` (ids by the hour they were received, 7 days) replace `recent_event_ids` (the last 256) |
/// | 4 | `session.open` is a list of open sessions, each with `last_received_at`; `session.recently_closed` |
pub const SNAPSHOT_VERSION: u32 = 4;

fn snapshot_v1() -> u32 {
    1
}

/// Why a snapshot could not be read (the player is then rebuilt from the log).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("snapshot version {0} is newer than this build's {SNAPSHOT_VERSION}")]
    TooNew(u64),
    #[error("snapshot is not a JSON object")]
    NotAnObject,
}

/// Everything a player's actor keeps (and snapshots). No personal data: that never leaves
/// the envelope's `personal` part, which actors do not read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayerState {
    /// Snapshot format version ([`SNAPSHOT_VERSION`]); absent in version 1 snapshots.
    #[serde(default = "snapshot_v1")]
    pub version: u32,
    pub seq: u64,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub current_level: Option<String>,
    pub levels_completed: u64,
    pub xp: i64,
    pub playtime_seconds: u64,
    pub session_count: u64,
    pub purchases: u64,
    /// Revenue per ISO 4217 code, minor units.
    pub revenue_minor: BTreeMap<String, i64>,
    /// Items bought minus items used.
    pub inventory: BTreeMap<String, i64>,
    /// Virtual currency balances (sources minus sinks).
    pub balances: BTreeMap<String, i64>,
    pub achievements: u64,
    pub country: Option<String>,
    pub language: Option<String>,
    pub consent: Option<Consent>,
    /// Set when the player was erased; everything else was wiped then.
    pub erased_at: Option<DateTime<Utc>>,
    pub session: SessionActor,
    /// Event ids received in the deduplication window (see [`crate::dedup`]).
    pub recent_ids: RecentIds,
}

impl Default for PlayerState {
    fn default() -> Self {
        Self {
            version: SNAPSHOT_VERSION,
            seq: 0,
            first_seen: None,
            last_seen: None,
            current_level: None,
            levels_completed: 0,
            xp: 0,
            playtime_seconds: 0,
            session_count: 0,
            purchases: 0,
            revenue_minor: BTreeMap::new(),
            inventory: BTreeMap::new(),
            balances: BTreeMap::new(),
            achievements: 0,
            country: None,
            language: None,
            consent: None,
            erased_at: None,
            session: SessionActor::default(),
            recent_ids: RecentIds::default(),
        }
    }
}

impl PlayerState {
    /// Reads a snapshot of any version up to [`SNAPSHOT_VERSION`], upcasting older JSON step
    /// by step to the current form.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, SnapshotError> {
        // The common case, a snapshot of the current version, is one direct parse; older
        // ones (which do not parse, or parse with an older `version`) are upcast as JSON.
        if let Ok(state) = serde_json::from_slice::<Self>(bytes) {
            if state.version == SNAPSHOT_VERSION {
                return Ok(state);
            }
        }
        let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
        let obj = value.as_object_mut().ok_or(SnapshotError::NotAnObject)?;
        let version = obj.get("version").and_then(serde_json::Value::as_u64).unwrap_or(1);
        if version > u64::from(SNAPSHOT_VERSION) {
            return Err(SnapshotError::TooNew(version));
        }
        if version < 2 {
            // v1 → v2: the fields are the same; the canonical event form made v1 and v2
            // purchases fold identically, so only the version is stamped.
            obj.insert("version".into(), serde_json::Value::from(2u32));
        }
        if version < 3 {
            // v2 → v3: the last 256 ids carry no time; they are taken as received in the hour
            // of the player's last event, so they are remembered for the window from there.
            if let Some(ids) = obj.remove("recent_event_ids") {
                let ids: Vec<Uuid> = serde_json::from_value(ids)?;
                let last_seen = match obj.get("last_seen") {
                    Some(v) if !v.is_null() => Some(serde_json::from_value::<DateTime<Utc>>(v.clone())?),
                    _ => None,
                };
                let hour = last_seen.map_or(0, |t| t.timestamp().div_euclid(3600));
                obj.insert("recent_ids".into(), serde_json::to_value(RecentIds::from_hour(hour, ids))?);
            }
            obj.insert("version".into(), serde_json::Value::from(3u32));
        }
        if version < 4 {
            // v3 → v4: one optional open session becomes a list; its last event's time stands
            // for the time it was received (the timer closes it from there).
            if let Some(session) = obj.get_mut("session").and_then(serde_json::Value::as_object_mut) {
                let open = match session.remove("open") {
                    Some(serde_json::Value::Object(mut o)) => {
                        let last = o.get("last_event_at").cloned().unwrap_or(serde_json::Value::Null);
                        o.entry("last_received_at").or_insert(last);
                        vec![serde_json::Value::Object(o)]
                    }
                    Some(serde_json::Value::Array(list)) => list,
                    _ => Vec::new(),
                };
                session.insert("open".into(), serde_json::Value::Array(open));
            }
            obj.insert("version".into(), serde_json::Value::from(4u32));
        }
        Ok(serde_json::from_value(value)?)
    }

    /// The snapshot bytes (always the current version).
    pub fn to_snapshot(&self) -> Result<Vec<u8>, serde_json::Error> {
        // States are built or read at the current version, so the clone (every map and id
        // of the state, per snapshotted player) is only for a state built by hand otherwise.
        if self.version == SNAPSHOT_VERSION {
            serde_json::to_vec(self)
        } else {
            serde_json::to_vec(&Self { version: SNAPSHOT_VERSION, ..self.clone() })
        }
    }
}

/// What the actor is asked to do.
#[derive(Debug, Clone, Copy)]
pub enum PlayerCommand<'a> {
    Record(&'a EventEnvelope),
    Erase(&'a ErasureRequest),
}

/// Why a command produced nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("event {0} was already applied")]
    Duplicate(Uuid),
    /// The player was erased: later events under the same pseudonym are dropped (a gateway
    /// that had not yet heard of the erasure may still have appended some).
    #[error("the player was erased at {0}")]
    Erased(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PlayerActor {
    pub key: String,
    pub state: PlayerState,
    #[serde(skip)]
    pub policy: Policy,
}

impl PlayerActor {
    pub fn new(key: impl Into<String>) -> Self {
        Self { key: key.into(), state: PlayerState::default(), policy: Policy::default() }
    }

    pub fn with_policy(key: impl Into<String>, state: PlayerState, policy: Policy) -> Self {
        Self { key: key.into(), state, policy }
    }

    pub fn handle(&self, command: PlayerCommand<'_>) -> Result<ProcessedEvent, Refusal> {
        match command {
            PlayerCommand::Record(event) => {
                if let Some(at) = self.state.erased_at {
                    return Err(Refusal::Erased(at));
                }
                if self.state.recent_ids.contains(&event.event_id) {
                    return Err(Refusal::Duplicate(event.event_id));
                }
                let session = self.state.session.decide(&self.key, event);
                let (analytics_withheld, personalisation_withheld) = self.withheld(&event.body);
                Ok(ProcessedEvent {
                    game_id: event.game_id.clone(),
                    player_id: event.player_id.clone(),
                    seq: self.state.seq + 1,
                    event_id: event.event_id,
                    timestamp: event.timestamp,
                    received_at: event.received_at,
                    body: ProcessedBody::Event {
                        event: event.body.clone(),
                        derived: Derived {
                            session_id: session.session_id,
                            session_started: session.started,
                            closed_session: session.closed,
                            first_seen: self.state.first_seen.is_none(),
                            merged_session: session.merged,
                            closed_by_timer: false,
                            analytics_withheld,
                            personalisation_withheld,
                        },
                    },
                })
            }
            PlayerCommand::Erase(request) => Ok(ProcessedEvent {
                game_id: request.game_id.clone(),
                player_id: request.player_id.clone(),
                seq: self.state.seq + 1,
                event_id: request.erasure_id,
                timestamp: request.requested_at,
                received_at: request.requested_at,
                body: ProcessedBody::PlayerErased {
                    erasure_id: request.erasure_id,
                    requested_at: request.requested_at,
                },
            }),
        }
    }

    /// The session timer at log time `now` (a tick's time): a `session_end` on the player's
    /// behalf for each open session the policy closes, numbered after the player's events.
    pub fn handle_tick(&self, now: DateTime<Utc>) -> Vec<ProcessedEvent> {
        if self.state.erased_at.is_some() {
            return Vec::new();
        }
        let Some((game, player)) = self.key.split_once(':') else { return Vec::new() };
        let (Ok(game_id), Ok(player_id)) = (GameId::parse(game), PlayerId::parse(player)) else { return Vec::new() };
        self.state
            .session
            .expire(now, &self.policy.session)
            .into_iter()
            .enumerate()
            .map(|(i, closed)| ProcessedEvent {
                game_id: game_id.clone(),
                player_id: player_id.clone(),
                seq: self.state.seq + 1 + i as u64,
                event_id: Uuid::new_v5(
                    &TIMER_END_NAMESPACE,
                    format!("{}:{}", self.key, closed.session_id.as_str()).as_bytes(),
                ),
                timestamp: closed.ended_at,
                received_at: now,
                body: ProcessedBody::Event {
                    event: EventBody::SessionEnd(SessionEnd { length_seconds: None }),
                    derived: Derived {
                        session_id: Some(closed.session_id.clone()),
                        session_started: false,
                        closed_session: Some(closed),
                        first_seen: false,
                        merged_session: None,
                        closed_by_timer: true,
                        // Not a client's event: withheld while the player's consent is off.
                        analytics_withheld: self.state.consent.is_some_and(|c| !c.analytics),
                        personalisation_withheld: self.state.consent.is_some_and(|c| !c.personalisation),
                    },
                },
            })
            .collect()
    }

    /// Whether an event of `body` is withheld from the analytics read models, and from the
    /// recommendations, by the consent the player last gave (`consent_update`; none given:
    /// both allowed). A `consent_update` is never withheld: it is the record of the choice,
    /// and one that gives consent back counts from itself on.
    fn withheld(&self, body: &EventBody) -> (bool, bool) {
        if matches!(body, EventBody::ConsentUpdate(_)) {
            return (false, false);
        }
        match self.state.consent {
            Some(c) => (!c.analytics, !c.personalisation),
            None => (false, false),
        }
    }

    pub fn apply(&mut self, event: &ProcessedEvent) {
        let s = &mut self.state;
        match &event.body {
            ProcessedBody::PlayerErased { requested_at, .. } => {
                *s = PlayerState { seq: event.seq, erased_at: Some(*requested_at), ..PlayerState::default() };
            }
            ProcessedBody::Event { event: body, derived } if derived.closed_by_timer => {
                s.seq = event.seq;
                if let Some(closed) = &derived.closed_session {
                    s.playtime_seconds += closed.length_seconds;
                }
                s.session.apply(derived, body, event.timestamp, event.received_at);
            }
            ProcessedBody::Event { event: body, derived } => {
                s.seq = event.seq;
                s.recent_ids.remember(event.event_id, event.received_at, &self.policy.dedup);
                s.first_seen = Some(s.first_seen.map_or(event.timestamp, |f| f.min(event.timestamp)));
                s.last_seen = Some(s.last_seen.map_or(event.timestamp, |l| l.max(event.timestamp)));
                if let Some(closed) = &derived.closed_session {
                    s.playtime_seconds += closed.length_seconds;
                }
                if derived.session_started {
                    s.session_count += 1;
                }
                s.session.apply(derived, body, event.timestamp, event.received_at);
                apply_body(s, body);
            }
        }
    }
}

fn apply_body(s: &mut PlayerState, body: &EventBody) {
    match body {
        EventBody::Purchase(p) => {
            s.purchases += 1;
            *s.revenue_minor.entry(p.currency.to_string()).or_default() += p.amount_minor.get();
            *s.inventory.entry(p.item_id.to_string()).or_default() += i64::from(p.quantity);
        }
        EventBody::ItemUse(u) => {
            *s.inventory.entry(u.item_id.to_string()).or_default() -= i64::from(u.quantity);
        }
        EventBody::Resource(r) => {
            let balance = s.balances.entry(r.virtual_currency.to_string()).or_default();
            match r.flow {
                ResourceFlow::Source => *balance += r.amount,
                ResourceFlow::Sink => *balance -= r.amount,
            }
        }
        EventBody::Progression(p) => {
            s.current_level = Some(p.level_id.to_string());
            if p.status == ProgressionStatus::Complete {
                s.levels_completed += 1;
                s.xp += p.score.unwrap_or(0);
            }
        }
        EventBody::Achievement(_) => s.achievements += 1,
        EventBody::ProfileUpdate(u) => {
            if u.country.is_some() {
                s.country = u.country.clone();
            }
            if u.language.is_some() {
                s.language = u.language.clone();
            }
        }
        EventBody::ConsentUpdate(c) => {
            s.consent = Some(Consent { analytics: c.analytics, personalisation: c.personalisation });
        }
        EventBody::SessionStart(_) | EventBody::SessionEnd(_) | EventBody::Score(_) | EventBody::Design(_) => {}
    }
}

#[cfg(test)]
mod tests;
