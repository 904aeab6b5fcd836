//! What every handler of the qBittorrent API shares ([`Qbt`]: the daemon's state, the login
//! sessions, the `sync/maindata` snapshots) and the small helpers they all answer with: plain-text
//! replies as qBittorrent sends them, the status of each manager error, and `hashes` lists resolved
//! to torrent ids.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::daemon::error::status_of;
use crate::daemon::manager::{Manager, ManagerError};
use crate::daemon::model::Torrent;
use crate::daemon::state::AppState;

/// How long a login session lasts without use (qBittorrent's default).
pub(super) const SESSION_TIMEOUT: Duration = Duration::from_secs(3600);
/// Most login sessions at once; beyond it the stalest is dropped.
const MAX_SESSIONS: usize = 1024;
/// Most `sync/maindata` snapshots kept: a few clients polling side by side each find theirs.
const MAX_SNAPSHOTS: usize = 16;
/// Most torrent rows in all kept snapshots together (each row is a torrent's fields, about 2 KiB):
/// with many torrents fewer snapshots are kept, and a client whose rid was dropped gets a full
/// update.
const MAX_SNAPSHOT_ROWS: usize = 100_000;

/// The `[qbittorrent]` section of the daemon's config.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QbtConfig {
    /// The login name qBittorrent clients send.
    pub(crate) username: Option<String>,
    /// Its password.
    pub(crate) password: Option<String>,
}

/// One `sync/maindata` state as a client last saw it.
#[derive(Debug, Clone, Default)]
pub(super) struct Snapshot {
    /// Each torrent's fields, by hash.
    pub(super) torrents: Map<String, Value>,
    /// Each category, by name.
    pub(super) categories: Map<String, Value>,
    /// The tags.
    pub(super) tags: Vec<String>,
    /// The server state's fields.
    pub(super) server_state: Map<String, Value>,
}

/// The last rid given, and the kept snapshots with their rids (oldest first).
type Snapshots = (u64, Vec<(u64, Arc<Snapshot>)>);

/// The qBittorrent API's state.
pub(crate) struct Qbt {
    /// The daemon's shared state.
    pub(super) app: AppState,
    /// Username and password, if configured: every request then needs a login.
    pub(super) credentials: Option<(String, String)>,
    /// Login sessions: SID -> last use.
    sessions: Mutex<HashMap<String, Instant>>,
    /// Recent `sync/maindata` snapshots by rid, and the last rid given.
    snapshots: Mutex<Snapshots>,
}

impl Qbt {
    /// The API over `app`, with the `[qbittorrent]` config.
    pub(crate) fn new(app: AppState, config: QbtConfig) -> Qbt {
        let credentials = match (config.username, config.password) {
            (Some(u), Some(p)) => Some((u, p)),
            (Some(u), None) => Some((u, String::new())),
            (None, Some(p)) => Some(("admin".into(), p)),
            (None, None) => None,
        };
        Qbt {
            app,
            credentials,
            sessions: Mutex::new(HashMap::new()),
            snapshots: Mutex::new((0, Vec::new())),
        }
    }

    /// The manager.
    pub(super) fn manager(&self) -> &Manager {
        &self.app.manager
    }

    /// Opens a login session and returns its SID.
    pub(super) fn open_session(&self) -> String {
        use rand::Rng;
        let sid: String = rand::thread_rng()
            .sample_iter(rand::distributions::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let now = Instant::now();
        let mut sessions = self.sessions.lock().expect("never poisoned");
        sessions.retain(|_, used| now.duration_since(*used) < SESSION_TIMEOUT);
        if sessions.len() >= MAX_SESSIONS {
            let stalest = sessions
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone());
            if let Some(stalest) = stalest {
                sessions.remove(&stalest);
            }
        }
        sessions.insert(sid.clone(), now);
        sid
    }

    /// Whether `sid` is a live session (and marks it used).
    pub(super) fn session_valid(&self, sid: &str) -> bool {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().expect("never poisoned");
        match sessions.get_mut(sid) {
            Some(used) if now.duration_since(*used) < SESSION_TIMEOUT => {
                *used = now;
                true
            }
            Some(_) => {
                sessions.remove(sid);
                false
            }
            None => false,
        }
    }

    /// Ends a session.
    pub(super) fn close_session(&self, sid: &str) {
        self.sessions.lock().expect("never poisoned").remove(sid);
    }

    /// The snapshot a client with `rid` saw, if still kept.
    pub(super) fn snapshot(&self, rid: u64) -> Option<Arc<Snapshot>> {
        let snapshots = self.snapshots.lock().expect("never poisoned");
        snapshots
            .1
            .iter()
            .find(|(r, _)| *r == rid)
            .map(|(_, s)| Arc::clone(s))
    }

    /// Keeps `snapshot` and returns its new rid.
    pub(super) fn keep_snapshot(&self, snapshot: Snapshot) -> u64 {
        let mut snapshots = self.snapshots.lock().expect("never poisoned");
        snapshots.0 += 1;
        let rid = snapshots.0;
        let rows = |kept: &[(u64, Arc<Snapshot>)]| -> usize {
            kept.iter().map(|(_, s)| s.torrents.len()).sum()
        };
        while !snapshots.1.is_empty()
            && (snapshots.1.len() >= MAX_SNAPSHOTS
                || rows(&snapshots.1) + snapshot.torrents.len() > MAX_SNAPSHOT_ROWS)
        {
            snapshots.1.remove(0);
        }
        snapshots.1.push((rid, Arc::new(snapshot)));
        rid
    }
}

/// A plain-text answer, as qBittorrent gives them (`Ok.`, `Fails.`, error messages).
pub(super) fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        body.into(),
    )
        .into_response()
}

/// 200 with an empty body: what qBittorrent answers to an action that worked.
pub(super) fn ok() -> Response {
    text(StatusCode::OK, "")
}

/// A manager error as qBittorrent would answer it: its own status (404 unknown torrent, 409
/// conflict, 403 outside the roots), but 400 where the JSON API says 422.
pub(super) fn failed(error: ManagerError) -> Response {
    let status = match status_of(&error) {
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        other => other,
    };
    text(status, error.to_string())
}

/// Torrents named by a `hashes` parameter (`h1|h2|...` or `all`), as (id, view) pairs; unknown
/// hashes are skipped, as qBittorrent does.
pub(super) async fn resolve(qbt: &Qbt, hashes: &str) -> Vec<Torrent> {
    let all = qbt.manager().list().await;
    if hashes.trim() == "all" {
        return all;
    }
    let wanted: Vec<String> = hashes
        .split('|')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    all.into_iter()
        .filter(|t| wanted.contains(&t.info_hash))
        .collect()
}

/// The one torrent `hash` names, or qBittorrent's 404.
pub(super) async fn one(qbt: &Qbt, hash: &str) -> Result<Torrent, Response> {
    let hash = hash.trim().to_ascii_lowercase();
    if hash.is_empty() || hash == "all" || hash.contains('|') {
        return Err(text(StatusCode::NOT_FOUND, "Torrent hash was not found"));
    }
    resolve(qbt, &hash)
        .await
        .into_iter()
        .next()
        .ok_or_else(|| text(StatusCode::NOT_FOUND, "Torrent hash was not found"))
}
