//! Codecs of the extension protocol's messages: the BEP 10 extension handshake, BEP 9 `ut_metadata`
//! (metadata exchange, used by magnet links) and BEP 11 `ut_pex` (peer exchange).
//!
//! Each message travels in a BEP 10 `extended` message (wire id 20) whose first payload byte is an
//! extended id: 0 for the handshake, otherwise the id the *receiver* asked for in its handshake's `m`
//! dictionary. The payloads decoded here are the bytes after that id.
//!
//! Decoders never panic and bound what they keep: at most [`MAX_HANDSHAKE_MESSAGES`] entries of `m`,
//! [`MAX_CLIENT_NAME`] bytes of `v`, [`MAX_PEX_PEERS`] added and dropped peers. The handshake is
//! advisory, so its decoder ignores unknown keys and optional keys of the wrong type; the metadata and
//! PEX decoders are strict about the keys they need.

use std::net::{IpAddr, SocketAddr};

use crate::bencode::{self, Dict, OwnedValue, Value};

/// The BEP 9 extension's name in `m`.
pub const UT_METADATA: &str = "ut_metadata";
/// Our client name and version, sent as `v` in our extension handshakes.
pub const OUR_CLIENT: &str = concat!("swarmer ", env!("CARGO_PKG_VERSION"));
/// The BEP 11 extension's name in `m`.
pub const UT_PEX: &str = "ut_pex";
/// The ids we assign in our own `m` dictionary (the ids peers must use when sending to us).
pub const OUR_UT_METADATA: u8 = 3;
/// Our id for `ut_pex` messages sent to us (BEP 11).
pub const OUR_UT_PEX: u8 = 1;
/// Metadata is exchanged in pieces of 16 KiB (BEP 9); the last may be shorter.
pub const METADATA_PIECE_LEN: u32 = 16 * 1024;
/// Largest `metadata_size` (bytes) we accept or serve: [`crate::metainfo::MAX_METAINFO_BYTES`].
pub const MAX_METADATA_SIZE: u32 = crate::metainfo::MAX_METAINFO_BYTES as u32;
/// Entries of a peer's `m` dictionary kept; real clients list a dozen.
pub const MAX_HANDSHAKE_MESSAGES: usize = 64;
/// Bytes of a peer's client name `v` kept (cut at a character boundary).
pub const MAX_CLIENT_NAME: usize = 128;
/// Added peers, and dropped peers, kept from one PEX message (IPv4 and IPv6 together). libtorrent
/// sends at most 50 of each per message, so this only bounds a hostile peer.
pub const MAX_PEX_PEERS: usize = 200;

