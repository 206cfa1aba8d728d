//! The combined projections worker and `ReadModelStore::apply_batch`: every projection's
//! changes of a batch and their checkpoints in one transaction (on SQLite and PostgreSQL), a
//! checkpoint moved by another writer, the time and count bounds of a batch, and processed
//! records that cannot be decoded (dead-lettered, counted, re-driven by `dlq replay`).
//!
//! The worker tests run the real worker on the embedded log and store; the PostgreSQL store
//! test needs `GM_POSTGRES_URL` (`scripts/services up`), and fails loudly without it.

use gm_embedded::{SqliteLog, SqliteStore};
use gm_ports::{EventLog, NewRecord, StoreError, TopicSpec};
use gm_projections::worker::{dead_letter, ProjectionWorker};
use gm_projections::{AnalyticsQueries, CheckpointMove, ProjectionBatch, ProjectionName, ReadModelStore, Target};
use gm_schemas::{topics, GameId, PlayerId, ProcessedEvent};
use gm_telemetry::Metrics;
use sqlx::Connection;
use std::sync::Arc;
use std::time::{Duration, Instant};

const GAME: &str = "space-race";

/// A processed `progression` start of `player` (read by profiles, activity, sessions, the
/// funnel and retention), as the actors emit it: JSON payload and `gm.kind` header.
fn progression(player: &str, seq: u64) -> NewRecord {
    let event = serde_json::json!({
        "game_id": GAME, "player_id": player, "seq": seq,
        "event_id": uuid::Uuid::new_v4(), "timestamp": "2024-05-01T12:00:00Z", "received_at": "2024-05-01T12:00:00Z",
        "body": {"kind": "event",
                 "event": {"type": "progression", "properties": {"status": "start", "level_id": "world-1:level-1"}},
                 "derived": {"session_id": null, "session_started": false, "closed_session": null, "first_seen": seq == 1}}
    });
    NewRecord::new(format!("{GAME}:{player}"), serde_json::to_vec(&event).unwrap())
        .with_header(gm_schemas::processed::KIND_HEADER, "progression")
}

fn decoded(records: &[NewRecord]) -> Vec<ProcessedEvent> {
    records.iter().map(|r| serde_json::from_slice(&r.payload).unwrap()).collect()
}

fn game() -> GameId {
    GameId::parse(GAME).unwrap()
}

async fn profile_events(store: &dyn AnalyticsQueries, player: &str) -> u64 {
    store.player_profile(&game(), &PlayerId::parse(player).unwrap()).await.unwrap().map_or(0, |p| p.events)
}

async fn funnel_starts(store: &dyn AnalyticsQueries) -> u64 {
    store.funnel(&game()).await.unwrap().iter().map(|s| s.starts).sum()
}

/// The batch of `records` (offsets 0..n of partition 0) for the profiles and the funnel.
fn two_projections(records: &[NewRecord], expected: [Option<u64>; 2]) -> Vec<ProjectionBatch> {
    let events = decoded(records);
    [ProjectionName::PlayerProfiles, ProjectionName::Funnel]
        .into_iter()
        .zip(expected)
        .map(|(name, expected)| ProjectionBatch {
            name,
            checkpoints: vec![CheckpointMove { partition: 0, expected, next: records.len() as u64 }],
            changes: gm_projections::project::changes(name, &events),
        })
        .collect()
}

