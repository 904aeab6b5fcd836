//! opentracker on 127.0.0.1:6969 (HTTP and UDP), and probe announces that show whom it lists.
//!
//! The Debian build only serves whitelisted info hashes and chroots into its directory before
//! reading the whitelist, so the directory and the file must be readable by `nobody`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::bencode::{self, Value};
use crate::procs::Proc;
use crate::scene::Scene;

pub(crate) const HTTP_ANNOUNCE: &str = "http://127.0.0.1:6969/announce";
pub(crate) const UDP_ANNOUNCE: &str = "udp://127.0.0.1:6969/announce";
const ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 6969));

pub(crate) struct Tracker {
    _proc: Proc,
}

impl Tracker {
    /// Starts opentracker with the info hashes of `torrents` whitelisted and waits until it
    /// accepts connections.
    pub(crate) fn start(scene: &Scene, torrents: &[&Path]) -> Tracker {
        let root = scene.subdir("opentracker");
        let whitelist: String = torrents
            .iter()
            .flat_map(|t| bencode::wire_hashes(&std::fs::read(t).expect("read torrent")))
            .map(|hash| hex(&hash) + "\n")
            .collect();
        std::fs::write(root.join("whitelist.txt"), whitelist).expect("write whitelist");
        let mut command = Command::new("opentracker");
        command
            // `-A`: the harness may read the tracker's own statistics (`/stats`).
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                "6969",
                "-P",
                "6969",
                "-A",
                "127.0.0.1",
                "-d",
            ])
            .arg(&root)
            // Inside the chroot.
            .args(["-w", "/whitelist.txt"]);
        let mut proc = Proc::spawn("opentracker", &mut command, &scene.logs);
        scene
            .deadline
            .poll("opentracker to listen", Duration::from_millis(20), || {
                proc.assert_running();
                TcpStream::connect(ADDR).ok()
            });
        // It may answer before it has read its whitelist: until then every torrent is refused.
        for torrent in torrents {
            let info_hash = bencode::info_hash(&std::fs::read(torrent).expect("read torrent"));
            scene.deadline.poll(
                "opentracker to load its whitelist",
                Duration::from_millis(20),
                || {
                    proc.assert_running();
                    try_probe(&info_hash).is_ok().then_some(())
                },
            );
        }
        scene.mark("opentracker is up");
        Tracker { _proc: proc }
    }

    /// Waits until the tracker hands out every one of `seeders` for `torrent`.
    pub(crate) fn wait_until_listed(&self, scene: &Scene, torrent: &Path, seeders: &[SocketAddr]) {
        let info_hash = bencode::info_hash(&std::fs::read(torrent).expect("read torrent"));
        let what = format!("opentracker to list {seeders:?}");
        scene.deadline.poll(&what, Duration::from_millis(250), || {
            let peers = probe(&info_hash);
            seeders.iter().all(|s| peers.contains(s)).then_some(())
        });
        scene.mark(&format!("tracker lists {seeders:?}"));
    }
}

/// opentracker's own statistics of `torrent`: (peers, seeders) from `/stats?mode=top100`, which
/// lists each torrent with its count of peers and, separately, of seeds; `(0, 0)` if unlisted.
pub(crate) fn own_stats(torrent: &Path) -> (u32, u32) {
    let hash = hex(&bencode::info_hash(
        &std::fs::read(torrent).expect("read torrent"),
    ));
    let body = http_get("/stats?mode=top100").expect("opentracker's statistics");
    let text = String::from_utf8_lossy(&body);
    let (by_peers, by_seeds) = text
        .split_once("by seeds:")
        .unwrap_or_else(|| panic!("unexpected statistics page: {text}"));
    let count = |section: &str| {
        section
            .lines()
            .filter_map(|l| l.trim().split_once('\t'))
            .find(|(_, h)| h.eq_ignore_ascii_case(&hash))
            .map_or(0, |(n, _)| n.trim().parse().expect("a count"))
    };
    (count(by_peers), count(by_seeds))
}

