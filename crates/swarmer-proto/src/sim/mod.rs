//! A deterministic swarm simulator: several [`Torrent`] engines exchanging real wire bytes over
//! simulated links on a virtual clock, so whole-swarm behaviour (piece spreading, tit-for-tat,
//! optimistic unchokes, bans) is tested in milliseconds without sockets, threads or sleeping.
//!
//! It owns the network model, the event queue and the generated content; the engines own every
//! decision. The simulator plays the driver's part exactly as `crates/swarmer` does: it encodes each
//! [`Action::Send`] with [`Outgoing::to_message`](crate::torrent::Outgoing::to_message), turns each [`Action::Upload`] into a `piece` message
//! carrying the block's bytes, decodes every delivered frame with [`Message::decode`] before handing it
//! to [`Torrent::handle_message`], verifies pieces with SHA-1 (or, in a [`Swarm::new_v2`] swarm,
//! against the content's BEP 52 merkle tree, answering leaf hash requests as the driver does) and
//! reports [`Torrent::handle_block_sent`] when a block has left the sender.
//!
//! # Use
//!
//! ```
//! use std::time::Duration;
//! use swarmer_proto::Layout;
//! use swarmer_proto::sim::{NodeConfig, Outcome, Swarm};
//!
//! // 256 KiB in 64 KiB pieces; content, info hash and engine seeds all derive from the seed 7.
//! let mut swarm = Swarm::new(Layout::new(64 * 1024, [256 * 1024]).unwrap(), 7);
//! let seed = swarm.add_node(NodeConfig::seed(1 << 20, 1 << 20)); // bytes/s up, down
//! let leecher = swarm.add_node(NodeConfig::leecher(1 << 20, 1 << 20));
//! swarm.connect(leecher, seed, Duration::from_millis(20)); // one-way latency
//! let outcome = swarm.run_until_complete(Duration::from_secs(10));
//! assert!(matches!(outcome, Outcome::Reached(_)));
//! assert_eq!(swarm.transferred(seed, leecher), 256 * 1024);
//! ```
//!
//! Nodes are added with a [`NodeConfig`] (links, starting pieces, misbehaviour, engine [`Config`]);
//! [`Swarm::connect`] opens connections at the current virtual time, so a test can run for a while,
//! connect a newcomer and run on. [`Swarm::run_until`] stops at a predicate or a time limit. Results
//! are read per node ([`Swarm::stats`], [`Swarm::completed_at`], [`Swarm::events`], [`Swarm::closed`],
//! [`Swarm::engine`]) and per ordered pair ([`Swarm::transferred`], [`Swarm::unchoked_for`],
//! [`Swarm::messages`]). With [`Swarm::set_check_invariants`] on (the default), every engine an event
//! touched runs [`Torrent::check_invariants`] afterwards.
//!
//! # Determinism
//!
//! The simulator itself has no source of variation: the same seed and the same calls produce the same
//! sequence of engine calls, as long as the engines answer them the same way. The engine's random
//! choices come from its seed, but it also iterates `HashMap`s, whose order differs from run to run,
//! so today only swarms in which every node has a single peer are reproducible bit for bit; larger
//! swarms vary by a few per cent and tests assert bounds.
//!
//! # Model
//!
//! - **Time** is a [`Duration`] since the start of the run; the engines get it as an [`Instant`] of a
//!   clock whose origin is the start of the run. Nothing reads a real clock.
//! - **Events** sit in a binary heap ordered by (time, sequence number): the sequence number is the
//!   order in which events were scheduled, so simultaneous events always run in the same order.
//! - **Content** is generated from the swarm's seed (a SplitMix64 stream), so piece hashes are computed,
//!   not stored in fixtures. A piece passes verification when the SHA-1 of the assembled bytes equals
//!   the SHA-1 of the generated piece.
//! - **Links** are store-and-forward. A frame (one length-prefixed wire message) from A to B is pushed
//!   whole through A's uplink at A's upload capacity, travels for the connection's one-way latency,
//!   then passes whole through B's downlink at B's download capacity; it is delivered when the last of
//!   those finishes. A lone frame costs `size/up + latency + size/down`; a stream of frames runs at the
//!   slower of the two capacities.
//! - **Sharing**: each uplink serves its connections **round-robin by bytes**, in connection order: a
//!   connection keeps the uplink until it has sent one full `piece` message's worth of bytes (or has
//!   nothing left), then the next connection with frames waiting takes over. Within a connection frames
//!   stay in order, as on a TCP stream, so a `request` waits behind the blocks already queued on its
//!   own connection (the engine's upload window) and about one block per other busy connection. Each
//!   downlink serves arriving frames first come, first served.
//! - **Verification and disk** take no time: a `VerifyPiece` is answered at once.
//! - **Connections** open instantly (no handshake round trip) with [`Swarm::connect`]; a
//!   `Disconnect` from either engine closes both ends, and frames still queued or in flight on that
//!   connection are dropped.
//!
//! # Not modelled
//!
//! TCP dynamics (slow start, congestion windows, retransmission, receive windows: a downlink slower
//! than the senders builds an unbounded queue instead of slowing them), packet loss, handshakes and
//! connection set-up time, disk and hashing time, trackers and peer discovery (connections are made by
//! the test), and reconnection after a disconnect.
//!
//! # Misbehaving nodes
//!
//! A **liar** flips the first byte of every block it uploads, so every piece it contributes to fails
//! verification. A **free rider** drops every `Upload` its engine asks for: it never sends a block and
//! never reports one sent, so requests to it stay unanswered until they time out.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Bound;
use std::time::Duration;

