//! Interop tests: `swarmer download` and `swarmer seed` against real BitTorrent software on
//! loopback.
//!
//! opentracker (HTTP and UDP on 127.0.0.1:6969), libtorrent peers (python3-libtorrent, driven
//! by `interop/lt_peer.py`: seeders on 127.0.0.2 and 127.0.0.4, leechers on 127.0.0.11, a relay
//! on 127.0.0.12) and Transmission (127.0.0.3) exchange torrents made by mktorrent with swarmer on
//! 127.0.0.10, which downloads, seeds, or does both at once; every file must come out
//! byte-identical. Each test runs in its own network namespace holding only `lo` (see
//! `netns`), bounds its time, and kills every process it started. The `harness_selftest_*` tests
//! run the same setups with a libtorrent leecher, so they prove the harness independently of
//! swarmer.
//!
//! Run: `cargo test -p swarmer-cli --test interop -- --nocapture` (as root, for `unshare`).

#[path = "interop/bencode.rs"]
mod bencode;
#[path = "interop/cli.rs"]
mod cli;
#[path = "interop/deadline.rs"]
mod deadline;
#[path = "interop/dht.rs"]
mod dht;
#[path = "interop/encryption.rs"]
mod encryption;
#[path = "interop/hostile.rs"]
mod hostile;
#[path = "interop/ipv6.rs"]
mod ipv6;
#[path = "interop/libtorrent.rs"]
mod libtorrent;
#[path = "interop/netns.rs"]
mod netns;
#[path = "interop/payload.rs"]
mod payload;
#[path = "interop/pex.rs"]
mod pex;
#[path = "interop/port_mapping.rs"]
mod port_mapping;
#[path = "interop/procs.rs"]
mod procs;
#[path = "interop/scene.rs"]
mod scene;
#[path = "interop/scrape.rs"]
mod scrape;
#[path = "interop/swarmer.rs"]
mod swarmer;
#[path = "interop/tracker.rs"]
mod tracker;
#[path = "interop/transmission.rs"]
mod transmission;
#[path = "interop/utp.rs"]
mod utp;
#[path = "interop/v2.rs"]
mod v2;
#[path = "interop/webseed.rs"]
mod webseed;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use deadline::Deadline;
use hostile::{Behaviour, HostilePeers};
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
const LIBTORRENT_RELAY: SocketAddr = addr([127, 0, 0, 12], 6881);
const LIBTORRENT_SECOND_SEEDER: SocketAddr = addr([127, 0, 0, 13], 6881);

const fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::V4(std::net::SocketAddrV4::new(
        Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]),
        port,
    ))
}

const WITH_TRACKER: &[Need] = &[Need::Opentracker, Need::Mktorrent];
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
        &LtOptions::new(&fixture.torrent, &fixture.seed_dir, LIBTORRENT_SEEDER),
    )
}

/// Starts opentracker for `fixture` and a libtorrent seeder of it, and waits until the tracker lists
/// the seeder. Both run until dropped.
fn tracked_libtorrent_seeder(scene: &Scene, fixture: &Fixture) -> (Tracker, Proc) {
    let tracker = Tracker::start(scene, &[&fixture.torrent]);
    let seeder = libtorrent_seeder(scene, fixture);
    tracker.wait_until_listed(scene, &fixture.torrent, &[LIBTORRENT_SEEDER]);
    (tracker, seeder)
}

/// Downloads with swarmer and checks every file against the original.
fn swarmer_downloads(scene: &Scene, fixture: &Fixture) {
    let out = swarmer::download(scene, &fixture.torrent);
    let name = fixture.payload.root.file_name().expect("payload name");
    fixture.payload.assert_same(&out.join(name));
    scene.mark("every file is byte-identical");
    assert_only_payload(&out, name);
    // swarmer announced `stopped` on its way out, so the tracker no longer hands it out.
    let me = std::net::SocketAddr::from((swarmer::IP, swarmer::PORT));
    let peers = tracker::listed(&fixture.torrent);
    assert!(
        !peers.contains(&me),
        "tracker still lists swarmer at {me} after it exited: {peers:?}"
    );
    scene.mark("tracker no longer lists swarmer");
}

/// `dir` holds the torrent's files (`name`) and nothing of swarmer's: its fast-resume state and
/// fetched metadata live in the state directory.
fn assert_only_payload(dir: &std::path::Path, name: &std::ffi::OsStr) {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read the download directory")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        entries,
        [name],
        "{} holds more than the download",
        dir.display()
    );
}

/// Downloads with a libtorrent leecher and checks every file against the original.
fn libtorrent_downloads(scene: &Scene, fixture: &Fixture) {
    libtorrent_download_time(scene, fixture);
}

/// Like `libtorrent_downloads`; returns how long the leecher took from adding the torrent to
/// having every piece verified (its own measure, without interpreter start-up).
fn libtorrent_download_time(scene: &Scene, fixture: &Fixture) -> Duration {
    let out = scene.subdir("lt-download");
    let options = LtOptions::new(&fixture.torrent, &out, LIBTORRENT_LEECHER);
    scene.mark("starting libtorrent leecher");
    let mut leecher = libtorrent::leech(scene, "lt-leecher", &options);
    match libtorrent::wait_leecher(scene, "lt-leecher", &options, &mut leecher) {
        Some(status) => assert!(status.success(), "libtorrent leecher exited with {status}"),
        None => panic!("libtorrent leecher did not finish before the deadline"),
    }
    scene.mark("libtorrent leecher finished");
    let name = fixture.payload.root.file_name().expect("payload name");
    fixture.payload.assert_same(&out.join(name));
    scene.mark("every file is byte-identical");
    let finished = libtorrent::events(&leecher, "finished");
    let seconds = finished.first().and_then(|e| e["seconds"].as_f64());
    Duration::from_secs_f64(seconds.expect("the leecher reported no finished event"))
}

