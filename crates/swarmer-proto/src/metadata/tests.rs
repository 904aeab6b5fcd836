//! Tests of fetching metadata from peers (BEP 9 `ut_metadata`): several peers, faults, rejects and
//! timeouts, hash failures and conflicting sizes.

use super::*;

const THEIR_ID: u8 = 7;

/// Metadata of `len` bytes and its info hash.
fn metadata(len: usize) -> (Vec<u8>, InfoHash) {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let hash = InfoHash(sha1(&bytes));
    (bytes, hash)
}

fn handshake(size: u32) -> ExtensionHandshake {
    ExtensionHandshake {
        messages: vec![(UT_METADATA.to_owned(), THEIR_ID)],
        metadata_size: Some(size),
        ..ExtensionHandshake::default()
    }
}

/// The pieces requested so far, as (peer, piece).
fn requests(f: &mut MetadataFetch) -> Vec<(PeerKey, u32)> {
    f.drain_outgoing()
        .map(|o| {
            assert_eq!(o.id, THEIR_ID);
            match MetadataMessage::decode(&o.payload).unwrap() {
                MetadataMessage::Request { piece } => (o.peer, piece),
                other => panic!("expected a request, got {other:?}"),
            }
        })
        .collect()
}

fn data(bytes: &[u8], piece: u32, total: u32) -> Vec<u8> {
    let start = piece as usize * METADATA_PIECE_LEN as usize;
    let end = (start + METADATA_PIECE_LEN as usize).min(bytes.len());
    let mut out = Vec::new();
    MetadataMessage::Data {
        piece,
        total_size: total,
        data: &bytes[start..end],
    }
    .encode(&mut out);
    out
}

fn answer_all(f: &mut MetadataFetch, bytes: &[u8], now: Instant) {
    loop {
        let asked = requests(f);
        if asked.is_empty() {
            break;
        }
        for (peer, piece) in asked {
            f.handle_message(peer, &data(bytes, piece, bytes.len() as u32), now)
                .unwrap();
        }
    }
}

#[test]
fn fetches_from_several_peers_and_verifies() {
    let (bytes, hash) = metadata(100_000); // 7 pieces, the last 2,304 bytes
    let now = Instant::ZERO;
    let mut f = MetadataFetch::new(hash);
    f.handle_handshake(1, &handshake(100_000), now);
    f.handle_handshake(2, &handshake(100_000), now);
    let first = requests(&mut f);
    assert_eq!(first.len(), 7, "4 + 3 requests spread over both peers");
    assert!(first.iter().filter(|(p, _)| *p == 1).count() <= REQUESTS_PER_PEER as usize);
    assert!(first.iter().any(|(p, _)| *p == 2));
    assert_eq!(f.progress().piece_count, 7);
    for (peer, piece) in first {
        f.handle_message(peer, &data(&bytes, piece, 100_000), now)
            .unwrap();
    }
    assert!(f.is_complete());
    assert_eq!(f.take_metadata().unwrap(), bytes);
    assert!(f.take_metadata().is_none());
}

#[test]
fn peers_without_ut_metadata_or_with_absurd_sizes_are_not_used() {
    let (_, hash) = metadata(10);
    let now = Instant::ZERO;
    let mut f = MetadataFetch::new(hash);
    f.handle_handshake(1, &ExtensionHandshake::default(), now);
    f.handle_handshake(2, &handshake(0), now);
    f.handle_handshake(3, &handshake(MAX_METADATA_SIZE + 1), now);
    assert!(requests(&mut f).is_empty());
    assert_eq!(f.progress(), FetchProgress::default());
}

