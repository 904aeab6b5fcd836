//! The routing table (BEP 5, "Routing Table"): k-buckets of at most [`K`] nodes covering the id space,
//! where only the bucket that holds our own id splits; node freshness (good, questionable, bad) and the
//! replacement of bad nodes from a small cache per bucket.
//!
//! Buckets are kept as a list where bucket `i` (for all but the last) holds the nodes sharing exactly `i`
//! leading bits with our id, and the last bucket holds every node sharing at least that many: that last
//! bucket is the one "containing our id", and splitting it appends a bucket. This is the same tree as
//! BEP 5's ranges, stored flat.

use std::net::SocketAddr;
use std::time::Duration;

use crate::time::Instant;

use super::node_id::NodeId;

/// Bucket capacity (BEP 5: K = 8).
pub const K: usize = 8;
/// A node is good if it answered us, or queried us after having answered once, within this time
/// (BEP 5: 15 minutes); a bucket untouched this long is refreshed.
pub const FRESHNESS: Duration = Duration::from_secs(15 * 60);
/// Failed queries in a row after which a node is bad.
pub const MAX_FAILURES: u8 = 2;
/// Replacement candidates remembered per bucket.
pub const REPLACEMENTS: usize = 8;

/// A node in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Its id.
    pub id: NodeId,
    /// Its UDP address.
    pub addr: SocketAddr,
    /// When it last answered one of our queries (`None`: never, for nodes only heard from).
    pub last_response: Option<Instant>,
    /// When it last queried us.
    pub last_query: Option<Instant>,
    /// Queries in a row that timed out.
    pub failures: u8,
}

/// BEP 5's classification of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Answered within [`FRESHNESS`], or answered once and queried us within it.
    Good,
    /// Neither good nor bad: worth a ping before relying on it.
    Questionable,
    /// Failed [`MAX_FAILURES`] queries in a row: replaceable.
    Bad,
}

impl Node {
    /// The node's status at `now`.
    pub fn status(&self, now: Instant) -> Status {
        if self.failures >= MAX_FAILURES {
            return Status::Bad;
        }
        let fresh =
            |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < FRESHNESS);
        if fresh(self.last_response) || (self.last_response.is_some() && fresh(self.last_query)) {
            Status::Good
        } else {
            Status::Questionable
        }
    }
}

#[derive(Debug, Clone)]
struct Bucket {
    nodes: Vec<Node>,
    replacements: Vec<Node>,
    last_changed: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket {
            nodes: Vec::with_capacity(K),
            replacements: Vec::new(),
            last_changed: now,
        }
    }
}

/// What [`RoutingTable::insert`] did with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Added to a bucket, or updated in place.
    Added,
    /// Its bucket is full of nodes that are not bad: kept as a replacement candidate. The caller may
    /// ping the bucket's questionable node given here, so that it turns bad (and is replaced) or good.
    Full(Option<(NodeId, SocketAddr)>),
    /// Refused: our own id, or its address is already taken by another id.
    Refused,
}

/// The routing table of one node.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    own: NodeId,
    buckets: Vec<Bucket>,
}

impl RoutingTable {
    /// An empty table around `own`.
    pub fn new(own: NodeId, now: Instant) -> RoutingTable {
        RoutingTable {
            own,
            buckets: vec![Bucket::new(now)],
        }
    }

    /// Our own id.
    pub fn own_id(&self) -> NodeId {
        self.own
    }

    fn bucket_index(&self, id: &NodeId) -> usize {
        self.own.common_prefix_len(id).min(self.buckets.len() - 1)
    }