/// Why an extension message payload is malformed. Every variant is the sender's fault.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ExtensionError {
    /// The payload (or its leading part) is not bencode.
    #[error("not bencode: {0}")]
    Bencode(bencode::DecodeError),
    /// The payload is bencode, but not a dictionary.
    #[error("not a bencoded dictionary")]
    NotADict,
    /// A required key is missing.
    #[error("missing key {0}")]
    MissingKey(&'static str),
    /// A key has the wrong type or a value out of its range.
    #[error("bad value for key {0}")]
    BadValue(&'static str),
    /// A BEP 9 `msg_type` other than 0 (request), 1 (data) or 2 (reject). BEP 9 says to ignore
    /// such messages, so callers need not treat this as a fault.
    #[error("unknown ut_metadata msg_type {0}")]
    UnknownMsgType(i64),
    /// A BEP 9 data message for a piece past the end of `total_size`.
    #[error("metadata piece {piece} is past the end of {total_size} bytes")]
    PieceOutOfRange {
        /// The piece index sent.
        piece: u32,
        /// The metadata size sent, bytes.
        total_size: u32,
    },
    /// A BEP 9 data message whose trailing bytes are not exactly the piece's length
    /// ([`METADATA_PIECE_LEN`], or what is left of `total_size` for the last piece).
    #[error("metadata piece {piece} carries {got} bytes, not {expected}")]
    DataLength {
        /// The piece index sent.
        piece: u32,
        /// The piece's length, bytes.
        expected: u32,
        /// Bytes that followed the dictionary.
        got: usize,
    },
    /// Bytes after the dictionary of a message that carries none (BEP 9 request or reject).
    #[error("trailing bytes after the dictionary")]
    TrailingBytes,
    /// A compact peer list (BEP 11, BEP 23 format) whose length is not a multiple of the entry size
    /// (6 bytes for IPv4, 18 for IPv6).
    #[error("compact peer list {key} of {len} bytes")]
    CompactLength {
        /// The key.
        key: &'static str,
        /// Its length, bytes.
        len: usize,
    },
}

/// A BEP 10 extension handshake (extended id 0), as much of it as swarmer uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtensionHandshake {
    /// `m`: extension name -> the id the sender wants to receive it under; 0 = not supported (a later
    /// handshake uses 0 to switch one off). At most [`MAX_HANDSHAKE_MESSAGES`] entries, names UTF-8,
    /// in ascending name order after decoding.
    pub messages: Vec<(String, u8)>,
    /// `p`: the sender's TCP listening port (1..=65535).
    pub listen_port: Option<u16>,
    /// `v`: the client's name and version, at most [`MAX_CLIENT_NAME`] bytes.
    pub client: Option<String>,
    /// `yourip`: the address the sender sees us at (4 or 16 bytes on the wire).
    pub your_ip: Option<IpAddr>,
    /// `reqq`: outstanding requests the sender accepts at once; 1..=100 000 else `None`.
    pub reqq: Option<u32>,
    /// `metadata_size` (BEP 9): the info dictionary's size in bytes, 1..=[`MAX_METADATA_SIZE`] else
    /// `None`.
    pub metadata_size: Option<u32>,
    /// `upload_only` (BEP 21): the sender will not download. Always encoded (as 0 or 1), so a
    /// handshake re-sent after wanting data again clears an earlier 1.
    pub upload_only: bool,
}

impl ExtensionHandshake {
    /// Decodes a handshake payload. Keys may be unsorted (some clients do); unknown keys and
    /// optional keys of the wrong type or out of range are ignored. Errors only when the payload is
    /// not a bencoded dictionary ([`ExtensionError::Bencode`], [`ExtensionError::NotADict`]).
    pub fn decode(payload: &[u8]) -> Result<ExtensionHandshake, ExtensionError> {
        let value = bencode::decode_lenient(payload).map_err(ExtensionError::Bencode)?;
        let dict = value.as_dict().ok_or(ExtensionError::NotADict)?;
        let int = |key: &[u8]| dict.get(key).and_then(|v| v.as_int());
        let messages = dict
            .get(b"m")
            .and_then(|m| m.as_dict())
            .map(|m| {
                m.iter()
                    .filter_map(|(name, id)| {
                        let name = std::str::from_utf8(name).ok()?;
                        let id = u8::try_from(id.as_int()?).ok()?;
                        Some((name.to_owned(), id))
                    })
                    .take(MAX_HANDSHAKE_MESSAGES)
                    .collect()
            })
            .unwrap_or_default();
        let client = dict.get(b"v").and_then(|v| v.as_bytes()).map(|v| {
            let text = String::from_utf8_lossy(v);
            let mut end = text.len().min(MAX_CLIENT_NAME);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].to_owned()
        });
        let your_ip = dict
            .get(b"yourip")
            .and_then(|v| v.as_bytes())
            .and_then(|b| match b.len() {
                4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
                16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
                _ => None,
            });
        Ok(ExtensionHandshake {
            messages,
            listen_port: int(b"p")
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0),
            client,
            your_ip,
            reqq: int(b"reqq")
                .and_then(|r| u32::try_from(r).ok())
                .filter(|r| (1..=100_000).contains(r)),
            metadata_size: int(b"metadata_size")
                .and_then(|s| u32::try_from(s).ok())
                .filter(|s| (1..=MAX_METADATA_SIZE).contains(s)),
            upload_only: int(b"upload_only").is_some_and(|v| v != 0),
        })
    }

    /// The canonical bencoding of the handshake: `m` always, `upload_only` always (0 or 1), the other
    /// keys when set. A name listed twice in `messages` keeps its last id.
    pub fn encode(&self) -> Vec<u8> {
        let m = OwnedValue::dict(
            self.messages
                .iter()
                .map(|(name, id)| (name.as_bytes(), OwnedValue::Int(i64::from(*id)))),
        );
        let mut fields = vec![
            ("m", m),
            ("upload_only", OwnedValue::Int(i64::from(self.upload_only))),
        ];
        if let Some(p) = self.listen_port {
            fields.push(("p", OwnedValue::Int(i64::from(p))));
        }
        if let Some(v) = &self.client {
            fields.push(("v", OwnedValue::Bytes(v.as_bytes().to_vec())));
        }
        if let Some(ip) = self.your_ip {
            let bytes = match ip {
                IpAddr::V4(ip) => ip.octets().to_vec(),
                IpAddr::V6(ip) => ip.octets().to_vec(),
            };
            fields.push(("yourip", OwnedValue::Bytes(bytes)));
        }
        if let Some(r) = self.reqq {
            fields.push(("reqq", OwnedValue::Int(i64::from(r))));
        }
        if let Some(s) = self.metadata_size {
            fields.push(("metadata_size", OwnedValue::Int(i64::from(s))));
        }
        OwnedValue::dict(fields).encode()
    }

    /// The id `name` is to be sent under to this peer, if it supports it (a non-zero id in `m`).
    pub fn id_of(&self, name: &str) -> Option<u8> {
        self.messages
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
            .filter(|id| *id != 0)
    }
}

