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

/// Whether `packet` can be a reply to the request with `transaction_id`: it is long enough to carry
/// a transaction id (8 bytes, BEP 15) and carries that one. A client skips other packets (late
/// answers to an earlier retransmission, a stray short datagram) and keeps waiting, instead of
/// ending the exchange on a packet that may not be meant for it.
pub fn is_reply_to(packet: &[u8], transaction_id: u32) -> bool {
    packet.len() >= 8 && packet[4..8] == transaction_id.to_be_bytes()
}

/// Checks the 8-byte header (action, transaction id) of a reply and the minimum size, turns error packets
/// into [`TrackerError::Failure`] and returns the bytes after the header.
pub(super) fn check_header(
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
mod tests;
