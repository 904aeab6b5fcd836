//! Metainfo (.torrent) files, v1 (BEP 3, "metainfo files"), v2 and hybrid (BEP 52), with announce-list
//! tiers (BEP 12), the private flag (BEP 27) and padding files (BEP 47): the pinned types the rest of the
//! crate codes against, and the parser that validates a file into them. The v2 `file tree`, `piece
//! layers` and hybrid consistency are in `v2`; errors in `error`.
//!
//! **Validation choices.** The `info` dictionary is checked strictly, because it decides what is written
//! where on disk: unsafe file names are *rejected*, never sanitized (a rewritten path would silently differ
//! from what other peers and the user expect), and so is a file that another file needs as a directory.
//! Real-world oddities that mature clients accept are accepted too, as none of them is unsafe: keys out
//! of order (the info hash is the hash of the bytes as received, so it stays what every peer computes),
//! bytes after the root dictionary (a newline), BEP 47 symlink entries without `length` (kept as
//! entries that are never written: swarmer creates no links), and two files with the same path (the
//! later one is renamed `bar.1.txt`, as libtorrent does). Fields outside `info` (trackers, comment,
//! dates) are advisory: a malformed one is dropped instead of failing the whole file, and tracker URLs
//! are trimmed of surrounding white space.

use std::collections::HashSet;
use std::sync::Arc;

use crate::bencode::{self, Dict, Value};
use crate::layout::PieceIndex;
use crate::merkle::{Hash256, PieceCheck};
use crate::metainfo::fields::{
    check_component, required, required_bytes, required_int, required_list,
};
use crate::metainfo::v2::TreeFile;
use crate::{BLOCK_SIZE, InfoHash, Layout, digest};

pub use crate::metainfo::error::{MAX_METAINFO_BYTES, MetainfoError};
pub use crate::metainfo::v2::{V2File, V2Info};

mod error;
mod fields;
mod v2;

/// Which BitTorrent versions a torrent speaks (BEP 52).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaVersion {
    /// v1 only: SHA-1 piece hashes, SHA-1 info hash (BEP 3).
    V1,
    /// v2 only: a `file tree` with per-file merkle roots, SHA-256 info hash (BEP 52).
    V2,
    /// Both: v1 `pieces` and `files` (with BEP 47 padding) and a v2 `file tree` describing the same
    /// content; one swarm under each info hash.
    Hybrid,
}

impl MetaVersion {
    /// "v1", "v2" or "hybrid (v1 + v2)", for people.
    pub fn describe(self) -> &'static str {
        match self {
            MetaVersion::V1 => "v1",
            MetaVersion::V2 => "v2",
            MetaVersion::Hybrid => "hybrid (v1 + v2)",
        }
    }
}

/// A parsed, validated metainfo file (v1, v2 or hybrid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// The info hash the torrent uses on the wire, with trackers and in the DHT: the SHA-1 of the exact
    /// bytes of the `info` dictionary as they appear in the file for v1 and hybrid torrents, the
    /// SHA-256 truncated to 20 bytes for v2-only ones (BEP 52).
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
    /// Web seeds, GetRight style (BEP 19 `url-list`: one URL or a list), in file order, duplicates
    /// and non-HTTP(S) URLs dropped. See [`crate::webseed`].
    pub url_list: Vec<String>,
    /// Web seeds, Hoffman style (BEP 17 `httpseeds`), as `url_list`.
    pub http_seeds: Vec<String>,
}

/// The `info` dictionary (BEP 3), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// `name`: the file name (single-file) or top directory name (multi-file); a safe path component.
    pub name: String,
    /// `piece length` in bytes.
    pub piece_length: u32,
    /// `pieces`: one SHA-1 per piece; empty for a v2-only torrent.
    pub piece_hashes: Vec<[u8; 20]>,
    /// The v2 info hash, merkle roots and piece layers (v2 and hybrid torrents); boxed, as most
    /// torrents are v1 and the metainfo travels in messages.
    pub v2: Option<Box<V2Info>>,
    /// The files in torrent order, padding files included (for a v2-only torrent, the padding that
    /// aligns its files to pieces, as a hybrid has). A single-file torrent has one entry.
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

