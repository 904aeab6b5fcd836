//! Feeds the torrent engine a peer that sends arbitrary message streams, while we download or seed: no
//! panic, and the engine's invariants hold after every message.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use swarmer_proto::torrent::{Action, Config, PeerInfo, Torrent};
use swarmer_proto::wire::Message;
use swarmer_proto::{Bitfield, InfoHash, Layout};

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
    let mut t = Torrent::new(layout, InfoHash([7; 20]), have, Config::default(), 0);
    let mut now = Instant::now();
    let peer = t.add_peer(
        PeerInfo {
            addr: SocketAddr::from(([127, 0, 0, 2], 6881)),
            fast: flags & 1 != 0,
            extensions: flags & 2 != 0,
        },
        now,
    );
    while let Ok(Some((message, used))) = Message::decode(rest, 1 << 16) {
        t.handle_message(peer, message, now);
        rest = &rest[used..];
        while let Some(action) = t.poll_action() {
            match action {
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
    }
});
