//! The download state machine of one torrent: the one place that decides what to request from whom,
//! when a peer is faulty, and when a piece is ready for verification (BEP 3, "peer protocol").
//!
//! It is sans-IO: the driver feeds it connection events, decoded peer messages and verification results,
//! always with the current time, and drains [`Action`]s (messages to send, connections to close, pieces
//! to verify) and [`Event`]s. The only timer is a once-a-second tick ([`Torrent::poll_timeout`]), which
//! updates rates, sizes request queues, times out stuck requests and silent peers, and sends keep-alives.
//!
//! Invariants (checked by [`Torrent::check_invariants`]):
//! - every block in a peer's in-flight list is counted once in the picker's outstanding requests;
//! - `unverified_bytes` is the size of all piece buffers held plus pieces out for verification;
//! - a peer is interested-in exactly when it has a piece we have not verified.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::bitfield::BitfieldError;
use crate::picker::{BlockOutcome, Picker};
use crate::wire::{BlockRequest, Message};
use crate::{BLOCK_SIZE, Bitfield, BlockRef, Layout, PieceIndex};

/// Tunables of the download engine. [`Config::default`] gives the values used by the CLI.
#[derive(Debug, Clone)]
pub struct Config {
    /// Outstanding requests per peer before its rate is known (blocks of 16 KiB). BEP 3 leaves this to the
    /// client; a deep start matters on fast links.
    pub initial_queue: u32,
    /// Upper bound of outstanding requests per peer (blocks), further capped by the peer's BEP 10 `reqq`.
    pub max_queue: u32,
    /// Outstanding requests assumed when a peer sends no `reqq`: the BEP 10 suggestion is 250.
    pub default_peer_reqq: u32,
    /// Seconds of a peer's measured download rate to keep in flight.
    pub queue_seconds: f64,
    /// A peer with outstanding requests that delivers nothing for this long loses them to other peers.
    pub request_timeout: Duration,
    /// A peer that sends nothing at all for this long is disconnected (BEP 3 suggests two minutes).
    pub peer_timeout: Duration,
    /// We send a keep-alive after this long without sending anything.
    pub keepalive_interval: Duration,
    /// Memory for pieces not yet verified (buffers being filled plus pieces being hashed), in bytes. New
    /// pieces are started only while below it (a peer with nothing in flight may go up to
    /// [`HEADROOM_PIECES`] pieces over it, so a departed peer's half-done pieces cannot stall the
    /// download). Buffers kept for reuse count against it too.
    pub max_unverified_bytes: u64,
    /// Trust at or below which a peer's address is banned (each good piece it contributed to adds 1, each
    /// failed piece takes 2, or 4 when it sent the whole piece).
    pub ban_trust: i32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            initial_queue: 32,
            max_queue: 1000,
            default_peer_reqq: 250,
            queue_seconds: 2.0,
            request_timeout: Duration::from_secs(20),
            peer_timeout: Duration::from_secs(120),
            keepalive_interval: Duration::from_secs(60),
            max_unverified_bytes: 32 * 1024 * 1024,
            ban_trust: -7,
        }
    }
}

/// A connection as the engine knows it, assigned by [`Torrent::add_peer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(u64);

/// What the handshake told us about a newly connected peer.
#[derive(Debug, Clone, Copy)]
pub struct PeerInfo {
    /// The peer's address (its listening address when we dialled it).
    pub addr: SocketAddr,
    /// Both sides set the Fast Extension bit (BEP 6): `have all`/`have none`/`reject` are in use.
    pub fast: bool,
    /// Both sides set the extension protocol bit (BEP 10).
    pub extensions: bool,
}

/// A message for a peer, owned, as the engine produces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// BEP 3 keep-alive.
    KeepAlive,
    /// BEP 3 `interested`.
    Interested,
    /// BEP 3 `not interested`.
    NotInterested,
    /// BEP 3 `request` for a block.
    Request(BlockRef),
    /// BEP 3 `cancel` of an earlier request.
    Cancel(BlockRef),
    /// BEP 3 `have`.
    Have(PieceIndex),
    /// BEP 3 `bitfield` with the pieces we have.
    Bitfield(Bitfield),
    /// BEP 6 `have none`.
    HaveNone,
    /// BEP 6 `have all`.
    HaveAll,
    /// BEP 6 `reject request`.
    Reject(BlockRequest),
    /// BEP 10 extended message: id and bencoded payload.
    Extended(u8, Vec<u8>),
}

impl Outgoing {
    /// The wire form of the message (BEP 3 section "peer messages"), borrowing from `self`.
    pub fn to_message(&self) -> Message<'_> {
        let req = |b: &BlockRef| BlockRequest {
            index: b.piece.get(),
            begin: b.offset,
            length: b.length,
        };
        match self {
            Outgoing::KeepAlive => Message::KeepAlive,
            Outgoing::Interested => Message::Interested,
            Outgoing::NotInterested => Message::NotInterested,
            Outgoing::Request(b) => Message::Request(req(b)),
            Outgoing::Cancel(b) => Message::Cancel(req(b)),
            Outgoing::Have(p) => Message::Have(p.get()),
            Outgoing::Bitfield(b) => Message::Bitfield(b.as_bytes()),
            Outgoing::HaveNone => Message::HaveNone,
            Outgoing::HaveAll => Message::HaveAll,
            Outgoing::Reject(r) => Message::Reject(*r),
            Outgoing::Extended(id, payload) => Message::Extended { id: *id, payload },
        }
    }
}

