//! In-memory stores with the read models' semantics, shared by the tests of the cached
//! leaderboards and recommendations (single node and cluster).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gm_ports::StoreError;
use gm_projections::leaderboard::{BoardPeriod, LeaderboardEntry, LeaderboardPage, PlayerStanding};
use gm_projections::model::DateRange;
use gm_projections::recommend::{Reason, Recommendation, RecommendationList};
use gm_projections::retention::{Monetisation, NewReturningDay, RetentionCohort};
use gm_projections::{GameQueries, RecommendationQueries};
use gm_schemas::{GameId, PlayerId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The store's semantics in memory: best first, ties by player id descending, competition ranks.
#[derive(Default, Clone)]
pub struct Board {
    pub scores: Arc<Mutex<Vec<(String, i64)>>>,
    pub calls: Arc<AtomicU64>,
}

impl Board {
    fn sorted(&self) -> Vec<LeaderboardEntry> {
        let mut rows = self.scores.lock().unwrap().clone();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        let all = rows.clone();
        rows.into_iter()
            .map(|(p, s)| LeaderboardEntry {
                rank: 1 + all.iter().filter(|(_, x)| *x > s).count() as u64,
                player_id: p,
                score: s,
            })
            .collect()
    }
}

#[async_trait]
impl GameQueries for Board {
    async fn leaderboard(&self, _: &BoardPeriod, offset: u64, limit: u64) -> Result<LeaderboardPage, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let all = self.sorted();
        Ok(LeaderboardPage {
            total: all.len() as u64,
            entries: all.into_iter().skip(offset as usize).take(limit as usize).collect(),
        })
    }
    async fn leaderboard_player(
        &self,
        _: &BoardPeriod,
        player: &PlayerId,
        neighbours: u64,
    ) -> Result<Option<PlayerStanding>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let all = self.sorted();
        let Some(i) = all.iter().position(|e| e.player_id == player.as_str()) else { return Ok(None) };
        let from = i.saturating_sub(neighbours as usize);
        let to = (i + neighbours as usize + 1).min(all.len());
        Ok(Some(PlayerStanding { total: all.len() as u64, entry: all[i].clone(), around: all[from..to].to_vec() }))
    }
    async fn leaderboard_scores(&self, _: &BoardPeriod) -> Result<Vec<(String, i64)>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.scores.lock().unwrap().clone())
    }
    async fn retention(&self, _: &GameId, range: DateRange) -> Result<Vec<RetentionCohort>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(range.days().map(|d| RetentionCohort::new(d, 10, 5, 2, 1)).collect())
    }
    async fn new_returning(&self, _: &GameId, _: DateRange) -> Result<Vec<NewReturningDay>, StoreError> {
        Ok(vec![])
    }
    async fn monetisation(&self, _: &GameId, _: DateRange) -> Result<Monetisation, StoreError> {
        Ok(Monetisation::new(0, 0, 0, vec![]))
    }
}

/// Lists numbered by computation, so that a recomputed list differs from a cached one.
#[derive(Clone, Default)]
pub struct Lists(pub Arc<AtomicU64>);

#[async_trait]
impl RecommendationQueries for Lists {
    async fn recommendations(
        &self,
        game: &GameId,
        player: &PlayerId,
        limit: usize,
        _: f64,
        now: DateTime<Utc>,
    ) -> Result<RecommendationList, StoreError> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        Ok(RecommendationList {
            game_id: game.to_string(),
            player_id: player.to_string(),
            generated_at: now,
            items: (0..limit)
                .map(|i| Recommendation { item: format!("item-{n}-{i}"), score: 1.0, reason: Reason::Popular })
                .collect(),
        })
    }
}
