//! Shared helpers of the gm-redis integration tests: the real Redis (GM_REDIS_URL, never
//! skipped), a per-test key prefix, a counting in-memory `AnalyticsQueries`, and a TCP proxy
//! that can freeze (a hung Redis) or hold replies back (to prove pipelining).
#![allow(dead_code)]

pub mod fakes;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use gm_ports::StoreError;
use gm_projections::model::*;
use gm_projections::AnalyticsQueries;
use gm_redis::{RedisCache, RedisConfig};
use gm_schemas::{GameId, PlayerId};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// GM_REDIS_URL, which must be set and answer PING: these tests never skip.
pub async fn redis_url() -> String {
    let url = std::env::var("GM_REDIS_URL")
        .expect("GM_REDIS_URL is not set: run `eval \"$(scripts/services env)\"` (and `scripts/services up redis`)");
    let client =
        redis::Client::open(url.as_str()).unwrap_or_else(|e| panic!("GM_REDIS_URL={url} is not a Redis URL: {e}"));
    let mut con = tokio::time::timeout(Duration::from_secs(5), client.get_multiplexed_async_connection())
        .await
        .unwrap_or_else(|_| panic!("Redis at {url} did not answer within 5 s"))
        .unwrap_or_else(|e| panic!("Redis at {url} is unreachable: {e}; start it with `scripts/services up redis`"));
    let pong: String = redis::cmd("PING").query_async(&mut con).await.expect("PING failed");
    assert_eq!(pong, "PONG");
    url
}

/// A configuration for the real Redis with a fresh prefix `gm:test:<uuid>:`.
pub async fn test_config() -> RedisConfig {
    let mut cfg = RedisConfig::new(redis_url().await, format!("gm:test:{}:", uuid::Uuid::new_v4()));
    cfg.profile_ttl_ms = 30_000;
    cfg.query_ttl_ms = 300_000;
    cfg.recent_query_ttl_ms = 5_000;
    cfg.recommendation_ttl_ms = 5_000;
    cfg.op_timeout_ms = 50;
    cfg
}

/// A raw connection for looking behind the cache's back.
pub async fn raw() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url().await.as_str()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

pub async fn pttl(con: &mut redis::aio::MultiplexedConnection, full_key: &str) -> i64 {
    redis::cmd("PTTL").arg(full_key).query_async(con).await.unwrap()
}

pub async fn exists(con: &mut redis::aio::MultiplexedConnection, full_key: &str) -> bool {
    redis::cmd("EXISTS").arg(full_key).query_async::<i64>(con).await.unwrap() == 1
}

/// Every key under `prefix` (SCAN).
pub async fn keys_under(con: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await
            .unwrap();
        out.extend(keys);
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

/// Deletes the test's keys and checks that none is left.
pub async fn cleanup(cache: &RedisCache) {
    cache.delete_prefix("").await.expect("cleanup failed");
    let mut con = raw().await;
    let left = keys_under(&mut con, &cache.config().key_prefix).await;
    assert!(left.is_empty(), "keys left behind: {left:?}");
}

pub fn game(s: &str) -> GameId {
    GameId::parse(s).unwrap()
}
pub fn player(s: &str) -> PlayerId {
    PlayerId::parse(s).unwrap()
}
pub fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}
pub fn range(from: NaiveDate, to: NaiveDate) -> DateRange {
    DateRange::parse(from, to).unwrap()
}

pub fn profile(game: &str, player: &str, events: u64) -> PlayerProfile {
    let t: DateTime<Utc> = "2024-05-01T10:00:00Z".parse().unwrap();
    PlayerProfile {
        game_id: game.into(),
        player_id: player.into(),
        first_seen: t,
        last_seen: t + chrono::Duration::minutes(42),
        events,
        sessions: 3,
        playtime_seconds: 1234,
        purchases: 1,
        revenue_minor: BTreeMap::from([("EUR".to_string(), 499)]),
        levels_completed: 7,
        xp: 900,
        current_level: Some("world-2".into()),
        country: Some("DE".into()),
        language: Some("de".into()),
        consent_analytics: Some(true),
        consent_personalisation: Some(false),
        last_seq: events,
    }
}

