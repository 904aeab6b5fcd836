//! Fast-resume state: where it is kept (a [`ResumeStore`]; [`ResumeFile`] keeps it in one file,
//! saved atomically with a temporary file, `fsync`, rename and `fsync` of the directory), reading it
//! and comparing it with the files, and `stat`ing the files. The state and its format are
//! `swarmer_proto::resume`.
//!
//! The state is trusted only for files that still have the stamp they had when it was saved. It is
//! saved after the files were flushed, and the pieces in it were written before that, so it never
//! vouches for a piece that is not on disk. A process killed at any moment leaves the previous state
//! or the new one, never a torn file; a file written after the last save has a newer modification
//! time, so the pieces touching it are hashed again.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use swarmer_proto::InfoHash;
use swarmer_proto::metainfo::Info;
pub use swarmer_proto::resume::{FileStamp, ResumeFormatError, ResumeState};

/// Largest resume state read or saved, in bytes: a torrent of a million files has a state of about
/// 30 MB. A store may refuse to hold more.
pub const MAX_RESUME_BYTES: u64 = 64 << 20;

/// Where a torrent's fast-resume state is kept: bytes in `swarmer_proto::resume`'s format, one state
/// per info hash, of at most [`MAX_RESUME_BYTES`]. [`ResumeFile`] keeps it in a file; an application
/// hosting many torrents can keep them in its database instead.
pub trait ResumeStore: Send + Sync + fmt::Debug + 'static {
    /// The saved state of `info_hash`; `Ok(None)` if there is none. Called on the blocking pool.
    ///
    /// Errors: the state exists but cannot be read. The torrent then starts without it (hashing
    /// the data it has), so this is never fatal.
    fn load(&self, info_hash: InfoHash) -> io::Result<Option<Vec<u8>>>;

    /// Saves `state` durably (it must survive `kill -9` and power loss once this returns), replacing
    /// the previous state of `info_hash` atomically: a crash at any moment leaves the old state or
    /// the new one. Called on the blocking pool, after the data files were flushed, one call at a
    /// time per torrent.
    ///
    /// Errors: any failure (a full disk included); the previous state must then be left as it was.
    /// The torrent logs it and tries again at the next save.
    fn save(&self, info_hash: InfoHash, state: &[u8]) -> io::Result<()>;

    /// Where the state is kept, for messages: the default is "resume store".
    fn location(&self) -> String {
        "resume store".to_owned()
    }
}

/// Keeps the state in one file (for example at [`default_path`]), replaced atomically: written to
/// the path + `.tmp`, flushed, renamed over the path, and the directory flushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeFile {
    path: PathBuf,
}