/// Case 1's setup: torrent B with 16 KiB pieces, a libtorrent seeder, HTTP tracker.
fn seeded_by_libtorrent_via_http(scene: &Scene, leech: fn(&Scene, &Fixture)) {
    let fixture = multi_file(scene, 14, &[HTTP_ANNOUNCE]);
    let (_tracker, _seeder) = tracked_libtorrent_seeder(scene, &fixture);
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

#[test]
fn download_selected_files_from_libtorrent() {
    isolated(
        "download_selected_files_from_libtorrent",
        WITH_LIBTORRENT,
        |scene| {
            // Torrent B with 16 KiB pieces: dir1/dir2/b.bin (2 MiB + 777 bytes) lies between
            // wanted files and starts and ends mid-piece, so a piece straddles each of its ends;
            // empty.bin is a 0-byte file that must not be created either.
            let fixture = multi_file(scene, 14, &[HTTP_ANNOUNCE]);
            let (_tracker, _seeder) = tracked_libtorrent_seeder(scene, &fixture);
            let out = swarmer::download_with(
                scene,
                &fixture.torrent,
                &["--exclude", "dir1/dir2/b.bin", "--exclude", "empty.bin"],
            );
            let name = fixture.payload.root.file_name().expect("payload name");
            let skipped = [PathBuf::from("dir1/dir2/b.bin"), PathBuf::from("empty.bin")];
            fixture.payload.assert_selected(&out.join(name), &skipped);
            scene.mark("every selected file is byte-identical; skipped files do not exist");
            let parts: Vec<_> = std::fs::read_dir(&out)
                .expect("read output directory")
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".swarmer-") && n.ends_with(".parts"))
                .collect();
            assert_eq!(
                parts.len(),
                1,
                "one parts file for the straddling pieces: {parts:?}"
            );
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
        let (_tracker, _seeder) = tracked_libtorrent_seeder(scene, &fixture);
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
            seed_mode: true,
            ..LtOptions::new(&fixture.torrent, &liar_dir, LIBTORRENT_LIAR)
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
            let options = LtOptions::new(&fixture.torrent, &out, LIBTORRENT_LEECHER);
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

/// Starts `swarmer seed` on a copy of the fixture's payload and waits until the tracker lists it.
fn swarmer_seeder(scene: &Scene, fixture: &Fixture) -> Proc {
    let dir = scene.subdir("swarmer-seed");
    fixture.payload.copy_to(&dir);
    swarmer::seed(scene, &fixture.torrent, &dir, &[])
}

#[test]
fn swarmer_seeds_libtorrent_leecher() {
    isolated(
        "swarmer_seeds_libtorrent_leecher",
        WITH_LIBTORRENT,
        |scene| {
            // 32 KiB pieces, the smallest mktorrent makes; pieces span the 0-byte and small files.
            let fixture = multi_file(scene, 15, &[HTTP_ANNOUNCE]);
            let _tracker = Tracker::start(scene, &[&fixture.torrent]);
            // swarmer is listed before the leecher announces, so the leecher dials swarmer.
            let mut seeder = swarmer_seeder(scene, &fixture);
            libtorrent_downloads(scene, &fixture);
            swarmer::stop(scene, &mut seeder, "TERM", &fixture.torrent);
            // `swarmer seed` writes nothing beside the data it serves.
            let name = fixture.payload.root.file_name().expect("payload name");
            assert_only_payload(&scene.dir.join("swarmer-seed"), name);
        },
    );
}

/// How a test ends a peer it started, while the tracker still runs.
type Stop = fn(&Scene, &Fixture, &mut Proc);

/// For libtorrent peers: the process guard kills them.
fn just_drop(_: &Scene, _: &Fixture, _: &mut Proc) {}

/// Case b's setup: a Transmission leecher announces first (it never dials loopback peers), then
/// `start_seeder` starts a seeder whose first announce hands it Transmission's address; the
/// seeder must dial it. UDP tracker only. Ends the seeder with `stop`.
fn transmission_leeches_from(
    scene: &Scene,
    start_seeder: fn(&Scene, &Fixture) -> Proc,
    stop: Stop,
) {
    let fixture = multi_file(scene, 15, &[UDP_ANNOUNCE]);
    let tracker = Tracker::start(scene, &[&fixture.torrent]);
    let transmission = Transmission::start(scene, TRANSMISSION_IP);
    let out = scene.subdir("transmission-download");
    transmission.leech(scene, &fixture.torrent, &out);
    let leecher = SocketAddr::from((TRANSMISSION_IP, transmission::PEER_PORT));
    tracker.wait_until_listed(scene, &fixture.torrent, &[leecher]);
    let mut seeder = start_seeder(scene, &fixture);
    transmission.wait_downloaded(scene);
    let name = fixture.payload.root.file_name().expect("payload name");
    fixture.payload.assert_same_with_data(&out.join(name));
    scene.mark("every file with data is byte-identical");
    stop(scene, &fixture, &mut seeder);
}

#[test]
fn harness_selftest_libtorrent_seeds_transmission_leecher() {
    isolated(
        "harness_selftest_libtorrent_seeds_transmission_leecher",
        WITH_BOTH,
        |scene| {
            // libtorrent re-announces every 2 s and dials Transmission, as swarmer must.
            transmission_leeches_from(scene, libtorrent_seeder, just_drop);
        },
    );
}

#[test]
fn swarmer_seeds_libtorrent_at_full_speed() {
    isolated(
        "swarmer_seeds_libtorrent_at_full_speed",
        WITH_LIBTORRENT,
        |scene| {
            // 1 MiB pieces, the common size, and enough data for libtorrent to keep its whole
            // request queue (as deep as swarmer's `reqq` allows) outstanding for a while. A
            // healthy transfer takes about a second here, even with a debug build.
            let fixture = single_file(scene, 128 * MIB, 20, &[HTTP_ANNOUNCE]);
            let _tracker = Tracker::start(scene, &[&fixture.torrent]);
            let mut seeder = swarmer_seeder(scene, &fixture);
            let out = scene.subdir("lt-download");
            let options = LtOptions::new(&fixture.torrent, &out, LIBTORRENT_LEECHER);
            let mut leecher = libtorrent::leech(scene, "lt-leecher", &options);
            // A dropped libtorrent dials again only after about a minute: fail at the drop.
            let what = "the leecher to finish, or swarmer to drop it";
            let dropped = scene.deadline.wait(what, || {
                let dropped = swarmer::dropped_as_misbehaving(&seeder);
                if !dropped.is_empty() {
                    return Some(dropped);
                }
                seeder.assert_running();
                leecher
                    .wait_exit(Deadline::after(Duration::ZERO))
                    .map(|_| dropped)
            });
            assert!(
                dropped.is_empty(),
                "swarmer dropped libtorrent as misbehaving, though libtorrent caps its \
                 outstanding requests at the reqq swarmer advertises: {dropped:?}"
            );
            let status = libtorrent::wait_leecher(scene, "lt-leecher", &options, &mut leecher)
                .expect("exited");
            assert!(status.success(), "libtorrent leecher exited with {status}");
            let took = libtorrent::events(&leecher, "finished")[0]["seconds"].as_f64();
            scene.mark(&format!("libtorrent leecher finished in {took:?} s"));
            let name = fixture.payload.root.file_name().expect("payload name");
            fixture.payload.assert_same(&out.join(name));
            swarmer::stop(scene, &mut seeder, "TERM", &fixture.torrent);
        },
    );
}

#[test]
fn swarmer_seed_stops_at_seed_ratio() {
    isolated(
        "swarmer_seed_stops_at_seed_ratio",
        WITH_LIBTORRENT,
        |scene| {
            let fixture = multi_file(scene, 15, &[HTTP_ANNOUNCE]);
            let _tracker = Tracker::start(scene, &[&fixture.torrent]);
            let dir = scene.subdir("swarmer-seed");
            fixture.payload.copy_to(&dir);
            let mut seeder = swarmer::seed(scene, &fixture.torrent, &dir, &["--seed-ratio", "1"]);
            // One whole copy uploaded is a ratio of 1.
            libtorrent_downloads(scene, &fixture);
            swarmer::wait_stops_by_itself(
                scene,
                &mut seeder,
                &fixture.torrent,
                Duration::from_secs(15),
            );
        },
    );
}

#[test]
fn swarmer_seeds_transmission_leecher() {
    isolated(
        "swarmer_seeds_transmission_leecher",
        WITH_TRANSMISSION,
        |scene| {
            // Ctrl-C here, SIGTERM in the other cases: both must stop swarmer gracefully.
            transmission_leeches_from(scene, swarmer_seeder, |scene, fixture, seeder| {
                swarmer::stop(scene, seeder, "INT", &fixture.torrent);
            });
        },
    );
}

#[test]
fn seed_refuses_missing_or_corrupt_data() {
    isolated(
        "seed_refuses_missing_or_corrupt_data",
        WITH_TRACKER,
        |scene| {
            let fixture = single_file(scene, 4 * MIB + 3, 15, &[HTTP_ANNOUNCE]);
            let _tracker = Tracker::start(scene, &[&fixture.torrent]);
            let within = Duration::from_secs(20);

            let empty = scene.subdir("missing");
            let error =
                swarmer::seed_fails(scene, "swarmer-missing", &fixture.torrent, &empty, within);
            scene.mark(&format!(
                "missing data refused: {}",
                swarmer::last_line(&error)
            ));

            let corrupt = scene.subdir("corrupt");
            fixture.payload.corrupted_copy(&corrupt, 1 << 15, &[70]);
            let error =
                swarmer::seed_fails(scene, "swarmer-corrupt", &fixture.torrent, &corrupt, within);
            scene.mark(&format!(
                "corrupt data refused: {}",
                swarmer::last_line(&error)
            ));

            let peers = tracker::listed(&fixture.torrent);
            assert!(
                !peers.contains(&swarmer::addr()),
                "a swarmer that refused its data is listed at the tracker: {peers:?}"
            );
        },
    );
}

/// The upload limit of case c's seeder: the 10 MiB payload then takes about 5 s to reach the
/// relay, long enough to see whether the relay serves pieces before it has them all.
const SLOW_SEEDER_RATE: u64 = 2 * MIB;

/// A peer in the middle of case c: it downloads from the seeder and serves the leecher.
struct Relay {
    proc: Proc,
    /// Where its copy of the payload ends up (the parent of the payload's name).
    out: PathBuf,
    /// Waits until the relay has downloaded every piece and returns a wall-clock time no later
    /// than that moment (it may replace a relay that crashed with a new one).
    wait_complete: Box<WaitComplete>,
}

/// See [`Relay::wait_complete`].
type WaitComplete = dyn Fn(&Scene, &mut Proc) -> SystemTime;

/// Case c's setup: a seeder (127.0.0.2, uploads limited) and a leecher (127.0.0.11) that block
/// each other, so every byte the leecher gets comes through the relay that `start_relay`
/// starts. Asserts that the leecher completes with identical files and that it verified a
/// piece before the relay had completed its own download. Ends the relay with `stop`.
fn relayed_swarm(scene: &Scene, start_relay: fn(&Scene, &Fixture) -> Relay, stop: Stop) {
    let fixture = multi_file(scene, 15, &[HTTP_ANNOUNCE]);
    let tracker = Tracker::start(scene, &[&fixture.torrent]);
    let leecher_ip = [ip_of(LIBTORRENT_LEECHER)];
    let _seeder = libtorrent::seed(
        scene,
        "lt-seeder",
        &LtOptions {
            block: &leecher_ip,
            upload_rate_limit: Some(SLOW_SEEDER_RATE),
            ..LtOptions::new(&fixture.torrent, &fixture.seed_dir, LIBTORRENT_SEEDER)
        },
    );
    tracker.wait_until_listed(scene, &fixture.torrent, &[LIBTORRENT_SEEDER]);

    // The leecher announces before the relay starts, so the relay's first announce hands it
    // both the seeder and the leecher, and it dials them.
    let leecher_out = scene.subdir("lt-download");
    let seeder_ip = [ip_of(LIBTORRENT_SEEDER)];
    let leecher_options = LtOptions {
        block: &seeder_ip,
        progress: true,
        ..LtOptions::new(&fixture.torrent, &leecher_out, LIBTORRENT_LEECHER)
    };
    let mut leecher = libtorrent::leech(scene, "lt-leecher", &leecher_options);
    tracker.wait_until_listed(scene, &fixture.torrent, &[LIBTORRENT_LEECHER]);

    let mut relay = start_relay(scene, &fixture);
    let relay_complete = (relay.wait_complete)(scene, &mut relay.proc);
    match libtorrent::wait_leecher(scene, "lt-leecher", &leecher_options, &mut leecher) {
        Some(status) => assert!(status.success(), "libtorrent leecher exited with {status}"),
        None => panic!("libtorrent leecher did not finish before the deadline"),
    }
    scene.mark("libtorrent leecher finished");
    let name = fixture.payload.root.file_name().expect("payload name");
    fixture.payload.assert_same(&leecher_out.join(name));
    fixture.payload.assert_same(&relay.out.join(name));
    scene.mark("the leecher's and the relay's files are byte-identical");

    // The filters really kept the seeder and the leecher apart.
    let blocked = libtorrent::leecher_events(scene, "lt-leecher", "peer_blocked");
    assert!(
        blocked.iter().any(|e| e["ip"] == seeder_ip[0].to_string()),
        "the leecher never refused the seeder, so the filter is not proven: {blocked:?}"
    );
    let pieces = libtorrent::leecher_events(scene, "lt-leecher", "piece");
    let first_piece = pieces
        .iter()
        .map(libtorrent::event_time)
        .min()
        .expect("the leecher reported no verified piece");
    let early = pieces
        .iter()
        .filter(|e| libtorrent::event_time(e) < relay_complete)
        .count();
    let margin = relay_complete.duration_since(first_piece);
    scene.mark(&format!(
        "the leecher verified {early} of {} pieces before the relay completed (first one {})",
        pieces.len(),
        match &margin {
            Ok(d) => format!("{:.2}s before", d.as_secs_f64()),
            Err(e) => format!("{:.2}s after", e.duration().as_secs_f64()),
        }
    ));
    assert!(
        margin.is_ok_and(|d| !d.is_zero()),
        "the leecher verified no piece before the relay completed its download: the relay did \
         not upload while it was still downloading"
    );
    stop(scene, &fixture, &mut relay.proc);
}

fn ip_of(addr: SocketAddr) -> Ipv4Addr {
    match addr.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(ip) => panic!("IPv4 expected, got {ip}"),
    }
}

fn libtorrent_relay(scene: &Scene, fixture: &Fixture) -> Relay {
    let out = scene.subdir("lt-relay");
    let proc = libtorrent::download_and_seed(
        scene,
        "lt-relay",
        &LtOptions::new(&fixture.torrent, &out, LIBTORRENT_RELAY),
    );
    let (torrent, save_path) = (fixture.torrent.clone(), out.clone());
    Relay {
        proc,
        out,
        wait_complete: Box::new(move |scene, proc| {
            let options = LtOptions::new(&torrent, &save_path, LIBTORRENT_RELAY);
            let line = libtorrent::wait_seeding(scene, "lt-relay", &options, proc);
            scene.mark("lt-relay has every piece");
            libtorrent::event_time(&serde_json::from_str(&line).expect("JSON event"))
        }),
    }
}

fn swarmer_relay(scene: &Scene, fixture: &Fixture) -> Relay {
    let (proc, out) = swarmer::download_and_seed(scene, &fixture.torrent, &[]);
    Relay {
        proc,
        out,
        wait_complete: Box::new(swarmer::wait_download_complete),
    }
}

#[test]
fn harness_selftest_three_party_swarm_relays_through_libtorrent() {
    isolated(
        "harness_selftest_three_party_swarm_relays_through_libtorrent",
        WITH_LIBTORRENT,
        |scene| {
            relayed_swarm(scene, libtorrent_relay, just_drop);
        },
    );
}

#[test]
fn three_party_swarm_relays_through_swarmer() {
    isolated(
        "three_party_swarm_relays_through_swarmer",
        WITH_LIBTORRENT,
        |scene| {
            relayed_swarm(scene, swarmer_relay, |scene, fixture, relay| {
                swarmer::stop(scene, relay, "TERM", &fixture.torrent);
            });
        },
    );
}

/// The limit of the rate-limit cases: the 10 MiB payload takes about 5 s at this rate.
const RATE_LIMIT: u64 = 2 * MIB;

/// Asserts that moving the fixture's payload in `took` kept to `limit` bytes/s: no faster than
/// 1.25 times the limit (room for the limiter's initial burst), and no slower than half of it
/// (a limiter that throttles far below its setting is broken too).
fn assert_rate_near_limit(scene: &Scene, what: &str, fixture: &Fixture, took: Duration) {
    let bytes: u64 = fixture.payload.files.iter().map(|(_, len)| len).sum();
    let rate = bytes as f64 / took.as_secs_f64();
    let limit = RATE_LIMIT as f64;
    scene.mark(&format!(
        "{what}: {bytes} bytes in {:.2}s = {:.2} MiB/s (limit {:.2} MiB/s)",
        took.as_secs_f64(),
        rate / MIB as f64,
        limit / MIB as f64
    ));
    assert!(
        rate <= 1.25 * limit,
        "{what} ran at {rate:.0} B/s, over its limit of {limit:.0} B/s"
    );
    assert!(
        rate >= 0.5 * limit,
        "{what} ran at {rate:.0} B/s, far below its limit of {limit:.0} B/s"
    );
}

#[test]
fn swarmer_seed_keeps_max_upload_rate() {
    isolated(
        "swarmer_seed_keeps_max_upload_rate",
        WITH_LIBTORRENT,
        |scene| {
            let fixture = multi_file(scene, 15, &[HTTP_ANNOUNCE]);
            let _tracker = Tracker::start(scene, &[&fixture.torrent]);
            let dir = scene.subdir("swarmer-seed");
            fixture.payload.copy_to(&dir);
            let limit = RATE_LIMIT.to_string();
            let mut seeder = swarmer::seed(
                scene,
                &fixture.torrent,
                &dir,
                &["--max-upload-rate", &limit],
            );
            let took = libtorrent_download_time(scene, &fixture);
            assert_rate_near_limit(scene, "swarmer's upload", &fixture, took);
            swarmer::stop(scene, &mut seeder, "TERM", &fixture.torrent);
        },
    );
}

#[test]
fn swarmer_download_keeps_max_download_rate() {
    isolated(
        "swarmer_download_keeps_max_download_rate",
        WITH_LIBTORRENT,
        |scene| {
            let fixture = multi_file(scene, 15, &[HTTP_ANNOUNCE]);
            let (_tracker, _seeder) = tracked_libtorrent_seeder(scene, &fixture);
            let limit = RATE_LIMIT.to_string();
            let started = std::time::Instant::now();
            let out =
                swarmer::download_with(scene, &fixture.torrent, &["--max-download-rate", &limit]);
            // Process start and the empty check are in this time too; both are milliseconds.
            assert_rate_near_limit(scene, "swarmer's download", &fixture, started.elapsed());
            let name = fixture.payload.root.file_name().expect("payload name");
            fixture.payload.assert_same(&out.join(name));
        },
    );
}

/// A libtorrent seeder held to `rate` bytes/s (so a download lasts long enough to be interrupted),
/// listed by the tracker.
fn slow_libtorrent_seeder(scene: &Scene, fixture: &Fixture, tracker: &Tracker, rate: u64) -> Proc {
    let options = LtOptions {
        upload_rate_limit: Some(rate),
        ..LtOptions::new(&fixture.torrent, &fixture.seed_dir, LIBTORRENT_SEEDER)
    };
    let seeder = libtorrent::seed(scene, "lt-seeder", &options);
    tracker.wait_until_listed(scene, &fixture.torrent, &[LIBTORRENT_SEEDER]);
    seeder
}

/// Stops a libtorrent seeder with SIGTERM and returns the payload bytes it uploaded in its life.
fn stop_and_count_uploaded(seeder: &mut Proc) -> u64 {
    let status = seeder.signal("TERM", Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "libtorrent seeder did not stop cleanly: {status:?}"
    );
    let stopped = libtorrent::events(seeder, "stopped");
    stopped
        .last()
        .and_then(|e| e["uploaded"].as_u64())
        .expect("no stopped event")
}

/// A pseudo-random number from the clock: each run kills at other moments, and prints them.
fn clock_random() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    u64::from(nanos).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20
}

