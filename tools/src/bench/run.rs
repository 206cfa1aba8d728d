//! One run of the throughput bench: the roles start, the phases follow one another, and
//! every phase's CPU cost is read around it.

use super::catch_up::CatchUp;
use super::copy::CopyReport;
use super::cpu::{self, Meter, PhaseCost, Services, Snapshot};
use super::database::BenchDatabase;
use super::fill::{FillPlan, FillReport};
use super::freshness::FreshnessReport;
use super::ingest::{first_events, SinglePlan};
use super::issuer::Credentials;
use super::kafka::KafkaReport;
use super::pipeline::PipelineReport;
use super::process::{RoleProcess, Spawner};
use super::queries::QueryLoad;
use super::send::{legacy_wire, mean_record_bytes, mean_wire_bytes, Route, SendReport};
use super::{BenchOptions, Mode, Target};
use crate::simulate::SentEvent;
use chrono::{DateTime, Utc};
use std::cell::RefCell;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// Everything one run measured.
pub(super) struct Run {
    pub started_at: DateTime<Utc>,
    /// The fill before the phases (`--fill-players`, `--fill-events`).
    pub fill: Option<FillReport>,
    pub load_before: String,
    pub load_after: String,
    pub wire_bytes: usize,
    pub record_bytes: usize,
    pub ingest: SendReport,
    pub ingest_half: SendReport,
    pub half_rate: f64,
    pub ingest_single: SendReport,
    pub ingest_single_legacy: SendReport,
    /// Requests of the one-event phases (typed, legacy) that were a new player's first event.
    pub single_firsts: [usize; 2],
    pub catch_up: CatchUp,
    pub pipeline: PipelineReport,
    pub kafka: Vec<KafkaReport>,
    pub copy: Option<CopyReport>,
    pub recommendations: QueryLoad,
    pub analytics: QueryLoad,
    /// The steady-state freshness phase (absent with `--freshness-secs 0`).
    pub freshness: Option<FreshnessReport>,
    pub rss: Vec<(&'static str, Option<f64>)>,
    /// CPU per 1,000 events (or requests) of each process, per phase.
    pub costs: Vec<PhaseCost>,
}

/// The events of each phase (a fresh population each, so no event id repeats).
pub(super) struct Plans {
    pub warmup: Vec<SentEvent>,
    pub full: Vec<SentEvent>,
    pub half: Vec<SentEvent>,
    /// One event per request on `/v1/events`, and on `/api/v1/events`.
    pub single: SinglePlan,
    pub single_legacy: SinglePlan,
    /// Requests of each that are the first event of a player no earlier phase sent.
    pub single_firsts: [usize; 2],
    pub live: Vec<SentEvent>,
}

/// The state of one run, shared by the phases (each phase module adds its methods).
pub(super) struct Bench<'a> {
    pub target: &'a Target,
    pub options: &'a BenchOptions,
    pub id: String,
    pub work_dir: &'a Path,
    pub database: Option<&'a BenchDatabase>,
    pub key: String,
    pub client: awc::Client,
    /// The throwaway token issuer's analyst token and the run's metrics token.
    pub credentials: Credentials,
    pub spawner: Spawner<'a>,
    meter: Meter,
    costs: RefCell<Vec<PhaseCost>>,
}

/// Runs the bench once in a fresh database (production) or data directory (embedded).
pub(super) async fn run_once(target: &Target, options: &BenchOptions, work_dir: &Path) -> anyhow::Result<Run> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let database = match target.mode {
        Mode::Production => Some(BenchDatabase::create(&target.postgres_url, &id).await?),
        Mode::Embedded => None,
    };
    let result = match Bench::new(target, options, id, work_dir, database.as_ref()) {
        Ok(bench) => bench.run().await,
        Err(e) => Err(e),
    };
    if let Some(db) = &database {
        db.drop_database().await;
    }
    result
}

impl<'a> Bench<'a> {
    fn new(
        target: &'a Target,
        options: &'a BenchOptions,
        id: String,
        work_dir: &'a Path,
        database: Option<&'a BenchDatabase>,
    ) -> anyhow::Result<Self> {
        let key = format!("bench-key-{}", &id[..12]);
        let credentials = Credentials::create(work_dir, "analyst")?;
        let spawner = Spawner::new(target, work_dir, &id, &key, database.map(|d| d.url.as_str()))
            .with_env(credentials.env.iter().cloned());
        let services = target.production().then(|| Services {
            postgres_port: Some(cpu::url_port(&target.postgres_url, 5432)),
            redis_port: target.redis_url.as_deref().map(|u| cpu::url_port(u, 6379)),
            kafka_port: target.kafka.brokers.split(',').next().map(|b| cpu::url_port(b.trim(), 9092)),
        });
        Ok(Self {
            target,
            options,
            id,
            work_dir,
            database,
            key,
            client: awc::Client::builder().timeout(Duration::from_secs(30)).finish(),
            credentials,
            spawner,
            meter: Meter::new(services),
            costs: RefCell::new(Vec::new()),
        })
    }

