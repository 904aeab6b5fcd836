//! Fuzz target for the BEP 52 hash messages (ids 21-23): no input may panic, every accepted message
//! re-encodes to the same bytes, and checking a `hashes` reply against a file's root never panics
//! whatever its fields claim.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmer_proto::hashes::{self, HashMessage};

fuzz_target!(|data: &[u8]| {
    let Some((&id, payload)) = data.split_first() else {
        return;
    };
    let Ok(message) = HashMessage::decode(id, payload) else {
        return;
    };
    let mut out = Vec::new();
    message.encode(&mut out);
    assert_eq!(out, data);
    if let HashMessage::Hashes { request, hashes } = &message {
        for piece_count in [1, 3, 4, 1000, u32::MAX / 2, u32::MAX] {
            if let Some(proven) = hashes::verify(&request.pieces_root, piece_count, request, hashes)
            {
                assert_eq!(proven.len(), request.length as usize);
            }
        }
    }
});
