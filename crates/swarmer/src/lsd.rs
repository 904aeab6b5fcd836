//! The Local Service Discovery task (BEP 14): multicasts announces of the session's public torrents to
//! the local network and hands the peers it hears of to their torrents. The codec, the announce
//! schedule and the inbound filter are in [`swarmer_proto::lsd`]; this file owns the sockets.
//!
//! Two IPv4 sockets: one bound to `0.0.0.0:6771` with `SO_REUSEADDR` and `SO_REUSEPORT` (so several
//! clients on one machine each get every announce) and joined to `239.192.152.143` on the interface of
//! the session's bind address (or the system's choice without one), and one bound to the bind address
//! that sends our announces, so receivers see them coming from the address we listen on. Multicast
//! loopback stays on, so clients on the same machine hear each other; our own announces come back and
//! are recognised by their cookie. The TTL is 1: announces stay on the local link.
//! The sending sockets are plain non-blocking sockets, not the runtime's: a send is one system call and a
//! full buffer loses the datagram rather than waiting.
//!
//! IPv6 (`[ff15::efc0:988f]:6771`) likewise, on every interface that has IPv6 (from
//! [`crate::interfaces`]; with an IPv6 bind address, the one that holds it): a receiving socket on
//! `[::]:6771` joined on each, and a sending socket that announces once per interface (hop limit 1).
//! A dual-stack session runs both families, a session bound to one address that family alone. A
//! link-local announcer is dialled through the interface its announce came in on.
//!
//! A torrent is registered once it can serve peers (after checking its data) and unregistered when
//! its task ends. Private torrents (BEP 27) are never registered, so they are neither announced nor
//! given peers from LSD.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use swarmer_proto::InfoHash;
use swarmer_proto::lsd::{
    Cookie, Group, IPV4_GROUP, IPV6_GROUP, Inbound, LSD_PORT, MAX_DATAGRAM, Scheduler, Verdict,
    encode,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::shared::SessionShared;
use crate::torrent::Command;

/// Capacity of the queue of registrations; the task drains it at once, so it fills only if the
/// session adds and removes torrents faster than a task can take map entries.
const COMMAND_QUEUE: usize = 1024;

/// A change to the set of torrents LSD announces.
#[derive(Debug)]
pub(crate) enum LsdCommand {
    /// Announce this torrent and route peers announced for it.
    Add(InfoHash),
    /// Stop announcing it.
    Remove(InfoHash),
}

/// The session's handle on the LSD task; dropping it stops the task.
pub(crate) struct Lsd {
    commands: mpsc::Sender<LsdCommand>,
    task: JoinHandle<()>,
}

impl Lsd {
    /// Opens the sockets and starts the task. Returns `None` (after logging why) if LSD cannot run
    /// here: the system refuses the multicast group of every family (no multicast-capable
    /// interface). A session runs on without it.
    pub(crate) fn start(shared: Arc<SessionShared>) -> Option<Lsd> {
        let (v4, v6) = match shared.config.bind_ip {
            None => (Some(Ipv4Addr::UNSPECIFIED), Some(Ipv6Addr::UNSPECIFIED)),
            Some(IpAddr::V4(ip)) => (Some(ip), None),
            Some(IpAddr::V6(ip)) => (None, Some(ip)),
        };
        let v4 = v4.and_then(|bind| {
            let sockets = receiving_socket(bind).and_then(|r| Ok((r, sending_socket(bind)?)));
            match sockets {
                Ok(sockets) => {
                    tracing::info!(%bind, "local service discovery on {}", Group::V4.addr());
                    Some(sockets)
                }
                // A machine with no multicast route (a container, a host without a default
                // route) is an expected set-up, not a problem to warn about.
                Err(e) if no_multicast_route(&e) => {
                    tracing::info!(
                        "local service discovery over IPv4 not started: no multicast route ({e})"
                    );
                    None
                }
                Err(e) => {
                    tracing::warn!("local service discovery over IPv4 not started: {e}");
                    None
                }
            }
        });
        let v6 = v6.and_then(|bind| match Ipv6Sockets::open(bind) {
            Ok(sockets) => {
                tracing::info!(%bind, interfaces = ?sockets.interfaces, "local service discovery on {}", Group::V6.addr());
                Some(sockets)
            }
            Err(e) => {
                tracing::info!("local service discovery over IPv6 not started: {e}");
                None
            }
        });
        if v4.is_none() && v6.is_none() {
            return None;
        }
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let task = tokio::spawn(run(shared, v4, v6, rx));
        Some(Lsd { commands, task })
    }

    /// A sender for registrations, for torrent tasks that unregister themselves when they end.
    pub(crate) fn commands(&self) -> mpsc::Sender<LsdCommand> {
        self.commands.clone()
    }
}

impl Drop for Lsd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Queues `command` without waiting; a full queue (a burst of over a thousand changes) loses it,
/// which at worst announces a removed torrent a few more times or misses one until it is re-added.
pub(crate) fn tell(commands: &mpsc::Sender<LsdCommand>, command: LsdCommand) {
    if let Err(mpsc::error::TrySendError::Full(c)) = commands.try_send(command) {
        tracing::warn!(?c, "local service discovery queue full; change dropped");
    }
}

/// Whether joining or sending to the multicast group failed only because this machine has no route
/// for multicast: no interface to join on (`ENODEV`) or no route (`ENETUNREACH`).
fn no_multicast_route(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENODEV | libc::ENETUNREACH))
}

