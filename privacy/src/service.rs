//! The erasure coordinator and the privacy of ingest, over the ports: pseudonyms and sealed
//! personal fields at ingest, erasure (start, follow-up to its receipt), export, the audit
//! trail, and the re-apply of erasures after a restore of the data database. The gateway
//! serves it over HTTP; the CLI's admin commands use it directly.
//!
//! At ingest every event's player id is replaced by the player's random pseudonym and its
//! personal fields are sealed with the player's data key, so the log, the actors and the
//! snapshots never hold a player id or a personal value in clear. Keys and pseudonyms come
//! from the `PrivacyStore` for the players not cached, in one round trip shared by the
//! requests in flight (`key_batch`), never one per request.
//!
//! Erasure: the data key is destroyed and suppression set in one transaction, then
//! `ErasureRequested` is appended to the player's partition, after everything the player
//! did. The coordinator ([`PrivacyService::drive`]) follows each pending erasure: it
//! re-appends the request if that failed, records each projection's confirmation, purges the
//! cache, unlinks the pseudonym, and signs the receipt.

use crate::{
    receipt_stores, steps, unapplied, AuditEntry, Begun, DataKey, Erasure, ErasureLedger, ErasureRecords,
    ErasureStatus, Identify, MasterKey, NewErasure, NewPlayer, PlayerCache, PlayerKeyState, PrivacyStore, Receipt,
    ReceiptSigner, Step, StoredPersonal, Subject, SubjectHasher,
};
use chrono::Utc;
use gm_ports::{LogProducer, NewRecord, SnapshotStore, StoreError};
use gm_schemas::{player_key, topics, EventEnvelope, GameId, PersonalData, PlayerId, RawRecord};
use gm_telemetry::Metrics;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Clone)]
pub struct PrivacySettings {
    pub master_key: MasterKey,
    /// Events of an erased player are refused this long after the erasure.
    pub suppression: chrono::Duration,
    /// How long a gateway trusts a cached key; other gateways learn of an erasure within it
    /// (the actors drop what they still let through).
    pub key_cache_ttl: Duration,
    /// How often pending erasures are followed up.
    pub poll_interval: Duration,
}

#[derive(Clone)]
struct CachedPlayer {
    pseudonym: PlayerId,
    key: DataKey,
}

/// Why an event was refused by privacy.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppressed {
    pub until: chrono::DateTime<Utc>,
}

mod key_batch;

pub struct PrivacyService {
    store: Arc<dyn PrivacyStore>,
    /// New players' keys and sealed personal values: one store call each for the requests
    /// in flight (see `key_batch`).
    batcher: key_batch::KeyBatcher,
    personal_batcher: key_batch::PersonalBatcher,
    producer: Arc<dyn LogProducer>,
    snapshots: Option<Arc<dyn SnapshotStore>>,
    cache: Option<Arc<dyn PlayerCache>>,
    master: MasterKey,
    subjects: SubjectHasher,
    pseudonyms: crate::Pseudonymizer,
    signer: ReceiptSigner,
    settings: PrivacySettings,
    keys: moka::sync::Cache<Subject, CachedPlayer>,
    /// Players whose key this gateway created or loaded lately (see `reassert_recent`).
    recent: std::sync::Mutex<std::collections::VecDeque<(NewPlayer, std::time::Instant)>>,
    /// Set when the keys database is apart from the data database (`privacy.keys_url`).
    restore: Option<(Arc<dyn ErasureLedger>, Arc<dyn ErasureRecords>)>,
    /// The read models whose confirmations complete an erasure.
    projections: Vec<String>,
    /// Erasures whose request this process is appending on the request path: the coordinator
    /// leaves them alone, so a request is not appended twice (once by each).
    requesting: Arc<std::sync::Mutex<std::collections::HashSet<Uuid>>>,
    metrics: Metrics,
}

/// Marks an erasure as being appended by the request path until dropped.
struct Requesting {
    set: Arc<std::sync::Mutex<std::collections::HashSet<Uuid>>>,
    id: Uuid,
}