/// Issue 5's crash test: `kill -9` at three random moments of a download from libtorrent, a
/// restart after each, and a fourth run that completes. The files must be byte-identical and the
/// seeder must have sent under 1.1 × the torrent's size in all: verified pieces survive the kills
/// (in the resume state or found again by hashing) and are not fetched again.
#[test]
fn download_survives_kill_9_three_times() {
    isolated(
        "download_survives_kill_9_three_times",
        WITH_LIBTORRENT,
        |scene| {
            let fixture = single_file(scene, 96 * MIB + 4321, 18, &[HTTP_ANNOUNCE]);
            let tracker = Tracker::start(scene, &[&fixture.torrent]);
            let mut seeder = slow_libtorrent_seeder(scene, &fixture, &tracker, 16 * MIB);
            let out = scene.subdir("swarmer-download");
            for round in 1..=3 {
                let delay = Duration::from_millis(300 + clock_random() % 2200);
                let name = format!("swarmer-{round}");
                let mut proc = swarmer::start_download(scene, &name, &fixture.torrent, &out, &[]);
                if let Some(status) = proc.wait_exit(Deadline::after(delay)) {
                    panic!("{name} exited with {status} before it could be killed");
                }
                proc.signal("KILL", Duration::from_secs(10))
                    .expect("swarmer survived SIGKILL");
                let on_disk = std::fs::metadata(out.join("single.bin"))
                    .map_or(0, |m| std::os::unix::fs::MetadataExt::blocks(&m) * 512);
                scene.mark(&format!(
                    "killed {name} with SIGKILL after {delay:?}; {} MiB allocated on disk",
                    on_disk / MIB
                ));
            }
            let mut last = swarmer::start_download(scene, "swarmer-4", &fixture.torrent, &out, &[]);
            swarmer::expect_success(scene, &mut last);
            fixture.payload.assert_same(&out.join("single.bin"));
            scene.mark("every byte is identical after three kills");
            let size: u64 = fixture.payload.files.iter().map(|(_, len)| len).sum();
            let sent = stop_and_count_uploaded(&mut seeder);
            scene.mark(&format!(
                "the seeder sent {sent} bytes for a {size}-byte torrent ({:.3}×)",
                sent as f64 / size as f64
            ));
            assert!(
                sent * 10 < size * 11,
                "payload sent over four runs: {sent} bytes, over 1.1 × {size}"
            );
        },
    );
}

