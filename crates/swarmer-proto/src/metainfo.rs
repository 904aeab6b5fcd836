//! Metainfo (.torrent) files, v1 (BEP 3, "metainfo files"), with announce-list tiers (BEP 12), the private
//! flag (BEP 27) and padding files (BEP 47): the pinned types the rest of the crate codes against, and the
//! parser that validates a file into them.
//!
//! **Validation choices.** The `info` dictionary is checked strictly, because it decides what is written
//! where on disk: unsafe file names are *rejected*, never sanitized (a rewritten path would silently differ
//! from what other peers and the user expect), and so are duplicate paths and a file that another file needs
//! as a directory. The bencode itself must be canonical (see [`crate::bencode`]), which guarantees that the
//! info hash is the hash of the one encoding of the `info` dictionary. Fields outside `info` (trackers,
//! comment, dates) are advisory: a malformed one is dropped instead of failing the whole file.

use std::collections::HashSet;
use std::sync::Arc;

use crate::bencode::{self, DecodeError, Dict, Value};
use crate::layout::PieceIndex;
use crate::{BLOCK_SIZE, InfoHash, Layout, LayoutError, digest};

/// The largest .torrent file (or BEP 9 `info` dictionary) swarmer parses: 40 MiB. Callers reading a file
/// should stop reading past this many bytes; [`Metainfo::from_bytes`] and [`Info::from_bytes`] refuse
/// longer input with [`MetainfoError::TooLarge`] before decoding anything.
///
/// Large enough for a million files with names of a dozen characters (about 38 MB), or 100 TiB of content
/// in 64 MiB pieces (1.6 million hashes, 32 MB); real torrents are far smaller (libtorrent's default limit
/// is 10 MB). The cap is what bounds the parser's memory: every bencode node becomes a 48-byte value and
/// every file a `FileEntry` with its own strings, so a file list takes about 25 bytes of memory per input
/// byte (a million files in 31 MB peak at about 750 MB), and the worst case stays near 1 GB.
pub const MAX_METAINFO_BYTES: usize = 40 * 1024 * 1024;

/// A parsed, validated v1 metainfo file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// SHA-1 of the exact bytes of the `info` dictionary as they appear in the file.
    pub info_hash: InfoHash,
    /// The validated `info` dictionary.
    pub info: Info,
    /// The exact bencoded bytes of the `info` dictionary, as hashed: what the metadata exchange
    /// (BEP 9, `ut_metadata`) serves to peers, and what a saved `.torrent` file contains.
    pub info_bytes: Arc<[u8]>,
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

/// Why bytes are not a usable v1 metainfo file. Messages read well after a file name
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
    /// length such as 3 bytes. See [`Info::from_value`] for why.
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
}

impl Metainfo {
    /// Parses and validates a v1 .torrent file.
    ///
    /// The info hash is the SHA-1 of the `info` dictionary's exact bytes. Trackers come from
    /// `announce-list` (BEP 12) with empty tiers and non-UTF-8 or empty URLs dropped, or `[[announce]]` when
    /// the list is absent or ends up empty, or nothing (a trackerless torrent). `comment`, `created by` and
    /// `creation date` are kept when they have the right type and are dropped otherwise.
    ///
    /// Errors: see [`MetainfoError`]; every problem with the bencode or the `info` dictionary fails, and
    /// so does input longer than [`MAX_METAINFO_BYTES`].
    pub fn from_bytes(data: &[u8]) -> Result<Metainfo, MetainfoError> {
        check_size(data)?;
        let root = bencode::decode(data)?;
        let top = root.as_dict().ok_or(MetainfoError::NotADictionary {
            found: root.type_name(),
        })?;
        let info_value = required(top, "", "info")?;
        let info = Info::from_value(info_value)?;
        Ok(Metainfo {
            info_hash: InfoHash(digest::sha1(info_value.raw())),
            info,
            info_bytes: Arc::from(info_value.raw()),
            announce_tiers: announce_tiers(top),
            comment: top
                .get(b"comment")
                .and_then(Value::as_str)
                .map(str::to_owned),
            created_by: top
                .get(b"created by")
                .and_then(Value::as_str)
                .map(str::to_owned),
            creation_date: top.get(b"creation date").and_then(Value::as_int),
        })
    }

    /// A metainfo made of an `info` dictionary received by the metadata exchange (BEP 9) and the
    /// trackers of a magnet link (one tier each, as BEP 9 leaves the order to the client). The info
    /// hash is the SHA-1 of `info_bytes`; the caller compares it with the one it asked for.
    ///
    /// Errors: as [`Info::from_bytes`].
    pub fn from_info_bytes(
        info_bytes: &[u8],
        announce_tiers: Vec<Vec<String>>,
    ) -> Result<Metainfo, MetainfoError> {
        let info = Info::from_bytes(info_bytes)?;
        Ok(Metainfo {
            info_hash: InfoHash(digest::sha1(info_bytes)),
            info,
            info_bytes: Arc::from(info_bytes),
            announce_tiers,
            comment: None,
            created_by: None,
            creation_date: None,
        })
    }

    /// A `.torrent` file for this metainfo (BEP 3): `announce` (the first tracker), `announce-list`
    /// (BEP 12, when there is more than one tracker) and `info` byte for byte as hashed, so the file
    /// has the same info hash. Comment and dates are not written.
    pub fn to_torrent_bytes(&self) -> Vec<u8> {
        use crate::bencode::OwnedValue;
        let mut out = b"d".to_vec();
        let trackers: Vec<&String> = self.announce_tiers.iter().flatten().collect();
        let string = |s: &str| OwnedValue::Bytes(s.as_bytes().to_vec());
        if let Some(first) = trackers.first() {
            out.extend_from_slice(b"8:announce");
            string(first).encode_into(&mut out);
        }
        if trackers.len() > 1 {
            out.extend_from_slice(b"13:announce-list");
            OwnedValue::list(
                self.announce_tiers
                    .iter()
                    .map(|tier| OwnedValue::list(tier.iter().map(|url| string(url)))),
            )
            .encode_into(&mut out);
        }
        out.extend_from_slice(b"4:info");
        out.extend_from_slice(&self.info_bytes);
        out.push(b'e');
        out
    }

