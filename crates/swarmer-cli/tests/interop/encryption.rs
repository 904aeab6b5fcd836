//! Message Stream Encryption against real clients that refuse plaintext: a libtorrent forced to
//! RC4 both ways (`out_enc_policy` and `in_enc_policy` forced, `allowed_enc_level` RC4) and a
//! Transmission with `encryption: 2`, as seeders and as leechers, over the HTTP and UDP trackers
//! and by magnet link. Each forced peer is shown to refuse plaintext (a plaintext-only libtorrent
//! gets nothing from it in the same run), and `--encryption disable` against it fails with one
//! line after `--give-up-after`.

use super::*;

/// A libtorrent seeder of `fixture` that speaks RC4 only, reporting its peers when stopped.
fn forced_libtorrent_seeder(scene: &Scene, fixture: &Fixture) -> Proc {
    let mut options = LtOptions::new(&fixture.torrent, &fixture.seed_dir, LIBTORRENT_SEEDER);
    options.encryption = Some("forced");
    options.report_peers = true;
    libtorrent::seed(scene, "lt-forced-seeder", &options)
}

/// Stops a libtorrent peer started with `report_peers` and returns its `stopped` event.
fn stop_reporting(proc: &mut Proc) -> serde_json::Value {
    let status = proc.signal("TERM", Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{} did not stop cleanly: {status:?}",
        proc.name()
    );
    let stopped = libtorrent::events(proc, "stopped");
    stopped.last().cloned().expect("no stopped event")
}

/// The seeder's report on swarmer's connections: every one that got past the handshakes was RC4,
/// and the payload went over those. (A dial of the seeder's that swarmer's exit cut short, still
/// connecting or in the MSE handshake when sampled, carried no BitTorrent message either way.)
fn assert_rc4_to_swarmer(stopped: &serde_json::Value, at_least: u64) {
    let peers = stopped["peers"].as_array().expect("peers reported");
    let swarmer_ip = swarmer::IP.to_string();
    let ours: Vec<&serde_json::Value> = peers.iter().filter(|p| p["ip"] == swarmer_ip).collect();
    assert!(!ours.is_empty(), "the seeder never met swarmer: {stopped}");
    let plaintext = ours
        .iter()
        .any(|p| p["rc4"] != true && p["handshaken"] != false);
    assert!(!plaintext, "{stopped}");
    let uploaded: u64 = ours
        .iter()
        .filter(|p| p["rc4"] == true)
        .filter_map(|p| p["uploaded"].as_u64())
        .sum();
    assert!(
        uploaded >= at_least,
        "{uploaded} bytes to swarmer: {stopped}"
    );
}

#[test]
fn download_from_forced_libtorrent_via_http_tracker() {
    isolated(
        "encryption::download_from_forced_libtorrent_via_http_tracker",
        WITH_LIBTORRENT,
        |scene| {
            let fixture = multi_file(scene, 14, &[HTTP_ANNOUNCE]);
            let tracker = Tracker::start(scene, &[&fixture.torrent]);
            let mut seeder = forced_libtorrent_seeder(scene, &fixture);
            tracker.wait_until_listed(scene, &fixture.torrent, &[LIBTORRENT_SEEDER]);
            // A plaintext-only libtorrent tries the same seeder all along (and never swarmer,
            // which would serve it in plaintext).
            let out = scene.subdir("lt-plaintext-download");
            let mut options = LtOptions::new(&fixture.torrent, &out, LIBTORRENT_LEECHER);
            options.encryption = Some("plaintext");
            options.block = &[swarmer::IP];
            options.connect = &[LIBTORRENT_SEEDER];
            options.report_peers = true;
            let mut plaintext = libtorrent::leech(scene, "lt-plaintext-leecher", &options);
            // swarmer's default (prefer): MSE first, and RC4 is what the seeder selects.
            swarmer_downloads(scene, &fixture);
            let stopped = stop_reporting(&mut plaintext);
            assert_eq!(stopped["downloaded"], 0, "plaintext got data: {stopped}");
            scene.mark("the plaintext-only libtorrent got nothing from the forced seeder");
            let total = fixture.payload.files.iter().map(|(_, len)| len).sum();
            assert_rc4_to_swarmer(&stop_reporting(&mut seeder), total);
            scene.mark("the forced seeder sent swarmer everything over RC4");
        },
    );
}

#[test]
fn magnet_from_forced_libtorrent_via_udp_tracker() {
    isolated(
        "encryption::magnet_from_forced_libtorrent_via_udp_tracker",
        WITH_LIBTORRENT,
        |scene| {
            let fixture = single_file(scene, 3 * MIB + 77, 16, &[UDP_ANNOUNCE]);
            let tracker = Tracker::start(scene, &[&fixture.torrent]);
            let mut seeder = forced_libtorrent_seeder(scene, &fixture);
            tracker.wait_until_listed(scene, &fixture.torrent, &[LIBTORRENT_SEEDER]);
            let tr = tracker::percent_encode(UDP_ANNOUNCE.as_bytes());
            let magnet = magnet_for(&fixture.torrent, &format!("&tr={tr}"));
            let out = scene.subdir("swarmer-download");
            let mut proc = swarmer::start_download(
                scene,
                "swarmer",
                std::path::Path::new(&magnet),
                &out,
                &["--encryption", "require"],
            );
            swarmer::expect_success(scene, &mut proc);
            fixture.payload.assert_same(&out.join("single.bin"));
            scene.mark("metadata and payload over RC4; byte-identical");
            assert_rc4_to_swarmer(&stop_reporting(&mut seeder), 3 * MIB);
        },
    );
}

