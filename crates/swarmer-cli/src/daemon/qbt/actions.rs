//! The qBittorrent API's actions on torrents: `stop`/`start` (and their 4.x names `pause`/
//! `resume`), `delete`, `recheck`, `reannounce`, `setLocation`, `rename`, `renameFile`,
//! `filePrio`, `toggleSequentialDownload`, `toggleFirstLastPiecePrio`, the per-torrent limits, and the category and tag edits. Each goes through the
//! manager; what swarmer cannot do (rename files) answers with an error status (409), never a
//! silent 200.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use swarmer::FilePriority;

use super::form::Params;
use super::shared::{Qbt, failed, ok, one, resolve, text};
use super::view::priority_of;
use crate::daemon::download_dir::DownloadDir;
use crate::daemon::manager::{DownloadOrder, LabelEdit, ManagerError};

/// The ids of the torrents in the `hashes` parameter.
async fn ids(qbt: &Qbt, params: &Params) -> Result<Vec<u64>, Response> {
    let hashes = params.require("hashes")?;
    Ok(resolve(qbt, hashes).await.iter().map(|t| t.id).collect())
}

/// Runs `each` on every torrent of `hashes`; torrents removed meanwhile are skipped.
macro_rules! for_each {
    ($qbt:expr, $params:expr, |$id:ident| $body:expr) => {{
        let ids = match ids(&$qbt, &$params).await {
            Ok(ids) => ids,
            Err(r) => return r,
        };
        for $id in ids {
            match $body {
                Ok(_) | Err(ManagerError::NotFound(_)) => {}
                Err(e) => return failed(e),
            }
        }
        ok()
    }};
}

/// `torrents/stop` and `torrents/pause`.
pub(super) async fn stop(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    for_each!(qbt, params, |id| qbt.manager().pause(id).await)
}

/// `torrents/start` and `torrents/resume`.
pub(super) async fn start(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    for_each!(qbt, params, |id| qbt.manager().resume(id).await)
}

/// `torrents/delete` (`deleteFiles`): answers once the torrents are stopped and, if asked, their
/// files deleted.
pub(super) async fn delete(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    let files = params.flag("deleteFiles").unwrap_or(false);
    for_each!(qbt, params, |id| qbt.manager().remove(id, files).await)
}

/// `torrents/recheck`.
pub(super) async fn recheck(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    for_each!(qbt, params, |id| qbt.manager().recheck(id).await)
}

