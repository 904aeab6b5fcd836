//! Time-critical pieces (`Torrent::set_piece_deadline`) in whole swarms: a deadline piece comes
//! before the others from the fast peer of a slow and fast pair while the rest keeps its rarest
//! first order, a late piece held by a slow peer is asked of a fast one, and deadlines move and
//! clear. Every engine's invariants are checked after every event, as in every simulator test.

use super::*;
use crate::PieceIndex;

/// 8 MiB in 64 KiB pieces: 128 pieces.
const TOTAL: u64 = 8 * MIB;

/// When `node` verified `piece`, if it has.
fn verified_at(s: &Swarm, node: NodeId, piece: u32) -> Option<Duration> {
    s.events(node).iter().find_map(|(at, e)| match e {
        Event::PieceVerified(p) if p.get() == piece => Some(*at),
        _ => None,
    })
}

/// Pieces `node` verified before `at`.
fn verified_before(s: &Swarm, node: NodeId, at: Duration) -> Vec<u32> {
    s.events(node)
        .iter()
        .filter_map(|(when, e)| match e {
            Event::PieceVerified(p) if *when < at => Some(p.get()),
            _ => None,
        })
        .collect()
}

fn piece(s: &Swarm, i: u32) -> PieceIndex {
    s.layout().piece(i).unwrap()
}

/// A slow seed (48 KiB/s up), a fast seed (512 KiB/s up) and a leecher; returns the swarm and the
/// three nodes, connected, with the clock at zero.
fn slow_and_fast(seed: u64) -> (Swarm, NodeId, NodeId, NodeId) {
    let mut s = Swarm::new(layout(TOTAL), seed);
    let slow = s.add_node(NodeConfig::seed(48 * KIB, MIB));
    let fast = s.add_node(NodeConfig::seed(512 * KIB, MIB));
    let leecher = s.add_node(NodeConfig::leecher(MIB, 10 * MIB));
    assert!(s.connect(leecher, slow, LATENCY));
    assert!(s.connect(leecher, fast, LATENCY));
    (s, slow, fast, leecher)
}

/// Runs until `node` has verified piece `i` (bounded), and returns when.
fn run_until_verified(s: &mut Swarm, node: NodeId, i: u32, limit: Duration) -> Duration {
    let outcome = s.run_until(limit, |s| s.engine(node).have().get(i as usize));
    assert!(matches!(outcome, Outcome::Reached(_)), "{outcome:?}");
    verified_at(s, node, i).expect("verified")
}

#[test]
fn a_deadline_piece_arrives_before_the_others_from_the_fast_peer() {
    // A seek in the middle of a download: once both peers' rates are known, piece 100 gets a
    // deadline one second away.
    const TARGET: u32 = 100;
    let (mut s, slow, fast, leecher) = slow_and_fast(11);
    s.run_until(Duration::from_secs(3), |_| false);
    let set_at = s.now();
    assert!(!s.engine(leecher).have().get(TARGET as usize));
    let due = s.instant_at(set_at + Duration::from_secs(1));
    let p = piece(&s, TARGET);
    assert!(s.with_engine(leecher, |e, now| e.set_piece_deadline(p, due, now)));
    assert_eq!(s.engine(leecher).piece_deadline(p), Some(due));
    let got = run_until_verified(&mut s, leecher, TARGET, Duration::from_secs(60));
    let others =
        verified_before(&s, leecher, got).len() - verified_before(&s, leecher, set_at).len();
    println!(
        "deadline set at {:.2} s, piece {TARGET} verified at {:.2} s; {others} other pieces verified \
         meanwhile",
        secs(set_at),
        secs(got)
    );
    // 64 KiB at 512 KiB/s is an eighth of a second, behind at most two seconds of queued requests.
    assert!(got - set_at <= Duration::from_secs(1), "{got:?}");
    assert_eq!(s.engine(leecher).piece_deadline(p), None, "met, so cleared");
    s.run_until_complete(Duration::from_secs(120));
    let order: Vec<u32> = verified_before(&s, leecher, s.now() + Duration::from_secs(1));
    assert_eq!(order.len(), 128);
    // Not a switch to sequential: the other pieces still come in rarest-first (random) order,
    // and the slow peer served its share of them.
    let in_order = order.windows(2).filter(|w| w[1] == w[0] + 1).count();
    assert!(
        in_order < 64,
        "{in_order} of 127 pieces followed their predecessor"
    );
    assert!(s.transferred(slow, leecher) >= 4 * 64 * KIB);
    assert!(s.transferred(fast, leecher) > s.transferred(slow, leecher));

    // The same swarm without the deadline: piece 100 comes when rarest first reaches it.
    let (mut s, _, _, leecher) = slow_and_fast(11);
    let plain = run_until_verified(&mut s, leecher, TARGET, Duration::from_secs(60));
    println!(
        "without a deadline, piece {TARGET} verified at {:.2} s",
        secs(plain)
    );
    assert!(plain > got, "{plain:?} <= {got:?}");
}

