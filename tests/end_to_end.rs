//! The whole event path in one process on the embedded default: gateway → log → actors →
//! projections → queries, checked against figures computed independently from the events
//! the simulator had acknowledged.

mod common;

use common::*;
use gamemetrics::simulate;
use gm_projections::ProjectionName;
use serde_json::{json, Value};
use std::time::Duration;

#[actix_rt::test]
async fn a_simulated_day_of_1000_players_matches_independent_counts() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let report = simulate::run(sim_options(&app.url(), 1000)).await;
    assert_eq!(report.rejected, 0, "the simulator only sends valid events: {}", report.summary());
    assert_eq!(report.unsent, 0, "{}", report.summary());
    assert!(report.accepted.len() > 10_000, "a day of 1,000 players: {}", report.summary());
    let expected = Expected::from_events(&report.accepted);
    assert!(expected.dau.len() >= 2, "the day spans two UTC dates: {:?}", expected.dau);
    eventually(Duration::from_secs(120), || compare_read_models(app.url(), &expected, 50)).await.unwrap();
    each_acknowledged_event_once(app.backends.log.as_ref(), &report.accepted).await.unwrap();
    app.stop().await;
}

#[actix_rt::test]
async fn resubmitted_event_ids_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let options = sim_options(&app.url(), 40);
    let plan = simulate::plan(&options, chrono::Utc::now());
    let first = simulate::send(options.clone(), plan.clone()).await;
    // The same events again (same ids), as a client retrying after a lost response would.
    let second = simulate::send(options, plan).await;
    assert_eq!(first.accepted.len(), second.accepted.len());
    let mut all = first.accepted.clone();
    all.extend(second.accepted);
    let expected = Expected::from_events(&all);
    assert_eq!(expected, Expected::from_events(&first.accepted), "dedup in the expectation itself");
    eventually(Duration::from_secs(60), || compare_read_models(app.url(), &expected, 40)).await.unwrap();
    // Each event once on the processed topic, though the gateway appended it twice.
    each_acknowledged_event_once(app.backends.log.as_ref(), &first.accepted).await.unwrap();
    app.stop().await;
}

#[actix_rt::test]
async fn bad_input_gets_4xx_with_reasons_and_good_events_still_land() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let base = app.url();
    let now = chrono::Utc::now().to_rfc3339();

    // Malformed JSON, wrong shapes: 400 with a reason, never a 5xx.
    for body in [&b"{not json"[..], b"[]", b"{\"events\": 5}", b"{\"events\": []}"] {
        let (status, reply) = post_events(&base, Some(KEY), body.to_vec()).await;
        assert_eq!(status, 400, "{}: {reply}", String::from_utf8_lossy(body));
        assert!(reply["reason"].as_str().is_some_and(|r| !r.is_empty()), "{reply}");
    }
    // Oversized body: 413.
    let big = vec![b' '; 2 * 1024 * 1024];
    let (status, _) = post_events(&base, Some(KEY), big).await;
    assert_eq!(status, 413);
    // Missing and wrong API keys: 401.
    let ok_batch = serde_json::to_vec(&json!({"events": [{"type": "score", "player_id": "p", "client_ts": now, "properties": {"board": "b", "value": 1}}]})).unwrap();
    assert_eq!(post_events(&base, None, ok_batch.clone()).await.0, 401);
    assert_eq!(post_events(&base, Some("not-a-key-at-all"), ok_batch).await.0, 401);

    // A batch mixing good and bad events: bad ones get a reason each, good ones land.
    let batch = json!({"events": [
        {"type": "purchase", "player_id": "good-1", "client_ts": now, "properties": {"amount_minor": 499, "currency": "USD", "item_id": "gems"}},
        {"type": "purchase", "player_id": "bad-1", "client_ts": now, "properties": {"amount_minor": "499", "currency": "USD", "item_id": "gems"}},
        {"type": "purchase", "player_id": "bad-2", "client_ts": now, "properties": {"amount_minor": 499, "currency": "usd", "item_id": "gems"}},
        {"type": "teleport", "player_id": "bad-3", "client_ts": now},
        {"type": "score", "player_id": "bad-4", "client_ts": "1999-12-31T23:59:59Z", "properties": {"board": "b", "value": 1}},
        {"type": "score", "player_id": "bad-5", "client_ts": "yesterday", "properties": {"board": "b", "value": 1}},
        {"type": "score", "player_id": "has space", "client_ts": now, "properties": {"board": "b", "value": 1}},
        {"type": "purchase", "player_id": "good-2", "client_ts": now, "properties": {"amount_minor": 100, "currency": "EUR", "item_id": "skin"}}
    ]});
    let (status, reply) = post_events(&base, Some(KEY), serde_json::to_vec(&batch).unwrap()).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["accepted"], 2, "{reply}");
    assert_eq!(reply["rejected"], 6, "{reply}");
    let results = reply["results"].as_array().unwrap();
    let codes: Vec<&str> = results.iter().map(|r| r["code"].as_str().unwrap_or("accepted")).collect();
    assert_eq!(
        codes,
        [
            "accepted",
            "invalid_field",
            "invalid_field",
            "unknown_type",
            "bad_timestamp",
            "bad_timestamp",
            "invalid_field",
            "accepted"
        ]
    );
    for r in results.iter().filter(|r| r["status"] == "rejected") {
        assert!(r["reason"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
    }

    // The good events reached the read models; the bad players exist nowhere.
    let today = chrono::Utc::now().date_naive();
    eventually(Duration::from_secs(30), || {
        let base = base.clone();
        async move {
            let (_, revenue) = get_json(&format!("{base}/v1/analytics/{GAME}/revenue?from={today}&to={today}")).await;
            let total: i64 = revenue["days"]
                .as_array()
                .map(|d| d.iter().map(|r| r["revenue_minor"].as_i64().unwrap()).sum())
                .unwrap_or(0);
            if total == 599 {
                Ok(())
            } else {
                Err(format!("revenue {revenue}"))
            }
        }
    })
    .await
    .unwrap();
    for bad in ["bad-1", "bad-2", "bad-3", "bad-4", "bad-5"] {
        assert_eq!(get_json(&format!("{base}/v1/players/{GAME}/{bad}")).await.0, 404, "{bad}");
    }
    assert_eq!(get_json(&format!("{base}/v1/players/{GAME}/good-1")).await.0, 200);
    app.stop().await;
}

#[actix_rt::test]
async fn rebuilding_each_projection_from_offset_zero_gives_the_same_read_models() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let report = simulate::run(sim_options(&app.url(), 150)).await;
    let expected = Expected::from_events(&report.accepted);
    eventually(Duration::from_secs(60), || compare_read_models(app.url(), &expected, 30)).await.unwrap();
    for name in ProjectionName::ALL {
        let applied = rebuild(&app, name).await;
        assert!(applied > 0, "{name} replayed nothing");
        compare_read_models(app.url(), &expected, 30).await.unwrap_or_else(|e| panic!("after rebuilding {name}: {e}"));
    }
    // New traffic after the swap is applied once, on top of the rebuilt tables.
    let mut more = sim_options(&app.url(), 30);
    more.seed = 99;
    let second = simulate::run(more).await;
    assert_eq!((second.rejected, second.unsent), (0, 0), "{}", second.summary());
    let mut all = report.accepted.clone();
    all.extend(second.accepted);
    let expected = Expected::from_events(&all);
    eventually(Duration::from_secs(60), || compare_read_models(app.url(), &expected, 30)).await.unwrap();
    app.stop().await;
}

