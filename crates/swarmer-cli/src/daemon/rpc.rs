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
//! - What the daemon does not track is answered honestly with "none": `peers`, `webseeds` and the
//!   `removed` list of `recently-active` are empty, dates other than `addedDate` are 0, and
//!   `bytesCompleted` of a file in an unfinished torrent is an estimate (its share of the
//!   torrent's progress). `peersSendingToUs`/`peersGettingFromUs` count every connected peer while
//!   data flows that way. `torrent-verify`, `torrent-reannounce`, `queue-move-*`, moving and
//!   renaming answer "... is not supported by swarmer".
//! - Files are numbered as Transmission lists them: padding files (BEP 47) are left out, so
//!   `files-wanted` indices are mapped back to `info.files` indices.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde_json::{Map, Value, json};
use swarmer::FilePriority;
use swarmer_proto::magnet::Magnet;
use swarmer_proto::metainfo::{MAX_METAINFO_BYTES, Metainfo};

use super::manager::{Add, Manager, ManagerError, SettingsPatch, Source};
use super::model::{Priority, StateName, Torrent, TorrentDetail};
use super::state::AppState;
use crate::metainfo_file::read_torrent_file;

/// The RPC version we speak: Transmission 3.00's.
const RPC_VERSION: u64 = 16;
/// The oldest RPC version our answers still fit (Transmission 3.00 says 1).
const RPC_VERSION_MINIMUM: u64 = 1;
/// Bytes in one of Transmission's speed kilobytes (`units.speed-bytes`).
const SPEED_K: u64 = 1000;
/// The handshake header.
const SESSION_HEADER: &str = "x-transmission-session-id";
/// Most entries of an `ids` list.
const MAX_IDS: usize = 10_000;
/// Most entries of a file index list in `torrent-set` (a torrent may have this many files).
const MAX_FILE_INDICES: usize = 1_000_000;
/// Most entries of a `fields` list.
const MAX_FIELDS: usize = 1_000;
/// Transmission's `error` for a local error (disk, permissions): `TR_STAT_LOCAL_ERROR`.
const LOCAL_ERROR: u64 = 3;
/// `eta` when it cannot be computed (`TR_ETA_NOT_AVAIL`): Transmission also sends it when done.
const ETA_NOT_AVAILABLE: i64 = -1;
/// `eta` when nothing is coming in (`TR_ETA_UNKNOWN`).
const ETA_UNKNOWN: i64 = -2;
/// `uploadRatio` with nothing downloaded nor uploaded (`TR_RATIO_NA`).
const RATIO_NOT_AVAILABLE: f64 = -1.0;
/// `uploadRatio` with uploads but nothing downloaded (`TR_RATIO_INF`).
const RATIO_INFINITE: f64 = -2.0;
/// `seedRatioMode` 2: seed regardless of ratio, as the daemon does.
const SEED_RATIO_UNLIMITED: u64 = 2;

/// What does not change while the daemon runs.
struct Process {
    /// The CSRF token of the handshake: random, new at every start.
    session_id: String,
    /// When the RPC was set up: `secondsActive` counts from here.
    started: Instant,
}

fn process() -> &'static Process {
    static PROCESS: OnceLock<Process> = OnceLock::new();
    PROCESS.get_or_init(|| {
        use rand::Rng;
        Process {
            session_id: rand::thread_rng()
                .sample_iter(rand::distributions::Alphanumeric)
                .take(48)
                .map(char::from)
                .collect(),
            started: Instant::now(),
        }
    })
}

/// The RPC's routes, merged into the API router (behind the same guard and body limit).
pub(crate) fn router() -> Router<AppState> {
    process();
    Router::new()
        .route("/transmission/rpc", post(handle).get(get_rpc))
        .route("/transmission/rpc/", post(handle).get(get_rpc))
}

/// The 409 that tells a client the session id, if `headers` lack the current one.
fn handshake(headers: &HeaderMap) -> Option<Response> {
    let id = &process().session_id;
    let given = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok());
    if given == Some(id.as_str()) {
        return None;
    }
    let mut response = (
        StatusCode::CONFLICT,
        "409 Conflict: resend the request with the header X-Transmission-Session-Id that this \
         answer carries.\n",
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert(SESSION_HEADER, v);
    }
    Some(response)
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
    let reply = call(&s.manager, &request).await;
    let mut response = axum::Json(reply).into_response();
    if let Ok(v) = HeaderValue::from_str(&process().session_id) {
        response.headers_mut().insert(SESSION_HEADER, v);
    }
    response
}

