//! Making a .torrent file from files on disk (`swarmer create`): walking the path in a deterministic
//! order, then reading and hashing every piece on all cores. What goes into the torrent and how it is
//! encoded is `swarmer_proto::create`'s; this module only does the IO.
//!
//! **Symbolic links.** A link to a file inside the path is followed and its target's bytes go in
//! under the link's name; a link that leaves the path, or that points at a directory (which could
//! loop), is refused with its name, never silently skipped.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;

use swarmer_proto::create::{CreateError, CreateOptions, PieceHashes, TorrentPlan};
use swarmer_proto::metainfo::MetaVersion;

/// What `swarmer create` is asked to make.
#[derive(Debug, Clone)]
pub struct CreateTorrent {
    /// The file or directory to describe; its file name is the torrent's `name`.
    pub path: PathBuf,
    /// v1, v2 or hybrid (BEP 52). libtorrent and qBittorrent make hybrids by default.
    pub version: MetaVersion,
    /// Piece length in bytes; `None` picks it as libtorrent does
    /// ([`swarmer_proto::create::auto_piece_length`]).
    pub piece_length: Option<u64>,
    /// Trackers, web seeds, flags and text fields.
    pub options: CreateOptions,
    /// Hashing threads; `None` uses one per core.
    pub threads: Option<usize>,
}

/// Why a torrent could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateTorrentError {
    /// Reading a file or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A symbolic link that leaves the path or points at a directory.
    #[error("{0}: symbolic link leaves the path or points at a directory; refusing to follow it")]
    Symlink(PathBuf),
    /// A file or directory name that is not UTF-8 (torrents name files in UTF-8).
    #[error("{0}: name is not UTF-8")]
    NotUtf8(PathBuf),
    /// A file changed size while it was hashed.
    #[error("{0}: changed while it was being hashed")]
    Changed(PathBuf),
    /// The torrent cannot describe these files (a name the parser would refuse, no files, ...).
    #[error(transparent)]
    Plan(#[from] CreateError),
}

/// Progress of [`create_torrent`]: bytes hashed so far out of the total (padding included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateProgress {
    /// Bytes read and hashed.
    pub hashed: u64,
    /// Bytes to hash.
    pub total: u64,
}

/// Makes the .torrent file described by `request` and returns its bytes. Blocking: it walks the
/// path, then hashes on `threads` threads (one per core by default), calling `on_progress` from
/// the calling thread as pieces finish. Files are taken in byte order of their path components,
/// the order of a v2 `file tree`, so the same files always make the same torrent.
///
/// Errors: see [`CreateTorrentError`].
pub fn create_torrent(
    request: &CreateTorrent,
    mut on_progress: impl FnMut(CreateProgress),
) -> Result<Vec<u8>, CreateTorrentError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CreateTorrentError::Io { path, source }
    };
    let root = request.path.canonicalize().map_err(io(&request.path))?;
    let name = root
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CreateTorrentError::NotUtf8(request.path.clone()))?
        .to_owned();
    let mut found = Vec::new();
    if root.is_dir() {
        walk(&root, &root, &mut Vec::new(), &mut found)?;
    } else {
        found.push((Vec::new(), root.clone(), file_len(&root)?));
    }
    let plan = TorrentPlan::new(
        &name,
        found
            .iter()
            .map(|(path, _, len)| (path.clone(), *len))
            .collect(),
        request.version,
        request.piece_length,
    )?;
    let sources: Vec<Option<PathBuf>> = {
        let mut real = found.into_iter();
        plan.files()
            .iter()
            .map(|f| {
                (!f.padding)
                    .then(|| real.next().map(|(_, p, _)| p))
                    .flatten()
            })
            .collect()
    };
    let threads = request
        .threads
        .unwrap_or_else(crate::check::hashing_threads)
        .max(1);
    let hashes = hash_all(&plan, &sources, threads, &mut on_progress)?;
    Ok(plan.finish(&hashes, &request.options)?)
}

/// The length of the regular file at `path`.
fn file_len(path: &Path) -> Result<u64, CreateTorrentError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| CreateTorrentError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Collects the files under `dir` (at `path` below the root) as (path components, disk path,
/// length), sorted by the bytes of each component.
fn walk(
    root: &Path,
    dir: &Path,
    path: &mut Vec<String>,
    found: &mut Vec<(Vec<String>, PathBuf, u64)>,
) -> Result<(), CreateTorrentError> {
    let io = |source| CreateTorrentError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| CreateTorrentError::NotUtf8(entry.path()))?;
        entries.push((name, entry.path()));
    }
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (name, disk) in entries {
        let meta = std::fs::symlink_metadata(&disk).map_err(|source| CreateTorrentError::Io {
            path: disk.clone(),
            source,
        })?;
        path.push(name);
        if meta.file_type().is_symlink() {
            let target = disk
                .canonicalize()
                .map_err(|_| CreateTorrentError::Symlink(disk.clone()))?;
            if !target.starts_with(root) || target.is_dir() {
                return Err(CreateTorrentError::Symlink(disk));
            }
            found.push((path.clone(), target.clone(), file_len(&target)?));
        } else if meta.is_dir() {
            walk(root, &disk, path, found)?;
        } else if meta.is_file() {
            found.push((path.clone(), disk, meta.len()));
        }
        path.pop();
    }
    Ok(())
}

