//! Tests of the download side: requests we make and their timeouts (BEP 3, BEP 6 allowed fast),
//! block assembly and the memory budget, verification, trust and bans, interest, file selection and
//! finishing (BEP 21 `upload_only`).

use super::*;
use crate::FilePriority;
use crate::extension::ExtensionHandshake;

#[test]
fn downloads_everything_from_one_seeder() {
    let mut f = Fixture::new(10);
    let p = f.peer(2, true);
    assert_eq!(sends(&f.drain(), p), vec![Outgoing::HaveNone]);
    f.t.handle_message(p, Message::HaveAll, f.now);
    assert_eq!(sends(&f.drain(), p), vec![Outgoing::Interested]);
    f.t.handle_message(p, Message::Unchoke, f.now);
    let actions = f.drain();
    // The initial queue covers all 20 blocks (32 allowed).
    assert_eq!(actions.len(), 20);
    assert!(f.run(actions, None).is_empty());
    assert!(f.t.is_complete());
    let events: Vec<Event> = std::iter::from_fn(|| f.t.poll_event()).collect();
    assert_eq!(events.len(), 12);
    assert_eq!(&events[10..], &[Event::Finished, Event::Complete]);
    assert_eq!(f.t.stats().left, 0);
    assert_eq!(f.t.stats().wasted, 0);
}

#[test]
fn bad_data_is_fetched_again_and_the_liar_banned() {
    let mut f = Fixture::new(10);
    let liar = f.peer(3, false);
    let honest = f.peer(2, false);
    f.drain();
    // Only the liar is unchoked at first: it gets every request.
    f.t.handle_message(
        liar,
        Message::Bitfield(Bitfield::full(10).as_bytes()),
        f.now,
    );
    f.t.handle_message(
        honest,
        Message::Bitfield(Bitfield::full(10).as_bytes()),
        f.now,
    );
    f.t.handle_message(liar, Message::Unchoke, f.now);
    let actions = f.drain();
    assert!(actions.iter().all(
        |a| !matches!(a, Action::Send { peer, message: Outgoing::Request(_) } if *peer == honest)
    ));
    f.t.handle_message(honest, Message::Unchoke, f.now);
    let mut all = actions;
    all.extend(f.drain());
    let faults = f.run(all, Some(liar));
    assert_eq!(
        faults,
        vec![(liar, PeerFault::Misbehaved(Offence::HashFailures))]
    );
    assert!(f.t.is_banned(IpAddr::from([127, 0, 0, 3])));
    assert!(f.t.is_complete(), "the honest peer finished the download");
    let events: Vec<Event> = std::iter::from_fn(|| f.t.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(e, Event::HashFailed { .. })));
    assert!(events.contains(&Event::Banned(IpAddr::from([127, 0, 0, 3]))));
}

#[test]
fn stuck_requests_move_to_another_peer_and_silent_peers_are_dropped() {
    let mut f = Fixture::new(2);
    let slow = f.peer(2, false);
    f.t.handle_message(slow, Message::Bitfield(Bitfield::full(2).as_bytes()), f.now);
    f.t.handle_message(slow, Message::Unchoke, f.now);
    assert_eq!(
        f.drain()
            .iter()
            .filter(|a| matches!(
                a,
                Action::Send {
                    message: Outgoing::Request(_),
                    ..
                }
            ))
            .count(),
        4
    );
    let other = f.peer(3, false);
    f.t.handle_message(
        other,
        Message::Bitfield(Bitfield::full(2).as_bytes()),
        f.now,
    );
    f.t.handle_message(other, Message::Unchoke, f.now);
    // Endgame: the other peer gets duplicates right away.
    f.drain();
    // 20 s later with nothing from the slow peer, its requests are cancelled.
    f.now += Duration::from_secs(20);
    f.t.handle_message(other, Message::KeepAlive, f.now);
    f.t.handle_timeout(f.now);
    let cancels = sends(&f.drain(), slow)
        .into_iter()
        .filter(|m| matches!(m, Outgoing::Cancel(_)))
        .count();
    assert_eq!(cancels, 4);
    // It chokes us (so it holds no requests that could time out) and says no more. The other
    // peer's requests keep timing out meanwhile, which drops it long before.
    f.t.handle_message(slow, Message::Choke, f.now);
    // Two minutes of silence after that: disconnected.
    for _ in 0..120 {
        f.now += Duration::from_secs(1);
        f.t.handle_message(other, Message::KeepAlive, f.now);
        f.t.handle_timeout(f.now);
    }
    let faults: Vec<PeerKey> = f
        .drain()
        .into_iter()
        .filter_map(|a| match a {
            Action::Disconnect {
                peer,
                fault: PeerFault::Misbehaved(Offence::Silent(_)),
            } => Some(peer),
            _ => None,
        })
        .collect();
    assert_eq!(faults, vec![slow]);
}

