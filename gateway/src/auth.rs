//! Who is calling (authentication) and what they may do (authorization).
//!
//! ## Credentials
//!
//! - **Game API keys** (game clients and servers), sent as `Authorization: Bearer <key>`,
//!   `X-API-Key: <key>`, or HTTP basic auth with the key as user name (Segment SDKs send their
//!   write key that way). Only SHA-256 hashes of the keys are kept (a key may even be
//!   configured as `sha256:<hex>`), and a presented key is compared against every stored hash
//!   in constant time. Several keys per game may be active at once (rotation with overlap); a
//!   key is revoked by listing its *key id* (the first 16 hex digits of its SHA-256, or any
//!   prefix of at least 8 of them) in `auth.revoked_keys`.
//! - **JWT bearer tokens** (people: analysts, compliance staff, administrators), checked by
//!   [`crate::jwt::JwtVerifier`] against a JWKS: signature, issuer, audience, expiry; roles from a
//!   configurable claim, and the games the person may read or erase from another
//!   ([`GameScope`], claim `games` by default: `["space-race", "farm"]`, or `"*"` for every
//!   game; a token without it reaches no game).
//! - **The metrics token** (Prometheus), a static bearer token that only reads `/metrics`.
//!
//! The optional HMAC body signature of a game ([`crate::signature`]) is checked by the ingest
//! routes on top of the key, over the raw body before any decompression.
//!
//! ## Authorization
//!
//! [`PERMISSIONS`] declares once what each kind of principal may do, and [`authorize`] is the
//! one place that applies it. Handlers only name the [`Action`] they perform.

use crate::error::GatewayError;
use crate::jwt::JwtVerifier;
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use base64::Engine as _;
use gm_schemas::GameId;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::{Arc, RwLock};

/// One API key of one game, as configured. `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyConfig {
    pub game_id: GameId,
    /// The key itself, or `sha256:<64 hex digits>` of it.
    pub key: String,
}

impl fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyConfig").field("game_id", &self.game_id).field("key", &"<redacted>").finish()
    }
}

pub(crate) type KeyHash = [u8; 32];

pub(crate) fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// The public id of a key: the first 16 hex digits of its SHA-256 (safe to log and to list
/// in `auth.revoked_keys`). `printf %s "$KEY" | sha256sum | cut -c1-16`.
pub fn key_id(key: &str) -> String {
    hex::encode(hash_key(key))[..16].to_string()
}

/// Equality that looks at every byte whatever the input, so its duration says nothing.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn stored_hash(key: &str) -> KeyHash {
    if let Some(hex_hash) = key.strip_prefix("sha256:") {
        let mut out = [0u8; 32];
        if hex::decode_to_slice(hex_hash.trim(), &mut out).is_ok() {
            return out;
        }
        tracing::warn!("an API key configured as sha256:<hex> is not 64 hex digits; taking it as a plain key");
    }
    hash_key(key)
}

#[derive(Clone)]
struct StoredKey {
    hash: KeyHash,
    game: GameId,
    revoked: bool,
}

/// The hashed API keys of every game (several keys per game allowed, for rotation).
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<StoredKey>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let revoked = self.keys.iter().filter(|k| k.revoked).count();
        f.debug_struct("ApiKeys").field("keys", &self.keys.len()).field("revoked", &revoked).finish()
    }
}

/// What a presented key turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMatch {
    Active { game: GameId, key_id: String },
    Revoked { key_id: String },
    Unknown,
}

impl ApiKeys {
    /// Hashes the configured keys; empty keys are ignored (they would match an empty header).
    pub fn new(keys: &[ApiKeyConfig]) -> Self {
        Self::with_revoked(keys, &[])
    }

