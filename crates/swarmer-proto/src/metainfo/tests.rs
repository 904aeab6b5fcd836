//! Tests of the metainfo parser (BEP 3 metainfo files, BEP 12 announce-list, BEP 27 private, BEP 47
//! padding files): hand-built and real mktorrent files, unsafe and conflicting paths, size limits,
//! and hostile input (truncations, mutations) that must fail cleanly.

use super::*;
use crate::LayoutError;
use crate::bencode::{DecodeError, OwnedValue};

const PIECE: i64 = 16384;

/// Fake but distinct hashes for `count` pieces.
fn hashes(count: u64) -> OwnedValue {
    OwnedValue::Bytes((0..count).flat_map(|i| [i as u8; 20]).collect())
}

/// A single-file info dict of `length` bytes with a matching `pieces`.
fn single(length: i64) -> OwnedValue {
    OwnedValue::dict([
        ("length", OwnedValue::Int(length)),
        ("name", "file.bin".into()),
        ("piece length", OwnedValue::Int(PIECE)),
        ("pieces", hashes((length as u64).div_ceil(PIECE as u64))),
    ])
}

#[test]
fn info_bytes_round_trip_through_a_saved_torrent_and_the_metadata_exchange() {
    let info = single(40_000).encode();
    let torrent = OwnedValue::dict([
        ("announce", "http://a/announce".into()),
        ("comment", "dropped".into()),
        ("info", single(40_000)),
    ])
    .encode();
    let m = Metainfo::from_bytes(&torrent).unwrap();
    assert_eq!(&m.info_bytes[..], &info[..]);
    assert_eq!(m.info_hash, InfoHash(digest::sha1(&info)));

    let tiers = vec![
        vec!["http://a/announce".to_owned()],
        vec!["udp://b:1".to_owned()],
    ];
    let fetched = Metainfo::from_info_bytes(&info, tiers.clone()).unwrap();
    assert_eq!(fetched.info_hash, m.info_hash);
    let saved = Metainfo::from_bytes(&fetched.to_torrent_bytes()).unwrap();
    assert_eq!(saved.info_hash, m.info_hash);
    assert_eq!(saved.announce_tiers, tiers);
    assert_eq!(saved.info, m.info);

    let bare = Metainfo::from_info_bytes(&info, vec![]).unwrap();
    let saved = Metainfo::from_bytes(&bare.to_torrent_bytes()).unwrap();
    assert!(saved.announce_tiers.is_empty());
    assert!(Metainfo::from_info_bytes(b"d4:name1:xe", vec![]).is_err());
}

/// A `files` entry.
fn file(path: &[&str], length: i64) -> OwnedValue {
    OwnedValue::dict([
        ("length", OwnedValue::Int(length)),
        ("path", OwnedValue::list(path.iter().map(|c| (*c).into()))),
    ])
}

/// A multi-file info dict named `top` with a matching `pieces`.
fn multi(files: Vec<OwnedValue>) -> OwnedValue {
    let total: i64 = files
        .iter()
        .map(|f| match f {
            OwnedValue::Dict(d) => match d.get(&b"length"[..]) {
                Some(OwnedValue::Int(n)) => *n,
                _ => 0,
            },
            _ => 0,
        })
        .sum();
    OwnedValue::dict([
        ("files", OwnedValue::List(files)),
        ("name", "top".into()),
        ("piece length", OwnedValue::Int(PIECE)),
        (
            "pieces",
            hashes((total.max(0) as u64).div_ceil(PIECE as u64)),
        ),
    ])
}

/// `dict` with `key` set to `value` (or removed for `None`).
fn set(mut dict: OwnedValue, key: &str, value: Option<OwnedValue>) -> OwnedValue {
    if let OwnedValue::Dict(d) = &mut dict {
        match value {
            Some(v) => d.insert(key.as_bytes().to_vec(), v),
            None => d.remove(key.as_bytes()),
        };
    }
    dict
}

/// A whole .torrent around `info`.
fn torrent(info: OwnedValue) -> Vec<u8> {
    OwnedValue::dict([
        ("announce", "http://tracker.example/announce".into()),
        ("info", info),
    ])
    .encode()
}

fn parse_info(info: OwnedValue) -> Result<Metainfo, MetainfoError> {
    Metainfo::from_bytes(&torrent(info))
}

