//! The end-to-end suite of the embedded default, on the production adapters: Kafka
//! (transactions, consumer groups), PostgreSQL (read models, snapshots, checkpoints) and
//! Redis (query cache), with the same independent counts.

mod common;

use common::services::TestServices;
use common::*;
use gamemetrics::platform::Platform;
use gamemetrics::simulate;
use gm_projections::ProjectionName;
use std::net::TcpListener;
use std::time::Duration;

async fn spawn_production_app(services: &TestServices, dir: &std::path::Path) -> Platform {
    let config = services.config(dir);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    Platform::start_on(&config, listener).await.expect("platform starts on Kafka, PostgreSQL and Redis")
}

#[actix_rt::test]
async fn a_simulated_day_through_kafka_postgres_and_redis_matches_independent_counts() {
    let services = TestServices::create().await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_production_app(&services, dir.path()).await;
    let report = simulate::run(sim_options(&app.url(), 1000)).await;
    assert_eq!((report.rejected, report.unsent), (0, 0), "{}", report.summary());
    let expected = Expected::from_events(&report.accepted);
    eventually(Duration::from_secs(180), || compare_read_models(app.url(), &expected, 50)).await.unwrap();
    let (status, ready) = get_json(&format!("{}/health/ready", app.url())).await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")), "{ready}");
    app.stop().await;
    services.drop_database().await;
}

#[actix_rt::test]
async fn resubmitted_event_ids_are_counted_once_on_kafka() {
    let services = TestServices::create().await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_production_app(&services, dir.path()).await;
    let options = sim_options(&app.url(), 60);
    let plan = simulate::plan(&options, chrono::Utc::now());
    let first = simulate::send(options.clone(), plan.clone()).await;
    let second = simulate::send(options, plan).await;
    assert_eq!(first.accepted.len(), second.accepted.len());
    let expected = Expected::from_events(&first.accepted);
    eventually(Duration::from_secs(120), || compare_read_models(app.url(), &expected, 60)).await.unwrap();
    app.stop().await;
    services.drop_database().await;
}

#[actix_rt::test]
async fn rebuilding_each_projection_on_postgres_gives_the_same_read_models() {
    let services = TestServices::create().await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_production_app(&services, dir.path()).await;
    let report = simulate::run(sim_options(&app.url(), 150)).await;
    let expected = Expected::from_events(&report.accepted);
    eventually(Duration::from_secs(120), || compare_read_models(app.url(), &expected, 30)).await.unwrap();
    for name in ProjectionName::ALL {
        gm_projections::worker::rebuild(
            name,
            app.backends.log.clone(),
            app.backends.read_models.clone(),
            Some(app.backends.privacy.clone()),
            app.metrics.clone(),
            |_, _| {},
        )
        .await
        .unwrap_or_else(|e| panic!("rebuild {name}: {e}"));
        // The cache may hold the previous answer for its short TTL.
        eventually(Duration::from_secs(10), || compare_read_models(app.url(), &expected, 30))
            .await
            .unwrap_or_else(|e| panic!("after rebuilding {name}: {e}"));
    }
    app.stop().await;
    services.drop_database().await;
}
