//! IPv6 against libtorrent on `[::1]` (issue 18, part 4): swarmer without `--bind-address` is
//! dual-stack, so it downloads from a libtorrent seeder listening on `[::1]` only, seeds libtorrent
//! leechers on `::1` and on `127.0.0.1` from one port, and finds a trackerless torrent's seeder
//! through a DHT of libtorrent nodes on `[::1]` (BEP 32's IPv6 network; swarmer's IPv4 network
//! has no node to join). libtorrent's own peer list names swarmer at `::1`, which proves the
//! connections were IPv6.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use crate::libtorrent::{self, LtOptions};
use crate::netns::isolated;
use crate::procs::Proc;
use crate::scene::Scene;
use crate::{MIB, WITH_LIBTORRENT, dht, single_file, swarmer};

/// libtorrent's address on IPv6 loopback.
const LT6: SocketAddr = v6(6881);
/// swarmer's port, on every address (no `--bind-address`).
const PORT: u16 = 6890;
/// swarmer unbound: `0.0.0.0` tells the harness to leave `--bind-address` out.
const DUAL: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT));

const fn v6(port: u16) -> SocketAddr {
    SocketAddr::V6(std::net::SocketAddrV6::new(
        std::net::Ipv6Addr::LOCALHOST,
        port,
        0,
        0,
    ))
}

/// Gives the namespace's `lo` the address `::1` if it lacks it (IPv6 off on `lo`).
fn ipv6_loopback(scene: &Scene) {
    let has = |()| {
        std::fs::read_to_string("/proc/net/if_inet6")
            .is_ok_and(|t| t.lines().any(|l| l.starts_with(&"0".repeat(31))))
    };
    if !has(()) {
        let _ = Command::new("sysctl")
            .args(["-w", "net.ipv6.conf.lo.disable_ipv6=0"])
            .status();
        let _ = Command::new("ip")
            .args(["-6", "addr", "add", "::1/128", "dev", "lo"])
            .status();
    }
    assert!(has(()), "no ::1 on lo in the test's namespace");
    scene.mark("::1 is up");
}

/// Stops a libtorrent process started with `report_peers`: the payload bytes it uploaded in all,
/// and the peers it exchanged bytes with as `(ip, uploaded, downloaded)` (each as last sampled
/// while connected, so possibly short of the final count).
fn stop_and_list_peers(proc: &mut Proc) -> (u64, Vec<(String, u64, u64)>) {
    let status = proc.signal("TERM", Duration::from_secs(10));
    assert!(status.is_some(), "libtorrent did not stop");
    let stopped = libtorrent::events(proc, "stopped");
    let stopped = stopped.last().expect("no stopped event");
    let uploaded = stopped["uploaded"].as_u64().unwrap_or(0);
    let peers = stopped["peers"]
        .as_array()
        .expect("peers reported")
        .iter()
        .map(|p| {
            let n = |k: &str| p[k].as_u64().unwrap_or(0);
            (
                p["ip"].as_str().unwrap_or("").to_owned(),
                n("uploaded"),
                n("downloaded"),
            )
        })
        .collect();
    (uploaded, peers)
}

#[test]
fn download_from_libtorrent_on_ipv6_loopback() {
    isolated(
        "ipv6::download_from_libtorrent_on_ipv6_loopback",
        WITH_LIBTORRENT,
        |scene| {
            ipv6_loopback(scene);
            let fixture = single_file(scene, 4 * MIB, 16, &[]);
            let mut options = LtOptions::new(&fixture.torrent, &fixture.seed_dir, LT6);
            options.report_peers = true;
            let mut seeder = libtorrent::seed(scene, "lt-seeder-v6", &options);
            let out = scene.subdir("swarmer-download");
            let peer = LT6.to_string();
            let mut proc = swarmer::start_download_at(
                scene,
                "swarmer",
                &fixture.torrent,
                &out,
                DUAL,
                &["--peer", &peer],
            );
            swarmer::expect_success(scene, &mut proc);
            let name = fixture.payload.root.file_name().expect("payload name");
            fixture.payload.assert_same(&out.join(name));
            scene.mark("every file is byte-identical");
            let (uploaded, peers) = stop_and_list_peers(&mut seeder);
            assert!(uploaded >= 4 * MIB, "libtorrent uploaded {uploaded} bytes");
            assert!(
                peers.iter().any(|(ip, up, _)| ip == "::1" && *up > 0),
                "libtorrent sent nothing to ::1: {peers:?}"
            );
            assert!(peers.iter().all(|(ip, _, _)| ip == "::1"), "{peers:?}");
            scene.mark("libtorrent sent it all over IPv6");
        },
    );
}

