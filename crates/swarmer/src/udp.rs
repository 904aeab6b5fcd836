//! The session's one UDP socket, on the listen port: uTP connections (BEP 29), the DHT (BEP 5) and
//! UDP tracker replies (BEP 15) all arrive here and are told apart by their first bytes: uTP version
//! 1 starts with `type << 4 | 1` (0x01 to 0x41) and is at least 20 bytes, the DHT's bencoded
//! dictionaries with `d`, and tracker replies with a 32-bit action of 0 to 3 followed by the
//! transaction id we chose, by which they are routed to the announce that waits for them.
//!
//! One task owns the socket's receiving side and the sans-IO [`Endpoint`] of the uTP connections;
//! the DHT and the trackers send through the shared socket themselves. Every queue is bounded: a
//! datagram for a full queue is dropped, as the network could have dropped it. The task receives up
//! to [`quinn_udp::BATCH_SIZE`] datagrams per system call (`recvmmsg`, and UDP GRO where the kernel
//! coalesces): a uTP download at 100 MiB/s is ~75,000 datagrams a second.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Buf;
use quinn_udp::{BATCH_SIZE, RecvMeta, UdpSocketState};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use swarmer_proto::utp::{
    CloseReason, ConnectionId, Endpoint, EndpointConfig, State, looks_like_utp,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::utp::{Hub, STREAM_BUFFER, StreamShared, UtpCommand, UtpConnector, UtpStream};

/// The socket's send and receive buffers, in bytes. On loopback the default ~208 KiB receive
/// buffer drops ~3 % of a uTP transfer's datagrams and caps it near 10 MiB/s; 4 MiB drops none
/// (docs: interop notes, "uTP with libtorrent"). The kernel caps it at `net.core.rmem_max`.
pub(crate) const SOCKET_BUFFER: usize = 4 << 20;
/// Datagrams received per wake-up before the task sends what they caused.
const RECV_BATCH: usize = 256;
/// After a wake-up that received datagrams, the task looks at the socket again no sooner than
/// this (tokio's timer rounds it up to the next millisecond). A uTP download at 100 MiB/s is
/// ~75,000 datagrams a second: taken as they come, nearly every one costs a wake-up of the task and
/// a thread, which the profile showed as the largest cost (docs/benchmarks/2026-12-06-utp). Paced,
/// they wait in the socket's 4 MiB buffer and come ~70 at a time; ACKs leave up to 1 ms later,
/// which LEDBAT's 100 ms target does not notice.
const RECV_PACE: std::time::Duration = std::time::Duration::from_micros(500);
/// Bytes of each receive buffer: a whole datagram of any size, or a GRO batch of them.
const RECV_BUFFER: usize = 64 * 1024;
/// DHT datagrams queued for the DHT task.
const DHT_QUEUE: usize = 256;
/// uTP connections accepted and not yet taken by the session.
const ACCEPT_QUEUE: usize = 32;
/// Commands queued to the task.
const COMMAND_QUEUE: usize = 64;
/// Received bytes that wake a connection's reader at once; fewer wait up to [`LAZY_WAKE`], so
/// a transfer of 1,400-byte datagrams wakes the reader's task (and, often, a sleeping thread)
/// once per block rather than once per datagram.
const WAKE_BYTES: usize = 16 * 1024;
/// Longest a reader waits for fewer than [`WAKE_BYTES`] bytes.
const LAZY_WAKE: std::time::Duration = std::time::Duration::from_millis(1);
/// Tracker transactions waiting for a reply, at most.
const MAX_TRACKER_WAITS: usize = 4096;

/// A tracker reply's routing: the transaction id's waiter, with the address it must come from.
type TrackerRoutes = Mutex<HashMap<u32, (SocketAddr, mpsc::Sender<Vec<u8>>)>>;

/// The shared socket as the DHT and the trackers see it; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct UdpHandle {
    pub(crate) socket: Arc<UdpSocket>,
    pub(crate) local_addr: SocketAddr,
    pub(crate) utp: UtpConnector,
    trackers: Arc<TrackerRoutes>,
}

/// Replies to one tracker transaction; dropping it stops the routing.
pub(crate) struct TrackerReplies {
    tid: u32,
    rx: mpsc::Receiver<Vec<u8>>,
    routes: Arc<TrackerRoutes>,
}

impl TrackerReplies {
    /// The next reply (`None` never happens while the socket task runs).
    pub(crate) async fn recv(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }
}

impl Drop for TrackerReplies {
    fn drop(&mut self) {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.tid);
    }
}

