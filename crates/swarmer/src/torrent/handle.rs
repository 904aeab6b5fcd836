//! A torrent as its user holds it ([`TorrentHandle`]): progress, stop, file priorities, peers and
//! rate limits, each a message to the torrent's owner task (rate limits excepted: they are shared
//! limiters, changed in place).

use std::net::SocketAddr;

use swarmer_proto::{FilePriority, InfoHash};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::command::Command;
use super::progress::{Details, Progress, TorrentState};
use super::reader::{FileReader, ReaderParts};
use crate::error::TorrentError;
use crate::rate::TorrentLimits;

/// A torrent in a [`Session`](crate::Session).
pub struct TorrentHandle {
    info_hash: InfoHash,
    progress: watch::Receiver<Progress>,
    commands: mpsc::Sender<Command>,
    task: Option<JoinHandle<Result<(), TorrentError>>>,
    /// The torrent's own rate limits, shared with its connections.
    limits: TorrentLimits,
    /// What a file reader needs, and the wishes (download order) it shares with the task.
    readers: ReaderParts,
}

impl TorrentHandle {
    /// The handle of the torrent `info_hash` whose task is `task`, which takes `commands` and
    /// publishes `progress`, with its own rate `limits`.
    pub(crate) fn new(
        info_hash: InfoHash,
        progress: watch::Receiver<Progress>,
        commands: mpsc::Sender<Command>,
        task: JoinHandle<Result<(), TorrentError>>,
        limits: TorrentLimits,
        readers: ReaderParts,
    ) -> TorrentHandle {
        TorrentHandle {
            info_hash,
            progress,
            commands,
            task: Some(task),
            limits,
            readers,
        }
    }

    /// Opens file `index` (of `info.files`) for reading while the torrent downloads: an
    /// `AsyncRead` + `AsyncSeek` whose position and read-ahead become deadlines for their pieces,
    /// and whose reads wait for pieces to be verified (see [`FileReader`]). It holds no reference
    /// to the handle and may outlive it; once the torrent stops, reads of missing pieces fail.
    ///
    /// Errors: [`TorrentError::NoSuchFile`] for an index past the files or of a padding file;
    /// [`TorrentError::TooManyReaders`] when [`MAX_READERS`](crate::MAX_READERS) are open.
    pub fn open_file(&self, index: usize) -> Result<FileReader, TorrentError> {
        let info = &self.readers.metainfo.info;
        if info.files.get(index).is_none_or(|f| f.padding) {
            return Err(TorrentError::NoSuchFile(index));
        }
        FileReader::new(self.readers.clone(), index).ok_or(TorrentError::TooManyReaders)
    }

    /// Downloads the wanted pieces in order, or not: the first
    /// [`SEQUENTIAL_WINDOW`](crate::SEQUENTIAL_WINDOW) bytes of those missing get deadlines, so
    /// they come first, from the fastest peers, while other peers' spare capacity still goes to
    /// the rest (rarest first). Takes effect at once; no round trip to the torrent's task.
    pub fn set_sequential(&self, on: bool) {
        self.readers.wishes.update(|w| w.sequential = on);
    }

    /// Whether the torrent downloads in order ([`TorrentHandle::set_sequential`]).
    pub fn sequential(&self) -> bool {
        self.readers.wishes.read(|w| w.sequential)
    }

    /// Downloads the first and last piece of every wanted file first (through deadlines), or not.
    pub fn set_first_last_pieces(&self, on: bool) {
        self.readers.wishes.update(|w| w.first_last = on);
    }

    /// Whether first and last pieces come first ([`TorrentHandle::set_first_last_pieces`]).
    pub fn first_last_pieces(&self) -> bool {
        self.readers.wishes.read(|w| w.first_last)
    }

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
    /// session's limits ([`Session::set_rate_limits`](crate::Session::set_rate_limits)) still apply on top. It takes effect at once,
    /// for open connections too, and needs no round trip to the torrent's task.
    pub fn set_rate_limits(&self, upload: Option<u64>, download: Option<u64>) {
        self.limits.upload.set_rate(upload);
        self.limits.download.set_rate(download);
    }

    /// This torrent's own `(upload, download)` limits in bytes per second; `None` is no limit.
    /// They start as [`AddTorrentOptions::max_upload_rate`](crate::AddTorrentOptions::max_upload_rate) and
    /// [`AddTorrentOptions::max_download_rate`](crate::AddTorrentOptions::max_download_rate).
    pub fn rate_limits(&self) -> (Option<u64>, Option<u64>) {
        (self.limits.upload.rate(), self.limits.download.rate())
    }

    /// Adds peer addresses to dial, as if a tracker had returned them (for example from a magnet link's
    /// `x.pe`, or a user's list). Addresses beyond the torrent's bound of known peers are ignored.
    pub async fn add_peers(&self, peers: Vec<SocketAddr>) {
        let _ = self.commands.send(Command::AddPeers(peers)).await;
    }

    /// Changes the file priorities (one per file of `info.files`, as
    /// [`AddTorrentOptions::file_priorities`](crate::AddTorrentOptions::file_priorities); empty wants every file). Files that become wanted are
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

    /// Announces to the trackers now, ignoring their minimum interval; `false` if the torrent has
    /// no trackers to ask (or is still checking its data).
    ///
    /// Errors: [`TorrentError::TaskGone`] if the torrent has ended.
    pub async fn reannounce(&self) -> Result<bool, TorrentError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Reannounce(tx))
            .await
            .map_err(|_| TorrentError::TaskGone)?;
        rx.await.map_err(|_| TorrentError::TaskGone)
    }

    /// Its verified pieces, connected peers and tracker status, built by the torrent's task when
    /// it gets to the request.
    ///
    /// Errors: [`TorrentError::TaskGone`] if the torrent has ended.
    pub async fn details(&self) -> Result<Details, TorrentError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Details(tx))
            .await
            .map_err(|_| TorrentError::TaskGone)?;
        rx.await.map_err(|_| TorrentError::TaskGone)
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
