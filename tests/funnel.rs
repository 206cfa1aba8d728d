//! The funnel end to end on the embedded default (issue 16, item 5): progression events through
//! the gateway, actors and projections; the funnel counts distinct players (a retry and a
//! second attempt count once), orders the levels as configured for the game and then
//! naturally (level-2 before level-10), gives the median time from first start to first
//! completion and no completion rate where nobody started.

mod common;

use common::*;
use gamemetrics::platform::Platform;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::time::Duration;

fn progression(player: &str, time: &str, status: &str, level: &str) -> Value {
    json!({"type": "progression", "player_id": player, "client_ts": format!("2024-05-01T{time}Z"),
           "properties": {"status": status, "level_id": level}})
}

#[actix_web::test]
async fn the_funnel_counts_players_in_the_configured_then_natural_order_with_the_median_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.funnel.order = format!("{GAME}=tutorial");
    let app = Platform::start_on(&config, TcpListener::bind("127.0.0.1:0").unwrap()).await.expect("starts");
    let base = app.url();
    let events = vec![
        // tutorial: p1 1 min, p2 3 min, p3 10 min (two attempts, the first failed) → median 3 min.
        progression("p1", "09:00:00", "start", "tutorial"),
        progression("p1", "09:01:00", "complete", "tutorial"),
        progression("p2", "09:00:00", "start", "tutorial"),
        progression("p2", "09:03:00", "complete", "tutorial"),
        progression("p3", "09:00:00", "start", "tutorial"),
        progression("p3", "09:02:00", "fail", "tutorial"),
        progression("p3", "09:04:00", "start", "tutorial"),
        progression("p3", "09:10:00", "complete", "tutorial"),
        // level-2: p1 and p2 start, p1 completes in 30 s.
        progression("p1", "10:00:00", "start", "level-2"),
        progression("p1", "10:00:30", "complete", "level-2"),
        progression("p2", "10:00:00", "start", "level-2"),
        // level-10: p1 starts twice.
        progression("p1", "11:00:00", "start", "level-10"),
        progression("p1", "11:05:00", "start", "level-10"),
        // bonus: a completion without its start.
        progression("p2", "12:00:00", "complete", "bonus"),
    ];
    let n = events.len() as u64;
    let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
    let (status, answer) = post_events(&base, Some(KEY), body).await;
    assert_eq!((status, answer["accepted"].as_u64()), (202, Some(n)), "{answer}");

    let url = format!("{base}/v1/analytics/{GAME}/funnel");
    eventually(Duration::from_secs(60), || async {
        let (_, f) = get_json(&url).await;
        let events: u64 = f["steps"].as_array().map_or(0, |s| {
            s.iter()
                .map(|s| {
                    s["starts"].as_u64().unwrap() + s["completes"].as_u64().unwrap() + s["fails"].as_u64().unwrap()
                })
                .sum()
        });
        if events == n {
            Ok(())
        } else {
            Err(format!("{f}"))
        }
    })
    .await
    .unwrap();

    let (_, f) = get_json(&url).await;
    let steps: Vec<Value> = f["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            json!([
                s["level_id"],
                s["players_started"],
                s["players_completed"],
                s["players_failed"],
                s["completion_rate"],
                s["conversion_from_previous"],
                s["median_seconds_to_complete"]
            ])
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            json!(["tutorial", 3, 3, 1, 1.0, null, 180.0]),
            json!(["bonus", 0, 1, 0, null, 0.0, null]),
            json!(["level-2", 2, 1, 0, 0.5, null, 30.0]),
            json!(["level-10", 1, 0, 0, 0.0, 0.5, null]),
        ],
        "{f}"
    );
    // Events are still counted as events: p3's two tutorial starts, p1's two level-10 starts.
    assert_eq!((f["steps"][0]["starts"].as_u64(), f["steps"][3]["starts"].as_u64()), (Some(4), Some(2)), "{f}");
    app.stop().await;
}
