//! The state machine of one torrent: the one place that decides what to request from whom, whom to
//! unchoke and which requests to serve, when a peer is faulty, and when a piece is ready for
//! verification (BEP 3 "peer protocol", BEP 6 Fast Extension, BEP 10 extension handshake), and the
//! extension messages it takes part in: serving metadata (BEP 9 `ut_metadata`) and peer exchange
//! (BEP 11 `ut_pex`). Neither happens for a private torrent (BEP 27, [`Config::private`]).
//!
//! It is sans-IO: the driver feeds it connection events, decoded peer messages, verification results and
//! "block sent" reports, always with the current time, and drains [`Action`]s (messages to send, blocks
//! to upload, connections to close, pieces to verify) and [`Event`]s. The only timer is a once-a-second
//! tick ([`Torrent::poll_timeout`]), which updates rates, sizes request queues, times out stuck requests
//! and silent peers, sends keep-alives and, every [`Config::choke_interval`], runs the choker.
//!
//! File selection: [`Torrent::set_piece_priorities`] gives each piece a [`FilePriority`]
//! ([`crate::priority::piece_priorities`] derives them from file priorities). `Skip` pieces are never
//! requested and do not make us interested; once every wanted piece is verified the torrent is
//! finished ([`Event::Finished`]) and tells peers it only uploads (BEP 21), as a complete one does.
//!
//! Invariants (checked by [`Torrent::check_invariants`]):
//! - every block in a peer's in-flight list is counted once in the picker's outstanding requests;
//! - a peer is interested-in exactly when it has a wanted piece (priority other than `Skip`) we have
//!   not verified;
//! - `Stats::left` is the size of the wanted pieces not verified, and the torrent is *finished* exactly
//!   when it is 0 (every wanted piece verified); *complete* means every piece is verified;
//! - a peer's queued requests are for pieces we have, and while we choke it only for its allowed-fast
//!   pieces; at most [`Config::max_peer_requests`] are queued and [`Config::upload_window`] uploading;
//! - at most [`Config::upload_slots`] + 1 (optimistic) peers are unchoked;
//! - a private torrent advertises, serves and sends no extension message (`m` is empty);
//! - we send a peer at most one PEX message per [`PEX_INTERVAL`], never listing the peer itself.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::picker::{BlockOutcome, Picker};
use crate::wire::{BlockRequest, Message};
use crate::{BLOCK_SIZE, Bitfield, BlockRef, FilePriority, InfoHash, Layout, PieceIndex};

mod ext;
mod io;
mod serve;

pub use ext::{
    METADATA_REQUESTS_PER_MINUTE, PEX_FIRST_DELAY, PEX_INTERVAL, PEX_MAX_PER_MESSAGE,
    PEX_MIN_RECEIVE_INTERVAL,
};
pub use io::{
    Action, Config, Event, Offence, Outgoing, PeerFault, PeerInfo, PeerKey, Requested, Stats,
};

use ext::PeerExtensions;

/// Most events queued when a `port` message is reported; past it, `port` messages are dropped.
const MAX_DHT_PORT_EVENTS: usize = 256;

