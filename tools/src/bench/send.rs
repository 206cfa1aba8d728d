//! The load generator: events planned by the simulator, serialised into request bodies
//! before the clock starts, then sent by one thread with the responses parsed only for
//! their statuses (cheaper than `simulate::send`, whose per-event work would take CPU from
//! the measured processes).

use super::run::Bench;
use super::stats::percentile;
use super::GAME;
use crate::simulate::{self, SentEvent, SimulateOptions};
use actix_web::web::Bytes;
use anyhow::bail;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// (seconds since the start of a phase, cumulative count), shared by the tasks of one thread.
pub(super) type Samples = Rc<RefCell<Vec<(f64, u64)>>>;

/// Request bodies per lane: (events in the body, body). A player's events share a lane.
pub(super) struct Prepared {
    events: usize,
    lanes: Vec<Vec<(usize, Bytes)>>,
}

#[derive(Debug, Default)]
pub(super) struct SendReport {
    pub planned: u64,
    /// Concurrent requests.
    pub lanes: usize,
    pub accepted: u64,
    pub rejected: u64,
    pub unsent: u64,
    pub requests: u64,
    pub retries: u64,
    /// Answers that were not final (retried or given up), by HTTP status (0: no answer:
    /// connection error or timeout).
    pub errors: BTreeMap<u16, u64>,
    pub elapsed: Duration,
    pub latencies_ms: Vec<f64>,
}

impl SendReport {
    pub fn events_per_second(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn latency(&self, p: f64) -> f64 {
        let mut v = self.latencies_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        percentile(&v, p)
    }
    /// `500 ×3, 503 ×1` (empty when every answer was final at once).
    pub fn error_summary(&self) -> String {
        let parts: Vec<String> = self
            .errors
            .iter()
            .map(|(status, n)| match status {
                0 => format!("no answer ×{n}"),
                s => format!("{s} ×{n}"),
            })
            .collect();
        parts.join(", ")
    }

    pub fn check(&self, phase: &str) -> anyhow::Result<()> {
        if self.accepted < self.planned {
            bail!(
                "{phase}: {} of {} events accepted ({} rejected, {} unsent after retries)",
                self.accepted,
                self.planned,
                self.rejected,
                self.unsent
            );
        }
        Ok(())
    }
}

#[derive(Deserialize, Default)]
struct IngestResponse {
    #[serde(default)]
    results: Vec<IngestResult>,
}

#[derive(Deserialize)]
struct IngestResult {
    status: String,
}

/// The ingest route a phase sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// `POST /v1/events`: `{"events": [...]}`, answered 202 with a result per event.
    Typed,
    /// `POST /api/v1/events`, the previous platform's: one event per request
    /// (`{event_type, player_id, timestamp, data}`), answered 200 `{"status": "success"}`
    /// or 400 `{"status": "error"}`.
    Legacy,
}

impl Route {
    pub fn path(self) -> &'static str {
        match self {
            Route::Typed => "/v1/events",
            Route::Legacy => "/api/v1/events",
        }
    }

    /// Whether `status` is the route's final answer (anything else is retried).
    fn is_final(self, status: u16) -> bool {
        match self {
            Route::Typed => status == 202 || status == 400,
            Route::Legacy => status == 200 || status == 400,
        }
    }
}

#[derive(Deserialize, Default)]
struct LegacyAnswer {
    #[serde(default)]
    status: String,
}

/// How one lane sends: where, with which key, at which rate, sampling acknowledgements.
#[derive(Clone)]
struct Lane {
    client: awc::Client,
    route: Route,
    endpoint: String,
    auth: String,
    rate: f64,
    started: Instant,
    scheduled: Rc<RefCell<u64>>,
    state: Rc<RefCell<SendReport>>,
    acks: Option<Samples>,
}

impl Lane {
    async fn send_all(self, batches: Vec<(usize, Bytes)>) {
        for (count, body) in batches {
            if self.rate > 0.0 {
                let due = {
                    let mut n = self.scheduled.borrow_mut();
                    *n += count as u64;
                    self.started + Duration::from_secs_f64(*n as f64 / self.rate)
                };
                actix_rt::time::sleep_until(due.into()).await;
            }
            self.send_one(count, body).await;
        }
    }

