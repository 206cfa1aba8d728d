//! # gm-schemas
//!
//! The vocabulary of GameMetrics, with no I/O: identifiers and money as newtypes that cannot
//! hold invalid values ([`ids`], [`money`]); the typed events of the public format
//! ([`events`]); the envelope stored on `player.events.raw` and the erasure request
//! ([`envelope`]); decoding and validation of posted batches with a reason per event
//! ([`validate`]); the enriched events actors emit to `player.events.processed`
//! ([`processed`]); schema evolution of stored records ([`upcast`]); and the JSON Schema
//! export of the public format ([`json_schema`]).

pub mod compat;
pub mod defaults;
pub mod envelope;
pub mod events;
pub mod idempotency;
pub mod ids;
pub mod json_schema;
pub mod money;
pub mod processed;
pub mod upcast;
pub mod validate;

pub use envelope::{ErasureRequest, EventEnvelope, PersonalData, PublicBatch, PublicEvent, RawRecord, SealedPersonal};
pub use events::EventBody;
pub use ids::{player_key, GameId, Name, PlayerId, SessionId};
pub use money::{Currency, MinorUnits};
pub use processed::{ClosedSession, Derived, ProcessedBody, ProcessedEvent};

/// Topic names, as in docs/design.md#topics.
pub mod topics {
    pub const RAW: &str = "player.events.raw";
    pub const PROCESSED: &str = "player.events.processed";
    pub const RECOMMENDATIONS: &str = "recommendations.generated";
    pub const DLQ: &str = "system.dlq";
}
