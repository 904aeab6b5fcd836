//! The daemon's JSON API as a client sees it (the contract in the daemon's `api.rs`): adding by
//! upload and by magnet link, listing, pausing, resuming, file priorities, limits, categories,
//! settings that survive a restart, removal with and without the data, the event stream; every refusal (bad
//! JSON, wrong type, unknown or malformed ids, oversized uploads, a race of duplicate adds, CSRF,
//! foreign Host, the token); the `swarmer add/list/remove` client; the watch folder; and a
//! `kill -9` in the middle of a download, after which the daemon restarts on its saved state and
//! finishes with byte-identical files.

use std::io::BufRead;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::blocking::{Response, multipart};
use serde_json::{Value, json};

use crate::harness::{Daemon, DaemonOptions, expect_json, magnet};
use crate::netns::isolated;
use crate::payload::{self, Payload};
use crate::procs::Proc;
use crate::scene::Scene;

/// A tracker URL where nothing listens (the namespace holds only `lo`): these torrents find no
/// peers through it, and need none.
pub(crate) const NO_TRACKER: &str = "http://127.0.0.1:9/announce";
/// How often a test re-reads the daemon's state while it waits for a change.
pub(crate) const POLL: Duration = Duration::from_millis(100);
/// A seeder for the tests that download: `swarmer seed` on its own address.
pub(crate) const SEEDER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(127, 0, 0, 30),
    6899,
));
/// 40 hex digits of an info hash nobody has: a magnet link that stays fetching its metadata.
const UNKNOWN_HASH: &str = "0123456789abcdef0123456789abcdef01234567";

/// A one-file payload of `len` bytes under `scene/NAME-data` and its torrent (16 KiB pieces,
/// [`NO_TRACKER`]) at `scene/NAME.torrent`.
pub(crate) fn single(scene: &Scene, name: &str, len: u64, seed: u64) -> (Payload, PathBuf) {
    let parent = scene.subdir(&format!("{name}-data"));
    let payload = payload::single_file(&parent, name, len, seed);
    let torrent = payload.make_torrent(
        &scene.dir.join(format!("{name}.torrent")),
        14,
        &[NO_TRACKER],
    );
    (payload, torrent)
}

/// The info hash of the torrent file at `torrent`, 40 lowercase hex digits.
pub(crate) fn info_hash_hex(torrent: &Path) -> String {
    let bytes = std::fs::read(torrent).expect("read the torrent");
    crate::tracker::hex(&crate::bencode::info_hash(&bytes))
}

/// A multipart form holding `bytes` as the file field `torrent`.
fn torrent_form(bytes: Vec<u8>) -> multipart::Form {
    let part = multipart::Part::bytes(bytes)
        .file_name("upload.torrent")
        .mime_str("application/x-bittorrent")
        .expect("mime type");
    multipart::Form::new().part("torrent", part)
}

pub(crate) fn id_of(torrent: &Value) -> u64 {
    torrent["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no id in {torrent}"))
}

fn state_of(torrent: &Value) -> &str {
    torrent["state"]
        .as_str()
        .unwrap_or_else(|| panic!("no state in {torrent}"))
}

/// Re-reads torrent `id` until `done` holds for it, and returns it (bounded by the test's deadline).
pub(crate) fn wait_torrent(
    scene: &Scene,
    daemon: &Daemon,
    id: u64,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let what = format!("torrent {id} to be {what}");
    scene.deadline.poll(&what, POLL, || {
        let torrent = daemon.torrent(id);
        done(&torrent).then_some(torrent)
    })
}

