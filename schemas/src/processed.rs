//! Enriched events that PlayerActors emit to `player.events.processed`: one per raw record,
//! with a per-player sequence number and what the actor derived (sessions, first sight).

use crate::events::EventBody;
use crate::ids::{GameId, PlayerId, SessionId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessedEvent {
    pub game_id: GameId,
    pub player_id: PlayerId,
    /// 1, 2, 3… per player, in the order the raw records were appended.
    pub seq: u64,
    /// The raw event's id (or the erasure id).
    pub event_id: Uuid,
    /// Skew-corrected event time.
    pub timestamp: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub body: ProcessedBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProcessedBody {
    /// A player's event, with what the actor derived from it.
    Event { event: EventBody, derived: Derived },
    /// The player's state and snapshots are gone; read models must forget them.
    PlayerErased { erasure_id: Uuid, requested_at: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Derived {
    /// The session this event belongs to (the client's, or one the SessionActor derived).
    pub session_id: Option<SessionId>,
    /// This event opened `session_id`.
    pub session_started: bool,
    /// A session this event closed (the previous one, or `session_id` on `session_end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_session: Option<ClosedSession>,
    /// The first event ever seen of this player.
    pub first_seen: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedSession {
    pub session_id: SessionId,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub length_seconds: u64,
}
