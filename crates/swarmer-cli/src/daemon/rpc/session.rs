//! `session-get`, `session-set`, `session-stats` and `free-space`: the daemon's settings and totals
//! in Transmission's names and units.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::args::{SPEED_K, arg_bool, arg_u64, kilo, updated_limit};
use super::envelope::{Outcome, fail, manager_error, object};
use super::handshake::process;
use crate::daemon::download_dir::{DownloadDir, Roots};
use crate::daemon::manager::{Manager, ManagerError, SettingsPatch};
use crate::encryption::EncryptionMode;

/// The RPC version we speak: Transmission 3.00's.
const RPC_VERSION: u64 = 16;
/// The oldest RPC version our answers still fit (Transmission 3.00 says 1).
const RPC_VERSION_MINIMUM: u64 = 1;

/// `session-get`: the settings (only `fields` when given).
pub(super) async fn session_get(manager: &Manager, args: &Map<String, Value>) -> Outcome {
    let Some(settings) = manager.settings().await else {
        return Err(manager_error(ManagerError::ShuttingDown));
    };
    let Some(stats) = manager.stats().await else {
        return Err(manager_error(ManagerError::ShuttingDown));
    };
    let dir = settings.download_dir.as_path().display().to_string();
    let free = free_bytes(settings.download_dir.into()).await.ok();
    let mut out = object(json!({
        "version": format!("3.00 (swarmer {})", stats.version),
        "rpc-version": RPC_VERSION,
        "rpc-version-minimum": RPC_VERSION_MINIMUM,
        "session-id": process().session_id,
        "download-dir": dir,
        "peer-port": stats.listen_port,
        "utp-enabled": stats.transport != "tcp",
        "speed-limit-down": kilo(settings.max_download_rate),
        "speed-limit-down-enabled": settings.max_download_rate.is_some(),
        "speed-limit-up": kilo(settings.max_upload_rate),
        "speed-limit-up-enabled": settings.max_upload_rate.is_some(),
        "download-queue-size": settings.max_active_downloads.unwrap_or(0),
        "download-queue-enabled": settings.max_active_downloads.is_some(),
        "seed-queue-size": settings.max_active_seeds.unwrap_or(0),
        "seed-queue-enabled": settings.max_active_seeds.is_some(),
        // No alternative ("turtle") speeds, no ratio or idle seeding limit: off, as swarmer runs.
        "alt-speed-enabled": false,
        "alt-speed-down": 0,
        "alt-speed-up": 0,
        "alt-speed-time-enabled": false,
        "alt-speed-time-begin": 0,
        "alt-speed-time-end": 0,
        "alt-speed-time-day": 0,
        "seedRatioLimit": 0.0,
        "seedRatioLimited": false,
        "idle-seeding-limit": 0,
        "idle-seeding-limit-enabled": false,
        // swarmer has no global peer cap; 0 says "none" where Transmission needs a number.
        "peer-limit-global": 0,
        "start-added-torrents": true,
        "trash-original-torrent-files": false,
        "incomplete-dir-enabled": false,
        "port-forwarding-enabled": false,
        "blocklist-enabled": false,
        "encryption": settings.encryption.transmission_name(),
        "units": {
            "speed-units": ["kB/s", "MB/s", "GB/s", "TB/s"],
            "speed-bytes": SPEED_K,
            "size-units": ["kB", "MB", "GB", "TB"],
            "size-bytes": 1000,
            "memory-units": ["KiB", "MiB", "GiB", "TiB"],
            "memory-bytes": 1024,
        },
    }));
    if let Some(free) = free {
        out.insert("download-dir-free-space".into(), json!(free));
    }
    if let Some(fields) = args.get("fields").and_then(Value::as_array) {
        let wanted: HashSet<&str> = fields.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| wanted.contains(k.as_str()));
    }
    Ok(out)
}

/// The `session-set` fields swarmer applies.
const APPLIED: &[&str] = &[
    "speed-limit-down",
    "speed-limit-down-enabled",
    "speed-limit-up",
    "speed-limit-up-enabled",
    "download-queue-size",
    "download-queue-enabled",
    "seed-queue-size",
    "seed-queue-enabled",
    "download-dir",
    "peer-port",
    "encryption",
];

