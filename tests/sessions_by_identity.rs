//! Issue 16, items 1 and 2 on the production roles (two gateways, actors, projections as
//! processes on Kafka, PostgreSQL and Redis; PostgreSQL, because the embedded store
//! serialises writes and would hide the concurrency): 200 players' visits over three days,
//! sent as concurrent batches of about 100 in waves of eight, out of order — a visit's later
//! events before its `session_start` in one batch, or its two halves in two batches of the
//! same wave, later half first — with Segment-style visits (an `identify` without a session,
//! then `Session Started`), visits without a `session_end` (closed by the actors' timer,
//! nothing arriving after them), and a tenth of the batches sent again, the last one after
//! 300 newer events of its player. The sessions read model must equal the visits sent, day by
//! day (started, closed, total length, length distribution), and the processed topic must hold
//! each acknowledged event exactly once and close each visit exactly once, under its id.

mod common;

use chrono::{DateTime, Duration as Days, NaiveDate, TimeZone, Utc};
use common::services::{Role, TestServices};
use common::*;
use gamemetrics::platform::Backends;
use gm_projections::model::{session_bucket, SESSION_BUCKETS};
use gm_schemas::{topics, ProcessedBody, ProcessedEvent};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// session_start … session_end with the client's length.
    Ended,
    /// session_start … and nothing more: the timer closes it at its last event.
    Open,
    /// identify (no session id), then session_start … session_end.
    Identified,
}

