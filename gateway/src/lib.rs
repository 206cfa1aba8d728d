//! # gm-gateway
//!
//! The HTTP API of GameMetrics (actix-web): ingest, queries, health, metrics, OpenAPI.
//!
//! ## Path of an event through the gateway
//!
//! 1. **Endpoint checks** ([`ingest::post_events`]). The metrics middleware starts a timer;
//!    the handler runs under the request timeout ([`GatewayConfig::request_timeout`], 503 on
//!    expiry). The caller is identified by its API key ([`auth::authenticate`]: SHA-256 of
//!    the key compared in constant time with the configured hashes, 401 otherwise) and
//!    allowed to ingest ([`auth::authorize`], the one place for such decisions). The body is
//!    read up to `limits.max_body_bytes` (413 beyond); a gzip body is inflated by the gateway
//!    itself, stopping one byte past the limit, so a gzip bomb costs at most the limit.
//! 2. **`decode_batch_keyed`** (`gm_schemas::validate`). The batch is parsed, `received_at` is the
//!    gateway's clock, client clock skew is corrected from `sent_at`, and each event is
//!    validated on its own: a batch-level problem (not JSON, too many events, bad `sent_at`)
//!    refuses the request with 400 `{"error", "reason"}`; a bad event is reported with its
//!    index, code, field and reason and never blocks the others.
//! 3. **Append.** Each valid event becomes `RawRecord::Event(envelope)` as JSON, keyed
//!    `game_id:player_id` (per-player order), and all of them go to `player.events.raw` in
//!    ONE `LogProducer::append`, which returns only once the log holds them durably
//!    (acks=all). A log failure or the request timeout answers 503 with `Retry-After: 1`,
//!    which claims nothing either way (the append may complete after the answer): the client
//!    resends with the same `Idempotency-Key` or event ids, and the actors count it once.
//! 4. **202** with `{"accepted", "rejected", "results": [...]}`, one result per posted event
//!    (400 with the same shape when no event was valid). `events_accepted`,
//!    `events_rejected{reason}` and `log_append_duration_seconds` are updated.
//!
//! From there the actors consume `player.events.raw` (docs/design.md#data-flow, step 2).
//!
//! ## Queries
//!
//! `/v1/players/{game_id}/{player_id}` and `/v1/analytics/{game_id}/...` authenticate the
//! same way, then [`auth::authorize`] checks that the key belongs to that game (403
//! otherwise); ids and date ranges are validated (400 with a reason) before the
//! [`gm_projections::AnalyticsQueries`] port is asked.
//!
//! ## Modules
//!
//! - [`error`]: the one error enum and its status mapping.
//! - [`auth`]: API keys, principals, the authorization decision.
//! - [`ingest`], [`queries`], [`health`]: one file per endpoint group.
//! - [`middleware`]: request metrics labelled by route pattern.
//! - [`openapi`]: the generated OpenAPI document (checked in as `docs/openapi.json`).
//! - [`readiness`]: flags the roles set, served by `/health/ready`.

pub mod auth;
pub mod compat;
pub mod console;
pub mod error;
pub mod gameanalytics;
pub mod games;
pub mod health;
pub mod ingest;
pub mod jwt;
pub mod me;
pub mod media_type;
pub mod middleware;
pub mod openapi;
pub mod privacy;
pub mod queries;
pub mod rate_limit;
pub mod readiness;
pub mod signature;
pub mod status;

