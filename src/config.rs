//! Typed configuration: `config/default.toml` (compiled in), then an optional file, then
//! environment variables `GM_*` (nested with `__`). Validated at start with errors that name
//! the bad setting.

use gm_schemas::GameId;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub data_dir: PathBuf,
    pub json_logs: bool,
    pub http: HttpConfig,
    pub limits: gm_schemas::validate::Limits,
    pub log: LogConfig,
    pub actors: gm_actors::ActorsSettings,
    /// API keys per game, `GM_API_KEYS="game-a=key1,game-a=key2,game-b=key3"` or a
    /// `[[api_keys]]` table list in the file.
    pub api_keys: ApiKeys,
    /// The same `game=key` pairs (comma- or newline-separated) in a file, e.g. a mounted
    /// Kubernetes Secret; used instead of `api_keys` when set.
    pub api_keys_file: Option<PathBuf>,
    /// `embedded` (SQLite files under data_dir) or `production` (Kafka, PostgreSQL, Redis).
    pub mode: Mode,
    pub kafka: gm_kafka::KafkaConfig,
    pub postgres: PostgresSettings,
    /// Optional in production: with its url empty (the default) every query goes to
    /// PostgreSQL. See [`Config::cache`].
    pub redis: gm_redis::RedisConfig,
    /// Revocation, body signatures, people's tokens, the metrics token.
    pub auth: AuthSettings,
    pub rate_limits: gm_gateway::RateLimitConfig,
    /// Crypto-shredding and erasure.
    pub privacy: PrivacySettings,
    /// How long the events fact table keeps each game's events.
    pub retention: RetentionSettings,
    /// Span export over OTLP (off when no endpoint is set).
    pub telemetry: TelemetrySettings,
    /// The previous platform's route without an API key (off unless games are listed).
    pub compat: CompatSettings,
    /// Games whose clients use a GameAnalytics SDK: their game keys and secret keys.
    pub gameanalytics: GameAnalyticsSettings,
    /// The order of each game's funnel levels.
    pub funnel: FunnelSettings,
    /// How `/health/ready` checks the dependencies and consumers of a production role.
    pub health: HealthSettings,
}

/// `[health]`: the background checks behind `/health/ready` (docs/runbooks/not-ready.md).
#[derive(Debug, Clone, Deserialize)]
pub struct HealthSettings {
    /// How often Kafka (the producer's metadata request) and PostgreSQL (`SELECT 1`) are probed
    /// and the consumers judged.
    pub probe_interval_ms: u64,
    /// A probe not answered within this is a failure.
    pub probe_timeout_ms: u64,
    /// A consumer that has not polled, or has work and has not moved forward, for this long is
    /// not ready.
    pub consumer_stall_ms: u64,
}

/// `[funnel]`: the order of a game's levels in the funnel (defaults in config/default.toml).
#[derive(Debug, Clone, Deserialize)]
pub struct FunnelSettings {
    /// `game=level,level,…` entries separated by `;`, e.g.
    /// `"space-race=tutorial,level-1,level-2;farm=plant,harvest"`. A game's levels not listed,
    /// and the levels of games not listed, follow in natural order (`level-2` before `level-10`).
    pub order: String,
}

/// `[gameanalytics]`: the collector API v2 routes (`/v2/{game_key}/events`, docs/compat.md).
#[derive(Clone, Deserialize)]
pub struct GameAnalyticsSettings {
    /// `game=game_key:secret_key` entries, comma- or newline-separated; a game key may appear
    /// several times with different secret keys (all accepted: rotation with overlap).
    pub keys: String,
    /// The same entries in a file (a mounted Kubernetes Secret); used instead of `keys` when set.
    pub keys_file: Option<PathBuf>,
}

impl std::fmt::Debug for GameAnalyticsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GameAnalyticsSettings")
            .field("keys", &if self.keys.is_empty() { "" } else { "<redacted>" })
            .field("keys_file", &self.keys_file)
            .finish()
    }
}

