//! Tests of the [`Dht`] state machine: serving queries, tokens, rate limits, and whole networks of a few
//! hundred nodes passing datagrams in memory on a virtual clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use super::*;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 6881))
}

fn id_of(i: usize) -> NodeId {
    let mut b = [0u8; 20];
    b[..8].copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    b[8..16].copy_from_slice(&(i as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F).to_be_bytes());
    NodeId(b)
}

/// Sends `method` from a client at `from` to `dht` and returns the decoded reply, if any.
fn ask(dht: &mut Dht, from: SocketAddr, method: Method, now: Instant) -> Option<Message> {
    let q = Message {
        transaction: b"tt".to_vec(),
        version: None,
        ip: None,
        read_only: true,
        body: Body::Query(Query {
            id: NodeId([0x42; 20]),
            method,
        }),
    };
    dht.handle_packet(from, &q.encode(), now);
    let mut reply = None;
    while let Some((to, bytes)) = dht.poll_transmit() {
        if to == from {
            reply = Some(Message::decode(&bytes).expect("our replies decode"));
        }
    }
    reply
}

#[test]
fn serves_ping_find_node_and_announce_with_tokens() {
    let now = Instant::ZERO;
    let mut dht = Dht::new(id_of(0), Config::default(), 1, now);
    let client = addr(9);
    let r = ask(&mut dht, client, Method::Ping, now).unwrap();
    assert!(matches!(r.body, Body::Response(ref r) if r.id == id_of(0)));
    assert_eq!(r.ip, Some(client), "BEP 42 ip field echoes the requester");
    let ih = InfoHash([7; 20]);
    // A bad token is refused with error 203.
    let bad = Method::AnnouncePeer {
        info_hash: ih,
        port: 5000,
        implied_port: false,
        token: b"nope".to_vec(),
    };
    let r = ask(&mut dht, client, bad, now).unwrap();
    assert!(matches!(r.body, Body::Error { code: 203, .. }));
    assert_eq!(dht.stored_peers(&ih), 0);
    // get_peers hands out a token; announcing with it stores the peer.
    let r = ask(&mut dht, client, Method::GetPeers { info_hash: ih }, now).unwrap();
    let Body::Response(resp) = r.body else {
        panic!("no response")
    };
    let token = resp.token.unwrap();
    // The token is bound to the IP: another address cannot use it.
    let other = addr(10);
    let steal = Method::AnnouncePeer {
        info_hash: ih,
        port: 5000,
        implied_port: false,
        token: token.clone(),
    };
    assert!(matches!(
        ask(&mut dht, other, steal, now).unwrap().body,
        Body::Error { code: 203, .. }
    ));
    let good = Method::AnnouncePeer {
        info_hash: ih,
        port: 5000,
        implied_port: false,
        token,
    };
    assert!(matches!(
        ask(&mut dht, client, good, now).unwrap().body,
        Body::Response(_)
    ));
    let r = ask(&mut dht, other, Method::GetPeers { info_hash: ih }, now).unwrap();
    let Body::Response(resp) = r.body else {
        panic!("no response")
    };
    assert_eq!(resp.values, vec![SocketAddr::new(client.ip(), 5000)]);
    // Unknown methods get 204.
    let r = ask(&mut dht, client, Method::Unknown(b"vote".to_vec()), now).unwrap();
    assert!(matches!(r.body, Body::Error { code: 204, .. }));
    // Stored peers expire.
    dht.handle_timeout(now + PEER_TTL + MAINTENANCE);
    assert_eq!(dht.stored_peers(&ih), 0);
    dht.check_invariants();
}

#[test]
fn answers_are_rate_limited_per_ip_and_globally() {
    let now = Instant::ZERO;
    let config = Config {
        per_ip_rate: (10.0, 20.0),
        global_rate: (50.0, 60.0),
        enforce_node_id: true,
    };
    let mut dht = Dht::new(id_of(0), config, 1, now);
    let answered = |dht: &mut Dht, from: SocketAddr, n: usize, at: Instant| {
        (0..n)
            .filter(|_| ask(dht, from, Method::Ping, at).is_some())
            .count()
    };
    // One IP gets its burst, then nothing until tokens refill.
    assert_eq!(answered(&mut dht, addr(1), 100, now), 20);
    assert_eq!(answered(&mut dht, addr(1), 100, now), 0);
    let later = now + Duration::from_secs(1);
    assert_eq!(answered(&mut dht, addr(1), 100, later), 10);
    // Other IPs are served until the global bucket runs dry: a second refilled it to its burst of 60,
    // of which the first IP took 10.
    let others: usize = (2..10)
        .map(|i| answered(&mut dht, addr(i), 20, later))
        .sum();
    assert_eq!(others, 60 - 10);
    dht.check_invariants();
}

