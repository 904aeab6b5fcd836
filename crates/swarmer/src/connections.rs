//! The connections of one torrent, or of one magnet link's metadata fetch (BEP 3, "peer protocol"):
//! dialling addresses from the peer book, taking connections the listener routed here, the table of
//! connection ids, the one queue of their events, sending to them and closing them. A torrent's
//! owner task and a metadata fetch both drive their peers through a [`Connections`], so a transport
//! or a handshake added later (uTP, encryption) is added here and in `peer`, once.
//!
//! It decides nothing about the protocol: the owner reads each [`ConnEvent`], decides, and tells it
//! whom to close. It keeps the peer book in step with the table (connected, disconnected, back-off).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use swarmer_proto::InfoHash;
use swarmer_proto::extension::PexFlags;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::peer::{self, ConnContext, ConnEvent, ConnId, Incoming, LINGER, Outbound};
use crate::peer_book::PeerBook;
use crate::rate::{LimiterPair, TorrentLimits};
use crate::shared::SessionShared;
use crate::storage::Storage;

/// How an owner's connections are set up.
pub(crate) struct ConnectionsConfig<'a> {
    /// The torrent every connection is for (the handshake's info hash).
    pub(crate) info_hash: InfoHash,
    /// The largest frame accepted, in bytes (length prefix excluded).
    pub(crate) max_frame: u32,
    /// Where uploaded blocks are read from; `None` while a magnet link's metadata is fetched.
    pub(crate) storage: Option<Arc<Storage>>,
    /// Set the DHT bit in our handshake (BEP 5): the session runs a DHT and the torrent is public.
    pub(crate) dht: bool,
    /// The torrent's own rate limits (the session's apply on top).
    pub(crate) limits: &'a TorrentLimits,
    /// Capacity of each connection's queue of outgoing batches; a peer that lets it fill up is not
    /// reading and is closed.
    pub(crate) send_queue: usize,
    /// Capacity of the queue of events from all connections to the owner. An event carries at most
    /// one socket read, so this bounds buffered input; a full queue stops the connection tasks from
    /// reading, which pushes back on the peers through TCP.
    pub(crate) event_queue: usize,
}

/// One open connection, from the dial (or accept) until it is closed.
pub(crate) struct Conn {
    /// The peer's address (for an incoming connection, its source address).
    pub(crate) addr: SocketAddr,
    /// We dialled it.
    pub(crate) outgoing: bool,
    /// The owner accepted its handshake ([`Connections::establish`]).
    pub(crate) established: bool,
    commands: mpsc::Sender<Outbound>,
}

/// An owner's connections and the peer book they are dialled from.
pub(crate) struct Connections {
    shared: Arc<SessionShared>,
    ctx: ConnContext,
    events: mpsc::Receiver<ConnEvent>,
    table: HashMap<ConnId, Conn>,
    next_id: ConnId,
    send_queue: usize,
    /// Peer addresses known, which to dial next, and back-off.
    pub(crate) book: PeerBook,
    /// Established connections we closed whose tasks are still finishing (flushing, then waiting
    /// for the peer to close its side); each leaves when its `Closed` event arrives.
    closing: HashSet<ConnId>,
    /// When [`Connections::connect_more`] next has something to do, if ever: an address's back-off
    /// ends, or a connection ended or got past its handshake and so made room. `None` lets an
    /// idle torrent sleep instead of looking at its book every second.
    dial_due: Option<Instant>,
}

impl Connections {
    /// No connections yet, and a peer book that never dials our own listen address.
    pub(crate) fn new(shared: Arc<SessionShared>, config: ConnectionsConfig<'_>) -> Connections {
        let (events_tx, events) = mpsc::channel(config.event_queue);
        let ctx = ConnContext {
            info_hash: config.info_hash,
            our_id: shared.peer_id,
            bind_ip: shared.config.bind_ip,
            events: events_tx,
            max_frame: config.max_frame,
            connect_timeout: shared.config.connect_timeout,
            handshake_timeout: shared.config.handshake_timeout,
            storage: config.storage,
            upload_limit: LimiterPair {
                torrent: Arc::clone(&config.limits.upload),
                session: Arc::clone(&shared.upload_limit),
            },
            download_limit: LimiterPair {
                torrent: Arc::clone(&config.limits.download),
                session: Arc::clone(&shared.download_limit),
            },
            dht: config.dht,
            encryption: Arc::clone(&shared.encryption_memory),
            clock: shared.clock,
            transport: shared.config.transport,
            utp: shared.utp(),
        };
        // The listener's address is the bind address with our port: trackers hand us back to ourselves.
        // With a bind address of one family, peers of the other are never dialled.
        let family = shared.config.bind_ip.map(|ip| ip.is_ipv4());
        let book = PeerBook::new(shared.listen_addrs()).only_family(family);
        Connections {
            shared,
            ctx,
            events,
            table: HashMap::new(),
            next_id: 0,
            send_queue: config.send_queue,
            book,
            closing: HashSet::new(),
            dial_due: Some(Instant::now()),
        }
    }

