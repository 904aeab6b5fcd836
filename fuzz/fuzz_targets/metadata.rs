//! Drives the metadata fetch (BEP 9, `ut_metadata`) with peers that send arbitrary extension
//! handshakes and `ut_metadata` messages, time passing, and departures: no panic, memory bounded by
//! the announced size, and anything it returns hashes to the info hash.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use swarmer_proto::InfoHash;
use swarmer_proto::digest::sha1;
use swarmer_proto::extension::{ExtensionHandshake, UT_METADATA};
use swarmer_proto::metadata::MetadataFetch;
use swarmer_proto::time::Instant;

/// Metadata small enough that inputs can complete it: three pieces, the last short.
const METADATA_LEN: usize = 40_000;

fuzz_target!(|data: &[u8]| {
    let metadata: Vec<u8> = (0..METADATA_LEN).map(|i| (i % 253) as u8).collect();
    let hash = InfoHash(sha1(&metadata));
    let mut fetch = MetadataFetch::new(hash);
    let mut now = Instant::ZERO;
    let mut rest = data;
    // Each step: an opcode byte, a peer byte, then (for messages) a length byte and that many bytes.
    while let [op, peer, tail @ ..] = rest {
        let peer = u64::from(*peer % 8);
        rest = tail;
        match op % 6 {
            0 => {
                // A handshake announcing a size picked by the input (often the true one).
                let Some((&size, tail)) = rest.split_first() else {
                    break;
                };
                rest = tail;
                let size = if size < 200 { METADATA_LEN as u32 } else { u32::from(size) * 1000 };
                let handshake = ExtensionHandshake {
                    messages: vec![(UT_METADATA.to_owned(), 2)],
                    metadata_size: Some(size),
                    ..ExtensionHandshake::default()
                };
                fetch.handle_handshake(peer, &handshake, now);
            }
            1 => {
                let Some((&len, tail)) = rest.split_first() else {
                    break;
                };
                let len = usize::from(len).min(tail.len());
                let _ = fetch.handle_message(peer, &tail[..len], now);
                rest = &tail[len..];
            }
            2 => {
                // An honest answer to every outstanding request: the fetch must be able to finish.
                let asked: Vec<_> = fetch.drain_outgoing().collect();
                for out in asked {
                    let payload = honest_answer(&out.payload, &metadata);
                    let _ = fetch.handle_message(out.peer, &payload, now);
                }
            }
            3 => fetch.remove_peer(peer),
            4 => {
                now += Duration::from_secs(u64::from(peer) * 3);
                fetch.handle_timeout(now);
            }
            _ => {
                let _ = fetch.drain_outgoing().count();
                while fetch.poll_fault().is_some() {}
            }
        }
        if let Some(got) = fetch.take_metadata() {
            assert_eq!(sha1(&got), hash.0, "returned metadata must match the info hash");
        }
    }
});

/// The data message answering a request payload with the true metadata, or the payload itself when
/// it is not a request.
fn honest_answer(request: &[u8], metadata: &[u8]) -> Vec<u8> {
    use swarmer_proto::extension::{METADATA_PIECE_LEN, MetadataMessage};
    let Ok(MetadataMessage::Request { piece }) = MetadataMessage::decode(request) else {
        return request.to_vec();
    };
    let start = piece as usize * METADATA_PIECE_LEN as usize;
    if start >= metadata.len() {
        return request.to_vec();
    }
    let end = (start + METADATA_PIECE_LEN as usize).min(metadata.len());
    let mut out = Vec::new();
    MetadataMessage::Data {
        piece,
        total_size: metadata.len() as u32,
        data: &metadata[start..end],
    }
    .encode(&mut out);
    out
}
