//! The download side of the engine: the requests we make and what becomes of them (BEP 3, BEP 6
//! `reject` and allowed fast), block assembly into piece buffers within the memory budget,
//! verification results, trust and bans, interest, piece availability (`have`, `bitfield`, BEP 6
//! `have all`), and file selection and finishing (BEP 21 `upload_only`).

use crate::time::Instant;
use std::net::IpAddr;

use super::deadline;
use super::{Action, Event, Offence, Outgoing, Peer, PeerFault, PeerKey, Torrent, WebSeedKey};
use crate::blame::{Reply, Verdict};
use crate::hashes::{EncodedHashRequest, HashMessage};
use crate::merkle::PieceCheck;
use crate::picker::BlockOutcome;
use crate::wire::BlockRequest;
use crate::{Bitfield, BlockRef, FilePriority, PieceIndex};

#[derive(Debug)]
pub(super) struct PieceBuffer {
    data: Vec<u8>,
    contributors: Vec<Source>,
    /// Who sent each block, in block order (v2 pieces are resolved to the block).
    senders: Vec<Option<Source>>,
}

/// A piece handed to the driver to verify: who sent it, for trust and blame.
#[derive(Debug)]
pub(super) struct Verifying {
    /// Every source that sent a block of it.
    pub(super) contributors: Vec<Source>,
    /// Who sent each block, in block order; `None` for none (cannot happen: every block is in).
    pub(super) senders: Vec<Option<Source>>,
}

/// Who sent a block: a peer's address (trust and bans go by address) or a web seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Peer(IpAddr),
    Web(WebSeedKey),
}

/// Pieces a peer with nothing in flight may start beyond [`Config::max_unverified_bytes`].
///
/// [`Config::max_unverified_bytes`]: super::Config::max_unverified_bytes
pub const HEADROOM_PIECES: u64 = 4;

/// Withdrawn requests remembered per peer, so their late answers are still welcome: the most a
/// peer can have in flight ([`Config::max_queue`] by default) plus some.
///
/// [`Config::max_queue`]: super::Config::max_queue
pub(super) const LATE_BLOCKS_REMEMBERED: usize = 1024;

/// Blocks a peer may send that we never asked it for (nor withdrew lately) before it is
/// disconnected. They are dropped unseen: stored, one bad block would fail a piece that honest
/// peers are filling and get them blamed for it. A few are tolerated for requests forgotten
/// beyond the 1,024 withdrawn requests the engine remembers per peer.
pub const UNREQUESTED_BLOCKS_ALLOWED: u32 = 16;

/// Redundant `have`s a peer may send, at least: a peer may announce each piece once more (say,
/// after checking its files again), so the allowance is the torrent's piece count if larger. Each
/// costs a bit lookup; the bound stops a flood from costing CPU time forever.
pub const REDUNDANT_HAVES_ALLOWED: u32 = 64;

/// Request timeouts in a row (no requested block in between) after which a peer is dropped as
/// useless: it holds a connection slot and keeps blocks waiting for [`Config::request_timeout`]
/// each time (a peer that trickles data, or accepts requests and never answers).
///
/// [`Config::request_timeout`]: super::Config::request_timeout
pub const MAX_REQUEST_TIMEOUTS: u32 = 3;

/// Seconds of a peer's rate of ordinary requests it keeps when it is given deadline blocks (see
/// `Torrent::make_way`), and of all its requests while any piece has a deadline (twice that with
/// deadline blocks), so a new deadline piece waits at most about that long behind other requests.
pub(super) const DEADLINE_QUEUE_SECONDS: f64 = 0.5;

/// The shortest queue of a peer while pieces have deadlines (before its rate is known), blocks.
pub(super) const MIN_DEADLINE_QUEUE: usize = 4;

/// Ordinary requests a peer keeps at least when it is given deadline blocks, so its link stays busy
/// while the deadline requests travel.
pub(super) const MIN_KEPT_REQUESTS: usize = 4;

/// The most piece buffers kept for reuse after verification. Within this and the memory budget, steady
/// state allocates (and zeroes) no buffer at all.
const MAX_BUFFER_POOL: usize = 64;

