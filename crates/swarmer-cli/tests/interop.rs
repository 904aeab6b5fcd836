//! Interop tests: `swarmer download` against real BitTorrent software on loopback.
//!
//! opentracker (HTTP and UDP on 127.0.0.1:6969), libtorrent seeders (python3-libtorrent, driven
//! by `interop/lt_peer.py`, on 127.0.0.2 and 127.0.0.4) and a Transmission seeder (127.0.0.3)
//! serve torrents made by mktorrent; swarmer downloads from 127.0.0.10 and every file must come
//! out byte-identical. Each test runs in its own network namespace holding only `lo` (see
//! `netns`), bounds its time, and kills every process it started. The `harness_selftest_*` tests
//! run the same setups with a libtorrent leecher, so they prove the harness independently of
//! swarmer.
//!
//! Run: `cargo test -p swarmer-cli --test interop -- --nocapture` (as root, for `unshare`).

#[path = "interop/bencode.rs"]
mod bencode;
#[path = "interop/deadline.rs"]
mod deadline;
#[path = "interop/libtorrent.rs"]
mod libtorrent;
#[path = "interop/netns.rs"]
mod netns;
#[path = "interop/payload.rs"]
mod payload;
#[path = "interop/procs.rs"]
mod procs;
#[path = "interop/scene.rs"]
mod scene;
#[path = "interop/swarmer.rs"]
mod swarmer;
#[path = "interop/tracker.rs"]
mod tracker;
#[path = "interop/transmission.rs"]
mod transmission;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use libtorrent::LtOptions;
use netns::{Need, isolated};
use payload::Payload;
use procs::Proc;
use scene::Scene;
use tracker::{HTTP_ANNOUNCE, Tracker, UDP_ANNOUNCE};
use transmission::Transmission;

const MIB: u64 = 1 << 20;
const LIBTORRENT_SEEDER: SocketAddr = addr([127, 0, 0, 2], 6881);
const TRANSMISSION_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const LIBTORRENT_LIAR: SocketAddr = addr([127, 0, 0, 4], 6881);
const LIBTORRENT_LEECHER: SocketAddr = addr([127, 0, 0, 11], 6881);

const fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::V4(std::net::SocketAddrV4::new(
        Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]),
        port,
    ))
}

const WITH_LIBTORRENT: &[Need] = &[Need::Opentracker, Need::Mktorrent, Need::Libtorrent];
const WITH_TRANSMISSION: &[Need] = &[Need::Opentracker, Need::Mktorrent, Need::Transmission];
const WITH_BOTH: &[Need] = &[
    Need::Opentracker,
    Need::Mktorrent,
    Need::Libtorrent,
    Need::Transmission,
];

/// A payload, its torrent, and the directory seeders serve it from.
struct Fixture {
    payload: Payload,
    torrent: PathBuf,
    seed_dir: PathBuf,
}

/// Torrent B (multi-file, nested, 0-byte files) with `2^piece_log2`-byte pieces.
fn multi_file(scene: &Scene, piece_log2: u32, tiers: &[&str]) -> Fixture {
    let seed_dir = scene.subdir("seed");
    let payload = payload::multi_file(&seed_dir, "multi", 1);
    let torrent = payload.make_torrent(&scene.dir.join("multi.torrent"), piece_log2, tiers);
    Fixture {
        payload,
        torrent,
        seed_dir,
    }
}

/// Torrent A (one file of `len` bytes) with `2^piece_log2`-byte pieces.
fn single_file(scene: &Scene, len: u64, piece_log2: u32, tiers: &[&str]) -> Fixture {
    let seed_dir = scene.subdir("seed");
    let payload = payload::single_file(&seed_dir, "single.bin", len, 2);
    let torrent = payload.make_torrent(&scene.dir.join("single.torrent"), piece_log2, tiers);
    Fixture {
        payload,
        torrent,
        seed_dir,
    }
}

fn libtorrent_seeder(scene: &Scene, fixture: &Fixture) -> Proc {
    libtorrent::seed(
        scene,
        "lt-seeder",
        &LtOptions {
            torrent: &fixture.torrent,
            save_path: &fixture.seed_dir,
            listen: LIBTORRENT_SEEDER,
            seed_mode: false,
        },
    )
}

