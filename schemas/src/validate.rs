//! Decoding and validation of a posted batch, with a precise reason per event and field.
//!
//! A batch-level problem (body too large, not JSON, too many events) refuses the whole
//! request; anything wrong inside one event refuses that event only, so bad input never
//! blocks the good events beside it.

use crate::envelope::{EventEnvelope, PersonalData};
use crate::events::*;
use crate::idempotency::{derived_event_id, IdempotencyKey};
use crate::ids::{GameId, IdError, PlayerId, SessionId};
use crate::upcast::{PurchaseV2, DEFAULT_SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

/// Size and count limits of the ingest API: `[limits]` of config/default.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(from = "LimitsSection")]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_events: usize,
    pub max_event_bytes: usize,
    /// Corrected times further ahead of the server's clock than this are clamped to it.
    pub max_future: Duration,
}

/// `[limits]` as the file writes it.
#[derive(Deserialize)]
struct LimitsSection {
    max_body_bytes: usize,
    max_events: usize,
    max_event_bytes: usize,
    max_future_hours: i64,
}

impl From<LimitsSection> for Limits {
    fn from(s: LimitsSection) -> Self {
        Self {
            max_body_bytes: s.max_body_bytes,
            max_events: s.max_events,
            max_event_bytes: s.max_event_bytes,
            max_future: Duration::hours(s.max_future_hours),
        }
    }
}

impl Default for Limits {
    /// `[limits]` of config/default.toml.
    fn default() -> Self {
        crate::defaults::section("limits")
    }
}

/// Low-cardinality reason codes, also used as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    TooLarge,
    Malformed,
    MissingField,
    InvalidField,
    UnknownType,
    BadTimestamp,
    UnsupportedVersion,
    WrongGame,
}

impl RejectCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Malformed => "malformed",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::UnknownType => "unknown_type",
            Self::BadTimestamp => "bad_timestamp",
            Self::UnsupportedVersion => "unsupported_version",
            Self::WrongGame => "wrong_game",
        }
    }
}

/// Why one event of a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub code: RejectCode,
    /// The offending field (`properties.currency`), when one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub reason: String,
}

impl Rejection {
    fn new(code: RejectCode, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { code, field: Some(field.into()), reason: reason.into() }
    }
    fn whole(code: RejectCode, reason: impl Into<String>) -> Self {
        Self { code, field: None, reason: reason.into() }
    }
}

/// Why a whole batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("body is {bytes} bytes; at most {max} allowed")]
    TooLarge { bytes: usize, max: usize },
    #[error("body is not a valid batch: {0}")]
    Malformed(String),
    #[error("batch holds {count} events; at most {max} allowed")]
    TooManyEvents { count: usize, max: usize },
    #[error("batch holds no events")]
    Empty,
    #[error("sent_at: {0}")]
    BadSentAt(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBatch<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
    #[serde(default)]
    sent_at: Option<Value>,
}

/// The outcome for each event of a batch, in the order they were sent.
pub type DecodedEvents = Vec<Result<EventEnvelope, Rejection>>;

/// Decodes and validates a batch body (already decompressed) posted for `game`; events
/// without an `event_id` get a fresh UUIDv7.
pub fn decode_batch(
    body: &[u8],
    game: &GameId,
    received_at: DateTime<Utc>,
    limits: &Limits,
) -> Result<DecodedEvents, BatchError> {
    decode_batch_keyed(body, game, received_at, limits, None)
}

