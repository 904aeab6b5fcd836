//! Piece and block picking (BEP 3, "piece downloading strategy"): higher [`FilePriority`] first, then
//! partially downloaded pieces finished first, then rarest first with random tie-breaks, and endgame mode
//! that requests the last blocks from several peers. Pieces of priority [`FilePriority::Skip`] are never
//! picked, and endgame starts when every *wanted* piece is started. The picker knows nothing of connections or time: it works on bitfields and counts, so tests are
//! tables of numbers.
//!
//! Invariants (checked by [`Picker::check_invariants`] in tests):
//! - a piece is in exactly one state: missing, partial, verifying or have;
//! - `free_blocks` is the number of free blocks over all partial pieces that are wanted (priority other
//!   than `Skip`), `unstarted` the number of missing pieces that are wanted;
//! - a partial piece is wanted (a piece whose priority drops to `Skip` is abandoned by
//!   [`Picker::set_priorities`]);
//! - a block's request count only counts requests not yet answered, dropped or cancelled.

use std::collections::BTreeMap;

use rand::Rng;

use crate::{Bitfield, BlockRef, FilePriority, Layout, PieceIndex};

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
    /// Per piece: how much it is wanted; `Skip` pieces are never picked.
    priority: Vec<FilePriority>,
    /// Random tie-break key per piece, fixed at creation.
    tie: Vec<u32>,
    /// Missing wanted pieces sorted by (priority, highest first; availability; tie); rebuilt when
    /// priorities or whole bitfields changed, or after enough single `have`s (see
    /// [`Picker::increment_availability`]). Pieces started since are skipped, and dropped in one
    /// linear pass once they are many.
    order: Vec<u32>,
    order_dirty: bool,
    /// Single-piece availability changes (`have`s) of missing pieces not yet reflected in `order`.
    stale_haves: usize,
    /// Entries of `order` started since it was built or compacted.
    stale_entries: usize,
    /// Bit `as_u8()` set for every priority of a missing or partial piece, as of the last rebuild of
    /// `order`: the levels [`Picker::pick`] walks.
    levels: u8,
    /// Ordered, so picks are reproducible from the seed.
    partials: BTreeMap<PieceIndex, Partial>,
    /// Scratch space for ordering partial pieces in [`Picker::pick`].
    partial_order: Vec<(u32, PieceIndex)>,
    unstarted: usize,
    free_blocks: usize,
    have_count: u32,
}

