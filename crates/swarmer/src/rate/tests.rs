//! Tests of the token-bucket rate limiter: FIFO waiters, debt, rate changes at run time, on a paused clock.

use std::sync::atomic::AtomicU64;

use super::*;

const MIB: u64 = 1024 * 1024;
const KIB: u64 = 1024;
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

/// Starts `callers` tasks acquiring `size` bytes in a loop for ever; returns the running total of
/// bytes they got through.
fn spawn_endless(limiter: &Arc<RateLimiter>, callers: usize, size: usize) -> Arc<AtomicU64> {
    let total = Arc::new(AtomicU64::new(0));
    for _ in 0..callers {
        let (limiter, total) = (Arc::clone(limiter), Arc::clone(&total));
        tokio::spawn(async move {
            loop {
                limiter.acquire(size).await;
                total.fetch_add(size as u64, Ordering::Relaxed);
            }
        });
    }
    total
}

fn assert_within(actual: f64, expected: f64, tolerance: f64, what: &str) {
    let error = (actual - expected).abs() / expected;
    assert!(
        error <= tolerance,
        "{what}: {actual} is not within {tolerance} of {expected}"
    );
}

/// Reserves `bytes` at `now` and returns when they may pass (`now` if at once).
fn pass_at(schedule: &mut Schedule, now: Instant, bytes: u64) -> Instant {
    let position = schedule.reserve(now, bytes);
    schedule.deadline(position).max(now)
}

