//! Tests of torrent creation: the same bytes libtorrent 2.0.8 writes for the same files (v2 and
//! hybrid), v1 against a reference, libtorrent's automatic piece lengths, and refused input.

use super::*;
use crate::metainfo::Metainfo;

/// The files of `testdata/libtorrent-*.torrent`: (path, length, seed), byte `i` of a file being
/// `(i * 7 + seed * 13) % 251`.
const FILES: [(&str, usize, usize); 4] = [
    ("a.bin", 40000, 1),
    ("d/b.bin", 100000, 2),
    ("d/e/c.bin", 81920, 3),
    ("z.empty", 0, 4),
];

fn content(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + seed * 13) % 251) as u8)
        .collect()
}

/// Makes the fixture's torrent the way the library does: every piece read through the plan's
/// layout (padding as zeros) and hashed.
fn make(version: MetaVersion, options: &CreateOptions) -> Vec<u8> {
    let files: Vec<(Vec<String>, u64)> = FILES
        .iter()
        .map(|(p, len, _)| (p.split('/').map(str::to_owned).collect(), *len as u64))
        .collect();
    let plan = TorrentPlan::new("payload", files, version, Some(32768)).unwrap();
    let mut data: Vec<Vec<u8>> = Vec::new();
    let mut real = FILES.iter();
    for file in plan.files() {
        if file.padding {
            data.push(vec![0; file.length as usize]);
        } else {
            let (_, len, seed) = real.next().unwrap();
            data.push(content(*len, *seed));
        }
    }
    let stream: Vec<u8> = data.concat();
    let layout = plan.layout();
    let hashes: Vec<PieceHashes> = layout
        .pieces()
        .map(|p| {
            let start = layout.piece_offset(p) as usize;
            plan.hash_piece(p, &stream[start..start + layout.piece_len(p) as usize])
        })
        .collect();
    plan.finish(&hashes, options).unwrap()
}

#[test]
fn v2_and_hybrid_are_byte_for_byte_what_libtorrent_makes() {
    let options = CreateOptions::default();
    let v2 = make(MetaVersion::V2, &options);
    assert_eq!(
        v2,
        include_bytes!("../../../../testdata/libtorrent-v2.torrent")
    );
    let hybrid = make(MetaVersion::Hybrid, &options);
    assert_eq!(
        hybrid,
        include_bytes!("../../../../testdata/libtorrent-hybrid.torrent")
    );
}

#[test]
fn v1_with_every_option() {
    let options = CreateOptions {
        trackers: vec!["http://a/announce".into(), "udp://b:1".into()],
        web_seeds: vec!["http://w/".into()],
        private: true,
        comment: Some("hi".into()),
        source: Some("SITE".into()),
        created_by: Some("swarmer".into()),
        creation_date: Some(1_700_000_000),
    };
    let bytes = make(MetaVersion::V1, &options);
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(m.info.version(), MetaVersion::V1);
    assert!(m.info.private && m.info.files.iter().all(|f| !f.padding));
    assert_eq!(
        m.announce_tiers,
        vec![
            vec!["http://a/announce".to_owned()],
            vec!["udp://b:1".to_owned()]
        ]
    );
    assert_eq!(m.comment.as_deref(), Some("hi"));
    assert_eq!(m.creation_date, Some(1_700_000_000));
    // v1 pieces span files: the SHA-1 of the concatenated content.
    let stream: Vec<u8> = FILES.iter().flat_map(|(_, l, s)| content(*l, *s)).collect();
    for piece in m.info.layout.pieces() {
        let start = m.info.layout.piece_offset(piece) as usize;
        let end = start + m.info.layout.piece_len(piece) as usize;
        assert!(m.info.verify_piece(piece, &stream[start..end]));
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(text.contains("6:source4:SITE"));
    assert!(text.contains("8:url-listl9:http://w/e"));
}

#[test]
fn automatic_piece_lengths_are_libtorrents() {
    let cases = [
        (1, 16384),
        (2_684_355, 16384),
        (2_684_356, 32768),
        (100_000_000, 131072),
        (1 << 30, 524288),
        (4 << 30, 1 << 20),
        (100 << 30, 4 << 20),
        (1 << 40, 16 << 20),
    ];
    for (total, expected) in cases {
        assert_eq!(auto_piece_length(total), expected, "{total}");
    }
}

#[test]
fn refuses_what_the_parser_would() {
    let plan = |name: &str, path: &[&str], version, piece| {
        let files = vec![(path.iter().map(|c| (*c).to_owned()).collect(), 5)];
        TorrentPlan::new(name, files, version, piece).map(|_| ())
    };
    assert!(matches!(
        plan("x", &["..", "a"], MetaVersion::Hybrid, None),
        Err(CreateError::Refused(_))
    ));
    assert!(matches!(
        plan("a/b", &[], MetaVersion::V1, None),
        Err(CreateError::Refused(_))
    ));
    assert_eq!(
        plan("x", &["a"], MetaVersion::V2, Some(49152)),
        Err(CreateError::BadPieceLength(49152))
    );
    assert!(plan("x", &["a"], MetaVersion::V1, Some(49152)).is_ok());
    assert_eq!(
        plan("x", &["a"], MetaVersion::V1, Some(1000)),
        Err(CreateError::BadPieceLength(1000))
    );
    assert_eq!(
        TorrentPlan::new("x", vec![], MetaVersion::V1, None).map(|_| ()),
        Err(CreateError::Empty)
    );
}
