//! The daemon's torrents as qBittorrent shows them: `torrents/info` objects with qBittorrent's
//! field names and state names (qBittorrent 5: `stoppedUP`/`stoppedDL` where 4.x said `paused`),
//! file priorities in its numbers, and the filters of `torrents/info`. *arr tools map these
//! states, so they follow qBittorrent's meaning: a download with no data flowing is `stalledDL`, a
//! seed with nobody to serve `stalledUP`. Peers as `sync/torrentPeers` rows (`connection` "uTP" or
//! "BT", qBittorrent's flag letters).

use serde::Serialize;
use serde_json::{Value, json};

use crate::daemon::model::{Priority, StateName, Torrent};

/// What qBittorrent reports for "unknown" or "infinite" ETA (100 days, in seconds).
pub(super) const ETA_INFINITE: u64 = 8_640_000;

/// qBittorrent's state name for a torrent.
pub(super) fn state_name(t: &Torrent) -> &'static str {
    let done = t.wanted_bytes > 0 && t.done_bytes >= t.wanted_bytes;
    match t.state {
        StateName::FetchingMetadata => "metaDL",
        StateName::Queued if done => "queuedUP",
        StateName::Queued => "queuedDL",
        StateName::Checking if done => "checkingUP",
        StateName::Checking => "checkingDL",
        StateName::Downloading if t.download_rate > 0 => "downloading",
        StateName::Downloading => "stalledDL",
        StateName::Seeding if t.upload_rate > 0 => "uploading",
        StateName::Seeding => "stalledUP",
        StateName::Complete => "stoppedUP",
        StateName::Paused if done => "stoppedUP",
        StateName::Paused => "stoppedDL",
        StateName::Failed => "error",
        StateName::Moving => "moving",
    }
}

/// A limit in qBittorrent's terms: bytes/s, or 0 for none (`torrents/info`).
fn limit(rate: Option<u64>) -> u64 {
    rate.unwrap_or(0)
}

/// One `torrents/info` object as a JSON value (for `sync/maindata`'s diffs and `sort`).
pub(super) fn info(t: &Torrent, tracker: Option<&str>) -> Value {
    serde_json::to_value(InfoRow::new(t, tracker)).expect("a row serializes")
}

/// One `torrents/info` object, serialized straight from the torrent: listing thousands of them
/// builds no map per row (a `json!` object per torrent was 7 times the cost of the RPC's list).
#[derive(Serialize)]
pub(super) struct InfoRow<'a> {
    hash: &'a str,
    infohash_v1: String,
    infohash_v2: String,
    name: &'a str,
    state: &'static str,
    progress: f64,
    size: u64,
    total_size: u64,
    completed: u64,
    amount_left: u64,
    downloaded: u64,
    uploaded: u64,
    downloaded_session: u64,
    uploaded_session: u64,
    dlspeed: u64,
    upspeed: u64,
    dl_limit: u64,
    up_limit: u64,
    eta: u64,
    ratio: f64,
    ratio_limit: i64,
    max_ratio: i64,
    seeding_time_limit: i64,
    max_seeding_time: i64,
    inactive_seeding_time_limit: i64,
    max_inactive_seeding_time: i64,
    num_seeds: u32,
    num_leechs: u32,
    num_complete: u32,
    num_incomplete: u32,
    category: &'a str,
    tags: String,
    save_path: &'a str,
    download_path: &'static str,
    content_path: String,
    root_path: String,
    added_on: u64,
    completion_on: i64,
    last_activity: u64,
    seen_complete: i64,
    time_active: u64,
    seeding_time: u64,
    priority: i64,
    tracker: &'a str,
    trackers_count: u32,
    magnet_uri: String,
    auto_tmm: bool,
    force_start: bool,
    seq_dl: bool,
    f_l_piece_prio: bool,
    super_seeding: bool,
    availability: i64,
    private: bool,
    comment: &'static str,
    reannounce: u64,
    popularity: u64,
}

