//! Rules of the batch as a whole and of an event's shape.

use super::*;

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