    /// Number of buckets (1..=160).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Number of nodes in all buckets (replacements not counted).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    /// True when no bucket holds a node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records that `id` at `addr` answered a query (`responded`) or sent us one, at `now`, and adds it
    /// if there is room: a free slot, a split of the bucket holding our id, or a bad node to replace.
    pub fn insert(
        &mut self,
        id: NodeId,
        addr: SocketAddr,
        responded: bool,
        now: Instant,
    ) -> Inserted {
        if id == self.own {
            return Inserted::Refused;
        }
        // One entry per address: a second id claiming a known address is ignored (a node that changed
        // its id will be replaced once the old entry goes bad).
        if let Some(known) = self.find_by_addr(addr) {
            if known != id {
                return Inserted::Refused;
            }
        }
        loop {
            let last = self.buckets.len() - 1;
            let i = self.bucket_index(&id);
            let bucket = &mut self.buckets[i];
            if let Some(n) = bucket.nodes.iter_mut().find(|n| n.id == id) {
                if n.addr != addr {
                    return Inserted::Refused;
                }
                touch(n, responded, now);
                bucket.last_changed = now;
                return Inserted::Added;
            }
            let mut node = Node {
                id,
                addr,
                last_response: None,
                last_query: None,
                failures: 0,
            };
            touch(&mut node, responded, now);
            if bucket.nodes.len() < K {
                bucket.nodes.push(node);
                bucket.replacements.retain(|r| r.id != id);
                bucket.last_changed = now;
                return Inserted::Added;
            }
            if i == last && last < 159 {
                self.split(now);
                continue;
            }
            if let Some(bad) = bucket
                .nodes
                .iter_mut()
                .find(|n| n.status(now) == Status::Bad)
            {
                *bad = node;
                bucket.last_changed = now;
                return Inserted::Added;
            }
            // Keep it as a candidate (only nodes that answered: they are the ones worth promoting).
            if responded {
                bucket.replacements.retain(|r| r.id != id && r.addr != addr);
                if bucket.replacements.len() >= REPLACEMENTS {
                    bucket.replacements.remove(0);
                }
                bucket.replacements.push(node);
            }
            let ping = bucket
                .nodes
                .iter()
                .filter(|n| n.status(now) == Status::Questionable)
                .min_by_key(|n| n.last_response)
                .map(|n| (n.id, n.addr));
            return Inserted::Full(ping);
        }
    }

    /// Splits the last bucket (the one holding our id) in two.
    fn split(&mut self, now: Instant) {
        let depth = self.buckets.len() - 1;
        let own = self.own;
        let mut new = Bucket::new(now);
        let old = self.buckets.last_mut().expect("at least one bucket");
        let (stay, go): (Vec<Node>, Vec<Node>) = old
            .nodes
            .drain(..)
            .partition(|n| own.common_prefix_len(&n.id) == depth);
        old.nodes = stay;
        new.nodes = go;
        let (stay, go): (Vec<Node>, Vec<Node>) = old
            .replacements
            .drain(..)
            .partition(|n| own.common_prefix_len(&n.id) == depth);
        old.replacements = stay;
        new.replacements = go;
        self.buckets.push(new);
    }

    /// Records a query to `id` that timed out; a node that becomes bad is replaced by the freshest
    /// replacement candidate of its bucket, if any.
    pub fn failed(&mut self, id: &NodeId) {
        let i = self.bucket_index(id);
        let bucket = &mut self.buckets[i];
        let Some(pos) = bucket.nodes.iter().position(|n| n.id == *id) else {
            return;
        };
        let node = &mut bucket.nodes[pos];
        node.failures = node.failures.saturating_add(1);
        if node.failures >= MAX_FAILURES {
            if let Some(r) = bucket.replacements.pop() {
                bucket.nodes[pos] = r;
            }
        }
    }

    fn find_by_addr(&self, addr: SocketAddr) -> Option<NodeId> {
        self.buckets
            .iter()
            .flat_map(|b| &b.nodes)
            .find(|n| n.addr == addr)
            .map(|n| n.id)
    }

    /// The node with `id`, if in the table.
    pub fn get(&self, id: &NodeId) -> Option<&Node> {
        self.buckets[self.bucket_index(id)]
            .nodes
            .iter()
            .find(|n| n.id == *id)
    }

    /// Up to `count` nodes that are not bad, closest to `target` first.
    pub fn closest(&self, target: &NodeId, count: usize, now: Instant) -> Vec<Node> {
        let mut all: Vec<Node> = self
            .buckets
            .iter()
            .flat_map(|b| &b.nodes)
            .filter(|n| n.status(now) != Status::Bad)
            .copied()
            .collect();
        all.sort_by_key(|n| n.id.distance(target));
        all.truncate(count);
        all
    }

    /// Every node in the table (for persistence and diagnostics).
    pub fn nodes(&self) -> impl Iterator<Item = &Node> + '_ {
        self.buckets.iter().flat_map(|b| &b.nodes)
    }

    /// For each bucket not changed within [`FRESHNESS`] before `now`, a random target in its range to
    /// look up (BEP 5, bucket refresh); marks those buckets as changed now so they are not returned again
    /// before the next period.
    pub fn refresh_targets(&mut self, now: Instant, rng: &mut impl rand::RngCore) -> Vec<NodeId> {
        let last = self.buckets.len() - 1;
        let mut out = Vec::new();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            if now.saturating_duration_since(b.last_changed) >= FRESHNESS {
                b.last_changed = now;
                // The last bucket covers every longer prefix; any target in it will do.
                let prefix = if i == last { i.min(159) } else { i };
                out.push(self.own.random_with_prefix(prefix, rng));
            }
        }
        out
    }
}

