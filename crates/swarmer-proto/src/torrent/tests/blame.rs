//! Tests of pinning a failed v2 piece on the peer that sent its bad block (BEP 52 leaf hashes,
//! [`crate::blame`]), with plain values: one piece of two blocks, filled by two peers.

use super::*;
use crate::blame::MAX_ASKED;
use crate::hashes::{HashMessage, HashRequest};
use crate::merkle::{self, LeafEvidence, PieceCheck};

/// A peer without the Fast Extension that has the torrent's only piece.
fn seed(f: &mut Fixture, ip: u8) -> PeerKey {
    let key = f.peer(ip, false);
    f.t.handle_message(key, Message::Bitfield(&[0x80]), f.now);
    key
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// The requests `actions` sends to `key`.
fn requests(actions: &[Action], key: PeerKey) -> Vec<BlockRef> {
    sends(actions, key)
        .into_iter()
        .filter_map(|m| match m {
            Outgoing::Request(b) => Some(b),
            _ => None,
        })
        .collect()
}

/// The hash requests `actions` sends, by peer.
fn hash_requests(actions: &[Action]) -> Vec<(PeerKey, HashRequest)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                peer,
                message: Outgoing::HashRequest(r),
            } => Some((*peer, r.request)),
            _ => None,
        })
        .collect()
}

/// Block 0 of piece 0 comes from `liar` (corrupt), block 1 from `honest`; returns the assembled
/// piece the engine hands over for verification.
fn fill_piece(f: &mut Fixture, liar: PeerKey, honest: PeerKey) -> Vec<u8> {
    f.drain();
    f.t.handle_message(liar, Message::Unchoke, f.now);
    let asked = requests(&f.drain(), liar);
    assert_eq!(
        asked.len(),
        2,
        "both blocks asked of the first peer to unchoke"
    );
    let mut bad = f.content[..BLOCK_SIZE as usize].to_vec();
    bad[100] ^= 1;
    let block = |data| Message::Piece {
        index: 0,
        begin: 0,
        data,
    };
    f.t.handle_message(liar, block(&bad), f.now);
    // Without the Fast Extension a choke drops the other request (BEP 3).
    f.t.handle_message(liar, Message::Choke, f.now);
    f.drain();
    f.t.handle_message(honest, Message::Unchoke, f.now);
    let asked = requests(&f.drain(), honest);
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].offset, BLOCK_SIZE);
    let good = f.content[BLOCK_SIZE as usize..PIECE as usize].to_vec();
    let msg = Message::Piece {
        index: 0,
        begin: BLOCK_SIZE,
        data: &good,
    };
    f.t.handle_message(honest, msg, f.now);
    let verify = f.drain();
    let data = verify
        .into_iter()
        .find_map(|a| match a {
            Action::VerifyPiece { data, .. } => Some(data),
            _ => None,
        })
        .expect("piece complete");
    assert_eq!(data.len(), PIECE as usize);
    data
}

/// The v2 tree of the fixture's one piece: a file of one piece, whose root is the piece's node.
fn check(f: &Fixture, data: &[u8]) -> (PieceCheck, Vec<merkle::Hash256>) {
    let truth = merkle::leaf_hashes(&f.content[..PIECE as usize]);
    let root = merkle::root(truth.clone(), 2, merkle::ZERO_LEAF);
    (
        LeafEvidence::check(root, 0, 2, root, data, data.len()),
        truth,
    )
}

/// `hashes` for `request` as `key` sends it.
fn answer(f: &mut Fixture, key: PeerKey, request: HashRequest, hashes: Vec<merkle::Hash256>) {
    let mut bytes = Vec::new();
    HashMessage::Hashes { request, hashes }.encode(&mut bytes);
    let msg = Message::Unknown {
        id: bytes[0],
        payload: &bytes[1..],
    };
    f.t.handle_message(key, msg, f.now);
}

fn events(f: &mut Fixture) -> Vec<Event> {
    std::iter::from_fn(|| f.t.poll_event()).collect()
}

