//! The daemon's peer port: when the one asked for is taken it listens on the next free one and
//! says so, the three APIs report the port it really uses, it can be changed at run time, and
//! `--port 0` lets the system pick.

use std::net::TcpListener;

use serde_json::json;

use crate::harness::{Daemon, DaemonOptions, IP, PEER_PORT};
use crate::netns::isolated;

#[test]
fn a_taken_peer_port_moves_to_the_next_and_is_reported() {
    isolated(
        "port::a_taken_peer_port_moves_to_the_next_and_is_reported",
        &[],
        |scene| {
            let _taken = TcpListener::bind((IP, PEER_PORT)).expect("take the peer port");
            let mut daemon = Daemon::start(scene, DaemonOptions::default());
            let next = PEER_PORT + 1;
            let session = daemon.get_json("/api/v1/session");
            assert_eq!(session["listen_port"], json!(next), "{session}");
            let reply = daemon.rpc(&json!({ "method": "session-get", "arguments": {} }));
            assert_eq!(reply["arguments"]["peer-port"], json!(next));
            let prefs = daemon.get_json("/api/v2/app/preferences");
            assert_eq!(prefs["listen_port"], json!(next));
            let out = daemon.proc().stdout_text();
            assert!(
                out.contains(&format!("peers connect to port {next}")),
                "the daemon says which port: {out}"
            );
            let err = daemon.proc().stderr_text();
            assert!(err.contains(&format!("{PEER_PORT} is taken")), "{err}");

            // Changed at run time through the qBittorrent API: the torrents stop, a new listener
            // takes the port, and they start again.
            let magnet = crate::harness::magnet(&"c1".repeat(20), "waiting", &[]);
            let added = daemon.post_json("/api/v1/torrents", &json!({ "magnet": magnet }));
            assert_eq!(added.status(), 201);
            let set = daemon.send(
                daemon
                    .raw(reqwest::Method::POST, "/api/v2/app/setPreferences")
                    .form(&[("json", r#"{"listen_port": 7100}"#)]),
            );
            assert_eq!(set.status(), 200, "{}", set.text().unwrap_or_default());
            let prefs = daemon.get_json("/api/v2/app/preferences");
            assert_eq!(prefs["listen_port"], json!(7100));
            std::net::TcpStream::connect((IP, 7100)).expect("peers reach the new port");
            assert!(
                std::net::TcpStream::connect((IP, next)).is_err(),
                "the old listener is closed"
            );
            let torrents = daemon.torrents();
            assert_eq!(torrents[0]["state"], "fetching_metadata", "{torrents:?}");
            daemon.stop();

            let daemon = Daemon::start(
                scene,
                DaemonOptions {
                    name: "any-port".into(),
                    port: 0,
                    ..DaemonOptions::default()
                },
            );
            let port = daemon.get_json("/api/v1/session")["listen_port"].clone();
            assert!(port.as_u64().is_some_and(|p| p != 0), "{port}");
            daemon.stop();
        },
    );
}
