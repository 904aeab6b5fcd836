//! The daemon's torrent manager: one owner task holds every torrent's record and handle, takes
//! requests (add, pause, resume, remove, priorities, limits, settings, views) one at a time, keeps
//! the store in step, and decides which torrents run (the queue). Starting and stopping a torrent
//! take time (files are `stat`ed and opened, trackers told `stopped`), and so may a command to a
//! running torrent, so they run in their own tasks and report back; requests never wait behind them.
//!
//! Here: [`Manager`], the cheap handle every caller holds, and [`start`]. `request` holds what may
//! be asked; `owner` answers; `entry` is one torrent and its views; `running` a started torrent's
//! handle and the commands in flight to it; `queue` decides which torrents run; `delete_data`
//! removes a torrent's files.

mod delete_data;
mod entry;
mod labels;
mod owner;
mod queue;
mod relocate;
mod request;
mod running;

use std::sync::Arc;

use swarmer::{FilePriority, Session};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub(crate) use labels::{LabelEdit, Labels};
pub(crate) use request::{Add, DownloadOrder, ManagerError, SettingsPatch, Source};
use request::{Reply, Request};

use super::download_dir::DownloadDir as Dir;
use super::download_dir::Roots;
use super::model::{Inside, SessionStats, Torrent, TorrentDetail};
use super::scrape_board::{ScrapeBoard, ScrapeTarget};
use super::store::{Settings, Store, StoreError};

/// Capacity of the request queue; callers wait (asynchronously) when it is full.
const REQUEST_QUEUE: usize = 256;

/// A cheap, cloneable handle to the manager task.
#[derive(Clone)]
pub(crate) struct Manager {
    requests: mpsc::Sender<Request>,
    /// The scrape scheduler's records, which [`Manager::details`] adds to a torrent's details.
    scrapes: Arc<ScrapeBoard>,
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

