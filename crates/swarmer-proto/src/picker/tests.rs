//! Tests of the piece picker (BEP 3 piece downloading strategy): rarest first with seeded tie-breaks,
//! partial pieces first, endgame, the memory budget, file priorities, and random rounds that keep
//! its invariants.

use super::*;
use crate::BLOCK_SIZE;
use rand::SeedableRng;
use rand::rngs::SmallRng;

fn setup(pieces: u64, blocks_per_piece: u64) -> (Layout, Picker) {
    let piece_len = blocks_per_piece * u64::from(BLOCK_SIZE);
    let layout = Layout::new(piece_len, [pieces * piece_len]).unwrap();
    let have = Bitfield::new(pieces as usize);
    let picker = Picker::new(&layout, &have, &mut SmallRng::seed_from_u64(7));
    (layout, picker)
}

fn bits(n: usize, ones: &[usize]) -> Bitfield {
    let mut b = Bitfield::new(n);
    for &i in ones {
        b.set(i);
    }
    b
}

fn pick(p: &mut Picker, has: &Bitfield, max: usize) -> Vec<BlockRef> {
    let mut out = Vec::new();
    p.pick(has, max, usize::MAX, |_| false, &mut out);
    p.check_invariants();
    out
}

#[test]
fn rarest_piece_first() {
    let (_, mut p) = setup(4, 1);
    // Availability: piece 0: 3 peers, 1: 2, 2: 1, 3: 2.
    p.add_availability(&bits(4, &[0, 1, 2, 3]));
    p.add_availability(&bits(4, &[0, 1, 3]));
    p.add_availability(&bits(4, &[0]));
    let all = Bitfield::full(4);
    let order: Vec<u32> = pick(&mut p, &all, 4)
        .iter()
        .map(|b| b.piece.get())
        .collect();
    assert_eq!(order[0], 2);
    assert_eq!(order[3], 0);
    assert!(order[1..3].contains(&1) && order[1..3].contains(&3));
}

/// `have`s re-sort the order in batches (at least 8), not one by one; once a batch is in, rarest
/// first holds again, and pieces started meanwhile are skipped, never picked twice.
#[test]
fn haves_reorder_the_pieces_in_batches() {
    let (_, mut p) = setup(20, 1);
    let all = Bitfield::full(20);
    p.add_availability(&all);
    // Pieces 0..12 become common: 12 haves, past the batch of 8.
    for i in 0..12 {
        p.increment_availability(crate::layout::piece_index_unchecked(i));
    }
    let first: Vec<u32> = pick(&mut p, &all, 8)
        .iter()
        .map(|b| b.piece.get())
        .collect();
    assert!(
        first.iter().all(|&i| i >= 12),
        "rarest first after the batch: {first:?}"
    );
    // The next pick walks past the started pieces without a re-sort.
    let next: Vec<u32> = pick(&mut p, &all, 12)
        .iter()
        .map(|b| b.piece.get())
        .collect();
    let mut all_picked: Vec<u32> = first.iter().chain(&next).copied().collect();
    all_picked.sort_unstable();
    all_picked.dedup();
    assert_eq!(
        all_picked.len(),
        20,
        "every piece exactly once: {first:?} {next:?}"
    );
}

#[test]
fn ties_are_broken_randomly_but_deterministically_per_seed() {
    let layout = Layout::new(u64::from(BLOCK_SIZE), [64 * u64::from(BLOCK_SIZE)]).unwrap();
    let first_pick = |seed| {
        let mut p = Picker::new(
            &layout,
            &Bitfield::new(64),
            &mut SmallRng::seed_from_u64(seed),
        );
        p.add_availability(&Bitfield::full(64));
        pick(&mut p, &Bitfield::full(64), 1)[0].piece.get()
    };
    assert_eq!(first_pick(1), first_pick(1));
    let distinct: std::collections::HashSet<u32> = (0..20).map(first_pick).collect();
    assert!(
        distinct.len() > 5,
        "tie-breaks are not random: {distinct:?}"
    );
}

#[test]
fn partial_pieces_are_finished_first() {
    let (layout, mut p) = setup(3, 4);
    p.add_availability(&Bitfield::full(3));
    let all = Bitfield::full(3);
    let first = pick(&mut p, &all, 2);
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].piece, first[1].piece);
    let started = first[0].piece;
    // Another peer gets the rest of the started piece before anything new.
    let next = pick(&mut p, &all, 2);
    assert!(next.iter().all(|b| b.piece == started));
    // A peer that lacks the started piece gets a new one.
    let other = (0..3).find(|&i| i != started.get()).unwrap() as usize;
    let next = pick(&mut p, &bits(3, &[other]), 1);
    assert_eq!(next[0].piece.get() as usize, other);
    assert_eq!(layout.block_count(started), 4);
}