/// Downloads with swarmer and checks every file against the original.
fn swarmer_downloads(scene: &Scene, fixture: &Fixture) {
    let out = swarmer::download(scene, &fixture.torrent);
    let name = fixture.payload.root.file_name().expect("payload name");
    fixture.payload.assert_same(&out.join(name));
    scene.mark("every file is byte-identical");
    // swarmer announced `stopped` on its way out, so the tracker no longer hands it out.
    let me = std::net::SocketAddr::from((swarmer::IP, swarmer::PORT));
    let peers = tracker::listed(&fixture.torrent);
    assert!(
        !peers.contains(&me),
        "tracker still lists swarmer at {me} after it exited: {peers:?}"
    );
    scene.mark("tracker no longer lists swarmer");
}

/// Downloads with a libtorrent leecher and checks every file against the original.
fn libtorrent_downloads(scene: &Scene, fixture: &Fixture) {
    let out = scene.subdir("lt-download");
    let options = LtOptions {
        torrent: &fixture.torrent,
        save_path: &out,
        listen: LIBTORRENT_LEECHER,
        seed_mode: false,
    };
    scene.mark("starting libtorrent leecher");
    let mut leecher = libtorrent::leech(scene, "lt-leecher", &options);
    match leecher.wait_exit(scene.deadline) {
        Some(status) => assert!(status.success(), "libtorrent leecher exited with {status}"),
        None => panic!("libtorrent leecher did not finish before the deadline"),
    }
    scene.mark("libtorrent leecher finished");
    let name = fixture.payload.root.file_name().expect("payload name");
    fixture.payload.assert_same(&out.join(name));
    scene.mark("every file is byte-identical");
}

/// Case 1's setup: torrent B with 16 KiB pieces, a libtorrent seeder, HTTP tracker.
fn seeded_by_libtorrent_via_http(scene: &Scene, leech: fn(&Scene, &Fixture)) {
    let fixture = multi_file(scene, 14, &[HTTP_ANNOUNCE]);
    let tracker = Tracker::start(scene, &[&fixture.torrent]);
    let _seeder = libtorrent_seeder(scene, &fixture);
    tracker.wait_until_listed(scene, &fixture.torrent, &[LIBTORRENT_SEEDER]);
    leech(scene, &fixture);
}

#[test]
fn harness_selftest_libtorrent_to_libtorrent() {
    isolated(
        "harness_selftest_libtorrent_to_libtorrent",
        WITH_LIBTORRENT,
        |scene| {
            seeded_by_libtorrent_via_http(scene, libtorrent_downloads);
        },
    );
}

#[test]
fn download_from_libtorrent_via_http_tracker() {
    isolated(
        "download_from_libtorrent_via_http_tracker",
        WITH_LIBTORRENT,
        |scene| {
            seeded_by_libtorrent_via_http(scene, swarmer_downloads);
        },
    );
}

/// Case 2's setup: torrent A with 1 MiB pieces, a Transmission seeder, UDP tracker only (so the
/// case exercises BEP 15).
fn seeded_by_transmission_via_udp(scene: &Scene, leech: fn(&Scene, &Fixture)) {
    let fixture = single_file(scene, 10 * MIB + 333, 20, &[UDP_ANNOUNCE]);
    let tracker = Tracker::start(scene, &[&fixture.torrent]);
    let transmission = Transmission::start(scene, TRANSMISSION_IP);
    transmission.seed(scene, &fixture.torrent, &fixture.seed_dir);
    let seeder = SocketAddr::from((TRANSMISSION_IP, transmission::PEER_PORT));
    tracker.wait_until_listed(scene, &fixture.torrent, &[seeder]);
    leech(scene, &fixture);
}

#[test]
fn harness_selftest_transmission_to_libtorrent() {
    isolated(
        "harness_selftest_transmission_to_libtorrent",
        WITH_BOTH,
        |scene| {
            seeded_by_transmission_via_udp(scene, libtorrent_downloads);
        },
    );
}

#[test]
fn download_from_transmission_via_udp_tracker() {
    isolated(
        "download_from_transmission_via_udp_tracker",
        WITH_TRANSMISSION,
        |scene| {
            seeded_by_transmission_via_udp(scene, swarmer_downloads);
        },
    );
}

