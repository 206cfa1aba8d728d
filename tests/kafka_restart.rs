//! Restart the Kafka broker under load: clients see errors or retries, never a false 202,
//! and every acknowledged event reaches every read model exactly once.
//! (A test binary of its own: it stops a service the other tests share.)

mod common;

use common::services::{services, RestartOnDrop, TestServices};
use common::*;
use gamemetrics::platform::Platform;
use gamemetrics::simulate;
use std::time::Duration;

#[actix_rt::test]
async fn a_broker_restart_under_load_loses_no_acknowledged_event() {
    let services_ = TestServices::create().await;
    let dir = tempfile::tempdir().unwrap();
    let config = services_.config(dir.path());
    let app = Platform::start_on(&config, std::net::TcpListener::bind("127.0.0.1:0").unwrap()).await.unwrap();

    let mut options = sim_options(&app.url(), 500);
    options.rate = 2000.0;
    options.retry_for = Duration::from_secs(180);
    let plan = simulate::plan(&options, chrono::Utc::now());
    let planned = plan.len();
    let traffic = actix_rt::spawn(simulate::send(options, plan));
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    {
        let _restart = RestartOnDrop("kafka");
        services(&["down", "kafka"]);
        actix_rt::time::sleep(Duration::from_secs(3)).await;
    }
    let report = traffic.await.unwrap();
    assert_eq!(report.accepted.len(), planned, "{}", report.summary());
    assert!(report.retries > 0, "the restart happened during the traffic: {}", report.summary());

    let expected = Expected::from_events(&report.accepted);
    eventually(Duration::from_secs(240), || compare_read_models(app.url(), &expected, 60)).await.unwrap();
    app.stop().await;
    services_.drop_database().await;
}