/// [`decode_batch`] for a request with an `Idempotency-Key`: events without an `event_id`
/// get the id [`IdempotencyKey::event_id`] derives from the key, their position and content.
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
    // serde would also accept a struct written as a JSON array (`[[...], "..."]`): refuse
    // anything that does not even start like an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(BatchError::Malformed("a batch must be a JSON object with an `events` array".into()));
    }
    let batch: WireBatch<'_> = serde_json::from_slice(body).map_err(|e| BatchError::Malformed(e.to_string()))?;
    if batch.events.is_empty() {
        return Err(BatchError::Empty);
    }
    if batch.events.len() > limits.max_events {
        return Err(BatchError::TooManyEvents { count: batch.events.len(), max: limits.max_events });
    }
    let sent_at = match batch.sent_at {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_time(&v).map_err(BatchError::BadSentAt)?),
    };
    let ctx = EventContext { game, sent_at, received_at, limits };
    Ok(batch.events.iter().enumerate().map(|(index, raw)| ctx.decode_event_keyed(raw, key, index)).collect())
}

/// What every event of one batch shares.
pub struct EventContext<'a> {
    pub game: &'a GameId,
    pub sent_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub limits: &'a Limits,
}

impl EventContext<'_> {
    /// Validates one event of the public format.
    pub fn decode_event(&self, raw: &RawValue) -> Result<EventEnvelope, Rejection> {
        self.decode_event_keyed(raw, None, 0)
    }

    /// Validates the event at `index` of a request with idempotency key `key` (see
    /// [`crate::idempotency`]).
    pub fn decode_event_keyed(
        &self,
        raw: &RawValue,
        key: Option<&IdempotencyKey>,
        index: usize,
    ) -> Result<EventEnvelope, Rejection> {
        let len = raw.get().len();
        if len > self.limits.max_event_bytes {
            return Err(Rejection::whole(
                RejectCode::TooLarge,
                format!("event is {len} bytes; at most {} allowed", self.limits.max_event_bytes),
            ));
        }
        let value: Value =
            serde_json::from_str(raw.get()).map_err(|e| Rejection::whole(RejectCode::Malformed, e.to_string()))?;
        let Value::Object(mut fields) = value else {
            return Err(Rejection::whole(RejectCode::Malformed, "an event must be a JSON object"));
        };
        if matches!(fields.get("event_id"), None | Some(Value::Null)) {
            if let Some(id) = derived_event_id(key, self.game.as_str(), index, &fields) {
                fields.insert("event_id".into(), id);
            }
        }
        self.decode_fields(fields)
    }

    /// Validates an event given as a JSON object (also used by the compatibility decoders).
    pub fn decode_fields(&self, mut fields: Map<String, Value>) -> Result<EventEnvelope, Rejection> {
        const KNOWN: &[&str] = &[
            "event_id",
            "game_id",
            "player_id",
            "session_id",
            "client_ts",
            "schema_version",
            "type",
            "properties",
            "personal",
        ];
        if let Some(unknown) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(Rejection::new(
                RejectCode::InvalidField,
                unknown.clone(),
                format!("unknown field; allowed: {}", KNOWN.join(", ")),
            ));
        }
        let event_id = match fields.remove("event_id") {
            None | Some(Value::Null) => Uuid::now_v7(),
            Some(Value::String(s)) => Uuid::parse_str(&s)
                .map_err(|e| Rejection::new(RejectCode::InvalidField, "event_id", format!("not a UUID: {e}")))?,
            Some(_) => return Err(Rejection::new(RejectCode::InvalidField, "event_id", "must be a UUID string")),
        };
        match fields.remove("game_id") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == self.game.as_str() => {}
            Some(other) => {
                return Err(Rejection::new(
                    RejectCode::WrongGame,
                    "game_id",
                    format!("{other} is not the game of this API key ({})", self.game),
                ))
            }
        }
        let player_id =
            PlayerId::parse(required_str(&mut fields, "player_id")?).map_err(|e| id_rejection("player_id", e))?;
        let session_id = match fields.remove("session_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(SessionId::parse(s).map_err(|e| id_rejection("session_id", e))?),
            Some(_) => return Err(Rejection::new(RejectCode::InvalidField, "session_id", "must be a string")),
        };
        let schema_version = match fields.remove("schema_version") {
            None | Some(Value::Null) => DEFAULT_SCHEMA_VERSION,
            Some(Value::Number(n))
                if n.as_u64().is_some_and(|v| SUPPORTED_SCHEMA_VERSIONS.iter().any(|s| u64::from(*s) == v)) =>
            {
                n.as_u64().and_then(|v| u16::try_from(v).ok()).unwrap_or(DEFAULT_SCHEMA_VERSION)
            }
            Some(other) => {
                let supported: Vec<String> = SUPPORTED_SCHEMA_VERSIONS.iter().map(u16::to_string).collect();
                return Err(Rejection::new(
                    RejectCode::UnsupportedVersion,
                    "schema_version",
                    format!("{other} is not supported; supported: {}", supported.join(", ")),
                ));
            }
        };
        let client_ts_value = match fields.remove("client_ts") {
            None | Some(Value::Null) => return Err(Rejection::new(RejectCode::MissingField, "client_ts", "required")),
            Some(v) => v,
        };
        let client_ts =
            parse_time(&client_ts_value).map_err(|r| Rejection::new(RejectCode::BadTimestamp, "client_ts", r))?;
        let timestamp = correct_timestamp(client_ts, self.sent_at, self.received_at, self.limits)
            .map_err(|r| Rejection::new(RejectCode::BadTimestamp, "client_ts", r))?;
        let type_name = required_str(&mut fields, "type")?;
        let properties = match fields.remove("properties") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => return Err(Rejection::new(RejectCode::InvalidField, "properties", "must be an object")),
        };
        let body = decode_body(&type_name, properties, schema_version)?;
        check_body(&body)?;
        let personal = match fields.remove("personal") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => {
                let p: PersonalFields = parse_object("personal", &v)?;
                check_personal(&p)?;
                Some(PersonalData::Plain(p))
            }
            Some(_) => return Err(Rejection::new(RejectCode::InvalidField, "personal", "must be an object")),
        };
        Ok(EventEnvelope {
            event_id,
            game_id: self.game.clone(),
            player_id,
            session_id,
            body,
            client_ts,
            sent_at: self.sent_at,
            received_at: self.received_at,
            timestamp,
            schema_version,
            personal,
        })
    }
}

