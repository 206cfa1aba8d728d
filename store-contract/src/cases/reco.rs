//! The recommendations read model: co-occurrence counts, owned items never recommended,
//! popularity backfill, the outbox and its tombstones, and the batched scoring read.

use super::scenario::Captured;
use crate::data::*;
use crate::Fixture;
use chrono::{DateTime, Utc};
use gm_projections::model::{ChangeSet, ProjectionName, Target};
use gm_projections::recommend::{publish_pending, Interaction, PublishedList, Reason, RecommendationStore};
use gm_projections::{ReadModelStore, RecommendationQueries};
use gm_schemas::GameId;

fn now() -> DateTime<Utc> {
    "2024-06-01T00:00:00Z".parse().unwrap()
}

fn bought_in(game: &GameId, p: &str, items: &[&str], weight: f64) -> Vec<Interaction> {
    items
        .iter()
        .map(|i| Interaction { game_id: game.clone(), player_id: pid(p), item: i.to_string(), weight, last_at: now() })
        .collect()
}

fn bought(p: &str, items: &[&str]) -> Vec<Interaction> {
    bought_in(&game(), p, items, 2.0)
}

pub async fn co_occurrence_recommends_unowned_items_backfills_and_erasure_tombstones<F: Fixture>(f: F) {
    let store = f.store();
    let r = ProjectionName::Recommendations;
    // a, b, c have sword+shield; d has sword+potion; e has gem only; f buys sword in a second batch.
    let mut first = Vec::new();
    for p in ["a", "b", "c"] {
        first.extend(bought(p, &["sword", "shield"]));
    }
    first.extend(bought("d", &["sword", "potion"]));
    first.extend(bought("e", &["gem"]));
    store.apply(Target::Live, r, 0, None, 1, &ChangeSet { interactions: first, ..Default::default() }).await.unwrap();
    // A repeat of an owned item changes no count.
    let second = [bought("f", &["sword"]), bought("a", &["sword"])].concat();
    store
        .apply(Target::Live, r, 0, Some(1), 2, &ChangeSet { interactions: second, ..Default::default() })
        .await
        .unwrap();

    let input = store.scoring_input(&game(), &pid("f"), 10).await.unwrap();
    assert_eq!((input.item_players["sword"], input.item_players["shield"]), (5, 3));
    assert_eq!(input.owned, vec![("sword".to_string(), 2.0, now())]);
    let a = store.scoring_input(&game(), &pid("a"), 10).await.unwrap();
    let mut owned: Vec<(String, f64)> = a.owned.iter().map(|(i, w, _)| (i.clone(), *w)).collect();
    owned.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(owned, vec![("shield".to_string(), 2.0), ("sword".to_string(), 4.0)], "weights add up");
    let f_list = store.recommendations(&game(), &pid("f"), 10, 14.0, now()).await.unwrap();
    let items: Vec<&str> = f_list.items.iter().map(|i| i.item.as_str()).collect();
    assert_eq!(items, vec!["shield", "potion", "gem"], "jaccard 3/5 > 1/5, then popular");
    assert_eq!(f_list.items[0].reason, Reason::SimilarTo { item: "sword".into() });
    assert!((f_list.items[0].score - 2.0 * 3.0 / 5.0).abs() < 1e-12);
    assert!((f_list.items[1].score - 2.0 / 5.0).abs() < 1e-12);
    assert_eq!(f_list.items[2].reason, Reason::Popular);
    assert!((f_list.items[2].score - 1.0 / 5.0 * 1e-6).abs() < 1e-18);
    let a_list = store.recommendations(&game(), &pid("a"), 10, 14.0, now()).await.unwrap();
    assert_eq!(
        a_list.items.iter().map(|i| i.item.as_str()).collect::<Vec<_>>(),
        vec!["potion", "gem"],
        "owned items: {a_list:?}"
    );
    let newcomer = store.recommendations(&game(), &pid("new"), 2, 14.0, now()).await.unwrap();
    assert_eq!(newcomer.items.iter().map(|i| i.item.as_str()).collect::<Vec<_>>(), vec!["sword", "shield"]);
    assert!(newcomer.items.iter().all(|i| i.reason == Reason::Popular));
    assert!(store.recommendations(&other_game(), &pid("a"), 5, 14.0, now()).await.unwrap().items.is_empty());

    // Every changed player is published once, then the outbox is empty.
    let mut pending: Vec<String> =
        store.pending(100).await.unwrap().iter().map(|(_, p, e)| format!("{p}:{e}")).collect();
    pending.sort();
    assert_eq!(pending, ["a", "b", "c", "d", "e", "f"].map(|p| format!("{p}:false")));
    assert_eq!(store.pending(2).await.unwrap().len(), 2, "at most the limit");
    let log = Captured::default();
    assert_eq!(publish_pending(store, &log, now()).await.unwrap(), 6);
    assert_eq!(publish_pending(store, &log, now()).await.unwrap(), 0);
    let published = log.0.lock().unwrap().clone();
    let key = gm_projections::recommend::topic_key(&game(), &pid("f"));
    assert!(!key.contains(":f") && key.starts_with("space-race:"), "{key}");
    let f_record = published.iter().find(|r| r.key == key).unwrap();
    let list: PublishedList = serde_json::from_slice(&f_record.payload).unwrap();
    assert_eq!(list.items, f_list.items);

    // Erasure: the player's interactions go, a tombstone is published, counts stay.
    let erase = ChangeSet { erased: vec![(game(), pid("f"))], ..Default::default() };
    store.apply(Target::Live, r, 0, Some(2), 3, &erase).await.unwrap();
    assert!(!f.player_ids("reco_affinity").await.contains(&"f".to_string()));
    let after = store.recommendations(&game(), &pid("f"), 10, 14.0, now()).await.unwrap();
    assert!(after.items.iter().all(|i| i.reason == Reason::Popular), "an erased player is a new player: {after:?}");
    assert_eq!(store.pending(10).await.unwrap(), vec![(game(), pid("f"), true)]);
    let log = Captured::default();
    assert_eq!(publish_pending(store, &log, now()).await.unwrap(), 1);
    let tomb = log.0.lock().unwrap()[0].clone();
    assert_eq!((tomb.key.as_str(), tomb.payload.is_empty()), (key.as_str(), true));
    assert_eq!(store.scoring_input(&game(), &pid("a"), 10).await.unwrap().item_players["sword"], 5);
    assert!(!f.player_ids("reco_outbox").await.contains(&"f".to_string()));
    // clear_pending of players not pending changes nothing.
    store.clear_pending(&[(game(), pid("zz"))]).await.unwrap();
    assert!(store.pending(10).await.unwrap().is_empty());
}

