//! The GameAnalytics collector API v2 (`POST /v2/{game_key}/events`): a JSON array of
//! events, each with a `category`, mapped onto GameMetrics events (docs/compat.md has the
//! table). Pure: the gateway authenticates the request and appends what this returns.
//!
//! - player: `user_id`; session: `session_id`; event id: `event_uuid` (a UUIDv5 of it when
//!   it is not a UUID, so a resent event is deduplicated); time: `client_ts` (Unix seconds,
//!   already corrected by the SDK with the `server_ts` of init), else the time of receipt.
//! - `user` → `session_start`, `session_end` → `session_end`, `business` → `purchase`,
//!   `progression` → `progression`, `resource` → `resource`, `design` → `design`; `error`,
//!   `ads` and `impression` → design events (`error:<severity>`, `ads:<action>:<type>:…`,
//!   `impression:<network>`). `sdk_error` (diagnostics of the SDK itself, without a player)
//!   and unknown categories are refused per event (`unknown_type`).
//! - personal fields: the advertising/vendor device ids (`ios_idfa`, `google_aid`, …), the
//!   client address the gateway saw and an error's message are sealed as `personal` fields.

use super::{event_id_for, integer, reject, text, time_value, validate};
use crate::idempotency::{derived_event_id, IdempotencyKey};
use crate::validate::{BatchError, DecodedEvents, EventContext, Limits, RejectCode, Rejection};
use crate::GameId;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// Our field → the GameAnalytics field a rejection names.
const RENAME: &[(&str, &str)] = &[
    ("player_id", "user_id"),
    ("event_id", "event_uuid"),
    ("client_ts", "client_ts"),
    ("session_id", "session_id"),
    ("properties.amount_minor", "amount"),
    ("properties.currency", "currency"),
    ("properties.item_id", "event_id"),
    ("properties.level_id", "event_id"),
    ("properties.virtual_currency", "event_id"),
    ("properties.event_id", "event_id"),
    ("properties.amount", "amount"),
    ("properties.score", "score"),
    ("properties.value", "value"),
    ("properties.length_seconds", "length"),
    ("personal.free_text", "message"),
    ("personal.device_id", "ios_idfa"),
];

/// The device ids a GameAnalytics SDK may send, in the order one is taken as `device_id`.
pub const DEVICE_ID_FIELDS: &[&str] = &["ios_idfa", "google_aid", "ios_idfv", "android_id", "oaid", "amazon_aid"];

/// Severities of `error` events.
pub const SEVERITIES: &[&str] = &["debug", "info", "warning", "error", "critical"];

/// What identifies an event of the request in the collector's 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventRef {
    pub category: Option<String>,
    pub event_uuid: Option<String>,
}

/// A decoded `events` request: an outcome per event, and what identifies each one.
#[derive(Debug)]
pub struct DecodedRequest {
    pub events: DecodedEvents,
    pub refs: Vec<EventRef>,
}

/// What the gateway knows of the request beyond its body.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    pub game: &'a GameId,
    pub received_at: DateTime<Utc>,
    pub limits: &'a Limits,
    /// The client's address as the gateway saw it: sealed with `user` (session start) events.
    pub client_ip: Option<&'a str>,
    /// The request's `Idempotency-Key`: events without `event_uuid` get ids derived from it.
    pub key: Option<&'a IdempotencyKey>,
}

fn starts_like_array(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

/// Decodes a `POST /v2/{game_key}/events` body (already inflated): a JSON array of events.
/// The request is refused whole only when it is not such an array (or too large, or empty);
/// otherwise every event gets its own outcome.
pub fn decode_events(body: &[u8], ctx: RequestContext<'_>) -> Result<DecodedRequest, BatchError> {
    let limits = ctx.limits;
    if body.len() > limits.max_body_bytes {
        return Err(BatchError::TooLarge { bytes: body.len(), max: limits.max_body_bytes });
    }
    if !starts_like_array(body) {
        return Err(BatchError::Malformed("the collector takes a JSON array of events".into()));
    }
    let raw: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| BatchError::Malformed(e.to_string()))?;
    if raw.is_empty() {
        return Err(BatchError::Empty);
    }
    if raw.len() > limits.max_events {
        return Err(BatchError::TooManyEvents { count: raw.len(), max: limits.max_events });
    }
    let mut events = Vec::with_capacity(raw.len());
    let mut refs = Vec::with_capacity(raw.len());
    for (index, raw) in raw.iter().enumerate() {
        let len = raw.get().len();
        if len > limits.max_event_bytes {
            refs.push(EventRef::default());
            events.push(Err(Rejection {
                code: RejectCode::TooLarge,
                field: None,
                reason: format!("event is {len} bytes; at most {} allowed", limits.max_event_bytes),
            }));
            continue;
        }
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::Object(event)) => {
                refs.push(EventRef {
                    category: text(event.get("category")),
                    event_uuid: text(event.get("event_uuid")),
                });
                events.push(decode_event(&event, ctx, index));
            }
            Ok(_) => {
                refs.push(EventRef::default());
                events.push(Err(Rejection {
                    code: RejectCode::Malformed,
                    field: None,
                    reason: "an event must be a JSON object".into(),
                }));
            }
            Err(e) => {
                refs.push(EventRef::default());
                events.push(Err(Rejection { code: RejectCode::Malformed, field: None, reason: e.to_string() }));
            }
        }
    }
    Ok(DecodedRequest { events, refs })
}

