//! The BEP 52 (v2) parts of a metainfo file: the `file tree` of an info dictionary, the `piece
//! layers` beside it, the consistency of a hybrid's v1 and v2 views, and checking a piece against its
//! file's merkle tree.
//!
//! **Piece numbering.** BEP 52 aligns every file to a piece boundary. A v2-only torrent is laid out as
//! a hybrid would be: a padding file (never written) after every file whose end is not on a boundary,
//! the last one included, as libtorrent does, so piece indices, bitfields and requests are the
//! same for every client and the rest of swarmer sees an ordinary layout with BEP 47 padding.

use std::collections::HashSet;

use crate::bencode::{Dict, Value};
use crate::layout::Layout;
use crate::merkle::{self, Hash256, LeafEvidence, PieceCheck};
use crate::metainfo::error::MetainfoError;
use crate::metainfo::fields::{check_component, dotted};

/// A file of a `file tree`, in tree order (the dictionaries' sorted key order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TreeFile {
    /// The path inside the torrent (below its `name` directory), as safe components.
    pub(super) path: Vec<String>,
    /// Length in bytes.
    pub(super) length: u64,
    /// `pieces root`; `None` only for an empty file.
    pub(super) root: Option<Hash256>,
}

/// The v2 description of a torrent's content: every non-empty file's merkle root, where its pieces
/// are, and its piece layer when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Info {
    /// The v2 info hash: SHA-256 of the `info` dictionary's exact bytes (BEP 52).
    pub info_hash: Hash256,
    /// The non-empty files, in torrent order.
    pub files: Vec<V2File>,
}

/// One non-empty file of a v2 or hybrid torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2File {
    /// Its index in [`Info::files`](crate::metainfo::Info::files).
    pub file: usize,
    /// Length in bytes.
    pub length: u64,
    /// The index of its first piece (files start on piece boundaries).
    pub first_piece: u32,
    /// How many pieces it spans.
    pub piece_count: u32,
    /// `pieces root`: the root of the file's merkle tree (BEP 52).
    pub pieces_root: Hash256,
    /// The piece layer, one hash per piece, checked against `pieces_root`; `None` when not known
    /// (a hybrid without `piece layers`) and for files of one piece, whose root is their piece hash.
    pub layer: Option<Vec<Hash256>>,
}

/// Parses `info.file tree` into its files, in tree order.
pub(super) fn parse_tree(dict: &Dict<'_>) -> Result<Vec<TreeFile>, MetainfoError> {
    let tree = dict
        .get(b"file tree")
        .ok_or_else(|| MetainfoError::Missing("info.file tree".to_owned()))?;
    let mut files = Vec::new();
    walk(tree, &mut Vec::new(), &mut files)?;
    if files.is_empty() {
        return Err(bad_tree(&[], "no files"));
    }
    Ok(files)
}

/// Visits one node of the tree at `path`: a file (a dictionary whose only key is the empty string) or
/// a directory. The bencode decoder's depth limit bounds the recursion.
fn walk(
    node: &Value<'_>,
    path: &mut Vec<String>,
    files: &mut Vec<TreeFile>,
) -> Result<(), MetainfoError> {
    let dict = node
        .as_dict()
        .ok_or_else(|| bad_tree(path, "not a dictionary"))?;
    if let Some(leaf) = dict.get(b"") {
        if dict.len() != 1 || path.is_empty() {
            return Err(bad_tree(path, "both a file and a directory"));
        }
        files.push(leaf_file(leaf, path)?);
        return Ok(());
    }
    for (key, child) in dict.iter() {
        let name = std::str::from_utf8(key)
            .map_err(|_| MetainfoError::NotUtf8(format!("info.file tree {}", path.join("/"))))?;
        path.push(name.to_owned());
        check_component(name).map_err(|reason| MetainfoError::UnsafePath {
            path: path.join("/"),
            reason,
        })?;
        walk(child, path, files)?;
        path.pop();
    }
    Ok(())
}

/// A file node's `""` dictionary: `length`, and `pieces root` when the file is not empty.
fn leaf_file(leaf: &Value<'_>, path: &[String]) -> Result<TreeFile, MetainfoError> {
    let leaf = leaf
        .as_dict()
        .ok_or_else(|| bad_tree(path, "file entry is not a dictionary"))?;
    let length = leaf
        .get(b"length")
        .ok_or_else(|| bad_tree(path, "no `length`"))?
        .as_int()
        .ok_or_else(|| bad_tree(path, "`length` is not an integer"))?;
    let length = u64::try_from(length).map_err(|_| MetainfoError::NegativeLength {
        path: path.join("/"),
        length,
    })?;
    let root = match leaf.get(b"pieces root") {
        None if length == 0 => None,
        None => return Err(bad_tree(path, "no `pieces root`")),
        Some(root) => Some(
            root.as_bytes()
                .and_then(|b| <Hash256>::try_from(b).ok())
                .ok_or_else(|| bad_tree(path, "`pieces root` is not 32 bytes"))?,
        ),
    };
    Ok(TreeFile {
        path: path.to_vec(),
        length,
        root: root.filter(|_| length > 0),
    })
}

