//! A torrent's files on disk: creating them (sparse, under a root directory, never through a symlink) and
//! positional reads and writes of piece ranges that cross file boundaries. Synchronous: callers run it on
//! a blocking thread pool and share one [`Storage`] between tasks through an `Arc`.
//!
//! Unix only for now: it relies on `pread`/`pwrite` (`std::os::unix::fs::FileExt`), which need no lock
//! and no seek position, and on `O_NOFOLLOW`. Other platforms fail to compile with a clear message
//! rather than silently falling back to a locked seek-and-write.
//!
//! Every file is opened once, in [`Storage::create`], and stays open for the life of the `Storage`, so a
//! symlink planted after creation cannot redirect IO. A torrent with more files than the process's
//! descriptor limit fails in `create` with an `Io` error; a bounded cache of handles is future work.

#[cfg(not(unix))]
compile_error!(
    "swarmer's storage uses unix positional IO (pread/pwrite and O_NOFOLLOW); no other platform is supported yet"
);

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use swarmer_proto::PieceIndex;
use swarmer_proto::layout::Layout;
use swarmer_proto::metainfo::Info;

/// Why a storage operation failed. Every variant names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system error other than a full disk.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What we were doing: "create directory", "open", "set length of", "write", "read", "sync", ...
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The disk (or the user's quota) is full: `ENOSPC` or `EDQUOT`. The torrent should pause until space
    /// is freed.
    #[error("disk full while writing {}", path.display())]
    DiskFull {
        /// The file being written or extended.
        path: PathBuf,
    },
    /// A file path with a component that is not a plain name (empty, `.`, `..`, a separator, a root or
    /// a NUL byte). The metainfo parser rejects these already; this is a second line of defence.
    #[error("unsafe file path {0:?} in torrent")]
    UnsafePath(Vec<String>),
    /// A directory or file under the root is a symbolic link, which could make us write outside the root.
    #[error("refusing to use {} because it is a symbolic link", path.display())]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// Two files of the torrent have the same path.
    #[error("the torrent lists {} twice", path.display())]
    DuplicatePath {
        /// The path relative to the root.
        path: PathBuf,
    },
    /// `info.files` and `info.layout` disagree (a caller bug: the metainfo parser builds both).
    #[error("the torrent's file list does not match its layout")]
    LayoutMismatch,
    /// Seeding existing data: a file of the torrent is not there.
    #[error("{} is missing", path.display())]
    Missing {
        /// The file or directory.
        path: PathBuf,
    },
    /// Seeding existing data: a file has another length than the torrent says.
    #[error("{} has {actual} bytes, but the torrent says {expected}", path.display())]
    WrongLength {
        /// The file.
        path: PathBuf,
        /// Its length in the torrent, in bytes.
        expected: u64,
        /// Its length on disk, in bytes.
        actual: u64,
    },
    /// A read or write past the end of its piece.
    #[error("{len} bytes at offset {offset} are past the end of piece {piece} ({piece_len} bytes)")]
    OutOfRange {
        /// The piece index.
        piece: u32,
        /// Byte offset inside the piece.
        offset: u32,
        /// Bytes requested.
        len: usize,
        /// The piece's length in bytes.
        piece_len: u32,
    },
}

/// One file of the torrent as stored.
#[derive(Debug)]
struct StoredFile {
    /// Full path (root joined with the torrent's components), for error messages.
    path: PathBuf,
    /// The open file; `None` for padding files (never on disk) and empty files (never read or written).
    file: Option<File>,
}

/// A torrent's files under a root directory, with piece-addressed positional IO.
///
/// `Send + Sync`: reads and writes at different (or even the same) positions may run concurrently from
/// several threads without a lock, since they never move a shared seek position.
#[derive(Debug)]
pub struct Storage {
    layout: Layout,
    files: Vec<StoredFile>,
}

impl Storage {
    /// Creates the directories and files of `info` under `root` (which is created if missing) and opens
    /// them for reading and writing.
    ///
    /// Afterwards every non-padding file, including 0-byte ones, exists with exactly its length: new and
    /// short files are extended with `set_len` (sparse, no zeros written), longer ones are cut; data in
    /// existing files is kept. BEP 47 padding files are never created.
    ///
    /// Errors: [`StorageError::UnsafePath`] or [`StorageError::DuplicatePath`] for a bad file list,
    /// [`StorageError::Symlink`] when a directory or file under `root` is a symbolic link,
    /// [`StorageError::DiskFull`], and [`StorageError::Io`] naming the file for anything else.
    pub fn create(root: &Path, info: &Info) -> Result<Storage, StorageError> {
        Storage::open(root, info, Mode::Create)
    }

