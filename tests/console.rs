//! The web console in a real browser (issue 18): headless Chromium driven through chromedriver
//! (Debian's `chromium` and `chromium-driver`, installed by scripts/test) with fantoccini,
//! against the embedded platform with its development sign-in. The flows end to end: sign in,
//! the overview's figures equal the API's, an analyst sees no erasure form, compliance staff
//! erase a player and watch the timeline complete, download the signed receipt and have it
//! verified; the status page; axe-core's accessibility check on every page; a screenshot of
//! every page at 1280x800 and of the overview at phone width.
//!
//! Screenshots are always taken; `GM_BLESS=1` writes them to docs/console/ (so a plain run,
//! and CI, leave the clone as it was). axe-core (tests/console/axe.min.js, MPL-2.0, from npm)
//! is injected by the test only: the console never serves it.
//!
//! Missing Chromium or chromedriver fails the test (install them: scripts/test does).

mod common;

use chrono::Utc;
use common::{post_events, spawn_app, GAME, KEY};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(20);
/// The development tokens of config/default.toml (the one-click sign-in offers them).
const DEV_ANALYST: &str = "demo-analyst-token-0001";
const DEV_COMPLIANCE: &str = "demo-compliance-token-0001";

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        for (what, path) in [("Chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)] {
            assert!(
                Path::new(path).exists(),
                "{what} is missing ({path}): the console's browser test needs Debian's chromium and chromium-driver \
                 (scripts/test installs them; or `apt-get install chromium chromium-driver`)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        Self { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, downloads: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800", "--force-device-scale-factor=1", "--lang=en-US"],
            "prefs": {"download.default_directory": downloads.display().to_string(),
                      "download.prompt_for_download": false},
        }),
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&driver.url).await {
            Ok(client) => return client,
            // chromedriver may not listen yet.
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                actix_rt::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no browser session from chromedriver at {}: {e}", driver.url),
        }
    }
}

async fn api(base: &str, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let url = format!("{base}{path}");
    let request = match method {
        "POST" => client.post(&url),
        _ => client.get(&url),
    }
    .insert_header(("Authorization", format!("Bearer {token}")));
    let mut response = match body {
        Some(b) => request.send_json(&b).await,
        None => request.send().await,
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    (response.status().as_u16(), response.json::<Value>().limit(8 << 20).await.unwrap_or(Value::Null))
}

async fn css(c: &Client, selector: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("no element {selector} within {WAIT:?}: {e}"))
}

async fn testid(c: &Client, id: &str) -> fantoccini::elements::Element {
    css(c, &format!("[data-testid=\"{id}\"]")).await
}

/// Waits until `check` holds on the page (its last answer in the panic).
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match check().await {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => panic!("{what}: {e}"),
            Err(_) => actix_rt::time::sleep(Duration::from_millis(150)).await,
        }
    }
}

async fn text_of(c: &Client, id: &str) -> String {
    testid(c, id).await.text().await.unwrap_or_default()
}

async fn sign_in(c: &Client, base: &str, role: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    // A fresh tab signs in again (the token is kept for the tab only).
    c.execute("sessionStorage.clear(); return true;", vec![]).await.unwrap();
    c.goto(&format!("{base}/")).await.unwrap();
    testid(c, &format!("dev-sign-in-{role}")).await.click().await.unwrap();
    testid(c, "nav").await;
    until("signed in", || async {
        let who = c.find(Locator::Css("[data-testid=\"who\"]")).await.map_err(|e| e.to_string())?;
        let text = who.text().await.map_err(|e| e.to_string())?;
        if text.is_empty() {
            Err("nobody yet".into())
        } else {
            Ok(())
        }
    })
    .await;
}

/// Opens `route` and waits for its first refresh (a page waiting for input, such as a player
/// to look up, has none: its status line stays empty), then checks that nothing on it failed.
async fn open(c: &Client, base: &str, route: &str, query: &str) {
    c.goto(&format!("{base}/#/{route}?{query}")).await.unwrap();
    testid(c, &format!("page-{route}")).await;
    until(&format!("{route} loaded"), || async {
        let status = c.find(Locator::Css("[data-testid=\"status\"]")).await.map_err(|e| e.to_string())?;
        let text = status.text().await.map_err(|e| e.to_string())?;
        if text.starts_with("Updated") || text.is_empty() {
            Ok(())
        } else {
            Err(format!("status line: {text:?}"))
        }
    })
    .await;
    // Nothing on the page says it failed.
    for alert in c.find_all(Locator::Css("[data-testid=\"view\"] [role=\"alert\"]")).await.unwrap() {
        let text = alert.text().await.unwrap_or_default();
        assert!(text.trim().is_empty(), "{route}: {text}");
    }
}