/// Malformed queries get KRPC error 203 with their transaction id, as libtorrent answers them:
/// no `a`, a 19-byte id, a `find_node` without `target`, a `get_peers` with a 19-byte info hash.
#[test]
fn malformed_queries_get_protocol_error_203() {
    let now = Instant::ZERO;
    let mut dht = Dht::new(id_of(0), Config::default(), 3, now);
    let id19 = format!("2:id19:{}", "a".repeat(19));
    let id20 = format!("2:id20:{}", "a".repeat(20));
    for (query, what) in [
        ("d1:q4:ping1:t2:xy1:y1:qe".to_owned(), "no `a`"),
        (format!("d1:ad{id19}e1:q4:ping1:t2:xy1:y1:qe"), "19-byte id"),
        (
            format!("d1:ad{id20}e1:q9:find_node1:t2:xy1:y1:qe"),
            "no target",
        ),
        (
            format!(
                "d1:ad{id20}9:info_hash19:{}e1:q9:get_peers1:t2:xy1:y1:qe",
                "b".repeat(19)
            ),
            "19-byte info hash",
        ),
    ] {
        dht.handle_packet(addr(7), query.as_bytes(), now);
        let (to, bytes) = dht
            .poll_transmit()
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(to, addr(7));
        let reply = Message::decode(&bytes).expect("our replies decode");
        assert_eq!(reply.transaction, b"xy", "{what}");
        assert!(
            matches!(&reply.body, Body::Error { code: error_code::PROTOCOL, message } if !message.is_empty()),
            "{what}: {:?}",
            reply.body
        );
        assert!(dht.poll_transmit().is_none());
    }
    // Without a transaction id there is nothing to answer to.
    dht.handle_packet(addr(7), b"d1:q4:ping1:y1:qe", now);
    assert!(dht.poll_transmit().is_none());
    assert!(
        dht.table().is_empty(),
        "malformed senders do not join the table"
    );
}