impl Requesting {
    fn mark(set: &Arc<std::sync::Mutex<std::collections::HashSet<Uuid>>>, id: Uuid) -> Self {
        set.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
        Self { set: set.clone(), id }
    }
}

impl Drop for Requesting {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

/// How long a gateway remembers the keys it created, to write them again after a restore:
/// longer than the PostgreSQL RPO target (5 min).
const REASSERT_HORIZON: Duration = Duration::from_secs(600);
const REASSERT_EVERY: Duration = Duration::from_secs(5);
/// At most this many remembered (a few hundred bytes each: the gateway stays small).
const REASSERT_MAX: usize = 100_000;

impl PrivacyService {
    /// `projections`: the read models that must each confirm an erasure before it completes
    /// (every projection's name, `gm_projections::ProjectionName::ALL`, which lives above
    /// this crate). Not empty: an erasure no read model confirmed would complete at once.
    pub fn new(
        store: Arc<dyn PrivacyStore>,
        producer: Arc<dyn LogProducer>,
        settings: PrivacySettings,
        projections: &[&str],
        metrics: Metrics,
    ) -> Self {
        assert!(!projections.is_empty(), "an erasure needs the read models that confirm it");
        let master = settings.master_key.clone();
        Self {
            batcher: key_batch::key_batcher(store.clone(), key_batch::WINDOW, key_batch::MAX_ITEMS),
            personal_batcher: key_batch::personal_batcher(store.clone(), key_batch::WINDOW, key_batch::MAX_ITEMS),
            store,
            producer,
            snapshots: None,
            cache: None,
            subjects: master.subject_hasher(),
            pseudonyms: master.pseudonymizer(),
            signer: master.receipt_signer(),
            master,
            keys: moka::sync::Cache::builder().max_capacity(200_000).time_to_live(settings.key_cache_ttl).build(),
            settings,
            recent: std::sync::Mutex::new(std::collections::VecDeque::new()),
            restore: None,
            projections: projections.iter().map(|p| p.to_string()).collect(),
            requesting: Arc::default(),
            metrics,
        }
    }

    /// The keys database is apart from the data database: at start, erasures its ledger holds
    /// and the data database does not (restored to a point before them) are applied again
    /// ([`reapply_after_restore`](Self::reapply_after_restore)).
    pub fn with_keys_apart(mut self, ledger: Arc<dyn ErasureLedger>, records: Arc<dyn ErasureRecords>) -> Self {
        self.restore = Some((ledger, records));
        self
    }

    /// Export includes the actor's snapshot of the player.
    pub fn with_snapshots(mut self, snapshots: Arc<dyn SnapshotStore>) -> Self {
        self.snapshots = Some(snapshots);
        self
    }

