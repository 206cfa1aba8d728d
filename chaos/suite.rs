//! The local chaos suite (`chaos/run`): under simulated load, inject one fault per scenario,
//! then compare what the load generator had acknowledged with every read model.
//!
//! Each scenario gets a fresh database, topic namespace and Redis key prefix, and a
//! production-shaped deployment of child processes: one gateway, two actors and two
//! projections processes (so a consumer group always has a survivor). Faults:
//! - SIGKILL + restart of the gateway, of one actors and of one projections process
//!   (on the shared local services, which are never stopped);
//! - SIGSTOP of an actors process past the consumer session timeout, then SIGCONT;
//! - SIGKILL + restart of Kafka, PostgreSQL and Redis: the suite's OWN instances on other
//!   ports and another state directory (`chaos/run` starts them), never the shared ones;
//! - disk full: the embedded default (`gamemetrics serve`, SQLite log and store) on a small
//!   tmpfs that a ballast file fills until the kernel answers ENOSPC, then frees.
//!
//! After the fault the suite measures recovery: the time from the restart (SIGCONT, freed
//! space) until a probe event ingested from then on is visible in a read model. When the load
//! is over it waits for the read models to settle and counts, per read model, acknowledged
//! events missing (lost) and counted more than once (duplicated). It prints one table and
//! exits non-zero on any violation.
//!
//! `chaos/run` (short, as in CI) or `chaos/run --long`; `--only NAME[,NAME]` runs a subset.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use gamemetrics::simulate;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROBE_GAME: &str = "chaos-probe";
const PROBE_KEY: &str = "chaos-probe-key-0001";
/// Must exceed `kafka.consumer.session_timeout_ms` (10 s) for the group to evict the member.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
struct Profile {
    name: &'static str,
    players: usize,
    rate: f64,
    fault_after: Duration,
    down_for: Duration,
    stop_for: Duration,
    disk_full_for: Duration,
    settle: Duration,
}

const SHORT: Profile = Profile {
    name: "short",
    players: 800,
    rate: 1200.0,
    fault_after: Duration::from_secs(3),
    down_for: Duration::from_secs(1),
    stop_for: Duration::from_secs(15),
    disk_full_for: Duration::from_secs(4),
    settle: Duration::from_secs(180),
};

const LONG: Profile = Profile {
    name: "long",
    players: 10_000,
    rate: 3000.0,
    fault_after: Duration::from_secs(20),
    down_for: Duration::from_secs(5),
    stop_for: Duration::from_secs(30),
    disk_full_for: Duration::from_secs(20),
    settle: Duration::from_secs(600),
};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    KillGateway,
    KillActors,
    KillProjections,
    StopActors,
    KillKafka,
    KillPostgres,
    KillRedis,
    DiskFull,
}

impl Fault {
    const ALL: [Fault; 8] = [
        Fault::KillGateway,
        Fault::KillActors,
        Fault::KillProjections,
        Fault::StopActors,
        Fault::KillKafka,
        Fault::KillPostgres,
        Fault::KillRedis,
        Fault::DiskFull,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::KillGateway => "gateway",
            Fault::KillActors => "actors",
            Fault::KillProjections => "projections",
            Fault::StopActors => "rebalance",
            Fault::KillKafka => "kafka",
            Fault::KillPostgres => "postgres",
            Fault::KillRedis => "redis",
            Fault::DiskFull => "disk-full",
        }
    }

    fn label(self, p: &Profile) -> String {
        match self {
            Fault::KillGateway => "SIGKILL gateway".into(),
            Fault::KillActors => "SIGKILL 1 of 2 actors".into(),
            Fault::KillProjections => "SIGKILL 1 of 2 projections".into(),
            Fault::StopActors => format!("SIGSTOP actors {} s (rebalance)", p.stop_for.as_secs()),
            Fault::KillKafka => "SIGKILL Kafka broker".into(),
            Fault::KillPostgres => "SIGKILL PostgreSQL".into(),
            Fault::KillRedis => "SIGKILL Redis".into(),
            Fault::DiskFull => format!("disk full (tmpfs ENOSPC) {} s", p.disk_full_for.as_secs()),
        }
    }

    /// Service faults run on the suite's own instances; the others on the shared ones.
    fn dedicated(self) -> bool {
        matches!(self, Fault::KillKafka | Fault::KillPostgres | Fault::KillRedis)
    }
}

