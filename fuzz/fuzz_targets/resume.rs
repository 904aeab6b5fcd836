//! Fuzz target for the fast-resume state codec: a damaged or hostile resume file must never panic, and
//! every state accepted must encode back to a state that decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmer_proto::resume::ResumeState;

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the torrent's shape (pieces, files); the rest is the file.
    let (shape, bytes) = data.split_at(data.len().min(2));
    let pieces = usize::from(shape.first().copied().unwrap_or(0)) * 8 + 1;
    let files = usize::from(shape.get(1).copied().unwrap_or(0) % 16);
    if let Ok(state) = ResumeState::decode(bytes, pieces, files) {
        assert_eq!(state.have.len(), pieces);
        assert_eq!(state.files.len(), files);
        assert!(state.priorities.is_empty() || state.priorities.len() == files);
        let again = ResumeState::decode(&state.encode(), pieces, files).expect("own encoding");
        assert_eq!(again, state);
    }
});
