//! The owner task: it holds every torrent's [`Entry`], takes requests one at a time, keeps the store
//! in step, and applies the queue's plan. Starting, stopping and fetching metadata take time (files
//! `stat`ed and opened, trackers told `stopped`), and a running torrent answers a command (file
//! priorities) only when its own task gets to it, so all of these run in tasks of their own and
//! report back here as [`Report`]s: the owner never awaits a torrent, and requests never wait
//! behind one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use swarmer::resume::ResumeStore;
use swarmer::{
    AddTorrentOptions, ExistingData, FetchedMetadata, FilePriority, MetadataError, Progress,
    SeedLimits, Session, SessionConfig, SessionError, TorrentError, TorrentHandle, TorrentState,
};
use swarmer_proto::magnet::Magnet;
use swarmer_proto::metainfo::Metainfo;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::delete_data::delete_files;
use super::entry::{Entry, Hold, Run, resumed_pieces, saved_have};
use super::labels::{LabelEdit, Labels};
use super::queue;
use super::relocate::move_data;
use super::request::{Add, MAX_TORRENTS, ManagerError, Reply, Request, SettingsPatch, Source};
use super::running::Running;
use crate::daemon::download_dir::{DownloadDir, Roots};
use crate::daemon::model::{Inside, SessionStats, Torrent, TorrentDetail};
use crate::daemon::store::{Settings, Store, StoreError, TorrentRecord};

mod port_change;

/// How often failed torrents are noticed and the queue re-evaluated, besides after every request
/// or report that can change it.
const TICK: Duration = Duration::from_secs(1);
/// How long a shutdown waits for torrents to stop (flush, save resume state, announce `stopped`).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// Most reports from torrent tasks read in a row before the queue is planned again.
const REPORT_BATCH: usize = 256;

/// Restores every torrent in `store` and spawns the owner task, which answers `requests` until a
/// shutdown (or until every sender is gone).
///
/// Errors: the store cannot be read.
pub(super) fn spawn(
    session: Arc<Session>,
    store: Arc<Store>,
    defaults: Settings,
    roots: Roots,
    session_config: SessionConfig,
    requests: mpsc::Receiver<Request>,
) -> Result<JoinHandle<()>, StoreError> {
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
        // Parsed once here, as an add parses it once: every start and fetch uses this value.
        let magnet = record.magnet.as_deref().and_then(|m| Magnet::parse(m).ok());
        entries.insert(record.id, Entry::new(record, metainfo, magnet, resumed));
    }
    tracing::info!(torrents = entries.len(), "restored the daemon's torrents");
    let labels = Labels::load(&store)?;
    let (reports, reports_rx) = mpsc::unbounded_channel();
    let owner = Owner {
        session,
        store,
        settings,
        roots,
        labels,
        session_config,
        port_change: None,
        entries,
        reports,
        shutting_down: None,
        plan_stale: true,
    };
    Ok(tokio::spawn(owner.run(requests, reports_rx)))
}

/// What a torrent's own tasks report to the owner.
enum Report {
    Started(u64, Result<TorrentHandle, SessionError>),
    Stopped(u64, Result<(), TorrentError>),
    /// Boxed: a metainfo is large beside the other reports.
    Fetched(u64, Box<Result<FetchedMetadata, MetadataError>>),
    /// A removed torrent's data is deleted (or could not be: the message says what is left).
    Deleted(Reply<()>, Result<(), String>),
    /// A running torrent took new file priorities (or did not), for the request's reply.
    PrioritiesSet(u64, Reply<TorrentDetail>, Result<(), ManagerError>),
    /// A running torrent's details, for the request's reply.
    Details(u64, Reply<Inside>, Result<swarmer::Details, ManagerError>),
    /// A torrent's data was moved to the directory (or could not be).
    Moved(u64, DownloadDir, Reply<Torrent>, Result<(), String>),
    /// The session on the new peer port started (or could not).
    SessionReady(Result<Session, SessionError>),
}