pub use auth::{ApiKeyConfig, ApiKeys, Authenticator, GameScope, Principal, Role};
pub use error::{ErrorBody, GatewayError};
pub use jwt::{Jwks, JwtConfig, JwtVerifier};
pub use openapi::openapi;
pub use rate_limit::RateLimitConfig;
pub use readiness::{ComponentState, Readiness};
pub use signature::{Secret, SigningSecret};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::KeepAlive;
use actix_web::{web, App, HttpResponse, HttpServer, Route};
use gm_ports::LogProducer;
use gm_projections::AnalyticsQueries;
use gm_schemas::validate::Limits;
use gm_telemetry::Metrics;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What the gateway needs to know. `Debug` never prints a key, secret or token.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub api_keys: Vec<ApiKeyConfig>,
    /// Key ids (hex SHA-256 prefixes, at least 8 digits) of revoked API keys.
    pub revoked_keys: Vec<String>,
    /// Games whose ingest requests must be signed (HMAC-SHA256 of the raw body).
    pub signing_secrets: Vec<SigningSecret>,
    /// People's bearer tokens: what they must say, and the keys that sign them. `None`: no
    /// token is accepted (only API keys).
    pub jwt: Option<(JwtConfig, Jwks)>,
    /// The bearer token Prometheus presents to read `/metrics`.
    pub metrics_token: Option<Secret>,
    /// A static bearer token with the compliance role on every game (development only, like
    /// `dev_analyst_token`).
    pub dev_compliance_token: Option<Secret>,
    /// A static bearer token with the analyst role on every game (development only; see the
    /// config docs).
    pub dev_analyst_token: Option<Secret>,
    /// Tokens the web console offers for one-click sign-in (`GET /v1/dev-sign-in`): only the
    /// embedded default's development tokens.
    pub dev_sign_ins: Vec<me::DevSignIn>,
    pub rate_limits: RateLimitConfig,
    pub limits: Limits,
    /// Upper bound on handling one request (reading the body included); 503 beyond.
    pub request_timeout: Duration,
    /// Origins browsers may call the API from (CORS); `*` for any; empty: none.
    pub cors_allowed_origins: Vec<String>,
    /// GameAnalytics game keys and their secret keys (the collector API v2 routes).
    pub gameanalytics_keys: Vec<gameanalytics::GameAnalyticsKey>,
}

impl Default for GatewayConfig {
    /// No credentials and no rate limits; the request timeout and size limits of
    /// config/default.toml.
    fn default() -> Self {
        #[derive(serde::Deserialize)]
        struct Http {
            request_timeout_ms: u64,
        }
        Self {
            api_keys: Vec::new(),
            revoked_keys: Vec::new(),
            signing_secrets: Vec::new(),
            jwt: None,
            metrics_token: None,
            dev_compliance_token: None,
            dev_analyst_token: None,
            dev_sign_ins: Vec::new(),
            // Off: the tests built on it send more than any one client would.
            rate_limits: RateLimitConfig::UNLIMITED,
            limits: Limits::default(),
            request_timeout: Duration::from_millis(gm_schemas::defaults::section::<Http>("http").request_timeout_ms),
            cors_allowed_origins: Vec::new(),
            gameanalytics_keys: Vec::new(),
        }
    }
}

/// What rotates without a restart (see [`AppState::rotation`]); the JWKS has its own handle,
/// [`Jwks::replace`].
#[derive(Debug, Clone)]
pub struct Rotation {
    keys: auth::KeyRotation,
    signing: signature::SigningSecrets,
    gameanalytics: gameanalytics::GameKeys,
}

impl Rotation {
    /// From now on, exactly these credentials are accepted. Requests already past
    /// authentication finish with the credentials they were checked against.
    pub fn rotate(
        &self,
        api_keys: &[ApiKeyConfig],
        revoked_keys: &[String],
        metrics_token: Option<&Secret>,
        signing_secrets: &[SigningSecret],
    ) {
        self.keys.replace(ApiKeys::with_revoked(api_keys, revoked_keys), metrics_token.map(|t| t.0.as_str()));
        self.signing.replace(signing_secrets);
    }

    /// From now on, exactly these GameAnalytics game keys and secret keys are accepted.
    pub fn rotate_gameanalytics(&self, keys: &[gameanalytics::GameAnalyticsKey]) {
        self.gameanalytics.replace(keys);
    }
}

