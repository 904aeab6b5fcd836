//! The sans-IO core of swarmer: every BitTorrent codec and decision, with no sockets, no clock and
//! no tasks. Callers pass bytes and the current time in and drain actions out.
//!
//! The crate follows BEP 3 (the BitTorrent protocol) and the BEPs cited in each module.

pub mod allowed_fast;
pub mod bencode;
pub mod bitfield;
pub mod blame;
pub mod choker;
pub mod compact;
pub mod create;
pub mod dht;
pub mod digest;
pub mod extension;
pub mod hashes;
pub mod layer_fetch;
pub mod layout;
pub mod lsd;
pub mod magnet;
pub mod merkle;
pub mod metadata;
pub mod metainfo;
pub mod mse;
pub mod picker;
pub mod priority;
pub mod resume;
pub mod sim;
pub mod time;
pub mod torrent;
pub mod tracker;
pub mod utp;
pub mod webseed;
pub mod wire;

mod ids;

pub use bitfield::Bitfield;
pub use ids::{InfoHash, PeerId};
pub use layout::{BLOCK_SIZE, BlockRef, FileIndex, Layout, LayoutError, PieceIndex};
pub use priority::FilePriority;
