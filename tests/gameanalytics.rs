//! The official GameAnalytics JavaScript SDK (npm `gameanalytics`, pinned in
//! tests/gameanalytics/package-lock.json), run unchanged in Node against the platform: init, a
//! session with business, progression, resource, design and error events, its end; then every
//! read model is compared with what the SDK really sent (every request is recorded by the
//! harness, tests/gameanalytics/sdk-session.js). Then the collector's answers that decide
//! what an SDK retries or drops, with raw requests signed as the SDKs sign them.
//!
//! Needs `node` and `npm` (Node 18 or later): without them the test fails, saying so. The
//! harness's packages are installed once with `npm ci` into `$GM_TOOLS_DIR` (default
//! `.services/tools`, outside version control), in a directory named after the lock file's
//! hash, so a new lock file installs afresh and an unchanged one costs nothing.

mod common;

use chrono::{NaiveDate, TimeZone, Utc};
use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const GAME_KEY: &str = "c0ffee5402204249437fb5a7a80a4959";
const OLD_SECRET: &str = "old-secret-key-0000000000000000000000001";
const SECRET: &str = "16813a12f718bc5c620f56944e1abc3ea13ccbac";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// FNV-1a of the lock file: the install directory's name.
fn lock_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn run(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what}: cannot run {:?} ({e}); this test needs Node.js and npm (Node 18 or later) on PATH", cmd)
    });
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// The harness's `node_modules`, installed once per lock file with `npm ci`.
fn installed_harness() -> PathBuf {
    let source = repo().join("tests/gameanalytics");
    let lock = std::fs::read(source.join("package-lock.json")).expect("tests/gameanalytics/package-lock.json");
    let tools = std::env::var_os("GM_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join(".services/tools"));
    let dir = tools.join(format!("gameanalytics-sdk-{}", lock_hash(&lock)));
    let done = dir.join(".installed");
    if !done.exists() {
        let version = run(Command::new("node").arg("--version"), "node --version");
        let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
        let major: u32 = version.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
        assert!(major >= 18, "this test needs Node.js 18 or later, found {version}");
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(source.join(file), dir.join(file)).unwrap();
        }
        run(
            Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&dir),
            "npm ci (tests/gameanalytics)",
        );
        std::fs::write(&done, "").unwrap();
    }
    dir.join("node_modules")
}

/// Runs the SDK's session against `base`; returns the harness's report.
fn sdk_session(base: &str, work: &Path) -> Value {
    let modules = installed_harness();
    let out = work.join("report.json");
    let store = work.join("local-storage");
    std::fs::create_dir_all(&store).unwrap();
    let result = Command::new("node")
        .arg(repo().join("tests/gameanalytics/sdk-session.js"))
        .env("NODE_PATH", &modules)
        .env("GA_URL", base)
        .env("GA_GAME_KEY", GAME_KEY)
        .env("GA_SECRET_KEY", SECRET)
        .env("GA_OUT", &out)
        .env("GA_STORE", &store)
        .output()
        .expect("node runs (this test needs Node.js on PATH)");
    let report = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        result.status.success(),
        "the SDK's session failed ({}):\n--- stderr ---\n{}\n--- stdout (last 4000 bytes) ---\n{}\n--- report ---\n{report}",
        result.status,
        String::from_utf8_lossy(&result.stderr),
        String::from_utf8_lossy(&result.stdout).chars().rev().take(4000).collect::<String>().chars().rev().collect::<String>(),
    );
    serde_json::from_str(&report).expect("the harness's report is JSON")
}

/// The events the SDK sent in requests the gateway took (200), once per `event_uuid`.
fn delivered_events(report: &Value) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    let mut events = Vec::new();
    for r in report["requests"].as_array().expect("requests") {
        let url = r["url"].as_str().unwrap_or_default();
        if !url.ends_with("/events") {
            continue;
        }
        assert_eq!(r["status"], 200, "the gateway refused an events request of the SDK: {r}");
        let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        for ev in body.as_array().unwrap() {
            if seen.insert(ev["event_uuid"].as_str().unwrap().to_string()) {
                events.push(ev.clone());
            }
        }
    }
    events
}