#[test]
fn wrong_sizes_and_unrequested_pieces_are_faults() {
    let (bytes, hash) = metadata(40_000); // 3 pieces
    let now = Instant::ZERO;
    let mut f = MetadataFetch::new(hash);
    f.handle_handshake(1, &handshake(40_000), now);
    let asked = requests(&mut f);
    assert_eq!(asked.len(), 3);
    // A short piece 0 (the codec checks the length against the piece's).
    let mut short = data(&bytes, 0, 40_000);
    short.truncate(short.len() - 100);
    assert_eq!(
        f.handle_message(1, &short, now),
        Err(MetadataFault::WrongSize { piece: 0 })
    );
    // Peer 2 sends a piece nobody asked it for, and one beyond the end.
    f.handle_handshake(2, &handshake(40_000), now);
    let asked = requests(&mut f);
    assert_eq!(asked.len(), 3, "peer 1's requests went to peer 2");
    assert!(asked.iter().all(|(p, _)| *p == 2));
    assert_eq!(
        f.handle_message(3, &data(&bytes, 0, 40_000), now),
        Err(MetadataFault::Unrequested { piece: 0 })
    );
    assert_eq!(
        f.handle_message(2, b"garbage", now),
        Err(MetadataFault::Malformed)
    );
    // A wrong total size from a peer is a fault too.
    f.handle_handshake(4, &handshake(40_000), now);
    let asked = requests(&mut f);
    let (peer, piece) = asked[0];
    assert_eq!(
        f.handle_message(peer, &data(&bytes, piece, 40_001), now),
        Err(MetadataFault::WrongSize { piece })
    );
    assert!(!f.is_complete());
}

#[test]
fn rejected_and_timed_out_pieces_go_to_other_peers() {
    let (bytes, hash) = metadata(20_000); // 2 pieces
    let now = Instant::ZERO;
    let mut f = MetadataFetch::new(hash);
    f.handle_handshake(1, &handshake(20_000), now);
    assert_eq!(requests(&mut f), vec![(1, 0), (1, 1)]);
    let mut reject = Vec::new();
    MetadataMessage::Reject { piece: 0 }.encode(&mut reject);
    f.handle_message(1, &reject, now).unwrap();
    assert!(
        requests(&mut f).is_empty(),
        "not asked again of the peer that rejected it"
    );
    f.handle_handshake(2, &handshake(20_000), now + REQUEST_TIMEOUT / 2);
    assert_eq!(requests(&mut f), vec![(2, 0)]);
    // Piece 1 at peer 1 times out and goes to peer 2.
    assert_eq!(f.poll_timeout(), Some(now + REQUEST_TIMEOUT));
    let later = now + REQUEST_TIMEOUT;
    f.handle_timeout(later);
    let asked = requests(&mut f);
    assert!(asked.contains(&(2, 1)), "{asked:?}");
    for (peer, piece) in asked.into_iter().chain([(2, 0)]) {
        f.handle_message(peer, &data(&bytes, piece, 20_000), later)
            .unwrap();
    }
    // A late answer from peer 1 after the piece went elsewhere is ignored.
    f.handle_message(1, &data(&bytes, 1, 20_000), later)
        .unwrap();
    assert_eq!(f.take_metadata().unwrap(), bytes);
}

#[test]
fn a_peer_that_keeps_timing_out_is_dropped() {
    let (_, hash) = metadata(10);
    let mut now = Instant::ZERO;
    let mut f = MetadataFetch::new(hash);
    f.handle_handshake(1, &handshake(10), now);
    for _ in 0..MAX_TIMEOUTS {
        assert_eq!(requests(&mut f), vec![(1, 0)]);
        now += REQUEST_TIMEOUT;
        f.handle_timeout(now);
    }
    assert_eq!(f.poll_fault(), Some((1, MetadataFault::TooSlow)));
    assert!(requests(&mut f).is_empty());
}

/// Found by the `metadata` fuzz target: the timeout that excludes a peer reset its count of
/// outstanding requests, and its next late request then took one from zero.
#[test]
fn several_requests_timing_out_at_the_last_allowed_timeout() {
    let (_, hash) = metadata(40_000);
    let mut now = Instant::ZERO;
    let mut f = MetadataFetch::new(hash);
    f.handle_handshake(1, &handshake(40_000), now);
    // Three requests time out together: the third excludes the peer.
    assert_eq!(requests(&mut f).len(), MAX_TIMEOUTS as usize);
    now += REQUEST_TIMEOUT;
    f.handle_timeout(now);
    assert_eq!(f.poll_fault(), Some((1, MetadataFault::TooSlow)));
    assert!(requests(&mut f).is_empty());
}

