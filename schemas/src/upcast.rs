//! Schema evolution of the records on `player.events.raw`. Pure: no I/O.
//!
//! A record on the log keeps the form it was ingested in, so one log holds several versions
//! of an event type. Everything that reads the log decodes it with [`decode_raw`], which
//! upcasts older or newer stored forms into the one canonical in-memory form: actors and
//! projections only ever see [`EventBody`].
//!
//! | version | `purchase` properties |
//! |---|---|
//! | 1 | `{"amount_minor", "currency", "item_id", "quantity"}` |
//! | 2 | `{"price": {"amount_minor", "currency"}, "item_id", "quantity", "store"}` |
//!
//! The canonical form is the v1 shape plus an optional `store` (`None` for v1 purchases).
//! [`EventEnvelope`](crate::EventEnvelope) serialises its body in the stored form of its
//! `schema_version` ([`StoredProperties`]), so the gateway appends what was ingested.
//! Every other event type has the same shape in v1 and v2.

use crate::envelope::RawRecord;
use crate::events::{EventBody, Purchase, Store};
use crate::ids::Name;
use crate::money::{Currency, MinorUnits};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// The schema version an event gets when it names none.
pub const DEFAULT_SCHEMA_VERSION: u16 = 1;
/// Every schema version the ingest API accepts.
pub const SUPPORTED_SCHEMA_VERSIONS: &[u16] = &[1, 2];

/// A price in `purchase` v2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Minor units (cents), 1..=1e9.
    pub amount_minor: MinorUnits,
    /// ISO 4217 code.
    pub currency: Currency,
}

/// `purchase` properties in `schema_version: 2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseV2 {
    pub price: Price,
    pub item_id: Name,
    /// 1..=10000, default 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10_000))]
    pub quantity: u32,
    pub store: Store,
}

/// The JSON Schema of `purchase` properties: the v1 shape or the v2 shape (which one a
/// given event must use follows its `schema_version`; the decoder checks that).
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum PurchaseAnyVersion {
    V1(Purchase),
    V2(PurchaseV2),
}

fn one() -> u32 {
    1
}

impl From<PurchaseV2> for Purchase {
    fn from(v2: PurchaseV2) -> Self {
        Purchase {
            amount_minor: v2.price.amount_minor,
            currency: v2.price.currency,
            item_id: v2.item_id,
            quantity: v2.quantity,
            store: Some(v2.store),
        }
    }
}

/// A borrowed `purchase` v2, for writing the stored form without copying.
#[derive(Serialize)]
struct PurchaseV2Ref<'a> {
    price: PriceRef<'a>,
    item_id: &'a Name,
    quantity: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<Store>,
}

#[derive(Serialize)]
struct PriceRef<'a> {
    amount_minor: &'a MinorUnits,
    currency: &'a Currency,
}

/// The `properties` of `body` in the stored form of `schema_version` (the downcast of the
/// canonical form; [`upcast_raw_value`] is its inverse).
pub struct StoredProperties<'a> {
    pub body: &'a EventBody,
    pub schema_version: u16,
}

impl Serialize for StoredProperties<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.body {
            EventBody::Purchase(p) if self.schema_version >= 2 => PurchaseV2Ref {
                price: PriceRef { amount_minor: &p.amount_minor, currency: &p.currency },
                item_id: &p.item_id,
                quantity: p.quantity,
                store: p.store,
            }
            .serialize(s),
            EventBody::SessionStart(p) => p.serialize(s),
            EventBody::SessionEnd(p) => p.serialize(s),
            EventBody::Progression(p) => p.serialize(s),
            EventBody::Purchase(p) => p.serialize(s),
            EventBody::Resource(p) => p.serialize(s),
            EventBody::Score(p) => p.serialize(s),
            EventBody::Achievement(p) => p.serialize(s),
            EventBody::ItemUse(p) => p.serialize(s),
            EventBody::Design(p) => p.serialize(s),
            EventBody::ProfileUpdate(p) => p.serialize(s),
            EventBody::ConsentUpdate(p) => p.serialize(s),
        }
    }
}

