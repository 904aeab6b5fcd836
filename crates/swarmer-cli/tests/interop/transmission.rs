//! A Transmission 3.00 daemon as a seeder or a leecher, configured and queried over its RPC.
//!
//! Transmission never dials loopback peers (it treats them as martian) but accepts incoming
//! connections: as a seeder, swarmer dials it; as a leecher, it must be announced before its
//! seeder starts (or re-announces), so that the seeder learns its address and dials it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::procs::Proc;
use crate::scene::Scene;

pub(crate) const PEER_PORT: u16 = 51413;
const RPC_PORT: u16 = 9091;

pub(crate) struct Transmission {
    _proc: Proc,
    rpc: SocketAddr,
}

impl Transmission {
    /// Writes `settings.json` (the daemon rewrites it on exit, so only before start) and starts
    /// `transmission-daemon` on `ip`, then waits until its RPC answers.
    pub(crate) fn start(scene: &Scene, ip: Ipv4Addr) -> Transmission {
        Transmission::start_inner(scene, ip, 0, false)
    }

    /// `start` with Transmission's `encryption` setting: 0 prefers plaintext (tolerates MSE),
    /// 1 prefers MSE, 2 requires it.
    pub(crate) fn start_with_encryption(
        scene: &Scene,
        ip: Ipv4Addr,
        encryption: u8,
    ) -> Transmission {
        Transmission::start_inner(scene, ip, encryption, false)
    }

    /// `start` with uTP (BEP 29) on, beside TCP.
    pub(crate) fn start_with_utp(scene: &Scene, ip: Ipv4Addr) -> Transmission {
        Transmission::start_inner(scene, ip, 0, true)
    }

    fn start_inner(scene: &Scene, ip: Ipv4Addr, encryption: u8, utp: bool) -> Transmission {
        let config = scene.subdir("transmission-config");
        let settings = serde_json::json!({
            "dht-enabled": false,
            "lpd-enabled": false,
            "pex-enabled": false,
            "port-forwarding-enabled": false,
            "utp-enabled": utp,
            "bind-address-ipv4": ip.to_string(),
            "bind-address-ipv6": "::1",
            "peer-port": PEER_PORT,
            "peer-port-random-on-start": false,
            "rpc-enabled": true,
            "rpc-bind-address": ip.to_string(),
            "rpc-port": RPC_PORT,
            "rpc-authentication-required": false,
            "rpc-whitelist-enabled": false,
            "rpc-host-whitelist-enabled": false,
            "download-queue-enabled": false,
            "seed-queue-enabled": false,
            "ratio-limit-enabled": false,
            "idle-seeding-limit-enabled": false,
            "speed-limit-up-enabled": false,
            "speed-limit-down-enabled": false,
            "encryption": encryption,
            "download-dir": scene.subdir("transmission-downloads"),
            "incomplete-dir-enabled": false,
            "watch-dir-enabled": false,
            "message-level": 2,
        });
        std::fs::write(config.join("settings.json"), settings.to_string()).expect("settings");
        let mut command = Command::new("transmission-daemon");
        command.arg("-f").arg("-g").arg(&config);
        let mut proc = Proc::spawn("transmission", &mut command, &scene.logs);
        let rpc = SocketAddr::from((ip, RPC_PORT));
        scene
            .deadline
            .poll("transmission RPC", Duration::from_millis(50), || {
                proc.assert_running();
                TcpStream::connect(rpc).ok()
            });
        scene.mark("transmission-daemon is up");
        Transmission { _proc: proc, rpc }
    }

    /// Where its RPC listens.
    #[allow(dead_code)]
    pub(crate) fn rpc_addr(&self) -> SocketAddr {
        self.rpc
    }

    /// Adds `torrent` with its data already in `parent` (`transmission-remote -a -w`), then
    /// waits until Transmission has verified it and seeds (status 6, percentDone 1).
    pub(crate) fn seed(&self, scene: &Scene, torrent: &Path, parent: &Path) {
        self.add(torrent, parent);
        self.wait_until("transmission to seed", scene, |t| {
            t["status"] == 6 && t["percentDone"] == 1.0
        });
        scene.mark("transmission seeds");
    }

    /// Adds `torrent` to download into `parent` (`transmission-remote -a -w`); it starts at once
    /// and announces. Pair with `wait_downloaded`.
    pub(crate) fn leech(&self, scene: &Scene, torrent: &Path, parent: &Path) {
        self.add(torrent, parent);
        scene.mark("transmission leeches");
    }

    /// Waits until Transmission has every piece of its torrent verified (percentDone 1).
    pub(crate) fn wait_downloaded(&self, scene: &Scene) {
        self.wait_until("transmission to finish downloading", scene, |t| {
            t["percentDone"] == 1.0
        });
        scene.mark("transmission has downloaded every piece");
    }

    /// Waits until the (only) torrent has a connected peer and returns Transmission's view of it
    /// (`address`, `isUTP`, `flagStr`, ...).
    pub(crate) fn wait_peer(&self, scene: &Scene) -> serde_json::Value {
        let mut session_id = String::new();
        scene.deadline.poll(
            "transmission to have a peer",
            Duration::from_millis(50),
            || {
                let reply = self.rpc_call(
                    &mut session_id,
                    r#"{"method":"torrent-get","arguments":{"fields":["peers"]}}"#,
                )?;
                let peer = &reply["arguments"]["torrents"][0]["peers"][0];
                (!peer.is_null()).then(|| peer.clone())
            },
        )
    }

    fn add(&self, torrent: &Path, parent: &Path) {
        let output = Command::new("transmission-remote")
            .arg(self.rpc.to_string())
            .arg("-a")
            .arg(torrent)
            .arg("-w")
            .arg(parent)
            .output()
            .expect("run transmission-remote");
        assert!(
            output.status.success(),
            "transmission-remote -a failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Polls the (only) torrent's status until `done` holds for it; fails on a local error.
    fn wait_until(&self, what: &str, scene: &Scene, done: impl Fn(&serde_json::Value) -> bool) {
        let mut session_id = String::new();
        scene.deadline.poll(what, Duration::from_millis(200), || {
            let reply = self.rpc_call(
                &mut session_id,
                r#"{"method":"torrent-get","arguments":{"fields":["status","percentDone","error","errorString"]}}"#,
            )?;
            let torrent = &reply["arguments"]["torrents"][0];
            assert!(
                torrent["error"].as_i64().unwrap_or(0) == 0,
                "transmission reports an error: {torrent}"
            );
            done(torrent).then_some(())
        });
    }

    /// One RPC call; handles the 409 that hands out the session id. `None` if it failed.
    fn rpc_call(&self, session_id: &mut String, body: &str) -> Option<serde_json::Value> {
        for _ in 0..2 {
            let (status, headers, reply) = self.post(session_id, body)?;
            if status == 409 {
                *session_id = headers
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("X-Transmission-Session-Id")
                            .then(|| value.trim().to_owned())
                    })
                    .expect("409 without X-Transmission-Session-Id");
                continue;
            }
            assert_eq!(status, 200, "transmission RPC: {reply}");
            return serde_json::from_str(&reply).ok();
        }
        None
    }

    fn post(&self, session_id: &str, body: &str) -> Option<(u16, String, String)> {
        let mut stream = TcpStream::connect_timeout(&self.rpc, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "POST /transmission/rpc HTTP/1.0\r\nHost: {}\r\nX-Transmission-Session-Id: {session_id}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.rpc,
            body.len()
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, reply) = response.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, head.to_owned(), reply.to_owned()))
    }
}
