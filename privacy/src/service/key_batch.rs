//! The privacy store's writes on the ingest path, batched across concurrent requests.
//!
//! Every request that meets players the gateway has not cached asks the privacy store for
//! their keys, and every request with personal fields stores their sealed values. One
//! store call per request would be one database round trip (and one transaction) per
//! request — the cost the one-event route paid while players were new. Here the requests in
//! flight within a short window share one call: the first opens a batch and a task that
//! sends it after [`WINDOW`] (or at once when it holds [`MAX_ITEMS`]); later ones add their
//! items and wait for the same answer. The store's own guarantees for concurrent new
//! players (the same subject asked twice at once, by this gateway or another, settles on
//! one key) are unchanged: a batch is one `ensure_players` call, and a subject asked by two
//! requests of one batch is asked once.

use crate::{NewPlayer, PlayerEntry, PrivacyStore, StoredPersonal, Subject};
use futures::future::BoxFuture;
use gm_ports::StoreError;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// How long a batch waits for more requests: long enough for the requests a busy gateway
/// receives meanwhile to join, short next to a request's own latency.
pub const WINDOW: Duration = Duration::from_millis(1);
/// A batch is sent at once when it holds this many items (one statement stays small).
pub const MAX_ITEMS: usize = 1_000;

type Answer<T> = Result<T, StoreError>;
type Run<I, T> = Arc<dyn Fn(Vec<I>) -> BoxFuture<'static, Answer<T>> + Send + Sync>;
/// Where the open batch is kept (`None` when none is open).
type Slot<I, T> = Arc<Mutex<Option<Arc<Batch<I, T>>>>>;

struct Batch<I, T> {
    open: Mutex<Open<I, T>>,
    /// Woken when the batch is full, so its task sends it before the window ends.
    full: Notify,
}

struct Open<I, T> {
    items: Vec<I>,
    waiters: Vec<oneshot::Sender<Answer<T>>>,
}

/// Gathers the items of concurrent callers into one call of `run` (see the module's
/// documentation); every caller gets that call's answer.
pub struct Batcher<I, T> {
    run: Run<I, T>,
    window: Duration,
    max_items: usize,
    /// The batch callers join now.
    current: Slot<I, T>,
}

/// The keys of new (or not cached) players: the store's answer for the whole batch, by
/// subject.
pub type KeyBatcher = Batcher<NewPlayer, Arc<HashMap<Subject, PlayerEntry>>>;

/// Sealed personal values kept for the right of access.
pub type PersonalBatcher = Batcher<StoredPersonal, ()>;

pub fn key_batcher(store: Arc<dyn PrivacyStore>, window: Duration, max_items: usize) -> KeyBatcher {
    Batcher::new(window, max_items, move |players: Vec<NewPlayer>| {
        let store = store.clone();
        Box::pin(async move {
            let mut seen = HashSet::new();
            let players: Vec<NewPlayer> = players.into_iter().filter(|p| seen.insert(p.subject)).collect();
            let entries = store.ensure_players(players).await?;
            Ok(Arc::new(entries.into_iter().map(|e| (e.subject, e)).collect()))
        })
    })
}

pub fn personal_batcher(store: Arc<dyn PrivacyStore>, window: Duration, max_items: usize) -> PersonalBatcher {
    Batcher::new(window, max_items, move |rows: Vec<StoredPersonal>| {
        let store = store.clone();
        Box::pin(async move { store.keep_personal(rows).await })
    })
}

impl<I: Send + 'static, T: Clone + Send + 'static> Batcher<I, T> {
    pub fn new(
        window: Duration,
        max_items: usize,
        run: impl Fn(Vec<I>) -> BoxFuture<'static, Answer<T>> + Send + Sync + 'static,
    ) -> Self {
        Self { run: Arc::new(run), window, max_items: max_items.max(1), current: Arc::new(Mutex::new(None)) }
    }

    /// The answer of the call that `items` were sent in, with other callers' items. Must run
    /// within a Tokio runtime (the batch is sent by a task of its own, so a caller that gives
    /// up does not cancel it for the others).
    pub async fn call(&self, items: Vec<I>) -> Answer<T> {
        let (tx, rx) = oneshot::channel();
        {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            let batch = match &*current {
                Some(batch) => batch.clone(),
                None => {
                    let batch = Arc::new(Batch {
                        open: Mutex::new(Open { items: Vec::new(), waiters: Vec::new() }),
                        full: Notify::new(),
                    });
                    *current = Some(batch.clone());
                    tokio::spawn(send(self.run.clone(), self.current.clone(), batch.clone(), self.window));
                    batch
                }
            };
            let mut open = batch.open.lock().unwrap_or_else(|e| e.into_inner());
            open.items.extend(items);
            open.waiters.push(tx);
            if open.items.len() >= self.max_items {
                // Closed to newcomers now; its task sends it at once.
                *current = None;
                batch.full.notify_one();
            }
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("a batched privacy store call was dropped; retry".into())))
    }
}

