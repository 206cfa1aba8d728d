// Shared by the targets (included with `#[path]`): the request context and the invariants
// every accepted event must satisfy whatever the input.

use chrono::{DateTime, TimeZone, Utc};
use gm_schemas::validate::{earliest_time, Limits, Rejection};
use gm_schemas::{EventEnvelope, GameId};

pub fn game() -> GameId {
    GameId::parse("fuzz-game").expect("a valid game id")
}

/// A fixed gateway clock, so a crash reproduces from its input alone.
pub fn received_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).single().expect("a valid time")
}

/// What the gateway guarantees of an accepted event: the key's game, the gateway's clock, and
/// a corrected time between 2000-01-01 and `max_future` ahead of the gateway.
pub fn check_accepted(outcome: &Result<EventEnvelope, Rejection>, game: &GameId, limits: &Limits) {
    let Ok(envelope) = outcome else { return };
    assert_eq!(&envelope.game_id, game, "an accepted event belongs to the key's game");
    assert_eq!(envelope.received_at, received_at(), "received_at is the gateway's clock");
    assert!(envelope.timestamp >= earliest_time(), "timestamp {} before 2000", envelope.timestamp);
    assert!(
        envelope.timestamp <= received_at() + limits.max_future,
        "timestamp {} beyond the allowed future",
        envelope.timestamp
    );
}