impl Metainfo {
    /// Parses and validates a .torrent file (v1, v2 or hybrid).
    ///
    /// The info hashes are those of the `info` dictionary's exact bytes (see [`Metainfo::info_hash`]).
    /// A v2 torrent's `piece layers` are checked against each file's `pieces root`; a v2-only torrent
    /// must have them. Trackers come from
    /// `announce-list` (BEP 12) with empty tiers and non-UTF-8 or empty URLs dropped, or `[[announce]]` when
    /// the list is absent or ends up empty, or nothing (a trackerless torrent). `comment`, `created by` and
    /// `creation date` are kept when they have the right type and are dropped otherwise.
    ///
    /// Errors: see [`MetainfoError`]; every problem with the bencode or the `info` dictionary fails, and
    /// so does input longer than [`MAX_METAINFO_BYTES`].
    pub fn from_bytes(data: &[u8]) -> Result<Metainfo, MetainfoError> {
        check_size(data)?;
        // Bytes after the root dictionary are ignored: they are not part of any hash.
        let (root, _) = bencode::decode_prefix_lenient(data)?;
        let top = root.as_dict().ok_or(MetainfoError::NotADictionary {
            found: root.type_name(),
        })?;
        let info_value = required(top, "", "info")?;
        let mut info = Info::from_value(info_value)?;
        info.attach_piece_layers(top.get(b"piece layers"))?;
        Ok(Metainfo {
            info_hash: wire_hash(&info, info_value.raw()),
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
            url_list: web_seed_urls(top.get(b"url-list")),
            http_seeds: web_seed_urls(top.get(b"httpseeds")),
        })
    }

    /// A metainfo made of an `info` dictionary received by the metadata exchange (BEP 9) and the
    /// trackers of a magnet link (one tier each, as BEP 9 leaves the order to the client). The info
    /// hashes are those of `info_bytes`; the caller checks them with [`Metainfo::has_info_hash`].
    ///
    /// Errors: as [`Info::from_bytes`]; a v2-only dictionary, whose piece layers are not in it, is
    /// [`MetainfoError::PieceLayersNeeded`].
    pub fn from_info_bytes(
        info_bytes: &[u8],
        announce_tiers: Vec<Vec<String>>,
    ) -> Result<Metainfo, MetainfoError> {
        let mut info = Info::from_bytes(info_bytes)?;
        if info.version() == MetaVersion::V2 {
            info.attach_piece_layers(None)
                .map_err(|_| MetainfoError::PieceLayersNeeded)?;
        }
        Ok(Metainfo {
            info_hash: wire_hash(&info, info_bytes),
            info,
            info_bytes: Arc::from(info_bytes),
            announce_tiers,
            comment: None,
            created_by: None,
            creation_date: None,
            url_list: Vec::new(),
            http_seeds: Vec::new(),
        })
    }

    /// A metainfo made of a v2 `info` dictionary received by the metadata exchange (BEP 9) and the
    /// piece layers fetched from peers (BEP 52 hash requests, [`crate::layer_fetch`]), keyed by
    /// `pieces root`. Every layer is checked against its root again, as for a .torrent file.
    ///
    /// Errors: as [`Info::from_bytes`], and a missing or wrong layer.
    pub fn from_info_bytes_and_layers(
        info_bytes: &[u8],
        announce_tiers: Vec<Vec<String>>,
        layers: &std::collections::BTreeMap<Hash256, Vec<Hash256>>,
    ) -> Result<Metainfo, MetainfoError> {
        let mut info = Info::from_bytes(info_bytes)?;
        let encoded = bencode::OwnedValue::Dict(
            layers
                .iter()
                .map(|(root, layer)| {
                    let bytes: Vec<u8> = layer.iter().flatten().copied().collect();
                    (root.to_vec(), bencode::OwnedValue::Bytes(bytes))
                })
                .collect(),
        )
        .encode();
        info.attach_piece_layers(Some(&bencode::decode(&encoded)?))?;
        Ok(Metainfo {
            info_hash: wire_hash(&info, info_bytes),
            info,
            info_bytes: Arc::from(info_bytes),
            announce_tiers,
            comment: None,
            created_by: None,
            creation_date: None,
            url_list: Vec::new(),
            http_seeds: Vec::new(),
        })
    }

