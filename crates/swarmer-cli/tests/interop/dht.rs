//! A small DHT of libtorrent nodes (BEP 5) on loopback, for the test that swarmer finds a trackerless
//! torrent's seeder through it and announces itself into it.
//!
//! Five libtorrent 2.0.8 sessions, each on its own 127.0.0.2x:6881 (TCP and the DHT's UDP), join
//! through one another (`lt_peer.py --dht-bootstrap`); one of them seeds. The IPv6 variant
//! ([`NODES6`], BEP 32) puts them on `[::1]`, ports 6881 to 6885. What a libtorrent DHT needs
//! on loopback (measured here):
//! - `dht_restrict_routing_ips = False` and `dht_restrict_search_ips = False`: by default libtorrent
//!   keeps one routing-table entry per /24 and queries one node per IP in a lookup, so on 127.0.0.x
//!   it would know a single node.
//! - `dht_ignore_dark_internet = False`, `dht_prefer_verified_node_ids = False` and
//!   `dht_enforce_node_id = False` (the default): loopback ids cannot be BEP 42-verified.
//! - The torrent must not carry `disable_dht`, and a seeder should `force_dht_announce()`: its first
//!   announce happens before its DHT has joined, and the next one would be 15 minutes later.
//! - `dht_announce_alert` (category `dht_notification`) reports announces a node received: that is
//!   how the test sees that swarmer's `announce_peer` (with a token from its `get_peers` answer) was
//!   accepted by libtorrent, i.e. that our queries interoperate.

use std::net::SocketAddr;
use std::path::Path;

use crate::libtorrent::{self, LtOptions};
use crate::procs::Proc;
use crate::scene::Scene;

/// The libtorrent DHT nodes' addresses; the first seeds.
pub(crate) const NODES: [SocketAddr; 5] = [
    crate::addr([127, 0, 0, 21], 6881),
    crate::addr([127, 0, 0, 22], 6881),
    crate::addr([127, 0, 0, 23], 6881),
    crate::addr([127, 0, 0, 24], 6881),
    crate::addr([127, 0, 0, 25], 6881),
];

/// The IPv6 nodes' addresses; the first seeds.
pub(crate) const NODES6: [SocketAddr; 5] = [
    v6_loopback(6881),
    v6_loopback(6882),
    v6_loopback(6883),
    v6_loopback(6884),
    v6_loopback(6885),
];

const fn v6_loopback(port: u16) -> SocketAddr {
    SocketAddr::V6(std::net::SocketAddrV6::new(
        std::net::Ipv6Addr::LOCALHOST,
        port,
        0,
        0,
    ))
}

/// Every node's address of `nodes` but `except`, as `lt_peer.py --dht-bootstrap` takes them.
fn bootstrap_list(nodes: &[SocketAddr], except: SocketAddr) -> String {
    nodes
        .iter()
        .filter(|a| **a != except)
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts the DHT-only nodes (all of `nodes` but the first), without waiting for anything.
fn start_nodes(scene: &Scene, nodes: &[SocketAddr]) -> Vec<Proc> {
    nodes[1..]
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let mut command = libtorrent::bare_command("dht", *addr, scene);
            command
                .arg("--dht-bootstrap")
                .arg(bootstrap_list(nodes, *addr));
            Proc::spawn(&format!("lt-dht-{}", i + 2), &mut command, &scene.logs)
        })
        .collect()
}

/// Starts the seeder on the first node address with the DHT on and waits until it seeds.
fn start_seeder(scene: &Scene, nodes: &[SocketAddr], torrent: &Path, save_path: &Path) -> Proc {
    let bootstrap = bootstrap_list(nodes, nodes[0]);
    let mut options = LtOptions::new(torrent, save_path, nodes[0]);
    options.dht_bootstrap = Some(&bootstrap);
    libtorrent::seed(scene, "lt-dht-seeder", &options)
}

/// True if some node printed a `dht_announce` event for the peer `peer` (its IP and TCP port).
pub(crate) fn announced_from(procs: &[&Proc], peer: SocketAddr) -> bool {
    let ip = peer.ip().to_string();
    procs.iter().any(|p| {
        libtorrent::events(p, "dht_announce")
            .iter()
            .any(|e| e["ip"] == ip.as_str() && e["port"] == peer.port())
    })
}

/// Starts the DHT-only nodes and the seeder of `torrent` (its data in `save_path`), and waits until
/// some node has received the seeder's own announce, which shows the libtorrent DHT works here and
/// knows the seeder. Returns the nodes and the seeder.
pub(crate) fn start_swarm(scene: &Scene, torrent: &Path, save_path: &Path) -> (Vec<Proc>, Proc) {
    start_swarm_on(scene, &NODES, torrent, save_path)
}

/// [`start_swarm`] on the addresses `nodes` (the first seeds): [`NODES`] or [`NODES6`].
pub(crate) fn start_swarm_on(
    scene: &Scene,
    addrs: &[SocketAddr],
    torrent: &Path,
    save_path: &Path,
) -> (Vec<Proc>, Proc) {
    let nodes = start_nodes(scene, addrs);
    let seeder = start_seeder(scene, addrs, torrent, save_path);
    scene.deadline.poll(
        "a libtorrent node to receive the seeder's DHT announce",
        std::time::Duration::from_millis(100),
        || announced_from(&nodes.iter().collect::<Vec<_>>(), addrs[0]).then_some(()),
    );
    scene.mark("the libtorrent DHT knows the seeder");
    (nodes, seeder)
}