#[derive(Debug)]
struct Peer {
    info: PeerInfo,
    bitfield: Bitfield,
    first_message: bool,
    /// The DHT port (BEP 5 `port`) last reported for this peer.
    dht_port: Option<u16>,
    peer_choking: bool,
    am_interested: bool,
    /// Wanted pieces the peer has that we have not verified.
    wanted: u32,
    in_flight: VecDeque<BlockRef>,
    queue_target: u32,
    reqq: Option<u32>,
    last_received: Instant,
    last_block: Instant,
    last_sent: Instant,
    /// Payload received from this peer.
    down: RateMeter,
    /// When the last block arrived (or the connection opened): anti-snubbing.
    last_data: Instant,
    connected_at: Instant,
    // Upload side.
    am_choking: bool,
    optimistic: bool,
    peer_interested: bool,
    /// Requests accepted and not yet handed to the driver, oldest first.
    requests: VecDeque<Requested>,
    /// Blocks handed to the driver and not yet reported sent.
    uploading: u32,
    /// Payload sent to this peer.
    up: RateMeter,
    /// Requests refused since the last tick (flood detection).
    refused_this_tick: u32,
    /// Pieces this peer may request while we choke it (BEP 6), sorted.
    allowed_out: Vec<PieceIndex>,
    /// Pieces we may request while it chokes us (BEP 6).
    allowed_in: Vec<PieceIndex>,
    /// The peer said it only uploads (BEP 21 `upload_only` in its extension handshake).
    upload_only: bool,
    /// Requests we withdrew without an answer (cancelled, timed out, discarded by a choke), newest
    /// last, at most [`LATE_BLOCKS_REMEMBERED`]: a block for one of them is a late answer, not an
    /// unrequested block.
    withdrawn: VecDeque<BlockRef>,
    /// Blocks received that we never asked this peer for.
    unrequested: u32,
    /// `have`s for pieces the peer had announced already.
    redundant_haves: u32,
    /// Request timeouts since the peer last delivered a requested block. While non-zero the peer
    /// is snubbed: one request at a time.
    timeouts: u32,
    /// Extension messages (BEP 10, BEP 9, BEP 11) with this peer.
    ext: PeerExtensions,
}

#[derive(Debug)]
struct PieceBuffer {
    data: Vec<u8>,
    contributors: Vec<IpAddr>,
}

/// Pieces a peer with nothing in flight may start beyond [`Config::max_unverified_bytes`].
pub const HEADROOM_PIECES: u64 = 4;

/// Withdrawn requests remembered per peer, so their late answers are still welcome: the most a
/// peer can have in flight ([`Config::max_queue`] by default) plus some.
const LATE_BLOCKS_REMEMBERED: usize = 1024;

/// Blocks a peer may send that we never asked it for (nor withdrew lately) before it is
/// disconnected. They are dropped unseen: stored, one bad block would fail a piece that honest
/// peers are filling and get them blamed for it. A few are tolerated for requests forgotten
/// beyond [`LATE_BLOCKS_REMEMBERED`].
pub const UNREQUESTED_BLOCKS_ALLOWED: u32 = 16;

/// Redundant `have`s a peer may send, at least: a peer may announce each piece once more (say,
/// after checking its files again), so the allowance is the torrent's piece count if larger. Each
/// costs a bit lookup; the bound stops a flood from costing CPU time forever.
pub const REDUNDANT_HAVES_ALLOWED: u32 = 64;

/// Request timeouts in a row (no requested block in between) after which a peer is dropped as
/// useless: it holds a connection slot and keeps blocks waiting for [`Config::request_timeout`]
/// each time (a peer that trickles data, or accepts requests and never answers).
pub const MAX_REQUEST_TIMEOUTS: u32 = 3;

/// The most piece buffers kept for reuse after verification. Within this and the memory budget, steady
/// state allocates (and zeroes) no buffer at all.
const MAX_BUFFER_POOL: usize = 64;

/// The engine of one torrent's download. See the module documentation.
#[derive(Debug)]
pub struct Torrent {
    layout: Layout,
    info_hash: InfoHash,
    config: Config,
    rng: SmallRng,
    next_choke: Option<Instant>,
    choke_round: u32,
    picker: Picker,
    have: Bitfield,
    /// Ordered, so every walk over the peers (ticks, choker, broadcasts) is the same for the same
    /// inputs: runs are reproducible from the seed.
    peers: BTreeMap<PeerKey, Peer>,
    next_key: u64,
    buffers: BTreeMap<PieceIndex, PieceBuffer>,
    verifying: BTreeMap<PieceIndex, Vec<IpAddr>>,
    pool: Vec<Vec<u8>>,
    trust: HashMap<IpAddr, i32>,
    banned: HashSet<IpAddr>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    next_tick: Option<Instant>,
    last_tick: Option<Instant>,
    stats: Stats,
    scratch: Vec<BlockRef>,
    /// Every wanted piece is verified (`stats.left == 0`).
    finished: bool,
}