fn receiving_socket(interface: Ipv4Addr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, LSD_PORT)).into())?;
    socket
        .join_multicast_v4(&IPV4_GROUP, &interface)
        .map_err(|e| match e.raw_os_error() {
            // Keep the OS error, so the caller can tell an expected set-up from a failure.
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(e.kind(), format!("cannot join {IPV4_GROUP}: {e}")),
        })?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// The IPv6 sockets: one receiving on `[::]:6771` joined on each of `interfaces` (their
/// indices), one sending from the bind address.
struct Ipv6Sockets {
    receiver: UdpSocket,
    sender: Socket,
    interfaces: Vec<u32>,
}

impl Ipv6Sockets {
    /// Joins the group on every interface with IPv6 (`bind` unspecified) or on the one that
    /// holds `bind`; fails if no join worked.
    fn open(bind: Ipv6Addr) -> io::Result<Ipv6Sockets> {
        let mut candidates: Vec<u32> = crate::interfaces::ipv6_interfaces()
            .into_iter()
            .filter(|i| bind.is_unspecified() || i.addr == bind)
            .map(|i| i.index)
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_only_v6(true)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, LSD_PORT)).into())?;
        let mut interfaces = Vec::new();
        let mut last_error = None;
        for index in candidates {
            match socket.join_multicast_v6(&IPV6_GROUP, index) {
                Ok(()) => interfaces.push(index),
                Err(e) => last_error = Some(e),
            }
        }
        if interfaces.is_empty() {
            return Err(last_error.unwrap_or_else(|| io::Error::other("no interface with IPv6")));
        }
        socket.set_nonblocking(true)?;
        let receiver = UdpSocket::from_std(socket.into())?;
        let sender = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        sender.set_only_v6(true)?;
        sender.bind(&SocketAddr::from((bind, 0)).into())?;
        sender.set_multicast_hops_v6(1)?;
        sender.set_multicast_loop_v6(true)?;
        sender.set_nonblocking(true)?;
        Ok(Ipv6Sockets {
            receiver,
            sender,
            interfaces,
        })
    }

    /// Sends `datagram` to the group out of every joined interface, without waiting.
    fn send(&self, datagram: &[u8]) {
        for &index in &self.interfaces {
            let group = SocketAddr::V6(std::net::SocketAddrV6::new(IPV6_GROUP, LSD_PORT, 0, index));
            let sent = self
                .sender
                .set_multicast_if_v6(index)
                .and_then(|()| self.sender.send_to(datagram, &group.into()));
            if let Err(e) = sent {
                tracing::debug!(index, "cannot send LSD announce over IPv6: {e}");
            }
        }
    }
}

