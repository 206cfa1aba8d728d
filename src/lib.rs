//! # gamemetrics
//!
//! Wiring only: typed configuration ([`config`]), the all-in-one embedded platform
//! ([`platform`]), the dead-letter tools ([`dlq`]) and what a first run prints ([`welcome`]).
//! The `gamemetrics` binary (src/main.rs) turns command lines into calls to these and to the
//! tools of the gm-tools crate (bench, simulate, reco-quality; `simulate` and `reco_quality`
//! are re-exported here for the integration tests).

pub mod admin;
pub mod config;
pub mod dlq;
pub mod failover;
pub mod platform;
pub mod readiness;
pub mod status;
pub mod welcome;

pub use gm_tools::{reco_quality, simulate};
