//! Metainfo (.torrent) files, v1 (BEP 3, "metainfo files"), with announce-list tiers (BEP 12), the private
//! flag (BEP 27) and padding files (BEP 47).
//!
//! (The parser is being written; these are the types the rest of the crate codes against.)

use crate::{InfoHash, Layout};

/// A parsed, validated v1 metainfo file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// SHA-1 of the exact bytes of the `info` dictionary as they appear in the file.
    pub info_hash: InfoHash,
    /// The validated `info` dictionary.
    pub info: Info,
    /// Tracker URLs in tiers (BEP 12 `announce-list`, or `[[announce]]` when there is no list), in file order.
    pub announce_tiers: Vec<Vec<String>>,
    /// `comment`, if present and UTF-8.
    pub comment: Option<String>,
    /// `created by`, if present and UTF-8.
    pub created_by: Option<String>,
    /// `creation date`, seconds since the Unix epoch, if present.
    pub creation_date: Option<i64>,
}

/// The `info` dictionary (BEP 3), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// `name`: the file name (single-file) or top directory name (multi-file); a safe path component.
    pub name: String,
    /// `piece length` in bytes.
    pub piece_length: u32,
    /// `pieces`: one SHA-1 per piece.
    pub piece_hashes: Vec<[u8; 20]>,
    /// The files in torrent order, padding files included. A single-file torrent has one entry.
    pub files: Vec<FileEntry>,
    /// True for a multi-file torrent (`files` key), false for a single-file one (`length` key).
    pub multi_file: bool,
    /// `private` = 1 (BEP 27): only the metainfo's trackers may be used to find peers.
    pub private: bool,
    /// The piece/block/file geometry, checked against `piece_hashes`.
    pub layout: Layout,
}

/// One file of the torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The path relative to the output directory, as safe components. For a multi-file torrent the first
    /// component is the torrent's `name`; for a single-file torrent it is just `[name]`.
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
    /// A BEP 47 padding file (attr contains `p`): its bytes are zeros and it is never written to disk.
    pub padding: bool,
}
