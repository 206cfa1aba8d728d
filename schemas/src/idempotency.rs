//! Idempotent ingest: the `Idempotency-Key` of a request, and the event ids derived from it.
//!
//! The rule payment APIs use: a client gives each request (a batch) a key of its own, and
//! sends a retry of that request with the same key. An event sent without an `event_id`
//! then gets an id derived from the game, the key, the event's position in the batch and the
//! event itself (UUIDv5), so a retry of the same batch carries the same ids and the player
//! actors count each event once, even when the first attempt was answered with an error
//! after the log had taken it (a timeout). An event sent with its own id keeps it.
//!
//! The event's content is part of the id so that a key reused by mistake for a different
//! batch never makes a different event look like a duplicate (it would then be lost);
//! its position is part of it so that two identical events of one batch stay two events.

use serde_json::{Map, Value};
use uuid::Uuid;

/// Longest key accepted, in bytes (as Stripe's).
pub const MAX_KEY_LEN: usize = 255;

/// Namespace of the UUIDv5 event ids derived from an idempotency key.
pub const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x3b8f_61c2_9d04_4e7a_b1f5_7c20_e9a4_d613);

/// What is wrong with an idempotency key as sent (said after "Idempotency-Key ").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyKeyError {
    #[error("is empty; send 1 to 255 visible ASCII characters, e.g. a UUID")]
    Empty,
    #[error("is {0} characters long; at most {MAX_KEY_LEN} allowed")]
    TooLong(usize),
    #[error("holds {c:?} at position {at}; only visible ASCII characters (! to ~, no space) are allowed")]
    Invisible { c: char, at: usize },
}

/// A validated `Idempotency-Key`: 1 to [`MAX_KEY_LEN`] visible ASCII characters (`!` to `~`:
/// letters, digits, punctuation; no space or control character), e.g. a UUID.
#[derive(Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl std::fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdempotencyKey({})", self.0)
    }
}