/// A change of the peer port in progress: every torrent stops, then a new session starts on the
/// port and the queue starts them again on it.
struct PortChange {
    /// The port asked for.
    port: u16,
    /// Who asked, answered with the port used.
    reply: Reply<u16>,
    /// The new session is being started.
    starting: bool,
}

/// The task that owns every torrent.
struct Owner {
    session: Arc<Session>,
    store: Arc<Store>,
    settings: Settings,
    /// Where downloads may go: every directory a request names is checked against them.
    roots: Roots,
    /// Every category and tag.
    labels: Labels,
    /// The session's configuration, for a new session on another peer port.
    session_config: SessionConfig,
    /// A peer port change under way: nothing starts until it is done.
    port_change: Option<PortChange>,
    entries: BTreeMap<u64, Entry>,
    /// Unbounded, but each torrent has at most one start, stop or fetch in flight at a time, and
    /// every other report answers one request whose caller is waiting for it.
    reports: mpsc::UnboundedSender<Report>,
    shutting_down: Option<oneshot::Sender<()>>,
    /// Something the queue plan depends on may have changed since it was last made: an idle
    /// tick leaves it as it was, so 10,000 torrents are not sorted every second for nothing.
    plan_stale: bool,
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
                request = requests.recv(), if self.shutting_down.is_none() => {
                    match request {
                        Some(request) => {
                            self.plan_stale |= request.may_change_plan();
                            self.handle(request);
                        }
                        None => {
                            self.plan_stale = true;
                            self.begin_shutdown(None);
                        }
                    }
                }
                Some(report) = reports.recv() => {
                    self.take_report(report);
                    // Reports already waiting are read before the queue is planned again: a plan
                    // walks every torrent, and at start-up the starts report back one by one.
                    for _ in 1..REPORT_BATCH {
                        let Ok(report) = reports.try_recv() else { break };
                        self.take_report(report);
                    }
                }
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
            } else if self.port_change.is_some() {
                self.continue_port_change();
            } else if std::mem::take(&mut self.plan_stale) {
                self.schedule();
            }
        }
        if let Some(done) = self.shutting_down.take() {
            let _ = done.send(());
        }
    }

    fn take_report(&mut self, report: Report) {
        // A running torrent's details answer a read; everything else reports a change of state.
        self.plan_stale |= !matches!(report, Report::Details(..));
        self.report(report);
    }

    fn handle(&mut self, request: Request) {
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
                self.set_priorities(id, priorities, reply);
            }
            Request::SetLimits(id, up, down, reply) => {
                let _ = reply.send(self.set_limits(id, up, down));
            }
            Request::Details(id, reply) => self.details(id, reply),
            Request::Labels(reply) => {
                let _ = reply.send(self.labels.clone());
            }
            Request::EditLabels(edit, reply) => {
                let _ = reply.send(self.edit_labels(edit));
            }
            Request::Recheck(id, reply) => {
                let _ = reply.send(self.recheck(id));
            }
            Request::Reannounce(id, reply) => match self.entry_mut(id) {
                Ok(Entry {
                    run: Run::Running(running),
                    ..
                }) => running.reannounce(move |result| {
                    let _ = reply.send(result);
                }),
                Ok(_) => {
                    let _ = reply.send(Err(ManagerError::Conflict(
                        "the torrent is not running; it announces when it starts".into(),
                    )));
                }
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
            },
            Request::SetLocation(id, dir, move_data, reply) => {
                self.set_location(id, dir, move_data, reply);
            }
            Request::Rename(id, name, reply) => {
                let _ = reply.send(self.rename(id, name));
            }
            Request::SetPeerPort(port, reply) => self.set_peer_port(port, reply),
            Request::Settings(reply) => {
                let _ = reply.send(self.settings.clone());
            }
            Request::SetSettings(patch, reply) => {
                let _ = reply.send(self.set_settings(patch));
            }
            Request::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Request::Dht(reply) => {
                let _ = reply.send(self.session.dht());
            }
            Request::PortMapping(reply) => {
                let _ = reply.send(self.session.port_mapping());
            }
            Request::ScrapeTargets(reply) => {
                let _ = reply.send(
                    self.entries
                        .values()
                        .filter_map(Entry::scrape_target)
                        .collect(),
                );
            }
            Request::Shutdown(reply) => self.begin_shutdown(Some(reply)),
            Request::SetDownloadOrder(id, order, reply) => {
                let store = Arc::clone(&self.store);
                let answer = self.entry_mut(id);
                let _ = reply.send(answer.and_then(|e| e.set_download_order(&store, order)));
            }
            Request::OpenFile(id, index, reply) => {
                let _ = reply.send(self.entry(id).and_then(|e| e.open_file(index)));
            }
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
            Source::Metainfo(m, bytes) => {
                (m.info_hash, m.info.name.clone(), None, Some(m), Some(bytes))
            }
            Source::Magnet(m, text) => {
                let name = m
                    .display_name
                    .clone()
                    .unwrap_or_else(|| m.info_hash.to_hex());
                (m.info_hash, name, Some((*m, text)), None, None)
            }
        };
        let (magnet, magnet_text) = magnet.unzip();
        if let Some(e) = self
            .entries
            .values()
            .find(|e| e.record.info_hash == info_hash)
        {
            return Err(ManagerError::Duplicate {
                id: e.record.id,
                hash: info_hash,
            });
        }
        if self.entries.len() >= MAX_TORRENTS {
            return Err(ManagerError::Full);
        }
        let category_dir = add
            .category
            .as_deref()
            .and_then(|c| self.labels.save_path(c));
        let download_dir = add
            .download_dir
            .or_else(|| category_dir.cloned())
            .unwrap_or_else(|| self.settings.download_dir.clone());
        self.roots.confine(&download_dir)?;
        // A new category or tag is created, as qBittorrent creates them on an add.
        let mut labels = self.labels.clone();
        if let Some(c) = add
            .category
            .as_ref()
            .filter(|c| !labels.categories.contains_key(*c))
        {
            labels.apply(
                LabelEdit::CreateCategory(c.clone(), None),
                std::iter::empty(),
            )?;
        }
        if !add.tags.is_empty() {
            labels.apply(LabelEdit::CreateTags(add.tags.clone()), std::iter::empty())?;
        }
        if labels != self.labels {
            labels.save(&self.store)?;
            self.labels = labels;
        }
        let mut tags = add.tags;
        tags.sort();
        tags.dedup();
        let id = self.store.next_id()?;
        let queue_position = self
            .entries
            .values()
            .map(|e| e.record.queue_position + 1)
            .max()
            .unwrap_or(0);
        let record = TorrentRecord {
            id,
            info_hash,
            magnet: magnet_text,
            name,
            download_dir,
            paused: add.paused,
            added_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            priorities: Vec::new(),
            max_upload_rate: add.limits.0,
            max_download_rate: add.limits.1,
            queue_position,
            category: add.category,
            tags,
            display_name: add.display_name.filter(|n| !n.is_empty()),
            completed_at: None,
            trust_data: add.trust_data,
            sequential: add.sequential,
            first_last_piece: add.first_last_piece,
        };
        self.store.put_torrent(&record, bytes.as_deref())?;
        tracing::info!(id, info_hash = %info_hash, name = %record.name, "added a torrent");
        let entry = Entry::new(record, metainfo, magnet, None);
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
        if self
            .entries
            .get(&id)
            .is_some_and(|e| matches!(e.hold, Hold::Move(..) | Hold::Moving))
        {
            // Its files are on their way to another directory: deleting them now would race
            // the move.
            let _ = reply.send(Err(ManagerError::Conflict(
                "the torrent's data is being moved; remove it once the move is done".into(),
            )));
            return;
        }
        let Some(mut e) = self.entries.remove(&id) else {
            let _ = reply.send(Err(ManagerError::NotFound(id)));
            return;
        };
        if let Err(err) = self.store.remove_torrent(id, e.record.info_hash) {
            self.entries.insert(id, e);
            let _ = reply.send(Err(err.into()));
            return;
        }
        tracing::info!(id, name = %e.record.name, delete_data, "removing a torrent");
        if let Some((fetch, _)) = e.fetch.take() {
            fetch.abort();
        }
        let running = match std::mem::replace(&mut e.run, Run::Idle) {
            Run::Running(running) => Some(running),
            _ => None,
        };
        let reports = self.reports.clone();
        let files = e.metainfo.filter(|_| delete_data);
        let dir = e.record.download_dir;
        tokio::spawn(async move {
            if let Some(running) = running {
                if let Err(err) = running.stop().await {
                    tracing::warn!(id, "torrent stopped with an error: {err}");
                }
            }
            let result = match files {
                Some(m) => tokio::task::spawn_blocking(move || delete_files(dir.as_path(), &m))
                    .await
                    .unwrap_or_else(|_| Err("deleting the files panicked".into())),
                None => Ok(()),
            };
            let _ = reports.send(Report::Deleted(reply, result));
        });
    }

    /// Saves new file priorities and answers `reply`: at once for a torrent that is not running, or,
    /// for a running one, from the task that hands them to it (`Report::PrioritiesSet`).
    fn set_priorities(
        &mut self,
        id: u64,
        priorities: Vec<FilePriority>,
        reply: Reply<TorrentDetail>,
    ) {
        let reports = self.reports.clone();
        let e = match self.save_priorities(id, &priorities) {
            Ok(e) => e,
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
        };
        if let Run::Running(running) = &mut e.run {
            running.set_file_priorities(priorities, move |result| {
                let _ = reports.send(Report::PrioritiesSet(id, reply, result));
            });
            return;
        }
        if e.last.as_ref().is_some_and(Progress::is_done) {
            // A finished torrent that now wants more queues as a download again.
            e.last = None;
            e.resumed = None;
        }
        let _ = reply.send(Ok(e.detail()));
    }

    /// Checks new file priorities against the torrent's files and saves them in its record.
    fn save_priorities(
        &mut self,
        id: u64,
        priorities: &[FilePriority],
    ) -> Result<&mut Entry, ManagerError> {
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
        Ok(e)
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
        if let Run::Running(running) = &e.run {
            running.set_rate_limits(up, down);
        }
        Ok(e.view())
    }

    /// Answers with the torrent's details: at once from its saved resume state when it is not
    /// running, else from the task that asks it (`Report::Details`).
    fn details(&mut self, id: u64, reply: Reply<Inside>) {
        let reports = self.reports.clone();
        let store = Arc::clone(&self.store);
        let e = match self.entry_mut(id) {
            Ok(e) => e,
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
        };
        if let Run::Running(running) = &mut e.run {
            running.details(move |result| {
                let _ = reports.send(Report::Details(id, reply, result));
            });
            return;
        }
        let have = e.metainfo.as_ref().and_then(|m| saved_have(&store, m));
        let _ = reply.send(Ok(e.inside(have, Vec::new(), None)));
    }

    fn edit_labels(&mut self, edit: LabelEdit) -> Result<(), ManagerError> {
        if let LabelEdit::CreateCategory(_, Some(dir)) | LabelEdit::EditCategory(_, Some(dir)) =
            &edit
        {
            self.roots.confine(dir)?;
        }
        let mut labels = self.labels.clone();
        let changed = labels.apply(edit, self.entries.values_mut().map(|e| &mut e.record))?;
        labels.save(&self.store)?;
        self.labels = labels;
        for id in changed {
            if let Some(e) = self.entries.get(&id) {
                self.store.put_torrent(&e.record, None)?;
            }
        }
        Ok(())
    }

    /// Stops the torrent if it runs and forgets its resume state once it has stopped (the stop
    /// saves one), so its next start hashes all of its data.
    fn recheck(&mut self, id: u64) -> Result<Torrent, ManagerError> {
        let store = Arc::clone(&self.store);
        let e = self.entry_mut(id)?;
        if e.metainfo.is_none() {
            return Err(ManagerError::Invalid(
                "the torrent's metadata is not known yet".into(),
            ));
        }
        if !matches!(e.hold, Hold::None) {
            return Err(ManagerError::Conflict(
                "the torrent is being moved or re-checked".into(),
            ));
        }
        e.error = None;
        if matches!(e.run, Run::Idle) {
            store.forget_resume(e.record.info_hash)?;
            e.last = None;
            e.resumed = None;
        } else {
            e.hold = Hold::Recheck;
            self.stop(id);
        }
        tracing::info!(id, "re-checking");
        Ok(self.entry(id)?.view())
    }

    /// Moves the torrent's data to `dir`: stops it first if it runs, moves on a blocking thread,
    /// and answers once it is done (`Report::Moved`); the queue restarts it there.
    fn set_location(&mut self, id: u64, dir: DownloadDir, move_data: bool, reply: Reply<Torrent>) {
        if let Err(err) = self.roots.confine(&dir) {
            let _ = reply.send(Err(err.into()));
            return;
        }
        let e = match self.entry_mut(id) {
            Ok(e) => e,
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
        };
        if !matches!(e.hold, Hold::None) {
            let _ = reply.send(Err(ManagerError::Conflict(
                "the torrent is being moved or re-checked".into(),
            )));
            return;
        }
        e.hold = Hold::Move(dir, move_data, reply);
        if matches!(e.run, Run::Idle) {
            self.start_move(id);
        } else {
            self.stop(id);
        }
    }

    /// Runs the move a stopped torrent's `Hold::Move` asks for.
    fn start_move(&mut self, id: u64) {
        let reports = self.reports.clone();
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        let Hold::Move(dir, move_files, reply) = std::mem::replace(&mut e.hold, Hold::Moving)
        else {
            return;
        };
        let from = e.record.download_dir.clone();
        let metainfo = e.metainfo.clone().filter(|_| move_files);
        if !move_files {
            // The data is said to be there already: hash what is found, as a re-check.
            if let Err(err) = self.store.forget_resume(e.record.info_hash) {
                let _ = reply.send(Err(err.into()));
                e.hold = Hold::None;
                return;
            }
            e.last = None;
            e.resumed = None;
        }
        tracing::info!(id, to = %dir.as_path().display(), "moving the data");
        tokio::spawn(async move {
            let target = dir.clone();
            let result = match metainfo {
                Some(m) => tokio::task::spawn_blocking(move || {
                    move_data(from.as_path(), target.as_path(), &m)
                })
                .await
                .unwrap_or_else(|_| Err("moving the data panicked".into())),
                None => Ok(()),
            };
            let _ = reports.send(Report::Moved(id, dir, reply, result));
        });
    }

    fn rename(&mut self, id: u64, name: String) -> Result<Torrent, ManagerError> {
        let name = name.trim().to_string();
        if name.is_empty() || name.len() > 1024 || name.chars().any(char::is_control) {
            return Err(ManagerError::Invalid("invalid torrent name".into()));
        }
        let store = Arc::clone(&self.store);
        let e = self.entry_mut(id)?;
        e.record.display_name = Some(name);
        store.put_torrent(&e.record, None)?;
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
        if let Some(mode) = patch.encryption {
            s.encryption = mode;
        }
        if let Some(dir) = patch.download_dir {
            s.download_dir = DownloadDir::new(dir)
                .map_err(|e| ManagerError::Invalid(format!("download_dir {e}")))?;
            self.roots.confine(&s.download_dir)?;
        }
        self.store.put_settings(&s)?;
        self.session
            .set_rate_limits(s.max_upload_rate, s.max_download_rate);
        self.session.set_encryption(s.encryption.into());
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
            transport: match self.session.transport() {
                swarmer::Transport::Tcp => "tcp",
                swarmer::Transport::Utp => "utp",
                swarmer::Transport::Both => "both",
            }
            .to_string(),
            port_mapping: match self.session.port_mapping().map(|m| m.state()) {
                None => "off".to_string(),
                Some(swarmer::PortMappingState::Searching) => "searching".to_string(),
                Some(swarmer::PortMappingState::Mapped { method, .. }) => method.to_string(),
                Some(swarmer::PortMappingState::Failed(_)) => "failed".to_string(),
                Some(swarmer::PortMappingState::Closed) => "closed".to_string(),
            },
            external_ip: self.session.external_ip().map(|ip| ip.to_string()),
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

    /// Starts and stops torrents as the queue says, and fetches missing metadata.
    fn schedule(&mut self) {
        if self.port_change.is_some() {
            // Nothing starts on the old session while it is being replaced.
            return;
        }
        let plan = queue::plan(&self.entries, &self.settings);
        for id in plan.stop {
            tracing::info!(id, "queued: over the active torrent limit");
            self.stop(id);
        }
        for id in plan.start {
            self.start(id);
        }
        for id in plan.fetch {
            self.fetch(id);
        }
    }

    fn start(&mut self, id: u64) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        // The torrent shares the entry's metainfo: a start copies a pointer, not the file list.
        let Some(metainfo) = e.metainfo.as_ref().map(Arc::clone) else {
            return;
        };
        // A record saved before the roots were configured (or narrowed) does not start outside
        // them.
        if let Err(err) = self.roots.confine(&e.record.download_dir) {
            e.error = Some(err.to_string());
            return;
        }
        e.run = Run::Starting;
        let options = AddTorrentOptions {
            seed: Some(SeedLimits::default()),
            existing: if e.record.trust_data {
                ExistingData::Complete
            } else {
                ExistingData::Check
            },
            resume: Some(Arc::clone(&self.store) as Arc<dyn ResumeStore>),
            file_priorities: e.priorities(),
            max_upload_rate: e.record.max_upload_rate,
            max_download_rate: e.record.max_download_rate,
            sequential: e.record.sequential,
            first_last_pieces: e.record.first_last_piece,
        };
        let dir = e.record.download_dir.clone();
        let mut peers = std::mem::take(&mut e.found_peers);
        let magnet_peers = e
            .magnet
            .as_ref()
            .map(|m| m.peers.clone())
            .unwrap_or_default();
        let session = Arc::clone(&self.session);
        let reports = self.reports.clone();
        tokio::spawn(async move {
            let result = session
                .add_torrent_with(metainfo, dir.as_path(), options)
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
            Run::Running(running) => {
                e.last = Some(running.progress.borrow().clone());
                e.run = Run::Stopping;
                let reports = self.reports.clone();
                tokio::spawn(async move {
                    let result = running.stop().await;
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
        let Some(magnet) = &e.magnet else {
            e.error = Some("the torrent has neither metadata nor a valid magnet link".into());
            return;
        };
        let handle = self.session.fetch_metadata(magnet);
        let progress = handle.progress();
        let reports = self.reports.clone();
        let task = tokio::spawn(async move {
            let result = handle.wait().await;
            let _ = reports.send(Report::Fetched(id, Box::new(result)));
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
                        e.run = Run::Running(Running::new(handle));
                        if e.record.trust_data {
                            // Its resume state vouches for the data from now on.
                            e.record.trust_data = false;
                            if let Err(err) = self.store.put_torrent(&e.record, None) {
                                tracing::warn!(id, "cannot save the record: {err}");
                            }
                        }
                        // Paused, or a re-check, a move or a port change came while it started:
                        // each waits for it to stop.
                        let held = !matches!(e.hold, Hold::None) || self.port_change.is_some();
                        if e.record.paused || held || self.shutting_down.is_some() {
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
                    match e.hold {
                        Hold::Recheck => {
                            e.hold = Hold::None;
                            e.last = None;
                            e.resumed = None;
                            if let Err(err) = self.store.forget_resume(e.record.info_hash) {
                                e.error = Some(err.to_string());
                            }
                        }
                        Hold::Move(..) => self.start_move(id),
                        Hold::None | Hold::Moving => {}
                    }
                }
            }
            Report::Moved(id, dir, reply, result) => {
                let Some(e) = self.entries.get_mut(&id) else {
                    let _ = reply.send(Err(ManagerError::NotFound(id)));
                    return;
                };
                e.hold = Hold::None;
                let answer = match result {
                    Ok(()) => {
                        e.record.download_dir = dir;
                        self.store
                            .put_torrent(&e.record, None)
                            .map(|()| e.view())
                            .map_err(ManagerError::from)
                    }
                    Err(message) => Err(ManagerError::Conflict(message)),
                };
                let _ = reply.send(answer);
            }
            Report::SessionReady(result) => {
                let Some(change) = self.port_change.take() else {
                    return;
                };
                let answer = match result {
                    Ok(session) => {
                        session.set_rate_limits(
                            self.settings.max_upload_rate,
                            self.settings.max_download_rate,
                        );
                        let port = session.listen_addr().port();
                        tracing::info!(port, "peers connect to the new port");
                        // The old session (listener, DHT) ends when its last torrent has let go.
                        self.session = Arc::new(session);
                        self.session_config.listen_port = port;
                        Ok(port)
                    }
                    Err(err) => Err(ManagerError::Invalid(format!(
                        "cannot listen for peers on port {}: {err}",
                        change.port
                    ))),
                };
                let _ = change.reply.send(answer);
            }
            Report::Details(id, reply, result) => {
                let answer = result.and_then(|d| {
                    let e = self.entry(id)?;
                    Ok(e.inside(Some(d.have), d.peers, d.tracker))
                });
                let _ = reply.send(answer);
            }
            Report::Fetched(id, result) => {
                let Some(e) = self.entries.get_mut(&id) else {
                    return;
                };
                e.fetch = None;
                match *result {
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
            Report::PrioritiesSet(id, reply, result) => {
                // The torrent may have been removed meanwhile.
                let _ = reply.send(result.and_then(|()| self.entry(id).map(Entry::detail)));
            }
        }
    }

    /// Once a second: stamps running torrents that have just finished with the time
    /// (`completed_at`, once), and stops those that failed (disk full, files gone), so the error
    /// shows and a resume starts them afresh. Only torrents whose progress changed since the last
    /// look are read: in an idle daemon, a version check each.
    fn watch_running(&mut self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut failed: Vec<(u64, String)> = Vec::new();
        for (&id, e) in &mut self.entries {
            let Run::Running(running) = &mut e.run else {
                continue;
            };
            // Err: the torrent's task ended, and its last progress was seen already.
            if !running.progress.has_changed().unwrap_or(false) {
                continue;
            }
            if let TorrentState::Failed(msg) = &running.progress.borrow_and_update().state {
                failed.push((id, msg.clone()));
            }
            if e.record.completed_at.is_none() && e.done() {
                self.plan_stale = true;
                e.record.completed_at = Some(now);
                if let Err(err) = self.store.put_torrent(&e.record, None) {
                    tracing::warn!("cannot save a completion time: {err}");
                }
            }
        }
        for (id, msg) in failed {
            self.plan_stale = true;
            tracing::warn!(id, "torrent failed: {msg}");
            if let Some(e) = self.entries.get_mut(&id) {
                e.error = Some(msg);
            }
            self.stop(id);
        }
    }

    /// Stops every torrent and abandons every metadata fetch (a shutdown, a peer port change).
    fn stop_all(&mut self) {
        let ids: Vec<u64> = self.entries.keys().copied().collect();
        for id in ids {
            if let Some(e) = self.entries.get_mut(&id) {
                if let Some((fetch, _)) = e.fetch.take() {
                    fetch.abort();
                }
            }
            self.stop(id);
        }
    }

    fn begin_shutdown(&mut self, reply: Option<oneshot::Sender<()>>) {
        tracing::info!("stopping every torrent");
        self.stop_all();
        let (tx, rx) = oneshot::channel();
        self.shutting_down = Some(tx);
        if let Some(reply) = reply {
            let session = Arc::clone(&self.session);
            tokio::spawn(async move {
                let _ = rx.await;
                // uTP connections end only if we end them: FIN, then RESET after 300 ms.
                session.close_utp(Duration::from_millis(300)).await;
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
