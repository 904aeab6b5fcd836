//! Piece and block picking (BEP 3, "piece downloading strategy"): rarest first with random tie-breaks,
//! partially downloaded pieces finished first, and endgame mode that requests the last blocks from several
//! peers. The picker knows nothing of connections or time: it works on bitfields and counts, so tests are
//! tables of numbers.
//!
//! Invariants (checked by [`Picker::check_invariants`] in tests):
//! - a piece is in exactly one state: missing, partial, verifying or have;
//! - `free_blocks` is the number of free blocks over all partial pieces, `unstarted` the number of
//!   missing pieces;
//! - a block's request count only counts requests not yet answered, dropped or cancelled.

use std::collections::BTreeMap;

use rand::Rng;

use crate::{Bitfield, BlockRef, Layout, PieceIndex};

/// How many peers may be asked for the same block at once in endgame mode.
pub const MAX_ENDGAME_DUPLICATES: u8 = 3;

const RECEIVED: u8 = u8::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PieceState {
    Missing,
    Partial,
    Verifying,
    Have,
}

/// Download state of the blocks of one piece that has been started.
#[derive(Debug, Clone)]
struct Partial {
    /// Per block: 0 = free, 1..=MAX_ENDGAME_DUPLICATES = outstanding requests, RECEIVED = received.
    blocks: Vec<u8>,
    received: u32,
}

/// What a received block meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOutcome {
    /// A block we still needed; `piece_complete` when it was the piece's last missing block, so the
    /// piece is now ready for verification.
    New {
        /// Every block of the piece has now been received.
        piece_complete: bool,
    },
    /// A block we already had, or of a piece not being downloaded: discard it.
    Unneeded,
}

/// Chooses which blocks to request from which peer.
#[derive(Debug, Clone)]
pub struct Picker {
    layout: Layout,
    state: Vec<PieceState>,
    availability: Vec<u16>,
    /// Random tie-break key per piece, fixed at creation.
    tie: Vec<u32>,
    /// Missing pieces sorted by (availability, tie); rebuilt when availability changed.
    order: Vec<u32>,
    order_dirty: bool,
    /// Ordered, so picks are reproducible from the seed.
    partials: BTreeMap<PieceIndex, Partial>,
    /// Scratch space for ordering partial pieces in [`Picker::pick`].
    partial_order: Vec<(u32, PieceIndex)>,
    unstarted: usize,
    free_blocks: usize,
    have_count: u32,
}