/// Kafka, PostgreSQL and Redis addresses of one set of services.
#[derive(Clone, Debug)]
struct Services {
    postgres_admin_url: String,
    kafka_brokers: String,
    redis_url: String,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the suite with chaos/run"))
}

impl Services {
    fn shared() -> Self {
        Self {
            postgres_admin_url: env("GM_POSTGRES_URL"),
            kafka_brokers: env("GM_KAFKA_BROKERS"),
            redis_url: env("GM_REDIS_URL"),
        }
    }
    fn dedicated() -> Self {
        Self {
            postgres_admin_url: env("CHAOS_POSTGRES_URL"),
            kafka_brokers: env("CHAOS_KAFKA_BROKERS"),
            redis_url: env("CHAOS_REDIS_URL"),
        }
    }
}

/// The suite's own services (`chaos/run` passes their state directory and ports): killed by
/// pid from their pidfiles, restarted with `scripts/services up` under the same settings.
struct Dedicated;

impl Dedicated {
    fn dir() -> PathBuf {
        PathBuf::from(env("CHAOS_SERVICES_DIR"))
    }

    fn pidfile(service: &str) -> PathBuf {
        let dir = Self::dir();
        match service {
            "kafka" => dir.join("kafka/kafka.pid"),
            "redis" => dir.join("redis/redis.pid"),
            // .services/postgres may be a symlink to a directory the postgres user can reach.
            _ => dir.join("postgres/data/postmaster.pid"),
        }
    }

    fn pid(service: &str) -> Result<u32, String> {
        let text = std::fs::read_to_string(Self::pidfile(service))
            .map_err(|e| format!("{service} pidfile {}: {e}", Self::pidfile(service).display()))?;
        text.lines().next().unwrap_or("").trim().parse().map_err(|e| format!("{service} pid: {e}"))
    }

    fn kill(service: &str) -> Result<(), String> {
        let pid = Self::pid(service)?;
        signal(pid, "KILL")?;
        // Wait for the process to be gone, so the restart does not find it alive.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn up(service: &str) -> Result<(), String> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services");
        let output = Command::new(script)
            .args(["up", service])
            .env("GM_SERVICES_DIR", Self::dir())
            .env("GM_PG_PORT", env("CHAOS_PG_PORT"))
            .env("GM_REDIS_PORT", env("CHAOS_REDIS_PORT"))
            .env("GM_KAFKA_PORT", env("CHAOS_KAFKA_PORT"))
            .env("GM_KAFKA_CONTROLLER_PORT", env("CHAOS_KAFKA_CONTROLLER_PORT"))
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("scripts/services up {service}: {e}"))?;
        if !output.status.success() {
            return Err(format!("scripts/services up {service}: {}", String::from_utf8_lossy(&output.stderr)));
        }
        Ok(())
    }
}

fn signal(pid: u32, sig: &str) -> Result<(), String> {
    let status = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        other => Err(format!("kill -{sig} {pid}: {other:?}")),
    }
}

/// One scenario's isolation on a set of services: database, namespace, key prefix.
struct Deployment {
    services: Services,
    postgres_url: String,
    database: String,
    namespace: String,
    redis_prefix: String,
}

