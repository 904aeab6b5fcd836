//! `swarmer verify` as a user runs it: a report on standard output naming missing files, wrong
//! lengths and bad pieces, and exit code 0 only when every piece matches.

use std::path::Path;
use std::process::Command;

use swarmer_proto::bencode::OwnedValue;
use swarmer_proto::digest;

const PIECE: usize = 16 * 1024;

/// Writes `files` (name, length) of pseudo-random content under `dir/t/` and a torrent of them with
/// 16 KiB pieces at `dir/t.torrent`.
fn make(dir: &Path, files: &[(&str, usize)]) -> Vec<u8> {
    let total: usize = files.iter().map(|f| f.1).sum();
    let content: Vec<u8> = (0..total).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::create_dir_all(dir.join("data/t")).unwrap();
    let mut offset = 0;
    for (name, len) in files {
        std::fs::write(
            dir.join("data/t").join(name),
            &content[offset..offset + len],
        )
        .unwrap();
        offset += len;
    }
    let pieces: Vec<u8> = content.chunks(PIECE).flat_map(digest::sha1).collect();
    let list = OwnedValue::list(files.iter().map(|(name, len)| {
        OwnedValue::dict([
            ("length", OwnedValue::Int(*len as i64)),
            (
                "path",
                OwnedValue::list([OwnedValue::Bytes(name.as_bytes().to_vec())]),
            ),
        ])
    }));
    let info = OwnedValue::dict([
        ("files", list),
        ("name", OwnedValue::Bytes(b"t".to_vec())),
        ("piece length", OwnedValue::Int(PIECE as i64)),
        ("pieces", OwnedValue::Bytes(pieces)),
    ]);
    let torrent = OwnedValue::dict([
        (
            "announce",
            OwnedValue::Bytes(b"http://127.0.0.1:1/announce".to_vec()),
        ),
        ("info", info),
    ]);
    std::fs::write(dir.join("t.torrent"), torrent.encode()).unwrap();
    content
}

fn verify(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_swarmer"))
        .arg("verify")
        .arg(dir.join("t.torrent"))
        .arg("-o")
        .arg(dir.join("data"))
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn verify_reports_what_is_wrong_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), &[("a", 40_000), ("b", 30_000), ("c", 50_000)]);
    let (ok, report) = verify(dir.path());
    assert!(ok, "{report}");
    assert!(report.contains("8 of 8 pieces match"), "{report}");
    assert!(
        report.contains("all data is present and matches"),
        "{report}"
    );

    // Corrupt one byte in piece 5 (all in c), and shorten b.
    let c = dir.path().join("data/t/c");
    let mut bytes = std::fs::read(&c).unwrap();
    bytes[5 * PIECE - 70_000 + 10] ^= 1;
    std::fs::write(&c, bytes).unwrap();
    let b = dir.path().join("data/t/b");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&b)
        .unwrap()
        .set_len(1000)
        .unwrap();
    let (ok, report) = verify(dir.path());
    assert!(!ok, "{report}");
    assert!(
        report.contains("wrong length: t/b has 1000 bytes, the torrent says 30000"),
        "{report}"
    );
    // b spans pieces 2-4; piece 5 is corrupt.
    assert!(
        report.contains("bad pieces: 2-5 (the first starts in t/a)"),
        "{report}"
    );
    assert!(report.contains("4 of 8 pieces match"), "{report}");

    std::fs::remove_file(&b).unwrap();
    let (ok, report) = verify(dir.path());
    assert!(!ok);
    assert!(report.contains("missing: t/b"), "{report}");
}