    /// As [`ApiKeys::new`], marking revoked every key whose hex SHA-256 starts with one of
    /// `revoked` (prefixes shorter than 8 hex digits are ignored: they could match by chance).
    pub fn with_revoked(keys: &[ApiKeyConfig], revoked: &[String]) -> Self {
        let revoked: Vec<String> = revoked
            .iter()
            .map(|r| r.trim().trim_start_matches("sha256:").to_ascii_lowercase())
            .filter(|r| {
                let ok = r.len() >= 8 && r.chars().all(|c| c.is_ascii_hexdigit());
                if !ok {
                    tracing::warn!("ignoring a revoked key id that is not at least 8 hex digits");
                }
                ok
            })
            .collect();
        let keys = keys
            .iter()
            .filter(|k| {
                let empty = k.key.trim().is_empty();
                if empty {
                    tracing::warn!(game_id = %k.game_id, "ignoring an empty API key");
                }
                !empty
            })
            .map(|k| {
                let hash = stored_hash(k.key.trim());
                let hex_hash = hex::encode(hash);
                let revoked = revoked.iter().any(|r| hex_hash.starts_with(r.as_str()));
                StoredKey { hash, game: k.game_id.clone(), revoked }
            })
            .collect();
        Self { keys }
    }

    /// Looks the key up. Compares against every stored hash, without early exit.
    pub fn lookup(&self, key: &str) -> KeyMatch {
        let presented = hash_key(key);
        let mut found = None;
        for stored in &self.keys {
            if constant_time_eq(&stored.hash, &presented) {
                found = Some(stored);
            }
        }
        let key_id = || hex::encode(presented)[..16].to_string();
        match found {
            Some(k) if k.revoked => KeyMatch::Revoked { key_id: key_id() },
            Some(k) => KeyMatch::Active { game: k.game.clone(), key_id: key_id() },
            None => KeyMatch::Unknown,
        }
    }

    /// The games that have an active key (console: the games the platform knows).
    pub fn games(&self) -> impl Iterator<Item = &GameId> {
        self.keys.iter().filter(|k| !k.revoked).map(|k| &k.game)
    }

    /// The game whose active key this is.
    pub fn game_of(&self, key: &str) -> Option<GameId> {
        match self.lookup(key) {
            KeyMatch::Active { game, .. } => Some(game),
            _ => None,
        }
    }
}

/// A role of a person, from the roles claim of their token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Analyst,
    Compliance,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Analyst, Role::Compliance, Role::Admin];

    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "analyst" => Some(Self::Analyst),
            "compliance" => Some(Self::Compliance),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Analyst => "analyst",
            Self::Compliance => "compliance",
            Self::Admin => "admin",
        }
    }
}

/// The games a person may read or erase, from the games claim of their token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GameScope {
    /// `"*"`: every game.
    All,
    /// These games only (sorted, deduplicated); empty when the token names none.
    Only(Vec<GameId>),
}

impl GameScope {
    /// The wildcard of the claim.
    pub const WILDCARD: &'static str = "*";

    /// From the claim's value: an array of game ids, or a space/comma separated string; `*`
    /// (alone or among others) means every game. Names that are not valid game ids are
    /// ignored (they could not name a game anyway); a missing claim or any other JSON value
    /// reaches no game.
    pub fn from_claim(value: Option<&serde_json::Value>) -> Self {
        use serde_json::Value;
        let names: Vec<&str> = match value {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(s)) => s.split([' ', ',']).collect(),
            _ => Vec::new(),
        };
        let names: Vec<&str> = names.into_iter().map(str::trim).filter(|n| !n.is_empty()).collect();
        if names.contains(&Self::WILDCARD) {
            return Self::All;
        }
        let mut games: Vec<GameId> = names.into_iter().filter_map(|n| GameId::parse(n).ok()).collect();
        games.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        games.dedup();
        Self::Only(games)
    }

    pub fn allows(&self, game: &GameId) -> bool {
        match self {
            Self::All => true,
            Self::Only(games) => games.contains(game),
        }
    }

    /// `*`, or the games comma-separated (`none` when empty): for error messages and logs.
    pub fn describe(&self) -> String {
        match self {
            Self::All => Self::WILDCARD.into(),
            Self::Only(games) if games.is_empty() => "none".into(),
            Self::Only(games) => games.iter().map(GameId::as_str).collect::<Vec<_>>().join(","),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Holder of an active API key of `game`.
    GameKey { game: GameId, key_id: String },
    /// A person with a valid token; `roles` may be empty (then nothing is allowed), and
    /// `games` says which games their roles apply to.
    Person { subject: String, roles: Vec<Role>, games: GameScope },
    /// Holder of the metrics token (Prometheus).
    MetricsScraper,
}

/// What kind of caller a permission is granted to: a game key, a person with a role, the
/// metrics scraper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grantee {
    GameKey,
    Person(Role),
    MetricsScraper,
}

