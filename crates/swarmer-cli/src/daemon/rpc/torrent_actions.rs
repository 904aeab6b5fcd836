//! `torrent-start`, `torrent-stop`, `torrent-remove`, `torrent-verify`, `torrent-set-location`
//! and `torrent-set` (file wanted/priority lists, per-torrent limits, labels) over the manager.

use serde_json::{Map, Value};
use swarmer::FilePriority;

use super::args::{SPEED_K, arg_bool, arg_u64, as_u64, select, updated_limit};
use super::envelope::{Outcome, manager_error};
use crate::daemon::download_dir::DownloadDir;
use crate::daemon::manager::{DownloadOrder, LabelEdit, Manager, ManagerError};
use crate::daemon::model::{Priority, Torrent, TorrentDetail};

/// Most entries of a file index list in `torrent-set` (a torrent may have this many files).
const MAX_FILE_INDICES: usize = 1_000_000;

/// `torrent-start` (`start`) or `torrent-stop`: resumes or pauses the torrents `ids` names.
pub(super) async fn start_stop(
    manager: &Manager,
    args: &Map<String, Value>,
    start: bool,
) -> Outcome {
    let torrents = select(manager, args).await.map_err(|e| (e, Map::new()))?;
    for t in torrents {
        let result = if start {
            manager.resume(t.id).await
        } else {
            manager.pause(t.id).await
        };
        match result {
            Ok(_) | Err(ManagerError::NotFound(_)) => {}
            Err(e) => return Err(manager_error(e)),
        }
    }
    Ok(Map::new())
}

