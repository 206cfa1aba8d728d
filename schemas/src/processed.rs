//! Enriched events that PlayerActors emit to `player.events.processed`: one per raw record,
//! with a per-player sequence number and what the actor derived (sessions, first sight).

use crate::events::EventBody;
use crate::ids::{GameId, PlayerId, SessionId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessedEvent {
    pub game_id: GameId,
    pub player_id: PlayerId,
    /// 1, 2, 3… per player, in the order the raw records were appended.
    pub seq: u64,
    /// The raw event's id (or the erasure id).
    pub event_id: Uuid,
    /// Skew-corrected event time.
    pub timestamp: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub body: ProcessedBody,
}

/// The header of every record on `player.events.processed` that names its kind (an event
/// type such as `purchase`, or `player_erased`): a projection skips, without parsing them,
/// the records of kinds it does not read (see `ProjectionName::reads` in gm-projections).
pub const KIND_HEADER: &str = "gm.kind";

/// The kind of an erasure record (the event types are [`EventBody::type_name`]).
pub const ERASED_KIND: &str = "player_erased";

impl ProcessedEvent {
    /// What [`KIND_HEADER`] carries for this event.
    pub fn kind(&self) -> &'static str {
        match &self.body {
            ProcessedBody::Event { event, .. } => event.type_name(),
            ProcessedBody::PlayerErased { .. } => ERASED_KIND,
        }
    }
}

/// Serialised internally tagged (`{"kind": "event", "event": …, "derived": …}`). Read by the
/// hand-written [`Deserialize`] below: serde's derived reader of an internally tagged enum
/// buffers the whole body before it looks at the tag, and that was a quarter of the
/// projections' CPU time (every projection reads every processed event).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProcessedBody {
    /// A player's event, with what the actor derived from it.
    Event { event: EventBody, derived: Derived },
    /// The player's state and snapshots are gone; read models must forget them.
    PlayerErased { erasure_id: Uuid, requested_at: DateTime<Utc> },
}

/// Reads the fields in any order, each straight into its type (no buffering); fields of
/// neither variant are ignored, as the derived reader does.
impl<'de> Deserialize<'de> for ProcessedBody {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IgnoredAny, MapAccess, Visitor};

        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Field {
            Kind,
            Event,
            Derived,
            ErasureId,
            RequestedAt,
            #[serde(other)]
            Other,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Kind {
            Event,
            PlayerErased,
        }
        struct BodyVisitor;
        impl<'de> Visitor<'de> for BodyVisitor {
            type Value = ProcessedBody;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a processed event body with its kind")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ProcessedBody, A::Error> {
                let (mut kind, mut event, mut derived, mut erasure_id, mut requested_at) =
                    (None, None, None, None, None);
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::Kind => kind = Some(map.next_value::<Kind>()?),
                        Field::Event => event = Some(map.next_value::<EventBody>()?),
                        Field::Derived => derived = Some(map.next_value::<Derived>()?),
                        Field::ErasureId => erasure_id = Some(map.next_value::<Uuid>()?),
                        Field::RequestedAt => requested_at = Some(map.next_value::<DateTime<Utc>>()?),
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                match kind.ok_or_else(|| A::Error::missing_field("kind"))? {
                    Kind::Event => Ok(ProcessedBody::Event {
                        event: event.ok_or_else(|| A::Error::missing_field("event"))?,
                        derived: derived.ok_or_else(|| A::Error::missing_field("derived"))?,
                    }),
                    Kind::PlayerErased => Ok(ProcessedBody::PlayerErased {
                        erasure_id: erasure_id.ok_or_else(|| A::Error::missing_field("erasure_id"))?,
                        requested_at: requested_at.ok_or_else(|| A::Error::missing_field("requested_at"))?,
                    }),
                }
            }
        }
        deserializer.deserialize_map(BodyVisitor)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Derived {
    /// The session this event belongs to (the client's, or one the SessionActor derived).
    pub session_id: Option<SessionId>,
    /// This event opened `session_id`.
    pub session_started: bool,
    /// A session this event closed (the previous one, or `session_id` on `session_end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_session: Option<ClosedSession>,
    /// The first event ever seen of this player.
    pub first_seen: bool,
    /// The implicit session (events sent without a session id, a derived `d-…` id) that this
    /// event's client session continues: the two are one session, counted once — when it
    /// started (`session_started` was set on the implicit session's first event) and when it
    /// closes (under the client's id). Set on the event that named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_session: Option<SessionId>,
    /// Not a client's event: the session actor's inactivity timer closed `closed_session`
    /// (a `session_end` emitted on the player's behalf, at the session's last event).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed_by_timer: bool,
    /// The player had withdrawn consent to analytics (their last `consent_update` said
    /// `analytics: false`) when this event came: no analytics read model counts it. Decided by
    /// the player's actor; a `consent_update` itself is never withheld (it is the record of
    /// the choice).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub analytics_withheld: bool,
    /// Likewise for `personalisation: false`: no recommendation is built from this event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub personalisation_withheld: bool,
}