#[test]
fn choke_without_fast_extension_drops_requests_and_keepalives_flow() {
    let mut f = Fixture::new(2);
    let p = f.peer(2, false);
    f.t.handle_message(p, Message::Bitfield(Bitfield::full(2).as_bytes()), f.now);
    f.t.handle_message(p, Message::Unchoke, f.now);
    f.drain();
    f.t.handle_message(p, Message::Choke, f.now);
    f.t.check_invariants();
    assert!(!f.t.picker.in_endgame(), "the blocks are free again");
    f.now += Duration::from_secs(61);
    f.t.handle_message(p, Message::KeepAlive, f.now);
    f.t.handle_timeout(f.now);
    assert!(sends(&f.drain(), p).contains(&Outgoing::KeepAlive));
}

#[test]
fn we_request_allowed_fast_pieces_while_choked() {
    let mut f = Fixture::new(4);
    let p = f.peer(2, true);
    f.drain();
    f.t.handle_message(p, Message::HaveAll, f.now);
    f.t.handle_message(p, Message::AllowedFast(2), f.now);
    f.t.handle_message(p, Message::AllowedFast(99), f.now);
    let requests: Vec<Outgoing> = sends(&f.drain(), p)
        .into_iter()
        .filter(|m| matches!(m, Outgoing::Request(_)))
        .collect();
    assert_eq!(
        requests.len(),
        2,
        "both blocks of piece 2, and nothing else"
    );
    assert!(
        requests
            .iter()
            .all(|m| matches!(m, Outgoing::Request(b) if b.piece.get() == 2))
    );
}

#[test]
fn two_seeds_part() {
    let mut f = Fixture::with_have(4, &[0, 1, 2, 3]);
    let p = f.peer(2, true);
    f.t.handle_message(p, Message::HaveAll, f.now);
    assert_eq!(
        faults(&f.drain()),
        vec![PeerFault::Useless("both sides are seeds")]
    );
    // A peer that becomes a seed while we seed leaves too; one that only uploads (BEP 21) as well.
    let mut f = Fixture::with_have(2, &[0, 1]);
    let p = f.peer(2, false);
    f.t.handle_message(p, Message::Have(0), f.now);
    f.t.handle_message(p, Message::Have(1), f.now);
    assert_eq!(faults(&f.drain()).len(), 1);
    let q = f.peer(3, false);
    f.t.handle_message(
        q,
        Message::Extended {
            id: 0,
            payload: b"d11:upload_onlyi1ee",
        },
        f.now,
    );
    assert_eq!(faults(&f.drain()).len(), 1);
}

#[test]
fn completing_tells_peers_we_only_upload_and_drops_seeds() {
    let mut f = Fixture::with_have(2, &[0]);
    let seed = f.peer_with_extensions(2);
    let leecher = f.peer_with_extensions(3);
    f.t.handle_message(seed, Message::HaveAll, f.now);
    f.t.handle_message(leecher, Message::HaveNone, f.now);
    f.t.handle_message(seed, Message::Unchoke, f.now);
    let actions = f.drain();
    assert!(f.run(actions, None).is_empty());
    assert!(f.t.is_complete());
    let actions: Vec<Action> = f.drain();
    assert!(f.t.peers.contains_key(&leecher));
    assert!(!f.t.peers.contains_key(&seed), "the seed was dropped");
    let _ = actions;
}