    /// Erasure purges the player's cached reads.
    pub fn with_cache(mut self, cache: Arc<dyn PlayerCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    pub fn subject(&self, game: &GameId, player: &PlayerId) -> Subject {
        self.subjects.subject(game, player)
    }

    pub fn receipt_signer(&self) -> &ReceiptSigner {
        &self.signer
    }

    /// The privacy store, for the routes that only read it.
    pub fn store(&self) -> &Arc<dyn PrivacyStore> {
        &self.store
    }

    /// Pseudonymises and seals `envelopes` (player ids replaced, personal fields sealed),
    /// keeping the sealed values for export. An erased player's events come back `Err`.
    pub async fn protect(
        &self,
        envelopes: Vec<EventEnvelope>,
    ) -> Result<Vec<Result<EventEnvelope, Suppressed>>, StoreError> {
        let subjects: Vec<Subject> = envelopes.iter().map(|e| self.subject(&e.game_id, &e.player_id)).collect();
        let mut known: HashMap<Subject, Result<CachedPlayer, Suppressed>> = HashMap::new();
        let mut missing = Vec::new();
        // The subjects asked of the store (one NewPlayer each).
        let mut asking = std::collections::HashSet::new();
        for (e, s) in envelopes.iter().zip(&subjects) {
            if !asking.insert(*s) {
                continue;
            }
            match self.keys.get(s) {
                Some(p) => {
                    known.insert(*s, Ok(p));
                }
                None => {
                    let key = DataKey::generate().map_err(StoreError::other)?;
                    let wrapped_key = self.master.wrap(&key).map_err(StoreError::other)?;
                    missing.push(NewPlayer {
                        subject: *s,
                        game_id: e.game_id.clone(),
                        player_id: e.player_id.clone(),
                        pseudonym: self.pseudonyms.pseudonym(&e.game_id, &e.player_id),
                        wrapped_key,
                    });
                }
            }
        }
        if !missing.is_empty() {
            let asked: HashMap<Subject, (GameId, PlayerId)> =
                missing.iter().map(|p| (p.subject, (p.game_id.clone(), p.player_id.clone()))).collect();
            let answer = self.batcher.call(missing).await?;
            // The batch's answer holds other requests' players too: only ours are read.
            for entry in asked.keys().filter_map(|s| answer.get(s)).cloned() {
                let state = match entry.state {
                    PlayerKeyState::Active { pseudonym, wrapped_key } => {
                        let key = self.master.unwrap(&wrapped_key).map_err(|e| {
                            StoreError::Other(
                                format!("a data key cannot be unwrapped with the configured master key: {e}").into(),
                            )
                        })?;
                        if let Some((game_id, player_id)) = asked.get(&entry.subject) {
                            self.remember(NewPlayer {
                                subject: entry.subject,
                                game_id: game_id.clone(),
                                player_id: player_id.clone(),
                                pseudonym: pseudonym.clone(),
                                wrapped_key: wrapped_key.clone(),
                            });
                        }
                        let p = CachedPlayer { pseudonym, key };
                        self.keys.insert(entry.subject, p.clone());
                        Ok(p)
                    }
                    PlayerKeyState::Suppressed { until, .. } => Err(Suppressed { until }),
                };
                known.insert(entry.subject, state);
            }
        }
        // Every subject must have been answered for: one the store left out (it did not
        // create the player's key nor find it) is a failure to retry, never a refusal, since
        // `erased` is final for the client and only a recorded erasure may answer it.
        if let Some(unanswered) = subjects.iter().find(|s| !known.contains_key(*s)) {
            self.metrics.privacy.keys_unanswered.inc();
            return Err(StoreError::Unavailable(
                format!("the privacy store did not answer for subject {}; retry", unanswered.to_hex()).into(),
            ));
        }
        let mut personal = Vec::new();
        let mut out = Vec::with_capacity(envelopes.len());
        for (mut e, s) in envelopes.into_iter().zip(subjects) {
            let player = match &known[&s] {
                Ok(p) => p,
                Err(suppressed) => {
                    self.metrics.privacy.refused_erased.inc();
                    out.push(Err(suppressed.clone()));
                    continue;
                }
            };
            e.player_id = player.pseudonym.clone();
            if let Some(PersonalData::Plain(fields)) = &e.personal {
                let sealed =
                    player.key.seal(&e.game_id, &e.player_id, &e.event_id, fields).map_err(StoreError::other)?;
                personal.push(StoredPersonal {
                    subject: s,
                    game_id: e.game_id.clone(),
                    pseudonym: e.player_id.clone(),
                    event_id: e.event_id,
                    received_at: e.received_at,
                    sealed: sealed.clone(),
                });
                e.personal = Some(PersonalData::Sealed(sealed));
            }
            out.push(Ok(e));
        }
        if !personal.is_empty() {
            self.personal_batcher.call(personal).await?;
        }
        Ok(out)
    }

    /// Starts an erasure, or returns the existing one for this player. `true` when new.
    pub async fn request_erasure(
        &self,
        game: &GameId,
        player: &PlayerId,
        reason: &str,
        requested_by: &str,
    ) -> Result<(Erasure, bool), StoreError> {
        let now = Utc::now();
        let subject = self.subject(game, player);
        let erasure_id = Uuid::now_v7();
        // Marked before the erasure exists in the store, so the coordinator never sees it
        // pending without the mark until its request is appended (or left for it to append).
        let _requesting = Requesting::mark(&self.requesting, erasure_id);
        let begun = self
            .store
            .begin_erasure(NewErasure {
                erasure_id,
                subject,
                game_id: game.clone(),
                reason: reason.to_string(),
                requested_by: requested_by.to_string(),
                requested_at: now,
                suppressed_until: now + self.settings.suppression,
            })
            .await?;
        self.keys.invalidate(&subject);
        let (erasure, pseudonym) = match begun {
            Begun::Existing(e) => return Ok((e, false)),
            Begun::Started { erasure, pseudonym } => (erasure, pseudonym),
        };
        self.metrics.privacy.requested.inc();
        if let Some(pseudonym) = pseudonym {
            // A failure here leaves the erasure pending; the coordinator appends it again.
            if let Err(e) = self.append_request(&erasure, game, &pseudonym).await {
                tracing::warn!(erasure_id = %erasure.erasure_id, error = %e, "erasure request not appended yet; will retry");
            }
            // Early purge (the coordinator purges again once the read models are clean).
            if let Some(cache) = &self.cache {
                let _ = cache.forget_player(game, player).await;
            }
        }
        let erasure = self.store.erasure(erasure.erasure_id).await?.unwrap_or(erasure);
        Ok((erasure, true))
    }

    async fn append_request(&self, erasure: &Erasure, game: &GameId, pseudonym: &PlayerId) -> Result<(), StoreError> {
        let record = RawRecord::ErasureRequested(gm_schemas::ErasureRequest {
            erasure_id: erasure.erasure_id,
            game_id: game.clone(),
            player_id: pseudonym.clone(),
            // The reason stays in the erasure record; the log gets nothing that could be personal.
            reason: String::new(),
            requested_at: erasure.requested_at,
        });
        let payload = serde_json::to_vec(&record).map_err(StoreError::other)?;
        let positions = self
            .producer
            .append(topics::RAW, vec![NewRecord::new(player_key(game, pseudonym), payload)])
            .await
            .map_err(StoreError::unavailable)?;
        let detail =
            positions.first().map(|p| format!("{} partition {} offset {}", topics::RAW, p.partition, p.offset));
        self.store.add_step(erasure.erasure_id, Step::new(steps::ERASURE_EVENT_APPENDED, Utc::now(), detail)).await
    }

    /// Follows every pending erasure one step further. Returns how many completed.
    pub async fn drive(&self) -> Result<usize, StoreError> {
        let pending = self.store.pending_erasures().await?;
        self.metrics.privacy.pending.set(pending.len() as i64);
        let oldest = pending.iter().map(|e| (Utc::now() - e.pending_since()).num_seconds()).max().unwrap_or(0);
        self.metrics.privacy.oldest_pending_age.set(oldest);
        let mut completed = 0;
        for erasure in pending {
            match self.follow(&erasure).await {
                Ok(true) => completed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(erasure_id = %erasure.erasure_id, error = %e, "erasure step failed; will retry")
                }
            }
        }
        Ok(completed)
    }