fn unsafe_reason(result: Result<Metainfo, MetainfoError>) -> &'static str {
    match result {
        Err(MetainfoError::UnsafePath { reason, .. }) => reason,
        other => panic!("expected an unsafe path, got {other:?}"),
    }
}

#[test]
fn single_file() {
    let data = torrent(single(40_000));
    let m = Metainfo::from_bytes(&data).unwrap();
    assert_eq!(m.info.name, "file.bin");
    assert!(!m.info.multi_file);
    assert!(!m.info.private);
    assert_eq!(
        m.info.files,
        vec![FileEntry {
            path: vec!["file.bin".into()],
            length: 40_000,
            padding: false
        }]
    );
    assert_eq!(m.total_length(), 40_000);
    assert_eq!(m.piece_count(), 3);
    assert_eq!(m.info.piece_length, 16384);
    let last = m.info.layout.piece(2).unwrap();
    assert_eq!(m.info.piece_hash(last), &[2u8; 20]);
    assert_eq!(
        m.announce_tiers,
        vec![vec!["http://tracker.example/announce".to_owned()]]
    );
    // The info hash is the SHA-1 of the info dict's own encoding.
    assert_eq!(
        m.info_hash,
        InfoHash(digest::sha1(&single(40_000).encode()))
    );
    assert_eq!(Info::from_bytes(&single(40_000).encode()).unwrap(), m.info);
}

#[test]
fn multi_file_with_nested_dirs_and_empty_files() {
    let info = multi(vec![
        file(&["a.txt"], 10),
        file(&["empty"], 0),
        file(&["sub", "deeper", "c.txt"], 20_000),
        file(&["sub", "b"], 5),
    ]);
    let m = parse_info(info).unwrap();
    assert!(m.info.multi_file);
    let paths: Vec<String> = m.info.files.iter().map(|f| f.path.join("/")).collect();
    assert_eq!(
        paths,
        [
            "top/a.txt",
            "top/empty",
            "top/sub/deeper/c.txt",
            "top/sub/b"
        ]
    );
    let lengths: Vec<u64> = m.info.files.iter().map(|f| f.length).collect();
    assert_eq!(lengths, [10, 0, 20_000, 5]);
    assert_eq!(m.total_length(), 20_015);
    assert_eq!(m.piece_count(), 2);
}

#[test]
fn padding_files_count_in_the_layout() {
    let pad = |len| set(file(&[".pad", "16374"], len), "attr", Some("p".into()));
    let info = multi(vec![
        file(&["a"], 10),
        pad(16374),
        file(&["b"], 100),
        // Creators reuse padding names; padding files are never written, so no duplicate error.
        pad(16374),
        set(file(&["c"], 1), "attr", Some("x".into())),
    ]);
    let m = parse_info(info).unwrap();
    let padding: Vec<bool> = m.info.files.iter().map(|f| f.padding).collect();
    assert_eq!(padding, [false, true, false, true, false]);
    assert_eq!(m.total_length(), 10 + 16374 + 100 + 16374 + 1);
    assert_eq!(
        m.info.layout.file_offset(m.info.layout.file(2).unwrap()),
        16384
    );
}

#[test]
fn utf8_variants_are_preferred() {
    let info = set(
        single(5),
        "name",
        Some(OwnedValue::Bytes(b"\xffbad".to_vec())),
    );
    assert_eq!(
        parse_info(info.clone()).unwrap_err(),
        MetainfoError::NotUtf8("info.name".into())
    );
    let info = set(info, "name.utf-8", Some("good".into()));
    assert_eq!(parse_info(info).unwrap().info.name, "good");

    let entry = set(
        file(&["x"], 5),
        "path",
        Some(OwnedValue::list([OwnedValue::Bytes(b"\xfe".to_vec())])),
    );
    assert_eq!(
        parse_info(multi(vec![entry.clone()])).unwrap_err(),
        MetainfoError::NotUtf8("info.files[0].path".into())
    );
    let entry = set(entry, "path.utf-8", Some(OwnedValue::list(["ü".into()])));
    let m = parse_info(multi(vec![entry])).unwrap();
    assert_eq!(m.info.files[0].path, ["top", "ü"]);
}