    /// A `.torrent` file for this metainfo (BEP 3): `announce` (the first tracker), `announce-list`
    /// (BEP 12, when there is more than one tracker), web seeds (BEP 17 `httpseeds`, BEP 19
    /// `url-list`) and `info` byte for byte as hashed, so the file has the same info hash. Comment
    /// and dates are not written.
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
        if !self.http_seeds.is_empty() {
            out.extend_from_slice(b"9:httpseeds");
            OwnedValue::list(self.http_seeds.iter().map(|url| string(url))).encode_into(&mut out);
        }
        out.extend_from_slice(b"4:info");
        out.extend_from_slice(&self.info_bytes);
        if let Some(layers) = self.info.v2.as_ref().and_then(|v2| v2.piece_layers_bytes()) {
            out.extend_from_slice(b"12:piece layers");
            out.extend_from_slice(&layers);
        }
        if !self.url_list.is_empty() {
            out.extend_from_slice(b"8:url-list");
            OwnedValue::list(self.url_list.iter().map(|url| string(url))).encode_into(&mut out);
        }
        out.push(b'e');
        out
    }

    /// Whether `hash` names this torrent: its v1 info hash, or its v2 info hash truncated to 20 bytes
    /// as the wire, trackers and the DHT carry it (BEP 52). A hybrid answers to both.
    pub fn has_info_hash(&self, hash: &InfoHash) -> bool {
        self.info_hash == *hash || self.info_hash_v2().is_some_and(|v2| v2[..20] == hash.0)
    }

    /// The v2 info hash (BEP 52): SHA-256 of the `info` dictionary's bytes; `None` for v1 torrents.
    pub fn info_hash_v2(&self) -> Option<Hash256> {
        self.info.v2.as_ref().map(|v2| v2.info_hash)
    }

    /// The info hashes peers may know this torrent by: [`Metainfo::info_hash`] first, then for a
    /// hybrid the truncated v2 hash.
    pub fn wire_hashes(&self) -> Vec<InfoHash> {
        let mut hashes = vec![self.info_hash];
        if let Some(v2) = self.info_hash_v2().map(truncate) {
            if v2 != self.info_hash {
                hashes.push(v2);
            }
        }
        hashes
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

/// A v2 info hash as the wire carries it: its first 20 bytes (BEP 52).
pub fn truncate(v2: Hash256) -> InfoHash {
    let mut hash = [0; 20];
    hash.copy_from_slice(&v2[..20]);
    InfoHash(hash)
}

/// The info hash on the wire of `info`, whose bytes are `info_bytes`: the SHA-1 for v1 and hybrid
/// torrents, the truncated SHA-256 for v2-only ones (BEP 52).
fn wire_hash(info: &Info, info_bytes: &[u8]) -> InfoHash {
    match (&info.v2, info.version()) {
        (Some(v2), MetaVersion::V2) => truncate(v2.info_hash),
        _ => InfoHash(digest::sha1(info_bytes)),
    }
}

impl Info {
    /// Parses and validates a bencoded `info` dictionary on its own, as received from peers by the
    /// metadata exchange (BEP 9). The caller checks its SHA-1 against the expected info hash.
    ///
    /// Errors: as [`Metainfo::from_bytes`].
    pub fn from_bytes(data: &[u8]) -> Result<Info, MetainfoError> {
        check_size(data)?;
        Info::from_value(&bencode::decode_lenient(data)?)
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
    ///   2^64 bytes and more than 2^32 - 1 pieces are [`LayoutError`](crate::LayoutError)s. Sizes are never trusted to fit
    ///   on disk: that is the caller's check.
    /// - Paths: see [`MetainfoError::UnsafePath`] and [`MetainfoError::PathConflict`]; a later file
    ///   with the path of an earlier one is renamed (`bar.txt` to `bar.1.txt`). Names differing only in case (`a` and `A`) are accepted: they
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
        let tree = match dict.get(b"meta version") {
            None => None,
            Some(version) => match version.as_int() {
                Some(2) => {
                    if !(piece_length as u64).is_power_of_two() {
                        return Err(MetainfoError::PieceLengthNotPowerOfTwo(piece_length));
                    }
                    Some(v2::parse_tree(dict)?)
                }
                Some(other) => return Err(MetainfoError::UnsupportedMetaVersion(other)),
                None => {
                    return Err(fields::wrong_type(
                        "info",
                        "meta version",
                        "an integer",
                        version,
                    ));
                }
            },
        };
        let (files, multi_file, piece_hashes, version) = match &tree {
            Some(tree) if dict.get(b"pieces").is_none() => {
                let files: Vec<FileEntry> =
                    v2::padded_files(&name, tree, piece_length.unsigned_abs())
                        .into_iter()
                        .map(|(path, length, padding)| FileEntry {
                            path,
                            length,
                            padding,
                        })
                        .collect();
                check_distinct(&files)?;
                (
                    files,
                    !v2::is_single_file(tree),
                    Vec::new(),
                    MetaVersion::V2,
                )
            }
            _ => {
                let (files, multi_file, hashes) = v1_files(dict, &name)?;
                let version = if tree.is_some() {
                    MetaVersion::Hybrid
                } else {
                    MetaVersion::V1
                };
                (files, multi_file, hashes, version)
            }
        };

        // `piece_length` is positive, so the conversion cannot fail; the layout checks the upper bound.
        let layout = Layout::new(piece_length.unsigned_abs(), files.iter().map(|f| f.length))?;
        if version != MetaVersion::V2 && piece_hashes.len() != layout.piece_count() as usize {
            return Err(MetainfoError::PieceCountMismatch {
                expected: layout.piece_count(),
                got: piece_hashes.len(),
            });
        }
        let v2 = match &tree {
            None => None,
            Some(tree) => Some(Box::new(v2_index(
                tree,
                &files,
                &layout,
                version,
                value.raw(),
            )?)),
        };

        Ok(Info {
            name,
            piece_length: layout.piece_length(),
            piece_hashes,
            v2,
            files,
            multi_file,
            private: dict.get(b"private").and_then(Value::as_int) == Some(1),
            layout,
        })
    }

    /// Which versions the torrent speaks: v1 without a v2 part, v2 without v1 piece hashes, else
    /// hybrid.
    pub fn version(&self) -> MetaVersion {
        match (&self.v2, self.piece_hashes.is_empty()) {
            (None, _) => MetaVersion::V1,
            (Some(_), true) => MetaVersion::V2,
            (Some(_), false) => MetaVersion::Hybrid,
        }
    }

    /// Attaches and checks the `piece layers` of a v2 or hybrid torrent (nothing for v1). A v2-only
    /// torrent needs a layer for every file longer than one piece.
    fn attach_piece_layers(&mut self, layers: Option<&Value<'_>>) -> Result<(), MetainfoError> {
        let required = self.version() == MetaVersion::V2;
        let files = &self.files;
        if let Some(v2) = &mut self.v2 {
            v2.attach_layers(layers, self.piece_length, required, |i| {
                files[i].path.join("/")
            })?;
        }
        Ok(())
    }

    /// Checks the bytes of `piece` (its whole length, padding included) against the torrent's hashes:
    /// the SHA-1 of v1 and hybrid torrents, and the v2 merkle tree (BEP 52) where its piece layer is
    /// known. A v2-only piece that cannot be checked does not match.
    pub fn verify_piece(&self, piece: PieceIndex, data: &[u8]) -> bool {
        self.check_piece(piece, data).is_good()
    }

    /// As [`Info::verify_piece`], keeping on a v2 mismatch the leaf hashes computed on the way, so
    /// the engine can find the bad blocks and who sent them ([`crate::blame`]). A hybrid piece whose
    /// v2 check fails is not hashed with SHA-1 as well.
    pub fn check_piece(&self, piece: PieceIndex, data: &[u8]) -> PieceCheck {
        let v2 = self
            .v2
            .as_ref()
            .and_then(|v2| v2.check_piece(piece.get(), data, self.piece_length));
        match (self.version(), v2) {
            (_, Some(bad @ PieceCheck::Bad(_))) => bad,
            (MetaVersion::V2, Some(good)) => good,
            (MetaVersion::V2, None) => PieceCheck::Bad(None),
            (MetaVersion::V1 | MetaVersion::Hybrid, _) => {
                if digest::sha1(data) == *self.piece_hash(piece) {
                    PieceCheck::Good
                } else {
                    PieceCheck::Bad(None)
                }
            }
        }
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

/// The v1 files, multi-file flag and piece hashes of an info dictionary (BEP 3).
type V1Files = (Vec<FileEntry>, bool, Vec<[u8; 20]>);

fn v1_files(dict: &Dict<'_>, name: &str) -> Result<V1Files, MetainfoError> {
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
                path: name.to_owned(),
                length,
            })?;
            let file = FileEntry {
                path: vec![name.to_owned()],
                length,
                padding: false,
            };
            (vec![file], false)
        }
        (None, Some(_)) => (files(dict, name)?, true),
    };
    let hashes = pieces
        .chunks_exact(20)
        .map(|chunk| <[u8; 20]>::try_from(chunk).expect("20-byte chunk"))
        .collect();
    Ok((files, multi_file, hashes))
}