/// A method's answer: its `arguments`, or the text for `result`. Some errors carry arguments
/// (`torrent-get` without fields answers an empty `torrents`).
type Outcome = Result<Map<String, Value>, (String, Map<String, Value>)>;

fn fail(message: impl Into<String>) -> Outcome {
    Err((message.into(), Map::new()))
}

/// Runs one request envelope `{"method", "arguments", "tag"}` and builds the reply envelope.
async fn call(manager: &Manager, request: &Value) -> Value {
    let empty = Map::new();
    let args = request
        .get("arguments")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let outcome = match request.get("method").and_then(Value::as_str) {
        None => fail("no method name"),
        Some(method) => dispatch(manager, method, args).await,
    };
    let (result, arguments) = match outcome {
        Ok(arguments) => ("success".to_string(), arguments),
        Err((message, arguments)) => (message, arguments),
    };
    let mut reply = json!({ "result": result, "arguments": arguments });
    if let Some(tag) = request.get("tag").filter(|t| t.is_number()) {
        reply["tag"] = tag.clone();
    }
    reply
}

async fn dispatch(manager: &Manager, method: &str, args: &Map<String, Value>) -> Outcome {
    match method {
        "session-get" => session_get(manager, args).await,
        "session-set" => session_set(manager, args).await,
        "session-stats" => session_stats(manager).await,
        "torrent-add" => torrent_add(manager, args).await,
        "torrent-get" => torrent_get(manager, args).await,
        "torrent-start" | "torrent-start-now" => start_stop(manager, args, true).await,
        "torrent-stop" => start_stop(manager, args, false).await,
        "torrent-remove" => torrent_remove(manager, args).await,
        "torrent-set" => torrent_set(manager, args).await,
        "free-space" => free_space(args).await,
        "port-test" => Ok(object(json!({ "port-is-open": false }))),
        "torrent-verify"
        | "torrent-reannounce"
        | "torrent-set-location"
        | "torrent-rename-path"
        | "queue-move-top"
        | "queue-move-up"
        | "queue-move-down"
        | "queue-move-bottom"
        | "blocklist-update"
        | "session-close" => fail(format!("{method} is not supported by swarmer")),
        _ => fail("method name not recognized"),
    }
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn manager_error(e: ManagerError) -> (String, Map<String, Value>) {
    (e.to_string(), Map::new())
}

// ---- Lenient values: clients send numbers as strings, floats for integers, 0/1 for booleans.

/// A non-negative integer from a number (a float is truncated) or a numeric string.
fn as_u64(v: &Value) -> Option<u64> {
    let float = |f: f64| (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then_some(f as u64);
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().and_then(float)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(float))
        }
        _ => None,
    }
}

/// A boolean from `true`/`false`, a number (non-zero is true) or `"true"`/`"false"`/`"1"`/`"0"`.
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.trim() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn arg_u64(args: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_u64(v)
            .map(Some)
            .ok_or_else(|| format!("{key} must be a non-negative number")),
    }
}

fn arg_bool(args: &Map<String, Value>, key: &str) -> Result<Option<bool>, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_bool(v)
            .map(Some)
            .ok_or_else(|| format!("{key} must be a boolean")),
    }
}

/// A limit after a Transmission update: `enabled` switches it, `value` (in the client's unit,
/// multiplied by `unit`) replaces it; a value alone changes only a limit already on, since the
/// daemon keeps no value for a limit that is off.
fn updated_limit(
    current: Option<u64>,
    value: Option<u64>,
    enabled: Option<bool>,
    unit: u64,
) -> Option<u64> {
    let value = value.map(|v| v.saturating_mul(unit));
    match (enabled, value) {
        (Some(false), _) => None,
        (Some(true), Some(v)) => Some(v),
        (Some(true), None) => current,
        (None, Some(v)) => current.map(|_| v),
        (None, None) => current,
    }
}

// ---- ids

/// Which torrents a request names.
#[derive(Debug, PartialEq)]
enum Ids {
    /// `ids` absent: every torrent.
    All,
    /// `"recently-active"`: those moving data or being checked now.
    RecentlyActive,
    /// Listed ids and info hashes (unknown ones are skipped, as Transmission does).
    Listed {
        ids: HashSet<u64>,
        hashes: HashSet<String>,
    },
}

