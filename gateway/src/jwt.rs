//! The OAuth2 resource server: JWT bearer tokens of people, checked against a JWKS.
//!
//! A token is accepted when its signature verifies with the JWKS key named by its `kid`
//! (or the only key, when the set has one and the token names none), with an asymmetric
//! algorithm matching that key (RS*, PS*, ES256/384, EdDSA: never a shared-secret `HS*` key,
//! so a public key cannot be turned into an HMAC secret), when `iss` and `aud` are the
//! configured ones and `exp` is in the future (with a small leeway for clock skew). Roles come
//! from a configurable claim (default `roles`; a dotted path such as `realm_access.roles`
//! reaches into nested objects), given as an array or a space/comma separated string; unknown
//! role names are ignored. The games the person may act on come from another claim (default
//! `games`; a dotted path too): an array of game ids or a space/comma separated string, `*`
//! for every game ([`GameScope`]). A token without it is valid but reaches no game: every
//! game-bound route answers it 403.
//!
//! The JWKS comes from a file (read at start) or a URL (fetched at start, refreshed
//! periodically by [`Jwks::spawn_refresh`]; a failed refresh keeps the previous keys).
//!
//! A client sends the same token with every request, and checking a signature costs tens of
//! microseconds: most of a warm query's CPU. So a verified token is remembered (by its
//! SHA-256) for at most [`VERIFIED_TTL`], and used again only while it is unexpired (same
//! leeway) and the key set is the one it was verified with: a JWKS refresh that changes the
//! keys forgets every remembered token.

use crate::auth::{GameScope, Principal, Role};
use crate::error::GatewayError;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The longest a verified token is remembered.
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// Verified tokens remembered at once (one per active person or service, typically few).
const VERIFIED_CAPACITY: u64 = 10_000;

/// What a token must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    pub issuer: String,
    pub audience: String,
    /// The claim holding the roles; a dotted path reaches into nested objects.
    pub roles_claim: String,
    /// The claim holding the games the token may act on (`["space-race"]`, or `"*"`); a
    /// dotted path reaches into nested objects.
    pub games_claim: String,
    /// Allowed clock skew on `exp` and `nbf`.
    pub leeway: Duration,
}

impl Default for JwtConfig {
    /// No issuer or audience; the claims and leeway of `[auth]` in config/default.toml.
    fn default() -> Self {
        #[derive(serde::Deserialize)]
        struct Auth {
            roles_claim: String,
            games_claim: String,
            jwt_leeway_secs: u64,
        }
        let auth: Auth = gm_schemas::defaults::section("auth");
        Self {
            issuer: String::new(),
            audience: String::new(),
            roles_claim: auth.roles_claim,
            games_claim: auth.games_claim,
            leeway: Duration::from_secs(auth.jwt_leeway_secs),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("reading the JWKS file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("fetching the JWKS from {url}: {error}")]
    Fetch { url: String, error: String },
    #[error("the JWKS is not a valid key set: {0}")]
    Invalid(String),
}

/// The current key set, shared by the verifier and the refresh task.
#[derive(Debug, Clone)]
pub struct Jwks {
    keys: Arc<RwLock<JwkSet>>,
    /// Bumped by every [`Jwks::replace`] that changes the keys.
    generation: Arc<AtomicU64>,
}

impl Jwks {
    pub fn from_json(text: &str) -> Result<Self, JwksError> {
        let set: JwkSet = serde_json::from_str(text).map_err(|e| JwksError::Invalid(e.to_string()))?;
        Ok(Self::with_keys(set))
    }

    fn with_keys(set: JwkSet) -> Self {
        Self { keys: Arc::new(RwLock::new(set)), generation: Arc::new(AtomicU64::new(0)) }
    }

    pub fn load_file(path: &Path) -> Result<Self, JwksError> {
        Ok(Self::with_keys(Self::read_set(path)?))
    }

    /// The key set in the file at `path` (to [`replace`](Self::replace) the current one).
    pub fn read_set(path: &Path) -> Result<JwkSet, JwksError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| JwksError::Read { path: path.display().to_string(), error })?;
        serde_json::from_str(&text).map_err(|e| JwksError::Invalid(e.to_string()))
    }

    async fn download(url: &str) -> Result<JwkSet, JwksError> {
        let fetch_error = |error: String| JwksError::Fetch { url: url.to_string(), error };
        let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
        let mut response = client.get(url).send().await.map_err(|e| fetch_error(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fetch_error(format!("HTTP {}", response.status())));
        }
        let body = response.body().limit(1024 * 1024).await.map_err(|e| fetch_error(e.to_string()))?;
        serde_json::from_slice(&body).map_err(|e| JwksError::Invalid(e.to_string()))
    }

    /// Fetches the set from `url` (at start: a failure stops the start).
    pub async fn fetch(url: &str) -> Result<Self, JwksError> {
        Ok(Self::with_keys(Self::download(url).await?))
    }

    /// Refetches the set every `every` on the current actix/tokio runtime; a failed fetch keeps
    /// the previous keys and is logged.
    pub fn spawn_refresh(&self, url: String, every: Duration) -> tokio::task::JoinHandle<()> {
        let jwks = self.clone();
        actix_web::rt::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match Self::download(&url).await {
                    Ok(set) => jwks.replace(set),
                    Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys"),
                }
            }
        })
    }

    pub fn replace(&self, set: JwkSet) {
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if *keys != set {
            *keys = set;
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn key_for(&self, kid: Option<&str>) -> Option<Jwk> {
        let set = self.keys.read().unwrap_or_else(|e| e.into_inner());
        match kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        }
    }
}