/// Announces a made-up leecher (peer id `-XX0000-harnessleech`, port 1, 1 byte left) to the
/// tracker for `torrent`, and leaves it in the swarm.
pub(crate) fn add_fake_leecher(torrent: &Path) {
    let info_hash = bencode::info_hash(&std::fs::read(torrent).expect("read torrent"));
    announce(&info_hash, b"-XX0000-harnessleech", "started").expect("tracker answers");
}

/// Announces a made-up download of `torrent` that completes (nothing left) and then leaves, so
/// the tracker counts one more completed download and no more peers.
pub(crate) fn add_fake_completion(torrent: &Path) {
    let info_hash = bencode::info_hash(&std::fs::read(torrent).expect("read torrent"));
    let peer_id = b"-XX0000-harnessdone.";
    // Port 2: opentracker tells peers apart by address and port, and the fake leecher has port 1.
    announce_from(&info_hash, peer_id, 2, "completed", 0).expect("tracker answers");
    announce_from(&info_hash, peer_id, 2, "stopped", 0).expect("tracker answers");
}

/// The total of `completed` events opentracker counted, from `/stats?mode=completed`.
pub(crate) fn own_completed_total() -> u32 {
    let body = http_get("/stats?mode=completed").expect("opentracker's statistics");
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected statistics page: {text}"))
}

/// The peers the tracker hands out for `torrent` now.
pub(crate) fn listed(torrent: &Path) -> Vec<SocketAddr> {
    probe(&bencode::info_hash(
        &std::fs::read(torrent).expect("read torrent"),
    ))
}

/// Announces as a made-up leecher (started, then stopped so it does not linger in the swarm)
/// and returns the peers the tracker handed out.
fn probe(info_hash: &[u8; 20]) -> Vec<SocketAddr> {
    try_probe(info_hash).unwrap_or_else(|reason| panic!("tracker refused the probe: {reason}"))
}

/// [`probe`], with the tracker's `failure reason` as the error.
fn try_probe(info_hash: &[u8; 20]) -> Result<Vec<SocketAddr>, String> {
    let peer_id = *b"-XX0000-harnessprobe";
    let reply = announce(info_hash, &peer_id, "started");
    let _ = announce(info_hash, &peer_id, "stopped");
    let Some(reply) = reply else {
        return Ok(Vec::new());
    };
    match bencode::decode(&reply) {
        Ok(value) => {
            if let Some(reason) = value.get("failure reason").and_then(Value::bytes) {
                return Err(String::from_utf8_lossy(reason).into_owned());
            }
            Ok(value
                .get("peers")
                .and_then(Value::bytes)
                .map(|compact| compact.chunks_exact(6).map(compact_peer).collect())
                .unwrap_or_default())
        }
        Err(e) => panic!("tracker reply is not bencode ({e}): {reply:?}"),
    }
}

fn compact_peer(entry: &[u8]) -> SocketAddr {
    let ip = Ipv4Addr::new(entry[0], entry[1], entry[2], entry[3]);
    SocketAddr::from((ip, u16::from_be_bytes([entry[4], entry[5]])))
}

fn announce(info_hash: &[u8; 20], peer_id: &[u8; 20], event: &str) -> Option<Vec<u8>> {
    announce_from(info_hash, peer_id, 1, event, 1)
}

/// One announce of a made-up peer at 127.0.0.1:`port` with `left` bytes left.
fn announce_from(
    info_hash: &[u8; 20],
    peer_id: &[u8; 20],
    port: u16,
    event: &str,
    left: u64,
) -> Option<Vec<u8>> {
    let path = format!(
        "/announce?info_hash={}&peer_id={}&port={port}&uploaded=0&downloaded=0&left={left}&compact=1\
         &numwant=200&event={event}",
        percent_encode(info_hash),
        percent_encode(peer_id)
    );
    http_get(&path)
}

/// Encodes every byte that is not unreserved as `%XX`: opentracker decodes no `+`.
pub(crate) fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One HTTP/1.0 GET to the tracker; the body, or `None` if the request failed.
fn http_get(path: &str) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&ADDR, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:6969\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(response[split + 4..].to_vec())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
