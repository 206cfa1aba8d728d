//! The Segment HTTP tracking API: `track` and `identify` calls (and `screen`/`page`), alone or
//! in a `batch`, mapped onto GameMetrics events (docs/compat.md has the table).
//!
//! - player: `userId`, else `anonymousId`; event id: `messageId` (a UUIDv5 of it when it is
//!   not a UUID, so a resent message is deduplicated); time: `timestamp`, else
//!   `originalTimestamp`, else the time of receipt; `sentAt` corrects the client's clock.
//! - `track`: known event names (normalised: `Order Completed` = `order_completed`) become
//!   typed events; any other name a design event with the name as a sanitised colon id and
//!   `properties.value` as its value.
//! - `identify`: a `profile_update` (country, language) carrying personal fields from the
//!   traits (email, name) and the context (ip, device id).
//! - `alias` and `group` are refused per message (`unknown_type`).

use super::{
    design_id, event_id_for, first_text, first_value, integer, minor_units, normalize_name, object, reject, sent_at,
    text, time_value, validate,
};
use crate::idempotency::{derived_event_id, IdempotencyKey};
use crate::validate::{BatchError, DecodedEvents, EventContext, Limits, RejectCode, Rejection};
use crate::{EventEnvelope, GameId};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// The kind of call a single-message route implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Track,
    Identify,
}

/// Our field → the Segment field a rejection names.
const RENAME: &[(&str, &str)] =
    &[("player_id", "userId"), ("event_id", "messageId"), ("client_ts", "timestamp"), ("game_id", "context.game_id")];

#[derive(Deserialize)]
struct WireBatch<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(default, rename = "sentAt")]
    sent_at: Option<Value>,
    #[serde(default)]
    context: Option<Value>,
}

fn starts_like_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Decodes a `POST /v1/batch` body.
pub fn decode_batch(
    body: &[u8],
    game: &GameId,
    received_at: DateTime<Utc>,
    limits: &Limits,
) -> Result<DecodedEvents, BatchError> {
    decode_batch_keyed(body, game, received_at, limits, None)
}

/// [`decode_batch`] for a request with an `Idempotency-Key`: a message without a
/// `messageId` gets the id derived from the key, its position and the message (without its
/// `sentAt`, which a retry may renew).
pub fn decode_batch_keyed(
    body: &[u8],
    game: &GameId,
    received_at: DateTime<Utc>,
    limits: &Limits,
    key: Option<&IdempotencyKey>,
) -> Result<DecodedEvents, BatchError> {
    if body.len() > limits.max_body_bytes {
        return Err(BatchError::TooLarge { bytes: body.len(), max: limits.max_body_bytes });
    }
    if !starts_like_object(body) {
        return Err(BatchError::Malformed("a Segment batch must be a JSON object with a `batch` array".into()));
    }
    let wire: WireBatch<'_> = serde_json::from_slice(body).map_err(|e| BatchError::Malformed(e.to_string()))?;
    if wire.batch.is_empty() {
        return Err(BatchError::Empty);
    }
    if wire.batch.len() > limits.max_events {
        return Err(BatchError::TooManyEvents { count: wire.batch.len(), max: limits.max_events });
    }
    let batch_sent_at = sent_at(wire.sent_at.as_ref(), "sentAt")?;
    let shared_context = wire.context.as_ref().and_then(Value::as_object);
    Ok(wire
        .batch
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            let len = raw.get().len();
            if len > limits.max_event_bytes {
                return Err(Rejection {
                    code: RejectCode::TooLarge,
                    field: None,
                    reason: format!("message is {len} bytes; at most {} allowed", limits.max_event_bytes),
                });
            }
            let message = parse_message(raw.get())?;
            let at = Position { key, index };
            decode_message(message, None, game, batch_sent_at, shared_context, received_at, limits, at)
        })
        .collect())
}

/// Decodes a `POST /v1/track` or `/v1/identify` body: one message.
pub fn decode_single(
    body: &[u8],
    call: Call,
    game: &GameId,
    received_at: DateTime<Utc>,
    limits: &Limits,
) -> Result<Result<EventEnvelope, Rejection>, BatchError> {
    decode_single_keyed(body, call, game, received_at, limits, None)
}

