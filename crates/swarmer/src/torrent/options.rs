//! How a torrent is added to a session ([`AddTorrentOptions`]): seeding limits, what to make of data
//! already on disk, fast-resume state, file priorities and the torrent's own rate limits.

use std::sync::Arc;
use std::time::Duration;

use swarmer_proto::FilePriority;

use crate::resume::ResumeStore;

/// What to do with data already in the output directory when a torrent is added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExistingData {
    /// Create missing files and download every piece, whatever the files hold.
    #[default]
    Ignore,
    /// Hash the pieces already on disk (on all cores) and download only those that do not match.
    Check,
    /// Seed data we have: every file must exist with its length (nothing is created; files are opened
    /// read-only) and every piece must match, or the torrent fails with [`TorrentError::Incomplete`](crate::TorrentError::Incomplete).
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
    /// Download the wanted pieces in order: the first 16 MiB of those still missing get deadlines
    /// (the engine's time-critical pieces), while the rest of the torrent keeps its rarest-first
    /// order. [`crate::TorrentHandle::set_sequential`] changes it.
    pub sequential: bool,
    /// Download the first and last piece of every wanted file first (through deadlines), as players
    /// read them first. [`crate::TorrentHandle::set_first_last_pieces`] changes it.
    pub first_last_pieces: bool,
}
