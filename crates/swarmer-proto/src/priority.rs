//! File selection and priorities: what the user wants of a torrent, per file, and the per-piece
//! priorities the picker and the engine work with. A piece is worth what the most important file it
//! holds bytes of is worth; padding files (BEP 47) hold nothing anyone wants and do not count.

use crate::Layout;

/// How much a file (or a piece) is wanted. Ordered: `Skip < Low < Normal < High`.
///
/// The `u8` values ([`FilePriority::as_u8`]) are libtorrent's (0 don't download, 1 low, 4 default,
/// 7 top), so they are stable and can be stored (resume data) or exchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum FilePriority {
    /// Do not download. A skipped file is not created; pieces that hold only skipped bytes are never
    /// requested.
    Skip,
    /// Download after every `Normal` and `High` piece that peers offer.
    Low,
    /// Download (the default).
    #[default]
    Normal,
    /// Download before `Normal` and `Low` pieces.
    High,
}

impl FilePriority {
    /// The stable number of this priority: 0 (skip), 1 (low), 4 (normal), 7 (high).
    pub fn as_u8(self) -> u8 {
        match self {
            FilePriority::Skip => 0,
            FilePriority::Low => 1,
            FilePriority::Normal => 4,
            FilePriority::High => 7,
        }
    }

    /// The priority numbered `n` by [`FilePriority::as_u8`]; `None` for any other number.
    pub fn from_u8(n: u8) -> Option<FilePriority> {
        match n {
            0 => Some(FilePriority::Skip),
            1 => Some(FilePriority::Low),
            4 => Some(FilePriority::Normal),
            7 => Some(FilePriority::High),
            _ => None,
        }
    }

    /// True unless this is [`FilePriority::Skip`].
    pub fn is_wanted(self) -> bool {
        self != FilePriority::Skip
    }
}

/// Why a list of file priorities does not fit a torrent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given} file priorities given for a torrent of {files} files")]
pub struct PriorityCountError {
    /// Priorities given.
    pub given: usize,
    /// Files in the torrent (padding files included).
    pub files: usize,
}

/// The priority of every piece of `layout` given one priority per file (`files`, in the torrent's
/// file order, padding files included) and which files are padding (`padding`, same order; a
/// shorter slice means the rest are not padding). An empty `files` means every file is
/// [`FilePriority::Normal`].
///
/// A piece's priority is the highest of the non-padding files it holds bytes of; a piece made only of
/// padding bytes is [`FilePriority::Skip`] (BEP 47 pads to the next piece boundary, so such a piece
/// does not occur in torrents made by the usual tools). Zero-length files hold no bytes and affect no
/// piece.
///
/// Errors: `files` is neither empty nor one per file of the layout.
pub fn piece_priorities(
    layout: &Layout,
    files: &[FilePriority],
    padding: &[bool],
) -> Result<Vec<FilePriority>, PriorityCountError> {
    if !files.is_empty() && files.len() != layout.file_count() {
        return Err(PriorityCountError {
            given: files.len(),
            files: layout.file_count(),
        });
    }
    let mut pieces = vec![FilePriority::Skip; layout.piece_count() as usize];
    for file in layout.files() {
        let i = file.as_usize();
        if padding.get(i).copied().unwrap_or(false) {
            continue;
        }
        let priority = files.get(i).copied().unwrap_or_default();
        for p in layout.file_pieces(file) {
            let slot = &mut pieces[p as usize];
            *slot = (*slot).max(priority);
        }
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use FilePriority::*;

    fn check(
        piece: u64,
        files: &[u64],
        pads: &[bool],
        prio: &[FilePriority],
        want: &[FilePriority],
    ) {
        let layout = Layout::new(piece, files.iter().copied()).unwrap();
        assert_eq!(
            piece_priorities(&layout, prio, pads).unwrap(),
            want,
            "files {files:?} priorities {prio:?}"
        );
    }

    #[test]
    fn a_piece_takes_the_highest_priority_of_its_files() {
        // 16-byte pieces over a(10) b(30) c(8): piece 0 = a + b[0..6], 1 = b[6..22], 2 = b[22..] + c.
        let files = [10, 30, 8];
        check(16, &files, &[], &[], &[Normal, Normal, Normal]);
        check(
            16,
            &files,
            &[],
            &[Normal, Skip, Normal],
            &[Normal, Skip, Normal],
        );
        check(16, &files, &[], &[Skip, Skip, High], &[Skip, Skip, High]);
        check(16, &files, &[], &[Low, High, Skip], &[High, High, High]);
        check(16, &files, &[], &[Skip, Skip, Skip], &[Skip, Skip, Skip]);
        check(16, &files, &[], &[Low, Skip, Skip], &[Low, Skip, Skip]);
    }

    #[test]
    fn padding_and_empty_files_do_not_count() {
        // a(10) pad(6) b(16) empty(0) c(5): piece 0 = a + pad, 1 = b, 2 = c.
        let files = [10, 6, 16, 0, 5];
        let pads = [false, true, false, false, false];
        check(
            16,
            &files,
            &pads,
            &[Skip, High, Normal, High, Low],
            &[Skip, Normal, Low],
        );
        // A piece of padding only is skipped even when the padding file says otherwise.
        check(
            4,
            &[4, 4],
            &[false, true],
            &[Normal, Normal],
            &[Normal, Skip],
        );
    }

    #[test]
    fn wrong_count_is_an_error() {
        let layout = Layout::new(16, [10, 20]).unwrap();
        assert_eq!(
            piece_priorities(&layout, &[Normal], &[]),
            Err(PriorityCountError { given: 1, files: 2 })
        );
    }

    #[test]
    fn u8_round_trips_and_orders() {
        for p in [Skip, Low, Normal, High] {
            assert_eq!(FilePriority::from_u8(p.as_u8()), Some(p));
        }
        assert_eq!(FilePriority::from_u8(2), None);
        assert!(Skip < Low && Low < Normal && Normal < High);
        assert!(!Skip.is_wanted() && Low.is_wanted());
    }
}
