//! A test's overall time budget, and bounded waits against it.
//!
//! Interop tests never sleep to "let something happen". A condition on our child processes (a log
//! line, an exit) is checked again each time one of them writes or exits ([`Deadline::wait`]). State
//! held by another program that tells nobody when it changes (a tracker's peer list, Transmission's
//! RPC, a file's allocated size) is also checked on those events, and at the latest after an
//! interval ([`Deadline::poll`]).

use std::time::{Duration, Instant};

use crate::procs::changed;

/// The instant by which a whole interop test must be done.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline(Instant);

impl Deadline {
    pub(crate) fn after(budget: Duration) -> Self {
        Deadline(Instant::now() + budget)
    }

    pub(crate) fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    pub(crate) fn expired(self) -> bool {
        self.remaining().is_zero()
    }

    /// Calls `probe` until it returns `Some`: at once, then each time a child process writes output
    /// or exits. Panics with `what` once the deadline has passed.
    pub(crate) fn wait<T>(self, what: &str, probe: impl FnMut() -> Option<T>) -> T {
        self.wait_at_most(what, None, probe)
    }

    /// Like [`Deadline::wait`], for state outside our processes that announces no change: `probe`
    /// is also called once `interval` has passed without an event.
    pub(crate) fn poll<T>(
        self,
        what: &str,
        interval: Duration,
        probe: impl FnMut() -> Option<T>,
    ) -> T {
        self.wait_at_most(what, Some(interval), probe)
    }

    fn wait_at_most<T>(
        self,
        what: &str,
        interval: Option<Duration>,
        mut probe: impl FnMut() -> Option<T>,
    ) -> T {
        let started = Instant::now();
        loop {
            // Read before probing, so an event during the probe ends the wait below at once.
            let seen = changed().generation();
            if let Some(value) = probe() {
                return value;
            }
            assert!(
                !self.expired(),
                "deadline passed after {:.1}s while waiting for {what}",
                started.elapsed().as_secs_f64()
            );
            let timeout = interval.map_or(self.remaining(), |i| i.min(self.remaining()));
            changed().wait_past(seen, timeout);
        }
    }
}
