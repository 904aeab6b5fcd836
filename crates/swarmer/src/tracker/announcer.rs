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

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use swarmer_proto::tracker::tiers::{TierIdx, TrackerTiers, UrlIdx};
use swarmer_proto::tracker::{AnnounceEvent, AnnounceRequest, AnnounceResponse, CryptoSupport};
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

/// The wait after `failed_rounds` earlier failed rounds (0 for the first failure): [`FIRST_RETRY`]
/// doubled per round up to [`MAX_RETRY`], plus up to a quarter more at random, so that torrents
/// that failed together (thousands started at once against one dead tracker) drift apart instead
/// of retrying in one burst.
fn retry_after(failed_rounds: u32, rng: &mut impl Rng) -> Duration {
    let base = FIRST_RETRY
        .saturating_mul(1u32.checked_shl(failed_rounds).unwrap_or(u32::MAX))
        .min(MAX_RETRY);
    base + base.mul_f64(rng.gen_range(0.0..0.25))
}

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
    /// `supportcrypto`/`requirecrypto` in HTTP announces (see [`crate::Encryption`]).
    pub crypto: CryptoSupport,
    /// This is a hybrid torrent's second (v2) info hash (BEP 52): its failures are logged at debug,
    /// not as warnings, since many trackers know a hybrid only by its v1 hash and refuse the other.
    pub second_hash: bool,
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
    /// One announce; `forced`: the user asked for it, so a tracker the session has backed off
    /// is asked anyway.
    fn announce(
        &self,
        url: &str,
        req: &AnnounceRequest,
        forced: bool,
    ) -> impl Future<Output = Result<AnnounceResponse, AnnounceError>> + Send;
}

impl Announce for TrackerClient {
    fn announce(
        &self,
        url: &str,
        req: &AnnounceRequest,
        forced: bool,
    ) -> impl Future<Output = Result<AnnounceResponse, AnnounceError>> + Send {
        TrackerClient::announce_with(self, url, req, forced)
    }
}

/// Flags the handle raises for the task.
#[derive(Default)]
struct Requests {
    completed: AtomicBool,
    want_peers: AtomicBool,
    reannounce: AtomicBool,
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

    /// Asks for an announce now, ignoring the tracker's `min interval` (a user's "reannounce",
    /// as libtorrent's `force_reannounce` with `ignore_min_interval`). A round already under way
    /// counts as it.
    pub fn reannounce(&self) {
        self.requests.reannounce.store(true, Ordering::SeqCst);
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
        forced: false,
        retry_rng: SmallRng::seed_from_u64(rng.r#gen()),
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
    /// The next round was asked for by the user ([`AnnouncerHandle::reannounce`]): it asks
    /// trackers the session has backed off too.
    forced: bool,
    /// Draws the random part of the waits after failed rounds ([`retry_after`]); seeded from the
    /// spawner's generator, so tests see one schedule.
    retry_rng: SmallRng,
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
        // A `completed` asked for just before the stop has not been taken yet (the stop wins the
        // `select!`): take it now.
        self.take_requests(true);
        if let Some(round) = round.take() {
            if let Ok(outcome) = tokio::time::timeout(IN_FLIGHT_GRACE, round).await {
                // A `started` acknowledged now needs its `stopped` too.
                self.apply(outcome);
            }
        }
        if self.completed_pending {
            // A download that completed just before the torrent stopped (within the first
            // announce's round trip, say) has not told any tracker yet. Trackers count finished
            // downloads by `completed` (BEP 3), so it goes before `stopped`, within the same budget.
            let budget = STOP_BUDGET.saturating_sub(stopping.elapsed()) / 2;
            self.announce_to_started(AnnounceEvent::Completed, budget)
                .await;
        }
        self.announce_to_started(
            AnnounceEvent::Stopped,
            STOP_BUDGET.saturating_sub(stopping.elapsed()),
        )
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
        if self.requests.reannounce.swap(false, Ordering::SeqCst) && !round_in_flight {
            self.next_announce = now;
            self.forced = true;
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
            crypto: self.cfg.crypto,
            ipv6: None,
        }
    }

    fn start_round(&mut self) -> Round {
        let forced = std::mem::take(&mut self.forced);
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
        // Warned in the first failing round; while the trackers keep failing, debug (see
        // `retry_after`).
        let quiet = self.cfg.second_hash || self.failed_rounds > 0;
        let second_hash = self.cfg.second_hash;
        Box::pin(async move {
            let mut last_error = String::new();
            for attempt in attempts {
                match transport.announce(&attempt.url, &attempt.req, forced).await {
                    Ok(response) => return RoundOutcome::Success(Box::new((attempt, response))),
                    Err(e) => {
                        if quiet {
                            tracing::debug!(tracker = %attempt.url, error = %e, second_hash, "announce failed");
                        } else {
                            tracing::warn!(tracker = %attempt.url, error = %e, "announce failed");
                        }
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
                    event = ?attempt.req.event,
                    left = attempt.req.left,
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
                let backoff = retry_after(self.failed_rounds, &mut self.retry_rng);
                let first = self.failed_rounds == 0;
                self.failed_rounds = self.failed_rounds.saturating_add(1);
                // Lax: thousands of torrents failing on one dead tracker wake together.
                self.next_announce = crate::clock::coalesced(now + backoff);
                // Warned once when the trackers start failing; the retries are debug (a daemon
                // with thousands of torrents on one dead tracker would write thousands of lines a
                // round).
                if self.cfg.second_hash || !first {
                    tracing::debug!(retry_in = ?backoff, error = %last_error, "every tracker failed");
                } else {
                    tracing::warn!(retry_in = ?backoff, error = %last_error, "every tracker failed");
                }
                self.status.send_modify(|s| s.last_error = Some(last_error));
            }
        }
    }

    /// Sends `event` (`completed` or `stopped`) to every tracker that acknowledged `started`, all at
    /// once, for at most `budget`.
    async fn announce_to_started(&self, event: AnnounceEvent, budget: Duration) {
        let stats = *self.stats.borrow();
        let mut pending = JoinSet::new();
        for url in &self.started {
            let req = self.request(url, stats, event);
            let transport = self.transport.clone();
            let url = url.clone();
            pending.spawn(async move {
                match transport.announce(&url, &req, false).await {
                    Ok(_) => tracing::debug!(tracker = %url, event = ?req.event, "announced at stop"),
                    Err(e) => tracing::debug!(tracker = %url, error = %e, event = ?req.event, "announce at stop failed"),
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
mod tests;
