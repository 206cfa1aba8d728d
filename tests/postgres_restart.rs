//! Restart PostgreSQL under load: projections and actors retry, resume from their
//! checkpoints and snapshots, and count nothing twice.
//! (A test binary of its own: it stops a service the other tests share.)

mod common;

use common::services::{services, RestartOnDrop, TestServices};
use common::*;
use gamemetrics::platform::Platform;
use gamemetrics::simulate;
use std::time::Duration;

#[actix_rt::test]
async fn a_postgres_restart_under_load_double_counts_nothing() {
    let services_ = TestServices::create().await;
    let dir = tempfile::tempdir().unwrap();
    let config = services_.config(dir.path());
    let app = Platform::start_on(&config, std::net::TcpListener::bind("127.0.0.1:0").unwrap()).await.unwrap();

    let mut options = sim_options(&app.url(), 500);
    options.rate = 2000.0;
    let plan = simulate::plan(&options, chrono::Utc::now());
    let planned = plan.len();
    let traffic = actix_rt::spawn(simulate::send(options, plan));
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    {
        let _restart = RestartOnDrop("postgres");
        services(&["down", "postgres"]);
        actix_rt::time::sleep(Duration::from_secs(2)).await;
    }
    let report = traffic.await.unwrap();
    assert_eq!(report.accepted.len(), planned, "{}", report.summary());

    let expected = Expected::from_events(&report.accepted);
    eventually(Duration::from_secs(240), || compare_read_models(app.url(), &expected, 60)).await.unwrap();
    app.stop().await;
    services_.drop_database().await;
}
