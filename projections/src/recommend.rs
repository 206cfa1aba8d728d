//! Recommendations ("predictions" per player), SAR-style:
//!
//! * **Interactions** — items a player bought (`purchase`, weight 2) or used (`item_use`,
//!   and `resource` sinks naming an item, weight 1). Per player and item the store keeps
//!   the summed weight and the time of the last interaction.
//! * **Affinity** — weight × 2^(−age / half-life), the age counted from the player's last
//!   interaction with the item; the half-life is a query parameter (default 14 days).
//! * **Similarity** — item-to-item co-occurrence: `players(a, b)` counts the players who
//!   interacted with both, `players(a, a)` those who interacted with `a`; similarity is
//!   Jaccard, players(a, b) / (players(a, a) + players(b, b) − players(a, b)). The store
//!   updates the counts incrementally: a player's first interaction with an item adds 1 to
//!   the item's count and to its pair with each item the player already had.
//! * **Score** of a candidate item = Σ over the player's items of affinity × similarity;
//!   items the player already has are never recommended. A player with no interactions, or
//!   too few candidates, is filled up with the most popular items (by players) they lack.
//!
//! Each change of a player's interactions (and each erasure) is recorded in an outbox in
//! the projection's transaction; [`publish_pending`] then publishes the player's list to
//! `recommendations.generated` (key `game_id:player_id`; an empty payload is the tombstone
//! of an erased player) and clears the outbox rows it published. A crash between the two
//! publishes again: at-least-once, harmless on a keyed, compacted topic.

use chrono::{DateTime, Utc};
use gm_ports::{LogError, LogProducer, NewRecord, StoreError};
use gm_schemas::{topics, GameId, PlayerId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use utoipa::ToSchema;

pub const PURCHASE_WEIGHT: f64 = 2.0;
pub const USE_WEIGHT: f64 = 1.0;
pub const DEFAULT_HALF_LIFE_DAYS: f64 = 14.0;

/// A player's interactions with one item in a batch (weights summed, the last time kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    pub game_id: GameId,
    pub player_id: PlayerId,
    pub item: String,
    pub weight: f64,
    pub last_at: DateTime<Utc>,
}

/// Why an item is recommended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// Players who have `item` (one of this player's) also have this one.
    SimilarTo { item: String },
    /// Among the items most players have (popularity backfill).
    Popular,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Recommendation {
    pub item: String,
    /// Higher is better; similarity scores and popularity scores are not comparable, and
    /// popular items come after similar ones.
    pub score: f64,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecommendationList {
    pub game_id: String,
    pub player_id: String,
    pub generated_at: DateTime<Utc>,
    pub items: Vec<Recommendation>,
}

impl RecommendationList {
    /// The player's list scored from what the store read ([`score`]), as both stores answer it.
    pub fn scored(
        game: &GameId,
        player: &PlayerId,
        input: &ScoringInput,
        limit: usize,
        half_life_days: f64,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            game_id: game.to_string(),
            player_id: player.to_string(),
            generated_at: now,
            items: score(input, limit, half_life_days, now),
        }
    }
}

/// What the store holds for one player, read for scoring.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoringInput {
    /// (item, summed weight, last interaction)
    pub owned: Vec<(String, f64, DateTime<Utc>)>,
    /// (owned item, other item, players with both)
    pub pairs: Vec<(String, String, u64)>,
    /// Players per item, for every item named in `owned` and `pairs`.
    pub item_players: HashMap<String, u64>,
    /// The most popular items of the game (item, players), most popular first; at least
    /// `limit + owned.len()` of them when the game has that many.
    pub popular: Vec<(String, u64)>,
}

