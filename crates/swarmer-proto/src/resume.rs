//! The fast-resume state of one torrent and its file format (a bencoded dictionary): which pieces
//! were verified and on disk, the stamp (length and modification time) of each file when that was
//! so, and lifetime transfer totals. Pure data and codec; reading, writing and `stat`ing files is the
//! `swarmer` crate's `resume` module.
//!
//! ```text
//! d 10:downloaded i<bytes>e  5:files l <per file: l i<length>e i<mtime s>e i<mtime ns>e e, or le> e
//!   6:format i1e  9:info-hash 20:<hash>  5:parts <a stamp as in files, or le>  6:pieces <bitfield,
//!   BEP 3 order>  10:priorities <one byte per file, FilePriority::as_u8; empty: all Normal>
//!   8:uploaded i<bytes>e e
//! ```

use crate::bencode::{self, OwnedValue};
use crate::{Bitfield, FilePriority, InfoHash};

/// The version written in the `format` key; states with another version are refused.
const FORMAT: i64 = 1;

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

/// What a torrent saves to resume without re-hashing its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeState {
    /// The torrent this state belongs to.
    pub info_hash: InfoHash,
    /// Pieces verified and written to disk (and flushed) when the state was saved; one bit per piece.
    pub have: Bitfield,
    /// One entry per file of the torrent's `info.files`, in order: its stamp, or `None` when it did
    /// not exist (a padding file, or one not created).
    pub files: Vec<Option<FileStamp>>,
    /// The stamp of the parts file (pieces shared with skipped files), `None` if there was none.
    pub parts: Option<FileStamp>,
    /// The file priorities in force, one per file of `info.files`; empty means all
    /// [`FilePriority::Normal`].
    pub priorities: Vec<FilePriority>,
    /// Payload bytes uploaded over the torrent's life, so ratios survive restarts.
    pub uploaded: u64,
    /// Payload bytes downloaded over the torrent's life.
    pub downloaded: u64,
}

/// Why bytes are not a usable resume state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeFormatError {
    /// Not a resume state of this format; names the first bad part.
    #[error("malformed resume state: {0}")]
    Malformed(&'static str),
    /// A state for a torrent of another shape ("piece count", "file count").
    #[error("resume state does not fit this torrent: {0}")]
    Mismatch(&'static str),
}

impl ResumeState {
    /// The canonical bencoding of the state (a dictionary; see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let files = self.files.iter().map(encode_stamp);
        OwnedValue::dict([
            ("format", OwnedValue::Int(FORMAT)),
            ("info-hash", OwnedValue::Bytes(self.info_hash.0.to_vec())),
            ("pieces", OwnedValue::Bytes(self.have.as_bytes().to_vec())),
            ("files", OwnedValue::list(files)),
            ("parts", encode_stamp(&self.parts)),
            (
                "priorities",
                OwnedValue::Bytes(self.priorities.iter().map(|p| p.as_u8()).collect()),
            ),
            ("uploaded", int(self.uploaded)),
            ("downloaded", int(self.downloaded)),
        ])
        .encode()
    }

    /// Parses a state written by [`ResumeState::encode`] for a torrent with `pieces` pieces and `files`
    /// files.
    ///
    /// Errors: [`ResumeFormatError::Malformed`] for anything else, [`ResumeFormatError::Mismatch`] when the
    /// piece or file count differs.
    pub fn decode(
        bytes: &[u8],
        pieces: usize,
        files: usize,
    ) -> Result<ResumeState, ResumeFormatError> {
        let malformed = ResumeFormatError::Malformed;
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
            .map_err(|_| ResumeFormatError::Mismatch("piece count"))?;
        let list = root
            .get(b"files")
            .and_then(|v| v.as_list())
            .ok_or(malformed("files"))?;
        if list.len() != files {
            return Err(ResumeFormatError::Mismatch("file count"));
        }
        let stamps = list
            .iter()
            .map(decode_stamp)
            .collect::<Result<Vec<_>, _>>()?;
        let parts = match root.get(b"parts") {
            Some(v) => decode_stamp(v)?,
            None => None,
        };
        let priorities = root
            .get(b"priorities")
            .map_or(Some(&[][..]), |v| v.as_bytes())
            .ok_or(malformed("priorities"))?
            .iter()
            .map(|&n| FilePriority::from_u8(n).ok_or(malformed("priorities")))
            .collect::<Result<Vec<_>, _>>()?;
        if !priorities.is_empty() && priorities.len() != files {
            return Err(ResumeFormatError::Mismatch("file count"));
        }
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
            parts,
            priorities,
            uploaded: total(b"uploaded")?,
            downloaded: total(b"downloaded")?,
        })
    }
}

fn encode_stamp(stamp: &Option<FileStamp>) -> OwnedValue {
    match stamp {
        Some(s) => OwnedValue::list([
            int(s.length),
            OwnedValue::Int(s.mtime),
            OwnedValue::Int(s.mtime_nsec),
        ]),
        None => OwnedValue::list([]),
    }
}

fn decode_stamp(value: &bencode::Value<'_>) -> Result<Option<FileStamp>, ResumeFormatError> {
    let malformed = ResumeFormatError::Malformed;
    match value.as_list().ok_or(malformed("file entry"))? {
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
}

fn int(n: u64) -> OwnedValue {
    OwnedValue::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ResumeState {
        let mut have = Bitfield::new(4);
        have.set(1);
        ResumeState {
            info_hash: InfoHash([7; 20]),
            have,
            files: vec![
                Some(FileStamp {
                    length: 20,
                    mtime: 1_700_000_000,
                    mtime_nsec: 123,
                }),
                None,
            ],
            parts: Some(FileStamp {
                length: 1 << 20,
                mtime: 1_700_000_001,
                mtime_nsec: 0,
            }),
            priorities: vec![FilePriority::High, FilePriority::Skip],
            uploaded: 5,
            downloaded: 1 << 40,
        }
    }

    trait ReplaceBytes {
        fn replace_bytes(self, from: &[u8], to: &[u8]) -> Vec<u8>;
    }

    impl ReplaceBytes for Vec<u8> {
        fn replace_bytes(self, from: &[u8], to: &[u8]) -> Vec<u8> {
            let at = self
                .windows(from.len())
                .position(|w| w == from)
                .expect("present");
            [&self[..at], to, &self[at + from.len()..]].concat()
        }
    }

    #[test]
    fn round_trip_through_bytes() {
        let s = state();
        assert_eq!(ResumeState::decode(&s.encode(), 4, 2), Ok(s));
    }

    #[test]
    fn states_of_other_shapes_are_refused() {
        let s = state();
        assert_eq!(
            ResumeState::decode(&s.encode(), 4, 3),
            Err(ResumeFormatError::Mismatch("file count"))
        );
        assert_eq!(
            ResumeState::decode(&s.encode(), 9, 2),
            Err(ResumeFormatError::Mismatch("piece count"))
        );
        let one_priority = ResumeState {
            priorities: vec![FilePriority::Low],
            ..s.clone()
        };
        assert_eq!(
            ResumeState::decode(&one_priority.encode(), 4, 2),
            Err(ResumeFormatError::Mismatch("file count"))
        );
        let bad_priority = s
            .encode()
            .replace_bytes(b"10:priorities2:\x07\x00", b"10:priorities2:\x07\x05");
        assert_eq!(
            ResumeState::decode(&bad_priority, 4, 2),
            Err(ResumeFormatError::Malformed("priorities"))
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
