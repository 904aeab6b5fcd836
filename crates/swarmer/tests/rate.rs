//! Rate-limit tests over loopback: a torrent's own download limit and a session upload limit set at
//! run time each hold a whole download to their rate (never exceeded by more than one burst).

mod common;

use std::time::{Duration, Instant};

use common::{assert_files_match, fixture, session};
use swarmer::{AddTorrentOptions, Session, SessionConfig, TorrentHandle};

/// Every wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The limit tested, in bytes per second.
const RATE: u64 = 128 * 1024;

/// The most a limiter lets through at once at [`RATE`]: one block with its message header (the
/// burst is never smaller), plus a block of slack for bytes counted that are not payload.
const SLACK: u64 = 2 * (16 * 1024 + 13);

/// The shortest time a download of `total` payload bytes can take at [`RATE`].
fn least_time(total: u64) -> Duration {
    Duration::from_secs_f64((total - SLACK) as f64 / RATE as f64)
}

/// Points `t` at `seeder` and returns how long the whole download took.
async fn download_from(seeder: &Session, t: &mut TorrentHandle) -> Duration {
    let start = Instant::now();
    t.add_peers(vec![seeder.listen_addr()]).await;
    tokio::time::timeout(TIMEOUT, t.wait_complete())
        .await
        .expect("timed out")
        .unwrap();
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torrent_download_limit_holds() {
    let f = fixture(16 * 1024);
    let total = f.metainfo.info.layout.total_length();
    let (_seed_dir, seeder, seed) = common::seeder(&f, SessionConfig::default()).await;

    let dir = tempfile::tempdir().unwrap();
    let s = session(SessionConfig::default()).await;
    let options = AddTorrentOptions {
        max_download_rate: Some(RATE),
        ..AddTorrentOptions::default()
    };
    let mut t = s
        .add_torrent_with(f.metainfo.clone(), dir.path(), options)
        .await
        .unwrap();
    assert_eq!(t.rate_limits(), (None, Some(RATE)));
    let took = download_from(&seeder, &mut t).await;
    t.stop().await.unwrap();
    seed.stop().await.unwrap();
    assert_files_match(&f, dir.path());
    assert!(
        took >= least_time(total),
        "{total} bytes in {took:?} at a limit of {RATE} bytes/s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_upload_limit_set_at_run_time_holds() {
    let f = fixture(16 * 1024);
    let total = f.metainfo.info.layout.total_length();
    let (_seed_dir, seeder, seed) = common::seeder(&f, SessionConfig::default()).await;
    assert_eq!(seeder.rate_limits(), (None, None));
    seeder.set_rate_limits(Some(RATE), None);
    assert_eq!(seeder.rate_limits(), (Some(RATE), None));

    let dir = tempfile::tempdir().unwrap();
    let s = session(SessionConfig::default()).await;
    let mut t = s.add_torrent(f.metainfo.clone(), dir.path()).await.unwrap();
    let took = download_from(&seeder, &mut t).await;
    t.stop().await.unwrap();
    seed.stop().await.unwrap();
    assert_files_match(&f, dir.path());
    assert!(
        took >= least_time(total),
        "{total} bytes in {took:?} at a limit of {RATE} bytes/s"
    );
}