    /// The content's total length in bytes, padding files included.
    pub fn total_length(&self) -> u64 {
        self.info.layout.total_length()
    }

    /// The number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.info.layout.piece_count()
    }
}

impl Info {
    /// Parses and validates a bencoded `info` dictionary on its own, as received from peers by the
    /// metadata exchange (BEP 9). The caller checks its SHA-1 against the expected info hash.
    ///
    /// Errors: as [`Metainfo::from_bytes`].
    pub fn from_bytes(data: &[u8]) -> Result<Info, MetainfoError> {
        check_size(data)?;
        Info::from_value(&bencode::decode(data)?)
    }

    /// Validates a decoded `info` dictionary (BEP 3; `private` from BEP 27, padding files from BEP 47).
    ///
    /// Rules beyond BEP 3:
    /// - `piece length` must be a positive multiple of [`BLOCK_SIZE`] (16 KiB), and at most
    ///   [`MAX_PIECE_LENGTH`](crate::layout::MAX_PIECE_LENGTH). BEP 3 allows any length ("almost always a
    ///   power of two"), and libtorrent and Transmission accept any positive v1 length; BEP 52 requires a
    ///   power of two of at least 16 KiB. Every torrent creator in use writes powers of two from 16 KiB
    ///   up, while tiny lengths (3 bytes) only serve to multiply the piece count and hash work, so they
    ///   are refused; the rare non-power-of-two multiples of 16 KiB stay accepted.
    /// - The file lengths must add up to the piece count `pieces` holds hashes for: a declared size
    ///   (1 PiB, say) without the hashes to match is [`MetainfoError::PieceCountMismatch`]; sums beyond
    ///   2^64 bytes and more than 2^32 - 1 pieces are [`LayoutError`]s. Sizes are never trusted to fit
    ///   on disk: that is the caller's check.
    /// - Paths: see [`MetainfoError::UnsafePath`], [`MetainfoError::DuplicatePath`] and
    ///   [`MetainfoError::PathConflict`]. Names differing only in case (`a` and `A`) are accepted: they
    ///   are distinct on the file systems of Linux, and storage must detect two names landing on one file
    ///   where they are not. Names invalid on Windows but safe on Unix (`CON`, `a?b`, `x.`, `1:2`) are
    ///   kept as they are; only a drive letter prefix (`C:`) is rejected, since it would make the path
    ///   absolute there.
    ///
    /// Errors: see [`MetainfoError`].
    pub fn from_value(value: &Value<'_>) -> Result<Info, MetainfoError> {
        let dict = value.as_dict().ok_or_else(|| MetainfoError::WrongType {
            key: "info".to_owned(),
            expected: "a dictionary",
            found: value.type_name(),
        })?;
        let name = name(dict)?;

        let piece_length = required_int(dict, "info", "piece length")?;
        if piece_length <= 0 || piece_length % i64::from(BLOCK_SIZE) != 0 {
            return Err(MetainfoError::BadPieceLength(piece_length));
        }
        let pieces = required_bytes(dict, "info", "pieces")?;
        if pieces.len() % 20 != 0 {
            return Err(MetainfoError::BadPiecesLength(pieces.len()));
        }

        let (files, multi_file) = match (dict.get(b"length"), dict.get(b"files")) {
            (Some(_), Some(_)) => return Err(MetainfoError::LengthAndFiles),
            (None, None) => return Err(MetainfoError::NoLengthOrFiles),
            (Some(_), None) => {
                let length = required_int(dict, "info", "length")?;
                let length = u64::try_from(length).map_err(|_| MetainfoError::NegativeLength {
                    path: name.clone(),
                    length,
                })?;
                let file = FileEntry {
                    path: vec![name.clone()],
                    length,
                    padding: false,
                };
                (vec![file], false)
            }
            (None, Some(_)) => (files(dict, &name)?, true),
        };

        // `piece_length` is positive, so the conversion cannot fail; the layout checks the upper bound.
        let layout = Layout::new(piece_length.unsigned_abs(), files.iter().map(|f| f.length))?;
        let got = pieces.len() / 20;
        if got != layout.piece_count() as usize {
            return Err(MetainfoError::PieceCountMismatch {
                expected: layout.piece_count(),
                got,
            });
        }
        let piece_hashes = pieces
            .chunks_exact(20)
            .map(|chunk| {
                let mut hash = [0u8; 20];
                hash.copy_from_slice(chunk);
                hash
            })
            .collect();

        Ok(Info {
            name,
            piece_length: layout.piece_length(),
            piece_hashes,
            files,
            multi_file,
            private: dict.get(b"private").and_then(Value::as_int) == Some(1),
            layout,
        })
    }

    /// The expected SHA-1 of `piece`.
    ///
    /// `piece` must come from this torrent's [`Layout`] (as every [`PieceIndex`] does); one from another
    /// torrent's layout may be out of range and panic.
    pub fn piece_hash(&self, piece: PieceIndex) -> &[u8; 20] {
        &self.piece_hashes[piece.as_usize()]
    }

    /// The content's total length in bytes, padding files included.
    pub fn total_length(&self) -> u64 {
        self.layout.total_length()
    }
}

/// Refuses input longer than [`MAX_METAINFO_BYTES`] before any decoding.
fn check_size(data: &[u8]) -> Result<(), MetainfoError> {
    if data.len() > MAX_METAINFO_BYTES {
        return Err(MetainfoError::TooLarge { len: data.len() });
    }
    Ok(())
}