fn required_str(fields: &mut Map<String, Value>, name: &str) -> Result<String, Rejection> {
    match fields.remove(name) {
        None | Some(Value::Null) => Err(Rejection::new(RejectCode::MissingField, name, "required")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => {
            Err(Rejection::new(RejectCode::InvalidField, name, format!("must be a string, got {}", json_kind(&other))))
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn id_rejection(field: &str, e: IdError) -> Rejection {
    Rejection::new(RejectCode::InvalidField, field, e.to_string())
}

/// The earliest time accepted: events before 2000 come from unset clocks.
pub fn earliest_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single().unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn parse_time(v: &Value) -> Result<DateTime<Utc>, String> {
    let Value::String(s) = v else {
        return Err(format!("must be an RFC 3339 string, got {}", json_kind(v)));
    };
    let t =
        DateTime::parse_from_rfc3339(s).map_err(|e| format!("'{s}' is not an RFC 3339 time: {e}"))?.with_timezone(&Utc);
    if t < earliest_time() {
        return Err(format!("{s} is before 2000-01-01T00:00:00Z"));
    }
    Ok(t)
}

/// Corrects the client's clock skew: `client_ts − (sent_at − received_at)`. A result more than
/// `max_future` ahead of the server is clamped to the server's time; one before 2000 refused.
pub fn correct_timestamp(
    client_ts: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
    limits: &Limits,
) -> Result<DateTime<Utc>, String> {
    let corrected = match sent_at {
        Some(sent) => client_ts - (sent - received_at),
        None => client_ts,
    };
    if corrected < earliest_time() {
        return Err(format!("{corrected} (after clock-skew correction) is before 2000-01-01"));
    }
    if corrected > received_at + limits.max_future {
        return Ok(received_at);
    }
    Ok(corrected)
}

/// Deserialises the object under `prefix` (`properties`, `personal`), naming the offending
/// property in the rejection.
fn parse_object<T: DeserializeOwned>(prefix: &str, value: &Value) -> Result<T, Rejection> {
    let msg = match T::deserialize(value) {
        Ok(parsed) => return Ok(parsed),
        Err(e) => e.to_string(),
    };
    if let Some(name) = backticked(&msg, "missing field `") {
        return Err(Rejection::new(RejectCode::MissingField, format!("{prefix}.{name}"), msg));
    }
    if let Some(name) = backticked(&msg, "unknown field `") {
        return Err(Rejection::new(RejectCode::InvalidField, format!("{prefix}.{name}"), msg));
    }
    // serde does not say which property held a bad value: find the one whose removal makes
    // the error go away (or turn into "missing field `name`"). No properties struct has more
    // than a handful of fields, so a larger object must hold unknown ones too: don't search it
    // (that would be quadratic in what a client sends).
    const MAX_SEARCHED_KEYS: usize = 8;
    let culprit = value.as_object().filter(|map| map.len() <= MAX_SEARCHED_KEYS).and_then(|map| {
        map.keys().find(|key| {
            let mut without = map.clone();
            without.remove(*key);
            match T::deserialize(&Value::Object(without)) {
                Ok(_) => true,
                Err(e) => backticked(&e.to_string(), "missing field `") == Some(key.as_str()),
            }
        })
    });
    let (field, reason) = match culprit {
        Some(key) => (format!("{prefix}.{key}"), format!("{key}: {msg}")),
        None => (prefix.to_string(), msg),
    };
    Err(Rejection::new(RejectCode::InvalidField, field, reason))
}

/// `purchase` properties of `schema_version` (see [`crate::upcast`]), in the canonical form.
fn decode_purchase(props: Value, schema_version: u16) -> Result<Purchase, Rejection> {
    if schema_version < 2 {
        let p: Purchase = parse_object("properties", &props)?;
        if p.store.is_some() {
            return Err(Rejection::new(
                RejectCode::InvalidField,
                "properties.store",
                "store is a schema_version 2 field; send schema_version: 2 with price {amount_minor, currency}",
            ));
        }
        return Ok(p);
    }
    for v1_field in ["amount_minor", "currency"] {
        if props.get(v1_field).is_some() {
            return Err(Rejection::new(
                RejectCode::InvalidField,
                format!("properties.{v1_field}"),
                format!("schema_version 2 gives the price as price.{v1_field}"),
            ));
        }
    }
    match props.get("price") {
        None | Some(Value::Null) => {
            return Err(Rejection::new(
                RejectCode::MissingField,
                "properties.price",
                "required: {\"amount_minor\", \"currency\"}",
            ))
        }
        Some(price @ Value::Object(_)) => {
            parse_object::<crate::upcast::Price>("properties.price", price)?;
        }
        Some(other) => {
            return Err(Rejection::new(
                RejectCode::InvalidField,
                "properties.price",
                format!("must be an object {{\"amount_minor\", \"currency\"}}, got {}", json_kind(other)),
            ))
        }
    }
    Ok(parse_object::<PurchaseV2>("properties", &props)?.into())
}

fn decode_body(type_name: &str, props: Value, schema_version: u16) -> Result<EventBody, Rejection> {
    fn parse<T: DeserializeOwned>(props: Value) -> Result<T, Rejection> {
        parse_object("properties", &props)
    }
    Ok(match type_name {
        "session_start" => EventBody::SessionStart(parse(props)?),
        "session_end" => EventBody::SessionEnd(parse(props)?),
        "progression" => EventBody::Progression(parse(props)?),
        "purchase" => EventBody::Purchase(decode_purchase(props, schema_version)?),
        "resource" => EventBody::Resource(parse(props)?),
        "score" => EventBody::Score(parse(props)?),
        "achievement" => EventBody::Achievement(parse(props)?),
        "item_use" => EventBody::ItemUse(parse(props)?),
        "design" => EventBody::Design(parse(props)?),
        "profile_update" => EventBody::ProfileUpdate(parse(props)?),
        "consent_update" => EventBody::ConsentUpdate(parse(props)?),
        other => {
            return Err(Rejection::new(
                RejectCode::UnknownType,
                "type",
                format!("unknown event type '{other}'; known: {}", EventBody::TYPES.join(", ")),
            ))
        }
    })
}

/// `name` in a serde message `{prefix}name` ... `.
fn backticked<'m>(msg: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = msg.strip_prefix(prefix)?;
    rest.split('`').next()
}

fn range(field: &str, value: i64, min: i64, max: i64) -> Result<(), Rejection> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Rejection::new(
            RejectCode::InvalidField,
            format!("properties.{field}"),
            format!("{value} is out of range {min}..={max}"),
        ))
    }
}

