//! UDP announces and scrapes (BEP 15): resolve, connect exchange, announce or scrape exchange, with retransmission on a doubling
//! timeout and a per-tracker cache of connection ids that expire after 60 s.
//!
//! A connection id is also dropped when an announce goes unanswered (opentracker, for one, silently
//! ignores announces with an id it no longer accepts) or when the tracker's error message is about the
//! connection id; the next attempt then connects again.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use swarmer_proto::InfoHash;
use swarmer_proto::tracker::scrape::{
    MAX_UDP_SCRAPE, ScrapeCounts, decode_udp_scrape, encode_udp_scrape,
};
use swarmer_proto::tracker::udp::{
    AddressFamily, CONNECTION_ID_TTL_SECS, decode_announce_response, decode_connect_response,
    encode_announce, encode_connect, is_reply_to,
};
use swarmer_proto::tracker::{AnnounceRequest, AnnounceResponse, TrackerError};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::{AnnounceError, TrackerClient};
use crate::udp::UdpHandle;

/// Largest UDP reply we read, in bytes; anything longer is truncated by the kernel and then fails to
/// decode. 65,507 is the largest IPv4 UDP payload.
const MAX_DATAGRAM: usize = 65_507;

/// At most this many trackers' connection ids are remembered.
const MAX_CACHED_IDS: usize = 1024;

/// Connection ids per tracker address with the time they were obtained.
#[derive(Debug, Default)]
pub(super) struct ConnectionIds {
    ids: Mutex<HashMap<SocketAddr, (u64, Instant)>>,
}

impl ConnectionIds {
    fn ttl() -> Duration {
        Duration::from_secs(CONNECTION_ID_TTL_SECS)
    }

    fn get(&self, tracker: SocketAddr) -> Option<u64> {
        let ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids.get(&tracker)
            .filter(|(_, at)| at.elapsed() < Self::ttl())
            .map(|(id, _)| *id)
    }

    fn insert(&self, tracker: SocketAddr, id: u64) {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.len() >= MAX_CACHED_IDS {
            ids.retain(|_, (_, at)| at.elapsed() < Self::ttl());
            if ids.len() >= MAX_CACHED_IDS {
                ids.clear();
            }
        }
        ids.insert(tracker, (id, Instant::now()));
    }

    fn forget(&self, tracker: SocketAddr) {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids.remove(&tracker);
    }

    /// Makes every cached id look as old as the TTL, so the next announce must connect again.
    #[cfg(test)]
    pub(super) fn expire_all(&self) {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        for (_, at) in ids.values_mut() {
            *at = Instant::now()
                .checked_sub(Self::ttl())
                .unwrap_or_else(Instant::now);
        }
    }
}

/// One BEP 15 announce to the UDP tracker at `url`.
pub(super) async fn announce(
    client: &TrackerClient,
    url: &str,
    req: &AnnounceRequest,
    family: Option<bool>,
) -> Result<AnnounceResponse, AnnounceError> {
    request(
        client,
        url,
        family,
        |connection_id, tid| encode_announce(connection_id, tid, req).to_vec(),
        |packet, tid, tracker| decode_announce_response(packet, tid, AddressFamily::of(&tracker)),
    )
    .await
}

/// One BEP 15 scrape of at most [`MAX_UDP_SCRAPE`] info hashes (the rest are not asked about): the
/// counts of those the tracker answered for, in `hashes` order.
pub(super) async fn scrape(
    client: &TrackerClient,
    url: &str,
    hashes: &[InfoHash],
) -> Result<Vec<(InfoHash, ScrapeCounts)>, AnnounceError> {
    let hashes = &hashes[..hashes.len().min(MAX_UDP_SCRAPE)];
    let counts = request(
        client,
        url,
        None,
        |connection_id, tid| encode_udp_scrape(connection_id, tid, hashes),
        |packet, tid, _| decode_udp_scrape(packet, tid, hashes.len()),
    )
    .await?;
    Ok(hashes.iter().copied().zip(counts).collect())
}

