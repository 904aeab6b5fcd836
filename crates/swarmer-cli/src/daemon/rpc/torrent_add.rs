//! `torrent-add`: a .torrent as base64 `metainfo`, a local path or an http(s) URL (fetched within
//! a size bound and a timeout), or a magnet link, added
//! through the manager; a duplicate answers `torrent-duplicate`, as Transmission 3.00 does.
//!
//! A local path is read only when it resolves (symlinks followed) to a file in the watch folder;
//! any other path, a missing file, an unreadable one and one that is not a torrent all get the same
//! answer, so the RPC tells nothing about files elsewhere.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use serde_json::{Map, Value, json};
use swarmer_proto::magnet::Magnet;
use swarmer_proto::metainfo::{MAX_METAINFO_BYTES, Metainfo};

use super::args::arg_bool;
use super::envelope::{Outcome, fail, manager_error, object};
use crate::daemon::download_dir::DownloadDir;
use crate::daemon::fetch::{fetch_torrent, is_http_url};
use crate::daemon::manager::{Add, Manager, ManagerError, Source};
use crate::metainfo_file::read_torrent_file;

/// Decodes `metainfo` (base64, line breaks allowed) into at most [`MAX_METAINFO_BYTES`] bytes.
pub(super) fn decode_metainfo(b64: &str) -> Result<Vec<u8>, String> {
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.len() / 4 * 3 > MAX_METAINFO_BYTES {
        return Err("metainfo is larger than a .torrent may be".into());
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(compact.as_bytes())
        .map_err(|e| format!("metainfo is not base64: {e}"))
}

/// What `torrent-add` names: a .torrent (`metainfo`, or `filename` as a local path) or a magnet
/// link (`filename`).
async fn add_source(watch_dir: Option<&Path>, args: &Map<String, Value>) -> Result<Source, String> {
    let parse = |bytes: Vec<u8>| {
        Metainfo::from_bytes(&bytes)
            .map(|m| Source::Metainfo(Arc::new(m), bytes))
            .map_err(|e| format!("invalid or corrupt torrent file: {e}"))
    };
    if let Some(b64) = args.get("metainfo").and_then(Value::as_str) {
        return parse(decode_metainfo(b64)?);
    }
    let Some(name) = args.get("filename").and_then(Value::as_str).map(str::trim) else {
        return Err("no filename or metainfo specified".into());
    };
    if swarmer_proto::magnet::is_magnet_uri(name) {
        let magnet = Magnet::parse(name).map_err(|e| format!("invalid magnet link: {e}"))?;
        return Ok(Source::Magnet(Box::new(magnet), name.to_string()));
    }
    if is_http_url(name) {
        return parse(fetch_torrent(name).await?);
    }
    let refused = || {
        format!(
            "filename must be a magnet link, an http(s) URL or a .torrent file in the daemon's watch \
             folder{}",
            if watch_dir.is_some() {
                ""
            } else {
                " (none is configured)"
            }
        )
    };
    let Some(watch_dir) = watch_dir.map(Path::to_path_buf) else {
        return Err(refused());
    };
    let path = PathBuf::from(name);
    let bytes = tokio::task::spawn_blocking(move || {
        let resolved = std::fs::canonicalize(watch_dir.join(path)).ok()?;
        if !resolved.starts_with(&watch_dir) || !resolved.is_file() {
            return None;
        }
        let bytes = read_torrent_file(&resolved).ok()?;
        Metainfo::from_bytes(&bytes).ok()?;
        Some(bytes)
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(refused)?;
    parse(bytes)
}

/// `torrent-add`: adds the torrent, or names the one already added.
pub(super) async fn torrent_add(
    manager: &Manager,
    watch_dir: Option<&Path>,
    args: &Map<String, Value>,
) -> Outcome {
    let source = add_source(watch_dir, args)
        .await
        .map_err(|e| (e, Map::new()))?;
    let download_dir =
        match DownloadDir::from_request(args.get("download-dir").and_then(Value::as_str)) {
            Ok(dir) => dir,
            Err(e) => return fail(format!("download-dir {e}")),
        };
    let paused = arg_bool(args, "paused")
        .map_err(|e| (e, Map::new()))?
        .unwrap_or(false);
    let add = Add {
        download_dir,
        paused,
        ..Add::new(source)
    };
    let summary =
        |id: u64, name: &str, hash: &str| json!({ "id": id, "name": name, "hashString": hash });
    match manager.add(add).await {
        Ok(t) => Ok(object(
            json!({ "torrent-added": summary(t.id, &t.name, &t.info_hash) }),
        )),
        Err(ManagerError::Duplicate { id, hash }) => {
            let name = match manager.get(id).await {
                Ok(d) => d.torrent.name,
                Err(_) => hash.to_hex(),
            };
            Ok(object(
                json!({ "torrent-duplicate": summary(id, &name, &hash.to_hex()) }),
            ))
        }
        Err(e) => Err(manager_error(e)),
    }
}