/// Asserts `response` is an error with `status` and the contract's `{"error": "..."}` body, and
/// returns the body.
pub(crate) fn expect_error(response: Response, status: u16, what: &str) -> Value {
    let got = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    assert_eq!(got, status, "{what} answered {got}: {text}");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: the error is not JSON ({e}): {text}"));
    assert!(
        body["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no error message in {body}"
    );
    body
}

/// Starts a daemon again on the directories of one that has stopped (or was killed).
fn restart(scene: &Scene, download_dir: &Path, state_dir: &Path, args: &[&str]) -> Daemon {
    Daemon::start(
        scene,
        DaemonOptions {
            download_dir: Some(download_dir.to_owned()),
            state_dir: Some(state_dir.to_owned()),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            ..DaemonOptions::default()
        },
    )
}

#[test]
fn torrents_are_added_listed_paused_resumed_and_configured() {
    isolated(
        "api::torrents_are_added_listed_paused_resumed_and_configured",
        &[],
        |scene| {
            let parent = scene.subdir("multi-data");
            let multi = payload::multi_file(&parent, "multi", 7);
            let torrent = multi.make_torrent(&scene.dir.join("multi.torrent"), 14, &[NO_TRACKER]);
            let hash = info_hash_hex(&torrent);
            let daemon = Daemon::start(scene, DaemonOptions::default());
            assert_eq!(
                daemon.torrents(),
                Vec::<Value>::new(),
                "a new daemon is empty"
            );

            // By upload (multipart), as the web UI and `swarmer add` send it.
            let added = daemon.add_torrent_file(&torrent);
            let id = id_of(&added);
            assert_eq!(added["info_hash"], hash.as_str());
            assert_eq!(added["name"], "multi");
            let total: u64 = multi.files.iter().map(|(_, len)| len).sum();
            assert_eq!(added["total_bytes"], total);
            assert_eq!(
                added["download_dir"],
                daemon.download_dir.display().to_string()
            );
            let listed = daemon.torrents();
            assert_eq!(listed.len(), 1);
            assert_eq!(id_of(&listed[0]), id);
            let detail = daemon.torrent(id);
            assert_eq!(detail["piece_length"], 16_384);
            assert_eq!(detail["trackers"], json!([NO_TRACKER]));
            assert!(
                detail["magnet"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(&format!("magnet:?xt=urn:btih:{hash}"))),
                "{detail}"
            );
            let files = detail["files"].as_array().expect("files");
            assert_eq!(files.len(), multi.files.len(), "{detail}");
            assert_eq!(files[0]["path"], "multi/a.bin");
            assert_eq!(files[3]["path"], "multi/dir1/dir2/b.bin");
            assert!(files.iter().all(|f| f["priority"] == "normal"), "{detail}");
            // No peer has it, so it downloads for ever.
            wait_torrent(scene, &daemon, id, "downloading", |t| {
                state_of(t) == "downloading"
            });
            scene.mark("added by upload; it downloads");

            // Pause and resume.
            let paused = expect_json(
                daemon.post(&format!("/api/v1/torrents/{id}/pause")),
                200,
                "POST",
                "pause",
            );
            assert_eq!(state_of(&paused), "paused");
            assert_eq!(state_of(&daemon.torrent(id)), "paused");
            assert_eq!(daemon.get_json("/api/v1/session")["paused"], 1);
            let resumed = expect_json(
                daemon.post(&format!("/api/v1/torrents/{id}/resume")),
                200,
                "POST",
                "resume",
            );
            assert_ne!(state_of(&resumed), "paused", "{resumed}");
            wait_torrent(scene, &daemon, id, "downloading again", |t| {
                state_of(t) == "downloading"
            });
            assert_eq!(daemon.get_json("/api/v1/session")["paused"], 0);
            scene.mark("paused and resumed");

            // File priorities: one per file, else 422.
            let path = format!("/api/v1/torrents/{id}/files");
            expect_error(
                daemon.put_json(&path, &json!({ "priorities": ["high", "skip"] })),
                422,
                "two priorities for eight files",
            );
            let wanted = [
                "high", "normal", "low", "normal", "skip", "high", "skip", "normal",
            ];
            let detail = expect_json(
                daemon.put_json(&path, &json!({ "priorities": wanted })),
                200,
                "PUT",
                &path,
            );
            let got: Vec<&str> = detail["files"]
                .as_array()
                .expect("files")
                .iter()
                .map(|f| f["priority"].as_str().expect("priority"))
                .collect();
            assert_eq!(got, wanted);
            // dir3/d.bin (3 MiB) is skipped: the running torrent stops wanting most of it.
            let skipped = detail["files"][6]["length"].as_u64().expect("length");
            wait_torrent(scene, &daemon, id, "wanting less", |t| {
                let (wanted, total) = (t["wanted_bytes"].as_u64(), t["total_bytes"].as_u64());
                // Pieces it shares with its neighbours (at most two) stay wanted.
                wanted
                    .zip(total)
                    .is_some_and(|(w, t)| (t - skipped..=t - skipped + 2 * 16_384).contains(&w))
            });
            expect_error(
                daemon.put_json(&path, &json!({ "priorities": vec!["urgent"; 8] })),
                400,
                "an unknown priority",
            );
            scene.mark("file priorities set; a wrong count is 422");

            // Per-torrent limits.
            let path = format!("/api/v1/torrents/{id}/limits");
            let limited = expect_json(
                daemon.put_json(
                    &path,
                    &json!({ "max_upload_rate": 100_000, "max_download_rate": 200_000 }),
                ),
                200,
                "PUT",
                &path,
            );
            assert_eq!(limited["max_upload_rate"], 100_000);
            assert_eq!(limited["max_download_rate"], 200_000);
            assert_eq!(daemon.torrent(id)["max_download_rate"], 200_000);
            let cleared = expect_json(
                daemon.put_json(&path, &json!({ "max_upload_rate": null })),
                200,
                "PUT",
                &path,
            );
            assert_eq!(cleared["max_upload_rate"], Value::Null);
            assert_eq!(cleared["max_download_rate"], Value::Null);
            scene.mark("limits set and cleared");

            // A category, created as it is set; none again; an unknown id is 404.
            let path = format!("/api/v1/torrents/{id}/category");
            let put = |category: Value| {
                expect_json(
                    daemon.put_json(&path, &json!({ "category": category })),
                    200,
                    "PUT",
                    &path,
                )
            };
            assert_eq!(put(json!("linux"))["category"], "linux");
            assert_eq!(daemon.torrent(id)["category"], "linux");
            assert_eq!(put(Value::Null)["category"], Value::Null);
            let unknown = "/api/v1/torrents/999/category";
            let answer = daemon.put_json(unknown, &json!({ "category": "x" }));
            expect_error(answer, 404, "the category of an unknown id");
            scene.mark("category set, created, cleared");

            // By the URL of a .torrent, into a category; a URL and a magnet at once, or a URL
            // that is not http(s), is 400.
            let web = SocketAddr::from(([127, 0, 0, 40], 8080));
            let _web = crate::rpc::http_server(scene, &scene.dir, web);
            single(scene, "by-url", 20_000, 9);
            let url = format!("http://{web}/by-url.torrent");
            let by_url = expect_json(
                daemon.post_json(
                    "/api/v1/torrents",
                    &json!({ "url": url, "category": "web" }),
                ),
                201,
                "POST",
                "a .torrent by URL",
            );
            assert_eq!(
                (&by_url["name"], &by_url["category"]),
                (&json!("by-url"), &json!("web"))
            );
            for (body, what) in [
                (
                    json!({ "url": url, "magnet": magnet(UNKNOWN_HASH, "x", &[]) }),
                    "both",
                ),
                (json!({ "url": "ftp://127.0.0.1/x.torrent" }), "an ftp URL"),
                (json!({ "paused": true }), "neither"),
            ] {
                expect_error(daemon.post_json("/api/v1/torrents", &body), 400, what);
            }
            let removed = daemon.delete(&format!("/api/v1/torrents/{}", id_of(&by_url)));
            assert_eq!(
                removed.status().as_u16(),
                204,
                "removing the torrent added by URL"
            );
            scene.mark("added by URL into a category; ambiguous or foreign URLs are 400");

            // By magnet link (JSON); a duplicate by either way is 409 naming the existing id.
            let link = magnet(UNKNOWN_HASH, "by-magnet", &[]);
            let by_magnet = expect_json(
                daemon.post_json("/api/v1/torrents", &json!({ "magnet": link })),
                201,
                "POST",
                "a magnet link",
            );
            assert_eq!(by_magnet["name"], "by-magnet");
            assert_eq!(by_magnet["info_hash"], UNKNOWN_HASH);
            assert_eq!(state_of(&by_magnet), "fetching_metadata");
            let again = expect_error(
                daemon.post_json("/api/v1/torrents", &json!({ "magnet": link })),
                409,
                "the same magnet link again",
            );
            assert_eq!(again["id"], id_of(&by_magnet));
            let bytes = std::fs::read(&torrent).expect("read torrent");
            let again = expect_error(
                daemon.post_multipart("/api/v1/torrents", torrent_form(bytes)),
                409,
                "the same upload again",
            );
            assert_eq!(again["id"], id);
            assert_eq!(daemon.torrents().len(), 2);
            let stats = daemon.get_json("/api/v1/session");
            assert_eq!(stats["torrents"], 2);
            assert_eq!(stats["listen_port"], crate::harness::PEER_PORT);
            // The harness passes --no-port-mapping.
            assert_eq!(stats["port_mapping"], "off");
            assert_eq!(stats["external_ip"], Value::Null);
            scene.mark("added by magnet; duplicates are 409");

            // The event stream sends the list at once.
            let started = Instant::now();
            let list = first_event(&daemon, "torrents", Duration::from_secs(3));
            assert!(started.elapsed() < Duration::from_secs(3));
            let list: Value = serde_json::from_str(&list).expect("event data is JSON");
            assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
            scene.mark(&format!(
                "`event: torrents` after {:.2}s",
                started.elapsed().as_secs_f64()
            ));
            daemon.stop();
        },
    );
}

/// Opens `GET /api/v1/events` and returns the data of the first event named `name`, reading for at
/// most `within`.
fn first_event(daemon: &Daemon, name: &str, within: Duration) -> String {
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(within)
        .build()
        .expect("HTTP client");
    let response = client
        .get(format!("{}/api/v1/events", daemon.url()))
        .send()
        .expect("GET /api/v1/events");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let wanted = format!("event: {name}");
    let mut in_event = false;
    for line in std::io::BufReader::new(response).lines() {
        let line = line.unwrap_or_else(|e| panic!("no `{wanted}` within {within:?}: {e}"));
        if in_event {
            if let Some(data) = line.strip_prefix("data:") {
                return data.trim().to_owned();
            }
        }
        // A blank line ends an event.
        in_event = line.trim_end() == wanted || (in_event && !line.trim().is_empty());
    }
    panic!("the event stream ended before `{wanted}`");
}

#[test]
fn settings_ids_and_paused_torrents_survive_a_restart() {
    isolated(
        "api::settings_ids_and_paused_torrents_survive_a_restart",
        &[],
        |scene| {
            let (_, first) = single(scene, "first", 100_000, 1);
            let (_, second) = single(scene, "second", 100_000, 2);
            let daemon = Daemon::start(scene, DaemonOptions::default());
            let (download_dir, state_dir) = (daemon.download_dir.clone(), daemon.state_dir.clone());
            let settings = daemon.get_json("/api/v1/settings");
            assert_eq!(settings["max_active_downloads"], 5, "{settings}");
            assert_eq!(settings["max_upload_rate"], Value::Null);
            assert_eq!(settings["download_dir"], download_dir.display().to_string());
            assert_eq!(settings["encryption"], "prefer");

            let changed = expect_json(
                daemon.put_json(
                    "/api/v1/settings",
                    &json!({ "max_upload_rate": 500_000, "max_active_seeds": 3,
                             "max_active_downloads": null, "encryption": "require" }),
                ),
                200,
                "PUT",
                "/api/v1/settings",
            );
            assert_eq!(changed["max_upload_rate"], 500_000);
            assert_eq!(changed["max_download_rate"], Value::Null);
            assert_eq!(changed["max_active_seeds"], 3);
            assert_eq!(changed["max_active_downloads"], Value::Null);
            assert_eq!(changed["encryption"], "require");
            expect_error(
                daemon.put_json(
                    "/api/v1/settings",
                    &json!({ "download_dir": "relative/dir" }),
                ),
                422,
                "a relative download_dir",
            );
            assert_eq!(daemon.get_json("/api/v1/settings"), changed);

            // One torrent added paused, with limits; one removed, so its id is taken.
            let form = torrent_form(std::fs::read(&first).expect("read")).text("paused", "true");
            let paused = expect_json(
                daemon.post_multipart("/api/v1/torrents", form),
                201,
                "POST",
                "a paused upload",
            );
            assert_eq!(state_of(&paused), "paused");
            let paused_id = id_of(&paused);
            let path = format!("/api/v1/torrents/{paused_id}/limits");
            let limits = json!({ "max_upload_rate": 1234, "max_download_rate": 5678 });
            expect_json(daemon.put_json(&path, &limits), 200, "PUT", &path);
            let removed = id_of(&daemon.add_torrent_file(&second));
            let response = daemon.delete(&format!("/api/v1/torrents/{removed}"));
            assert_eq!(response.status(), 204);
            daemon.stop();
            scene.mark("settings changed, one torrent paused, one removed; stopped");

            let daemon = restart(scene, &download_dir, &state_dir, &[]);
            assert_eq!(daemon.get_json("/api/v1/settings"), changed);
            let listed = daemon.torrents();
            assert_eq!(listed.len(), 1, "{listed:?}");
            let restored = &listed[0];
            assert_eq!(id_of(restored), paused_id);
            assert_eq!(state_of(restored), "paused");
            assert_eq!(restored["name"], "first");
            assert_eq!(restored["max_upload_rate"], 1234);
            assert_eq!(restored["max_download_rate"], 5678);
            assert_eq!(restored["added_at"], paused["added_at"]);
            // Ids are never reused, not even the removed torrent's.
            let new_id = id_of(&daemon.add_torrent_file(&second));
            assert!(new_id > removed, "id {new_id} after {removed} was removed");
            daemon.stop();
        },
    );
}

#[test]
fn remove_keeps_or_deletes_the_data() {
    isolated("api::remove_keeps_or_deletes_the_data", &[], |scene| {
        let daemon = Daemon::start(scene, DaemonOptions::default());
        // The data is already in the download directory, so the torrent seeds after its check.
        let multi = payload::multi_file(&daemon.download_dir, "multi", 3);
        let torrent = multi.make_torrent(&scene.dir.join("multi.torrent"), 14, &[NO_TRACKER]);
        let bystander = daemon.download_dir.join("not-a-torrent-file.txt");
        std::fs::write(&bystander, "kept").expect("write");

        let id = id_of(&daemon.add_torrent_file(&torrent));
        let seeding = wait_torrent(scene, &daemon, id, "seeding", |t| state_of(t) == "seeding");
        assert_eq!(seeding["progress"], 1.0);
        let response = daemon.delete(&format!("/api/v1/torrents/{id}?delete_data=false"));
        assert_eq!(response.status(), 204);
        expect_error(
            daemon.send(daemon.request(Method::GET, &format!("/api/v1/torrents/{id}"))),
            404,
            "a removed torrent",
        );
        assert_eq!(daemon.torrents().len(), 0);
        multi.assert_same(&multi.root);
        scene.mark("removed; the files stay");

        let id = id_of(&daemon.add_torrent_file(&torrent));
        wait_torrent(scene, &daemon, id, "seeding", |t| state_of(t) == "seeding");
        let response = daemon.delete(&format!("/api/v1/torrents/{id}?delete_data=true"));
        assert_eq!(response.status(), 204);
        assert!(
            !multi.root.exists(),
            "{} is still there after delete_data=true",
            multi.root.display()
        );
        assert!(bystander.exists(), "a file of no torrent was deleted");
        assert!(daemon.download_dir.is_dir());
        expect_error(
            daemon.delete(&format!("/api/v1/torrents/{id}")),
            404,
            "removing twice",
        );
        scene.mark("removed with its data; nothing else touched");
        daemon.stop();
    });
}

#[test]
fn bad_requests_are_refused_with_json_errors() {
    isolated(
        "api::bad_requests_are_refused_with_json_errors",
        &[],
        |scene| {
            let daemon = Daemon::start(scene, DaemonOptions::default());
            let post_raw = |path: &str, content_type: &str, body: Vec<u8>| {
                daemon.send(
                    daemon
                        .request(Method::POST, path)
                        .header("content-type", content_type)
                        .body(body),
                )
            };
            let torrents = "/api/v1/torrents";
            expect_error(
                post_raw(torrents, "application/json", b"{\"magnet\": ".to_vec()),
                400,
                "malformed JSON",
            );
            expect_error(
                post_raw(torrents, "application/json", b"{\"magnet\": 7}".to_vec()),
                400,
                "a number for the magnet link",
            );
            expect_error(
                post_raw(
                    torrents,
                    "text/plain",
                    br#"{"magnet": "magnet:?"}"#.to_vec(),
                ),
                415,
                "JSON sent as text/plain",
            );
            expect_error(
                daemon.send(
                    daemon
                        .request(Method::PUT, "/api/v1/settings")
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body("max_upload_rate=1"),
                ),
                415,
                "settings as a form",
            );
            expect_error(
                daemon.post_json(torrents, &json!({ "magnet": "magnet:?dn=no-hash" })),
                400,
                "a magnet link without an info hash",
            );
            expect_error(
                daemon.post_json(
                    torrents,
                    &json!({ "magnet": magnet(UNKNOWN_HASH, "x", &[]), "download_dir": "rel" }),
                ),
                400,
                "a relative download_dir",
            );
            scene.mark("bad JSON 400, wrong type 415");

            for (method, path) in [
                (Method::GET, "/api/v1/torrents/999"),
                (Method::POST, "/api/v1/torrents/999/pause"),
                (Method::POST, "/api/v1/torrents/999/resume"),
                (Method::DELETE, "/api/v1/torrents/999"),
            ] {
                let what = format!("{method} {path}");
                expect_error(daemon.send(daemon.request(method, path)), 404, &what);
            }
            expect_error(
                daemon.put_json("/api/v1/torrents/999/limits", &json!({})),
                404,
                "limits of an unknown id",
            );
            expect_error(
                daemon.put_json("/api/v1/torrents/999/files", &json!({ "priorities": [] })),
                404,
                "files of an unknown id",
            );
            for path in [
                "/api/v1/torrents/abc",
                "/api/v1/torrents/-1",
                "/api/v1/torrents/1.5",
                "/api/v1/torrents/99999999999999999999999",
            ] {
                expect_error(daemon.send(daemon.request(Method::GET, path)), 400, path);
            }
            expect_error(
                daemon.send(daemon.request(Method::GET, "/api/v2/nothing")),
                404,
                "an unknown endpoint",
            );
            scene.mark("unknown ids 404, malformed ids 400");

            for (what, bytes) in [
                ("garbage", b"this is not bencode".to_vec()),
                ("an empty file", Vec::new()),
                ("a dictionary without info", b"d8:announce3:urle".to_vec()),
                (
                    "an info without pieces",
                    b"d4:infod6:lengthi5e4:name1:a12:piece lengthi16384eee".to_vec(),
                ),
            ] {
                expect_error(
                    daemon.post_multipart(torrents, torrent_form(bytes)),
                    400,
                    &format!("{what} as a .torrent"),
                );
            }
            expect_error(
                daemon.post_multipart(torrents, multipart::Form::new().text("paused", "true")),
                400,
                "a form without the torrent field",
            );
            scene.mark("invalid .torrent uploads 400");

            // 100 MB: refused without being stored, and the daemon still answers.
            let started = Instant::now();
            for content_type in ["multipart/form-data; boundary=x", "application/json"] {
                for send_body in [false, true] {
                    let (status, body) =
                        post_oversized(&daemon, content_type, 100_000_000, send_body);
                    assert_eq!(status, 413, "100 MB of {content_type}: {body}");
                    let body: Value = serde_json::from_str(&body).expect("a JSON error");
                    assert!(body["error"].is_string(), "{body}");
                }
            }
            assert_eq!(daemon.torrents().len(), 0);
            scene.mark(&format!(
                "100 MB uploads 413 in {:.2}s; the daemon still answers",
                started.elapsed().as_secs_f64()
            ));

            // CSRF: the custom header on every state-changing request, and no foreign Origin.
            let body = json!({ "magnet": magnet(UNKNOWN_HASH, "csrf", &[]) }).to_string();
            expect_error(
                daemon.send(
                    daemon
                        .raw(Method::POST, torrents)
                        .header("content-type", "application/json")
                        .body(body.clone()),
                ),
                403,
                "a POST without X-Requested-By",
            );
            expect_error(
                daemon.send(daemon.raw(Method::DELETE, "/api/v1/torrents/1")),
                403,
                "a DELETE without X-Requested-By",
            );
            expect_error(
                daemon.send(
                    daemon
                        .request(Method::POST, torrents)
                        .header("origin", "http://evil.example:8080")
                        .header("content-type", "application/json")
                        .body(body.clone()),
                ),
                403,
                "a cross-origin POST",
            );
            expect_error(
                daemon.send(
                    daemon
                        .request(Method::POST, "/api/v1/torrents/999/pause")
                        .header("origin", daemon.url()),
                ),
                404,
                "a same-origin POST (past the guard)",
            );
            assert_eq!(
                daemon.torrents().len(),
                0,
                "a refused request added a torrent"
            );
            scene.mark("CSRF refused with 403");

            // DNS rebinding: a Host that is not this daemon's.
            let port = daemon.http_port();
            for host in [
                format!("evil.example:{port}"),
                "127.0.0.1.evil.example".into(),
            ] {
                expect_error(
                    daemon.send(daemon.raw(Method::GET, torrents).header("host", &host)),
                    421,
                    &format!("Host: {host}"),
                );
            }
            for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
                let response = daemon.send(daemon.raw(Method::GET, torrents).header("host", &host));
                assert_eq!(response.status(), 200, "Host: {host}");
            }
            scene.mark("foreign Host 421");

            let doc = daemon.get_json("/api/openapi.json");
            assert!(
                doc["openapi"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("3.1")),
                "{}",
                doc["openapi"]
            );
            for path in [
                "/api/v1/torrents",
                "/api/v1/torrents/{id}",
                "/api/v1/settings",
                "/api/v1/events",
            ] {
                assert!(doc["paths"].get(path).is_some(), "the OpenAPI lacks {path}");
            }
            assert!(doc["components"]["schemas"].get("Torrent").is_some());
            daemon.stop();
        },
    );
}

