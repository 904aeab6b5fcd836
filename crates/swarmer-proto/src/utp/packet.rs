//! The uTP packet codec (BEP 29, "header format"): the 20-byte version 1 header and the extension
//! chain, of which only the selective ACK (extension 1) means anything to us; other extensions are
//! skipped. Decoding is bounded: a chain of more than [`MAX_EXTENSIONS`] links, a selective ACK
//! bitmask that is empty, not a multiple of 4 bytes or longer than [`MAX_SACK_BYTES`], or a link that
//! runs past the datagram is an error, never a panic.

/// Length of the fixed header, in bytes.
pub const HEADER_LEN: usize = 20;
/// The only protocol version there is (BEP 29).
pub const VERSION: u8 = 1;
/// Most extension links decoded before the packet is rejected.
pub const MAX_EXTENSIONS: usize = 4;
/// Longest selective ACK bitmask accepted and sent, in bytes (32 bytes = 256 packets past the gap).
pub const MAX_SACK_BYTES: usize = 32;
/// Extension number of the selective ACK (BEP 29, "selective ack").
const EXT_SACK: u8 = 1;

/// The packet type, the high nibble of the first byte (BEP 29, "type").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// `ST_DATA` (0): payload, consumes a sequence number.
    Data,
    /// `ST_FIN` (1): the sender's last sequence number; consumes one.
    Fin,
    /// `ST_STATE` (2): an ACK without payload; consumes no sequence number.
    State,
    /// `ST_RESET` (3): the connection is gone.
    Reset,
    /// `ST_SYN` (4): opens a connection; consumes a sequence number.
    Syn,
}

impl PacketType {
    fn from_nibble(n: u8) -> Option<PacketType> {
        Some(match n {
            0 => PacketType::Data,
            1 => PacketType::Fin,
            2 => PacketType::State,
            3 => PacketType::Reset,
            4 => PacketType::Syn,
            _ => return None,
        })
    }

    fn nibble(self) -> u8 {
        match self {
            PacketType::Data => 0,
            PacketType::Fin => 1,
            PacketType::State => 2,
            PacketType::Reset => 3,
            PacketType::Syn => 4,
        }
    }
}

/// Whether a datagram's first byte says it is uTP version 1 (0x01, 0x11, 0x21, 0x31 or 0x41): how
/// a socket shared with the DHT (bencoded, `d`) and UDP trackers (an action, 0x00) tells them apart.
pub fn looks_like_utp(datagram: &[u8]) -> bool {
    match datagram.first() {
        Some(&b) => b & 0x0f == VERSION && b >> 4 <= 4 && datagram.len() >= HEADER_LEN,
        None => false,
    }
}

/// A decoded header (BEP 29). Times are in microseconds of the sender's clock, modulo 2^32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the packet is.
    pub kind: PacketType,
    /// The receiver's connection id as the sender knows it.
    pub connection_id: u16,
    /// The sender's clock when it sent the packet, in µs (wraps).
    pub timestamp_us: u32,
    /// The sender's last measured one-way delay of packets from the receiver, in µs (wraps).
    pub timestamp_diff_us: u32,
    /// The sender's free receive window, in bytes.
    pub wnd_size: u32,
    /// Sequence number of this packet (STATE: of the next packet the sender will send).
    pub seq_nr: u16,
    /// Last sequence number the sender received in order.
    pub ack_nr: u16,
}

/// Packets received after the one after `ack_nr` (BEP 29, "selective ack"): bit `i` stands for
/// `ack_nr + 2 + i`. Holds at most [`MAX_SACK_BYTES`] bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectiveAck {
    bytes: [u8; MAX_SACK_BYTES],
    len: u8,
}

impl SelectiveAck {
    /// A bitmask of `len` bytes, all clear. `len` is rounded up to a multiple of 4, within 4 ..= 32.
    pub fn new(len: usize) -> SelectiveAck {
        let len = len.clamp(4, MAX_SACK_BYTES).div_ceil(4) * 4;
        SelectiveAck {
            bytes: [0; MAX_SACK_BYTES],
            len: len as u8,
        }
    }

    /// How many packets it can describe.
    pub fn capacity(&self) -> usize {
        usize::from(self.len) * 8
    }