    async fn follow(&self, erasure: &Erasure) -> Result<bool, StoreError> {
        let subject = hex::decode(&erasure.subject).ok().and_then(|b| Subject::from_slice(&b));
        let Some(subject) = subject else {
            return Err(StoreError::Other("erasure with a malformed subject".into()));
        };
        let game = GameId::parse(erasure.game_id.as_str()).map_err(StoreError::other)?;
        let record = self.store.player(&subject).await?;
        let known = !erasure.has_step(steps::NOTHING_HELD);
        let mut last_steps = Vec::new();
        let mut confirmed = Vec::new();
        if known {
            let Some(record) = record else { return Err(StoreError::Other("erased player's key row is gone".into())) };
            let (Some(pseudonym), Some(player)) = (record.pseudonym.clone(), record.player_id.clone()) else {
                return Err(StoreError::Other("erased player's pseudonym is already unlinked".into()));
            };
            if erasure.needs_request_appended() {
                if self.requesting.lock().unwrap_or_else(|e| e.into_inner()).contains(&erasure.erasure_id) {
                    // The request path is appending it now; the next round sees its step.
                    return Ok(false);
                }
                // Read again: the request path may have appended it since `drive` listed it.
                let fresh = self.store.erasure(erasure.erasure_id).await?;
                if fresh.as_ref().is_some_and(|e| !e.needs_request_appended()) {
                    return Ok(false);
                }
                if erasure.reapplied() {
                    // Re-opened after a restore: confirmations from before count no more.
                    if let Some((_, records)) = &self.restore {
                        let fence = records.forget_confirmations(erasure.erasure_id).await?;
                        self.store
                            .add_step(erasure.erasure_id, Step::new(steps::CONFIRMATIONS_RESET, fence, None))
                            .await?;
                    }
                    self.append_request(erasure, &game, &pseudonym).await?;
                    if let Some(cache) = &self.cache {
                        let _ = cache.forget_player(&game, &player).await;
                    }
                    // The next round reads the timeline with the reset in it.
                    return Ok(false);
                }
                self.append_request(erasure, &game, &pseudonym).await?;
            }
            confirmed = self.store.confirmations(erasure.erasure_id).await?;
            confirmed.retain(|(_, at)| erasure.counts_confirmation(*at));
            for (projection, at) in &confirmed {
                let step = format!("{}:{projection}", steps::PROJECTION_CONFIRMED);
                if !erasure.has_step(&step) {
                    self.store.add_step(erasure.erasure_id, Step::new(step, *at, None)).await?;
                }
            }
            let all = self.projections.iter().all(|p| confirmed.iter().any(|(c, _)| c == p));
            if !all {
                return Ok(false);
            }
            if let Some(cache) = &self.cache {
                let removed = cache.forget_player(&game, &player).await?;
                last_steps.push(Step::new(steps::CACHE_PURGED, Utc::now(), Some(format!("{removed} keys"))));
            }
            last_steps.push(Step::new(steps::PSEUDONYM_UNLINKED, Utc::now(), None));
        }
        let completed_at = Utc::now();
        last_steps.push(Step::new(steps::COMPLETED, completed_at, None));
        let stores = receipt_stores(&confirmed, known, self.cache.is_some());
        let receipt = Receipt::signed(erasure, completed_at, stores, &self.signer);
        self.store.complete_erasure(erasure.erasure_id, receipt, last_steps).await?;
        self.metrics.privacy.completed.inc();
        // A re-applied erasure counts from its re-open: its latency is not the request's.
        let took = (completed_at - erasure.pending_since()).to_std().unwrap_or_default();
        if !erasure.reapplied() {
            self.metrics.privacy.duration.observe(took.as_secs_f64());
        }
        tracing::info!(erasure_id = %erasure.erasure_id, seconds = took.as_secs_f64(), "erasure completed");
        Ok(true)
    }