/// The algorithms a key may verify: asymmetric ones of its own type only.
fn algorithms_for(jwk: &Jwk) -> Vec<Algorithm> {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => vec![],
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
        // Shared secrets (`oct`) never verify tokens here.
        _ => vec![],
    }
}

/// A token that verified: who it names, until when, under which key set.
#[derive(Debug, Clone)]
struct Verified {
    principal: Principal,
    expires_at: i64,
    generation: u64,
}

/// Checks bearer tokens of people.
#[derive(Clone)]
pub struct JwtVerifier {
    config: JwtConfig,
    jwks: Jwks,
    verified: moka::sync::Cache<[u8; 32], Verified>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier").field("config", &self.config).field("jwks", &self.jwks).finish_non_exhaustive()
    }
}

fn unauthenticated(reason: impl Into<String>) -> GatewayError {
    GatewayError::Unauthenticated(reason.into())
}

impl JwtVerifier {
    pub fn new(config: JwtConfig, jwks: Jwks) -> Self {
        let verified = moka::sync::Cache::builder().max_capacity(VERIFIED_CAPACITY).time_to_live(VERIFIED_TTL).build();
        Self { config, jwks, verified }
    }

    /// Verifies `token`; 401 with the reason when it is not acceptable.
    pub fn verify(&self, token: &str) -> Result<Principal, GatewayError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let generation = self.jwks.generation();
        let now = chrono::Utc::now().timestamp();
        let leeway = self.config.leeway.as_secs() as i64;
        if let Some(known) = self.verified.get(&digest) {
            if known.generation == generation && now < known.expires_at.saturating_add(leeway) {
                return Ok(known.principal);
            }
            self.verified.invalidate(&digest);
        }
        let (principal, expires_at) = self.verify_signature(token)?;
        self.verified.insert(digest, Verified { principal: principal.clone(), expires_at, generation });
        Ok(principal)
    }

    /// The full check: signature, algorithm, issuer, audience, times, roles.
    fn verify_signature(&self, token: &str) -> Result<(Principal, i64), GatewayError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| unauthenticated(format!("malformed token: {e}")))?;
        let jwk = self.jwks.key_for(header.kid.as_deref()).ok_or_else(|| match &header.kid {
            Some(_) => unauthenticated("token signed by an unknown key (kid)"),
            None => unauthenticated("token names no key (kid) and the JWKS has several"),
        })?;
        let algorithms = algorithms_for(&jwk);
        if !algorithms.contains(&header.alg) {
            return Err(unauthenticated(format!("algorithm {:?} is not accepted for this key", header.alg)));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| unauthenticated(format!("unusable JWKS key: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = algorithms;
        validation.leeway = self.config.leeway.as_secs();
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind::*;
            unauthenticated(match e.kind() {
                ExpiredSignature => "token expired".to_string(),
                ImmatureSignature => "token not valid yet (nbf)".to_string(),
                InvalidIssuer => "token from another issuer".to_string(),
                InvalidAudience => "token for another audience".to_string(),
                InvalidSignature => "token signature does not verify".to_string(),
                MissingRequiredClaim(c) => format!("token lacks the '{c}' claim"),
                other => format!("invalid token: {other:?}"),
            })
        })?;
        let subject = data.claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_string();
        let roles = roles_from(&data.claims, &self.config.roles_claim);
        let games = GameScope::from_claim(claim_at(&data.claims, &self.config.games_claim));
        // `exp` is required and was checked, so it is a number here.
        let expires_at = data.claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        Ok((Principal::Person { subject, roles, games }, expires_at))
    }
}

/// The claim at `path` (dotted: `realm_access.roles`).
fn claim_at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    let mut value = claims;
    for part in path.split('.') {
        value = value.get(part)?;
    }
    Some(value)
}

