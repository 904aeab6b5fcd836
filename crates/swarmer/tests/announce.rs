//! Announce discipline, as private trackers enforce it (BEP 3, BEP 12), checked against a tracker
//! that records every request: `started` once per stay in the swarm and first, `completed` once
//! and with nothing left, `stopped` last, no other announce sooner than the tracker's `min
//! interval`, and one tracker per round: a dead first tracker of a tier is skipped for the next,
//! and a later tier is not asked while an earlier one answers.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{fixture, seeder, session};
use swarmer::{AddTorrentOptions, ExistingData, SeedLimits, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// Every wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The `min interval` the recording tracker asks for, in seconds: longer than any test runs, so
/// every announce without an event is a breach.
const MIN_INTERVAL: u32 = 600;

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, f).await.expect("timed out")
}

/// One announce the tracker received.
#[derive(Debug, Clone)]
struct Announce {
    /// `started`, `completed`, `stopped`, or empty for a regular announce.
    event: String,
    /// The `left` parameter, in bytes.
    left: u64,
    at: Instant,
}

/// An HTTP tracker on 127.0.0.1 that records each announce and answers with `peers` (compact),
/// `interval` 1800 s and `min interval` [`MIN_INTERVAL`].
struct RecordingTracker {
    url: String,
    log: Arc<Mutex<Vec<Announce>>>,
    /// How many announces arrived so far.
    count: tokio::sync::watch::Receiver<usize>,
}

impl RecordingTracker {
    async fn start(peers: Vec<SocketAddr>) -> RecordingTracker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/announce", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&log);
        let (counted, count) = tokio::sync::watch::channel(0);
        let mut compact = Vec::new();
        for peer in &peers {
            if let SocketAddr::V4(v4) = peer {
                compact.extend_from_slice(&v4.ip().octets());
                compact.extend_from_slice(&v4.port().to_be_bytes());
            }
        }
        let mut body = format!(
            "d8:intervali1800e12:min intervali{MIN_INTERVAL}e5:peers{}:",
            compact.len()
        )
        .into_bytes();
        body.extend_from_slice(&compact);
        body.push(b'e');
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut chunk = [0u8; 2048];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16_384 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let query = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|target| target.split_once('?'))
                    .map_or("", |(_, q)| q)
                    .to_owned();
                let param = |name: &str| {
                    query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                        .unwrap_or("")
                        .to_owned()
                };
                let n = {
                    let mut log = record.lock().unwrap();
                    log.push(Announce {
                        event: param("event"),
                        left: param("left").parse().expect("a numeric `left`"),
                        at: Instant::now(),
                    });
                    log.len()
                };
                counted.send_replace(n);
                let mut reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                reply.extend_from_slice(&body);
                let _ = sock.write_all(&reply).await;
                let _ = sock.shutdown().await;
            }
        });
        RecordingTracker { url, log, count }
    }

    /// Waits until `n` announces have arrived.
    async fn wait_for(&self, n: usize) {
        let mut count = self.count.clone();
        within(count.wait_for(|got| *got >= n)).await.unwrap();
    }

    fn log(&self) -> Vec<Announce> {
        self.log.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<String> {
        self.log().into_iter().map(|a| a.event).collect()
    }
}

/// The rules every tracker's log must follow: `started` first and again only after a `stopped`,
/// `completed` at most once per stay and with `left=0`, `stopped` only while in the swarm, and
/// regular announces no sooner than [`MIN_INTERVAL`] after the one before.
fn assert_disciplined(log: &[Announce]) {
    let mut in_swarm = false;
    let mut completed = false;
    let mut last: Option<Instant> = None;
    for (i, a) in log.iter().enumerate() {
        match a.event.as_str() {
            "started" => {
                assert!(
                    !in_swarm,
                    "announce {i}: a second `started` without `stopped`: {log:?}"
                );
                in_swarm = true;
                completed = false;
            }
            "completed" => {
                assert!(
                    in_swarm && !completed,
                    "announce {i}: a stray `completed`: {log:?}"
                );
                assert_eq!(
                    a.left, 0,
                    "announce {i}: `completed` with bytes left: {log:?}"
                );
                completed = true;
            }
            "stopped" => {
                assert!(
                    in_swarm,
                    "announce {i}: `stopped` outside the swarm: {log:?}"
                );
                in_swarm = false;
            }
            "" => {
                assert!(
                    in_swarm,
                    "announce {i}: a regular announce before `started`: {log:?}"
                );
                let gap = a.at - last.expect("an announce before");
                assert!(
                    gap >= Duration::from_secs(MIN_INTERVAL.into()),
                    "announce {i}: {gap:?} after the one before, within `min interval`: {log:?}"
                );
            }
            other => panic!("announce {i}: unknown event {other:?}"),
        }
        last = Some(a.at);
    }
}

#[tokio::test]
async fn a_download_announces_started_completed_stopped_to_one_tracker_of_its_tiers() {
    let f = fixture(16 * 1024);
    let (_seed_dir, seed_session, _seed) = seeder(&f, SessionConfig::default()).await;
    let tracker = RecordingTracker::start(vec![seed_session.listen_addr()]).await;
    let later_tier = RecordingTracker::start(vec![]).await;
    let mut metainfo = f.metainfo.clone();
    // Tier 0: a dead tracker (nothing listens on port 1), then the recording one; tier 1: another.
    metainfo.announce_tiers = vec![
        vec!["http://127.0.0.1:1/announce".into(), tracker.url.clone()],
        vec![later_tier.url.clone()],
    ];
    let total = metainfo.info.layout.total_length();

    let dir = tempfile::tempdir().unwrap();
    let leech_session = session(SessionConfig::default()).await;
    let mut torrent = leech_session
        .add_torrent_with(metainfo, dir.path(), AddTorrentOptions::default())
        .await
        .unwrap();
    within(torrent.wait_complete()).await.unwrap();
    within(torrent.stop()).await.unwrap();

    let log = tracker.log();
    assert_eq!(
        tracker.events(),
        ["started", "completed", "stopped"],
        "{log:?}"
    );
    assert_eq!(log[0].left, total, "`started` with everything left");
    assert_disciplined(&log);
    assert!(
        later_tier.log().is_empty(),
        "tier 1 asked while tier 0 answers"
    );
}

#[tokio::test]
async fn a_seed_stopped_and_started_again_says_stopped_before_each_new_started() {
    let f = fixture(16 * 1024);
    let tracker = RecordingTracker::start(vec![]).await;
    let mut metainfo = f.metainfo.clone();
    metainfo.announce_tiers = vec![vec![tracker.url.clone()]];

    let dir = tempfile::tempdir().unwrap();
    common::write_content(&f, dir.path());
    let session = session(SessionConfig::default()).await;
    // A pause and a resume well inside the interval, twice over.
    for round in 0..2 {
        let options = AddTorrentOptions {
            seed: Some(SeedLimits::default()),
            existing: ExistingData::Complete,
            ..AddTorrentOptions::default()
        };
        let mut torrent = session
            .add_torrent_with(metainfo.clone(), dir.path(), options)
            .await
            .unwrap();
        within(torrent.wait_complete()).await.unwrap();
        // The `started` is acknowledged before the pause, so the pause must say `stopped`.
        tracker.wait_for(2 * round + 1).await;
        within(torrent.stop()).await.unwrap();
    }
    let log = tracker.log();
    // A seed has nothing to complete: no `completed`.
    assert_eq!(
        tracker.events(),
        ["started", "stopped", "started", "stopped"],
        "{log:?}"
    );
    assert!(log.iter().all(|a| a.left == 0));
    assert_disciplined(&log);
}
