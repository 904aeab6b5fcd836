//! Tests of the choking algorithm (BEP 3 choking): regular slots by rate, snubbing, the optimistic
//! slot and its rotation, and independence from input order, each rule as a table of peers.

use super::*;

/// A candidate from a table row: `flags` holds `i` interested, `s` snubbed, `n` newly connected,
/// `u` unchoked, `o` optimistic (which implies unchoked).
fn peer(key: u32, rate: u64, flags: &str) -> Candidate<u32> {
    assert!(
        flags.chars().all(|f| "isnuo".contains(f)),
        "unknown flag in {flags:?}"
    );
    let has = |f| flags.contains(f);
    Candidate {
        key,
        interested: has('i'),
        rate,
        snubbed: has('s'),
        newly_connected: has('n'),
        unchoked: has('u') || has('o'),
        optimistic: has('o'),
    }
}

fn peers(rows: &[(u32, u64, &str)]) -> Vec<Candidate<u32>> {
    rows.iter()
        .map(|&(key, rate, flags)| peer(key, rate, flags))
        .collect()
}

/// Runs [`choose`], checks the guarantees stated in the module documentation, and returns the
/// decision.
fn run(cands: &[Candidate<u32>], slots: usize, rotate: bool, random: u64) -> Decision<u32> {
    let d = choose(cands, slots, rotate, random);
    let find = |k: u32| cands.iter().find(|c| c.key == k).unwrap();
    assert!(d.regular.len() <= slots, "{d:?}: more than {slots} regular");
    for (i, &k) in d.regular.iter().enumerate() {
        let c = find(k);
        assert!(c.interested && !c.snubbed, "{d:?}: {c:?} is not eligible");
        assert!(!d.regular[..i].contains(&k), "{d:?}: {k} twice");
    }
    if let Some(k) = d.optimistic {
        assert!(find(k).interested, "{d:?}: optimistic {k} not interested");
        assert!(!d.regular.contains(&k), "{d:?}: optimistic {k} is regular");
    }
    let reversed: Vec<_> = cands.iter().rev().copied().collect();
    assert_eq!(choose(&reversed, slots, rotate, random), d, "input order");
    d
}

struct Case {
    name: &'static str,
    peers: &'static [(u32, u64, &'static str)],
    slots: usize,
    rotate: bool,
    random: u64,
    regular: &'static [u32],
    optimistic: Option<u32>,
}

fn check(cases: &[Case]) {
    for c in cases {
        let d = run(&peers(c.peers), c.slots, c.rotate, c.random);
        assert_eq!(d.regular, c.regular, "{}: regular", c.name);
        assert_eq!(d.optimistic, c.optimistic, "{}: optimistic", c.name);
    }
}

#[test]
fn regular_slots_go_to_the_fastest_interested_peers() {
    check(&[
        Case {
            name: "top three of five, best first",
            peers: &[
                (1, 100, "i"),
                (2, 500, "i"),
                (3, 300, "i"),
                (4, 50, "i"),
                (5, 400, "i"),
            ],
            slots: 3,
            rotate: true,
            random: 0,
            regular: &[2, 5, 3],
            // Left over: 1 and 4, equal weight; 0 % 2 picks the smaller key.
            optimistic: Some(1),
        },
        Case {
            name: "a fast uninterested peer gets nothing",
            peers: &[(1, 9_000, ""), (2, 10, "i"), (3, 20, "i")],
            slots: 1,
            rotate: true,
            random: 0,
            regular: &[3],
            optimistic: Some(2),
        },
        Case {
            name: "a slow peer already unchoked loses its slot to a faster one",
            peers: &[(1, 10, "iu"), (2, 20, "iu"), (3, 30, "i")],
            slots: 2,
            rotate: true,
            random: 0,
            regular: &[3, 2],
            optimistic: Some(1),
        },
        Case {
            name: "zero rates still fill the slots, in an order drawn by lot",
            peers: &[(7, 0, "i"), (3, 0, "i")],
            slots: 4,
            rotate: true,
            random: 0,
            regular: &[7, 3],
            optimistic: None,
        },
    ]);
}

#[test]
fn a_peer_that_gave_nothing_does_not_keep_a_regular_slot_for_free() {
    // Peer 1 connected first and holds the slot, but neither has sent us anything: the slot is
    // drawn by lot each round, so both win about half the rounds.
    let peers = peers(&[(1, 0, "iu"), (2, 0, "i")]);
    let wins = (0..1000u64)
        .filter(|&r| choose(&peers, 1, false, r).regular == [1])
        .count();
    assert!(
        (400..=600).contains(&wins),
        "holder won {wins} of 1000 rounds"
    );
    // With any rate at all, the holder keeps a tie (stability).
    let paying: Vec<_> = peers.iter().map(|&c| Candidate { rate: 5, ..c }).collect();
    assert!((0..100u64).all(|r| choose(&paying, 1, false, r).regular == [1]));
}

