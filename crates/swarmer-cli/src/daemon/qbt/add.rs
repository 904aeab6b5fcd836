//! `torrents/add`: `.torrent` files (multipart parts with a file name) and `urls` (one per line: magnet
//! links, or http(s) URLs of .torrent files, fetched with a size bound and a timeout), with
//! `savepath`, `category`, `tags`, `paused`/`stopped`, `skip_checking`, `rename`, `upLimit`,
//! `dlLimit`, `sequentialDownload` and `firstLastPiecePrio`. It answers `Ok.` when something was added and `Fails.` when nothing was (a duplicate,
//! a URL that did not fetch), and 415 for a file that is not a torrent, as qBittorrent does. A
//! category or tag it names that does not exist is created, as qBittorrent creates it.
//!
//! Options swarmer cannot honour (a content layout other than the torrent's own, share limits, `useDownloadPath`) are refused with 400 rather than
//! dropped, so a client never believes they took effect.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use swarmer_proto::magnet::{Magnet, is_magnet_uri};
use swarmer_proto::metainfo::Metainfo;

use super::form::Params;
use super::shared::{Qbt, failed, text};
use crate::daemon::download_dir::DownloadDir;
use crate::daemon::fetch::{FETCH_TIMEOUT, fetch_torrent, is_http_url};
use crate::daemon::manager::{Add, ManagerError, Source};

/// Most URLs in one request.
const MAX_URLS: usize = 100;

/// The options every torrent of one request gets.
struct Options {
    download_dir: Option<DownloadDir>,
    paused: bool,
    trust_data: bool,
    sequential: bool,
    first_last_piece: bool,
    category: Option<String>,
    tags: Vec<String>,
    display_name: Option<String>,
    limits: (Option<u64>, Option<u64>),
}

/// Reads the options, refusing those swarmer cannot honour.
fn options(params: &Params) -> Result<Options, Response> {
    let refuse = |what: &str| {
        Err(text(
            StatusCode::BAD_REQUEST,
            format!("swarmer does not support {what}"),
        ))
    };
    // Share limits and a separate incomplete-download path would change what happens to the
    // torrent; "-2" (use the global setting) and "-1" (none) are what swarmer does anyway.
    for limit in ["ratioLimit", "seedingTimeLimit", "inactiveSeedingTimeLimit"] {
        if params
            .get(limit)
            .is_some_and(|v| !matches!(v.trim(), "" | "-2" | "-1"))
        {
            return refuse(limit);
        }
    }
    if params.flag("useDownloadPath") == Some(true) {
        return refuse("useDownloadPath");
    }
    if let Some(layout) = params.get("contentLayout") {
        if !layout.is_empty() && layout != "Original" {
            return refuse("contentLayout other than Original");
        }
    }
    let download_dir = DownloadDir::from_request(params.get("savepath").map(str::trim))
        .map_err(|_| text(StatusCode::BAD_REQUEST, "savepath must be an absolute path"))?;
    let limit = |name: &str| -> Result<Option<u64>, Response> {
        Ok(params.int(name)?.filter(|l| *l > 0).map(|l| l as u64))
    };
    Ok(Options {
        download_dir,
        paused: params.flag("paused").or(params.flag("stopped")) == Some(true),
        trust_data: params.flag("skip_checking") == Some(true),
        sequential: params.flag("sequentialDownload") == Some(true),
        first_last_piece: params.flag("firstLastPiecePrio") == Some(true),
        category: params
            .get("category")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        tags: params
            .get("tags")
            .unwrap_or("")
            .split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        display_name: params
            .get("rename")
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        limits: (limit("upLimit")?, limit("dlLimit")?),
    })
}

/// `torrents/add`.
pub(super) async fn add(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    let options = match options(&params) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let urls: Vec<&str> = params
        .get("urls")
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() && params.files.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "Missing parameter: urls or torrents",
        );
    }
    if urls.len() > MAX_URLS {
        return text(StatusCode::BAD_REQUEST, "too many URLs");
    }
    let mut sources = Vec::new();
    for (name, bytes) in &params.files {
        match Metainfo::from_bytes(bytes) {
            Ok(m) => sources.push(Source::Metainfo(Arc::new(m), bytes.clone())),
            Err(e) => {
                return text(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("Torrent file is not valid: {name}: {e}"),
                );
            }
        }
    }
    let mut fails = 0;
    // One request's fetches share one fetch's time budget, so 100 slow URLs cannot hold it for
    // an hour; what is left over fails.
    let deadline = tokio::time::Instant::now() + FETCH_TIMEOUT;
    for url in urls {
        let fetched = tokio::time::timeout_at(deadline, source_of(url))
            .await
            .unwrap_or_else(|_| Err("the request's time for fetching URLs is up".into()));
        match fetched {
            Ok(s) => sources.push(s),
            Err(e) => {
                tracing::warn!("qBittorrent API: cannot add {url}: {e}");
                fails += 1;
            }
        }
    }
    let mut added = 0;
    for source in sources {
        let add = Add {
            download_dir: options.download_dir.clone(),
            paused: options.paused,
            trust_data: options.trust_data,
            sequential: options.sequential,
            first_last_piece: options.first_last_piece,
            category: options.category.clone(),
            tags: options.tags.clone(),
            display_name: options.display_name.clone(),
            limits: options.limits,
            ..Add::new(source)
        };
        match qbt.manager().add(add).await {
            Ok(_) => added += 1,
            Err(ManagerError::Duplicate { .. }) => fails += 1,
            Err(e @ (ManagerError::Forbidden(_) | ManagerError::Conflict(_))) => {
                return failed(e);
            }
            Err(e) => {
                tracing::warn!("qBittorrent API: cannot add a torrent: {e}");
                fails += 1;
            }
        }
    }
    if added == 0 && fails > 0 {
        text(StatusCode::OK, "Fails.")
    } else {
        text(StatusCode::OK, "Ok.")
    }
}

/// A magnet link, or the .torrent an http(s) URL serves.
async fn source_of(url: &str) -> Result<Source, String> {
    if is_magnet_uri(url) {
        let magnet = Magnet::parse(url).map_err(|e| format!("invalid magnet link: {e}"))?;
        return Ok(Source::Magnet(Box::new(magnet), url.to_owned()));
    }
    if !is_http_url(url) {
        return Err("not a magnet link or an http(s) URL".into());
    }
    let bytes = fetch_torrent(url).await?;
    let m = Metainfo::from_bytes(&bytes).map_err(|e| format!("not a torrent: {e}"))?;
    Ok(Source::Metainfo(Arc::new(m), bytes))
}
