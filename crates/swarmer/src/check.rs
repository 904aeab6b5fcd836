//! Finding which pieces of a torrent are already on disk: the pieces a fast-resume state vouches for,
//! and hashing the rest on every core, each hashing thread reading into one reused buffer; and
//! [`verify`], the read-only report behind `swarmer verify`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use swarmer_proto::metainfo::Metainfo;
use swarmer_proto::{Bitfield, FileIndex, PieceIndex};
use tokio::sync::mpsc;

use crate::resume::Loaded;
use crate::storage::{Storage, StorageError, StorageOptions, parts_file_name};
use std::path::{Path, PathBuf};
use swarmer_proto::FilePriority;

/// Threads hashing pieces: one per core.
pub(crate) fn hashing_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// What a resume state says about the data, once its changed files are taken into account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resumed {
    /// Pieces the state vouches for: verified when it was saved, and in files unchanged since.
    pub(crate) have: Bitfield,
    /// Pieces touching a file that changed since the save: only hashing can tell.
    pub(crate) stale: Vec<PieceIndex>,
}

impl Resumed {
    /// Splits the pieces of `metainfo` by what `loaded` can vouch for. `on_disk(file)` is false for
    /// files not on disk, whose pieces are kept in the parts file.
    pub(crate) fn new(
        metainfo: &Metainfo,
        loaded: &Loaded,
        on_disk: impl Fn(FileIndex) -> bool,
    ) -> Resumed {
        let layout = &metainfo.info.layout;
        let mut stale = Bitfield::new(layout.piece_count() as usize);
        for file in layout.files() {
            let in_parts = !on_disk(file) && !metainfo.info.files[file.as_usize()].padding;
            if loaded.changed[file.as_usize()] || (loaded.parts_changed && in_parts) {
                for piece in layout.file_pieces(file) {
                    stale.set(piece as usize);
                }
            }
        }
        let mut have = Bitfield::new(layout.piece_count() as usize);
        for piece in loaded.state.have.iter_ones() {
            if !stale.get(piece) {
                have.set(piece);
            }
        }
        let stale = stale
            .iter_ones()
            .filter_map(|p| layout.piece(p as u32))
            .collect();
        Resumed { have, stale }
    }
}

