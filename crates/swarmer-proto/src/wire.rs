//! The peer wire codec: the BEP 3 handshake and length-prefixed messages, plus the message ids of the
//! BEP 5 `port`, BEP 6 fast extension and BEP 10 extension protocol. It only turns bytes into
//! [`Message`]s and back; what a message means for a connection is decided elsewhere.
//!
//! Decoding borrows from the caller's receive buffer (zero copy) and reports "need more bytes" as
//! `Ok(None)`, so any split of a byte stream decodes the same. A length prefix over the caller's limit is
//! rejected from its first four bytes, before any body is buffered.

use crate::{InfoHash, PeerId};

/// The protocol string of the handshake (BEP 3, "handshake"), preceded on the wire by its length, 19.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";

/// The length of a handshake in bytes: 1 + 19 + 8 reserved + 20 info hash + 20 peer id.
pub const HANDSHAKE_LEN: usize = 68;

/// The first 20 bytes of every handshake: the protocol string's length, then the string.
const HANDSHAKE_PREFIX: [u8; 20] = {
    let mut p = [0u8; 20];
    p[0] = PROTOCOL.len() as u8;
    let mut i = 0;
    while i < PROTOCOL.len() {
        p[i + 1] = PROTOCOL[i];
        i += 1;
    }
    p
};

/// Reserved bit of BEP 5 (DHT): byte 7, `0x01`. Reserved masks are combined with `|` per byte
/// (see [`reserved_bytes`]).
pub const RESERVED_DHT: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 0x01];

/// Reserved bit of BEP 6 (fast extension): byte 7, `0x04`.
pub const RESERVED_FAST: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 0x04];

/// Reserved bit of BEP 10 (extension protocol): byte 5, `0x10`.
pub const RESERVED_EXTENSIONS: [u8; 8] = [0, 0, 0, 0, 0, 0x10, 0, 0];

/// The length of the header of a `piece` message: 4-byte length prefix, id, index, begin.
pub const PIECE_HEADER_LEN: usize = 13;

/// The reserved bytes announcing the given extensions (the byte-wise OR of the `RESERVED_*` masks).
pub const fn reserved_bytes(dht: bool, fast: bool, extensions: bool) -> [u8; 8] {
    let mut out = [0u8; 8];
    let mut i = 0;
    while i < 8 {
        if dht {
            out[i] |= RESERVED_DHT[i];
        }
        if fast {
            out[i] |= RESERVED_FAST[i];
        }
        if extensions {
            out[i] |= RESERVED_EXTENSIONS[i];
        }
        i += 1;
    }
    out
}

/// The largest message a connection to a torrent of `piece_count` pieces needs to accept: the larger of
/// a full `bitfield` (1 + ⌈pieces / 8⌉ bytes) and 32 KiB, which holds a 16 KiB `piece` block or a BEP 9
/// metadata piece with its bencoded header, with room to spare. Pass it as `max_len` to
/// [`Message::decode`].
pub fn max_message_len(piece_count: u32) -> u32 {
    let bitfield = 1 + piece_count.div_ceil(8);
    bitfield.max(2 * crate::BLOCK_SIZE)
}

/// Why bytes from a peer are not a valid handshake or message. Every variant is the peer's fault
/// (malformed input): the connection should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A length prefix larger than the receiver's limit (it would make us buffer `len` bytes).
    #[error("message of {len} bytes is longer than the limit of {max} bytes")]
    MessageTooLong {
        /// The length prefix, in bytes (id and payload).
        len: u32,
        /// The receiver's limit, in bytes.
        max: u32,
    },
    /// A message whose length does not fit its id (BEP 3 and BEP 6 fix most lengths).
    #[error("message id {id} with length {len} bytes is malformed")]
    BadLength {
        /// The message id.
        id: u8,
        /// The length prefix, in bytes (id and payload).
        len: u32,
    },
    /// The handshake does not start with byte 19 followed by `BitTorrent protocol` (BEP 3, "handshake").
    #[error("not a BitTorrent handshake")]
    BadProtocol,
}