impl<'a> InfoRow<'a> {
    /// The row of `t`, announcing to `tracker` if one is known.
    pub(super) fn new(t: &'a Torrent, tracker: Option<&'a str>) -> Self {
        let ratio = if t.downloaded_bytes == 0 {
            0.0
        } else {
            t.uploaded_bytes as f64 / t.downloaded_bytes as f64
        };
        let content_path = format!("{}/{}", t.download_dir.trim_end_matches('/'), t.name);
        let (infohash_v1, infohash_v2) = hashes(t);
        let completed = t.completed_at.map_or(-1, |c| c as i64);
        InfoRow {
            hash: &t.info_hash,
            infohash_v1,
            infohash_v2,
            name: &t.name,
            state: state_name(t),
            progress: t.progress,
            size: t.wanted_bytes,
            total_size: t.total_bytes,
            completed: t.done_bytes,
            amount_left: t.wanted_bytes.saturating_sub(t.done_bytes),
            downloaded: t.downloaded_bytes,
            uploaded: t.uploaded_bytes,
            downloaded_session: t.downloaded_bytes,
            uploaded_session: t.uploaded_bytes,
            dlspeed: t.download_rate,
            upspeed: t.upload_rate,
            dl_limit: limit(t.max_download_rate),
            up_limit: limit(t.max_upload_rate),
            eta: t.eta_seconds.unwrap_or(ETA_INFINITE),
            ratio,
            ratio_limit: -2,
            max_ratio: -1,
            seeding_time_limit: -2,
            max_seeding_time: -1,
            inactive_seeding_time_limit: -2,
            max_inactive_seeding_time: -1,
            num_seeds: 0,
            num_leechs: t.peers,
            num_complete: 0,
            num_incomplete: 0,
            category: t.category.as_deref().unwrap_or_default(),
            tags: t.tags.join(", "),
            save_path: &t.download_dir,
            download_path: "",
            root_path: content_path.clone(),
            content_path,
            added_on: t.added_at,
            completion_on: completed,
            last_activity: t.added_at,
            seen_complete: completed,
            time_active: 0,
            seeding_time: 0,
            priority: if t.wanted_bytes > t.done_bytes {
                i64::from(t.queue_position) + 1
            } else {
                0
            },
            tracker: tracker.unwrap_or(""),
            trackers_count: 0,
            magnet_uri: format!("magnet:?xt=urn:btih:{}", t.info_hash),
            auto_tmm: false,
            force_start: false,
            seq_dl: t.sequential,
            f_l_piece_prio: t.first_last_piece,
            super_seeding: false,
            availability: -1,
            private: false,
            comment: "",
            reannounce: 0,
            popularity: 0,
        }
    }
}

/// A file priority in qBittorrent's numbers (0 skip, 1 normal, 6 high, 7 maximal).
pub(super) fn priority_number(p: Priority) -> u8 {
    match p {
        Priority::Skip => 0,
        Priority::Low | Priority::Normal => 1,
        Priority::High => 6,
    }
}

/// A qBittorrent file priority number as swarmer's; `None` for a number qBittorrent refuses.
pub(super) fn priority_of(n: i64) -> Option<Priority> {
    match n {
        0 => Some(Priority::Skip),
        1 => Some(Priority::Normal),
        6 | 7 => Some(Priority::High),
        _ => None,
    }
}

/// The `filter` names of `torrents/info` (qBittorrent 4.x and 5.x).
pub(super) const FILTERS: &[&str] = &[
    "",
    "all",
    "downloading",
    "seeding",
    "completed",
    "paused",
    "stopped",
    "resumed",
    "running",
    "active",
    "inactive",
    "stalled",
    "stalled_uploading",
    "stalled_downloading",
    "checking",
    "moving",
    "errored",
];

/// Whether `t` passes `torrents/info`'s `filter` (one of [`FILTERS`]; `None` for another name).
pub(super) fn passes(filter: &str, t: &Torrent) -> Option<bool> {
    let state = state_name(t);
    let done = state.ends_with("UP");
    let stopped = state.starts_with("stopped");
    let active = t.download_rate > 0 || t.upload_rate > 0;
    Some(match filter {
        "all" | "" => true,
        "downloading" => !done && !stopped && state != "error",
        "seeding" => done && !stopped && state != "error",
        "completed" => done,
        "paused" | "stopped" => stopped,
        "resumed" | "running" => !stopped,
        "active" => active,
        "inactive" => !active,
        "stalled" => state.starts_with("stalled"),
        "stalled_uploading" => state == "stalledUP",
        "stalled_downloading" => state == "stalledDL",
        "checking" => state.starts_with("checking"),
        "moving" => state == "moving",
        "errored" => state == "error",
        _ => return None,
    })
}

/// qBittorrent's `infohash_v1` and `infohash_v2`: the v1 hash (empty for a v2-only torrent, whose
/// `hash` is its SHA-256 cut to 20 bytes) and the full SHA-256 (empty for a v1 torrent).
pub(super) fn hashes(t: &Torrent) -> (String, String) {
    match &t.info_hash_v2 {
        Some(v2) if v2.starts_with(&t.info_hash) => (String::new(), v2.clone()),
        Some(v2) => (t.info_hash.clone(), v2.clone()),
        None => (t.info_hash.clone(), String::new()),
    }
}