/// Two peers with every piece, unchoking us; the first gets all requests of a 2-piece torrent.
fn two_seeders() -> (Fixture, PeerKey, PeerKey, Vec<BlockRef>) {
    let mut f = Fixture::new(2);
    let first = f.peer(2, false);
    let second = f.peer(3, false);
    for p in [first, second] {
        f.t.handle_message(p, Message::Bitfield(Bitfield::full(2).as_bytes()), f.now);
    }
    f.t.handle_message(first, Message::Unchoke, f.now);
    let asked = requests(&f.drain(), first);
    assert_eq!(asked.len(), 4);
    (f, first, second, asked)
}

fn requests(actions: &[Action], key: PeerKey) -> Vec<BlockRef> {
    sends(actions, key)
        .into_iter()
        .filter_map(|m| match m {
            Outgoing::Request(b) => Some(b),
            _ => None,
        })
        .collect()
}

/// `peer` sends block `b` filled with 0xEE: data no piece holds.
fn send_bad_block(f: &mut Fixture, peer: PeerKey, b: BlockRef) {
    let data = vec![0xEE; b.length as usize];
    let message = Message::Piece {
        index: b.piece.get(),
        begin: b.offset,
        data: &data,
    };
    f.t.handle_message(peer, message, f.now);
}

/// A deep first queue (32 blocks) used to start 16 pieces at once, because pieces counted against
/// the memory budget only once their first block arrived. Now they count from their first
/// request: an idle peer may start the budget plus the headroom, and a busy one nothing past it.
#[test]
fn pieces_count_against_the_memory_budget_from_their_first_request() {
    let mut f = Fixture::new(100);
    let config = Config {
        max_unverified_bytes: PIECE,
        ..Config::default()
    };
    f.t = Torrent::new(
        f.t.layout.clone(),
        InfoHash([0xaa; 20]),
        Bitfield::new(100),
        config,
        1,
    );
    let p = f.peer(2, true);
    f.t.handle_message(p, Message::HaveAll, f.now);
    f.t.handle_message(p, Message::Unchoke, f.now);
    let asked = requests(&f.drain(), p);
    let pieces: HashSet<PieceIndex> = asked.iter().map(|b| b.piece).collect();
    assert_eq!(pieces.len() as u64, 1 + HEADROOM_PIECES, "{asked:?}");
    // One block in: the peer still has requests in flight, so no new piece may start.
    let b = asked[0];
    let start = (f.t.layout.piece_offset(b.piece) + u64::from(b.offset)) as usize;
    let data = f.content[start..start + b.length as usize].to_vec();
    f.t.handle_message(
        p,
        Message::Piece {
            index: b.piece.get(),
            begin: b.offset,
            data: &data,
        },
        f.now,
    );
    let more = requests(&f.drain(), p);
    assert!(
        more.iter().all(|b| pieces.contains(&b.piece)),
        "a new piece started past the budget: {more:?}"
    );
}

#[test]
fn unrequested_blocks_are_dropped_unseen_then_a_fault() {
    let (mut f, first, second, asked) = two_seeders();
    // The second peer slips a bad block into a piece the first is filling: it is not stored, so
    // the piece verifies with the first peer's data and nobody is blamed.
    send_bad_block(&mut f, second, asked[0]);
    assert!(faults(&f.drain()).is_empty(), "one is tolerated");
    assert_eq!(f.t.stats().wasted, u64::from(BLOCK_SIZE));
    let answers: Vec<Action> = asked
        .iter()
        .map(|b| Action::Send {
            peer: first,
            message: Outgoing::Request(*b),
        })
        .collect();
    assert!(f.run(answers, None).is_empty());
    assert!(f.t.is_complete());
    let events: Vec<Event> = std::iter::from_fn(|| f.t.poll_event()).collect();
    assert!(!events.iter().any(|e| matches!(e, Event::HashFailed { .. })));
    // Past the allowance, the sender is dropped.
    let (mut f, _, second, asked) = two_seeders();
    let mut dropped = Vec::new();
    for _ in 0..=UNREQUESTED_BLOCKS_ALLOWED {
        send_bad_block(&mut f, second, asked[1]);
        dropped.extend(faults(&f.drain()));
    }
    assert_eq!(
        dropped,
        vec![PeerFault::Misbehaved(Offence::UnrequestedBlocks(
            UNREQUESTED_BLOCKS_ALLOWED + 1
        ))]
    );
}

