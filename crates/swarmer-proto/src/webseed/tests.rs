//! Tests of web seed planning: BEP 19 URLs and file ranges across file boundaries and padding,
//! BEP 17 query URLs, `Content-Range` parsing, reply checks for honest and lying servers, the
//! back-off schedule.

use super::*;
use crate::bencode::OwnedValue;
use crate::metainfo::{Metainfo, is_http_url};

const PIECE: i64 = 16384;

fn hashes(count: u64) -> OwnedValue {
    OwnedValue::Bytes((0..count).flat_map(|i| [i as u8; 20]).collect())
}

fn torrent(info: OwnedValue) -> Metainfo {
    let bytes = OwnedValue::dict([
        ("info", info),
        (
            "url-list",
            OwnedValue::list([
                "http://a/b/".into(),
                "ftp://no/".into(),
                "http://a/b/".into(),
            ]),
        ),
        ("httpseeds", "http://h/seed.php".into()),
    ])
    .encode();
    Metainfo::from_bytes(&bytes).unwrap()
}

fn single(length: i64) -> Metainfo {
    torrent(OwnedValue::dict([
        ("length", OwnedValue::Int(length)),
        ("name", "a file.iso".into()),
        ("piece length", OwnedValue::Int(PIECE)),
        ("pieces", hashes((length as u64).div_ceil(PIECE as u64))),
    ]))
}

/// A multi-file torrent "dir" with files (path, length, padding).
fn multi(files: &[(&[&str], i64, bool)]) -> Metainfo {
    let total: i64 = files.iter().map(|f| f.1).sum();
    let list = OwnedValue::list(files.iter().map(|(path, len, pad)| {
        let mut entries = vec![
            ("length", OwnedValue::Int(*len)),
            (
                "path",
                OwnedValue::list(path.iter().map(|c| OwnedValue::from(*c))),
            ),
        ];
        if *pad {
            entries.push(("attr", "p".into()));
        }
        OwnedValue::dict(entries)
    }));
    torrent(OwnedValue::dict([
        ("files", list),
        ("name", "dir".into()),
        ("piece length", OwnedValue::Int(PIECE)),
        ("pieces", hashes((total as u64).div_ceil(PIECE as u64))),
    ]))
}

fn get_right(url: &str) -> WebSeed {
    WebSeed {
        url: url.into(),
        kind: WebSeedKind::GetRight,
    }
}

fn get(url: &str, first: u64, last: u64, file_length: u64) -> Segment {
    Segment::Get(Request {
        url: url.into(),
        range: Some((first, last)),
        length: last - first + 1,
        file_length: Some(file_length),
    })
}

#[test]
fn metainfo_keeps_http_web_seeds_once_and_writes_them_back() {
    let m = single(100);
    assert_eq!(m.url_list, vec!["http://a/b/".to_owned()]);
    assert_eq!(m.http_seeds, vec!["http://h/seed.php".to_owned()]);
    let again = Metainfo::from_bytes(&m.to_torrent_bytes()).unwrap();
    assert_eq!(
        (again.url_list, again.http_seeds),
        (m.url_list, m.http_seeds)
    );
}

#[test]
fn http_urls_only() {
    for good in ["http://a", "HTTPS://host:8080/x/", "http://[::1]/p"] {
        assert!(is_http_url(good), "{good}");
    }
    for bad in [
        "ftp://a/",
        "http://",
        "http:///x",
        "http://a b/",
        "a/b",
        "",
        "http://a\n",
    ] {
        assert!(!is_http_url(bad), "{bad}");
    }
}

#[test]
fn single_file_url_gets_the_name_only_after_a_slash() {
    let m = single(40_000);
    let plan = |url| plan(&get_right(url), &m.info, &m.info_hash, 0, 40_000).unwrap();
    assert_eq!(
        plan("http://a/b/"),
        vec![get("http://a/b/a%20file.iso", 0, 39_999, 40_000)]
    );
    assert_eq!(
        plan("http://a/b/c.iso"),
        vec![get("http://a/b/c.iso", 0, 39_999, 40_000)]
    );
}

