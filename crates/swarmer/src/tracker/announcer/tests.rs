//! Tests of the announce schedule (BEP 3; BEP 12 tiers): tier fall-through and promotion, back-off, minimum intervals, and a bounded `stopped`, on a paused clock.

use std::sync::Mutex;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use swarmer_proto::tracker::TrackerError;

use super::*;

/// A transport that answers from a table and logs each call with the (virtual) time since start.
struct Fake {
    start: Instant,
    log: Mutex<Vec<(Duration, String, AnnounceRequest)>>,
    /// URLs that fail at once.
    failing: Mutex<HashSet<String>>,
    /// URLs that never answer.
    hanging: Mutex<HashSet<String>>,
    /// URLs that answer after half a second.
    slow: Mutex<HashSet<String>>,
    /// What the others answer.
    reply: AnnounceResponse,
}

impl Fake {
    fn new(failing: &[&str]) -> Arc<Fake> {
        Arc::new(Fake {
            start: Instant::now(),
            log: Mutex::default(),
            failing: Mutex::new(failing.iter().map(|s| s.to_string()).collect()),
            hanging: Mutex::default(),
            slow: Mutex::default(),
            reply: AnnounceResponse {
                interval: 1800,
                min_interval: Some(300),
                tracker_id: Some(b"tid".to_vec()),
                seeders: Some(1),
                leechers: Some(2),
                peers: vec!["10.0.0.1:6881".parse().unwrap()],
                warning: None,
            },
        })
    }

    /// (seconds since start, URL, event) of every call so far.
    fn calls(&self) -> Vec<(u64, String, AnnounceEvent)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(t, u, r)| (t.as_secs(), u.clone(), r.event))
            .collect()
    }
}

