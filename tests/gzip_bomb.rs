//! A gzip bomb over a real socket: half a megabyte that inflates to 512 MB is refused with 413
//! at once, the process's memory does not grow by anything near what the body inflates to,
//! and the gateway keeps serving good requests afterwards.

mod common;

use common::*;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};

const INFLATED: usize = 512 * 1024 * 1024;

/// `{"events": [` followed by `INFLATED` bytes of spaces, gzip'd, built in chunks so the test
/// itself never holds the inflated body.
fn bomb() -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(br#"{"events": ["#).unwrap();
    let chunk = vec![b' '; 1024 * 1024];
    for _ in 0..INFLATED / chunk.len() {
        gz.write_all(&chunk).unwrap();
    }
    gz.finish().unwrap()
}

/// A field of /proc/self/status in kB (`VmRSS`, `VmHWM`).
fn proc_status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix(" kB")?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

async fn post(url: String, body: Vec<u8>, gzip: bool) -> (u16, Value, Duration) {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut request = client
        .post(url)
        .insert_header(("Authorization", format!("Bearer {KEY}")))
        .insert_header(("Content-Type", "application/json"));
    if gzip {
        request = request.insert_header(("Content-Encoding", "gzip"));
    }
    let started = Instant::now();
    let mut response = request.send_body(body).await.expect("the request is answered");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, started.elapsed())
}

#[actix_rt::test]
async fn a_gzip_bomb_is_refused_at_once_without_inflating_it_and_good_requests_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let base = app.url();
    let limit = test_config(dir.path()).limits.max_body_bytes;
    let bomb = bomb();
    assert!(bomb.len() < limit, "the bomb ({} bytes) must pass the raw size limit ({limit})", bomb.len());
    assert!(INFLATED > 100 * limit);

    let now = chrono::Utc::now().to_rfc3339();
    let good = |player: &str| {
        json!({"events": [{"type": "session_start", "player_id": player, "client_ts": now}]}).to_string().into_bytes()
    };
    // Warm up (workers, buffers, first-use allocations), then measure the peak from here on
    // (writing 5 to clear_refs resets VmHWM to the current RSS).
    let (status, reply, _) = post(format!("{base}/v1/events"), good("before-bomb"), false).await;
    assert_eq!(status, 202, "{reply}");
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let rss_before = proc_status_kb("VmRSS");

    for route in ["/v1/events", "/v1/batch", "/api/v1/events"] {
        let (status, reply, took) = post(format!("{base}{route}"), bomb.clone(), true).await;
        assert_eq!(status, 413, "{route}: {reply}");
        assert_eq!(reply["error"], "too_large", "{route}: {reply}");
        let reason = reply["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("after gzip decompression"), "{route}: {reason}");
        assert!(took < Duration::from_secs(2), "{route}: the bomb took {took:?} to refuse");
    }
    let growth_mb = proc_status_kb("VmHWM").saturating_sub(rss_before) / 1024;
    // Inflation stops one byte past the 1 MB limit; one such buffer per route and request
    // copies stay far below even one inflated bomb (512 MB).
    assert!(growth_mb < 64, "peak memory grew by {growth_mb} MB while refusing the bombs");

    let (status, reply, _) = post(format!("{base}/v1/events"), good("after-bomb"), false).await;
    assert_eq!(status, 202, "a good request after the bomb: {reply}");
    assert_eq!(reply["accepted"], 1, "{reply}");
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&good("gzip-after-bomb")).unwrap();
    let (status, reply, _) = post(format!("{base}/v1/events"), gz.finish().unwrap(), true).await;
    assert_eq!(status, 202, "a good gzip request after the bomb: {reply}");
    println!("gzip bomb: {} bytes inflating to {INFLATED}; peak RSS growth {growth_mb} MB", bomb.len());
    app.stop().await;
}
