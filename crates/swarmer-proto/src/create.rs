//! Making a .torrent file: the sans-IO half of `swarmer create`. A [`TorrentPlan`] lays out the
//! files (v1 as they are; v2 and multi-file hybrids aligned to pieces with BEP 47 padding after every
//! unaligned file, the last one included, as libtorrent makes them), says what to hash per piece,
//! and encodes the result: `info` with v1 `pieces`/`files` (BEP 3) and/or the v2 `file tree` (BEP 52),
//! `piece layers`, trackers (BEP 12), web seeds (BEP 19 `url-list`), `private` (BEP 27) and `source`.
//!
//! Reading the files and hashing on many cores is the library's (`swarmer::create`); this module
//! never touches the disk. Every torrent it writes is parsed back by [`Metainfo::from_bytes`] before
//! it is returned, so it never makes one swarmer itself would refuse.

use std::collections::BTreeMap;

use crate::bencode::OwnedValue;
use crate::digest;
use crate::layout::{Layout, PieceIndex};
use crate::merkle::{self, Hash256};
use crate::metainfo::{Info, MetaVersion, Metainfo, MetainfoError};
use crate::{BLOCK_SIZE, LayoutError};

/// The piece length libtorrent 2.0 picks for `total` bytes of content (`create_torrent` with piece
/// size 0): 16 KiB up to about 2.7 MB, doubling each time the content grows fourfold, at most
/// 16 MiB. A 4 GiB payload gets 1 MiB pieces (4,096 of them).
pub fn auto_piece_length(total: u64) -> u32 {
    // The largest total (bytes) that still gets 16 KiB << i, measured on libtorrent 2.0.8.
    const LIMITS: [u64; 10] = [
        2_684_355,
        10_737_418,
        42_949_673,
        171_798_692,
        687_194_767,
        2_748_779_069,
        10_995_116_278,
        43_980_465_111,
        175_921_860_444,
        703_687_441_777,
    ];
    let step = LIMITS.iter().take_while(|&&limit| total > limit).count();
    BLOCK_SIZE << step
}

/// What goes into a torrent besides its files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// Tracker URLs, each its own tier (BEP 12), in order; the first is also `announce`.
    pub trackers: Vec<String>,
    /// Web seed URLs (BEP 19 `url-list`).
    pub web_seeds: Vec<String>,
    /// `private` = 1 (BEP 27).
    pub private: bool,
    /// `comment`.
    pub comment: Option<String>,
    /// `info.source`: a tag that gives the same content a different info hash per site.
    pub source: Option<String>,
    /// `created by`.
    pub created_by: Option<String>,
    /// `creation date`, seconds since the Unix epoch; `None` leaves it out (reproducible output).
    pub creation_date: Option<i64>,
}

/// Why a torrent cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    /// The piece length is not a multiple of 16 KiB (v1), or not a power of two of at least 16 KiB
    /// (v2 and hybrid, BEP 52), or over the 64 MiB limit.
    #[error(
        "piece length {0} bytes: expected a power of two from 16 KiB to 64 MiB (any multiple of 16 KiB for --v1)"
    )]
    BadPieceLength(u64),
    /// No files with a name to put in the torrent.
    #[error("nothing to put in the torrent")]
    Empty,
    /// The file sizes do not make a usable layout (more than 2^32 - 1 pieces, say).
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A name or path the metainfo parser would refuse (`..`, a separator, NUL, ...), or another
    /// problem it finds with the result.
    #[error("{0}")]
    Refused(#[from] MetainfoError),
}

/// One file to put in a torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Its path below the torrent's name, as components; empty for a single-file torrent.
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
    /// A BEP 47 padding file the plan inserted: zeros, not read from disk.
    pub padding: bool,
}

/// The hashes of one piece, from [`TorrentPlan::hash_piece`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PieceHashes {
    /// SHA-1 of the whole piece, padding included (v1 and hybrid).
    pub sha1: Option<[u8; 20]>,
    /// The v2 piece-layer hash of the file's bytes in the piece, or for a file of one piece its
    /// `pieces root` (v2 and hybrid; `None` for a piece of padding only, which cannot occur).
    pub v2: Option<Hash256>,
}

