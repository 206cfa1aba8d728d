//! Composition: which adapters (embedded or production) and which roles (gateway, actors,
//! projections) a process runs. The domain code is the same whichever is chosen.

use crate::config::{Config, Mode};
use anyhow::Context as _;
use gm_actors::ActorsRuntime;
use gm_gateway::{ApiKeyConfig, AppState, GatewayConfig, Readiness};
use gm_ports::{EventLog, SnapshotStore, TopicSpec};
use gm_projections::worker::ProjectionWorker;
use gm_projections::{AnalyticsQueries, ProjectionName, ReadModelStore};
use gm_schemas::topics;
use gm_telemetry::health::ConsumerHealth;
use gm_telemetry::Metrics;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The topics of docs/design.md#topics, with the partition counts of this deployment.
pub fn topic_specs(config: &Config) -> Vec<TopicSpec> {
    vec![
        TopicSpec { name: topics::RAW.into(), partitions: config.log.raw_partitions, compacted: false },
        TopicSpec { name: topics::PROCESSED.into(), partitions: config.log.processed_partitions, compacted: false },
        TopicSpec {
            name: topics::RECOMMENDATIONS.into(),
            partitions: config.log.processed_partitions,
            compacted: true,
        },
        TopicSpec { name: topics::DLQ.into(), partitions: 1, compacted: false },
    ]
}

/// The adapters behind every trait the roles use.
#[derive(Clone)]
pub struct Backends {
    pub log: Arc<dyn EventLog>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub read_models: Arc<dyn ReadModelStore>,
    pub queries: Arc<dyn AnalyticsQueries>,
    /// Leaderboards, retention and monetisation (Redis sorted sets in front when configured).
    pub games: Arc<dyn gm_projections::GameQueries>,
    /// Players' recommendations (from Redis when warm and configured).
    pub recommendations: Arc<dyn gm_projections::RecommendationQueries>,
    /// The recommendations projection's outbox, published by its worker.
    pub recommendation_outbox: Arc<dyn gm_projections::recommend::RecommendationStore>,
    /// Data keys, pseudonyms, erasures and the privacy audit trail.
    pub privacy: Arc<dyn gm_privacy::PrivacyStore>,
    /// Production: Kafka and PostgreSQL as `/health/ready` probes them (crate::readiness).
    pub probes: Option<crate::readiness::Probes>,
    /// The query cache's erasure purge (production with Redis).
    pub player_cache: Option<Arc<dyn gm_privacy::PlayerCache>>,
    /// Present in production when Redis is configured: polled for `/health/ready`.
    pub cache: Option<gm_redis::RedisCache>,
    /// Production with `privacy.keys_url`: the keys database's erasure ledger and the data
    /// database's side of it, compared when the erasure coordinator starts.
    pub keys_apart: Option<(Arc<dyn gm_privacy::ErasureLedger>, Arc<dyn gm_privacy::ErasureRecords>)>,
    embedded: Option<(Arc<gm_embedded::SqliteLog>, Arc<gm_embedded::SqliteStore>)>,
}