#[test]
fn only_the_sender_of_the_corrupt_block_is_banned() {
    let mut f = Fixture::new(1);
    let liar = seed(&mut f, 1);
    let honest = seed(&mut f, 2);
    let bystander = seed(&mut f, 3);
    let data = fill_piece(&mut f, liar, honest);
    let (result, truth) = check(&f, &data);
    assert!(matches!(result, PieceCheck::Bad(Some(_))));
    f.t.handle_piece_checked(f.t.layout.piece(0).unwrap(), result, data, f.now);
    let actions = f.drain();
    let asked = hash_requests(&actions);
    assert_eq!(asked.len(), 1, "one peer asked: {actions:?}");
    let (to, request) = asked[0];
    assert_eq!(
        (request.base_layer, request.index, request.length),
        (0, 0, 2)
    );
    // Whoever is asked, a proven answer decides; here the liar itself answers truthfully.
    assert_eq!(to, liar);
    answer(&mut f, to, request, truth);
    let actions = f.drain();
    assert!(
        faults(&actions).contains(&PeerFault::Misbehaved(Offence::CorruptBlock)),
        "{actions:?}"
    );
    let events = events(&mut f);
    assert!(events.contains(&Event::BadBlocksPinned {
        piece: f.t.layout.piece(0).unwrap(),
        peers: vec![ip(1)],
    }));
    assert!(f.t.is_banned(ip(1)));
    for honest_ip in [ip(2), ip(3)] {
        assert!(!f.t.is_banned(honest_ip));
        assert_eq!(f.t.trust(honest_ip), 0, "honest peers lose no trust");
    }
    // The piece is fetched again from the honest peers.
    f.t.handle_message(honest, Message::Unchoke, f.now);
    f.t.handle_message(bystander, Message::Unchoke, f.now);
    let actions = f.drain();
    let faults = f.run(actions, None);
    assert!(faults.is_empty(), "{faults:?}");
    assert!(f.t.is_complete());
    assert!(f.t.trust(ip(2)) >= 0 && f.t.trust(ip(3)) >= 0);
}

#[test]
fn a_peer_answering_with_false_hashes_is_the_one_faulted() {
    let mut f = Fixture::new(1);
    let false_witness = seed(&mut f, 3);
    let liar = seed(&mut f, 1);
    let honest = seed(&mut f, 2);
    let data = fill_piece(&mut f, liar, honest);
    let (result, truth) = check(&f, &data);
    let piece = f.t.layout.piece(0).unwrap();
    f.t.handle_piece_checked(piece, result, data, f.now);
    let asked = hash_requests(&f.drain());
    assert_eq!(asked.len(), 1);
    let (to, request) = asked[0];
    assert_eq!(to, false_witness, "the first peer with the piece is asked");
    // It claims the honest peer's block was the bad one: the leaves do not hash up to the piece.
    let mut lie = truth.clone();
    lie[1][0] ^= 1;
    answer(&mut f, to, request, lie);
    let actions = f.drain();
    assert!(f.t.is_banned(ip(3)), "the false witness is banned");
    assert!(faults(&actions).contains(&PeerFault::Misbehaved(Offence::BadHashes)));
    // The next peer is asked, answers truthfully, and the block's sender alone is blamed.
    let asked = hash_requests(&actions);
    assert_eq!(asked.len(), 1, "{actions:?}");
    answer(&mut f, asked[0].0, asked[0].1, truth);
    f.drain();
    assert!(f.t.is_banned(ip(1)));
    assert!(!f.t.is_banned(ip(2)));
    assert_eq!(f.t.trust(ip(2)), 0);
}

#[test]
fn without_an_answer_every_contributor_is_blamed_after_the_timeouts() {
    let mut f = Fixture::new(1);
    let liar = seed(&mut f, 1);
    let honest = seed(&mut f, 2);
    let data = fill_piece(&mut f, liar, honest);
    let (result, _) = check(&f, &data);
    let piece = f.t.layout.piece(0).unwrap();
    f.t.handle_piece_checked(piece, result, data, f.now);
    let asked = hash_requests(&f.drain());
    assert_eq!(asked.len(), 1);
    // The first rejects; the second never answers.
    let mut bytes = Vec::new();
    HashMessage::Reject(asked[0].1).encode(&mut bytes);
    let msg = Message::Unknown {
        id: bytes[0],
        payload: &bytes[1..],
    };
    f.t.handle_message(asked[0].0, msg, f.now);
    let again = hash_requests(&f.drain());
    assert_eq!(again.len(), 1);
    assert_ne!(
        again[0].0, asked[0].0,
        "a rejecting peer is not asked again"
    );
    let mut tried = 2;
    for _ in 0..15 {
        // Peers still talk (keep-alives), so only the hash request times out.
        f.now += Duration::from_secs(1);
        for key in [liar, honest] {
            f.t.handle_message(key, Message::KeepAlive, f.now);
        }
        f.t.handle_timeout(f.now);
        tried += hash_requests(&f.drain()).len();
    }
    assert!(tried <= MAX_ASKED);
    assert_eq!(
        f.t.trust(ip(1)),
        -2,
        "today's rule: both contributors lose trust"
    );
    assert_eq!(f.t.trust(ip(2)), -2);
    assert!(!f.t.is_banned(ip(1)));
}
