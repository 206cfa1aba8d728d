//! The optional HMAC-SHA256 signature of a request body, as the GameAnalytics collector does.
//!
//! When a game has a signing secret, each ingest request must carry
//! `X-GM-Signature: <HMAC-SHA256(secret, raw body)>`, hex or base64 (standard or URL-safe,
//! padded or not), computed over the body exactly as sent: compressed when it is gzip. It is
//! checked before the body is inflated or parsed, so an unsigned request costs no
//! decompression. Several secrets per game may be active at once (rotation with overlap).

use crate::error::GatewayError;
use actix_web::http::header::HeaderMap;
use base64::Engine as _;
use gm_schemas::GameId;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::fmt;

pub const HEADER: &str = "x-gm-signature";

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

/// The signing secrets of the games that have one.
#[derive(Clone, Default)]
pub struct SigningSecrets {
    by_game: HashMap<GameId, Vec<Vec<u8>>>,
}

impl fmt::Debug for SigningSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningSecrets").field("games", &self.by_game.len()).finish()
    }
}

/// HMAC-SHA256 of `body` with `secret`, hex (what a client computes).
pub fn sign_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
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

impl SigningSecrets {
    pub fn new(secrets: &[SigningSecret]) -> Self {
        let mut by_game: HashMap<GameId, Vec<Vec<u8>>> = HashMap::new();
        for s in secrets.iter().filter(|s| !s.secret.0.is_empty()) {
            by_game.entry(s.game_id.clone()).or_default().push(s.secret.0.as_bytes().to_vec());
        }
        Self { by_game }
    }

    pub fn requires_signature(&self, game: &GameId) -> bool {
        self.by_game.contains_key(game)
    }

    /// Checks the signature of `raw_body` for `game` (401 when the game has a secret and the
    /// signature is missing or wrong; nothing to check otherwise).
    pub fn verify(&self, game: &GameId, headers: &HeaderMap, raw_body: &[u8]) -> Result<(), GatewayError> {
        let Some(secrets) = self.by_game.get(game) else {
            return Ok(());
        };
        let presented = headers
            .get(HEADER)
            .ok_or_else(|| {
                GatewayError::Unauthenticated(format!(
                    "game '{game}' requires a body signature: X-GM-Signature = HMAC-SHA256(secret, raw body)"
                ))
            })?
            .to_str()
            .ok()
            .and_then(decode_signature)
            .ok_or_else(|| GatewayError::Unauthenticated("X-GM-Signature is neither hex nor base64".into()))?;
        // `verify_slice` compares in constant time; every secret is tried.
        let mut valid = false;
        for secret in secrets {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
            mac.update(raw_body);
            valid |= mac.verify_slice(&presented).is_ok();
        }
        if valid {
            Ok(())
        } else {
            Err(GatewayError::Unauthenticated("X-GM-Signature does not match the body".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn secrets() -> SigningSecrets {
        let g = GameId::parse("space-race").unwrap();
        SigningSecrets::new(&[
            SigningSecret { game_id: g.clone(), secret: Secret("s3cret".into()) },
            SigningSecret { game_id: g, secret: Secret("rotated".into()) },
        ])
    }

    fn with_signature(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER.parse().unwrap(), HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn hex_and_base64_signatures_of_either_secret_verify() {
        let game = GameId::parse("space-race").unwrap();
        let body = b"{\"events\":[]}";
        let hex_sig = sign_hex(b"s3cret", body);
        assert!(secrets().verify(&game, &with_signature(&hex_sig), body).is_ok());
        let b64 = base64::engine::general_purpose::STANDARD.encode(hex::decode(sign_hex(b"rotated", body)).unwrap());
        assert!(secrets().verify(&game, &with_signature(&b64), body).is_ok());
    }

    #[test]
    fn missing_wrong_and_tampered_signatures_are_401_only_for_games_with_a_secret() {
        let game = GameId::parse("space-race").unwrap();
        let body = b"{\"events\":[]}";
        let unauth = |r: Result<(), GatewayError>| matches!(r, Err(GatewayError::Unauthenticated(_)));
        assert!(unauth(secrets().verify(&game, &HeaderMap::new(), body)));
        assert!(unauth(secrets().verify(&game, &with_signature(&sign_hex(b"wrong", body)), body)));
        assert!(unauth(secrets().verify(&game, &with_signature(&sign_hex(b"s3cret", body)), b"{\"events\":[1]}")));
        assert!(unauth(secrets().verify(&game, &with_signature("!!"), body)));
        let farm = GameId::parse("farm").unwrap();
        assert!(secrets().verify(&farm, &HeaderMap::new(), body).is_ok());
        assert!(!format!("{:?}", secrets()).contains("s3cret"));
    }
}