impl Backends {
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        Self::open_instrumented(config, None).await
    }

    /// Like [`open`](Self::open), with the Kafka clients and the query cache reporting into
    /// `metrics` (the roles' registry).
    pub async fn open_instrumented(config: &Config, metrics: Option<&Metrics>) -> anyhow::Result<Self> {
        match config.mode {
            Mode::Embedded => {
                let (log, store) = gm_embedded::open_data_dir(&config.data_dir, &topic_specs(config))
                    .await
                    .with_context(|| format!("opening the data directory {}", config.data_dir.display()))?;
                // Queries answered from memory until the store's next write (no Redis here).
                let memoised = Arc::new(gm_embedded::Memoised::new(store.clone()));
                let (log, store) = (Arc::new(log), Arc::new(store));
                Ok(Self {
                    log: log.clone(),
                    snapshots: store.clone(),
                    read_models: store.clone(),
                    queries: memoised.clone(),
                    games: memoised.clone(),
                    recommendations: memoised,
                    recommendation_outbox: store.clone(),
                    privacy: store.clone(),
                    probes: None,
                    player_cache: None,
                    cache: None,
                    keys_apart: None,
                    embedded: Some((log, store)),
                })
            }
            Mode::Production => {
                let store = gm_postgres::PgStore::connect(&config.postgres.url, config.postgres.max_connections)
                    .await
                    .context("connecting to PostgreSQL (postgres.url)")?;
                let kafka = gm_kafka::KafkaLog::connect(config.kafka.clone()).await.context("connecting to Kafka")?;
                if let Some(metrics) = metrics {
                    kafka.instrument(metrics.clone());
                }
                let probes = Some(crate::readiness::Probes {
                    kafka: kafka.clone(),
                    kafka_topic: gm_ports::namespaced::physical_name(&config.log.namespace, topics::RAW),
                    postgres: store.clone(),
                });
                let log: Arc<dyn EventLog> = if config.log.namespace.is_empty() {
                    Arc::new(kafka)
                } else {
                    Arc::new(gm_ports::namespaced::Namespaced::new(Arc::new(kafka), &config.log.namespace))
                };
                // Partition counts and configs of production topics come from the Kafka settings.
                log.ensure_topics(&config.kafka.topics.specs()).await.context("creating the Kafka topics")?;
                let mut player_cache: Option<Arc<dyn gm_privacy::PlayerCache>> = None;
                let mut redis_queries = None;
                let (queries, cache): (Arc<dyn AnalyticsQueries>, _) = match config.cache() {
                    Some(redis) => {
                        let cache = gm_redis::RedisCache::connect(redis.clone()).await.context("redis.url")?;
                        let mut queries = gm_redis::CachedQueries::new(store.clone(), cache.clone());
                        if let Some(metrics) = metrics {
                            queries = queries.with_metrics(metrics.cache.clone());
                        }
                        let queries = Arc::new(queries);
                        redis_queries = Some(queries.clone());
                        (queries, Some(cache))
                    }
                    None => (Arc::new(store.clone()), None),
                };
                // Leaderboards read from Redis sorted sets, recommendations from Redis when warm.
                type Games = Arc<dyn gm_projections::GameQueries>;
                type Recommendations = Arc<dyn gm_projections::RecommendationQueries>;
                let (games, recommendations): (Games, Recommendations) = match (&cache, redis_queries) {
                    (Some(cache), Some(queries)) => {
                        let games = Arc::new(gm_redis::CachedGameQueries::new(store.clone(), cache.clone()));
                        let recommendations =
                            Arc::new(gm_redis::CachedRecommendations::new(store.clone(), cache.clone()));
                        player_cache = Some(Arc::new(RedisPlayerCache {
                            queries,
                            games: games.clone(),
                            recommendations: recommendations.clone(),
                        }));
                        (games, recommendations)
                    }
                    _ => (Arc::new(store.clone()), Arc::new(store.clone())),
                };
                let recommendation_outbox: Arc<dyn gm_projections::recommend::RecommendationStore> =
                    Arc::new(store.clone());
                let store = Arc::new(store);
                let (privacy, keys_apart) = keys_database(config, &store).await?;
                Ok(Self {
                    log,
                    probes,
                    snapshots: store.clone(),
                    read_models: store.clone(),
                    privacy,
                    player_cache,
                    queries,
                    games,
                    recommendations,
                    recommendation_outbox,
                    cache,
                    keys_apart,
                    embedded: None,
                })
            }
        }
    }

    /// The privacy service on these stores, its erasure coordinator not started (the gateway
    /// runs it, the CLI drives it): one construction for both, so they erase alike.
    pub fn privacy_service(&self, config: &Config, metrics: Metrics) -> anyhow::Result<gm_privacy::PrivacyService> {
        let mut service = gm_privacy::PrivacyService::new(
            self.privacy.clone(),
            self.log.producer(),
            config.privacy_settings()?,
            &ProjectionName::ALL.map(|p| p.as_str()),
            metrics,
        )
        .with_snapshots(self.snapshots.clone());
        if let Some(cache) = &self.player_cache {
            service = service.with_cache(cache.clone());
        }
        if let Some((ledger, records)) = &self.keys_apart {
            service = service.with_keys_apart(ledger.clone(), records.clone());
        }
        Ok(service)
    }

    /// The embedded log (the embedded default only).
    pub fn embedded_log(&self) -> Option<Arc<gm_embedded::SqliteLog>> {
        self.embedded.as_ref().map(|(log, _)| log.clone())
    }

    /// Lets pending writes of the embedded log finish (no-op in production).
    pub async fn close(&self) {
        if let Some((log, store)) = &self.embedded {
            log.close().await;
            store.close().await;
        }
    }
}