/// `[compat]`: old clients that cannot send an API key (defaults in config/default.toml).
#[derive(Debug, Clone, Deserialize)]
pub struct CompatSettings {
    /// Games (comma-separated) whose clients may post to `POST /api/v1/events` without a key,
    /// naming the game in the body's `game_id`; empty: every request needs a key.
    pub keyless_games: String,
    /// Keyless requests per second per client address (must be above 0 when games are listed).
    pub keyless_per_address_per_second: u32,
    pub keyless_per_address_burst: u32,
    /// Take the client address from the last `X-Forwarded-For` entry (behind a trusted proxy).
    pub keyless_trust_forwarded_for: bool,
}

/// `[telemetry]`: OpenTelemetry spans, exported over OTLP/HTTP protobuf.
#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    /// Base URL of an OTLP/HTTP collector (`http://otel-collector:4318`); empty = no export.
    pub otlp_endpoint: String,
    /// Share of new traces kept, 0.0..=1.0 (a continued trace keeps its parent's decision).
    pub sampling_ratio: f64,
    /// `service.name` of the spans; the role is appended (`gamemetrics-gateway`).
    pub service_name: String,
}

/// `[retention]`: days of events kept in the `events` fact table, per game.
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionSettings {
    pub default_days: u32,
    /// `game=days` pairs, comma-separated, for games kept longer or shorter than the default.
    pub games: String,
}

/// `[privacy]`. The master key wraps every player's data key: losing it loses every
/// personal value, leaking it exposes them (not the erased ones: their keys are gone).
#[derive(Clone, Deserialize)]
pub struct PrivacySettings {
    /// 32 bytes as 64 hex characters or base64. Required in production (inline or file).
    pub master_key: String,
    pub master_key_file: Option<PathBuf>,
    /// Events of an erased player are refused for this many days.
    pub suppression_days: u32,
    /// How long a gateway trusts a cached data key (other replicas learn of an erasure
    /// within it; the actors drop anything let through meanwhile).
    pub key_cache_ttl_ms: u64,
    /// How often pending erasures are followed up.
    pub erasure_poll_ms: u64,
    /// PostgreSQL URL of the keys database (data keys, sealed personal values, erasure
    /// records, audit): its own cluster, backed up on its own shorter retention and never
    /// restored with the data database, so that a restore of the data database cannot bring
    /// back an erased player's key. Empty: those tables share `postgres.url` (production
    /// warns at start). Ignored in embedded mode (one SQLite file).
    pub keys_url: String,
}

impl std::fmt::Debug for PrivacySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivacySettings")
            .field("master_key", &if self.master_key.is_empty() { "" } else { "<redacted>" })
            .field("master_key_file", &self.master_key_file)
            .field("suppression_days", &self.suppression_days)
            .field("key_cache_ttl_ms", &self.key_cache_ttl_ms)
            .field("erasure_poll_ms", &self.erasure_poll_ms)
            // The URL may carry a password.
            .field("keys_url", &if self.keys_url.is_empty() { "" } else { "<redacted>" })
            .finish()
    }
}