/// The v2 index of a v2 or hybrid torrent's files; for a hybrid, first checks that its v1 files are
/// the tree's.
fn v2_index(
    tree: &[TreeFile],
    files: &[FileEntry],
    layout: &Layout,
    version: MetaVersion,
    info_bytes: &[u8],
) -> Result<V2Info, MetainfoError> {
    if version == MetaVersion::Hybrid {
        // v1 paths start with the torrent's name (a single file's is only that); tree paths do not.
        let v1: Vec<(&[String], u64, bool)> = files
            .iter()
            .map(|f| (&f.path[1..], f.length, f.padding))
            .collect();
        v2::check_hybrid(&v1, tree, layout)?;
    }
    let real: Vec<usize> = (0..files.len()).filter(|&i| !files[i].padding).collect();
    Ok(v2::index(tree, &real, layout, digest::sha256(info_bytes)))
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
        let attr = entry_dict.get(b"attr").and_then(Value::as_bytes);
        // BEP 47: a symbolic link (`l`) may carry no `length`; it holds no bytes of the torrent.
        let symlink = attr.is_some_and(|attr| attr.contains(&b'l'));
        let length = match entry_dict.get(b"length") {
            None if symlink => 0,
            _ => required_int(entry_dict, &at, "length")?,
        };
        let length = u64::try_from(length).map_err(|_| MetainfoError::NegativeLength {
            path: path.join("/"),
            length,
        })?;
        // Padding is never written; nor is a link, which swarmer does not create.
        let padding = attr.is_some_and(|attr| attr.contains(&b'p')) || symlink;
        files.push(FileEntry {
            path,
            length,
            padding,
        });
    }
    rename_duplicates(&mut files);
    check_distinct(&files)?;
    Ok(files)
}