/// Hashes `pieces` of `metainfo`, read from `storage`, on `threads` blocking threads and sends
/// `(piece, matches)` for each as it finishes, in no particular order. A piece that cannot be read
/// (a missing or short file) does not match. Dropping the receiver stops the threads after the piece
/// each is on.
pub(crate) fn hash_pieces(
    storage: Arc<Storage>,
    metainfo: Arc<Metainfo>,
    pieces: Vec<PieceIndex>,
    threads: usize,
) -> mpsc::Receiver<(PieceIndex, bool)> {
    let (tx, rx) = mpsc::channel(256);
    let pieces = Arc::new(pieces);
    let next = Arc::new(AtomicUsize::new(0));
    for _ in 0..threads.clamp(1, pieces.len().max(1)) {
        let (storage, metainfo, pieces, next, tx) = (
            Arc::clone(&storage),
            Arc::clone(&metainfo),
            Arc::clone(&pieces),
            Arc::clone(&next),
            tx.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut buf = Vec::new();
            while let Some(&piece) = pieces.get(next.fetch_add(1, Ordering::Relaxed)) {
                buf.resize(metainfo.info.layout.piece_len(piece) as usize, 0);
                let ok = storage.read(piece, 0, &mut buf).is_ok()
                    && metainfo.info.verify_piece(piece, &buf);
                if tx.blocking_send((piece, ok)).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// What [`verify`] found: the state of every file and piece of a torrent's data on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Pieces in the torrent.
    pub pieces: u32,
    /// Pieces whose SHA-1 does not match, or that could not be read (a missing or short file), in
    /// ascending order.
    pub bad_pieces: Vec<u32>,
    /// Files of the torrent that are not on disk, relative to the output directory.
    pub missing_files: Vec<PathBuf>,
    /// Files on disk with another length than the torrent's: (path, expected bytes, actual bytes).
    pub wrong_length: Vec<(PathBuf, u64, u64)>,
}

impl VerifyReport {
    /// True when every file is there with its length and every piece matches.
    pub fn is_complete(&self) -> bool {
        self.bad_pieces.is_empty() && self.missing_files.is_empty() && self.wrong_length.is_empty()
    }
}

/// Checks the data of `metainfo` under `output_dir` (as a download there left it) without writing
/// anything: which files are missing or have the wrong length, and which pieces do not match their
/// SHA-1 (hashed on every core; pieces of skipped files are read from the parts file if there is
/// one). `on_progress(hashed)` is called after each piece.
///
/// Errors: the storage cannot be opened (the output directory is missing, a symbolic link is in the
/// way, ...), as [`StorageError`].
pub async fn verify(
    metainfo: Arc<Metainfo>,
    output_dir: &Path,
    mut on_progress: impl FnMut(u32),
) -> Result<VerifyReport, StorageError> {
    let info = &metainfo.info;
    let mut report = VerifyReport {
        pieces: info.layout.piece_count(),
        ..VerifyReport::default()
    };
    // Files that are not there with their length are opened as skipped: their pieces come from the
    // parts file, or fail.
    let mut priorities = vec![FilePriority::Normal; info.files.len()];
    for (i, entry) in info.files.iter().enumerate().filter(|(_, e)| !e.padding) {
        let relative: PathBuf = entry.path.iter().collect();
        match std::fs::symlink_metadata(output_dir.join(&relative)) {
            Ok(meta) if meta.is_file() && meta.len() == entry.length => continue,
            Ok(meta) if meta.is_file() => {
                report
                    .wrong_length
                    .push((relative, entry.length, meta.len()))
            }
            _ => report.missing_files.push(relative),
        }
        priorities[i] = FilePriority::Skip;
    }
    let storage = {
        let (root, m) = (output_dir.to_path_buf(), Arc::clone(&metainfo));
        let options = StorageOptions {
            priorities,
            parts_file: Some(root.join(parts_file_name(&m.info_hash))),
            ..StorageOptions::default()
        };
        tokio::task::spawn_blocking(move || Storage::open_existing_with(&root, &m.info, &options))
            .await
            .expect("opening storage panicked")?
    };
    let pieces: Vec<PieceIndex> = info.layout.pieces().collect();
    let mut results = hash_pieces(
        Arc::new(storage),
        Arc::clone(&metainfo),
        pieces,
        hashing_threads(),
    );
    let mut hashed = 0;
    while let Some((piece, ok)) = results.recv().await {
        hashed += 1;
        if !ok {
            report.bad_pieces.push(piece.get());
        }
        on_progress(hashed);
    }
    report.bad_pieces.sort_unstable();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resume::ResumeState;
    use swarmer_proto::InfoHash;
    use swarmer_proto::bencode::OwnedValue;

    /// A two-file torrent of 16 KiB pieces: a (40 KiB) and b (24 KiB); piece 2 straddles them.
    fn metainfo() -> Metainfo {
        let files = OwnedValue::list([("a", 40 << 10), ("b", 24 << 10)].map(|(name, len)| {
            OwnedValue::dict([
                ("length", OwnedValue::Int(len)),
                ("path", OwnedValue::list([OwnedValue::Bytes(name.into())])),
            ])
        }));
        let info = OwnedValue::dict([
            ("files", files),
            ("name", OwnedValue::Bytes(b"t".to_vec())),
            ("piece length", OwnedValue::Int(16 << 10)),
            ("pieces", OwnedValue::Bytes(vec![0; 4 * 20])),
        ]);
        let torrent = OwnedValue::dict([("info", info)]).encode();
        Metainfo::from_bytes(&torrent).unwrap()
    }

    #[test]
    fn pieces_of_changed_files_are_stale_and_not_vouched_for() {
        let m = metainfo();
        let mut have = Bitfield::new(4);
        for p in [0, 2, 3] {
            have.set(p);
        }
        let loaded = Loaded {
            state: ResumeState {
                info_hash: InfoHash([0; 20]),
                have,
                files: vec![None, None],
                parts: None,
                priorities: Vec::new(),
                uploaded: 0,
                downloaded: 0,
            },
            changed: vec![false, true],
            parts_changed: false,
        };
        let r = Resumed::new(&m, &loaded, |_| true);
        assert_eq!(r.have.iter_ones().collect::<Vec<_>>(), [0]);
        assert_eq!(
            r.stale.iter().map(|p| p.get()).collect::<Vec<_>>(),
            [2, 3],
            "piece 2 straddles a and b, piece 3 is all b"
        );
        // b skipped (not on disk) and the parts file changed: the same pieces are stale.
        let loaded = Loaded {
            changed: vec![false, false],
            parts_changed: true,
            ..loaded
        };
        let r = Resumed::new(&m, &loaded, |f| f.as_usize() == 0);
        assert_eq!(r.have.iter_ones().collect::<Vec<_>>(), [0]);
        assert_eq!(r.stale.iter().map(|p| p.get()).collect::<Vec<_>>(), [2, 3]);
    }
}