fn bad_tree(path: &[String], reason: &'static str) -> MetainfoError {
    MetainfoError::BadFileTree {
        path: path.join("/"),
        reason,
    }
}

/// Whether the tree is a single-file torrent: one file at the top.
pub(super) fn is_single_file(tree: &[TreeFile]) -> bool {
    matches!(tree, [only] if only.path.len() == 1)
}

/// The file list of a v2-only torrent: the tree's files under `name` (just `[name]` for a single
/// file) with a padding file after each one that ends off a piece boundary, the last one included,
/// as libtorrent lays out a v2 torrent (so its last piece is whole, and so are its requests for it). Returns (path, length, padding) triples.
pub(super) fn padded_files(
    name: &str,
    tree: &[TreeFile],
    piece_length: u64,
) -> Vec<(Vec<String>, u64, bool)> {
    let single = is_single_file(tree);
    let mut out = Vec::with_capacity(tree.len() * 2);
    let mut offset = 0u64;
    for file in tree {
        let path = if single {
            vec![name.to_owned()]
        } else {
            std::iter::once(name.to_owned())
                .chain(file.path.iter().cloned())
                .collect()
        };
        out.push((path, file.length, false));
        offset = offset.saturating_add(file.length);
        let misaligned = offset % piece_length;
        if misaligned != 0 {
            let pad = piece_length - misaligned;
            out.push((
                vec![name.to_owned(), ".pad".to_owned(), pad.to_string()],
                pad,
                true,
            ));
            offset = offset.saturating_add(pad);
        }
    }
    out
}

/// Checks that a hybrid's v1 files (`paths`, `lengths`, `padding` in v1 order, paths below the
/// torrent's name) are the tree's files in the same order and sizes, each non-empty one starting on
/// a piece boundary of `layout`.
pub(super) fn check_hybrid(
    v1: &[(&[String], u64, bool)],
    tree: &[TreeFile],
    layout: &Layout,
) -> Result<(), MetainfoError> {
    let real: Vec<(usize, &[String], u64)> = v1
        .iter()
        .enumerate()
        .filter(|(_, (_, _, padding))| !padding)
        .map(|(i, (path, length, _))| (i, *path, *length))
        .collect();
    if real.len() != tree.len() {
        return Err(MetainfoError::HybridMismatch(format!(
            "{} files in v1, {} in the file tree",
            real.len(),
            tree.len()
        )));
    }
    for ((index, path, length), file) in real.iter().zip(tree) {
        let shown = file.path.join("/");
        if *path != &file.path[..] && !(is_single_file(tree) && path.is_empty()) {
            return Err(MetainfoError::HybridMismatch(format!(
                "v1 has {:?} where the file tree has {shown:?}",
                path.join("/")
            )));
        }
        if *length != file.length {
            return Err(MetainfoError::HybridMismatch(format!(
                "{shown:?} is {length} bytes in v1 and {} in the file tree",
                file.length
            )));
        }
        let file_index = layout.file(*index).expect("v1 files built the layout");
        if file.length > 0 && layout.file_offset(file_index) % u64::from(layout.piece_length()) != 0
        {
            return Err(MetainfoError::HybridMismatch(format!(
                "{shown:?} does not start on a piece boundary (missing BEP 47 padding)"
            )));
        }
    }
    Ok(())
}

/// The v2 index of a torrent's files: `real` lists the index in the file list of each tree file, in
/// tree order.
pub(super) fn index(
    tree: &[TreeFile],
    real: &[usize],
    layout: &Layout,
    info_hash: Hash256,
) -> V2Info {
    let piece_length = u64::from(layout.piece_length());
    let files = tree
        .iter()
        .zip(real)
        .filter_map(|(file, &index)| {
            let root = file.root?;
            let file_index = layout.file(index)?;
            Some(V2File {
                file: index,
                length: file.length,
                first_piece: (layout.file_offset(file_index) / piece_length) as u32,
                piece_count: file.length.div_ceil(piece_length) as u32,
                pieces_root: root,
                layer: None,
            })
        })
        .collect();
    V2Info { info_hash, files }
}

