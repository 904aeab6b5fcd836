//! The daemon's security model as a client (or an attacker) sees it: downloads confined to the
//! download roots through every API, symlinks included; local .torrent files read only from the
//! watch folder, with one answer for every other path so nothing about other files leaks; the
//! Host check (IP addresses and `allowed_hosts` names pass, other names do not); credentials
//! required off loopback; wrong credentials throttled per address; and the state files readable
//! by the daemon's user only.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Daemon, DaemonOptions, magnet};
use crate::netns::isolated;
use crate::payload;

/// Info hashes nobody has: magnet links that stay fetching their metadata.
const HASHES: [&str; 4] = [
    "00000000000000000000000000000000000000a1",
    "00000000000000000000000000000000000000a2",
    "00000000000000000000000000000000000000a3",
    "00000000000000000000000000000000000000a4",
];

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The RPC's `result` for `torrent-add` with these arguments.
fn rpc_add(daemon: &Daemon, arguments: Value) -> String {
    let reply = daemon.rpc(&json!({ "method": "torrent-add", "arguments": arguments }));
    reply["result"].as_str().expect("a result").to_owned()
}

#[test]
fn downloads_stay_inside_the_roots() {
    isolated("security::downloads_stay_inside_the_roots", &[], |scene| {
        let daemon = Daemon::start(scene, DaemonOptions::default());
        let root = &daemon.download_dir;
        let outside = scene.subdir("outside");
        std::os::unix::fs::symlink(&outside, root.join("link")).expect("symlink");
        let refused = [
            "/etc".to_owned(),
            outside.display().to_string(),
            root.join("link").display().to_string(),
            root.join("link/deeper").display().to_string(),
            root.join("../outside").display().to_string(),
            format!("{}-sibling", root.display()),
        ];
        for dir in &refused {
            let response = daemon.post_json(
                "/api/v1/torrents",
                &json!({ "magnet": magnet(HASHES[0], "x", &[]), "download_dir": dir }),
            );
            let status = response.status().as_u16();
            let body: Value = response.json().expect("JSON");
            assert_eq!(status, 403, "the JSON API put a download in {dir}: {body}");
            let message = body["error"].as_str().unwrap_or_default();
            assert!(message.contains("outside the download roots"), "{message}");
            let result = rpc_add(
                &daemon,
                json!({ "filename": magnet(HASHES[0], "x", &[]), "download-dir": dir }),
            );
            assert!(
                result.contains("outside the download roots"),
                "RPC {dir}: {result}"
            );
        }
        let response = daemon.put_json("/api/v1/settings", &json!({ "download_dir": "/etc" }));
        assert_eq!(response.status(), 403, "settings moved downloads to /etc");
        let reply = daemon.rpc(&json!({
            "method": "session-set",
            "arguments": { "download-dir": outside.display().to_string() }
        }));
        let result = reply["result"].as_str().unwrap_or_default();
        assert!(
            result.contains("outside the download roots"),
            "session-set: {result}"
        );
        assert!(daemon.torrents().is_empty(), "nothing was added");
        // free-space looks only inside the roots, so it cannot probe what exists elsewhere.
        let free = |path: &str| {
            daemon.rpc(&json!({ "method": "free-space", "arguments": { "path": path } }))
        };
        for path in ["/etc", "/no/such/dir", outside.to_str().unwrap()] {
            let result = free(path)["result"].as_str().unwrap_or_default().to_owned();
            assert!(
                result.contains("outside the download roots"),
                "{path}: {result}"
            );
        }
        let inside_free = free(root.to_str().unwrap());
        assert_eq!(inside_free["result"], "success", "{inside_free}");
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing was written outside the roots"
        );
        // Inside the root, a directory that does not exist yet is fine.
        let inside = root.join("new/deeper");
        let response = daemon.post_json(
            "/api/v1/torrents",
            &json!({ "magnet": magnet(HASHES[1], "x", &[]), "download_dir": inside }),
        );
        assert_eq!(response.status(), 201, "a new directory inside the root");
        let result = rpc_add(
            &daemon,
            json!({ "filename": magnet(HASHES[2], "y", &[]), "download-dir": inside }),
        );
        assert_eq!(result, "success");
        daemon.stop();
    });
}

