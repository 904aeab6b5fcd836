//! The DHT driver (BEP 5): one tokio task owns the sans-IO
//! [`swarmer_proto::dht::Dht`], resolves bootstrap routers, saves the routing table, and serves
//! searches to torrents through a cloneable [`DhtHandle`]. Also [`TorrentDht`], the per-torrent
//! schedule of searches (at start, every 15 minutes, and when the peer book runs dry).
//!
//! It shares the session's UDP sockets on the listen port (`udp`), as users expect one port to
//! forward: it receives the datagrams their tasks recognise as bencoded and sends through them.
//! A dual-stack session runs the IPv4 and the IPv6 DHT (BEP 32) as the separate networks they are:
//! a routing table each, searches on both with their peers merged, both tables in one state file.
//! Every channel is bounded; the task ends (saving the table) when the last handle is dropped.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use swarmer_proto::InfoHash;
use swarmer_proto::bencode::{self, OwnedValue};
use swarmer_proto::dht::krpc::{CompactNode, decode_nodes, encode_nodes};
use swarmer_proto::dht::node_id::NodeId;
use swarmer_proto::dht::{Config, Dht, Event, SearchId};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;

/// The public bootstrap routers the CLI uses by default (host:port). The library never uses them by
/// itself: [`DhtConfig::bootstrap`] is empty unless the embedder fills it.
pub const DEFAULT_BOOTSTRAP: &[&str] = &[
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
    "dht.libtorrent.org:25401",
];

/// DHT settings of a session ([`crate::SessionConfig::dht`]).
#[derive(Debug, Clone, Default)]
pub struct DhtConfig {
    /// Nodes to join through, as `host:port` (names resolved at start, 10 s at most each; failures are
    /// logged and skipped).
    pub bootstrap: Vec<String>,
    /// Where the node id and routing table are saved (bencoded, replaced atomically) every 5 minutes
    /// and at shutdown, and read at start (saved nodes are extra bootstrap nodes). `None`: not saved.
    pub state_file: Option<PathBuf>,
}

/// How long resolving one bootstrap name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the routing table is saved.
const SAVE_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Longest [`DhtHandle::save`] waits.
const SAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// When the routing table is first saved after start.
const FIRST_SAVE: Duration = Duration::from_secs(60);
/// Largest state file read, in bytes (a full table is ~40 KiB).
const MAX_STATE_FILE: u64 = 1 << 20;
/// Commands queued to the task.
const COMMAND_QUEUE: usize = 256;
/// Batches of peers queued per search before more are dropped.
const SEARCH_QUEUE: usize = 64;

enum Command {
    Search {
        info_hash: InfoHash,
        announce_port: Option<u16>,
        peers: mpsc::Sender<Vec<SocketAddr>>,
    },
    Ping(SocketAddr),
    Nodes(oneshot::Sender<Vec<SocketAddr>>),
    Save(oneshot::Sender<()>),
}

/// A handle to the session's DHT node; cheap to clone. The node runs while any handle exists.
#[derive(Clone, Debug)]
pub struct DhtHandle {
    commands: mpsc::Sender<Command>,
    addr: SocketAddr,
}

/// One `get_peers` search (BEP 5) started with [`DhtHandle::search`].
#[derive(Debug)]
pub struct DhtSearch {
    peers: mpsc::Receiver<Vec<SocketAddr>>,
}

impl DhtSearch {
    /// The next peers found (TCP addresses, each reported once per search), or `None` once the search
    /// is over (after announcing, if it was asked to). Dropping the search cancels it.
    pub async fn next(&mut self) -> Option<Vec<SocketAddr>> {
        self.peers.recv().await
    }
}

impl DhtHandle {
    /// Starts looking up peers for `info_hash`; with `announce_port`, announces us as a peer on that
    /// TCP port to the closest nodes at the end. If the node is gone or overloaded, the search ends at
    /// once (its first `next` is `None`).
    pub fn search(&self, info_hash: InfoHash, announce_port: Option<u16>) -> DhtSearch {
        let (tx, rx) = mpsc::channel(SEARCH_QUEUE);
        let _ = self.commands.try_send(Command::Search {
            info_hash,
            announce_port,
            peers: tx,
        });
        DhtSearch { peers: rx }
    }

    /// Pings a node (a peer's BEP 5 `port` message): if it answers it joins the routing table.
    pub fn ping(&self, addr: SocketAddr) {
        let _ = self.commands.try_send(Command::Ping(addr));
    }