    /// Opens the existing files of `info` under `root` read-only, for seeding data we already have.
    /// Nothing is created or changed on disk; symbolic links are refused as in [`Storage::create`].
    ///
    /// Errors: [`StorageError::Missing`] or [`StorageError::WrongLength`] for the first file that is
    /// absent or has another length, and the errors of [`Storage::create`]. Writing to the result fails
    /// with [`StorageError::Io`].
    pub fn open_existing(root: &Path, info: &Info) -> Result<Storage, StorageError> {
        Storage::open(root, info, Mode::Existing)
    }

    fn open(root: &Path, info: &Info, mode: Mode) -> Result<Storage, StorageError> {
        let layout = info.layout.clone();
        if layout.file_count() != info.files.len()
            || layout
                .files()
                .zip(&info.files)
                .any(|(f, entry)| layout.file_length(f) != entry.length)
        {
            return Err(StorageError::LayoutMismatch);
        }
        match mode {
            Mode::Create => {
                std::fs::create_dir_all(root).map_err(|e| io_error(root, "create directory", e))?
            }
            Mode::Existing => {
                if !root.is_dir() {
                    return Err(StorageError::Missing {
                        path: root.to_path_buf(),
                    });
                }
            }
        }
        let mut seen = HashSet::new();
        let mut files = Vec::with_capacity(info.files.len());
        for entry in &info.files {
            let relative = safe_relative_path(&entry.path)?;
            let path = root.join(&relative);
            if entry.padding {
                files.push(StoredFile { path, file: None });
                continue;
            }
            if !seen.insert(relative.clone()) {
                return Err(StorageError::DuplicatePath { path: relative });
            }
            let file = open_file(root, &relative, entry.length, mode)?;
            files.push(StoredFile {
                path,
                file: (entry.length > 0).then_some(file),
            });
        }
        Ok(Storage { layout, files })
    }

