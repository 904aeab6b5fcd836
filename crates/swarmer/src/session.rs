//! The [`Session`]: one listening socket, one peer id and one tracker client shared by many torrents,
//! each run by its own owner task. Incoming connections are routed to their torrent by the info hash in
//! their handshake (BEP 3, "handshake").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use swarmer_proto::PeerId;
use swarmer_proto::magnet::Magnet;
use swarmer_proto::metainfo::Metainfo;
use swarmer_proto::priority::PriorityCountError;
use swarmer_proto::utp::EndpointConfig;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{Encryption, SessionConfig, Transport};
use crate::dht::{DhtHandle, DhtSocket};
use crate::error::SessionError;
use crate::lsd::{Lsd, LsdCommand};
use crate::magnet::MetadataFetchHandle;
use crate::peer::{Incoming, PeerStream};
use crate::port_mapping::{PortMappingHandle, Ports};
use crate::rate::TorrentLimits;
use crate::shared::SessionShared;
use crate::torrent::{
    AddTorrentOptions, Command, Progress, TorrentHandle, TorrentState, TorrentTask,
};
use crate::tracker::TrackerClient;
use crate::utp::UtpStream;

/// A BitTorrent session: hosts torrents, accepts peers, talks to trackers.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use swarmer::{Session, SessionConfig};
/// use swarmer_proto::metainfo::Metainfo;
///
/// let metainfo = Metainfo::from_bytes(&std::fs::read("ubuntu.torrent")?)?;
/// let session = Session::new(SessionConfig::default()).await?;
/// let mut torrent = session.add_torrent(metainfo, "downloads".as_ref()).await?;
/// let mut progress = torrent.progress();
/// tokio::spawn(async move {
///     while progress.changed().await.is_ok() {
///         let p = progress.borrow().clone();
///         println!("{}/{} bytes verified", p.verified_bytes, p.total_bytes);
///     }
/// });
/// torrent.wait_complete().await?;
/// torrent.stop().await?;
/// # Ok(()) }
/// ```
pub struct Session {
    shared: Arc<SessionShared>,
    tracker: TrackerClient,
    /// The accept loops: one per listener (IPv4 and IPv6 when dual-stack).
    listener: Vec<JoinHandle<()>>,
    /// The Local Service Discovery task, if [`SessionConfig::lsd`] is set and it could start.
    lsd: Option<Lsd>,
    /// The port mapping task, if [`SessionConfig::port_mapping`] is set.
    port_mapping: Option<PortMappingHandle>,
}

