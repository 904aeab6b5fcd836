//! Time-critical pieces, as libtorrent's `set_piece_deadline`: a piece with a deadline is
//! requested before any other, from the peers fast enough for it, and asked of another peer once
//! its deadline has passed; the rest of the torrent keeps its rarest-first order (no switch to
//! sequential). A streaming reader, sequential download and first-and-last-piece priority are all
//! deadlines set by the driver.
//!
//! - **First**: `Torrent::fill_requests` gives a peer blocks of deadline pieces (earliest
//!   deadline first) before the picker's. While any piece has a deadline a peer's queue is kept to
//!   half a second of its rate (many peers, libtorrent among them, read every request into their
//!   send buffer at once and ignore a `cancel`, so what is in flight is served first); deadline
//!   blocks may take half a queue more, and a fast peer whose queue is full of other blocks has
//!   those beyond a quarter second cancelled (`make_way`) for peers that do honour it.
//! - **Fastest peers**: a peer takes blocks of a deadline piece that is not late only if its
//!   measured download rate is at least a [`FAST_PEER_SHARE`] of the fastest peer's, so a slow
//!   peer never holds a piece that is wanted soon. Before any rate is measured every peer is fast.
//! - **Late**: once a deadline has passed, any peer may take the piece's free blocks, and fast
//!   peers ask again for blocks outstanding elsewhere (at most [`MAX_ENDGAME_DUPLICATES`] requests
//!   a block, cancelled when one arrives), so a piece held by a slow or stalled peer comes from
//!   another. Lateness is noticed on the next block received or the next tick (at most a second).
//! - **Memory**: deadline pieces may start beyond the unverified-memory budget, up to the budget
//!   again (plus headroom): a stream is not held up by ordinary pieces filling it.
//! - A deadline ends when the piece is verified, or when the driver moves or clears it.
//!
//! [`MAX_ENDGAME_DUPLICATES`]: crate::picker::MAX_ENDGAME_DUPLICATES

use std::collections::{BTreeMap, BTreeSet};

use super::{HEADROOM_PIECES, PeerKey, Torrent};
use crate::picker::Picker;
use crate::time::Instant;
use crate::{BlockRef, PieceIndex};

/// The share of the fastest peer's download rate a peer needs to be given blocks of a deadline
/// piece before its deadline (libtorrent also keeps time-critical pieces off slow peers).
pub const FAST_PEER_SHARE: f64 = 0.25;

/// The pieces with a deadline, by piece and in deadline order.
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    by_piece: BTreeMap<PieceIndex, Instant>,
    order: BTreeSet<(Instant, PieceIndex)>,
}

impl Deadlines {
    fn insert(&mut self, piece: PieceIndex, at: Instant) {
        if let Some(old) = self.by_piece.insert(piece, at) {
            self.order.remove(&(old, piece));
        }
        self.order.insert((at, piece));
    }

    fn remove(&mut self, piece: PieceIndex) -> bool {
        match self.by_piece.remove(&piece) {
            Some(old) => {
                self.order.remove(&(old, piece));
                true
            }
            None => false,
        }
    }

    /// `piece`'s deadline, if it has one.
    pub(super) fn of(&self, piece: PieceIndex) -> Option<Instant> {
        self.by_piece.get(&piece).copied()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_piece.is_empty()
    }

    /// Checks that both indexes hold the same entries.
    pub(super) fn check(&self) {
        assert_eq!(self.by_piece.len(), self.order.len(), "deadline indexes");
        for (at, piece) in &self.order {
            assert_eq!(self.by_piece.get(piece), Some(at), "deadline of {piece:?}");
        }
    }
}

impl Torrent {
    /// Gives `piece` a deadline (libtorrent's `set_piece_deadline`), or moves the one it has: it is
    /// requested before every piece without one, earliest deadline first, from peers at least a
    /// [`FAST_PEER_SHARE`] as fast as the fastest, and from any peer (again, for blocks already
    /// requested) once `deadline` has passed. Returns false, and sets nothing, when the piece is
    /// verified already. A piece whose priority is `Skip` keeps its deadline but is not requested
    /// until it is wanted. The deadline ends when the piece is verified.
    pub fn set_piece_deadline(
        &mut self,
        piece: PieceIndex,
        deadline: Instant,
        now: Instant,
    ) -> bool {
        if self.have.get(piece.as_usize()) {
            return false;
        }
        self.deadlines.insert(piece, deadline);
        self.picker.set_critical(piece, true);
        self.fill_all(now);
        true
    }

    /// Clears `piece`'s deadline, if it has one: it goes back to the ordinary order (blocks already
    /// requested stay requested).
    pub fn clear_piece_deadline(&mut self, piece: PieceIndex, now: Instant) {
        if self.deadlines.remove(piece) {
            self.picker.set_critical(piece, false);
            self.fill_all(now);
        }
    }