impl UdpHandle {
    /// Routes replies with transaction id `tid` from `tracker` to the returned receiver; `None`
    /// if the id is taken or too many transactions wait.
    pub(crate) fn expect_tracker_reply(
        &self,
        tid: u32,
        tracker: SocketAddr,
    ) -> Option<TrackerReplies> {
        let mut routes = self.trackers.lock().unwrap_or_else(|p| p.into_inner());
        if routes.len() >= MAX_TRACKER_WAITS || routes.contains_key(&tid) {
            return None;
        }
        let (tx, rx) = mpsc::channel(4);
        routes.insert(tid, (tracker, tx));
        Some(TrackerReplies {
            tid,
            rx,
            routes: Arc::clone(&self.trackers),
        })
    }
}

/// What [`bind`] returns: the handle and the queues the session hands on.
pub(crate) struct Bound {
    pub(crate) handle: UdpHandle,
    /// DHT datagrams, for the DHT task.
    pub(crate) dht: mpsc::Receiver<(Vec<u8>, SocketAddr)>,
    /// uTP connections peers opened.
    pub(crate) incoming: mpsc::Receiver<UtpStream>,
}

/// Binds the socket at `addr` (an IPv6 address: IPv6 only) with [`SOCKET_BUFFER`]-sized buffers and starts its task, which
/// ends when every handle is gone. `accept_utp`: take uTP connections peers open.
pub(crate) fn bind(
    addr: SocketAddr,
    mut utp: EndpointConfig,
    accept_utp: bool,
    clock: Clock,
) -> io::Result<Bound> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // An IPv6 socket carries IPv6 only: IPv4 has its own socket (dual-stack by two sockets, so
    // the behaviour does not hang on `net.ipv6.bindv6only`).
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Best effort: the kernel's limits decide what we get.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let socket = Arc::new(UdpSocket::from_std(socket.into())?);
    let local_addr = socket.local_addr()?;
    let state = UdpSocketState::new((&*socket).into())?;
    if !accept_utp {
        utp.max_half_open = 0;
    }
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let (dht_tx, dht) = mpsc::channel(DHT_QUEUE);
    let (incoming_tx, incoming) = mpsc::channel(ACCEPT_QUEUE);
    let trackers = Arc::new(TrackerRoutes::default());
    let task = Task {
        socket: Arc::clone(&socket),
        state,
        endpoint: Endpoint::new(utp),
        clock,
        rng: SmallRng::from_entropy(),
        hub: Arc::new(Hub::default()),
        entries: HashMap::new(),
        commands,
        dht: dht_tx,
        incoming: incoming_tx,
        trackers: Arc::clone(&trackers),
        touched: Vec::new(),
        lazy: Vec::new(),
        lazy_at: None,
        out: Vec::with_capacity(2048),
        closing: Vec::new(),
    };
    tokio::spawn(task.run());
    Ok(Bound {
        handle: UdpHandle {
            socket,
            local_addr,
            utp: UtpConnector::new(local_addr.is_ipv4(), commands_tx),
            trackers,
        },
        dht,
        incoming,
    })
}

/// A uTP connection the task knows: its halves' shared state once connected, and the caller
/// waiting for an outgoing connection to be answered.
struct Entry {
    stream: Option<Arc<StreamShared>>,
    connect: Option<oneshot::Sender<io::Result<UtpStream>>>,
}

struct Task {
    socket: Arc<UdpSocket>,
    /// quinn-udp's view of the socket, for batched receives.
    state: UdpSocketState,
    endpoint: Endpoint,
    clock: Clock,
    rng: SmallRng,
    hub: Arc<Hub>,
    entries: HashMap<ConnectionId, Entry>,
    commands: mpsc::Receiver<UtpCommand>,
    dht: mpsc::Sender<(Vec<u8>, SocketAddr)>,
    incoming: mpsc::Sender<UtpStream>,
    trackers: Arc<TrackerRoutes>,
    /// Connections to look at before sending.
    touched: Vec<ConnectionId>,
    /// Readers with a few bytes waiting, woken at `lazy_at` (see [`WAKE_BYTES`]).
    lazy: Vec<Arc<StreamShared>>,
    lazy_at: Option<tokio::time::Instant>,
    out: Vec<u8>,
    /// Callers of [`UtpCommand::Close`] waiting for every connection to close.
    closing: Vec<oneshot::Sender<()>>,
}

fn io_kind(reason: CloseReason) -> io::ErrorKind {
    match reason {
        CloseReason::Finished => io::ErrorKind::BrokenPipe,
        CloseReason::Reset => io::ErrorKind::ConnectionReset,
        CloseReason::TimedOut => io::ErrorKind::TimedOut,
    }
}