/// A BEP 9 `ut_metadata` message. `piece` indexes 16 KiB pieces of the info dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataMessage<'a> {
    /// `msg_type` 0: send me this piece.
    Request {
        /// Piece index.
        piece: u32,
    },
    /// `msg_type` 1: a piece of `total_size` bytes of metadata; `data` is exactly the piece's bytes
    /// ([`METADATA_PIECE_LEN`], or the rest for the last piece).
    Data {
        /// Piece index.
        piece: u32,
        /// Size of the whole info dictionary, bytes (1..=[`MAX_METADATA_SIZE`]).
        total_size: u32,
        /// The piece's bytes.
        data: &'a [u8],
    },
    /// `msg_type` 2: the sender will not send this piece.
    Reject {
        /// Piece index.
        piece: u32,
    },
}

/// The length of metadata piece `piece` of `total_size` bytes, or `None` past the end.
pub fn metadata_piece_len(piece: u32, total_size: u32) -> Option<u32> {
    let start = u64::from(piece) * u64::from(METADATA_PIECE_LEN);
    let total = u64::from(total_size);
    (start < total).then(|| (total - start).min(u64::from(METADATA_PIECE_LEN)) as u32)
}

/// The number of 16 KiB pieces of metadata of `total_size` bytes.
pub fn metadata_piece_count(total_size: u32) -> u32 {
    total_size.div_ceil(METADATA_PIECE_LEN)
}