    /// When dialling next has something to do (see [`Connections::connect_more`]), if ever.
    pub(crate) fn dial_due(&self) -> Option<Instant> {
        self.dial_due
    }

    /// The session's clock.
    pub(crate) fn clock(&self) -> Clock {
        self.shared.clock
    }

    /// Waits for events from the connections and appends up to `limit` to `batch`; returns how many.
    /// Cancel-safe, for a `select!` loop. Never returns 0: the table holds a sender, so the queue
    /// never closes.
    pub(crate) async fn recv(&mut self, batch: &mut Vec<ConnEvent>, limit: usize) -> usize {
        self.events.recv_many(batch, limit).await
    }

    /// Dials addresses from the book that `allow` lets through, within the session's limits on
    /// connections per torrent and on attempts in progress
    /// ([`crate::SessionConfig::max_peers_per_torrent`], [`crate::SessionConfig::max_half_open`]).
    pub(crate) fn connect_more(&mut self, now: Instant, allow: impl Fn(SocketAddr) -> bool) {
        let config = &self.shared.config;
        let connecting = self.table.values().filter(|c| !c.established).count();
        let mut room = config
            .max_peers_per_torrent
            .saturating_sub(self.table.len())
            .min(config.max_half_open.saturating_sub(connecting));
        while room > 0 {
            let Some(addr) = self.book.next_to_dial(now) else {
                break;
            };
            if !allow(addr) {
                continue;
            }
            // An incoming uTP connection comes from the peer's listen address: never dial a peer
            // that is connected already.
            if self.table.values().any(|c| c.addr == addr) {
                self.book.postpone(addr, now);
                continue;
            }
            room -= 1;
            let (tx, rx) = mpsc::channel(self.send_queue);
            let conn = self.insert(addr, tx, true);
            tokio::spawn(peer::run_outgoing(conn, addr, self.ctx.clone(), rx));
        }
        // Without room, only a connection that ends or gets past its handshake makes some.
        self.dial_due = if room == 0 {
            None
        } else {
            self.book.next_dial_at()
        };
    }

    /// Adds peers a PEX message named (BEP 11) to the book; the flag 0x01 ("prefers encryption")
    /// decides whether the first attempt with one we know nothing of is MSE or plaintext, as
    /// libtorrent does, and the flag 0x04 ("supports uTP") that a dual-stack session dials it over
    /// uTP first.
    pub(crate) fn add_pex_peers(&mut self, peers: Vec<(SocketAddr, PexFlags)>) {
        let memory = &self.shared.encryption_memory;
        for (addr, flags) in &peers {
            let encrypted = flags.0 & PexFlags::ENCRYPTION != 0;
            memory.hint(*addr, encrypted, flags.0 & PexFlags::UTP != 0);
        }
        self.book.add(peers.into_iter().map(|(addr, _)| addr));
        self.dial_due = Some(Instant::now());
    }

    /// Whether the owner should ask its sources for more peers: fewer than `min_open` connections,
    /// and nobody in the book to dial now.
    pub(crate) fn running_dry(&self, min_open: usize, now: Instant) -> bool {
        self.table.len() < min_open && self.book.dialable(now) == 0
    }

    /// Takes a connection the listener routed here, unless the torrent is at its
    /// [`crate::SessionConfig::max_peers_per_torrent`] (then it is dropped, which closes it).
    /// A connection from the address of one already established (a uTP peer dialling us back from
    /// its listen port) is dropped too: one connection per peer.
    pub(crate) fn accept(&mut self, incoming: Incoming) {
        let connected = |c: &Conn| c.established && c.addr == incoming.addr;
        if self.is_full() || self.table.values().any(connected) {
            return;
        }
        let (tx, rx) = mpsc::channel(self.send_queue);
        let conn = self.insert(incoming.addr, tx, false);
        tokio::spawn(peer::run_incoming(conn, incoming, self.ctx.clone(), rx));
    }

