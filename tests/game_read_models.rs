//! Leaderboards, retention, new vs returning players and monetisation, end to end on the
//! embedded default: events with known times (around midnight UTC and the Sunday/Monday
//! week boundary, over 46 days) go in through the gateway, and every figure the new
//! endpoints show is compared with one computed here from the events alone.

mod common;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const PLAYERS: usize = 60;

fn day0() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 3, 1).unwrap()
}
const DAYS: i64 = 46;

/// A small deterministic generator (xorshift), so the test needs no seed plumbing.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone)]
struct Sent {
    player: String,
    ts: DateTime<Utc>,
    body: Value,
}

impl Sent {
    fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap()
    }
}

fn event(player: &str, ts: DateTime<Utc>, kind: &str, properties: Value) -> Sent {
    let mut body = json!({"type": kind, "player_id": player, "client_ts": ts.to_rfc3339()});
    if !properties.is_null() {
        body["properties"] = properties;
    }
    Sent { player: player.to_string(), ts, body }
}

fn score(player: &str, ts: DateTime<Utc>, board: &str, value: i64) -> Sent {
    event(player, ts, "score", json!({"board": board, "value": value}))
}

/// Each player starts on a random day and comes back on random later days; on each day
/// they start a session, post one or two scores (some in the last or first second of the
/// day) and sometimes buy something. Plus hand-placed scores on both sides of midnight
/// between Sunday 2024-03-10 and Monday 2024-03-11.
fn plan() -> Vec<Sent> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    for p in 0..PLAYERS {
        let player = format!("player-{p:03}");
        let first = rng.below(20) as i64;
        for d in first..DAYS {
            // Day 1, 7 and 30 after the first day are likelier, so retention is not all zero.
            let offset = d - first;
            let chance = if offset == 0 {
                100
            } else if [1, 7, 30].contains(&offset) {
                60
            } else {
                25
            };
            if rng.below(100) >= chance {
                continue;
            }
            let day = day0() + Duration::days(d);
            let at =
                |secs: u64| Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap()) + Duration::seconds(secs as i64);
            let start = rng.below(80_000);
            out.push(event(&player, at(start), "session_start", Value::Null));
            for _ in 0..1 + rng.below(2) {
                let secs = match rng.below(4) {
                    0 => 86_399,
                    1 => 0,
                    _ => rng.below(86_400),
                };
                out.push(score(&player, at(secs), "main", rng.below(50) as i64 * 10));
            }
            if rng.below(5) == 0 {
                let currency = if rng.below(2) == 0 { "USD" } else { "EUR" };
                let amount = 99 + rng.below(2_000) as i64;
                out.push(event(
                    &player,
                    at(start + 60),
                    "purchase",
                    json!({"amount_minor": amount, "currency": currency, "item_id": "gems"}),
                ));
            }
        }
    }
    let sunday_last = Utc.with_ymd_and_hms(2024, 3, 10, 23, 59, 59).unwrap();
    let monday_first = Utc.with_ymd_and_hms(2024, 3, 11, 0, 0, 0).unwrap();
    out.push(score("edge-a", sunday_last, "edge", 900));
    out.push(score("edge-b", sunday_last, "edge", 500));
    out.push(score("edge-b", monday_first, "edge", 100));
    out.push(score("edge-c", monday_first, "edge", 300));
    out.push(score("edge-d", monday_first, "edge", 300));
    out
}

/// (board, period, start) → player → best score, computed from the events.
fn expected_boards(events: &[Sent]) -> BTreeMap<(String, &'static str, NaiveDate), BTreeMap<String, i64>> {
    let mut boards: BTreeMap<(String, &'static str, NaiveDate), BTreeMap<String, i64>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind() == "score") {
        let board = e.body["properties"]["board"].as_str().unwrap().to_string();
        let value = e.body["properties"]["value"].as_i64().unwrap();
        let day = e.ts.date_naive();
        let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
        for (period, start) in
            [("daily", day), ("weekly", monday), ("all_time", NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())]
        {
            let best =
                boards.entry((board.clone(), period, start)).or_default().entry(e.player.clone()).or_insert(value);
            *best = (*best).max(value);
        }
    }
    boards
}

