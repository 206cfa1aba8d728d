//! Restart the Kafka broker under load: clients see errors, retries or a wait, never a false
//! 202, and every acknowledged event reaches every read model exactly once.
//! (A test binary of its own: it stops a service the other tests share.)

mod common;

use std::time::Duration;

#[actix_rt::test]
async fn a_broker_restart_under_load_loses_no_acknowledged_event() {
    let down_for = Duration::from_secs(3);
    let report = common::faults::restart_under_load("kafka", down_for).await;
    // The producer either fails a request (the simulator retries it) or holds it until the
    // broker is back: either way the clients felt the restart, so it happened mid-traffic.
    let longest_ms = report.latency_percentile(1.0);
    assert!(
        report.retries > 0 || longest_ms >= down_for.as_millis() as f64 * 0.9,
        "the restart happened during the traffic: {}",
        report.summary()
    );
}
