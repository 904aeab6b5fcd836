//! The announce schedule of one torrent: a task that announces `started`, re-announces every `interval`,
//! sends `completed` once and `stopped` at the end, trying trackers in BEP 12 tier order, and hands the
//! peers it learns to its owner through a bounded channel.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng;
use swarmer_proto::tracker::tiers::{TierIdx, TrackerTiers, UrlIdx};
use swarmer_proto::tracker::{AnnounceEvent, AnnounceRequest, AnnounceResponse};
use swarmer_proto::{InfoHash, PeerId};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::{AnnounceError, TrackerClient};

/// The whole `stopped` phase (all trackers together) ends after this long, answered or not.
pub const STOP_BUDGET: Duration = Duration::from_secs(5);

/// Of [`STOP_BUDGET`], how long an announce in flight when the torrent stops may take to finish
/// before `stopped` is sent. Abandoning it does not unsend it: a `completed` the tracker handles
/// after our `stopped` lists us again as a seed, for an hour or more (seen against opentracker
/// when a download ended within a second of its `completed`).
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(1);

/// Used when a tracker gives no `min interval`: the least time between two announces, in seconds.
const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(60);

/// After the first round in which every tracker failed, wait this long; the wait doubles per failed round.
const FIRST_RETRY: Duration = Duration::from_secs(15);

/// The longest wait between failed rounds.
const MAX_RETRY: Duration = Duration::from_secs(30 * 60);

/// Peer lists not yet taken by [`AnnouncerHandle::next_peers`]; further lists are dropped until there is
/// room (a later announce brings fresh ones).
const PEER_BATCHES: usize = 4;

/// What the announcer needs to know about its torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncerConfig {
    /// Tracker URLs in BEP 12 tiers (metainfo `announce-list`, or `[[announce]]`).
    pub tiers: Vec<Vec<String>>,
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub peer_id: PeerId,
    /// The TCP port we accept peers on.
    pub port: u16,
    /// How many peers to ask for per announce (`numwant`).
    pub num_want: u32,
}

/// Transfer totals reported in announces, all in bytes since the torrent started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferStats {
    /// Payload bytes sent to peers.
    pub uploaded: u64,
    /// Payload bytes received from peers.
    pub downloaded: u64,
    /// Bytes still missing.
    pub left: u64,
}

/// A snapshot of how announcing goes, for display.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnouncerStatus {
    /// The tracker that answered last.
    pub tracker: Option<String>,
    /// Seeders the last answering tracker reported.
    pub seeders: Option<u32>,
    /// Leechers the last answering tracker reported.
    pub leechers: Option<u32>,
    /// The last error of a round in which every tracker failed; cleared by a success.
    pub last_error: Option<String>,
    /// The last `warning message` of a tracker.
    pub warning: Option<String>,
    /// Successful announces so far.
    pub successes: u64,
}

/// What the announcer does with one announce: the one seam tests replace.
pub(crate) trait Announce: Send + Sync + 'static {
    fn announce(
        &self,
        url: &str,
        req: &AnnounceRequest,
    ) -> impl Future<Output = Result<AnnounceResponse, AnnounceError>> + Send;
}

impl Announce for TrackerClient {
    fn announce(
        &self,
        url: &str,
        req: &AnnounceRequest,
    ) -> impl Future<Output = Result<AnnounceResponse, AnnounceError>> + Send {
        TrackerClient::announce(self, url, req)
    }
}

/// Flags the handle raises for the task.
#[derive(Default)]
struct Requests {
    completed: AtomicBool,
    want_peers: AtomicBool,
    wake: Notify,
}

/// The owner's side of a running announcer. Dropping it stops the announcer as [`AnnouncerHandle::stop`]
/// would, in the background.
pub struct AnnouncerHandle {
    peers: mpsc::Receiver<Vec<SocketAddr>>,
    requests: Arc<Requests>,
    stop: Option<oneshot::Sender<()>>,
    status: watch::Receiver<AnnouncerStatus>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AnnouncerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnouncerHandle")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl AnnouncerHandle {
    /// [`AnnouncerHandle::next_peers`] of an announcer that may be gone: `None` at once without one,
    /// so a `select!` arm matching `Some` stays disabled.
    pub(crate) async fn next_of(
        announcer: &mut Option<AnnouncerHandle>,
    ) -> Option<Vec<SocketAddr>> {
        match announcer {
            Some(a) => a.next_peers().await,
            None => None,
        }
    }