/// Everything the handlers share. Built once per process; cheap to share through `web::Data`.
pub struct AppState {
    pub(crate) config: GatewayConfig,
    pub(crate) auth: Authenticator,
    pub(crate) signing: signature::SigningSecrets,
    pub(crate) rate_limits: rate_limit::RateLimits,
    pub(crate) producer: Arc<dyn LogProducer>,
    pub(crate) queries: Arc<dyn AnalyticsQueries>,
    /// Leaderboards and retention; `None` answers 503 on those routes.
    pub(crate) games: Option<Arc<dyn gm_projections::GameQueries>>,
    /// Players' recommendations; `None` answers 503 on that route.
    pub(crate) recommendations: Option<Arc<dyn gm_projections::RecommendationQueries>>,
    pub(crate) metrics: Metrics,
    pub(crate) readiness: Readiness,
    /// Pseudonyms, crypto-shredding and the privacy routes. Without it (gateway unit tests)
    /// player ids go to the log as sent and events with personal fields are refused.
    pub(crate) privacy: Option<Arc<gm_privacy::PrivacyService>>,
    /// The previous platform's route without a key, for the listed games (off: `None`).
    pub(crate) keyless_legacy: Option<compat::Keyless>,
    /// The GameAnalytics game keys and their secrets.
    pub(crate) gameanalytics: gameanalytics::GameKeys,
    /// Per game, the order of the funnel's levels (`[funnel] order`); others follow in
    /// natural order.
    pub(crate) funnel_orders: std::collections::HashMap<String, Vec<String>>,
    /// What `/v1/status` reads; `None` answers 503 there.
    pub(crate) status: Option<Arc<status::StatusSources>>,
}

impl AppState {
    /// Hashes the configured API keys and tokens; the plain ones are dropped from the kept
    /// config.
    pub fn new(
        mut config: GatewayConfig,
        producer: Arc<dyn LogProducer>,
        queries: Arc<dyn AnalyticsQueries>,
        metrics: Metrics,
        readiness: Readiness,
    ) -> Self {
        let keys = ApiKeys::with_revoked(&config.api_keys, &config.revoked_keys);
        let jwt = config.jwt.take().map(|(c, jwks)| JwtVerifier::new(c, jwks));
        let mut auth = Authenticator::new(keys, jwt, config.metrics_token.take().as_ref().map(|s| s.0.as_str()));
        if let Some(token) = config.dev_analyst_token.take() {
            auth = auth.with_dev_analyst_token(&token.0);
        }
        if let Some(token) = config.dev_compliance_token.take() {
            auth = auth.with_dev_compliance_token(&token.0);
        }
        let signing = signature::SigningSecrets::new(&config.signing_secrets);
        let rate_limits = rate_limit::RateLimits::new(config.rate_limits);
        let gameanalytics = gameanalytics::GameKeys::new(&config.gameanalytics_keys);
        config.gameanalytics_keys.clear();
        config.api_keys.clear();
        config.signing_secrets.clear();
        Self {
            config,
            auth,
            signing,
            rate_limits,
            producer,
            queries,
            games: None,
            recommendations: None,
            metrics,
            readiness,
            privacy: None,
            keyless_legacy: None,
            gameanalytics,
            funnel_orders: std::collections::HashMap::new(),
            status: None,
        }
    }

    /// Serves `/v1/status` from `sources`.
    pub fn with_status(mut self, sources: status::StatusSources) -> Self {
        self.status = Some(Arc::new(sources));
        self
    }

    /// The funnel's level order per game id (levels not listed follow in natural order).
    pub fn with_funnel_orders(mut self, orders: std::collections::HashMap<String, Vec<String>>) -> Self {
        self.funnel_orders = orders;
        self
    }

    /// Lets the listed games' old clients post to `/api/v1/events` without a key, rate-limited
    /// per client address; no game listed leaves it off. Err when games are listed without a
    /// rate.
    pub fn with_keyless_legacy(mut self, settings: compat::KeylessLegacy) -> Result<Self, compat::KeylessWithoutRate> {
        self.keyless_legacy = compat::Keyless::new(settings)?;
        Ok(self)
    }

    /// Serves players' recommendations from `queries`.
    pub fn with_recommendations(mut self, queries: Arc<dyn gm_projections::RecommendationQueries>) -> Self {
        self.recommendations = Some(queries);
        self
    }

    /// Serves the leaderboard, retention and monetisation routes from `games`.
    pub fn with_game_queries(mut self, games: Arc<dyn gm_projections::GameQueries>) -> Self {
        self.games = Some(games);
        self
    }

    /// Remembers used request signatures in `claims` (Redis), shared by every gateway, so a
    /// replay through another gateway is refused too (see [`signature`]).
    pub fn with_shared_claims(mut self, claims: Arc<dyn gm_ports::SharedClaims>) -> Self {
        self.signing = self.signing.with_shared_claims(claims);
        self
    }