/// Renames a file whose path an earlier file already has, as libtorrent does: `bar.txt` becomes
/// `bar.1.txt` (or `.2`, ... until the path is free). Padding files take no part.
fn rename_duplicates(files: &mut [FileEntry]) {
    let mut taken: HashSet<Vec<String>> = HashSet::new();
    for file in files.iter_mut().filter(|f| !f.padding) {
        if !taken.contains(&file.path) {
            taken.insert(file.path.clone());
            continue;
        }
        let last = file.path.len() - 1;
        let name = file.path[last].clone();
        let (stem, ext) = match name.rfind('.') {
            Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
            _ => (&name[..], ""),
        };
        for n in 1u64.. {
            file.path[last] = format!("{stem}.{n}{ext}");
            if !taken.contains(&file.path) {
                break;
            }
        }
        taken.insert(file.path.clone());
    }
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

/// The most web seeds kept of one kind (`url-list` or `httpseeds`); more are dropped.
pub const MAX_WEB_SEEDS: usize = 64;

/// Web seed URLs from a `url-list` (BEP 19) or `httpseeds` (BEP 17) value: a string or a list of
/// strings. Kept: UTF-8 `http://` and `https://` URLs (trimmed), each once, at most
/// [`MAX_WEB_SEEDS`]; anything else is dropped, as these fields are advisory.
pub fn web_seed_urls(value: Option<&Value<'_>>) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    let candidates: Vec<&Value<'_>> = match value {
        Some(v) => match v.as_list() {
            Some(list) => list.iter().collect(),
            None => vec![v],
        },
        None => Vec::new(),
    };
    for url in candidates
        .into_iter()
        .filter_map(Value::as_str)
        .map(str::trim)
    {
        if is_http_url(url) && !urls.iter().any(|u| u == url) {
            urls.push(url.to_owned());
            if urls.len() == MAX_WEB_SEEDS {
                break;
            }
        }
    }
    urls
}

/// Whether `url` can be a web seed: an `http://` or `https://` URL (scheme in any case) with a host,
/// and no white space or control characters.
pub fn is_http_url(url: &str) -> bool {
    let rest = strip_scheme(url, "http://").or_else(|| strip_scheme(url, "https://"));
    rest.is_some_and(|rest| {
        !rest.is_empty()
            && !rest.starts_with('/')
            && !url
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    })
}

fn strip_scheme<'a>(url: &'a str, scheme: &str) -> Option<&'a str> {
    url.get(..scheme.len())
        .filter(|s| s.eq_ignore_ascii_case(scheme))
        .map(|_| &url[scheme.len()..])
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
                .map(str::trim)
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
            .map(str::trim)
            .filter(|url| !url.is_empty())
        {
            tiers.push(vec![url.to_owned()]);
        }
    }
    tiers
}

#[cfg(test)]
mod tests;
