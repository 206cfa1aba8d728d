//! Production-mode helpers: a fresh PostgreSQL database, a Kafka namespace (topics and
//! groups) and a Redis key prefix per test, so tests run in parallel against one set of
//! local services. Missing services fail the test loudly: start them with
//! `scripts/services up` (scripts/test does).

use gamemetrics::config::{Config, Mode};
use sqlx::Connection;
use std::path::Path;

pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `eval \"$(scripts/services env)\"` after `scripts/services up` (scripts/test does both)")
    })
}

/// Everything a production-mode process of one test needs.
#[derive(Clone, Debug)]
pub struct TestServices {
    pub postgres_url: String,
    pub kafka_brokers: String,
    pub redis_url: String,
    pub namespace: String,
    pub redis_prefix: String,
    admin_url: String,
    database: String,
}

impl TestServices {
    /// Creates a database (with migrations) and picks a fresh namespace and key prefix.
    pub async fn create() -> Self {
        Self::create_on(&required_env("GM_POSTGRES_URL")).await
    }

    /// The same on another PostgreSQL server (the disaster-recovery drill's own instance).
    pub async fn create_on(admin_url: &str) -> Self {
        let admin_url = admin_url.to_string();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("gm_e2e_{}", &id[..16]);
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at GM_POSTGRES_URL is unreachable: {e}"));
        sqlx::query(&format!("CREATE DATABASE {database}")).execute(&mut admin).await.unwrap();
        let (base, _) = admin_url.rsplit_once('/').expect("GM_POSTGRES_URL ends with /database");
        let postgres_url = format!("{base}/{database}");
        let store = gm_postgres::PgStore::connect(&postgres_url, 2).await.unwrap();
        store.migrate().await.unwrap();
        Self {
            postgres_url,
            kafka_brokers: required_env("GM_KAFKA_BROKERS"),
            redis_url: required_env("GM_REDIS_URL"),
            namespace: format!("t{}", &id[..12]),
            redis_prefix: format!("gm:test:{}:", &id[..12]),
            admin_url,
            database,
        }
    }

    /// The configuration of a production-mode process of this test.
    pub fn config(&self, data_dir: &Path) -> Config {
        let mut config = super::test_config(data_dir);
        config.mode = Mode::Production;
        config.kafka.brokers = self.kafka_brokers.clone();
        config.log.namespace = self.namespace.clone();
        config.postgres.url = self.postgres_url.clone();
        config.postgres.max_connections = 8;
        let mut redis = gm_redis::RedisConfig::new(self.redis_url.clone(), self.redis_prefix.clone());
        redis.profile_ttl_ms = 1000;
        redis.recent_query_ttl_ms = 1000;
        redis.recommendation_ttl_ms = 1000;
        config.redis = redis;
        config
    }

    /// The same, as environment variables for a child process.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = super::auth_env();
        env.extend([
            ("GM_MODE".into(), "production".into()),
            ("GM_KAFKA__BROKERS".into(), self.kafka_brokers.clone()),
            ("GM_LOG__NAMESPACE".into(), self.namespace.clone()),
            ("GM_POSTGRES__URL".into(), self.postgres_url.clone()),
            ("GM_REDIS__URL".into(), self.redis_url.clone()),
            ("GM_REDIS__KEY_PREFIX".into(), self.redis_prefix.clone()),
            ("GM_REDIS__PROFILE_TTL_MS".into(), "1000".into()),
            ("GM_REDIS__RECENT_QUERY_TTL_MS".into(), "1000".into()),
        ]);
        env
    }

    /// Drops the test's database (topics of the namespace are left to the broker's retention).
    pub async fn drop_database(&self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database))
                .execute(&mut admin)
                .await;
        }
    }
}

/// A test's keys database (`privacy.keys_url`): a fresh database on the shared PostgreSQL at
/// GM_POSTGRES_URL, another cluster than the disaster-recovery drill's own.
pub struct KeysDatabase {
    pub url: String,
    admin_url: String,
    database: String,
}

