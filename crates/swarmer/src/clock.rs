//! The session's one clock: tokio's. Every task reads time from tokio (so a test on tokio's paused
//! clock reaches every timer, the engine's included) and hands the sans-IO core
//! [`swarmer_proto::time::Instant`]s measured from the session's start.

use std::sync::OnceLock;
use std::time::Duration;

use swarmer_proto::time::Instant as ProtoInstant;
use tokio::time::Instant;

/// Converts between tokio's clock and the protocol core's instants, whose origin is when the
/// session started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose origin is now.
    pub(crate) fn start() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    /// Now, for the protocol core.
    pub(crate) fn now(&self) -> ProtoInstant {
        self.proto_instant(Instant::now())
    }

    /// `at` for the protocol core (the origin, if `at` is before it).
    pub(crate) fn proto_instant(&self, at: Instant) -> ProtoInstant {
        ProtoInstant::from_origin(at.saturating_duration_since(self.origin))
    }

    /// A time the protocol core named, on tokio's clock (to sleep until it).
    pub(crate) fn tokio_instant(&self, at: ProtoInstant) -> Instant {
        self.origin + at.since_origin()
    }
}

/// The grid [`coalesced`] rounds to.
const COALESCE_GRID: Duration = Duration::from_secs(1);

/// `at`, rounded up to the next whole second of a grid shared by the whole process (counted from
/// the first call), for timers that may fire up to a second late: thousands of such timers then
/// fire together, in one wake-up a second, instead of one wake-up each. Ten thousand idle
/// torrents retrying a dead tracker at jittered times woke the daemon about 130 times a second.
pub(crate) fn coalesced(at: Instant) -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    let Some(since) = at.checked_duration_since(origin) else {
        return at;
    };
    let grid = COALESCE_GRID.as_nanos();
    let steps = since.as_nanos().div_ceil(grid);
    let rounded = u64::try_from(steps * grid).map_or(since, Duration::from_nanos);
    origin + rounded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_tokios_paused_clock_both_ways() {
        let clock = Clock::start();
        assert_eq!(clock.now(), ProtoInstant::ZERO);
        tokio::time::advance(Duration::from_secs(90)).await;
        let now = clock.now();
        assert_eq!(now.since_origin(), Duration::from_secs(90));
        assert_eq!(clock.tokio_instant(now), Instant::now());
        let due = now + Duration::from_secs(5);
        tokio::time::sleep_until(clock.tokio_instant(due)).await;
        assert_eq!(clock.now(), due);
    }

    #[tokio::test(start_paused = true)]
    async fn coalesced_timers_share_whole_seconds_and_are_never_early() {
        let base = coalesced(Instant::now());
        for ms in [1, 250, 999, 1000, 1001, 7300] {
            let at = base + Duration::from_millis(ms);
            let rounded = coalesced(at);
            assert!(rounded >= at && rounded - at < COALESCE_GRID, "{ms} ms");
            assert_eq!((rounded - base).subsec_nanos(), 0, "{ms} ms");
        }
        // Timers within one second of each other fire at one instant.
        assert_eq!(
            coalesced(base + Duration::from_millis(1)),
            coalesced(base + Duration::from_millis(999))
        );
    }
}