    /// The addresses in the routing table now (empty if the node is gone).
    pub async fn nodes(&self) -> Vec<SocketAddr> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Nodes(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Saves the routing table to [`DhtConfig::state_file`] now (if set and the table is not empty),
    /// returning when it is written; bounded by 5 s. For a clean exit: the node saves
    /// by itself every 5 minutes and when its last handle is dropped, but a runtime that shuts down
    /// right after may not let that last save finish.
    pub async fn save(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Save(tx)).await.is_ok() {
            let _ = tokio::time::timeout(SAVE_TIMEOUT, rx).await;
        }
    }

    /// The UDP address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// One network's socket as the node's task sees it: it sends through `socket` and receives the
/// datagrams the socket's task routes to `incoming`.
pub(crate) struct DhtSocket {
    pub(crate) socket: Arc<UdpSocket>,
    pub(crate) incoming: mpsc::Receiver<(Vec<u8>, SocketAddr)>,
}

/// Starts the node's task on the session's UDP sockets, one per family: IPv4 and IPv6 are separate
/// networks (BEP 32), each with its own routing table, under one node id (we do not derive ids
/// from addresses, BEP 42, so one serves both). The first socket's address is the handle's.
pub(crate) async fn start(
    config: &DhtConfig,
    sockets: Vec<DhtSocket>,
    clock: Clock,
) -> io::Result<DhtHandle> {
    let addr = sockets
        .first()
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?
        .socket
        .local_addr()?;
    let saved = match &config.state_file {
        Some(path) => load_state(path).await,
        None => None,
    };
    let (id, saved_nodes) = match saved {
        Some((id, nodes)) => (id, nodes),
        None => (NodeId::random(&mut rand::thread_rng()), Vec::new()),
    };
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let mut nets = Vec::new();
    for DhtSocket { socket, incoming } in sockets {
        let local = socket.local_addr()?;
        let v4 = local.is_ipv4();
        let saved: Vec<SocketAddr> = saved_nodes
            .iter()
            .copied()
            .filter(|a| a.is_ipv4() == v4)
            .collect();
        tracing::info!(addr = %local, ?id, saved = saved.len(), "DHT node started");
        let (boot_tx, boot_rx) = mpsc::channel(1);
        let names = config.bootstrap.clone();
        // The same router names serve both networks: their A records the IPv4 one, AAAA the IPv6.
        tokio::spawn(async move {
            let addrs = resolve_all(&names, v4).await;
            let _ = boot_tx.send(addrs).await;
        });
        nets.push(Net {
            dht: Dht::new(id, Config::default(), rand::random(), clock.now()),
            v4,
            socket,
            incoming,
            boot: Some(boot_rx),
            saved,
            searches: HashMap::new(),
        });
    }
    let task = Task {
        nets,
        clock,
        commands: rx,
        state_file: config.state_file.clone(),
        last_saved: None,
    };
    tokio::spawn(task.run());
    Ok(DhtHandle { commands: tx, addr })
}

/// One network (IPv4 or IPv6) of the node: its own routing table and searches.
struct Net {
    dht: Dht,
    /// The family of `socket` (`true`: IPv4).
    v4: bool,
    socket: Arc<UdpSocket>,
    incoming: mpsc::Receiver<(Vec<u8>, SocketAddr)>,
    /// The resolved bootstrap routers, until they arrive.
    boot: Option<mpsc::Receiver<Vec<SocketAddr>>>,
    /// Nodes from the state file, joined through at start.
    saved: Vec<SocketAddr>,
    searches: HashMap<SearchId, mpsc::Sender<Vec<SocketAddr>>>,
}

/// What one network received.
enum Input {
    Packet(Vec<u8>, SocketAddr),
    Boot(Vec<SocketAddr>),
    /// The socket's task ended with the session.
    Closed,
}

/// The next input of any network, with its index.
async fn next_input(nets: &mut [Net]) -> (usize, Input) {
    std::future::poll_fn(|cx| {
        for (i, net) in nets.iter_mut().enumerate() {
            if let Poll::Ready(r) = net.incoming.poll_recv(cx) {
                return Poll::Ready((i, r.map_or(Input::Closed, |(p, f)| Input::Packet(p, f))));
            }
            if let Some(boot) = &mut net.boot {
                if let Poll::Ready(r) = boot.poll_recv(cx) {
                    net.boot = None;
                    return Poll::Ready((i, Input::Boot(r.unwrap_or_default())));
                }
            }
        }
        Poll::Pending
    })
    .await
}

struct Task {
    /// One per socket: IPv4, IPv6 or both (BEP 32).
    nets: Vec<Net>,
    /// The session's clock.
    clock: Clock,
    commands: mpsc::Receiver<Command>,
    state_file: Option<PathBuf>,
    /// The bytes last written to `state_file`.
    last_saved: Option<Vec<u8>>,
}

impl Task {
    async fn run(mut self) {
        // A first save soon after joining, so short runs leave nodes for the next start too.
        let mut next_save = tokio::time::Instant::now() + FIRST_SAVE;
        let now = self.clock.now();
        for net in &mut self.nets {
            if !net.saved.is_empty() {
                let saved = std::mem::take(&mut net.saved);
                net.dht.bootstrap(&saved, now);
            }
        }
        loop {
            self.flush().await;
            let wake = self
                .nets
                .iter()
                .filter_map(|n| n.dht.poll_timeout())
                .min()
                .map(|t| self.clock.tokio_instant(t))
                .unwrap_or(next_save)
                .min(next_save);
            tokio::select! {
                (i, input) = next_input(&mut self.nets) => {
                    let now = self.clock.now();
                    let net = &mut self.nets[i];
                    match input {
                        Input::Packet(packet, from) => net.dht.handle_packet(from, &packet, now),
                        Input::Boot(addrs) if addrs.is_empty() => {
                            tracing::debug!(ipv4 = net.v4, "no DHT bootstrap addresses resolved");
                        }
                        Input::Boot(addrs) => {
                            net.dht.bootstrap(&addrs, now);
                        }
                        Input::Closed => break,
                    }
                },
                command = self.commands.recv() => match command {
                    Some(Command::Save(done)) => {
                        self.save().await;
                        let _ = done.send(());
                    }
                    Some(c) => self.command(c),
                    None => break,
                },
                _ = tokio::time::sleep_until(wake) => {
                    let now = tokio::time::Instant::now();
                    for net in &mut self.nets {
                        net.dht.handle_timeout(self.clock.proto_instant(now));
                    }
                    if now >= next_save {
                        next_save = now + SAVE_INTERVAL;
                        self.save().await;
                    }
                }
            }
        }
        self.save().await;
        tracing::debug!("DHT node stopped");
    }

