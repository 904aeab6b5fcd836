//! A session's settings ([`SessionConfig`]): addresses, connection limits and timeouts, rate limits,
//! and which peer sources run. Read by every task of the session; it imports nothing of theirs.

use std::net::IpAddr;
use std::time::Duration;

use swarmer_proto::torrent::Config as EngineConfig;
use swarmer_proto::tracker::CryptoSupport;

use crate::dht::DhtConfig;
use crate::port_mapping::PortMappingConfig;
use crate::tracker::TrackerClientConfig;

/// Settings of a [`Session`](crate::Session).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The local address for the listener, outgoing peer connections and tracker requests, which
    /// also keeps the session to that address's family; `None`: dual-stack, listening on IPv4 and
    /// IPv6 and letting the system choose source addresses. Trackers record the source address of
    /// an announce, so on a machine with several addresses this decides under which one peers will
    /// find us.
    pub bind_ip: Option<IpAddr>,
    /// TCP port to listen on for peers (0: any free port).
    pub listen_port: u16,
    /// Most connections per torrent (BEP 3 leaves this to the client; 80 by default).
    pub max_peers_per_torrent: usize,
    /// Most connection attempts in progress at once per torrent.
    pub max_half_open: usize,
    /// Time allowed for a TCP connect.
    pub connect_timeout: Duration,
    /// Time allowed for the peer's handshake after connecting.
    pub handshake_timeout: Duration,
    /// Tracker client settings.
    pub tracker: TrackerClientConfig,
    /// Download engine settings.
    pub engine: EngineConfig,
    /// `numwant` sent to trackers.
    pub num_want: u32,
    /// Most payload and message bytes per second sent to all peers together; `None`: no limit.
    pub max_upload_rate: Option<u64>,
    /// Most bytes per second read from all peers together; `None`: no limit.
    pub max_download_rate: Option<u64>,
    /// Local Service Discovery (BEP 14): multicast announces of the non-private torrents to
    /// `239.192.152.143:6771` and, over IPv6, `[ff15::efc0:988f]:6771` (each family the session
    /// listens on) every 5 minutes from the bind address, and connect to peers announcing the
    /// same torrents there. Off by default: it sends packets to the local network.
    pub lsd: bool,
    /// The DHT (BEP 5) on the listen port (UDP), for finding peers of non-private torrents without a
    /// tracker, on the IPv4 and the IPv6 network (BEP 32) when dual-stack; `None` (the default):
    /// off.
    pub dht: Option<DhtConfig>,
    /// Exchange peers with connected peers (BEP 11 PEX; never for private torrents). On by default:
    /// it only talks to peers we are connected to anyway. Overrides `engine.pex`.
    pub pex: bool,
    /// Message Stream Encryption of peer connections (MSE/PE); [`Encryption::Prefer`] by default.
    pub encryption: Encryption,
    /// Which transports carry peer connections (default [`Transport::Both`]).
    pub transport: Transport,
    /// A web seed that sends nothing for this long (no reply head, or no more of its body) fails
    /// its fetch and is backed off; 20 s by default. Connecting to it is bounded by
    /// `connect_timeout`.
    pub web_seed_timeout: Duration,
    /// Ask the router to forward the listen port to us (TCP and UDP; UPnP IGD, then NAT-PMP and
    /// PCP), renew the lease and remove the mappings when the session closes. Off by default in the
    /// library: it talks to the local network's router. A background task; start-up never waits.
    pub port_mapping: bool,
    /// How port mapping searches, and its deadlines; used when `port_mapping` is on.
    pub port_mapping_config: PortMappingConfig,
}

/// Whether peer connections use Message Stream Encryption (MSE/PE, the Vuze/libtorrent spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encryption {
    /// Outgoing: MSE first, offering RC4 and plaintext (the peer picks), and plaintext at once if
    /// the peer refuses; what worked is remembered per address and tried first next time.
    /// Incoming: MSE and plaintext; an MSE peer that offers both gets plaintext after the
    /// obfuscated handshake (as from libtorrent's default, `prefer_rc4` off: RC4 costs about 3 s
    /// of CPU per GiB), one that offers RC4 only gets RC4. Like libtorrent's `pe_enabled`.
    #[default]
    Prefer,
    /// RC4 in both directions, always: plaintext connections and MSE offers without RC4 are
    /// refused. Peers that do not speak MSE cannot be reached.
    Require,
    /// Plaintext only: no MSE in either direction (an encrypted incoming connection is dropped).
    Disable,
}

impl Encryption {
    /// What HTTP announces say about it: `supportcrypto=1` unless disabled, `requirecrypto=1`
    /// when required.
    pub fn tracker_crypto(self) -> CryptoSupport {
        match self {
            Encryption::Prefer => CryptoSupport::Supported,
            Encryption::Require => CryptoSupport::Required,
            Encryption::Disable => CryptoSupport::Unstated,
        }
    }
}

/// Which transports carry peer connections: TCP, uTP (BEP 29) or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Transport {
    /// TCP only: uTP connections are neither opened nor accepted.
    Tcp,
    /// uTP only: connections are opened over uTP, and TCP connections peers open are closed at once.
    Utp,
    /// Both: incoming on either; outgoing over TCP first and over uTP when TCP fails before the
    /// handshake (refused, timed out, or closed at once, as a uTP-only peer does). One transport at
    /// a time, so never two connections to one peer.
    #[default]
    Both,
}

impl Transport {
    /// Whether uTP connections are opened and accepted.
    pub fn utp(self) -> bool {
        self != Transport::Tcp
    }

    /// Whether TCP connections are opened and accepted.
    pub fn tcp(self) -> bool {
        self != Transport::Utp
    }
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            bind_ip: None,
            listen_port: 6881,
            max_peers_per_torrent: 80,
            max_half_open: 20,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            tracker: TrackerClientConfig::default(),
            engine: EngineConfig::default(),
            num_want: 80,
            max_upload_rate: None,
            max_download_rate: None,
            lsd: false,
            dht: None,
            pex: true,
            encryption: Encryption::Prefer,
            transport: Transport::Both,
            web_seed_timeout: Duration::from_secs(20),
            port_mapping: false,
            port_mapping_config: PortMappingConfig::default(),
        }
    }
}
