//! The qBittorrent API's read endpoints for torrents: `torrents/info` (filter, category, tag,
//! hashes, sort, reverse, limit, offset), `properties`, `trackers`, `webseeds` (the URLs), `files`,
//! `pieceStates`, `pieceHashes`, and the `categories` and `tags` lists. Per-file progress, piece
//! states, peers and tracker state come from the torrent's own task (`Manager::details`), or from
//! its saved resume state when it is not running.

use std::cmp::Ordering;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::form::Params;
use super::shared::{Qbt, failed, one, resolve, text};
use super::view::{ETA_INFINITE, FILTERS, InfoRow, info, passes, priority_number};
use crate::daemon::json::big_json;
use crate::daemon::model::Inside;

/// `torrents/info`.
pub(super) async fn torrents_info(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    let mut list = match params.get("hashes") {
        Some(h) => resolve(&qbt, h).await,
        None => qbt.manager().list().await,
    };
    let filter = params.get("filter").unwrap_or("all");
    if !FILTERS.contains(&filter) {
        return text(
            StatusCode::BAD_REQUEST,
            format!("unknown filter {filter:?}"),
        );
    }
    list.retain(|t| passes(filter, t) == Some(true));
    if let Some(category) = params.get("category") {
        // An empty category selects torrents without one, as in qBittorrent.
        list.retain(|t| t.category.as_deref().unwrap_or("") == category);
    }
    if let Some(tag) = params.get("tag") {
        list.retain(|t| {
            if tag.is_empty() {
                t.tags.is_empty()
            } else {
                t.tags.iter().any(|x| x == tag)
            }
        });
    }
    // Sorting goes by any field name, so it works on JSON values; a plain list is serialized
    // straight from the torrents.
    match params.get("sort").filter(|k| !k.is_empty()) {
        Some(key) => {
            let mut values: Vec<Value> = list.iter().map(|t| info(t, None)).collect();
            values.sort_by(|a, b| compare(&a[key], &b[key]));
            page(values, &params)
        }
        None => page(
            list.iter().map(|t| InfoRow::new(t, None)).collect(),
            &params,
        ),
    }
}

/// `rows` reversed, offset and limited as `reverse`, `offset` and `limit` say, as JSON.
fn page<T: Serialize>(mut rows: Vec<T>, params: &Params) -> Response {
    if params.flag("reverse") == Some(true) {
        rows.reverse();
    }
    let offset = match params.int("offset") {
        Ok(o) => o.unwrap_or(0),
        Err(r) => return r,
    };
    let limit = match params.int("limit") {
        Ok(l) => l.unwrap_or(0),
        Err(r) => return r,
    };
    let len = rows.len() as i64;
    // A negative offset counts from the end, as in qBittorrent.
    let start = if offset < 0 {
        (len + offset).max(0)
    } else {
        offset.min(len)
    } as usize;
    let mut rows = rows.split_off(start);
    if limit > 0 {
        rows.truncate(limit as usize);
    }
    big_json(&rows, rows.len())
}

/// Orders JSON values as `sort` does: numbers by value, strings by text, others equal.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// The torrent `hash` names, with its details, or the 404.
async fn inside(qbt: &Qbt, params: &Params) -> Result<Inside, Response> {
    let hash = params.require("hash")?;
    let t = one(qbt, hash).await?;
    qbt.manager().details(t.id).await.map_err(failed)
}

/// `torrents/properties`.
pub(super) async fn properties(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    let d = match inside(&qbt, &params).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let t = &d.detail.torrent;
    let m = d.metainfo.as_deref();
    let ratio = if t.downloaded_bytes == 0 {
        0.0
    } else {
        t.uploaded_bytes as f64 / t.downloaded_bytes as f64
    };
    let seeds = d
        .tracker
        .as_ref()
        .and_then(|s| s.seeders)
        .map_or(-1, i64::from);
    let leechers = d
        .tracker
        .as_ref()
        .and_then(|s| s.leechers)
        .map_or(-1, i64::from);
    Json(json!({
        "hash": t.info_hash,
        "infohash_v1": super::view::hashes(t).0,
        "infohash_v2": super::view::hashes(t).1,
        "name": t.name,
        "save_path": t.download_dir,
        "download_path": "",
        "creation_date": m.and_then(|m| m.creation_date).unwrap_or(-1),
        "piece_size": d.detail.piece_length,
        "comment": m.and_then(|m| m.comment.clone()).unwrap_or_default(),
        "created_by": m.and_then(|m| m.created_by.clone()).unwrap_or_default(),
        "isPrivate": m.is_some_and(|m| m.info.private),
        "total_wasted": 0,
        "total_uploaded": t.uploaded_bytes,
        "total_uploaded_session": t.uploaded_bytes,
        "total_downloaded": t.downloaded_bytes,
        "total_downloaded_session": t.downloaded_bytes,
        "up_limit": t.max_upload_rate.map_or(-1, |r| r as i64),
        "dl_limit": t.max_download_rate.map_or(-1, |r| r as i64),
        "time_elapsed": 0,
        "seeding_time": 0,
        "nb_connections": d.peers.len(),
        "nb_connections_limit": -1,
        "share_ratio": ratio,
        "addition_date": t.added_at,
        "completion_date": t.completed_at.map_or(-1, |c| c as i64),
        "last_seen": t.completed_at.map_or(-1, |c| c as i64),
        "dl_speed": t.download_rate,
        "up_speed": t.upload_rate,
        "dl_speed_avg": t.download_rate,
        "up_speed_avg": t.upload_rate,
        "eta": t.eta_seconds.unwrap_or(ETA_INFINITE),
        "peers": d.peers.len(),
        "peers_total": leechers,
        "seeds": 0,
        "seeds_total": seeds,
        "pieces_have": d.detail.pieces_have,
        "pieces_num": d.detail.piece_count,
        "reannounce": 0,
        "total_size": t.total_bytes,
        "popularity": 0,
    }))
    .into_response()
}

