//! Feeds the torrent engine (the peer session state machine) a peer that sends arbitrary message streams,
//! while we download or seed and serve its requests: no panic, and the engine's invariants hold after
//! every message, while deadlines (time-critical pieces) are set, moved and cleared. When the engine
//! drops the peer, the rest of the input comes from a new connection. Unknown message ids 200 to
//! 203 drive a web seed instead: bytes of its fetch, the fetch's end (done or failed), and removing
//! it for a new one.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use swarmer_proto::merkle::{LeafEvidence, PieceCheck};
use swarmer_proto::time::Instant;
use swarmer_proto::torrent::{Action, Config, FetchEnd, PeerInfo, Torrent};
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
    // Metadata of two BEP 9 pieces to serve; flag bit 6 makes the torrent private (nothing served,
    // no PEX).
    let config = Config {
        metadata: Some(vec![b'x'; 20_000].into()),
        private: flags & 0x40 != 0,
        ..Config::default()
    };
    let mut t = Torrent::new(layout.clone(), InfoHash([7; 20]), have, config, 0);
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
    let mut seed = t.add_web_seed(now);
    while let Ok(Some((message, used))) = Message::decode(rest, 1 << 16) {
        match message {
            Message::Unknown { id: 200, payload } => t.handle_web_data(seed, payload, now),
            Message::Unknown { id: 201, .. } => t.handle_web_fetch_end(seed, FetchEnd::Done, now),
            Message::Unknown { id: 202, payload } => {
                let retry_after = payload.first().map(|s| Duration::from_secs(u64::from(*s)));
                t.handle_web_fetch_end(seed, FetchEnd::Failed { retry_after }, now)
            }
            Message::Unknown { id: 203, .. } => {
                t.remove_web_seed(seed);
                seed = t.add_web_seed(now);
            }
            message => t.handle_message(peer, message, now),
        }
        rest = &rest[used..];
        // Deadlines (time-critical pieces) set, moved, replaced and cleared as the input goes.
        let piece = layout.piece((used % 3) as u32).expect("three pieces");
        let due = now + Duration::from_millis(300 * (used % 5) as u64);
        match used % 13 {
            0 | 1 => {
                t.set_piece_deadline(piece, due, now);
            }
            2 => t.clear_piece_deadline(piece, now),
            3 => t.replace_piece_deadlines([(piece, due)], now),
            4 => t.clear_piece_deadlines(now),
            _ => {}
        }
        let mut disconnected = false;
        while let Some(action) = t.poll_action() {
            match action {
                // The rest of the input goes to a new connection from another address (the old one may be
                // banned), so one input can drive many sessions instead of talking to a forgotten peer.
                Action::Disconnect { peer: gone, .. } if gone == peer => disconnected = true,
                // A piece starting with 0 is good; with 1 it fails as a v2 piece (of a tree whose
                // root is all zeros), so the engine asks for its leaves and the input's `hashes`
                // and `hash reject` messages answer; else it fails as a v1 piece.
                Action::VerifyPiece { piece, data } => {
                    let check = match data.first() {
                        Some(0) => PieceCheck::Good,
                        Some(1) => LeafEvidence::check([0; 32], 0, 4, [0; 32], &data, data.len()),
                        _ => PieceCheck::Bad(None),
                    };
                    t.handle_piece_checked(piece, check, data, now);
                }
                Action::Upload { peer, block } => {
                    t.handle_block_sent(peer, 1, u64::from(block.length), now)
                }
                Action::Send { .. }
                | Action::Disconnect { .. }
                | Action::WebFetch { .. }
                | Action::DropWebSeed { .. } => {}
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