/// Receives from `socket` if there is one; pending otherwise.
async fn recv_from(socket: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// A non-blocking socket that only sends, so it is never registered with the runtime: a send is the
/// system call itself. (A runtime socket refuses to send until the reactor has reported it writable
/// once, which lost the announce of a torrent added right after the session started.)
fn sending_socket(bind: Ipv4Addr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind(&SocketAddr::from((bind, 0)).into())?;
    if !bind.is_unspecified() {
        socket.set_multicast_if_v4(&bind)?;
    }
    socket.set_multicast_ttl_v4(1)?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

async fn run(
    shared: Arc<SessionShared>,
    v4: Option<(UdpSocket, Socket)>,
    v6: Option<Ipv6Sockets>,
    mut commands: mpsc::Receiver<LsdCommand>,
) {
    let cookie = Cookie::generate(&mut rand::thread_rng());
    let port = shared.listen_addr.port();
    let mut schedule = Scheduler::new();
    let mut inbound = Inbound::new(cookie.clone());
    // One byte more than the limit, so an over-long datagram is seen as such, not cut to size.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut buf6 = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let wake = schedule
            .poll_timeout()
            .map(|t| shared.clock.tokio_instant(t));
        let received = tokio::select! {
            command = commands.recv() => {
                match command {
                    None => return,
                    Some(LsdCommand::Add(hash)) => {
                        schedule.add(hash, shared.clock.now());
                    }
                    Some(LsdCommand::Remove(hash)) => {
                        schedule.remove(&hash);
                    }
                }
                None
            },
            received = recv_from(v4.as_ref().map(|(r, _)| r), &mut buf) => {
                Some(received.map(|(len, from)| (&buf[..len], from)))
            },
            received = recv_from(v6.as_ref().map(|s| &s.receiver), &mut buf6) => {
                Some(received.map(|(len, from)| (&buf6[..len], from)))
            },
            () = sleep_until(wake) => None,
        };
        match received {
            Some(Ok((datagram, from))) => {
                let verdict = inbound.handle(datagram, from.ip(), shared.clock.now());
                route(&shared, &schedule, verdict, from);
            }
            // ICMP errors and the like: nothing to do but read on.
            Some(Err(e)) => tracing::debug!("local service discovery receive: {e}"),
            None => {}
        }
        let now = shared.clock.now();
        let send_batch = |batch: &[InfoHash]| {
            let v4_sender = v4.as_ref().map(|(_, sender)| sender);
            send(v4_sender, v6.as_ref(), port, batch, &cookie);
        };
        loop {
            let mut batch = schedule.poll_announce(now);
            if batch.is_empty() {
                break;
            }
            // A torrent that ended just as it was registered: stop announcing it.
            batch.retain(|hash| {
                let present = shared.torrent(hash).is_some();
                if !present {
                    schedule.remove(hash);
                }
                present
            });
            send_batch(&batch);
        }
        loop {
            let batch = schedule.poll_repeat(now);
            if batch.is_empty() {
                break;
            }
            send_batch(&batch);
        }
    }
}

/// Multicasts one announce of `batch` to each group we have sockets for, without waiting: a full
/// socket buffer loses it (the first announce is repeated; later ones come every 5 minutes).
fn send(
    v4: Option<&Socket>,
    v6: Option<&Ipv6Sockets>,
    port: u16,
    batch: &[InfoHash],
    cookie: &Cookie,
) {
    if batch.is_empty() {
        return;
    }
    if let Some(sender) = v4 {
        for datagram in encode(Group::V4, port, batch, cookie) {
            match sender.send_to(&datagram, &Group::V4.addr().into()) {
                Ok(_) => tracing::debug!(torrents = batch.len(), "sent LSD announce"),
                Err(e) => tracing::debug!("cannot send LSD announce: {e}"),
            }
        }
    }
    if let Some(v6) = v6 {
        for datagram in encode(Group::V6, port, batch, cookie) {
            v6.send(&datagram);
        }
        tracing::debug!(torrents = batch.len(), "sent LSD announce over IPv6");
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Hands a peer heard of to each torrent it announced that we announce too, without waiting: a torrent
/// whose queue is full misses this one (it will be announced again within 5 minutes).
fn route(shared: &SessionShared, schedule: &Scheduler, verdict: Verdict, from: SocketAddr) {
    let (mut peer, info_hashes) = match verdict {
        Verdict::Peer { peer, info_hashes } => (peer, info_hashes),
        Verdict::Own => return,
        Verdict::RateLimited => {
            tracing::debug!(%from, "LSD announce dropped: rate limit");
            return;
        }
        Verdict::Malformed(e) => {
            tracing::debug!(%from, "LSD datagram dropped: {e}");
            return;
        }
    };
    // A link-local address means something only with its interface: the one the announce came in on.
    if let (SocketAddr::V6(peer), SocketAddr::V6(from)) = (&mut peer, from) {
        if peer.ip().is_unicast_link_local() {
            peer.set_scope_id(from.scope_id());
        }
    }
    tracing::debug!(%peer, info_hashes = %hex_list(&info_hashes), "LSD announce received");
    for hash in info_hashes.iter().filter(|h| schedule.contains(h)) {
        if let Some(torrent) = shared.torrent(hash) {
            tracing::info!(%peer, info_hash = %hash, "peer found by local service discovery");
            let _ = torrent.try_send(Command::AddPeers(vec![peer]));
        }
    }
}

fn hex_list(hashes: &[InfoHash]) -> String {
    let hex: Vec<String> = hashes.iter().map(InfoHash::to_hex).collect();
    hex.join(",")
}
