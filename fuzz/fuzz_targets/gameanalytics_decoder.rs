//! The GameAnalytics collector API v2 (`/v2/{game_key}/events`, `/init`): every input goes
//! through the gateway's bounded gzip inflation (as sent, then as if it were gzip), the events
//! decoder of `gm_schemas::compat::gameanalytics` and the init check.
#![no_main]

use gm_schemas::compat::gameanalytics::{check_init, decode_events, RequestContext};
use gm_schemas::validate::Limits;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|raw: &[u8]| {
    let limits = Limits::default();
    let game = common::game();
    for gzip in [false, true] {
        let Ok(body) = gm_gateway::ingest::decompress_body(raw, gzip, limits.max_body_bytes) else { continue };
        assert!(body.len() <= limits.max_body_bytes, "inflated to {} bytes", body.len());
        let ctx = RequestContext {
            game: &game,
            received_at: common::received_at(),
            limits: &limits,
            client_ip: Some("203.0.113.1"),
            key: None,
        };
        if let Ok(decoded) = decode_events(&body, ctx) {
            assert!(decoded.events.len() <= limits.max_events, "{} events", decoded.events.len());
            assert_eq!(decoded.events.len(), decoded.refs.len(), "one reference per event");
            for outcome in &decoded.events {
                common::check_accepted(outcome, &game, &limits);
            }
        }
        let _ = check_init(&body);
    }
});