/// Why the engine closes a connection, sorted by whose fault it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerFault {
    /// The peer sent bytes that do not parse as the protocol says.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The peer sent well-formed messages that break the protocol's rules.
    #[error("misbehaved: {0}")]
    Misbehaved(Offence),
    /// The peer did nothing wrong, but is of no use to us now.
    #[error("not useful: {0}")]
    Useless(&'static str),
}

/// The rule a misbehaving peer broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Offence {
    /// `bitfield`, `have all` or `have none` after the first message (BEP 3, BEP 6).
    #[error("piece availability message after the first message")]
    LateBitfield,
    /// A bitfield of the wrong length or with spare bits set (BEP 3).
    #[error("{0}")]
    BadBitfield(BitfieldError),
    /// A BEP 6 message without the Fast Extension negotiated.
    #[error("fast extension message without the fast extension")]
    FastNotNegotiated,
    /// `have` of a piece past the last one.
    #[error("have of piece {0}, past the last piece")]
    HaveOutOfRange(u32),
    /// A `piece` message that is not a block of this torrent's layout.
    #[error("block (piece {index}, offset {begin}, {length} bytes) is not in the torrent")]
    BlockOutOfRange {
        /// Piece index sent.
        index: u32,
        /// Offset sent.
        begin: u32,
        /// Data length sent.
        length: u32,
    },
    /// Sent data that failed the piece hash too often; its address is banned.
    #[error("sent data that failed verification")]
    HashFailures,
    /// Nothing received for [`Config::peer_timeout`].
    #[error("silent for {0:?}")]
    Silent(Duration),
}

/// Work for the driver, drained with [`Torrent::poll_action`].
#[derive(Debug)]
pub enum Action {
    /// Send `message` to `peer`.
    Send {
        /// The connection.
        peer: PeerKey,
        /// What to send.
        message: Outgoing,
    },
    /// Close the connection to `peer` (the engine has already forgotten it).
    Disconnect {
        /// The connection.
        peer: PeerKey,
        /// Why.
        fault: PeerFault,
    },
    /// Hash `data` (all of `piece`), and if it matches write it to disk; then call
    /// [`Torrent::handle_piece_verified`] with the buffer.
    VerifyPiece {
        /// The piece.
        piece: PieceIndex,
        /// Exactly the piece's bytes.
        data: Vec<u8>,
    },
}

/// Things that happened, for progress reports and logs, drained with [`Torrent::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A piece passed its hash check and was written.
    PieceVerified(PieceIndex),
    /// A piece failed its hash check; these addresses sent some of it.
    HashFailed {
        /// The piece, now to be downloaded again.
        piece: PieceIndex,
        /// Every address that contributed a block.
        peers: Vec<IpAddr>,
    },
    /// An address is banned after repeated bad data.
    Banned(IpAddr),
    /// Every piece is verified.
    Complete,
}

/// Counters for progress reports and trackers (bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Payload bytes received in `piece` messages, including discarded ones.
    pub downloaded: u64,
    /// Payload bytes received that were not needed (duplicates, unrequested) or failed verification.
    pub wasted: u64,
    /// Bytes of verified pieces.
    pub verified: u64,
    /// Bytes still to verify (`left` in a tracker announce).
    pub left: u64,
    /// Connected peers.
    pub peers: usize,
    /// Peers that are not choking us.
    pub unchoked_by: usize,
    /// Total download rate over the last second, bytes/s.
    pub download_rate: u64,
}

#[derive(Debug)]
struct Peer {
    info: PeerInfo,
    bitfield: Bitfield,
    first_message: bool,
    peer_choking: bool,
    am_interested: bool,
    /// Pieces the peer has that we have not verified.
    wanted: u32,
    in_flight: VecDeque<BlockRef>,
    queue_target: u32,
    reqq: Option<u32>,
    last_received: Instant,
    last_block: Instant,
    last_sent: Instant,
    bytes_this_tick: u64,
    /// Smoothed download rate from this peer, bytes/s.
    rate: f64,
}

#[derive(Debug)]
struct PieceBuffer {
    data: Vec<u8>,
    contributors: Vec<IpAddr>,
}

/// Pieces a peer with nothing in flight may start beyond [`Config::max_unverified_bytes`].
pub const HEADROOM_PIECES: u64 = 4;

/// The most piece buffers kept for reuse after verification. Within this and the memory budget, steady
/// state allocates (and zeroes) no buffer at all.
const MAX_BUFFER_POOL: usize = 64;