#[test]
fn swarmer_seeds_forced_libtorrent_leecher() {
    isolated(
        "encryption::swarmer_seeds_forced_libtorrent_leecher",
        WITH_LIBTORRENT,
        |scene| {
            let fixture = multi_file(scene, 15, &[HTTP_ANNOUNCE]);
            let _tracker = Tracker::start(scene, &[&fixture.torrent]);
            let dir = scene.subdir("swarmer-seed");
            fixture.payload.copy_to(&dir);
            let mut seeder =
                swarmer::seed(scene, &fixture.torrent, &dir, &["--encryption", "require"]);
            // The leecher dials swarmer: the incoming MSE handshake, its torrent found by
            // req2 xor req3.
            let out = scene.subdir("lt-download");
            let mut options = LtOptions::new(&fixture.torrent, &out, LIBTORRENT_LEECHER);
            options.encryption = Some("forced");
            let mut leecher = libtorrent::leech(scene, "lt-forced-leecher", &options);
            let status =
                libtorrent::wait_leecher(scene, "lt-forced-leecher", &options, &mut leecher)
                    .expect("the leecher finished before the deadline");
            assert!(status.success(), "libtorrent leecher exited with {status}");
            let name = fixture.payload.root.file_name().expect("payload name");
            fixture.payload.assert_same(&out.join(name));
            scene.mark("the forced libtorrent leecher got every file from swarmer");
            swarmer::stop(scene, &mut seeder, "TERM", &fixture.torrent);
        },
    );
}

#[test]
fn download_from_forced_transmission_via_udp_tracker() {
    isolated(
        "encryption::download_from_forced_transmission_via_udp_tracker",
        WITH_TRANSMISSION,
        |scene| {
            let fixture = single_file(scene, 10 * MIB + 333, 20, &[UDP_ANNOUNCE]);
            let tracker = Tracker::start(scene, &[&fixture.torrent]);
            let transmission = Transmission::start_with_encryption(scene, TRANSMISSION_IP, 2);
            transmission.seed(scene, &fixture.torrent, &fixture.seed_dir);
            let seeder = SocketAddr::from((TRANSMISSION_IP, transmission::PEER_PORT));
            tracker.wait_until_listed(scene, &fixture.torrent, &[seeder]);
            let out = swarmer::download_with(scene, &fixture.torrent, &["--encryption", "require"]);
            fixture.payload.assert_same(&out.join("single.bin"));
            scene.mark("every byte from Transmission (encryption required) is identical");
        },
    );
}

#[test]
fn swarmer_seeds_forced_transmission_leecher() {
    isolated(
        "encryption::swarmer_seeds_forced_transmission_leecher",
        WITH_TRANSMISSION,
        |scene| {
            // Transmission never dials loopback peers: swarmer dials it, with MSE.
            let fixture = multi_file(scene, 15, &[UDP_ANNOUNCE]);
            let tracker = Tracker::start(scene, &[&fixture.torrent]);
            let transmission = Transmission::start_with_encryption(scene, TRANSMISSION_IP, 2);
            let out = scene.subdir("transmission-download");
            transmission.leech(scene, &fixture.torrent, &out);
            let leecher = SocketAddr::from((TRANSMISSION_IP, transmission::PEER_PORT));
            tracker.wait_until_listed(scene, &fixture.torrent, &[leecher]);
            let dir = scene.subdir("swarmer-seed");
            fixture.payload.copy_to(&dir);
            let mut seeder =
                swarmer::seed(scene, &fixture.torrent, &dir, &["--encryption", "require"]);
            transmission.wait_downloaded(scene);
            let name = fixture.payload.root.file_name().expect("payload name");
            fixture.payload.assert_same_with_data(&out.join(name));
            scene.mark("every file with data is byte-identical");
            swarmer::stop(scene, &mut seeder, "TERM", &fixture.torrent);
        },
    );
}

#[test]
fn disabled_encryption_fails_cleanly_against_a_forced_peer() {
    isolated(
        "encryption::disabled_encryption_fails_cleanly_against_a_forced_peer",
        WITH_LIBTORRENT,
        |scene| {
            let fixture = single_file(scene, MIB, 15, &[HTTP_ANNOUNCE]);
            let (_tracker, _seeder) = {
                let tracker = Tracker::start(scene, &[&fixture.torrent]);
                let seeder = forced_libtorrent_seeder(scene, &fixture);
                tracker.wait_until_listed(scene, &fixture.torrent, &[LIBTORRENT_SEEDER]);
                (tracker, seeder)
            };
            let out = scene.subdir("swarmer-download");
            let started = std::time::Instant::now();
            let extra = ["--encryption", "disable", "--give-up-after", "5s"];
            let mut proc =
                swarmer::start_download(scene, "swarmer", &fixture.torrent, &out, &extra);
            let error = swarmer::expect_failure(scene, &mut proc);
            let took = started.elapsed();
            assert!(
                error.contains("no peer connected for 5s"),
                "not the give-up error: {error}"
            );
            assert!(
                took < Duration::from_secs(30),
                "gave up only after {took:?}"
            );
            scene.mark(&format!("swarmer gave up after {took:?}: {error}"));
        },
    );
}