impl<'a> MetadataMessage<'a> {
    /// Decodes the payload after the extended message id: a bencoded dict (`msg_type`, `piece`,
    /// `total_size`), for Data followed by the raw piece bytes.
    ///
    /// Errors: not a dictionary, `msg_type`/`piece` missing or not a `u32`, an unknown `msg_type`,
    /// trailing bytes after a request or reject, and for data a `total_size` outside
    /// 1..=[`MAX_METADATA_SIZE`], a piece past its end, or bytes not exactly the piece's length.
    pub fn decode(payload: &'a [u8]) -> Result<MetadataMessage<'a>, ExtensionError> {
        // Clients encode the dictionary canonically; a lenient whole-payload decode covers a
        // request or reject with unsorted keys.
        let (value, used) = match bencode::decode_prefix(payload) {
            Ok(v) => v,
            Err(e) => match bencode::decode_lenient(payload) {
                Ok(v) => (v, payload.len()),
                Err(_) => return Err(ExtensionError::Bencode(e)),
            },
        };
        let dict = value.as_dict().ok_or(ExtensionError::NotADict)?;
        let rest = &payload[used..];
        let msg_type = dict
            .get(b"msg_type")
            .ok_or(ExtensionError::MissingKey("msg_type"))?
            .as_int()
            .ok_or(ExtensionError::BadValue("msg_type"))?;
        let piece = required_u32(dict, "piece")?;
        match msg_type {
            0 | 2 if !rest.is_empty() => Err(ExtensionError::TrailingBytes),
            0 => Ok(MetadataMessage::Request { piece }),
            2 => Ok(MetadataMessage::Reject { piece }),
            1 => {
                let total_size = required_u32(dict, "total_size")?;
                if !(1..=MAX_METADATA_SIZE).contains(&total_size) {
                    return Err(ExtensionError::BadValue("total_size"));
                }
                let expected = metadata_piece_len(piece, total_size)
                    .ok_or(ExtensionError::PieceOutOfRange { piece, total_size })?;
                if rest.len() != expected as usize {
                    return Err(ExtensionError::DataLength {
                        piece,
                        expected,
                        got: rest.len(),
                    });
                }
                Ok(MetadataMessage::Data {
                    piece,
                    total_size,
                    data: rest,
                })
            }
            other => Err(ExtensionError::UnknownMsgType(other)),
        }
    }

    /// Appends the payload (after the extended id) to `out`: the canonical dictionary, then for
    /// Data the piece's bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (msg_type, piece) = match *self {
            MetadataMessage::Request { piece } => (0, piece),
            MetadataMessage::Data { piece, .. } => (1, piece),
            MetadataMessage::Reject { piece } => (2, piece),
        };
        let mut fields = vec![
            ("msg_type", OwnedValue::Int(msg_type)),
            ("piece", OwnedValue::Int(i64::from(piece))),
        ];
        if let MetadataMessage::Data { total_size, .. } = *self {
            fields.push(("total_size", OwnedValue::Int(i64::from(total_size))));
        }
        OwnedValue::dict(fields).encode_into(out);
        if let MetadataMessage::Data { data, .. } = *self {
            out.extend_from_slice(data);
        }
    }
}

/// The `u32` under `key`, which must be present.
fn required_u32(dict: &Dict<'_>, key: &'static str) -> Result<u32, ExtensionError> {
    let value = dict
        .get(key.as_bytes())
        .ok_or(ExtensionError::MissingKey(key))?;
    value
        .as_int()
        .and_then(|v| u32::try_from(v).ok())
        .ok_or(ExtensionError::BadValue(key))
}

/// BEP 11 flags of an added peer (one byte per peer in `added.f` / `added6.f`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PexFlags(pub u8);

impl PexFlags {
    /// 0x01: the peer prefers encryption.
    pub const ENCRYPTION: u8 = 0x01;
    /// 0x02: the peer is a seed or only uploads.
    pub const SEED: u8 = 0x02;
    /// 0x04: the peer supports uTP.
    pub const UTP: u8 = 0x04;
    /// 0x08: the peer supports the holepunch extension (BEP 55).
    pub const HOLEPUNCH: u8 = 0x08;
    /// 0x10: the peer is reachable: the sender connected to it (outgoing connection).
    pub const REACHABLE: u8 = 0x10;
}

/// A BEP 11 `ut_pex` message: peers the sender connected to and lost since its last message.
/// IPv4 and IPv6 peers are together here (`added`/`added6`, `dropped`/`dropped6` on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PexMessage {
    /// Peers connected since the last message, with their flags.
    pub added: Vec<(SocketAddr, PexFlags)>,
    /// Peers disconnected since the last message.
    pub dropped: Vec<SocketAddr>,
}

