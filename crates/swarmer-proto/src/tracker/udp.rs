//! The UDP tracker protocol (BEP 15) without IO: encoding connect and announce packets and decoding the
//! tracker's replies, all as pure functions over byte slices. Retransmission, timeouts and connection id
//! expiry belong to the caller.
//!
//! All integers are big-endian. Not implemented: scrape (action 2) and BEP 41 URL data options.

use std::net::SocketAddr;

use super::{
    AnnounceEvent, AnnounceRequest, AnnounceResponse, PeerSink, TrackerError, clamp_interval,
    sanitize_message,
};

/// The magic `protocol_id` of a connect request (BEP 15 "connect").
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// How long a connection id stays valid after the connect reply arrives, in seconds (BEP 15: "up to one
/// minute" at the client side).
pub const CONNECTION_ID_TTL_SECS: u64 = 60;

/// `action` 0: connect.
pub const ACTION_CONNECT: u32 = 0;
/// `action` 1: announce.
pub const ACTION_ANNOUNCE: u32 = 1;
/// `action` 3: error; the rest of the packet is a message.
pub const ACTION_ERROR: u32 = 3;

/// The failure message for a header-only announce reply (see [`decode_announce_response`]).
pub const EMPTY_ANNOUNCE_REPLY: &str =
    "empty announce reply (the tracker does not serve this torrent)";

/// Size of a connect request in bytes.
pub const CONNECT_REQUEST_LEN: usize = 16;
/// Size of an IPv4 announce request in bytes (no BEP 41 options).
pub const ANNOUNCE_REQUEST_LEN: usize = 98;

/// The address family of the socket the announce reply came over: it decides the peer entry size of
/// BEP 15 (6 bytes over IPv4, 18 bytes over IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressFamily {
    /// Peers are 4-byte address + 2-byte port.
    V4,
    /// Peers are 16-byte address + 2-byte port.
    V6,
}

impl AddressFamily {
    /// The family of `addr` (the tracker's address, which is the reply's source).
    pub fn of(addr: &SocketAddr) -> AddressFamily {
        match addr {
            SocketAddr::V4(_) => AddressFamily::V4,
            SocketAddr::V6(_) => AddressFamily::V6,
        }
    }

    fn peer_len(self) -> usize {
        match self {
            AddressFamily::V4 => 6,
            AddressFamily::V6 => 18,
        }
    }
}

