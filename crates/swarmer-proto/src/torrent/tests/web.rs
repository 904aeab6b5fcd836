//! Tests of web seeds as sources of the engine: runs of whole pieces sized to the seed's rate and
//! bounded by the memory budget, bytes in pieces of any size cut into blocks, sharing with peers,
//! endgame, back-off after failures, and dropping a seed whose data fails verification.

use super::*;
use crate::webseed::backoff;

/// A fixture of `pieces` pieces (two blocks each) whose web seeds' first fetch is `first` bytes.
fn fixture(pieces: u64, first: u64) -> Fixture {
    let mut f = Fixture::new(pieces);
    let config = Config {
        first_web_fetch: first,
        ..Config::default()
    };
    let layout = f.t.layout.clone();
    f.t = Torrent::new(
        layout,
        InfoHash([0xaa; 20]),
        Bitfield::new(pieces as usize),
        config,
        1,
    );
    f
}

/// The fetches in `actions`: (seed, offset, length).
fn fetches(actions: &[Action]) -> Vec<(WebSeedKey, u64, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::WebFetch {
                seed,
                offset,
                length,
            } => Some((*seed, *offset, *length)),
            _ => None,
        })
        .collect()
}

/// Hands over `length` bytes of the content from `offset`, with `flip` applied to each chunk.
fn serve(f: &mut Fixture, seed: WebSeedKey, offset: u64, length: u64, chunk: usize) {
    let data = f.content[offset as usize..(offset + length) as usize].to_vec();
    for c in data.chunks(chunk) {
        f.t.handle_web_data(seed, c, f.now);
    }
}

#[test]
fn a_web_seed_alone_downloads_everything_in_runs_of_whole_pieces() {
    let mut f = fixture(10, 3 * PIECE);
    let seed = f.t.add_web_seed(f.now);
    let actions = f.drain();
    // The first fetch: three whole pieces from the start, before any rate is known.
    assert_eq!(fetches(&actions), vec![(seed, 0, 3 * PIECE)]);
    assert_eq!(f.t.stats().web_seeds, 1);
    let faults = f.run(actions, None);
    assert!(faults.is_empty());
    assert!(f.t.is_complete());
    let stats = f.t.stats();
    assert_eq!((stats.downloaded, stats.wasted), (10 * PIECE, 0));
    let status = f.t.web_seed_status(seed).unwrap();
    assert_eq!(
        (status.downloaded, status.fetching, status.failures),
        (10 * PIECE, false, 0)
    );
}

#[test]
fn fetches_follow_the_measured_rate_within_bounds() {
    let mut f = fixture(400, PIECE);
    let seed = f.t.add_web_seed(f.now);
    let (_, offset, length) = fetches(&f.drain())[0];
    assert_eq!((offset, length), (0, PIECE));
    serve(&mut f, seed, offset, length, 7000);
    f.t.handle_web_fetch_end(seed, FetchEnd::Done, f.now);
    let (_, offset, length) = fetches(&f.drain())[0];
    assert_eq!(
        (offset, length),
        (PIECE, PIECE),
        "reads on where the last one ended"
    );
    serve(&mut f, seed, offset, length, 7000);
    // One second: 2 pieces received, a rate of 64 KiB/s, so 4 s of it is 8 pieces next.
    f.now += Duration::from_secs(1);
    f.t.handle_timeout(f.now);
    assert!(f.t.web_seed_status(seed).unwrap().sending);
    assert_eq!(f.t.stats().web_seeds_sending, 1);
    f.t.handle_web_fetch_end(seed, FetchEnd::Done, f.now);
    let actions = f.drain();
    assert_eq!(fetches(&actions), vec![(seed, 2 * PIECE, 8 * PIECE)]);
    f.run(actions, None);
}