#[test]
fn metadata_that_fails_the_hash_is_refetched_from_other_peers() {
    let (bytes, hash) = metadata(30_000);
    let mut lie = bytes.clone();
    lie[5] ^= 1;
    let now = Instant::ZERO;
    let mut f = MetadataFetch::new(hash);
    // The liar announces the right size, and later an honest peer comes.
    f.handle_handshake(1, &handshake(30_000), now);
    answer_all(&mut f, &lie, now);
    assert!(!f.is_complete());
    assert_eq!(f.poll_fault(), Some((1, MetadataFault::BadMetadata)));
    f.handle_handshake(2, &handshake(30_000), now);
    answer_all(&mut f, &bytes, now);
    assert_eq!(f.take_metadata().unwrap(), bytes);
}

#[test]
fn a_wrong_size_announced_first_gives_way_to_the_right_one() {
    let (bytes, hash) = metadata(30_000);
    let now = Instant::ZERO;
    let mut f = MetadataFetch::new(hash);
    f.handle_handshake(1, &handshake(20_000), now);
    f.handle_handshake(2, &handshake(30_000), now);
    // Peer 1's 20,000 bytes fail the hash; peer 2's size is tried next.
    for (peer, piece) in requests(&mut f) {
        assert_eq!(peer, 1);
        f.handle_message(peer, &data(&bytes[..20_000], piece, 20_000), now)
            .unwrap();
    }
    assert_eq!(f.poll_fault(), Some((1, MetadataFault::BadMetadata)));
    answer_all(&mut f, &bytes, now);
    assert_eq!(f.take_metadata().unwrap(), bytes);
}

#[test]
fn requests_for_our_metadata_are_rejected() {
    let (_, hash) = metadata(10);
    let now = Instant::ZERO;
    let mut f = MetadataFetch::new(hash);
    f.handle_handshake(1, &handshake(10), now);
    let _ = requests(&mut f);
    let mut request = Vec::new();
    MetadataMessage::Request { piece: 0 }.encode(&mut request);
    f.handle_message(1, &request, now).unwrap();
    let out: Vec<_> = f.drain_outgoing().collect();
    assert_eq!(out.len(), 1);
    assert_eq!(
        MetadataMessage::decode(&out[0].payload).unwrap(),
        MetadataMessage::Reject { piece: 0 }
    );
}

/// Answers every request, peer `liar` with `lie` and the others with `bytes`, until none is left.
fn answer_with_liar(f: &mut MetadataFetch, bytes: &[u8], lie: &[u8], liar: PeerKey) {
    loop {
        let asked = requests(f);
        if asked.is_empty() {
            break;
        }
        for (peer, piece) in asked {
            let source = if peer == liar { lie } else { bytes };
            f.handle_message(
                peer,
                &data(source, piece, bytes.len() as u32),
                Instant::ZERO,
            )
            .unwrap();
        }
    }
}

fn faults(f: &mut MetadataFetch) -> Vec<(PeerKey, MetadataFault)> {
    std::iter::from_fn(|| f.poll_fault()).collect()
}

#[test]
fn a_liar_among_several_contributors_is_found_and_only_it_is_blamed() {
    // 7 pieces: peer 1 is asked for 4, peer 2 for 3, peer 3 for none (it comes last). The fetch
    // asks the biggest contributor (1) alone first: when 1 lies its copy fails and it alone is
    // blamed, then 2 alone finishes; when 2 lies, 1's copy verifies and 2's old pieces differ.
    // Either way only the liar is blamed, and the peers that sent nothing wrong keep their place.
    let (bytes, hash) = metadata(100_000);
    let mut lie = bytes.clone();
    for i in (0..lie.len()).step_by(1000) {
        lie[i] ^= 0xff;
    }
    for liar in [1, 2] {
        let mut f = MetadataFetch::new(hash);
        for peer in [1, 2, 3] {
            f.handle_handshake(peer, &handshake(100_000), Instant::ZERO);
        }
        answer_with_liar(&mut f, &bytes, &lie, liar);
        assert_eq!(
            f.take_metadata().as_deref(),
            Some(&bytes[..]),
            "liar {liar}"
        );
        assert_eq!(
            faults(&mut f),
            vec![(liar, MetadataFault::BadMetadata)],
            "liar {liar}"
        );
    }
}