    /// Clears every deadline.
    pub fn clear_piece_deadlines(&mut self, now: Instant) {
        let pieces: Vec<PieceIndex> = self.deadlines.by_piece.keys().copied().collect();
        for piece in pieces {
            self.deadlines.remove(piece);
            self.picker.set_critical(piece, false);
        }
        self.fill_all(now);
    }

    /// Makes `wanted` the deadlines, as [`Torrent::set_piece_deadline`] for each and
    /// [`Torrent::clear_piece_deadline`] for every other piece, with requests made once at the
    /// end: how a driver applies many deadlines at once (a reader's window, a sequential
    /// download). Verified pieces in `wanted` are left out.
    pub fn replace_piece_deadlines(
        &mut self,
        wanted: impl IntoIterator<Item = (PieceIndex, Instant)>,
        now: Instant,
    ) {
        let mut next = Deadlines::default();
        for (piece, at) in wanted {
            if !self.have.get(piece.as_usize()) {
                next.insert(piece, at);
            }
        }
        for piece in self.deadlines.by_piece.keys() {
            if !next.by_piece.contains_key(piece) {
                self.picker.set_critical(*piece, false);
            }
        }
        for piece in next.by_piece.keys() {
            self.picker.set_critical(*piece, true);
        }
        self.deadlines = next;
        self.fill_all(now);
    }

    /// `piece`'s deadline, if it has one.
    pub fn piece_deadline(&self, piece: PieceIndex) -> Option<Instant> {
        self.deadlines.by_piece.get(&piece).copied()
    }

    /// Every deadline, earliest first.
    pub fn piece_deadlines(&self) -> impl Iterator<Item = (PieceIndex, Instant)> + '_ {
        self.deadlines.order.iter().map(|&(at, piece)| (piece, at))
    }

    /// A verified piece needs its deadline no more.
    pub(super) fn deadline_met(&mut self, piece: PieceIndex) {
        if self.deadlines.remove(piece) {
            self.picker.set_critical(piece, false);
        }
    }

    /// Whether `key` is fast enough for deadline pieces that are not late.
    pub(super) fn fast_enough(&self, key: PeerKey) -> bool {
        let peer = &self.peers[&key];
        peer.timeouts == 0
            && (self.fastest_rate <= 0.0 || peer.down.rate >= self.fastest_rate * FAST_PEER_SHARE)
    }

    /// How many pieces may be started (partial or verifying) when the next is a deadline piece:
    /// the memory budget once more, so ordinary pieces cannot hold deadlines up.
    pub(super) fn deadline_budget(&self) -> u64 {
        2 * self.budget_pieces() + HEADROOM_PIECES
    }
}

/// One peer's view, for [`pick`].
pub(super) struct Asker<'a> {
    /// It is fast enough for deadline pieces that are not late ([`Torrent::fast_enough`]).
    pub(super) fast: bool,
    /// What it offers: its bitfield, or its allowed-fast pieces while it chokes us.
    pub(super) offered: &'a crate::Bitfield,
    /// Its outstanding requests.
    pub(super) in_flight: &'a std::collections::VecDeque<BlockRef>,
}

/// Appends to `out` up to `room` blocks of deadline pieces for `asker`, starting new pieces only
/// while fewer than `budget` are started, and returns the earliest deadline among them. See the
/// module documentation for who gets what.
pub(super) fn pick(
    deadlines: &Deadlines,
    picker: &mut Picker,
    asker: &Asker<'_>,
    (started, budget): (u64, u64),
    room: usize,
    now: Instant,
    out: &mut Vec<BlockRef>,
) -> Option<Instant> {
    if deadlines.is_empty() || room == 0 {
        return None;
    }
    let start = out.len();
    let mut earliest = None;
    let mut started = started;
    for &(at, piece) in &deadlines.order {
        let taken = out.len() - start;
        if taken == room {
            break;
        }
        let late = at <= now;
        if !asker.offered.get(piece.as_usize()) || !(asker.fast || late) {
            continue;
        }
        if picker.is_unstarted(piece) {
            if started >= budget {
                continue;
            }
            started += 1;
        }
        let before = out.len();
        picker.pick_critical(piece, room - taken, out);
        if late && asker.fast {
            let again: Vec<BlockRef> = picker
                .requested_blocks(piece)
                .filter(|b| !asker.in_flight.contains(b) && !out[start..].contains(b))
                .take(room - (out.len() - start))
                .collect();
            for block in again {
                if picker.duplicate_request(block) {
                    out.push(block);
                }
            }
        }
        if out.len() > before {
            earliest.get_or_insert(at);
        }
    }
    earliest
}
