//! A torrent's files on disk: creating them (sparse, under a root directory, never through a symlink),
//! positional reads and writes of piece ranges that cross file boundaries, file selection (skipped
//! files and the parts file) and a bounded cache of open file handles. Synchronous: callers run it on
//! a blocking thread pool and share one [`Storage`] between tasks through an `Arc`.
//!
//! Unix only for now: it relies on `pread`/`pwrite` (`std::os::unix::fs::FileExt`), which need no lock
//! and no seek position, on `O_NOFOLLOW`, and on (device, inode) numbers. Other platforms fail to
//! compile with a clear message rather than silently falling back to a locked seek-and-write.
//!
//! **Creation.** [`Storage::create`] creates every file that is on disk eagerly (sparse, with its exact
//! length, 0-byte files included), records its (device, inode) and closes it again. Two torrent files
//! that land on one on-disk file (names that differ only in case on a case-insensitive filesystem, or
//! a hard link) are refused with [`StorageError::SameFile`].
//!
//! **Open handles.** At most [`StorageOptions::max_open_files`] files (128 by default) are open at a
//! time, least recently used closed first, so a torrent of a million tiny files neither exhausts
//! descriptors nor holds them all. A file is reopened the way it was created (each directory checked
//! not to be a symlink, the file opened with `O_NOFOLLOW`) and must still be the same (device, inode),
//! or IO fails with [`StorageError::Replaced`]: a file or directory swapped for a link after creation
//! cannot redirect IO. Writes mark a file dirty; [`Storage::sync_all`] reopens dirty files that were
//! closed meanwhile and `fsync`s them (on Linux `fsync` flushes the inode, whichever descriptor wrote).
//!
//! **File selection and the parts file.** A file of priority [`FilePriority::Skip`] is not created
//! ("not on disk"). A piece that holds bytes of a file not on disk (for example one that straddles a
//! skipped file and a wanted one) is stored *whole* in the parts file, at its own offset in the
//! torrent (`piece index × piece length`; the file is sparse, so only such pieces take space), and its
//! bytes that belong to files on disk are written to those files as well. Reads of such a piece come
//! from the parts file, so it can be verified and served later. The parts file (the caller names it,
//! the library uses `DIR/.swarmer-<info-hash-hex>.parts`, see [`parts_file_name`]) is created at the
//! first write that needs it and is kept after the download, as libtorrent keeps its `.parts` file.
//!
//! Un-skipping a file at run time ([`Storage::want_file`]) creates it and copies its bytes of the
//! pieces we have from the parts file. Skipping a file that is on disk changes nothing on disk: it
//! stays, with whatever it holds, and its pieces keep being written to it.

#[cfg(not(unix))]
compile_error!(
    "swarmer's storage uses unix positional IO (pread/pwrite and O_NOFOLLOW); no other platform is supported yet"
);

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use swarmer_proto::layout::Layout;
use swarmer_proto::metainfo::Info;
use swarmer_proto::{Bitfield, FileIndex, FilePriority, InfoHash, PieceIndex};

/// Open file handles kept by default ([`StorageOptions::max_open_files`]).
pub const DEFAULT_MAX_OPEN_FILES: usize = 128;

/// The parts file's name for the torrent `info_hash`: `.swarmer-<40 hex digits>.parts`. The library
/// puts it in the output directory.
pub fn parts_file_name(info_hash: &InfoHash) -> String {
    format!(".swarmer-{}.parts", info_hash.to_hex())
}