/// What both stores must do: one transaction for every projection of a batch, and a
/// conflict on any projection's checkpoint refuses the whole batch. `break_funnel` makes
/// the funnel's table unwritable (the failure of the second projection of a batch).
async fn batches_are_atomic_across_projections<S>(store: &S, break_funnel: impl std::future::Future<Output = ()>)
where
    S: ReadModelStore + AnalyticsQueries,
{
    let checkpoint = |name| store.checkpoint(Target::Live, name, 0);
    let records: Vec<NewRecord> = (1..=3).map(|seq| progression("p1", seq)).collect();

    // A checkpoint that does not match (the profiles' moved by another writer): nothing of
    // the batch is applied, the funnel's part neither.
    store
        .apply(Target::Live, ProjectionName::PlayerProfiles, 0, None, 1, &gm_projections::ChangeSet::default())
        .await
        .unwrap();
    let refused = store.apply_batch(Target::Live, &two_projections(&records, [None, None])).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { expected: None, found: Some(1) })),
        "expected a conflict on the profiles' checkpoint, got {refused:?}"
    );
    assert_eq!(checkpoint(ProjectionName::Funnel).await.unwrap(), None, "the funnel did not advance");
    assert_eq!(funnel_starts(store).await, 0);
    assert_eq!(profile_events(store, "p1").await, 0);

    // Both applied together, each with its checkpoint.
    store.apply_batch(Target::Live, &two_projections(&records, [Some(1), None])).await.unwrap();
    assert_eq!(checkpoint(ProjectionName::PlayerProfiles).await.unwrap(), Some(3));
    assert_eq!(checkpoint(ProjectionName::Funnel).await.unwrap(), Some(3));
    assert_eq!((profile_events(store, "p1").await, funnel_starts(store).await), (3, 3));

    // The funnel's write fails after the profiles' rows were written in the transaction:
    // neither projection is advanced, no row of either changed.
    break_funnel.await;
    let more: Vec<NewRecord> = (4..=5).map(|seq| progression("p1", seq)).collect();
    let mut batch = two_projections(&more, [Some(3), Some(3)]);
    for b in &mut batch {
        b.checkpoints[0].next = 5;
    }
    let failed = store.apply_batch(Target::Live, &batch).await;
    assert!(failed.is_err(), "the funnel's table is gone, yet the batch was applied");
    assert_eq!(checkpoint(ProjectionName::PlayerProfiles).await.unwrap(), Some(3), "profiles advanced alone");
    assert_eq!(checkpoint(ProjectionName::Funnel).await.unwrap(), Some(3));
    assert_eq!(profile_events(store, "p1").await, 3, "the profiles' rows of the failed batch stayed");
}

#[tokio::test]
async fn sqlite_applies_a_batch_of_every_projection_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let break_funnel = async {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        sqlx::query("DROP TABLE funnel").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    };
    batches_are_atomic_across_projections(&store, break_funnel).await;
}

#[tokio::test]
async fn postgres_applies_a_batch_of_every_projection_in_one_transaction() {
    let admin_url = std::env::var("GM_POSTGRES_URL")
        .expect("GM_POSTGRES_URL is not set: run `eval \"$(scripts/services env)\"` after `scripts/services up`");
    let database = format!("gm_batch_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {database}")).execute(&mut admin).await.unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{base}/{database}");
    let store = gm_postgres::PgStore::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let pool = store.pool().clone();
    let break_funnel = async move {
        sqlx::query("DROP TABLE funnel").execute(&pool).await.unwrap();
    };
    batches_are_atomic_across_projections(&store, break_funnel).await;
    store.close().await;
    sqlx::query(&format!("DROP DATABASE {database} WITH (FORCE)")).execute(&mut admin).await.unwrap();
}

// ---------------------------------------------------------------- the live worker

struct Running {
    store: SqliteStore,
    metrics: Metrics,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), gm_projections::worker::WorkerError>>,
}

async fn open(dir: &std::path::Path) -> (Arc<SqliteLog>, SqliteStore) {
    let specs: Vec<TopicSpec> = [topics::RAW, topics::PROCESSED, topics::DLQ]
        .iter()
        .map(|t| TopicSpec { name: t.to_string(), partitions: 1, compacted: false })
        .collect();
    let log = SqliteLog::open(&dir.join("log.db"), &specs).await.unwrap();
    (Arc::new(log), SqliteStore::open(&dir.join("store.db")).await.unwrap())
}

fn start(log: Arc<SqliteLog>, store: SqliteStore, max_records: usize, max_wait: Duration) -> Running {
    let metrics = Metrics::new();
    let worker = ProjectionWorker::combined(&ProjectionName::ALL, log, Arc::new(store.clone()), metrics.clone())
        .with_batch_limits(max_records, max_wait);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(worker.run(shutdown));
    Running { store, metrics, stop, task }
}

impl Running {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
    }

    async fn checkpoints(&self) -> Vec<Option<u64>> {
        let mut out = Vec::new();
        for name in ProjectionName::ALL {
            out.push(self.store.checkpoint(Target::Live, name, 0).await.unwrap());
        }
        out
    }

    /// One projection-labelled counter of the worker's [`Metrics`].
    fn counter(&self, read: Counter, name: ProjectionName) -> u64 {
        read(&self.metrics, &self.metrics.projection(name.as_str()))
    }
}