/// Deterministic results per (game, day), so that a cached answer can be compared with a
/// fresh computation.
pub fn active_users_of(game: &GameId, range: DateRange) -> Vec<ActiveUsersDay> {
    range
        .days()
        .map(|d| {
            let dau = (d.ordinal() as u64 + game.as_str().len() as u64) % 97 + 1;
            ActiveUsersDay { day: d, dau, wau: dau * 3, mau: dau * 9, stickiness: 1.0 / 9.0 }
        })
        .collect()
}
pub fn sessions_of(game: &GameId, range: DateRange) -> Vec<SessionsDay> {
    range
        .days()
        .map(|d| SessionsDay {
            day: d,
            sessions_started: d.ordinal() as u64 + game.as_str().len() as u64,
            sessions_closed: d.ordinal() as u64,
            average_length_seconds: 123.25,
            length_distribution: SESSION_BUCKETS
                .iter()
                .enumerate()
                .map(|(i, (b, _))| LengthBucket { bucket: b.to_string(), sessions: i as u64 })
                .collect(),
        })
        .collect()
}
pub fn revenue_of(game: &GameId, range: DateRange) -> Vec<RevenueDay> {
    range
        .days()
        .map(|d| RevenueDay {
            day: d,
            currency: "USD".into(),
            revenue_minor: d.ordinal() as i64 * 100 + game.as_str().len() as i64,
            purchases: 4,
            payers: 2,
            dau: 40,
            arpdau_minor: 2.5,
            arppu_minor: 50.0,
            conversion: 0.05,
        })
        .collect()
}
pub fn funnel_of(game: &GameId) -> Vec<FunnelStep> {
    vec![
        FunnelStep::new(
            format!("{game}-1"),
            FunnelCounts { starts: 10, completes: 8, fails: 2, players_started: 7, ..Default::default() },
        ),
        FunnelStep::new(
            format!("{game}-2"),
            FunnelCounts { starts: 8, completes: 2, fails: 6, players_started: 5, ..Default::default() },
        ),
    ]
}

#[derive(Default)]
pub struct CountingState {
    pub profile_calls: AtomicU64,
    pub active_calls: AtomicU64,
    pub sessions_calls: AtomicU64,
    pub revenue_calls: AtomicU64,
    pub funnel_calls: AtomicU64,
    pub fail: AtomicBool,
    /// Each active-users query takes this long (milliseconds), as a slow database would.
    pub active_delay_ms: AtomicU64,
    pub profiles: Mutex<HashMap<(String, String), PlayerProfile>>,
}

/// The inner store of the tests: in memory, counting every call.
#[derive(Clone, Default)]
pub struct CountingStore(pub Arc<CountingState>);