    fn command(&mut self, command: Command) {
        let now = self.clock.now();
        match command {
            // A search runs on every network; each holds a sender of the one queue, so the
            // searcher gets both networks' peers and the end once both are done.
            Command::Search {
                info_hash,
                announce_port,
                peers,
            } => {
                for net in &mut self.nets {
                    let id = net.dht.get_peers(info_hash, announce_port, now);
                    net.searches.insert(id, peers.clone());
                }
            }
            Command::Ping(addr) => {
                if let Some(net) = self.nets.iter_mut().find(|n| n.v4 == addr.is_ipv4()) {
                    net.dht.ping(addr, now);
                }
            }
            Command::Nodes(reply) => {
                let nodes = self.nodes().into_iter().map(|(_, a)| a).collect();
                let _ = reply.send(nodes);
            }
            Command::Save(_) => unreachable!("the loop handles Save, which awaits the write"),
        }
    }

    /// Every network's routing table.
    fn nodes(&self) -> Vec<(NodeId, SocketAddr)> {
        let now = self.clock.now();
        self.nets.iter().flat_map(|n| n.dht.nodes(now)).collect()
    }

    /// Sends queued datagrams, cancels searches whose handle was dropped, and hands events to the
    /// others.
    async fn flush(&mut self) {
        for net in &mut self.nets {
            net.flush().await;
        }
    }