/// `info.name`, preferring a valid `name.utf-8`, checked to be one safe path component.
fn name(dict: &Dict<'_>) -> Result<String, MetainfoError> {
    let name = match dict.get(b"name.utf-8").and_then(Value::as_str) {
        Some(name) => name,
        None => std::str::from_utf8(required_bytes(dict, "info", "name")?)
            .map_err(|_| MetainfoError::NotUtf8("info.name".to_owned()))?,
    };
    check_component(name).map_err(|reason| MetainfoError::UnsafePath {
        path: name.to_owned(),
        reason,
    })?;
    Ok(name.to_owned())
}

/// The entries of a multi-file `info.files`, each path prefixed with the torrent's `name`, checked for
/// unsafe components, duplicates and file/directory conflicts.
fn files(dict: &Dict<'_>, name: &str) -> Result<Vec<FileEntry>, MetainfoError> {
    let list = required_list(dict, "info", "files")?;
    if list.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    let mut files = Vec::with_capacity(list.len());
    for (index, entry) in list.iter().enumerate() {
        let at = format!("info.files[{index}]");
        let entry_dict = entry.as_dict().ok_or_else(|| MetainfoError::WrongType {
            key: at.clone(),
            expected: "a dictionary",
            found: entry.type_name(),
        })?;
        let components = file_path(entry_dict, &at)?;
        let mut path = Vec::with_capacity(1 + components.len());
        path.push(name.to_owned());
        path.extend(components);
        if path.len() == 1 {
            return Err(MetainfoError::UnsafePath {
                path: name.to_owned(),
                reason: "empty path list",
            });
        }
        for component in &path[1..] {
            check_component(component).map_err(|reason| MetainfoError::UnsafePath {
                path: path.join("/"),
                reason,
            })?;
        }
        let length = required_int(entry_dict, &at, "length")?;
        let length = u64::try_from(length).map_err(|_| MetainfoError::NegativeLength {
            path: path.join("/"),
            length,
        })?;
        let padding = entry_dict
            .get(b"attr")
            .and_then(Value::as_bytes)
            .is_some_and(|attr| attr.contains(&b'p'));
        files.push(FileEntry {
            path,
            length,
            padding,
        });
    }
    check_distinct(&files)?;
    Ok(files)
}

/// A file's path components, preferring a `path.utf-8` whose items are all UTF-8 strings over `path`.
fn file_path(entry: &Dict<'_>, at: &str) -> Result<Vec<String>, MetainfoError> {
    if let Some(items) = entry.get(b"path.utf-8").and_then(Value::as_list) {
        let utf8: Option<Vec<String>> = items
            .iter()
            .map(|c| c.as_str().map(str::to_owned))
            .collect();
        if let Some(path) = utf8 {
            return Ok(path);
        }
    }
    required_list(entry, at, "path")?
        .iter()
        .enumerate()
        .map(|(i, component)| {
            let bytes = component
                .as_bytes()
                .ok_or_else(|| MetainfoError::WrongType {
                    key: format!("{at}.path[{i}]"),
                    expected: "a byte string",
                    found: component.type_name(),
                })?;
            std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|_| MetainfoError::NotUtf8(format!("{at}.path")))
        })
        .collect()
}

/// Rejects duplicate paths and a path that is a directory prefix of another. Padding files are never
/// written, and some creators name them all alike (`.pad/16384`), so they take no part.
fn check_distinct(files: &[FileEntry]) -> Result<(), MetainfoError> {
    let real = || files.iter().filter(|f| !f.padding);
    let mut paths: HashSet<&[String]> = HashSet::new();
    for file in real() {
        if !paths.insert(&file.path) {
            return Err(MetainfoError::DuplicatePath(file.path.join("/")));
        }
    }
    for file in real() {
        // Prefixes shorter than the whole path, longer than the name alone (the top directory).
        for end in 2..file.path.len() {
            let dir = &file.path[..end];
            if paths.contains(dir) {
                return Err(MetainfoError::PathConflict {
                    file: file.path.join("/"),
                    dir: dir.join("/"),
                });
            }
        }
    }
    Ok(())
}

/// Checks that `component` is a single, relative path component that every platform can create; returns
/// the reason when it is not.
fn check_component(component: &str) -> Result<(), &'static str> {
    let bytes = component.as_bytes();
    if bytes.is_empty() {
        return Err("empty path component");
    }
    if component == "." || component == ".." {
        return Err("`.` or `..` path component");
    }
    if bytes.contains(&0) {
        return Err("NUL byte in path component");
    }
    if bytes.contains(&b'/') || bytes.contains(&b'\\') {
        return Err("path separator inside a path component");
    }
    if let [drive, b':', ..] = bytes {
        if drive.is_ascii_alphabetic() {
            return Err("absolute path (Windows drive letter)");
        }
    }
    Ok(())
}

/// BEP 12 tiers from `announce-list`, falling back to `[[announce]]`; malformed entries are dropped.
fn announce_tiers(top: &Dict<'_>) -> Vec<Vec<String>> {
    let mut tiers: Vec<Vec<String>> = top
        .get(b"announce-list")
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_list)
        .map(|tier| {
            tier.iter()
                .filter_map(Value::as_str)
                .filter(|url| !url.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|tier| !tier.is_empty())
        .collect();
    if tiers.is_empty() {
        if let Some(url) = top
            .get(b"announce")
            .and_then(Value::as_str)
            .filter(|url| !url.is_empty())
        {
            tiers.push(vec![url.to_owned()]);
        }
    }
    tiers
}

/// `key` in `dict` (found at dotted path `at`), or a `Missing` error.
fn required<'d, 'a>(
    dict: &'d Dict<'a>,
    at: &str,
    key: &str,
) -> Result<&'d Value<'a>, MetainfoError> {
    dict.get(key.as_bytes())
        .ok_or_else(|| MetainfoError::Missing(dotted(at, key)))
}

fn required_int(dict: &Dict<'_>, at: &str, key: &str) -> Result<i64, MetainfoError> {
    let value = required(dict, at, key)?;
    value
        .as_int()
        .ok_or_else(|| wrong_type(at, key, "an integer", value))
}

fn required_bytes<'a>(dict: &Dict<'a>, at: &str, key: &str) -> Result<&'a [u8], MetainfoError> {
    let value = required(dict, at, key)?;
    value
        .as_bytes()
        .ok_or_else(|| wrong_type(at, key, "a byte string", value))
}