/// Whether two JSON values say the same (numbers by value, so `5` and `5.0` agree).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// `session-set`: changes limits, queue sizes, the download directory, the encryption policy and
/// the peer port (every
/// torrent stops and starts again on the new one; the next free port if it is taken, as
/// `session-get` then shows). Any other field is
/// refused (nothing is applied) unless it asks for what `session-get` already reports, so a
/// setting is never answered `success` while it was ignored.
pub(super) async fn session_set(manager: &Manager, args: &Map<String, Value>) -> Outcome {
    let bad = |e: String| (e, Map::new());
    let reported = session_get(manager, &Map::new()).await?;
    let refused: Vec<&str> = args
        .iter()
        .filter(|(k, v)| {
            !APPLIED.contains(&k.as_str()) && !reported.get(*k).is_some_and(|r| same_value(r, v))
        })
        .map(|(k, _)| k.as_str())
        .collect();
    if !refused.is_empty() {
        return Err(bad(format!(
            "swarmer cannot apply {}; nothing was changed",
            refused.join(", ")
        )));
    }
    let Some(current) = manager.settings().await else {
        return Err(manager_error(ManagerError::ShuttingDown));
    };
    let mut patch = SettingsPatch::default();
    let rate = |value: &str, enabled: &str, current: Option<u64>| -> Result<_, String> {
        let (v, on) = (arg_u64(args, value)?, arg_bool(args, enabled)?);
        Ok((v.is_some() || on.is_some()).then(|| updated_limit(current, v, on, SPEED_K)))
    };
    patch.max_download_rate = rate(
        "speed-limit-down",
        "speed-limit-down-enabled",
        current.max_download_rate,
    )
    .map_err(bad)?;
    patch.max_upload_rate = rate(
        "speed-limit-up",
        "speed-limit-up-enabled",
        current.max_upload_rate,
    )
    .map_err(bad)?;
    let queue = |value: &str, enabled: &str, current: Option<u32>| -> Result<_, String> {
        let (v, on) = (arg_u64(args, value)?, arg_bool(args, enabled)?);
        let v = v.map(|v| u32::try_from(v).unwrap_or(u32::MAX));
        Ok((v.is_some() || on.is_some()).then(|| {
            updated_limit(current.map(u64::from), v.map(u64::from), on, 1)
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
        }))
    };
    patch.max_active_downloads = queue(
        "download-queue-size",
        "download-queue-enabled",
        current.max_active_downloads,
    )
    .map_err(bad)?;
    patch.max_active_seeds = queue(
        "seed-queue-size",
        "seed-queue-enabled",
        current.max_active_seeds,
    )
    .map_err(bad)?;
    if let Some(dir) = args.get("download-dir").and_then(Value::as_str) {
        patch.download_dir = Some(dir.into());
    }
    if let Some(value) = args.get("encryption") {
        let mode = value.as_str().and_then(EncryptionMode::from_transmission);
        let Some(mode) = mode else {
            return Err(bad(
                "encryption must be required, preferred or tolerated".into()
            ));
        };
        patch.encryption = Some(mode);
    }
    let port = arg_u64(args, "peer-port").map_err(bad)?;
    let port = match port.map(u16::try_from) {
        Some(Ok(port)) => Some(port),
        Some(Err(_)) => return Err(bad("peer-port must be a port number".into())),
        None => None,
    };
    manager.set_settings(patch).await.map_err(manager_error)?;
    if let Some(port) = port {
        manager.set_peer_port(port).await.map_err(manager_error)?;
    }
    Ok(Map::new())
}

/// `session-stats`: rates and totals.
pub(super) async fn session_stats(manager: &Manager) -> Outcome {
    let Some(stats) = manager.stats().await else {
        return Err(manager_error(ManagerError::ShuttingDown));
    };
    let seconds = process().started.elapsed().as_secs();
    // The daemon counts bytes per torrent present, not per run: both blocks show those totals.
    let totals = json!({
        "uploadedBytes": stats.uploaded_bytes,
        "downloadedBytes": stats.downloaded_bytes,
        "filesAdded": 0,
        "sessionCount": 1,
        "secondsActive": seconds,
    });
    Ok(object(json!({
        "activeTorrentCount": stats.active,
        "pausedTorrentCount": stats.paused,
        "torrentCount": stats.torrents,
        "downloadSpeed": stats.download_rate,
        "uploadSpeed": stats.upload_rate,
        "cumulative-stats": totals,
        "current-stats": totals,
    })))
}

/// Bytes available to an unprivileged user on the file system holding `path`.
async fn free_bytes(path: std::path::PathBuf) -> Result<u64, String> {
    tokio::task::spawn_blocking(move || {
        swarmer::free_bytes(&path).map_err(|e| format!("{}: {e}", path.display()))
    })
    .await
    .unwrap_or_else(|_| Err("the free-space check panicked".into()))
}

/// `free-space`: bytes available under `path`, a directory inside the download roots (so the
/// RPC cannot probe what exists elsewhere).
pub(super) async fn free_space(roots: &Roots, args: &Map<String, Value>) -> Outcome {
    let Some(path) = args.get("path").and_then(Value::as_str) else {
        return fail("free-space needs a path");
    };
    let Ok(dir) = DownloadDir::new(path) else {
        return fail("the path must be absolute");
    };
    let check = {
        let (roots, dir) = (roots.clone(), dir.clone());
        tokio::task::spawn_blocking(move || roots.confine(&dir))
    };
    match check.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return fail(e.to_string()),
        Err(_) => return fail("the free-space check panicked"),
    }
    let free = free_bytes(path.into()).await.map_err(|e| (e, Map::new()))?;
    Ok(object(json!({ "path": path, "size-bytes": free })))
}