#[test]
fn a_late_answer_to_a_withdrawn_request_is_welcome() {
    let (mut f, first, _, asked) = two_seeders();
    f.now += Duration::from_secs(20);
    f.t.handle_timeout(f.now);
    let cancelled = sends(&f.drain(), first)
        .into_iter()
        .filter(|m| matches!(m, Outgoing::Cancel(_)))
        .count();
    assert_eq!(cancelled, 4);
    // The answers cross our cancels: all four are stored, none counts as unrequested.
    for b in &asked {
        let start = (f.t.layout.piece_offset(b.piece) + u64::from(b.offset)) as usize;
        let data = f.content[start..start + b.length as usize].to_vec();
        let msg = Message::Piece {
            index: b.piece.get(),
            begin: b.offset,
            data: &data,
        };
        f.t.handle_message(first, msg, f.now);
    }
    let actions = f.drain();
    assert!(faults(&actions).is_empty());
    let verify = actions
        .iter()
        .filter(|a| matches!(a, Action::VerifyPiece { .. }))
        .count();
    assert_eq!(verify, 2, "both pieces are complete");
}

#[test]
fn a_have_flood_is_cheap_and_bounded() {
    let pieces = 100;
    let mut f = Fixture::new(pieces);
    let p = f.peer(2, false);
    f.drain();
    let allowed = REDUNDANT_HAVES_ALLOWED.max(pieces as u32);
    let mut faulted_after = None;
    let mut output = 0;
    for i in 0..100_000u32 {
        f.t.handle_message(p, Message::Have(i % pieces as u32), f.now);
        let actions: Vec<Action> = std::iter::from_fn(|| f.t.poll_action()).collect();
        output += actions.len();
        if !faults(&actions).is_empty() {
            assert_eq!(
                faults(&actions),
                vec![PeerFault::Misbehaved(Offence::RedundantHaves(allowed + 1))]
            );
            faulted_after = Some(i + 1);
            break;
        }
    }
    // Every piece once, then the allowance of repeats, then one too many.
    assert_eq!(faulted_after, Some(pieces as u32 + allowed + 1));
    // The first `have` makes us interested; the peer still chokes us, so nothing else goes out.
    assert_eq!(output, 2, "interested, then the disconnect");
    f.t.check_invariants();
    // A `have` for a piece we have ourselves is no offence, and one past the end is.
    let mut f = Fixture::with_have(4, &[0]);
    let p = f.peer(2, false);
    f.t.handle_message(p, Message::Have(0), f.now);
    assert!(faults(&f.drain()).is_empty());
    f.t.handle_message(p, Message::Have(4), f.now);
    assert_eq!(
        faults(&f.drain()),
        vec![PeerFault::Misbehaved(Offence::HaveOutOfRange(4))]
    );
}

#[test]
fn a_peer_whose_requests_keep_timing_out_is_snubbed_then_dropped() {
    // A peer that accepts requests and then trickles (or sends nothing): each timeout cancels
    // what it holds; it stays at one request at a time, and is dropped at the third timeout.
    let mut f = Fixture::new(8);
    let slow = f.peer(2, false);
    f.t.handle_message(slow, Message::Bitfield(Bitfield::full(8).as_bytes()), f.now);
    f.t.handle_message(slow, Message::Unchoke, f.now);
    assert_eq!(requests(&f.drain(), slow).len(), 16);
    let timeout = Config::default().request_timeout;
    let mut dropped_at = None;
    for second in 1..=3 * timeout.as_secs() {
        f.now += Duration::from_secs(1);
        // Bytes of a block keep arriving, but never a whole message: the engine sees nothing.
        f.t.handle_timeout(f.now);
        let actions = f.drain();
        if !faults(&actions).is_empty() {
            assert_eq!(
                faults(&actions),
                vec![PeerFault::Useless("its requests keep timing out")]
            );
            dropped_at = Some(second);
            break;
        }
        let asked = requests(&actions, slow).len();
        if second % timeout.as_secs() == 0 {
            assert_eq!(asked, 1, "after a timeout, one request at a time");
        } else {
            assert_eq!(asked, 0, "{second}");
        }
    }
    assert_eq!(
        dropped_at,
        Some(u64::from(MAX_REQUEST_TIMEOUTS) * timeout.as_secs())
    );
    // A delivered block ends the snub.
    let mut f = Fixture::new(8);
    let p = f.peer(2, false);
    f.t.handle_message(p, Message::Bitfield(Bitfield::full(8).as_bytes()), f.now);
    f.t.handle_message(p, Message::Unchoke, f.now);
    f.drain();
    f.now += timeout;
    f.t.handle_timeout(f.now);
    let again = requests(&f.drain(), p);
    assert_eq!(again.len(), 1);
    f.now += Duration::from_secs(1);
    let actions = again
        .iter()
        .map(|b| Action::Send {
            peer: p,
            message: Outgoing::Request(*b),
        })
        .collect();
    f.run(actions, None);
    f.t.handle_timeout(f.now);
    assert!(
        f.drain().len() > 1 || f.t.is_complete(),
        "back to a full queue once it delivered"
    );
}

