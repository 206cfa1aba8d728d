//! The previous platform's ingest (`/api/v1/events`): `gm_schemas::compat::legacy`.
#![no_main]

use gm_schemas::compat::legacy::decode_event;
use gm_schemas::validate::Limits;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|body: &[u8]| {
    let limits = Limits::default();
    let game = common::game();
    if let Ok(outcome) = decode_event(body, &game, common::received_at(), &limits) {
        common::check_accepted(&outcome, &game, &limits);
    }
});
