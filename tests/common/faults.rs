//! Stop a shared service in the middle of simulated traffic, bring it back, and check that
//! every acknowledged event reached every read model exactly once.

use super::services::{services, RestartOnDrop, TestServices};
use super::*;
use gamemetrics::platform::Platform;
use gamemetrics::simulate::{self, SimulationReport};

/// Runs all roles in-process on production services, sends 500 players' events at 2,000
/// events/s, stops `service` 2 s in for `down_for`, then compares the read models.
pub async fn restart_under_load(service: &'static str, down_for: Duration) -> SimulationReport {
    // The roles' warnings (and the actors' and consumers' partition moves) go to the test's
    // captured output, which cargo prints when the test fails.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn,gm_actors=info,gm_kafka=info,gm_projections=info")
        .try_init();
    let test_services = TestServices::create().await;
    let dir = tempfile::tempdir().unwrap();
    let config = test_services.config(dir.path());
    let app = Platform::start_on(&config, std::net::TcpListener::bind("127.0.0.1:0").unwrap()).await.unwrap();

    let mut options = sim_options(&app.url(), 500);
    options.rate = 2000.0;
    options.retry_for = Duration::from_secs(180);
    let plan = simulate::plan(&options, chrono::Utc::now());
    let planned = plan.len();
    let traffic = actix_rt::spawn(simulate::send(options, plan));
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    {
        let _restart = RestartOnDrop(service);
        services(&["down", service]);
        actix_rt::time::sleep(down_for).await;
    }
    let report = traffic.await.unwrap();
    assert_eq!(report.accepted.len(), planned, "{}", report.summary());

    let expected = Expected::from_events(&report.accepted);
    if let Err(e) = eventually(Duration::from_secs(240), || compare_read_models(app.url(), &expected, 60)).await {
        // Which consumer is behind, failing or stuck: the roles' own figures (every series
        // but histogram buckets; /metrics wants the metrics token).
        let metrics = match awc::Client::default()
            .get(format!("{}/metrics", app.url()))
            .insert_header(("Authorization", format!("Bearer {}", super::METRICS_TOKEN)))
            .send()
            .await
        {
            Ok(mut response) => response
                .body()
                .limit(8 << 20)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|e| format!("(reading /metrics: {e})")),
            Err(e) => format!("(GET /metrics: {e})"),
        };
        let lines: Vec<&str> = metrics
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains("_bucket{") && !l.contains("http_"))
            .collect();
        panic!("{e}\nroles' metrics:\n{}", lines.join("\n"));
    }
    each_acknowledged_event_once(app.backends.log.as_ref(), &report.accepted).await.unwrap();
    app.stop().await;
    test_services.drop_database().await;
    report
}
