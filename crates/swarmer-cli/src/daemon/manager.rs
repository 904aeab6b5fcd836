//! The daemon's torrent manager: one owner task holds every torrent's record and handle, takes
//! requests (add, pause, resume, remove, priorities, limits, settings, views) one at a time, keeps
//! the store in step, and decides which torrents run (the queue). Starting and stopping a torrent
//! take time (files are `stat`ed and opened, trackers told `stopped`), so they run in their own tasks
//! and report back here; requests never wait behind them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use swarmer::resume::ResumeStore;
use swarmer::{
    AddTorrentOptions, ExistingData, FetchedMetadata, FilePriority, MetadataError,
    MetadataProgress, Progress, SeedLimits, Session, SessionError, TorrentError, TorrentHandle,
    TorrentState,
};
use swarmer_proto::InfoHash;
use swarmer_proto::magnet::Magnet;
use swarmer_proto::metainfo::Metainfo;
use swarmer_proto::priority::piece_priorities;
use swarmer_proto::tracker::http::percent_encode;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::model::{File, SessionStats, StateName, Torrent, TorrentDetail};
use super::store::{Settings, Store, StoreError, TorrentRecord};

/// Capacity of the request queue; callers wait (asynchronously) when it is full.
const REQUEST_QUEUE: usize = 256;
/// Most torrents being started (files `stat`ed, opened, resume state read) at once.
const MAX_STARTING: usize = 16;
/// How often the queue is re-evaluated and failed torrents noticed, besides after every request.
const TICK: Duration = Duration::from_secs(1);
/// How long a shutdown waits for torrents to stop (flush, save resume state, announce `stopped`).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the owner waits for a running torrent to take a command (file priorities).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Most torrents the daemon holds: every one costs a task, a record and its metainfo.
pub(crate) const MAX_TORRENTS: usize = 20_000;

/// Why a request failed. The API maps each to an HTTP status in one place (`api::status_of`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ManagerError {
    /// No torrent has this id.
    #[error("no torrent with id {0}")]
    NotFound(u64),
    /// The torrent is already in the daemon, under this id.
    #[error("torrent {hash} is already added (id {id})")]
    Duplicate {
        /// The existing torrent's id.
        id: u64,
        /// Its info hash.
        hash: InfoHash,
    },
    /// The request is well-formed but cannot apply (wrong number of priorities, metadata unknown).
    #[error("{0}")]
    Invalid(String),
    /// The daemon holds [`MAX_TORRENTS`] already.
    #[error("the daemon holds {MAX_TORRENTS} torrents already")]
    Full,
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The manager is shutting down.
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// What to add.
#[derive(Debug)]
pub(crate) enum Source {
    /// A metainfo file's bytes, already parsed.
    Metainfo(Box<Metainfo>, Vec<u8>),
    /// A magnet link (BEP 9), already parsed, and its text.
    Magnet(Box<Magnet>, String),
}

/// An add request.
#[derive(Debug)]
pub(crate) struct Add {
    pub(crate) source: Source,
    /// Where the files go; the session's default directory if `None`.
    pub(crate) download_dir: Option<PathBuf>,
    /// Add it paused.
    pub(crate) paused: bool,
}

/// Changes to the session settings; `None` leaves a setting alone, `Some(None)` clears a limit.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct SettingsPatch {
    /// Session upload limit, bytes/s (null: none).
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<u64>)]
    pub(crate) max_upload_rate: Option<Option<u64>>,
    /// Session download limit, bytes/s (null: none).
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<u64>)]
    pub(crate) max_download_rate: Option<Option<u64>>,
    /// Most torrents downloading at once (null: no limit).
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<u32>)]
    pub(crate) max_active_downloads: Option<Option<u32>>,
    /// Most torrents seeding at once (null: no limit).
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<u32>)]
    pub(crate) max_active_seeds: Option<Option<u32>>,
    /// The default download directory.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub(crate) download_dir: Option<PathBuf>,
}

/// Tells a present-but-null field (`Some(None)`) from an absent one (`None`, via `default`).
fn some<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

type Reply<T> = oneshot::Sender<Result<T, ManagerError>>;

enum Request {
    List(oneshot::Sender<Vec<Torrent>>),
    Get(u64, Reply<TorrentDetail>),
    Add(Add, Reply<Torrent>),
    Pause(u64, Reply<Torrent>),
    Resume(u64, Reply<Torrent>),
    Remove(u64, bool, Reply<()>),
    SetPriorities(u64, Vec<FilePriority>, Reply<TorrentDetail>),
    SetLimits(u64, Option<u64>, Option<u64>, Reply<Torrent>),
    Settings(oneshot::Sender<Settings>),
    SetSettings(SettingsPatch, Reply<Settings>),
    Stats(oneshot::Sender<SessionStats>),
    Shutdown(oneshot::Sender<()>),
}

