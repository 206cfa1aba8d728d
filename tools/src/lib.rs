//! # gm-tools
//!
//! The tools the `gamemetrics` CLI reaches besides the server: [`bench`] (the performance
//! targets, measured on the configured mode), [`simulate`] (realistic synthetic traffic
//! against a gateway) and [`reco_quality`] (the recommendations' quality check). They live
//! apart from the server crates so that nothing they need — a token issuer for the bench's
//! queries, the load generator — is a feature of a server crate or ships inside one.

pub mod bench;
pub mod reco_quality;
pub mod simulate;