#[test]
fn local_files_are_read_only_from_the_watch_dir() {
    isolated(
        "security::local_files_are_read_only_from_the_watch_dir",
        &[],
        |scene| {
            let data = scene.subdir("data");
            let payload = payload::single_file(&data, "payload", 40_000, 3);
            let torrent = payload.make_torrent(
                &scene.dir.join("outside.torrent"),
                14,
                &["http://127.0.0.1:9/a"],
            );
            let watch = scene.subdir("watch");
            // Not `*.torrent`, so the watcher leaves them to this test.
            std::fs::copy(&torrent, watch.join("inside.tor")).expect("copy");
            std::os::unix::fs::symlink(&torrent, watch.join("link.tor")).expect("symlink");
            std::fs::write(scene.dir.join("secret.txt"), "d8:password6:hunter2e").unwrap();
            let daemon = Daemon::start(
                scene,
                DaemonOptions {
                    args: vec!["--watch-dir".into(), watch.display().to_string()],
                    ..DaemonOptions::default()
                },
            );
            let probes = [
                "/etc/passwd".to_owned(),
                "/etc/shadow".to_owned(),
                "/no/such/file".to_owned(),
                "/root".to_owned(),
                torrent.display().to_string(),
                scene.dir.join("secret.txt").display().to_string(),
                watch.join("link.tor").display().to_string(),
                watch.join("../outside.torrent").display().to_string(),
                "../outside.torrent".to_owned(),
            ];
            let answers: Vec<String> = probes
                .iter()
                .map(|p| rpc_add(&daemon, json!({ "filename": p })))
                .collect();
            for (probe, answer) in probes.iter().zip(&answers) {
                assert_eq!(answer, &answers[0], "{probe} answered differently");
                assert!(answer.contains("watch folder"), "{probe}: {answer}");
                for leak in ["root:", "hunter2", "No such", "denied", "directory", "0x"] {
                    assert!(!answer.contains(leak), "{probe} leaked {leak:?}: {answer}");
                }
            }
            assert!(daemon.torrents().is_empty());
            // The watch folder's own file is read, by absolute or relative name.
            let result = rpc_add(&daemon, json!({ "filename": watch.join("inside.tor") }));
            assert_eq!(result, "success");
            assert_eq!(daemon.torrents().len(), 1);
            daemon.stop();
            // Without a watch folder no local file is read at all.
            let daemon = Daemon::start(
                scene,
                DaemonOptions {
                    name: "no-watch".into(),
                    ..DaemonOptions::default()
                },
            );
            let answer = rpc_add(&daemon, json!({ "filename": torrent }));
            assert!(answer.contains("none is configured"), "{answer}");
            let other = rpc_add(&daemon, json!({ "filename": "/no/such/file" }));
            assert_eq!(answer, other);
            daemon.stop();
        },
    );
}

#[test]
fn ip_hosts_and_allowed_names_pass_the_host_check() {
    isolated(
        "security::ip_hosts_and_allowed_names_pass_the_host_check",
        &[],
        |scene| {
            let config = scene.dir.join("config.toml");
            std::fs::write(&config, "allowed_hosts = [\"nas.lan\"]\n").unwrap();
            let daemon = Daemon::start(
                scene,
                DaemonOptions {
                    args: vec!["--config".into(), config.display().to_string()],
                    ..DaemonOptions::default()
                },
            );
            let get = |host: &str| {
                let request = daemon
                    .raw(Method::GET, "/api/v1/torrents")
                    .header("host", host);
                daemon.send(request).status().as_u16()
            };
            for ok in [
                "192.168.1.77:9091",
                "10.0.0.5",
                "[fd00::7]:9091",
                "nas.lan:9091",
                "localhost",
            ] {
                assert_eq!(get(ok), 200, "Host {ok}");
            }
            for bad in [
                "evil.example",
                "192.168.1.77.nip.io:9091",
                "nas.lan.evil.example",
            ] {
                assert_eq!(get(bad), 421, "Host {bad}");
            }
            daemon.stop();
        },
    );
}

