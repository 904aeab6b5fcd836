//! The qBittorrent Web API v2 (`/api/v2/`), as qBittorrent 5.0 serves it (webapiVersion
//! `2.11.2`), for Sonarr, Radarr, Lidarr, Prowlarr, autobrr, cross-seed and other tools that speak
//! it. A mapping over the manager, like the Transmission RPC: the same torrents, with categories
//! and tags the RPC shows as labels.
//!
//! Here: the routes. Below: `auth` (login, SID, cross-site checks), `app` (application, transfer
//! and log endpoints), `torrents` (read endpoints), `actions` (changes), `add`, `sync`
//! (`sync/maindata`), `view` (qBittorrent's fields and state names), `form` (parameters) and
//! `shared` (what they all use). Unknown endpoints answer 404, as in qBittorrent.

// Helpers here return the finished error `Response` so a handler can hand it straight back;
// it is built once per failed request, so boxing it would buy nothing.
#![allow(clippy::result_large_err)]

mod actions;
mod add;
mod app;
mod auth;
mod form;
mod shared;
mod sync;
mod torrents;
mod view;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{MethodRouter, any};
use axum::{Router, middleware};

pub(crate) use shared::{Qbt, QbtConfig};

use form::Params;
use shared::text;

/// A route that takes GET and POST alike (qBittorrent 4.x accepted both; clients use either).
fn both<H, T>(handler: H) -> MethodRouter<Arc<Qbt>>
where
    H: axum::handler::Handler<T, Arc<Qbt>>,
    T: 'static,
{
    any(handler)
}

/// The `/api/v2/` routes over `qbt`, behind its login check.
pub(crate) fn router(qbt: Arc<Qbt>) -> Router {
    Router::new()
        .route("/api/v2/auth/login", both(auth::login))
        .route("/api/v2/auth/logout", both(auth::logout))
        .route("/api/v2/app/version", both(app::version))
        .route("/api/v2/app/webapiVersion", both(app::webapi_version))
        .route("/api/v2/app/buildInfo", both(app::build_info))
        .route("/api/v2/app/preferences", both(app::preferences))
        .route("/api/v2/app/setPreferences", both(app::set_preferences))
        .route("/api/v2/app/defaultSavePath", both(app::default_save_path))
        .route("/api/v2/transfer/info", both(app::transfer_info))
        .route(
            "/api/v2/transfer/speedLimitsMode",
            both(app::speed_limits_mode),
        )
        .route(
            "/api/v2/transfer/toggleSpeedLimitsMode",
            both(app::toggle_speed_limits_mode),
        )
        .route(
            "/api/v2/transfer/setSpeedLimitsMode",
            both(app::toggle_speed_limits_mode),
        )
        .route("/api/v2/transfer/{endpoint}", both(transfer_limits))
        .route("/api/v2/log/main", both(app::log_main))
        .route("/api/v2/sync/maindata", both(sync::maindata))
        .route("/api/v2/sync/torrentPeers", both(sync::torrent_peers))
        .route("/api/v2/torrents/info", both(torrents::torrents_info))
        .route("/api/v2/torrents/properties", both(torrents::properties))
        .route("/api/v2/torrents/trackers", both(torrents::trackers))
        .route("/api/v2/torrents/webseeds", both(torrents::webseeds))
        .route("/api/v2/torrents/files", both(torrents::files))
        .route("/api/v2/torrents/pieceStates", both(torrents::piece_states))
        .route("/api/v2/torrents/pieceHashes", both(torrents::piece_hashes))
        .route("/api/v2/torrents/categories", both(torrents::categories))
        .route("/api/v2/torrents/tags", both(torrents::tags))
        .route("/api/v2/torrents/add", both(add::add))
        .route("/api/v2/torrents/stop", both(actions::stop))
        .route("/api/v2/torrents/pause", both(actions::stop))
        .route("/api/v2/torrents/start", both(actions::start))
        .route("/api/v2/torrents/resume", both(actions::start))
        .route("/api/v2/torrents/delete", both(actions::delete))
        .route("/api/v2/torrents/recheck", both(actions::recheck))
        .route("/api/v2/torrents/reannounce", both(actions::reannounce))
        .route("/api/v2/torrents/setLocation", both(actions::set_location))
        .route("/api/v2/torrents/rename", both(actions::rename))
        .route("/api/v2/torrents/renameFile", both(actions::rename_file))
        .route("/api/v2/torrents/renameFolder", both(actions::rename_file))
        .route("/api/v2/torrents/filePrio", both(actions::file_prio))
        .route("/api/v2/torrents/{endpoint}", both(torrent_misc))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "Not Found") })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&qbt),
            auth::check,
        ))
        .with_state(qbt)
}

/// `transfer/downloadLimit`, `uploadLimit`, `setDownloadLimit`, `setUploadLimit`.
async fn transfer_limits(
    State(qbt): State<Arc<Qbt>>,
    Path(endpoint): Path<String>,
    params: Params,
) -> Response {
    match endpoint.as_str() {
        "downloadLimit" => app::global_limit(qbt, false).await,
        "uploadLimit" => app::global_limit(qbt, true).await,
        "setDownloadLimit" => app::set_global_limit(qbt, params, false).await,
        "setUploadLimit" => app::set_global_limit(qbt, params, true).await,
        _ => text(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// The per-torrent limits and the category and tag endpoints, by name.
async fn torrent_misc(
    State(qbt): State<Arc<Qbt>>,
    Path(endpoint): Path<String>,
    params: Params,
) -> Response {
    match endpoint.as_str() {
        "downloadLimit" => actions::limits(qbt, params, false).await,
        "uploadLimit" => actions::limits(qbt, params, true).await,
        "setDownloadLimit" => actions::set_limit(qbt, params, false).await,
        "toggleSequentialDownload" => actions::toggle_order(qbt, params, false).await,
        "toggleFirstLastPiecePrio" => actions::toggle_order(qbt, params, true).await,
        "setUploadLimit" => actions::set_limit(qbt, params, true).await,
        "createCategory" | "editCategory" | "removeCategories" | "createTags" | "deleteTags"
        | "setCategory" | "addTags" | "removeTags" => actions::labels(qbt, params, &endpoint).await,
        _ => text(StatusCode::NOT_FOUND, "Not Found"),
    }
}
