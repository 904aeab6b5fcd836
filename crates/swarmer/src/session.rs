//! The [`Session`]: one listening socket, one peer id and one tracker client shared by many torrents,
//! each run by its own owner task. Incoming connections are routed to their torrent by the info hash in
//! their handshake (BEP 3, "handshake").

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use swarmer_proto::magnet::Magnet;
use swarmer_proto::metainfo::Metainfo;
use swarmer_proto::priority::PriorityCountError;
use swarmer_proto::torrent::Config as EngineConfig;
use swarmer_proto::{FilePriority, InfoHash, PeerId};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::dht::{DhtConfig, DhtHandle};
use crate::lsd::{Lsd, LsdCommand};
use crate::magnet::MetadataFetchHandle;
use crate::rate::{RateLimiter, TorrentLimits};
use crate::resume;
use crate::space;
use crate::storage::{Storage, StorageError, StorageOptions, parts_file_name};
use crate::torrent::{
    AddTorrentOptions, Command, ExistingData, Progress, TorrentError, TorrentState, TorrentTask,
};
use crate::tracker::{AnnounceError, TrackerClient, TrackerClientConfig};

/// Settings of a [`Session`].
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The local address for the listener, outgoing peer connections and tracker requests; `None` lets
    /// the system choose. Trackers record the source address of an announce, so on a machine with
    /// several addresses this decides under which one peers will find us.
    pub bind_ip: Option<IpAddr>,
    /// TCP port to listen on for peers (0: any free port).
    pub listen_port: u16,
    /// Most connections per torrent (BEP 3 leaves this to the client; 80 by default).
    pub max_peers_per_torrent: usize,
    /// Most connection attempts in progress at once per torrent.
    pub max_half_open: usize,
    /// Time allowed for a TCP connect.
    pub connect_timeout: Duration,
    /// Time allowed for the peer's handshake after connecting.
    pub handshake_timeout: Duration,
    /// Tracker client settings.
    pub tracker: TrackerClientConfig,
    /// Download engine settings.
    pub engine: EngineConfig,
    /// `numwant` sent to trackers.
    pub num_want: u32,
    /// Most payload and message bytes per second sent to all peers together; `None`: no limit.
    pub max_upload_rate: Option<u64>,
    /// Most bytes per second read from all peers together; `None`: no limit.
    pub max_download_rate: Option<u64>,
    /// Local Service Discovery (BEP 14): multicast announces of the non-private torrents to
    /// `239.192.152.143:6771` every 5 minutes from the bind address, and connect to peers announcing
    /// the same torrents there. Off by default: it sends packets to the local network.
    pub lsd: bool,
    /// The DHT (BEP 5) on the listen port (UDP), for finding peers of non-private torrents without a
    /// tracker; `None` (the default): off.
    pub dht: Option<DhtConfig>,
    /// Exchange peers with connected peers (BEP 11 PEX; never for private torrents). On by default:
    /// it only talks to peers we are connected to anyway. Overrides `engine.pex`.
    pub pex: bool,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            bind_ip: None,
            listen_port: 6881,
            max_peers_per_torrent: 80,
            max_half_open: 20,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            tracker: TrackerClientConfig::default(),
            engine: EngineConfig::default(),
            num_want: 80,
            max_upload_rate: None,
            max_download_rate: None,
            lsd: false,
            dht: None,
            pex: true,
        }
    }
}