/// Best first, ties by player id descending; rank = 1 + players with a higher score.
fn ranked(scores: &BTreeMap<String, i64>) -> Vec<(u64, String, i64)> {
    let mut rows: Vec<(String, i64)> = scores.iter().map(|(p, s)| (p.clone(), *s)).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    rows.iter().map(|(p, s)| (1 + scores.values().filter(|v| *v > s).count() as u64, p.clone(), *s)).collect()
}

fn entries(v: &Value) -> Vec<(u64, String, i64)> {
    v.as_array()
        .unwrap_or_else(|| panic!("no entries in {v}"))
        .iter()
        .map(|e| {
            (e["rank"].as_u64().unwrap(), e["player_id"].as_str().unwrap().to_string(), e["score"].as_i64().unwrap())
        })
        .collect()
}

async fn send(base: &str, events: &[Sent]) {
    for chunk in events.chunks(400) {
        let batch = json!({"events": chunk.iter().map(|e| e.body.clone()).collect::<Vec<_>>()});
        let (status, reply) = post_events(base, Some(KEY), serde_json::to_vec(&batch).unwrap()).await;
        assert_eq!(status, 202, "{reply}");
        assert_eq!(reply["accepted"].as_u64(), Some(chunk.len() as u64), "{reply}");
    }
}

async fn compare_leaderboards(base: &str, events: &[Sent]) -> Result<(), String> {
    let boards = expected_boards(events);
    for ((board, period, start), scores) in &boards {
        let want = ranked(scores);
        let url = format!("{base}/v1/leaderboards/{GAME}/{board}?period={period}&at={start}&limit=1000");
        let (status, got) = get_json(&url).await;
        if status != 200 {
            return Err(format!("{url}: HTTP {status} {got}"));
        }
        if got["total"].as_u64() != Some(want.len() as u64) || entries(&got["entries"]) != want {
            return Err(format!("{board} {period} {start}: got {got}, expected {want:?}"));
        }
    }
    Ok(())
}

