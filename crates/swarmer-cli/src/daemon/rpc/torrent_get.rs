//! `torrent-get`: the manager's views mapped to Transmission's torrent fields, as a list of
//! objects or as a table. Fields only the running torrent knows (per-file progress, peers, tracker
//! state, a tracker's error) come from `Manager::details`, asked only when such a field is.

use std::time::{SystemTime, UNIX_EPOCH};
use swarmer_proto::tracker::scrape::{ScrapeCounts, scrape_url};

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value, json};

use super::args::{kilo, select};
use super::envelope::{manager_error, object};
use crate::daemon::insides;
use crate::daemon::manager::{Manager, ManagerError};
use crate::daemon::model::{Inside, Priority, StateName, Torrent};

/// Most entries of a `fields` list.
const MAX_FIELDS: usize = 1_000;
/// Transmission's `error` for a local error (disk, permissions): `TR_STAT_LOCAL_ERROR`.
const LOCAL_ERROR: u64 = 3;
/// Transmission's `error` when every tracker failed: `TR_STAT_TRACKER_ERROR`.
const TRACKER_ERROR: u64 = 2;
/// Transmission's `error` for a tracker's warning: `TR_STAT_TRACKER_WARNING`.
const TRACKER_WARNING: u64 = 1;
/// `eta` when it cannot be computed (`TR_ETA_NOT_AVAIL`): Transmission also sends it when done.
pub(super) const ETA_NOT_AVAILABLE: i64 = -1;
/// `eta` when nothing is coming in (`TR_ETA_UNKNOWN`).
pub(super) const ETA_UNKNOWN: i64 = -2;
/// `uploadRatio` with nothing downloaded nor uploaded (`TR_RATIO_NA`).
const RATIO_NOT_AVAILABLE: f64 = -1.0;
/// `uploadRatio` with uploads but nothing downloaded (`TR_RATIO_INF`).
const RATIO_INFINITE: f64 = -2.0;
/// `seedRatioMode` 2: seed regardless of ratio, as the daemon does.
const SEED_RATIO_UNLIMITED: u64 = 2;

/// Transmission's `status`: 0 stopped, 1 check-wait, 2 checking, 3 download-wait, 4 downloading,
/// 5 seed-wait, 6 seeding. A magnet link fetching its metadata is downloading, as in
/// Transmission; a finished torrent that stopped serving is stopped (with `isFinished`).
pub(super) fn status_code(state: StateName, done: bool) -> u64 {
    match state {
        // Transmission has no "moving": its move blocks the RPC call until done.
        StateName::Paused | StateName::Failed | StateName::Complete | StateName::Moving => 0,
        StateName::Checking => 2,
        StateName::Queued if done => 5,
        StateName::Queued => 3,
        StateName::FetchingMetadata | StateName::Downloading => 4,
        StateName::Seeding => 6,
    }
}

/// Fields that need the torrent's details ([`Inside`]: one more manager request per torrent).
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
    "peers",
    "error",
    "errorString",
    "pieces",
    "isPrivate",
    "creator",
    "comment",
    "dateCreated",
    "webseeds",
];

/// Transmission's file priority numbers: -1 low, 0 normal, 1 high (skip is `wanted` 0).
fn priority_number(p: Priority) -> i64 {
    match p {
        Priority::Low => -1,
        Priority::Normal | Priority::Skip => 0,
        Priority::High => 1,
    }
}

/// The torrent's `error` and `errorString`: a local error first, then a tracker's.
fn error_of(t: &Torrent, inside: Option<&Inside>) -> (u64, String) {
    if let Some(e) = &t.error {
        return (LOCAL_ERROR, e.clone());
    }
    let status = inside.and_then(|d| d.tracker.as_ref());
    if let Some(e) = status.and_then(|s| s.last_error.clone()) {
        return (TRACKER_ERROR, e);
    }
    if let Some(w) = status.and_then(|s| s.warning.clone()) {
        return (TRACKER_WARNING, w);
    }
    (0, String::new())
}