/// Encodes a connect request: `protocol_id`, action 0, `transaction_id` (BEP 15 "connect").
pub fn encode_connect(transaction_id: u32) -> [u8; CONNECT_REQUEST_LEN] {
    let mut out = [0u8; CONNECT_REQUEST_LEN];
    out[..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
    out[8..12].copy_from_slice(&ACTION_CONNECT.to_be_bytes());
    out[12..16].copy_from_slice(&transaction_id.to_be_bytes());
    out
}

/// Decodes a connect reply to the request with `transaction_id` and returns the connection id.
///
/// Errors: [`TrackerError::Failure`] for an error packet (action 3), [`TrackerError::Malformed`] when
/// shorter than 16 bytes, [`TrackerError::TransactionMismatch`] or [`TrackerError::UnexpectedAction`]
/// when it answers something else.
pub fn decode_connect_response(packet: &[u8], transaction_id: u32) -> Result<u64, TrackerError> {
    let body = check_header(packet, transaction_id, ACTION_CONNECT, 16)?;
    Ok(u64::from_be_bytes(first_n(body)))
}

/// Encodes an announce request (BEP 15 "announce"): connection id, action 1, transaction id, info hash,
/// peer id, downloaded, left, uploaded, event (0 none, 1 completed, 2 started, 3 stopped), IP 0 (the
/// tracker uses the source address), key, `num_want` (-1 for the tracker's default) and port.
///
/// `req.tracker_id` has no place in BEP 15 and is ignored.
pub fn encode_announce(
    connection_id: u64,
    transaction_id: u32,
    req: &AnnounceRequest,
) -> [u8; ANNOUNCE_REQUEST_LEN] {
    let event: u32 = match req.event {
        AnnounceEvent::None => 0,
        AnnounceEvent::Completed => 1,
        AnnounceEvent::Started => 2,
        AnnounceEvent::Stopped => 3,
    };
    // BEP 15 num_want is a signed 32-bit value where -1 means "default"; larger wishes are capped.
    let num_want: i32 = match req.num_want {
        None => -1,
        Some(n) => i32::try_from(n).unwrap_or(i32::MAX),
    };
    let mut out = [0u8; ANNOUNCE_REQUEST_LEN];
    let mut w = Writer {
        buf: &mut out,
        pos: 0,
    };
    w.put(&connection_id.to_be_bytes());
    w.put(&ACTION_ANNOUNCE.to_be_bytes());
    w.put(&transaction_id.to_be_bytes());
    w.put(&req.info_hash.0);
    w.put(&req.peer_id.0);
    w.put(&req.downloaded.to_be_bytes());
    w.put(&req.left.to_be_bytes());
    w.put(&req.uploaded.to_be_bytes());
    w.put(&event.to_be_bytes());
    w.put(&0u32.to_be_bytes()); // IP address: 0 = the packet's source address
    w.put(&req.key.to_be_bytes());
    w.put(&num_want.to_be_bytes());
    w.put(&req.port.to_be_bytes());
    debug_assert_eq!(w.pos, ANNOUNCE_REQUEST_LEN);
    out
}

/// Decodes an announce reply to the request with `transaction_id`. `family` is the address family of the
/// socket the reply came over; it sets the peer entry size (6 or 18 bytes).
///
/// The interval (a signed 32-bit number of seconds) is clamped like an HTTP one, so a negative, zero or
/// huge one is raised or lowered into range; seeders and leechers are reported unless negative; the peer
/// list drops port 0 and unspecified, broadcast and multicast addresses (loopback is kept) and is capped
/// at [`MAX_PEERS`](super::MAX_PEERS), though a datagram holds at most 10,914 IPv4 entries anyway. Errors: as for [`decode_connect_response`],
/// plus [`TrackerError::Malformed`] when the reply is shorter than 20 bytes or its peer bytes are not a
/// whole number of entries.
pub fn decode_announce_response(
    packet: &[u8],
    transaction_id: u32,
    family: AddressFamily,
) -> Result<AnnounceResponse, TrackerError> {
    if packet.len() == 8 && check_header(packet, transaction_id, ACTION_ANNOUNCE, 8).is_ok() {
        // opentracker answers an announce for an info hash it does not serve (not whitelisted) with the
        // bare 8-byte header; its only sensible reading is a refusal.
        return Err(TrackerError::Failure(EMPTY_ANNOUNCE_REPLY.into()));
    }
    let body = check_header(packet, transaction_id, ACTION_ANNOUNCE, 20)?;
    // BEP 15 declares all three as int32_t: a negative interval is clamped like any other, and a negative
    // count is no count.
    let interval = i32::from_be_bytes(first_n(body));
    let count = |at: usize| u32::try_from(i32::from_be_bytes(first_n(&body[at..]))).ok();
    let (leechers, seeders) = (count(4), count(8));
    let mut sink = PeerSink::default();
    sink.push_compact(&body[12..], family.peer_len())?;
    Ok(AnnounceResponse {
        interval: clamp_interval(i64::from(interval)),
        min_interval: None,
        tracker_id: None,
        seeders,
        leechers,
        peers: sink.peers,
        warning: None,
    })
}

/// Checks the 8-byte header (action, transaction id) of a reply and the minimum size, turns error packets
/// into [`TrackerError::Failure`] and returns the bytes after the header.
fn check_header(
    packet: &[u8],
    transaction_id: u32,
    expected_action: u32,
    min_len: usize,
) -> Result<&[u8], TrackerError> {
    if packet.len() < 8 {
        return Err(TrackerError::Malformed(format!(
            "UDP tracker reply of {} bytes is shorter than its 8-byte header",
            packet.len()
        )));
    }
    let action = u32::from_be_bytes(first_n(packet));
    let got = u32::from_be_bytes(first_n(&packet[4..]));
    if got != transaction_id {
        return Err(TrackerError::TransactionMismatch {
            expected: transaction_id,
            got,
        });
    }
    if action == ACTION_ERROR {
        return Err(TrackerError::Failure(sanitize_message(&packet[8..])));
    }
    if action != expected_action {
        return Err(TrackerError::UnexpectedAction {
            expected: expected_action,
            got: action,
        });
    }
    if packet.len() < min_len {
        return Err(TrackerError::Malformed(format!(
            "UDP tracker reply of {} bytes is shorter than {min_len} bytes",
            packet.len()
        )));
    }
    Ok(&packet[8..])
}

/// The first `N` bytes of `bytes`; callers have checked the length, and a short slice gives zeros rather
/// than a panic.
fn first_n<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(..N) {
        out.copy_from_slice(src);
    }
    out
}

struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        self.buf[self.pos..end].copy_from_slice(bytes);
        self.pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::super::MIN_ANNOUNCE_INTERVAL;
    use super::*;
    use crate::{InfoHash, PeerId};

    fn header(action: u32, tid: u32) -> Vec<u8> {
        [action.to_be_bytes(), tid.to_be_bytes()].concat()
    }

    #[test]
    fn connect_round_trip() {
        let req = encode_connect(0xdead_beef);
        assert_eq!(
            req,
            *b"\x00\x00\x04\x17\x27\x10\x19\x80\x00\x00\x00\x00\xde\xad\xbe\xef"
        );
        let mut reply = header(0, 0xdead_beef);
        reply.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        assert_eq!(
            decode_connect_response(&reply, 0xdead_beef),
            Ok(0x0102_0304_0506_0708)
        );
        assert_eq!(
            decode_connect_response(&reply, 7),
            Err(TrackerError::TransactionMismatch {
                expected: 7,
                got: 0xdead_beef
            })
        );
        assert!(matches!(
            decode_connect_response(&reply[..15], 0xdead_beef),
            Err(TrackerError::Malformed(_))
        ));
        let mut wrong = header(1, 9);
        wrong.extend_from_slice(&[0; 8]);
        assert_eq!(
            decode_connect_response(&wrong, 9),
            Err(TrackerError::UnexpectedAction {
                expected: 0,
                got: 1
            })
        );
    }

    #[test]
    fn announce_layout() {
        let req = AnnounceRequest {
            info_hash: InfoHash([0x11; 20]),
            peer_id: PeerId([0x22; 20]),
            port: 6881,
            uploaded: 3,
            downloaded: 1,
            left: 2,
            event: AnnounceEvent::Started,
            num_want: None,
            key: 0xabcd,
            tracker_id: None,
        };
        let p = encode_announce(0x99, 0x42, &req);
        assert_eq!(&p[0..8], &0x99u64.to_be_bytes());
        assert_eq!(&p[8..12], &1u32.to_be_bytes());
        assert_eq!(&p[12..16], &0x42u32.to_be_bytes());
        assert_eq!(&p[16..36], &[0x11; 20]);
        assert_eq!(&p[36..56], &[0x22; 20]);
        assert_eq!(&p[56..64], &1u64.to_be_bytes());
        assert_eq!(&p[64..72], &2u64.to_be_bytes());
        assert_eq!(&p[72..80], &3u64.to_be_bytes());
        assert_eq!(&p[80..84], &2u32.to_be_bytes());
        assert_eq!(&p[84..88], &[0; 4]);
        assert_eq!(&p[88..92], &0xabcdu32.to_be_bytes());
        assert_eq!(&p[92..96], &(-1i32).to_be_bytes());
        assert_eq!(&p[96..98], &6881u16.to_be_bytes());
        let p = encode_announce(
            0,
            0,
            &AnnounceRequest {
                event: AnnounceEvent::Stopped,
                num_want: Some(u32::MAX),
                ..req
            },
        );
        assert_eq!(&p[80..84], &3u32.to_be_bytes());
        assert_eq!(&p[92..96], &i32::MAX.to_be_bytes());
    }

    #[test]
    fn announce_reply_v4_and_v6() {
        let mut reply = header(1, 5);
        for v in [1800u32, 7, 9] {
            reply.extend_from_slice(&v.to_be_bytes());
        }
        let v4 = reply.clone();
        let mut v4 = v4;
        v4.extend_from_slice(&[127, 0, 0, 2, 0x1a, 0xe1, 10, 0, 0, 1, 0, 0]);
        let r = decode_announce_response(&v4, 5, AddressFamily::V4).unwrap();
        assert_eq!(r.interval, 1800);
        assert_eq!((r.seeders, r.leechers), (Some(9), Some(7)));
        // The second peer has port 0 and is dropped.
        assert_eq!(r.peers, vec!["127.0.0.2:6881".parse().unwrap()]);
        // The same 12 peer bytes are not a whole number of 18-byte entries.
        assert!(matches!(
            decode_announce_response(&v4, 5, AddressFamily::V6),
            Err(TrackerError::Malformed(_))
        ));

        let mut v6 = reply;
        v6.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&6881u16.to_be_bytes());
        let r = decode_announce_response(&v6, 5, AddressFamily::V6).unwrap();
        assert_eq!(r.peers, vec!["[::1]:6881".parse().unwrap()]);

        let mut tiny = header(1, 5);
        tiny.extend_from_slice(&[0; 12]);
        let r = decode_announce_response(&tiny, 5, AddressFamily::V4).unwrap();
        assert_eq!(r.interval, MIN_ANNOUNCE_INTERVAL);
        assert!(r.peers.is_empty());
        assert!(matches!(
            decode_announce_response(&tiny[..19], 5, AddressFamily::V4),
            Err(TrackerError::Malformed(_))
        ));
        // What opentracker sends for an info hash that is not on its whitelist.
        assert_eq!(
            decode_announce_response(&tiny[..8], 5, AddressFamily::V4),
            Err(TrackerError::Failure(EMPTY_ANNOUNCE_REPLY.into()))
        );
        assert!(matches!(
            decode_announce_response(&tiny[..8], 6, AddressFamily::V4),
            Err(TrackerError::TransactionMismatch { .. })
        ));
    }

    #[test]
    fn hostile_announce_replies_are_clamped_and_filtered() {
        use super::super::{MAX_ANNOUNCE_INTERVAL, MAX_PEERS};
        let reply = |interval: i32, leechers: i32, seeders: i32| {
            let mut p = header(1, 5);
            for v in [interval, leechers, seeders] {
                p.extend_from_slice(&v.to_be_bytes());
            }
            p
        };
        for (interval, expected) in [
            (-1, MIN_ANNOUNCE_INTERVAL),
            (i32::MIN, MIN_ANNOUNCE_INTERVAL),
            (0, MIN_ANNOUNCE_INTERVAL),
            (i32::MAX, MAX_ANNOUNCE_INTERVAL),
        ] {
            let r =
                decode_announce_response(&reply(interval, -1, -7), 5, AddressFamily::V4).unwrap();
            assert_eq!(r.interval, expected);
            assert_eq!((r.seeders, r.leechers), (None, None));
        }
        // A largest-possible datagram: 10,914 entries, mostly unusable; the usable ones are capped.
        let mut p = reply(1800, 1, 1);
        let bad: [[u8; 6]; 4] = [
            [0, 0, 0, 0, 0x1a, 0xe1],
            [255, 255, 255, 255, 0x1a, 0xe1],
            [224, 0, 0, 1, 0x1a, 0xe1],
            [127, 0, 0, 1, 0, 0],
        ];
        for entry in bad {
            p.extend_from_slice(&entry);
        }
        p.extend_from_slice(&[127, 0, 0, 3, 0x1a, 0xe1]);
        let mut i = 0u32;
        while p.len() + 6 <= 65_507 {
            p.extend_from_slice(&(0x0a00_0000 + i).to_be_bytes());
            p.extend_from_slice(&6881u16.to_be_bytes());
            i += 1;
        }
        let r = decode_announce_response(&p, 5, AddressFamily::V4).unwrap();
        assert_eq!(r.peers.len(), MAX_PEERS);
        assert_eq!(r.peers[0], "127.0.0.3:6881".parse().unwrap());
        // IPv6: unspecified and multicast are dropped, loopback kept.
        let mut p = reply(1800, 1, 1);
        for (ip, port) in [
            (std::net::Ipv6Addr::UNSPECIFIED, 1u16),
            ("ff02::1".parse().unwrap(), 1),
            (std::net::Ipv6Addr::LOCALHOST, 0),
            (std::net::Ipv6Addr::LOCALHOST, 2),
        ] {
            p.extend_from_slice(&ip.octets());
            p.extend_from_slice(&port.to_be_bytes());
        }
        let r = decode_announce_response(&p, 5, AddressFamily::V6).unwrap();
        assert_eq!(r.peers, vec!["[::1]:2".parse().unwrap()]);
    }

    #[test]
    fn error_packets_become_failures() {
        let mut err = header(3, 77);
        err.extend_from_slice(b"Connection ID missmatch.\n");
        assert_eq!(
            decode_announce_response(&err, 77, AddressFamily::V4),
            Err(TrackerError::Failure("Connection ID missmatch.".into()))
        );
        assert_eq!(
            decode_connect_response(&header(3, 77), 77),
            Err(TrackerError::Failure(String::new()))
        );
        // An error packet for another transaction is not ours.
        assert!(matches!(
            decode_connect_response(&err, 78),
            Err(TrackerError::TransactionMismatch { .. })
        ));
    }

    #[test]
    fn short_packets_never_panic() {
        for len in 0..40 {
            let p = vec![0u8; len];
            let _ = decode_connect_response(&p, 0);
            let _ = decode_announce_response(&p, 0, AddressFamily::V4);
            let _ = decode_announce_response(&p, 0, AddressFamily::V6);
        }
    }
}
