//! The owner task of one torrent: the only place its state lives. It checks existing data if asked,
//! then feeds the sans-IO engine (`swarmer_proto::torrent`) with frames from connection tasks,
//! verification results, "block sent" reports, tracker peers and the clock, and carries out the engine's
//! actions. Hashing and disk writes run on the blocking pool; connection tasks read uploaded blocks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use swarmer_proto::metainfo::Metainfo;
use swarmer_proto::priority::{PriorityCountError, piece_priorities};
use swarmer_proto::torrent::{
    Action, Config as EngineConfig, Event, PeerInfo, PeerKey, Requested, Torrent,
};
use swarmer_proto::wire::{Handshake, Message};
use swarmer_proto::{Bitfield, FilePriority, PieceIndex, digest};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::check::{Resumed, hash_pieces, hashing_threads};
use crate::dht::TorrentDht;
use crate::peer::{self, ConnContext, ConnError, ConnEvent, ConnId, Outbound};
use crate::peer_book::PeerBook;
use crate::rate::TorrentLimits;
use crate::resume::{self, Loaded, ResumeState, ResumeStore};
use crate::session::SessionShared;
use crate::sources::PeerSources;
use crate::storage::{Storage, StorageError, parts_file_name};
use crate::tracker::{AnnouncerConfig, TrackerClient, TransferStats, spawn_announcer};

/// What to do with data already in the output directory when a torrent is added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExistingData {
    /// Create missing files and download every piece, whatever the files hold.
    #[default]
    Ignore,
    /// Hash the pieces already on disk (on all cores) and download only those that do not match.
    Check,
    /// Seed data we have: every file must exist with its length (nothing is created; files are opened
    /// read-only) and every piece must match, or the torrent fails with [`TorrentError::Incomplete`].
    Complete,
}

/// When to stop seeding. With both limits the first one reached ends it; with neither, seeding goes
/// on until the torrent is stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SeedLimits {
    /// Stop once the bytes uploaded since the torrent was added reach this multiple of its size.
    pub ratio: Option<f64>,
    /// Stop after seeding this long (measured from when the last piece was verified, or the check
    /// finished).
    pub time: Option<Duration>,
}

/// How a torrent is added to a session.
#[derive(Debug, Clone, Default)]
pub struct AddTorrentOptions {
    /// Keep uploading to peers after every piece is verified, until a limit is reached (BEP 3
    /// "seeder"); `None` stops serving peers once the download is complete.
    pub seed: Option<SeedLimits>,
    /// What to do with data already in the output directory.
    pub existing: ExistingData,
    /// Where to keep fast-resume state (for example a [`crate::resume::ResumeFile`] at
    /// [`crate::resume::default_path`]): read when the torrent starts, so pieces it vouches for in
    /// unchanged files need no hashing, and saved every 30 s, right after a check, when the download
    /// completes and when the torrent stops (after the data files were flushed). A state that cannot
    /// be read is logged and ignored (the data is checked instead). `None` keeps no state.
    pub resume: Option<Arc<dyn ResumeStore>>,
    /// One priority per file of `info.files`, in that order (padding files included, their entry is
    /// ignored); empty means every file is [`FilePriority::Normal`]. Skipped files are not created;
    /// pieces they share with wanted files are kept in `DIR/.swarmer-<info-hash>.parts` (see
    /// [`crate::storage`]). With [`ExistingData::Complete`] only the wanted pieces are checked and
    /// served.
    pub file_priorities: Vec<FilePriority>,
    /// Most bytes per second this torrent's connections send (payload and messages); `None`: no
    /// limit of its own (the session's [`crate::SessionConfig::max_upload_rate`] applies to all
    /// torrents together either way). [`crate::TorrentHandle::set_rate_limits`] changes it.
    pub max_upload_rate: Option<u64>,
    /// Most bytes per second this torrent's connections read; `None`: no limit of its own (the
    /// session's [`crate::SessionConfig::max_download_rate`] still applies).
    pub max_download_rate: Option<u64>,
}

/// Where a torrent is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentState {
    /// Hashing the data already on disk ([`ExistingData::Check`] and [`ExistingData::Complete`]);
    /// [`Progress::checked_pieces`] counts up.
    Checking,
    /// Downloading pieces.
    Downloading,
    /// Every wanted piece (all of them without a file selection) is verified and on disk, and we
    /// upload the pieces we have to peers (until a [`SeedLimits`] is reached or the torrent is
    /// stopped).
    Seeding,
    /// Every wanted piece is verified and flushed to disk, and we no longer serve peers.
    Complete,
    /// Stopped by a local error (disk full, permission); the message says which file and what failed.
    Failed(String),
    /// Stopped on request.
    Stopped,
}

