//! uTP (BEP 29) against real clients: swarmer downloads from and seeds to a libtorrent peer with TCP
//! off (the same peer refuses a TCP-only libtorrent leecher, which proves the transfer was uTP),
//! fetches a magnet link's metadata over uTP, completes a swarm of one TCP-only and one uTP-only
//! seeder (both must have uploaded), and seeds Transmission and downloads from it over uTP (its RPC
//! reports the peer as uTP; swarmer runs uTP-only, so TCP is never tried).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::libtorrent::{self, LtOptions};
use crate::netns::isolated;
use crate::procs::Proc;
use crate::scene::Scene;
use crate::tracker::{HTTP_ANNOUNCE, Tracker, UDP_ANNOUNCE};
use crate::transmission::{self, Transmission};
use crate::{
    Fixture, LIBTORRENT_LEECHER, LIBTORRENT_SECOND_SEEDER, LIBTORRENT_SEEDER, MIB, TRANSMISSION_IP,
    WITH_LIBTORRENT, WITH_TRANSMISSION, magnet_for, multi_file, single_file,
    stop_and_count_uploaded, swarmer,
};

const UTP: &[&str] = &["--transport", "utp"];

/// A libtorrent seeder of `fixture` on `listen` that speaks uTP only, and the tracker listing it.
fn utp_only_seeder(scene: &Scene, fixture: &Fixture, listen: SocketAddr) -> Proc {
    let mut options = LtOptions::new(&fixture.torrent, &fixture.seed_dir, listen);
    options.utp_only = true;
    options.report_peers = true;
    libtorrent::seed(scene, "lt-utp-seeder", &options)
}

/// A TCP-only libtorrent leecher dials the uTP-only seeder for 10 s and gets no byte: what swarmer
/// got from it came over uTP.
fn tcp_only_leecher_gets_nothing(scene: &Scene, fixture: &Fixture) {
    let out = scene.subdir("lt-tcp-download");
    let mut options = LtOptions::new(&fixture.torrent, &out, LIBTORRENT_LEECHER);
    let seeder = [LIBTORRENT_SEEDER];
    options.connect = &seeder;
    options.timeout = Some(Duration::from_secs(10));
    let mut leecher = libtorrent::leech(scene, "lt-tcp-leecher", &options);
    let status = libtorrent::wait_leecher(scene, "lt-tcp-leecher", &options, &mut leecher)
        .expect("the TCP-only leecher gives up after 10 s");
    assert_eq!(
        status.code(),
        Some(2),
        "the TCP-only leecher finished: {status}"
    );
    assert!(libtorrent::events(&leecher, "finished").is_empty());
    scene.mark("the uTP-only seeder gave a TCP-only libtorrent leecher nothing");
}

fn assert_downloaded(scene: &Scene, fixture: &Fixture, out: &Path) {
    let name = fixture.payload.root.file_name().expect("payload name");
    fixture.payload.assert_same(&out.join(name));
    scene.mark("every file is byte-identical");
}

#[test]
fn download_from_utp_only_libtorrent() {
    isolated(
        "utp::download_from_utp_only_libtorrent",
        WITH_LIBTORRENT,
        |scene| {
            let fixture = multi_file(scene, 14, &[HTTP_ANNOUNCE]);
            let tracker = Tracker::start(scene, &[&fixture.torrent]);
            let _seeder = utp_only_seeder(scene, &fixture, LIBTORRENT_SEEDER);
            tracker.wait_until_listed(scene, &fixture.torrent, &[LIBTORRENT_SEEDER]);
            let out = swarmer::download_with(scene, &fixture.torrent, UTP);
            assert_downloaded(scene, &fixture, &out);
            tcp_only_leecher_gets_nothing(scene, &fixture);
        },
    );
}

#[test]
fn swarmer_seeds_utp_only_libtorrent() {
    isolated(
        "utp::swarmer_seeds_utp_only_libtorrent",
        WITH_LIBTORRENT,
        |scene| {
            let fixture = single_file(scene, 32 * MIB, 18, &[HTTP_ANNOUNCE]);
            let _tracker = Tracker::start(scene, &[&fixture.torrent]);
            let dir = scene.subdir("swarmer-seed");
            fixture.payload.copy_to(&dir);
            let mut seeder = swarmer::seed(scene, &fixture.torrent, &dir, UTP);
            let out = scene.subdir("lt-download");
            let mut options = LtOptions::new(&fixture.torrent, &out, LIBTORRENT_LEECHER);
            options.utp_only = true;
            let mut leecher = libtorrent::leech(scene, "lt-utp-leecher", &options);
            let status = libtorrent::wait_leecher(scene, "lt-utp-leecher", &options, &mut leecher)
                .expect("the leecher finishes before the deadline");
            assert!(status.success(), "libtorrent leecher exited with {status}");
            assert_downloaded(scene, &fixture, &out);
            swarmer::stop(scene, &mut seeder, "TERM", &fixture.torrent);
        },
    );
}

