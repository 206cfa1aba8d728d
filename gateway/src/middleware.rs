//! Request metrics: `http_requests{route, method, status}` and
//! `http_request_duration_seconds{route}`.
//!
//! The route label is the matched pattern (`/v1/players/{game_id}/{player_id}`), never the raw
//! path, so player ids cannot become label values; requests that match no route count as
//! `unmatched`. Methods outside the standard set count as `OTHER`.

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
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
