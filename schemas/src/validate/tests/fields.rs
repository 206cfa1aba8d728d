//! The envelope's fields: ids, schema version, client time and its clock-skew correction.

use super::*;

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