#[test]
fn snubbed_peers_only_get_the_optimistic_slot() {
    check(&[
        Case {
            name: "fastest peer is snubbed",
            peers: &[(1, 1_000, "is"), (2, 200, "i"), (3, 100, "i")],
            slots: 2,
            rotate: true,
            random: 0,
            regular: &[2, 3],
            optimistic: Some(1),
        },
        Case {
            name: "all snubbed: no regular, one optimistic",
            peers: &[(1, 10, "is"), (2, 20, "is")],
            slots: 4,
            rotate: true,
            random: 1,
            regular: &[],
            optimistic: Some(2),
        },
        Case {
            name: "a snubbed optimistic holder keeps the slot between rotations",
            peers: &[(1, 0, "iso"), (2, 50, "i"), (3, 60, "i")],
            slots: 1,
            rotate: false,
            random: 0,
            regular: &[3],
            optimistic: Some(1),
        },
    ]);
}

#[test]
fn rate_ties_favour_unchoked_peers_then_smaller_keys() {
    check(&[
        Case {
            name: "the unchoked peer keeps its slot",
            peers: &[(1, 100, "i"), (2, 100, "iu"), (3, 100, "i")],
            slots: 1,
            rotate: true,
            random: 0,
            regular: &[2],
            optimistic: Some(1),
        },
        Case {
            name: "the optimistic holder counts as unchoked",
            peers: &[(1, 100, "i"), (2, 100, "io")],
            slots: 1,
            rotate: true,
            random: 0,
            regular: &[2],
            optimistic: Some(1),
        },
        Case {
            name: "no one unchoked: smaller key first",
            peers: &[(9, 100, "i"), (4, 100, "i"), (6, 100, "i")],
            slots: 2,
            rotate: true,
            random: 0,
            regular: &[4, 6],
            optimistic: Some(9),
        },
        Case {
            name: "both unchoked: smaller key first",
            peers: &[(9, 100, "iu"), (4, 100, "iu"), (6, 100, "i")],
            slots: 1,
            rotate: true,
            random: 0,
            regular: &[4],
            optimistic: Some(6),
        },
        Case {
            name: "rate beats being unchoked",
            peers: &[(1, 100, "iu"), (2, 101, "i")],
            slots: 1,
            rotate: true,
            random: 0,
            regular: &[2],
            optimistic: Some(1),
        },
    ]);
}

#[test]
fn fewer_or_no_interested_peers() {
    check(&[
        Case {
            name: "fewer interested than slots: all regular, nobody left over",
            peers: &[(1, 10, "i"), (2, 20, "i"), (3, 999, "")],
            slots: 4,
            rotate: true,
            random: 5,
            regular: &[2, 1],
            optimistic: None,
        },
        Case {
            name: "nobody interested",
            peers: &[(1, 10, "u"), (2, 20, "o"), (3, 30, "n")],
            slots: 4,
            rotate: true,
            random: 5,
            regular: &[],
            optimistic: None,
        },
        Case {
            name: "no candidates at all",
            peers: &[],
            slots: 4,
            rotate: false,
            random: 5,
            regular: &[],
            optimistic: None,
        },
    ]);
}

#[test]
fn optimistic_holder_is_kept_between_rotations() {
    check(&[
        Case {
            name: "kept although others are faster or new",
            peers: &[(1, 0, "io"), (2, 10, "in"), (3, 20, "in"), (4, 30, "i")],
            slots: 1,
            rotate: false,
            random: 0,
            regular: &[4],
            optimistic: Some(1),
        },
        Case {
            name: "holder lost interest: a new draw",
            peers: &[(1, 0, "o"), (2, 10, "i"), (3, 20, "i")],
            slots: 1,
            rotate: false,
            random: 0,
            regular: &[3],
            optimistic: Some(2),
        },
        Case {
            name: "holder earned a regular slot: the optimistic slot goes to another",
            peers: &[(1, 900, "io"), (2, 10, "i"), (3, 20, "i")],
            slots: 1,
            rotate: false,
            random: 0,
            regular: &[1],
            optimistic: Some(2),
        },
        Case {
            name: "no holder: a draw even without rotation",
            peers: &[(1, 0, "i"), (2, 10, "i"), (3, 20, "i")],
            slots: 1,
            rotate: false,
            random: 1,
            regular: &[3],
            optimistic: Some(2),
        },
    ]);
}