#[test]
fn off_loopback_credentials_are_required_throttled_and_private() {
    isolated(
        "security::off_loopback_credentials_are_required_throttled_and_private",
        &[],
        |scene| {
            let daemon = Daemon::start(
                scene,
                DaemonOptions {
                    http_ip: Some(std::net::Ipv4Addr::UNSPECIFIED),
                    ..DaemonOptions::default()
                },
            );
            let token_file = daemon.state_dir.join("token");
            let token = std::fs::read_to_string(&token_file).expect("a generated token");
            assert!(token.trim().len() >= 20, "a long random token: {token:?}");
            assert_eq!(mode(&token_file), 0o600, "the token file");
            assert_eq!(
                mode(&daemon.state_dir.join("swarmer.redb")),
                0o600,
                "the database"
            );
            let get = |bearer: Option<&str>| {
                let mut request = daemon.raw(Method::GET, "/api/v1/torrents");
                if let Some(b) = bearer {
                    request = request.bearer_auth(b);
                }
                daemon.send(request).status().as_u16()
            };
            assert_eq!(get(None), 401, "no credentials beyond loopback");
            assert_eq!(get(Some(token.trim())), 200);
            // The qBittorrent API: no login, no access; the token is its password.
            let qbt_login = |password: &str| {
                let response = daemon.send(
                    daemon
                        .raw(Method::POST, "/api/v2/auth/login")
                        .form(&[("username", "admin"), ("password", password)]),
                );
                let status = response.status().as_u16();
                let cookie = response
                    .headers()
                    .get("set-cookie")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(';').next())
                    .map(str::to_owned);
                (status, cookie, response.text().unwrap_or_default())
            };
            let info = |cookie: Option<&str>| {
                let mut request = daemon.raw(Method::GET, "/api/v2/torrents/info");
                if let Some(c) = cookie {
                    request = request.header("cookie", c);
                }
                daemon.send(request).status().as_u16()
            };
            assert_eq!(info(None), 403, "the qBittorrent API without a login");
            let (status, cookie, body) = qbt_login(token.trim());
            assert_eq!((status, body.as_str()), (200, "Ok."));
            assert_eq!(info(cookie.as_deref()), 200, "with the SID cookie");
            assert_eq!(info(Some("SID=forged")), 403);
            // Requests without credentials do not count toward a ban; wrong ones do, whichever
            // API they are sent to.
            for _ in 0..10 {
                assert_eq!(get(None), 401);
            }
            // A stale login cookie does not count on the page (which needs no token), and an API
            // request with it is told to drop it (and counts once).
            for _ in 0..10 {
                let page = daemon
                    .raw(Method::GET, "/")
                    .header("cookie", "swarmer_token=old");
                assert_eq!(daemon.send(page).status(), 200);
            }
            let stale = daemon.send(
                daemon
                    .raw(Method::GET, "/api/v1/torrents")
                    .header("cookie", "swarmer_token=old"),
            );
            assert_eq!(stale.status(), 401);
            let cleared = stale
                .headers()
                .get("set-cookie")
                .and_then(|v| v.to_str().ok());
            assert!(
                cleared
                    .is_some_and(|c| c.starts_with("swarmer_token=;") && c.contains("Max-Age=0")),
                "{cleared:?}"
            );
            for i in 0..2 {
                assert_eq!(get(Some("wrong")), 401, "wrong token {}", i + 1);
            }
            for _ in 0..2 {
                let (status, _, body) = qbt_login("wrong");
                assert_eq!((status, body.as_str()), (200, "Fails."));
            }
            assert_eq!(
                get(Some(token.trim())),
                403,
                "banned after five wrong tokens"
            );
            let (status, _, _) = qbt_login(token.trim());
            assert_eq!(status, 403, "the qBittorrent login is banned too");
            let login = daemon.send(
                daemon
                    .raw(Method::POST, "/api/v1/login")
                    .header("X-Requested-By", "x")
                    .json(&json!({ "token": token.trim() })),
            );
            assert_eq!(login.status(), 403, "the login is banned too");
            daemon.stop();
        },
    );
}
