//! Moving a stopped torrent's data to another directory (qBittorrent `setLocation`, Transmission
//! `torrent-set-location` with `move`), on a blocking thread: each top-level entry of the torrent
//! (its single file, or its folder) and its parts file is renamed, or copied and then deleted when
//! the target is on another filesystem.
//!
//! Nothing is overwritten: if any target exists, nothing moves. Paths come from a validated
//! metainfo (no `..`, no absolute components) and the target directory was checked against the
//! download roots, so nothing outside them is written; symlinks met while copying are refused.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use swarmer_proto::metainfo::Metainfo;

/// Moves `m`'s data from `from` to `to` (created if missing). Entries that are not on disk (files
/// never created, a torrent not started yet) are skipped.
///
/// Errors: a target exists (nothing moved), or a rename or copy failed (the message names it; what
/// was moved before stays moved).
pub(super) fn move_data(from: &Path, to: &Path, m: &Metainfo) -> Result<(), String> {
    if from == to {
        return Ok(());
    }
    let mut entries: BTreeSet<PathBuf> = m
        .info
        .files
        .iter()
        .filter(|f| !f.padding)
        .filter_map(|f| f.path.first().map(PathBuf::from))
        .collect();
    entries.insert(PathBuf::from(swarmer::storage::parts_file_name(
        &m.info_hash,
    )));
    let present: Vec<&PathBuf> = entries
        .iter()
        .filter(|e| from.join(e).symlink_metadata().is_ok())
        .collect();
    if let Some(clash) = present
        .iter()
        .find(|e| to.join(e).symlink_metadata().is_ok())
    {
        return Err(format!(
            "{} exists already; nothing was moved",
            to.join(clash).display()
        ));
    }
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    for entry in present {
        let (src, dst) = (from.join(entry), to.join(entry));
        move_one(&src, &dst)
            .map_err(|e| format!("cannot move {} to {}: {e}", src.display(), dst.display()))?;
    }
    Ok(())
}

/// Renames `src` to `dst`, or copies it (recursively) and deletes it when they are on different
/// filesystems.
fn move_one(src: &Path, dst: &Path) -> io::Result<()> {
    match std::fs::rename(src, dst) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            copy_tree(src, dst)?;
            if src.is_dir() {
                std::fs::remove_dir_all(src)
            } else {
                std::fs::remove_file(src)
            }
        }
        Err(e) => Err(e),
    }
}

/// Copies a file, or a directory with everything in it; refuses symlinks.
fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = src.symlink_metadata()?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::other(format!(
            "{} is a symlink, which is not followed",
            src.display()
        )));
    }
    if meta.is_dir() {
        std::fs::create_dir(dst)?;
        for child in std::fs::read_dir(src)? {
            let child = child?;
            copy_tree(&child.path(), &dst.join(child.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(src, dst).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multi() -> Metainfo {
        let mut info = b"d5:filesld6:lengthi3e4:pathl1:aeed6:lengthi3e4:pathl3:sub1:beee\
            4:name3:two12:piece lengthi16384e6:pieces20:"
            .to_vec();
        info.extend([7u8; 20]);
        info.push(b'e');
        Metainfo::from_bytes(&[b"d4:info".as_slice(), &info, b"e"].concat()).unwrap()
    }

    #[test]
    fn data_moves_whole_and_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        let (from, to) = (tmp.path().join("from"), tmp.path().join("to/deeper"));
        std::fs::create_dir_all(from.join("two/sub")).unwrap();
        std::fs::write(from.join("two/a"), "aaa").unwrap();
        std::fs::write(from.join("two/sub/b"), "bbb").unwrap();
        std::fs::write(from.join("bystander"), "x").unwrap();
        let m = multi();
        move_data(&from, &to, &m).unwrap();
        assert_eq!(std::fs::read(to.join("two/sub/b")).unwrap(), b"bbb");
        assert!(!from.join("two").exists());
        assert!(
            from.join("bystander").exists(),
            "only the torrent's entries move"
        );
        // Back, onto a directory that holds an entry of the same name: nothing moves.
        std::fs::create_dir_all(from.join("two")).unwrap();
        let err = move_data(&to, &from, &m).unwrap_err();
        assert!(err.contains("exists already"), "{err}");
        assert!(to.join("two/a").exists());
        // Across filesystems the copy path runs; here, at least, the copy itself.
        copy_tree(&to.join("two"), &tmp.path().join("copy")).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("copy/a")).unwrap(), b"aaa");
    }
}
