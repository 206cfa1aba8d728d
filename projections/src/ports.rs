//! What the projections need from a database: applying a change set with its checkpoint in
//! one transaction, rebuilding into fresh tables, and answering queries.

use crate::model::*;
use async_trait::async_trait;
use gm_ports::StoreError;
use gm_schemas::{GameId, PlayerId};

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
    /// checkpoint is not `expected`.
    async fn apply(
        &self,
        target: Target,
        projection: ProjectionName,
        partition: u32,
        expected: Option<u64>,
        next: u64,
        changes: &ChangeSet,
    ) -> Result<(), StoreError>;

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
