//! The KRPC message codec of the DHT (BEP 5, "KRPC protocol"): queries (`ping`, `find_node`,
//! `get_peers`, `announce_peer`), responses and errors, with compact node info (26 bytes per IPv4 node,
//! 38 per IPv6 node in BEP 32's `nodes6`) and compact peers (`values`).
//!
//! **Strictness.** Every key we use must have the type BEP 5 gives it (ids 20 bytes, ports in
//! 1..=65535, compact strings of whole entries); anything else rejects the packet. Unknown keys are
//! ignored, so extensions (BEP 32 `want`, BEP 44, BEP 51) do not break parsing.
//!
//! **Bounds.** Packets over [`MAX_PACKET`] bytes are rejected before decoding; at most [`MAX_NODES`]
//! nodes per family and [`MAX_VALUES`] peers are kept from one response (the rest is ignored, after a
//! length check that costs nothing), transaction ids and tokens are at most [`MAX_TID_LEN`] and
//! [`MAX_TOKEN_LEN`] bytes. Decoding therefore allocates at most a small multiple of the packet.

use std::net::SocketAddr;

use super::node_id::NodeId;
use crate::InfoHash;
use crate::bencode::{self, OwnedValue, Value};

/// Largest KRPC packet we decode, in bytes. Real messages fit one Ethernet frame (~1,500 bytes).
pub const MAX_PACKET: usize = 8 * 1024;
/// Most nodes kept per family (`nodes`, `nodes6`) from one response; BEP 5 responses carry 8.
pub const MAX_NODES: usize = 16;
/// Most peers kept from one `get_peers` response's `values`.
pub const MAX_VALUES: usize = 200;
/// Longest transaction id accepted, in bytes (clients use 2 to 4).
pub const MAX_TID_LEN: usize = 16;
/// Longest token accepted, in bytes (clients use 4 to 20).
pub const MAX_TOKEN_LEN: usize = 64;
/// Bytes of one IPv4 compact node: 20-byte id, 4-byte address, 2-byte port (BEP 5).
pub const COMPACT_NODE_V4: usize = 26;
/// Bytes of one IPv6 compact node: 20-byte id, 16-byte address, 2-byte port (BEP 32).
pub const COMPACT_NODE_V6: usize = 38;

/// The KRPC error codes of BEP 5.
pub mod error_code {
    /// 201: generic error.
    pub const GENERIC: i64 = 201;
    /// 202: server error.
    pub const SERVER: i64 = 202;
    /// 203: protocol error (malformed packet, invalid arguments, bad token).
    pub const PROTOCOL: i64 = 203;
    /// 204: method unknown.
    pub const METHOD_UNKNOWN: i64 = 204;
}

/// One KRPC message (BEP 5): a transaction id, the optional client version `v`, the BEP 42 `ip`
/// (the requester's address as the responder saw it) and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `t`: chosen by the querier, echoed in the response; 1..=[`MAX_TID_LEN`] bytes.
    pub transaction: Vec<u8>,
    /// `v`: the sender's client and version (conventionally 2 letters and 2 bytes).
    pub version: Option<Vec<u8>>,
    /// `ip` (BEP 42): in a response, the address the responder saw the query come from.
    pub ip: Option<SocketAddr>,
    /// `ro` = 1 (BEP 43): the sender does not answer queries, so must not enter routing tables.
    pub read_only: bool,
    /// The query, response or error.
    pub body: Body,
}

/// What a message is (`y`: `q`, `r` or `e`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `y` = `q`.
    Query(Query),
    /// `y` = `r`. Responses do not say which query they answer; the transaction id does.
    Response(Response),
    /// `y` = `e`: `[code, message]`.
    Error {
        /// One of [`error_code`], or another integer.
        code: i64,
        /// Human-readable text (lossily decoded as UTF-8).
        message: String,
    },
}

/// A query: the querier's id (`a.id`) and the method with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The querying node's id.
    pub id: NodeId,
    /// `q` and the rest of `a`.
    pub method: Method,
}

/// The query methods of BEP 5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `ping`.
    Ping,
    /// `find_node` with `target`.
    FindNode {
        /// The id whose closest nodes are wanted.
        target: NodeId,
    },
    /// `get_peers` with `info_hash`.
    GetPeers {
        /// The torrent whose peers are wanted.
        info_hash: InfoHash,
    },
    /// `announce_peer`: the querier downloads `info_hash` and accepts peers on `port` (or, with
    /// `implied_port`, on the UDP source port); `token` from an earlier `get_peers` response.
    AnnouncePeer {
        /// The torrent.
        info_hash: InfoHash,
        /// The TCP port, 1..=65535 unless `implied_port`.
        port: u16,
        /// `implied_port` = 1: use the packet's source port instead of `port`.
        implied_port: bool,
        /// The token we handed out in `get_peers`.
        token: Vec<u8>,
    },
    /// Any other method name (answered with error 204).
    Unknown(Vec<u8>),
}