/// A tmpfs mounted on a scene subdirectory in the test's private mount namespace; unmounted when
/// dropped (declare it after the scene and before the processes that use it), so the scene can
/// remove its directory.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a new tmpfs (with `options`, such as `size=64m`) on the scene's subdirectory `name`.
    fn mount(scene: &Scene, name: &str, options: &str) -> Tmpfs {
        let dir = scene.subdir(name);
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(mounted.success(), "mount a tmpfs ({options}): {mounted}");
        Tmpfs(dir)
    }
}

impl std::ops::Deref for Tmpfs {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the filesystem holding `path` with a file there, then frees `give_back` bytes of it, so
/// the next writes of anyone else soon fail with ENOSPC.
fn fill_disk(path: &std::path::Path, give_back: u64) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("create filler");
    let chunk = vec![0xa5u8; MIB as usize];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    file.set_len(written.saturating_sub(give_back))
        .expect("shrink filler");
}

/// A full disk stops the download with a clear message and a non-zero exit, and the same command
/// run again once space is freed completes it with every byte identical. The output directory is
/// a 64 MiB tmpfs in the test's private mount namespace.
#[test]
fn disk_full_stops_the_download_and_a_rerun_completes_it() {
    isolated(
        "disk_full_stops_the_download_and_a_rerun_completes_it",
        WITH_LIBTORRENT,
        |scene| {
            let fixture = single_file(scene, 48 * MIB, 18, &[HTTP_ANNOUNCE]);
            let tracker = Tracker::start(scene, &[&fixture.torrent]);
            let mut seeder = slow_libtorrent_seeder(scene, &fixture, &tracker, 8 * MIB);
            let out = Tmpfs::mount(scene, "small-disk", "size=64m");

            let mut first =
                swarmer::start_download(scene, "swarmer-1", &fixture.torrent, &out, &[]);
            let file = out.join("single.bin");
            scene.deadline.poll(
                "4 MiB written by swarmer",
                Duration::from_millis(50),
                || {
                    first.assert_running();
                    let allocated = std::fs::metadata(&file)
                        .map_or(0, |m| std::os::unix::fs::MetadataExt::blocks(&m) * 512);
                    (allocated >= 4 * MIB).then_some(())
                },
            );
            let filler = out.join("filler");
            fill_disk(&filler, 2 * MIB);
            scene.mark("the disk is full but for 2 MiB");
            let message = swarmer::expect_failure(scene, &mut first);
            assert!(
                message.contains("disk full") && message.contains("run the same command again"),
                "unclear message: {message}"
            );
            scene.mark(&format!("swarmer stopped: {message}"));

            std::fs::remove_file(&filler).expect("free the space");
            let mut second =
                swarmer::start_download(scene, "swarmer-2", &fixture.torrent, &out, &[]);
            swarmer::expect_success(scene, &mut second);
            fixture.payload.assert_same(&file);
            scene.mark("the rerun completed; every byte is identical");
            let size: u64 = fixture.payload.files.iter().map(|(_, len)| len).sum();
            let sent = stop_and_count_uploaded(&mut seeder);
            scene.mark(&format!(
                "the seeder sent {sent} bytes for a {size}-byte torrent"
            ));
            assert!(
                sent < size + size / 2,
                "verified pieces were fetched again: {sent} bytes sent"
            );
        },
    );
}