/// The engine of one torrent's download. See the module documentation.
#[derive(Debug)]
pub struct Torrent {
    layout: Layout,
    config: Config,
    picker: Picker,
    have: Bitfield,
    peers: HashMap<PeerKey, Peer>,
    next_key: u64,
    buffers: HashMap<PieceIndex, PieceBuffer>,
    verifying: HashMap<PieceIndex, Vec<IpAddr>>,
    pool: Vec<Vec<u8>>,
    unverified_bytes: u64,
    trust: HashMap<IpAddr, i32>,
    banned: HashSet<IpAddr>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    next_tick: Option<Instant>,
    last_tick: Option<Instant>,
    stats: Stats,
    scratch: Vec<BlockRef>,
}

impl Torrent {
    /// An engine for a torrent of `layout` of which the pieces in `have` are verified already. `seed`
    /// makes piece-order tie-breaks reproducible (tests pass a constant, the client a random number).
    pub fn new(layout: Layout, have: Bitfield, config: Config, seed: u64) -> Torrent {
        let mut rng = SmallRng::seed_from_u64(seed);
        let picker = Picker::new(&layout, &have, &mut rng);
        let verified: u64 = have
            .iter_ones()
            .filter_map(|i| layout.piece(i as u32))
            .map(|p| u64::from(layout.piece_len(p)))
            .sum();
        let stats = Stats {
            verified,
            left: layout.total_length() - verified,
            ..Stats::default()
        };
        Torrent {
            layout,
            config,
            picker,
            have,
            peers: HashMap::new(),
            next_key: 0,
            buffers: HashMap::new(),
            verifying: HashMap::new(),
            pool: Vec::new(),
            unverified_bytes: 0,
            trust: HashMap::new(),
            banned: HashSet::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            next_tick: None,
            last_tick: None,
            stats,
            scratch: Vec::new(),
        }
    }

    /// The torrent's layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The verified pieces.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// True when every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    /// Progress counters.
    pub fn stats(&self) -> Stats {
        Stats {
            peers: self.peers.len(),
            unchoked_by: self.peers.values().filter(|p| !p.peer_choking).count(),
            ..self.stats
        }
    }