/// `torrents/reannounce`: running torrents announce now, ignoring the trackers' minimum interval.
/// If none of the torrents could (stopped, checking, no trackers), 409 with the reason.
pub(super) async fn reannounce(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    let ids = match ids(&qbt, &params).await {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    let mut first_error = None;
    let mut announced = 0;
    for id in &ids {
        match qbt.manager().reannounce(*id).await {
            Ok(()) => announced += 1,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if announced == 0 => failed(e),
        _ => ok(),
    }
}

/// `torrents/setLocation` (`hashes`, `location`): moves the data, answering when it is moved.
pub(super) async fn set_location(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    let location = match params.require("location") {
        Ok(l) => l.trim().to_owned(),
        Err(r) => return r,
    };
    let Ok(dir) = DownloadDir::new(&location) else {
        return text(
            StatusCode::BAD_REQUEST,
            "Save path must be an absolute path",
        );
    };
    for_each!(qbt, params, |id| qbt
        .manager()
        .set_location(id, dir.clone(), true)
        .await)
}

/// `torrents/toggleSequentialDownload` (`first_last`: `toggleFirstLastPiecePrio`): flips the
/// setting of each torrent of `hashes`, as qBittorrent does; saved with the torrent.
pub(super) async fn toggle_order(qbt: Arc<Qbt>, params: Params, first_last: bool) -> Response {
    let hashes = match params.require("hashes") {
        Ok(h) => h,
        Err(r) => return r,
    };
    for t in resolve(&qbt, hashes).await {
        let order = if first_last {
            DownloadOrder {
                first_last_piece: Some(!t.first_last_piece),
                ..DownloadOrder::default()
            }
        } else {
            DownloadOrder {
                sequential: Some(!t.sequential),
                ..DownloadOrder::default()
            }
        };
        match qbt.manager().set_download_order(t.id, order).await {
            Ok(_) | Err(ManagerError::NotFound(_)) => {}
            Err(e) => return failed(e),
        }
    }
    ok()
}

/// `torrents/rename` (`hash`, `name`).
pub(super) async fn rename(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    let (hash, name) = match (params.require("hash"), params.require("name")) {
        (Ok(h), Ok(n)) => (h, n.to_owned()),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let t = match one(&qbt, hash).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    match qbt.manager().rename(t.id, name).await {
        Ok(_) => ok(),
        Err(e) => failed(e),
    }
}

/// `torrents/renameFile` and `renameFolder`: swarmer keeps files where the torrent names them.
pub(super) async fn rename_file(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    if let Err(r) = params.require("hash") {
        return r;
    }
    if let Err(r) = one(&qbt, params.get("hash").unwrap_or("")).await {
        return r;
    }
    text(
        StatusCode::CONFLICT,
        "swarmer cannot rename a torrent's files; they keep the names the torrent gives them",
    )
}

/// `torrents/filePrio` (`hash`, `id` as `|`-separated file indexes, `priority` 0, 1, 6 or 7).
pub(super) async fn file_prio(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    let hash = match params.require("hash") {
        Ok(h) => h,
        Err(r) => return r,
    };
    let priority = match params.int("priority") {
        Ok(Some(p)) => p,
        Ok(None) => return text(StatusCode::BAD_REQUEST, "Missing parameter: priority"),
        Err(r) => return r,
    };
    let Some(priority) = priority_of(priority) else {
        return text(StatusCode::BAD_REQUEST, "Priority is not valid");
    };
    let ids = match params.require("id") {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    let indexes: Result<Vec<usize>, _> = ids.split('|').map(|i| i.trim().parse()).collect();
    let Ok(indexes) = indexes else {
        return text(StatusCode::BAD_REQUEST, "File IDs must be integers");
    };
    let t = match one(&qbt, hash).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let inside = match qbt.manager().details(t.id).await {
        Ok(d) => d,
        Err(e) => return failed(e),
    };
    let Some(m) = &inside.metainfo else {
        return text(
            StatusCode::CONFLICT,
            "Torrent's metadata has not yet downloaded",
        );
    };
    // One priority per file of the torrent, padding files included (normal).
    let files = &inside.detail.files;
    let mut all = vec![FilePriority::Normal; m.info.files.len()];
    for f in files {
        all[f.index as usize] = f.priority.into();
    }
    for i in indexes {
        let Some(f) = files.get(i) else {
            return text(StatusCode::CONFLICT, "File IDs are not valid");
        };
        all[f.index as usize] = priority.into();
    }
    match qbt.manager().set_priorities(t.id, all).await {
        Ok(_) => ok(),
        Err(e) => failed(e),
    }
}

/// A limit parameter in bytes/s: 0 or negative means none.
fn limit_param(params: &Params) -> Result<Option<u64>, Response> {
    match params.int("limit")? {
        Some(l) if l > 0 => Ok(Some(l as u64)),
        Some(_) => Ok(None),
        None => Err(text(StatusCode::BAD_REQUEST, "Missing parameter: limit")),
    }
}

/// `torrents/setDownloadLimit` and `setUploadLimit` (`hashes`, `limit` in bytes/s).
pub(super) async fn set_limit(qbt: Arc<Qbt>, params: Params, upload: bool) -> Response {
    let limit = match limit_param(&params) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let list = match params.require("hashes") {
        Ok(h) => resolve(&qbt, h).await,
        Err(r) => return r,
    };
    for t in list {
        let (up, down) = if upload {
            (limit, t.max_download_rate)
        } else {
            (t.max_upload_rate, limit)
        };
        if let Err(e) = qbt.manager().set_limits(t.id, up, down).await {
            return failed(e);
        }
    }
    ok()
}

/// `torrents/downloadLimit` and `uploadLimit`: hash -> limit (bytes/s, 0 none).
pub(super) async fn limits(qbt: Arc<Qbt>, params: Params, upload: bool) -> Response {
    let list = match params.require("hashes") {
        Ok(h) => resolve(&qbt, h).await,
        Err(r) => return r,
    };
    let map: Map<String, Value> = list
        .into_iter()
        .map(|t| {
            let l = if upload {
                t.max_upload_rate
            } else {
                t.max_download_rate
            };
            (t.info_hash, l.unwrap_or(0).into())
        })
        .collect();
    Json(map).into_response()
}

/// A list parameter: comma-separated (tags, categories); `\n` separates categories too.
fn names(params: &Params, name: &str) -> Vec<String> {
    params
        .get(name)
        .unwrap_or("")
        .split([',', '\n'])
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A category's save path parameter: empty means the default directory.
fn save_path(params: &Params) -> Result<Option<DownloadDir>, Response> {
    DownloadDir::from_request(params.get("savePath").map(str::trim)).map_err(|_| {
        text(
            StatusCode::BAD_REQUEST,
            "Save path must be an absolute path",
        )
    })
}

/// The category and tag edits, by endpoint name.
pub(super) async fn labels(qbt: Arc<Qbt>, params: Params, endpoint: &str) -> Response {
    let edit = match endpoint {
        "createCategory" | "editCategory" => {
            let name = match params.require("category") {
                Ok(n) => n.to_owned(),
                Err(r) => return r,
            };
            let path = match save_path(&params) {
                Ok(p) => p,
                Err(r) => return r,
            };
            if endpoint == "createCategory" {
                LabelEdit::CreateCategory(name, path)
            } else {
                LabelEdit::EditCategory(name, path)
            }
        }
        "removeCategories" => LabelEdit::RemoveCategories(names(&params, "categories")),
        "createTags" => LabelEdit::CreateTags(names(&params, "tags")),
        "deleteTags" => LabelEdit::DeleteTags(names(&params, "tags")),
        "setCategory" => {
            let category = match params.require("category") {
                Ok(c) => Some(c.trim().to_owned()).filter(|c| !c.is_empty()),
                Err(r) => return r,
            };
            match ids(&qbt, &params).await {
                Ok(ids) => LabelEdit::SetCategory(ids, category),
                Err(r) => return r,
            }
        }
        "addTags" | "removeTags" => {
            let tags = names(&params, "tags");
            let ids = match ids(&qbt, &params).await {
                Ok(ids) => ids,
                Err(r) => return r,
            };
            if endpoint == "addTags" {
                LabelEdit::AddTags(ids, tags)
            } else {
                LabelEdit::RemoveTags(ids, tags)
            }
        }
        _ => return text(StatusCode::NOT_FOUND, "Not Found"),
    };
    match qbt.manager().edit_labels(edit).await {
        Ok(()) => ok(),
        Err(e) => failed(e),
    }
}
