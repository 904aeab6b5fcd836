//! Fuzz target for the DHT's KRPC codec and node (BEP 5): no input may panic; every accepted message
//! re-encodes to bytes that decode to the same message; and the same bytes fed to a `Dht` as datagrams
//! from a few addresses leave it within its bounds, whatever it sends back.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use swarmer_proto::InfoHash;
use swarmer_proto::dht::krpc::Message;
use swarmer_proto::dht::node_id::NodeId;
use swarmer_proto::dht::{Config, Dht};
use swarmer_proto::time::Instant;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::decode(data) {
        let encoded = message.encode();
        let again = Message::decode(&encoded).expect("a re-encoded message decodes");
        assert_eq!(again, message);
    }
    let now = Instant::ZERO;
    let mut dht = Dht::new(NodeId([0x33; 20]), Config::default(), 7, now);
    let froms: [SocketAddr; 3] = [
        "10.0.0.1:6881".parse().unwrap(),
        "10.0.0.2:1".parse().unwrap(),
        "[fd00::1]:6881".parse().unwrap(),
    ];
    // Open transactions first, so responses in the input can match some.
    dht.bootstrap(&froms, now);
    dht.get_peers(InfoHash([0x44; 20]), Some(6881), now);
    // The input as one datagram, then in slices as many datagrams, with time passing.
    let mut t = now;
    for (i, chunk) in std::iter::once(data).chain(data.split(|b| *b == b'|')).enumerate() {
        dht.handle_packet(froms[i % froms.len()], chunk, t);
        t += Duration::from_millis(700);
        dht.handle_timeout(t);
        while dht.poll_transmit().is_some() {}
        while dht.poll_event().is_some() {}
        dht.check_invariants();
    }
});