/// Why a session could not start or take a torrent.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address tried.
        addr: SocketAddr,
        /// The system's error (shown in the message, so not a `source`).
        error: std::io::Error,
    },
    /// The DHT's UDP socket could not be bound.
    #[error("cannot start the DHT on {addr}: {error}")]
    Dht {
        /// The address tried.
        addr: SocketAddr,
        /// The system's error (shown in the message, so not a `source`).
        error: std::io::Error,
    },
    /// The tracker client could not be built.
    #[error("cannot set up the tracker client")]
    Tracker(#[source] AnnounceError),
    /// The torrent is already in the session.
    #[error("torrent {0} is already added")]
    Duplicate(InfoHash),
    /// The torrent's files could not be created or opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The filesystem under the output directory cannot hold the rest of the torrent.
    #[error(transparent)]
    NotEnoughSpace(#[from] crate::NotEnoughSpace),
    /// [`AddTorrentOptions::file_priorities`] is neither empty nor one per file.
    #[error(transparent)]
    FilePriorities(#[from] PriorityCountError),
}

pub(crate) struct SessionShared {
    pub(crate) peer_id: PeerId,
    pub(crate) config: SessionConfig,
    pub(crate) listen_addr: SocketAddr,
    /// Shared by every connection of every torrent, so the limits hold for the whole session; each
    /// may be unlimited, and [`Session::set_rate_limits`] changes them.
    pub(crate) upload_limit: Arc<RateLimiter>,
    pub(crate) download_limit: Arc<RateLimiter>,
    torrents: Mutex<HashMap<InfoHash, mpsc::Sender<Command>>>,
    /// The session's DHT node, if [`SessionConfig::dht`] is set.
    pub(crate) dht: Option<DhtHandle>,
}

impl SessionShared {
    /// The command queue of the torrent with `info_hash`, if the session has it.
    pub(crate) fn torrent(&self, info_hash: &InfoHash) -> Option<mpsc::Sender<Command>> {
        let torrents = self.torrents.lock().expect("lock poisoned");
        torrents.get(info_hash).cloned()
    }
}

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
    listener: JoinHandle<()>,
    /// The Local Service Discovery task, if [`SessionConfig::lsd`] is set and it could start.
    lsd: Option<Lsd>,
}

impl Session {
    /// Starts a session: generates a peer id (`-SW0100-` and 12 random bytes) and binds the listener.
    ///
    /// Errors: the port is taken or the bind address is not local ([`SessionError::Listen`]).
    pub async fn new(config: SessionConfig) -> Result<Session, SessionError> {
        let ip = config.bind_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let addr = SocketAddr::new(ip, config.listen_port);
        let listener = bind_listener(addr).map_err(|error| SessionError::Listen { addr, error })?;
        let listen_addr = listener
            .local_addr()
            .map_err(|error| SessionError::Listen { addr, error })?;
        tracing::info!(%listen_addr, "listening for peers");
        let mut tracker_config = config.tracker.clone();
        tracker_config.bind = config.bind_ip;
        let tracker = TrackerClient::new(tracker_config).map_err(SessionError::Tracker)?;
        let dht = match &config.dht {
            Some(dht_config) => {
                // The same address and port as the TCP listener (BEP 5 leaves the port to us;
                // users expect one).
                let addr = listen_addr;
                let handle = crate::dht::start(dht_config, addr)
                    .await
                    .map_err(|error| SessionError::Dht { addr, error })?;
                Some(handle)
            }
            None => None,
        };
        let shared = Arc::new(SessionShared {
            peer_id: PeerId::generate(&mut rand::thread_rng()),
            upload_limit: RateLimiter::shared(config.max_upload_rate),
            download_limit: RateLimiter::shared(config.max_download_rate),
            config,
            listen_addr,
            torrents: Mutex::new(HashMap::new()),
            dht,
        });
        let listener = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
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
        })
    }

    /// The address peers can reach us at (the port is the real one when 0 was asked for).
    pub fn listen_addr(&self) -> SocketAddr {
        self.shared.listen_addr
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
    /// [`ExistingData::Complete`] are missing or have the wrong length ([`SessionError::Storage`]).
    pub async fn add_torrent_with(
        &self,
        metainfo: impl Into<Arc<Metainfo>>,
        output_dir: &Path,
        mut options: AddTorrentOptions,
    ) -> Result<TorrentHandle, SessionError> {
        let metainfo: Arc<Metainfo> = metainfo.into();
        let info_hash = metainfo.info_hash;
        let files = metainfo.info.files.len();
        let given = options.file_priorities.len();
        if given != 0 && given != files {
            return Err(PriorityCountError { given, files }.into());
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        {
            let mut torrents = self.shared.torrents.lock().expect("lock poisoned");
            if torrents.contains_key(&info_hash) {
                return Err(SessionError::Duplicate(info_hash));
            }
            torrents.insert(info_hash, cmd_tx.clone());
        }
        let limits = TorrentLimits::new(options.max_upload_rate, options.max_download_rate);
        // The files are `stat`ed once, before the storage creates any: that says whether there is data
        // to check, what the resume state is compared with, and how much space is still needed. The
        // resume state is read first too: it may hold the file priorities to create the files by.
        let opened = {
            let (root, m) = (output_dir.to_path_buf(), Arc::clone(&metainfo));
            let (existing, resume_store) = (options.existing, options.resume.clone());
            let mut priorities = options.file_priorities.clone();
            tokio::task::spawn_blocking(move || {
                let parts = root.join(parts_file_name(&m.info_hash));
                let stats = resume::stat_files(&root, &m.info);
                let had_data = stats.iter().any(Option::is_some);
                let resumed = resume_store.and_then(|store| {
                    let stamps: Vec<_> = stats
                        .iter()
                        .map(|s| s.as_ref().map(resume::stamp_of))
                        .collect();
                    resume::load(
                        &*store,
                        m.info_hash,
                        &m.info,
                        &stamps,
                        resume::stamp(&parts),
                    )
                    .inspect_err(|e| tracing::warn!("ignoring fast-resume state: {e}"))
                    .ok()
                    .flatten()
                });
                if let Some(saved) = resumed.as_ref().map(|r| &r.state.priorities) {
                    if priorities.is_empty() && !saved.is_empty() {
                        tracing::info!("using the file priorities saved in the resume state");
                        priorities = saved.clone();
                    }
                }
                let storage_options = StorageOptions {
                    priorities: priorities.clone(),
                    parts_file: Some(parts),
                    ..StorageOptions::default()
                };
                let storage = match existing {
                    ExistingData::Complete => {
                        Storage::open_existing_with(&root, &m.info, &storage_options)?
                    }
                    ExistingData::Ignore | ExistingData::Check => {
                        let wanted = |i: usize| priorities.get(i).is_none_or(|p| p.is_wanted());
                        let needed = space::bytes_needed(&m.info, &stats, wanted);
                        space::check_free_space(&root, needed)?;
                        Storage::create_with(&root, &m.info, &storage_options)?
                    }
                };
                Ok::<_, SessionError>((storage, resumed, priorities, had_data))
            })
            .await
            .expect("storage creation panicked")
        };
        let storage = opened.map(|(storage, resumed, priorities, had_data)| {
            options.file_priorities = priorities;
            (storage, resumed, had_data)
        });
        let (storage, resumed, had_data) = match storage {
            Ok((s, resumed, had_data)) => (Arc::new(s), resumed, had_data),
            Err(e) => {
                self.shared
                    .torrents
                    .lock()
                    .expect("lock poisoned")
                    .remove(&info_hash);
                return Err(e);
            }
        };
        let state = match options.existing {
            ExistingData::Ignore => TorrentState::Downloading,
            ExistingData::Check | ExistingData::Complete => TorrentState::Checking,
        };
        let (progress_tx, progress_rx) = watch::channel(Progress {
            state,
            total_bytes: metainfo.info.layout.total_length(),
            wanted_bytes: metainfo.info.layout.total_length(),
            left_bytes: metainfo.info.layout.total_length(),
            verified_bytes: 0,
            downloaded_bytes: 0,
            wasted_bytes: 0,
            uploaded_bytes: 0,
            download_rate: 0,
            upload_rate: 0,
            peers: 0,
            pieces_have: 0,
            piece_count: metainfo.info.layout.piece_count(),
            hash_failures: 0,
            checked_pieces: 0,
            pieces_to_check: 0,
        });
        let task = TorrentTask {
            shared: Arc::clone(&self.shared),
            tracker: self.tracker.clone(),
            metainfo,
            storage,
            root: output_dir.to_path_buf(),
            had_data,
            resumed,
            options,
            write_lock: Default::default(),
            progress_tx,
            commands: cmd_rx,
            early_peers: Vec::new(),
            limits: limits.clone(),
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
                    crate::lsd::tell(&lsd, LsdCommand::Add(info_hash));
                }
            });
        }
        let task = tokio::spawn(async move {
            let result = task.run().await;
            shared
                .torrents
                .lock()
                .expect("lock poisoned")
                .remove(&info_hash);
            if let Some(lsd) = &lsd {
                crate::lsd::tell(lsd, LsdCommand::Remove(info_hash));
            }
            result
        });
        Ok(TorrentHandle {
            info_hash,
            progress: progress_rx,
            commands: cmd_tx,
            task: Some(task),
            limits,
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

async fn accept_loop(listener: TcpListener, shared: Arc<SessionShared>) {
    loop {
        let (mut stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and similar: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let mut buf = BytesMut::with_capacity(4096);
            let timeout = shared.config.handshake_timeout;
            let handshake =
                match crate::peer::read_any_handshake(&mut stream, &mut buf, timeout).await {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::debug!(%addr, "incoming connection dropped: {e}");
                        return;
                    }
                };
            let torrent = shared
                .torrents
                .lock()
                .expect("lock poisoned")
                .get(&handshake.info_hash)
                .cloned();
            match torrent {
                Some(t) => {
                    let _ = t
                        .send(Command::Incoming {
                            stream,
                            buf,
                            handshake,
                            addr,
                        })
                        .await;
                }
                None => {
                    tracing::debug!(%addr, info_hash = %handshake.info_hash, "incoming connection for an unknown torrent")
                }
            }
        });
    }
}

