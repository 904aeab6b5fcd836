//! Tests of Local Service Discovery (BEP 14): the `BT-SEARCH` codec on the example and on malformed
//! datagrams, the announce schedule and its bounds, and the filter for announces we receive.

use super::*;

fn hash(n: u8) -> InfoHash {
    InfoHash([n; 20])
}

fn cookie() -> Cookie {
    Cookie::new("c00k1e").unwrap()
}

/// The example of BEP 14, with its two trailing blank lines.
const BEP_EXAMPLE: &[u8] = b"BT-SEARCH * HTTP/1.1\r\n\
    Host: 239.192.152.143:6771\r\n\
    Port: 6881\r\n\
    Infohash: 0123456789ABCDEF0123456789abcdef01234567\r\n\
    cookie: 5f0e3a9c\r\n\
    \r\n\
    \r\n";

#[test]
fn parses_the_bep_example() {
    let a = parse(BEP_EXAMPLE).unwrap();
    assert_eq!(a.port, 6881);
    assert_eq!(
        a.info_hashes,
        [InfoHash::from_hex("0123456789abcdef0123456789abcdef01234567").unwrap()]
    );
    assert_eq!(a.cookie, Cookie::new("5f0e3a9c"));
}

#[test]
fn encode_parse_round_trip() {
    let hashes: Vec<InfoHash> = (0..3).map(hash).collect();
    for group in [Group::V4, Group::V6] {
        let datagrams = encode(group, 51413, &hashes, &cookie());
        assert_eq!(datagrams.len(), 1);
        let text = String::from_utf8(datagrams[0].clone()).unwrap();
        assert!(text.starts_with("BT-SEARCH * HTTP/1.1\r\n"));
        assert!(text.contains(&format!("Host: {}\r\n", group.host())));
        assert!(text.ends_with("\r\n\r\n\r\n"));
        let a = parse(&datagrams[0]).unwrap();
        assert_eq!(a.port, 51413);
        assert_eq!(a.info_hashes, hashes);
        assert_eq!(a.cookie, Some(cookie()));
    }
}

#[test]
fn many_hashes_are_split_into_datagrams_under_1400_bytes() {
    let hashes: Vec<InfoHash> = (0..50).map(hash).collect();
    let long_cookie = Cookie::new(&"x".repeat(MAX_COOKIE_LEN)).unwrap();
    let datagrams = encode(Group::V6, 65535, &hashes, &long_cookie);
    assert_eq!(datagrams.len(), 3);
    let mut all = Vec::new();
    for d in &datagrams {
        assert!(d.len() <= MAX_DATAGRAM, "{} bytes", d.len());
        all.extend(parse(d).unwrap().info_hashes);
    }
    assert_eq!(all, hashes);
    assert!(encode(Group::V4, 1, &[], &cookie()).is_empty());
}

#[test]
fn accepts_bare_newlines_any_header_case_and_unknown_headers() {
    let text = "BT-SEARCH * HTTP/1.1\nHOST: whatever\nport:  80 \nX-Other: 1\n\
        INFOHASH:\t0101010101010101010101010101010101010101\n\n";
    let a = parse(text.as_bytes()).unwrap();
    assert_eq!((a.port, a.info_hashes, a.cookie), (80, vec![hash(1)], None));
}

#[test]
fn bad_hashes_are_skipped_duplicates_dropped_and_the_count_bounded() {
    let mut short = String::from("BT-SEARCH * HTTP/1.1\nHost:h\nPort:1\nInfohash:nothex\n");
    for bad in ["0123", &"g".repeat(40), &"0".repeat(41), ""] {
        short.push_str(&format!("Infohash:{bad}\n"));
    }
    // Nearly as many hashes as 1400 bytes hold (fewer than MAX_PARSED_INFO_HASHES), one repeated.
    for n in 0..22 {
        short.push_str(&format!("Infohash:{}\n", hash(n).to_hex()));
        if n == 2 {
            short.push_str(&format!("Infohash:{}\n", hash(1).to_hex().to_uppercase()));
        }
    }
    short.push('\n');
    assert!(short.len() <= MAX_DATAGRAM, "{}", short.len());
    let a = parse(short.as_bytes()).unwrap();
    let expected: Vec<InfoHash> = (0..22).map(hash).collect();
    assert_eq!(a.info_hashes, expected);
    // A byte more and the datagram is refused whole.
    let pad = format!("X: {}\n", "p".repeat(MAX_DATAGRAM - short.len() - 3));
    let over = short.replacen("Port:1\n", &format!("Port:1\n{pad}"), 1);
    assert_eq!(over.len(), MAX_DATAGRAM + 1);
    assert_eq!(parse(over.as_bytes()), Err(LsdError::TooLong(over.len())));
}

