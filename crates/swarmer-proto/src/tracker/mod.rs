//! Tracker codecs without IO: the announce request and reply types shared by the HTTP tracker protocol
//! (BEP 3, BEP 23, BEP 7) and the UDP tracker protocol (BEP 15), scrapes over both (BEP 48, BEP 15),
//! plus the tier order of BEP 12.
//!
//! Everything a tracker sends is treated as hostile: replies are parsed with bounded memory, numbers are
//! clamped, peer lists are capped at [`MAX_PEERS`] and unusable addresses are dropped.

pub mod http;
pub mod scrape;
pub mod tiers;
pub mod udp;

use std::collections::HashSet;
use std::net::SocketAddr;

use crate::{InfoHash, PeerId};

/// At most this many peers are kept from one announce reply (all address families together), the first
/// usable ones in reply order; the rest are skipped without being stored, so a reply listing a million
/// peers costs no more memory than one listing 2,000. libtorrent's peer list holds 3,000 addresses per
/// torrent by default.
pub const MAX_PEERS: usize = 2_000;

/// The smallest announce interval accepted from a tracker, in seconds; smaller values (zero and negative
/// ones included) are raised to it.
///
/// One minute keeps a broken or hostile tracker from making us announce in a loop while leaving room for
/// the short intervals of small private trackers. libtorrent is stricter by default (its
/// `min_announce_interval` setting is 5 minutes).
pub const MIN_ANNOUNCE_INTERVAL: u32 = 60;

/// The largest announce interval accepted from a tracker, in seconds (one day); larger values are lowered
/// to it.
pub const MAX_ANNOUNCE_INTERVAL: u32 = 86_400;

/// Failure and warning messages from trackers are cut to this many characters.
pub const MAX_MESSAGE_CHARS: usize = 512;

/// A `tracker id` (BEP 3) longer than this many bytes is ignored rather than echoed back.
pub const MAX_TRACKER_ID_LEN: usize = 256;

/// The `event` of an announce (BEP 3 "event"; BEP 15 numbers them 0 none, 1 completed, 2 started,
/// 3 stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnnounceEvent {
    /// A regular announce: no `event` parameter.
    None,
    /// The first announce of a download to this tracker.
    Started,
    /// The download has just finished (sent once, not when starting already complete).
    Completed,
    /// The client is leaving the swarm.
    Stopped,
}

/// What a client tells a tracker in one announce (BEP 3 "trackers", BEP 15 "announce").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub peer_id: PeerId,
    /// The TCP port we accept peer connections on.
    pub port: u16,
    /// Bytes uploaded since the `started` event.
    pub uploaded: u64,
    /// Bytes downloaded since the `started` event.
    pub downloaded: u64,
    /// Bytes still missing to complete the torrent.
    pub left: u64,
    /// The event, if any.
    pub event: AnnounceEvent,
    /// How many peers we want; `None` lets the tracker choose (BEP 15 sends -1).
    pub num_want: Option<u32>,
    /// A random value fixed for the session that lets the tracker recognise us across IP changes.
    pub key: u32,
    /// The `tracker id` a previous HTTP reply gave us, echoed back as `trackerid` (BEP 3).
    pub tracker_id: Option<Vec<u8>>,
    /// What we say about Message Stream Encryption (HTTP only; BEP 15 has no such field).
    pub crypto: CryptoSupport,
    /// Our global IPv6 address, sent as BEP 7 `ipv6=` so a tracker reached over IPv4 can hand it
    /// to IPv6 peers (HTTP only; over BEP 15 the announce's own family tells).
    pub ipv6: Option<std::net::Ipv6Addr>,
}

/// The HTTP announce's `supportcrypto`/`requirecrypto` parameters (the MSE convention of Azureus
/// and libtorrent): trackers that honour them hand a client that requires encryption only peers
/// that support it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CryptoSupport {
    /// Neither parameter.
    #[default]
    Unstated,
    /// `supportcrypto=1`.
    Supported,
    /// `supportcrypto=1&requirecrypto=1`.
    Required,
}

/// A tracker's successful answer to an announce, already validated and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// Seconds to wait before the next regular announce, clamped to
    /// [`MIN_ANNOUNCE_INTERVAL`]`..=`[`MAX_ANNOUNCE_INTERVAL`].
    pub interval: u32,
    /// Seconds a client must wait between announces (`min interval`), clamped likewise; `None` if absent.
    pub min_interval: Option<u32>,
    /// `tracker id` to echo in later announces to this tracker (at most [`MAX_TRACKER_ID_LEN`] bytes).
    pub tracker_id: Option<Vec<u8>>,
    /// Peers with the complete torrent (`complete`, or BEP 15 seeders), if reported.
    pub seeders: Option<u32>,
    /// Peers still downloading (`incomplete`, or BEP 15 leechers), if reported.
    pub leechers: Option<u32>,
    /// Usable peer addresses: no port 0, no unspecified, broadcast or multicast address, no duplicates, at
    /// most [`MAX_PEERS`]. The list may include our own address.
    pub peers: Vec<SocketAddr>,
    /// `warning message`: the announce worked, but the tracker has something to say.
    pub warning: Option<String>,
}

