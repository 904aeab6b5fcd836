//! Fetching the piece layers of a v2 torrent from peers (BEP 52 hash requests): what a torrent
//! started from a magnet link needs before it can check a piece, since the metadata exchange (BEP 9)
//! carries only the `info` dictionary and the layers sit beside it in a .torrent file.
//!
//! Each file longer than one piece needs its layer, asked in chunks of at most 512 hashes with the
//! uncle hashes up to the file's `pieces root` ([`hashes::layer_requests`]); a reply is kept only
//! once it hashes up to that root ([`hashes::verify`]). One request per peer at a time; a rejected
//! request goes to another peer, an unanswered one after [`LAYER_REQUEST_TIMEOUT`], and a peer whose
//! reply does not verify is reported as a fault. Memory: the requests (one per 512 pieces) and the
//! verified hashes, 32 bytes per piece.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::hashes::{self, HashMessage, HashRequest};
use crate::merkle::Hash256;
use crate::metainfo::Info;
use crate::time::Instant;

/// How long a hash request may stay unanswered before it goes to another peer.
pub const LAYER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Identifies a peer connection; chosen by the caller.
pub type PeerKey = u64;

/// Why a peer is of no further use to the layer fetch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerFault {
    /// A `hashes` reply that does not hash up to the file's `pieces root`, or answers nothing we
    /// asked it.
    #[error("sent piece-layer hashes that do not match the pieces root")]
    BadHashes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Missing,
    Requested { peer: PeerKey, at: Instant },
    Have(Vec<Hash256>),
}

#[derive(Debug, Default)]
struct Peer {
    busy: bool,
    /// Requests it rejected; not asked of it again.
    rejected: Vec<usize>,
    excluded: bool,
}

/// The state of one piece-layer fetch.
#[derive(Debug)]
pub struct LayerFetch {
    /// (pieces root, piece count, request, state) per request.
    requests: Vec<(Hash256, u32, HashRequest, State)>,
    peers: BTreeMap<PeerKey, Peer>,
    outgoing: Vec<(PeerKey, HashMessage)>,
}

impl LayerFetch {
    /// The fetch of every piece layer `info` lacks; `None` when it lacks none (a v1 torrent, or
    /// every file within one piece).
    pub fn new(info: &Info) -> Option<LayerFetch> {
        let v2 = info.v2.as_ref()?;
        let requests: Vec<_> = v2
            .files
            .iter()
            .filter(|f| f.piece_count > 1 && f.layer.is_none())
            .flat_map(|f| {
                hashes::layer_requests(f, info.piece_length)
                    .into_iter()
                    .map(|r| (f.pieces_root, f.piece_count, r, State::Missing))
            })
            .collect();
        (!requests.is_empty()).then(|| LayerFetch {
            requests,
            peers: BTreeMap::new(),
            outgoing: Vec::new(),
        })
    }

    /// A peer to ask (after its handshake); requests go to it at the next scheduling.
    pub fn add_peer(&mut self, peer: PeerKey, now: Instant) {
        self.peers.entry(peer).or_default();
        self.schedule(now);
    }

    /// `peer` is gone; what it was asked goes to others.
    pub fn remove_peer(&mut self, peer: PeerKey, now: Instant) {
        self.peers.remove(&peer);
        self.release(peer);
        self.schedule(now);
    }

