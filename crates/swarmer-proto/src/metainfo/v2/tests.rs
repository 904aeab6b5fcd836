//! Tests of v2 and hybrid metainfo (BEP 52): torrents made by libtorrent 2.0.8 over known content,
//! every piece checked against its merkle tree, and malformed variants refused with clear errors.

use crate::bencode::{self, OwnedValue};
use crate::metainfo::{Info, MetaVersion, Metainfo, MetainfoError};

/// libtorrent 2.0.8, `create_torrent(fs, 32768, flags=v2_only)` over the payload of [`payload`].
const V2: &[u8] = include_bytes!("../../../../../testdata/libtorrent-v2.torrent");
/// The same with `flags=0` (hybrid).
const HYBRID: &[u8] = include_bytes!("../../../../../testdata/libtorrent-hybrid.torrent");

/// The fixture's files: (path below `payload`, length, seed). Byte `i` of a file is
/// `(i * 7 + seed * 13) % 251`.
const FILES: [(&str, usize, usize); 4] = [
    ("a.bin", 40000, 1),
    ("d/b.bin", 100000, 2),
    ("d/e/c.bin", 81920, 3),
    ("z.empty", 0, 4),
];

/// The content of the torrent as pieces see it: files aligned to 32 KiB pieces with zero padding
/// between them.
fn payload() -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (_, len, seed)) in FILES.iter().enumerate() {
        if i > 0 && out.len() % 32768 != 0 {
            out.resize(out.len().next_multiple_of(32768), 0);
        }
        out.extend((0..*len).map(|i| ((i * 7 + seed * 13) % 251) as u8));
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_every_piece(m: &Metainfo) {
    let data = payload();
    let layout = &m.info.layout;
    for piece in layout.pieces() {
        let start = layout.piece_offset(piece) as usize;
        let end = start + layout.piece_len(piece) as usize;
        let mut bytes = data[start..end.min(data.len())].to_vec();
        bytes.resize(end - start, 0);
        assert!(m.info.verify_piece(piece, &bytes), "piece {}", piece.get());
        bytes[0] ^= 1;
        assert!(!m.info.verify_piece(piece, &bytes), "piece {}", piece.get());
    }
}

#[test]
fn libtorrent_v2_only_torrent() {
    let m = Metainfo::from_bytes(V2).unwrap();
    assert_eq!(m.info.version(), MetaVersion::V2);
    let v2 = "7cf7fffb2b3802f338b9940147ede87932209d382d1408d985f4ae02bda18ccf";
    assert_eq!(hex(&m.info_hash_v2().unwrap()), v2);
    assert_eq!(m.info_hash.to_hex(), v2[..40]);
    assert!(m.has_info_hash(&m.info_hash));
    assert_eq!(m.wire_hashes(), vec![m.info_hash]);
    assert!(m.info.piece_hashes.is_empty() && m.info.multi_file);
    let files: Vec<(String, u64, bool)> = m
        .info
        .files
        .iter()
        .map(|f| (f.path.join("/"), f.length, f.padding))
        .collect();
    let expected = [
        ("payload/a.bin", 40000, false),
        ("payload/.pad/25536", 25536, true),
        ("payload/d/b.bin", 100000, false),
        ("payload/.pad/31072", 31072, true),
        ("payload/d/e/c.bin", 81920, false),
        ("payload/.pad/16384", 16384, true),
        ("payload/z.empty", 0, false),
    ];
    let expected: Vec<(String, u64, bool)> = expected
        .iter()
        .map(|(p, l, pad)| (p.to_string(), *l, *pad))
        .collect();
    assert_eq!(files, expected);
    assert_eq!(m.piece_count(), 9);
    assert!(m.info.v2.as_ref().unwrap().has_all_layers());
    check_every_piece(&m);

    // A saved copy keeps the piece layers, so it parses to the same torrent.
    assert_eq!(
        Metainfo::from_bytes(&m.to_torrent_bytes()).unwrap().info,
        m.info
    );
    // The info dictionary alone (a magnet link's metadata) lacks them.
    assert_eq!(
        Metainfo::from_info_bytes(&m.info_bytes, vec![]).unwrap_err(),
        MetainfoError::PieceLayersNeeded
    );
}

#[test]
fn libtorrent_hybrid_torrent() {
    let m = Metainfo::from_bytes(HYBRID).unwrap();
    assert_eq!(m.info.version(), MetaVersion::Hybrid);
    assert_eq!(
        m.info_hash.to_hex(),
        "42bdf4fadff8f1f7eaaa8b4bbaf461b37b7399ab"
    );
    let v2 = "68d7342dc4323f2913fa4d781193a37a9835d2319c3bf55227a7f651f5030c43";
    assert_eq!(hex(&m.info_hash_v2().unwrap()), v2);
    let hashes = m.wire_hashes();
    assert_eq!(hashes.len(), 2);
    assert_eq!(hashes[1].to_hex(), v2[..40]);
    assert!(hashes.iter().all(|h| m.has_info_hash(h)));
    assert_eq!(m.info.piece_hashes.len(), 9);
    check_every_piece(&m);

    // From a magnet link a hybrid needs no piece layers: SHA-1 checks every piece.
    let fetched = Metainfo::from_info_bytes(&m.info_bytes, vec![]).unwrap();
    assert_eq!(fetched.info_hash, m.info_hash);
    assert!(!fetched.info.v2.as_ref().unwrap().has_all_layers());
    check_every_piece(&fetched);
}

/// The fixture decoded, changed by `edit`, encoded again.
fn edited(data: &[u8], edit: impl FnOnce(&mut OwnedValue)) -> Vec<u8> {
    let mut value = bencode::decode(data).unwrap().to_owned_value();
    edit(&mut value);
    value.encode()
}

fn dict<'a>(value: &'a mut OwnedValue, key: &str) -> &'a mut OwnedValue {
    match value {
        OwnedValue::Dict(d) => d.get_mut(key.as_bytes()).unwrap(),
        _ => panic!("not a dictionary"),
    }
}

