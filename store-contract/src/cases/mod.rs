//! The contract's cases, one `pub async fn name<F: Fixture>(f: F)` each, listed in
//! [`crate::store_contract_tests!`].

pub mod checkpoints;
pub mod counters;
pub mod games;
pub mod privacy;
pub mod read_models;
pub mod reco;
pub mod scenario;
pub mod snapshots;
