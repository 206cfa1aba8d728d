//! `gamemetrics bench --erasures N`: erasure request → completed, under sustained load.
//!
//! Runs every role in this process on the configured mode (production: a fresh database,
//! topic namespace and Redis prefix; embedded: a temporary data directory), drives the
//! simulator at a steady rate, and, once the load runs, asks for the erasure of N of its
//! players one after another (every `spacing`), each through `POST /v1/privacy/erasures`
//! with a compliance token of a throwaway issuer. Each erasure is timed from the request
//! until `GET /v1/privacy/erasures/{id}` says `completed` (every store confirmed).

use crate::config::{Config, Mode};
use crate::platform::Platform;
use crate::simulate::{self, SimulateOptions};
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
        super::percentile(&v, q)
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

pub(super) async fn run(config: &Config, erasures: usize, work_dir: &Path) -> anyhow::Result<ErasureReport> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut cfg = config.clone();
    let database = match cfg.mode {
        Mode::Production => {
            let db = super::BenchDatabase::create(&config.postgres.url, &id).await?;
            cfg.postgres.url = db.url.clone();
            cfg.log.namespace = format!("bench-erasure-{}", &id[..8]);
            if let Some(redis) = cfg.redis.as_mut() {
                redis.key_prefix = format!("{}bench-erasure-{}:", redis.key_prefix, &id[..8]);
            }
            Some(db)
        }
        Mode::Embedded => {
            cfg.data_dir = work_dir.join("data");
            None
        }
    };
    use gm_gateway::jwt::testing::{TestIssuer, AUDIENCE, ISSUER};
    let issuer = TestIssuer::generate("bench-erasure");
    let jwks = work_dir.join("erasure-jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string())?;
    cfg.auth.jwks_file = Some(jwks);
    cfg.auth.jwks_url = None;
    cfg.auth.issuer = ISSUER.into();
    cfg.auth.audience = AUDIENCE.into();
    if cfg.configured_master_key()?.is_none() {
        cfg.privacy.master_key = hex::encode(rand::random::<[u8; 32]>());
    }
    let token = issuer.token("bench-compliance", &["compliance"]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let platform = Platform::start_on(&cfg, listener).await?;
    let base = platform.url();
    let (game, key) =
        cfg.api_key_pairs()?.into_iter().next().ok_or_else(|| anyhow::anyhow!("no API key configured"))?;

    let players = 2_000;
    let rate = 2_000.0;
    let spacing = Duration::from_millis(500);
    let options = SimulateOptions {
        url: base.clone(),
        games: vec![(game.to_string(), key)],
        players_per_game: players,
        rate,
        duration: Some(Duration::from_secs(10) + spacing * erasures as u32 + Duration::from_secs(30)),
        progress: false,
        ..SimulateOptions::default()
    };
    let load = actix_rt::spawn(simulate::run(options));
    actix_rt::time::sleep(Duration::from_secs(10)).await;

    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut pending: Vec<(String, Instant)> = Vec::new();
    let mut durations = Vec::new();
    let deadline_each = Duration::from_secs(300);
    let mut next = Instant::now();
    let mut asked = 0;
    while asked < erasures || !pending.is_empty() {
        if asked < erasures && Instant::now() >= next {
            let body = serde_json::json!({"game_id": game.as_str(), "player_id": format!("player-{}", asked * 7 % players), "reason": "bench"});
            let started = Instant::now();
            let mut r = client
                .post(format!("{base}/v1/privacy/erasures"))
                .insert_header(("Authorization", format!("Bearer {token}")))
                .send_json(&body)
                .await
                .map_err(|e| anyhow::anyhow!("POST erasure: {e}"))?;
            let v: serde_json::Value = r.json().await?;
            let eid = v["erasure_id"].as_str().ok_or_else(|| anyhow::anyhow!("no erasure id: {v}"))?.to_string();
            pending.push((eid, started));
            asked += 1;
            next += spacing;
        }
        let mut still = Vec::new();
        for (eid, started) in pending.drain(..) {
            let mut r = client
                .get(format!("{base}/v1/privacy/erasures/{eid}"))
                .insert_header(("Authorization", format!("Bearer {token}")))
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
    let report = load.await?;
    platform.stop().await;
    if let Some(db) = &database {
        db.drop_database().await;
    }
    Ok(ErasureReport {
        mode: cfg.mode,
        erasures,
        completed: durations.len(),
        rate,
        events_acknowledged: report.accepted.len(),
        durations_s: durations,
    })
}