/// The layout of a torrent to be made, before its data is hashed.
#[derive(Debug, Clone)]
pub struct TorrentPlan {
    name: String,
    version: MetaVersion,
    files: Vec<PlannedFile>,
    single: bool,
    layout: Layout,
}

impl TorrentPlan {
    /// Plans a torrent named `name` (the file name of a single file, else the top directory) of
    /// `files` (paths below `name` in the order to write them, which for v2 and hybrid must be the
    /// sorted order of the `file tree`; a single file has an empty path) with `piece_length` bytes
    /// per piece, or [`auto_piece_length`] when `None`.
    ///
    /// Errors: a bad piece length, no files, a layout beyond the limits, or a name the parser would
    /// refuse (checked here, before any hashing).
    pub fn new(
        name: &str,
        files: Vec<(Vec<String>, u64)>,
        version: MetaVersion,
        piece_length: Option<u64>,
    ) -> Result<TorrentPlan, CreateError> {
        if files.is_empty() {
            return Err(CreateError::Empty);
        }
        let total: u64 = files.iter().map(|(_, len)| len).sum();
        let piece_length = piece_length.unwrap_or_else(|| u64::from(auto_piece_length(total)));
        let power = piece_length.is_power_of_two();
        let valid = piece_length >= u64::from(BLOCK_SIZE)
            && piece_length <= u64::from(crate::layout::MAX_PIECE_LENGTH)
            && piece_length % u64::from(BLOCK_SIZE) == 0
            && (power || version == MetaVersion::V1);
        if !valid {
            return Err(CreateError::BadPieceLength(piece_length));
        }
        let single = files.len() == 1 && files[0].0.is_empty();
        // A single-file hybrid keeps v1's `length` and no padding, as libtorrent writes it.
        let pad = version == MetaVersion::V2 || (version == MetaVersion::Hybrid && !single);
        let mut planned = Vec::with_capacity(files.len() * 2);
        let mut offset = 0u64;
        for (path, length) in files {
            planned.push(PlannedFile {
                path,
                length,
                padding: false,
            });
            offset = offset.saturating_add(length);
            let misaligned = offset % piece_length;
            if pad && misaligned != 0 {
                let pad = piece_length - misaligned;
                planned.push(PlannedFile {
                    path: vec![".pad".to_owned(), pad.to_string()],
                    length: pad,
                    padding: true,
                });
                offset = offset.saturating_add(pad);
            }
        }
        let layout = Layout::new(piece_length, planned.iter().map(|f| f.length))?;
        let plan = TorrentPlan {
            name: name.to_owned(),
            version,
            files: planned,
            single,
            layout,
        };
        // A dry run with placeholder hashes: the parser's checks (names, paths, sizes) before any
        // data is read.
        let placeholder = vec![PieceHashes::default(); plan.layout.piece_count() as usize];
        Info::from_bytes(&plan.info(&placeholder, &CreateOptions::default()).encode())?;
        Ok(plan)
    }

    /// The piece geometry, padding files included: what the data is read by.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The files in layout order, padding included.
    pub fn files(&self) -> &[PlannedFile] {
        &self.files
    }

    /// Hashes piece `piece`, whose bytes (its whole length, padding as zeros) are `data`.
    ///
    /// A hybrid piece is hashed in one pass, 16 KiB at a time: each block goes through SHA-1 and
    /// then, while it is still in the L1 cache, SHA-256 (its merkle leaf), so the piece is read
    /// from memory once for both.
    pub fn hash_piece(&self, piece: PieceIndex, data: &[u8]) -> PieceHashes {
        let file = match self.version {
            MetaVersion::V1 => None,
            _ => self.file_in_piece(piece),
        };
        let Some((file, start, len)) = file else {
            let sha1 = (self.version != MetaVersion::V2).then(|| digest::sha1(data));
            return PieceHashes { sha1, v2: None };
        };
        let content = len.min(data.len());
        let mut sha1 = (self.version != MetaVersion::V2).then(digest::Sha1Stream::new);
        let mut leaves = Vec::with_capacity(content.div_ceil(crate::BLOCK_SIZE as usize));
        for (i, block) in data.chunks(crate::BLOCK_SIZE as usize).enumerate() {
            if let Some(sha1) = &mut sha1 {
                sha1.update(block);
            }
            let at = i * crate::BLOCK_SIZE as usize;
            if at < content {
                leaves.push(digest::sha256(&block[..block.len().min(content - at)]));
            }
        }
        let small = self.files[file].length <= u64::from(self.layout.piece_length()) && start == 0;
        let width = if small {
            leaves.len().next_power_of_two()
        } else {
            merkle::blocks_per_piece(self.layout.piece_length())
        };
        let v2 = if leaves.is_empty() {
            merkle::ZERO_LEAF
        } else {
            merkle::root(leaves, width, merkle::ZERO_LEAF)
        };
        PieceHashes {
            sha1: sha1.map(digest::Sha1Stream::finish),
            v2: Some(v2),
        }
    }

