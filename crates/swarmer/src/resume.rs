//! Fast-resume state of one torrent: which pieces are verified and on disk, the stamps (length and
//! modification time) of the files they were verified in, and transfer totals; its bencoded file
//! format, and saving it atomically (temporary file, `fsync`, rename, `fsync` of the directory).
//!
//! The state is trusted only while every file still has the stamp it had when the state was saved.
//! It is saved after the files were flushed, and the pieces in it were written before that, so a state
//! that matches the files never claims a piece that is not on disk. A process killed at any moment
//! leaves either the previous state or the new one, never a torn file; a file written after the last
//! save has a newer modification time, so the state no longer matches and the data is re-checked.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use swarmer_proto::bencode::{self, OwnedValue};
use swarmer_proto::metainfo::Info;
use swarmer_proto::{Bitfield, InfoHash};

/// The version written in the `format` key; files with another version are ignored.
const FORMAT: i64 = 1;

/// Largest resume file read, in bytes: a torrent of a million files has a state of about 30 MB.
const MAX_RESUME_BYTES: u64 = 64 << 20;

/// The length and modification time of one file, as `stat` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Length in bytes.
    pub length: u64,
    /// Modification time: seconds since the Unix epoch.
    pub mtime: i64,
    /// Modification time: nanoseconds within the second.
    pub mtime_nsec: i64,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            length: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

/// What a torrent saves to resume without re-hashing its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeState {
    /// The torrent this state belongs to.
    pub info_hash: InfoHash,
    /// Pieces verified and written to disk (and flushed) when the state was saved; one bit per piece.
    pub have: Bitfield,
    /// One entry per file of `info.files`, in order: its stamp, or `None` when it did not exist (a
    /// padding file, or one not created).
    pub files: Vec<Option<FileStamp>>,
    /// Payload bytes uploaded over the torrent's life, so ratios survive restarts.
    pub uploaded: u64,
    /// Payload bytes downloaded over the torrent's life.
    pub downloaded: u64,
}

