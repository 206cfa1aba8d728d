//! A change set and its checkpoint in one transaction, compare-and-set on the previous
//! checkpoint (`StoreError::Conflict`), and rebuilds into fresh tables swapped in at once.

use crate::data::*;
use crate::Fixture;
use gm_ports::StoreError;
use gm_projections::model::{ChangeSet, ProjectionName, Target};
use gm_projections::project::changes;
use gm_projections::{AnalyticsQueries, GameQueries, ReadModelStore};

pub async fn apply_with_a_wrong_expected_checkpoint_changes_nothing<F: Fixture>(f: F) {
    let store = f.store();
    let live = Target::Live;
    store.apply(live, ProjectionName::Funnel, 0, None, 10, &funnel("l1", 4)).await.unwrap();
    let err = store.apply(live, ProjectionName::Funnel, 0, Some(7), 20, &funnel("l1", 100)).await;
    assert_eq!(err, Err(StoreError::Conflict { expected: Some(7), found: Some(10) }));
    let err = store.apply(live, ProjectionName::Funnel, 0, None, 20, &funnel("l1", 100)).await;
    assert_eq!(err, Err(StoreError::Conflict { expected: None, found: Some(10) }));
    let err = store.apply(live, ProjectionName::Funnel, 1, Some(10), 20, &funnel("l2", 1)).await;
    assert_eq!(err, Err(StoreError::Conflict { expected: Some(10), found: None }), "checkpoints are per partition");
    let err = store.apply(live, ProjectionName::Sessions, 0, Some(10), 20, &ChangeSet::default()).await;
    assert_eq!(err, Err(StoreError::Conflict { expected: Some(10), found: None }), "and per projection");
    let err = store.apply(Target::Rebuild, ProjectionName::Funnel, 0, Some(10), 20, &funnel("l3", 1)).await;
    assert_eq!(err, Err(StoreError::Conflict { expected: Some(10), found: None }), "and per target");
    assert_eq!(
        store.funnel(&game()).await.unwrap(),
        vec![gm_projections::model::FunnelStep::new(
            "l1".into(),
            gm_projections::model::FunnelCounts { starts: 4, completes: 1, ..Default::default() }
        )]
    );
    assert_eq!(store.checkpoint(live, ProjectionName::Funnel, 0).await.unwrap(), Some(10));
    assert_eq!(store.checkpoint(live, ProjectionName::Funnel, 1).await.unwrap(), None);
    assert_eq!(store.checkpoint(live, ProjectionName::Sessions, 0).await.unwrap(), None);
    // An empty change set still moves the checkpoint.
    store.apply(live, ProjectionName::Funnel, 0, Some(10), 15, &ChangeSet::default()).await.unwrap();
    assert_eq!(store.checkpoint(live, ProjectionName::Funnel, 0).await.unwrap(), Some(15));
    assert_eq!(store.funnel(&game()).await.unwrap()[0].starts, 4);
}

pub async fn applying_the_same_batch_twice_counts_it_once<F: Fixture>(f: F) {
    let store = f.store();
    let batch = ChangeSet {
        revenue: vec![gm_projections::model::RevenueDelta {
            game_id: game(),
            day: jan(1),
            currency: usd(),
            amount_minor: 500,
            purchases: 2,
        }],
        payer_days: player_days(&game(), &[("p1", jan(1))]),
        ..Default::default()
    };
    let revenue = ProjectionName::Revenue;
    let err = store.apply(Target::Live, revenue, 2, Some(100), 110, &batch).await;
    assert_eq!(err, Err(StoreError::Conflict { expected: Some(100), found: None }));
    store.apply(Target::Live, revenue, 2, None, 110, &batch).await.unwrap();
    let again = store.apply(Target::Live, revenue, 2, None, 110, &batch).await;
    assert_eq!(again, Err(StoreError::Conflict { expected: None, found: Some(110) }));
    let rows = store.revenue(&game(), range(jan(1), jan(1))).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].revenue_minor, rows[0].purchases, rows[0].payers), (500, 2, 1));
    // The next batch, from the right checkpoint, adds up; replaying it does not.
    store.apply(Target::Live, revenue, 2, Some(110), 120, &batch).await.unwrap();
    let again = store.apply(Target::Live, revenue, 2, Some(110), 120, &batch).await;
    assert_eq!(again, Err(StoreError::Conflict { expected: Some(110), found: Some(120) }));
    let rows = store.revenue(&game(), range(jan(1), jan(1))).await.unwrap();
    assert_eq!((rows[0].revenue_minor, rows[0].purchases, rows[0].payers), (1000, 4, 1));
    assert_eq!(store.checkpoint(Target::Live, revenue, 2).await.unwrap(), Some(120));
}

