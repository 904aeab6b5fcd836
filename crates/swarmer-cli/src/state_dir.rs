//! Where swarmer keeps its state, never in the user's download directory: the daemon's database
//! and generated API token (`swarmer daemon` writes them, `swarmer add/list/remove` read the
//! token), and the fast-resume states and fetched magnet metadata of `swarmer download` and
//! `swarmer seed`.

use std::path::{Path, PathBuf};

use swarmer_proto::InfoHash;

/// The default state directory: `$XDG_STATE_HOME/swarmer`, else `$HOME/.local/state/swarmer`;
/// `None` when neither variable is set.
pub(crate) fn default_state_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })
        .map(|d| d.join("swarmer"))
}

/// The file holding the API token the daemon generated in `state_dir`.
pub(crate) fn token_file(state_dir: &Path) -> PathBuf {
    state_dir.join("token")
}

/// Where `download`/`seed` keep the fast-resume state of the torrent `info_hash` downloaded into
/// `output`: `STATE/resume/<info hash>-<output key>.resume`. The key (the first 8 bytes of the
/// SHA-1 of the output directory's absolute path) keeps two copies of one torrent in different
/// directories apart.
pub(crate) fn resume_file(state_dir: &Path, output: &Path, info_hash: InfoHash) -> PathBuf {
    let output: PathBuf = std::path::absolute(output)
        .unwrap_or_else(|_| output.to_path_buf())
        .components()
        .collect();
    let digest = swarmer_proto::digest::sha1(output.as_os_str().as_encoded_bytes());
    let key: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    state_dir
        .join("resume")
        .join(format!("{}-{key}.resume", info_hash.to_hex()))
}

/// Where `download` keeps a magnet link's fetched torrent, so a rerun need not fetch it again:
/// `STATE/torrents/<info hash>.torrent`.
pub(crate) fn metadata_file(state_dir: &Path, info_hash: InfoHash) -> PathBuf {
    state_dir
        .join("torrents")
        .join(format!("{}.torrent", info_hash.to_hex()))
}

/// Moves a file an older swarmer kept in the download directory (`old`) to its place in the state
/// directory (`new`), unless one is there already (then the old one is only removed). Failures are
/// logged: the state is a cache, and without it the data is checked instead.
pub(crate) fn migrate(old: &Path, new: &Path) {
    if !old.exists() {
        return;
    }
    let moved = if new.exists() {
        std::fs::remove_file(old)
    } else {
        new.parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::copy(old, new))
            .and_then(|_| std::fs::remove_file(old))
    };
    match moved {
        Ok(()) => {
            tracing::info!(from = %old.display(), to = %new.display(), "moved swarmer's state out of the download directory")
        }
        Err(e) => tracing::warn!("cannot move {} to {}: {e}", old.display(), new.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_are_keyed_by_torrent_and_output_directory() {
        let state = Path::new("/state");
        let hash = InfoHash([0xab; 20]);
        let a = resume_file(state, Path::new("/data/a"), hash);
        let b = resume_file(state, Path::new("/data/b"), hash);
        assert_ne!(a, b, "two directories, two states");
        assert_eq!(a, resume_file(state, Path::new("/data/a/"), hash));
        assert!(a.starts_with("/state/resume"));
        assert!(
            a.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&hash.to_hex())
        );
        assert_eq!(
            metadata_file(state, hash),
            Path::new("/state/torrents").join(format!("{}.torrent", hash.to_hex()))
        );
    }

    #[test]
    fn an_old_state_moves_out_of_the_download_directory() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join(".swarmer-x.resume");
        let new = dir.path().join("state/resume/x.resume");
        std::fs::write(&old, b"state").unwrap();
        migrate(&old, &new);
        assert!(!old.exists());
        assert_eq!(std::fs::read(&new).unwrap(), b"state");
        // A newer state wins; the old copy still goes.
        std::fs::write(&old, b"older").unwrap();
        migrate(&old, &new);
        assert!(!old.exists());
        assert_eq!(std::fs::read(&new).unwrap(), b"state");
    }
}