/// Why a storage operation failed. Every variant names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system error other than a full disk.
    #[error("{op} {}: {error}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What we were doing: "create directory", "open", "set length of", "write", "read", "sync", ...
        op: &'static str,
        /// The underlying error (shown in the message, so not a `source`: a report walking the
        /// chain would print it twice).
        error: io::Error,
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
    /// Two files of the torrent are one file on disk (device and inode): names that differ only in
    /// case on a case-insensitive filesystem, or a hard link.
    #[error("{} and {} are the same file on disk (names that differ only in case on a case-insensitive filesystem?)", first.display(), second.display())]
    SameFile {
        /// The first file, as its path on disk.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// A file was replaced (another device or inode) since it was created or checked, for example
    /// by a symlinked directory planted on its path; we refuse to read or write it.
    #[error("{} was replaced since it was opened; refusing to use it", path.display())]
    Replaced {
        /// The file.
        path: PathBuf,
    },
    /// `info.files` and `info.layout` disagree, or the options do not fit the torrent (a caller bug:
    /// the metainfo parser builds both, the library sizes the options).
    #[error("the torrent's file list does not match its layout or file priorities")]
    LayoutMismatch,
    /// Files are skipped but [`StorageOptions::parts_file`] is `None`.
    #[error("files are skipped but no parts file was given")]
    NoPartsFile,
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

/// How [`Storage::create_with`] and [`Storage::open_existing_with`] treat a torrent's files.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// One priority per file of `info.files` (padding included); empty means every file is wanted.
    /// Files of priority [`FilePriority::Skip`] are not created (see the module documentation).
    pub priorities: Vec<FilePriority>,
    /// Where pieces that touch files not on disk are kept; required when a file is skipped.
    pub parts_file: Option<PathBuf>,
    /// The most files open at once (at least 1).
    pub max_open_files: usize,
}

impl Default for StorageOptions {
    fn default() -> StorageOptions {
        StorageOptions {
            priorities: Vec::new(),
            parts_file: None,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
        }
    }
}

/// Where a file's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileState {
    /// A BEP 47 padding file: zeros, never on disk.
    Padding,
    /// On disk as this (device, inode); 0-byte files too (they are never read or written).
    OnDisk { dev: u64, ino: u64 },
    /// Skipped and not created: pieces touching it live in the parts file.
    NotOnDisk,
}

/// One file of the torrent as stored.
#[derive(Debug)]
struct StoredFile {
    /// The path relative to the root (the torrent's components).
    relative: PathBuf,
    /// Full path (root joined with `relative`), for error messages.
    path: PathBuf,
    length: u64,
}

/// What changes at run time: where files are, and which pieces the parts file holds.
#[derive(Debug)]
struct Placement {
    states: Vec<FileState>,
    /// On-disk files by (device, inode), to find two names for one file.
    ids: HashMap<(u64, u64), u32>,
}

/// A least-recently-used cache of open files, keyed by file index.
#[derive(Debug)]
struct HandleCache {
    cap: usize,
    open: HashMap<u32, (Arc<File>, u64)>,
    /// Last use → file, oldest first.
    lru: BTreeMap<u64, u32>,
    clock: u64,
}

impl HandleCache {
    fn get(&mut self, file: u32) -> Option<Arc<File>> {
        let (handle, used) = self.open.get_mut(&file)?;
        self.lru.remove(used);
        self.clock += 1;
        *used = self.clock;
        self.lru.insert(self.clock, file);
        Some(Arc::clone(handle))
    }

    fn insert(&mut self, file: u32, handle: Arc<File>) {
        while self.open.len() >= self.cap {
            let Some((_, oldest)) = self.lru.pop_first() else {
                break;
            };
            // The descriptor closes when the last user of the `Arc` is done with it.
            self.open.remove(&oldest);
        }
        self.clock += 1;
        self.lru.insert(self.clock, file);
        if let Some((_, old)) = self.open.insert(file, (handle, self.clock)) {
            self.lru.remove(&old);
        }
    }
}

/// A torrent's files under a root directory, with piece-addressed positional IO.
///
/// `Send + Sync`: reads and writes at different (or even the same) positions may run concurrently from
/// several threads; the locks inside are held for lookups, not for IO (except while
/// [`Storage::want_file`] moves data, which IO waits for).
#[derive(Debug)]
pub struct Storage {
    layout: Layout,
    root: PathBuf,
    mode: Mode,
    files: Vec<StoredFile>,
    placement: RwLock<Placement>,
    handles: Mutex<HandleCache>,
    parts_path: Option<PathBuf>,
    parts: Mutex<Option<Arc<File>>>,
    /// Pieces written to the parts file by this `Storage`.
    in_parts: Mutex<Bitfield>,
    /// Files written since the last [`Storage::sync_all`] (bounded by the file count).
    dirty: Mutex<HashSet<u32>>,
    parts_dirty: std::sync::atomic::AtomicBool,
}

