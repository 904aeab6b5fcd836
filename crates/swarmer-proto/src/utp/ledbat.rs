//! LEDBAT congestion control (RFC 6817, as BEP 29 applies it): the window grows while the one-way
//! queuing delay is under a 100 ms target and shrinks in proportion as it passes it, so a uTP
//! transfer fills an idle link yet gives way to anything that builds a queue (a video call, a TCP
//! download). Loss halves the window (at most once per round trip); a retransmission timeout drops
//! it to one packet.
//!
//! Delays are the peer's `timestamp_difference` fields: the peer's clock at arrival minus ours at
//! sending, so each sample is "one-way delay + clock offset". The offset cancels against the base
//! delay (the smallest sample of the last [`BASE_HISTORY`] minutes), leaving the queuing delay.
//! Arithmetic on samples is modulo 2^32, as the clocks are.

use std::time::Duration;

use crate::time::Instant;

/// Queuing delay LEDBAT aims for (RFC 6817 `TARGET`, BEP 29: 100 ms).
pub const TARGET: Duration = Duration::from_millis(100);
/// Minutes of per-minute minima that make up the base delay (RFC 6817 `BASE_HISTORY`).
pub const BASE_HISTORY: usize = 10;
/// Samples whose minimum is the current delay (RFC 6817 `CURRENT_FILTER`).
const CURRENT_FILTER: usize = 4;
/// Window growth per round trip at zero queuing delay, in packets (RFC 6817 `GAIN` = 1).
const GAIN: u64 = 1;
/// The smallest window, in packets (RFC 6817 `MIN_CWND`).
const MIN_CWND_PACKETS: u32 = 2;
/// The largest window, in bytes: the receive window and send buffer bound it anyway.
pub const MAX_CWND: u32 = 16 << 20;
/// Round trips a slowdown holds the window at its minimum.
const SLOWDOWN_RTTS: u32 = 2;
/// A slowdown's next one comes this many times its length after it (LEDBAT++: 9, so at most
/// a tenth of the time is spent slowing down).
const SLOWDOWN_INTERVAL: u32 = 9;

/// Periodic slowdowns (from LEDBAT++, draft-irtf-iccrg-ledbat-plus-plus): every so often the window
/// drops to its minimum for two round trips, so the queue drains and every flow on the path,
/// including one that started while another's queue stood, measures the true base delay. Without
/// them a latecomer takes the standing queue for the base and crowds the earlier flows out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slowdown {
    /// Slow start has not ended yet.
    NotYet,
    /// The next slowdown starts at this time.
    Due(Instant),
    /// The window stays at its minimum until `until`; the slowdown began at `started`.
    Active { until: Instant, started: Instant },
    /// Slow start back to the window before the slowdown.
    Recovering { started: Instant },
}

