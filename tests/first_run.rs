//! A newcomer's first run of the binary: a bad setting stops it with one clear line (no
//! backtrace unless asked for), and a good start says where it listens, with the development
//! credentials and two curl commands that work as printed.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The binary with none of the test environment's `GM_*` or backtrace settings: what a
/// newcomer runs, plus `env`.
fn gamemetrics(data_dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gamemetrics"));
    for (name, _) in std::env::vars() {
        if name.starts_with("GM_") || name.starts_with("RUST_") {
            command.env_remove(name);
        }
    }
    command.env("GM_DATA_DIR", data_dir).envs(env.iter().copied()).stdin(Stdio::null());
    command
}

/// Exit success and stderr of a run that must stop at start.
fn stopped(env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = gamemetrics(dir.path(), env).output().expect("run the gamemetrics binary");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

const SHORT_KEY: &str = "error: configuration setting `api_keys`: the key of demo is shorter than 8 characters\n";

#[test]
fn a_configuration_error_is_one_clear_line_without_a_backtrace() {
    // Unset, and `RUST_BACKTRACE=1` as images set it for every program: one line.
    for backtrace in [None, Some("1"), Some("0")] {
        let mut env = vec![("GM_API_KEYS", "demo=short")];
        env.extend(backtrace.map(|b| ("RUST_BACKTRACE", b)));
        let (success, stderr) = stopped(&env);
        assert!(!success, "a bad setting must fail the start");
        assert_eq!(stderr, SHORT_KEY, "RUST_BACKTRACE={backtrace:?}");
    }
    // Asked for: the same line, then the backtrace.
    let (success, stderr) = stopped(&[("GM_API_KEYS", "demo=short"), ("RUST_BACKTRACE", "full")]);
    assert!(!success);
    assert!(stderr.starts_with(SHORT_KEY), "{stderr}");
    assert!(stderr.contains("stack backtrace:"), "{stderr}");

    // Another setting: the namespace takes its separator from the platform.
    let (success, stderr) = stopped(&[("GM_LOG__NAMESPACE", "sbs."), ("RUST_BACKTRACE", "1")]);
    assert!(!success);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: configuration setting `log.namespace`: 'sbs.'"), "{stderr}");
    assert!(stderr.contains("sbs.player.events.raw"), "{stderr}");
}

/// `sh -c script`, its stdout.
fn sh(script: &str) -> String {
    let output = Command::new("sh").arg("-c").arg(script).output().expect("run sh");
    assert!(output.status.success(), "{script}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_first_run_prints_the_url_the_development_credentials_and_commands_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = gamemetrics(dir.path(), &[("GM_HTTP__BIND", &format!("127.0.0.1:{port}")), ("RUST_LOG", "warn")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the gamemetrics binary");
    let stderr = server.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut banner = String::new();
    while !banner.contains("Ctrl-C stops.") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => banner.push_str(&format!("{line}\n")),
            Err(e) => {
                let _ = server.kill();
                panic!("no banner ({e}); stderr so far:\n{banner}");
            }
        }
    }

    assert!(banner.contains(&format!("GameMetrics is listening on {url} (embedded")), "{banner}");
    assert!(banner.contains("game demo, API key (ingest only): demo-key-0001"), "{banner}");
    assert!(banner
        .lines()
        .any(|l| l.starts_with("  analyst token (reads): ") && l.ends_with(" demo-analyst-token-0001")));
    assert!(banner.contains(&format!("The web console: {url}/ (one-click development sign-in)")), "{banner}");

    // The commands, as printed, against the running platform.
    let send = banner.split("Send an event:\n").nth(1).and_then(|rest| rest.split("Read it back").next()).unwrap();
    let read = banner.split("once the projections applied it):\n").nth(1).and_then(|r| r.lines().next()).unwrap();
    let console = sh(&format!("curl -s {url}/"));
    assert!(console.contains("<title>") && console.contains("/console/app.js"), "the console at {url}/:\n{console}");
    let answer = sh(send);
    assert!(answer.contains("\"accepted\":1"), "{send}\n→ {answer}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let profile = sh(read);
        if profile.contains("\"player_id\":\"alice\"") && profile.contains("\"game_id\":\"demo\"") {
            break;
        }
        assert!(Instant::now() < deadline, "{read}\n→ {profile}");
        std::thread::sleep(Duration::from_millis(200));
    }
    server.kill().unwrap();
    server.wait().unwrap();
}