impl Picker {
    /// A picker for a torrent of `layout` where the pieces in `have` are already verified; every piece
    /// is [`FilePriority::Normal`] until [`Picker::set_priorities`].
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
            priority: vec![FilePriority::Normal; n],
            tie: (0..n).map(|_| rng.r#gen()).collect(),
            order: Vec::new(),
            order_dirty: true,
            stale_haves: 0,
            stale_entries: 0,
            levels: 0,
            partials: BTreeMap::new(),
            partial_order: Vec::new(),
            unstarted,
            free_blocks: 0,
        }
    }

    /// Sets every piece's priority (`priorities` has one entry per piece; missing entries count as
    /// `Normal`). Partial pieces that become `Skip` are abandoned: their received blocks are forgotten
    /// and they become missing again. Returns those pieces, so the caller can cancel the requests it
    /// holds for them and free their buffers (blocks that still arrive for them are
    /// [`BlockOutcome::Unneeded`]).
    pub fn set_priorities(&mut self, priorities: &[FilePriority]) -> Vec<PieceIndex> {
        for (i, slot) in self.priority.iter_mut().enumerate() {
            *slot = priorities.get(i).copied().unwrap_or_default();
        }
        let abandoned: Vec<PieceIndex> = self
            .partials
            .keys()
            .copied()
            .filter(|p| !self.priority[p.as_usize()].is_wanted())
            .collect();
        for piece in &abandoned {
            self.partials.remove(piece);
            self.state[piece.as_usize()] = PieceState::Missing;
        }
        self.recount();
        self.order_dirty = true;
        abandoned
    }

    /// The priority of `piece`.
    pub fn priority(&self, piece: PieceIndex) -> FilePriority {
        self.priority[piece.as_usize()]
    }

    /// Recomputes `unstarted` and `free_blocks` from the per-piece state and priorities.
    fn recount(&mut self) {
        let priority = &self.priority;
        self.unstarted = self
            .state
            .iter()
            .zip(priority)
            .filter(|(s, p)| **s == PieceState::Missing && p.is_wanted())
            .count();
        self.free_blocks = self
            .partials
            .values()
            .map(|part| part.blocks.iter().filter(|b| **b == 0).count())
            .sum();
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

    /// A peer announced one more piece (`have`). The order of missing pieces is sorted again only
    /// after enough such changes (one per 256 missing pieces, at least 8): re-sorting 100,000
    /// pieces on every `have` cost 4 ms a pick, and rarest first needs the counts roughly right,
    /// not exact to the last `have`.
    pub fn increment_availability(&mut self, piece: PieceIndex) {
        let a = &mut self.availability[piece.as_usize()];
        *a = a.saturating_add(1);
        if self.state[piece.as_usize()] == PieceState::Missing {
            self.stale_haves += 1;
            if self.stale_haves >= self.resort_after() {
                self.order_dirty = true;
            }
        }
    }

    /// How many `have`s of missing pieces are let through before `order` is sorted again: one per 256
    /// pieces in it, at least 8, so the sort's cost per `have` stays small however large the torrent.
    fn resort_after(&self) -> usize {
        (self.order.len() / 256).max(8)
    }

    /// True when `piece` is verified.
    pub fn have(&self, piece: PieceIndex) -> bool {
        self.state[piece.as_usize()] == PieceState::Have
    }

    /// True when we still need `piece`: it is wanted (not `Skip`), not verified and not waiting for
    /// verification.
    pub fn wants(&self, piece: PieceIndex) -> bool {
        self.priority[piece.as_usize()].is_wanted()
            && matches!(
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
            .iter()
            .filter(|s| matches!(s, PieceState::Partial | PieceState::Verifying))
            .count()
    }

    /// The number of started pieces still downloading (not yet out for verification).
    pub fn partial_count(&self) -> usize {
        self.partials.len()
    }

    /// True when every wanted piece has been started and no free block of a wanted piece remains: the
    /// last blocks may be asked of several peers (endgame).
    pub fn in_endgame(&self) -> bool {
        self.unstarted == 0 && self.free_blocks == 0
    }

    /// Appends to `out` up to `max` blocks to request from a peer holding `peer_has`. `already_requested`
    /// tells whether this peer already has a block in flight (used in endgame). At most `max_new_pieces`
    /// new pieces are started (the caller's memory budget for unverified pieces).
    ///
    /// Order: free blocks of partial pieces first (highest priority, then most complete first), then
    /// blocks of new pieces (highest priority, then rarest first with random tie-breaks), then, in
    /// endgame, blocks already requested from other peers. Pieces of priority `Skip` are never picked.
    /// A `High` piece is not preempted by a `Low` partial: partials come first only within their
    /// priority, so a new `High` piece starts before `Low` partials are finished.
    pub fn pick(
        &mut self,
        peer_has: &Bitfield,
        max: usize,
        max_new_pieces: usize,
        already_requested: impl Fn(BlockRef) -> bool,
        out: &mut Vec<BlockRef>,
    ) {
        let mut new_pieces = max_new_pieces;
        let start = out.len();
        if max == 0 {
            return;
        }
        if self.order_dirty {
            self.rebuild_order();
        } else if self.stale_entries > self.order.len() / 8 {
            let state = &self.state;
            self.order
                .retain(|&p| state[p as usize] == PieceState::Missing);
            self.stale_entries = 0;
        }
        // Every priority present among wanted pieces, highest first; usually just one.
        let levels = self.levels;
        for level in [FilePriority::High, FilePriority::Normal, FilePriority::Low] {
            if levels & (1 << level.as_u8()) == 0 {
                continue;
            }
            self.pick_partials(level, peer_has, max, start, out);
            if out.len() - start == max {
                return;
            }
            if new_pieces > 0 {
                self.pick_new(level, peer_has, max, start, &mut new_pieces, out);
                if out.len() - start == max {
                    return;
                }
            }
        }
        // Endgame: duplicate requests for blocks still outstanding elsewhere.
        if self.in_endgame() {
            let mut candidates: Vec<BlockRef> = Vec::new();
            for (piece, part) in &self.partials {
                if !peer_has.get(piece.as_usize()) || !self.priority[piece.as_usize()].is_wanted() {
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
            // Least-requested blocks first, higher priority before lower.
            candidates.sort_by_key(|b| {
                (
                    std::cmp::Reverse(self.priority[b.piece.as_usize()]),
                    self.partials[&b.piece].blocks[b.index_in_piece() as usize],
                )
            });
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

    /// Free blocks of partial pieces of priority `level` that the peer has, the most complete piece
    /// first, so pieces finish and free their memory.
    fn pick_partials(
        &mut self,
        level: FilePriority,
        peer_has: &Bitfield,
        max: usize,
        start: usize,
        out: &mut Vec<BlockRef>,
    ) {
        if self.free_blocks == 0 {
            return;
        }
        // Runs after every received block: reuse one vector rather than allocate per call.
        let mut order = std::mem::take(&mut self.partial_order);
        order.clear();
        let priority = &self.priority;
        order.extend(
            self.partials
                .iter()
                .filter(|(p, part)| {
                    priority[p.as_usize()] == level
                        && peer_has.get(p.as_usize())
                        && part.received < part.blocks.len() as u32
                })
                .map(|(p, part)| (u32::MAX - part.received, *p)),
        );
        order.sort_unstable();
        for &(_, piece) in &order {
            self.take_free_blocks(piece, max - (out.len() - start), out);
            if out.len() - start == max {
                break;
            }
        }
        self.partial_order = order;
    }

    /// Starts new pieces of priority `level` that the peer has, rarest first, taking their blocks
    /// until `out` holds `max` blocks from `start` on or `new_pieces` (decremented) runs out.
    fn pick_new(
        &mut self,
        level: FilePriority,
        peer_has: &Bitfield,
        max: usize,
        start: usize,
        new_pieces: &mut usize,
        out: &mut Vec<BlockRef>,
    ) {
        if self.unstarted == 0 {
            return;
        }
        let mut i = 0;
        while i < self.order.len() && out.len() - start < max && *new_pieces > 0 {
            let p = self.order[i] as usize;
            if self.state[p] != PieceState::Missing {
                // Started since the last rebuild: passed over here (removing it would disturb the
                // order other priority levels walk next), dropped when `order` is compacted.
                i += 1;
                continue;
            }
            if self.priority[p] == level && peer_has.get(p) {
                let piece = PieceIndex::from_picker(p as u32);
                self.start_piece(piece);
                self.stale_entries += 1;
                *new_pieces -= 1;
                self.take_free_blocks(piece, max - (out.len() - start), out);
                // A started piece stays in `order` until the next pass removes it.
            }
            i += 1;
        }
    }

    fn rebuild_order(&mut self) {
        self.order.clear();
        let (state, priority) = (&self.state, &self.priority);
        self.order.extend((0..state.len() as u32).filter(|&p| {
            state[p as usize] == PieceState::Missing && priority[p as usize].is_wanted()
        }));
        let (availability, tie) = (&self.availability, &self.tie);
        self.order.sort_unstable_by_key(|&p| {
            (
                std::cmp::Reverse(priority[p as usize]),
                availability[p as usize],
                tie[p as usize],
            )
        });
        let mut levels = 0u8;
        for p in self
            .order
            .iter()
            .map(|&p| p as usize)
            .chain(self.partials.keys().map(|p| p.as_usize()))
        {
            levels |= 1 << priority[p].as_u8();
        }
        self.levels = levels;
        self.order_dirty = false;
        self.stale_haves = 0;
        self.stale_entries = 0;
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
            if self.priority[piece.as_usize()].is_wanted() {
                self.unstarted += 1;
            }
            self.order_dirty = true;
        }
    }

    /// Checks the invariants in the module documentation; panics with a description if one is broken.
    pub fn check_invariants(&self) {
        let missing = self
            .state
            .iter()
            .zip(&self.priority)
            .filter(|(s, p)| **s == PieceState::Missing && p.is_wanted())
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
            assert!(
                self.priority[piece.as_usize()].is_wanted(),
                "partial {piece:?} is skipped"
            );
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
}