/// `torrents/trackers`: each tracker URL with its tier; the one that answered last is working (2),
/// all are not working (4, with the message) after a round in which every one failed, the others
/// not contacted yet (1).
pub(super) async fn trackers(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    let d = match inside(&qbt, &params).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let tiers = d
        .metainfo
        .as_ref()
        .map(|m| m.announce_tiers.clone())
        .unwrap_or_default();
    let status = d.tracker.as_ref();
    let mut rows = Vec::new();
    for (tier, urls) in tiers.iter().enumerate() {
        for url in urls {
            let answered = status.and_then(|s| s.tracker.as_deref()) == Some(url.as_str());
            let failed = status.and_then(|s| s.last_error.clone());
            let (code, msg) = match (answered, failed) {
                (_, Some(e)) => (4, e),
                (true, None) => (
                    2,
                    status.and_then(|s| s.warning.clone()).unwrap_or_default(),
                ),
                (false, None) => (1, String::new()),
            };
            let count = |n: Option<u32>| n.filter(|_| answered).map_or(-1, i64::from);
            // A scrape's counts where there is one, else the last announce reply's.
            let scraped = d.scrapes.get(url).and_then(|r| r.counts);
            rows.push(json!({
                "url": url,
                "status": code,
                "tier": tier,
                "num_peers": -1,
                "num_seeds": scraped.map_or_else(|| count(status.and_then(|s| s.seeders)), |c| i64::from(c.seeders)),
                "num_leeches": scraped.map_or_else(|| count(status.and_then(|s| s.leechers)), |c| i64::from(c.leechers)),
                "num_downloaded": scraped.map_or(-1, |c| i64::from(c.completed)),
                "msg": msg,
            }));
        }
    }
    Json(rows).into_response()
}

/// `torrents/webseeds`: the torrent's web seed URLs (BEP 19, then BEP 17), as `[{"url": ..}]`.
pub(super) async fn webseeds(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    match inside(&qbt, &params).await {
        Ok(d) => {
            let rows: Vec<Value> = d
                .detail
                .web_seed_urls
                .iter()
                .map(|url| json!({ "url": url }))
                .collect();
            Json(rows).into_response()
        }
        Err(r) => r,
    }
}

/// `torrents/files` (optionally only `indexes`, `|`-separated): name, size, progress from the
/// verified pieces, priority, piece range.
pub(super) async fn files(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    let d = match inside(&qbt, &params).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let wanted: Option<Vec<u32>> = params
        .get("indexes")
        .map(|s| s.split('|').filter_map(|i| i.trim().parse().ok()).collect());
    let mut rows = Vec::new();
    // qBittorrent numbers files without padding files, as they are listed.
    for (n, (f, done)) in d.detail.files.iter().zip(&d.file_done).enumerate() {
        if wanted.as_ref().is_some_and(|w| !w.contains(&(n as u32))) {
            continue;
        }
        let range = d.metainfo.as_ref().and_then(|m| {
            let index = m.info.layout.file(f.index as usize)?;
            let pieces = m.info.layout.file_pieces(index);
            Some([pieces.start, pieces.end.saturating_sub(1).max(pieces.start)])
        });
        rows.push(json!({
            "index": n,
            "name": f.path,
            "size": f.length,
            "progress": if f.length == 0 { 1.0 } else { *done as f64 / f.length as f64 },
            "priority": priority_number(f.priority),
            "is_seed": f.length > 0 && *done >= f.length,
            "piece_range": range.unwrap_or([0, 0]),
            "availability": -1,
        }));
    }
    Json(rows).into_response()
}

/// `torrents/pieceStates`: per piece 2 (verified) or 0 (not yet).
pub(super) async fn piece_states(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    let d = match inside(&qbt, &params).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let states: Vec<u8> = (0..d.detail.piece_count as usize)
        .map(|i| {
            if d.have.as_ref().is_some_and(|h| h.get(i)) {
                2
            } else {
                0
            }
        })
        .collect();
    Json(states).into_response()
}

/// `torrents/pieceHashes`: each piece's SHA-1 in hex.
pub(super) async fn piece_hashes(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    let d = match inside(&qbt, &params).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let hashes: Vec<String> = d
        .metainfo
        .map(|m| {
            m.info
                .piece_hashes
                .iter()
                .map(|h| h.iter().map(|b| format!("{b:02x}")).collect())
                .collect()
        })
        .unwrap_or_default();
    Json(hashes).into_response()
}

/// `torrents/categories`: each category with its name and save path.
pub(super) async fn categories(State(qbt): State<Arc<Qbt>>) -> Response {
    Json(categories_map(&qbt).await).into_response()
}

/// The categories as `torrents/categories` and `sync/maindata` show them.
pub(super) async fn categories_map(qbt: &Qbt) -> Map<String, Value> {
    qbt.manager()
        .labels()
        .await
        .categories
        .into_iter()
        .map(|(name, c)| {
            let path = c
                .save_path
                .map(|p| p.as_path().display().to_string())
                .unwrap_or_default();
            (name.clone(), json!({ "name": name, "savePath": path }))
        })
        .collect()
}

/// `torrents/tags`.
pub(super) async fn tags(State(qbt): State<Arc<Qbt>>) -> Response {
    Json(qbt.manager().labels().await.tags).into_response()
}