#[test]
fn a_banned_liars_leftover_blocks_do_not_cost_honest_peers_trust() {
    // Four-block pieces: the liar and the honest peer share pieces 2 and 3; the liar alone
    // fills pieces 0 and 1, fails both and is banned at once (−4 twice).
    let content: Vec<u8> = (0..4 * 4 * BLOCK_SIZE as usize)
        .map(|i| (i % 253) as u8)
        .collect();
    let layout = Layout::new(4 * u64::from(BLOCK_SIZE), [content.len() as u64]).unwrap();
    let mut f = Fixture {
        t: Torrent::new(
            layout,
            InfoHash([0xaa; 20]),
            Bitfield::new(4),
            Config::default(),
            1,
        ),
        content,
        now: Instant::ZERO,
    };
    let liar = f.peer(3, false);
    let honest = f.peer(2, false);
    for p in [liar, honest] {
        f.t.handle_message(p, Message::Bitfield(Bitfield::full(4).as_bytes()), f.now);
    }
    let block = |piece: u32, i: u32| BlockRef {
        piece: f.t.layout.piece(piece).unwrap(),
        offset: i * BLOCK_SIZE,
        length: BLOCK_SIZE,
    };
    let (b20, b30) = (block(2, 0), block(3, 0));
    f.t.handle_message(liar, Message::Unchoke, f.now);
    let asked = requests(&f.drain(), liar);
    assert!(asked.contains(&b20) && asked.contains(&b30), "{asked:?}");
    // The liar answers the first block of pieces 2 and 3 wrongly, and all of 0 and 1.
    let mut verify = Vec::new();
    for b in asked.iter().filter(|b| b.piece.get() < 2 || b.offset == 0) {
        send_bad_block(&mut f, liar, *b);
        verify.extend(f.drain());
    }
    for action in verify {
        if let Action::VerifyPiece { piece, data } = action {
            f.t.handle_piece_verified(piece, false, data, f.now);
        }
    }
    assert!(f.t.is_banned(IpAddr::from([127, 0, 0, 3])));
    f.drain();
    // The honest peer fills the rest of pieces 2 and 3, which then fail: the liar's fault only.
    f.t.handle_message(honest, Message::Unchoke, f.now);
    let actions = f.drain();
    f.run(actions, None);
    let honest_ip = IpAddr::from([127, 0, 0, 2]);
    assert!(!f.t.is_banned(honest_ip));
    // +1 for each of the four good pieces, nothing taken for the two the liar spoiled.
    assert_eq!(f.t.trust.get(&honest_ip), Some(&4));
    assert!(f.t.is_complete());
}