/// An output directory swarmer may not write to (a read-only tmpfs: root ignores permission bits)
/// fails at once with a message naming the file and the reason, and a non-zero exit.
#[test]
fn unwritable_output_directory_is_a_clear_error() {
    isolated(
        "unwritable_output_directory_is_a_clear_error",
        &[Need::Mktorrent],
        |scene| {
            let fixture = single_file(scene, MIB, 18, &[HTTP_ANNOUNCE]);
            let out = Tmpfs::mount(scene, "read-only", "ro,size=8m");
            let mut proc = swarmer::start_download(scene, "swarmer", &fixture.torrent, &out, &[]);
            let message = swarmer::expect_failure(scene, &mut proc);
            assert!(
                message.contains("single.bin") && message.contains("Read-only file system"),
                "unclear message: {message}"
            );
            scene.mark(&format!("swarmer refused: {message}"));
        },
    );
}

/// The payload of `hostile_peers_are_survived`: 65 pieces of 1 MiB, so the bitfield has spare
/// bits for the hostile peer that sets them.
const HOSTILE_PAYLOAD: u64 = 64 * MIB + 100 * 1024;
/// The upload limit of each honest seeder there: the download takes about 16 s, long enough for
/// every hostile peer to be dialled, asked for blocks and caught, and for swarmer's 10 s
/// handshake timeout to end the mute peer's connections.
const HONEST_RATE: u64 = 2 * MIB;
/// How long swarmer waits for a requested block before it asks another peer (the engine's
/// default `request_timeout`): a trickling peer may delay the download by this much, no more.
const STUCK_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The bound on swarmer's peak RSS there, from the bounds ARCHITECTURE.md promises: unverified
/// piece memory (32 MiB plus 4 pieces of 1 MiB headroom), the owner's event queue (16 MiB), and
/// per connection a 256 KiB read buffer plus at most one 1 MiB frame being assembled (11 peers
/// and a few connections on their way in or out: about 20 MiB), plus ~20 MiB for code, the
/// runtime, logging and allocator slack. A 4 GiB message buffered, or a flood turned into
/// per-message allocations, breaks it; honest traffic at these rates stays far below.
const HOSTILE_PEAK_RSS_KIB: u64 = 96 * 1024;

#[test]
fn hostile_peers_are_survived() {
    isolated("hostile_peers_are_survived", WITH_LIBTORRENT, |scene| {
        let fixture = single_file(scene, HOSTILE_PAYLOAD, 20, &[HTTP_ANNOUNCE]);
        let tracker = Tracker::start(scene, &[&fixture.torrent]);
        let mut hostile = HostilePeers::start(
            scene,
            &fixture.torrent,
            1 << 20,
            HOSTILE_PAYLOAD,
            swarmer::IP,
        );
        let honest = [LIBTORRENT_SEEDER, LIBTORRENT_SECOND_SEEDER];
        let _seeders: Vec<Proc> = honest
            .iter()
            .enumerate()
            .map(|(i, &listen)| {
                let options = LtOptions {
                    upload_rate_limit: Some(HONEST_RATE),
                    ..LtOptions::new(&fixture.torrent, &fixture.seed_dir, listen)
                };
                libtorrent::seed(scene, &format!("lt-seeder-{i}"), &options)
            })
            .collect();
        let everyone: Vec<SocketAddr> = honest
            .iter()
            .copied()
            .chain(Behaviour::ALL.iter().map(|b| b.addr()))
            .collect();
        tracker.wait_until_listed(scene, &fixture.torrent, &everyone);
        // -vv: connection-level errors (the 4 GiB message, timeouts) are logged at debug level.
        // Some hostile peers dial swarmer too, once it listens.
        let run = swarmer::download_measured(scene, &fixture.torrent, &["-v"], || {
            hostile.dial(swarmer::addr())
        });
        let name = fixture.payload.root.file_name().expect("payload name");
        fixture.payload.assert_same(&run.out.join(name));
        scene.mark("every file is byte-identical");
        hostile.stop();

        let log = run.proc.stderr_text();
        for behaviour in Behaviour::ALL {
            let (connections, acts) = hostile.counts(behaviour);
            let ip = behaviour.ip();
            let about: Vec<&str> = log.lines().filter(|l| mentions(l, ip.into())).collect();
            let faulted: Vec<&str> = about
                .iter()
                .copied()
                .filter(|l| {
                    l.contains("disconnecting peer: misbehaved")
                        || l.contains("disconnecting peer: not useful: its requests")
                        || l.contains("connection closed: message of")
                        || l.contains("handshake timed out")
                })
                .collect();
            scene.mark(&format!(
                "{behaviour:?} ({ip}): {connections} connections, {acts} hostile acts, \
                 {} log lines, swarmer's verdicts: {:?}",
                about.len(),
                faulted.iter().map(|l| verdict(l)).collect::<Vec<_>>()
            ));
            assert!(
                connections > 0 && acts > 0,
                "swarmer never met the hostile peer {behaviour:?}: the test proves nothing about it"
            );
            // Faults, and the mute peer's handshake timeouts; the trickler and the peer that
            // closes after its handshake need not be caught before the download ends.
            let must_be_dropped = matches!(
                behaviour,
                Behaviour::WrongData
                    | Behaviour::Unrequested
                    | Behaviour::Giant
                    | Behaviour::BadBitfield
                    | Behaviour::HaveFlood
                    | Behaviour::Mute
                    | Behaviour::OutOfRange
            );
            if must_be_dropped {
                assert!(
                    !faulted.is_empty(),
                    "swarmer did not drop the faulty peer {behaviour:?} at {ip}"
                );
            }
        }
        let liar = Behaviour::WrongData.ip();
        assert!(
            log.lines()
                .any(|l| l.contains("banning peer") && mentions(l, liar.into())),
            "swarmer did not ban the peer that sent wrong data ({liar})"
        );
        for seeder in honest {
            let ip = seeder.ip();
            let blamed: Vec<&str> = log
                .lines()
                .filter(|l| {
                    (l.contains("banning peer") || l.contains("disconnecting peer: misbehaved"))
                        && mentions(l, ip)
                })
                .collect();
            assert!(
                blamed.is_empty(),
                "swarmer dropped an honest seeder: {blamed:?}"
            );
        }
        let (_, haves) = hostile.counts(Behaviour::HaveFlood);
        scene.mark(&format!("the flooder wrote {haves} `have` messages"));

        // The honest seeders alone take `ideal`; a peer that trickles may hold blocks back until
        // their requests time out, and everything else (start-up, the tracker, the endgame) gets
        // half as much again.
        let ideal = Duration::from_secs_f64(HOSTILE_PAYLOAD as f64 / (2 * HONEST_RATE) as f64);
        let bound = ideal.mul_f64(1.5) + STUCK_REQUEST_TIMEOUT;
        scene.mark(&format!(
            "swarmer downloaded {} MiB in {:.2}s (honest seeders alone: {:.2}s, bound {:.2}s), \
             peak RSS {} KiB = {:.1} MiB (bound {} MiB)",
            HOSTILE_PAYLOAD / MIB,
            run.took.as_secs_f64(),
            ideal.as_secs_f64(),
            bound.as_secs_f64(),
            run.peak_rss_kib,
            run.peak_rss_kib as f64 / 1024.0,
            HOSTILE_PEAK_RSS_KIB / 1024
        ));
        assert!(
            run.took <= bound,
            "the hostile peers slowed the download down"
        );
        assert!(run.peak_rss_kib > 0, "no VmHWM was read");
        assert!(
            run.peak_rss_kib <= HOSTILE_PEAK_RSS_KIB,
            "swarmer's peak RSS of {} KiB is over the bound",
            run.peak_rss_kib
        );
    });
}

