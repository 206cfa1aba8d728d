//! New players' keys and pseudonyms, created in batches across concurrent requests.
//!
//! Every request that meets players the gateway has not cached asks the privacy store for
//! them. One `ensure_players` per request would be one database round trip (and one
//! transaction) per request while players are new — the cost the one-event route paid. Here
//! the requests in flight within a short window share one call: the first opens a batch and
//! a task that sends it after [`WINDOW`] (or at once when it holds [`MAX_PLAYERS`]); later
//! ones add their players and wait for the same answer. The store's own guarantees for
//! concurrent new players (the same subject asked twice at once, by this gateway or
//! another, settles on one key) are unchanged: a batch is one `ensure_players` call, and a
//! subject asked by two requests of one batch is asked once.

use gm_ports::StoreError;
use gm_privacy::{NewPlayer, PlayerEntry, PrivacyStore, Subject};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// How long a batch waits for more requests: long enough for the requests a busy gateway
/// receives meanwhile to join, short next to a request's own latency.
pub const WINDOW: Duration = Duration::from_millis(1);
/// A batch is sent at once when it holds this many players (one statement stays small).
pub const MAX_PLAYERS: usize = 1_000;

type Answer = Result<Arc<HashMap<Subject, PlayerEntry>>, StoreError>;

#[derive(Default)]
struct Batch {
    open: Mutex<Open>,
    /// Woken when the batch is full, so its task sends it before the window ends.
    full: Notify,
}

#[derive(Default)]
struct Open {
    players: Vec<NewPlayer>,
    subjects: HashSet<Subject>,
    waiters: Vec<oneshot::Sender<Answer>>,
}

/// Batches `ensure_players` calls to one store (see the module's documentation).
pub struct KeyBatcher {
    store: Arc<dyn PrivacyStore>,
    window: Duration,
    max_players: usize,
    /// The batch requests join now; `None` when none is open.
    current: Arc<Mutex<Option<Arc<Batch>>>>,
}

impl KeyBatcher {
    pub fn new(store: Arc<dyn PrivacyStore>) -> Self {
        Self::with_limits(store, WINDOW, MAX_PLAYERS)
    }

    pub fn with_limits(store: Arc<dyn PrivacyStore>, window: Duration, max_players: usize) -> Self {
        Self { store, window, max_players: max_players.max(1), current: Arc::new(Mutex::new(None)) }
    }

    /// The state of each of `players` (created when new), by subject: the store's answer for
    /// the whole batch they were sent in. Must run within a Tokio runtime (the batch is sent
    /// by a task of its own, so a caller that gives up does not cancel it for the others).
    pub async fn ensure(&self, players: Vec<NewPlayer>) -> Answer {
        let (tx, rx) = oneshot::channel();
        {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            let batch = match &*current {
                Some(batch) => batch.clone(),
                None => {
                    let batch = Arc::new(Batch::default());
                    *current = Some(batch.clone());
                    tokio::spawn(send(self.store.clone(), self.current.clone(), batch.clone(), self.window));
                    batch
                }
            };
            let mut open = batch.open.lock().unwrap_or_else(|e| e.into_inner());
            for p in players {
                if open.subjects.insert(p.subject) {
                    open.players.push(p);
                }
            }
            open.waiters.push(tx);
            if open.players.len() >= self.max_players {
                // Closed to newcomers now; its task sends it at once.
                *current = None;
                batch.full.notify_one();
            }
        }
        rx.await.unwrap_or_else(|_| Err(StoreError::Unavailable("the player keys batch was dropped; retry".into())))
    }
}