/// Which roles this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub gateway: bool,
    pub actors: bool,
    pub projections: bool,
}

impl Roles {
    pub const ALL: Roles = Roles { gateway: true, actors: true, projections: true };
    pub const GATEWAY: Roles = Roles { gateway: true, actors: false, projections: false };
    pub const ACTORS: Roles = Roles { gateway: false, actors: true, projections: false };
    pub const PROJECTIONS: Roles = Roles { gateway: false, actors: false, projections: true };
}

/// A running process: its roles, and the HTTP server (API, or operations routes only).
pub struct Platform {
    pub addr: SocketAddr,
    pub metrics: Metrics,
    pub readiness: Readiness,
    pub backends: Backends,
    shutdown: watch::Sender<bool>,
    server: actix_web::dev::ServerHandle,
    tasks: Vec<actix_rt::task::JoinHandle<()>>,
    /// The thread the projections worker runs on (stopped after the tasks ended).
    arbiters: Vec<actix_rt::Arbiter>,
}

impl Platform {
    /// All roles on the configured adapters (`gamemetrics serve`).
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind(config.bind_addr()?).with_context(|| format!("binding {}", config.http.bind))?;
        Self::start_roles(config, listener, Roles::ALL).await
    }

    pub async fn start_on(config: &Config, listener: TcpListener) -> anyhow::Result<Self> {
        Self::start_roles(config, listener, Roles::ALL).await
    }

    /// Starts `roles` with the configured adapters. Must run inside an actix system.
    pub async fn start_roles(config: &Config, listener: TcpListener, roles: Roles) -> anyhow::Result<Self> {
        if roles.gateway {
            // Before anything is opened: a production gateway never accepts development keys.
            config.refuse_development_credentials()?;
        }
        let metrics = Metrics::new();
        let readiness = Readiness::new().with_gauge(metrics.ready.clone());
        let backends = Backends::open_instrumented(config, Some(&metrics)).await?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // Production: what each role needs, probed in the background (crate::readiness). The
        // embedded default: its log and store are in this process, ready once opened.
        let health = config.health();
        let watched = backends.probes.is_some();
        // The readiness watchers judge on a thread of their own: on the System thread beside the
        // actors' consume loop they could wait a minute for a turn under load, and /health/ready
        // would answer a stale judgement all that time.
        let probes_thread = actix_rt::Arbiter::new();
        match backends.probes.clone() {
            Some(probes) => tasks.push(spawn_on(
                &probes_thread,
                crate::readiness::watch_dependencies(probes, readiness.clone(), health, shutdown_rx.clone()),
            )),
            None => readiness.set_ready("storage", true),
        }

        if roles.actors {
            let consumer = ConsumerHealth::new();
            let actors =
                ActorsRuntime::new(backends.log.clone(), backends.snapshots.clone(), config.actors(), metrics.clone())
                    .with_health(consumer.clone());
            if watched {
                tasks.push(spawn_on(
                    &probes_thread,
                    crate::readiness::watch_consumer(
                        crate::readiness::ACTORS_CONSUMER,
                        consumer,
                        backends.log.clone(),
                        topics::RAW,
                        readiness.clone(),
                        health,
                        shutdown_rx.clone(),
                    ),
                ));
            }
            let rx = shutdown_rx.clone();
            tasks.push(actix_rt::spawn(async move {
                if let Err(e) = actors.run(rx).await {
                    tracing::error!(error = %e, "actors stopped");
                }
            }));
        }
        // The projections run as one worker (one consumer-group member, `projections`) on a
        // thread of its own: each processed record is decoded once for every projection and
        // a batch of all of them is one transaction (docs/adr/0006).
        let mut arbiters = Vec::new();
        if roles.projections {
            let arbiter = actix_rt::Arbiter::new();
            let consumer = ConsumerHealth::new();
            if watched {
                tasks.push(spawn_on(
                    &probes_thread,
                    crate::readiness::watch_consumer(
                        crate::readiness::PROJECTIONS_CONSUMER,
                        consumer.clone(),
                        backends.log.clone(),
                        topics::PROCESSED,
                        readiness.clone(),
                        health,
                        shutdown_rx.clone(),
                    ),
                ));
            }
            let (backends, metrics, mut rx) = (backends.clone(), metrics.clone(), shutdown_rx.clone());
            // A worker that stops on an error (e.g. its consumer could not be created while
            // Kafka restarts) starts again after a pause: the projections must not stay down
            // while the process reports ready.
            let worker_loop = async move {
                while !*rx.borrow() {
                    let worker = ProjectionWorker::combined(
                        &ProjectionName::ALL,
                        backends.log.clone(),
                        backends.read_models.clone(),
                        metrics.clone(),
                    )
                    .with_pseudonyms(backends.privacy.clone())
                    .with_recommendations(backends.recommendation_outbox.clone())
                    .with_health(consumer.clone());
                    match worker.run(rx.clone()).await {
                        Ok(()) => break,
                        Err(e) => tracing::error!(error = %e, "projections stopped; restarting in 2 s"),
                    }
                    tokio::select! {
                        _ = rx.changed() => {}
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
            };
            tasks.push(spawn_on(&arbiter, worker_loop));
            arbiters.push(arbiter);
        }
        if let Some(cache) = backends.cache.clone() {
            tasks.push(spawn_on(
                &probes_thread,
                watch_cache(cache, readiness.clone(), metrics.clone(), shutdown_rx.clone()),
            ));
        }
        arbiters.push(probes_thread);

        let addr = listener.local_addr()?;
        let server = if roles.gateway {
            let gateway = gateway_config(config).await?;
            let jwks = gateway.jwt.as_ref().map(|(_, jwks)| jwks.clone());
            let state = AppState::new(
                gateway,
                backends.log.producer(),
                backends.queries.clone(),
                metrics.clone(),
                readiness.clone(),
            )
            .with_game_queries(backends.games.clone())
            .with_recommendations(backends.recommendations.clone())
            .with_funnel_orders(config.funnel_orders()?)
            .with_privacy(privacy_service(config, &backends, &metrics, &shutdown_rx, &mut tasks).await?)
            .with_keyless_legacy(config.keyless_legacy()?)
            .map_err(|e| anyhow::anyhow!("compat: {e}"))?;
            // Used request signatures and rate-limit counts are shared by every gateway through Redis.
            let state = match backends.cache.clone() {
                Some(cache) => {
                    state.with_shared_claims(Arc::new(cache.clone())).with_shared_rate_limits(Arc::new(cache))
                }
                None => state,
            };
            // `/v1/status`: this process's readiness, the consumers' lag, the dead letters.
            let state = match crate::status::sources(config, &backends, roles) {
                Some(sources) => state.with_status(sources),
                None => state,
            };
            tasks.push(actix_rt::spawn(watch_credential_files(
                config.clone(),
                state.rotation(),
                jwks,
                shutdown_rx.clone(),
            )));
            gm_gateway::serve(listener, state).await?
        } else {
            let (readiness, metrics) = (readiness.clone(), metrics.clone());
            actix_web::HttpServer::new(move || {
                actix_web::App::new()
                    .configure(|cfg| gm_gateway::health::configure_ops(cfg, readiness.clone(), metrics.clone()))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)?
            .run()
        };
        let handle = server.handle();
        tasks.push(actix_rt::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }));
        tracing::info!(%addr, ?roles, mode = ?config.mode, "GameMetrics started");
        Ok(Self { addr, metrics, readiness, backends, shutdown, server: handle, tasks, arbiters })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests, lets actors snapshot and workers finish their batch.
    pub async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        for arbiter in self.arbiters {
            arbiter.stop();
        }
        self.backends.close().await;
    }
}