    /// Writes `data` at `offset` bytes into `piece`, across file boundaries; bytes that fall in padding
    /// files are skipped.
    ///
    /// Errors: [`StorageError::OutOfRange`] if the range passes the piece's end (nothing is written),
    /// [`StorageError::DiskFull`], or [`StorageError::Io`] naming the file.
    pub fn write(&self, piece: PieceIndex, offset: u32, data: &[u8]) -> Result<(), StorageError> {
        let start = self.range_start(piece, offset, data.len())?;
        for slice in self.layout.slices(start, data.len() as u64) {
            let stored = &self.files[slice.file.as_usize()];
            let Some(file) = &stored.file else {
                continue;
            };
            let from = slice.range_offset as usize;
            let chunk = &data[from..from + slice.length as usize];
            file.write_all_at(chunk, slice.offset)
                .map_err(|e| io_error(&stored.path, "write", e))?;
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset` bytes into `piece`, across file boundaries; bytes in padding
    /// files read as zeros.
    ///
    /// Errors: [`StorageError::OutOfRange`] if the range passes the piece's end, or
    /// [`StorageError::Io`] naming the file (an `UnexpectedEof` if a file was shortened behind our back).
    pub fn read(&self, piece: PieceIndex, offset: u32, buf: &mut [u8]) -> Result<(), StorageError> {
        let start = self.range_start(piece, offset, buf.len())?;
        for slice in self.layout.slices(start, buf.len() as u64) {
            let stored = &self.files[slice.file.as_usize()];
            let from = slice.range_offset as usize;
            let chunk = &mut buf[from..from + slice.length as usize];
            match &stored.file {
                Some(file) => file
                    .read_exact_at(chunk, slice.offset)
                    .map_err(|e| io_error(&stored.path, "read", e))?,
                None => chunk.fill(0),
            }
        }
        Ok(())
    }

    /// Flushes every file's data and metadata to the disk (`fsync`).
    pub fn sync_all(&self) -> Result<(), StorageError> {
        for stored in &self.files {
            if let Some(file) = &stored.file {
                file.sync_all()
                    .map_err(|e| io_error(&stored.path, "sync", e))?;
            }
        }
        Ok(())
    }

    /// The torrent's piece and file geometry.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The offset in the concatenated content of `offset` bytes into `piece`, after checking that `len`
    /// bytes from there stay inside the piece.
    fn range_start(&self, piece: PieceIndex, offset: u32, len: usize) -> Result<u64, StorageError> {
        let piece_len = self.layout.piece_len(piece);
        if u64::from(offset) + len as u64 > u64::from(piece_len) {
            return Err(StorageError::OutOfRange {
                piece: piece.get(),
                offset,
                len,
                piece_len,
            });
        }
        Ok(self.layout.piece_offset(piece) + u64::from(offset))
    }
}

/// Joins the torrent's path components, accepting only plain names.
fn safe_relative_path(components: &[String]) -> Result<PathBuf, StorageError> {
    let unsafe_path = || StorageError::UnsafePath(components.to_vec());
    if components.is_empty() {
        return Err(unsafe_path());
    }
    let mut out = PathBuf::new();
    for c in components {
        let mut parts = Path::new(c).components();
        match (parts.next(), parts.next()) {
            // `components()` drops a trailing separator and `.` inside names, so compare back to the
            // original to reject "a/" and "a/." too.
            (Some(Component::Normal(name)), None) if name == c.as_str() && !c.contains('\0') => {
                out.push(name);
            }
            _ => return Err(unsafe_path()),
        }
    }
    Ok(out)
}

/// How [`Storage`] opens files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Read-write; create what is missing and fix lengths.
    Create,
    /// Read-only; everything must exist with the right length.
    Existing,
}

/// Opens `root/relative`, checking each directory on the way so that no symlink under `root` is
/// followed. `Create` makes missing directories and the file, with exactly `length` bytes; `Existing`
/// requires them.
fn open_file(root: &Path, relative: &Path, length: u64, mode: Mode) -> Result<File, StorageError> {
    let mut dir = root.to_path_buf();
    let mut parts: Vec<Component<'_>> = relative.components().collect();
    let name = parts.pop();
    for part in parts {
        dir.push(part);
        if mode == Mode::Existing && !dir.exists() {
            return Err(StorageError::Missing { path: dir });
        }
        ensure_real_dir(&dir)?;
    }
    let path = match name {
        Some(name) => dir.join(name),
        None => return Err(StorageError::UnsafePath(Vec::new())),
    };
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(StorageError::Symlink { path }),
        _ => {}
    }
    let file = OpenOptions::new()
        .read(true)
        .write(mode == Mode::Create)
        .create(mode == Mode::Create)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| {
            // O_NOFOLLOW reports a symlink planted since our check as ELOOP.
            if e.raw_os_error() == Some(libc::ELOOP) {
                StorageError::Symlink { path: path.clone() }
            } else if e.kind() == io::ErrorKind::NotFound && mode == Mode::Existing {
                StorageError::Missing { path: path.clone() }
            } else {
                io_error(&path, "open", e)
            }
        })?;
    let meta = file.metadata().map_err(|e| io_error(&path, "stat", e))?;
    if !meta.is_file() {
        return Err(io_error(
            &path,
            "open",
            io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
        ));
    }
    if meta.len() != length {
        if mode == Mode::Existing {
            return Err(StorageError::WrongLength {
                path,
                expected: length,
                actual: meta.len(),
            });
        }
        file.set_len(length)
            .map_err(|e| io_error(&path, "set length of", e))?;
    }
    Ok(file)
}

/// Makes sure `dir` is a real directory (not a symlink to one), creating it if missing.
fn ensure_real_dir(dir: &Path) -> Result<(), StorageError> {
    let check = |meta: std::fs::Metadata| {
        if meta.file_type().is_symlink() {
            Err(StorageError::Symlink {
                path: dir.to_path_buf(),
            })
        } else if meta.is_dir() {
            Ok(())
        } else {
            Err(io_error(
                dir,
                "create directory",
                io::Error::new(io::ErrorKind::AlreadyExists, "a file is in the way"),
            ))
        }
    };
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => check(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match std::fs::create_dir(dir) {
            Ok(()) => Ok(()),
            // Created concurrently by someone else: check what it is.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                check(std::fs::symlink_metadata(dir).map_err(|e| io_error(dir, "stat", e))?)
            }
            Err(e) => Err(io_error(dir, "create directory", e)),
        },
        Err(e) => Err(io_error(dir, "stat", e)),
    }
}

/// Wraps an IO error with the file it concerns; a full disk or quota becomes [`StorageError::DiskFull`].
fn io_error(path: &Path, op: &'static str, source: io::Error) -> StorageError {
    match source.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => StorageError::DiskFull {
            path: path.to_path_buf(),
        },
        _ => StorageError::Io {
            path: path.to_path_buf(),
            op,
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use swarmer_proto::metainfo::FileEntry;

    fn entry(path: &[&str], length: u64, padding: bool) -> FileEntry {
        FileEntry {
            path: path.iter().map(|s| s.to_string()).collect(),
            length,
            padding,
        }
    }

    fn info(piece_length: u32, files: Vec<FileEntry>) -> Info {
        let layout = Layout::new(u64::from(piece_length), files.iter().map(|f| f.length)).unwrap();
        Info {
            name: files[0].path[0].clone(),
            piece_length,
            piece_hashes: vec![[0; 20]; layout.piece_count() as usize],
            multi_file: files.len() > 1,
            private: false,
            files,
            layout,
        }
    }

    /// 16-byte pieces over: a(10) empty(0) b(4) pad(2) c(30).
    fn multi() -> Info {
        info(
            16,
            vec![
                entry(&["t", "a"], 10, false),
                entry(&["t", "sub", "empty"], 0, false),
                entry(&["t", "sub", "b"], 4, false),
                entry(&["t", ".pad", "2"], 2, true),
                entry(&["t", "c"], 30, false),
            ],
        )
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 1) as u8).collect()
    }

    #[test]
    fn storage_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Storage>();
    }

    #[test]
    fn creates_files_with_their_lengths_but_no_padding() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        Storage::create(&root, &multi()).unwrap();
        assert_eq!(std::fs::metadata(root.join("t/a")).unwrap().len(), 10);
        assert_eq!(
            std::fs::metadata(root.join("t/sub/empty")).unwrap().len(),
            0
        );
        assert_eq!(std::fs::metadata(root.join("t/sub/b")).unwrap().len(), 4);
        assert_eq!(std::fs::metadata(root.join("t/c")).unwrap().len(), 30);
        assert!(!root.join("t/.pad").exists());
    }

    #[test]
    fn piece_spanning_three_files_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let info = multi();
        let s = Storage::create(dir.path(), &info).unwrap();
        let p0 = s.layout().piece(0).unwrap();
        // Piece 0 covers a[0..10], b[0..4], pad[0..2]; piece 1 starts in c.
        let data = content(16);
        s.write(p0, 0, &data).unwrap();
        let mut back = [0u8; 16];
        s.read(p0, 0, &mut back).unwrap();
        // The padding bytes were not stored: they read as zeros.
        assert_eq!(&back[..14], &data[..14]);
        assert_eq!(&back[14..], &[0, 0]);
        assert_eq!(std::fs::read(dir.path().join("t/a")).unwrap(), &data[..10]);
        assert_eq!(
            std::fs::read(dir.path().join("t/sub/b")).unwrap(),
            &data[10..14]
        );

        // A write in the middle of a piece, crossing a -> b.
        s.write(p0, 8, &[0xaa; 4]).unwrap();
        let mut mid = [0u8; 6];
        s.read(p0, 6, &mut mid).unwrap();
        assert_eq!(mid, [data[6], data[7], 0xaa, 0xaa, 0xaa, 0xaa]);

        // The last, short piece.
        let last = s.layout().piece(2).unwrap();
        assert_eq!(s.layout().piece_len(last), 14);
        s.write(last, 0, &content(14)).unwrap();
        let mut tail = [0u8; 14];
        s.read(last, 0, &mut tail).unwrap();
        assert_eq!(tail.to_vec(), content(14));
        s.sync_all().unwrap();
    }

    #[test]
    fn out_of_range_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::create(dir.path(), &multi()).unwrap();
        let last = s.layout().piece(2).unwrap();
        assert!(matches!(
            s.write(last, 10, &[0; 5]),
            Err(StorageError::OutOfRange { piece: 2, .. })
        ));
        assert!(matches!(
            s.read(last, u32::MAX, &mut [0; 1]),
            Err(StorageError::OutOfRange { .. })
        ));
    }

    #[test]
    fn reopening_keeps_existing_data_and_fixes_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let info = info(
            16,
            vec![entry(&["t", "a"], 20, false), entry(&["t", "b"], 20, false)],
        );
        {
            let s = Storage::create(dir.path(), &info).unwrap();
            s.write(s.layout().piece(0).unwrap(), 0, &content(16))
                .unwrap();
        }
        // b is too long, as if an older version of the torrent left it behind.
        std::fs::write(dir.path().join("t/b"), [9u8; 50]).unwrap();
        let s = Storage::create(dir.path(), &info).unwrap();
        let mut back = [0u8; 16];
        s.read(s.layout().piece(0).unwrap(), 0, &mut back).unwrap();
        assert_eq!(back.to_vec(), content(16));
        assert_eq!(std::fs::metadata(dir.path().join("t/b")).unwrap().len(), 20);
        let mut b = [0u8; 4];
        // Bytes 20..24 of the content are the first bytes of b, which survived the cut.
        s.read(s.layout().piece(1).unwrap(), 4, &mut b).unwrap();
        assert_eq!(b, [9; 4]);
    }

    #[test]
    fn open_existing_reads_but_never_creates_or_changes() {
        let dir = tempfile::tempdir().unwrap();
        let info = multi();
        let missing = Storage::open_existing(dir.path(), &info).unwrap_err();
        assert!(matches!(missing, StorageError::Missing { .. }), "{missing}");
        let written = Storage::create(dir.path(), &info).unwrap();
        // Piece 1 lies wholly in file c (piece 0 holds padding, which reads as zeros).
        let len = info.layout.piece_len(info.layout.piece(1).unwrap()) as usize;
        let data = content(len);
        written
            .write(info.layout.piece(1).unwrap(), 0, &data)
            .unwrap();
        written.sync_all().unwrap();
        drop(written);
        let seeded = Storage::open_existing(dir.path(), &info).unwrap();
        let mut back = vec![0; len];
        seeded
            .read(info.layout.piece(1).unwrap(), 0, &mut back)
            .unwrap();
        assert_eq!(back, data);
        assert!(
            seeded
                .write(info.layout.piece(1).unwrap(), 0, &data)
                .is_err()
        );
        // A file of the wrong length is reported, not fixed.
        let first = dir.path().join(info.files[0].path.join("/"));
        let before = std::fs::metadata(&first).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&first)
            .unwrap()
            .set_len(before + 1)
            .unwrap();
        let wrong = Storage::open_existing(dir.path(), &info).unwrap_err();
        assert!(
            matches!(wrong, StorageError::WrongLength { actual, .. } if actual == before + 1),
            "{wrong}"
        );
        assert_eq!(std::fs::metadata(&first).unwrap().len(), before + 1);
    }

    #[test]
    fn files_are_sparse() {
        let dir = tempfile::tempdir().unwrap();
        let len = 64 << 20;
        let info = info(1 << 20, vec![entry(&["big"], len, false)]);
        let s = Storage::create(dir.path(), &info).unwrap();
        s.write(s.layout().piece(3).unwrap(), 0, &[1; 4096])
            .unwrap();
        let meta = std::fs::metadata(dir.path().join("big")).unwrap();
        assert_eq!(meta.len(), len);
        // `blocks` counts 512-byte units actually allocated.
        assert!(meta.blocks() * 512 < len / 2, "{} blocks", meta.blocks());
    }

    #[test]
    fn symlinked_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("t")).unwrap();
        let err = Storage::create(&root, &multi()).unwrap_err();
        assert!(
            matches!(&err, StorageError::Symlink { path } if *path == root.join("t")),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn symlinked_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("victim");
        std::fs::write(&target, b"keep me").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("file")).unwrap();
        let info = info(16, vec![entry(&["file"], 100, false)]);
        assert!(matches!(
            Storage::create(dir.path(), &info),
            Err(StorageError::Symlink { .. })
        ));
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    }

    #[test]
    fn unsafe_and_duplicate_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            &["t", ".."][..],
            &["..", "x"],
            &["/etc"],
            &["a/b"],
            &["."],
            &[""],
            &["a\0b"],
            &[],
        ] {
            let mut i = info(16, vec![entry(&["x"], 10, false)]);
            i.files[0].path = bad.iter().map(|s| s.to_string()).collect();
            assert!(
                matches!(
                    Storage::create(dir.path(), &i),
                    Err(StorageError::UnsafePath(_))
                ),
                "{bad:?}"
            );
        }
        let dup = info(
            16,
            vec![entry(&["t", "a"], 10, false), entry(&["t", "a"], 10, false)],
        );
        assert!(matches!(
            Storage::create(dir.path(), &dup),
            Err(StorageError::DuplicatePath { .. })
        ));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // A file where a directory should be.
        std::fs::write(dir.path().join("t"), b"").unwrap();
        let err = Storage::create(dir.path(), &multi()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&dir.path().join("t").display().to_string()),
            "{err}"
        );
    }
}
