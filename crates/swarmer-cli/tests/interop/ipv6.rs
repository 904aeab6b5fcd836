//! IPv6 against libtorrent on `[::1]` (issue 18, part 4): swarmer without `--bind-address` is
//! dual-stack, so it downloads from a libtorrent seeder listening on `[::1]` only, seeds libtorrent
//! leechers on `::1` and on `127.0.0.1` from one port, and finds a trackerless torrent's seeder
//! through a DHT of libtorrent nodes on `[::1]` (BEP 32's IPv6 network; swarmer's IPv4 network
//! has no node to join). libtorrent's own peer list names swarmer at `::1`, which proves the
//! connections were IPv6. A tracker whose name resolves to `127.0.0.1` and `::1` (a private
//! `/etc/hosts` bind-mounted in the test's mount namespace) gets one announce over each family,
//! and the peers of both replies are used (BEP 7). And two swarmers bound to IPv6 addresses find each other by Local
//! Service Discovery over `ff15::efc0:988f` (BEP 14): Linux does not deliver IPv6 multicast on
//! `lo` (measured), so that test gives its namespace a veth pair, both ends inside it, with one
//! ULA address each; no packet can leave the namespace either way.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::{Arc, Mutex};
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

/// A veth pair `v0`/`v1` inside the test's namespace with `fd00::1` and `fd00::2` (no duplicate
/// address detection, so they are usable at once), up.
fn veth_pair(scene: &Scene) {
    let ip = |args: &[&str]| {
        let status = Command::new("ip").args(args).status().expect("run ip");
        assert!(status.success(), "ip {args:?}: {status}");
    };
    ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ip(&["link", "set", "v0", "up"]);
    ip(&["link", "set", "v1", "up"]);
    ip(&["-6", "addr", "add", "fd00::1/64", "dev", "v0", "nodad"]);
    ip(&["-6", "addr", "add", "fd00::2/64", "dev", "v1", "nodad"]);
    scene.deadline.poll(
        "the veth pair to come up",
        Duration::from_millis(20),
        || {
            let out = Command::new("ip")
                .args(["-o", "link", "show", "v1"])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("state UP")
                .then_some(())
        },
    );
    scene.mark("veth pair v0 (fd00::1) and v1 (fd00::2) up");
}

#[test]
fn two_swarmers_find_each_other_by_lsd_over_ipv6() {
    isolated(
        "ipv6::two_swarmers_find_each_other_by_lsd_over_ipv6",
        &[crate::Need::Mktorrent],
        |scene| {
            ipv6_loopback(scene);
            veth_pair(scene);
            let fixture = single_file(scene, 3 * MIB, 16, &[]);
            let seed_dir = scene.subdir("swarmer-seed");
            fixture.payload.copy_to(&seed_dir);
            let seeder_at: SocketAddr = "[fd00::1]:6890".parse().unwrap();
            let leecher_at: SocketAddr = "[fd00::2]:6891".parse().unwrap();
            let mut seeder = swarmer::start_with_lsd(
                scene,
                "swarmer-seed",
                "seed",
                &fixture.torrent,
                &seed_dir,
                seeder_at,
                &[],
            );
            seeder.wait_for_stderr_line("`data verified`", scene.deadline, |l| {
                l.contains("data verified")
            });
            let out = scene.subdir("swarmer-download");
            let mut leecher = swarmer::start_with_lsd(
                scene,
                "swarmer-download",
                "download",
                &fixture.torrent,
                &out,
                leecher_at,
                &[],
            );
            swarmer::expect_success(scene, &mut leecher);
            let name = fixture.payload.root.file_name().expect("payload name");
            fixture.payload.assert_same(&out.join(name));
            // The seeder registered its torrent before the leecher started, so the seeder hears
            // the leecher's first announce (or a copy of it) and logs the peer it found.
            let found = swarmer::found_by_lsd(&seeder);
            assert!(
                found.iter().any(|l| l.contains(&leecher_at.to_string())),
                "the seeder's log does not say LSD found {leecher_at}: {found:?}"
            );
            scene.mark("the seeder found the leecher over IPv6 LSD and served it");
            let status = seeder.signal("INT", Duration::from_secs(15));
            assert!(status.is_some_and(|s| s.success()), "{status:?}");
        },
    );
}

/// A scripted HTTP tracker on `127.0.0.1:6969` and `[::1]:6969`: over IPv4 it lists no peer, over
/// IPv6 the peer `peer6` (`peers6`, BEP 7). Records `(source, request line)` of each request.
fn dual_tracker(peer6: SocketAddr) -> Arc<Mutex<Vec<(SocketAddr, String)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    for (bind, body) in [
        ("127.0.0.1:6969", b"d8:intervali1800e5:peers0:e".to_vec()),
        ("[::1]:6969", {
            let SocketAddr::V6(p) = peer6 else {
                panic!("an IPv6 peer")
            };
            let mut b = b"d8:intervali1800e5:peers0:6:peers618:".to_vec();
            b.extend_from_slice(&p.ip().octets());
            b.extend_from_slice(&p.port().to_be_bytes());
            b.push(b'e');
            b
        }),
    ] {
        let listener = std::net::TcpListener::bind(bind).expect("bind the scripted tracker");
        let seen = Arc::clone(&seen);
        // Ends with the test's process (the namespace's inner run).
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16_384 {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned();
                if let Ok(from) = stream.peer_addr() {
                    seen.lock().unwrap().push((from, line));
                }
                let mut reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                reply.extend_from_slice(&body);
                let _ = stream.write_all(&reply);
            }
        });
    }
    seen
}

#[test]
fn a_tracker_with_both_families_gets_an_announce_over_each() {
    isolated(
        "ipv6::a_tracker_with_both_families_gets_an_announce_over_each",
        WITH_LIBTORRENT,
        |scene| {
            ipv6_loopback(scene);
            let hosts = scene.dir.join("hosts");
            std::fs::write(
                &hosts,
                "127.0.0.1 localhost\n127.0.0.1 tracker.test\n::1 tracker.test\n",
            )
            .unwrap();
            let status = Command::new("mount")
                .args(["--bind", hosts.to_str().unwrap(), "/etc/hosts"])
                .status()
                .expect("run mount");
            assert!(status.success(), "mount --bind hosts: {status}");
            let seen = dual_tracker(LT6);
            let fixture = single_file(scene, 4 * MIB, 16, &["http://tracker.test:6969/announce"]);
            let _seeder = libtorrent::seed(
                scene,
                "lt-seeder-v6",
                &LtOptions::new(&fixture.torrent, &fixture.seed_dir, LT6),
            );
            // The only way to the seeder: the IPv6 announce's `peers6`.
            let out = scene.subdir("swarmer-download");
            let mut proc =
                swarmer::start_download_at(scene, "swarmer", &fixture.torrent, &out, DUAL, &[]);
            swarmer::expect_success(scene, &mut proc);
            let name = fixture.payload.root.file_name().expect("payload name");
            fixture.payload.assert_same(&out.join(name));
            let ours: Vec<(SocketAddr, String)> = seen
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, line)| line.contains(&format!("&port={PORT}&")))
                .cloned()
                .collect();
            let started = |v4: bool| {
                ours.iter()
                    .any(|(from, l)| from.is_ipv4() == v4 && l.contains("event=started"))
            };
            assert!(started(true) && started(false), "{ours:?}");
            scene.mark("one started announce over each family; the IPv6 one's peer served it all");
        },
    );
}
