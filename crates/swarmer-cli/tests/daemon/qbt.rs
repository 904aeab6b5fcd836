//! The daemon's qBittorrent Web API driven by the real `qbittorrent-api` Python package, as
//! Sonarr-style tools drive qBittorrent (`qbt_client.py` holds the steps and asserts each): login
//! (and its refusals), a category with a save path, a .torrent and a magnet link added paused with
//! a category and tags, listing by category and tag, `sync/maindata` rid diffs, a real download
//! from a libtorrent seeder to 100 % and byte-identical, files, trackers, properties, piece
//! states, file priorities, the refusals for what swarmer cannot do, `setLocation` moving the data,
//! a re-check, and a delete with files. Then the daemon restarts and its categories and tags are
//! still there.

use std::net::SocketAddr;
use std::process::Command;

use reqwest::blocking::Client;

use crate::harness::{Daemon, DaemonOptions, magnet};
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
