//! The query phases of `gamemetrics bench`, run once the pipeline phase has filled the read
//! models: players' recommendations, and a mix of analytics queries (active users, revenue,
//! retention, new vs returning, monetisation, a leaderboard page). Requests carry an analyst
//! token of a throwaway issuer the bench makes for the run (its JWKS is handed to the
//! gateway), so the gateway authenticates each request as in production.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub(super) const TARGET_RECOMMENDATIONS: f64 = 10_000.0;
pub(super) const TARGET_RECOMMENDATIONS_P99_MS: f64 = 10.0;
pub(super) const TARGET_ANALYTICS: f64 = 5_000.0;

/// The bench's own token issuer: its JWKS file and the settings the gateway needs.
pub(super) struct Issuer {
    pub token: String,
    /// `Authorization` value for `/metrics` (the run's own metrics token): a process that
    /// also serves the API (the gateway, or `serve` on the embedded default) wants it.
    pub metrics_auth: String,
    pub env: Vec<(String, String)>,
}

impl Issuer {
    pub fn create(work_dir: &Path) -> anyhow::Result<Self> {
        use gm_gateway::jwt::testing::{TestIssuer, AUDIENCE, ISSUER};
        let issuer = TestIssuer::generate("bench");
        let jwks = work_dir.join("bench-jwks.json");
        std::fs::write(&jwks, issuer.jwks().to_string())?;
        let metrics_token = format!("bench-metrics-{}", uuid::Uuid::new_v4().simple());
        Ok(Self {
            token: issuer.token("bench", &["analyst"]),
            metrics_auth: format!("Bearer {metrics_token}"),
            env: vec![
                ("GM_AUTH__METRICS_TOKEN".into(), metrics_token),
                ("GM_AUTH__JWKS_FILE".into(), jwks.display().to_string()),
                ("GM_AUTH__ISSUER".into(), ISSUER.into()),
                ("GM_AUTH__AUDIENCE".into(), AUDIENCE.into()),
            ],
        })
    }
}

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
        super::percentile(&v, p)
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
