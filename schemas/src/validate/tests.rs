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

mod batch;
mod fields;
mod properties;
mod records;
