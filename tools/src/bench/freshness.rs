//! The steady-state freshness phase (issue 15 item 7): a fixed offered load (open loop:
//! batches of 100 sent on schedule, whatever the answers) for a fixed time with every role
//! running, and per event the time from its acknowledgement (the 202 of its batch) to its
//! visibility in each read model, observed through the public query API.
//!
//! **Markers.** Every `marker_every`-th batch also carries the events of one marker player
//! `freshness-marker-<i>`: a `session_start`, a completed `progression` on level
//! `freshness-marker-<i>`, a `purchase` and a `score` of `i + 1` on the board
//! `freshness-markers`, all dated on a day of its own, 2001-01-01 + i days (no other event
//! is dated before this century's second year, so marker i is alone on its day). One event
//! is then unambiguous in read models that aggregate per day:
//!
//! | read model | query polled | visible when |
//! |---|---|---|
//! | player_profiles | `/v1/players/bench/freshness-marker-<i>` | 200 with the marker's 4 events |
//! | daily_activity | `/analytics/…/active-users` over the outstanding markers' days | `dau ≥ 1` on marker i's day |
//! | sessions | `/analytics/…/sessions`, same range | `sessions_started ≥ 1` on that day |
//! | revenue | `/analytics/…/revenue`, same range | a row with `purchases ≥ 1` on that day |
//! | retention | `/analytics/…/retention`, same range | the day's cohort has `players ≥ 1` |
//! | funnel | `/analytics/…/funnel` | level `freshness-marker-<i>` has `completes ≥ 1` |
//! | leaderboards | `/v1/leaderboards/bench/freshness-markers?period=all_time`, top of the board | the marker player is on the page |
//!
//! recommendations is not covered: a player's list blends co-occurrence over everyone with
//! popular items, so no answer tells that one given purchase has been applied.
//!
//! **Polling.** Every [`POLL_INTERVAL`] each range read model gets one query covering every
//! outstanding marker (acknowledged, not yet seen there), so its cost does not grow with the
//! number of markers; profiles get one query per outstanding marker (at most
//! [`MAX_PROFILE_POLLS`] per tick). A read model is never polled again while its previous
//! query is unanswered. In production the polls go to a gateway of their own started with
//! the Redis cache's TTLs at 0 (the serving gateway's cache would otherwise add up to its
//! TTL, 5 s by default, to what the read model shows), so they read the read models; its
//! CPU appears as its own process.
//!
//! **Resolution.** Marker i became visible after the last query that did not show it was
//! sent (or after its acknowledgement) and before the first query that showed it was
//! answered: the bounds `lower` and `upper`. The figure is their midpoint, so neither the
//! polling interval nor the polling query's own latency inflates it by more than half —
//! or the upper bound when they are more than [`MAX_MIDPOINT_WIDTH_S`] apart (a marker not
//! queried for a while); the report gives the p99 of the upper bound too.

use super::process::RoleProcess;
use super::run::Bench;
use super::send::wire;
use super::stats::percentile;
use super::GAME;
use actix_web::web::Bytes;
use chrono::{Duration as Days, NaiveDate};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub(super) const TARGET_P99_S: f64 = 1.0;
/// Events per batch (markers excepted).
pub(super) const BATCH: usize = 100;
/// Marker players per second of offered load.
const MARKERS_PER_SECOND: f64 = 5.0;
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Profile queries per poll tick at most (oldest outstanding markers first): with a backlog
/// hundreds of markers are outstanding, and 20 a tick made 240 queries/s in an embedded run
/// (96/s with 4; the `serve` process's CPU per event was the same within 1% either way, so
/// the queries are cheap, but fewer disturb less). Markers mostly show in acknowledgement
/// order, so the oldest are the ones about to show; a newer one that shows first is seen at
/// the latest when its turn comes (its range read models are polled every tick regardless).
pub(super) const MAX_PROFILE_POLLS: usize = 4;
/// Bounds at most this far apart give their midpoint as the figure; wider, the upper bound.
pub(super) const MAX_MIDPOINT_WIDTH_S: f64 = 0.5;
/// How long after the last send the bench waits for markers and the backlog.
pub(super) const DRAIN: Duration = Duration::from_secs(120);
const BOARD: &str = "freshness-markers";
/// Events of one marker.
pub(super) const MARKER_EVENTS: usize = 4;
/// Widest range one analytics query may ask (the gateway's limit).
const MAX_RANGE_DAYS: usize = 366;

/// The read models the phase observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe {
    Profiles,
    DailyActivity,
    Sessions,
    Revenue,
    Retention,
    Funnel,
    Leaderboards,
}

impl Probe {
    pub const ALL: [Probe; 7] = [
        Probe::Profiles,
        Probe::DailyActivity,
        Probe::Sessions,
        Probe::Revenue,
        Probe::Retention,
        Probe::Funnel,
        Probe::Leaderboards,
    ];