#[test]
fn piece_completes_and_failed_piece_is_fetched_again() {
    let (_, mut p) = setup(1, 2);
    let all = Bitfield::full(1);
    p.add_availability(&all);
    let blocks = pick(&mut p, &all, 10);
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        p.block_received(blocks[0]),
        BlockOutcome::New {
            piece_complete: false
        }
    );
    assert_eq!(p.block_received(blocks[0]), BlockOutcome::Unneeded);
    assert_eq!(
        p.block_received(blocks[1]),
        BlockOutcome::New {
            piece_complete: true
        }
    );
    p.check_invariants();
    assert!(pick(&mut p, &all, 10).is_empty());
    p.piece_verified(blocks[0].piece, false);
    p.check_invariants();
    assert_eq!(pick(&mut p, &all, 10).len(), 2);
    p.block_received(blocks[0]);
    p.block_received(blocks[1]);
    p.piece_verified(blocks[0].piece, true);
    p.check_invariants();
    assert!(p.have(blocks[0].piece));
    assert_eq!(p.have_count(), 1);
}

#[test]
fn dropped_requests_are_picked_again() {
    let (_, mut p) = setup(1, 4);
    let all = Bitfield::full(1);
    p.add_availability(&all);
    let blocks = pick(&mut p, &all, 4);
    assert!(p.in_endgame());
    p.request_dropped(blocks[2]);
    assert!(!p.in_endgame());
    let mut again = Vec::new();
    let dropped = blocks[2];
    p.pick(
        &all,
        4,
        usize::MAX,
        |b| b != dropped && blocks.contains(&b),
        &mut again,
    );
    assert_eq!(again, vec![dropped]);
    p.check_invariants();
}

#[test]
fn endgame_duplicates_outstanding_blocks_for_other_peers_only() {
    let (_, mut p) = setup(2, 2);
    let all = Bitfield::full(2);
    p.add_availability(&all);
    let a = pick(&mut p, &all, 10);
    assert_eq!(a.len(), 4);
    assert!(p.in_endgame());
    // Peer B gets duplicates of everything A has outstanding.
    let mut b = Vec::new();
    p.pick(&all, 10, usize::MAX, |_| false, &mut b);
    assert_eq!(b.len(), 4);
    // Peer A itself gets nothing new: it already requested all of them.
    let mut again = Vec::new();
    p.pick(&all, 10, usize::MAX, |blk| a.contains(&blk), &mut again);
    assert!(again.is_empty());
    // The duplicate cap holds.
    for _ in 0..5 {
        let mut c = Vec::new();
        p.pick(&all, 10, usize::MAX, |_| false, &mut c);
    }
    assert!(
        a.iter()
            .all(|blk| p.request_count(*blk) <= MAX_ENDGAME_DUPLICATES)
    );
    p.check_invariants();
}

#[test]
fn memory_budget_stops_new_pieces() {
    let (_, mut p) = setup(2, 1);
    let all = Bitfield::full(2);
    p.add_availability(&all);
    let mut out = Vec::new();
    p.pick(&all, 10, 0, |_| false, &mut out);
    assert!(out.is_empty());
}

#[test]
fn a_thousand_random_rounds_keep_invariants_and_finish() {
    // Random peers, drops and verification failures: the picker always finishes (never stalls at 99 %).
    let (layout, mut p) = setup(40, 3);
    let mut rng = SmallRng::seed_from_u64(99);
    let peers: Vec<Bitfield> = (0..4)
        .map(|_| {
            let mut b = Bitfield::new(40);
            for i in 0..40 {
                if rng.gen_bool(0.6) {
                    b.set(i);
                }
            }
            b
        })
        .collect();
    let mut union = Bitfield::new(40);
    for b in &peers {
        p.add_availability(b);
        for i in b.iter_ones() {
            union.set(i);
        }
    }
    let mut outstanding: Vec<BlockRef> = Vec::new();
    for round in 0..100_000 {
        if p.have_count() as usize == union.count_ones() {
            break;
        }
        assert!(round < 99_999, "stalled");
        let peer = &peers[rng.gen_range(0..peers.len())];
        let mut out = Vec::new();
        p.pick(peer, 3, usize::MAX, |b| outstanding.contains(&b), &mut out);
        outstanding.extend(out);
        if outstanding.is_empty() {
            continue;
        }
        let i = rng.gen_range(0..outstanding.len());
        let block = outstanding.swap_remove(i);
        if rng.gen_bool(0.2) {
            p.request_dropped(block);
        } else if let BlockOutcome::New {
            piece_complete: true,
        } = p.block_received(block)
        {
            // Drop every other outstanding duplicate of this piece.
            let (dups, rest): (Vec<_>, Vec<_>) =
                outstanding.iter().partition(|b| b.piece == block.piece);
            outstanding = rest;
            for d in dups {
                p.request_dropped(d);
            }
            p.piece_verified(block.piece, rng.gen_bool(0.9));
        }
        p.check_invariants();
    }
    assert_eq!(p.have_count() as usize, union.count_ones());
    assert_eq!(layout.piece_count(), 40);
}