    /// The non-padding file whose bytes start piece `piece` (v2 and hybrid pieces hold one file's
    /// bytes, then padding): its index, the piece's offset in it, and the file's bytes in the piece.
    fn file_in_piece(&self, piece: PieceIndex) -> Option<(usize, u64, usize)> {
        let slice = self
            .layout
            .piece_slices(piece)
            .find(|s| s.length > 0 && !self.files[s.file.as_usize()].padding)?;
        Some((slice.file.as_usize(), slice.offset, slice.length as usize))
    }

    /// The .torrent file for the hashed pieces (`hashes[i]` for piece `i`), checked by parsing it.
    ///
    /// Errors: only if the result would not parse, which is a bug; the plan checked names before.
    pub fn finish(
        &self,
        hashes: &[PieceHashes],
        options: &CreateOptions,
    ) -> Result<Vec<u8>, CreateError> {
        let mut top: BTreeMap<Vec<u8>, OwnedValue> = BTreeMap::new();
        if let Some(first) = options.trackers.first() {
            top.insert(b"announce".to_vec(), first.as_str().into());
        }
        if options.trackers.len() > 1 {
            let tiers = options
                .trackers
                .iter()
                .map(|url| OwnedValue::list([url.as_str().into()]));
            top.insert(b"announce-list".to_vec(), OwnedValue::list(tiers));
        }
        if let Some(comment) = &options.comment {
            top.insert(b"comment".to_vec(), comment.as_str().into());
        }
        if let Some(by) = &options.created_by {
            top.insert(b"created by".to_vec(), by.as_str().into());
        }
        if let Some(date) = options.creation_date {
            top.insert(b"creation date".to_vec(), OwnedValue::Int(date));
        }
        if !options.web_seeds.is_empty() {
            let urls = options.web_seeds.iter().map(|u| u.as_str().into());
            top.insert(b"url-list".to_vec(), OwnedValue::list(urls));
        }
        let layers = self.piece_layers(hashes);
        if !layers.is_empty() {
            top.insert(b"piece layers".to_vec(), OwnedValue::Dict(layers));
        }
        top.insert(b"info".to_vec(), self.info(hashes, options));
        let bytes = OwnedValue::Dict(top).encode();
        Metainfo::from_bytes(&bytes)?;
        Ok(bytes)
    }