/// What a torrent's own tasks report to the owner.
enum Report {
    Started(u64, Result<TorrentHandle, SessionError>),
    Stopped(u64, Result<(), TorrentError>),
    Fetched(u64, Result<FetchedMetadata, MetadataError>),
    /// A removed torrent's data is deleted (or could not be: the message says what is left).
    Deleted(Reply<()>, Result<(), String>),
}

/// A cheap, cloneable handle to the manager task.
#[derive(Clone)]
pub(crate) struct Manager {
    requests: mpsc::Sender<Request>,
}

impl Manager {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, ManagerError> {
        self.ask(make)
            .await
            .unwrap_or(Err(ManagerError::ShuttingDown))
    }

    /// Every torrent, in id order.
    pub(crate) async fn list(&self) -> Vec<Torrent> {
        self.ask(Request::List).await.unwrap_or_default()
    }

    /// One torrent with its files.
    pub(crate) async fn get(&self, id: u64) -> Result<TorrentDetail, ManagerError> {
        self.call(|r| Request::Get(id, r)).await
    }

    /// Adds a torrent; it starts when the queue lets it unless `paused`.
    pub(crate) async fn add(&self, add: Add) -> Result<Torrent, ManagerError> {
        self.call(|r| Request::Add(add, r)).await
    }

    /// Pauses a torrent (stops it and keeps it stopped across restarts).
    pub(crate) async fn pause(&self, id: u64) -> Result<Torrent, ManagerError> {
        self.call(|r| Request::Pause(id, r)).await
    }

    /// Resumes a paused or failed torrent (it starts when the queue lets it).
    pub(crate) async fn resume(&self, id: u64) -> Result<Torrent, ManagerError> {
        self.call(|r| Request::Resume(id, r)).await
    }

    /// Removes a torrent and, if `delete_data`, its files; returns once it is stopped (and the data
    /// deleted).
    pub(crate) async fn remove(&self, id: u64, delete_data: bool) -> Result<(), ManagerError> {
        self.call(|r| Request::Remove(id, delete_data, r)).await
    }

    /// Sets the file priorities: one per file of `info.files` (padding files included).
    pub(crate) async fn set_priorities(
        &self,
        id: u64,
        priorities: Vec<FilePriority>,
    ) -> Result<TorrentDetail, ManagerError> {
        self.call(|r| Request::SetPriorities(id, priorities, r))
            .await
    }

    /// Sets a torrent's own limits, bytes/s (`None`: none; the session limits still apply).
    pub(crate) async fn set_limits(
        &self,
        id: u64,
        upload: Option<u64>,
        download: Option<u64>,
    ) -> Result<Torrent, ManagerError> {
        self.call(|r| Request::SetLimits(id, upload, download, r))
            .await
    }

    /// The session settings.
    pub(crate) async fn settings(&self) -> Option<Settings> {
        self.ask(Request::Settings).await
    }

    /// Changes session settings and saves them.
    pub(crate) async fn set_settings(
        &self,
        patch: SettingsPatch,
    ) -> Result<Settings, ManagerError> {
        self.call(|r| Request::SetSettings(patch, r)).await
    }

    /// Totals over the session.
    pub(crate) async fn stats(&self) -> Option<SessionStats> {
        self.ask(Request::Stats).await
    }

    /// Stops every torrent (bounded by [`SHUTDOWN_TIMEOUT`]) and ends the manager.
    pub(crate) async fn shutdown(&self) {
        let _ = self.ask(Request::Shutdown).await;
    }
}

/// How far a torrent's task is.
enum Run {
    /// Not running (queued, paused, failed, or waiting for metadata).
    Idle,
    /// Being started.
    Starting,
    /// Running.
    Running(TorrentHandle, watch::Receiver<Progress>),
    /// Being stopped.
    Stopping,
}

struct Entry {
    record: TorrentRecord,
    metainfo: Option<Arc<Metainfo>>,
    run: Run,
    /// Its progress when it last stopped (so a paused torrent still shows what it has); a running
    /// torrent is read from its `watch`, never copied here.
    last: Option<Progress>,
    /// What the fast-resume state said at start-up, until the torrent first reports progress:
    /// verified pieces and whether every wanted one is (so a finished torrent queues, and runs
    /// while it checks, as a seed, not a download).
    resumed: Option<(u32, bool)>,
    /// The local error that stopped it.
    error: Option<String>,
    /// A magnet link's metadata fetch, while it runs.
    fetch: Option<(JoinHandle<()>, watch::Receiver<MetadataProgress>)>,
    /// Peers the metadata fetch found, handed to the torrent when it starts.
    found_peers: Vec<std::net::SocketAddr>,
}

impl Entry {
    /// Whether every wanted piece is there: what the running torrent says once it has checked its
    /// data, else what it said last, else what its resume state said.
    fn done(&self) -> bool {
        if let Run::Running(_, progress) = &self.run {
            let p = progress.borrow();
            if !matches!(p.state, TorrentState::Checking) {
                return p.is_done();
            }
        }
        match &self.last {
            Some(p) => p.is_done(),
            None => self.resumed.is_some_and(|(_, done)| done),
        }
    }

