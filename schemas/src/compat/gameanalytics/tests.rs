use super::*;
use crate::events::{EventBody, ProgressionStatus, ResourceFlow};
use crate::EventEnvelope;

fn game() -> GameId {
    GameId::parse("space-race").unwrap()
}

fn decode_with(body: &str, client_ip: Option<&str>) -> DecodedRequest {
    let g = game();
    let limits = Limits::default();
    let ctx = RequestContext { game: &g, received_at: Utc::now(), limits: &limits, client_ip, key: None };
    decode_events(body.as_bytes(), ctx).unwrap()
}

fn decode(body: Value) -> DecodedRequest {
    decode_with(&body.to_string(), None)
}

fn outcome(r: &Result<EventEnvelope, Rejection>) -> (String, Option<String>) {
    match r {
        Ok(e) => (format!("ok:{}", e.body.type_name()), None),
        Err(e) => (e.code.as_str().to_string(), e.field.clone()),
    }
}

/// The collector's documented examples (REST API reference: default annotations, then one
/// event of each category, as the docs show them) decode to the typed events they stand for.
#[test]
fn the_documented_example_events_map_onto_the_typed_events() {
    let fixture = include_str!("fixtures/events.json");
    let out = decode_with(fixture, Some("203.0.113.7"));
    let ok: Vec<&EventEnvelope> = out.events.iter().map(|r| r.as_ref().unwrap()).collect();
    assert_eq!(ok.len(), 7);
    let player = "AEBE52E7-03EE-455A-B3C4-E57283966239";
    assert!(ok.iter().all(|e| e.player_id.as_str() == player));
    assert!(ok.iter().all(|e| e.session_id.as_ref().unwrap().as_str() == "DE4B4D6F-6F7F-4F2C-8B2A-5AB21C1D5E7E"));
    assert_eq!(ok[0].client_ts.timestamp(), 1_431_002_142);

    let EventBody::SessionStart(s) = &ok[0].body else { panic!("{:?}", ok[0].body) };
    assert_eq!(s.platform.as_ref().unwrap().as_str(), "ios");
    assert_eq!(s.app_version.as_ref().unwrap().as_str(), "alpha_0.0.1");
    let personal = ok[0].personal.as_ref().and_then(|p| p.plain()).unwrap();
    assert_eq!(personal.device_id.as_deref(), Some(player), "ios_idfa, sealed at ingest");
    assert_eq!(personal.ip.as_deref(), Some("203.0.113.7"));

    let EventBody::Purchase(p) = &ok[1].body else { panic!("{:?}", ok[1].body) };
    assert_eq!((i64::from(p.amount_minor), p.currency.code(), p.item_id.as_str()), (100, "USD", "Weapon:SwordOfFire"));
    assert_eq!(p.quantity, 1);

    let EventBody::Resource(r) = &ok[2].body else { panic!("{:?}", ok[2].body) };
    assert_eq!((r.flow, r.virtual_currency.as_str(), r.amount), (ResourceFlow::Sink, "Gems", 100));
    assert_eq!(r.item_id.as_ref().unwrap().as_str(), "Weapons:SwordOfFire");

    let EventBody::Progression(l) = &ok[3].body else { panic!("{:?}", ok[3].body) };
    assert_eq!(
        (l.status, l.level_id.as_str(), l.score),
        (ProgressionStatus::Complete, "Tutorial:Level1:Part1", Some(1500))
    );

    let EventBody::Design(d) = &ok[4].body else { panic!("{:?}", ok[4].body) };
    assert_eq!((d.event_id.as_str(), d.value), ("Kill:Sword:Robot", Some(30.0)));

    let EventBody::Design(err) = &ok[5].body else { panic!("{:?}", ok[5].body) };
    assert_eq!(err.event_id.as_str(), "error:critical");
    let message = ok[5].personal.as_ref().and_then(|p| p.plain()).and_then(|p| p.free_text.clone());
    assert_eq!(message.as_deref(), Some("Something went bad in some of the smelly code!"));
    assert!(ok[1].personal.is_none(), "no personal field on events other than user and error");

    let EventBody::SessionEnd(end) = &ok[6].body else { panic!("{:?}", ok[6].body) };
    assert_eq!(end.length_seconds, Some(58));
    assert_eq!(out.refs[1].category.as_deref(), Some("business"));
}