/// [`decode_single`] for a request with an `Idempotency-Key` (see [`decode_batch_keyed`]).
pub fn decode_single_keyed(
    body: &[u8],
    call: Call,
    game: &GameId,
    received_at: DateTime<Utc>,
    limits: &Limits,
    key: Option<&IdempotencyKey>,
) -> Result<Result<EventEnvelope, Rejection>, BatchError> {
    if body.len() > limits.max_body_bytes {
        return Err(BatchError::TooLarge { bytes: body.len(), max: limits.max_body_bytes });
    }
    if !starts_like_object(body) {
        return Err(BatchError::Malformed("a Segment message must be a JSON object".into()));
    }
    let text = std::str::from_utf8(body).map_err(|e| BatchError::Malformed(e.to_string()))?;
    let message = match parse_message(text) {
        Ok(m) => m,
        Err(r) => return Err(BatchError::Malformed(r.reason)),
    };
    Ok(decode_message(message, Some(call), game, None, None, received_at, limits, Position { key, index: 0 }))
}

fn parse_message(text: &str) -> Result<Map<String, Value>, Rejection> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => {
            Err(Rejection { code: RejectCode::Malformed, field: None, reason: "a message must be an object".into() })
        }
        Err(e) => Err(Rejection { code: RejectCode::Malformed, field: None, reason: e.to_string() }),
    }
}

/// Where a message is: its request's idempotency key, and its index in the request.
struct Position<'a> {
    key: Option<&'a IdempotencyKey>,
    index: usize,
}

#[allow(clippy::too_many_arguments)]
fn decode_message(
    mut message: Map<String, Value>,
    call: Option<Call>,
    game: &GameId,
    batch_sent_at: Option<DateTime<Utc>>,
    shared_context: Option<&Map<String, Value>>,
    received_at: DateTime<Utc>,
    limits: &Limits,
    at: Position<'_>,
) -> Result<EventEnvelope, Rejection> {
    let own_sent_at = sent_at(message.get("sentAt"), "sentAt")
        .map_err(|e| reject(RejectCode::BadTimestamp, "sentAt", e.to_string()))?;
    let ctx = EventContext { game, sent_at: own_sent_at.or(batch_sent_at), received_at, limits };
    let mut fields = map_message(&message, call, game, shared_context, received_at)?;
    if !fields.contains_key("event_id") {
        message.remove("sentAt");
        if let Some(id) = derived_event_id(at.key, game.as_str(), at.index, &message) {
            fields.insert("event_id".into(), id);
        }
    }
    validate(&ctx, fields, RENAME)
}

/// The public-format fields of one Segment message.
pub fn map_message(
    message: &Map<String, Value>,
    call: Option<Call>,
    game: &GameId,
    shared_context: Option<&Map<String, Value>>,
    received_at: DateTime<Utc>,
) -> Result<Map<String, Value>, Rejection> {
    let kind = match call {
        Some(Call::Track) => "track".to_string(),
        Some(Call::Identify) => "identify".to_string(),
        None => text(message.get("type"))
            .ok_or_else(|| reject(RejectCode::MissingField, "type", "required: track, identify, screen or page"))?,
    };
    let context = object(message, "context").or(shared_context);
    let properties = object(message, "properties");
    let mut out = Map::new();
    let player = text(message.get("userId"))
        .or_else(|| text(message.get("anonymousId")))
        .ok_or_else(|| reject(RejectCode::MissingField, "userId", "userId or anonymousId is required"))?;
    out.insert("player_id".into(), Value::String(player));
    if let Some(id) = text(message.get("messageId")) {
        out.insert("event_id".into(), Value::String(event_id_for(game.as_str(), &id).to_string()));
    }
    let ts = first_value(Some(message), &["timestamp", "originalTimestamp"])
        .map(time_value)
        .unwrap_or_else(|| Value::String(received_at.to_rfc3339()));
    out.insert("client_ts".into(), ts);
    let mut personal = Map::new();
    if let Some(ip) = first_text(context, &["ip"]) {
        personal.insert("ip".into(), Value::String(ip));
    }
    if let Some(device) = first_text(context.and_then(|c| object(c, "device")), &["id", "advertisingId"]) {
        personal.insert("device_id".into(), Value::String(device));
    }

    let (event_type, props) = match kind.as_str() {
        "track" => {
            let name = text(message.get("event"))
                .ok_or_else(|| reject(RejectCode::MissingField, "event", "a track call needs an event name"))?;
            track(&name, properties, context)
        }
        "identify" => {
            let traits = object(message, "traits").or_else(|| context.and_then(|c| object(c, "traits")));
            if let Some(email) = first_text(traits, &["email"]) {
                personal.insert("email".into(), Value::String(email));
            }
            if let Some(name) = first_text(traits, &["name", "username", "firstName"]) {
                personal.insert("display_name".into(), Value::String(name));
            }
            ("profile_update", identify(traits, context))
        }
        "screen" | "page" => {
            let name = text(message.get("name")).unwrap_or_else(|| "unnamed".into());
            let mut p = Map::new();
            p.insert("event_id".into(), Value::String(design_id(&format!("{kind}:{name}"))));
            ("design", p)
        }
        "alias" | "group" => {
            return Err(reject(RejectCode::UnknownType, "type", format!("Segment '{kind}' calls are not supported")))
        }
        other => {
            return Err(reject(
                RejectCode::UnknownType,
                "type",
                format!("'{other}' is not a Segment call type; expected track, identify, screen or page"),
            ))
        }
    };
    out.insert("type".into(), Value::String(event_type.to_string()));
    out.insert("properties".into(), Value::Object(props));
    if !personal.is_empty() {
        out.insert("personal".into(), Value::Object(personal));
    }
    Ok(out)
}