#[actix_rt::test]
async fn leaderboards_retention_and_monetisation_match_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let base = app.url();
    let events = plan();
    send(&base, &events).await;
    eventually(std::time::Duration::from_secs(120), || compare_leaderboards(&base, &events)).await.unwrap();

    // Midnight and the week boundary: Sunday's and Monday's boards are apart; the week of
    // Monday 2024-03-04 holds only Sunday's scores, the next week only Monday's.
    let board = |period: &str, at: &str| format!("{base}/v1/leaderboards/{GAME}/edge?period={period}&at={at}&limit=10");
    let (_, sunday) = get_json(&board("daily", "2024-03-10")).await;
    assert_eq!(entries(&sunday["entries"]), vec![(1, "edge-a".into(), 900), (2, "edge-b".into(), 500)]);
    let (_, monday) = get_json(&board("daily", "2024-03-11")).await;
    assert_eq!(
        entries(&monday["entries"]),
        vec![(1, "edge-d".into(), 300), (1, "edge-c".into(), 300), (3, "edge-b".into(), 100)],
        "a tie shares rank 1"
    );
    let (_, week1) = get_json(&board("weekly", "2024-03-10")).await;
    assert_eq!(week1["period_start"], "2024-03-04");
    assert_eq!(entries(&week1["entries"]), entries(&sunday["entries"]));
    let (_, week2) = get_json(&board("weekly", "2024-03-17")).await;
    assert_eq!(week2["period_start"], "2024-03-11");
    assert_eq!(entries(&week2["entries"]), entries(&monday["entries"]));
    let (_, all) = get_json(&board("all_time", "2030-01-01")).await;
    assert_eq!(
        entries(&all["entries"]),
        vec![
            (1, "edge-a".into(), 900),
            (2, "edge-b".into(), 500),
            (3, "edge-d".into(), 300),
            (3, "edge-c".into(), 300)
        ]
    );

    // Pages and a player's neighbours agree with the full ranking.
    let all_main = ranked(
        &expected_boards(&events)[&("main".to_string(), "all_time", NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())],
    );
    let (_, page) = get_json(&format!("{base}/v1/leaderboards/{GAME}/main?period=all_time&offset=5&limit=7")).await;
    assert_eq!(entries(&page["entries"]), all_main[5..12].to_vec());
    for i in [0usize, 1, 17, all_main.len() - 1] {
        let (rank, player, score) = &all_main[i];
        let url = format!("{base}/v1/leaderboards/{GAME}/main/players/{player}?period=all_time&neighbours=2");
        let (status, s) = get_json(&url).await;
        assert_eq!(status, 200, "{s}");
        assert_eq!((s["entry"]["rank"].as_u64().unwrap(), s["entry"]["score"].as_i64().unwrap()), (*rank, *score));
        let want = all_main[i.saturating_sub(2)..(i + 3).min(all_main.len())].to_vec();
        assert_eq!(entries(&s["around"]), want, "neighbours of {player}");
    }
    let (status, _) = get_json(&format!("{base}/v1/leaderboards/{GAME}/main/players/nobody?period=all_time")).await;
    assert_eq!(status, 404);

    // Retention: cohort = UTC day of a player's first event; retained on day N = active on cohort + N.
    let mut days_of: BTreeMap<&str, BTreeSet<NaiveDate>> = BTreeMap::new();
    for e in &events {
        days_of.entry(&e.player).or_default().insert(e.ts.date_naive());
    }
    let (from, to) = (day0(), day0() + Duration::days(DAYS - 1));
    let (status, r) = get_json(&format!("{base}/v1/analytics/{GAME}/retention?from={from}&to={to}")).await;
    assert_eq!(status, 200, "{r}");
    let cohorts = r["cohorts"].as_array().unwrap();
    assert_eq!(cohorts.len(), DAYS as usize);
    let mut retained_somewhere = 0;
    for c in cohorts {
        let day: NaiveDate = c["day"].as_str().unwrap().parse().unwrap();
        let members: Vec<&BTreeSet<NaiveDate>> = days_of.values().filter(|d| d.first() == Some(&day)).collect();
        let back = |n: i64| members.iter().filter(|d| d.contains(&(day + Duration::days(n)))).count() as u64;
        let want = (members.len() as u64, back(1), back(7), back(30));
        let got = (
            c["players"].as_u64().unwrap(),
            c["d1"].as_u64().unwrap(),
            c["d7"].as_u64().unwrap(),
            c["d30"].as_u64().unwrap(),
        );
        assert_eq!(got, want, "cohort {day}");
        retained_somewhere += want.1 + want.2 + want.3;
    }
    assert!(retained_somewhere > 0, "the plan has returning players");

    let (_, nr) = get_json(&format!("{base}/v1/analytics/{GAME}/new-returning?from={from}&to={to}")).await;
    for d in nr["days"].as_array().unwrap() {
        let day: NaiveDate = d["day"].as_str().unwrap().parse().unwrap();
        let active: Vec<&BTreeSet<NaiveDate>> = days_of.values().filter(|s| s.contains(&day)).collect();
        let new = active.iter().filter(|s| s.first() == Some(&day)).count() as u64;
        let got = (
            d["active"].as_u64().unwrap(),
            d["new_players"].as_u64().unwrap(),
            d["returning_players"].as_u64().unwrap(),
        );
        assert_eq!(got, (active.len() as u64, new, active.len() as u64 - new), "{day}");
    }

    // Monetisation over one week.
    let (wf, wt) = (NaiveDate::from_ymd_opt(2024, 3, 11).unwrap(), NaiveDate::from_ymd_opt(2024, 3, 17).unwrap());
    let in_week: Vec<&Sent> = events.iter().filter(|e| (wf..=wt).contains(&e.ts.date_naive())).collect();
    let active: BTreeSet<&str> = in_week.iter().map(|e| e.player.as_str()).collect();
    let player_days: BTreeSet<(&str, NaiveDate)> =
        in_week.iter().map(|e| (e.player.as_str(), e.ts.date_naive())).collect();
    let payers: BTreeSet<&str> = in_week.iter().filter(|e| e.kind() == "purchase").map(|e| e.player.as_str()).collect();
    let mut revenue: BTreeMap<String, (i64, u64)> = BTreeMap::new();
    for e in in_week.iter().filter(|e| e.kind() == "purchase") {
        let r = revenue.entry(e.body["properties"]["currency"].as_str().unwrap().to_string()).or_default();
        r.0 += e.body["properties"]["amount_minor"].as_i64().unwrap();
        r.1 += 1;
    }
    assert!(!payers.is_empty(), "the plan has purchases that week");
    let (_, m) = get_json(&format!("{base}/v1/analytics/{GAME}/monetisation?from={wf}&to={wt}")).await;
    assert_eq!(m["active_players"].as_u64(), Some(active.len() as u64), "{m}");
    assert_eq!(m["active_player_days"].as_u64(), Some(player_days.len() as u64), "{m}");
    assert_eq!(m["payers"].as_u64(), Some(payers.len() as u64), "{m}");
    assert!((m["conversion"].as_f64().unwrap() - payers.len() as f64 / active.len() as f64).abs() < 1e-9);
    let currencies = m["currencies"].as_array().unwrap();
    assert_eq!(currencies.len(), revenue.len(), "{m}");
    for c in currencies {
        let (amount, purchases) = revenue[c["currency"].as_str().unwrap()];
        assert_eq!((c["revenue_minor"].as_i64().unwrap(), c["purchases"].as_u64().unwrap()), (amount, purchases));
        assert!((c["arpdau_minor"].as_f64().unwrap() - amount as f64 / player_days.len() as f64).abs() < 1e-9);
        assert!((c["arppu_minor"].as_f64().unwrap() - amount as f64 / payers.len() as f64).abs() < 1e-9);
    }
    app.stop().await;
}