/// The handshake both sides send first (BEP 3, "handshake").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// The 8 reserved bytes, each bit announcing an extension (see the `RESERVED_*` constants).
    pub reserved: [u8; 8],
    /// The torrent the connection is about.
    pub info_hash: InfoHash,
    /// The sender's peer id.
    pub peer_id: PeerId,
}

impl Handshake {
    /// The handshake's 68 bytes on the wire.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[..20].copy_from_slice(&HANDSHAKE_PREFIX);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash.0);
        out[48..68].copy_from_slice(&self.peer_id.0);
        out
    }

    /// Decodes a handshake from the front of `buf` (which may hold more bytes after it; a handshake
    /// is always [`HANDSHAKE_LEN`] bytes).
    ///
    /// `Ok(None)`: fewer than 68 bytes so far and those are a valid start. Errors with
    /// [`WireError::BadProtocol`] as soon as the bytes available contradict the protocol prefix, so a
    /// non-BitTorrent peer is dropped after its first byte.
    pub fn decode(buf: &[u8]) -> Result<Option<Handshake>, WireError> {
        let seen = buf.len().min(HANDSHAKE_PREFIX.len());
        if buf[..seen] != HANDSHAKE_PREFIX[..seen] {
            return Err(WireError::BadProtocol);
        }
        let Some(rest) = buf.get(20..HANDSHAKE_LEN) else {
            return Ok(None);
        };
        let mut reserved = [0u8; 8];
        let mut info_hash = [0u8; 20];
        let mut peer_id = [0u8; 20];
        reserved.copy_from_slice(&rest[..8]);
        info_hash.copy_from_slice(&rest[8..28]);
        peer_id.copy_from_slice(&rest[28..48]);
        Ok(Some(Handshake {
            reserved,
            info_hash: InfoHash(info_hash),
            peer_id: PeerId(peer_id),
        }))
    }

    /// Whether the sender supports the BEP 6 fast extension (`reserved[7] & 0x04`).
    pub fn supports_fast(&self) -> bool {
        self.reserved[7] & RESERVED_FAST[7] != 0
    }

    /// Whether the sender supports the BEP 10 extension protocol (`reserved[5] & 0x10`).
    pub fn supports_extensions(&self) -> bool {
        self.reserved[5] & RESERVED_EXTENSIONS[5] != 0
    }

    /// Whether the sender runs a BEP 5 DHT node (`reserved[7] & 0x01`).
    pub fn supports_dht(&self) -> bool {
        self.reserved[7] & RESERVED_DHT[7] != 0
    }
}

/// The block named by a `request`, `cancel` or `reject` message (BEP 3, BEP 6): `length` bytes at byte
/// `begin` of piece `index`. The values are the peer's, unchecked against any torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockRequest {
    /// The piece index.
    pub index: u32,
    /// Byte offset inside the piece.
    pub begin: u32,
    /// Length in bytes.
    pub length: u32,
}

