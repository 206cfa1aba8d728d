//! Decoders for the formats existing clients already send, mapped onto the public event
//! format and validated by the same code ([`EventContext::decode_fields`]), so every event
//! gets the same checks and the same rejection reasons whichever door it came in by.
//!
//! - [`segment`]: the Segment HTTP tracking API (`/v1/batch`, `/v1/track`, `/v1/identify`).
//! - [`legacy`]: the previous GameMetrics platform's `POST /api/v1/events`.
//! - [`gameanalytics`]: the GameAnalytics collector API v2 (`/v2/{game_key}/events`), what
//!   the GameAnalytics SDKs send.
//!
//! The mappings are documented in `docs/compat.md`.

pub mod gameanalytics;
pub mod legacy;
pub mod segment;

use crate::validate::{BatchError, EventContext, RejectCode, Rejection};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Namespace of the UUIDv5 ids derived from clients' non-UUID message ids, so that a resent
/// message gets the same event id and is deduplicated.
pub const MESSAGE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6d1c_2b8e_5f0a_4c1e_9a57_3e2d_8b4f_1a60);

/// The event id of a client message id: itself when it is a UUID, otherwise a UUIDv5 of
/// `game:message_id`.
pub fn event_id_for(game: &str, message_id: &str) -> Uuid {
    Uuid::parse_str(message_id)
        .unwrap_or_else(|_| Uuid::new_v5(&MESSAGE_ID_NAMESPACE, format!("{game}:{message_id}").as_bytes()))
}

/// `Order Completed`, `order-completed`, `orderCompleted` → `order_completed`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && prev_lower {
                out.push('_');
            }
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            out.push(c.to_ascii_lowercase());
        } else {
            prev_lower = false;
            if !out.ends_with('_') {
                out.push('_');
            }
        }
    }
    out.trim_matches('_').to_string()
}

/// A valid design event id from any text: at most 5 `:`-separated parts, each normalised
/// (`[a-z0-9_]`) and cut to 32 characters; `unnamed` when nothing is left.
pub fn design_id(name: &str) -> String {
    let parts: Vec<String> = name
        .split(':')
        .map(|p| normalize_name(p).chars().take(32).collect::<String>())
        .map(|p| p.trim_matches('_').to_string())
        .filter(|p| !p.is_empty())
        .take(5)
        .collect();
    if parts.is_empty() {
        "unnamed".to_string()
    } else {
        parts.join(":")
    }
}

/// A string from a string or a number (ids often arrive as numbers).
pub(crate) fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first of `names` present in `obj` as text.
pub(crate) fn first_text(obj: Option<&Map<String, Value>>, names: &[&str]) -> Option<String> {
    let obj = obj?;
    names.iter().find_map(|n| text(obj.get(*n)))
}

/// The first of `names` present in `obj`, as it is.
pub(crate) fn first_value(obj: Option<&Map<String, Value>>, names: &[&str]) -> Option<Value> {
    let obj = obj?;
    names.iter().find_map(|n| obj.get(*n).filter(|v| !v.is_null()).cloned())
}

/// An integer from an integer, an integral float or a numeric string; anything else is
/// passed on as it is, so that validation refuses it with its usual reason.
pub(crate) fn integer(v: Value) -> Value {
    match &v {
        Value::Number(n) if n.as_i64().is_none() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9e15 => Value::from(f as i64),
            _ => v,
        },
        Value::String(s) => s.trim().parse::<i64>().map(Value::from).unwrap_or(v),
        _ => v,
    }
}