    /// The torrent has as many connections as it may.
    pub(crate) fn is_full(&self) -> bool {
        self.table.len() >= self.shared.config.max_peers_per_torrent
    }

    fn insert(
        &mut self,
        addr: SocketAddr,
        commands: mpsc::Sender<Outbound>,
        outgoing: bool,
    ) -> ConnId {
        let conn = self.next_id;
        self.next_id += 1;
        self.table.insert(
            conn,
            Conn {
                addr,
                outgoing,
                established: false,
                commands,
            },
        );
        conn
    }

    /// The owner accepted `conn`'s handshake: the book counts the address as connected. `None` if
    /// `conn` was closed meanwhile.
    pub(crate) fn establish(&mut self, conn: ConnId) -> Option<&Conn> {
        let c = self.table.get_mut(&conn)?;
        c.established = true;
        self.book.connected(c.addr);
        self.dial_due = Some(Instant::now());
        Some(c)
    }

    /// The open connection `conn`, if it is.
    pub(crate) fn get(&self, conn: ConnId) -> Option<&Conn> {
        self.table.get(&conn)
    }

    /// Open connections, established or not.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Connections past the handshake.
    pub(crate) fn established(&self) -> usize {
        self.table.values().filter(|c| c.established).count()
    }

    /// The ids of the connections past the handshake.
    pub(crate) fn established_ids(&self) -> Vec<ConnId> {
        let ids = self.table.iter().filter(|(_, c)| c.established);
        ids.map(|(id, _)| *id).collect()
    }

    /// Queues `item` for `conn`. Errors (and sends nothing) when the connection is closed or its
    /// queue is full; the owner then closes it.
    pub(crate) fn send(&self, conn: ConnId, item: Outbound) -> Result<(), QueueFull> {
        let c = self.table.get(&conn).ok_or(QueueFull)?;
        c.commands.try_send(item).map_err(|_| QueueFull)
    }

    /// Closes `conn` (dropping its queue ends its writer, and with it the connection) and tells the
    /// book how it ended (`fault`: through the peer's fault). Returns what it was, or `None` if it
    /// was closed already.
    pub(crate) fn close(&mut self, conn: ConnId, fault: bool) -> Option<Conn> {
        let c = self.table.remove(&conn)?;
        if c.established {
            self.closing.insert(conn);
        }
        self.book
            .disconnected(c.addr, c.established, fault, c.outgoing);
        self.dial_due = Some(Instant::now());
        Some(c)
    }

    /// A connection task ended (its `Closed` event): closes it as [`Connections::close`] does, with
    /// `fault` from its error, and stops waiting for it. Returns what it was, if it was still open.
    pub(crate) fn closed(&mut self, conn: ConnId, error: Option<&peer::ConnError>) -> Option<Conn> {
        let fault = error.is_some_and(|e| e.is_peer_fault());
        if let Some(c) = self.table.get(&conn) {
            match error {
                Some(e) => tracing::debug!(addr = %c.addr, "connection closed: {e}"),
                None => tracing::debug!(addr = %c.addr, "connection closed by peer"),
            }
        }
        let c = self.close(conn, fault);
        self.closing.remove(&conn);
        c
    }

    /// Closes every connection without blame (the torrent is done with peers).
    pub(crate) fn close_all(&mut self) {
        let conns: Vec<ConnId> = self.table.keys().copied().collect();
        for conn in conns {
            self.close(conn, false);
        }
    }

    /// Closes every connection for good (the owner is stopping); [`Connections::wait_closed`] then
    /// waits for the established ones to finish.
    pub(crate) fn drain(&mut self) {
        for (conn, c) in self.table.drain() {
            if c.established {
                self.closing.insert(conn);
            }
        }
    }

    /// Waits until the established connections we closed have finished closing (bounded by
    /// [`LINGER`] and a second), so the process does not end with blocks still unread by peers: the
    /// kernel would reset such connections, and the peers could lose the last blocks we sent.
    /// `uploaded` is told of payload bytes whose sending is reported meanwhile.
    pub(crate) async fn wait_closed(&mut self, mut uploaded: impl FnMut(u64)) {
        let deadline = Instant::now() + LINGER + Duration::from_secs(1);
        while !self.closing.is_empty() {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ConnEvent::Closed { conn, .. })) => {
                    self.closing.remove(&conn);
                }
                Ok(Some(ConnEvent::Sent { bytes, .. })) => uploaded(bytes),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// A connection's queue is full or gone: the peer is not reading what we send, or is going away.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueFull;