/// Parses `ids`: absent or null = all, a number, a hash, `"recently-active"`, or a list of
/// numbers and 40-hex info hashes (at most [`MAX_IDS`]). Entries that are neither are skipped.
fn parse_ids(v: Option<&Value>) -> Result<Ids, String> {
    let mut ids = HashSet::new();
    let mut hashes = HashSet::new();
    let mut add = |v: &Value| match v {
        Value::String(s) if is_info_hash(s.trim()) => {
            hashes.insert(s.trim().to_ascii_lowercase());
        }
        other => {
            if let Some(id) = as_u64(other) {
                ids.insert(id);
            }
        }
    };
    match v {
        None | Some(Value::Null) => return Ok(Ids::All),
        Some(Value::String(s)) if s == "recently-active" => return Ok(Ids::RecentlyActive),
        Some(Value::Array(list)) => {
            if list.len() > MAX_IDS {
                return Err(format!("at most {MAX_IDS} ids per request"));
            }
            list.iter().for_each(&mut add);
        }
        Some(one) => add(one),
    }
    Ok(Ids::Listed { ids, hashes })
}

fn is_info_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a torrent counts as "recently active": data moving, or being checked or fetched.
fn recently_active(t: &Torrent) -> bool {
    t.download_rate > 0
        || t.upload_rate > 0
        || matches!(
            t.state,
            StateName::Checking | StateName::Downloading | StateName::FetchingMetadata
        )
}

fn selected(ids: &Ids, t: &Torrent) -> bool {
    match ids {
        Ids::All => true,
        Ids::RecentlyActive => recently_active(t),
        Ids::Listed { ids, hashes } => ids.contains(&t.id) || hashes.contains(&t.info_hash),
    }
}

async fn select(manager: &Manager, args: &Map<String, Value>) -> Result<Vec<Torrent>, String> {
    let ids = parse_ids(args.get("ids"))?;
    let mut list = manager.list().await;
    list.retain(|t| selected(&ids, t));
    Ok(list)
}

// ---- torrent fields

/// Transmission's `status`: 0 stopped, 1 check-wait, 2 checking, 3 download-wait, 4 downloading,
/// 5 seed-wait, 6 seeding. A magnet link fetching its metadata is downloading, as in
/// Transmission; a finished torrent that stopped serving is stopped (with `isFinished`).
fn status_code(state: StateName, done: bool) -> u64 {
    match state {
        StateName::Paused | StateName::Failed | StateName::Complete => 0,
        StateName::Checking => 2,
        StateName::Queued if done => 5,
        StateName::Queued => 3,
        StateName::FetchingMetadata | StateName::Downloading => 4,
        StateName::Seeding => 6,
    }
}

fn kilo(rate: Option<u64>) -> u64 {
    rate.map_or(0, |r| r / SPEED_K)
}

/// Fields that need the torrent's [`TorrentDetail`] (one more manager request per torrent).
const DETAIL_FIELDS: &[&str] = &[
    "files",
    "fileStats",
    "priorities",
    "wanted",
    "trackers",
    "trackerStats",
    "magnetLink",
    "pieceCount",
    "pieceSize",
];

/// Transmission's file priority numbers: -1 low, 0 normal, 1 high (skip is `wanted` 0).
fn priority_number(p: Priority) -> i64 {
    match p {
        Priority::Low => -1,
        Priority::Normal | Priority::Skip => 0,
        Priority::High => 1,
    }
}

/// A file's verified bytes: exact when the torrent has every wanted piece, else its share of the
/// torrent's progress (the daemon does not count per file).
fn file_done(t: &Torrent, length: u64, priority: Priority) -> u64 {
    if priority == Priority::Skip {
        return 0;
    }
    if t.wanted_bytes > 0 && t.done_bytes >= t.wanted_bytes {
        return length;
    }
    ((length as f64 * t.progress.clamp(0.0, 1.0)) as u64).min(length)
}

/// `scheme://host[:port]` of a tracker URL, as `trackerStats.host` shows it.
fn tracker_host(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    format!("{scheme}://{authority}")
}

