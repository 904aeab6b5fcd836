//! Fuzz target for web seed replies and planning: `Content-Range` parsing, the reply check with
//! arbitrary header values, `Retry-After`, and plans for arbitrary byte ranges of a multi-file
//! torrent with padding. No input may panic; an accepted `Content-Range` is well formed; a plan's
//! segments add up to the range asked, and its ranged requests lie within their files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmer_proto::metainfo::Metainfo;
use swarmer_proto::webseed::{
    ContentRange, ReplyHead, Request, Segment, WebSeed, WebSeedKind, check_reply, parse_retry_after,
    plan,
};

/// A multi-file torrent: files of 10,000, 0, 100 (padding) and 30,000 bytes, 16 KiB pieces.
fn torrent() -> Metainfo {
    let mut info = b"d5:filesl\
        d6:lengthi10000e4:pathl1:aee\
        d6:lengthi0e4:pathl5:emptyee\
        d4:attr1:p6:lengthi100e4:pathl4:.pad1:1ee\
        d6:lengthi30000e4:pathl3:s d6:\xc3\xbc.txteee\
        4:name3:dir12:piece lengthi16384e6:pieces60:"
        .to_vec();
    info.extend([1u8; 60]);
    info.push(b'e');
    Metainfo::from_bytes(&[b"d4:info".as_slice(), &info, b"e"].concat()).expect("valid torrent")
}

fuzz_target!(|data: &[u8]| {
    if let Ok(range) = ContentRange::parse(data) {
        if let Some((first, last)) = range.range {
            assert!(first <= last);
            assert!(range.complete_length.is_none_or(|len| last < len));
        } else {
            assert!(range.complete_length.is_some());
        }
    }
    let _ = parse_retry_after(data);
    if data.len() < 17 {
        return;
    }
    let (numbers, text) = data.split_at(17);
    let word = |i: usize| u64::from_le_bytes(numbers[i..i + 8].try_into().expect("8 bytes"));
    let (a, b, flags) = (word(0), word(8), numbers[16]);
    let request = Request {
        url: "http://a/f".into(),
        range: (flags & 1 != 0).then_some((a.min(b), a.max(b))),
        length: b.wrapping_sub(a).wrapping_add(1),
        file_length: (flags & 2 != 0).then_some(a ^ b),
    };
    let statuses = [200, 206, 404, 503, 429, 301];
    let head = ReplyHead {
        status: statuses[usize::from(flags >> 2) % statuses.len()],
        content_range: Some(text),
        content_length: (flags & 0x40 != 0).then_some(b),
        content_type: (flags & 0x80 != 0).then_some(text),
        retry_after: Some(text),
    };
    let _ = check_reply(&request, &head);

    let m = torrent();
    let total = m.total_length();
    let (offset, length) = (a % (total + 2), b % (total + 2));
    let kind = if flags & 1 != 0 {
        WebSeedKind::GetRight
    } else {
        WebSeedKind::Hoffman
    };
    let seed = WebSeed {
        url: String::from_utf8_lossy(text).into_owned(),
        kind,
    };
    if let Ok(segments) = plan(&seed, &m.info, &m.info_hash, offset, length) {
        assert!(offset + length <= total && length > 0);
        let mut sum = 0;
        for segment in &segments {
            match segment {
                Segment::Zeros(n) => sum += n,
                Segment::Get(r) => {
                    assert!(r.length > 0);
                    sum += r.length;
                    if let (Some((first, last)), Some(len)) = (r.range, r.file_length) {
                        assert!(first <= last && last < len && last - first + 1 == r.length);
                    }
                }
            }
        }
        assert_eq!(sum, length);
    }
});