fn required_list<'d, 'a>(
    dict: &'d Dict<'a>,
    at: &str,
    key: &str,
) -> Result<&'d [Value<'a>], MetainfoError> {
    let value = required(dict, at, key)?;
    value
        .as_list()
        .ok_or_else(|| wrong_type(at, key, "a list", value))
}

fn wrong_type(at: &str, key: &str, expected: &'static str, found: &Value<'_>) -> MetainfoError {
    MetainfoError::WrongType {
        key: dotted(at, key),
        expected,
        found: found.type_name(),
    }
}

fn dotted(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::OwnedValue;

    const PIECE: i64 = 16384;

    /// Fake but distinct hashes for `count` pieces.
    fn hashes(count: u64) -> OwnedValue {
        OwnedValue::Bytes((0..count).flat_map(|i| [i as u8; 20]).collect())
    }

    /// A single-file info dict of `length` bytes with a matching `pieces`.
    fn single(length: i64) -> OwnedValue {
        OwnedValue::dict([
            ("length", OwnedValue::Int(length)),
            ("name", "file.bin".into()),
            ("piece length", OwnedValue::Int(PIECE)),
            ("pieces", hashes((length as u64).div_ceil(PIECE as u64))),
        ])
    }

    #[test]
    fn info_bytes_round_trip_through_a_saved_torrent_and_the_metadata_exchange() {
        let info = single(40_000).encode();
        let torrent = OwnedValue::dict([
            ("announce", "http://a/announce".into()),
            ("comment", "dropped".into()),
            ("info", single(40_000)),
        ])
        .encode();
        let m = Metainfo::from_bytes(&torrent).unwrap();
        assert_eq!(&m.info_bytes[..], &info[..]);
        assert_eq!(m.info_hash, InfoHash(digest::sha1(&info)));

        let tiers = vec![
            vec!["http://a/announce".to_owned()],
            vec!["udp://b:1".to_owned()],
        ];
        let fetched = Metainfo::from_info_bytes(&info, tiers.clone()).unwrap();
        assert_eq!(fetched.info_hash, m.info_hash);
        let saved = Metainfo::from_bytes(&fetched.to_torrent_bytes()).unwrap();
        assert_eq!(saved.info_hash, m.info_hash);
        assert_eq!(saved.announce_tiers, tiers);
        assert_eq!(saved.info, m.info);

        let bare = Metainfo::from_info_bytes(&info, vec![]).unwrap();
        let saved = Metainfo::from_bytes(&bare.to_torrent_bytes()).unwrap();
        assert!(saved.announce_tiers.is_empty());
        assert!(Metainfo::from_info_bytes(b"d4:name1:xe", vec![]).is_err());
    }

    /// A `files` entry.
    fn file(path: &[&str], length: i64) -> OwnedValue {
        OwnedValue::dict([
            ("length", OwnedValue::Int(length)),
            ("path", OwnedValue::list(path.iter().map(|c| (*c).into()))),
        ])
    }

    /// A multi-file info dict named `top` with a matching `pieces`.
    fn multi(files: Vec<OwnedValue>) -> OwnedValue {
        let total: i64 = files
            .iter()
            .map(|f| match f {
                OwnedValue::Dict(d) => match d.get(&b"length"[..]) {
                    Some(OwnedValue::Int(n)) => *n,
                    _ => 0,
                },
                _ => 0,
            })
            .sum();
        OwnedValue::dict([
            ("files", OwnedValue::List(files)),
            ("name", "top".into()),
            ("piece length", OwnedValue::Int(PIECE)),
            (
                "pieces",
                hashes((total.max(0) as u64).div_ceil(PIECE as u64)),
            ),
        ])
    }

    /// `dict` with `key` set to `value` (or removed for `None`).
    fn set(mut dict: OwnedValue, key: &str, value: Option<OwnedValue>) -> OwnedValue {
        if let OwnedValue::Dict(d) = &mut dict {
            match value {
                Some(v) => d.insert(key.as_bytes().to_vec(), v),
                None => d.remove(key.as_bytes()),
            };
        }
        dict
    }

    /// A whole .torrent around `info`.
    fn torrent(info: OwnedValue) -> Vec<u8> {
        OwnedValue::dict([
            ("announce", "http://tracker.example/announce".into()),
            ("info", info),
        ])
        .encode()
    }

    fn parse_info(info: OwnedValue) -> Result<Metainfo, MetainfoError> {
        Metainfo::from_bytes(&torrent(info))
    }

    fn unsafe_reason(result: Result<Metainfo, MetainfoError>) -> &'static str {
        match result {
            Err(MetainfoError::UnsafePath { reason, .. }) => reason,
            other => panic!("expected an unsafe path, got {other:?}"),
        }
    }

    #[test]
    fn single_file() {
        let data = torrent(single(40_000));
        let m = Metainfo::from_bytes(&data).unwrap();
        assert_eq!(m.info.name, "file.bin");
        assert!(!m.info.multi_file);
        assert!(!m.info.private);
        assert_eq!(
            m.info.files,
            vec![FileEntry {
                path: vec!["file.bin".into()],
                length: 40_000,
                padding: false
            }]
        );
        assert_eq!(m.total_length(), 40_000);
        assert_eq!(m.piece_count(), 3);
        assert_eq!(m.info.piece_length, 16384);
        let last = m.info.layout.piece(2).unwrap();
        assert_eq!(m.info.piece_hash(last), &[2u8; 20]);
        assert_eq!(
            m.announce_tiers,
            vec![vec!["http://tracker.example/announce".to_owned()]]
        );
        // The info hash is the SHA-1 of the info dict's own encoding.
        assert_eq!(
            m.info_hash,
            InfoHash(digest::sha1(&single(40_000).encode()))
        );
        assert_eq!(Info::from_bytes(&single(40_000).encode()).unwrap(), m.info);
    }

    #[test]
    fn multi_file_with_nested_dirs_and_empty_files() {
        let info = multi(vec![
            file(&["a.txt"], 10),
            file(&["empty"], 0),
            file(&["sub", "deeper", "c.txt"], 20_000),
            file(&["sub", "b"], 5),
        ]);
        let m = parse_info(info).unwrap();
        assert!(m.info.multi_file);
        let paths: Vec<String> = m.info.files.iter().map(|f| f.path.join("/")).collect();
        assert_eq!(
            paths,
            [
                "top/a.txt",
                "top/empty",
                "top/sub/deeper/c.txt",
                "top/sub/b"
            ]
        );
        let lengths: Vec<u64> = m.info.files.iter().map(|f| f.length).collect();
        assert_eq!(lengths, [10, 0, 20_000, 5]);
        assert_eq!(m.total_length(), 20_015);
        assert_eq!(m.piece_count(), 2);
    }

    #[test]
    fn padding_files_count_in_the_layout() {
        let pad = |len| set(file(&[".pad", "16374"], len), "attr", Some("p".into()));
        let info = multi(vec![
            file(&["a"], 10),
            pad(16374),
            file(&["b"], 100),
            // Creators reuse padding names; padding files are never written, so no duplicate error.
            pad(16374),
            set(file(&["c"], 1), "attr", Some("x".into())),
        ]);
        let m = parse_info(info).unwrap();
        let padding: Vec<bool> = m.info.files.iter().map(|f| f.padding).collect();
        assert_eq!(padding, [false, true, false, true, false]);
        assert_eq!(m.total_length(), 10 + 16374 + 100 + 16374 + 1);
        assert_eq!(
            m.info.layout.file_offset(m.info.layout.file(2).unwrap()),
            16384
        );
    }

    #[test]
    fn utf8_variants_are_preferred() {
        let info = set(
            single(5),
            "name",
            Some(OwnedValue::Bytes(b"\xffbad".to_vec())),
        );
        assert_eq!(
            parse_info(info.clone()).unwrap_err(),
            MetainfoError::NotUtf8("info.name".into())
        );
        let info = set(info, "name.utf-8", Some("good".into()));
        assert_eq!(parse_info(info).unwrap().info.name, "good");

        let entry = set(
            file(&["x"], 5),
            "path",
            Some(OwnedValue::list([OwnedValue::Bytes(b"\xfe".to_vec())])),
        );
        assert_eq!(
            parse_info(multi(vec![entry.clone()])).unwrap_err(),
            MetainfoError::NotUtf8("info.files[0].path".into())
        );
        let entry = set(entry, "path.utf-8", Some(OwnedValue::list(["ü".into()])));
        let m = parse_info(multi(vec![entry])).unwrap();
        assert_eq!(m.info.files[0].path, ["top", "ü"]);
    }

    #[test]
    fn announce_list_tiers_private_and_optional_fields() {
        let data = OwnedValue::dict([
            ("announce", "http://fallback/a".into()),
            (
                "announce-list",
                OwnedValue::list([
                    OwnedValue::list(["http://a/1".into(), "udp://a/2".into()]),
                    OwnedValue::list([]),
                    OwnedValue::list([OwnedValue::Bytes(b"\xff".to_vec()), "".into()]),
                    OwnedValue::Int(3),
                    OwnedValue::list(["http://b/1".into(), OwnedValue::Int(7)]),
                ]),
            ),
            ("comment", "hi".into()),
            ("created by", "swarmer test".into()),
            ("creation date", OwnedValue::Int(1_700_000_000)),
            ("info", set(single(5), "private", Some(OwnedValue::Int(1)))),
        ])
        .encode();
        let m = Metainfo::from_bytes(&data).unwrap();
        assert_eq!(
            m.announce_tiers,
            vec![vec!["http://a/1", "udp://a/2"], vec!["http://b/1"]]
        );
        assert!(m.info.private);
        assert_eq!(m.comment.as_deref(), Some("hi"));
        assert_eq!(m.created_by.as_deref(), Some("swarmer test"));
        assert_eq!(m.creation_date, Some(1_700_000_000));

        // An announce-list that ends up empty falls back to `announce`; none at all is trackerless.
        let data = OwnedValue::dict([
            ("announce", "http://fallback/a".into()),
            ("announce-list", OwnedValue::list([OwnedValue::list([])])),
            ("comment", OwnedValue::Int(1)),
            ("info", set(single(5), "private", Some(OwnedValue::Int(0)))),
        ])
        .encode();
        let m = Metainfo::from_bytes(&data).unwrap();
        assert_eq!(m.announce_tiers, vec![vec!["http://fallback/a"]]);
        assert!(!m.info.private);
        assert_eq!(m.comment, None);
        let m = Metainfo::from_bytes(&OwnedValue::dict([("info", single(5))]).encode()).unwrap();
        assert!(m.announce_tiers.is_empty());
        assert_eq!(m.created_by, None);
        assert_eq!(m.creation_date, None);
    }

    #[test]
    fn rejects_bad_structure() {
        use MetainfoError::*;
        let err = |info| parse_info(info).unwrap_err();
        assert_eq!(
            Metainfo::from_bytes(b"le").unwrap_err(),
            NotADictionary { found: "list" }
        );
        assert_eq!(
            err(set(single(5), "pieces", Some(OwnedValue::Int(3)))).to_string(),
            "`info.pieces` is not a byte string (found integer)"
        );
        assert_eq!(
            Metainfo::from_bytes(b"d8:announce1:xe").unwrap_err(),
            Missing("info".into())
        );
        assert_eq!(
            err(OwnedValue::Int(1)),
            WrongType {
                key: "info".into(),
                expected: "a dictionary",
                found: "integer"
            }
        );
        assert_eq!(
            err(set(single(5), "piece length", None)),
            Missing("info.piece length".into())
        );
        assert_eq!(
            err(set(single(5), "piece length", Some("x".into()))),
            WrongType {
                key: "info.piece length".into(),
                expected: "an integer",
                found: "byte string"
            }
        );
        assert_eq!(
            err(set(single(5), "piece length", Some(OwnedValue::Int(-1)))),
            BadPieceLength(-1)
        );
        assert_eq!(
            err(set(
                single(5),
                "piece length",
                Some(OwnedValue::Int(1 << 30))
            )),
            Layout(LayoutError::PieceLengthTooLarge(1 << 30))
        );
        assert_eq!(
            err(set(
                single(5),
                "pieces",
                Some(OwnedValue::Bytes(vec![0; 21]))
            )),
            BadPiecesLength(21)
        );
        assert_eq!(
            err(set(single(5), "pieces", Some(hashes(2)))),
            PieceCountMismatch {
                expected: 1,
                got: 2
            }
        );
        assert_eq!(
            err(set(single(40_000), "pieces", Some(hashes(0)))),
            PieceCountMismatch {
                expected: 3,
                got: 0
            }
        );
        assert_eq!(err(set(single(5), "length", None)), NoLengthOrFiles);
        assert_eq!(
            err(set(
                single(5),
                "files",
                Some(OwnedValue::list([file(&["a"], 5)]))
            )),
            LengthAndFiles
        );
        assert_eq!(
            err(set(single(5), "length", Some(OwnedValue::Int(-5)))),
            NegativeLength {
                path: "file.bin".into(),
                length: -5
            }
        );
        assert_eq!(err(single(0)), Layout(LayoutError::Empty));
        assert_eq!(err(multi(vec![])), NoFiles);
        assert_eq!(
            err(multi(vec![file(&["a"], 5), OwnedValue::Int(1)])),
            WrongType {
                key: "info.files[1]".into(),
                expected: "a dictionary",
                found: "integer"
            }
        );
        assert_eq!(
            err(multi(vec![set(file(&["a"], 5), "length", None)])),
            Missing("info.files[0].length".into())
        );
        assert_eq!(
            err(multi(vec![
                file(&["a"], 5),
                set(file(&["b"], 1), "path", None)
            ])),
            Missing("info.files[1].path".into())
        );
        assert_eq!(
            err(multi(vec![set(
                file(&["a"], 5),
                "path",
                Some(OwnedValue::list([OwnedValue::Int(1)]))
            )])),
            WrongType {
                key: "info.files[0].path[0]".into(),
                expected: "a byte string",
                found: "integer"
            }
        );
        assert_eq!(
            err(multi(vec![file(&["a"], 5), file(&["b"], -1)])),
            NegativeLength {
                path: "top/b".into(),
                length: -1
            }
        );
    }

    #[test]
    fn rejects_unsafe_paths() {
        let bad_component = |c: &str| unsafe_reason(parse_info(multi(vec![file(&["ok", c], 5)])));
        assert_eq!(bad_component(".."), "`.` or `..` path component");
        assert_eq!(bad_component("."), "`.` or `..` path component");
        assert_eq!(bad_component(""), "empty path component");
        assert_eq!(bad_component("a\0b"), "NUL byte in path component");
        assert_eq!(
            bad_component("/etc"),
            "path separator inside a path component"
        );
        assert_eq!(
            bad_component("a/b"),
            "path separator inside a path component"
        );
        assert_eq!(
            bad_component("..\\x"),
            "path separator inside a path component"
        );
        assert_eq!(bad_component("C:"), "absolute path (Windows drive letter)");
        assert_eq!(bad_component("c:x"), "absolute path (Windows drive letter)");
        assert_eq!(
            unsafe_reason(parse_info(multi(vec![file(&[], 5)]))),
            "empty path list"
        );
        // The name is checked the same way, for both kinds of torrent.
        for name in ["..", "", "/abs", "a\0", "D:\\x"] {
            let reason = unsafe_reason(parse_info(set(single(5), "name", Some(name.into()))));
            assert!(!reason.is_empty());
            unsafe_reason(parse_info(set(
                multi(vec![file(&["a"], 5)]),
                "name",
                Some(name.into()),
            )));
        }
        // Harmless look-alikes pass.
        let m = parse_info(multi(vec![file(&["...", "a..b", "1:2", "-"], 5)])).unwrap();
        assert_eq!(m.info.files[0].path, ["top", "...", "a..b", "1:2", "-"]);
        // The error names the file.
        let err = parse_info(multi(vec![file(&["x", "..", "etc"], 5)])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsafe path \"top/x/../etc\": `.` or `..` path component"
        );
    }

    #[test]
    fn rejects_duplicate_and_conflicting_paths() {
        assert_eq!(
            parse_info(multi(vec![file(&["a", "b"], 5), file(&["a", "b"], 6)])).unwrap_err(),
            MetainfoError::DuplicatePath("top/a/b".into())
        );
        assert_eq!(
            parse_info(multi(vec![file(&["a"], 5), file(&["a", "b"], 6)])).unwrap_err(),
            MetainfoError::PathConflict {
                file: "top/a/b".into(),
                dir: "top/a".into()
            }
        );
        assert_eq!(
            parse_info(multi(vec![file(&["a", "b", "c"], 5), file(&["a", "b"], 0)])).unwrap_err(),
            MetainfoError::PathConflict {
                file: "top/a/b/c".into(),
                dir: "top/a/b".into()
            }
        );
    }

    #[test]
    fn piece_length_must_be_a_positive_multiple_of_16_kib() {
        use MetainfoError::BadPieceLength;
        let with_piece_length = |n: i64| set(single(5), "piece length", Some(OwnedValue::Int(n)));
        for bad in [0, 3, -16384, 8192, 16385, 16384 * 3 + 1] {
            assert_eq!(
                parse_info(with_piece_length(bad)).unwrap_err(),
                BadPieceLength(bad)
            );
        }
        assert_eq!(
            BadPieceLength(3).to_string(),
            "`info.piece length` is 3 bytes, expected a positive multiple of 16384 bytes (16 KiB)"
        );
        // Powers of two and the rare non-power-of-two multiples of 16 KiB are accepted.
        for good in [16384, 3 * 16384, 1 << 20, 64 << 20] {
            assert_eq!(
                parse_info(with_piece_length(good))
                    .unwrap()
                    .info
                    .piece_length,
                good as u32
            );
        }
    }

    /// A single-file info dict of `length` bytes in `piece_length` pieces with `count` hashes.
    fn sized(length: i64, piece_length: i64, count: u64) -> OwnedValue {
        let info = set(single(5), "length", Some(OwnedValue::Int(length)));
        let info = set(info, "piece length", Some(OwnedValue::Int(piece_length)));
        set(info, "pieces", Some(hashes(count)))
    }

    #[test]
    fn huge_declared_sizes_never_overflow() {
        use MetainfoError::*;
        const PIB: i64 = 1 << 50;
        // 1 PiB in 64 MiB pieces needs 2^24 hashes (335 MB); a file that declares it with fewer is refused
        // without allocating anything for the declared size.
        assert_eq!(
            parse_info(sized(PIB, 64 << 20, 1)).unwrap_err(),
            PieceCountMismatch {
                expected: 1 << 24,
                got: 1
            }
        );
        // In 16 KiB pieces it would need 2^36 pieces, more than the wire protocol can number.
        assert_eq!(
            parse_info(sized(PIB, 16384, 1)).unwrap_err(),
            Layout(LayoutError::TooManyPieces(1 << 36))
        );
        assert_eq!(
            parse_info(sized(i64::MAX, 64 << 20, 1)).unwrap_err(),
            Layout(LayoutError::TooManyPieces(1 << 37))
        );
        // File lengths whose sum passes 2^64.
        let files = [
            file(&["a"], i64::MAX),
            file(&["b"], i64::MAX),
            file(&["c"], 2),
        ];
        let info = set(
            multi(vec![file(&["a"], 1)]),
            "files",
            Some(OwnedValue::list(files)),
        );
        assert_eq!(
            parse_info(info).unwrap_err(),
            Layout(LayoutError::TotalLengthOverflow)
        );
        // A consistent huge torrent parses: 16 TiB in 64 MiB pieces, 262,144 hashes (5 MB).
        let m = parse_info(sized(1 << 44, 64 << 20, 1 << 18)).unwrap();
        assert_eq!(m.total_length(), 1 << 44);
        assert_eq!(m.piece_count(), 1 << 18);
        let last = m.info.layout.piece((1 << 18) - 1).unwrap();
        assert_eq!(m.info.layout.piece_len(last), 64 << 20);
    }

    #[test]
    fn input_over_the_size_cap_is_refused_before_decoding() {
        let data = vec![b'l'; MAX_METAINFO_BYTES + 1];
        let err = Metainfo::from_bytes(&data).unwrap_err();
        assert_eq!(
            err,
            MetainfoError::TooLarge {
                len: MAX_METAINFO_BYTES + 1
            }
        );
        assert_eq!(
            err.to_string(),
            "larger than the 41943040-byte (40 MiB) limit for a .torrent file"
        );
        assert_eq!(
            Info::from_bytes(&data).unwrap_err(),
            MetainfoError::TooLarge {
                len: MAX_METAINFO_BYTES + 1
            }
        );
    }

    #[test]
    fn a_million_tiny_files_parse() {
        const FILES: usize = 1_000_000;
        // Written directly into one buffer rather than through `OwnedValue`, which would hold it twice.
        let pieces = FILES.div_ceil(PIECE as usize);
        let mut data = Vec::with_capacity(FILES * 32 + pieces * 20 + 100);
        data.extend_from_slice(b"d4:infod5:filesl");
        for i in 0..FILES {
            let name = format!("{i:x}");
            data.extend_from_slice(
                format!("d6:lengthi1e4:pathl{}:{name}ee", name.len()).as_bytes(),
            );
        }
        data.extend_from_slice(b"e4:name3:top12:piece lengthi16384e");
        data.extend_from_slice(format!("6:pieces{}:", pieces * 20).as_bytes());
        data.extend(std::iter::repeat_n(7u8, pieces * 20));
        data.extend_from_slice(b"ee");
        assert!(data.len() < MAX_METAINFO_BYTES);

        let m = Metainfo::from_bytes(&data).unwrap();
        assert_eq!(m.info.files.len(), FILES);
        assert_eq!(m.total_length(), FILES as u64);
        assert_eq!(m.piece_count() as usize, pieces);
        assert_eq!(m.info.files[FILES - 1].path, ["top", "f423f"]);
    }

    #[test]
    fn names_differing_in_case_or_invalid_on_windows_are_kept() {
        let m = parse_info(multi(vec![
            file(&["README"], 1),
            file(&["readme"], 1),
            file(&["ReadMe", "x"], 1),
            file(&["CON"], 1),
            file(&["aux.txt"], 1),
            file(&["a<b>c|d?e"], 1),
            file(&["trailing dot."], 1),
            file(&["trailing space "], 1),
            file(&["1:2"], 1),
        ]))
        .unwrap();
        let names: Vec<&str> = m.info.files.iter().map(|f| f.path[1].as_str()).collect();
        assert_eq!(
            names,
            [
                "README",
                "readme",
                "ReadMe",
                "CON",
                "aux.txt",
                "a<b>c|d?e",
                "trailing dot.",
                "trailing space ",
                "1:2"
            ]
        );
    }

    #[test]
    fn nul_bytes_are_rejected_wherever_a_name_comes_from() {
        let nul = "a\0b";
        assert_eq!(
            unsafe_reason(parse_info(set(single(5), "name", Some(nul.into())))),
            "NUL byte in path component"
        );
        assert_eq!(
            unsafe_reason(parse_info(set(single(5), "name.utf-8", Some(nul.into())))),
            "NUL byte in path component"
        );
        let entry = set(
            file(&["ok"], 5),
            "path.utf-8",
            Some(OwnedValue::list(["dir".into(), nul.into()])),
        );
        assert_eq!(
            unsafe_reason(parse_info(multi(vec![entry]))),
            "NUL byte in path component"
        );
        assert_eq!(
            unsafe_reason(parse_info(multi(vec![file(&["\0"], 5)]))),
            "NUL byte in path component"
        );
    }

    #[test]
    fn rejects_bad_bencode_without_panicking() {
        let err = Metainfo::from_bytes(&vec![b'l'; 100_000]).unwrap_err();
        assert!(matches!(
            err,
            MetainfoError::Bencode(DecodeError {
                kind: bencode::DecodeErrorKind::TooDeep,
                ..
            })
        ));
        let mut nested = b"d4:info".to_vec();
        nested.extend(vec![b'd'; 100_000]);
        assert!(matches!(
            Metainfo::from_bytes(&nested),
            Err(MetainfoError::Bencode(_))
        ));
        // Unsorted keys make a non-canonical info dict, whose hash would be ambiguous.
        let err = Metainfo::from_bytes(b"d4:infod4:name1:x6:lengthi1eee").unwrap_err();
        assert_eq!(
            err.to_string(),
            "bencode: dictionary keys out of order at byte 17"
        );
    }

    #[test]
    fn every_truncation_and_byte_mutation_is_handled() {
        let samples = [
            torrent(multi(vec![
                file(&["a"], 10),
                set(file(&["p"], 5), "attr", Some("p".into())),
                file(&["d", "b"], 20_000),
            ])),
            include_bytes!("../../../testdata/single.torrent").to_vec(),
        ];
        for data in &samples {
            Metainfo::from_bytes(data).unwrap();
            for cut in 0..data.len() {
                assert!(Metainfo::from_bytes(&data[..cut]).is_err(), "cut at {cut}");
            }
            let mut mutated = data.clone();
            for i in 0..data.len() {
                for b in [
                    0, b'0', b'9', b'-', b':', b'e', b'i', b'l', b'd', b'/', 0xff,
                ] {
                    mutated[i] = b;
                    let _ = Metainfo::from_bytes(&mutated);
                }
                mutated[i] = data[i];
            }
        }
    }

    /// The span of the top-level `info` value found independently of the decoder: mktorrent writes `info`
    /// as the last top-level key, so it runs from after `4:info` to just before the final `e`.
    fn info_span_by_search(data: &[u8]) -> &[u8] {
        let key = b"4:infod";
        let start = data.windows(key.len()).position(|w| w == key).unwrap() + 6;
        &data[start..data.len() - 1]
    }

    #[test]
    fn parses_mktorrent_single_file() {
        let data = include_bytes!("../../../testdata/single.torrent");
        let m = Metainfo::from_bytes(data).unwrap();
        // Computed with Python's hashlib over the info span found by a separate bencode walker.
        assert_eq!(
            m.info_hash.to_hex(),
            "9eded739eb33c86ef52dfe795c11cdafcf1d3d5a"
        );
        assert_eq!(m.info_hash.0, digest::sha1(info_span_by_search(data)));
        assert_eq!(m.info.name, "single.bin");
        assert_eq!(m.total_length(), 100_000);
        assert_eq!(m.info.piece_length, 32768);
        assert_eq!(m.piece_count(), 4);
        assert!(!m.info.multi_file);
        assert_eq!(
            m.announce_tiers,
            vec![
                vec!["http://127.0.0.1:6969/announce"],
                vec!["udp://127.0.0.1:6969/announce"]
            ]
        );
        assert_eq!(m.comment.as_deref(), Some("swarmer fixture"));
        assert_eq!(m.created_by.as_deref(), Some("mktorrent 1.1"));
        assert!(m.creation_date.is_some());
    }

    #[test]
    fn parses_mktorrent_multi_file_private() {
        let data = include_bytes!("../../../testdata/multi.torrent");
        let m = Metainfo::from_bytes(data).unwrap();
        assert_eq!(
            m.info_hash.to_hex(),
            "b6b93364dce6c2ed2201e435f74f6bf7a6f203b5"
        );
        assert_eq!(m.info_hash.0, digest::sha1(info_span_by_search(data)));
        assert!(m.info.multi_file);
        assert!(m.info.private);
        let files: Vec<(String, u64)> = m
            .info
            .files
            .iter()
            .map(|f| (f.path.join("/"), f.length))
            .collect();
        assert_eq!(
            files,
            [
                ("multi/a.txt".to_owned(), 14000),
                ("multi/empty".to_owned(), 0),
                ("multi/sub/b.bin".to_owned(), 40000),
                ("multi/sub/deeper/c.txt".to_owned(), 5)
            ]
        );
        assert_eq!(m.piece_count(), 2);
    }
}