/// One field of a torrent for `torrent-get`; `None` for a field swarmer does not know (skipped,
/// as Transmission skips unknown names). `detail` is given when a [`DETAIL_FIELDS`] one is asked.
fn field(name: &str, t: &Torrent, detail: Option<&TorrentDetail>, now: u64) -> Option<Value> {
    let left = t.wanted_bytes.saturating_sub(t.done_bytes);
    let done = t.wanted_bytes > 0 && left == 0;
    let v = match name {
        "id" => json!(t.id),
        "name" => json!(t.name),
        "hashString" => json!(t.info_hash),
        "status" => json!(status_code(t.state, done)),
        "error" => json!(if t.error.is_some() { LOCAL_ERROR } else { 0 }),
        "errorString" => json!(t.error.as_deref().unwrap_or("")),
        "percentDone" | "percentComplete" => json!(t.progress),
        "metadataPercentComplete" => {
            json!(if t.state == StateName::FetchingMetadata {
                0.0
            } else {
                1.0
            })
        }
        "recheckProgress" => json!(0.0),
        "rateDownload" => json!(t.download_rate),
        "rateUpload" => json!(t.upload_rate),
        "totalSize" => json!(t.total_bytes),
        "sizeWhenDone" => json!(t.wanted_bytes),
        "leftUntilDone" => json!(left),
        "haveValid" => json!(t.done_bytes),
        "haveUnchecked" | "corruptEver" | "desiredAvailable" => json!(0),
        "eta" => json!(match t.eta_seconds {
            Some(s) => i64::try_from(s).unwrap_or(i64::MAX),
            None if done => ETA_NOT_AVAILABLE,
            None => ETA_UNKNOWN,
        }),
        "etaIdle" => json!(ETA_NOT_AVAILABLE),
        "uploadRatio" => {
            let base = if t.downloaded_bytes > 0 {
                t.downloaded_bytes
            } else {
                t.done_bytes
            };
            json!(match (base, t.uploaded_bytes) {
                (0, 0) => RATIO_NOT_AVAILABLE,
                (0, _) => RATIO_INFINITE,
                (b, u) => u as f64 / b as f64,
            })
        }
        "uploadedEver" => json!(t.uploaded_bytes),
        "downloadedEver" => json!(t.downloaded_bytes),
        "peersConnected" => json!(t.peers),
        "peersSendingToUs" => json!(if t.download_rate > 0 { t.peers } else { 0 }),
        "peersGettingFromUs" => json!(if t.upload_rate > 0 { t.peers } else { 0 }),
        "webseedsSendingToUs" | "bandwidthPriority" => json!(0),
        "peers" | "webseeds" | "labels" => json!([]),
        "downloadDir" => json!(t.download_dir),
        "addedDate" => json!(t.added_at),
        "activityDate" => json!(if t.download_rate > 0 || t.upload_rate > 0 {
            now
        } else {
            0
        }),
        "doneDate" | "startDate" | "secondsDownloading" | "secondsSeeding" => json!(0),
        "isFinished" => json!(t.state == StateName::Complete),
        "isStalled" => json!(false),
        "queuePosition" => json!(t.queue_position),
        "seedRatioLimit" => json!(0.0),
        "seedRatioMode" | "seedIdleMode" => json!(SEED_RATIO_UNLIMITED),
        "uploadLimit" => json!(kilo(t.max_upload_rate)),
        "downloadLimit" => json!(kilo(t.max_download_rate)),
        "uploadLimited" => json!(t.max_upload_rate.is_some()),
        "downloadLimited" => json!(t.max_download_rate.is_some()),
        "honorsSessionLimits" => json!(true),
        "magnetLink" => json!(detail?.magnet),
        "pieceCount" => json!(detail?.piece_count),
        "pieceSize" => json!(detail?.piece_length),
        "files" => Value::Array(
            detail?
                .files
                .iter()
                .map(|f| {
                    json!({
                        "name": f.path,
                        "length": f.length,
                        "bytesCompleted": file_done(t, f.length, f.priority),
                    })
                })
                .collect(),
        ),
        "fileStats" => Value::Array(
            detail?
                .files
                .iter()
                .map(|f| {
                    json!({
                        "bytesCompleted": file_done(t, f.length, f.priority),
                        "wanted": f.priority != Priority::Skip,
                        "priority": priority_number(f.priority),
                    })
                })
                .collect(),
        ),
        "priorities" => Value::Array(
            detail?
                .files
                .iter()
                .map(|f| json!(priority_number(f.priority)))
                .collect(),
        ),
        "wanted" => Value::Array(
            detail?
                .files
                .iter()
                .map(|f| json!(u8::from(f.priority != Priority::Skip)))
                .collect(),
        ),
        "trackers" => Value::Array(
            detail?
                .trackers
                .iter()
                .enumerate()
                .map(|(i, url)| json!({ "announce": url, "id": i, "scrape": "", "tier": i }))
                .collect(),
        ),
        "trackerStats" => Value::Array(
            detail?
                .trackers
                .iter()
                .enumerate()
                .map(|(i, url)| {
                    json!({
                        "announce": url, "id": i, "tier": i, "scrape": "",
                        "host": tracker_host(url), "isBackup": false,
                        "announceState": 0, "scrapeState": 0,
                        "hasAnnounced": false, "hasScraped": false,
                        "lastAnnounceSucceeded": false, "lastAnnounceResult": "",
                        "lastAnnounceTime": 0, "lastAnnouncePeerCount": 0,
                        "seederCount": -1, "leecherCount": -1, "downloadCount": -1,
                    })
                })
                .collect(),
        ),
        _ => return None,
    };
    Some(v)
}