fn first_layer(value: &mut OwnedValue) -> &mut Vec<u8> {
    match dict(value, "piece layers") {
        OwnedValue::Dict(d) => match d.values_mut().next().unwrap() {
            OwnedValue::Bytes(b) => b,
            _ => panic!(),
        },
        _ => panic!(),
    }
}

fn tree_file(i: &mut OwnedValue) -> &mut OwnedValue {
    dict(dict(dict(i, "file tree"), "a.bin"), "")
}

fn v1_files(i: &mut OwnedValue) -> &mut Vec<OwnedValue> {
    match dict(i, "files") {
        OwnedValue::List(l) => l,
        _ => panic!(),
    }
}

fn error(data: &[u8]) -> String {
    Metainfo::from_bytes(data).unwrap_err().to_string()
}

#[test]
fn malformed_v2_is_refused_with_clear_errors() {
    let short = edited(V2, |v| {
        first_layer(v).truncate(32);
    });
    assert!(error(&short).contains("expected"), "{}", error(&short));
    let wrong = edited(V2, |v| first_layer(v)[0] ^= 1);
    assert!(error(&wrong).contains("does not hash to the file's `pieces root`"));
    let missing = edited(V2, |v| {
        if let OwnedValue::Dict(d) = v {
            d.remove(&b"piece layers"[..]);
        }
    });
    assert!(matches!(
        Metainfo::from_bytes(&missing),
        Err(MetainfoError::MissingPieceLayer(_))
    ));
    // A hybrid without piece layers still verifies every piece by SHA-1.
    let hybrid = edited(HYBRID, |v| {
        if let OwnedValue::Dict(d) = v {
            d.remove(&b"piece layers"[..]);
        }
    });
    check_every_piece(&Metainfo::from_bytes(&hybrid).unwrap());

    let info = |data: &[u8], edit: &dyn Fn(&mut OwnedValue)| {
        let bytes = edited(data, |v| edit(dict(v, "info")));
        Metainfo::from_bytes(&bytes).map(|_| ()).unwrap_err()
    };
    assert_eq!(
        info(V2, &|i| *dict(i, "meta version") = OwnedValue::Int(3)),
        MetainfoError::UnsupportedMetaVersion(3)
    );
    assert_eq!(
        info(V2, &|i| *dict(i, "piece length") = OwnedValue::Int(49152)),
        MetainfoError::PieceLengthNotPowerOfTwo(49152)
    );
    assert!(
        info(V2, &|i| *dict(tree_file(i), "pieces root") =
            OwnedValue::Bytes(vec![1; 31]))
        .to_string()
        .contains("`pieces root` is not 32 bytes")
    );
    // A root that is not the file's: its piece layer no longer matches.
    assert!(matches!(
        info(V2, &|i| *dict(tree_file(i), "pieces root") =
            OwnedValue::Bytes(vec![1; 32])),
        MetainfoError::MissingPieceLayer(_)
    ));
    assert!(
        info(V2, &|i| {
            if let OwnedValue::Dict(d) = dict(i, "file tree") {
                d.insert(
                    b"..".to_vec(),
                    OwnedValue::dict([("", OwnedValue::dict([("length", OwnedValue::Int(0))]))]),
                );
            }
        })
        .to_string()
        .contains("unsafe path")
    );
    assert!(
        info(V2, &|i| {
            if let OwnedValue::Dict(d) = dict(dict(i, "file tree"), "a.bin") {
                d.insert(b"x".to_vec(), OwnedValue::dict::<&str>([]));
            }
        })
        .to_string()
        .contains("both a file and a directory")
    );
    // A hybrid whose v1 and v2 views differ.
    let mismatch = info(HYBRID, &|i| {
        *dict(&mut v1_files(i)[2], "length") = OwnedValue::Int(99999)
    });
    assert!(
        matches!(mismatch, MetainfoError::HybridMismatch(_)),
        "{mismatch}"
    );
    let mismatch = info(HYBRID, &|i| {
        *dict(&mut v1_files(i)[0], "path") = OwnedValue::list(["b.bin".into()])
    });
    assert!(
        mismatch.to_string().contains("where the file tree has"),
        "{mismatch}"
    );
    let mismatch = info(HYBRID, &|i| {
        v1_files(i).remove(1);
    });
    assert!(
        matches!(mismatch, MetainfoError::HybridMismatch(_)),
        "{mismatch}"
    );
}

#[test]
fn a_huge_file_tree_stays_within_the_size_bound() {
    // 300,000 one-byte files: about 20 MB of tree, parsed, and the layout holds them all.
    let root = OwnedValue::Bytes(vec![7; 32]);
    let leaf = OwnedValue::dict([(
        "",
        OwnedValue::dict([("length", OwnedValue::Int(1)), ("pieces root", root)]),
    )]);
    let tree = OwnedValue::Dict(
        (0..300_000)
            .map(|i| (format!("{i:07}").into_bytes(), leaf.clone()))
            .collect(),
    );
    let info = OwnedValue::dict([
        ("file tree", tree),
        ("meta version", OwnedValue::Int(2)),
        ("name", "many".into()),
        ("piece length", OwnedValue::Int(16384)),
    ]);
    let bytes = info.encode();
    assert!(bytes.len() < crate::metainfo::MAX_METAINFO_BYTES);
    let info = Info::from_bytes(&bytes).unwrap();
    assert_eq!(info.layout.piece_count(), 300_000);
    assert_eq!(info.files.len(), 600_000);
}