impl Announce for Fake {
    fn announce(
        &self,
        url: &str,
        req: &AnnounceRequest,
        _forced: bool,
    ) -> impl Future<Output = Result<AnnounceResponse, AnnounceError>> + Send {
        self.log
            .lock()
            .unwrap()
            .push((self.start.elapsed(), url.to_owned(), req.clone()));
        let hang = self.hanging.lock().unwrap().contains(url);
        let slow = self.slow.lock().unwrap().contains(url);
        let result = if self.failing.lock().unwrap().contains(url) {
            Err(AnnounceError::Tracker(TrackerError::Failure("no".into())))
        } else {
            Ok(self.reply.clone())
        };
        async move {
            if hang {
                std::future::pending::<()>().await;
            }
            if slow {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            result
        }
    }
}

fn config(tiers: &[&[&str]]) -> AnnouncerConfig {
    AnnouncerConfig {
        tiers: tiers
            .iter()
            .map(|t| t.iter().map(|s| s.to_string()).collect())
            .collect(),
        info_hash: InfoHash([1; 20]),
        peer_id: PeerId([2; 20]),
        port: 6881,
        num_want: 50,
        crypto: Default::default(),
        second_hash: false,
    }
}

fn spawn(fake: &Arc<Fake>, tiers: &[&[&str]]) -> (AnnouncerHandle, watch::Sender<TransferStats>) {
    let (stats_tx, stats_rx) = watch::channel(TransferStats {
        uploaded: 0,
        downloaded: 0,
        left: 1000,
    });
    let handle = spawn_with(
        fake.clone(),
        config(tiers),
        stats_rx,
        &mut SmallRng::seed_from_u64(1),
    );
    (handle, stats_tx)
}

use AnnounceEvent::{Completed, None as NoEvent, Started, Stopped};

#[tokio::test(start_paused = true)]
async fn falls_through_tiers_then_reannounces_and_stops() {
    let fake = Fake::new(&["dead"]);
    let (mut h, stats) = spawn(&fake, &[&["dead"], &["good"]]);
    assert_eq!(h.next_peers().await.unwrap().len(), 1);
    assert_eq!(h.status().tracker.as_deref(), Some("good"));
    assert_eq!(h.status().seeders, Some(1));
    stats.send_replace(TransferStats {
        uploaded: 5,
        downloaded: 7,
        left: 993,
    });
    // The next regular announce comes one interval later; tier 0 is still tried first.
    assert!(h.next_peers().await.is_some());
    h.stop().await;
    assert_eq!(
        fake.calls(),
        vec![
            (0, "dead".into(), Started),
            (0, "good".into(), Started),
            (1800, "dead".into(), Started),
            (1800, "good".into(), NoEvent),
            (1800, "good".into(), Stopped),
        ]
    );
    let log = fake.log.lock().unwrap();
    let second = &log[3].2;
    assert_eq!(
        (second.uploaded, second.downloaded, second.left),
        (5, 7, 993)
    );
    // The tracker id of the first reply is echoed; the first request had none.
    assert_eq!(log[1].2.tracker_id, None);
    assert_eq!(second.tracker_id.as_deref(), Some(&b"tid"[..]));
    assert_eq!(second.num_want, Some(50));
    assert_eq!(log[4].2.num_want, None);
    assert_eq!(log[0].2.key, second.key);
}

#[tokio::test(start_paused = true)]
async fn promoted_tracker_is_tried_first_next_time() {
    let fake = Fake::new(&["a"]);
    let (mut h, _stats) = spawn(&fake, &[&["a", "b"]]);
    h.next_peers().await.unwrap();
    fake.failing.lock().unwrap().clear();
    h.next_peers().await.unwrap();
    h.stop().await;
    // Whatever the shuffle, "b" answered first and leads the tier from then on.
    let calls = fake.calls();
    let second_round: Vec<_> = calls.iter().filter(|c| c.0 == 1800).collect();
    assert_eq!(second_round[0].1, "b");
    assert_eq!(second_round[0].2, NoEvent);
}

#[tokio::test(start_paused = true)]
async fn total_failure_backs_off_exponentially() {
    let fake = Fake::new(&["x"]);
    let (h, _stats) = spawn(&fake, &[&["x"]]);
    // Virtual time: runs the schedule for 200 s in an instant.
    tokio::time::sleep(Duration::from_secs(200)).await;
    assert!(h.status().last_error.unwrap().contains("no"));
    h.stop().await;
    let times: Vec<u64> = fake.calls().iter().map(|c| c.0).collect();
    // Never acknowledged `started`, so no `stopped` either. Waits of 15, 30 and 60 s, each up to a
    // quarter longer at random, then rounded up to a whole second of the process's timer grid.
    assert_eq!(times.len(), 4, "{times:?}");
    assert_eq!(times[0], 0);
    for (pair, base) in times.windows(2).zip([15, 30, 60]) {
        let wait = pair[1] - pair[0];
        assert!((base..=base + base / 4 + 1).contains(&wait), "{times:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn want_peers_respects_min_interval_and_completed_goes_once() {
    let fake = Fake::new(&[]);
    let (mut h, _stats) = spawn(&fake, &[&["t"]]);
    h.next_peers().await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    h.want_peers();
    h.next_peers().await.unwrap();
    h.completed();
    h.next_peers().await.unwrap();
    h.completed();
    h.next_peers().await.unwrap();
    h.stop().await;
    assert_eq!(
        fake.calls(),
        vec![
            (0, "t".into(), Started),
            (300, "t".into(), NoEvent),
            (300, "t".into(), Completed),
            (2100, "t".into(), NoEvent),
            (2100, "t".into(), Stopped),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn reannounce_ignores_min_interval() {
    let fake = Fake::new(&[]);
    let (mut h, _stats) = spawn(&fake, &[&["t"]]);
    h.next_peers().await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    h.reannounce();
    h.next_peers().await.unwrap();
    h.stop().await;
    assert_eq!(
        fake.calls(),
        vec![
            (0, "t".into(), Started),
            (10, "t".into(), NoEvent),
            (10, "t".into(), Stopped),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn stop_abandons_a_hanging_round_and_is_bounded() {
    let fake = Fake::new(&[]);
    let (mut h, _stats) = spawn(&fake, &[&["t"]]);
    h.next_peers().await.unwrap();
    fake.hanging.lock().unwrap().insert("t".into());
    // Past the interval, a round is in flight and hanging: it gets its grace, then `stopped`
    // goes out, and the whole stop stays within the budget.
    tokio::time::sleep(Duration::from_secs(1900)).await;
    let start = Instant::now();
    h.stop().await;
    assert_eq!(start.elapsed(), STOP_BUDGET);
    assert_eq!(
        fake.calls(),
        vec![
            (0, "t".into(), Started),
            (1800, "t".into(), NoEvent),
            (1901, "t".into(), Stopped),
        ]
    );
}

/// A `completed` still in flight when the torrent stops finishes before `stopped` is sent, so
/// the tracker cannot handle them in the wrong order and list us again (seen in CI).
#[tokio::test(start_paused = true)]
async fn a_round_in_flight_finishes_before_stopped() {
    let fake = Fake::new(&[]);
    let (mut h, _stats) = spawn(&fake, &[&["t"]]);
    h.next_peers().await.unwrap();
    fake.slow.lock().unwrap().insert("t".into());
    h.completed();
    // The `completed` announce is sent and takes half a second; stop at once.
    tokio::task::yield_now().await;
    let start = Instant::now();
    h.stop().await;
    let calls = fake.calls();
    assert_eq!(
        calls.iter().map(|c| c.2).collect::<Vec<_>>(),
        vec![Started, Completed, Stopped]
    );
    let log = fake.log.lock().unwrap();
    let (completed_at, stopped_at) = (log[1].0, log[2].0);
    assert!(
        stopped_at >= completed_at + Duration::from_millis(500),
        "stopped sent at {stopped_at:?}, before the completed sent at {completed_at:?} was answered"
    );
    assert!(start.elapsed() <= STOP_BUDGET);
}

/// A download that completes while `started` is still on its way, and stops right after (no
/// seeding), still sends `completed` before `stopped`: trackers count finished downloads by it.
#[tokio::test(start_paused = true)]
async fn completed_just_before_stopping_is_still_sent() {
    let fake = Fake::new(&[]);
    fake.slow.lock().unwrap().insert("t".into());
    let (h, _stats) = spawn(&fake, &[&["t"]]);
    // `started` is in flight (it takes half a second) when the download completes and stops.
    tokio::task::yield_now().await;
    h.completed();
    let start = Instant::now();
    h.stop().await;
    assert_eq!(
        fake.calls().iter().map(|c| c.2).collect::<Vec<_>>(),
        vec![Started, Completed, Stopped]
    );
    assert!(start.elapsed() <= STOP_BUDGET);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_still_sends_stopped() {
    let fake = Fake::new(&[]);
    let (mut h, _stats) = spawn(&fake, &[&["t"]]);
    h.next_peers().await.unwrap();
    drop(h);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        fake.calls(),
        vec![(0, "t".into(), Started), (0, "t".into(), Stopped)]
    );
}

#[tokio::test(start_paused = true)]
async fn no_trackers_means_no_peers() {
    let fake = Fake::new(&[]);
    let (mut h, _stats) = spawn(&fake, &[&[""]]);
    assert_eq!(h.next_peers().await, None);
    h.stop().await;
    assert!(fake.calls().is_empty());
}

/// End to end with the real client: a dead first tier (connection refused) falls through to a
/// working HTTP tracker in the second tier, which alone hears `stopped`.
#[tokio::test]
async fn real_client_dead_tier_falls_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/announce", closed.local_addr().unwrap());
    drop(closed);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let good = format!("http://{}/announce", listener.local_addr().unwrap());
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let body = b"d8:intervali1800e5:peers6:\x7f\x00\x00\x07\x1a\xe1e";
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let line = String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            let _ = lines_tx.send(line);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body).await;
        }
    });
    let client = TrackerClient::new(super::super::TrackerClientConfig {
        http_timeout: Duration::from_millis(500),
        ..Default::default()
    })
    .unwrap();
    let (_stats_tx, stats_rx) = watch::channel(TransferStats::default());
    let mut h = spawn_announcer(
        client,
        AnnouncerConfig {
            tiers: vec![vec![dead], vec![good.clone()]],
            ..config(&[])
        },
        stats_rx,
    );
    let peers = tokio::time::timeout(Duration::from_secs(5), h.next_peers())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(peers, vec!["127.0.0.7:6881".parse().unwrap()]);
    assert_eq!(h.status().tracker.as_deref(), Some(good.as_str()));
    h.stop().await;
    assert!(lines.recv().await.unwrap().contains("&event=started"));
    assert!(lines.recv().await.unwrap().contains("&event=stopped"));
}
