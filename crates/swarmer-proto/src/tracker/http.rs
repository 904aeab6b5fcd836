//! The HTTP tracker protocol without IO: building the announce URL (BEP 3 "trackers", BEP 23 compact) and
//! parsing the bencoded reply (BEP 3, BEP 23 compact peers, BEP 7 `peers6`).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::{
    AnnounceEvent, AnnounceRequest, AnnounceResponse, CryptoSupport, MAX_TRACKER_ID_LEN, PeerSink,
    TrackerError, clamp_interval, sanitize_message,
};
use crate::bencode::{self, Value, ValueKind};

/// Builds the announce URL for `req` from the tracker's `announce` URL (BEP 3 "trackers").
///
/// The query is appended with `?`, or with `&` when `announce` already has a query (a fragment, if any,
/// stays last). `info_hash`, `peer_id` and `trackerid` are percent-encoded byte by byte: every byte
/// outside the unreserved set `A-Z a-z 0-9 - . _ ~` becomes `%XX` in upper case, and a space is never
/// written as `+` (some trackers, opentracker among them, do not decode `+`). The query asks for a compact
/// peer list (`compact=1`, BEP 23), omits `event` for [`AnnounceEvent::None`], sends `numwant` only when
/// set and `key` as 8 hexadecimal digits, then `supportcrypto`/`requirecrypto` as `req.crypto` says.
pub fn announce_url(announce: &str, req: &AnnounceRequest) -> String {
    let (base, fragment) = match announce.find('#') {
        Some(i) => announce.split_at(i),
        None => (announce, ""),
    };
    let mut url = String::with_capacity(base.len() + 256);
    url.push_str(base);
    if !base.contains('?') {
        url.push('?');
    } else if !(base.ends_with('?') || base.ends_with('&')) {
        url.push('&');
    }
    url.push_str("info_hash=");
    percent_encode(&mut url, &req.info_hash.0);
    url.push_str("&peer_id=");
    percent_encode(&mut url, &req.peer_id.0);
    // Writing to a String cannot fail.
    let _ = write!(
        url,
        "&port={}&uploaded={}&downloaded={}&left={}&compact=1",
        req.port, req.uploaded, req.downloaded, req.left
    );
    let event = match req.event {
        AnnounceEvent::None => None,
        AnnounceEvent::Started => Some("started"),
        AnnounceEvent::Completed => Some("completed"),
        AnnounceEvent::Stopped => Some("stopped"),
    };
    if let Some(event) = event {
        url.push_str("&event=");
        url.push_str(event);
    }
    if let Some(n) = req.num_want {
        let _ = write!(url, "&numwant={n}");
    }
    let _ = write!(url, "&key={:08x}", req.key);
    match req.crypto {
        CryptoSupport::Unstated => {}
        CryptoSupport::Supported => url.push_str("&supportcrypto=1"),
        CryptoSupport::Required => url.push_str("&supportcrypto=1&requirecrypto=1"),
    }
    if let Some(id) = &req.tracker_id {
        url.push_str("&trackerid=");
        percent_encode(&mut url, id);
    }
    if let Some(ip) = req.ipv6 {
        // BEP 7: the address in its text form, its colons escaped as libtorrent does.
        url.push_str("&ipv6=");
        percent_encode(&mut url, ip.to_string().as_bytes());
    }
    url.push_str(fragment);
    url
}