impl Session {
    /// Starts a session: generates a peer id (`-SW0100-` and 12 random bytes) and binds the
    /// listeners and UDP sockets: on both families, one port, without
    /// [`SessionConfig::bind_ip`] (IPv6 best effort: a host without it gets IPv4 and a warning),
    /// else on the bind address alone.
    ///
    /// Errors: the port is taken (on IPv4, or the bind address) or the bind address is not local
    /// ([`SessionError::Listen`]).
    pub async fn new(config: SessionConfig) -> Result<Session, SessionError> {
        let clock = Clock::start();
        let listeners = bind_listeners(config.bind_ip, config.listen_port)?;
        let listen_addr = listeners[0].1;
        let listen_addr6 = listeners.get(1).map(|(_, a)| *a);
        for (_, addr) in &listeners {
            tracing::info!(listen_addr = %addr, "listening for peers");
        }
        let mut tracker_config = config.tracker.clone();
        tracker_config.bind = config.bind_ip;
        let mut tracker = TrackerClient::new(tracker_config).map_err(SessionError::Tracker)?;
        // One UDP socket on the same address and port as each TCP listener, for uTP, the DHT and
        // UDP trackers (BEP 5 and 29 leave the port to us; users expect one).
        let bind_udp = |addr: SocketAddr| {
            crate::udp::bind(
                addr,
                EndpointConfig::default(),
                config.transport.utp(),
                clock,
            )
            .map_err(|error| SessionError::Listen { addr, error })
        };
        let udp = bind_udp(listen_addr)?;
        tracker.add_udp(udp.handle.clone());
        // The IPv6 socket of a dual-stack session: best effort, as the IPv6 listener.
        let udp6 = match listen_addr6.map(bind_udp) {
            Some(Ok(bound)) => Some(bound),
            Some(Err(e)) => {
                tracing::warn!(
                    "no IPv6 UDP socket (uTP, DHT and UDP trackers over IPv4 only): {e}"
                );
                None
            }
            None => None,
        };
        if let Some(udp6) = &udp6 {
            tracker.add_udp(udp6.handle.clone());
        }
        if listen_addr6.is_some() {
            let ipv6 = crate::interfaces::global_ipv6(&crate::interfaces::ipv6_interfaces());
            match ipv6 {
                Some(ip) => tracing::info!(%ip, "global IPv6 address told to trackers"),
                None => tracing::debug!("no global IPv6 address to tell trackers"),
            }
            tracker
                .set_dual_stack(ipv6)
                .map_err(SessionError::Tracker)?;
        }
        let (udp6, incoming6, dht6) = match udp6 {
            Some(bound) => (Some(bound.handle), Some(bound.incoming), Some(bound.dht)),
            None => (None, None, None),
        };
        let dht = match &config.dht {
            Some(dht_config) => {
                let addr = listen_addr;
                let mut sockets = vec![DhtSocket {
                    socket: Arc::clone(&udp.handle.socket),
                    incoming: udp.dht,
                }];
                if let (Some(udp6), Some(incoming)) = (&udp6, dht6) {
                    sockets.push(DhtSocket {
                        socket: Arc::clone(&udp6.socket),
                        incoming,
                    });
                }
                let handle = crate::dht::start(dht_config, sockets, clock)
                    .await
                    .map_err(|error| SessionError::Dht { addr, error })?;
                Some(handle)
            }
            None => None,
        };
        // In the background: a router that is slow or silent must not hold up start-up.
        let port_mapping = config.port_mapping.then(|| {
            let ports = Ports {
                tcp: listen_addr.port(),
                udp: listen_addr.port(),
                bind_ip: config.bind_ip,
            };
            crate::port_mapping::start(config.port_mapping_config.clone(), ports)
        });
        let shared = Arc::new(
            SessionShared::new(
                clock,
                PeerId::generate(&mut rand::thread_rng()),
                config,
                listen_addr,
                dht,
                udp.handle,
            )
            .with_ipv6(listen_addr6, udp6),
        );
        tokio::spawn(accept_utp(udp.incoming, Arc::clone(&shared)));
        if let Some(incoming) = incoming6 {
            tokio::spawn(accept_utp(incoming, Arc::clone(&shared)));
        }
        let listener = listeners
            .into_iter()
            .map(|(listener, _)| tokio::spawn(accept_loop(listener, Arc::clone(&shared))))
            .collect();
        let lsd = if shared.config.lsd {
            Lsd::start(Arc::clone(&shared))
        } else {
            None
        };
        Ok(Session {
            shared,
            tracker,
            listener,
            lsd,
            port_mapping,
        })
    }

    /// Ends the session's uTP connections: each gets a FIN after what was written, and this waits
    /// until every one is closed, at most `grace`; those still open then get a RESET. Call it after
    /// stopping the torrents, before the process exits: TCP connections are closed by the kernel
    /// then, uTP ones only by us, and a peer left holding one (libtorrent) refuses a new
    /// connection from the same address until it times out.
    pub async fn close_utp(&self, grace: Duration) {
        self.shared.utp().close_all(grace).await;
    }

    /// The port mapping task ([`SessionConfig::port_mapping`]): its state, and
    /// [`PortMappingHandle::close`] to remove the mappings before exiting (dropping the session
    /// starts the removal without waiting for it).
    pub fn port_mapping(&self) -> Option<PortMappingHandle> {
        self.port_mapping.clone()
    }

    /// Our external address as the router reported it when mapping the ports; `None` before that,
    /// or without port mapping.
    pub fn external_ip(&self) -> Option<IpAddr> {
        self.port_mapping
            .as_ref()
            .and_then(PortMappingHandle::external_ip)
    }

    /// The address peers can reach us at (the port is the real one when 0 was asked for): the
    /// IPv4 listener's when dual-stack (no [`SessionConfig::bind_ip`]), else the bind address's.
    pub fn listen_addr(&self) -> SocketAddr {
        self.shared.listen_addr
    }

