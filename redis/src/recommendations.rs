//! [`CachedRecommendations`]: players' recommendation lists served from Redis when warm.
//!
//! Key `reco:{<game>:<h>}:<player>:<limit>:<half_life_days>` (the player's hash tag, see
//! [`crate::queries::player_tag`]) holds the JSON list for `recommendation_ttl` (default
//! 60 s): a list can lag the read model by that much. A miss (or any Redis failure) computes
//! the list from the store and writes it back in the background, unless the player's
//! erasure marker ([`crate::erased_marker_key`], same tag, so one script checks it in a
//! Redis Cluster too; set by [`crate::CachedQueries::invalidate_player`]) exists, so a read
//! racing an erasure cannot put the list back. [`CachedRecommendations::invalidate_player`]
//! deletes the player's lists.

use crate::cache::{CacheError, RedisCache};
use crate::queries::{erased_marker_key, player_tag};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gm_ports::StoreError;
use gm_projections::recommend::RecommendationList;
use gm_projections::RecommendationQueries;
use gm_schemas::{GameId, PlayerId};

/// Key of one player's list for one limit and half-life (relative to `key_prefix`).
pub fn recommendations_key(game: &GameId, player: &PlayerId, limit: usize, half_life_days: f64) -> String {
    format!("{}{limit}:{half_life_days}", recommendations_prefix(game, player))
}

/// The common start of every list key of the player: `reco:{<game>:<h>}:<player>:`.
fn recommendations_prefix(game: &GameId, player: &PlayerId) -> String {
    format!("reco:{}:{player}:", player_tag(game, player))
}

pub struct CachedRecommendations<Q> {
    inner: Q,
    cache: RedisCache,
}

impl<Q: RecommendationQueries> CachedRecommendations<Q> {
    pub fn new(inner: Q, cache: RedisCache) -> Self {
        Self { inner, cache }
    }

    /// Deletes every cached list of the player. `Err`: Redis did not confirm; retry.
    pub async fn invalidate_player(&self, game: &GameId, player: &PlayerId) -> Result<u64, CacheError> {
        self.cache.delete_prefix(&recommendations_prefix(game, player)).await
    }
}

#[async_trait]
impl<Q: RecommendationQueries> RecommendationQueries for CachedRecommendations<Q> {
    async fn recommendations(
        &self,
        game: &GameId,
        player: &PlayerId,
        limit: usize,
        half_life_days: f64,
        now: DateTime<Utc>,
    ) -> Result<RecommendationList, StoreError> {
        let ttl = self.cache.config().recommendation_ttl();
        let key = recommendations_key(game, player, limit, half_life_days);
        if !ttl.is_zero() {
            if let Ok(Some(bytes)) = self.cache.get(&key).await {
                if let Ok(list) = serde_json::from_slice(&bytes) {
                    return Ok(list);
                }
            }
        }
        let list = self.inner.recommendations(game, player, limit, half_life_days, now).await?;
        if !ttl.is_zero() {
            if let Ok(bytes) = serde_json::to_vec(&list) {
                let cache = self.cache.clone();
                let marker = erased_marker_key(game, player);
                tokio::spawn(async move {
                    let _ = cache.set_unless_marked(&key, &bytes, ttl, &marker).await;
                });
            }
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_keys_carry_the_players_tag_and_share_the_invalidation_prefix() {
        let (g, p) = (GameId::parse("g1").unwrap(), PlayerId::parse("p1").unwrap());
        let key = recommendations_key(&g, &p, 10, 14.0);
        assert_eq!(key, format!("reco:{}:p1:10:14", player_tag(&g, &p)));
        assert!(key.starts_with(&recommendations_prefix(&g, &p)));
        let other = PlayerId::parse("p10").unwrap();
        assert!(!recommendations_key(&g, &other, 10, 14.0).starts_with(&recommendations_prefix(&g, &p)));
        let slot = |k: &str| crate::cache::key_slot(k.as_bytes());
        assert_eq!(slot(&key), slot(&erased_marker_key(&g, &p)), "one script checks the marker and writes the list");
    }
}
