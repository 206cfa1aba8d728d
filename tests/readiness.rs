//! Readiness that tells the truth, per role: the gateway, actors and projections roles (each
//! a process of its own, here in one test process) answer `/health/ready` 503 naming Kafka
//! while the broker is down and PostgreSQL while the database is down, 200 again after each
//! comes back, and `/health/live` 200 throughout.
//! (A test binary of its own: it stops services the other tests share.)

mod common;

use common::services::{services, RestartOnDrop, TestServices};
use gamemetrics::platform::{Platform, Roles};
use serde_json::Value;
use std::time::{Duration, Instant};

const ROLES: [(&str, Roles); 3] =
    [("gateway", Roles::GATEWAY), ("actors", Roles::ACTORS), ("projections", Roles::PROJECTIONS)];

async fn get(url: &str) -> (u16, Value) {
    let client = awc::Client::builder().timeout(Duration::from_secs(5)).finish();
    match client.get(url).send().await {
        Ok(mut response) => {
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
        Err(e) => (0, Value::String(e.to_string())),
    }
}

/// Waits until every role answers `/health/ready` with `status`, `component` among the
/// components not ready (with a reason) for a 503; returns how long it took.
async fn until_every_role(apps: &[(&str, Platform)], status: u16, component: &str, within: Duration) -> Duration {
    let started = Instant::now();
    for (role, app) in apps {
        let url = format!("{}/health/ready", app.url());
        let last = loop {
            let (got, body) = get(&url).await;
            let names = body["not_ready"].as_array().is_some_and(|n| n.iter().any(|c| c == component));
            let has_reason = body["reasons"][component].as_str().is_some_and(|r| !r.is_empty());
            if got == status && (status == 200 || (names && has_reason)) {
                break None;
            }
            if started.elapsed() > within {
                break Some((got, body));
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        };
        if let Some((got, body)) = last {
            panic!("{role}: /health/ready still {got} {body} after {within:?}, expected {status} ({component})");
        }
        let (live, _) = get(&format!("{}/health/live", app.url())).await;
        assert_eq!(live, 200, "{role}: liveness does not depend on {component}");
    }
    started.elapsed()
}

#[actix_rt::test]
async fn every_role_is_not_ready_naming_kafka_then_postgres_while_each_is_down_and_ready_after() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn,gamemetrics::readiness=info").try_init();
    let test_services = TestServices::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_services.config(dir.path());
    // Short intervals so that each outage takes seconds.
    config.health.probe_interval_ms = 200;
    config.health.probe_timeout_ms = 1000;
    config.health.consumer_stall_ms = 3000;
    let mut apps = Vec::new();
    for (role, roles) in ROLES {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let app = Platform::start_roles(&config, listener, roles).await.unwrap_or_else(|e| panic!("{role}: {e:#}"));
        apps.push((role, app));
    }
    // Ready once the brokers and the database answer and each consumer owns its partitions.
    let took = until_every_role(&apps, 200, "", Duration::from_secs(60)).await;
    eprintln!("every role ready {took:?} after start");
    let (_, body) = get(&format!("{}/health/ready", apps[1].1.url())).await;
    assert_eq!(body["components"]["actors.consumer"], true, "{body}");
    assert_eq!(body["components"]["kafka"], true, "{body}");
    assert_eq!(body["components"]["postgres"], true, "{body}");

    for service in ["kafka", "postgres"] {
        {
            let _restart = RestartOnDrop(service);
            services(&["down", service]);
            let took = until_every_role(&apps, 503, service, Duration::from_secs(15)).await;
            eprintln!("{service} down: every role 503 naming it within {took:?}");
            // The gauge the alert reads says the same (the worker roles' /metrics is open).
            let metrics = common::services::scrape(&apps[2].1.url()).await;
            assert!(metrics.contains(&format!("gamemetrics_ready{{component=\"{service}\"}} 0")), "{metrics}");
        }
        let took = until_every_role(&apps, 200, service, Duration::from_secs(90)).await;
        eprintln!("{service} back: every role 200 within {took:?}");
    }
    for (_, app) in apps {
        app.stop().await;
    }
    test_services.drop_database().await;
}
