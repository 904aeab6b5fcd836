//! Tests of the torrent engine, driven as a driver drives it: the fixture and helpers every concern
//! shares, and the tests of the core (message dispatch and its typed faults, BEP 5 `port`). The
//! tests of each concern live beside it, one file each.

use super::*;
use crate::bitfield::BitfieldError;
use crate::digest::sha1;

mod blame;
mod download;
mod ext;
mod serve;
mod web;

/// A torrent of `pieces` pieces of two blocks each, with content `content(i) = i as u8`.
struct Fixture {
    t: Torrent,
    content: Vec<u8>,
    now: Instant,
}

const PIECE: u64 = 2 * BLOCK_SIZE as u64;

impl Fixture {
    fn new(pieces: u64) -> Fixture {
        let content: Vec<u8> = (0..pieces * PIECE).map(|i| (i % 251) as u8).collect();
        let layout = Layout::new(PIECE, [content.len() as u64]).unwrap();
        let have = Bitfield::new(pieces as usize);
        Fixture {
            t: Torrent::new(layout, InfoHash([0xaa; 20]), have, Config::default(), 1),
            content,
            now: Instant::ZERO,
        }
    }

    /// A torrent of which we have the pieces in `have` (of `pieces`).
    fn with_have(pieces: u64, have: &[u32]) -> Fixture {
        let mut f = Fixture::new(pieces);
        let mut bits = Bitfield::new(pieces as usize);
        for &i in have {
            bits.set(i as usize);
        }
        let layout = f.t.layout.clone();
        f.t = Torrent::new(layout, InfoHash([0xaa; 20]), bits, Config::default(), 1);
        f
    }

    fn peer(&mut self, ip: u8, fast: bool) -> PeerKey {
        let addr = SocketAddr::from(([127, 0, 0, ip], 6881));
        self.t.add_peer(
            PeerInfo {
                addr,
                fast,
                extensions: false,
                outgoing: true,
                encrypted: false,
                utp: false,
            },
            self.now,
        )
    }

    /// A peer at 127.0.0.`ip` offering both the Fast Extension and the extension protocol.
    fn peer_with_extensions(&mut self, ip: u8) -> PeerKey {
        let addr = SocketAddr::from(([127, 0, 0, ip], 6881));
        self.t.add_peer(
            PeerInfo {
                addr,
                fast: true,
                extensions: true,
                outgoing: true,
                encrypted: false,
                utp: false,
            },
            self.now,
        )
    }

    fn drain(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(a) = self.t.poll_action() {
            out.push(a);
        }
        self.t.check_invariants();
        out
    }

    /// Answers every request in `actions` with the right data (or, for `bad_peer`, flipped data), and
    /// verifies every completed piece, until nothing is left to do. Returns the faults of peers
    /// disconnected meanwhile (seeds leaving once we are complete are not faults).
    fn run(
        &mut self,
        mut actions: Vec<Action>,
        bad_peer: Option<PeerKey>,
    ) -> Vec<(PeerKey, PeerFault)> {
        let mut faults = Vec::new();
        while !actions.is_empty() {
            for action in std::mem::take(&mut actions) {
                match action {
                    Action::Send {
                        peer,
                        message: Outgoing::Request(b),
                    } => {
                        let start =
                            (self.t.layout.piece_offset(b.piece) + u64::from(b.offset)) as usize;
                        let mut data = self.content[start..start + b.length as usize].to_vec();
                        if Some(peer) == bad_peer {
                            data[0] ^= 0xff;
                        }
                        let msg = Message::Piece {
                            index: b.piece.get(),
                            begin: b.offset,
                            data: &data,
                        };
                        self.t.handle_message(peer, msg, self.now);
                    }
                    Action::Send { .. } | Action::Upload { .. } => {}
                    // Seeds part from us once we are complete: that is no fault.
                    Action::Disconnect {
                        fault: PeerFault::Useless(_),
                        ..
                    } => {}
                    Action::Disconnect { peer, fault } => faults.push((peer, fault)),
                    Action::VerifyPiece { piece, data } => {
                        let start = self.t.layout.piece_offset(piece) as usize;
                        let expected = &self.content[start..start + data.len()];
                        let ok = sha1(&data) == sha1(expected);
                        self.t.handle_piece_verified(piece, ok, data, self.now);
                    }
                    // Web seeds serve honestly here, in pieces of an odd size.
                    Action::WebFetch {
                        seed,
                        offset,
                        length,
                    } => {
                        let range = offset as usize..(offset + length) as usize;
                        for chunk in self.content[range].to_vec().chunks(5000) {
                            self.t.handle_web_data(seed, chunk, self.now);
                        }
                        self.t.handle_web_fetch_end(seed, FetchEnd::Done, self.now);
                    }
                    Action::DropWebSeed { .. } => {}
                }
                actions.extend(self.drain());
            }
        }
        faults
    }
}

