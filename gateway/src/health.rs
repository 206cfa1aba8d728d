//! Operations endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document.

use crate::AppState;
use actix_web::{web, HttpResponse};
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
    /// `ready` or `not_ready`.
    pub status: String,
    /// Components not ready yet, in name order.
    pub not_ready: Vec<String>,
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
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let components = state.readiness.snapshot();
    let not_ready: Vec<String> = components.iter().filter(|(_, r)| !**r).map(|(n, _)| n.clone()).collect();
    if not_ready.is_empty() {
        HttpResponse::Ok().json(ReadyResponse { status: "ready".into(), not_ready, components })
    } else {
        HttpResponse::ServiceUnavailable().json(ReadyResponse { status: "not_ready".into(), not_ready, components })
    }
}

/// Prometheus metrics, text exposition format 0.0.4.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Every metric of this process", body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.encode())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(crate::openapi::openapi_pretty())
}
