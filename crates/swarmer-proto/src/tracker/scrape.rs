//! Tracker scrape codecs without IO: seeders, completed downloads and leechers for many torrents in
//! one request, over HTTP (BEP 48, the `announce` → `scrape` URL rule) and UDP (BEP 15, action 2).
//!
//! A scrape reply is as hostile as an announce reply: only the info hashes that were asked about
//! are kept (a reply listing a million others costs nothing past its parse), counts that do not fit
//! a `u32` are dropped, and a UDP reply shorter than its header is a [`TrackerError`] like any other.

use super::{TrackerError, sanitize_message};
use crate::InfoHash;
use crate::bencode::{self, Value};

/// Action number of a BEP 15 scrape.
pub const ACTION_SCRAPE: u32 = 2;

/// The most info hashes in one UDP scrape (BEP 15: "up to about 74", so the request stays within a
/// 1,500-byte packet); ask in several requests for more.
pub const MAX_UDP_SCRAPE: usize = 74;

/// The most info hashes in one HTTP scrape URL, which keeps the URL under about 5 KB (each hash is
/// up to 71 bytes percent-encoded); ask in several requests for more.
pub const MAX_HTTP_SCRAPE: usize = 64;

/// What a tracker knows of one torrent's swarm (BEP 48 `complete`, `downloaded`, `incomplete`;
/// BEP 15 seeders, completed, leechers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrapeCounts {
    /// Peers with every piece.
    pub seeders: u32,
    /// Downloads the tracker saw complete (`event=completed`), ever.
    pub completed: u32,
    /// Peers still downloading.
    pub leechers: u32,
}

/// The scrape URL of an announce URL (BEP 48): the last path component must start with
/// `announce`, which becomes `scrape`; the rest (a query, say) stays. `None` when the tracker
/// cannot be scraped by that rule. UDP trackers (`udp://`) scrape at their announce address, so
/// their URL is returned as it is.
pub fn scrape_url(announce: &str) -> Option<String> {
    if announce.starts_with("udp://") {
        return Some(announce.to_owned());
    }
    let (path_end, rest) = match announce.find(['?', '#']) {
        Some(i) => (i, &announce[i..]),
        None => (announce.len(), ""),
    };
    let path = &announce[..path_end];
    let slash = path.rfind('/')?;
    let last = &path[slash + 1..];
    let tail = last.strip_prefix("announce")?;
    Some(format!("{}scrape{tail}{rest}", &path[..=slash]))
}

/// The HTTP scrape request for `hashes` (at most [`MAX_HTTP_SCRAPE`] are used): `scrape` with one
/// `info_hash` parameter per torrent, appended to any query the URL already has.
pub fn http_scrape_url(scrape: &str, hashes: &[InfoHash]) -> String {
    let mut url = scrape.to_owned();
    let mut separator = if scrape.contains('?') { '&' } else { '?' };
    for hash in hashes.iter().take(MAX_HTTP_SCRAPE) {
        url.push(separator);
        url.push_str("info_hash=");
        super::http::percent_encode(&mut url, &hash.0);
        separator = '&';
    }
    url
}

/// Parses an HTTP scrape reply (BEP 48): `files` maps each 20-byte info hash to `complete`,
/// `downloaded` and `incomplete`. Returns the counts of the `requested` hashes the reply has, in
/// `requested` order; others are ignored, as are entries whose counts are missing or do not fit a
/// `u32` (they are 0).
///
/// Errors: [`TrackerError::Failure`] for a `failure reason`; [`TrackerError::Malformed`] when the
/// body is not a bencoded dictionary with a `files` dictionary.
pub fn parse_http_scrape(
    body: &[u8],
    requested: &[InfoHash],
) -> Result<Vec<(InfoHash, ScrapeCounts)>, TrackerError> {
    let root = bencode::decode_lenient(body)
        .map_err(|e| TrackerError::Malformed(format!("scrape reply is not bencode ({e})")))?;
    if root.as_dict().is_none() {
        return Err(TrackerError::Malformed(
            "scrape reply is not a dictionary".into(),
        ));
    }
    if let Some(reason) = root.get(b"failure reason") {
        let text = reason
            .as_bytes()
            .map_or_else(|| "(not a string)".into(), sanitize_message);
        return Err(TrackerError::Failure(text));
    }
    let files = root
        .get(b"files")
        .filter(|f| f.as_dict().is_some())
        .ok_or_else(|| TrackerError::Malformed("scrape reply has no `files` dictionary".into()))?;
    let count = |entry: &Value<'_>, key: &[u8]| {
        entry
            .get(key)
            .and_then(Value::as_int)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    };
    Ok(requested
        .iter()
        .filter_map(|hash| {
            let entry = files.get(&hash.0)?;
            entry.as_dict()?;
            let counts = ScrapeCounts {
                seeders: count(entry, b"complete"),
                completed: count(entry, b"downloaded"),
                leechers: count(entry, b"incomplete"),
            };
            Some((*hash, counts))
        })
        .collect())
}

