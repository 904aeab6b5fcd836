//! Scrape (BEP 48 over HTTP, BEP 15 over UDP) against opentracker: `swarmer info --scrape` reports,
//! for each of a torrent's trackers, the counts opentracker's own statistics page shows.

use std::process::Command;

use crate::netns::isolated;
use crate::tracker::{self, HTTP_ANNOUNCE, UDP_ANNOUNCE};
use crate::{MIB, WITH_LIBTORRENT, single_file, swarmer, tracked_libtorrent_seeder};

#[test]
fn info_scrape_shows_the_trackers_own_counts_over_http_and_udp() {
    isolated(
        "scrape::info_scrape_shows_the_trackers_own_counts_over_http_and_udp",
        WITH_LIBTORRENT,
        |scene| {
            let fixture = single_file(scene, 2 * MIB + 17, 15, &[HTTP_ANNOUNCE, UDP_ANNOUNCE]);
            let (_tracker, _seeder) = tracked_libtorrent_seeder(scene, &fixture);
            // Two completed downloads (swarmer's, which then leaves: opentracker counts it only if
            // its `completed` announce says nothing is left; and a made-up one), one leecher that
            // stays.
            swarmer::download(scene, &fixture.torrent);
            tracker::add_fake_leecher(&fixture.torrent);
            tracker::add_fake_completion(&fixture.torrent);
            let (peers, seeds) = tracker::own_stats(&fixture.torrent);
            let completed = tracker::own_completed_total();
            assert_eq!(
                (seeds, peers - seeds, completed),
                (1, 1, 2),
                "opentracker's own statistics"
            );
            scene.mark("opentracker's statistics: 1 seeder, 1 leecher, 2 completed");

            let output = Command::new(env!("CARGO_BIN_EXE_swarmer"))
                .args(["info", "--scrape"])
                .arg(&fixture.torrent)
                .output()
                .expect("run swarmer info --scrape");
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            for url in [HTTP_ANNOUNCE, UDP_ANNOUNCE] {
                let expected = format!(
                    "  {url}: {seeds} seeders, {} leechers, {completed} completed",
                    peers - seeds
                );
                assert!(
                    stdout.lines().any(|l| l == expected),
                    "no line {expected:?} in:\n{stdout}"
                );
            }
            scene.mark("swarmer info --scrape shows the same counts over HTTP and UDP");
        },
    );
}