#[test]
fn multi_file_ranges_span_files_and_skip_padding_and_empty_files() {
    let m = multi(&[
        (&["a"], 10_000, false),
        (&["sub dir", "ü#?.txt"], 6_384, false),
        (&["empty"], 0, false),
        (&[".pad", "1"], 100, true),
        (&["z"], 20_000, false),
    ]);
    // Bytes 5,000 to 17,000: the end of `a`, all of the second file, the padding, the start of `z`.
    let segments = plan(
        &get_right("http://a/b"),
        &m.info,
        &m.info_hash,
        5_000,
        12_001,
    )
    .unwrap();
    assert_eq!(
        segments,
        vec![
            get("http://a/b/dir/a", 5_000, 9_999, 10_000),
            get("http://a/b/dir/sub%20dir/%C3%BC%23%3F.txt", 0, 6_383, 6_384),
            Segment::Zeros(100),
            get("http://a/b/dir/z", 0, 516, 20_000),
        ]
    );
    let planned: u64 = segments
        .iter()
        .map(|s| match s {
            Segment::Get(r) => r.length,
            Segment::Zeros(n) => *n,
        })
        .sum();
    assert_eq!(planned, 12_001);
}

#[test]
fn ranges_outside_the_torrent_are_refused() {
    let m = single(100);
    let seed = get_right("http://a/");
    for (offset, length) in [(0, 0), (0, 101), (100, 1), (u64::MAX, 2)] {
        assert_eq!(
            plan(&seed, &m.info, &m.info_hash, offset, length),
            Err(PlanError::OutOfRange { offset, length })
        );
    }
}

#[test]
fn hoffman_asks_per_piece_with_ranges_only_for_parts() {
    let m = single(40_000);
    let seed = WebSeed {
        url: "http://h/seed.php".into(),
        kind: WebSeedKind::Hoffman,
    };
    let segments = plan(&seed, &m.info, &m.info_hash, 16_384, 23_616).unwrap();
    let mut hash = String::new();
    percent_encode_into(&m.info_hash.0, &mut hash);
    assert_eq!(
        segments,
        vec![
            Segment::Get(Request {
                url: format!("http://h/seed.php?info_hash={hash}&piece=1"),
                range: None,
                length: 16_384,
                file_length: None,
            }),
            Segment::Get(Request {
                url: format!("http://h/seed.php?info_hash={hash}&piece=2"),
                range: None,
                length: 7_232,
                file_length: None,
            }),
        ]
    );
    let part = plan(&seed, &m.info, &m.info_hash, 100, 200).unwrap();
    assert_eq!(
        part,
        vec![Segment::Get(Request {
            url: format!("http://h/seed.php?info_hash={hash}&piece=0&ranges=100-299"),
            range: None,
            length: 200,
            file_length: None,
        })]
    );
    let piece = m.info.layout.piece(0).unwrap();
    assert!(
        hoffman_url("http://h/s?k=v", &m.info_hash, piece, None)
            .starts_with("http://h/s?k=v&info_hash=")
    );
}

#[test]
fn content_range_forms() {
    let ok = |s: &str, range, len| {
        assert_eq!(
            ContentRange::parse(s.as_bytes()),
            Ok(ContentRange {
                range,
                complete_length: len
            }),
            "{s}"
        )
    };
    ok("bytes 0-99/100", Some((0, 99)), Some(100));
    ok("  Bytes  5-5/*  ", Some((5, 5)), None);
    ok("bytes */1000", None, Some(1000));
    ok(
        "bytes 0-18446744073709551614/18446744073709551615",
        Some((0, u64::MAX - 1)),
        Some(u64::MAX),
    );
    for bad in [
        "",
        "bytes",
        "bytes 0-99",
        "bytes 9-0/100",
        "bytes 0-100/100",
        "bytes -1-5/10",
        "bytes +1-5/10",
        "bytes 0-99/100/",
        "bytes */*",
        "items 0-1/2",
        "bytes 0-99999999999999999999/*",
        "bytes 0- 9/10",
    ] {
        assert_eq!(
            ContentRange::parse(bad.as_bytes()),
            Err(ContentRangeError),
            "{bad}"
        );
    }
    assert!(ContentRange::parse(&[b'1'; 200]).is_err());
    assert!(ContentRange::parse(&[0xff, 0xfe]).is_err());
}

fn ranged(first: u64, last: u64, file_length: u64) -> Request {
    Request {
        url: "http://a/f".into(),
        range: Some((first, last)),
        length: last - first + 1,
        file_length: Some(file_length),
    }
}

