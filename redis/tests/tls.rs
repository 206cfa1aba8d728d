//! TLS (`rediss://`) against a real `redis-server` speaking TLS only: a CA and a server
//! certificate for 127.0.0.1/localhost are made here (rcgen), the server is started on free
//! ports in a temporary directory (`--port 0 --tls-port P`, AUTH required) and killed when the
//! test ends. Needs Debian's `redis-server` (built with TLS; `scripts/services` installs it);
//! never skipped.
//!
//! Proven: with the CA (`tls_ca_file`) and the password every cache operation works, in single
//! and cluster mode; with the bundled webpki roots only, the certificate does not verify and
//! nothing works; nor with a certificate for another name, nor with a wrong password; a
//! `redis://` URL with `tls_ca_file` is refused when the cache is built.

use gm_redis::{RedisCache, RedisConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "s3cret-auth-token";

/// A CA and a server certificate (for `localhost` and 127.0.0.1) signed by it, as PEM files.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "gm-redis test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();

    let pki = Pki { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `redis-server` child speaking TLS only on `port`, killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    pki: Pki,
}

impl TlsRedis {
    /// `cluster`: a one-node Redis Cluster (`--tls-cluster yes`) that owns every slot.
    fn start(cluster: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = make_pki(dir.path());
        let port = free_port();
        let mut cmd = Command::new("redis-server");
        cmd.current_dir(dir.path())
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "127.0.0.2"])
            .arg("--tls-cert-file")
            .arg(&pki.cert)
            .arg("--tls-key-file")
            .arg(&pki.key)
            .arg("--tls-ca-cert-file")
            .arg(&pki.ca)
            .args(["--tls-auth-clients", "no", "--requirepass", SECRET, "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if cluster {
            cmd.args(["--cluster-enabled", "yes", "--tls-cluster", "yes", "--cluster-config-file", "nodes.conf"])
                .args(["--cluster-port", &free_port().to_string(), "--cluster-announce-ip", "127.0.0.1"]);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start redis-server ({e}): install it (Debian's redis-server, `scripts/services up redis`)")
        });
        let server = Self { child, port, _dir: dir, pki };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on {port} within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self, password: &str) -> String {
        format!("rediss://:{password}@127.0.0.1:{}", self.port)
    }

    fn ca_file(&self) -> Option<String> {
        Some(self.pki.ca.to_string_lossy().into_owned())
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Generous bounds: the machine may be busy; a TLS handshake is part of connecting.
fn config(url: String, cluster: bool, ca_file: Option<String>) -> RedisConfig {
    let cfg = if cluster { RedisConfig::cluster(url, "gm:tls:") } else { RedisConfig::new(url, "gm:tls:") };
    RedisConfig {
        tls_ca_file: ca_file,
        op_timeout_ms: 2_000,
        connect_timeout_ms: 5_000,
        reconnect_interval_ms: 100,
        ..cfg
    }
}

/// set/get, set_many, delete_many, delete_prefix and the erasure path (mark_and_delete, then
/// set_unless_marked refused) over TLS.
async fn exercise(cache: &RedisCache) {
    assert!(cache.health().await, "health over TLS");
    let ttl = Duration::from_secs(60);
    cache.set_many(&[("a", b"1".to_vec())], ttl).await.unwrap();
    assert_eq!(cache.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
    let many: Vec<(String, Vec<u8>)> = (0..50).map(|i| (format!("many:{i}"), vec![i as u8])).collect();
    cache.set_many(&many, ttl).await.unwrap();
    assert_eq!(cache.get("many:7").await.unwrap(), Some(vec![7]));
    assert_eq!(cache.delete_many(&["a", "absent"]).await.unwrap(), 1);
    assert_eq!(cache.get("a").await.unwrap(), None);
    assert_eq!(cache.delete_prefix("many:").await.unwrap(), 50);
    assert_eq!(cache.get("many:7").await.unwrap(), None);

    // Erasure: the profile goes and the marker keeps a stale read-through write out.
    let (profile, marker) = ("profile:{g:1}:p", "erased:{g:1}:h");
    assert!(cache.set_unless_marked(profile, b"old", ttl, marker).await.unwrap());
    assert_eq!(cache.mark_and_delete(&[profile], marker, ttl).await.unwrap(), 1);
    assert_eq!(cache.get(profile).await.unwrap(), None);
    assert!(!cache.set_unless_marked(profile, b"stale", ttl, marker).await.unwrap(), "marker keeps it out");
    assert_eq!(cache.get(profile).await.unwrap(), None);
    cache.delete_prefix("").await.unwrap();
}

/// Nothing works: not connected (the handshake or AUTH failed), and an operation that must
/// connect (erasure) fails instead of pretending.
async fn refused(cache: &RedisCache) {
    assert_eq!(cache.stats().connects, 0, "not connected");
    assert!(!cache.health().await);
    assert!(cache.get("a").await.is_err());
    assert!(cache.mark_and_delete(&["profile:{g:1}:p"], "erased:{g:1}:h", Duration::from_secs(1)).await.is_err());
    assert!(cache.delete_prefix("x:").await.is_err());
    assert_eq!(cache.stats().connects, 0);
}

/// The error of connecting directly with the redis crate (webpki roots only).
async fn raw_connect_error(url: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    match client.get_multiplexed_async_connection().await {
        Ok(_) => panic!("connected to {url} without trusting its CA"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn rediss_with_the_ca_file_works_and_everything_else_is_refused() {
    let server = TlsRedis::start(false);

    // The CA and the password: everything works, and the password is never shown.
    let cache = RedisCache::connect(config(server.url(SECRET), false, server.ca_file())).await.unwrap();
    assert_eq!(cache.stats().connects, 1, "connected over TLS with the CA and the password");
    exercise(&cache).await;
    assert!(!format!("{cache:?}").contains(SECRET), "the password is redacted: {cache:?}");
    assert!(format!("{cache:?}").contains("rediss://***@127.0.0.1"), "{cache:?}");

    // "localhost" is in the certificate as well.
    let by_name = format!("rediss://:{SECRET}@localhost:{}", server.port);
    let cache = RedisCache::connect(config(by_name, false, server.ca_file())).await.unwrap();
    assert!(cache.health().await, "rediss://localhost verifies too");

    // Webpki roots only: the private CA is not trusted, the certificate does not verify.
    let untrusted = RedisCache::connect(config(server.url(SECRET), false, None)).await.unwrap();
    refused(&untrusted).await;
    let e = raw_connect_error(&server.url(SECRET)).await;
    assert!(e.to_lowercase().contains("certificate"), "a certificate error, not another: {e}");

    // The right CA but another name (127.0.0.2 is not in the certificate): refused.
    let other_name = format!("rediss://:{SECRET}@127.0.0.2:{}", server.port);
    refused(&RedisCache::connect(config(other_name.clone(), false, server.ca_file())).await.unwrap()).await;
    let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(std::fs::read(&server.pki.ca).unwrap()) };
    let e = redis::Client::build_with_tls(other_name, certs).unwrap().get_multiplexed_async_connection().await;
    let Err(e) = e else { panic!("connected to a name not in the certificate") };
    let e = e.to_string();
    assert!(e.to_lowercase().contains("certificate"), "a certificate (name) error: {e}");

    // A wrong password: TLS is fine, AUTH is not.
    refused(&RedisCache::connect(config(server.url("wrong"), false, server.ca_file())).await.unwrap()).await;

    // tls_ca_file with a plain redis:// URL: refused when the cache is built.
    let plain = format!("redis://:{SECRET}@127.0.0.1:{}", server.port);
    let err = RedisCache::new(config(plain.clone(), false, server.ca_file())).unwrap_err().to_string();
    assert!(err.contains("tls_ca_file") && err.contains("rediss://"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    assert!(RedisCache::new(config(plain, true, server.ca_file())).is_err(), "in cluster mode too");
}

#[tokio::test]
async fn rediss_in_cluster_mode() {
    let server = TlsRedis::start(true);
    // The node owns every slot (a one-node cluster); set up over TLS with the crate directly.
    let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(std::fs::read(&server.pki.ca).unwrap()) };
    let admin = redis::Client::build_with_tls(server.url(SECRET), certs).unwrap();
    let mut con = admin.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(0).arg(16_383).query_async(&mut con).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info: String = redis::cmd("CLUSTER").arg("INFO").query_async(&mut con).await.unwrap();
        if info.contains("cluster_state:ok") {
            break;
        }
        assert!(Instant::now() < deadline, "the one-node cluster did not become ok: {info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let cache = RedisCache::connect(config(server.url(SECRET), true, server.ca_file())).await.unwrap();
    assert!(cache.is_cluster());
    assert_eq!(cache.stats().connects, 1, "connected to the TLS cluster");
    exercise(&cache).await;
    assert!(!format!("{cache:?}").contains(SECRET));

    refused(&RedisCache::connect(config(server.url(SECRET), true, None)).await.unwrap()).await;
    refused(&RedisCache::connect(config(server.url("wrong"), true, server.ca_file())).await.unwrap()).await;
}
