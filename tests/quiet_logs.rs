//! Logs that tell the truth (issue 17, item 10): the production roles, idle and under a little
//! load, log no line at ERROR. What librdkafka reports as a matter of course (end of partition,
//! an idle connection closed) is not an error; before, the projections role logged PartitionEOF
//! ("Fetch from broker 1 reached end of partition") at ERROR many times a minute.

mod common;

use common::services::{self, Role, TestServices};
use common::*;
use gamemetrics::simulate;
use std::path::Path;
use std::time::Duration;

/// At info, as an operator runs them: librdkafka's reports go through the same filter. The
/// periodic checks run every second or so instead of every 5-30 s, so that a short idle window
/// sees each of them many times: readiness probes (each reads every partition to its end), the
/// consumers' stall judgement and the actors' stall check.
fn logged(logs: &Path, name: &str) -> impl FnOnce(&mut std::process::Command) {
    let redirect = services::logged_with(logs, name, "info");
    move |command: &mut std::process::Command| {
        command
            .env("GM_HEALTH__PROBE_INTERVAL_MS", "1000")
            .env("GM_HEALTH__CONSUMER_STALL_MS", "2000")
            .env("GM_ACTORS__STALL_AFTER_MS", "5000");
        redirect(command);
    }
}

/// Long enough for every periodic check above to run several times.
const IDLE: Duration = Duration::from_secs(12);

/// Every ERROR line of every role's log so far, with the role's name.
fn errors(logs: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(logs).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        out.extend(text.lines().filter(|l| l.contains("ERROR")).map(|l| format!("{name}: {l}")));
    }
    out
}

/// How many lines the roles logged, for the record (and to show the logs were written).
fn lines(logs: &Path) -> usize {
    std::fs::read_dir(logs)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default().lines().count())
        .sum()
}

#[actix_rt::test]
async fn the_production_roles_log_no_error_idle_or_under_a_little_load() {
    let services = TestServices::create().await;
    let logs = tempfile::tempdir().unwrap();
    let _show = ShowLogsOnPanic(logs.path().to_path_buf());
    let keys = format!("{GAME}={KEY}");
    let gateway = Role::start_with("gateway", &services, &keys, logged(logs.path(), "gateway"));
    let actors = Role::start_with("actors", &services, &keys, logged(logs.path(), "actors"));
    let projections = Role::start_with("projections", &services, &keys, logged(logs.path(), "projections"));
    for role in [&gateway, &actors, &projections] {
        role.wait_ready().await;
    }

    // Idle: consumers at the end of empty partitions, the stall checks running.
    actix_rt::time::sleep(IDLE).await;
    let idle = errors(logs.path());

    // A little load, then idle again with every partition read to its end (transaction
    // markers past the last record: what the projections' stall check reads to the end).
    let report = simulate::run(sim_options(&gateway.url(), 60)).await;
    assert_eq!((report.rejected, report.unsent), (0, 0), "{}", report.summary());
    let expected = Expected::from_events(&report.accepted);
    eventually(Duration::from_secs(120), || compare_read_models(gateway.url(), &expected, 20)).await.unwrap();
    actix_rt::time::sleep(IDLE).await;
    let all = errors(logs.path());
    let logged = lines(logs.path());
    eprintln!("{logged} log lines, {} at ERROR ({} while idle)", all.len(), idle.len());
    assert!(logged > 0, "the roles' logs were written");
    assert!(all.is_empty(), "{} ERROR lines on a quiet platform:\n{}", all.len(), all.join("\n"));
    services.drop_database().await;
}
