//! Engine bugs the simulator found, kept as regression tests: runs not reproducible from their seed
//! (hash-map order), the stuck-request timer starting before the request, endgame duplicates that
//! outlived endgame, a fixed upload window that queued our own messages behind seconds of blocks, and
//! rate ties that let a free rider keep a slot.

use super::*;

/// Bug 1 (fixed): the same seed must give the same run (`Torrent::new` documents `seed` as making
/// random choices reproducible), but the engine iterated hash maps (`Torrent::peers`,
/// `Picker::partials`), whose order is randomised per map.
#[test]
fn same_seed_same_outcome_in_a_nine_node_swarm() {
    let run = || {
        let mut s = Swarm::new(layout(4 * MIB), 1);
        s.add_node(NodeConfig::seed(MIB, MIB));
        for _ in 0..8 {
            s.add_node(NodeConfig::leecher(MIB, MIB));
        }
        full_mesh(&mut s);
        s.run_until_complete(Duration::from_secs(60));
        let nodes: Vec<NodeId> = s.nodes().collect();
        let done: Vec<Option<Duration>> = nodes.iter().map(|&n| s.completed_at(n)).collect();
        let stats: Vec<Stats> = nodes.iter().map(|&n| s.stats(n)).collect();
        (done, stats)
    };
    let first = run();
    for attempt in 0..5 {
        let again = run();
        assert_eq!(
            first.0, again.0,
            "attempt {attempt}: completion times differ"
        );
        assert_eq!(first.1, again.1, "attempt {attempt}: counters differ");
    }
}

/// Bug 2 (fixed): the stuck-request timer ran from the peer's last block, not from when the requests
/// were sent. A peer that choked us for more than `request_timeout` (20 s) and then unchoked us had
/// all our fresh requests cancelled at the next tick if its first block had not arrived yet (here:
/// a 300 ms link), and the blocks already on their way were downloaded twice.
#[test]
fn requests_to_a_peer_that_just_unchoked_us_are_not_timed_out_at_once() {
    let engine = Config {
        upload_slots: 1,
        allowed_fast: 0,
        ..Config::default()
    };
    let mut s = Swarm::new(layout(2 * MIB), 7);
    let seed = s.add_node(NodeConfig {
        engine: engine.clone(),
        ..NodeConfig::seed(128 * KIB, MIB)
    });
    let leechers: Vec<NodeId> = (0..4)
        .map(|_| {
            s.add_node(NodeConfig {
                engine: engine.clone(),
                ..NodeConfig::leecher(128 * KIB, MIB)
            })
        })
        .collect();
    for &l in &leechers {
        assert!(s.connect(l, seed, Duration::from_millis(300)));
    }
    s.run_until_complete(Duration::from_secs(300));
    for &l in &leechers {
        println!(
            "leecher {}: first block {:.1} s, complete {:.1} s, {} cancels, {} KiB wasted",
            l.index(),
            s.first_block_at(l).unwrap().as_secs_f64(),
            s.completed_at(l).unwrap().as_secs_f64(),
            s.messages(l, seed, 8),
            s.stats(l).wasted / KIB
        );
    }
    for &l in &leechers {
        // One peer, no endgame duplicates, a seed that answers within a second: nothing to cancel.
        assert_eq!(
            s.messages(l, seed, 8),
            0,
            "cancels from leecher {}",
            l.index()
        );
        assert_eq!(s.stats(l).wasted, 0, "waste at leecher {}", l.index());
    }
}

/// Bug 3 (fixed): duplicates were cancelled only while the picker was in endgame, but endgame ends
/// whenever a request is dropped (a `reject` after a `choke`, a timeout). A duplicate requested in
/// endgame whose block then arrived from the other peer stayed in that peer's in-flight list while
/// the picker counted the block as received, breaking the engine's first invariant.
#[test]
fn endgame_duplicates_keep_the_in_flight_invariant() {
    trading_swarm(Trade {
        x_free_rides: true,
        upload_window: 2,
        ..Trade::default()
    });
}

/// Bug 4 (fixed): the upload window was a fixed 32 blocks per peer. On a 64 KiB/s uplink the blocks
/// queued for one peer took tens of seconds to drain, and every message we sent that peer afterwards
/// (our requests, `have`, `choke`) waited behind them on the one ordered connection. A peer that
/// reciprocated therefore downloaded slower than one that never uploaded: free riding paid. The
/// window now follows the peer's upload rate.
#[test]
fn the_default_upload_window_does_not_make_free_riding_pay() {
    let Config {
        upload_slots: slots,
        upload_window: window,
        ..
    } = Config::default();
    let run = |x_free_rides, upload_window| {
        let t = trading_swarm(Trade {
            x_free_rides,
            upload_slots: slots,
            upload_window,
            ..Trade::default()
        });
        (t.x_done, t.others_done)
    };
    let (honest, honest_others) = run(false, window);
    let (free, free_others) = run(true, window);
    let (honest_small, others_small) = run(false, 2);
    println!(
        "{slots} slots, window {window}: reciprocating x complete at {:.1} s (swarm {:.1} s), free-riding x at \
         {:.1} s (swarm {:.1} s); window 2: reciprocating x at {:.1} s (swarm {:.1} s)",
        honest.as_secs_f64(),
        honest_others.last().unwrap().as_secs_f64(),
        free.as_secs_f64(),
        free_others.last().unwrap().as_secs_f64(),
        honest_small.as_secs_f64(),
        others_small.last().unwrap().as_secs_f64(),
    );
    assert!(
        free > honest,
        "free riding finished first: {free:?} <= {honest:?}"
    );
}

/// Bug 5 (fixed): the choker broke rate ties in favour of peers already unchoked, then by connection
/// key. A peer that gave us nothing has rate 0, like every peer that has not had the chance yet; so a
/// free rider that connected first kept a regular slot round after round. Zero-rate ties are now
/// drawn by lot.
#[test]
fn a_free_rider_connected_first_does_not_beat_the_reciprocators() {
    let first = Trade {
        x_first: true,
        upload_window: 2,
        ..Trade::default()
    };
    let free_run = trading_swarm(Trade {
        x_free_rides: true,
        ..first
    });
    let (free, others) = (free_run.x_done, free_run.others_done);
    let honest = trading_swarm(first).x_done;
    let median = others[others.len() / 2];
    println!(
        "first-connected x: free riding complete at {:.1} s, reciprocating at {:.1} s; \
         reciprocators' median {:.1} s",
        free.as_secs_f64(),
        honest.as_secs_f64(),
        median.as_secs_f64()
    );
    // Free riding does not pay, even for the peer that connected first. (It may still finish before
    // the median: its pieces are the rarest half here, and slots nobody pays for are drawn by lot.)
    assert!(
        free > honest,
        "free rider {free:?} <= reciprocating {honest:?}"
    );
}
