//! Request metrics: `http_requests{route, method, status}` and
//! `http_request_duration_seconds{route}`; security headers and CORS.
//!
//! The route label is the matched pattern (`/v1/players/{game_id}/{player_id}`), never the raw
//! path, so player ids cannot become label values; requests that match no route count as
//! `unmatched`. Methods outside the standard set count as `OTHER`.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use actix_web::http::Method;
use actix_web::HttpResponse;
use gm_telemetry::{Metrics, RequestLabels, RouteLabels};
use std::future::Future;
use std::time::Instant;

pub(crate) const UNMATCHED: &str = "unmatched";

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

type BoxedResponse<B> = std::pin::Pin<Box<dyn Future<Output = Result<ServiceResponse<B>, actix_web::Error>>>>;

/// For `App::wrap_fn`: times the request and records it once the response is known.
pub(crate) fn record<S, B>(metrics: Metrics) -> impl Fn(ServiceRequest, &S) -> BoxedResponse<B> + Clone
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    move |req: ServiceRequest, srv: &S| {
        let started = Instant::now();
        let method = method_label(req.method());
        let metrics = metrics.clone();
        let fut = srv.call(req);
        Box::pin(async move {
            let res = fut.await;
            let (route, status) = match &res {
                Ok(r) => (r.request().match_pattern(), r.status().as_u16()),
                // Routing ran on a request we no longer hold; errors are rare here since
                // handler errors arrive as responses.
                Err(e) => (None, e.as_response_error().status_code().as_u16()),
            };
            let route = route.unwrap_or_else(|| UNMATCHED.to_string());
            metrics
                .http_request_duration
                .get_or_create(&RouteLabels { route: route.clone() })
                .observe(started.elapsed().as_secs_f64());
            metrics.http_requests.get_or_create(&RequestLabels { route, method: method.to_string(), status }).inc();
            res
        })
    }
}

/// Headers on every response (errors and 404 included). The API serves JSON only: nothing may
/// be sniffed into HTML, framed, or embed anything; answers hold player data, so no cache
/// keeps them; HSTS for the TLS endpoint in front (browsers ignore it over plain HTTP).
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("strict-transport-security", "max-age=31536000; includeSubDomains"),
];

/// The request headers a browser client may send (credentials travel in headers, never cookies).
const CORS_ALLOW_HEADERS: &str =
    "authorization, content-type, content-encoding, x-api-key, x-gm-signature, x-gm-timestamp, idempotency-key";
/// The response headers a browser client may read besides the simple ones.
const CORS_EXPOSE_HEADERS: &str = "retry-after, www-authenticate";

/// Cross-origin access for browser games (HTML5 clients posting events from their own origin)
/// and dashboards: only the configured origins, or any with `*`. Without configured origins
/// no CORS header is sent and browsers keep cross-origin pages out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    origins: Vec<String>,
    any: bool,
}

impl Cors {
    /// `origins` as configured (`https://play.example.com`, or `*`); blanks are ignored and a
    /// trailing slash dropped, since browsers send origins without one.
    pub fn new(origins: &[String]) -> Self {
        let origins: Vec<String> =
            origins.iter().map(|o| o.trim().trim_end_matches('/').to_string()).filter(|o| !o.is_empty()).collect();
        let any = origins.iter().any(|o| o == "*");
        Self { origins, any }
    }

    pub fn enabled(&self) -> bool {
        !self.origins.is_empty()
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if it is allowed.
    pub fn allow_origin(&self, origin: &str) -> Option<String> {
        if self.any {
            return Some("*".into());
        }
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)).then(|| origin.to_string())
    }
}

type CorsResponse<B> =
    std::pin::Pin<Box<dyn Future<Output = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>>>>;

/// For `App::wrap_fn`: answers preflight requests of allowed origins (204) and adds the CORS
/// headers to their other responses.
pub(crate) fn cors<S, B>(cors: Cors) -> impl Fn(ServiceRequest, &S) -> CorsResponse<B> + Clone
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    move |req: ServiceRequest, srv: &S| {
        let allowed = match req.headers().get(ORIGIN).and_then(|o| o.to_str().ok()) {
            Some(origin) if cors.enabled() => cors.allow_origin(origin),
            _ => None,
        };
        let preflight = req.method() == Method::OPTIONS && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        if let (Some(origin), true) = (&allowed, preflight) {
            let response = HttpResponse::NoContent()
                .insert_header((ACCESS_CONTROL_ALLOW_ORIGIN, origin.as_str()))
                .insert_header((ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"))
                .insert_header((ACCESS_CONTROL_ALLOW_HEADERS, CORS_ALLOW_HEADERS))
                .insert_header((ACCESS_CONTROL_MAX_AGE, "3600"))
                .insert_header((VARY, "Origin"))
                .finish();
            let res = req.into_response(response).map_into_right_body();
            return Box::pin(async move { Ok(res) });
        }
        let fut = srv.call(req);
        Box::pin(async move {
            let mut res = fut.await?;
            if let Some(origin) = allowed {
                let headers = res.headers_mut();
                if let Ok(value) = HeaderValue::from_str(&origin) {
                    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, value);
                }
                headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(CORS_EXPOSE_HEADERS));
                headers.append(VARY, HeaderValue::from_static("Origin"));
            }
            Ok(res.map_into_left_body())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_origins_are_allowed_and_star_allows_any() {
        let none = Cors::new(&["".into(), " ".into()]);
        assert!(!none.enabled());
        let some = Cors::new(&["https://play.example.com/".into(), "https://dash.example.com".into()]);
        assert_eq!(some.allow_origin("https://play.example.com").as_deref(), Some("https://play.example.com"));
        assert_eq!(some.allow_origin("https://evil.example.com"), None);
        assert_eq!(some.allow_origin("https://play.example.com.evil.net"), None);
        let any = Cors::new(&["*".into()]);
        assert_eq!(any.allow_origin("https://anyone.example").as_deref(), Some("*"));
    }
}
