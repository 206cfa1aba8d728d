//! What only the PostgreSQL store has: migrations, a failed save rolled back, concurrent
//! checkpoint claims, the rebuild's index and constraint names, a large batch, the
//! partitioned events table and its retention, killed connections. What every store must
//! answer alike is in the store contract (`store_contract.rs`, gm-store-contract).

mod common;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use common::TestDb;
use gm_ports::{SnapshotStore, StoreError};
use gm_postgres::PgStore;
use gm_projections::model::{ChangeSet, PlayerDay, ProjectionName, Target};
use gm_projections::{AnalyticsQueries, ReadModelStore};
use gm_schemas::events::SessionStart;
use gm_schemas::{Derived, EventBody, ProcessedBody, ProcessedEvent};
// The store contract's names, days and deltas (one copy for every store's tests).
use gm_store_contract::data::{funnel, game, jan, pid, player_days, profile, range};
use sqlx::Connection;
use std::time::Instant;

async fn raw_player_ids(store: &PgStore, table: &str) -> Vec<String> {
    sqlx::query_scalar(&format!("SELECT player_id FROM {table} ORDER BY player_id COLLATE \"C\""))
        .fetch_all(store.pool())
        .await
        .unwrap()
}

async fn scalar_i64(store: &PgStore, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(store.pool()).await.unwrap()
}

// ---------------------------------------------------------------- migrations

