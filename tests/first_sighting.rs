//! A new player's first events arriving in several requests at once (issue 14), on the
//! embedded default (SQLite) and on the production adapters (Kafka, PostgreSQL, Redis): every
//! event is accepted — none refused as `erased`, no 5xx — under one pseudonym, and counted
//! exactly once in every read model, against counts computed from what was sent.

mod common;

use chrono::{Duration as ChronoDuration, Utc};
use common::services::TestServices;
use common::*;
use gamemetrics::platform::Platform;
use gamemetrics::simulate::{self, SentEvent};
use serde_json::json;
use std::net::TcpListener;
use std::time::Duration;

async fn spawn_production_app(services: &TestServices, dir: &std::path::Path) -> Platform {
    let config = services.config(dir);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    Platform::start_on(&config, listener).await.expect("platform starts on Kafka, PostgreSQL and Redis")
}

/// 64 requests at once for each of `players`, each the player's first: the same
/// `session_start` (one event id, as a client resending it) and a purchase of its own. All
/// accepted; the read models hold each player once, with one session and 64 purchases.
async fn sixty_four_first_requests_of_new_players(base: &str, players: &[&str]) {
    let t0 = Utc::now() - ChronoDuration::hours(1);
    let mut sent = Vec::new();
    let mut requests = Vec::new();
    for player in players {
        let session = format!("s-{player}");
        let start = SentEvent {
            game_id: GAME.into(),
            player_id: player.to_string(),
            event_id: uuid::Uuid::now_v7(),
            timestamp: t0,
            session_id: session.clone(),
            body: json!({"type": "session_start", "properties": {"platform": "ios", "app_version": "1.0.0"}}),
        };
        sent.push(start.clone());
        for k in 0..64 {
            let purchase = SentEvent {
                game_id: GAME.into(),
                player_id: player.to_string(),
                event_id: uuid::Uuid::now_v7(),
                timestamp: t0 + ChronoDuration::seconds(k + 1),
                session_id: session.clone(),
                body: json!({"type": "purchase", "properties": {"amount_minor": 100 + k, "currency": "USD", "item_id": "gems", "quantity": 1}}),
            };
            sent.push(purchase.clone());
            requests.push(vec![start.clone(), purchase]);
        }
    }
    let answers = futures::future::join_all(requests.into_iter().map(|batch| async move {
        let report = straddle::send(&[base.to_string()], KEY, batch, 2, 1).await;
        (report.accepted.len(), report.refused, report.retried)
    }))
    .await;
    let mut retried = 0;
    for (accepted, refused, retries) in &answers {
        assert!(refused.is_empty(), "events refused: {refused:?}");
        assert_eq!(*accepted, 2, "both events of every request accepted");
        retried += retries.values().sum::<u64>();
    }
    eprintln!("{} concurrent first requests: {retried} answered 5xx and retried", answers.len());
    let expected = Expected::from_events(&sent);
    for player in players {
        assert_eq!(expected.profiles[*player], (65, 1, 64, 0, 0));
    }
    eventually(Duration::from_secs(120), || compare_read_models(base.to_string(), &expected, players.len()))
        .await
        .unwrap();
    // Once: the actors counted the resent session_start once, under one pseudonym.
    for player in players {
        let (_, profile) = get_json(&format!("{base}/v1/players/{GAME}/{player}")).await;
        assert_eq!(profile["last_seq"].as_u64(), Some(65), "{profile}");
    }
}

/// Eight new players, 64 concurrent first requests each, all 512 in flight together.
const NEWCOMERS: [&str; 8] =
    ["newcomer-1", "newcomer-2", "newcomer-3", "newcomer-4", "newcomer-5", "newcomer-6", "newcomer-7", "newcomer-8"];

/// 300 players over three days, sent in waves of 8 concurrent batches of 50 whose players
/// straddle two batches of a wave (tests/common/straddle.rs).
async fn concurrent_batches_sharing_new_players(base: &str) {
    let mut options = sim_options(base, 300);
    options.days = 3;
    options.seed = 14;
    let plan = simulate::plan(&options, Utc::now());
    let report = straddle::send(&[base.to_string()], KEY, plan.clone(), 50, 8).await;
    eprintln!(
        "{} events, {} requests, {} players straddling, retried {:?}",
        plan.len(),
        report.requests,
        report.straddling_players,
        report.retried
    );
    assert!(report.straddling_players >= 300, "every player straddled at least once");
    assert_eq!(report.refused, Default::default(), "no event refused");
    assert_eq!(report.unsent, 0);
    let expected = Expected::from_events(&report.accepted);
    assert_eq!(expected, Expected::from_events(&plan), "every planned event acknowledged");
    eventually(Duration::from_secs(180), || compare_read_models(base.to_string(), &expected, 60)).await.unwrap();
}

#[actix_rt::test]
async fn sixty_four_concurrent_first_requests_of_each_new_player_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    sixty_four_first_requests_of_new_players(&app.url(), &NEWCOMERS).await;
    app.stop().await;
}

#[actix_rt::test]
async fn sixty_four_concurrent_first_requests_of_each_new_player_on_postgres() {
    let services = TestServices::create().await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_production_app(&services, dir.path()).await;
    sixty_four_first_requests_of_new_players(&app.url(), &NEWCOMERS).await;
    app.stop().await;
    services.drop_database().await;
}

#[actix_rt::test]
async fn concurrent_batches_sharing_new_players_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    concurrent_batches_sharing_new_players(&app.url()).await;
    app.stop().await;
}

#[actix_rt::test]
async fn concurrent_batches_sharing_new_players_on_postgres() {
    let services = TestServices::create().await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_production_app(&services, dir.path()).await;
    concurrent_batches_sharing_new_players(&app.url()).await;
    app.stop().await;
    services.drop_database().await;
}