#[derive(Debug, Clone)]
struct Visit {
    session: String,
    kind: Kind,
    day: NaiveDate,
    length: u64,
    events: Vec<Value>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn event(player: &str, session: Option<&str>, t: DateTime<Utc>, ty: &str, properties: Value) -> Value {
    let mut e = json!({"event_id": Uuid::new_v4(), "player_id": player, "client_ts": ts(t), "type": ty});
    if !properties.is_null() {
        e["properties"] = properties;
    }
    if let Some(s) = session {
        e["session_id"] = json!(s);
    }
    e
}

fn visit(player: &str, n: usize, kind: Kind, start: DateTime<Utc>, scores: usize) -> Visit {
    let session = format!("{player}-v{n}");
    let sid = Some(session.as_str());
    let mut events = Vec::new();
    if kind == Kind::Identified {
        events.push(event(player, None, start - Days::seconds(20), "profile_update", json!({"country": "DE"})));
    }
    events.push(event(player, sid, start, "session_start", Value::Null));
    for s in 1..=scores {
        // Every third score without the session id: it joins the open session by time.
        let sid = if s % 3 == 0 { None } else { sid };
        events.push(event(player, sid, start + Days::seconds(s as i64), "score", json!({"board": "main", "value": s})));
    }
    let length = match kind {
        Kind::Open => scores as u64,
        Kind::Ended | Kind::Identified => {
            let length = 600 + (n as u64 * 37) % 3000;
            let end = start + Days::seconds(scores as i64 + 1);
            events.push(event(player, sid, end, "session_end", json!({"length_seconds": length})));
            length
        }
    };
    Visit { session, kind, day: start.date_naive(), length, events }
}

/// 200 players, one to three visits each, between 10:00 and 20:00 UTC of the last three days
/// (no visit crosses midnight), and one player with a long visit of 400 scores.
fn plan(today: NaiveDate) -> Vec<Visit> {
    let mut visits = Vec::new();
    for p in 0..200usize {
        let player = format!("sess-{p:03}");
        for v in 0..(1 + p % 3) {
            let day = today - Days::days(((p + v) % 3) as i64);
            let minute = 600 + ((p * 37 + v * 211) % 590) as i64;
            let start = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap()) + Days::minutes(minute);
            let kind = [Kind::Ended, Kind::Open, Kind::Identified][(p + v) % 3];
            visits.push(visit(&player, v, kind, start, 4));
        }
    }
    let start = Utc.from_utc_datetime(&today.and_hms_opt(0, 0, 0).unwrap()) + Days::hours(9);
    visits.push(visit("sess-heavy", 0, Kind::Open, start, 400));
    visits
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Arrangement {
    InOrder,
    /// Reversed inside its batch: session_end first, session_start last.
    Reversed,
    /// Split over two batches of the same wave, the later half in the earlier batch.
    Split,
}

fn arrangement(i: usize) -> Arrangement {
    if i % 3 == 2 {
        Arrangement::Split
    } else if i % 2 == 1 {
        Arrangement::Reversed
    } else {
        Arrangement::InOrder
    }
}

/// Batches of about `size` events in waves of `in_flight`, visits dealt round-robin and
/// arranged by [`arrangement`].
fn batches(visits: &[Visit], size: usize, in_flight: usize) -> Vec<Vec<Value>> {
    let mut out: Vec<Vec<Value>> = Vec::new();
    let mut wave: Vec<Vec<Value>> = vec![Vec::new(); in_flight];
    let mut next = 0;
    for (i, v) in visits.iter().enumerate() {
        if v.events.len() > size {
            // The long visit goes alone, in order, in batches of `size`.
            out.extend(v.events.chunks(size).map(<[Value]>::to_vec));
            continue;
        }
        let b = next % in_flight;
        next += 1;
        match arrangement(i) {
            Arrangement::Split => {
                let (first, later) = v.events.split_at(v.events.len() / 2);
                wave[b].extend(later.iter().cloned());
                wave[(b + 1) % in_flight].extend(first.iter().cloned());
            }
            Arrangement::Reversed => wave[b].extend(v.events.iter().rev().cloned()),
            Arrangement::InOrder => wave[b].extend(v.events.iter().cloned()),
        }
        if wave.iter().map(Vec::len).sum::<usize>() >= size * in_flight {
            out.extend(wave.drain(..).filter(|b| !b.is_empty()));
            wave = vec![Vec::new(); in_flight];
        }
    }
    out.extend(wave.into_iter().filter(|b| !b.is_empty()));
    out
}

async fn send(client: &awc::Client, url: &str, batch: &[Value]) -> usize {
    let body = serde_json::to_vec(&json!({ "events": batch })).unwrap();
    for _ in 0..300 {
        let response = client
            .post(format!("{url}/v1/events"))
            .insert_header(("Authorization", format!("Bearer {KEY}")))
            .insert_header(("Content-Type", "application/json"))
            .send_body(body.clone())
            .await;
        if let Ok(mut r) = response {
            if r.status().as_u16() == 202 {
                let answer: Value = r.json().limit(16 * 1024 * 1024).await.unwrap();
                let results = answer["results"].as_array().unwrap();
                assert!(results.iter().all(|r| r["status"] == "accepted"), "{answer}");
                return results.len();
            }
            assert_eq!(r.status().as_u16(), 503, "only a 503 is retried");
        }
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("a batch was never accepted");
}

/// Sends `batches` in waves of `in_flight` concurrent requests, alternating gateways.
async fn send_all(urls: &[String], batches: &[Vec<Value>], in_flight: usize) -> usize {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut sent = 0;
    for (w, wave) in batches.chunks(in_flight).enumerate() {
        let requests = wave.iter().enumerate().map(|(i, b)| {
            let url = urls[(w + i) % urls.len()].clone();
            let client = client.clone();
            async move { send(&client, &url, b).await }
        });
        sent += futures::future::join_all(requests).await.into_iter().sum::<usize>();
    }
    sent
}

/// Every record of `player.events.processed`, all partitions.
async fn processed(backends: &Backends) -> Vec<ProcessedEvent> {
    let ends = backends.log.end_offsets(topics::PROCESSED).await.unwrap();
    let mut all = Vec::new();
    for (p, end) in ends.into_iter().enumerate() {
        let mut from = 0;
        while from < end {
            let records = backends.log.read(topics::PROCESSED, p as u32, from, 5_000).await.unwrap();
            let Some(last) = records.last() else { break };
            from = last.offset + 1;
            all.extend(records.iter().map(|r| serde_json::from_slice::<ProcessedEvent>(&r.payload).unwrap()));
        }
    }
    all
}

/// (started, closed, total length, distribution) per day, as the read model should say.
type DayCounts = (u64, u64, u64, Vec<u64>);

fn expected_days(visits: &[Visit]) -> BTreeMap<NaiveDate, DayCounts> {
    let mut days: BTreeMap<NaiveDate, DayCounts> = BTreeMap::new();
    for v in visits {
        let d = days.entry(v.day).or_insert_with(|| (0, 0, 0, vec![0; SESSION_BUCKETS.len()]));
        d.0 += 1;
        d.1 += 1;
        d.2 += v.length;
        d.3[session_bucket(v.length)] += 1;
    }
    days
}

async fn read_model_days(url: &str, from: NaiveDate, to: NaiveDate) -> Result<BTreeMap<NaiveDate, DayCounts>, String> {
    let (status, body) = get_json(&format!("{url}/v1/analytics/{GAME}/sessions?from={from}&to={to}")).await;
    if status != 200 {
        return Err(format!("sessions: {status} {body}"));
    }
    let mut days = BTreeMap::new();
    for d in body["days"].as_array().ok_or("no days")? {
        let day: NaiveDate = d["day"].as_str().unwrap().parse().unwrap();
        let closed = d["sessions_closed"].as_u64().unwrap();
        let total = (d["average_length_seconds"].as_f64().unwrap() * closed as f64).round() as u64;
        let buckets = d["length_distribution"].as_array().unwrap().iter().map(|b| b["sessions"].as_u64().unwrap());
        days.insert(day, (d["sessions_started"].as_u64().unwrap(), closed, total, buckets.collect()));
    }
    Ok(days)
}

#[actix_rt::test]
async fn concurrent_out_of_order_resent_visits_count_one_session_each_closed_once_by_client_or_timer() {
    let services = TestServices::create().await;
    let logs = tempfile::tempdir().unwrap();
    let _show = ShowLogsOnPanic(logs.path().to_path_buf());
    let keys = format!("{GAME}={KEY}");
    let logged = |name: &str| {
        let path = logs.path().join(format!("{name}.log"));
        move |command: &mut std::process::Command| {
            let out = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
            command.stderr(out.try_clone().unwrap()).stdout(out);
            // A short timer, so that the test sees it close the visits without a session_end.
            command
                .env("GM_ACTORS__SESSION_TIMEOUT_MS", "10000")
                .env("GM_ACTORS__SESSION_END_GRACE_MS", "4000")
                .env("GM_ACTORS__SESSION_TICK_MS", "500");
        }
    };
    let gateways = [
        Role::start_with("gateway", &services, &keys, logged("gateway-1")),
        Role::start_with("gateway", &services, &keys, logged("gateway-2")),
    ];
    let actors = Role::start_with("actors", &services, &keys, logged("actors"));
    let projections = Role::start_with("projections", &services, &keys, logged("projections"));
    for role in gateways.iter().chain([&actors, &projections]) {
        role.wait_ready().await;
    }
    let urls: Vec<String> = gateways.iter().map(Role::url).collect();

    let today = Utc::now().date_naive();
    let visits = plan(today);
    let batches = batches(&visits, 100, 8);
    let events: usize = visits.iter().map(|v| v.events.len()).sum();
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), events);
    assert_eq!(send_all(&urls, &batches, 8).await, events);
    // A tenth of the batches again, concurrently; the long visit's first batch after its 301
    // newer events (more than the 256 ids remembered before issue 16).
    let resent: Vec<Vec<Value>> = batches.iter().step_by(10).cloned().collect();
    let heavy_first = batches.iter().find(|b| b[0]["player_id"] == "sess-heavy").unwrap().clone();
    send_all(&urls, &resent, 8).await;
    send_all(&urls, &[heavy_first], 1).await;