fn day_of(ev: &Value) -> NaiveDate {
    Utc.timestamp_opt(ev["client_ts"].as_i64().unwrap(), 0).unwrap().date_naive()
}

/// Every figure the read models must show, from the SDK's events alone (its own fields, not
/// the gateway's mapping code).
fn expected_from(events: &[Value]) -> Expected {
    let mut e = Expected::default();
    let players: BTreeSet<&str> = events.iter().map(|ev| ev["user_id"].as_str().unwrap()).collect();
    assert_eq!(players.len(), 1, "one SDK, one user: {players:?}");
    let player = players.into_iter().next().unwrap().to_string();
    let mut profile = (0u64, 0u64, 0u64, 0u64, 0i64);
    let mut session_day = None;
    for ev in events {
        let day = day_of(ev);
        *e.dau.entry(day).or_default() = 1;
        profile.0 += 1;
        match ev["category"].as_str().unwrap() {
            "user" => {
                profile.1 += 1;
                session_day = Some(day);
                e.sessions.entry(day).or_default().0 += 1;
            }
            "business" => {
                let r = e.revenue.entry((day, ev["currency"].as_str().unwrap().to_string())).or_default();
                r.0 += ev["amount"].as_i64().unwrap();
                r.1 += 1;
                e.payers.insert(day, 1);
                profile.2 += 1;
            }
            "progression" => {
                let id = ev["event_id"].as_str().unwrap();
                let (status, level) = id.split_once(':').unwrap();
                let f = e.funnel.entry(level.to_string()).or_default();
                match status {
                    "Start" => f.0 += 1,
                    "Complete" => {
                        f.1 += 1;
                        profile.3 += 1;
                        profile.4 += ev["score"].as_i64().unwrap_or(0);
                    }
                    "Fail" => f.2 += 1,
                    other => panic!("progression status {other}"),
                }
            }
            _ => {}
        }
    }
    for ev in events.iter().filter(|ev| ev["category"] == "session_end") {
        let s = e.sessions.entry(session_day.expect("a session start")).or_default();
        s.1 += 1;
        s.2 += ev["length"].as_u64().unwrap();
    }
    e.profiles.insert(player, profile);
    e
}

fn config_with_gameanalytics(dir: &Path) -> gamemetrics::config::Config {
    let mut config = test_config(dir);
    // Two secrets for the game key (a rotation in progress): the SDK signs with the new one.
    config.gameanalytics.keys = format!("{GAME}={GAME_KEY}:{OLD_SECRET},{GAME}={GAME_KEY}:{SECRET}");
    config
}