impl Task {
    async fn run(mut self) {
        let mut bufs = vec![vec![0u8; RECV_BUFFER]; BATCH_SIZE];
        let mut metas = [RecvMeta::default(); BATCH_SIZE];
        let mut next_recv: Option<tokio::time::Instant> = None;
        loop {
            self.sync_touched();
            self.flush().await;
            if !self.closing.is_empty() && self.all_closed() {
                for done in self.closing.drain(..) {
                    let _ = done.send(());
                }
            }
            let wake = self
                .endpoint
                .poll_timeout()
                .map(|t| self.clock.tokio_instant(t));
            let wake = match (wake, self.lazy_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let readable = async {
                if let Some(at) = next_recv {
                    tokio::time::sleep_until(at).await;
                }
                self.socket.readable().await
            };
            tokio::select! {
                ready = readable => match ready {
                    Ok(()) => {
                        let started = tokio::time::Instant::now();
                        let got = self.receive(&mut bufs, &mut metas);
                        next_recv = (got > 0).then_some(started + RECV_PACE);
                    }
                    Err(e) => tracing::debug!("UDP receive: {e}"),
                },
                command = self.commands.recv() => match command {
                    Some(UtpCommand::Connect { addr, reply }) => self.connect(addr, reply),
                    Some(UtpCommand::Close { done }) => {
                        for &id in self.entries.keys() {
                            if let Some(conn) = self.endpoint.connection_mut(id) {
                                conn.shutdown();
                            }
                        }
                        self.touched.extend(self.entries.keys().copied());
                        self.closing.push(done);
                    }
                    Some(UtpCommand::Reset { done }) => {
                        for (id, _) in self.entries.drain() {
                            self.endpoint.remove(id);
                        }
                        self.closing.push(done);
                    }
                    // Every handle is gone: the session ended.
                    None => break,
                },
                () = self.hub.notify.notified() => self.hub.take_dirty(&mut self.touched),
                () = sleep => {
                    if self.lazy_at.is_some_and(|t| t <= tokio::time::Instant::now()) {
                        self.lazy_at = None;
                        for shared in self.lazy.drain(..) {
                            if let Some(w) = shared.lock().read_waker.take() {
                                w.wake();
                            }
                        }
                    }
                    self.endpoint.handle_timeout(self.clock.now());
                    self.touched.extend(self.entries.keys().copied());
                }
            }
        }
    }

    /// No connection is open any more (each closed, or forgotten).
    fn all_closed(&self) -> bool {
        self.entries.keys().all(|&id| {
            self.endpoint
                .connection(id)
                .is_none_or(|c| matches!(c.state(), State::Closed(_)))
        })
    }

    /// Takes the datagrams waiting on the socket, [`BATCH_SIZE`] per system call and at most
    /// [`RECV_BATCH`], and handles each (a GRO buffer holds several, `stride` bytes apart).
    /// Returns how many there were.
    fn receive(&mut self, bufs: &mut [Vec<u8>], metas: &mut [RecvMeta]) -> usize {
        let mut received = 0;
        while received < RECV_BATCH {
            let got = {
                let mut slices: Vec<IoSliceMut<'_>> =
                    bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
                let (socket, state) = (&self.socket, &self.state);
                socket.try_io(Interest::READABLE, || {
                    state.recv((&**socket).into(), &mut slices, metas)
                })
            };
            let n = match got {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!("UDP receive: {e}");
                    break;
                }
            };
            for (meta, buf) in metas[..n].iter().zip(bufs.iter()) {
                let stride = if meta.stride == 0 {
                    meta.len
                } else {
                    meta.stride
                };
                for datagram in buf[..meta.len].chunks(stride.max(1)) {
                    self.datagram(datagram, meta.addr);
                    received += 1;
                }
            }
        }
        received
    }

    fn datagram(&mut self, data: &[u8], from: SocketAddr) {
        if looks_like_utp(data) {
            let now = self.clock.now();
            if let Some(id) = self
                .endpoint
                .handle_datagram(now, from, data, &mut self.rng)
            {
                self.touched.push(id);
            }
            while let Some((id, addr)) = self.endpoint.accept() {
                let shared = StreamShared::new(id, Arc::clone(&self.hub));
                let stream = UtpStream::new(Arc::clone(&shared), addr);
                if self.incoming.try_send(stream).is_ok() {
                    self.entries.insert(
                        id,
                        Entry {
                            stream: Some(shared),
                            connect: None,
                        },
                    );
                } else {
                    self.endpoint.remove(id);
                }
            }
        } else if data.first() == Some(&b'd') {
            let _ = self.dht.try_send((data.to_vec(), from));
        } else if let Some(tid) = data.get(4..8) {
            let tid = u32::from_be_bytes([tid[0], tid[1], tid[2], tid[3]]);
            let routes = self.trackers.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((tracker, tx)) = routes.get(&tid) {
                if *tracker == from {
                    let _ = tx.try_send(data.to_vec());
                }
            }
        }
    }

