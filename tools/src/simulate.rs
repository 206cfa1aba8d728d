//! `gamemetrics simulate`: realistic synthetic traffic against a gateway — players with
//! sessions, progression, purchases, resources and churn — and a record of what the gateway
//! acknowledged, so tests can compute every figure independently.
//!
//! Events of one player always travel on the same lane, and a lane sends its batches one
//! after the other, so a player's events reach the log in the order they happened. A failed
//! request (connection refused, 5xx) is retried with the same event ids until the deadline:
//! the platform deduplicates them.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct SimulateOptions {
    pub url: String,
    /// (game id, API key) of each simulated game.
    pub games: Vec<(String, String)>,
    pub players_per_game: usize,
    /// Events per second over all lanes; 0 = as fast as the gateway answers.
    pub rate: f64,
    /// Stop sending after this long (unsent events are reported).
    pub duration: Option<Duration>,
    /// Virtual days the players' lives are spread over, ending now.
    pub days: u32,
    pub seed: u64,
    pub batch_size: usize,
    pub lanes: usize,
    pub progress: bool,
    /// Give up retrying a batch after this long.
    pub retry_for: Duration,
}

impl Default for SimulateOptions {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8080".into(),
            games: vec![("demo".into(), "demo-key-0001".into())],
            players_per_game: 100,
            rate: 0.0,
            duration: None,
            days: 1,
            seed: 42,
            batch_size: 100,
            lanes: 8,
            progress: false,
            retry_for: Duration::from_secs(120),
        }
    }
}

/// What the simulator sent for one event, kept for independent computations.
#[derive(Debug, Clone, PartialEq)]
pub struct SentEvent {
    pub game_id: String,
    pub player_id: String,
    pub event_id: Uuid,
    pub timestamp: DateTime<Utc>,
    pub session_id: String,
    pub body: Value,
}

impl SentEvent {
    pub fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }
    pub fn prop(&self, name: &str) -> &Value {
        &self.body["properties"][name]
    }
    fn wire(&self) -> Value {
        let mut v = self.body.clone();
        v["event_id"] = json!(self.event_id);
        v["player_id"] = json!(self.player_id);
        v["session_id"] = json!(self.session_id);
        v["client_ts"] = json!(self.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        v
    }
}

#[derive(Debug, Default)]
pub struct SimulationReport {
    pub planned: usize,
    pub accepted: Vec<SentEvent>,
    pub rejected: u64,
    pub unsent: u64,
    pub requests: u64,
    pub retries: u64,
    pub elapsed: Duration,
    pub latencies_ms: Vec<f64>,
}

impl SimulationReport {
    pub fn events_per_second(&self) -> f64 {
        self.accepted.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn latency_percentile(&self, p: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return 0.0;
        }
        let mut v = self.latencies_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() - 1) as f64 * p).round() as usize]
    }
    pub fn summary(&self) -> String {
        format!(
            "planned {} events; accepted {}, rejected {}, unsent {}; {} requests ({} retries) in {:.1}s = {:.0} events/s; request latency p50 {:.1} ms, p99 {:.1} ms",
            self.planned,
            self.accepted.len(),
            self.rejected,
            self.unsent,
            self.requests,
            self.retries,
            self.elapsed.as_secs_f64(),
            self.events_per_second(),
            self.latency_percentile(0.5),
            self.latency_percentile(0.99),
        )
    }
}

const LEVELS: usize = 12;
/// Planted structure for the recommendations' quality check: items come in kits, each
/// player has a favourite kit (kits are unequally popular) and takes most items from it.
const KITS: [(&str, u32); 6] =
    [("knight", 30), ("mage", 22), ("archer", 16), ("rogue", 13), ("healer", 11), ("builder", 8)];
const ITEMS_PER_KIT: usize = 8;
/// How often a player's item comes from their favourite kit (else from any kit).
const KIT_LOYALTY: f64 = 0.85;

fn favourite_kit(rng: &mut StdRng) -> usize {
    let total: u32 = KITS.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total);
    for (i, (_, w)) in KITS.iter().enumerate() {
        if pick < *w {
            return i;
        }
        pick -= w;
    }
    0
}

fn item_for(rng: &mut StdRng, kit: usize) -> String {
    let kit = if rng.random_bool(KIT_LOYALTY) { kit } else { rng.random_range(0..KITS.len()) };
    format!("{}-{}", KITS[kit].0, rng.random_range(1..=ITEMS_PER_KIT))
}
const PRICES: [i64; 4] = [99, 199, 499, 999];