    async fn save(&mut self) {
        let Some(path) = &self.state_file else {
            return;
        };
        let nodes = self.nodes();
        if nodes.is_empty() {
            // Keep the previous file: an empty table (offline start) would erase useful nodes.
            return;
        }
        let bytes = encode_state(self.nets[0].dht.id(), &nodes);
        // The node's own save as it stops usually follows an explicit one by moments: nothing new
        // to write, and the runtime may be shutting down under it.
        if self.last_saved.as_deref() == Some(bytes.as_slice()) {
            return;
        }
        match save_atomically(path, &bytes).await {
            Ok(()) => self.last_saved = Some(bytes),
            Err(SaveError::Cancelled) => {
                tracing::debug!("DHT state not saved: the runtime is shutting down");
            }
            Err(SaveError::Io(e)) => {
                tracing::warn!(path = %path.display(), "cannot save the DHT state: {e}");
            }
        }
    }
}

impl Net {
    async fn flush(&mut self) {
        let dropped: Vec<SearchId> = self
            .searches
            .iter()
            .filter(|(_, tx)| tx.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in dropped {
            self.searches.remove(&id);
            self.dht.cancel(id);
        }
        while let Some((to, bytes)) = self.dht.poll_transmit() {
            // A node of the other family (a `nodes6` in an IPv4 reply) belongs to the other
            // network; this socket cannot reach it.
            if to.is_ipv4() != self.v4 {
                continue;
            }
            if let Err(e) = self.socket.send_to(&bytes, to).await {
                tracing::debug!(%to, "DHT send: {e}");
            }
        }
        while let Some(event) = self.dht.poll_event() {
            match event {
                Event::PeersFound { search, peers } => {
                    tracing::debug!(
                        ?search,
                        ipv4 = self.v4,
                        count = peers.len(),
                        "DHT peers found"
                    );
                    let Some(tx) = self.searches.get(&search) else {
                        continue;
                    };
                    if tx.try_send(peers).is_err() {
                        tracing::debug!(?search, "DHT search not read; peers dropped");
                    }
                }
                Event::SearchDone { search, announced } => {
                    tracing::debug!(?search, ipv4 = self.v4, announced, "DHT search done");
                    // Dropping the last sender ends the receiver's stream.
                    self.searches.remove(&search);
                }
            }
        }
    }
}

/// The state file: `{"id": 20 bytes, "nodes": compact IPv4 nodes, "nodes6": compact IPv6 nodes}`.
fn encode_state(id: NodeId, nodes: &[(NodeId, SocketAddr)]) -> Vec<u8> {
    let compact = |v6: bool| {
        let list: Vec<CompactNode> = nodes
            .iter()
            .filter(|(_, a)| a.is_ipv6() == v6)
            .map(|&(id, addr)| CompactNode { id, addr })
            .collect();
        OwnedValue::Bytes(encode_nodes(&list))
    };
    OwnedValue::dict([
        ("id", OwnedValue::Bytes(id.0.to_vec())),
        ("nodes", compact(false)),
        ("nodes6", compact(true)),
    ])
    .encode()
}

fn decode_state(bytes: &[u8]) -> Option<(NodeId, Vec<SocketAddr>)> {
    let root = bencode::decode(bytes).ok()?;
    let id = NodeId(root.get(b"id")?.as_bytes()?.try_into().ok()?);
    let mut addrs = Vec::new();
    for (key, v6) in [(&b"nodes"[..], false), (&b"nodes6"[..], true)] {
        let Some(b) = root.get(key).and_then(|v| v.as_bytes()) else {
            continue;
        };
        // `decode_nodes` keeps a bounded number per call; read the file's nodes in chunks.
        let size = if v6 { 38 } else { 26 };
        if b.len() % size != 0 {
            return None;
        }
        for chunk in b.chunks(size * 16) {
            addrs.extend(decode_nodes(chunk, v6)?.into_iter().map(|n| n.addr));
        }
    }
    Some((id, addrs))
}

async fn load_state(path: &Path) -> Option<(NodeId, Vec<SocketAddr>)> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    if meta.len() > MAX_STATE_FILE {
        tracing::warn!(path = %path.display(), "DHT state file too large; ignored");
        return None;
    }
    let bytes = tokio::fs::read(path).await.ok()?;
    let state = decode_state(&bytes);
    if state.is_none() {
        tracing::warn!(path = %path.display(), "DHT state file unreadable; ignored");
    }
    state
}

/// Why a state save did not happen.
enum SaveError {
    /// The blocking write was cancelled: the runtime is shutting down.
    Cancelled,
    /// The file system refused.
    Io(io::Error),
}

async fn save_atomically(path: &Path, bytes: &[u8]) -> Result<(), SaveError> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(SaveError::Io)?;
    }
    let (path, bytes) = (path.to_path_buf(), bytes.to_vec());
    match tokio::task::spawn_blocking(move || crate::write_atomically(&path, &bytes)).await {
        Ok(written) => written.map_err(SaveError::Io),
        Err(e) if e.is_cancelled() => Err(SaveError::Cancelled),
        Err(e) => Err(SaveError::Io(io::Error::other(e))),
    }
}

/// Resolves `host:port` names (each within [`RESOLVE_TIMEOUT`]), keeping addresses of our socket's
/// family; failures are logged and skipped.
async fn resolve_all(names: &[String], v4: bool) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for name in names {
        match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(name.as_str())).await {
            Ok(Ok(addrs)) => out.extend(addrs.filter(|a| a.is_ipv4() == v4).take(4)),
            Ok(Err(e)) => tracing::info!(%name, "cannot resolve DHT bootstrap node: {e}"),
            Err(_) => tracing::info!(%name, "resolving DHT bootstrap node timed out"),
        }
    }
    out
}