/// One peer wire message after the handshake, borrowing its payload from the receive buffer.
///
/// Indices and lengths are the peer's, not yet checked against the torrent's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A zero-length message keeping the connection open (BEP 3).
    KeepAlive,
    /// id 0: the sender will not serve our requests (BEP 3).
    Choke,
    /// id 1: the sender will serve our requests (BEP 3).
    Unchoke,
    /// id 2: the sender wants pieces we have (BEP 3).
    Interested,
    /// id 3: the sender wants nothing from us (BEP 3).
    NotInterested,
    /// id 4: the sender now has this piece (BEP 3).
    Have(u32),
    /// id 5: the pieces the sender has, as raw bitfield bytes (BEP 3); check with
    /// [`crate::Bitfield::from_bytes`].
    Bitfield(&'a [u8]),
    /// id 6: the sender asks for a block (BEP 3).
    Request(BlockRequest),
    /// id 7: a block of data (BEP 3): `data` holds the bytes at `begin` of piece `index`.
    Piece {
        /// The piece index.
        index: u32,
        /// Byte offset inside the piece.
        begin: u32,
        /// The block's bytes.
        data: &'a [u8],
    },
    /// id 8: the sender withdraws a request (BEP 3).
    Cancel(BlockRequest),
    /// id 9: the sender's DHT node listens on this UDP port (BEP 5).
    Port(u16),
    /// id 13: the sender suggests we download this piece (BEP 6).
    Suggest(u32),
    /// id 14: the sender has every piece (BEP 6), in place of a bitfield.
    HaveAll,
    /// id 15: the sender has no piece (BEP 6), in place of a bitfield.
    HaveNone,
    /// id 16: the sender will not serve this request (BEP 6).
    Reject(BlockRequest),
    /// id 17: we may request this piece even while choked (BEP 6).
    AllowedFast(u32),
    /// id 20: an extension message (BEP 10): `id` 0 is the extension handshake, others are the ids the
    /// receiver assigned in its handshake.
    Extended {
        /// The extended message id.
        id: u8,
        /// The extension's payload (usually bencoded).
        payload: &'a [u8],
    },
    /// A message id this codec does not know. Callers skip it; it is not an error (BEP 3 allows
    /// extensions to add ids).
    Unknown {
        /// The message id.
        id: u8,
        /// The payload after the id.
        payload: &'a [u8],
    },
}

const CHOKE: u8 = 0;
const UNCHOKE: u8 = 1;
const INTERESTED: u8 = 2;
const NOT_INTERESTED: u8 = 3;
const HAVE: u8 = 4;
const BITFIELD: u8 = 5;
const REQUEST: u8 = 6;
const PIECE: u8 = 7;
const CANCEL: u8 = 8;
const PORT: u8 = 9;
const SUGGEST: u8 = 13;
const HAVE_ALL: u8 = 14;
const HAVE_NONE: u8 = 15;
const REJECT: u8 = 16;
const ALLOWED_FAST: u8 = 17;
const EXTENDED: u8 = 20;

/// Reads a big-endian `u32` at `at`; the caller has checked the length.
fn be32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(b)
}

/// The length prefix of every message after the handshake, in bytes (BEP 3, "peer messages").
pub const LENGTH_PREFIX_LEN: usize = 4;

/// The length in bytes of the frame at the front of `buf` (prefix included, so its body is
/// `buf[4..n]`), once the 4-byte length prefix is in: `Ok(None)` while fewer than 4 bytes are
/// there. The frame is complete when `buf.len() >= n`; until then a caller can reserve room for it.
///
/// This is the one place the length prefix is read: a connection cuts its byte stream into frames
/// with it and hands each frame's body to [`Message::decode_frame`].
///
/// Errors: [`WireError::MessageTooLong`] as soon as the prefix says the length exceeds `max_len`
/// bytes, so the body is never waited for or buffered.
pub fn frame_len(buf: &[u8], max_len: u32) -> Result<Option<usize>, WireError> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX_LEN) else {
        return Ok(None);
    };
    let len = be32(prefix, 0);
    if len > max_len {
        return Err(WireError::MessageTooLong { len, max: max_len });
    }
    // `len` fits in usize on every platform with at least 32-bit pointers; on a smaller one such a
    // frame is refused as too long for memory.
    match usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(LENGTH_PREFIX_LEN))
    {
        Some(total) => Ok(Some(total)),
        None => Err(WireError::MessageTooLong { len, max: max_len }),
    }
}