    fn progress(&self) -> Option<Progress> {
        match &self.run {
            Run::Running(_, progress) => Some(progress.borrow().clone()),
            _ => self.last.clone(),
        }
    }

    fn state(&self) -> StateName {
        if let Run::Running(_, progress) = &self.run {
            return match &progress.borrow().state {
                TorrentState::Checking => StateName::Checking,
                TorrentState::Downloading => StateName::Downloading,
                TorrentState::Seeding => StateName::Seeding,
                TorrentState::Complete => StateName::Complete,
                TorrentState::Failed(_) => StateName::Failed,
                TorrentState::Stopped if self.record.paused => StateName::Paused,
                TorrentState::Stopped => StateName::Queued,
            };
        }
        if self.record.paused {
            StateName::Paused
        } else if self.error.is_some() {
            StateName::Failed
        } else if self.metainfo.is_none() {
            StateName::FetchingMetadata
        } else {
            StateName::Queued
        }
    }

    fn view(&self) -> Torrent {
        let r = &self.record;
        let state = self.state();
        let progress = self.progress();
        let (total, wanted, done) = match (&progress, &self.metainfo) {
            (Some(p), _) => (p.total_bytes, p.wanted_bytes, p.wanted_done_bytes()),
            (None, Some(m)) => {
                let total = m.info.total_length();
                let have = self.resumed.map_or(0, |(have, _)| have);
                let done = (u64::from(have) * u64::from(m.info.piece_length)).min(total);
                (total, total, done)
            }
            (None, None) => (0, 0, 0),
        };
        let running = matches!(self.run, Run::Running(..));
        let (down_rate, up_rate, peers) = match (&progress, &self.fetch) {
            (Some(p), _) if running => (p.download_rate, p.upload_rate, p.peers as u32),
            (_, Some((_, fetch))) => (0, 0, fetch.borrow().peers_connected as u32),
            _ => (0, 0, 0),
        };
        let left = wanted.saturating_sub(done);
        Torrent {
            id: r.id,
            info_hash: r.info_hash.clone(),
            name: self
                .metainfo
                .as_ref()
                .map_or_else(|| r.name.clone(), |m| m.info.name.clone()),
            state,
            error: self.error.clone().or_else(|| match &progress {
                Some(Progress {
                    state: TorrentState::Failed(e),
                    ..
                }) => Some(e.clone()),
                _ => None,
            }),
            total_bytes: total,
            wanted_bytes: wanted,
            done_bytes: done,
            progress: if wanted == 0 {
                0.0
            } else {
                done as f64 / wanted as f64
            },
            download_rate: down_rate,
            upload_rate: up_rate,
            downloaded_bytes: progress.as_ref().map_or(0, |p| p.downloaded_bytes),
            uploaded_bytes: progress.as_ref().map_or(0, |p| p.uploaded_bytes),
            peers,
            eta_seconds: (left > 0 && down_rate > 0).then(|| left.div_ceil(down_rate)),
            added_at: r.added_at,
            download_dir: r.download_dir.display().to_string(),
            max_upload_rate: r.max_upload_rate,
            max_download_rate: r.max_download_rate,
            queue_position: r.queue_position,
        }
    }

    fn detail(&self) -> TorrentDetail {
        let torrent = self.view();
        let priorities = self.priorities();
        let (files, trackers, piece_count, piece_length) = match &self.metainfo {
            Some(m) => (
                m.info
                    .files
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| !f.padding)
                    .map(|(i, f)| File {
                        index: i as u32,
                        path: f.path.join("/"),
                        length: f.length,
                        priority: priorities
                            .get(i)
                            .copied()
                            .unwrap_or(FilePriority::Normal)
                            .into(),
                    })
                    .collect(),
                m.announce_tiers.iter().flatten().cloned().collect(),
                m.info.layout.piece_count(),
                u64::from(m.info.piece_length),
            ),
            None => (Vec::new(), Vec::new(), 0, 0),
        };
        let pieces_have = match self.progress() {
            Some(p) => p.pieces_have,
            None => self.resumed.map_or(0, |(have, _)| have),
        };
        let magnet = self.record.magnet.clone().unwrap_or_else(|| {
            let mut uri = format!("magnet:?xt=urn:btih:{}&dn=", self.record.info_hash);
            percent_encode(&mut uri, torrent.name.as_bytes());
            uri
        });
        TorrentDetail {
            torrent,
            files,
            trackers,
            piece_count,
            piece_length,
            pieces_have,
            magnet,
        }
    }

    fn priorities(&self) -> Vec<FilePriority> {
        priorities_of(&self.record)
    }
}

/// A record's file priorities (stored as `FilePriority::as_u8`; an unknown number reads as normal).
fn priorities_of(record: &TorrentRecord) -> Vec<FilePriority> {
    record
        .priorities
        .iter()
        .map(|&p| FilePriority::from_u8(p).unwrap_or(FilePriority::Normal))
        .collect()
}