/// A snapshot of a torrent's progress, published on every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The torrent's state.
    pub state: TorrentState,
    /// Total content size in bytes (padding files included).
    pub total_bytes: u64,
    /// Bytes of the pieces that hold wanted files (the selection, in whole pieces): `total_bytes`
    /// without a file selection. Progress of the selection is `wanted_bytes - left_bytes`.
    pub wanted_bytes: u64,
    /// Bytes of wanted pieces not verified yet.
    pub left_bytes: u64,
    /// Bytes in verified pieces.
    pub verified_bytes: u64,
    /// Payload bytes received from peers, including discarded ones.
    pub downloaded_bytes: u64,
    /// Payload bytes received that were discarded (duplicates or failed pieces).
    pub wasted_bytes: u64,
    /// Payload bytes sent to peers.
    pub uploaded_bytes: u64,
    /// Download rate over the last second, bytes/s.
    pub download_rate: u64,
    /// Upload rate over the last second, bytes/s.
    pub upload_rate: u64,
    /// Connected peers (handshake done).
    pub peers: usize,
    /// Verified pieces.
    pub pieces_have: u32,
    /// Pieces in the torrent.
    pub piece_count: u32,
    /// Pieces that failed their hash check so far.
    pub hash_failures: u32,
    /// Pieces hashed so far while [`TorrentState::Checking`].
    pub checked_pieces: u32,
    /// Pieces to hash while [`TorrentState::Checking`]: all of them without fast-resume state, only
    /// those touching changed files with it.
    pub pieces_to_check: u32,
}

impl Progress {
    /// Bytes of the selection verified so far: `wanted_bytes - left_bytes` (all verified bytes
    /// without a file selection).
    pub fn wanted_done_bytes(&self) -> u64 {
        self.wanted_bytes.saturating_sub(self.left_bytes)
    }

    /// Every wanted piece is verified and on disk ([`TorrentState::Seeding`] or
    /// [`TorrentState::Complete`]).
    pub fn is_done(&self) -> bool {
        matches!(self.state, TorrentState::Seeding | TorrentState::Complete)
    }
}

/// A failure that stops a torrent: local problems only (peer problems never fail a torrent).
#[derive(Debug, thiserror::Error)]
pub enum TorrentError {
    /// Reading or writing the torrent's files failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// File priorities that are not one per file of the torrent.
    #[error(transparent)]
    FilePriorities(#[from] PriorityCountError),
    /// The torrent's task ended unexpectedly (a bug: it panicked).
    #[error("torrent task ended unexpectedly")]
    TaskGone,
    /// [`ExistingData::Complete`]: some pieces on disk do not match the torrent.
    #[error("{bad} of {total} pieces do not match the torrent (the first is piece {first}, in {})", file.display())]
    Incomplete {
        /// Pieces that failed their hash check.
        bad: u32,
        /// Pieces in the torrent.
        total: u32,
        /// The first bad piece's index.
        first: u32,
        /// The file (relative to the output directory) holding the first bad piece's first byte.
        file: PathBuf,
    },
}

pub(crate) enum Command {
    Incoming {
        stream: TcpStream,
        buf: BytesMut,
        handshake: Handshake,
        addr: SocketAddr,
    },
    AddPeers(Vec<SocketAddr>),
    SetFilePriorities(Vec<FilePriority>, oneshot::Sender<Result<(), TorrentError>>),
    Stop(oneshot::Sender<()>),
}

/// Capacity of the per-connection queue of outgoing byte batches; a peer that lets it fill up is not
/// reading and is disconnected.
const CONN_QUEUE: usize = 256;
/// Capacity of the queue of events from all connections to the owner task. An event carries at most one
/// socket read (64 KiB), so this bounds buffered input at 2 MiB per torrent; a full queue stops the
/// connection tasks from reading, which pushes back on the peers through TCP.
const EVENT_QUEUE: usize = 32;
/// How often the owner looks for new peers to dial.
const CONNECT_INTERVAL: Duration = Duration::from_secs(1);
/// How often fast-resume state is saved while the torrent runs.
const RESUME_INTERVAL: Duration = Duration::from_secs(30);

struct Conn {
    addr: SocketAddr,
    key: Option<PeerKey>,
    commands: mpsc::Sender<Outbound>,
    outgoing: bool,
}

pub(crate) struct TorrentTask {
    pub(crate) shared: Arc<SessionShared>,
    pub(crate) tracker: TrackerClient,
    pub(crate) metainfo: Arc<Metainfo>,
    pub(crate) storage: Arc<Storage>,
    /// The output directory the files are under.
    pub(crate) root: PathBuf,
    /// Some file of the torrent existed before the storage was created, so there may be data to check.
    pub(crate) had_data: bool,
    /// The fast-resume state read before the storage was created, if there was a usable one.
    pub(crate) resumed: Option<Loaded>,
    pub(crate) options: AddTorrentOptions,
    /// Held while writing a verified piece. Hashing runs in parallel; writes to one torrent's files go one
    /// at a time, because concurrent writers to a file only contend on its inode lock in the kernel
    /// (measured: ~8 % of CPU spent spinning on it with parallel writes).
    pub(crate) write_lock: Arc<std::sync::Mutex<()>>,
    pub(crate) progress_tx: watch::Sender<Progress>,
    pub(crate) commands: mpsc::Receiver<Command>,
    /// Peers added while the data was being checked, dialled once the torrent starts (at most
    /// [`crate::peer_book::MAX_KNOWN`]).
    pub(crate) early_peers: Vec<SocketAddr>,
    /// The torrent's own rate limits, shared with its handle.
    pub(crate) limits: TorrentLimits,
}

struct Running {
    t: TorrentTask,
    engine: Torrent,
    /// Trackers and the DHT.
    sources: PeerSources,
    stats_tx: watch::Sender<TransferStats>,
    ctx: ConnContext,
    events_rx: mpsc::Receiver<ConnEvent>,
    conns: HashMap<ConnId, Conn>,
    by_key: HashMap<PeerKey, ConnId>,
    next_conn: ConnId,
    book: PeerBook,
    verify: JoinSet<(PieceIndex, Result<bool, StorageError>, Vec<u8>)>,
    /// Pieces waiting for a verification slot; at most `verify_slots` run at once, so hashing never has
    /// more threads than there are cores to run them.
    verify_queue: VecDeque<(PieceIndex, Vec<u8>)>,
    verify_slots: usize,
    out: HashMap<ConnId, Vec<Pending>>,
    hash_failures: u32,
    announced_complete: bool,
    state: TorrentState,
    /// When seeding began, for [`SeedLimits::time`].
    seeding_since: Option<Instant>,
    /// A local error met by a connection task (reading a block to upload).
    failure: Option<StorageError>,
    /// Saves fast-resume state, if the torrent keeps one.
    resume: Option<ResumeSaver>,
    /// Established connections we closed whose tasks are still finishing (flushing, then waiting for
    /// the peer to close its side); each leaves when its `Closed` event arrives.
    closing: HashSet<ConnId>,
}

/// Saving a torrent's fast-resume state: one save at a time, on the blocking pool.
struct ResumeSaver {
    store: Arc<dyn ResumeStore>,
    /// Transfer totals of earlier runs, added to this run's.
    earlier: (u64, u64),
    next: Instant,
    saving: Option<tokio::task::JoinHandle<()>>,
    /// The state last handed to a save (without file stamps): an idle torrent is not saved again, so
    /// a daemon seeding thousands of them does not flush and commit each every 30 s for nothing.
    last_saved: Option<ResumeState>,
}

/// Output for one connection gathered while draining the engine, in order.
enum Pending {
    Bytes(Vec<u8>),
    Blocks(Vec<Requested>),
}

impl TorrentTask {
    pub(crate) async fn run(mut self) -> Result<(), TorrentError> {
        match self.check().await {
            Ok(Some((have, earlier))) => self.start(have, earlier).await,
            Ok(None) => {
                self.publish_state(TorrentState::Stopped);
                Ok(())
            }
            Err(e) => {
                self.publish_state(TorrentState::Failed(e.to_string()));
                Err(e)
            }
        }
    }

