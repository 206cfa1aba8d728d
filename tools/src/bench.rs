//! `gamemetrics bench`: the project's own benchmark of the performance targets of
//! docs/design.md#performance-targets, on the configured mode (production: Kafka + PostgreSQL + Redis; embedded: the
//! SQLite default), with a fresh namespace and database so it never touches real data.
//!
//! The roles run as child processes of this binary (production: `gateway`, `actors` and
//! `projections` each in its own process; embedded: one `serve` process), so that their
//! peak RSS can be read from `/proc/<pid>/status` at the end. The load generator is this
//! process: a lean HTTP sender whose bodies are serialised before the clock starts, on
//! the same machine (and cores) as everything it measures.
//!
//! Phases, in order:
//! 1. ingest, batches of 100, as fast as the gateway answers (production: actors and
//!    projections are not started yet, so the gateway and Kafka have the machine);
//! 2. the same at half the rate measured in 1, rate-limited, for the latency;
//! 3. one event per request;
//! 4. Kafka's own `ProducerPerformance` (production only);
//! 5. PostgreSQL `COPY` into a table shaped like `player_days` (production only);
//! 6. actors and projections start and catch up with the backlog of phases 1–3;
//! 7. the whole pipeline, live: events/s from the first request until every projection
//!    has applied every event, and the event-to-read-model latency (FIFO approximation:
//!    the n-th acknowledged event is taken to be the n-th applied one).

use crate::config::{Config, Mode};
use crate::simulate::{self, SentEvent, SimulateOptions};
use anyhow::{bail, Context as _};
use chrono::Utc;
use gm_projections::ProjectionName;
use serde::Deserialize;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

const GAME: &str = "bench";

/// (seconds since the start of a phase, cumulative count), shared by the tasks of one thread.
type Samples = Rc<RefCell<Vec<(f64, u64)>>>;
const TARGET_INGEST: f64 = 100_000.0;
const TARGET_INGEST_P99_MS: f64 = 10.0;
const TARGET_SINGLE: f64 = 15_000.0;
const TARGET_PIPELINE: f64 = 50_000.0;
const TARGET_PIPELINE_P99_S: f64 = 2.0;
const TARGET_GATEWAY_RSS_MB: f64 = 100.0;

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
    /// The `--config` file, handed to the child processes.
    pub config_file: Option<PathBuf>,
    /// Requests of each query phase (recommendations, analytics).
    pub query_requests: usize,
    /// Concurrent requests of the query phases.
    pub query_lanes: usize,
    /// Run the recovery bench (recovery.rs) with this many snapshotted players instead.
    pub recovery_players: Option<usize>,
    /// Players of the recovery bench that get an event after the restart.
    pub recovery_sample: usize,
    /// Run the erasure bench (erasure.rs) with this many erasures under load instead.
    pub erasures: Option<usize>,
}

mod erasure;
mod queries;
mod recovery;

/// Runs the benchmark, prints the report and appends it to `options.write` when given.
pub async fn run(config: &Config, options: BenchOptions) -> anyhow::Result<()> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let work_dir = std::env::temp_dir().join(format!("gm-bench-{}", &id[..12]));
    std::fs::create_dir_all(&work_dir).with_context(|| format!("creating {}", work_dir.display()))?;
    if let Some(n) = options.erasures {
        let report = erasure::run(config, n, &work_dir).await?;
        let m = Machine::read();
        let machine =
            format!("{} × {}, {:.0} GiB, load average {} at the end", m.cpus, m.model, m.memory_gib, load_average());
        let text = report.markdown(&machine);
        println!("{text}");
        if let Some(path) = &options.write {
            use std::io::Write as _;
            let mut file = std::fs::OpenOptions::new().append(true).create(true).open(path)?;
            file.write_all(text.as_bytes())?;
            println!("appended to {}", path.display());
        }
        let _ = std::fs::remove_dir_all(&work_dir);
        anyhow::ensure!(report.completed == report.erasures, "not every erasure completed");
        return Ok(());
    }
    if let Some(players) = options.recovery_players {
        let report = recovery::run(config, players, options.recovery_sample, &work_dir).await;
        if report.is_err() {
            eprintln!("bench: the roles' logs are kept in {}", work_dir.display());
        }
        let m = Machine::read();
        let machine =
            format!("{} × {}, {:.0} GiB, load average {} at the start", m.cpus, m.model, m.memory_gib, load_average());
        let text = report?.markdown(&machine);
        println!("{text}");
        if let Some(path) = &options.write {
            use std::io::Write as _;
            let mut file = std::fs::OpenOptions::new().append(true).create(true).open(path)?;
            file.write_all(text.as_bytes())?;
            println!("appended to {}", path.display());
        }
        return Ok(());
    }
    let database = match config.mode {
        Mode::Production => Some(BenchDatabase::create(&config.postgres.url, &id).await?),
        Mode::Embedded => None,
    };
    let result = match Bench::new(config, &options, &id, &work_dir, database.as_ref()) {
        Ok(bench) => bench.run().await,
        Err(e) => Err(e),
    };
    if let Some(db) = &database {
        db.drop_database().await;
    }
    match &result {
        Ok(_) => {
            let _ = std::fs::remove_dir_all(&work_dir);
        }
        Err(_) => eprintln!("bench: the roles' logs are kept in {}", work_dir.display()),
    }
    let report = result?;
    println!("{}", report.text());
    if let Some(path) = &options.write {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.write_all(report.markdown().as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        println!("appended to {}", path.display());
    }
    Ok(())
}

