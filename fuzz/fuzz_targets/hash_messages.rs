//! Fuzz target for the BEP 52 hash messages (ids 21-23): no input may panic, every accepted message
//! re-encodes to the same bytes, and checking a `hashes` reply against a file's root never panics
//! whatever its fields claim; nor does resolving a failed piece's bad blocks (`blame`) with the
//! message as the asked peer's answer, or answering it as a leaf request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmer_proto::blame::{Inquiries, Reply, Verdict};
use swarmer_proto::hashes::{self, HashMessage};
use swarmer_proto::merkle::{self, LeafEvidence, PieceCheck};
use swarmer_proto::metainfo::V2File;
use swarmer_proto::time::Instant;
use swarmer_proto::{Layout, PieceIndex};

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
    blame(&message);
    if let HashMessage::Request(request) = &message {
        for (length, piece_count) in [
            (16384 * 3, 1),
            (1 << 20, 16),
            (u64::from(u32::MAX), 1 << 16),
        ] {
            let file = V2File {
                file: 0,
                length,
                first_piece: 0,
                piece_count,
                pieces_root: request.pieces_root,
                layer: Some(vec![[1; 32]; piece_count as usize]),
            };
            if let Some(piece) = hashes::leaf_request_piece(&file, request, 65536) {
                let served = hashes::serve_leaves(&file, request, 65536, piece, &[0; 65536]);
                if let Some(served) = served {
                    assert!(served.len() >= request.length as usize);
                }
            }
        }
    }
});

/// A piece of four blocks with a bad second block is being resolved and `message` arrives from
/// the asked peer: it may settle it, lie, or be ignored, never panic; a settled piece blames at
/// most its contributors.
fn blame(message: &HashMessage) {
    let good = vec![7u8; 4 * 16384];
    let mut bad = good.clone();
    bad[20000] ^= 1;
    let expected = merkle::root(merkle::leaf_hashes(&good), 4, merkle::ZERO_LEAF);
    let root = match message {
        HashMessage::Request(r) | HashMessage::Reject(r) => r.pieces_root,
        HashMessage::Hashes { request, .. } => request.pieces_root,
    };
    let PieceCheck::Bad(Some(evidence)) =
        LeafEvidence::check(root, 0, 4, expected, &bad, bad.len())
    else {
        panic!("a corrupt piece fails");
    };
    let senders: Vec<std::net::IpAddr> = (1..=4).map(|i| [10, 0, 0, i].into()).collect();
    let layout = Layout::new(65536, [65536]).expect("layout");
    let piece: PieceIndex = layout.piece(0).expect("piece 0");
    let mut inquiries: Inquiries<u8> = Inquiries::default();
    assert!(inquiries.open(piece, evidence, senders.clone()).is_none());
    let (asked, _) = inquiries.poll(Instant::ZERO, |_| vec![1, 2]);
    assert_eq!(asked.len(), 1);
    let reply = match message {
        HashMessage::Hashes { request, hashes } => inquiries.on_hashes(1, request, hashes),
        HashMessage::Reject(request) => inquiries.on_reject(1, request),
        HashMessage::Request(_) => Reply::Ignored,
    };
    if let Reply::Handled(verdicts) = reply {
        for verdict in verdicts {
            if let Verdict::Pinned { culprits, .. } = verdict {
                assert_eq!(
                    culprits,
                    vec![senders[1]],
                    "a proven answer names the bad block's sender"
                );
            }
        }
    }
}
