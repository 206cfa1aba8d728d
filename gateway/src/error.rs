//! The gateway's one error type and its one mapping to HTTP statuses.
//!
//! Every handler returns `Result<_, GatewayError>`; the status, the `Retry-After` header and
//! the JSON body `{"error": code, "reason": text}` are decided here and nowhere else.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use gm_ports::{LogError, StoreError};
use gm_schemas::validate::BatchError;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{AnyOfBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, low-cardinality code: `invalid_input`, `malformed`, `too_many_events`,
    /// `empty`, `bad_sent_at`, `too_large`, `unauthenticated`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `unsupported_encoding`, `rate_limited`, `unavailable`, `timeout`, `internal`.
    pub error: String,
    /// What was wrong, for a human.
    pub reason: String,
}

/// The schema of a response body that is either the component `name` or an [`ErrorBody`]
/// (OpenAPI `anyOf`), for statuses that both a handler's own answer and [`GatewayError`]
/// produce, e.g. 400 on ingest: "no event was valid" or "not a batch". anyOf, not oneOf: a
/// refused legacy answer carries `error` and `reason` too.
pub(crate) fn or_error_schema(name: &str) -> RefOr<Schema> {
    AnyOfBuilder::new().item(Ref::from_schema_name(name)).item(Ref::from_schema_name(ErrorBody::name())).into()
}

/// Adds `T` and [`ErrorBody`] to the document's components (for an [`or_error_schema`] type).
pub(crate) fn or_error_components<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
    schemas.push((ErrorBody::name().into_owned(), ErrorBody::schema()));
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A parameter, id or date was not acceptable (400).
    #[error("{0}")]
    InvalidInput(String),
    /// The whole batch was refused (400, or 413 when too large).
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The body (after decompression) is larger than allowed (413).
    #[error("{0}")]
    TooLarge(String),
    /// `Content-Encoding` other than `gzip` or `identity` (415).
    #[error("{0}")]
    UnsupportedEncoding(String),
    /// A body declared (`Content-Type`) as something the route does not take (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// No credentials, or unknown ones (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials that do not allow this request (403).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The path exists, not with this method (405 with `Allow`: the methods it has).
    #[error("method not allowed; allowed: {allow}")]
    MethodNotAllowed { allow: String },
    /// Over a rate limit (429 with `Retry-After`).
    #[error("{reason}")]
    RateLimited { retry_after_secs: u64, reason: String },
    /// A dependency (log, store) cannot serve now; the client should retry (503).
    #[error("{0}")]
    Unavailable(String),
    /// The request took longer than the configured timeout (503).
    #[error("request timed out")]
    Timeout,
    /// A bug or an unexpected failure (500). The detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "invalid_input",
            Self::Batch(BatchError::TooLarge { .. }) => "too_large",
            Self::Batch(BatchError::Malformed(_)) => "malformed",
            Self::Batch(BatchError::TooManyEvents { .. }) => "too_many_events",
            Self::Batch(BatchError::Empty) => "empty",
            Self::Batch(BatchError::BadSentAt(_)) => "bad_sent_at",
            Self::TooLarge(_) => "too_large",
            Self::UnsupportedEncoding(_) => "unsupported_encoding",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Timeout => "timeout",
            Self::Internal(_) => "internal",
        }
    }

    fn reason(&self) -> String {
        match self {
            Self::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        }
    }
}

impl From<LogError> for GatewayError {
    fn from(e: LogError) -> Self {
        // Every log failure is worth a retry from the client's point of view: nothing was
        // acknowledged, and the producer is idempotent.
        Self::Unavailable(format!("event log: {e}"))
    }
}

impl From<StoreError> for GatewayError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Self::Unavailable(format!("read model store: {m}")),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidInput(_) => StatusCode::BAD_REQUEST,
            Self::Batch(BatchError::TooLarge { .. }) | Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Batch(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedEncoding(_) | Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::warn!(error = %self, code = self.code(), "request failed");
        }
        let mut res = HttpResponse::build(status);
        match self {
            Self::Unavailable(_) | Self::Timeout => {
                res.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            Self::RateLimited { retry_after_secs, .. } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            Self::Unauthenticated(_) => {
                res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            Self::MethodNotAllowed { allow } => {
                res.insert_header((header::ALLOW, allow.as_str()));
            }
            _ => {}
        }
        res.json(ErrorBody { error: self.code().to_string(), reason: self.reason() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_web::test]
    async fn internal_errors_do_not_leak_their_detail() {
        let res = GatewayError::Internal("password=hunter2 at db.internal:5432".into()).error_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = to_bytes(res.into_body()).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("\"internal\""), "{text}");
    }

    #[test]
    fn batch_too_large_is_413_and_other_batch_errors_400() {
        let big = GatewayError::Batch(BatchError::TooLarge { bytes: 2, max: 1 });
        assert_eq!(big.status_code(), StatusCode::PAYLOAD_TOO_LARGE);
        let bad = GatewayError::Batch(BatchError::Malformed("x".into()));
        assert_eq!(bad.status_code(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn unavailable_answers_with_retry_after() {
        let res = GatewayError::Unavailable("log down".into()).error_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers().get(header::RETRY_AFTER).unwrap(), "1");
    }
}
