//! Helpers shared by the end-to-end tests: start the platform, query it, and compute every
//! expected figure independently from what the simulator had acknowledged.
#![allow(dead_code)]

use chrono::NaiveDate;
use gamemetrics::config::Config;
use gamemetrics::platform::Platform;
use gamemetrics::simulate::{SentEvent, SimulateOptions};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

pub mod faults;
pub mod services;
pub mod straddle;

/// When a test fails, prints what the roles it ran logged (each `*.log` of the directory):
/// the warnings and errors, then the last lines. Roles run as processes whose output
/// would otherwise go with the test's temporary directory.
pub struct ShowLogsOnPanic(pub std::path::PathBuf);

impl Drop for ShowLogsOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            show_logs(&self.0);
        }
    }
}

pub fn show_logs(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let problems: Vec<&&str> = lines.iter().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
        eprintln!("---- {}: warnings and errors (last 40 of {}) ----", entry.path().display(), problems.len());
        for line in &problems[problems.len().saturating_sub(40)..] {
            eprintln!("{line}");
        }
        eprintln!("---- {}: last 40 lines ----", entry.path().display());
        for line in &lines[lines.len().saturating_sub(40)..] {
            eprintln!("{line}");
        }
    }
}

pub const GAME: &str = "sim-1";
/// The tests' API key of [`GAME`]: not a development key of config/default.toml, which a
/// production gateway refuses (`Config::refuse_development_credentials`).
pub const KEY: &str = "test-key-sim-1-0001";
pub const METRICS_TOKEN: &str = "test-metrics-token-0001";

/// The tests' identity provider: a key pair generated at run time (no private key is
/// committed), its public JWKS in a temporary file the platform is configured with.
pub fn test_issuer() -> &'static gm_gateway::jwt::testing::TestIssuer {
    static ISSUER: std::sync::OnceLock<gm_gateway::jwt::testing::TestIssuer> = std::sync::OnceLock::new();
    ISSUER.get_or_init(|| gm_gateway::jwt::testing::TestIssuer::generate("e2e"))
}

pub fn jwks_file() -> &'static Path {
    static FILE: std::sync::OnceLock<tempfile::TempPath> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let file = tempfile::NamedTempFile::new().expect("a temporary JWKS file");
        std::fs::write(file.path(), test_issuer().jwks().to_string()).expect("write the JWKS");
        file.into_temp_path()
    })
}

/// A token of an analyst (queries, the OpenAPI document), valid for an hour.
pub fn analyst_token() -> String {
    test_issuer().token("e2e-analyst", &["analyst"])
}

/// The authentication settings (the tests' API key of [`GAME`] too) as environment
/// variables, for child processes.
pub fn auth_env() -> Vec<(String, String)> {
    vec![
        ("GM_API_KEYS".into(), format!("{GAME}={KEY}")),
        ("GM_AUTH__JWKS_FILE".into(), jwks_file().display().to_string()),
        ("GM_AUTH__ISSUER".into(), gm_gateway::jwt::testing::ISSUER.into()),
        ("GM_AUTH__AUDIENCE".into(), gm_gateway::jwt::testing::AUDIENCE.into()),
        ("GM_AUTH__METRICS_TOKEN".into(), METRICS_TOKEN.into()),
        ("GM_PRIVACY__MASTER_KEY".into(), TEST_MASTER_KEY.into()),
    ]
}

/// The privacy master key of every test process (production mode requires one).
pub const TEST_MASTER_KEY: &str = "6d61737465722d6b65792d666f722d746573747320616e64206e6f7468696e67";

pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::load(None).expect("default configuration loads");
    config.data_dir = data_dir.to_path_buf();
    config.http.bind = "127.0.0.1:0".into();
    config.api_keys = gamemetrics::config::ApiKeys::Text(format!("{GAME}={KEY}"));
    // Small snapshot intervals so that recovery from snapshots is exercised.
    config.actors.snapshot_every_events = 500;
    config.actors.snapshot_every_ms = 500;
    config.auth.jwks_file = Some(jwks_file().to_path_buf());
    config.auth.issuer = gm_gateway::jwt::testing::ISSUER.into();
    config.auth.audience = gm_gateway::jwt::testing::AUDIENCE.into();
    config.auth.metrics_token = METRICS_TOKEN.into();
    config.privacy.master_key = TEST_MASTER_KEY.into();
    config
}

