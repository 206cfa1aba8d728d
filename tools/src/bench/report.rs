//! The report of the throughput bench: one row per figure with its target and ratio, the
//! CPU cost of each phase per process, and notes on how it was measured. Over several runs
//! every figure is the median, followed by the spread (smallest–largest) in parentheses;
//! verdicts and ratios are taken on the median.

use super::freshness::{
    censored_percentile, FreshnessReport, Probe, BATCH, MARKER_EVENTS, MAX_MIDPOINT_WIDTH_S, MAX_PROFILE_POLLS,
    POLL_INTERVAL, TARGET_P99_S,
};
use super::queries::QueryLoad;
use super::run::Run;
use super::send::SendReport;
use super::stats::Spread;
use super::Mode;
use chrono::{DateTime, Utc};
use std::fmt::Write as _;

const TARGET_INGEST_P99_MS: f64 = 10.0;
const TARGET_PIPELINE_P99_S: f64 = 2.0;
const TARGET_GATEWAY_RSS_MB: f64 = 100.0;

/// The throughput targets of a mode: production's, or the embedded default's (a laptop's
/// single process on SQLite; where it has none of its own, production's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Targets {
    pub ingest: f64,
    pub single: f64,
    pub pipeline: f64,
    /// Consumers applying a backlog (production: actors and projections started after it).
    pub catch_up: Option<f64>,
    pub recommendations: f64,
    pub recommendations_p99_ms: Option<f64>,
    pub analytics: f64,
    pub analytics_p99_ms: f64,
}

impl Targets {
    pub fn of(mode: Mode) -> Self {
        match mode {
            Mode::Production => Self {
                ingest: 100_000.0,
                single: 15_000.0,
                pipeline: 50_000.0,
                catch_up: Some(60_000.0),
                recommendations: 10_000.0,
                recommendations_p99_ms: Some(10.0),
                analytics: 5_000.0,
                analytics_p99_ms: 50.0,
            },
            Mode::Embedded => Self {
                ingest: 50_000.0,
                single: 15_000.0,
                pipeline: 20_000.0,
                catch_up: None,
                recommendations: 5_000.0,
                recommendations_p99_ms: None,
                analytics: 2_000.0,
                analytics_p99_ms: 50.0,
            },
        }
    }
}

/// "≥ 12,345 what".
fn at_least(value: f64, what: &str) -> String {
    format!("≥ {} {what}", thousands(value))
}

/// A row: what, figure, target, ratio / verdict.
type Row = [String; 4];

/// One of a run's send reports.
type RunSend = fn(&Run) -> &SendReport;

pub(super) struct Machine {
    cpus: usize,
    model: String,
    memory_gib: f64,
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kb: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Self {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            model,
            memory_gib: kb / 1024.0 / 1024.0,
        }
    }

    /// `2 × CPU, 24 GiB, load average … <when>`.
    pub fn line(&self, when: &str) -> String {
        let load = super::cpu::load_average();
        format!("{} × {}, {:.0} GiB, load average {load} {when}", self.cpus, self.model, self.memory_gib)
    }
}

pub(super) struct Report {
    mode: Mode,
    machine: Machine,
    runs: Vec<Run>,
}

impl Report {
    pub fn new(mode: Mode, runs: Vec<Run>) -> Self {
        Self { mode, machine: Machine::read(), runs }
    }

    fn started_at(&self) -> DateTime<Utc> {
        self.runs.first().map_or_else(Utc::now, |r| r.started_at)
    }

    /// A figure over the runs.
    fn spread(&self, f: impl Fn(&Run) -> f64) -> Spread {
        Spread::of(self.runs.iter().map(f))
    }

    /// Rows of (what, figure, target, ratio / verdict).
    fn rows(&self) -> Vec<Row> {
        let mut rows = self.fill_rows();
        rows.extend(self.ingest_rows());
        rows.extend(self.pipeline_rows());
        rows.extend(self.catch_up_rows());
        rows.extend(self.reference_rows());
        rows.extend(self.query_rows());
        rows.extend(self.freshness_rows());
        rows.extend(self.rss_rows());
        rows
    }