fn picked_pieces(p: &mut Picker, has: &Bitfield, max: usize) -> Vec<u32> {
    pick(p, has, max).iter().map(|b| b.piece.get()).collect()
}

#[test]
fn priorities_order_and_skip_pieces() {
    use FilePriority::*;
    // One block per piece; every peer has every piece, so only priority and rarity decide.
    // Columns: priorities of pieces 0..4, availability, expected picks in order (one pick of 4).
    let table: &[(&[FilePriority], &[u16], &[u32])] = &[
        (
            &[Normal, Normal, Normal, Normal],
            &[4, 3, 2, 1],
            &[3, 2, 1, 0],
        ),
        (&[Skip, Normal, Skip, Normal], &[1, 2, 1, 3], &[1, 3]),
        (&[Low, High, Normal, Skip], &[1, 3, 1, 1], &[1, 2, 0]),
        (&[High, Low, Low, High], &[3, 1, 2, 1], &[3, 0, 1, 2]),
        (&[Skip, Skip, Skip, Skip], &[1, 1, 1, 1], &[]),
    ];
    for (priorities, availability, expected) in table {
        let (_, mut p) = setup(4, 1);
        for (i, &a) in availability.iter().enumerate() {
            for _ in 0..a {
                p.increment_availability(PieceIndex::from_picker(i as u32));
            }
        }
        assert!(p.set_priorities(priorities).is_empty());
        p.check_invariants();
        let got = picked_pieces(&mut p, &Bitfield::full(4), 4);
        assert_eq!(&got, expected, "priorities {priorities:?}");
        // Endgame covers wanted pieces only: another peer gets duplicates of those, never a
        // skipped piece.
        assert!(p.in_endgame());
        let mut dups = picked_pieces(&mut p, &Bitfield::full(4), 4);
        dups.sort_unstable();
        let mut wanted = expected.to_vec();
        wanted.sort_unstable();
        assert_eq!(dups, wanted, "endgame with priorities {priorities:?}");
    }
}

#[test]
fn a_high_piece_starts_before_low_partials_finish() {
    use FilePriority::*;
    let (_, mut p) = setup(2, 4);
    p.add_availability(&Bitfield::full(2));
    p.set_priorities(&[Low, Low]);
    let first = pick(&mut p, &Bitfield::full(2), 2);
    let started = first[0].piece;
    let other = 1 - started.get();
    let mut prio = [Low, Low];
    prio[other as usize] = High;
    assert!(p.set_priorities(&prio).is_empty());
    assert_eq!(picked_pieces(&mut p, &Bitfield::full(2), 4), vec![other; 4]);
    assert_eq!(
        picked_pieces(&mut p, &Bitfield::full(2), 2),
        vec![started.get(); 2]
    );
}

#[test]
fn skipping_a_partial_piece_abandons_it_and_unskipping_fetches_it() {
    use FilePriority::*;
    let (_, mut p) = setup(2, 2);
    let all = Bitfield::full(2);
    p.add_availability(&all);
    p.set_priorities(&[Normal, Skip]);
    let blocks = pick(&mut p, &all, 10);
    assert_eq!(blocks.len(), 2);
    assert!(blocks.iter().all(|b| b.piece.get() == 0));
    p.block_received(blocks[0]);
    assert_eq!(
        p.set_priorities(&[Skip, Normal]),
        vec![PieceIndex::from_picker(0)]
    );
    p.check_invariants();
    assert!(!p.wants(PieceIndex::from_picker(0)));
    // A late block of the abandoned piece is not needed; its request count is gone.
    assert_eq!(p.block_received(blocks[1]), BlockOutcome::Unneeded);
    assert_eq!(picked_pieces(&mut p, &all, 10), vec![1, 1]);
    p.set_priorities(&[Normal, Normal]);
    p.check_invariants();
    assert_eq!(picked_pieces(&mut p, &all, 2), vec![0, 0]);
}