#[test]
fn selection_decides_interest_left_and_finishing() {
    use FilePriority::{High, Normal, Skip};
    // Four pieces; priorities, the pieces the peer has, then: are we interested, bytes left, finished.
    type Row = (&'static [FilePriority], &'static [u32], bool, u64, bool);
    let table: &[Row] = &[
        (&[], &[0, 1, 2, 3], true, 4 * PIECE, false),
        (
            &[Skip, Skip, Normal, Normal],
            &[0, 1],
            false,
            2 * PIECE,
            false,
        ),
        (
            &[Skip, Skip, Normal, Normal],
            &[1, 2],
            true,
            2 * PIECE,
            false,
        ),
        (&[High, Skip, Skip, Skip], &[1, 2, 3], false, PIECE, false),
        (&[Skip, Skip, Skip, Skip], &[0, 1, 2, 3], false, 0, true),
    ];
    for &(priorities, has, interested, left, finished) in table {
        let mut f = Fixture::new(4);
        f.t.set_piece_priorities(priorities, f.now);
        let p = f.peer(2, false);
        let mut bits = Bitfield::new(4);
        for &i in has {
            bits.set(i as usize);
        }
        f.t.handle_message(p, Message::Bitfield(bits.as_bytes()), f.now);
        let sent = sends(&f.drain(), p);
        assert_eq!(
            sent.contains(&Outgoing::Interested),
            interested,
            "{priorities:?} {has:?}"
        );
        assert_eq!(f.t.stats().left, left, "{priorities:?}");
        assert_eq!(f.t.is_finished(), finished, "{priorities:?}");
        let events: Vec<Event> = std::iter::from_fn(|| f.t.poll_event()).collect();
        assert_eq!(events.contains(&Event::Finished), finished);
    }
}

#[test]
fn priorities_change_at_runtime() {
    use FilePriority::{Normal, Skip};
    let mut f = Fixture::new(4);
    let p = f.peer_with_extensions(2);
    f.t.handle_message(p, Message::HaveAll, f.now);
    f.t.handle_message(p, Message::Unchoke, f.now);
    let requested: Vec<BlockRef> = sends(&f.drain(), p)
        .into_iter()
        .filter_map(|m| match m {
            Outgoing::Request(b) => Some(b),
            _ => None,
        })
        .collect();
    assert_eq!(requested.len(), 8, "every block of the four pieces");
    // Skipping pieces 0 and 1 cancels their requests and frees nothing else.
    f.t.set_piece_priorities(&[Skip, Skip, Normal, Normal], f.now);
    let actions = f.drain();
    let cancelled: Vec<u32> = sends(&actions, p)
        .into_iter()
        .filter_map(|m| match m {
            Outgoing::Cancel(b) => Some(b.piece.get()),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled, vec![0, 0, 1, 1]);
    assert_eq!(f.t.stats().left, 2 * PIECE);
    // Answer the remaining requests: the torrent finishes without being complete and tells the
    // peer it only uploads; the seed is left (both sides only upload).
    let remaining: Vec<Action> = requested
        .iter()
        .filter(|b| b.piece.get() >= 2)
        .map(|b| Action::Send {
            peer: p,
            message: Outgoing::Request(*b),
        })
        .collect();
    f.run(remaining, None);
    assert!(f.t.is_finished() && !f.t.is_complete());
    let events: Vec<Event> = std::iter::from_fn(|| f.t.poll_event()).collect();
    assert!(events.contains(&Event::Finished) && !events.contains(&Event::Complete));
    assert!(!f.t.peers.contains_key(&p), "the seed was left");
    // Wanting everything again: a new peer hears upload_only 0 and gets our interest.
    f.t.set_piece_priorities(&[], f.now);
    assert!(!f.t.is_finished());
    assert_eq!(f.t.stats().left, 2 * PIECE);
    let handshake = ExtensionHandshake::decode(&f.t.extension_handshake()).unwrap();
    assert!(!handshake.upload_only);
    assert!(
        f.t.extension_handshake()
            .windows(14)
            .any(|w| w == b"upload_onlyi0e")
    );
    let q = f.peer(3, false);
    f.t.handle_message(q, Message::Bitfield(Bitfield::full(4).as_bytes()), f.now);
    f.t.handle_message(q, Message::Unchoke, f.now);
    let actions = f.drain();
    assert!(sends(&actions, q).contains(&Outgoing::Interested));
    f.run(actions, None);
    assert!(f.t.is_complete());
    let events: Vec<Event> = std::iter::from_fn(|| f.t.poll_event()).collect();
    assert_eq!(
        &events[events.len() - 2..],
        &[Event::Finished, Event::Complete]
    );
}
