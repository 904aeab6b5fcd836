//! One torrent as the manager holds it ([`Entry`]: its record, metainfo, task and last progress)
//! and the views built from it (the API's [`Torrent`] and [`TorrentDetail`]), read from the running
//! torrent's `watch` without copying engine state.

use crate::daemon::scrape_board::ScrapeTarget;
use std::sync::Arc;

use swarmer::{FilePriority, MetadataProgress, Progress, TorrentState};
use swarmer_proto::Bitfield;
use swarmer_proto::magnet::Magnet;
use swarmer_proto::metainfo::Metainfo;
use swarmer_proto::priority::piece_priorities;
use swarmer_proto::tracker::http::percent_encode;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::request::{DownloadOrder, ManagerError, Reply};
use super::running::Running;
use crate::daemon::download_dir::DownloadDir;
use crate::daemon::media;
use crate::daemon::model::{File, Inside, StateName, Torrent, TorrentDetail};
use crate::daemon::store::{Store, TorrentRecord};

/// How far a torrent's task is.
pub(super) enum Run {
    /// Not running (queued, paused, failed, or waiting for metadata).
    Idle,
    /// Being started.
    Starting,
    /// Running.
    Running(Running),
    /// Being stopped.
    Stopping,
}

/// Work on a torrent that must finish before it may start again.
pub(super) enum Hold {
    /// None.
    None,
    /// Re-check once stopped: forget the resume state, so the next start hashes everything.
    Recheck,
    /// Move the data to this directory (or, with `false`, only look for it there) once stopped,
    /// then answer.
    Move(DownloadDir, bool, Reply<Torrent>),
    /// The data is being moved.
    Moving,
}

/// One torrent in the manager.
pub(super) struct Entry {
    /// What the store keeps of it.
    pub(super) record: TorrentRecord,
    /// Its metainfo, once known (a magnet link's arrives from peers); shared with the running
    /// torrent, never copied.
    pub(super) metainfo: Option<Arc<Metainfo>>,
    /// The magnet link it was added from, parsed once (`record.magnet` is its text): its `x.pe`
    /// peers are dialled at every start, and it fetches the metadata.
    pub(super) magnet: Option<Magnet>,
    /// Its task.
    pub(super) run: Run,
    /// Its progress when it last stopped (so a paused torrent still shows what it has); a running
    /// torrent is read from its `watch`, never copied here.
    pub(super) last: Option<Progress>,
    /// What the fast-resume state said at start-up, until the torrent first reports progress:
    /// verified pieces and whether every wanted one is (so a finished torrent queues, and runs
    /// while it checks, as a seed, not a download).
    pub(super) resumed: Option<(u32, bool)>,
    /// The local error that stopped it.
    pub(super) error: Option<String>,
    /// Work that keeps it from starting until done (a re-check's stop, a move).
    pub(super) hold: Hold,
    /// A magnet link's metadata fetch, while it runs.
    pub(super) fetch: Option<(JoinHandle<()>, watch::Receiver<MetadataProgress>)>,
    /// Peers the metadata fetch found, handed to the torrent when it starts.
    pub(super) found_peers: Vec<std::net::SocketAddr>,
}

impl Entry {
    /// A torrent that is not running: just added, or restored from the store with what its resume
    /// state said (`resumed`).
    pub(super) fn new(
        record: TorrentRecord,
        metainfo: Option<Arc<Metainfo>>,
        magnet: Option<Magnet>,
        resumed: Option<(u32, bool)>,
    ) -> Entry {
        Entry {
            record,
            metainfo,
            magnet,
            run: Run::Idle,
            last: None,
            resumed,
            error: None,
            hold: Hold::None,
            fetch: None,
            found_peers: Vec::new(),
        }
    }

    /// Whether every wanted piece is there: what the running torrent says once it has checked its
    /// data, else what it said last, else what its resume state said.
    pub(super) fn done(&self) -> bool {
        if let Run::Running(running) = &self.run {
            let p = running.progress.borrow();
            if !matches!(p.state, TorrentState::Checking) {
                return p.is_done();
            }
        }
        match &self.last {
            Some(p) => p.is_done(),
            None => self.resumed.is_some_and(|(_, done)| done),
        }
    }