/// Resolves the tracker of `url`, obtains or reuses a connection id and sends the request `encode`
/// builds for it (from the connection id and a transaction id), retransmitting on the doubling
/// timeout, until `decode` accepts a reply (given the transaction id and the tracker's address).
async fn request<T>(
    client: &TrackerClient,
    url: &str,
    family: Option<bool>,
    encode: impl Fn(u64, u32) -> Vec<u8>,
    decode: impl Fn(&[u8], u32, SocketAddr) -> Result<T, TrackerError>,
) -> Result<T, AnnounceError> {
    let cfg = &client.config;
    let (host, port) = host_port(url)?;
    // Resolution gets the same bound as one full UDP exchange would.
    let tracker = tokio::time::timeout(
        cfg.udp_initial_timeout * 2,
        resolve(&host, port, cfg.bind, family),
    )
    .await
    .map_err(|_| AnnounceError::Resolve {
        host: host.clone(),
        reason: "timed out".into(),
    })??;
    let shared = client
        .shared_udp
        .iter()
        .find(|s| s.local_addr.is_ipv4() == tracker.is_ipv4());
    let sock = match shared {
        Some(shared) => Carrier::Shared(shared, tracker),
        None => {
            let local = match (cfg.bind, tracker) {
                (Some(ip), _) => SocketAddr::new(ip, 0),
                (None, SocketAddr::V4(_)) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
                (None, SocketAddr::V6(_)) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
            };
            let sock = UdpSocket::bind(local).await?;
            // A connected socket only receives from the tracker and reports ICMP "port unreachable".
            sock.connect(tracker).await?;
            Carrier::Own(sock)
        }
    };

    let mut attempt: u32 = 0;
    let mut reconnected_on_error = false;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let wait = cfg
            .udp_initial_timeout
            .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX));
        let connection_id = match client.udp.get(tracker) {
            Some(id) => id,
            None => {
                let tid: u32 = rand::random();
                let reply = exchange(&sock, tid, &encode_connect(tid), wait, &mut buf, |p| {
                    decode_connect_response(p, tid)
                })
                .await?;
                match reply {
                    Some(id) => {
                        client.udp.insert(tracker, id);
                        id
                    }
                    None => {
                        attempt = next_attempt(attempt, cfg.udp_max_retries, wait)?;
                        continue;
                    }
                }
            }
        };
        let tid: u32 = rand::random();
        let packet = encode(connection_id, tid);
        let reply = exchange(&sock, tid, &packet, wait, &mut buf, |p| {
            decode(p, tid, tracker)
        })
        .await;
        match reply {
            Ok(Some(response)) => return Ok(response),
            Ok(None) => {
                client.udp.forget(tracker);
                attempt = next_attempt(attempt, cfg.udp_max_retries, wait)?;
            }
            Err(AnnounceError::Tracker(TrackerError::Failure(msg)))
                if !reconnected_on_error && is_connection_id_complaint(&msg) =>
            {
                tracing::debug!(%tracker, %msg, "UDP tracker rejected our connection id; reconnecting");
                client.udp.forget(tracker);
                reconnected_on_error = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The next retransmission number, or a timeout error once `max_retries` retransmissions went unanswered.
fn next_attempt(attempt: u32, max_retries: u32, last_wait: Duration) -> Result<u32, AnnounceError> {
    if attempt >= max_retries {
        Err(AnnounceError::Timeout(last_wait))
    } else {
        Ok(attempt + 1)
    }
}

fn is_connection_id_complaint(msg: &str) -> bool {
    let msg = msg.to_ascii_lowercase();
    msg.contains("connection id") || msg.contains("connection_id") || msg.contains("connectionid")
}

/// How announces reach a tracker: the session's shared socket (replies routed to us by
/// transaction id) or a socket of our own, connected to the tracker.
enum Carrier<'a> {
    Shared(&'a UdpHandle, SocketAddr),
    Own(UdpSocket),
}

/// Sends `packet` (transaction `tid`) and waits up to `wait` for a reply that `decode` accepts.
/// Replies to other transactions (late answers to an earlier retransmission) are skipped. `Ok(None)`
/// means nothing usable arrived in time.
async fn exchange<T>(
    carrier: &Carrier<'_>,
    tid: u32,
    packet: &[u8],
    wait: Duration,
    buf: &mut [u8],
    decode: impl Fn(&[u8]) -> Result<T, TrackerError>,
) -> Result<Option<T>, AnnounceError> {
    let deadline = Instant::now() + wait;
    let mut replies = match carrier {
        Carrier::Own(sock) => {
            sock.send(packet).await?;
            None
        }
        Carrier::Shared(shared, tracker) => {
            // A transaction id another announce uses now: wait as if unanswered; the caller
            // retries with a new one.
            let Some(replies) = shared.expect_tracker_reply(tid, *tracker) else {
                tokio::time::sleep_until(deadline).await;
                return Ok(None);
            };
            shared.socket.send_to(packet, *tracker).await?;
            Some(replies)
        }
    };
    loop {
        let reply = match (&mut replies, carrier) {
            (Some(replies), _) => match tokio::time::timeout_at(deadline, replies.recv()).await {
                Ok(Some(reply)) => reply,
                Ok(None) | Err(_) => return Ok(None),
            },
            (None, Carrier::Own(sock)) => {
                match tokio::time::timeout_at(deadline, sock.recv(buf)).await {
                    Err(_) => return Ok(None),
                    Ok(received) => buf[..received?].to_vec(),
                }
            }
            (None, Carrier::Shared(..)) => unreachable!("a shared carrier always has its replies"),
        };
        // Replies to other transactions (late answers to an earlier retransmission), and replies
        // too short to say which transaction they answer, are not ours to judge: skip them.
        if !is_reply_to(&reply, tid) {
            tracing::debug!(
                len = reply.len(),
                "UDP tracker reply to another transaction skipped"
            );
            continue;
        }
        match decode(&reply) {
            Ok(value) => return Ok(Some(value)),
            Err(TrackerError::TransactionMismatch { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Host and port of a `udp://host:port[/path]` URL. IPv6 literals are in brackets.
fn host_port(url: &str) -> Result<(String, u16), AnnounceError> {
    let invalid = |reason: &str| AnnounceError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    let host = parsed.host_str().ok_or_else(|| invalid("no host"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = parsed.port().ok_or_else(|| invalid("no port"))?;
    Ok((host.to_owned(), port))
}

/// The first address of `host` in the family of `bind` (any family when unbound) and of `family`
/// if set (`Some(true)`: IPv4).
async fn resolve(
    host: &str,
    port: u16,
    bind: Option<IpAddr>,
    family: Option<bool>,
) -> Result<SocketAddr, AnnounceError> {
    let fail = |reason: String| AnnounceError::Resolve {
        host: host.to_owned(),
        reason,
    };
    let same_family = |a: &SocketAddr| {
        bind.is_none_or(|b| b.is_ipv4() == a.is_ipv4()) && family.is_none_or(|v4| v4 == a.is_ipv4())
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        let addr = SocketAddr::new(ip, port);
        return if same_family(&addr) {
            Ok(addr)
        } else {
            Err(fail("address family differs from the bind address".into()))
        };
    }
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| fail(e.to_string()))?;
    addrs
        .find(same_family)
        .ok_or_else(|| fail("no address in the bind address's family".into()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use swarmer_proto::tracker::udp::{ANNOUNCE_REQUEST_LEN, CONNECT_REQUEST_LEN, PROTOCOL_ID};

    use super::super::TrackerClientConfig;
    use super::super::http::tests::request;
    use super::*;

    fn client(initial_ms: u64, retries: u32) -> TrackerClient {
        TrackerClient::new(TrackerClientConfig {
            udp_initial_timeout: Duration::from_millis(initial_ms),
            udp_max_retries: retries,
            ..TrackerClientConfig::default()
        })
        .unwrap()
    }

    #[derive(Clone, Copy)]
    enum Behaviour {
        /// Answers connects and announces; rejects unknown connection ids with an error packet.
        Normal,
        /// Drops the first `n` packets of any kind, then behaves normally.
        DropFirst(usize),
        /// Answers connects, and rejects every announce with an error packet.
        Refuse,
        /// Sends a 4-byte datagram (too short to name a transaction) before each real reply.
        ShortFirst,
    }

    /// Counters a fake UDP tracker keeps.
    #[derive(Default)]
    struct Counts {
        connects: AtomicUsize,
        announces: AtomicUsize,
        scrapes: AtomicUsize,
        /// Where the last packet came from.
        from: std::sync::Mutex<Option<SocketAddr>>,
    }

    /// A BEP 15 tracker on 127.0.0.1 that hands out connection ids 1, 2, 3, ... and accepts only the newest.
    async fn fake_tracker(behaviour: Behaviour) -> (String, Arc<Counts>) {
        fake_tracker_at("127.0.0.1:0", behaviour).await
    }

    /// [`fake_tracker`] at `bind`; over IPv6 it lists the peer `[::9]:6881` (BEP 15's 18-byte
    /// entries), over IPv4 `127.0.0.9:6881`.
    async fn fake_tracker_at(bind: &str, behaviour: Behaviour) -> (String, Arc<Counts>) {
        let sock = UdpSocket::bind(bind).await.unwrap();
        let v6 = sock.local_addr().unwrap().is_ipv6();
        let url = format!("udp://{}/announce", sock.local_addr().unwrap());
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut current_id = 0u64;
            let mut seen = 0usize;
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                seen += 1;
                *c.from.lock().unwrap() = Some(from);
                if let Behaviour::DropFirst(k) = behaviour {
                    if seen <= k {
                        continue;
                    }
                }
                let p = &buf[..n];
                let tid = &p[12..16];
                let mut reply = Vec::new();
                if n == CONNECT_REQUEST_LEN && p[..8] == PROTOCOL_ID.to_be_bytes() {
                    c.connects.fetch_add(1, Ordering::SeqCst);
                    current_id += 1;
                    reply.extend_from_slice(&0u32.to_be_bytes());
                    reply.extend_from_slice(tid);
                    reply.extend_from_slice(&current_id.to_be_bytes());
                } else if n >= 16 && p[8..12] == 2u32.to_be_bytes() && (n - 16) % 20 == 0 {
                    // Scrape: info hash i has i+1 seeders, 10 completed and 2i leechers.
                    c.scrapes.fetch_add(1, Ordering::SeqCst);
                    reply.extend_from_slice(&2u32.to_be_bytes());
                    reply.extend_from_slice(tid);
                    for i in 0..(n - 16) / 20 {
                        for v in [i as u32 + 1, 10, 2 * i as u32] {
                            reply.extend_from_slice(&v.to_be_bytes());
                        }
                    }
                } else if n == ANNOUNCE_REQUEST_LEN {
                    c.announces.fetch_add(1, Ordering::SeqCst);
                    let id = u64::from_be_bytes(p[..8].try_into().unwrap());
                    if id != current_id || matches!(behaviour, Behaviour::Refuse) {
                        reply.extend_from_slice(&3u32.to_be_bytes());
                        reply.extend_from_slice(tid);
                        reply.extend_from_slice(if id != current_id {
                            b"Connection ID missmatch."
                        } else {
                            b"go away"
                        });
                    } else {
                        reply.extend_from_slice(&1u32.to_be_bytes());
                        reply.extend_from_slice(tid);
                        for v in [120u32, 3, 4] {
                            reply.extend_from_slice(&v.to_be_bytes());
                        }
                        if v6 {
                            let ip: std::net::Ipv6Addr = "::9".parse().unwrap();
                            reply.extend_from_slice(&ip.octets());
                            reply.extend_from_slice(&[0x1a, 0xe1]);
                        } else {
                            reply.extend_from_slice(&[127, 0, 0, 9, 0x1a, 0xe1]);
                        }
                    }
                }
                if let Behaviour::ShortFirst = behaviour {
                    let _ = sock.send_to(&reply[..4], from).await;
                }
                let _ = sock.send_to(&reply, from).await;
            }
        });
        (url, counts)
    }

    #[tokio::test]
    async fn announce_and_connection_id_reuse_and_expiry() {
        let (url, counts) = fake_tracker(Behaviour::Normal).await;
        let c = client(500, 1);
        let r = c.announce(&url, &request()).await.unwrap();
        assert_eq!(r.interval, 120);
        assert_eq!((r.leechers, r.seeders), (Some(3), Some(4)));
        assert_eq!(r.peers, vec!["127.0.0.9:6881".parse().unwrap()]);
        c.announce(&url, &request()).await.unwrap();
        assert_eq!(counts.connects.load(Ordering::SeqCst), 1, "id reused");
        c.udp.expire_all();
        c.announce(&url, &request()).await.unwrap();
        assert_eq!(
            counts.connects.load(Ordering::SeqCst),
            2,
            "expired id renewed"
        );
        assert_eq!(counts.announces.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_ipv6_tracker_is_reached_through_the_ipv6_socket() {
        let (url, counts) = fake_tracker_at("[::1]:0", Behaviour::Normal).await;
        let bind = |addr: &str| {
            crate::udp::bind(
                addr.parse().unwrap(),
                swarmer_proto::utp::EndpointConfig::default(),
                true,
                crate::clock::Clock::start(),
            )
            .unwrap()
        };
        let (v4, v6) = (bind("127.0.0.1:0"), bind("[::1]:0"));
        let mut c = client(500, 1);
        c.add_udp(v4.handle.clone());
        c.add_udp(v6.handle.clone());
        let r = c.announce(&url, &request()).await.unwrap();
        // BEP 15 over IPv6: 18-byte peers.
        assert_eq!(r.peers, vec!["[::9]:6881".parse().unwrap()]);
        let from = counts.from.lock().unwrap().unwrap();
        assert_eq!(from, v6.handle.local_addr, "not the session's IPv6 socket");
    }

    #[tokio::test]
    async fn announces_go_through_the_sessions_shared_socket() {
        let (url, counts) = fake_tracker(Behaviour::Normal).await;
        let bound = crate::udp::bind(
            "127.0.0.1:0".parse().unwrap(),
            swarmer_proto::utp::EndpointConfig::default(),
            true,
            crate::clock::Clock::start(),
        )
        .unwrap();
        let mut c = client(500, 1);
        c.add_udp(bound.handle.clone());
        let r = c.announce(&url, &request()).await.unwrap();
        assert_eq!(r.peers, vec!["127.0.0.9:6881".parse().unwrap()]);
        c.udp.expire_all();
        c.announce(&url, &request()).await.unwrap();
        assert_eq!(counts.announces.load(Ordering::SeqCst), 2);
        assert_eq!(*counts.from.lock().unwrap(), Some(bound.handle.local_addr));
    }

    #[tokio::test]
    async fn rejected_connection_id_triggers_one_reconnect() {
        let (url, counts) = fake_tracker(Behaviour::Normal).await;
        let c = client(500, 1);
        let tracker: SocketAddr = url["udp://".len()..url.len() - "/announce".len()]
            .parse()
            .unwrap();
        // A stale id the tracker never issued.
        c.udp.insert(tracker, 0xdead);
        c.announce(&url, &request()).await.unwrap();
        assert_eq!(counts.connects.load(Ordering::SeqCst), 1);
        assert_eq!(counts.announces.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn lost_packets_are_retransmitted() {
        let (url, counts) = fake_tracker(Behaviour::DropFirst(2)).await;
        let c = client(100, 3);
        c.announce(&url, &request()).await.unwrap();
        assert_eq!(counts.connects.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_reply_too_short_to_name_its_transaction_is_skipped() {
        let (url, counts) = fake_tracker(Behaviour::ShortFirst).await;
        // One attempt only: had the short datagram ended the exchange, this would fail.
        let r = client(2000, 0).announce(&url, &request()).await.unwrap();
        assert_eq!(r.peers, vec!["127.0.0.9:6881".parse().unwrap()]);
        assert_eq!(counts.connects.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn scrape_asks_74_hashes_a_packet_and_keeps_their_order() {
        let (url, counts) = fake_tracker(Behaviour::Normal).await;
        let c = client(500, 1);
        let hashes: Vec<InfoHash> = (0..100u8).map(|i| InfoHash([i; 20])).collect();
        let got = c.scrape(&url, &hashes).await.unwrap();
        assert_eq!(got.len(), 100);
        assert_eq!(counts.scrapes.load(Ordering::SeqCst), 2, "74 + 26");
        assert_eq!(
            counts.connects.load(Ordering::SeqCst),
            1,
            "one connection id"
        );
        assert_eq!(got[0].0, hashes[0]);
        assert_eq!(
            got[0].1,
            ScrapeCounts {
                seeders: 1,
                completed: 10,
                leechers: 0
            }
        );
        // The second packet starts again at entry 0.
        assert_eq!(got[74].0, hashes[74]);
        assert_eq!(got[74].1.seeders, 1);
        assert_eq!(got[99].1.leechers, 50);
    }

    #[tokio::test]
    async fn error_packet_is_a_failure() {
        let (url, _) = fake_tracker(Behaviour::Refuse).await;
        let e = client(500, 1).announce(&url, &request()).await.unwrap_err();
        assert!(
            matches!(&e, AnnounceError::Tracker(TrackerError::Failure(m)) if m == "go away"),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn silent_tracker_times_out_after_bounded_retries() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let url = format!("udp://{}/announce", silent.local_addr().unwrap());
        let started = Instant::now();
        // 100 + 200 ms of waiting in all.
        let e = client(100, 1).announce(&url, &request()).await.unwrap_err();
        assert!(matches!(e, AnnounceError::Timeout(_)), "{e:?}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        drop(silent);
    }

    #[tokio::test]
    async fn closed_port_fails_fast() {
        let closed = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let url = format!("udp://{}/announce", closed.local_addr().unwrap());
        drop(closed);
        let e = client(2000, 3)
            .announce(&url, &request())
            .await
            .unwrap_err();
        assert!(matches!(e, AnnounceError::Io(_)), "{e:?}");
    }

    #[test]
    fn url_host_and_port() {
        assert_eq!(
            host_port("udp://tracker.example:1337/announce").unwrap(),
            ("tracker.example".to_owned(), 1337)
        );
        assert_eq!(
            host_port("udp://[::1]:6969").unwrap(),
            ("::1".to_owned(), 6969)
        );
        assert!(host_port("udp://tracker.example/announce").is_err());
        assert!(host_port("udp://:80").is_err());
    }
}