#[test]
fn announce_list_tiers_private_and_optional_fields() {
    let data = OwnedValue::dict([
        ("announce", "http://fallback/a".into()),
        (
            "announce-list",
            OwnedValue::list([
                OwnedValue::list(["http://a/1".into(), "udp://a/2".into()]),
                OwnedValue::list([]),
                OwnedValue::list([OwnedValue::Bytes(b"\xff".to_vec()), "".into()]),
                OwnedValue::Int(3),
                OwnedValue::list(["http://b/1".into(), OwnedValue::Int(7)]),
            ]),
        ),
        ("comment", "hi".into()),
        ("created by", "swarmer test".into()),
        ("creation date", OwnedValue::Int(1_700_000_000)),
        ("info", set(single(5), "private", Some(OwnedValue::Int(1)))),
    ])
    .encode();
    let m = Metainfo::from_bytes(&data).unwrap();
    assert_eq!(
        m.announce_tiers,
        vec![vec!["http://a/1", "udp://a/2"], vec!["http://b/1"]]
    );
    assert!(m.info.private);
    assert_eq!(m.comment.as_deref(), Some("hi"));
    assert_eq!(m.created_by.as_deref(), Some("swarmer test"));
    assert_eq!(m.creation_date, Some(1_700_000_000));

    // An announce-list that ends up empty falls back to `announce`; none at all is trackerless.
    let data = OwnedValue::dict([
        ("announce", "http://fallback/a".into()),
        ("announce-list", OwnedValue::list([OwnedValue::list([])])),
        ("comment", OwnedValue::Int(1)),
        ("info", set(single(5), "private", Some(OwnedValue::Int(0)))),
    ])
    .encode();
    let m = Metainfo::from_bytes(&data).unwrap();
    assert_eq!(m.announce_tiers, vec![vec!["http://fallback/a"]]);
    assert!(!m.info.private);
    assert_eq!(m.comment, None);
    let m = Metainfo::from_bytes(&OwnedValue::dict([("info", single(5))]).encode()).unwrap();
    assert!(m.announce_tiers.is_empty());
    assert_eq!(m.created_by, None);
    assert_eq!(m.creation_date, None);
}

#[test]
fn rejects_bad_structure() {
    use MetainfoError::*;
    let err = |info| parse_info(info).unwrap_err();
    assert_eq!(
        Metainfo::from_bytes(b"le").unwrap_err(),
        NotADictionary { found: "list" }
    );
    assert_eq!(
        err(set(single(5), "pieces", Some(OwnedValue::Int(3)))).to_string(),
        "`info.pieces` is not a byte string (found integer)"
    );
    assert_eq!(
        Metainfo::from_bytes(b"d8:announce1:xe").unwrap_err(),
        Missing("info".into())
    );
    assert_eq!(
        err(OwnedValue::Int(1)),
        WrongType {
            key: "info".into(),
            expected: "a dictionary",
            found: "integer"
        }
    );
    assert_eq!(
        err(set(single(5), "piece length", None)),
        Missing("info.piece length".into())
    );
    assert_eq!(
        err(set(single(5), "piece length", Some("x".into()))),
        WrongType {
            key: "info.piece length".into(),
            expected: "an integer",
            found: "byte string"
        }
    );
    assert_eq!(
        err(set(single(5), "piece length", Some(OwnedValue::Int(-1)))),
        BadPieceLength(-1)
    );
    assert_eq!(
        err(set(
            single(5),
            "piece length",
            Some(OwnedValue::Int(1 << 30))
        )),
        Layout(LayoutError::PieceLengthTooLarge(1 << 30))
    );
    assert_eq!(
        err(set(
            single(5),
            "pieces",
            Some(OwnedValue::Bytes(vec![0; 21]))
        )),
        BadPiecesLength(21)
    );
    assert_eq!(
        err(set(single(5), "pieces", Some(hashes(2)))),
        PieceCountMismatch {
            expected: 1,
            got: 2
        }
    );
    assert_eq!(
        err(set(single(40_000), "pieces", Some(hashes(0)))),
        PieceCountMismatch {
            expected: 3,
            got: 0
        }
    );
    assert_eq!(err(set(single(5), "length", None)), NoLengthOrFiles);
    assert_eq!(
        err(set(
            single(5),
            "files",
            Some(OwnedValue::list([file(&["a"], 5)]))
        )),
        LengthAndFiles
    );
    assert_eq!(
        err(set(single(5), "length", Some(OwnedValue::Int(-5)))),
        NegativeLength {
            path: "file.bin".into(),
            length: -5
        }
    );
    assert_eq!(err(single(0)), Layout(LayoutError::Empty));
    assert_eq!(err(multi(vec![])), NoFiles);
    assert_eq!(
        err(multi(vec![file(&["a"], 5), OwnedValue::Int(1)])),
        WrongType {
            key: "info.files[1]".into(),
            expected: "a dictionary",
            found: "integer"
        }
    );
    assert_eq!(
        err(multi(vec![set(file(&["a"], 5), "length", None)])),
        Missing("info.files[0].length".into())
    );
    assert_eq!(
        err(multi(vec![
            file(&["a"], 5),
            set(file(&["b"], 1), "path", None)
        ])),
        Missing("info.files[1].path".into())
    );
    assert_eq!(
        err(multi(vec![set(
            file(&["a"], 5),
            "path",
            Some(OwnedValue::list([OwnedValue::Int(1)]))
        )])),
        WrongType {
            key: "info.files[0].path[0]".into(),
            expected: "a byte string",
            found: "integer"
        }
    );
    assert_eq!(
        err(multi(vec![file(&["a"], 5), file(&["b"], -1)])),
        NegativeLength {
            path: "top/b".into(),
            length: -1
        }
    );
}