impl IdempotencyKey {
    /// Checks a key as sent; `Err` says what is wrong with it.
    pub fn parse(key: &str) -> Result<Self, IdempotencyKeyError> {
        if key.is_empty() {
            return Err(IdempotencyKeyError::Empty);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(IdempotencyKeyError::TooLong(key.len()));
        }
        if let Some((at, c)) = key.char_indices().find(|(_, c)| !c.is_ascii_graphic()) {
            return Err(IdempotencyKeyError::Invisible { c, at });
        }
        Ok(Self(key.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the event at `index` of a request with this key for `game`: a UUIDv5 of
    /// the game, the key, the index and the event as sent (`content`, its fields in key
    /// order, so re-serialising it in another order changes nothing).
    pub fn event_id(&self, game: &str, index: usize, content: &Map<String, Value>) -> Uuid {
        // serde_json's Map is ordered by key (no `preserve_order`): the text is canonical.
        let content = Value::Object(content.clone()).to_string();
        let name = format!("{game}\n{}\n{index}\n{content}", self.0);
        Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, name.as_bytes())
    }
}

/// What an event sent without an id gets: a derived id when the request has a key, else a
/// fresh UUIDv7 (assigned by the validator).
pub(crate) fn derived_event_id(
    key: Option<&IdempotencyKey>,
    game: &str,
    index: usize,
    content: &Map<String, Value>,
) -> Option<Value> {
    key.map(|k| Value::String(k.event_id(game, index, content).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn keys_are_checked_for_length_and_characters() {
        assert!(IdempotencyKey::parse("7f3a9c1e-0b2d-4e5f-8a6b-1c2d3e4f5a6b").is_ok());
        assert!(IdempotencyKey::parse("batch:42/retry=ok~").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).unwrap_err().to_string().contains("at most 255"));
        assert!(IdempotencyKey::parse("").unwrap_err().to_string().contains("empty"));
        assert!(IdempotencyKey::parse("two words").unwrap_err().to_string().contains("' '"));
        assert!(IdempotencyKey::parse("tab\there").is_err());
        assert!(IdempotencyKey::parse("clé").is_err());
    }

    #[test]
    fn ids_depend_on_game_key_position_and_content_not_on_field_order() {
        let k = IdempotencyKey::parse("k-1").unwrap();
        let e = obj(json!({"type": "design", "player_id": "p", "properties": {"event_id": "a"}}));
        let same =
            obj(serde_json::from_str(r#"{"properties": {"event_id": "a"}, "player_id": "p", "type": "design"}"#)
                .unwrap());
        let id = k.event_id("g", 0, &e);
        assert_eq!(id, k.event_id("g", 0, &same), "field order does not matter");
        assert_eq!(id.get_version_num(), 5);
        assert_ne!(id, k.event_id("g", 1, &e), "two identical events of a batch stay two");
        assert_ne!(id, k.event_id("h", 0, &e), "games do not share keys");
        assert_ne!(id, IdempotencyKey::parse("k-2").unwrap().event_id("g", 0, &e));
        let other = obj(json!({"type": "design", "player_id": "p", "properties": {"event_id": "b"}}));
        assert_ne!(id, k.event_id("g", 0, &other), "a key reused for another event does not drop it");
    }

    #[test]
    fn a_resent_batch_gets_the_same_ids_and_client_ids_are_kept() {
        use crate::validate::{decode_batch_keyed, Limits};
        let game = crate::GameId::parse("space-race").unwrap();
        let now = chrono::Utc::now();
        let ts = now.to_rfc3339();
        let own = Uuid::now_v7();
        let body = |sent_at: &str| {
            json!({"sent_at": sent_at, "events": [
                {"type": "session_start", "player_id": "p", "client_ts": ts},
                {"type": "session_start", "player_id": "p", "client_ts": ts},
                {"type": "session_end", "player_id": "p", "client_ts": ts, "event_id": own.to_string()},
            ]})
            .to_string()
        };
        let ids = |body: &str, key: Option<&IdempotencyKey>| -> Vec<Uuid> {
            decode_batch_keyed(body.as_bytes(), &game, now, &Limits::default(), key)
                .unwrap()
                .into_iter()
                .map(|e| e.unwrap().event_id)
                .collect()
        };
        let key = IdempotencyKey::parse("batch-0001").unwrap();
        let first = ids(&body(&ts), Some(&key));
        assert_eq!(first, ids(&body(&(now + chrono::Duration::seconds(3)).to_rfc3339()), Some(&key)), "a retry");
        assert_ne!(first[0], first[1], "identical events of one batch are two events");
        assert_eq!(first[2], own, "the client's id is kept");
        let fresh = ids(&body(&ts), None);
        assert!(fresh[..2].iter().all(|id| id.get_version_num() == 7), "no key: fresh UUIDv7s");
        assert_ne!(fresh[..2], first[..2]);
    }

    #[test]
    fn segment_messages_without_a_message_id_take_their_id_from_the_key() {
        use crate::compat::segment::{decode_batch_keyed, decode_single_keyed, Call};
        use crate::validate::Limits;
        let game = crate::GameId::parse("space-race").unwrap();
        let now = chrono::Utc::now();
        let body = |sent_at: &str| {
            json!({"sentAt": sent_at, "batch": [
                {"type": "track", "event": "Level Started", "userId": "u", "properties": {"level": "1"},
                 "timestamp": now.to_rfc3339(), "sentAt": sent_at},
                {"type": "track", "event": "Level Started", "userId": "u", "properties": {"level": "1"},
                 "timestamp": now.to_rfc3339(), "messageId": "m-1"},
            ]})
            .to_string()
        };
        let key = IdempotencyKey::parse("seg-req-1").unwrap();
        let ids = |body: String| -> Vec<Uuid> {
            decode_batch_keyed(body.as_bytes(), &game, now, &Limits::default(), Some(&key))
                .unwrap()
                .into_iter()
                .map(|e| e.unwrap().event_id)
                .collect()
        };
        let first = ids(body("2025-01-01T00:00:00Z"));
        assert_eq!(first, ids(body("2025-01-01T00:00:09Z")), "a renewed sentAt changes nothing");
        assert_eq!(first[0].get_version_num(), 5);
        assert_eq!(first[1], crate::compat::event_id_for("space-race", "m-1"), "messageId wins");
        let track = json!({"event": "Boss Defeated", "userId": "u", "timestamp": now.to_rfc3339()}).to_string();
        let one = |k: &IdempotencyKey| {
            decode_single_keyed(track.as_bytes(), Call::Track, &game, now, &Limits::default(), Some(k))
                .unwrap()
                .unwrap()
                .event_id
        };
        assert_eq!(one(&key), one(&key));
        assert_ne!(one(&key), one(&IdempotencyKey::parse("seg-req-2").unwrap()));
    }
}