    fn connect(&mut self, addr: SocketAddr, reply: oneshot::Sender<io::Result<UtpStream>>) {
        match self.endpoint.connect(self.clock.now(), addr, &mut self.rng) {
            Ok(id) => {
                self.entries.insert(
                    id,
                    Entry {
                        stream: None,
                        connect: Some(reply),
                    },
                );
            }
            Err(e) => {
                let _ = reply.send(Err(io::Error::other(e)));
            }
        }
    }

    fn sync_touched(&mut self) {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for id in touched.drain(..) {
            self.sync(id);
        }
        self.touched = touched;
    }

    /// Moves bytes and news between connection `id` and its halves.
    fn sync(&mut self, id: ConnectionId) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let Some(conn) = self.endpoint.connection_mut(id) else {
            self.entries.remove(&id);
            return;
        };
        let state = conn.state();
        if let Some(reply) = entry.connect.take() {
            match state {
                State::Connected => {
                    let shared = StreamShared::new(id, Arc::clone(&self.hub));
                    let addr = self.endpoint.addr(id).expect("connection exists");
                    // If the caller gave up meanwhile, the halves it never got mark it again.
                    let _ = reply.send(Ok(UtpStream::new(Arc::clone(&shared), addr)));
                    entry.stream = Some(shared);
                }
                State::Closed(reason) => {
                    let _ = reply.send(Err(io_kind(reason).into()));
                    self.entries.remove(&id);
                    self.endpoint.remove(id);
                    return;
                }
                _ if reply.is_closed() => {
                    self.entries.remove(&id);
                    self.endpoint.remove(id);
                    return;
                }
                _ => {
                    entry.connect = Some(reply);
                    return;
                }
            }
        }
        let Some(shared) = &entry.stream else {
            return;
        };
        let conn = self.endpoint.connection_mut(id).expect("checked above");
        let mut s = shared.lock();
        if !s.outgoing.is_empty() {
            let n = conn.write(&s.outgoing);
            if n > 0 {
                s.outgoing.advance(n);
                if let Some(w) = s.write_waker.take() {
                    w.wake();
                }
            }
        }
        if s.shutdown && s.outgoing.is_empty() {
            conn.shutdown();
        }
        let room = STREAM_BUFFER.saturating_sub(s.incoming.len());
        let ready = conn.readable().min(room);
        let mut wake_reader = false;
        if ready > 0 {
            let (a, b) = conn.peek();
            let first = ready.min(a.len());
            s.incoming.extend_from_slice(&a[..first]);
            s.incoming.extend_from_slice(&b[..ready - first]);
            conn.consume(ready);
            wake_reader = true;
        }
        if conn.is_eof() && !s.eof {
            s.eof = true;
            wake_reader = true;
        }
        let closed = matches!(state, State::Closed(_));
        if let State::Closed(reason) = state {
            if s.error.is_none() && !s.eof {
                s.error = Some(io_kind(reason));
                wake_reader = true;
                if let Some(w) = s.write_waker.take() {
                    w.wake();
                }
            }
        }
        if wake_reader && s.read_waker.is_some() {
            if s.incoming.len() >= WAKE_BYTES || s.eof || s.error.is_some() {
                if let Some(w) = s.read_waker.take() {
                    w.wake();
                }
            } else if !self.lazy.iter().any(|l| Arc::ptr_eq(l, shared)) {
                self.lazy.push(Arc::clone(shared));
                self.lazy_at
                    .get_or_insert_with(|| tokio::time::Instant::now() + LAZY_WAKE);
            }
        }
        let orphan = s.halves == 0;
        drop(s);
        if orphan {
            if closed {
                self.entries.remove(&id);
                self.endpoint.remove(id);
            } else {
                // Nobody reads or writes any more: finish what was written, then close.
                conn.shutdown();
                while conn.readable() > 0 {
                    let mut sink = [0u8; 4096];
                    conn.read(&mut sink);
                }
            }
        }
    }

    /// Sends every datagram the endpoint has ready.
    async fn flush(&mut self) {
        let now = self.clock.now();
        while let Some(to) = self.endpoint.poll_transmit(now, &mut self.out) {
            loop {
                match self.socket.try_send_to(&self.out, to) {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if self.socket.writable().await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%to, "UDP send: {e}");
                        break;
                    }
                }
            }
        }
    }
}