#[tokio::test(start_paused = true)]
async fn one_caller_gets_the_rate() {
    let limiter = RateLimiter::new(Some(MIB));
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
    let limiter = RateLimiter::shared(Some(MIB));
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
    let limiter = RateLimiter::shared(Some(MIB));
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
    let limiter = RateLimiter::new(Some(MIB));
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
    let limiter = RateLimiter::shared(Some(MIB));
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
    let limiter = RateLimiter::new(Some(100));
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

#[tokio::test(start_paused = true)]
async fn lowering_and_raising_the_rate_changes_throughput() {
    let limiter = RateLimiter::shared(Some(MIB));
    let total = spawn_endless(&limiter, 4, BLOCK_MSG);
    let phase = Duration::from_secs(10);
    let mut measured = Vec::new();
    for rate in [256 * KIB, 4 * MIB, MIB] {
        let before = total.load(Ordering::Relaxed);
        tokio::time::sleep(phase).await;
        measured.push((total.load(Ordering::Relaxed) - before) as f64 / 10.0);
        limiter.set_rate(Some(rate));
        assert_eq!(limiter.rate(), Some(rate));
    }
    let before = total.load(Ordering::Relaxed);
    tokio::time::sleep(phase).await;
    measured.push((total.load(Ordering::Relaxed) - before) as f64 / 10.0);
    // The first phase includes the initial burst (a tenth of a second's worth).
    for (got, want) in measured.iter().zip([
        1.01 * MIB as f64,
        256.0 * KIB as f64,
        4.0 * MIB as f64,
        MIB as f64,
    ]) {
        assert_within(*got, want, 0.03, "bytes per second");
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiter_is_repriced_when_the_rate_changes() {
    let limiter = RateLimiter::shared(Some(100));
    let start = Instant::now();
    limiter.acquire(BLOCK_MSG).await;
    // The next block would wait 164 s at 100 B/s.
    let waiter = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move {
            limiter.acquire(BLOCK_MSG).await;
            start.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    limiter.set_rate(Some(MIB));
    // It has paid 100 bytes at the old rate; the rest is paid at the new one.
    let waited = waiter.await.unwrap().as_secs_f64();
    assert_within(
        waited,
        1.0 + (BLOCK_MSG - 100) as f64 / MIB as f64,
        0.001,
        "seconds until the repriced block passed",
    );
    // Lowering works the same way: a caller in debt at 1 MiB/s waits at 1 KiB/s instead.
    let limiter = RateLimiter::shared(Some(MIB));
    limiter.acquire(MIB as usize / 10).await;
    let start = Instant::now();
    let waiter = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move {
            limiter.acquire(2048).await;
            start.elapsed()
        })
    };
    tokio::task::yield_now().await;
    limiter.set_rate(Some(KIB));
    assert_within(
        waiter.await.unwrap().as_secs_f64(),
        2.0,
        0.001,
        "seconds for 2 KiB repriced at 1 KiB/s",
    );
}

#[tokio::test(start_paused = true)]
async fn unlimited_lets_everything_through_at_once() {
    let limiter = RateLimiter::shared(None);
    assert_eq!(limiter.rate(), None);
    let start = Instant::now();
    for _ in 0..1000 {
        limiter.acquire(1 << 20).await;
    }
    assert_eq!(start.elapsed(), Duration::ZERO);

    // A waiter is released when the limit is lifted.
    limiter.set_rate(Some(10));
    limiter.acquire(BLOCK_MSG).await;
    let waiter = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move { limiter.acquire(BLOCK_MSG).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiter.is_finished());
    let lifted = Instant::now();
    limiter.set_rate(None);
    waiter.await.unwrap();
    assert_eq!(lifted.elapsed(), Duration::ZERO);
    assert!(!limiter.is_limited());

    // Set again, the limiter starts with a full bucket and no debt.
    limiter.set_rate(Some(MIB));
    let start = Instant::now();
    limiter.acquire((MIB / BURST_DIVISOR) as usize).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    limiter.acquire(MIB as usize).await;
    assert_within(
        start.elapsed().as_secs_f64(),
        1.0,
        0.001,
        "seconds for 1 MiB",
    );
}

#[tokio::test(start_paused = true)]
async fn a_lower_rate_holds_only_its_own_burst() {
    // Idle at 10 MiB/s the bucket holds 1 MiB; at 200 KiB/s it holds 20 KiB from then on.
    let limiter = RateLimiter::new(Some(10 * MIB));
    tokio::time::sleep(Duration::from_secs(5)).await;
    limiter.set_rate(Some(200 * KIB));
    let start = Instant::now();
    limiter.acquire(20 * KIB as usize).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    limiter.acquire(200 * KIB as usize).await;
    assert_within(
        start.elapsed().as_secs_f64(),
        1.0,
        0.001,
        "seconds for 200 KiB",
    );
}

#[tokio::test(start_paused = true)]
async fn a_pair_holds_the_torrent_limit_and_the_session_limit() {
    let session = RateLimiter::shared(Some(MIB));
    let one = LimiterPair {
        torrent: RateLimiter::shared(Some(256 * KIB)),
        session: Arc::clone(&session),
    };
    let two = LimiterPair {
        torrent: RateLimiter::shared(None),
        session: Arc::clone(&session),
    };
    assert!(one.is_limited() && two.is_limited());
    let totals = [one.clone(), two.clone()].map(|pair| {
        let total = Arc::new(AtomicU64::new(0));
        for _ in 0..2 {
            let (pair, total) = (pair.clone(), Arc::clone(&total));
            tokio::spawn(async move {
                loop {
                    pair.acquire(BLOCK_MSG).await;
                    total.fetch_add(BLOCK_MSG as u64, Ordering::Relaxed);
                }
            });
        }
        total
    });
    tokio::time::sleep(Duration::from_secs(20)).await;
    let [first, second] = totals.map(|t| t.load(Ordering::Relaxed) as f64 / 20.0);
    // The first torrent gets its own limit; the second the rest of the session's.
    assert_within(first, 256.0 * KIB as f64, 0.03, "limited torrent's bytes/s");
    assert_within(first + second, MIB as f64, 0.03, "session's bytes/s");
    // Lifting both limits of a pair makes it free.
    let free = LimiterPair {
        torrent: RateLimiter::shared(Some(1)),
        session: RateLimiter::shared(Some(1)),
    };
    free.torrent.set_rate(None);
    free.session.set_rate(None);
    assert!(!free.is_limited());
    let start = Instant::now();
    free.acquire(1 << 30).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[test]
fn idle_time_fills_the_bucket_but_no_more() {
    let t0 = Instant::now();
    let mut schedule = Schedule::new(t0, MIB);
    let burst = MIB / BURST_DIVISOR;
    assert_eq!(
        pass_at(&mut schedule, t0, burst),
        t0,
        "a new limiter starts full"
    );
    assert!(
        pass_at(&mut schedule, t0, 1) > t0,
        "and holds no more than the burst"
    );
    let later = t0 + Duration::from_secs(3600);
    assert_eq!(
        pass_at(&mut schedule, later, burst),
        later,
        "an hour idle refills it"
    );
    assert_eq!(
        pass_at(&mut schedule, later, 1),
        later + Duration::from_nanos(954),
        "but only to the burst"
    );
}

#[test]
fn deadlines_round_up_and_saturate() {
    let t0 = Instant::now();
    let mut schedule = Schedule::new(t0, 3);
    assert_eq!(pass_at(&mut schedule, t0, MIN_BURST), t0);
    assert_eq!(
        pass_at(&mut schedule, t0, 1),
        t0 + Duration::from_nanos(333_333_334)
    );
    assert_eq!(pass_at(&mut schedule, t0, 2), t0 + Duration::from_secs(1));
    let mut fast = Schedule::new(t0, u64::MAX);
    assert_eq!(pass_at(&mut fast, t0, u64::MAX / 10), t0);
    assert_eq!(pass_at(&mut fast, t0, 1), t0 + Duration::from_nanos(1));
    let mut slow = Schedule::new(t0, 1);
    assert_eq!(pass_at(&mut slow, t0, u64::MAX), t0 + MAX_WAIT);
    assert_eq!(Schedule::new(t0, 0).bytes_per_second, 1);
}