/// The batched read the publisher uses gives each player exactly what a read of that player
/// alone gives: players of two games, owners of many or no items, a repeated player.
pub async fn scoring_many_players_at_once_equals_scoring_each_alone<F: Fixture>(f: F) {
    let store = f.store();
    let other = other_game();
    let mut interactions = Vec::new();
    for (p, items) in [("a", &["sword", "shield", "potion"][..]), ("b", &["sword"]), ("c", &["gem", "shield"])] {
        interactions.extend(bought(p, items));
    }
    for (p, items) in [("a", &["rocket", "fuel"][..]), ("z", &["fuel", "helmet", "map", "boots"])] {
        interactions.extend(bought_in(&other, p, items, 1.0));
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
        // Popular: most players first, then by item name.
        assert_eq!(batched[2].popular[0], ("shield".to_string(), 2));
    }
    // a of space-race: pairs with every other item a has, counted once each way.
    let a = store.scoring_input(&game(), &pid("a"), 10).await.unwrap();
    let mut pairs = a.pairs.clone();
    pairs.sort();
    let expected = [
        ("potion", "shield", 1),
        ("potion", "sword", 1),
        ("shield", "gem", 1),
        ("shield", "potion", 1),
        ("shield", "sword", 1),
        ("sword", "potion", 1),
        ("sword", "shield", 1),
    ]
    .map(|(x, y, n)| (x.to_string(), y.to_string(), n));
    assert_eq!(pairs, expected.to_vec());
    assert_eq!(store.scoring_inputs(&[], 10).await.unwrap(), Vec::new());
}
