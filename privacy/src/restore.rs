//! Erasures that survive a restore of the data database.
//!
//! With `privacy.keys_url` set, the data keys and the erasure records (the ledger) live in a
//! keys database that data-database restores never rewind. A data database restored to a
//! point before an erasure brings back the player's rows (read models, snapshots) but not
//! their key, and its `erasure_confirmations` no longer hold the erasure. At start, the
//! erasure coordinator compares the two ([`unapplied`]), finds the player's id among the
//! restored ids of the game by its subject hash ([`Identify`]: the ledger never holds the id),
//! and runs the erasure again on the data side under the same erasure id.
//!
//! This module decides; the I/O goes through the two ports below.

use crate::crypto::{Subject, SubjectHasher};
use crate::erasure::{steps, Erasure, ErasureStatus};
use crate::store::{AuditEntry, Begun, NewErasure, NewPlayer, PlayerEntry, PlayerRecord, PrivacyStore, StoredPersonal};
use crate::Receipt;
use crate::Step;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gm_ports::StoreError;
use gm_schemas::{GameId, PlayerId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// The keys database's side: its completed erasures, and re-opening one.
#[async_trait]
pub trait ErasureLedger: Send + Sync {
    /// Completed erasures with an id above `after`, by id, at most `limit`.
    async fn completed_erasures(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<Erasure>, StoreError>;

    /// In one transaction: the completed erasure set pending again with `step` in its
    /// timeline, and the player's id and pseudonym linked again to their (destroyed) key
    /// row, so that the projections can find the player's rows once more. `false` (nothing
    /// changed) when the erasure is not completed or the player came back since (their key
    /// row holds a new key).
    async fn reopen(
        &self,
        erasure_id: Uuid,
        player: &PlayerId,
        pseudonym: &PlayerId,
        step: Step,
    ) -> Result<bool, StoreError>;
}

/// The data database's side: what a restore rewinds.
#[async_trait]
pub trait ErasureRecords: Send + Sync {
    /// The projections that confirmed each of `erasure_ids` (absent: none).
    async fn confirmed(&self, erasure_ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<String>>, StoreError>;

    /// Forgets the confirmations of an erasure being applied again, so that it completes only
    /// once every projection applied it with the player's id known. Returns the database's
    /// time after the deletion: later confirmations are dated from it on.
    async fn forget_confirmations(&self, erasure_id: Uuid) -> Result<DateTime<Utc>, StoreError>;

    /// Player ids of `game` in the read models, above `after`, in order, at most `limit`.
    async fn players_of_game(
        &self,
        game: &GameId,
        after: Option<&PlayerId>,
        limit: u32,
    ) -> Result<Vec<PlayerId>, StoreError>;
}

/// The completed erasures of `ledger` that the data database does not hold: not confirmed by
/// every one of `projections`. Erasures of players never seen left nothing to apply.
pub fn unapplied<'a>(
    ledger: &'a [Erasure],
    confirmed: &HashMap<Uuid, Vec<String>>,
    projections: &[&str],
) -> Vec<&'a Erasure> {
    ledger
        .iter()
        .filter(|e| e.status == ErasureStatus::Completed && !e.has_step(steps::NOTHING_HELD))
        .filter(|e| {
            let done = confirmed.get(&e.erasure_id).map(Vec::as_slice).unwrap_or_default();
            !projections.iter().all(|p| done.iter().any(|d| d == p))
        })
        .collect()
}

/// Finds the players of erasures among candidate ids by their subject hash.
pub struct Identify {
    /// Per game: subject → erasure.
    wanted: HashMap<String, HashMap<Subject, Uuid>>,
}

impl Identify {
    /// Erasures whose subject is not valid hex are left out (and reported by `unknown`).
    pub fn new<'a>(erasures: impl IntoIterator<Item = &'a Erasure>) -> Self {
        let mut wanted: HashMap<String, HashMap<Subject, Uuid>> = HashMap::new();
        for e in erasures {
            if let Some(subject) = hex::decode(&e.subject).ok().and_then(|b| Subject::from_slice(&b)) {
                wanted.entry(e.game_id.clone()).or_default().insert(subject, e.erasure_id);
            }
        }
        Self { wanted }
    }

    /// The games with players still to find.
    pub fn games(&self) -> Vec<String> {
        let mut games: Vec<String> =
            self.wanted.iter().filter(|(_, w)| !w.is_empty()).map(|(g, _)| g.clone()).collect();
        games.sort();
        games
    }

    /// Whether players of `game` are still to find.
    pub fn wants(&self, game: &str) -> bool {
        self.wanted.get(game).is_some_and(|w| !w.is_empty())
    }

    /// The erasures whose player is among `candidates` (ids of `game`), each found once.
    pub fn offer(&mut self, game: &GameId, candidates: &[PlayerId], hasher: &SubjectHasher) -> Vec<(Uuid, PlayerId)> {
        let Some(wanted) = self.wanted.get_mut(game.as_str()) else { return Vec::new() };
        let mut found = Vec::new();
        for player in candidates {
            if wanted.is_empty() {
                break;
            }
            if let Some(erasure) = wanted.remove(&hasher.subject(game, player)) {
                found.push((erasure, player.clone()));
            }
        }
        found
    }

    /// Erasures whose player is in none of the ids offered: nothing of theirs is left in the
    /// read models under their id.
    pub fn unknown(&self) -> HashSet<Uuid> {
        self.wanted.values().flat_map(|w| w.values().copied()).collect()
    }
}