/// Why a resume file was not used. None of these is fatal: the data is re-checked instead.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// Reading the file failed (other than it not existing).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The resume file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is larger than any state we write.
    #[error("{} is larger than {MAX_RESUME_BYTES} bytes", path.display())]
    TooLarge {
        /// The resume file.
        path: PathBuf,
    },
    /// The file is not a resume state of this format.
    #[error("malformed resume state: {0}")]
    Malformed(&'static str),
    /// The state is for another torrent, or for another shape of it.
    #[error("resume state does not belong to this torrent: {0}")]
    Mismatch(&'static str),
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
}

impl Loaded {
    /// True when no file changed, so the state describes the data exactly.
    pub fn unchanged(&self) -> bool {
        !self.changed.iter().any(|&c| c)
    }
}

impl ResumeState {
    /// The canonical bencoding of the state (a dictionary; see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let files = self.files.iter().map(|stamp| match stamp {
            Some(s) => OwnedValue::list([
                int(s.length),
                OwnedValue::Int(s.mtime),
                OwnedValue::Int(s.mtime_nsec),
            ]),
            None => OwnedValue::list([]),
        });
        OwnedValue::dict([
            ("format", OwnedValue::Int(FORMAT)),
            ("info-hash", OwnedValue::Bytes(self.info_hash.0.to_vec())),
            ("pieces", OwnedValue::Bytes(self.have.as_bytes().to_vec())),
            ("files", OwnedValue::list(files)),
            ("uploaded", int(self.uploaded)),
            ("downloaded", int(self.downloaded)),
        ])
        .encode()
    }

    /// Parses a state written by [`ResumeState::encode`] for a torrent with `pieces` pieces and `files`
    /// files.
    ///
    /// Errors: [`ResumeError::Malformed`] for anything else, [`ResumeError::Mismatch`] when the
    /// piece or file count differs.
    pub fn decode(bytes: &[u8], pieces: usize, files: usize) -> Result<ResumeState, ResumeError> {
        let malformed = ResumeError::Malformed;
        let root = bencode::decode(bytes).map_err(|_| malformed("not bencode"))?;
        if root.get(b"format").and_then(|v| v.as_int()) != Some(FORMAT) {
            return Err(malformed("unknown format"));
        }
        let info_hash = root
            .get(b"info-hash")
            .and_then(|v| v.as_bytes())
            .and_then(|b| <[u8; 20]>::try_from(b).ok())
            .ok_or(malformed("info-hash"))?;
        let have_bytes = root
            .get(b"pieces")
            .and_then(|v| v.as_bytes())
            .ok_or(malformed("pieces"))?;
        let have = Bitfield::from_bytes(have_bytes, pieces)
            .map_err(|_| ResumeError::Mismatch("piece count"))?;
        let list = root
            .get(b"files")
            .and_then(|v| v.as_list())
            .ok_or(malformed("files"))?;
        if list.len() != files {
            return Err(ResumeError::Mismatch("file count"));
        }
        let stamps = list
            .iter()
            .map(|entry| {
                let fields = entry.as_list().ok_or(malformed("file entry"))?;
                match fields {
                    [] => Ok(None),
                    [length, mtime, nsec] => Ok(Some(FileStamp {
                        length: length
                            .as_int()
                            .and_then(|n| u64::try_from(n).ok())
                            .ok_or(malformed("file length"))?,
                        mtime: mtime.as_int().ok_or(malformed("file mtime"))?,
                        mtime_nsec: nsec.as_int().ok_or(malformed("file mtime"))?,
                    })),
                    _ => Err(malformed("file entry")),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let total = |key: &[u8]| {
            root.get(key)
                .and_then(|v| v.as_int())
                .and_then(|n| u64::try_from(n).ok())
                .ok_or(malformed("totals"))
        };
        Ok(ResumeState {
            info_hash: InfoHash(info_hash),
            have,
            files: stamps,
            uploaded: total(b"uploaded")?,
            downloaded: total(b"downloaded")?,
        })
    }

    /// Reads the state at `path` for the torrent `info_hash` with `info`'s pieces and files, and
    /// compares every file under `root` with its saved stamp. `Ok(None)`: there is no state yet.
    ///
    /// Errors: a [`ResumeError`] saying why the state cannot be used at all.
    pub fn load(
        path: &Path,
        root: &Path,
        info_hash: InfoHash,
        info: &Info,
    ) -> Result<Option<Loaded>, ResumeError> {
        let io_err = |source| ResumeError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(e)),
        };
        if file.metadata().map_err(io_err)?.len() > MAX_RESUME_BYTES {
            return Err(ResumeError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(file, MAX_RESUME_BYTES + 1), &mut bytes)
            .map_err(io_err)?;
        let state =
            ResumeState::decode(&bytes, info.layout.piece_count() as usize, info.files.len())?;
        if state.info_hash != info_hash {
            return Err(ResumeError::Mismatch("info hash"));
        }
        let changed = state
            .files
            .iter()
            .zip(stamps(root, info))
            .map(|(saved, now)| *saved != now)
            .collect();
        Ok(Some(Loaded { state, changed }))
    }

    /// Writes the state to `path` atomically: into `path` + `.tmp`, flushed, renamed over `path`, and
    /// the directory flushed, so a crash leaves the old state or the new one.
    ///
    /// Errors: any IO error (a full disk included); the previous state is then left as it was.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all(&self.encode())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// The stamp of every file of `info` under `root` (`None` for padding files and files that do not
/// exist or are not regular files). Only `stat`s: no file is opened and no link is followed at the
/// last component.
pub fn stamps(root: &Path, info: &Info) -> Vec<Option<FileStamp>> {
    info.files
        .iter()
        .map(|entry| {
            if entry.padding {
                return None;
            }
            let path = root.join(entry.path.iter().collect::<PathBuf>());
            std::fs::symlink_metadata(path)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| FileStamp::of(&m))
        })
        .collect()
}

/// The resume file for the torrent `info_hash` downloading into `output_dir`:
/// `output_dir/.swarmer-<info hash in hex>.resume`. It lives beside the data so that nothing is written
/// outside the output directory, and moves with it.
pub fn default_path(output_dir: &Path, info_hash: InfoHash) -> PathBuf {
    output_dir.join(format!(".swarmer-{}.resume", info_hash.to_hex()))
}

fn int(n: u64) -> OwnedValue {
    OwnedValue::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmer_proto::Layout;
    use swarmer_proto::metainfo::FileEntry;

    fn info(files: &[(&str, u64)]) -> Info {
        let entries: Vec<FileEntry> = files
            .iter()
            .map(|(name, length)| FileEntry {
                path: vec!["t".into(), name.to_string()],
                length: *length,
                padding: false,
            })
            .collect();
        let layout = Layout::new(16, entries.iter().map(|f| f.length)).unwrap();
        Info {
            name: "t".into(),
            piece_length: 16,
            piece_hashes: vec![[0; 20]; layout.piece_count() as usize],
            multi_file: true,
            private: false,
            files: entries,
            layout,
        }
    }

    fn state(info: &Info, root: &Path) -> ResumeState {
        let mut have = Bitfield::new(info.layout.piece_count() as usize);
        have.set(1);
        ResumeState {
            info_hash: InfoHash([7; 20]),
            have,
            files: stamps(root, info),
            uploaded: 5,
            downloaded: 1 << 40,
        }
    }

    fn write_files(root: &Path, info: &Info) {
        std::fs::create_dir_all(root.join("t")).unwrap();
        for f in &info.files {
            std::fs::write(root.join("t").join(&f.path[1]), vec![1; f.length as usize]).unwrap();
        }
    }

    #[test]
    fn round_trip_through_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let info = info(&[("a", 20), ("b", 30)]);
        write_files(dir.path(), &info);
        let s = state(&info, dir.path());
        assert!(s.files.iter().all(Option::is_some));
        let decoded = ResumeState::decode(&s.encode(), 4, 2).unwrap();
        assert_eq!(decoded, s);
    }

    #[test]
    fn saved_state_loads_while_files_are_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let info = info(&[("a", 20), ("b", 30)]);
        write_files(dir.path(), &info);
        let s = state(&info, dir.path());
        let path = default_path(dir.path(), s.info_hash);
        s.save(&path).unwrap();
        assert!(!path.with_extension("resume.tmp").exists());
        let loaded = ResumeState::load(&path, dir.path(), s.info_hash, &info)
            .unwrap()
            .unwrap();
        assert!(loaded.unchanged());
        assert_eq!(loaded.state, s);
    }

    #[test]
    fn changed_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let info = info(&[("a", 20), ("b", 30)]);
        write_files(dir.path(), &info);
        let s = state(&info, dir.path());
        let path = default_path(dir.path(), s.info_hash);
        s.save(&path).unwrap();
        // Same length, newer modification time: a write after the save.
        let b = dir.path().join("t/b");
        let f = OpenOptions::new().write(true).open(&b).unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        let loaded = ResumeState::load(&path, dir.path(), s.info_hash, &info)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.changed, [false, true]);
        // A deleted file too.
        std::fs::remove_file(dir.path().join("t/a")).unwrap();
        let loaded = ResumeState::load(&path, dir.path(), s.info_hash, &info)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.changed, [true, true]);
    }

    #[test]
    fn states_of_other_torrents_or_shapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let info = info(&[("a", 20), ("b", 30)]);
        write_files(dir.path(), &info);
        let s = state(&info, dir.path());
        let path = dir.path().join("state");
        s.save(&path).unwrap();
        let other = InfoHash([8; 20]);
        assert!(matches!(
            ResumeState::load(&path, dir.path(), other, &info),
            Err(ResumeError::Mismatch("info hash"))
        ));
        assert!(matches!(
            ResumeState::decode(&s.encode(), 4, 3),
            Err(ResumeError::Mismatch("file count"))
        ));
        assert!(matches!(
            ResumeState::decode(&s.encode(), 9, 2),
            Err(ResumeError::Mismatch("piece count"))
        ));
        assert_eq!(
            ResumeState::load(&dir.path().join("none"), dir.path(), s.info_hash, &info).unwrap(),
            None
        );
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        for bytes in [
            &b""[..],
            b"garbage",
            b"d6:formati2ee",
            b"d5:filesle6:formati1e9:info-hash3:abc6:pieces0:e",
            b"d10:downloadedi-1e5:filesle6:formati1e9:info-hash20:aaaaaaaaaaaaaaaaaaaa6:pieces1:\x008:uploadedi0ee",
            b"d10:downloadedi0e5:filesl0:e6:formati1e9:info-hash20:aaaaaaaaaaaaaaaaaaaa6:pieces1:\x008:uploadedi0ee",
        ] {
            assert!(ResumeState::decode(bytes, 4, 0).is_err(), "{bytes:?}");
        }
    }
}