async fn torrent_get(manager: &Manager, args: &Map<String, Value>) -> Outcome {
    let Some(fields) = args.get("fields").and_then(Value::as_array) else {
        return Err((
            "no fields specified".into(),
            object(json!({ "torrents": [] })),
        ));
    };
    if fields.len() > MAX_FIELDS {
        return fail(format!("at most {MAX_FIELDS} fields per request"));
    }
    let fields: Vec<&str> = fields.iter().filter_map(Value::as_str).collect();
    let table = args.get("format").and_then(Value::as_str) == Some("table");
    let recent = args.get("ids").and_then(Value::as_str) == Some("recently-active");
    let torrents = select(manager, args).await.map_err(|e| (e, Map::new()))?;
    let need_detail = fields.iter().any(|f| DETAIL_FIELDS.contains(f));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut rows = Vec::with_capacity(torrents.len() + 1);
    if table {
        rows.push(json!(fields));
    }
    for t in &torrents {
        let detail = if need_detail {
            match manager.get(t.id).await {
                Ok(d) => Some(d),
                // Removed since the list was taken.
                Err(ManagerError::NotFound(_)) => continue,
                Err(e) => return Err(manager_error(e)),
            }
        } else {
            None
        };
        // A detail is newer than the list entry: show one consistent view.
        let t = detail.as_ref().map_or(t, |d| &d.torrent);
        if table {
            let row: Vec<Value> = fields
                .iter()
                .map(|f| field(f, t, detail.as_ref(), now).unwrap_or(Value::Null))
                .collect();
            rows.push(Value::Array(row));
        } else {
            let mut obj = Map::new();
            for f in &fields {
                if let Some(v) = field(f, t, detail.as_ref(), now) {
                    obj.insert((*f).to_string(), v);
                }
            }
            rows.push(Value::Object(obj));
        }
    }
    let mut out = Map::new();
    out.insert("torrents".into(), Value::Array(rows));
    if recent {
        // The daemon does not remember removals.
        out.insert("removed".into(), json!([]));
    }
    Ok(out)
}

// ---- torrent actions

