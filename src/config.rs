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
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub actors: ActorsSettings,
    /// API keys per game, `GM_API_KEYS="game-a=key1,game-a=key2,game-b=key3"` or a
    /// `[[api_keys]]` table list in the file.
    #[serde(default)]
    pub api_keys: ApiKeys,
    /// `embedded` (SQLite files under data_dir) or `production` (Kafka, PostgreSQL, Redis).
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub kafka: gm_kafka::KafkaConfig,
    #[serde(default)]
    pub postgres: PostgresSettings,
    /// Optional in production: without it every query goes to PostgreSQL.
    #[serde(default)]
    pub redis: Option<gm_redis::RedisConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Embedded,
    Production,
}

#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct PostgresSettings {
    pub url: String,
    pub max_connections: u32,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self { url: String::new(), max_connections: 16 }
    }
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
}

#[derive(Debug, Clone, Deserialize)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    pub max_events: usize,
    pub max_event_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogConfig {
    pub raw_partitions: u32,
    pub processed_partitions: u32,
    /// Prefix of every Kafka topic and consumer group (several deployments on one cluster).
    #[serde(default)]
    pub namespace: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActorsSettings {
    pub snapshot_every_events: u64,
    pub snapshot_every_ms: u64,
    pub passivate_after_ms: u64,
    pub threads: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiKeyEntry {
    pub game_id: String,
    pub key: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
pub enum ApiKeys {
    #[default]
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

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.bind_addr()?;
        self.api_key_pairs()?;
        if self.log.raw_partitions == 0 || self.log.raw_partitions > 1024 {
            return Err(invalid("log.raw_partitions", "must be 1..=1024"));
        }
        if self.log.processed_partitions == 0 || self.log.processed_partitions > 1024 {
            return Err(invalid("log.processed_partitions", "must be 1..=1024"));
        }
        if self.limits.max_events == 0 || self.limits.max_body_bytes < 1024 || self.limits.max_event_bytes == 0 {
            return Err(invalid("limits", "max_events and max_event_bytes must be positive, max_body_bytes >= 1024"));
        }
        if self.actors.snapshot_every_events == 0 {
            return Err(invalid("actors.snapshot_every_events", "must be positive"));
        }
        if self.actors.threads == 0 || self.actors.threads > 64 {
            return Err(invalid("actors.threads", "must be 1..=64"));
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

    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.http.bind.parse().map_err(|e| invalid("http.bind", format!("'{}' is not host:port: {e}", self.http.bind)))
    }

    /// The configured keys as (game, key) pairs.
    pub fn api_key_pairs(&self) -> Result<Vec<(GameId, String)>, ConfigError> {
        let entries: Vec<(String, String)> = match &self.api_keys {
            ApiKeys::None => Vec::new(),
            ApiKeys::List(list) => list.iter().map(|e| (e.game_id.clone(), e.key.clone())).collect(),
            ApiKeys::Text(text) => text
                .split(',')
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

    pub fn limits(&self) -> gm_schemas::validate::Limits {
        gm_schemas::validate::Limits {
            max_body_bytes: self.limits.max_body_bytes,
            max_events: self.limits.max_events,
            max_event_bytes: self.limits.max_event_bytes,
            ..Default::default()
        }
    }

    pub fn actors(&self) -> gm_actors::ActorsConfig {
        gm_actors::ActorsConfig {
            snapshot_every_events: self.actors.snapshot_every_events,
            snapshot_every: Duration::from_millis(self.actors.snapshot_every_ms),
            passivate_after: Duration::from_millis(self.actors.passivate_after_ms),
            threads: self.actors.threads,
            ..Default::default()
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.http.request_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        let c: Config = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        c
    }

    #[test]
    fn defaults_are_valid() {
        base().validate().unwrap();
    }

    #[test]
    fn bad_bind_names_the_setting() {
        let mut c = base();
        c.http.bind = "nowhere".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("http.bind"), "{e}");
    }

    #[test]
    fn api_keys_parse_from_text_and_reject_bad_pairs() {
        let mut c = base();
        c.api_keys = ApiKeys::Text("space-race=secret-key-1, space-race=secret-key-2".into());
        assert_eq!(c.api_key_pairs().unwrap().len(), 2);
        c.api_keys = ApiKeys::Text("Bad Game=secret-key-1".into());
        assert!(c.validate().unwrap_err().to_string().contains("api_keys"));
        c.api_keys = ApiKeys::Text("game=short".into());
        assert!(c.validate().unwrap_err().to_string().contains("shorter than 8"));
        c.api_keys = ApiKeys::Text("no-equals-sign".into());
        assert!(c.validate().is_err());
    }
}