#[test]
fn the_documented_init_body_is_accepted_and_other_bodies_are_not() {
    check_init(include_str!("fixtures/init.json").as_bytes()).unwrap();
    assert!(matches!(check_init(b"[1]"), Err(BatchError::Malformed(_))));
    assert!(matches!(check_init(b"{nope"), Err(BatchError::Malformed(_))));
}

#[test]
fn event_uuids_become_event_ids_and_a_resend_keeps_them() {
    let u = uuid::Uuid::now_v7();
    let ev = |uuid: &str| json!([{"category": "design", "user_id": "p1", "event_uuid": uuid, "client_ts": 1_700_000_000, "event_id": "a:b"}]);
    let first = decode(ev(&u.to_string()));
    assert_eq!(first.events[0].as_ref().unwrap().event_id, u);
    let a = decode(ev("not-a-uuid")).events[0].as_ref().unwrap().event_id;
    let b = decode(ev("not-a-uuid")).events[0].as_ref().unwrap().event_id;
    assert_eq!(a, b);
    assert_eq!(first.refs[0].event_uuid.as_deref(), Some(u.to_string().as_str()));
}

#[test]
fn ads_impressions_and_lower_case_statuses_are_understood() {
    let out = decode(json!([
        {"category": "ads", "user_id": "p", "ad_action": "show", "ad_type": "rewarded_video",
         "ad_sdk_name": "admob", "ad_placement": "end of level", "ad_duration": 30},
        {"category": "impression", "user_id": "p", "ad_network_name": "applovin",
         "impression_data": {"revenue": 0.0125, "country": "US"}},
        {"category": "progression", "user_id": "p", "event_id": "start:World 1"},
        {"category": "resource", "user_id": "p", "event_id": "Source:Gold:Reward:Daily Quest", "amount": 25},
    ]));
    let ok: Vec<&EventEnvelope> = out.events.iter().map(|r| r.as_ref().unwrap()).collect();
    let EventBody::Design(ads) = &ok[0].body else { panic!() };
    assert_eq!((ads.event_id.as_str(), ads.value), ("ads:show:rewarded_video:admob:end_of_level", Some(30.0)));
    let EventBody::Design(imp) = &ok[1].body else { panic!() };
    assert_eq!((imp.event_id.as_str(), imp.value), ("impression:applovin", Some(0.0125)));
    let EventBody::Progression(l) = &ok[2].body else { panic!() };
    assert_eq!((l.status, l.level_id.as_str(), l.score), (ProgressionStatus::Start, "World_1", None));
    let EventBody::Resource(r) = &ok[3].body else { panic!() };
    assert_eq!(
        (r.flow, r.amount, r.item_id.as_ref().unwrap().as_str()),
        (ResourceFlow::Source, 25, "Reward:Daily_Quest")
    );
    // No client_ts: the time of receipt.
    assert!((Utc::now() - ok[0].client_ts).num_seconds().abs() < 60);
}