/// A response's arguments (`r`): every key any of the four methods returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The responding node's id.
    pub id: NodeId,
    /// `nodes`: IPv4 compact node info, at most [`MAX_NODES`] kept.
    pub nodes: Vec<CompactNode>,
    /// `nodes6` (BEP 32): IPv6 compact node info, at most [`MAX_NODES`] kept.
    pub nodes6: Vec<CompactNode>,
    /// `values`: compact peers (6 or 18 bytes each), at most [`MAX_VALUES`] kept.
    pub values: Vec<SocketAddr>,
    /// `token`: for a later `announce_peer` to this node.
    pub token: Option<Vec<u8>>,
}

/// A node as compact node info carries it: id and UDP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CompactNode {
    /// The node's id.
    pub id: NodeId,
    /// Its UDP address.
    pub addr: SocketAddr,
}

/// Why a packet is not a valid KRPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KrpcError {
    /// Over [`MAX_PACKET`] bytes.
    #[error("packet of {0} bytes is too large")]
    TooLarge(usize),
    /// Not bencode.
    #[error("not bencode: {0}")]
    Bencode(#[from] bencode::DecodeError),
    /// The top level is not a dictionary.
    #[error("not a dictionary")]
    NotADict,
    /// A required key is missing.
    #[error("missing key {0}")]
    Missing(&'static str),
    /// A key has the wrong type, length or range.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// A query (`y` = `q`, with a valid transaction id) whose method name or arguments are
    /// malformed: a missing `a`, a 19-byte id or info hash, no `target`. BEP 5 answers these with
    /// error 203 (protocol error), as libtorrent does, so the sender learns why.
    #[error("malformed query: {problem}")]
    MalformedQuery {
        /// The query's transaction id, for the error reply.
        transaction: Vec<u8>,
        /// What is wrong with it.
        problem: Box<KrpcError>,
    },
}

impl Message {
    /// Decodes one KRPC packet (BEP 5).
    ///
    /// Errors: [`KrpcError`] for anything but a well-formed message; never panics.
    pub fn decode(packet: &[u8]) -> Result<Message, KrpcError> {
        if packet.len() > MAX_PACKET {
            return Err(KrpcError::TooLarge(packet.len()));
        }
        // Lenient: some clients do not sort keys, and KRPC is never hashed.
        let root = bencode::decode_lenient(packet)?;
        if root.as_dict().is_none() {
            return Err(KrpcError::NotADict);
        }
        let transaction = bytes(&root, b"t", "t")?;
        if transaction.is_empty() || transaction.len() > MAX_TID_LEN {
            return Err(KrpcError::Invalid("t"));
        }
        let version = match root.get(b"v") {
            Some(v) => Some(v.as_bytes().ok_or(KrpcError::Invalid("v"))?.to_vec()),
            None => None,
        };
        let ip = match root.get(b"ip") {
            // Some clients send garbage here; it is advisory, so ignore what does not parse.
            Some(v) => v.as_bytes().and_then(crate::compact::decode),
            None => None,
        };
        let read_only = root.get(b"ro").and_then(Value::as_int) == Some(1);
        let y = bytes(&root, b"y", "y")?;
        let body =
            match y {
                b"q" => Body::Query(decode_query(&root).map_err(|problem| {
                    KrpcError::MalformedQuery {
                        transaction: transaction.to_vec(),
                        problem: Box::new(problem),
                    }
                })?),
                b"r" => Body::Response(decode_response(
                    root.get(b"r").ok_or(KrpcError::Missing("r"))?,
                )?),
                b"e" => {
                    let e = root.get(b"e").ok_or(KrpcError::Missing("e"))?;
                    let list = e.as_list().ok_or(KrpcError::Invalid("e"))?;
                    let code = list
                        .first()
                        .and_then(Value::as_int)
                        .ok_or(KrpcError::Invalid("e"))?;
                    let message = list
                        .get(1)
                        .and_then(Value::as_bytes)
                        .map(|m| truncated_text(&m[..m.len().min(MAX_ERROR_TEXT)]))
                        .unwrap_or_default();
                    Body::Error { code, message }
                }
                _ => return Err(KrpcError::Invalid("y")),
            };
        Ok(Message {
            transaction: transaction.to_vec(),
            version,
            ip,
            read_only,
            body,
        })
    }

    /// The canonical bencoding of this message (keys sorted), ready to send as one UDP datagram.
    pub fn encode(&self) -> Vec<u8> {
        let mut top: Vec<(&[u8], OwnedValue)> =
            vec![(b"t", OwnedValue::Bytes(self.transaction.clone()))];
        if let Some(v) = &self.version {
            top.push((b"v", OwnedValue::Bytes(v.clone())));
        }
        if let Some(ip) = self.ip {
            top.push((b"ip", OwnedValue::Bytes(compact_bytes(ip))));
        }
        if self.read_only {
            top.push((b"ro", OwnedValue::Int(1)));
        }
        match &self.body {
            Body::Query(q) => {
                top.push((b"y", OwnedValue::Bytes(b"q".to_vec())));
                let mut a: Vec<(&[u8], OwnedValue)> =
                    vec![(b"id", OwnedValue::Bytes(q.id.0.to_vec()))];
                let name: &[u8] = match &q.method {
                    Method::Ping => b"ping",
                    Method::FindNode { target } => {
                        a.push((b"target", OwnedValue::Bytes(target.0.to_vec())));
                        b"find_node"
                    }
                    Method::GetPeers { info_hash } => {
                        a.push((b"info_hash", OwnedValue::Bytes(info_hash.0.to_vec())));
                        b"get_peers"
                    }
                    Method::AnnouncePeer {
                        info_hash,
                        port,
                        implied_port,
                        token,
                    } => {
                        a.push((b"info_hash", OwnedValue::Bytes(info_hash.0.to_vec())));
                        a.push((b"port", OwnedValue::Int(i64::from(*port))));
                        if *implied_port {
                            a.push((b"implied_port", OwnedValue::Int(1)));
                        }
                        a.push((b"token", OwnedValue::Bytes(token.clone())));
                        b"announce_peer"
                    }
                    Method::Unknown(name) => name,
                };
                top.push((b"q", OwnedValue::Bytes(name.to_vec())));
                top.push((b"a", OwnedValue::dict(a)));
            }
            Body::Response(r) => {
                top.push((b"y", OwnedValue::Bytes(b"r".to_vec())));
                let mut d: Vec<(&[u8], OwnedValue)> =
                    vec![(b"id", OwnedValue::Bytes(r.id.0.to_vec()))];
                if !r.nodes.is_empty() {
                    d.push((b"nodes", OwnedValue::Bytes(encode_nodes(&r.nodes))));
                }
                if !r.nodes6.is_empty() {
                    d.push((b"nodes6", OwnedValue::Bytes(encode_nodes(&r.nodes6))));
                }
                if !r.values.is_empty() {
                    let values = r
                        .values
                        .iter()
                        .map(|a| OwnedValue::Bytes(compact_bytes(*a)));
                    d.push((b"values", OwnedValue::list(values)));
                }
                if let Some(t) = &r.token {
                    d.push((b"token", OwnedValue::Bytes(t.clone())));
                }
                top.push((b"r", OwnedValue::dict(d)));
            }
            Body::Error { code, message } => {
                top.push((b"y", OwnedValue::Bytes(b"e".to_vec())));
                top.push((
                    b"e",
                    OwnedValue::list([
                        OwnedValue::Int(*code),
                        OwnedValue::Bytes(message.as_bytes().to_vec()),
                    ]),
                ));
            }
        }
        OwnedValue::dict(top).encode()
    }
}

fn bytes<'a>(v: &Value<'a>, key: &[u8], name: &'static str) -> Result<&'a [u8], KrpcError> {
    v.get(key)
        .ok_or(KrpcError::Missing(name))?
        .as_bytes()
        .ok_or(KrpcError::Invalid(name))
}

fn id20(v: &Value<'_>, key: &[u8], name: &'static str) -> Result<[u8; 20], KrpcError> {
    bytes(v, key, name)?
        .try_into()
        .map_err(|_| KrpcError::Invalid(name))
}

fn decode_query(root: &Value<'_>) -> Result<Query, KrpcError> {
    let q = bytes(root, b"q", "q")?;
    let a = root.get(b"a").ok_or(KrpcError::Missing("a"))?;
    if a.as_dict().is_none() {
        return Err(KrpcError::Invalid("a"));
    }
    let id = NodeId(id20(a, b"id", "id")?);
    let method = match q {
        b"ping" => Method::Ping,
        b"find_node" => Method::FindNode {
            target: NodeId(id20(a, b"target", "target")?),
        },
        b"get_peers" => Method::GetPeers {
            info_hash: InfoHash(id20(a, b"info_hash", "info_hash")?),
        },
        b"announce_peer" => {
            let implied_port = match a.get(b"implied_port") {
                None => false,
                Some(v) => match v.as_int() {
                    Some(0) => false,
                    Some(1) => true,
                    _ => return Err(KrpcError::Invalid("implied_port")),
                },
            };
            let port = match a.get(b"port").map(Value::as_int) {
                Some(Some(p)) if (1..=65535).contains(&p) => p as u16,
                // With implied_port the port key is advisory (some clients send 0 or omit it).
                _ if implied_port => 0,
                None => return Err(KrpcError::Missing("port")),
                Some(_) => return Err(KrpcError::Invalid("port")),
            };
            let token = bytes(a, b"token", "token")?;
            if token.len() > MAX_TOKEN_LEN {
                return Err(KrpcError::Invalid("token"));
            }
            Method::AnnouncePeer {
                info_hash: InfoHash(id20(a, b"info_hash", "info_hash")?),
                port,
                implied_port,
                token: token.to_vec(),
            }
        }
        other => Method::Unknown(other[..other.len().min(32)].to_vec()),
    };
    Ok(Query { id, method })
}

fn decode_response(r: &Value<'_>) -> Result<Response, KrpcError> {
    if r.as_dict().is_none() {
        return Err(KrpcError::Invalid("r"));
    }
    let id = NodeId(id20(r, b"id", "id")?);
    let nodes = match r.get(b"nodes") {
        Some(v) => decode_nodes(v.as_bytes().ok_or(KrpcError::Invalid("nodes"))?, false)
            .ok_or(KrpcError::Invalid("nodes"))?,
        None => Vec::new(),
    };
    let nodes6 = match r.get(b"nodes6") {
        Some(v) => decode_nodes(v.as_bytes().ok_or(KrpcError::Invalid("nodes6"))?, true)
            .ok_or(KrpcError::Invalid("nodes6"))?,
        None => Vec::new(),
    };
    let values = match r.get(b"values") {
        Some(v) => {
            let list = v.as_list().ok_or(KrpcError::Invalid("values"))?;
            let mut out = Vec::with_capacity(list.len().min(MAX_VALUES));
            for item in list {
                let addr = item
                    .as_bytes()
                    .and_then(crate::compact::decode)
                    .ok_or(KrpcError::Invalid("values"))?;
                if out.len() < MAX_VALUES {
                    out.push(addr);
                }
            }
            out
        }
        None => Vec::new(),
    };
    let token = match r.get(b"token") {
        Some(v) => {
            let t = v.as_bytes().ok_or(KrpcError::Invalid("token"))?;
            if t.len() > MAX_TOKEN_LEN {
                return Err(KrpcError::Invalid("token"));
            }
            Some(t.to_vec())
        }
        None => None,
    };
    Ok(Response {
        id,
        nodes,
        nodes6,
        values,
        token,
    })
}

/// Longest error text kept, in bytes.
const MAX_ERROR_TEXT: usize = 256;

/// `bytes` as text (invalid UTF-8 replaced), cut to at most [`MAX_ERROR_TEXT`] bytes on a character
/// boundary, so that decoding the re-encoded text gives the same text.
fn truncated_text(bytes: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    let mut end = text.len().min(MAX_ERROR_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

/// Decodes compact node info: whole 26-byte (IPv4) or 38-byte (IPv6) entries, at most [`MAX_NODES`]
/// kept. `None` if the length is not a multiple of the entry size.
pub fn decode_nodes(b: &[u8], v6: bool) -> Option<Vec<CompactNode>> {
    let size = if v6 { COMPACT_NODE_V6 } else { COMPACT_NODE_V4 };
    if b.len() % size != 0 {
        return None;
    }
    Some(
        b.chunks_exact(size)
            .take(MAX_NODES)
            .filter_map(|c| {
                let id = NodeId(c[..20].try_into().ok()?);
                let addr = crate::compact::decode(&c[20..])?;
                Some(CompactNode { id, addr })
            })
            .collect(),
    )
}

/// Encodes nodes as compact node info (each node in its own family's format; callers put IPv4 nodes in
/// `nodes` and IPv6 ones in `nodes6`).
pub fn encode_nodes(nodes: &[CompactNode]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.len() * COMPACT_NODE_V6);
    for n in nodes {
        out.extend_from_slice(&n.id.0);
        out.extend_from_slice(&compact_bytes(n.addr));
    }
    out
}

/// The compact form of `addr` as its own byte string.
fn compact_bytes(addr: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(crate::compact::V6_LEN);
    crate::compact::encode_into(&mut out, &addr);
    out
}

/// Normalises an IPv4-mapped IPv6 socket address (`::ffff:a.b.c.d`) to plain IPv4, as a dual-stack
/// socket reports them.
pub fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests;
