//! Kafka failover drill: MirrorMaker 2 (identity replication policy) mirrors the primary
//! cluster into a second local Kafka cluster while the roles run on the primary under
//! simulated traffic. Then a planned failover: the roles stop, `gamemetrics kafka-failover`
//! translates every position (the actors' group offsets, the snapshot watermarks, the
//! projection checkpoints) to the mirror's offsets, and the roles start again on the mirror
//! and take the rest of the traffic. Every read model must then equal the figures computed
//! independently from all acknowledged events: nothing lost, nothing counted twice.
//! `scripts/kafka-failover-drill` runs a longer one (GM_FAILOVER_* variables below).

mod common;

use chrono::Utc;
use common::services::{free_port, Role, TestServices};
use common::*;
use gamemetrics::simulate;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A second Kafka cluster (KRaft, one node) from scripts/services, with its own state
/// directory and ports, sharing the jars already fetched; stopped when dropped.
struct MirrorKafka {
    dir: tempfile::TempDir,
    port: u16,
    controller_port: u16,
}

impl MirrorKafka {
    fn services(&self, args: &[&str]) -> std::process::Output {
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services"))
            .args(args)
            .env("GM_SERVICES_DIR", self.dir.path())
            .env("GM_KAFKA_PORT", self.port.to_string())
            .env("GM_KAFKA_CONTROLLER_PORT", self.controller_port.to_string())
            .output()
            .expect("run scripts/services")
    }

    fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("gm-mirror-").tempdir_in("/var/tmp").unwrap();
        std::fs::create_dir_all(dir.path().join("kafka")).unwrap();
        let libs = required_libs();
        std::os::unix::fs::symlink(&libs, dir.path().join("kafka/libs")).unwrap();
        let mirror = Self { dir, port: free_port(), controller_port: free_port() };
        let out = mirror.services(&["up", "kafka"]);
        assert!(
            out.status.success(),
            "the mirror Kafka did not start:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        mirror
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for MirrorKafka {
    fn drop(&mut self) {
        let _ = self.services(&["down", "kafka"]);
    }
}

fn required_libs() -> PathBuf {
    PathBuf::from(common::services::required_env("GM_KAFKA_LIBS"))
}

/// MirrorMaker 2 in dedicated mode, primary → mirror, for the test's namespace only.
struct MirrorMaker {
    child: Child,
}

impl MirrorMaker {
    fn start(dir: &Path, primary: &str, mirror: &str, namespace: &str, log: &Path) -> Self {
        let config = dir.join("mm2.properties");
        let topics = format!("{}[.].*", regex_escape(namespace));
        std::fs::write(
            &config,
            format!(
                "clusters = primary, mirror
primary.bootstrap.servers = {primary}
mirror.bootstrap.servers = {mirror}
primary->mirror.enabled = true
mirror->primary.enabled = false
primary->mirror.topics = {topics}
# Same topic names on the mirror, so the roles run there unchanged.
replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy
# Only committed records: an aborted transaction of the actors must not be copied.
primary.consumer.isolation.level = read_committed
primary->mirror.emit.heartbeats.enabled = false
primary->mirror.sync.group.offsets.enabled = false
sync.topic.acls.enabled = false
refresh.topics.interval.seconds = 1
refresh.groups.interval.seconds = 600
tasks.max = 2
replication.factor = 1
offset-syncs.topic.replication.factor = 1
checkpoints.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
offset.storage.replication.factor = 1
status.storage.replication.factor = 1
config.storage.replication.factor = 1
"
            ),
        )
        .unwrap();
        let out = std::fs::File::create(log).unwrap();
        let java = std::env::var("JAVA_HOME").map(|h| format!("{h}/bin/java")).unwrap_or_else(|_| "java".into());
        let child = Command::new(java)
            .args(["-Xmx512m", "-Djava.awt.headless=true", "-cp"])
            .arg(format!("{}/*", required_libs().display()))
            .arg("org.apache.kafka.connect.mirror.MirrorMaker")
            .arg(&config)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start MirrorMaker 2 (java)");
        Self { child }
    }
}

impl Drop for MirrorMaker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A regular expression matching `s` literally, without backslashes (which a Java
/// properties file would eat): every other character in a class of its own.
fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c.to_string() } else { format!("[{c}]") })
        .collect()
}

/// `gamemetrics kafka-failover` with the test's primary settings: success, its JSON report
/// (stdout), everything it printed.
fn failover(services: &TestServices, to: &str, dry_run: bool) -> (bool, String, String) {
    let bin = std::env::var("GM_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gamemetrics").into());
    let mut args = vec!["kafka-failover", "--to-brokers", to];
    if dry_run {
        args.push("--dry-run");
    }
    let out = Command::new(bin)
        .args(&args)
        .envs(services.env())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run gamemetrics kafka-failover");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.success(), stdout.clone(), format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
}

