//! Personal fields, the compatibility decoders' entry point, round trips and the documented example batch.

use super::*;

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

const EXAMPLE_BATCH: &str = include_str!("../../../json/examples/batch.json");

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
