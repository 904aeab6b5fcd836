//! Magnet URIs (BEP 9 "magnet URI format", BEP 53 `so`): parsing `magnet:?xt=urn:btih:...` links into a
//! typed [`Magnet`]. Fetching the metadata the link names is [`crate::metadata`]'s.
//!
//! The parser is strict about what it uses (the info hash, peer addresses, file indices) and ignores the
//! parameters it does not know, as BEP 9 asks. Its input is capped at [`MAX_MAGNET_LEN`] bytes, so its
//! memory is bounded by a small multiple of that.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

use crate::InfoHash;

/// The longest magnet URI accepted, in bytes (64 KiB): enough for hundreds of trackers, far below
/// anything that could strain memory.
pub const MAX_MAGNET_LEN: usize = 64 * 1024;

/// A parsed magnet link (BEP 9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    /// The info hash to ask peers, trackers and the DHT for: the v1 hash from `xt=urn:btih:` (40
    /// hexadecimal digits or 32 base32 characters), or without one the v2 hash truncated to 20 bytes
    /// (BEP 52).
    pub info_hash: InfoHash,
    /// The v2 info hash (SHA-256) from `xt=urn:btmh:1220<64 hex digits>` (a multihash, BEP 52).
    pub info_hash_v2: Option<[u8; 32]>,
    /// `dn`: the display name, a hint for the user until the metadata arrives. Percent-decoded; not a
    /// path (the metadata's `name`, once validated, decides file names).
    pub display_name: Option<String>,
    /// `tr` (and `tr.N`): tracker URLs, percent-decoded, in URI order, duplicates removed. BEP 9 puts
    /// them all in one tier.
    pub trackers: Vec<String>,
    /// `x.pe`: peers to dial for the metadata, in URI order, duplicates removed.
    pub peers: Vec<MagnetPeer>,
    /// `so` (BEP 53): the file indices to download, as inclusive ranges in URI order (`0,2,4-6` is
    /// `[0..=0, 2..=2, 4..=6]`); `None` when absent, meaning every file.
    pub select_only: Option<Vec<RangeInclusive<u32>>>,
    /// `ws` (and `ws.N`): web seed URLs (BEP 19, GetRight style), percent-decoded, in URI order,
    /// duplicates and non-HTTP(S) URLs dropped, at most
    /// [`MAX_WEB_SEEDS`](crate::metainfo::MAX_WEB_SEEDS).
    pub web_seeds: Vec<String>,
}

/// A peer address from `x.pe` (BEP 9): `hostname:port`, `ipv4:port` or `[ipv6]:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MagnetPeer {
    /// An IP literal with its port.
    Addr(SocketAddr),
    /// A host name to resolve, with its port.
    Host {
        /// The host name, as written (ASCII letters, digits, `-` and `.`).
        host: String,
        /// The TCP port, never 0.
        port: u16,
    },
}

/// Why a string is not a usable magnet link. Values quoted in errors are cut to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    /// Longer than [`MAX_MAGNET_LEN`] bytes; nothing was parsed.
    #[error("magnet link of {len} bytes is longer than the {MAX_MAGNET_LEN}-byte limit")]
    TooLong {
        /// The input's length in bytes.
        len: usize,
    },
    /// Does not start with `magnet:?` (any case).
    #[error("not a magnet link (expected it to start with `magnet:?`)")]
    NotMagnet,
    /// No `xt=urn:btih:` nor `xt=urn:btmh:` parameter.
    #[error("magnet link has no `xt=urn:btih:` or `xt=urn:btmh:` info hash")]
    MissingInfoHash,
    /// A `urn:btmh:` value is not `1220` (SHA-256, 32 bytes) followed by 64 hexadecimal digits.
    #[error("v2 info hash {0:?} is not `1220` and 64 hexadecimal digits (a SHA-256 multihash)")]
    BadMultihash(String),
    /// The `urn:btih:` hash is neither 40 (hex) nor 32 (base32) characters long.
    #[error("info hash has {0} characters, expected 40 (hex) or 32 (base32)")]
    HashLength(usize),
    /// A 40-character hash with a non-hexadecimal character.
    #[error("info hash {0:?} is not hexadecimal")]
    BadHex(String),
    /// A 32-character hash with a character outside the base32 alphabet (RFC 4648: A-Z, 2-7).
    #[error("info hash {0:?} is not base32")]
    BadBase32(String),
    /// Two `xt=urn:btih:` (or two `urn:btmh:`) parameters name different torrents.
    #[error("magnet link names two different info hashes")]
    ConflictingInfoHashes,
    /// A parameter value has a broken `%` escape or does not decode to UTF-8.
    #[error("`{param}` has a bad percent-encoding or is not UTF-8")]
    BadEncoding {
        /// The parameter's name.
        param: String,
    },
    /// An `x.pe` value is not `host:port` or `[ipv6]:port`.
    #[error("peer address {0:?} is not host:port or [ipv6]:port")]
    BadPeer(String),
    /// An `x.pe` port is not a number from 1 to 65535.
    #[error("peer address {0:?} has a bad port (expected 1 to 65535)")]
    BadPort(String),
    /// A `so` value is not a comma-separated list of indices and `a-b` ranges with `a <= b`.
    #[error("file selection {0:?} is not a list of indices and ranges such as `0,2,4-6`")]
    BadFileSelection(String),
}