    fn publish_state(&self, state: TorrentState) {
        self.progress_tx.send_modify(|p| p.state = state);
    }

    /// The pieces already on disk, from the fast-resume state where it can vouch for them and by
    /// hashing as [`AddTorrentOptions::existing`] says; `None` if the torrent was stopped meanwhile.
    /// Also returns the transfer totals of earlier runs.
    async fn check(&mut self) -> Result<Option<(Bitfield, (u64, u64))>, TorrentError> {
        let layout = self.metainfo.info.layout.clone();
        let count = layout.piece_count();
        let existing = self.options.existing;
        let (mut have, mut to_hash, earlier) = match self.resumed.take() {
            Some(loaded) => {
                let storage = Arc::clone(&self.storage);
                let resumed = Resumed::new(&self.metainfo, &loaded, |f| storage.is_on_disk(f));
                tracing::info!(
                    pieces = resumed.have.count_ones(),
                    stale = resumed.stale.len(),
                    "resuming from saved state"
                );
                let to_hash = match existing {
                    // Seeding needs every piece: hash whatever the state cannot vouch for.
                    ExistingData::Complete => layout
                        .pieces()
                        .filter(|p| !resumed.have.get(p.as_usize()))
                        .collect(),
                    ExistingData::Check | ExistingData::Ignore => resumed.stale,
                };
                let earlier = (loaded.state.uploaded, loaded.state.downloaded);
                (resumed.have, to_hash, earlier)
            }
            None => {
                let check = match existing {
                    ExistingData::Ignore => false,
                    ExistingData::Check => self.had_data,
                    ExistingData::Complete => true,
                };
                let to_hash = if check {
                    layout.pieces().collect()
                } else {
                    Vec::new()
                };
                (Bitfield::new(count as usize), to_hash, (0, 0))
            }
        };
        // Only wanted pieces are checked (and, with `Complete`, required).
        let wanted = self.piece_priorities();
        to_hash.retain(|p| wanted[p.as_usize()].is_wanted());
        let vouched = have.iter_ones().filter_map(|p| layout.piece(p as u32));
        let vouched_bytes: u64 = vouched.map(|p| u64::from(layout.piece_len(p))).sum();
        self.progress_tx.send_modify(|p| {
            p.pieces_have = have.count_ones() as u32;
            p.verified_bytes = vouched_bytes;
        });
        if to_hash.is_empty() {
            return Ok(Some((have, earlier)));
        }
        self.progress_tx.send_modify(|p| {
            p.state = TorrentState::Checking;
            p.pieces_to_check = to_hash.len() as u32;
        });
        to_hash.sort_unstable();
        let total = to_hash.len();
        let bytes: u64 = to_hash
            .iter()
            .map(|&p| u64::from(layout.piece_len(p)))
            .sum();
        let started = Instant::now();
        let mut results = hash_pieces(
            Arc::clone(&self.storage),
            Arc::clone(&self.metainfo),
            std::mem::take(&mut to_hash),
            hashing_threads(),
        );
        let mut checked = 0;
        let mut bad = Vec::new();
        while checked < total {
            let (piece, ok) = tokio::select! {
                result = results.recv() => result.ok_or(TorrentError::TaskGone)?,
                command = self.commands.recv() => match command {
                    Some(Command::Stop(done)) => {
                        let _ = done.send(());
                        return Ok(None);
                    }
                    None => return Ok(None),
                    // Connections are dropped while checking; added peers wait until it is over.
                    Some(Command::Incoming { .. }) => continue,
                    Some(Command::AddPeers(peers)) => {
                        let room = crate::peer_book::MAX_KNOWN.saturating_sub(self.early_peers.len());
                        self.early_peers.extend(peers.into_iter().take(room));
                        continue;
                    }
                    // Takes effect when the download starts; pieces being checked stay checked.
                    Some(Command::SetFilePriorities(priorities, done)) => {
                        let _ = done.send(self.store_priorities(priorities));
                        continue;
                    }
                },
            };
            checked += 1;
            if ok {
                have.set(piece.as_usize());
            } else {
                bad.push(piece);
            }
            let verified = u64::from(layout.piece_len(piece)) * u64::from(ok);
            self.progress_tx.send_modify(|p| {
                p.checked_pieces = checked as u32;
                p.pieces_have += u32::from(ok);
                p.verified_bytes += verified;
            });
        }
        let took = started.elapsed().as_secs_f64();
        tracing::info!(
            pieces = total,
            bad = bad.len(),
            "checked {} in {took:.2} s ({:.2} GiB/s)",
            crate::human_bytes(bytes),
            bytes as f64 / took.max(1e-9) / f64::from(1 << 30)
        );
        if existing == ExistingData::Complete && !bad.is_empty() {
            let first = *bad.iter().min().expect("not empty");
            let file = layout
                .piece_slices(first)
                .next()
                .map(|slice| {
                    self.metainfo.info.files[slice.file.as_usize()]
                        .path
                        .iter()
                        .collect()
                })
                .unwrap_or_default();
            return Err(TorrentError::Incomplete {
                bad: bad.len() as u32,
                total: count,
                first: first.get(),
                file,
            });
        }
        Ok(Some((have, earlier)))
    }

