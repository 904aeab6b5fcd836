//! Fuzz target: arbitrary bytes as BEP 15 UDP tracker replies (connect, announce over IPv4 and IPv6,
//! error packets). The decoders must never panic, and accepted announces must respect the documented bounds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmer_proto::tracker::MAX_PEERS;
use swarmer_proto::tracker::udp::{
    AddressFamily, decode_announce_response, decode_connect_response,
};

fuzz_target!(|data: &[u8]| {
    // Half the time use the packet's own transaction id, so the decoders get past the header check.
    let own_tid = data
        .get(4..8)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    for tid in [own_tid, 0x1234_5678] {
        let _ = decode_connect_response(data, tid);
        for family in [AddressFamily::V4, AddressFamily::V6] {
            if let Ok(reply) = decode_announce_response(data, tid, family) {
                assert!(reply.peers.len() <= MAX_PEERS);
            }
        }
    }
});