/// `trackerStats`: each tracker with what the announcer says of the one that answered last, or
/// of the round in which all failed, and what the tracker said when last scraped. The counts are
/// the scrape's where there is one, else the last announce reply's, else -1 (unknown).
fn tracker_stats(d: &Inside) -> Value {
    let status = d.tracker.as_ref();
    let tiers = d.metainfo.as_ref().map_or_else(
        || d.detail.trackers.iter().map(|t| vec![t.clone()]).collect(),
        |m| m.announce_tiers.clone(),
    );
    let mut id = 0;
    let mut out = Vec::new();
    for (tier, urls) in tiers.iter().enumerate() {
        for url in urls {
            let answered = status.and_then(|s| s.tracker.as_deref()) == Some(url.as_str());
            let failed = status.and_then(|s| s.last_error.clone());
            let announced = answered || failed.is_some();
            let count = |n: Option<u32>| n.filter(|_| answered).map_or(-1, i64::from);
            let scraped = d.scrapes.get(url);
            let scraped_count = |pick: fn(&ScrapeCounts) -> u32| {
                scraped
                    .and_then(|r| r.counts.as_ref())
                    .map(|c| i64::from(pick(c)))
            };
            out.push(json!({
                "announce": url, "id": id, "tier": tier,
                "scrape": scrape_url(url).unwrap_or_default(),
                "host": tracker_host(url), "isBackup": false,
                // 1: waiting for the next announce (TR_TRACKER_WAITING), 0: inactive.
                "announceState": if d.tracker.is_some() { 1 } else { 0 },
                // 1: waiting for the next scrape (TR_TRACKER_WAITING), 0: inactive.
                "scrapeState": if scrape_url(url).is_some() { 1 } else { 0 },
                "hasAnnounced": announced, "hasScraped": scraped.is_some(),
                "lastAnnounceSucceeded": answered && failed.is_none(),
                "lastAnnounceResult": failed.clone().unwrap_or_else(|| if answered { "Success".into() } else { String::new() }),
                "lastAnnounceTimedOut": false, "lastAnnounceStartTime": 0,
                "lastScrapeStartTime": scraped.map_or(0, |r| r.at), "lastScrapeTimedOut": false,
                "lastAnnounceTime": 0, "lastAnnouncePeerCount": 0,
                "seederCount": scraped_count(|c| c.seeders).unwrap_or_else(|| count(status.and_then(|s| s.seeders))),
                "leecherCount": scraped_count(|c| c.leechers).unwrap_or_else(|| count(status.and_then(|s| s.leechers))),
                "downloadCount": scraped_count(|c| c.completed).unwrap_or(-1),
                "lastScrapeSucceeded": scraped.is_some_and(|r| r.error.is_none()),
                "lastScrapeResult": scraped.and_then(|r| r.error.clone()).unwrap_or_default(),
                "lastScrapeTime": scraped.map_or(0, |r| r.at),
                "nextAnnounceTime": 0, "nextScrapeTime": scraped.map_or(0, |r| r.next),
            }));
            id += 1;
        }
    }
    Value::Array(out)
}

/// `peers`: each connected peer as the engine sees it: address, direction, client name (from its
/// BEP 10 handshake; empty if it sent none), rates, progress and the choke and interest flags,
/// with Transmission's `flagStr` letters in its order (T over uTP, D/d downloading from it or
/// not, U/u uploading to it, K unchoked by it while we are not interested, ? unchoked while it is
/// not interested, E encrypted, I incoming).
fn peers(d: &Inside) -> Value {
    Value::Array(
        d.peers
            .iter()
            .map(|p| {
                let s = &p.status;
                json!({
                    "address": p.addr.ip().to_string(),
                    "port": p.addr.port(),
                    "clientName": s.client.clone().unwrap_or_default(),
                    "flagStr": insides::flag_str(p),
                    "isIncoming": !p.outgoing,
                    "isEncrypted": s.encrypted,
                    "isUTP": s.utp,
                    "isDownloadingFrom": s.am_interested && !s.peer_choking,
                    "isUploadingTo": s.peer_interested && !s.am_choking,
                    "clientIsChoked": s.am_choking,
                    "clientIsInterested": s.am_interested,
                    "peerIsChoked": s.peer_choking,
                    "peerIsInterested": s.peer_interested,
                    "progress": insides::peer_progress(d, p),
                    "rateToClient": s.download_rate,
                    "rateToPeer": s.upload_rate,
                })
            })
            .collect(),
    )
}

/// A text field of the torrent's metainfo, empty if absent or unknown.
fn metainfo_text(
    d: &Inside,
    get: impl Fn(&swarmer_proto::metainfo::Metainfo) -> Option<String>,
) -> String {
    d.metainfo.as_deref().and_then(get).unwrap_or_default()
}