/// The known roles in the claim at `path` (dotted), deduplicated and sorted.
fn roles_from(claims: &Value, path: &str) -> Vec<Role> {
    let Some(value) = claim_at(claims, path) else { return Vec::new() };
    let names: Vec<&str> = match value {
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        Value::String(s) => s.split([' ', ',']).collect(),
        _ => Vec::new(),
    };
    let mut roles: Vec<Role> = names.into_iter().filter_map(Role::parse).collect();
    roles.sort();
    roles.dedup();
    roles
}

/// Test tokens: an Ed25519 key pair generated at run time (never a committed private key),
/// its public JWKS, and tokens signed with it.
#[cfg(feature = "test-support")]
pub mod testing {
    use base64::Engine as _;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use ring::signature::KeyPair as _;
    use serde_json::{json, Value};

    pub const ISSUER: &str = "https://issuer.test.gamemetrics";
    pub const AUDIENCE: &str = "gamemetrics-api";

    pub struct TestIssuer {
        kid: String,
        encoding: EncodingKey,
        public: Vec<u8>,
    }

    impl TestIssuer {
        pub fn generate(kid: &str) -> Self {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("generate an Ed25519 key");
            let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse the generated key");
            Self {
                kid: kid.to_string(),
                encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
                public: pair.public_key().as_ref().to_vec(),
            }
        }

        /// The public key as a one-key JWKS.
        pub fn jwks(&self) -> Value {
            json!({"keys": [{
                "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": self.kid,
                "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.public),
            }]})
        }

        /// Signs arbitrary claims.
        pub fn sign(&self, claims: &Value) -> String {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(self.kid.clone());
            jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign a test token")
        }

        /// A token of [`ISSUER`] for [`AUDIENCE`] with `roles` on every game (`games: "*"`),
        /// valid for an hour.
        pub fn token(&self, subject: &str, roles: &[&str]) -> String {
            self.token_for_games(subject, roles, &["*"])
        }

        /// The same, limited to `games` (the `games` claim; `["*"]` for every game).
        pub fn token_for_games(&self, subject: &str, roles: &[&str], games: &[&str]) -> String {
            let now = chrono::Utc::now().timestamp();
            self.sign(&json!({"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600,
                              "roles": roles, "games": games}))
        }
    }
}

#[cfg(all(test, feature = "test-support"))]
mod tests {
    use super::testing::{TestIssuer, AUDIENCE, ISSUER};
    use super::*;
    use serde_json::json;

    fn verifier(issuer: &TestIssuer) -> JwtVerifier {
        let config = JwtConfig { issuer: ISSUER.into(), audience: AUDIENCE.into(), ..JwtConfig::default() };
        JwtVerifier::new(config, Jwks::from_json(&issuer.jwks().to_string()).unwrap())
    }

    fn reason(result: Result<Principal, GatewayError>) -> String {
        match result {
            Err(GatewayError::Unauthenticated(r)) => r,
            other => panic!("expected 401, got {other:?}"),
        }
    }

    fn claims(overrides: Value) -> Value {
        let now = chrono::Utc::now().timestamp();
        let mut c = json!({"sub": "ana", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "roles": ["analyst"]});
        for (k, v) in overrides.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    #[test]
    fn a_remembered_token_is_refused_once_expired() {
        let issuer = TestIssuer::generate("k1");
        let config = JwtConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway: Duration::ZERO,
            ..JwtConfig::default()
        };
        let v = JwtVerifier::new(config, Jwks::from_json(&issuer.jwks().to_string()).unwrap());
        let token = issuer.sign(&claims(json!({"exp": chrono::Utc::now().timestamp() + 1})));
        assert!(v.verify(&token).is_ok());
        assert!(v.verify(&token).is_ok(), "remembered");
        std::thread::sleep(Duration::from_millis(2100));
        assert!(reason(v.verify(&token)).contains("expired"), "the remembered verification ends with the token");
    }

    #[test]
    fn a_jwks_change_forgets_remembered_tokens() {
        let (old, new) = (TestIssuer::generate("k1"), TestIssuer::generate("k2"));
        let v = verifier(&old);
        let token = old.sign(&claims(json!({})));
        assert!(v.verify(&token).is_ok());
        // The same set again (a refresh that changed nothing) keeps it.
        v.jwks.replace(serde_json::from_value(old.jwks()).unwrap());
        assert!(v.verify(&token).is_ok());
        // The key was rotated out: the remembered token goes with it.
        v.jwks.replace(serde_json::from_value(new.jwks()).unwrap());
        assert!(reason(v.verify(&token)).contains("unknown key"));
        assert!(v.verify(&new.sign(&claims(json!({})))).is_ok());
    }

