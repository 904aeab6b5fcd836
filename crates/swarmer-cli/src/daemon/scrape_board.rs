//! The last scrape of each torrent at each of its trackers ([`ScrapeBoard`]), written by the
//! scheduler in `scrape.rs` and read by the views; and when each is due again: answered ones after
//! [`SCRAPE_INTERVAL`], failed ones after [`RETRY_AFTER_FAILURE`]. Records of torrents or trackers
//! that are gone are dropped each round, so it holds one record per torrent and tracker at most.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use swarmer::tracker::AnnounceError;
use swarmer_proto::InfoHash;
use swarmer_proto::tracker::scrape::ScrapeCounts;

/// How long a tracker's answer stands before it is asked again: 30 min, as Transmission does.
pub(crate) const SCRAPE_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// How long after a failed scrape a tracker is asked again.
pub(crate) const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5 * 60);
/// How long after finding a tracker unscrapable (no BEP 48 scrape URL) it is looked at again.
const RETRY_UNSCRAPABLE: Duration = Duration::from_secs(24 * 60 * 60);

/// What one tracker last said of one torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScrapeRecord {
    /// The counts, or `None` when the tracker answered without this torrent (it does not know
    /// it) or failed.
    pub(crate) counts: Option<ScrapeCounts>,
    /// Why the last scrape failed, if it did.
    pub(crate) error: Option<String>,
    /// When it was scraped last (seconds since the Unix epoch).
    pub(crate) at: u64,
    /// When it is due again (seconds since the Unix epoch).
    pub(crate) next: u64,
}

/// A torrent whose trackers may be scraped: its wire info hash (a hybrid's v1 hash) and its
/// tracker URLs.
#[derive(Debug, Clone)]
pub(crate) struct ScrapeTarget {
    /// The info hash trackers know it by.
    pub(crate) info_hash: InfoHash,
    /// Its trackers, every tier.
    pub(crate) trackers: Vec<String>,
}

/// The last scrape of each torrent at each of its trackers, shared by the scheduler (which
/// writes) and the views (which read).
#[derive(Debug, Default)]
pub(crate) struct ScrapeBoard {
    records: Mutex<HashMap<InfoHash, HashMap<String, ScrapeRecord>>>,
    /// Wakes the scheduler before its next tick (a torrent was added).
    pub(crate) wake: tokio::sync::Notify,
}