/// Why a tracker reply was not a usable announce response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    /// The tracker refused the announce: BEP 3 `failure reason`, or a BEP 15 error packet. The message is
    /// sanitised (control characters replaced) and cut to [`MAX_MESSAGE_CHARS`].
    #[error("tracker refused the announce: {0}")]
    Failure(String),
    /// The reply is not what the protocol allows (bad bencode, HTML, truncated packet, odd peer list
    /// length, missing `interval`, ...). The message is printable and short.
    #[error("malformed tracker reply: {0}")]
    Malformed(String),
    /// A BEP 15 reply carries another transaction id than the request: it answers some other request.
    #[error("tracker reply has transaction id {got:#010x}, expected {expected:#010x}")]
    TransactionMismatch {
        /// The id we sent.
        expected: u32,
        /// The id in the reply.
        got: u32,
    },
    /// A BEP 15 reply carries an action other than the one requested (and is not an error packet).
    #[error("tracker reply has action {got}, expected {expected}")]
    UnexpectedAction {
        /// The action we sent.
        expected: u32,
        /// The action in the reply.
        got: u32,
    },
}

/// Clamps an interval in seconds from a tracker to the accepted range.
fn clamp_interval(seconds: i64) -> u32 {
    seconds.clamp(
        i64::from(MIN_ANNOUNCE_INTERVAL),
        i64::from(MAX_ANNOUNCE_INTERVAL),
    ) as u32
}

/// Makes tracker-supplied text safe to log: lossy UTF-8, trailing NULs and white space removed (opentracker
/// NUL-terminates its BEP 15 error messages), other control characters replaced by `?`, at most
/// [`MAX_MESSAGE_CHARS`] characters.
fn sanitize_message(raw: &[u8]) -> String {
    let raw = &raw[..raw.len().min(MAX_MESSAGE_CHARS * 4)];
    let end = raw
        .iter()
        .rposition(|&b| b != 0 && !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    String::from_utf8_lossy(&raw[..end])
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Collects peers: filters unusable ones, drops duplicates and stops at [`MAX_PEERS`].
#[derive(Default)]
struct PeerSink {
    peers: Vec<SocketAddr>,
    seen: HashSet<SocketAddr>,
}

impl PeerSink {
    fn push(&mut self, addr: SocketAddr) {
        if self.peers.len() < MAX_PEERS
            && crate::compact::usable_peer(addr).is_some()
            && self.seen.insert(addr)
        {
            self.peers.push(addr);
        }
    }

    fn is_full(&self) -> bool {
        self.peers.len() >= MAX_PEERS
    }

    /// Adds every entry of a compact peer string (BEP 23 for IPv4, BEP 7 for IPv6): `entry_len` is 6 or
    /// 18 bytes, address then port, both big-endian.
    fn push_compact(&mut self, bytes: &[u8], entry_len: usize) -> Result<(), TrackerError> {
        if bytes.len() % entry_len != 0 {
            return Err(TrackerError::Malformed(format!(
                "compact peer list of {} bytes is not a multiple of {entry_len}",
                bytes.len()
            )));
        }
        for entry in bytes.chunks_exact(entry_len) {
            if self.is_full() {
                break;
            }
            // Port 0 decodes to nothing; `push` drops the other unusable addresses.
            if let Some(addr) = crate::compact::decode(entry) {
                self.push(addr);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_clamped() {
        assert_eq!(clamp_interval(-5), MIN_ANNOUNCE_INTERVAL);
        assert_eq!(clamp_interval(0), MIN_ANNOUNCE_INTERVAL);
        assert_eq!(clamp_interval(1800), 1800);
        assert_eq!(clamp_interval(i64::MAX), MAX_ANNOUNCE_INTERVAL);
    }

    #[test]
    fn messages_are_sanitised_and_cut() {
        assert_eq!(sanitize_message(b"bad\x1b[31m\n\xff"), "bad?[31m?\u{fffd}");
        assert_eq!(
            sanitize_message(b"Connection ID missmatch.\0"),
            "Connection ID missmatch."
        );
        assert_eq!(sanitize_message(b" \n\0"), "");
        assert_eq!(sanitize_message(&[b'a'; 10_000]).len(), MAX_MESSAGE_CHARS);
    }

    #[test]
    fn unusable_peers_are_dropped() {
        let mut sink = PeerSink::default();
        for a in [
            "1.2.3.4:0",
            "0.0.0.0:1",
            "255.255.255.255:1",
            "224.0.0.1:1",
            "[::]:1",
            "[ff02::1]:1",
            "1.2.3.4:5",
            "1.2.3.4:5",
            "[2001:db8::1]:6881",
        ] {
            sink.push(a.parse().unwrap());
        }
        let expected: Vec<SocketAddr> = vec![
            "1.2.3.4:5".parse().unwrap(),
            "[2001:db8::1]:6881".parse().unwrap(),
        ];
        assert_eq!(sink.peers, expected);
    }
}