#[actix_rt::test]
async fn a_restart_recovers_state_from_snapshots_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let options = sim_options(&app.url(), 200);
    let plan = simulate::plan(&options, chrono::Utc::now());
    let (first_half, second_half) = plan.split_at(plan.len() / 2);
    let first = simulate::send(options.clone(), first_half.to_vec()).await;
    app.stop().await;

    let app = spawn_app(dir.path()).await;
    let snapshots = app.backends.snapshots.count().await.unwrap();
    assert!(snapshots > 0, "the first run left snapshots");
    let mut options = options;
    options.url = app.url();
    let second = simulate::send(options, second_half.to_vec()).await;
    let mut all = first.accepted.clone();
    all.extend(second.accepted);
    let expected = Expected::from_events(&all);
    eventually(Duration::from_secs(60), || compare_read_models(app.url(), &expected, 50)).await.unwrap();
    // Sequence numbers continue across the restart: a profile's last_seq equals its events.
    for (player, want) in expected.profiles.iter().take(20) {
        let (_, p) = get_json(&format!("{}/v1/players/{GAME}/{player}", app.url())).await;
        assert_eq!(p["last_seq"].as_u64(), Some(want.0), "{player}: {p}");
    }
    app.stop().await;
}

#[actix_rt::test]
async fn health_and_metrics_answer() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (status, ready) = get_json(&format!("{}/health/ready", app.url())).await;
    assert_eq!(status, 200, "{ready}");
    let _ = simulate::run(sim_options(&app.url(), 5)).await;
    let client = awc::Client::default();
    let metrics = client
        .get(format!("{}/metrics", app.url()))
        .insert_header(("Authorization", format!("Bearer {METRICS_TOKEN}")));
    let text = metrics.send().await.unwrap().body().await.unwrap();
    let text = String::from_utf8_lossy(&text);
    for metric in [
        "gamemetrics_http_requests_total",
        "gamemetrics_http_request_duration_seconds_bucket",
        "gamemetrics_events_accepted_total",
        "gamemetrics_log_append_duration_seconds_bucket",
        "gamemetrics_actors_live",
    ] {
        assert!(text.contains(metric), "{metric} missing from /metrics");
    }
    assert!(!text.contains("player-"), "a player id leaked into a metric label");
    let (_, openapi) = get_json(&format!("{}/openapi.json", app.url())).await;
    assert!(openapi["paths"].as_object().is_some_and(|p| p.contains_key("/v1/events")), "{openapi:?}");
    let _: Value = openapi;
    app.stop().await;
}
