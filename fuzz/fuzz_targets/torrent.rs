//! Feeds the torrent engine (the peer session state machine) a peer that sends arbitrary message streams,
//! while we download or seed and serve its requests: no panic, and the engine's invariants hold after
//! every message. When the engine drops the peer, the rest of the input comes from a new connection.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use swarmer_proto::torrent::{Action, Config, PeerInfo, Torrent};
use swarmer_proto::wire::Message;
use swarmer_proto::{Bitfield, InfoHash, Layout};
use swarmer_proto::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    // Three pieces of 40 KiB: three blocks each, the last shorter.
    let layout = Layout::new(40 * 1024, [100 * 1024]).unwrap();
    // Flag bits 2..5 choose the pieces we have, so requests meet both served and missing pieces.
    let mut have = Bitfield::new(3);
    for i in 0..3 {
        if flags & (4 << i) != 0 {
            have.set(i);
        }
    }
    // Metadata of two BEP 9 pieces to serve; flag bit 6 makes the torrent private (nothing served,
    // no PEX).
    let config = Config {
        metadata: Some(vec![b'x'; 20_000].into()),
        private: flags & 0x40 != 0,
        ..Config::default()
    };
    let mut t = Torrent::new(layout, InfoHash([7; 20]), have, config, 0);
    let mut now = Instant::ZERO;
    let info = |n: u8| PeerInfo {
        addr: SocketAddr::from(([127, 0, 0, n], 6881)),
        fast: flags & 1 != 0,
        extensions: flags & 2 != 0,
        outgoing: flags & 0x20 != 0,
        encrypted: flags & 0x80 != 0,
        utp: flags & 0x40 != 0,
    };
    let mut connections = 1u8;
    let mut peer = t.add_peer(info(connections), now);
    while let Ok(Some((message, used))) = Message::decode(rest, 1 << 16) {
        t.handle_message(peer, message, now);
        rest = &rest[used..];
        let mut disconnected = false;
        while let Some(action) = t.poll_action() {
            match action {
                // The rest of the input goes to a new connection from another address (the old one may be
                // banned), so one input can drive many sessions instead of talking to a forgotten peer.
                Action::Disconnect { peer: gone, .. } if gone == peer => disconnected = true,
                Action::VerifyPiece { piece, data } => {
                    let ok = data.first() == Some(&0);
                    t.handle_piece_verified(piece, ok, data, now);
                }
                Action::Upload { peer, block } => {
                    t.handle_block_sent(peer, 1, u64::from(block.length), now)
                }
                Action::Send { .. } | Action::Disconnect { .. } => {}
            }
        }
        now += Duration::from_millis(700);
        t.handle_timeout(now);
        t.check_invariants();
        if disconnected && connections < 250 {
            t.remove_peer(peer);
            connections += 1;
            peer = t.add_peer(info(connections), now);
        }
    }
});