#[test]
fn rejects_unsafe_paths() {
    let bad_component = |c: &str| unsafe_reason(parse_info(multi(vec![file(&["ok", c], 5)])));
    assert_eq!(bad_component(".."), "`.` or `..` path component");
    assert_eq!(bad_component("."), "`.` or `..` path component");
    assert_eq!(bad_component(""), "empty path component");
    assert_eq!(bad_component("a\0b"), "NUL byte in path component");
    assert_eq!(
        bad_component("/etc"),
        "path separator inside a path component"
    );
    assert_eq!(
        bad_component("a/b"),
        "path separator inside a path component"
    );
    assert_eq!(
        bad_component("..\\x"),
        "path separator inside a path component"
    );
    assert_eq!(bad_component("C:"), "absolute path (Windows drive letter)");
    assert_eq!(bad_component("c:x"), "absolute path (Windows drive letter)");
    assert_eq!(
        unsafe_reason(parse_info(multi(vec![file(&[], 5)]))),
        "empty path list"
    );
    // The name is checked the same way, for both kinds of torrent.
    for name in ["..", "", "/abs", "a\0", "D:\\x"] {
        let reason = unsafe_reason(parse_info(set(single(5), "name", Some(name.into()))));
        assert!(!reason.is_empty());
        unsafe_reason(parse_info(set(
            multi(vec![file(&["a"], 5)]),
            "name",
            Some(name.into()),
        )));
    }
    // Harmless look-alikes pass.
    let m = parse_info(multi(vec![file(&["...", "a..b", "1:2", "-"], 5)])).unwrap();
    assert_eq!(m.info.files[0].path, ["top", "...", "a..b", "1:2", "-"]);
    // The error names the file.
    let err = parse_info(multi(vec![file(&["x", "..", "etc"], 5)])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsafe path \"top/x/../etc\": `.` or `..` path component"
    );
}

#[test]
fn renames_duplicate_paths_and_rejects_conflicting_ones() {
    let info = parse_info(multi(vec![
        file(&["a", "bar.txt"], 5),
        file(&["a", "bar.txt"], 6),
        file(&["a", "bar.1.txt"], 7),
        file(&["a", "bar.txt"], 8),
        file(&["a", "b"], 9),
        file(&["a", "b"], 10),
    ]))
    .unwrap();
    let paths: Vec<String> = info.info.files.iter().map(|f| f.path.join("/")).collect();
    assert_eq!(
        paths,
        [
            "top/a/bar.txt",
            "top/a/bar.1.txt",
            "top/a/bar.1.1.txt",
            "top/a/bar.2.txt",
            "top/a/b",
            "top/a/b.1"
        ]
    );
    assert_eq!(
        parse_info(multi(vec![file(&["a"], 5), file(&["a", "b"], 6)])).unwrap_err(),
        MetainfoError::PathConflict {
            file: "top/a/b".into(),
            dir: "top/a".into()
        }
    );
    assert_eq!(
        parse_info(multi(vec![file(&["a", "b", "c"], 5), file(&["a", "b"], 0)])).unwrap_err(),
        MetainfoError::PathConflict {
            file: "top/a/b/c".into(),
            dir: "top/a/b".into()
        }
    );
}