    /// One batch, retried (same body, same event ids) for up to 30 s.
    async fn send_one(&self, count: usize, body: Bytes) {
        let give_up = Instant::now() + Duration::from_secs(30);
        let mut delay = Duration::from_millis(50);
        loop {
            let t0 = Instant::now();
            let response = self
                .client
                .post(&self.endpoint)
                .insert_header(("Authorization", self.auth.as_str()))
                .insert_header(("Content-Type", "application/json"))
                .send_body(body.clone())
                .await;
            let status = match response {
                Ok(mut r) if self.route.is_final(r.status().as_u16()) => {
                    let accepted = match self.route {
                        Route::Typed => {
                            let parsed: IngestResponse = r.json().limit(16 << 20).await.unwrap_or_default();
                            parsed.results.iter().filter(|r| r.status == "accepted").count()
                        }
                        Route::Legacy => {
                            let parsed: LegacyAnswer = r.json().limit(1 << 20).await.unwrap_or_default();
                            usize::from(parsed.status == "success")
                        }
                    };
                    self.record(count, accepted as u64, t0.elapsed());
                    return;
                }
                Ok(mut r) => {
                    let _ = r.body().limit(1 << 20).await;
                    r.status().as_u16()
                }
                Err(_) => 0,
            };
            *self.state.borrow_mut().errors.entry(status).or_default() += 1;
            if Instant::now() >= give_up {
                self.state.borrow_mut().unsent += count as u64;
                return;
            }
            self.state.borrow_mut().retries += 1;
            actix_rt::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    fn record(&self, count: usize, accepted: u64, took: Duration) {
        let mut s = self.state.borrow_mut();
        s.latencies_ms.push(took.as_secs_f64() * 1000.0);
        s.requests += 1;
        s.accepted += accepted;
        s.rejected += count as u64 - accepted.min(count as u64);
        if let Some(acks) = &self.acks {
            acks.borrow_mut().push((self.started.elapsed().as_secs_f64(), s.accepted));
        }
    }
}

impl Bench<'_> {
    /// `count` events of a fresh simulated population (a different seed per phase, so no
    /// event id repeats and every event reaches the read models).
    pub fn plan(&self, seed: u64, count: usize) -> Vec<SentEvent> {
        let options = SimulateOptions {
            games: vec![(GAME.into(), self.key.clone())],
            players_per_game: count / 12 + 10,
            seed,
            days: 1,
            ..Default::default()
        };
        let now = Utc::now();
        let mut events = simulate::plan(&options, now);
        let mut extra = 0;
        while events.len() < count {
            extra += 1;
            events.extend(simulate::plan(&SimulateOptions { seed: seed * 1000 + extra, ..options.clone() }, now));
        }
        events.truncate(count);
        events
    }

    /// Sends prepared bodies; `acks` collects (seconds since start, events acknowledged).
    pub async fn send(&self, url: &str, prepared: Prepared, rate: f64, acks: Option<Samples>) -> SendReport {
        self.send_to(Route::Typed, url, prepared, rate, acks).await
    }

    /// [`Self::send`] to `route` (bodies prepared for it).
    pub async fn send_to(
        &self,
        route: Route,
        url: &str,
        prepared: Prepared,
        rate: f64,
        acks: Option<Samples>,
    ) -> SendReport {
        let lanes = prepared.lanes.len();
        let state = SendReport { planned: prepared.events as u64, lanes, ..Default::default() };
        let lane = Lane {
            client: self.client.clone(),
            route,
            endpoint: format!("{url}{}", route.path()),
            auth: format!("Bearer {}", self.key),
            rate,
            started: Instant::now(),
            scheduled: Rc::new(RefCell::new(0)),
            state: Rc::new(RefCell::new(state)),
            acks,
        };
        let tasks: Vec<_> =
            prepared.lanes.into_iter().map(|batches| actix_rt::spawn(lane.clone().send_all(batches))).collect();
        for task in tasks {
            let _ = task.await;
        }
        let (state, started) = (lane.state.clone(), lane.started);
        drop(lane);
        let mut report = Rc::try_unwrap(state).map(RefCell::into_inner).unwrap_or_default();
        report.elapsed = started.elapsed();
        report
    }
}

/// Bodies of `batch_size` events on `lanes` lanes, a player's events on one lane in order.
pub(super) fn prepare(events: &[SentEvent], batch_size: usize, lanes: usize) -> Prepared {
    let lanes = lanes.max(1);
    let mut grouped: Vec<Vec<&SentEvent>> = vec![Vec::new(); lanes];
    for e in events {
        let mut h = DefaultHasher::new();
        (&e.game_id, &e.player_id).hash(&mut h);
        grouped[(h.finish() % lanes as u64) as usize].push(e);
    }
    let mut per_lane: Vec<Vec<(usize, Bytes)>> = vec![Vec::new(); lanes];
    for (lane, mut evs) in grouped.into_iter().enumerate() {
        evs.sort_by_key(|e| e.timestamp);
        for chunk in evs.chunks(batch_size.max(1)) {
            let body = json!({"events": chunk.iter().map(|e| wire(e)).collect::<Vec<_>>()});
            per_lane[lane].push((chunk.len(), serde_json::to_vec(&body).unwrap_or_default().into()));
        }
    }
    Prepared { events: events.len(), lanes: per_lane }
}

/// One request per event on `lanes` lanes, a player's events on one lane in order, in the
/// body `route` takes; events the route has no form for (the previous platform had no
/// profile or consent events) are left out.
pub(super) fn prepare_single(events: &[SentEvent], route: Route, lanes: usize) -> Prepared {
    let lanes = lanes.max(1);
    let mut per_lane: Vec<Vec<(usize, Bytes)>> = vec![Vec::new(); lanes];
    let mut count = 0;
    for e in events {
        let body = match route {
            Route::Typed => Some(json!({"events": [wire(e)]})),
            Route::Legacy => legacy_wire(e),
        };
        let Some(body) = body else { continue };
        let mut h = DefaultHasher::new();
        (&e.game_id, &e.player_id).hash(&mut h);
        per_lane[(h.finish() % lanes as u64) as usize].push((1, serde_json::to_vec(&body).unwrap_or_default().into()));
        count += 1;
    }
    Prepared { events: count, lanes: per_lane }
}

/// The event in the previous platform's format (docs/compat.md): `event_type` from the type
/// (and the progression's status, the resource's flow), `data` from the properties; `None`
/// for the types that platform did not have (`profile_update`, `consent_update`).
pub(super) fn legacy_wire(e: &SentEvent) -> Option<Value> {
    let props = e.body.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    let text = |name: &str| props.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    let event_type = match e.kind() {
        "session_start" | "session_end" | "purchase" | "achievement" => e.kind().to_string(),
        "progression" => match text("status").as_str() {
            "start" => "level_start".into(),
            "fail" => "level_fail".into(),
            _ => "level_complete".into(),
        },
        "resource" => if text("flow") == "sink" { "resource_spent" } else { "resource_earned" }.into(),
        "score" => "player_score".into(),
        "item_use" => "item_used".into(),
        "design" => text("event_id"),
        _ => return None,
    };
    let mut data = props;
    data.remove("status");
    data.remove("flow");
    if e.kind() == "design" {
        data.remove("event_id");
    }
    Some(json!({
        "event_type": event_type,
        "event_id": e.event_id.to_string(),
        "player_id": e.player_id,
        "session_id": e.session_id,
        "timestamp": e.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    }))
}

/// The event as the simulator puts it on the wire.
pub(super) fn wire(e: &SentEvent) -> Value {
    let mut v = e.body.clone();
    v["event_id"] = json!(e.event_id);
    v["player_id"] = json!(e.player_id);
    v["session_id"] = json!(e.session_id);
    v["client_ts"] = json!(e.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    v
}

pub(super) fn mean_wire_bytes(events: &[SentEvent]) -> usize {
    let sample: Vec<usize> = events.iter().take(20_000).map(|e| wire(e).to_string().len()).collect();
    sample.iter().sum::<usize>() / sample.len().max(1)
}

/// The record the gateway appends to the raw topic for this event, as JSON.
pub(super) fn record_json(e: &SentEvent) -> Option<String> {
    let game = gm_schemas::GameId::parse(e.game_id.clone()).ok()?;
    let body = serde_json::to_vec(&json!({"events": [wire(e)]})).ok()?;
    let decoded = gm_schemas::validate::decode_batch(&body, &game, Utc::now(), &Default::default()).ok()?;
    let envelope = decoded.into_iter().next()?.ok()?;
    serde_json::to_string(&gm_schemas::RawRecord::Event(envelope)).ok()
}

pub(super) fn mean_record_bytes(events: &[SentEvent]) -> Option<usize> {
    let sizes: Vec<usize> = events.iter().take(20_000).filter_map(|e| record_json(e).map(|s| s.len())).collect();
    (!sizes.is_empty()).then(|| sizes.iter().sum::<usize>() / sizes.len())
}
