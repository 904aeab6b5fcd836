//! A running torrent as the owner holds it: its handle, its progress, and the commands in flight.
//! A command that waits for the torrent's answer (file priorities) runs in a task of its own, so
//! the owner never waits on a torrent; the task reports back through a callback.
//!
//! **Invariant:** the handle's `Arc` is cloned only into command tasks, each command task waits for
//! the one before it (so commands reach the torrent in the order the requests came) and drops its
//! clone before it ends, and [`Running::stop`] waits for the last one. So when `stop` runs, its
//! `Arc` is the only one left and the handle can be consumed by `TorrentHandle::stop`.

use std::sync::Arc;
use std::time::Duration;

use swarmer::{FilePriority, Progress, TorrentError, TorrentHandle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::request::ManagerError;

/// How long a command task waits for the torrent to take a command (file priorities).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// A started torrent, until it is stopped.
pub(super) struct Running {
    /// Shared only with the command tasks in flight (see the invariant above).
    handle: Arc<TorrentHandle>,
    /// Its progress: views read it here.
    pub(super) progress: watch::Receiver<Progress>,
    /// The task of the last command sent, which ends after every earlier one.
    last_command: Option<JoinHandle<()>>,
}

impl Running {
    /// Holds a torrent the session just started.
    pub(super) fn new(handle: TorrentHandle) -> Running {
        Running {
            progress: handle.progress(),
            handle: Arc::new(handle),
            last_command: None,
        }
    }

    /// Changes the torrent's own rate limits (at once: they are shared with its connections).
    pub(super) fn set_rate_limits(&self, upload: Option<u64>, download: Option<u64>) {
        self.handle.set_rate_limits(upload, download);
    }

    /// Sends file priorities from a task of its own, after the commands sent before, and calls
    /// `done` there with the outcome: the torrent applies them in its own task and answers at once
    /// (a file that cannot be created fails the torrent, which shows in its state), but a busy
    /// torrent may take a while, and the owner must not wait. Never blocks.
    pub(super) fn set_file_priorities(
        &mut self,
        priorities: Vec<FilePriority>,
        done: impl FnOnce(Result<(), ManagerError>) + Send + 'static,
    ) {
        let handle = Arc::clone(&self.handle);
        let before = self.last_command.take();
        self.last_command = Some(tokio::spawn(async move {
            if let Some(before) = before {
                let _ = before.await;
            }
            let sent =
                tokio::time::timeout(COMMAND_TIMEOUT, handle.set_file_priorities(priorities)).await;
            // Before the task ends, so that `stop` finds the handle unshared.
            drop(handle);
            done(match sent {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(ManagerError::Invalid(err.to_string())),
                Err(_) => Err(ManagerError::Invalid(
                    "the torrent did not take the priorities in time".into(),
                )),
            });
        }));
    }

    /// Asks the torrent to announce now, from a task of its own after the commands sent before,
    /// and calls `done` there: an error if it has no trackers to ask (or is checking). Never
    /// blocks.
    pub(super) fn reannounce(
        &mut self,
        done: impl FnOnce(Result<(), ManagerError>) + Send + 'static,
    ) {
        let handle = Arc::clone(&self.handle);
        let before = self.last_command.take();
        self.last_command = Some(tokio::spawn(async move {
            if let Some(before) = before {
                let _ = before.await;
            }
            let got = tokio::time::timeout(COMMAND_TIMEOUT, handle.reannounce()).await;
            drop(handle);
            done(match got {
                Ok(Ok(true)) => Ok(()),
                Ok(Ok(false)) => Err(ManagerError::Conflict(
                    "the torrent has no trackers to announce to now (none, or it is checking)"
                        .into(),
                )),
                Ok(Err(err)) => Err(ManagerError::Invalid(err.to_string())),
                Err(_) => Err(ManagerError::Invalid(
                    "the torrent did not answer in time".into(),
                )),
            });
        }));
    }

    /// Asks the torrent for its [`swarmer::Details`] from a task of its own, after the commands
    /// sent before, and calls `done` there with them. Never blocks.
    pub(super) fn details(
        &mut self,
        done: impl FnOnce(Result<swarmer::Details, ManagerError>) + Send + 'static,
    ) {
        let handle = Arc::clone(&self.handle);
        let before = self.last_command.take();
        self.last_command = Some(tokio::spawn(async move {
            if let Some(before) = before {
                let _ = before.await;
            }
            let got = tokio::time::timeout(COMMAND_TIMEOUT, handle.details()).await;
            drop(handle);
            done(match got {
                Ok(Ok(details)) => Ok(details),
                Ok(Err(err)) => Err(ManagerError::Invalid(err.to_string())),
                Err(_) => Err(ManagerError::Invalid(
                    "the torrent did not answer in time".into(),
                )),
            });
        }));
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
