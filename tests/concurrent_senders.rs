//! Issue 14 as it was found, on the production roles (two gateways, actors, projections as
//! processes on Kafka, PostgreSQL and Redis): a history of 400 players over 12 days posted
//! as batches of 100 with eight requests in flight to two gateways, a player's events
//! straddling two batches that reach the gateways at the same moment. Every event is
//! accepted (none refused as `erased`, no 5xx answered for good) and every read model —
//! DAU, revenue and purchases per currency, payers, sessions and their lengths, the funnel,
//! player profiles — equals the counts computed from what was sent. A further day of players
//! is sent without event ids, each batch with an Idempotency-Key and twice at once (one copy
//! to each gateway): counted once too, and every acknowledged event is on the processed topic
//! exactly once by id.

mod common;

use common::services::{Role, TestServices};
use common::*;
use gamemetrics::simulate;
use std::time::Duration;

fn counter(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(f64::NAN)
}

#[actix_rt::test]
async fn concurrent_senders_whose_players_straddle_batches_lose_nothing_on_the_production_roles() {
    let services = TestServices::create().await;
    let logs = tempfile::tempdir().unwrap();
    let _show = ShowLogsOnPanic(logs.path().to_path_buf());
    let keys = format!("{GAME}={KEY}");
    let gateways = [
        Role::start_with("gateway", &services, &keys, services::logged(logs.path(), "gateway-1")),
        Role::start_with("gateway", &services, &keys, services::logged(logs.path(), "gateway-2")),
    ];
    let actors = Role::start_with("actors", &services, &keys, services::logged(logs.path(), "actors"));
    let projections = Role::start_with("projections", &services, &keys, services::logged(logs.path(), "projections"));
    for role in gateways.iter().chain([&actors, &projections]) {
        role.wait_ready().await;
    }
    let urls: Vec<String> = gateways.iter().map(Role::url).collect();

    let mut options = sim_options(&urls[0], 400);
    options.days = 12;
    options.seed = 1400;
    let plan = simulate::plan(&options, chrono::Utc::now());
    let started = std::time::Instant::now();
    let straddled = straddle::send(&urls, KEY, plan.clone(), 100, 8).await;
    // Another 60 players' day, sent without event ids: each batch with an Idempotency-Key,
    // twice at once to the two gateways. Counted once, like the rest.
    let mut keyed_options = sim_options(&urls[0], 60);
    keyed_options.seed = 1401;
    let keyed_plan: Vec<_> = simulate::plan(&keyed_options, chrono::Utc::now())
        .into_iter()
        .map(|mut e| {
            e.player_id = format!("keyed-{}", e.player_id);
            e.session_id = format!("keyed-{}", e.session_id);
            e
        })
        .collect();
    let keyed = straddle::send_keyed_twice(&urls, KEY, keyed_plan.clone(), 100).await;
    assert_eq!(keyed.accepted.len(), keyed_plan.len(), "every keyed event acknowledged once");
    let mut report = straddled;
    let mut plan = plan;
    plan.extend(keyed_plan);
    report.accepted.extend(keyed.accepted);
    report.requests += keyed.requests;
    eprintln!(
        "sent {} events in {} requests ({:.1} s), {} players straddling two concurrent batches, retried {:?}",
        plan.len(),
        report.requests,
        started.elapsed().as_secs_f64(),
        report.straddling_players,
        report.retried
    );
    assert!(report.straddling_players >= 400, "every player straddled at least once");
    assert_eq!(report.refused, Default::default(), "no event refused");
    assert_eq!(report.unsent, 0, "every batch answered 202 in the end");
    let expected = Expected::from_events(&report.accepted);
    assert_eq!(expected, Expected::from_events(&plan), "every planned event acknowledged");
    assert!(expected.dau.len() >= 12, "twelve days of history: {:?}", expected.dau.keys());
    eventually(Duration::from_secs(240), || compare_read_models(urls[1].clone(), &expected, 80)).await.unwrap();
    // Every profile, not a sample: each player present once, with every event counted once.
    compare_read_models(urls[0].clone(), &expected, expected.profiles.len()).await.unwrap();
    // And event by event, by id (the keyed events by the ids the gateways derived).
    let backends = gamemetrics::platform::Backends::open(&services.config(logs.path())).await.unwrap();
    each_acknowledged_event_once(backends.log.as_ref(), &report.accepted).await.unwrap();

    // The gateways refused nothing as erased and never left a player unanswered for good.
    for url in &urls {
        let text = services::scrape(url).await;
        assert_eq!(counter(&text, "gamemetrics_events_refused_erased_total"), 0.0, "{url}");
        assert!(counter(&text, "gamemetrics_privacy_keys_unanswered_total") >= 0.0, "{url}: metric exported");
    }
    drop((gateways, actors, projections));
    services.drop_database().await;
}
