//! Fuzz target for the metainfo parser: no input may panic, and every accepted file must satisfy the
//! invariants the rest of swarmer relies on (bounded size, whole blocks per piece, one hash per piece,
//! safe relative paths).
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmer_proto::BLOCK_SIZE;
use swarmer_proto::metainfo::{Info, MAX_METAINFO_BYTES, Metainfo};

fuzz_target!(|data: &[u8]| {
    let _ = Info::from_bytes(data);
    let Ok(m) = Metainfo::from_bytes(data) else {
        return;
    };
    assert!(data.len() <= MAX_METAINFO_BYTES);
    assert_eq!(m.info.piece_length % BLOCK_SIZE, 0);
    assert_eq!(m.info.piece_hashes.len(), m.info.layout.piece_count() as usize);
    assert_eq!(m.info.files.len(), m.info.layout.file_count());
    assert!(!m.info.files.is_empty());
    for file in &m.info.files {
        assert_eq!(file.path.first(), Some(&m.info.name));
        for component in &file.path {
            assert!(!component.is_empty() && component != "." && component != "..");
            assert!(!component.contains(['/', '\\', '\0']));
        }
    }
    for piece in m.info.layout.pieces() {
        let _ = m.info.piece_hash(piece);
    }
});