#[actix_rt::test]
async fn new_routes_validate_ranges_periods_and_pages_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let base = app.url();
    for path in [
        "/v1/analytics/sim-1/retention?from=2024-03-10&to=2024-03-01",
        "/v1/analytics/sim-1/retention?from=2020-01-01&to=2024-03-01",
        "/v1/analytics/sim-1/new-returning?from=2024-03-01",
        "/v1/analytics/sim-1/monetisation?from=2024-13-01&to=2024-03-01",
        "/v1/leaderboards/sim-1/main?period=monthly",
        "/v1/leaderboards/sim-1/main?limit=0",
        "/v1/leaderboards/sim-1/main?limit=1001",
        "/v1/leaderboards/sim-1/main?offset=-1",
        "/v1/leaderboards/sim-1/main?at=yesterday",
        "/v1/leaderboards/sim-1/main/players/p1?neighbours=51",
        "/v1/leaderboards/sim-1/has%20space",
    ] {
        let (status, body) = get_json(&format!("{base}{path}")).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["reason"].as_str().is_some_and(|r| !r.is_empty()), "{path}: {body}");
    }
    // An empty board is an empty page, not an error; `at` defaults to today (UTC).
    let (status, body) = get_json(&format!("{base}/v1/leaderboards/sim-1/main")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["period_start"], Utc::now().date_naive().to_string());
    assert_eq!(body["total"], 0);
    app.stop().await;
}

async fn call_json(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let client = awc::Client::builder().timeout(std::time::Duration::from_secs(30)).finish();
    let request = match method {
        "POST" => client.post(url),
        _ => client.get(url),
    }
    .insert_header(("Authorization", format!("Bearer {token}")));
    let mut response = match body {
        Some(b) => request.insert_header(("Content-Type", "application/json")).send_body(b.to_string()).await,
        None => request.send().await,
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.json::<Value>().await.unwrap_or(Value::Null))
}

fn items(v: &Value) -> Vec<(String, String)> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {v}"))
        .iter()
        .map(|i| (i["item"].as_str().unwrap().to_string(), i["reason"]["kind"].as_str().unwrap().to_string()))
        .collect()
}

