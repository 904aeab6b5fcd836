//! The manager's requests: what callers may ask (add, pause, resume, remove, priorities, limits,
//! settings, views), the values they send, and why a request fails. Shared by the handle callers
//! hold (`Manager`) and the owner task that answers.

use crate::daemon::scrape_board::ScrapeTarget;
use crate::encryption::EncryptionMode;
use std::path::PathBuf;
use std::sync::Arc;

use swarmer::FilePriority;
use swarmer_proto::InfoHash;
use swarmer_proto::magnet::Magnet;
use swarmer_proto::metainfo::Metainfo;
use tokio::sync::oneshot;

use super::labels::{LabelEdit, LabelError, Labels};
use crate::daemon::download_dir::{DownloadDir, OutsideRoots};
use crate::daemon::model::{Inside, SessionStats, Torrent, TorrentDetail};
use crate::daemon::store::{Settings, StoreError};

/// Most torrents the daemon holds: every one costs a task, a record and its metainfo.
pub(crate) const MAX_TORRENTS: usize = 20_000;

/// Why a request failed. The daemon maps each to an HTTP status in one place (`error::status_of`).
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
    /// The request clashes with the daemon's state (an unknown or existing category, a move to
    /// where files already are).
    #[error("{0}")]
    Conflict(String),
    /// The request names a directory outside the download roots.
    #[error(transparent)]
    Forbidden(#[from] OutsideRoots),
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

impl From<LabelError> for ManagerError {
    fn from(e: LabelError) -> ManagerError {
        match e {
            LabelError::Conflict(m) => ManagerError::Conflict(m),
            LabelError::Invalid(m) => ManagerError::Invalid(m),
        }
    }
}

/// What to add, parsed at the edge (HTTP handler, RPC method, watch folder) so the manager never
/// parses it again.
#[derive(Debug)]
pub(crate) enum Source {
    /// A metainfo file, parsed, and its bytes (which the store keeps).
    Metainfo(Arc<Metainfo>, Vec<u8>),
    /// A magnet link (BEP 9), parsed, and the text it was parsed from (which the store keeps).
    Magnet(Box<Magnet>, String),
}

/// An add request.
#[derive(Debug)]
pub(crate) struct Add {
    /// The torrent.
    pub(crate) source: Source,
    /// Where the files go; the session's default directory if `None`.
    pub(crate) download_dir: Option<DownloadDir>,
    /// Add it paused.
    pub(crate) paused: bool,
    /// Its category (created if new; its save path is the default directory for this add).
    pub(crate) category: Option<String>,
    /// Its tags (created if new).
    pub(crate) tags: Vec<String>,
    /// A name to show instead of the torrent's own.
    pub(crate) display_name: Option<String>,
    /// Its own `(upload, download)` limits, bytes/s.
    pub(crate) limits: (Option<u64>, Option<u64>),
    /// Take the data on disk as complete at the first start, without hashing it (qBittorrent
    /// `skip_checking`).
    pub(crate) trust_data: bool,
    /// Download in order (qBittorrent `sequentialDownload`).
    pub(crate) sequential: bool,
    /// First and last piece of every file first (qBittorrent `firstLastPiecePrio`).
    pub(crate) first_last_piece: bool,
}

impl Add {
    /// Adds `source` with every option at its default: the default directory, not paused, no
    /// labels, no limits.
    pub(crate) fn new(source: Source) -> Add {
        Add {
            source,
            download_dir: None,
            paused: false,
            category: None,
            tags: Vec::new(),
            display_name: None,
            limits: (None, None),
            trust_data: false,
            sequential: false,
            first_last_piece: false,
        }
    }
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
    /// Message Stream Encryption: prefer, require or disable (for connections opened from now on).
    #[serde(default)]
    pub(crate) encryption: Option<EncryptionMode>,
}

/// Tells a present-but-null field (`Some(None)`) from an absent one (`None`, via `default`).
fn some<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Where the owner sends a request's answer.
pub(super) type Reply<T> = oneshot::Sender<Result<T, ManagerError>>;

/// One request to the owner task, with where to send the answer.
pub(super) enum Request {
    List(oneshot::Sender<Vec<Torrent>>),
    Get(u64, Reply<TorrentDetail>),
    Add(Add, Reply<Torrent>),
    Pause(u64, Reply<Torrent>),
    Resume(u64, Reply<Torrent>),
    Remove(u64, bool, Reply<()>),
    SetPriorities(u64, Vec<FilePriority>, Reply<TorrentDetail>),
    SetLimits(u64, Option<u64>, Option<u64>, Reply<Torrent>),
    Details(u64, Reply<Inside>),
    Labels(oneshot::Sender<Labels>),
    EditLabels(LabelEdit, Reply<()>),
    Recheck(u64, Reply<Torrent>),
    Reannounce(u64, Reply<()>),
    SetLocation(u64, DownloadDir, bool, Reply<Torrent>),
    Rename(u64, String, Reply<Torrent>),
    SetPeerPort(u16, Reply<u16>),
    Settings(oneshot::Sender<Settings>),
    SetSettings(SettingsPatch, Reply<Settings>),
    Stats(oneshot::Sender<SessionStats>),
    ScrapeTargets(oneshot::Sender<Vec<ScrapeTarget>>),
    Dht(oneshot::Sender<Option<swarmer::DhtHandle>>),
    /// The current session's port mapping task, to close at exit.
    PortMapping(oneshot::Sender<Option<swarmer::PortMappingHandle>>),
    Shutdown(oneshot::Sender<()>),
    SetDownloadOrder(u64, DownloadOrder, Reply<Torrent>),
    OpenFile(u64, usize, Reply<swarmer::FileReader>),
}

impl Request {
    /// Whether handling it can change what the queue plan decides (which torrents run): reads
    /// (listings, details, labels, settings, statistics, a file to stream, a reannounce) cannot,
    /// so they do not make the owner plan every torrent again. At 10,000 torrents that re-plan
    /// was 42 % of the daemon's CPU while a client listed torrents.
    pub(super) fn may_change_plan(&self) -> bool {
        !matches!(
            self,
            Request::List(_)
                | Request::Get(..)
                | Request::Details(..)
                | Request::Labels(_)
                | Request::Reannounce(..)
                | Request::Settings(_)
                | Request::Stats(_)
                | Request::ScrapeTargets(_)
                | Request::Dht(_)
                | Request::PortMapping(_)
                | Request::OpenFile(..)
        )
    }
}

/// A change of a torrent's download order; `None` leaves a setting as it is.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DownloadOrder {
    /// Download in order.
    pub(crate) sequential: Option<bool>,
    /// First and last piece of every file first.
    pub(crate) first_last_piece: Option<bool>,
}