impl Torrent {
    /// An engine for the torrent `info_hash` of `layout`, of which the pieces in `have` are verified
    /// already. `seed` makes random choices reproducible (piece-order tie-breaks, optimistic unchokes):
    /// tests pass a constant, the client a random number.
    pub fn new(
        layout: Layout,
        info_hash: InfoHash,
        have: Bitfield,
        config: Config,
        seed: u64,
    ) -> Torrent {
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
            wanted: layout.total_length(),
            ..Stats::default()
        };
        let finished = stats.left == 0;
        Torrent {
            layout,
            info_hash,
            config,
            rng,
            next_choke: None,
            choke_round: 0,
            picker,
            have,
            peers: BTreeMap::new(),
            next_key: 0,
            buffers: BTreeMap::new(),
            verifying: BTreeMap::new(),
            pool: Vec::new(),
            trust: HashMap::new(),
            banned: HashSet::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            next_tick: None,
            last_tick: None,
            stats,
            scratch: Vec::new(),
            finished,
        }
    }

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
    fn wanted_of(&self, bits: &Bitfield) -> u32 {
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
            unchoked: self.peers.values().filter(|p| !p.am_choking).count(),
            ..self.stats
        }
    }

    /// True when `ip` sent bad data too often: the driver must not connect to it or accept it.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.banned.contains(&ip)
    }

    /// A connection finished its handshake. Returns its key; queues our extension handshake (BEP 10),
    /// our piece availability message (BEP 3 `bitfield`, or BEP 6 `have all`/`have none`) and the
    /// pieces this peer may request while choked (BEP 6 `allowed fast`).
    pub fn add_peer(&mut self, info: PeerInfo, now: Instant) -> PeerKey {
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        let allowed_out = match info.addr.ip() {
            // BEP 6 defines the canonical set for IPv4 only.
            IpAddr::V4(ip) if info.fast && self.config.allowed_fast > 0 => {
                let mut set: Vec<PieceIndex> = crate::allowed_fast::allowed_fast_set(
                    ip,
                    &self.info_hash,
                    self.layout.piece_count(),
                    self.config.allowed_fast,
                )
                .into_iter()
                .filter_map(|i| self.layout.piece(i))
                .collect();
                set.sort_unstable();
                set
            }
            _ => Vec::new(),
        };
        self.peers.insert(
            key,
            Peer {
                info,
                bitfield: Bitfield::new(self.layout.piece_count() as usize),
                first_message: true,
                dht_port: None,
                peer_choking: true,
                am_interested: false,
                wanted: 0,
                in_flight: VecDeque::new(),
                queue_target: self.config.initial_queue,
                reqq: None,
                last_received: now,
                last_block: now,
                last_sent: now,
                down: RateMeter::default(),
                last_data: now,
                connected_at: now,
                am_choking: true,
                optimistic: false,
                peer_interested: false,
                requests: VecDeque::new(),
                uploading: 0,
                up: RateMeter::default(),
                refused_this_tick: 0,
                allowed_out,
                allowed_in: Vec::new(),
                upload_only: false,
                withdrawn: VecDeque::new(),
                unrequested: 0,
                redundant_haves: 0,
                timeouts: 0,
                ext: PeerExtensions::default(),
            },
        );
        if info.extensions {
            let handshake = self.extension_handshake();
            self.send(key, Outgoing::Extended(0, handshake), now);
        }
        let have_count = self.have.count_ones();
        if info.fast && have_count == 0 {
            self.send(key, Outgoing::HaveNone, now);
        } else if info.fast && self.have.is_full() {
            self.send(key, Outgoing::HaveAll, now);
        } else if have_count > 0 {
            self.send(key, Outgoing::Bitfield(self.have.clone()), now);
        }
        let granted: Vec<PieceIndex> = self.peers[&key]
            .allowed_out
            .iter()
            .copied()
            .filter(|p| self.have.get(p.as_usize()))
            .collect();
        for piece in granted {
            self.send(key, Outgoing::AllowedFast(piece), now);
        }
        if self.next_tick.is_none() {
            self.next_tick = Some(now + Duration::from_secs(1));
        }
        if self.next_choke.is_none() {
            self.next_choke = Some(now + self.config.choke_interval);
        }
        key
    }

    /// A connection closed (by the peer, by an IO error, or after a [`Action::Disconnect`]): its
    /// outstanding requests go back to the picker.
    /// An unchoke slot it held goes to another peer at the next tick.
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
            Message::KeepAlive | Message::Unknown { .. } => Ok(()),
            Message::Port(port) => {
                // BEP 5: the peer runs a DHT node on this UDP port. Reported for the driver to
                // ping once per port a peer names (a peer repeating it makes no pings), and bounded
                // in the queue (one changing it cannot grow it); never a fault.
                let node = SocketAddr::new(peer.info.addr.ip(), port);
                let news = peer.dht_port != Some(port);
                peer.dht_port = Some(port);
                if port != 0 && news && self.events.len() < MAX_DHT_PORT_EVENTS {
                    self.events.push_back(Event::DhtPort(node));
                }
                Ok(())
            }
            Message::Suggest(_) | Message::AllowedFast(_) if !fast => {
                Err(PeerFault::Misbehaved(Offence::FastNotNegotiated))
            }
            // A hint; the picker's rarest-first order serves the swarm better than following it.
            Message::Suggest(_) => Ok(()),
            Message::AllowedFast(index) => {
                // Indices past the end are ignored: BEP 6 lets a peer send the set before it knows
                // whether it has the pieces, and an unusable grant harms nobody.
                if let Some(piece) = self.layout.piece(index) {
                    if !peer.allowed_in.contains(&piece)
                        && peer.allowed_in.len() < self.config.allowed_fast.max(16)
                    {
                        peer.allowed_in.push(piece);
                        self.fill_requests(key, now);
                    }
                }
                Ok(())
            }
            Message::Choke => {
                self.on_choke(key);
                Ok(())
            }
            Message::Unchoke => {
                peer.peer_choking = false;
                self.fill_requests(key, now);
                Ok(())
            }
            Message::Interested => {
                peer.peer_interested = true;
                self.fill_upload_slots(now);
                Ok(())
            }
            Message::NotInterested => {
                peer.peer_interested = false;
                if !peer.am_choking {
                    self.choke(key, now);
                    self.fill_upload_slots(now);
                }
                Ok(())
            }
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
            Message::Request(req) => self.on_request(key, req, now),
            Message::Cancel(req) => {
                self.on_cancel(key, req, now);
                Ok(())
            }
            Message::Reject(req) => {
                if !fast {
                    Err(PeerFault::Misbehaved(Offence::FastNotNegotiated))
                } else {
                    self.on_reject(key, req, now);
                    Ok(())
                }
            }
            Message::Piece { index, begin, data } => self.on_block(key, index, begin, data, now),
            Message::Extended { id, payload } => self.on_extended(key, id, payload, now),
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
            while let Some(block) = peer.in_flight.pop_front() {
                withdraw(peer, block);
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

    /// Two seeds have nothing to give each other: once we have every wanted piece, a peer that has
    /// every piece (or says it only uploads, BEP 21) is disconnected.
    fn drop_if_both_seeds(&mut self, key: PeerKey) {
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

    fn on_have(&mut self, key: PeerKey, index: u32, now: Instant) -> Result<(), PeerFault> {
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

    fn on_availability(&mut self, key: PeerKey, bits: Bitfield, now: Instant) {
        self.picker.add_availability(&bits);
        let wanted = self.wanted_of(&bits);
        let peer = self.peers.get_mut(&key).expect("caller checked");
        peer.bitfield = bits;
        peer.wanted = wanted;
        self.update_interest(key, now);
        self.drop_if_both_seeds(key);
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
                self.store_block(block, data, ip);
                if duplicated {
                    self.cancel_duplicates(key, block, now);
                }
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

    /// A block that was outstanding at several peers arrived: cancel the others (BEP 3, "cancel").
    fn cancel_duplicates(&mut self, from: PeerKey, block: BlockRef, now: Instant) {
        let holders: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(k, p)| **k != from && p.in_flight.contains(&block))
            .map(|(k, _)| *k)
            .collect();
        for k in holders {
            let peer = self.peers.get_mut(&k).expect("listed above");
            peer.in_flight.retain(|b| *b != block);
            withdraw(peer, block);
            self.send(k, Outgoing::Cancel(block), now);
        }
    }

    /// Tops up `key`'s outstanding requests to its queue target.
    fn fill_requests(&mut self, key: PeerKey, now: Instant) {
        let peer = &self.peers[&key];
        if (peer.peer_choking && peer.allowed_in.is_empty()) || !peer.am_interested {
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
        // Pieces count against the budget from the moment they are started (picked), not from their
        // first block: otherwise one pick for a deep queue starts many pieces at once while the
        // budget still looks empty. Past the budget, a peer with nothing in flight may still start a
        // piece (up to a few pieces of headroom), so half-done pieces that only departed peers could
        // finish never stall the download.
        let started = (self.picker.partial_count() + self.verifying.len()) as u64;
        let limit = self.budget_pieces()
            + if peer.in_flight.is_empty() {
                HEADROOM_PIECES
            } else {
                0
            };
        let max_new = limit.saturating_sub(started) as usize;
        let mut picked = std::mem::take(&mut self.scratch);
        picked.clear();
        let in_flight = &peer.in_flight;
        // While it chokes us, only its allowed-fast pieces may be requested (BEP 6).
        let allowed;
        let offered = if peer.peer_choking {
            let mut bits = Bitfield::new(peer.bitfield.len());
            for p in &peer.allowed_in {
                if peer.bitfield.get(p.as_usize()) {
                    bits.set(p.as_usize());
                }
            }
            allowed = bits;
            &allowed
        } else {
            &peer.bitfield
        };
        self.picker.pick(
            offered,
            room,
            max_new,
            |b| in_flight.contains(&b),
            &mut picked,
        );
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

    /// [`Config::max_unverified_bytes`] in pieces of this torrent (at least one).
    fn budget_pieces(&self) -> u64 {
        (self.config.max_unverified_bytes / u64::from(self.layout.piece_length())).max(1)
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
        self.picker.piece_verified(piece, ok);
        if ok {
            self.have.set(piece.as_usize());
            self.stats.verified += len;
            if wanted {
                self.stats.left -= len;
            }
            for ip in &contributors {
                let t = self.trust.entry(*ip).or_insert(0);
                *t = (*t + 1).min(20);
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
            self.events.push_back(Event::HashFailed {
                piece,
                peers: contributors.clone(),
            });
            // A banned address's blocks stay in the pieces it helped fill until they fail: such a
            // piece is its fault alone, or every honest peer that filled the rest would be blamed.
            let mut culprits = contributors;
            if culprits.iter().any(|ip| self.banned.contains(ip)) {
                culprits.retain(|ip| self.banned.contains(ip));
            }
            let penalty = if culprits.len() == 1 { 4 } else { 2 };
            for ip in culprits {
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
        let mut total_up = 0.0;
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        let pex_due = self.pex_enabled()
            && self
                .peers
                .values()
                .any(|p| p.ext.ut_pex.is_some() && p.ext.pex_due.is_some_and(|due| now >= due));
        let pex_snapshot = pex_due.then(|| self.pex_snapshot());
        for key in keys {
            let config = &self.config;
            let peer = self.peers.get_mut(&key).expect("listed");
            total_rate += peer.down.tick(elapsed);
            total_up += peer.up.tick(elapsed);
            peer.refused_this_tick = 0;
            let by_rate = (peer.down.rate * config.queue_seconds / f64::from(BLOCK_SIZE)) as u32;
            // A snubbed peer (its requests timed out) gets one request at a time until it delivers.
            peer.queue_target = if peer.timeouts > 0 {
                1
            } else {
                by_rate.clamp(config.initial_queue, config.max_queue)
            };
            if now.duration_since(peer.last_received) >= config.peer_timeout {
                let silent = now.duration_since(peer.last_received);
                self.disconnect(key, PeerFault::Misbehaved(Offence::Silent(silent)));
                continue;
            }
            if !peer.in_flight.is_empty()
                && now.duration_since(peer.last_block) >= config.request_timeout
            {
                // Stuck requests: give them to other peers, and ask this one for one block at a time
                // until it delivers; drop it if that times out again and again.
                peer.timeouts += 1;
                if peer.timeouts >= MAX_REQUEST_TIMEOUTS {
                    self.disconnect(key, PeerFault::Useless("its requests keep timing out"));
                    continue;
                }
                let stuck: Vec<BlockRef> = peer.in_flight.drain(..).collect();
                peer.queue_target = 1;
                peer.last_block = now;
                for &block in &stuck {
                    withdraw(peer, block);
                }
                for block in stuck {
                    self.picker.request_dropped(block);
                    self.send(key, Outgoing::Cancel(block), now);
                }
            }
            if let Some(snapshot) = &pex_snapshot {
                self.send_pex_if_due(key, now, snapshot);
            }
            let peer = &self.peers[&key];
            if now.duration_since(peer.last_sent) >= self.config.keepalive_interval {
                self.send(key, Outgoing::KeepAlive, now);
            }
        }
        self.stats.download_rate = total_rate as u64;
        self.stats.upload_rate = total_up as u64;
        if self.peers.is_empty() {
            self.next_choke = None;
        } else if self.next_choke.is_none_or(|t| now >= t) {
            self.next_choke = Some(now + self.config.choke_interval);
            self.run_choker(now);
        }
        self.fill_upload_slots(now);
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
            let wanted = self.wanted_of(&peer.bitfield);
            assert_eq!(peer.wanted, wanted, "wanted count");
            assert_eq!(peer.am_interested, wanted > 0, "interest");
            assert!(
                peer.requests.len() as u32 <= self.config.max_peer_requests,
                "request queue bound"
            );
            assert!(peer.uploading <= self.config.upload_window, "upload window");
            for r in &peer.requests {
                assert!(
                    self.have.get(r.piece.as_usize()),
                    "queued request for a piece we lack"
                );
                assert!(
                    !peer.am_choking || peer.allowed_out.binary_search(&r.piece).is_ok(),
                    "queued request of a choked peer outside its allowed-fast set"
                );
            }
        }
        let unchoked = self.peers.values().filter(|p| !p.am_choking).count();
        assert!(unchoked <= self.config.upload_slots + 1, "unchoke slots");
        for (block, n) in counts {
            assert_eq!(self.picker.request_count(block), n, "requests of {block:?}");
        }
        let (mut left, mut wanted) = (0, 0);
        for piece in self.layout.pieces() {
            if self.picker.priority(piece).is_wanted() {
                let len = u64::from(self.layout.piece_len(piece));
                wanted += len;
                left += len * u64::from(!self.have.get(piece.as_usize()));
            }
        }
        assert_eq!(
            (left, wanted),
            (self.stats.left, self.stats.wanted),
            "left and wanted bytes"
        );
        assert_eq!(self.finished, left == 0, "finished");
    }
}

/// Remembers that we withdrew our request for `block` from `peer`, so its late answer is welcome.
fn withdraw(peer: &mut Peer, block: BlockRef) {
    if peer.withdrawn.len() == LATE_BLOCKS_REMEMBERED {
        peer.withdrawn.pop_front();
    }
    peer.withdrawn.push_back(block);
}

/// Bytes moved in one direction of a connection: counted as they go, turned into a smoothed rate at
/// each tick.
#[derive(Debug, Default)]
struct RateMeter {
    /// Bytes since the last tick.
    this_tick: u64,
    /// Smoothed rate, bytes/s (the first sample as is, then 60 % old, 40 % new).
    rate: f64,
}

impl RateMeter {
    fn add(&mut self, bytes: u64) {
        self.this_tick += bytes;
    }

    /// Closes a tick of `elapsed` seconds; returns the tick's own rate, bytes/s.
    fn tick(&mut self, elapsed: f64) -> f64 {
        let sample = self.this_tick as f64 / elapsed;
        self.this_tick = 0;
        self.rate = if self.rate == 0.0 {
            sample
        } else {
            0.6 * self.rate + 0.4 * sample
        };
        sample
    }
}

#[cfg(test)]
mod tests;
