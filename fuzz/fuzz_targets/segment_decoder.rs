//! The Segment-compatible ingest (`/v1/batch`, `/v1/track`, `/v1/identify`): every input goes
//! through the batch decoder and both single-call decoders of `gm_schemas::compat::segment`.
#![no_main]

use gm_schemas::compat::segment::{decode_batch, decode_single, Call};
use gm_schemas::validate::Limits;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|body: &[u8]| {
    let limits = Limits::default();
    let game = common::game();
    if let Ok(events) = decode_batch(body, &game, common::received_at(), &limits) {
        assert!(events.len() <= limits.max_events, "{} messages", events.len());
        for outcome in &events {
            common::check_accepted(outcome, &game, &limits);
        }
    }
    for call in [Call::Track, Call::Identify] {
        if let Ok(outcome) = decode_single(body, call, &game, common::received_at(), &limits) {
            common::check_accepted(&outcome, &game, &limits);
        }
    }
});
