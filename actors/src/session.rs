//! SessionActor: derives the sessions of one player. Decisions (`decide`, `expire`) are pure
//! functions of the actor's state and the event (or the timer's time); `apply` only folds
//! what was decided.
//!
//! A session is its id. The client's session id names it; events without one belong to the
//! open session they are near in event time (30 minutes of inactivity), or start an implicit
//! session with a derived id. Whatever order a session's events arrive in — its
//! `session_start` after its other events, retries, batches appended in either order — it is
//! started once:
//! - an event of an open session continues it (its start moves back to the earliest event);
//! - an event of a recently closed session (the last [`MAX_CLOSED_IDS`]) joins it and
//!   changes nothing: it was counted and closed already — so does an event without a session
//!   id from before such a session ended, when no open session is near it;
//! - the first event of an unknown client session that is near an open implicit session
//!   renames that session (`merged_session`): identify-then-`Session Started` is one visit;
//! - only an unknown session with nothing to continue starts one.
//!
//! A session closes on its client's `session_end`, or by the timer: when the log's time (a
//! tick's time) is `timeout` past the last event of the session the gateway received, at its
//! last event (see [`SessionActor::expire`] and docs/adr/0007-sessions-closed-by-log-time.md).
//! A `session_end` that arrives before anything else of its session opens it as ended, and
//! the timer closes it `end_grace` after its last event was received, so the session's other
//! events, arriving just after, still count in it.

use chrono::{DateTime, Duration, Utc};
use gm_schemas::events::EventBody;
use gm_schemas::{ClosedSession, Derived, EventEnvelope, SessionId};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use uuid::Uuid;

/// Events without a session id further than this (event time) from every open session start
/// an implicit session.
pub const INACTIVITY: Duration = Duration::minutes(30);

/// Open sessions a player may have at once (several devices); a new one beyond this closes
/// the one idle longest.
pub const MAX_OPEN: usize = 8;

/// Ids of closed sessions remembered, so that a late event of one never starts it again.
pub const MAX_CLOSED_IDS: usize = 16;

/// Namespace of derived session ids (UUIDv5), so a replay derives the same ids.
const SESSION_NAMESPACE: Uuid = Uuid::from_u128(0x6d2e_b1a4_7c3f_4e0b_9a51_0c8d_f2e6_3b17);

/// When the timer closes sessions (log time: `received_at` of events, the time of ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session none of whose events was received for this long is closed.
    pub timeout: Duration,
    /// A session whose `session_end` arrived before the rest of it is closed this long after
    /// its last event was received.
    pub end_grace: Duration,
}

impl Default for SessionPolicy {
    /// `actors.session_timeout_ms` and `actors.session_end_grace_ms` of config/default.toml.
    fn default() -> Self {
        crate::ActorsConfig::default().policy.session
    }
}

/// A `session_end` received for a session before its other events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEnd {
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length_seconds: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSession {
    pub id: SessionId,
    /// Earliest and latest event time of the session's events so far.
    pub started_at: DateTime<Utc>,
    pub last_event_at: DateTime<Utc>,
    /// Latest `received_at` (gateway clock, stored in the log) of the session's events.
    pub last_received_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<PendingEnd>,
}

impl OpenSession {
    /// A session the client did not name (its id was derived).
    pub fn is_implicit(&self) -> bool {
        self.id.as_str().starts_with("d-")
    }

    /// Whether an event at `t` without a session id belongs here.
    fn near(&self, t: DateTime<Utc>) -> bool {
        t >= self.started_at - INACTIVITY && t <= self.last_event_at + INACTIVITY
    }

    /// The log time from which the timer closes this session.
    pub fn due(&self, policy: &SessionPolicy) -> DateTime<Utc> {
        self.last_received_at + if self.ended.is_some() { policy.end_grace } else { policy.timeout }
    }
}

/// A session closed recently: its id, and the event times it spanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedRef {
    pub id: SessionId,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
}

/// What the session actor decided for one event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDecision {
    pub session_id: Option<SessionId>,
    pub started: bool,
    pub closed: Option<ClosedSession>,
    /// The implicit session `session_id` replaces (renamed, not a second session).
    pub merged: Option<SessionId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SessionActor {
    /// Open sessions, in the order they started (usually one).
    #[serde(default)]
    pub open: Vec<OpenSession>,
    /// The last sessions closed, oldest first.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub recently_closed: VecDeque<ClosedRef>,
}

/// Closed at `t` by the client: its length if it gave one, measured otherwise.
fn close_at(open: &OpenSession, t: DateTime<Utc>, client_length: Option<u32>) -> ClosedSession {
    let started_at = open.started_at.min(t);
    let ended_at = t.max(open.last_event_at);
    let measured = (ended_at - started_at).num_seconds().max(0) as u64;
    ClosedSession {
        session_id: open.id.clone(),
        started_at,
        ended_at,
        length_seconds: client_length.map(u64::from).unwrap_or(measured),
    }
}

/// Closed without a client's `session_end` now: at its last event (or at the end received
/// early).
fn close_idle(open: &OpenSession) -> ClosedSession {
    match &open.ended {
        Some(end) => close_at(open, end.at, end.length_seconds),
        None => close_at(open, open.last_event_at, None),
    }
}