/// Sends `POST /api/v1/torrents` declaring a `len`-byte body of `content_type`, and returns the
/// status and body of the answer. With `send_body` the body is written as curl does, from another
/// thread while the answer is read, so an answer sent before the body is all there is heard
/// (reqwest reports only the reset that follows it); without, the daemon must answer from the
/// declared length alone.
fn post_oversized(
    daemon: &Daemon,
    content_type: &str,
    len: usize,
    send_body: bool,
) -> (u16, String) {
    use std::io::{Read, Write};
    let addr: SocketAddr = daemon.url()["http://".len()..].parse().expect("address");
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).expect("connect");
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    stream.set_write_timeout(Some(timeout)).expect("timeout");
    let head = format!(
        "POST /api/v1/torrents HTTP/1.1\r\nHost: {addr}\r\nX-Requested-By: swarmer\r\n\
         Content-Type: {content_type}\r\nContent-Length: {len}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("send the head");
    let mut writer = stream.try_clone().expect("clone the socket");
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 << 10];
        let mut left = if send_body { len } else { 0 };
        while left > 0 {
            let n = left.min(chunk.len());
            if writer.write_all(&chunk[..n]).is_err() {
                return; // The daemon closed the connection, as it may after answering.
            }
            left -= n;
        }
    });
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let answer = loop {
        if let Some(answer) = parse_response(&received) {
            break answer;
        }
        match stream.read(&mut buf) {
            Ok(0) => panic!("the connection ended before a whole answer: {received:?}"),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer to {len} bytes of {content_type}: {e}"),
        }
    };
    let _ = stream.shutdown(std::net::Shutdown::Both);
    sender.join().expect("the sending thread");
    answer
}

