//! The event envelope: what the gateway appends to `player.events.raw` after validation, and
//! the public wire format it is decoded from.

use crate::events::{EventBody, PersonalFields};
use crate::ids::{GameId, PlayerId, SessionId};
use crate::upcast::StoredProperties;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The newest schema version of the public format (see [`crate::upcast`]).
pub const CURRENT_SCHEMA_VERSION: u16 = 2;

/// A validated event, as stored on `player.events.raw`. It serialises its body in the stored
/// form of its `schema_version` (what was ingested); decode records with
/// [`crate::upcast::decode_raw`], which accepts every stored version.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventEnvelope {
    /// The client's id when it sent one (used for deduplication), otherwise a UUIDv7.
    pub event_id: Uuid,
    pub game_id: GameId,
    pub player_id: PlayerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    #[serde(flatten)]
    pub body: EventBody,
    /// The time the client's clock gave.
    pub client_ts: DateTime<Utc>,
    /// The time the client's clock gave when the batch was sent, if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    /// The gateway's clock when the request arrived.
    pub received_at: DateTime<Utc>,
    /// `client_ts` corrected for the client's clock skew; what every read model uses.
    pub timestamp: DateTime<Utc>,
    pub schema_version: u16,
    /// Personal data, apart from everything else (see `PersonalFields`): plain when the
    /// validator produced it, sealed with the player's data key before it is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal: Option<PersonalData>,
}

/// An event's personal fields, in the clear (between validation and sealing, in the gateway's
/// memory only) or sealed with the player's data key (everywhere else).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PersonalData {
    Sealed(SealedPersonal),
    Plain(PersonalFields),
}

impl PersonalData {
    /// The fields in clear, if they are not sealed yet.
    pub fn plain(&self) -> Option<&PersonalFields> {
        match self {
            Self::Plain(p) => Some(p),
            Self::Sealed(_) => None,
        }
    }
}

/// Personal fields encrypted with the player's data key (AES-256-GCM). Once the key is
/// destroyed (erasure), nothing can read them: that is the crypto-shredding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedPersonal {
    /// Cipher, always `A256GCM` for now.
    pub alg: String,
    /// The 96-bit nonce, base64.
    pub nonce: String,
    /// Ciphertext with its authentication tag, base64.
    pub sealed: String,
}

impl Serialize for EventEnvelope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("event_id", &self.event_id)?;
        map.serialize_entry("game_id", &self.game_id)?;
        map.serialize_entry("player_id", &self.player_id)?;
        if let Some(session_id) = &self.session_id {
            map.serialize_entry("session_id", session_id)?;
        }
        map.serialize_entry("type", self.body.type_name())?;
        map.serialize_entry("properties", &StoredProperties { body: &self.body, schema_version: self.schema_version })?;
        map.serialize_entry("client_ts", &self.client_ts)?;
        if let Some(sent_at) = &self.sent_at {
            map.serialize_entry("sent_at", sent_at)?;
        }
        map.serialize_entry("received_at", &self.received_at)?;
        map.serialize_entry("timestamp", &self.timestamp)?;
        map.serialize_entry("schema_version", &self.schema_version)?;
        match &self.personal {
            None => {}
            Some(PersonalData::Sealed(sealed)) => map.serialize_entry("personal", sealed)?,
            // The one guarantee that matters: no code path can store a personal value in clear.
            Some(PersonalData::Plain(_)) => {
                return Err(serde::ser::Error::custom("personal fields must be sealed before the event is stored"))
            }
        }
        map.end()
    }
}

/// A request to erase a player everywhere. It travels on the player's partition of
/// `player.events.raw`, after everything the player did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErasureRequest {
    pub erasure_id: Uuid,
    pub game_id: GameId,
    pub player_id: PlayerId,
    pub reason: String,
    pub requested_at: DateTime<Utc>,
}

/// Everything that travels on `player.events.raw`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
// Nearly every record is an `Event`; boxing it would add an allocation per event to save
// space only on the rare erasure request.
#[allow(clippy::large_enum_variant)]
pub enum RawRecord {
    Event(EventEnvelope),
    ErasureRequested(ErasureRequest),
}

impl RawRecord {
    pub fn game_id(&self) -> &GameId {
        match self {
            Self::Event(e) => &e.game_id,
            Self::ErasureRequested(r) => &r.game_id,
        }
    }
    pub fn player_id(&self) -> &PlayerId {
        match self {
            Self::Event(e) => &e.player_id,
            Self::ErasureRequested(r) => &r.player_id,
        }
    }
}

/// One event of the public format, as a game sends it (documentation and JSON Schema; the
/// decoder in `validate` checks it field by field to give a precise reason).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "GameMetrics event", extend("unevaluatedProperties" = false))]
pub struct PublicEvent {
    /// UUID chosen by the client; resubmitting the same id is counted once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    /// Must equal the game of the API key when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game_id: Option<GameId>,
    pub player_id: PlayerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    /// RFC 3339 time on the client's clock; not before 2000-01-01.
    pub client_ts: DateTime<Utc>,
    /// 1 (the default) or 2. Only `purchase` differs: v2 gives the price as
    /// `{"price": {"amount_minor", "currency"}}` and requires `store`
    /// (`app_store`, `google_play` or `web`); v1 has neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2))]
    pub schema_version: Option<u16>,
    #[serde(flatten)]
    pub body: EventBody,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal: Option<PersonalFields>,
}

/// A batch as posted to `POST /v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "GameMetrics event batch")]
pub struct PublicBatch {
    /// The client's clock when it sent the batch, used to correct its skew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    /// 1 to 500 events; each at most 32 KiB of JSON.
    #[schemars(length(min = 1, max = 500))]
    pub events: Vec<PublicEvent>,
}