/// Recommendations through the whole pipeline: never an owned item, a newcomer gets the
/// popular ones, each list reaches recommendations.generated; and after an erasure the
/// player is gone from the leaderboards and their list is a tombstone.
#[actix_rt::test]
async fn recommendations_and_leaderboards_forget_an_erased_player() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let base = app.url();
    let now = Utc::now();
    let mut events = Vec::new();
    // Ten fans of the sword+shield pair, five of sword+potion; the victim has the sword.
    for i in 0..15 {
        let p = format!("fan-{i}");
        let second = if i < 10 { "shield" } else { "potion" };
        for item in ["sword", second] {
            events.push(event(&p, now, "purchase", json!({"amount_minor": 100, "currency": "USD", "item_id": item})));
        }
        events.push(score(&p, now, "arena", i));
    }
    events.push(event("victim", now, "item_use", json!({"item_id": "sword"})));
    events.push(score("victim", now, "arena", 1_000));
    send(&base, &events).await;

    let recs_url = |p: &str| format!("{base}/v1/players/{GAME}/{p}/recommendations?limit=3");
    let board_url = format!("{base}/v1/leaderboards/{GAME}/arena?period=all_time&limit=100");
    eventually(std::time::Duration::from_secs(60), || async {
        let (_, r) = get_json(&recs_url("victim")).await;
        let (_, b) = get_json(&board_url).await;
        match (r["items"].as_array(), b["total"].as_u64()) {
            (Some(i), Some(16)) if !i.is_empty() && i[0]["reason"]["kind"] == "similar_to" => Ok(()),
            _ => Err(format!("not there yet: {r} {b}")),
        }
    })
    .await
    .unwrap();
    let (_, r) = get_json(&recs_url("victim")).await;
    assert_eq!(
        items(&r),
        vec![("shield".into(), "similar_to".into()), ("potion".into(), "similar_to".into())],
        "shield co-occurs with sword more than potion does; the owned sword never comes back"
    );
    let (_, newcomer) = get_json(&recs_url("newcomer")).await;
    assert_eq!(
        items(&newcomer),
        vec![
            ("sword".into(), "popular".into()),
            ("shield".into(), "popular".into()),
            ("potion".into(), "popular".into())
        ]
    );
    let (_, b) = get_json(&board_url).await;
    assert_eq!(b["entries"][0]["player_id"], "victim");

    // Every list was published, keyed game:sha256(player).
    let published = |key: String| {
        let log = app.backends.log.clone();
        async move {
            let ends = log.end_offsets(gm_schemas::topics::RECOMMENDATIONS).await.unwrap();
            let mut values = Vec::new();
            for (p, end) in ends.iter().enumerate() {
                for r in log.read(gm_schemas::topics::RECOMMENDATIONS, p as u32, 0, *end as usize).await.unwrap() {
                    if r.key == key {
                        values.push(r.payload);
                    }
                }
            }
            values
        }
    };
    eventually(std::time::Duration::from_secs(30), || async {
        let v = published(gm_projections::recommend::topic_key(
            &gm_schemas::GameId::parse(GAME).unwrap(),
            &gm_schemas::PlayerId::parse("victim").unwrap(),
        ))
        .await;
        match v.last() {
            Some(last) if !last.is_empty() => Ok(()),
            _ => Err(format!("no list published yet: {} records", v.len())),
        }
    })
    .await
    .unwrap();

    let compliance = test_issuer().token("e2e-compliance", &["compliance"]);
    let (status, body) = call_json(
        "POST",
        &format!("{base}/v1/privacy/erasures"),
        &compliance,
        Some(json!({"game_id": GAME, "player_id": "victim", "reason": "test"})),
    )
    .await;
    assert!(status == 202 || status == 200, "{status} {body}");
    let id = body["erasure_id"].as_str().unwrap_or_else(|| panic!("no erasure_id in {body}")).to_string();
    eventually(std::time::Duration::from_secs(60), || async {
        let (_, s) = call_json("GET", &format!("{base}/v1/privacy/erasures/{id}"), &compliance, None).await;
        if s["status"] == "completed" {
            Ok(())
        } else {
            Err(format!("erasure not completed: {s}"))
        }
    })
    .await
    .unwrap();

    let (_, b) = get_json(&board_url).await;
    assert_eq!(b["total"], 15, "{b}");
    assert!(b["entries"].as_array().unwrap().iter().all(|e| e["player_id"] != "victim"), "{b}");
    let (status, _) = get_json(&format!("{base}/v1/leaderboards/{GAME}/arena/players/victim?period=all_time")).await;
    assert_eq!(status, 404);
    let (_, r) = get_json(&recs_url("victim")).await;
    assert!(items(&r).iter().all(|(_, why)| why == "popular"), "an erased player is a stranger: {r}");
    eventually(std::time::Duration::from_secs(30), || async {
        match published(gm_projections::recommend::topic_key(
            &gm_schemas::GameId::parse(GAME).unwrap(),
            &gm_schemas::PlayerId::parse("victim").unwrap(),
        ))
        .await
        .last()
        {
            Some(last) if last.is_empty() => Ok(()),
            _ => Err("no tombstone yet".to_string()),
        }
    })
    .await
    .unwrap();
    app.stop().await;
}
