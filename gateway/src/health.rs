//! Operations endpoints: liveness, readiness (open: probes carry no credentials), Prometheus
//! metrics and the OpenAPI document (authenticated, like every route but `/health/*`).

use crate::auth::{authorize, Action};
use crate::error::{ErrorBody, GatewayError};
use crate::{AppState, Readiness};
use actix_web::{web, HttpRequest, HttpResponse};
use gm_telemetry::Metrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LiveResponse {
    /// Always `alive`.
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReadyResponse {
    /// `ready`, `degraded` (ready, but an optional component such as the cache is down: correct,
    /// only slower) or `not_ready`.
    pub status: String,
    /// Components not ready yet, in name order.
    pub not_ready: Vec<String>,
    /// Optional components that are down, in name order.
    pub degraded: Vec<String>,
    /// Every registered component and whether it is ready.
    pub components: BTreeMap<String, bool>,
    /// Why each component of `not_ready` is not, when known (e.g. `kafka`: the metadata
    /// request of the producer timed out; `actors.consumer`: a partition behind and not moving).
    #[serde(default)]
    pub reasons: BTreeMap<String, String>,
}

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "The process is alive", body = LiveResponse)))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(LiveResponse { status: "alive".into() })
}

/// Readiness: 200 only when every component this process needs is ready.
///
/// In production: `kafka` (the brokers answer the producer), `postgres` (the pool answers
/// `SELECT 1`) and, in the actors and projections roles, `actors.consumer` /
/// `projections.consumer` (partitions assigned, polling, moving forward where there is work);
/// in the embedded default: `storage`. Checked in the background every few seconds, not per
/// request. The cache is optional: while Redis is down the answer is 200 `degraded`.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Every component is ready", body = ReadyResponse),
        (status = 503, description = "Some component is not ready; `not_ready` names them, `reasons` says why", body = ReadyResponse),
    ))]
pub async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    let components = readiness.snapshot();
    let not_ready: Vec<String> = components.iter().filter(|(_, r)| !**r).map(|(n, _)| n.clone()).collect();
    let degraded = readiness.degraded();
    let reasons = readiness.reasons();
    if not_ready.is_empty() {
        let status = if degraded.is_empty() { "ready" } else { "degraded" };
        HttpResponse::Ok().json(ReadyResponse { status: status.into(), not_ready, degraded, components, reasons })
    } else {
        HttpResponse::ServiceUnavailable().json(ReadyResponse {
            status: "not_ready".into(),
            not_ready,
            degraded,
            components,
            reasons,
        })
    }
}

/// Prometheus metrics, text exposition format 0.0.4. Needs the metrics token (Prometheus:
/// `authorization: {credentials_file: ...}` in the scrape config) or an admin token.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Every metric of this process", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Credentials other than the metrics token or an admin token", body = ErrorBody),
    ),
    security(("metrics_token" = []), ("jwt" = ["admin"])))]
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, GatewayError> {
    let principal = state.auth.authenticate(req.headers())?;
    authorize(&principal, Action::ReadMetrics)?;
    Ok(metrics_text(&state.metrics))
}

fn metrics_text(metrics: &Metrics) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(metrics.encode())
}

/// `/metrics` of the processes that serve no API (actors, projections): they hold no
/// credentials, so their operations port is open and must stay on the cluster network only.
async fn metrics_open(metrics: web::Data<Metrics>) -> HttpResponse {
    metrics_text(&metrics)
}

/// The operations routes alone (liveness, readiness, metrics), for roles that serve no API:
/// the actors and projections processes.
pub fn configure_ops(cfg: &mut web::ServiceConfig, readiness: Readiness, metrics: Metrics) {
    cfg.app_data(web::Data::new(readiness))
        .app_data(web::Data::new(metrics))
        .route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics_open));
}

/// This document (any valid credentials).
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", body = Object),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "The metrics token reads only /metrics", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []), ("jwt" = [])))]
pub async fn openapi_json(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, GatewayError> {
    let principal = state.auth.authenticate(req.headers())?;
    authorize(&principal, Action::ReadApiDocs)?;
    Ok(HttpResponse::Ok().content_type("application/json").body(crate::openapi::openapi_pretty()))
}
