//! Restart PostgreSQL under load: projections and actors retry, resume from their
//! checkpoints and snapshots, and count nothing twice.
//! (A test binary of its own: it stops a service the other tests share.)

mod common;

use std::time::Duration;

#[actix_rt::test]
async fn a_postgres_restart_under_load_double_counts_nothing() {
    common::faults::restart_under_load("postgres", Duration::from_secs(2)).await;
}