/// The platform on a random port with a fresh data directory (`spawn_app`).
pub async fn spawn_app(data_dir: &Path) -> Platform {
    let config = test_config(data_dir);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    Platform::start_on(&config, listener).await.expect("platform starts")
}

pub fn sim_options(url: &str, players: usize) -> SimulateOptions {
    SimulateOptions {
        url: url.to_string(),
        games: vec![(GAME.into(), KEY.into())],
        players_per_game: players,
        rate: 0.0,
        duration: None,
        days: 1,
        seed: 7,
        batch_size: 50,
        lanes: 4,
        progress: false,
        retry_for: Duration::from_secs(60),
    }
}

pub async fn get_json(url: &str) -> (u16, Value) {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut response = client
        .get(url)
        .insert_header(("Authorization", format!("Bearer {}", analyst_token())))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let body = response.json::<Value>().limit(64 * 1024 * 1024).await.unwrap_or(Value::Null);
    (status, body)
}

/// Rebuilds one read model of `app` from the log, as `gamemetrics rebuild` does; how many
/// records it replayed.
pub async fn rebuild(app: &Platform, name: gm_projections::ProjectionName) -> u64 {
    gm_projections::worker::rebuild(
        name,
        app.backends.log.clone(),
        app.backends.read_models.clone(),
        Some(app.backends.privacy.clone()),
        app.metrics.clone(),
        |_, _| {},
    )
    .await
    .unwrap_or_else(|e| panic!("rebuild {name}: {e}"))
}

