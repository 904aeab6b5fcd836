//! Pinning a failed v2 piece on the block, and so the peer, that was bad (BEP 52). Checking a v2
//! piece computes the hash of each of its 16 KiB blocks ([`LeafEvidence`]); on a mismatch they
//! are kept here with the address that sent each block, and the true leaf hashes of that piece
//! are asked of a peer that has it (`hash request`, base layer 0, proven up to the piece's hash in
//! the piece layer, which we trust already). The blocks whose hashes differ name their senders,
//! and only those are blamed; a reply that does not hash up is the answerer's lie. When nobody
//! answers (rejects, timeouts, no peer has the piece), the piece is [`Verdict::Unresolved`] and
//! the caller falls back to blaming every contributor, as for a v1 piece.
//!
//! Sans-IO: the engine ([`crate::torrent`]) owns an [`Inquiries`], feeds it failures, replies,
//! departures and the time, and sends the requests it returns. Memory: at most
//! [`MAX_INQUIRIES`] open at once, each holding 32 bytes of hash and one address per block of its
//! piece.

use std::net::IpAddr;
use std::time::Duration;

use crate::PieceIndex;
use crate::hashes::{self, HashRequest};
use crate::merkle::{Hash256, LeafEvidence};
use crate::time::Instant;

/// How long an asked peer may take to answer before another is asked.
pub const INQUIRY_TIMEOUT: Duration = Duration::from_secs(10);
/// Peers asked for one piece's leaves (each after the last rejected, timed out, left or lied)
/// before the piece is given up as [`Verdict::Unresolved`].
pub const MAX_ASKED: usize = 3;
/// Failed pieces being resolved at once; a failure beyond them is unresolved at once.
pub const MAX_INQUIRIES: usize = 8;

/// The outcome for one failed piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The proven leaf hashes show these addresses sent the bad blocks (each once).
    Pinned {
        /// The piece.
        piece: PieceIndex,
        /// The senders of the bad blocks.
        culprits: Vec<IpAddr>,
    },
    /// No proven answer: blame falls back on every contributor.
    Unresolved {
        /// The piece.
        piece: PieceIndex,
        /// Every address that sent a block of it.
        contributors: Vec<IpAddr>,
    },
}

/// What a `hashes` or `hash reject` reply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<K> {
    /// It answered nothing we asked of this peer (late, or never asked): ignored.
    Ignored,
    /// A rejection (no verdict), or a proven answer: the verdicts of every open failure of that
    /// piece (it may have failed again while the first was being resolved).
    Handled(Vec<Verdict>),
    /// Hashes that do not hash up to the node we trust: the answerer `K` lied, and is not asked
    /// again.
    Lied(K),
}

#[derive(Debug)]
struct Inquiry<K> {
    piece: PieceIndex,
    evidence: Box<LeafEvidence>,
    /// The address that sent each block of the piece, in block order.
    senders: Vec<IpAddr>,
    /// The peer asked now, and since when.
    asked: Option<(K, Instant)>,
    /// Every peer asked so far (never asked twice).
    tried: Vec<K>,
}

impl<K> Inquiry<K> {
    fn contributors(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for ip in &self.senders {
            if !out.contains(ip) {
                out.push(*ip);
            }
        }
        out
    }

    /// The senders of the blocks whose leaves differ from `truth`, or whose padding was not zero.
    fn culprits(&self, truth: &[Hash256]) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for (i, ip) in self.senders.iter().enumerate() {
            let bad_leaf = self
                .evidence
                .leaves
                .get(i)
                .is_some_and(|leaf| truth.get(i) != Some(leaf));
            let bad = bad_leaf || self.evidence.bad_padding.contains(&(i as u32));
            if bad && !out.contains(ip) {
                out.push(*ip);
            }
        }
        out
    }

    fn verdict(&self, culprits: Vec<IpAddr>) -> Verdict {
        if culprits.is_empty() {
            Verdict::Unresolved {
                piece: self.piece,
                contributors: self.contributors(),
            }
        } else {
            Verdict::Pinned {
                piece: self.piece,
                culprits,
            }
        }
    }
}

/// The failed v2 pieces being resolved, keyed by the caller's peer keys `K`.
#[derive(Debug)]
pub struct Inquiries<K> {
    open: Vec<Inquiry<K>>,
}

impl<K> Default for Inquiries<K> {
    fn default() -> Inquiries<K> {
        Inquiries { open: Vec::new() }
    }
}

