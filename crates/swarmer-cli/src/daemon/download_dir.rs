//! A directory for torrents' files, always absolute: the daemon saves it (in each torrent's record
//! and in the settings), so it must not depend on the directory the daemon was started in.
//! [`DownloadDir::new`] is the one place that checks; the JSON API, the Transmission RPC, the
//! settings and the store all go through it, and each caller only says how to report a refusal.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// An absolute directory path. Serialized as the path itself, so the store's JSON and the API's
/// answers hold a plain string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PathBuf", into = "PathBuf")]
pub(crate) struct DownloadDir(PathBuf);

/// A relative path where an absolute one is needed. Its message completes the field's name:
/// "download_dir must be an absolute path".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an absolute path")]
pub(crate) struct NotAbsolute;

impl DownloadDir {
    /// `path`, if it is absolute.
    ///
    /// Errors: [`NotAbsolute`] for a relative (or empty) path.
    pub(crate) fn new(path: impl Into<PathBuf>) -> Result<DownloadDir, NotAbsolute> {
        let path = path.into();
        if path.is_absolute() {
            Ok(DownloadDir(path))
        } else {
            Err(NotAbsolute)
        }
    }

    /// The directory a request names: absent or empty means "the default" (`None`).
    ///
    /// Errors: [`NotAbsolute`] for a relative path.
    pub(crate) fn from_request(text: Option<&str>) -> Result<Option<DownloadDir>, NotAbsolute> {
        match text.filter(|t| !t.is_empty()) {
            Some(t) => DownloadDir::new(t).map(Some),
            None => Ok(None),
        }
    }

    /// The path.
    pub(crate) fn as_path(&self) -> &Path {
        &self.0
    }
}

impl TryFrom<PathBuf> for DownloadDir {
    type Error = NotAbsolute;

    fn try_from(path: PathBuf) -> Result<DownloadDir, NotAbsolute> {
        DownloadDir::new(path)
    }
}

impl From<DownloadDir> for PathBuf {
    fn from(dir: DownloadDir) -> PathBuf {
        dir.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_paths_are_download_dirs() {
        assert_eq!(
            DownloadDir::new("/srv/data").unwrap().as_path(),
            Path::new("/srv/data")
        );
        assert_eq!(DownloadDir::new("relative/dir"), Err(NotAbsolute));
        assert_eq!(DownloadDir::new(""), Err(NotAbsolute));
        assert_eq!(DownloadDir::from_request(None), Ok(None));
        assert_eq!(DownloadDir::from_request(Some("")), Ok(None));
        assert_eq!(DownloadDir::from_request(Some("x")), Err(NotAbsolute));
        assert_eq!(
            format!("download_dir {NotAbsolute}"),
            "download_dir must be an absolute path"
        );
        // The store's JSON holds the plain path, and a relative one does not load.
        let dir = DownloadDir::new("/srv/data").unwrap();
        assert_eq!(serde_json::to_string(&dir).unwrap(), "\"/srv/data\"");
        assert_eq!(
            serde_json::from_str::<DownloadDir>("\"/srv/data\"").unwrap(),
            dir
        );
        assert!(serde_json::from_str::<DownloadDir>("\"srv\"").is_err());
    }
}
