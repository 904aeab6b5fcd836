//! Free disk space: how many bytes a torrent's files still need, and whether the filesystem under the
//! output directory has them, so a download that cannot fit is refused before it starts (files are
//! sparse, so without this a 1 PiB torrent would only fail when the disk fills).

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use swarmer_proto::metainfo::Info;

/// The torrent needs more free space than the filesystem has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not enough free space in {}: the torrent needs {} more, {} are free",
    dir.display(),
    human_bytes(*needed),
    human_bytes(*available)
)]
pub struct NotEnoughSpace {
    /// The output directory (or its closest existing ancestor) whose filesystem was asked.
    pub dir: PathBuf,
    /// Bytes the torrent's files still need to allocate.
    pub needed: u64,
    /// Bytes available to unprivileged users on that filesystem.
    pub available: u64,
}

/// Bytes the files of `info` still need: for each file, its length minus the bytes already allocated
/// to it on disk (a sparse file holds only what was written), from `stats` (one per file, as
/// [`crate::resume::stat_files`] gives them). `wanted(i)` says whether file `i` of `info.files` will
/// be written at all.
pub(crate) fn bytes_needed(
    info: &Info,
    stats: &[Option<Metadata>],
    wanted: impl Fn(usize) -> bool,
) -> u64 {
    info.files
        .iter()
        .zip(stats)
        .enumerate()
        .filter(|(i, (f, _))| !f.padding && wanted(*i))
        .map(|(_, (f, stat))| {
            let allocated = stat.as_ref().map_or(0, |m| m.blocks().saturating_mul(512));
            f.length.saturating_sub(allocated)
        })
        .sum()
}

/// Bytes free for unprivileged users on the filesystem holding `path` (`statvfs`: available blocks
/// times the fragment size).
///
/// Errors: `path` does not exist or the filesystem cannot be queried.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Checks that the filesystem holding `root` has `needed` bytes free for unprivileged users.
/// Passes when the free space cannot be determined (the write will then tell).
///
/// Errors: [`NotEnoughSpace`] naming the directory asked and both amounts.
pub(crate) fn check_free_space(root: &Path, needed: u64) -> Result<(), NotEnoughSpace> {
    let Some(dir) = root.ancestors().find(|d| d.is_dir()) else {
        return Ok(());
    };
    let Ok(available) = free_bytes(dir) else {
        return Ok(());
    };
    if needed > available {
        return Err(NotEnoughSpace {
            dir: dir.to_path_buf(),
            needed,
            available,
        });
    }
    Ok(())
}

/// Formats a byte count with binary units: `0 B`, `1023 B`, `1.0 KiB`, `3.0 GiB`, up to PiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_bytes(1 << 50), "1.0 PiB");
    }

    #[test]
    fn a_petabyte_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_free_space(&dir.path().join("not/yet/created"), 1 << 50).unwrap_err();
        assert_eq!(err.dir, dir.path());
        assert!(err.to_string().contains("needs 1.0 PiB more"), "{err}");
        check_free_space(dir.path(), 1).unwrap();
    }
}