/// What may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Post events, for the game of the key only (the key names the game).
    IngestOwnGame,
    /// Read player profiles and analytics (of the games of the token's scope).
    Query,
    /// Erasure and export of a player's data, the audit trail (the privacy routes; of the
    /// games of the token's scope).
    Privacy,
    /// Read `/metrics`.
    ReadMetrics,
    /// Read `/openapi.json`.
    ReadApiDocs,
    /// Read `/v1/status` (readiness, consumer lag, dead letters: no game's data, nothing
    /// personal; see crate::status for who and why).
    ReadStatus,
}

/// Who may do what, declared once. Game keys only ingest ("game API keys can only ingest":
/// a leaked client key must not read player profiles); queries need an analyst or admin
/// token; the privacy routes a compliance or admin token. The admin may do everything a
/// person can; ingest stays with game keys, since the key is what names the game. Every
/// permission on a game holds only for the games of the principal: its key's game, or the
/// games claim of a person's token ([`GameScope`]), checked by [`authorize`].
pub const PERMISSIONS: &[(Grantee, &[Permission])] = &[
    (Grantee::GameKey, &[Permission::IngestOwnGame, Permission::ReadApiDocs]),
    (Grantee::Person(Role::Analyst), &[Permission::Query, Permission::ReadApiDocs, Permission::ReadStatus]),
    (Grantee::Person(Role::Compliance), &[Permission::Privacy, Permission::ReadApiDocs, Permission::ReadStatus]),
    (
        Grantee::Person(Role::Admin),
        &[
            Permission::Query,
            Permission::Privacy,
            Permission::ReadMetrics,
            Permission::ReadApiDocs,
            Permission::ReadStatus,
        ],
    ),
    (Grantee::MetricsScraper, &[Permission::ReadMetrics, Permission::ReadStatus]),
];

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Post events (always for the principal's own game).
    Ingest,
    /// Read one player's profile in `game`.
    ReadPlayer(&'a GameId),
    /// Read aggregated analytics of `game`.
    ReadAnalytics(&'a GameId),
    /// Request erasure or export of a player of `game`.
    Privacy(&'a GameId),
    /// Read the privacy audit trail (the entries of the principal's games: see
    /// [`Principal::game_scope`]).
    PrivacyAudit,
    ReadMetrics,
    ReadApiDocs,
    /// Read the operators' status page.
    ReadStatus,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::IngestOwnGame,
        Permission::Query,
        Permission::Privacy,
        Permission::ReadMetrics,
        Permission::ReadApiDocs,
        Permission::ReadStatus,
    ];

    /// Its name in `GET /v1/me`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::IngestOwnGame => "ingest",
            Self::Query => "query",
            Self::Privacy => "privacy",
            Self::ReadMetrics => "read_metrics",
            Self::ReadApiDocs => "read_api_docs",
            Self::ReadStatus => "read_status",
        }
    }
}

impl Action<'_> {
    /// The permission the action needs.
    pub fn permission(&self) -> Permission {
        match self {
            Self::Ingest => Permission::IngestOwnGame,
            Self::ReadPlayer(_) | Self::ReadAnalytics(_) => Permission::Query,
            Self::Privacy(_) | Self::PrivacyAudit => Permission::Privacy,
            Self::ReadMetrics => Permission::ReadMetrics,
            Self::ReadApiDocs => Permission::ReadApiDocs,
            Self::ReadStatus => Permission::ReadStatus,
        }
    }
}

impl Principal {
    fn grantees(&self) -> Vec<Grantee> {
        match self {
            Self::GameKey { .. } => vec![Grantee::GameKey],
            Self::Person { roles, .. } => roles.iter().map(|r| Grantee::Person(*r)).collect(),
            Self::MetricsScraper => vec![Grantee::MetricsScraper],
        }
    }

    /// Whether [`PERMISSIONS`] grants `permission` to this principal.
    pub fn has(&self, permission: Permission) -> bool {
        self.grantees()
            .iter()
            .any(|g| PERMISSIONS.iter().any(|(grantee, granted)| grantee == g && granted.contains(&permission)))
    }