fn touch(n: &mut Node, responded: bool, now: Instant) {
    if responded {
        n.last_response = Some(now);
        n.failures = 0;
    } else {
        n.last_query = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881))
    }

    /// An id sharing exactly `prefix` bits with `own`, made distinct by `n`.
    fn id_at(own: &NodeId, prefix: usize, n: u8) -> NodeId {
        let mut id = own.random_with_prefix(
            prefix,
            &mut <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(0x5eed),
        );
        id.0[19] = n;
        // Keep the prefix intact for prefixes reaching the last byte (not used by these tests).
        id
    }

    #[test]
    fn splits_only_the_bucket_with_our_id() {
        let now = Instant::ZERO;
        let own = NodeId([0; 20]);
        let mut t = RoutingTable::new(own, now);
        // 8 far nodes (prefix 0) fill the single bucket.
        for n in 0..8 {
            assert_eq!(
                t.insert(id_at(&own, 0, n), addr(n.into()), true, now),
                Inserted::Added
            );
        }
        assert_eq!(t.bucket_count(), 1);
        // A ninth node close to us splits the bucket: the far ones stay in bucket 0.
        assert_eq!(
            t.insert(id_at(&own, 5, 100), addr(100), true, now),
            Inserted::Added
        );
        assert_eq!(t.bucket_count(), 2);
        assert_eq!(t.len(), 9);
        // Bucket 0 is full and no longer ours: a ninth far node does not split, it waits as replacement.
        assert!(matches!(
            t.insert(id_at(&own, 0, 200), addr(200), true, now),
            Inserted::Full(None)
        ));
        assert_eq!(t.bucket_count(), 2);
        assert_eq!(t.len(), 9);
        // Many close nodes split again and again, never beyond what the ids need.
        for n in 0..40u8 {
            t.insert(
                id_at(&own, 1 + (n as usize % 20), n),
                addr(1000 + u32::from(n)),
                true,
                now,
            );
        }
        assert!(
            t.bucket_count() > 2 && t.bucket_count() <= 22,
            "{}",
            t.bucket_count()
        );
        assert!(t.len() <= t.bucket_count() * K);
    }

    #[test]
    fn bad_nodes_are_replaced() {
        let now = Instant::ZERO;
        let own = NodeId([0xff; 20]);
        let mut t = RoutingTable::new(own, now);
        // Fill bucket 0 after forcing a split, so it cannot split any more.
        t.insert(id_at(&own, 3, 0), addr(999), true, now);
        for n in 0..8 {
            t.insert(id_at(&own, 0, n), addr(n.into()), true, now);
        }
        t.insert(id_at(&own, 4, 1), addr(998), true, now);
        let far: Vec<NodeId> = t
            .closest(&NodeId([0; 20]), 8, now)
            .iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(far.len(), 8);
        // A full bucket of good nodes: the newcomer is a replacement candidate.
        let newcomer = id_at(&own, 0, 77);
        assert_eq!(
            t.insert(newcomer, addr(77), true, now),
            Inserted::Full(None)
        );
        // After FRESHNESS the nodes are questionable: we are told whom to ping.
        let later = now + FRESHNESS;
        assert!(matches!(
            t.insert(newcomer, addr(77), true, later),
            Inserted::Full(Some(_))
        ));
        // One node fails twice: it is bad and the candidate takes its place.
        t.failed(&far[0]);
        assert!(t.get(&far[0]).is_some());
        t.failed(&far[0]);
        assert!(t.get(&far[0]).is_none());
        assert_eq!(t.get(&newcomer).map(|n| n.addr), Some(addr(77)));
        // Status per BEP 5.
        let n = *t.get(&newcomer).unwrap();
        assert_eq!(n.status(later), Status::Good);
        assert_eq!(n.status(later + FRESHNESS), Status::Questionable);
    }

    #[test]
    fn refresh_and_identity_rules() {
        let now = Instant::ZERO;
        let own = NodeId([0x11; 20]);
        let mut t = RoutingTable::new(own, now);
        assert_eq!(t.insert(own, addr(1), true, now), Inserted::Refused);
        let a = id_at(&own, 0, 1);
        assert_eq!(t.insert(a, addr(1), true, now), Inserted::Added);
        // Another id at the same address, or the same id at another address: refused.
        assert_eq!(
            t.insert(id_at(&own, 0, 2), addr(1), true, now),
            Inserted::Refused
        );
        assert_eq!(t.insert(a, addr(2), true, now), Inserted::Refused);
        let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(0x5eed);
        assert!(t.refresh_targets(now, &mut rng).is_empty());
        let targets = t.refresh_targets(now + FRESHNESS, &mut rng);
        assert_eq!(targets.len(), 1);
        assert!(t.refresh_targets(now + FRESHNESS, &mut rng).is_empty());
    }
}
