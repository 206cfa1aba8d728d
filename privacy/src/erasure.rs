//! An erasure request's life: its status, its timeline (each step with its time) and, once
//! every store has done its part, a signed receipt listing what was removed where.

use crate::crypto::ReceiptSigner;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErasureStatus {
    /// Accepted; the data key is destroyed; stores are still removing the player's rows.
    Pending,
    /// Every store confirmed; the receipt is final.
    Completed,
}

impl ErasureStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "completed" => Some(Self::Completed),
            _ => None,
        }
    }
}

/// Step names, in the order they normally happen.
pub mod steps {
    pub const REQUESTED: &str = "requested";
    pub const DATA_KEY_DESTROYED: &str = "data_key_destroyed";
    pub const NOTHING_HELD: &str = "nothing_held";
    pub const ERASURE_EVENT_APPENDED: &str = "erasure_event_appended";
    /// Followed by `:{projection}`.
    pub const PROJECTION_CONFIRMED: &str = "projection_confirmed";
    pub const CACHE_PURGED: &str = "cache_purged";
    pub const PSEUDONYM_UNLINKED: &str = "pseudonym_unlinked";
    pub const COMPLETED: &str = "completed";
    /// Re-opened: the data database was restored to a point before the erasure.
    pub const REAPPLIED_AFTER_RESTORE: &str = "reapplied_after_restore";
    /// A re-opened erasure's earlier confirmations forgotten; its time is the data database's
    /// clock, which dates the confirmations.
    pub const CONFIRMATIONS_RESET: &str = "confirmations_reset";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Step {
    pub step: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Step {
    pub fn new(step: impl Into<String>, at: DateTime<Utc>, detail: Option<String>) -> Self {
        Self { step: step.into(), at, detail }
    }
}

/// An erasure as stored and as `GET /v1/privacy/erasures/{id}` shows it. It names the game
/// and a one-way subject hash, never the player.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Erasure {
    pub erasure_id: Uuid,
    pub game_id: String,
    /// HMAC of `game_id:player_id` under a key derived from the master key (hex).
    pub subject: String,
    pub status: ErasureStatus,
    pub reason: String,
    /// Who asked (the token's subject).
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    pub timeline: Vec<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
}

impl Erasure {
    pub fn has_step(&self, name: &str) -> bool {
        self.timeline.iter().any(|s| s.step == name)
    }
}

/// What was removed from one store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoreAction {
    pub store: String,
    pub removed: String,
}

/// Proof of an erasure: every store and what was removed there, HMAC-SHA256-signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    pub erasure_id: Uuid,
    pub game_id: String,
    pub subject: String,
    pub requested_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub stores: Vec<StoreAction>,
    /// `hmac-sha256` of the receipt's other fields as compact JSON, in this order, hex.
    pub signature: String,
}

#[derive(Serialize)]
struct Unsigned<'a> {
    erasure_id: &'a Uuid,
    game_id: &'a str,
    subject: &'a str,
    requested_at: &'a DateTime<Utc>,
    completed_at: &'a DateTime<Utc>,
    stores: &'a [StoreAction],
}

impl Receipt {
    fn payload(&self) -> Vec<u8> {
        serde_json::to_vec(&Unsigned {
            erasure_id: &self.erasure_id,
            game_id: &self.game_id,
            subject: &self.subject,
            requested_at: &self.requested_at,
            completed_at: &self.completed_at,
            stores: &self.stores,
        })
        .expect("serialisable")
    }

    pub fn signed(
        erasure: &Erasure,
        completed_at: DateTime<Utc>,
        stores: Vec<StoreAction>,
        signer: &ReceiptSigner,
    ) -> Self {
        let mut r = Receipt {
            erasure_id: erasure.erasure_id,
            game_id: erasure.game_id.clone(),
            subject: erasure.subject.clone(),
            requested_at: erasure.requested_at,
            completed_at,
            stores,
            signature: String::new(),
        };
        r.signature = signer.sign(&r.payload());
        r
    }

    pub fn verify(&self, signer: &ReceiptSigner) -> bool {
        signer.verify(&self.payload(), &self.signature)
    }
}

/// The stores an erasure touches and what it removes in each, given the read models that
/// confirmed (`projections`) and whether the player was ever seen.
pub fn receipt_stores(
    projections: &[(String, DateTime<Utc>)],
    player_was_known: bool,
    cache: bool,
) -> Vec<StoreAction> {
    let action = |store: &str, removed: &str| StoreAction { store: store.into(), removed: removed.into() };
    if !player_was_known {
        return vec![action("player_keys", "nothing held: the player was never seen; future events are suppressed")];
    }
    let mut out = vec![
        action("player_keys", "data key destroyed (crypto-shredding); pseudonym mapping deleted"),
        action(
            "log:player.events.raw",
            "personal fields unreadable (sealed with the destroyed key); records carry only the unlinked pseudonym",
        ),
        action("player_personal", "sealed personal values deleted"),
        action("snapshots", "player state wiped (PlayerErased applied)"),
        action("log:player.events.processed", "records carry only the unlinked pseudonym"),
    ];
    for (projection, at) in projections {
        out.push(action(
            &format!("read_model:{projection}"),
            &format!("player rows deleted or re-keyed to an irreversible pseudonym (confirmed {at})"),
        ));
    }
    if cache {
        out.push(action("cache", "cached profile and player keys deleted"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn erasure() -> Erasure {
        Erasure {
            erasure_id: Uuid::from_u128(1),
            game_id: "g".into(),
            subject: "ab".into(),
            status: ErasureStatus::Pending,
            reason: "user request".into(),
            requested_by: "staff-1".into(),
            requested_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            completed_at: None,
            timeline: vec![],
            receipt: None,
        }
    }

    #[test]
    fn a_receipt_verifies_and_any_change_breaks_it() {
        let signer = MasterKey::from_bytes([3; 32]).receipt_signer();
        let stores = receipt_stores(&[("funnel".into(), Utc::now())], true, true);
        let r = Receipt::signed(&erasure(), Utc::now(), stores, &signer);
        assert!(r.verify(&signer));
        let mut changed = r.clone();
        changed.stores.pop();
        assert!(!changed.verify(&signer));
        let mut changed = r.clone();
        changed.completed_at += chrono::Duration::seconds(1);
        assert!(!changed.verify(&signer));
    }

    #[test]
    fn receipt_lists_each_confirmed_read_model_and_the_cache() {
        let stores = receipt_stores(&[("a".into(), Utc::now()), ("b".into(), Utc::now())], true, true);
        let names: Vec<&str> = stores.iter().map(|s| s.store.as_str()).collect();
        assert!(names.contains(&"read_model:a") && names.contains(&"read_model:b") && names.contains(&"cache"));
        assert!(names.contains(&"player_keys") && names.contains(&"snapshots"));
        let unknown = receipt_stores(&[], false, true);
        assert_eq!(unknown.len(), 1);
    }

    #[test]
    fn status_round_trips() {
        for s in [ErasureStatus::Pending, ErasureStatus::Completed] {
            assert_eq!(ErasureStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ErasureStatus::parse("x"), None);
    }
}