/// A deterministic id for a session the client did not name.
pub fn derived_session_id(player_key: &str, started_at: DateTime<Utc>) -> SessionId {
    let name = format!("{player_key}:{}", started_at.timestamp_millis());
    let id = Uuid::new_v5(&SESSION_NAMESPACE, name.as_bytes());
    SessionId::parse(format!("d-{id}")).expect("\"d-\" and a UUID make a valid session id")
}

impl SessionActor {
    fn find(&self, id: &SessionId) -> Option<&OpenSession> {
        self.open.iter().find(|o| o.id == *id)
    }

    /// The open session (passing `filter`) an event at `t` is near; the latest active first.
    fn nearest(&self, t: DateTime<Utc>, filter: impl Fn(&OpenSession) -> bool) -> Option<&OpenSession> {
        self.open.iter().filter(|o| filter(o) && o.near(t)).max_by_key(|o| o.last_event_at)
    }

    fn start(&self, id: SessionId) -> SessionDecision {
        let overflow = (self.open.len() >= MAX_OPEN)
            .then(|| self.open.iter().min_by_key(|o| o.last_received_at).map(close_idle))
            .flatten();
        SessionDecision { session_id: Some(id), started: true, closed: overflow, merged: None }
    }

    pub fn decide(&self, player_key: &str, event: &EventEnvelope) -> SessionDecision {
        let t = event.timestamp;
        let end = match &event.body {
            EventBody::SessionEnd(e) => Some(e.length_seconds),
            _ => None,
        };
        let continuing = |o: &OpenSession| SessionDecision {
            session_id: Some(o.id.clone()),
            closed: end.map(|length| close_at(o, t, length)),
            ..SessionDecision::default()
        };
        match &event.session_id {
            Some(id) => {
                if let Some(o) = self.find(id) {
                    return continuing(o);
                }
                if self.recently_closed.iter().any(|c| c.id == *id) {
                    // Counted and closed already: a late event (or a retry) joins it.
                    return SessionDecision { session_id: Some(id.clone()), ..SessionDecision::default() };
                }
                if let Some(implicit) = self.nearest(t, OpenSession::is_implicit) {
                    let renamed = OpenSession { id: id.clone(), ..implicit.clone() };
                    return SessionDecision { merged: Some(implicit.id.clone()), ..continuing(&renamed) };
                }
                self.start(id.clone())
            }
            None => match self.nearest(t, |_| true) {
                Some(o) => continuing(o),
                None => {
                    match self.recently_closed.iter().rev().find(|c| t >= c.started_at - INACTIVITY && t <= c.ended_at)
                    {
                        // A late event from before a closed session ended (an identify that
                        // arrived after the rest of its visit) joins it: counted already.
                        Some(c) => SessionDecision { session_id: Some(c.id.clone()), ..SessionDecision::default() },
                        // The end of a session nobody named: nothing to close.
                        None if end.is_some() => SessionDecision::default(),
                        None => self.start(derived_session_id(player_key, t)),
                    }
                }
            },
        }
    }

    /// The sessions the timer closes at log time `now`, in the order they started.
    pub fn expire(&self, now: DateTime<Utc>, policy: &SessionPolicy) -> Vec<ClosedSession> {
        self.open.iter().filter(|o| o.due(policy) <= now).map(close_idle).collect()
    }

    /// The earliest log time at which the timer closes one of the open sessions.
    pub fn next_due(&self, policy: &SessionPolicy) -> Option<DateTime<Utc>> {
        self.open.iter().map(|o| o.due(policy)).min()
    }

    /// Folds what was derived for an event at `t` received at `received_at` (no decisions).
    pub fn apply(&mut self, derived: &Derived, body: &EventBody, t: DateTime<Utc>, received_at: DateTime<Utc>) {
        if let (Some(from), Some(to)) = (&derived.merged_session, &derived.session_id) {
            if let Some(o) = self.open.iter_mut().find(|o| o.id == *from) {
                o.id = to.clone();
            }
        }
        match &derived.session_id {
            Some(id) if derived.session_started => {
                let ended = match body {
                    EventBody::SessionEnd(e) => Some(PendingEnd { at: t, length_seconds: e.length_seconds }),
                    _ => None,
                };
                self.open.push(OpenSession {
                    id: id.clone(),
                    started_at: t,
                    last_event_at: t,
                    last_received_at: received_at,
                    ended,
                });
            }
            Some(id) => {
                if let Some(o) = self.open.iter_mut().find(|o| o.id == *id) {
                    o.started_at = o.started_at.min(t);
                    o.last_event_at = o.last_event_at.max(t);
                    o.last_received_at = o.last_received_at.max(received_at);
                }
            }
            None => {}
        }
        if let Some(closed) = &derived.closed_session {
            if let Some(i) = self.open.iter().position(|o| o.id == closed.session_id) {
                self.open.remove(i);
                self.recently_closed.push_back(ClosedRef {
                    id: closed.session_id.clone(),
                    started_at: closed.started_at,
                    ended_at: closed.ended_at,
                });
                if self.recently_closed.len() > MAX_CLOSED_IDS {
                    self.recently_closed.pop_front();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