/// The status and body of a whole HTTP/1.1 response with a `Content-Length` in `bytes`, if all of
/// it is there.
fn parse_response(bytes: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())?;
    (body.len() >= len).then(|| (status, body[..len].to_owned()))
}

#[test]
fn one_torrent_added_by_eight_threads_at_once_is_added_once() {
    isolated(
        "api::one_torrent_added_by_eight_threads_at_once_is_added_once",
        &[],
        |scene| {
            let (_, torrent) = single(scene, "race", 300_000, 5);
            let bytes = std::fs::read(&torrent).expect("read");
            let daemon = Daemon::start(scene, DaemonOptions::default());
            const THREADS: usize = 8;
            let barrier = Barrier::new(THREADS);
            let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
                let workers: Vec<_> = (0..THREADS)
                    .map(|_| {
                        // Built here: the daemon's process handle stays on this thread.
                        let request = daemon
                            .request(Method::POST, "/api/v1/torrents")
                            .multipart(torrent_form(bytes.clone()));
                        let barrier = &barrier;
                        s.spawn(move || {
                            barrier.wait();
                            let response = request.send().expect("an answer");
                            let status = response.status().as_u16();
                            (status, response.json::<Value>().expect("a JSON answer"))
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().expect("worker"))
                    .collect()
            });
            let created: Vec<&Value> = answers
                .iter()
                .filter(|(s, _)| *s == 201)
                .map(|(_, v)| v)
                .collect();
            assert_eq!(created.len(), 1, "{answers:?}");
            let id = id_of(created[0]);
            let conflicts = answers.iter().filter(|(s, v)| *s == 409 && v["id"] == id);
            assert_eq!(conflicts.count(), THREADS - 1, "{answers:?}");
            let listed = daemon.torrents();
            assert_eq!(listed.len(), 1, "{listed:?}");
            assert_eq!(id_of(&listed[0]), id);
            daemon.stop();
        },
    );
}

#[test]
fn a_token_when_set_is_required() {
    isolated("api::a_token_when_set_is_required", &[], |scene| {
        const TOKEN: &str = "test-token-7d1f";
        let daemon = Daemon::start(
            scene,
            DaemonOptions {
                token: Some(TOKEN.to_owned()),
                ..DaemonOptions::default()
            },
        );
        let get = |path: &str| daemon.raw(Method::GET, path);
        let path = "/api/v1/torrents";
        expect_error(daemon.send(get(path)), 401, "no token");
        expect_error(
            daemon.send(get("/api/openapi.json")),
            401,
            "the OpenAPI document without the token",
        );
        expect_error(
            daemon.send(get(path).bearer_auth("wrong")),
            401,
            "a wrong bearer",
        );
        expect_error(
            daemon.send(get(path).basic_auth("admin", Some("wrong"))),
            401,
            "a wrong Basic password",
        );
        let ok = |response: Response, what: &str| {
            assert_eq!(response.status(), 200, "{what}");
            assert_eq!(response.json::<Value>().expect("JSON"), json!([]), "{what}");
        };
        ok(daemon.send(get(path).bearer_auth(TOKEN)), "Bearer");
        ok(
            daemon.send(get(path).basic_auth("anyone", Some(TOKEN))),
            "Basic with the token as password",
        );
        // The token does not replace the CSRF header.
        expect_error(
            daemon.send(
                daemon
                    .raw(Method::POST, "/api/v1/torrents/1/pause")
                    .bearer_auth(TOKEN),
            ),
            403,
            "a POST with the token but no X-Requested-By",
        );

        // The login exchanges the token for a cookie.
        let login = |token: &str| {
            daemon.send(
                daemon
                    .raw(Method::POST, "/api/v1/login")
                    .header("X-Requested-By", "swarmer")
                    .json(&json!({ "token": token })),
            )
        };
        expect_error(login("wrong"), 401, "a login with a wrong token");
        let response = login(TOKEN);
        assert_eq!(response.status(), 204);
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .expect("a Set-Cookie header")
            .to_owned();
        for attribute in ["HttpOnly", "SameSite=Strict"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        let pair = cookie.split(';').next().expect("name=value").to_owned();
        assert_eq!(pair, format!("swarmer_token={TOKEN}"));
        ok(
            daemon.send(get(path).header("cookie", &pair)),
            "the login cookie",
        );
        expect_error(
            daemon.send(get(path).header("cookie", "swarmer_token=wrong")),
            401,
            "a forged cookie",
        );
        daemon.stop();
    });
}

/// Runs `swarmer ARGS` (the daemon's client) as process `name`, and returns its stdout if it
/// exits 0 within the test's deadline; `Err(stderr)` if it fails.
fn run_cli(scene: &Scene, name: &str, args: &[&str]) -> Result<String, String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarmer"));
    command
        .args(args)
        .env_remove("SWARMER_TOKEN")
        .env_remove("SWARMER_URL")
        .env("XDG_STATE_HOME", scene.dir.join("cli-state"));
    let mut proc = Proc::spawn(name, &mut command, &scene.logs);
    let status = proc
        .wait_exit(scene.deadline)
        .unwrap_or_else(|| panic!("`swarmer {}` did not exit", args.join(" ")));
    if status.success() {
        Ok(proc.stdout_text())
    } else {
        Err(proc.stderr_text())
    }
}

#[test]
fn cli_adds_lists_and_removes() {
    isolated("api::cli_adds_lists_and_removes", &[], |scene| {
        let (_, torrent) = single(scene, "cli-payload", 50_000, 9);
        let daemon = Daemon::start(scene, DaemonOptions::default());
        let url = daemon.url().to_owned();
        let file = torrent.to_str().expect("UTF-8 path");
        let out = run_cli(scene, "cli-add", &["add", file, "--url", &url]).expect("swarmer add");
        let id = daemon.torrents()[0]["id"].as_u64().expect("id");
        assert_eq!(out.trim(), format!("added {id} cli-payload"));
        let link = magnet(UNKNOWN_HASH, "cli-magnet", &[]);
        let out = run_cli(
            scene,
            "cli-add-magnet",
            &["add", &link, "--paused", "--url", &url],
        )
        .expect("swarmer add MAGNET");
        assert!(out.contains("cli-magnet"), "{out}");

        let out = run_cli(scene, "cli-list", &["list", "--url", &url]).expect("swarmer list");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "a header and two torrents: {out}");
        assert!(lines[0].contains("NAME"), "{out}");
        assert!(
            lines[1].split_whitespace().next() == Some(&id.to_string())
                && lines[1].ends_with("cli-payload"),
            "{out}"
        );
        assert!(
            lines[2].contains("paused") && lines[2].ends_with("cli-magnet"),
            "{out}"
        );

        let out = run_cli(
            scene,
            "cli-remove",
            &["remove", &id.to_string(), "--url", &url],
        )
        .expect("swarmer remove");
        assert_eq!(out.trim(), format!("removed {id}"));
        let out = run_cli(scene, "cli-list-2", &["list", "--url", &url]).expect("swarmer list");
        assert!(!out.contains("cli-payload"), "{out}");
        let err = run_cli(
            scene,
            "cli-remove-2",
            &["remove", &id.to_string(), "--url", &url],
        )
        .expect_err("removing twice");
        assert!(err.contains(&format!("no torrent with id {id}")), "{err}");
        let err = run_cli(
            scene,
            "cli-nowhere",
            &["list", "--url", "http://127.0.0.20:1"],
        )
        .expect_err("no daemon there");
        assert!(err.contains("cannot reach the daemon"), "{err}");
        daemon.stop();
    });
}