#[actix_rt::test]
async fn the_gameanalytics_sdk_sends_a_session_unchanged_and_every_read_model_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_gameanalytics(dir.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let app = gamemetrics::platform::Platform::start_on(&config, listener).await.expect("platform starts");
    let base = app.url();

    let work = dir.path().join("sdk");
    std::fs::create_dir_all(&work).unwrap();
    let report = {
        let (base, work) = (base.clone(), work.clone());
        actix_rt::task::spawn_blocking(move || sdk_session(&base, &work)).await.unwrap()
    };

    // Init: the SDK asked, got the gateway's clock, and corrected its own with it.
    let requests = report["requests"].as_array().unwrap();
    let init = requests.iter().find(|r| r["url"].as_str().unwrap().contains("/init")).expect("an init request");
    assert_eq!(init["status"], 200, "{init}");
    let answer: Value = serde_json::from_str(init["response"].as_str().unwrap()).unwrap();
    assert_eq!(answer["enabled"], true, "{answer}");
    let server_ts = answer["server_ts"].as_i64().unwrap();
    assert!((server_ts - Utc::now().timestamp()).abs() < 120, "{answer}");

    let events = delivered_events(&report);
    let summary: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r["status"], r["url"].as_str().unwrap_or_default().trim_start_matches(&base)))
        .collect();
    eprintln!("the SDK's requests: {summary:?}; {} events delivered", events.len());
    let categories: BTreeMap<String, usize> = events.iter().fold(BTreeMap::new(), |mut m, ev| {
        *m.entry(ev["category"].as_str().unwrap().to_string()).or_default() += 1;
        m
    });
    let want: BTreeMap<String, usize> = [
        ("user", 1),
        ("business", 2),
        ("resource", 2),
        ("progression", 4),
        ("design", 2),
        ("error", 1),
        ("session_end", 1),
    ]
    .iter()
    .map(|(c, n)| (c.to_string(), *n))
    .collect();
    assert_eq!(categories, want, "what the SDK sent");
    let expected = expected_from(&events);
    let player = expected.profiles.keys().next().unwrap().clone();

    eventually(Duration::from_secs(60), || {
        let (base, expected) = (base.clone(), &expected);
        async move { compare_read_models(base, expected, 1).await }
    })
    .await
    .unwrap();

    let day = expected.first_day();
    let range = format!("from={day}&to={day}");
    let (_, new_returning) = get_json(&format!("{base}/v1/analytics/{GAME}/new-returning?{range}")).await;
    let d = new_returning["days"].as_array().unwrap().iter().find(|d| d["day"] == day.to_string()).cloned();
    let d = d.unwrap_or_else(|| panic!("new-returning: {new_returning}"));
    assert_eq!((d["active"].as_u64(), d["new_players"].as_u64()), (Some(1), Some(1)), "{new_returning}");
    let (_, retention) = get_json(&format!("{base}/v1/analytics/{GAME}/retention?{range}")).await;
    let cohort = retention["cohorts"].as_array().unwrap().iter().find(|c| c["day"] == day.to_string()).cloned();
    assert_eq!(cohort.unwrap_or_default()["players"], 1, "{retention}");
    let (_, money) = get_json(&format!("{base}/v1/analytics/{GAME}/monetisation?{range}")).await;
    assert_eq!((money["active_players"].as_u64(), money["payers"].as_u64()), (Some(1), Some(1)), "{money}");
    let revenue: BTreeMap<String, i64> = money["currencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["currency"].as_str().unwrap().to_string(), c["revenue_minor"].as_i64().unwrap()))
        .collect();
    assert_eq!(revenue, BTreeMap::from([("EUR".to_string(), 199), ("USD".to_string(), 499)]), "{money}");

    // The profile holds no personal value: the error's message was sealed, never stored in clear.
    let (_, profile) = get_json(&format!("{base}/v1/players/{GAME}/{player}")).await;
    assert!(!profile.to_string().contains("texture missing"), "{profile}");
    // ... and the right-of-access export opens it with the player's key, with the client address
    // the session started from: both kept as the player's personal data, erased with it.
    let token = test_issuer().token("ga-compliance-officer", &["compliance"]);
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut response = client
        .get(format!("{base}/v1/privacy/exports/{GAME}/{player}"))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .expect("GET the export");
    assert_eq!(response.status().as_u16(), 200);
    let export: Value = response.json().limit(16 * 1024 * 1024).await.expect("the export is JSON");
    let text = export.to_string();
    assert!(text.contains("texture missing: hero.png"), "the error's message is not in the export: {text}");
    assert!(text.contains("127.0.0.1"), "the session's client address is not in the export: {text}");
    // Leaderboards (no GameAnalytics category is a score) and recommendations (one player
    // has no one to be compared with) have nothing of this session to show.
    app.stop().await;
}

async fn post_raw(url: &str, body: Vec<u8>, authorization: Option<String>, gzip: bool) -> (u16, Value, Option<String>) {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut request = client.post(url).insert_header(("Content-Type", "application/json"));
    if let Some(a) = authorization {
        request = request.insert_header(("Authorization", a));
    }
    if gzip {
        request = request.insert_header(("Content-Encoding", "gzip"));
    }
    let mut response = request.send_body(body).await.expect("POST");
    let status = response.status().as_u16();
    let reason = response.headers().get("x-gm-error").and_then(|v| v.to_str().ok()).map(String::from);
    let bytes = response.body().await.unwrap_or_default();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), reason)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[actix_rt::test]
