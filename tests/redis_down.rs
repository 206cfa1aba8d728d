//! Stop Redis: every query still answers correctly (from PostgreSQL), and /health/ready
//! says the cache is degraded while staying ready.
//! (A test binary of its own: it stops a service the other tests share.)

mod common;

use common::services::{services, RestartOnDrop, TestServices};
use common::*;
use gamemetrics::platform::Platform;
use gamemetrics::simulate;
use std::time::Duration;

#[actix_rt::test]
async fn with_redis_down_queries_stay_correct_and_readiness_says_degraded() {
    let services_ = TestServices::create().await;
    let dir = tempfile::tempdir().unwrap();
    let config = services_.config(dir.path());
    let app = Platform::start_on(&config, std::net::TcpListener::bind("127.0.0.1:0").unwrap()).await.unwrap();
    let report = simulate::run(sim_options(&app.url(), 200)).await;
    let expected = Expected::from_events(&report.accepted);
    eventually(Duration::from_secs(120), || compare_read_models(app.url(), &expected, 40)).await.unwrap();

    let _restart = RestartOnDrop("redis");
    services(&["down", "redis"]);
    eventually(Duration::from_secs(20), || {
        let url = app.url();
        async move {
            let (status, ready) = get_json(&format!("{url}/health/ready")).await;
            match (status, ready["status"].as_str()) {
                (200, Some("degraded")) if ready["degraded"][0] == "cache" => Ok(()),
                _ => Err(format!("{status} {ready}")),
            }
        }
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    compare_read_models(app.url(), &expected, 40).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "queries stay fast without Redis: {:?}", started.elapsed());
    app.stop().await;
    services_.drop_database().await;
}
