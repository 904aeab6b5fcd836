//! Fetching a torrent's metadata, the bencoded `info` dictionary, from peers by the metadata
//! exchange (BEP 9, `ut_metadata`), so that a magnet link, which carries only the info hash, becomes
//! a torrent.
//!
//! The metadata is cut into pieces of 16 KiB ([`METADATA_PIECE_LEN`]); the last may be shorter. Each
//! peer announces the total size (`metadata_size`) in its extension handshake (BEP 10). Pieces are
//! requested from several peers at once, a few per peer, and re-requested elsewhere when a peer
//! rejects them, times out or leaves. When every piece is in, the SHA-1 of the whole (or for a v2
//! info hash its truncated SHA-256) must be the info hash.
//!
//! **Blaming the right peer.** When the whole fails the check and one peer sent it all, that peer
//! is excluded. When several contributed, nobody is blamed yet: the fetch starts over from one of
//! them alone (the one that sent the most first). If that copy verifies, each old piece is compared
//! with it and only the peers whose pieces differ are excluded as liars; if it fails too, its sole
//! sender is the liar, and the next contributor is tried alone. An honest peer never loses its
//! place for another's lie.
//!
//! Memory is bounded by the size cap ([`MAX_METADATA_SIZE`]): one buffer of the agreed size, plus
//! per-peer bookkeeping for at most [`MAX_PEERS`] peers.

use std::collections::HashMap;
use std::time::Duration;

use crate::time::Instant;

use crate::InfoHash;
use crate::digest::{sha1, sha256};
use crate::extension::{
    ExtensionError, ExtensionHandshake, MAX_METADATA_SIZE, METADATA_PIECE_LEN, MetadataMessage,
    UT_METADATA, metadata_piece_count,
};

/// Pieces requested from one peer at a time.
pub const REQUESTS_PER_PEER: u32 = 4;
/// A request unanswered for this long goes to another peer, and counts against this one.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer whose requests time out this many times gets no more requests.
pub const MAX_TIMEOUTS: u32 = 3;
/// Peers tracked at once; further ones are not used for the fetch.
pub const MAX_PEERS: usize = 200;

/// Identifies a peer connection to the fetch; chosen by the caller, unique while the peer is added.
pub type PeerKey = u64;

/// Why a peer is of no further use to the fetch. The caller should close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataFault {
    /// A `ut_metadata` message that does not decode (BEP 9, "extension message").
    #[error("malformed ut_metadata message")]
    Malformed,
    /// A `data` message for a piece we did not ask this peer for.
    #[error("ut_metadata piece {piece} was not requested")]
    Unrequested {
        /// The metadata piece index.
        piece: u32,
    },
    /// A `data` message whose `total_size` or length does not match the piece asked for.
    #[error("ut_metadata piece {piece} has the wrong size")]
    WrongSize {
        /// The metadata piece index.
        piece: u32,
    },
    /// The peer contributed to metadata that did not hash to the info hash.
    #[error("sent metadata that does not match the info hash")]
    BadMetadata,
    /// The peer's requests timed out [`MAX_TIMEOUTS`] times.
    #[error("metadata requests keep timing out")]
    TooSlow,
}

/// A message to send: `payload` goes in an extended message (BEP 10) with id `id` to `peer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The peer to send to.
    pub peer: PeerKey,
    /// The extended message id the peer assigned to `ut_metadata`.
    pub id: u8,
    /// The encoded `ut_metadata` message.
    pub payload: Vec<u8>,
}

/// How far the fetch is, for progress displays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchProgress {
    /// Peers that offer `ut_metadata` with a usable size.
    pub peers: usize,
    /// Metadata pieces received (of the current attempt).
    pub pieces_have: u32,
    /// Metadata pieces in all; 0 while no peer has said how large the metadata is.
    pub piece_count: u32,
}