#[test]
fn bad_events_are_refused_one_by_one_naming_the_collector_field_and_never_block_the_others() {
    let now = 1_700_000_000;
    let out = decode(json!([
        {"category": "design", "event_id": "a", "client_ts": now},
        {"category": "business", "user_id": "p", "event_id": "Gems:Pack", "amount": 99, "currency": "XYZ"},
        {"category": "business", "user_id": "p", "event_id": "NoItemType", "amount": 99, "currency": "USD"},
        {"category": "business", "user_id": "p", "event_id": "Gems:Pack", "amount": 0, "currency": "USD"},
        {"category": "progression", "user_id": "p", "event_id": "Finish:World1"},
        {"category": "progression", "user_id": "p", "event_id": "Start:a:b:c:d"},
        {"category": "resource", "user_id": "p", "event_id": "Sink:Gold:Item", "amount": 5},
        {"category": "resource", "user_id": "p", "event_id": "Sink:Gold:Item:Id", "amount": 2.5},
        {"category": "design", "user_id": "p", "event_id": "a:b:c:d:e:f"},
        {"category": "error", "user_id": "p", "severity": "fatal", "message": "x"},
        {"category": "session_end", "user_id": "p", "length": -3},
        {"category": "sdk_error", "error_category": "http"},
        {"category": "health", "user_id": "p"},
        {"user_id": "p"},
        {"category": "design", "user_id": "has space", "event_id": "a"},
        {"category": "design", "user_id": "p", "event_id": "a", "client_ts": 12},
        "not an object",
        {"category": "design", "user_id": "p", "event_id": "Still:Fine", "client_ts": now},
    ]));
    let got: Vec<(String, Option<String>)> = out.events.iter().map(outcome).collect();
    let expected: Vec<(String, Option<String>)> = [
        ("missing_field", Some("user_id")),
        ("invalid_field", Some("currency")),
        ("invalid_field", Some("event_id")),
        ("invalid_field", Some("amount")),
        ("invalid_field", Some("event_id")),
        ("invalid_field", Some("event_id")),
        ("invalid_field", Some("event_id")),
        ("invalid_field", Some("amount")),
        ("invalid_field", Some("event_id")),
        ("invalid_field", Some("severity")),
        ("invalid_field", Some("length")),
        ("unknown_type", Some("category")),
        ("unknown_type", Some("category")),
        ("missing_field", Some("category")),
        ("invalid_field", Some("user_id")),
        ("bad_timestamp", Some("client_ts")),
        ("malformed", None),
        ("ok:design", None),
    ]
    .iter()
    .map(|(c, f)| (c.to_string(), f.map(String::from)))
    .collect();
    assert_eq!(got, expected);
    assert_eq!(out.refs.len(), out.events.len());
}

#[test]
fn requests_that_are_not_an_array_of_events_are_refused_whole() {
    let g = game();
    let limits = Limits { max_events: 2, ..Limits::default() };
    let ctx = RequestContext { game: &g, received_at: Utc::now(), limits: &limits, client_ip: None, key: None };
    assert!(matches!(decode_events(b"{\"events\": []}", ctx), Err(BatchError::Malformed(_))));
    assert!(matches!(decode_events(b"[", ctx), Err(BatchError::Malformed(_))));
    assert!(matches!(decode_events(b" [] ", ctx), Err(BatchError::Empty)));
    assert!(matches!(decode_events(b"[{}, {}, {}]", ctx), Err(BatchError::TooManyEvents { count: 3, max: 2 })));
    let tiny = Limits { max_event_bytes: 10, ..Limits::default() };
    let ctx = RequestContext { limits: &tiny, ..ctx };
    let out = decode_events(b"[{\"category\": \"design\", \"user_id\": \"p\"}]", ctx).unwrap();
    assert_eq!(outcome(&out.events[0]).0, "too_large");
}

#[test]
fn an_idempotency_key_gives_events_without_uuid_stable_ids() {
    let g = game();
    let limits = Limits::default();
    let key = IdempotencyKey::parse("retry-1").unwrap();
    let ctx = RequestContext { game: &g, received_at: Utc::now(), limits: &limits, client_ip: None, key: Some(&key) };
    let body = br#"[{"category": "design", "user_id": "p", "event_id": "a", "client_ts": 1700000000}]"#;
    let a = decode_events(body, ctx).unwrap().events[0].as_ref().unwrap().event_id;
    let b = decode_events(body, ctx).unwrap().events[0].as_ref().unwrap().event_id;
    assert_eq!(a, b);
}

#[test]
fn names_keep_their_case_and_lose_only_what_names_cannot_hold() {
    assert_eq!(name_part(" Daily Quest (2)! "), "Daily_Quest__2__");
    assert_eq!(name_part("Level-1.b_c"), "Level-1.b_c");
}