#[test]
fn malformed_datagrams_are_refused() {
    let ok = "BT-SEARCH * HTTP/1.1\r\nHost: h\r\nPort: 6881\r\nInfohash: \
        0101010101010101010101010101010101010101\r\n";
    let cases: Vec<(String, LsdError)> = vec![
        (ok.to_owned(), LsdError::Unterminated),
        (format!("{ok}\r\nbody"), LsdError::TrailingData),
        (
            ok.replace("BT-SEARCH", "M-SEARCH") + "\r\n",
            LsdError::NotAnnounce,
        ),
        (format!(" {ok}\r\n"), LsdError::NotAnnounce),
        (String::new(), LsdError::NotAnnounce),
        (
            ok.replace("Host: h\r\n", "") + "\r\n",
            LsdError::Missing("Host"),
        ),
        (
            ok.replace("Port: 6881\r\n", "") + "\r\n",
            LsdError::Missing("Port"),
        ),
        (ok.replace("6881", "0") + "\r\n", LsdError::BadPort),
        (ok.replace("6881", "65536") + "\r\n", LsdError::BadPort),
        (ok.replace("6881", "+80") + "\r\n", LsdError::BadPort),
        (ok.replace("6881", "") + "\r\n", LsdError::BadPort),
        (format!("{ok}Port: 1\r\n\r\n"), LsdError::Duplicate("Port")),
        (format!("{ok}Host: 1\r\n\r\n"), LsdError::Duplicate("Host")),
        (format!("{ok}nonsense\r\n\r\n"), LsdError::BadHeader),
        (ok.replace("0101", "zz01") + "\r\n", LsdError::NoInfoHash),
    ];
    for (text, expected) in cases {
        assert_eq!(parse(text.as_bytes()), Err(expected), "{text:?}");
    }
    assert_eq!(parse(&[0xff; 30]), Err(LsdError::NotText));
    let huge = format!("{ok}\r\n{}", "\r\n".repeat(700));
    assert_eq!(parse(huge.as_bytes()), Err(LsdError::TooLong(huge.len())));
    // Just under the limit, trailing line breaks are fine.
    let padded = format!(
        "{ok}\r\n{}",
        "\r\n".repeat((MAX_DATAGRAM - ok.len() - 2) / 2)
    );
    assert!(parse(padded.as_bytes()).is_ok());
}

#[test]
fn invalid_cookies_count_as_absent() {
    for bad in ["", &"c".repeat(MAX_COOKIE_LEN + 1)] {
        let text = format!(
            "BT-SEARCH * HTTP/1.1\nHost:h\nPort:1\nInfohash:{}\ncookie: {bad}\n\n",
            hash(1).to_hex()
        );
        assert_eq!(parse(text.as_bytes()).unwrap().cookie, None);
    }
    assert!(Cookie::new("a b").is_none());
    let generated =
        Cookie::generate(&mut <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(0x5eed));
    assert_eq!(generated.as_str().len(), 16);
    assert_eq!(Cookie::new(generated.as_str()), Some(generated));
}

#[test]
fn scheduler_announces_at_start_then_every_five_minutes() {
    let t0 = Instant::ZERO;
    let mut s = Scheduler::new();
    assert_eq!(s.poll_timeout(), None);
    assert!(s.add(hash(1), t0));
    assert!(!s.add(hash(1), t0));
    assert_eq!(s.poll_timeout(), Some(t0));
    assert_eq!(s.poll_announce(t0), [hash(1)]);
    assert_eq!(s.poll_announce(t0), []);
    // The first announce is sent again twice (a multicast datagram can be lost), then not again.
    for delay in FIRST_ANNOUNCE_REPEATS {
        assert_eq!(s.poll_timeout(), Some(t0 + delay));
        assert_eq!(s.poll_repeat(t0 + delay - Duration::from_millis(1)), []);
        assert_eq!(s.poll_announce(t0 + delay), []);
        assert_eq!(s.poll_repeat(t0 + delay), [hash(1)]);
        assert_eq!(s.poll_repeat(t0 + delay), []);
    }
    assert_eq!(s.poll_timeout(), Some(t0 + ANNOUNCE_INTERVAL));
    let before = t0 + ANNOUNCE_INTERVAL - Duration::from_millis(1);
    assert_eq!(s.poll_announce(before), []);
    assert_eq!(s.poll_announce(t0 + ANNOUNCE_INTERVAL), [hash(1)]);
    // Later announces are sent once.
    assert_eq!(s.poll_timeout(), Some(t0 + 2 * ANNOUNCE_INTERVAL));
    assert_eq!(s.poll_repeat(t0 + 2 * ANNOUNCE_INTERVAL), []);
}