impl Deployment {
    async fn create(services: Services) -> Result<Self, String> {
        use sqlx::Connection;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("gm_chaos_{}", &id[..16]);
        let mut admin = sqlx::PgConnection::connect(&services.postgres_admin_url)
            .await
            .map_err(|e| format!("PostgreSQL {}: {e}", services.postgres_admin_url))?;
        sqlx::query(&format!("CREATE DATABASE {database}")).execute(&mut admin).await.map_err(|e| e.to_string())?;
        let (base, _) = services.postgres_admin_url.rsplit_once('/').ok_or("postgres url without /database")?;
        let postgres_url = format!("{base}/{database}");
        let store = gm_postgres::PgStore::connect(&postgres_url, 2).await.map_err(|e| e.to_string())?;
        store.migrate().await.map_err(|e| e.to_string())?;
        Ok(Self {
            services,
            postgres_url,
            database,
            namespace: format!("chaos{}", &id[..10]),
            redis_prefix: format!("gm:chaos:{}:", &id[..10]),
        })
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = base_env();
        env.extend([
            ("GM_MODE".into(), "production".into()),
            ("GM_KAFKA__BROKERS".into(), self.services.kafka_brokers.clone()),
            ("GM_LOG__NAMESPACE".into(), self.namespace.clone()),
            ("GM_POSTGRES__URL".into(), self.postgres_url.clone()),
            ("GM_POSTGRES__MAX_CONNECTIONS".into(), "8".into()),
            ("GM_REDIS__URL".into(), self.services.redis_url.clone()),
            ("GM_REDIS__KEY_PREFIX".into(), self.redis_prefix.clone()),
            ("GM_REDIS__PROFILE_TTL_MS".into(), "1000".into()),
            ("GM_REDIS__RECENT_QUERY_TTL_MS".into(), "1000".into()),
        ]);
        env
    }

    async fn drop_database(&self) {
        use sqlx::Connection;
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.services.postgres_admin_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database))
                .execute(&mut admin)
                .await;
        }
    }
}

/// Settings every process of the suite shares, in either mode.
fn base_env() -> Vec<(String, String)> {
    let mut env = auth_env();
    env.extend([
        ("GM_API_KEYS".into(), format!("{GAME}={KEY},{PROBE_GAME}={PROBE_KEY}")),
        // Small snapshot intervals so that recovery from snapshots is exercised.
        ("GM_ACTORS__SNAPSHOT_EVERY_EVENTS".into(), "500".into()),
        ("GM_ACTORS__SNAPSHOT_EVERY_MS".into(), "500".into()),
        ("RUST_LOG".into(), "warn".into()),
    ]);
    env
}

/// A `gamemetrics` child process on a fixed port, so a restart keeps its address.
struct Proc {
    name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn new(name: &str, args: &[&str], env: Vec<(String, String)>, logs: &Path) -> Self {
        Self {
            name: name.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env,
            port: common::services::free_port(),
            log: logs.join(format!("{name}.log")),
            child: None,
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let child = Command::new(env!("CARGO_BIN_EXE_gamemetrics"))
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .env("GM_HTTP__BIND", format!("127.0.0.1:{}", self.port))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {}: {e}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILL (std's `Child::kill`) and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let client = awc::Client::default();
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/health/ready", self.url())).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("{} (port {}) not ready after {timeout:?}; see {}", self.name, self.port, self.log.display()))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A tmpfs of `size` mounted for the disk-full fault, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "gm-chaos-disk"])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mounting a {size} tmpfs at {} failed (the disk-full fault needs root / CAP_SYS_ADMIN): {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Writes a ballast file until the filesystem answers ENOSPC; returns the bytes written.
fn fill(path: &Path) -> Result<u64, String> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).map_err(|e| format!("ballast: {e}"))?;
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => return Err("ballast: write returned 0".into()),
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => {
                // Fill the last partial block too, byte-sized writes until nothing fits.
                while let Ok(n) = file.write(&chunk[..4096]) {
                    if n == 0 {
                        break;
                    }
                    written += n as u64;
                }
                let _ = file.sync_all();
                return Ok(written);
            }
            Err(e) => return Err(format!("ballast: expected ENOSPC, got {e}")),
        }
    }
}

struct Outcome {
    fault: String,
    acknowledged: usize,
    lost: u64,
    duplicated: u64,
    recovery: Option<f64>,
    retries: u64,
    problems: Vec<String>,
    notes: Vec<String>,
}