impl Erasure {
    /// Whether `ErasureRequested` must be appended (again): never appended, or re-opened
    /// after a restore since the last append.
    pub fn needs_request_appended(&self) -> bool {
        let last = |name: &str| self.timeline.iter().rposition(|s| s.step == name);
        match (last(steps::ERASURE_EVENT_APPENDED), last(steps::REAPPLIED_AFTER_RESTORE)) {
            (None, _) => true,
            (Some(appended), Some(reopened)) => reopened > appended,
            (Some(_), None) => false,
        }
    }

    /// Since when the erasure is being applied: its request, or its last re-open (an erasure
    /// re-opened after a restore is not a request waiting since then).
    pub fn pending_since(&self) -> DateTime<Utc> {
        self.timeline
            .iter()
            .rev()
            .find(|s| s.step == steps::REAPPLIED_AFTER_RESTORE)
            .map_or(self.requested_at, |s| s.at)
    }

    /// Whether the erasure was re-opened after a restore of the data database.
    pub fn reapplied(&self) -> bool {
        self.has_step(steps::REAPPLIED_AFTER_RESTORE)
    }

    /// Whether a projection's confirmation at `at` counts: after a re-open, only those
    /// dated from the reset of the confirmations (a batch that found no player id for the
    /// pseudonym before the re-open confirmed without removing anything).
    pub fn counts_confirmation(&self, at: DateTime<Utc>) -> bool {
        match self.timeline.iter().rev().find(|s| s.step == steps::CONFIRMATIONS_RESET) {
            Some(reset) => at >= reset.at,
            None => true,
        }
    }
}

/// The privacy store when the keys database is apart from the data database: everything in
/// the keys database, except the projections' confirmations, which they write in the data
/// database in the transaction that removes the player's rows.
pub struct KeysApart {
    keys: Arc<dyn PrivacyStore>,
    data: Arc<dyn PrivacyStore>,
}

impl KeysApart {
    pub fn new(keys: Arc<dyn PrivacyStore>, data: Arc<dyn PrivacyStore>) -> Self {
        Self { keys, data }
    }
}

