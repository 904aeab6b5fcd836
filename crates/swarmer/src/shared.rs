//! What every task of a session shares ([`SessionShared`]): the peer id, the settings, the listen
//! address, the session-wide rate limiters, the DHT handle and the registry that routes an info hash
//! to its torrent's command queue. The session creates it; torrents, connections, LSD and metadata
//! fetches read it. It sits below all of them and imports none.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use swarmer_proto::{InfoHash, PeerId};
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::config::SessionConfig;
use crate::dht::DhtHandle;
use crate::mse::Memory;
use crate::rate::RateLimiter;
use crate::torrent::Command;
use crate::udp::UdpHandle;
use crate::utp::UtpConnector;

/// The state every task of one session shares, behind an `Arc`.
pub(crate) struct SessionShared {
    pub(crate) peer_id: PeerId,
    /// The session's one clock, tokio's, and how the protocol core's instants map to it.
    pub(crate) clock: Clock,
    pub(crate) config: SessionConfig,
    /// The listener's address: the IPv4 one when dual-stack, else the bind address's.
    pub(crate) listen_addr: SocketAddr,
    /// The IPv6 listener's address (`[::]`, same port) when dual-stack.
    pub(crate) listen_addr6: Option<SocketAddr>,
    /// Shared by every connection of every torrent, so the limits hold for the whole session; each
    /// may be unlimited, and [`crate::Session::set_rate_limits`] changes them.
    pub(crate) upload_limit: Arc<RateLimiter>,
    pub(crate) download_limit: Arc<RateLimiter>,
    /// The session's DHT node, if [`SessionConfig::dht`] is set.
    pub(crate) dht: Option<DhtHandle>,
    /// The encryption policy now (it starts as [`SessionConfig::encryption`]) and what worked with
    /// each peer address, MSE or plaintext.
    pub(crate) encryption_memory: Arc<Memory>,
    /// The UDP socket on the listen port (uTP, DHT, UDP trackers), of `listen_addr`'s family.
    pub(crate) udp: UdpHandle,
    /// The IPv6 UDP socket of a dual-stack session, on the same port.
    pub(crate) udp6: Option<UdpHandle>,
    /// Each running torrent's command queue, by info hash. The one lock on the session's state,
    /// held only for a lookup or an update.
    torrents: Mutex<HashMap<InfoHash, mpsc::Sender<Command>>>,
}

impl SessionShared {
    /// The shared state of a session with these parts and no torrents.
    pub(crate) fn new(
        clock: Clock,
        peer_id: PeerId,
        config: SessionConfig,
        listen_addr: SocketAddr,
        dht: Option<DhtHandle>,
        udp: UdpHandle,
    ) -> SessionShared {
        SessionShared {
            clock,
            peer_id,
            encryption_memory: Arc::new(Memory::new(config.encryption)),
            upload_limit: RateLimiter::shared(config.max_upload_rate),
            download_limit: RateLimiter::shared(config.max_download_rate),
            config,
            listen_addr,
            listen_addr6: None,
            dht,
            udp,
            udp6: None,
            torrents: Mutex::new(HashMap::new()),
        }
    }

    /// The same state with a dual-stack session's IPv6 listener and UDP socket.
    pub(crate) fn with_ipv6(
        self,
        listen_addr6: Option<SocketAddr>,
        udp6: Option<UdpHandle>,
    ) -> SessionShared {
        SessionShared {
            listen_addr6,
            udp6,
            ..self
        }
    }

    /// Our listening addresses, the IPv6 one of a dual-stack session too.
    pub(crate) fn listen_addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(self.listen_addr)
            .chain(self.listen_addr6)
            .collect()
    }

    /// uTP connections through the UDP socket of each family we have.
    pub(crate) fn utp(&self) -> UtpConnector {
        match &self.udp6 {
            Some(udp6) => self.udp.utp.clone().join(&udp6.utp),
            None => self.udp.utp.clone(),
        }
    }

    /// The command queue of the torrent with `info_hash`, if the session has it.
    pub(crate) fn torrent(&self, info_hash: &InfoHash) -> Option<mpsc::Sender<Command>> {
        let torrents = self.torrents.lock().expect("lock poisoned");
        torrents.get(info_hash).cloned()
    }

    /// The info hash of the session's torrent whose `HASH('req2', info hash)` is `req2`: the
    /// torrent an encrypted incoming connection names (MSE). One SHA-1 per torrent.
    pub(crate) fn torrent_by_req2(&self, req2: &[u8; 20]) -> Option<InfoHash> {
        let torrents = self.torrents.lock().expect("lock poisoned");
        torrents
            .keys()
            .find(|ih| swarmer_proto::mse::req2_hash(ih) == *req2)
            .copied()
    }

    /// Registers a torrent's command queue under each of its info hashes (a hybrid torrent has
    /// two, BEP 52: incoming connections may name either); `false` (and nothing changed) if the
    /// session already has a torrent with one of them.
    pub(crate) fn register(
        &self,
        info_hashes: &[InfoHash],
        commands: mpsc::Sender<Command>,
    ) -> bool {
        let mut torrents = self.torrents.lock().expect("lock poisoned");
        if info_hashes.iter().any(|h| torrents.contains_key(h)) {
            return false;
        }
        for h in info_hashes {
            torrents.insert(*h, commands.clone());
        }
        true
    }

    /// Forgets the torrent with `info_hashes` (it ended, or never started).
    pub(crate) fn unregister(&self, info_hashes: &[InfoHash]) {
        let mut torrents = self.torrents.lock().expect("lock poisoned");
        for h in info_hashes {
            torrents.remove(h);
        }
    }
}