/// The recommendations of a player from what the store read (pure).
pub fn score(input: &ScoringInput, limit: usize, half_life_days: f64, now: DateTime<Utc>) -> Vec<Recommendation> {
    let owned: HashSet<&str> = input.owned.iter().map(|(i, _, _)| i.as_str()).collect();
    let half_life_secs = half_life_days.max(1e-9) * 86_400.0;
    let affinity: HashMap<&str, f64> = input
        .owned
        .iter()
        .map(|(item, w, last)| {
            let age = (now - *last).num_seconds().max(0) as f64;
            (item.as_str(), w * (-age / half_life_secs).exp2())
        })
        .collect();
    // candidate -> (score, best contribution, item that gave it)
    let mut scores: BTreeMap<&str, (f64, f64, &str)> = BTreeMap::new();
    for (a, b, both) in &input.pairs {
        if owned.contains(b.as_str()) || a == b {
            continue;
        }
        let (na, nb) =
            (input.item_players.get(a).copied().unwrap_or(0), input.item_players.get(b).copied().unwrap_or(0));
        let union = (na + nb).saturating_sub(*both);
        if union == 0 {
            continue;
        }
        let contribution = affinity.get(a.as_str()).copied().unwrap_or(0.0) * (*both as f64 / union as f64);
        let slot = scores.entry(b.as_str()).or_insert((0.0, f64::MIN, a.as_str()));
        slot.0 += contribution;
        if contribution > slot.1 {
            slot.1 = contribution;
            slot.2 = a.as_str();
        }
    }
    let mut similar: Vec<Recommendation> = scores
        .into_iter()
        .filter(|(_, (s, _, _))| *s > 0.0)
        .map(|(item, (s, _, because))| Recommendation {
            item: item.to_string(),
            score: s,
            reason: Reason::SimilarTo { item: because.to_string() },
        })
        .collect();
    similar.sort_by(|x, y| y.score.total_cmp(&x.score).then_with(|| x.item.cmp(&y.item)));
    similar.truncate(limit);
    let chosen: HashSet<String> = similar.iter().map(|r| r.item.clone()).collect();
    let total: u64 = input.popular.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    for (item, players) in &input.popular {
        if similar.len() >= limit {
            break;
        }
        if owned.contains(item.as_str()) || chosen.contains(item) {
            continue;
        }
        // Below every similarity score's reach: popularity only fills what is left.
        similar.push(Recommendation {
            item: item.clone(),
            score: *players as f64 / total as f64 * 1e-6,
            reason: Reason::Popular,
        });
    }
    similar
}

