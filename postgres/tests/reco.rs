//! The recommendations read model on a real PostgreSQL: co-occurrence counts, exclusion of
//! owned items, popularity backfill, the outbox and erasure (as embedded/src/store/reco.rs).

mod common;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::TestDb;
use gm_ports::{LogError, LogProducer, NewRecord, Position};
use gm_projections::model::{ChangeSet, ProjectionName, Target};
use gm_projections::recommend::{publish_pending, Interaction, Reason, RecommendationStore};
use gm_projections::{ReadModelStore, RecommendationQueries};
use gm_schemas::{GameId, PlayerId};
use std::sync::Mutex;

fn game() -> GameId {
    GameId::parse("space-race").unwrap()
}
fn pid(p: &str) -> PlayerId {
    PlayerId::parse(p).unwrap()
}
fn now() -> DateTime<Utc> {
    "2024-06-01T00:00:00Z".parse().unwrap()
}
fn bought(p: &str, items: &[&str]) -> Vec<Interaction> {
    items
        .iter()
        .map(|i| Interaction { game_id: game(), player_id: pid(p), item: i.to_string(), weight: 2.0, last_at: now() })
        .collect()
}

#[derive(Default)]
struct Captured(Mutex<Vec<NewRecord>>);
#[async_trait]
impl LogProducer for Captured {
    async fn append(&self, _: &str, records: Vec<NewRecord>) -> Result<Vec<Position>, LogError> {
        let n = records.len();
        self.0.lock().unwrap().extend(records);
        Ok((0..n).map(|i| Position { partition: 0, offset: i as u64 }).collect())
    }
}

#[tokio::test]
async fn co_occurrence_recommends_unowned_items_backfills_new_players_and_erasure_tombstones() {
    let db = TestDb::new().await;
    let store = &db.store;
    let r = ProjectionName::Recommendations;
    let mut first = Vec::new();
    for p in ["a", "b", "c"] {
        first.extend(bought(p, &["sword", "shield"]));
    }
    first.extend(bought("d", &["sword", "potion"]));
    first.extend(bought("e", &["gem"]));
    store.apply(Target::Live, r, 0, None, 1, &ChangeSet { interactions: first, ..Default::default() }).await.unwrap();
    let second = [bought("f", &["sword"]), bought("a", &["sword"])].concat();
    store
        .apply(Target::Live, r, 0, Some(1), 2, &ChangeSet { interactions: second, ..Default::default() })
        .await
        .unwrap();

    let f = store.recommendations(&game(), &pid("f"), 10, 14.0, now()).await.unwrap();
    let items: Vec<&str> = f.items.iter().map(|i| i.item.as_str()).collect();
    assert_eq!(items, vec!["shield", "potion", "gem"]);
    assert!((f.items[0].score - 2.0 * 3.0 / 5.0).abs() < 1e-9);
    let newcomer = store.recommendations(&game(), &pid("new"), 2, 14.0, now()).await.unwrap();
    assert_eq!(newcomer.items.iter().map(|i| i.item.as_str()).collect::<Vec<_>>(), vec!["sword", "shield"]);

    let log = Captured::default();
    assert_eq!(publish_pending(store, &log, now()).await.unwrap(), 6);
    assert_eq!(publish_pending(store, &log, now()).await.unwrap(), 0);
    let key = gm_projections::recommend::topic_key(&game(), &pid("f"));
    let f_record = log.0.lock().unwrap().iter().find(|r| r.key == key).cloned().unwrap();
    let list: gm_projections::recommend::PublishedList = serde_json::from_slice(&f_record.payload).unwrap();
    assert_eq!(list.items, f.items);

    let erase = ChangeSet { erased: vec![(game(), pid("f"))], ..Default::default() };
    store.apply(Target::Live, r, 0, Some(2), 3, &erase).await.unwrap();
    let after = store.recommendations(&game(), &pid("f"), 10, 14.0, now()).await.unwrap();
    assert!(after.items.iter().all(|i| i.reason == Reason::Popular), "{after:?}");
    let log = Captured::default();
    assert_eq!(publish_pending(store, &log, now()).await.unwrap(), 1);
    let tomb = log.0.lock().unwrap()[0].clone();
    assert_eq!((tomb.key.as_str(), tomb.payload.is_empty()), (key.as_str(), true));
    assert_eq!(store.scoring_input(&game(), &pid("a"), 10).await.unwrap().item_players["sword"], 5);
}

/// The batched read the publisher uses gives each player exactly what a read of that player
/// alone gives: players of two games, owners of many or no items, a repeated player.
#[tokio::test]
async fn scoring_many_players_at_once_equals_scoring_each_alone() {
    let db = TestDb::new().await;
    let store = &db.store;
    let other = GameId::parse("moon-race").unwrap();
    let mut interactions = Vec::new();
    for (p, items) in [("a", &["sword", "shield", "potion"][..]), ("b", &["sword"]), ("c", &["gem", "shield"])] {
        interactions.extend(bought(p, items));
    }
    for (p, items) in [("a", &["rocket", "fuel"][..]), ("z", &["fuel", "helmet", "map", "boots"])] {
        interactions.extend(items.iter().map(|i| Interaction {
            game_id: other.clone(),
            player_id: pid(p),
            item: i.to_string(),
            weight: 1.0,
            last_at: now(),
        }));
    }
    let changes = ChangeSet { interactions, ..Default::default() };
    store.apply(Target::Live, ProjectionName::Recommendations, 0, None, 1, &changes).await.unwrap();

    let players = vec![
        (game(), pid("a")),
        (other.clone(), pid("a")),
        (game(), pid("new")),
        (other.clone(), pid("z")),
        (game(), pid("c")),
        (game(), pid("a")),
        (other.clone(), pid("nobody")),
    ];
    for limit in [1, 3, 10] {
        let batched = store.scoring_inputs(&players, limit).await.unwrap();
        assert_eq!(batched.len(), players.len());
        for ((g, p), input) in players.iter().zip(&batched) {
            let alone = store.scoring_input(g, p, limit).await.unwrap();
            assert_eq!(input, &alone, "{g}/{p}, limit {limit}");
        }
        // Not all alike: the players' own items and each game's popular items came through.
        assert_eq!(batched[0].owned.len(), 3);
        assert_eq!(batched[1].owned.len(), 2);
        assert!(batched[2].owned.is_empty() && batched[2].popular.len() == limit.min(4));
        assert_eq!(batched[3].popular.len(), (limit + 4).min(5), "moon-race has 5 items");
    }
    assert_eq!(store.scoring_inputs(&[], 10).await.unwrap(), Vec::new());
}