fn decode_event(
    event: &Map<String, Value>,
    ctx: RequestContext<'_>,
    index: usize,
) -> Result<crate::EventEnvelope, Rejection> {
    let mut fields = map_event(event, ctx.game, ctx.received_at, ctx.client_ip)?;
    if !fields.contains_key("event_id") {
        if let Some(id) = derived_event_id(ctx.key, ctx.game.as_str(), index, event) {
            fields.insert("event_id".into(), id);
        }
    }
    let vctx = EventContext { game: ctx.game, sent_at: None, received_at: ctx.received_at, limits: ctx.limits };
    validate(&vctx, fields, RENAME)
}

/// The public-format fields of one GameAnalytics event.
pub fn map_event(
    event: &Map<String, Value>,
    game: &GameId,
    received_at: DateTime<Utc>,
    client_ip: Option<&str>,
) -> Result<Map<String, Value>, Rejection> {
    let category = text(event.get("category")).ok_or_else(|| {
        reject(RejectCode::MissingField, "category", "required: user, session_end, business, progression, …")
    })?;
    if category == "sdk_error" {
        return Err(reject(
            RejectCode::UnknownType,
            "category",
            "sdk_error events describe the SDK itself, not a player: not kept",
        ));
    }
    let mut out = Map::new();
    let player = text(event.get("user_id")).ok_or_else(|| reject(RejectCode::MissingField, "user_id", "required"))?;
    out.insert("player_id".into(), Value::String(player));
    if let Some(id) = text(event.get("event_uuid")) {
        out.insert("event_id".into(), Value::String(event_id_for(game.as_str(), &id).to_string()));
    }
    if let Some(session) = text(event.get("session_id")) {
        out.insert("session_id".into(), Value::String(session));
    }
    let ts = event
        .get("client_ts")
        .filter(|v| !v.is_null())
        .cloned()
        .map(time_value)
        .unwrap_or_else(|| Value::String(received_at.to_rfc3339()));
    out.insert("client_ts".into(), ts);

    let mut personal = Map::new();
    let mut p = Map::new();
    let event_type = match category.as_str() {
        "user" => {
            // Only well-formed values are carried over: an SDK's annotations must not make a
            // session start invalid.
            let valid = |s: &String| crate::Name::parse(s.as_str()).is_ok();
            put_text(&mut p, "platform", text(event.get("platform")).filter(valid));
            put_text(&mut p, "app_version", text(event.get("build")).filter(valid));
            if let Some(device) = DEVICE_ID_FIELDS.iter().find_map(|f| text(event.get(*f))) {
                personal.insert("device_id".into(), Value::String(device));
            }
            if let Some(ip) = client_ip {
                personal.insert("ip".into(), Value::String(ip.to_string()));
            }
            "session_start"
        }
        "session_end" => {
            put(&mut p, "length_seconds", event.get("length").cloned().map(integer));
            "session_end"
        }
        "business" => {
            let id = required_id(event)?;
            let (item_type, item_id) = id
                .split_once(':')
                .ok_or_else(|| reject(RejectCode::InvalidField, "event_id", "must be itemType:itemId"))?;
            p.insert("item_id".into(), Value::String(format!("{}:{}", name_part(item_type), name_part(item_id))));
            put(&mut p, "amount_minor", event.get("amount").cloned().map(integer));
            put_text(&mut p, "currency", text(event.get("currency")));
            "purchase"
        }
        "progression" => {
            let id = required_id(event)?;
            let mut parts = id.split(':');
            let status = match parts.next().map(str::to_ascii_lowercase).as_deref() {
                Some("start") => "start",
                Some("complete") => "complete",
                Some("fail") => "fail",
                _ => {
                    return Err(reject(
                        RejectCode::InvalidField,
                        "event_id",
                        "must be Start|Complete|Fail:progression01[:progression02[:progression03]]",
                    ))
                }
            };
            let levels: Vec<String> = parts.map(name_part).collect();
            if levels.is_empty() || levels.len() > 3 || levels.iter().any(String::is_empty) {
                return Err(reject(
                    RejectCode::InvalidField,
                    "event_id",
                    "must be Start|Complete|Fail:progression01[:progression02[:progression03]]",
                ));
            }
            p.insert("status".into(), json!(status));
            p.insert("level_id".into(), Value::String(levels.join(":")));
            put(&mut p, "score", event.get("score").cloned().map(integer));
            "progression"
        }
        "resource" => {
            let id = required_id(event)?;
            let parts: Vec<&str> = id.split(':').collect();
            let [flow, currency, item_type, item_id] = parts.as_slice() else {
                return Err(reject(
                    RejectCode::InvalidField,
                    "event_id",
                    "must be Sink|Source:virtualCurrency:itemType:itemId",
                ));
            };
            let flow = match flow.to_ascii_lowercase().as_str() {
                "sink" => "sink",
                "source" => "source",
                _ => return Err(reject(RejectCode::InvalidField, "event_id", "the flow must be Sink or Source")),
            };
            p.insert("flow".into(), json!(flow));
            p.insert("virtual_currency".into(), Value::String(name_part(currency)));
            p.insert("item_id".into(), Value::String(format!("{}:{}", name_part(item_type), name_part(item_id))));
            // The SDKs send a sink's amount negative; the typed event carries the flow apart.
            let amount = event.get("amount").cloned().map(integer).map(|v| match v.as_i64() {
                Some(n) => Value::from(n.saturating_abs()),
                None => v,
            });
            put(&mut p, "amount", amount);
            "resource"
        }
        "design" => {
            let id = required_id(event)?;
            p.insert("event_id".into(), Value::String(design_parts(&id)));
            put(&mut p, "value", event.get("value").filter(|v| !v.is_null()).cloned());
            "design"
        }
        "error" => {
            let severity = text(event.get("severity")).map(|s| s.to_ascii_lowercase()).unwrap_or_default();
            if !SEVERITIES.contains(&severity.as_str()) {
                return Err(reject(
                    RejectCode::InvalidField,
                    "severity",
                    format!("must be one of {}", SEVERITIES.join(", ")),
                ));
            }
            p.insert("event_id".into(), Value::String(format!("error:{severity}")));
            // The message is free text (stack traces, paths, sometimes a player's input):
            // sealed with the player's key, cut to what the personal field holds.
            if let Some(message) = text(event.get("message")) {
                personal.insert("free_text".into(), Value::String(message.chars().take(4096).collect()));
            }
            "design"
        }
        "ads" => {
            let part = |f: &str| text(event.get(f)).map(|s| name_part(&s)).filter(|s| !s.is_empty());
            let parts: Vec<String> = ["ad_action", "ad_type", "ad_sdk_name", "ad_placement"]
                .iter()
                .map(|f| part(f).unwrap_or_else(|| "unknown".into()))
                .collect();
            p.insert("event_id".into(), Value::String(design_parts(&format!("ads:{}", parts.join(":")))));
            put(&mut p, "value", event.get("ad_duration").filter(|v| v.is_number()).cloned());
            "design"
        }
        "impression" => {
            let network = text(event.get("ad_network_name")).map(|s| name_part(&s)).unwrap_or_else(|| "unknown".into());
            p.insert("event_id".into(), Value::String(design_parts(&format!("impression:{network}"))));
            let revenue = event.get("impression_data").and_then(|d| d.get("revenue")).filter(|v| v.is_number());
            put(&mut p, "value", revenue.cloned());
            "design"
        }
        other => {
            return Err(reject(
                RejectCode::UnknownType,
                "category",
                format!(
                    "'{other}' is not a collector category; expected user, session_end, business, progression, \
                     resource, design, error, ads or impression"
                ),
            ))
        }
    };
    out.insert("type".into(), Value::String(event_type.into()));
    out.insert("properties".into(), Value::Object(p));
    if !personal.is_empty() {
        out.insert("personal".into(), Value::Object(personal));
    }
    Ok(out)
}

