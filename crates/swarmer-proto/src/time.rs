//! Time as the protocol core sees it: an [`Instant`] on a monotonic clock that the driver owns and
//! passes in. This crate never reads a clock (its `clippy.toml` forbids `Instant::now`,
//! `SystemTime::now` and unseeded randomness), so every timer here runs the same on a real clock, on
//! tokio's paused clock and on the simulator's virtual one.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in time: how long after its clock's origin. The driver picks the origin (the library:
/// when its session started; the simulator and tests: [`Instant::ZERO`]) and converts from its own
/// clock with [`Instant::from_origin`]. Instants of different clocks must not be mixed.
///
/// It behaves like [`std::time::Instant`]: ordered, `± Duration`, and `later - earlier` is the
/// [`Duration`] between them (zero, not a panic, when `earlier` is in fact later).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(Duration);

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant(Duration::ZERO);

    /// The instant `since` after the clock's origin.
    pub const fn from_origin(since: Duration) -> Instant {
        Instant(since)
    }

    /// How long after the clock's origin this instant is.
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// The time from `earlier` to `self`; zero if `earlier` is later.
    pub fn duration_since(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }

    /// The time from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// The time from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.0.checked_sub(earlier.0)
    }

    /// `self + d`, or `None` if that is not representable.
    pub fn checked_add(self, d: Duration) -> Option<Instant> {
        self.0.checked_add(d).map(Instant)
    }

    /// `self - d`, or `None` if that would be before the clock's origin.
    pub fn checked_sub(self, d: Duration) -> Option<Instant> {
        self.0.checked_sub(d).map(Instant)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// # Panics
    ///
    /// On overflow (about 584 billion years after the origin), as [`std::time::Instant`] does.
    fn add(self, d: Duration) -> Instant {
        self.checked_add(d)
            .expect("overflow when adding a duration to an instant")
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;

    /// # Panics
    ///
    /// If `self - d` is before the clock's origin, as [`std::time::Instant`] panics before its own.
    fn sub(self, d: Duration) -> Instant {
        self.checked_sub(d)
            .expect("overflow when subtracting a duration from an instant")
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// The time from `earlier` to `self`; zero if `earlier` is later.
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T+{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_monotonic_instant() {
        let t0 = Instant::ZERO;
        let t1 = t0 + Duration::from_secs(3);
        assert!(t1 > t0);
        assert_eq!(t1 - t0, Duration::from_secs(3));
        assert_eq!(t0 - t1, Duration::ZERO, "saturates like std's");
        assert_eq!(t1.checked_duration_since(t0), Some(Duration::from_secs(3)));
        assert_eq!(t0.checked_duration_since(t1), None);
        assert_eq!(t1.checked_sub(Duration::from_secs(4)), None);
        assert_eq!(
            t1.checked_sub(Duration::from_secs(1)),
            Some(t0 + Duration::from_secs(2))
        );
        assert_eq!(
            Instant::from_origin(Duration::from_millis(5)).since_origin(),
            Duration::from_millis(5)
        );
        let mut t = t0;
        t += Duration::from_millis(1500);
        assert_eq!(format!("{t:?}"), "T+1.5s");
        assert_eq!(
            Instant::from_origin(Duration::MAX).checked_add(Duration::from_secs(1)),
            None
        );
    }
}