impl KeysDatabase {
    pub async fn create() -> Self {
        let admin_url = required_env("GM_POSTGRES_URL");
        let database = format!("gm_keys_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.expect("PostgreSQL at GM_POSTGRES_URL");
        sqlx::query(&format!("CREATE DATABASE {database}")).execute(&mut admin).await.unwrap();
        let (base, _) = admin_url.rsplit_once('/').expect("GM_POSTGRES_URL ends with /database");
        let url = format!("{base}/{database}");
        let store = gm_postgres::PgStore::connect(&url, 2).await.unwrap();
        store.migrate_keys().await.unwrap();
        store.pool().close().await;
        Self { url, admin_url, database }
    }

    /// What a role needs to use it.
    pub fn env(&self) -> (&'static str, String) {
        ("GM_PRIVACY__KEYS_URL", self.url.clone())
    }

    pub async fn drop_database(&self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database))
                .execute(&mut admin)
                .await;
        }
    }
}

/// `scripts/services ARGS` (restart a service in fault tests).
pub fn services(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services");
    let status = std::process::Command::new(script).args(args).status().expect("run scripts/services");
    assert!(status.success(), "scripts/services {args:?} failed");
}

/// Brings a stopped service back up when dropped, even when the test panics, so that the
/// test binaries after this one find every service running.
pub struct RestartOnDrop(pub &'static str);

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        services(&["up", self.0]);
    }
}

/// A `gamemetrics` child process (a role) that is SIGKILLed when dropped.
pub struct Role {
    pub name: &'static str,
    pub port: u16,
    child: Option<std::process::Child>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Role {
    /// Starts `gamemetrics <role>` in production mode with `services`' settings.
    pub fn start(role: &'static str, services: &TestServices, api_keys: &str) -> Self {
        Self::start_with(role, services, api_keys, |_| {})
    }

    /// The same, with `adjust` applied to the command last (e.g. to keep its log in a file).
    pub fn start_with(
        role: &'static str,
        services: &TestServices,
        api_keys: &str,
        adjust: impl FnOnce(&mut std::process::Command),
    ) -> Self {
        let port = free_port();
        // GM_TEST_BIN: a copy of the binary, for a tree whose target directory others rebuild.
        let bin = std::env::var("GM_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gamemetrics").into());
        let mut command = std::process::Command::new(bin);
        command
            .arg(role)
            .envs(services.env())
            .env("GM_HTTP__BIND", format!("127.0.0.1:{port}"))
            .env("GM_API_KEYS", api_keys)
            .env("GM_ACTORS__SNAPSHOT_EVERY_EVENTS", "500")
            .env("GM_ACTORS__SNAPSHOT_EVERY_MS", "500")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null());
        adjust(&mut command);
        let child = command.spawn().expect("start gamemetrics");
        Self { name: role, port, child: Some(child) }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGSTOP: the process keeps its connections but does nothing until killed or resumed
    /// (a frozen state to compare with, e.g. before a database is destroyed).
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            let status = std::process::Command::new("kill").args(["-STOP", &child.id().to_string()]).status();
            assert!(status.is_ok_and(|s| s.success()), "SIGSTOP {}", self.name);
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let client = awc::Client::default();
        while std::time::Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/health/ready", self.url())).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{} on port {} did not become ready", self.name, self.port);
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends a role's stdout and stderr to `<logs>/<name>.log` (for [`Role::start_with`]).
pub fn logged(logs: &std::path::Path, name: &str) -> impl FnOnce(&mut std::process::Command) {
    let path = logs.join(format!("{name}.log"));
    move |command: &mut std::process::Command| {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        let err = out.try_clone().unwrap();
        command.stdout(out).stderr(err);
    }
}

/// [`logged`], with `RUST_LOG` set to `filter`.
pub fn logged_with(
    logs: &std::path::Path,
    name: &str,
    filter: &'static str,
) -> impl FnOnce(&mut std::process::Command) {
    let redirect = logged(logs, name);
    move |command: &mut std::process::Command| {
        command.env("RUST_LOG", filter);
        redirect(command);
    }
}

/// A role's `/metrics` text (with the metrics token).
pub async fn scrape(base: &str) -> String {
    let client = awc::Client::default();
    let mut response = client
        .get(format!("{base}/metrics"))
        .insert_header(("Authorization", format!("Bearer {}", super::METRICS_TOKEN)))
        .send()
        .await
        .expect("GET /metrics");
    String::from_utf8_lossy(&response.body().limit(16 * 1024 * 1024).await.unwrap()).to_string()
}