use crate::time::Instant;

use crate::digest::sha1;
use crate::torrent::{Action, Config, Event, PeerFault, PeerInfo, PeerKey, Stats, Torrent};
use crate::wire::Message;
use crate::{Bitfield, FilePriority, InfoHash, Layout};

#[cfg(test)]
mod tests;
mod v2;

/// A node of the swarm, numbered from 0 in the order of [`Swarm::add_node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(usize);

impl NodeId {
    /// The node's position in the order nodes were added.
    pub fn index(self) -> usize {
        self.0
    }
}

/// The pieces a node starts with (already verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Have {
    /// Every piece: a seed.
    All,
    /// No piece.
    None,
    /// These piece indices (out-of-range indices are ignored).
    Pieces(Vec<u32>),
}

/// One node's links, behaviour and engine configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Uplink capacity in bytes per second (shared by all of the node's connections); must be > 0.
    pub upload_bps: u64,
    /// Downlink capacity in bytes per second; must be > 0.
    pub download_bps: u64,
    /// The pieces the node starts with.
    pub have: Have,
    /// Flips the first byte of every block it uploads.
    pub liar: bool,
    /// Never sends a block: drops every [`Action::Upload`] of its engine.
    pub free_rider: bool,
    /// Answers BEP 52 leaf hash requests (in a [`Swarm::new_v2`] swarm) with a wrong hash.
    pub false_hashes: bool,
    /// Sets the Fast Extension bit (BEP 6); a connection uses it when both ends set it.
    pub fast: bool,
    /// Sets the extension protocol bit (BEP 10); a connection uses it when both ends set it.
    pub extensions: bool,
    /// The engine's tunables.
    pub engine: Config,
    /// The priority of each piece ([`Torrent::set_piece_priorities`]); empty wants every piece.
    pub piece_priorities: Vec<FilePriority>,
}

impl NodeConfig {
    /// An honest node starting with every piece, Fast Extension and BEP 10 on, default engine.
    pub fn seed(upload_bps: u64, download_bps: u64) -> NodeConfig {
        NodeConfig {
            upload_bps,
            download_bps,
            have: Have::All,
            liar: false,
            free_rider: false,
            false_hashes: false,
            fast: true,
            extensions: true,
            engine: Config::default(),
            piece_priorities: Vec::new(),
        }
    }

    /// An honest node starting with no piece, Fast Extension and BEP 10 on, default engine.
    pub fn leecher(upload_bps: u64, download_bps: u64) -> NodeConfig {
        NodeConfig {
            have: Have::None,
            ..NodeConfig::seed(upload_bps, download_bps)
        }
    }
}