impl Derived {
    /// Whether the analytics read models count this event (consent).
    pub fn counts_for_analytics(&self) -> bool {
        !self.analytics_withheld
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedSession {
    pub session_id: SessionId,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub length_seconds: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event_body() -> ProcessedBody {
        let event: EventBody =
            serde_json::from_value(json!({"type": "score", "properties": {"board": "main", "value": 7}})).unwrap();
        let derived = Derived {
            session_id: Some(SessionId::parse("s-1").unwrap()),
            session_started: true,
            closed_session: None,
            first_seen: false,
            ..Derived::default()
        };
        ProcessedBody::Event { event, derived }
    }

    fn erased_body() -> ProcessedBody {
        ProcessedBody::PlayerErased {
            erasure_id: Uuid::from_u128(42),
            requested_at: "2024-05-01T12:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn consent_marks_are_written_only_when_set_and_read_back() {
        let ProcessedBody::Event { event, derived } = event_body() else { unreachable!() };
        let plain =
            serde_json::to_string(&ProcessedBody::Event { event: event.clone(), derived: derived.clone() }).unwrap();
        assert!(!plain.contains("withheld"), "{plain}");
        let marked = Derived { analytics_withheld: true, personalisation_withheld: true, ..derived };
        let text = serde_json::to_string(&ProcessedBody::Event { event, derived: marked.clone() }).unwrap();
        assert!(text.contains(r#""analytics_withheld":true"#) && text.contains(r#""personalisation_withheld":true"#));
        let ProcessedBody::Event { derived: back, .. } = serde_json::from_str(&text).unwrap() else { unreachable!() };
        assert_eq!(back, marked);
        assert!(!back.counts_for_analytics());
    }

    #[test]
    fn both_kinds_read_back_what_was_written() {
        for body in [event_body(), erased_body()] {
            let text = serde_json::to_string(&body).unwrap();
            assert!(text.starts_with(r#"{"kind":"#), "{text}");
            assert_eq!(serde_json::from_str::<ProcessedBody>(&text).unwrap(), body);
            let value = serde_json::to_value(&body).unwrap();
            assert_eq!(serde_json::from_value::<ProcessedBody>(value).unwrap(), body, "from a Value too");
        }
    }

    #[test]
    fn the_kind_may_come_last_and_unknown_fields_are_ignored() {
        let text = r#"{"erasure_id":"00000000-0000-0000-0000-00000000002a","added_later":[1,{"x":2}],
                       "requested_at":"2024-05-01T12:00:00Z","kind":"player_erased"}"#;
        assert_eq!(serde_json::from_str::<ProcessedBody>(text).unwrap(), erased_body());
    }

    #[test]
    fn a_missing_or_unknown_kind_or_a_missing_field_is_an_error() {
        for (text, expected) in [
            (r#"{"erasure_id":"00000000-0000-0000-0000-00000000002a","requested_at":"2024-05-01T12:00:00Z"}"#, "kind"),
            (r#"{"kind":"renamed","erasure_id":"00000000-0000-0000-0000-00000000002a"}"#, "renamed"),
            (r#"{"kind":"player_erased","erasure_id":"00000000-0000-0000-0000-00000000002a"}"#, "requested_at"),
            (r#"{"kind":"event","derived":{"session_id":null,"session_started":false,"first_seen":true}}"#, "event"),
            (r#"["event"]"#, "expected a processed event body"),
        ] {
            let error = serde_json::from_str::<ProcessedBody>(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