/// One connected peer as a `sync/torrentPeers` row, with qBittorrent's flag letters, space
/// separated, in its order (D/d downloading from it or interested and choked, U/u uploading to
/// it, K unchoked by it while we are not interested, ? unchoked while it is not interested, I
/// incoming, E encrypted, P over uTP). `pieces` is the torrent's piece count, for `progress`.
pub(super) fn peer_row(p: &swarmer::PeerDetails, pieces: u32) -> Value {
    let s = &p.status;
    let downloading = s.am_interested && !s.peer_choking;
    let uploading = s.peer_interested && !s.am_choking;
    let mut flags = Vec::new();
    match (downloading, s.am_interested) {
        (true, _) => flags.push("D"),
        (false, true) => flags.push("d"),
        _ => {}
    }
    match (uploading, s.peer_interested) {
        (true, _) => flags.push("U"),
        (false, true) => flags.push("u"),
        _ => {}
    }
    if !s.peer_choking && !s.am_interested {
        flags.push("K");
    }
    if !s.am_choking && !s.peer_interested {
        flags.push("?");
    }
    if !p.outgoing {
        flags.push("I");
    }
    if s.encrypted {
        flags.push("E");
    }
    if s.utp {
        flags.push("P");
    }
    let pieces = pieces.max(1);
    json!({
        "ip": p.addr.ip().to_string(),
        "port": p.addr.port(),
        "client": s.client.clone().unwrap_or_default(),
        "connection": if s.utp { "uTP" } else { "BT" },
        "flags": flags.join(" "),
        "progress": f64::from(s.pieces.min(pieces)) / f64::from(pieces),
        "dl_speed": s.download_rate,
        "up_speed": s.upload_rate,
        "country": "",
        "country_code": "",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_show_their_carrier() {
        let peer = |utp, encrypted| swarmer::PeerDetails {
            addr: "127.0.0.9:6881".parse().unwrap(),
            outgoing: false,
            status: swarmer_proto::torrent::PeerStatus {
                download_rate: 2048,
                upload_rate: 0,
                pieces: 3,
                am_choking: true,
                am_interested: true,
                peer_choking: false,
                peer_interested: false,
                encrypted,
                utp,
                client: Some("libtorrent/2.0.8.0".into()),
            },
        };
        let row = peer_row(&peer(true, true), 4);
        assert_eq!(row["connection"], "uTP");
        assert_eq!(row["flags"], "D I E P");
        assert_eq!(row["progress"], 0.75);
        assert_eq!(row["ip"], "127.0.0.9");
        let row = peer_row(&peer(false, false), 4);
        assert_eq!(row["connection"], "BT");
        assert_eq!(row["flags"], "D I");
    }

    fn torrent(state: StateName, rates: (u64, u64), done: bool) -> Torrent {
        Torrent {
            id: 1,
            info_hash: "00".repeat(20),
            info_hash_v2: None,
            name: "n".into(),
            state,
            error: None,
            total_bytes: 100,
            wanted_bytes: 100,
            done_bytes: if done { 100 } else { 10 },
            progress: if done { 1.0 } else { 0.1 },
            download_rate: rates.0,
            upload_rate: rates.1,
            downloaded_bytes: 0,
            uploaded_bytes: 0,
            peers: 0,
            web_seeds: 0,
            web_seeds_sending: 0,
            eta_seconds: None,
            added_at: 0,
            download_dir: "/d".into(),
            max_upload_rate: None,
            max_download_rate: None,
            queue_position: 0,
            category: None,
            tags: vec!["a".into(), "b".into()],
            completed_at: None,
            sequential: false,
            first_last_piece: false,
        }
    }

    #[test]
    fn states_are_named_as_qbittorrent_names_them() {
        use StateName::*;
        let cases = [
            (Downloading, (5, 0), false, "downloading"),
            (Downloading, (0, 0), false, "stalledDL"),
            (Seeding, (0, 9), true, "uploading"),
            (Seeding, (0, 0), true, "stalledUP"),
            (Paused, (0, 0), true, "stoppedUP"),
            (Paused, (0, 0), false, "stoppedDL"),
            (Queued, (0, 0), false, "queuedDL"),
            (Checking, (0, 0), true, "checkingUP"),
            (FetchingMetadata, (0, 0), false, "metaDL"),
            (Failed, (0, 0), false, "error"),
            (Moving, (0, 0), true, "moving"),
        ];
        for (state, rates, done, name) in cases {
            assert_eq!(state_name(&torrent(state, rates, done)), name);
        }
        let t = torrent(Paused, (0, 0), false);
        assert_eq!(passes("stopped", &t), Some(true));
        assert_eq!(passes("downloading", &t), Some(false));
        assert_eq!(passes("bogus", &t), None);
        assert!(FILTERS.iter().all(|f| passes(f, &t).is_some()));
        assert_eq!(info(&t, None)["tags"], "a, b");
        assert_eq!(
            priority_of(priority_number(Priority::High).into()),
            Some(Priority::High)
        );
        assert_eq!(priority_of(3), None);
    }

    #[test]
    fn v1_v2_and_hybrid_hashes_as_qbittorrent_shows_them() {
        let mut t = torrent(StateName::Seeding, (0, 0), true);
        t.info_hash = "ab".repeat(20);
        assert_eq!(hashes(&t), ("ab".repeat(20), String::new()));
        t.info_hash_v2 = Some("cd".repeat(32));
        assert_eq!(hashes(&t), ("ab".repeat(20), "cd".repeat(32)), "hybrid");
        t.info_hash = "cd".repeat(20);
        assert_eq!(hashes(&t), (String::new(), "cd".repeat(32)), "v2 only");
    }
}