#[test]
fn garbage_and_floods_stay_bounded() {
    let now = Instant::ZERO;
    let mut dht = Dht::new(id_of(0), Config::default(), 3, now);
    let mut rng = SmallRng::seed_from_u64(9);
    for i in 0..5000 {
        let len = rng.gen_range(0..200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        dht.handle_packet(addr(i % 300), &bytes, now);
        // Responses to transactions we never opened are ignored.
        let fake = Message {
            transaction: vec![(i >> 8) as u8, i as u8],
            version: None,
            ip: None,
            read_only: false,
            body: Body::Response(Response {
                id: id_of(i),
                values: vec![addr(1)],
                ..Response::default()
            }),
        };
        dht.handle_packet(addr(i % 300), &fake.encode(), now);
    }
    assert!(dht.table().is_empty());
    // Searches beyond the bound end at once.
    for i in 0..(MAX_SEARCHES + 10) {
        dht.get_peers(InfoHash([i as u8; 20]), None, now);
    }
    dht.check_invariants();
    while dht.poll_transmit().is_some() {}
    let done = |dht: &mut Dht| {
        std::iter::from_fn(|| dht.poll_event())
            .filter(|e| matches!(e, Event::SearchDone { .. }))
            .count()
    };
    // Those beyond the bound end at once; the others wait JOIN_WAIT for nodes, then end.
    assert_eq!(done(&mut dht), 10);
    dht.handle_timeout(now + JOIN_WAIT);
    assert_eq!(done(&mut dht), MAX_SEARCHES);
}

/// A network of sans-IO nodes: datagrams delivered after a fixed latency, in time order, to nodes
/// that are alive; the clock advances to the next delivery or deadline.
struct Net {
    nodes: Vec<Dht>,
    index: HashMap<SocketAddr, usize>,
    alive: Vec<bool>,
    now: Instant,
    queue: BinaryHeap<Reverse<Datagram>>,
    seq: u64,
    events: Vec<(usize, Event)>,
    packets: u64,
}

/// A datagram in flight: delivery time, sequence (for a stable order), from, to, bytes.
type Datagram = (Instant, u64, usize, usize, Vec<u8>);

const LATENCY: Duration = Duration::from_millis(20);

impl Net {
    fn new() -> Net {
        Net {
            nodes: Vec::new(),
            index: HashMap::new(),
            alive: Vec::new(),
            now: Instant::ZERO,
            queue: BinaryHeap::new(),
            seq: 0,
            events: Vec::new(),
            packets: 0,
        }
    }

    fn add(&mut self, bootstrap: &[usize]) -> usize {
        let i = self.nodes.len();
        let mut dht = Dht::new(id_of(i), Config::default(), i as u64, self.now);
        let seeds: Vec<SocketAddr> = bootstrap.iter().map(|&b| addr(b)).collect();
        if !seeds.is_empty() {
            dht.bootstrap(&seeds, self.now);
        }
        self.nodes.push(dht);
        self.index.insert(addr(i), i);
        self.alive.push(true);
        self.collect(i);
        i
    }

    fn collect(&mut self, i: usize) {
        while let Some((to, bytes)) = self.nodes[i].poll_transmit() {
            if let Some(&j) = self.index.get(&to) {
                self.seq += 1;
                self.queue
                    .push(Reverse((self.now + LATENCY, self.seq, i, j, bytes)));
            }
        }
        while let Some(e) = self.nodes[i].poll_event() {
            self.events.push((i, e));
        }
    }

    /// Runs until `until` (virtual time).
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next_packet = self.queue.peek().map(|Reverse((t, ..))| *t);
            let next_timer = self
                .nodes
                .iter()
                .zip(&self.alive)
                .filter(|(_, a)| **a)
                .filter_map(|(n, _)| n.poll_timeout())
                .min();
            let next = [next_packet, next_timer].into_iter().flatten().min();
            let Some(next) = next.filter(|t| *t <= end) else {
                self.now = end;
                return;
            };
            self.now = self.now.max(next);
            if next_packet == Some(next) {
                let Reverse((_, _, from, to, bytes)) = self.queue.pop().expect("peeked");
                if self.alive[to] {
                    self.packets += 1;
                    self.nodes[to].handle_packet(addr(from), &bytes, self.now);
                    self.collect(to);
                }
            } else {
                for i in 0..self.nodes.len() {
                    if self.alive[i] && self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now)
                    {
                        self.nodes[i].handle_timeout(self.now);
                        self.collect(i);
                    }
                }
            }
        }
    }

    fn search_done(&self, node: usize, search: SearchId) -> Option<usize> {
        self.events.iter().find_map(|(n, e)| match e {
            Event::SearchDone {
                search: s,
                announced,
            } if *n == node && *s == search => Some(*announced),
            _ => None,
        })
    }

    fn peers_found(&self, node: usize, search: SearchId) -> HashSet<SocketAddr> {
        self.events
            .iter()
            .filter_map(|(n, e)| match e {
                Event::PeersFound { search: s, peers } if *n == node && *s == search => {
                    Some(peers.clone())
                }
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Runs until `node`'s `search` is done, at most `limit` of virtual time.
    fn run_search(&mut self, node: usize, search: SearchId, limit: Duration) -> usize {
        let end = self.now + limit;
        while self.now < end {
            if let Some(a) = self.search_done(node, search) {
                return a;
            }
            self.run_for(Duration::from_millis(100));
        }
        panic!("search {search:?} of node {node} did not finish in {limit:?}");
    }
}

#[test]
fn a_network_of_300_nodes_converges_and_finds_announced_peers() {
    let mut net = Net::new();
    net.add(&[]);
    for i in 1..300 {
        // Each node bootstraps from node 0 and a random earlier one, as real clients use routers.
        let other = (i * 7919) % i;
        net.add(&[0, other]);
        net.run_for(Duration::from_millis(50));
    }
    net.run_for(Duration::from_secs(30));
    for n in &net.nodes {
        n.check_invariants();
    }
    let table_sizes: Vec<usize> = net.nodes.iter().map(|n| n.table().len()).collect();
    let min = *table_sizes.iter().min().unwrap();
    assert!(min >= K, "every node knows at least K others (min {min})");

    // Node 17 announces itself on port 7000 for an info hash.
    let ih = InfoHash([0x5a; 20]);
    let announcer = 17;
    let s = net.nodes[announcer].get_peers(ih, Some(7000), net.now);
    net.collect(announcer);
    let announced = net.run_search(announcer, s, Duration::from_secs(60));
    assert!(announced >= K / 2, "announced to {announced} nodes");
    net.run_for(Duration::from_secs(1));
    // The nodes that stored it are the ones truly closest to the info hash: the lookup converged.
    let mut by_distance: Vec<usize> = (0..net.nodes.len()).collect();
    by_distance.sort_by_key(|&i| id_of(i).distance(&NodeId(ih.0)));
    let true_closest: Vec<usize> = by_distance
        .into_iter()
        .filter(|&i| i != announcer)
        .take(K)
        .collect();
    let stored_at_closest = true_closest
        .iter()
        .filter(|&&i| net.nodes[i].stored_peers(&ih) > 0)
        .count();
    assert!(
        stored_at_closest >= K - 2,
        "{stored_at_closest} of the {K} closest nodes stored the announce"
    );

    // Another node, far away in the id space, finds the announced peer.
    let seeker = 250;
    let s = net.nodes[seeker].get_peers(ih, None, net.now);
    net.collect(seeker);
    let announced = net.run_search(seeker, s, Duration::from_secs(60));
    assert_eq!(announced, 0, "no port, no announce");
    let expected = SocketAddr::new(addr(announcer).ip(), 7000);
    assert!(net.peers_found(seeker, s).contains(&expected));

    // A third of the nodes die (not the announcer's closest): lookups still finish and find the peer.
    for i in (1..net.nodes.len()).filter(|i| i % 3 == 0 && !true_closest.contains(i)) {
        net.alive[i] = false;
    }
    let seeker = 101;
    let s = net.nodes[seeker].get_peers(ih, None, net.now);
    net.collect(seeker);
    let started = net.now;
    net.run_search(seeker, s, Duration::from_secs(120));
    assert!(net.peers_found(seeker, s).contains(&expected));
    eprintln!(
        "300 nodes: {} datagrams; lookup with a third dead took {:?} virtual",
        net.packets,
        net.now - started
    );
    for n in &net.nodes {
        n.check_invariants();
    }
}
