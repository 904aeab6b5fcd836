//! Announcing over both address families (BEP 7), as libtorrent does: a tracker whose host name
//! resolves to IPv4 and IPv6 addresses records a peer under the announce's source address, so a
//! dual-stack client announces once from each family to be found by peers of both, and merges the
//! two peer lists. The decision (does the host have both?) and the merge live here.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use swarmer_proto::tracker::{AnnounceRequest, AnnounceResponse, MAX_PEERS};

use super::{AnnounceError, TrackerClient};

/// How long the second family's announce may take once the first has answered: a host with
/// broken IPv6 (no route, or a black hole) must not hold every announce for the full timeout.
const SECOND_FAMILY_GRACE: Duration = Duration::from_secs(5);

/// Announces over IPv4 and IPv6 at once and merges the replies ([`merge`]); once one family has
/// answered, the other is given [`SECOND_FAMILY_GRACE`] and then dropped (a timeout).
pub(super) async fn announce_both(
    client: &TrackerClient,
    url: &str,
    req: &AnnounceRequest,
) -> Result<AnnounceResponse, AnnounceError> {
    let v4 = client.announce_over(url, req, Some(true));
    let v6 = client.announce_over(url, req, Some(false));
    tokio::pin!(v4, v6);
    let (first_is_v4, first) = tokio::select! {
        r = &mut v4 => (true, r),
        r = &mut v6 => (false, r),
    };
    let other = if first_is_v4 { v6 } else { v4 };
    let second = match first {
        Ok(_) => tokio::time::timeout(SECOND_FAMILY_GRACE, other)
            .await
            .unwrap_or(Err(AnnounceError::Timeout(SECOND_FAMILY_GRACE))),
        Err(_) => other.await,
    };
    if first_is_v4 {
        merge(url, first, second)
    } else {
        merge(url, second, first)
    }
}

/// Whether `url`'s host is a name with addresses of both families (an address literal never is),
/// resolved within the UDP exchange's first bound; a failed resolution says no, and the announce's
/// own resolution reports it.
pub(super) async fn resolves_to_both(client: &TrackerClient, url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return false;
    };
    if host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
        return false;
    }
    let bound = client.config.udp_initial_timeout * 2;
    match tokio::time::timeout(bound, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addrs)) => has_both(addrs),
        _ => false,
    }
}

fn has_both(addrs: impl IntoIterator<Item = SocketAddr>) -> bool {
    let (mut v4, mut v6) = (false, false);
    for a in addrs {
        v4 |= a.is_ipv4();
        v6 |= a.is_ipv6();
    }
    v4 && v6
}

/// The IPv4 announce's reply with the IPv6 one's peers added (no duplicates, at most
/// [`MAX_PEERS`]) and the larger swarm counts; either reply alone if the other failed (logged);
/// the IPv4 error if both failed.
pub(super) fn merge(
    url: &str,
    v4: Result<AnnounceResponse, AnnounceError>,
    v6: Result<AnnounceResponse, AnnounceError>,
) -> Result<AnnounceResponse, AnnounceError> {
    match (v4, v6) {
        (Ok(mut a), Ok(b)) => {
            for peer in b.peers {
                if a.peers.len() < MAX_PEERS && !a.peers.contains(&peer) {
                    a.peers.push(peer);
                }
            }
            a.seeders = a.seeders.max(b.seeders);
            a.leechers = a.leechers.max(b.leechers);
            Ok(a)
        }
        (Ok(a), Err(e)) => {
            tracing::debug!(tracker = %url, error = %e, "announce over IPv6 failed");
            Ok(a)
        }
        (Err(e), Ok(b)) => {
            tracing::debug!(tracker = %url, error = %e, "announce over IPv4 failed");
            Ok(b)
        }
        (Err(e), Err(_)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(peers: &[&str], seeders: u32) -> AnnounceResponse {
        AnnounceResponse {
            interval: 1800,
            min_interval: None,
            tracker_id: None,
            seeders: Some(seeders),
            leechers: None,
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
            warning: None,
        }
    }

    #[test]
    fn both_families_are_needed_to_split() {
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert!(has_both([v4, v6]));
        assert!(!has_both([v4, v4]));
        assert!(!has_both([v6]));
        assert!(!has_both([]));
    }

    #[test]
    fn peers_of_both_families_are_merged() {
        let a = reply(&["1.2.3.4:1", "5.6.7.8:2"], 3);
        let b = reply(&["[2001:db8::1]:1", "1.2.3.4:1"], 5);
        let merged = merge("t", Ok(a), Ok(b)).unwrap();
        let expect = ["1.2.3.4:1", "5.6.7.8:2", "[2001:db8::1]:1"];
        let expect: Vec<SocketAddr> = expect.iter().map(|p| p.parse().unwrap()).collect();
        assert_eq!(merged.peers, expect);
        assert_eq!(merged.seeders, Some(5));
        let timeout = || AnnounceError::Timeout(std::time::Duration::from_secs(1));
        let only6 = merge("t", Err(timeout()), Ok(reply(&["[::2]:1"], 0))).unwrap();
        assert_eq!(only6.peers.len(), 1);
        assert!(merge("t", Err(timeout()), Err(timeout())).is_err());
    }
}
