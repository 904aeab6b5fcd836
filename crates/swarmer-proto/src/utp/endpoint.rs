//! The uTP side of one UDP socket (BEP 29, "connection setup"): routes each datagram to its
//! connection by source address and connection id, accepts SYNs within a cap on half-open and on
//! all connections, answers stray DATA and FIN with RESET (a bounded queue), and multiplexes the
//! connections' output and timers.
//!
//! A RESET is matched to a connection only from the connection's own address and with one of its
//! two ids; any other is ignored. A SYN over the caps is dropped unanswered, so a SYN flood costs
//! one hash lookup and one scan of the table per packet and no memory.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;

use rand::Rng;

use super::conn::{Config, Connection, State};
use super::packet::{Header, Packet, PacketType};
use crate::time::Instant;

/// Limits of an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Each connection's limits.
    pub conn: Config,
    /// Connections at most, open or closing.
    pub max_connections: usize,
    /// Connections accepted from a SYN that have not yet had data from the peer, at most.
    pub max_half_open: usize,
    /// Accepted connections not yet taken with [`Endpoint::accept`], at most.
    pub accept_queue: usize,
}

impl Default for EndpointConfig {
    fn default() -> EndpointConfig {
        EndpointConfig {
            conn: Config::default(),
            max_connections: 1024,
            max_half_open: 64,
            accept_queue: 64,
        }
    }
}

/// Names a connection of an [`Endpoint`]; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// Why [`Endpoint::connect`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many uTP connections")]
pub struct TooManyConnections;

/// RESETs queued for strays, at most (more strays are ignored).
const RESET_QUEUE: usize = 64;

struct Slot {
    addr: SocketAddr,
    conn: Connection,
}

/// The connections of one UDP socket (see the module documentation).
pub struct Endpoint {
    cfg: EndpointConfig,
    slots: HashMap<ConnectionId, Slot>,
    routes: HashMap<(SocketAddr, u16), ConnectionId>,
    next_id: u64,
    /// Connections that may have something to send; each at most once.
    ready: VecDeque<ConnectionId>,
    ready_set: HashSet<ConnectionId>,
    incoming: VecDeque<ConnectionId>,
    resets: VecDeque<(SocketAddr, Header)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("connections", &self.slots.len())
            .finish()
    }
}

impl Endpoint {
    /// An endpoint without connections.
    pub fn new(cfg: EndpointConfig) -> Endpoint {
        Endpoint {
            cfg,
            slots: HashMap::new(),
            routes: HashMap::new(),
            next_id: 0,
            ready: VecDeque::new(),
            ready_set: HashSet::new(),
            incoming: VecDeque::new(),
            resets: VecDeque::new(),
        }
    }