#[test]
fn download_from_libtorrent_and_transmission_at_once() {
    isolated(
        "download_from_libtorrent_and_transmission_at_once",
        WITH_BOTH,
        |scene| {
            let fixture = multi_file(scene, 20, &[HTTP_ANNOUNCE, UDP_ANNOUNCE]);
            let tracker = Tracker::start(scene, &[&fixture.torrent]);
            let transmission = Transmission::start(scene, TRANSMISSION_IP);
            transmission.seed(scene, &fixture.torrent, &fixture.seed_dir);
            let _lt = libtorrent_seeder(scene, &fixture);
            let seeders = [
                SocketAddr::from((TRANSMISSION_IP, transmission::PEER_PORT)),
                LIBTORRENT_SEEDER,
            ];
            tracker.wait_until_listed(scene, &fixture.torrent, &seeders);
            swarmer_downloads(scene, &fixture);
        },
    );
}

#[test]
fn first_tracker_tier_dead() {
    isolated("first_tracker_tier_dead", WITH_LIBTORRENT, |scene| {
        // mktorrent: URLs joined by commas share a tier, each -a starts the next tier. Nothing
        // listens on 127.0.0.1 ports 1 and 2: HTTP is refused at once, UDP gets no answer.
        let dead_tier = "http://127.0.0.1:1/announce,udp://127.0.0.1:2/announce";
        let fixture = single_file(scene, 6 * MIB + 5, 20, &[dead_tier, HTTP_ANNOUNCE]);
        let tracker = Tracker::start(scene, &[&fixture.torrent]);
        let _seeder = libtorrent_seeder(scene, &fixture);
        tracker.wait_until_listed(scene, &fixture.torrent, &[LIBTORRENT_SEEDER]);
        swarmer_downloads(scene, &fixture);
    });
}

/// Starts a libtorrent seeder on 127.0.0.4 that serves a copy of the payload with one byte
/// flipped in every seventh piece, and announces it.
fn lying_seeder(scene: &Scene, fixture: &Fixture, piece_len: u64) -> Proc {
    let liar_dir = scene.subdir("liar");
    let pieces: Vec<u64> = (0..fixture.payload.files[0].1.div_ceil(piece_len))
        .step_by(7)
        .collect();
    fixture
        .payload
        .corrupted_copy(&liar_dir, piece_len, &pieces);
    libtorrent::seed(
        scene,
        "lt-liar",
        &LtOptions {
            torrent: &fixture.torrent,
            save_path: &liar_dir,
            listen: LIBTORRENT_LIAR,
            seed_mode: true,
        },
    )
}

#[test]
fn harness_selftest_corrupt_seeder_serves_bad_pieces() {
    isolated(
        "harness_selftest_corrupt_seeder_serves_bad_pieces",
        WITH_LIBTORRENT,
        |scene| {
            // Proves that the lying seeder of `corrupt_peer_is_survived` really lies: libtorrent in
            // seed mode would otherwise verify each piece before serving it.
            let fixture = single_file(scene, 2 * MIB, 14, &[HTTP_ANNOUNCE]);
            let tracker = Tracker::start(scene, &[&fixture.torrent]);
            let _liar = lying_seeder(scene, &fixture, 1 << 14);
            tracker.wait_until_listed(scene, &fixture.torrent, &[LIBTORRENT_LIAR]);
            let out = scene.subdir("lt-download");
            let options = LtOptions {
                torrent: &fixture.torrent,
                save_path: &out,
                listen: LIBTORRENT_LEECHER,
                seed_mode: false,
            };
            let mut leecher = libtorrent::leech(scene, "lt-leecher", &options);
            leecher.wait_for_line("a hash failure", scene.deadline, |l| {
                l.contains(r#""event": "hash_failed""#)
            });
            let failed = libtorrent::events(&leecher, "hash_failed");
            scene.mark(&format!("leecher saw {} bad pieces", failed.len()));
            assert!(
                failed
                    .iter()
                    .all(|e| e["piece"].as_u64().is_some_and(|p| p % 7 == 0))
            );
        },
    );
}

#[test]
fn corrupt_peer_is_survived() {
    isolated("corrupt_peer_is_survived", WITH_LIBTORRENT, |scene| {
        let fixture = single_file(scene, 8 * MIB, 14, &[HTTP_ANNOUNCE]);
        let tracker = Tracker::start(scene, &[&fixture.torrent]);
        let _liar = lying_seeder(scene, &fixture, 1 << 14);
        let _honest = libtorrent_seeder(scene, &fixture);
        tracker.wait_until_listed(
            scene,
            &fixture.torrent,
            &[LIBTORRENT_SEEDER, LIBTORRENT_LIAR],
        );
        swarmer_downloads(scene, &fixture);
    });
}
