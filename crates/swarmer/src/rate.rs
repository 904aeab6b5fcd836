//! The byte-rate limiters behind `--max-upload-rate` and `--max-download-rate` and the per-torrent
//! limits: a [`RateLimiter`] per direction and scope, shared through an `Arc` by every connection it
//! covers, that spreads bytes evenly over time and whose rate can change at run time.
//!
//! It is a token bucket kept in bytes, GCRA's "theoretical arrival time" counted in bytes rather than
//! time: `reserved` counts every byte granted so far and `paid(now)` every byte the rate has paid for
//! by `now`. A caller reserves its bytes at once, going into debt if the bucket holds fewer, and then
//! sleeps until the rate has paid up to its position. So callers are served in the order they asked,
//! a large request is never starved by a stream of small ones, any size passes without being split,
//! and there is no retry loop. Because a waiter holds a position in bytes rather than a deadline, a
//! new rate re-prices every byte not yet paid for: waiters are woken and sleep again until the new
//! deadline of their position. The arithmetic is a pure function of `now` ([`Schedule`]); the async
//! part sleeps on tokio's clock, so tests run on paused time. docs/design.md says why this is not
//! the `governor` crate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use swarmer_proto::BLOCK_SIZE;
use swarmer_proto::wire::PIECE_HEADER_LEN;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The smallest burst in bytes: one block with its `piece` message header, so that a block can always
/// pass without waiting once the limiter has been idle, however low the rate.
const MIN_BURST: u64 = BLOCK_SIZE as u64 + PIECE_HEADER_LEN as u64;

/// The burst is this fraction of a second's worth of bytes (unless that is under [`MIN_BURST`]).
const BURST_DIVISOR: u64 = 10;

/// The longest a deadline lies ahead of its schedule's anchor; only reached by absurd debts (a rate of
/// a few bytes per second and gigabytes waiting), and keeps `Instant` arithmetic from overflowing.
const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// A byte-rate limit shared by many tasks through an `Arc`: together they get `bytes_per_second` on
/// average, with bursts of at most a tenth of a second's worth (never less than one block). It may be
/// unlimited, which costs one atomic load per call, and its rate may change at any time.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// The rate in bytes per second, 0 when unlimited: read before taking the lock, so an unlimited
    /// limiter costs nothing more. Written only with `schedule` locked.
    rate: AtomicU64,
    /// Held only for the few arithmetic operations of a reservation, never across an `await`.
    schedule: Mutex<Schedule>,
    /// Wakes every waiter when the rate changes, so it sleeps again until its new deadline.
    changed: Notify,
}

impl RateLimiter {
    /// A limiter letting `bytes_per_second` through per second; `None` is unlimited, and `Some(0)` is
    /// treated as 1.
    pub(crate) fn new(bytes_per_second: Option<u64>) -> RateLimiter {
        let rate = bytes_per_second.map(|r| r.max(1));
        RateLimiter {
            rate: AtomicU64::new(rate.unwrap_or(0)),
            schedule: Mutex::new(Schedule::new(Instant::now(), rate.unwrap_or(1))),
            changed: Notify::new(),
        }
    }

    /// [`RateLimiter::new`] behind an `Arc`, as connections share it.
    pub(crate) fn shared(bytes_per_second: Option<u64>) -> Arc<RateLimiter> {
        Arc::new(RateLimiter::new(bytes_per_second))
    }

    /// The rate in bytes per second; `None` when unlimited.
    pub(crate) fn rate(&self) -> Option<u64> {
        match self.rate.load(Ordering::Relaxed) {
            0 => None,
            rate => Some(rate),
        }
    }

    /// True when a rate is set.
    pub(crate) fn is_limited(&self) -> bool {
        self.rate.load(Ordering::Relaxed) != 0
    }

    /// Sets the rate in bytes per second (`None`: unlimited; `Some(0)` is treated as 1). Bytes already
    /// reserved and not yet paid for are paid at the new rate: waiters wake and sleep until their new
    /// deadline, or pass at once when the limiter becomes unlimited. The bucket holds at most the new
    /// rate's burst from now on.
    pub(crate) fn set_rate(&self, bytes_per_second: Option<u64>) {
        let rate = bytes_per_second.map(|r| r.max(1));
        {
            let mut schedule = self.lock();
            if self.rate() == rate {
                return;
            }
            let now = Instant::now();
            match rate {
                // Debt run up before the limiter became unlimited was released with it.
                Some(rate) if !self.is_limited() => schedule.restart(now, rate),
                Some(rate) => schedule.set_rate(now, rate),
                None => {}
            }
            self.rate.store(rate.unwrap_or(0), Ordering::Relaxed);
        }
        self.changed.notify_waiters();
    }