/// Starts the manager task over `session`, restoring every torrent in `store`.
///
/// Errors: the store cannot be read.
pub(crate) fn start(
    session: Arc<Session>,
    store: Arc<Store>,
    defaults: Settings,
) -> Result<(Manager, JoinHandle<()>), StoreError> {
    let loaded = store.load()?;
    let settings = loaded.settings.unwrap_or(defaults);
    session.set_rate_limits(settings.max_upload_rate, settings.max_download_rate);
    let mut entries = BTreeMap::new();
    for (record, bytes) in loaded.torrents {
        let metainfo = match bytes.map(|b| Metainfo::from_bytes(&b)) {
            Some(Ok(m)) => Some(Arc::new(m)),
            Some(Err(e)) => {
                tracing::warn!(
                    id = record.id,
                    "skipping a torrent whose metainfo no longer parses: {e}"
                );
                continue;
            }
            None => None,
        };
        let resumed = metainfo
            .as_ref()
            .and_then(|m| resumed_pieces(&store, m, &record));
        entries.insert(
            record.id,
            Entry {
                record,
                metainfo,
                run: Run::Idle,
                last: None,
                resumed,
                error: None,
                fetch: None,
                found_peers: Vec::new(),
            },
        );
    }
    tracing::info!(torrents = entries.len(), "restored the daemon's torrents");
    let (requests, requests_rx) = mpsc::channel(REQUEST_QUEUE);
    let (reports, reports_rx) = mpsc::unbounded_channel();
    let owner = Owner {
        session,
        store,
        settings,
        entries,
        reports,
        shutting_down: None,
    };
    let task = tokio::spawn(owner.run(requests_rx, reports_rx));
    Ok((Manager { requests }, task))
}

/// Verified pieces in the saved resume state, and whether they are every wanted piece.
fn resumed_pieces(store: &Store, m: &Metainfo, record: &TorrentRecord) -> Option<(u32, bool)> {
    let bytes = ResumeStore::load(store, m.info_hash).ok()??;
    let state = swarmer_proto::resume::ResumeState::decode(
        &bytes,
        m.info.layout.piece_count() as usize,
        m.info.files.len(),
    )
    .ok()?;
    let have = state.have.count_ones() as u32;
    let files = priorities_of(record);
    let padding: Vec<bool> = m.info.files.iter().map(|f| f.padding).collect();
    let done = match piece_priorities(&m.info.layout, &files, &padding) {
        Ok(pieces) => pieces
            .iter()
            .enumerate()
            .all(|(i, p)| !p.is_wanted() || state.have.get(i)),
        Err(_) => have == m.info.layout.piece_count(),
    };
    Some((have, done))
}

struct Owner {
    session: Arc<Session>,
    store: Arc<Store>,
    settings: Settings,
    entries: BTreeMap<u64, Entry>,
    /// Unbounded, but each torrent has at most one start, stop or fetch in flight at a time.
    reports: mpsc::UnboundedSender<Report>,
    shutting_down: Option<oneshot::Sender<()>>,
}

