//! Tests of the Transmission RPC's parsing and field mapping, without a daemon (the real
//! transmission-remote runs against one in `tests/daemon/rpc.rs`).

use std::collections::HashSet;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};
use swarmer::FilePriority;

use super::args::{Ids, MAX_IDS, as_bool, as_u64, parse_ids, selected, updated_limit};
use super::envelope::object;
use super::handshake::{SESSION_HEADER, handshake, process};
use super::torrent_actions::{FileChanges, full_priorities};
use super::torrent_add::decode_metainfo;
use super::torrent_get::{
    ETA_NOT_AVAILABLE, ETA_UNKNOWN, Item, TorrentRows, field, status_code, tracker_host,
};
use crate::daemon::model::{File, Inside, Priority, StateName, Torrent, TorrentDetail};

fn torrent() -> Torrent {
    Torrent {
        id: 7,
        info_hash: "0123456789abcdef0123456789abcdef01234567".into(),
        info_hash_v2: None,
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
        web_seeds: 2,
        web_seeds_sending: 1,
        eta_seconds: Some(1),
        added_at: 1_700_000_000,
        download_dir: "/data".into(),
        max_upload_rate: Some(50_000),
        max_download_rate: None,
        queue_position: 2,
        category: None,
        tags: Vec::new(),
        completed_at: None,
        sequential: true,
        first_last_piece: false,
    }
}

fn detail() -> TorrentDetail {
    let file = |index, path: &str, length, priority| File {
        index,
        path: path.into(),
        length,
        priority,
        mime_type: "application/octet-stream".into(),
        stream_url: format!("/api/v1/torrents/7/files/{index}/stream"),
        done_bytes: 0,
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
        web_seed_urls: vec!["http://127.0.0.1:8080/pub/".into()],
        piece_count: 4,
        piece_length: 1024,
        pieces_have: 2,
        magnet: "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567".into(),
        playlist_url: "/api/v1/torrents/7/playlist.m3u".into(),
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
    assert_eq!(get("sequentialDownload"), json!(true));
    assert_eq!(get("sequential_download"), json!(true));
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

fn inside() -> Inside {
    let mut have = swarmer_proto::Bitfield::new(4);
    have.set(0);
    have.set(2);
    Inside {
        detail: detail(),
        have: Some(have),
        file_done: vec![1000, 1024, 0],
        peers: vec![swarmer::PeerDetails {
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
                encrypted: true,
                utp: true,
                client: Some("libtorrent/2.0.8.0".into()),
            },
        }],
        tracker: Some(swarmer::tracker::AnnouncerStatus {
            last_error: Some("torrent not registered".into()),
            ..Default::default()
        }),
        metainfo: None,
        scrapes: Default::default(),
    }
}

#[test]
fn detail_fields_list_files_without_padding() {
    let d = inside();
    let get = |name| field(name, &d.detail.torrent, Some(&d), 0).unwrap();
    assert_eq!(get("priorities"), json!([0, 1, 0]));
    assert_eq!(get("wanted"), json!([1, 1, 0]));
    assert_eq!(
        get("files"),
        json!([
            {"name": "payload/a", "length": 1000, "bytesCompleted": 1000},
            {"name": "payload/b", "length": 2000, "bytesCompleted": 1024},
            {"name": "payload/c", "length": 1000, "bytesCompleted": 0},
        ])
    );
    assert_eq!(get("fileStats")[2]["wanted"], json!(false));
    assert_eq!(get("pieceCount"), json!(4));
    assert_eq!(get("webseeds"), json!(["http://127.0.0.1:8080/pub/"]));
    assert_eq!(get("webseedsSendingToUs"), json!(1));
    let stats = get("trackerStats");
    assert_eq!(stats[0]["host"], json!("http://127.0.0.1:6969"));
    assert_eq!(
        stats[0]["lastAnnounceResult"],
        json!("torrent not registered")
    );
    assert_eq!(stats[0]["lastAnnounceSucceeded"], json!(false));
    // A tracker's refusal shows as Transmission's tracker error.
    assert_eq!(get("error"), json!(2));
    assert_eq!(get("errorString"), json!("torrent not registered"));
    assert_eq!(get("peers")[0]["address"], json!("127.0.0.9"));
    assert_eq!(get("peers")[0]["isIncoming"], json!(true));
    // Per-peer numbers come from the engine: over uTP (T, first as Transmission puts it),
    // downloading from it (D), encrypted (E), incoming (I).
    assert_eq!(get("peers")[0]["clientName"], json!("libtorrent/2.0.8.0"));
    assert_eq!(get("peers")[0]["flagStr"], json!("TDEI"));
    assert_eq!(get("peers")[0]["isUTP"], json!(true));
    assert_eq!(get("peers")[0]["isEncrypted"], json!(true));
    assert_eq!(get("peers")[0]["rateToClient"], json!(2048));
    assert_eq!(get("peers")[0]["progress"], json!(0.75));
    assert_eq!(get("peers")[0]["isDownloadingFrom"], json!(true));
    // Pieces 0 and 2 of 4: 0b1010_0000.
    assert_eq!(get("pieces"), json!("oA=="));
    let mut labelled = d.detail.torrent.clone();
    labelled.category = Some("tv".into());
    labelled.tags = vec!["hd".into()];
    assert_eq!(
        field("labels", &labelled, None, 0),
        Some(json!(["tv", "hd"]))
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

#[test]
fn torrent_get_rows_have_each_known_field_once() {
    let asked = [
        json!("id"),
        json!("name"),
        json!("id"),
        json!("nonsense"),
        json!(5),
    ];
    let rows = |table, recent| {
        let items = vec![Item::Listed(torrent())];
        serde_json::to_value(TorrentRows::new(&asked, table, recent, items, 0)).unwrap()
    };
    assert_eq!(
        rows(false, false),
        json!({ "torrents": [{ "id": 7, "name": "payload" }] })
    );
    assert_eq!(
        rows(true, true),
        json!({
            "torrents": [["id", "name", "nonsense"], [7, "payload", null]],
            "removed": [],
        })
    );
}