    /// Connections in the table.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn insert(&mut self, addr: SocketAddr, conn: Connection) -> ConnectionId {
        let id = ConnectionId(self.next_id);
        self.next_id += 1;
        self.routes.insert((addr, conn.recv_id()), id);
        self.slots.insert(id, Slot { addr, conn });
        self.mark_ready(id);
        id
    }

    fn mark_ready(&mut self, id: ConnectionId) {
        if self.ready_set.insert(id) {
            self.ready.push_back(id);
        }
    }

    /// Opens a connection to `addr` with a random id and sequence number from `rng`.
    pub fn connect(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        rng: &mut impl Rng,
    ) -> Result<ConnectionId, TooManyConnections> {
        if self.slots.len() >= self.cfg.max_connections {
            return Err(TooManyConnections);
        }
        // Our id and the one above it (the peer's) must both be free for this address.
        let recv_id = loop {
            let id: u16 = rng.r#gen();
            let taken = |i: u16| self.routes.contains_key(&(addr, i));
            if !taken(id) && !taken(id.wrapping_add(1)) && !taken(id.wrapping_sub(1)) {
                break id;
            }
        };
        let conn = Connection::connect(self.cfg.conn.clone(), now, recv_id, rng.r#gen());
        Ok(self.insert(addr, conn))
    }

    /// Handles one datagram from `from` (the caller checked it looks like uTP). Returns the
    /// connection it went to, if any: its state, readable bytes or write capacity may have changed.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        rng: &mut impl Rng,
    ) -> Option<ConnectionId> {
        let packet = Packet::decode(datagram).ok()?;
        let h = packet.header;
        let id = match h.kind {
            PacketType::Syn => match self.routes.get(&(from, h.connection_id.wrapping_add(1))) {
                Some(&id) => id,
                None => return self.accept_syn(now, from, &h, rng),
            },
            PacketType::Reset => self.route_reset(from, h.connection_id)?,
            _ => match self.routes.get(&(from, h.connection_id)) {
                Some(&id) => id,
                None => {
                    if matches!(h.kind, PacketType::Data | PacketType::Fin)
                        && self.resets.len() < RESET_QUEUE
                    {
                        self.resets.push_back((from, h));
                    }
                    return None;
                }
            },
        };
        let slot = self.slots.get_mut(&id)?;
        slot.conn.handle_packet(now, &packet);
        self.mark_ready(id);
        Some(id)
    }

    fn route_reset(&self, from: SocketAddr, conn_id: u16) -> Option<ConnectionId> {
        if let Some(&id) = self.routes.get(&(from, conn_id)) {
            return Some(id);
        }
        [conn_id.wrapping_sub(1), conn_id.wrapping_add(1)]
            .into_iter()
            .filter_map(|recv| self.routes.get(&(from, recv)))
            .copied()
            .find(|id| {
                self.slots
                    .get(id)
                    .is_some_and(|s| s.conn.send_id() == conn_id)
            })
    }

    fn accept_syn(
        &mut self,
        now: Instant,
        from: SocketAddr,
        syn: &Header,
        rng: &mut impl Rng,
    ) -> Option<ConnectionId> {
        let half_open = self
            .slots
            .values()
            .filter(|s| s.conn.state() == State::SynReceived)
            .count();
        if self.slots.len() >= self.cfg.max_connections
            || half_open >= self.cfg.max_half_open
            || self.incoming.len() >= self.cfg.accept_queue
        {
            return None;
        }
        let conn = Connection::accept(self.cfg.conn.clone(), now, syn, rng.r#gen());
        let id = self.insert(from, conn);
        self.incoming.push_back(id);
        Some(id)
    }

    /// The next connection a peer opened, with its address.
    pub fn accept(&mut self) -> Option<(ConnectionId, SocketAddr)> {
        while let Some(id) = self.incoming.pop_front() {
            if let Some(s) = self.slots.get(&id) {
                return Some((id, s.addr));
            }
        }
        None
    }

    /// The connection `id`, to read its state or bytes. After writing to it, reading from it or
    /// shutting it down through [`Endpoint::connection_mut`], nothing more is needed: the
    /// endpoint looks at every connection it handed out on the next [`Endpoint::poll_transmit`].
    pub fn connection(&self, id: ConnectionId) -> Option<&Connection> {
        self.slots.get(&id).map(|s| &s.conn)
    }

    /// The connection `id`, to write, read or shut down.
    pub fn connection_mut(&mut self, id: ConnectionId) -> Option<&mut Connection> {
        self.mark_ready(id);
        self.slots.get_mut(&id).map(|s| &mut s.conn)
    }

    /// The peer's address of connection `id`.
    pub fn addr(&self, id: ConnectionId) -> Option<SocketAddr> {
        self.slots.get(&id).map(|s| s.addr)
    }

    /// Forgets connection `id`. One that is not closed yet gets a RESET, so its peer does not wait.
    pub fn remove(&mut self, id: ConnectionId) {
        let Some(s) = self.slots.remove(&id) else {
            return;
        };
        self.routes.remove(&(s.addr, s.conn.recv_id()));
        if !matches!(s.conn.state(), State::Closed(_)) && self.resets.len() < RESET_QUEUE {
            let h = Header {
                kind: PacketType::Reset,
                connection_id: s.conn.send_id(),
                timestamp_us: 0,
                timestamp_diff_us: 0,
                wnd_size: 0,
                seq_nr: 0,
                ack_nr: 0,
            };
            self.resets.push_front((s.addr, h));
        }
    }

    /// Writes the next datagram to send into `out` and returns its destination; `None` when
    /// nothing is waiting.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<SocketAddr> {
        if let Some((to, h)) = self.resets.pop_front() {
            out.clear();
            reset_for(&h).encode(None, out);
            return Some(to);
        }
        while let Some(&id) = self.ready.front() {
            if let Some(s) = self.slots.get_mut(&id) {
                if s.conn.poll_transmit(now, out) {
                    return Some(s.addr);
                }
            }
            self.ready.pop_front();
            self.ready_set.remove(&id);
        }
        None
    }

    /// When [`Endpoint::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter_map(|s| s.conn.poll_timeout())
            .min()
    }

    /// Runs every connection's timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<ConnectionId> = self
            .slots
            .iter()
            .filter(|(_, s)| s.conn.poll_timeout().is_some_and(|t| t <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            if let Some(s) = self.slots.get_mut(&id) {
                s.conn.handle_timeout(now);
            }
            self.mark_ready(id);
        }
    }
}

/// The RESET answering a stray packet: to the id the stray came with, as libtorrent does.
fn reset_for(h: &Header) -> Header {
    if h.kind == PacketType::Reset {
        return *h;
    }
    Header {
        kind: PacketType::Reset,
        connection_id: h.connection_id,
        timestamp_us: 0,
        timestamp_diff_us: 0,
        wnd_size: 0,
        seq_nr: 0,
        ack_nr: h.seq_nr,
    }
}
