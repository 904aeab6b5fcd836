//! The Transmission RPC's CSRF handshake: the session id every request must carry in
//! `X-Transmission-Session-Id` (else 409 with the id), new at every start of the daemon, and the
//! start time `session-stats` counts `secondsActive` from.

use std::sync::OnceLock;
use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The handshake header.
pub(super) const SESSION_HEADER: &str = "x-transmission-session-id";

/// What does not change while the daemon runs.
pub(super) struct Process {
    /// The CSRF token of the handshake: random, new at every start.
    pub(super) session_id: String,
    /// When the RPC was set up: `secondsActive` counts from here.
    pub(super) started: Instant,
}

/// The process's session id and start time, made on first use.
pub(super) fn process() -> &'static Process {
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

/// The 409 that tells a client the session id, if `headers` lack the current one.
pub(super) fn handshake(headers: &HeaderMap) -> Option<Response> {
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
