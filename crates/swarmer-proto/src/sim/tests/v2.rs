//! Swarms of a v2 torrent (BEP 52): a seed that sends corrupt blocks is pinned by the merkle tree
//! and banned alone, and a peer that answers hash requests with false hashes is the one faulted;
//! the honest peers that filled the same pieces never lose trust. Every engine's invariants are
//! checked after every event.

use super::*;
use crate::torrent::Offence;

/// Runs a swarm of `witness` (first connected, so first asked), two seeds (an honest one and one
/// that corrupts every block it sends) and `leechers` leechers until the leechers complete.
fn run(witness: NodeConfig, leechers: usize) -> (Swarm, [NodeId; 3], Vec<NodeId>) {
    let mut s = Swarm::new_v2(layout(2 * MIB), 21);
    let witness = s.add_node(witness);
    let honest = s.add_node(NodeConfig::seed(MIB, MIB));
    let liar = s.add_node(NodeConfig {
        liar: true,
        ..NodeConfig::seed(MIB, MIB)
    });
    let leechers: Vec<NodeId> = (0..leechers)
        .map(|_| s.add_node(NodeConfig::leecher(MIB, MIB)))
        .collect();
    for &l in &leechers {
        for seed in [witness, honest, liar] {
            assert!(s.connect(l, seed, LATENCY));
        }
    }
    let outcome = s.run_until(Duration::from_secs(120), |s| {
        leechers.iter().all(|&l| s.engine(l).is_complete())
    });
    assert!(matches!(outcome, Outcome::Reached(_)), "{outcome:?}");
    (s, [witness, honest, liar], leechers)
}

#[test]
fn a_corrupt_seed_is_pinned_and_banned_and_honest_seeds_keep_their_trust() {
    let (s, [witness, honest, liar], leechers) = run(NodeConfig::seed(MIB, MIB), 3);
    let liar_ip = s.addr(liar).ip();
    for &l in &leechers {
        let events = s.events(l);
        let failed = events
            .iter()
            .filter(|(_, e)| matches!(e, Event::HashFailed { .. }))
            .count();
        assert!(
            failed >= 1,
            "the liar's blocks reached leecher {}",
            l.index()
        );
        assert!(s.engine(l).is_banned(liar_ip));
        assert!(
            s.closed(l)
                .iter()
                .any(|c| c.peer == liar && c.fault == PeerFault::Misbehaved(Offence::CorruptBlock))
        );
        for (_, e) in events {
            if let Event::BadBlocksPinned { peers, .. } = e {
                assert_eq!(peers, &vec![liar_ip], "only the liar is pinned");
            }
        }
        for other in [witness, honest] {
            let ip = s.addr(other).ip();
            assert!(!s.engine(l).is_banned(ip));
            assert!(
                s.engine(l).trust(ip) > 0,
                "honest peers never lose trust (leecher {})",
                l.index()
            );
        }
    }
}

#[test]
fn a_peer_answering_with_false_hashes_is_the_one_faulted() {
    let witness = NodeConfig {
        false_hashes: true,
        ..NodeConfig::seed(MIB, MIB)
    };
    let (s, [witness, honest, liar], leechers) = run(witness, 2);
    let (witness_ip, liar_ip) = (s.addr(witness).ip(), s.addr(liar).ip());
    for &l in &leechers {
        // The false witness is asked first and faulted; the next answer pins the liar.
        assert!(s.engine(l).is_banned(witness_ip));
        assert!(
            s.closed(l)
                .iter()
                .any(|c| c.peer == witness && c.fault == PeerFault::Misbehaved(Offence::BadHashes))
        );
        assert!(s.engine(l).is_banned(liar_ip));
        let honest_ip = s.addr(honest).ip();
        assert!(!s.engine(l).is_banned(honest_ip));
        assert!(s.engine(l).trust(honest_ip) > 0);
    }
}
