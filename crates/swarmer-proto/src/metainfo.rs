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
mod tests;
