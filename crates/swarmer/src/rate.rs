//! The session-wide byte-rate limiter behind `--max-upload-rate` and `--max-download-rate`: one
//! [`RateLimiter`] per direction, shared by every connection, that spreads bytes evenly over time.
//!
//! It is a token bucket kept as one instant, GCRA's "theoretical arrival time": `paid_until` is when
//! every byte granted so far is paid for at the configured rate. A caller reserves its bytes at once,
//! going into debt if the bucket holds fewer, and then sleeps until its debt is paid. So callers are
//! served in the order they asked, a large request is never starved by a stream of small ones, any
//! size passes without being split, and there is no retry loop. The arithmetic is a pure function of
//! `now` ([`Schedule::reserve`]); the async part is one `sleep_until` on tokio's clock, so tests run on
//! paused time. ARCHITECTURE.md says why this is not the `governor` crate.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use swarmer_proto::BLOCK_SIZE;
use swarmer_proto::wire::PIECE_HEADER_LEN;
use tokio::time::Instant;

/// The smallest burst in bytes: one block with its `piece` message header, so that a block can always
/// pass without waiting once the limiter has been idle, however low the rate.
const MIN_BURST: u64 = BLOCK_SIZE as u64 + PIECE_HEADER_LEN as u64;

/// The burst is this fraction of a second's worth of bytes (unless that is under [`MIN_BURST`]).
const BURST_DIVISOR: u64 = 10;

/// A byte-rate limit shared by many tasks through an `Arc`: together they get `bytes_per_second` on
/// average, with bursts of at most a tenth of a second's worth (never less than one block).
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// Held only for the few arithmetic operations of a reservation, never across an `await`.
    schedule: Mutex<Schedule>,
}

impl RateLimiter {
    /// A limiter that lets `bytes_per_second` bytes through per second; `bytes_per_second` > 0 (a zero
    /// is treated as 1, since "no limit" is expressed by having no limiter).
    pub(crate) fn new(bytes_per_second: u64) -> RateLimiter {
        RateLimiter {
            schedule: Mutex::new(Schedule::new(bytes_per_second)),
        }
    }