async fn the_collector_answers_decide_what_an_sdk_retries_and_keeps_good_events_beside_bad_ones() {
    use gm_gateway::gameanalytics::authorization;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_with_gameanalytics(dir.path());
    config.rate_limits.per_player_per_second = 1;
    config.rate_limits.per_player_burst = 6;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let app = gamemetrics::platform::Platform::start_on(&config, listener).await.expect("platform starts");
    let base = app.url();
    let events_url = format!("{base}/v2/{GAME_KEY}/events");
    let now = Utc::now().timestamp();
    let uuid = || uuid::Uuid::new_v4().to_string();

    // A good purchase beside bad events, gzip, signed with the old secret (still valid): 400
    // listing the bad ones in the collector's shape; the purchase is in the log.
    let good = uuid();
    let body = json!([
        {"category": "business", "user_id": "ga-raw-1", "session_id": "s-raw-1", "client_ts": now, "event_uuid": good,
         "event_id": "GemPacks:Gems100", "amount": 299, "currency": "USD", "transaction_num": 1},
        {"category": "business", "user_id": "ga-raw-1", "client_ts": now, "event_uuid": uuid(),
         "event_id": "GemPacks:Gems100", "amount": 299, "currency": "DOLLARS"},
        {"category": "health", "user_id": "ga-raw-1", "client_ts": now, "event_uuid": uuid()},
    ])
    .to_string();
    let zipped = gzip(body.as_bytes());
    let signed = authorization(OLD_SECRET.as_bytes(), &zipped);
    let (status, reply, _) = post_raw(&events_url, zipped.clone(), Some(signed), true).await;
    assert_eq!(status, 400, "{reply}");
    let refused = reply.as_array().unwrap_or_else(|| panic!("an array: {reply}"));
    assert_eq!(refused.len(), 2, "{reply}");
    assert_eq!((refused[0]["index"].as_u64(), refused[0]["category"].as_str()), (Some(1), Some("business")));
    assert_eq!(refused[0]["errors"][0]["path"], "/currency", "{reply}");
    assert_eq!(refused[0]["errors"][0]["error_type"], "invalid_field", "{reply}");
    assert_eq!(
        (refused[1]["index"].as_u64(), refused[1]["errors"][0]["error_type"].as_str()),
        (Some(2), Some("unknown_type"))
    );

    // Signed over the inflated body instead of the bytes sent, or with an unknown secret,
    // or for an unknown game key: 401 with a reason (final for the SDK).
    let wrong = authorization(SECRET.as_bytes(), body.as_bytes());
    let (status, reply, _) = post_raw(&events_url, zipped.clone(), Some(wrong), true).await;
    assert_eq!(status, 401, "{reply}");
    assert!(reply["reason"].as_str().unwrap().contains("HMAC"), "{reply}");
    let (status, _, _) = post_raw(&events_url, body.clone().into_bytes(), None, false).await;
    assert_eq!(status, 401);
    let unknown = format!("{base}/v2/0000000000000000000000000000dead/events");
    let (status, reply, _) =
        post_raw(&unknown, body.clone().into_bytes(), Some(authorization(SECRET.as_bytes(), body.as_bytes())), false)
            .await;
    assert_eq!(status, 401, "{reply}");

    // Not an array: 400 with the reason.
    let object = br#"{"category": "user"}"#.to_vec();
    let (status, reply, _) =
        post_raw(&events_url, object.clone(), Some(authorization(SECRET.as_bytes(), &object)), false).await;
    assert_eq!((status, reply["error"].as_str()), (400, Some("malformed")), "{reply}");

    // A player over its quota: 429 with an EMPTY body (what makes the SDKs retry), the
    // reason in X-GM-Error; the very same request sent again later (an SDK retries every few
    // seconds) counts every event once, those stored by the first attempt included.
    let designs = |n: usize, tag: &str| -> Vec<u8> {
        let events: Vec<Value> = (0..n)
            .map(|i| {
                json!({"category": "design", "user_id": "ga-raw-2", "client_ts": now, "event_uuid": uuid(),
                             "event_id": format!("{tag}:E{i}")})
            })
            .collect();
        Value::Array(events).to_string().into_bytes()
    };
    let sign = |b: &[u8]| Some(authorization(SECRET.as_bytes(), b));
    let first = designs(4, "First");
    let (status, reply, _) = post_raw(&events_url, first.clone(), sign(&first), false).await;
    assert_eq!((status, reply), (200, json!({})));
    let burst = designs(6, "Burst");
    let (status, reply, reason) = post_raw(&events_url, burst.clone(), sign(&burst), false).await;
    assert_eq!(status, 429, "{reply}");
    assert_eq!(reply, Value::Null, "the body of a 429 stays empty");
    assert!(reason.unwrap_or_default().contains("quota"));
    actix_rt::time::sleep(Duration::from_secs(7)).await;
    let (status, reply, _) = post_raw(&events_url, burst.clone(), sign(&burst), false).await;
    assert_eq!((status, reply), (200, json!({})));

    // Init on both paths answers the clock; a body that is not an object is refused.
    let annotations = br#"{"user_id": "ga-raw-1", "sdk_version": "rest api v2", "platform": "ios"}"#.to_vec();
    for url in [
        format!("{base}/v2/{GAME_KEY}/init"),
        format!("{base}/remote_configs/v1/init?game_key={GAME_KEY}&interval_seconds=0"),
    ] {
        let (status, reply, _) = post_raw(&url, annotations.clone(), sign(&annotations), false).await;
        assert_eq!(status, 200, "{url}: {reply}");
        assert_eq!((reply["enabled"].as_bool(), reply["flags"].as_array().map(Vec::len)), (Some(true), Some(0)));
        assert!((reply["server_ts"].as_i64().unwrap() - Utc::now().timestamp()).abs() < 60);
    }
    let (status, _, _) = post_raw(&format!("{base}/v2/{GAME_KEY}/init"), b"[]".to_vec(), sign(b"[]"), false).await;
    assert_eq!(status, 400);

    // The purchase beside the refused events counts, once; the burst's player has its 10
    // events, each once.
    let today = Utc::now().date_naive();
    eventually(Duration::from_secs(60), || {
        let base = base.clone();
        async move {
            let (_, revenue) = get_json(&format!("{base}/v1/analytics/{GAME}/revenue?from={today}&to={today}")).await;
            let usd = revenue["days"].as_array().and_then(|d| d.iter().find(|r| r["currency"] == "USD").cloned());
            let (_, burst) = get_json(&format!("{base}/v1/players/{GAME}/ga-raw-2")).await;
            match usd {
                Some(r) if r["revenue_minor"] == 299 && r["purchases"] == 1 && burst["events"] == 10 => Ok(()),
                _ => Err(format!("revenue {revenue}, burst player {burst}")),
            }
        }
    })
    .await
    .unwrap();
    app.stop().await;
}