/// Waits for the window (or a full batch), closes the batch and answers its waiters.
async fn send(
    store: Arc<dyn PrivacyStore>,
    current: Arc<Mutex<Option<Arc<Batch>>>>,
    batch: Arc<Batch>,
    window: Duration,
) {
    let _ = tokio::time::timeout(window, batch.full.notified()).await;
    let (players, waiters) = {
        // Same lock order as `ensure`: the slot, then the batch.
        let mut slot = current.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|b| Arc::ptr_eq(b, &batch)) {
            *slot = None;
        }
        let mut open = batch.open.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut open.players), std::mem::take(&mut open.waiters))
    };
    let answer: Answer = store
        .ensure_players(players)
        .await
        .map(|entries| Arc::new(entries.into_iter().map(|e| (e.subject, e)).collect()));
    for waiter in waiters {
        let _ = waiter.send(answer.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use chrono::{DateTime, Utc};
    use gm_privacy::{
        AuditEntry, Begun, Erasure, NewErasure, PlayerKeyState, PlayerRecord, Receipt, Step, StoredPersonal,
    };
    use gm_schemas::{GameId, PlayerId};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use uuid::Uuid;

    /// Creates every player asked (the first key of a subject wins); counts the calls.
    #[derive(Default)]
    struct Counting {
        calls: AtomicUsize,
        sizes: Mutex<Vec<usize>>,
        keys: Mutex<HashMap<Subject, Vec<u8>>>,
        fail: bool,
    }

    #[async_trait]
    impl PrivacyStore for Counting {
        async fn ensure_players(&self, players: Vec<NewPlayer>) -> Result<Vec<PlayerEntry>, StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.sizes.lock().unwrap().push(players.len());
            if self.fail {
                return Err(StoreError::Unavailable("down".into()));
            }
            let mut keys = self.keys.lock().unwrap();
            Ok(players
                .into_iter()
                .map(|p| {
                    let wrapped_key = keys.entry(p.subject).or_insert(p.wrapped_key).clone();
                    PlayerEntry {
                        subject: p.subject,
                        state: PlayerKeyState::Active { pseudonym: p.pseudonym, wrapped_key },
                    }
                })
                .collect())
        }
        async fn keep_personal(&self, _: Vec<StoredPersonal>) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn player(&self, _: &Subject) -> Result<Option<PlayerRecord>, StoreError> {
            unreachable!()
        }
        async fn personal_of(&self, _: &Subject) -> Result<Vec<StoredPersonal>, StoreError> {
            unreachable!()
        }
        async fn resolve_pseudonyms(&self, _: &[String]) -> Result<HashMap<String, String>, StoreError> {
            unreachable!()
        }
        async fn begin_erasure(&self, _: NewErasure) -> Result<Begun, StoreError> {
            unreachable!()
        }
        async fn add_step(&self, _: Uuid, _: Step) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn erasure(&self, _: Uuid) -> Result<Option<Erasure>, StoreError> {
            unreachable!()
        }
        async fn pending_erasures(&self) -> Result<Vec<Erasure>, StoreError> {
            unreachable!()
        }
        async fn confirmations(&self, _: Uuid) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
            unreachable!()
        }
        async fn complete_erasure(&self, _: Uuid, _: Receipt, _: Vec<Step>) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn audit(&self, _: AuditEntry) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn audit_trail(&self, _: u32, _: Option<&[String]>) -> Result<Vec<AuditEntry>, StoreError> {
            unreachable!()
        }
    }

    fn player(n: u8, key: u8) -> NewPlayer {
        NewPlayer {
            subject: Subject([n; 32]),
            game_id: GameId::parse("g").unwrap(),
            player_id: PlayerId::parse(format!("p{n}")).unwrap(),
            pseudonym: PlayerId::parse(format!("pz{n}")).unwrap(),
            wrapped_key: vec![key],
        }
    }

    fn key_of(answer: &HashMap<Subject, PlayerEntry>, n: u8) -> Vec<u8> {
        match &answer[&Subject([n; 32])].state {
            PlayerKeyState::Active { wrapped_key, .. } => wrapped_key.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_store_call_and_one_key_per_player() {
        let store = Arc::new(Counting::default());
        let batcher = Arc::new(KeyBatcher::with_limits(store.clone(), Duration::from_millis(50), 1_000));
        // 20 requests at once; players 0..10, each asked by two requests with different keys.
        let tasks: Vec<_> = (0..20u8)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.ensure(vec![player(i % 10, i)]).await })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap().unwrap());
        }
        assert_eq!(store.calls.load(Ordering::SeqCst), 1, "one round trip for every request in the window");
        assert_eq!(*store.sizes.lock().unwrap(), vec![10], "a subject asked twice is asked once");
        for n in 0..10 {
            let keys: HashSet<Vec<u8>> = answers.iter().map(|a| key_of(a, n)).collect();
            assert_eq!(keys.len(), 1, "both requests of player {n} got the same key");
        }
    }

    #[tokio::test]
    async fn a_full_batch_is_sent_before_its_window_and_the_next_request_opens_another() {
        let store = Arc::new(Counting::default());
        let batcher = Arc::new(KeyBatcher::with_limits(store.clone(), Duration::from_secs(30), 3));
        let started = std::time::Instant::now();
        let full = batcher.ensure(vec![player(1, 1), player(2, 1), player(3, 1)]).await.unwrap();
        assert_eq!(full.len(), 3);
        assert!(started.elapsed() < Duration::from_secs(5), "sent when full, not after the 30 s window");
        let b = batcher.clone();
        let next = tokio::spawn(async move { b.ensure(vec![player(4, 1)]).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!next.is_finished(), "a batch that is not full waits for its window");
        assert_eq!(store.calls.load(Ordering::SeqCst), 1);
        next.abort();
    }

    #[tokio::test]
    async fn batches_follow_one_another_and_a_store_failure_reaches_every_waiter() {
        let store = Arc::new(Counting::default());
        let batcher = KeyBatcher::with_limits(store.clone(), Duration::from_millis(1), 1_000);
        for n in 0..3 {
            assert_eq!(batcher.ensure(vec![player(n, n)]).await.unwrap().len(), 1);
        }
        assert_eq!(store.calls.load(Ordering::SeqCst), 3, "requests one after another: a batch each");

        let failing = Arc::new(KeyBatcher::with_limits(
            Arc::new(Counting { fail: true, ..Default::default() }),
            Duration::from_millis(20),
            1_000,
        ));
        let tasks: Vec<_> = (0..3u8)
            .map(|i| {
                let b = failing.clone();
                tokio::spawn(async move { b.ensure(vec![player(i, i)]).await })
            })
            .collect();
        for t in tasks {
            assert!(matches!(t.await.unwrap(), Err(StoreError::Unavailable(_))));
        }
    }
}