    /// Adds a torrent; it starts when the queue lets it unless `paused`. Its trackers are
    /// scraped soon after.
    pub(crate) async fn add(&self, add: Add) -> Result<Torrent, ManagerError> {
        let added = self.call(|r| Request::Add(add, r)).await;
        if added.is_ok() {
            self.scrapes.wake();
        }
        added
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

    /// One torrent with what only its running task knows: verified pieces, per-file progress,
    /// peers and tracker status (from the saved resume state when it is not running).
    pub(crate) async fn details(&self, id: u64) -> Result<Inside, ManagerError> {
        let mut inside = self.call(|r| Request::Details(id, r)).await?;
        if let Some(target) = inside
            .metainfo
            .as_ref()
            .map(|m| m.info_hash)
            .or_else(|| swarmer_proto::InfoHash::from_hex(&inside.detail.torrent.info_hash))
        {
            inside.scrapes = self.scrapes.of(&target);
        }
        Ok(inside)
    }

    /// Every torrent with trackers: its info hash and tracker URLs; `None` once the manager is
    /// gone.
    pub(crate) async fn scrape_targets(&self) -> Option<Vec<ScrapeTarget>> {
        self.ask(Request::ScrapeTargets).await
    }

    /// The current session's DHT node, if it runs one (the session changes with the peer port).
    pub(crate) async fn dht(&self) -> Option<swarmer::DhtHandle> {
        self.ask(Request::Dht).await.flatten()
    }

    /// The current session's port mapping task, if on.
    pub(crate) async fn port_mapping(&self) -> Option<swarmer::PortMappingHandle> {
        self.ask(Request::PortMapping).await.flatten()
    }

    /// The scrape scheduler's records, for the scheduler to fill.
    pub(crate) fn scrape_board(&self) -> Arc<ScrapeBoard> {
        Arc::clone(&self.scrapes)
    }

    /// Every category and tag.
    pub(crate) async fn labels(&self) -> Labels {
        self.ask(Request::Labels).await.unwrap_or_default()
    }

    /// Changes categories, tags, or torrents' labels, and saves them.
    pub(crate) async fn edit_labels(&self, edit: LabelEdit) -> Result<(), ManagerError> {
        self.call(|r| Request::EditLabels(edit, r)).await
    }

    /// Hashes all of a torrent's data again (it stops, forgets its resume state, and starts when
    /// the queue lets it).
    pub(crate) async fn recheck(&self, id: u64) -> Result<Torrent, ManagerError> {
        self.call(|r| Request::Recheck(id, r)).await
    }

    /// Announces a running torrent to its trackers now (answered once it has taken the request).
    pub(crate) async fn reannounce(&self, id: u64) -> Result<(), ManagerError> {
        self.call(|r| Request::Reannounce(id, r)).await
    }

    /// Moves a torrent's data to `dir` (inside the download roots) and keeps it there; answers
    /// once the files are moved. Without `move_data` the torrent only looks for its data there
    /// (and hashes what it finds, as a re-check).
    pub(crate) async fn set_location(
        &self,
        id: u64,
        dir: Dir,
        move_data: bool,
    ) -> Result<Torrent, ManagerError> {
        self.call(|r| Request::SetLocation(id, dir, move_data, r))
            .await
    }

    /// Shows a torrent under `name` (its files keep theirs).
    pub(crate) async fn rename(&self, id: u64, name: String) -> Result<Torrent, ManagerError> {
        self.call(|r| Request::Rename(id, name, r)).await
    }

    /// Moves the daemon to peer port `port` (the next free one if it is taken; 0: any): every
    /// torrent stops, a new session listens there, and they start again. Answers with the port
    /// used, once the new session listens.
    pub(crate) async fn set_peer_port(&self, port: u16) -> Result<u16, ManagerError> {
        self.call(|r| Request::SetPeerPort(port, r)).await
    }

    /// Sets a torrent's download order (sequential, first and last pieces first); saved, and
    /// applied at once if it runs.
    pub(crate) async fn set_download_order(
        &self,
        id: u64,
        order: DownloadOrder,
    ) -> Result<Torrent, ManagerError> {
        self.call(|r| Request::SetDownloadOrder(id, order, r)).await
    }

    /// A reader of file `index` (of `info.files`) of a running torrent, for streaming.
    pub(crate) async fn open_file(
        &self,
        id: u64,
        index: usize,
    ) -> Result<swarmer::FileReader, ManagerError> {
        self.call(|r| Request::OpenFile(id, index, r)).await
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

/// Starts the manager task over `session` (made from `session_config`, which a change of peer port
/// reuses), restoring every torrent in `store`.
///
/// Errors: the store cannot be read.
pub(crate) fn start(
    session: Arc<Session>,
    store: Arc<Store>,
    defaults: Settings,
    roots: Roots,
    session_config: swarmer::SessionConfig,
) -> Result<(Manager, JoinHandle<()>), StoreError> {
    let (requests, requests_rx) = mpsc::channel(REQUEST_QUEUE);
    let task = owner::spawn(session, store, defaults, roots, session_config, requests_rx)?;
    let manager = Manager {
        requests,
        scrapes: Arc::default(),
    };
    Ok((manager, task))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use swarmer_proto::magnet::Magnet;
    use swarmer_proto::metainfo::Metainfo;

    use super::*;
    use crate::daemon::download_dir::DownloadDir;
    use crate::daemon::model::{Priority, StateName};

    async fn manager(dir: &Path) -> (Manager, JoinHandle<()>) {
        let config = swarmer::SessionConfig {
            bind_ip: Some("127.0.0.1".parse().unwrap()),
            listen_port: 0,
            ..swarmer::SessionConfig::default()
        };
        let session = Arc::new(Session::new(config.clone()).await.unwrap());
        let store = Arc::new(Store::open(&dir.join("state")).unwrap());
        let download_dir = DownloadDir::new(dir.join("downloads")).unwrap();
        let roots = Roots::new(std::slice::from_ref(&download_dir)).unwrap();
        let settings = Settings {
            max_upload_rate: None,
            max_download_rate: None,
            max_active_downloads: Some(5),
            max_active_seeds: None,
            download_dir,
            encryption: Default::default(),
        };
        start(session, store, settings, roots, config).unwrap()
    }

    fn magnet(hex: &str) -> Add {
        let text = format!("magnet:?xt=urn:btih:{hex}&dn=test");
        Add::new(Source::Magnet(
            Box::new(Magnet::parse(&text).unwrap()),
            text,
        ))
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

    /// A two-file torrent whose data is not on disk: `a` is one 64 KiB piece, `b` two.
    fn two_files() -> Add {
        let piece = 1 << 16;
        let mut info = format!(
            "d5:filesld6:lengthi{}e4:pathl1:aeed6:lengthi{}e4:pathl1:beee4:name3:two\
             12:piece lengthi{piece}e6:pieces60:",
            piece,
            2 * piece
        )
        .into_bytes();
        info.extend([7u8; 60]);
        info.push(b'e');
        let bytes = [b"d4:info".as_slice(), &info, b"e"].concat();
        let metainfo = Metainfo::from_bytes(&bytes).unwrap();
        Add::new(Source::Metainfo(Arc::new(metainfo), bytes))
    }

    /// A paused torrent's data moves (here: its one file) and its record follows, only inside the
    /// roots; a re-check of it forgets its resume state; a rename shows; labels stick.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn moves_rechecks_renames_and_labels_of_a_paused_torrent() {
        let dir = tempfile::tempdir().unwrap();
        let (manager, task) = manager(dir.path()).await;
        let mut add = two_files();
        add.paused = true;
        add.category = Some("tv".into());
        let t = manager.add(add).await.unwrap();
        let downloads = dir.path().join("downloads");
        std::fs::create_dir_all(downloads.join("two")).unwrap();
        std::fs::write(downloads.join("two/a"), b"data").unwrap();
        let elsewhere = DownloadDir::new(dir.path().join("elsewhere")).unwrap();
        assert!(matches!(
            manager.set_location(t.id, elsewhere, true).await,
            Err(ManagerError::Forbidden(_))
        ));
        let library = DownloadDir::new(downloads.join("library")).unwrap();
        let moved = manager
            .set_location(t.id, library.clone(), true)
            .await
            .unwrap();
        assert_eq!(moved.download_dir, library.as_path().display().to_string());
        assert_eq!(
            std::fs::read(downloads.join("library/two/a")).unwrap(),
            b"data"
        );
        assert!(!downloads.join("two").exists());
        assert_eq!(
            moved.state,
            StateName::Paused,
            "a paused torrent stays paused"
        );
        manager.recheck(t.id).await.unwrap();
        assert_eq!(
            manager.rename(t.id, "Shown".into()).await.unwrap().name,
            "Shown"
        );
        manager
            .edit_labels(LabelEdit::AddTags(vec![t.id], vec!["hd".into()]))
            .await
            .unwrap();
        let view = manager.get(t.id).await.unwrap().torrent;
        assert_eq!(
            view.category.as_deref(),
            Some("tv"),
            "an add creates its category"
        );
        assert_eq!(view.tags, ["hd"]);
        assert!(manager.labels().await.categories.contains_key("tv"));
        manager.shutdown().await;
        task.await.unwrap();
    }

    /// Waits (at most 10 s) until the torrent's view passes `check`.
    async fn wait_for(manager: &Manager, id: u64, check: impl Fn(&Torrent) -> bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !check(&manager.get(id).await.unwrap().torrent) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the torrent gets there");
    }

    /// File priorities reach a running torrent from tasks of their own, in the order they were
    /// asked, while the owner goes on answering; and the torrent still stops cleanly afterwards
    /// (it saves its resume state), so the commands gave its handle back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn priorities_reach_a_running_torrent_in_order() {
        use swarmer::FilePriority::{High, Skip};
        let dir = tempfile::tempdir().unwrap();
        let (manager, task) = manager(dir.path()).await;
        let t = manager.add(two_files()).await.unwrap();
        wait_for(&manager, t.id, |t| t.state == StateName::Downloading).await;
        let (first, list, second) = tokio::join!(
            manager.set_priorities(t.id, vec![Skip, High]),
            manager.list(),
            manager.set_priorities(t.id, vec![High, Skip]),
        );
        assert_eq!(list.len(), 1);
        let priorities = |d: TorrentDetail| d.files.iter().map(|f| f.priority).collect::<Vec<_>>();
        assert_eq!(priorities(first.unwrap()), [Priority::High, Priority::Skip]);
        assert_eq!(
            priorities(second.unwrap()),
            [Priority::High, Priority::Skip]
        );
        // The torrent took the second list last: it wants `a` only.
        wait_for(&manager, t.id, |t| t.wanted_bytes == 1 << 16).await;
        let hash = manager.list().await[0].info_hash.clone();
        manager.shutdown().await;
        task.await.unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let hash = swarmer_proto::InfoHash::from_hex(&hash).unwrap();
        assert!(
            swarmer::resume::ResumeStore::load(&store, hash)
                .unwrap()
                .is_some(),
            "a clean stop saves the resume state"
        );
    }
}