/// Why [`Swarm::run_until`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The predicate held at this virtual time.
    Reached(Duration),
    /// The time limit came first; the clock stands at the limit.
    TimeLimit(Duration),
    /// No event is left (no connection is open and no frame is moving).
    Idle(Duration),
}

/// A connection closed by an engine, as the closing node saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// When.
    pub at: Duration,
    /// The node at the other end.
    pub peer: NodeId,
    /// The engine's reason.
    pub fault: PeerFault,
}

/// The simulated swarm. See the module documentation for the model.
#[derive(Debug)]
pub struct Swarm {
    layout: Layout,
    info_hash: InfoHash,
    seed: u64,
    content: Vec<u8>,
    hashes: Vec<[u8; 20]>,
    max_frame: u32,
    now: Duration,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    nodes: Vec<Node>,
    conns: Vec<Conn>,
    /// Payload bytes of `piece` messages delivered, by (sender, receiver).
    transferred: BTreeMap<(NodeId, NodeId), u64>,
    /// Per (sender, receiver): time unchoked so far, and since when if unchoked now, as the receiver
    /// has seen it (from delivered `choke`/`unchoke` messages).
    unchoked: BTreeMap<(NodeId, NodeId), (Duration, Option<Duration>)>,
    /// Messages delivered, by (sender, receiver, message id).
    messages: BTreeMap<(NodeId, NodeId, u8), u64>,
    check_invariants: bool,
    /// The v2 tree of the content, as one file, in a [`Swarm::new_v2`] swarm.
    v2: Option<crate::metainfo::V2Info>,
}

#[derive(Debug)]
struct Node {
    config: NodeConfig,
    engine: Torrent,
    addr: SocketAddr,
    /// Open connections by the engine's key for them.
    peers: BTreeMap<PeerKey, ConnId>,
    uplink: Uplink,
    downlink: Downlink,
    /// The pending engine timer event, so a re-armed timer does not schedule duplicates.
    timer: Option<Duration>,
    completed_at: Option<Duration>,
    first_block_at: Option<Duration>,
    events: Vec<(Duration, Event)>,
    closed: Vec<Closed>,
    /// Payload bytes pushed through the uplink while the node had every piece.
    uploaded_as_seed: u64,
}

#[derive(Debug, Default)]
struct Uplink {
    /// Frames waiting, per connection; a connection without frames has no entry.
    queues: BTreeMap<ConnId, VecDeque<Frame>>,
    busy: Option<Frame>,
    /// The connection whose turn it is (or was last) and the bytes it has sent in this turn.
    turn: Option<(ConnId, usize)>,
}

#[derive(Debug, Default)]
struct Downlink {
    queue: VecDeque<Frame>,
    busy: Option<Frame>,
}

type ConnId = usize;

/// Bytes a connection may push through its uplink per round-robin turn: one `piece` message of a full
/// block. Sharing by bytes rather than by frames keeps a burst of small control messages (say 32
/// `request`s) from waiting one whole round per message behind other connections' blocks, which TCP
/// would not do either.
const TURN_BYTES: usize = crate::BLOCK_SIZE as usize + crate::wire::PIECE_HEADER_LEN;

#[derive(Debug)]
struct Conn {
    /// `ends[0]` dialled `ends[1]`.
    ends: [NodeId; 2],
    /// Each end's engine key for this connection.
    keys: [PeerKey; 2],
    latency: Duration,
    open: bool,
}

impl Conn {
    fn side(&self, node: NodeId) -> usize {
        usize::from(self.ends[1] == node)
    }
}

/// One encoded wire message on its way from `from` to `to`.
#[derive(Debug)]
struct Frame {
    conn: ConnId,
    from: NodeId,
    to: NodeId,
    bytes: Vec<u8>,
    /// Block bytes carried (a `piece` message), 0 for control messages.
    payload: u32,
}

#[derive(Debug)]
enum SimEvent {
    /// The frame in service on this node's uplink has been pushed out.
    UplinkDone(NodeId),
    /// A frame reaches its receiver's downlink after the latency.
    Arrive(Frame),
    /// The frame in service on this node's downlink has been received whole.
    DownlinkDone(NodeId),
    /// The node's engine asked to be woken now ([`Torrent::poll_timeout`]).
    Timer(NodeId),
}