impl Storage {
    /// Creates the directories and files of `info` under `root` (which is created if missing), every
    /// file wanted, at most [`DEFAULT_MAX_OPEN_FILES`] open at once. See [`Storage::create_with`].
    pub fn create(root: &Path, info: &Info) -> Result<Storage, StorageError> {
        Storage::create_with(root, info, &StorageOptions::default())
    }

    /// Creates the directories and files of `info` under `root` (which is created if missing), for
    /// reading and writing.
    ///
    /// Afterwards every non-padding file that is not skipped, including 0-byte ones, exists with
    /// exactly its length: new and short files are extended with `set_len` (sparse, no zeros
    /// written), longer ones are cut; data in existing files is kept. BEP 47 padding files and
    /// skipped files are never created.
    ///
    /// Errors: [`StorageError::UnsafePath`] or [`StorageError::DuplicatePath`] for a bad file list,
    /// [`StorageError::Symlink`] when a directory or file under `root` is a symbolic link,
    /// [`StorageError::SameFile`] when two files are one on disk, [`StorageError::LayoutMismatch`]
    /// for priorities that are not one per file, [`StorageError::NoPartsFile`],
    /// [`StorageError::DiskFull`], and [`StorageError::Io`] naming the file for anything else.
    pub fn create_with(
        root: &Path,
        info: &Info,
        options: &StorageOptions,
    ) -> Result<Storage, StorageError> {
        Storage::open(root, info, options, Mode::Create)
    }

    /// Opens the existing files of `info` under `root` read-only, for seeding data we already have.
    /// See [`Storage::open_existing_with`].
    pub fn open_existing(root: &Path, info: &Info) -> Result<Storage, StorageError> {
        Storage::open_existing_with(root, info, &StorageOptions::default())
    }

    /// Opens the existing files of `info` under `root` read-only, for seeding data we already have.
    /// Nothing is created or changed on disk; symbolic links are refused as in [`Storage::create`].
    /// A skipped file does not have to exist: if it does (with its length) it is read like the
    /// others, otherwise its pieces are read from the parts file, if there is one.
    ///
    /// Errors: [`StorageError::Missing`] or [`StorageError::WrongLength`] for the first wanted file
    /// that is absent or has another length, and the errors of [`Storage::create_with`]. Writing to
    /// the result fails with [`StorageError::Io`].
    pub fn open_existing_with(
        root: &Path,
        info: &Info,
        options: &StorageOptions,
    ) -> Result<Storage, StorageError> {
        Storage::open(root, info, options, Mode::Existing)
    }