/// Waits for the window (or a full batch), closes the batch and answers its waiters.
async fn send<I, T: Clone>(run: Run<I, T>, current: Slot<I, T>, batch: Arc<Batch<I, T>>, window: Duration) {
    let _ = tokio::time::timeout(window, batch.full.notified()).await;
    let (items, waiters) = {
        // Same lock order as `call`: the slot, then the batch.
        let mut slot = current.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|b| Arc::ptr_eq(b, &batch)) {
            *slot = None;
        }
        let mut open = batch.open.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut open.items), std::mem::take(&mut open.waiters))
    };
    let answer = run(items).await;
    for waiter in waiters {
        let _ = waiter.send(answer.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditEntry, Begun, Erasure, NewErasure, PlayerKeyState, PlayerRecord, Receipt, Step, StoredPersonal};
    use async_trait::async_trait;
    use chrono::{DateTime, Utc};
    use gm_schemas::{GameId, PlayerId};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use uuid::Uuid;

    /// Creates every player asked (the first key of a subject wins); counts the calls.
    #[derive(Default)]
    struct Counting {
        calls: AtomicUsize,
        sizes: Mutex<Vec<usize>>,
        keys: Mutex<HashMap<Subject, Vec<u8>>>,
        /// Sizes of the `keep_personal` calls.
        kept: Mutex<Vec<usize>>,
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
        async fn keep_personal(&self, rows: Vec<StoredPersonal>) -> Result<(), StoreError> {
            self.kept.lock().unwrap().push(rows.len());
            Ok(())
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
        async fn erasures(&self, _: &crate::store::ErasureFilter) -> Result<Vec<Erasure>, StoreError> {
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

    fn sealed_row(n: u8) -> StoredPersonal {
        let p = player(n, 0);
        StoredPersonal {
            subject: p.subject,
            game_id: p.game_id,
            pseudonym: p.pseudonym,
            event_id: Uuid::now_v7(),
            received_at: Utc::now(),
            sealed: gm_schemas::SealedPersonal { alg: "A256GCM".into(), nonce: "n".into(), sealed: "s".into() },
        }
    }

    #[tokio::test]
    async fn sealed_values_of_concurrent_requests_are_kept_in_one_call() {
        let store = Arc::new(Counting::default());
        let batcher = Arc::new(personal_batcher(store.clone(), Duration::from_millis(50), 1_000));
        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.call(vec![sealed_row(i), sealed_row(i)]).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(*store.kept.lock().unwrap(), vec![16], "every row of the 8 requests, in one call");
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
        let batcher = Arc::new(key_batcher(store.clone(), Duration::from_millis(50), 1_000));
        // 20 requests at once; players 0..10, each asked by two requests with different keys.
        let tasks: Vec<_> = (0..20u8)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.call(vec![player(i % 10, i)]).await })
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
        let batcher = Arc::new(key_batcher(store.clone(), Duration::from_secs(30), 3));
        let started = std::time::Instant::now();
        let full = batcher.call(vec![player(1, 1), player(2, 1), player(3, 1)]).await.unwrap();
        assert_eq!(full.len(), 3);
        assert!(started.elapsed() < Duration::from_secs(5), "sent when full, not after the 30 s window");
        let b = batcher.clone();
        let next = tokio::spawn(async move { b.call(vec![player(4, 1)]).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!next.is_finished(), "a batch that is not full waits for its window");
        assert_eq!(store.calls.load(Ordering::SeqCst), 1);
        next.abort();
    }

    #[tokio::test]
    async fn batches_follow_one_another_and_a_store_failure_reaches_every_waiter() {
        let store = Arc::new(Counting::default());
        let batcher = key_batcher(store.clone(), Duration::from_millis(1), 1_000);
        for n in 0..3 {
            assert_eq!(batcher.call(vec![player(n, n)]).await.unwrap().len(), 1);
        }
        assert_eq!(store.calls.load(Ordering::SeqCst), 3, "requests one after another: a batch each");

        let failing = Arc::new(key_batcher(
            Arc::new(Counting { fail: true, ..Default::default() }),
            Duration::from_millis(20),
            1_000,
        ));
        let tasks: Vec<_> = (0..3u8)
            .map(|i| {
                let b = failing.clone();
                tokio::spawn(async move { b.call(vec![player(i, i)]).await })
            })
            .collect();
        for t in tasks {
            assert!(matches!(t.await.unwrap(), Err(StoreError::Unavailable(_))));
        }
    }
}