#[test]
fn rotation_moves_the_optimistic_slot_away_from_the_holder() {
    // The holder (1) would win every draw below if it were in the pool, since it has the smallest key.
    for random in 0..10 {
        let d = run(
            &peers(&[(1, 0, "io"), (2, 0, "i"), (3, 0, "i")]),
            0,
            true,
            random,
        );
        assert_ne!(d.optimistic, Some(1), "random {random}");
        assert!(d.optimistic.is_some());
    }
    check(&[
        Case {
            name: "the holder is the only one left over: it stays",
            peers: &[(1, 0, "io"), (2, 50, "i")],
            slots: 1,
            rotate: true,
            random: 7,
            regular: &[2],
            optimistic: Some(1),
        },
        Case {
            name: "the only other peer is snubbed: it still gets the turn",
            peers: &[(1, 0, "io"), (2, 50, "i"), (3, 999, "is")],
            slots: 1,
            rotate: true,
            random: 7,
            regular: &[2],
            optimistic: Some(3),
        },
    ]);
}

#[test]
fn draw_walks_cumulative_weights_in_key_order() {
    // Pool in key order: 1 (new, weight 3), 2 (1), 5 (new, 3), 8 (1): total 8.
    let cands = peers(&[(8, 0, "i"), (5, 0, "in"), (2, 0, "i"), (1, 0, "in")]);
    let table: [(u64, u32); 10] = [
        (0, 1),
        (1, 1),
        (2, 1),
        (3, 2),
        (4, 5),
        (5, 5),
        (6, 5),
        (7, 8),
        (8, 1),
        (u64::MAX, 8), // u64::MAX % 8 == 7
    ];
    for (random, expected) in table {
        let d = run(&cands, 0, true, random);
        assert_eq!(d.optimistic, Some(expected), "random {random}");
    }
}

#[test]
fn newly_connected_peers_win_three_times_as_often() {
    // One new peer among `old` others: over every value of `random` in k full cycles of the total
    // weight, the new peer wins exactly 3 / (3 + old) of the draws and each old peer 1 / (3 + old).
    for old in 0..6u32 {
        let mut rows = vec![(100, 0, "in")];
        rows.extend((0..old).map(|k| (k, 0, "i")));
        let cands = peers(&rows);
        let total = u64::from(3 + old);
        let cycles = 4;
        let mut wins = std::collections::BTreeMap::<u32, u64>::new();
        for random in 0..total * cycles {
            let winner = choose(&cands, 0, true, random).optimistic.unwrap();
            *wins.entry(winner).or_default() += 1;
        }
        assert_eq!(wins[&100], 3 * cycles, "{old} old peers: new peer");
        for k in 0..old {
            assert_eq!(wins[&k], cycles, "{old} old peers: peer {k}");
        }
    }
}

#[test]
fn zero_slots_leave_only_the_optimistic_unchoke() {
    check(&[
        Case {
            name: "no regular slots",
            peers: &[(1, 500, "iu"), (2, 100, "i")],
            slots: 0,
            rotate: true,
            random: 1,
            regular: &[],
            optimistic: Some(2),
        },
        Case {
            name: "a snubbed peer can still be optimistic",
            peers: &[(1, 500, "is")],
            slots: 0,
            rotate: true,
            random: 0,
            regular: &[],
            optimistic: Some(1),
        },
        Case {
            name: "nobody interested",
            peers: &[(1, 500, "u")],
            slots: 0,
            rotate: true,
            random: 0,
            regular: &[],
            optimistic: None,
        },
    ]);
}

/// Calls `f` with every permutation of `items` (Heap's algorithm).
fn permutations<T: Clone>(items: &mut [T], n: usize, f: &mut impl FnMut(&[T])) {
    if n <= 1 {
        f(items);
        return;
    }
    for i in 0..n - 1 {
        permutations(items, n - 1, f);
        let j = if n % 2 == 0 { i } else { 0 };
        items.swap(j, n - 1);
    }
    permutations(items, n - 1, f);
}

#[test]
fn result_does_not_depend_on_input_order() {
    // Every rule at once: rate ties, an unchoked tie-winner, a snubbed peer, new peers, an optimistic
    // holder and an uninterested peer.
    let base = peers(&[
        (1, 100, "iu"),
        (2, 100, "i"),
        (3, 300, "is"),
        (4, 0, "in"),
        (5, 0, "io"),
        (6, 50, "in"),
        (7, 400, ""),
    ]);
    for slots in [0, 1, 2, 7] {
        for rotate in [false, true] {
            for random in 0..8 {
                let expected = choose(&base, slots, rotate, random);
                let mut count = 0;
                permutations(&mut base.clone(), base.len(), &mut |p| {
                    count += 1;
                    assert_eq!(choose(p, slots, rotate, random), expected);
                });
                assert_eq!(count, 5040);
            }
        }
    }
}
