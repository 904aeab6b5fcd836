//! A running torrent as the owner holds it: its handle, its progress, and the commands in flight.
//! A command that waits for the torrent's answer (file priorities, details, a reannounce) runs in a
//! task of its own, so the owner never waits on a torrent; the task reports back through a
//! callback. At most 64 wait per torrent.
//!
//! **Invariant:** the handle's `Arc` is cloned only into command tasks, each command task waits for
//! the one before it (so commands reach the torrent in the order the requests came) and drops its
//! clone before it ends, and [`Running::stop`] waits for the last one. So when `stop` runs, its
//! `Arc` is the only one left and the handle can be consumed by `TorrentHandle::stop`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use swarmer::{FilePriority, Progress, TorrentError, TorrentHandle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::request::ManagerError;

/// How long a command task waits for the torrent to take a command (file priorities, details, a
/// reannounce).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Most commands waiting for one torrent at once (requests from every API together).
const MAX_IN_FLIGHT: usize = 64;

/// A started torrent, until it is stopped.
pub(super) struct Running {
    /// Shared only with the command tasks in flight (see the invariant above).
    handle: Arc<TorrentHandle>,
    /// Its progress: views read it here; only the owner's once-a-second look marks it seen.
    pub(super) progress: watch::Receiver<Progress>,
    /// The task of the last command sent, which ends after every earlier one.
    last_command: Option<JoinHandle<()>>,
    /// Commands sent and not yet answered.
    in_flight: Arc<AtomicUsize>,
}

impl Running {
    /// Holds a torrent the session just started.
    pub(super) fn new(handle: TorrentHandle) -> Running {
        let mut progress = handle.progress();
        // The owner's once-a-second look reads only changed progress: the first one reads it all.
        progress.mark_changed();
        Running {
            progress,
            handle: Arc::new(handle),
            last_command: None,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Sets the download order at once (shared with the torrent, no command needed).
    pub(super) fn set_download_order(&self, sequential: bool, first_last: bool) {
        self.handle.set_sequential(sequential);
        self.handle.set_first_last_pieces(first_last);
    }

    /// A reader of file `index` (see `TorrentHandle::open_file`); it holds no clone of the handle.
    pub(super) fn open_file(&self, index: usize) -> Result<swarmer::FileReader, TorrentError> {
        self.handle.open_file(index)
    }

    /// Changes the torrent's own rate limits (at once: they are shared with its connections).
    pub(super) fn set_rate_limits(&self, upload: Option<u64>, download: Option<u64>) {
        self.handle.set_rate_limits(upload, download);
    }

    /// Runs `command` on the handle in a task of its own, after the commands sent before, and
    /// calls `done` there with its outcome (a timeout after [`COMMAND_TIMEOUT`]). At most
    /// [`MAX_IN_FLIGHT`] commands wait at once; beyond that `done` gets a refusal at once. Never
    /// blocks.
    fn command<T, F, Fut>(
        &mut self,
        what: &'static str,
        command: F,
        done: impl FnOnce(Result<T, ManagerError>) + Send + 'static,
    ) where
        T: Send + 'static,
        F: FnOnce(Arc<TorrentHandle>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ManagerError>> + Send + 'static,
    {
        if self.in_flight.load(Ordering::SeqCst) >= MAX_IN_FLIGHT {
            done(Err(ManagerError::Conflict(format!(
                "the torrent has {MAX_IN_FLIGHT} commands waiting; try again"
            ))));
            return;
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let in_flight = Arc::clone(&self.in_flight);
        let handle = Arc::clone(&self.handle);
        let before = self.last_command.take();
        self.last_command = Some(tokio::spawn(async move {
            if let Some(before) = before {
                let _ = before.await;
            }
            // The future owns the handle's clone and drops it when it ends, before `done`, so
            // that `stop` finds the handle unshared.
            let outcome = tokio::time::timeout(COMMAND_TIMEOUT, command(handle))
                .await
                .unwrap_or_else(|_| {
                    Err(ManagerError::Invalid(format!(
                        "the torrent did not take the {what} in time"
                    )))
                });
            in_flight.fetch_sub(1, Ordering::SeqCst);
            done(outcome);
        }));
    }

    /// Sends file priorities (see [`Running::command`]): the torrent applies them in its own task
    /// and answers at once (a file that cannot be created fails the torrent, which shows in its
    /// state), but a busy torrent may take a while, and the owner must not wait.
    pub(super) fn set_file_priorities(
        &mut self,
        priorities: Vec<FilePriority>,
        done: impl FnOnce(Result<(), ManagerError>) + Send + 'static,
    ) {
        self.command(
            "priorities",
            |handle| async move {
                handle
                    .set_file_priorities(priorities)
                    .await
                    .map_err(|err| ManagerError::Invalid(err.to_string()))
            },
            done,
        );
    }

    /// Asks the torrent to announce now (see [`Running::command`]): an error if it has no
    /// trackers to ask (or is checking).
    pub(super) fn reannounce(
        &mut self,
        done: impl FnOnce(Result<(), ManagerError>) + Send + 'static,
    ) {
        self.command(
            "reannounce",
            |handle| async move {
                match handle.reannounce().await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(ManagerError::Conflict(
                        "the torrent has no trackers to announce to now (none, or it is checking)"
                            .into(),
                    )),
                    Err(err) => Err(ManagerError::Invalid(err.to_string())),
                }
            },
            done,
        );
    }

    /// Asks the torrent for its [`swarmer::Details`] (see [`Running::command`]).
    pub(super) fn details(
        &mut self,
        done: impl FnOnce(Result<swarmer::Details, ManagerError>) + Send + 'static,
    ) {
        self.command(
            "request for details",
            |handle| async move {
                handle
                    .details()
                    .await
                    .map_err(|err| ManagerError::Invalid(err.to_string()))
            },
            done,
        );
    }

    /// Stops the torrent once the commands in flight are through (each is bounded by
    /// [`COMMAND_TIMEOUT`]): flush, save resume state, announce `stopped`.
    pub(super) async fn stop(self) -> Result<(), TorrentError> {
        if let Some(last) = self.last_command {
            let _ = last.await;
        }
        match Arc::into_inner(self.handle) {
            Some(handle) => handle.stop().await,
            // Not reached: see the invariant at the top of this file.
            None => Err(TorrentError::TaskGone),
        }
    }
}