#[test]
fn watch_folder_adds_torrents_and_renames_them() {
    isolated(
        "api::watch_folder_adds_torrents_and_renames_them",
        &[],
        |scene| {
            let (_, torrent) = single(scene, "watched", 40_000, 11);
            let watch = scene.subdir("watch");
            let watch_arg = watch.to_str().expect("UTF-8 path").to_owned();
            let daemon = Daemon::start(
                scene,
                DaemonOptions {
                    args: vec!["--watch-dir".into(), watch_arg],
                    ..DaemonOptions::default()
                },
            );
            std::fs::copy(&torrent, watch.join("good.torrent")).expect("copy");
            std::fs::write(watch.join("bad.torrent"), b"not a torrent").expect("write");
            std::fs::write(watch.join("notes.txt"), b"left alone").expect("write");
            let started = Instant::now();
            let listed = scene
                .deadline
                .poll("the watch folder to be taken", POLL, || {
                    let done = watch.join("good.torrent.added").is_file()
                        && watch.join("bad.torrent.invalid").is_file();
                    let listed = daemon.torrents();
                    (done && !listed.is_empty()).then_some(listed)
                });
            scene.mark(&format!(
                "watch folder taken in {:.1}s",
                started.elapsed().as_secs_f64()
            ));
            assert_eq!(listed.len(), 1, "{listed:?}");
            assert_eq!(listed[0]["name"], "watched");
            assert_eq!(listed[0]["info_hash"], info_hash_hex(&torrent).as_str());
            for gone in ["good.torrent", "bad.torrent"] {
                assert!(!watch.join(gone).exists(), "{gone} is still there");
            }
            assert!(
                watch.join("notes.txt").is_file(),
                "a non-torrent file was touched"
            );
            daemon.stop();
        },
    );
}

