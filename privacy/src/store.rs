//! What privacy needs from a database (PostgreSQL in production, SQLite embedded). Every
//! table named here is keyed by the one-way [`Subject`], never by the player's id; the
//! player's id is held only in `player_keys`, and only until the player's erasure completes.

use crate::crypto::Subject;
use crate::erasure::{Erasure, Receipt, Step};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gm_ports::StoreError;
use gm_schemas::{GameId, PlayerId, SealedPersonal};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

/// A player seen for the first time: the pseudonym and wrapped data key to create, unless
/// another request created them first (then those win).
#[derive(Debug, Clone)]
pub struct NewPlayer {
    pub subject: Subject,
    pub game_id: GameId,
    pub player_id: PlayerId,
    pub pseudonym: PlayerId,
    pub wrapped_key: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PlayerKeyState {
    /// Events are accepted under this pseudonym; personal fields sealed with this key.
    Active { pseudonym: PlayerId, wrapped_key: Vec<u8> },
    /// The player was erased: events are refused until `until`.
    Suppressed { erased_at: DateTime<Utc>, until: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlayerEntry {
    pub subject: Subject,
    pub state: PlayerKeyState,
}

/// An event's sealed personal fields, kept for the right of access (the log only keeps them
/// for its retention). Same sealed value as on the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPersonal {
    pub subject: Subject,
    pub game_id: GameId,
    pub pseudonym: PlayerId,
    pub event_id: Uuid,
    pub received_at: DateTime<Utc>,
    pub sealed: SealedPersonal,
}

/// The `player_keys` row of a subject.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayerRecord {
    pub game_id: GameId,
    /// Present until an erasure of the player completes.
    pub player_id: Option<PlayerId>,
    pub pseudonym: Option<PlayerId>,
    /// Gone once the player is erased (crypto-shredding).
    pub wrapped_key: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub erased_at: Option<DateTime<Utc>>,
    pub suppressed_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewErasure {
    pub erasure_id: Uuid,
    pub subject: Subject,
    pub game_id: GameId,
    pub reason: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub suppressed_until: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub enum Begun {
    /// An erasure of this player already exists (pending, or completed and the player has not
    /// come back since): the same request again gets the same erasure.
    Existing(Erasure),
    /// Started: the data key is destroyed, sealed personal values deleted, events suppressed.
    /// `pseudonym` is `None` when the player was never seen.
    Started { erasure: Erasure, pseudonym: Option<PlayerId> },
}

/// One line of the append-only audit trail: who did what, when. No personal data: players
/// appear only as subject hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// The token subject of the person who acted, or `system`.
    pub actor: String,
    /// `erasure_requested`, `erasure_completed`, `export`, `retention_run`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasure_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[async_trait]
pub trait PrivacyStore: Send + Sync {
    /// The state of each player (one entry per distinct subject), creating the new ones, in
    /// one round trip.
    async fn ensure_players(&self, players: Vec<NewPlayer>) -> Result<Vec<PlayerEntry>, StoreError>;

    /// Keeps sealed personal values (for export), in one round trip.
    async fn keep_personal(&self, rows: Vec<StoredPersonal>) -> Result<(), StoreError>;

    async fn player(&self, subject: &Subject) -> Result<Option<PlayerRecord>, StoreError>;

    async fn personal_of(&self, subject: &Subject) -> Result<Vec<StoredPersonal>, StoreError>;

    /// The player id behind each known pseudonym (unknown or unlinked ones are absent).
    async fn resolve_pseudonyms(&self, pseudonyms: &[String]) -> Result<HashMap<String, String>, StoreError>;

    /// In one transaction: an existing erasure of the subject, or a new one with the data key
    /// destroyed, the sealed personal values deleted, suppression set and the audit written.
    async fn begin_erasure(&self, request: NewErasure) -> Result<Begun, StoreError>;

    async fn add_step(&self, erasure_id: Uuid, step: Step) -> Result<(), StoreError>;

    async fn erasure(&self, erasure_id: Uuid) -> Result<Option<Erasure>, StoreError>;

    async fn pending_erasures(&self) -> Result<Vec<Erasure>, StoreError>;

    /// The projections that applied the erasure's `PlayerErased` event, and when.
    async fn confirmations(&self, erasure_id: Uuid) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;

    /// In one transaction: the erasure completed with its receipt and last steps, the
    /// pseudonym unlinked from the player's id, the audit written. Idempotent.
    async fn complete_erasure(&self, erasure_id: Uuid, receipt: Receipt, steps: Vec<Step>) -> Result<(), StoreError>;

    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError>;

    /// The latest audit entries, newest first: of every game (entries without one included)
    /// when `games` is `None`, else only the entries of those games.
    async fn audit_trail(&self, limit: u32, games: Option<&[String]>) -> Result<Vec<AuditEntry>, StoreError>;
}