    /// The peers of the next successful announce, or `None` once the announcer has ended. Lists the owner
    /// does not take in time are dropped (at most a few are buffered).
    pub async fn next_peers(&mut self) -> Option<Vec<SocketAddr>> {
        self.peers.recv().await
    }

    /// Asks for a `completed` announce as soon as possible. Only the first call has an effect.
    pub fn completed(&self) {
        self.requests.completed.store(true, Ordering::SeqCst);
        self.requests.wake.notify_one();
    }

    /// Asks for an early announce because peers run low. It happens once the tracker's `min interval`
    /// (60 s if it gave none) has passed since the last successful announce. It has no effect before any
    /// success (the retry schedule runs anyway) or while an announce is under way (that one brings peers).
    pub fn want_peers(&self) {
        self.requests.want_peers.store(true, Ordering::SeqCst);
        self.requests.wake.notify_one();
    }

    /// The latest status.
    pub fn status(&self) -> AnnouncerStatus {
        self.status.borrow().clone()
    }

    /// Ends the announcer: lets an announce in flight finish (for a moment), sends `stopped` to every
    /// tracker that acknowledged `started`, and returns, all within [`STOP_BUDGET`].
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // The task bounds itself by STOP_BUDGET; this is a backstop against a stuck task.
            let abort = task.abort_handle();
            if tokio::time::timeout(STOP_BUDGET + Duration::from_secs(1), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// Starts the announcer for one torrent on the current tokio runtime.
///
/// It announces `started` at once, then follows the trackers' intervals; `stats` is read at each announce.
/// Trackers are tried in BEP 12 order: on failure the next in the tier, then the next tier; the one that
/// answers moves to the front of its tier. When a whole round fails it waits 15 s, doubling per failed
/// round up to 30 min. With no tracker URL at all it ends at once (`next_peers` returns `None`).
pub fn spawn_announcer(
    client: TrackerClient,
    cfg: AnnouncerConfig,
    stats: watch::Receiver<TransferStats>,
) -> AnnouncerHandle {
    spawn_with(Arc::new(client), cfg, stats, &mut rand::thread_rng())
}

pub(crate) fn spawn_with<T: Announce>(
    transport: Arc<T>,
    cfg: AnnouncerConfig,
    stats: watch::Receiver<TransferStats>,
    rng: &mut impl Rng,
) -> AnnouncerHandle {
    let tiers = TrackerTiers::new(cfg.tiers.clone(), rng);
    let key: u32 = rng.r#gen();
    let (peers_tx, peers_rx) = mpsc::channel(PEER_BATCHES);
    let (stop_tx, stop_rx) = oneshot::channel();
    let (status_tx, status_rx) = watch::channel(AnnouncerStatus::default());
    let requests = Arc::new(Requests::default());
    let task = Announcer {
        transport,
        cfg,
        stats,
        key,
        tiers,
        started: HashSet::new(),
        tracker_ids: HashMap::new(),
        completed_requested: false,
        completed_pending: false,
        last_success: None,
        min_interval: DEFAULT_MIN_INTERVAL,
        next_announce: Instant::now(),
        failed_rounds: 0,
        peers: peers_tx,
        status: status_tx,
        requests: requests.clone(),
    };
    AnnouncerHandle {
        peers: peers_rx,
        requests,
        stop: Some(stop_tx),
        status: status_rx,
        task: Some(tokio::spawn(task.run(stop_rx))),
    }
}

/// One tracker to try in a round, with the event and tracker id it gets.
struct Attempt {
    tier: TierIdx,
    idx: UrlIdx,
    url: String,
    req: AnnounceRequest,
}

enum RoundOutcome {
    /// Boxed: far larger than the failure, and produced once per interval.
    Success(Box<(Attempt, AnnounceResponse)>),
    Failed {
        last_error: String,
    },
}

type Round = Pin<Box<dyn Future<Output = RoundOutcome> + Send>>;

struct Announcer<T> {
    transport: Arc<T>,
    cfg: AnnouncerConfig,
    stats: watch::Receiver<TransferStats>,
    key: u32,
    tiers: TrackerTiers,
    /// URLs that acknowledged `started` and so should hear `stopped`.
    started: HashSet<String>,
    /// `tracker id`s to echo, per URL.
    tracker_ids: HashMap<String, Vec<u8>>,
    completed_requested: bool,
    /// `completed` was asked for and no tracker has acknowledged it yet.
    completed_pending: bool,
    last_success: Option<Instant>,
    min_interval: Duration,
    next_announce: Instant,
    failed_rounds: u32,
    peers: mpsc::Sender<Vec<SocketAddr>>,
    status: watch::Sender<AnnouncerStatus>,
    requests: Arc<Requests>,
}

impl<T: Announce> Announcer<T> {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        if self.tiers.is_empty() {
            tracing::debug!(info_hash = %self.cfg.info_hash, "no trackers: announcer not started");
            return;
        }
        let mut round: Option<Round> = None;
        loop {
            tokio::select! {
                biased;
                // Either an explicit stop or a dropped handle.
                _ = &mut stop => break,
                _ = self.requests.wake.notified() => self.take_requests(round.is_some()),
                outcome = async { round.as_mut().expect("guarded by is_some").await }, if round.is_some() => {
                    round = None;
                    self.apply(outcome);
                }
                () = tokio::time::sleep_until(self.next_announce), if round.is_none() => {
                    round = Some(self.start_round());
                }
            }
        }
        let stopping = Instant::now();
        if let Some(round) = round.take() {
            if let Ok(outcome) = tokio::time::timeout(IN_FLIGHT_GRACE, round).await {
                // A `started` acknowledged now needs its `stopped` too.
                self.apply(outcome);
            }
        }
        self.announce_stopped(STOP_BUDGET.saturating_sub(stopping.elapsed()))
            .await;
    }

    fn take_requests(&mut self, round_in_flight: bool) {
        let now = Instant::now();
        if self.requests.completed.swap(false, Ordering::SeqCst) && !self.completed_requested {
            self.completed_requested = true;
            self.completed_pending = true;
            // Announce now, unless a round is already under way: `apply` then schedules the next at once.
            self.next_announce = now;
        }
        if self.requests.want_peers.swap(false, Ordering::SeqCst) && !round_in_flight {
            if let Some(last) = self.last_success {
                let earliest = (last + self.min_interval).max(now);
                self.next_announce = self.next_announce.min(earliest);
            }
        }
    }

    /// The request for `url`: `started` for a tracker that has not acknowledged it, then `completed`
    /// while pending, else no event.
    fn request_for(&self, url: &str, stats: TransferStats) -> AnnounceRequest {
        let event = if !self.started.contains(url) {
            AnnounceEvent::Started
        } else if self.completed_pending {
            AnnounceEvent::Completed
        } else {
            AnnounceEvent::None
        };
        self.request(url, stats, event)
    }

    fn request(&self, url: &str, stats: TransferStats, event: AnnounceEvent) -> AnnounceRequest {
        AnnounceRequest {
            info_hash: self.cfg.info_hash,
            peer_id: self.cfg.peer_id,
            port: self.cfg.port,
            uploaded: stats.uploaded,
            downloaded: stats.downloaded,
            left: stats.left,
            event,
            num_want: (event != AnnounceEvent::Stopped).then_some(self.cfg.num_want),
            key: self.key,
            tracker_id: self.tracker_ids.get(url).cloned(),
        }
    }

    fn start_round(&self) -> Round {
        let stats = *self.stats.borrow();
        let attempts: Vec<Attempt> = self
            .tiers
            .iter()
            .map(|(tier, idx, url)| Attempt {
                tier,
                idx,
                url: url.to_owned(),
                req: self.request_for(url, stats),
            })
            .collect();
        let transport = self.transport.clone();
        Box::pin(async move {
            let mut last_error = String::new();
            for attempt in attempts {
                match transport.announce(&attempt.url, &attempt.req).await {
                    Ok(response) => return RoundOutcome::Success(Box::new((attempt, response))),
                    Err(e) => {
                        tracing::warn!(tracker = %attempt.url, error = %e, "announce failed");
                        last_error = format!("{}: {e}", attempt.url);
                    }
                }
            }
            RoundOutcome::Failed { last_error }
        })
    }

    fn apply(&mut self, outcome: RoundOutcome) {
        let now = Instant::now();
        match outcome {
            RoundOutcome::Success(success) => {
                let (attempt, response) = *success;
                self.tiers.promote(attempt.tier, attempt.idx);
                match attempt.req.event {
                    AnnounceEvent::Started => {
                        self.started.insert(attempt.url.clone());
                    }
                    AnnounceEvent::Completed => self.completed_pending = false,
                    AnnounceEvent::None | AnnounceEvent::Stopped => {}
                }
                if let Some(id) = &response.tracker_id {
                    self.tracker_ids.insert(attempt.url.clone(), id.clone());
                }
                if let Some(warning) = &response.warning {
                    tracing::warn!(tracker = %attempt.url, %warning, "tracker warning");
                }
                self.failed_rounds = 0;
                self.last_success = Some(now);
                self.min_interval = response
                    .min_interval
                    .map_or(DEFAULT_MIN_INTERVAL, |s| Duration::from_secs(s.into()));
                self.next_announce = if self.completed_pending {
                    now
                } else {
                    now + Duration::from_secs(response.interval.into())
                };
                tracing::debug!(
                    tracker = %attempt.url,
                    peers = response.peers.len(),
                    interval = response.interval,
                    "announced"
                );
                self.status.send_modify(|s| {
                    s.tracker = Some(attempt.url);
                    s.seeders = response.seeders;
                    s.leechers = response.leechers;
                    s.last_error = None;
                    s.warning.clone_from(&response.warning);
                    s.successes += 1;
                });
                if !response.peers.is_empty() && self.peers.try_send(response.peers).is_err() {
                    tracing::debug!("peer list dropped: the owner is not taking them");
                }
            }
            RoundOutcome::Failed { last_error } => {
                let backoff = FIRST_RETRY
                    .saturating_mul(1u32.checked_shl(self.failed_rounds).unwrap_or(u32::MAX))
                    .min(MAX_RETRY);
                self.failed_rounds = self.failed_rounds.saturating_add(1);
                self.next_announce = now + backoff;
                tracing::warn!(retry_in = ?backoff, error = %last_error, "every tracker failed");
                self.status.send_modify(|s| s.last_error = Some(last_error));
            }
        }
    }

    /// Sends `stopped` to every tracker that acknowledged `started`, all at once, for at most
    /// `budget`.
    async fn announce_stopped(&self, budget: Duration) {
        let stats = *self.stats.borrow();
        let mut pending = JoinSet::new();
        for url in &self.started {
            let req = self.request(url, stats, AnnounceEvent::Stopped);
            let transport = self.transport.clone();
            let url = url.clone();
            pending.spawn(async move {
                if let Err(e) = transport.announce(&url, &req).await {
                    tracing::debug!(tracker = %url, error = %e, "stopped announce failed");
                }
            });
        }
        // Whatever is unfinished when the budget runs out is aborted as the JoinSet drops.
        let _ = tokio::time::timeout(budget, async {
            while pending.join_next().await.is_some() {}
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
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
        }
    }

    fn spawn(
        fake: &Arc<Fake>,
        tiers: &[&[&str]],
    ) -> (AnnouncerHandle, watch::Sender<TransferStats>) {
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
        // Never acknowledged `started`, so no `stopped` either.
        assert_eq!(times, vec![0, 15, 45, 105]);
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
}