#[test]
fn kill9_mid_download_then_restart_finishes() {
    isolated(
        "api::kill9_mid_download_then_restart_finishes",
        &[],
        |scene| {
            const LEN: u64 = 8 << 20;
            let seed_dir = scene.subdir("seeder");
            let data = payload::single_file(&seed_dir, "payload", LEN, 42);
            let torrent = data.make_torrent(&scene.dir.join("payload.torrent"), 14, &[NO_TRACKER]);
            let hash = info_hash_hex(&torrent);
            let seeder = crate::swarmer::seed_at(scene, "seeder", &torrent, &seed_dir, SEEDER);

            let daemon = Daemon::start(
                scene,
                DaemonOptions {
                    args: vec!["--max-download-rate".into(), "1M".into()],
                    ..DaemonOptions::default()
                },
            );
            let (download_dir, state_dir) = (daemon.download_dir.clone(), daemon.state_dir.clone());
            let settings = daemon.get_json("/api/v1/settings");
            assert!(
                settings["max_download_rate"].as_u64().is_some(),
                "{settings}"
            );
            // By magnet link: the metadata comes from the seeder named by x.pe.
            let link = magnet(&hash, "payload", &[SEEDER]);
            let added = expect_json(
                daemon.post_json("/api/v1/torrents", &json!({ "magnet": link })),
                201,
                "POST",
                "the magnet link",
            );
            let id = id_of(&added);
            let limits = format!("/api/v1/torrents/{id}/limits");
            let limited = json!({ "max_upload_rate": 4321, "max_download_rate": null });
            expect_json(daemon.put_json(&limits, &limited), 200, "PUT", &limits);
            let other = expect_json(
                daemon.post_json(
                    "/api/v1/torrents",
                    &json!({ "magnet": magnet(UNKNOWN_HASH, "parked", &[]), "paused": true }),
                ),
                201,
                "POST",
                "a paused magnet link",
            );

            // Kill it while it downloads, between 20 % and 80 %.
            let before = wait_torrent(scene, &daemon, id, "between 20 % and 80 %", |t| {
                t["progress"]
                    .as_f64()
                    .is_some_and(|p| (0.2..0.8).contains(&p))
            });
            daemon.kill9();
            let pieces_before = before["pieces_have"].as_u64().expect("pieces_have");
            scene.mark(&format!(
                "killed (SIGKILL) at {:.0} % ({pieces_before} pieces)",
                before["progress"].as_f64().unwrap_or(0.0) * 100.0
            ));
            // No seeder while it restarts: what it has then came from its own disk.
            let mut seeder = seeder;
            assert!(seeder.signal("TERM", Duration::from_secs(15)).is_some());

            let daemon = restart(scene, &download_dir, &state_dir, &[]);
            assert_eq!(daemon.get_json("/api/v1/settings"), settings);
            let listed = daemon.torrents();
            assert_eq!(listed.len(), 2, "{listed:?}");
            assert_eq!(id_of(&listed[0]), id);
            assert_eq!(listed[0]["name"], "payload");
            assert_eq!(listed[0]["max_upload_rate"], 4321);
            assert_eq!(id_of(&listed[1]), id_of(&other));
            assert_eq!(state_of(&listed[1]), "paused");
            let checked = wait_torrent(scene, &daemon, id, "checked", |t| {
                state_of(t) == "downloading"
            });
            let pieces_after = checked["pieces_have"].as_u64().expect("pieces_have");
            assert!(
                pieces_after >= pieces_before,
                "{pieces_after} pieces after the restart, {pieces_before} before the kill"
            );
            scene.mark(&format!(
            "restarted: {pieces_after} pieces kept of the {pieces_before} verified before the kill"
        ));

            // The seeder is back; a pause and resume dials the magnet link's peer again.
            let _seeder =
                crate::swarmer::seed_at(scene, "seeder-again", &torrent, &seed_dir, SEEDER);
            expect_json(
                daemon.post(&format!("/api/v1/torrents/{id}/pause")),
                200,
                "POST",
                "pause",
            );
            expect_json(
                daemon.post(&format!("/api/v1/torrents/{id}/resume")),
                200,
                "POST",
                "resume",
            );
            let done = wait_torrent(scene, &daemon, id, "seeding", |t| state_of(t) == "seeding");
            assert_eq!(done["progress"], 1.0);
            data.assert_same(&download_dir.join("payload"));
            scene.mark("finished after the restart; the file is byte-identical");
            // The owner's once-a-second look, which reads only changed progress, stamps it.
            let stamped = wait_torrent(scene, &daemon, id, "completed_at set", |t| {
                t["completed_at"].is_u64()
            });
            assert!(stamped["completed_at"].as_u64() >= added["added_at"].as_u64());
            daemon.stop();
        },
    );
}

