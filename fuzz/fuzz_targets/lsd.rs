//! Fuzz target for the BEP 14 announce parser: no input may panic, every accepted announce respects
//! the documented shapes (port 1..=65535, 1 to 32 distinct info hashes, input within 1400 bytes), and
//! encoding it again parses back to the same announce.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmer_proto::lsd::{self, Cookie, Group, MAX_DATAGRAM, MAX_PARSED_INFO_HASHES};

fuzz_target!(|data: &[u8]| {
    let Ok(a) = lsd::parse(data) else {
        return;
    };
    assert!(data.len() <= MAX_DATAGRAM);
    assert_ne!(a.port, 0);
    assert!(!a.info_hashes.is_empty() && a.info_hashes.len() <= MAX_PARSED_INFO_HASHES);
    for (i, h) in a.info_hashes.iter().enumerate() {
        assert!(!a.info_hashes[..i].contains(h));
    }
    let cookie = a
        .cookie
        .clone()
        .unwrap_or_else(|| Cookie::new("fuzz").unwrap());
    let mut again = Vec::new();
    for datagram in lsd::encode(Group::V6, a.port, &a.info_hashes, &cookie) {
        assert!(datagram.len() <= MAX_DATAGRAM);
        let b = lsd::parse(&datagram).expect("our own encoding parses");
        assert_eq!((b.port, &b.cookie), (a.port, &Some(cookie.clone())));
        again.extend(b.info_hashes);
    }
    assert_eq!(again, a.info_hashes);
});