/// What a worker that lost a race does: it re-applies a batch from the checkpoint it read
/// before. Every projection refuses, and no answer changes.
pub async fn re_applying_any_projection_with_a_stale_checkpoint_changes_no_answer<F: Fixture>(f: F) {
    let store = f.store();
    let [first, second] = scenario();
    let after_first = first.len() as u64;
    let end = project_all(store, Target::Live, &[first.clone(), second.clone()]).await;
    let before = answers(store).await.unwrap();
    let pending = gm_projections::recommend::RecommendationStore::pending(store, 100).await.unwrap();
    for projection in ProjectionName::ALL {
        for (expected, batch) in [(Some(after_first), &second), (None, &first), (Some(end + 5), &second)] {
            let err = store.apply(Target::Live, projection, 0, expected, end, &changes(projection, batch)).await;
            assert_eq!(err, Err(StoreError::Conflict { expected, found: Some(end) }), "{projection}");
        }
        assert_eq!(store.checkpoint(Target::Live, projection, 0).await.unwrap(), Some(end), "{projection}");
    }
    assert_eq!(answers(store).await.unwrap(), before);
    assert_eq!(gm_projections::recommend::RecommendationStore::pending(store, 100).await.unwrap(), pending);
}

pub async fn a_rebuild_swaps_rows_and_checkpoints_and_leaves_other_projections<F: Fixture>(f: F) {
    let store = f.store();
    let activity = ProjectionName::DailyActivity;
    let day1 = range(jan(1), jan(1));
    let old =
        ChangeSet { active_days: player_days(&game(), &[("old1", jan(1)), ("old2", jan(1))]), ..Default::default() };
    store.apply(Target::Live, activity, 0, None, 100, &old).await.unwrap();
    store.apply(Target::Live, activity, 1, None, 7, &old).await.unwrap();
    store.apply(Target::Live, ProjectionName::Funnel, 0, None, 3, &funnel("l1", 1)).await.unwrap();
    for round in 0..2 {
        store.begin_rebuild(activity).await.unwrap();
        assert_eq!(store.checkpoint(Target::Rebuild, activity, 0).await.unwrap(), None);
        let new = ChangeSet { active_days: player_days(&game(), &[("new", jan(1))]), ..Default::default() };
        store.apply(Target::Rebuild, activity, 0, None, 60 + round, &new).await.unwrap();
        // The rebuild table has the live one's keys: insert-or-ignore still holds.
        store.apply(Target::Rebuild, activity, 0, Some(60 + round), 60 + round, &new).await.unwrap();
        // Live is untouched until the swap.
        assert_eq!(store.active_users(&game(), day1).await.unwrap()[0].dau, if round == 0 { 2 } else { 1 });
        assert_eq!(store.checkpoint(Target::Live, activity, 1).await.unwrap(), if round == 0 { Some(7) } else { None });
        store.finish_rebuild(activity).await.unwrap();
        assert_eq!(store.active_users(&game(), day1).await.unwrap()[0].dau, 1, "round {round}");
        assert_eq!(f.player_ids("player_days").await, vec!["new".to_string()]);
        assert_eq!(store.checkpoint(Target::Live, activity, 0).await.unwrap(), Some(60 + round));
        assert_eq!(store.checkpoint(Target::Live, activity, 1).await.unwrap(), None, "old checkpoints replaced");
        assert_eq!(store.checkpoint(Target::Rebuild, activity, 0).await.unwrap(), None);
    }
    // Other projections are not touched.
    assert_eq!(store.funnel(&game()).await.unwrap().len(), 1);
    assert_eq!(store.checkpoint(Target::Live, ProjectionName::Funnel, 0).await.unwrap(), Some(3));
    // Finishing without a rebuild in progress fails and changes nothing.
    assert!(store.finish_rebuild(activity).await.is_err());
    assert_eq!(store.active_users(&game(), day1).await.unwrap()[0].dau, 1);
    assert_eq!(store.checkpoint(Target::Live, activity, 0).await.unwrap(), Some(61));
    // A two-table projection swaps both: an empty rebuild empties revenue and payers.
    store.apply(Target::Live, ProjectionName::Revenue, 0, None, 1, &revenue_batch()).await.unwrap();
    assert_eq!(store.monetisation(&game(), range(jan(1), jan(31))).await.unwrap().payers, 2);
    store.begin_rebuild(ProjectionName::Revenue).await.unwrap();
    store.finish_rebuild(ProjectionName::Revenue).await.unwrap();
    assert!(store.revenue(&game(), range(jan(1), jan(31))).await.unwrap().is_empty());
    assert_eq!(store.monetisation(&game(), range(jan(1), jan(31))).await.unwrap().payers, 0);
    assert!(f.player_ids("payer_days").await.is_empty());
    assert_eq!(store.checkpoint(Target::Live, ProjectionName::Revenue, 0).await.unwrap(), None);
    // A rebuild begun again drops what a previous, unfinished one wrote.
    store.begin_rebuild(activity).await.unwrap();
    let stray = ChangeSet { active_days: player_days(&game(), &[("stray", jan(1))]), ..Default::default() };
    store.apply(Target::Rebuild, activity, 0, None, 5, &stray).await.unwrap();
    store.begin_rebuild(activity).await.unwrap();
    assert_eq!(store.checkpoint(Target::Rebuild, activity, 0).await.unwrap(), None);
    store.finish_rebuild(activity).await.unwrap();
    assert_eq!(store.active_users(&game(), day1).await.unwrap()[0].dau, 0);
    assert_eq!(store.checkpoint(Target::Live, activity, 0).await.unwrap(), None);
}