#[test]
fn a_queued_torrent_paused_and_resumed_starts_when_a_slot_frees() {
    isolated(
        "api::a_queued_torrent_paused_and_resumed_starts_when_a_slot_frees",
        &[],
        |scene| {
            let (_, first) = single(scene, "first", 100_000, 21);
            let (_, second) = single(scene, "second", 100_000, 22);
            let daemon = Daemon::start(
                scene,
                DaemonOptions {
                    args: vec!["--max-active-downloads".into(), "1".into()],
                    ..DaemonOptions::default()
                },
            );
            // No peer has either, so the first holds the only download slot.
            let a = id_of(&daemon.add_torrent_file(&first));
            wait_torrent(scene, &daemon, a, "downloading", |t| {
                state_of(t) == "downloading"
            });
            let b = id_of(&daemon.add_torrent_file(&second));
            assert_eq!(state_of(&daemon.torrent(b)), "queued");
            let pause = |id: u64| {
                let t = expect_json(
                    daemon.post(&format!("/api/v1/torrents/{id}/pause")),
                    200,
                    "POST",
                    "pause",
                );
                assert_eq!(state_of(&t), "paused");
            };
            pause(b);
            let resumed = expect_json(
                daemon.post(&format!("/api/v1/torrents/{b}/resume")),
                200,
                "POST",
                "resume",
            );
            assert_eq!(state_of(&resumed), "queued");
            pause(a);
            wait_torrent(scene, &daemon, b, "downloading in the freed slot", |t| {
                state_of(t) == "downloading"
            });
            scene.mark("the queued torrent took the freed slot");
            // A paused torrent does not hold up a shutdown.
            let stopping = Instant::now();
            daemon.stop();
            assert!(
                stopping.elapsed() < Duration::from_secs(5),
                "the daemon took {:?} to stop",
                stopping.elapsed()
            );
        },
    );
}