/// axe-core's WCAG 2 A/AA rules on the page as it is: no violation.
async fn accessible(c: &Client, page: &str) {
    static AXE: &str = include_str!("console/axe.min.js");
    c.execute(&format!("{AXE}\nreturn true;"), vec![]).await.unwrap();
    let result = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
               .then((r) => done(r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                                                           nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5)}))))
               .catch((e) => done([{id: 'axe-error', help: String(e)}]));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(result, json!([]), "accessibility violations on {page}: {result:#}");
}

/// A screenshot of the page at `width`x`height`, kept in docs/console/ under GM_BLESS=1.
async fn screenshot(c: &Client, name: &str, width: u32, height: u32, shots: &Path) {
    c.set_window_size(width, height).await.unwrap();
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 2_000, "{name}: not a real screenshot");
    std::fs::write(shots.join(format!("{name}.png")), png).unwrap();
    c.set_window_size(1280, 800).await.unwrap();
}

fn today() -> String {
    Utc::now().date_naive().to_string()
}

async fn seed(base: &str) {
    let now = Utc::now().to_rfc3339();
    let mut events = Vec::new();
    for p in 0..6 {
        let player = format!("player-{p}");
        events.push(json!({"type": "session_start", "player_id": player, "client_ts": now,
                           "personal": {"email": format!("{player}@example.com")}}));
        if p % 2 == 0 {
            events.push(json!({"type": "purchase", "player_id": player, "client_ts": now,
                               "properties": {"amount_minor": 499, "currency": "USD", "item_id": "gems"}}));
        }
    }
    let (status, body) = post_events(base, Some(KEY), json!({"events": events}).to_string().into_bytes()).await;
    assert_eq!(status, 202, "{body}");
    // Every player counted before the browser looks.
    let path = format!("/v1/analytics/{GAME}/active-users?from={}&to={}", today(), today());
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = api(base, "GET", &path, DEV_ANALYST, None).await;
        if body["days"][0]["dau"] == 6 {
            return;
        }
        assert!(Instant::now() < deadline, "the read models never counted the seeded players: {body}");
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_rt::test]
async fn the_console_in_a_real_browser() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let base = app.url();
    seed(&base).await;
    let driver = Driver::start();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let bless = std::env::var("GM_BLESS").is_ok_and(|v| v == "1");
    let shots: PathBuf =
        if bless { Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console") } else { dir.path().join("screenshots") };
    std::fs::create_dir_all(&shots).unwrap();
    let c = browser(&driver, &downloads).await;
    let range = format!("game={GAME}&from={}&to={}", today(), today());

    // The analyst: the overview's figures are the API's.
    sign_in(&c, &base, "analyst").await;
    open(&c, &base, "overview", &range).await;
    let (_, active) = api(
        &base,
        "GET",
        &format!("/v1/analytics/{GAME}/active-users?from={}&to={}", today(), today()),
        DEV_ANALYST,
        None,
    )
    .await;
    let day = &active["days"][0];
    for (card, field) in [("card-dau-value", "dau"), ("card-wau-value", "wau"), ("card-mau-value", "mau")] {
        assert_eq!(text_of(&c, card).await, day[field].to_string(), "{card} against the API's {field}: {active}");
    }
    // Every page the analyst may open: accessible, and its screenshot.
    let routes: Vec<String> = {
        let links = c.find_all(Locator::Css("[data-testid=\"nav\"] a")).await.unwrap();
        let mut routes = Vec::new();
        for link in links {
            let id = link.attr("data-testid").await.unwrap().unwrap_or_default();
            routes.push(id.trim_start_matches("nav-").to_string());
        }
        routes
    };
    assert!(routes.contains(&"overview".to_string()) && routes.contains(&"status".to_string()), "{routes:?}");
    // No compliance page for an analyst, and no erasure form even by its URL.
    assert!(!routes.contains(&"compliance".to_string()), "an analyst's nav offers compliance: {routes:?}");
    c.goto(&format!("{base}/#/compliance?{range}")).await.unwrap();
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert!(c.find(Locator::Css("[data-testid=\"erasure-form\"]")).await.is_err(), "an analyst sees the erasure form");
    for route in &routes {
        open(&c, &base, route, &range).await;
        accessible(&c, route).await;
        screenshot(&c, route, 1280, 800, &shots).await;
    }
    open(&c, &base, "overview", &range).await;
    screenshot(&c, "overview-phone", 390, 844, &shots).await;

    // The status page: every projection caught up with what was seeded, no dead letter.
    open(&c, &base, "status", &range).await;
    assert_eq!(text_of(&c, "status-ready-value").await, "Ready");
    let (status, api_status) = api(&base, "GET", "/v1/status", DEV_ANALYST, None).await;
    assert_eq!(status, 200, "{api_status}");
    assert_eq!(api_status["dead_letters"]["count"], 0, "{api_status}");
    assert_eq!(text_of(&c, "dead-letters-count-value").await, "0");
    assert_eq!(api_status["projections"].as_array().unwrap().len(), 8, "{api_status}");

    // The player lookup's form sets the page's `player` parameter; the profile is the API's.
    open(&c, &base, "players", &range).await;
    testid(&c, "player-id").await.send_keys("player-0").await.unwrap();
    testid(&c, "player-submit").await.click().await.unwrap();
    let (status, profile) = api(&base, "GET", &format!("/v1/players/{GAME}/player-0"), DEV_ANALYST, None).await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(text_of(&c, "profile-sessions").await, profile["sessions"].to_string(), "{profile}");
    assert!(c.current_url().await.unwrap().as_str().contains("player=player-0"));

    // Compliance staff: erase a player, watch the timeline complete, download the receipt.
    sign_in(&c, &base, "compliance").await;
    open(&c, &base, "compliance", &range).await;
    testid(&c, "erasure-player").await.send_keys("player-2").await.unwrap();
    testid(&c, "erasure-reason").await.send_keys("ticket 18").await.unwrap();
    testid(&c, "erasure-review").await.click().await.unwrap();
    let confirm = testid(&c, "erasure-confirm-panel").await.text().await.unwrap();
    assert!(confirm.contains("player-2") && confirm.contains("cannot be undone"), "{confirm}");
    accessible(&c, "compliance (confirmation step)").await;
    testid(&c, "erasure-confirm").await.click().await.unwrap();
    testid(&c, "timeline").await;
    until("the erasure completes", || async {
        let state = c.find(Locator::Css("[data-testid=\"erasure-status\"]")).await.map_err(|e| e.to_string())?;
        let text = state.text().await.map_err(|e| e.to_string())?;
        if text == "completed" {
            Ok(())
        } else {
            Err(format!("status {text}"))
        }
    })
    .await;
    for step in ["requested", "data_key_destroyed", "erasure_event_appended", "pseudonym_unlinked", "completed"] {
        testid(&c, &format!("timeline-step-{step}")).await;
    }
    let verified = testid(&c, "receipt-verified").await;
    assert_eq!(
        verified.attr("data-valid").await.unwrap().as_deref(),
        Some("true"),
        "{}",
        verified.text().await.unwrap()
    );
    testid(&c, "receipt-download").await.click().await.unwrap();
    let mut receipt_file = None;
    until("the receipt is downloaded", || {
        let found = std::fs::read_dir(&downloads)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "json"));
        receipt_file = found.clone();
        async move { found.map(|_| ()).ok_or_else(|| "no file yet".to_string()) }
    })
    .await;
    let receipt_file = receipt_file.unwrap();
    let receipt: Value = serde_json::from_slice(&std::fs::read(&receipt_file).unwrap()).unwrap();
    let (status, verdict) =
        api(&base, "POST", "/v1/privacy/receipts/verify", DEV_COMPLIANCE, Some(receipt.clone())).await;
    assert_eq!((status, verdict["valid"].as_bool()), (200, Some(true)), "{verdict}");
    // The downloaded file through the console's own check, then a forged copy.
    testid(&c, "receipt-file").await.send_keys(&receipt_file.display().to_string()).await.unwrap();
    until("the file is verified", || async {
        let v = c.find(Locator::Css("[data-testid=\"receipt-file-verdict\"]")).await.map_err(|e| e.to_string())?;
        let valid = v.attr("data-valid").await.map_err(|e| e.to_string())?;
        if valid.as_deref() == Some("true") {
            Ok(())
        } else {
            Err(format!("data-valid {valid:?}"))
        }
    })
    .await;
    let mut forged = receipt.clone();
    forged["stores"].as_array_mut().unwrap().pop();
    let forged_file = dir.path().join("forged-receipt.json");
    std::fs::write(&forged_file, forged.to_string()).unwrap();
    testid(&c, "receipt-file").await.send_keys(&forged_file.display().to_string()).await.unwrap();
    until("the forged file is refused", || async {
        let v = c.find(Locator::Css("[data-testid=\"receipt-file-verdict\"]")).await.map_err(|e| e.to_string())?;
        let valid = v.attr("data-valid").await.map_err(|e| e.to_string())?;
        if valid.as_deref() == Some("false") {
            Ok(())
        } else {
            Err(format!("data-valid {valid:?}"))
        }
    })
    .await;
    // The list shows it completed; the audit trail has the request and the completion.
    open(&c, &base, "compliance", &format!("{range}&status=completed")).await;
    let listed = testid(&c, "erasures-table").await.text().await.unwrap();
    assert!(listed.contains("completed") && listed.contains("ticket 18"), "{listed}");
    let audit = testid(&c, "audit-table").await.text().await.unwrap();
    assert!(audit.contains("erasure_completed") && audit.contains("erasure_requested"), "{audit}");
    accessible(&c, "compliance").await;
    screenshot(&c, "compliance", 1280, 800, &shots).await;

    c.close().await.unwrap();
    drop(driver);
    app.stop().await;
    eprintln!("console browser test: {:.1} s", started.elapsed().as_secs_f64());
}