/// Numeric ranges and formats that types alone do not express.
fn check_body(body: &EventBody) -> Result<(), Rejection> {
    match body {
        EventBody::SessionEnd(e) => {
            if let Some(len) = e.length_seconds {
                range("length_seconds", len.into(), 0, 7 * 24 * 3600)?;
            }
        }
        EventBody::Progression(p) => {
            if let Some(score) = p.score {
                range("score", score, 0, 1_000_000_000_000)?;
            }
        }
        EventBody::Purchase(p) => range("quantity", p.quantity.into(), 1, 10_000)?,
        EventBody::Resource(r) => range("amount", r.amount, 1, 1_000_000_000_000)?,
        EventBody::Score(s) => range("value", s.value, -1_000_000_000_000_000, 1_000_000_000_000_000)?,
        EventBody::ItemUse(i) => range("quantity", i.quantity.into(), 1, 10_000)?,
        EventBody::Design(d) => {
            let parts: Vec<&str> = d.event_id.as_str().split(':').collect();
            if parts.len() > 5 || parts.iter().any(|p| p.is_empty() || p.len() > 32) {
                return Err(Rejection::new(
                    RejectCode::InvalidField,
                    "properties.event_id",
                    "must be 1 to 5 non-empty parts of at most 32 characters, separated by ':'",
                ));
            }
            if let Some(v) = d.value {
                if !v.is_finite() || v.abs() > 1e12 {
                    return Err(Rejection::new(
                        RejectCode::InvalidField,
                        "properties.value",
                        format!("{v} must be a finite number with |value| <= 1e12"),
                    ));
                }
            }
        }
        EventBody::ProfileUpdate(p) => {
            if let Some(c) = &p.country {
                if c.len() != 2 || !c.chars().all(|c| c.is_ascii_uppercase()) {
                    return Err(Rejection::new(
                        RejectCode::InvalidField,
                        "properties.country",
                        format!("'{c}' is not an ISO 3166-1 alpha-2 code (two upper-case letters)"),
                    ));
                }
            }
            if let Some(l) = &p.language {
                if l.len() != 2 || !l.chars().all(|c| c.is_ascii_lowercase()) {
                    return Err(Rejection::new(
                        RejectCode::InvalidField,
                        "properties.language",
                        format!("'{l}' is not an ISO 639-1 code (two lower-case letters)"),
                    ));
                }
            }
        }
        EventBody::SessionStart(_) | EventBody::Achievement(_) | EventBody::ConsentUpdate(_) => {}
    }
    Ok(())
}

fn check_personal(p: &PersonalFields) -> Result<(), Rejection> {
    let fields = [
        ("device_id", &p.device_id, 256),
        ("ip", &p.ip, 64),
        ("email", &p.email, 256),
        ("display_name", &p.display_name, 128),
        ("free_text", &p.free_text, 4096),
    ];
    for (name, value, max) in fields {
        if let Some(v) = value {
            if v.chars().count() > max {
                return Err(Rejection::new(
                    RejectCode::InvalidField,
                    format!("personal.{name}"),
                    format!("at most {max} characters"),
                ));
            }
        }
    }
    if let Some(ip) = &p.ip {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(Rejection::new(RejectCode::InvalidField, "personal.ip", "not an IP address"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