#[derive(Debug)]
struct Scheduled {
    at: Duration,
    seq: u64,
    event: SimEvent,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Scheduled) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Scheduled) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed, so that [`BinaryHeap`] (a max-heap) pops the earliest event, then the first scheduled.
    fn cmp(&self, other: &Scheduled) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a fixed, well-mixed function of its input, used for content,
/// the info hash and per-node engine seeds.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The time to push `bytes` through a link of `bps` bytes per second, rounded up to a nanosecond.
fn transmit_time(bytes: usize, bps: u64) -> Duration {
    let nanos = (bytes as u128 * 1_000_000_000).div_ceil(u128::from(bps));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

impl Swarm {
    /// An empty swarm sharing a torrent of `layout`, whose content, info hash and engine seeds all
    /// derive from `seed`.
    pub fn new(layout: Layout, seed: u64) -> Swarm {
        let total = layout.total_length() as usize;
        let mut content = Vec::with_capacity(total + 8);
        let mut word = 0u64;
        while content.len() < total {
            content.extend_from_slice(&splitmix64(seed ^ splitmix64(word)).to_le_bytes());
            word += 1;
        }
        content.truncate(total);
        let hashes = layout
            .pieces()
            .map(|p| {
                let start = layout.piece_offset(p) as usize;
                sha1(&content[start..start + layout.piece_len(p) as usize])
            })
            .collect();
        let info_hash = InfoHash(sha1(&seed.to_le_bytes()));
        let max_frame = crate::wire::max_message_len(layout.piece_count());
        Swarm {
            layout,
            info_hash,
            seed,
            content,
            hashes,
            max_frame,
            now: Duration::ZERO,
            queue: BinaryHeap::new(),
            seq: 0,
            nodes: Vec::new(),
            conns: Vec::new(),
            transferred: BTreeMap::new(),
            unchoked: BTreeMap::new(),
            messages: BTreeMap::new(),
            check_invariants: true,
            v2: None,
        }
    }

    /// Whether every engine an event touched runs [`Torrent::check_invariants`] after it (on by
    /// default; turn it off for long runs).
    pub fn set_check_invariants(&mut self, on: bool) {
        self.check_invariants = on;
    }

    /// Adds a node with address `127.x.y.1`, port 6881, where `x.y` is the node's index + 1 (so every
    /// node has its own /24, as peers on the Internet mostly do). Panics on a zero capacity.
    pub fn add_node(&mut self, config: NodeConfig) -> NodeId {
        assert!(
            config.upload_bps > 0 && config.download_bps > 0,
            "link capacities must be positive"
        );
        let id = NodeId(self.nodes.len());
        let pieces = self.layout.piece_count() as usize;
        let have = match &config.have {
            Have::All => Bitfield::full(pieces),
            Have::None => Bitfield::new(pieces),
            Have::Pieces(list) => {
                let mut bits = Bitfield::new(pieces);
                for &i in list.iter().filter(|&&i| (i as usize) < pieces) {
                    bits.set(i as usize);
                }
                bits
            }
        };
        let engine_seed = splitmix64(self.seed ^ splitmix64(id.0 as u64 + 1));
        let mut engine = Torrent::new(
            self.layout.clone(),
            self.info_hash,
            have,
            config.engine.clone(),
            engine_seed,
        );
        if !config.piece_priorities.is_empty() {
            engine.set_piece_priorities(&config.piece_priorities, self.instant());
        }
        // One /24 per node: BEP 6 derives the allowed-fast set from the address masked to its /24, so
        // nodes sharing one would all be granted the same pieces and start on the same pieces.
        let n = id.0 + 1;
        let ip = Ipv4Addr::new(127, (n >> 8) as u8, n as u8, 1);
        let completed_at = engine.is_complete().then_some(self.now);
        self.nodes.push(Node {
            config,
            engine,
            addr: SocketAddr::new(IpAddr::V4(ip), 6881),
            peers: BTreeMap::new(),
            uplink: Uplink::default(),
            downlink: Downlink::default(),
            timer: None,
            completed_at,
            first_block_at: None,
            events: Vec::new(),
            closed: Vec::new(),
            uploaded_as_seed: 0,
        });
        id
    }

    /// Opens a connection from `a` to `b` with the given one-way latency (both directions), now: both
    /// engines get [`Torrent::add_peer`]. Returns false, and connects nothing, when either node has
    /// banned the other's address (a driver must not connect to a banned peer). Panics if `a == b`.
    pub fn connect(&mut self, a: NodeId, b: NodeId, latency: Duration) -> bool {
        assert_ne!(a, b, "a node cannot connect to itself");
        let (na, nb) = (&self.nodes[a.0], &self.nodes[b.0]);
        if na.engine.is_banned(nb.addr.ip()) || nb.engine.is_banned(na.addr.ip()) {
            return false;
        }
        let fast = na.config.fast && nb.config.fast;
        let extensions = na.config.extensions && nb.config.extensions;
        // `a` dials `b`.
        let info = |addr, outgoing| PeerInfo {
            addr,
            fast,
            extensions,
            outgoing,
            encrypted: false,
            utp: false,
        };
        let (addr_a, addr_b) = (na.addr, nb.addr);
        let at = self.instant();
        let key_a = self.nodes[a.0].engine.add_peer(info(addr_b, true), at);
        let key_b = self.nodes[b.0].engine.add_peer(info(addr_a, false), at);
        let conn = self.conns.len();
        self.conns.push(Conn {
            ends: [a, b],
            keys: [key_a, key_b],
            latency,
            open: true,
        });
        self.nodes[a.0].peers.insert(key_a, conn);
        self.nodes[b.0].peers.insert(key_b, conn);
        self.drain(a);
        self.drain(b);
        true
    }

    /// Runs events until `done` holds (checked before each event), the virtual clock would pass
    /// `limit`, or nothing is left to do.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Swarm) -> bool) -> Outcome {
        loop {
            if done(self) {
                return Outcome::Reached(self.now);
            }
            let Some(next) = self.queue.peek() else {
                return Outcome::Idle(self.now);
            };
            if next.at > limit {
                self.now = limit;
                return Outcome::TimeLimit(limit);
            }
            let Scheduled { at, event, .. } = self.queue.pop().expect("peeked");
            self.now = at;
            self.handle(event);
        }
    }

    /// Runs until every node has every piece, or until `limit`.
    pub fn run_until_complete(&mut self, limit: Duration) -> Outcome {
        self.run_until(limit, Swarm::all_complete)
    }

    /// True when every node has every piece.
    pub fn all_complete(&self) -> bool {
        self.nodes.iter().all(|n| n.engine.is_complete())
    }

    /// The virtual time since the swarm was built.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The torrent's layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Every node, in the order they were added.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + use<> {
        (0..self.nodes.len()).map(NodeId)
    }

    /// A node's engine, for read-only queries ([`Torrent::have`], [`Torrent::is_banned`], ...).
    pub fn engine(&self, node: NodeId) -> &Torrent {
        &self.nodes[node.0].engine
    }

    /// Calls `f` with a node's engine and the current time, then carries out what the engine asked
    /// for (and checks its invariants, when on), as after any event: how a test sets piece
    /// deadlines or priorities in the middle of a run.
    pub fn with_engine<T>(
        &mut self,
        node: NodeId,
        f: impl FnOnce(&mut Torrent, Instant) -> T,
    ) -> T {
        let at = self.instant();
        let out = f(&mut self.nodes[node.0].engine, at);
        self.drain(node);
        out
    }

    /// The virtual time `at` as the engines' [`Instant`].
    pub fn instant_at(&self, at: Duration) -> Instant {
        Instant::from_origin(at)
    }

    /// A node's engine counters.
    pub fn stats(&self, node: NodeId) -> Stats {
        self.nodes[node.0].engine.stats()
    }

    /// A node's address (its IP is what peers ban).
    pub fn addr(&self, node: NodeId) -> SocketAddr {
        self.nodes[node.0].addr
    }

    /// When the node had every piece verified (at creation for a seed), if it has.
    pub fn completed_at(&self, node: NodeId) -> Option<Duration> {
        self.nodes[node.0].completed_at
    }

    /// When the node received its first block, if it has.
    pub fn first_block_at(&self, node: NodeId) -> Option<Duration> {
        self.nodes[node.0].first_block_at
    }

    /// Payload bytes of `piece` messages delivered from `from` to `to` (good or bad, needed or not).
    pub fn transferred(&self, from: NodeId, to: NodeId) -> u64 {
        self.transferred.get(&(from, to)).copied().unwrap_or(0)
    }

    /// The number of messages with wire id `id` (BEP 3: 6 is `request`, 7 `piece`, 8 `cancel`; BEP 6:
    /// 16 `reject`, ...) delivered from `from` to `to`. Keep-alives have no id and are not counted.
    pub fn messages(&self, from: NodeId, to: NodeId, id: u8) -> u64 {
        self.messages.get(&(from, to, id)).copied().unwrap_or(0)
    }

    /// How long `to` has been unchoked by `from` in total, as `to` saw it: from each delivered
    /// `unchoke` to the next delivered `choke` or the end of the connection.
    pub fn unchoked_for(&self, from: NodeId, to: NodeId) -> Duration {
        match self.unchoked.get(&(from, to)) {
            Some(&(total, since)) => total + since.map_or(Duration::ZERO, |s| self.now - s),
            None => Duration::ZERO,
        }
    }

    /// Payload bytes `node` pushed through its uplink while it had every piece.
    pub fn uploaded_as_seed(&self, node: NodeId) -> u64 {
        self.nodes[node.0].uploaded_as_seed
    }

    /// The engine's events ([`Torrent::poll_event`]) with the virtual time they were drained.
    pub fn events(&self, node: NodeId) -> &[(Duration, Event)] {
        &self.nodes[node.0].events
    }

    /// Connections the node's engine closed, with the reason.
    pub fn closed(&self, node: NodeId) -> &[Closed] {
        &self.nodes[node.0].closed
    }

    /// The generated bytes of the whole torrent.
    pub fn content(&self) -> &[u8] {
        &self.content
    }

    fn instant(&self) -> Instant {
        Instant::from_origin(self.now)
    }

    fn schedule(&mut self, at: Duration, event: SimEvent) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }

    fn handle(&mut self, event: SimEvent) {
        match event {
            SimEvent::UplinkDone(node) => self.uplink_done(node),
            SimEvent::Arrive(frame) => {
                if self.conns[frame.conn].open {
                    let to = frame.to;
                    self.nodes[to.0].downlink.queue.push_back(frame);
                    self.kick_downlink(to);
                }
            }
            SimEvent::DownlinkDone(node) => self.downlink_done(node),
            SimEvent::Timer(node) => {
                if self.nodes[node.0].timer == Some(self.now) {
                    self.nodes[node.0].timer = None;
                    let at = self.instant();
                    self.nodes[node.0].engine.handle_timeout(at);
                    self.drain(node);
                }
            }
        }
    }

    /// The frame on `node`'s uplink is out: the next one starts, this one travels, and a block is
    /// reported sent to the engine.
    fn uplink_done(&mut self, node: NodeId) {
        let frame = self.nodes[node.0].uplink.busy.take().expect("uplink busy");
        self.kick_uplink(node);
        let conn = &self.conns[frame.conn];
        if !conn.open {
            return;
        }
        let (latency, key) = (conn.latency, conn.keys[conn.side(node)]);
        let payload = frame.payload;
        self.schedule(self.now + latency, SimEvent::Arrive(frame));
        if payload > 0 {
            let at = self.instant();
            let n = &mut self.nodes[node.0];
            if n.engine.is_complete() {
                n.uploaded_as_seed += u64::from(payload);
            }
            n.engine.handle_block_sent(key, 1, u64::from(payload), at);
            self.drain(node);
        }
    }

    /// The frame on `node`'s downlink is in: decode it and hand it to the engine.
    fn downlink_done(&mut self, node: NodeId) {
        let frame = self.nodes[node.0]
            .downlink
            .busy
            .take()
            .expect("downlink busy");
        self.kick_downlink(node);
        let conn = &self.conns[frame.conn];
        if !conn.open {
            return;
        }
        let key = conn.keys[conn.side(node)];
        let (message, used) = match Message::decode(&frame.bytes, self.max_frame) {
            Ok(Some(decoded)) => decoded,
            other => panic!(
                "frame of {} bytes did not decode: {other:?}",
                frame.bytes.len()
            ),
        };
        assert_eq!(used, frame.bytes.len(), "one frame is one message");
        if frame.payload > 0 {
            *self.transferred.entry((frame.from, node)).or_default() += u64::from(frame.payload);
            self.nodes[node.0].first_block_at.get_or_insert(self.now);
        }
        if let Some(id) = message.id() {
            *self.messages.entry((frame.from, node, id)).or_default() += 1;
        }
        match message {
            Message::Unchoke => self.set_unchoked(frame.from, node, true),
            Message::Choke => self.set_unchoked(frame.from, node, false),
            _ => {}
        }
        if let Message::Unknown { id, payload } = message {
            if id == crate::hashes::HASH_REQUEST {
                // Answered by the driver, as the library does.
                self.answer_hash_request(node, frame.conn, payload);
                return;
            }
        }
        let at = self.instant();
        self.nodes[node.0].engine.handle_message(key, message, at);
        self.drain(node);
    }

    /// Records that `to` learnt it is unchoked (or choked) by `from`.
    fn set_unchoked(&mut self, from: NodeId, to: NodeId, unchoked: bool) {
        let now = self.now;
        let (total, since) = self.unchoked.entry((from, to)).or_default();
        match (since.is_some(), unchoked) {
            (false, true) => *since = Some(now),
            (true, false) => *total += now - since.take().expect("unchoked"),
            _ => {}
        }
    }

    /// Starts the next frame on `node`'s uplink if it is idle. The connection whose turn it is keeps
    /// the uplink until it has sent [`TURN_BYTES`] or has nothing left; then the turn passes to the next
    /// connection (by id, wrapping) with frames waiting.
    fn kick_uplink(&mut self, node: NodeId) {
        let uplink = &mut self.nodes[node.0].uplink;
        if uplink.busy.is_some() {
            return;
        }
        let current = uplink
            .turn
            .filter(|(c, sent)| *sent < TURN_BYTES && uplink.queues.contains_key(c));
        let (conn, sent) = match current {
            Some(turn) => turn,
            None => {
                let after = uplink
                    .turn
                    .map_or(Bound::Unbounded, |(c, _)| Bound::Excluded(c));
                let next = uplink
                    .queues
                    .range((after, Bound::Unbounded))
                    .next()
                    .or_else(|| uplink.queues.iter().next())
                    .map(|(c, _)| *c);
                let Some(conn) = next else {
                    return;
                };
                (conn, 0)
            }
        };
        let queue = uplink.queues.get_mut(&conn).expect("listed");
        let frame = queue.pop_front().expect("queues hold no empty entry");
        if queue.is_empty() {
            uplink.queues.remove(&conn);
        }
        uplink.turn = Some((conn, sent + frame.bytes.len()));
        let done =
            self.now + transmit_time(frame.bytes.len(), self.nodes[node.0].config.upload_bps);
        self.nodes[node.0].uplink.busy = Some(frame);
        self.schedule(done, SimEvent::UplinkDone(node));
    }

    /// Starts the next frame on `node`'s downlink if it is idle.
    fn kick_downlink(&mut self, node: NodeId) {
        let n = &mut self.nodes[node.0];
        if n.downlink.busy.is_some() {
            return;
        }
        let Some(frame) = n.downlink.queue.pop_front() else {
            return;
        };
        let done = self.now + transmit_time(frame.bytes.len(), n.config.download_bps);
        n.downlink.busy = Some(frame);
        self.schedule(done, SimEvent::DownlinkDone(node));
    }

    /// Queues `bytes` on `node`'s uplink for connection `conn` (the caller starts the uplink).
    fn enqueue(&mut self, node: NodeId, conn: ConnId, bytes: Vec<u8>, payload: u32) {
        let c = &self.conns[conn];
        let to = c.ends[1 - c.side(node)];
        let frame = Frame {
            conn,
            from: node,
            to,
            bytes,
            payload,
        };
        self.nodes[node.0]
            .uplink
            .queues
            .entry(conn)
            .or_default()
            .push_back(frame);
    }

    /// Carries out everything `node`'s engine asked for, records its events and re-arms its timer.
    fn drain(&mut self, node: NodeId) {
        while let Some(action) = self.nodes[node.0].engine.poll_action() {
            match action {
                Action::Send { peer, message } => {
                    let Some(&conn) = self.nodes[node.0].peers.get(&peer) else {
                        continue;
                    };
                    let mut bytes = Vec::new();
                    message.to_message().encode(&mut bytes);
                    self.enqueue(node, conn, bytes, 0);
                }
                Action::Upload { peer, block } => {
                    let n = &self.nodes[node.0];
                    let Some(&conn) = n.peers.get(&peer) else {
                        continue;
                    };
                    if n.config.free_rider {
                        continue;
                    }
                    let start =
                        (self.layout.piece_offset(block.piece) + u64::from(block.offset)) as usize;
                    let mut data = self.content[start..start + block.length as usize].to_vec();
                    if n.config.liar {
                        data[0] ^= 0xff;
                    }
                    let mut bytes = Vec::with_capacity(data.len() + 13);
                    Message::Piece {
                        index: block.piece.get(),
                        begin: block.offset,
                        data: &data,
                    }
                    .encode(&mut bytes);
                    self.enqueue(node, conn, bytes, block.length);
                }
                Action::Disconnect { peer, fault } => {
                    let Some(conn) = self.nodes[node.0].peers.remove(&peer) else {
                        continue;
                    };
                    let c = &self.conns[conn];
                    let other = c.ends[1 - c.side(node)];
                    self.nodes[node.0].closed.push(Closed {
                        at: self.now,
                        peer: other,
                        fault,
                    });
                    self.close(conn, other);
                }
                Action::VerifyPiece { piece, data } => {
                    let check = self.check_piece(piece, &data);
                    let at = self.instant();
                    self.nodes[node.0]
                        .engine
                        .handle_piece_checked(piece, check, data, at);
                }
                // The simulated swarm has no web seeds.
                Action::WebFetch { .. } | Action::DropWebSeed { .. } => {}
            }
        }
        let now = self.now;
        let n = &mut self.nodes[node.0];
        while let Some(event) = n.engine.poll_event() {
            if event == Event::Complete {
                n.completed_at.get_or_insert(now);
            }
            n.events.push((now, event));
        }
        if let Some(wake) = n.engine.poll_timeout() {
            let wake = wake.since_origin().max(now);
            if n.timer != Some(wake) {
                n.timer = Some(wake);
                self.schedule(wake, SimEvent::Timer(node));
            }
        }
        // Started only now, so which connection goes first depends on the round-robin order, not on
        // the order in which the engine emitted actions for different peers.
        self.kick_uplink(node);
        if self.check_invariants {
            self.nodes[node.0].engine.check_invariants();
        }
    }

    /// Closes `conn` after one end's engine disconnected it: `other` (the end that still knows it)
    /// forgets it, and frames queued on it at either end are dropped (those in flight are dropped on
    /// arrival).
    fn close(&mut self, conn: ConnId, other: NodeId) {
        let c = &mut self.conns[conn];
        c.open = false;
        let ends = c.ends;
        let key = c.keys[c.side(other)];
        // A closed connection unchokes nobody.
        self.set_unchoked(ends[0], ends[1], false);
        self.set_unchoked(ends[1], ends[0], false);
        for end in ends {
            self.nodes[end.0].uplink.queues.remove(&conn);
        }
        if self.nodes[other.0].peers.remove(&key).is_some() {
            self.nodes[other.0].engine.remove_peer(key);
            self.drain(other);
        }
    }
}
