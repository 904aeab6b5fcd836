//! The iterative lookup of BEP 5 (Kademlia's node lookup): query the closest known nodes, [`ALPHA`] at a
//! time, learn closer nodes from their answers, and stop when the [`K`] closest nodes seen have all
//! answered (or failed). A `get_peers` lookup also keeps each answering node's token, so the caller
//! can announce to the closest ones afterwards.
//!
//! This type only decides whom to ask next; the [`super::Dht`] sends the queries, matches answers and
//! times them out (a query outstanding for [`super::SLOW_QUERY`] frees its slot for another, so dead
//! nodes do not stall the lookup).

use std::net::SocketAddr;

use super::krpc::CompactNode;
use super::node_id::NodeId;
use super::routing::K;

/// Queries in flight at once per lookup.
pub const ALPHA: usize = 3;
/// Most candidates remembered (the closest are kept).
pub const MAX_CANDIDATES: usize = 64;
/// Most queries one lookup sends in all, a backstop against endless churn.
pub const MAX_QUERIES: usize = 256;
/// Most addresses without a known id (bootstrap routers) one lookup starts from.
pub const MAX_SEEDS: usize = 16;

/// Whom to query next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A node with a known id.
    Node(NodeId, SocketAddr),
    /// An address whose id we do not know yet (a bootstrap router).
    Addr(SocketAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Fresh,
    InFlight,
    Answered(Option<Vec<u8>>),
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    id: NodeId,
    addr: SocketAddr,
    state: State,
}

/// One iterative lookup towards `target`.
#[derive(Debug, Clone)]
pub struct Lookup {
    target: NodeId,
    /// Sorted by distance to `target`, at most [`MAX_CANDIDATES`].
    candidates: Vec<Candidate>,
    seeds: Vec<SocketAddr>,
    /// Queries counted against [`ALPHA`] (slow ones no longer count).
    active: usize,
    sent: usize,
}

impl Lookup {
    /// A lookup starting from `nodes` (from the routing table) and `seeds` (addresses without ids).
    pub fn new(target: NodeId, nodes: &[(NodeId, SocketAddr)], seeds: &[SocketAddr]) -> Lookup {
        let mut l = Lookup {
            target,
            candidates: Vec::new(),
            seeds: seeds.iter().take(MAX_SEEDS).copied().collect(),
            active: 0,
            sent: 0,
        };
        for &(id, addr) in nodes {
            l.add(id, addr);
        }
        l
    }

    /// True until the first query is handed out.
    pub fn not_started(&self) -> bool {
        self.sent == 0
    }

    /// Adds starting nodes (from the routing table, once it has some).
    pub fn add_nodes(&mut self, nodes: &[(NodeId, SocketAddr)]) {
        for &(id, addr) in nodes {
            self.add(id, addr);
        }
    }

    /// The id or info hash looked up.
    pub fn target(&self) -> NodeId {
        self.target
    }

    fn add(&mut self, id: NodeId, addr: SocketAddr) {
        if self.candidates.iter().any(|c| c.id == id || c.addr == addr) {
            return;
        }
        let d = id.distance(&self.target);
        let pos = self
            .candidates
            .partition_point(|c| c.id.distance(&self.target) < d);
        if pos >= MAX_CANDIDATES {
            return;
        }
        self.candidates.insert(
            pos,
            Candidate {
                id,
                addr,
                state: State::Fresh,
            },
        );
        self.candidates.truncate(MAX_CANDIDATES);
    }

    /// The next node to query, if a slot is free and a node worth asking remains; the caller must
    /// report its answer with [`Lookup::answered`] or its failure with [`Lookup::failed`].
    pub fn next_query(&mut self) -> Option<Target> {
        if self.active >= ALPHA || self.sent >= MAX_QUERIES {
            return None;
        }
        if let Some(addr) = self.seeds.pop() {
            self.active += 1;
            self.sent += 1;
            return Some(Target::Addr(addr));
        }
        let c = self
            .candidates
            .iter_mut()
            .filter(|c| c.state != State::Failed)
            .take(K)
            .find(|c| c.state == State::Fresh)?;
        c.state = State::InFlight;
        self.active += 1;
        self.sent += 1;
        Some(Target::Node(c.id, c.addr))
    }

