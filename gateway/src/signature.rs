//! The optional HMAC-SHA256 signature of a request, bound to the time it was sent.
//!
//! When a game has a signing secret, each ingest request must carry
//!
//! * `X-GM-Timestamp: <Unix time in seconds>`, the time the client signed it, and
//! * `X-GM-Signature: <HMAC-SHA256(secret, timestamp + "." + raw body)>`, hex or base64
//!   (standard or URL-safe, padded or not), over the body exactly as sent: compressed when
//!   it is gzip.
//!
//! It is checked before the body is inflated or parsed, so an unsigned request costs no
//! decompression. A request whose timestamp is more than [`TOLERANCE`] from the gateway's
//! clock is refused, and so is a signature already used within that window: a captured
//! request cannot be replayed, neither later nor at once. Used signatures are remembered
//! in Redis when it is configured (every gateway sees them; [`gm_ports::SharedClaims`]) and
//! in this process otherwise, and while Redis cannot answer. A client therefore signs each
//! attempt when it sends it: a retry carries a fresh timestamp and signature (its events
//! keep their ids, so the retry still counts once). Several secrets per game may be active
//! at once (rotation with overlap).

use crate::error::GatewayError;
use actix_web::http::header::HeaderMap;
use base64::Engine as _;
use gm_ports::SharedClaims;
use gm_schemas::GameId;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub const HEADER: &str = "x-gm-signature";
pub const TIMESTAMP_HEADER: &str = "x-gm-timestamp";

/// How far a request's `X-GM-Timestamp` may be from the gateway's clock, either way.
pub const TOLERANCE: Duration = Duration::from_secs(300);

/// How long a used signature is remembered: a request signed at `t` is accepted until
/// `t + TOLERANCE`, and the gateway that saw it first may have run up to `TOLERANCE` behind.
const REMEMBER_FOR: Duration = Duration::from_secs(2 * 300 + 60);

/// At most this many used signatures remembered in this process (about 100 bytes each).
const LOCAL_CAPACITY: u64 = 500_000;

/// A secret string whose `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One signing secret of one game, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningSecret {
    pub game_id: GameId,
    pub secret: Secret,
}

/// The signing secrets of the games that have one, and the signatures already used.
#[derive(Clone)]
pub struct SigningSecrets {
    /// Replaced as a whole by [`SigningSecrets::replace`] (rotation without a restart); a
    /// clone shares it.
    by_game: Arc<RwLock<Arc<SecretsByGame>>>,
    /// Shared by every gateway (Redis), when configured.
    shared: Option<Arc<dyn SharedClaims>>,
    /// This process's memory of used signatures: alone without Redis, and the fallback
    /// while Redis cannot answer.
    local: moka::sync::Cache<Vec<u8>, ()>,
}

impl Default for SigningSecrets {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl fmt::Debug for SigningSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningSecrets")
            .field("games", &self.current().len())
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

/// The bytes a client signs: the timestamp as sent, a dot, the raw body.
fn mac_of(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// HMAC-SHA256 of `timestamp` + "." + `body` with `secret`, hex: what a client computes
/// and sends as `X-GM-Signature`, with `timestamp` (Unix seconds) as `X-GM-Timestamp`.
pub fn sign_hex(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    hex::encode(mac_of(secret, &timestamp.to_string(), body).finalize().into_bytes())
}

fn decode_signature(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() == 64 {
        if let Ok(bytes) = hex::decode(text) {
            return Some(bytes);
        }
    }
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD].iter().find_map(|e| e.decode(text).ok())
}

fn unauthenticated(reason: impl Into<String>) -> GatewayError {
    GatewayError::Unauthenticated(reason.into())
}

type SecretsByGame = HashMap<GameId, Vec<Vec<u8>>>;

fn by_game(secrets: &[SigningSecret]) -> SecretsByGame {
    let mut by_game: SecretsByGame = HashMap::new();
    for s in secrets.iter().filter(|s| !s.secret.0.is_empty()) {
        by_game.entry(s.game_id.clone()).or_default().push(s.secret.0.as_bytes().to_vec());
    }
    by_game
}

impl SigningSecrets {
    pub fn new(secrets: &[SigningSecret]) -> Self {
        let local = moka::sync::Cache::builder().max_capacity(LOCAL_CAPACITY).time_to_live(REMEMBER_FOR).build();
        Self { by_game: Arc::new(RwLock::new(Arc::new(by_game(secrets)))), shared: None, local }
    }