/// Plans every event of every player, deterministically from the seed.
pub fn plan(options: &SimulateOptions, now: DateTime<Utc>) -> Vec<SentEvent> {
    let days = i64::from(options.days.max(1));
    let window_start = now - ChronoDuration::days(days);
    let mut events = Vec::new();
    for (game_index, (game, _)) in options.games.iter().enumerate() {
        for p in 0..options.players_per_game {
            // Hash the triple: XOR-ing seeds would give two runs' players the same streams.
            let mut h = DefaultHasher::new();
            (options.seed, game_index, p).hash(&mut h);
            let mut rng = StdRng::seed_from_u64(h.finish());
            let player = format!("player-{p}");
            plan_player(&mut rng, game, &player, window_start, now, &mut events);
        }
    }
    events
}

/// Plans one player's life in `[from, until)`, deterministically from `seed` and the player's
/// id (the bench's fill plans a million players this way, a chunk at a time).
pub fn plan_life(game: &str, player: &str, seed: u64, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<SentEvent> {
    let mut h = DefaultHasher::new();
    (seed, game, player).hash(&mut h);
    let mut rng = StdRng::seed_from_u64(h.finish());
    let mut events = Vec::new();
    plan_player(&mut rng, game, player, from, until, &mut events);
    events
}

fn plan_player(
    rng: &mut StdRng,
    game: &str,
    player: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    out: &mut Vec<SentEvent>,
) {
    let span = (until - from).num_seconds().max(3600);
    // First visit somewhere in the window; then return visits until the player churns.
    let mut t = from + ChronoDuration::seconds(rng.random_range(0..span - 1800));
    let mut level = 1usize;
    let mut first = true;
    let kit = favourite_kit(rng);
    let ev = |rng: &mut StdRng, t: DateTime<Utc>, session: &str, body: Value, out: &mut Vec<SentEvent>| {
        out.push(SentEvent {
            game_id: game.to_string(),
            player_id: player.to_string(),
            event_id: Uuid::from_u128(rng.random()),
            timestamp: t,
            session_id: session.to_string(),
            body,
        });
    };
    loop {
        let session = format!("s-{}", Uuid::from_u128(rng.random()).simple());
        ev(rng, t, &session, json!({"type": "session_start", "properties": {"platform": "android"}}), out);
        if first {
            t += ChronoDuration::seconds(1);
            let country = ["FR", "US", "DE", "BR", "JP"][rng.random_range(0..5)];
            let device = rng.random::<u32>();
            let profile = json!({"type": "profile_update", "properties": {"country": country, "language": "en"}, "personal": {"device_id": format!("dev-{device}"), "email": format!("{player}@example.com")}});
            ev(rng, t, &session, profile, out);
            let consent = json!({"type": "consent_update", "properties": {"analytics": true, "personalisation": rng.random_bool(0.7)}});
            ev(rng, t, &session, consent, out);
            first = false;
        }
        for _ in 0..rng.random_range(2..10) {
            t += ChronoDuration::seconds(rng.random_range(5..240));
            let level_id = format!("level-{level}");
            let body = match rng.random_range(0..100) {
                0..=34 => {
                    ev(
                        rng,
                        t,
                        &session,
                        json!({"type": "progression", "properties": {"status": "start", "level_id": level_id}}),
                        out,
                    );
                    t += ChronoDuration::seconds(rng.random_range(20..300));
                    if rng.random_bool(0.65) {
                        let score = rng.random_range(100..5000);
                        level = (level + 1).min(LEVELS);
                        json!({"type": "progression", "properties": {"status": "complete", "level_id": level_id, "score": score}})
                    } else {
                        json!({"type": "progression", "properties": {"status": "fail", "level_id": level_id, "score": rng.random_range(0..100)}})
                    }
                }
                35..=42 => {
                    let currency = match rng.random_range(0..10) {
                        0..=6 => "USD",
                        7..=8 => "EUR",
                        _ => "GBP",
                    };
                    json!({"type": "purchase", "properties": {"amount_minor": PRICES[rng.random_range(0..PRICES.len())], "currency": currency, "item_id": item_for(rng, kit)}})
                }
                43..=55 => {
                    json!({"type": "resource", "properties": {"flow": if rng.random_bool(0.5) {"source"} else {"sink"}, "virtual_currency": "gold", "amount": rng.random_range(1..500)}})
                }
                56..=68 => {
                    json!({"type": "score", "properties": {"board": "arena", "value": rng.random_range(0..100_000)}})
                }
                69..=74 => {
                    json!({"type": "achievement", "properties": {"achievement_id": format!("ach-{}", rng.random_range(1..20))}})
                }
                75..=84 => {
                    json!({"type": "item_use", "properties": {"item_id": item_for(rng, kit), "quantity": 1}})
                }
                _ => {
                    json!({"type": "design", "properties": {"event_id": format!("tutorial:step{}", rng.random_range(1..6)), "value": rng.random_range(0..100)}})
                }
            };
            ev(rng, t, &session, body, out);
        }
        t += ChronoDuration::seconds(rng.random_range(5..60));
        ev(rng, t, &session, json!({"type": "session_end", "properties": {}}), out);
        // Return after 1 to 20 hours, or churn.
        t += ChronoDuration::seconds(rng.random_range(3600..72_000));
        if t >= until || rng.random_bool(0.35) {
            break;
        }
    }
}

fn lane_of(game: &str, player: &str, lanes: usize) -> usize {
    let mut h = DefaultHasher::new();
    (game, player).hash(&mut h);
    (h.finish() % lanes.max(1) as u64) as usize
}

/// Sends the planned events; runs on the current actix system (awc is single-threaded).
pub async fn run(options: SimulateOptions) -> SimulationReport {
    let planned = plan(&options, Utc::now());
    send(options, planned).await
}

/// Sends `events` (a plan) and reports what was acknowledged.
pub async fn send(options: SimulateOptions, events: Vec<SentEvent>) -> SimulationReport {
    let lanes = options.lanes.max(1);
    let keys: std::collections::HashMap<String, String> = options.games.iter().cloned().collect();
    // Per lane and game, the events in time order; each batch holds one game's events.
    let mut per_lane: Vec<Vec<Vec<SentEvent>>> = vec![Vec::new(); lanes];
    let mut by_lane_game: std::collections::BTreeMap<(usize, String), Vec<SentEvent>> = Default::default();
    for e in &events {
        by_lane_game.entry((lane_of(&e.game_id, &e.player_id, lanes), e.game_id.clone())).or_default().push(e.clone());
    }
    for ((lane, _), mut evs) in by_lane_game {
        evs.sort_by_key(|e| e.timestamp);
        for chunk in evs.chunks(options.batch_size.max(1)) {
            per_lane[lane].push(chunk.to_vec());
        }
    }
    let progress = if options.progress {
        let bar = indicatif::ProgressBar::new(events.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let report = Rc::new(RefCell::new(SimulationReport { planned: events.len(), ..Default::default() }));
    let scheduled = Rc::new(RefCell::new(0u64));
    let started = Instant::now();
    let deadline = options.duration.map(|d| started + d);
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut tasks = Vec::new();
    for batches in per_lane {
        let client = client.clone();
        let report = report.clone();
        let scheduled = scheduled.clone();
        let keys = keys.clone();
        let options = options.clone();
        let progress = progress.clone();
        tasks.push(actix_rt::spawn(async move {
            for batch in batches {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    report.borrow_mut().unsent += batch.len() as u64;
                    continue;
                }
                if options.rate > 0.0 {
                    let due = {
                        let mut n = scheduled.borrow_mut();
                        *n += batch.len() as u64;
                        started + Duration::from_secs_f64(*n as f64 / options.rate)
                    };
                    actix_rt::time::sleep_until(due.into()).await;
                }
                let key = keys.get(&batch[0].game_id).cloned().unwrap_or_default();
                send_batch(&client, &options, &key, &batch, &report).await;
                if let Some(bar) = &progress {
                    bar.inc(batch.len() as u64);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    if let Some(bar) = progress {
        bar.finish();
    }
    let mut report = Rc::try_unwrap(report).map(RefCell::into_inner).unwrap_or_default();
    report.elapsed = started.elapsed();
    report
}

async fn send_batch(
    client: &awc::Client,
    options: &SimulateOptions,
    key: &str,
    batch: &[SentEvent],
    report: &RefCell<SimulationReport>,
) {
    // No sent_at: the simulated clocks are right, so timestamps stay exactly as planned and
    // tests can compute every figure from them.
    let body = json!({"events": batch.iter().map(SentEvent::wire).collect::<Vec<_>>()});
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let give_up = Instant::now() + options.retry_for;
    let mut delay = Duration::from_millis(50);
    loop {
        let t0 = Instant::now();
        let response = client
            .post(format!("{}/v1/events", options.url))
            .insert_header(("Authorization", format!("Bearer {key}")))
            .insert_header(("Content-Type", "application/json"))
            .send_body(body.clone())
            .await;
        report.borrow_mut().requests += 1;
        if let Ok(mut response) = response {
            let status = response.status().as_u16();
            if status == 202 || status == 400 {
                let parsed: Value = response.json().limit(16 * 1024 * 1024).await.unwrap_or(Value::Null);
                let mut r = report.borrow_mut();
                r.latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                let results = parsed["results"].as_array().cloned().unwrap_or_default();
                if results.is_empty() {
                    r.rejected += batch.len() as u64;
                }
                for (i, result) in results.iter().enumerate() {
                    match (result["status"].as_str(), batch.get(i)) {
                        (Some("accepted"), Some(e)) => r.accepted.push(e.clone()),
                        _ => r.rejected += 1,
                    }
                }
                return;
            }
        }
        if Instant::now() >= give_up {
            report.borrow_mut().unsent += batch.len() as u64;
            return;
        }
        report.borrow_mut().retries += 1;
        actix_rt::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}