    /// True when `ip` sent bad data too often: the driver must not connect to it or accept it.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.banned.contains(&ip)
    }

    /// A connection finished its handshake. Returns its key; queues our piece availability message.
    pub fn add_peer(&mut self, info: PeerInfo, now: Instant) -> PeerKey {
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        self.peers.insert(
            key,
            Peer {
                info,
                bitfield: Bitfield::new(self.layout.piece_count() as usize),
                first_message: true,
                peer_choking: true,
                am_interested: false,
                wanted: 0,
                in_flight: VecDeque::new(),
                queue_target: self.config.initial_queue,
                reqq: None,
                last_received: now,
                last_block: now,
                last_sent: now,
                bytes_this_tick: 0,
                rate: 0.0,
            },
        );
        if info.extensions {
            self.send(key, Outgoing::Extended(0, extension_handshake()), now);
        }
        let have_count = self.have.count_ones();
        if info.fast && have_count == 0 {
            self.send(key, Outgoing::HaveNone, now);
        } else if info.fast && self.have.is_full() {
            self.send(key, Outgoing::HaveAll, now);
        } else if have_count > 0 {
            self.send(key, Outgoing::Bitfield(self.have.clone()), now);
        }
        if self.next_tick.is_none() {
            self.next_tick = Some(now + Duration::from_secs(1));
        }
        key
    }

    /// A connection closed (by the peer, by an IO error, or after a [`Action::Disconnect`]): its
    /// outstanding requests go back to the picker.
    pub fn remove_peer(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        self.picker.remove_availability(&peer.bitfield);
        for block in peer.in_flight {
            self.picker.request_dropped(block);
        }
    }

    /// One message from `peer`, decoded. Unknown messages are ignored (BEP 3 leaves room for extensions).
    pub fn handle_message(&mut self, key: PeerKey, message: Message<'_>, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.last_received = now;
        // Piece availability must come first (BEP 3, BEP 6), but clients differ on whether the BEP 10
        // extension handshake (or a BEP 5 `port`) goes before it, so those do not use up the slot.
        let first = if matches!(message, Message::Extended { .. } | Message::Port(_)) {
            peer.first_message
        } else {
            std::mem::replace(&mut peer.first_message, false)
        };
        let fast = peer.info.fast;
        let result = match message {
            Message::KeepAlive | Message::Port(_) | Message::Suggest(_) => Ok(()),
            Message::Unknown { .. } | Message::AllowedFast(_) => Ok(()),
            Message::Choke => {
                self.on_choke(key);
                Ok(())
            }
            Message::Unchoke => {
                peer.peer_choking = false;
                self.fill_requests(key, now);
                Ok(())
            }
            // The peer's interest matters only to a choker, and we do not upload yet.
            Message::Interested | Message::NotInterested => Ok(()),
            Message::Have(index) => self.on_have(key, index, now),
            Message::Bitfield(bytes) if first => {
                match Bitfield::from_bytes(bytes, self.layout.piece_count() as usize) {
                    Ok(bits) => {
                        self.on_availability(key, bits, now);
                        Ok(())
                    }
                    Err(e) => Err(PeerFault::Misbehaved(Offence::BadBitfield(e))),
                }
            }
            Message::HaveAll | Message::HaveNone if !fast => {
                Err(PeerFault::Misbehaved(Offence::FastNotNegotiated))
            }
            Message::HaveAll if first => {
                let n = self.layout.piece_count() as usize;
                self.on_availability(key, Bitfield::full(n), now);
                Ok(())
            }
            Message::HaveNone if first => Ok(()),
            Message::Bitfield(_) | Message::HaveAll | Message::HaveNone => {
                Err(PeerFault::Misbehaved(Offence::LateBitfield))
            }
            Message::Request(req) => {
                // We do not upload yet: the peer stays choked. With the Fast Extension a request while
                // choked must be answered with a reject (BEP 6); without it, it is silently ignored.
                if fast {
                    self.send(key, Outgoing::Reject(req), now);
                }
                Ok(())
            }
            Message::Cancel(_) => Ok(()),
            Message::Reject(req) => {
                if !fast {
                    Err(PeerFault::Misbehaved(Offence::FastNotNegotiated))
                } else {
                    self.on_reject(key, req, now);
                    Ok(())
                }
            }
            Message::Piece { index, begin, data } => self.on_block(key, index, begin, data, now),
            Message::Extended { id, payload } => {
                if id == 0 {
                    if let Some(reqq) = parse_reqq(payload) {
                        if let Some(peer) = self.peers.get_mut(&key) {
                            peer.reqq = Some(reqq);
                        }
                    }
                }
                Ok(())
            }
        };
        if let Err(fault) = result {
            self.disconnect(key, fault);
        }
    }

    fn on_choke(&mut self, key: PeerKey) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        peer.peer_choking = true;
        // Without the Fast Extension a choke discards every pending request (BEP 3). With it, the peer
        // rejects each one explicitly (BEP 6); the request timeout covers peers that forget.
        if !peer.info.fast {
            for block in peer.in_flight.drain(..) {
                self.picker.request_dropped(block);
            }
        }
    }

    fn on_reject(&mut self, key: PeerKey, req: BlockRequest, now: Instant) {
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

    fn on_have(&mut self, key: PeerKey, index: u32, now: Instant) -> Result<(), PeerFault> {
        let piece = self
            .layout
            .piece(index)
            .ok_or(PeerFault::Misbehaved(Offence::HaveOutOfRange(index)))?;
        let peer = self.peers.get_mut(&key).expect("caller checked");
        if peer.bitfield.set(piece.as_usize()) {
            self.picker.increment_availability(piece);
            if !self.have.get(piece.as_usize()) {
                peer.wanted += 1;
                self.update_interest(key, now);
            }
        }
        Ok(())
    }

    fn on_availability(&mut self, key: PeerKey, bits: Bitfield, now: Instant) {
        self.picker.add_availability(&bits);
        let wanted = bits.iter_ones().filter(|&i| !self.have.get(i)).count() as u32;
        let peer = self.peers.get_mut(&key).expect("caller checked");
        peer.bitfield = bits;
        peer.wanted = wanted;
        self.update_interest(key, now);
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

    fn on_block(
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
        peer.last_block = now;
        peer.bytes_this_tick += u64::from(length);
        let ip = peer.info.addr.ip();
        self.stats.downloaded += u64::from(length);
        // Blocks usually arrive in request order, so the search ends at the front.
        if let Some(pos) = peer.in_flight.iter().position(|b| *b == block) {
            peer.in_flight.remove(pos);
        }
        // A block nobody asked this peer for is still welcome if we need it (a late answer to a request
        // that timed out, or a cancel that crossed the block): the piece hash decides if it was good.
        match self.picker.block_received(block) {
            BlockOutcome::Unneeded => self.stats.wasted += u64::from(length),
            BlockOutcome::New { piece_complete } => {
                self.store_block(block, data, ip);
                self.cancel_duplicates(key, block, now);
                if piece_complete {
                    let buffer = self.buffers.remove(&block.piece).expect("stored above");
                    self.verifying.insert(block.piece, buffer.contributors);
                    self.actions.push_back(Action::VerifyPiece {
                        piece: block.piece,
                        data: buffer.data,
                    });
                }
            }
        }
        self.fill_requests(key, now);
        Ok(())
    }

    fn store_block(&mut self, block: BlockRef, data: &[u8], ip: IpAddr) {
        let piece_len = self.layout.piece_len(block.piece) as usize;
        let buffer = self.buffers.entry(block.piece).or_insert_with(|| {
            self.unverified_bytes += piece_len as u64;
            let mut data = self.pool.pop().unwrap_or_default();
            data.resize(piece_len, 0);
            PieceBuffer {
                data,
                contributors: Vec::new(),
            }
        });
        let start = block.offset as usize;
        buffer.data[start..start + data.len()].copy_from_slice(data);
        if !buffer.contributors.contains(&ip) {
            buffer.contributors.push(ip);
        }
    }

    /// In endgame a block may be outstanding at several peers: cancel the others (BEP 3, "cancel").
    fn cancel_duplicates(&mut self, from: PeerKey, block: BlockRef, now: Instant) {
        if !self.picker.in_endgame() {
            return;
        }
        let holders: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(k, p)| **k != from && p.in_flight.contains(&block))
            .map(|(k, _)| *k)
            .collect();
        for k in holders {
            let peer = self.peers.get_mut(&k).expect("listed above");
            peer.in_flight.retain(|b| *b != block);
            self.send(k, Outgoing::Cancel(block), now);
        }
    }

    /// Tops up `key`'s outstanding requests to its queue target.
    fn fill_requests(&mut self, key: PeerKey, now: Instant) {
        let peer = &self.peers[&key];
        if peer.peer_choking || !peer.am_interested {
            return;
        }
        let cap = peer
            .reqq
            .unwrap_or(self.config.default_peer_reqq)
            .min(self.config.max_queue);
        let target = peer.queue_target.min(cap).max(1) as usize;
        let room = target.saturating_sub(peer.in_flight.len());
        if room == 0 {
            return;
        }
        let piece_len = u64::from(self.layout.piece_length());
        let budget = self.config.max_unverified_bytes;
        // Past the budget, a peer with nothing in flight may still start a piece (up to a few pieces of
        // headroom), so half-done pieces that only departed peers could finish never stall the download.
        let may_start = self.unverified_bytes + piece_len <= budget
            || (self.unverified_bytes + piece_len <= budget + HEADROOM_PIECES * piece_len
                && peer.in_flight.is_empty());
        let mut picked = std::mem::take(&mut self.scratch);
        picked.clear();
        let in_flight = &peer.in_flight;
        self.picker.pick(
            &peer.bitfield,
            room,
            may_start,
            |b| in_flight.contains(&b),
            &mut picked,
        );
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

    /// The driver hashed (and, if good, wrote) `piece`; `buffer` is the data it was given, returned for
    /// reuse.
    pub fn handle_piece_verified(
        &mut self,
        piece: PieceIndex,
        ok: bool,
        buffer: Vec<u8>,
        now: Instant,
    ) {
        let Some(contributors) = self.verifying.remove(&piece) else {
            return;
        };
        let len = u64::from(self.layout.piece_len(piece));
        self.unverified_bytes -= len;
        // Keep the buffer for the next piece only while buffers in use plus pooled stay within the budget,
        // so the pool never adds memory beyond what unverified pieces may take anyway.
        let pooled = self.pool.len() as u64 * u64::from(self.layout.piece_length());
        if self.unverified_bytes + pooled + len <= self.config.max_unverified_bytes
            && self.pool.len() < MAX_BUFFER_POOL
        {
            self.pool.push(buffer);
        }
        self.picker.piece_verified(piece, ok);
        if ok {
            self.have.set(piece.as_usize());
            self.stats.verified += len;
            self.stats.left -= len;
            for ip in &contributors {
                let t = self.trust.entry(*ip).or_insert(0);
                *t = (*t + 1).min(20);
            }
            self.events.push_back(Event::PieceVerified(piece));
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for key in keys {
                let peer = self.peers.get_mut(&key).expect("listed");
                if peer.bitfield.get(piece.as_usize()) {
                    peer.wanted -= 1;
                    self.update_interest(key, now);
                } else {
                    self.send(key, Outgoing::Have(piece), now);
                }
            }
            if self.have.is_full() {
                self.events.push_back(Event::Complete);
            }
        } else {
            self.stats.wasted += len;
            self.events.push_back(Event::HashFailed {
                piece,
                peers: contributors.clone(),
            });
            let penalty = if contributors.len() == 1 { 4 } else { 2 };
            for ip in contributors {
                let t = self.trust.entry(ip).or_insert(0);
                *t -= penalty;
                if *t <= self.config.ban_trust && self.banned.insert(ip) {
                    self.events.push_back(Event::Banned(ip));
                    let keys: Vec<PeerKey> = self
                        .peers
                        .iter()
                        .filter(|(_, p)| p.info.addr.ip() == ip)
                        .map(|(k, _)| *k)
                        .collect();
                    for key in keys {
                        self.disconnect(key, PeerFault::Misbehaved(Offence::HashFailures));
                    }
                }
            }
        }
        self.fill_all(now);
    }

    fn fill_all(&mut self, now: Instant) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.fill_requests(key, now);
        }
    }

    /// When the engine next needs [`Torrent::handle_timeout`]; `None` while no peer is connected.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }

    /// The once-a-second tick: rates, queue sizes, stuck requests, silent peers, keep-alives.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_tick.is_none_or(|t| now < t) {
            return;
        }
        let elapsed = self
            .last_tick
            .map_or(1.0, |t| now.duration_since(t).as_secs_f64().max(0.001));
        self.last_tick = Some(now);
        self.next_tick = (!self.peers.is_empty()).then(|| now + Duration::from_secs(1));
        let mut total_rate = 0.0;
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            let config = &self.config;
            let peer = self.peers.get_mut(&key).expect("listed");
            let sample = peer.bytes_this_tick as f64 / elapsed;
            peer.bytes_this_tick = 0;
            peer.rate = if peer.rate == 0.0 {
                sample
            } else {
                0.6 * peer.rate + 0.4 * sample
            };
            total_rate += sample;
            let by_rate = (peer.rate * config.queue_seconds / f64::from(BLOCK_SIZE)) as u32;
            peer.queue_target = by_rate.clamp(config.initial_queue, config.max_queue);
            if now.duration_since(peer.last_received) >= config.peer_timeout {
                let silent = now.duration_since(peer.last_received);
                self.disconnect(key, PeerFault::Misbehaved(Offence::Silent(silent)));
                continue;
            }
            if !peer.in_flight.is_empty()
                && now.duration_since(peer.last_block) >= config.request_timeout
            {
                // Stuck requests: give them to other peers, and ask this one for less.
                let stuck: Vec<BlockRef> = peer.in_flight.drain(..).collect();
                peer.queue_target = 1;
                peer.last_block = now;
                for block in stuck {
                    self.picker.request_dropped(block);
                    self.send(key, Outgoing::Cancel(block), now);
                }
            }
            let peer = &self.peers[&key];
            if now.duration_since(peer.last_sent) >= self.config.keepalive_interval {
                self.send(key, Outgoing::KeepAlive, now);
            }
        }
        self.stats.download_rate = total_rate as u64;
        self.fill_all(now);
    }

    fn send(&mut self, peer: PeerKey, message: Outgoing, now: Instant) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_sent = now;
        }
        self.actions.push_back(Action::Send { peer, message });
    }

    fn disconnect(&mut self, key: PeerKey, fault: PeerFault) {
        if self.peers.contains_key(&key) {
            self.remove_peer(key);
            self.actions
                .push_back(Action::Disconnect { peer: key, fault });
        }
    }

    /// The next piece of work for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Checks the invariants in the module documentation; panics with a description if one is broken.
    pub fn check_invariants(&self) {
        self.picker.check_invariants();
        let mut counts: HashMap<BlockRef, u8> = HashMap::new();
        for peer in self.peers.values() {
            for b in &peer.in_flight {
                *counts.entry(*b).or_default() += 1;
            }
            let wanted = peer
                .bitfield
                .iter_ones()
                .filter(|&i| !self.have.get(i))
                .count() as u32;
            assert_eq!(peer.wanted, wanted, "wanted count");
            assert_eq!(peer.am_interested, wanted > 0, "interest");
        }
        for (block, n) in counts {
            assert_eq!(self.picker.request_count(block), n, "requests of {block:?}");
        }
        let held: u64 = self
            .buffers
            .values()
            .map(|b| b.data.len() as u64)
            .sum::<u64>()
            + self
                .verifying
                .keys()
                .map(|p| u64::from(self.layout.piece_len(*p)))
                .sum::<u64>();
        assert_eq!(held, self.unverified_bytes, "unverified bytes");
    }
}