    /// From now on, exactly these secrets are accepted (for this value and its clones).
    pub fn replace(&self, secrets: &[SigningSecret]) {
        *self.by_game.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(by_game(secrets));
    }

    fn current(&self) -> Arc<SecretsByGame> {
        self.by_game.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Remembers used signatures in `shared` (Redis), so every gateway refuses a replay.
    pub fn with_shared_claims(mut self, shared: Arc<dyn SharedClaims>) -> Self {
        self.shared = Some(shared);
        self
    }

    pub fn requires_signature(&self, game: &GameId) -> bool {
        self.current().contains_key(game)
    }

    /// Checks the timestamp and signature of `raw_body` for `game` against the gateway's
    /// clock (401 when the game has a secret and either is missing, wrong, out of the
    /// window, or the signature was used before; nothing to check otherwise).
    pub async fn verify(&self, game: &GameId, headers: &HeaderMap, raw_body: &[u8]) -> Result<(), GatewayError> {
        self.verify_at(game, headers, raw_body, chrono::Utc::now().timestamp()).await
    }

    /// [`verify`](Self::verify) with the gateway's clock at `now` (Unix seconds).
    pub async fn verify_at(
        &self,
        game: &GameId,
        headers: &HeaderMap,
        raw_body: &[u8],
        now: i64,
    ) -> Result<(), GatewayError> {
        let current = self.current();
        let Some(secrets) = current.get(game) else {
            return Ok(());
        };
        let required = || {
            unauthenticated(format!(
                "game '{game}' requires signed requests: X-GM-Timestamp = Unix seconds, \
                 X-GM-Signature = HMAC-SHA256(secret, timestamp + \".\" + raw body)"
            ))
        };
        let presented = headers.get(HEADER).ok_or_else(required)?;
        let timestamp = headers.get(TIMESTAMP_HEADER).ok_or_else(required)?;
        let timestamp = timestamp
            .to_str()
            .ok()
            .filter(|t| t.len() <= 12 && !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| unauthenticated("X-GM-Timestamp must be Unix time in whole seconds"))?;
        let signed_at: i64 = timestamp.parse().map_err(|_| unauthenticated("X-GM-Timestamp is out of range"))?;
        let skew = (now - signed_at).unsigned_abs();
        if skew > TOLERANCE.as_secs() {
            return Err(unauthenticated(format!(
                "X-GM-Timestamp is {skew} s from the gateway's clock (at most {} s allowed): \
                 sign each request when it is sent, with a synchronised clock",
                TOLERANCE.as_secs()
            )));
        }
        let presented = presented
            .to_str()
            .ok()
            .and_then(decode_signature)
            .ok_or_else(|| unauthenticated("X-GM-Signature is neither hex nor base64"))?;
        // `verify_slice` compares in constant time; every secret is tried.
        let mut valid = false;
        for secret in secrets {
            valid |= mac_of(secret, timestamp, raw_body).verify_slice(&presented).is_ok();
        }
        if !valid {
            return Err(unauthenticated("X-GM-Signature does not match the timestamp and body"));
        }
        if !self.first_use(game, &presented).await {
            return Err(unauthenticated(
                "this signature was used before (a replay): sign each attempt again with a fresh X-GM-Timestamp",
            ));
        }
        Ok(())
    }

    /// Records a valid signature as used; `false` when it already was. Redis first; this
    /// process's memory as well, so that a replay through this gateway is caught while
    /// Redis is down.
    async fn first_use(&self, game: &GameId, signature: &[u8]) -> bool {
        let mut key = Vec::with_capacity(game.as_str().len() + 1 + signature.len());
        key.extend_from_slice(game.as_str().as_bytes());
        key.push(b':');
        key.extend_from_slice(signature);
        let locally_new = self.local.entry(key).or_insert(()).is_fresh();
        match &self.shared {
            Some(shared) => {
                let name = format!("sig:{game}:{}", hex::encode(signature));
                match shared.claim(&name, REMEMBER_FOR).await {
                    Ok(first) => first && locally_new,
                    Err(e) => {
                        tracing::debug!(error = %e, "used signatures: redis unavailable; this gateway's memory only");
                        locally_new
                    }
                }
            }
            None => locally_new,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;
    use gm_ports::StoreError;
    use std::sync::Mutex;

    const NOW: i64 = 1_790_000_000;

    fn game() -> GameId {
        GameId::parse("space-race").unwrap()
    }

    fn secrets() -> SigningSecrets {
        SigningSecrets::new(&[
            SigningSecret { game_id: game(), secret: Secret("s3cret".into()) },
            SigningSecret { game_id: game(), secret: Secret("rotated".into()) },
        ])
    }

    fn signed(timestamp: i64, signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER.parse().unwrap(), HeaderValue::from_str(signature).unwrap());
        h.insert(TIMESTAMP_HEADER.parse().unwrap(), HeaderValue::from_str(&timestamp.to_string()).unwrap());
        h
    }

    fn reason(r: Result<(), GatewayError>) -> String {
        match r {
            Err(GatewayError::Unauthenticated(reason)) => reason,
            other => panic!("expected 401, got {other:?}"),
        }
    }

    #[actix_web::test]
    async fn hex_and_base64_signatures_of_either_secret_verify() {
        let s = secrets();
        let body = b"{\"events\":[]}";
        let hex_sig = sign_hex(b"s3cret", NOW, body);
        assert!(s.verify_at(&game(), &signed(NOW, &hex_sig), body, NOW).await.is_ok());
        let b64 =
            base64::engine::general_purpose::STANDARD.encode(hex::decode(sign_hex(b"rotated", NOW, body)).unwrap());
        assert!(s.verify_at(&game(), &signed(NOW, &b64), body, NOW + 1).await.is_ok());
    }

    #[actix_web::test]
    async fn missing_wrong_and_tampered_signatures_are_401_only_for_games_with_a_secret() {
        let s = secrets();
        let body = b"{\"events\":[]}";
        let g = game();
        assert!(reason(s.verify_at(&g, &HeaderMap::new(), body, NOW).await).contains("requires signed requests"));
        let mut no_timestamp = HeaderMap::new();
        no_timestamp.insert(HEADER.parse().unwrap(), HeaderValue::from_str(&sign_hex(b"s3cret", NOW, body)).unwrap());
        assert!(reason(s.verify_at(&g, &no_timestamp, body, NOW).await).contains("X-GM-Timestamp"));
        assert!(reason(s.verify_at(&g, &signed(NOW, &sign_hex(b"wrong", NOW, body)), body, NOW).await)
            .contains("does not match"));
        let tampered =
            reason(s.verify_at(&g, &signed(NOW, &sign_hex(b"s3cret", NOW, body)), b"{\"events\":[1]}", NOW).await);
        assert!(tampered.contains("does not match"), "{tampered}");
        // The timestamp is part of what is signed: moving it breaks the signature.
        let moved = reason(s.verify_at(&g, &signed(NOW + 1, &sign_hex(b"s3cret", NOW, body)), body, NOW).await);
        assert!(moved.contains("does not match"), "{moved}");
        assert!(reason(s.verify_at(&g, &signed(NOW, "!!"), body, NOW).await).contains("neither hex nor base64"));
        let farm = GameId::parse("farm").unwrap();
        assert!(s.verify_at(&farm, &HeaderMap::new(), body, NOW).await.is_ok());
        assert!(!format!("{:?}", s).contains("s3cret"));
    }

    #[actix_web::test]
    async fn a_timestamp_more_than_five_minutes_away_is_refused_either_way() {
        let s = secrets();
        let body = b"{}";
        for (signed_at, ok) in [(NOW - 300, true), (NOW + 300, true), (NOW - 301, false), (NOW + 301, false)] {
            let r = s.verify_at(&game(), &signed(signed_at, &sign_hex(b"s3cret", signed_at, body)), body, NOW).await;
            assert_eq!(r.is_ok(), ok, "signed at {signed_at}, now {NOW}: {r:?}");
            if !ok {
                assert!(reason(r).contains("from the gateway's clock"));
            }
        }
        let mut garbage = signed(NOW, &sign_hex(b"s3cret", NOW, body));
        garbage.insert(TIMESTAMP_HEADER.parse().unwrap(), HeaderValue::from_static("2026-12-07T10:00:00Z"));
        assert!(reason(s.verify_at(&game(), &garbage, body, NOW).await).contains("whole seconds"));
    }

    #[actix_web::test]
    async fn a_signature_is_accepted_once() {
        let s = secrets();
        let body = b"{\"events\":[]}";
        let headers = signed(NOW, &sign_hex(b"s3cret", NOW, body));
        assert!(s.verify_at(&game(), &headers, body, NOW).await.is_ok());
        assert!(reason(s.verify_at(&game(), &headers, body, NOW + 10).await).contains("replay"));
        // The same body signed again a second later is a new request.
        assert!(s
            .verify_at(&game(), &signed(NOW + 1, &sign_hex(b"s3cret", NOW + 1, body)), body, NOW + 1)
            .await
            .is_ok());
        // A clone (another worker of the same gateway) shares the memory.
        assert!(s.clone().verify_at(&game(), &headers, body, NOW).await.is_err());
    }

    #[actix_web::test]
    async fn replaced_secrets_apply_at_once_to_every_clone() {
        let s = secrets();
        let clone = s.clone();
        let body = b"{}";
        s.replace(&[SigningSecret { game_id: game(), secret: Secret("brand-new".into()) }]);
        assert!(clone.verify_at(&game(), &signed(NOW, &sign_hex(b"brand-new", NOW, body)), body, NOW).await.is_ok());
        let old = reason(clone.verify_at(&game(), &signed(NOW, &sign_hex(b"s3cret", NOW, body)), body, NOW).await);
        assert!(old.contains("does not match"), "{old}");
        s.replace(&[]);
        assert!(!clone.requires_signature(&game()), "no secret left: signing no longer required");
    }

    /// The shared claims of a deployment (Redis in production), in memory.
    #[derive(Default)]
    struct Claims {
        keys: Mutex<Vec<String>>,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl SharedClaims for Claims {
        async fn claim(&self, key: &str, _ttl: Duration) -> Result<bool, StoreError> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Unavailable("redis down".into()));
            }
            let mut keys = self.keys.lock().unwrap();
            let first = !keys.iter().any(|k| k == key);
            keys.push(key.to_owned());
            Ok(first)
        }
    }

    #[actix_web::test]
    async fn another_gateway_refuses_a_replay_through_the_shared_claims_and_falls_back_when_they_fail() {
        let claims = Arc::new(Claims::default());
        let gateway_a = secrets().with_shared_claims(claims.clone());
        let gateway_b = secrets().with_shared_claims(claims.clone());
        let body = b"{\"events\":[]}";
        let headers = signed(NOW, &sign_hex(b"s3cret", NOW, body));
        assert!(gateway_a.verify_at(&game(), &headers, body, NOW).await.is_ok());
        assert!(reason(gateway_b.verify_at(&game(), &headers, body, NOW).await).contains("replay"));
        assert!(claims.keys.lock().unwrap()[0].starts_with("sig:space-race:"));
        // Redis down: each gateway still refuses what it saw itself.
        claims.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let later = signed(NOW + 5, &sign_hex(b"s3cret", NOW + 5, body));
        assert!(gateway_a.verify_at(&game(), &later, body, NOW + 5).await.is_ok());
        assert!(gateway_a.verify_at(&game(), &later, body, NOW + 5).await.is_err());
    }
}
