//! The upload side of the engine: incoming requests, their refusals and cancels (BEP 3, BEP 6
//! `reject` and allowed fast), the window of blocks handed to the driver for each peer, and choking:
//! unchoking into free slots and the choker run (BEP 3 "choking", see [`crate::choker`]).

use crate::time::Instant;

use rand::seq::SliceRandom;

use super::{Action, Offence, Outgoing, Peer, PeerFault, PeerKey, Requested, Torrent};
use crate::BLOCK_SIZE;
use crate::choker::{self, Candidate};
use crate::wire::BlockRequest;

impl Torrent {
    /// A `request` (BEP 3). Out-of-range requests are a fault. Requests we cannot serve (a piece we
    /// lack, more than 16 KiB, while choked outside the allowed-fast set, beyond `reqq`) are refused:
    /// rejected with the Fast Extension (BEP 6), silently dropped without it, and counted towards
    /// [`Offence::RequestFlood`].
    pub(super) fn on_request(
        &mut self,
        key: PeerKey,
        req: BlockRequest,
        now: Instant,
    ) -> Result<(), PeerFault> {
        // An oversized block is refused before its range is checked: the peer may simply use larger
        // blocks than we allow, which is no protocol violation (libtorrent rejects them the same way).
        if req.length > BLOCK_SIZE {
            self.layout.piece(req.index).ok_or(out_of_range(req))?;
            return self.refuse(key, req, now);
        }
        let block = self.requested(req)?;
        let peer = self.peers.get_mut(&key).expect("caller checked");
        let permitted = !peer.am_choking || peer.allowed_out.binary_search(&block.piece).is_ok();
        if !permitted && !peer.info.fast {
            // A request racing our `choke`: without the Fast Extension the peer knows the choke
            // discarded it, so it is neither answered nor counted.
            return Ok(());
        }
        // Only requests still queued count against `reqq`: the peer may already have received some of
        // the blocks handed to the writer, and counts them as answered.
        let servable = permitted && self.have.get(block.piece.as_usize());
        if servable && peer.requests.contains(&block) {
            // A duplicate: it will be answered once.
            return Ok(());
        }
        if !servable || peer.requests.len() as u32 >= self.config.max_peer_requests {
            return self.refuse(key, req, now);
        }
        peer.requests.push_back(block);
        self.pump_uploads(key);
        Ok(())
    }

    /// Refuses a request: rejected with the Fast Extension (BEP 6), dropped without it, and counted;
    /// more than [`Config::max_peer_requests`] refusals in a tick is a flood.
    ///
    /// [`Config::max_peer_requests`]: super::Config::max_peer_requests
    fn refuse(&mut self, key: PeerKey, req: BlockRequest, now: Instant) -> Result<(), PeerFault> {
        let limit = self.config.max_peer_requests;
        let peer = self.peers.get_mut(&key).expect("caller checked");
        peer.refused_this_tick += 1;
        if peer.refused_this_tick > limit {
            return Err(PeerFault::Misbehaved(Offence::RequestFlood(limit)));
        }
        if peer.info.fast {
            self.send(key, Outgoing::Reject(req), now);
        }
        Ok(())
    }

    /// Checks a requested range against the layout (BEP 3 `request`/`cancel`).
    fn requested(&self, req: BlockRequest) -> Result<Requested, PeerFault> {
        let piece = self.layout.piece(req.index).ok_or(out_of_range(req))?;
        let end = u64::from(req.begin) + u64::from(req.length);
        if req.length == 0 || end > u64::from(self.layout.piece_len(piece)) {
            return Err(out_of_range(req));
        }
        Ok(Requested {
            piece,
            offset: req.begin,
            length: req.length,
        })
    }

    /// A `cancel` (BEP 3): a queued request is dropped and, with the Fast Extension, rejected (BEP 6:
    /// every request gets exactly one answer). One already handed to the driver is sent anyway.
    pub(super) fn on_cancel(&mut self, key: PeerKey, req: BlockRequest, now: Instant) {
        let Ok(block) = self.requested(req) else {
            return;
        };
        let peer = self.peers.get_mut(&key).expect("caller checked");
        if let Some(pos) = peer.requests.iter().position(|r| *r == block) {
            peer.requests.remove(pos);
            if peer.info.fast {
                self.send(key, Outgoing::Reject(req), now);
            }
        }
    }

    /// Hands queued requests of `key` to the driver, up to its upload window of unsent blocks.
    fn pump_uploads(&mut self, key: PeerKey) {
        let max = self.config.upload_window;
        let peer = self.peers.get_mut(&key).expect("caller checked");
        let window = upload_window(peer, max);
        while peer.uploading < window {
            let Some(block) = peer.requests.pop_front() else {
                break;
            };
            peer.uploading += 1;
            self.actions.push_back(Action::Upload { peer: key, block });
        }
    }

    /// The driver wrote `blocks` blocks of `bytes` payload bytes to `peer`'s connection (in the order
    /// it was given them). Counts them as uploaded and hands out more.
    pub fn handle_block_sent(&mut self, key: PeerKey, blocks: u32, bytes: u64, now: Instant) {
        self.stats.uploaded += bytes;
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.uploading = peer.uploading.saturating_sub(blocks);
        peer.up.add(bytes);
        peer.last_sent = now;
        self.pump_uploads(key);
    }

