//! `gamemetrics bench`: the project's own benchmark of the performance targets of
//! docs/design.md#performance-targets, on the configured mode (production: Kafka + PostgreSQL + Redis; embedded: the
//! SQLite default), with a fresh namespace and database so it never touches real data.
//!
//! The roles run as child processes of the `gamemetrics` binary (production: `gateway`,
//! `actors` and `projections` each in its own process; embedded: one `serve` process), so
//! that their peak RSS and CPU time can be read from `/proc/<pid>/…`. The load generator is
//! this process: a lean HTTP sender whose bodies are serialised before the clock starts, on
//! the same machine (and cores) as everything it measures.
//!
//! With `--fill-players N --fill-events M` a run first fills its stores through the write
//! path ([`fill`]: gateway → Kafka → actors → projections, roles of its own, stopped after)
//! and reads the bytes stored per event; the phases below then run on the filled stores.
//!
//! Phases of one run, in order (one module each):
//! 1. [`ingest`]: batches of 100, as fast as the gateway answers (production: actors and
//!    projections are not started yet, so the gateway and Kafka have the machine);
//! 2. the same at half the rate measured in 1, rate-limited, for the latency;
//! 3. [`ingest`]: one event per request, on `POST /v1/events` and on the previous
//!    platform's `POST /api/v1/events`, with a share of first events of new players;
//! 4. [`kafka`]: Kafka's own `ProducerPerformance` (production only);
//! 5. [`copy`]: PostgreSQL `COPY` into a table shaped like `player_days` (production only);
//! 6. [`catch_up`]: actors and projections start and catch up with the backlog of phases 1–3;
//! 7. [`pipeline`]: the whole pipeline, live: events/s from the first request until every
//!    projection has applied every event, and the event-to-read-model latency (FIFO
//!    approximation: the n-th acknowledged event is taken to be the n-th applied one);
//! 8. [`queries`]: recommendations and analytics queries on what the pipeline built;
//! 9. [`freshness`]: steady state — a fixed offered load, open loop, for a fixed time, and
//!    per marker event the time from its acknowledgement to its visibility in each read
//!    model, observed through the query API.
//!
//! Around every phase [`cpu`] reads the CPU time of each process involved from `/proc`
//! (the roles, Kafka, PostgreSQL, Redis and this process) and reports it per 1,000 events.
//! `--runs N` repeats the whole run; [`report`] gives the median and spread of each figure.

mod catch_up;
mod copy;
mod cpu;
mod database;
mod erasure;
mod fill;
mod freshness;
mod ingest;
mod issuer;
mod kafka;
mod pipeline;
mod process;
mod queries;
mod recovery;
mod report;
mod run;
mod send;
mod stats;

use anyhow::Context as _;
use std::path::{Path, PathBuf};

const GAME: &str = "bench";

/// Where the bench runs: what the CLI knows from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One `serve` process on SQLite.
    Embedded,
    /// Kafka + PostgreSQL + Redis, one process per role.
    Production,
}

/// The settings of the configured platform the bench needs (taken from the CLI's
/// configuration, so this crate does not depend on the binary's).
#[derive(Debug, Clone)]
pub struct Target {
    pub mode: Mode,
    /// `postgres.url` (production): the bench creates and drops a database of its own there.
    pub postgres_url: String,
    /// The Kafka settings (production): ProducerPerformance uses the same producer settings.
    pub kafka: gm_kafka::KafkaConfig,
    /// `redis.url`, when Redis is configured.
    pub redis_url: Option<String>,
    /// A privacy master key is configured (otherwise the bench gives its roles a throwaway one).
    pub master_key_configured: bool,
    /// `actors.max_concurrent_loads` (reported by the recovery bench).
    pub max_concurrent_loads: usize,
    /// The `--config` file, handed to the child processes.
    pub config_file: Option<PathBuf>,
}

