//! What the whole-client tests share: a deterministic multi-file torrent and a check that files on
//! disk hold exactly its content.
#![allow(dead_code, unreachable_pub)] // Each test binary uses a different part.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use swarmer::{
    AddTorrentOptions, ExistingData, SeedLimits, Session, SessionConfig, TorrentHandle,
    TorrentState,
};

use swarmer_proto::metainfo::{FileEntry, Info, Metainfo};
use swarmer_proto::{InfoHash, Layout, digest};

pub struct Fixture {
    pub metainfo: Metainfo,
    pub content: Arc<Vec<u8>>,
}

/// A multi-file torrent with nested directories, a 0-byte file, a file smaller than a piece and pieces
/// spanning file boundaries; content is a deterministic pseudo-random sequence.
pub fn fixture(piece_length: u32) -> Fixture {
    fixture_with(
        piece_length,
        vec![
            (vec!["a.bin"], 100_000),
            (vec!["empty.txt"], 0),
            (vec!["sub", "small.txt"], 1_000),
            (vec!["sub", "deeper", "big.bin"], 300_000),
        ],
    )
}

/// A torrent named `fixture` of `files` (path components, length in bytes) with deterministic
/// pseudo-random content.
pub fn fixture_with(piece_length: u32, files: Vec<(Vec<&str>, u64)>) -> Fixture {
    let total: u64 = files.iter().map(|f| f.1).sum();
    let mut x: u32 = 0x1234_5678;
    let content: Vec<u8> = (0..total)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let layout = Layout::new(u64::from(piece_length), files.iter().map(|f| f.1)).unwrap();
    let piece_hashes = layout
        .pieces()
        .map(|p| {
            let start = layout.piece_offset(p) as usize;
            digest::sha1(&content[start..start + layout.piece_len(p) as usize])
        })
        .collect();
    let info = Info {
        name: "fixture".into(),
        piece_length,
        piece_hashes,
        v2: None,
        files: files
            .iter()
            .map(|(path, length)| FileEntry {
                path: std::iter::once("fixture")
                    .chain(path.iter().copied())
                    .map(String::from)
                    .collect(),
                length: *length,
                padding: false,
            })
            .collect(),
        multi_file: true,
        private: false,
        layout,
    };
    let metainfo = Metainfo {
        info_hash: InfoHash(digest::sha1(b"loopback fixture")),
        info,
        info_bytes: std::sync::Arc::from(&b"loopback fixture"[..]),
        announce_tiers: vec![],
        comment: None,
        created_by: None,
        creation_date: None,
        url_list: vec![],
        http_seeds: vec![],
    };
    Fixture {
        metainfo,
        content: Arc::new(content),
    }
}

pub fn assert_files_match(f: &Fixture, root: &Path) {
    let mut offset = 0usize;
    for file in &f.metainfo.info.files {
        let path: std::path::PathBuf = file.path.iter().collect();
        let got =
            std::fs::read(root.join(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(got.len() as u64, file.length, "{}", path.display());
        assert!(
            got == f.content[offset..offset + file.length as usize],
            "{} differs",
            path.display()
        );
        offset += file.length as usize;
    }
}

/// A session listening on an ephemeral port of 127.0.0.1, otherwise as `config` says.
pub async fn session(config: SessionConfig) -> Session {
    Session::new(SessionConfig {
        listen_port: 0,
        bind_ip: Some("127.0.0.1".parse().unwrap()),
        ..config
    })
    .await
    .unwrap()
}

/// Writes the fixture's files under `root`, as a finished download would have left them.
pub fn write_content(f: &Fixture, root: &Path) {
    let mut offset = 0usize;
    for file in &f.metainfo.info.files {
        let path = root.join(file.path.iter().collect::<PathBuf>());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &f.content[offset..offset + file.length as usize]).unwrap();
        offset += file.length as usize;
    }
}

/// A session seeding the fixture (until stopped) from a new directory holding its content, once it
/// has verified that content. The directory lives as long as the returned `TempDir`.
pub async fn seeder(
    f: &Fixture,
    config: SessionConfig,
) -> (tempfile::TempDir, Session, TorrentHandle) {
    seed_in(f, session(config).await).await
}

/// Seeds the fixture from `session` as [`seeder`] does, whatever its addresses.
pub async fn seed_in(f: &Fixture, session: Session) -> (tempfile::TempDir, Session, TorrentHandle) {
    let dir = tempfile::tempdir().unwrap();
    write_content(f, dir.path());
    let options = AddTorrentOptions {
        seed: Some(SeedLimits::default()),
        existing: ExistingData::Complete,
        ..AddTorrentOptions::default()
    };
    let mut torrent = session
        .add_torrent_with(f.metainfo.clone(), dir.path(), options)
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(60), torrent.wait_complete())
        .await
        .expect("timed out")
        .unwrap();
    assert_eq!(torrent.progress().borrow().state, TorrentState::Seeding);
    (dir, session, torrent)
}
