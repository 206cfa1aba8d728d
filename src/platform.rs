//! The all-in-one embedded platform: gateway, actors and projections in one process, on the
//! embedded log and stores under the data directory. The same code path as production,
//! with other adapters behind the same traits.

use crate::config::Config;
use anyhow::Context as _;
use gm_actors::ActorsRuntime;
use gm_embedded::{SqliteLog, SqliteStore};
use gm_gateway::{ApiKeyConfig, AppState, GatewayConfig, Readiness};
use gm_ports::{EventLog, TopicSpec};
use gm_projections::worker::ProjectionWorker;
use gm_projections::ProjectionName;
use gm_schemas::topics;
use gm_telemetry::Metrics;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use tokio::sync::watch;

/// The topics of DESIGN.md, with the partition counts of this deployment.
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

pub async fn open_storage(config: &Config) -> anyhow::Result<(Arc<SqliteLog>, Arc<SqliteStore>)> {
    let (log, store) = gm_embedded::open_data_dir(&config.data_dir, &topic_specs(config))
        .await
        .with_context(|| format!("opening the data directory {}", config.data_dir.display()))?;
    Ok((Arc::new(log), Arc::new(store)))
}

/// A running embedded platform.
pub struct Platform {
    pub addr: SocketAddr,
    pub metrics: Metrics,
    pub readiness: Readiness,
    pub log: Arc<SqliteLog>,
    pub store: Arc<SqliteStore>,
    shutdown: watch::Sender<bool>,
    server: actix_web::dev::ServerHandle,
    tasks: Vec<actix_rt::task::JoinHandle<()>>,
}

impl Platform {
    /// Opens storage, starts the actors, the projection workers and the gateway. Must run
    /// inside an actix system (`#[actix_web::main]`, `#[actix_rt::test]`).
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind(config.bind_addr()?).with_context(|| format!("binding {}", config.http.bind))?;
        Self::start_on(config, listener).await
    }

    pub async fn start_on(config: &Config, listener: TcpListener) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let readiness = Readiness::new();
        readiness.register("storage");
        readiness.register("actors");
        readiness.register("projections");
        let (log, store) = open_storage(config).await?;
        readiness.set_ready("storage", true);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let dyn_log: Arc<dyn EventLog> = log.clone();
        let actors = ActorsRuntime::new(dyn_log.clone(), store.clone(), config.actors(), metrics.clone());
        let rx = shutdown_rx.clone();
        tasks.push(actix_rt::spawn(async move {
            if let Err(e) = actors.run(rx).await {
                tracing::error!(error = %e, "actors stopped");
            }
        }));
        readiness.set_ready("actors", true);
        for name in ProjectionName::ALL {
            let worker = ProjectionWorker::new(name, dyn_log.clone(), store.clone(), metrics.clone());
            let rx = shutdown_rx.clone();
            tasks.push(actix_rt::spawn(async move {
                if let Err(e) = worker.run(rx).await {
                    tracing::error!(projection = %name, error = %e, "projection stopped");
                }
            }));
        }
        readiness.set_ready("projections", true);

        let api_keys =
            config.api_key_pairs()?.into_iter().map(|(game_id, key)| ApiKeyConfig { game_id, key }).collect();
        let gateway = GatewayConfig { api_keys, limits: config.limits(), request_timeout: config.request_timeout() };
        let state = AppState::new(gateway, log.producer(), store.clone(), metrics.clone(), readiness.clone());
        let addr = listener.local_addr()?;
        let server = gm_gateway::serve(listener, state).await?;
        let handle = server.handle();
        tasks.push(actix_rt::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }));
        tracing::info!(%addr, data_dir = %config.data_dir.display(), "GameMetrics (embedded) listening");
        Ok(Self { addr, metrics, readiness, log, store, shutdown, server: handle, tasks })
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
        self.log.close().await;
    }
}