    /// The read model (projection) the probe shows.
    pub fn read_model(self) -> &'static str {
        match self {
            Probe::Profiles => "player_profiles",
            Probe::DailyActivity => "daily_activity",
            Probe::Sessions => "sessions",
            Probe::Revenue => "revenue",
            Probe::Retention => "retention",
            Probe::Funnel => "funnel",
            Probe::Leaderboards => "leaderboards",
        }
    }

    fn index(self) -> usize {
        Probe::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    /// The query covering markers `first..=last` (`last`: the newest marker sent, for the
    /// leaderboard page); profiles: marker `first`'s own.
    fn url(self, gateway: &str, first: usize, last: usize) -> String {
        let (from, to) = (marker_day(first), marker_day(last.min(first + MAX_RANGE_DAYS - 1)));
        let range = format!("from={from}&to={to}");
        match self {
            Probe::Profiles => format!("{gateway}/v1/players/{GAME}/{}", marker_player(first)),
            Probe::DailyActivity => format!("{gateway}/v1/analytics/{GAME}/active-users?{range}"),
            Probe::Sessions => format!("{gateway}/v1/analytics/{GAME}/sessions?{range}"),
            Probe::Revenue => format!("{gateway}/v1/analytics/{GAME}/revenue?{range}"),
            Probe::Retention => format!("{gateway}/v1/analytics/{GAME}/retention?{range}"),
            Probe::Funnel => format!("{gateway}/v1/analytics/{GAME}/funnel"),
            Probe::Leaderboards => format!(
                "{gateway}/v1/leaderboards/{GAME}/{BOARD}?period=all_time&limit={}",
                (last + 1 - first.min(last)).clamp(1, 1000)
            ),
        }
    }

    /// The markers an answer of this probe shows (profiles: `[marker]` when the profile
    /// holds the marker's events).
    pub fn visible(self, body: &Value, marker: usize) -> Vec<usize> {
        let rows = |key: &str| body.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
        let count = |row: &Value, key: &str| row.get(key).and_then(Value::as_u64).unwrap_or(0);
        let day_of = |row: &Value| {
            row.get("day").and_then(Value::as_str).and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        };
        let by_day = |key: &str, field: &str| -> Vec<usize> {
            rows(key).iter().filter(|r| count(r, field) >= 1).filter_map(|r| day_marker(day_of(r)?)).collect()
        };
        let by_player = |v: Option<&Value>| v.and_then(Value::as_str).and_then(player_marker);
        let mut found = match self {
            Probe::Profiles => {
                let events = body.get("events").and_then(Value::as_u64).unwrap_or(0);
                let mine = body.get("player_id").and_then(Value::as_str) == Some(marker_player(marker).as_str());
                if mine && events >= MARKER_EVENTS as u64 {
                    vec![marker]
                } else {
                    Vec::new()
                }
            }
            Probe::DailyActivity => by_day("days", "dau"),
            Probe::Sessions => by_day("days", "sessions_started"),
            Probe::Revenue => by_day("days", "purchases"),
            Probe::Retention => by_day("cohorts", "players"),
            Probe::Funnel => rows("steps")
                .iter()
                .filter(|r| count(r, "completes") >= 1)
                .filter_map(|r| by_player(r.get("level_id")))
                .collect(),
            Probe::Leaderboards => rows("entries").iter().filter_map(|r| by_player(r.get("player_id"))).collect(),
        };
        found.sort_unstable();
        found.dedup();
        found
    }
}

fn base_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2001, 1, 1).unwrap_or_default()
}

/// The day marker `i`'s events are dated on.
pub(super) fn marker_day(i: usize) -> NaiveDate {
    base_day() + Days::days(i as i64)
}

/// The marker alone on `day`, if any.
pub(super) fn day_marker(day: NaiveDate) -> Option<usize> {
    usize::try_from((day - base_day()).num_days()).ok()
}

pub(super) fn marker_player(i: usize) -> String {
    format!("freshness-marker-{i}")
}

fn player_marker(id: &str) -> Option<usize> {
    id.strip_prefix("freshness-marker-")?.parse().ok()
}

/// The events of marker `i` (typed wire form), fresh ids from `ids`.
pub(super) fn marker_events(i: usize, ids: [uuid::Uuid; MARKER_EVENTS]) -> Vec<Value> {
    let player = marker_player(i);
    let session = format!("freshness-session-{i}");
    let at = |s: u32| format!("{}T12:00:{s:02}.000Z", marker_day(i));
    let bodies = [
        json!({"type": "session_start", "properties": {"platform": "android"}}),
        json!({"type": "progression", "properties": {"status": "complete", "level_id": player, "score": 1}}),
        json!({"type": "purchase", "properties": {"amount_minor": 99, "currency": "USD", "item_id": "freshness-item"}}),
        json!({"type": "score", "properties": {"board": BOARD, "value": i + 1}}),
    ];
    bodies
        .into_iter()
        .zip(ids)
        .enumerate()
        .map(|(n, (mut body, id))| {
            body["event_id"] = json!(id);
            body["player_id"] = json!(player);
            body["session_id"] = json!(session);
            body["client_ts"] = json!(at(n as u32));
            body
        })
        .collect()
}