#[test]
fn the_memory_budget_bounds_a_fetch() {
    let mut f = Fixture::new(400);
    let config = Config {
        max_unverified_bytes: 4 * PIECE,
        ..Config::default()
    };
    let layout = f.t.layout.clone();
    f.t = Torrent::new(layout, InfoHash([0xaa; 20]), Bitfield::new(400), config, 1);
    let seed = f.t.add_web_seed(f.now);
    // 1 MiB (32 pieces) wanted; 4 pieces of budget and 4 of headroom allowed.
    assert_eq!(
        fetches(&f.drain()),
        vec![(seed, 0, (4 + HEADROOM_PIECES) * PIECE)]
    );
    // A second seed finds the budget spent and waits.
    let other = f.t.add_web_seed(f.now);
    assert!(fetches(&f.drain()).is_empty());
    // Once the first seed's pieces are verified, the second reads on after them.
    serve(&mut f, seed, 0, 8 * PIECE, 16384);
    f.t.handle_web_fetch_end(seed, FetchEnd::Done, f.now);
    let actions = f.drain();
    f.run(actions, None);
    assert!(f.t.web_seed_status(other).unwrap().downloaded > 0);
}

#[test]
fn web_seed_and_peer_share_the_work_without_overlap() {
    let mut f = fixture(20, 4 * PIECE);
    let p = f.peer(2, true);
    f.drain();
    f.t.handle_message(p, Message::HaveAll, f.now);
    f.t.handle_message(p, Message::Unchoke, f.now);
    let mut actions = f.drain();
    let peer_blocks: Vec<BlockRef> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                message: Outgoing::Request(b),
                ..
            } => Some(*b),
            _ => None,
        })
        .collect();
    let seed = f.t.add_web_seed(f.now);
    actions.extend(f.drain());
    let (_, offset, length) = fetches(&actions)[0];
    let layout = f.t.layout.clone();
    for b in &peer_blocks {
        let at = layout.piece_offset(b.piece) + u64::from(b.offset);
        assert!(
            at + u64::from(b.length) <= offset || at >= offset + length,
            "{b:?} overlaps"
        );
    }
    assert!(f.run(actions, None).is_empty());
    assert!(f.t.is_complete());
    assert!(f.t.web_seed_status(seed).unwrap().downloaded > 0);
    // Only endgame duplicates are wasted.
    assert!(f.t.stats().wasted <= 2 * PIECE, "{}", f.t.stats().wasted);
}

#[test]
fn a_failed_fetch_gives_its_blocks_back_and_backs_off_exponentially() {
    let mut f = fixture(10, 4 * PIECE);
    let seed = f.t.add_web_seed(f.now);
    let (_, offset, _) = fetches(&f.drain())[0];
    // A piece and a half arrive, then the connection breaks.
    serve(&mut f, seed, offset, PIECE + PIECE / 2, 3000);
    f.t.handle_web_fetch_end(seed, FetchEnd::Failed { retry_after: None }, f.now);
    let actions = f.drain();
    assert!(
        matches!(actions[..], [Action::VerifyPiece { .. }]),
        "{actions:?}"
    );
    let status = f.t.web_seed_status(seed).unwrap();
    assert_eq!(status.failures, 1);
    assert_eq!(status.retry_at, Some(f.now + backoff(1)));
    // A peer may take the blocks given back at once.
    let p = f.peer(2, true);
    f.t.handle_message(p, Message::HaveAll, f.now);
    f.t.handle_message(p, Message::Unchoke, f.now);
    let requested: Vec<BlockRef> = f
        .drain()
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                message: Outgoing::Request(b),
                ..
            } => Some(*b),
            _ => None,
        })
        .collect();
    assert!(
        requested
            .iter()
            .any(|b| b.piece.get() == 1 && b.offset == BLOCK_SIZE)
    );
    f.t.remove_peer(p);
    f.drain();
    // No fetch while backed off; the tick after the wait starts one.
    f.now += backoff(1) - Duration::from_secs(1);
    f.t.handle_timeout(f.now);
    assert!(fetches(&f.drain()).is_empty());
    f.now += Duration::from_secs(1);
    f.t.handle_timeout(f.now);
    let (_, offset, length) = fetches(&f.drain())[0];
    // A truncated body (ended "done" but short) is a failure too, and the wait doubles; a server's
    // longer Retry-After wins.
    serve(&mut f, seed, offset, length - 1, 3000);
    f.t.handle_web_fetch_end(seed, FetchEnd::Done, f.now);
    f.drain();
    assert_eq!(
        f.t.web_seed_status(seed).unwrap().retry_at,
        Some(f.now + backoff(2))
    );
    f.now += backoff(2);
    f.t.handle_timeout(f.now);
    let (_, offset, length) = fetches(&f.drain())[0];
    serve(&mut f, seed, offset, length / 2, 3000);
    let asked = Duration::from_secs(3000);
    f.t.handle_web_fetch_end(
        seed,
        FetchEnd::Failed {
            retry_after: Some(asked),
        },
        f.now,
    );
    assert_eq!(
        f.t.web_seed_status(seed).unwrap().retry_at,
        Some(f.now + asked)
    );
    f.drain();
    // Bytes after the end of a fetch, or with no fetch, are wasted, never stored.
    let wasted = f.t.stats().wasted;
    f.t.handle_web_data(seed, &[1; 100], f.now);
    assert_eq!(f.t.stats().wasted, wasted + 100);
    f.drain();
}

