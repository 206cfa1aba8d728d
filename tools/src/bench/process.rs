//! The roles under test: child processes of the `gamemetrics` binary, started with the
//! bench's own namespace, database, API key and token issuer.

use super::{Mode, Target, GAME};
use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A child process running one or more roles; SIGKILLed when dropped.
pub(super) struct RoleProcess {
    pub name: &'static str,
    pub port: u16,
    pub child: Child,
    pub log: PathBuf,
}

impl RoleProcess {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size (VmHWM) in MB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }

    pub async fn wait_ready(&mut self, client: &awc::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("{} exited ({status}) before it was ready; see {}", self.name, self.log.display());
            }
            if let Ok(r) = client.get(format!("{}/health/ready", self.url())).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{} did not become ready within 90 s; see {}", self.name, self.log.display())
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts roles of one run, all with the same environment.
pub(super) struct Spawner<'a> {
    target: &'a Target,
    work_dir: &'a Path,
    env: Vec<(String, String)>,
}

impl<'a> Spawner<'a> {
    /// `id`: the run's id (topic namespace, Redis prefix); `key`: the API key of [`GAME`];
    /// `database_url`: the run's PostgreSQL database (production).
    pub fn new(target: &'a Target, work_dir: &'a Path, id: &str, key: &str, database_url: Option<&str>) -> Self {
        let mut env = vec![
            ("GM_API_KEYS".to_string(), format!("{GAME}={key}")),
            ("GM_LOG__NAMESPACE".to_string(), format!("bench-{id}")),
            ("RUST_LOG".to_string(), std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())),
        ];
        match target.mode {
            Mode::Production => {
                if let Some(url) = database_url {
                    env.push(("GM_POSTGRES__URL".into(), url.into()));
                }
                if target.redis_url.is_some() {
                    env.push(("GM_REDIS__KEY_PREFIX".into(), format!("gm:bench:{}:", &id[..12])));
                }
            }
            Mode::Embedded => env.push(("GM_DATA_DIR".into(), work_dir.join("data").display().to_string())),
        }
        if !target.master_key_configured {
            // A production gateway needs a master key; the bench's stores are thrown away,
            // so a key of this run (32 random bytes, hex) will do. One key for every role.
            env.push(("GM_PRIVACY__MASTER_KEY".into(), hex::encode(rand::random::<[u8; 32]>())));
        }
        Self { target, work_dir, env }
    }

    /// Adds settings every role of this spawner gets.
    pub fn with_env(mut self, env: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env.extend(env);
        self
    }

    /// `gamemetrics [--config FILE] ARGS…` on a free port, stderr to `work_dir/NAME.log`.
    pub fn spawn(&self, name: &'static str, args: &[&str]) -> anyhow::Result<RoleProcess> {
        self.spawn_with(name, args, &[])
    }

    /// [`Self::spawn`] with `extra` settings for this process alone.
    pub fn spawn_with(&self, name: &'static str, args: &[&str], extra: &[(&str, &str)]) -> anyhow::Result<RoleProcess> {
        let port = free_port()?;
        let exe = std::env::current_exe().context("locating the gamemetrics binary")?;
        let log = self.work_dir.join(format!("{}.log", name.replace([' ', '(', ')'], "_")));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("creating {}", log.display()))?;
        let mut command = std::process::Command::new(exe);
        if let Some(file) = &self.target.config_file {
            command.arg("--config").arg(file);
        }
        command
            .args(args)
            .env("GM_HTTP__BIND", format!("127.0.0.1:{port}"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = command.spawn().with_context(|| format!("starting `gamemetrics {}`", args.join(" ")))?;
        Ok(RoleProcess { name, port, child, log })
    }
}
