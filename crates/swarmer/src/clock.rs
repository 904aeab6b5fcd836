//! The session's one clock: tokio's. Every task reads time from tokio (so a test on tokio's paused
//! clock reaches every timer, the engine's included) and hands the sans-IO core
//! [`swarmer_proto::time::Instant`]s measured from the session's start.

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
}