#[test]
fn piece_length_must_be_a_positive_multiple_of_16_kib() {
    use MetainfoError::BadPieceLength;
    let with_piece_length = |n: i64| set(single(5), "piece length", Some(OwnedValue::Int(n)));
    for bad in [0, 3, -16384, 8192, 16385, 16384 * 3 + 1] {
        assert_eq!(
            parse_info(with_piece_length(bad)).unwrap_err(),
            BadPieceLength(bad)
        );
    }
    assert_eq!(
        BadPieceLength(3).to_string(),
        "`info.piece length` is 3 bytes, expected a positive multiple of 16384 bytes (16 KiB)"
    );
    // Powers of two and the rare non-power-of-two multiples of 16 KiB are accepted.
    for good in [16384, 3 * 16384, 1 << 20, 64 << 20] {
        assert_eq!(
            parse_info(with_piece_length(good))
                .unwrap()
                .info
                .piece_length,
            good as u32
        );
    }
}

/// A single-file info dict of `length` bytes in `piece_length` pieces with `count` hashes.
fn sized(length: i64, piece_length: i64, count: u64) -> OwnedValue {
    let info = set(single(5), "length", Some(OwnedValue::Int(length)));
    let info = set(info, "piece length", Some(OwnedValue::Int(piece_length)));
    set(info, "pieces", Some(hashes(count)))
}

#[test]
fn huge_declared_sizes_never_overflow() {
    use MetainfoError::*;
    const PIB: i64 = 1 << 50;
    // 1 PiB in 64 MiB pieces needs 2^24 hashes (335 MB); a file that declares it with fewer is refused
    // without allocating anything for the declared size.
    assert_eq!(
        parse_info(sized(PIB, 64 << 20, 1)).unwrap_err(),
        PieceCountMismatch {
            expected: 1 << 24,
            got: 1
        }
    );
    // In 16 KiB pieces it would need 2^36 pieces, more than the wire protocol can number.
    assert_eq!(
        parse_info(sized(PIB, 16384, 1)).unwrap_err(),
        Layout(LayoutError::TooManyPieces(1 << 36))
    );
    assert_eq!(
        parse_info(sized(i64::MAX, 64 << 20, 1)).unwrap_err(),
        Layout(LayoutError::TooManyPieces(1 << 37))
    );
    // File lengths whose sum passes 2^64.
    let files = [
        file(&["a"], i64::MAX),
        file(&["b"], i64::MAX),
        file(&["c"], 2),
    ];
    let info = set(
        multi(vec![file(&["a"], 1)]),
        "files",
        Some(OwnedValue::list(files)),
    );
    assert_eq!(
        parse_info(info).unwrap_err(),
        Layout(LayoutError::TotalLengthOverflow)
    );
    // A consistent huge torrent parses: 16 TiB in 64 MiB pieces, 262,144 hashes (5 MB).
    let m = parse_info(sized(1 << 44, 64 << 20, 1 << 18)).unwrap();
    assert_eq!(m.total_length(), 1 << 44);
    assert_eq!(m.piece_count(), 1 << 18);
    let last = m.info.layout.piece((1 << 18) - 1).unwrap();
    assert_eq!(m.info.layout.piece_len(last), 64 << 20);
}

#[test]
fn input_over_the_size_cap_is_refused_before_decoding() {
    let data = vec![b'l'; MAX_METAINFO_BYTES + 1];
    let err = Metainfo::from_bytes(&data).unwrap_err();
    assert_eq!(
        err,
        MetainfoError::TooLarge {
            len: MAX_METAINFO_BYTES + 1
        }
    );
    assert_eq!(
        err.to_string(),
        "larger than the 41943040-byte (40 MiB) limit for a .torrent file"
    );
    assert_eq!(
        Info::from_bytes(&data).unwrap_err(),
        MetainfoError::TooLarge {
            len: MAX_METAINFO_BYTES + 1
        }
    );
}