/// Whether `s` is meant as a magnet link (starts with `magnet:`, in any case) rather than a path:
/// what a command line or an RPC argument that takes either is told apart by.
pub fn is_magnet_uri(s: &str) -> bool {
    s.as_bytes()
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"magnet:"))
}

impl Magnet {
    /// Parses a magnet URI (BEP 9).
    ///
    /// Recognised parameters: `xt` (`urn:btih:` and the v2 `urn:btmh:`, BEP 52; repeats must
    /// agree, other URNs are ignored), `dn`, `tr`, `x.pe`, `ws` (web seeds) and `so` (BEP 53); a `.N` suffix (`tr.1`, `xt.2`) is
    /// accepted as BEP 9 suggests. Values are percent-decoded, and `+` means a space, as in HTML forms
    /// and libtorrent. Unknown parameters and parameters without `=` are ignored; an empty `dn` counts as
    /// absent and an empty `tr` is dropped.
    ///
    /// Errors: see [`MagnetError`].
    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        if uri.len() > MAX_MAGNET_LEN {
            return Err(MagnetError::TooLong { len: uri.len() });
        }
        let query = uri
            .get(..8)
            .filter(|scheme| scheme.eq_ignore_ascii_case("magnet:?"))
            .map(|_| &uri[8..])
            .ok_or(MagnetError::NotMagnet)?;
        // A fragment is not part of the query.
        let query = query.split('#').next().unwrap_or_default();

        let mut info_hash = None;
        let mut magnet = Magnet {
            info_hash: InfoHash([0; 20]),
            info_hash_v2: None,
            display_name: None,
            trackers: Vec::new(),
            peers: Vec::new(),
            select_only: None,
            web_seeds: Vec::new(),
        };
        for pair in query.split('&') {
            let Some((key, raw)) = pair.split_once('=') else {
                continue;
            };
            let decode = || {
                percent_decode(raw).ok_or_else(|| MagnetError::BadEncoding {
                    param: excerpt(key),
                })
            };
            match base_key(key) {
                "xt" => {
                    let value = decode()?;
                    if let Some(hash) = strip_prefix_ignore_case(&value, "urn:btmh:") {
                        let hash = parse_multihash(hash)?;
                        if magnet.info_hash_v2.is_some_and(|seen| seen != hash) {
                            return Err(MagnetError::ConflictingInfoHashes);
                        }
                        magnet.info_hash_v2 = Some(hash);
                        continue;
                    }
                    let Some(hash) = strip_prefix_ignore_case(&value, "urn:btih:") else {
                        continue;
                    };
                    let hash = parse_hash(hash)?;
                    if info_hash.is_some_and(|seen| seen != hash) {
                        return Err(MagnetError::ConflictingInfoHashes);
                    }
                    info_hash = Some(hash);
                }
                "dn" => magnet.display_name = Some(decode()?).filter(|name| !name.is_empty()),
                "tr" => {
                    let url = decode()?;
                    if !url.is_empty() && !magnet.trackers.contains(&url) {
                        magnet.trackers.push(url);
                    }
                }
                "x.pe" => {
                    let peer = parse_peer(&decode()?)?;
                    if !magnet.peers.contains(&peer) {
                        magnet.peers.push(peer);
                    }
                }
                "so" => magnet.select_only = Some(parse_selection(&decode()?)?),
                "ws" => {
                    let url = decode()?;
                    if crate::metainfo::is_http_url(&url)
                        && !magnet.web_seeds.contains(&url)
                        && magnet.web_seeds.len() < crate::metainfo::MAX_WEB_SEEDS
                    {
                        magnet.web_seeds.push(url);
                    }
                }
                _ => {}
            }
        }
        magnet.info_hash = info_hash
            .or(magnet.info_hash_v2.map(crate::metainfo::truncate))
            .ok_or(MagnetError::MissingInfoHash)?;
        Ok(magnet)
    }
}

