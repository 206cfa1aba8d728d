//! Kill the real binary with SIGKILL in the middle of traffic, restart it, finish: every
//! read model equals the independent counts — nothing acknowledged is lost, nothing counted
//! twice (the simulator retries unacknowledged batches with the same event ids).

mod common;

use common::*;
use gamemetrics::simulate;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_server(data_dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gamemetrics"))
        .env("GM_DATA_DIR", data_dir)
        .env("GM_HTTP__BIND", format!("127.0.0.1:{port}"))
        .env("GM_ACTORS__SNAPSHOT_EVERY_EVENTS", "300")
        .env("GM_ACTORS__SNAPSHOT_EVERY_MS", "300")
        .env("RUST_LOG", "warn")
        .envs(auth_env())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the gamemetrics binary")
}

async fn wait_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = awc::Client::default();
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/health/ready")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} did not become ready");
}

#[actix_rt::test]
async fn sigkill_mid_traffic_loses_nothing_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start_server(dir.path(), port);
    wait_ready(&base).await;

    let mut options = sim_options(&base, 400);
    options.rate = 2500.0;
    options.retry_for = Duration::from_secs(90);
    let plan = simulate::plan(&options, chrono::Utc::now());
    let planned = plan.len();
    let traffic = actix_rt::spawn(simulate::send(options, plan));

    // Two SIGKILLs at different points of the traffic, each followed by a restart.
    let mut kills = 0;
    for pause in [Duration::from_millis(900), Duration::from_millis(1100)] {
        actix_rt::time::sleep(pause).await;
        server.kill().expect("SIGKILL the server");
        server.wait().unwrap();
        // Stay down longer than the simulator's gap between requests (a restart takes ~30 ms
        // on an idle machine), so the kill surely catches traffic.
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        kills += 1;
        server = start_server(dir.path(), port);
        wait_ready(&base).await;
    }
    let report = traffic.await.unwrap();
    assert_eq!(kills, 2);
    assert_eq!(report.unsent, 0, "every batch was eventually acknowledged: {}", report.summary());
    assert_eq!(report.rejected, 0, "{}", report.summary());
    assert_eq!(report.accepted.len(), planned, "{}", report.summary());
    assert!(report.retries > 0, "the kills happened during the traffic: {}", report.summary());

    let expected = Expected::from_events(&report.accepted);
    let result = eventually(Duration::from_secs(90), || compare_read_models(base.clone(), &expected, 80)).await;
    server.kill().unwrap();
    server.wait().unwrap();
    result.unwrap();
    // Event by event, from the server's own log file.
    let backends = gamemetrics::platform::Backends::open(&test_config(dir.path())).await.unwrap();
    each_acknowledged_event_once(backends.log.as_ref(), &report.accepted).await.unwrap();
}