/// `[auth]`: every secret may be given inline, or as `*_file` naming a file that holds it
/// (Kubernetes Secrets and External Secrets mounted as files).
#[derive(Clone, Deserialize)]
pub struct AuthSettings {
    /// Key ids of revoked API keys, comma-separated: the first 16 (at least 8) hex digits of
    /// the key's SHA-256 (`printf %s "$KEY" | sha256sum | cut -c1-16`).
    pub revoked_keys: String,
    /// `game=secret,...`: the games whose ingest requests must be signed (`X-GM-Timestamp`,
    /// `X-GM-Signature`; see gm_gateway::signature).
    pub signing_secrets: String,
    pub signing_secrets_file: Option<PathBuf>,
    /// The JWKS of the identity provider, as a file or a URL (fetched at start, refreshed).
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    pub jwks_refresh_secs: u64,
    /// What people's tokens must say (`iss`, `aud`), the claim holding their roles and the
    /// claim holding the games they may act on (`["space-race"]`, or `"*"` for every game).
    pub issuer: String,
    pub audience: String,
    pub roles_claim: String,
    pub games_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub jwt_leeway_secs: u64,
    /// The bearer token Prometheus presents to read `/metrics`.
    pub metrics_token: String,
    pub metrics_token_file: Option<PathBuf>,
    /// A static bearer token with the analyst role on every game, for the embedded default
    /// only (so a new user can query without an identity provider); ignored in production mode.
    pub dev_analyst_token: String,
    /// The same with the compliance role (the console's compliance pages on the embedded
    /// default); ignored in production mode.
    pub dev_compliance_token: String,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("revoked_keys", &self.revoked_keys)
            .field("jwks_file", &self.jwks_file)
            .field("jwks_url", &self.jwks_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("roles_claim", &self.roles_claim)
            .field("games_claim", &self.games_claim)
            .finish_non_exhaustive()
    }
}

/// A secret given inline or in a file (trailing newline dropped).
fn secret(inline: &str, file: Option<&Path>, setting: &'static str) -> Result<String, ConfigError> {
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| invalid(setting, format!("reading {}: {e}", path.display()))),
        None => Ok(inline.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Embedded,
    Production,
}