/// Appends `bytes` to `out` percent-encoded (RFC 3986): unreserved characters as they are, every
/// other byte as `%XX`. Used for announce query values and for magnet link parameters.
pub fn percent_encode(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// Parses the body of an HTTP tracker's announce reply.
///
/// - `failure reason` → [`TrackerError::Failure`], whatever else the dictionary holds.
/// - `interval` is required; it and `min interval` are clamped to
///   [`MIN_ANNOUNCE_INTERVAL`](super::MIN_ANNOUNCE_INTERVAL)`..=`[`MAX_ANNOUNCE_INTERVAL`](super::MAX_ANNOUNCE_INTERVAL)
///   seconds, so negative or absurd values are never trusted.
/// - `peers` is either a compact string (BEP 23, 6 bytes per peer) or a list of dictionaries with `ip`
///   (an IPv4 or IPv6 literal; host names and unparsable entries are skipped) and `port` (BEP 3); an
///   absent `peers` means none. `peers6` is a compact string of 18-byte entries (BEP 7). A compact string
///   whose length is not a multiple of its entry size is [`TrackerError::Malformed`].
/// - `complete` / `incomplete` become seeders / leechers when they fit in a `u32`; `tracker id` is kept
///   when at most [`MAX_TRACKER_ID_LEN`] bytes; `warning message` is kept, sanitised.
/// - Anything that is not a bencoded dictionary, such as an HTML error page, is
///   [`TrackerError::Malformed`] with a short printable excerpt of the body.
///
/// Memory use is proportional to the body size (the decoded tree of an 8 MiB body of peer dictionaries
/// peaks near 90 MB; a compact string is never copied); peers are capped at
/// [`MAX_PEERS`](super::MAX_PEERS), and the entries past the cap are not even looked at.
pub fn parse_announce_response(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    // Lenient about key order: some trackers do not sort their keys, and a reply is never hashed.
    let root = bencode::decode_lenient(body).map_err(|e| {
        let trimmed = body.trim_ascii_start();
        let kind = if trimmed.first() == Some(&b'<') {
            "HTML instead of bencode"
        } else {
            "not bencode"
        };
        TrackerError::Malformed(format!("{kind} ({e}): {:?}", excerpt(body)))
    })?;
    if root.as_dict().is_none() {
        return Err(TrackerError::Malformed(
            "reply is not a bencoded dictionary".into(),
        ));
    }
    if let Some(reason) = root.get(b"failure reason") {
        let text = match reason.as_bytes() {
            Some(b) => sanitize_message(b),
            None => "(failure reason is not a string)".into(),
        };
        return Err(TrackerError::Failure(text));
    }
    let interval = match root.get(b"interval").map(Value::kind) {
        Some(ValueKind::Int(i)) => clamp_interval(*i),
        Some(_) => return Err(malformed("interval is not an integer")),
        None => return Err(malformed("missing interval")),
    };
    let min_interval = root
        .get(b"min interval")
        .and_then(Value::as_int)
        .map(clamp_interval);
    let tracker_id = root
        .get(b"tracker id")
        .and_then(Value::as_bytes)
        .filter(|id| !id.is_empty() && id.len() <= MAX_TRACKER_ID_LEN)
        .map(<[u8]>::to_vec);
    let count = |key: &[u8]| {
        root.get(key)
            .and_then(Value::as_int)
            .and_then(|n| u32::try_from(n).ok())
    };
    let warning = root
        .get(b"warning message")
        .and_then(Value::as_bytes)
        .map(sanitize_message);

    let mut sink = PeerSink::default();
    match root.get(b"peers").map(Value::kind) {
        None => {}
        Some(ValueKind::Bytes(compact)) => sink.push_compact(compact, 6)?,
        Some(ValueKind::List(entries)) => {
            for entry in entries {
                if sink.is_full() {
                    break;
                }
                if let Some(addr) = dict_peer(entry) {
                    sink.push(addr);
                }
            }
        }
        Some(_) => return Err(malformed("peers is neither a string nor a list")),
    }
    match root.get(b"peers6").map(Value::kind) {
        None => {}
        Some(ValueKind::Bytes(compact)) => sink.push_compact(compact, 18)?,
        Some(_) => return Err(malformed("peers6 is not a string")),
    }

    Ok(AnnounceResponse {
        interval,
        min_interval,
        tracker_id,
        seeders: count(b"complete"),
        leechers: count(b"incomplete"),
        peers: sink.peers,
        warning,
    })
}

fn malformed(what: &str) -> TrackerError {
    TrackerError::Malformed(what.into())
}

/// One BEP 3 peer dictionary (`ip`, `port`, optional `peer id`), or `None` if it is not usable.
fn dict_peer(entry: &Value<'_>) -> Option<SocketAddr> {
    let ip = std::str::from_utf8(entry.get(b"ip")?.as_bytes()?).ok()?;
    let ip: IpAddr = ip.parse().ok()?;
    let port = u16::try_from(entry.get(b"port")?.as_int()?).ok()?;
    Some(SocketAddr::new(ip, port))
}

/// The first bytes of a body as printable ASCII, for error messages.
fn excerpt(body: &[u8]) -> String {
    const LEN: usize = 64;
    let mut s: String = body
        .iter()
        .take(LEN)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    if body.len() > LEN {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::{MAX_ANNOUNCE_INTERVAL, MAX_PEERS, MIN_ANNOUNCE_INTERVAL};
    use super::*;
    use crate::{InfoHash, PeerId};

    fn request() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash(*b"\x00 +%&~aZ9-._\xff\x7f/?=#\x80\x01"),
            peer_id: PeerId(*b"-SW0100-abc def+ghi\n"),
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: AnnounceEvent::Started,
            num_want: Some(50),
            key: 0xbeef,
            tracker_id: None,
            crypto: CryptoSupport::Unstated,
            ipv6: None,
        }
    }

    #[test]
    fn url_states_encryption_support_as_asked() {
        let mut req = request();
        req.crypto = CryptoSupport::Supported;
        assert!(announce_url("http://t/a", &req).ends_with("&key=0000beef&supportcrypto=1"));
        req.crypto = CryptoSupport::Required;
        let url = announce_url("http://t/a", &req);
        assert!(url.ends_with("&supportcrypto=1&requirecrypto=1"));
    }

    #[test]
    fn url_carries_our_ipv6_address() {
        let mut req = request();
        req.ipv6 = Some("2001:db8::1".parse().unwrap());
        let url = announce_url("http://t/a#f", &req);
        assert!(
            url.ends_with("&key=0000beef&ipv6=2001%3Adb8%3A%3A1#f"),
            "{url}"
        );
    }

    #[test]
    fn url_percent_encodes_every_reserved_byte() {
        let url = announce_url("http://t.example/announce", &request());
        assert_eq!(
            url,
            "http://t.example/announce?info_hash=%00%20%2B%25%26~aZ9-._%FF%7F%2F%3F%3D%23%80%01\
             &peer_id=-SW0100-abc%20def%2Bghi%0A&port=6881&uploaded=1&downloaded=2&left=3\
             &compact=1&event=started&numwant=50&key=0000beef"
        );
    }

    #[test]
    fn url_keeps_an_existing_query_and_fragment() {
        let mut req = request();
        req.event = AnnounceEvent::None;
        req.num_want = None;
        req.tracker_id = Some(b"id 1".to_vec());
        let url = announce_url("http://t.example/a?passkey=x#frag", &req);
        assert!(url.starts_with("http://t.example/a?passkey=x&info_hash=%00"));
        assert!(url.ends_with("&left=3&compact=1&key=0000beef&trackerid=id%201#frag"));
        assert!(!url.contains("event="));
        assert!(!url.contains("numwant="));
        let url = announce_url("http://t.example/a?", &req);
        assert!(url.starts_with("http://t.example/a?info_hash="));
    }

    #[test]
    fn parses_compact_reply() {
        let body = b"d8:completei5e10:incompletei3e8:intervali1800e12:min intervali900e\
5:peers12:\x01\x02\x03\x04\x1a\xe1\x05\x06\x07\x08\x00\x506:peers618:\
\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe1e";
        let r = parse_announce_response(body).unwrap();
        assert_eq!(r.interval, 1800);
        assert_eq!(r.min_interval, Some(900));
        assert_eq!(r.seeders, Some(5));
        assert_eq!(r.leechers, Some(3));
        assert_eq!(
            r.peers,
            vec![
                "1.2.3.4:6881".parse().unwrap(),
                "5.6.7.8:80".parse().unwrap(),
                "[2001:db8::1]:6881".parse().unwrap(),
            ]
        );
    }

    #[test]
    fn parses_dictionary_peers() {
        let body = b"d8:intervali30e5:peersld2:ip7:1.2.3.47:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti6881eed2:ip11:example.org4:porti1eed2:ip3:::14:porti2eed2:ip7:1.2.3.44:porti70000eed2:ip7:9.9.9.94:porti0eei5ee10:tracker id3:xyz15:warning message4:caree";
        let r = parse_announce_response(body).unwrap();
        assert_eq!(r.interval, MIN_ANNOUNCE_INTERVAL);
        assert_eq!(
            r.peers,
            vec!["1.2.3.4:6881".parse().unwrap(), "[::1]:2".parse().unwrap()]
        );
        assert_eq!(r.tracker_id.as_deref(), Some(&b"xyz"[..]));
        assert_eq!(r.warning.as_deref(), Some("care"));
        assert_eq!(r.seeders, None);
    }

    #[test]
    fn unsorted_keys_are_accepted_but_duplicates_are_not() {
        let body = b"d8:intervali1800e5:peers6:\x01\x02\x03\x04\x1a\xe18:completei2ee";
        let r = parse_announce_response(body).unwrap();
        assert_eq!(r.interval, 1800);
        assert_eq!(r.seeders, Some(2));
        assert_eq!(r.peers, vec!["1.2.3.4:6881".parse().unwrap()]);
        let r = parse_announce_response(b"d8:intervali1800e5:peers0:8:intervali60ee");
        assert!(matches!(r, Err(TrackerError::Malformed(_))), "{r:?}");
    }

    #[test]
    fn failure_reason_wins() {
        let r = parse_announce_response(
            b"d14:failure reason36:Requested download is not authorized8:intervali5ee",
        );
        assert_eq!(
            r,
            Err(TrackerError::Failure(
                "Requested download is not authorized".into()
            ))
        );
    }

    #[test]
    fn absurd_numbers_are_clamped_or_dropped() {
        let r = parse_announce_response(
            b"d8:completei-1e10:incompletei99999999999e8:intervali999999999e12:min intervali-7ee",
        )
        .unwrap();
        assert_eq!(r.interval, MAX_ANNOUNCE_INTERVAL);
        assert_eq!(r.min_interval, Some(MIN_ANNOUNCE_INTERVAL));
        assert_eq!((r.seeders, r.leechers), (None, None));
        assert!(r.peers.is_empty());
    }

    #[test]
    fn malformed_replies_are_rejected() {
        for body in [
            &b"<html><body>502 Bad Gateway</body></html>"[..],
            b"",
            b"d5:peers0:e",
            b"d8:interval3:abce",
            b"d8:intervali60e5:peers5:abcdee",
            b"d8:intervali60e6:peers65:abcdee",
            b"d8:intervali60e5:peersi3ee",
            b"li1ee",
        ] {
            let r = parse_announce_response(body);
            assert!(
                matches!(r, Err(TrackerError::Malformed(_))),
                "{:?} -> {r:?}",
                String::from_utf8_lossy(body)
            );
        }
        let Err(TrackerError::Malformed(msg)) =
            parse_announce_response(b"  <html>\n<title>oops\x00</title>")
        else {
            panic!("expected Malformed");
        };
        assert!(msg.contains("HTML"), "{msg}");
        assert!(msg.contains("<html>.<title>oops.</title>"), "{msg}");
    }

    #[test]
    fn peer_count_is_capped() {
        let n = MAX_PEERS + 500;
        let mut compact = Vec::with_capacity(n * 6);
        for i in 0..n as u32 {
            compact.extend_from_slice(&(0x0a00_0000 + i).to_be_bytes());
            compact.extend_from_slice(&6881u16.to_be_bytes());
        }
        let mut body = format!("d8:intervali60e5:peers{}:", compact.len()).into_bytes();
        body.extend_from_slice(&compact);
        body.push(b'e');
        let r = parse_announce_response(&body).unwrap();
        assert_eq!(r.peers.len(), MAX_PEERS);
    }

    #[test]
    fn a_body_full_of_peer_dictionaries_is_capped() {
        // 8 MiB (the HTTP client's body cap) of BEP 3 peer dictionaries: about 290,000 entries, led by
        // unusable ones that must not take places under the cap.
        let mut body = b"d8:intervali0e5:peersl".to_vec();
        for ip in ["0.0.0.0", "255.255.255.255", "224.0.0.9", "::", "ff02::1"] {
            body.extend_from_slice(format!("d2:ip{}:{ip}4:porti6881ee", ip.len()).as_bytes());
        }
        body.extend_from_slice(b"d2:ip9:127.0.0.94:porti0ee");
        let mut i = 0u32;
        while body.len() < 8 * 1024 * 1024 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            body.extend_from_slice(format!("d2:ip{}:{ip}4:porti6881ee", ip.len()).as_bytes());
            i += 1;
        }
        body.extend_from_slice(b"ee");
        let r = parse_announce_response(&body).unwrap();
        assert_eq!(r.peers.len(), MAX_PEERS);
        assert_eq!(r.peers[0], "10.0.0.0:6881".parse().unwrap());
        assert_eq!(r.interval, MIN_ANNOUNCE_INTERVAL);
    }
}