impl PexMessage {
    /// Decodes a `ut_pex` payload (keys in any order). Keeps at most [`MAX_PEX_PEERS`] added and
    /// as many dropped peers (IPv4 first) and skips entries with port 0 or an unspecified,
    /// multicast or broadcast address. Missing lists are empty; missing or short flag strings mean
    /// flags 0.
    ///
    /// Errors: not a dictionary, a list key that is not a byte string
    /// ([`ExtensionError::BadValue`]), or one whose length is not a multiple of 6 (IPv4) or 18
    /// (IPv6) bytes ([`ExtensionError::CompactLength`]).
    pub fn decode(payload: &[u8]) -> Result<PexMessage, ExtensionError> {
        let value = bencode::decode_lenient(payload).map_err(ExtensionError::Bencode)?;
        let dict = value.as_dict().ok_or(ExtensionError::NotADict)?;
        let mut message = PexMessage::default();
        for (key, flags_key, size) in [("added", "added.f", 6), ("added6", "added6.f", 18)] {
            let peers = compact(dict.get(key.as_bytes()), key, size)?;
            let flags = dict
                .get(flags_key.as_bytes())
                .and_then(Value::as_bytes)
                .unwrap_or_default();
            for (i, addr) in peers.enumerate() {
                if message.added.len() == MAX_PEX_PEERS {
                    break;
                }
                if let Some(addr) = addr {
                    let f = PexFlags(flags.get(i).copied().unwrap_or(0));
                    message.added.push((addr, f));
                }
            }
        }
        for (key, size) in [("dropped", 6), ("dropped6", 18)] {
            let peers = compact(dict.get(key.as_bytes()), key, size)?;
            let room = MAX_PEX_PEERS - message.dropped.len();
            message.dropped.extend(peers.flatten().take(room));
        }
        Ok(message)
    }

    /// The canonical bencoding: `added`, `added.f` and `dropped` always (compact IPv4), `added6`,
    /// `added6.f` and `dropped6` when an IPv6 peer is listed.
    pub fn encode(&self) -> Vec<u8> {
        let (mut added, mut added_f, mut added6, mut added6_f) = (vec![], vec![], vec![], vec![]);
        for (addr, flags) in &self.added {
            match addr {
                SocketAddr::V4(_) => {
                    crate::compact::encode_into(&mut added, addr);
                    added_f.push(flags.0);
                }
                SocketAddr::V6(_) => {
                    crate::compact::encode_into(&mut added6, addr);
                    added6_f.push(flags.0);
                }
            }
        }
        let (mut dropped, mut dropped6) = (vec![], vec![]);
        for addr in &self.dropped {
            match addr {
                SocketAddr::V4(_) => crate::compact::encode_into(&mut dropped, addr),
                SocketAddr::V6(_) => crate::compact::encode_into(&mut dropped6, addr),
            }
        }
        let has_v6 = !added6.is_empty() || !dropped6.is_empty();
        let mut fields = vec![
            ("added", OwnedValue::Bytes(added)),
            ("added.f", OwnedValue::Bytes(added_f)),
            ("dropped", OwnedValue::Bytes(dropped)),
        ];
        if has_v6 {
            fields.push(("added6", OwnedValue::Bytes(added6)));
            fields.push(("added6.f", OwnedValue::Bytes(added6_f)));
            fields.push(("dropped6", OwnedValue::Bytes(dropped6)));
        }
        OwnedValue::dict(fields).encode()
    }
}

/// The entries of a compact peer list (`size` 6: IPv4 address and port; 18: IPv6), each `None` when
/// it is not a usable peer address. A missing key is an empty list.
fn compact<'a>(
    value: Option<&Value<'a>>,
    key: &'static str,
    size: usize,
) -> Result<impl Iterator<Item = Option<SocketAddr>> + 'a, ExtensionError> {
    let bytes: &'a [u8] = match value {
        None => &[],
        Some(v) => v.as_bytes().ok_or(ExtensionError::BadValue(key))?,
    };
    if bytes.len() % size != 0 {
        return Err(ExtensionError::CompactLength {
            key,
            len: bytes.len(),
        });
    }
    Ok(bytes
        .chunks_exact(size)
        .map(|c| crate::compact::decode(c).and_then(crate::compact::usable_peer)))
}

#[cfg(test)]
mod tests;