/// The gateway's settings: keys, revocations, signing secrets, people's tokens (the JWKS is
/// read or fetched here, and refreshed in the background when it comes from a URL), limits.
pub async fn gateway_config(config: &Config) -> anyhow::Result<GatewayConfig> {
    let api_keys = config.api_key_pairs()?.into_iter().map(|(game_id, key)| ApiKeyConfig { game_id, key }).collect();
    let signing_secrets = config
        .signing_secret_pairs()?
        .into_iter()
        .map(|(game_id, secret)| gm_gateway::SigningSecret { game_id, secret: gm_gateway::Secret(secret) })
        .collect();
    let auth = &config.auth;
    let jwks = match (&auth.jwks_file, &auth.jwks_url) {
        (Some(file), _) => Some(gm_gateway::Jwks::load_file(file).context("auth.jwks_file")?),
        (None, Some(url)) => {
            let jwks = gm_gateway::Jwks::fetch(url).await.context("auth.jwks_url")?;
            jwks.spawn_refresh(url.clone(), Duration::from_secs(auth.jwks_refresh_secs));
            Some(jwks)
        }
        (None, None) => None,
    };
    let jwt = jwks.map(|jwks| {
        let settings = gm_gateway::JwtConfig {
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            roles_claim: auth.roles_claim.clone(),
            games_claim: auth.games_claim.clone(),
            leeway: Duration::from_secs(auth.jwt_leeway_secs),
        };
        (settings, jwks)
    });
    Ok(GatewayConfig {
        api_keys,
        revoked_keys: config.revoked_keys(),
        signing_secrets,
        jwt,
        metrics_token: config.metrics_token()?.map(gm_gateway::Secret),
        dev_analyst_token: config.dev_analyst_token()?.map(gm_gateway::Secret),
        dev_compliance_token: config.dev_compliance_token()?.map(gm_gateway::Secret),
        // The console's one-click sign-in: config/default.toml's development token only, never
        // a token the deployment chose (a secret) and never in production mode (no dev token).
        dev_sign_ins: dev_sign_ins(config)?,
        rate_limits: config.rate_limits(),
        limits: config.limits(),
        request_timeout: config.request_timeout(),
        cors_allowed_origins: config.cors_allowed_origins(),
        gameanalytics_keys: gameanalytics_keys(config)?,
    })
}

