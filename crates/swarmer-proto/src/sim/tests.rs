//! Whole-swarm tests on the simulator. Each prints the numbers it measured (`cargo test -- --nocapture`)
//! and asserts bounds on them. Runs are reproducible from their seed (`same_seed_same_run`, and
//! `regressions::same_seed_same_outcome_in_a_nine_node_swarm`).

use super::*;

mod deadlines;
mod regressions;
mod uneven;
mod v2;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const LATENCY: Duration = Duration::from_millis(20);

fn layout(total: u64) -> Layout {
    Layout::new(64 * KIB, [total]).unwrap()
}

/// Connects every pair of nodes, lower index dialling.
fn full_mesh(s: &mut Swarm) {
    let nodes: Vec<NodeId> = s.nodes().collect();
    for (i, &a) in nodes.iter().enumerate() {
        for &b in &nodes[i + 1..] {
            assert!(s.connect(a, b, LATENCY));
        }
    }
}

/// Payload bytes `to` received from the nodes in `from`.
fn received_from(s: &Swarm, from: &[NodeId], to: NodeId) -> u64 {
    from.iter()
        .filter(|&&f| f != to)
        .map(|&f| s.transferred(f, to))
        .sum()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[test]
fn link_model_bounds_a_single_transfer() {
    // One seed, one leecher, 1 MiB at 1 MiB/s: one second of payload (plus 13 bytes of header per
    // block), after one round trip (the seed's `allowed fast` grants, then the leecher's requests),
    // plus the last block's latency and its time through the leecher's downlink: about 1.17 s.
    let mut s = Swarm::new(layout(MIB), 3);
    let seed = s.add_node(NodeConfig::seed(MIB, MIB));
    let leecher = s.add_node(NodeConfig::leecher(MIB, MIB));
    assert!(s.connect(leecher, seed, Duration::from_millis(50)));
    let outcome = s.run_until_complete(Duration::from_secs(10));
    let done = s.completed_at(leecher).expect("complete");
    println!(
        "1 MiB at 1 MiB/s, 50 ms: {outcome:?}, complete at {:.3} s",
        secs(done)
    );
    assert_eq!(outcome, Outcome::Reached(done));
    let payload = transmit_time(64 * (16 * 1024 + 13), MIB);
    let floor = payload + 3 * Duration::from_millis(50);
    assert!(done >= floor, "{done:?} < {floor:?}");
    assert!(done <= floor + Duration::from_millis(100), "{done:?}");
    assert_eq!(s.transferred(seed, leecher), MIB);
    assert_eq!(s.stats(leecher).wasted, 0);
    assert_eq!(s.messages(seed, leecher, 7), 64, "64 blocks of 16 KiB");
}

#[test]
fn one_seed_and_eight_leechers_finish_near_the_seed_bound() {
    let total = 4 * MIB;
    let rate = MIB;
    let mut s = Swarm::new(layout(total), 1);
    let seed = s.add_node(NodeConfig::seed(rate, rate));
    let leechers: Vec<NodeId> = (0..8)
        .map(|_| s.add_node(NodeConfig::leecher(rate, rate)))
        .collect();
    full_mesh(&mut s);
    let outcome = s.run_until_complete(Duration::from_secs(60));
    assert!(matches!(outcome, Outcome::Reached(_)), "{outcome:?}");
    // The seed must upload every byte at least once: total / its upload rate.
    let ideal = Duration::from_secs_f64(total as f64 / rate as f64);
    let seed_up = s.stats(seed).uploaded;
    let leechers_up: u64 = leechers.iter().map(|&l| s.stats(l).uploaded).sum();
    let wasted: u64 = leechers.iter().map(|&l| s.stats(l).wasted).sum();
    println!(
        "done at {:.2} s = {:.2} x ideal {:.2} s; seed uploaded {:.2} x content, leechers {:.2} x, \
         wasted {:.2} x",
        secs(s.now()),
        secs(s.now()) / secs(ideal),
        secs(ideal),
        seed_up as f64 / total as f64,
        leechers_up as f64 / total as f64,
        wasted as f64 / total as f64,
    );
    for &l in &leechers {
        assert_eq!(s.stats(l).verified, total);
        assert_eq!(s.stats(l).left, 0);
        assert!(s.first_block_at(l).is_some());
    }
    assert!(s.now() <= 3 * ideal, "{:?} > 3 x {ideal:?}", s.now());
    // Leechers trade among themselves: the seed sends far less than one copy per leecher.
    assert!(seed_up <= 3 * total, "seed uploaded {seed_up}");
    assert!(leechers_up >= 4 * total, "leechers uploaded {leechers_up}");
}

/// How [`trading_swarm`] is set up.
#[derive(Clone, Copy)]
struct Trade {
    /// `x` never uploads.
    x_free_rides: bool,
    /// `x` is added (and so connects) first rather than last.
    x_first: bool,
    upload_slots: usize,
    upload_window: u32,
}

impl Default for Trade {
    /// Two regular slots, so each peer must choose among seven others; the default upload window.
    fn default() -> Trade {
        Trade {
            x_free_rides: false,
            x_first: false,
            upload_slots: 2,
            upload_window: Config::default().upload_window,
        }
    }
}

/// What [`trading_swarm`] measured.
struct Traded {
    /// Payload bytes `x` received from the others in the first 20 s.
    x_got: u64,
    /// The same for each other node (from everyone, `x` included).
    others_got: Vec<u64>,
    /// When `x` completed.
    x_done: Duration,
    /// When the others completed, sorted.
    others_done: Vec<Duration>,
}

/// Eight leechers that each start with half the pieces (a different half, so every pair has something
/// to trade) and a ninth, `x`, that starts with half too and either reciprocates or free-rides. No
/// allowed-fast grants, which would feed a free rider regardless of choking.
fn trading_swarm(t: Trade) -> Traded {
    let total = 4 * MIB;
    let pieces = layout(total).piece_count();
    let half = |i: u32| Have::Pieces((0..pieces).filter(|p| (p + i) % 8 < 4).collect());
    let engine = Config {
        upload_slots: t.upload_slots,
        upload_window: t.upload_window,
        allowed_fast: 0,
        ..Config::default()
    };
    let mut s = Swarm::new(layout(total), 11);
    let node = |have, free_rider| NodeConfig {
        have,
        free_rider,
        engine: engine.clone(),
        ..NodeConfig::leecher(64 * KIB, 512 * KIB)
    };
    let first = t
        .x_first
        .then(|| s.add_node(node(half(10), t.x_free_rides)));
    let others: Vec<NodeId> = (0..8).map(|i| s.add_node(node(half(i), false))).collect();
    let x = first.unwrap_or_else(|| s.add_node(node(half(10), t.x_free_rides)));
    full_mesh(&mut s);
    s.run_until(Duration::from_secs(20), |_| false);
    let x_got = received_from(&s, &others, x);
    let others_got: Vec<u64> = others
        .iter()
        .map(|&o| received_from(&s, &others, o) + s.transferred(x, o))
        .collect();
    let outcome = s.run_until_complete(Duration::from_secs(600));
    assert!(matches!(outcome, Outcome::Reached(_)), "{outcome:?}");
    if t.x_free_rides {
        assert_eq!(s.stats(x).uploaded, 0);
    }
    let mut others_done: Vec<Duration> =
        others.iter().map(|&o| s.completed_at(o).unwrap()).collect();
    others_done.sort_unstable();
    Traded {
        x_got,
        others_got,
        x_done: s.completed_at(x).expect("complete"),
        others_done,
    }
}

#[test]
fn tit_for_tat_gives_a_free_rider_less_than_the_same_peer_reciprocating() {
    let honest = trading_swarm(Trade::default());
    let free = trading_swarm(Trade {
        x_free_rides: true,
        ..Trade::default()
    });
    let (honest_got, honest_done) = (honest.x_got, honest.x_done);
    let (free_got, mut others_got, free_done) = (free.x_got, free.others_got, free.x_done);
    others_got.sort_unstable();
    let median = others_got[others_got.len() / 2];
    println!(
        "first 20 s: reciprocating {} KiB, free riding {} KiB (others' median {} KiB); \
         complete at {:.1} s vs {:.1} s",
        honest_got / KIB,
        free_got / KIB,
        median / KIB,
        secs(honest_done),
        secs(free_done),
    );
    // Slots nobody pays for are drawn by lot, so a free rider still wins some; it gets clearly less.
    assert!(
        3 * free_got < 2 * honest_got,
        "free rider got {free_got}, reciprocator {honest_got}"
    );
    assert!(
        2 * free_got < median,
        "free rider got {free_got}, median {median}"
    );
    assert!(free_done > honest_done, "{free_done:?} <= {honest_done:?}");
}

#[test]
fn optimistic_unchoke_serves_a_newcomer_with_nothing_to_offer() {
    // A seed with one regular slot and the optimistic one, both taken by two leechers that stay
    // interested for minutes; a third leecher arrives with nothing to offer and no allowed-fast grant.
    let engine = Config {
        upload_slots: 1,
        allowed_fast: 0,
        ..Config::default()
    };
    let mut s = Swarm::new(layout(4 * MIB), 5);
    let seed = s.add_node(NodeConfig {
        engine: engine.clone(),
        ..NodeConfig::seed(64 * KIB, MIB)
    });
    let early: Vec<NodeId> = (0..2)
        .map(|_| {
            s.add_node(NodeConfig {
                engine: engine.clone(),
                ..NodeConfig::leecher(64 * KIB, MIB)
            })
        })
        .collect();
    let newcomer = s.add_node(NodeConfig {
        engine: engine.clone(),
        ..NodeConfig::leecher(64 * KIB, MIB)
    });
    for &l in &early {
        assert!(s.connect(l, seed, LATENCY));
    }
    let arrival = Duration::from_secs(45);
    s.run_until(arrival, |_| false);
    assert_eq!(s.stats(seed).unchoked, 2, "both slots taken");
    assert!(s.connect(newcomer, seed, LATENCY));
    // The optimistic slot rotates every `optimistic_rounds` choker rounds (30 s); a newcomer is three
    // times as likely as others to win the draw. Allow two rotations.
    let rotation = engine.choke_interval * engine.optimistic_rounds;
    let limit = arrival + 2 * rotation + Duration::from_secs(2);
    let outcome = s.run_until(limit, |s| s.first_block_at(newcomer).is_some());
    let first = s.first_block_at(newcomer);
    println!(
        "newcomer arrived at {:.0} s, first block at {:?}; {outcome:?}",
        secs(arrival),
        first.map(secs)
    );
    let first = first.expect("the newcomer got data through the optimistic slot");
    assert!(first - arrival <= 2 * rotation + Duration::from_secs(2));
    // The slot was not freed by an early leecher finishing: both still want data.
    for &l in &early {
        assert!(!s.engine(l).is_complete());
        assert!(s.unchoked_for(seed, l) > Duration::ZERO);
    }
    assert!(s.stats(seed).unchoked <= 2);
}

#[test]
fn a_lying_seed_is_banned_and_honest_leechers_complete() {
    let total = 2 * MIB;
    let mut s = Swarm::new(layout(total), 9);
    let honest = s.add_node(NodeConfig::seed(MIB, MIB));
    let liar = s.add_node(NodeConfig {
        liar: true,
        ..NodeConfig::seed(MIB, MIB)
    });
    let leechers: Vec<NodeId> = (0..4)
        .map(|_| s.add_node(NodeConfig::leecher(MIB, MIB)))
        .collect();
    full_mesh(&mut s);
    let outcome = s.run_until(Duration::from_secs(120), |s| {
        leechers.iter().all(|&l| s.engine(l).is_complete())
    });
    assert!(matches!(outcome, Outcome::Reached(_)), "{outcome:?}");
    let liar_ip = s.addr(liar).ip();
    let mut banned_by = 0;
    for &l in &leechers {
        // Completion implies correct data: a piece only counts once its SHA-1 matched.
        assert_eq!(s.stats(l).verified, total);
        let events = s.events(l);
        let failed = events
            .iter()
            .filter(|(_, e)| matches!(e, Event::HashFailed { .. }))
            .count();
        let banned = events.iter().any(|(_, e)| *e == Event::Banned(liar_ip));
        println!(
            "leecher {}: complete at {:.2} s, {failed} failed pieces, banned the liar: {banned}, \
             got {} KiB from it",
            l.index(),
            secs(s.completed_at(l).expect("complete")),
            s.transferred(liar, l) / KIB
        );
        banned_by += usize::from(banned);
        if banned {
            assert!(s.engine(l).is_banned(liar_ip));
            assert!(s.closed(l).iter().any(|c| c.peer == liar
                && c.fault == PeerFault::Misbehaved(crate::torrent::Offence::HashFailures)));
            assert!(
                !s.connect(l, liar, LATENCY),
                "no reconnecting to a banned peer"
            );
        }
        // Nobody honest is banned.
        for other in s.nodes().filter(|&n| n != liar) {
            assert!(!s.engine(l).is_banned(s.addr(other).ip()));
        }
    }
    assert!(banned_by >= 1, "some leecher banned the liar");
    assert!(s.stats(honest).uploaded > 0);
}

/// The leecher's verified pieces in order with their times, its counters, and what crossed the link.
fn two_node_run(seed: u64) -> (Vec<(Duration, Event)>, Stats, u64, Duration) {
    let mut s = Swarm::new(layout(2 * MIB), seed);
    let seeder = s.add_node(NodeConfig::seed(512 * KIB, MIB));
    let leecher = s.add_node(NodeConfig::leecher(256 * KIB, 512 * KIB));
    assert!(s.connect(leecher, seeder, LATENCY));
    s.run_until_complete(Duration::from_secs(60));
    (
        s.events(leecher).to_vec(),
        s.stats(leecher),
        s.messages(leecher, seeder, 6),
        s.completed_at(leecher).expect("complete"),
    )
}

#[test]
fn same_seed_same_run() {
    // Two nodes only: with one peer each, no engine decision depends on hash-map order.
    let a = two_node_run(21);
    let b = two_node_run(21);
    println!("seed 21: complete at {:.6} s", secs(a.3));
    assert_eq!(a, b);
    // Another seed picks pieces in another order (rarest-first ties are broken randomly).
    let c = two_node_run(22);
    let order = |run: &(Vec<(Duration, Event)>, Stats, u64, Duration)| -> Vec<Event> {
        run.0.iter().map(|(_, e)| e.clone()).collect()
    };
    assert_ne!(order(&a), order(&c));
}

#[test]
fn a_finished_leecher_seeds_to_newcomers() {
    let total = 2 * MIB;
    let mut s = Swarm::new(layout(total), 4);
    let seed = s.add_node(NodeConfig::seed(MIB, MIB));
    let first = s.add_node(NodeConfig::leecher(MIB, MIB));
    let second = s.add_node(NodeConfig::leecher(MIB, MIB));
    assert!(s.connect(first, seed, LATENCY));
    s.run_until(Duration::from_secs(30), |s| s.engine(first).is_complete());
    let done = s.completed_at(first).expect("first leecher complete");
    // The two seeds part (BEP 21 upload_only, then "both sides are seeds").
    s.run_until(done + Duration::from_secs(1), |_| false);
    assert_eq!(s.stats(first).peers, 0);
    // The second leecher only knows the first.
    assert!(s.connect(second, first, LATENCY));
    let outcome = s.run_until(Duration::from_secs(60), |s| s.engine(second).is_complete());
    assert!(matches!(outcome, Outcome::Reached(_)), "{outcome:?}");
    println!(
        "first complete at {:.2} s, second at {:.2} s; first uploaded {} KiB as a seed",
        secs(done),
        secs(s.completed_at(second).expect("complete")),
        s.uploaded_as_seed(first) / KIB
    );
    assert_eq!(s.transferred(first, second), total);
    assert_eq!(s.uploaded_as_seed(first), total);
    assert_eq!(s.transferred(seed, second), 0);
}

#[test]
fn a_leecher_skipping_a_middle_file_finishes_without_its_pieces() {
    // Files a (300 KiB), b (400 KiB, skipped), c (300 KiB) in 64 KiB pieces: pieces 4 and 10 straddle
    // a|b and b|c and are wanted; pieces 5..=9 hold only b.
    let layout = Layout::new(64 * KIB, [300 * KIB, 400 * KIB, 300 * KIB]).unwrap();
    let files = [
        FilePriority::Normal,
        FilePriority::Skip,
        FilePriority::Normal,
    ];
    let pieces = crate::priority::piece_priorities(&layout, &files, &[]).unwrap();
    let skipped: Vec<usize> = (0..pieces.len())
        .filter(|&i| !pieces[i].is_wanted())
        .collect();
    assert_eq!(skipped, vec![5, 6, 7, 8, 9]);
    let wanted_bytes: u64 = layout
        .pieces()
        .filter(|p| pieces[p.as_usize()].is_wanted())
        .map(|p| u64::from(layout.piece_len(p)))
        .sum();
    let mut s = Swarm::new(layout, 21);
    let seed = s.add_node(NodeConfig::seed(MIB, MIB));
    let picky = s.add_node(NodeConfig {
        piece_priorities: pieces.clone(),
        ..NodeConfig::leecher(MIB, MIB)
    });
    let full = s.add_node(NodeConfig::leecher(MIB, MIB));
    full_mesh(&mut s);
    let outcome = s.run_until(Duration::from_secs(60), |s| {
        s.engine(picky).is_finished() && s.engine(full).is_complete()
    });
    println!(
        "skipping 5 of 16 pieces: {outcome:?}, picky received {} of {wanted_bytes} wanted bytes",
        s.stats(picky).downloaded
    );
    assert!(matches!(outcome, Outcome::Reached(_)), "{outcome:?}");
    let engine = s.engine(picky);
    assert!(!engine.is_complete());
    for (i, priority) in pieces.iter().enumerate() {
        assert_eq!(engine.have().get(i), priority.is_wanted(), "piece {i}");
    }
    // It never asked for a skipped piece: everything it received was wanted (no endgame duplicates
    // of skipped pieces, no waste).
    let stats = s.stats(picky);
    assert_eq!((stats.left, stats.wanted), (0, wanted_bytes));
    assert_eq!(stats.downloaded - stats.wasted, wanted_bytes);
    assert!(stats.wasted <= 4 * 16 * KIB, "wasted {}", stats.wasted);
    let events: Vec<&Event> = s.events(picky).iter().map(|(_, e)| e).collect();
    assert!(events.contains(&&Event::Finished));
    assert!(!events.contains(&&Event::Complete));
    // Finished, it leaves the seed (both only upload, BEP 21) and serves the full leecher what it has.
    assert!(
        s.closed(picky)
            .iter()
            .any(|c| c.peer == seed && c.fault == PeerFault::Useless("both sides are seeds"))
            || s.closed(seed).iter().any(|c| c.peer == picky)
    );
}
