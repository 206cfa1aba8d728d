//! # gamemetrics
//!
//! Wiring only: typed configuration ([`config`]), the all-in-one embedded platform
//! ([`platform`]) and the traffic simulator ([`simulate`]). The `gamemetrics` binary
//! (src/main.rs) turns command lines into calls to these.

pub mod bench;
pub mod config;
pub mod platform;
pub mod simulate;