    pub fn production(&self) -> bool {
        self.target.production()
    }

    /// CPU time so far of every process involved.
    pub fn cpu(&self, roles: &[RoleProcess]) -> Snapshot {
        let pids: Vec<(&'static str, u32)> = roles.iter().map(|r| (r.name, r.pid())).collect();
        self.meter.snapshot(&pids)
    }

    /// Records the CPU cost of a phase that started at `before` and handled `count` units.
    pub fn cost(&self, roles: &[RoleProcess], phase: &str, unit: &'static str, count: u64, before: &Snapshot) {
        let after = self.cpu(roles);
        self.costs.borrow_mut().push(PhaseCost::between(phase, unit, count, before, &after));
    }

    fn plans(&self) -> Plans {
        let n = self.options.events.max(1000);
        eprintln!("bench: planning events");
        let (warmup, full, half) = (self.plan(1, 2_000), self.plan(2, n), self.plan(3, n / 2));
        let requests = self.options.single_events.max(100);
        let share = self.options.single_new_share;
        let single = self.single_plan(4, requests, share, Route::Typed);
        let single_legacy = self.single_plan(6, requests, share, Route::Legacy);
        let mut seen: HashSet<String> = warmup.iter().chain(&full).chain(&half).map(|e| e.player_id.clone()).collect();
        let typed_firsts = first_events(&single.events, &mut seen, |_| true);
        let legacy_firsts = first_events(&single_legacy.events, &mut seen, |e| legacy_wire(e).is_some());
        Plans {
            warmup,
            full,
            half,
            single,
            single_legacy,
            single_firsts: [typed_firsts, legacy_firsts],
            live: self.plan(5, n),
        }
    }

    async fn run(&self) -> anyhow::Result<Run> {
        let started_at = Utc::now();
        let load_before = cpu::load_average();
        let fill = match FillPlan::new(self.options.fill_players, self.options.fill_events)? {
            Some(plan) => Some(self.fill_phase(plan).await?),
            None => None,
        };
        let plans = self.plans();
        // The gateway first (embedded: the one process with every role).
        let first = if self.production() { ("gateway", "gateway") } else { ("serve", "serve") };
        let mut roles = vec![self.spawner.spawn(first.0, &[first.1])?];
        roles[0].wait_ready(&self.client).await?;
        let gateway = roles[0].url();
        let ingest = self.ingest_phases(&gateway, &plans, &roles).await?;
        let (kafka, copy) = self.reference_phases(&plans.full).await;
        let catch_up_start = if self.production() {
            let start = self.catch_up_start(None, &roles).await;
            for role in ["actors", "projections"] {
                roles.push(self.spawner.spawn(role, &[role])?);
            }
            for role in &mut roles[1..] {
                role.wait_ready(&self.client).await?;
            }
            start
        } else {
            self.catch_up_start(Some(&gateway), &roles).await
        };
        let projections = roles.last().map(RoleProcess::url).unwrap_or_default();
        let catch_up = self.catch_up(catch_up_start, &projections, ingest.sent, &roles).await?;
        let pipeline = self.pipeline_phase(&gateway, &projections, &plans.live, catch_up.applied, &roles).await?;
        let (recommendations, analytics) = self.query_phases(&gateway, &plans.live, &roles).await?;
        let freshness = if self.options.freshness_secs > 0 {
            // Production: the visibility queries go to a gateway of their own whose Redis
            // cache is off (TTLs 0), so they read the read models (freshness.rs).
            let poll_gateway = if self.production() {
                let cache_off = [
                    ("GM_REDIS__PROFILE_TTL_MS", "0"),
                    ("GM_REDIS__QUERY_TTL_MS", "0"),
                    ("GM_REDIS__RECENT_QUERY_TTL_MS", "0"),
                ];
                let mut poller = self.spawner.spawn_with("gateway (freshness queries)", &["gateway"], &cache_off)?;
                poller.wait_ready(&self.client).await?;
                let url = poller.url();
                roles.push(poller);
                url
            } else {
                gateway.clone()
            };
            Some(self.freshness_phase(&gateway, &poll_gateway, &projections, &roles).await?)
        } else {
            None
        };
        let rss = roles.iter().map(|r| (r.name, r.peak_rss_mb())).collect();
        drop(roles);
        Ok(Run {
            started_at,
            fill,
            load_before,
            load_after: cpu::load_average(),
            wire_bytes: mean_wire_bytes(&plans.full),
            record_bytes: mean_record_bytes(&plans.full).unwrap_or_else(|| mean_wire_bytes(&plans.full)),
            ingest: ingest.full,
            ingest_half: ingest.half,
            half_rate: ingest.half_rate,
            ingest_single: ingest.single,
            ingest_single_legacy: ingest.single_legacy,
            single_firsts: plans.single_firsts,
            catch_up,
            pipeline,
            kafka,
            copy,
            recommendations,
            analytics,
            freshness,
            rss,
            costs: self.costs.take(),
        })
    }
}