impl ResumeFile {
    /// The state kept at `path`. Nothing is read or created until the torrent starts.
    pub fn new(path: PathBuf) -> ResumeFile {
        ResumeFile { path }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ResumeStore for ResumeFile {
    /// The file's bytes, `Ok(None)` if it does not exist; at most [`MAX_RESUME_BYTES`] + 1 are read.
    fn load(&self, _info_hash: InfoHash) -> io::Result<Option<Vec<u8>>> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        file.take(MAX_RESUME_BYTES + 1).read_to_end(&mut bytes)?;
        Ok(Some(bytes))
    }

    fn save(&self, _info_hash: InfoHash, state: &[u8]) -> io::Result<()> {
        crate::write_atomically(&self.path, state)
    }

    /// The file's path.
    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

/// Why a resume state was not used. None of these is fatal: the data is checked instead.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// Reading the state failed (other than there being none).
    #[error("cannot read {location}: {error}")]
    Io {
        /// Where the state is kept ([`ResumeStore::location`]: a path, or "resume store").
        location: String,
        /// The underlying error.
        error: io::Error,
    },
    /// The state is larger than [`MAX_RESUME_BYTES`], more than any state we write.
    #[error("{location} is larger than {MAX_RESUME_BYTES} bytes")]
    TooLarge {
        /// Where the state is kept ([`ResumeStore::location`]).
        location: String,
    },
    /// The file is not a state of this format, or of another shape of torrent.
    #[error(transparent)]
    Format(#[from] ResumeFormatError),
    /// The state belongs to another torrent.
    #[error("the resume state is for torrent {0}")]
    OtherTorrent(InfoHash),
}

/// A resume state read from disk, and which files changed since it was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The state as saved.
    pub state: ResumeState,
    /// One entry per file of `info.files`: its stamp on disk differs from the saved one (written after
    /// the last save, replaced, resized, created or deleted). Pieces touching such a file must be
    /// hashed again; the others are as the state says.
    pub changed: Vec<bool>,
    /// The parts file's stamp differs from the saved one: pieces kept there must be hashed again.
    pub parts_changed: bool,
}

impl Loaded {
    /// True when no file changed, so the state describes the data exactly.
    pub fn unchanged(&self) -> bool {
        !self.parts_changed && !self.changed.iter().any(|&c| c)
    }
}

/// Reads the state `store` holds for the torrent `info_hash` with `info`'s pieces and files, and
/// compares each file's saved stamp with `current` (one per file of `info.files`, as [`stamps`] gives
/// them) and the parts file's with `parts`. `Ok(None)`: there is no state yet. Blocks on the store.
///
/// Errors: a [`ResumeError`] saying why the state cannot be used at all.
pub fn load(
    store: &dyn ResumeStore,
    info_hash: InfoHash,
    info: &Info,
    current: &[Option<FileStamp>],
    parts: Option<FileStamp>,
) -> Result<Option<Loaded>, ResumeError> {
    let bytes = match store.load(info_hash) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(error) => {
            return Err(ResumeError::Io {
                location: store.location(),
                error,
            });
        }
    };
    if bytes.len() as u64 > MAX_RESUME_BYTES {
        return Err(ResumeError::TooLarge {
            location: store.location(),
        });
    }
    let state = ResumeState::decode(&bytes, info.layout.piece_count() as usize, info.files.len())?;
    if state.info_hash != info_hash {
        return Err(ResumeError::OtherTorrent(state.info_hash));
    }
    let changed = state
        .files
        .iter()
        .zip(current)
        .map(|(saved, now)| saved != now)
        .collect();
    let parts_changed = state.parts != parts;
    Ok(Some(Loaded {
        state,
        changed,
        parts_changed,
    }))
}

/// Encodes `state` and saves it in `store` for its info hash, replacing the previous one atomically
/// (as [`ResumeStore::save`] promises). Blocks on the store.
///
/// Errors: the state is larger than [`MAX_RESUME_BYTES`] (`InvalidData`: it could never be loaded),
/// or the store's error; the previous state is then left as it was.
pub fn save(state: &ResumeState, store: &dyn ResumeStore) -> io::Result<()> {
    let bytes = state.encode();
    if bytes.len() as u64 > MAX_RESUME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the resume state of {} bytes is larger than {MAX_RESUME_BYTES} bytes",
                bytes.len()
            ),
        ));
    }
    store.save(state.info_hash, &bytes)
}

/// The `stat` of every file of `info` under `root`, in `info.files` order (`None` for padding files and
/// files that do not exist or are not regular files). No file is opened and no link is followed at the
/// last component. Start-up takes this once and derives the stamps, whether there is data to check and
/// the space still needed from it.
pub fn stat_files(root: &Path, info: &Info) -> Vec<Option<Metadata>> {
    info.files
        .iter()
        .map(|entry| {
            if entry.padding {
                return None;
            }
            regular_file(&root.join(entry.path.iter().collect::<PathBuf>()))
        })
        .collect()
}

/// The stamp of every file of `info` under `root`, as [`stat_files`] finds them.
pub fn stamps(root: &Path, info: &Info) -> Vec<Option<FileStamp>> {
    stat_files(root, info)
        .iter()
        .map(|m| m.as_ref().map(stamp_of))
        .collect()
}

/// The stamp of the regular file at `path`; `None` if there is none (or it is a link).
pub fn stamp(path: &Path) -> Option<FileStamp> {
    regular_file(path).as_ref().map(stamp_of)
}

/// The length and modification time in `meta`.
pub fn stamp_of(meta: &Metadata) -> FileStamp {
    FileStamp {
        length: meta.len(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
    }
}

fn regular_file(path: &Path) -> Option<Metadata> {
    std::fs::symlink_metadata(path).ok().filter(|m| m.is_file())
}

/// The resume file for the torrent `info_hash` downloading into `output_dir`:
/// `output_dir/.swarmer-<info hash in hex>.resume`. It lives beside the data so that nothing is written
/// outside the output directory, and moves with it.
pub fn default_path(output_dir: &Path, info_hash: InfoHash) -> PathBuf {
    output_dir.join(format!(".swarmer-{}.resume", info_hash.to_hex()))
}

#[cfg(test)]
mod tests;
