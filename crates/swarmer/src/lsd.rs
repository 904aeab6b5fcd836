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
//!
//! IPv6 (`[ff15::efc0:988f]:6771`) is not joined yet: the codec handles it, but choosing the interface
//! index for a bind address needs an interface listing this crate does not have. A session bound to an
//! IPv6 address runs without LSD (with a warning).
//!
//! A torrent is registered once it can serve peers (after checking its data) and unregistered when
//! its task ends. Private torrents (BEP 27) are never registered, so they are neither announced nor
//! given peers from LSD.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use swarmer_proto::InfoHash;
use swarmer_proto::lsd::{
    Cookie, Group, IPV4_GROUP, Inbound, LSD_PORT, MAX_DATAGRAM, Scheduler, Verdict, encode,
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
    /// here: an IPv6 bind address, or the system refuses the multicast group (no multicast-capable
    /// interface). A session runs on without it.
    pub(crate) fn start(shared: Arc<SessionShared>) -> Option<Lsd> {
        let bind = match shared.config.bind_ip {
            None => Ipv4Addr::UNSPECIFIED,
            Some(IpAddr::V4(ip)) => ip,
            Some(IpAddr::V6(ip)) => {
                tracing::warn!(%ip, "local service discovery is IPv4 only; not started");
                return None;
            }
        };
        let sockets = receiving_socket(bind).and_then(|r| Ok((r, sending_socket(bind)?)));
        let (receiver, sender) = match sockets {
            Ok(sockets) => sockets,
            // A machine with no multicast route (a container, a host without a default route) is
            // an expected set-up, not a problem to warn about.
            Err(e) if no_multicast_route(&e) => {
                tracing::info!("local service discovery not started: no multicast route ({e})");
                return None;
            }
            Err(e) => {
                tracing::warn!("local service discovery not started: {e}");
                return None;
            }
        };
        tracing::info!(%bind, "local service discovery on {}", Group::V4.addr());
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let task = tokio::spawn(run(shared, receiver, sender, rx));
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

fn sending_socket(bind: Ipv4Addr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind(&SocketAddr::from((bind, 0)).into())?;
    if !bind.is_unspecified() {
        socket.set_multicast_if_v4(&bind)?;
    }
    socket.set_multicast_ttl_v4(1)?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

async fn run(
    shared: Arc<SessionShared>,
    receiver: UdpSocket,
    sender: UdpSocket,
    mut commands: mpsc::Receiver<LsdCommand>,
) {
    let cookie = Cookie::generate(&mut rand::thread_rng());
    let port = shared.listen_addr.port();
    let mut schedule = Scheduler::new();
    let mut inbound = Inbound::new(cookie.clone());
    // One byte more than the limit, so an over-long datagram is seen as such, not cut to size.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let wake = schedule
            .poll_timeout()
            .map(|t| shared.clock.tokio_instant(t));
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(LsdCommand::Add(hash)) => {
                    schedule.add(hash, shared.clock.now());
                }
                Some(LsdCommand::Remove(hash)) => {
                    schedule.remove(&hash);
                }
            },
            received = receiver.recv_from(&mut buf) => match received {
                Ok((len, from)) => {
                    let verdict = inbound.handle(&buf[..len], from.ip(), shared.clock.now());
                    route(&shared, &schedule, verdict, from);
                }
                // ICMP errors and the like: nothing to do but read on.
                Err(e) => tracing::debug!("local service discovery receive: {e}"),
            },
            () = sleep_until(wake) => {}
        }
        let now = shared.clock.now();
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
            for datagram in encode(Group::V4, port, &batch, &cookie) {
                // Never waits: a full socket buffer loses this announce, the next comes in 5 minutes.
                match sender.try_send_to(&datagram, Group::V4.addr()) {
                    Ok(_) => tracing::debug!(torrents = batch.len(), "sent LSD announce"),
                    Err(e) => tracing::debug!("cannot send LSD announce: {e}"),
                }
            }
        }
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
    let (peer, info_hashes) = match verdict {
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
