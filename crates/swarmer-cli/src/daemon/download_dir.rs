//! A directory for torrents' files, always absolute: the daemon saves it (in each torrent's record
//! and in the settings), so it must not depend on the directory the daemon was started in.
//! [`DownloadDir::new`] is the one place that checks; the JSON API, the Transmission RPC, the
//! settings and the store all go through it, and each caller only says how to report a refusal.
//!
//! [`Roots`] confines them: the manager refuses any directory that does not resolve (symlinks
//! followed, `..` refused) to a path under one of the configured `download_roots`, whichever API
//! asked. The directory may not exist yet: its deepest existing ancestor is resolved and the rest
//! appended, and none of the rest can be a symlink because none of it exists.

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

/// The directories downloads may go under, resolved (symlinks followed) when the daemon starts.
#[derive(Debug, Clone)]
pub(crate) struct Roots(Vec<PathBuf>);

/// A download directory outside every root (or one that cannot be resolved). Its message names
/// the directory and the roots, so the user sees what to configure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} is outside the download roots ({}); add a root with download_roots in the config or --download-root",
    dir.display(),
    roots.join(", ")
)]
pub(crate) struct OutsideRoots {
    dir: PathBuf,
    roots: Vec<String>,
}

impl Roots {
    /// Each of `dirs`, created if missing and resolved.
    ///
    /// Errors: a root cannot be created or resolved (the message names it).
    pub(crate) fn new(dirs: &[DownloadDir]) -> std::io::Result<Roots> {
        let mut roots = Vec::with_capacity(dirs.len());
        for dir in dirs {
            std::fs::create_dir_all(dir.as_path())?;
            roots.push(std::fs::canonicalize(dir.as_path())?);
        }
        Ok(Roots(roots))
    }

    /// The roots, resolved.
    pub(crate) fn dirs(&self) -> &[PathBuf] {
        &self.0
    }

    /// Whether `dir` resolves to a path under (or equal to) a root. Blocking (a few `stat`s).
    ///
    /// Errors: [`OutsideRoots`] if it does not, holds a `..`, or cannot be resolved.
    pub(crate) fn confine(&self, dir: &DownloadDir) -> Result<(), OutsideRoots> {
        let inside = resolve(dir.as_path())
            .is_some_and(|resolved| self.0.iter().any(|root| resolved.starts_with(root)));
        if inside {
            Ok(())
        } else {
            Err(OutsideRoots {
                dir: dir.as_path().to_path_buf(),
                roots: self.0.iter().map(|r| r.display().to_string()).collect(),
            })
        }
    }
}

/// `path` with its deepest existing ancestor resolved (symlinks followed) and the rest, which does
/// not exist, appended; `None` for a path holding `..` or one whose ancestors cannot be read.
fn resolve(path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return None;
    }
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(existing) {
            Ok(resolved) => {
                return Some(rest.iter().rev().fold(resolved, |p, c| p.join(c)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                rest.push(existing.file_name()?.to_os_string());
                existing = existing.parent()?;
            }
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_confine_download_dirs_symlinks_included() {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        let root = DownloadDir::new(base.join("root")).unwrap();
        let roots = Roots::new(std::slice::from_ref(&root)).unwrap();
        std::fs::create_dir(base.join("outside")).unwrap();
        std::os::unix::fs::symlink(base.join("outside"), base.join("root/link")).unwrap();
        let dir = |p: &str| DownloadDir::new(base.join(p)).unwrap();
        assert_eq!(roots.confine(&root), Ok(()));
        assert_eq!(roots.confine(&dir("root/new/deeper")), Ok(()));
        for bad in [
            "outside",
            "root/link",
            "root/link/new",
            "root/../outside",
            "rootx",
        ] {
            let err = roots.confine(&dir(bad)).unwrap_err();
            assert!(
                err.to_string().contains("outside the download roots"),
                "{bad}"
            );
        }
        assert!(roots.confine(&DownloadDir::new("/etc").unwrap()).is_err());
    }

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
