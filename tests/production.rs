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
    // Readiness is judged every `health.probe_interval_ms` (5 s), not at the request: right
    // after the load its latest judgement may be older than the read models' last batch.
    let ready_url = format!("{}/health/ready", app.url());
    eventually(Duration::from_secs(30), || async {
        let (status, ready) = get_json(&ready_url).await;
        match (status, ready["status"].as_str()) {
            (200, Some("ready")) => Ok(()),
            _ => Err(format!("{status} {ready}")),
        }
    })
    .await
    .unwrap();
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
        rebuild(&app, name).await;
        // The cache may hold the previous answer for its short TTL.
        eventually(Duration::from_secs(10), || compare_read_models(app.url(), &expected, 30))
            .await
            .unwrap_or_else(|e| panic!("after rebuilding {name}: {e}"));
    }
    app.stop().await;
    services.drop_database().await;
}

/// `gamemetrics <role>` in production mode with `env`, without any service (the refusal comes
/// before anything is opened): whether it exited within 20 s with a failure, and what it wrote
/// to stderr by then (a process still starting is killed).
fn start_refused(role: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gamemetrics"));
    command
        .arg(role)
        .env("GM_MODE", "production")
        .env("GM_DATA_DIR", dir.path())
        .env("GM_HTTP__BIND", "127.0.0.1:0")
        // Unreachable on purpose: a start that got past the check would fail on them, later
        // and with another message.
        .env("GM_KAFKA__BROKERS", "127.0.0.1:1")
        .env("GM_POSTGRES__URL", "postgres://nobody@127.0.0.1:1/none")
        .env("GM_PRIVACY__MASTER_KEY", TEST_MASTER_KEY)
        .env("RUST_BACKTRACE", "1")
        .env_remove("GM_API_KEYS")
        .env_remove("GM_API_KEYS_FILE")
        .env_remove("GM_AUTH__DEV_ANALYST_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("run gamemetrics");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let failed = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break !status.success();
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (failed, std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default())
}

/// Issue 17, item 2: a production gateway (and `serve`) refuses to start while a development
/// key or token is configured, with one line naming the setting.
#[test]
fn production_refuses_to_start_with_development_credentials_naming_the_setting() {
    let keys_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys_file.path(), "space-race=our-own-key-0001\ndemo=demo-key-0001\n").unwrap();
    let keys_file = keys_file.path().display().to_string();
    // (role, environment, the setting named, a word of the reason)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case<'_>; 5] = [
        ("gateway", &[], "api_keys", "GM_API_KEYS"),
        ("serve", &[], "api_keys", "GM_API_KEYS"),
        ("gateway", &[("GM_API_KEYS", "space-race=our-own-key-0001,sim-2=sim-key-0002")], "api_keys", "sim-key-0002"),
        ("gateway", &[("GM_API_KEYS_FILE", keys_file.as_str())], "api_keys_file", "demo-key-0001"),
        (
            "gateway",
            &[("GM_API_KEYS", "space-race=our-own-key-0001"), ("GM_AUTH__DEV_ANALYST_TOKEN", "our-dev-token-00001")],
            "auth.dev_analyst_token",
            "GM_AUTH__DEV_ANALYST_TOKEN",
        ),
    ];
    for (role, env, setting, named) in cases {
        let (refused, stderr) = start_refused(role, env);
        assert!(refused, "{role} {env:?} was not refused: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{role} {env:?}: one line, no backtrace:\n{stderr}");
        assert!(
            lines[0].starts_with(&format!("error: configuration setting `{setting}`: ")) && lines[0].contains(named),
            "{role} {env:?}: {stderr}"
        );
    }
    // With the deployment's own keys it gets past the check (and fails on the unreachable
    // services instead).
    let (_, stderr) = start_refused("gateway", &[("GM_API_KEYS", "space-race=our-own-key-0001")]);
    assert!(!stderr.contains("configuration setting"), "{stderr}");
    // The other roles authenticate nothing: no keys needed.
    let (_, stderr) = start_refused("actors", &[]);
    assert!(!stderr.contains("api_keys"), "{stderr}");
}