/// Transmission `labels`: the category (if any), then the tags.
pub(super) fn labels(t: &Torrent) -> Vec<String> {
    t.category.iter().chain(&t.tags).cloned().collect()
}

/// `scheme://host[:port]` of a tracker URL, as `trackerStats.host` shows it.
pub(super) fn tracker_host(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    format!("{scheme}://{authority}")
}

/// One field of a torrent for `torrent-get`; `None` for a field swarmer does not know (skipped,
/// as Transmission skips unknown names). `inside` is given when a [`DETAIL_FIELDS`] one is asked.
pub(super) fn field(name: &str, t: &Torrent, inside: Option<&Inside>, now: u64) -> Option<Value> {
    let detail = inside.map(|d| &d.detail);
    let left = t.wanted_bytes.saturating_sub(t.done_bytes);
    let done = t.wanted_bytes > 0 && left == 0;
    let v = match name {
        "id" => json!(t.id),
        "name" => json!(t.name),
        "hashString" => json!(t.info_hash),
        "status" => json!(status_code(t.state, done)),
        "error" => json!(error_of(t, inside).0),
        "errorString" => json!(error_of(t, inside).1),
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
        "webseedsSendingToUs" => json!(t.web_seeds_sending),
        "bandwidthPriority" => json!(0),
        "peers" => peers(inside?),
        "pieces" => json!(insides::bitfield_base64(inside?)),
        "webseeds" => json!(detail?.web_seed_urls),
        "labels" => json!(labels(t)),
        "downloadDir" => json!(t.download_dir),
        "addedDate" => json!(t.added_at),
        "activityDate" => json!(if t.download_rate > 0 || t.upload_rate > 0 {
            now
        } else {
            t.completed_at.unwrap_or(t.added_at)
        }),
        "doneDate" => json!(t.completed_at.unwrap_or(0)),
        "startDate" | "secondsDownloading" | "secondsSeeding" => json!(0),
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
        // Transmission 4.1's name, and the camel-case one other clients use.
        "sequentialDownload" | "sequential_download" => json!(t.sequential),
        "magnetLink" => json!(detail?.magnet),
        "isPrivate" => json!(inside?.metainfo.as_ref().is_some_and(|m| m.info.private)),
        "creator" => json!(metainfo_text(inside?, |m| m.created_by.clone())),
        "comment" => json!(metainfo_text(inside?, |m| m.comment.clone())),
        "dateCreated" => json!(
            inside?
                .metainfo
                .as_ref()
                .and_then(|m| m.creation_date)
                .unwrap_or(0)
        ),
        "pieceCount" => json!(detail?.piece_count),
        "pieceSize" => json!(detail?.piece_length),
        "files" => Value::Array(
            detail?
                .files
                .iter()
                .zip(&inside?.file_done)
                .map(|(f, done)| {
                    json!({
                        "name": f.path,
                        "length": f.length,
                        "bytesCompleted": done,
                    })
                })
                .collect(),
        ),
        "fileStats" => Value::Array(
            detail?
                .files
                .iter()
                .zip(&inside?.file_done)
                .map(|(f, done)| {
                    json!({
                        "bytesCompleted": done,
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
        "trackerStats" => tracker_stats(inside?),
        _ => return None,
    };
    Some(v)
}

/// One torrent of a `torrent-get` reply: the listed view, or the details when a
/// [`DETAIL_FIELDS`] one was asked (newer than the list entry: one consistent view).
#[expect(
    clippy::large_enum_variant,
    reason = "`Listed` is the common case (10,000 in one listing): boxing it would cost an allocation each"
)]
pub(super) enum Item {
    /// The manager's list entry.
    Listed(Torrent),
    /// The torrent with its details.
    Detailed(Box<Inside>),
}

impl Item {
    fn torrent(&self) -> &Torrent {
        match self {
            Item::Listed(t) => t,
            Item::Detailed(d) => &d.detail.torrent,
        }
    }

    fn inside(&self) -> Option<&Inside> {
        match self {
            Item::Listed(_) => None,
            Item::Detailed(d) => Some(d),
        }
    }
}

/// The `arguments` of a `torrent-get` reply: `torrents` (objects, or with `format: "table"` the
/// field names and then one array per torrent) and, for `recently-active`, `removed`.
/// Serialized straight from the views, each field written as it is computed: no `Value` tree
/// per torrent (building one took a third of a 10,000-torrent listing's CPU in perf).
pub(super) struct TorrentRows {
    /// The fields asked, each once, in the order asked.
    fields: Vec<String>,
    /// `format: "table"`.
    table: bool,
    /// `ids: "recently-active"`: the reply has `removed`.
    recent: bool,
    /// The torrents.
    items: Vec<Item>,
    /// Unix seconds, for `activityDate`.
    now: u64,
}

impl TorrentRows {
    /// The rows of `items` with the fields `asked` (names that are not strings dropped, each
    /// name kept once, where first asked); `table` and `recent` as in the request; `now` in Unix
    /// seconds.
    pub(super) fn new(
        asked: &[Value],
        table: bool,
        recent: bool,
        items: Vec<Item>,
        now: u64,
    ) -> TorrentRows {
        let mut fields: Vec<String> = Vec::with_capacity(asked.len());
        for f in asked.iter().filter_map(Value::as_str) {
            if !fields.iter().any(|known| known == f) {
                fields.push(f.to_string());
            }
        }
        TorrentRows {
            fields,
            table,
            recent,
            items,
            now,
        }
    }
}

impl Serialize for TorrentRows {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1 + usize::from(self.recent)))?;
        map.serialize_entry("torrents", &Rows(self))?;
        if self.recent {
            // The daemon does not remember removals.
            map.serialize_entry("removed", &[(); 0])?;
        }
        map.end()
    }
}

