//! Saving a running torrent's fast-resume state: every 30 s when it changed, at once after a check,
//! on completion and on stop; one save at a time, on the blocking pool, data files flushed first so
//! the state never vouches for a piece that is not on disk. A torrent whose state has not changed
//! since it was loaded or last saved has no save due, so an idle one is never woken for it.

use std::sync::Arc;
use std::time::Duration;

use swarmer_proto::{Bitfield, FilePriority};
use tokio::time::Instant;

use super::task::TorrentTask;
use crate::resume::{self, ResumeState, ResumeStore};
use crate::storage::parts_file_name;

/// How often fast-resume state is saved while the torrent runs.
const RESUME_INTERVAL: Duration = Duration::from_secs(30);

/// Saving a torrent's fast-resume state: one save at a time, on the blocking pool.
pub(super) struct ResumeSaver {
    store: Arc<dyn ResumeStore>,
    /// Transfer totals of earlier runs, added to this run's.
    earlier: (u64, u64),
    /// When the next periodic save is due, once something changed.
    next: Instant,
    /// Something the state records may have changed since the last save started.
    changed: bool,
    saving: Option<tokio::task::JoinHandle<()>>,
    /// The state last handed to a save (without file stamps): an idle torrent is not saved again, so
    /// a daemon seeding thousands of them does not flush and commit each every 30 s for nothing.
    /// It starts as the state the torrent was loaded from, when that matched the files exactly.
    last_saved: Option<ResumeState>,
}

/// What a save records of the running torrent: its verified pieces, its file priorities and this
/// run's `(uploaded, downloaded)` payload bytes.
pub(super) struct Snapshot<'a> {
    pub(super) have: &'a Bitfield,
    pub(super) priorities: &'a [FilePriority],
    pub(super) transferred: (u64, u64),
}

impl ResumeSaver {
    /// A saver into `store` whose totals add to `earlier` (`(uploaded, downloaded)` of earlier runs);
    /// the first save is due at once after a check (`hashed`: a restart then needs no hashing, even
    /// after a crash), else after the usual interval. `loaded` is the state the store holds (the
    /// one the torrent started from, when it matched the files): a first save that would write the
    /// same is skipped.
    pub(super) fn new(
        store: Arc<dyn ResumeStore>,
        earlier: (u64, u64),
        hashed: bool,
        loaded: Option<ResumeState>,
    ) -> Self {
        let first = if hashed {
            Duration::ZERO
        } else {
            RESUME_INTERVAL
        };
        ResumeSaver {
            store,
            earlier,
            next: Instant::now() + first,
            changed: hashed || loaded.is_none(),
            saving: None,
            last_saved: loaded.map(|state| ResumeState {
                files: Vec::new(),
                parts: None,
                ..state
            }),
        }
    }

    /// When the next periodic save is due: `None` while nothing changed since the last one.
    pub(super) fn next(&self) -> Option<Instant> {
        self.changed.then_some(self.next)
    }

    /// Something the state records (pieces, priorities, transfer totals) may have changed.
    pub(super) fn changed(&mut self) {
        self.changed = true;
    }

    /// Starts saving `now` on the blocking pool, unless a save is under way or nothing changed since
    /// the last one. The pieces saved are those verified and written by now; the files are flushed
    /// before the state is written, so the state never vouches for data that is not on disk.
    pub(super) fn start(&mut self, t: &TorrentTask, now: Snapshot<'_>) {
        self.next = Instant::now() + RESUME_INTERVAL;
        if self.saving.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        self.changed = false;
        let metainfo = Arc::clone(&t.metainfo);
        let state = ResumeState {
            info_hash: metainfo.info_hash,
            have: now.have.clone(),
            files: Vec::new(),
            parts: None,
            priorities: now.priorities.to_vec(),
            uploaded: self.earlier.0 + now.transferred.0,
            downloaded: self.earlier.1 + now.transferred.1,
        };
        if self.last_saved.as_ref() == Some(&state) {
            return;
        }
        self.last_saved = Some(state.clone());
        let (storage, root, store) = (
            Arc::clone(&t.storage),
            t.root.clone(),
            Arc::clone(&self.store),
        );
        self.saving = Some(tokio::task::spawn_blocking(move || {
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

    /// Saves now and waits for it (after any save under way).
    pub(super) async fn save(&mut self, t: &TorrentTask, now: Snapshot<'_>) {
        if let Some(saving) = self.saving.take() {
            let _ = saving.await;
        }
        self.start(t, now);
        if let Some(saving) = self.saving.take() {
            let _ = saving.await;
        }
    }
}