impl Torrent {
    /// Sets the priority of every piece (`priorities`: one per piece, in order; missing entries are
    /// `Normal`, so an empty slice wants everything). Usually derived from file priorities with
    /// [`crate::priority::piece_priorities`]; call it right after [`Torrent::new`] for a selection at
    /// creation, or at any time to change it.
    ///
    /// Pieces becoming `Skip` stop being requested: outstanding requests for partial ones are
    /// cancelled and their buffers freed (pieces already being verified still count). Interest in
    /// every peer is re-evaluated. Becoming finished emits [`Event::Finished`] and announces BEP 21
    /// `upload_only`; wanting more again sends `upload_only` 0.
    pub fn set_piece_priorities(&mut self, priorities: &[FilePriority], now: Instant) {
        let abandoned = self.picker.set_priorities(priorities);
        for piece in abandoned {
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for key in keys {
                let peer = self.peers.get_mut(&key).expect("listed");
                let cancelled: Vec<BlockRef> = peer
                    .in_flight
                    .iter()
                    .copied()
                    .filter(|b| b.piece == piece)
                    .collect();
                peer.in_flight.retain(|b| b.piece != piece);
                for block in cancelled {
                    self.send(key, Outgoing::Cancel(block), now);
                }
            }
            // A web seed's fetch goes on; the blocks of this piece in it are simply not needed.
            for seed in self.web_seeds.values_mut() {
                seed.in_flight.retain(|b| b.piece != piece);
            }
            self.buffers.remove(&piece);
        }
        let (mut left, mut wanted) = (0, 0);
        for piece in self.layout.pieces() {
            if self.picker.priority(piece).is_wanted() {
                let len = u64::from(self.layout.piece_len(piece));
                wanted += len;
                if !self.have.get(piece.as_usize()) {
                    left += len;
                }
            }
        }
        self.stats.left = left;
        self.stats.wanted = wanted;
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for &key in &keys {
            let count = self.wanted_of(&self.peers[&key].bitfield);
            self.peers.get_mut(&key).expect("listed").wanted = count;
            self.update_interest(key, now);
        }
        if left == 0 && !self.finished {
            self.on_finished(now);
        } else if left > 0 && self.finished {
            self.finished = false;
            let handshake = self.extension_handshake();
            for key in keys {
                if self.peers.get(&key).is_some_and(|p| p.info.extensions) {
                    self.send(key, Outgoing::Extended(0, handshake.clone()), now);
                }
            }
        }
        self.fill_all(now);
    }

    /// True when every wanted piece (priority other than `Skip`) is verified; the same as
    /// [`Torrent::is_complete`] without a selection.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The priority of `piece` (see [`Torrent::set_piece_priorities`]).
    pub fn piece_priority(&self, piece: PieceIndex) -> FilePriority {
        self.picker.priority(piece)
    }

    /// True when we want `i` (a piece index known to be in range) and lack it.
    fn wants_piece(&self, i: usize) -> bool {
        !self.have.get(i)
            && self
                .picker
                .priority(crate::layout::piece_index_unchecked(i as u32))
                .is_wanted()
    }

    /// The number of pieces in `bits` that we want and lack.
    pub(super) fn wanted_of(&self, bits: &Bitfield) -> u32 {
        bits.iter_ones().filter(|&i| self.wants_piece(i)).count() as u32
    }