    /// Compares the keys database's ledger of completed erasures with the data database and
    /// re-opens every erasure the data database does not hold (restored to a point before
    /// it): the player's id is found among the game's restored ids by subject hash and linked
    /// again to the destroyed key, and the coordinator runs the erasure again under the same
    /// id (request appended, every projection's confirmation, cache purge, unlink, receipt).
    /// Returns the erasures re-opened and those still pending from an earlier start. Nothing
    /// to do when the keys share the data database. Idempotent.
    pub async fn reapply_after_restore(&self) -> Result<Vec<Uuid>, StoreError> {
        let Some((ledger, records)) = &self.restore else { return Ok(Vec::new()) };
        let projections: Vec<&str> = self.projections.iter().map(String::as_str).collect();
        let (mut missing, mut checked, mut after) = (Vec::new(), 0usize, None);
        loop {
            let page = ledger.completed_erasures(after, 5_000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.erasure_id);
            checked += page.len();
            let ids: Vec<Uuid> = page.iter().map(|e| e.erasure_id).collect();
            let confirmed = records.confirmed(&ids).await?;
            missing.extend(unapplied(&page, &confirmed, &projections).into_iter().cloned());
        }
        // Re-opened by an earlier start that did not see them complete: waited for again.
        let mut reopened: Vec<Uuid> =
            self.store.pending_erasures().await?.into_iter().filter(|e| e.reapplied()).map(|e| e.erasure_id).collect();
        if missing.is_empty() {
            tracing::info!(checked, "every erasure of the keys database's ledger is applied in the data database");
            return Ok(reopened);
        }
        let mut identify = Identify::new(&missing);
        let mut found = Vec::new();
        for game in identify.games() {
            let game =
                GameId::parse(game).map_err(|e| StoreError::Other(gm_ports::Cause::context("ledger game id", e)))?;
            let mut after: Option<PlayerId> = None;
            while identify.wants(game.as_str()) {
                let page = records.players_of_game(&game, after.as_ref(), 10_000).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.clone());
                found.extend(identify.offer(&game, &page, &self.subjects));
            }
        }
        for erasure_id in identify.unknown() {
            // No row under the player's id: the restore point predates their first event.
            tracing::info!(%erasure_id, "erasure missing from the data database, which holds nothing under the player's id");
        }
        let games: HashMap<Uuid, String> = missing.iter().map(|e| (e.erasure_id, e.game_id.clone())).collect();
        for (erasure_id, player) in found {
            let game = GameId::parse(games[&erasure_id].as_str()).map_err(StoreError::other)?;
            let pseudonym = self.pseudonyms.pseudonym(&game, &player);
            let step = Step::new(
                steps::REAPPLIED_AFTER_RESTORE,
                Utc::now(),
                Some("the data database was restored to a point before this erasure".into()),
            );
            if !ledger.reopen(erasure_id, &player, &pseudonym, step).await? {
                tracing::warn!(%erasure_id, game = %game, "erasure not re-applied: the player came back after it (a new key)");
                continue;
            }
            tracing::warn!(%erasure_id, game = %game, "erasure re-applied: the data database was restored to a point before it");
            reopened.push(erasure_id);
        }
        Ok(reopened)
    }

