//! Operations endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document.

use crate::Readiness;
use actix_web::{web, HttpResponse};
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
}

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "The process is alive", body = LiveResponse)))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(LiveResponse { status: "alive".into() })
}

/// Readiness: 200 only when every registered component (log, stores, ...) is ready.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Every component is ready", body = ReadyResponse),
        (status = 503, description = "Some component is not ready; `not_ready` names them", body = ReadyResponse),
    ))]
pub async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    let components = readiness.snapshot();
    let not_ready: Vec<String> = components.iter().filter(|(_, r)| !**r).map(|(n, _)| n.clone()).collect();
    let degraded = readiness.degraded();
    if not_ready.is_empty() {
        let status = if degraded.is_empty() { "ready" } else { "degraded" };
        HttpResponse::Ok().json(ReadyResponse { status: status.into(), not_ready, degraded, components })
    } else {
        HttpResponse::ServiceUnavailable().json(ReadyResponse {
            status: "not_ready".into(),
            not_ready,
            degraded,
            components,
        })
    }
}

/// Prometheus metrics, text exposition format 0.0.4.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Every metric of this process", body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(metrics.encode())
}

/// The operations routes alone (liveness, readiness, metrics), for roles that serve no API:
/// the actors and projections processes.
pub fn configure_ops(cfg: &mut web::ServiceConfig, readiness: Readiness, metrics: Metrics) {
    cfg.app_data(web::Data::new(readiness))
        .app_data(web::Data::new(metrics))
        .route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/metrics", web::get().to(self::metrics));
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(crate::openapi::openapi_pretty())
}