#[test]
fn a_removed_torrent_is_not_repeated_and_a_readded_one_is() {
    let t0 = Instant::ZERO;
    let mut s = Scheduler::new();
    s.add(hash(1), t0);
    assert_eq!(s.poll_announce(t0), [hash(1)]);
    s.remove(&hash(1));
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.poll_repeat(t0 + Duration::from_secs(60)), []);
    // Added again after the minute: a first announce again, repeated.
    let t1 = t0 + Duration::from_secs(120);
    s.add(hash(1), t1);
    assert_eq!(s.poll_announce(t1), [hash(1)]);
    let copy = t1 + FIRST_ANNOUNCE_REPEATS[0];
    assert_eq!(s.poll_timeout(), Some(copy));
    assert_eq!(s.poll_repeat(copy), [hash(1)]);
}

#[test]
fn repeats_share_datagrams_within_the_size_limit() {
    let t0 = Instant::ZERO;
    let mut s = Scheduler::new();
    for n in 0..30 {
        s.add(hash(n), t0);
    }
    while !s.poll_announce(t0).is_empty() {}
    let copy = t0 + FIRST_ANNOUNCE_REPEATS[0];
    assert_eq!(s.poll_repeat(copy).len(), MAX_SENT_INFO_HASHES);
    assert_eq!(s.poll_repeat(copy).len(), 6);
    assert_eq!(s.poll_repeat(copy), []);
}

/// Counts the announces of each torrent over `seconds`, polling every second as a driver would, and
/// checks that no two announces of one torrent are less than a minute apart.
fn simulate(s: &mut Scheduler, t0: Instant, seconds: u64) -> HashMap<InfoHash, Vec<Instant>> {
    let mut sent: HashMap<InfoHash, Vec<Instant>> = HashMap::new();
    for second in 0..seconds {
        let now = t0 + Duration::from_secs(second);
        loop {
            let batch = s.poll_announce(now);
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= MAX_SENT_INFO_HASHES);
            for h in batch {
                sent.entry(h).or_default().push(now);
            }
        }
    }
    for times in sent.values() {
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= MIN_ANNOUNCE_INTERVAL, "{pair:?}");
        }
    }
    sent
}

#[test]
fn removing_and_adding_again_waits_for_the_minute() {
    let t0 = Instant::ZERO;
    let mut s = Scheduler::new();
    s.add(hash(1), t0);
    assert_eq!(s.poll_announce(t0), [hash(1)]);
    assert!(s.remove(&hash(1)));
    assert!(!s.remove(&hash(1)));
    assert!(!s.contains(&hash(1)));
    assert_eq!(s.poll_timeout(), None);
    let t1 = t0 + Duration::from_secs(10);
    assert!(s.add(hash(1), t1));
    assert!(s.contains(&hash(1)));
    assert_eq!(s.poll_timeout(), Some(t0 + MIN_ANNOUNCE_INTERVAL));
    assert_eq!(s.poll_announce(t1 + Duration::from_secs(49)), []);
    assert_eq!(s.poll_announce(t0 + MIN_ANNOUNCE_INTERVAL), [hash(1)]);
    // Long after a removal, adding announces at once.
    s.remove(&hash(1));
    let t2 = t0 + Duration::from_secs(3600);
    s.add(hash(1), t2);
    assert_eq!(s.poll_announce(t2), [hash(1)]);
}