    /// Every piece's priority from [`AddTorrentOptions::file_priorities`] (checked to fit by the
    /// session and by [`TorrentTask::store_priorities`]).
    fn piece_priorities(&self) -> Vec<FilePriority> {
        let info = &self.metainfo.info;
        let padding: Vec<bool> = info.files.iter().map(|f| f.padding).collect();
        piece_priorities(&info.layout, &self.options.file_priorities, &padding)
            .unwrap_or_else(|_| vec![FilePriority::Normal; info.layout.piece_count() as usize])
    }

    /// Keeps new file priorities, after checking that there is one per file (or none).
    fn store_priorities(&mut self, priorities: Vec<FilePriority>) -> Result<(), TorrentError> {
        let files = self.metainfo.info.files.len();
        if !priorities.is_empty() && priorities.len() != files {
            return Err(PriorityCountError {
                given: priorities.len(),
                files,
            }
            .into());
        }
        self.options.file_priorities = priorities;
        Ok(())
    }

    /// Runs the torrent from the pieces in `have` until it is stopped or fails.
    async fn start(mut self, have: Bitfield, earlier: (u64, u64)) -> Result<(), TorrentError> {
        let shared = Arc::clone(&self.shared);
        let metainfo = Arc::clone(&self.metainfo);
        // A private torrent's metadata is never served and its peers never exchanged (BEP 27).
        let private = metainfo.info.private;
        let engine_config = EngineConfig {
            listen_port: Some(shared.listen_addr.port()),
            metadata: (!private).then(|| Arc::clone(&metainfo.info_bytes)),
            pex: shared.config.pex && !private,
            private,
            ..shared.config.engine.clone()
        };
        let mut engine = Torrent::new(
            metainfo.info.layout.clone(),
            metainfo.info_hash,
            have,
            engine_config,
            rand::random(),
        );
        if !self.options.file_priorities.is_empty() {
            engine.set_piece_priorities(&self.piece_priorities(), std::time::Instant::now());
        }
        let stats = engine.stats();
        let (stats_tx, stats_rx) = watch::channel(TransferStats {
            uploaded: 0,
            downloaded: 0,
            left: stats.left,
        });
        let announcer = spawn_announcer(
            self.tracker.clone(),
            AnnouncerConfig {
                tiers: metainfo.announce_tiers.clone(),
                info_hash: metainfo.info_hash,
                peer_id: shared.peer_id,
                port: shared.listen_addr.port(),
                num_want: shared.config.num_want,
            },
            stats_rx,
        );
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let piece_count = engine.layout().piece_count() as usize;
        let ctx = ConnContext::new(
            &shared,
            metainfo.info_hash,
            events_tx,
            // A block message, or a bitfield, or an extension message of up to 1 MiB, whichever is larger.
            (piece_count.div_ceil(8) as u32 + 1)
                .max(swarmer_proto::BLOCK_SIZE + 9)
                .max(1 << 20),
            Some(Arc::clone(&self.storage)),
            shared.dht.is_some() && !metainfo.info.private,
            &self.limits,
        );
        // BEP 27: a private torrent finds peers through its trackers only.
        let dht = shared
            .dht
            .clone()
            .filter(|_| !metainfo.info.private)
            .map(|h| TorrentDht::new(h, metainfo.info_hash, Some(shared.listen_addr.port())));
        let (state, seeding_since) = match (engine.is_finished(), self.options.seed.is_some()) {
            (false, _) => (TorrentState::Downloading, None),
            (true, true) => (TorrentState::Seeding, Some(Instant::now())),
            (true, false) => (TorrentState::Complete, None),
        };
        // After hashing, save at once: a restart then needs no hashing, even after a crash.
        let hashed = self.progress_tx.borrow().checked_pieces > 0;
        let resume = self.options.resume.clone().map(|store| ResumeSaver {
            store,
            earlier,
            next: Instant::now()
                + if hashed {
                    Duration::ZERO
                } else {
                    RESUME_INTERVAL
                },
            saving: None,
            last_saved: None,
        });
        // The listener's address is the bind address with our port: trackers hand us back to ourselves.
        let mut book = PeerBook::new(vec![shared.listen_addr]);
        book.add(std::mem::take(&mut self.early_peers));
        let mut r = Running {
            resume,
            book,
            t: self,
            engine,
            sources: PeerSources::new(announcer, dht),
            stats_tx,
            ctx,
            events_rx,
            conns: HashMap::new(),
            by_key: HashMap::new(),
            next_conn: 0,
            verify: JoinSet::new(),
            verify_queue: VecDeque::new(),
            verify_slots: hashing_threads(),
            out: HashMap::new(),
            hash_failures: 0,
            announced_complete: false,
            state,
            seeding_since,
            failure: None,
            closing: HashSet::new(),
        };
        r.run().await
    }
}

impl Running {
    async fn run(&mut self) -> Result<(), TorrentError> {
        let mut batch = Vec::with_capacity(64);
        let mut next_connect = Instant::now();
        self.publish();
        let result = loop {
            let mut wake = match self.engine.poll_timeout() {
                Some(t) => Instant::from_std(t).min(next_connect),
                None => next_connect,
            };
            if let Some(end) = self.seed_deadline() {
                wake = wake.min(end);
            }
            if let Some(saver) = &self.resume {
                wake = wake.min(saver.next);
            }
            if let Some(due) = self.sources.deadline() {
                wake = wake.min(due);
            }
            tokio::select! {
                n = self.events_rx.recv_many(&mut batch, 64) => {
                    debug_assert!(n > 0, "the owner holds a sender, so the channel never closes");
                    for event in batch.drain(..) {
                        self.on_conn_event(event);
                    }
                }
                Some(joined) = self.verify.join_next() => {
                    let (piece, result, buffer) = joined.expect("verification task panicked");
                    match result {
                        Ok(ok) => self.engine.handle_piece_verified(piece, ok, buffer, std::time::Instant::now()),
                        Err(e) => break Err(TorrentError::Storage(e)),
                    }
                }
                peers = self.sources.next() => {
                    self.book.add(peers);
                    self.connect_more();
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    self.engine.handle_timeout(now.into_std());
                    if now >= next_connect {
                        next_connect = now + CONNECT_INTERVAL;
                        self.connect_more();
                    }
                    if self.resume.as_ref().is_some_and(|s| now >= s.next) {
                        self.start_resume_save();
                    }
                    self.sources.poll(now);
                }
                command = self.t.commands.recv() => match command {
                    Some(Command::Incoming { stream, buf, handshake, addr }) => self.accept(stream, buf, handshake, addr),
                    Some(Command::AddPeers(peers)) => {
                        self.book.add(peers);
                        self.connect_more();
                    }
                    Some(Command::SetFilePriorities(priorities, done)) => {
                        let result = self.set_file_priorities(priorities).await;
                        let failed = match &result {
                            Err(TorrentError::Storage(e)) => Some(e.to_string()),
                            _ => None,
                        };
                        let _ = done.send(result);
                        if let Some(e) = failed {
                            self.state = TorrentState::Failed(e);
                            break Ok(());
                        }
                    }
                    Some(Command::Stop(done)) => {
                        if !matches!(self.state, TorrentState::Complete) {
                            self.state = TorrentState::Stopped;
                        }
                        let _ = done.send(());
                        break Ok(());
                    }
                    None => { self.state = TorrentState::Stopped; break Ok(()); }
                },
            }
            if let Some(e) = self.failure.take() {
                break Err(TorrentError::Storage(e));
            }
            self.drain_engine();
            if let Err(e) = self.finish_if_complete().await {
                break Err(e);
            }
            self.stop_seeding_if_done();
            self.publish();
        };
        if let Err(e) = &result {
            self.state = TorrentState::Failed(e.to_string());
        }
        self.shutdown().await;
        self.publish();
        result
    }

