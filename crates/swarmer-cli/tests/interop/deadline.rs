//! A test's overall time budget, and bounded polling against it.
//!
//! Interop tests never sleep to "let something happen": they poll a condition (a log line, an RPC
//! answer, a tracker reply) at a short interval until it holds or the deadline passes.

use std::time::{Duration, Instant};

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

    /// Calls `probe` every `interval` until it returns `Some`, panicking with `what` once the
    /// deadline has passed.
    pub(crate) fn poll<T>(
        self,
        what: &str,
        interval: Duration,
        mut probe: impl FnMut() -> Option<T>,
    ) -> T {
        let started = Instant::now();
        loop {
            if let Some(value) = probe() {
                return value;
            }
            assert!(
                !self.expired(),
                "deadline passed after {:.1}s while waiting for {what}",
                started.elapsed().as_secs_f64()
            );
            std::thread::sleep(interval.min(self.remaining()));
        }
    }
}