#[actix_rt::test]
async fn a_secret_key_rotates_through_the_keys_file_without_a_restart() {
    use gm_gateway::gameanalytics::authorization;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gameanalytics-keys");
    std::fs::write(&file, format!("{GAME}={GAME_KEY}:{OLD_SECRET}\n")).unwrap();
    let mut config = test_config(dir.path());
    config.gameanalytics.keys_file = Some(file.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let app = gamemetrics::platform::Platform::start_on(&config, listener).await.expect("platform starts");
    let url = format!("{}/v2/{GAME_KEY}/init", app.url());
    let body = br#"{"user_id": "ga-rotation", "sdk_version": "rest api v2", "platform": "ios"}"#.to_vec();
    let status_with = |secret: &'static str| {
        let (url, body) = (url.clone(), body.clone());
        async move { post_raw(&url, body.clone(), Some(authorization(secret.as_bytes(), &body)), false).await.0 }
    };
    assert_eq!((status_with(OLD_SECRET).await, status_with(SECRET).await), (200, 401));
    // The Secret gains the new key (overlap), then loses the old one: both take effect
    // within the file poll, and the old secret keeps working until it is removed.
    std::fs::write(&file, format!("{GAME}={GAME_KEY}:{OLD_SECRET}\n{GAME}={GAME_KEY}:{SECRET}\n")).unwrap();
    eventually(Duration::from_secs(20), || async {
        match (status_with(OLD_SECRET).await, status_with(SECRET).await) {
            (200, 200) => Ok(()),
            other => Err(format!("old, new: {other:?}")),
        }
    })
    .await
    .unwrap();
    std::fs::write(&file, format!("{GAME}={GAME_KEY}:{SECRET}\n")).unwrap();
    eventually(Duration::from_secs(20), || async {
        match (status_with(OLD_SECRET).await, status_with(SECRET).await) {
            (401, 200) => Ok(()),
            other => Err(format!("old, new: {other:?}")),
        }
    })
    .await
    .unwrap();
    app.stop().await;
}
