//! Tests of resolving failed v2 pieces to their bad blocks, with plain values: a piece of four
//! blocks whose tree we build here, sent by peers at 10.0.0.x.

use super::*;
use crate::merkle::{self, PieceCheck};

const BLOCK: usize = crate::BLOCK_SIZE as usize;

fn ip(n: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, n])
}

fn piece() -> PieceIndex {
    crate::layout::piece_index_unchecked(5)
}

/// A piece of four blocks, 3.5 blocks of file then zero padding, as received with block `bad`
/// corrupted (in its file bytes, or in its padding for block 3).
fn evidence(bad: usize) -> (Box<LeafEvidence>, Vec<Hash256>) {
    let content = 3 * BLOCK + BLOCK / 2;
    let good: Vec<u8> = (0..4 * BLOCK)
        .map(|i| if i < content { (i % 253) as u8 } else { 0 })
        .collect();
    let truth = merkle::leaf_hashes(&good[..content]);
    let expected = merkle::root(truth.clone(), 4, merkle::ZERO_LEAF);
    let mut data = good;
    data[bad * BLOCK + BLOCK - 1] ^= 1;
    match LeafEvidence::check([7; 32], 8, 4, expected, &data, content) {
        PieceCheck::Bad(Some(e)) => (e, truth),
        other => panic!("{other:?}"),
    }
}

fn senders() -> Vec<IpAddr> {
    vec![ip(1), ip(2), ip(1), ip(3)]
}

#[test]
fn a_proven_answer_names_only_the_bad_blocks_senders() {
    let mut inquiries = Inquiries::default();
    let (e, truth) = evidence(1);
    assert_eq!(inquiries.open(piece(), e, senders()), None);
    let (asked, settled) = inquiries.poll(Instant::ZERO, |_| vec![9u32, 4]);
    assert!(settled.is_empty());
    assert_eq!(asked.len(), 1);
    let (key, request) = asked[0];
    assert_eq!(key, 9);
    assert_eq!(
        (request.index, request.length, request.base_layer),
        (8, 4, 0)
    );
    // Another peer's unsolicited answer changes nothing.
    assert_eq!(inquiries.on_hashes(4, &request, &truth), Reply::Ignored);
    assert_eq!(
        inquiries.on_hashes(9, &request, &truth),
        Reply::Handled(vec![Verdict::Pinned {
            piece: piece(),
            culprits: vec![ip(2)]
        }])
    );
    assert!(inquiries.is_empty());
}

#[test]
fn bad_padding_is_pinned_without_asking() {
    let mut inquiries: Inquiries<u32> = Inquiries::default();
    let (e, _) = evidence(3);
    assert_eq!(e.bad_padding, vec![3]);
    assert_eq!(
        inquiries.open(piece(), e, senders()),
        Some(Verdict::Pinned {
            piece: piece(),
            culprits: vec![ip(3)]
        })
    );
}

#[test]
fn a_lie_a_reject_and_a_timeout_leave_the_piece_unresolved() {
    let mut inquiries = Inquiries::default();
    let (e, truth) = evidence(0);
    assert_eq!(inquiries.open(piece(), e, senders()), None);
    let candidates = |_| vec![1u32, 2, 3, 4];
    let (asked, _) = inquiries.poll(Instant::ZERO, candidates);
    let request = asked[0].1;
    let mut lie = truth.clone();
    lie[2][0] ^= 1;
    assert_eq!(inquiries.on_hashes(1, &request, &lie), Reply::Lied(1));
    let (asked, _) = inquiries.poll(Instant::ZERO, candidates);
    assert_eq!(asked[0].0, 2);
    assert_eq!(inquiries.on_reject(2, &request), Reply::Handled(Vec::new()));
    let (asked, _) = inquiries.poll(Instant::ZERO, candidates);
    assert_eq!(asked[0].0, 3);
    let (asked, settled) = inquiries.poll(Instant::ZERO + INQUIRY_TIMEOUT / 2, candidates);
    assert!(asked.is_empty() && settled.is_empty(), "still waiting");
    let (asked, settled) = inquiries.poll(Instant::ZERO + INQUIRY_TIMEOUT, candidates);
    assert!(asked.is_empty(), "{MAX_ASKED} peers asked at most");
    assert_eq!(
        settled,
        vec![Verdict::Unresolved {
            piece: piece(),
            contributors: vec![ip(1), ip(2), ip(3)]
        }]
    );
}

#[test]
fn inquiries_are_bounded_and_need_a_peer_with_the_piece() {
    let mut inquiries: Inquiries<u32> = Inquiries::default();
    for i in 0..MAX_INQUIRIES as u32 {
        let (e, _) = evidence(0);
        let p = crate::layout::piece_index_unchecked(i);
        assert_eq!(inquiries.open(p, e, senders()), None);
    }
    let (e, _) = evidence(0);
    let extra = crate::layout::piece_index_unchecked(100);
    assert!(matches!(
        inquiries.open(extra, e, senders()),
        Some(Verdict::Unresolved { .. })
    ));
    // Nobody has the pieces: all are settled by today's rule at once.
    let (asked, settled) = inquiries.poll(Instant::ZERO, |_| Vec::new());
    assert!(asked.is_empty());
    assert_eq!(settled.len(), MAX_INQUIRIES);
    assert!(inquiries.is_empty());
}

#[test]
fn one_proven_answer_settles_every_failure_of_the_piece() {
    let mut inquiries = Inquiries::default();
    let (first, truth) = evidence(1);
    let (second, _) = evidence(2);
    assert_eq!(inquiries.open(piece(), first, senders()), None);
    let (asked, _) = inquiries.poll(Instant::ZERO, |_| vec![7u32]);
    // The piece fails again, from other senders, before the answer comes.
    let again = vec![ip(4), ip(4), ip(5), ip(4)];
    assert_eq!(inquiries.open(piece(), second, again), None);
    let reply = inquiries.on_hashes(7, &asked[0].1, &truth);
    assert_eq!(
        reply,
        Reply::Handled(vec![
            Verdict::Pinned {
                piece: piece(),
                culprits: vec![ip(2)]
            },
            Verdict::Pinned {
                piece: piece(),
                culprits: vec![ip(5)]
            },
        ])
    );
    assert!(inquiries.is_empty());
}
