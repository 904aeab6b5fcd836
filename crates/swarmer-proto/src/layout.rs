//! The geometry of a torrent's content (BEP 3, "info dictionary"): how the concatenated files split into
//! pieces, pieces into blocks, and pieces back onto files. Piece, block and file indices are only built
//! here, checked against the layout, so an out-of-range index cannot be represented elsewhere.

use std::ops::Range;

/// The size of a block, the unit of a `request` (BEP 3, "request": "all current implementations use 2^14"):
/// 16 KiB. The last block of the last piece may be shorter.
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// The largest piece length swarmer accepts: 64 MiB. Larger pieces would make a single piece buffer
/// (held in memory until it is verified) unreasonably large.
pub const MAX_PIECE_LENGTH: u32 = 64 * 1024 * 1024;

/// The index of a piece of one torrent, known to be `< piece_count`. Built only by [`Layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PieceIndex(u32);

impl PieceIndex {
    /// The index as the wire protocol writes it (BEP 3 `have`, `request`, `piece`).
    pub fn get(self) -> u32 {
        self.0
    }

    /// The index as a position in a [`crate::Bitfield`] or a slice.
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

/// Builds a piece index without a layout. Crate-internal: only for tables that were sized by a layout.
pub(crate) fn piece_index_unchecked(i: u32) -> PieceIndex {
    PieceIndex(i)
}

/// The index of a file in the torrent's file list (including BEP 47 padding files), known to be in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileIndex(u32);

impl FileIndex {
    /// The index as a position in the file list.
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

/// One block of one piece: `length` bytes starting `offset` bytes into the piece. Built only by [`Layout`],
/// so it always lies inside its piece and starts on a [`BLOCK_SIZE`] boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    /// The piece the block belongs to.
    pub piece: PieceIndex,
    /// Byte offset of the block inside its piece (the `begin` of BEP 3 `request`).
    pub offset: u32,
    /// Length of the block in bytes: [`BLOCK_SIZE`], or less for the last block of the last piece.
    pub length: u32,
}

impl BlockRef {
    /// The block's position among the blocks of its piece (`offset / BLOCK_SIZE`).
    pub fn index_in_piece(&self) -> u32 {
        self.offset / BLOCK_SIZE
    }
}

/// A run of bytes inside one file: where a piece or block range lands on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSlice {
    /// The file.
    pub file: FileIndex,
    /// Byte offset inside the file.
    pub offset: u64,
    /// Length of the run in bytes.
    pub length: u64,
    /// Offset of the run's first byte relative to the start of the queried range.
    pub range_offset: u64,
}

/// Why a piece length and file sizes do not make a usable torrent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// `piece length` is zero.
    #[error("piece length is 0")]
    ZeroPieceLength,
    /// `piece length` exceeds [`MAX_PIECE_LENGTH`].
    #[error(
        "piece length {0} bytes is larger than the supported maximum of {MAX_PIECE_LENGTH} bytes"
    )]
    PieceLengthTooLarge(u64),
    /// The files add up to zero bytes: there is nothing to download.
    #[error("the torrent's files are all empty")]
    Empty,
    /// The file lengths overflow 64 bits.
    #[error("the file lengths add up to more than 2^64 bytes")]
    TotalLengthOverflow,
    /// More than 2^32 - 1 pieces.
    #[error("{0} pieces is more than the wire protocol can index")]
    TooManyPieces(u64),
}

/// A file's place in the concatenated content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileSpan {
    offset: u64,
    length: u64,
}

/// The piece, block and file geometry of one torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    piece_length: u32,
    total_length: u64,
    piece_count: u32,
    files: Vec<FileSpan>,
}

impl Layout {
    /// Builds the layout of content made of files of `file_lengths` bytes (in torrent order, padding files
    /// included) cut into pieces of `piece_length` bytes.
    ///
    /// Errors: a zero or oversized piece length, an empty or overflowing total, more than `u32::MAX` pieces.
    pub fn new(
        piece_length: u64,
        file_lengths: impl IntoIterator<Item = u64>,
    ) -> Result<Layout, LayoutError> {
        if piece_length == 0 {
            return Err(LayoutError::ZeroPieceLength);
        }
        if piece_length > u64::from(MAX_PIECE_LENGTH) {
            return Err(LayoutError::PieceLengthTooLarge(piece_length));
        }
        let mut files = Vec::new();
        let mut total: u64 = 0;
        for length in file_lengths {
            files.push(FileSpan {
                offset: total,
                length,
            });
            total = total
                .checked_add(length)
                .ok_or(LayoutError::TotalLengthOverflow)?;
        }
        if total == 0 {
            return Err(LayoutError::Empty);
        }
        let pieces = total.div_ceil(piece_length);
        let piece_count = u32::try_from(pieces).map_err(|_| LayoutError::TooManyPieces(pieces))?;
        Ok(Layout {
            piece_length: piece_length as u32,
            total_length: total,
            piece_count,
            files,
        })
    }