    /// Counts the rate limits with every other gateway in `counters` (Redis; see
    /// [`rate_limit`]). Call within the server's runtime: it starts the exchange task.
    pub fn with_shared_rate_limits(mut self, counters: Arc<dyn gm_ports::SharedCounters>) -> Self {
        let limits = std::mem::replace(&mut self.rate_limits, rate_limit::RateLimits::new(Default::default()));
        self.rate_limits = limits.with_shared(counters);
        self
    }

    /// The handle that replaces the API keys, revocations, metrics token and signing secrets
    /// while this state serves (rotation without a restart).
    pub fn rotation(&self) -> Rotation {
        Rotation {
            keys: self.auth.rotation(),
            signing: self.signing.clone(),
            gameanalytics: self.gameanalytics.clone(),
        }
    }

    /// Pseudonymises and seals events at ingest; serves the privacy routes.
    pub fn with_privacy(mut self, privacy: Arc<gm_privacy::PrivacyService>) -> Self {
        self.privacy = Some(privacy);
        self
    }

    /// The readiness flags (clone it to set components ready from elsewhere).
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }
}

/// Runs `fut` under the request timeout: a request that takes longer answers 503.
pub(crate) async fn within<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, GatewayError>>,
) -> Result<T, GatewayError> {
    tokio::time::timeout(timeout, fut).await.map_err(|_| GatewayError::Timeout)?
}

/// Every route of the gateway: (path pattern, method, handler). [`configure`] registers
/// exactly these, and a test checks that each one is in the OpenAPI document.
pub fn routes() -> Vec<(&'static str, &'static str, Route)> {
    vec![
        ("/v1/events", "post", web::post().to(ingest::post_events)),
        ("/v1/batch", "post", web::post().to(compat::segment_batch)),
        ("/v1/track", "post", web::post().to(compat::segment_track)),
        ("/v1/identify", "post", web::post().to(compat::segment_identify)),
        ("/api/v1/events", "post", web::post().to(compat::legacy_event)),
        ("/v2/{game_key}/init", "post", web::post().to(gameanalytics::init_v2)),
        ("/v2/{game_key}/events", "post", web::post().to(gameanalytics::events)),
        ("/remote_configs/v1/init", "post", web::post().to(gameanalytics::init_remote_configs)),
        ("/v1/players/{game_id}/{player_id}", "get", web::get().to(queries::player_profile)),
        ("/v1/analytics/{game_id}/active-users", "get", web::get().to(queries::active_users)),
        ("/v1/analytics/{game_id}/sessions", "get", web::get().to(queries::sessions)),
        ("/v1/analytics/{game_id}/revenue", "get", web::get().to(queries::revenue)),
        ("/v1/analytics/{game_id}/funnel", "get", web::get().to(queries::funnel)),
        ("/v1/analytics/{game_id}/retention", "get", web::get().to(games::retention)),
        ("/v1/analytics/{game_id}/new-returning", "get", web::get().to(games::new_returning)),
        ("/v1/analytics/{game_id}/monetisation", "get", web::get().to(games::monetisation)),
        ("/v1/players/{game_id}/{player_id}/recommendations", "get", web::get().to(games::recommendations)),
        ("/v1/leaderboards/{game_id}/{board}", "get", web::get().to(games::leaderboard)),
        ("/v1/leaderboards/{game_id}/{board}/players/{player_id}", "get", web::get().to(games::standing)),
        ("/v1/privacy/erasures", "post", web::post().to(privacy::post_erasure)),
        ("/v1/privacy/erasures", "get", web::get().to(privacy::list_erasures)),
        ("/v1/privacy/receipts/verify", "post", web::post().to(privacy::verify_receipt)),
        ("/v1/privacy/erasures/{erasure_id}", "get", web::get().to(privacy::get_erasure)),
        ("/v1/privacy/exports/{game_id}/{player_id}", "get", web::get().to(privacy::get_export)),
        ("/v1/privacy/audit", "get", web::get().to(privacy::get_audit)),
        ("/v1/me", "get", web::get().to(me::me)),
        ("/v1/dev-sign-in", "get", web::get().to(me::dev_sign_in)),
        ("/v1/status", "get", web::get().to(status::get_status)),
        ("/health/live", "get", web::get().to(health::live)),
        ("/health/ready", "get", web::get().to(health::ready)),
        ("/metrics", "get", web::get().to(health::metrics)),
        ("/openapi.json", "get", web::get().to(health::openapi_json)),
    ]
}