    fn on_conn_event(&mut self, event: ConnEvent) {
        let now = std::time::Instant::now();
        match event {
            ConnEvent::Handshaken { conn, handshake } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                if self.engine.is_banned(c.addr.ip()) {
                    self.close(conn, true);
                    return;
                }
                // We always offer both extensions, so each is in use exactly when the peer offers it.
                let info = PeerInfo {
                    addr: c.addr,
                    fast: handshake.supports_fast(),
                    extensions: handshake.supports_extensions(),
                    outgoing: c.outgoing,
                };
                tracing::debug!(addr = %c.addr, peer_id = ?handshake.peer_id, "peer connected");
                let key = self.engine.add_peer(info, now);
                c.key = Some(key);
                self.by_key.insert(key, conn);
                self.book.connected(c.addr);
            }
            ConnEvent::Frames { conn, frames } => {
                let Some(key) = self.conns.get(&conn).and_then(|c| c.key) else {
                    return;
                };
                for frame in frames {
                    match Message::decode(&frame, u32::MAX) {
                        Ok(Some((message, _))) => self.engine.handle_message(key, message, now),
                        Ok(None) => unreachable!("the connection task sends whole frames"),
                        Err(e) => {
                            tracing::debug!(addr = %self.conns[&conn].addr, "malformed message: {e}");
                            self.close(conn, true);
                            return;
                        }
                    }
                }
            }
            ConnEvent::Sent {
                conn,
                blocks,
                bytes,
            } => match self.conns.get(&conn).and_then(|c| c.key) {
                Some(key) => self.engine.handle_block_sent(key, blocks, bytes, now),
                None => self.engine.count_uploaded(bytes),
            },
            ConnEvent::Closed { conn, error } => {
                if let Some(c) = self.conns.get(&conn) {
                    match &error {
                        Some(e) => tracing::debug!(addr = %c.addr, "connection closed: {e}"),
                        None => tracing::debug!(addr = %c.addr, "connection closed by peer"),
                    }
                }
                let fault = error.as_ref().is_some_and(|e| e.is_peer_fault());
                if let Some(ConnError::Storage(e)) = error {
                    self.failure = Some(e);
                }
                self.close(conn, fault);
                self.closing.remove(&conn);
            }
        }
    }

