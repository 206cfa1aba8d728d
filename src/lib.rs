//! # gamemetrics
//!
//! Wiring only: typed configuration ([`config`]), the all-in-one embedded platform
//! ([`platform`]), the traffic simulator ([`simulate`]), the dead-letter tools ([`dlq`]) and what
//! a first run prints ([`welcome`]). The `gamemetrics` binary
//! (src/main.rs) turns command lines into calls to these.

pub mod admin;
pub mod bench;
pub mod config;
pub mod dlq;
pub mod failover;
pub mod platform;
pub mod reco_quality;
pub mod simulate;
pub mod welcome;
