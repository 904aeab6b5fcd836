//! Piece and block picking (BEP 3, "piece downloading strategy"): higher [`FilePriority`] first, then
//! partially downloaded pieces finished first, then rarest first with random tie-breaks, and endgame mode
//! that requests the last blocks from several peers. Pieces of priority [`FilePriority::Skip`] are never
//! picked, and endgame starts when every *wanted* piece is started. The picker knows nothing of connections or time: it works on bitfields and counts, so tests are
//! tables of numbers.
//!
//! *Critical* pieces (those the engine holds a deadline for, libtorrent's time-critical pieces) are
//! left out of [`Picker::pick`] and its endgame altogether: the engine asks for them by name with
//! [`Picker::pick_critical`] and [`Picker::duplicate_request`], from the peers it chooses.
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
    /// Per piece: picked only by name ([`Picker::pick_critical`]), never by [`Picker::pick`].
    critical: Vec<bool>,
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
            critical: vec![false; n],
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
                if !peer_has.get(piece.as_usize())
                    || !self.priority[piece.as_usize()].is_wanted()
                    || self.critical[piece.as_usize()]
                {
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

    /// Picks a contiguous run of blocks for a source that has every piece and fetches byte ranges (a
    /// web seed), and returns its first and last block; the blocks taken (their requests counted) are
    /// appended to `out`. By priority, highest first: up to `max_pieces` new pieces in a row (at
    /// most `max_new_pieces`), from the start of the longest run of missing pieces, so a fetch is
    /// long and the next one likely reads on; else the free blocks of one partial piece (the most
    /// complete, from its first free block up to the next block not free); else, in endgame, the blocks not yet
    /// received of the partial piece with the fewest received, from its first to its last such
    /// block: blocks in that span already received, or at their duplicate limit, or already asked of
    /// this source (`already_requested`) are not taken, though their bytes come along.
    pub fn pick_run(
        &mut self,
        max_pieces: usize,
        max_new_pieces: usize,
        already_requested: impl Fn(BlockRef) -> bool,
        out: &mut Vec<BlockRef>,
    ) -> Option<(BlockRef, BlockRef)> {
        for level in [FilePriority::High, FilePriority::Normal, FilePriority::Low] {
            if max_new_pieces > 0 && max_pieces > 0 && self.unstarted > 0 {
                if let Some(run) = self.start_run(level, max_pieces.min(max_new_pieces), out) {
                    return Some(run);
                }
            }
            // Free blocks of a partial piece of this level: the most complete first.
            let partial = self
                .partials
                .iter()
                .filter(|(p, part)| {
                    self.priority[p.as_usize()] == level && part.blocks.contains(&0)
                })
                .max_by_key(|(p, part)| (part.received, std::cmp::Reverse(**p)))
                .map(|(p, _)| *p);
            if let Some(piece) = partial {
                let part = self.partials.get_mut(&piece).expect("listed");
                let first = part
                    .blocks
                    .iter()
                    .position(|b| *b == 0)
                    .expect("has a free block");
                let start = out.len();
                for i in first..part.blocks.len() {
                    if part.blocks[i] != 0 {
                        break;
                    }
                    part.blocks[i] = 1;
                    self.free_blocks -= 1;
                    out.push(self.layout.block(piece, i as u32).expect("block in piece"));
                }
                return Some((out[start], out[out.len() - 1]));
            }
        }
        if !self.in_endgame() {
            return None;
        }
        // Endgame: the partial piece with the most still to receive that this source can help.
        let eligible = |piece: PieceIndex, b: usize, state: u8| {
            state != RECEIVED
                && state < MAX_ENDGAME_DUPLICATES
                && self
                    .layout
                    .block(piece, b as u32)
                    .is_some_and(|block| !already_requested(block))
        };
        let piece = self
            .partials
            .iter()
            .filter(|(p, part)| {
                self.priority[p.as_usize()].is_wanted()
                    && part
                        .blocks
                        .iter()
                        .enumerate()
                        .any(|(b, s)| eligible(**p, b, *s))
            })
            .max_by_key(|(p, part)| {
                (
                    self.priority[p.as_usize()],
                    std::cmp::Reverse(part.received),
                    std::cmp::Reverse(**p),
                )
            })
            .map(|(p, _)| *p)?;
        let part = &self.partials[&piece];
        let first = part.blocks.iter().position(|s| *s != RECEIVED)?;
        let last = part.blocks.iter().rposition(|s| *s != RECEIVED)?;
        let take: Vec<usize> = (first..=last)
            .filter(|&b| eligible(piece, b, part.blocks[b]))
            .collect();
        let part = self.partials.get_mut(&piece).expect("listed");
        for b in take {
            part.blocks[b] += 1;
            out.push(self.layout.block(piece, b as u32).expect("block in piece"));
        }
        Some((
            self.layout.block(piece, first as u32)?,
            self.layout.block(piece, last as u32)?,
        ))
    }

    /// Starts up to `max` missing pieces of priority `level` in a row, from the start of the longest
    /// such run, takes all their blocks into `out` and returns the first and last.
    fn start_run(
        &mut self,
        level: FilePriority,
        max: usize,
        out: &mut Vec<BlockRef>,
    ) -> Option<(BlockRef, BlockRef)> {
        // The longest run of missing pieces of this level.
        let (mut best, mut run_start, mut run_len) = (None::<(usize, usize)>, 0, 0);
        for (i, (state, priority)) in self.state.iter().zip(&self.priority).enumerate() {
            if *state == PieceState::Missing && *priority == level {
                if run_len == 0 {
                    run_start = i;
                }
                run_len += 1;
                if best.is_none_or(|(_, len)| run_len > len) {
                    best = Some((run_start, run_len));
                }
            } else {
                run_len = 0;
            }
        }
        let (first, len) = best?;
        let start = out.len();
        for p in first..first + len.min(max) {
            let piece = PieceIndex::from_picker(p as u32);
            self.start_piece(piece);
            self.stale_entries += 1;
            self.take_free_blocks(piece, usize::MAX, out);
        }
        Some((out[start], out[out.len() - 1]))
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
        let (priority, critical) = (&self.priority, &self.critical);
        order.extend(
            self.partials
                .iter()
                .filter(|(p, part)| {
                    priority[p.as_usize()] == level
                        && !critical[p.as_usize()]
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
            if self.priority[p] == level && !self.critical[p] && peer_has.get(p) {
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

    /// Marks `piece` critical (`on`) or not: a critical piece is never picked by [`Picker::pick`],
    /// only by [`Picker::pick_critical`]. Its state and blocks are kept either way.
    pub fn set_critical(&mut self, piece: PieceIndex, on: bool) {
        self.critical[piece.as_usize()] = on;
    }

    /// True when `piece` is critical (see [`Picker::set_critical`]).
    pub fn is_critical(&self, piece: PieceIndex) -> bool {
        self.critical[piece.as_usize()]
    }

    /// True when `piece` is wanted and not started (no block requested or received yet).
    pub fn is_unstarted(&self, piece: PieceIndex) -> bool {
        self.state[piece.as_usize()] == PieceState::Missing && self.wants(piece)
    }

    /// Appends to `out` up to `max` free blocks of `piece`, starting it if it is missing, and
    /// returns how many. Nothing for a piece that is not wanted, verified or being verified. Meant
    /// for critical pieces, but works for any.
    pub fn pick_critical(
        &mut self,
        piece: PieceIndex,
        max: usize,
        out: &mut Vec<BlockRef>,
    ) -> usize {
        if max == 0 || !self.wants(piece) {
            return 0;
        }
        if self.state[piece.as_usize()] == PieceState::Missing {
            self.start_piece(piece);
            // It stays in `order` (if it is there) until the next compaction skips it.
            self.stale_entries += 1;
        }
        let before = out.len();
        self.take_free_blocks(piece, max, out);
        out.len() - before
    }

    /// Blocks of partial `piece` that are requested (from 1 to [`MAX_ENDGAME_DUPLICATES`] - 1
    /// times) and not yet received: the ones a late critical piece may ask of another peer.
    pub fn requested_blocks(&self, piece: PieceIndex) -> impl Iterator<Item = BlockRef> + '_ {
        let part = self.partials.get(&piece);
        part.into_iter().flat_map(move |part| {
            part.blocks
                .iter()
                .enumerate()
                .filter(|(_, s)| **s != 0 && **s != RECEIVED && **s < MAX_ENDGAME_DUPLICATES)
                .filter_map(move |(i, _)| self.layout.block(piece, i as u32))
        })
    }

    /// Counts one more outstanding request for `block`, which is already requested elsewhere (a
    /// late critical piece asked of a second peer). False, and nothing counted, when the block is
    /// free, received, not being downloaded, or at [`MAX_ENDGAME_DUPLICATES`] requests already.
    pub fn duplicate_request(&mut self, block: BlockRef) -> bool {
        let Some(part) = self.partials.get_mut(&block.piece) else {
            return false;
        };
        let state = &mut part.blocks[block.index_in_piece() as usize];
        if *state == 0 || *state == RECEIVED || *state >= MAX_ENDGAME_DUPLICATES {
            return false;
        }
        *state += 1;
        true
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
mod tests;