fn head(
    status: u16,
    content_range: Option<&'static str>,
    length: Option<u64>,
) -> ReplyHead<'static> {
    ReplyHead {
        status,
        content_range: content_range.map(str::as_bytes),
        content_length: length,
        ..ReplyHead::default()
    }
}

#[test]
fn honest_partial_content_is_accepted() {
    let r = ranged(100, 199, 1000);
    assert_eq!(
        check_reply(&r, &head(206, Some("bytes 100-199/1000"), Some(100))),
        Ok(())
    );
    assert_eq!(
        check_reply(&r, &head(206, Some("bytes 100-199/*"), None)),
        Ok(())
    );
}

#[test]
fn lying_replies_are_refused() {
    let r = ranged(100, 199, 1000);
    let check = |h| check_reply(&r, &h);
    assert_eq!(
        check(head(206, None, Some(100))),
        Err(ReplyError::NoContentRange)
    );
    assert_eq!(
        check(head(206, Some("nonsense"), Some(100))),
        Err(ReplyError::BadContentRange)
    );
    assert_eq!(
        check(head(206, Some("bytes 0-99/1000"), Some(100))),
        Err(ReplyError::WrongRange {
            asked: (100, 199),
            got: Some((0, 99))
        })
    );
    assert_eq!(
        check(head(206, Some("bytes 100-199/2000"), Some(100))),
        Err(ReplyError::WrongFileLength {
            expected: 1000,
            got: 2000
        })
    );
    assert_eq!(
        check(head(206, Some("bytes 100-199/1000"), Some(1 << 30))),
        Err(ReplyError::WrongContentLength {
            expected: 100,
            got: 1 << 30
        })
    );
    let multipart = ReplyHead {
        content_type: Some(b"multipart/byteranges; boundary=x"),
        ..head(206, Some("bytes 100-199/1000"), None)
    };
    assert_eq!(check(multipart), Err(ReplyError::NoContentRange));
    assert_eq!(
        check(head(200, None, Some(1000))),
        Err(ReplyError::IgnoresRange(100))
    );
    assert_eq!(check(head(404, None, None)), Err(ReplyError::Status(404)));
    assert_eq!(check(head(302, None, None)), Err(ReplyError::Status(302)));
    let busy = ReplyHead {
        retry_after: Some(b"120"),
        ..head(503, None, None)
    };
    assert_eq!(
        check(busy),
        Err(ReplyError::Busy {
            status: 503,
            retry_after: Some(Duration::from_secs(120))
        })
    );
}

#[test]
fn whole_file_200_serves_a_range_from_byte_zero() {
    let r = ranged(0, 99, 1000);
    assert_eq!(check_reply(&r, &head(200, None, Some(1000))), Ok(()));
    assert_eq!(check_reply(&r, &head(200, None, None)), Ok(()));
    assert_eq!(
        check_reply(&r, &head(200, None, Some(999))),
        Err(ReplyError::WrongFileLength {
            expected: 1000,
            got: 999
        })
    );
}

#[test]
fn hoffman_replies_are_200_with_exactly_the_bytes() {
    let r = Request {
        url: "http://h/s?piece=0".into(),
        range: None,
        length: 16384,
        file_length: None,
    };
    assert_eq!(check_reply(&r, &head(200, None, Some(16384))), Ok(()));
    assert_eq!(
        check_reply(&r, &head(200, None, Some(16383))),
        Err(ReplyError::WrongContentLength {
            expected: 16384,
            got: 16383
        })
    );
    assert_eq!(
        check_reply(&r, &head(206, Some("bytes 0-16383/16384"), None)),
        Err(ReplyError::Status(206))
    );
}

#[test]
fn retry_after_is_seconds_capped() {
    assert_eq!(parse_retry_after(b" 30\r\n"), Some(Duration::from_secs(30)));
    assert_eq!(parse_retry_after(b"9999999999"), Some(MAX_RETRY_AFTER));
    for bad in [
        &b""[..],
        b"-1",
        b"Wed, 21 Oct 2015 07:28:00 GMT",
        b"12345678901",
        b"1.5",
    ] {
        assert_eq!(parse_retry_after(bad), None);
    }
}

#[test]
fn backoff_doubles_to_a_bound() {
    let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 600, 600]);
    assert_eq!(backoff(0), BACKOFF_FIRST);
    assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
}
