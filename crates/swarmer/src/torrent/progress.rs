//! What a torrent shows of itself: its [`TorrentState`] and the [`Progress`] snapshot its owner task
//! publishes on every change, and the larger [`Details`] it builds only when asked.

use std::net::SocketAddr;

use swarmer_proto::Bitfield;

use crate::tracker::AnnouncerStatus;

/// Where a torrent is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentState {
    /// Hashing the data already on disk ([`ExistingData::Check`](crate::ExistingData::Check) and [`ExistingData::Complete`](crate::ExistingData::Complete));
    /// [`Progress::checked_pieces`] counts up.
    Checking,
    /// Downloading pieces.
    Downloading,
    /// Every wanted piece (all of them without a file selection) is verified and on disk, and we
    /// upload the pieces we have to peers (until a [`SeedLimits`](crate::SeedLimits) is reached or the torrent is
    /// stopped).
    Seeding,
    /// Every wanted piece is verified and flushed to disk, and we no longer serve peers.
    Complete,
    /// Stopped by a local error (disk full, permission); the message says which file and what failed.
    Failed(String),
    /// Stopped on request.
    Stopped,
}

/// A snapshot of a torrent's progress, published on every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The torrent's state.
    pub state: TorrentState,
    /// Total content size in bytes (padding files included).
    pub total_bytes: u64,
    /// Bytes of the pieces that hold wanted files (the selection, in whole pieces): `total_bytes`
    /// without a file selection. Progress of the selection is `wanted_bytes - left_bytes`.
    pub wanted_bytes: u64,
    /// Bytes of wanted pieces not verified yet.
    pub left_bytes: u64,
    /// Bytes in verified pieces.
    pub verified_bytes: u64,
    /// Payload bytes received from peers and web seeds, including discarded ones.
    pub downloaded_bytes: u64,
    /// Payload bytes received that were discarded (duplicates or failed pieces).
    pub wasted_bytes: u64,
    /// Payload bytes sent to peers.
    pub uploaded_bytes: u64,
    /// Download rate over the last second, bytes/s.
    pub download_rate: u64,
    /// Upload rate over the last second, bytes/s.
    pub upload_rate: u64,
    /// Connected peers (handshake done).
    pub peers: usize,
    /// Web seeds in use while downloading (BEP 19, BEP 17; not those dropped for bad data).
    pub web_seeds: usize,
    /// Web seeds that sent data in the last second.
    pub web_seeds_sending: usize,
    /// Verified pieces.
    pub pieces_have: u32,
    /// Pieces in the torrent.
    pub piece_count: u32,
    /// Pieces that failed their hash check so far.
    pub hash_failures: u32,
    /// Pieces hashed so far while [`TorrentState::Checking`].
    pub checked_pieces: u32,
    /// Pieces to hash while [`TorrentState::Checking`]: all of them without fast-resume state, only
    /// those touching changed files with it.
    pub pieces_to_check: u32,
}

impl Progress {
    /// Bytes of the selection verified so far: `wanted_bytes - left_bytes` (all verified bytes
    /// without a file selection).
    pub fn wanted_done_bytes(&self) -> u64 {
        self.wanted_bytes.saturating_sub(self.left_bytes)
    }

    /// Every wanted piece is verified and on disk ([`TorrentState::Seeding`] or
    /// [`TorrentState::Complete`]).
    pub fn is_done(&self) -> bool {
        matches!(self.state, TorrentState::Seeding | TorrentState::Complete)
    }
}

/// What [`TorrentHandle::details`](crate::TorrentHandle::details) returns: the torrent's state
/// beyond [`Progress`], too large to publish on every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    /// Verified pieces.
    pub have: Bitfield,
    /// Connected peers (handshake done).
    pub peers: Vec<PeerDetails>,
    /// How announcing goes; `None` for a torrent without trackers.
    pub tracker: Option<AnnouncerStatus>,
    /// Every web seed of the torrent (its `url-list`, `httpseeds` or magnet `ws=`), in use or not.
    pub web_seeds: Vec<super::web_seeds::WebSeedDetails>,
    /// Pieces with a deadline now (time-critical: those under open readers and their read-ahead,
    /// and those a sequential or first-and-last-pieces download asks for first).
    pub deadline_pieces: usize,
}

/// One connected peer in [`Details`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDetails {
    /// Its address (for an incoming connection, the source address).
    pub addr: SocketAddr,
    /// We dialled it.
    pub outgoing: bool,
    /// Rates, pieces, choking and interest, its client name, and the carrier (uTP or TCP,
    /// encrypted or not), as the engine sees them.
    pub status: swarmer_proto::torrent::PeerStatus,
}