    /// Every address we listen on for peers, TCP and UDP alike: `0.0.0.0` and `[::]` on one port
    /// when dual-stack (the IPv6 one only if the system has IPv6), else the bind address alone.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.shared.listen_addrs()
    }

    /// Which transports carry peer connections ([`SessionConfig::transport`]).
    pub fn transport(&self) -> Transport {
        self.shared.config.transport
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// Starts fetching the metadata (the `info` dictionary) of a magnet link from peers (BEP 9): those
    /// in its `x.pe`, those its trackers return, and those the DHT finds when it is on. The result is
    /// a [`Metainfo`] checked against the link's info hash, to add with
    /// [`Session::add_torrent_with`], plus the peers found, to hand to it with
    /// [`TorrentHandle::add_peers`].
    pub fn fetch_metadata(&self, magnet: &Magnet) -> MetadataFetchHandle {
        crate::magnet::spawn(Arc::clone(&self.shared), self.tracker.clone(), magnet)
    }

    /// The session's DHT node, if [`SessionConfig::dht`] turned it on.
    pub fn dht(&self) -> Option<DhtHandle> {
        self.shared.dht.clone()
    }

    /// Changes the encryption policy (MSE/PE) for connections opened from now on, incoming and
    /// outgoing; open connections keep theirs. Trackers hear of it from torrents started later.
    pub fn set_encryption(&self, encryption: Encryption) {
        self.shared.encryption_memory.set_policy(encryption);
    }

    /// The encryption policy now; it starts as [`SessionConfig::encryption`].
    pub fn encryption(&self) -> Encryption {
        self.shared.encryption_memory.policy()
    }

    /// Changes the session-wide limits, in bytes per second, on what all connections of all
    /// torrents send (`upload`: payload and messages) and read (`download`); `None` lifts a limit
    /// and `Some(0)` is taken as 1. It takes effect at once, for connections already open too:
    /// bytes waiting for the old limit are paid at the new one. Per-torrent limits
    /// ([`TorrentHandle::set_rate_limits`]) still apply beneath these.
    pub fn set_rate_limits(&self, upload: Option<u64>, download: Option<u64>) {
        self.shared.upload_limit.set_rate(upload);
        self.shared.download_limit.set_rate(download);
    }

    /// The session-wide `(upload, download)` limits in bytes per second; `None` is no limit.
    /// They start as [`SessionConfig::max_upload_rate`] and [`SessionConfig::max_download_rate`].
    pub fn rate_limits(&self) -> (Option<u64>, Option<u64>) {
        (
            self.shared.upload_limit.rate(),
            self.shared.download_limit.rate(),
        )
    }

    /// Adds a torrent whose files go under `output_dir` (a single-file torrent as `output_dir/name`, a
    /// multi-file one as `output_dir/name/...`) and starts downloading it; it stops serving peers once
    /// complete. [`Session::add_torrent_with`] can seed and check existing data.
    ///
    /// Errors: the torrent is already added; its files cannot be created ([`SessionError::Storage`]).
    pub async fn add_torrent(
        &self,
        metainfo: impl Into<Arc<Metainfo>>,
        output_dir: &Path,
    ) -> Result<TorrentHandle, SessionError> {
        self.add_torrent_with(metainfo, output_dir, AddTorrentOptions::default())
            .await
    }

    /// Adds a torrent as [`Session::add_torrent`] does, with `options` saying whether to seed after the
    /// download and what to make of data already in `output_dir`. The metainfo is taken by value or as
    /// an `Arc` (a caller that keeps it, such as a daemon restarting torrents, shares it uncopied).
    ///
    /// Errors: the torrent is already added; its files cannot be created, or with
    /// [`ExistingData::Complete`](crate::ExistingData::Complete) are missing or have the wrong length ([`SessionError::Storage`]).
    pub async fn add_torrent_with(
        &self,
        metainfo: impl Into<Arc<Metainfo>>,
        output_dir: &Path,
        options: AddTorrentOptions,
    ) -> Result<TorrentHandle, SessionError> {
        let metainfo: Arc<Metainfo> = metainfo.into();
        let info_hash = metainfo.info_hash;
        // Both of a hybrid's hashes (BEP 52): a peer may connect with either.
        let hashes = metainfo.wire_hashes();
        let files = metainfo.info.files.len();
        let given = options.file_priorities.len();
        if given != 0 && given != files {
            return Err(PriorityCountError { given, files }.into());
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        if !self.shared.register(&hashes, cmd_tx.clone()) {
            return Err(SessionError::Duplicate(info_hash));
        }
        let limits = TorrentLimits::new(options.max_upload_rate, options.max_download_rate);
        let opened = TorrentTask::open(
            Arc::clone(&self.shared),
            self.tracker.clone(),
            metainfo,
            output_dir,
            options,
            cmd_rx,
            limits.clone(),
        )
        .await;
        let (task, progress_rx) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                self.shared.unregister(&hashes);
                return Err(e);
            }
        };
        let reader_parts = crate::torrent::ReaderParts {
            metainfo: Arc::clone(&task.metainfo),
            storage: Arc::clone(&task.storage),
            wishes: Arc::clone(&task.wishes),
            have: task.have_tx.subscribe(),
        };
        let shared = Arc::clone(&self.shared);
        // BEP 27: a private torrent finds peers through its trackers only.
        let lsd = match &self.lsd {
            Some(lsd) if !task.metainfo.info.private => Some(lsd.commands()),
            _ => None,
        };
        if let Some(lsd) = lsd.clone() {
            // Announced once it can serve: a peer that dials during the check is turned away and
            // backs off. The LSD task drops it again if it ends in the meantime.
            let mut progress = progress_rx.clone();
            tokio::spawn(async move {
                let serving = |p: &Progress| {
                    matches!(p.state, TorrentState::Downloading | TorrentState::Seeding)
                };
                if progress.wait_for(serving).await.is_ok() {
                    for hash in hashes {
                        crate::lsd::tell(&lsd, LsdCommand::Add(hash));
                    }
                }
            });
        }
        let hashes = task.metainfo.wire_hashes();
        let task = tokio::spawn(async move {
            let result = crate::torrent::run(task).await;
            shared.unregister(&hashes);
            if let Some(lsd) = &lsd {
                for hash in &hashes {
                    crate::lsd::tell(lsd, LsdCommand::Remove(*hash));
                }
            }
            result
        });
        Ok(TorrentHandle::new(
            info_hash,
            progress_rx,
            cmd_tx,
            task,
            limits,
            reader_parts,
        ))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for listener in &self.listener {
            listener.abort();
        }
        if let Some(mapping) = &self.port_mapping {
            mapping.stop();
        }
    }
}