    /// Counts `bytes` sent to a connection the engine has already forgotten.
    pub fn count_uploaded(&mut self, bytes: u64) {
        self.stats.uploaded += bytes;
    }

    /// Chokes `key` (BEP 3). Its queued requests outside the allowed-fast set are dropped; with the
    /// Fast Extension each is rejected (BEP 6).
    pub(super) fn choke(&mut self, key: PeerKey, now: Instant) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        if peer.am_choking {
            return;
        }
        peer.am_choking = true;
        peer.optimistic = false;
        let allowed = &peer.allowed_out;
        let (keep, dropped): (Vec<Requested>, Vec<Requested>) = peer
            .requests
            .drain(..)
            .partition(|r| allowed.binary_search(&r.piece).is_ok());
        peer.requests = keep.into();
        let fast = peer.info.fast;
        self.send(key, Outgoing::Choke, now);
        if fast {
            for r in dropped {
                self.send(key, Outgoing::Reject(r.to_wire()), now);
            }
        }
    }

    fn unchoke(&mut self, key: PeerKey, optimistic: bool, now: Instant) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        peer.optimistic = optimistic;
        if peer.am_choking {
            peer.am_choking = false;
            self.send(key, Outgoing::Unchoke, now);
        }
    }

    /// Unchokes interested peers while fewer than `upload_slots + 1` are unchoked, fastest first, so a
    /// new leecher need not wait for the next choker round when a slot is free.
    pub(super) fn fill_upload_slots(&mut self, now: Instant) {
        let capacity = self.config.upload_slots + 1;
        let unchoked = self.peers.values().filter(|p| !p.am_choking).count();
        if unchoked >= capacity {
            return;
        }
        let seeding = self.have.is_full();
        let mut waiting: Vec<(u64, PeerKey)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.am_choking && p.peer_interested)
            .map(|(k, p)| (choker_rate(p, seeding), *k))
            .collect();
        // Fastest first; equal rates (typically 0: nobody has had a chance yet) in random order, so
        // connecting first earns nothing.
        waiting.shuffle(&mut self.rng);
        waiting.sort_by_key(|w| std::cmp::Reverse(w.0));
        for (_, key) in waiting.into_iter().take(capacity - unchoked) {
            self.unchoke(key, false, now);
        }
    }

    /// One choker round (BEP 3 "choking"): regular slots by rate, the optimistic slot rotated every
    /// [`Config::optimistic_rounds`] rounds. See [`crate::choker`].
    ///
    /// [`Config::optimistic_rounds`]: super::Config::optimistic_rounds
    pub(super) fn run_choker(&mut self, now: Instant) {
        use rand::RngCore;
        let rotate = self.choke_round % self.config.optimistic_rounds.max(1) == 0
            || !self.peers.values().any(|p| p.optimistic);
        self.choke_round = self.choke_round.wrapping_add(1);
        // Finished with a selection, we download nothing: rank peers by what we upload to them.
        let seeding = self.finished;
        let new_window = self.config.choke_interval * self.config.optimistic_rounds;
        let candidates: Vec<Candidate<PeerKey>> = self
            .peers
            .iter()
            .map(|(k, p)| Candidate {
                key: *k,
                interested: p.peer_interested,
                rate: choker_rate(p, seeding),
                snubbed: !seeding
                    && p.am_interested
                    && now.duration_since(p.last_data) >= self.config.snub_timeout,
                newly_connected: now.duration_since(p.connected_at) < new_window,
                unchoked: !p.am_choking,
                optimistic: p.optimistic,
            })
            .collect();
        let decision = choker::choose(
            &candidates,
            self.config.upload_slots,
            rotate,
            self.rng.next_u64(),
        );
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            if decision.regular.contains(&key) {
                self.unchoke(key, false, now);
            } else if decision.optimistic == Some(key) {
                self.unchoke(key, true, now);
            } else {
                self.choke(key, now);
            }
        }
    }
}

/// The fault of a `request` or `cancel` outside the torrent.
fn out_of_range(req: BlockRequest) -> PeerFault {
    PeerFault::Misbehaved(Offence::RequestOutOfRange {
        index: req.index,
        begin: req.begin,
        length: req.length,
    })
}

/// Blocks handed to the writer for `peer` and not yet sent: about [`UPLOAD_WINDOW_SECONDS`] of its
/// upload rate, from 2 to `max`. Everything we send a peer goes out in order on one connection, so
/// a deep window of blocks on a slow link would hold back our own requests, `have`s and chokes to it;
/// a shallow one on a fast link would leave the writer idle between reports. The bytes sent in the
/// current tick count too, so a fast link opens the window within milliseconds, not after a tick.
fn upload_window(peer: &Peer, max: u32) -> u32 {
    let rate = peer.up.rate.max(peer.up.this_tick as f64);
    let blocks = (rate * UPLOAD_WINDOW_SECONDS / f64::from(BLOCK_SIZE)) as u32;
    blocks.clamp(2, max.max(2))
}

/// Seconds of a peer's upload rate kept handed to its writer.
const UPLOAD_WINDOW_SECONDS: f64 = 0.25;

/// The rate the choker ranks `peer` by, bytes/s: what it gives us while we download (tit for tat), what
/// it takes from us once we seed (so the fastest downloaders spread the data quickest).
fn choker_rate(peer: &Peer, seeding: bool) -> u64 {
    if seeding {
        peer.up.rate as u64
    } else {
        peer.down.rate as u64
    }
}
