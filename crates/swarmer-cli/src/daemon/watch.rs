//! The watch folder: every [`SCAN_INTERVAL`] the directory is listed, and each `*.torrent` file in
//! it is added to the daemon and renamed `NAME.torrent.added` (or `NAME.torrent.invalid` when it is
//! not a valid torrent), so it is never added twice and the user sees what happened to it. A file
//! still being written (its size changed since the last scan) waits for the next scan.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use swarmer_proto::metainfo::Metainfo;

use super::manager::{Add, Manager, ManagerError, Source};
use crate::metainfo_file::read_torrent_file;

/// How often the folder is listed.
const SCAN_INTERVAL: Duration = Duration::from_secs(2);
/// Most files taken per scan; the rest wait for the next one.
const MAX_PER_SCAN: usize = 100;

/// Watches `dir` until the task is aborted.
pub(crate) async fn run(dir: PathBuf, manager: Manager) {
    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
        tracing::error!("cannot create the watch folder {}: {e}", dir.display());
        return;
    }
    tracing::info!("watching {} for .torrent files", dir.display());
    // File name -> size at the previous scan: a file is taken once its size held still for a scan.
    let mut sizes: HashMap<OsString, u64> = HashMap::new();
    let mut tick = tokio::time::interval(SCAN_INTERVAL);
    loop {
        tick.tick().await;
        let found = match tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || list(&dir)
        })
        .await
        {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!("cannot list the watch folder {}: {e}", dir.display());
                continue;
            }
            Err(_) => continue,
        };
        let mut next = HashMap::new();
        for (name, size) in found.into_iter().take(MAX_PER_SCAN) {
            if sizes.get(&name) == Some(&size) {
                take(&dir.join(&name), &manager).await;
            } else {
                next.insert(name, size);
            }
        }
        sizes = next;
    }
}

/// The `*.torrent` files in `dir` with their sizes.
fn list(dir: &Path) -> std::io::Result<Vec<(OsString, u64)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let is_torrent = Path::new(&name)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("torrent"));
        let meta = entry.metadata()?;
        if is_torrent && meta.is_file() {
            out.push((name, meta.len()));
        }
    }
    out.sort();
    Ok(out)
}

/// Adds one file and renames it by the outcome.
async fn take(path: &Path, manager: &Manager) {
    let read = {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || read_torrent_file(&path)).await
    };
    let outcome = match read {
        // A file over the size cap fails to parse without having been read whole.
        Ok(Ok(bytes)) => match Metainfo::from_bytes(&bytes) {
            Ok(m) => {
                let add = Add::new(Source::Metainfo(Arc::new(m), bytes));
                match manager.add(add).await {
                    Ok(t) => {
                        tracing::info!(id = t.id, "added {} from the watch folder", path.display());
                        "added"
                    }
                    Err(ManagerError::Duplicate { id, .. }) => {
                        tracing::info!("{} is already added (id {id})", path.display());
                        "added"
                    }
                    Err(e) => {
                        // The daemon could not take it now (store error, shutting down): retry later.
                        tracing::warn!("cannot add {}: {e}", path.display());
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!("{} is not a valid torrent: {e}", path.display());
                "invalid"
            }
        },
        Ok(Err(e)) => {
            tracing::warn!("{e:#}");
            return;
        }
        Err(_) => return,
    };
    let mut renamed = path.as_os_str().to_owned();
    renamed.push(".");
    renamed.push(outcome);
    if let Err(e) = tokio::fs::rename(path, &renamed).await {
        tracing::warn!("cannot rename {}: {e}", path.display());
    }
}