impl CountingStore {
    pub fn with_profile(self, p: PlayerProfile) -> Self {
        self.0.profiles.lock().unwrap().insert((p.game_id.clone(), p.player_id.clone()), p);
        self
    }
    pub fn remove_profile(&self, game: &str, player: &str) {
        self.0.profiles.lock().unwrap().remove(&(game.to_string(), player.to_string()));
    }
    pub fn total(&self) -> u64 {
        let s = &self.0;
        [&s.profile_calls, &s.active_calls, &s.sessions_calls, &s.revenue_calls, &s.funnel_calls]
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .sum()
    }
    fn check(&self) -> Result<(), StoreError> {
        if self.0.fail.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("test store down".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl AnalyticsQueries for CountingStore {
    async fn player_profile(&self, game: &GameId, player: &PlayerId) -> Result<Option<PlayerProfile>, StoreError> {
        self.0.profile_calls.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        Ok(self.0.profiles.lock().unwrap().get(&(game.to_string(), player.to_string())).cloned())
    }
    async fn active_users(&self, game: &GameId, range: DateRange) -> Result<Vec<ActiveUsersDay>, StoreError> {
        self.0.active_calls.fetch_add(1, Ordering::SeqCst);
        let delay = self.0.active_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        self.check()?;
        Ok(active_users_of(game, range))
    }
    async fn sessions(&self, game: &GameId, range: DateRange) -> Result<Vec<SessionsDay>, StoreError> {
        self.0.sessions_calls.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        Ok(sessions_of(game, range))
    }
    async fn revenue(&self, game: &GameId, range: DateRange) -> Result<Vec<RevenueDay>, StoreError> {
        self.0.revenue_calls.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        Ok(revenue_of(game, range))
    }
    async fn funnel(&self, game: &GameId) -> Result<Vec<FunnelStep>, StoreError> {
        self.0.funnel_calls.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        Ok(funnel_of(game))
    }
}

/// Times one call.
/// Repeats `read`, 20 ms apart for up to a second (write-backs are background tasks), until
/// one is answered without the store, whose reads `calls` counts; returns that answer.
pub async fn answered_by_redis<T, F, Fut>(calls: &AtomicU64, mut read: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = calls.load(Ordering::SeqCst);
        let answer = read().await;
        if calls.load(Ordering::SeqCst) == before {
            return Some(answer);
        }
    }
    None
}

pub async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let v = f.await;
    (v, start.elapsed())
}

// ---- a TCP proxy in front of the real Redis ----

#[derive(Default)]
pub struct ProxyControl {
    /// While set, nothing is forwarded in either direction (a hung server).
    pub frozen: AtomicBool,
    /// While armed, the first reply is held back until `expect_sets` SET commands arrived
    /// from the client (or 2 s passed); `sets_before_first_reply` records how many had.
    pub armed: AtomicBool,
    pub expect_sets: AtomicU64,
    pub sets_seen: AtomicU64,
    pub sets_before_first_reply: AtomicU64,
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub control: Arc<ProxyControl>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// A proxy to the real Redis on `bind` (e.g. "127.0.0.1:0").
    pub async fn start(bind: &str) -> Proxy {
        let url = redis_url().await;
        let upstream = url.trim_start_matches("redis://").split('/').next().unwrap().to_string();
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let control =
            Arc::new(ProxyControl { sets_before_first_reply: AtomicU64::new(u64::MAX), ..Default::default() });
        let ctl = control.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                conns.spawn(pump(cr, sw, ctl.clone(), true));
                conns.spawn(pump(sr, cw, ctl.clone(), false));
            }
        });
        Proxy { addr, control, task }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    ctl: Arc<ProxyControl>,
    client_to_server: bool,
) {
    const SET: &[u8] = b"$3\r\nSET\r\n";
    let mut buf = vec![0u8; 64 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while ctl.frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if ctl.armed.load(Ordering::SeqCst) {
            if client_to_server {
                let mut window = std::mem::take(&mut tail);
                window.extend_from_slice(&buf[..n]);
                let count = window.windows(SET.len()).filter(|w| w.eq_ignore_ascii_case(SET)).count() as u64;
                ctl.sets_seen.fetch_add(count, Ordering::SeqCst);
                tail = window[window.len().saturating_sub(SET.len() - 1)..].to_vec();
            } else if ctl.sets_before_first_reply.load(Ordering::SeqCst) == u64::MAX {
                let deadline = Instant::now() + Duration::from_secs(2);
                while ctl.sets_seen.load(Ordering::SeqCst) < ctl.expect_sets.load(Ordering::SeqCst)
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                ctl.sets_before_first_reply.store(ctl.sets_seen.load(Ordering::SeqCst), Ordering::SeqCst);
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A local port that nothing listens on (bound, then released).
pub async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

// ---- the real Redis Cluster (3 masters + 3 replicas: `scripts/services up redis-cluster`) ----

/// GM_REDIS_CLUSTER_URLS (the seed nodes, comma-separated), which must be set and name a
/// healthy cluster: these tests never skip.
pub async fn cluster_urls() -> String {
    let urls = std::env::var("GM_REDIS_CLUSTER_URLS").expect(
        "GM_REDIS_CLUSTER_URLS is not set: run `eval \"$(scripts/services env)\"` (and `scripts/services up redis-cluster`)",
    );
    let nodes = cluster_nodes_of(&urls).await;
    let masters = nodes.iter().filter(|n| n.is_master() && !n.slots.is_empty()).count();
    assert!(masters >= 3, "the cluster at {urls} has {masters} masters with slots, expected 3: {nodes:#?}");
    urls
}

/// Cluster mode on the real cluster, with a fresh prefix `gm:test:<uuid>:`.
pub async fn cluster_config() -> RedisConfig {
    let mut cfg = RedisConfig::cluster(cluster_urls().await, format!("gm:test:{}:", uuid::Uuid::new_v4()));
    cfg.recommendation_ttl_ms = 5_000;
    // The machine is shared by builds and other tests: a little more room than op_timeout 50.
    cfg.op_timeout_ms = 200;
    cfg
}

/// A line of CLUSTER NODES.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub id: String,
    /// `host:port`
    pub addr: String,
    pub flags: Vec<String>,
    /// The id of its master, for a replica.
    pub master_of: Option<String>,
    /// Slot ranges it serves (masters).
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    pub fn is_master(&self) -> bool {
        self.flags.iter().any(|f| f == "master")
    }
    pub fn failed(&self) -> bool {
        self.flags.iter().any(|f| f == "fail" || f == "fail?")
    }
    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
    }
}

/// The seed URLs of GM_REDIS_CLUSTER_URLS.
pub fn seed_urls(urls: &str) -> Vec<String> {
    urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect()
}

/// A connection to one node (not cluster-aware).
pub async fn node_connection(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap_or_else(|e| panic!("{url} is not a Redis URL: {e}"));
    tokio::time::timeout(Duration::from_secs(5), client.get_multiplexed_async_connection())
        .await
        .unwrap_or_else(|_| panic!("Redis node {url} did not answer within 5 s"))
        .unwrap_or_else(|e| {
            panic!("Redis node {url} is unreachable: {e}; start it with `scripts/services up redis-cluster`")
        })
}

/// CLUSTER NODES as seen by the first seed node that answers.
pub async fn cluster_nodes_of(urls: &str) -> Vec<ClusterNode> {
    let mut last_error = String::new();
    for url in seed_urls(urls) {
        let Ok(client) = redis::Client::open(url.as_str()) else { continue };
        let attempt = async {
            let mut con = client.get_multiplexed_async_connection().await?;
            redis::cmd("CLUSTER").arg("NODES").query_async::<String>(&mut con).await
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(text)) => return parse_cluster_nodes(&text),
            Ok(Err(e)) => last_error = format!("{url}: {e}"),
            Err(_) => last_error = format!("{url}: no answer within 2 s"),
        }
    }
    panic!("no node of the Redis Cluster at {urls} answered CLUSTER NODES ({last_error}); start it with `scripts/services up redis-cluster`")
}

pub fn parse_cluster_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let addr = f[1].split('@').next().unwrap().split(',').next().unwrap().to_string();
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .map(|s| match s.split_once('-') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => (s.parse().unwrap(), s.parse().unwrap()),
                })
                .collect();
            ClusterNode {
                id: f[0].to_string(),
                addr,
                flags: f[2].split(',').map(|s| s.replace("myself", "")).filter(|s| !s.is_empty()).collect(),
                master_of: (f[3] != "-").then(|| f[3].to_string()),
                slots,
            }
        })
        .collect()
}

