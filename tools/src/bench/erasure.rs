//! `gamemetrics bench --erasures N`: erasure request → completed, under sustained load.
//!
//! Runs every role in one `gamemetrics serve` child process on the configured mode
//! (production: a fresh database, topic namespace and Redis prefix; embedded: a temporary
//! data directory), drives the
//! simulator at a steady rate, and, once the load runs, asks for the erasure of N of its
//! players one after another (every `spacing`), each through `POST /v1/privacy/erasures`
//! with a compliance token of a throwaway issuer. Each erasure is timed from the request
//! until `GET /v1/privacy/erasures/{id}` says `completed` (every store confirmed).

use super::database::BenchDatabase;
use super::issuer::Credentials;
use super::process::Spawner;
use super::{Mode, Target, GAME};
use crate::simulate::{self, SimulateOptions};
use anyhow::Context as _;
use std::path::Path;
use std::time::{Duration, Instant};

pub(super) const TARGET_P99_S: f64 = 60.0;

pub(super) struct ErasureReport {
    pub mode: Mode,
    pub erasures: usize,
    pub completed: usize,
    pub rate: f64,
    pub events_acknowledged: usize,
    pub durations_s: Vec<f64>,
}

impl ErasureReport {
    fn p(&self, q: f64) -> f64 {
        let mut v = self.durations_s.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        super::stats::percentile(&v, q)
    }

    pub fn markdown(&self, machine: &str) -> String {
        let (p50, p99) = (self.p(0.50), self.p(0.99));
        format!(
            "\n## Erasure latency ({}), {}\n\nCommand: `gamemetrics bench --erasures {}` ({:?} mode). Machine: {machine}.\n\n\
             | what | figure | target | ratio |\n|---|---|---|---|\n\
             | erasures completed | {} of {} | all | |\n\
             | request → completed, p50 | {:.2} s | | |\n\
             | request → completed, p99 | {:.2} s | < {TARGET_P99_S:.0} s | {:.2}× |\n\
             | load meanwhile | {:.0} events/s offered, {} acknowledged | | |\n",
            chrono::Utc::now().format("%Y-%m-%d"),
            chrono::Utc::now().format("%H:%M UTC"),
            self.erasures,
            self.mode,
            self.completed,
            self.erasures,
            p50,
            p99,
            TARGET_P99_S / p99.max(1e-9),
            self.rate,
            self.events_acknowledged,
        )
    }
}

pub(super) async fn run(target: &Target, erasures: usize, work_dir: &Path) -> anyhow::Result<ErasureReport> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let database = match target.mode {
        Mode::Production => Some(BenchDatabase::create(&target.postgres_url, &id).await?),
        Mode::Embedded => None,
    };
    let result = measure(target, erasures, work_dir, &id, database.as_ref()).await;
    if let Some(db) = &database {
        db.drop_database().await;
    }
    result
}

/// Offered load and pacing of the erasure bench.
const PLAYERS: usize = 2_000;
const RATE: f64 = 2_000.0;
const SPACING: Duration = Duration::from_millis(500);

async fn measure(
    target: &Target,
    erasures: usize,
    work_dir: &Path,
    id: &str,
    database: Option<&BenchDatabase>,
) -> anyhow::Result<ErasureReport> {
    let key = format!("bench-key-{}", &id[..12]);
    let credentials = Credentials::create(work_dir, "compliance")?;
    let spawner = Spawner::new(target, work_dir, id, &key, database.map(|d| d.url.as_str()))
        .with_env(credentials.env.iter().cloned());
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut platform = spawner.spawn("serve", &["serve"])?;
    platform.wait_ready(&client).await?;
    let base = platform.url();
    let options = SimulateOptions {
        url: base.clone(),
        games: vec![(GAME.to_string(), key)],
        players_per_game: PLAYERS,
        rate: RATE,
        duration: Some(Duration::from_secs(10) + SPACING * erasures as u32 + Duration::from_secs(30)),
        progress: false,
        ..SimulateOptions::default()
    };
    let load = actix_rt::spawn(simulate::run(options));
    actix_rt::time::sleep(Duration::from_secs(10)).await;
    let durations = erase(&client, &base, &credentials.token, erasures).await?;
    let report = load.await.context("the simulated load")?;
    drop(platform);
    Ok(ErasureReport {
        mode: target.mode,
        erasures,
        completed: durations.len(),
        rate: RATE,
        events_acknowledged: report.accepted.len(),
        durations_s: durations,
    })
}

/// Asks for `erasures` erasures, one every [`SPACING`], and follows each until `completed`
/// (at most 300 s each); returns how long each completed one took.
async fn erase(client: &awc::Client, base: &str, token: &str, erasures: usize) -> anyhow::Result<Vec<f64>> {
    let auth = format!("Bearer {token}");
    let mut pending: Vec<(String, Instant)> = Vec::new();
    let mut durations = Vec::new();
    let deadline_each = Duration::from_secs(300);
    let mut next = Instant::now();
    let mut asked = 0;
    while asked < erasures || !pending.is_empty() {
        if asked < erasures && Instant::now() >= next {
            let player = format!("player-{}", asked * 7 % PLAYERS);
            let body = serde_json::json!({"game_id": GAME, "player_id": player, "reason": "bench"});
            let started = Instant::now();
            let mut r = client
                .post(format!("{base}/v1/privacy/erasures"))
                .insert_header(("Authorization", auth.as_str()))
                .send_json(&body)
                .await
                .map_err(|e| anyhow::anyhow!("POST erasure: {e}"))?;
            let v: serde_json::Value = r.json().await?;
            let eid = v["erasure_id"].as_str().ok_or_else(|| anyhow::anyhow!("no erasure id: {v}"))?.to_string();
            pending.push((eid, started));
            asked += 1;
            next += SPACING;
        }
        let mut still = Vec::new();
        for (eid, started) in pending.drain(..) {
            let mut r = client
                .get(format!("{base}/v1/privacy/erasures/{eid}"))
                .insert_header(("Authorization", auth.as_str()))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("GET erasure: {e}"))?;
            let v: serde_json::Value = r.json().await?;
            if v["status"] == "completed" {
                durations.push(started.elapsed().as_secs_f64());
            } else if started.elapsed() < deadline_each {
                still.push((eid, started));
            }
        }
        pending = still;
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(durations)
}
