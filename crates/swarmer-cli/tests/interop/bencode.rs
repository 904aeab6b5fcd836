//! Just enough bencode for the harness: tracker replies and the info hash of a .torrent file.
//!
//! Deliberately independent of swarmer's own codec, so a bug there cannot hide in the harness.

use sha1::{Digest, Sha1};
use sha2::Sha256;

#[derive(Debug)]
pub(crate) enum Value {
    /// The harness never reads integers or lists, only checks that they are well formed.
    Int,
    Bytes(Vec<u8>),
    List,
    Dict(Vec<(Vec<u8>, Value)>),
}

impl Value {
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(entries) => entries
                .iter()
                .find(|(k, _)| k == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// Decodes the whole of `input` as one value.
pub(crate) fn decode(input: &[u8]) -> Result<Value, String> {
    let (value, end) = decode_at(input, 0)?;
    if end != input.len() {
        return Err(format!("{} trailing bytes", input.len() - end));
    }
    Ok(value)
}

fn decode_at(input: &[u8], at: usize) -> Result<(Value, usize), String> {
    let byte = *input.get(at).ok_or("unexpected end")?;
    match byte {
        b'i' => {
            let end = find(input, at + 1, b'e')?;
            std::str::from_utf8(&input[at + 1..end])
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or("bad integer")?;
            Ok((Value::Int, end + 1))
        }
        b'l' | b'd' => {
            let mut items = Vec::new();
            let mut pos = at + 1;
            while input.get(pos) != Some(&b'e') {
                let (item, next) = decode_at(input, pos)?;
                items.push(item);
                pos = next;
            }
            if byte == b'l' {
                return Ok((Value::List, pos + 1));
            }
            if items.len() % 2 != 0 {
                return Err("dictionary with a key but no value".into());
            }
            let mut entries = Vec::new();
            let mut items = items.into_iter();
            while let (Some(Value::Bytes(key)), Some(value)) = (items.next(), items.next()) {
                entries.push((key, value));
            }
            Ok((Value::Dict(entries), pos + 1))
        }
        b'0'..=b'9' => {
            let colon = find(input, at, b':')?;
            let len: usize = std::str::from_utf8(&input[at..colon])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("bad string length")?;
            let data = input
                .get(colon + 1..colon + 1 + len)
                .ok_or("string past end")?;
            Ok((Value::Bytes(data.to_vec()), colon + 1 + len))
        }
        other => Err(format!("unexpected byte {other:#04x} at {at}")),
    }
}

fn find(input: &[u8], from: usize, byte: u8) -> Result<usize, String> {
    input[from..]
        .iter()
        .position(|&b| b == byte)
        .map(|p| from + p)
        .ok_or_else(|| format!("missing {:?}", byte as char))
}

/// The info hash a client uses on the wire for a .torrent file: the SHA-1 of the bencoded `info`
/// value, byte for byte, for v1 and hybrid torrents; for v2-only ones (no `pieces`) the SHA-256
/// truncated to 20 bytes (BEP 52).
pub(crate) fn info_hash(torrent: &[u8]) -> [u8; 20] {
    wire_hashes(torrent)[0]
}

/// Every info hash peers and trackers may know a .torrent file by: [`info_hash`] first, then for a
/// hybrid (v1 `pieces` and a v2 `meta version`) its truncated SHA-256.
pub(crate) fn wire_hashes(torrent: &[u8]) -> Vec<[u8; 20]> {
    let info = info_bytes(torrent);
    let value = decode(info).expect("info dictionary");
    let truncated = || -> [u8; 20] { Sha256::digest(info)[..20].try_into().expect("20 bytes") };
    let v1: [u8; 20] = Sha1::digest(info).into();
    match (
        value.get("pieces").is_some(),
        value.get("meta version").is_some(),
    ) {
        (true, true) => vec![v1, truncated()],
        (true, false) => vec![v1],
        (false, _) => vec![truncated()],
    }
}

/// The v2 info hash (SHA-256 of the `info` value, BEP 52) of a v2 or hybrid .torrent file.
pub(crate) fn v2_info_hash(torrent: &[u8]) -> Option<[u8; 32]> {
    let info = info_bytes(torrent);
    let value = decode(info).expect("info dictionary");
    value
        .get("meta version")
        .map(|_| Sha256::digest(info).into())
}

/// The bytes of a .torrent file's `info` value.
fn info_bytes(torrent: &[u8]) -> &[u8] {
    assert_eq!(torrent.first(), Some(&b'd'), "a torrent is a dictionary");
    let mut pos = 1;
    while torrent.get(pos) != Some(&b'e') {
        let (key, value_start) = decode_at(torrent, pos).expect("torrent key");
        let (_, value_end) = decode_at(torrent, value_start).expect("torrent value");
        if key.bytes() == Some(b"info") {
            return &torrent[value_start..value_end];
        }
        pos = value_end;
    }
    panic!("torrent has no info dictionary");
}
