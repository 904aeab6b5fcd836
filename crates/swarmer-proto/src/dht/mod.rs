//! The mainline DHT (BEP 5) as a sans-IO state machine: [`Dht`] takes datagrams and the time in and
//! hands datagrams, events and its next deadline out. It looks up peers for info hashes (iterative
//! `get_peers`, then `announce_peer` to the closest nodes that gave a token), keeps a routing table
//! fresh, and serves other nodes' queries from its table and a bounded store of announced peers.
//!
//! Modules: [`krpc`] (the message codec), [`node_id`] (ids, XOR distance, BEP 42), [`routing`]
//! (k-buckets), [`tokens`] (announce tokens), [`lookup`] (the iterative search).
//!
//! **Bounds.** Outstanding queries: [`MAX_TRANSACTIONS`]; concurrent searches: [`MAX_SEARCHES`];
//! queued datagrams and events: [`MAX_QUEUE`] each (excess dropped, as a congested network would);
//! announced peers: [`MAX_STORED_TORRENTS`] info hashes × [`MAX_STORED_PEERS`] peers, each expiring after
//! [`PEER_TTL`]; answers to queries are rate limited per source IP and in total ([`Config`]).
//!
//! **Security rules we enforce.** A response must come from the address the query went to and echo
//! its transaction id. A node enters the routing table only if it answered a query or queried us,
//! never from hearsay (`nodes` lists), one entry per address. BEP 42: a node on a public address
//! whose id does not match its IP is used in lookups but kept out of the routing table; loopback and
//! private addresses are exempt. Our own id is random (BEP 42 ids need our external address, which we
//! do not know at start).

pub mod krpc;
pub mod lookup;
pub mod node_id;
pub mod routing;
pub mod tokens;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::time::Instant;

use rand::{Rng, SeedableRng, rngs::SmallRng};

use crate::InfoHash;
use krpc::{Body, CompactNode, Message, Method, Query, Response, error_code};
use lookup::{Lookup, Target};
use node_id::{NodeId, bep42_valid};
use routing::{Inserted, K, RoutingTable};
use tokens::Tokens;

/// A query unanswered this long is given up (the node counts one failure).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// A query unanswered this long frees its lookup slot for another node (it may still answer).
pub const SLOW_QUERY: Duration = Duration::from_secs(2);
/// Most queries outstanding at once.
pub const MAX_TRANSACTIONS: usize = 256;
/// Most searches at once; more are reported done at once.
pub const MAX_SEARCHES: usize = 64;
/// Most datagrams waiting in [`Dht::poll_transmit`] and events in [`Dht::poll_event`].
pub const MAX_QUEUE: usize = 1024;
/// Most info hashes with announced peers stored.
pub const MAX_STORED_TORRENTS: usize = 1000;
/// Most peers stored per info hash.
pub const MAX_STORED_PEERS: usize = 100;
/// How long an announced peer is kept (BEP 5 leaves it open; clients re-announce every 15–30 min).
pub const PEER_TTL: Duration = Duration::from_secs(30 * 60);
/// Most peers returned in one `get_peers` answer (50 × 6 bytes keeps the datagram small).
pub const MAX_VALUES_SENT: usize = 50;
/// Period of housekeeping: secret rotation, expiry, bucket refresh, re-bootstrap.
pub const MAINTENANCE: Duration = Duration::from_secs(5);
/// With fewer than K nodes in the table, bootstrap again this often.
pub const REBOOTSTRAP: Duration = Duration::from_secs(60);
/// Most remembered bootstrap addresses.
pub const MAX_BOOTSTRAP: usize = 32;
/// Most distinct source IPs whose rate is tracked; beyond that, queries from new IPs go unanswered
/// until idle ones are forgotten (a flood from many addresses then costs us nothing).
pub const MAX_RATE_IPS: usize = 4096;
/// A search started before we know any node waits this long for the table to fill (bootstrap in
/// progress) before it gives up.
pub const JOIN_WAIT: Duration = Duration::from_secs(10);
/// Our KRPC version string `v`: "SW" and version 0.1.
pub const VERSION: &[u8; 4] = b"SW\x00\x01";