    /// The fill before the phases (`--fill-players`/`--fill-events`), and the bytes stored
    /// per event after it.
    fn fill_rows(&self) -> Vec<Row> {
        let Some(fill) = self.runs.first().and_then(|r| r.fill.as_ref()) else { return Vec::new() };
        let rate = self.spread(|r| r.fill.as_ref().map_or(0.0, |f| f.events_per_second()));
        let n = fill.accepted.max(1) as f64;
        let per_event = |bytes: u64| format!("{:.0} B/event", bytes as f64 / n);
        let dash = || "—".to_string();
        let mut rows = vec![[
            format!(
                "fill before the phases: {} players, {} events (even shares, simulated lives over the last {} days) through POST /v1/events in batches of 100, 32 concurrent requests, with gateway, actors and projections running (each its own process)",
                thousands(fill.plan.players as f64),
                thousands(fill.plan.events as f64),
                fill.plan.days
            ),
            format!(
                "**{} events/s** until every projection had applied every event ({} s; the last request answered at {} s); {} accepted in {} requests ({} retries); the fill's roles stopped (SIGTERM) in {} s{}",
                rate.show(thousands),
                s1(fill.applied.as_secs_f64()),
                s1(fill.sent.as_secs_f64()),
                thousands(fill.accepted as f64),
                thousands(fill.requests as f64),
                fill.retries,
                s1(fill.stopped.as_secs_f64()),
                if fill.stopped_cleanly { "" } else { " (not all in 300 s: killed)" }
            ),
            dash(),
            dash(),
        ]];
        let store = if self.mode == Mode::Production { "PostgreSQL" } else { "embedded data directory" };
        let parts: Vec<String> = fill
            .store_parts
            .iter()
            .filter(|(_, b)| *b > 0)
            .map(|(name, bytes)| format!("{name} {} MB ({})", s1(*bytes as f64 / 1e6), per_event(*bytes)))
            .collect();
        rows.push([
            format!("{store} after the fill, bytes stored per event (the store's total ÷ the fill's events; per table with indexes and TOAST, partitions in their table)"),
            format!("**{}** ({} MB in all): {}", per_event(fill.store_total), s1(fill.store_total as f64 / 1e6), parts.join(", ")),
            dash(),
            dash(),
        ]);
        if let Some(topics) = &fill.kafka_topics {
            let log: u64 = topics.iter().map(|t| t.log_bytes).sum();
            let disk: u64 = topics.iter().map(|t| t.disk_bytes).sum();
            let each: Vec<String> = topics
                .iter()
                .map(|t| format!("{} {} MB ({})", t.topic, s1(t.log_bytes as f64 / 1e6), per_event(t.log_bytes)))
                .collect();
            rows.push([
                "Kafka after the fill, bytes stored per event (the run's topics' segment files ÷ the fill's events; on disk with indexes in parentheses)".into(),
                format!("**{}** ({} MB; on disk {}): {}", per_event(log), s1(log as f64 / 1e6), per_event(disk), each.join(", ")),
                dash(),
                dash(),
            ]);
        }
        rows
    }

    fn ingest_rows(&self) -> Vec<Row> {
        let store = if self.mode == Mode::Production { "Kafka" } else { "embedded log" };
        let rate = self.spread(|r| r.ingest.events_per_second());
        let i = self.runs.first().map(|r| &r.ingest);
        let half_rate = self.spread(|r| r.half_rate);
        let half_p99 = self.spread(|r| r.ingest_half.latency(0.99));
        let target = Targets::of(self.mode).ingest;
        let below = half_rate.median < target / 2.0;
        vec![
            [
                format!(
                    "ingest HTTP → {store}, batches of 100, 32 concurrent requests ({} events)",
                    i.map_or(0, |i| i.accepted)
                ),
                format!(
                    "**{} events/s**; request p50 {} ms, p99 {} ms",
                    rate.show(thousands),
                    self.spread(|r| r.ingest.latency(0.5)).show(ms1),
                    self.spread(|r| r.ingest.latency(0.99)).show(ms1)
                ),
                at_least(target, "events/s"),
                format!("{:.0}% of target, {}", 100.0 * rate.median / target, verdict(rate.median >= target)),
            ],
            [
                format!(
                    "same, rate-limited to half the rate above ({} events/s requested, {} achieved)",
                    half_rate.show(thousands),
                    self.spread(|r| r.ingest_half.events_per_second()).show(thousands)
                ),
                format!(
                    "request p50 {} ms, **p99 {} ms**",
                    self.spread(|r| r.ingest_half.latency(0.5)).show(ms1),
                    half_p99.show(ms1)
                ),
                "p99 < 10 ms at 50,000 events/s".into(),
                format!(
                    "{}{}",
                    verdict(half_p99.median < TARGET_INGEST_P99_MS && !below),
                    if below {
                        format!(" (measured at {} events/s, below 50,000)", thousands(half_rate.median))
                    } else {
                        String::new()
                    }
                ),
            ],
        ]
        .into_iter()
        .chain(self.single_rows())
        .collect()
    }