    /// Waits until each of `erasures` completed (the coordinator's task drives them), at most
    /// `timeout`; the ones still pending are in the error.
    pub async fn await_completed(&self, erasures: &[Uuid], timeout: Duration) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut waiting: Vec<Uuid> = erasures.to_vec();
        loop {
            let mut still = Vec::new();
            for id in waiting {
                let done = self.store.erasure(id).await?.is_some_and(|e| e.status == ErasureStatus::Completed);
                if !done {
                    still.push(id);
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let ids: Vec<String> = still.iter().map(Uuid::to_string).collect();
                return Err(StoreError::Unavailable(
                    format!("erasures re-applied after a restore not completed within {timeout:?}: {}", ids.join(", "))
                        .into(),
                ));
            }
            waiting = still;
            tokio::time::sleep(self.settings.poll_interval.min(Duration::from_millis(500))).await;
        }
    }

    /// Runs [`drive`](Self::drive) every poll interval until `shutdown`.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut last_reassert = std::time::Instant::now();
        loop {
            if let Err(e) = self.drive().await {
                tracing::warn!(error = %e, "following pending erasures failed; will retry");
            }
            if last_reassert.elapsed() >= REASSERT_EVERY {
                last_reassert = std::time::Instant::now();
                if let Err(e) = self.reassert_recent().await {
                    tracing::warn!(error = %e, "re-writing recent player keys failed; will retry");
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
    }

    fn remember(&self, player: NewPlayer) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        while recent.front().is_some_and(|(_, at)| at.elapsed() >= REASSERT_HORIZON) || recent.len() >= REASSERT_MAX {
            recent.pop_front();
        }
        recent.push_back((player, std::time::Instant::now()));
    }

    /// Writes again the keys and pseudonyms this gateway saw created recently (insert if
    /// absent, nothing else). After PostgreSQL is restored to a point in time, the rows of the
    /// data-loss window come back at once, with the same keys, instead of at each player's
    /// next request (the projections wait for them; see gm_projections::worker::Reveal).
    pub async fn reassert_recent(&self) -> Result<usize, StoreError> {
        let batch: Vec<NewPlayer> = {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            recent.retain(|(_, at)| at.elapsed() < REASSERT_HORIZON);
            recent.iter().map(|(p, _)| p.clone()).collect()
        };
        let n = batch.len();
        for chunk in batch.chunks(5_000) {
            self.store.ensure_players(chunk.to_vec()).await?;
        }
        Ok(n)
    }

    pub async fn erasure(&self, id: Uuid) -> Result<Option<Erasure>, StoreError> {
        self.store.erasure(id).await
    }

    pub async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.store.audit(entry).await
    }