impl Picker {
    /// A picker for a torrent of `layout` where the pieces in `have` are already verified.
    pub fn new(layout: &Layout, have: &Bitfield, rng: &mut impl Rng) -> Picker {
        let n = layout.piece_count() as usize;
        let state: Vec<_> = (0..n)
            .map(|i| {
                if have.get(i) {
                    PieceState::Have
                } else {
                    PieceState::Missing
                }
            })
            .collect();
        let unstarted = state.iter().filter(|s| **s == PieceState::Missing).count();
        Picker {
            layout: layout.clone(),
            have_count: (n - unstarted) as u32,
            state,
            availability: vec![0; n],
            tie: (0..n).map(|_| rng.r#gen()).collect(),
            order: Vec::new(),
            order_dirty: true,
            partials: BTreeMap::new(),
            partial_order: Vec::new(),
            unstarted,
            free_blocks: 0,
        }
    }

    /// A peer announced all pieces in `pieces` (a `bitfield`, or `have all`).
    pub fn add_availability(&mut self, pieces: &Bitfield) {
        for i in pieces.iter_ones() {
            self.availability[i] = self.availability[i].saturating_add(1);
        }
        self.order_dirty = true;
    }

    /// A peer that had `pieces` went away.
    pub fn remove_availability(&mut self, pieces: &Bitfield) {
        for i in pieces.iter_ones() {
            self.availability[i] = self.availability[i].saturating_sub(1);
        }
        self.order_dirty = true;
    }

    /// A peer announced one more piece (`have`).
    pub fn increment_availability(&mut self, piece: PieceIndex) {
        let a = &mut self.availability[piece.as_usize()];
        *a = a.saturating_add(1);
        if self.state[piece.as_usize()] == PieceState::Missing {
            self.order_dirty = true;
        }
    }

    /// True when `piece` is verified.
    pub fn have(&self, piece: PieceIndex) -> bool {
        self.state[piece.as_usize()] == PieceState::Have
    }

    /// True when we still need `piece` (not verified and not waiting for verification).
    pub fn wants(&self, piece: PieceIndex) -> bool {
        matches!(
            self.state[piece.as_usize()],
            PieceState::Missing | PieceState::Partial
        )
    }

    /// The number of verified pieces.
    pub fn have_count(&self) -> u32 {
        self.have_count
    }

    /// The number of started, unverified pieces (partial or verifying).
    pub fn in_progress_count(&self) -> usize {
        self.state
            .len()
            .saturating_sub(self.unstarted + self.have_count as usize)
    }

    /// True when every piece has been started and no free block remains: the last blocks may be asked
    /// of several peers (endgame).
    pub fn in_endgame(&self) -> bool {
        self.unstarted == 0 && self.free_blocks == 0
    }

    /// Appends to `out` up to `max` blocks to request from a peer holding `peer_has`. `already_requested`
    /// tells whether this peer already has a block in flight (used in endgame). New pieces are only started
    /// when `may_start_new` (the caller's memory budget for unverified pieces).
    ///
    /// Order: free blocks of partial pieces first (most complete first), then blocks of new pieces, rarest
    /// first with random tie-breaks, then, in endgame, blocks already requested from other peers.
    pub fn pick(
        &mut self,
        peer_has: &Bitfield,
        max: usize,
        may_start_new: bool,
        already_requested: impl Fn(BlockRef) -> bool,
        out: &mut Vec<BlockRef>,
    ) {
        let start = out.len();
        let want = |out: &Vec<BlockRef>| out.len() - start < max;
        if max == 0 {
            return;
        }
        // 1. Partial pieces, the most complete first, so pieces finish and free their memory.
        if self.free_blocks > 0 {
            // Runs after every received block: reuse one vector rather than allocate per call.
            let mut order = std::mem::take(&mut self.partial_order);
            order.clear();
            order.extend(
                self.partials
                    .iter()
                    .filter(|(p, part)| {
                        peer_has.get(p.as_usize()) && part.received < part.blocks.len() as u32
                    })
                    .map(|(p, part)| (u32::MAX - part.received, *p)),
            );
            order.sort_unstable();
            for &(_, piece) in &order {
                self.take_free_blocks(piece, max - (out.len() - start), out);
                if !want(out) {
                    break;
                }
            }
            self.partial_order = order;
            if !want(out) {
                return;
            }
        }
        // 2. New pieces, rarest first.
        if may_start_new && self.unstarted > 0 {
            if self.order_dirty {
                self.rebuild_order();
            }
            let mut i = 0;
            while i < self.order.len() && want(out) {
                let p = self.order[i] as usize;
                if self.state[p] != PieceState::Missing {
                    // Started since the last rebuild: drop it from the order.
                    self.order.swap_remove(i);
                    // swap_remove breaks the sort locally; a rebuild restores it next time.
                    self.order_dirty = true;
                    continue;
                }
                if peer_has.get(p) {
                    let piece = PieceIndex::from_picker(p as u32);
                    self.start_piece(piece);
                    self.take_free_blocks(piece, max - (out.len() - start), out);
                    // A started piece stays in `order` until the next pass removes it.
                }
                i += 1;
            }
            if !want(out) {
                return;
            }
        }
        // 3. Endgame: duplicate requests for blocks still outstanding elsewhere.
        if self.in_endgame() {
            let mut candidates: Vec<BlockRef> = Vec::new();
            for (piece, part) in &self.partials {
                if !peer_has.get(piece.as_usize()) {
                    continue;
                }
                for (i, state) in part.blocks.iter().enumerate() {
                    if *state != RECEIVED && *state < MAX_ENDGAME_DUPLICATES {
                        if let Some(block) = self.layout.block(*piece, i as u32) {
                            if !already_requested(block) && !out[start..].contains(&block) {
                                candidates.push(block);
                            }
                        }
                    }
                }
            }
            // Least-requested blocks first.
            candidates.sort_by_key(|b| self.partials[&b.piece].blocks[b.index_in_piece() as usize]);
            for block in candidates.into_iter().take(max - (out.len() - start)) {
                let part = self
                    .partials
                    .get_mut(&block.piece)
                    .expect("candidate is partial");
                part.blocks[block.index_in_piece() as usize] += 1;
                out.push(block);
            }
        }
    }

    fn rebuild_order(&mut self) {
        self.order.clear();
        self.order.extend(
            (0..self.state.len() as u32).filter(|&p| self.state[p as usize] == PieceState::Missing),
        );
        let (availability, tie) = (&self.availability, &self.tie);
        self.order
            .sort_unstable_by_key(|&p| (availability[p as usize], tie[p as usize]));
        self.order_dirty = false;
    }

    fn start_piece(&mut self, piece: PieceIndex) {
        let blocks = self.layout.block_count(piece);
        self.state[piece.as_usize()] = PieceState::Partial;
        self.unstarted -= 1;
        self.free_blocks += blocks as usize;
        self.partials.insert(
            piece,
            Partial {
                blocks: vec![0; blocks as usize],
                received: 0,
            },
        );
    }

    fn take_free_blocks(&mut self, piece: PieceIndex, max: usize, out: &mut Vec<BlockRef>) {
        let Some(part) = self.partials.get_mut(&piece) else {
            return;
        };
        let mut taken = 0;
        for (i, state) in part.blocks.iter_mut().enumerate() {
            if taken == max {
                break;
            }
            if *state == 0 {
                *state = 1;
                taken += 1;
                out.push(self.layout.block(piece, i as u32).expect("block in piece"));
            }
        }
        self.free_blocks -= taken;
    }

    /// A request for `block` will not be answered (cancelled, rejected, choked, timed out, peer gone):
    /// the block becomes free again unless another request for it is still outstanding.
    pub fn request_dropped(&mut self, block: BlockRef) {
        if let Some(part) = self.partials.get_mut(&block.piece) {
            let state = &mut part.blocks[block.index_in_piece() as usize];
            if *state != RECEIVED && *state > 0 {
                *state -= 1;
                if *state == 0 {
                    self.free_blocks += 1;
                }
            }
        }
    }

    /// `block` arrived (from a request, or unasked while still needed).
    pub fn block_received(&mut self, block: BlockRef) -> BlockOutcome {
        let Some(part) = self.partials.get_mut(&block.piece) else {
            return BlockOutcome::Unneeded;
        };
        let state = &mut part.blocks[block.index_in_piece() as usize];
        if *state == RECEIVED {
            return BlockOutcome::Unneeded;
        }
        if *state == 0 {
            self.free_blocks -= 1;
        }
        *state = RECEIVED;
        part.received += 1;
        let piece_complete = part.received == part.blocks.len() as u32;
        if piece_complete {
            self.partials.remove(&block.piece);
            self.state[block.piece.as_usize()] = PieceState::Verifying;
        }
        BlockOutcome::New { piece_complete }
    }

    /// Whether `block` has already been received (or its piece is past downloading).
    pub fn block_needed(&self, block: BlockRef) -> bool {
        match self.partials.get(&block.piece) {
            Some(part) => part.blocks[block.index_in_piece() as usize] != RECEIVED,
            None => false,
        }
    }

    /// How many outstanding requests `block` has (0 if free or received).
    pub fn request_count(&self, block: BlockRef) -> u8 {
        match self.partials.get(&block.piece) {
            Some(part) => match part.blocks[block.index_in_piece() as usize] {
                RECEIVED => 0,
                n => n,
            },
            None => 0,
        }
    }

    /// The result of hashing a piece handed out by [`BlockOutcome::New`] with `piece_complete`: a good
    /// piece is kept, a bad one is downloaded again from scratch.
    pub fn piece_verified(&mut self, piece: PieceIndex, ok: bool) {
        debug_assert_eq!(self.state[piece.as_usize()], PieceState::Verifying);
        if ok {
            self.state[piece.as_usize()] = PieceState::Have;
            self.have_count += 1;
        } else {
            self.state[piece.as_usize()] = PieceState::Missing;
            self.unstarted += 1;
            self.order_dirty = true;
        }
    }

    /// Checks the invariants in the module documentation; panics with a description if one is broken.
    pub fn check_invariants(&self) {
        let missing = self
            .state
            .iter()
            .filter(|s| **s == PieceState::Missing)
            .count();
        assert_eq!(missing, self.unstarted, "unstarted count");
        let have = self
            .state
            .iter()
            .filter(|s| **s == PieceState::Have)
            .count();
        assert_eq!(have as u32, self.have_count, "have count");
        let free: usize = self
            .partials
            .values()
            .map(|p| p.blocks.iter().filter(|b| **b == 0).count())
            .sum();
        assert_eq!(free, self.free_blocks, "free block count");
        for (piece, part) in &self.partials {
            assert_eq!(self.state[piece.as_usize()], PieceState::Partial);
            let received = part.blocks.iter().filter(|b| **b == RECEIVED).count();
            assert_eq!(
                received as u32, part.received,
                "received count of {piece:?}"
            );
        }
        for (i, s) in self.state.iter().enumerate() {
            if *s == PieceState::Partial {
                let p = PieceIndex::from_picker(i as u32);
                assert!(
                    self.partials.contains_key(&p),
                    "partial {i} has no block state"
                );
            }
        }
    }
}

impl PieceIndex {
    /// Picker-internal construction: `i` comes from the picker's own per-piece tables, which have exactly
    /// `piece_count` entries.
    fn from_picker(i: u32) -> PieceIndex {
        crate::layout::piece_index_unchecked(i)
    }
}

#[cfg(test)]
mod tests {
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
        p.pick(has, max, true, |_| false, &mut out);
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
            true,
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
        p.pick(&all, 10, true, |_| false, &mut b);
        assert_eq!(b.len(), 4);
        // Peer A itself gets nothing new: it already requested all of them.
        let mut again = Vec::new();
        p.pick(&all, 10, true, |blk| a.contains(&blk), &mut again);
        assert!(again.is_empty());
        // The duplicate cap holds.
        for _ in 0..5 {
            let mut c = Vec::new();
            p.pick(&all, 10, true, |_| false, &mut c);
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
        p.pick(&all, 10, false, |_| false, &mut out);
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
            p.pick(peer, 3, true, |b| outstanding.contains(&b), &mut out);
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
}