#[test]
fn wrong_data_drops_the_seed_and_its_pieces_come_from_peers() {
    let mut f = fixture(6, 2 * PIECE);
    let seed = f.t.add_web_seed(f.now);
    let (_, offset, length) = fetches(&f.drain())[0];
    let mut data = f.content[offset as usize..(offset + length) as usize].to_vec();
    data[100] ^= 0xff;
    f.t.handle_web_data(seed, &data, f.now);
    let mut actions = f.drain();
    let mut dropped = Vec::new();
    while let Some(i) = actions
        .iter()
        .position(|a| matches!(a, Action::VerifyPiece { .. }))
    {
        let Action::VerifyPiece { piece, data } = actions.remove(i) else {
            unreachable!()
        };
        let start = f.t.layout.piece_offset(piece) as usize;
        let ok = sha1(&data) == sha1(&f.content[start..start + data.len()]);
        f.t.handle_piece_verified(piece, ok, data, f.now);
        for a in f.drain() {
            match a {
                Action::DropWebSeed { seed: s, fault } => dropped.push((s, fault)),
                a => actions.push(a),
            }
        }
    }
    assert_eq!(
        dropped,
        vec![(seed, PeerFault::Misbehaved(Offence::HashFailures))]
    );
    assert_eq!(f.t.web_seed_status(seed), None);
    assert_eq!(f.t.stats().web_seeds, 0);
    // Its late bytes and the end of its fetch are ignored.
    f.t.handle_web_fetch_end(seed, FetchEnd::Done, f.now);
    let events: Vec<Event> = std::iter::from_fn(|| f.t.poll_event()).collect();
    assert!(events.contains(&Event::HashFailed {
        piece: f.t.layout.piece(0).unwrap(),
        peers: vec![],
        web_seeds: vec![seed],
    }));
    // A peer finishes the download, the failed piece included, and is trusted.
    let p = f.peer(2, true);
    f.t.handle_message(p, Message::HaveAll, f.now);
    f.t.handle_message(p, Message::Unchoke, f.now);
    let actions = f.drain();
    assert!(f.run(actions, None).is_empty());
    assert!(f.t.is_complete());
    assert!(!f.t.is_banned(IpAddr::from([127, 0, 0, 2])));
}

#[test]
fn an_idle_web_seed_helps_in_endgame() {
    let mut f = fixture(2, 2 * PIECE);
    // A peer that never answers holds every block.
    let p = f.peer(2, true);
    f.t.handle_message(p, Message::HaveAll, f.now);
    f.t.handle_message(p, Message::Unchoke, f.now);
    f.drain();
    let seed = f.t.add_web_seed(f.now);
    let actions = f.drain();
    // Every piece is started, so the seed duplicates the rest of one piece.
    let fetched = fetches(&actions);
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].2, PIECE);
    f.run(actions, None);
    assert!(f.t.web_seed_status(seed).unwrap().downloaded >= PIECE);
    // Its blocks arrived first: the peer got cancels for them.
}

#[test]
fn removing_a_seed_gives_its_blocks_back() {
    let mut f = fixture(4, 4 * PIECE);
    let seed = f.t.add_web_seed(f.now);
    f.drain();
    f.t.remove_web_seed(seed);
    f.t.check_invariants();
    let p = f.peer(2, true);
    f.t.handle_message(p, Message::HaveAll, f.now);
    f.t.handle_message(p, Message::Unchoke, f.now);
    let actions = f.drain();
    assert!(f.run(actions, None).is_empty());
    assert!(f.t.is_complete());
}