/// Our BEP 10 extension handshake: no extension messages yet (`m` is empty), our client name `v`, and
/// `reqq`, the number of outstanding requests we accept.
fn extension_handshake() -> Vec<u8> {
    use crate::bencode::OwnedValue;
    let v = concat!("swarmer ", env!("CARGO_PKG_VERSION"));
    OwnedValue::dict([
        ("m", OwnedValue::dict(Vec::<(&str, OwnedValue)>::new())),
        ("reqq", OwnedValue::Int(500)),
        ("v", OwnedValue::Bytes(v.as_bytes().to_vec())),
    ])
    .encode()
}

/// The `reqq` of a peer's BEP 10 extension handshake, if it gives a sane one.
fn parse_reqq(payload: &[u8]) -> Option<u32> {
    let value = crate::bencode::decode(payload).ok()?;
    let reqq = value.as_dict()?.get(b"reqq")?.as_int()?;
    u32::try_from(reqq)
        .ok()
        .filter(|r| (1..=100_000).contains(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha1;

    /// A torrent of `pieces` pieces of two blocks each, with content `content(i) = i as u8`.
    struct Fixture {
        t: Torrent,
        content: Vec<u8>,
        now: Instant,
    }

    const PIECE: u64 = 2 * BLOCK_SIZE as u64;

    impl Fixture {
        fn new(pieces: u64) -> Fixture {
            let content: Vec<u8> = (0..pieces * PIECE).map(|i| (i % 251) as u8).collect();
            let layout = Layout::new(PIECE, [content.len() as u64]).unwrap();
            let have = Bitfield::new(pieces as usize);
            Fixture {
                t: Torrent::new(layout, have, Config::default(), 1),
                content,
                now: Instant::now(),
            }
        }

        fn peer(&mut self, ip: u8, fast: bool) -> PeerKey {
            let addr = SocketAddr::from(([127, 0, 0, ip], 6881));
            self.t.add_peer(
                PeerInfo {
                    addr,
                    fast,
                    extensions: false,
                },
                self.now,
            )
        }

        fn drain(&mut self) -> Vec<Action> {
            let mut out = Vec::new();
            while let Some(a) = self.t.poll_action() {
                out.push(a);
            }
            self.t.check_invariants();
            out
        }

        /// Answers every request in `actions` with the right data (or, for `bad_peer`, flipped data), and
        /// verifies every completed piece, until nothing is left to do.
        fn run(
            &mut self,
            mut actions: Vec<Action>,
            bad_peer: Option<PeerKey>,
        ) -> Vec<(PeerKey, PeerFault)> {
            let mut faults = Vec::new();
            while !actions.is_empty() {
                for action in std::mem::take(&mut actions) {
                    match action {
                        Action::Send {
                            peer,
                            message: Outgoing::Request(b),
                        } => {
                            let start = (self.t.layout.piece_offset(b.piece) + u64::from(b.offset))
                                as usize;
                            let mut data = self.content[start..start + b.length as usize].to_vec();
                            if Some(peer) == bad_peer {
                                data[0] ^= 0xff;
                            }
                            let msg = Message::Piece {
                                index: b.piece.get(),
                                begin: b.offset,
                                data: &data,
                            };
                            self.t.handle_message(peer, msg, self.now);
                        }
                        Action::Send { .. } => {}
                        Action::Disconnect { peer, fault } => faults.push((peer, fault)),
                        Action::VerifyPiece { piece, data } => {
                            let start = self.t.layout.piece_offset(piece) as usize;
                            let expected = &self.content[start..start + data.len()];
                            let ok = sha1(&data) == sha1(expected);
                            self.t.handle_piece_verified(piece, ok, data, self.now);
                        }
                    }
                    actions.extend(self.drain());
                }
            }
            faults
        }
    }

    fn sends(actions: &[Action], key: PeerKey) -> Vec<Outgoing> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { peer, message } if *peer == key => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn downloads_everything_from_one_seeder() {
        let mut f = Fixture::new(10);
        let p = f.peer(2, true);
        assert_eq!(sends(&f.drain(), p), vec![Outgoing::HaveNone]);
        f.t.handle_message(p, Message::HaveAll, f.now);
        assert_eq!(sends(&f.drain(), p), vec![Outgoing::Interested]);
        f.t.handle_message(p, Message::Unchoke, f.now);
        let actions = f.drain();
        // The initial queue covers all 20 blocks (32 allowed).
        assert_eq!(actions.len(), 20);
        assert!(f.run(actions, None).is_empty());
        assert!(f.t.is_complete());
        let events: Vec<Event> = std::iter::from_fn(|| f.t.poll_event()).collect();
        assert_eq!(events.len(), 11);
        assert_eq!(events.last(), Some(&Event::Complete));
        assert_eq!(f.t.stats().left, 0);
        assert_eq!(f.t.stats().wasted, 0);
    }

    #[test]
    fn bad_data_is_fetched_again_and_the_liar_banned() {
        let mut f = Fixture::new(10);
        let liar = f.peer(3, false);
        let honest = f.peer(2, false);
        f.drain();
        // Only the liar is unchoked at first: it gets every request.
        f.t.handle_message(
            liar,
            Message::Bitfield(Bitfield::full(10).as_bytes()),
            f.now,
        );
        f.t.handle_message(
            honest,
            Message::Bitfield(Bitfield::full(10).as_bytes()),
            f.now,
        );
        f.t.handle_message(liar, Message::Unchoke, f.now);
        let actions = f.drain();
        assert!(actions.iter().all(|a| !matches!(a, Action::Send { peer, message: Outgoing::Request(_) } if *peer == honest)));
        f.t.handle_message(honest, Message::Unchoke, f.now);
        let mut all = actions;
        all.extend(f.drain());
        let faults = f.run(all, Some(liar));
        assert_eq!(
            faults,
            vec![(liar, PeerFault::Misbehaved(Offence::HashFailures))]
        );
        assert!(f.t.is_banned(IpAddr::from([127, 0, 0, 3])));
        assert!(f.t.is_complete(), "the honest peer finished the download");
        let events: Vec<Event> = std::iter::from_fn(|| f.t.poll_event()).collect();
        assert!(events.iter().any(|e| matches!(e, Event::HashFailed { .. })));
        assert!(events.contains(&Event::Banned(IpAddr::from([127, 0, 0, 3]))));
    }

    #[test]
    fn protocol_violations_are_typed_faults() {
        let cases: Vec<(Message<'static>, PeerFault)> = vec![
            (
                Message::Have(10),
                PeerFault::Misbehaved(Offence::HaveOutOfRange(10)),
            ),
            (
                Message::Bitfield(&[0xff]),
                PeerFault::Misbehaved(Offence::BadBitfield(BitfieldError::WrongLength {
                    got: 1,
                    expected: 2,
                    pieces: 10,
                })),
            ),
            (
                Message::Bitfield(&[0xff, 0xff]),
                PeerFault::Misbehaved(Offence::BadBitfield(BitfieldError::SpareBitsSet {
                    pieces: 10,
                })),
            ),
            (
                Message::HaveAll,
                PeerFault::Misbehaved(Offence::FastNotNegotiated),
            ),
            (
                Message::Piece {
                    index: 0,
                    begin: 5,
                    data: &[1, 2, 3],
                },
                PeerFault::Misbehaved(Offence::BlockOutOfRange {
                    index: 0,
                    begin: 5,
                    length: 3,
                }),
            ),
        ];
        for (message, expected) in cases {
            let mut f = Fixture::new(10);
            let p = f.peer(2, false);
            f.drain();
            f.t.handle_message(p, message, f.now);
            let faults: Vec<PeerFault> = f
                .drain()
                .into_iter()
                .filter_map(|a| match a {
                    Action::Disconnect { fault, .. } => Some(fault),
                    _ => None,
                })
                .collect();
            assert_eq!(faults, vec![expected]);
            assert_eq!(f.t.stats().peers, 0);
        }
        // A second bitfield is a fault too.
        let mut f = Fixture::new(10);
        let p = f.peer(2, false);
        f.t.handle_message(p, Message::Unchoke, f.now);
        f.t.handle_message(p, Message::Bitfield(&[0, 0]), f.now);
        assert!(f.drain().iter().any(|a| matches!(
            a,
            Action::Disconnect {
                fault: PeerFault::Misbehaved(Offence::LateBitfield),
                ..
            }
        )));
    }

    #[test]
    fn stuck_requests_move_to_another_peer_and_silent_peers_are_dropped() {
        let mut f = Fixture::new(2);
        let slow = f.peer(2, false);
        f.t.handle_message(slow, Message::Bitfield(Bitfield::full(2).as_bytes()), f.now);
        f.t.handle_message(slow, Message::Unchoke, f.now);
        assert_eq!(
            f.drain()
                .iter()
                .filter(|a| matches!(
                    a,
                    Action::Send {
                        message: Outgoing::Request(_),
                        ..
                    }
                ))
                .count(),
            4
        );
        let other = f.peer(3, false);
        f.t.handle_message(
            other,
            Message::Bitfield(Bitfield::full(2).as_bytes()),
            f.now,
        );
        f.t.handle_message(other, Message::Unchoke, f.now);
        // Endgame: the other peer gets duplicates right away.
        f.drain();
        // 20 s later with nothing from the slow peer, its requests are cancelled.
        f.now += Duration::from_secs(20);
        f.t.handle_message(other, Message::KeepAlive, f.now);
        f.t.handle_timeout(f.now);
        let cancels = sends(&f.drain(), slow)
            .into_iter()
            .filter(|m| matches!(m, Outgoing::Cancel(_)))
            .count();
        assert_eq!(cancels, 4);
        // Two minutes of silence: disconnected.
        for _ in 0..101 {
            f.now += Duration::from_secs(1);
            f.t.handle_message(other, Message::KeepAlive, f.now);
            f.t.handle_timeout(f.now);
        }
        let faults: Vec<PeerKey> = f
            .drain()
            .into_iter()
            .filter_map(|a| match a {
                Action::Disconnect {
                    peer,
                    fault: PeerFault::Misbehaved(Offence::Silent(_)),
                } => Some(peer),
                _ => None,
            })
            .collect();
        assert_eq!(faults, vec![slow]);
    }

    #[test]
    fn choke_without_fast_extension_drops_requests_and_keepalives_flow() {
        let mut f = Fixture::new(2);
        let p = f.peer(2, false);
        f.t.handle_message(p, Message::Bitfield(Bitfield::full(2).as_bytes()), f.now);
        f.t.handle_message(p, Message::Unchoke, f.now);
        f.drain();
        f.t.handle_message(p, Message::Choke, f.now);
        f.t.check_invariants();
        assert!(!f.t.picker.in_endgame(), "the blocks are free again");
        f.now += Duration::from_secs(61);
        f.t.handle_message(p, Message::KeepAlive, f.now);
        f.t.handle_timeout(f.now);
        assert!(sends(&f.drain(), p).contains(&Outgoing::KeepAlive));
    }

    #[test]
    fn extension_handshake_round_trips_reqq() {
        assert_eq!(parse_reqq(&extension_handshake()), Some(500));
        assert_eq!(parse_reqq(b"d4:reqqi0ee"), None);
        assert_eq!(parse_reqq(b"d4:reqqi-5ee"), None);
        assert_eq!(parse_reqq(b"garbage"), None);
        let mut f = Fixture::new(2);
        let p = f.peer(2, false);
        f.t.handle_message(
            p,
            Message::Extended {
                id: 0,
                payload: b"d4:reqqi3ee",
            },
            f.now,
        );
        f.t.handle_message(p, Message::Bitfield(Bitfield::full(2).as_bytes()), f.now);
        f.t.handle_message(p, Message::Unchoke, f.now);
        let requests = sends(&f.drain(), p)
            .into_iter()
            .filter(|m| matches!(m, Outgoing::Request(_)))
            .count();
        assert_eq!(requests, 3, "the peer's reqq caps our queue");
    }

    #[test]
    fn requests_are_rejected_with_fast_extension() {
        let mut f = Fixture::new(2);
        let p = f.peer(2, true);
        f.drain();
        let req = BlockRequest {
            index: 0,
            begin: 0,
            length: BLOCK_SIZE,
        };
        f.t.handle_message(p, Message::HaveNone, f.now);
        f.t.handle_message(p, Message::Request(req), f.now);
        assert_eq!(sends(&f.drain(), p), vec![Outgoing::Reject(req)]);
    }
}
