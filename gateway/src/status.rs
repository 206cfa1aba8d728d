//! `GET /v1/status`: the operators' page in one answer, from what this gateway can see itself:
//! its process's readiness (with the roles it runs: all three on the embedded default), each
//! consumer's lag (the actors' committed group offsets, each projection's checkpoints, against
//! the log's end) and the dead letters on `system.dlq`. Every figure is read when asked; a
//! part that cannot be read says why instead of a number.
//!
//! Who may read it: every person's token (analyst, compliance, admin) and the metrics token,
//! no game key. It holds no game's data and nothing personal (component names, offsets,
//! counts, dead letters' reasons), the same kind of facts `/metrics` exposes; analysts need
//! it to know whether their numbers are fresh (a projection behind), compliance staff why an
//! erasure waits, operators all of it.

use crate::error::{ErrorBody, GatewayError};
use crate::{within, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gm_ports::{dlq, EventLog, LogError};
use gm_projections::{ProjectionName, ReadModelStore};
use gm_schemas::topics;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// Consumer groups' committed offsets, read without joining the group (joining would take
/// partitions from the live consumers).
#[async_trait]
pub trait ConsumerGroups: Send + Sync {
    /// The committed next offset of `group` on each partition of `topic` (`None`: none).
    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<Option<u64>>, LogError>;
}

/// What the status is read from.
pub struct StatusSources {
    /// `embedded` or `production`.
    pub mode: &'static str,
    /// The roles this process runs (`gateway`, `actors`, `projections`).
    pub roles: Vec<&'static str>,
    pub log: Arc<dyn EventLog>,
    /// Where the projections keep their checkpoints (with their rows).
    pub read_models: Arc<dyn ReadModelStore>,
    /// The actors' group offsets.
    pub groups: Arc<dyn ConsumerGroups>,
    /// What this deployment's status does not show, said on the page.
    pub not_shown: Vec<String>,
}

/// At most this many dead letters are read to count them (the count says when it stopped).
const DEAD_LETTERS_READ: usize = 10_000;
/// The latest dead letters shown.
const DEAD_LETTERS_SHOWN: usize = 5;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// `embedded` (one process runs every role) or `production` (this gateway only).
    pub mode: String,
    pub checked_at: DateTime<Utc>,
    pub process: ProcessStatus,
    /// The actors' consumer group on `player.events.raw`.
    pub actors: Lag,
    /// Each projection's checkpoints on `player.events.processed`.
    pub projections: Vec<ProjectionLag>,
    pub dead_letters: DeadLetters,
    /// What this page does not show in this deployment, and where to look instead.
    pub not_shown: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProcessStatus {
    /// The roles this process runs.
    pub roles: Vec<String>,
    /// What `/health/ready` answers now.
    pub ready: bool,
    pub components: Vec<Component>,
    /// Optional components that are down (queries slower, still ready).
    pub degraded: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Component {
    pub name: String,
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProjectionLag {
    pub projection: String,
    #[serde(flatten)]
    pub lag: Lag,
}

/// How far a consumer is behind the end of its topic.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Lag {
    pub topic: String,
    /// Records waiting, all partitions (absent when it could not be read: see `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    pub partitions: Vec<PartitionLag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PartitionLag {
    pub partition: u32,
    /// The next offset the consumer will read (`None`: it has consumed nothing yet).
    pub position: Option<u64>,
    /// The log's end offset (the next offset to be written).
    pub end: u64,
    /// Offsets between the position and the end; 0 when none of them holds a record (Kafka's
    /// transaction markers take offsets no consumer is given).
    pub lag: u64,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct DeadLetters {
    pub topic: String,
    /// Dead letters on the topic. Replaying one does not remove it (a log is append-only):
    /// a count that grows means new failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The count stopped at the reading limit: at least this many.
    pub at_least: bool,
    /// The latest few, newest first.
    pub latest: Vec<DeadLetter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A dead letter as its headers describe it (never its key or payload).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    pub partition: u32,
    pub offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The lag of a consumer at `positions` on `topic`. An offset range past a position that
/// holds no record (transaction markers only) counts 0.
async fn lag_of(log: &dyn EventLog, topic: &str, positions: &[Option<u64>]) -> Result<Lag, LogError> {
    let ends = log.end_offsets(topic).await?;
    let mut partitions = Vec::with_capacity(ends.len());
    for (partition, end) in ends.iter().enumerate() {
        let partition = partition as u32;
        let position = positions.get(partition as usize).copied().flatten();
        let from = position.unwrap_or(0);
        let mut lag = end.saturating_sub(from);
        if lag > 0 && log.read(topic, partition, from, 1).await?.is_empty() {
            lag = 0;
        }
        partitions.push(PartitionLag { partition, position, end: *end, lag });
    }
    Ok(Lag { topic: topic.to_string(), lag: Some(partitions.iter().map(|p| p.lag).sum()), partitions, error: None })
}

fn unreadable(topic: &str, e: impl std::fmt::Display) -> Lag {
    Lag { topic: topic.to_string(), error: Some(e.to_string()), ..Lag::default() }
}

async fn dead_letters(log: &dyn EventLog) -> DeadLetters {
    let topic = topics::DLQ.to_string();
    let ends = match log.end_offsets(topics::DLQ).await {
        Ok(ends) => ends,
        Err(e) => return DeadLetters { topic, error: Some(e.to_string()), ..DeadLetters::default() },
    };
    let (mut count, mut at_least, mut latest) = (0u64, false, Vec::new());
    for (partition, end) in ends.iter().enumerate() {
        let partition = partition as u32;
        let mut from = 0;
        while from < *end {
            if count as usize >= DEAD_LETTERS_READ {
                at_least = true;
                break;
            }
            let page = match log.read(topics::DLQ, partition, from, 500).await {
                Ok(page) => page,
                Err(e) => return DeadLetters { topic, error: Some(e.to_string()), ..DeadLetters::default() },
            };
            let Some(last) = page.last() else { break };
            from = last.offset + 1;
            count += page.len() as u64;
            latest.extend(page.iter().map(|r| DeadLetter {
                partition,
                offset: r.offset,
                failed_at: r.header(dlq::headers::FAILED_AT).map(str::to_string),
                source_topic: r.header(dlq::headers::SOURCE_TOPIC).map(str::to_string),
                error: r.header(dlq::headers::ERROR).map(|e| e.chars().take(300).collect()),
            }));
            // Only the newest few are kept.
            latest.sort_by(|a, b| b.failed_at.cmp(&a.failed_at).then(b.offset.cmp(&a.offset)));
            latest.truncate(DEAD_LETTERS_SHOWN);
        }
    }
    DeadLetters { topic, count: Some(count), at_least, latest, error: None }
}

impl StatusSources {
    /// Reads every part now.
    pub async fn status(&self, readiness: &crate::Readiness) -> Status {
        let reasons = readiness.reasons();
        let components = readiness
            .snapshot()
            .into_iter()
            .map(|(name, ready)| Component { reason: reasons.get(&name).cloned(), name, ready })
            .collect();
        let process = ProcessStatus {
            roles: self.roles.iter().map(|r| r.to_string()).collect(),
            ready: readiness.is_ready(),
            components,
            degraded: readiness.degraded(),
        };
        let log = self.log.as_ref();
        let actors = match self.groups.committed(ACTORS_GROUP, topics::RAW).await {
            Ok(positions) => lag_of(log, topics::RAW, &positions).await.unwrap_or_else(|e| unreadable(topics::RAW, e)),
            Err(e) => unreadable(topics::RAW, e),
        };
        let mut projections = Vec::new();
        let partitions = log.end_offsets(topics::PROCESSED).await.map(|e| e.len());
        for name in ProjectionName::ALL {
            let lag = match &partitions {
                Err(e) => unreadable(topics::PROCESSED, e),
                Ok(n) => match self.checkpoints(name, *n).await {
                    Ok(positions) => lag_of(log, topics::PROCESSED, &positions)
                        .await
                        .unwrap_or_else(|e| unreadable(topics::PROCESSED, e)),
                    Err(e) => unreadable(topics::PROCESSED, e),
                },
            };
            projections.push(ProjectionLag { projection: name.as_str().to_string(), lag });
        }
        Status {
            mode: self.mode.to_string(),
            checked_at: Utc::now(),
            process,
            actors,
            projections,
            dead_letters: dead_letters(log).await,
            not_shown: self.not_shown.clone(),
        }
    }

    async fn checkpoints(
        &self,
        name: ProjectionName,
        partitions: usize,
    ) -> Result<Vec<Option<u64>>, gm_ports::StoreError> {
        let mut out = Vec::with_capacity(partitions);
        for partition in 0..partitions as u32 {
            out.push(self.read_models.checkpoint(gm_projections::model::Target::Live, name, partition).await?);
        }
        Ok(out)
    }
}

/// The actors' consumer group on `player.events.raw` (`gm_actors::runtime::GROUP`, checked by
/// a test of the binary that links both).
pub const ACTORS_GROUP: &str = "actors";

/// The platform's state for operators: this process's readiness, each consumer's lag, the
/// dead letters waiting.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "operations",
    responses(
        (status = 200, description = "Read now; a part that could not be read carries `error` instead of figures", body = Status),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "A game API key (people's tokens and the metrics token may read it)", body = ErrorBody),
        (status = 503, description = "This gateway has no status sources", body = ErrorBody),
    ),
    security(("jwt" = []), ("bearer" = []))
)]
pub async fn get_status(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, GatewayError> {
    within(state.config.request_timeout, async {
        let principal = state.auth.authenticate(req.headers())?;
        crate::auth::authorize(&principal, crate::auth::Action::ReadStatus)?;
        let sources = state
            .status
            .as_ref()
            .ok_or_else(|| GatewayError::Unavailable("no status sources on this gateway".into()))?;
        Ok(HttpResponse::Ok().json(sources.status(&state.readiness).await))
    })
    .await
}