    /// Waits until `bytes` may pass. Many tasks may call this concurrently; they are served in the
    /// order they called, and together get the rate on average. A call larger than the burst is fine:
    /// it waits until the debt it leaves is paid, and later callers wait behind it. Returns at once
    /// when unlimited.
    ///
    /// Dropping the future while it waits keeps its reservation: the bytes count as sent, so the
    /// limit errs on the slow side and is never exceeded.
    pub(crate) async fn acquire(&self, bytes: usize) {
        if bytes == 0 || !self.is_limited() {
            return;
        }
        let position = {
            let mut schedule = self.lock();
            if !self.is_limited() {
                return;
            }
            schedule.reserve(Instant::now(), bytes as u64)
        };
        loop {
            // Registered before the deadline is read, so a change in between is not missed.
            let changed = self.changed.notified();
            let deadline = {
                let schedule = self.lock();
                if !self.is_limited() {
                    return;
                }
                schedule.deadline(position)
            };
            if deadline <= Instant::now() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                () = changed => {}
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A torrent's own limiters, shared by its [`crate::TorrentHandle`] (which changes their rates) and
/// its connections.
#[derive(Debug, Clone)]
pub(crate) struct TorrentLimits {
    pub(crate) upload: Arc<RateLimiter>,
    pub(crate) download: Arc<RateLimiter>,
}

impl TorrentLimits {
    /// Limiters with `upload` and `download` bytes per second (`None`: unlimited).
    pub(crate) fn new(upload: Option<u64>, download: Option<u64>) -> TorrentLimits {
        TorrentLimits {
            upload: RateLimiter::shared(upload),
            download: RateLimiter::shared(download),
        }
    }
}

/// A torrent's limiter and the session's for one direction: bytes pass the torrent's first, then the
/// session's, so a torrent never exceeds its own limit and all of them together never exceed the
/// session's.
#[derive(Debug, Clone)]
pub(crate) struct LimiterPair {
    pub(crate) torrent: Arc<RateLimiter>,
    pub(crate) session: Arc<RateLimiter>,
}

impl LimiterPair {
    /// True when either limiter has a rate.
    pub(crate) fn is_limited(&self) -> bool {
        self.torrent.is_limited() || self.session.is_limited()
    }

    /// Waits until `bytes` may pass both limiters, the torrent's first.
    pub(crate) async fn acquire(&self, bytes: usize) {
        self.torrent.acquire(bytes).await;
        self.session.acquire(bytes).await;
    }
}

/// The bucket's state and the pure arithmetic of reserving bytes in it and of changing its rate.
#[derive(Debug)]
struct Schedule {
    /// The rate, at least 1.
    bytes_per_second: u64,
    /// The bucket's size in bytes: idle time beyond filling it is not saved up.
    burst: u64,
    /// Since `anchor`, the rate has paid for `bytes_per_second` more bytes each second.
    anchor: Instant,
    /// The bytes paid for at `anchor`, counted as `reserved` is.
    paid_at_anchor: u128,
    /// Every byte reserved so far (plus the idle bytes skipped when the bucket was full).
    reserved: u128,
}

impl Schedule {
    /// A full bucket at `now` for `bytes_per_second` (raised to 1 if zero).
    fn new(now: Instant, bytes_per_second: u64) -> Schedule {
        let mut schedule = Schedule {
            bytes_per_second: 1,
            burst: 0,
            anchor: now,
            paid_at_anchor: 0,
            reserved: 0,
        };
        schedule.restart(now, bytes_per_second);
        schedule
    }

    /// Sets the rate to `bytes_per_second` and fills the bucket: no debt is left.
    fn restart(&mut self, now: Instant, bytes_per_second: u64) {
        self.set_rate(now, bytes_per_second);
        self.paid_at_anchor = self.paid_at_anchor.max(self.reserved) + u128::from(self.burst);
    }

    /// Sets the rate to `bytes_per_second` from `now` on: what was paid for by `now` stays paid, the
    /// rest is paid at the new rate.
    fn set_rate(&mut self, now: Instant, bytes_per_second: u64) {
        self.paid_at_anchor = self.paid(now);
        self.anchor = now;
        self.bytes_per_second = bytes_per_second.max(1);
        self.burst = MIN_BURST.max(self.bytes_per_second / BURST_DIVISOR);
    }

    /// The bytes paid for by `now` (rounded down, so rounding never lets more through than the rate).
    fn paid(&self, now: Instant) -> u128 {
        let nanos = now.saturating_duration_since(self.anchor).as_nanos();
        self.paid_at_anchor
            + nanos.saturating_mul(u128::from(self.bytes_per_second)) / NANOS_PER_SECOND
    }

    /// Reserves `bytes` at `now` and returns the position the rate must pay up to before they pass.
    fn reserve(&mut self, now: Instant, bytes: u64) -> u128 {
        // A bucket idle for long enough is full, and no fuller.
        let full = self.paid(now).saturating_sub(u128::from(self.burst));
        self.reserved = self.reserved.max(full) + u128::from(bytes);
        self.reserved
    }

    /// When the rate has paid up to `position`: at or before the anchor if it already has, else
    /// rounded up to the nanosecond.
    fn deadline(&self, position: u128) -> Instant {
        let Some(owed) = position.checked_sub(self.paid_at_anchor) else {
            return self.anchor;
        };
        let nanos = owed
            .saturating_mul(NANOS_PER_SECOND)
            .div_ceil(u128::from(self.bytes_per_second));
        let wait = u64::try_from(nanos).map_or(MAX_WAIT, Duration::from_nanos);
        self.anchor + wait.min(MAX_WAIT)
    }
}

#[cfg(test)]
mod tests;