/// Rewrites a stored raw record (as JSON) into the canonical form, in place. Returns whether
/// anything changed. Today: `purchase` v2 → `price` flattened into `amount_minor` and
/// `currency`; `store` kept.
pub fn upcast_raw_value(record: &mut Value) -> bool {
    let Some(obj) = record.as_object_mut() else { return false };
    if obj.get("record").and_then(Value::as_str) != Some("event") {
        return false;
    }
    let version = obj.get("schema_version").and_then(Value::as_u64).unwrap_or(1);
    if version < 2 || obj.get("type").and_then(Value::as_str) != Some("purchase") {
        return false;
    }
    let Some(Value::Object(props)) = obj.get_mut("properties") else { return false };
    let Some(Value::Object(price)) = props.remove("price") else { return false };
    let mut price: Map<String, Value> = price;
    for field in ["amount_minor", "currency"] {
        if let Some(v) = price.remove(field) {
            props.insert(field.to_string(), v);
        }
    }
    true
}

/// Decodes a record of `player.events.raw` in any stored version into the canonical form.
/// The common case (a record already in the canonical shape) is one direct parse; only a
/// record that does not parse is upcast through a JSON value.
pub fn decode_raw(bytes: &[u8]) -> Result<RawRecord, serde_json::Error> {
    let first = match serde_json::from_slice::<RawRecord>(bytes) {
        Ok(record) => return Ok(record),
        Err(e) => e,
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(bytes) else { return Err(first) };
    if upcast_raw_value(&mut value) {
        serde_json::from_value(value)
    } else {
        Err(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(version: u16, props: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "record": "event",
            "event_id": "0190a6b8-7c6a-7b3c-9d2e-1f2a3b4c5d6e",
            "game_id": "g",
            "player_id": "p",
            "type": "purchase",
            "properties": props,
            "client_ts": "2024-05-01T11:59:00Z",
            "received_at": "2024-05-01T12:00:00Z",
            "timestamp": "2024-05-01T11:59:00Z",
            "schema_version": version,
        }))
        .unwrap()
    }

    #[test]
    fn purchase_v2_upcasts_to_the_canonical_form_and_writes_back_as_v2() {
        let v1 = stored(1, json!({"amount_minor": 499, "currency": "USD", "item_id": "gem", "quantity": 2}));
        let v2 = stored(
            2,
            json!({"price": {"amount_minor": 499, "currency": "USD"}, "item_id": "gem", "quantity": 2, "store": "web"}),
        );
        let RawRecord::Event(a) = decode_raw(&v1).unwrap() else { panic!() };
        let RawRecord::Event(b) = decode_raw(&v2).unwrap() else { panic!() };
        let (EventBody::Purchase(pa), EventBody::Purchase(pb)) = (&a.body, &b.body) else { panic!() };
        assert_eq!(pa.amount_minor, pb.amount_minor);
        assert_eq!(pa.currency, pb.currency);
        assert_eq!(pa.store, None);
        assert_eq!(pb.store, Some(Store::Web));
        // Serialising keeps each record's stored form: the log holds what was ingested.
        let back: Value = serde_json::to_value(RawRecord::Event(b.clone())).unwrap();
        assert_eq!(back["properties"]["price"]["amount_minor"], json!(499));
        assert!(back["properties"].get("amount_minor").is_none());
        let back1: Value = serde_json::to_value(RawRecord::Event(a)).unwrap();
        assert_eq!(back1["properties"]["amount_minor"], json!(499));
        assert_eq!(decode_raw(&serde_json::to_vec(&back).unwrap()).unwrap(), RawRecord::Event(b));
    }

    #[test]
    fn an_unreadable_record_keeps_its_original_error() {
        assert!(decode_raw(b"{not json").is_err());
        let bad = stored(2, json!({"price": "free", "item_id": "gem", "store": "web"}));
        assert!(decode_raw(&bad).is_err());
    }
}