    /// The games this principal may act on: a key's own game, a person's games claim; the
    /// metrics scraper reaches no game.
    pub fn game_scope(&self) -> GameScope {
        match self {
            Self::GameKey { game, .. } => GameScope::Only(vec![game.clone()]),
            Self::Person { games, .. } => games.clone(),
            Self::MetricsScraper => GameScope::Only(Vec::new()),
        }
    }

    /// The game an ingest request posts for (only game keys ingest).
    pub fn ingest_game(&self) -> Result<&GameId, GatewayError> {
        match self {
            Self::GameKey { game, .. } => Ok(game),
            _ => Err(GatewayError::Forbidden("ingest needs a game API key (the key names the game)".into())),
        }
    }

    /// Safe to log: the key id or the token's subject, never a secret.
    pub fn describe(&self) -> String {
        match self {
            Self::GameKey { game, key_id } => format!("key {key_id} of {game}"),
            Self::Person { subject, roles, games } => {
                let roles: Vec<&str> = roles.iter().map(Role::as_str).collect();
                format!("{subject} ({}; games {})", roles.join(","), games.describe())
            }
            Self::MetricsScraper => "metrics scraper".into(),
        }
    }
}

/// Decides whether `principal` may perform `action` (403 when not). The only place that does.
pub fn authorize(principal: &Principal, action: Action<'_>) -> Result<(), GatewayError> {
    let permission = action.permission();
    if !principal.has(permission) {
        let who = match principal {
            Principal::GameKey { .. } => "a game API key".to_string(),
            Principal::Person { roles, .. } if roles.is_empty() => "a token without a known role".to_string(),
            Principal::Person { roles, .. } => {
                let roles: Vec<&str> = roles.iter().map(Role::as_str).collect();
                format!("role {}", roles.join(", "))
            }
            Principal::MetricsScraper => "the metrics token".to_string(),
        };
        let needs = match permission {
            Permission::IngestOwnGame => "a game API key",
            Permission::Query => "an analyst or admin token",
            Permission::Privacy => "a compliance or admin token",
            Permission::ReadMetrics => "the metrics token or an admin token",
            Permission::ReadApiDocs => "any API key or token",
            Permission::ReadStatus => "a person's token or the metrics token",
        };
        return Err(GatewayError::Forbidden(format!("{who} may not do this; it needs {needs}")));
    }
    // Keys and people act on their own games only (ingest is for the key's game by
    // construction).
    if let Action::ReadPlayer(t) | Action::ReadAnalytics(t) | Action::Privacy(t) = action {
        match principal {
            Principal::GameKey { game, .. } if game != t => {
                return Err(GatewayError::Forbidden(format!("this API key belongs to another game than '{t}'")));
            }
            Principal::Person { games, .. } if !games.allows(t) => {
                return Err(GatewayError::Forbidden(game_refused(t, games)));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The reason of a 403 for a game outside a token's scope.
pub(crate) fn game_refused(game: &GameId, scope: &GameScope) -> String {
    match scope {
        GameScope::Only(games) if games.is_empty() => format!(
            "this token may not access game '{game}': it names no game (give it a `games` claim: \
             [\"{game}\"], or \"*\" for every game)"
        ),
        _ => format!("this token may not access game '{game}'; its games: {}", scope.describe()),
    }
}

/// Everything that can authenticate a request. Built once; `Debug` prints no secret.
#[derive(Default)]
pub struct Authenticator {
    /// The API keys and the metrics token: replaced as a whole when their files change
    /// ([`KeyRotation`]), while requests keep reading the set they started with.
    pub(crate) current: KeyRotation,
    pub(crate) jwt: Option<JwtVerifier>,
    pub(crate) dev_analyst_token: Option<KeyHash>,
    pub(crate) dev_compliance_token: Option<KeyHash>,
}

/// The rotatable part of the credentials: the games' API keys (with revocations) and the
/// metrics token.
#[derive(Debug)]
pub(crate) struct KeySet {
    keys: ApiKeys,
    metrics_token: Option<KeyHash>,
}

/// A handle on the API keys and metrics token of an [`Authenticator`] (and of its clones'
/// owners): [`KeyRotation::replace`] swaps them without a restart.
#[derive(Debug, Clone)]
pub struct KeyRotation(Arc<RwLock<Arc<KeySet>>>);

impl Default for KeyRotation {
    fn default() -> Self {
        Self::new(ApiKeys::default(), None)
    }
}

impl KeyRotation {
    fn new(keys: ApiKeys, metrics_token: Option<&str>) -> Self {
        let metrics_token = metrics_token.map(str::trim).filter(|t| !t.is_empty()).map(hash_key);
        Self(Arc::new(RwLock::new(Arc::new(KeySet { keys, metrics_token }))))
    }

    fn get(&self) -> Arc<KeySet> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// From now on, exactly these keys (and revocations) and this metrics token are accepted.
    pub fn replace(&self, keys: ApiKeys, metrics_token: Option<&str>) {
        let fresh = Self::new(keys, metrics_token).get();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.current.get().keys)
            .field("jwt", &self.jwt.is_some())
            .field("metrics_token", &self.current.get().metrics_token.is_some())
            .finish()
    }
}

/// The credential presented with a request.
enum Credential<'a> {
    ApiKey(&'a str),
    /// Basic auth user name (Segment write key); decoded, so owned.
    BasicUser(String),
    Jwt(&'a str),
}

fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
}

fn presented(headers: &HeaderMap) -> Result<Option<Credential<'_>>, GatewayError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let text = value
            .to_str()
            .map_err(|_| GatewayError::Unauthenticated("Authorization header is not valid text".into()))?;
        let Some((scheme, credential)) = text.trim().split_once(' ') else {
            return Err(GatewayError::Unauthenticated(
                "Authorization header must be 'Bearer <key or token>' or 'Basic <base64 of key:>'".into(),
            ));
        };
        let credential = credential.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return Ok(Some(if looks_like_jwt(credential) {
                Credential::Jwt(credential)
            } else {
                Credential::ApiKey(credential)
            }));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credential)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| GatewayError::Unauthenticated("Basic credentials are not base64 of 'key:'".into()))?;
            let user = decoded.split_once(':').map(|(u, _)| u).unwrap_or(&decoded);
            return Ok(Some(Credential::BasicUser(user.to_string())));
        }
        return Err(GatewayError::Unauthenticated(format!(
            "unsupported Authorization scheme '{scheme}'; use Bearer, Basic or X-API-Key"
        )));
    }
    if let Some(value) = headers.get("x-api-key") {
        let key =
            value.to_str().map_err(|_| GatewayError::Unauthenticated("X-API-Key header is not valid text".into()))?;
        return Ok(Some(Credential::ApiKey(key.trim())));
    }
    Ok(None)
}

