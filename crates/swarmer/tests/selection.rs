//! File selection through the whole client on loopback: a swarmer leecher that skips a file between
//! two wanted ones (pieces straddle both boundaries) downloads only what it wants from a swarmer
//! seeder, creates no skipped file, and fetches the rest once it asks for every file at run time.

mod common;

use std::time::Duration;

use common::{assert_files_match, fixture_with, seeder, session};
use swarmer::{AddTorrentOptions, FilePriority, SessionConfig, SessionError, TorrentState};

/// Every wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(60);

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, f).await.expect("timed out")
}

#[tokio::test]
async fn a_leecher_downloads_only_the_selected_files_then_the_rest() {
    // 16 KiB pieces: piece 2 straddles a.bin|skip.bin, piece 5 skip.bin|c.bin; 3 and 4 are skip.bin's.
    let f = fixture_with(
        16 * 1024,
        vec![
            (vec!["a.bin"], 40_000),
            (vec!["skip.bin"], 50_000),
            (vec!["c.bin"], 30_000),
            (vec!["empty"], 0),
        ],
    );
    let total = f.metainfo.info.layout.total_length();
    let (_seed_dir, seed_session, seed) = seeder(&f, SessionConfig::default()).await;

    let dir = tempfile::tempdir().unwrap();
    let leech_session = session(SessionConfig::default()).await;
    use FilePriority::{Normal, Skip};
    let wrong = leech_session
        .add_torrent_with(
            f.metainfo.clone(),
            dir.path(),
            AddTorrentOptions {
                file_priorities: vec![Normal],
                ..AddTorrentOptions::default()
            },
        )
        .await;
    assert!(matches!(wrong, Err(SessionError::FilePriorities(_))));
    let mut torrent = leech_session
        .add_torrent_with(
            f.metainfo.clone(),
            dir.path(),
            AddTorrentOptions {
                file_priorities: vec![Normal, Skip, Normal, Skip],
                ..AddTorrentOptions::default()
            },
        )
        .await
        .unwrap();
    torrent.add_peers(vec![seed_session.listen_addr()]).await;
    within(torrent.wait_complete()).await.unwrap();
    let progress = torrent.progress().borrow().clone();
    assert_eq!(progress.state, TorrentState::Complete);
    assert_eq!(progress.left_bytes, 0);
    assert_eq!(
        progress.wanted_bytes,
        total - 2 * 16 * 1024,
        "pieces 3 and 4 skipped"
    );
    assert!(progress.pieces_have < progress.piece_count);
    // The details name the verified pieces: all but the skipped file's own.
    let details = torrent.details().await.unwrap();
    let have: Vec<bool> = (0..progress.piece_count as usize)
        .map(|i| details.have.get(i))
        .collect();
    assert_eq!(have, [true, true, true, false, false, true, true, true]);
    let root = dir.path().join("fixture");
    assert_eq!(
        std::fs::read(root.join("a.bin")).unwrap(),
        &f.content[..40_000]
    );
    assert_eq!(
        std::fs::read(root.join("c.bin")).unwrap(),
        &f.content[90_000..]
    );
    assert!(!root.join("skip.bin").exists());
    assert!(!root.join("empty").exists());
    let parts = dir
        .path()
        .join(swarmer::storage::parts_file_name(&f.metainfo.info_hash));
    assert!(
        parts.exists(),
        "straddling pieces are kept in {}",
        parts.display()
    );

    // Asking for everything: the skipped files appear, and the seed (which the finished leecher
    // left) is told where to find us.
    torrent.set_file_priorities(Vec::new()).await.unwrap();
    assert!(root.join("empty").exists());
    seed.add_peers(vec![leech_session.listen_addr()]).await;
    let mut progress = torrent.progress();
    within(progress.wait_for(|p| p.is_done() && p.left_bytes == 0 && p.wanted_bytes == total))
        .await
        .unwrap();
    assert_files_match(&f, dir.path());
    torrent.stop().await.unwrap();
    seed.stop().await.unwrap();
}