    let expected = expected_days(&visits);
    let (from, to) = (today - Days::days(2), today);
    let url = urls[1].clone();
    let want = expected.clone();
    eventually(Duration::from_secs(120), move || {
        let (url, want) = (url.clone(), want.clone());
        async move {
            let got = read_model_days(&url, from, to).await?;
            if got == want {
                Ok(())
            } else {
                Err(format!("sessions read model: got {got:?}, expected {want:?}"))
            }
        }
    })
    .await
    .unwrap();

    // The processed topic, event by event.
    let config = services.config(logs.path());
    let backends = Backends::open(&config).await.unwrap();
    let all = processed(&backends).await;
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    let mut closes: HashMap<String, Vec<u64>> = HashMap::new();
    let (mut started, mut renamed, mut timer) = (0, 0, 0);
    for e in &all {
        let ProcessedBody::Event { derived, .. } = &e.body else { panic!("no erasure was requested: {e:?}") };
        if derived.closed_by_timer {
            timer += 1;
        } else {
            *seen.entry(e.event_id).or_default() += 1;
        }
        started += usize::from(derived.session_started);
        renamed += usize::from(derived.merged_session.is_some());
        if let Some(c) = &derived.closed_session {
            closes.entry(c.session_id.as_str().to_string()).or_default().push(c.length_seconds);
        }
    }
    let sent_ids: Vec<Uuid> =
        visits.iter().flat_map(|v| &v.events).map(|e| e["event_id"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(seen.len(), sent_ids.len(), "every acknowledged event processed, nothing else");
    for id in &sent_ids {
        assert_eq!(seen.get(id), Some(&1), "event {id} processed exactly once");
    }
    assert_eq!(started, visits.len(), "one session started per visit");
    // Identify then Session Started, arriving in that order: the implicit session is renamed
    // (arriving otherwise, the identify joins the named session, or an event without a
    // session id arriving first opens an implicit one that the next named event renames).
    let in_order_identified = visits
        .iter()
        .enumerate()
        .filter(|(i, v)| v.kind == Kind::Identified && arrangement(*i) == Arrangement::InOrder);
    assert!(renamed >= in_order_identified.count(), "identify then session: {renamed} renamed");
    let open = visits.iter().filter(|v| v.kind == Kind::Open).count();
    assert!(timer >= open, "the timer closed every visit without a session_end ({timer} < {open})");
    assert_eq!(closes.len(), visits.len(), "every visit closed, under its client's id");
    for v in &visits {
        assert_eq!(closes.get(&v.session), Some(&vec![v.length]), "visit {} closed once, {} s", v.session, v.length);
    }
    drop((gateways, actors, projections));
    services.drop_database().await;
}