/// True if a swarmer log line is about `ip` (its `addr=` or `ip=` field).
fn mentions(line: &str, ip: IpAddr) -> bool {
    line.contains(&format!("addr={ip}:"))
        || line.split_whitespace().any(|w| w == format!("ip={ip}"))
}

/// The message of a swarmer log line: what follows the target's `: `.
fn verdict(line: &str) -> &str {
    line.split_once(": ").map_or(line, |(_, rest)| rest)
}

// Magnet links (BEP 9): the metadata comes from the real clients over `ut_metadata`.

/// A magnet link for `torrent`: its info hash and then `extra` (`&tr=...`, `&x.pe=...`).
fn magnet_for(torrent: &std::path::Path, extra: &str) -> String {
    let bytes = std::fs::read(torrent).expect("read torrent");
    let hash = tracker::hex(&bencode::info_hash(&bytes));
    format!("magnet:?xt=urn:btih:{hash}{extra}")
}

/// The `[index]` of the file at `path` (inside the torrent, without its name) in `swarmer info`.
fn file_index(torrent: &std::path::Path, name: &str, path: &str) -> usize {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_swarmer"))
        .arg("info")
        .arg(torrent)
        .output()
        .expect("run swarmer info");
    let text = String::from_utf8_lossy(&output.stdout);
    let wanted = format!("] {name}/{path} (");
    let line = text
        .lines()
        .find(|l| l.contains(&wanted))
        .unwrap_or_else(|| panic!("{path} not in swarmer info:\n{text}"));
    let index = line.trim().trim_start_matches('[');
    index[..index.find(']').expect("]")].parse().expect("index")
}

#[test]
fn magnet_from_transmission_by_peer_address() {
    isolated(
        "magnet_from_transmission_by_peer_address",
        WITH_TRANSMISSION,
        |scene| {
            // No tracker at all: the link's x.pe is the only way to the seeder.
            let fixture = single_file(scene, 10 * MIB + 333, 20, &[]);
            let transmission = Transmission::start(scene, TRANSMISSION_IP);
            transmission.seed(scene, &fixture.torrent, &fixture.seed_dir);
            let seeder = SocketAddr::from((TRANSMISSION_IP, transmission::PEER_PORT));
            let magnet = magnet_for(&fixture.torrent, &format!("&dn=single.bin&x.pe={seeder}"));
            let saved = scene.dir.join("saved.torrent");
            let saved_arg = saved.to_string_lossy().into_owned();
            let out = scene.subdir("swarmer-download");
            let started = std::time::Instant::now();
            let mut proc = swarmer::start_download(
                scene,
                "swarmer",
                std::path::Path::new(&magnet),
                &out,
                &["--save-torrent", &saved_arg],
            );
            proc.wait_for_stderr_line("the metadata", scene.deadline, |l| {
                l.contains("metadata fetched and verified")
            });
            let metadata = started.elapsed();
            swarmer::expect_success(scene, &mut proc);
            fixture.payload.assert_same(&out.join("single.bin"));
            scene.mark(&format!(
                "metadata from Transmission after {:.1} s, every byte after {:.1} s",
                metadata.as_secs_f64(),
                started.elapsed().as_secs_f64()
            ));
            // The saved torrent has the original's info hash.
            let original = bencode::info_hash(&std::fs::read(&fixture.torrent).expect("read"));
            let written = bencode::info_hash(&std::fs::read(&saved).expect("read saved"));
            assert_eq!(original, written, "--save-torrent wrote another torrent");
            scene.mark("--save-torrent wrote a torrent with the same info hash");
        },
    );
}

#[test]
fn magnet_from_libtorrent_via_tracker_with_file_selection() {
    isolated(
        "magnet_from_libtorrent_via_tracker_with_file_selection",
        WITH_LIBTORRENT,
        |scene| {
            // Info hash and tracker only; `so` (BEP 53) leaves out one file with data and an
            // empty one.
            let fixture = multi_file(scene, 14, &[HTTP_ANNOUNCE]);
            let (_tracker, _seeder) = tracked_libtorrent_seeder(scene, &fixture);
            let skipped = ["dir1/dir2/b.bin", "empty.bin"];
            let skip: Vec<usize> = skipped
                .iter()
                .map(|p| file_index(&fixture.torrent, "multi", p))
                .collect();
            let so: Vec<String> = (0..fixture.payload.files.len())
                .filter(|i| !skip.contains(i))
                .map(|i| i.to_string())
                .collect();
            let tr = tracker::percent_encode(HTTP_ANNOUNCE.as_bytes());
            let magnet = magnet_for(&fixture.torrent, &format!("&tr={tr}&so={}", so.join(",")));
            let out = scene.subdir("swarmer-download");
            let mut proc =
                swarmer::start_download(scene, "swarmer", std::path::Path::new(&magnet), &out, &[]);
            swarmer::expect_success(scene, &mut proc);
            let skipped: Vec<PathBuf> = skipped.iter().map(PathBuf::from).collect();
            fixture
                .payload
                .assert_selected(&out.join("multi"), &skipped);
            scene.mark("metadata from libtorrent; the files `so` selects are byte-identical, the others absent");
            // A rerun finds the metadata saved beside the resume state and fetches nothing.
            let mut again = swarmer::start_download(
                scene,
                "swarmer-again",
                std::path::Path::new(&magnet),
                &out,
                &[],
            );
            swarmer::expect_success(scene, &mut again);
            assert!(
                again
                    .stderr_text()
                    .contains("using the metadata an earlier run saved"),
                "the rerun fetched the metadata again"
            );
            scene.mark("the rerun used the saved metadata");
        },
    );
}

/// Local Service Discovery (BEP 14): a torrent without any tracker, two swarmers on different
/// loopback addresses with LSD on (and every other discovery off). The seeder starts first and
/// announces while it checks its data; the leecher's announce at its start reaches the seeder,
/// which dials it, so the download completes only if LSD works both ways: sending from the bind
/// address to 239.192.152.143:6771 and receiving on the shared port 6771 (SO_REUSEPORT).
///
/// Multicast on `lo` in the test's namespace needs no setup for these clients (measured): a socket
/// that joins the group on the interface of a 127.0.0.x address (swarmer with `--bind-address`,
/// libtorrent with its `listen_interfaces`) and sends from such an address works without the
/// `multicast` flag on `lo` and without a route. Only joining on "any interface" (a swarmer without
/// `--bind-address`) fails, with ENODEV, unless `ip route add 239.0.0.0/8 dev lo` (after
/// `ip link set lo multicast on`) is run in the namespace; no test does that, so the namespace
/// setup is unchanged. `Ip: OutNoRoutes` stays 0, as the harness asserts.
#[test]
fn swarmer_finds_swarmer_by_local_service_discovery() {
    isolated(
        "swarmer_finds_swarmer_by_local_service_discovery",
        &[Need::Mktorrent],
        |scene| {
            let fixture = single_file(scene, 3 * MIB, 16, &[]);
            let seed_dir = scene.subdir("swarmer-seed");
            fixture.payload.copy_to(&seed_dir);
            let mut seeder = swarmer::start_with_lsd(
                scene,
                "swarmer-seed",
                "seed",
                &fixture.torrent,
                &seed_dir,
                swarmer::addr(),
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
                swarmer::SECOND_ADDR,
                &[],
            );
            swarmer::expect_success(scene, &mut leecher);
            let name = fixture.payload.root.file_name().expect("payload name");
            fixture.payload.assert_same(&out.join(name));
            let found = swarmer::found_by_lsd(&seeder);
            let leecher_addr = swarmer::SECOND_ADDR.to_string();
            assert!(
                found.iter().any(|l| l.contains(&leecher_addr)),
                "the seeder's log does not say LSD found {leecher_addr}: {found:?}"
            );
            let status = seeder.signal("INT", Duration::from_secs(15));
            assert!(
                status.is_some_and(|s| s.success()),
                "the seeder did not exit 0 after SIGINT: {status:?}"
            );
            scene.mark("the seeder exited 0");
        },
    );
}