/// Settings of a [`Dht`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Queries answered per second from one IP (sustained), and the burst on top.
    pub per_ip_rate: (f64, f64),
    /// Queries answered per second from everyone together, and the burst.
    pub global_rate: (f64, f64),
    /// Enforce BEP 42 for routing-table entries on public addresses.
    pub enforce_node_id: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            per_ip_rate: (10.0, 50.0),
            global_rate: (500.0, 1000.0),
            enforce_node_id: true,
        }
    }
}

/// Names one search started with [`Dht::get_peers`] (or internally, for bootstrap and refresh).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SearchId(pub u64);

/// What the DHT reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A `get_peers` search learned peers it had not reported before (compact `values`, BEP 5).
    PeersFound {
        /// The search.
        search: SearchId,
        /// New peer addresses (TCP).
        peers: Vec<SocketAddr>,
    },
    /// A search ended (after its announces, if it had a port to announce).
    SearchDone {
        /// The search.
        search: SearchId,
        /// Announces sent (to the closest nodes that gave a token).
        announced: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnKind {
    Ping,
    Search(SearchId, Target),
    Announce,
}

#[derive(Debug, Clone)]
struct Txn {
    addr: SocketAddr,
    node: Option<NodeId>,
    kind: TxnKind,
    sent: Instant,
    slow: bool,
}

#[derive(Debug)]
enum SearchKind {
    FindNode,
    GetPeers {
        info_hash: InfoHash,
        announce_port: Option<u16>,
    },
}

#[derive(Debug)]
struct Search {
    started: Instant,
    lookup: Lookup,
    kind: SearchKind,
    seen: HashSet<SocketAddr>,
}

/// Most peers a search remembers having reported (to report each once).
const MAX_SEEN_PEERS: usize = 2000;

/// A token bucket: `tokens` refill at `rate` per second up to `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, (rate, burst): (f64, f64), now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The DHT node. See the module docs.
pub struct Dht {
    config: Config,
    table: RoutingTable,
    tokens: Tokens,
    rng: SmallRng,
    txns: HashMap<u16, Txn>,
    next_tid: u16,
    searches: HashMap<SearchId, Search>,
    next_search: u64,
    store: HashMap<InfoHash, Vec<(SocketAddr, Instant)>>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    bootstrap: Vec<SocketAddr>,
    last_bootstrap: Option<Instant>,
    per_ip: HashMap<IpAddr, Bucket>,
    global: Bucket,
    next_maintenance: Instant,
}

impl Dht {
    /// A node with id `id` (random for a new node; the saved one to keep our place in the id space).
    /// `seed` seeds the random choices (transaction ids, refresh targets, token secrets).
    pub fn new(id: NodeId, config: Config, seed: u64, now: Instant) -> Dht {
        let mut rng = SmallRng::seed_from_u64(seed);
        let tokens = Tokens::new(&mut rng, now);
        let burst = config.global_rate.1;
        Dht {
            table: RoutingTable::new(id, now),
            tokens,
            next_tid: rng.r#gen(),
            rng,
            txns: HashMap::new(),
            searches: HashMap::new(),
            next_search: 1,
            store: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            bootstrap: Vec::new(),
            last_bootstrap: None,
            per_ip: HashMap::new(),
            global: Bucket {
                tokens: burst,
                last: now,
            },
            next_maintenance: now + MAINTENANCE,
            config,
        }
    }

    /// Our node id.
    pub fn id(&self) -> NodeId {
        self.table.own_id()
    }

    /// The routing table (read-only), for diagnostics.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// Nodes worth saving for the next start: every node in the table that is not bad.
    pub fn nodes(&self, now: Instant) -> Vec<(NodeId, SocketAddr)> {
        self.table
            .nodes()
            .filter(|n| n.status(now) != routing::Status::Bad)
            .map(|n| (n.id, n.addr))
            .collect()
    }

    /// Joins the network through `addrs` (bootstrap routers, saved nodes; ids unknown): looks up our own
    /// id starting from them. They are remembered (at most [`MAX_BOOTSTRAP`]) to bootstrap again while
    /// the table holds fewer than K nodes.
    pub fn bootstrap(&mut self, addrs: &[SocketAddr], now: Instant) -> SearchId {
        for a in addrs {
            let a = krpc::canonical_addr(*a);
            if !self.bootstrap.contains(&a) && self.bootstrap.len() < MAX_BOOTSTRAP {
                self.bootstrap.push(a);
            }
        }
        self.last_bootstrap = Some(now);
        let seeds: Vec<SocketAddr> = addrs.iter().map(|a| krpc::canonical_addr(*a)).collect();
        let own = self.id();
        self.start_search(own, SearchKind::FindNode, &seeds, now)
    }

    /// Starts a `get_peers` search for `info_hash` (BEP 5): peers come as [`Event::PeersFound`], the end
    /// as [`Event::SearchDone`]. With `announce_port`, we then announce ourselves as a peer on that TCP
    /// port to the closest nodes that gave a token.
    pub fn get_peers(
        &mut self,
        info_hash: InfoHash,
        announce_port: Option<u16>,
        now: Instant,
    ) -> SearchId {
        let seeds = if self.table.len() < K {
            self.bootstrap.clone()
        } else {
            Vec::new()
        };
        self.start_search(
            NodeId(info_hash.0),
            SearchKind::GetPeers {
                info_hash,
                announce_port,
            },
            &seeds,
            now,
        )
    }

    /// Stops a search; no more events come for it.
    pub fn cancel(&mut self, search: SearchId) {
        self.searches.remove(&search);
    }

    /// Pings `addr` (a peer's BEP 5 `port` message, or a node to add): if it answers, it enters the
    /// routing table.
    pub fn ping(&mut self, addr: SocketAddr, now: Instant) {
        let addr = krpc::canonical_addr(addr);
        let known = self.table.nodes().any(|n| n.addr == addr);
        let asking = self.txns.values().any(|t| t.addr == addr);
        if addr.port() == 0 || known || asking {
            return;
        }
        self.send_query(addr, None, TxnKind::Ping, Method::Ping, now);
    }

    /// The next datagram to send: destination and bytes.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Dht::handle_timeout`] next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let txn = self
            .txns
            .values()
            .map(|t| t.sent + if t.slow { QUERY_TIMEOUT } else { SLOW_QUERY })
            .min();
        Some(txn.map_or(self.next_maintenance, |t| t.min(self.next_maintenance)))
    }

    /// Expires queries, rotates the token secret, expires stored peers, refreshes stale buckets and
    /// bootstraps again if the table is nearly empty.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let mut slowed = Vec::new();
        for (tid, t) in &mut self.txns {
            if now >= t.sent + QUERY_TIMEOUT {
                expired.push(*tid);
            } else if !t.slow && now >= t.sent + SLOW_QUERY {
                t.slow = true;
                slowed.push(t.kind);
            }
        }
        for kind in slowed {
            if let TxnKind::Search(s, _) = kind {
                if let Some(s) = self.searches.get_mut(&s) {
                    s.lookup.slow();
                }
            }
        }
        for tid in expired {
            if let Some(t) = self.txns.remove(&tid) {
                if let Some(id) = t.node {
                    self.table.failed(&id);
                }
                if let TxnKind::Search(s, target) = t.kind {
                    if let Some(s) = self.searches.get_mut(&s) {
                        s.lookup.failed(target, t.slow);
                    }
                }
            }
        }
        if now >= self.next_maintenance {
            self.next_maintenance = now + MAINTENANCE;
            self.maintain(now);
        }
        self.drive_searches(now);
    }

    fn maintain(&mut self, now: Instant) {
        self.tokens.rotate_if_due(now, &mut self.rng);
        self.store.retain(|_, peers| {
            peers.retain(|(_, at)| now.saturating_duration_since(*at) < PEER_TTL);
            !peers.is_empty()
        });
        // Forget rate state of IPs whose bucket has refilled: they are indistinguishable from new ones.
        let (rate, burst) = self.config.per_ip_rate;
        self.per_ip.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < burst
        });
        let busy = !self.searches.is_empty();
        if self.table.len() < K
            && !self.bootstrap.is_empty()
            && !busy
            && self
                .last_bootstrap
                .is_none_or(|t| now.saturating_duration_since(t) >= REBOOTSTRAP)
        {
            let addrs = self.bootstrap.clone();
            self.bootstrap(&addrs, now);
        }
        if !self.table.is_empty() {
            for target in self.table.refresh_targets(now, &mut self.rng) {
                if self.searches.len() < MAX_SEARCHES / 2 {
                    self.start_search(target, SearchKind::FindNode, &[], now);
                }
            }
        }
    }

    /// Handles one datagram from `from`. Malformed input is dropped silently (it never panics).
    pub fn handle_packet(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        let from = krpc::canonical_addr(from);
        let msg = match Message::decode(bytes) {
            Ok(msg) => msg,
            Err(krpc::KrpcError::MalformedQuery {
                transaction,
                problem,
            }) => {
                // BEP 5: a protocol error (203) tells the sender what is wrong, within the same
                // rate limits as any answer.
                if self.rate_ok(from.ip(), now) {
                    self.reply(
                        from,
                        transaction,
                        Body::Error {
                            code: error_code::PROTOCOL,
                            message: problem.to_string(),
                        },
                    );
                }
                return;
            }
            Err(_) => return,
        };
        match msg.body {
            Body::Query(q) => self.handle_query(from, msg.transaction, msg.read_only, q, now),
            Body::Response(r) => {
                self.handle_response(from, &msg.transaction, msg.read_only, r, now)
            }
            Body::Error { .. } => {
                if let Some(t) = self.take_txn(from, &msg.transaction) {
                    // The node is alive but refused: the search moves on without it.
                    if let TxnKind::Search(s, target) = t.kind {
                        if let Some(s) = self.searches.get_mut(&s) {
                            s.lookup.failed(target, t.slow);
                        }
                    }
                }
            }
        }
        self.drive_searches(now);
    }

    fn take_txn(&mut self, from: SocketAddr, tid: &[u8]) -> Option<Txn> {
        let tid = u16::from_be_bytes(tid.try_into().ok()?);
        match self.txns.get(&tid) {
            Some(t) if t.addr == from => self.txns.remove(&tid),
            _ => None,
        }
    }

    fn rate_ok(&mut self, ip: IpAddr, now: Instant) -> bool {
        let (rate, burst) = self.config.per_ip_rate;
        if !self.per_ip.contains_key(&ip) && self.per_ip.len() >= MAX_RATE_IPS {
            return false;
        }
        let b = self.per_ip.entry(ip).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        b.take((rate, burst), now) && self.global.take(self.config.global_rate, now)
    }

    fn handle_query(
        &mut self,
        from: SocketAddr,
        tid: Vec<u8>,
        read_only: bool,
        q: Query,
        now: Instant,
    ) {
        if !self.rate_ok(from.ip(), now) {
            return;
        }
        if !read_only {
            self.heard_from(q.id, from, false, now);
        }
        let own = self.id();
        let body = match q.method {
            Method::Ping => Body::Response(Response {
                id: own,
                ..Response::default()
            }),
            Method::FindNode { target } => {
                let (nodes, nodes6) = self.compact_closest(&target, from, now);
                Body::Response(Response {
                    id: own,
                    nodes,
                    nodes6,
                    ..Response::default()
                })
            }
            Method::GetPeers { info_hash } => {
                let (nodes, nodes6) = self.compact_closest(&NodeId(info_hash.0), from, now);
                let values = self
                    .store
                    .get(&info_hash)
                    .map(|peers| {
                        peers
                            .iter()
                            .rev()
                            .filter(|(a, _)| a.is_ipv4() == from.is_ipv4())
                            .take(MAX_VALUES_SENT)
                            .map(|(a, _)| *a)
                            .collect()
                    })
                    .unwrap_or_default();
                Body::Response(Response {
                    id: own,
                    nodes,
                    nodes6,
                    values,
                    token: Some(self.tokens.make(from.ip()).to_vec()),
                })
            }
            Method::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
            } => {
                if self.tokens.validate(from.ip(), &token) {
                    let port = if implied_port { from.port() } else { port };
                    let peer = SocketAddr::new(from.ip(), port);
                    self.store_peer(info_hash, peer, now);
                    self.report_local_peer(info_hash, peer);
                    Body::Response(Response {
                        id: own,
                        ..Response::default()
                    })
                } else {
                    Body::Error {
                        code: error_code::PROTOCOL,
                        message: "bad token".into(),
                    }
                }
            }
            Method::Unknown(_) => Body::Error {
                code: error_code::METHOD_UNKNOWN,
                message: "method unknown".into(),
            },
        };
        self.reply(from, tid, body);
    }

    /// Sends `body` to `from` as the answer to its query with transaction id `tid`.
    fn reply(&mut self, from: SocketAddr, tid: Vec<u8>, body: Body) {
        let reply = Message {
            transaction: tid,
            version: Some(VERSION.to_vec()),
            ip: Some(from),
            read_only: false,
            body,
        };
        self.transmit(from, reply.encode());
    }

    fn compact_closest(
        &self,
        target: &NodeId,
        from: SocketAddr,
        now: Instant,
    ) -> (Vec<CompactNode>, Vec<CompactNode>) {
        // BEP 32: answer in the requester's address family.
        let nodes: Vec<CompactNode> = self
            .table
            .closest(target, K * 4, now)
            .into_iter()
            .filter(|n| n.addr.is_ipv4() == from.is_ipv4())
            .take(K)
            .map(|n| CompactNode {
                id: n.id,
                addr: n.addr,
            })
            .collect();
        if from.is_ipv4() {
            (nodes, Vec::new())
        } else {
            (Vec::new(), nodes)
        }
    }

    fn store_peer(&mut self, info_hash: InfoHash, peer: SocketAddr, now: Instant) {
        if !self.store.contains_key(&info_hash) && self.store.len() >= MAX_STORED_TORRENTS {
            // Evict the torrent announced least recently (each list is in announce order).
            let stalest = self
                .store
                .iter()
                .min_by_key(|(_, p)| p.last().map(|(_, t)| *t))
                .map(|(h, _)| *h);
            if let Some(h) = stalest {
                self.store.remove(&h);
            }
        }
        let peers = self.store.entry(info_hash).or_default();
        peers.retain(|(a, _)| *a != peer);
        if peers.len() >= MAX_STORED_PEERS {
            peers.remove(0);
        }
        peers.push((peer, now));
    }

    /// Reports a peer announced to us to our own searches for that torrent.
    fn report_local_peer(&mut self, info_hash: InfoHash, peer: SocketAddr) {
        for (sid, s) in &mut self.searches {
            let wanted =
                matches!(s.kind, SearchKind::GetPeers { info_hash: h, .. } if h == info_hash);
            if wanted && s.seen.len() < MAX_SEEN_PEERS && s.seen.insert(peer) {
                push_bounded(
                    &mut self.events,
                    Event::PeersFound {
                        search: *sid,
                        peers: vec![peer],
                    },
                );
            }
        }
    }

    /// Number of peers stored for `info_hash` from others' announces.
    pub fn stored_peers(&self, info_hash: &InfoHash) -> usize {
        self.store.get(info_hash).map_or(0, Vec::len)
    }

    /// A node answered (`responded`) or queried us: update or add it to the table, pinging a
    /// questionable node of a full bucket so it either proves itself or makes room.
    fn heard_from(&mut self, id: NodeId, addr: SocketAddr, responded: bool, now: Instant) {
        if self.config.enforce_node_id && !bep42_valid(&id, addr.ip()) {
            return;
        }
        match self.table.insert(id, addr, responded, now) {
            Inserted::Full(Some((id, addr))) => {
                let pinging = self.txns.values().any(|t| t.addr == addr);
                if !pinging {
                    self.send_query(addr, Some(id), TxnKind::Ping, Method::Ping, now);
                }
            }
            // Heard from but never answered us: confirm it answers before relying on it.
            Inserted::Added
                if !responded
                    && self
                        .table
                        .get(&id)
                        .is_some_and(|n| n.last_response.is_none())
                    && !self.txns.values().any(|t| t.addr == addr) =>
            {
                self.send_query(addr, Some(id), TxnKind::Ping, Method::Ping, now);
            }
            _ => {}
        }
    }

    fn handle_response(
        &mut self,
        from: SocketAddr,
        tid: &[u8],
        read_only: bool,
        r: Response,
        now: Instant,
    ) {
        let Some(t) = self.take_txn(from, tid) else {
            return;
        };
        if t.node.is_some_and(|expected| expected != r.id) {
            // Not the node we asked: count a failure, use nothing it said.
            if let Some(id) = t.node {
                self.table.failed(&id);
            }
            if let TxnKind::Search(s, target) = t.kind {
                if let Some(s) = self.searches.get_mut(&s) {
                    s.lookup.failed(target, t.slow);
                }
            }
            return;
        }
        if !read_only && r.id != self.id() {
            self.heard_from(r.id, from, true, now);
        }
        let TxnKind::Search(sid, target) = t.kind else {
            return;
        };
        let own = self.id();
        let Some(search) = self.searches.get_mut(&sid) else {
            return;
        };
        let nodes: Vec<CompactNode> = r
            .nodes
            .iter()
            .chain(r.nodes6.iter())
            .filter(|n| n.id != own && n.addr.is_ipv4() == from.is_ipv4())
            .copied()
            .collect();
        search
            .lookup
            .answered(target, r.id, &nodes, r.token, t.slow);
        if let SearchKind::GetPeers { .. } = search.kind {
            let mut new = Vec::new();
            for p in r.values {
                if search.seen.len() < MAX_SEEN_PEERS && search.seen.insert(p) {
                    new.push(p);
                }
            }
            if !new.is_empty() {
                push_bounded(
                    &mut self.events,
                    Event::PeersFound {
                        search: sid,
                        peers: new,
                    },
                );
            }
        }
    }

    fn start_search(
        &mut self,
        target: NodeId,
        kind: SearchKind,
        seeds: &[SocketAddr],
        now: Instant,
    ) -> SearchId {
        let sid = SearchId(self.next_search);
        self.next_search += 1;
        if self.searches.len() >= MAX_SEARCHES {
            push_bounded(
                &mut self.events,
                Event::SearchDone {
                    search: sid,
                    announced: 0,
                },
            );
            return sid;
        }
        let start: Vec<(NodeId, SocketAddr)> = self
            .table
            .closest(&target, K * 2, now)
            .into_iter()
            .map(|n| (n.id, n.addr))
            .collect();
        let lookup = Lookup::new(target, &start, seeds);
        // Peers announced to us count too: in a small network we may be the closest node.
        let mut seen = HashSet::new();
        if let SearchKind::GetPeers { info_hash, .. } = &kind {
            let local: Vec<SocketAddr> = self
                .store
                .get(info_hash)
                .map(|p| p.iter().map(|(a, _)| *a).collect())
                .unwrap_or_default();
            if !local.is_empty() {
                seen.extend(local.iter().copied());
                push_bounded(
                    &mut self.events,
                    Event::PeersFound {
                        search: sid,
                        peers: local,
                    },
                );
            }
        }
        self.searches.insert(
            sid,
            Search {
                started: now,
                lookup,
                kind,
                seen,
            },
        );
        self.drive_searches(now);
        sid
    }

    /// Sends the next queries of every search and finishes those that are done.
    fn drive_searches(&mut self, now: Instant) {
        let mut ids: Vec<SearchId> = self.searches.keys().copied().collect();
        ids.sort();
        for sid in ids {
            // A search that has not sent anything yet starts from whatever the table holds now.
            if let Some(s) = self.searches.get_mut(&sid) {
                if s.lookup.not_started() {
                    let start: Vec<(NodeId, SocketAddr)> = self
                        .table
                        .closest(&s.lookup.target(), K * 2, now)
                        .into_iter()
                        .map(|n| (n.id, n.addr))
                        .collect();
                    s.lookup.add_nodes(&start);
                }
            }
            loop {
                if self.txns.len() >= MAX_TRANSACTIONS {
                    break;
                }
                let Some(search) = self.searches.get_mut(&sid) else {
                    break;
                };
                let Some(target) = search.lookup.next_query() else {
                    break;
                };
                let method = match search.kind {
                    SearchKind::FindNode => Method::FindNode {
                        target: search.lookup.target(),
                    },
                    SearchKind::GetPeers { info_hash, .. } => Method::GetPeers { info_hash },
                };
                let (addr, node) = match target {
                    Target::Node(id, addr) => (addr, Some(id)),
                    Target::Addr(addr) => (addr, None),
                };
                if !self.send_query(addr, node, TxnKind::Search(sid, target), method, now) {
                    if let Some(s) = self.searches.get_mut(&sid) {
                        s.lookup.failed(target, false);
                    }
                }
            }
            // Before we know any node, wait a while for the bootstrap instead of giving up.
            let done = self.searches.get(&sid).is_some_and(|s| {
                s.lookup.is_done()
                    && !(s.lookup.not_started()
                        && now.saturating_duration_since(s.started) < JOIN_WAIT)
            });
            if done {
                let search = self.searches.remove(&sid).expect("checked above");
                let mut announced = 0;
                if let SearchKind::GetPeers {
                    info_hash,
                    announce_port: Some(port),
                } = search.kind
                {
                    for (id, addr, token) in search.lookup.announce_targets() {
                        let method = Method::AnnouncePeer {
                            info_hash,
                            port,
                            implied_port: false,
                            token,
                        };
                        if self.send_query(addr, Some(id), TxnKind::Announce, method, now) {
                            announced += 1;
                        }
                    }
                }
                push_bounded(
                    &mut self.events,
                    Event::SearchDone {
                        search: sid,
                        announced,
                    },
                );
            }
        }
    }

    /// Registers a transaction and queues the query; false if the transaction table is full.
    fn send_query(
        &mut self,
        addr: SocketAddr,
        node: Option<NodeId>,
        kind: TxnKind,
        method: Method,
        now: Instant,
    ) -> bool {
        if self.txns.len() >= MAX_TRANSACTIONS {
            return false;
        }
        let mut tid = self.next_tid;
        while self.txns.contains_key(&tid) {
            tid = tid.wrapping_add(1);
        }
        self.next_tid = tid.wrapping_add(1);
        self.txns.insert(
            tid,
            Txn {
                addr,
                node,
                kind,
                sent: now,
                slow: false,
            },
        );
        let msg = Message {
            transaction: tid.to_be_bytes().to_vec(),
            version: Some(VERSION.to_vec()),
            ip: None,
            read_only: false,
            body: Body::Query(Query {
                id: self.id(),
                method,
            }),
        };
        self.transmit(addr, msg.encode());
        true
    }

    fn transmit(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        if self.transmits.len() < MAX_QUEUE {
            self.transmits.push_back((to, bytes));
        }
    }

    /// Checks the bounds this module promises (for tests).
    pub fn check_invariants(&self) {
        assert!(self.txns.len() <= MAX_TRANSACTIONS);
        assert!(self.searches.len() <= MAX_SEARCHES);
        assert!(self.transmits.len() <= MAX_QUEUE);
        assert!(self.events.len() <= MAX_QUEUE);
        assert!(self.store.len() <= MAX_STORED_TORRENTS);
        assert!(self.store.values().all(|p| p.len() <= MAX_STORED_PEERS));
        assert!(self.per_ip.len() <= MAX_RATE_IPS);
        assert!(self.table.len() <= self.table.bucket_count() * K);
    }
}

fn push_bounded(events: &mut VecDeque<Event>, e: Event) {
    if events.len() < MAX_QUEUE {
        events.push_back(e);
    }
}

impl std::fmt::Debug for Dht {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dht")
            .field("id", &self.id())
            .field("nodes", &self.table.len())
            .field("transactions", &self.txns.len())
            .field("searches", &self.searches.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
