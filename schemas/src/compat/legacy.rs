//! The previous GameMetrics platform's ingest body, `POST /api/v1/events`:
//! `{event_type, player_id, game_id, timestamp, data}`, one event per request.
//!
//! Known event types become typed events (docs/compat.md has the table); any other type a
//! design event with the type as a sanitised colon id and `data.value` as its value. The
//! timestamp may be RFC 3339 or a Unix time (seconds or milliseconds). `game_id`, when given,
//! must be the key's game. Unknown top-level fields are ignored, as the old platform did.
//! An event of a known type whose `data` the typed event cannot take (a `purchase` without an
//! amount, an `achievement` without an id: the old platform accepted those) is kept as a
//! design event named after its type ([`Decoded::downgraded`] says so) instead of refused.

use super::{
    design_id, event_id_for, first_text, first_value, integer, minor_units, normalize_name, reject, text, time_value,
    validate,
};
use crate::idempotency::{derived_event_id, IdempotencyKey};
use crate::validate::{BatchError, EventContext, Limits, RejectCode, Rejection};
use crate::{EventEnvelope, GameId};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

const RENAME: &[(&str, &str)] = &[("client_ts", "timestamp"), ("type", "event_type")];

/// One legacy event, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The event, or why it was refused.
    pub outcome: Result<EventEnvelope, Rejection>,
    /// Set when the event's type maps to a typed event whose properties the old platform did
    /// not require (a `purchase` without an amount, an `achievement` without an id): it was
    /// kept as a design event named after its type instead of refused.
    pub downgraded: Option<Downgrade>,
}

/// A legacy event kept as a design event: the typed event it would have been, and why that
/// could not take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downgrade {
    /// The typed event type (`purchase`, `achievement`, ...): a short, fixed set, fit for a
    /// metric label.
    pub typed: String,
    pub rejection: Rejection,
}

/// Decodes one legacy event body: `Err` for a body that is not even an object, `Ok(Err)` for
/// an event refused with a reason.
pub fn decode_event(
    body: &[u8],
    game: &GameId,
    received_at: DateTime<Utc>,
    limits: &Limits,
) -> Result<Result<EventEnvelope, Rejection>, BatchError> {
    decode_event_keyed(body, game, received_at, limits, None).map(|d| d.outcome)
}

/// [`decode_event`] with what the route needs to know: whether the event was kept as a design
/// event, and, for a request with an `Idempotency-Key` and an event without `event_id`, the id
/// derived from the key and the body (see [`crate::idempotency`]).
pub fn decode_event_keyed(
    body: &[u8],
    game: &GameId,
    received_at: DateTime<Utc>,
    limits: &Limits,
    key: Option<&IdempotencyKey>,
) -> Result<Decoded, BatchError> {
    let max = limits.max_event_bytes.max(1024);
    if body.len() > max {
        return Err(BatchError::TooLarge { bytes: body.len(), max });
    }
    let message = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(BatchError::Malformed("a legacy event must be a JSON object".into())),
        Err(e) => return Err(BatchError::Malformed(e.to_string())),
    };
    let ctx = EventContext { game, sent_at: None, received_at, limits };
    let mut fields = match map_event(&message, game, received_at) {
        Ok(fields) => fields,
        Err(r) => return Ok(Decoded { outcome: Err(r), downgraded: None }),
    };
    if !fields.contains_key("event_id") {
        if let Some(id) = derived_event_id(key, game.as_str(), 0, &message) {
            fields.insert("event_id".into(), id);
        }
    }
    let typed = fields.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
    match validate(&ctx, fields.clone(), RENAME) {
        Err(rejection) if typed != "design" && is_property_rejection(&rejection) => {
            // The old platform took any `data`: keep the event, as a design event named after
            // its type, rather than lose it.
            let event_type = text(message.get("event_type")).unwrap_or_default();
            let data = message.get("data").and_then(Value::as_object);
            let mut props = Map::new();
            props.insert("event_id".into(), Value::String(design_id(&event_type)));
            put(&mut props, "value", first_value(data, &["value"]).filter(Value::is_number));
            fields.insert("type".into(), json!("design"));
            fields.insert("properties".into(), Value::Object(props));
            let outcome = validate(&ctx, fields, RENAME);
            let downgraded = outcome.is_ok().then_some(Downgrade { typed, rejection });
            Ok(Decoded { outcome, downgraded })
        }
        outcome => Ok(Decoded { outcome, downgraded: None }),
    }
}

/// A rejection of the event's properties (not of its player, time or game), which the old
/// platform did not check.
fn is_property_rejection(r: &Rejection) -> bool {
    r.field.as_deref().is_some_and(|f| f == "properties" || f.starts_with("properties."))
}