/// A fresh, migrated PostgreSQL database, created through the configured (admin) URL.
struct BenchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl BenchDatabase {
    async fn create(admin_url: &str, id: &str) -> anyhow::Result<Self> {
        use sqlx::Connection as _;
        let name = format!("gm_bench_{}", &id[..16]);
        let mut admin =
            sqlx::PgConnection::connect(admin_url).await.context("connecting to PostgreSQL (postgres.url)")?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.context("CREATE DATABASE")?;
        let _ = admin.close().await;
        let (base, _) = admin_url.rsplit_once('/').context("postgres.url must end with /database")?;
        let (base, query) = match admin_url.split_once('?') {
            Some((_, q)) => (base.to_string(), format!("?{q}")),
            None => (base.to_string(), String::new()),
        };
        let url = format!("{base}/{name}{query}");
        let store = gm_postgres::PgStore::connect(&url, 2).await.context("connecting to the bench database")?;
        store.migrate().await.context("migrating the bench database")?;
        store.pool().close().await;
        Ok(Self { admin_url: admin_url.to_string(), name, url })
    }

    async fn drop_database(&self) {
        use sqlx::Connection as _;
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ =
                sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut admin).await;
        }
    }
}

/// A child process of this binary running one or more roles; SIGKILLed when dropped.
struct RoleProcess {
    name: &'static str,
    port: u16,
    child: Child,
    log: PathBuf,
}

impl RoleProcess {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Peak resident set size (VmHWM) in MB.
    fn peak_rss_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }

    async fn wait_ready(&mut self, client: &awc::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("{} exited ({status}) before it was ready; see {}", self.name, self.log.display());
            }
            if let Ok(r) = client.get(format!("{}/health/ready", self.url())).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{} did not become ready within 90 s; see {}", self.name, self.log.display())
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Bench<'a> {
    config: &'a Config,
    options: &'a BenchOptions,
    id: &'a str,
    work_dir: &'a Path,
    database: Option<&'a BenchDatabase>,
    key: String,
    client: awc::Client,
    /// The throwaway token issuer of the query phases.
    issuer: queries::Issuer,
}