/// The console's one-click sign-in: config/default.toml's development tokens only, never a
/// token the deployment chose (a secret) and never in production mode (no dev token there).
fn dev_sign_ins(config: &Config) -> anyhow::Result<Vec<gm_gateway::me::DevSignIn>> {
    let mut sign_ins = Vec::new();
    if let Some(token) = config.dev_analyst_token()?.filter(|_| config.uses_development_analyst_token()) {
        sign_ins.push(gm_gateway::me::DevSignIn { role: gm_gateway::Role::Analyst, token: gm_gateway::Secret(token) });
    }
    if let Some(token) = config.dev_compliance_token()?.filter(|_| config.uses_development_compliance_token()) {
        sign_ins
            .push(gm_gateway::me::DevSignIn { role: gm_gateway::Role::Compliance, token: gm_gateway::Secret(token) });
    }
    Ok(sign_ins)
}

/// The GameAnalytics game keys and secret keys (`gameanalytics.keys` or `keys_file`).
fn gameanalytics_keys(config: &Config) -> anyhow::Result<Vec<gm_gateway::gameanalytics::GameAnalyticsKey>> {
    Ok(config
        .gameanalytics_keys()?
        .into_iter()
        .map(|(game_id, game_key, secret)| gm_gateway::gameanalytics::GameAnalyticsKey {
            game_id,
            game_key,
            secret: gm_gateway::Secret(secret),
        })
        .collect())
}

