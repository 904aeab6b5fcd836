//! The qBittorrent API's application, transfer and log endpoints: `app/version`, `webapiVersion`,
//! `buildInfo`, `preferences`/`setPreferences`, `defaultSavePath`; `transfer/info`, the global
//! limits and `speedLimitsMode`; `log/main`.
//!
//! `setPreferences` applies what swarmer has (save path, global limits, queue sizes, the peer port
//! `listen_port`); any other
//! key is refused with 400 naming it unless its value is what `preferences` already reports, so a
//! client that writes back the preferences it read succeeds, and nothing is reported as applied
//! that was not.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::form::Params;
use super::shared::{Qbt, failed, ok, text};
use crate::daemon::manager::SettingsPatch;
use crate::daemon::store::Settings;

/// The qBittorrent version reported; clients pick endpoint names by it (5.x: `stop`/`start`).
pub(super) const APP_VERSION: &str = "v5.0.0";
/// The Web API version of qBittorrent 5.0.
pub(super) const WEBAPI_VERSION: &str = "2.11.2";

/// `app/version`.
pub(super) async fn version() -> Response {
    text(StatusCode::OK, APP_VERSION)
}

/// `app/webapiVersion`.
pub(super) async fn webapi_version() -> Response {
    text(StatusCode::OK, WEBAPI_VERSION)
}

/// `app/buildInfo`.
pub(super) async fn build_info() -> Response {
    Json(json!({
        "qt": "",
        "libtorrent": format!("swarmer {}", env!("CARGO_PKG_VERSION")),
        "boost": "",
        "openssl": "",
        "zlib": "",
        "bitness": usize::BITS,
        "platform": std::env::consts::OS,
    }))
    .into_response()
}

/// A limit as qBittorrent's preferences hold it: bytes/s, 0 for none.
fn pref_limit(rate: Option<u64>) -> u64 {
    rate.unwrap_or(0)
}

/// A queue size as qBittorrent holds it: -1 for none.
fn pref_count(n: Option<u32>) -> i64 {
    n.map_or(-1, i64::from)
}

/// The preferences swarmer has, with qBittorrent's names.
async fn preferences_of(qbt: &Qbt) -> Option<(Settings, Map<String, Value>)> {
    let s = qbt.manager().settings().await?;
    let stats = qbt.manager().stats().await?;
    let prefs = json!({
        "save_path": s.download_dir.as_path().display().to_string(),
        "temp_path_enabled": false,
        "dl_limit": pref_limit(s.max_download_rate),
        "up_limit": pref_limit(s.max_upload_rate),
        "alt_dl_limit": 0,
        "alt_up_limit": 0,
        "scheduler_enabled": false,
        "queueing_enabled": s.max_active_downloads.is_some() || s.max_active_seeds.is_some(),
        "max_active_downloads": pref_count(s.max_active_downloads),
        "max_active_uploads": pref_count(s.max_active_seeds),
        "max_active_torrents": -1,
        "listen_port": stats.listen_port,
        "max_ratio_enabled": false,
        "max_ratio": -1,
        "max_seeding_time_enabled": false,
        "max_seeding_time": -1,
        "max_ratio_act": 0,
        "web_ui_username": qbt.credentials.as_ref().map(|c| c.0.clone()).unwrap_or_default(),
        "auto_tmm_enabled": false,
        "create_subfolder_enabled": true,
        "torrent_content_layout": "Original",
        "start_paused_enabled": false,
        "add_stopped_enabled": false,
        "preallocate_all": false,
        "incomplete_files_ext": false,
        "dont_count_slow_torrents": false,
    });
    let Value::Object(map) = prefs else {
        return None;
    };
    Some((s, map))
}

/// `app/preferences`.
pub(super) async fn preferences(State(qbt): State<Arc<Qbt>>) -> Response {
    match preferences_of(&qbt).await {
        Some((_, map)) => Json(map).into_response(),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        ),
    }
}

/// `app/setPreferences` (`json`: an object of preferences).
pub(super) async fn set_preferences(State(qbt): State<Arc<Qbt>>, params: Params) -> Response {
    let json = match params.require("json") {
        Ok(j) => j,
        Err(r) => return r,
    };
    let Ok(Value::Object(wanted)) = serde_json::from_str::<Value>(json) else {
        return text(StatusCode::BAD_REQUEST, "json is not a JSON object");
    };
    let Some((_, current)) = preferences_of(&qbt).await else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        );
    };
    let mut patch = SettingsPatch::default();
    let mut port = None;
    let mut refused = Vec::new();
    let limit = |v: &Value| v.as_i64().map(|l| (l > 0).then_some(l as u64));
    let count = |v: &Value| v.as_i64().map(|n| u32::try_from(n).ok());
    for (key, value) in &wanted {
        let applied = match key.as_str() {
            "save_path" => value.as_str().map(|p| patch.download_dir = Some(p.into())),
            "dl_limit" => limit(value).map(|l| patch.max_download_rate = Some(l)),
            "up_limit" => limit(value).map(|l| patch.max_upload_rate = Some(l)),
            "max_active_downloads" => count(value).map(|n| patch.max_active_downloads = Some(n)),
            "max_active_uploads" => count(value).map(|n| patch.max_active_seeds = Some(n)),
            "listen_port" => value
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .map(|p| port = Some(p)),
            _ if current.get(key) == Some(value) => Some(()),
            _ => None,
        };
        if applied.is_none() {
            refused.push(key.clone());
        }
    }
    if !refused.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "swarmer cannot apply these preferences: {}",
                refused.join(", ")
            ),
        );
    }
    if let Err(e) = qbt.manager().set_settings(patch).await {
        return failed(e);
    }
    if let Some(port) = port {
        if let Err(e) = qbt.manager().set_peer_port(port).await {
            return failed(e);
        }
    }
    ok()
}

