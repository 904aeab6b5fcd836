//! The daemon's qBittorrent Web API driven by the real `qbittorrent-api` Python package, as
//! Sonarr-style tools drive qBittorrent (`qbt_client.py` holds the steps and asserts each): login
//! (and its refusals), a category with a save path, a .torrent and a magnet link added paused with
//! a category and tags, listing by category and tag, `sync/maindata` rid diffs, a real download
//! from a libtorrent seeder to 100 % and byte-identical, files, trackers, properties, piece
//! states, file priorities, the refusals for what swarmer cannot do, `setLocation` moving the data,
//! a re-check, and a delete with files. Then the daemon restarts and its categories and tags are
//! still there. Apart: a peer that dialled the daemon over uTP shows as uTP in each API's peers
//! (qBittorrent's `sync/torrentPeers`, Transmission's `peers`, the JSON API's).

use std::net::SocketAddr;
use std::process::Command;

use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::harness::{self, Daemon, DaemonOptions, magnet};
use crate::libtorrent::{self, LtOptions};
use crate::netns::{Need, isolated, qbt_python};
use crate::payload;
use crate::procs::Proc;
use crate::tracker::{self, Tracker};

const USER: &str = "sonarr";
const PASSWORD: &str = "s3cret-for-qbt";
/// A libtorrent seeder's address.
const SEEDER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(127, 0, 0, 31),
    6911,
));

/// Logs in with the qBittorrent API and returns `GET path`'s JSON.
fn qbt_get(daemon: &Daemon, path: &str) -> serde_json::Value {
    let http = Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let login = http
        .post(format!("{}/api/v2/auth/login", daemon.url()))
        .form(&[("username", USER), ("password", PASSWORD)])
        .send()
        .expect("login");
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a SID cookie")
        .to_owned();
    assert_eq!(login.text().unwrap_or_default(), "Ok.");
    let response = http
        .get(format!("{}{path}", daemon.url()))
        .header("cookie", cookie)
        .send()
        .expect("GET");
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().expect("JSON")
}

#[test]
fn arr_workflow_with_qbittorrent_api() {
    isolated(
        "qbt::arr_workflow_with_qbittorrent_api",
        &[
            Need::QbittorrentApi,
            Need::Libtorrent,
            Need::Opentracker,
            Need::Mktorrent,
        ],
        |scene| {
            let src = scene.subdir("seed");
            let payload = payload::multi_file(&src, "episode", 7);
            let torrent = payload.make_torrent(
                &scene.dir.join("episode.torrent"),
                16,
                &[tracker::HTTP_ANNOUNCE],
            );
            let tracker = Tracker::start(scene, &[&torrent]);
            let _seed = libtorrent::seed(scene, "lt-seed", &LtOptions::new(&torrent, &src, SEEDER));
            tracker.wait_until_listed(scene, &torrent, &[SEEDER]);
            let config = scene.dir.join("daemon.toml");
            std::fs::write(
                &config,
                format!("[qbittorrent]\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n"),
            )
            .unwrap();
            let options = DaemonOptions {
                args: vec!["--config".into(), config.display().to_string()],
                ..DaemonOptions::default()
            };
            let daemon = Daemon::start(scene, options.clone());
            let save = daemon.download_dir.join("arr");
            let moved = daemon.download_dir.join("library");
            let mut command = Command::new(qbt_python());
            command
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/daemon/qbt_client.py"
                ))
                .arg(daemon.url())
                .args([USER, PASSWORD])
                .arg(&torrent)
                .arg(src.join("episode"))
                .arg(&save)
                .arg(&moved)
                .arg(magnet(
                    "00000000000000000000000000000000000000b1",
                    "later",
                    &[],
                ))
                .arg(scene.deadline.remaining().as_secs().to_string())
                .env("NO_PROXY", "*");
            let mut client = Proc::spawn("qbt-client", &mut command, &scene.logs);
            let status = client
                .wait_exit(scene.deadline)
                .expect("qbt_client.py ends within the deadline");
            assert!(
                status.success(),
                "qbt_client.py failed ({status}):\n{}",
                client.stderr_text()
            );
            let out = client.stdout_text();
            for line in out.lines() {
                scene.mark(&format!("qbt_client.py: {line}"));
            }
            assert_eq!(
                out.lines().last(),
                Some("OK"),
                "the workflow ran to its end"
            );
            assert!(!moved.join("episode").exists(), "deleted with its files");
            let (download_dir, state_dir) = (daemon.download_dir.clone(), daemon.state_dir.clone());
            daemon.stop();

            // Categories and tags survive a restart.
            let daemon = Daemon::start(
                scene,
                DaemonOptions {
                    download_dir: Some(download_dir),
                    state_dir: Some(state_dir),
                    ..options
                },
            );
            let categories = qbt_get(&daemon, "/api/v2/torrents/categories");
            assert_eq!(
                categories["tv"]["savePath"],
                save.join("tv").display().to_string()
            );
            let tags = qbt_get(&daemon, "/api/v2/torrents/tags");
            assert_eq!(tags, serde_json::json!(["hd", "sonarr"]));
            let listed = qbt_get(&daemon, "/api/v2/torrents/info?category=tv");
            assert_eq!(
                listed.as_array().map(Vec::len),
                Some(1),
                "the magnet link is left"
            );
            daemon.stop();
        },
    );
}