#[tokio::test]
async fn migrations_are_idempotent_and_create_every_table() {
    let db = TestDb::unmigrated().await;
    let store = &db.store;
    // Twice concurrently, then once more.
    let (a, b) = futures::join!(store.migrate(), gm_postgres::migrate(store.pool()));
    a.unwrap();
    b.unwrap();
    store.migrate().await.unwrap();
    let applied = scalar_i64(store, "SELECT COUNT(*) FROM _sqlx_migrations WHERE success").await;
    assert_eq!(applied as usize, gm_postgres::MIGRATOR.iter().count());
    for table in [
        "snapshots",
        "watermarks",
        "projection_checkpoints",
        "player_profiles",
        "profile_revenue",
        "player_days",
        "session_days",
        "revenue_days",
        "payer_days",
        "funnel",
        "events",
        "events_default",
    ] {
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(table).fetch_one(store.pool()).await.unwrap();
        assert!(exists, "table {table} missing");
    }
    // Plain path here: events is a range-partitioned parent with today's partition.
    let kind: String = sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE relname = 'events'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(kind, "p", "events is a partitioned table");
    let today = format!("events_{}", Utc::now().date_naive().format("%Y%m%d"));
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(&today).fetch_one(store.pool()).await.unwrap();
    assert!(exists, "{today} created by the migration");
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let url = common::with_database(&common::admin_url(), "gamemetrics");
    // Same server address, port 1 (nothing listens there), whatever port GM_POSTGRES_URL uses.
    let (credentials, rest) = url.rsplit_once('@').expect("user@host:port/db");
    let (host_port, database) = rest.split_once('/').expect("host:port/db");
    let host = host_port.rsplit_once(':').map_or(host_port, |(host, _)| host);
    let url = format!("{credentials}@{host}:1/{database}");
    match PgStore::connect(&url, 1).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

// ---------------------------------------------------------------- snapshots

#[tokio::test]
async fn a_failed_snapshot_save_moves_neither_rows_nor_watermark() {
    let db = TestDb::new().await;
    let store = &db.store;
    store.save(3, None, 10, vec![("g:a".into(), vec![1])]).await.unwrap();
    // Make the watermark write fail after the rows were written, inside the transaction.
    sqlx::query("ALTER TABLE watermarks ADD CONSTRAINT small CHECK (next_offset < 100)")
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.save(3, Some(10), 500, vec![("g:a".into(), vec![2]), ("g:b".into(), vec![3])]).await;
    assert!(matches!(err, Err(StoreError::Other(_))), "{err:?}");
    assert_eq!(store.watermark(3).await.unwrap(), Some(10));
    assert_eq!(store.count().await.unwrap(), 1);
    let loaded = store.load_many(&["g:a".to_string()]).await.unwrap();
    assert_eq!(loaded, vec![("g:a".to_string(), vec![1])]);
}

// ---------------------------------------------------------------- checkpoints

/// Two workers racing on the same checkpoint (a rebalance): exactly one applies.
#[tokio::test]
async fn concurrent_applies_of_one_checkpoint_let_exactly_one_through() {
    let db = TestDb::new().await;
    let store = &db.store;
    for (expected, next) in [(None, 5u64), (Some(5), 9)] {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = store.clone();
                tokio::spawn(async move {
                    s.apply(Target::Live, ProjectionName::Funnel, 0, expected, next, &funnel("l1", 1)).await
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => ok += 1,
                Err(StoreError::Conflict { found, .. }) => assert_eq!(found, Some(next)),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 1, "expected {expected:?}");
    }
    assert_eq!(store.funnel(&game()).await.unwrap()[0].starts, 2);
    assert_eq!(store.checkpoint(Target::Live, ProjectionName::Funnel, 0).await.unwrap(), Some(9));
}

// ---------------------------------------------------------------- rebuild

async fn index_names(store: &PgStore, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = to_regclass($1) ORDER BY 1",
    )
    .bind(table)
    .fetch_all(store.pool())
    .await
    .unwrap()
}

/// What only PostgreSQL has in a rebuild (the swap itself is in the store contract): the
/// rebuild tables take the live ones' constraints, and after the swap the indexes and
/// constraints have their live names again, round after round.
#[tokio::test]
async fn a_rebuild_swap_keeps_the_live_index_and_constraint_names() {
    let db = TestDb::new().await;
    let store = &db.store;
    let activity = ProjectionName::DailyActivity;
    let live_indexes = index_names(store, "player_days").await;
    assert_eq!(live_indexes, vec!["player_days_game_id_player_id_day_idx".to_string(), "player_days_pkey".to_string()]);
    let new = ChangeSet { active_days: player_days(&game(), &[("new", jan(1))]), ..Default::default() };
    for round in 0..2 {
        store.begin_rebuild(activity).await.unwrap();
        store.apply(Target::Rebuild, activity, 0, None, 60 + round, &new).await.unwrap();
        store.finish_rebuild(activity).await.unwrap();
        assert_eq!(index_names(store, "player_days").await, live_indexes, "round {round}: live index names");
        let constraints: Vec<String> = sqlx::query_scalar(
            "SELECT conname::text FROM pg_constraint WHERE conrelid = 'player_days'::regclass ORDER BY 1",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(constraints, vec!["player_days_pkey".to_string()]);
        assert_eq!(scalar_i64(store, "SELECT COUNT(*) FROM pg_class WHERE relname LIKE '%rebuild%'").await, 0);
    }
    // A two-table projection: both tables keep their live names.
    store.begin_rebuild(ProjectionName::Revenue).await.unwrap();
    store.finish_rebuild(ProjectionName::Revenue).await.unwrap();
    assert_eq!(index_names(store, "payer_days").await, vec!["payer_days_game_id_player_id_day_idx", "payer_days_pkey"]);
    assert_eq!(index_names(store, "payer_gaps").await, vec!["payer_gaps_pkey"]);
    assert_eq!(index_names(store, "revenue_days").await, vec!["revenue_days_pkey"]);
}

// ---------------------------------------------------------------- throughput

#[tokio::test]
async fn a_batch_of_10000_profile_deltas_applies_in_one_call() {
    let db = TestDb::new().await;
    let store = &db.store;
    let batch = |round: u64| ChangeSet {
        profiles: (0..10_000).map(|i| profile(&format!("p{i}"), 1, 2, round)).collect(),
        ..Default::default()
    };
    let first = batch(1);
    let started = Instant::now();
    store.apply(Target::Live, ProjectionName::PlayerProfiles, 0, None, 10_000, &first).await.unwrap();
    let insert = started.elapsed();
    let second = batch(2);
    let started = Instant::now();
    store.apply(Target::Live, ProjectionName::PlayerProfiles, 0, Some(10_000), 20_000, &second).await.unwrap();
    let update = started.elapsed();
    let activity = ChangeSet {
        active_days: (0..10_000)
            .map(|i| PlayerDay { game_id: game(), day: jan(1), player_id: pid(&format!("p{i}")) })
            .collect(),
        ..Default::default()
    };
    let started = Instant::now();
    store.apply(Target::Live, ProjectionName::DailyActivity, 0, None, 10_000, &activity).await.unwrap();
    let days_time = started.elapsed();
    let rate = |d: std::time::Duration| 10_000.0 / d.as_secs_f64();
    println!(
        "10k profile deltas: new rows {insert:?} ({:.0} rows/s), upserts {update:?} ({:.0} rows/s); \
         10k player-days {days_time:?} ({:.0} rows/s)",
        rate(insert),
        rate(update),
        rate(days_time)
    );
    let snapshots: Vec<(String, Vec<u8>)> = (0..10_000).map(|i| (format!("g:p{i}"), vec![7u8; 200])).collect();
    let started = Instant::now();
    store.save(0, None, 10_000, snapshots).await.unwrap();
    let save_time = started.elapsed();
    let now = Utc::now();
    let events: Vec<ProcessedEvent> = (0..10_000).map(|i| event(&format!("p{i}"), 1, now)).collect();
    let started = Instant::now();
    assert_eq!(store.insert_events(&events).await.unwrap(), 10_000);
    let events_time = started.elapsed();
    println!(
        "10k snapshots (200 B) saved in {save_time:?} ({:.0} rows/s); 10k events inserted in {events_time:?} ({:.0} rows/s)",
        rate(save_time),
        rate(events_time)
    );
    assert_eq!(scalar_i64(store, "SELECT COUNT(*) FROM player_profiles").await, 10_000);
    assert_eq!(scalar_i64(store, "SELECT SUM(events)::int8 FROM player_profiles").await, 30_000);
    assert_eq!(scalar_i64(store, "SELECT SUM(amount_minor)::int8 FROM profile_revenue").await, 10_000 * 398);
    assert_eq!(store.active_users(&game(), range(jan(1), jan(1))).await.unwrap()[0].dau, 10_000);
}

// ---------------------------------------------------------------- events fact table

fn event(p: &str, seq: u64, ts: DateTime<Utc>) -> ProcessedEvent {
    ProcessedEvent {
        game_id: game(),
        player_id: pid(p),
        seq,
        event_id: uuid::Uuid::new_v4(),
        timestamp: ts,
        received_at: ts,
        body: ProcessedBody::Event {
            event: EventBody::SessionStart(SessionStart::default()),
            derived: Derived::default(),
        },
    }
}

async fn event_partitions(store: &PgStore) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'events'::regclass ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn event_partitions_are_created_on_insert_and_dropped_by_retention() {
    let db = TestDb::new().await;
    let store = &db.store;
    let today = Utc::now().date_naive();
    let noon = |d: NaiveDate| d.and_hms_opt(12, 0, 0).unwrap().and_utc();
    let day_n = |n: i64| today - Duration::days(n);
    // Events on days today-20 .. today-10 (2 per day) and today, one per batch day.
    let mut events = Vec::new();
    for n in (10..=20).chain([0]) {
        events.push(event("p1", n as u64 * 2, noon(day_n(n))));
        events.push(event("p2", n as u64 * 2 + 1, noon(day_n(n)) + Duration::minutes(5)));
    }
    // One from 1999: outside the partition window, it lands in the default partition.
    events.push(event("p3", 1, noon(NaiveDate::from_ymd_opt(1999, 1, 1).unwrap())));
    assert_eq!(store.insert_events(&events).await.unwrap(), events.len() as u64);
    // Replaying the batch inserts nothing.
    assert_eq!(store.insert_events(&events).await.unwrap(), 0);
    assert_eq!(scalar_i64(store, "SELECT COUNT(*) FROM events").await, events.len() as i64);
    assert_eq!(scalar_i64(store, "SELECT COUNT(*) FROM events_default").await, 1);
    let parts = event_partitions(store).await;
    for n in 10..=20 {
        let name = format!("events_{}", day_n(n).format("%Y%m%d"));
        assert!(parts.contains(&name), "{name} in {parts:?}");
        let rows = scalar_i64(store, &format!("SELECT COUNT(*) FROM {name}")).await;
        assert_eq!(rows, 2, "{name}");
    }

    // Retention: keep the last 15 days (cutoff = today-15; that day itself is kept).
    let cutoff = day_n(15);
    let dropped = gm_postgres::drop_event_partitions_before(store.pool(), cutoff).await.unwrap();
    let expected: Vec<String> = (16..=20).rev().map(|n| format!("events_{}", day_n(n).format("%Y%m%d"))).collect();
    assert_eq!(dropped, expected);
    let oldest: DateTime<Utc> = sqlx::query_scalar("SELECT min(ts) FROM events").fetch_one(store.pool()).await.unwrap();
    assert_eq!(oldest.date_naive(), cutoff, "older rows gone (also from the default partition)");
    assert_eq!(scalar_i64(store, "SELECT COUNT(*) FROM events").await, 2 * 7, "days today-15..today-10 and today");
    assert!(event_partitions(store).await.contains(&"events_default".to_string()));
    // Nothing left to drop.
    assert!(store.drop_event_partitions_before(cutoff).await.unwrap().is_empty());

    // A day that first landed in the default partition moves into its partition once created.
    let late = day_n(30);
    sqlx::query("INSERT INTO events (ts, event_id, game_id, player_id, seq, type, received_at) VALUES ($1, $2, 'g', 'p', 1, 'design', $1)")
        .bind(noon(late))
        .bind(uuid::Uuid::new_v4())
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(store.ensure_event_partitions(late, late).await.unwrap(), 1);
    assert_eq!(store.ensure_event_partitions(late, late).await.unwrap(), 0);
    let name = format!("events_{}", late.format("%Y%m%d"));
    assert_eq!(scalar_i64(store, &format!("SELECT COUNT(*) FROM {name}")).await, 1);
    assert_eq!(scalar_i64(store, "SELECT COUNT(*) FROM events_default").await, 0);
}

#[tokio::test]
async fn events_store_no_personal_fields_and_erasure_pseudonymises_the_player() {
    let db = TestDb::new().await;
    let store = &db.store;
    let now = Utc::now();
    let first = vec![event("p1", 1, now - Duration::hours(2)), event("p2", 1, now - Duration::hours(2))];
    store.insert_events(&first).await.unwrap();
    let erasure = ProcessedEvent {
        body: ProcessedBody::PlayerErased { erasure_id: uuid::Uuid::new_v4(), requested_at: now },
        ..event("p1", 3, now - Duration::minutes(30))
    };
    let second = vec![event("p1", 2, now - Duration::hours(1)), erasure, event("p1", 4, now)];
    store.insert_events(&second).await.unwrap();
    let ids = raw_player_ids(store, "events").await;
    assert_eq!(ids.len(), 5);
    assert_eq!(ids.iter().filter(|i| *i == "p1").count(), 1, "only the event after the erasure: {ids:?}");
    assert_eq!(ids.iter().filter(|i| i.starts_with("erased-")).count(), 3, "{ids:?}");
    let pseudonyms =
        scalar_i64(store, "SELECT COUNT(DISTINCT player_id) FROM events WHERE player_id LIKE 'erased-%'").await;
    assert_eq!(pseudonyms, 1);
    let types: Vec<String> =
        sqlx::query_scalar("SELECT type FROM events ORDER BY ts, seq").fetch_all(store.pool()).await.unwrap();
    assert!(types.contains(&"player_erased".to_string()), "{types:?}");
    // Replaying the first batch does not bring the real id back.
    store.insert_events(&first).await.unwrap();
    assert_eq!(raw_player_ids(store, "events").await.iter().filter(|i| *i == "p1").count(), 1);
}

/// A server-side kill of every connection (what a PostgreSQL restart does to the pool):
/// calls fail as `Unavailable` or succeed on a fresh connection, a retry succeeds, and
/// nothing is applied twice.
#[tokio::test]
async fn killed_connections_surface_as_unavailable_and_a_retry_succeeds() {
    let db = TestDb::new().await;
    let store = &db.store;
    store.apply(Target::Live, ProjectionName::Funnel, 0, None, 1, &funnel("l1", 1)).await.unwrap();
    // Hold a few connections so the pool has idle ones to hand out after the kill.
    let held: Vec<_> = futures::future::join_all((0..4).map(|_| store.pool().acquire())).await;
    drop(held);
    let mut admin = sqlx::PgConnection::connect(&common::admin_url()).await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&db.name)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!killed.is_empty(), "there were connections to kill");
    let mut expected = Some(1);
    let mut next = 2;
    let mut unavailable = 0;
    for _ in 0..20 {
        match store.apply(Target::Live, ProjectionName::Funnel, 0, expected, next, &funnel("l1", 1)).await {
            Ok(()) => {
                expected = Some(next);
                next += 1;
                if next > 4 {
                    break;
                }
            }
            Err(StoreError::Unavailable(_)) => unavailable += 1,
            Err(e) => panic!("a killed connection must be Unavailable (retryable), got {e:?}"),
        }
    }
    println!("after killing {} connections: {unavailable} Unavailable before 3 batches applied", killed.len());
    assert_eq!(next, 5, "three batches applied after retries ({unavailable} Unavailable)");
    assert_eq!(store.funnel(&game()).await.unwrap()[0].starts, 4, "each batch once");
    assert_eq!(store.checkpoint(Target::Live, ProjectionName::Funnel, 0).await.unwrap(), Some(4));
}