    /// The latest entries, newest first, of every game (`None`) or of `games` only.
    pub async fn audit_trail(&self, limit: u32, games: Option<&[String]>) -> Result<Vec<AuditEntry>, StoreError> {
        self.store.audit_trail(limit, games).await
    }

    /// Everything held about a player, personal values decrypted while the key exists.
    /// `None` when nothing is held.
    pub async fn export(
        &self,
        game: &GameId,
        player: &PlayerId,
        profile: Option<serde_json::Value>,
    ) -> Result<Option<PlayerExport>, StoreError> {
        let subject = self.subject(game, player);
        let Some(record) = self.store.player(&subject).await? else { return Ok(None) };
        let key = match &record.wrapped_key {
            Some(w) => Some(self.master.unwrap(w).map_err(StoreError::other)?),
            None => None,
        };
        let mut personal = Vec::new();
        if let Some(key) = &key {
            for row in self.store.personal_of(&subject).await? {
                let fields =
                    key.open(&row.game_id, &row.pseudonym, &row.event_id, &row.sealed).map_err(StoreError::other)?;
                personal.push(PersonalRecord {
                    event_id: row.event_id,
                    received_at: row.received_at,
                    fields: serde_json::to_value(fields).unwrap_or_default(),
                });
            }
        }
        let mut actor_state = None;
        if let (Some(snapshots), Some(pseudonym)) = (&self.snapshots, &record.pseudonym) {
            let key = player_key(game, pseudonym);
            if let Some((_, bytes)) = snapshots.load_many(std::slice::from_ref(&key)).await?.into_iter().next() {
                actor_state = serde_json::from_slice(&bytes).ok();
            }
        }
        Ok(Some(PlayerExport {
            game_id: game.to_string(),
            player_id: player.to_string(),
            generated_at: Utc::now(),
            status: if record.erased_at.is_some() { "erased".into() } else { "active".into() },
            first_seen_by_privacy: record.created_at,
            erased_at: record.erased_at,
            personal,
            profile,
            actor_state,
        }))
    }
}

/// One event's personal fields, decrypted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PersonalRecord {
    pub event_id: Uuid,
    pub received_at: chrono::DateTime<Utc>,
    #[schema(value_type = Object)]
    pub fields: serde_json::Value,
}

/// Everything GameMetrics holds about a player (right of access).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlayerExport {
    pub game_id: String,
    pub player_id: String,
    pub generated_at: chrono::DateTime<Utc>,
    /// `active`, or `erased` (then nothing else is left to show).
    pub status: String,
    /// When the player's data key was created (their first event).
    pub first_seen_by_privacy: chrono::DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_at: Option<chrono::DateTime<Utc>>,
    /// Personal fields the player sent, per event, decrypted.
    pub personal: Vec<PersonalRecord>,
    /// The player's profile read model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub profile: Option<serde_json::Value>,
    /// The player actor's state (level, xp, inventory, balances, sessions, consent...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub actor_state: Option<serde_json::Value>,
}