/// `torrent-remove`: removes the torrents `ids` names, their data too with `delete-local-data`.
pub(super) async fn torrent_remove(manager: &Manager, args: &Map<String, Value>) -> Outcome {
    let delete = arg_bool(args, "delete-local-data")
        .map_err(|e| (e, Map::new()))?
        .unwrap_or(false);
    let torrents = select(manager, args).await.map_err(|e| (e, Map::new()))?;
    let mut first_error = None;
    for t in torrents {
        match manager.remove(t.id, delete).await {
            Ok(()) | Err(ManagerError::NotFound(_)) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(manager_error(e)),
        None => Ok(Map::new()),
    }
}

/// `torrent-verify`: hashes the torrents' data again (stopped first; they resume as before).
pub(super) async fn torrent_verify(manager: &Manager, args: &Map<String, Value>) -> Outcome {
    let torrents = select(manager, args).await.map_err(|e| (e, Map::new()))?;
    for t in torrents {
        match manager.recheck(t.id).await {
            Ok(_) | Err(ManagerError::NotFound(_)) => {}
            Err(e) => return Err(manager_error(e)),
        }
    }
    Ok(Map::new())
}

/// `torrent-reannounce`: the running torrents announce now; an error if none of them could.
pub(super) async fn torrent_reannounce(manager: &Manager, args: &Map<String, Value>) -> Outcome {
    let torrents = select(manager, args).await.map_err(|e| (e, Map::new()))?;
    let mut first_error = None;
    let mut announced = 0;
    for t in torrents {
        match manager.reannounce(t.id).await {
            Ok(()) => announced += 1,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if announced == 0 => Err(manager_error(e)),
        _ => Ok(Map::new()),
    }
}

/// `torrent-set-location` (`location`, `move`): moves the data there (`move`), or looks for it
/// there and hashes what it finds; answers once done.
pub(super) async fn torrent_set_location(manager: &Manager, args: &Map<String, Value>) -> Outcome {
    let bad = |e: String| (e, Map::new());
    let Some(location) = args.get("location").and_then(Value::as_str) else {
        return Err(bad("no location specified".into()));
    };
    let dir = DownloadDir::new(location.trim()).map_err(|e| bad(format!("location {e}")))?;
    let move_data = arg_bool(args, "move").map_err(bad)?.unwrap_or(false);
    let torrents = select(manager, args).await.map_err(bad)?;
    for t in torrents {
        match manager.set_location(t.id, dir.clone(), move_data).await {
            Ok(_) | Err(ManagerError::NotFound(_)) => {}
            Err(e) => return Err(manager_error(e)),
        }
    }
    Ok(Map::new())
}

/// `labels` of `torrent-set`: the torrent's tags become the labels, less its category (shown as
/// its first label); a label naming no category is a tag.
async fn set_labels(manager: &Manager, t: &Torrent, labels: &[String]) -> Result<(), ManagerError> {
    let tags: Vec<String> = labels
        .iter()
        .filter(|l| Some(*l) != t.category.as_ref())
        .cloned()
        .collect();
    manager
        .edit_labels(LabelEdit::RemoveTags(vec![t.id], Vec::new()))
        .await?;
    if tags.is_empty() {
        return Ok(());
    }
    manager
        .edit_labels(LabelEdit::AddTags(vec![t.id], tags))
        .await
}

/// The file index lists of `torrent-set` (Transmission's numbering: padding files left out).
#[derive(Debug, Default, PartialEq)]
pub(super) struct FileChanges {
    wanted: Option<Vec<u64>>,
    unwanted: Option<Vec<u64>>,
    high: Option<Vec<u64>>,
    normal: Option<Vec<u64>>,
    low: Option<Vec<u64>>,
}

impl FileChanges {
    /// Reads the five lists from `torrent-set`'s arguments.
    pub(super) fn parse(args: &Map<String, Value>) -> Result<FileChanges, String> {
        let list = |key: &str| -> Result<Option<Vec<u64>>, String> {
            match args.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(items)) if items.len() <= MAX_FILE_INDICES => items
                    .iter()
                    .map(|v| as_u64(v).ok_or_else(|| format!("{key} must list file indices")))
                    .collect::<Result<Vec<u64>, String>>()
                    .map(Some),
                Some(Value::Array(_)) => Err(format!("{key} lists too many files")),
                Some(_) => Err(format!("{key} must be a list of file indices")),
            }
        };
        Ok(FileChanges {
            wanted: list("files-wanted")?,
            unwanted: list("files-unwanted")?,
            high: list("priority-high")?,
            normal: list("priority-normal")?,
            low: list("priority-low")?,
        })
    }

    /// Whether no list was given.
    pub(super) fn is_empty(&self) -> bool {
        *self == FileChanges::default()
    }

    /// New priorities for the files listed in `current` (Transmission order). An empty list means
    /// every file, as in Transmission; an index past the end is an error.
    pub(super) fn apply(&self, current: &[Priority]) -> Result<Vec<Priority>, String> {
        // Transmission keeps wanted and priority apart; the daemon folds them into one value, so a
        // file wanted again gets its priority from this request or normal.
        let mut wanted: Vec<bool> = current.iter().map(|p| *p != Priority::Skip).collect();
        let mut level: Vec<Priority> = current
            .iter()
            .map(|p| match p {
                Priority::Skip => Priority::Normal,
                other => *other,
            })
            .collect();
        let n = current.len();
        let indices = |list: &[u64]| -> Result<Vec<usize>, String> {
            if list.is_empty() {
                return Ok((0..n).collect());
            }
            list.iter()
                .map(|&i| {
                    usize::try_from(i).ok().filter(|&i| i < n).ok_or_else(|| {
                        format!("file index {i} out of range (the torrent has {n} files)")
                    })
                })
                .collect()
        };
        for (list, value) in [(&self.wanted, true), (&self.unwanted, false)] {
            if let Some(list) = list {
                for i in indices(list)? {
                    wanted[i] = value;
                }
            }
        }
        for (list, value) in [
            (&self.high, Priority::High),
            (&self.normal, Priority::Normal),
            (&self.low, Priority::Low),
        ] {
            if let Some(list) = list {
                for i in indices(list)? {
                    level[i] = value;
                }
            }
        }
        Ok(wanted
            .iter()
            .zip(level)
            .map(|(&w, p)| if w { p } else { Priority::Skip })
            .collect())
    }
}