impl ScrapeBoard {
    /// Has the scheduler look for due scrapes now rather than at its next tick.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// The records of one torrent, by tracker URL.
    pub(crate) fn of(&self, info_hash: &InfoHash) -> HashMap<String, ScrapeRecord> {
        self.lock().get(info_hash).cloned().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<InfoHash, HashMap<String, ScrapeRecord>>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The torrents due at each tracker at `now`, by tracker URL (in URL order, so rounds are
    /// deterministic).
    pub(crate) fn due(
        &self,
        targets: &[ScrapeTarget],
        now: u64,
    ) -> BTreeMap<String, Vec<InfoHash>> {
        let records = self.lock();
        let mut due: BTreeMap<String, Vec<InfoHash>> = BTreeMap::new();
        for target in targets {
            let known = records.get(&target.info_hash);
            for url in &target.trackers {
                let record = known.and_then(|k| k.get(url));
                if record.is_none_or(|r| r.next <= now) {
                    let hashes = due.entry(url.clone()).or_default();
                    if !hashes.contains(&target.info_hash) {
                        hashes.push(target.info_hash);
                    }
                }
            }
        }
        due
    }

    /// Records one tracker's answer for the `asked` torrents at `now`.
    pub(crate) fn record(
        &self,
        url: &str,
        asked: &[InfoHash],
        answer: Result<Vec<(InfoHash, ScrapeCounts)>, AnnounceError>,
        now: u64,
    ) {
        let (counts, error, wait): (HashMap<InfoHash, ScrapeCounts>, _, _) = match answer {
            Ok(counts) => (counts.into_iter().collect(), None, SCRAPE_INTERVAL),
            Err(e @ AnnounceError::NotScrapable(_)) => {
                (HashMap::new(), Some(e.to_string()), RETRY_UNSCRAPABLE)
            }
            Err(e) => {
                tracing::debug!(tracker = %url, error = %e, "scrape failed");
                (HashMap::new(), Some(e.to_string()), RETRY_AFTER_FAILURE)
            }
        };
        let mut records = self.lock();
        for hash in asked {
            records.entry(*hash).or_default().insert(
                url.to_owned(),
                ScrapeRecord {
                    counts: counts.get(hash).copied(),
                    error: error.clone(),
                    at: now,
                    next: now + wait.as_secs(),
                },
            );
        }
    }

    /// Drops the records of torrents and trackers that are no longer among `targets`.
    pub(crate) fn retain(&self, targets: &[ScrapeTarget]) {
        let wanted: HashMap<&InfoHash, &[String]> = targets
            .iter()
            .map(|t| (&t.info_hash, t.trackers.as_slice()))
            .collect();
        self.lock().retain(|hash, by_url| match wanted.get(hash) {
            Some(urls) => {
                by_url.retain(|url, _| urls.contains(url));
                !by_url.is_empty()
            }
            None => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(byte: u8, trackers: &[&str]) -> ScrapeTarget {
        ScrapeTarget {
            info_hash: InfoHash([byte; 20]),
            trackers: trackers.iter().map(|t| t.to_string()).collect(),
        }
    }

    const A: &str = "http://a.example/announce";
    const B: &str = "udp://b.example:6969";

    #[test]
    fn torrents_sharing_a_tracker_are_scraped_together_and_only_when_due() {
        let board = ScrapeBoard::default();
        let targets = [target(1, &[A, B]), target(2, &[A])];
        let due = board.due(&targets, 1000);
        assert_eq!(due[A], [InfoHash([1; 20]), InfoHash([2; 20])]);
        assert_eq!(due[B], [InfoHash([1; 20])]);

        let counts = ScrapeCounts {
            seeders: 3,
            completed: 9,
            leechers: 4,
        };
        // A answers for torrent 1 only (it does not know 2); B fails.
        board.record(A, &due[A], Ok(vec![(InfoHash([1; 20]), counts)]), 1000);
        board.record(
            B,
            &due[B],
            Err(AnnounceError::Timeout(Duration::from_secs(1))),
            1000,
        );
        let one = board.of(&InfoHash([1; 20]));
        assert_eq!(one[A].counts, Some(counts));
        assert_eq!(one[B].counts, None);
        assert!(one[B].error.is_some());
        assert_eq!(board.of(&InfoHash([2; 20]))[A].counts, None);

        // Nothing is due until the failure's retry, then only B.
        assert!(board.due(&targets, 1001).is_empty());
        let retry = 1000 + RETRY_AFTER_FAILURE.as_secs();
        assert_eq!(board.due(&targets, retry).keys().collect::<Vec<_>>(), [B]);
        let again = 1000 + SCRAPE_INTERVAL.as_secs();
        assert_eq!(board.due(&targets, again).len(), 2);
    }

    #[test]
    fn records_of_removed_torrents_and_trackers_are_dropped() {
        let board = ScrapeBoard::default();
        let ok = |hash| Ok(vec![(InfoHash([hash; 20]), ScrapeCounts::default())]);
        board.record(A, &[InfoHash([1; 20])], ok(1), 5);
        board.record(B, &[InfoHash([1; 20])], ok(1), 5);
        board.record(A, &[InfoHash([2; 20])], ok(2), 5);
        board.retain(&[target(1, &[A])]);
        assert_eq!(board.of(&InfoHash([1; 20])).keys().collect::<Vec<_>>(), [A]);
        assert!(board.of(&InfoHash([2; 20])).is_empty());
    }
}