impl<'a> Message<'a> {
    /// Decodes one length-prefixed message from the front of `buf` (BEP 3, "peer messages"):
    /// [`frame_len`] then [`Message::decode_frame`].
    ///
    /// - `Ok(None)`: `buf` does not hold a whole message yet; call again with more bytes.
    /// - `Ok(Some((msg, used)))`: the message and the number of bytes it took (4 + its length prefix).
    /// - `Err(MessageTooLong)` as soon as the 4-byte prefix says the length exceeds `max_len` bytes: the
    ///   body is never waited for. `Err(BadLength)` when a message's length does not fit its id.
    pub fn decode(buf: &'a [u8], max_len: u32) -> Result<Option<(Message<'a>, usize)>, WireError> {
        let Some(used) = frame_len(buf, max_len)? else {
            return Ok(None);
        };
        let Some(body) = buf.get(LENGTH_PREFIX_LEN..used) else {
            return Ok(None);
        };
        Ok(Some((Self::decode_frame(body)?, used)))
    }

    /// Decodes the body of one frame cut by [`frame_len`]: the message id and payload, without the
    /// length prefix. An empty body is a keep-alive.
    ///
    /// Errors: [`WireError::BadLength`] when the body's length does not fit its id.
    pub fn decode_frame(body: &'a [u8]) -> Result<Message<'a>, WireError> {
        match body.split_first() {
            None => Ok(Message::KeepAlive),
            // A body of a frame that `frame_len` cut is at most `max_len` bytes, so it fits a u32.
            Some((&id, payload)) => Self::parse(id, payload, body.len() as u32),
        }
    }

    /// Interprets the id and payload of a complete message of `len` bytes.
    fn parse(id: u8, payload: &'a [u8], len: u32) -> Result<Message<'a>, WireError> {
        let bad = WireError::BadLength { id, len };
        let fixed = |n: usize| if payload.len() == n { Ok(()) } else { Err(bad) };
        let block = |p: &[u8]| BlockRequest {
            index: be32(p, 0),
            begin: be32(p, 4),
            length: be32(p, 8),
        };
        Ok(match id {
            CHOKE => fixed(0).map(|()| Message::Choke)?,
            UNCHOKE => fixed(0).map(|()| Message::Unchoke)?,
            INTERESTED => fixed(0).map(|()| Message::Interested)?,
            NOT_INTERESTED => fixed(0).map(|()| Message::NotInterested)?,
            HAVE => fixed(4).map(|()| Message::Have(be32(payload, 0)))?,
            BITFIELD => Message::Bitfield(payload),
            REQUEST => fixed(12).map(|()| Message::Request(block(payload)))?,
            PIECE => {
                if payload.len() < 8 {
                    return Err(bad);
                }
                Message::Piece {
                    index: be32(payload, 0),
                    begin: be32(payload, 4),
                    data: &payload[8..],
                }
            }
            CANCEL => fixed(12).map(|()| Message::Cancel(block(payload)))?,
            PORT => {
                fixed(2).map(|()| Message::Port(u16::from_be_bytes([payload[0], payload[1]])))?
            }
            SUGGEST => fixed(4).map(|()| Message::Suggest(be32(payload, 0)))?,
            HAVE_ALL => fixed(0).map(|()| Message::HaveAll)?,
            HAVE_NONE => fixed(0).map(|()| Message::HaveNone)?,
            REJECT => fixed(12).map(|()| Message::Reject(block(payload)))?,
            ALLOWED_FAST => fixed(4).map(|()| Message::AllowedFast(be32(payload, 0)))?,
            EXTENDED => match payload.split_first() {
                Some((&id, payload)) => Message::Extended { id, payload },
                None => return Err(bad),
            },
            id => Message::Unknown { id, payload },
        })
    }

    /// The message id, or `None` for a keep-alive (which has none).
    pub fn id(&self) -> Option<u8> {
        Some(match self {
            Message::KeepAlive => return None,
            Message::Choke => CHOKE,
            Message::Unchoke => UNCHOKE,
            Message::Interested => INTERESTED,
            Message::NotInterested => NOT_INTERESTED,
            Message::Have(_) => HAVE,
            Message::Bitfield(_) => BITFIELD,
            Message::Request(_) => REQUEST,
            Message::Piece { .. } => PIECE,
            Message::Cancel(_) => CANCEL,
            Message::Port(_) => PORT,
            Message::Suggest(_) => SUGGEST,
            Message::HaveAll => HAVE_ALL,
            Message::HaveNone => HAVE_NONE,
            Message::Reject(_) => REJECT,
            Message::AllowedFast(_) => ALLOWED_FAST,
            Message::Extended { .. } => EXTENDED,
            Message::Unknown { id, .. } => *id,
        })
    }

    /// The length of the message after its 4-byte prefix (id and payload), in bytes.
    fn body_len(&self) -> usize {
        match self {
            Message::KeepAlive => 0,
            Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => 1,
            Message::Have(_) | Message::Suggest(_) | Message::AllowedFast(_) => 5,
            Message::Request(_) | Message::Cancel(_) | Message::Reject(_) => 13,
            Message::Port(_) => 3,
            Message::Bitfield(bytes) => 1 + bytes.len(),
            Message::Piece { data, .. } => 9 + data.len(),
            Message::Extended { payload, .. } => 2 + payload.len(),
            Message::Unknown { payload, .. } => 1 + payload.len(),
        }
    }

    /// The number of bytes [`Message::encode`] appends: 4 plus the length prefix.
    pub fn encoded_len(&self) -> usize {
        4 + self.body_len()
    }

    /// Appends the message, length prefix first, to `out`.
    ///
    /// A message longer than `u32::MAX` bytes cannot be framed; the caller never builds one (blocks are
    /// 16 KiB and a bitfield of 2^32 pieces is 512 MiB), and its prefix would be wrong.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let body = self.body_len();
        debug_assert!(u32::try_from(body).is_ok(), "message of {body} bytes");
        out.reserve(4 + body);
        out.extend_from_slice(&(body as u32).to_be_bytes());
        let Some(id) = self.id() else {
            return;
        };
        out.push(id);
        let block = |out: &mut Vec<u8>, r: &BlockRequest| {
            out.extend_from_slice(&r.index.to_be_bytes());
            out.extend_from_slice(&r.begin.to_be_bytes());
            out.extend_from_slice(&r.length.to_be_bytes());
        };
        match self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => {}
            Message::Have(i) | Message::Suggest(i) | Message::AllowedFast(i) => {
                out.extend_from_slice(&i.to_be_bytes());
            }
            Message::Request(r) | Message::Cancel(r) | Message::Reject(r) => block(out, r),
            Message::Port(port) => out.extend_from_slice(&port.to_be_bytes()),
            Message::Bitfield(bytes) => out.extend_from_slice(bytes),
            Message::Piece { index, begin, data } => {
                out.extend_from_slice(&index.to_be_bytes());
                out.extend_from_slice(&begin.to_be_bytes());
                out.extend_from_slice(data);
            }
            Message::Extended { id, payload } => {
                out.push(*id);
                out.extend_from_slice(payload);
            }
            Message::Unknown { payload, .. } => out.extend_from_slice(payload),
        }
    }
}

/// Writes the 13-byte header of a `piece` message (BEP 3) carrying a block of `len` bytes at byte
/// `begin` of piece `index`: length prefix `9 + len`, id 7, index, begin. The sender then writes the
/// block's bytes straight from its buffer (a vectored write), without copying them into a message.
///
/// `len` must be at most `u32::MAX - 9`; blocks are 16 KiB. A larger value saturates the prefix.
pub fn encode_piece_header(index: u32, begin: u32, len: u32, out: &mut [u8; PIECE_HEADER_LEN]) {
    out[..4].copy_from_slice(&len.saturating_add(9).to_be_bytes());
    out[4] = PIECE;
    out[5..9].copy_from_slice(&index.to_be_bytes());
    out[9..13].copy_from_slice(&begin.to_be_bytes());
}

#[cfg(test)]
mod tests;