    /// Forgets connection `conn` everywhere: the connection table, pending output, the engine (its
    /// requests go back to the picker) and the peer book (`fault`: it ended through the peer's fault).
    /// Dropping the command sender ends the connection's writer, and with it the connection.
    fn close(&mut self, conn: ConnId, fault: bool) {
        if let Some(c) = self.conns.remove(&conn) {
            self.out.remove(&conn);
            if let Some(key) = c.key {
                self.closing.insert(conn);
                self.by_key.remove(&key);
                self.engine.remove_peer(key);
            }
            self.book
                .disconnected(c.addr, c.key.is_some(), fault, c.outgoing);
        }
    }

    fn drain_engine(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Send { peer, message } => {
                    if let Some(conn) = self.by_key.get(&peer) {
                        let out = self.out.entry(*conn).or_default();
                        match out.last_mut() {
                            Some(Pending::Bytes(bytes)) => message.to_message().encode(bytes),
                            _ => {
                                let mut bytes = Vec::new();
                                message.to_message().encode(&mut bytes);
                                out.push(Pending::Bytes(bytes));
                            }
                        }
                    }
                }
                Action::Upload { peer, block } => {
                    if let Some(conn) = self.by_key.get(&peer) {
                        let out = self.out.entry(*conn).or_default();
                        match out.last_mut() {
                            Some(Pending::Blocks(blocks)) => blocks.push(block),
                            _ => out.push(Pending::Blocks(vec![block])),
                        }
                    }
                }
                Action::Disconnect { peer, fault } => {
                    if let Some(conn) = self.by_key.remove(&peer) {
                        if let Some(c) = self.conns.get(&conn) {
                            tracing::info!(addr = %c.addr, "disconnecting peer: {fault}");
                        }
                        // Useless peers (another seed while we seed) back off like faulty ones, so
                        // they are not redialled every 30 s and are forgotten after a few tries.
                        self.close(conn, true);
                    }
                }
                Action::VerifyPiece { piece, data } => self.verify_queue.push_back((piece, data)),
            }
        }
        while self.verify.len() < self.verify_slots {
            let Some((piece, data)) = self.verify_queue.pop_front() else {
                break;
            };
            self.spawn_verify(piece, data);
        }
        let out = std::mem::take(&mut self.out);
        for (conn, pending) in out {
            let Some(c) = self.conns.get(&conn) else {
                continue;
            };
            for item in pending {
                let item = match item {
                    Pending::Bytes(bytes) => Outbound::Bytes(Bytes::from(bytes)),
                    Pending::Blocks(blocks) => Outbound::Blocks(blocks),
                };
                if c.commands.try_send(item).is_err() {
                    // Full: the peer is not reading what we send. Closed: it is already going away.
                    tracing::debug!(addr = %c.addr, "send queue full, disconnecting");
                    self.close(conn, true);
                    break;
                }
            }
        }
        while let Some(event) = self.engine.poll_event() {
            match event {
                Event::PieceVerified(_) => {}
                Event::HashFailed { piece, peers } => {
                    self.hash_failures += 1;
                    tracing::warn!(
                        piece = piece.get(),
                        ?peers,
                        "piece failed its hash check; downloading it again"
                    );
                }
                Event::Banned(ip) => {
                    tracing::warn!(%ip, "banning peer after repeated bad data");
                    self.book.ban(ip);
                }
                Event::Finished | Event::Complete => {}
                Event::DhtPort(node) => self.sources.dht_node(node),
                Event::PeersDiscovered(peers) => {
                    tracing::debug!(?peers, "peers from peer exchange (PEX)");
                    self.book.add(peers);
                    self.connect_more();
                }
            }
        }
    }

    fn spawn_verify(&mut self, piece: PieceIndex, data: Vec<u8>) {
        let expected = *self.t.metainfo.info.piece_hash(piece);
        let storage = Arc::clone(&self.t.storage);
        let write_lock = Arc::clone(&self.t.write_lock);
        self.verify.spawn_blocking(move || {
            let ok = digest::sha1(&data) == expected;
            let result = if ok {
                let _writing = write_lock.lock().unwrap_or_else(|e| e.into_inner());
                storage.write(piece, 0, &data).map(|()| true)
            } else {
                Ok(false)
            };
            (piece, result, data)
        });
    }

    /// New file priorities at run time: files that become wanted are created (their pieces we
    /// already hold in the parts file copied in), then the engine re-plans. A torrent that was
    /// done and now wants more downloads again.
    async fn set_file_priorities(
        &mut self,
        priorities: Vec<FilePriority>,
    ) -> Result<(), TorrentError> {
        self.t.store_priorities(priorities)?;
        let pieces = self.t.piece_priorities();
        let info = &self.t.metainfo.info;
        let to_create: Vec<_> = info
            .layout
            .files()
            .filter(|f| {
                let i = f.as_usize();
                !info.files[i].padding
                    && self
                        .t
                        .options
                        .file_priorities
                        .get(i)
                        .is_none_or(|p| p.is_wanted())
                    && !self.t.storage.is_on_disk(*f)
            })
            .collect();
        if !to_create.is_empty() {
            let storage = Arc::clone(&self.t.storage);
            let have = self.engine.have().clone();
            let write_lock = Arc::clone(&self.t.write_lock);
            tokio::task::spawn_blocking(move || {
                let _writing = write_lock.lock().unwrap_or_else(|e| e.into_inner());
                to_create
                    .into_iter()
                    .try_for_each(|f| storage.want_file(f, &have))
            })
            .await
            .map_err(|_| TorrentError::TaskGone)??;
        }
        self.engine
            .set_piece_priorities(&pieces, std::time::Instant::now());
        if !self.engine.is_finished()
            && matches!(self.state, TorrentState::Seeding | TorrentState::Complete)
        {
            tracing::info!("file priorities changed; downloading again");
            self.state = TorrentState::Downloading;
            self.seeding_since = None;
        }
        Ok(())
    }

    async fn finish_if_complete(&mut self) -> Result<(), TorrentError> {
        if self.state != TorrentState::Downloading || !self.engine.is_finished() {
            return Ok(());
        }
        // Nothing counts as downloaded before it is on disk.
        let storage = Arc::clone(&self.t.storage);
        tokio::task::spawn_blocking(move || storage.sync_all())
            .await
            .map_err(|_| TorrentError::TaskGone)??;
        if !self.announced_complete {
            self.announced_complete = true;
            self.sources.completed();
        }
        // A restart now seeds without hashing anything.
        self.save_resume().await;
        if self.t.options.seed.is_some() {
            tracing::info!("download complete; seeding");
            self.state = TorrentState::Seeding;
            self.seeding_since = Some(Instant::now());
        } else {
            self.state = TorrentState::Complete;
            self.close_all();
        }
        Ok(())
    }

    /// When seeding must end by [`SeedLimits::time`].
    fn seed_deadline(&self) -> Option<Instant> {
        let since = self.seeding_since?;
        let limit = self.t.options.seed?.time?;
        (self.state == TorrentState::Seeding).then(|| since + limit)
    }

    /// Ends seeding once a [`SeedLimits`] is reached: connections close and the torrent is
    /// [`TorrentState::Complete`].
    fn stop_seeding_if_done(&mut self) {
        if self.state != TorrentState::Seeding {
            return;
        }
        let Some(limits) = self.t.options.seed else {
            return;
        };
        let total = self.engine.stats().wanted as f64;
        let by_ratio = limits
            .ratio
            .is_some_and(|r| self.engine.stats().uploaded as f64 >= r * total);
        let by_time = self
            .seed_deadline()
            .is_some_and(|end| Instant::now() >= end);
        if by_ratio || by_time {
            tracing::info!(by_ratio, by_time, "seeding limit reached");
            self.state = TorrentState::Complete;
            self.close_all();
        }
    }

    fn close_all(&mut self) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.close(conn, false);
        }
    }

    /// True while peers are of use: downloading, or seeding.
    fn serving(&self) -> bool {
        matches!(
            self.state,
            TorrentState::Downloading | TorrentState::Seeding
        )
    }

    fn connect_more(&mut self) {
        if !self.serving() {
            return;
        }
        let config = &self.t.shared.config;
        let limit = config.max_peers_per_torrent;
        let now = Instant::now();
        let connecting = self.conns.values().filter(|c| c.key.is_none()).count();
        let mut room = config.dial_room(self.conns.len(), connecting);
        while room > 0 {
            let Some(addr) = self.book.next_to_dial(now) else {
                break;
            };
            if self.engine.is_banned(addr.ip()) {
                continue;
            }
            room -= 1;
            let (tx, rx) = mpsc::channel(CONN_QUEUE);
            let conn = self.new_conn(addr, tx, true);
            tokio::spawn(peer::run_outgoing(conn, addr, self.ctx.clone(), rx));
        }
        if self.conns.len() < limit / 4 && self.book.dialable(now) == 0 {
            self.sources.dry(now);
        }
    }

    fn accept(&mut self, stream: TcpStream, buf: BytesMut, handshake: Handshake, addr: SocketAddr) {
        let full = self.conns.len() >= self.t.shared.config.max_peers_per_torrent;
        if full || self.engine.is_banned(addr.ip()) || !self.serving() {
            return;
        }
        let (tx, rx) = mpsc::channel(CONN_QUEUE);
        let conn = self.new_conn(addr, tx, false);
        tokio::spawn(peer::run_incoming(
            conn,
            stream,
            buf,
            handshake,
            self.ctx.clone(),
            rx,
        ));
    }

    fn new_conn(
        &mut self,
        addr: SocketAddr,
        commands: mpsc::Sender<Outbound>,
        outgoing: bool,
    ) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            conn,
            Conn {
                addr,
                key: None,
                commands,
                outgoing,
            },
        );
        conn
    }

    fn publish(&mut self) {
        let s = self.engine.stats();
        let layout = self.engine.layout();
        let progress = Progress {
            state: self.state.clone(),
            total_bytes: layout.total_length(),
            wanted_bytes: s.wanted,
            left_bytes: s.left,
            verified_bytes: s.verified,
            downloaded_bytes: s.downloaded,
            wasted_bytes: s.wasted,
            uploaded_bytes: s.uploaded,
            download_rate: s.download_rate,
            upload_rate: s.upload_rate,
            peers: s.peers,
            pieces_have: self.engine.have().count_ones() as u32,
            piece_count: layout.piece_count(),
            hash_failures: self.hash_failures,
            // What the check found stays as it published it.
            checked_pieces: 0,
            pieces_to_check: 0,
        };
        self.t.progress_tx.send_if_modified(|p| {
            let progress = Progress {
                checked_pieces: p.checked_pieces,
                pieces_to_check: p.pieces_to_check,
                ..progress
            };
            let changed = *p != progress;
            *p = progress;
            changed
        });
        let transfer = TransferStats {
            uploaded: s.uploaded,
            downloaded: s.downloaded,
            left: s.left,
        };
        self.stats_tx.send_if_modified(|t| {
            let changed = *t != transfer;
            *t = transfer;
            changed
        });
    }

    async fn shutdown(&mut self) {
        for (conn, c) in self.conns.drain() {
            if c.key.is_some() {
                self.closing.insert(conn);
            }
        }
        self.by_key.clear();
        // Pieces already complete are verified and written, so no downloaded data is lost.
        while let Some((piece, data)) = self.verify_queue.pop_front() {
            self.spawn_verify(piece, data);
        }
        while let Some(joined) = self.verify.join_next().await {
            if let Ok((piece, Ok(ok), buffer)) = joined {
                self.engine
                    .handle_piece_verified(piece, ok, buffer, std::time::Instant::now());
            }
        }
        // Data seeded from read-only files was never written; syncing them is harmless.
        let storage = Arc::clone(&self.t.storage);
        let _ = tokio::task::spawn_blocking(move || storage.sync_all()).await;
        self.save_resume().await;
        self.wait_for_closing().await;
        // The announce carries the final totals.
        self.publish();
        // Trackers learn we left (BEP 3 `event=stopped`); bounded by the announcer's stop budget.
        self.sources.stop().await;
    }
}