impl Authenticator {
    pub fn new(keys: ApiKeys, jwt: Option<JwtVerifier>, metrics_token: Option<&str>) -> Self {
        Self {
            current: KeyRotation::new(keys, metrics_token),
            jwt,
            dev_analyst_token: None,
            dev_compliance_token: None,
        }
    }

    /// The games with an active API key now (rotation included).
    pub fn key_games(&self) -> Vec<GameId> {
        self.current.get().keys.games().cloned().collect()
    }

    /// The handle that replaces the API keys and the metrics token while serving.
    pub fn rotation(&self) -> KeyRotation {
        self.current.clone()
    }

    /// Accepts `token` as an analyst of every game (the embedded default's development token).
    pub fn with_dev_analyst_token(mut self, token: &str) -> Self {
        self.dev_analyst_token = Some(token.trim()).filter(|t| !t.is_empty()).map(hash_key);
        self
    }

    /// Accepts `token` as compliance staff of every game (the embedded default's development
    /// token for the console's compliance pages).
    pub fn with_dev_compliance_token(mut self, token: &str) -> Self {
        self.dev_compliance_token = Some(token.trim()).filter(|t| !t.is_empty()).map(hash_key);
        self
    }

    fn by_key(&self, key: &str) -> Result<Principal, GatewayError> {
        if key.is_empty() {
            return Err(GatewayError::Unauthenticated("empty API key".into()));
        }
        let current = self.current.get();
        if let Some(token) = &current.metrics_token {
            if constant_time_eq(token, &hash_key(key)) {
                return Ok(Principal::MetricsScraper);
            }
        }
        let dev_tokens = [
            (&self.dev_analyst_token, "dev-analyst-token", Role::Analyst),
            (&self.dev_compliance_token, "dev-compliance-token", Role::Compliance),
        ];
        for (token, subject, role) in dev_tokens {
            if token.as_ref().is_some_and(|token| constant_time_eq(token, &hash_key(key))) {
                return Ok(Principal::Person { subject: subject.into(), roles: vec![role], games: GameScope::All });
            }
        }
        match current.keys.lookup(key) {
            KeyMatch::Active { game, key_id } => Ok(Principal::GameKey { game, key_id }),
            KeyMatch::Revoked { key_id } => {
                tracing::info!(key_id, "a revoked API key was presented");
                Err(GatewayError::Unauthenticated("revoked API key".into()))
            }
            KeyMatch::Unknown => Err(GatewayError::Unauthenticated("unknown API key".into())),
        }
    }

