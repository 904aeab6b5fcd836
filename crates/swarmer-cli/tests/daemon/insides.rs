//! A torrent's insides through the JSON API: `/peers`, `/trackers`, `/pieces` and the per-file
//! progress of the detail, while it downloads from a real seeder, once it is done, and once it
//! is paused (from the saved resume state); and their refusals.

use base64::Engine;
use serde_json::{Value, json};

use crate::api::{NO_TRACKER, SEEDER, expect_error, id_of, info_hash_hex, single, wait_torrent};
use crate::harness::{Daemon, DaemonOptions, expect_json, magnet};
use crate::netns::isolated;
use crate::scene::Scene;

/// The payload's size: 128 pieces of 16 KiB.
const LEN: u64 = 2 << 20;
/// Pieces in it.
const PIECES: u64 = LEN >> 14;

#[test]
fn peers_trackers_and_pieces_follow_a_download() {
    isolated(
        "insides::peers_trackers_and_pieces_follow_a_download",
        &[],
        run,
    );
}

fn run(scene: &Scene) {
    let (data, torrent) = single(scene, "payload", LEN, 7);
    let hash = info_hash_hex(&torrent);
    let seed_dir = data
        .root
        .parent()
        .expect("the payload's directory")
        .to_owned();
    let _seeder = crate::swarmer::seed_at(scene, "seeder", &torrent, &seed_dir, SEEDER);
    // Slow enough that the peer is seen while it sends.
    let daemon = Daemon::start(
        scene,
        DaemonOptions {
            args: vec!["--max-download-rate".into(), "512K".into()],
            ..DaemonOptions::default()
        },
    );
    // The tracker named in the link: a magnet's metadata (the info dictionary) holds none.
    let link = format!(
        "{}&tr={}",
        magnet(&hash, "payload", &[SEEDER]),
        NO_TRACKER.replace(':', "%3A").replace('/', "%2F")
    );
    let added = expect_json(
        daemon.post_json("/api/v1/torrents", &json!({ "magnet": link })),
        201,
        "POST",
        "the magnet link",
    );
    let id = id_of(&added);
    let path = |what: &str| format!("/api/v1/torrents/{id}/{what}");

    // The seeder, while it sends: we dialled it, we download from it, it has everything.
    let peer = scene
        .deadline
        .poll("the seeder to send", crate::api::POLL, || {
            let peers = daemon.get_json(&path("peers"));
            let peer = peers.as_array()?.first()?.clone();
            let flags = peer["flags"].as_str()?;
            (flags.contains('D') && peer["download_rate"].as_u64()? > 0).then_some(peer)
        });
    assert_eq!(peer["address"], SEEDER.to_string(), "{peer}");
    assert_eq!(peer["progress"], 1.0, "{peer}");
    assert_eq!(peer["incoming"], false, "{peer}");
    assert!(peer["encrypted"].is_boolean(), "{peer}");
    assert!(
        !peer["flags"].as_str().unwrap_or("I").contains('I'),
        "{peer}"
    );
    assert!(
        peer["upload_rate"].is_u64() && peer["client"].is_string(),
        "{peer}"
    );
    let pieces = daemon.get_json(&path("pieces"));
    assert_eq!(pieces["piece_count"], PIECES, "{pieces}");
    assert_eq!(bitfield(&pieces).len() as u64, PIECES / 8, "{pieces}");
    assert!(pieces["pieces_have"].as_u64() < Some(PIECES), "{pieces}");
    let trackers = daemon.get_json(&path("trackers"));
    let tracker = &trackers[0];
    assert_eq!(trackers.as_array().map(Vec::len), Some(1), "{trackers}");
    assert_eq!(tracker["url"], NO_TRACKER, "{tracker}");
    assert_eq!(tracker["tier"], 0, "{tracker}");
    assert!(
        ["waiting", "error"].contains(&tracker["status"].as_str().unwrap_or("")),
        "{tracker}"
    );
    // Nothing listens there: no counts, and a scrape, if one was made, failed.
    assert!(
        tracker["completed"].is_null() && tracker["seeders"].is_null(),
        "{tracker}"
    );
    assert_eq!(
        tracker["last_scrape"].is_null(),
        tracker["scrape_error"].is_null(),
        "{tracker}"
    );
    scene.mark(&format!("while downloading: {peer}, {tracker}"));

    // Done: every bit set, the file complete.
    wait_torrent(scene, &daemon, id, "done", |t| t["progress"] == 1.0);
    let pieces = daemon.get_json(&path("pieces"));
    assert_eq!(pieces["pieces_have"], PIECES, "{pieces}");
    assert!(bitfield(&pieces).iter().all(|&b| b == 0xff), "{pieces}");
    let detail = daemon.torrent(id);
    assert_eq!(detail["files"][0]["done_bytes"], LEN, "{detail}");

    // Paused: no peers, trackers inactive, pieces from the saved resume state.
    expect_json(daemon.post(&path("pause")), 200, "POST", "pause");
    wait_torrent(scene, &daemon, id, "paused", |t| t["state"] == "paused");
    assert_eq!(daemon.get_json(&path("peers")), json!([]));
    let trackers = daemon.get_json(&path("trackers"));
    assert_eq!(trackers[0]["status"], "inactive", "{trackers}");
    let pieces = daemon.get_json(&path("pieces"));
    assert_eq!(pieces["pieces_have"], PIECES, "{pieces}");
    assert_eq!(daemon.torrent(id)["files"][0]["done_bytes"], LEN);
    scene.mark("paused: no peers, trackers inactive, every piece from the resume state");

    // Refusals, and the OpenAPI document names the three.
    for what in ["peers", "trackers", "pieces"] {
        let unknown = format!("/api/v1/torrents/999/{what}");
        expect_error(
            daemon.send(daemon.request(reqwest::Method::GET, &unknown)),
            404,
            &unknown,
        );
        let bad = format!("/api/v1/torrents/x/{what}");
        expect_error(
            daemon.send(daemon.request(reqwest::Method::GET, &bad)),
            400,
            &bad,
        );
        let doc = daemon.get_json("/api/openapi.json");
        let documented: &Value = &doc["paths"][format!("/api/v1/torrents/{{id}}/{what}")]["get"];
        assert!(
            documented.is_object(),
            "{what} is not in the OpenAPI document"
        );
    }
}

/// The decoded `bitfield` of a `/pieces` answer.
fn bitfield(pieces: &Value) -> Vec<u8> {
    let text = pieces["bitfield"].as_str().expect("a bitfield");
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}
