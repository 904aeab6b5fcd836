//! The addresses a torrent knows peers at (from trackers, later DHT and PEX), and which to dial next:
//! bounded in size, never our own address, with exponential back-off after failed connections.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

/// The most addresses remembered per torrent; further ones are ignored until some are dropped.
pub(crate) const MAX_KNOWN: usize = 2000;
/// Back-off after the first failed connection attempt; it doubles with each further failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(15);
/// Longest back-off between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);
/// An address that failed this many times in a row is forgotten.
const MAX_FAILS: u32 = 6;
/// Wait before dialling again a peer that closed a working connection.
const REDIAL_DELAY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Connecting,
    Connected,
}

#[derive(Debug)]
struct Entry {
    state: State,
    fails: u32,
    next_try: Instant,
}

#[derive(Debug)]
pub(crate) struct PeerBook {
    entries: HashMap<SocketAddr, Entry>,
    own: Vec<SocketAddr>,
    /// `Some(true)`: IPv4 peers only, `Some(false)`: IPv6 only (a bind address of one family).
    family: Option<bool>,
    banned: HashSet<IpAddr>,
}

impl PeerBook {
    /// A book that never dials any of `own` (our listening addresses: trackers return us to ourselves).
    pub(crate) fn new(own: Vec<SocketAddr>) -> PeerBook {
        PeerBook {
            entries: HashMap::new(),
            own,
            family: None,
            banned: HashSet::new(),
        }
    }

    /// The same book, keeping only addresses of one family if `ipv4` is set (`true`: IPv4).
    pub(crate) fn only_family(self, ipv4: Option<bool>) -> PeerBook {
        PeerBook {
            family: ipv4,
            ..self
        }
    }

    pub(crate) fn add(&mut self, peers: impl IntoIterator<Item = SocketAddr>) {
        let now = Instant::now();
        for addr in peers {
            if self.entries.len() >= MAX_KNOWN {
                break;
            }
            // Trackers and PEX filter their lists already; the DHT's and a magnet link's come here
            // as they were given.
            if self.own.contains(&addr)
                || self.family.is_some_and(|v4| v4 != addr.is_ipv4())
                || self.banned.contains(&addr.ip())
                || swarmer_proto::compact::usable_peer(addr).is_none()
            {
                continue;
            }
            self.entries.entry(addr).or_insert(Entry {
                state: State::Idle,
                fails: 0,
                next_try: now,
            });
        }
    }

    /// How many addresses are known.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every address known and not banned, in no particular order.
    pub(crate) fn known(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.entries.keys().copied()
    }

    /// An address worth dialling now, marked as connecting.
    pub(crate) fn next_to_dial(&mut self, now: Instant) -> Option<SocketAddr> {
        let (addr, entry) = self
            .entries
            .iter_mut()
            .filter(|(_, e)| e.state == State::Idle && e.next_try <= now)
            .min_by_key(|(_, e)| (e.fails, e.next_try))?;
        entry.state = State::Connecting;
        Some(*addr)
    }

    /// When the next idle address may be dialled (now or after its back-off), if there is one.
    pub(crate) fn next_dial_at(&self) -> Option<Instant> {
        let idle = self.entries.values().filter(|e| e.state == State::Idle);
        idle.map(|e| e.next_try).min()
    }

    /// How many addresses could be dialled now.
    pub(crate) fn dialable(&self, now: Instant) -> usize {
        self.entries
            .values()
            .filter(|e| e.state == State::Idle && e.next_try <= now)
            .count()
    }

    /// A connection to `addr` got past the handshake. Its failures are not forgiven yet: a peer
    /// that handshakes and then breaks the protocol, every time, must back off like one that does
    /// not answer, and be forgotten in the end.
    pub(crate) fn connected(&mut self, addr: SocketAddr) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.state = State::Connected;
        }
    }

    /// A connection to `addr` ended. `handshaken`: it got past the handshake; `fault`: it ended by a
    /// protocol or peer error; `outgoing`: we dialled it.
    pub(crate) fn disconnected(
        &mut self,
        addr: SocketAddr,
        handshaken: bool,
        fault: bool,
        outgoing: bool,
    ) {
        if !outgoing {
            return;
        }
        let now = Instant::now();
        let Some(e) = self.entries.get_mut(&addr) else {
            return;
        };
        e.state = State::Idle;
        if handshaken && !fault {
            e.fails = 0;
            e.next_try = now + REDIAL_DELAY;
            return;
        }
        e.fails += 1;
        if e.fails >= MAX_FAILS {
            self.entries.remove(&addr);
            return;
        }
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << (e.fails - 1).min(16))
            .min(MAX_BACKOFF);
        e.next_try = now + backoff;
    }

    /// `addr`, just taken by [`PeerBook::next_to_dial`], was not dialled (a connection from it is
    /// open): it may be dialled again after the redial delay.
    pub(crate) fn postpone(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.state = State::Idle;
            e.next_try = now + REDIAL_DELAY;
        }
    }

    pub(crate) fn ban(&mut self, ip: IpAddr) {
        self.banned.insert(ip);
        self.entries.retain(|a, _| a.ip() != ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], port))
    }

    #[tokio::test(start_paused = true)]
    async fn backs_off_and_forgets_dead_addresses() {
        let mut book = PeerBook::new(vec![addr(1, 6881)]);
        book.add([addr(1, 6881), addr(2, 6881), addr(3, 0)]);
        let now = Instant::now();
        assert_eq!(book.dialable(now), 1, "own address and port 0 are ignored");
        let a = book.next_to_dial(now).unwrap();
        assert_eq!(a, addr(2, 6881));
        assert_eq!(book.next_to_dial(now), None, "already connecting");
        book.disconnected(a, false, false, true);
        assert_eq!(book.next_to_dial(Instant::now()), None, "backing off");
        for _ in 1..MAX_FAILS {
            tokio::time::advance(MAX_BACKOFF).await;
            let a = book.next_to_dial(Instant::now()).unwrap();
            book.disconnected(a, false, false, true);
        }
        tokio::time::advance(MAX_BACKOFF).await;
        assert_eq!(book.next_to_dial(Instant::now()), None, "forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_faults_after_every_handshake_is_forgotten() {
        let mut book = PeerBook::new(vec![]);
        book.add([addr(2, 6881)]);
        for _ in 0..MAX_FAILS {
            tokio::time::advance(MAX_BACKOFF).await;
            let a = book.next_to_dial(Instant::now()).expect("dialable again");
            book.connected(a);
            book.disconnected(a, true, true, true);
        }
        tokio::time::advance(MAX_BACKOFF).await;
        assert_eq!(book.next_to_dial(Instant::now()), None, "forgotten");
        // A clean parting forgives earlier faults.
        book.add([addr(3, 6881)]);
        let a = book.next_to_dial(Instant::now()).expect("new");
        book.disconnected(a, true, true, true);
        tokio::time::advance(MAX_BACKOFF).await;
        let a = book
            .next_to_dial(Instant::now())
            .expect("after its back-off");
        book.connected(a);
        book.disconnected(a, true, false, true);
        assert_eq!(book.entries[&a].fails, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn bans_and_bounds() {
        let mut book = PeerBook::new(vec![]);
        book.add((0..3000u16).map(|p| addr(9, p + 1)));
        assert_eq!(book.dialable(Instant::now()), MAX_KNOWN);
        book.ban(addr(9, 1).ip());
        assert_eq!(book.dialable(Instant::now()), 0);
        book.add([addr(9, 5)]);
        assert_eq!(book.dialable(Instant::now()), 0);
    }
}