/// `{"events":[…]}` with `extra` appended to its events (the bodies are serde_json's
/// compact output, so they end with `]}`); `None` when `body` is not such a batch.
pub(super) fn append_events(body: &[u8], extra: &[Value]) -> Option<Vec<u8>> {
    let head = body.strip_suffix(b"]}")?;
    if !head.starts_with(b"{\"events\":[") {
        return None;
    }
    let mut out = head.to_vec();
    for e in extra {
        if out.last() != Some(&b'[') {
            out.push(b',');
        }
        out.extend(serde_json::to_vec(e).ok()?);
    }
    out.extend_from_slice(b"]}");
    Some(out)
}

/// When each batch goes and which batches carry a marker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Schedule {
    /// Offered events/s (markers aside).
    pub rate: f64,
    pub batches: usize,
    pub marker_every: usize,
}

impl Schedule {
    pub fn new(rate: f64, secs: u64) -> Self {
        let rate = rate.max(1.0);
        let batches = (rate * secs as f64 / BATCH as f64).round().max(1.0) as usize;
        let per_second = rate / BATCH as f64;
        let marker_every = (per_second / MARKERS_PER_SECOND).round().max(1.0) as usize;
        Self { rate, batches, marker_every }
    }

    /// When batch `j` is due, from the start of the phase (open loop: whatever the answers).
    pub fn due(&self, j: usize) -> Duration {
        Duration::from_secs_f64((j * BATCH) as f64 / self.rate)
    }

    /// The marker batch `j` carries: the middle batch of every `marker_every`.
    pub fn marker_of(&self, j: usize) -> Option<usize> {
        (j % self.marker_every == self.marker_every / 2).then_some(j / self.marker_every)
    }

    pub fn markers(&self) -> usize {
        (0..self.batches).filter(|j| self.marker_of(*j).is_some()).count()
    }

    /// Offered seconds: from the first batch's due time to one batch interval after the last.
    pub fn seconds(&self) -> f64 {
        (self.batches * BATCH) as f64 / self.rate
    }
}

/// What the bench knows of one (marker, read model).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Track {
    /// Sent time of the last query that did not show the marker (seconds since the start).
    pub last_negative: Option<f64>,
    /// (lower, upper) bounds of acknowledgement → visibility, seconds.
    pub seen: Option<(f64, f64)>,
}

impl Track {
    /// A query sent at `sent`, answered at `answered`, showed (`visible`) or not the marker
    /// acknowledged at `ack`. Queries sent before the acknowledgement tell nothing.
    pub fn observe(&mut self, ack: f64, sent: f64, answered: f64, visible: bool) {
        if self.seen.is_some() || sent < ack {
            return;
        }
        if visible {
            let after = self.last_negative.map_or(ack, |n| n.max(ack));
            self.seen = Some((after - ack, (answered - ack).max(after - ack)));
        } else {
            self.last_negative = Some(self.last_negative.map_or(sent, |n| n.max(sent)));
        }
    }

    /// The midpoint of the bounds; the upper bound when they are more than
    /// [`MAX_MIDPOINT_WIDTH_S`] apart (a marker not queried for a while — profiles beyond
    /// the oldest few under a backlog — would otherwise get a midpoint far before its
    /// visibility).
    pub fn estimate(&self) -> Option<f64> {
        self.seen.map(|(lo, hi)| if hi - lo > MAX_MIDPOINT_WIDTH_S { hi } else { (lo + hi) / 2.0 })
    }
}

/// The `p` quantile (nearest rank) of values where `None` is "not seen by the end" (above
/// every value): `None` when the rank falls on one; `None` for no values.
pub(super) fn censored_percentile(values: &[Option<f64>], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut seen: Vec<f64> = values.iter().flatten().copied().collect();
    seen.sort_by(|a, b| a.total_cmp(b));
    let rank = ((values.len() - 1) as f64 * p).round() as usize;
    seen.get(rank).copied()
}

#[derive(Debug, Clone, Default)]
pub(super) struct MarkerState {
    /// Seconds since the start when its batch was acknowledged with every marker event accepted.
    pub ack: Option<f64>,
    pub tracks: [Track; 7],
    profile_in_flight: bool,
}