    /// A hash message from `peer` (ids 21-23, decoded). Requests from the peer are rejected: we have
    /// no layers to give yet.
    ///
    /// Errors: the peer sent hashes that do not verify; it is excluded and should be disconnected.
    pub fn handle_message(
        &mut self,
        peer: PeerKey,
        message: &HashMessage,
        now: Instant,
    ) -> Result<(), LayerFault> {
        let result = self.on_message(peer, message);
        if result.is_err() {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.excluded = true;
            }
            self.release(peer);
        }
        self.schedule(now);
        result
    }

    fn on_message(&mut self, peer: PeerKey, message: &HashMessage) -> Result<(), LayerFault> {
        match message {
            HashMessage::Request(request) => {
                self.outgoing.push((peer, HashMessage::Reject(*request)));
                Ok(())
            }
            HashMessage::Reject(request) => {
                if let Some(i) = self.asked_of(peer, request) {
                    self.requests[i].3 = State::Missing;
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.busy = false;
                        p.rejected.push(i);
                    }
                }
                Ok(())
            }
            HashMessage::Hashes { request, hashes } => {
                let Some(i) = self.asked_of(peer, request) else {
                    // A late answer to a request that went elsewhere: harmless.
                    return Ok(());
                };
                let (root, count, _, _) = &self.requests[i];
                let proven =
                    hashes::verify(root, *count, request, hashes).ok_or(LayerFault::BadHashes)?;
                self.requests[i].3 = State::Have(proven);
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.busy = false;
                }
                Ok(())
            }
        }
    }

    /// The index of `request` if it is outstanding with `peer`.
    fn asked_of(&self, peer: PeerKey, request: &HashRequest) -> Option<usize> {
        self.requests.iter().position(|(_, _, r, state)| {
            r == request && matches!(state, State::Requested { peer: p, .. } if *p == peer)
        })
    }

    /// Sends requests that waited too long elsewhere. Call at [`LayerFetch::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        for (_, _, _, state) in &mut self.requests {
            if let State::Requested { peer, at } = *state {
                if now.saturating_duration_since(at) >= LAYER_REQUEST_TIMEOUT {
                    *state = State::Missing;
                    if let Some(p) = self.peers.get_mut(&peer) {
                        // A peer that does not answer is not asked again.
                        p.excluded = true;
                    }
                }
            }
        }
        self.schedule(now);
    }

    /// When [`LayerFetch::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.requests
            .iter()
            .filter_map(|(_, _, _, s)| match s {
                State::Requested { at, .. } => Some(*at + LAYER_REQUEST_TIMEOUT),
                _ => None,
            })
            .min()
    }

    /// The messages to send, in order.
    pub fn drain_outgoing(&mut self) -> std::vec::Drain<'_, (PeerKey, HashMessage)> {
        self.outgoing.drain(..)
    }

    /// True once every layer is verified.
    pub fn is_complete(&self) -> bool {
        self.requests
            .iter()
            .all(|(_, _, _, s)| matches!(s, State::Have(_)))
    }

    /// The verified layers as `piece layers` (BEP 52) holds them: each file's hashes, one per piece,
    /// by `pieces root`. Complete only once [`LayerFetch::is_complete`].
    pub fn layers(&self) -> BTreeMap<Hash256, Vec<Hash256>> {
        let mut out: BTreeMap<Hash256, Vec<Hash256>> = BTreeMap::new();
        for (root, count, _, state) in &self.requests {
            if let State::Have(hashes) = state {
                out.entry(*root).or_default().extend(hashes);
            }
            if let Some(layer) = out.get_mut(root) {
                layer.truncate(*count as usize);
            }
        }
        out
    }

    fn release(&mut self, peer: PeerKey) {
        for (_, _, _, state) in &mut self.requests {
            if matches!(state, State::Requested { peer: p, .. } if *p == peer) {
                *state = State::Missing;
            }
        }
    }

    fn schedule(&mut self, now: Instant) {
        for i in 0..self.requests.len() {
            if self.requests[i].3 != State::Missing {
                continue;
            }
            let free = self
                .peers
                .iter_mut()
                .find(|(_, p)| !p.busy && !p.excluded && !p.rejected.contains(&i));
            let Some((&key, peer)) = free else {
                return;
            };
            peer.busy = true;
            self.requests[i].3 = State::Requested { peer: key, at: now };
            self.outgoing
                .push((key, HashMessage::Request(self.requests[i].2)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::Metainfo;

    const V2: &[u8] = include_bytes!("../../../testdata/libtorrent-v2.torrent");

    #[test]
    fn layers_from_a_liar_and_an_honest_peer_make_the_torrent() {
        let full = Metainfo::from_bytes(V2).unwrap();
        let bare = Info::from_bytes(&full.info_bytes).unwrap();
        let mut fetch = LayerFetch::new(&bare).unwrap();
        let now = Instant::ZERO;
        fetch.add_peer(1, now);
        fetch.add_peer(2, now);
        let serving = full.info.v2.as_ref().unwrap();
        let mut rounds = 0;
        while !fetch.is_complete() {
            rounds += 1;
            assert!(rounds < 10);
            let asked: Vec<_> = fetch.drain_outgoing().collect();
            assert!(!asked.is_empty());
            for (peer, message) in asked {
                let HashMessage::Request(request) = message else {
                    panic!("expected a request")
                };
                let file = serving
                    .files
                    .iter()
                    .find(|f| f.pieces_root == request.pieces_root)
                    .unwrap();
                let mut hashes = hashes::serve(file, &request, full.info.piece_length).unwrap();
                if peer == 1 {
                    hashes[0][0] ^= 1; // the liar
                    assert_eq!(
                        fetch.handle_message(peer, &HashMessage::Hashes { request, hashes }, now),
                        Err(LayerFault::BadHashes)
                    );
                } else {
                    fetch
                        .handle_message(peer, &HashMessage::Hashes { request, hashes }, now)
                        .unwrap();
                }
            }
        }
        let layers = fetch.layers();
        for file in serving.files.iter().filter(|f| f.piece_count > 1) {
            assert_eq!(Some(&layers[&file.pieces_root]), file.layer.as_ref());
        }
        let made = Metainfo::from_info_bytes_and_layers(&full.info_bytes, vec![], &layers).unwrap();
        assert_eq!(made.info, full.info);
        assert_eq!(made.info_hash, full.info_hash);
    }
}