#[test]
fn magnet_over_utp_from_libtorrent() {
    isolated(
        "utp::magnet_over_utp_from_libtorrent",
        WITH_LIBTORRENT,
        |scene| {
            let fixture = multi_file(scene, 14, &[HTTP_ANNOUNCE]);
            let tracker = Tracker::start(scene, &[&fixture.torrent]);
            let _seeder = utp_only_seeder(scene, &fixture, LIBTORRENT_SEEDER);
            tracker.wait_until_listed(scene, &fixture.torrent, &[LIBTORRENT_SEEDER]);
            let tr = crate::tracker::percent_encode(HTTP_ANNOUNCE.as_bytes());
            let magnet = magnet_for(&fixture.torrent, &format!("&tr={tr}"));
            let out = scene.subdir("swarmer-download");
            let mut proc = swarmer::start_download(scene, "swarmer", Path::new(&magnet), &out, UTP);
            swarmer::expect_success(scene, &mut proc);
            assert_downloaded(scene, &fixture, &out);
        },
    );
}

#[test]
fn mixed_swarm_of_tcp_only_and_utp_only_seeders_completes() {
    isolated(
        "utp::mixed_swarm_of_tcp_only_and_utp_only_seeders_completes",
        WITH_LIBTORRENT,
        |scene| {
            // Enough pieces that both seeders serve some; swarmer runs with the default transport.
            let fixture = single_file(scene, 32 * MIB, 18, &[HTTP_ANNOUNCE]);
            let tracker = Tracker::start(scene, &[&fixture.torrent]);
            let mut tcp_options =
                LtOptions::new(&fixture.torrent, &fixture.seed_dir, LIBTORRENT_SEEDER);
            tcp_options.report_peers = true;
            let mut tcp_seeder = libtorrent::seed(scene, "lt-tcp-seeder", &tcp_options);
            let mut utp_seeder = utp_only_seeder(scene, &fixture, LIBTORRENT_SECOND_SEEDER);
            tracker.wait_until_listed(
                scene,
                &fixture.torrent,
                &[LIBTORRENT_SEEDER, LIBTORRENT_SECOND_SEEDER],
            );
            let out = swarmer::download(scene, &fixture.torrent);
            assert_downloaded(scene, &fixture, &out);
            let over_tcp = stop_and_count_uploaded(&mut tcp_seeder);
            let over_utp = stop_and_count_uploaded(&mut utp_seeder);
            scene.mark(&format!("{over_tcp} bytes over TCP, {over_utp} over uTP"));
            assert!(
                over_tcp > 0 && over_utp > 0,
                "{over_tcp} B over TCP, {over_utp} B over uTP"
            );
        },
    );
}

/// opentracker and a Transmission with uTP on, listed by the tracker, that seeds `fixture`
/// (`leech_into` `None`) or downloads it into `leech_into`. Transmission never dials loopback
/// peers: it announces first, and swarmer dials it.
fn transmission_over_utp(
    scene: &Scene,
    fixture: &Fixture,
    leech_into: Option<&Path>,
) -> (Tracker, Transmission) {
    let tracker = Tracker::start(scene, &[&fixture.torrent]);
    let transmission = Transmission::start_with_utp(scene, TRANSMISSION_IP);
    match leech_into {
        Some(out) => transmission.leech(scene, &fixture.torrent, out),
        None => transmission.seed(scene, &fixture.torrent, &fixture.seed_dir),
    }
    let peer = SocketAddr::from((TRANSMISSION_IP, transmission::PEER_PORT));
    tracker.wait_until_listed(scene, &fixture.torrent, &[peer]);
    (tracker, transmission)
}

#[test]
fn swarmer_seeds_transmission_over_utp() {
    isolated(
        "utp::swarmer_seeds_transmission_over_utp",
        WITH_TRANSMISSION,
        |scene| {
            let fixture = single_file(scene, 16 * MIB, 18, &[UDP_ANNOUNCE]);
            let out = scene.subdir("transmission-download");
            let (_tracker, transmission) = transmission_over_utp(scene, &fixture, Some(&out));
            let dir = scene.subdir("swarmer-seed");
            fixture.payload.copy_to(&dir);
            let mut seeder = swarmer::seed(scene, &fixture.torrent, &dir, UTP);
            let peer = transmission.wait_peer(scene);
            assert_eq!(peer["isUTP"], true, "Transmission's peer: {peer}");
            scene.mark("Transmission reports swarmer as a uTP peer");
            transmission.wait_downloaded(scene);
            let name = fixture.payload.root.file_name().expect("payload name");
            fixture.payload.assert_same(&out.join(name));
            swarmer::stop(scene, &mut seeder, "TERM", &fixture.torrent);
        },
    );
}

#[test]
fn swarmer_downloads_from_transmission_over_utp() {
    isolated(
        "utp::swarmer_downloads_from_transmission_over_utp",
        WITH_TRANSMISSION,
        |scene| {
            let fixture = single_file(scene, 16 * MIB, 18, &[UDP_ANNOUNCE]);
            let (_tracker, transmission) = transmission_over_utp(scene, &fixture, None);
            // uTP only, so TCP is never tried; and slowed to ~4 s, so Transmission's peer list is
            // read while it uploads.
            let out = scene.subdir("swarmer-download");
            let args = ["--transport", "utp", "--max-download-rate", "4M"];
            let mut proc = swarmer::start_download(scene, "swarmer", &fixture.torrent, &out, &args);
            let peer = transmission.wait_peer(scene);
            assert_eq!(peer["isUTP"], true, "Transmission's peer: {peer}");
            assert_eq!(peer["isIncoming"], true, "Transmission's peer: {peer}");
            scene.mark("Transmission reports swarmer, downloading from it, as a uTP peer");
            swarmer::expect_success(scene, &mut proc);
            assert_downloaded(scene, &fixture, &out);
        },
    );
}
