//! Other rows created on a first sighting (issue 14's audit), under concurrency on a real
//! PostgreSQL: a partition's first snapshot watermark, and the day partitions of the events
//! table. (A projection checkpoint's first claim: store.rs,
//! concurrent_applies_of_one_checkpoint_let_exactly_one_through.)

mod common;

use common::TestDb;
use gm_ports::{SnapshotStore, StoreError};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_saves_of_a_watermark_let_one_through_and_name_it_to_the_others() {
    let db = TestDb::new().await;
    let store = Arc::new(gm_postgres::PgStore::connect(&db.url, 16).await.unwrap());
    for partition in 0..6u32 {
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let tasks: Vec<_> = (0..16u64)
            .map(|i| {
                let (store, barrier) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let players = vec![(format!("g:p{partition}-{i}"), vec![i as u8])];
                    (100 + i, store.save(partition, None, 100 + i, players).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (offset, Ok(())) => winners.push(offset),
                (_, Err(StoreError::Conflict { expected: None, found })) => losers.push(found),
                (_, Err(e)) => panic!("partition {partition}: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "partition {partition}: one first save");
        // The losers read the winner's row (a statement after the conflict sees it), never None.
        assert!(losers.iter().all(|f| *f == Some(winners[0])), "partition {partition}: {losers:?} vs {winners:?}");
        assert_eq!(store.watermark(partition).await.unwrap(), Some(winners[0]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creators_of_the_same_event_day_partitions_all_succeed() {
    let db = TestDb::new().await;
    let store = Arc::new(gm_postgres::PgStore::connect(&db.url, 16).await.unwrap());
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                sqlx::query_scalar::<_, i32>("SELECT gm_ensure_event_partitions('2024-03-01', '2024-03-10')")
                    .fetch_one(store.pool())
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        created += t.await.unwrap().expect("no creator fails");
    }
    let parts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname LIKE 'events_202403%'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    // Under TimescaleDB the function creates nothing (chunks instead of partitions).
    if created > 0 {
        assert_eq!((created, parts), (10, 10), "each day created once, by one of the callers");
    }
}
