//! Who is calling (authentication) and what they may do (authorization).
//!
//! Authentication: a per-game API key, sent as `Authorization: Bearer <key>` or
//! `X-API-Key: <key>`. Only SHA-256 hashes of the keys are kept in memory, and a presented
//! key is compared against every stored hash in constant time, so neither a memory dump nor
//! response timing reveals a key.
//!
//! Authorization: [`authorize`] is the one place that decides whether a [`Principal`] may
//! perform an [`Action`]. JWT principals with roles (analyst, compliance, admin) are meant to
//! be added here as new `Principal` variants, without touching the handlers.

use crate::error::GatewayError;
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use gm_schemas::GameId;
use sha2::{Digest, Sha256};
use std::fmt;

/// One API key of one game, as configured. `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyConfig {
    pub game_id: GameId,
    pub key: String,
}

impl fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyConfig").field("game_id", &self.game_id).field("key", &"<redacted>").finish()
    }
}

type KeyHash = [u8; 32];

fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// Equality that looks at every byte whatever the input, so its duration says nothing.
fn constant_time_eq(a: &KeyHash, b: &KeyHash) -> bool {
    let diff = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The hashed API keys of every game (several keys per game allowed, for rotation).
#[derive(Clone, Default)]
pub struct ApiKeys {
    hashes: Vec<(KeyHash, GameId)>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys").field("keys", &self.hashes.len()).finish()
    }
}

impl ApiKeys {
    /// Hashes the configured keys; empty keys are ignored (they would match an empty header).
    pub fn new(keys: &[ApiKeyConfig]) -> Self {
        let hashes = keys
            .iter()
            .filter(|k| {
                let empty = k.key.trim().is_empty();
                if empty {
                    tracing::warn!(game_id = %k.game_id, "ignoring an empty API key");
                }
                !empty
            })
            .map(|k| (hash_key(k.key.trim()), k.game_id.clone()))
            .collect();
        Self { hashes }
    }

    /// The game whose key this is. Compares against every stored hash, without early exit.
    pub fn game_of(&self, key: &str) -> Option<GameId> {
        let presented = hash_key(key);
        let mut found = None;
        for (hash, game) in &self.hashes {
            if constant_time_eq(hash, &presented) {
                found = Some(game.clone());
            }
        }
        found
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Holder of an API key of `game`: may ingest for it and read its analytics.
    GameKey { game: GameId },
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Post events (always for the principal's own game).
    Ingest,
    /// Read one player's profile in `game`.
    ReadPlayer(&'a GameId),
    /// Read aggregated analytics of `game`.
    ReadAnalytics(&'a GameId),
}

/// The key presented with the request, if any.
fn presented_key(headers: &HeaderMap) -> Result<Option<&str>, GatewayError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let text = value
            .to_str()
            .map_err(|_| GatewayError::Unauthenticated("Authorization header is not valid text".into()))?;
        let Some((scheme, key)) = text.split_once(' ') else {
            return Err(GatewayError::Unauthenticated("Authorization header must be 'Bearer <api key>'".into()));
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(GatewayError::Unauthenticated(format!(
                "unsupported Authorization scheme '{scheme}'; use 'Bearer <api key>' or X-API-Key"
            )));
        }
        return Ok(Some(key.trim()));
    }
    if let Some(value) = headers.get("x-api-key") {
        let key =
            value.to_str().map_err(|_| GatewayError::Unauthenticated("X-API-Key header is not valid text".into()))?;
        return Ok(Some(key.trim()));
    }
    Ok(None)
}

/// Identifies the caller from the request headers (401 when it cannot).
pub fn authenticate(headers: &HeaderMap, keys: &ApiKeys) -> Result<Principal, GatewayError> {
    let key = presented_key(headers)?.ok_or_else(|| {
        GatewayError::Unauthenticated(
            "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'".into(),
        )
    })?;
    if key.is_empty() {
        return Err(GatewayError::Unauthenticated("empty API key".into()));
    }
    keys.game_of(key)
        .map(|game| Principal::GameKey { game })
        .ok_or_else(|| GatewayError::Unauthenticated("unknown API key".into()))
}

/// Decides whether `principal` may perform `action` (403 when not). The only place that does.
pub fn authorize(principal: &Principal, action: Action<'_>) -> Result<(), GatewayError> {
    match (principal, action) {
        (Principal::GameKey { .. }, Action::Ingest) => Ok(()),
        (Principal::GameKey { game }, Action::ReadPlayer(target) | Action::ReadAnalytics(target)) => {
            if game == target {
                Ok(())
            } else {
                Err(GatewayError::Forbidden(format!("this API key belongs to another game than '{target}'")))
            }
        }
    }
}

impl Principal {
    /// The game an ingest request posts for.
    pub fn ingest_game(&self) -> &GameId {
        match self {
            Self::GameKey { game } => game,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn keys() -> ApiKeys {
        let g = |s: &str| GameId::parse(s).unwrap();
        ApiKeys::new(&[
            ApiKeyConfig { game_id: g("space-race"), key: "k1".into() },
            ApiKeyConfig { game_id: g("space-race"), key: "k1-rotated".into() },
            ApiKeyConfig { game_id: g("farm"), key: "k2".into() },
            ApiKeyConfig { game_id: g("farm"), key: "".into() },
        ])
    }

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name.parse().unwrap(), HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn several_keys_per_game_are_accepted_by_either_header() {
        let k = keys();
        let game = GameId::parse("space-race").unwrap();
        assert_eq!(
            authenticate(&headers("authorization", "Bearer k1"), &k).unwrap(),
            Principal::GameKey { game: game.clone() }
        );
        assert_eq!(authenticate(&headers("x-api-key", "k1-rotated"), &k).unwrap(), Principal::GameKey { game });
    }

    #[test]
    fn missing_unknown_and_empty_keys_are_unauthenticated() {
        let k = keys();
        assert!(matches!(authenticate(&HeaderMap::new(), &k), Err(GatewayError::Unauthenticated(_))));
        assert!(matches!(authenticate(&headers("x-api-key", "nope"), &k), Err(GatewayError::Unauthenticated(_))));
        assert!(matches!(authenticate(&headers("x-api-key", ""), &k), Err(GatewayError::Unauthenticated(_))));
        assert!(matches!(
            authenticate(&headers("authorization", "Basic k1"), &k),
            Err(GatewayError::Unauthenticated(_))
        ));
    }

    #[test]
    fn keys_are_stored_only_as_hashes() {
        let k = keys();
        let debug = format!("{k:?} {:?}", k.hashes);
        assert!(!debug.contains("k1"), "{debug}");
    }

    #[test]
    fn a_key_reads_only_its_own_game() {
        let space = GameId::parse("space-race").unwrap();
        let farm = GameId::parse("farm").unwrap();
        let p = Principal::GameKey { game: space.clone() };
        assert!(authorize(&p, Action::ReadAnalytics(&space)).is_ok());
        assert!(matches!(authorize(&p, Action::ReadAnalytics(&farm)), Err(GatewayError::Forbidden(_))));
        assert!(matches!(authorize(&p, Action::ReadPlayer(&farm)), Err(GatewayError::Forbidden(_))));
    }
}