/// `text` percent-encoded for a URL (a path segment or a query value): every byte but RFC 3986's
/// unreserved ones.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `method url` (GET or POST) with `token` as bearer, and `body` as JSON: the status and the
/// JSON answer (`Null` when not JSON).
pub async fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut request = match method {
        "POST" => client.post(url),
        _ => client.get(url),
    };
    if let Some(token) = token {
        request = request.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let mut response = match body {
        Some(body) => request.insert_header(("Content-Type", "application/json")).send_body(body.to_string()).await,
        None => request.send().await,
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let body = response.json::<Value>().limit(16 * 1024 * 1024).await.unwrap_or(Value::Null);
    (status, body)
}

pub async fn post_events(base: &str, key: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut request = client.post(format!("{base}/v1/events")).insert_header(("Content-Type", "application/json"));
    if let Some(key) = key {
        request = request.insert_header(("Authorization", format!("Bearer {key}")));
    }
    let mut response = request.send_body(body).await.expect("POST /v1/events");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// Retries `check` until it returns Ok or `timeout` passes; then returns the last error.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => actix_rt::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Every figure the read models must show, computed from the acknowledged events alone
/// (deduplicated by event id, as a duplicate must count once).
#[derive(Debug, Default, PartialEq)]
pub struct Expected {
    pub dau: BTreeMap<NaiveDate, u64>,
    /// (day, currency) → (revenue, purchases)
    pub revenue: BTreeMap<(NaiveDate, String), (i64, u64)>,
    pub payers: BTreeMap<NaiveDate, u64>,
    /// day → (started, closed, total length)
    pub sessions: BTreeMap<NaiveDate, (u64, u64, u64)>,
    /// level → (starts, completes, fails)
    pub funnel: BTreeMap<String, (u64, u64, u64)>,
    /// player → (events, sessions, purchases, levels completed, xp)
    pub profiles: BTreeMap<String, (u64, u64, u64, u64, i64)>,
}

impl Expected {
    pub fn from_events(events: &[SentEvent]) -> Self {
        let mut seen = BTreeSet::new();
        let events: Vec<&SentEvent> = events.iter().filter(|e| seen.insert(e.event_id)).collect();
        let mut e = Expected::default();
        let mut active: BTreeMap<NaiveDate, BTreeSet<&str>> = BTreeMap::new();
        let mut payers: BTreeMap<NaiveDate, BTreeSet<&str>> = BTreeMap::new();
        let mut session_start: HashMap<&str, chrono::DateTime<chrono::Utc>> = HashMap::new();
        for ev in &events {
            let day = ev.timestamp.date_naive();
            active.entry(day).or_default().insert(&ev.player_id);
            let profile = e.profiles.entry(ev.player_id.clone()).or_default();
            profile.0 += 1;
            match ev.kind() {
                "session_start" => {
                    session_start.insert(&ev.session_id, ev.timestamp);
                    e.sessions.entry(day).or_default().0 += 1;
                    profile.1 += 1;
                }
                "purchase" => {
                    let currency = ev.prop("currency").as_str().unwrap().to_string();
                    let r = e.revenue.entry((day, currency)).or_default();
                    r.0 += ev.prop("amount_minor").as_i64().unwrap();
                    r.1 += 1;
                    payers.entry(day).or_default().insert(&ev.player_id);
                    profile.2 += 1;
                }
                "progression" => {
                    let f = e.funnel.entry(ev.prop("level_id").as_str().unwrap().to_string()).or_default();
                    match ev.prop("status").as_str().unwrap() {
                        "start" => f.0 += 1,
                        "complete" => {
                            f.1 += 1;
                            profile.3 += 1;
                            profile.4 += ev.prop("score").as_i64().unwrap_or(0);
                        }
                        _ => f.2 += 1,
                    }
                }
                _ => {}
            }
        }
        // Sessions close on their session_end; length = end − start, counted on the start day.
        for ev in &events {
            if ev.kind() == "session_end" {
                if let Some(start) = session_start.get(ev.session_id.as_str()) {
                    let s = e.sessions.entry(start.date_naive()).or_default();
                    s.1 += 1;
                    s.2 += (ev.timestamp - *start).num_seconds() as u64;
                }
            }
        }
        e.dau = active.into_iter().map(|(d, p)| (d, p.len() as u64)).collect();
        e.payers = payers.into_iter().map(|(d, p)| (d, p.len() as u64)).collect();
        e
    }

    pub fn first_day(&self) -> NaiveDate {
        *self.dau.keys().next().expect("some events")
    }
    pub fn last_day(&self) -> NaiveDate {
        *self.dau.keys().last().expect("some events")
    }
}

/// Event by event: every acknowledged event is on `player.events.processed` exactly once, by
/// id, and nothing else a client sent is (events the actors wrote on a player's behalf,
/// such as a session closed by the timer, and erasures are not client events). Aggregates
/// alone can hide a lost event and a doubled one that cancel out.
pub async fn each_acknowledged_event_once(
    log: &dyn gm_ports::EventLog,
    acknowledged: &[SentEvent],
) -> Result<(), String> {
    use gm_schemas::{topics, ProcessedBody, ProcessedEvent};
    let mut seen: HashMap<uuid::Uuid, u32> = HashMap::new();
    // Only the acknowledged events' games: other games on the same log are not compared.
    let games: BTreeSet<&str> = acknowledged.iter().map(|e| e.game_id.as_str()).collect();
    let ends = log.end_offsets(topics::PROCESSED).await.map_err(|e| e.to_string())?;
    for (partition, end) in ends.iter().enumerate() {
        let mut next = 0;
        while next < *end {
            let records =
                log.read(topics::PROCESSED, partition as u32, next, 5_000).await.map_err(|e| e.to_string())?;
            let Some(last) = records.last() else { break };
            next = last.offset + 1;
            for r in &records {
                let e: ProcessedEvent = serde_json::from_slice(&r.payload).map_err(|err| {
                    format!("partition {partition} offset {}: not a processed event: {err}", r.offset)
                })?;
                if let ProcessedBody::Event { derived, .. } = &e.body {
                    if !derived.closed_by_timer && games.contains(e.game_id.as_str()) {
                        *seen.entry(e.event_id).or_default() += 1;
                    }
                }
            }
        }
    }
    let sent: BTreeSet<uuid::Uuid> = acknowledged.iter().map(|e| e.event_id).collect();
    let missing: Vec<_> = sent.iter().filter(|id| !seen.contains_key(id)).collect();
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).map(|(id, n)| (id, *n)).collect();
    let unexpected: Vec<_> = seen.keys().filter(|id| !sent.contains(id)).collect();
    if missing.is_empty() && doubled.is_empty() && unexpected.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} acknowledged events: {} missing (e.g. {:?}), {} more than once (e.g. {:?}), {} never acknowledged (e.g. {:?})",
        sent.len(),
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        doubled.len(),
        doubled.iter().take(3).collect::<Vec<_>>(),
        unexpected.len(),
        unexpected.iter().take(3).collect::<Vec<_>>(),
    ))
}