impl Outcome {
    fn violated(&self) -> bool {
        self.lost > 0 || self.duplicated > 0 || self.recovery.is_none() || !self.problems.is_empty()
    }
}

/// Time from `since` until an event ingested from then on shows in the player_profiles read
/// model (a game of its own, so the compared figures are not touched).
async fn probe(gateway: String, fault: Fault, since: Instant, timeout: Duration) -> Option<f64> {
    let player = format!("probe-{}-{}", fault.name(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let body = json!({"events": [{"type": "session_start", "player_id": player, "client_ts": now}]});
    let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
    let deadline = since + timeout;
    loop {
        if Instant::now() >= deadline {
            return None;
        }
        let sent = client
            .post(format!("{gateway}/v1/events"))
            .insert_header(("Authorization", format!("Bearer {PROBE_KEY}")))
            .insert_header(("Content-Type", "application/json"))
            .send_body(body.to_string())
            .await;
        if matches!(sent, Ok(ref r) if r.status().as_u16() == 202) {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    while Instant::now() < deadline {
        let (status, _) = get_json(&format!("{gateway}/v1/players/{PROBE_GAME}/{player}")).await;
        if status == 200 {
            return Some(since.elapsed().as_secs_f64());
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Per read model, acknowledged events missing (lost) and counted more than once
/// (duplicated), summed over the read models. DAU counts players, not events.
async fn count_differences(base: &str, expected: &Expected) -> Result<(u64, u64), String> {
    let mut lost = 0u64;
    let mut dup = 0u64;
    let mut add = |want: u64, got: u64| {
        lost += want.saturating_sub(got);
        dup += got.saturating_sub(want);
    };
    let (from, to) = (expected.first_day(), expected.last_day());
    let range = format!("from={from}&to={to}");

    for (player, want) in &expected.profiles {
        let (status, p) = get_json(&format!("{base}/v1/players/{GAME}/{player}")).await;
        let got = if status == 200 { p["events"].as_u64().unwrap_or(0) } else { 0 };
        add(want.0, got);
    }

    let (_, active) = get_json(&format!("{base}/v1/analytics/{GAME}/active-users?{range}")).await;
    let got: BTreeMap<String, u64> = active["days"]
        .as_array()
        .ok_or("active-users: no days")?
        .iter()
        .map(|d| (d["day"].as_str().unwrap_or("").to_string(), d["dau"].as_u64().unwrap_or(0)))
        .collect();
    for (day, want) in &expected.dau {
        add(*want, got.get(&day.to_string()).copied().unwrap_or(0));
    }

    let (_, revenue) = get_json(&format!("{base}/v1/analytics/{GAME}/revenue?{range}")).await;
    let mut got = BTreeMap::new();
    for d in revenue["days"].as_array().ok_or("revenue: no days")? {
        let key = (d["day"].as_str().unwrap_or("").to_string(), d["currency"].as_str().unwrap_or("").to_string());
        got.insert(key, d["purchases"].as_u64().unwrap_or(0));
    }
    for ((day, currency), (_, purchases)) in &expected.revenue {
        add(*purchases, got.get(&(day.to_string(), currency.clone())).copied().unwrap_or(0));
    }

    let (_, sessions) = get_json(&format!("{base}/v1/analytics/{GAME}/sessions?{range}")).await;
    let got: BTreeMap<String, u64> = sessions["days"]
        .as_array()
        .ok_or("sessions: no days")?
        .iter()
        .map(|d| (d["day"].as_str().unwrap_or("").to_string(), d["sessions_started"].as_u64().unwrap_or(0)))
        .collect();
    for (day, (started, _, _)) in &expected.sessions {
        add(*started, got.get(&day.to_string()).copied().unwrap_or(0));
    }

    let (_, funnel) = get_json(&format!("{base}/v1/analytics/{GAME}/funnel")).await;
    let mut got = BTreeMap::new();
    for s in funnel["steps"].as_array().ok_or("funnel: no steps")? {
        let level = s["level_id"].as_str().unwrap_or("").to_string();
        got.insert(
            level,
            s["starts"].as_u64().unwrap_or(0) + s["completes"].as_u64().unwrap_or(0) + s["fails"].as_u64().unwrap_or(0),
        );
    }
    for (level, (starts, completes, fails)) in &expected.funnel {
        add(starts + completes + fails, got.get(level).copied().unwrap_or(0));
    }
    Ok((lost, dup))
}

/// What the scenario needs to inject its fault: the production processes, or the
/// embedded process with its tmpfs.
struct Topology {
    gateway: Proc,
    actors: Vec<Proc>,
    projections: Vec<Proc>,
    deployment: Option<Deployment>,
    disk: Option<(Tmpfs, PathBuf)>,
}

impl Topology {
    async fn production(services: Services, logs: &Path) -> Result<Self, String> {
        let deployment = Deployment::create(services).await?;
        let env = deployment.env();
        let mut t = Topology {
            gateway: Proc::new("gateway", &["gateway"], env.clone(), logs),
            actors: vec![
                Proc::new("actors-a", &["actors"], env.clone(), logs),
                Proc::new("actors-b", &["actors"], env.clone(), logs),
            ],
            projections: vec![
                Proc::new("projections-a", &["projections"], env.clone(), logs),
                Proc::new("projections-b", &["projections"], env, logs),
            ],
            deployment: Some(deployment),
            disk: None,
        };
        for p in t.all_mut() {
            p.spawn()?;
        }
        for p in t.all() {
            p.wait_ready(Duration::from_secs(90)).await?;
        }
        Ok(t)
    }

    /// `gamemetrics serve` (embedded log and store) with its data directory on a 128 MB tmpfs.
    async fn embedded_on_tmpfs(logs: &Path) -> Result<Self, String> {
        let dir = logs.join("disk");
        let tmpfs = Tmpfs::mount(&dir, "128m")?;
        let mut env = base_env();
        env.push(("GM_DATA_DIR".into(), dir.join("data").display().to_string()));
        let mut gateway = Proc::new("serve", &["serve"], env, logs);
        gateway.spawn()?;
        gateway.wait_ready(Duration::from_secs(60)).await?;
        Ok(Topology {
            gateway,
            actors: vec![],
            projections: vec![],
            deployment: None,
            disk: Some((tmpfs, dir.join("ballast"))),
        })
    }

    /// The scenario's log and stores, opened as the roles open them (after they were stopped).
    async fn open_log(&self) -> Result<gamemetrics::platform::Backends, String> {
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut config = test_config(scratch.path());
        match (&self.deployment, &self.disk) {
            (Some(d), _) => {
                config.mode = gamemetrics::config::Mode::Production;
                config.kafka.brokers = d.services.kafka_brokers.clone();
                config.log.namespace = d.namespace.clone();
                config.postgres.url = d.postgres_url.clone();
                config.redis.url = String::new(); // no cache
            }
            (None, Some((_, ballast))) => {
                config.data_dir = ballast.parent().ok_or("the tmpfs has no directory")?.join("data");
            }
            (None, None) => return Err("no log to open".into()),
        }
        gamemetrics::platform::Backends::open(&config).await.map_err(|e| format!("{e:#}"))
    }

    fn all(&self) -> impl Iterator<Item = &Proc> {
        std::iter::once(&self.gateway).chain(&self.actors).chain(&self.projections)
    }
    fn all_mut(&mut self) -> impl Iterator<Item = &mut Proc> {
        std::iter::once(&mut self.gateway).chain(&mut self.actors).chain(&mut self.projections)
    }

    /// Injects `fault` and brings the component back; returns when it was restarted.
    async fn inject(&mut self, fault: Fault, p: &Profile, notes: &mut Vec<String>) -> Result<Instant, String> {
        let sleep = actix_rt::time::sleep;
        match fault {
            Fault::KillGateway | Fault::KillActors | Fault::KillProjections => {
                let proc = match fault {
                    Fault::KillGateway => &mut self.gateway,
                    Fault::KillActors => &mut self.actors[0],
                    _ => &mut self.projections[0],
                };
                proc.kill();
                sleep(p.down_for).await;
                let restarted = Instant::now();
                proc.spawn()?;
                Ok(restarted)
            }
            Fault::StopActors => {
                let pid = self.actors[1].pid();
                signal(pid, "STOP")?;
                sleep(p.stop_for).await;
                let resumed = Instant::now();
                signal(pid, "CONT")?;
                Ok(resumed)
            }
            Fault::KillKafka | Fault::KillPostgres | Fault::KillRedis => {
                let service = match fault {
                    Fault::KillKafka => "kafka",
                    Fault::KillPostgres => "postgres",
                    _ => "redis",
                };
                Dedicated::kill(service)?;
                sleep(p.down_for).await;
                let restarted = Instant::now();
                // scripts/services blocks until the service answers: run it off the reactor.
                let up = std::thread::spawn(move || Dedicated::up(service));
                while !up.is_finished() {
                    sleep(Duration::from_millis(100)).await;
                }
                up.join().map_err(|_| "restart thread panicked".to_string())??;
                Ok(restarted)
            }
            Fault::DiskFull => {
                let (_, ballast) = self.disk.as_ref().ok_or("no tmpfs")?;
                let ballast = ballast.clone();
                let written = fill(&ballast)?;
                notes.push(format!("ballast {} MiB until ENOSPC", written >> 20));
                sleep(p.disk_full_for).await;
                let freed = Instant::now();
                std::fs::remove_file(&ballast).map_err(|e| format!("remove ballast: {e}"))?;
                Ok(freed)
            }
        }
    }
}

async fn scenario(fault: Fault, p: &Profile, logs: &Path) -> Outcome {
    let mut outcome = Outcome {
        fault: fault.label(p),
        acknowledged: 0,
        lost: 0,
        duplicated: 0,
        recovery: None,
        retries: 0,
        problems: vec![],
        notes: vec![],
    };
    let logs = logs.join(fault.name());
    let _ = std::fs::create_dir_all(&logs);
    let topology = match fault {
        Fault::DiskFull => Topology::embedded_on_tmpfs(&logs).await,
        f if f.dedicated() => Topology::production(Services::dedicated(), &logs).await,
        _ => Topology::production(Services::shared(), &logs).await,
    };
    let mut topology = match topology {
        Ok(t) => t,
        Err(e) => {
            outcome.problems.push(format!("setup: {e}"));
            return outcome;
        }
    };
    let url = topology.gateway.url();

    let mut options = sim_options(&url, p.players);
    options.rate = p.rate;
    options.retry_for = Duration::from_secs(300);
    let plan = simulate::plan(&options, chrono::Utc::now());
    let planned = plan.len();
    let traffic = actix_rt::spawn(simulate::send(options, plan));
    actix_rt::time::sleep(p.fault_after).await;

    let mut notes = Vec::new();
    let recovery = match topology.inject(fault, p, &mut notes).await {
        Ok(since) => actix_rt::spawn(probe(url.clone(), fault, since, p.settle)),
        Err(e) => {
            outcome.problems.push(format!("inject: {e}"));
            actix_rt::spawn(async { None })
        }
    };
    let report = traffic.await.unwrap_or_default();
    outcome.recovery = recovery.await.unwrap_or(None);
    outcome.acknowledged = report.accepted.len();
    outcome.retries = report.retries;
    if report.accepted.len() != planned {
        outcome.problems.push(format!(
            "{} of {planned} events acknowledged: {}",
            report.accepted.len(),
            report.summary()
        ));
    }
    if outcome.recovery.is_none() {
        outcome.problems.push(format!("no probe event reached a read model within {:?}", p.settle));
    }
    if !report.accepted.is_empty() {
        let expected = Expected::from_events(&report.accepted);
        let settled = eventually(p.settle, || compare_read_models(url.clone(), &expected, 60)).await;
        match count_differences(&url, &expected).await {
            Ok((lost, dup)) => (outcome.lost, outcome.duplicated) = (lost, dup),
            Err(e) => outcome.problems.push(format!("counting: {e}")),
        }
        if let Err(e) = settled {
            outcome.problems.push(format!("read models did not settle on the acknowledged events: {e}"));
        }
    }
    outcome.notes = notes;
    for proc in topology.all_mut() {
        proc.kill();
    }
    // Event by event (aggregates alone can hide a lost and a doubled event that cancel out).
    if !report.accepted.is_empty() {
        match topology.open_log().await {
            Ok(backends) => {
                if let Err(e) = each_acknowledged_event_once(backends.log.as_ref(), &report.accepted).await {
                    outcome.problems.push(format!("event by event: {e}"));
                }
                // Closed before the tmpfs under the embedded files is unmounted.
                backends.close().await;
            }
            Err(e) => outcome.problems.push(format!("opening the log to compare event by event: {e}")),
        }
    }
    if let Some(d) = &topology.deployment {
        d.drop_database().await;
    }
    outcome
}

fn print_table(p: &Profile, outcomes: &[Outcome]) {
    println!();
    println!("chaos suite, {} profile: {} players at {} events/s per scenario", p.name, p.players, p.rate);
    println!();
    println!("| fault | events acknowledged | lost | duplicated | recovery s | client retries |");
    println!("|---|---:|---:|---:|---:|---:|");
    for o in outcomes {
        let recovery = o.recovery.map(|s| format!("{s:.1}")).unwrap_or_else(|| "—".into());
        println!("| {} | {} | {} | {} | {} | {} |", o.fault, o.acknowledged, o.lost, o.duplicated, recovery, o.retries);
    }
    println!();
    for o in outcomes {
        for note in &o.notes {
            println!("{}: {note}", o.fault);
        }
        for problem in &o.problems {
            println!("{}: VIOLATION: {problem}", o.fault);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let profile = if args.iter().any(|a| a == "--long") { LONG } else { SHORT };
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_string).collect());
    let faults: Vec<Fault> = Fault::ALL
        .into_iter()
        .filter(|f| only.as_ref().is_none_or(|names| names.iter().any(|n| n == f.name())))
        .collect();
    if faults.is_empty() {
        eprintln!("no fault matches --only; names: {:?}", Fault::ALL.map(Fault::name));
        std::process::exit(2);
    }
    let logs = PathBuf::from(std::env::var("CHAOS_LOG_DIR").unwrap_or_else(|_| "target/chaos".into()));
    let _ = std::fs::create_dir_all(&logs);
    assert!(profile.stop_for > SESSION_TIMEOUT, "a SIGSTOP shorter than the session timeout forces no rebalance");

    let started = Instant::now();
    let outcomes = actix_rt::System::new().block_on(async {
        let mut outcomes = Vec::new();
        for fault in faults {
            eprintln!("chaos: {} ({:.0} s elapsed)", fault.label(&profile), started.elapsed().as_secs_f64());
            outcomes.push(scenario(fault, &profile, &logs).await);
        }
        outcomes
    });
    print_table(&profile, &outcomes);
    println!(
        "{} scenarios in {:.0} s; process logs under {}",
        outcomes.len(),
        started.elapsed().as_secs_f64(),
        logs.display()
    );
    let violations = outcomes.iter().filter(|o| o.violated()).count();
    // A libtest-shaped closing line, so scripts/test counts the scenarios with the tests.
    let verdict = if violations > 0 { "FAILED" } else { "ok" };
    println!(
        "test result: {verdict}. {} passed; {violations} failed; 0 ignored (chaos suite, {} profile)",
        outcomes.len() - violations,
        profile.name
    );
    if violations > 0 {
        println!("FAILED: {violations} scenario(s) violated an invariant or did not recover");
        std::process::exit(1);
    }
    println!("ok: every acknowledged event in every read model exactly once");
}