/// A torrent in a [`Session`].
pub struct TorrentHandle {
    info_hash: InfoHash,
    progress: watch::Receiver<Progress>,
    commands: mpsc::Sender<Command>,
    task: Option<JoinHandle<Result<(), TorrentError>>>,
    /// The torrent's own rate limits, shared with its connections.
    limits: TorrentLimits,
}

impl TorrentHandle {
    /// The torrent's info hash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// A receiver of progress snapshots: `changed().await` wakes on every change.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Changes this torrent's own limits, in bytes per second, on what its connections send
    /// (`upload`) and read (`download`); `None` lifts a limit and `Some(0)` is taken as 1. The
    /// session's limits ([`Session::set_rate_limits`]) still apply on top. It takes effect at once,
    /// for open connections too, and needs no round trip to the torrent's task.
    pub fn set_rate_limits(&self, upload: Option<u64>, download: Option<u64>) {
        self.limits.upload.set_rate(upload);
        self.limits.download.set_rate(download);
    }

    /// This torrent's own `(upload, download)` limits in bytes per second; `None` is no limit.
    /// They start as [`AddTorrentOptions::max_upload_rate`] and
    /// [`AddTorrentOptions::max_download_rate`].
    pub fn rate_limits(&self) -> (Option<u64>, Option<u64>) {
        (self.limits.upload.rate(), self.limits.download.rate())
    }