    fn open(
        root: &Path,
        info: &Info,
        options: &StorageOptions,
        mode: Mode,
    ) -> Result<Storage, StorageError> {
        let layout = info.layout.clone();
        if layout.file_count() != info.files.len()
            || layout
                .files()
                .zip(&info.files)
                .any(|(f, entry)| layout.file_length(f) != entry.length)
            || !(options.priorities.is_empty() || options.priorities.len() == info.files.len())
        {
            return Err(StorageError::LayoutMismatch);
        }
        let skipped = |i: usize| {
            !info.files[i].padding && options.priorities.get(i).is_some_and(|p| !p.is_wanted())
        };
        if options.parts_file.is_none() && (0..info.files.len()).any(skipped) {
            return Err(StorageError::NoPartsFile);
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
        let mut files: Vec<StoredFile> = Vec::with_capacity(info.files.len());
        let mut placement = Placement {
            states: Vec::with_capacity(info.files.len()),
            ids: HashMap::new(),
        };
        for (i, entry) in info.files.iter().enumerate() {
            let relative = safe_relative_path(&entry.path)?;
            let path = root.join(&relative);
            let state = if entry.padding {
                FileState::Padding
            } else {
                if !seen.insert(relative.clone()) {
                    return Err(StorageError::DuplicatePath { path: relative });
                }
                if skipped(i) {
                    match mode {
                        // Seeding: a skipped file that is there is read like the others.
                        Mode::Existing => {
                            match open_file(root, &relative, entry.length, Mode::Existing) {
                                Ok(file) => file_state(&file, &path)?,
                                Err(_) => FileState::NotOnDisk,
                            }
                        }
                        Mode::Create => FileState::NotOnDisk,
                    }
                } else {
                    let file = open_file(root, &relative, entry.length, mode)?;
                    file_state(&file, &path)?
                }
            };
            if let FileState::OnDisk { dev, ino } = state {
                if let Some(first) = placement.ids.insert((dev, ino), i as u32) {
                    return Err(StorageError::SameFile {
                        first: files[first as usize].path.clone(),
                        second: path,
                    });
                }
            }
            placement.states.push(state);
            files.push(StoredFile {
                relative,
                path,
                length: entry.length,
            });
        }
        let pieces = layout.piece_count() as usize;
        Ok(Storage {
            layout,
            root: root.to_path_buf(),
            mode,
            files,
            placement: RwLock::new(placement),
            handles: Mutex::new(HandleCache {
                cap: options.max_open_files.max(1),
                open: HashMap::new(),
                lru: BTreeMap::new(),
                clock: 0,
            }),
            parts_path: options.parts_file.clone(),
            parts: Mutex::new(None),
            in_parts: Mutex::new(Bitfield::new(pieces)),
            dirty: Mutex::new(HashSet::new()),
            parts_dirty: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Writes `data` at `offset` bytes into `piece`, across file boundaries; bytes that fall in padding
    /// files are skipped. A piece touching a file not on disk goes whole to the parts file too (see
    /// the module documentation).
    ///
    /// Errors: [`StorageError::OutOfRange`] if the range passes the piece's end (nothing is written),
    /// [`StorageError::DiskFull`], [`StorageError::Replaced`], or [`StorageError::Io`] naming the file.
    pub fn write(&self, piece: PieceIndex, offset: u32, data: &[u8]) -> Result<(), StorageError> {
        let start = self.range_start(piece, offset, data.len())?;
        // Held for the whole write, so `want_file` never moves data while a write is half done.
        let placement = self.placement.read().unwrap_or_else(|e| e.into_inner());
        if self.in_parts(&placement, piece) {
            let parts = self.parts_handle(true)?;
            parts
                .write_all_at(data, start)
                .map_err(|e| io_error(self.parts_path(), "write", e))?;
            self.parts_dirty
                .store(true, std::sync::atomic::Ordering::Relaxed);
            self.in_parts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set(piece.as_usize());
        }
        for slice in self.layout.slices(start, data.len() as u64) {
            let i = slice.file.as_usize();
            let FileState::OnDisk { dev, ino } = placement.states[i] else {
                continue;
            };
            let file = self.handle(i as u32, (dev, ino))?;
            let from = slice.range_offset as usize;
            let chunk = &data[from..from + slice.length as usize];
            file.write_all_at(chunk, slice.offset)
                .map_err(|e| io_error(&self.files[i].path, "write", e))?;
            self.dirty
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(i as u32);
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset` bytes into `piece`, across file boundaries; bytes in padding
    /// files read as zeros. A piece touching a file not on disk is read from the parts file.
    ///
    /// Errors: [`StorageError::OutOfRange`] if the range passes the piece's end,
    /// [`StorageError::Missing`] for a piece of the parts file when there is none yet,
    /// [`StorageError::Replaced`], or [`StorageError::Io`] naming the file (an `UnexpectedEof` if a
    /// file was shortened behind our back).
    pub fn read(&self, piece: PieceIndex, offset: u32, buf: &mut [u8]) -> Result<(), StorageError> {
        let start = self.range_start(piece, offset, buf.len())?;
        let placement = self.placement.read().unwrap_or_else(|e| e.into_inner());
        if self.in_parts(&placement, piece) {
            let parts = self.parts_handle(self.mode == Mode::Create)?;
            // The parts file is sparse and may end before this piece: what was never written is zeros.
            return read_at_or_zero(&parts, buf, start)
                .map_err(|e| io_error(self.parts_path(), "read", e));
        }
        for slice in self.layout.slices(start, buf.len() as u64) {
            let i = slice.file.as_usize();
            let from = slice.range_offset as usize;
            let chunk = &mut buf[from..from + slice.length as usize];
            match placement.states[i] {
                FileState::OnDisk { dev, ino } => self
                    .handle(i as u32, (dev, ino))?
                    .read_exact_at(chunk, slice.offset)
                    .map_err(|e| io_error(&self.files[i].path, "read", e))?,
                FileState::Padding | FileState::NotOnDisk => chunk.fill(0),
            }
        }
        Ok(())
    }

    /// Flushes the data and metadata of every file written since the last call, and of the parts
    /// file, to the disk (`fsync`).
    pub fn sync_all(&self) -> Result<(), StorageError> {
        let dirty: Vec<u32> = self
            .dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        let placement = self.placement.read().unwrap_or_else(|e| e.into_inner());
        for (n, &i) in dirty.iter().enumerate() {
            let FileState::OnDisk { dev, ino } = placement.states[i as usize] else {
                continue;
            };
            let synced = self.handle(i, (dev, ino)).and_then(|file| {
                file.sync_all()
                    .map_err(|e| io_error(&self.files[i as usize].path, "sync", e))
            });
            if let Err(e) = synced {
                // Still dirty: a later call tries again.
                let mut set = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
                set.extend(&dirty[n..]);
                return Err(e);
            }
        }
        if self
            .parts_dirty
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            let parts = self.parts_handle(false)?;
            parts
                .sync_all()
                .map_err(|e| io_error(self.parts_path(), "sync", e))?;
        }
        Ok(())
    }

    /// Puts skipped `file` on disk, because its priority is no longer [`FilePriority::Skip`]: creates
    /// it with its length (checked as [`Storage::create`] does) and copies into it its bytes of every
    /// piece in `have` or written to the parts file by this `Storage`. Reads and writes wait while
    /// this runs. Nothing happens for a file already on disk or a padding file.
    ///
    /// Errors: those of [`Storage::create`] for the new file; [`StorageError::Missing`] for a storage
    /// opened with [`Storage::open_existing_with`] (it creates nothing); IO errors naming the file.
    pub fn want_file(&self, file: FileIndex, have: &Bitfield) -> Result<(), StorageError> {
        let i = file.as_usize();
        let mut placement = self.placement.write().unwrap_or_else(|e| e.into_inner());
        if placement.states[i] != FileState::NotOnDisk {
            return Ok(());
        }
        let stored = &self.files[i];
        if self.mode == Mode::Existing {
            return Err(StorageError::Missing {
                path: stored.path.clone(),
            });
        }
        let created = open_file(&self.root, &stored.relative, stored.length, Mode::Create)?;
        let state = file_state(&created, &stored.path)?;
        if let FileState::OnDisk { dev, ino } = state {
            if let Some(&first) = placement.ids.get(&(dev, ino)) {
                return Err(StorageError::SameFile {
                    first: self.files[first as usize].path.clone(),
                    second: stored.path.clone(),
                });
            }
            placement.ids.insert((dev, ino), i as u32);
        }
        let file_start = self.layout.file_offset(file);
        let in_parts = self
            .in_parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut buf = vec![0u8; 1 << 20];
        for p in self.layout.file_pieces(file) {
            if !(have.get(p as usize) || in_parts.get(p as usize)) {
                continue;
            }
            let piece = self.layout.piece(p).expect("file pieces are in range");
            let piece_start = self.layout.piece_offset(piece);
            let piece_end = piece_start + u64::from(self.layout.piece_len(piece));
            let (from, to) = (
                piece_start.max(file_start),
                piece_end.min(file_start + stored.length),
            );
            let parts = self.parts_handle(false)?;
            let mut at = from;
            while at < to {
                let n = ((to - at) as usize).min(buf.len());
                read_at_or_zero(&parts, &mut buf[..n], at)
                    .map_err(|e| io_error(self.parts_path(), "read", e))?;
                created
                    .write_all_at(&buf[..n], at - file_start)
                    .map_err(|e| io_error(&stored.path, "write", e))?;
                at += n as u64;
            }
        }
        created
            .sync_all()
            .map_err(|e| io_error(&stored.path, "sync", e))?;
        placement.states[i] = state;
        Ok(())
    }

    /// True when `file` is on disk (created, or found when seeding); false for padding files and
    /// skipped files that were not created.
    pub fn is_on_disk(&self, file: FileIndex) -> bool {
        matches!(
            self.placement
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .states[file.as_usize()],
            FileState::OnDisk { .. }
        )
    }

    /// The number of torrent files open right now (at most [`StorageOptions::max_open_files`],
    /// not counting the parts file).
    pub fn open_file_count(&self) -> usize {
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open
            .len()
    }

    /// The torrent's piece and file geometry.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// True when `piece` holds bytes of a file that is not on disk, so it lives in the parts file.
    fn in_parts(&self, placement: &Placement, piece: PieceIndex) -> bool {
        self.layout
            .piece_slices(piece)
            .any(|s| placement.states[s.file.as_usize()] == FileState::NotOnDisk)
    }

    fn parts_path(&self) -> &Path {
        self.parts_path.as_deref().unwrap_or(Path::new(""))
    }

    /// The parts file, opened once (with `O_NOFOLLOW`); created if `create`, else
    /// [`StorageError::Missing`] when it does not exist.
    fn parts_handle(&self, create: bool) -> Result<Arc<File>, StorageError> {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = &*parts {
            return Ok(Arc::clone(file));
        }
        let path = self
            .parts_path
            .as_deref()
            .ok_or(StorageError::NoPartsFile)?;
        let file = OpenOptions::new()
            .read(true)
            .write(self.mode == Mode::Create)
            .create(create && self.mode == Mode::Create)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    StorageError::Symlink {
                        path: path.to_path_buf(),
                    }
                } else if e.kind() == io::ErrorKind::NotFound {
                    StorageError::Missing {
                        path: path.to_path_buf(),
                    }
                } else {
                    io_error(path, "open", e)
                }
            })?;
        let file = Arc::new(file);
        *parts = Some(Arc::clone(&file));
        Ok(file)
    }

    /// The open handle of on-disk file `i`, opened (and checked to be `id` still) if not cached.
    /// Opening happens under the cache's lock: misses are serialised, which keeps the count of
    /// open files exact; an evicted handle still in use by another thread closes when that IO ends.
    fn handle(&self, i: u32, id: (u64, u64)) -> Result<Arc<File>, StorageError> {
        let mut cache = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = cache.get(i) {
            return Ok(file);
        }
        let stored = &self.files[i as usize];
        let file = reopen_file(&self.root, &stored.relative, self.mode)?;
        let meta = file
            .metadata()
            .map_err(|e| io_error(&stored.path, "stat", e))?;
        if (meta.dev(), meta.ino()) != id {
            return Err(StorageError::Replaced {
                path: stored.path.clone(),
            });
        }
        let file = Arc::new(file);
        cache.insert(i, Arc::clone(&file));
        Ok(file)
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

/// An on-disk file's state: its (device, inode).
fn file_state(file: &File, path: &Path) -> Result<FileState, StorageError> {
    let meta = file.metadata().map_err(|e| io_error(path, "stat", e))?;
    Ok(FileState::OnDisk {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// Reads `buf.len()` bytes at `offset`; bytes past the end of the file read as zeros (a sparse file
/// whose tail was never written).
fn read_at_or_zero(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => {
                buf[done..].fill(0);
                return Ok(());
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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

/// Opens `root/relative` again after [`open_file`] created or checked it: every directory on the way
/// must still be a real directory, and the file is opened with `O_NOFOLLOW`, never created.
fn reopen_file(root: &Path, relative: &Path, mode: Mode) -> Result<File, StorageError> {
    let mut dir = root.to_path_buf();
    let mut parts: Vec<Component<'_>> = relative.components().collect();
    let name = parts.pop();
    for part in parts {
        dir.push(part);
        let meta = std::fs::symlink_metadata(&dir).map_err(|e| io_error(&dir, "stat", e))?;
        if meta.file_type().is_symlink() {
            return Err(StorageError::Symlink { path: dir });
        }
    }
    let path = match name {
        Some(name) => dir.join(name),
        None => return Err(StorageError::UnsafePath(Vec::new())),
    };
    OpenOptions::new()
        .read(true)
        .write(mode == Mode::Create)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                StorageError::Symlink { path: path.clone() }
            } else {
                io_error(&path, "open", e)
            }
        })
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
            error: source,
        },
    }
}

#[cfg(test)]
mod tests;