/// Every projection replayed from the same events into rebuild tables, in one batch instead
/// of two, and swapped in: the same answers as the live tables gave, checkpoints moved.
pub async fn rebuilding_every_projection_from_the_events_gives_the_live_answers<F: Fixture>(f: F) {
    let store = f.store();
    let [first, second] = scenario();
    let end = project_all(store, Target::Live, &[first.clone(), second.clone()]).await;
    let live = answers(store).await.unwrap();
    let all: Vec<_> = first.into_iter().chain(second).collect();
    for projection in ProjectionName::ALL {
        store.begin_rebuild(projection).await.unwrap();
        store.apply(Target::Rebuild, projection, 0, None, end + 100, &changes(projection, &all)).await.unwrap();
        assert_eq!(store.checkpoint(Target::Live, projection, 0).await.unwrap(), Some(end), "{projection}");
        store.finish_rebuild(projection).await.unwrap();
        assert_eq!(store.checkpoint(Target::Live, projection, 0).await.unwrap(), Some(end + 100), "{projection}");
        assert_eq!(store.checkpoint(Target::Rebuild, projection, 0).await.unwrap(), None, "{projection}");
    }
    assert_eq!(answers(store).await.unwrap(), live);
    let weekly = board(gm_projections::leaderboard::Period::Weekly, mar(4));
    assert_eq!(store.leaderboard(&weekly, 0, 10).await.unwrap().total, 4);
}