fn put(props: &mut Map<String, Value>, name: &str, value: Option<Value>) {
    if let Some(v) = value {
        props.insert(name.to_string(), v);
    }
}

fn put_text(props: &mut Map<String, Value>, name: &str, value: Option<String>) {
    put(props, name, value.map(Value::String));
}

/// A `track` event name and its properties → a GameMetrics type and properties.
fn track(
    name: &str,
    properties: Option<&Map<String, Value>>,
    context: Option<&Map<String, Value>>,
) -> (&'static str, Map<String, Value>) {
    let mut p = Map::new();
    let event_type = match normalize_name(name).as_str() {
        "session_started" | "session_start" | "application_opened" | "game_started" | "game_start" => {
            // Only well-formed names are carried over: a client's context must not make a
            // session start invalid.
            let os = first_text(context.and_then(|c| object(c, "os")), &["name"]);
            let version = first_text(context.and_then(|c| object(c, "app")), &["version"]);
            put_text(&mut p, "platform", os.filter(|s| crate::Name::parse(s.as_str()).is_ok()));
            put_text(&mut p, "app_version", version.filter(|s| crate::Name::parse(s.as_str()).is_ok()));
            "session_start"
        }
        "session_ended" | "session_end" | "application_backgrounded" | "game_ended" | "game_end" => {
            put(&mut p, "length_seconds", first_value(properties, &["length_seconds", "duration"]).map(integer));
            "session_end"
        }
        "order_completed" | "purchase" | "product_purchased" | "checkout_completed" | "in_app_purchase" => {
            let currency = first_text(properties, &["currency"]).unwrap_or_else(|| "USD".into());
            let amount = first_value(properties, &["amount_minor"]).map(integer).or_else(|| {
                first_value(properties, &["revenue", "total", "price", "value"])
                    .map(|v| minor_units(v, Some(&currency)))
            });
            put(&mut p, "amount_minor", amount);
            let first_product = properties
                .and_then(|m| m.get("products"))
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_object);
            let item = first_text(properties, &["item_id", "product_id", "sku"])
                .or_else(|| first_text(first_product, &["product_id", "sku"]))
                .or_else(|| first_text(properties, &["order_id"]));
            put_text(&mut p, "item_id", item);
            put(&mut p, "quantity", first_value(properties, &["quantity"]).map(integer));
            p.insert("currency".into(), Value::String(currency));
            "purchase"
        }
        n @ ("level_started" | "level_completed" | "level_failed") => {
            let status = match n {
                "level_started" => "start",
                "level_completed" => "complete",
                _ => "fail",
            };
            p.insert("status".into(), json!(status));
            put_text(&mut p, "level_id", first_text(properties, &["level_id", "level", "name"]));
            put(&mut p, "score", first_value(properties, &["score"]).map(integer));
            "progression"
        }
        "achievement_unlocked" | "achievement_earned" | "achievement" => {
            put_text(
                &mut p,
                "achievement_id",
                first_text(properties, &["achievement_id", "achievement", "id", "name"]),
            );
            "achievement"
        }
        "score_posted" | "score" | "player_score" | "high_score" => {
            let board = first_text(properties, &["board", "leaderboard"]).unwrap_or_else(|| "default".into());
            p.insert("board".into(), Value::String(board));
            put(&mut p, "value", first_value(properties, &["score", "value"]).map(integer));
            "score"
        }
        _ => {
            p.insert("event_id".into(), Value::String(design_id(name)));
            if let Some(v) = first_value(properties, &["value"]).filter(Value::is_number) {
                p.insert("value".into(), v);
            }
            "design"
        }
    };
    (event_type, p)
}