#[derive(Debug, Default)]
pub(super) struct FreshnessReport {
    pub schedule: Option<Schedule>,
    pub offered_events: u64,
    pub accepted: u64,
    pub requests: u64,
    /// Batches answered other than 202, by status (0: no answer).
    pub errors: BTreeMap<u16, u64>,
    /// Seconds from the first send to the last answer.
    pub elapsed: f64,
    /// How late batches left against their schedule, ms.
    pub lateness_ms: Vec<f64>,
    pub latencies_ms: Vec<f64>,
    pub markers: Vec<MarkerState>,
    /// Queries per probe and their latency (ms); failed queries (not 200/404).
    pub polls: [u64; 7],
    pub poll_latencies_ms: Vec<f64>,
    pub poll_errors: u64,
    /// Seconds after the last answer until every projection had applied every event.
    pub backlog_drained: Option<f64>,
}

impl FreshnessReport {
    pub fn achieved_rate(&self) -> f64 {
        self.accepted as f64 / self.elapsed.max(1e-9)
    }

    pub fn acked_markers(&self) -> usize {
        self.markers.iter().filter(|m| m.ack.is_some()).count()
    }

    /// Estimates of `probe` over the acknowledged markers (`None`: never seen).
    pub fn estimates(&self, probe: Probe) -> Vec<Option<f64>> {
        self.markers.iter().filter(|m| m.ack.is_some()).map(|m| m.tracks[probe.index()].estimate()).collect()
    }

    pub fn upper_bounds(&self, probe: Probe) -> Vec<Option<f64>> {
        self.markers.iter().filter(|m| m.ack.is_some()).map(|m| m.tracks[probe.index()].seen.map(|s| s.1)).collect()
    }

    /// Per marker, until it was visible in every covered read model (`None`: not in all).
    pub fn everywhere(&self) -> Vec<Option<f64>> {
        self.markers
            .iter()
            .filter(|m| m.ack.is_some())
            .map(|m| m.tracks.iter().map(Track::estimate).try_fold(0.0f64, |acc, v| v.map(|v| acc.max(v))))
            .collect()
    }

    /// Every (marker, read model) estimate.
    pub fn pooled(&self) -> Vec<Option<f64>> {
        Probe::ALL.iter().flat_map(|p| self.estimates(*p)).collect()
    }

    pub fn poll_count(&self) -> u64 {
        self.polls.iter().sum()
    }

    pub fn lateness(&self, p: f64) -> f64 {
        let mut v = self.lateness_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        percentile(&v, p)
    }

    pub fn latency(&self, p: f64) -> f64 {
        let mut v = self.latencies_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        percentile(&v, p)
    }

    pub fn poll_latency(&self, p: f64) -> f64 {
        let mut v = self.poll_latencies_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        percentile(&v, p)
    }
}

/// The phase's shared state (one thread: the bench's actix system).
struct State {
    started: Instant,
    report: FreshnessReport,
    /// Per probe, a query is unanswered.
    in_flight: [bool; 7],
    /// The newest marker sent.
    newest_sent: Option<usize>,
    sending_done: bool,
}

impl State {
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Acknowledged markers not yet seen by `probe`, oldest first.
    fn outstanding(&self, probe: Probe) -> Vec<(usize, f64)> {
        self.report
            .markers
            .iter()
            .enumerate()
            .filter(|(_, m)| m.tracks[probe.index()].seen.is_none())
            .filter_map(|(i, m)| Some((i, m.ack?)))
            .collect()
    }

    fn all_seen(&self) -> bool {
        Probe::ALL.iter().all(|p| self.outstanding(*p).is_empty())
    }
}