/// The recommendation read model's outbox and its scoring reads.
#[async_trait::async_trait]
pub trait RecommendationStore: Send + Sync {
    /// Players whose list changed and is not published yet: (game, player, erased), at most `limit`.
    async fn pending(&self, limit: usize) -> Result<Vec<(GameId, PlayerId, bool)>, StoreError>;
    /// Removes published players from the outbox.
    async fn clear_pending(&self, done: &[(GameId, PlayerId)]) -> Result<(), StoreError>;
    /// What scoring a player needs (see [`ScoringInput`]).
    async fn scoring_input(&self, game: &GameId, player: &PlayerId, limit: usize) -> Result<ScoringInput, StoreError>;
    /// [`Self::scoring_input`] of several players, in their order. A store behind a network
    /// answers them in a few batched queries instead of a few per player.
    async fn scoring_inputs(
        &self,
        players: &[(GameId, PlayerId)],
        limit: usize,
    ) -> Result<Vec<ScoringInput>, StoreError> {
        let mut inputs = Vec::with_capacity(players.len());
        for (game, player) in players {
            inputs.push(self.scoring_input(game, player, limit).await?);
        }
        Ok(inputs)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// The key of a player's list on `recommendations.generated`: `game:sha256hex(player)`.
/// Not the player's id: the topic is compacted, and until compaction runs an erased
/// player's old lists (and the tombstone itself) stay readable under their key. Consumers
/// find a player's list by hashing the id they know.
pub fn topic_key(game: &GameId, player: &PlayerId) -> String {
    use sha2::Digest as _;
    format!("{game}:{}", hex::encode(sha2::Sha256::digest(player.as_str().as_bytes())))
}

/// A list as published on `recommendations.generated` (keyed by [`topic_key`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedList {
    pub game_id: String,
    /// The hash part of the record's key.
    pub player_ref: String,
    pub generated_at: DateTime<Utc>,
    pub items: Vec<Recommendation>,
}

/// How many items a published list holds.
pub const PUBLISHED_ITEMS: usize = 10;

/// Publishes every pending player's list (or tombstone), then clears them; returns how
/// many were published.
pub async fn publish_pending(
    store: &dyn RecommendationStore,
    producer: &dyn LogProducer,
    now: DateTime<Utc>,
) -> Result<usize, PublishError> {
    let mut published = 0;
    loop {
        let pending = store.pending(500).await?;
        if pending.is_empty() {
            return Ok(published);
        }
        let scored: Vec<(GameId, PlayerId)> =
            pending.iter().filter(|(_, _, erased)| !erased).map(|(g, p, _)| (g.clone(), p.clone())).collect();
        let mut inputs = store.scoring_inputs(&scored, PUBLISHED_ITEMS).await?.into_iter();
        let mut records = Vec::with_capacity(pending.len());
        for (game, player, erased) in &pending {
            let key = topic_key(game, player);
            if *erased {
                records.push(NewRecord::new(key, Vec::new()));
                continue;
            }
            let input = inputs.next().unwrap_or_default();
            let player_ref = key.split_once(':').map(|(_, r)| r.to_string()).unwrap_or_default();
            let list = PublishedList {
                game_id: game.to_string(),
                player_ref,
                generated_at: now,
                items: score(&input, PUBLISHED_ITEMS, DEFAULT_HALF_LIFE_DAYS, now),
            };
            records.push(NewRecord::new(key, serde_json::to_vec(&list).unwrap_or_default()));
        }
        producer.append(topics::RECOMMENDATIONS, records).await?;
        let done: Vec<(GameId, PlayerId)> = pending.into_iter().map(|(g, p, _)| (g, p)).collect();
        store.clear_pending(&done).await?;
        published += done.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(days_ago: i64) -> DateTime<Utc> {
        "2024-06-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() - chrono::Duration::days(days_ago)
    }

    fn input() -> ScoringInput {
        ScoringInput {
            owned: vec![("sword".into(), 2.0, t(0)), ("potion".into(), 1.0, t(28))],
            pairs: vec![
                ("sword".into(), "shield".into(), 8),
                ("sword".into(), "potion".into(), 3),
                ("potion".into(), "map".into(), 9),
                ("sword".into(), "map".into(), 1),
            ],
            item_players: [("sword", 10), ("shield", 10), ("potion", 10), ("map", 10)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            popular: vec![("gem".into(), 50), ("sword".into(), 10), ("shield".into(), 10), ("cape".into(), 4)],
        }
    }

    #[test]
    fn owned_items_are_never_recommended_and_similar_ones_come_first() {
        let recs = score(&input(), 10, 14.0, t(0));
        let items: Vec<&str> = recs.iter().map(|r| r.item.as_str()).collect();
        assert!(!items.contains(&"sword") && !items.contains(&"potion"), "{items:?}");
        // shield: 2 × 8/12; map: 2 × 1/19 + 0.25 × 9/11 (potion decayed by two half-lives).
        assert_eq!(items, vec!["shield", "map", "gem", "cape"]);
        assert!((recs[0].score - 2.0 * 8.0 / 12.0).abs() < 1e-9);
        assert!((recs[1].score - (2.0 / 19.0 + 0.25 * 9.0 / 11.0)).abs() < 1e-9);
        assert_eq!(recs[1].reason, Reason::SimilarTo { item: "potion".into() });
        assert_eq!(recs[2].reason, Reason::Popular);
    }

    #[test]
    fn a_short_half_life_lets_recent_items_decide() {
        let recs = score(&input(), 1, 1.0, t(0));
        assert_eq!(recs[0].item, "shield");
        let mut old_sword = input();
        old_sword.owned[0].2 = t(60);
        old_sword.owned[1].2 = t(0);
        assert_eq!(score(&old_sword, 1, 1.0, t(0))[0].item, "map");
    }

    #[test]
    fn a_new_player_gets_the_popular_items() {
        let new = ScoringInput { popular: input().popular, ..Default::default() };
        let recs = score(&new, 3, 14.0, t(0));
        assert_eq!(recs.iter().map(|r| r.item.as_str()).collect::<Vec<_>>(), vec!["gem", "sword", "shield"]);
        assert!(recs.iter().all(|r| r.reason == Reason::Popular));
    }
}