impl<K: Copy + Eq> Inquiries<K> {
    /// A piece failed its v2 check: `evidence` from the check, `senders` the address that sent
    /// each of its blocks, in order. Returns the verdict at once when none is needed from a peer
    /// (only padding was bad) or none can be had (too many inquiries open, or the evidence does
    /// not fit the piece); otherwise the piece waits for [`Inquiries::poll`] to ask a peer.
    pub fn open(
        &mut self,
        piece: PieceIndex,
        evidence: Box<LeafEvidence>,
        senders: Vec<IpAddr>,
    ) -> Option<Verdict> {
        let inquiry = Inquiry {
            piece,
            evidence,
            senders,
            asked: None,
            tried: Vec::new(),
        };
        let fits = inquiry.evidence.leaves.len() <= inquiry.senders.len();
        if fits && inquiry.evidence.content_is_good() {
            let bad: Vec<Hash256> = inquiry.evidence.leaves.clone();
            return Some(inquiry.verdict(inquiry.culprits(&bad)));
        }
        if !fits || self.open.len() >= MAX_INQUIRIES {
            return Some(Verdict::Unresolved {
                piece,
                contributors: inquiry.contributors(),
            });
        }
        self.open.push(inquiry);
        None
    }

    /// True while `piece` is being resolved.
    pub fn is_open(&self, piece: PieceIndex) -> bool {
        self.open.iter().any(|i| i.piece == piece)
    }

    /// How many pieces are being resolved.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// True when no piece is being resolved.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The peers asked now, for [`crate::torrent::Torrent::check_invariants`].
    pub fn asked(&self) -> impl Iterator<Item = K> + '_ {
        self.open.iter().filter_map(|i| i.asked.map(|(k, _)| k))
    }

    /// Asks for every open piece that waits: drops answers overdue at `now`, then asks the first
    /// of `candidates(piece)` (peers that have the piece, best first) not yet asked. Returns the
    /// requests to send, and the verdicts of pieces no peer is left to ask for.
    pub fn poll(
        &mut self,
        now: Instant,
        mut candidates: impl FnMut(PieceIndex) -> Vec<K>,
    ) -> (Vec<(K, HashRequest)>, Vec<Verdict>) {
        let mut requests = Vec::new();
        let mut verdicts = Vec::new();
        self.open.retain_mut(|inquiry| {
            if let Some((_, at)) = inquiry.asked {
                if now.saturating_duration_since(at) < INQUIRY_TIMEOUT {
                    return true;
                }
                inquiry.asked = None;
            }
            let next = (inquiry.tried.len() < MAX_ASKED)
                .then(|| {
                    candidates(inquiry.piece)
                        .into_iter()
                        .find(|k| !inquiry.tried.contains(k))
                })
                .flatten();
            match next {
                Some(key) => {
                    inquiry.asked = Some((key, now));
                    inquiry.tried.push(key);
                    requests.push((key, hashes::leaf_request(&inquiry.evidence)));
                    true
                }
                None => {
                    verdicts.push(inquiry.verdict(Vec::new()));
                    false
                }
            }
        });
        (requests, verdicts)
    }

    /// A `hashes` reply from `key`, decoded. A proven answer decides its piece; one that does not
    /// hash up is a lie, and its piece waits for the next [`Inquiries::poll`] to ask another peer.
    pub fn on_hashes(&mut self, key: K, request: &HashRequest, hashes: &[Hash256]) -> Reply<K> {
        let Some(at) = self.asked_of(key, request) else {
            return Reply::Ignored;
        };
        let inquiry = &mut self.open[at];
        match hashes::verify_leaves(&inquiry.evidence, request, hashes) {
            Some(truth) => {
                // The truth settles every failure of the piece, asked or not.
                let piece = inquiry.piece;
                let mut verdicts = Vec::new();
                self.open.retain(|i| {
                    let same = i.piece == piece && i.evidence.first_leaf == request.index;
                    if same {
                        verdicts.push(i.verdict(i.culprits(&truth)));
                    }
                    !same
                });
                Reply::Handled(verdicts)
            }
            None => {
                inquiry.asked = None;
                Reply::Lied(key)
            }
        }
    }

    /// A `hash reject` from `key`: its piece waits for the next [`Inquiries::poll`].
    pub fn on_reject(&mut self, key: K, request: &HashRequest) -> Reply<K> {
        match self.asked_of(key, request) {
            Some(at) => {
                self.open[at].asked = None;
                Reply::Handled(Vec::new())
            }
            None => Reply::Ignored,
        }
    }

    /// `key` is gone: what it was asked waits for the next [`Inquiries::poll`].
    pub fn remove_peer(&mut self, key: K) {
        for inquiry in &mut self.open {
            if inquiry.asked.is_some_and(|(k, _)| k == key) {
                inquiry.asked = None;
            }
        }
    }

    /// The open inquiry that asked `key` for `request`.
    fn asked_of(&self, key: K, request: &HashRequest) -> Option<usize> {
        self.open.iter().position(|i| {
            i.asked.is_some_and(|(k, _)| k == key)
                && hashes::leaf_request(&i.evidence).index == request.index
                && i.evidence.pieces_root == request.pieces_root
                && request.base_layer == 0
        })
    }
}

#[cfg(test)]
mod tests;