    /// Its progress: the running torrent's, else the last one seen.
    pub(super) fn progress(&self) -> Option<Progress> {
        match &self.run {
            Run::Running(running) => Some(running.progress.borrow().clone()),
            _ => self.last.clone(),
        }
    }

    /// Where it is, as the API names it.
    pub(super) fn state(&self) -> StateName {
        match self.hold {
            Hold::Move(..) | Hold::Moving => return StateName::Moving,
            Hold::Recheck => return StateName::Checking,
            Hold::None => {}
        }
        if let Run::Running(running) = &self.run {
            return match &running.progress.borrow().state {
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

    /// It as listed.
    pub(super) fn view(&self) -> Torrent {
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
        let (web_seeds, web_seeds_sending) = match &progress {
            Some(p) if running => (p.web_seeds as u32, p.web_seeds_sending as u32),
            _ => (0, 0),
        };
        let left = wanted.saturating_sub(done);
        Torrent {
            id: r.id,
            info_hash: r.info_hash.to_hex(),
            info_hash_v2: self
                .metainfo
                .as_ref()
                .and_then(|m| m.info_hash_v2())
                .map(|v2| v2.iter().map(|b| format!("{b:02x}")).collect()),
            name: r.display_name.clone().unwrap_or_else(|| {
                self.metainfo
                    .as_ref()
                    .map_or_else(|| r.name.clone(), |m| m.info.name.clone())
            }),
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
            web_seeds,
            web_seeds_sending,
            eta_seconds: (left > 0 && down_rate > 0).then(|| left.div_ceil(down_rate)),
            added_at: r.added_at,
            download_dir: r.download_dir.as_path().display().to_string(),
            max_upload_rate: r.max_upload_rate,
            max_download_rate: r.max_download_rate,
            queue_position: r.queue_position,
            category: r.category.clone(),
            tags: r.tags.clone(),
            completed_at: r.completed_at,
            sequential: r.sequential,
            first_last_piece: r.first_last_piece,
        }
    }

    /// It with its files and trackers.
    pub(super) fn detail(&self) -> TorrentDetail {
        let torrent = self.view();
        let priorities = self.priorities();
        let (files, trackers, web_seed_urls, piece_count, piece_length) = match &self.metainfo {
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
                        mime_type: media::content_type(&f.path).to_string(),
                        stream_url: media::stream_path(self.record.id, i),
                        done_bytes: 0,
                    })
                    .collect(),
                m.announce_tiers.iter().flatten().cloned().collect(),
                m.url_list.iter().chain(&m.http_seeds).cloned().collect(),
                m.info.layout.piece_count(),
                u64::from(m.info.piece_length),
            ),
            None => (Vec::new(), Vec::new(), Vec::new(), 0, 0),
        };
        let pieces_have = match self.progress() {
            Some(p) => p.pieces_have,
            None => self.resumed.map_or(0, |(have, _)| have),
        };
        let magnet = self.record.magnet.clone().unwrap_or_else(|| {
            let mut uri = format!("magnet:?xt=urn:btih:{}&dn=", self.record.info_hash);
            percent_encode(&mut uri, torrent.name.as_bytes());
            // Its trackers too, as Transmission and qBittorrent write them.
            for tracker in self
                .metainfo
                .iter()
                .flat_map(|m| m.announce_tiers.iter().flatten())
            {
                uri.push_str("&tr=");
                percent_encode(&mut uri, tracker.as_bytes());
            }
            uri
        });
        TorrentDetail {
            torrent,
            files,
            trackers,
            web_seed_urls,
            piece_count,
            piece_length,
            pieces_have,
            magnet,
            playlist_url: media::playlist_path(self.record.id),
        }
    }