/// `app/defaultSavePath`.
pub(super) async fn default_save_path(State(qbt): State<Arc<Qbt>>) -> Response {
    match qbt.manager().settings().await {
        Some(s) => text(
            StatusCode::OK,
            s.download_dir.as_path().display().to_string(),
        ),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        ),
    }
}

/// `transfer/info` and the `server_state` of `sync/maindata`.
pub(super) async fn transfer_map(qbt: &Qbt) -> Map<String, Value> {
    let stats = qbt.manager().stats().await;
    let settings = qbt.manager().settings().await;
    let (down, up, down_data, up_data) = stats.as_ref().map_or((0, 0, 0, 0), |s| {
        (
            s.download_rate,
            s.upload_rate,
            s.downloaded_bytes,
            s.uploaded_bytes,
        )
    });
    let (down_limit, up_limit) = settings.as_ref().map_or((0, 0), |s| {
        (
            pref_limit(s.max_download_rate),
            pref_limit(s.max_upload_rate),
        )
    });
    let value = json!({
        "dl_info_speed": down,
        "dl_info_data": down_data,
        "up_info_speed": up,
        "up_info_data": up_data,
        "dl_rate_limit": down_limit,
        "up_rate_limit": up_limit,
        "dht_nodes": 0,
        "connection_status": "connected",
        "use_alt_speed_limits": false,
        "queueing": settings.as_ref().is_some_and(|s| s.max_active_downloads.is_some()),
        "refresh_interval": 1500,
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `transfer/info`.
pub(super) async fn transfer_info(State(qbt): State<Arc<Qbt>>) -> Response {
    Json(transfer_map(&qbt).await).into_response()
}

/// `transfer/speedLimitsMode`: swarmer has no alternative limits, so always 0.
pub(super) async fn speed_limits_mode() -> Response {
    text(StatusCode::OK, "0")
}

/// `transfer/toggleSpeedLimitsMode` and `setSpeedLimitsMode`: refused, there are no alternative
/// limits to switch to.
pub(super) async fn toggle_speed_limits_mode() -> Response {
    text(
        StatusCode::CONFLICT,
        "swarmer has no alternative speed limits; set the limits themselves",
    )
}

/// `transfer/downloadLimit` and `uploadLimit`: the global limit, bytes/s (0: none).
pub(super) async fn global_limit(qbt: Arc<Qbt>, upload: bool) -> Response {
    match qbt.manager().settings().await {
        Some(s) => {
            let l = if upload {
                s.max_upload_rate
            } else {
                s.max_download_rate
            };
            text(StatusCode::OK, pref_limit(l).to_string())
        }
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        ),
    }
}

/// `transfer/setDownloadLimit` and `setUploadLimit` (`limit`, bytes/s; 0: none).
pub(super) async fn set_global_limit(qbt: Arc<Qbt>, params: Params, upload: bool) -> Response {
    let limit = match params.int("limit") {
        Ok(Some(l)) => (l > 0).then_some(l as u64),
        Ok(None) => return text(StatusCode::BAD_REQUEST, "Missing parameter: limit"),
        Err(r) => return r,
    };
    let patch = if upload {
        SettingsPatch {
            max_upload_rate: Some(limit),
            ..SettingsPatch::default()
        }
    } else {
        SettingsPatch {
            max_download_rate: Some(limit),
            ..SettingsPatch::default()
        }
    };
    match qbt.manager().set_settings(patch).await {
        Ok(_) => ok(),
        Err(e) => failed(e),
    }
}

/// qBittorrent's log message type of a log line: 1 normal (info), 2 info (debug, trace),
/// 4 warning, 8 critical (error).
fn log_type(text: &str) -> u8 {
    let level = text.split_whitespace().nth(1).unwrap_or("");
    match level {
        "ERROR" => 8,
        "WARN" => 4,
        "DEBUG" | "TRACE" => 2,
        _ => 1,
    }
}

/// `log/main` (`normal`, `info`, `warning`, `critical`, `last_known_id`): the daemon's recent log
/// lines (the last 1,000 it wrote to standard error), filtered by type.
pub(super) async fn log_main(params: Params) -> Response {
    let wanted = |name: &str| params.flag(name).unwrap_or(true);
    let mask = [("normal", 1), ("info", 2), ("warning", 4), ("critical", 8)]
        .iter()
        .filter(|(name, _)| wanted(name))
        .fold(0u8, |m, (_, bit)| m | bit);
    let after = match params.int("last_known_id") {
        Ok(id) => id.and_then(|id| u64::try_from(id).ok()),
        Err(r) => return r,
    };
    let lines: Vec<Value> = crate::logging::recent(after)
        .into_iter()
        .filter(|l| log_type(&l.text) & mask != 0)
        .map(|l| {
            json!({
                "id": l.id,
                "message": l.text,
                "timestamp": l.unix_time,
                "type": log_type(&l.text),
            })
        })
        .collect();
    Json(lines).into_response()
}
