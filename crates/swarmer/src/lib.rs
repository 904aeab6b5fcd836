//! swarmer, the embeddable BitTorrent client library: a [`Session`] hosts torrents, talks to trackers and
//! peers with tokio, and reports progress. The protocol logic lives in `swarmer-proto`, which this crate
//! drives: see ARCHITECTURE.md for the map.

mod atomic_file;
mod check;
mod clock;
mod config;
mod connections;
mod create;
mod dht;
mod error;
mod interfaces;
mod lsd;
mod magnet;
mod mse;
mod peer;
mod peer_book;
mod port_mapping;
mod rate;
pub mod resume;
mod session;
mod shared;
mod sources;
mod space;
pub mod storage;
mod torrent;
pub mod tracker;
mod udp;
mod utp;

pub use atomic_file::write_atomically;
pub use check::{VerifyReport, verify};
pub use config::{Encryption, SessionConfig, Transport};
pub use create::{CreateProgress, CreateTorrent, CreateTorrentError, create_torrent};
pub use dht::{DEFAULT_BOOTSTRAP, DhtConfig, DhtHandle, DhtSearch};
pub use error::{SessionError, TorrentError};
pub use magnet::{
    FetchedMetadata, MetadataError, MetadataFetchHandle, MetadataProgress, resolve_peers,
};
pub use port_mapping::{MappingMethod, PortMappingConfig, PortMappingHandle, PortMappingState};
pub use session::Session;
pub use space::{NotEnoughSpace, free_bytes, human_bytes};
pub use swarmer_proto::FilePriority;
pub use torrent::{
    AddTorrentOptions, Details, ExistingData, FileReader, MAX_READ_AHEAD, MAX_READERS,
    MIN_READ_AHEAD, PeerDetails, Progress, READ_CHUNK, SEQUENTIAL_WINDOW, SeedLimits,
    TorrentHandle, TorrentState, WebSeedDetails,
};
