//! Fuzz target for the metainfo parser: no input may panic, and every accepted file must satisfy the
//! invariants the rest of swarmer relies on (bounded size, whole blocks per piece, one hash per piece,
//! safe relative paths; for v2 and hybrid torrents, BEP 52 power-of-two pieces, a merkle root for
//! every non-empty file and, for v2-only ones, every piece layer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmer_proto::BLOCK_SIZE;
use swarmer_proto::metainfo::{Info, MAX_METAINFO_BYTES, MetaVersion, Metainfo};

fuzz_target!(|data: &[u8]| {
    let _ = Info::from_bytes(data);
    let Ok(m) = Metainfo::from_bytes(data) else {
        return;
    };
    assert!(data.len() <= MAX_METAINFO_BYTES);
    assert_eq!(m.info.piece_length % BLOCK_SIZE, 0);
    match m.info.version() {
        MetaVersion::V2 => {
            assert!(m.info.piece_hashes.is_empty());
            assert!(m.info.v2.as_ref().is_some_and(|v2| v2.has_all_layers()));
        }
        _ => assert_eq!(
            m.info.piece_hashes.len(),
            m.info.layout.piece_count() as usize
        ),
    }
    if m.info.v2.is_some() {
        assert!(m.info.piece_length.is_power_of_two());
    }
    assert_eq!(m.info.files.len(), m.info.layout.file_count());
    assert!(!m.info.files.is_empty());
    for file in &m.info.files {
        assert_eq!(file.path.first(), Some(&m.info.name));
        for component in &file.path {
            assert!(!component.is_empty() && component != "." && component != "..");
            assert!(!component.contains(['/', '\\', '\0']));
        }
    }
    for piece in m.info.layout.pieces().take(64) {
        if m.info.version() != MetaVersion::V2 {
            let _ = m.info.piece_hash(piece);
        }
        // Zeros match no real piece; checking them must not panic whatever the layout.
        let zeros = vec![0; m.info.layout.piece_len(piece) as usize];
        let _ = m.info.verify_piece(piece, &zeros);
    }
});
