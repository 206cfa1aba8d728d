//! The media type of request bodies: a route that takes JSON answers 415
//! `unsupported_media_type` to a body declared as something else, before its handler runs.
//!
//! | routes | `Content-Type` accepted |
//! |---|---|
//! | `POST /v1/events`, `/api/v1/events`, `/v1/privacy/erasures`, `/v1/privacy/receipts/verify`, GameAnalytics' `/v2/{game_key}/init`, `/v2/{game_key}/events`, `/remote_configs/v1/init` | `application/json`, `application/*+json` |
//! | Segment's `/v1/batch`, `/v1/track`, `/v1/identify` | the same, and `text/plain` (analytics.js sends its beacon and CORS-simple requests as `text/plain` with a JSON body) |
//!
//! A `charset` parameter, when given, must be `utf-8` (JSON is UTF-8, RFC 8259). A request
//! without `Content-Type` is taken as JSON (many clients send none; its body is then parsed
//! like any other and refused with 400 when it is not JSON). Routes without a body (GET) are
//! not checked.

use crate::error::GatewayError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, CONTENT_TYPE};
use actix_web::ResponseError as _;
use std::future::Future;

/// What a route's body may be declared as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// `application/json` or `application/*+json`.
    Json,
    /// JSON, or `text/plain` carrying JSON (Segment's analytics.js).
    JsonOrText,
}

impl Accepts {
    fn describe(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::JsonOrText => "application/json or text/plain (with a JSON body)",
        }
    }
}

/// What the route with path pattern `path` and `method` accepts; `None` when its body is
/// not checked (no body).
pub fn accepts(path: &str, method: &str) -> Option<Accepts> {
    if method != "post" {
        return None;
    }
    match path {
        "/v1/batch" | "/v1/track" | "/v1/identify" => Some(Accepts::JsonOrText),
        _ => Some(Accepts::Json),
    }
}

/// Checks the declared media type of a body against `accepts` (415 when it is not one).
pub fn check(headers: &HeaderMap, accepts: Accepts) -> Result<(), GatewayError> {
    let Some(value) = headers.get(CONTENT_TYPE) else { return Ok(()) };
    let refuse = |declared: &str| {
        GatewayError::UnsupportedMediaType(format!(
            "Content-Type '{declared}' is not accepted here; send {} (UTF-8)",
            accepts.describe()
        ))
    };
    let Ok(text) = value.to_str() else { return Err(refuse("<not text>")) };
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    if essence.is_empty() {
        return Err(refuse(text));
    }
    let json = essence == "application/json"
        || essence.strip_prefix("application/").is_some_and(|subtype| subtype.ends_with("+json") && subtype.len() > 5);
    let text_plain = essence == "text/plain" && accepts == Accepts::JsonOrText;
    if !json && !text_plain {
        return Err(refuse(text.trim()));
    }
    for parameter in parts {
        let Some((name, value)) = parameter.split_once('=') else { continue };
        if name.trim().eq_ignore_ascii_case("charset") {
            let charset = value.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
                return Err(GatewayError::UnsupportedMediaType(format!(
                    "charset '{charset}' is not accepted; JSON bodies are UTF-8"
                )));
            }
        }
    }
    Ok(())
}

type Checked<B> = std::pin::Pin<Box<dyn Future<Output = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>>>>;

/// For `Resource::wrap_fn`: answers 415 to a body of the wrong media type before the handler.
pub(crate) fn require<S, B>(accepts: Accepts) -> impl Fn(ServiceRequest, &S) -> Checked<B> + Clone
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    move |req: ServiceRequest, srv: &S| {
        // Other methods go on to the resource's 405.
        let checked =
            if req.method() == actix_web::http::Method::POST { check(req.headers(), accepts) } else { Ok(()) };
        if let Err(e) = checked {
            let res = req.into_response(e.error_response()).map_into_right_body();
            return Box::pin(async move { Ok(res) });
        }
        let fut = srv.call(req);
        Box::pin(async move { Ok(fut.await?.map_into_left_body()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn with(content_type: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = content_type {
            h.insert(CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
        }
        h
    }

    #[test]
    fn json_media_types_and_no_content_type_are_accepted() {
        for accepts in [Accepts::Json, Accepts::JsonOrText] {
            for ok in [
                None,
                Some("application/json"),
                Some("Application/JSON"),
                Some("application/json; charset=utf-8"),
                Some("application/json;charset=\"UTF-8\""),
                Some("application/vnd.gamemetrics+json"),
            ] {
                assert!(check(&with(ok), accepts).is_ok(), "{ok:?} {accepts:?}");
            }
        }
        // Segment's analytics.js (beacon, CORS-simple requests).
        assert!(check(&with(Some("text/plain;charset=UTF-8")), Accepts::JsonOrText).is_ok());
    }

    #[test]
    fn other_media_types_and_charsets_are_415_naming_what_is_accepted() {
        let refused = |t: &str, accepts| match check(&with(Some(t)), accepts) {
            Err(e @ GatewayError::UnsupportedMediaType(_)) => {
                assert_eq!(e.status_code().as_u16(), 415);
                e.to_string()
            }
            other => panic!("{t}: {other:?}"),
        };
        for t in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/xml",
            "application/xml",
            "application/octet-stream",
            "application/+json",
            "json",
            "",
        ] {
            let reason = refused(t, Accepts::Json);
            assert!(reason.contains("application/json"), "{reason}");
        }
        assert!(refused("text/html", Accepts::JsonOrText).contains("text/plain"));
        assert!(refused("application/json; charset=latin1", Accepts::Json).contains("latin1"));
        assert!(refused("text/plain; charset=utf-16", Accepts::JsonOrText).contains("utf-16"));
    }

    #[test]
    fn every_posted_route_is_checked_and_only_segments_take_text() {
        for (path, method, _) in crate::routes() {
            match (method, accepts(path, method)) {
                ("get", None) => {}
                ("post", Some(Accepts::JsonOrText)) => {
                    assert!(["/v1/batch", "/v1/track", "/v1/identify"].contains(&path), "{path}")
                }
                ("post", Some(Accepts::Json)) => {}
                other => panic!("{method} {path}: {other:?}"),
            }
        }
    }
}
