//! Why bytes are not a usable metainfo file: one error type for the v1 and v2 parsers, with messages
//! that name the offending key.

use crate::bencode::DecodeError;
use crate::{BLOCK_SIZE, LayoutError};

/// The largest .torrent file (or BEP 9 `info` dictionary) swarmer parses: 40 MiB. Callers reading a file
/// should stop reading past this many bytes; [`Metainfo::from_bytes`](crate::metainfo::Metainfo::from_bytes) and [`Info::from_bytes`](crate::metainfo::Info::from_bytes) refuse
/// longer input with [`MetainfoError::TooLarge`] before decoding anything.
///
/// Large enough for a million files with names of a dozen characters (about 38 MB), or 100 TiB of content
/// in 64 MiB pieces (1.6 million hashes, 32 MB); real torrents are far smaller (libtorrent's default limit
/// is 10 MB). The cap is what bounds the parser's memory: every bencode node becomes a 48-byte value and
/// every file a `FileEntry` with its own strings, so a file list takes about 25 bytes of memory per input
/// byte (a million files in 31 MB peak at about 750 MB), and the worst case stays near 1 GB.
pub const MAX_METAINFO_BYTES: usize = 40 * 1024 * 1024;

/// Why bytes are not a usable metainfo file (v1, v2 or hybrid). Messages read well after a file name
/// (`x.torrent: missing `info.pieces``); keys are written as dotted paths, list items with their index
/// (`info.files[3].length`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    /// The input is longer than [`MAX_METAINFO_BYTES`]; nothing was decoded. The message leaves the length
    /// out, since a caller that stops reading past the cap only knows a lower bound.
    #[error("larger than the {MAX_METAINFO_BYTES}-byte (40 MiB) limit for a .torrent file")]
    TooLarge {
        /// The input's length in bytes.
        len: usize,
    },
    /// The bytes are not one canonical bencode value.
    #[error(transparent)]
    Bencode(#[from] DecodeError),
    /// The file's top level is not a dictionary.
    #[error("the file is not a bencoded dictionary (found {found})")]
    NotADictionary {
        /// The bencode type found.
        found: &'static str,
    },
    /// A required key is absent.
    #[error("missing `{0}`")]
    Missing(String),
    /// A key holds the wrong bencode type.
    #[error("`{key}` is not {expected} (found {found})")]
    WrongType {
        /// The key's dotted path.
        key: String,
        /// What it should be, with an article ("an integer").
        expected: &'static str,
        /// The bencode type found.
        found: &'static str,
    },
    /// A name or path that must be text is not valid UTF-8.
    #[error("`{0}` is not valid UTF-8")]
    NotUtf8(String),
    /// `info.piece length` is not a positive multiple of [`BLOCK_SIZE`] (16 KiB): zero, negative, or a
    /// length such as 3 bytes. See [`Info::from_value`](crate::metainfo::Info::from_value) for why.
    #[error(
        "`info.piece length` is {0} bytes, expected a positive multiple of {BLOCK_SIZE} bytes (16 KiB)"
    )]
    BadPieceLength(i64),
    /// `info.pieces` is not a whole number of 20-byte SHA-1 hashes; holds its length in bytes.
    #[error("`info.pieces` is {0} bytes long, not a multiple of 20")]
    BadPiecesLength(usize),
    /// `info.pieces` holds a different number of hashes than the files need pieces.
    #[error("`info.pieces` holds {got} piece hashes but the files make {expected} pieces")]
    PieceCountMismatch {
        /// Pieces the file lengths and piece length make.
        expected: u32,
        /// Hashes in `info.pieces`.
        got: usize,
    },
    /// `info` has both `length` (single-file) and `files` (multi-file).
    #[error("`info` has both `length` and `files`")]
    LengthAndFiles,
    /// `info` has neither `length` (single-file) nor `files` (multi-file).
    #[error("`info` has neither `length` nor `files`")]
    NoLengthOrFiles,
    /// `info.files` is an empty list.
    #[error("`info.files` is empty")]
    NoFiles,
    /// A file's length is negative.
    #[error("file {path:?} has negative length {length}")]
    NegativeLength {
        /// The file's path, components joined with `/`.
        path: String,
        /// The length found.
        length: i64,
    },
    /// A file name or path that could escape the download directory or cannot be created; rejected rather
    /// than sanitized.
    #[error("unsafe path {path:?}: {reason}")]
    UnsafePath {
        /// The offending path, components joined with `/` (non-UTF-8 bytes replaced).
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two (non-padding) files have the same path.
    #[error("two files have the path {0:?}")]
    DuplicatePath(String),
    /// One file's path is a directory prefix of another's (files `a` and `a/b`).
    #[error("file {file:?} needs {dir:?} to be a directory, but it is also a file")]
    PathConflict {
        /// The file inside the conflicting directory.
        file: String,
        /// The path that is both a file and a directory.
        dir: String,
    },
    /// The piece length and file lengths do not make a usable layout.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// `info.meta version` is present but not 2 (BEP 52 defines only version 2).
    #[error("`info.meta version` is {0}; swarmer knows versions 1 (no key) and 2 (BEP 52)")]
    UnsupportedMetaVersion(i64),
    /// A v2 or hybrid torrent's `piece length` is not a power of two of at least 16 KiB (BEP 52).
    #[error(
        "`info.piece length` is {0} bytes; a v2 torrent (BEP 52) needs a power of two of at least 16 KiB"
    )]
    PieceLengthNotPowerOfTwo(i64),
    /// A node of `info.file tree` is malformed: it names the node's path and what is wrong.
    #[error("`info.file tree` entry {path:?}: {reason}")]
    BadFileTree {
        /// The node's path, components joined with `/`.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file's `piece layers` entry (BEP 52) has the wrong size or does not hash to its `pieces root`.
    #[error("piece layer of file {path:?}: {reason}")]
    BadPieceLayer {
        /// The file's path, components joined with `/`.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A v2-only torrent lacks the `piece layers` entry of a file longer than one piece, without which
    /// its pieces cannot be checked.
    #[error("`piece layers` has no entry for file {0:?} (longer than one piece)")]
    MissingPieceLayer(String),
    /// A v2-only info dictionary received without its piece layers (from a magnet link): they would have
    /// to be fetched from peers with BEP 52 hash requests.
    #[error(
        "a v2-only torrent from a magnet link needs its piece layers from peers (BEP 52 hash requests), which swarmer does not fetch yet; use the .torrent file"
    )]
    PieceLayersNeeded,
    /// A hybrid torrent whose v1 file list (`files`/`length` with BEP 47 padding) and v2 `file tree`
    /// describe different content: refused, since the two swarms would disagree on the data.
    #[error("hybrid torrent's v1 and v2 views differ: {0}")]
    HybridMismatch(String),
}