    #[test]
    fn a_valid_token_gives_a_person_with_its_known_roles() {
        let issuer = TestIssuer::generate("k1");
        let token = issuer.sign(&claims(
            json!({"roles": ["Analyst", "compliance", "superuser", "analyst"], "games": ["farm", "space-race"]}),
        ));
        let p = verifier(&issuer).verify(&token).unwrap();
        let games = GameScope::Only(vec![
            gm_schemas::GameId::parse("farm").unwrap(),
            gm_schemas::GameId::parse("space-race").unwrap(),
        ]);
        assert_eq!(p, Principal::Person { subject: "ana".into(), roles: vec![Role::Analyst, Role::Compliance], games });
    }

    #[test]
    fn games_come_from_a_configurable_claim_and_default_to_none() {
        let issuer = TestIssuer::generate("k1");
        let games_of = |v: &JwtVerifier, token: &str| match v.verify(token).unwrap() {
            Principal::Person { games, .. } => games,
            other => panic!("{other:?}"),
        };
        let v = verifier(&issuer);
        assert_eq!(games_of(&v, &issuer.sign(&claims(json!({})))), GameScope::Only(vec![]), "no claim, no game");
        assert_eq!(games_of(&v, &issuer.sign(&claims(json!({"games": "*"})))), GameScope::All);
        assert_eq!(games_of(&v, &issuer.token("ana", &["analyst"])), GameScope::All, "test tokens reach every game");
        let config = JwtConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            games_claim: "gm.games".into(),
            ..JwtConfig::default()
        };
        let nested = JwtVerifier::new(config, Jwks::from_json(&issuer.jwks().to_string()).unwrap());
        let token = issuer.sign(&claims(json!({"games": "*", "gm": {"games": ["farm"]}})));
        assert_eq!(games_of(&nested, &token), GameScope::Only(vec![gm_schemas::GameId::parse("farm").unwrap()]));
    }

    #[test]
    fn expired_forged_wrong_issuer_and_wrong_audience_tokens_are_refused() {
        let issuer = TestIssuer::generate("k1");
        let v = verifier(&issuer);
        let past = chrono::Utc::now().timestamp() - 3600;
        assert!(reason(v.verify(&issuer.sign(&claims(json!({"exp": past}))))).contains("expired"));
        assert!(reason(v.verify(&issuer.sign(&claims(json!({"iss": "https://evil"}))))).contains("issuer"));
        assert!(reason(v.verify(&issuer.sign(&claims(json!({"aud": "other-api"}))))).contains("audience"));
        assert!(reason(v.verify(&issuer.sign(&claims(json!({"exp": null}))))).contains("exp"));
        // Signed by another key that claims the trusted key's id.
        let forger = TestIssuer::generate("k1");
        assert!(reason(v.verify(&forger.sign(&claims(json!({}))))).contains("signature"));
        // A valid token with its payload swapped for one granting admin.
        let good = issuer.sign(&claims(json!({})));
        let admin = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            claims(json!({"roles": ["admin"]})).to_string(),
        );
        let parts: Vec<&str> = good.split('.').collect();
        let tampered = format!("{}.{admin}.{}", parts[0], parts[2]);
        assert!(reason(v.verify(&tampered)).contains("signature"));
        // Unknown kid, and an HS256 token using the public key as a secret.
        assert!(reason(v.verify(&TestIssuer::generate("k2").sign(&claims(json!({}))))).contains("unknown key"));
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let x = issuer.jwks()["keys"][0]["x"].as_str().unwrap().to_string();
        let hs =
            jsonwebtoken::encode(&header, &claims(json!({})), &jsonwebtoken::EncodingKey::from_secret(x.as_bytes()))
                .unwrap();
        assert!(reason(v.verify(&hs)).contains("not accepted"));
        assert!(reason(v.verify("eyJ.not.atoken")).contains("malformed"));
    }

    #[test]
    fn roles_come_from_a_configurable_possibly_nested_claim() {
        let issuer = TestIssuer::generate("k1");
        let config = JwtConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            roles_claim: "realm_access.roles".into(),
            ..JwtConfig::default()
        };
        let v = JwtVerifier::new(config, Jwks::from_json(&issuer.jwks().to_string()).unwrap());
        let token = issuer.sign(&claims(json!({"roles": ["admin"], "realm_access": {"roles": "compliance analyst"}})));
        let Principal::Person { roles, .. } = v.verify(&token).unwrap() else { panic!() };
        assert_eq!(roles, vec![Role::Analyst, Role::Compliance]);
    }

    #[test]
    fn a_replaced_key_set_takes_effect_at_once() {
        let old = TestIssuer::generate("old");
        let new = TestIssuer::generate("new");
        let v = verifier(&old);
        let token = new.token("ana", &["analyst"]);
        assert!(v.verify(&token).is_err());
        v.jwks.replace(serde_json::from_value(new.jwks()).unwrap());
        assert!(v.verify(&token).is_ok());
        assert!(v.verify(&old.token("ana", &["analyst"])).is_err());
    }
}
