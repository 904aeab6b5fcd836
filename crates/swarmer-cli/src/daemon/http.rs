//! The daemon's HTTP application: the JSON API (`api`), the Transmission RPC (`rpc`), the
//! qBittorrent API (`qbt`) and the web UI (`ui`) in one router, with the guard in front of all of them, the request body limits, and
//! the JSON 404 for any other path.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::{Router, middleware};

use super::api::{self, MAX_UPLOAD_BYTES};
use super::error::error_response;
use super::guard;
use super::qbt::{self, Qbt, QbtConfig};
use super::rpc;
use super::state::AppState;
use super::ui;

/// Largest request body read at all: an upload and its multipart framing.
const MAX_BODY_BYTES: usize = MAX_UPLOAD_BYTES + 64 * 1024;

/// Every route of the daemon, behind the guard and the body limits; `qbt` configures the
/// qBittorrent API.
pub(crate) fn router(state: AppState, qbt: QbtConfig) -> Router {
    let guard = Arc::clone(&state.guard);
    let qbt = qbt::router(Arc::new(Qbt::new(state.clone(), qbt)));
    api::routes()
        .merge(rpc::router())
        .with_state(state)
        .merge(qbt)
        // The web UI's files, behind the same guard (Host check; no token needed).
        .merge(ui::router())
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(refuse_oversized))
        .layer(middleware::from_fn_with_state(guard, guard::check))
}

/// Answers 413 at once when the declared `Content-Length` is over [`MAX_BODY_BYTES`], before any
/// of the body is read. Without it the handler reads 10 MiB before refusing, and a client that is
/// still sending (reqwest, so `swarmer add`) sees the connection reset instead of the answer.
async fn refuse_oversized(request: axum::extract::Request, next: middleware::Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        let mut response = error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        );
        // The unread body makes the connection unusable for another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    next.run(request).await
}