/// `torrents` of a [`TorrentRows`].
struct Rows<'a>(&'a TorrentRows);

impl Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let rows = self.0;
        let mut seq = serializer.serialize_seq(Some(rows.items.len() + usize::from(rows.table)))?;
        if rows.table {
            seq.serialize_element(&rows.fields)?;
        }
        for item in &rows.items {
            seq.serialize_element(&Row { rows, item })?;
        }
        seq.end()
    }
}

/// One torrent of a [`TorrentRows`]: an object of the fields swarmer knows, or in a table an
/// array with `null` for the others.
struct Row<'a> {
    rows: &'a TorrentRows,
    item: &'a Item,
}

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (t, inside, now) = (self.item.torrent(), self.item.inside(), self.rows.now);
        let fields = &self.rows.fields;
        if self.rows.table {
            let mut seq = serializer.serialize_seq(Some(fields.len()))?;
            for f in fields {
                seq.serialize_element(&field(f, t, inside, now).unwrap_or(Value::Null))?;
            }
            seq.end()
        } else {
            let mut map = serializer.serialize_map(None)?;
            for f in fields {
                if let Some(v) = field(f, t, inside, now) {
                    map.serialize_entry(f, &v)?;
                }
            }
            map.end()
        }
    }
}

/// `torrent-get`: the `fields` of the torrents `ids` names.
pub(super) async fn torrent_get(
    manager: &Manager,
    args: &Map<String, Value>,
) -> Result<TorrentRows, (String, Map<String, Value>)> {
    let Some(asked) = args.get("fields").and_then(Value::as_array) else {
        return Err((
            "no fields specified".into(),
            object(json!({ "torrents": [] })),
        ));
    };
    if asked.len() > MAX_FIELDS {
        return Err((
            format!("at most {MAX_FIELDS} fields per request"),
            Map::new(),
        ));
    }
    let need_detail = asked
        .iter()
        .filter_map(Value::as_str)
        .any(|f| DETAIL_FIELDS.contains(&f));
    let table = args.get("format").and_then(Value::as_str) == Some("table");
    let recent = args.get("ids").and_then(Value::as_str) == Some("recently-active");
    let torrents = select(manager, args).await.map_err(|e| (e, Map::new()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut items = Vec::with_capacity(torrents.len());
    for t in torrents {
        if !need_detail {
            items.push(Item::Listed(t));
            continue;
        }
        match manager.details(t.id).await {
            Ok(d) => items.push(Item::Detailed(Box::new(d))),
            // Removed since the list was taken.
            Err(ManagerError::NotFound(_)) => continue,
            Err(e) => return Err(manager_error(e)),
        }
    }
    Ok(TorrentRows::new(asked, table, recent, items, now))
}
