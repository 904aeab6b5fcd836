//! Scraping every torrent's trackers on a schedule (BEP 48 over HTTP, BEP 15 over UDP), for the
//! seeders, leechers and completed counts the daemon's views show (Transmission's `trackerStats`,
//! qBittorrent's `torrents/trackers`), kept on the [`ScrapeBoard`].
//!
//! One task wakes every [`TICK`] (or when a torrent is added), asks the manager which torrents have
//! which trackers, and scrapes whatever the board says is due. Every torrent due at one tracker
//! goes in one scrape (the client splits it into as few requests as the protocol allows), at most
//! [`PARALLEL_TRACKERS`] trackers at a time, each within [`SCRAPE_BUDGET`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use swarmer::tracker::{AnnounceError, TrackerClient};

use super::manager::Manager;
use super::scrape_board::ScrapeBoard;

/// How often the scheduler looks for due scrapes.
pub(crate) const TICK: Duration = Duration::from_secs(15);
/// Trackers scraped at the same time.
const PARALLEL_TRACKERS: usize = 8;
/// The bound on one tracker's scrape, all its requests together.
const SCRAPE_BUDGET: Duration = Duration::from_secs(120);

/// Runs the scrape schedule until the manager stops answering.
pub(crate) async fn run(manager: Manager, client: TrackerClient, board: Arc<ScrapeBoard>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = board.wake.notified() => {}
        }
        let Some(targets) = manager.scrape_targets().await else {
            return;
        };
        board.retain(&targets);
        let due = board.due(&targets, unix_now());
        futures_util::stream::iter(due)
            .for_each_concurrent(PARALLEL_TRACKERS, |(url, hashes)| {
                let (client, board) = (&client, &board);
                async move {
                    let answer = tokio::time::timeout(SCRAPE_BUDGET, client.scrape(&url, &hashes))
                        .await
                        .unwrap_or(Err(AnnounceError::Timeout(SCRAPE_BUDGET)));
                    board.record(&url, &hashes, answer, unix_now());
                }
            })
            .await;
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