/// Reads every read model through the gateway and compares it with `expected`.
pub async fn compare_read_models(base: String, expected: &Expected, sample_players: usize) -> Result<(), String> {
    let (from, to) = (expected.first_day(), expected.last_day());
    let range = format!("from={from}&to={to}");

    let (_, active) = get_json(&format!("{base}/v1/analytics/{GAME}/active-users?{range}")).await;
    let dau: BTreeMap<NaiveDate, u64> = active["days"]
        .as_array()
        .ok_or("active-users: no days")?
        .iter()
        .filter(|d| d["dau"].as_u64().unwrap_or(0) > 0)
        .map(|d| (d["day"].as_str().unwrap().parse().unwrap(), d["dau"].as_u64().unwrap()))
        .collect();
    if dau != expected.dau {
        return Err(format!("DAU differs: got {dau:?}, expected {:?}", expected.dau));
    }

    let (_, revenue) = get_json(&format!("{base}/v1/analytics/{GAME}/revenue?{range}")).await;
    let mut got_revenue = BTreeMap::new();
    let mut got_payers = BTreeMap::new();
    for d in revenue["days"].as_array().ok_or("revenue: no days")? {
        let day: NaiveDate = d["day"].as_str().unwrap().parse().unwrap();
        got_revenue.insert(
            (day, d["currency"].as_str().unwrap().to_string()),
            (d["revenue_minor"].as_i64().unwrap(), d["purchases"].as_u64().unwrap()),
        );
        got_payers.insert(day, d["payers"].as_u64().unwrap());
    }
    if got_revenue != expected.revenue {
        return Err(format!("revenue differs: got {got_revenue:?}, expected {:?}", expected.revenue));
    }
    if got_payers != expected.payers {
        return Err(format!("payers differ: got {got_payers:?}, expected {:?}", expected.payers));
    }

    let (_, sessions) = get_json(&format!("{base}/v1/analytics/{GAME}/sessions?{range}")).await;
    let mut got_sessions = BTreeMap::new();
    for d in sessions["days"].as_array().ok_or("sessions: no days")? {
        let started = d["sessions_started"].as_u64().unwrap();
        let closed = d["sessions_closed"].as_u64().unwrap();
        if started == 0 && closed == 0 {
            continue;
        }
        let total = (d["average_length_seconds"].as_f64().unwrap() * closed as f64).round() as u64;
        let bucket_sum: u64 =
            d["length_distribution"].as_array().unwrap().iter().map(|b| b["sessions"].as_u64().unwrap()).sum();
        if bucket_sum != closed {
            return Err(format!("length distribution of {} sums to {bucket_sum}, not {closed}", d["day"]));
        }
        got_sessions.insert(d["day"].as_str().unwrap().parse::<NaiveDate>().unwrap(), (started, closed, total));
    }
    if got_sessions != expected.sessions {
        return Err(format!("sessions differ: got {got_sessions:?}, expected {:?}", expected.sessions));
    }

    let (_, funnel) = get_json(&format!("{base}/v1/analytics/{GAME}/funnel")).await;
    let got_funnel: BTreeMap<String, (u64, u64, u64)> = funnel["steps"]
        .as_array()
        .ok_or("funnel: no steps")?
        .iter()
        .map(|s| {
            (
                s["level_id"].as_str().unwrap().to_string(),
                (s["starts"].as_u64().unwrap(), s["completes"].as_u64().unwrap(), s["fails"].as_u64().unwrap()),
            )
        })
        .collect();
    if got_funnel != expected.funnel {
        return Err(format!("funnel differs: got {got_funnel:?}, expected {:?}", expected.funnel));
    }

    let step = (expected.profiles.len() / sample_players.max(1)).max(1);
    for (player, want) in expected.profiles.iter().step_by(step) {
        let (status, p) = get_json(&format!("{base}/v1/players/{GAME}/{player}")).await;
        if status != 200 {
            return Err(format!("profile of {player}: HTTP {status}"));
        }
        let got = (
            p["events"].as_u64().unwrap(),
            p["sessions"].as_u64().unwrap(),
            p["purchases"].as_u64().unwrap(),
            p["levels_completed"].as_u64().unwrap(),
            p["xp"].as_i64().unwrap(),
        );
        if got != *want {
            return Err(format!("profile of {player} differs: got {got:?}, expected {want:?}"));
        }
    }
    Ok(())
}