/// A price in major units (`4.99`) as minor units of `currency` (`499`), when both are
/// understood; otherwise the value as it is (validation then says what is wrong).
pub(crate) fn minor_units(amount: Value, currency: Option<&str>) -> Value {
    let exponent = currency.and_then(iso_currency::Currency::from_code).map(|c| c.exponent().unwrap_or(0)).unwrap_or(2);
    let major = match &amount {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match major {
        Some(m) if m.is_finite() && m.abs() < 1e13 => Value::from((m * 10f64.powi(i32::from(exponent))).round() as i64),
        _ => amount,
    }
}

/// A client time given as RFC 3339 text or as a Unix time in seconds or milliseconds, as the
/// RFC 3339 text the validator reads; other values are passed on to be refused.
pub(crate) fn time_value(v: Value) -> Value {
    let seconds = match &v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    };
    match seconds {
        Some(s) if s.is_finite() => {
            let millis = if s.abs() >= 1e11 { s } else { s * 1000.0 };
            match Utc.timestamp_millis_opt(millis as i64).single() {
                Some(t) => Value::String(t.to_rfc3339()),
                None => v,
            }
        }
        _ => v,
    }
}

/// A batch-level client time (`sentAt`); `None` when absent.
pub(crate) fn sent_at(v: Option<&Value>, field: &str) -> Result<Option<DateTime<Utc>>, BatchError> {
    match v.cloned().map(time_value) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(&s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| BatchError::BadSentAt(format!("{field}: '{s}' is not an RFC 3339 time: {e}"))),
        Some(other) => Err(BatchError::BadSentAt(format!("{field}: {other} is not a time"))),
    }
}

/// Validates the mapped event, naming in a rejection the client's field instead of ours.
pub(crate) fn validate(
    ctx: &EventContext<'_>,
    fields: Map<String, Value>,
    rename: &[(&str, &str)],
) -> Result<crate::EventEnvelope, Rejection> {
    ctx.decode_fields(fields).map_err(|mut r| {
        if let Some(field) = &r.field {
            if let Some((_, theirs)) = rename.iter().find(|(ours, _)| ours == field) {
                r.field = Some((*theirs).to_string());
            }
        }
        r
    })
}

pub(crate) fn reject(code: RejectCode, field: &str, reason: impl Into<String>) -> Rejection {
    Rejection { code, field: Some(field.to_string()), reason: reason.into() }
}

/// The object under `name`, if it is one.
pub(crate) fn object<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Map<String, Value>> {
    obj.get(name).and_then(Value::as_object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_normalise_to_snake_case() {
        assert_eq!(normalize_name("Order Completed"), "order_completed");
        assert_eq!(normalize_name("orderCompleted"), "order_completed");
        assert_eq!(normalize_name("  level--UP!! "), "level_up");
    }

    #[test]
    fn design_ids_are_always_valid() {
        assert_eq!(design_id("Boss Defeated"), "boss_defeated");
        assert_eq!(design_id("a:b:c:d:e:f:g"), "a:b:c:d:e");
        assert_eq!(design_id(":::"), "unnamed");
        assert_eq!(design_id(&"x".repeat(100)).len(), 32);
        assert_eq!(design_id("ÜBER  Event"), "ber_event");
    }

    #[test]
    fn message_ids_map_to_stable_uuids() {
        let u = Uuid::now_v7();
        assert_eq!(event_id_for("g", &u.to_string()), u);
        assert_eq!(event_id_for("g", "ajs-123"), event_id_for("g", "ajs-123"));
        assert_ne!(event_id_for("g", "ajs-123"), event_id_for("h", "ajs-123"));
    }

    #[test]
    fn prices_become_minor_units_of_their_currency() {
        assert_eq!(minor_units(json!(4.99), Some("USD")), json!(499));
        assert_eq!(minor_units(json!("120"), Some("JPY")), json!(120));
        assert_eq!(minor_units(json!(1.5), Some("KWD")), json!(1500));
        assert_eq!(minor_units(json!("lots"), Some("USD")), json!("lots"));
    }

    #[test]
    fn unix_times_become_rfc3339() {
        assert_eq!(time_value(json!(1_700_000_000)), json!("2023-11-14T22:13:20+00:00"));
        assert_eq!(time_value(json!(1_700_000_000_000i64)), json!("2023-11-14T22:13:20+00:00"));
        assert_eq!(time_value(json!("x")), json!("x"));
    }
}