/// The parameter name without a `.N` index suffix (`tr.1` → `tr`); `x.pe` keeps its dot.
fn base_key(key: &str) -> &str {
    match key.rsplit_once('.') {
        Some((base, index)) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => {
            base
        }
        _ => key,
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    value
        .get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .map(|_| &value[prefix.len()..])
}

/// Decodes `%XX` escapes and `+` (a space); `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = (*bytes.get(i + 1)? as char).to_digit(16)?;
                let lo = (*bytes.get(i + 2)? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A `urn:btih:` hash: 40 hexadecimal digits or 32 base32 characters (BEP 9), either case.
fn parse_hash(hash: &str) -> Result<InfoHash, MagnetError> {
    // Counted in characters, so that multi-byte text gets a length error rather than a split slice.
    match hash.chars().count() {
        40 => InfoHash::from_hex(hash).ok_or_else(|| MagnetError::BadHex(excerpt(hash))),
        32 => base32_decode(hash)
            .map(InfoHash)
            .ok_or_else(|| MagnetError::BadBase32(excerpt(hash))),
        _ => Err(MagnetError::HashLength(hash.chars().count())),
    }
}

/// A `urn:btmh:` multihash: `12` (SHA-256), `20` (32 bytes), then the 64 hexadecimal digits of the
/// v2 info hash (BEP 52).
fn parse_multihash(hash: &str) -> Result<[u8; 32], MagnetError> {
    let bad = || MagnetError::BadMultihash(excerpt(hash));
    let digits = hash.strip_prefix("1220").ok_or_else(bad)?;
    if digits.len() != 64 || !digits.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.as_bytes().chunks_exact(2).enumerate() {
        let text = std::str::from_utf8(pair).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(text, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Decodes 32 base32 characters (RFC 4648 alphabet, any case, no padding) into 20 bytes.
fn base32_decode(text: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut acc: u64 = 0;
    let mut bits = 0;
    let mut pos = 0;
    for c in text.bytes() {
        let value = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u64::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(pos)? = (acc >> bits) as u8;
            pos += 1;
            acc &= (1 << bits) - 1;
        }
    }
    (pos == 20 && bits == 0).then_some(out)
}

/// An `x.pe` value: `[ipv6]:port`, `ipv4:port` or `hostname:port`.
fn parse_peer(value: &str) -> Result<MagnetPeer, MagnetError> {
    let bad = || MagnetError::BadPeer(excerpt(value));
    if let Some(rest) = value.strip_prefix('[') {
        let (ip, port) = rest.split_once("]:").ok_or_else(bad)?;
        let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| bad())?;
        return Ok(MagnetPeer::Addr(SocketAddr::new(
            IpAddr::V6(ip),
            parse_port(value, port)?,
        )));
    }
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(bad());
    }
    let port = parse_port(value, port)?;
    Ok(match host.parse::<IpAddr>() {
        Ok(ip) => MagnetPeer::Addr(SocketAddr::new(ip, port)),
        Err(_) => MagnetPeer::Host {
            host: host.to_owned(),
            port,
        },
    })
}

fn parse_port(value: &str, port: &str) -> Result<u16, MagnetError> {
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    match port.parse::<u16>() {
        Ok(port) if digits && port != 0 => Ok(port),
        _ => Err(MagnetError::BadPort(excerpt(value))),
    }
}

/// A BEP 53 `so` value: comma-separated indices and inclusive `a-b` ranges.
fn parse_selection(value: &str) -> Result<Vec<RangeInclusive<u32>>, MagnetError> {
    let bad = || MagnetError::BadFileSelection(excerpt(value));
    let index = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<u32>().map_err(|_| bad())
    };
    value
        .split(',')
        .map(|item| match item.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (index(first)?, index(last)?);
                if first > last {
                    return Err(bad());
                }
                Ok(first..=last)
            }
            None => index(item).map(|i| i..=i),
        })
        .collect()
}

/// At most 64 characters of `s`, for error messages.
fn excerpt(s: &str) -> String {
    const LEN: usize = 64;
    let mut out: String = s.chars().take(LEN).collect();
    if s.chars().nth(LEN).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests;
