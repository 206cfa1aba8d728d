//! # gm-projections
//!
//! Read models built from `player.events.processed`. Each projection is a consumer group
//! whose worker turns a batch of events into a [`model::ChangeSet`] ([`project::changes`],
//! pure) and hands it to a [`ports::ReadModelStore`], which writes the rows **and** the
//! projection's checkpoint in one transaction, compare-and-set on the previous checkpoint:
//! after a crash the batch is either wholly applied with its checkpoint or not at all, and a
//! second worker that raced us (a rebalance, a rebuild swap) finds a conflict and re-reads.
//!
//! Projections: player profiles, daily activity (DAU/WAU/MAU, stickiness), sessions (count,
//! length distribution), revenue (per day and currency; ARPDAU, ARPPU, payers), the
//! progression funnel, [`leaderboard`]s (best score per board and UTC day / ISO week / all
//! time), [`retention`] (first-seen cohorts, D1/D7/D30, new vs returning) and
//! [`recommend`]ations (item co-occurrence, published to `recommendations.generated` from an
//! outbox the batch writes). `worker::rebuild` replays one from offset 0 into fresh tables
//! and swaps them in.
//!
//! Modules, each using only those listed before it: [`leaderboard`] and [`recommend`]
//! (types, ranking and scoring), [`model`] (change sets and rows), [`retention`],
//! [`counters`] (the per-day counters the analytics queries read, kept from each touched
//! player's stored days), `events`
//! (how a projection reads a batch), [`project`] (the projections' `changes`, with the
//! leaderboards and recommendations in modules of their own), [`ports`], [`worker`].

pub mod counters;
mod events;
pub mod leaderboard;
pub mod model;
pub mod ports;
pub mod project;
pub mod recommend;
pub mod retention;
pub mod worker;

pub use model::{ChangeSet, DateRange, ProjectionName, Target};
pub use ports::{
    AnalyticsQueries, CheckpointMove, GameQueries, ProjectionBatch, ReadModelStore, RecommendationQueries,
};
