//! SessionActor: derives session boundaries for one player. Decisions (`decide`) are pure
//! functions of the open session and the event; `apply` only folds what was decided.

use chrono::{DateTime, Duration, Utc};
use gm_schemas::events::EventBody;
use gm_schemas::{ClosedSession, EventEnvelope, SessionId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A new session starts after this much inactivity when the client sent no session id.
pub const INACTIVITY: Duration = Duration::minutes(30);

/// Namespace of derived session ids (UUIDv5), so a replay derives the same ids.
const SESSION_NAMESPACE: Uuid = Uuid::from_u128(0x6d2e_b1a4_7c3f_4e0b_9a51_0c8d_f2e6_3b17);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSession {
    pub id: SessionId,
    pub started_at: DateTime<Utc>,
    pub last_event_at: DateTime<Utc>,
}

/// What the session actor decided for one event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDecision {
    pub session_id: Option<SessionId>,
    pub started: bool,
    pub closed: Option<ClosedSession>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SessionActor {
    pub open: Option<OpenSession>,
}

fn close(open: &OpenSession, ended_at: DateTime<Utc>, client_length: Option<u32>) -> ClosedSession {
    let ended_at = ended_at.max(open.last_event_at);
    let measured = (ended_at - open.started_at).num_seconds().max(0) as u64;
    ClosedSession {
        session_id: open.id.clone(),
        started_at: open.started_at,
        ended_at,
        length_seconds: client_length.map(u64::from).unwrap_or(measured),
    }
}

/// A deterministic id for a session the client did not name.
pub fn derived_session_id(player_key: &str, started_at: DateTime<Utc>) -> SessionId {
    let name = format!("{player_key}:{}", started_at.timestamp_millis());
    let id = Uuid::new_v5(&SESSION_NAMESPACE, name.as_bytes());
    SessionId::parse(format!("d-{id}")).expect("\"d-\" and a UUID make a valid session id")
}

impl SessionActor {
    pub fn decide(&self, player_key: &str, event: &EventEnvelope) -> SessionDecision {
        let t = event.timestamp;
        let client = event.session_id.clone();
        let new_id = || client.clone().unwrap_or_else(|| derived_session_id(player_key, t));
        match (&event.body, &self.open) {
            (EventBody::SessionStart(_), open) => SessionDecision {
                session_id: Some(new_id()),
                started: true,
                closed: open.as_ref().map(|o| close(o, o.last_event_at, None)),
            },
            (EventBody::SessionEnd(end), Some(o)) if client.as_ref().is_none_or(|c| *c == o.id) => SessionDecision {
                session_id: Some(o.id.clone()),
                started: false,
                closed: Some(close(o, t, end.length_seconds)),
            },
            (EventBody::SessionEnd(_), Some(o)) => {
                SessionDecision { session_id: client, started: false, closed: Some(close(o, o.last_event_at, None)) }
            }
            (EventBody::SessionEnd(_), None) => SessionDecision { session_id: client, started: false, closed: None },
            (_, Some(o)) => {
                let same = match &client {
                    Some(c) => *c == o.id,
                    None => t - o.last_event_at <= INACTIVITY,
                };
                if same {
                    SessionDecision { session_id: Some(o.id.clone()), started: false, closed: None }
                } else {
                    SessionDecision {
                        session_id: Some(new_id()),
                        started: true,
                        closed: Some(close(o, o.last_event_at, None)),
                    }
                }
            }
            (_, None) => SessionDecision { session_id: Some(new_id()), started: true, closed: None },
        }
    }

    /// Folds a decision made by `decide` (no decisions here).
    pub fn apply(
        &mut self,
        session_id: Option<&SessionId>,
        started: bool,
        closed: Option<&ClosedSession>,
        t: DateTime<Utc>,
    ) {
        if let (Some(c), Some(o)) = (closed, &self.open) {
            if c.session_id == o.id {
                self.open = None;
            }
        }
        if started {
            if let Some(id) = session_id {
                self.open = Some(OpenSession { id: id.clone(), started_at: t, last_event_at: t });
            }
        } else if let (Some(o), Some(id)) = (self.open.as_mut(), session_id) {
            if o.id == *id {
                o.last_event_at = o.last_event_at.max(t);
            }
        }
    }
}

#[cfg(test)]
mod tests;