async fn start_stop(manager: &Manager, args: &Map<String, Value>, start: bool) -> Outcome {
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

async fn torrent_remove(manager: &Manager, args: &Map<String, Value>) -> Outcome {
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

/// The file index lists of `torrent-set` (Transmission's numbering: padding files left out).
#[derive(Debug, Default, PartialEq)]
struct FileChanges {
    wanted: Option<Vec<u64>>,
    unwanted: Option<Vec<u64>>,
    high: Option<Vec<u64>>,
    normal: Option<Vec<u64>>,
    low: Option<Vec<u64>>,
}

impl FileChanges {
    fn parse(args: &Map<String, Value>) -> Result<FileChanges, String> {
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

    fn is_empty(&self) -> bool {
        *self == FileChanges::default()
    }

    /// New priorities for the files listed in `current` (Transmission order). An empty list means
    /// every file, as in Transmission; an index past the end is an error.
    fn apply(&self, current: &[Priority]) -> Result<Vec<Priority>, String> {
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
fn full_priorities(detail: &TorrentDetail, new: &[Priority]) -> Vec<FilePriority> {
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

async fn torrent_set(manager: &Manager, args: &Map<String, Value>) -> Outcome {
    let bad = |e: String| (e, Map::new());
    let files = FileChanges::parse(args).map_err(bad)?;
    let up = arg_u64(args, "uploadLimit").map_err(bad)?;
    let up_on = arg_bool(args, "uploadLimited").map_err(bad)?;
    let down = arg_u64(args, "downloadLimit").map_err(bad)?;
    let down_on = arg_bool(args, "downloadLimited").map_err(bad)?;
    let limits = up.is_some() || up_on.is_some() || down.is_some() || down_on.is_some();
    let torrents = select(manager, args).await.map_err(bad)?;
    for t in torrents {
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

// ---- torrent-add

/// Decodes `metainfo` (base64, line breaks allowed) into at most [`MAX_METAINFO_BYTES`] bytes.
fn decode_metainfo(b64: &str) -> Result<Vec<u8>, String> {
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
async fn add_source(args: &Map<String, Value>) -> Result<Source, String> {
    let parse = |bytes: Vec<u8>| {
        Metainfo::from_bytes(&bytes)
            .map(|m| Source::Metainfo(Box::new(m), bytes))
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
    if name.starts_with("http://") || name.starts_with("https://") {
        return Err(
            "adding from a URL is not supported by swarmer; send the .torrent as metainfo".into(),
        );
    }
    let path = std::path::Path::new(name);
    if !path.is_absolute() {
        return Err("filename must be a magnet link or an absolute path".into());
    }
    let path = path.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || read_torrent_file(&path))
        .await
        .map_err(|_| "reading the torrent file panicked".to_string())?
        .map_err(|e| format!("{e:#}"))?;
    parse(bytes)
}

async fn torrent_add(manager: &Manager, args: &Map<String, Value>) -> Outcome {
    let source = add_source(args).await.map_err(|e| (e, Map::new()))?;
    let download_dir = match args.get("download-dir").and_then(Value::as_str) {
        Some(d) if !d.is_empty() => {
            if !std::path::Path::new(d).is_absolute() {
                return fail("download-dir must be an absolute path");
            }
            Some(d.into())
        }
        _ => None,
    };
    let paused = arg_bool(args, "paused")
        .map_err(|e| (e, Map::new()))?
        .unwrap_or(false);
    let add = Add {
        source,
        download_dir,
        paused,
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

// ---- session

async fn session_get(manager: &Manager, args: &Map<String, Value>) -> Outcome {
    let Some(settings) = manager.settings().await else {
        return Err(manager_error(ManagerError::ShuttingDown));
    };
    let Some(stats) = manager.stats().await else {
        return Err(manager_error(ManagerError::ShuttingDown));
    };
    let dir = settings.download_dir.display().to_string();
    let free = free_bytes(settings.download_dir.clone()).await.ok();
    let mut out = object(json!({
        "version": format!("3.00 (swarmer {})", stats.version),
        "rpc-version": RPC_VERSION,
        "rpc-version-minimum": RPC_VERSION_MINIMUM,
        "session-id": process().session_id,
        "download-dir": dir,
        "peer-port": stats.listen_port,
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

async fn session_set(manager: &Manager, args: &Map<String, Value>) -> Outcome {
    let bad = |e: String| (e, Map::new());
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
    manager.set_settings(patch).await.map_err(manager_error)?;
    Ok(Map::new())
}

async fn session_stats(manager: &Manager) -> Outcome {
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

async fn free_space(args: &Map<String, Value>) -> Outcome {
    let Some(path) = args.get("path").and_then(Value::as_str) else {
        return fail("free-space needs a path");
    };
    if !std::path::Path::new(path).is_absolute() {
        return fail("the path must be absolute");
    }
    let free = free_bytes(path.into()).await.map_err(|e| (e, Map::new()))?;
    Ok(object(json!({ "path": path, "size-bytes": free })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::model::File;

    fn torrent() -> Torrent {
        Torrent {
            id: 7,
            info_hash: "0123456789abcdef0123456789abcdef01234567".into(),
            name: "payload".into(),
            state: StateName::Downloading,
            error: None,
            total_bytes: 4000,
            wanted_bytes: 3000,
            done_bytes: 1500,
            progress: 0.5,
            download_rate: 2000,
            upload_rate: 0,
            downloaded_bytes: 1000,
            uploaded_bytes: 500,
            peers: 3,
            eta_seconds: Some(1),
            added_at: 1_700_000_000,
            download_dir: "/data".into(),
            max_upload_rate: Some(50_000),
            max_download_rate: None,
            queue_position: 2,
        }
    }

    fn detail() -> TorrentDetail {
        let file = |index, path: &str, length, priority| File {
            index,
            path: path.into(),
            length,
            priority,
        };
        TorrentDetail {
            torrent: torrent(),
            // Index 1 is a padding file: Transmission's numbering skips it.
            files: vec![
                file(0, "payload/a", 1000, Priority::Normal),
                file(2, "payload/b", 2000, Priority::High),
                file(3, "payload/c", 1000, Priority::Skip),
            ],
            trackers: vec!["http://127.0.0.1:6969/announce".into()],
            piece_count: 4,
            piece_length: 1024,
            pieces_have: 2,
            magnet: "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567".into(),
        }
    }

    #[test]
    fn status_codes_follow_transmission() {
        let cases = [
            (StateName::Paused, false, 0),
            (StateName::Failed, false, 0),
            (StateName::Complete, true, 0),
            (StateName::Checking, false, 2),
            (StateName::Queued, false, 3),
            (StateName::Queued, true, 5),
            (StateName::FetchingMetadata, false, 4),
            (StateName::Downloading, false, 4),
            (StateName::Seeding, true, 6),
        ];
        for (state, done, code) in cases {
            assert_eq!(status_code(state, done), code, "{state:?} done={done}");
        }
    }

    #[test]
    fn ids_are_all_recent_numbers_or_hashes() {
        assert_eq!(parse_ids(None), Ok(Ids::All));
        assert_eq!(parse_ids(Some(&Value::Null)), Ok(Ids::All));
        assert_eq!(
            parse_ids(Some(&json!("recently-active"))),
            Ok(Ids::RecentlyActive)
        );
        let hash = "0123456789ABCDEF0123456789abcdef01234567";
        let Ok(Ids::Listed { ids, hashes }) = parse_ids(Some(
            &json!([1, "2", 3.0, hash, "nonsense", null, {"a": 1}, -4]),
        )) else {
            panic!("a list parses");
        };
        assert_eq!(ids, HashSet::from([1, 2, 3]));
        assert_eq!(hashes, HashSet::from([hash.to_ascii_lowercase()]));
        let Ok(Ids::Listed { ids, .. }) = parse_ids(Some(&json!(5))) else {
            panic!("a number parses");
        };
        assert_eq!(ids, HashSet::from([5]));
        let many = Value::Array(vec![json!(1); MAX_IDS + 1]);
        assert!(parse_ids(Some(&many)).is_err());
        let t = torrent();
        let by_hash = parse_ids(Some(&json!(t.info_hash.to_uppercase()))).unwrap();
        assert!(selected(&by_hash, &t));
        assert!(!selected(&parse_ids(Some(&json!([8]))).unwrap(), &t));
        assert!(selected(&Ids::RecentlyActive, &t));
    }

    #[test]
    fn lenient_values_never_panic() {
        assert_eq!(as_u64(&json!(12)), Some(12));
        assert_eq!(as_u64(&json!(12.9)), Some(12));
        assert_eq!(as_u64(&json!(" 12 ")), Some(12));
        assert_eq!(as_u64(&json!("1e3")), Some(1000));
        for bad in [
            json!(-1),
            json!(-0.5),
            json!(1e300),
            json!("x"),
            json!(null),
            json!([1]),
        ] {
            assert_eq!(as_u64(&bad), None, "{bad}");
        }
        assert_eq!(as_bool(&json!(true)), Some(true));
        assert_eq!(as_bool(&json!(0)), Some(false));
        assert_eq!(as_bool(&json!("1")), Some(true));
        assert_eq!(as_bool(&json!("yes")), None);
    }

    #[test]
    fn list_fields_are_integers_where_transmission_remote_reads_integers() {
        let t = torrent();
        let get = |name| field(name, &t, None, 99).unwrap();
        assert_eq!(get("id"), json!(7));
        assert_eq!(get("status"), json!(4));
        assert_eq!(get("sizeWhenDone"), json!(3000));
        assert_eq!(get("leftUntilDone"), json!(1500));
        assert_eq!(get("eta"), json!(1));
        assert_eq!(get("percentDone"), json!(0.5));
        assert_eq!(get("uploadRatio"), json!(0.5));
        assert_eq!(get("peersSendingToUs"), json!(3));
        assert_eq!(get("peersGettingFromUs"), json!(0));
        assert_eq!(get("uploadLimit"), json!(50));
        assert_eq!(get("uploadLimited"), json!(true));
        assert_eq!(get("downloadLimited"), json!(false));
        assert_eq!(get("error"), json!(0));
        assert_eq!(get("activityDate"), json!(99));
        assert!(field("no-such-field", &t, None, 0).is_none());
        // Detail fields without the detail are skipped rather than guessed.
        assert!(field("files", &t, None, 0).is_none());
        for name in [
            "id",
            "status",
            "eta",
            "error",
            "sizeWhenDone",
            "rateDownload",
            "rateUpload",
            "peersConnected",
            "addedDate",
            "queuePosition",
        ] {
            assert!(get(name).is_u64() || get(name).is_i64(), "{name}");
        }
    }

    #[test]
    fn eta_and_ratio_use_transmission_sentinels() {
        let mut t = torrent();
        t.eta_seconds = None;
        assert_eq!(field("eta", &t, None, 0), Some(json!(ETA_UNKNOWN)));
        t.done_bytes = t.wanted_bytes;
        assert_eq!(field("eta", &t, None, 0), Some(json!(ETA_NOT_AVAILABLE)));
        t.downloaded_bytes = 0;
        t.done_bytes = 0;
        t.uploaded_bytes = 0;
        assert_eq!(field("uploadRatio", &t, None, 0), Some(json!(-1.0)));
        t.uploaded_bytes = 1;
        assert_eq!(field("uploadRatio", &t, None, 0), Some(json!(-2.0)));
        t.error = Some("disk full".into());
        t.state = StateName::Failed;
        assert_eq!(field("error", &t, None, 0), Some(json!(3)));
        assert_eq!(field("errorString", &t, None, 0), Some(json!("disk full")));
        assert_eq!(field("status", &t, None, 0), Some(json!(0)));
    }

    #[test]
    fn detail_fields_list_files_without_padding() {
        let d = detail();
        let get = |name| field(name, &d.torrent, Some(&d), 0).unwrap();
        assert_eq!(get("priorities"), json!([0, 1, 0]));
        assert_eq!(get("wanted"), json!([1, 1, 0]));
        assert_eq!(
            get("files"),
            json!([
                {"name": "payload/a", "length": 1000, "bytesCompleted": 500},
                {"name": "payload/b", "length": 2000, "bytesCompleted": 1000},
                {"name": "payload/c", "length": 1000, "bytesCompleted": 0},
            ])
        );
        assert_eq!(get("fileStats")[2]["wanted"], json!(false));
        assert_eq!(get("pieceCount"), json!(4));
        assert_eq!(
            get("trackerStats")[0]["host"],
            json!("http://127.0.0.1:6969")
        );
    }

    #[test]
    fn file_changes_fold_wanted_and_priority() {
        let current = [Priority::Normal, Priority::High, Priority::Skip];
        let changes = FileChanges::parse(&object(
            json!({"files-unwanted": [0], "files-wanted": ["2"], "priority-low": [2]}),
        ))
        .unwrap();
        assert_eq!(
            changes.apply(&current),
            Ok(vec![Priority::Skip, Priority::High, Priority::Low])
        );
        // An empty list means every file.
        let all = FileChanges::parse(&object(json!({"priority-high": []}))).unwrap();
        assert_eq!(
            all.apply(&current),
            Ok(vec![Priority::High, Priority::High, Priority::Skip])
        );
        let out_of_range = FileChanges::parse(&object(json!({"files-wanted": [3]}))).unwrap();
        assert!(out_of_range.apply(&current).is_err());
        assert!(FileChanges::parse(&object(json!({"files-wanted": "x"}))).is_err());
        assert!(FileChanges::parse(&object(json!({}))).unwrap().is_empty());
        // Back to info.files numbering: the padding file at index 1 is skipped.
        let full = full_priorities(
            &detail(),
            &[Priority::Low, Priority::Normal, Priority::High],
        );
        assert_eq!(
            full,
            vec![
                FilePriority::Low,
                FilePriority::Skip,
                FilePriority::Normal,
                FilePriority::High
            ]
        );
    }

    #[test]
    fn limits_follow_value_and_switch() {
        assert_eq!(
            updated_limit(None, Some(100), Some(true), 1000),
            Some(100_000)
        );
        assert_eq!(updated_limit(Some(5), Some(100), Some(false), 1000), None);
        assert_eq!(updated_limit(Some(5), None, Some(true), 1000), Some(5));
        assert_eq!(updated_limit(None, None, Some(true), 1000), None);
        assert_eq!(updated_limit(None, Some(100), None, 1000), None);
        assert_eq!(updated_limit(Some(5), Some(100), None, 1000), Some(100_000));
        assert_eq!(updated_limit(Some(5), None, None, 1000), Some(5));
        assert_eq!(
            updated_limit(None, Some(u64::MAX), Some(true), 1000),
            Some(u64::MAX)
        );
    }

    #[test]
    fn metainfo_base64_may_have_line_breaks_and_no_padding() {
        assert_eq!(decode_metainfo("ZDQ6\nc3BhbWU=").unwrap(), b"d4:spame");
        assert_eq!(decode_metainfo("ZDQ6c3BhbWU").unwrap(), b"d4:spame");
        assert!(decode_metainfo("not base64!").is_err());
    }

    #[test]
    fn handshake_wants_the_session_id() {
        let mut headers = HeaderMap::new();
        let conflict = handshake(&headers).expect("409 without the header");
        assert_eq!(conflict.status(), StatusCode::CONFLICT);
        let id = conflict.headers().get(SESSION_HEADER).unwrap().clone();
        assert_eq!(id.to_str().unwrap(), process().session_id);
        headers.insert(SESSION_HEADER, HeaderValue::from_static("stale"));
        assert!(handshake(&headers).is_some());
        headers.insert(SESSION_HEADER, id);
        assert!(handshake(&headers).is_none());
    }

    #[test]
    fn tracker_hosts() {
        assert_eq!(
            tracker_host("udp://t.example:80/announce"),
            "udp://t.example:80"
        );
        assert_eq!(tracker_host("http://h?x=1"), "http://h");
        assert_eq!(tracker_host("garbage"), "garbage");
    }
}