    /// Its wire info hash and trackers, if it has any trackers.
    pub(super) fn scrape_target(&self) -> Option<ScrapeTarget> {
        let (info_hash, trackers) = match (&self.metainfo, &self.magnet) {
            (Some(m), _) => (
                m.info_hash,
                m.announce_tiers.iter().flatten().cloned().collect(),
            ),
            (None, Some(magnet)) => (magnet.info_hash, magnet.trackers.clone()),
            (None, None) => return None,
        };
        let trackers: Vec<String> = trackers;
        (!trackers.is_empty()).then_some(ScrapeTarget {
            info_hash,
            trackers,
        })
    }

    /// It with its verified pieces (`have`), the bytes of each file they cover, its peers and its
    /// tracker status.
    pub(super) fn inside(
        &self,
        have: Option<Bitfield>,
        peers: Vec<swarmer::PeerDetails>,
        tracker: Option<swarmer::tracker::AnnouncerStatus>,
    ) -> Inside {
        let mut detail = self.detail();
        let mut done = vec![0u64; self.metainfo.as_ref().map_or(0, |m| m.info.files.len())];
        if let (Some(m), Some(have)) = (&self.metainfo, &have) {
            let layout = &m.info.layout;
            for piece in layout.pieces().filter(|p| have.get(p.as_usize())) {
                for slice in layout.piece_slices(piece) {
                    if let Some(d) = done.get_mut(slice.file.as_usize()) {
                        *d += slice.length;
                    }
                }
            }
        }
        for f in &mut detail.files {
            f.done_bytes = done.get(f.index as usize).copied().unwrap_or(0);
        }
        let file_done = detail.files.iter().map(|f| f.done_bytes).collect();
        Inside {
            detail,
            have,
            file_done,
            peers,
            tracker,
            metainfo: self.metainfo.clone(),
            scrapes: Default::default(),
        }
    }

    /// Sets its download order (sequential, first and last pieces), saves it in `store` and, if
    /// it runs, applies it at once.
    pub(super) fn set_download_order(
        &mut self,
        store: &Store,
        order: DownloadOrder,
    ) -> Result<Torrent, ManagerError> {
        let r = &mut self.record;
        let sequential = order.sequential.unwrap_or(r.sequential);
        let first_last = order.first_last_piece.unwrap_or(r.first_last_piece);
        if (sequential, first_last) != (r.sequential, r.first_last_piece) {
            r.sequential = sequential;
            r.first_last_piece = first_last;
            store.put_torrent(r, None)?;
        }
        if let Run::Running(running) = &self.run {
            running.set_download_order(sequential, first_last);
        }
        Ok(self.view())
    }

    /// A reader of its file `index`, for streaming; it must be running.
    pub(super) fn open_file(&self, index: usize) -> Result<swarmer::FileReader, ManagerError> {
        match &self.run {
            Run::Running(running) => running.open_file(index).map_err(|e| match e {
                swarmer::TorrentError::NoSuchFile(i) => {
                    ManagerError::Invalid(format!("no file {i}"))
                }
                other => ManagerError::Conflict(other.to_string()),
            }),
            _ => Err(ManagerError::Conflict(
                "the torrent is not running; resume it to stream its files".into(),
            )),
        }
    }

    /// Its file priorities, one per file of `info.files` (empty: all normal).
    pub(super) fn priorities(&self) -> Vec<FilePriority> {
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

/// The saved resume state of the torrent of `m`, if there is one that reads.
fn saved_state(store: &Store, m: &Metainfo) -> Option<swarmer_proto::resume::ResumeState> {
    let state = store.with_resume(m.info_hash, |bytes| {
        swarmer_proto::resume::ResumeState::decode(
            bytes,
            m.info.layout.piece_count() as usize,
            m.info.files.len(),
        )
    })?;
    state.ok()
}

/// The verified pieces of the saved resume state, if there is one that reads.
pub(super) fn saved_have(store: &Store, m: &Metainfo) -> Option<Bitfield> {
    Some(saved_state(store, m)?.have)
}

/// Verified pieces in the saved resume state, and whether they are every wanted piece.
pub(super) fn resumed_pieces(
    store: &Store,
    m: &Metainfo,
    record: &TorrentRecord,
) -> Option<(u32, bool)> {
    let state = saved_state(store, m)?;
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
