//! What the projections need from a database: applying a change set with its checkpoint in
//! one transaction, rebuilding into fresh tables, and answering queries.

use crate::model::*;
use async_trait::async_trait;
use gm_ports::StoreError;
use gm_schemas::{GameId, PlayerId};

/// One projection's part of a batch applied by [`ReadModelStore::apply_batch`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionBatch {
    pub name: ProjectionName,
    /// The checkpoints this batch moves, one per partition it covers.
    pub checkpoints: Vec<CheckpointMove>,
    /// The projection's changes for every record of the batch past its checkpoints.
    pub changes: ChangeSet,
}

/// Moves a projection's checkpoint on `partition` from `expected` (compare-and-set) to `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointMove {
    pub partition: u32,
    pub expected: Option<u64>,
    pub next: u64,
}

#[async_trait]
pub trait ReadModelStore: Send + Sync {
    /// The next offset of `player.events.processed` to apply for this projection and partition.
    async fn checkpoint(
        &self,
        target: Target,
        projection: ProjectionName,
        partition: u32,
    ) -> Result<Option<u64>, StoreError>;

    /// Applies `changes` and moves the checkpoint from `expected` to `next`, in one
    /// transaction. Fails with `StoreError::Conflict` (and changes nothing) when the stored
    /// checkpoint is not `expected`. A batch of one part (the stores write batches only).
    async fn apply(
        &self,
        target: Target,
        projection: ProjectionName,
        partition: u32,
        expected: Option<u64>,
        next: u64,
        changes: &ChangeSet,
    ) -> Result<(), StoreError> {
        let checkpoints = vec![CheckpointMove { partition, expected, next }];
        let part = ProjectionBatch { name: projection, checkpoints, changes: changes.clone() };
        self.apply_batch(target, std::slice::from_ref(&part)).await
    }

    /// Applies every projection's change set of one batch and moves each of their
    /// checkpoints, all in **one** transaction: either every projection of the batch is
    /// advanced or none is. Each [`CheckpointMove`] is compare-and-set as in [`Self::apply`];
    /// the first that does not match fails the whole batch with `StoreError::Conflict` (and
    /// changes nothing), whichever projection it belongs to.
    async fn apply_batch(&self, target: Target, batch: &[ProjectionBatch]) -> Result<(), StoreError>;

    /// Drops any leftover rebuild tables of `projection` and creates empty ones.
    async fn begin_rebuild(&self, projection: ProjectionName) -> Result<(), StoreError>;

    /// Swaps the rebuilt tables and their checkpoints in place of the live ones, atomically.
    async fn finish_rebuild(&self, projection: ProjectionName) -> Result<(), StoreError>;
}

#[async_trait]
pub trait AnalyticsQueries: Send + Sync {
    async fn player_profile(&self, game: &GameId, player: &PlayerId) -> Result<Option<PlayerProfile>, StoreError>;
    async fn active_users(&self, game: &GameId, range: DateRange) -> Result<Vec<ActiveUsersDay>, StoreError>;
    async fn sessions(&self, game: &GameId, range: DateRange) -> Result<Vec<SessionsDay>, StoreError>;
    async fn revenue(&self, game: &GameId, range: DateRange) -> Result<Vec<RevenueDay>, StoreError>;
    async fn funnel(&self, game: &GameId) -> Result<Vec<FunnelStep>, StoreError>;
}

/// Queries on the leaderboard and retention read models (and the monetisation summary over
/// the revenue and activity ones).
#[async_trait]
pub trait GameQueries: Send + Sync {
    /// Players `offset..offset + limit` of a board, best first.
    async fn leaderboard(
        &self,
        board: &crate::leaderboard::BoardPeriod,
        offset: u64,
        limit: u64,
    ) -> Result<crate::leaderboard::LeaderboardPage, StoreError>;

    /// A player's rank and score with up to `neighbours` players above and below; `None`
    /// when the player has no score on that board in that period.
    async fn leaderboard_player(
        &self,
        board: &crate::leaderboard::BoardPeriod,
        player: &PlayerId,
        neighbours: u64,
    ) -> Result<Option<crate::leaderboard::PlayerStanding>, StoreError>;

    /// Every (player, score) of a board: what a cold cache is rebuilt from.
    async fn leaderboard_scores(
        &self,
        board: &crate::leaderboard::BoardPeriod,
    ) -> Result<Vec<(String, i64)>, StoreError>;

    /// One cohort per day of `range` (cohort days without players count zero).
    async fn retention(
        &self,
        game: &GameId,
        range: DateRange,
    ) -> Result<Vec<crate::retention::RetentionCohort>, StoreError>;

    /// New and returning players per day of `range`.
    async fn new_returning(
        &self,
        game: &GameId,
        range: DateRange,
    ) -> Result<Vec<crate::retention::NewReturningDay>, StoreError>;

    /// Revenue per active and paying player, and conversion, over the whole of `range`.
    async fn monetisation(&self, game: &GameId, range: DateRange)
        -> Result<crate::retention::Monetisation, StoreError>;
}

/// A player's recommendations, computed from the recommendation read model.
#[async_trait]
pub trait RecommendationQueries: Send + Sync {
    /// Up to `limit` items for the player, best first (see [`crate::recommend`]).
    async fn recommendations(
        &self,
        game: &GameId,
        player: &PlayerId,
        limit: usize,
        half_life_days: f64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::recommend::RecommendationList, StoreError>;
}