#[test]
fn a_default_swarmer_seeds_libtorrent_on_both_families() {
    isolated(
        "ipv6::a_default_swarmer_seeds_libtorrent_on_both_families",
        WITH_LIBTORRENT,
        |scene| {
            ipv6_loopback(scene);
            let fixture = single_file(scene, 4 * MIB, 16, &[]);
            let mut seed =
                swarmer::seed_at(scene, "swarmer", &fixture.torrent, &fixture.seed_dir, DUAL);
            for (name, listen, dial) in [
                ("lt-leecher-v6", LT6, v6(PORT)),
                (
                    "lt-leecher-v4",
                    crate::LIBTORRENT_LEECHER,
                    SocketAddr::from(([127, 0, 0, 1], PORT)),
                ),
            ] {
                let out = scene.subdir(name);
                let mut options = LtOptions::new(&fixture.torrent, &out, listen);
                let connect = [dial];
                options.connect = &connect;
                options.report_peers = true;
                let mut leecher = libtorrent::leech(scene, name, &options);
                let status = libtorrent::wait_leecher(scene, name, &options, &mut leecher)
                    .expect("the leecher finishes");
                assert!(status.success(), "{name} exited with {status}");
                let file = fixture.payload.root.file_name().expect("payload name");
                fixture.payload.assert_same(&out.join(file));
                let finished = libtorrent::leecher_events(scene, name, "finished");
                assert!(!finished.is_empty(), "{name} did not finish");
                scene.mark(&format!("{name} got every byte from swarmer at {dial}"));
            }
            seed.assert_running();
            let status = seed.signal("TERM", Duration::from_secs(15));
            assert!(status.is_some_and(|s| s.success()), "{status:?}");
        },
    );
}

#[test]
fn the_ipv6_dht_finds_a_trackerless_libtorrent_seeder() {
    isolated(
        "ipv6::the_ipv6_dht_finds_a_trackerless_libtorrent_seeder",
        WITH_LIBTORRENT,
        |scene| {
            ipv6_loopback(scene);
            let fixture = single_file(scene, 4 * MIB, 16, &[]);
            let (nodes, seeder) =
                dht::start_swarm_on(scene, &dht::NODES6, &fixture.torrent, &fixture.seed_dir);
            let bootstrap = dht::NODES6[2].to_string();
            let (mut proc, out) = swarmer::download_and_seed_with_dht_at(
                scene,
                &fixture.torrent,
                DUAL,
                &["--dht-bootstrap", &bootstrap],
            );
            swarmer::wait_download_complete(scene, &mut proc);
            let name = fixture.payload.root.file_name().expect("payload name");
            fixture.payload.assert_same(&out.join(name));
            scene.mark("every file is byte-identical");
            // swarmer announced itself into the IPv6 DHT, from ::1 with its port.
            let all: Vec<&Proc> = nodes.iter().chain(std::iter::once(&seeder)).collect();
            scene.deadline.poll(
                "a libtorrent node to accept swarmer's IPv6 DHT announce",
                Duration::from_millis(100),
                || dht::announced_from(&all, v6(PORT)).then_some(()),
            );
            scene.mark("a libtorrent node on ::1 accepted swarmer's announce_peer");
            let status = proc.signal("TERM", Duration::from_secs(15));
            assert!(status.is_some_and(|s| s.success()), "{status:?}");
        },
    );
}