#[derive(Debug)]
struct Peer {
    /// Their id for `ut_metadata`.
    id: u8,
    /// The `metadata_size` they announced, bytes.
    size: u32,
    outstanding: u32,
    timeouts: u32,
    /// Per piece of this attempt: they rejected it, so it is not asked of them again.
    rejected: Vec<bool>,
    /// Excluded from the fetch (a fault was reported); kept so it is not re-added.
    excluded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Missing,
    Requested { peer: PeerKey, at: Instant },
    Have { from: PeerKey },
}

/// A hash failure with several contributors being resolved: everything is fetched again from
/// `solo` alone, and then compared with `old`.
#[derive(Debug)]
struct Suspicion {
    /// The failed buffer.
    old: Vec<u8>,
    /// Who sent each piece of `old`.
    owners: Vec<PeerKey>,
    /// The contributor the fetch now asks alone.
    solo: PeerKey,
    /// Contributors to ask alone next if `solo` fails, turns out to lie or leaves.
    next: Vec<PeerKey>,
}

/// The state of one metadata fetch (BEP 9). Feed it extension handshakes, `ut_metadata` messages,
/// departures and the time; send what [`MetadataFetch::drain_outgoing`] returns; take the result from
/// [`MetadataFetch::take_metadata`].
#[derive(Debug)]
pub struct MetadataFetch {
    info_hash: InfoHash,
    peers: HashMap<PeerKey, Peer>,
    /// The size being fetched, bytes: the first usable size announced, replaced after a hash failure.
    size: Option<u32>,
    slots: Vec<Slot>,
    buffer: Vec<u8>,
    outgoing: Vec<Outgoing>,
    faults: Vec<(PeerKey, MetadataFault)>,
    done: Option<Vec<u8>>,
    taken: bool,
    /// Set while a hash failure with several contributors is being resolved.
    suspicion: Option<Suspicion>,
}

impl MetadataFetch {
    /// A fetch of the metadata whose SHA-1 (v1), or SHA-256 truncated to 20 bytes (v2, BEP 52), is
    /// `info_hash`.
    pub fn new(info_hash: InfoHash) -> MetadataFetch {
        MetadataFetch {
            info_hash,
            peers: HashMap::new(),
            size: None,
            slots: Vec::new(),
            buffer: Vec::new(),
            outgoing: Vec::new(),
            faults: Vec::new(),
            done: None,
            taken: false,
            suspicion: None,
        }
    }

    /// A peer's extension handshake (BEP 10) arrived. Peers without `ut_metadata` or without a
    /// `metadata_size` in 1..=[`MAX_METADATA_SIZE`] are not used. A later handshake from the same
    /// peer updates its id and size.
    pub fn handle_handshake(
        &mut self,
        peer: PeerKey,
        handshake: &ExtensionHandshake,
        now: Instant,
    ) {
        let (Some(id), Some(size)) = (handshake.id_of(UT_METADATA), handshake.metadata_size) else {
            self.remove_peer(peer);
            return;
        };
        if size == 0 || size > MAX_METADATA_SIZE {
            self.remove_peer(peer);
            return;
        }
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS {
            return;
        }
        let entry = self.peers.entry(peer).or_insert(Peer {
            id,
            size,
            outstanding: 0,
            timeouts: 0,
            rejected: vec![false; self.slots.len()],
            excluded: false,
        });
        entry.id = id;
        entry.size = size;
        if self.size.is_none() {
            self.start(size);
        }
        self.schedule(now);
    }

    /// A `ut_metadata` message from `peer` (the payload after the extended message id). Requests
    /// from the peer are answered with `reject`: we have no metadata to give yet.
    ///
    /// Errors: a fault that makes the peer useless to the fetch; it is excluded and the caller
    /// should disconnect it.
    pub fn handle_message(
        &mut self,
        peer: PeerKey,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), MetadataFault> {
        let result = self.on_message(peer, payload);
        if result.is_err() {
            self.exclude(peer);
        }
        self.schedule(now);
        result
    }