/// Encodes a UDP scrape request (BEP 15 "scrape"): connection id, action 2, transaction id, then the
/// info hashes (at most [`MAX_UDP_SCRAPE`] are used).
pub fn encode_udp_scrape(connection_id: u64, transaction_id: u32, hashes: &[InfoHash]) -> Vec<u8> {
    let hashes = &hashes[..hashes.len().min(MAX_UDP_SCRAPE)];
    let mut out = Vec::with_capacity(16 + 20 * hashes.len());
    out.extend_from_slice(&connection_id.to_be_bytes());
    out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    for hash in hashes {
        out.extend_from_slice(&hash.0);
    }
    out
}

/// Decodes a UDP scrape reply to the request with `transaction_id` for `asked` info hashes: 12
/// bytes of seeders, completed and leechers per torrent, in request order. A reply with fewer
/// entries answers the first ones (trackers cut long lists); bytes past `asked` entries are
/// ignored.
///
/// Errors: as [`super::udp::decode_connect_response`] (error packets, wrong transaction id or
/// action, a packet shorter than its 8-byte header), and [`TrackerError::Malformed`] when the
/// entries are not whole.
pub fn decode_udp_scrape(
    packet: &[u8],
    transaction_id: u32,
    asked: usize,
) -> Result<Vec<ScrapeCounts>, TrackerError> {
    let body = super::udp::check_header(packet, transaction_id, ACTION_SCRAPE, 8)?;
    if body.len() % 12 != 0 {
        return Err(TrackerError::Malformed(format!(
            "UDP scrape reply body of {} bytes is not whole 12-byte entries",
            body.len()
        )));
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Ok(body
        .chunks_exact(12)
        .take(asked.min(MAX_UDP_SCRAPE))
        .map(|e| ScrapeCounts {
            seeders: be(&e[0..4]),
            completed: be(&e[4..8]),
            leechers: be(&e[8..12]),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::OwnedValue;

    #[test]
    fn the_bep_48_url_rule() {
        for (announce, scrape) in [
            (
                "http://example.com/announce",
                Some("http://example.com/scrape"),
            ),
            (
                "http://example.com/x/announce",
                Some("http://example.com/x/scrape"),
            ),
            (
                "http://example.com/announce.php",
                Some("http://example.com/scrape.php"),
            ),
            (
                "http://example.com/a/announce?x2%0644",
                Some("http://example.com/a/scrape?x2%0644"),
            ),
            (
                "https://t.example/announce?passkey=abc",
                Some("https://t.example/scrape?passkey=abc"),
            ),
            ("http://example.com/a", None),
            (
                "http://example.com/announce?x=2/4",
                Some("http://example.com/scrape?x=2/4"),
            ),
            ("http://example.com/a%2Fannounce", None),
            ("http://example.com/x%064announce", None),
            (
                "udp://tracker.example:6969/announce",
                Some("udp://tracker.example:6969/announce"),
            ),
            ("announce", None),
        ] {
            assert_eq!(scrape_url(announce).as_deref(), scrape, "{announce}");
        }
    }

    #[test]
    fn http_requests_name_every_torrent() {
        let hashes = [InfoHash([0xaa; 20]), InfoHash([0x20; 20])];
        let url = http_scrape_url("http://t/scrape?passkey=k", &hashes);
        assert_eq!(
            url,
            format!(
                "http://t/scrape?passkey=k&info_hash={}&info_hash={}",
                "%AA".repeat(20),
                "%20".repeat(20)
            )
        );
        let many: Vec<InfoHash> = (0..200u8).map(|i| InfoHash([i; 20])).collect();
        let url = http_scrape_url("http://t/scrape", &many);
        assert_eq!(url.matches("info_hash=").count(), MAX_HTTP_SCRAPE);
    }

    fn reply(entries: &[(InfoHash, i64, i64, i64)]) -> Vec<u8> {
        let files = OwnedValue::Dict(
            entries
                .iter()
                .map(|(h, c, d, i)| {
                    (
                        h.0.to_vec(),
                        OwnedValue::dict([
                            ("complete", OwnedValue::Int(*c)),
                            ("downloaded", OwnedValue::Int(*d)),
                            ("incomplete", OwnedValue::Int(*i)),
                        ]),
                    )
                })
                .collect(),
        );
        OwnedValue::dict([("files", files)]).encode()
    }

    #[test]
    fn http_replies_keep_only_what_was_asked() {
        let (a, b, other) = (InfoHash([1; 20]), InfoHash([2; 20]), InfoHash([3; 20]));
        let body = reply(&[(a, 5, 50, 10), (other, 1, 1, 1), (b, -1, 1 << 40, 3)]);
        let got = parse_http_scrape(&body, &[b, a, InfoHash([4; 20])]).unwrap();
        assert_eq!(
            got,
            vec![
                (
                    b,
                    ScrapeCounts {
                        seeders: 0,
                        completed: 0,
                        leechers: 3
                    }
                ),
                (
                    a,
                    ScrapeCounts {
                        seeders: 5,
                        completed: 50,
                        leechers: 10
                    }
                ),
            ]
        );
        assert!(matches!(
            parse_http_scrape(b"d14:failure reason5:nope!e", &[a]),
            Err(TrackerError::Failure(m)) if m == "nope!"
        ));
        for bad in [&b"<html>"[..], b"le", b"d5:filesi1ee", b"de", b"d5:filesd"] {
            assert!(
                matches!(
                    parse_http_scrape(bad, &[a]),
                    Err(TrackerError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        // Deeply nested or huge: the decoder's bounds hold, and nothing unasked is kept.
        let nested = format!("d5:filesd{}e", "l".repeat(100_000));
        assert!(parse_http_scrape(nested.as_bytes(), &[a]).is_err());
        let many: Vec<_> = (0..50_000u32)
            .map(|i| {
                let mut h = [0u8; 20];
                h[..4].copy_from_slice(&i.to_be_bytes());
                (InfoHash(h), 1, 1, 1)
            })
            .collect();
        assert_eq!(parse_http_scrape(&reply(&many), &[a]).unwrap(), vec![]);
    }

    #[test]
    fn udp_round_trip_and_bounds() {
        let hashes: Vec<InfoHash> = (0..100u8).map(|i| InfoHash([i; 20])).collect();
        let packet = encode_udp_scrape(0x0102_0304_0506_0708, 77, &hashes);
        assert_eq!(packet.len(), 16 + 20 * MAX_UDP_SCRAPE);
        assert_eq!(&packet[8..12], &ACTION_SCRAPE.to_be_bytes());
        assert_eq!(&packet[16..36], &[0u8; 20]);

        let mut reply = Vec::new();
        reply.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
        reply.extend_from_slice(&77u32.to_be_bytes());
        for (s, c, l) in [(1u32, 2u32, 3u32), (4, 5, 6)] {
            for n in [s, c, l] {
                reply.extend_from_slice(&n.to_be_bytes());
            }
        }
        let got = decode_udp_scrape(&reply, 77, 2).unwrap();
        assert_eq!(
            got,
            vec![
                ScrapeCounts {
                    seeders: 1,
                    completed: 2,
                    leechers: 3
                },
                ScrapeCounts {
                    seeders: 4,
                    completed: 5,
                    leechers: 6
                },
            ]
        );
        assert_eq!(decode_udp_scrape(&reply, 77, 1).unwrap().len(), 1);
        assert!(matches!(
            decode_udp_scrape(&reply, 78, 2),
            Err(TrackerError::TransactionMismatch { .. })
        ));
        assert!(matches!(
            decode_udp_scrape(&reply[..reply.len() - 1], 77, 2),
            Err(TrackerError::Malformed(_))
        ));
        assert!(matches!(
            decode_udp_scrape(&reply[..5], 77, 2),
            Err(TrackerError::Malformed(_))
        ));
        let mut error = 3u32.to_be_bytes().to_vec();
        error.extend_from_slice(&77u32.to_be_bytes());
        error.extend_from_slice(b"unknown torrent");
        assert_eq!(
            decode_udp_scrape(&error, 77, 2),
            Err(TrackerError::Failure("unknown torrent".into()))
        );
    }
}