/// The slot of `full_key` according to the server (CLUSTER KEYSLOT).
pub async fn server_slot(con: &mut redis::aio::MultiplexedConnection, full_key: &str) -> u16 {
    redis::cmd("CLUSTER").arg("KEYSLOT").arg(full_key).query_async(con).await.unwrap()
}

/// The masters (addresses) that serve the slots of `full_keys`, by CLUSTER KEYSLOT and
/// CLUSTER NODES.
pub async fn masters_of(full_keys: &[String]) -> std::collections::BTreeSet<String> {
    let urls = cluster_urls().await;
    let nodes = cluster_nodes_of(&urls).await;
    let mut con = node_connection(&seed_urls(&urls)[0]).await;
    let mut masters = std::collections::BTreeSet::new();
    for k in full_keys {
        let slot = server_slot(&mut con, k).await;
        let owner = nodes
            .iter()
            .find(|n| n.is_master() && n.serves(slot))
            .unwrap_or_else(|| panic!("no master serves slot {slot}"));
        masters.insert(owner.addr.clone());
    }
    masters
}

/// A cluster-aware connection for looking behind the cache's back.
pub async fn raw_cluster() -> redis::cluster_async::ClusterConnection {
    let client = redis::cluster::ClusterClient::new(seed_urls(&cluster_urls().await)).unwrap();
    client.get_async_connection().await.unwrap()
}

/// Every key under `prefix` on every master (SCAN on each).
pub async fn cluster_keys_under(prefix: &str) -> Vec<String> {
    let nodes = cluster_nodes_of(&cluster_urls().await).await;
    let mut out = Vec::new();
    for master in nodes.iter().filter(|n| n.is_master() && !n.failed() && !n.slots.is_empty()) {
        out.extend(keys_under(&mut node_connection(&master.url()).await, prefix).await);
    }
    out.sort();
    out
}

/// Deletes the test's keys on the cluster and checks that none is left on any master.
pub async fn cleanup_cluster(cache: &RedisCache) {
    cache.delete_prefix("").await.expect("cleanup failed");
    let left = cluster_keys_under(&cache.config().key_prefix).await;
    assert!(left.is_empty(), "keys left behind: {left:?}");
}