type Counter = fn(&Metrics, &gm_telemetry::ProjectionLabels) -> u64;

fn dead_letters(m: &Metrics, l: &gm_telemetry::ProjectionLabels) -> u64 {
    m.projections.dead_letters.get_or_create(l).get()
}

fn conflicts(m: &Metrics, l: &gm_telemetry::ProjectionLabels) -> u64 {
    m.projections.checkpoint_conflicts.get_or_create(l).get()
}

/// Waits until `done` holds, at most `limit`; false if it never did.
async fn within<F, Fut>(limit: Duration, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_light_load_is_applied_after_the_time_bound_without_filling_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (log, store) = open(dir.path()).await;
    // A batch of up to 100,000 records, or 200 ms after its first one.
    let w = start(log.clone(), store.clone(), 100_000, Duration::from_millis(200));
    log.producer().append(topics::PROCESSED, (1..=3).map(|s| progression("p1", s)).collect()).await.unwrap();
    let applied = within(Duration::from_secs(5), || async { profile_events(&store, "p1").await == 3 }).await;
    assert!(applied, "3 records waited for a batch of 100,000");
    // Every projection advanced, those that do not read progressions too.
    assert_eq!(w.checkpoints().await, vec![Some(3); 8]);
    let labels = w.metrics.projection("revenue");
    assert_eq!(w.metrics.projection_events_applied.get_or_create(&labels).get(), 3);
    w.stop().await;
}

#[tokio::test]
async fn a_heavy_load_is_applied_when_the_batch_is_full_before_the_time_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (log, store) = open(dir.path()).await;
    // Batches of 5 records, or a minute after the first one.
    let w = start(log.clone(), store.clone(), 5, Duration::from_secs(60));
    log.producer().append(topics::PROCESSED, (1..=10).map(|s| progression("p1", s)).collect()).await.unwrap();
    let applied = within(Duration::from_secs(10), || async { profile_events(&store, "p1").await == 10 }).await;
    assert!(applied, "two full batches of 5 waited for the time bound");
    assert_eq!(funnel_starts(&store).await, 10);
    w.stop().await;
}

#[tokio::test]
async fn a_checkpoint_moved_by_another_writer_is_followed_by_its_projection_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (log, store) = open(dir.path()).await;
    let w = start(log.clone(), store.clone(), 1_000, Duration::from_millis(50));
    log.producer().append(topics::PROCESSED, (1..=3).map(|s| progression("p1", s)).collect()).await.unwrap();
    assert!(within(Duration::from_secs(5), || async { funnel_starts(&store).await == 3 }).await);

    // Another writer (a rebuild swap, a member after a rebalance) moves the funnel's
    // checkpoint past the next two records, as if it had applied them.
    store
        .apply(Target::Live, ProjectionName::Funnel, 0, Some(3), 5, &gm_projections::ChangeSet::default())
        .await
        .unwrap();
    log.producer().append(topics::PROCESSED, (4..=7).map(|s| progression("p1", s)).collect()).await.unwrap();
    let settled = within(Duration::from_secs(10), || async {
        profile_events(&store, "p1").await == 7 && funnel_starts(&store).await == 5
    })
    .await;
    assert!(
        settled,
        "profiles {} (want 7), funnel {} (want 5: records 3 and 4 are the other writer's)",
        profile_events(&store, "p1").await,
        funnel_starts(&store).await
    );
    assert_eq!(w.checkpoints().await, vec![Some(7); 8]);
    assert!(w.counter(conflicts, ProjectionName::Funnel) >= 1);
    assert_eq!(w.counter(conflicts, ProjectionName::PlayerProfiles), 0);
    // Nothing counted twice once the worker re-read the checkpoints.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((profile_events(&store, "p1").await, funnel_starts(&store).await), (7, 5));
    w.stop().await;
}

