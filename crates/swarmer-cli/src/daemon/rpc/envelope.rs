//! A method's answer inside the RPC's reply envelope: its `arguments`, or the error text for
//! `result` (Transmission answers method errors with HTTP 200), and the small builders every
//! method uses.

use serde_json::{Map, Value};

use crate::daemon::manager::ManagerError;

/// A method's answer: its `arguments`, or the text for `result`. Some errors carry arguments
/// (`torrent-get` without fields answers an empty `torrents`).
pub(super) type Outcome = Result<Map<String, Value>, (String, Map<String, Value>)>;

/// An error answer with no arguments.
pub(super) fn fail(message: impl Into<String>) -> Outcome {
    Err((message.into(), Map::new()))
}

/// The object in `v` (a `json!({...})`), empty for any other value.
pub(super) fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A manager error as an error answer.
pub(super) fn manager_error(e: ManagerError) -> (String, Map<String, Value>) {
    (e.to_string(), Map::new())
}