    /// The one-event-per-request phase on each route.
    fn single_rows(&self) -> Vec<Row> {
        let single = Targets::of(self.mode).single;
        let routes: [(&str, RunSend, usize); 2] = [
            ("POST /v1/events", |r| &r.ingest_single, 0),
            ("POST /api/v1/events (the previous platform's route)", |r| &r.ingest_single_legacy, 1),
        ];
        routes
            .into_iter()
            .map(|(route, of, k)| {
                let first = self.runs.first().map(of);
                let rate = self.spread(|r| of(r).requests_per_second());
                let firsts = self.runs.first().map_or(0, |r| r.single_firsts[k]);
                let requests = first.map_or(0, |s| s.planned);
                let errors: Vec<String> = self
                    .runs
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| !of(r).errors.is_empty())
                    .map(|(i, r)| format!("run {}: {}", i + 1, of(r).error_summary()))
                    .collect();
                let errors = if errors.is_empty() {
                    "every answer final at once (no 5xx, 429 or timeout)".to_string()
                } else {
                    format!("answers retried — {}", errors.join("; "))
                };
                [
                    format!(
                        "ingest, one event per request, {route}, {} concurrent requests ({requests} requests; {firsts} of them ({:.1}%) the first event of a player never seen before)",
                        first.map_or(0, |s| s.lanes),
                        100.0 * firsts as f64 / requests.max(1) as f64
                    ),
                    format!(
                        "**{} requests/s**; p50 {} ms, p99 {} ms; {errors}",
                        rate.show(thousands),
                        self.spread(|r| of(r).latency(0.5)).show(ms1),
                        self.spread(|r| of(r).latency(0.99)).show(ms1)
                    ),
                    at_least(single, "requests/s"),
                    format!("{:.0}% of target, {}", 100.0 * rate.median / single, verdict(rate.median >= single)),
                ]
            })
            .collect()
    }

    /// The steady-state freshness phase: offered and achieved load, then per read model
    /// acknowledgement → visible (p50, p99), every read model, and the polling's cost.
    fn freshness_rows(&self) -> Vec<Row> {
        let reports: Vec<&FreshnessReport> = self.runs.iter().filter_map(|r| r.freshness.as_ref()).collect();
        let Some(first) = reports.first() else { return Vec::new() };
        let Some(schedule) = first.schedule else { return Vec::new() };
        let of = |f: &dyn Fn(&FreshnessReport) -> f64| Spread::of(reports.iter().map(|r| f(r)));
        let errors: Vec<String> = reports
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.errors.is_empty())
            .map(|(i, r)| {
                let e: Vec<String> = r.errors.iter().map(|(s, n)| format!("{s} ×{n}")).collect();
                format!("run {}: {}", i + 1, e.join(", "))
            })
            .collect();
        let mut rows = vec![[
            format!(
                "steady-state freshness: offered load, open loop ({} events/s in batches of {BATCH} sent on schedule whatever the answers, {:.0} s, every role running; plus {} marker events per {:.1} s)",
                thousands(schedule.rate),
                schedule.seconds(),
                MARKER_EVENTS,
                schedule.marker_every as f64 * BATCH as f64 / schedule.rate
            ),
            format!(
                "**{} events/s achieved** (accepted ÷ first send to last answer); {} of {} offered events accepted; batches late against the schedule p99 {} ms, max {} ms; request p50 {} ms, p99 {} ms; {}; every event applied by every projection {} after the last answer",
                of(&|r| r.achieved_rate()).show(thousands),
                of(&|r| r.accepted as f64).show(|v| format!("{v:.0}")),
                first.offered_events,
                of(&|r| r.lateness(0.99)).show(ms1),
                of(&|r| r.lateness(1.0)).show(ms1),
                of(&|r| r.latency(0.5)).show(ms1),
                of(&|r| r.latency(0.99)).show(ms1),
                if errors.is_empty() { "no batch refused or failed".to_string() } else { format!("batches not answered 202: {}", errors.join("; ")) },
                censored_show(reports.iter().map(|r| r.backlog_drained).collect(), "s", "not within the drain"),
            ),
            format!("{} events/s offered", thousands(schedule.rate)),
            format!("{:.0}% of offered", 100.0 * of(&|r| r.achieved_rate()).median / schedule.rate),
        ]];
        let figure = |values: &dyn Fn(&FreshnessReport) -> Vec<Option<f64>>| {
            let p50 =
                censored_show(reports.iter().map(|r| censored_percentile(&values(r), 0.5)).collect(), "s", "not seen");
            let p99s: Vec<Option<f64>> = reports.iter().map(|r| censored_percentile(&values(r), 0.99)).collect();
            let ok = p99s.iter().all(|p| p.is_some_and(|v| v < TARGET_P99_S));
            let p99 = censored_show(p99s, "s", "not seen");
            (p50, p99, ok)
        };
        for probe in Probe::ALL {
            let (p50, p99, ok) = figure(&|r| r.estimates(probe));
            let (_, upper, _) = figure(&|r| r.upper_bounds(probe));
            let seen = of(&|r| r.estimates(probe).iter().flatten().count() as f64).show(|v| format!("{v:.0}"));
            rows.push([
                format!("acknowledgement → visible in **{}**, per marker event (same run)", probe.read_model()),
                format!(
                    "p50 {p50}, **p99 {p99}** (upper bound p99 {upper}); {seen} of {} markers seen",
                    first.acked_markers()
                ),
                "p99 < 1 s".into(),
                verdict(ok).into(),
            ]);
        }
        let (p50, p99, ok) = figure(&|r| r.pooled());
        rows.push([
            "acknowledgement → visible, every covered read model pooled (each marker × read model)".into(),
            format!("p50 {p50}, **p99 {p99}**"),
            "p99 < 1 s".into(),
            verdict(ok).into(),
        ]);
        let (p50, p99, ok) = figure(&|r| r.everywhere());
        rows.push([
            format!(
                "acknowledgement → visible in all {} covered read models at once (per marker, the slowest)",
                Probe::ALL.len()
            ),
            format!("p50 {p50}, **p99 {p99}**"),
            "p99 < 1 s".into(),
            verdict(ok).into(),
        ]);
        rows.push([
            "freshness polling (visibility queries through the public API)".into(),
            format!(
                "{} queries ({} per s of the phase), {} failed; query latency p50 {} ms, p99 {} ms; resolution: the figures are the midpoint between the last query not showing the marker and the first answer showing it, the bounds {POLL_INTERVAL:?} + one query apart (that answer's time when they are more than {MAX_MIDPOINT_WIDTH_S} s apart)",
                of(&|r| r.poll_count() as f64).show(|v| format!("{v:.0}")),
                of(&|r| r.poll_count() as f64 / (r.elapsed.max(1.0) + r.backlog_drained.unwrap_or(0.0))).show(|v| format!("{v:.0}")),
                of(&|r| r.poll_errors as f64).show(|v| format!("{v:.0}")),
                of(&|r| r.poll_latency(0.5)).show(ms1),
                of(&|r| r.poll_latency(0.99)).show(ms1),
            ),
            "—".into(),
            "—".into(),
        ]);
        rows
    }

    fn pipeline_rows(&self) -> Vec<Row> {
        let rate = self.spread(|r| r.pipeline.events_per_second());
        let p99 = self.spread(|r| r.pipeline.latency_p99_s);
        let events = self.runs.first().map_or(0, |r| r.pipeline.events);
        let target = Targets::of(self.mode).pipeline;
        vec![
            [
                format!(
                    "whole pipeline, live (ingest → actors → {} projections), {events} events, batches of 100",
                    gm_projections::ProjectionName::ALL.len()
                ),
                format!(
                    "**{} events/s** (last event in every read model {} s after the first request; ingest alone took {} s)",
                    rate.show(thousands),
                    self.spread(|r| r.pipeline.elapsed.as_secs_f64()).show(s1),
                    self.spread(|r| r.pipeline.ingest.elapsed.as_secs_f64()).show(s1)
                ),
                at_least(target, "events/s"),
                format!("{:.0}% of target, {}", 100.0 * rate.median / target, verdict(rate.median >= target)),
            ],
            [
                "event-to-read-model latency, same run".into(),
                format!("p50 {} s, **p99 {} s**", self.spread(|r| r.pipeline.latency_p50_s).show(s2), p99.show(s2)),
                "p99 < 2 s".into(),
                verdict(p99.median < TARGET_PIPELINE_P99_S).into(),
            ],
        ]
    }

    fn catch_up_rows(&self) -> Vec<Row> {
        let what = if self.mode == Mode::Production {
            "actors + projections catching up with the backlog of the ingest phases (spawned after them, no concurrent ingest; the clock starts at their spawn)"
        } else {
            "projections finishing the events of the ingest phases (after the last request)"
        };
        // The rate is over the time after the first applied event: the processes' start and
        // group join are shown apart, not counted as consumption.
        let consuming = |r: &Run| (r.catch_up.elapsed.saturating_sub(r.catch_up.startup)).as_secs_f64().max(1e-3);
        let rate = |r: &Run| r.catch_up.events as f64 / consuming(r);
        let target = Targets::of(self.mode).catch_up;
        let mut rows = vec![[
            what.into(),
            format!(
                "{} events in {} s after {} s of start-up = **{} events/s**",
                self.spread(|r| r.catch_up.events as f64).show(|v| format!("{v:.0}")),
                self.spread(consuming).show(s1),
                self.spread(|r| r.catch_up.startup.as_secs_f64()).show(s1),
                self.spread(rate).show(thousands)
            ),
            target.map_or_else(|| "—".into(), |t| at_least(t, "events/s")),
            target.map_or_else(|| "—".into(), |t| verdict(self.spread(rate).median >= t).into()),
        ]];
        let names: Vec<&'static str> =
            self.runs.first().map(|r| r.catch_up.per_projection.iter().map(|p| p.0).collect()).unwrap_or_default();
        let done = |r: &Run, i: usize| r.catch_up.per_projection.get(i).and_then(|p| p.1);
        if self.runs.iter().any(|r| r.catch_up.per_projection.iter().any(|p| p.1.is_some())) {
            let each: Vec<String> = names
                .iter()
                .enumerate()
                .map(|(i, name)| match self.runs.iter().all(|r| done(r, i).is_some()) {
                    true => {
                        format!("{name} {} s", self.spread(|r| done(r, i).map_or(0.0, |d| d.as_secs_f64())).show(s1))
                    }
                    false => format!("{name} not done"),
                })
                .collect();
            rows.push([
                "same catch-up, time for each projection to apply the whole backlog".into(),
                each.join(", "),
                "—".into(),
                "—".into(),
            ]);
        }
        rows
    }

    fn reference_rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let ingest = self.spread(|r| r.ingest.events_per_second()).median;
        let labels: Vec<(String, u64)> = self
            .runs
            .first()
            .map(|r| r.kafka.iter().map(|k| (k.label.clone(), k.records)).collect())
            .unwrap_or_default();
        for (i, (label, records)) in labels.into_iter().enumerate() {
            let runs: Vec<&super::kafka::KafkaReport> = self.runs.iter().filter_map(|r| r.kafka.get(i)).collect();
            let rate = Spread::of(runs.iter().map(|k| k.records_per_second));
            rows.push([
                format!("Kafka ProducerPerformance, {records} records of {label}, acks=all, idempotence, linger 5 ms, lz4, same run"),
                format!(
                    "{} records/s; p50 {} ms, p99 {} ms",
                    rate.show(thousands),
                    Spread::of(runs.iter().map(|k| k.p50_ms)).show(ms0),
                    Spread::of(runs.iter().map(|k| k.p99_ms)).show(ms0)
                ),
                "ratio ≥ 50%".into(),
                format!("ingest ÷ this = **{:.0}%**, {}", 100.0 * ingest / rate.median, verdict(ingest / rate.median >= 0.5)),
            ]);
        }
        if let Some(rows_copied) = self.runs.first().and_then(|r| r.copy.as_ref()).map(|c| c.rows) {
            let copy = Spread::of(self.runs.iter().filter_map(|r| r.copy.as_ref()).map(|c| c.rows_per_second()));
            let pipeline = self.spread(|r| r.pipeline.events_per_second()).median;
            rows.push([
                format!("PostgreSQL COPY (CSV) of {rows_copied} rows into a table shaped like player_days (same keys)"),
                format!("{} rows/s", copy.show(thousands)),
                "(reference)".into(),
                format!(
                    "pipeline ÷ COPY = **{:.0}%** (each event feeds {} projections)",
                    100.0 * pipeline / copy.median,
                    gm_projections::ProjectionName::ALL.len()
                ),
            ]);
        }
        rows
    }

    fn query_rows(&self) -> Vec<Row> {
        let Some(first) = self.runs.first() else { return Vec::new() };
        let (r, a) = (&first.recommendations, &first.analytics);
        let reco = self.spread(|r| r.recommendations.requests_per_second());
        let reco_p99 = self.spread(|r| r.recommendations.latency(0.99));
        let analytics = self.spread(|r| r.analytics.requests_per_second());
        let analytics_p99 = self.spread(|r| r.analytics.latency(0.99));
        let t = Targets::of(self.mode);
        vec![
            [
                format!(
                    "recommendations, GET /v1/players/{{game}}/{{player}}/recommendations?limit=10, {} concurrent requests ({} requests over the live phase's players' warm lists)",
                    r.lanes, r.requests
                ),
                format!(
                    "**{} requests/s**; p50 {} ms, **p99 {} ms**{}",
                    reco.show(thousands),
                    self.spread(|r| r.recommendations.latency(0.5)).show(ms1),
                    reco_p99.show(ms1),
                    self.failed(|r| &r.recommendations)
                ),
                match t.recommendations_p99_ms {
                    Some(p99) => format!("{}, p99 < {p99:.0} ms", at_least(t.recommendations, "requests/s")),
                    None => at_least(t.recommendations, "requests/s"),
                },
                format!(
                    "{:.0}% of target, {}",
                    100.0 * reco.median / t.recommendations,
                    verdict(
                        reco.median >= t.recommendations
                            && t.recommendations_p99_ms.is_none_or(|p99| reco_p99.median < p99)
                            && self.runs.iter().all(|r| r.recommendations.errors == 0)
                    )
                ),
            ],
            [
                format!(
                    "analytics queries, a mix of active users, revenue, sessions, retention, new vs returning, monetisation (7 days) and a leaderboard page, {} concurrent requests ({} requests)",
                    a.lanes, a.requests
                ),
                format!(
                    "**{} requests/s**; p50 {} ms, p99 {} ms{}",
                    analytics.show(thousands),
                    self.spread(|r| r.analytics.latency(0.5)).show(ms1),
                    analytics_p99.show(ms1),
                    self.failed(|r| &r.analytics)
                ),
                format!("{}, p99 < {:.0} ms", at_least(t.analytics, "requests/s"), t.analytics_p99_ms),
                format!(
                    "{:.0}% of target, {}",
                    100.0 * analytics.median / t.analytics,
                    verdict(
                        analytics.median >= t.analytics
                            && analytics_p99.median < t.analytics_p99_ms
                            && self.runs.iter().all(|r| r.analytics.errors == 0)
                    )
                ),
            ],
        ]
    }

    /// "; 12 of 5000 requests failed (…)" when some did, in any run (counted in the rate and
    /// the latencies: a timeout at 30 s).
    fn failed(&self, load: impl Fn(&Run) -> &QueryLoad) -> String {
        let failed: Vec<String> = self
            .runs
            .iter()
            .map(load)
            .filter(|l| l.errors > 0)
            .map(|l| format!("{} of {}", l.errors, l.requests))
            .collect();
        if failed.is_empty() {
            return String::new();
        }
        format!(
            "; **{} requests failed** (no answer within the client's 30 s, or not 200; counted in the rate and latencies)",
            failed.join(", ")
        )
    }

    fn rss_rows(&self) -> Vec<Row> {
        let names: Vec<&'static str> =
            self.runs.first().map(|r| r.rss.iter().map(|(n, _)| *n).collect()).unwrap_or_default();
        names
            .into_iter()
            .map(|name| {
                let values: Vec<f64> =
                    self.runs.iter().filter_map(|r| r.rss.iter().find(|(n, _)| *n == name)?.1).collect();
                let rss = (!values.is_empty()).then(|| Spread::of(values));
                let (target, ratio) = match name {
                    "gateway" => (
                        "< 100 MB".to_string(),
                        rss.map(|r| verdict(r.median < TARGET_GATEWAY_RSS_MB).to_string()).unwrap_or_default(),
                    ),
                    "actors" => ("< 1 KB per idle player (not measured here)".to_string(), "—".to_string()),
                    "serve" => ("gateway < 100 MB (all roles share this process)".to_string(), "—".to_string()),
                    _ => ("—".to_string(), "—".to_string()),
                };
                [
                    format!("peak RSS (VmHWM) of the {name} process over the whole run"),
                    rss.map(|r| r.show(|v| format!("{v:.0} MB"))).unwrap_or_else(|| "unavailable".into()),
                    target,
                    ratio,
                ]
            })
            .collect()
    }

    /// One table per phase: each process's CPU ms per 1,000 events (or requests).
    fn cpu_tables(&self, markdown: bool) -> String {
        let mut out = String::new();
        let phases: Vec<(String, &'static str)> =
            self.runs.first().map(|r| r.costs.iter().map(|c| (c.phase.clone(), c.unit)).collect()).unwrap_or_default();
        for (phase, unit) in phases {
            let costs: Vec<&super::cpu::PhaseCost> =
                self.runs.iter().filter_map(|r| r.costs.iter().find(|c| c.phase == phase)).collect();
            let count = Spread::of(costs.iter().map(|c| c.count as f64)).show(|v| format!("{v:.0}"));
            let names: Vec<&str> =
                costs.first().map(|c| c.per_thousand.iter().map(|(n, _)| n.as_str()).collect()).unwrap_or_default();
            let cell = |name: &str| {
                Spread::of(costs.iter().filter_map(|c| c.per_thousand.iter().find(|(n, _)| n == name).map(|(_, v)| *v)))
            };
            let total = Spread::of(costs.iter().map(|c| c.per_thousand.iter().map(|(_, v)| v).sum::<f64>()));
            // One clock tick (10 ms) of one process, per 1,000 units of the smallest run.
            let fewest = costs.iter().map(|c| c.count).min().unwrap_or(0).max(1);
            let resolution = format!("{:.1} ms", 10.0 * 1000.0 / fewest as f64);
            if markdown {
                let _ = writeln!(
                    out,
                    "\n**CPU per 1,000 {unit}: {phase}** ({count} {unit}; resolution {resolution})\n\n| process | CPU ms per 1,000 {unit} |\n|---|---:|"
                );
                for name in &names {
                    let _ = writeln!(out, "| {name} | {} |", cell(name).show(ms1));
                }
                let _ = writeln!(out, "| **all of them** | **{}** |", total.show(ms1));
            } else {
                let _ = writeln!(out, "\nCPU per 1,000 {unit}: {phase} ({count} {unit}; resolution {resolution})");
                for name in &names {
                    let _ = writeln!(out, "    {name:<34} {} ms", cell(name).show(ms1));
                }
                let _ = writeln!(out, "    {:<34} {} ms", "all of them", total.show(ms1));
            }
        }
        out
    }

    fn title(&self) -> String {
        let when = self.started_at().format("%Y-%m-%d %H:%M UTC");
        match self.mode {
            Mode::Production => format!("Production (Kafka + PostgreSQL + Redis), `gamemetrics bench` — {when}"),
            Mode::Embedded => format!("Embedded default (SQLite, one process), `gamemetrics bench` — {when}"),
        }
    }

    fn notes(&self) -> Vec<String> {
        let m = &self.machine;
        let loads: Vec<String> = self
            .runs
            .iter()
            .enumerate()
            .map(|(i, r)| format!("run {}: {} before, {} after", i + 1, r.load_before, r.load_after))
            .collect();
        let (wire, record) = self.runs.first().map_or((0, 0), |r| (r.wire_bytes, r.record_bytes));
        let mut notes = vec![
            format!(
                "Machine: {} × {}, {:.1} GiB RAM. The load generator (this process), the roles{} all share these cores.",
                m.cpus,
                m.model,
                m.memory_gib,
                if self.mode == Mode::Production { ", Kafka, PostgreSQL and Redis" } else { "" }
            ),
            format!(
                "{} run(s); each figure is the median, with the smallest–largest of the runs in parentheses when there are several; verdicts and ratios are on the median.",
                self.runs.len()
            ),
            format!(
                "Load average (1, 5, 15 min, /proc/loadavg) — {}. Anything above ~1 before a run is other work on the machine competing for the same cores.",
                loads.join("; ")
            ),
            "CPU per 1,000 events: user + system time (clock ticks of 10 ms, hence the resolution given with each table) from /proc/<pid>/stat before and after each phase, for each role process the bench started, the load generator (the bench process itself, its own threads), and in production Kafka (the broker's JVM), PostgreSQL (the postmaster on the configured port, all its backends and what exited backends used) and Redis (redis-server on the configured port). A process shows 0 when it was not running in that phase.".into(),
            format!(
                "Load generator: a lean sender in the bench process (one thread, bodies serialised before the clock starts and outside the CPU measurement, responses parsed only for their statuses) instead of `simulate::send`, whose per-event cloning and JSON building would take CPU from the measured processes. Events come from the simulator's plans (mean {wire} bytes on the wire, {record} bytes as the raw record the gateway appends)."
            ),
        ];
        notes.extend(self.mode_notes());
        let share = self
            .runs
            .first()
            .map_or(0.0, |r| 100.0 * r.single_firsts[0] as f64 / r.ingest_single.planned.max(1) as f64);
        notes.push(format!(
            "One event per request: one phase on `POST /v1/events` (body `{{\"events\": [event]}}`, answered 202) and one on the previous platform's `POST /api/v1/events` (`{{event_type, player_id, timestamp, data, event_id, session_id}}` mapped from the same simulated events as docs/compat.md describes, answered 200; `profile_update` and `consent_update`, which that platform did not have, are left out). Each mixes events of players the batch phases already sent with, spread evenly among them, the first event of players no phase has sent ({share:.1}% of the typed phase's requests; `--single-new-share`), so that creating a new player's key and pseudonym is on the measured path as in the issue's \"256 connections over 20,000 distinct players\". A player's requests go to one connection in order. Answers other than the route's final ones (202/200, or 400) are retried with the same body for up to 30 s and listed in the row."
        ));
        if self.runs.iter().any(|r| r.freshness.is_some()) {
            let covered: Vec<&str> = Probe::ALL.iter().map(|p| p.read_model()).collect();
            notes.push(format!(
                "Steady-state freshness (last phase, after the query phases): batches of {BATCH} simulated events (players the earlier phases created, events in time order) sent open loop at the offered rate — batch j leaves at j × {BATCH} ÷ rate whatever the earlier answers, each on a connection of its own from a pool of up to 2,048, never retried (a batch not answered 202 counts as not accepted). Every few batches (5 a second) one also carries the 4 events of a marker player of its own (`session_start`, a completed `progression` on a level named after it, a `purchase`, a `score` on the board `freshness-markers`), all dated on a day no other event has (2001-01-01 + the marker's number), so that one event is unambiguous even in per-day aggregates. From its batch's 202 the bench queries, through the public API, each covered read model ({}) every {POLL_INTERVAL:?}: one query per read model covers every outstanding marker (a range of their days, the funnel, the top of the marker board), profiles one query per outstanding marker (the {MAX_PROFILE_POLLS} oldest per tick); a read model is not queried again while its last query is unanswered. recommendations is not covered: a player's list blends everyone's co-occurrences with popular items, so no answer shows that one purchase was applied. The figure per marker is the midpoint between the last query that did not show it (or its acknowledgement) and the answer of the first that did — so the query's own latency and the polling interval count half — or that answer's time when the two are more than {MAX_MIDPOINT_WIDTH_S} s apart (a marker not queried for a while); the upper-bound p99 is given beside it. Markers never seen by the end (120 s after the last answer) count as slower than every seen one (a p99 that falls on them reads \"not seen\").",
                covered.join(", ")
            ));
            if self.mode == Mode::Production {
                notes.push("Freshness, production: the visibility queries go to a second gateway process, `gateway (freshness queries)`, started for the phase with the Redis cache's TTLs at 0 (GM_REDIS__PROFILE_TTL_MS, GM_REDIS__QUERY_TTL_MS, GM_REDIS__RECENT_QUERY_TTL_MS), so they read the read models in PostgreSQL (leaderboards still go through their Redis sorted set, rebuilt from PostgreSQL on every read since its marker lives 1 ms). Through the serving gateway's cache a change shows up to the cache's TTL later (5 s by default for recent ranges and boards; past days 5 min; a first profile at once, since \"no such player\" is not cached). Its CPU is its own row of the phase's CPU table; the PostgreSQL time of the queries is in PostgreSQL's.".into());
            } else {
                notes.push("Freshness, embedded: the visibility queries go to the one `serve` process (no cache in the embedded default), so their cost is inside that process's CPU figure.".into());
            }
        }
        notes.push("Event-to-read-model latency: the acknowledged count is sampled at every response (client side) and the projections process's `gamemetrics_projection_events_applied_total` (minimum over every projection) every 50 ms; the latency of the n-th event is the first time the applied count reaches n minus the first time the acknowledged count does (FIFO approximation: it assumes events are applied in the order they were acknowledged; partitions make that only approximately true). The 50 ms polling adds up to 50 ms.".into());
        notes
    }

    fn mode_notes(&self) -> Vec<String> {
        if self.mode == Mode::Embedded {
            return vec![
                "Embedded mode: every role in one `serve` process on SQLite; actors and projections run during the ingest phases. No Kafka or PostgreSQL reference figures.".into(),
                "CPU of the `serve` process is the gateway's, the actors' and the projections' together. The consumers' work on an ingest phase's events can spill into the next phase's figure; the whole-pipeline phase ends only when every read model has every event, so its figure is the full cost of an event.".into(),
            ];
        }
        let lines: Vec<String> =
            self.runs.iter().flat_map(|r| r.kafka.iter().map(|k| format!("`{}`", k.line))).collect();
        vec![
            "Each role is its own process (`gateway`, `actors`, `projections`). The ingest phases run before actors and projections start, so they measure the gateway and Kafka; the catch-up row is the consumer side alone; the live pipeline row runs everything at once.".into(),
            format!(
                "Kafka's ProducerPerformance ran in the same run, with gm-kafka's producer settings (acks=all, idempotence, linger.ms, batch.size, compression from the configuration), as many records as the ingest phase, to fresh topics with the raw topic's partition count. Its last lines: {}",
                lines.join("; ")
            ),
        ]
    }

    pub fn text(&self) -> String {
        let mut out = format!("\n{}\n\n", self.title());
        for [what, figure, target, ratio] in self.rows() {
            let _ = writeln!(out, "- {what}\n    {figure}\n    target: {target}; {ratio}");
        }
        out.push_str(&self.cpu_tables(false));
        out.push('\n');
        for note in self.notes() {
            let _ = writeln!(out, "* {note}");
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("\n## {}\n\n", self.title());
        // The arguments this run was given (`bench --events … --write …`).
        let args = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
        let command = match self.mode {
            Mode::Production => format!("eval \"$(scripts/services env)\"\ncargo build --release --bin gamemetrics\nGM_MODE=production GM_KAFKA__BROKERS=$GM_KAFKA_BROKERS GM_POSTGRES__URL=$GM_POSTGRES_URL \\\n    GM_REDIS__URL=$GM_REDIS_URL target/release/gamemetrics {args}"),
            Mode::Embedded => format!("cargo build --release --bin gamemetrics\ntarget/release/gamemetrics {args}"),
        };
        let _ = writeln!(out, "```sh\n{command}\n```\n");
        out.push_str("| what | figure | target | ratio / verdict |\n|---|---|---|---|\n");
        for [what, figure, target, ratio] in self.rows() {
            let _ = writeln!(out, "| {what} | {figure} | {target} | {ratio} |");
        }
        out.push_str(&self.cpu_tables(true));
        out.push('\n');
        for note in self.notes() {
            let _ = writeln!(out, "- {note}");
        }
        out
    }
}

/// Seconds per run, with `missing` for a run where the figure does not exist (a marker never
/// seen, a backlog never drained): the median and range when every run has one.
fn censored_show(values: Vec<Option<f64>>, unit: &str, missing: &str) -> String {
    if values.iter().all(Option::is_some) {
        return format!("{} {unit}", Spread::of(values.into_iter().flatten()).show(s2));
    }
    let each: Vec<String> =
        values.iter().map(|v| v.map_or_else(|| missing.to_string(), |v| format!("{v:.2} {unit}"))).collect();
    each.join(" / ")
}

fn ms0(v: f64) -> String {
    format!("{v:.0}")
}

fn ms1(v: f64) -> String {
    format!("{v:.1}")
}

fn s1(v: f64) -> String {
    format!("{v:.1}")
}

fn s2(v: f64) -> String {
    format!("{v:.2}")
}

pub(super) fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let head = match digits.len() % 3 {
        0 => 3,
        r => r,
    }
    .min(digits.len());
    let mut out = if n < 0 { String::from("-") } else { String::new() };
    out.push_str(&digits[..head]);
    for chunk in digits.as_bytes()[head..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
    }
    out
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(123456.0), "123,456");
        assert_eq!(thousands(-1234.0), "-1,234");
    }
}