impl Owner {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut reports: mpsc::UnboundedReceiver<Report>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut deadline = None;
        loop {
            tokio::select! {
                request = requests.recv(), if self.shutting_down.is_none() => match request {
                    Some(request) => self.handle(request).await,
                    None => self.begin_shutdown(None),
                },
                Some(report) = reports.recv() => self.report(report),
                _ = tick.tick() => self.watch_running(),
                _ = sleep_until(deadline) => {
                    tracing::warn!("torrents did not stop within {SHUTDOWN_TIMEOUT:?}; exiting anyway");
                    break;
                }
            }
            if let Some(done) = &self.shutting_down {
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + SHUTDOWN_TIMEOUT);
                let busy = self.entries.values().any(|e| !matches!(e.run, Run::Idle));
                if !busy {
                    let _ = done;
                    break;
                }
            } else {
                self.schedule();
            }
        }
        if let Some(done) = self.shutting_down.take() {
            let _ = done.send(());
        }
    }

    async fn handle(&mut self, request: Request) {
        match request {
            Request::List(reply) => {
                let _ = reply.send(self.entries.values().map(Entry::view).collect());
            }
            Request::Get(id, reply) => {
                let _ = reply.send(self.entry(id).map(Entry::detail));
            }
            Request::Add(add, reply) => {
                let _ = reply.send(self.add(add));
            }
            Request::Pause(id, reply) => {
                let _ = reply.send(self.pause(id));
            }
            Request::Resume(id, reply) => {
                let _ = reply.send(self.resume(id));
            }
            Request::Remove(id, delete, reply) => self.remove(id, delete, reply),
            Request::SetPriorities(id, priorities, reply) => {
                let _ = reply.send(self.set_priorities(id, priorities).await);
            }
            Request::SetLimits(id, up, down, reply) => {
                let _ = reply.send(self.set_limits(id, up, down));
            }
            Request::Settings(reply) => {
                let _ = reply.send(self.settings.clone());
            }
            Request::SetSettings(patch, reply) => {
                let _ = reply.send(self.set_settings(patch));
            }
            Request::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Request::Shutdown(reply) => self.begin_shutdown(Some(reply)),
        }
    }

    fn entry(&self, id: u64) -> Result<&Entry, ManagerError> {
        self.entries.get(&id).ok_or(ManagerError::NotFound(id))
    }

    fn entry_mut(&mut self, id: u64) -> Result<&mut Entry, ManagerError> {
        self.entries.get_mut(&id).ok_or(ManagerError::NotFound(id))
    }

    fn add(&mut self, add: Add) -> Result<Torrent, ManagerError> {
        let (info_hash, name, magnet, metainfo, bytes) = match add.source {
            Source::Metainfo(m, bytes) => (
                m.info_hash,
                m.info.name.clone(),
                None,
                Some(Arc::new(*m)),
                Some(bytes),
            ),
            Source::Magnet(m, text) => {
                let name = m
                    .display_name
                    .clone()
                    .unwrap_or_else(|| m.info_hash.to_hex());
                (m.info_hash, name, Some(text), None, None)
            }
        };
        let hex = info_hash.to_hex();
        if let Some(e) = self.entries.values().find(|e| e.record.info_hash == hex) {
            return Err(ManagerError::Duplicate {
                id: e.record.id,
                hash: info_hash,
            });
        }
        if self.entries.len() >= MAX_TORRENTS {
            return Err(ManagerError::Full);
        }
        let id = self.store.next_id()?;
        let queue_position = self
            .entries
            .values()
            .map(|e| e.record.queue_position + 1)
            .max()
            .unwrap_or(0);
        let record = TorrentRecord {
            id,
            info_hash: hex,
            magnet,
            name,
            download_dir: add
                .download_dir
                .unwrap_or_else(|| self.settings.download_dir.clone()),
            paused: add.paused,
            added_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            priorities: Vec::new(),
            max_upload_rate: None,
            max_download_rate: None,
            queue_position,
        };
        self.store.put_torrent(&record, bytes.as_deref())?;
        tracing::info!(id, info_hash = %info_hash, name = %record.name, "added a torrent");
        let entry = Entry {
            record,
            metainfo,
            run: Run::Idle,
            last: None,
            resumed: None,
            error: None,
            fetch: None,
            found_peers: Vec::new(),
        };
        let view = entry.view();
        self.entries.insert(id, entry);
        Ok(view)
    }

    fn pause(&mut self, id: u64) -> Result<Torrent, ManagerError> {
        let store = Arc::clone(&self.store);
        let e = self.entry_mut(id)?;
        if !e.record.paused {
            e.record.paused = true;
            store.put_torrent(&e.record, None)?;
        }
        if let Some((fetch, _)) = e.fetch.take() {
            fetch.abort();
        }
        self.stop(id);
        Ok(self.entry(id)?.view())
    }

    fn resume(&mut self, id: u64) -> Result<Torrent, ManagerError> {
        let store = Arc::clone(&self.store);
        let e = self.entry_mut(id)?;
        e.error = None;
        if e.record.paused {
            e.record.paused = false;
            store.put_torrent(&e.record, None)?;
        }
        self.schedule();
        Ok(self.entry(id)?.view())
    }

    fn remove(&mut self, id: u64, delete_data: bool, reply: Reply<()>) {
        let Some(mut e) = self.entries.remove(&id) else {
            let _ = reply.send(Err(ManagerError::NotFound(id)));
            return;
        };
        if let Err(err) = self.store.remove_torrent(id, &e.record.info_hash) {
            self.entries.insert(id, e);
            let _ = reply.send(Err(err.into()));
            return;
        }
        tracing::info!(id, name = %e.record.name, delete_data, "removing a torrent");
        if let Some((fetch, _)) = e.fetch.take() {
            fetch.abort();
        }
        let handle = match std::mem::replace(&mut e.run, Run::Idle) {
            Run::Running(handle, _) => Some(handle),
            _ => None,
        };
        let reports = self.reports.clone();
        let files = e.metainfo.filter(|_| delete_data);
        let dir = e.record.download_dir;
        tokio::spawn(async move {
            if let Some(handle) = handle {
                if let Err(err) = handle.stop().await {
                    tracing::warn!(id, "torrent stopped with an error: {err}");
                }
            }
            let result = match files {
                Some(m) => tokio::task::spawn_blocking(move || delete_files(&dir, &m))
                    .await
                    .unwrap_or_else(|_| Err("deleting the files panicked".into())),
                None => Ok(()),
            };
            let _ = reports.send(Report::Deleted(reply, result));
        });
    }

    async fn set_priorities(
        &mut self,
        id: u64,
        priorities: Vec<FilePriority>,
    ) -> Result<TorrentDetail, ManagerError> {
        let store = Arc::clone(&self.store);
        let e = self.entry_mut(id)?;
        let Some(m) = &e.metainfo else {
            return Err(ManagerError::Invalid(
                "the torrent's metadata is not known yet".into(),
            ));
        };
        let files = m.info.files.len();
        if priorities.len() != files {
            return Err(ManagerError::Invalid(format!(
                "{} priorities given, the torrent has {files} files",
                priorities.len()
            )));
        }
        e.record.priorities = priorities.iter().map(|p| p.as_u8()).collect();
        store.put_torrent(&e.record, None)?;
        if let Run::Running(handle, _) = &e.run {
            // The torrent applies them in its own task and answers at once; a file that cannot be
            // created fails the torrent, which shows in its state.
            match tokio::time::timeout(COMMAND_TIMEOUT, handle.set_file_priorities(priorities))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(ManagerError::Invalid(err.to_string())),
                Err(_) => {
                    return Err(ManagerError::Invalid(
                        "the torrent did not take the priorities in time".into(),
                    ));
                }
            }
        } else if e.last.as_ref().is_some_and(Progress::is_done) {
            // A finished torrent that now wants more queues as a download again.
            e.last = None;
            e.resumed = None;
        }
        Ok(e.detail())
    }

    fn set_limits(
        &mut self,
        id: u64,
        up: Option<u64>,
        down: Option<u64>,
    ) -> Result<Torrent, ManagerError> {
        let store = Arc::clone(&self.store);
        let e = self.entry_mut(id)?;
        e.record.max_upload_rate = up;
        e.record.max_download_rate = down;
        store.put_torrent(&e.record, None)?;
        if let Run::Running(handle, _) = &e.run {
            handle.set_rate_limits(up, down);
        }
        Ok(e.view())
    }

    fn set_settings(&mut self, patch: SettingsPatch) -> Result<Settings, ManagerError> {
        let mut s = self.settings.clone();
        if let Some(v) = patch.max_upload_rate {
            s.max_upload_rate = v;
        }
        if let Some(v) = patch.max_download_rate {
            s.max_download_rate = v;
        }
        if let Some(v) = patch.max_active_downloads {
            s.max_active_downloads = v;
        }
        if let Some(v) = patch.max_active_seeds {
            s.max_active_seeds = v;
        }
        if let Some(dir) = patch.download_dir {
            if !dir.is_absolute() {
                return Err(ManagerError::Invalid(
                    "download_dir must be an absolute path".into(),
                ));
            }
            s.download_dir = dir;
        }
        self.store.put_settings(&s)?;
        self.session
            .set_rate_limits(s.max_upload_rate, s.max_download_rate);
        self.settings = s.clone();
        Ok(s)
    }

    fn stats(&self) -> SessionStats {
        let mut stats = SessionStats {
            torrents: self.entries.len() as u32,
            active: 0,
            paused: 0,
            download_rate: 0,
            upload_rate: 0,
            downloaded_bytes: 0,
            uploaded_bytes: 0,
            listen_port: self.session.listen_addr().port(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        for e in self.entries.values() {
            if e.record.paused {
                stats.paused += 1;
            }
            if matches!(e.run, Run::Running(..) | Run::Starting) || e.fetch.is_some() {
                stats.active += 1;
            }
            if let Some(p) = e.progress() {
                if matches!(e.run, Run::Running(..)) {
                    stats.download_rate += p.download_rate;
                    stats.upload_rate += p.upload_rate;
                }
                stats.downloaded_bytes += p.downloaded_bytes;
                stats.uploaded_bytes += p.uploaded_bytes;
            }
        }
        stats
    }

    /// Decides which torrents run: not paused, not failed, metadata known, and within the download
    /// and seed slots in queue order. Starts and stops accordingly; fetches missing metadata.
    fn schedule(&mut self) {
        let mut order: Vec<(u32, u64)> = self
            .entries
            .values()
            .map(|e| (e.record.queue_position, e.record.id))
            .collect();
        order.sort_unstable();
        let (mut downloads, mut seeds) = (0u32, 0u32);
        let max_down = self.settings.max_active_downloads.unwrap_or(u32::MAX);
        let max_seed = self.settings.max_active_seeds.unwrap_or(u32::MAX);
        let mut starting = self
            .entries
            .values()
            .filter(|e| matches!(e.run, Run::Starting))
            .count();
        let mut to_start = Vec::new();
        let mut to_stop = Vec::new();
        let mut to_fetch = Vec::new();
        for (_, id) in order {
            let e = &self.entries[&id];
            if e.record.paused || e.error.is_some() {
                continue;
            }
            if e.metainfo.is_none() {
                if e.fetch.is_none() {
                    to_fetch.push(id);
                }
                continue;
            }
            let slot = if e.done() {
                seeds += 1;
                seeds <= max_seed
            } else {
                downloads += 1;
                downloads <= max_down
            };
            match (&e.run, slot) {
                (Run::Idle, true) if starting < MAX_STARTING => {
                    starting += 1;
                    to_start.push(id);
                }
                (Run::Running(..), false) => to_stop.push(id),
                _ => {}
            }
        }
        for id in to_stop {
            tracing::info!(id, "queued: over the active torrent limit");
            self.stop(id);
        }
        for id in to_start {
            self.start(id);
        }
        for id in to_fetch {
            self.fetch(id);
        }
    }

    fn start(&mut self, id: u64) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        let Some(metainfo) = e.metainfo.clone() else {
            return;
        };
        e.run = Run::Starting;
        let options = AddTorrentOptions {
            seed: Some(SeedLimits::default()),
            existing: ExistingData::Check,
            resume: Some(Arc::clone(&self.store) as Arc<dyn ResumeStore>),
            file_priorities: e.priorities(),
            max_upload_rate: e.record.max_upload_rate,
            max_download_rate: e.record.max_download_rate,
        };
        let dir = e.record.download_dir.clone();
        let mut peers = std::mem::take(&mut e.found_peers);
        let magnet_peers = e
            .record
            .magnet
            .as_deref()
            .and_then(|m| Magnet::parse(m).ok())
            .map(|m| m.peers)
            .unwrap_or_default();
        let session = Arc::clone(&self.session);
        let reports = self.reports.clone();
        tokio::spawn(async move {
            let result = session
                .add_torrent_with((*metainfo).clone(), &dir, options)
                .await;
            if let Ok(handle) = &result {
                // A magnet link's x.pe peers, and those its metadata fetch found: a torrent with no
                // tracker has no other way to them after a restart.
                peers.extend(swarmer::resolve_peers(&magnet_peers).await);
                if !peers.is_empty() {
                    handle.add_peers(peers).await;
                }
            }
            let _ = reports.send(Report::Started(id, result));
        });
    }

    fn stop(&mut self, id: u64) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        match std::mem::replace(&mut e.run, Run::Idle) {
            Run::Running(handle, progress) => {
                e.last = Some(progress.borrow().clone());
                e.run = Run::Stopping;
                let reports = self.reports.clone();
                tokio::spawn(async move {
                    let result = handle.stop().await;
                    let _ = reports.send(Report::Stopped(id, result));
                });
            }
            // Already on its way, or to be stopped when its start reports back (see `report`).
            other @ (Run::Stopping | Run::Starting) => e.run = other,
            Run::Idle => {}
        }
    }

    fn fetch(&mut self, id: u64) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        let Some(magnet) = e
            .record
            .magnet
            .as_deref()
            .and_then(|m| Magnet::parse(m).ok())
        else {
            e.error = Some("the torrent has neither metadata nor a valid magnet link".into());
            return;
        };
        let handle = self.session.fetch_metadata(&magnet);
        let progress = handle.progress();
        let reports = self.reports.clone();
        let task = tokio::spawn(async move {
            let result = handle.wait().await;
            let _ = reports.send(Report::Fetched(id, result));
        });
        e.fetch = Some((task, progress));
    }

    fn report(&mut self, report: Report) {
        match report {
            Report::Started(id, result) => {
                let Some(e) = self.entries.get_mut(&id) else {
                    // Removed while starting.
                    if let Ok(handle) = result {
                        tokio::spawn(handle.stop());
                    }
                    return;
                };
                match result {
                    Ok(handle) => {
                        let progress = handle.progress();
                        e.run = Run::Running(handle, progress);
                        if e.record.paused || self.shutting_down.is_some() {
                            self.stop(id);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(id, "torrent could not start: {err}");
                        e.error = Some(err.to_string());
                        e.run = Run::Idle;
                    }
                }
            }
            Report::Stopped(id, result) => {
                if let Some(e) = self.entries.get_mut(&id) {
                    e.run = Run::Idle;
                    if let Err(err) = result {
                        e.error = Some(err.to_string());
                    }
                }
            }
            Report::Fetched(id, result) => {
                let Some(e) = self.entries.get_mut(&id) else {
                    return;
                };
                e.fetch = None;
                match result {
                    Ok(fetched) => {
                        let bytes = fetched.metainfo.to_torrent_bytes();
                        e.record.name = fetched.metainfo.info.name.clone();
                        if let Err(err) = self.store.put_torrent(&e.record, Some(&bytes)) {
                            e.error = Some(err.to_string());
                            return;
                        }
                        tracing::info!(id, name = %e.record.name, "fetched the metadata");
                        e.metainfo = Some(Arc::new(fetched.metainfo));
                        e.found_peers = fetched.peers;
                    }
                    Err(err) => e.error = Some(err.to_string()),
                }
            }
            Report::Deleted(reply, result) => {
                let _ = reply.send(result.map_err(ManagerError::Invalid));
            }
        }
    }

    /// Notices running torrents that failed (disk full, files gone) and stops them, so the error
    /// shows and a resume starts them afresh.
    fn watch_running(&mut self) {
        let failed: Vec<(u64, String)> = self
            .entries
            .iter()
            .filter_map(|(&id, e)| match &e.run {
                Run::Running(_, p) => match &p.borrow().state {
                    TorrentState::Failed(msg) => Some((id, msg.clone())),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        for (id, msg) in failed {
            tracing::warn!(id, "torrent failed: {msg}");
            if let Some(e) = self.entries.get_mut(&id) {
                e.error = Some(msg);
            }
            self.stop(id);
        }
    }

    fn begin_shutdown(&mut self, reply: Option<oneshot::Sender<()>>) {
        tracing::info!("stopping every torrent");
        let ids: Vec<u64> = self.entries.keys().copied().collect();
        for id in ids {
            if let Some(e) = self.entries.get_mut(&id) {
                if let Some((fetch, _)) = e.fetch.take() {
                    fetch.abort();
                }
            }
            self.stop(id);
        }
        let (tx, rx) = oneshot::channel();
        self.shutting_down = Some(tx);
        if let Some(reply) = reply {
            tokio::spawn(async move {
                let _ = rx.await;
                let _ = reply.send(());
            });
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Deletes a removed torrent's files under `dir`, then the directories they leave empty (never
/// `dir` itself), and its parts file. Paths come from a validated metainfo (no `..`, no absolute
/// components), so nothing outside `dir` is touched.
fn delete_files(dir: &Path, m: &Metainfo) -> Result<(), String> {
    let mut failed = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for f in m.info.files.iter().filter(|f| !f.padding) {
        let path = f.path.iter().fold(dir.to_path_buf(), |p, c| p.join(c));
        let mut parent = path.parent();
        while let Some(p) = parent {
            if p == dir {
                break;
            }
            dirs.insert(p.to_path_buf());
            parent = p.parent();
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => failed.push(format!("{}: {e}", path.display())),
        }
    }
    let parts = dir.join(swarmer::storage::parts_file_name(&m.info_hash));
    let _ = std::fs::remove_file(parts);
    // Deepest first; a directory holding other files stays.
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("could not delete {}", failed.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn manager(dir: &Path) -> (Manager, JoinHandle<()>) {
        let config = swarmer::SessionConfig {
            bind_ip: Some("127.0.0.1".parse().unwrap()),
            listen_port: 0,
            ..swarmer::SessionConfig::default()
        };
        let session = Arc::new(Session::new(config).await.unwrap());
        let store = Arc::new(Store::open(&dir.join("state")).unwrap());
        let settings = Settings {
            max_upload_rate: None,
            max_download_rate: None,
            max_active_downloads: Some(5),
            max_active_seeds: None,
            download_dir: dir.join("downloads"),
        };
        start(session, store, settings).unwrap()
    }

    fn magnet(hex: &str) -> Add {
        let text = format!("magnet:?xt=urn:btih:{hex}&dn=test");
        Add {
            source: Source::Magnet(Box::new(Magnet::parse(&text).unwrap()), text),
            download_dir: None,
            paused: false,
        }
    }

    /// Pausing and resuming torrents that are not running (a magnet link fetching its metadata)
    /// leaves them able to run, and a shutdown with them finishes at once (it once waited for its
    /// whole timeout: stopping an idle torrent marked it as stopping forever).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_torrents_pause_resume_and_shut_down_promptly() {
        let dir = tempfile::tempdir().unwrap();
        let (manager, task) = manager(dir.path()).await;
        let t = manager
            .add(magnet("0123456789abcdef0123456789abcdef01234567"))
            .await
            .unwrap();
        assert_eq!(t.state, StateName::FetchingMetadata);
        assert_eq!(manager.pause(t.id).await.unwrap().state, StateName::Paused);
        assert_eq!(
            manager.resume(t.id).await.unwrap().state,
            StateName::FetchingMetadata
        );
        let again = manager
            .add(magnet("0123456789abcdef0123456789abcdef01234567"))
            .await;
        assert!(matches!(again, Err(ManagerError::Duplicate { id, .. }) if id == t.id));
        manager.pause(t.id).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), manager.shutdown())
            .await
            .expect("shutdown with idle torrents is prompt");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the manager task ends")
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn torrents_and_their_settings_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = {
            let (manager, task) = manager(dir.path()).await;
            let a = manager
                .add(magnet("0123456789abcdef0123456789abcdef01234567"))
                .await
                .unwrap();
            let b = manager
                .add(magnet("89abcdef0123456789abcdef0123456789abcdef"))
                .await
                .unwrap();
            manager.pause(b.id).await.unwrap();
            manager.set_limits(a.id, Some(1000), None).await.unwrap();
            manager.shutdown().await;
            task.await.unwrap();
            (a.id, b.id)
        };
        let (manager, _task) = manager(dir.path()).await;
        let list = manager.list().await;
        assert_eq!(
            list.iter().map(|t| t.id).collect::<Vec<_>>(),
            [first, second]
        );
        assert_eq!(list[0].max_upload_rate, Some(1000));
        assert_eq!(list[1].state, StateName::Paused);
        let third = manager
            .add(magnet("00000000000000000000000000000000000000ff"))
            .await
            .unwrap();
        assert!(third.id > second, "ids are not reused");
        assert!(matches!(
            manager.remove(99, false).await,
            Err(ManagerError::NotFound(99))
        ));
    }
}