async fn not_found() -> Result<HttpResponse, GatewayError> {
    Err(GatewayError::NotFound("no such route".into()))
}

async fn method_not_allowed(allow: String) -> Result<HttpResponse, GatewayError> {
    Err(GatewayError::MethodNotAllowed { allow })
}

/// Registers the state, the extractor error handlers and every route (no middleware: use
/// [`app`] for the complete application).
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AppState>) {
    cfg.app_data(web::Data::new(state.readiness.clone()))
        .app_data(web::Data::new(state.metrics.clone()))
        .app_data(state)
        .app_data(web::PathConfig::default().error_handler(|e, _| GatewayError::InvalidInput(e.to_string()).into()))
        .app_data(web::QueryConfig::default().error_handler(|e, _| GatewayError::InvalidInput(e.to_string()).into()));
    // One resource per path with every method's route (a second resource of the same path
    // would never be reached: the first one answers 405 to its methods).
    let mut by_path: Vec<(&'static str, Vec<(&'static str, Route)>)> = Vec::new();
    for (path, method, route) in routes() {
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, methods)) => methods.push((method, route)),
            None => by_path.push((path, vec![(method, route)])),
        }
    }
    for (path, methods) in by_path {
        // RFC 9110: a 405 names the methods the resource has (`Allow`).
        let allow: Vec<String> = methods.iter().map(|(m, _)| m.to_ascii_uppercase()).collect();
        let allow = allow.join(", ");
        // A body of another media type than the route takes: 415 before the handler (only
        // POST bodies are checked).
        let accepts = methods.iter().find_map(|(m, _)| media_type::accepts(path, m));
        let resource = methods
            .into_iter()
            .fold(web::resource(path), |resource, (_, route)| resource.route(route))
            .default_service(web::to(move || method_not_allowed(allow.clone())));
        match accepts {
            Some(accepts) => cfg.service(resource.wrap_fn(media_type::require(accepts))),
            None => cfg.service(resource),
        };
    }
    // The web console: static, outside [`routes`] (HTML, not API; not in the OpenAPI document).
    cfg.configure(console::configure);
}

/// The complete application: routes, JSON 404 for unknown routes, CORS, security headers,
/// request metrics.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let metrics = state.metrics.clone();
    let cors = middleware::Cors::new(&state.config.cors_allowed_origins);
    let security_headers = middleware::SECURITY_HEADERS
        .iter()
        .fold(actix_web::middleware::DefaultHeaders::new(), |headers, (name, value)| headers.add((*name, *value)));
    App::new()
        .configure(|cfg| configure(cfg, state))
        .default_service(web::to(not_found))
        .wrap_fn(middleware::cors(cors))
        .wrap(security_headers)
        .wrap_fn(middleware::record(metrics))
}

/// Starts the HTTP server on `listener` (already bound) and returns it; await the returned
/// [`Server`] to run it, or use its handle to stop it.
pub async fn serve(listener: std::net::TcpListener, state: AppState) -> std::io::Result<Server> {
    let head_timeout = state.config.request_timeout.min(Duration::from_secs(5));
    let data = web::Data::new(state);
    let server = HttpServer::new(move || app(data.clone()))
        // Time allowed to send the request head; slow clients must not hold workers.
        .client_request_timeout(head_timeout)
        .client_disconnect_timeout(Duration::from_secs(1))
        // Longer than common load-balancer idle timeouts (60 s), so the LB closes first.
        .keep_alive(KeepAlive::Timeout(Duration::from_secs(75)))
        .shutdown_timeout(30)
        // The process owns SIGTERM/SIGINT: it stops the server, then lets actors snapshot.
        .disable_signals()
        .listen(listener)?
        .run();
    Ok(server)
}