    /// The pieces of each non-padding, non-empty file: (file index, first piece, piece count).
    fn file_pieces(&self) -> impl Iterator<Item = (usize, u32, u32)> + '_ {
        self.layout.files().filter_map(|f| {
            let i = f.as_usize();
            let file = &self.files[i];
            if file.padding || file.length == 0 {
                return None;
            }
            let pieces = self.layout.file_pieces(f);
            Some((i, pieces.start, pieces.end - pieces.start))
        })
    }

    /// Each v2 file's `pieces root`, by file index.
    fn roots(&self, hashes: &[PieceHashes]) -> BTreeMap<usize, Hash256> {
        let piece_length = self.layout.piece_length();
        self.file_pieces()
            .map(|(file, first, count)| {
                let layer: Vec<Hash256> = hashes[first as usize..(first + count) as usize]
                    .iter()
                    .map(|h| h.v2.unwrap_or(merkle::ZERO_LEAF))
                    .collect();
                let root = if count == 1 && self.files[file].length <= u64::from(piece_length) {
                    layer[0]
                } else {
                    merkle::root_from_layer(&layer, piece_length)
                };
                (file, root)
            })
            .collect()
    }

    /// `piece layers`: the layer of every file longer than one piece, keyed by its root.
    fn piece_layers(&self, hashes: &[PieceHashes]) -> BTreeMap<Vec<u8>, OwnedValue> {
        if self.version == MetaVersion::V1 {
            return BTreeMap::new();
        }
        let roots = self.roots(hashes);
        self.file_pieces()
            .filter(|&(file, _, count)| {
                count > 1 || self.files[file].length > u64::from(self.layout.piece_length())
            })
            .map(|(file, first, count)| {
                let layer: Vec<u8> = hashes[first as usize..(first + count) as usize]
                    .iter()
                    .flat_map(|h| h.v2.unwrap_or(merkle::ZERO_LEAF))
                    .collect();
                (roots[&file].to_vec(), OwnedValue::Bytes(layer))
            })
            .collect()
    }

    /// The `info` dictionary.
    fn info(&self, hashes: &[PieceHashes], options: &CreateOptions) -> OwnedValue {
        let mut info: BTreeMap<Vec<u8>, OwnedValue> = BTreeMap::new();
        info.insert(b"name".to_vec(), self.name.as_str().into());
        info.insert(
            b"piece length".to_vec(),
            OwnedValue::Int(i64::from(self.layout.piece_length())),
        );
        if options.private {
            info.insert(b"private".to_vec(), OwnedValue::Int(1));
        }
        if let Some(source) = &options.source {
            info.insert(b"source".to_vec(), source.as_str().into());
        }
        if self.version != MetaVersion::V2 {
            let pieces: Vec<u8> = hashes
                .iter()
                .flat_map(|h| h.sha1.unwrap_or([0; 20]))
                .collect();
            info.insert(b"pieces".to_vec(), OwnedValue::Bytes(pieces));
            if self.single {
                info.insert(b"length".to_vec(), length(self.files[0].length));
            } else {
                let files = self.files.iter().map(|f| {
                    let path = OwnedValue::list(f.path.iter().map(|c| c.as_str().into()));
                    let mut entry = vec![("length", length(f.length)), ("path", path)];
                    if f.padding {
                        entry.push(("attr", "p".into()));
                    }
                    OwnedValue::dict(entry)
                });
                info.insert(b"files".to_vec(), OwnedValue::list(files));
            }
        }
        if self.version != MetaVersion::V1 {
            info.insert(b"meta version".to_vec(), OwnedValue::Int(2));
            info.insert(b"file tree".to_vec(), self.file_tree(hashes));
        }
        OwnedValue::Dict(info)
    }

    /// The v2 `file tree`: nested dictionaries of path components, each file a `""` entry.
    fn file_tree(&self, hashes: &[PieceHashes]) -> OwnedValue {
        let roots = self.roots(hashes);
        let mut tree = OwnedValue::Dict(BTreeMap::new());
        for (i, file) in self.files.iter().enumerate().filter(|(_, f)| !f.padding) {
            let mut leaf = vec![("length", length(file.length))];
            if let Some(root) = roots.get(&i) {
                leaf.push(("pieces root", OwnedValue::Bytes(root.to_vec())));
            }
            let single = [self.name.clone()];
            let path: &[String] = if self.single { &single } else { &file.path };
            let mut node = &mut tree;
            for component in path {
                let OwnedValue::Dict(children) = node else {
                    unreachable!("tree nodes are dictionaries")
                };
                node = children
                    .entry(component.as_bytes().to_vec())
                    .or_insert_with(|| OwnedValue::Dict(BTreeMap::new()));
            }
            if let OwnedValue::Dict(children) = node {
                children.insert(Vec::new(), OwnedValue::dict(leaf));
            }
        }
        tree
    }
}

/// A length as a bencode integer (lengths beyond `i64::MAX` are refused by the layout first).
fn length(len: u64) -> OwnedValue {
    OwnedValue::Int(i64::try_from(len).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