#[test]
fn a_million_tiny_files_parse() {
    const FILES: usize = 1_000_000;
    // Written directly into one buffer rather than through `OwnedValue`, which would hold it twice.
    let pieces = FILES.div_ceil(PIECE as usize);
    let mut data = Vec::with_capacity(FILES * 32 + pieces * 20 + 100);
    data.extend_from_slice(b"d4:infod5:filesl");
    for i in 0..FILES {
        let name = format!("{i:x}");
        data.extend_from_slice(format!("d6:lengthi1e4:pathl{}:{name}ee", name.len()).as_bytes());
    }
    data.extend_from_slice(b"e4:name3:top12:piece lengthi16384e");
    data.extend_from_slice(format!("6:pieces{}:", pieces * 20).as_bytes());
    data.extend(std::iter::repeat_n(7u8, pieces * 20));
    data.extend_from_slice(b"ee");
    assert!(data.len() < MAX_METAINFO_BYTES);

    let m = Metainfo::from_bytes(&data).unwrap();
    assert_eq!(m.info.files.len(), FILES);
    assert_eq!(m.total_length(), FILES as u64);
    assert_eq!(m.piece_count() as usize, pieces);
    assert_eq!(m.info.files[FILES - 1].path, ["top", "f423f"]);
}

#[test]
fn names_differing_in_case_or_invalid_on_windows_are_kept() {
    let m = parse_info(multi(vec![
        file(&["README"], 1),
        file(&["readme"], 1),
        file(&["ReadMe", "x"], 1),
        file(&["CON"], 1),
        file(&["aux.txt"], 1),
        file(&["a<b>c|d?e"], 1),
        file(&["trailing dot."], 1),
        file(&["trailing space "], 1),
        file(&["1:2"], 1),
    ]))
    .unwrap();
    let names: Vec<&str> = m.info.files.iter().map(|f| f.path[1].as_str()).collect();
    assert_eq!(
        names,
        [
            "README",
            "readme",
            "ReadMe",
            "CON",
            "aux.txt",
            "a<b>c|d?e",
            "trailing dot.",
            "trailing space ",
            "1:2"
        ]
    );
}

#[test]
fn nul_bytes_are_rejected_wherever_a_name_comes_from() {
    let nul = "a\0b";
    assert_eq!(
        unsafe_reason(parse_info(set(single(5), "name", Some(nul.into())))),
        "NUL byte in path component"
    );
    assert_eq!(
        unsafe_reason(parse_info(set(single(5), "name.utf-8", Some(nul.into())))),
        "NUL byte in path component"
    );
    let entry = set(
        file(&["ok"], 5),
        "path.utf-8",
        Some(OwnedValue::list(["dir".into(), nul.into()])),
    );
    assert_eq!(
        unsafe_reason(parse_info(multi(vec![entry]))),
        "NUL byte in path component"
    );
    assert_eq!(
        unsafe_reason(parse_info(multi(vec![file(&["\0"], 5)]))),
        "NUL byte in path component"
    );
}

#[test]
fn rejects_bad_bencode_without_panicking() {
    let err = Metainfo::from_bytes(&vec![b'l'; 100_000]).unwrap_err();
    assert!(matches!(
        err,
        MetainfoError::Bencode(DecodeError {
            kind: bencode::DecodeErrorKind::TooDeep,
            ..
        })
    ));
    let mut nested = b"d4:info".to_vec();
    nested.extend(vec![b'd'; 100_000]);
    assert!(matches!(
        Metainfo::from_bytes(&nested),
        Err(MetainfoError::Bencode(_))
    ));
    // Duplicate keys stay refused even where order is not enforced.
    assert!(matches!(
        Metainfo::from_bytes(b"d4:infod4:name1:x4:name1:yee"),
        Err(MetainfoError::Bencode(_))
    ));
}

#[test]
fn real_world_v1_oddities_are_accepted() {
    // Keys out of order (`name` before `length`), a tracker URL with white space around it, and
    // a newline after the root dictionary: the info hash is the SHA-1 of the bytes as received.
    let info: &[u8] =
        b"d4:name5:x.bin6:lengthi5e12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
    let mut data = b"d8:announce21: http://t.example/a \n4:info".to_vec();
    data.extend_from_slice(info);
    data.extend_from_slice(b"e\n");
    let m = Metainfo::from_bytes(&data).unwrap();
    assert_eq!(m.info_hash, InfoHash(digest::sha1(info)));
    assert_eq!(&m.info_bytes[..], info);
    assert_eq!(
        m.announce_tiers,
        vec![vec!["http://t.example/a".to_owned()]]
    );
    assert_eq!(m.info.files[0].length, 5);
    // The same dictionary from peers (BEP 9) parses too.
    assert_eq!(Info::from_bytes(info).unwrap(), m.info);

    // A BEP 47 symlink entry without `length`: kept, holding no bytes, never written.
    let link = OwnedValue::dict([
        ("attr", "l".into()),
        ("path", OwnedValue::list(["link".into()])),
        ("symlink path", OwnedValue::list(["a".into()])),
    ]);
    let info = parse_info(multi(vec![file(&["a"], 5), link])).unwrap();
    assert_eq!(info.info.files[1].path, ["top", "link"]);
    assert_eq!(info.info.files[1].length, 0);
    assert!(info.info.files[1].padding);

    // Unsafe paths stay refused, whatever the key order.
    let evil: &[u8] =
        b"d4:name1:x5:filesld6:lengthi1e4:pathl2:..1:xeee12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
    let err = Info::from_bytes(evil).unwrap_err();
    assert!(matches!(err, MetainfoError::UnsafePath { .. }), "{err}");
}

