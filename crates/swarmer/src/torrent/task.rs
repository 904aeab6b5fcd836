//! A torrent before its peers: what the session opened for it (metainfo, storage, the fast-resume
//! state read at start) and the check of the data already on disk, which vouches for pieces from the
//! resume state and hashes the rest on every core.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use swarmer_proto::metainfo::Metainfo;
use swarmer_proto::priority::{PriorityCountError, piece_priorities};
use swarmer_proto::{Bitfield, FilePriority};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::command::Command;
use super::options::{AddTorrentOptions, ExistingData};
use super::progress::{Progress, TorrentState};
use super::wishes::Shared;
use crate::check::{Resumed, hash_pieces, hashing_threads};
use crate::error::{SessionError, TorrentError};
use crate::rate::TorrentLimits;
use crate::resume::{self, Loaded, ResumeState};
use crate::shared::SessionShared;
use crate::space;
use crate::storage::{Storage, StorageOptions, parts_file_name};
use crate::tracker::TrackerClient;

/// A torrent the session has opened, before it runs.
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
    /// The fast-resume state the store holds, once [`TorrentTask::check`] found that it matched
    /// the files exactly: the first periodic save is skipped when it would write the same.
    pub(crate) loaded_state: Option<ResumeState>,
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
    /// What readers and the download order wish to have soon, shared with the handle.
    pub(crate) wishes: Arc<Shared>,
    /// The verified pieces, for readers; published by the running torrent.
    pub(crate) have_tx: watch::Sender<Arc<Bitfield>>,
}

impl TorrentTask {
    /// Opens a torrent's files under `output_dir` (creating them, or with [`ExistingData::Complete`]
    /// opening them read-only) after reading its fast-resume state, and returns the task with the
    /// receiver of its progress. The files are `stat`ed once, before any is created.
    ///
    /// Errors: the files cannot be created or opened, or the disk cannot hold the rest
    /// ([`SessionError::Storage`], [`SessionError::NotEnoughSpace`]).
    pub(crate) async fn open(
        shared: Arc<SessionShared>,
        tracker: TrackerClient,
        metainfo: Arc<Metainfo>,
        output_dir: &Path,
        mut options: AddTorrentOptions,
        commands: mpsc::Receiver<Command>,
        limits: TorrentLimits,
    ) -> Result<(TorrentTask, watch::Receiver<Progress>), SessionError> {
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
        let (storage, resumed, priorities, had_data) = opened?;
        options.file_priorities = priorities;
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
            web_seeds: 0,
            web_seeds_sending: 0,
            pieces_have: 0,
            piece_count: metainfo.info.layout.piece_count(),
            hash_failures: 0,
            checked_pieces: 0,
            pieces_to_check: 0,
        });
        let (options_sequential, options_first_last) =
            (options.sequential, options.first_last_pieces);
        let piece_count = metainfo.info.layout.piece_count() as usize;
        let task = TorrentTask {
            shared,
            tracker,
            metainfo,
            storage: Arc::new(storage),
            root: output_dir.to_path_buf(),
            had_data,
            resumed,
            loaded_state: None,
            options,
            write_lock: Default::default(),
            progress_tx,
            commands,
            early_peers: Vec::new(),
            limits,
            wishes: Arc::new(Shared::new(options_sequential, options_first_last)),
            have_tx: watch::Sender::new(Arc::new(Bitfield::new(piece_count))),
        };
        Ok((task, progress_rx))
    }

    pub(super) fn publish_state(&self, state: TorrentState) {
        self.progress_tx.send_modify(|p| p.state = state);
    }

    /// The pieces already on disk, from the fast-resume state where it can vouch for them and by
    /// hashing as [`AddTorrentOptions::existing`] says; `None` if the torrent was stopped meanwhile.
    /// Also returns the transfer totals of earlier runs.
    pub(super) async fn check(&mut self) -> Result<Option<(Bitfield, (u64, u64))>, TorrentError> {
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
                if loaded.unchanged() {
                    self.loaded_state = Some(loaded.state.clone());
                }
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
        // What the selection wants and what of it is still missing, as the engine will count them
        // once it runs: a progress bar resumes where the state left it, not from zero.
        let (mut wanted_bytes, mut left_bytes) = (0, 0);
        for piece in layout.pieces() {
            if wanted[piece.as_usize()].is_wanted() {
                let len = u64::from(layout.piece_len(piece));
                wanted_bytes += len;
                if !have.get(piece.as_usize()) {
                    left_bytes += len;
                }
            }
        }
        self.progress_tx.send_modify(|p| {
            p.pieces_have = have.count_ones() as u32;
            p.verified_bytes = vouched_bytes;
            p.wanted_bytes = wanted_bytes;
            p.left_bytes = left_bytes;
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
                    // No trackers are asked while checking; they are announced to once it is over.
                    Some(Command::Reannounce(reply)) => {
                        let _ = reply.send(false);
                        continue;
                    }
                    // The pieces verified so far; no peers or trackers while checking.
                    Some(Command::Details(reply)) => {
                        let _ = reply.send(super::progress::Details {
                            have: have.clone(),
                            peers: Vec::new(),
                            tracker: None,
                            web_seeds: super::web_seeds::listed(&self.metainfo),
                            deadline_pieces: 0,
                        });
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
                // Only wanted pieces are hashed.
                p.left_bytes = p.left_bytes.saturating_sub(verified);
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
    pub(super) fn piece_priorities(&self) -> Vec<FilePriority> {
        let info = &self.metainfo.info;
        let padding: Vec<bool> = info.files.iter().map(|f| f.padding).collect();
        piece_priorities(&info.layout, &self.options.file_priorities, &padding)
            .unwrap_or_else(|_| vec![FilePriority::Normal; info.layout.piece_count() as usize])
    }

    /// Keeps new file priorities, after checking that there is one per file (or none).
    pub(super) fn store_priorities(
        &mut self,
        priorities: Vec<FilePriority>,
    ) -> Result<(), TorrentError> {
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
}