impl Running {
    /// Waits until the connections we closed have finished closing (bounded by [`peer::LINGER`] and a
    /// second), so the process does not end with blocks still unread by peers: the kernel would reset
    /// such connections, and the peers could lose the last blocks we sent.
    async fn wait_for_closing(&mut self) {
        let deadline = Instant::now() + peer::LINGER + Duration::from_secs(1);
        while !self.closing.is_empty() {
            match tokio::time::timeout_at(deadline, self.events_rx.recv()).await {
                Ok(Some(ConnEvent::Closed { conn, .. })) => {
                    self.closing.remove(&conn);
                }
                Ok(Some(ConnEvent::Sent { bytes, .. })) => self.engine.count_uploaded(bytes),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Starts saving fast-resume state on the blocking pool, unless a save is under way. The pieces
    /// saved are those verified and written by now; the files are flushed before the state is written,
    /// so the state never vouches for data that is not on disk.
    fn start_resume_save(&mut self) {
        let Some(saver) = &mut self.resume else {
            return;
        };
        saver.next = Instant::now() + RESUME_INTERVAL;
        if saver.saving.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let stats = self.engine.stats();
        let metainfo = Arc::clone(&self.t.metainfo);
        let state = ResumeState {
            info_hash: metainfo.info_hash,
            have: self.engine.have().clone(),
            files: Vec::new(),
            parts: None,
            priorities: self.t.options.file_priorities.clone(),
            uploaded: saver.earlier.0 + stats.uploaded,
            downloaded: saver.earlier.1 + stats.downloaded,
        };
        if saver.last_saved.as_ref() == Some(&state) {
            return;
        }
        saver.last_saved = Some(state.clone());
        let (storage, root, store) = (
            Arc::clone(&self.t.storage),
            self.t.root.clone(),
            Arc::clone(&saver.store),
        );
        saver.saving = Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = storage.sync_all() {
                tracing::warn!("not saving fast-resume state: {e}");
                return;
            }
            let state = ResumeState {
                files: resume::stamps(&root, &metainfo.info),
                parts: resume::stamp(&root.join(parts_file_name(&metainfo.info_hash))),
                ..state
            };
            match resume::save(&state, &*store) {
                Ok(()) => tracing::debug!(to = store.location(), "saved fast-resume state"),
                Err(e) => {
                    tracing::warn!("cannot save fast-resume state to {}: {e}", store.location())
                }
            }
        }));
    }

    /// Saves fast-resume state now and waits for it (after any save under way).
    async fn save_resume(&mut self) {
        let Some(saver) = &mut self.resume else {
            return;
        };
        if let Some(saving) = saver.saving.take() {
            let _ = saving.await;
        }
        self.start_resume_save();
        if let Some(saving) = self.resume.as_mut().and_then(|s| s.saving.take()) {
            let _ = saving.await;
        }
    }
}