/// How often the credential files are read for changes.
const CREDENTIAL_POLL: Duration = Duration::from_secs(2);

/// Rotation without a restart: reads the credential files (`api_keys_file`,
/// `auth.signing_secrets_file`, `auth.metrics_token_file`, `auth.jwks_file`,
/// `gameanalytics.keys_file`; mounted
/// Kubernetes Secrets, which the kubelet swaps in place) every [`CREDENTIAL_POLL`] and, when
/// one changed, loads them all again. Files that no longer parse keep the credentials in
/// force (an ERROR names the setting): a half-written Secret never locks clients out.
async fn watch_credential_files(
    config: Config,
    rotation: gm_gateway::Rotation,
    jwks: Option<gm_gateway::Jwks>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let files: Vec<std::path::PathBuf> = [
        config.api_keys_file.clone(),
        config.auth.signing_secrets_file.clone(),
        config.auth.metrics_token_file.clone(),
        config.auth.jwks_file.clone(),
        config.gameanalytics.keys_file.clone(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if files.is_empty() {
        return;
    }
    let read_all = || files.iter().map(|f| std::fs::read(f).ok()).collect::<Vec<_>>();
    let mut seen = read_all();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(CREDENTIAL_POLL) => {}
        }
        let now = read_all();
        if now == seen {
            continue;
        }
        seen = now;
        match reload_credentials(&config, &rotation, jwks.as_ref()) {
            Ok(keys) => tracing::info!(api_keys = keys, "credential files changed: credentials reloaded"),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "credential files changed but cannot be loaded; the previous credentials stay in force")
            }
        }
    }
}

/// Loads every credential setting again (from its file where it has one) and swaps them in,
/// all or nothing. Returns how many API keys are configured now.
fn reload_credentials(
    config: &Config,
    rotation: &gm_gateway::Rotation,
    jwks: Option<&gm_gateway::Jwks>,
) -> anyhow::Result<usize> {
    let api_keys: Vec<ApiKeyConfig> =
        config.api_key_pairs()?.into_iter().map(|(game_id, key)| ApiKeyConfig { game_id, key }).collect();
    let signing: Vec<gm_gateway::SigningSecret> = config
        .signing_secret_pairs()?
        .into_iter()
        .map(|(game_id, secret)| gm_gateway::SigningSecret { game_id, secret: gm_gateway::Secret(secret) })
        .collect();
    let metrics_token = config.metrics_token()?.map(gm_gateway::Secret);
    let jwk_set = match (&config.auth.jwks_file, jwks) {
        (Some(file), Some(_)) => Some(gm_gateway::Jwks::read_set(file).context("auth.jwks_file")?),
        _ => None,
    };
    if let (Some(set), Some(jwks)) = (jwk_set, jwks) {
        jwks.replace(set);
    }
    let gameanalytics = gameanalytics_keys(config)?;
    rotation.rotate(&api_keys, &config.revoked_keys(), metrics_token.as_ref(), &signing);
    rotation.rotate_gameanalytics(&gameanalytics);
    Ok(api_keys.len())
}