    /// Every wanted piece is now verified: tell the driver, tell peers we only upload (BEP 21), and
    /// leave the peers that only upload too.
    fn on_finished(&mut self, now: Instant) {
        self.finished = true;
        self.events.push_back(Event::Finished);
        let handshake = self.extension_handshake();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            if self.peers.get(&key).is_some_and(|p| p.info.extensions) {
                self.send(key, Outgoing::Extended(0, handshake.clone()), now);
            }
            self.drop_if_both_seeds(key);
        }
    }

    /// True when `ip` sent bad data too often: the driver must not connect to it or accept it.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.banned.contains(&ip)
    }

    pub(super) fn on_choke(&mut self, key: PeerKey) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        peer.peer_choking = true;
        // Without the Fast Extension a choke discards every pending request (BEP 3). With it, the peer
        // rejects each one explicitly (BEP 6); the request timeout covers peers that forget.
        if !peer.info.fast {
            while let Some(block) = peer.in_flight.pop_front() {
                withdraw(peer, block);
                self.picker.request_dropped(block);
            }
        }
    }

    pub(super) fn on_reject(&mut self, key: PeerKey, req: BlockRequest, now: Instant) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        let Some(block) = self.layout.block_at(req.index, req.begin, req.length) else {
            return;
        };
        if let Some(pos) = peer.in_flight.iter().position(|b| *b == block) {
            peer.in_flight.remove(pos);
            self.picker.request_dropped(block);
            // A peer that rejects while unchoked has a smaller queue than we assumed.
            if !peer.peer_choking {
                peer.queue_target = (peer.in_flight.len() as u32).max(1);
                peer.reqq = Some(peer.queue_target);
            }
        }
        if !self.peers[&key].peer_choking {
            self.fill_requests(key, now);
        }
    }

    /// Two seeds have nothing to give each other: once we have every wanted piece, a peer that has
    /// every piece (or says it only uploads, BEP 21) is disconnected.
    pub(super) fn drop_if_both_seeds(&mut self, key: PeerKey) {
        if !self.finished {
            return;
        }
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        if peer.bitfield.is_full() || peer.upload_only {
            self.disconnect(key, PeerFault::Useless("both sides are seeds"));
        }
    }

    pub(super) fn on_have(
        &mut self,
        key: PeerKey,
        index: u32,
        now: Instant,
    ) -> Result<(), PeerFault> {
        let piece = self
            .layout
            .piece(index)
            .ok_or(PeerFault::Misbehaved(Offence::HaveOutOfRange(index)))?;
        let peer = self.peers.get_mut(&key).expect("caller checked");
        if peer.bitfield.set(piece.as_usize()) {
            self.picker.increment_availability(piece);
            let full = peer.bitfield.is_full();
            if self.wants_piece(piece.as_usize()) {
                let peer = self.peers.get_mut(&key).expect("caller checked");
                peer.wanted += 1;
                self.update_interest(key, now);
            }
            if full {
                self.drop_if_both_seeds(key);
            }
        } else {
            peer.redundant_haves += 1;
            if peer.redundant_haves > REDUNDANT_HAVES_ALLOWED.max(self.layout.piece_count()) {
                return Err(PeerFault::Misbehaved(Offence::RedundantHaves(
                    peer.redundant_haves,
                )));
            }
        }
        Ok(())
    }

    pub(super) fn on_availability(&mut self, key: PeerKey, bits: Bitfield, now: Instant) {
        self.picker.add_availability(&bits);
        let wanted = self.wanted_of(&bits);
        let peer = self.peers.get_mut(&key).expect("caller checked");
        peer.bitfield = bits;
        peer.wanted = wanted;
        self.update_interest(key, now);
        self.drop_if_both_seeds(key);
    }

    /// A `bitfield` after other messages: some clients send one mid-connection to sum up many
    /// `have`s. BEP 3 allows it only first, but libtorrent and Transmission take it, so we do too,
    /// as a batch of `have`s: pieces it sets are added, pieces it lacks are **not** taken away
    /// (a peer does not lose pieces), and repeats are not counted as redundant `have`s.
    pub(super) fn on_late_bitfield(&mut self, key: PeerKey, bits: &Bitfield, now: Instant) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        let new: Vec<usize> = bits
            .iter_ones()
            .filter(|&i| !peer.bitfield.get(i))
            .collect();
        for &i in &new {
            peer.bitfield.set(i);
        }
        let full = peer.bitfield.is_full();
        let mut wanted = 0;
        for &i in &new {
            self.picker
                .increment_availability(crate::layout::piece_index_unchecked(i as u32));
            if self.wants_piece(i) {
                wanted += 1;
            }
        }
        let peer = self.peers.get_mut(&key).expect("caller checked");
        peer.wanted += wanted;
        self.update_interest(key, now);
        if full {
            self.drop_if_both_seeds(key);
        }
    }

    fn update_interest(&mut self, key: PeerKey, now: Instant) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        let should = peer.wanted > 0;
        if should != peer.am_interested {
            peer.am_interested = should;
            let msg = if should {
                Outgoing::Interested
            } else {
                Outgoing::NotInterested
            };
            self.send(key, msg, now);
        }
        if should {
            self.fill_requests(key, now);
        }
    }

    pub(super) fn on_block(
        &mut self,
        key: PeerKey,
        index: u32,
        begin: u32,
        data: &[u8],
        now: Instant,
    ) -> Result<(), PeerFault> {
        let length = data.len() as u32;
        let block = self
            .layout
            .block_at(index, begin, length)
            .ok_or(PeerFault::Misbehaved(Offence::BlockOutOfRange {
                index,
                begin,
                length,
            }))?;
        let peer = self.peers.get_mut(&key).expect("caller checked");
        let ip = peer.info.addr.ip();
        self.stats.downloaded += u64::from(length);
        // Blocks usually arrive in request order, so the search ends at the front.
        let ours = match peer.in_flight.iter().position(|b| *b == block) {
            Some(pos) => {
                peer.in_flight.remove(pos);
                1
            }
            None => 0,
        };
        // A late answer to a request we withdrew (it timed out, or a cancel crossed the block) is
        // still welcome if we need it: the piece hash decides if it was good. A block we never asked
        // this peer for is dropped unseen (see `UNREQUESTED_BLOCKS_ALLOWED`).
        if ours == 0 {
            match peer.withdrawn.iter().rposition(|b| *b == block) {
                Some(pos) => {
                    peer.withdrawn.remove(pos);
                }
                None => {
                    self.stats.wasted += u64::from(length);
                    peer.unrequested += 1;
                    if peer.unrequested > UNREQUESTED_BLOCKS_ALLOWED {
                        let n = peer.unrequested;
                        return Err(PeerFault::Misbehaved(Offence::UnrequestedBlocks(n)));
                    }
                    return Ok(());
                }
            }
        }
        peer.last_block = now;
        peer.last_data = now;
        peer.timeouts = 0;
        peer.down.add(u64::from(length));
        // Other peers still hold a request for it (endgame, or a request that timed out here and went
        // elsewhere): they get a cancel whether or not endgame is still on.
        let duplicated = self.picker.request_count(block) > ours;
        match self.picker.block_received(block) {
            BlockOutcome::Unneeded => self.stats.wasted += u64::from(length),
            BlockOutcome::New { piece_complete } => {
                self.store_block(block, data, Source::Peer(ip));
                if duplicated {
                    self.cancel_duplicates(block, now);
                }
                if piece_complete {
                    self.piece_ready(block.piece);
                }
            }
        }
        self.fill_requests(key, now);
        Ok(())
    }

    /// Every block of `piece` is in: hand it out for verification.
    pub(super) fn piece_ready(&mut self, piece: PieceIndex) {
        let buffer = self.buffers.remove(&piece).expect("its blocks were stored");
        self.verifying.insert(
            piece,
            Verifying {
                contributors: buffer.contributors,
                senders: buffer.senders,
            },
        );
        self.actions.push_back(Action::VerifyPiece {
            piece,
            data: buffer.data,
        });
    }

    pub(super) fn store_block(&mut self, block: BlockRef, data: &[u8], from: Source) {
        let piece_len = self.layout.piece_len(block.piece) as usize;
        let buffer = self.buffers.entry(block.piece).or_insert_with(|| {
            let mut data = self.pool.pop().unwrap_or_default();
            data.resize(piece_len, 0);
            PieceBuffer {
                data,
                contributors: Vec::new(),
                senders: vec![None; piece_len.div_ceil(crate::BLOCK_SIZE as usize)],
            }
        });
        let start = block.offset as usize;
        buffer.data[start..start + data.len()].copy_from_slice(data);
        if let Some(sender) = buffer.senders.get_mut(start / crate::BLOCK_SIZE as usize) {
            *sender = Some(from);
        }
        if !buffer.contributors.contains(&from) {
            buffer.contributors.push(from);
        }
    }

    /// A block that was outstanding at several peers (or web seeds) arrived, and its sender has
    /// taken it off its own list: cancel the others (BEP 3, "cancel"). A web seed's fetch goes on,
    /// its copy of the block no longer asked of it.
    pub(super) fn cancel_duplicates(&mut self, block: BlockRef, now: Instant) {
        for seed in self.web_seeds.values_mut() {
            seed.in_flight.retain(|b| *b != block);
        }
        let holders: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.in_flight.contains(&block))
            .map(|(k, _)| *k)
            .collect();
        for k in holders {
            let peer = self.peers.get_mut(&k).expect("listed above");
            peer.in_flight.retain(|b| *b != block);
            withdraw(peer, block);
            self.send(k, Outgoing::Cancel(block), now);
        }
    }

    /// Tops up `key`'s outstanding requests to its queue target: blocks of deadline pieces first
    /// (see `deadline`), then the picker's.
    pub(super) fn fill_requests(&mut self, key: PeerKey, now: Instant) {
        let peer = &self.peers[&key];
        if (peer.peer_choking && peer.allowed_in.is_empty()) || !peer.am_interested {
            return;
        }
        let cap = peer
            .reqq
            .unwrap_or(self.config.default_peer_reqq)
            .min(self.config.max_queue);
        let mut target = peer.queue_target.min(cap).max(1) as usize;
        if !self.deadlines.is_empty() {
            // While pieces have deadlines, a peer's queue is kept short: many peers (libtorrent
            // among them) read what we asked into their send buffer at once and no longer honour
            // a cancel, so whatever we have in flight is served before a new deadline piece.
            let short =
                (peer.down.rate * DEADLINE_QUEUE_SECONDS / f64::from(crate::BLOCK_SIZE)) as usize;
            target = target.min(short.max(MIN_DEADLINE_QUEUE));
        }
        let fast = self.fast_enough(key);
        let peer = &self.peers[&key];
        // Deadline blocks may go half as far again as the queue, and a fast peer whose queue is
        // full of other blocks still takes up to a queue of them: `make_way` then cancels what
        // they would wait behind.
        let mut deadline_room = (target + target.div_ceil(2)).saturating_sub(peer.in_flight.len());
        if fast && !self.deadlines.is_empty() {
            let deadlines = &self.deadlines;
            let urgent = peer
                .in_flight
                .iter()
                .filter(|b| deadlines.of(b.piece).is_some())
                .count();
            deadline_room = deadline_room.max(target.saturating_sub(urgent));
        }
        let deadline_room = deadline_room.min((cap as usize).saturating_sub(peer.in_flight.len()));
        if peer.in_flight.len() >= target && (deadline_room == 0 || self.deadlines.is_empty()) {
            return;
        }
        let mut picked = std::mem::take(&mut self.scratch);
        picked.clear();
        if !self.deadlines.is_empty() {
            let budget = self.deadline_budget();
            let started = (self.picker.partial_count() + self.verifying.len()) as u64;
            let peer = &self.peers[&key];
            let offered = offered(peer);
            let asker = deadline::Asker {
                fast,
                offered: &offered,
                in_flight: &peer.in_flight,
            };
            let earliest = deadline::pick(
                &self.deadlines,
                &mut self.picker,
                &asker,
                (started, budget),
                deadline_room,
                now,
                &mut picked,
            );
            if let Some(earliest) = earliest.filter(|_| fast) {
                self.make_way(key, earliest, now);
            }
        }
        let urgent = picked.len();
        let peer = &self.peers[&key];
        let room = target
            .saturating_sub(peer.in_flight.len())
            .saturating_sub(urgent);
        if room > 0 {
            // Pieces count against the budget from the moment they are started (picked), not
            // from their first block: otherwise one pick for a deep queue starts many pieces at
            // once while the budget still looks empty. Past the budget, a peer with nothing in
            // flight may still start a piece (up to a few pieces of headroom), so half-done pieces
            // that only departed peers could finish never stall the download.
            let started = (self.picker.partial_count() + self.verifying.len()) as u64;
            let limit = self.budget_pieces()
                + if peer.in_flight.is_empty() && urgent == 0 {
                    HEADROOM_PIECES
                } else {
                    0
                };
            let max_new = limit.saturating_sub(started) as usize;
            let in_flight = &peer.in_flight;
            // While it chokes us, only its allowed-fast pieces may be requested (BEP 6).
            let offered = offered(peer);
            self.picker.pick(
                &offered,
                room,
                max_new,
                |b| in_flight.contains(&b),
                &mut picked,
            );
        }
        let peer = self.peers.get_mut(&key).expect("checked");
        if peer.in_flight.is_empty() && !picked.is_empty() {
            // The stuck-request timeout runs from the first request, not from a block that arrived
            // before a long choke.
            peer.last_block = now;
        }
        for block in &picked {
            self.peers
                .get_mut(&key)
                .expect("checked")
                .in_flight
                .push_back(*block);
            self.send(key, Outgoing::Request(*block), now);
        }
        self.scratch = picked;
    }

    /// `key` is about to be asked for blocks of deadline pieces, the earliest due at `due`: its
    /// requests beyond [`DEADLINE_QUEUE_SECONDS`] of its rate (at least [`MIN_KEPT_REQUESTS`]) for
    /// pieces due later or not at all are cancelled (BEP 3 `cancel`), so the peer serves the new
    /// deadline blocks next rather than after seconds of other blocks. The cancelled blocks go
    /// back to the picker and are asked again after them; one that crossed its cancel is still
    /// welcome.
    fn make_way(&mut self, key: PeerKey, due: Instant, now: Instant) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        let keep = ((peer.down.rate * DEADLINE_QUEUE_SECONDS / f64::from(crate::BLOCK_SIZE))
            as usize)
            .max(MIN_KEPT_REQUESTS);
        if peer.in_flight.len() <= keep {
            return;
        }
        let deadlines = &self.deadlines;
        let mut cancelled = Vec::new();
        let mut position = 0;
        peer.in_flight.retain(|b| {
            position += 1;
            let cancel = position > keep && deadlines.of(b.piece).is_none_or(|at| at > due);
            if cancel {
                cancelled.push(*b);
            }
            !cancel
        });
        for &block in &cancelled {
            withdraw(peer, block);
        }
        for block in cancelled {
            self.picker.request_dropped(block);
            self.send(key, Outgoing::Cancel(block), now);
        }
    }

    /// [`Config::max_unverified_bytes`] in pieces of this torrent (at least one).
    ///
    /// [`Config::max_unverified_bytes`]: super::Config::max_unverified_bytes
    pub(super) fn budget_pieces(&self) -> u64 {
        (self.config.max_unverified_bytes / u64::from(self.layout.piece_length())).max(1)
    }

    /// The driver hashed (and, if good, wrote) `piece`; `buffer` is the data it was given, returned for
    /// reuse. The same as [`Torrent::handle_piece_checked`] without evidence of which blocks were
    /// bad: a failed piece is blamed on every contributor.
    pub fn handle_piece_verified(
        &mut self,
        piece: PieceIndex,
        ok: bool,
        buffer: Vec<u8>,
        now: Instant,
    ) {
        let check = if ok {
            PieceCheck::Good
        } else {
            PieceCheck::Bad(None)
        };
        self.handle_piece_checked(piece, check, buffer, now);
    }

    /// The driver checked (and, if good, wrote) `piece` (`crate::metainfo::Info::check_piece`);
    /// `buffer` is the data it was given, returned for reuse.
    ///
    /// A failed v2 piece comes with its leaf hashes: the engine asks a peer that has the piece for
    /// the true ones (BEP 52 `hash request`, [`crate::blame`]) and blames only the senders of the
    /// bad blocks; without an answer within [`crate::blame::MAX_ASKED`] tries, or for a v1 piece,
    /// every contributor loses trust.
    pub fn handle_piece_checked(
        &mut self,
        piece: PieceIndex,
        check: PieceCheck,
        buffer: Vec<u8>,
        now: Instant,
    ) {
        let Some(Verifying {
            contributors,
            senders,
        }) = self.verifying.remove(&piece)
        else {
            return;
        };
        let len = u64::from(self.layout.piece_len(piece));
        // Keep the buffer for the next piece while buffers in use plus pooled stay within what started
        // pieces may hold at most (the budget plus headroom), so the pool never adds memory beyond
        // that, and buffers are allocated once rather than once per piece.
        let in_use = (self.buffers.len() + self.verifying.len()) as u64;
        if in_use + (self.pool.len() as u64) < self.budget_pieces() + HEADROOM_PIECES
            && self.pool.len() < MAX_BUFFER_POOL
        {
            self.pool.push(buffer);
        }
        let wanted = self.picker.priority(piece).is_wanted();
        let ok = check.is_good();
        self.picker.piece_verified(piece, ok);
        if ok {
            self.have.set(piece.as_usize());
            self.deadline_met(piece);
            self.stats.verified += len;
            if wanted {
                self.stats.left -= len;
            }
            for source in &contributors {
                match *source {
                    Source::Peer(ip) => {
                        let t = self.trust.entry(ip).or_insert(0);
                        *t = (*t + 1).min(20);
                    }
                    Source::Web(key) => self.web_seed_good_piece(key),
                }
            }
            self.events.push_back(Event::PieceVerified(piece));
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for &key in &keys {
                let peer = self.peers.get_mut(&key).expect("listed");
                if peer.bitfield.get(piece.as_usize()) {
                    if wanted {
                        peer.wanted -= 1;
                        self.update_interest(key, now);
                    }
                } else {
                    let granted = peer.allowed_out.binary_search(&piece).is_ok();
                    self.send(key, Outgoing::Have(piece), now);
                    if granted {
                        self.send(key, Outgoing::AllowedFast(piece), now);
                    }
                }
            }
            if self.stats.left == 0 && !self.finished {
                self.on_finished(now);
            }
            if self.have.is_full() {
                self.events.push_back(Event::Complete);
            }
        } else {
            self.stats.wasted += len;
            let peers = contributors
                .iter()
                .filter_map(|s| match s {
                    Source::Peer(ip) => Some(*ip),
                    Source::Web(_) => None,
                })
                .collect();
            let web_seeds = contributors
                .iter()
                .filter_map(|s| match s {
                    Source::Web(key) => Some(*key),
                    Source::Peer(_) => None,
                })
                .collect();
            self.events.push_back(Event::HashFailed {
                piece,
                peers,
                web_seeds,
            });
            // A banned address's blocks stay in the pieces it helped fill until they fail: such a
            // piece is its fault alone, or every honest peer that filled the rest would be blamed.
            let banned: Vec<Source> = contributors
                .iter()
                .copied()
                .filter(|s| matches!(s, Source::Peer(ip) if self.banned.contains(ip)))
                .collect();
            // Pinning a bad block on its sender needs a peer's proven leaf hashes; a piece a web
            // seed helped fill is blamed on every contributor (a web seed has nothing to ask).
            let peer_senders: Option<Vec<IpAddr>> = senders
                .iter()
                .map(|s| match s {
                    Some(Source::Peer(ip)) => Some(*ip),
                    // Every block is in; an unspecified address would blame nobody.
                    None => Some(IpAddr::from([0u8; 4])),
                    Some(Source::Web(_)) => None,
                })
                .collect();
            match (check, peer_senders) {
                _ if !banned.is_empty() => self.blame_contributors(banned),
                (PieceCheck::Bad(Some(evidence)), Some(senders)) => {
                    if let Some(verdict) = self.inquiries.open(piece, evidence, senders) {
                        self.apply_verdict(verdict);
                    }
                    self.poll_inquiries(now);
                }
                _ => self.blame_contributors(contributors),
            }
        }
        self.fill_all(now);
    }

    /// Today's rule for a failed piece whose bad blocks are unknown: every contributor loses
    /// trust (more when it is alone), and is banned once its trust falls to
    /// [`Config::ban_trust`](super::Config::ban_trust).
    fn blame_contributors(&mut self, culprits: Vec<Source>) {
        let penalty = if culprits.len() == 1 { 4 } else { 2 };
        for source in culprits {
            let ip = match source {
                Source::Peer(ip) => ip,
                Source::Web(key) => {
                    self.web_seed_failed_piece(key, penalty);
                    continue;
                }
            };
            let t = self.trust.entry(ip).or_insert(0);
            *t -= penalty;
            if *t <= self.config.ban_trust {
                self.ban(ip, Offence::HashFailures);
            }
        }
    }

    /// Bans `ip` (its trust at the ban level) and disconnects it, once.
    pub(super) fn ban(&mut self, ip: IpAddr, offence: Offence) {
        let t = self.trust.entry(ip).or_insert(0);
        *t = (*t).min(self.config.ban_trust);
        if self.banned.insert(ip) {
            self.events.push_back(Event::Banned(ip));
            let keys: Vec<PeerKey> = self
                .peers
                .iter()
                .filter(|(_, p)| p.info.addr.ip() == ip)
                .map(|(k, _)| *k)
                .collect();
            for key in keys {
                self.disconnect(key, PeerFault::Misbehaved(offence.clone()));
            }
        }
    }

    /// Carries out the outcome of resolving a failed v2 piece: proven senders of bad blocks are
    /// banned at once (the merkle proof leaves no doubt); an unresolved piece falls back on
    /// every contributor.
    fn apply_verdict(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Pinned { piece, culprits } => {
                self.events.push_back(Event::BadBlocksPinned {
                    piece,
                    peers: culprits.clone(),
                });
                // An unspecified address stands for a block whose sender is unknown (none is).
                for ip in culprits.into_iter().filter(|ip| !ip.is_unspecified()) {
                    self.ban(ip, Offence::CorruptBlock);
                }
            }
            Verdict::Unresolved { contributors, .. } => {
                self.blame_contributors(contributors.into_iter().map(Source::Peer).collect())
            }
        }
    }

    /// Asks peers for the leaves of failed v2 pieces waiting for an answer, and settles those no
    /// peer is left to ask for. Candidates: connected, not banned peers that have the piece, any of
    /// which will do, including the senders: an answer is proven either way.
    pub(super) fn poll_inquiries(&mut self, now: Instant) {
        if self.inquiries.is_empty() {
            return;
        }
        let (peers, banned) = (&self.peers, &self.banned);
        let (requests, verdicts) = self.inquiries.poll(now, |piece| {
            peers
                .iter()
                .filter(|(_, p)| {
                    p.bitfield.get(piece.as_usize()) && !banned.contains(&p.info.addr.ip())
                })
                .map(|(k, _)| *k)
                .collect()
        });
        for (key, request) in requests {
            self.send(
                key,
                Outgoing::HashRequest(EncodedHashRequest::new(request)),
                now,
            );
        }
        for verdict in verdicts {
            self.apply_verdict(verdict);
        }
    }

    /// A BEP 52 `hashes` or `hash reject` (id 22, 23) from `key`: an answer to our request for a
    /// failed piece's leaves. Others are ignored (we ask nothing else while running).
    ///
    /// Errors: a malformed message, or hashes that do not hash up to the node we trust.
    pub(super) fn on_hash_message(
        &mut self,
        key: PeerKey,
        id: u8,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), PeerFault> {
        let message =
            HashMessage::decode(id, payload).map_err(|e| PeerFault::Malformed(e.to_string()))?;
        let reply = match &message {
            HashMessage::Hashes { request, hashes } => {
                self.inquiries.on_hashes(key, request, hashes)
            }
            HashMessage::Reject(request) => self.inquiries.on_reject(key, request),
            HashMessage::Request(_) => Reply::Ignored,
        };
        match reply {
            Reply::Ignored => {}
            Reply::Handled(verdicts) => {
                for verdict in verdicts {
                    self.apply_verdict(verdict);
                }
                self.poll_inquiries(now);
            }
            Reply::Lied(liar) => {
                if let Some(ip) = self.peers.get(&liar).map(|p| p.info.addr.ip()) {
                    self.ban(ip, Offence::BadHashes);
                }
                self.disconnect(liar, PeerFault::Misbehaved(Offence::BadHashes));
                self.poll_inquiries(now);
            }
        }
        Ok(())
    }

    pub(super) fn fill_all(&mut self, now: Instant) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.fill_requests(key, now);
        }
        let seeds: Vec<WebSeedKey> = self.web_seeds.keys().copied().collect();
        for key in seeds {
            self.fill_web(key, now);
        }
    }
}

/// What `peer` offers to us now: its pieces, or while it chokes us only its allowed-fast pieces
/// (BEP 6).
fn offered(peer: &Peer) -> std::borrow::Cow<'_, Bitfield> {
    if !peer.peer_choking {
        return std::borrow::Cow::Borrowed(&peer.bitfield);
    }
    let mut bits = Bitfield::new(peer.bitfield.len());
    for p in &peer.allowed_in {
        if peer.bitfield.get(p.as_usize()) {
            bits.set(p.as_usize());
        }
    }
    std::borrow::Cow::Owned(bits)
}

/// Remembers that we withdrew our request for `block` from `peer`, so its late answer is welcome.
pub(super) fn withdraw(peer: &mut Peer, block: BlockRef) {
    if peer.withdrawn.len() == LATE_BLOCKS_REMEMBERED {
        peer.withdrawn.pop_front();
    }
    peer.withdrawn.push_back(block);
}
