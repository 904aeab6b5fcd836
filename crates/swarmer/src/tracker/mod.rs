//! Talking to trackers over the network: [`TrackerClient`] announces over HTTP(S) (BEP 3) and UDP
//! (BEP 15) and scrapes (BEP 48, BEP 15) with bounded waits and bounded replies, and [`spawn_announcer`] runs the announce schedule of
//! one torrent across its BEP 12 tiers.
//!
//! The codecs, limits and tier order live in [`swarmer_proto::tracker`]; this module only moves bytes and
//! keeps time.

mod announcer;
mod dual;
mod health;
mod http;
mod udp;

use crate::udp::UdpHandle;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use swarmer_proto::InfoHash;
use swarmer_proto::tracker::scrape::{MAX_HTTP_SCRAPE, MAX_UDP_SCRAPE, ScrapeCounts, scrape_url};
use swarmer_proto::tracker::{AnnounceRequest, AnnounceResponse, TrackerError};

pub use announcer::{
    AnnouncerConfig, AnnouncerHandle, AnnouncerStatus, STOP_BUDGET, TransferStats, spawn_announcer,
};

/// A reply body larger than this many bytes (8 MiB) is abandoned with [`AnnounceError::BodyTooLarge`] as
/// soon as the bytes read pass it (or at once when `Content-Length` declares more), so a 100 MB body is
/// never buffered. 8 MiB holds a million compact IPv4 peers (6 MB), of which the parser keeps the first
/// [`MAX_PEERS`](swarmer_proto::tracker::MAX_PEERS); libtorrent's limit is 1 MiB, which would refuse such
/// a reply outright.
pub const MAX_HTTP_BODY: usize = 8 * 1024 * 1024;

/// At most this many HTTP redirects are followed per announce.
pub const MAX_REDIRECTS: usize = 3;

/// Settings of a [`TrackerClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerClientConfig {
    /// Local address for outgoing tracker connections (TCP and UDP), or `None` for the system's choice.
    /// Trackers record the announce's source address as the peer address, so a client that listens on
    /// one address of several must announce from it.
    pub bind: Option<IpAddr>,
    /// Bound on a whole HTTP announce: connect, request, redirects and body. Default 20 s. A body that
    /// never ends, or trickles in a byte at a time, fails with [`AnnounceError::Timeout`] when it runs out.
    pub http_timeout: Duration,
    /// How long to wait for the first UDP reply before retransmitting; doubles after each retransmission.
    /// Default 5 s.
    pub udp_initial_timeout: Duration,
    /// How many times a UDP request is retransmitted before the announce fails with a timeout. Default 3,
    /// so a dead UDP tracker costs at most 5 + 10 + 20 + 40 = 75 s.
    ///
    /// This deviates from BEP 15, which waits 15 · 2ⁿ s for n up to 8 (over an hour): far too slow for a
    /// user, and with BEP 12 tiers there is usually another tracker to try.
    pub udp_max_retries: u32,
}

impl Default for TrackerClientConfig {
    fn default() -> Self {
        TrackerClientConfig {
            bind: None,
            http_timeout: Duration::from_secs(20),
            udp_initial_timeout: Duration::from_secs(5),
            udp_max_retries: 3,
        }
    }
}

