//! The validator of one public-format event (`EventContext::decode_event` in
//! schemas/src/validate.rs), under three clock situations: no `sent_at`, a client clock an
//! hour behind, and a client claiming to have sent it in the year 9000 (skew correction).
#![no_main]

use chrono::{Duration, TimeZone, Utc};
use gm_schemas::validate::{EventContext, Limits};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = serde_json::from_slice::<&RawValue>(data) else { return };
    let limits = Limits::default();
    let game = common::game();
    let received_at = common::received_at();
    let far = Utc.with_ymd_and_hms(9000, 1, 1, 0, 0, 0).single();
    for sent_at in [None, Some(received_at - Duration::hours(1)), far] {
        let ctx = EventContext { game: &game, sent_at, received_at, limits: &limits };
        common::check_accepted(&ctx.decode_event(raw), &game, &limits);
    }
});