    /// Identifies the caller from the request headers (401 when it cannot).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, GatewayError> {
        match presented(headers)? {
            None => Err(GatewayError::Unauthenticated(
                "missing credentials: send 'Authorization: Bearer <API key or token>' or 'X-API-Key: <key>'".into(),
            )),
            Some(Credential::ApiKey(key)) => self.by_key(key),
            Some(Credential::BasicUser(user)) => self.by_key(user.trim()),
            Some(Credential::Jwt(token)) => match &self.jwt {
                Some(verifier) => verifier.verify(token),
                None => Err(GatewayError::Unauthenticated("bearer tokens are not accepted: no JWKS configured".into())),
            },
        }
    }
}

/// Identifies the caller by API key alone (no tokens configured).
pub fn authenticate(headers: &HeaderMap, keys: &ApiKeys) -> Result<Principal, GatewayError> {
    Authenticator::new(keys.clone(), None, None).authenticate(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn g(s: &str) -> GameId {
        GameId::parse(s).unwrap()
    }

    fn keys() -> ApiKeys {
        ApiKeys::with_revoked(
            &[
                ApiKeyConfig { game_id: g("space-race"), key: "k1".into() },
                ApiKeyConfig { game_id: g("space-race"), key: "k1-rotated".into() },
                ApiKeyConfig { game_id: g("farm"), key: "k2".into() },
                ApiKeyConfig { game_id: g("farm"), key: "".into() },
                ApiKeyConfig { game_id: g("farm"), key: format!("sha256:{}", hex::encode(hash_key("hashed-key"))) },
                ApiKeyConfig { game_id: g("farm"), key: "old-leaked".into() },
            ],
            &[key_id("old-leaked")[..10].to_string(), "abc".into()],
        )
    }

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name.parse().unwrap(), HeaderValue::from_str(value).unwrap());
        h
    }

    fn principal(game: &str, key: &str) -> Principal {
        Principal::GameKey { game: g(game), key_id: key_id(key) }
    }

    #[test]
    fn several_keys_per_game_are_accepted_by_any_header() {
        let k = keys();
        assert_eq!(authenticate(&headers("authorization", "Bearer k1"), &k).unwrap(), principal("space-race", "k1"));
        assert_eq!(
            authenticate(&headers("x-api-key", "k1-rotated"), &k).unwrap(),
            principal("space-race", "k1-rotated")
        );
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("k2:"));
        assert_eq!(authenticate(&headers("authorization", &basic), &k).unwrap(), principal("farm", "k2"));
        assert_eq!(authenticate(&headers("x-api-key", "hashed-key"), &k).unwrap(), principal("farm", "hashed-key"));
    }

    #[test]
    fn missing_unknown_empty_and_revoked_keys_are_unauthenticated() {
        let k = keys();
        let reason = |h: HeaderMap| match authenticate(&h, &k) {
            Err(GatewayError::Unauthenticated(r)) => r,
            other => panic!("{other:?}"),
        };
        assert!(reason(HeaderMap::new()).contains("missing"));
        assert!(reason(headers("x-api-key", "nope")).contains("unknown"));
        assert!(reason(headers("x-api-key", "")).contains("empty"));
        assert!(reason(headers("authorization", "Digest k1")).contains("unsupported"));
        assert!(reason(headers("x-api-key", "old-leaked")).contains("revoked"));
        assert!(reason(headers("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x")).contains("no JWKS"));
    }

    #[test]
    fn keys_are_stored_only_as_hashes() {
        let k = keys();
        let debug = format!("{k:?} {:?}", Authenticator::new(k.clone(), None, Some("metrics-secret")));
        assert!(!debug.contains("k1") && !debug.contains("metrics-secret"), "{debug}");
        assert!(k.keys.iter().all(|s| s.hash != [0; 32]));
    }

    #[test]
    fn the_dev_analyst_token_is_an_analyst_and_nothing_more() {
        let auth = Authenticator::new(ApiKeys::default(), None, None).with_dev_analyst_token("dev-analyst-token-0001");
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Bearer dev-analyst-token-0001".parse().unwrap());
        let p = auth.authenticate(&headers).unwrap();
        assert_eq!(
            p,
            Principal::Person {
                subject: "dev-analyst-token".into(),
                roles: vec![Role::Analyst],
                games: GameScope::All
            }
        );
        assert!(p.ingest_game().is_err());
        headers.insert(AUTHORIZATION, "Bearer dev-analyst-token-0002".parse().unwrap());
        assert!(auth.authenticate(&headers).is_err());
    }

    #[test]
    fn the_dev_compliance_token_is_compliance_staff_and_nothing_more() {
        let auth = Authenticator::new(ApiKeys::default(), None, None)
            .with_dev_analyst_token("dev-analyst-token-0001")
            .with_dev_compliance_token("dev-compliance-token-0001");
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Bearer dev-compliance-token-0001".parse().unwrap());
        let p = auth.authenticate(&headers).unwrap();
        let expected = Principal::Person {
            subject: "dev-compliance-token".into(),
            roles: vec![Role::Compliance],
            games: GameScope::All,
        };
        assert_eq!(p, expected);
        assert!(authorize(&p, Action::ReadAnalytics(&g("farm"))).is_err(), "no analyst");
        assert!(authorize(&p, Action::Privacy(&g("farm"))).is_ok());
        let none = Authenticator::new(ApiKeys::default(), None, None).with_dev_compliance_token("  ");
        assert!(none.authenticate(&headers).is_err(), "an empty token configures none");
    }

    #[test]
    fn the_metrics_token_is_a_principal_of_its_own() {
        let auth = Authenticator::new(keys(), None, Some("metrics-secret"));
        let p = auth.authenticate(&headers("authorization", "Bearer metrics-secret")).unwrap();
        assert_eq!(p, Principal::MetricsScraper);
    }

    fn person(roles: &[Role]) -> Principal {
        Principal::Person { subject: "someone".into(), roles: roles.to_vec(), games: GameScope::All }
    }

    fn person_of(roles: &[Role], games: &[&str]) -> Principal {
        Principal::Person {
            subject: "someone".into(),
            roles: roles.to_vec(),
            games: GameScope::Only(games.iter().map(|n| g(n)).collect()),
        }
    }

    #[test]
    fn the_games_claim_parses_lists_strings_and_the_wildcard() {
        use serde_json::json;
        let only = |names: &[&str]| GameScope::Only(names.iter().map(|n| g(n)).collect());
        assert_eq!(GameScope::from_claim(Some(&json!(["farm", "space-race", "farm"]))), only(&["farm", "space-race"]));
        assert_eq!(GameScope::from_claim(Some(&json!("space-race farm,"))), only(&["farm", "space-race"]));
        assert_eq!(GameScope::from_claim(Some(&json!("*"))), GameScope::All);
        assert_eq!(GameScope::from_claim(Some(&json!(["farm", "*"]))), GameScope::All);
        // Not game ids, or not a list: no game.
        assert_eq!(GameScope::from_claim(Some(&json!(["Bad Game", 7]))), only(&[]));
        assert_eq!(GameScope::from_claim(Some(&json!({"farm": true}))), only(&[]));
        assert_eq!(GameScope::from_claim(None), only(&[]));
    }

    /// Every game-bound action, for people scoped to one game, to none and to every game.
    #[test]
    fn people_act_only_on_the_games_of_their_token() {
        let (space, farm) = (g("space-race"), g("farm"));
        let all_roles = [Role::Analyst, Role::Compliance];
        for (action, other) in [
            (Action::ReadPlayer(&space), Action::ReadPlayer(&farm)),
            (Action::ReadAnalytics(&space), Action::ReadAnalytics(&farm)),
            (Action::Privacy(&space), Action::Privacy(&farm)),
        ] {
            for p in [person_of(&all_roles, &["space-race"]), person_of(&[Role::Admin], &["space-race", "x"])] {
                assert!(authorize(&p, action).is_ok(), "{p:?} {action:?}");
                match authorize(&p, other) {
                    Err(GatewayError::Forbidden(reason)) => {
                        assert!(reason.contains("may not access game 'farm'"), "{reason}");
                        assert!(reason.contains("space-race"), "names the token's games: {reason}");
                    }
                    other => panic!("{p:?} reached farm: {other:?}"),
                }
            }
            match authorize(&person_of(&[Role::Admin], &[]), action) {
                Err(GatewayError::Forbidden(reason)) => assert!(reason.contains("names no game"), "{reason}"),
                other => panic!("a token without games reached a game: {other:?}"),
            }
            let everything = person(&[Role::Admin]);
            assert!(authorize(&everything, action).is_ok() && authorize(&everything, other).is_ok());
        }
        // The audit listing is allowed to every scope; its entries are filtered by game_scope.
        assert!(authorize(&person_of(&[Role::Compliance], &[]), Action::PrivacyAudit).is_ok());
        assert_eq!(person_of(&[Role::Compliance], &["farm"]).game_scope(), GameScope::Only(vec![farm.clone()]));
        assert_eq!(principal("farm", "k2").game_scope(), GameScope::Only(vec![farm]));
        assert_eq!(Principal::MetricsScraper.game_scope(), GameScope::Only(vec![]));
    }

    /// Every principal against every action: the whole table, cell by cell.
    #[test]
    fn every_principal_is_allowed_exactly_the_actions_of_the_table() {
        let own = g("space-race");
        let other = g("farm");
        let key = principal("space-race", "k1");
        let actions: [(&str, Action<'_>); 10] = [
            ("ingest", Action::Ingest),
            ("player-own", Action::ReadPlayer(&own)),
            ("player-other", Action::ReadPlayer(&other)),
            ("analytics-own", Action::ReadAnalytics(&own)),
            ("analytics-other", Action::ReadAnalytics(&other)),
            ("privacy-own", Action::Privacy(&own)),
            ("privacy-other", Action::Privacy(&other)),
            ("metrics", Action::ReadMetrics),
            ("docs", Action::ReadApiDocs),
            ("status", Action::ReadStatus),
        ];
        // (principal, names of the actions it may perform)
        let expectations: Vec<(Principal, &[&str])> = vec![
            (key.clone(), &["ingest", "docs"]),
            (
                person(&[Role::Analyst]),
                &["player-own", "player-other", "analytics-own", "analytics-other", "docs", "status"],
            ),
            (person(&[Role::Compliance]), &["privacy-own", "privacy-other", "docs", "status"]),
            (
                person(&[Role::Admin]),
                &[
                    "player-own",
                    "player-other",
                    "analytics-own",
                    "analytics-other",
                    "privacy-own",
                    "privacy-other",
                    "metrics",
                    "docs",
                    "status",
                ],
            ),
            (
                person(&[Role::Analyst, Role::Compliance]),
                &[
                    "player-own",
                    "player-other",
                    "analytics-own",
                    "analytics-other",
                    "privacy-own",
                    "privacy-other",
                    "docs",
                    "status",
                ],
            ),
            (person(&[]), &[]),
            (Principal::MetricsScraper, &["metrics", "status"]),
        ];
        for (p, allowed) in &expectations {
            for (name, action) in actions {
                let result = authorize(p, action);
                if allowed.contains(&name) {
                    assert!(result.is_ok(), "{p:?} should be allowed {name}: {result:?}");
                } else {
                    assert!(
                        matches!(result, Err(GatewayError::Forbidden(_))),
                        "{p:?} should be refused {name}: {result:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn only_game_keys_name_an_ingest_game() {
        assert_eq!(principal("farm", "k2").ingest_game().unwrap(), &g("farm"));
        assert!(person(&[Role::Admin]).ingest_game().is_err());
        assert!(Principal::MetricsScraper.ingest_game().is_err());
    }

    #[test]
    fn roles_parse_case_insensitively_and_unknown_ones_are_none() {
        for role in Role::ALL {
            assert_eq!(Role::parse(&role.as_str().to_uppercase()), Some(role));
        }
        assert_eq!(Role::parse("superuser"), None);
    }
}