impl V2Info {
    /// Attaches the `piece layers` dictionary (BEP 52, beside `info`) to the files longer than one
    /// piece, checking each layer's size and that it hashes to the file's `pieces root`. `names(i)` is
    /// the display path of file `i`. A missing layer is an error when `required` (a v2-only torrent).
    pub(super) fn attach_layers(
        &mut self,
        layers: Option<&Value<'_>>,
        piece_length: u32,
        required: bool,
        names: impl Fn(usize) -> String,
    ) -> Result<(), MetainfoError> {
        let dict = match layers {
            None => None,
            Some(value) => Some(value.as_dict().ok_or_else(|| MetainfoError::WrongType {
                key: dotted("", "piece layers"),
                expected: "a dictionary",
                found: value.type_name(),
            })?),
        };
        for file in self.files.iter_mut().filter(|f| f.piece_count > 1) {
            let Some(bytes) = dict.and_then(|d| d.get(&file.pieces_root)) else {
                if required {
                    return Err(MetainfoError::MissingPieceLayer(names(file.file)));
                }
                continue;
            };
            let layer = check_layer(bytes.as_bytes(), file, piece_length).map_err(|reason| {
                MetainfoError::BadPieceLayer {
                    path: names(file.file),
                    reason,
                }
            })?;
            file.layer = Some(layer);
        }
        Ok(())
    }

    /// Whether every file longer than one piece has its piece layer, so every piece can be checked.
    pub fn has_all_layers(&self) -> bool {
        self.files
            .iter()
            .all(|f| f.piece_count <= 1 || f.layer.is_some())
    }

    /// The file whose pieces include `piece`.
    pub fn file_of_piece(&self, piece: u32) -> Option<&V2File> {
        let after = self.files.partition_point(|f| f.first_piece <= piece);
        let file = self.files.get(after.checked_sub(1)?)?;
        (piece < file.first_piece + file.piece_count).then_some(file)
    }

    /// Checks `data`, piece `piece` as received (with any padding bytes after its file's end), against
    /// the merkle tree of its file. `None` when the piece cannot be checked this way (its file's layer
    /// is not known, or no file holds it); `Some(false)` when it does not match, or padding bytes are
    /// not zero.
    pub fn verify_piece(&self, piece: u32, data: &[u8], piece_length: u32) -> Option<bool> {
        self.check_piece(piece, data, piece_length)
            .map(|c| c.is_good())
    }

    /// As [`V2Info::verify_piece`], keeping on a mismatch the leaf hashes computed on the way, with
    /// which the bad blocks can be found ([`crate::blame`]).
    pub fn check_piece(&self, piece: u32, data: &[u8], piece_length: u32) -> Option<PieceCheck> {
        let file = self.file_of_piece(piece)?;
        let index = piece - file.first_piece;
        let start = u64::from(index) * u64::from(piece_length);
        let len = (file.length - start).min(u64::from(piece_length)) as usize;
        if data.len() < len {
            return None;
        }
        let (expected, width) = if file.piece_count == 1 {
            let leaves = len.div_ceil(crate::BLOCK_SIZE as usize).max(1);
            (file.pieces_root, leaves.next_power_of_two() as u32)
        } else {
            let expected = *file.layer.as_ref()?.get(index as usize)?;
            (expected, merkle::blocks_per_piece(piece_length) as u32)
        };
        Some(LeafEvidence::check(
            file.pieces_root,
            index.checked_mul(width)?,
            width,
            expected,
            data,
            len,
        ))
    }

    /// The `piece layers` dictionary to write beside `info` in a `.torrent` file: every known layer,
    /// keyed by `pieces root`, in key order (canonical bencode), each root once.
    pub fn piece_layers_bytes(&self) -> Option<Vec<u8>> {
        let mut layers: Vec<(&Hash256, &Vec<Hash256>)> = self
            .files
            .iter()
            .filter_map(|f| Some((&f.pieces_root, f.layer.as_ref()?)))
            .collect();
        if layers.is_empty() {
            return None;
        }
        layers.sort_by_key(|(root, _)| **root);
        let mut seen = HashSet::new();
        let mut out = b"d".to_vec();
        for (root, layer) in layers {
            if seen.insert(root) {
                out.extend_from_slice(b"32:");
                out.extend_from_slice(root);
                out.extend_from_slice(format!("{}:", layer.len() * 32).as_bytes());
                layer.iter().for_each(|h| out.extend_from_slice(h));
            }
        }
        out.push(b'e');
        Some(out)
    }
}

/// A piece layer's hashes, checked: 32 bytes per piece of the file, hashing up to its root.
fn check_layer(
    bytes: Option<&[u8]>,
    file: &V2File,
    piece_length: u32,
) -> Result<Vec<Hash256>, String> {
    let bytes = bytes.ok_or("not a byte string")?;
    let expected = file.piece_count as usize * 32;
    if bytes.len() != expected {
        return Err(format!(
            "{} bytes, expected {expected} (32 per piece)",
            bytes.len()
        ));
    }
    let layer: Vec<Hash256> = bytes
        .chunks_exact(32)
        .map(|c| <Hash256>::try_from(c).expect("32-byte chunk"))
        .collect();
    if merkle::root_from_layer(&layer, piece_length) != file.pieces_root {
        return Err("does not hash to the file's `pieces root`".to_owned());
    }
    Ok(layer)
}

#[cfg(test)]
mod tests;