#[actix_rt::test]
async fn a_planned_failover_to_the_mirror_cluster_loses_and_doubles_nothing() {
    let players: usize = env_or("GM_FAILOVER_PLAYERS", 200);
    let rate: f64 = env_or("GM_FAILOVER_RATE", 1500.0);

    let services = TestServices::create().await;
    let mirror = MirrorKafka::start();
    let logs = tempfile::Builder::new().prefix("gm-failover-logs-").tempdir_in("/var/tmp").unwrap();
    let _show_logs = ShowLogsOnPanic(logs.path().to_path_buf());
    let keys = format!("{GAME}={KEY}");
    let logged = |role: &'static str, file: &str, brokers: Option<String>| {
        let file = std::fs::File::options().create(true).append(true).open(logs.path().join(file)).unwrap();
        Role::start_with(role, &services, &keys, move |c| {
            c.env("RUST_LOG", "info").stderr(file);
            if let Some(brokers) = brokers {
                c.env("GM_KAFKA__BROKERS", brokers);
            }
        })
    };

    // Phase 1 on the primary. The roles create the namespace's topics; MirrorMaker picks
    // them up (it refreshes its topic list every second).
    let mut gateway = logged("gateway", "gateway-primary.log", None);
    let mut actors = logged("actors", "actors-primary.log", None);
    let mut projections = logged("projections", "projections-primary.log", None);
    for role in [&gateway, &actors, &projections] {
        role.wait_ready().await;
    }
    let _mm2 = MirrorMaker::start(
        mirror.dir.path(),
        &services.kafka_brokers,
        &mirror.brokers(),
        &services.namespace,
        &logs.path().join("mirrormaker.log"),
    );

    // One plan, cut in two at a point in time: each player's life continues on the mirror.
    let mut options = sim_options(&gateway.url(), players);
    options.rate = rate;
    let plan = simulate::plan(&options, Utc::now());
    let mut times: Vec<_> = plan.iter().map(|e| e.timestamp).collect();
    times.sort();
    let cut = times[times.len() / 2];
    let (before, after): (Vec<_>, Vec<_>) = plan.into_iter().partition(|e| e.timestamp < cut);
    let first = simulate::send(options.clone(), before.clone()).await;
    assert_eq!(first.accepted.len(), before.len(), "{}", first.summary());

    // The planned failover: ingest stops, the consumers stop where they are (gracefully or
    // not: positions are transactional), and once MirrorMaker has copied everything the
    // positions are translated.
    let stopped = Instant::now();
    gateway.kill();
    actors.kill();
    projections.kill();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last = String::new();
    loop {
        let (ok, _, out) = failover(&services, &mirror.brokers(), true);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the mirror did not catch up within 180 s; last attempt:\n{out}\n{last}");
        last = out;
        actix_rt::time::sleep(Duration::from_secs(1)).await;
    }
    let mirrored = stopped.elapsed();
    let (ok, report, out) = failover(&services, &mirror.brokers(), false);
    assert!(ok, "kafka-failover failed:\n{out}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report}"));
    let moved = report["moved"].as_array().unwrap();
    assert!(
        moved.iter().any(|m| m[2].as_str().unwrap().starts_with("group")),
        "the actors' group offsets were translated: {report}"
    );
    assert!(
        moved.iter().any(|m| m[2].as_str().unwrap().starts_with("checkpoint")),
        "the projection checkpoints were translated: {report}"
    );
    // A second run would translate mirror offsets as primary ones: refused.
    let (again, _, out) = failover(&services, &mirror.brokers(), false);
    assert!(!again && out.contains("already done"), "a second failover must be refused:\n{out}");

    // Phase 2 on the mirror.
    let mirror_brokers = Some(mirror.brokers());
    let gateway = logged("gateway", "gateway-mirror.log", mirror_brokers.clone());
    let actors = logged("actors", "actors-mirror.log", mirror_brokers.clone());
    let projections = logged("projections", "projections-mirror.log", mirror_brokers);
    for role in [&gateway, &actors, &projections] {
        role.wait_ready().await;
    }
    let failed_over = stopped.elapsed();
    options.url = gateway.url();
    let second = simulate::send(options, after.clone()).await;
    assert_eq!(second.accepted.len(), after.len(), "{}", second.summary());

    let mut accepted = first.accepted;
    accepted.extend(second.accepted);
    let expected = Expected::from_events(&accepted);
    eventually(Duration::from_secs(240), || compare_read_models(gateway.url(), &expected, 40)).await.unwrap();
    eprintln!(
        "kafka-failover drill: players={players} events={} ({} on the primary, {} on the mirror); mirror caught up \
         {:.1}s after the stop, roles ready on the mirror {:.1}s after the stop; {} positions translated; read models \
         exact {:.1}s after the stop",
        accepted.len(),
        before.len(),
        after.len(),
        mirrored.as_secs_f64(),
        failed_over.as_secs_f64(),
        moved.len(),
        stopped.elapsed().as_secs_f64()
    );
    drop((gateway, actors, projections));
    services.drop_database().await;
}
