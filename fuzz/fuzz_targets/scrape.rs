//! Fuzz target: arbitrary bytes as scrape replies, HTTP (BEP 48) and UDP (BEP 15), and as an
//! announce URL for the BEP 48 scrape-URL rule. Nothing may panic, and only the info hashes asked
//! about (at most the UDP cap) come back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmer_proto::InfoHash;
use swarmer_proto::tracker::scrape::{
    MAX_UDP_SCRAPE, decode_udp_scrape, parse_http_scrape, scrape_url,
};

fuzz_target!(|data: &[u8]| {
    // Ask about the first hash the input itself holds, so accepted replies are exercised too.
    let asked = [
        InfoHash(data.get(..20).and_then(|b| b.try_into().ok()).unwrap_or([0; 20])),
        InfoHash([7; 20]),
    ];
    if let Ok(counts) = parse_http_scrape(data, &asked) {
        assert!(counts.len() <= asked.len());
        assert!(counts.iter().all(|(h, _)| asked.contains(h)));
    }
    let own_tid = data
        .get(4..8)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    for n in [0, 2, 1000] {
        if let Ok(counts) = decode_udp_scrape(data, own_tid, n) {
            assert!(counts.len() <= n.min(MAX_UDP_SCRAPE));
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(url) = scrape_url(text) {
            assert!(url.contains("scrape") || url.starts_with("udp://"));
        }
    }
});