/// Why an announce to one tracker failed.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// The tracker answered, but refused (`failure reason`, BEP 15 error) or sent an unusable reply.
    #[error(transparent)]
    Tracker(#[from] TrackerError),
    /// The URL is not a tracker URL we can use (no host, no port for UDP, unparsable).
    #[error("invalid tracker URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The tracker cannot be scraped: its announce URL's last path component does not start with
    /// `announce` (the BEP 48 rule).
    #[error("tracker {0:?} has no scrape URL (BEP 48)")]
    NotScrapable(String),
    /// The URL scheme is neither `http`, `https` nor `udp`.
    #[error("unsupported tracker URL scheme {0:?}")]
    UnsupportedScheme(String),
    /// The tracker's host name did not resolve to an address we can reach from the bind address.
    #[error("cannot resolve tracker host {host:?}: {reason}")]
    Resolve {
        /// The host name.
        host: String,
        /// Why.
        reason: String,
    },
    /// No (complete) reply within the configured time.
    #[error("tracker did not answer within {0:?}")]
    Timeout(Duration),
    /// The HTTP tracker answered with a non-success status and no bencoded failure reason.
    #[error("tracker answered HTTP status {0}")]
    HttpStatus(u16),
    /// The HTTP reply body exceeded [`MAX_HTTP_BODY`] bytes.
    #[error("tracker reply is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The HTTP exchange failed (connection refused, TLS, too many redirects, ...).
    #[error("HTTP tracker request failed: {0}")]
    Http(#[source] reqwest::Error),
    /// A UDP socket operation failed (including ICMP "port unreachable" reported as connection refused).
    #[error("UDP tracker socket error: {0}")]
    Io(#[from] std::io::Error),
    /// Not sent: an announce of another torrent to this tracker got no answer a moment ago, and
    /// the tracker is not asked again until its backoff (15 s, doubling to 10 minutes) is over.
    #[error("{error} (not asked again for {}s)", retry_in.as_secs().max(1))]
    Unreachable {
        /// The failure of the last announce that was sent.
        error: String,
        /// How long until the tracker is asked again.
        retry_in: Duration,
    },
}

impl AnnounceError {
    /// The tracker did not answer at all (refused, timed out, unresolvable, the exchange broke
    /// off), as opposed to answering with a refusal or something unusable: true of this error
    /// for every torrent that announces there.
    fn is_unreachable(&self) -> bool {
        matches!(
            self,
            AnnounceError::Resolve { .. }
                | AnnounceError::Timeout(_)
                | AnnounceError::Http(_)
                | AnnounceError::Io(_)
        )
    }
}

/// Announces to HTTP, HTTPS and UDP trackers. Cheap to clone: clones share the HTTP connection pool and the
/// cache of UDP connection ids.
#[derive(Debug, Clone)]
pub struct TrackerClient {
    config: TrackerClientConfig,
    http: reqwest::Client,
    udp: Arc<udp::ConnectionIds>,
    /// The session's UDP socket on the listen port, once the session set it: UDP announces go
    /// through it (its task routes replies back by transaction id) instead of a socket of their own.
    /// One per family when dual-stack.
    shared_udp: Vec<UdpHandle>,
    /// A dual-stack session's HTTP clients held to one family each (IPv4, IPv6), for one announce
    /// per family to a tracker whose host has both.
    by_family: Option<Arc<[reqwest::Client; 2]>>,
    /// Our global IPv6 address, told to HTTP trackers (BEP 7 `ipv6=`).
    ipv6: Option<Ipv6Addr>,
    /// The trackers that stopped answering, shared by every torrent's announcer.
    health: Arc<Mutex<health::Health>>,
}

impl TrackerClient {
    /// Builds a client. Fails only if the TLS backend cannot be initialised.
    ///
    /// The HTTP client uses rustls, binds to `config.bind`, follows at most [`MAX_REDIRECTS`] redirects,
    /// and ignores proxy environment variables so that announces really leave from the bind address.
    pub fn new(config: TrackerClientConfig) -> Result<TrackerClient, AnnounceError> {
        let http = http_client(&config, config.bind)?;
        Ok(TrackerClient {
            config,
            http,
            udp: Arc::new(udp::ConnectionIds::default()),
            shared_udp: Vec::new(),
            by_family: None,
            ipv6: None,
            health: Arc::default(),
        })
    }

    /// Announces to a tracker whose host resolves to both families once over each, and merges the
    /// peers (BEP 7); `ipv6`: our global IPv6 address to tell HTTP trackers, if we know one. For a
    /// dual-stack session. Errors: as [`TrackerClient::new`].
    pub(crate) fn set_dual_stack(&mut self, ipv6: Option<Ipv6Addr>) -> Result<(), AnnounceError> {
        let v4 = http_client(&self.config, Some(Ipv4Addr::UNSPECIFIED.into()))?;
        let v6 = http_client(&self.config, Some(Ipv6Addr::UNSPECIFIED.into()))?;
        self.by_family = Some(Arc::new([v4, v6]));
        self.ipv6 = ipv6;
        Ok(())
    }

    /// The HTTP client for `family` (`Some(true)`: IPv4 only, `Some(false)`: IPv6 only).
    fn http_for(&self, family: Option<bool>) -> &reqwest::Client {
        match (&self.by_family, family) {
            (Some(clients), Some(true)) => &clients[0],
            (Some(clients), Some(false)) => &clients[1],
            _ => &self.http,
        }
    }

    /// Sends UDP announces to trackers of `handle`'s family through that session socket.
    pub(crate) fn add_udp(&mut self, handle: UdpHandle) {
        self.shared_udp.push(handle);
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &TrackerClientConfig {
        &self.config
    }

    /// Sends one announce to the tracker at `url` (`http://`, `https://` or `udp://`) and returns its
    /// validated reply. In a dual-stack session, a tracker whose host resolves to both families
    /// gets one announce over each, at once, and the reply is the first family's with the peers of
    /// both (BEP 7); it fails only if both do, and once one has answered the other gets at most
    /// 5 s more (a host whose IPv6 is broken waits no longer than that for it). Our global IPv6 address, if known, goes to HTTP
    /// trackers as `ipv6=` unless `req` names one.
    ///
    /// Waits at most [`TrackerClientConfig::http_timeout`] for HTTP, and the UDP retransmission schedule
    /// for UDP. `req.tracker_id` is sent to HTTP trackers only.
    ///
    /// A tracker that just failed to answer an announce of any torrent of this client (and its
    /// clones) is not asked again until a backoff has passed: meanwhile announces to it fail at
    /// once with [`AnnounceError::Unreachable`], and after it one announce probes it.
    pub async fn announce(
        &self,
        url: &str,
        req: &AnnounceRequest,
    ) -> Result<AnnounceResponse, AnnounceError> {
        self.announce_with(url, req, false).await
    }

    /// [`TrackerClient::announce`], sent even to a tracker in its backoff when `forced` (a
    /// reannounce the user asked for); its outcome still counts for the others.
    pub(crate) async fn announce_with(
        &self,
        url: &str,
        req: &AnnounceRequest,
        forced: bool,
    ) -> Result<AnnounceResponse, AnnounceError> {
        let verdict = self.health().check(url, Instant::now());
        if let (health::Verdict::Skip { error, retry_in }, false) = (verdict, forced) {
            return Err(AnnounceError::Unreachable { error, retry_in });
        }
        let mut req = req.clone();
        req.ipv6 = req.ipv6.or(self.ipv6);
        let result = if self.by_family.is_some() && dual::resolves_to_both(self, url).await {
            dual::announce_both(self, url, &req).await
        } else {
            self.announce_over(url, &req, None).await
        };
        let unreachable = match &result {
            Err(e) if e.is_unreachable() => Some(e.to_string()),
            _ => None,
        };
        self.health().record(url, unreachable, Instant::now());
        result
    }

    /// The shared tracker health; never poisoned in a way that matters (plain bookkeeping).
    fn health(&self) -> std::sync::MutexGuard<'_, health::Health> {
        self.health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One announce, over `family` only if set (`Some(true)`: IPv4).
    pub(crate) async fn announce_over(
        &self,
        url: &str,
        req: &AnnounceRequest,
        family: Option<bool>,
    ) -> Result<AnnounceResponse, AnnounceError> {
        match scheme_of(url)?.as_str() {
            "http" | "https" => http::announce(self, url, req, family).await,
            "udp" => udp::announce(self, url, req, family).await,
            scheme => Err(AnnounceError::UnsupportedScheme(scheme.to_owned())),
        }
    }

    /// Asks the tracker whose announce URL is `announce` how many seeders, leechers and completed
    /// downloads each torrent of `hashes` has: BEP 48 over HTTP(S) (the scrape URL made from the
    /// announce URL), BEP 15's scrape action over UDP. Many hashes go in one request where the
    /// protocol allows ([`MAX_HTTP_SCRAPE`] per HTTP request, [`MAX_UDP_SCRAPE`] per UDP packet);
    /// more are asked in several, one after another.
    ///
    /// Returns the counts of the hashes the tracker answered for, in `hashes` order; a torrent the
    /// tracker does not know is simply absent. Errors: [`AnnounceError::NotScrapable`] when an HTTP
    /// tracker's URL does not follow the BEP 48 rule, and as [`announce`](Self::announce) for
    /// everything else; the first failing request ends the scrape. Each request has the bounds of one
    /// announce.
    pub async fn scrape(
        &self,
        announce: &str,
        hashes: &[InfoHash],
    ) -> Result<Vec<(InfoHash, ScrapeCounts)>, AnnounceError> {
        let mut counts = Vec::new();
        match scheme_of(announce)?.as_str() {
            "http" | "https" => {
                let url = scrape_url(announce)
                    .ok_or_else(|| AnnounceError::NotScrapable(announce.to_owned()))?;
                for chunk in hashes.chunks(MAX_HTTP_SCRAPE) {
                    counts.extend(http::scrape(self, &url, chunk).await?);
                }
            }
            "udp" => {
                for chunk in hashes.chunks(MAX_UDP_SCRAPE) {
                    counts.extend(udp::scrape(self, announce, chunk).await?);
                }
            }
            scheme => return Err(AnnounceError::UnsupportedScheme(scheme.to_owned())),
        }
        Ok(counts)
    }
}

/// An HTTP client for trackers: rustls, bound to `bind` (which also holds it to that family),
/// bounded redirects, no proxy.
fn http_client(
    config: &TrackerClientConfig,
    bind: Option<IpAddr>,
) -> Result<reqwest::Client, AnnounceError> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .local_address(bind)
        .timeout(config.http_timeout)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        // No idle connections kept: trackers such as opentracker answer HTTP/1.1 without
        // `Connection: close` and then close the connection. A request sent on such a pooled
        // connection a moment later (`stopped` right after `completed`) fails after being
        // written, is not retried, and the tracker keeps listing us. Announces are minutes
        // apart, so pooling saves nothing worth that.
        .pool_max_idle_per_host(0)
        .no_proxy()
        .user_agent(concat!("swarmer/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(AnnounceError::Http)
}

/// The lower-cased scheme of a tracker URL.
fn scheme_of(url: &str) -> Result<String, AnnounceError> {
    url.split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .ok_or_else(|| AnnounceError::InvalidUrl {
            url: url.to_owned(),
            reason: "no scheme".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::http::tests::request;
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// An HTTP "tracker" that accepts connections and closes them without a word; returns its
    /// announce URL and how many connections it took.
    async fn mute_tracker() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/announce", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        (url, accepted)
    }

    #[tokio::test]
    async fn a_mute_tracker_is_asked_once_for_every_torrent_until_its_backoff() {
        let (url, accepted) = mute_tracker().await;
        let client = TrackerClient::new(TrackerClientConfig::default()).unwrap();
        let first = client.announce(&url, &request()).await.unwrap_err();
        assert!(first.is_unreachable(), "{first}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // Another torrent, through a clone of the session's client: told at once.
        let mut other = request();
        other.info_hash = InfoHash([9; 20]);
        let skipped = client.clone().announce(&url, &other).await.unwrap_err();
        let AnnounceError::Unreachable { error, retry_in } = &skipped else {
            panic!("{skipped}");
        };
        assert_eq!(*error, first.to_string());
        assert!(*retry_in <= health::FIRST_BACKOFF, "{retry_in:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // A reannounce the user asked for goes out anyway.
        let forced = client.announce_with(&url, &other, true).await.unwrap_err();
        assert!(forced.is_unreachable(), "{forced}");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