/// The public-format fields of one legacy event.
pub fn map_event(
    message: &Map<String, Value>,
    game: &GameId,
    received_at: DateTime<Utc>,
) -> Result<Map<String, Value>, Rejection> {
    let event_type =
        text(message.get("event_type")).ok_or_else(|| reject(RejectCode::MissingField, "event_type", "required"))?;
    let data = match message.get("data") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err(reject(RejectCode::InvalidField, "data", "must be an object")),
    };
    let mut out = Map::new();
    if let Some(player) = message.get("player_id") {
        // Numbers are common player ids in old clients.
        out.insert("player_id".into(), text(Some(player)).map(Value::String).unwrap_or_else(|| player.clone()));
    }
    if let Some(g) = message.get("game_id") {
        out.insert("game_id".into(), g.clone());
    }
    if let Some(id) = text(message.get("event_id")) {
        out.insert("event_id".into(), Value::String(event_id_for(game.as_str(), &id).to_string()));
    }
    let ts = message.get("timestamp").cloned().map(time_value).unwrap_or_else(|| json!(received_at.to_rfc3339()));
    out.insert("client_ts".into(), ts);
    if let Some(session) = text(message.get("session_id")).or_else(|| first_text(data, &["session_id"])) {
        out.insert("session_id".into(), Value::String(session));
    }
    let (kind, props) = map_type(&event_type, data);
    out.insert("type".into(), json!(kind));
    out.insert("properties".into(), Value::Object(props));
    Ok(out)
}

fn put(p: &mut Map<String, Value>, name: &str, v: Option<Value>) {
    if let Some(v) = v {
        p.insert(name.into(), v);
    }
}

