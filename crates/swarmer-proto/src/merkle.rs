//! BEP 52 merkle trees: each file of a v2 torrent is hashed as a binary tree of SHA-256 hashes whose
//! leaves are the hashes of its 16 KiB blocks (the last one may be shorter). The tree has as many
//! leaves as the next power of two of the file's block count; leaves past the end of the file are
//! 32 zero bytes. Its root is the file's `pieces root`; the layer whose nodes each cover one piece
//! is its entry in `piece layers` (only files longer than one piece have one).
//!
//! Pure functions over bytes and hashes: verification, building a torrent and checking piece layers
//! received from peers all use them.

use crate::BLOCK_SIZE;
use crate::digest::{sha256, sha256_pair};

/// A SHA-256 hash: a node of a merkle tree, a `pieces root`, or a v2 info hash (BEP 52).
pub type Hash256 = [u8; 32];

/// The hash of a leaf past the end of a file (BEP 52: "set to zero").
pub const ZERO_LEAF: Hash256 = [0; 32];

/// The SHA-256 of each 16 KiB block of `data` (the last one may be shorter); none for empty `data`.
pub fn leaf_hashes(data: &[u8]) -> Vec<Hash256> {
    data.chunks(BLOCK_SIZE as usize).map(sha256).collect()
}

/// The root of a tree of `width` leaves (a power of two, at least `leaves.len()`): `leaves` first,
/// then leaves of hash `pad`. Consumes `leaves` as scratch space.
pub fn root(mut level: Vec<Hash256>, width: usize, mut pad: Hash256) -> Hash256 {
    debug_assert!(width.is_power_of_two() && width >= level.len());
    let mut width = width;
    if level.is_empty() {
        level.push(pad);
    }
    while width > 1 {
        if level.len() % 2 == 1 {
            level.push(pad);
        }
        let next: Vec<Hash256> = level
            .chunks_exact(2)
            .map(|pair| sha256_pair(&pair[0], &pair[1]))
            .collect();
        level = next;
        pad = sha256_pair(&pad, &pad);
        width /= 2;
    }
    level[0]
}

/// The root of a subtree of `leaves` zero leaves (a power of two): the hash a piece layer is padded
/// with past the end of a file, for `leaves` = blocks per piece.
pub fn pad_hash(leaves: usize) -> Hash256 {
    debug_assert!(leaves.is_power_of_two());
    let mut pad = ZERO_LEAF;
    let mut width = leaves;
    while width > 1 {
        pad = sha256_pair(&pad, &pad);
        width /= 2;
    }
    pad
}

/// Blocks per piece of a v2 torrent whose pieces are `piece_length` bytes (a power of two, at least
/// 16 KiB).
pub fn blocks_per_piece(piece_length: u32) -> usize {
    (piece_length / BLOCK_SIZE).max(1) as usize
}

/// The hash of one piece's node in the piece layer: the root of the subtree of one piece's blocks,
/// `data` being the file's bytes in that piece (shorter than the piece for a file's last piece).
pub fn piece_hash(data: &[u8], piece_length: u32) -> Hash256 {
    root(leaf_hashes(data), blocks_per_piece(piece_length), ZERO_LEAF)
}

/// The `pieces root` of a file of at most one piece, whose bytes are all of `data`: the root over the
/// next power of two of its block count. `None` for an empty file, which has no root.
pub fn small_file_root(data: &[u8]) -> Option<Hash256> {
    let leaves = leaf_hashes(data);
    let width = leaves.len().checked_next_power_of_two()?;
    (!leaves.is_empty()).then(|| root(leaves, width, ZERO_LEAF))
}

/// The `pieces root` of a file longer than one piece, from its piece layer (one hash per piece).
pub fn root_from_layer(layer: &[Hash256], piece_length: u32) -> Hash256 {
    let width = layer.len().next_power_of_two();
    root(
        layer.to_vec(),
        width,
        pad_hash(blocks_per_piece(piece_length)),
    )
}

/// The `pieces root` of a file of `data`, and its piece layer when it is longer than one piece (the
/// layer is empty otherwise, as `piece layers` leaves such files out). `None` for an empty file.
pub fn file_tree(data: &[u8], piece_length: u32) -> Option<(Hash256, Vec<Hash256>)> {
    if data.len() <= piece_length as usize {
        return small_file_root(data).map(|root| (root, Vec::new()));
    }
    let layer: Vec<Hash256> = data
        .chunks(piece_length as usize)
        .map(|piece| piece_hash(piece, piece_length))
        .collect();
    Some((root_from_layer(&layer, piece_length), layer))
}