#[async_trait]
impl PrivacyStore for KeysApart {
    async fn ensure_players(&self, players: Vec<NewPlayer>) -> Result<Vec<PlayerEntry>, StoreError> {
        self.keys.ensure_players(players).await
    }
    async fn keep_personal(&self, rows: Vec<StoredPersonal>) -> Result<(), StoreError> {
        self.keys.keep_personal(rows).await
    }
    async fn player(&self, subject: &Subject) -> Result<Option<PlayerRecord>, StoreError> {
        self.keys.player(subject).await
    }
    async fn personal_of(&self, subject: &Subject) -> Result<Vec<StoredPersonal>, StoreError> {
        self.keys.personal_of(subject).await
    }
    async fn resolve_pseudonyms(&self, pseudonyms: &[String]) -> Result<HashMap<String, String>, StoreError> {
        self.keys.resolve_pseudonyms(pseudonyms).await
    }
    async fn begin_erasure(&self, request: NewErasure) -> Result<Begun, StoreError> {
        self.keys.begin_erasure(request).await
    }
    async fn add_step(&self, erasure_id: Uuid, step: Step) -> Result<(), StoreError> {
        self.keys.add_step(erasure_id, step).await
    }
    async fn erasure(&self, erasure_id: Uuid) -> Result<Option<Erasure>, StoreError> {
        self.keys.erasure(erasure_id).await
    }
    async fn pending_erasures(&self) -> Result<Vec<Erasure>, StoreError> {
        self.keys.pending_erasures().await
    }
    async fn confirmations(&self, erasure_id: Uuid) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        self.data.confirmations(erasure_id).await
    }
    async fn complete_erasure(&self, erasure_id: Uuid, receipt: Receipt, steps: Vec<Step>) -> Result<(), StoreError> {
        self.keys.complete_erasure(erasure_id, receipt, steps).await
    }
    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.keys.audit(entry).await
    }
    async fn audit_trail(&self, limit: u32, games: Option<&[String]>) -> Result<Vec<AuditEntry>, StoreError> {
        self.keys.audit_trail(limit, games).await
    }
    async fn erasures(&self, filter: &crate::store::ErasureFilter) -> Result<Vec<Erasure>, StoreError> {
        self.keys.erasures(filter).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn erasure(id: u128, subject: &Subject, status: ErasureStatus, timeline: &[&str]) -> Erasure {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Erasure {
            erasure_id: Uuid::from_u128(id),
            game_id: "g".into(),
            subject: subject.to_hex(),
            status,
            reason: "r".into(),
            requested_by: "staff".into(),
            requested_at: at,
            completed_at: None,
            timeline: timeline.iter().map(|s| Step::new(*s, at, None)).collect(),
            receipt: None,
        }
    }

    #[test]
    fn unapplied_are_completed_erasures_some_projection_has_not_confirmed() {
        let s = Subject([1; 32]);
        let ledger = vec![
            erasure(1, &s, ErasureStatus::Completed, &[steps::DATA_KEY_DESTROYED]),
            erasure(2, &s, ErasureStatus::Completed, &[steps::DATA_KEY_DESTROYED]),
            erasure(3, &s, ErasureStatus::Completed, &[steps::DATA_KEY_DESTROYED]),
            erasure(4, &s, ErasureStatus::Pending, &[steps::DATA_KEY_DESTROYED]),
            erasure(5, &s, ErasureStatus::Completed, &[steps::NOTHING_HELD]),
        ];
        let confirmed = HashMap::from([
            (Uuid::from_u128(1), vec!["a".to_string(), "b".to_string()]),
            (Uuid::from_u128(2), vec!["a".to_string()]),
        ]);
        let ids: Vec<u128> =
            unapplied(&ledger, &confirmed, &["a", "b"]).iter().map(|e| e.erasure_id.as_u128()).collect();
        assert_eq!(ids, vec![2, 3]);
    }

    #[test]
    fn identify_finds_each_player_by_subject_once_and_reports_the_rest() {
        let hasher = MasterKey::from_bytes([7; 32]).subject_hasher();
        let game = GameId::parse("g").unwrap();
        let alice = PlayerId::parse("alice+tag@example.com").unwrap();
        let bob = PlayerId::parse("bob").unwrap();
        let ledger = vec![
            erasure(1, &hasher.subject(&game, &alice), ErasureStatus::Completed, &[]),
            erasure(2, &hasher.subject(&game, &bob), ErasureStatus::Completed, &[]),
        ];
        let mut identify = Identify::new(&ledger);
        assert_eq!(identify.games(), vec!["g".to_string()]);
        let other = GameId::parse("other").unwrap();
        assert!(identify.offer(&other, std::slice::from_ref(&alice), &hasher).is_empty());
        let candidates = [PlayerId::parse("carol").unwrap(), alice.clone(), alice.clone()];
        assert_eq!(identify.offer(&game, &candidates, &hasher), vec![(Uuid::from_u128(1), alice)]);
        assert!(identify.wants("g"));
        assert_eq!(identify.unknown(), HashSet::from([Uuid::from_u128(2)]));
        assert_eq!(identify.offer(&game, std::slice::from_ref(&bob), &hasher), vec![(Uuid::from_u128(2), bob)]);
        assert!(!identify.wants("g") && identify.games().is_empty() && identify.unknown().is_empty());
    }

    #[test]
    fn a_reopened_erasure_needs_its_request_appended_again_once() {
        let s = Subject([1; 32]);
        let fresh = erasure(1, &s, ErasureStatus::Pending, &[steps::REQUESTED]);
        assert!(fresh.needs_request_appended());
        let appended = erasure(1, &s, ErasureStatus::Pending, &[steps::REQUESTED, steps::ERASURE_EVENT_APPENDED]);
        assert!(!appended.needs_request_appended() && !appended.reapplied());
        let reopened = erasure(
            1,
            &s,
            ErasureStatus::Pending,
            &[steps::ERASURE_EVENT_APPENDED, steps::COMPLETED, steps::REAPPLIED_AFTER_RESTORE],
        );
        assert!(reopened.needs_request_appended() && reopened.reapplied());
        assert_eq!(fresh.pending_since(), fresh.requested_at);
        let mut later = reopened.clone();
        later.timeline.last_mut().unwrap().at = fresh.requested_at + chrono::Duration::days(3);
        assert_eq!(later.pending_since(), fresh.requested_at + chrono::Duration::days(3));
        let again = erasure(
            1,
            &s,
            ErasureStatus::Pending,
            &[steps::ERASURE_EVENT_APPENDED, steps::REAPPLIED_AFTER_RESTORE, steps::ERASURE_EVENT_APPENDED],
        );
        assert!(!again.needs_request_appended());
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert!(again.counts_confirmation(at - chrono::Duration::seconds(1)), "no reset: every confirmation counts");
        let mut reset = again.clone();
        reset.timeline.push(Step::new(steps::CONFIRMATIONS_RESET, at, None));
        assert!(reset.counts_confirmation(at) && !reset.counts_confirmation(at - chrono::Duration::milliseconds(1)));
    }
}
