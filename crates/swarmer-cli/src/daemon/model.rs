//! The daemon's view of its torrents and session, as the HTTP API shows them (JSON, and the OpenAPI
//! schemas generated from these types). The Transmission RPC maps the same views to its own fields.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a torrent is, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StateName {
    /// A magnet link whose metadata (BEP 9) is being fetched from peers.
    FetchingMetadata,
    /// Waiting for a free download or seed slot, or for its turn to start.
    Queued,
    /// Hashing data already on disk.
    Checking,
    /// Downloading pieces.
    Downloading,
    /// Every wanted piece is verified; uploading to peers.
    Seeding,
    /// Every wanted piece is verified; not serving peers.
    Complete,
    /// Paused by the user.
    Paused,
    /// Stopped by a local error (see `error`); resume to retry.
    Failed,
    /// Its data is being moved to another directory (it starts again there).
    Moving,
}

/// One torrent, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct Torrent {
    /// The daemon's id (never reused; the Transmission RPC's `id`).
    pub(crate) id: u64,
    /// The info hash peers and trackers know it by, 40 lowercase hex digits: the SHA-1 for v1 and
    /// hybrid torrents, the SHA-256 cut to 20 bytes for v2-only ones (BEP 52; as libtorrent and
    /// qBittorrent show them). The Transmission RPC's `hashString`.
    pub(crate) info_hash: String,
    /// The v2 info hash (SHA-256, BEP 52), 64 lowercase hex digits; null for v1 torrents and
    /// until a magnet link's metadata is known.
    #[serde(default)]
    pub(crate) info_hash_v2: Option<String>,
    /// The torrent's name (`info.name`, or the magnet link's `dn` until the metadata is known).
    pub(crate) name: String,
    /// Where it is.
    pub(crate) state: StateName,
    /// The local error that stopped it, if `state` is `failed`.
    pub(crate) error: Option<String>,
    /// Content size, bytes (0 until the metadata is known).
    pub(crate) total_bytes: u64,
    /// Bytes of the pieces holding wanted files, bytes.
    pub(crate) wanted_bytes: u64,
    /// Wanted bytes verified on disk, bytes.
    pub(crate) done_bytes: u64,
    /// `done_bytes / wanted_bytes`, 0 to 1.
    pub(crate) progress: f64,
    /// Download rate over the last second, bytes/s.
    pub(crate) download_rate: u64,
    /// Upload rate over the last second, bytes/s.
    pub(crate) upload_rate: u64,
    /// Payload received from peers since the torrent was added, bytes.
    pub(crate) downloaded_bytes: u64,
    /// Payload sent to peers since the torrent was added, bytes.
    pub(crate) uploaded_bytes: u64,
    /// Connected peers.
    pub(crate) peers: u32,
    /// Web seeds in use while downloading (BEP 19 `url-list`, BEP 17 `httpseeds`, magnet `ws=`;
    /// not those dropped for bad data).
    #[serde(default)]
    pub(crate) web_seeds: u32,
    /// Web seeds that sent data in the last second.
    #[serde(default)]
    pub(crate) web_seeds_sending: u32,
    /// Seconds until done at the current rate; null when idle or done.
    pub(crate) eta_seconds: Option<u64>,
    /// When it was added, seconds since the Unix epoch.
    pub(crate) added_at: u64,
    /// The directory its files go under.
    pub(crate) download_dir: String,
    /// Per-torrent upload limit, bytes/s; null: none.
    pub(crate) max_upload_rate: Option<u64>,
    /// Per-torrent download limit, bytes/s; null: none.
    pub(crate) max_download_rate: Option<u64>,
    /// Place in the queue (0 first).
    pub(crate) queue_position: u32,
    /// Its category (qBittorrent; a Transmission label), if any.
    #[serde(default)]
    pub(crate) category: Option<String>,
    /// Its tags (qBittorrent; Transmission labels), sorted.
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    /// When every wanted piece was first verified, seconds since the Unix epoch; null before.
    #[serde(default)]
    pub(crate) completed_at: Option<u64>,
    /// Downloads in order, through piece deadlines (Transmission `sequentialDownload`,
    /// qBittorrent `seq_dl`).
    #[serde(default)]
    pub(crate) sequential: bool,
    /// Downloads the first and last piece of every file first (qBittorrent `f_l_piece_prio`).
    #[serde(default)]
    pub(crate) first_last_piece: bool,
}

/// A file's priority in the API (BEP 3 leaves priorities to clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Priority {
    /// Not downloaded.
    Skip,
    /// Downloaded after normal and high files.
    Low,
    /// The default.
    Normal,
    /// Downloaded first.
    High,
}

impl From<swarmer::FilePriority> for Priority {
    fn from(p: swarmer::FilePriority) -> Priority {
        match p {
            swarmer::FilePriority::Skip => Priority::Skip,
            swarmer::FilePriority::Low => Priority::Low,
            swarmer::FilePriority::Normal => Priority::Normal,
            swarmer::FilePriority::High => Priority::High,
        }
    }
}