/// How often a torrent searches the DHT for peers (and re-announces).
pub(crate) const SEARCH_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// Least time between searches started because the peer book ran dry.
pub(crate) const DRY_INTERVAL: Duration = Duration::from_secs(60);

/// After a search that found no peer, the next one comes this soon, doubling up to [`SEARCH_INTERVAL`]
/// (the DHT may still have been joining, or the announces of others were still under way).
pub(crate) const FIRST_RETRY: Duration = Duration::from_secs(5);

/// One torrent's use of the DHT: a search at start and every [`SEARCH_INTERVAL`], announcing our
/// listen port (unless there is none to announce: a magnet link's metadata phase, which cannot serve); sooner after a search that found nobody (from [`FIRST_RETRY`], doubling), and an
/// extra one (at most every [`DRY_INTERVAL`]) when the torrent runs out of peers to dial.
pub(crate) struct TorrentDht {
    handle: DhtHandle,
    info_hash: InfoHash,
    port: Option<u16>,
    search: Option<DhtSearch>,
    next: tokio::time::Instant,
    last_started: Option<tokio::time::Instant>,
    /// The running search reported peers.
    found: bool,
    retry: Duration,
}

impl TorrentDht {
    pub(crate) fn new(handle: DhtHandle, info_hash: InfoHash, port: Option<u16>) -> TorrentDht {
        TorrentDht {
            handle,
            info_hash,
            port,
            search: None,
            next: tokio::time::Instant::now(),
            last_started: None,
            found: false,
            retry: FIRST_RETRY,
        }
    }

    /// When the next scheduled search is due (the owner's wake-up).
    pub(crate) fn deadline(&self) -> tokio::time::Instant {
        self.next
    }

    /// Starts the scheduled search if it is due and none is running.
    pub(crate) fn poll_start(&mut self, now: tokio::time::Instant) {
        if now >= self.next {
            self.next = now + SEARCH_INTERVAL;
            if self.search.is_none() {
                self.start(now);
            }
        }
    }

    /// The torrent has no one left to dial: search again unless one ran within [`DRY_INTERVAL`].
    pub(crate) fn peers_dry(&mut self, now: tokio::time::Instant) {
        let recent = self
            .last_started
            .is_some_and(|t| now.saturating_duration_since(t) < DRY_INTERVAL);
        if self.search.is_none() && !recent {
            self.start(now);
        }
    }

    fn start(&mut self, now: tokio::time::Instant) {
        tracing::debug!(info_hash = %self.info_hash, "searching the DHT for peers");
        self.search = Some(self.handle.search(self.info_hash, self.port));
        self.last_started = Some(now);
        self.found = false;
    }

    /// Pings a node a peer told us about (BEP 5 `port`).
    pub(crate) fn ping(&self, node: SocketAddr) {
        self.handle.ping(node);
    }

    /// The next peers of the running search, or `None` once when it ends (its retry is then
    /// scheduled: [`TorrentDht::deadline`] may have moved); pending while none runs.
    pub(crate) async fn next_peers(this: &mut Option<TorrentDht>) -> Option<Vec<SocketAddr>> {
        let Some(d) = this else {
            return std::future::pending().await;
        };
        let Some(search) = &mut d.search else {
            return std::future::pending().await;
        };
        match search.next().await {
            Some(peers) => {
                d.found = true;
                Some(peers)
            }
            None => {
                d.search = None;
                if d.found {
                    d.retry = FIRST_RETRY;
                } else {
                    d.next = d.next.min(tokio::time::Instant::now() + d.retry);
                    d.retry = (d.retry * 2).min(SEARCH_INTERVAL);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let nodes: Vec<(NodeId, SocketAddr)> = (0..40u8)
            .map(|i| {
                let addr = if i % 2 == 0 {
                    SocketAddr::from(([127, 0, 0, i], 6881))
                } else {
                    SocketAddr::from(([0xfd00, 0, 0, 0, 0, 0, 0, u16::from(i)], 6881))
                };
                (NodeId([i; 20]), addr)
            })
            .collect();
        let bytes = encode_state(NodeId([9; 20]), &nodes);
        let (id, addrs) = decode_state(&bytes).unwrap();
        assert_eq!(id, NodeId([9; 20]));
        assert_eq!(addrs.len(), 40);
        assert!(decode_state(b"garbage").is_none());
        assert!(decode_state(b"d2:id3:abce").is_none());
    }
}