impl Bench<'_> {
    /// The freshness phase with its CPU cost (events: those accepted). `poll_gateway`
    /// answers the visibility queries; `projections` serves the applied counts.
    pub async fn freshness_phase(
        &self,
        gateway: &str,
        poll_gateway: &str,
        projections: &str,
        roles: &[RoleProcess],
    ) -> anyhow::Result<FreshnessReport> {
        let schedule = Schedule::new(self.options.freshness_rate, self.options.freshness_secs);
        eprintln!(
            "bench: steady-state freshness, {:.0} events/s offered for {:.0} s ({} batches, {} markers); preparing",
            schedule.rate,
            schedule.seconds(),
            schedule.batches,
            schedule.markers()
        );
        let bodies = self.freshness_bodies(&schedule);
        let offered_events: u64 = bodies.iter().map(|(n, _)| *n as u64).sum();
        let baseline = self.applied(projections).await.unwrap_or(0);
        let before = self.cpu(roles);
        let mut report = self.freshness(gateway, poll_gateway, projections, schedule, bodies, baseline).await;
        report.offered_events = offered_events;
        self.cost(
            roles,
            "steady-state freshness (offered load, then until every marker is seen)",
            "events",
            report.accepted,
            &before,
        );
        Ok(report)
    }

    /// The batches' bodies (events of the simulator's plans, in time order, 100 a batch),
    /// markers appended to theirs.
    fn freshness_bodies(&self, schedule: &Schedule) -> Vec<(usize, Bytes)> {
        let chunk = (self.options.events.max(1000) / BATCH) * BATCH;
        let mut bodies = Vec::with_capacity(schedule.batches);
        let mut seed = 100;
        while bodies.len() < schedule.batches {
            let mut events = self.plan(seed, chunk);
            seed += 1;
            events.sort_by_key(|e| e.timestamp);
            for batch in events.chunks(BATCH) {
                if bodies.len() == schedule.batches {
                    break;
                }
                let j = bodies.len();
                let body = json!({"events": batch.iter().map(wire).collect::<Vec<_>>()});
                let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
                let mut count = batch.len();
                if let Some(i) = schedule.marker_of(j) {
                    let ids = std::array::from_fn(|_| uuid::Uuid::new_v4());
                    if let Some(with) = append_events(&bytes, &marker_events(i, ids)) {
                        bytes = with;
                        count += MARKER_EVENTS;
                    }
                }
                bodies.push((count, Bytes::from(bytes)));
            }
        }
        bodies
    }

    async fn freshness(
        &self,
        gateway: &str,
        poll_gateway: &str,
        projections: &str,
        schedule: Schedule,
        bodies: Vec<(usize, Bytes)>,
        baseline: u64,
    ) -> FreshnessReport {
        let client = awc::Client::builder()
            .connector(awc::Connector::new().limit(2048))
            .timeout(Duration::from_secs(30))
            .finish();
        let markers = vec![MarkerState::default(); schedule.markers()];
        let state = Rc::new(RefCell::new(State {
            started: Instant::now(),
            report: FreshnessReport { schedule: Some(schedule), markers, ..Default::default() },
            in_flight: [false; 7],
            newest_sent: None,
            sending_done: false,
        }));
        let poller = actix_rt::spawn(poll(
            client.clone(),
            poll_gateway.to_string(),
            self.credentials.token.clone(),
            state.clone(),
        ));
        let endpoint = format!("{gateway}/v1/events");
        let auth = format!("Bearer {}", self.key);
        let started = state.borrow().started;
        let mut tasks = Vec::with_capacity(bodies.len());
        for (j, (count, body)) in bodies.into_iter().enumerate() {
            let due = started + schedule.due(j);
            actix_rt::time::sleep_until(due.into()).await;
            let marker = schedule.marker_of(j);
            {
                let mut s = state.borrow_mut();
                s.report.lateness_ms.push(due.elapsed().as_secs_f64() * 1000.0);
                if marker.is_some() {
                    s.newest_sent = marker;
                }
            }
            let request = client
                .post(&endpoint)
                .insert_header(("Authorization", auth.as_str()))
                .insert_header(("Content-Type", "application/json"));
            tasks.push(actix_rt::spawn(send_batch(request, body, count, marker, state.clone())));
        }
        for task in tasks {
            let _ = task.await;
        }
        let sends_ended = Instant::now();
        state.borrow_mut().sending_done = true;
        let _ = poller.await;
        // The backlog: until every projection has applied every accepted event.
        let accepted = state.borrow().report.accepted;
        let mut drained = None;
        while sends_ended.elapsed() < DRAIN {
            if self.applied(projections).await.unwrap_or(0) >= baseline + accepted {
                drained = Some(sends_ended.elapsed().as_secs_f64());
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        let mut report = std::mem::take(&mut state.borrow_mut().report);
        report.backlog_drained = drained;
        report
    }
}

/// Sends one batch; on its 202, records the acknowledgement of its marker (every marker
/// event accepted).
async fn send_batch(
    request: awc::ClientRequest,
    body: Bytes,
    count: usize,
    marker: Option<usize>,
    state: Rc<RefCell<State>>,
) {
    let t0 = Instant::now();
    let response = request.send_body(body).await;
    let (status, mut response) = match response {
        Ok(r) => (r.status().as_u16(), Some(r)),
        Err(_) => (0, None),
    };
    let acked_at = state.borrow().now();
    let took = t0.elapsed().as_secs_f64() * 1000.0;
    let parsed: Value = match response.as_mut() {
        Some(r) if status == 202 => r.json().limit(16 << 20).await.unwrap_or(Value::Null),
        Some(r) => {
            let _ = r.body().limit(1 << 20).await;
            Value::Null
        }
        None => Value::Null,
    };
    let statuses: Vec<bool> = parsed
        .get("results")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|r| r.get("status").and_then(Value::as_str) == Some("accepted")).collect())
        .unwrap_or_default();
    let mut s = state.borrow_mut();
    s.report.requests += 1;
    s.report.latencies_ms.push(took);
    if status != 202 {
        *s.report.errors.entry(status).or_default() += 1;
        return;
    }
    s.report.accepted += statuses.iter().filter(|ok| **ok).count() as u64;
    s.report.elapsed = s.report.elapsed.max(acked_at);
    if let Some(i) = marker {
        let marker_ok = statuses.len() == count && statuses[count - MARKER_EVENTS..].iter().all(|ok| *ok);
        if marker_ok {
            if let Some(m) = s.report.markers.get_mut(i) {
                m.ack = Some(acked_at);
            }
        }
    }
}