/// `apply_batch` of every projection's change set at once answers what one `apply` per
/// projection answers; its checkpoints (several partitions) move together, and one stale
/// checkpoint among right ones refuses the whole batch.
pub async fn apply_batch_of_every_projection_gives_the_answers_of_separate_applies<F: Fixture>(f: F) {
    use gm_projections::{CheckpointMove, ProjectionBatch};
    let store = f.store();
    let [first, second] = scenario();
    let end = project_all(store, Target::Live, &[first.clone(), second.clone()]).await;
    let separate = answers(store).await.unwrap();

    // The same batches into rebuild tables, every projection in one apply_batch per batch.
    for projection in ProjectionName::ALL {
        store.begin_rebuild(projection).await.unwrap();
    }
    let mut checkpoint = None;
    for batch in [&first, &second] {
        let next = checkpoint.unwrap_or(0) + batch.len() as u64;
        let parts: Vec<ProjectionBatch> = ProjectionName::ALL
            .into_iter()
            .map(|name| ProjectionBatch {
                name,
                checkpoints: vec![CheckpointMove { partition: 0, expected: checkpoint, next }],
                changes: changes(name, batch),
            })
            .collect();
        store.apply_batch(Target::Rebuild, &parts).await.unwrap();
        checkpoint = Some(next);
    }
    for projection in ProjectionName::ALL {
        assert_eq!(store.checkpoint(Target::Rebuild, projection, 0).await.unwrap(), Some(end), "{projection}");
        store.finish_rebuild(projection).await.unwrap();
    }
    assert_eq!(answers(store).await.unwrap(), separate);

    // A third batch (alice's erasure) on the live tables, moving partitions 0 and 1.
    let erasure = uuid::Uuid::from_u128(0xe3);
    let third = vec![erased_ev("alice", 14, at(13, 9, 0), erasure)];
    let mut parts: Vec<ProjectionBatch> = ProjectionName::ALL
        .into_iter()
        .map(|name| ProjectionBatch {
            name,
            checkpoints: vec![
                CheckpointMove { partition: 0, expected: Some(end), next: end + 1 },
                CheckpointMove { partition: 1, expected: None, next: 5 },
            ],
            changes: changes(name, &third),
        })
        .collect();
    parts[5].checkpoints[0].expected = Some(end - 1);
    let err = store.apply_batch(Target::Live, &parts).await;
    assert_eq!(err, Err(StoreError::Conflict { expected: Some(end - 1), found: Some(end) }));
    for projection in ProjectionName::ALL {
        assert_eq!(store.checkpoint(Target::Live, projection, 0).await.unwrap(), Some(end), "{projection}");
        assert_eq!(store.checkpoint(Target::Live, projection, 1).await.unwrap(), None, "{projection}");
    }
    assert_eq!(answers(store).await.unwrap(), separate, "a refused batch changes nothing");
    assert!(gm_privacy::PrivacyStore::confirmations(store, erasure).await.unwrap().is_empty());

    parts[5].checkpoints[0].expected = Some(end);
    store.apply_batch(Target::Live, &parts).await.unwrap();
    for projection in ProjectionName::ALL {
        assert_eq!(store.checkpoint(Target::Live, projection, 0).await.unwrap(), Some(end + 1), "{projection}");
        assert_eq!(store.checkpoint(Target::Live, projection, 1).await.unwrap(), Some(5), "{projection}");
    }
    let after = answers(store).await.unwrap();
    assert_eq!(after.profiles[0], None);
    assert_eq!(after.profiles[1..], separate.profiles[1..]);
    assert_eq!(
        (&after.active_users, &after.retention, &after.monetisation),
        (&separate.active_users, &separate.retention, &separate.monetisation)
    );
    assert_eq!(after.boards[3].total, 0, "alice's week of 11 March");
    assert_eq!(gm_privacy::PrivacyStore::confirmations(store, erasure).await.unwrap().len(), ProjectionName::ALL.len());
    // The same batch again is refused whole. Every move mismatches now; the stores report
    // different ones (SQLite the first in batch order, PostgreSQL checks the moves from no
    // checkpoint first), so only that it is one of them is the contract.
    let again = store.apply_batch(Target::Live, &parts).await;
    let mismatched = [(Some(end), Some(end + 1)), (None, Some(5))];
    assert!(
        matches!(again, Err(StoreError::Conflict { expected, found }) if mismatched.contains(&(expected, found))),
        "{again:?}"
    );
    assert_eq!(answers(store).await.unwrap(), after);
}