/// Hashes every piece of `plan` on `threads` threads; `sources[i]` is where file `i` is on disk
/// (`None` for padding).
fn hash_all(
    plan: &TorrentPlan,
    sources: &[Option<PathBuf>],
    threads: usize,
    on_progress: &mut impl FnMut(CreateProgress),
) -> Result<Vec<PieceHashes>, CreateTorrentError> {
    let layout = plan.layout();
    let count = layout.piece_count() as usize;
    let next = AtomicUsize::new(0);
    let hashed = AtomicU64::new(0);
    let total = layout.total_length();
    let mut hashes = vec![PieceHashes::default(); count];
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Result<(usize, PieceHashes), CreateTorrentError>>(256);
        for _ in 0..threads.min(count.max(1)) {
            let tx = tx.clone();
            let (next, hashed) = (&next, &hashed);
            scope.spawn(move || {
                let mut buf = Vec::new();
                let mut open: Option<(usize, File)> = None;
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(piece) = (index < count)
                        .then(|| layout.piece(index as u32))
                        .flatten()
                    else {
                        break;
                    };
                    let result = read_piece(plan, sources, piece, &mut buf, &mut open)
                        .map(|()| (index, plan.hash_piece(piece, &buf)));
                    hashed.fetch_add(buf.len() as u64, Ordering::Relaxed);
                    let failed = result.is_err();
                    if tx.send(result).is_err() || failed {
                        // Stop the others too.
                        next.store(count, Ordering::Relaxed);
                        break;
                    }
                }
            });
        }
        drop(tx);
        for result in rx {
            let (index, piece) = result?;
            hashes[index] = piece;
            on_progress(CreateProgress {
                hashed: hashed.load(Ordering::Relaxed),
                total,
            });
        }
        Ok::<(), CreateTorrentError>(())
    })?;
    Ok(hashes)
}

/// Reads piece `piece` into `buf` (resized to the piece's length; padding as zeros), keeping the
/// last file it opened in `open` for the next piece.
fn read_piece(
    plan: &TorrentPlan,
    sources: &[Option<PathBuf>],
    piece: swarmer_proto::PieceIndex,
    buf: &mut Vec<u8>,
    open: &mut Option<(usize, File)>,
) -> Result<(), CreateTorrentError> {
    let layout = plan.layout();
    // Every byte is overwritten below (by the file, or zeros for padding), so the buffer is not
    // cleared first: zeroing a whole piece for nothing cost as much as 1 % of the time.
    buf.resize(layout.piece_len(piece) as usize, 0);
    for slice in layout.piece_slices(piece) {
        let i = slice.file.as_usize();
        let start = slice.range_offset as usize;
        let Some(path) = &sources[i] else {
            buf[start..start + slice.length as usize].fill(0);
            continue;
        };
        if open.as_ref().is_none_or(|(at, _)| *at != i) {
            let file = File::open(path).map_err(|source| CreateTorrentError::Io {
                path: path.clone(),
                source,
            })?;
            *open = Some((i, file));
        }
        let (_, file) = open.as_ref().expect("opened above");
        let out = &mut buf[start..start + slice.length as usize];
        file.read_exact_at(out, slice.offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                CreateTorrentError::Changed(path.clone())
            } else {
                CreateTorrentError::Io {
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmer_proto::metainfo::Metainfo;

    fn request(path: &Path, version: MetaVersion) -> CreateTorrent {
        CreateTorrent {
            path: path.to_owned(),
            version,
            piece_length: Some(16384),
            options: CreateOptions::default(),
            threads: Some(3),
        }
    }

    #[test]
    fn makes_every_version_in_a_fixed_order_and_refuses_links_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("top");
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::write(root.join("z.txt"), vec![1u8; 70_000]).unwrap();
        std::fs::write(root.join("b/c/x.bin"), vec![2u8; 40_000]).unwrap();
        std::fs::write(root.join("b.txt"), b"").unwrap();
        std::os::unix::fs::symlink(root.join("z.txt"), root.join("link")).unwrap();
        for version in [MetaVersion::V1, MetaVersion::V2, MetaVersion::Hybrid] {
            let mut seen = 0;
            let bytes = create_torrent(&request(&root, version), |p| seen = p.hashed).unwrap();
            let m = Metainfo::from_bytes(&bytes).unwrap();
            assert_eq!(m.info.version(), version);
            assert_eq!(seen, m.info.layout.total_length());
            let names: Vec<String> = m
                .info
                .files
                .iter()
                .filter(|f| !f.padding)
                .map(|f| f.path.join("/"))
                .collect();
            assert_eq!(
                names,
                ["top/b/c/x.bin", "top/b.txt", "top/link", "top/z.txt"]
            );
            assert_eq!(
                create_torrent(&request(&root, version), |_| ()).unwrap(),
                bytes
            );
        }
        std::os::unix::fs::symlink(dir.path(), root.join("out")).unwrap();
        assert!(matches!(
            create_torrent(&request(&root, MetaVersion::Hybrid), |_| ()),
            Err(CreateTorrentError::Symlink(_))
        ));
    }
}
