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
//! Time-critical pieces ([`Torrent::set_piece_deadline`], libtorrent's `set_piece_deadline`): see
//! `deadline`. They are requested first, from the fast peers, and again from another peer once late.
//!
//! Invariants (checked by [`Torrent::check_invariants`]):
//! - every block in a peer's or web seed's in-flight list is counted once in the picker's
//!   outstanding requests;
//! - a peer is interested-in exactly when it has a wanted piece (priority other than `Skip`) we have
//!   not verified;
//! - `Stats::left` is the size of the wanted pieces not verified, and the torrent is *finished* exactly
//!   when it is 0 (every wanted piece verified); *complete* means every piece is verified;
//! - a peer's queued requests are for pieces we have, and while we choke it only for its allowed-fast
//!   pieces; at most [`Config::max_peer_requests`] are queued and [`Config::upload_window`] uploading;
//! - at most [`Config::upload_slots`] + 1 (optimistic) peers are unchoked;
//! - a private torrent advertises, serves and sends no extension message (`m` is empty);
//! - we send a peer at most one PEX message per [`PEX_INTERVAL`], never listing the peer itself;
//! - at most [`MAX_INQUIRIES`] failed v2 pieces are being resolved to their bad blocks, each asked
//!   of at most one peer at a time, and that peer is connected ([`crate::blame`]).
//! - a piece has a deadline exactly when the picker holds it critical, and never once verified.
//!
//! [`FilePriority`]: crate::FilePriority

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::time::Instant;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::blame::{Inquiries, MAX_INQUIRIES};
use crate::hashes::{HASH_REJECT, HASHES};
use crate::picker::Picker;
use crate::wire::Message;
use crate::{BLOCK_SIZE, Bitfield, BlockRef, InfoHash, Layout, PieceIndex};

mod deadline;
mod download;
mod ext;
mod io;
mod serve;
mod web;

pub use deadline::FAST_PEER_SHARE;
pub use download::{
    HEADROOM_PIECES, MAX_REQUEST_TIMEOUTS, REDUNDANT_HAVES_ALLOWED, UNREQUESTED_BLOCKS_ALLOWED,
};
pub use ext::{
    METADATA_REQUESTS_PER_MINUTE, PEX_FIRST_DELAY, PEX_INTERVAL, PEX_MAX_PER_MESSAGE,
    PEX_MIN_RECEIVE_INTERVAL,
};
pub use io::{
    Action, Config, Event, FetchEnd, Offence, Outgoing, PeerFault, PeerInfo, PeerKey, PeerStatus,
    Requested, Stats, WebSeedKey, WebSeedStatus,
};

