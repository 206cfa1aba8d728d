//! `POST /v1/events` after authentication: the raw body (gzip when it starts with gzip's magic
//! bytes, as a client sending `Content-Encoding: gzip` would) is inflated within the size limit
//! by the gateway, then decoded and validated by `gm_schemas::validate::decode_batch`.
#![no_main]

use gm_schemas::validate::{decode_batch, Limits};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|raw: &[u8]| {
    let limits = Limits::default();
    let gzip = raw.starts_with(&[0x1f, 0x8b]);
    let Ok(body) = gm_gateway::ingest::decompress_body(raw, gzip, limits.max_body_bytes) else { return };
    assert!(body.len() <= limits.max_body_bytes, "inflated past the limit: {}", body.len());
    let game = common::game();
    let Ok(events) = decode_batch(&body, &game, common::received_at(), &limits) else { return };
    assert!(!events.is_empty() && events.len() <= limits.max_events, "{} events", events.len());
    for outcome in &events {
        common::check_accepted(outcome, &game, &limits);
    }
});
