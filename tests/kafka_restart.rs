//! Restart the Kafka broker under load: clients see errors or retries, never a false 202,
//! and every acknowledged event reaches every read model exactly once.
//! (A test binary of its own: it stops a service the other tests share.)

mod common;

use std::time::Duration;

#[actix_rt::test]
async fn a_broker_restart_under_load_loses_no_acknowledged_event() {
    let report = common::faults::restart_under_load("kafka", Duration::from_secs(3)).await;
    assert!(report.retries > 0, "the restart happened during the traffic: {}", report.summary());
}