    fn on_message(&mut self, peer: PeerKey, payload: &[u8]) -> Result<(), MetadataFault> {
        let message = MetadataMessage::decode(payload).map_err(|e| match e {
            ExtensionError::DataLength { piece, .. }
            | ExtensionError::PieceOutOfRange { piece, .. } => MetadataFault::WrongSize { piece },
            _ => MetadataFault::Malformed,
        })?;
        match message {
            MetadataMessage::Request { piece } => {
                // BEP 9: a peer without the metadata rejects requests for it.
                if let Some(p) = self.peers.get(&peer) {
                    let mut reply = Vec::new();
                    MetadataMessage::Reject { piece }.encode(&mut reply);
                    self.outgoing.push(Outgoing {
                        peer,
                        id: p.id,
                        payload: reply,
                    });
                }
                Ok(())
            }
            MetadataMessage::Reject { piece } => {
                let i = piece as usize;
                if let Some(slot) = self.slots.get_mut(i) {
                    if matches!(*slot, Slot::Requested { peer: p, .. } if p == peer) {
                        *slot = Slot::Missing;
                        if let Some(state) = self.peers.get_mut(&peer) {
                            state.outstanding -= 1;
                            if let Some(rejected) = state.rejected.get_mut(i) {
                                *rejected = true;
                            }
                        }
                    }
                }
                Ok(())
            }
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => {
                let i = piece as usize;
                if self.is_complete() {
                    return Ok(());
                }
                if !self.peers.contains_key(&peer) {
                    return Err(MetadataFault::Unrequested { piece });
                }
                match self.slots.get(i) {
                    Some(Slot::Requested { peer: p, .. }) if *p == peer => {}
                    // A late answer to a request that timed out and went elsewhere is harmless.
                    Some(Slot::Have { .. }) | Some(Slot::Requested { .. }) => return Ok(()),
                    _ => return Err(MetadataFault::Unrequested { piece }),
                }
                // The codec checked the length against `total_size`, so that must be ours.
                if Some(total_size) != self.size {
                    return Err(MetadataFault::WrongSize { piece });
                }
                let start = i * METADATA_PIECE_LEN as usize;
                self.buffer[start..start + data.len()].copy_from_slice(data);
                self.slots[i] = Slot::Have { from: peer };
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.outstanding -= 1;
                }
                self.finish_if_complete();
                Ok(())
            }
        }
    }

    /// `peer` is gone: its requests go to others.
    pub fn remove_peer(&mut self, peer: PeerKey) {
        if self.peers.remove(&peer).is_some() {
            self.release(peer);
        }
    }

    /// Re-requests what timed out. Call at [`MetadataFetch::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut late = Vec::new();
        for slot in &mut self.slots {
            if let Slot::Requested { peer, at } = *slot {
                if now.saturating_duration_since(at) >= REQUEST_TIMEOUT {
                    *slot = Slot::Missing;
                    late.push(peer);
                }
            }
        }
        for peer in late {
            // An excluded peer's count was reset with its other requests.
            let Some(state) = self.peers.get_mut(&peer).filter(|s| !s.excluded) else {
                continue;
            };
            state.outstanding -= 1;
            state.timeouts += 1;
            if state.timeouts >= MAX_TIMEOUTS {
                self.exclude(peer);
                self.faults.push((peer, MetadataFault::TooSlow));
            }
        }
        self.schedule(now);
    }

    /// When [`MetadataFetch::handle_timeout`] is next due, if any request is outstanding.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| match s {
                Slot::Requested { at, .. } => Some(*at + REQUEST_TIMEOUT),
                _ => None,
            })
            .min()
    }

    /// The messages to send, in order.
    pub fn drain_outgoing(&mut self) -> std::vec::Drain<'_, Outgoing> {
        self.outgoing.drain(..)
    }

    /// The next peer found useless since the last call (timeouts, bad metadata); the caller should
    /// disconnect it.
    pub fn poll_fault(&mut self) -> Option<(PeerKey, MetadataFault)> {
        self.faults.pop()
    }

    /// The verified metadata (bencoded `info` dictionary whose SHA-1 is the info hash), once, when
    /// the fetch is complete.
    pub fn take_metadata(&mut self) -> Option<Vec<u8>> {
        let done = self.done.take();
        if done.is_some() {
            self.taken = true;
        }
        done
    }

    /// True once the metadata is verified.
    pub fn is_complete(&self) -> bool {
        self.done.is_some() || self.taken
    }

    /// How far the fetch is.
    pub fn progress(&self) -> FetchProgress {
        FetchProgress {
            peers: self.usable_peers().count(),
            pieces_have: self
                .slots
                .iter()
                .filter(|s| matches!(s, Slot::Have { .. }))
                .count() as u32,
            piece_count: self.slots.len() as u32,
        }
    }

    fn usable_peers(&self) -> impl Iterator<Item = (&PeerKey, &Peer)> {
        let size = self.size;
        self.peers
            .iter()
            .filter(move |(_, p)| !p.excluded && Some(p.size) == size)
    }

    fn start(&mut self, size: u32) {
        self.size = Some(size);
        self.buffer = vec![0; size as usize];
        self.slots = vec![Slot::Missing; metadata_piece_count(size) as usize];
        for peer in self.peers.values_mut() {
            peer.outstanding = 0;
            peer.rejected = vec![false; self.slots.len()];
        }
    }

    /// Hands missing pieces to usable peers with free request slots: those with the fewest timeouts
    /// first, then the least loaded.
    fn schedule(&mut self, now: Instant) {
        if self.is_complete() {
            return;
        }
        if self.size.is_none() {
            // After a hash failure: the size some peer that did not contribute announced.
            let next = self.peers.values().find(|p| !p.excluded).map(|p| p.size);
            match next {
                Some(size) => self.start(size),
                None => return,
            }
        }
        self.check_solo();
        let size = self.size;
        let solo = self.suspicion.as_ref().map(|s| s.solo);
        let mut free: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(k, p)| {
                !p.excluded
                    && Some(p.size) == size
                    && p.outstanding < REQUESTS_PER_PEER
                    && solo.is_none_or(|solo| solo == **k)
            })
            .map(|(k, _)| *k)
            .collect();
        free.sort_unstable();
        for i in 0..self.slots.len() {
            if free.is_empty() {
                break;
            }
            if self.slots[i] != Slot::Missing {
                continue;
            }
            let piece = i as u32;
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, k)| !self.peers[k].rejected.get(i).copied().unwrap_or(false))
                .min_by_key(|(_, k)| (self.peers[k].timeouts, self.peers[k].outstanding))
                .map(|(at, k)| (at, *k));
            let Some((at, peer)) = best else {
                continue;
            };
            let state = self.peers.get_mut(&peer).expect("free peers exist");
            state.outstanding += 1;
            let mut payload = Vec::new();
            MetadataMessage::Request { piece }.encode(&mut payload);
            self.outgoing.push(Outgoing {
                peer,
                id: state.id,
                payload,
            });
            if state.outstanding >= REQUESTS_PER_PEER {
                free.swap_remove(at);
            }
            self.slots[i] = Slot::Requested { peer, at: now };
        }
    }

    fn finish_if_complete(&mut self) {
        if !self.slots.iter().all(|s| matches!(s, Slot::Have { .. })) {
            return;
        }
        // A v1 info hash is the SHA-1 of the bytes; a v2 one (BEP 52) the SHA-256, truncated to the
        // 20 bytes asked for. A hybrid's metadata matches either.
        if sha1(&self.buffer) == self.info_hash.0 || sha256(&self.buffer)[..20] == self.info_hash.0
        {
            if let Some(suspicion) = self.suspicion.take() {
                self.blame_differences(&suspicion);
            }
            self.done = Some(std::mem::take(&mut self.buffer));
            self.slots.clear();
            return;
        }
        let owners: Vec<PeerKey> = self
            .slots
            .iter()
            .filter_map(|s| match s {
                Slot::Have { from } => Some(*from),
                _ => None,
            })
            .collect();
        // Contributors, the one that sent the most first.
        let mut contributors: Vec<(usize, PeerKey)> = Vec::new();
        for &peer in &owners {
            match contributors.iter_mut().find(|(_, p)| *p == peer) {
                Some((count, _)) => *count += 1,
                None => contributors.push((1, peer)),
            }
        }
        contributors.sort_by_key(|&(count, peer)| (std::cmp::Reverse(count), peer));
        let mut contributors: Vec<PeerKey> = contributors.into_iter().map(|(_, p)| p).collect();
        if let [liar] = contributors[..] {
            // One sender: it lied (also when it was the suspicion's solo peer).
            self.blame(liar);
            match self.suspicion.as_mut() {
                Some(suspicion) if !suspicion.next.is_empty() => {
                    suspicion.solo = suspicion.next.remove(0);
                    self.restart();
                }
                _ => {
                    // The next scheduling round starts over with a size from the peers left.
                    self.suspicion = None;
                    self.size = None;
                    self.slots.clear();
                    self.buffer = Vec::new();
                }
            }
            return;
        }
        let solo = contributors.remove(0);
        self.suspicion = Some(Suspicion {
            old: std::mem::take(&mut self.buffer),
            owners,
            solo,
            next: contributors,
        });
        self.restart();
    }

    /// Excludes `peer` as a sender of bad metadata (once).
    fn blame(&mut self, peer: PeerKey) {
        if self.peers.get(&peer).is_some_and(|p| p.excluded) {
            return;
        }
        self.exclude(peer);
        self.faults.push((peer, MetadataFault::BadMetadata));
    }

    /// After verified metadata, blames the contributors of the failed copy whose pieces differ.
    fn blame_differences(&mut self, suspicion: &Suspicion) {
        let piece = METADATA_PIECE_LEN as usize;
        let mut liars: Vec<PeerKey> = suspicion
            .old
            .chunks(piece)
            .zip(self.buffer.chunks(piece))
            .zip(&suspicion.owners)
            .filter(|((old, good), _)| old != good)
            .map(|(_, owner)| *owner)
            .collect();
        liars.sort_unstable();
        liars.dedup();
        for liar in liars {
            self.blame(liar);
        }
    }

    /// Starts the same size over (for the suspicion's solo peer).
    fn restart(&mut self) {
        let size = self.size.expect("a fetch had a size");
        self.start(size);
    }

    /// Moves the suspicion on when its solo peer cannot finish (gone, excluded, or it rejected a
    /// missing piece); ends it when no contributor is left, so the others are used again.
    fn check_solo(&mut self) {
        loop {
            let Some(suspicion) = &mut self.suspicion else {
                return;
            };
            let usable = self.peers.get(&suspicion.solo).is_some_and(|p| {
                !p.excluded
                    && Some(p.size) == self.size
                    && !self
                        .slots
                        .iter()
                        .zip(&p.rejected)
                        .any(|(slot, rejected)| *rejected && *slot == Slot::Missing)
            });
            if usable {
                return;
            }
            if suspicion.next.is_empty() {
                self.suspicion = None;
                return;
            }
            suspicion.solo = suspicion.next.remove(0);
            self.restart();
        }
    }

    /// Takes `peer` out of the fetch; its requests go back.
    fn exclude(&mut self, peer: PeerKey) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.excluded = true;
        }
        self.release(peer);
    }

    /// Puts `peer`'s outstanding requests back.
    fn release(&mut self, peer: PeerKey) {
        for slot in &mut self.slots {
            if matches!(slot, Slot::Requested { peer: p, .. } if *p == peer) {
                *slot = Slot::Missing;
            }
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            state.outstanding = 0;
        }
    }
}

#[cfg(test)]
mod tests;
