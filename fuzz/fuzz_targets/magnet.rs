//! Fuzz target for the magnet URI parser (BEP 9, BEP 53 `so`, `ws`): no input may panic, and every accepted link
//! must respect the documented shapes (non-empty distinct trackers, peers with a port, ordered ranges).
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmer_proto::magnet::{MAX_MAGNET_LEN, Magnet, MagnetPeer};

fuzz_target!(|data: &[u8]| {
    // Also try the bytes behind a valid prefix, so that the fuzzer need not discover `magnet:?` itself.
    let text = String::from_utf8_lossy(data);
    for uri in [text.to_string(), format!("magnet:?{text}")] {
        let Ok(m) = Magnet::parse(&uri) else {
            continue;
        };
        assert!(uri.len() <= MAX_MAGNET_LEN);
        for (i, tracker) in m.trackers.iter().enumerate() {
            assert!(!tracker.is_empty());
            assert!(!m.trackers[..i].contains(tracker));
        }
        for peer in &m.peers {
            match peer {
                MagnetPeer::Addr(addr) => assert_ne!(addr.port(), 0),
                MagnetPeer::Host { host, port } => {
                    assert_ne!(*port, 0);
                    assert!(!host.is_empty());
                }
            }
        }
        for range in m.select_only.iter().flatten() {
            assert!(range.start() <= range.end());
        }
        assert!(m.display_name.as_ref().is_none_or(|n| !n.is_empty()));
        assert!(m.web_seeds.len() <= swarmer_proto::metainfo::MAX_WEB_SEEDS);
        for (i, url) in m.web_seeds.iter().enumerate() {
            assert!(swarmer_proto::metainfo::is_http_url(url));
            assert!(!m.web_seeds[..i].contains(url));
        }
    }
});