fn sends(actions: &[Action], key: PeerKey) -> Vec<Outgoing> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { peer, message } if *peer == key => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn protocol_violations_are_typed_faults() {
    let cases: Vec<(Message<'static>, PeerFault)> = vec![
        (
            Message::Have(10),
            PeerFault::Misbehaved(Offence::HaveOutOfRange(10)),
        ),
        (
            Message::Bitfield(&[0xff]),
            PeerFault::Misbehaved(Offence::BadBitfield(BitfieldError::WrongLength {
                got: 1,
                expected: 2,
                pieces: 10,
            })),
        ),
        (
            Message::Bitfield(&[0xff, 0xff]),
            PeerFault::Misbehaved(Offence::BadBitfield(BitfieldError::SpareBitsSet {
                pieces: 10,
            })),
        ),
        (
            Message::HaveAll,
            PeerFault::Misbehaved(Offence::FastNotNegotiated),
        ),
        (
            Message::Piece {
                index: 0,
                begin: 5,
                data: &[1, 2, 3],
            },
            PeerFault::Misbehaved(Offence::BlockOutOfRange {
                index: 0,
                begin: 5,
                length: 3,
            }),
        ),
    ];
    for (message, expected) in cases {
        let mut f = Fixture::new(10);
        let p = f.peer(2, false);
        f.drain();
        f.t.handle_message(p, message, f.now);
        let faults: Vec<PeerFault> = f
            .drain()
            .into_iter()
            .filter_map(|a| match a {
                Action::Disconnect { fault, .. } => Some(fault),
                _ => None,
            })
            .collect();
        assert_eq!(faults, vec![expected]);
        assert_eq!(f.t.stats().peers, 0);
    }
    // A bitfield after other messages is a batch of haves (real leechers send one to sum up
    // many): it adds pieces, takes none away, and makes us interested; it is no fault.
    let mut f = Fixture::new(10);
    let p = f.peer(2, false);
    f.t.handle_message(p, Message::Unchoke, f.now);
    f.t.handle_message(p, Message::Have(3), f.now);
    f.drain();
    // Piece 5 only (the first byte's bits are pieces 0 to 7, high bit first).
    f.t.handle_message(p, Message::Bitfield(&[0b0000_0100, 0]), f.now);
    let actions = f.drain();
    assert_eq!(faults(&actions), vec![]);
    let bits = &f.t.peers[&p].bitfield;
    assert!(bits.get(3) && bits.get(5) && bits.count_ones() == 2);
    // A late bitfield of the wrong length is still malformed.
    f.t.handle_message(p, Message::Bitfield(&[0]), f.now);
    assert!(matches!(
        faults(&f.drain())[..],
        [PeerFault::Misbehaved(Offence::BadBitfield(_))]
    ));
}

fn faults(actions: &[Action]) -> Vec<PeerFault> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Disconnect { fault, .. } => Some(fault.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn port_messages_are_reported_for_the_dht_and_bounded() {
    let mut f = Fixture::new(10);
    let p = f.peer(2, true);
    f.drain();
    f.t.handle_message(p, Message::Port(6881), f.now);
    let events: Vec<Event> = std::iter::from_fn(|| f.t.poll_event()).collect();
    assert_eq!(
        events,
        vec![Event::DhtPort(SocketAddr::from(([127, 0, 0, 2], 6881)))]
    );
    // A peer repeating it cannot grow the event queue without bound, nor is it a fault.
    for _ in 0..10_000 {
        f.t.handle_message(p, Message::Port(6881), f.now);
    }
    assert!(std::iter::from_fn(|| f.t.poll_event()).count() <= MAX_DHT_PORT_EVENTS);
    assert!(
        f.drain()
            .iter()
            .all(|a| !matches!(a, Action::Disconnect { .. }))
    );
}
