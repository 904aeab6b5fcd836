//! Fuzz target: arbitrary bytes as an HTTP tracker announce reply body (BEP 3 / 23 / 7). The parser must
//! never panic, and whatever it accepts must respect the documented bounds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmer_proto::tracker::http::parse_announce_response;
use swarmer_proto::tracker::{MAX_ANNOUNCE_INTERVAL, MAX_PEERS, MIN_ANNOUNCE_INTERVAL};

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = parse_announce_response(data) {
        assert!(reply.peers.len() <= MAX_PEERS);
        assert!((MIN_ANNOUNCE_INTERVAL..=MAX_ANNOUNCE_INTERVAL).contains(&reply.interval));
        assert!(reply.peers.iter().all(|p| p.port() != 0));
    }
});
