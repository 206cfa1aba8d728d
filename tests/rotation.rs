//! Rotation without a restart: the API keys, the signing secrets, the JWKS and the metrics
//! token are read again when their files change. Each is rotated while requests keep coming:
//! during the overlap (old and new both configured) no request fails; once the old one is
//! removed from the file, it is refused.

mod common;

use common::*;
use gamemetrics::platform::Platform;
use gm_gateway::jwt::testing::TestIssuer;
use gm_gateway::signature::sign_hex;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

/// What a client presents.
#[derive(Clone)]
struct Client {
    key: &'static str,
    secret: &'static str,
}

async fn ingest(base: &str, c: &Client) -> u16 {
    let body = json!({"events": [{"type": "session_start", "player_id": "rotating-one",
        "client_ts": chrono::Utc::now().to_rfc3339()}]})
    .to_string();
    let ts = chrono::Utc::now().timestamp();
    let reply = awc::Client::new()
        .post(format!("{base}/v1/events"))
        .insert_header(("Authorization", format!("Bearer {}", c.key)))
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("X-GM-Timestamp", ts.to_string()))
        .insert_header(("X-GM-Signature", sign_hex(c.secret.as_bytes(), ts, body.as_bytes())))
        .send_body(body)
        .await
        .expect("the gateway answers");
    reply.status().as_u16()
}

async fn get(url: &str, bearer: &str) -> u16 {
    let reply = awc::Client::new()
        .get(url)
        .insert_header(("Authorization", format!("Bearer {bearer}")))
        .send()
        .await
        .expect("the gateway answers");
    reply.status().as_u16()
}

fn write(path: &Path, text: &str) {
    // As the kubelet does: a new file moved over the old one.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn jwks_of(issuers: &[&TestIssuer]) -> String {
    let keys: Vec<Value> = issuers.iter().flat_map(|i| i.jwks()["keys"].as_array().unwrap().clone()).collect();
    json!({ "keys": keys }).to_string()
}

/// Sends with `old` until `new` is accepted too (every `old` request must pass meanwhile).
async fn until_accepted<O, OF, N, NF>(what: &str, mut old: O, mut new: N) -> usize
where
    O: FnMut() -> OF,
    OF: std::future::Future<Output = u16>,
    N: FnMut() -> NF,
    NF: std::future::Future<Output = u16>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    loop {
        let status = old().await;
        sent += 1;
        assert!(status < 300, "{what}: a request with the old credential failed during the overlap: {status}");
        if new().await < 300 {
            return sent;
        }
        assert!(Instant::now() < deadline, "{what}: the new credential was not accepted within 20 s");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends with `new` until `old` is refused (every `new` request must pass meanwhile).
async fn until_refused<O, OF, N, NF>(what: &str, mut old: O, mut new: N)
where
    O: FnMut() -> OF,
    OF: std::future::Future<Output = u16>,
    N: FnMut() -> NF,
    NF: std::future::Future<Output = u16>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = new().await;
        assert!(status < 300, "{what}: a request with the new credential failed: {status}");
        if old().await == 401 {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: the removed credential was still accepted after 20 s");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn keys_secrets_jwks_and_the_metrics_token_rotate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("secrets");
    std::fs::create_dir_all(&files).unwrap();
    let (keys, signing, metrics, jwks) =
        (files.join("api-keys"), files.join("signing"), files.join("metrics-token"), files.join("jwks.json"));
    let (old_issuer, new_issuer) = (TestIssuer::generate("rotation-old"), TestIssuer::generate("rotation-new"));
    let old = Client { key: "rotation-old-key-0001", secret: "rotation-old-secret-0001" };
    let new = Client { key: "rotation-new-key-0002", secret: "rotation-new-secret-0002" };
    write(&keys, &format!("{GAME}={}", old.key));
    write(&signing, &format!("{GAME}={}", old.secret));
    write(&metrics, "rotation-old-metrics-token");
    write(&jwks, &jwks_of(&[&old_issuer]));
    let mut config = test_config(&dir.path().join("data"));
    config.api_keys_file = Some(keys.clone());
    config.auth.signing_secrets_file = Some(signing.clone());
    config.auth.metrics_token_file = Some(metrics.clone());
    config.auth.jwks_file = Some(jwks.clone());
    let app = Platform::start_on(&config, TcpListener::bind("127.0.0.1:0").unwrap()).await.expect("platform starts");
    let base = app.url();
    let today = chrono::Utc::now().date_naive();
    let query = format!("{base}/v1/analytics/{GAME}/active-users?from={today}&to={today}");
    let (old_token, new_token) =
        (old_issuer.token("rotation-analyst", &["analyst"]), new_issuer.token("rotation-analyst", &["analyst"]));
    assert_eq!(ingest(&base, &old).await, 202);
    assert_eq!(get(&query, &old_token).await, 200);
    assert_eq!(ingest(&base, &new).await, 401, "the new key is not configured yet");

    // API keys and signing secrets: both configured, then the new ones alone.
    write(&keys, &format!("{GAME}={},{GAME}={}", old.key, new.key));
    write(&signing, &format!("{GAME}={}\n{GAME}={}", old.secret, new.secret));
    let during = until_accepted("api key and signing secret", || ingest(&base, &old), || ingest(&base, &new)).await;
    assert!(during >= 1);
    write(&keys, &format!("{GAME}={}", new.key));
    write(&signing, &format!("{GAME}={}", new.secret));
    until_refused("api key and signing secret", || ingest(&base, &old), || ingest(&base, &new)).await;
    // A request with the new key signed with the retired secret: refused too.
    let mixed = Client { key: new.key, secret: old.secret };
    assert_eq!(ingest(&base, &mixed).await, 401);

    // The JWKS: the identity provider's new signing key next to the old one, then alone.
    write(&jwks, &jwks_of(&[&old_issuer, &new_issuer]));
    until_accepted("jwks", || get(&query, &old_token), || get(&query, &new_token)).await;
    write(&jwks, &jwks_of(&[&new_issuer]));
    until_refused("jwks", || get(&query, &old_token), || get(&query, &new_token)).await;

    // The metrics token: one at a time (Prometheus reads the same Secret), so the new one is
    // accepted from the reload on, and the old one refused from then.
    let metrics_url = format!("{base}/metrics");
    assert_eq!(get(&metrics_url, "rotation-old-metrics-token").await, 200);
    write(&metrics, "rotation-new-metrics-token");
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&metrics_url, "rotation-new-metrics-token").await != 200 {
        assert!(Instant::now() < deadline, "the new metrics token was not accepted within 20 s");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(&metrics_url, "rotation-old-metrics-token").await, 401);

    // A file that no longer parses keeps what is in force.
    write(&keys, "not a key list");
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ingest(&base, &new).await, 202, "a broken file does not lock clients out");
    app.stop().await;
}