/// Polls the read models every [`POLL_INTERVAL`] until every acknowledged marker is seen
/// everywhere after the last send, or [`DRAIN`] after it.
async fn poll(client: awc::Client, gateway: String, token: String, state: Rc<RefCell<State>>) {
    let auth = Rc::new(format!("Bearer {token}"));
    let mut done_at: Option<Instant> = None;
    loop {
        {
            let s = state.borrow();
            if s.sending_done {
                let at = *done_at.get_or_insert_with(Instant::now);
                if s.all_seen() || at.elapsed() >= DRAIN {
                    break;
                }
            }
        }
        for probe in Probe::ALL {
            let outstanding = state.borrow().outstanding(probe);
            if outstanding.is_empty() {
                continue;
            }
            if probe == Probe::Profiles {
                let mut started = 0;
                for (i, ack) in outstanding {
                    if started == MAX_PROFILE_POLLS {
                        break;
                    }
                    let busy = state.borrow().report.markers[i].profile_in_flight;
                    if busy {
                        continue;
                    }
                    state.borrow_mut().report.markers[i].profile_in_flight = true;
                    started += 1;
                    let url = probe.url(&gateway, i, i);
                    let (client, auth, state) = (client.clone(), auth.clone(), state.clone());
                    actix_rt::spawn(async move {
                        query(&client, &url, &auth, probe, vec![(i, ack)], &state).await;
                        state.borrow_mut().report.markers[i].profile_in_flight = false;
                    });
                }
                continue;
            }
            if state.borrow().in_flight[probe.index()] {
                continue;
            }
            let first = outstanding[0].0;
            let newest = state.borrow().newest_sent.unwrap_or(first);
            let last =
                outstanding.last().map_or(first, |o| o.0).max(if probe == Probe::Leaderboards { newest } else { 0 });
            let covered: Vec<(usize, f64)> =
                outstanding.into_iter().filter(|(i, _)| *i < first + MAX_RANGE_DAYS).collect();
            state.borrow_mut().in_flight[probe.index()] = true;
            let url = probe.url(&gateway, first, last);
            let (client, auth, state) = (client.clone(), auth.clone(), state.clone());
            actix_rt::spawn(async move {
                query(&client, &url, &auth, probe, covered, &state).await;
                state.borrow_mut().in_flight[probe.index()] = false;
            });
        }
        actix_rt::time::sleep(POLL_INTERVAL).await;
    }
}