/// Local Service Discovery with libtorrent: a libtorrent seeder (LSD on, no tracker in the
/// torrent) found by a swarmer leecher that started first, so libtorrent's announce at its start
/// reaches swarmer, which dials it.
///
/// libtorrent 2.0.8 gotchas: LSD needs `enable_lsd` in the session settings *and* the torrent
/// without the `disable_lsd` flag; it announces a torrent as soon as it is added (before its check
/// ends) and repeats each announce twice, about 2 s and 6 s later, which our inbound limit (16 per
/// source per minute) absorbs. Its Python binding has no `lsd_peer_alert`, so its side of the
/// discovery cannot be observed from `lt_peer.py`; swarmer's log shows it.
#[test]
fn swarmer_finds_libtorrent_by_local_service_discovery() {
    isolated(
        "swarmer_finds_libtorrent_by_local_service_discovery",
        &[Need::Mktorrent, Need::Libtorrent],
        |scene| {
            let fixture = single_file(scene, 3 * MIB, 16, &[]);
            let out = scene.subdir("swarmer-download");
            let mut leecher = swarmer::start_with_lsd(
                scene,
                "swarmer",
                "download",
                &fixture.torrent,
                &out,
                swarmer::addr(),
                &[],
            );
            leecher.wait_for_stderr_line("`local service discovery on`", scene.deadline, |l| {
                l.contains("local service discovery on")
            });
            let mut options =
                LtOptions::new(&fixture.torrent, &fixture.seed_dir, LIBTORRENT_SEEDER);
            options.lsd = true;
            let _seeder = libtorrent::seed(scene, "lt-seeder", &options);
            swarmer::expect_success(scene, &mut leecher);
            let name = fixture.payload.root.file_name().expect("payload name");
            fixture.payload.assert_same(&out.join(name));
            let found = swarmer::found_by_lsd(&leecher);
            let seeder = LIBTORRENT_SEEDER.to_string();
            assert!(
                found.iter().any(|l| l.contains(&seeder)),
                "swarmer's log does not say LSD found {seeder}: {found:?}"
            );
        },
    );
}

/// Private torrents (BEP 27) stay out of LSD. An observer swarmer (LSD on, `-vv`, which logs every
/// announce it receives) starts first; then a swarmer seeds a private torrent with LSD on; then a
/// third swarmer seeds the observer's public torrent. Announces reach the observer's socket in the
/// order they were sent on `lo`, and a torrent is registered for LSD before its data is checked, so
/// once the observer has heard the public seeder, it would have heard the private seeder's announce
/// before it. It must not have.
#[test]
fn private_torrent_is_never_announced_by_lsd() {
    isolated(
        "private_torrent_is_never_announced_by_lsd",
        &[Need::Mktorrent],
        |scene| {
            let public = single_file(scene, MIB, 16, &[]);
            let private_dir = scene.subdir("private");
            let private = payload::single_file(&private_dir, "private.bin", MIB, 3);
            let private_torrent = scene.dir.join("private.torrent");
            let made = std::process::Command::new("mktorrent")
                .args(["-l", "16", "-p", "-o"])
                .arg(&private_torrent)
                .arg(&private.root)
                .output()
                .expect("run mktorrent");
            assert!(made.status.success(), "mktorrent -p failed: {made:?}");
            let private_hash = tracker::hex(&bencode::info_hash(
                &std::fs::read(&private_torrent).expect("read the private torrent"),
            ));

            let observer_out = scene.subdir("observer");
            let mut observer = swarmer::start_with_lsd(
                scene,
                "observer",
                "download",
                &public.torrent,
                &observer_out,
                swarmer::SECOND_ADDR,
                &["-v"],
            );
            observer.wait_for_stderr_line("`local service discovery on`", scene.deadline, |l| {
                l.contains("local service discovery on")
            });
            let mut private_seeder = swarmer::start_with_lsd(
                scene,
                "private-seed",
                "seed",
                &private_torrent,
                &private_dir,
                swarmer::addr(),
                &[],
            );
            private_seeder.wait_for_stderr_line("`data verified`", scene.deadline, |l| {
                l.contains("data verified")
            });
            let public_seeder_addr = addr([127, 0, 0, 21], 6892);
            let mut public_seeder = swarmer::start_with_lsd(
                scene,
                "public-seed",
                "seed",
                &public.torrent,
                &public.seed_dir,
                public_seeder_addr,
                &[],
            );
            // The observer dials the public seeder it heard of and completes its download.
            swarmer::expect_success(scene, &mut observer);
            let name = public.payload.root.file_name().expect("payload name");
            public.payload.assert_same(&observer_out.join(name));
            let log = observer.stderr_text();
            let heard: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("LSD announce received"))
                .collect();
            assert!(
                heard
                    .iter()
                    .any(|l| l.contains(&public_seeder_addr.to_string())),
                "the observer did not log the public seeder's announce: {heard:?}"
            );
            assert!(
                !log.contains(&private_hash),
                "the private torrent {private_hash} was announced: {heard:?}"
            );
            scene.mark(&format!(
                "the observer heard {} announce(s), none of the private torrent",
                heard.len()
            ));
            for seeder in [&mut private_seeder, &mut public_seeder] {
                let status = seeder.signal("INT", Duration::from_secs(15));
                assert!(status.is_some_and(|s| s.success()), "{status:?}");
            }
        },
    );
}

/// BEP 5 against libtorrent: a torrent with no tracker, seeded by one of five libtorrent DHT nodes on
/// loopback; `swarmer download --dht-bootstrap NODE` must find the seeder through the DHT, download
/// every file byte-identical, and announce itself so that a libtorrent node accepts its
/// `announce_peer` (which needs the token from libtorrent's `get_peers` answer: our KRPC interoperates
/// both ways). Prints the time to the first DHT peer and to completion.
#[test]
fn dht_finds_a_trackerless_libtorrent_seeder() {
    isolated(
        "dht_finds_a_trackerless_libtorrent_seeder",
        &[Need::Mktorrent, Need::Libtorrent],
        |scene| {
            let fixture = single_file(scene, 4 * MIB, 16, &[]);
            let (mut nodes, seeder) = dht::start_swarm(scene, &fixture.torrent, &fixture.seed_dir);
            let bootstrap = dht::NODES[2].to_string();
            let started = std::time::Instant::now();
            let (mut proc, out) = swarmer::download_and_seed_with_dht(
                scene,
                &fixture.torrent,
                &["--dht-bootstrap", &bootstrap],
            );
            proc.wait_for_stderr_line("`peers from the DHT`", scene.deadline, |l| {
                l.contains("peers from the DHT")
            });
            let first_peer = started.elapsed();
            scene.mark(&format!("first DHT peers after {first_peer:?}"));
            swarmer::wait_download_complete(scene, &mut proc);
            let complete = started.elapsed();
            scene.mark(&format!("download complete after {complete:?}"));
            let name = fixture.payload.root.file_name().expect("payload name");
            fixture.payload.assert_same(&out.join(name));
            scene.mark("every file is byte-identical");
            let all: Vec<&Proc> = nodes.iter().chain(std::iter::once(&seeder)).collect();
            scene.deadline.poll(
                "a libtorrent node to accept swarmer's DHT announce",
                Duration::from_millis(100),
                || dht::announced_from(&all, swarmer::addr()).then_some(()),
            );
            scene.mark("a libtorrent node accepted swarmer's announce_peer");
            eprintln!(
                "DHT interop: first peer {:.2}s, complete {:.2}s after start",
                first_peer.as_secs_f64(),
                complete.as_secs_f64()
            );
            proc.assert_running();
            let status = proc.signal("TERM", Duration::from_secs(15));
            assert!(
                status.is_some_and(|s| s.success()),
                "swarmer did not exit 0: {status:?}"
            );
            for n in &mut nodes {
                n.assert_running();
            }
        },
    );
}