/// Binds the TCP listeners: at `bind_ip` alone if set, else dual-stack: `0.0.0.0:port`, then
/// `[::]` on the same port, IPv6 only (two sockets, so the behaviour does not hang on the
/// `net.ipv6.bindv6only` sysctl). A system without IPv6 gets the IPv4 listener alone, with a
/// warning. The first listener's address is the primary one.
fn bind_listeners(
    bind_ip: Option<IpAddr>,
    port: u16,
) -> Result<Vec<(TcpListener, SocketAddr)>, SessionError> {
    let bind = |addr: SocketAddr| {
        let listener = bind_listener(addr)?;
        let local = listener.local_addr()?;
        Ok::<_, std::io::Error>((listener, local))
    };
    let first = SocketAddr::new(bind_ip.unwrap_or(Ipv4Addr::UNSPECIFIED.into()), port);
    let first = bind(first).map_err(|error| SessionError::Listen { addr: first, error })?;
    let mut listeners = vec![first];
    if bind_ip.is_none() {
        let addr = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), listeners[0].1.port());
        match bind(addr) {
            Ok(second) => listeners.push(second),
            Err(e) => tracing::warn!(%addr, "no IPv6 listener (peers over IPv4 only): {e}"),
        }
    }
    Ok(listeners)
}

fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    TcpListener::from_std(socket.into())
}

async fn accept_loop(listener: TcpListener, shared: Arc<SessionShared>) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and similar: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // uTP only: close at once, as libtorrent does, so the peer tries uTP.
        if !shared.config.transport.tcp() {
            continue;
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(route_incoming(
            PeerStream::tcp(stream),
            addr,
            Arc::clone(&shared),
        ));
    }
}

/// Routes the uTP connections peers open (the UDP socket's task accepted them) as the TCP
/// listener routes its own.
async fn accept_utp(mut incoming: mpsc::Receiver<UtpStream>, shared: Arc<SessionShared>) {
    while let Some(stream) = incoming.recv().await {
        let addr = stream.peer;
        tokio::spawn(route_incoming(
            PeerStream::utp(stream),
            addr,
            Arc::clone(&shared),
        ));
    }
}

/// Reads an incoming connection's handshake, in plaintext or behind MSE as the session's
/// encryption policy allows, and hands it to the torrent it names.
async fn route_incoming(stream: PeerStream, addr: SocketAddr, shared: Arc<SessionShared>) {
    let lookup = |req2: &[u8; 20]| shared.torrent_by_req2(req2);
    let accepted = crate::peer::accept_handshake(
        stream,
        shared.encryption_memory.policy(),
        lookup,
        shared.config.handshake_timeout,
        shared.clock,
    );
    let (stream, buf, handshake) = match accepted.await {
        Ok(accepted) => accepted,
        Err(e) => {
            tracing::debug!(%addr, "incoming connection dropped: {e}");
            return;
        }
    };
    if stream.utp {
        // A uTP peer dials from its listen port: dial it over uTP first later.
        shared.encryption_memory.record_utp(addr, true);
    }
    match shared.torrent(&handshake.info_hash) {
        Some(t) => {
            let incoming = Incoming {
                stream,
                buf,
                handshake,
                addr,
            };
            let _ = t.send(Command::Incoming(Box::new(incoming))).await;
        }
        None => {
            tracing::debug!(%addr, info_hash = %handshake.info_hash, "incoming connection for an unknown torrent")
        }
    }
}