#[derive(Clone, Deserialize)]
pub struct PostgresSettings {
    pub url: String,
    pub max_connections: u32,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PostgresSettings").field("max_connections", &self.max_connections).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpConfig {
    pub bind: String,
    pub request_timeout_ms: u64,
    /// Origins browsers may call the API from (CORS), comma-separated; `*` for any.
    pub cors_allowed_origins: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogConfig {
    pub raw_partitions: u32,
    pub processed_partitions: u32,
    /// Namespace of every Kafka topic and consumer group (several deployments on one
    /// cluster): `sbs` makes `sbs.player.events.raw` and `sbs.actors`; empty, the bare names.
    pub namespace: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiKeyEntry {
    pub game_id: String,
    pub key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ApiKeys {
    None,
    List(Vec<ApiKeyEntry>),
    /// `game=key,game=key`, as environment variables carry it.
    Text(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration setting `{setting}`: {reason}")]
    Invalid { setting: &'static str, reason: String },
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { setting, reason: reason.into() }
}

impl Config {
    /// Loads defaults, then `file` when given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut builder =
            config::Config::builder().add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file.to_path_buf()).required(true));
        }
        let config: Config = builder
            .add_source(config::Environment::with_prefix("GM").prefix_separator("_").separator("__").try_parsing(true))
            .build()?
            .try_deserialize()?;
        config.validate()?;
        Ok(config)
    }

    /// The compiled-in defaults (config/default.toml) alone: no file, no environment.
    pub fn defaults() -> Self {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("config/default.toml is a valid configuration")
    }

    /// Whether the API keys in use are the development keys of config/default.toml (not a
    /// secret of this deployment, so they may be shown).
    pub fn uses_development_api_keys(&self) -> bool {
        let (Ok(ours), Ok(development)) = (self.api_key_pairs(), Self::defaults().api_key_pairs()) else {
            return false;
        };
        self.api_keys_file.is_none() && !ours.is_empty() && ours == development
    }

    /// Whether the development analyst token in use is the one of config/default.toml.
    pub fn uses_development_analyst_token(&self) -> bool {
        let development = Self::defaults().auth.dev_analyst_token;
        matches!(self.dev_analyst_token(), Ok(Some(token)) if token == development.trim())
    }

    /// Whether the development compliance token in use is the one of config/default.toml.
    pub fn uses_development_compliance_token(&self) -> bool {
        let development = Self::defaults().auth.dev_compliance_token;
        matches!(self.dev_compliance_token(), Ok(Some(token)) if token == development.trim())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.bind_addr()?;
        self.keyless_legacy()?;
        self.funnel_orders()?;
        self.api_key_pairs()?;
        self.signing_secret_pairs()?;
        self.gameanalytics_keys()?;
        self.metrics_token()?;
        self.dev_analyst_token()?;
        self.dev_compliance_token()?;
        let auth = &self.auth;
        if auth.jwks_file.is_some() && auth.jwks_url.is_some() {
            return Err(invalid("auth.jwks_file", "give auth.jwks_file or auth.jwks_url, not both"));
        }
        if (auth.jwks_file.is_some() || auth.jwks_url.is_some())
            && (auth.issuer.trim().is_empty() || auth.audience.trim().is_empty())
        {
            return Err(invalid("auth.issuer", "auth.issuer and auth.audience are required with a JWKS"));
        }
        if auth.jwks_refresh_secs == 0 {
            return Err(invalid("auth.jwks_refresh_secs", "must be positive"));
        }
        if self.log.raw_partitions == 0 || self.log.raw_partitions > 1024 {
            return Err(invalid("log.raw_partitions", "must be 1..=1024"));
        }
        if self.log.processed_partitions == 0 || self.log.processed_partitions > 1024 {
            return Err(invalid("log.processed_partitions", "must be 1..=1024"));
        }
        gm_ports::namespaced::check_namespace(&self.log.namespace)
            .map_err(|e| invalid("log.namespace", e.to_string()))?;
        if self.limits.max_events == 0 || self.limits.max_body_bytes < 1024 || self.limits.max_event_bytes == 0 {
            return Err(invalid("limits", "max_events and max_event_bytes must be positive, max_body_bytes >= 1024"));
        }
        if self.actors.snapshot_every_events == 0 {
            return Err(invalid("actors.snapshot_every_events", "must be positive"));
        }
        if self.actors.threads == 0 || self.actors.threads > 64 {
            return Err(invalid("actors.threads", "must be 1..=64"));
        }
        if self.actors.max_concurrent_loads == 0 {
            return Err(invalid("actors.max_concurrent_loads", "must be at least 1"));
        }
        if !(1..=100).contains(&self.actors.max_attempts) {
            return Err(invalid("actors.max_attempts", "must be 1..=100"));
        }
        if !(1..=24 * 366).contains(&self.actors.dedup_window_hours) {
            return Err(invalid("actors.dedup_window_hours", "must be 1..=8784"));
        }
        if !(1..=1_000_000).contains(&self.actors.dedup_max_ids) {
            return Err(invalid("actors.dedup_max_ids", "must be 1..=1000000"));
        }
        if self.actors.session_timeout_ms < 1_000 || self.actors.session_end_grace_ms < 1_000 {
            return Err(invalid(
                "actors.session_timeout_ms",
                "session_timeout_ms and session_end_grace_ms must be at least 1000",
            ));
        }
        if !(100..=3_600_000).contains(&self.actors.session_tick_ms) {
            return Err(invalid("actors.session_tick_ms", "must be 100..=3600000"));
        }
        if self.actors.stall_after_ms < 1_000 {
            return Err(invalid("actors.stall_after_ms", "must be at least 1000"));
        }
        if !(100..=600_000).contains(&self.health.probe_interval_ms) {
            return Err(invalid("health.probe_interval_ms", "must be 100..=600000"));
        }
        if !(100..=60_000).contains(&self.health.probe_timeout_ms) {
            return Err(invalid("health.probe_timeout_ms", "must be 100..=60000"));
        }
        if self.health.consumer_stall_ms < 1_000 {
            return Err(invalid("health.consumer_stall_ms", "must be at least 1000"));
        }
        if !(0.0..=1.0).contains(&self.telemetry.sampling_ratio) {
            return Err(invalid("telemetry.sampling_ratio", "must be between 0.0 and 1.0"));
        }
        if !self.telemetry.otlp_endpoint.is_empty() && !self.telemetry.otlp_endpoint.starts_with("http://") {
            return Err(invalid("telemetry.otlp_endpoint", "must be an http:// URL of an OTLP/HTTP collector"));
        }
        if self.privacy.suppression_days == 0 || self.privacy.erasure_poll_ms == 0 {
            return Err(invalid("privacy", "suppression_days and erasure_poll_ms must be positive"));
        }
        // Checked when given; required (by `master_key`) only where used: the gateway.
        self.configured_master_key()?;
        self.retention_limits()?;
        if self.retention.default_days == 0 {
            return Err(invalid("retention.default_days", "must be positive"));
        }
        if self.mode == Mode::Production {
            if self.postgres.url.is_empty() {
                return Err(invalid("postgres.url", "required in production mode (GM_POSTGRES__URL)"));
            }
            if self.kafka.brokers.trim().is_empty() {
                return Err(invalid("kafka.brokers", "required in production mode (GM_KAFKA__BROKERS)"));
            }
        }
        Ok(())
    }

    /// In production mode, refuses development credentials: an API key compiled in from
    /// config/default.toml (`demo-key-0001`, `sim-key-…`: public in this repository, and what
    /// the gateway would accept when `GM_API_KEYS` is left unset), given inline, by
    /// `GM_API_KEYS` or in `GM_API_KEYS_FILE` (plain or as `sha256:`), and a development analyst
    /// token other than the compiled-in one (which production mode never reads). Checked by
    /// the processes that authenticate requests (`gateway`, `serve`) before they start.
    pub fn refuse_development_credentials(&self) -> Result<(), ConfigError> {
        if self.mode != Mode::Production {
            return Ok(());
        }
        let defaults = Self::defaults();
        let development = defaults.api_key_pairs()?;
        let ours = self.api_key_pairs()?;
        let setting = if self.api_keys_file.is_some() { "api_keys_file" } else { "api_keys" };
        if self.api_keys_file.is_none() && ours == development {
            return Err(invalid(
                setting,
                "production mode with the development keys compiled in from config/default.toml \
                 (demo-key-0001, sim-key-…): set GM_API_KEYS or GM_API_KEYS_FILE to this deployment's own keys",
            ));
        }
        // By key id (SHA-256 prefix), so a development key configured as `sha256:<hex>` is
        // recognised too.
        let id = |key: &str| match key.trim().strip_prefix("sha256:") {
            Some(hex) => hex.trim().to_ascii_lowercase().chars().take(16).collect(),
            None => gm_gateway::auth::key_id(key.trim()),
        };
        let found: Vec<&str> = development
            .iter()
            .filter(|(_, d)| ours.iter().any(|(_, k)| id(k) == id(d)))
            .map(|(_, d)| d.as_str())
            .collect();
        if !found.is_empty() {
            return Err(invalid(
                setting,
                format!(
                    "production mode with development key{} {} (config/default.toml, public): replace {} with this \
                     deployment's own keys",
                    if found.len() == 1 { "" } else { "s" },
                    found.join(", "),
                    if found.len() == 1 { "it" } else { "them" },
                ),
            ));
        }
        let dev_tokens = [
            (
                "auth.dev_analyst_token",
                "GM_AUTH__DEV_ANALYST_TOKEN",
                &self.auth.dev_analyst_token,
                &defaults.auth.dev_analyst_token,
            ),
            (
                "auth.dev_compliance_token",
                "GM_AUTH__DEV_COMPLIANCE_TOKEN",
                &self.auth.dev_compliance_token,
                &defaults.auth.dev_compliance_token,
            ),
        ];
        for (setting, variable, token, default) in dev_tokens {
            let token = token.trim();
            if !token.is_empty() && token != default.trim() {
                return Err(invalid(
                    setting,
                    format!(
                        "development only: production mode accepts people's JWTs (auth.jwks_file or \
                         auth.jwks_url) and no static token; unset {variable}"
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.http.bind.parse().map_err(|e| invalid("http.bind", format!("'{}' is not host:port: {e}", self.http.bind)))
    }

    /// The configured keys as (game, key) pairs.
    pub fn api_key_pairs(&self) -> Result<Vec<(GameId, String)>, ConfigError> {
        let from_file = match &self.api_keys_file {
            Some(path) => Some(ApiKeys::Text(secret("", Some(path), "api_keys_file")?)),
            None => None,
        };
        let entries: Vec<(String, String)> = match from_file.as_ref().unwrap_or(&self.api_keys) {
            ApiKeys::None => Vec::new(),
            ApiKeys::List(list) => list.iter().map(|e| (e.game_id.clone(), e.key.clone())).collect(),
            ApiKeys::Text(text) => text
                .split([',', '\n'])
                .filter(|s| !s.trim().is_empty())
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(g, k)| (g.trim().to_string(), k.trim().to_string()))
                        .ok_or_else(|| invalid("api_keys", format!("'{pair}' is not game=key")))
                })
                .collect::<Result<_, _>>()?,
        };
        entries
            .into_iter()
            .map(|(game, key)| {
                let game = GameId::parse(&game).map_err(|e| invalid("api_keys", format!("game id '{game}': {e}")))?;
                if key.len() < 8 {
                    return Err(invalid("api_keys", format!("the key of {game} is shorter than 8 characters")));
                }
                Ok((game, key))
            })
            .collect()
    }

    /// The games' body-signing secrets as (game, secret) pairs.
    pub fn signing_secret_pairs(&self) -> Result<Vec<(GameId, String)>, ConfigError> {
        let text =
            secret(&self.auth.signing_secrets, self.auth.signing_secrets_file.as_deref(), "auth.signing_secrets")?;
        text.split([',', '\n'])
            .filter(|s| !s.trim().is_empty())
            .map(|pair| {
                let (game, secret) = pair
                    .split_once('=')
                    .ok_or_else(|| invalid("auth.signing_secrets", "an entry is not game=secret"))?;
                let game = GameId::parse(game.trim())
                    .map_err(|e| invalid("auth.signing_secrets", format!("game id '{}': {e}", game.trim())))?;
                if secret.trim().len() < 16 {
                    return Err(invalid("auth.signing_secrets", format!("the secret of {game} is shorter than 16")));
                }
                Ok((game, secret.trim().to_string()))
            })
            .collect()
    }

    /// The GameAnalytics game keys: (game, game key, secret key) for every configured secret.
    /// A game key names one game; it may have several secrets (rotation).
    pub fn gameanalytics_keys(&self) -> Result<Vec<(GameId, String, String)>, ConfigError> {
        const SETTING: &str = "gameanalytics.keys";
        let g = &self.gameanalytics;
        let text = secret(&g.keys, g.keys_file.as_deref(), SETTING)?;
        let mut out: Vec<(GameId, String, String)> = Vec::new();
        for entry in text.split([',', '\n']).map(str::trim).filter(|e| !e.is_empty()) {
            let (game, rest) =
                entry.split_once('=').ok_or_else(|| invalid(SETTING, "an entry is not game=game_key:secret_key"))?;
            let (game_key, secret) =
                rest.split_once(':').ok_or_else(|| invalid(SETTING, "an entry is not game=game_key:secret_key"))?;
            let game =
                GameId::parse(game.trim()).map_err(|e| invalid(SETTING, format!("game id '{}': {e}", game.trim())))?;
            let (game_key, secret) = (game_key.trim(), secret.trim());
            let key_ok = (8..=128).contains(&game_key.len())
                && game_key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !key_ok {
                return Err(invalid(SETTING, format!("the game key of {game} must be 8 to 128 of A-Z a-z 0-9 - _")));
            }
            if secret.len() < 16 {
                return Err(invalid(SETTING, format!("the secret key of {game} is shorter than 16 characters")));
            }
            if let Some((other, _, _)) = out.iter().find(|(g, k, _)| k == game_key && *g != game) {
                return Err(invalid(SETTING, format!("one game key is given for two games ({other} and {game})")));
            }
            out.push((game, game_key.to_string(), secret.to_string()));
        }
        Ok(out)
    }

    /// `[funnel] order` per game id: the levels listed, in order.
    pub fn funnel_orders(&self) -> Result<std::collections::HashMap<String, Vec<String>>, ConfigError> {
        const SETTING: &str = "funnel.order";
        let mut out = std::collections::HashMap::new();
        for entry in self.funnel.order.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (game, levels) = entry
                .split_once('=')
                .ok_or_else(|| invalid(SETTING, format!("'{entry}' is not game=level,level,…")))?;
            let game = GameId::parse(game.trim()).map_err(|e| invalid(SETTING, format!("'{game}': {e}")))?;
            let levels: Vec<String> = levels.split(',').map(|l| l.trim().to_string()).collect();
            if levels.iter().any(String::is_empty) {
                return Err(invalid(SETTING, format!("'{entry}': an empty level id")));
            }
            if let Some(twice) = levels.iter().enumerate().find(|(i, l)| levels[..*i].contains(l)).map(|(_, l)| l) {
                return Err(invalid(SETTING, format!("'{entry}': level '{twice}' listed twice")));
            }
            if out.insert(game.to_string(), levels).is_some() {
                return Err(invalid(SETTING, format!("game '{game}' listed twice")));
            }
        }
        Ok(out)
    }

    /// The per-game retention limits in days (games without one follow `default_days`).
    pub fn retention_limits(&self) -> Result<std::collections::BTreeMap<String, u32>, ConfigError> {
        let mut out = std::collections::BTreeMap::new();
        for pair in self.retention.games.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (game, days) =
                pair.split_once('=').ok_or_else(|| invalid("retention.games", format!("'{pair}' is not game=days")))?;
            let game = GameId::parse(game.trim()).map_err(|e| invalid("retention.games", format!("'{game}': {e}")))?;
            let days: u32 = days
                .trim()
                .parse()
                .ok()
                .filter(|d| *d > 0)
                .ok_or_else(|| invalid("retention.games", format!("'{pair}': days must be a positive integer")))?;
            out.insert(game.to_string(), days);
        }
        Ok(out)
    }

    /// The master key from configuration (inline or file), if one is given.
    pub fn configured_master_key(&self) -> Result<Option<gm_privacy::MasterKey>, ConfigError> {
        let text = secret(&self.privacy.master_key, self.privacy.master_key_file.as_deref(), "privacy.master_key")?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        gm_privacy::MasterKey::parse(&text).map(Some).map_err(|e| invalid("privacy.master_key", e.to_string()))
    }

    /// The master key: configured, or in embedded mode the one kept in
    /// `data_dir/privacy-master.key` (created on first start, readable by the owner only).
    pub fn master_key(&self) -> anyhow::Result<gm_privacy::MasterKey> {
        if let Some(key) = self.configured_master_key()? {
            return Ok(key);
        }
        anyhow::ensure!(
            self.mode == Mode::Embedded,
            "privacy.master_key is required in production mode (GM_PRIVACY__MASTER_KEY or GM_PRIVACY__MASTER_KEY_FILE)"
        );
        let path = self.data_dir.join("privacy-master.key");
        if let Ok(text) = std::fs::read_to_string(&path) {
            return gm_privacy::MasterKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
        }
        std::fs::create_dir_all(&self.data_dir)?;
        let bytes: [u8; 32] = rand::random();
        let text = hex::encode(bytes);
        {
            use std::io::Write as _;
            #[cfg(unix)]
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            options.mode(0o600);
            let mut file = options.open(&path)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        Ok(gm_privacy::MasterKey::from_bytes(bytes))
    }

    pub fn privacy_settings(&self) -> anyhow::Result<gm_privacy::PrivacySettings> {
        Ok(gm_privacy::PrivacySettings {
            master_key: self.master_key()?,
            suppression: chrono::Duration::days(i64::from(self.privacy.suppression_days)),
            key_cache_ttl: Duration::from_millis(self.privacy.key_cache_ttl_ms.max(1)),
            poll_interval: Duration::from_millis(self.privacy.erasure_poll_ms),
        })
    }

    /// The development analyst token, if one is configured (embedded mode only).
    pub fn dev_analyst_token(&self) -> Result<Option<String>, ConfigError> {
        let token = self.auth.dev_analyst_token.trim();
        if token.is_empty() {
            return Ok(None);
        }
        if self.mode == Mode::Production {
            // Never accepted in production: people authenticate with JWTs there.
            return Ok(None);
        }
        if token.len() < 16 {
            return Err(invalid("auth.dev_analyst_token", "shorter than 16 characters"));
        }
        Ok(Some(token.to_string()))
    }

    /// The development compliance token, if one is configured (embedded mode only, like the
    /// analyst one).
    pub fn dev_compliance_token(&self) -> Result<Option<String>, ConfigError> {
        let token = self.auth.dev_compliance_token.trim();
        if token.is_empty() || self.mode == Mode::Production {
            return Ok(None);
        }
        if token.len() < 16 {
            return Err(invalid("auth.dev_compliance_token", "shorter than 16 characters"));
        }
        Ok(Some(token.to_string()))
    }

    /// The metrics token, if one is configured.
    pub fn metrics_token(&self) -> Result<Option<String>, ConfigError> {
        let token = secret(&self.auth.metrics_token, self.auth.metrics_token_file.as_deref(), "auth.metrics_token")?;
        let token = token.trim().to_string();
        if token.is_empty() {
            return Ok(None);
        }
        if token.len() < 16 {
            return Err(invalid("auth.metrics_token", "shorter than 16 characters"));
        }
        Ok(Some(token))
    }

    pub fn revoked_keys(&self) -> Vec<String> {
        self.auth.revoked_keys.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
    }

    pub fn rate_limits(&self) -> gm_gateway::RateLimitConfig {
        self.rate_limits
    }

    pub fn limits(&self) -> gm_schemas::validate::Limits {
        self.limits
    }

    pub fn actors(&self) -> gm_actors::ActorsConfig {
        self.actors.config()
    }

    /// The Redis cache, when `redis.url` names one.
    pub fn cache(&self) -> Option<&gm_redis::RedisConfig> {
        Some(&self.redis).filter(|r| !r.url.trim().is_empty())
    }

    /// `[health]` as the readiness watchers take it.
    pub fn health(&self) -> crate::readiness::Settings {
        let h = &self.health;
        crate::readiness::Settings {
            interval: Duration::from_millis(h.probe_interval_ms),
            timeout: Duration::from_millis(h.probe_timeout_ms),
            consumer_stall: Duration::from_millis(h.consumer_stall_ms),
        }
    }

    pub fn cors_allowed_origins(&self) -> Vec<String> {
        self.http.cors_allowed_origins.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
    }

    /// `[compat]` as the gateway takes it.
    pub fn keyless_legacy(&self) -> Result<gm_gateway::compat::KeylessLegacy, ConfigError> {
        let c = &self.compat;
        let mut games = std::collections::BTreeSet::new();
        for game in c.keyless_games.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            games.insert(GameId::parse(game).map_err(|e| invalid("compat.keyless_games", format!("'{game}': {e}")))?);
        }
        if !games.is_empty() && c.keyless_per_address_per_second == 0 {
            return Err(invalid(
                "compat.keyless_per_address_per_second",
                "must be above 0 when compat.keyless_games lists games: keyless ingest is always rate-limited",
            ));
        }
        Ok(gm_gateway::compat::KeylessLegacy {
            games,
            per_address_per_second: c.keyless_per_address_per_second,
            per_address_burst: c.keyless_per_address_burst,
            trust_forwarded_for: c.keyless_trust_forwarded_for,
        })
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.http.request_timeout_ms)
    }
}

#[cfg(test)]
mod tests;
