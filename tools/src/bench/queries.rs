//! The query phases of `gamemetrics bench`, run once the pipeline phase has filled the read
//! models: players' recommendations, and a mix of analytics queries (active users, revenue,
//! retention, new vs returning, monetisation, a leaderboard page). Requests carry an analyst
//! token of a throwaway issuer the bench makes for the run (bench/issuer.rs: its JWKS is
//! handed to the gateway), so the gateway authenticates each request as in production.

use super::process::RoleProcess;
use super::run::Bench;
use super::GAME;
use crate::simulate::SentEvent;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[derive(Default)]
pub(super) struct QueryLoad {
    pub requests: u64,
    /// Answers other than 200.
    pub errors: u64,
    pub lanes: usize,
    pub elapsed: Duration,
    pub latencies_ms: Vec<f64>,
}

impl QueryLoad {
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn latency(&self, p: f64) -> f64 {
        let mut v = self.latencies_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        super::stats::percentile(&v, p)
    }
}

impl Bench<'_> {
    /// Recommendations over the live phase's players (their lists warmed first), then a mix
    /// of analytics queries; each with its CPU cost per 1,000 requests.
    pub async fn query_phases(
        &self,
        gateway: &str,
        live: &[SentEvent],
        roles: &[RoleProcess],
    ) -> anyhow::Result<(QueryLoad, QueryLoad)> {
        let mut players: Vec<String> = live.iter().map(|e| e.player_id.clone()).collect();
        players.sort();
        players.dedup();
        let requests = self.options.query_requests.max(100);
        let lanes = self.options.query_lanes;
        eprintln!("bench: recommendations, warming {} players' lists", players.len());
        let token = self.credentials.token.as_str();
        let warm = recommendation_urls(gateway, GAME, &players, players.len());
        let _ = load(&self.client, warm, token, 32).await;
        eprintln!("bench: recommendations, {requests} requests");
        let before = self.cpu(roles);
        let urls = recommendation_urls(gateway, GAME, &players, requests);
        let recommendations = load(&self.client, urls, token, lanes).await;
        self.cost(roles, "recommendations", "requests", recommendations.requests, &before);
        eprintln!("bench: analytics queries, {requests} requests");
        let before = self.cpu(roles);
        let analytics = load(&self.client, analytics_urls(gateway, GAME, requests), token, lanes).await;
        self.cost(roles, "analytics queries", "requests", analytics.requests, &before);
        // Failures (timeouts of the client's 30 s, answers other than 200) are reported in
        // the rows rather than ending the run: on filled stores slow queries are the finding.
        for (name, load) in [("recommendations", &recommendations), ("analytics", &analytics)] {
            if load.errors > 0 {
                eprintln!(
                    "bench: {name}: {} of {} requests failed; see the logs in {}",
                    load.errors,
                    load.requests,
                    self.work_dir.display()
                );
            }
        }
        Ok((recommendations, analytics))
    }
}

/// GETs every URL once, `lanes` at a time (each lane in order), and times each request.
pub(super) async fn load(client: &awc::Client, urls: Vec<String>, token: &str, lanes: usize) -> QueryLoad {
    let lanes = lanes.max(1);
    let mut per_lane: Vec<Vec<String>> = vec![Vec::new(); lanes];
    for (i, url) in urls.into_iter().enumerate() {
        per_lane[i % lanes].push(url);
    }
    let state = Rc::new(RefCell::new(QueryLoad { lanes, ..Default::default() }));
    let auth = format!("Bearer {token}");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for urls in per_lane {
        let (client, state, auth) = (client.clone(), state.clone(), auth.clone());
        tasks.push(actix_rt::spawn(async move {
            for url in urls {
                let t0 = Instant::now();
                let ok = match client.get(&url).insert_header(("Authorization", auth.as_str())).send().await {
                    Ok(mut r) => {
                        let status = r.status().as_u16();
                        // Read the whole body: the answer is only complete then.
                        r.body().limit(16 << 20).await.is_ok() && status == 200
                    }
                    Err(_) => false,
                };
                let mut s = state.borrow_mut();
                s.latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                s.requests += 1;
                if !ok {
                    s.errors += 1;
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut report = Rc::try_unwrap(state).map(RefCell::into_inner).unwrap_or_default();
    report.elapsed = started.elapsed();
    report
}

/// `n` recommendation URLs cycling over `players`.
pub(super) fn recommendation_urls(gateway: &str, game: &str, players: &[String], n: usize) -> Vec<String> {
    players
        .iter()
        .cycle()
        .take(n)
        .map(|p| format!("{gateway}/v1/players/{game}/{p}/recommendations?limit=10"))
        .collect()
}

/// `n` analytics URLs cycling over the kinds of analytics query, on the last 7 days.
pub(super) fn analytics_urls(gateway: &str, game: &str, n: usize) -> Vec<String> {
    let to = chrono::Utc::now().date_naive();
    let from = to - chrono::Duration::days(6);
    let range = format!("from={from}&to={to}");
    let kinds = [
        format!("{gateway}/v1/analytics/{game}/active-users?{range}"),
        format!("{gateway}/v1/analytics/{game}/revenue?{range}"),
        format!("{gateway}/v1/analytics/{game}/sessions?{range}"),
        format!("{gateway}/v1/analytics/{game}/retention?{range}"),
        format!("{gateway}/v1/analytics/{game}/new-returning?{range}"),
        format!("{gateway}/v1/analytics/{game}/monetisation?{range}"),
        format!("{gateway}/v1/leaderboards/{game}/arena?period=daily&limit=10"),
    ];
    kinds.iter().cycle().take(n).cloned().collect()
}