/// The error a query gets on a connection the server killed maps to `Unavailable`.
#[tokio::test]
async fn a_query_on_a_killed_connection_is_unavailable() {
    let db = TestDb::new().await;
    let mut conn = db.store.pool().acquire().await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *conn).await.unwrap();
    let mut admin = sqlx::PgConnection::connect(&common::admin_url()).await.unwrap();
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid).fetch_one(&mut admin).await.unwrap();
    assert!(killed);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let err = sqlx::query("SELECT 1").execute(&mut *conn).await.unwrap_err();
    assert!(gm_postgres::is_transient(&err), "{err:?}");
    assert!(matches!(gm_postgres::store_err(err), StoreError::Unavailable(_)));
    // A constraint violation is not.
    let err = sqlx::query("INSERT INTO watermarks (partition, next_offset) VALUES (NULL, 1)")
        .execute(db.store.pool())
        .await
        .unwrap_err();
    assert!(matches!(gm_postgres::store_err(err), StoreError::Other(_)));
}

// ---------------------------------------------------------------- migrations

/// Migration 0015 fills the analytics counters of a deployment written before them: its
/// backfill, run on the player-day tables, gives the numbers the projections keep.
#[tokio::test]
async fn migration_0015_fills_the_counters_from_the_player_day_tables() {
    use gm_store_contract::data::{answers, project_all, scenario};
    let db = TestDb::new().await;
    let store = &db.store;
    project_all(store, Target::Live, &scenario()).await;
    let kept = answers(store).await.unwrap();
    assert!(kept.active_users.iter().any(|d| d.mau > 0) && kept.retention.iter().any(|c| c.d1 > 0));
    sqlx::raw_sql("TRUNCATE activity_gaps, payer_gaps, retention_days").execute(store.pool()).await.unwrap();
    assert_ne!(answers(store).await.unwrap(), kept, "the counters were emptied");
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::raw_sql(include_str!("../migrations/0015_analytics_counters.sql")).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(answers(store).await.unwrap(), kept);
}