    /// The nominal piece length in bytes (every piece but the last has exactly this length).
    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }

    /// The content's total length in bytes, padding files included.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// The number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// The number of files, padding files included.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// The piece at `index`, or `None` past the last piece (for example a peer's `have` out of range).
    pub fn piece(&self, index: u32) -> Option<PieceIndex> {
        (index < self.piece_count).then_some(PieceIndex(index))
    }

    /// Every piece, in order.
    pub fn pieces(&self) -> impl Iterator<Item = PieceIndex> + use<> {
        (0..self.piece_count).map(PieceIndex)
    }

    /// The file at `index`, or `None` past the last file.
    pub fn file(&self, index: usize) -> Option<FileIndex> {
        (index < self.files.len()).then_some(FileIndex(index as u32))
    }

    /// Every file, in order.
    pub fn files(&self) -> impl Iterator<Item = FileIndex> + use<> {
        (0..self.files.len() as u32).map(FileIndex)
    }

    /// The length of `file` in bytes.
    pub fn file_length(&self, file: FileIndex) -> u64 {
        self.files[file.as_usize()].length
    }

    /// The offset of `file`'s first byte in the concatenated content.
    pub fn file_offset(&self, file: FileIndex) -> u64 {
        self.files[file.as_usize()].offset
    }

    /// The offset of `piece`'s first byte in the concatenated content.
    pub fn piece_offset(&self, piece: PieceIndex) -> u64 {
        u64::from(piece.0) * u64::from(self.piece_length)
    }

    /// The length of `piece` in bytes: the piece length, or less for the last piece.
    pub fn piece_len(&self, piece: PieceIndex) -> u32 {
        let start = self.piece_offset(piece);
        (self.total_length - start).min(u64::from(self.piece_length)) as u32
    }

    /// The number of blocks in `piece`.
    pub fn block_count(&self, piece: PieceIndex) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK_SIZE)
    }

    /// The `index`-th block of `piece`, or `None` past its last block.
    pub fn block(&self, piece: PieceIndex, index: u32) -> Option<BlockRef> {
        let piece_len = self.piece_len(piece);
        let offset = index.checked_mul(BLOCK_SIZE)?;
        (offset < piece_len).then(|| BlockRef {
            piece,
            offset,
            length: (piece_len - offset).min(BLOCK_SIZE),
        })
    }

    /// The block of piece `index` starting at `offset` with `length` bytes, exactly as this layout cuts it;
    /// `None` for anything else (a peer's `piece` or `request` that does not match a block we would use).
    pub fn block_at(&self, index: u32, offset: u32, length: u32) -> Option<BlockRef> {
        let piece = self.piece(index)?;
        if offset % BLOCK_SIZE != 0 {
            return None;
        }
        let block = self.block(piece, offset / BLOCK_SIZE)?;
        (block.length == length).then_some(block)
    }

    /// Every block of `piece`, in order.
    pub fn blocks(&self, piece: PieceIndex) -> impl Iterator<Item = BlockRef> + '_ {
        (0..self.block_count(piece)).filter_map(move |i| self.block(piece, i))
    }

    /// The file runs covering `length` bytes from `offset` in the concatenated content, in order; zero-length
    /// files are skipped (they hold no bytes). Ranges past the end are cut at the end.
    pub fn slices(&self, offset: u64, length: u64) -> impl Iterator<Item = FileSlice> + '_ {
        let end = offset.saturating_add(length).min(self.total_length);
        // The first file whose end is past `offset`.
        let first = self
            .files
            .partition_point(|f| f.offset + f.length <= offset);
        self.files[first..]
            .iter()
            .enumerate()
            .take_while(move |(_, f)| f.offset < end)
            .filter(|(_, f)| f.length > 0)
            .map(move |(i, f)| {
                let start = offset.max(f.offset);
                let stop = end.min(f.offset + f.length);
                FileSlice {
                    file: FileIndex((first + i) as u32),
                    offset: start - f.offset,
                    length: stop - start,
                    range_offset: start - offset,
                }
            })
    }

    /// The file runs of `piece`, with `range_offset` relative to the piece's first byte.
    pub fn piece_slices(&self, piece: PieceIndex) -> impl Iterator<Item = FileSlice> + '_ {
        self.slices(self.piece_offset(piece), u64::from(self.piece_len(piece)))
    }

    /// The pieces that hold at least one byte of `file` (empty for a zero-length file).
    pub fn file_pieces(&self, file: FileIndex) -> Range<u32> {
        let f = self.files[file.as_usize()];
        if f.length == 0 {
            return 0..0;
        }
        let first = f.offset / u64::from(self.piece_length);
        let last = (f.offset + f.length - 1) / u64::from(self.piece_length);
        first as u32..last as u32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(piece: u64, files: &[u64]) -> Layout {
        Layout::new(piece, files.iter().copied()).unwrap()
    }

    #[test]
    fn counts_pieces_and_last_piece_length() {
        let l = layout(32768, &[100_000]);
        assert_eq!(l.piece_count(), 4);
        assert_eq!(l.piece_len(l.piece(0).unwrap()), 32768);
        assert_eq!(l.piece_len(l.piece(3).unwrap()), 100_000 - 3 * 32768);
        assert!(l.piece(4).is_none());
        let last = l.piece(3).unwrap();
        assert_eq!(l.block_count(last), 1);
        assert_eq!(l.block(last, 0).unwrap().length, 100_000 - 3 * 32768);
        assert!(l.block(last, 1).is_none());
    }

    #[test]
    fn block_at_accepts_only_exact_blocks() {
        let l = layout(32768, &[40_000]);
        assert!(l.block_at(0, 0, BLOCK_SIZE).is_some());
        assert!(l.block_at(0, 16384, BLOCK_SIZE).is_some());
        assert!(l.block_at(0, 1, BLOCK_SIZE).is_none());
        assert!(l.block_at(0, 0, 100).is_none());
        assert!(l.block_at(1, 0, 40_000 - 32768).is_some());
        assert!(l.block_at(1, 0, BLOCK_SIZE).is_none());
        assert!(l.block_at(2, 0, BLOCK_SIZE).is_none());
        assert!(l.block_at(0, u32::MAX - 5, BLOCK_SIZE).is_none());
    }

    #[test]
    fn slices_cross_file_boundaries_and_skip_empty_files() {
        let l = layout(16, &[10, 0, 4, 30]);
        let s: Vec<_> = l.piece_slices(l.piece(0).unwrap()).collect();
        assert_eq!(
            s,
            vec![
                FileSlice {
                    file: FileIndex(0),
                    offset: 0,
                    length: 10,
                    range_offset: 0
                },
                FileSlice {
                    file: FileIndex(2),
                    offset: 0,
                    length: 4,
                    range_offset: 10
                },
                FileSlice {
                    file: FileIndex(3),
                    offset: 0,
                    length: 2,
                    range_offset: 14
                },
            ]
        );
        let s: Vec<_> = l.piece_slices(l.piece(2).unwrap()).collect();
        assert_eq!(
            s,
            vec![FileSlice {
                file: FileIndex(3),
                offset: 18,
                length: 12,
                range_offset: 0
            }]
        );
        // Every byte is covered exactly once.
        let total: u64 = l
            .pieces()
            .flat_map(|p| l.piece_slices(p).collect::<Vec<_>>())
            .map(|s| s.length)
            .sum();
        assert_eq!(total, 44);
    }

    #[test]
    fn file_pieces() {
        let l = layout(16, &[10, 0, 4, 30]);
        assert_eq!(l.file_pieces(l.file(0).unwrap()), 0..1);
        assert_eq!(l.file_pieces(l.file(1).unwrap()), 0..0);
        assert_eq!(l.file_pieces(l.file(3).unwrap()), 0..3);
    }

    #[test]
    fn rejects_bad_geometry() {
        assert_eq!(Layout::new(0, [1]), Err(LayoutError::ZeroPieceLength));
        assert_eq!(Layout::new(16, [0, 0]), Err(LayoutError::Empty));
        assert_eq!(
            Layout::new(16, [u64::MAX, 1]),
            Err(LayoutError::TotalLengthOverflow)
        );
        assert_eq!(
            Layout::new(1, [1 << 40]),
            Err(LayoutError::TooManyPieces(1 << 40))
        );
        assert!(matches!(
            Layout::new(1 << 30, [1]),
            Err(LayoutError::PieceLengthTooLarge(_))
        ));
    }
}
