//! The Transmission RPC (`POST /transmission/rpc`, rpc-version 16 as Transmission 3.00 speaks it)
//! over the daemon's [`Manager`], so `transmission-remote` and other Transmission front ends drive
//! swarmer. This module owns the session-id handshake, the request envelope and the mapping of
//! Transmission's methods and fields to the manager's requests and views; it has no state besides
//! the session id and the start time.
//!
//! Gotchas, checked against Debian's transmission-daemon and transmission-remote 3.00:
//! - transmission-remote posts to `/transmission/rpc/` (trailing slash): both paths are routed.
//! - Every request without the current `X-Transmission-Session-Id` (GET included) gets 409 with the
//!   header; authentication (the guard) comes first, so `--auth user:TOKEN` answers the 401.
//! - transmission-remote reads most numbers with `tr_variantDictFindInt`, which refuses a JSON
//!   float: counts, sizes, rates, dates and KB/s limits are sent as integers; ratios and
//!   fractions (`percentDone`, `uploadRatio`) as floats.
//! - Speeds and limits are in kB/s of 1000 bytes (`units.speed-bytes`), the daemon's are bytes/s.
//! - `-si` prints its LIMITS block only when every `alt-speed-*`, `peer-limit-global` and
//!   `seedRatioLimit(ed)` field is present, so they are sent with the values swarmer behaves by.
//! - A duplicate `torrent-add` answers `success` with `torrent-duplicate`, as 3.00 does.
//! - Transmission keeps a limit's value and its on/off switch apart; the daemon keeps one
//!   `Option`, so a value sent without `...Limited: true` applies only to a limit already on.
//! - `webseeds` lists the torrent's web seed URLs (BEP 19, then BEP 17) and `webseedsSendingToUs`
//!   counts those that sent data in the last second.
//! - What the daemon does not track is answered honestly with "none": `peers` and the
//!   `removed` list of `recently-active` are empty, dates other than `addedDate` are 0, and
//!   `bytesCompleted` of a file in an unfinished torrent is an estimate (its share of the
//!   torrent's progress). `peersSendingToUs`/`peersGettingFromUs` count every connected peer while
//!   data flows that way. `torrent-verify`, `torrent-reannounce`, `queue-move-*`, moving and
//!   renaming answer "... is not supported by swarmer".
//! - Files are numbered as Transmission lists them: padding files (BEP 47) are left out, so
//!   `files-wanted` indices are mapped back to `info.files` indices.
//!
//! Here: the routes, the envelope and the dispatch to one module per group of methods
//! (`torrent_get`, `torrent_actions`, `torrent_add`, `session`); below them `args` (lenient
//! arguments and `ids`), `envelope` (a method's answer) and `handshake` (the session id).

mod args;
mod envelope;
mod handshake;
mod session;
mod torrent_actions;
mod torrent_add;
mod torrent_get;

#[cfg(test)]
mod tests;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::json::big_json;
use super::state::AppState;
use envelope::{Outcome, fail, object};
use handshake::{SESSION_HEADER, handshake, process};

/// The RPC's routes, merged into the API router (behind the same guard and body limit).
pub(crate) fn router() -> Router<AppState> {
    process();
    Router::new()
        .route("/transmission/rpc", post(handle).get(get_rpc))
        .route("/transmission/rpc/", post(handle).get(get_rpc))
}

/// GET: the handshake, as Transmission answers it; with the session id, 405 (only POST is served).
async fn get_rpc(headers: HeaderMap) -> Response {
    if let Some(conflict) = handshake(&headers) {
        return conflict;
    }
    let mut response = (
        StatusCode::METHOD_NOT_ALLOWED,
        "the Transmission RPC takes POST requests\n",
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// POST: one RPC call. Method errors are HTTP 200 with the error in `result`, as in Transmission;
/// a body that is not JSON is 400.
async fn handle(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(conflict) = handshake(&headers) {
        return conflict;
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "result": format!("invalid JSON: {e}"), "arguments": {} })),
            )
                .into_response();
        }
    };
    let reply = call(&s, &request).await;
    let mut response = big_json(&reply, 0);
    if let Ok(v) = HeaderValue::from_str(&process().session_id) {
        response.headers_mut().insert(SESSION_HEADER, v);
    }
    response
}

/// A reply envelope: `{"result", "arguments", "tag"}`.
#[derive(Serialize)]
struct Reply {
    /// "success", or the error text.
    result: String,
    /// The method's answer.
    arguments: Arguments,
    /// The request's `tag`, if it was a number.
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<Value>,
}

/// A method's `arguments`: an object, or `torrent-get`'s rows, serialized as they are written
/// out.
#[derive(Serialize)]
#[serde(untagged)]
enum Arguments {
    /// Any method's object.
    Object(Map<String, Value>),
    /// `torrent-get`'s.
    Torrents(torrent_get::TorrentRows),
}

/// Runs one request envelope `{"method", "arguments", "tag"}` and builds the reply envelope.
async fn call(s: &AppState, request: &Value) -> Reply {
    let empty = Map::new();
    let args = request
        .get("arguments")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let outcome = match request.get("method").and_then(Value::as_str) {
        None => fail("no method name").map(Arguments::Object),
        Some("torrent-get") => torrent_get::torrent_get(&s.manager, args)
            .await
            .map(Arguments::Torrents),
        Some(method) => dispatch(s, method, args).await.map(Arguments::Object),
    };
    let (result, arguments) = match outcome {
        Ok(arguments) => ("success".to_string(), arguments),
        Err((message, arguments)) => (message, Arguments::Object(arguments)),
    };
    Reply {
        result,
        arguments,
        tag: request.get("tag").filter(|t| t.is_number()).cloned(),
    }
}

/// Runs one method other than `torrent-get` (which `call` runs: its answer is not an object).
async fn dispatch(s: &AppState, method: &str, args: &Map<String, Value>) -> Outcome {
    let manager = &s.manager;
    let watch_dir = s.watch_dir.as_deref();
    match method {
        "session-get" => session::session_get(manager, args).await,
        "session-set" => session::session_set(manager, args).await,
        "session-stats" => session::session_stats(manager).await,
        "torrent-add" => torrent_add::torrent_add(manager, watch_dir, args).await,
        "torrent-start" | "torrent-start-now" => {
            torrent_actions::start_stop(manager, args, true).await
        }
        "torrent-stop" => torrent_actions::start_stop(manager, args, false).await,
        "torrent-remove" => torrent_actions::torrent_remove(manager, args).await,
        "torrent-set" => torrent_actions::torrent_set(manager, args).await,
        "torrent-verify" => torrent_actions::torrent_verify(manager, args).await,
        "torrent-set-location" => torrent_actions::torrent_set_location(manager, args).await,
        "free-space" => session::free_space(&s.roots, args).await,
        "port-test" => Ok(object(json!({ "port-is-open": false }))),
        "torrent-reannounce" => torrent_actions::torrent_reannounce(manager, args).await,
        "torrent-rename-path"
        | "queue-move-top"
        | "queue-move-up"
        | "queue-move-down"
        | "queue-move-bottom"
        | "blocklist-update"
        | "session-close" => fail(format!("{method} is not supported by swarmer")),
        _ => fail("method name not recognized"),
    }
}