impl Target {
    fn production(&self) -> bool {
        self.mode == Mode::Production
    }
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Events of the ingest and pipeline phases.
    pub events: usize,
    /// Requests of the one-event-per-request phase.
    pub single_events: usize,
    /// Concurrent requests of the one-event-per-request phase.
    pub single_lanes: usize,
    /// Append the report as a markdown section to this file.
    pub write: Option<PathBuf>,
    /// Requests of each query phase (recommendations, analytics).
    pub query_requests: usize,
    /// Concurrent requests of the query phases.
    pub query_lanes: usize,
    /// How many times the whole throughput bench runs (figures: median and spread).
    pub runs: usize,
    /// Run the recovery bench (recovery.rs) with this many snapshotted players instead.
    pub recovery_players: Option<usize>,
    /// Players of the recovery bench that get an event after the restart.
    pub recovery_sample: usize,
    /// Run the erasure bench (erasure.rs) with this many erasures under load instead.
    pub erasures: Option<usize>,
    /// Share (0..=1) of the one-event-per-request phases' requests that are the first event
    /// of a player never seen before (ingest.rs).
    pub single_new_share: f64,
    /// Offered load of the steady-state freshness phase, events/s (freshness.rs).
    pub freshness_rate: f64,
    /// Seconds of offered load of the freshness phase; 0 skips it.
    pub freshness_secs: u64,
    /// Fill the stores with this many players and events through the write path before
    /// the phases (fill.rs); 0 and 0: no fill.
    pub fill_players: usize,
    pub fill_events: usize,
    /// The broker's log directory (`log.dirs`), to read the bytes per topic after the fill.
    pub kafka_log_dir: Option<PathBuf>,
}

/// Runs the benchmark, prints the report and appends it to `options.write` when given.
pub async fn run(target: &Target, options: BenchOptions) -> anyhow::Result<()> {
    if let Some(n) = options.erasures {
        let work_dir = work_dir()?;
        let report = erasure::run(target, n, &work_dir).await;
        finish_work_dir(&work_dir, report.is_ok());
        let report = report?;
        let machine = report::Machine::read().line("at the end");
        publish(&report.markdown(&machine), &report.markdown(&machine), options.write.as_deref())?;
        anyhow::ensure!(report.completed == report.erasures, "not every erasure completed");
        return Ok(());
    }
    if let Some(players) = options.recovery_players {
        let work_dir = work_dir()?;
        let machine = report::Machine::read().line("at the start");
        let report = recovery::run(target, players, options.recovery_sample, &work_dir).await;
        finish_work_dir(&work_dir, report.is_ok());
        let text = report?.markdown(&machine);
        return publish(&text, &text, options.write.as_deref());
    }
    let runs = options.runs.max(1);
    let mut results = Vec::with_capacity(runs);
    for i in 0..runs {
        eprintln!("bench: run {} of {runs}", i + 1);
        let work_dir = work_dir()?;
        let result = run::run_once(target, &options, &work_dir).await;
        finish_work_dir(&work_dir, result.is_ok());
        results.push(result?);
    }
    let report = report::Report::new(target.mode, results);
    publish(&report.text(), &report.markdown(), options.write.as_deref())
}

/// A fresh scratch directory of one run (logs, JWKS, embedded data).
fn work_dir() -> anyhow::Result<PathBuf> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("gm-bench-{}", &id[..12]));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Removes the scratch directory after a good run; keeps it (and says where) after a failure.
fn finish_work_dir(dir: &Path, ok: bool) {
    if ok {
        let _ = std::fs::remove_dir_all(dir);
    } else {
        eprintln!("bench: the roles' logs are kept in {}", dir.display());
    }
}

/// Prints `text` and appends `markdown` to `write` when given.
fn publish(text: &str, markdown: &str, write: Option<&Path>) -> anyhow::Result<()> {
    println!("{text}");
    if let Some(path) = write {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.write_all(markdown.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        println!("appended to {}", path.display());
    }
    Ok(())
}