/// BEP 9 over BEP 5, as the issue asks: the same trackerless libtorrent swarm, and swarmer given only
/// a magnet link with the info hash. It finds peers through the DHT, fetches the metadata from them
/// (`ut_metadata`), and downloads every file byte-identical. Prints the time from start to the
/// metadata and to completion.
#[test]
fn magnet_by_info_hash_alone_through_the_dht() {
    isolated(
        "magnet_by_info_hash_alone_through_the_dht",
        &[Need::Mktorrent, Need::Libtorrent],
        |scene| {
            let fixture = single_file(scene, 4 * MIB, 16, &[]);
            let _swarm = dht::start_swarm(scene, &fixture.torrent, &fixture.seed_dir);
            let magnet = magnet_for(&fixture.torrent, "");
            let bootstrap = dht::NODES[2].to_string();
            let out = scene.subdir("swarmer-download");
            let started = std::time::Instant::now();
            let mut proc = swarmer::start_download_with_dht(
                scene,
                &magnet,
                &out,
                &["--dht-bootstrap", &bootstrap],
            );
            proc.wait_for_stderr_line("the metadata", scene.deadline, |l| {
                l.contains("metadata fetched and verified")
            });
            let metadata = started.elapsed();
            swarmer::expect_success(scene, &mut proc);
            let complete = started.elapsed();
            let name = fixture.payload.root.file_name().expect("payload name");
            fixture.payload.assert_same(&out.join(name));
            scene.mark("every file is byte-identical");
            eprintln!(
                "magnet over the DHT: metadata {:.2}s, complete {:.2}s after start",
                metadata.as_secs_f64(),
                complete.as_secs_f64()
            );
        },
    );
}

/// BEP 9: a libtorrent leecher that knows only the info hash (a magnet link without trackers)
/// and swarmer's address gets the metadata from swarmer — two 16 KiB pieces of it, the torrent
/// having 1 024 pieces — then the data, byte-identical.
#[test]
fn libtorrent_fetches_metadata_from_swarmer() {
    isolated(
        "libtorrent_fetches_metadata_from_swarmer",
        WITH_LIBTORRENT,
        |scene| {
            let fixture = single_file(scene, 32 * MIB, 15, &[HTTP_ANNOUNCE]);
            let _tracker = Tracker::start(scene, &[&fixture.torrent]);
            let mut seeder = swarmer_seeder(scene, &fixture);
            let out = scene.subdir("lt-download");
            let seeders = [swarmer::addr()];
            let options = LtOptions {
                magnet: true,
                connect: &seeders,
                ..LtOptions::new(&fixture.torrent, &out, LIBTORRENT_LEECHER)
            };
            scene.mark("starting libtorrent magnet leecher");
            let mut leecher = libtorrent::leech(scene, "lt-magnet", &options);
            match libtorrent::wait_leecher(scene, "lt-magnet", &options, &mut leecher) {
                Some(status) => {
                    assert!(status.success(), "libtorrent leecher exited with {status}")
                }
                None => panic!("libtorrent magnet leecher did not finish before the deadline"),
            }
            scene.mark("libtorrent magnet leecher finished");
            let name = fixture.payload.root.file_name().expect("payload name");
            fixture.payload.assert_same(&out.join(name));
            scene.mark("every file is byte-identical");
            swarmer::stop(scene, &mut seeder, "TERM", &fixture.torrent);
        },
    );
}

/// BEP 11: no tracker and no DHT. libtorrent seeder B (127.0.0.13, PEX off, uploads limited to
/// 32 KiB/s so that A stays a leecher for ~30 s) and libtorrent leecher A (127.0.0.2, PEX on)
/// that dials B. Once A has a piece (so it is connected to B), swarmer is started, told only
/// about A (`--peer`); A's PEX message names B, swarmer dials B and completes. B reports that it
/// uploaded to swarmer over a connection it did not dial, and swarmer's log shows B's address
/// arriving by PEX. libtorrent sends its first PEX message right after the extension handshake
/// (measured: 0.6 s) and then one every 60 s; the test relies on the first, and takes ~35 s.
#[test]
fn swarmer_learns_a_seeder_through_pex() {
    isolated(
        "swarmer_learns_a_seeder_through_pex",
        &[Need::Mktorrent, Need::Libtorrent],
        |scene| {
            // 1 MiB: at 32 KiB/s B needs ~32 s to fill A and swarmer.
            let fixture = single_file(scene, MIB, 15, &[]);
            let b_options = LtOptions {
                upload_rate_limit: Some(32 * 1024),
                report_peers: true,
                ..LtOptions::new(
                    &fixture.torrent,
                    &fixture.seed_dir,
                    LIBTORRENT_SECOND_SEEDER,
                )
            };
            let mut b = libtorrent::seed(scene, "lt-b", &b_options);
            let a_dir = scene.subdir("lt-a");
            let b_addr = [LIBTORRENT_SECOND_SEEDER];
            let a_options = LtOptions {
                pex: true,
                connect: &b_addr,
                progress: true,
                ..LtOptions::new(&fixture.torrent, &a_dir, LIBTORRENT_SEEDER)
            };
            let mut a = libtorrent::leech(scene, "lt-a", &a_options);
            a.wait_for_line("a piece from B", scene.deadline, |l| {
                l.contains(r#""event": "piece""#)
            });
            scene.mark("A is connected to B and has a piece");
            let (mut swarmer, out) =
                pex::download_with_pex(scene, &fixture.torrent, &[LIBTORRENT_SEEDER]);
            swarmer::expect_success(scene, &mut swarmer);
            let name = fixture.payload.root.file_name().expect("payload name");
            fixture.payload.assert_same(&out.join(name));
            scene.mark("every file is byte-identical");

            let b_ip = LIBTORRENT_SECOND_SEEDER.ip();
            let learnt = pex::pex_lines(&swarmer);
            assert!(
                learnt
                    .iter()
                    .any(|l| l.contains(&LIBTORRENT_SECOND_SEEDER.to_string())),
                "swarmer's log shows no PEX message naming B: {learnt:?}"
            );
            let status = b.signal("TERM", Duration::from_secs(10));
            assert!(
                status.is_some_and(|s| s.success()),
                "B did not stop cleanly: {status:?}"
            );
            let ip = IpAddr::V4(swarmer::IP);
            match pex::connection_to(&b, ip) {
                Some((uploaded, b_dialled)) => {
                    assert!(!b_dialled, "B dialled swarmer; swarmer was to dial B");
                    assert!(uploaded > 0, "B uploaded nothing to swarmer");
                    scene.mark(&format!(
                        "B uploaded {uploaded} bytes to swarmer, which dialled it after PEX ({b_ip} named by A)"
                    ));
                }
                None => panic!("B was never connected to swarmer"),
            }
        },
    );
}
