//! The library's errors about local matters: why a session could not start or take a torrent
//! ([`SessionError`]) and why a torrent stopped ([`TorrentError`]). Peer misbehaviour is never one of
//! them: it closes that connection only (see `swarmer_proto::torrent::PeerFault`).

use std::net::SocketAddr;
use std::path::PathBuf;

use swarmer_proto::InfoHash;
use swarmer_proto::priority::PriorityCountError;

use crate::space::NotEnoughSpace;
use crate::storage::StorageError;
use crate::tracker::AnnounceError;

/// Why a session could not start or take a torrent.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address tried.
        addr: SocketAddr,
        /// The system's error (shown in the message, so not a `source`).
        error: std::io::Error,
    },
    /// The DHT's UDP socket could not be bound.
    #[error("cannot start the DHT on {addr}: {error}")]
    Dht {
        /// The address tried.
        addr: SocketAddr,
        /// The system's error (shown in the message, so not a `source`).
        error: std::io::Error,
    },
    /// The tracker client could not be built.
    #[error("cannot set up the tracker client")]
    Tracker(#[source] AnnounceError),
    /// The torrent is already in the session.
    #[error("torrent {0} is already added")]
    Duplicate(InfoHash),
    /// The torrent's files could not be created or opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The filesystem under the output directory cannot hold the rest of the torrent.
    #[error(transparent)]
    NotEnoughSpace(#[from] NotEnoughSpace),
    /// [`AddTorrentOptions::file_priorities`](crate::AddTorrentOptions::file_priorities) is neither empty nor one per file.
    #[error(transparent)]
    FilePriorities(#[from] PriorityCountError),
}

/// A failure that stops a torrent: local problems only (peer problems never fail a torrent).
#[derive(Debug, thiserror::Error)]
pub enum TorrentError {
    /// Reading or writing the torrent's files failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// File priorities that are not one per file of the torrent.
    #[error(transparent)]
    FilePriorities(#[from] PriorityCountError),
    /// No such file to read: the index is past the torrent's files, or names a padding file.
    #[error("the torrent has no file {0} to read")]
    NoSuchFile(usize),
    /// [`MAX_READERS`](crate::MAX_READERS) readers are open on the torrent already.
    #[error("{} readers are open on the torrent already", crate::MAX_READERS)]
    TooManyReaders,
    /// The torrent's task ended unexpectedly (a bug: it panicked).
    #[error("torrent task ended unexpectedly")]
    TaskGone,
    /// [`ExistingData::Complete`](crate::ExistingData::Complete): some pieces on disk do not match the torrent.
    #[error("{bad} of {total} pieces do not match the torrent (the first is piece {first}, in {})", file.display())]
    Incomplete {
        /// Pieces that failed their hash check.
        bad: u32,
        /// Pieces in the torrent.
        total: u32,
        /// The first bad piece's index.
        first: u32,
        /// The file (relative to the output directory) holding the first bad piece's first byte.
        file: PathBuf,
    },
}
