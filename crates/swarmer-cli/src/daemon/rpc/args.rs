//! Reading Transmission's arguments: lenient values (clients send numbers as strings, floats for
//! integers, 0/1 for booleans), limits with their on/off switches, kB/s speeds, and the `ids`
//! selector.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::daemon::manager::Manager;
use crate::daemon::model::{StateName, Torrent};

/// Bytes in one of Transmission's speed kilobytes (`units.speed-bytes`).
pub(super) const SPEED_K: u64 = 1000;
/// Most entries of an `ids` list.
pub(super) const MAX_IDS: usize = 10_000;

/// A non-negative integer from a number (a float is truncated) or a numeric string.
pub(super) fn as_u64(v: &Value) -> Option<u64> {
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
pub(super) fn as_bool(v: &Value) -> Option<bool> {
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

/// The number under `key`, if present.
pub(super) fn arg_u64(args: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_u64(v)
            .map(Some)
            .ok_or_else(|| format!("{key} must be a non-negative number")),
    }
}

/// The boolean under `key`, if present.
pub(super) fn arg_bool(args: &Map<String, Value>, key: &str) -> Result<Option<bool>, String> {
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
pub(super) fn updated_limit(
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

/// Which torrents a request names.
#[derive(Debug, PartialEq)]
pub(super) enum Ids {
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
pub(super) fn parse_ids(v: Option<&Value>) -> Result<Ids, String> {
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
            StateName::Checking
                | StateName::Downloading
                | StateName::FetchingMetadata
                | StateName::Moving
        )
}

/// Whether `ids` names `t`.
pub(super) fn selected(ids: &Ids, t: &Torrent) -> bool {
    match ids {
        Ids::All => true,
        Ids::RecentlyActive => recently_active(t),
        Ids::Listed { ids, hashes } => ids.contains(&t.id) || hashes.contains(&t.info_hash),
    }
}

/// The torrents `args.ids` names, in id order.
pub(super) async fn select(
    manager: &Manager,
    args: &Map<String, Value>,
) -> Result<Vec<Torrent>, String> {
    let ids = parse_ids(args.get("ids"))?;
    let mut list = manager.list().await;
    list.retain(|t| selected(&ids, t));
    Ok(list)
}

/// A limit in Transmission's kB/s; 0 for none.
pub(super) fn kilo(rate: Option<u64>) -> u64 {
    rate.map_or(0, |r| r / SPEED_K)
}