/// What checking the bytes of one piece found (`Info::check_piece` in [`crate::metainfo`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PieceCheck {
    /// The piece matches its hashes.
    Good,
    /// It does not. For a v2 piece, the leaf hashes computed while checking it, with which the bad
    /// blocks can be found ([`crate::blame`]); `None` for a v1 piece (one SHA-1 over all of it says
    /// nothing about its blocks).
    Bad(Option<Box<LeafEvidence>>),
}

impl PieceCheck {
    /// True for [`PieceCheck::Good`].
    pub fn is_good(&self) -> bool {
        matches!(self, PieceCheck::Good)
    }
}

/// The 16 KiB leaf hashes of a v2 piece that failed its check (BEP 52), and the node of its file's
/// tree they must hash up to. The true leaves, asked of a peer with a `hash request` for exactly
/// these leaves and proven against `expected` (a node we trust already), tell which blocks were
/// bad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafEvidence {
    /// The `pieces root` of the piece's file: which tree.
    pub pieces_root: Hash256,
    /// The index of the piece's first leaf in its file's leaf layer (layer 0); a multiple of
    /// `width`.
    pub first_leaf: u32,
    /// The leaves under `expected`: blocks per piece, or for a file of one piece the width of its
    /// whole tree. A power of two.
    pub width: u32,
    /// The trusted node: the piece's hash in its file's piece layer, or the `pieces root` of a file
    /// of one piece.
    pub expected: Hash256,
    /// The hash of each block of the file's bytes in the piece, as received, in block order (at most
    /// `width`; the leaves past the file's end are [`ZERO_LEAF`]).
    pub leaves: Vec<Hash256>,
    /// The blocks of the piece (indices from 0) whose bytes past the file's end, which must be zero,
    /// are not.
    pub bad_padding: Vec<u32>,
}

impl LeafEvidence {
    /// Checks `data`, the bytes of a piece as received, of which the first `content` bytes belong
    /// to the file and the rest is padding, against `expected`, the root of a subtree of `width`
    /// leaves whose first leaf is `first_leaf` in the tree `pieces_root`.
    pub fn check(
        pieces_root: Hash256,
        first_leaf: u32,
        width: u32,
        expected: Hash256,
        data: &[u8],
        content: usize,
    ) -> PieceCheck {
        let (file_bytes, padding) = data.split_at(content.min(data.len()));
        let leaves = leaf_hashes(file_bytes);
        let mut bad_padding = Vec::new();
        if padding.iter().any(|&b| b != 0) {
            let block = BLOCK_SIZE as usize;
            for (i, chunk) in data.chunks(block).enumerate() {
                let start = i * block;
                let from = content.max(start) - start;
                if chunk.get(from..).is_some_and(|p| p.iter().any(|&b| b != 0)) {
                    bad_padding.push(i as u32);
                }
            }
        }
        let fits = leaves.len() <= width as usize && width.is_power_of_two();
        if fits
            && bad_padding.is_empty()
            && root(leaves.clone(), width as usize, ZERO_LEAF) == expected
        {
            return PieceCheck::Good;
        }
        PieceCheck::Bad(fits.then(|| {
            Box::new(LeafEvidence {
                pieces_root,
                first_leaf,
                width,
                expected,
                leaves,
                bad_padding,
            })
        }))
    }

    /// True when the received leaves hash up to `expected`: only padding was bad.
    pub fn content_is_good(&self) -> bool {
        root(self.leaves.clone(), self.width as usize, ZERO_LEAF) == self.expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: a tree over every 16 KiB leaf of the whole file, padded to a power of two.
    fn naive_root(data: &[u8]) -> Hash256 {
        let leaves = leaf_hashes(data);
        let width = leaves.len().next_power_of_two();
        root(leaves, width, ZERO_LEAF)
    }

    #[test]
    fn roots_from_layers_equal_roots_over_all_leaves() {
        let piece = 32 * 1024;
        for len in [1usize, 16384, 16385, 32768, 32769, 65536, 100_000, 300_001] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let (root, layer) = file_tree(&data, piece).unwrap();
            assert_eq!(root, naive_root(&data), "len {len}");
            assert_eq!(
                layer.len(),
                if len <= piece as usize {
                    0
                } else {
                    len.div_ceil(piece as usize)
                }
            );
            for (i, hash) in layer.iter().enumerate() {
                let start = i * piece as usize;
                let end = (start + piece as usize).min(len);
                assert_eq!(*hash, piece_hash(&data[start..end], piece));
            }
        }
        assert_eq!(file_tree(&[], piece), None);
    }

    #[test]
    fn one_block_is_its_own_root_and_pads_hash_zeros() {
        assert_eq!(small_file_root(b"abc"), Some(sha256(b"abc")));
        assert_eq!(pad_hash(1), ZERO_LEAF);
        assert_eq!(pad_hash(2), sha256(&[0; 64]));
    }
}