impl From<Priority> for swarmer::FilePriority {
    fn from(p: Priority) -> swarmer::FilePriority {
        match p {
            Priority::Skip => swarmer::FilePriority::Skip,
            Priority::Low => swarmer::FilePriority::Low,
            Priority::Normal => swarmer::FilePriority::Normal,
            Priority::High => swarmer::FilePriority::High,
        }
    }
}

/// One file of a torrent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct File {
    /// Its index in the torrent's file list.
    pub(crate) index: u32,
    /// Its path under the download directory, `/`-separated.
    pub(crate) path: String,
    /// Its length, bytes.
    pub(crate) length: u64,
    /// Its priority.
    pub(crate) priority: Priority,
    /// Its media type, from its extension (`application/octet-stream` when unknown).
    pub(crate) mime_type: String,
    /// Where to stream it, with HTTP Range, while the torrent downloads:
    /// `/api/v1/torrents/{id}/files/{index}/stream`.
    pub(crate) stream_url: String,
    /// Its bytes in verified pieces (from the running torrent or its saved resume state); 0 in
    /// views that do not ask the torrent (the list, the event stream).
    #[serde(default)]
    pub(crate) done_bytes: u64,
}

/// One torrent with its files and trackers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct TorrentDetail {
    /// What the list shows.
    #[serde(flatten)]
    pub(crate) torrent: Torrent,
    /// The files (padding files left out), empty until the metadata is known.
    pub(crate) files: Vec<File>,
    /// Tracker URLs, every tier in order.
    pub(crate) trackers: Vec<String>,
    /// Web seed URLs: BEP 19 (`url-list`, magnet `ws=`) then BEP 17 (`httpseeds`).
    #[serde(default)]
    pub(crate) web_seed_urls: Vec<String>,
    /// Pieces in the torrent.
    pub(crate) piece_count: u32,
    /// Piece length, bytes.
    pub(crate) piece_length: u64,
    /// Verified pieces.
    pub(crate) pieces_have: u32,
    /// A magnet link for the torrent (BEP 9).
    pub(crate) magnet: String,
    /// An M3U playlist of its audio and video files' stream URLs:
    /// `/api/v1/torrents/{id}/playlist.m3u`.
    pub(crate) playlist_url: String,
}

/// The whole session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct SessionStats {
    /// Torrents in the daemon.
    pub(crate) torrents: u32,
    /// Torrents running (checking, downloading, seeding or fetching metadata).
    pub(crate) active: u32,
    /// Torrents paused.
    pub(crate) paused: u32,
    /// Download rate of all torrents, bytes/s.
    pub(crate) download_rate: u64,
    /// Upload rate of all torrents, bytes/s.
    pub(crate) upload_rate: u64,
    /// Payload received by the torrents present, bytes.
    pub(crate) downloaded_bytes: u64,
    /// Payload sent by the torrents present, bytes.
    pub(crate) uploaded_bytes: u64,
    /// The TCP and UDP (uTP, DHT, UDP trackers) port peers reach us on.
    pub(crate) listen_port: u16,
    /// Which transports carry peer connections: `tcp`, `utp` (BEP 29) or `both` (set at start,
    /// with `--transport` or `transport` in the config file).
    pub(crate) transport: String,
    /// Port mapping on the router: `off`, `searching`, `failed`, `closed`, or how the ports were
    /// mapped (`UPnP`, `NAT-PMP`, `PCP`).
    #[serde(default)]
    pub(crate) port_mapping: String,
    /// Our external address as the router reported it when mapping the ports.
    #[serde(default)]
    pub(crate) external_ip: Option<String>,
    /// swarmer's version.
    pub(crate) version: String,
}

/// A torrent with what only its running task knows (the manager's `details`); not sent as it is:
/// each API maps it to its own fields.
#[derive(Debug, Clone)]
pub(crate) struct Inside {
    /// The torrent with its files.
    pub(crate) detail: TorrentDetail,
    /// Verified pieces, if known (the metadata is, and the torrent runs or saved a resume state).
    pub(crate) have: Option<swarmer_proto::Bitfield>,
    /// Bytes of each file of `detail.files` in verified pieces.
    pub(crate) file_done: Vec<u64>,
    /// Connected peers (none when not running).
    pub(crate) peers: Vec<swarmer::PeerDetails>,
    /// How announcing goes, while running with trackers.
    pub(crate) tracker: Option<swarmer::tracker::AnnouncerStatus>,
    /// Its metainfo, once known (shared, not copied).
    pub(crate) metainfo: Option<std::sync::Arc<swarmer_proto::metainfo::Metainfo>>,
    /// What each tracker (by announce URL) said of it when last scraped.
    pub(crate) scrapes:
        std::collections::HashMap<String, crate::daemon::scrape_board::ScrapeRecord>,
}
