//! What privacy needs from a database (PostgreSQL in production, SQLite embedded). Every
//! table named here is keyed by the one-way [`Subject`], never by the player's id; the
//! player's id is held only in `player_keys`, and only until the player's erasure completes.

use crate::crypto::Subject;
use crate::erasure::{steps, Erasure, ErasureStatus, Receipt, Step};
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

/// A subject's `player_keys` row as an erasure start reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldKey {
    pub pseudonym: Option<String>,
    /// The row still holds a wrapped data key (not destroyed by an earlier erasure).
    pub has_key: bool,
    pub created_at: DateTime<Utc>,
}

impl NewErasure {
    /// The start of this erasure, decided on what the store holds of the subject: its key row
    /// and its latest erasure, read in the transaction that then writes a `Started` one (the
    /// key destroyed and suppression set, the sealed values deleted, the erasure inserted with
    /// its timeline, [`audit`](Self::audit) appended). Both stores write it from here.
    pub fn begin(&self, key: Option<HeldKey>, latest: Option<Erasure>) -> Result<Begun, StoreError> {
        if let Some(existing) = latest {
            // Still the same player (no new key since): the same erasure answers.
            let came_back = key.as_ref().is_some_and(|k| k.has_key && k.created_at > existing.requested_at);
            if !came_back {
                return Ok(Begun::Existing(existing));
            }
        }
        let pseudonym = key
            .filter(|k| k.has_key)
            .and_then(|k| k.pseudonym)
            .map(|p| {
                PlayerId::parse(p).map_err(|_| StoreError::Other("privacy table holds an invalid pseudonym".into()))
            })
            .transpose()?;
        let first = match pseudonym {
            Some(_) => Step::new(steps::DATA_KEY_DESTROYED, self.requested_at, None),
            None => Step::new(steps::NOTHING_HELD, self.requested_at, Some("the player was never seen".into())),
        };
        let erasure = Erasure {
            erasure_id: self.erasure_id,
            game_id: self.game_id.to_string(),
            subject: self.subject.to_hex(),
            status: ErasureStatus::Pending,
            reason: self.reason.clone(),
            requested_by: self.requested_by.clone(),
            requested_at: self.requested_at,
            completed_at: None,
            timeline: vec![Step::new(steps::REQUESTED, self.requested_at, None), first],
            receipt: None,
        };
        Ok(Begun::Started { erasure, pseudonym })
    }

    /// The audit line of a started erasure.
    pub fn audit(&self) -> AuditEntry {
        AuditEntry {
            at: self.requested_at,
            actor: self.requested_by.clone(),
            action: "erasure_requested".into(),
            game_id: Some(self.game_id.to_string()),
            erasure_id: Some(self.erasure_id),
            subject: Some(self.subject.to_hex()),
            detail: None,
        }
    }
}

impl AuditEntry {
    /// The audit line of an erasure completed with `receipt`, written by both stores.
    pub fn erasure_completed(receipt: &Receipt) -> Self {
        Self {
            at: receipt.completed_at,
            actor: "system".into(),
            action: "erasure_completed".into(),
            game_id: Some(receipt.game_id.clone()),
            erasure_id: Some(receipt.erasure_id),
            subject: Some(receipt.subject.clone()),
            detail: None,
        }
    }
}

/// Removes a player's cached reads (Redis in production): the erasure coordinator purges them.
#[async_trait]
pub trait PlayerCache: Send + Sync {
    /// How many keys were removed. `Err` means the cache did not confirm: retry.
    async fn forget_player(&self, game: &GameId, player: &PlayerId) -> Result<u64, StoreError>;
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

/// Which erasures [`PrivacyStore::erasures`] lists (the compliance console's list).
#[derive(Debug, Clone, PartialEq)]
pub struct ErasureFilter {
    /// Only the erasures of these games; `None`: of every game (an empty list matches none).
    pub games: Option<Vec<String>>,
    /// Only the erasures in this status.
    pub status: Option<crate::erasure::ErasureStatus>,
    /// At most this many, the latest requested first.
    pub limit: u32,
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

    /// The erasures `filter` selects, the latest requested first (ties: the greater id first).
    async fn erasures(&self, filter: &ErasureFilter) -> Result<Vec<Erasure>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(at: DateTime<Utc>) -> NewErasure {
        NewErasure {
            erasure_id: Uuid::from_u128(2),
            subject: Subject([7; 32]),
            game_id: GameId::parse("g").unwrap(),
            reason: "user request".into(),
            requested_by: "staff-1".into(),
            requested_at: at,
            suppressed_until: at + chrono::Duration::days(30),
        }
    }

    fn key(has_key: bool, created_at: DateTime<Utc>) -> HeldKey {
        HeldKey { pseudonym: Some("pz-1".into()), has_key, created_at }
    }

    fn started(begun: Begun) -> (Erasure, Option<PlayerId>) {
        match begun {
            Begun::Started { erasure, pseudonym } => (erasure, pseudonym),
            Begun::Existing(e) => panic!("existing {e:?}"),
        }
    }

    #[test]
    fn a_known_player_starts_with_the_key_destroyed_and_an_unknown_one_with_nothing_held() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let (erasure, pseudonym) =
            started(request(t).begin(Some(key(true, t - chrono::Duration::days(1))), None).unwrap());
        assert_eq!(pseudonym, Some(PlayerId::parse("pz-1").unwrap()));
        let steps: Vec<&str> = erasure.timeline.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(steps, [steps::REQUESTED, steps::DATA_KEY_DESTROYED]);
        assert_eq!(
            (erasure.status, erasure.subject.as_str()),
            (ErasureStatus::Pending, Subject([7; 32]).to_hex().as_str())
        );

        for held in [None, Some(key(false, t))] {
            let (erasure, pseudonym) = started(request(t).begin(held, None).unwrap());
            assert_eq!(pseudonym, None, "no data key: nothing to append under a pseudonym");
            assert!(erasure.has_step(steps::NOTHING_HELD));
        }
        let audit = request(t).audit();
        assert_eq!((audit.action.as_str(), audit.erasure_id), ("erasure_requested", Some(Uuid::from_u128(2))));
    }

    #[test]
    fn the_latest_erasure_answers_unless_the_player_came_back_with_a_new_key() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let (earlier, _) = started(request(t).begin(Some(key(true, t - chrono::Duration::days(1))), None).unwrap());
        let later = t + chrono::Duration::days(40);
        // Key destroyed by the earlier erasure, or a key from before it: the same erasure.
        for held in [Some(key(false, t)), Some(key(true, t - chrono::Duration::days(1))), None] {
            match request(later).begin(held, Some(earlier.clone())).unwrap() {
                Begun::Existing(e) => assert_eq!(e, earlier),
                other => panic!("{other:?}"),
            }
        }
        // A key created after the erasure: the player came back; a new erasure starts.
        let (again, pseudonym) =
            started(request(later).begin(Some(key(true, t + chrono::Duration::days(35))), Some(earlier)).unwrap());
        assert_eq!(again.requested_at, later);
        assert!(pseudonym.is_some() && again.has_step(steps::DATA_KEY_DESTROYED));
    }

    #[test]
    fn a_corrupt_pseudonym_is_a_store_error() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let held = HeldKey { pseudonym: Some(String::new()), has_key: true, created_at: t };
        assert!(matches!(request(t).begin(Some(held), None), Err(StoreError::Other(_))));
    }
}