#[test]
fn torrents_share_datagrams_and_never_exceed_one_announce_a_minute() {
    let t0 = Instant::ZERO;
    let mut s = Scheduler::new();
    // 30 torrents at once: two datagrams (24 + 6).
    for n in 0..30 {
        s.add(hash(n), t0);
    }
    assert_eq!(s.poll_announce(t0).len(), MAX_SENT_INFO_HASHES);
    assert_eq!(s.poll_announce(t0).len(), 6);
    assert_eq!(s.poll_announce(t0), []);
    // One added 20 s later is announced at once; at the next round it rides with the others, early.
    let late = t0 + Duration::from_secs(20);
    s.add(hash(100), late);
    assert_eq!(s.poll_announce(late), [hash(100)]);
    let round = t0 + ANNOUNCE_INTERVAL;
    let mut batch = s.poll_announce(round);
    batch.extend(s.poll_announce(round));
    assert_eq!(batch.len(), 31);
    assert!(batch.contains(&hash(100)));
    // Over an hour with torrents coming and going, every torrent is announced at least every 5
    // minutes and never twice in one minute (checked inside).
    let mut s = Scheduler::new();
    for n in 0..40 {
        s.add(hash(n), t0 + Duration::from_secs(u64::from(n) * 7));
    }
    let sent = simulate(&mut s, t0, 3600);
    for n in 0..40u8 {
        let times = &sent[&hash(n)];
        assert!(
            times.len() >= 12,
            "{n}: {} announces in an hour",
            times.len()
        );
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] <= ANNOUNCE_INTERVAL);
        }
    }
}

#[test]
fn scheduler_is_bounded() {
    let t0 = Instant::ZERO;
    let mut s = Scheduler::new();
    for n in 0..MAX_SCHEDULED as u32 {
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(&n.to_be_bytes());
        assert!(s.add(InfoHash(h), t0));
    }
    assert!(!s.add(InfoHash([0xff; 20]), t0));
    assert_eq!(s.len(), MAX_SCHEDULED);
}

#[test]
fn own_cookie_is_ignored_and_others_become_peers() {
    let t0 = Instant::ZERO;
    let mut inbound = Inbound::new(cookie());
    let from = IpAddr::from([127, 0, 0, 20]);
    let ours = encode(Group::V4, 6881, &[hash(1)], &cookie());
    assert_eq!(inbound.handle(&ours[0], from, t0), Verdict::Own);
    let theirs = encode(
        Group::V4,
        6882,
        &[hash(1), hash(2)],
        &Cookie::new("other").unwrap(),
    );
    assert_eq!(
        inbound.handle(&theirs[0], from, t0),
        Verdict::Peer {
            peer: SocketAddr::new(from, 6882),
            info_hashes: vec![hash(1), hash(2)],
        }
    );
    // No cookie at all (Transmission 3 sends none): a peer.
    let bare = format!(
        "BT-SEARCH * HTTP/1.1\r\nHost: h\r\nPort: 9\r\nInfohash: {}\r\n\r\n",
        hash(3).to_hex()
    );
    assert!(matches!(
        inbound.handle(bare.as_bytes(), from, t0),
        Verdict::Peer { .. }
    ));
    assert_eq!(
        inbound.handle(b"junk", from, t0),
        Verdict::Malformed(LsdError::NotAnnounce)
    );
}

#[test]
fn inbound_is_rate_limited_per_source() {
    let t0 = Instant::ZERO;
    let mut inbound = Inbound::new(cookie());
    let datagram = &encode(Group::V4, 1, &[hash(1)], &Cookie::new("x").unwrap())[0];
    let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
    for _ in 0..INBOUND_PER_WINDOW {
        assert!(matches!(
            inbound.handle(datagram, a, t0),
            Verdict::Peer { .. }
        ));
    }
    assert_eq!(inbound.handle(datagram, a, t0), Verdict::RateLimited);
    assert!(matches!(
        inbound.handle(datagram, b, t0),
        Verdict::Peer { .. }
    ));
    let later = t0 + INBOUND_WINDOW;
    assert!(matches!(
        inbound.handle(datagram, a, later),
        Verdict::Peer { .. }
    ));
    // Sources are bounded: with the table full of live windows a new source is refused, and
    // admitted once they have expired.
    let mut inbound = Inbound::new(cookie());
    for n in 0..MAX_INBOUND_SOURCES as u32 {
        let ip = IpAddr::from(Ipv4Addr::from(0x0a00_0000 + n));
        assert!(matches!(
            inbound.handle(datagram, ip, t0),
            Verdict::Peer { .. }
        ));
    }
    let new = IpAddr::from([192, 0, 2, 1]);
    assert_eq!(inbound.handle(datagram, new, t0), Verdict::RateLimited);
    assert!(matches!(
        inbound.handle(datagram, new, later),
        Verdict::Peer { .. }
    ));
}