#[test]
fn a_late_piece_held_by_a_slow_peer_is_asked_of_a_fast_one() {
    // Only the slow peer (16 KiB/s) is there when piece 5 becomes due at once: it takes the
    // piece's four blocks, four seconds' worth. Half a second later a fast peer arrives; the piece
    // is late, so the fast peer is asked for the same blocks, and the slow peer's are cancelled.
    const TARGET: u32 = 5;
    let mut s = Swarm::new(layout(TOTAL), 5);
    let slow = s.add_node(NodeConfig::seed(16 * KIB, MIB));
    let fast = s.add_node(NodeConfig::seed(MIB, MIB));
    let leecher = s.add_node(NodeConfig::leecher(MIB, 10 * MIB));
    let p = piece(&s, TARGET);
    let now = s.instant_at(Duration::ZERO);
    assert!(s.with_engine(leecher, |e, at| e.set_piece_deadline(p, now, at)));
    assert!(s.connect(leecher, slow, LATENCY));
    s.run_until(Duration::from_millis(500), |_| false);
    assert!(!s.engine(leecher).have().get(TARGET as usize));
    assert!(s.connect(leecher, fast, LATENCY));
    let got = run_until_verified(&mut s, leecher, TARGET, Duration::from_secs(60));
    println!("late piece verified at {:.2} s", secs(got));
    assert!(got <= Duration::from_millis(1500), "{got:?}");
    assert!(
        s.messages(leecher, slow, 8) > 0,
        "the slow peer's requests were cancelled"
    );
    assert!(s.messages(leecher, fast, 6) > 0);
}

#[test]
fn deadlines_are_set_moved_and_cleared() {
    let (mut s, _, _, leecher) = slow_and_fast(3);
    let at = |s: &Swarm, secs: u64| s.instant_at(Duration::from_secs(secs));
    let (a, b, c) = (piece(&s, 10), piece(&s, 20), piece(&s, 30));
    let (t5, t6, t7) = (at(&s, 5), at(&s, 6), at(&s, 7));
    s.with_engine(leecher, |e, now| {
        e.set_piece_deadline(a, t7, now);
        e.set_piece_deadline(b, t6, now);
        e.set_piece_deadline(c, t5, now);
    });
    let order: Vec<PieceIndex> = s
        .engine(leecher)
        .piece_deadlines()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(order, [c, b, a], "earliest first");
    // Moved: `a` becomes the most urgent.
    let t1 = at(&s, 1);
    s.with_engine(leecher, |e, now| e.set_piece_deadline(a, t1, now));
    let order: Vec<PieceIndex> = s
        .engine(leecher)
        .piece_deadlines()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(order, [a, c, b]);
    s.with_engine(leecher, |e, now| e.clear_piece_deadline(c, now));
    assert_eq!(s.engine(leecher).piece_deadline(c), None);
    assert_eq!(s.engine(leecher).piece_deadlines().count(), 2);
    run_until_verified(&mut s, leecher, 10, Duration::from_secs(30));
    assert_eq!(s.engine(leecher).piece_deadline(a), None);
    s.with_engine(leecher, |e, now| e.clear_piece_deadlines(now));
    assert_eq!(s.engine(leecher).piece_deadlines().count(), 0);
    // A verified piece takes no deadline.
    let t9 = at(&s, 9);
    assert!(!s.with_engine(leecher, |e, now| e.set_piece_deadline(a, t9, now)));
    assert_eq!(
        s.run_until_complete(Duration::from_secs(120)),
        Outcome::Reached(s.now())
    );
}
