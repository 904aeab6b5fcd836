//! Which trackers are unreachable right now, shared by every torrent of a session: after an
//! announce to a tracker fails without an answer (refused, timed out, unresolvable), the other
//! torrents that announce to the same URL are told at once, without a request, until a backoff
//! has passed; then one announce probes the tracker again. A daemon with thousands of torrents on
//! one dead tracker then sends one request per backoff instead of one per torrent per retry.
//!
//! Only failures where the tracker did not answer count: a tracker that answers with a
//! `failure reason` or an HTTP status answers for one torrent, not for all. Pure bookkeeping,
//! with the time passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The first backoff after a tracker stops answering; it doubles with each further failed probe.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_secs(15);

/// The longest backoff between probes of an unreachable tracker.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(10 * 60);

/// How long a probe may take before another announce may probe instead (the probing torrent may
/// have stopped and dropped its request): longer than the slowest announce (a UDP tracker's four
/// transmissions take 75 s).
pub(crate) const PROBE_GRACE: Duration = Duration::from_secs(90);

/// At most this many trackers are remembered; past it, expired ones are forgotten and, if none
/// are, a new failure is not recorded (its torrents then simply ask it themselves).
pub(crate) const MAX_TRACKERS: usize = 4096;

/// One tracker that stopped answering.
#[derive(Debug, Clone)]
struct Down {
    /// Announces before this are answered from here.
    until: Instant,
    /// Failed probes in a row (1 after the first failure).
    failures: u32,
    /// The last failure, as the user sees it.
    error: String,
}

/// What [`Health::check`] decided for one announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Ask the tracker (it is not known to be down, or this announce is the probe).
    Ask,
    /// Do not: it failed with `error` and is not asked again for `retry_in`.
    Skip {
        /// The last failure of a real announce.
        error: String,
        /// Until the next probe may go.
        retry_in: Duration,
    },
}

/// The unreachable trackers of a session, by announce URL.
#[derive(Debug, Default)]
pub(crate) struct Health {
    down: HashMap<String, Down>,
}

impl Health {
    /// Whether an announce to `url` at `now` should go out. When the tracker's backoff is over,
    /// this announce becomes the probe: the others keep being skipped for [`PROBE_GRACE`] or
    /// until it reports back through [`Health::record`].
    pub(crate) fn check(&mut self, url: &str, now: Instant) -> Verdict {
        let Some(down) = self.down.get_mut(url) else {
            return Verdict::Ask;
        };
        if now >= down.until {
            down.until = now + PROBE_GRACE;
            return Verdict::Ask;
        }
        Verdict::Skip {
            error: down.error.clone(),
            retry_in: down.until - now,
        }
    }

    /// The outcome of a real announce to `url` at `now`: `Some(error)` when the tracker did not
    /// answer, `None` when it did (whatever it said). A failure backs the tracker off for
    /// [`FIRST_BACKOFF`], doubled per failure in a row up to [`MAX_BACKOFF`].
    pub(crate) fn record(&mut self, url: &str, unreachable: Option<String>, now: Instant) {
        let Some(error) = unreachable else {
            self.down.remove(url);
            return;
        };
        if !self.down.contains_key(url) && self.down.len() >= MAX_TRACKERS {
            self.down.retain(|_, d| d.until > now);
            if self.down.len() >= MAX_TRACKERS {
                return;
            }
        }
        let down = self.down.entry(url.to_owned()).or_insert(Down {
            until: now,
            failures: 0,
            error: String::new(),
        });
        down.failures = down.failures.saturating_add(1);
        let backoff = FIRST_BACKOFF
            .saturating_mul(1u32.checked_shl(down.failures - 1).unwrap_or(u32::MAX))
            .min(MAX_BACKOFF);
        down.until = now + backoff;
        down.error = error;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://tracker.example/announce";

    fn skip_in(verdict: Verdict) -> Duration {
        match verdict {
            Verdict::Skip { retry_in, .. } => retry_in,
            Verdict::Ask => panic!("asked"),
        }
    }

    #[test]
    fn an_unknown_tracker_is_asked() {
        let mut h = Health::default();
        assert_eq!(h.check(URL, Instant::now()), Verdict::Ask);
    }

    #[test]
    fn a_silent_tracker_is_skipped_until_its_backoff_then_probed_once() {
        let mut h = Health::default();
        let t0 = Instant::now();
        h.record(URL, Some("connection refused".into()), t0);
        // Every other torrent is told at once, with the error and the wait.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(
            h.check(URL, later),
            Verdict::Skip {
                error: "connection refused".into(),
                retry_in: Duration::from_secs(10),
            }
        );
        // Another tracker is not affected.
        assert_eq!(h.check("udp://other:1/announce", later), Verdict::Ask);
        // The backoff over: one announce probes, the rest wait for it.
        let due = t0 + FIRST_BACKOFF;
        assert_eq!(h.check(URL, due), Verdict::Ask);
        assert_eq!(skip_in(h.check(URL, due)), PROBE_GRACE);
        // It failed again: twice the backoff.
        h.record(URL, Some("connection refused".into()), due);
        assert_eq!(skip_in(h.check(URL, due)), 2 * FIRST_BACKOFF);
    }

    #[test]
    fn an_answer_clears_the_tracker_at_once() {
        let mut h = Health::default();
        let t0 = Instant::now();
        h.record(URL, Some("timed out".into()), t0);
        h.record(URL, None, t0 + Duration::from_secs(1));
        assert_eq!(h.check(URL, t0 + Duration::from_secs(1)), Verdict::Ask);
    }

    #[test]
    fn the_backoff_doubles_up_to_its_limit() {
        let mut h = Health::default();
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..8 {
            h.record(URL, Some("timed out".into()), now);
            let wait = skip_in(h.check(URL, now));
            waits.push(wait.as_secs());
            now += wait;
            assert_eq!(h.check(URL, now), Verdict::Ask, "the probe");
        }
        assert_eq!(waits, [15, 30, 60, 120, 240, 480, 600, 600]);
    }

    #[test]
    fn a_dropped_probe_lets_another_announce_probe_after_the_grace() {
        let mut h = Health::default();
        let t0 = Instant::now();
        h.record(URL, Some("timed out".into()), t0);
        let due = t0 + FIRST_BACKOFF;
        assert_eq!(h.check(URL, due), Verdict::Ask);
        // No record: the probing torrent stopped.
        assert_eq!(h.check(URL, due + PROBE_GRACE), Verdict::Ask);
    }

    #[test]
    fn memory_is_bounded() {
        let mut h = Health::default();
        let t0 = Instant::now();
        for i in 0..MAX_TRACKERS + 10 {
            h.record(&format!("http://t{i}/announce"), Some("refused".into()), t0);
        }
        assert_eq!(h.down.len(), MAX_TRACKERS);
        // Once they expired, new ones take their place.
        let later = t0 + MAX_BACKOFF;
        h.record("http://new/announce", Some("refused".into()), later);
        assert!(h.down.len() <= MAX_TRACKERS);
        assert!(matches!(
            h.check("http://new/announce", later),
            Verdict::Skip { .. }
        ));
    }
}
