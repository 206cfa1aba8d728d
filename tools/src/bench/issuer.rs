//! The bench's own token issuer: an Ed25519 key pair generated for the run (never a
//! committed private key), its one-key JWKS handed to the roles the bench starts, and tokens
//! signed with it. The gateway verifies them like any token of a configured issuer, so this
//! keeps the gateway's test-support feature (and its token minting) out of the binary.

use anyhow::Context as _;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::KeyPair as _;
use serde_json::{json, Value};
use std::path::Path;

const ISSUER: &str = "https://bench.gamemetrics.invalid";
const AUDIENCE: &str = "gamemetrics-bench";

struct Issuer {
    kid: String,
    encoding: EncodingKey,
    public: Vec<u8>,
}

impl Issuer {
    fn generate(kid: &str) -> anyhow::Result<Self> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("generating an Ed25519 key"))?;
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("reading the generated Ed25519 key"))?;
        Ok(Self {
            kid: kid.to_string(),
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            public: pair.public_key().as_ref().to_vec(),
        })
    }

    /// The public key as a one-key JWKS.
    fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": self.kid,
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.public),
        }]})
    }

    /// A token of [`ISSUER`] for [`AUDIENCE`] with `roles` on the bench's game (the `games`
    /// claim), valid for six hours.
    fn token(&self, subject: &str, roles: &[&str]) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = json!({"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 6 * 3600,
                            "roles": roles, "games": [super::GAME]});
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).context("signing a bench token")
    }
}

/// What the bench's requests carry and what the roles must be configured with.
pub(super) struct Credentials {
    /// A token with the role asked for (`analyst`, `compliance`).
    pub token: String,
    /// `Authorization` value for `/metrics` (the run's own metrics token): a process that
    /// also serves the API (the gateway, or `serve` on the embedded default) wants it.
    pub metrics_auth: String,
    /// `GM_AUTH__*` settings for the roles.
    pub env: Vec<(String, String)>,
}

impl Credentials {
    /// A fresh issuer whose JWKS is written to `work_dir`, and a token of it with `role`.
    pub fn create(work_dir: &Path, role: &str) -> anyhow::Result<Self> {
        let issuer = Issuer::generate("bench")?;
        let jwks = work_dir.join("bench-jwks.json");
        std::fs::write(&jwks, issuer.jwks().to_string()).with_context(|| format!("writing {}", jwks.display()))?;
        let metrics_token = format!("bench-metrics-{}", uuid::Uuid::new_v4().simple());
        Ok(Self {
            token: issuer.token(&format!("bench-{role}"), &[role])?,
            metrics_auth: format!("Bearer {metrics_token}"),
            env: vec![
                ("GM_AUTH__METRICS_TOKEN".into(), metrics_token),
                ("GM_AUTH__JWKS_FILE".into(), jwks.display().to_string()),
                ("GM_AUTH__ISSUER".into(), ISSUER.into()),
                ("GM_AUTH__AUDIENCE".into(), AUDIENCE.into()),
                ("GM_AUTH__ROLES_CLAIM".into(), "roles".into()),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_verifies_against_the_published_jwks() {
        let issuer = Issuer::generate("k1").unwrap();
        let token = issuer.token("someone", &["analyst"]).unwrap();
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(issuer.jwks()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
        assert_eq!(data.claims["roles"], json!(["analyst"]));
        assert_eq!(data.claims["games"], json!([super::super::GAME]), "the bench's game: its queries must pass");
    }
}