    /// A query has been outstanding long: it no longer holds one of the [`ALPHA`] slots.
    pub fn slow(&mut self) {
        self.active = self.active.saturating_sub(1);
    }

    /// `target` (as returned by [`Lookup::next_query`]) answered as node `id` with `nodes` and maybe a
    /// `token`. `was_slow`: [`Lookup::slow`] was called for this query.
    pub fn answered(
        &mut self,
        target: Target,
        id: NodeId,
        nodes: &[CompactNode],
        token: Option<Vec<u8>>,
        was_slow: bool,
    ) {
        if !was_slow {
            self.active = self.active.saturating_sub(1);
        }
        let addr = match target {
            Target::Node(_, addr) | Target::Addr(addr) => addr,
        };
        if matches!(target, Target::Addr(_)) {
            self.add(id, addr);
        }
        if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == addr) {
            c.state = State::Answered(token);
        }
        for n in nodes {
            self.add(n.id, n.addr);
        }
    }

    /// The query to `target` timed out or was refused.
    pub fn failed(&mut self, target: Target, was_slow: bool) {
        if !was_slow {
            self.active = self.active.saturating_sub(1);
        }
        if let Target::Node(id, _) = target {
            if let Some(c) = self.candidates.iter_mut().find(|c| c.id == id) {
                c.state = State::Failed;
            }
        }
    }

    /// True when nothing is in flight and the [`K`] closest live candidates have all answered (or the
    /// query budget is spent).
    pub fn is_done(&self) -> bool {
        let in_flight = self.candidates.iter().any(|c| c.state == State::InFlight);
        if self.active > 0 || in_flight || !self.seeds.is_empty() {
            return false;
        }
        self.sent >= MAX_QUERIES
            || !self
                .candidates
                .iter()
                .filter(|c| c.state != State::Failed)
                .take(K)
                .any(|c| c.state == State::Fresh)
    }

    /// The closest nodes that answered with a token, at most [`K`]: where to send `announce_peer`.
    pub fn announce_targets(&self) -> Vec<(NodeId, SocketAddr, Vec<u8>)> {
        self.candidates
            .iter()
            .filter_map(|c| match &c.state {
                State::Answered(Some(t)) => Some((c.id, c.addr, t.clone())),
                _ => None,
            })
            .take(K)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(b: u8) -> (NodeId, SocketAddr) {
        let mut id = [0u8; 20];
        id[0] = b;
        (NodeId(id), SocketAddr::from(([10, 0, 0, b], 1000)))
    }

    #[test]
    fn queries_alpha_at_a_time_and_finishes_when_closest_answered() {
        let target = NodeId([0; 20]);
        let start: Vec<_> = (100..110).map(node).collect();
        let mut l = Lookup::new(target, &start, &[]);
        let q: Vec<Target> = std::iter::from_fn(|| l.next_query()).collect();
        assert_eq!(q.len(), ALPHA);
        assert!(!l.is_done());
        // The first answer brings closer nodes; they are asked next.
        let closer: Vec<CompactNode> = (1..9)
            .map(node)
            .map(|(id, addr)| CompactNode { id, addr })
            .collect();
        l.answered(q[0], start[0].0, &closer, Some(b"tok".to_vec()), false);
        let Some(Target::Node(id, _)) = l.next_query() else {
            panic!("expected a query")
        };
        assert_eq!(id, node(1).0);
        // Answer everything until done; each node answers with nothing new.
        l.failed(q[1], false);
        l.slow();
        l.answered(q[2], start[2].0, &[], None, true);
        l.answered(
            Target::Node(id, node(1).1),
            id,
            &[],
            Some(b"t1".to_vec()),
            false,
        );
        while let Some(t) = l.next_query() {
            let Target::Node(id, _) = t else { panic!() };
            l.answered(t, id, &[], Some(vec![1]), false);
        }
        assert!(l.is_done());
        let targets = l.announce_targets();
        assert_eq!(targets.len(), K);
        assert_eq!(targets[0].0, node(1).0);
        assert!(targets.iter().all(|t| t.0.0[0] < 9));
    }
}