    /// Adds peer addresses to dial, as if a tracker had returned them (for example from a magnet link's
    /// `x.pe`, or a user's list). Addresses beyond the torrent's bound of known peers are ignored.
    pub async fn add_peers(&self, peers: Vec<SocketAddr>) {
        let _ = self.commands.send(Command::AddPeers(peers)).await;
    }

    /// Changes the file priorities (one per file of `info.files`, as
    /// [`AddTorrentOptions::file_priorities`]; empty wants every file). Files that become wanted are
    /// created at once; skipped files stay on disk if they were there. A torrent that was complete
    /// downloads again if it now wants more.
    ///
    /// Errors: [`TorrentError::FilePriorities`] for a wrong count; [`TorrentError::Storage`] if a file
    /// cannot be created (the torrent fails); [`TorrentError::TaskGone`] if the torrent has ended.
    pub async fn set_file_priorities(
        &self,
        priorities: Vec<FilePriority>,
    ) -> Result<(), TorrentError> {
        let (done_tx, done_rx) = oneshot::channel();
        self.commands
            .send(Command::SetFilePriorities(priorities, done_tx))
            .await
            .map_err(|_| TorrentError::TaskGone)?;
        done_rx.await.map_err(|_| TorrentError::TaskGone)?
    }

    /// Waits until every wanted piece is verified and flushed to disk (the torrent may go on seeding).
    ///
    /// Errors: the torrent failed with a local error (disk full, permission denied, existing data
    /// that does not match).
    pub async fn wait_complete(&mut self) -> Result<(), TorrentError> {
        self.wait_for(|state| matches!(state, TorrentState::Seeding | TorrentState::Complete))
            .await
    }

    /// Waits until the torrent has nothing more to do: complete and, if it was seeding, a
    /// [`SeedLimits`](crate::SeedLimits) reached. Without limits a seeding torrent never finishes by
    /// itself; stop it with [`TorrentHandle::stop`].
    ///
    /// Errors: as [`TorrentHandle::wait_complete`].
    pub async fn wait_finished(&mut self) -> Result<(), TorrentError> {
        self.wait_for(|state| matches!(state, TorrentState::Complete))
            .await
    }

    async fn wait_for(&mut self, done: impl Fn(&TorrentState) -> bool) -> Result<(), TorrentError> {
        let mut progress = self.progress.clone();
        loop {
            let state = progress.borrow_and_update().state.clone();
            if done(&state) {
                return Ok(());
            }
            if matches!(state, TorrentState::Failed(_) | TorrentState::Stopped) {
                return self.join().await;
            }
            if progress.changed().await.is_err() {
                return self.join().await;
            }
        }
    }

    /// Stops the torrent: closes connections, finishes pieces being verified, flushes files and
    /// announces `stopped` to the trackers (bounded by the tracker client's timeouts).
    pub async fn stop(mut self) -> Result<(), TorrentError> {
        let (done_tx, done_rx) = oneshot::channel();
        if self.commands.send(Command::Stop(done_tx)).await.is_ok() {
            let _ = done_rx.await;
        }
        self.join().await
    }

    async fn join(&mut self) -> Result<(), TorrentError> {
        match self.task.take() {
            Some(task) => task.await.map_err(|_| TorrentError::TaskGone)?,
            None => Ok(()),
        }
    }
}