use download::{PieceBuffer, Verifying, withdraw};
use ext::PeerExtensions;
use web::WebSeed;

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
    ///
    /// [`LATE_BLOCKS_REMEMBERED`]: download::LATE_BLOCKS_REMEMBERED
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
    verifying: BTreeMap<PieceIndex, Verifying>,
    /// Failed v2 pieces whose bad blocks are being found (BEP 52 hash requests).
    inquiries: Inquiries<PeerKey>,
    /// Web seeds (BEP 19, BEP 17), ordered like the peers.
    web_seeds: BTreeMap<WebSeedKey, WebSeed>,
    next_web_key: u64,
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
    /// Pieces with a deadline (time-critical pieces).
    deadlines: deadline::Deadlines,
    /// The download rate of the fastest peer that unchokes us, bytes/s, as of the last tick.
    fastest_rate: f64,
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
            inquiries: Inquiries::default(),
            web_seeds: BTreeMap::new(),
            next_web_key: 0,
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
            deadlines: deadline::Deadlines::default(),
            fastest_rate: 0.0,
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

    /// How the connected peer `key` stands, or `None` if it is not connected.
    pub fn peer_status(&self, key: PeerKey) -> Option<PeerStatus> {
        let p = self.peers.get(&key)?;
        Some(PeerStatus {
            download_rate: p.down.rate as u64,
            upload_rate: p.up.rate as u64,
            pieces: p.bitfield.count_ones() as u32,
            am_choking: p.am_choking,
            am_interested: p.am_interested,
            peer_choking: p.peer_choking,
            peer_interested: p.peer_interested,
            encrypted: p.info.encrypted,
            utp: p.info.utp,
            client: p.ext.client.clone(),
        })
    }

    /// Progress counters.
    pub fn stats(&self) -> Stats {
        Stats {
            peers: self.peers.len(),
            unchoked_by: self.peers.values().filter(|p| !p.peer_choking).count(),
            unchoked: self.peers.values().filter(|p| !p.am_choking).count(),
            web_seeds: self.web_seeds.len(),
            web_seeds_sending: self
                .web_seeds
                .keys()
                .filter_map(|k| self.web_seed_status(*k))
                .filter(|s| s.sending && s.fetching)
                .count(),
            ..self.stats
        }
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
        self.inquiries.remove_peer(key);
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
            Message::Unknown { id, payload } if id == HASHES || id == HASH_REJECT => {
                self.on_hash_message(key, id, payload, now)
            }
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
            Message::Bitfield(bytes) => {
                match Bitfield::from_bytes(bytes, self.layout.piece_count() as usize) {
                    Ok(bits) if first => {
                        self.on_availability(key, bits, now);
                        Ok(())
                    }
                    Ok(bits) => {
                        self.on_late_bitfield(key, &bits, now);
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
            Message::HaveAll | Message::HaveNone => {
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

    /// When the engine next needs [`Torrent::handle_timeout`]; `None` while no peer is connected
    /// and no web seed added.
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
        self.next_tick = (!self.peers.is_empty() || !self.web_seeds.is_empty())
            .then(|| now + Duration::from_secs(1));
        let mut total_rate = 0.0;
        let mut total_up = 0.0;
        let mut fastest: f64 = 0.0;
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
            if !peer.peer_choking {
                fastest = fastest.max(peer.down.rate);
            }
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
        total_rate += self.tick_web_seeds(elapsed);
        self.fastest_rate = fastest;
        self.stats.download_rate = total_rate as u64;
        self.stats.upload_rate = total_up as u64;
        if self.peers.is_empty() {
            self.next_choke = None;
        } else if self.next_choke.is_none_or(|t| now >= t) {
            self.next_choke = Some(now + self.config.choke_interval);
            self.run_choker(now);
        }
        self.fill_upload_slots(now);
        self.poll_inquiries(now);
        self.fill_all(now);
    }

    /// The trust of address `ip`: +1 per verified piece it helped fill (up to 20), less for failed
    /// ones; banned at [`Config::ban_trust`].
    pub fn trust(&self, ip: IpAddr) -> i32 {
        self.trust.get(&ip).copied().unwrap_or(0)
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
        for seed in self.web_seeds.values() {
            for b in &seed.in_flight {
                *counts.entry(*b).or_default() += 1;
            }
        }
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
        assert!(self.inquiries.len() <= MAX_INQUIRIES, "inquiry bound");
        for key in self.inquiries.asked() {
            assert!(
                self.peers.contains_key(&key),
                "hash request pending with a gone peer"
            );
        }
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
        self.deadlines.check();
        let mut critical = 0;
        for piece in self.layout.pieces() {
            let deadline = self.deadlines_has(piece);
            assert_eq!(
                self.picker.is_critical(piece),
                deadline,
                "critical {piece:?}"
            );
            if deadline {
                critical += 1;
                assert!(
                    !self.have.get(piece.as_usize()),
                    "deadline on verified {piece:?}"
                );
            }
        }
        assert_eq!(critical, self.piece_deadlines().count(), "deadline count");
    }

    fn deadlines_has(&self, piece: PieceIndex) -> bool {
        self.piece_deadline(piece).is_some()
    }
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
