//! The embedded query cache ([`Memoised`]): a repeated query is answered from memory, and
//! never with an answer older than the store (each committed write makes the next lookup a
//! miss that reads the store again).

use gm_embedded::{MemoStats, Memoised, SqliteStore};
use gm_projections::model::Target;
use gm_projections::{AnalyticsQueries, GameQueries, RecommendationQueries};
use gm_store_contract::data::{game, mar, pid, project_from, range, scenario, scoring_now};

async fn fresh() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (SqliteStore::open(&dir.path().join("store.db")).await.unwrap(), dir)
}

#[tokio::test]
async fn repeated_queries_are_answered_from_memory_until_the_store_changes() {
    let (store, _dir) = fresh().await;
    let [first, second] = scenario();
    let checkpoint = project_from(&store, Target::Live, None, &[first]).await;
    let memo = Memoised::new(store.clone());
    let (g, days) = (game(), range(mar(1), mar(14)));

    let before = memo.active_users(&g, days).await.unwrap();
    assert_eq!(before, store.active_users(&g, days).await.unwrap());
    assert_eq!(memo.active_users(&g, days).await.unwrap(), before);
    assert_eq!(memo.stats(), MemoStats { hits: 1, misses: 1 });
    let retention = memo.retention(&g, days).await.unwrap();
    assert_eq!(memo.retention(&g, days).await.unwrap(), retention);
    let list = memo.recommendations(&g, &pid("bob"), 5, 14.0, scoring_now()).await.unwrap();
    assert_eq!(memo.recommendations(&g, &pid("bob"), 5, 14.0, scoring_now()).await.unwrap(), list);
    // Other arguments are other answers.
    let fewer = memo.recommendations(&g, &pid("bob"), 1, 14.0, scoring_now()).await.unwrap();
    assert!(fewer.items.len() <= 1);
    assert_eq!(memo.stats(), MemoStats { hits: 3, misses: 4 });

    // The second batch commits: every answer is read again and shows it (carol appears).
    project_from(&store, Target::Live, Some(checkpoint), &[second]).await;
    let after = memo.active_users(&g, days).await.unwrap();
    assert_ne!(after, before, "the scenario's second batch changes active users");
    assert_eq!(after, store.active_users(&g, days).await.unwrap());
    assert_eq!(memo.retention(&g, days).await.unwrap(), store.retention(&g, days).await.unwrap());
    assert!(memo.player_profile(&g, &pid("carol")).await.unwrap().is_some());
    assert_eq!(memo.stats(), MemoStats { hits: 3, misses: 7 });
}

#[tokio::test]
async fn a_player_unknown_when_asked_shows_up_as_soon_as_the_store_has_them() {
    let (store, _dir) = fresh().await;
    let [first, second] = scenario();
    let checkpoint = project_from(&store, Target::Live, None, &[first]).await;
    let memo = Memoised::new(store.clone());
    let g = game();
    assert_eq!(memo.player_profile(&g, &pid("carol")).await.unwrap(), None);
    assert_eq!(memo.player_profile(&g, &pid("carol")).await.unwrap(), None);
    project_from(&store, Target::Live, Some(checkpoint), &[second]).await;
    let carol = memo.player_profile(&g, &pid("carol")).await.unwrap().expect("carol after the second batch");
    assert_eq!(Some(carol), store.player_profile(&g, &pid("carol")).await.unwrap());
}

/// What was remembered before a write (an erasure is one) leaves memory at the next lookup.
#[tokio::test]
async fn answers_from_before_a_write_leave_memory_at_the_next_lookup() {
    let (store, _dir) = fresh().await;
    let [first, second] = scenario();
    let checkpoint = project_from(&store, Target::Live, None, &[first]).await;
    let memo = Memoised::new(store.clone());
    let g = game();
    for p in ["alice", "bob", "dave"] {
        memo.player_profile(&g, &pid(p)).await.unwrap();
    }
    assert_eq!(memo.remembered(), 3);
    project_from(&store, Target::Live, Some(checkpoint), &[second]).await;
    memo.player_profile(&g, &pid("carol")).await.unwrap();
    assert_eq!(memo.remembered(), 1, "only the answer read after the write");
}