#[test]
fn finished_torrents_restart_as_seeds_without_taking_download_slots() {
    isolated(
        "api::finished_torrents_restart_as_seeds_without_taking_download_slots",
        &[],
        |scene| {
            const QUEUED: &str = "queued: over the active torrent limit";
            let options = |name: &str| DaemonOptions {
                name: name.to_owned(),
                download_dir: Some(scene.subdir("downloads")),
                state_dir: Some(scene.subdir("state")),
                args: vec!["--max-active-downloads".into(), "1".into()],
                ..DaemonOptions::default()
            };
            let mut daemon = Daemon::start(scene, options("daemon"));
            // Their data is in the download directory: each checks it, then seeds.
            let ids: Vec<u64> = (0..3)
                .map(|i| {
                    let name = format!("seed{i}");
                    let data = payload::single_file(&daemon.download_dir, &name, 50_000, i);
                    let torrent = scene.dir.join(format!("{name}.torrent"));
                    id_of(&daemon.add_torrent_file(&data.make_torrent(&torrent, 14, &[NO_TRACKER])))
                })
                .collect();
            for &id in &ids {
                wait_torrent(scene, &daemon, id, "seeding", |t| state_of(t) == "seeding");
            }
            let log = daemon.proc().stderr_text();
            assert!(
                !log.contains(QUEUED),
                "a torrent was stopped for the queue:\n{log}"
            );
            daemon.stop();
            scene.mark("three torrents checked one at a time, then seeding");

            // Restarted, they run as the seeds their resume state says they are, even while they
            // check it, so none is stopped to free the single download slot.
            let started = Instant::now();
            let mut daemon = Daemon::start(scene, options("daemon-restarted"));
            for &id in &ids {
                wait_torrent(scene, &daemon, id, "seeding again", |t| {
                    state_of(t) == "seeding"
                });
            }
            let log = daemon.proc().stderr_text();
            assert!(
                !log.contains(QUEUED),
                "a seed was stopped for the queue:\n{log}"
            );
            scene.mark(&format!(
                "all seeding {:.2}s after the restart",
                started.elapsed().as_secs_f64()
            ));
            daemon.stop();
        },
    );
}

#[test]
fn v2_and_hybrid_torrents_show_both_hashes() {
    isolated(
        "api::v2_and_hybrid_torrents_show_both_hashes",
        &[],
        |scene| {
            let daemon = Daemon::start(scene, DaemonOptions::default());
            let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
            // (file, info_hash: what peers and trackers use, info_hash_v2)
            let cases = [
                (
                    "libtorrent-hybrid.torrent",
                    "42bdf4fadff8f1f7eaaa8b4bbaf461b37b7399ab",
                    "68d7342dc4323f2913fa4d781193a37a9835d2319c3bf55227a7f651f5030c43",
                ),
                (
                    "libtorrent-v2.torrent",
                    "7cf7fffb2b3802f338b9940147ede87932209d38",
                    "7cf7fffb2b3802f338b9940147ede87932209d382d1408d985f4ae02bda18ccf",
                ),
            ];
            for (file, hash, v2) in cases {
                let added = daemon.add_torrent_file(&testdata.join(file));
                assert_eq!(added["info_hash"], hash, "{file}: {added}");
                assert_eq!(added["info_hash_v2"], v2, "{file}: {added}");
            }
            let listed = daemon.torrents();
            assert_eq!(listed.len(), 2);
            scene
                .mark("the JSON API shows the wire hash and the v2 hash of v2 and hybrid torrents");
        },
    );
}