fn required_id(event: &Map<String, Value>) -> Result<String, Rejection> {
    text(event.get("event_id")).ok_or_else(|| reject(RejectCode::MissingField, "event_id", "required"))
}

/// One `:`-separated part of a GameAnalytics id, with the characters the collector allows
/// but names here do not (space, `(`, `)`, `!`, `?`, …) replaced by `_`; case is kept.
pub fn name_part(part: &str) -> String {
    part.trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect()
}

/// A design id: its parts each through [`name_part`] (the validator then refuses more than
/// five parts or a part longer than 32 characters, naming `event_id`).
fn design_parts(id: &str) -> String {
    id.split(':').map(name_part).collect::<Vec<_>>().join(":")
}

fn put(props: &mut Map<String, Value>, name: &str, value: Option<Value>) {
    if let Some(v) = value {
        props.insert(name.to_string(), v);
    }
}

fn put_text(props: &mut Map<String, Value>, name: &str, value: Option<String>) {
    put(props, name, value.map(Value::String));
}

/// Parses an `init` body: the SDK's annotations (`user_id`, `sdk_version`, `platform`, …) as
/// a JSON object. Nothing of it is kept (the session starts with the `user` event that
/// follows); the gateway only checks that it is what an SDK sends.
pub fn check_init(body: &[u8]) -> Result<(), BatchError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(_)) => Ok(()),
        Ok(_) => Err(BatchError::Malformed("the init body must be a JSON object of the SDK's annotations".into())),
        Err(e) => Err(BatchError::Malformed(format!("the init body is not JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests;
