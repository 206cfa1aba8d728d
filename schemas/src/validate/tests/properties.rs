//! Event types and their properties.

use super::*;

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
