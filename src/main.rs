//! The `gamemetrics` command: CLI wiring only.

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use gamemetrics::config::{Config, ConfigError};
use gamemetrics::platform::{Backends, Platform, Roles};
use gm_projections::ProjectionName;
use gm_tools::simulate::{self, SimulateOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "gamemetrics", version, about = "Real-time analytics and personalisation for games")]
struct Cli {
    /// Configuration file (TOML) layered over the defaults; GM_* variables override both.
    #[arg(long, global = true, env = "GM_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Gateway, actors and projections in one process (embedded storage by default).
    Serve,
    /// The HTTP gateway role (production: scale by running more copies).
    Gateway,
    /// The actors role: a consumer-group member on player.events.raw.
    Actors,
    /// Apply the PostgreSQL migrations embedded in the binary.
    Migrate,
    /// Drive realistic synthetic traffic against a gateway.
    Simulate(SimulateArgs),
    /// The projections role (a member of every projection's consumer group), or `rebuild`.
    Projections {
        #[command(subcommand)]
        command: Option<ProjectionsCommand>,
    },
    /// Measure the performance targets on the configured mode (fresh namespace and database)
    /// and print the figures with their targets and ratios.
    Bench(BenchArgs),
    /// The recommendations' quality check on simulated players with planted kit
    /// preferences: hit-rate@10 on held-out items against a popularity baseline (fails
    /// below 1.5 times the baseline).
    RecoQuality(RecoQualityArgs),
    /// GDPR: erase a player everywhere, follow an erasure, export what is held about a player.
    Privacy {
        #[command(subcommand)]
        command: PrivacyCommand,
    },
    /// Retention of the events fact table (per game; production mode).
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Dead letters on system.dlq: list them, or replay them into player.events.raw.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Planned failover to the MirrorMaker 2 mirror of the Kafka cluster: translates the
    /// actors' group offsets, snapshot watermarks and projection checkpoints to the mirror's
    /// offsets (roles stopped; the primary still readable). Prints what moved, as JSON.
    KafkaFailover {
        /// Bootstrap servers of the mirror cluster.
        #[arg(long)]
        to_brokers: String,
        /// Translate and print, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum PrivacyCommand {
    /// Destroy the player's data key, refuse their events for the suppression window, and
    /// erase them from every store (prints the erasure as JSON; idempotent per player).
    Erase {
        game: String,
        player: String,
        /// Why (a ticket number...); kept in the erasure record. No personal data.
        #[arg(long)]
        reason: String,
        /// Follow the erasure until it completes, at most this many seconds (the actors and
        /// projections must be running).
        #[arg(long)]
        wait: Option<u64>,
    },
    /// An erasure's status, timeline and receipt (JSON).
    Status { erasure_id: uuid::Uuid },
    /// Everything held about a player (JSON), personal values decrypted while the key exists.
    Export { game: String, player: String },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Drop events older than each game's limit (`[retention]` in the configuration).
    Run {
        /// Print what would be dropped, drop nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Print dead letters with their headers (reason, source partition and offset, ...).
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Re-append dead letters' original payloads to player.events.raw with the same key
    /// (after a fix; the actors' dedup by event_id makes a replay idempotent).
    Replay {
        /// The offset in system.dlq of the one dead letter to replay.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        offset: Option<u64>,
        /// The partition of system.dlq that `--offset` refers to.
        #[arg(long, default_value_t = 0)]
        partition: u32,
        /// Replay every dead letter.
        #[arg(long)]
        all: bool,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Events of the ingest (batches of 100) and whole-pipeline phases.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Requests of the one-event-per-request phase.
    #[arg(long, default_value_t = 20_000)]
    single_events: usize,
    /// Concurrent requests of the one-event-per-request phase (each waits for the broker's
    /// acknowledgement, so throughput = concurrency ÷ latency).
    #[arg(long, default_value_t = 256)]
    single_lanes: usize,
    /// Requests of each query phase (recommendations, analytics queries).
    #[arg(long, default_value_t = 50_000)]
    query_requests: usize,
    /// Concurrent requests of the query phases.
    #[arg(long, default_value_t = 64)]
    query_lanes: usize,
    /// Append the report as a markdown section to this file (e.g. docs/performance.md).
    #[arg(long)]
    write: Option<PathBuf>,
    /// Runs of the whole throughput bench; every figure is reported as the median and the
    /// spread (smallest–largest) over them.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Instead of the throughput phases: snapshot this many players, restart the actors role
    /// and measure its time to ready, snapshot restores and memory per idle player.
    #[arg(long)]
    recovery_players: Option<usize>,
    /// Players of the recovery bench that get an event after the restart.
    #[arg(long, default_value_t = 50_000)]
    recovery_sample: usize,
    /// Instead of the throughput phases: request this many erasures (one every 500 ms) under
    /// a steady simulated load and measure request → completed (p50, p99).
    #[arg(long)]
    erasures: Option<usize>,
    /// Share of the one-event-per-request phases' requests that are the first event of a
    /// player never seen before (0..=1).
    #[arg(long, default_value_t = 0.1)]
    single_new_share: f64,
    /// Offered load of the steady-state freshness phase, events/s (open loop, batches of 100).
    #[arg(long, default_value_t = 20_000.0)]
    freshness_rate: f64,
    /// Seconds of offered load of the steady-state freshness phase (0: skip the phase).
    #[arg(long, default_value_t = 60)]
    freshness_secs: u64,
    /// Before the phases, fill the stores with this many players (fill-0000000, ...) through
    /// the production write path (gateway, Kafka, actors, projections); with --fill-events.
    #[arg(long, default_value_t = 0)]
    fill_players: usize,
    /// Events of the fill, split evenly between its players over the last 7 days.
    #[arg(long, default_value_t = 0)]
    fill_events: usize,
    /// The broker's log directory (Kafka's `log.dirs`, e.g. .services/kafka/data), to report
    /// the fill's bytes per topic.
    #[arg(long)]
    kafka_log_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RecoQualityArgs {
    #[arg(long, default_value_t = 2_000)]
    players: usize,
    /// Virtual days the players' lives are spread over.
    #[arg(long, default_value_t = 14)]
    days: u32,
    #[arg(long, default_value_t = 11)]
    seed: u64,
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// Gateway base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// How many games (taken in order from --api-keys).
    #[arg(long, default_value_t = 1)]
    games: usize,
    /// Players per game.
    #[arg(long, default_value_t = 1000)]
    players: usize,
    /// Events per second (0 = as fast as the gateway answers).
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<u64>,
    /// Virtual days the players' lives are spread over, ending now.
    #[arg(long, default_value_t = 1)]
    days: u32,
    /// game=key pairs, comma-separated (defaults to the configured keys).
    #[arg(long, env = "GM_SIMULATE_KEYS")]
    api_keys: Option<String>,
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Concurrent requests.
    #[arg(long, default_value_t = 8)]
    lanes: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Replay a projection from offset 0 into fresh tables and swap them in.
    Rebuild {
        /// player_profiles | daily_activity | sessions | revenue | funnel
        name: String,
    },
}

#[actix_web::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprint!("{}", error_report(&error, std::env::var("RUST_BACKTRACE").ok().as_deref()));
            ExitCode::FAILURE
        }
    }
}

/// `error: ` and the error's chain of causes on one line. The backtrace follows only when
/// asked for: with `RUST_BACKTRACE=1` or `full` for a failure at run time, and with
/// `RUST_BACKTRACE=full` only for a bad setting, whose message names the setting and whose
/// backtrace (the configuration loader's frames) helps nobody, so that a machine that sets
/// `RUST_BACKTRACE=1` for every program still shows a newcomer one clear line.
fn error_report(error: &anyhow::Error, rust_backtrace: Option<&str>) -> String {
    let mut out = format!("error: {error:#}\n");
    let configuration = error.chain().any(|cause| cause.is::<ConfigError>());
    let asked = match rust_backtrace {
        Some("full") => true,
        Some("0") | None => false,
        Some(_) => !configuration,
    };
    let backtrace = error.backtrace();
    if asked && backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        out.push_str(&format!("\nstack backtrace:\n{backtrace}\n"));
    }
    out
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    let command = cli.command.unwrap_or(Command::Serve);
    let role = match &command {
        Command::Gateway => "gateway",
        Command::Actors => "actors",
        Command::Projections { command: None } => "projections",
        _ => "serve",
    };
    let telemetry = &config.telemetry;
    let _tracing = gm_telemetry::trace::init(&gm_telemetry::TracingSettings {
        json: config.json_logs,
        otlp_endpoint: Some(telemetry.otlp_endpoint.clone()).filter(|e| !e.is_empty()),
        sampling_ratio: telemetry.sampling_ratio,
        service_name: format!("{}-{role}", telemetry.service_name),
    })?;
    match command {
        Command::Serve => serve(config, Roles::ALL).await,
        Command::Gateway => serve(config, Roles::GATEWAY).await,
        Command::Actors => serve(config, Roles::ACTORS).await,
        Command::Projections { command: None } => serve(config, Roles::PROJECTIONS).await,
        Command::Migrate => migrate(&config).await,
        Command::Dlq { command } => dlq(&config, command).await,
        Command::Privacy { command } => privacy(&config, command).await,
        Command::Retention { command: RetentionCommand::Run { dry_run } } => {
            let report = gamemetrics::admin::retention_run(&config, dry_run).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::KafkaFailover { to_brokers, dry_run } => {
            let report = gamemetrics::failover::kafka_failover(&config, &to_brokers, dry_run).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Simulate(args) => run_simulation(&config, args).await,
        Command::RecoQuality(args) => reco_quality(args).await,
        Command::Projections { command: Some(ProjectionsCommand::Rebuild { name }) } => rebuild(&config, &name).await,
        Command::Bench(args) => bench(&config, cli.config.clone(), args).await,
    }
}

/// `gamemetrics bench`: the settings of the configured platform handed to gm-tools' bench.
async fn bench(config: &Config, config_file: Option<PathBuf>, args: BenchArgs) -> anyhow::Result<()> {
    use gamemetrics::config::Mode;
    use gm_tools::bench;
    let target = bench::Target {
        mode: match config.mode {
            Mode::Production => bench::Mode::Production,
            Mode::Embedded => bench::Mode::Embedded,
        },
        postgres_url: config.postgres.url.clone(),
        kafka: config.kafka.clone(),
        redis_url: config.cache().map(|r| r.url.clone()),
        master_key_configured: config.configured_master_key()?.is_some(),
        max_concurrent_loads: config.actors.max_concurrent_loads,
        config_file,
    };
    let options = bench::BenchOptions {
        events: args.events,
        single_events: args.single_events,
        single_lanes: args.single_lanes,
        query_requests: args.query_requests,
        query_lanes: args.query_lanes,
        write: args.write,
        runs: args.runs,
        recovery_players: args.recovery_players,
        recovery_sample: args.recovery_sample,
        erasures: args.erasures,
        single_new_share: args.single_new_share,
        freshness_rate: args.freshness_rate,
        freshness_secs: args.freshness_secs,
        fill_players: args.fill_players,
        fill_events: args.fill_events,
        kafka_log_dir: args.kafka_log_dir,
    };
    bench::run(&target, options).await
}

async fn privacy(config: &Config, command: PrivacyCommand) -> anyhow::Result<()> {
    use gamemetrics::admin;
    let json = match command {
        PrivacyCommand::Erase { game, player, reason, wait } => {
            let erasure = admin::erase(config, &game, &player, &reason, wait.map(Duration::from_secs)).await?;
            serde_json::to_value(erasure)?
        }
        PrivacyCommand::Status { erasure_id } => match admin::status(config, erasure_id).await? {
            Some(erasure) => serde_json::to_value(erasure)?,
            None => bail!("no erasure {erasure_id}"),
        },
        PrivacyCommand::Export { game, player } => match admin::export(config, &game, &player).await? {
            Some(export) => export,
            None => bail!("nothing is held about {game}/{player}"),
        },
    };
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

async fn reco_quality(args: RecoQualityArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("gm-reco-quality-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let report = gm_tools::reco_quality::run(args.players, args.days, args.seed, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = report?;
    println!("{}", report.summary());
    anyhow::ensure!(report.lift() >= 1.5, "recommendations do not beat popularity by 1.5x");
    Ok(())
}

async fn serve(config: Config, roles: Roles) -> anyhow::Result<()> {
    if roles.gateway {
        config.refuse_development_credentials()?;
    }
    if config.mode == gamemetrics::config::Mode::Production && roles == Roles::ALL {
        // One process with every role on production services (tests, small deployments).
        migrate(&config).await?;
    }
    let listener =
        std::net::TcpListener::bind(config.bind_addr()?).with_context(|| format!("binding {}", config.http.bind))?;
    let platform = Platform::start_roles(&config, listener, roles).await?;
    eprint!("{}", gamemetrics::welcome::banner(&config, &platform.url(), roles));
    wait_for_termination().await?;
    tracing::info!("shutting down: draining requests, snapshotting actors");
    platform.stop().await;
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM (Kubernetes, systemd).
async fn wait_for_termination() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

async fn run_simulation(config: &Config, args: SimulateArgs) -> anyhow::Result<()> {
    let mut keys = match &args.api_keys {
        Some(text) => {
            let mut c = config.clone();
            c.api_keys = gamemetrics::config::ApiKeys::Text(text.clone());
            c.api_key_pairs()?
        }
        None => config.api_key_pairs()?,
    };
    if keys.len() < args.games {
        bail!("--games {} but only {} API keys are known (give --api-keys game=key,...)", args.games, keys.len());
    }
    keys.truncate(args.games);
    let options = SimulateOptions {
        url: args.url.trim_end_matches('/').to_string(),
        games: keys.into_iter().map(|(g, k)| (g.to_string(), k)).collect(),
        players_per_game: args.players,
        rate: args.rate,
        duration: args.duration.map(Duration::from_secs),
        days: args.days,
        seed: args.seed,
        batch_size: args.batch_size,
        lanes: args.lanes,
        progress: true,
        retry_for: Duration::from_secs(30),
    };
    let report = simulate::run(options).await;
    println!("{}", report.summary());
    if report.accepted.is_empty() {
        bail!("no event was accepted: is the gateway at {} running, and are the API keys right?", args.url);
    }
    Ok(())
}

async fn rebuild(config: &Config, name: &str) -> anyhow::Result<()> {
    let Some(projection) = ProjectionName::parse(name) else {
        let known: Vec<&str> = ProjectionName::ALL.iter().map(|p| p.as_str()).collect();
        bail!("unknown projection '{name}'; known: {}", known.join(", "));
    };
    let backends = Backends::open(config).await?;
    let bar = indicatif::ProgressBar::new(0);
    let metrics = gm_telemetry::Metrics::new();
    let applied = gm_projections::worker::rebuild(
        projection,
        backends.log.clone(),
        backends.read_models.clone(),
        Some(backends.privacy.clone()),
        metrics,
        |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )
    .await?;
    bar.finish();
    println!("rebuilt {projection} from {applied} processed events and swapped it in");
    backends.close().await;
    Ok(())
}

async fn dlq(config: &Config, command: DlqCommand) -> anyhow::Result<()> {
    use gamemetrics::dlq;
    let backends = Backends::open(config).await?;
    let result = match command {
        DlqCommand::List { limit } => dlq::list(backends.log.as_ref(), limit).await.map(|records| {
            for r in &records {
                println!("{}", dlq::describe(r));
            }
            println!("{} dead letter(s)", records.len());
        }),
        DlqCommand::Replay { offset, partition, all } => {
            let selection = match (all, offset) {
                (true, _) => dlq::Selection::All,
                (false, Some(offset)) => dlq::Selection::Offset { partition, offset },
                (false, None) => bail!("give --offset X or --all"),
            };
            dlq::replay(backends.log.as_ref(), selection).await.map(|replayed| {
                for r in &replayed {
                    println!("replayed {}", dlq::describe(r));
                }
                println!("{} dead letter(s) re-appended to {}", replayed.len(), gm_schemas::topics::RAW);
            })
        }
    };
    backends.close().await;
    result
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    if config.mode != gamemetrics::config::Mode::Production {
        println!("embedded mode: the SQLite stores create their tables themselves; nothing to migrate");
        return Ok(());
    }
    let store = gm_postgres::PgStore::connect(&config.postgres.url, 2).await.context("connecting to PostgreSQL")?;
    store.migrate().await.context("applying migrations")?;
    println!("PostgreSQL migrations applied");
    if !config.privacy.keys_url.is_empty() {
        let keys = gm_postgres::PgStore::connect(&config.privacy.keys_url, 2)
            .await
            .context("connecting to the keys database (privacy.keys_url)")?;
        keys.migrate_keys().await.context("creating the keys database's tables")?;
        println!("keys database tables created");
    }
    Ok(())
}