/// Whether `a` is before `b` on a 32-bit wrapping clock.
fn wrapping_less(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// The congestion window of one connection.
#[derive(Debug, Clone)]
pub struct Ledbat {
    mss: u32,
    cwnd: u32,
    /// Growth at the slow-start rate (one packet per packet acked) until the first loss or until
    /// the queuing delay passes half the target.
    slow_start: bool,
    /// Per-minute minima of delay samples, newest at `base_at`; `None` for minutes not yet seen.
    base: [Option<u32>; BASE_HISTORY],
    base_at: usize,
    /// When the current base minute started.
    minute_start: Option<Instant>,
    /// The last few samples, newest at `current_at`.
    current: [Option<u32>; CURRENT_FILTER],
    current_at: usize,
    /// When the window last shrank for a loss, so one window's losses shrink it once.
    last_decrease: Option<Instant>,
    /// Where slow start ends after a slowdown: the window before it.
    ssthresh: Option<u32>,
    slowdown: Slowdown,
}

impl Ledbat {
    /// A window of two packets of `mss` payload bytes, in slow start.
    pub fn new(mss: u32) -> Ledbat {
        let mss = mss.max(1);
        Ledbat {
            mss,
            cwnd: MIN_CWND_PACKETS * mss,
            slow_start: true,
            base: [None; BASE_HISTORY],
            base_at: 0,
            minute_start: None,
            current: [None; CURRENT_FILTER],
            current_at: 0,
            last_decrease: None,
            ssthresh: None,
            slowdown: Slowdown::NotYet,
        }
    }

    /// The congestion window, in bytes.
    pub fn window(&self) -> u32 {
        self.cwnd
    }

    /// Whether the window is still in slow start.
    pub fn in_slow_start(&self) -> bool {
        self.slow_start
    }

    /// Records a one-way delay sample (the peer's `timestamp_difference`, µs, wrapping).
    pub fn on_delay_sample(&mut self, now: Instant, sample_us: u32) {
        let start = *self.minute_start.get_or_insert(now);
        if now.duration_since(start) >= Duration::from_secs(60) {
            self.minute_start = Some(now);
            self.base_at = (self.base_at + 1) % BASE_HISTORY;
            self.base[self.base_at] = None;
        }
        let slot = &mut self.base[self.base_at];
        if slot.is_none_or(|m| wrapping_less(sample_us, m)) {
            *slot = Some(sample_us);
        }
        self.current_at = (self.current_at + 1) % CURRENT_FILTER;
        self.current[self.current_at] = Some(sample_us);
    }

    /// The queuing delay: the current delay above the base delay; `None` before any sample.
    pub fn queuing_delay(&self) -> Option<Duration> {
        let min_of = |s: &[Option<u32>]| {
            s.iter()
                .flatten()
                .copied()
                .reduce(|a, b| if wrapping_less(b, a) { b } else { a })
        };
        let base = min_of(&self.base)?;
        let current = min_of(&self.current)?;
        let q = current.wrapping_sub(base);
        // A current delay below the base (a sample wrapped oddly) counts as no queue.
        Some(Duration::from_micros(if q < 0x8000_0000 {
            u64::from(q)
        } else {
            0
        }))
    }

    /// `acked` bytes were newly acknowledged at `now` while `flight` bytes (before the ACK) were in
    /// flight; `rtt` is the smoothed round-trip time.
    pub fn on_ack(&mut self, now: Instant, rtt: Duration, acked: u32, flight: u32) {
        let Some(delay) = self.queuing_delay() else {
            return;
        };
        if self.run_slowdown(now, rtt) {
            return;
        }
        // A window the sender does not fill says nothing about the path: do not grow it
        // (RFC 6817 2.4.1, "flightsize + ALLOWED_INCREASE").
        let limited = flight.saturating_add(2 * self.mss) >= self.cwnd;
        let target = TARGET.as_micros() as i64;
        let delay = (delay.as_micros() as i64).min(2 * target);
        if self.slow_start && (delay > target / 2 || self.ssthresh.is_some_and(|t| self.cwnd >= t))
        {
            self.slow_start = false;
            self.ssthresh = None;
        }
        let cwnd = i64::from(self.cwnd);
        let next = if self.slow_start {
            if limited {
                cwnd + i64::from(acked)
            } else {
                cwnd
            }
        } else {
            let off = target - delay;
            let acked = i64::from(acked);
            if off >= 0 {
                // Under the target: cwnd += GAIN * off_target * acked * MSS / cwnd, at most
                // GAIN packets per round trip (RFC 6817 2.4.2).
                let delta = GAIN as i64 * off * acked * i64::from(self.mss) / (target * cwnd);
                if limited { cwnd + delta } else { cwnd }
            } else {
                // Over it: shrink in proportion to the window (LEDBAT++), by `cwnd * (delay /
                // TARGET - 1)` per round trip, at most half. Flows sharing a queue see the same
                // delay, so the larger shrinks more: together with the additive growth this
                // converges to equal shares, which RFC 6817's additive decrease never does.
                cwnd - (acked * -off / target).min(acked / 2)
            }
        };
        self.cwnd = next.clamp(i64::from(self.min_cwnd()), i64::from(MAX_CWND)) as u32;
    }

    /// A packet was lost (three duplicate ACKs or selective ACKs past it): halves the window, at
    /// most once per `rtt`, and ends slow start.
    pub fn on_loss(&mut self, now: Instant, rtt: Duration) {
        self.slow_start = false;
        self.ssthresh = None;
        if self
            .last_decrease
            .is_some_and(|t| now.duration_since(t) < rtt)
        {
            return;
        }
        self.last_decrease = Some(now);
        self.cwnd = (self.cwnd / 2).max(self.min_cwnd());
    }

    /// The retransmission timer fired: nothing is getting through, so one packet at a time.
    pub fn on_timeout(&mut self) {
        self.slow_start = false;
        self.ssthresh = None;
        self.cwnd = self.mss;
    }

    /// Advances the slowdown schedule; `true` while the window is held at its minimum.
    fn run_slowdown(&mut self, now: Instant, rtt: Duration) -> bool {
        match self.slowdown {
            Slowdown::NotYet if !self.slow_start => {
                self.slowdown = Slowdown::Due(now + rtt * SLOWDOWN_RTTS);
            }
            Slowdown::Due(at) if now >= at => {
                self.ssthresh = Some(self.cwnd);
                self.cwnd = self.min_cwnd();
                self.slowdown = Slowdown::Active {
                    until: now + rtt * SLOWDOWN_RTTS,
                    started: now,
                };
                return true;
            }
            Slowdown::Active { until, started } => {
                if now < until {
                    self.cwnd = self.min_cwnd();
                    return true;
                }
                self.slow_start = true;
                self.slowdown = Slowdown::Recovering { started };
            }
            Slowdown::Recovering { started } if !self.slow_start => {
                self.slowdown = Slowdown::Due(now + (now - started) * SLOWDOWN_INTERVAL);
            }
            _ => {}
        }
        false
    }

    fn min_cwnd(&self) -> u32 {
        MIN_CWND_PACKETS * self.mss
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1000;
    const RTT: Duration = Duration::from_millis(100);

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn queuing_delay_is_the_current_delay_above_the_base() {
        let mut l = Ledbat::new(MSS);
        assert_eq!(l.queuing_delay(), None);
        // A clock offset of ~4e9 µs that wraps: only differences matter.
        let offset = u32::MAX - 1_000;
        l.on_delay_sample(at(0), offset.wrapping_add(20_000));
        for _ in 0..4 {
            l.on_delay_sample(at(1), offset.wrapping_add(70_000));
        }
        assert_eq!(l.queuing_delay(), Some(Duration::from_millis(50)));
    }

    #[test]
    fn the_base_forgets_minima_older_than_its_history() {
        let mut l = Ledbat::new(MSS);
        l.on_delay_sample(at(0), 10_000);
        for minute in 1..=BASE_HISTORY as u64 {
            for _ in 0..4 {
                l.on_delay_sample(at(minute * 60_000), 50_000);
            }
        }
        assert_eq!(
            l.queuing_delay(),
            Some(Duration::ZERO),
            "the 10 ms minute is gone"
        );
    }

    #[test]
    fn grows_under_target_shrinks_over_it() {
        let mut l = Ledbat::new(MSS);
        l.slow_start = false;
        l.cwnd = 10 * MSS;
        l.on_delay_sample(at(0), 0);
        l.on_ack(at(0), RTT, 10 * MSS, 10 * MSS);
        assert_eq!(l.window(), 11 * MSS, "one packet per window at zero delay");
        for _ in 0..4 {
            l.on_delay_sample(at(0), 200_000);
        }
        l.on_ack(at(0), RTT, 10 * MSS, 11 * MSS);
        assert_eq!(
            l.window(),
            6 * MSS,
            "a window's ACKs at twice the target: halved"
        );
        for _ in 0..4 {
            l.on_delay_sample(at(0), 110_000);
        }
        l.cwnd = 10 * MSS;
        l.on_ack(at(0), RTT, 10 * MSS, 10 * MSS);
        assert_eq!(l.window(), 9 * MSS, "a tenth over the target: a tenth less");
        for _ in 0..4 {
            l.on_delay_sample(at(0), 100_000);
        }
        l.on_ack(at(0), RTT, 9 * MSS, 9 * MSS);
        assert_eq!(l.window(), 9 * MSS, "steady at the target");
    }

    #[test]
    fn an_unused_window_does_not_grow() {
        let mut l = Ledbat::new(MSS);
        l.cwnd = 10 * MSS;
        l.on_delay_sample(at(0), 0);
        l.on_ack(at(0), RTT, MSS, MSS);
        assert_eq!(l.window(), 10 * MSS);
    }

    #[test]
    fn slow_start_doubles_until_the_queue_builds() {
        let mut l = Ledbat::new(MSS);
        l.on_delay_sample(at(0), 0);
        l.on_ack(at(0), RTT, 2 * MSS, 2 * MSS);
        assert_eq!(l.window(), 4 * MSS);
        assert!(l.in_slow_start());
        for _ in 0..4 {
            l.on_delay_sample(at(0), 60_000);
        }
        l.on_ack(at(0), RTT, 4 * MSS, 4 * MSS);
        assert!(!l.in_slow_start());
    }

    #[test]
    fn loss_halves_once_per_round_trip_and_timeout_resets() {
        let mut l = Ledbat::new(MSS);
        l.cwnd = 40 * MSS;
        let rtt = Duration::from_millis(100);
        l.on_loss(at(0), rtt);
        assert_eq!(l.window(), 20 * MSS);
        l.on_loss(at(50), rtt);
        assert_eq!(l.window(), 20 * MSS, "same window's loss");
        l.on_loss(at(150), rtt);
        assert_eq!(l.window(), 10 * MSS);
        for i in 0..10 {
            l.on_loss(at(300 + 200 * i), rtt);
        }
        assert_eq!(l.window(), 2 * MSS, "never under the minimum");
        l.on_timeout();
        assert_eq!(l.window(), MSS);
    }
}
