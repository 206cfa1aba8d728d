//! Builders shared by the actors' unit tests.

use chrono::{DateTime, Duration, TimeZone, Utc};
use gm_schemas::events::*;
use gm_schemas::{Currency, ErasureRequest, EventBody, EventEnvelope, GameId, MinorUnits, Name, PlayerId, SessionId};
use uuid::Uuid;

pub const GAME: &str = "space-race";
pub const PLAYER: &str = "p1";

pub fn key() -> String {
    format!("{GAME}:{PLAYER}")
}

/// 2024-03-10 12:00:00 UTC plus `minutes`.
pub fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 10, 12, 0, 0).unwrap() + Duration::minutes(minutes)
}

pub fn sid(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

pub fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

/// A distinct, reproducible event id per `n`.
pub fn eid(n: u128) -> Uuid {
    Uuid::from_u128(0xE000_0000_0000_0000_0000_0000_0000_0000 + n)
}

pub fn envelope_for(player: &str, n: u128, t: DateTime<Utc>, session: Option<&str>, body: EventBody) -> EventEnvelope {
    EventEnvelope {
        event_id: eid(n),
        game_id: GameId::parse(GAME).unwrap(),
        player_id: PlayerId::parse(player).unwrap(),
        session_id: session.map(sid),
        body,
        client_ts: t,
        sent_at: None,
        received_at: t,
        timestamp: t,
        schema_version: 1,
        personal: None,
    }
}

pub fn envelope(n: u128, t: DateTime<Utc>, session: Option<&str>, body: EventBody) -> EventEnvelope {
    envelope_for(PLAYER, n, t, session, body)
}

pub fn erasure(n: u128, t: DateTime<Utc>) -> ErasureRequest {
    ErasureRequest {
        erasure_id: eid(n),
        game_id: GameId::parse(GAME).unwrap(),
        player_id: PlayerId::parse(PLAYER).unwrap(),
        reason: "user request".into(),
        requested_at: t,
    }
}

pub fn session_start() -> EventBody {
    EventBody::SessionStart(SessionStart::default())
}
pub fn session_end(length_seconds: Option<u32>) -> EventBody {
    EventBody::SessionEnd(SessionEnd { length_seconds })
}
pub fn progression(status: ProgressionStatus, level: &str, score: Option<i64>) -> EventBody {
    EventBody::Progression(Progression { status, level_id: name(level), score })
}
pub fn purchase(amount: i64, currency: &str, item: &str, quantity: u32) -> EventBody {
    EventBody::Purchase(Purchase {
        amount_minor: MinorUnits::parse(amount).unwrap(),
        currency: Currency::parse(currency).unwrap(),
        item_id: name(item),
        quantity,
        store: None,
    })
}
pub fn resource(flow: ResourceFlow, currency: &str, amount: i64) -> EventBody {
    EventBody::Resource(Resource { flow, virtual_currency: name(currency), amount, item_id: None })
}
pub fn score(value: i64) -> EventBody {
    EventBody::Score(Score { board: name("main"), value })
}
pub fn achievement(id: &str) -> EventBody {
    EventBody::Achievement(Achievement { achievement_id: name(id) })
}
pub fn item_use(item: &str, quantity: u32) -> EventBody {
    EventBody::ItemUse(ItemUse { item_id: name(item), quantity })
}
pub fn design(id: &str) -> EventBody {
    EventBody::Design(Design { event_id: name(id), value: Some(1.5) })
}
pub fn profile_update(country: Option<&str>, language: Option<&str>) -> EventBody {
    EventBody::ProfileUpdate(ProfileUpdate { country: country.map(String::from), language: language.map(String::from) })
}
pub fn consent(analytics: bool, personalisation: bool) -> EventBody {
    EventBody::ConsentUpdate(ConsentUpdate { analytics, personalisation })
}