    /// Waits until `bytes` may pass. Many tasks may call this concurrently; they are served in the
    /// order they called, and together get `bytes_per_second` on average. A call larger than the burst
    /// is fine: it waits until the debt it leaves is paid, and later callers wait behind it.
    ///
    /// Dropping the future while it waits keeps its reservation: the bytes count as sent, so the
    /// limit errs on the slow side and is never exceeded.
    pub(crate) async fn acquire(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let now = Instant::now();
        let deadline = self
            .schedule
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reserve(now, bytes as u64);
        if deadline > now {
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// The bucket's state and the pure arithmetic of reserving bytes in it.
#[derive(Debug)]
struct Schedule {
    /// The rate, at least 1.
    bytes_per_second: u64,
    /// How long the rate takes to fill the bucket from empty: idle time beyond this is not saved up.
    burst: Duration,
    /// When every byte reserved so far is paid for; `None` before the first reservation (a full bucket).
    paid_until: Option<Instant>,
}

impl Schedule {
    /// A full bucket for `bytes_per_second` (raised to 1 if zero).
    fn new(bytes_per_second: u64) -> Schedule {
        let bytes_per_second = bytes_per_second.max(1);
        let mut schedule = Schedule {
            bytes_per_second,
            burst: Duration::ZERO,
            paid_until: None,
        };
        schedule.burst = schedule.cost(MIN_BURST.max(bytes_per_second / BURST_DIVISOR));
        schedule
    }

    /// Reserves `bytes` at `now` and returns when they may pass: the instant their debt is paid, which
    /// is `now` or earlier if the bucket held them.
    fn reserve(&mut self, now: Instant, bytes: u64) -> Instant {
        // A bucket idle for longer than `burst` is full, and no fuller.
        let full_since = now.checked_sub(self.burst).unwrap_or(now);
        let start = self
            .paid_until
            .map_or(full_since, |paid| paid.max(full_since));
        // Cannot overflow: a cost is at most 2^64 ns (584 years), and `paid_until` only runs ahead of
        // the clock by the debt of the reservations waiting at this moment.
        let paid = start + self.cost(bytes);
        self.paid_until = Some(paid);
        paid
    }

    /// The time the rate takes to pay for `bytes`, rounded up to the nanosecond so that rounding never
    /// lets more through than the rate.
    fn cost(&self, bytes: u64) -> Duration {
        let nanos = (u128::from(bytes) * 1_000_000_000).div_ceil(u128::from(self.bytes_per_second));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const MIB: u64 = 1024 * 1024;
    const BLOCK_MSG: usize = MIN_BURST as usize;

    /// Runs one caller per entry of `sizes`, each acquiring its size in a loop for `run` seconds of
    /// paused time, and returns the bytes each got through by the end of the run.
    async fn run_callers(limiter: Arc<RateLimiter>, sizes: &[usize], run: Duration) -> Vec<u64> {
        let start = Instant::now();
        let tasks: Vec<_> = sizes
            .iter()
            .map(|&size| {
                let limiter = Arc::clone(&limiter);
                tokio::spawn(async move {
                    let mut passed = 0;
                    loop {
                        limiter.acquire(size).await;
                        if start.elapsed() > run {
                            return passed;
                        }
                        passed += size as u64;
                    }
                })
            })
            .collect();
        let mut passed = Vec::new();
        for task in tasks {
            passed.push(task.await.expect("caller task panicked"));
        }
        passed
    }

    fn assert_within(actual: f64, expected: f64, tolerance: f64, what: &str) {
        let error = (actual - expected).abs() / expected;
        assert!(
            error <= tolerance,
            "{what}: {actual} is not within {tolerance} of {expected}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_caller_gets_the_rate() {
        let limiter = RateLimiter::new(MIB);
        let start = Instant::now();
        for _ in 0..(10 * MIB / 16384) {
            limiter.acquire(16384).await;
        }
        assert_within(
            start.elapsed().as_secs_f64(),
            10.0,
            0.05,
            "seconds for 10 MiB at 1 MiB/s",
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_rate_evenly() {
        let limiter = Arc::new(RateLimiter::new(MIB));
        let passed = run_callers(limiter, &[BLOCK_MSG; 4], Duration::from_secs(10)).await;
        let total: u64 = passed.iter().sum();
        assert_within(total as f64, 10.0 * MIB as f64, 0.05, "total bytes in 10 s");
        for (caller, &bytes) in passed.iter().enumerate() {
            assert_within(
                bytes as f64,
                total as f64 / 4.0,
                0.05,
                &format!("caller {caller}'s share"),
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_caller_is_not_starved_by_small_ones() {
        // Served in order of asking, the 256 KiB caller gets one turn per round of the three small ones:
        // 256 of every 304 KiB. A limiter that waits for the bucket to hold the whole request would
        // give it almost nothing while the small callers keep the bucket low.
        let limiter = Arc::new(RateLimiter::new(MIB));
        let sizes = [256 * 1024, 16 * 1024, 16 * 1024, 16 * 1024];
        let passed = run_callers(limiter, &sizes, Duration::from_secs(10)).await;
        let total: u64 = passed.iter().sum();
        assert_within(total as f64, 10.0 * MIB as f64, 0.05, "total bytes in 10 s");
        assert_within(
            passed[0] as f64,
            total as f64 * 256.0 / 304.0,
            0.05,
            "large caller's share",
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_larger_than_the_burst_passes_and_pays_its_debt() {
        let limiter = RateLimiter::new(MIB);
        let start = Instant::now();
        let size = 256 * 1024 + 100;
        let burst = MIB / BURST_DIVISOR;
        limiter.acquire(size).await;
        let first = start.elapsed().as_secs_f64();
        assert_within(
            first,
            (size as u64 - burst) as f64 / MIB as f64,
            0.01,
            "first large call",
        );
        limiter.acquire(size).await;
        let second = start.elapsed().as_secs_f64() - first;
        assert_within(second, size as f64 / MIB as f64, 0.01, "second large call");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_second_is_at_most_a_tenth_of_a_second_more() {
        let limiter = Arc::new(RateLimiter::new(MIB));
        let passed = run_callers(limiter, &[4096, 4096], Duration::from_secs(1)).await;
        let total: u64 = passed.iter().sum();
        assert!(total >= MIB, "only {total} bytes in the first second");
        assert!(
            total as f64 <= 1.1 * MIB as f64,
            "{total} bytes in the first second"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_block_passes_at_once_even_at_a_tiny_rate() {
        let limiter = RateLimiter::new(100);
        let start = Instant::now();
        limiter.acquire(BLOCK_MSG).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire(BLOCK_MSG).await;
        assert_within(
            start.elapsed().as_secs_f64(),
            BLOCK_MSG as f64 / 100.0,
            0.001,
            "second block",
        );
        // Nothing is reserved for zero bytes, and zero bytes never wait.
        let before = Instant::now();
        limiter.acquire(0).await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }

    #[test]
    fn idle_time_fills_the_bucket_but_no_more() {
        let mut schedule = Schedule::new(MIB);
        let burst = MIB / BURST_DIVISOR;
        let t0 = Instant::now();
        assert_eq!(schedule.reserve(t0, burst), t0, "a new limiter starts full");
        assert!(
            schedule.reserve(t0, 1) > t0,
            "and holds no more than the burst"
        );
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(
            schedule.reserve(later, burst),
            later,
            "an hour idle refills it"
        );
        assert_eq!(
            schedule.reserve(later, 1),
            later + schedule.cost(1),
            "but only to the burst"
        );
    }

    #[test]
    fn costs_round_up_and_saturate() {
        let schedule = Schedule::new(3);
        assert_eq!(schedule.cost(1), Duration::from_nanos(333_333_334));
        assert_eq!(schedule.cost(3), Duration::from_secs(1));
        let fast = Schedule::new(u64::MAX);
        assert_eq!(fast.cost(1), Duration::from_nanos(1));
        assert_eq!(
            Schedule::new(1).cost(u64::MAX),
            Duration::from_nanos(u64::MAX)
        );
        assert_eq!(Schedule::new(0).bytes_per_second, 1);
    }
}