fn map_type(event_type: &str, data: Option<&Map<String, Value>>) -> (&'static str, Map<String, Value>) {
    let mut p = Map::new();
    let s = |v: Option<String>| v.map(Value::String);
    let kind = match normalize_name(event_type).as_str() {
        "login" | "game_start" | "session_start" => {
            put(&mut p, "platform", s(first_text(data, &["platform"])));
            put(&mut p, "app_version", s(first_text(data, &["app_version", "version"])));
            "session_start"
        }
        "logout" | "game_end" | "session_end" => {
            put(
                &mut p,
                "length_seconds",
                first_value(data, &["length_seconds", "duration", "session_length"]).map(integer),
            );
            "session_end"
        }
        n @ ("level_up" | "level_start" | "level_started" | "level_complete" | "level_completed" | "level_fail"
        | "level_failed") => {
            let status = match n {
                "level_start" | "level_started" => "start",
                "level_fail" | "level_failed" => "fail",
                _ => "complete",
            };
            p.insert("status".into(), json!(status));
            put(&mut p, "level_id", s(first_text(data, &["level_id", "level", "new_level"])));
            put(&mut p, "score", first_value(data, &["score", "xp"]).map(integer));
            "progression"
        }
        "quest_completed" => {
            p.insert("status".into(), json!("complete"));
            let quest = first_text(data, &["quest_id", "quest", "name"]);
            put(&mut p, "level_id", quest.map(|q| Value::String(format!("quest:{q}"))));
            put(&mut p, "score", first_value(data, &["score", "xp", "reward_xp"]).map(integer));
            "progression"
        }
        "purchase" => {
            // Old clients send `usd` as often as `USD`.
            let currency = first_text(data, &["currency"]).map_or_else(|| "USD".into(), |c| c.to_ascii_uppercase());
            let amount = first_value(data, &["amount_minor", "price_cents"])
                .map(integer)
                .or_else(|| first_value(data, &["amount", "price"]).map(|v| minor_units(v, Some(&currency))));
            put(&mut p, "amount_minor", amount);
            put(&mut p, "item_id", s(first_text(data, &["item_id", "product_id", "sku", "item"])));
            put(&mut p, "quantity", first_value(data, &["quantity"]).map(integer));
            p.insert("currency".into(), Value::String(currency));
            "purchase"
        }
        "achievement" | "achievement_unlocked" => {
            put(&mut p, "achievement_id", s(first_text(data, &["achievement_id", "achievement", "id", "name"])));
            "achievement"
        }
        "player_score" | "score" => {
            let board = first_text(data, &["board", "leaderboard"]).unwrap_or_else(|| "default".into());
            p.insert("board".into(), Value::String(board));
            put(&mut p, "value", first_value(data, &["score", "value", "points"]).map(integer));
            "score"
        }
        "item_used" | "item_use" => {
            put(&mut p, "item_id", s(first_text(data, &["item_id", "item"])));
            put(&mut p, "quantity", first_value(data, &["quantity"]).map(integer));
            "item_use"
        }
        n @ ("currency_earned" | "currency_spent" | "resource_earned" | "resource_spent") => {
            p.insert("flow".into(), json!(if n.ends_with("earned") { "source" } else { "sink" }));
            put(&mut p, "virtual_currency", s(first_text(data, &["virtual_currency", "currency", "resource"])));
            put(&mut p, "amount", first_value(data, &["amount"]).map(integer));
            put(&mut p, "item_id", s(first_text(data, &["item_id"])));
            "resource"
        }
        "boss_defeated" => {
            let boss = first_text(data, &["boss_id", "boss", "name"]);
            let id = match boss {
                Some(b) => design_id(&format!("boss_defeated:{b}")),
                None => "boss_defeated".into(),
            };
            p.insert("event_id".into(), Value::String(id));
            put(&mut p, "value", first_value(data, &["value", "time_seconds", "duration"]).filter(Value::is_number));
            "design"
        }
        _ => {
            p.insert("event_id".into(), Value::String(design_id(event_type)));
            put(&mut p, "value", first_value(data, &["value"]).filter(Value::is_number));
            "design"
        }
    };
    (kind, p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventBody;

    fn decode(body: Value) -> Result<EventEnvelope, Rejection> {
        let game = GameId::parse("space-race").unwrap();
        decode_event(body.to_string().as_bytes(), &game, Utc::now(), &Limits::default()).unwrap()
    }

    #[test]
    fn known_legacy_types_become_typed_events() {
        let now = Utc::now().to_rfc3339();
        let cases = [
            ("login", json!({"platform": "android"}), "session_start"),
            ("logout", json!({"duration": 320}), "session_end"),
            ("level_up", json!({"level": 4, "xp": 150}), "progression"),
            ("quest_completed", json!({"quest_id": "q7"}), "progression"),
            ("purchase", json!({"amount": 1.99, "currency": "USD", "item_id": "sword"}), "purchase"),
            ("achievement_unlocked", json!({"achievement_id": "first-win"}), "achievement"),
            ("player_score", json!({"score": 9001}), "score"),
            ("boss_defeated", json!({"boss_id": "Dragon King", "time_seconds": 95}), "design"),
            ("Fish Caught", json!({"value": 3}), "design"),
        ];
        for (event_type, data, expected) in cases {
            let e = decode(json!({"event_type": event_type, "player_id": 42, "game_id": "space-race",
                                   "timestamp": now, "data": data}))
            .unwrap_or_else(|r| panic!("{event_type}: {r:?}"));
            assert_eq!(e.body.type_name(), expected, "{event_type}");
            assert_eq!(e.player_id.as_str(), "42");
        }
        let EventBody::Purchase(p) = decode(json!({"event_type": "purchase", "player_id": "p", "timestamp": now,
            "data": {"amount": 1.99, "currency": "USD", "item_id": "sword"}}))
        .unwrap()
        .body
        else {
            panic!()
        };
        assert_eq!(i64::from(p.amount_minor), 199);
        let EventBody::Design(d) = decode(json!({"event_type": "boss_defeated", "player_id": "p", "timestamp": now,
            "data": {"boss_id": "Dragon King", "time_seconds": 95}}))
        .unwrap()
        .body
        else {
            panic!()
        };
        assert_eq!((d.event_id.as_str(), d.value), ("boss_defeated:dragon_king", Some(95.0)));
        let EventBody::Progression(q) = decode(json!({"event_type": "quest_completed", "player_id": "p",
            "timestamp": now, "data": {"quest_id": "q7"}}))
        .unwrap()
        .body
        else {
            panic!()
        };
        assert_eq!(q.level_id.as_str(), "quest:q7");
    }

    #[test]
    fn unix_timestamps_and_missing_data_are_accepted() {
        let e = decode(json!({"event_type": "login", "player_id": "p", "timestamp": Utc::now().timestamp()})).unwrap();
        assert_eq!(e.body.type_name(), "session_start");
    }

    #[test]
    fn bad_legacy_events_get_the_usual_reasons_with_legacy_field_names() {
        let now = Utc::now().to_rfc3339();
        let r = decode(json!({"player_id": "p", "timestamp": now})).unwrap_err();
        assert_eq!((r.code, r.field.as_deref()), (RejectCode::MissingField, Some("event_type")));
        let r =
            decode(json!({"event_type": "login", "player_id": "p", "game_id": "farm", "timestamp": now})).unwrap_err();
        assert_eq!(r.code, RejectCode::WrongGame);
        let r = decode(json!({"event_type": "login", "player_id": "p", "timestamp": "noon"})).unwrap_err();
        assert_eq!((r.code, r.field.as_deref()), (RejectCode::BadTimestamp, Some("timestamp")));
        let r = decode(json!({"event_type": "login", "timestamp": now})).unwrap_err();
        assert_eq!((r.code, r.field.as_deref()), (RejectCode::MissingField, Some("player_id")));
        let game = GameId::parse("space-race").unwrap();
        assert!(decode_event(b"[]", &game, Utc::now(), &Limits::default()).is_err());
    }

    fn decode_keyed(body: &Value, key: Option<&str>) -> Decoded {
        let game = GameId::parse("space-race").unwrap();
        let key = key.map(|k| IdempotencyKey::parse(k).unwrap());
        decode_event_keyed(body.to_string().as_bytes(), &game, Utc::now(), &Limits::default(), key.as_ref()).unwrap()
    }

    #[test]
    fn events_the_typed_schema_cannot_take_are_kept_as_design_events_named_after_their_type() {
        let now = Utc::now().to_rfc3339();
        // What the old platform's own test script sends (issue 16): no amount, no id.
        let cases = [
            (
                json!({"event_type": "purchase", "player_id": "p", "timestamp": now, "data": {"item_id": "sword"}}),
                "purchase",
                "purchase",
                "properties.amount_minor",
            ),
            (
                json!({"event_type": "achievement", "player_id": "p", "timestamp": now, "data": {"value": 3}}),
                "achievement",
                "achievement",
                "properties.achievement_id",
            ),
            (
                json!({"event_type": "Achievement_Unlocked", "player_id": "p", "timestamp": now}),
                "achievement",
                "achievement_unlocked",
                "properties.achievement_id",
            ),
            (
                json!({"event_type": "purchase", "player_id": "p", "timestamp": now,
                    "data": {"amount": 5, "currency": "dollars", "item_id": "x"}}),
                "purchase",
                "purchase",
                "properties.currency",
            ),
            (
                json!({"event_type": "level_up", "player_id": "p", "timestamp": now, "data": {"xp": 10}}),
                "progression",
                "level_up",
                "properties.level_id",
            ),
        ];
        for (body, typed, design, field) in cases {
            let d = decode_keyed(&body, None);
            let e = d.outcome.unwrap_or_else(|r| panic!("{body}: refused {r:?}"));
            let EventBody::Design(got) = &e.body else { panic!("{body}: {:?}", e.body) };
            assert_eq!(got.event_id.as_str(), design, "{body}");
            let down = d.downgraded.unwrap_or_else(|| panic!("{body}: not marked as downgraded"));
            assert_eq!((down.typed.as_str(), down.rejection.field.as_deref()), (typed, Some(field)), "{body}");
        }
        let d = decode_keyed(
            &json!({"event_type": "achievement", "player_id": "p", "timestamp": now,
                                     "data": {"value": 3}}),
            None,
        );
        let EventBody::Design(got) = d.outcome.unwrap().body else { panic!() };
        assert_eq!(got.value, Some(3.0), "data.value is kept as the design value");
        // Lower-case currencies are understood, not downgraded.
        let d = decode_keyed(
            &json!({"event_type": "purchase", "player_id": "p", "timestamp": now,
                                     "data": {"amount": 5, "currency": "usd", "item_id": "x"}}),
            None,
        );
        assert_eq!((d.outcome.unwrap().body.type_name(), d.downgraded), ("purchase", None));
        // What is wrong outside the properties is still refused: no player, no event.
        let d = decode_keyed(&json!({"event_type": "purchase", "timestamp": now}), None);
        assert_eq!((d.outcome.unwrap_err().field.as_deref(), d.downgraded), (Some("player_id"), None));
        let d = decode_keyed(&json!({"event_type": "purchase", "player_id": "p", "timestamp": "noon"}), None);
        assert_eq!(d.outcome.unwrap_err().code, RejectCode::BadTimestamp);
    }

    #[test]
    fn an_idempotency_key_gives_id_less_events_the_same_id_on_a_retry() {
        let body = json!({"event_type": "login", "player_id": "p", "timestamp": 1_700_000_000});
        let first = decode_keyed(&body, Some("req-1")).outcome.unwrap().event_id;
        assert_eq!(first, decode_keyed(&body, Some("req-1")).outcome.unwrap().event_id);
        assert_eq!(first.get_version_num(), 5);
        assert_ne!(first, decode_keyed(&body, Some("req-2")).outcome.unwrap().event_id);
        assert_eq!(decode_keyed(&body, None).outcome.unwrap().event_id.get_version_num(), 7, "no key: fresh ids");
        // The client's own id wins over the key.
        let with_id = json!({"event_type": "login", "player_id": "p", "timestamp": 1_700_000_000, "event_id": "e-1"});
        assert_eq!(decode_keyed(&with_id, Some("req-1")).outcome.unwrap().event_id, event_id_for("space-race", "e-1"));
    }
}
