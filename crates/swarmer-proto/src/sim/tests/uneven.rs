//! Seeders of very uneven speed (issue 21's scenario (e), scaled down): ten seeders whose uplinks
//! span 40 to 1, two that trickle, and one leecher. Which peer gets which blocks decides the time
//! here, so the bound is on the time against the ideal (payload over the sum of the uplinks), as
//! `bench/swarm.py --scenarios e` measures it with real clients.

use super::*;

/// `bench/swarm.py`'s default caps for (e), MB/s; the simulation divides them by 16.
const CAPS_MB: [f64; 10] = [40.0, 30.0, 20.0, 12.0, 8.0, 5.0, 3.0, 2.0, 1.5, 1.0];

/// Runs the swarm with `seed` and returns (seconds to complete, ideal seconds).
fn uneven_swarm(seed: u64) -> (f64, f64) {
    // 64 MiB in 1 MiB pieces: 64 blocks a piece, as the benchmark's 1 GiB file has.
    let total = 64 * MIB;
    let mut s = Swarm::new(Layout::new(MIB, [total]).unwrap(), seed);
    let leecher = s.add_node(NodeConfig::leecher(MIB, 1024 * MIB));
    let trickles = [4_000; 2];
    let uplinks: Vec<u64> = CAPS_MB
        .iter()
        .map(|cap| (cap * 1e6 / 16.0) as u64)
        .chain(trickles)
        .collect();
    for &up in &uplinks {
        let seeder = s.add_node(NodeConfig::seed(up, 1024 * MIB));
        assert!(s.connect(leecher, seeder, Duration::from_millis(1)));
    }
    let outcome = s.run_until(Duration::from_secs(120), |s| {
        s.engine(leecher).is_complete()
    });
    let Outcome::Reached(at) = outcome else {
        panic!("did not finish: {outcome:?}");
    };
    let verified: Vec<f64> = s
        .events(leecher)
        .iter()
        .filter(|(_, e)| matches!(e, Event::PieceVerified(_)))
        .map(|(when, _)| secs(*when))
        .collect();
    let n = verified.len();
    println!(
        "seed {seed}: pieces verified: first {:.2} s, 10 % {:.2} s, 50 % {:.2} s, 90 % {:.2} s, \
         last {:.2} s",
        verified[0],
        verified[n / 10],
        verified[n / 2],
        verified[n * 9 / 10],
        verified[n - 1]
    );
    (secs(at), total as f64 / uplinks.iter().sum::<u64>() as f64)
}

#[test]
fn uneven_seeders_finish_near_the_ideal_time() {
    for seed in [1, 2, 3] {
        let (took, ideal) = uneven_swarm(seed);
        println!(
            "seed {seed}: {took:.2} s, ideal {ideal:.2} s, {:.3} x ideal",
            took / ideal
        );
        // 1.07-1.08 x when written: a slow seeder's 32 first requests pin a piece for seconds.
        assert!(
            took <= ideal * 1.12,
            "{took:.2} s against an ideal of {ideal:.2} s"
        );
    }
}