/// The priorities for `Manager::set_priorities` (one per `info.files` entry, padding included)
/// from new priorities of the files `detail` lists. Padding files are skipped; a padding file
/// after the last listed one is not known here, so such a torrent takes the priorities of its
/// listed files only (the manager then refuses with a count mismatch).
pub(super) fn full_priorities(detail: &TorrentDetail, new: &[Priority]) -> Vec<FilePriority> {
    let len = detail
        .files
        .iter()
        .map(|f| f.index as usize + 1)
        .max()
        .unwrap_or(0);
    let mut out = vec![FilePriority::Skip; len];
    for (f, p) in detail.files.iter().zip(new) {
        if let Some(slot) = out.get_mut(f.index as usize) {
            *slot = (*p).into();
        }
    }
    out
}

/// `torrent-set`: file lists, limits, labels and the download order (`sequentialDownload`, or
/// Transmission 4.1's `sequential_download`) of the torrents `ids` names.
pub(super) async fn torrent_set(manager: &Manager, args: &Map<String, Value>) -> Outcome {
    let bad = |e: String| (e, Map::new());
    let files = FileChanges::parse(args).map_err(bad)?;
    let up = arg_u64(args, "uploadLimit").map_err(bad)?;
    let up_on = arg_bool(args, "uploadLimited").map_err(bad)?;
    let down = arg_u64(args, "downloadLimit").map_err(bad)?;
    let down_on = arg_bool(args, "downloadLimited").map_err(bad)?;
    let limits = up.is_some() || up_on.is_some() || down.is_some() || down_on.is_some();
    let sequential = match arg_bool(args, "sequentialDownload").map_err(bad)? {
        Some(on) => Some(on),
        None => arg_bool(args, "sequential_download").map_err(bad)?,
    };
    let labels: Option<Vec<String>> = match args.get("labels") {
        None => None,
        Some(Value::Array(list)) => Some(
            list.iter()
                .map(|l| l.as_str().map(|s| s.trim().to_owned()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("labels must be strings".into()))?
                .into_iter()
                .filter(|l| !l.is_empty())
                .collect(),
        ),
        Some(_) => return Err(bad("labels must be a list".into())),
    };
    let torrents = select(manager, args).await.map_err(bad)?;
    for t in torrents {
        if let Some(labels) = &labels {
            match set_labels(manager, &t, labels).await {
                Ok(()) | Err(ManagerError::NotFound(_)) => {}
                Err(e) => return Err(manager_error(e)),
            }
        }
        if !files.is_empty() {
            let detail = match manager.get(t.id).await {
                Ok(d) => d,
                Err(ManagerError::NotFound(_)) => continue,
                Err(e) => return Err(manager_error(e)),
            };
            let current: Vec<Priority> = detail.files.iter().map(|f| f.priority).collect();
            let new = files.apply(&current).map_err(bad)?;
            manager
                .set_priorities(t.id, full_priorities(&detail, &new))
                .await
                .map_err(manager_error)?;
        }
        if let Some(on) = sequential {
            let order = DownloadOrder {
                sequential: Some(on),
                ..DownloadOrder::default()
            };
            match manager.set_download_order(t.id, order).await {
                Ok(_) | Err(ManagerError::NotFound(_)) => {}
                Err(e) => return Err(manager_error(e)),
            }
        }
        if limits {
            let up = updated_limit(t.max_upload_rate, up, up_on, SPEED_K);
            let down = updated_limit(t.max_download_rate, down, down_on, SPEED_K);
            match manager.set_limits(t.id, up, down).await {
                Ok(_) | Err(ManagerError::NotFound(_)) => {}
                Err(e) => return Err(manager_error(e)),
            }
        }
    }
    Ok(Map::new())
}
