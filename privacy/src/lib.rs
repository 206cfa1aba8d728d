//! Privacy, as docs/design.md#privacy describes it:
//!
//! - [`crypto`]: per-player data keys wrapped by a master key; personal fields sealed with
//!   AES-256-GCM at ingest, so destroying a key shreds every copy (log, replicas, backups);
//!   keyed pseudonyms under which the log, the actors and the snapshots know a player; the
//!   one-way subject hash that privacy tables use instead of the player's id.
//! - [`erasure`]: status, timeline and the HMAC-signed receipt of an erasure.
//! - [`store`]: the `PrivacyStore` port, implemented by `gm-postgres` and `gm-embedded`, and
//!   the erasure start both write ([`NewErasure::begin`]); the `PlayerCache` port (Redis).
//! - [`service`]: the privacy of ingest and the erasure coordinator over the ports
//!   ([`PrivacyService`]): the erasure flow (destroy key → append `ErasureRequested` to the
//!   player's partition → actors wipe and emit `PlayerErased` → every projection confirms →
//!   cache purged → pseudonym unlinked → receipt). The gateway serves it over HTTP, the CLI's
//!   admin commands call it.
//!
//! Everything but [`service`] is without I/O.

pub mod crypto;
pub mod erasure;
pub mod restore;
pub mod service;
pub mod store;

pub use crypto::{is_pseudonym, CryptoError, DataKey, MasterKey, Pseudonymizer, ReceiptSigner, Subject, SubjectHasher};
pub use erasure::{receipt_stores, steps, Erasure, ErasureStatus, Receipt, Step, StoreAction};
pub use restore::{unapplied, ErasureLedger, ErasureRecords, Identify, KeysApart};
pub use service::{PersonalRecord, PlayerExport, PrivacyService, PrivacySettings, Suppressed};
pub use store::{
    AuditEntry, Begun, HeldKey, NewErasure, NewPlayer, PlayerCache, PlayerEntry, PlayerKeyState, PlayerRecord,
    PrivacyStore, StoredPersonal,
};