#[tokio::test]
async fn an_undecodable_processed_record_is_dead_lettered_counted_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (log, store) = open(dir.path()).await;
    let w = start(log.clone(), store.clone(), 1_000, Duration::from_millis(50));
    let unreadable = NewRecord::new(format!("{GAME}:p1"), b"{\"game_id\": 42".to_vec())
        .with_header(gm_schemas::processed::KIND_HEADER, "progression");
    log.producer()
        .append(topics::PROCESSED, vec![progression("p1", 1), unreadable, progression("p1", 2)])
        .await
        .unwrap();
    let moved = within(Duration::from_secs(5), || async { w.checkpoints().await == vec![Some(3); 8] }).await;
    assert!(moved, "the partition stalled behind the unreadable record: {:?}", w.checkpoints().await);
    assert_eq!(profile_events(&store, "p1").await, 2);

    let letters = gamemetrics::dlq::list(log.as_ref(), 10).await.unwrap();
    assert_eq!(letters.len(), 1, "one dead letter: {letters:?}");
    let letter = &letters[0];
    assert!(letter.header("gm.error").unwrap().starts_with("undecodable processed record"), "{letter:?}");
    assert_eq!(letter.header("gm.source.topic"), Some(topics::PROCESSED));
    assert_eq!((letter.header("gm.source.partition"), letter.header("gm.source.offset")), (Some("0"), Some("1")));
    assert_eq!(letter.header("gm.projections"), Some("player_profiles,daily_activity,sessions,funnel,retention"));
    assert_eq!(letter.header("gm.kind"), Some("progression"));
    assert_eq!(letter.key, format!("{GAME}:p1"));
    let dead = |name| w.counter(dead_letters, name);
    assert_eq!((dead(ProjectionName::Funnel), dead(ProjectionName::Revenue)), (1, 0), "counted for its readers");
    assert_eq!(w.metrics.actors.dead_letters.get(), 1);

    // Replayed while still unreadable: back on player.events.processed, dead-lettered again,
    // nothing applied.
    gamemetrics::dlq::replay(log.as_ref(), gamemetrics::dlq::Selection::All).await.unwrap();
    assert!(within(Duration::from_secs(5), || async { w.checkpoints().await == vec![Some(4); 8] }).await);
    assert_eq!(gamemetrics::dlq::list(log.as_ref(), 10).await.unwrap().len(), 2);
    assert_eq!(dead(ProjectionName::Funnel), 2);
    assert_eq!(profile_events(&store, "p1").await, 2);

    // Once readable (the fix deployed), a replay is applied once by every projection: a
    // dead letter of a record the new code reads, re-driven by offset.
    let fixed = progression("p1", 3);
    let as_read = gm_ports::Record {
        topic: topics::PROCESSED.to_string(),
        partition: 0,
        offset: 1,
        key: fixed.key.clone(),
        payload: fixed.payload.clone(),
        timestamp: chrono::Utc::now(),
        headers: fixed.headers.clone(),
    };
    let letter = dead_letter(&as_read, "undecodable processed record: (before the fix)", &[ProjectionName::Funnel]);
    log.producer().append(topics::DLQ, vec![letter]).await.unwrap();
    gamemetrics::dlq::replay(log.as_ref(), gamemetrics::dlq::Selection::Offset { partition: 0, offset: 2 })
        .await
        .unwrap();
    let applied = within(Duration::from_secs(5), || async {
        profile_events(&store, "p1").await == 3 && funnel_starts(&store).await == 3
    })
    .await;
    assert!(applied, "the replayed record was not applied");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((profile_events(&store, "p1").await, funnel_starts(&store).await), (3, 3), "applied once");
    w.stop().await;
}

#[tokio::test]
async fn a_worker_for_one_projection_still_applies_alone_in_its_own_group() {
    // `ProjectionWorker::new` (one projection, group `projection.<name>`) is the same code
    // with one projection: it advances only its own checkpoint.
    let dir = tempfile::tempdir().unwrap();
    let (log, store) = open(dir.path()).await;
    log.producer().append(topics::PROCESSED, (1..=2).map(|s| progression("p1", s)).collect()).await.unwrap();
    let worker = ProjectionWorker::new(ProjectionName::Funnel, log.clone(), Arc::new(store.clone()), Metrics::new());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(worker.run(shutdown));
    assert!(within(Duration::from_secs(5), || async { funnel_starts(&store).await == 2 }).await);
    assert_eq!(store.checkpoint(Target::Live, ProjectionName::Funnel, 0).await.unwrap(), Some(2));
    assert_eq!(store.checkpoint(Target::Live, ProjectionName::PlayerProfiles, 0).await.unwrap(), None);
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}