/// The daemon with the qBittorrent API on (its login in a config file under `scene`).
fn daemon_with_qbt(scene: &crate::scene::Scene) -> (Daemon, DaemonOptions) {
    let config = scene.dir.join("daemon.toml");
    std::fs::write(
        &config,
        format!("[qbittorrent]\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n"),
    )
    .unwrap();
    let options = DaemonOptions {
        args: vec!["--config".into(), config.display().to_string()],
        ..DaemonOptions::default()
    };
    (Daemon::start(scene, options.clone()), options)
}

/// A uTP-only `swarmer download` dials the daemon for a torrent nobody has: both wait for
/// pieces, so the connection stays while every API is asked about it.
#[test]
fn a_utp_peer_shows_as_utp_in_every_api() {
    isolated(
        "qbt::a_utp_peer_shows_as_utp_in_every_api",
        &[Need::Mktorrent],
        |scene| {
            let src = scene.subdir("nobody");
            let payload = payload::single_file(&src, "nobody-has-it", 1 << 20, 11);
            let torrent = payload.make_torrent(&scene.dir.join("nobody.torrent"), 16, &[]);
            let (daemon, _) = daemon_with_qbt(scene);
            let added = daemon.add_torrent_file(&torrent);
            let id = added["id"].as_u64().expect("an id");
            let hash = added["info_hash"].as_str().expect("a hash").to_owned();
            let daemon_addr = format!("{}:{}", harness::IP, harness::PEER_PORT);
            let out = scene.subdir("swarmer-download");
            let _leecher = crate::swarmer::start_download(
                scene,
                "swarmer-utp",
                &torrent,
                &out,
                &["--transport", "utp", "--peer", &daemon_addr],
            );
            let path = format!("/api/v1/torrents/{id}/peers");
            let peers = scene.deadline.poll(
                "the uTP peer in the JSON API",
                std::time::Duration::from_millis(100),
                || {
                    let peers = daemon.get_json(&path);
                    peers
                        .as_array()
                        .is_some_and(|p| !p.is_empty())
                        .then_some(peers)
                },
            );
            assert_eq!(peers.as_array().map(Vec::len), Some(1), "{peers}");
            assert_eq!(peers[0]["transport"], "utp", "{peers}");
            assert_eq!(peers[0]["incoming"], true, "{peers}");
            scene.mark("the JSON API: transport utp");
            let reply = daemon.rpc(&json!({
                "method": "torrent-get",
                "arguments": { "ids": [id], "fields": ["peers"] },
            }));
            let peer = &reply["arguments"]["torrents"][0]["peers"][0];
            assert_eq!(peer["isUTP"], true, "{reply}");
            let flags = peer["flagStr"].as_str().unwrap_or_default();
            assert!(flags.starts_with('T') && flags.contains('I'), "{peer}");
            scene.mark(&format!("Transmission's peers: isUTP, flagStr {flags}"));
            let qbt = qbt_get(
                &daemon,
                &format!("/api/v2/sync/torrentPeers?hash={hash}&rid=0"),
            );
            let rows: Vec<&Value> = qbt["peers"].as_object().expect("peers").values().collect();
            assert_eq!(rows.len(), 1, "{qbt}");
            assert_eq!(rows[0]["connection"], "uTP", "{qbt}");
            assert!(
                rows[0]["flags"].as_str().is_some_and(|f| f.contains('P')),
                "{qbt}"
            );
            scene.mark("qBittorrent's sync/torrentPeers: connection uTP");
            daemon.stop();
        },
    );
}