    /// Marks bit `i` (packet `ack_nr + 2 + i`); ignored past the capacity.
    pub fn set(&mut self, i: usize) {
        if i < self.capacity() {
            self.bytes[i / 8] |= 1 << (i % 8);
        }
    }

    /// Whether bit `i` is set.
    pub fn get(&self, i: usize) -> bool {
        i < self.capacity() && self.bytes[i / 8] & (1 << (i % 8)) != 0
    }

    /// The bitmask bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// A decoded packet: header, selective ACK if any, and the payload (a slice of the datagram).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The fixed header.
    pub header: Header,
    /// The selective ACK extension, if the packet carried one.
    pub sack: Option<SelectiveAck>,
    /// The payload (DATA only; others should carry none and any is ignored).
    pub payload: &'a [u8],
}

/// Why a datagram is not a uTP packet we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the header or than its extensions say.
    #[error("truncated packet")]
    Truncated,
    /// Not version 1.
    #[error("unsupported version {0}")]
    Version(u8),
    /// A type nibble above 4.
    #[error("unknown packet type {0}")]
    Type(u8),
    /// More than [`MAX_EXTENSIONS`] extensions.
    #[error("extension chain too long")]
    TooManyExtensions,
    /// A selective ACK whose length is 0, not a multiple of 4, or over [`MAX_SACK_BYTES`].
    #[error("bad selective ack length {0}")]
    SackLength(u8),
}

impl<'a> Packet<'a> {
    /// Decodes one datagram. Never panics; bounded by [`MAX_EXTENSIONS`].
    pub fn decode(datagram: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        if datagram.len() < HEADER_LEN {
            return Err(PacketError::Truncated);
        }
        let b = datagram;
        let version = b[0] & 0x0f;
        if version != VERSION {
            return Err(PacketError::Version(version));
        }
        let kind = PacketType::from_nibble(b[0] >> 4).ok_or(PacketError::Type(b[0] >> 4))?;
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let header = Header {
            kind,
            connection_id: u16_at(2),
            timestamp_us: u32_at(4),
            timestamp_diff_us: u32_at(8),
            wnd_size: u32_at(12),
            seq_nr: u16_at(16),
            ack_nr: u16_at(18),
        };
        let mut next = b[1];
        let mut at = HEADER_LEN;
        let mut sack = None;
        let mut links = 0;
        while next != 0 {
            links += 1;
            if links > MAX_EXTENSIONS {
                return Err(PacketError::TooManyExtensions);
            }
            let [ext_next, len] = *b.get(at..at + 2).ok_or(PacketError::Truncated)? else {
                return Err(PacketError::Truncated);
            };
            let body = b
                .get(at + 2..at + 2 + usize::from(len))
                .ok_or(PacketError::Truncated)?;
            if next == EXT_SACK {
                if len == 0 || len % 4 != 0 || usize::from(len) > MAX_SACK_BYTES {
                    return Err(PacketError::SackLength(len));
                }
                let mut s = SelectiveAck::new(body.len());
                s.bytes[..body.len()].copy_from_slice(body);
                sack = Some(s);
            }
            at += 2 + usize::from(len);
            next = ext_next;
        }
        Ok(Packet {
            header,
            sack,
            payload: &b[at..],
        })
    }
}

impl Header {
    /// Appends the header, the selective ACK (if any) and nothing else to `out`; the caller appends
    /// the payload. Returns the bytes written.
    pub fn encode(&self, sack: Option<&SelectiveAck>, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.push(self.kind.nibble() << 4 | VERSION);
        out.push(if sack.is_some() { EXT_SACK } else { 0 });
        out.extend_from_slice(&self.connection_id.to_be_bytes());
        out.extend_from_slice(&self.timestamp_us.to_be_bytes());
        out.extend_from_slice(&self.timestamp_diff_us.to_be_bytes());
        out.extend_from_slice(&self.wnd_size.to_be_bytes());
        out.extend_from_slice(&self.seq_nr.to_be_bytes());
        out.extend_from_slice(&self.ack_nr.to_be_bytes());
        if let Some(s) = sack {
            out.push(0);
            out.push(s.len);
            out.extend_from_slice(s.as_bytes());
        }
        out.len() - start
    }
}

/// Whether sequence number `a` comes before `b`, modulo 2^16 (half the space either way).
pub fn seq_less(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000
}