/// Non-personal profile fields from the traits and the context: country (ISO 3166 alpha-2)
/// and language (the ISO 639-1 part of the locale); values that are not codes are left out.
fn identify(traits: Option<&Map<String, Value>>, context: Option<&Map<String, Value>>) -> Map<String, Value> {
    let mut p = Map::new();
    let country = first_text(traits.and_then(|t| object(t, "address")), &["country"])
        .or_else(|| first_text(traits, &["country"]))
        .or_else(|| first_text(context.and_then(|c| object(c, "location")), &["country"]))
        .filter(|c| c.len() == 2 && c.chars().all(|ch| ch.is_ascii_alphabetic()))
        .map(|c| c.to_ascii_uppercase());
    put_text(&mut p, "country", country);
    let language = first_text(context, &["locale"])
        .and_then(|l| l.split(['-', '_']).next().map(str::to_ascii_lowercase))
        .filter(|l| l.len() == 2 && l.chars().all(|ch| ch.is_ascii_lowercase()));
    put_text(&mut p, "language", language);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventBody, ProgressionStatus};

    fn game() -> GameId {
        GameId::parse("space-race").unwrap()
    }

    fn batch(messages: Value) -> DecodedEvents {
        let body = json!({"batch": messages, "sentAt": Utc::now().to_rfc3339()}).to_string();
        decode_batch(body.as_bytes(), &game(), Utc::now(), &Limits::default()).unwrap()
    }

    #[test]
    fn a_segment_batch_maps_each_known_event_to_its_type() {
        let now = Utc::now().to_rfc3339();
        let out = batch(json!([
            {"type": "track", "event": "Application Opened", "userId": "u1", "timestamp": now,
             "context": {"os": {"name": "iOS"}, "app": {"version": "1.2.3"}}},
            {"type": "track", "event": "Order Completed", "userId": "u1", "timestamp": now, "messageId": "ajs-1",
             "properties": {"revenue": 4.99, "currency": "EUR", "products": [{"product_id": "gems"}]}},
            {"type": "track", "event": "Level Completed", "anonymousId": "anon-7", "timestamp": now,
             "properties": {"level": 3, "score": 1200}},
            {"type": "track", "event": "Boss Defeated!", "userId": "u1", "timestamp": now, "properties": {"value": 12.5, "boss": "x"}},
            {"type": "identify", "userId": "u1", "timestamp": now,
             "traits": {"email": "u1@example.com", "name": "Ann", "address": {"country": "fr"}},
             "context": {"ip": "203.0.113.9", "locale": "fr-FR", "device": {"id": "dev-1"}}},
        ]));
        let ok: Vec<EventEnvelope> = out.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(ok[0].body.type_name(), "session_start");
        let EventBody::SessionStart(s) = &ok[0].body else { panic!() };
        assert_eq!(s.platform.as_ref().unwrap().as_str(), "iOS");
        let EventBody::Purchase(p) = &ok[1].body else { panic!("{:?}", ok[1].body) };
        assert_eq!((i64::from(p.amount_minor), p.currency.code(), p.item_id.as_str()), (499, "EUR", "gems"));
        assert_eq!(ok[1].event_id, event_id_for("space-race", "ajs-1"));
        let EventBody::Progression(l) = &ok[2].body else { panic!() };
        assert_eq!((l.status, l.level_id.as_str(), l.score), (ProgressionStatus::Complete, "3", Some(1200)));
        assert_eq!(ok[2].player_id.as_str(), "anon-7");
        let EventBody::Design(d) = &ok[3].body else { panic!() };
        assert_eq!((d.event_id.as_str(), d.value), ("boss_defeated", Some(12.5)));
        let EventBody::ProfileUpdate(u) = &ok[4].body else { panic!() };
        assert_eq!((u.country.as_deref(), u.language.as_deref()), (Some("FR"), Some("fr")));
        let personal = ok[4].personal.as_ref().and_then(|p| p.plain()).unwrap();
        assert_eq!(personal.email.as_deref(), Some("u1@example.com"));
        assert_eq!(personal.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(personal.device_id.as_deref(), Some("dev-1"));
    }

    #[test]
    fn bad_messages_are_refused_one_by_one_naming_the_segment_field() {
        let now = Utc::now().to_rfc3339();
        let out = batch(json!([
            {"type": "track", "event": "Level Started", "timestamp": now, "properties": {"level": 1}},
            {"type": "track", "event": "Level Started", "userId": "has space", "timestamp": now, "properties": {"level": 1}},
            {"type": "track", "event": "Order Completed", "userId": "u", "timestamp": now, "properties": {"revenue": 1, "currency": "XYZ", "sku": "a"}},
            {"type": "alias", "userId": "u", "previousId": "v"},
            {"type": "track", "userId": "u", "timestamp": now},
            {"type": "track", "event": "x", "userId": "u", "timestamp": "yesterday"},
            "not an object",
            {"type": "track", "event": "Level Started", "userId": "u", "timestamp": now, "properties": {"level": 1}},
        ]));
        let codes: Vec<(String, Option<String>)> = out
            .iter()
            .map(|r| match r {
                Ok(_) => ("ok".into(), None),
                Err(e) => (e.code.as_str().into(), e.field.clone()),
            })
            .collect();
        let expected = [
            ("missing_field", Some("userId")),
            ("invalid_field", Some("userId")),
            ("invalid_field", Some("properties.currency")),
            ("unknown_type", Some("type")),
            ("missing_field", Some("event")),
            ("bad_timestamp", Some("timestamp")),
            ("malformed", None),
            ("ok", None),
        ];
        let expected: Vec<(String, Option<String>)> =
            expected.iter().map(|(c, f)| (c.to_string(), f.map(String::from))).collect();
        assert_eq!(codes, expected);
    }

    #[test]
    fn single_calls_take_their_type_from_the_route() {
        let now = Utc::now().to_rfc3339();
        let body = json!({"userId": "u1", "event": "Achievement Unlocked", "timestamp": now,
                          "properties": {"achievement_id": "first-blood"}})
        .to_string();
        let e = decode_single(body.as_bytes(), Call::Track, &game(), Utc::now(), &Limits::default()).unwrap().unwrap();
        assert_eq!(e.body.type_name(), "achievement");
        let body = json!({"userId": "u1", "traits": {"email": "a@b.c"}}).to_string();
        let e =
            decode_single(body.as_bytes(), Call::Identify, &game(), Utc::now(), &Limits::default()).unwrap().unwrap();
        assert_eq!(e.body.type_name(), "profile_update");
        assert!(decode_single(b"[1]", Call::Track, &game(), Utc::now(), &Limits::default()).is_err());
    }

    #[test]
    fn batch_level_problems_refuse_the_batch() {
        let l = Limits { max_events: 2, ..Limits::default() };
        let g = game();
        let now = Utc::now();
        assert!(matches!(decode_batch(b"{\"batch\": []}", &g, now, &l), Err(BatchError::Empty)));
        assert!(matches!(decode_batch(b"[]", &g, now, &l), Err(BatchError::Malformed(_))));
        assert!(matches!(
            decode_batch(b"{\"batch\": [{}, {}, {}]}", &g, now, &l),
            Err(BatchError::TooManyEvents { .. })
        ));
        assert!(matches!(
            decode_batch(b"{\"batch\": [{}], \"sentAt\": \"soon\"}", &g, now, &l),
            Err(BatchError::BadSentAt(_))
        ));
    }
}
