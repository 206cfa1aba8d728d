//! One test per validation rule of the public format. Each builds a small event with
//! [`event`], changes the one thing the rule is about, and decodes it through
//! [`decode_batch`] exactly as the gateway does.

use super::*;
use crate::envelope::{ErasureRequest, RawRecord};
use crate::ids::Name;
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const GAME: &str = "space-race";

fn game() -> GameId {
    GameId::parse(GAME).unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The gateway's clock in every test.
fn received_at() -> DateTime<Utc> {
    t("2024-05-01T12:00:00Z")
}

/// A valid event of type `ty` with `props`, sent a minute before it was received.
fn event(ty: &str, props: Value) -> Value {
    json!({
        "player_id": "player-1",
        "client_ts": "2024-05-01T11:59:00Z",
        "type": ty,
        "properties": props,
    })
}

/// A valid `achievement` event, for the rules that do not depend on the type.
fn any_event() -> Value {
    event("achievement", json!({ "achievement_id": "first-win" }))
}

/// `ev` with the top-level field `key` set to `value`.
fn with(mut ev: Value, key: &str, value: Value) -> Value {
    ev[key] = value;
    ev
}

/// `ev` without the top-level field `key`.
fn without(mut ev: Value, key: &str) -> Value {
    ev.as_object_mut().unwrap().remove(key);
    ev
}

/// `ev` with `properties.key` set to `value`.
fn with_prop(mut ev: Value, key: &str, value: Value) -> Value {
    ev["properties"][key] = value;
    ev
}

/// `ev` without `properties.key`.
fn without_prop(mut ev: Value, key: &str) -> Value {
    ev["properties"].as_object_mut().unwrap().remove(key);
    ev
}

fn decode_body_bytes(body: &[u8]) -> Result<DecodedEvents, BatchError> {
    decode_batch(body, &game(), received_at(), &Limits::default())
}

/// Decodes a batch holding `ev` alone, sent at `sent_at` on the client's clock.
fn decode_sent(ev: Value, sent_at: Option<&str>) -> Result<EventEnvelope, Rejection> {
    let mut batch = json!({ "events": [ev] });
    if let Some(s) = sent_at {
        batch["sent_at"] = json!(s);
    }
    let mut out = decode_body_bytes(batch.to_string().as_bytes()).expect("the batch itself is valid");
    assert_eq!(out.len(), 1);
    out.remove(0)
}

/// Decodes a batch holding `ev` alone, without `sent_at`.
fn decode(ev: Value) -> Result<EventEnvelope, Rejection> {
    decode_sent(ev, None)
}

fn accepted(ev: Value) -> EventEnvelope {
    match decode(ev) {
        Ok(env) => env,
        Err(r) => panic!("expected the event to be accepted, got {r:?}"),
    }
}

/// Asserts `ev` is refused with `code`, blaming `field`, and returns the rejection.
#[track_caller]
fn rejected(ev: Value, code: RejectCode, field: &str) -> Rejection {
    match decode(ev) {
        Ok(env) => panic!("expected {code:?} on {field}, got accepted: {env:?}"),
        Err(r) => {
            assert_eq!(r.code, code, "{r:?}");
            assert_eq!(r.field.as_deref(), Some(field), "{r:?}");
            assert!(!r.reason.is_empty());
            r
        }
    }
}

/// Asserts `ev` is refused with `code` for a whole-event reason (no field to blame).
#[track_caller]
fn rejected_whole(ev: Value, code: RejectCode) -> Rejection {
    let r = decode(ev).expect_err("expected a rejection");
    assert_eq!(r.code, code, "{r:?}");
    assert_eq!(r.field, None, "{r:?}");
    r
}

/// A valid example of every event type, with the variant it must decode to.
fn examples() -> Vec<(&'static str, Value)> {
    vec![
        ("session_start", json!({ "platform": "android", "app_version": "1.2.3" })),
        ("session_end", json!({ "length_seconds": 600 })),
        ("progression", json!({ "status": "complete", "level_id": "w1:l3", "score": 1200 })),
        ("purchase", json!({ "amount_minor": 499, "currency": "USD", "item_id": "gems-100", "quantity": 2 })),
        ("resource", json!({ "flow": "sink", "virtual_currency": "gold", "amount": 50, "item_id": "sword" })),
        ("score", json!({ "board": "weekly", "value": -42 })),
        ("achievement", json!({ "achievement_id": "first-win" })),
        ("item_use", json!({ "item_id": "potion", "quantity": 3 })),
        ("design", json!({ "event_id": "boss:forest:defeated", "value": 2.5 })),
        ("profile_update", json!({ "country": "FR", "language": "fr" })),
        ("consent_update", json!({ "analytics": true, "personalisation": false })),
    ]
}

fn example(ty: &str) -> Value {
    let (_, props) = examples().into_iter().find(|(t, _)| *t == ty).unwrap();
    event(ty, props)
}

// ---------------------------------------------------------------------------------------------
// Batch-level rules
// ---------------------------------------------------------------------------------------------

#[test]
fn body_over_1_mib_is_too_large() {
    let limit = Limits::default().max_body_bytes;
    assert_eq!(limit, 1024 * 1024);
    // A syntactically valid batch padded with whitespace to one byte over the limit.
    let mut body = json!({ "events": [any_event()] }).to_string().into_bytes();
    body.resize(limit + 1, b' ');
    assert_eq!(decode_body_bytes(&body), Err(BatchError::TooLarge { bytes: limit + 1, max: limit }));
    // Exactly at the limit is fine.
    body.truncate(limit);
    assert!(decode_body_bytes(&body).is_ok());
}

#[test]
fn more_than_500_events_is_too_many_events() {
    let body = json!({ "events": vec![any_event(); 501] }).to_string();
    assert_eq!(decode_body_bytes(body.as_bytes()), Err(BatchError::TooManyEvents { count: 501, max: 500 }));
    let body = json!({ "events": vec![any_event(); 500] }).to_string();
    assert_eq!(decode_body_bytes(body.as_bytes()).unwrap().len(), 500);
}

#[test]
fn empty_events_is_empty() {
    assert_eq!(decode_body_bytes(br#"{"events": []}"#), Err(BatchError::Empty));
}

#[test]
fn body_that_is_not_json_is_malformed() {
    for body in [&b""[..], b"not json", b"{\"events\": [", b"{\"events\": []} trailing"] {
        assert!(matches!(decode_body_bytes(body), Err(BatchError::Malformed(_))), "{body:?}");
    }
}

#[test]
fn body_that_is_not_an_object_is_malformed() {
    // Includes the positional form `[events, sent_at]` that serde accepts for structs.
    let positional = json!([[any_event()], "2024-05-01T12:00:00Z"]).to_string();
    let bodies = ["[]", "\"events\"", "42", "null", positional.as_str()];
    for body in bodies {
        assert!(matches!(decode_body_bytes(body.as_bytes()), Err(BatchError::Malformed(_))), "{body}");
    }
}

#[test]
fn events_that_is_not_an_array_is_malformed() {
    for events in [json!({}), json!("x"), json!(1), Value::Null] {
        let body = json!({ "events": events }).to_string();
        assert!(matches!(decode_body_bytes(body.as_bytes()), Err(BatchError::Malformed(_))), "{body}");
    }
}

#[test]
fn batch_without_events_is_malformed() {
    assert!(matches!(decode_body_bytes(br#"{"sent_at": "2024-05-01T12:00:00Z"}"#), Err(BatchError::Malformed(_))));
}

#[test]
fn unknown_batch_field_is_malformed() {
    // A typo such as `sentAt` would otherwise silently disable the clock-skew correction.
    let body = json!({ "events": [any_event()], "sentAt": "2024-05-01T12:00:00Z" }).to_string();
    match decode_body_bytes(body.as_bytes()) {
        Err(BatchError::Malformed(reason)) => assert!(reason.contains("sentAt"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_sent_at_is_bad_sent_at() {
    for sent_at in [json!("yesterday"), json!(1714564800), json!("2024-05-01 12:00:00"), json!("1999-12-31T23:59:59Z")]
    {
        let body = json!({ "events": [any_event()], "sent_at": sent_at }).to_string();
        assert!(matches!(decode_body_bytes(body.as_bytes()), Err(BatchError::BadSentAt(_))), "{body}");
    }
    // null is the same as absent.
    let body = json!({ "events": [any_event()], "sent_at": null }).to_string();
    assert!(decode_body_bytes(body.as_bytes()).unwrap()[0].is_ok());
}

#[test]
fn events_are_decoded_in_order_each_with_its_own_outcome() {
    let body = json!({ "events": [any_event(), with(any_event(), "player_id", json!("")), example("purchase")] });
    let out = decode_body_bytes(body.to_string().as_bytes()).unwrap();
    assert_eq!(out.len(), 3);
    assert!(matches!(out[0].as_ref().unwrap().body, EventBody::Achievement(_)));
    assert_eq!(out[1].as_ref().unwrap_err().field.as_deref(), Some("player_id"));
    assert!(matches!(out[2].as_ref().unwrap().body, EventBody::Purchase(_)));
}

// ---------------------------------------------------------------------------------------------
// Event shape
// ---------------------------------------------------------------------------------------------

#[test]
fn event_over_32_kib_is_too_large_and_the_others_still_decode() {
    let limit = Limits::default().max_event_bytes;
    assert_eq!(limit, 32 * 1024);
    let big = with(any_event(), "personal", json!({ "free_text": "x".repeat(limit) }));
    let body = json!({ "events": [any_event(), big, example("score")] }).to_string();
    let out = decode_body_bytes(body.as_bytes()).unwrap();
    assert!(out[0].is_ok());
    let r = out[1].as_ref().unwrap_err();
    assert_eq!(r.code, RejectCode::TooLarge);
    assert_eq!(r.field, None);
    assert!(out[2].is_ok());
}

#[test]
fn event_of_exactly_32_kib_is_not_too_large() {
    let limit = Limits::default().max_event_bytes;
    // Pad with whitespace inside the event: what counts is the event's JSON text.
    let text = any_event().to_string();
    let padded = format!("{}{}", &text[..text.len() - 1], " ".repeat(limit - text.len()) + "}");
    assert_eq!(padded.len(), limit);
    let body = format!("{{\"events\": [{padded}]}}");
    assert!(decode_body_bytes(body.as_bytes()).unwrap()[0].is_ok());
}

#[test]
fn event_that_is_not_an_object_is_malformed() {
    for ev in [json!([1, 2]), json!("event"), json!(3), Value::Null, json!(true)] {
        let r = rejected_whole(ev.clone(), RejectCode::Malformed);
        assert!(r.reason.contains("object"), "{ev}: {r:?}");
    }
}

#[test]
fn unknown_top_level_event_field_is_invalid_field() {
    let r = rejected(with(any_event(), "user_id", json!("x")), RejectCode::InvalidField, "user_id");
    assert!(r.reason.contains("unknown field"), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// event_id
// ---------------------------------------------------------------------------------------------

#[test]
fn given_event_id_is_kept() {
    let id = "018f3a5c-7b21-7c4e-9a10-3f2b6d8e1a01";
    let env = accepted(with(any_event(), "event_id", json!(id)));
    assert_eq!(env.event_id, Uuid::parse_str(id).unwrap());
}

#[test]
fn absent_event_id_gets_a_uuid_v7() {
    let a = accepted(any_event());
    let b = accepted(with(any_event(), "event_id", Value::Null));
    assert_eq!(a.event_id.get_version_num(), 7);
    assert_eq!(b.event_id.get_version_num(), 7);
    assert_ne!(a.event_id, b.event_id);
}

#[test]
fn event_id_that_is_not_a_uuid_is_invalid_field() {
    for id in [json!("not-a-uuid"), json!(""), json!("018f3a5c-7b21-7c4e-9a10"), json!(12), json!({})] {
        rejected(with(any_event(), "event_id", id), RejectCode::InvalidField, "event_id");
    }
}

// ---------------------------------------------------------------------------------------------
// game_id
// ---------------------------------------------------------------------------------------------

#[test]
fn game_id_of_another_game_is_wrong_game() {
    let r = rejected(with(any_event(), "game_id", json!("other-game")), RejectCode::WrongGame, "game_id");
    assert!(r.reason.contains("other-game") && r.reason.contains(GAME), "{r:?}");
    rejected(with(any_event(), "game_id", json!(7)), RejectCode::WrongGame, "game_id");
}

#[test]
fn game_id_equal_to_the_key_or_absent_is_accepted() {
    assert_eq!(accepted(with(any_event(), "game_id", json!(GAME))).game_id, game());
    assert_eq!(accepted(any_event()).game_id, game());
}

// ---------------------------------------------------------------------------------------------
// player_id and session_id
// ---------------------------------------------------------------------------------------------

#[test]
fn player_id_missing_is_missing_field() {
    rejected(without(any_event(), "player_id"), RejectCode::MissingField, "player_id");
    rejected(with(any_event(), "player_id", Value::Null), RejectCode::MissingField, "player_id");
}

#[test]
fn player_id_empty_is_invalid_field() {
    rejected(with(any_event(), "player_id", json!("")), RejectCode::InvalidField, "player_id");
}

#[test]
fn player_id_over_256_characters_is_invalid_field() {
    assert!(decode(with(any_event(), "player_id", json!("p".repeat(256)))).is_ok());
    let r = rejected(with(any_event(), "player_id", json!("p".repeat(257))), RejectCode::InvalidField, "player_id");
    assert!(r.reason.contains("256"), "{r:?}");
}

#[test]
fn player_id_with_bad_characters_is_invalid_field() {
    for id in ["a b", "a%2Fb", "a#b", "a?b", "{tag}", "é", ".", ".."] {
        rejected(with(any_event(), "player_id", json!(id)), RejectCode::InvalidField, "player_id");
    }
    for id in ["user.42@studio", "ana+beta@example.com", "q1Zx/9+AbC==", "steam:76561198000000000", "auth0|5f7c8ec7"] {
        assert_eq!(accepted(with(any_event(), "player_id", json!(id))).player_id.as_str(), id);
    }
}

#[test]
fn player_id_not_a_string_is_invalid_field() {
    for id in [json!(42), json!(["p"]), json!(true)] {
        let r = rejected(with(any_event(), "player_id", id), RejectCode::InvalidField, "player_id");
        assert!(r.reason.contains("must be a string"), "{r:?}");
    }
}

#[test]
fn session_id_is_optional_and_kept() {
    assert_eq!(accepted(any_event()).session_id, None);
    assert_eq!(accepted(with(any_event(), "session_id", Value::Null)).session_id, None);
    let env = accepted(with(any_event(), "session_id", json!("s-1:retry.2")));
    assert_eq!(env.session_id.unwrap().as_str(), "s-1:retry.2");
}

#[test]
fn session_id_empty_too_long_bad_chars_or_not_a_string_is_invalid_field() {
    for id in [json!(""), json!("s".repeat(65)), json!("a b"), json!("s@1"), json!(5)] {
        rejected(with(any_event(), "session_id", id), RejectCode::InvalidField, "session_id");
    }
    assert!(decode(with(any_event(), "session_id", json!("s".repeat(64)))).is_ok());
}

// ---------------------------------------------------------------------------------------------
// schema_version
// ---------------------------------------------------------------------------------------------

#[test]
fn schema_version_1_or_absent_is_accepted() {
    assert_eq!(accepted(with(any_event(), "schema_version", json!(1))).schema_version, 1);
    assert_eq!(accepted(any_event()).schema_version, 1);
}

#[test]
fn schema_version_other_than_1_or_2_is_unsupported_version() {
    for v in [json!(3), json!(0), json!("1"), json!(1.5), json!(-1)] {
        let r = rejected(with(any_event(), "schema_version", v), RejectCode::UnsupportedVersion, "schema_version");
        assert!(r.reason.contains("supported: 1, 2"), "{r:?}");
    }
}

fn purchase_v2(props: Value) -> Value {
    with(event("purchase", props), "schema_version", json!(2))
}

fn v2_props() -> Value {
    json!({ "price": { "amount_minor": 499, "currency": "USD" }, "item_id": "gems-100", "quantity": 2, "store": "google_play" })
}

#[test]
fn schema_version_2_of_other_types_is_the_v1_shape() {
    assert_eq!(accepted(with(any_event(), "schema_version", json!(2))).schema_version, 2);
}

#[test]
fn purchase_v2_decodes_to_the_same_canonical_purchase_as_v1_plus_store() {
    let v2 = accepted(purchase_v2(v2_props()));
    let v1 = accepted(example("purchase"));
    assert_eq!(v2.schema_version, 2);
    let (EventBody::Purchase(a), EventBody::Purchase(b)) = (v1.body, v2.body) else { panic!() };
    assert_eq!(b.store, Some(Store::GooglePlay));
    assert_eq!(Purchase { store: None, ..b }, a);
}

#[test]
fn purchase_v2_rejections_name_the_field() {
    let mut no_price = v2_props();
    no_price.as_object_mut().unwrap().remove("price");
    rejected(purchase_v2(no_price), RejectCode::MissingField, "properties.price");
    rejected(purchase_v2(with_prop_v(v2_props(), "price", json!(499))), RejectCode::InvalidField, "properties.price");
    rejected(
        purchase_v2(with_prop_v(v2_props(), "price", json!({ "currency": "USD" }))),
        RejectCode::MissingField,
        "properties.price.amount_minor",
    );
    rejected(
        purchase_v2(with_prop_v(v2_props(), "price", json!({ "amount_minor": 499, "currency": "usd!" }))),
        RejectCode::InvalidField,
        "properties.price.currency",
    );
    rejected(
        purchase_v2(with_prop_v(v2_props(), "price", json!({ "amount_minor": 0, "currency": "USD" }))),
        RejectCode::InvalidField,
        "properties.price.amount_minor",
    );
    let mut no_store = v2_props();
    no_store.as_object_mut().unwrap().remove("store");
    rejected(purchase_v2(no_store), RejectCode::MissingField, "properties.store");
    rejected(
        purchase_v2(with_prop_v(v2_props(), "store", json!("steam"))),
        RejectCode::InvalidField,
        "properties.store",
    );
    // The v1 shape under version 2, and the v2 field under version 1, are named.
    rejected(
        purchase_v2(with_prop_v(v2_props(), "amount_minor", json!(499))),
        RejectCode::InvalidField,
        "properties.amount_minor",
    );
    rejected(with_prop(example("purchase"), "store", json!("web")), RejectCode::InvalidField, "properties.store");
    rejected(
        with_prop(example("purchase"), "price", json!({ "amount_minor": 1, "currency": "USD" })),
        RejectCode::InvalidField,
        "properties.price",
    );
    rejected(
        purchase_v2(with_prop_v(v2_props(), "quantity", json!(0))),
        RejectCode::InvalidField,
        "properties.quantity",
    );
}

fn with_prop_v(mut props: Value, key: &str, value: Value) -> Value {
    props[key] = value;
    props
}

// ---------------------------------------------------------------------------------------------
// client_ts and clock-skew correction
// ---------------------------------------------------------------------------------------------

#[test]
fn client_ts_missing_is_missing_field() {
    rejected(without(any_event(), "client_ts"), RejectCode::MissingField, "client_ts");
    rejected(with(any_event(), "client_ts", Value::Null), RejectCode::MissingField, "client_ts");
}

#[test]
fn client_ts_not_rfc3339_is_bad_timestamp() {
    for ts in [
        json!("2024-05-01 11:59:00"),
        json!("2024-05-01"),
        json!("yesterday"),
        json!(1714564740),
        json!("2024-05-01T11:59:00"),
    ] {
        rejected(with(any_event(), "client_ts", ts), RejectCode::BadTimestamp, "client_ts");
    }
}

#[test]
fn client_ts_before_2000_is_bad_timestamp() {
    let r =
        rejected(with(any_event(), "client_ts", json!("1999-12-31T23:59:59Z")), RejectCode::BadTimestamp, "client_ts");
    assert!(r.reason.contains("2000"), "{r:?}");
    rejected(with(any_event(), "client_ts", json!("1970-01-01T00:00:00Z")), RejectCode::BadTimestamp, "client_ts");
    assert!(decode(with(any_event(), "client_ts", json!("2000-01-01T00:00:00Z"))).is_ok());
}

#[test]
fn client_ts_with_offset_is_converted_to_utc() {
    let env = accepted(with(any_event(), "client_ts", json!("2024-05-01T13:59:00+02:00")));
    assert_eq!(env.client_ts, t("2024-05-01T11:59:00Z"));
}

#[test]
fn without_sent_at_timestamp_is_client_ts() {
    let env = accepted(any_event());
    assert_eq!(env.client_ts, t("2024-05-01T11:59:00Z"));
    assert_eq!(env.timestamp, env.client_ts);
    assert_eq!(env.sent_at, None);
    assert_eq!(env.received_at, received_at());
}

#[test]
fn skew_correction_removes_a_client_clock_one_hour_ahead() {
    // The event really happened at 11:59; the client's clock runs one hour fast, so it says
    // 12:59, and it sent the batch at what it believes is 13:00 (really 12:00 = received_at).
    let ev = with(any_event(), "client_ts", json!("2024-05-01T12:59:00Z"));
    let env = decode_sent(ev, Some("2024-05-01T13:00:00Z")).unwrap();
    assert_eq!(env.timestamp, t("2024-05-01T11:59:00Z"));
    // Exactly client_ts − (sent_at − received_at), and the raw times are kept as given.
    let sent_at = t("2024-05-01T13:00:00Z");
    assert_eq!(env.timestamp, env.client_ts - (sent_at - received_at()));
    assert_eq!(env.client_ts, t("2024-05-01T12:59:00Z"));
    assert_eq!(env.sent_at, Some(sent_at));
}

#[test]
fn skew_correction_also_removes_a_client_clock_behind() {
    let ev = with(any_event(), "client_ts", json!("2024-05-01T11:48:30Z"));
    let env = decode_sent(ev, Some("2024-05-01T11:49:30Z")).unwrap();
    assert_eq!(env.timestamp, t("2024-05-01T11:59:00Z"));
}

#[test]
fn corrected_time_over_24_hours_ahead_is_clamped_to_received_at() {
    // No sent_at, so nothing to correct: 25 h ahead of the server's clock.
    let ev = with(any_event(), "client_ts", json!("2024-05-02T13:00:00Z"));
    let env = accepted(ev.clone());
    assert_eq!(env.timestamp, received_at());
    assert_eq!(env.client_ts, t("2024-05-02T13:00:00Z"));
    // With a sent_at that explains only part of the difference, the rest still counts.
    let env = decode_sent(ev, Some("2024-05-01T12:30:00Z")).unwrap();
    assert_eq!(env.timestamp, received_at());
}

#[test]
fn corrected_time_23_hours_ahead_is_kept() {
    let env = accepted(with(any_event(), "client_ts", json!("2024-05-02T11:00:00Z")));
    assert_eq!(env.timestamp, t("2024-05-02T11:00:00Z"));
    // The boundary itself (exactly 24 h) is kept too.
    let env = accepted(with(any_event(), "client_ts", json!("2024-05-02T12:00:00Z")));
    assert_eq!(env.timestamp, t("2024-05-02T12:00:00Z"));
}

#[test]
fn corrected_time_before_2000_is_bad_timestamp() {
    // client_ts itself is after 2000, but the client claims to have sent the batch 25 years
    // after the server received it, which moves the event before 2000.
    let ev = with(any_event(), "client_ts", json!("2001-01-01T00:00:00Z"));
    let r = decode_sent(ev, Some("2049-05-01T12:00:00Z")).unwrap_err();
    assert_eq!(r.code, RejectCode::BadTimestamp);
    assert_eq!(r.field.as_deref(), Some("client_ts"));
    assert!(r.reason.contains("2000"), "{r:?}");
}

#[test]
fn correct_timestamp_follows_the_formula() {
    let limits = Limits::default();
    let recv = received_at();
    let client = t("2024-05-01T09:00:00Z");
    let sent = t("2024-05-01T10:00:00Z");
    assert_eq!(correct_timestamp(client, Some(sent), recv, &limits), Ok(client - (sent - recv)));
    assert_eq!(correct_timestamp(client, None, recv, &limits), Ok(client));
    let far = recv + Duration::hours(25);
    assert_eq!(correct_timestamp(far, None, recv, &limits), Ok(recv));
    let tight = Limits { max_future: Duration::minutes(5), ..limits };
    assert_eq!(correct_timestamp(recv + Duration::minutes(6), None, recv, &tight), Ok(recv));
    assert_eq!(correct_timestamp(recv + Duration::minutes(4), None, recv, &tight), Ok(recv + Duration::minutes(4)));
    assert!(correct_timestamp(t("2000-06-01T00:00:00Z"), Some(recv + Duration::days(365)), recv, &limits).is_err());
}

// ---------------------------------------------------------------------------------------------
// type and properties
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_type_is_unknown_type_listing_known_types() {
    let r = rejected(event("level_up", json!({})), RejectCode::UnknownType, "type");
    assert!(r.reason.contains("level_up"), "{r:?}");
    for known in EventBody::TYPES {
        assert!(r.reason.contains(known), "{known} missing from {r:?}");
    }
}

#[test]
fn type_missing_is_missing_field_and_not_a_string_is_invalid_field() {
    rejected(without(any_event(), "type"), RejectCode::MissingField, "type");
    rejected(with(any_event(), "type", json!(3)), RejectCode::InvalidField, "type");
}

#[test]
fn properties_not_an_object_is_invalid_field() {
    for props in [json!([]), json!("x"), json!(1)] {
        rejected(with(any_event(), "properties", props), RejectCode::InvalidField, "properties");
    }
}

#[test]
fn properties_absent_is_an_empty_object() {
    assert_eq!(
        accepted(without(event("session_start", json!({})), "properties")).body,
        EventBody::SessionStart(SessionStart::default())
    );
    rejected(without(any_event(), "properties"), RejectCode::MissingField, "properties.achievement_id");
}

#[test]
fn every_type_has_a_valid_example_that_decodes_to_its_variant() {
    let examples = examples();
    assert_eq!(examples.len(), EventBody::TYPES.len());
    for (ty, props) in examples {
        let env = accepted(event(ty, props));
        assert_eq!(env.body.type_name(), ty);
    }
}

#[test]
fn examples_decode_to_the_exact_values() {
    let body = |ty| accepted(example(ty)).body;
    let name = |s: &str| Name::parse(s).unwrap();
    use crate::money::{Currency, MinorUnits};
    assert_eq!(
        body("session_start"),
        EventBody::SessionStart(SessionStart { platform: Some(name("android")), app_version: Some(name("1.2.3")) })
    );
    assert_eq!(body("session_end"), EventBody::SessionEnd(SessionEnd { length_seconds: Some(600) }));
    assert_eq!(
        body("progression"),
        EventBody::Progression(Progression {
            status: ProgressionStatus::Complete,
            level_id: name("w1:l3"),
            score: Some(1200)
        })
    );
    assert_eq!(
        body("purchase"),
        EventBody::Purchase(Purchase {
            amount_minor: MinorUnits::parse(499).unwrap(),
            currency: Currency::parse("USD").unwrap(),
            item_id: name("gems-100"),
            quantity: 2,
            store: None,
        })
    );
    assert_eq!(
        body("resource"),
        EventBody::Resource(Resource {
            flow: ResourceFlow::Sink,
            virtual_currency: name("gold"),
            amount: 50,
            item_id: Some(name("sword"))
        })
    );
    assert_eq!(body("score"), EventBody::Score(Score { board: name("weekly"), value: -42 }));
    assert_eq!(body("achievement"), EventBody::Achievement(Achievement { achievement_id: name("first-win") }));
    assert_eq!(body("item_use"), EventBody::ItemUse(ItemUse { item_id: name("potion"), quantity: 3 }));
    assert_eq!(body("design"), EventBody::Design(Design { event_id: name("boss:forest:defeated"), value: Some(2.5) }));
    assert_eq!(
        body("profile_update"),
        EventBody::ProfileUpdate(ProfileUpdate { country: Some("FR".into()), language: Some("fr".into()) })
    );
    assert_eq!(
        body("consent_update"),
        EventBody::ConsentUpdate(ConsentUpdate { analytics: true, personalisation: false })
    );
}

#[test]
fn quantity_defaults_to_one() {
    let EventBody::Purchase(p) = accepted(without_prop(example("purchase"), "quantity")).body else { panic!() };
    assert_eq!(p.quantity, 1);
    let EventBody::ItemUse(i) = accepted(without_prop(example("item_use"), "quantity")).body else { panic!() };
    assert_eq!(i.quantity, 1);
}

#[test]
fn missing_required_property_is_missing_field_naming_it() {
    let required: &[(&str, &str)] = &[
        ("progression", "status"),
        ("progression", "level_id"),
        ("purchase", "amount_minor"),
        ("purchase", "currency"),
        ("purchase", "item_id"),
        ("resource", "flow"),
        ("resource", "virtual_currency"),
        ("resource", "amount"),
        ("score", "board"),
        ("score", "value"),
        ("achievement", "achievement_id"),
        ("item_use", "item_id"),
        ("design", "event_id"),
        ("consent_update", "analytics"),
        ("consent_update", "personalisation"),
    ];
    for (ty, prop) in required {
        let r = rejected(without_prop(example(ty), prop), RejectCode::MissingField, &format!("properties.{prop}"));
        assert!(r.reason.contains(prop), "{ty}: {r:?}");
    }
}

#[test]
fn optional_properties_may_be_left_out() {
    let optional: &[(&str, &str)] = &[
        ("session_start", "platform"),
        ("session_start", "app_version"),
        ("session_end", "length_seconds"),
        ("progression", "score"),
        ("resource", "item_id"),
        ("design", "value"),
        ("profile_update", "country"),
        ("profile_update", "language"),
    ];
    for (ty, prop) in optional {
        assert!(decode(without_prop(example(ty), prop)).is_ok(), "{ty}.{prop}");
    }
}

#[test]
fn unknown_property_is_invalid_field_for_every_type() {
    for (ty, _) in examples() {
        let r = rejected(with_prop(example(ty), "colour", json!("red")), RejectCode::InvalidField, "properties.colour");
        assert!(r.reason.contains("colour"), "{ty}: {r:?}");
    }
}

#[test]
fn property_of_the_wrong_type_is_invalid_field_naming_it() {
    let cases: &[(&str, &str, Value)] = &[
        ("purchase", "amount_minor", json!("499")),
        ("purchase", "amount_minor", json!(4.99)),
        ("purchase", "currency", json!(840)),
        ("purchase", "quantity", json!("2")),
        ("progression", "status", json!(true)),
        ("progression", "score", json!("100")),
        ("resource", "amount", json!(1.5)),
        ("resource", "flow", json!("gain")),
        ("score", "value", json!("10")),
        ("score", "board", json!(["weekly"])),
        ("session_end", "length_seconds", json!("600")),
        ("design", "value", json!("2.5")),
        ("consent_update", "analytics", json!("yes")),
        ("profile_update", "country", json!(33)),
        ("achievement", "achievement_id", json!(null)),
        ("item_use", "item_id", json!("has space")),
    ];
    for (ty, prop, value) in cases {
        let r = decode(with_prop(example(ty), prop, value.clone())).unwrap_err();
        assert_eq!(r.code, RejectCode::InvalidField, "{ty}.{prop}={value}: {r:?}");
        assert_eq!(r.field.as_deref(), Some(format!("properties.{prop}").as_str()), "{ty}.{prop}={value}: {r:?}");
    }
}

#[test]
fn properties_with_thousands_of_keys_are_refused_quickly() {
    // Finding the culprit is not attempted on large objects: it would be quadratic, several
    // seconds for a 1 MiB batch of such events.
    let mut props: Map<String, Value> = (0..2500).map(|i| (format!("k{i:04}"), json!(0))).collect();
    props.insert("amount_minor".into(), json!(0));
    let ev = event("purchase", Value::Object(props));
    let body = json!({ "events": vec![ev; 30] }).to_string();
    assert!(body.len() < Limits::default().max_body_bytes);
    let started = std::time::Instant::now();
    let out = decode_body_bytes(body.as_bytes()).unwrap();
    let elapsed = started.elapsed();
    assert!(out.iter().all(|r| r.as_ref().unwrap_err().code == RejectCode::InvalidField), "{:?}", out[0]);
    assert!(elapsed < std::time::Duration::from_secs(1), "{elapsed:?}");
}

// --- purchase --------------------------------------------------------------------------------

#[test]
fn purchase_amount_must_be_1_to_1e9_minor_units() {
    for amount in [json!(0), json!(-1), json!(-499), json!(1_000_000_001i64)] {
        let r = rejected(
            with_prop(example("purchase"), "amount_minor", amount),
            RejectCode::InvalidField,
            "properties.amount_minor",
        );
        assert!(r.reason.contains("minor units"), "{r:?}");
    }
    assert!(decode(with_prop(example("purchase"), "amount_minor", json!(1))).is_ok());
    assert!(decode(with_prop(example("purchase"), "amount_minor", json!(1_000_000_000))).is_ok());
}

#[test]
fn purchase_currency_must_be_an_upper_case_iso_4217_code() {
    for currency in ["usd", "Usd", "ABC", "US", "USDD", ""] {
        let r = rejected(
            with_prop(example("purchase"), "currency", json!(currency)),
            RejectCode::InvalidField,
            "properties.currency",
        );
        assert!(r.reason.contains("ISO 4217"), "{r:?}");
    }
    for currency in ["EUR", "JPY", "GBP"] {
        assert!(decode(with_prop(example("purchase"), "currency", json!(currency))).is_ok(), "{currency}");
    }
}

#[test]
fn purchase_quantity_must_be_1_to_10000() {
    for q in [json!(0), json!(10_001), json!(-1)] {
        rejected(with_prop(example("purchase"), "quantity", q), RejectCode::InvalidField, "properties.quantity");
    }
    assert!(decode(with_prop(example("purchase"), "quantity", json!(10_000))).is_ok());
    assert!(decode(with_prop(example("purchase"), "quantity", json!(1))).is_ok());
}

#[test]
fn item_use_quantity_must_be_1_to_10000() {
    for q in [json!(0), json!(10_001)] {
        rejected(with_prop(example("item_use"), "quantity", q), RejectCode::InvalidField, "properties.quantity");
    }
    assert!(decode(with_prop(example("item_use"), "quantity", json!(10_000))).is_ok());
}

// --- resource, score, progression ----------------------------------------------------------

#[test]
fn resource_amount_must_be_1_to_1e12() {
    for amount in [json!(0), json!(-5), json!(1_000_000_000_001i64)] {
        let r =
            rejected(with_prop(example("resource"), "amount", amount), RejectCode::InvalidField, "properties.amount");
        assert!(r.reason.contains("out of range"), "{r:?}");
    }
    assert!(decode(with_prop(example("resource"), "amount", json!(1))).is_ok());
    assert!(decode(with_prop(example("resource"), "amount", json!(1_000_000_000_000i64))).is_ok());
}

#[test]
fn score_value_must_be_within_plus_minus_1e15() {
    for v in [json!(1_000_000_000_000_001i64), json!(-1_000_000_000_000_001i64)] {
        rejected(with_prop(example("score"), "value", v), RejectCode::InvalidField, "properties.value");
    }
    for v in [json!(1_000_000_000_000_000i64), json!(-1_000_000_000_000_000i64), json!(0)] {
        assert!(decode(with_prop(example("score"), "value", v.clone())).is_ok(), "{v}");
    }
}

#[test]
fn progression_status_must_be_start_complete_or_fail() {
    for status in ["finish", "Complete", ""] {
        rejected(
            with_prop(example("progression"), "status", json!(status)),
            RejectCode::InvalidField,
            "properties.status",
        );
    }
    for status in ["start", "complete", "fail"] {
        assert!(decode(with_prop(example("progression"), "status", json!(status))).is_ok(), "{status}");
    }
}

#[test]
fn progression_score_must_be_0_to_1e12() {
    rejected(with_prop(example("progression"), "score", json!(-1)), RejectCode::InvalidField, "properties.score");
    rejected(
        with_prop(example("progression"), "score", json!(1_000_000_000_001i64)),
        RejectCode::InvalidField,
        "properties.score",
    );
    assert!(decode(with_prop(example("progression"), "score", json!(0))).is_ok());
}

// --- design ------------------------------------------------------------------------------------

#[test]
fn design_event_id_with_more_than_5_parts_is_invalid_field() {
    rejected(
        with_prop(example("design"), "event_id", json!("a:b:c:d:e:f")),
        RejectCode::InvalidField,
        "properties.event_id",
    );
    assert!(decode(with_prop(example("design"), "event_id", json!("a:b:c:d:e"))).is_ok());
    assert!(decode(with_prop(example("design"), "event_id", json!("single"))).is_ok());
}

#[test]
fn design_event_id_with_an_empty_part_is_invalid_field() {
    for id in ["a::b", ":a", "a:", ":"] {
        rejected(with_prop(example("design"), "event_id", json!(id)), RejectCode::InvalidField, "properties.event_id");
    }
}

#[test]
fn design_event_id_part_over_32_characters_is_invalid_field() {
    let long = format!("boss:{}", "x".repeat(33));
    rejected(with_prop(example("design"), "event_id", json!(long)), RejectCode::InvalidField, "properties.event_id");
    let ok = format!("boss:{}", "x".repeat(32));
    assert!(decode(with_prop(example("design"), "event_id", json!(ok))).is_ok());
}

#[test]
fn design_value_beyond_1e12_is_invalid_field() {
    // JSON cannot carry NaN or infinities; 1e400 is not a valid f64 either.
    for v in [json!(1e13), json!(-1e13), json!(1.000001e12)] {
        rejected(with_prop(example("design"), "value", v), RejectCode::InvalidField, "properties.value");
    }
    assert!(decode(with_prop(example("design"), "value", json!(1e12))).is_ok());
    assert!(decode(with_prop(example("design"), "value", json!(-1e12))).is_ok());
    assert!(decode(with_prop(example("design"), "value", json!(7))).is_ok());
    let body = r#"{"events": [{"player_id": "p", "client_ts": "2024-05-01T11:00:00Z",
        "type": "design", "properties": {"event_id": "a", "value": 1e400}}]}"#;
    let out = decode_body_bytes(body.as_bytes()).unwrap();
    assert_eq!(out[0].as_ref().unwrap_err().code, RejectCode::Malformed, "{out:?}");
}

// --- session_end, profile_update --------------------------------------------------------------

#[test]
fn session_end_length_over_7_days_is_invalid_field() {
    let week = 7 * 24 * 3600;
    rejected(
        with_prop(example("session_end"), "length_seconds", json!(week + 1)),
        RejectCode::InvalidField,
        "properties.length_seconds",
    );
    rejected(
        with_prop(example("session_end"), "length_seconds", json!(-1)),
        RejectCode::InvalidField,
        "properties.length_seconds",
    );
    assert!(decode(with_prop(example("session_end"), "length_seconds", json!(week))).is_ok());
    assert!(decode(with_prop(example("session_end"), "length_seconds", json!(0))).is_ok());
}

#[test]
fn profile_update_country_must_be_two_upper_case_letters() {
    for c in ["fr", "FRA", "F", "F1", "Fr", ""] {
        rejected(
            with_prop(example("profile_update"), "country", json!(c)),
            RejectCode::InvalidField,
            "properties.country",
        );
    }
}

#[test]
fn profile_update_language_must_be_two_lower_case_letters() {
    for l in ["EN", "eng", "e", "En", ""] {
        rejected(
            with_prop(example("profile_update"), "language", json!(l)),
            RejectCode::InvalidField,
            "properties.language",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Personal fields
// ---------------------------------------------------------------------------------------------

fn with_personal(personal: Value) -> Value {
    with(any_event(), "personal", personal)
}

#[test]
fn personal_fields_are_kept_in_personal() {
    let personal = json!({
        "device_id": "dev-1", "ip": "2001:db8::1", "email": "a@example.com",
        "display_name": "Astra", "free_text": "hello",
    });
    let env = accepted(with_personal(personal));
    let p = env.personal.unwrap().plain().cloned().unwrap();
    assert_eq!(p.ip.as_deref(), Some("2001:db8::1"));
    assert_eq!(p.email.as_deref(), Some("a@example.com"));
    assert_eq!(p.display_name.as_deref(), Some("Astra"));
    assert_eq!(accepted(any_event()).personal, None);
    assert_eq!(accepted(with_personal(Value::Null)).personal, None);
}

#[test]
fn personal_ip_that_is_not_an_ip_is_invalid_field() {
    for ip in ["localhost", "300.1.1.1", "1.2.3", ""] {
        rejected(with_personal(json!({ "ip": ip })), RejectCode::InvalidField, "personal.ip");
    }
    assert!(decode(with_personal(json!({ "ip": "203.0.113.7" }))).is_ok());
}

#[test]
fn personal_email_over_256_characters_is_invalid_field() {
    let long = format!("{}@example.com", "a".repeat(245));
    assert_eq!(long.len(), 257);
    rejected(with_personal(json!({ "email": long })), RejectCode::InvalidField, "personal.email");
    let ok = format!("{}@example.com", "a".repeat(244));
    assert!(decode(with_personal(json!({ "email": ok }))).is_ok());
}

#[test]
fn personal_fields_over_their_length_are_invalid_field() {
    for (field, max) in [("device_id", 256), ("display_name", 128), ("free_text", 4096)] {
        rejected(
            with_personal(json!({ field: "x".repeat(max + 1) })),
            RejectCode::InvalidField,
            &format!("personal.{field}"),
        );
        assert!(decode(with_personal(json!({ field: "x".repeat(max) }))).is_ok(), "{field}");
    }
}

#[test]
fn unknown_personal_field_is_invalid_field() {
    let r =
        rejected(with_personal(json!({ "phone": "+33 1 23 45 67 89" })), RejectCode::InvalidField, "personal.phone");
    assert!(r.reason.contains("phone"), "{r:?}");
}

#[test]
fn personal_not_an_object_or_of_the_wrong_type_is_invalid_field() {
    rejected(with_personal(json!("a@example.com")), RejectCode::InvalidField, "personal");
    rejected(with_personal(json!({ "email": 5 })), RejectCode::InvalidField, "personal.email");
}

#[test]
fn personal_fields_never_appear_in_properties() {
    // Sent among the properties, a personal field is refused rather than stored with them.
    for field in ["email", "ip", "device_id", "display_name", "free_text"] {
        rejected(
            with_prop(example("profile_update"), field, json!("x")),
            RejectCode::InvalidField,
            &format!("properties.{field}"),
        );
    }
    // Sent where it belongs, it is stored apart: not in the serialised properties.
    let ev = with(example("profile_update"), "personal", json!({ "email": "a@example.com", "ip": "10.0.0.1" }));
    let mut env = accepted(ev);
    let personal = env.personal.take().and_then(|p| p.plain().cloned()).unwrap();
    assert_eq!((personal.email.as_deref(), personal.ip.as_deref()), (Some("a@example.com"), Some("10.0.0.1")));
    let stored = serde_json::to_value(env).unwrap();
    assert_eq!(stored["properties"], json!({ "country": "FR", "language": "fr" }));
    assert!(!stored.to_string().contains("a@example.com"));
}

// ---------------------------------------------------------------------------------------------
// decode_fields directly (the compatibility decoders' entry point)
// ---------------------------------------------------------------------------------------------

#[test]
fn decode_fields_applies_the_same_rules() {
    let limits = Limits::default();
    let g = game();
    let ctx = EventContext { game: &g, sent_at: None, received_at: received_at(), limits: &limits };
    let Value::Object(fields) = example("score") else { unreachable!() };
    assert!(matches!(ctx.decode_fields(fields).unwrap().body, EventBody::Score(_)));
    let Value::Object(fields) = with(example("score"), "game_id", json!("other")) else { unreachable!() };
    assert_eq!(ctx.decode_fields(fields).unwrap_err().code, RejectCode::WrongGame);
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn envelope_round_trips_through_json() {
    for (ty, props) in examples() {
        let ev = with(event(ty, props), "session_id", json!("s-1"));
        let ev = with(ev, "personal", json!({ "ip": "10.0.0.1" }));
        let mut env = decode_sent(ev, Some("2024-05-01T12:00:30Z")).unwrap();
        // Stored only once sealed (the gateway's job; here a stand-in sealed value).
        env.personal = Some(crate::PersonalData::Sealed(crate::SealedPersonal {
            alg: "A256GCM".into(),
            nonce: "bm9uY2U=".into(),
            sealed: "c2VhbGVk".into(),
        }));
        let text = serde_json::to_string(&env).unwrap();
        let back: EventEnvelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back, env, "{ty}: {text}");
    }
}

#[test]
fn raw_records_round_trip_through_json() {
    for (ty, props) in examples() {
        let record = RawRecord::Event(accepted(event(ty, props)));
        let text = serde_json::to_string(&record).unwrap();
        assert!(text.contains("\"record\":\"event\""), "{text}");
        let back: RawRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, record, "{ty}: {text}");
    }
    let erasure = RawRecord::ErasureRequested(ErasureRequest {
        erasure_id: Uuid::now_v7(),
        game_id: game(),
        player_id: PlayerId::parse("player-1").unwrap(),
        reason: "GDPR art. 17 request".into(),
        requested_at: received_at(),
    });
    let text = serde_json::to_string(&erasure).unwrap();
    assert!(text.contains("\"record\":\"erasure_requested\""), "{text}");
    let back: RawRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(back, erasure);
}

// ---------------------------------------------------------------------------------------------
// The documented example batch
// ---------------------------------------------------------------------------------------------

const EXAMPLE_BATCH: &str = include_str!("../../json/examples/batch.json");

#[test]
fn example_batch_is_fully_accepted_and_covers_every_type() {
    // Received exactly when the client says it sent the batch: no skew.
    let recv = t("2024-05-01T12:30:05Z");
    let out = decode_batch(EXAMPLE_BATCH.as_bytes(), &game(), recv, &Limits::default()).unwrap();
    let mut types: Vec<&str> = Vec::new();
    for (i, outcome) in out.iter().enumerate() {
        let env = outcome.as_ref().unwrap_or_else(|r| panic!("event {i} of the example refused: {r:?}"));
        assert_eq!(env.timestamp, env.client_ts, "event {i}");
        types.push(env.body.type_name());
    }
    for t in EventBody::TYPES {
        assert!(types.contains(t), "the example batch has no {t} event");
    }
}

#[test]
fn example_batch_matches_the_documented_types() {
    // The JSON Schema is generated from these types, so the example also fits the schema.
    let batch: crate::envelope::PublicBatch = serde_json::from_str(EXAMPLE_BATCH).unwrap();
    assert_eq!(batch.events.len(), 12);
}

#[test]
fn an_envelope_with_personal_fields_in_clear_cannot_be_serialised() {
    let env = accepted(with_personal(json!({"email": "a@example.com"})));
    let err = serde_json::to_string(&RawRecord::Event(env.clone())).unwrap_err();
    assert!(err.to_string().contains("must be sealed"), "{err}");
    let sealed = EventEnvelope {
        personal: Some(crate::PersonalData::Sealed(crate::SealedPersonal {
            alg: "A256GCM".into(),
            nonce: "AAAAAAAAAAAAAAAA".into(),
            sealed: "c2VhbGVk".into(),
        })),
        ..env
    };
    let text = serde_json::to_string(&RawRecord::Event(sealed.clone())).unwrap();
    assert!(!text.contains("a@example.com"));
    let back: RawRecord = crate::upcast::decode_raw(text.as_bytes()).unwrap();
    assert_eq!(back, RawRecord::Event(sealed));
}