#[test]
fn every_truncation_and_byte_mutation_is_handled() {
    let samples = [
        torrent(multi(vec![
            file(&["a"], 10),
            set(file(&["p"], 5), "attr", Some("p".into())),
            file(&["d", "b"], 20_000),
        ])),
        include_bytes!("../../../../testdata/single.torrent").to_vec(),
    ];
    for data in &samples {
        Metainfo::from_bytes(data).unwrap();
        for cut in 0..data.len() {
            assert!(Metainfo::from_bytes(&data[..cut]).is_err(), "cut at {cut}");
        }
        let mut mutated = data.clone();
        for i in 0..data.len() {
            for b in [
                0, b'0', b'9', b'-', b':', b'e', b'i', b'l', b'd', b'/', 0xff,
            ] {
                mutated[i] = b;
                let _ = Metainfo::from_bytes(&mutated);
            }
            mutated[i] = data[i];
        }
    }
}

/// The span of the top-level `info` value found independently of the decoder: mktorrent writes `info`
/// as the last top-level key, so it runs from after `4:info` to just before the final `e`.
fn info_span_by_search(data: &[u8]) -> &[u8] {
    let key = b"4:infod";
    let start = data.windows(key.len()).position(|w| w == key).unwrap() + 6;
    &data[start..data.len() - 1]
}

#[test]
fn parses_mktorrent_single_file() {
    let data = include_bytes!("../../../../testdata/single.torrent");
    let m = Metainfo::from_bytes(data).unwrap();
    // Computed with Python's hashlib over the info span found by a separate bencode walker.
    assert_eq!(
        m.info_hash.to_hex(),
        "9eded739eb33c86ef52dfe795c11cdafcf1d3d5a"
    );
    assert_eq!(m.info_hash.0, digest::sha1(info_span_by_search(data)));
    assert_eq!(m.info.name, "single.bin");
    assert_eq!(m.total_length(), 100_000);
    assert_eq!(m.info.piece_length, 32768);
    assert_eq!(m.piece_count(), 4);
    assert!(!m.info.multi_file);
    assert_eq!(
        m.announce_tiers,
        vec![
            vec!["http://127.0.0.1:6969/announce"],
            vec!["udp://127.0.0.1:6969/announce"]
        ]
    );
    assert_eq!(m.comment.as_deref(), Some("swarmer fixture"));
    assert_eq!(m.created_by.as_deref(), Some("mktorrent 1.1"));
    assert!(m.creation_date.is_some());
}

#[test]
fn parses_mktorrent_multi_file_private() {
    let data = include_bytes!("../../../../testdata/multi.torrent");
    let m = Metainfo::from_bytes(data).unwrap();
    assert_eq!(
        m.info_hash.to_hex(),
        "b6b93364dce6c2ed2201e435f74f6bf7a6f203b5"
    );
    assert_eq!(m.info_hash.0, digest::sha1(info_span_by_search(data)));
    assert!(m.info.multi_file);
    assert!(m.info.private);
    let files: Vec<(String, u64)> = m
        .info
        .files
        .iter()
        .map(|f| (f.path.join("/"), f.length))
        .collect();
    assert_eq!(
        files,
        [
            ("multi/a.txt".to_owned(), 14000),
            ("multi/empty".to_owned(), 0),
            ("multi/sub/b.bin".to_owned(), 40000),
            ("multi/sub/deeper/c.txt".to_owned(), 5)
        ]
    );
    assert_eq!(m.piece_count(), 2);
}
