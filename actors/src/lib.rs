//! # gm-actors
//!
//! ## Path of a raw record through the actors role
//! 1. [`runtime::ActorsRuntime`] is one member of the consumer group `actors` on
//!    `player.events.raw`. For each assigned partition it starts a [`shard::Shard`] (an actix
//!    actor, spread over a few arbiters) and recovers it: it seeks to the partition's
//!    snapshot watermark and remembers the group's committed offset.
//! 2. Records arrive in partition order. Before a shard sees them, the runtime loads the
//!    snapshots of the players it does not hold in memory (one batched read per batch).
//! 3. The shard hands each record to its [`player::PlayerActor`]: `handle` decides — drops a
//!    duplicate event id, asks the [`session::SessionActor`] where the session starts and
//!    ends, numbers the event — and `apply` folds the result into state. Records before the
//!    committed offset are replayed into state only; later ones are emitted.
//! 4. The runtime appends the emitted events to `player.events.processed` and commits the
//!    consumed offsets in one log transaction (exactly-once), then writes snapshots when the
//!    policy (every N events or T seconds) says so, and passivates idle players.
//!
//! Player and session actors are plain state machines owned by their shard rather than one
//! actix actor each: a million idle players then cost a map entry, not a mailbox, and a
//! batch is applied and committed as one unit (see docs/adr/0002-virtual-actors-per-shard.md).

pub mod dedup;
pub mod player;
pub mod runtime;
pub mod session;
pub mod shard;

pub use player::{PlayerActor, PlayerCommand, PlayerState, Policy};
pub use runtime::{ActorsConfig, ActorsRuntime, ActorsSettings};

#[cfg(test)]
mod test_support;