/// One visibility query for `markers` ((index, acknowledgement)).
async fn query(
    client: &awc::Client,
    url: &str,
    auth: &str,
    probe: Probe,
    markers: Vec<(usize, f64)>,
    state: &Rc<RefCell<State>>,
) {
    let sent = state.borrow().now();
    let response = client.get(url).insert_header(("Authorization", auth)).send().await;
    let answer = match response {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let body = r.body().limit(16 << 20).await.ok();
            match (status, body) {
                (200, Some(b)) => serde_json::from_slice::<Value>(&b).ok(),
                (404, Some(_)) if probe == Probe::Profiles => Some(Value::Null),
                _ => None,
            }
        }
        Err(_) => None,
    };
    let mut s = state.borrow_mut();
    let answered = s.now();
    s.report.polls[probe.index()] += 1;
    s.report.poll_latencies_ms.push((answered - sent) * 1000.0);
    let Some(body) = answer else {
        s.report.poll_errors += 1;
        return;
    };
    let marker = markers.first().map_or(0, |m| m.0);
    let visible = probe.visible(&body, marker);
    for (i, ack) in markers {
        if let Some(m) = s.report.markers.get_mut(i) {
            m.tracks[probe.index()].observe(ack, sent, answered, visible.binary_search(&i).is_ok());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_open_loop_at_the_offered_rate() {
        let s = Schedule::new(20_000.0, 60);
        assert_eq!(s.batches, 12_000);
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(200), Duration::from_secs(1));
        assert!((s.due(11_999).as_secs_f64() - 59.995).abs() < 1e-9);
        assert!((s.seconds() - 60.0).abs() < 1e-9);
        // Due times depend on the index alone: a slow answer cannot push the next send back.
        let gaps: Vec<f64> = (1..100).map(|j| (s.due(j) - s.due(j - 1)).as_secs_f64()).collect();
        assert!(gaps.iter().all(|g| (g - 0.005).abs() < 1e-9));
        let slow = Schedule::new(1_000.0, 10);
        assert_eq!((slow.batches, slow.due(10)), (100, Duration::from_secs(1)));
    }

    #[test]
    fn markers_come_at_five_per_second_in_the_middle_of_their_group() {
        let s = Schedule::new(20_000.0, 60);
        assert_eq!(s.marker_every, 40);
        assert_eq!(s.markers(), 300);
        assert_eq!(s.marker_of(20), Some(0));
        assert_eq!(s.marker_of(60), Some(1));
        assert_eq!(s.marker_of(0), None);
        assert_eq!(s.marker_of(21), None);
        let markers: Vec<usize> = (0..s.batches).filter_map(|j| s.marker_of(j)).collect();
        assert_eq!(markers, (0..300).collect::<Vec<_>>(), "consecutive, each once");
        // Below 500 events/s every batch carries one.
        let low = Schedule::new(200.0, 5);
        assert_eq!((low.marker_every, low.markers()), (1, 10));
    }

    #[test]
    fn each_marker_has_a_day_and_player_of_its_own() {
        assert_eq!(marker_day(0), NaiveDate::from_ymd_opt(2001, 1, 1).unwrap());
        assert_eq!(marker_day(365), NaiveDate::from_ymd_opt(2002, 1, 1).unwrap());
        for i in [0, 1, 59, 1000] {
            assert_eq!(day_marker(marker_day(i)), Some(i));
            assert_eq!(player_marker(&marker_player(i)), Some(i));
        }
        assert_eq!(day_marker(NaiveDate::from_ymd_opt(2000, 12, 31).unwrap()), None);
        let ids = std::array::from_fn(|n| uuid::Uuid::from_u128(n as u128 + 1));
        let events = marker_events(7, ids);
        assert_eq!(events.len(), MARKER_EVENTS);
        for e in &events {
            assert_eq!(e["player_id"], "freshness-marker-7");
            assert!(e["client_ts"].as_str().unwrap().starts_with("2001-01-08T12:00:0"));
        }
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["session_start", "progression", "purchase", "score"]);
        assert_eq!(events[3]["properties"]["value"], 8);
    }

    #[test]
    fn marker_events_are_spliced_into_a_batch_body() {
        let body = serde_json::to_vec(&json!({"events": [{"a": 1}]})).unwrap();
        let out = append_events(&body, &[json!({"b": 2}), json!({"c": 3})]).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, json!({"events": [{"a": 1}, {"b": 2}, {"c": 3}]}));
        let empty = serde_json::to_vec(&json!({"events": []})).unwrap();
        let v: Value = serde_json::from_slice(&append_events(&empty, &[json!(1)]).unwrap()).unwrap();
        assert_eq!(v, json!({"events": [1]}));
        assert!(append_events(b"{\"other\":[1]}", &[json!(1)]).is_none());
    }

    #[test]
    fn answers_show_the_markers_they_hold() {
        let d = |i| marker_day(i).to_string();
        let active = json!({"days": [{"day": d(3), "dau": 1}, {"day": d(4), "dau": 0}, {"day": d(5), "dau": 2}]});
        assert_eq!(Probe::DailyActivity.visible(&active, 0), vec![3, 5]);
        let sessions = json!({"days": [{"day": d(3), "sessions_started": 0}, {"day": d(4), "sessions_started": 1}]});
        assert_eq!(Probe::Sessions.visible(&sessions, 0), vec![4]);
        let revenue = json!({"days": [{"day": d(9), "currency": "USD", "purchases": 1}, {"day": d(9), "currency": "EUR", "purchases": 1}]});
        assert_eq!(Probe::Revenue.visible(&revenue, 0), vec![9]);
        let retention = json!({"cohorts": [{"day": d(2), "players": 1}, {"day": d(7), "players": 0}]});
        assert_eq!(Probe::Retention.visible(&retention, 0), vec![2]);
        let funnel = json!({"steps": [{"level_id": "level-1", "completes": 40}, {"level_id": "freshness-marker-6", "completes": 1}, {"level_id": "freshness-marker-8", "completes": 0}]});
        assert_eq!(Probe::Funnel.visible(&funnel, 0), vec![6]);
        let board = json!({"entries": [{"rank": 1, "player_id": "freshness-marker-12", "score": 13}, {"rank": 2, "player_id": "player-1", "score": 3}]});
        assert_eq!(Probe::Leaderboards.visible(&board, 0), vec![12]);
        let profile = |events| json!({"player_id": "freshness-marker-4", "events": events});
        assert_eq!(Probe::Profiles.visible(&profile(4), 4), vec![4]);
        assert!(Probe::Profiles.visible(&profile(3), 4).is_empty(), "not every marker event yet");
        assert!(Probe::Profiles.visible(&profile(4), 5).is_empty(), "another player's profile");
        assert!(Probe::Profiles.visible(&Value::Null, 4).is_empty(), "404");
    }

    #[test]
    fn queries_cover_the_outstanding_markers() {
        let g = "http://gw";
        assert_eq!(
            Probe::DailyActivity.url(g, 3, 5),
            "http://gw/v1/analytics/bench/active-users?from=2001-01-04&to=2001-01-06"
        );
        assert_eq!(Probe::Profiles.url(g, 3, 3), "http://gw/v1/players/bench/freshness-marker-3");
        assert_eq!(
            Probe::Leaderboards.url(g, 3, 12),
            "http://gw/v1/leaderboards/bench/freshness-markers?period=all_time&limit=10"
        );
        // The gateway's widest range is 366 days.
        assert!(Probe::Revenue.url(g, 0, 1000).ends_with("from=2001-01-01&to=2002-01-01"));
    }

    #[test]
    fn visibility_is_bounded_by_the_last_miss_and_the_first_hit() {
        let mut t = Track::default();
        t.observe(10.0, 9.9, 10.0, false); // sent before the acknowledgement: no information
        assert_eq!(t.last_negative, None);
        t.observe(10.0, 10.1, 10.12, false);
        t.observe(10.0, 10.2, 10.23, false);
        t.observe(10.0, 10.3, 10.34, true);
        let (lo, hi) = t.seen.unwrap();
        assert!((lo - 0.2).abs() < 1e-9 && (hi - 0.34).abs() < 1e-9, "{lo} {hi}");
        assert!((t.estimate().unwrap() - 0.27).abs() < 1e-9);
        // Later answers change nothing.
        t.observe(10.0, 11.0, 11.1, true);
        assert_eq!(t.seen, Some((lo, hi)));
        // Seen on the first query: between the acknowledgement and that answer.
        let mut first = Track::default();
        first.observe(5.0, 5.0, 5.02, true);
        let (lo, hi) = first.seen.unwrap();
        assert!(lo == 0.0 && (hi - 0.02).abs() < 1e-9, "{lo} {hi}");
        // Not queried for 30 s after its acknowledgement, then seen: the midpoint (15 s)
        // could be far before the visibility, so the figure is the upper bound.
        let mut late = Track::default();
        late.observe(1.0, 31.0, 31.05, true);
        assert_eq!(late.seen.map(|s| s.0), Some(0.0));
        assert!((late.estimate().unwrap() - 30.05).abs() < 1e-9);
    }

    #[test]
    fn percentiles_count_markers_never_seen_as_slowest() {
        let values: Vec<Option<f64>> = (1..=100).map(|i| Some(i as f64)).collect();
        assert_eq!(censored_percentile(&values, 0.5), Some(51.0));
        assert_eq!(censored_percentile(&values, 0.99), Some(99.0));
        let mut some_missing = values.clone();
        some_missing[0] = None;
        some_missing[1] = None;
        // Two of 100 never seen: the p99 rank (99th of 100) falls on one of them.
        assert_eq!(censored_percentile(&some_missing, 0.99), None);
        assert_eq!(censored_percentile(&some_missing, 0.5), Some(53.0));
        assert_eq!(censored_percentile(&[], 0.5), None);
    }

    #[test]
    fn per_read_model_and_overall_figures() {
        let track = |lo: f64, hi: f64| Track { last_negative: None, seen: Some((lo, hi)) };
        let mut a = MarkerState { ack: Some(1.0), ..Default::default() };
        let mut b = MarkerState { ack: Some(2.0), ..Default::default() };
        for p in Probe::ALL {
            a.tracks[p.index()] = track(0.1, 0.3);
            b.tracks[p.index()] = track(0.2, 0.4);
        }
        a.tracks[Probe::Funnel.index()] = track(0.9, 1.1);
        b.tracks[Probe::Leaderboards.index()] = Track::default(); // never seen
        let lost = MarkerState::default(); // its batch was not acknowledged: not counted
        let report = FreshnessReport { markers: vec![a, b, lost], ..Default::default() };
        assert_eq!(report.acked_markers(), 2);
        let f = report.estimates(Probe::Funnel);
        assert!((f[0].unwrap() - 1.0).abs() < 1e-9 && (f[1].unwrap() - 0.3).abs() < 1e-9);
        assert_eq!(report.estimates(Probe::Leaderboards)[1], None);
        let everywhere = report.everywhere();
        assert!((everywhere[0].unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(everywhere[1], None, "not visible in every read model");
        assert_eq!(report.pooled().len(), 14);
        assert_eq!(report.upper_bounds(Probe::Funnel)[0], Some(1.1));
    }
}