/// Runs `task` on `thread` and returns a handle on this one that completes with it, so that
/// the platform's shutdown waits for it like for its other tasks.
fn spawn_on(
    thread: &actix_rt::Arbiter,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> actix_rt::task::JoinHandle<()> {
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    thread.spawn(async move {
        task.await;
        let _ = done.send(());
    });
    actix_rt::spawn(async move {
        let _ = finished.await;
    })
}

/// Reports the cache as degraded in `/health/ready` while Redis does not answer.
async fn watch_cache(
    cache: gm_redis::RedisCache,
    readiness: Readiness,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let healthy = cache.health().await;
        metrics.cache.connected.set(i64::from(healthy));
        readiness.set_optional("cache", healthy);
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

type KeysApart = Option<(Arc<dyn gm_privacy::ErasureLedger>, Arc<dyn gm_privacy::ErasureRecords>)>;

/// The privacy store: in the keys database (`privacy.keys_url`) when one is configured,
/// else in the data database, with a warning (a restore of it from before an erasure
/// brings the erased player's key back).
async fn keys_database(
    config: &Config,
    data: &Arc<gm_postgres::PgStore>,
) -> anyhow::Result<(Arc<dyn gm_privacy::PrivacyStore>, KeysApart)> {
    if config.privacy.keys_url.is_empty() {
        tracing::warn!(
            "privacy.keys_url is not set: data keys and erasure records share the data database (postgres.url), so \
             restoring it from a backup taken before an erasure brings the erased player's key back; set \
             privacy.keys_url (GM_PRIVACY__KEYS_URL) to a database of its own (docs/runbooks/disaster-recovery.md)"
        );
        return Ok((data.clone(), None));
    }
    let keys = gm_postgres::PgStore::connect(&config.privacy.keys_url, config.postgres.max_connections)
        .await
        .context("connecting to the keys database (privacy.keys_url)")?;
    let keys = Arc::new(keys);
    let privacy = Arc::new(gm_privacy::KeysApart::new(keys.clone(), data.clone()));
    Ok((privacy, Some((keys, data.clone()))))
}

/// How long a starting gateway waits for the erasures it re-applied after a restore of the
/// data database (the consumers catch up from Kafka meanwhile) before it gives up starting.
const REAPPLY_WAIT: Duration = Duration::from_secs(600);

/// The gateway's privacy service, and its erasure coordinator as a background task. With a
/// keys database apart, the erasures the data database lacks (restored to a point before
/// them) are applied again and completed before the gateway serves.
async fn privacy_service(
    config: &Config,
    backends: &Backends,
    metrics: &Metrics,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Vec<actix_rt::task::JoinHandle<()>>,
) -> anyhow::Result<Arc<gm_privacy::PrivacyService>> {
    let service = Arc::new(backends.privacy_service(config, metrics.clone())?);
    tasks.push(actix_rt::spawn(service.clone().run(shutdown.clone())));
    let reapplied =
        service.reapply_after_restore().await.context("comparing the erasure ledger with the data database")?;
    if !reapplied.is_empty() {
        tracing::warn!(
            erasures = reapplied.len(),
            "waiting for the erasures re-applied after a restore before serving"
        );
        service.await_completed(&reapplied, REAPPLY_WAIT).await?;
        tracing::info!(erasures = reapplied.len(), "erasures re-applied after a restore completed");
    }
    Ok(service)
}

/// Erasure's cache purge on the Redis query cache.
/// Erasure's purge of everything Redis holds about a player: the profile (and the marker
/// that keeps read-through writes out), their recommendation lists, and the game's
/// leaderboard sets (rebuilt from PostgreSQL on the next read).
struct RedisPlayerCache {
    queries: Arc<gm_redis::CachedQueries<gm_postgres::PgStore>>,
    games: Arc<gm_redis::CachedGameQueries<gm_postgres::PgStore>>,
    recommendations: Arc<gm_redis::CachedRecommendations<gm_postgres::PgStore>>,
}

#[async_trait::async_trait]
impl gm_privacy::PlayerCache for RedisPlayerCache {
    async fn forget_player(
        &self,
        game: &gm_schemas::GameId,
        player: &gm_schemas::PlayerId,
    ) -> Result<u64, gm_ports::StoreError> {
        use gm_ports::StoreError;
        let profile = self.queries.invalidate_player(game, player).await.map_err(StoreError::unavailable)?;
        let lists = self.recommendations.invalidate_player(game, player).await.map_err(StoreError::unavailable)?;
        let boards = self.games.invalidate_player(game, player).await.map_err(StoreError::unavailable)?;
        Ok(profile + lists + boards)
    }
}