impl<'a> Bench<'a> {
    fn new(
        config: &'a Config,
        options: &'a BenchOptions,
        id: &'a str,
        work_dir: &'a Path,
        database: Option<&'a BenchDatabase>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            config,
            options,
            id,
            work_dir,
            database,
            key: format!("bench-key-{}", &id[..12]),
            client: awc::Client::builder().timeout(Duration::from_secs(30)).finish(),
            issuer: queries::Issuer::create(work_dir)?,
        })
    }

    fn production(&self) -> bool {
        self.config.mode == Mode::Production
    }

    fn spawn(&self, name: &'static str, args: &[&str]) -> anyhow::Result<RoleProcess> {
        let port = free_port()?;
        let exe = std::env::current_exe().context("locating the gamemetrics binary")?;
        let log = self.work_dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = std::process::Command::new(exe);
        if let Some(file) = &self.options.config_file {
            command.arg("--config").arg(file);
        }
        command
            .args(args)
            .env("GM_HTTP__BIND", format!("127.0.0.1:{port}"))
            .env("GM_API_KEYS", format!("{GAME}={}", self.key))
            .env("GM_LOG__NAMESPACE", format!("bench-{}", self.id))
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(self.issuer.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        match self.config.mode {
            Mode::Production => {
                if let Some(db) = self.database {
                    command.env("GM_POSTGRES__URL", &db.url);
                }
                if self.config.redis.is_some() {
                    command.env("GM_REDIS__KEY_PREFIX", format!("gm:bench:{}:", &self.id[..12]));
                }
            }
            Mode::Embedded => {
                command.env("GM_DATA_DIR", self.work_dir.join("data"));
            }
        }
        let child = command.spawn().with_context(|| format!("starting `gamemetrics {}`", args.join(" ")))?;
        Ok(RoleProcess { name, port, child, log })
    }

    async fn run(&self) -> anyhow::Result<Report> {
        let started_at = Utc::now();
        let load_at_start = load_average();
        let n = self.options.events.max(1000);
        let single_n = self.options.single_events.max(100);
        eprintln!("bench: planning events");
        let warmup = self.plan(1, 2_000);
        let full = self.plan(2, n);
        let half = self.plan(3, n / 2);
        let single = self.plan(4, single_n);
        let live = self.plan(5, n);
        let wire_bytes = mean_wire_bytes(&full);
        let record_bytes = mean_record_bytes(&full).unwrap_or(wire_bytes);

        // The gateway first (embedded: the one process with every role).
        let mut roles: Vec<RoleProcess> = Vec::new();
        if self.production() {
            roles.push(self.spawn("gateway", &["gateway"])?);
        } else {
            roles.push(self.spawn("serve", &["serve"])?);
        }
        roles[0].wait_ready(&self.client).await?;
        let gateway = roles[0].url();
        let mut sent_so_far = 0u64;

        eprintln!("bench: warm-up");
        let w = self.send(&gateway, &warmup, 100, 32, 0.0, None).await;
        sent_so_far += w.accepted;

        eprintln!("bench: ingest, batches of 100, {} events", full.len());
        let ingest = self.send(&gateway, &full, 100, 32, 0.0, None).await;
        ingest.check("ingest")?;
        sent_so_far += ingest.accepted;
        let half_rate = ingest.events_per_second() / 2.0;
        eprintln!("bench: ingest at half that rate ({half_rate:.0} events/s), {} events", half.len());
        let ingest_half = self.send(&gateway, &half, 100, 32, half_rate, None).await;
        ingest_half.check("half-rate ingest")?;
        sent_so_far += ingest_half.accepted;
        eprintln!("bench: one event per request, {} requests", single.len());
        let ingest_single = self.send(&gateway, &single, 1, self.options.single_lanes, 0.0, None).await;
        ingest_single.check("single-event ingest")?;
        sent_so_far += ingest_single.accepted;

        let mut kafka = Vec::new();
        let mut copy = None;
        if self.production() {
            eprintln!("bench: Kafka ProducerPerformance, {n} records");
            match self.producer_performance(n, record_bytes, None).await {
                Ok(r) => kafka.push(r),
                Err(e) => eprintln!("bench: ProducerPerformance (--record-size) failed: {e:#}"),
            }
            match self.producer_performance(n, record_bytes, Some(&full)).await {
                Ok(r) => kafka.push(r),
                Err(e) => eprintln!("bench: ProducerPerformance (--payload-file) failed: {e:#}"),
            }
            eprintln!("bench: PostgreSQL COPY, {n} rows");
            match self.copy_rows(n).await {
                Ok(r) => copy = Some(r),
                Err(e) => eprintln!("bench: COPY failed: {e:#}"),
            }
            roles.push(self.spawn("actors", &["actors"])?);
            roles.push(self.spawn("projections", &["projections"])?);
            for role in &mut roles[1..] {
                role.wait_ready(&self.client).await?;
            }
        }
        let projections = roles.last().map(RoleProcess::url).unwrap_or_default();

        eprintln!("bench: waiting for actors and projections to catch up with {sent_so_far} events");
        let catch_up_start = Instant::now();
        let before = self.applied(&projections).await.unwrap_or(0);
        let (applied, per_projection) =
            self.wait_applied_each(&projections, sent_so_far, Duration::from_secs(240)).await;
        let catch_up = CatchUp {
            events: sent_so_far.saturating_sub(before),
            elapsed: catch_up_start.elapsed(),
            done: applied >= sent_so_far,
            per_projection,
        };
        if !catch_up.done {
            bail!(
                "projections applied {applied} of {sent_so_far} events within 240 s; see the logs in {}",
                self.work_dir.display()
            );
        }

        eprintln!("bench: whole pipeline, {} events", live.len());
        let pipeline = self.pipeline(&gateway, &projections, &live, applied).await?;

        // Queries on what the pipeline built: the players of the live phase.
        let mut players: Vec<String> = live.iter().map(|e| e.player_id.clone()).collect();
        players.sort();
        players.dedup();
        let requests = self.options.query_requests.max(100);
        eprintln!("bench: recommendations, warming {} players' lists", players.len());
        let token = self.issuer.token.as_str();
        let warm = queries::recommendation_urls(&gateway, GAME, &players, players.len());
        let _ = queries::load(&self.client, warm, token, 32).await;
        eprintln!("bench: recommendations, {requests} requests");
        let urls = queries::recommendation_urls(&gateway, GAME, &players, requests);
        let recommendations = queries::load(&self.client, urls, token, self.options.query_lanes).await;
        eprintln!("bench: analytics queries, {requests} requests");
        let urls = queries::analytics_urls(&gateway, GAME, requests);
        let analytics = queries::load(&self.client, urls, token, self.options.query_lanes).await;
        for (name, load) in [("recommendations", &recommendations), ("analytics", &analytics)] {
            if load.errors > 0 {
                bail!(
                    "{name}: {} of {} requests failed; see the logs in {}",
                    load.errors,
                    load.requests,
                    self.work_dir.display()
                );
            }
        }

        let rss = roles.iter().map(|r| (r.name, r.peak_rss_mb())).collect();
        drop(roles);
        Ok(Report {
            mode: self.config.mode,
            started_at,
            load_at_start,
            load_at_end: load_average(),
            machine: Machine::read(),
            wire_bytes,
            record_bytes,
            ingest,
            ingest_half,
            half_rate,
            ingest_single,
            catch_up,
            pipeline,
            kafka,
            copy,
            recommendations,
            analytics,
            rss,
        })
    }

    /// `count` events of a fresh simulated population (a different seed per phase, so no
    /// event id repeats and every event reaches the read models).
    fn plan(&self, seed: u64, count: usize) -> Vec<SentEvent> {
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

    /// Sends `events` in batches; `acks` collects (seconds since start, events acknowledged).
    async fn send(
        &self,
        url: &str,
        events: &[SentEvent],
        batch_size: usize,
        lanes: usize,
        rate: f64,
        acks: Option<Samples>,
    ) -> SendReport {
        let lanes = lanes.max(1);
        let mut per_lane: Vec<Vec<(usize, actix_web::web::Bytes)>> = vec![Vec::new(); lanes];
        let mut grouped: Vec<Vec<&SentEvent>> = vec![Vec::new(); lanes];
        for e in events {
            let mut h = DefaultHasher::new();
            (&e.game_id, &e.player_id).hash(&mut h);
            grouped[(h.finish() % lanes as u64) as usize].push(e);
        }
        for (lane, mut evs) in grouped.into_iter().enumerate() {
            evs.sort_by_key(|e| e.timestamp);
            for chunk in evs.chunks(batch_size.max(1)) {
                let body = json!({"events": chunk.iter().map(|e| wire(e)).collect::<Vec<_>>()});
                per_lane[lane].push((chunk.len(), serde_json::to_vec(&body).unwrap_or_default().into()));
            }
        }
        let state = Rc::new(RefCell::new(SendReport { planned: events.len() as u64, lanes, ..Default::default() }));
        let scheduled = Rc::new(RefCell::new(0u64));
        let started = Instant::now();
        let endpoint = format!("{url}/v1/events");
        let auth = format!("Bearer {}", self.key);
        let mut tasks = Vec::new();
        for batches in per_lane {
            let (client, state, scheduled, acks) =
                (self.client.clone(), state.clone(), scheduled.clone(), acks.clone());
            let (endpoint, auth) = (endpoint.clone(), auth.clone());
            tasks.push(actix_rt::spawn(async move {
                for (count, body) in batches {
                    if rate > 0.0 {
                        let due = {
                            let mut n = scheduled.borrow_mut();
                            *n += count as u64;
                            started + Duration::from_secs_f64(*n as f64 / rate)
                        };
                        actix_rt::time::sleep_until(due.into()).await;
                    }
                    let give_up = Instant::now() + Duration::from_secs(30);
                    let mut delay = Duration::from_millis(50);
                    loop {
                        let t0 = Instant::now();
                        let response = client
                            .post(&endpoint)
                            .insert_header(("Authorization", auth.as_str()))
                            .insert_header(("Content-Type", "application/json"))
                            .send_body(body.clone())
                            .await;
                        let ok = match response {
                            Ok(mut r) if r.status().as_u16() == 202 || r.status().as_u16() == 400 => {
                                let parsed: IngestResponse = r.json().limit(16 << 20).await.unwrap_or_default();
                                let accepted = parsed.results.iter().filter(|r| r.status == "accepted").count() as u64;
                                let mut s = state.borrow_mut();
                                s.latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                                s.requests += 1;
                                s.accepted += accepted;
                                s.rejected += count as u64 - accepted.min(count as u64);
                                if let Some(acks) = &acks {
                                    acks.borrow_mut().push((started.elapsed().as_secs_f64(), s.accepted));
                                }
                                true
                            }
                            _ => false,
                        };
                        if ok {
                            break;
                        }
                        if Instant::now() >= give_up {
                            state.borrow_mut().unsent += count as u64;
                            break;
                        }
                        state.borrow_mut().retries += 1;
                        actix_rt::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(1));
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

    /// The smallest `gamemetrics_projection_events_applied_total` over every projection.
    async fn applied(&self, url: &str) -> anyhow::Result<u64> {
        Ok(self.applied_each(url).await?.into_iter().min().unwrap_or(0))
    }

    /// `gamemetrics_projection_events_applied_total` of each projection (see
    /// [`applied_per_projection`]).
    async fn applied_each(&self, url: &str) -> anyhow::Result<Vec<u64>> {
        let request = self
            .client
            .get(format!("{url}/metrics"))
            .insert_header(("Authorization", self.issuer.metrics_auth.as_str()));
        let mut response = request.send().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let body = response.body().limit(16 << 20).await?;
        Ok(applied_per_projection(&String::from_utf8_lossy(&body)))
    }

    /// Waits until every projection applied `target` events; returns the smallest count and
    /// when each projection got there.
    async fn wait_applied_each(
        &self,
        url: &str,
        target: u64,
        timeout: Duration,
    ) -> (u64, Vec<(&'static str, Option<Duration>)>) {
        let started = Instant::now();
        let mut reached: Vec<(&'static str, Option<Duration>)> =
            ProjectionName::ALL.iter().map(|n| (n.as_str(), None)).collect();
        loop {
            // A failed scrape counts as no progress, as before the deadline.
            let per = self.applied_each(url).await.unwrap_or_default();
            for ((_, when), applied) in reached.iter_mut().zip(&per) {
                if when.is_none() && *applied >= target {
                    *when = Some(started.elapsed());
                }
            }
            let applied = per.iter().copied().min().unwrap_or(0);
            if applied >= target || started.elapsed() >= timeout {
                return (applied, reached);
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn pipeline(
        &self,
        gateway: &str,
        projections: &str,
        events: &[SentEvent],
        baseline: u64,
    ) -> anyhow::Result<PipelineReport> {
        let acks = Rc::new(RefCell::new(Vec::new()));
        let applied_samples = Rc::new(RefCell::new(Vec::<(f64, u64)>::new()));
        let stop = Rc::new(RefCell::new(false));
        let started = Instant::now();
        let poller = {
            let (samples, stop, client) = (applied_samples.clone(), stop.clone(), self.client.clone());
            let url = format!("{projections}/metrics");
            let auth = self.issuer.metrics_auth.clone();
            actix_rt::spawn(async move {
                while !*stop.borrow() {
                    if let Ok(mut r) = client.get(&url).insert_header(("Authorization", auth.as_str())).send().await {
                        if let Ok(body) = r.body().limit(16 << 20).await {
                            let applied = min_applied(&String::from_utf8_lossy(&body)).saturating_sub(baseline);
                            samples.borrow_mut().push((started.elapsed().as_secs_f64(), applied));
                        }
                    }
                    actix_rt::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        // The sender's clock starts a few microseconds after the poller's: shift its samples.
        let offset = started.elapsed().as_secs_f64();
        let sent = self.send(gateway, events, 100, 32, 0.0, Some(acks.clone())).await;
        let total = sent.accepted;
        let deadline = Instant::now() + Duration::from_secs(180);
        while applied_samples.borrow().last().map(|s| s.1).unwrap_or(0) < total && Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        *stop.borrow_mut() = true;
        let _ = poller.await;
        sent.check("pipeline ingest")?;
        let acks: Vec<(f64, u64)> = acks.borrow().iter().map(|&(t, n)| (t + offset, n)).collect();
        let applied = applied_samples.borrow().clone();
        let Some(&(done_at, done)) = applied.iter().find(|s| s.1 >= total) else {
            bail!(
                "the projections applied {} of {total} events within 180 s of the last request",
                applied.last().map(|s| s.1).unwrap_or(0)
            );
        };
        let _ = done;
        // Latency of the n-th event: first time applied >= n minus first time acked >= n.
        let points = 2_000u64.min(total);
        let mut latencies = Vec::with_capacity(points as usize);
        for i in 1..=points {
            let n = (total * i / points).max(1);
            let ack = acks.iter().find(|s| s.1 >= n).map(|s| s.0);
            let app = applied.iter().find(|s| s.1 >= n).map(|s| s.0);
            if let (Some(a), Some(b)) = (ack, app) {
                latencies.push((b - a).max(0.0));
            }
        }
        latencies.sort_by(|a, b| a.total_cmp(b));
        Ok(PipelineReport {
            events: total,
            ingest: sent,
            elapsed: Duration::from_secs_f64(done_at),
            latency_p50_s: percentile(&latencies, 0.5),
            latency_p99_s: percentile(&latencies, 0.99),
        })
    }

    /// Kafka's own producer benchmark, with the gm-kafka producer settings, to a fresh topic.
    async fn producer_performance(
        &self,
        records: usize,
        record_bytes: usize,
        payloads: Option<&[SentEvent]>,
    ) -> anyhow::Result<KafkaReport> {
        let libs = std::env::var("GM_KAFKA_LIBS").unwrap_or_else(|_| ".services/kafka/libs".into());
        if !Path::new(&libs).is_dir() {
            bail!("no Kafka jars at {libs} (set GM_KAFKA_LIBS: eval \"$(scripts/services env)\")");
        }
        let java = std::env::var("JAVA_HOME").map(|h| format!("{h}/bin/java")).unwrap_or_else(|_| "java".into());
        let suffix = if payloads.is_some() { "payloads" } else { "sized" };
        let topic = format!("bench-{}.producer-perf-{suffix}", self.id);
        let kafka = &self.config.kafka;
        let log = gm_kafka::KafkaLog::connect(kafka.clone()).await.context("connecting to Kafka")?;
        use gm_ports::EventLog as _;
        log.ensure_topics(&[gm_ports::TopicSpec {
            name: topic.clone(),
            partitions: kafka.topics.raw.partitions,
            compacted: false,
        }])
        .await
        .context("creating the ProducerPerformance topic")?;
        drop(log);
        let p = &kafka.producer;
        let mut command = tokio::process::Command::new(&java);
        command
            .arg("-Xmx512m")
            .arg("-cp")
            .arg(format!("{libs}/*"))
            .arg("org.apache.kafka.tools.ProducerPerformance")
            .args(["--topic", &topic, "--num-records", &records.to_string(), "--throughput", "-1"]);
        let payload_file = self.work_dir.join("payloads.jsonl");
        let label = match payloads {
            Some(events) => {
                let mut text = String::new();
                for e in events.iter().take(20_000) {
                    text.push_str(&record_json(e).unwrap_or_else(|| wire(e).to_string()));
                    text.push('\n');
                }
                std::fs::write(&payload_file, text)?;
                command.arg("--payload-file").arg(&payload_file);
                "the bench's own records (--payload-file)".to_string()
            }
            None => {
                command.args(["--record-size", &record_bytes.to_string()]);
                format!("random {record_bytes}-byte records (--record-size)")
            }
        };
        command.arg("--producer-props").args([
            format!("bootstrap.servers={}", kafka.brokers),
            "acks=all".into(),
            "enable.idempotence=true".into(),
            format!("linger.ms={}", p.linger_ms),
            format!("batch.size={}", p.batch_size),
            format!("compression.type={}", p.compression.as_librdkafka()),
        ]);
        let output = command.stdin(Stdio::null()).output().await.with_context(|| format!("running {java}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().rev().find(|l| l.contains("records sent")).unwrap_or("").to_string();
        if !output.status.success() || last.is_empty() {
            bail!(
                "ProducerPerformance failed ({}): {}{}",
                output.status,
                stdout.lines().last().unwrap_or(""),
                String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
            );
        }
        parse_producer_performance(&last, label).context("parsing ProducerPerformance's last line")
    }

    /// COPY of `rows` rows into a scratch table shaped like `player_days` (same key, same index).
    async fn copy_rows(&self, rows: usize) -> anyhow::Result<CopyReport> {
        use sqlx::Connection as _;
        let db = self.database.context("no bench database")?;
        let mut conn = sqlx::PgConnection::connect(&db.url).await?;
        sqlx::query("CREATE TABLE bench_copy (LIKE player_days INCLUDING ALL)").execute(&mut conn).await?;
        let mut csv = String::with_capacity(rows * 32);
        let day0 = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
        for i in 0..rows {
            let day = day0 + chrono::Duration::days((i % 30) as i64);
            let _ = writeln!(csv, "{GAME},{day},player-{}", i / 30);
        }
        let started = Instant::now();
        let mut copy =
            conn.copy_in_raw("COPY bench_copy (game_id, day, player_id) FROM STDIN WITH (FORMAT csv)").await?;
        for chunk in csv.as_bytes().chunks(1 << 20) {
            copy.send(chunk).await?;
        }
        let copied = copy.finish().await?;
        let elapsed = started.elapsed();
        sqlx::query("DROP TABLE bench_copy").execute(&mut conn).await?;
        let _ = conn.close().await;
        Ok(CopyReport { rows: copied, elapsed })
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

/// The event as the simulator puts it on the wire.
fn wire(e: &SentEvent) -> Value {
    let mut v = e.body.clone();
    v["event_id"] = json!(e.event_id);
    v["player_id"] = json!(e.player_id);
    v["session_id"] = json!(e.session_id);
    v["client_ts"] = json!(e.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    v
}

fn mean_wire_bytes(events: &[SentEvent]) -> usize {
    let sample: Vec<usize> = events.iter().take(20_000).map(|e| wire(e).to_string().len()).collect();
    sample.iter().sum::<usize>() / sample.len().max(1)
}

/// The record the gateway appends to the raw topic for this event, as JSON.
fn record_json(e: &SentEvent) -> Option<String> {
    let game = gm_schemas::GameId::parse(e.game_id.clone()).ok()?;
    let body = serde_json::to_vec(&json!({"events": [wire(e)]})).ok()?;
    let decoded = gm_schemas::validate::decode_batch(&body, &game, Utc::now(), &Default::default()).ok()?;
    let envelope = decoded.into_iter().next()?.ok()?;
    serde_json::to_string(&gm_schemas::RawRecord::Event(envelope)).ok()
}

fn mean_record_bytes(events: &[SentEvent]) -> Option<usize> {
    let sizes: Vec<usize> = events.iter().take(20_000).filter_map(|e| record_json(e).map(|s| s.len())).collect();
    (!sizes.is_empty()).then(|| sizes.iter().sum::<usize>() / sizes.len())
}

fn min_applied(metrics: &str) -> u64 {
    applied_per_projection(metrics).into_iter().min().unwrap_or(0)
}

/// `gamemetrics_projection_events_applied_total` of each projection, in `ProjectionName::ALL`
/// order (0 for one not reported yet).
fn applied_per_projection(metrics: &str) -> Vec<u64> {
    ProjectionName::ALL
        .iter()
        .map(|name| {
            let needle = format!("projection=\"{}\"", name.as_str());
            metrics
                .lines()
                .filter(|l| l.starts_with("gamemetrics_projection_events_applied_total") && l.contains(&needle))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .next()
                .map_or(0, |v| v as u64)
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn parse_producer_performance(line: &str, label: String) -> anyhow::Result<KafkaReport> {
    // "200000 records sent, 141843.971631 records/sec (35.04 MB/sec), 12.77 ms avg latency,
    //  220.00 ms max latency, 8 ms 50th, 41 ms 95th, 90 ms 99th, 210 ms 99.9th."
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let number = |i: usize| -> anyhow::Result<f64> {
        let f = fields.get(i).context("missing field")?;
        Ok(f.split_whitespace().next().context("empty field")?.parse()?)
    };
    let field_with = |suffix: &str| fields.iter().position(|f| f.ends_with(suffix));
    Ok(KafkaReport {
        label,
        records: number(0)? as u64,
        records_per_second: number(1)?,
        p50_ms: field_with("50th").map(number).transpose()?.unwrap_or(0.0),
        p99_ms: field_with("99th").map(number).transpose()?.unwrap_or(0.0),
        line: line.to_string(),
    })
}

#[derive(Debug, Default)]
struct SendReport {
    planned: u64,
    /// Concurrent requests.
    lanes: usize,
    accepted: u64,
    rejected: u64,
    unsent: u64,
    requests: u64,
    retries: u64,
    elapsed: Duration,
    latencies_ms: Vec<f64>,
}

impl SendReport {
    fn events_per_second(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn latency(&self, p: f64) -> f64 {
        let mut v = self.latencies_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        percentile(&v, p)
    }
    fn check(&self, phase: &str) -> anyhow::Result<()> {
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

struct CatchUp {
    events: u64,
    elapsed: Duration,
    done: bool,
    /// When each projection had applied the whole backlog, from the start of the catch-up.
    per_projection: Vec<(&'static str, Option<Duration>)>,
}

struct PipelineReport {
    events: u64,
    ingest: SendReport,
    elapsed: Duration,
    latency_p50_s: f64,
    latency_p99_s: f64,
}

impl PipelineReport {
    fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

struct KafkaReport {
    label: String,
    records: u64,
    records_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    line: String,
}

struct CopyReport {
    rows: u64,
    elapsed: Duration,
}

impl CopyReport {
    fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

struct Machine {
    cpus: usize,
    model: String,
    memory_gib: f64,
}

/// The 1-, 5- and 15-minute load averages (other work on the machine skews every figure).
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

impl Machine {
    fn read() -> Self {
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
}

struct Report {
    mode: Mode,
    started_at: chrono::DateTime<Utc>,
    load_at_start: String,
    load_at_end: String,
    machine: Machine,
    wire_bytes: usize,
    record_bytes: usize,
    ingest: SendReport,
    ingest_half: SendReport,
    half_rate: f64,
    ingest_single: SendReport,
    catch_up: CatchUp,
    pipeline: PipelineReport,
    kafka: Vec<KafkaReport>,
    copy: Option<CopyReport>,
    recommendations: queries::QueryLoad,
    analytics: queries::QueryLoad,
    rss: Vec<(&'static str, Option<f64>)>,
}

fn thousands(v: f64) -> String {
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

impl Report {
    /// Rows of (what, figure, target, ratio / verdict).
    fn rows(&self) -> Vec<[String; 4]> {
        let mut rows = Vec::new();
        let i = &self.ingest;
        let store = if self.mode == Mode::Production { "Kafka" } else { "embedded log" };
        rows.push([
            format!("ingest HTTP → {store}, batches of 100, 32 concurrent requests ({} events)", i.accepted),
            format!(
                "**{} events/s**; request p50 {:.1} ms, p99 {:.1} ms",
                thousands(i.events_per_second()),
                i.latency(0.5),
                i.latency(0.99)
            ),
            "≥ 100,000 events/s".into(),
            format!(
                "{:.0}% of target, {}",
                100.0 * i.events_per_second() / TARGET_INGEST,
                verdict(i.events_per_second() >= TARGET_INGEST)
            ),
        ]);
        let h = &self.ingest_half;
        rows.push([
            format!(
                "same, rate-limited to half the rate above ({} events/s requested, {} achieved)",
                thousands(self.half_rate),
                thousands(h.events_per_second())
            ),
            format!("request p50 {:.1} ms, **p99 {:.1} ms**", h.latency(0.5), h.latency(0.99)),
            "p99 < 10 ms at 50,000 events/s".into(),
            format!(
                "{}{}",
                verdict(h.latency(0.99) < TARGET_INGEST_P99_MS && self.half_rate >= TARGET_INGEST / 2.0),
                if self.half_rate < TARGET_INGEST / 2.0 {
                    format!(" (measured at {} events/s, below 50,000)", thousands(self.half_rate))
                } else {
                    String::new()
                }
            ),
        ]);
        let s = &self.ingest_single;
        rows.push([
            format!("ingest, one event per request, {} concurrent requests ({} requests)", s.lanes, s.requests),
            format!(
                "**{} requests/s**; p50 {:.1} ms, p99 {:.1} ms",
                thousands(s.requests_per_second()),
                s.latency(0.5),
                s.latency(0.99)
            ),
            "≥ 15,000 requests/s".into(),
            format!(
                "{:.0}% of target, {}",
                100.0 * s.requests_per_second() / TARGET_SINGLE,
                verdict(s.requests_per_second() >= TARGET_SINGLE)
            ),
        ]);
        let p = &self.pipeline;
        rows.push([
            format!(
                "whole pipeline, live (ingest → actors → {} projections), {} events, batches of 100",
                gm_projections::ProjectionName::ALL.len(),
                p.events
            ),
            format!(
                "**{} events/s** (last event in every read model {:.1} s after the first request; ingest alone took {:.1} s)",
                thousands(p.events_per_second()),
                p.elapsed.as_secs_f64(),
                p.ingest.elapsed.as_secs_f64()
            ),
            "≥ 50,000 events/s".into(),
            format!(
                "{:.0}% of target, {}",
                100.0 * p.events_per_second() / TARGET_PIPELINE,
                verdict(p.events_per_second() >= TARGET_PIPELINE)
            ),
        ]);
        rows.push([
            "event-to-read-model latency, same run".into(),
            format!("p50 {:.2} s, **p99 {:.2} s**", p.latency_p50_s, p.latency_p99_s),
            "p99 < 2 s".into(),
            verdict(p.latency_p99_s < TARGET_PIPELINE_P99_S).into(),
        ]);
        let c = &self.catch_up;
        let catch_up_what = if self.mode == Mode::Production {
            "actors + projections catching up with the backlog of the ingest phases (started after them, no concurrent ingest)"
        } else {
            "projections finishing the events of the ingest phases (after the last request)"
        };
        rows.push([
            catch_up_what.into(),
            format!(
                "{} events in {:.1} s = {} events/s",
                c.events,
                c.elapsed.as_secs_f64(),
                thousands(c.events as f64 / c.elapsed.as_secs_f64().max(1e-9))
            ),
            "—".into(),
            "—".into(),
        ]);
        if c.per_projection.iter().any(|(_, when)| when.is_some()) {
            let each: Vec<String> = c
                .per_projection
                .iter()
                .map(|(name, when)| match when {
                    Some(d) => format!("{name} {:.1} s", d.as_secs_f64()),
                    None => format!("{name} not done"),
                })
                .collect();
            rows.push([
                "same catch-up, time for each projection to apply the whole backlog".into(),
                each.join(", "),
                "—".into(),
                "—".into(),
            ]);
        }
        for k in &self.kafka {
            rows.push([
                format!(
                    "Kafka ProducerPerformance, {} records of {}, acks=all, idempotence, linger 5 ms, lz4, same run",
                    k.records, k.label
                ),
                format!(
                    "{} records/s; p50 {:.0} ms, p99 {:.0} ms",
                    thousands(k.records_per_second),
                    k.p50_ms,
                    k.p99_ms
                ),
                "ratio ≥ 50%".into(),
                format!(
                    "ingest ÷ this = **{:.0}%**, {}",
                    100.0 * i.events_per_second() / k.records_per_second,
                    verdict(i.events_per_second() / k.records_per_second >= 0.5)
                ),
            ]);
        }
        if let Some(copy) = &self.copy {
            rows.push([
                format!("PostgreSQL COPY (CSV) of {} rows into a table shaped like player_days (same keys)", copy.rows),
                format!("{} rows/s", thousands(copy.rows_per_second())),
                "(reference)".into(),
                format!(
                    "pipeline ÷ COPY = **{:.0}%** (each event feeds {} projections)",
                    100.0 * p.events_per_second() / copy.rows_per_second(),
                    gm_projections::ProjectionName::ALL.len()
                ),
            ]);
        }
        let r = &self.recommendations;
        rows.push([
            format!(
                "recommendations, GET /v1/players/{{game}}/{{player}}/recommendations?limit=10, {} concurrent requests ({} requests over {} players' warm lists)",
                r.lanes, r.requests, "the live phase's"
            ),
            format!(
                "**{} requests/s**; p50 {:.1} ms, **p99 {:.1} ms**",
                thousands(r.requests_per_second()),
                r.latency(0.5),
                r.latency(0.99)
            ),
            "≥ 10,000 requests/s, p99 < 10 ms".into(),
            format!(
                "{:.0}% of target, {}",
                100.0 * r.requests_per_second() / queries::TARGET_RECOMMENDATIONS,
                verdict(
                    r.requests_per_second() >= queries::TARGET_RECOMMENDATIONS
                        && r.latency(0.99) < queries::TARGET_RECOMMENDATIONS_P99_MS
                )
            ),
        ]);
        let a = &self.analytics;
        rows.push([
            format!(
                "analytics queries, a mix of active users, revenue, sessions, retention, new vs returning, monetisation (7 days) and a leaderboard page, {} concurrent requests ({} requests)",
                a.lanes, a.requests
            ),
            format!(
                "**{} requests/s**; p50 {:.1} ms, p99 {:.1} ms",
                thousands(a.requests_per_second()),
                a.latency(0.5),
                a.latency(0.99)
            ),
            "≥ 5,000 requests/s".into(),
            format!(
                "{:.0}% of target, {}",
                100.0 * a.requests_per_second() / queries::TARGET_ANALYTICS,
                verdict(a.requests_per_second() >= queries::TARGET_ANALYTICS)
            ),
        ]);
        for (name, rss) in &self.rss {
            let (target, ratio) = match *name {
                "gateway" => (
                    "< 100 MB".to_string(),
                    rss.map(|r| verdict(r < TARGET_GATEWAY_RSS_MB).to_string()).unwrap_or_default(),
                ),
                "actors" => ("< 1 KB per idle player (not measured here)".to_string(), "—".to_string()),
                "serve" => ("gateway < 100 MB (all roles share this process)".to_string(), "—".to_string()),
                _ => ("—".to_string(), "—".to_string()),
            };
            rows.push([
                format!("peak RSS (VmHWM) of the {name} process over the whole run"),
                rss.map(|r| format!("{r:.0} MB")).unwrap_or_else(|| "unavailable".into()),
                target,
                ratio,
            ]);
        }
        rows
    }

    fn title(&self) -> String {
        match self.mode {
            Mode::Production => format!(
                "Production (Kafka + PostgreSQL + Redis), `gamemetrics bench` — {}",
                self.started_at.format("%Y-%m-%d %H:%M UTC")
            ),
            Mode::Embedded => format!(
                "Embedded default (SQLite, one process), `gamemetrics bench` — {}",
                self.started_at.format("%Y-%m-%d %H:%M UTC")
            ),
        }
    }

    fn notes(&self) -> Vec<String> {
        let m = &self.machine;
        let mut notes = vec![
            format!(
                "Machine: {} × {}, {:.1} GiB RAM; release build. The load generator (this process), the roles{} all share these cores.",
                m.cpus,
                m.model,
                m.memory_gib,
                if self.mode == Mode::Production { ", Kafka, PostgreSQL and Redis" } else { "" }
            ),
            format!(
                "Load average (1, 5, 15 min) when the bench started: {}; when it ended: {}. Anything above ~1 before the start is other work on the machine competing for the same cores.",
                self.load_at_start, self.load_at_end
            ),
            format!(
                "Load generator: a lean sender in the bench process (one thread, bodies serialised before the clock starts, responses parsed only for their statuses) instead of `simulate::send`, whose per-event cloning and JSON building would take CPU from the measured processes. Events come from the simulator's plans (mean {} bytes on the wire, {} bytes as the raw record the gateway appends).",
                self.wire_bytes, self.record_bytes
            ),
        ];
        if self.mode == Mode::Production {
            notes.push("Each role is its own process (`gateway`, `actors`, `projections`). The ingest phases run before actors and projections start, so they measure the gateway and Kafka; the catch-up row is the consumer side alone; the live pipeline row runs everything at once.".into());
            notes.push(format!(
                "Kafka's ProducerPerformance ran in the same run, with gm-kafka's producer settings (acks=all, idempotence, linger.ms, batch.size, compression from the configuration), {} records (the ingest count), to fresh topics with the raw topic's partition count. Its last lines: {}",
                self.ingest.accepted,
                self.kafka.iter().map(|k| format!("`{}`", k.line)).collect::<Vec<_>>().join("; ")
            ));
        } else {
            notes.push("Embedded mode: every role in one `serve` process on SQLite; actors and projections run during the ingest phases. No Kafka or PostgreSQL reference figures.".into());
        }
        notes.push("Event-to-read-model latency: the acknowledged count is sampled at every response (client side) and the projections process's `gamemetrics_projection_events_applied_total` (minimum over every projection) every 50 ms; the latency of the n-th event is the first time the applied count reaches n minus the first time the acknowledged count does (FIFO approximation: it assumes events are applied in the order they were acknowledged; partitions make that only approximately true). The 50 ms polling adds up to 50 ms.".into());
        notes
    }

    fn text(&self) -> String {
        let mut out = format!("\n{}\n\n", self.title());
        for [what, figure, target, ratio] in self.rows() {
            let _ = writeln!(out, "- {what}\n    {figure}\n    target: {target}; {ratio}");
        }
        out.push('\n');
        for note in self.notes() {
            let _ = writeln!(out, "* {note}");
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = format!("\n## {}\n\n", self.title());
        let command = match self.mode {
            Mode::Production => "eval \"$(scripts/services env)\"\ncargo build --release --bin gamemetrics\nGM_MODE=production GM_KAFKA__BROKERS=$GM_KAFKA_BROKERS GM_POSTGRES__URL=$GM_POSTGRES_URL \\\n    GM_REDIS__URL=$GM_REDIS_URL target/release/gamemetrics bench --write docs/performance.md",
            Mode::Embedded => "cargo build --release --bin gamemetrics\ntarget/release/gamemetrics bench --write docs/performance.md",
        };
        let _ = writeln!(out, "```sh\n{command}\n```\n");
        out.push_str("| what | figure | target | ratio / verdict |\n|---|---|---|---|\n");
        for [what, figure, target, ratio] in self.rows() {
            let _ = writeln!(out, "| {what} | {figure} | {target} | {ratio} |");
        }
        out.push('\n');
        for note in self.notes() {
            let _ = writeln!(out, "- {note}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_producer_performance_last_line() {
        let line = "200000 records sent, 141843.971631 records/sec (35.04 MB/sec), 12.77 ms avg latency, 220.00 ms max latency, 8 ms 50th, 41 ms 95th, 90 ms 99th, 210 ms 99.9th.";
        let r = parse_producer_performance(line, "x".into()).unwrap();
        assert_eq!(r.records, 200_000);
        assert!((r.records_per_second - 141_843.97).abs() < 0.1);
        assert_eq!((r.p50_ms, r.p99_ms), (8.0, 90.0));
    }

    #[test]
    fn min_applied_is_zero_until_every_projection_reports() {
        let mut text = String::from("# TYPE gamemetrics_projection_events_applied counter\n");
        for (i, p) in ProjectionName::ALL.iter().enumerate() {
            let _ = writeln!(
                text,
                "gamemetrics_projection_events_applied_total{{projection=\"{}\"}} {}",
                p.as_str(),
                10 + i
            );
        }
        assert_eq!(min_applied(&text), 10);
        assert_eq!(min_applied("gamemetrics_projection_events_applied_total{projection=\"sessions\"} 5\n"), 0);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(123456.0), "123,456");
        assert_eq!(thousands(-1234.0), "-1,234");
    }
}
