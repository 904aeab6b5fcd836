//! Reading a file while its torrent downloads (`TorrentHandle::open_file`) through the whole
//! client on loopback: a rate-limited swarmer seeder, a leecher whose reader seeks to the end of
//! a file and gets its bytes long before the download ends, two readers at once, byte-identical
//! reads, a reader's deadlines cleared when it is dropped, a reader whose torrent stops failing
//! rather than waiting forever, and a sequential download verifying pieces in order.

mod common;

use std::io::SeekFrom;
use std::time::Duration;

use common::{fixture_with, seeder, session};
use swarmer::{AddTorrentOptions, SessionConfig, TorrentError};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Every wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(60);

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, f).await.expect("timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_gets_the_end_of_a_file_long_before_the_download_ends() {
    // 3 MiB in 16 KiB pieces, 192 pieces; the seeder sends 256 KiB/s, so the whole takes 12 s.
    const LEN: u64 = 3 << 20;
    let f = fixture_with(
        16 * 1024,
        vec![(vec!["a.bin"], 100_000), (vec!["video.bin"], LEN)],
    );
    let video = &f.content[100_000..];
    let limited = SessionConfig {
        max_upload_rate: Some(256 * 1024),
        ..SessionConfig::default()
    };
    let (_seed_dir, seed_session, _seed) = seeder(&f, limited).await;
    let dir = tempfile::tempdir().unwrap();
    let leech_session = session(SessionConfig::default()).await;
    let mut torrent = leech_session
        .add_torrent_with(f.metainfo.clone(), dir.path(), AddTorrentOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        torrent.open_file(7),
        Err(TorrentError::NoSuchFile(7))
    ));
    let mut reader = torrent.open_file(1).unwrap();
    assert_eq!(reader.len(), LEN);
    torrent.add_peers(vec![seed_session.listen_addr()]).await;

    // The end first (where an MP4 without faststart keeps its index), then the start.
    let started = tokio::time::Instant::now();
    reader.seek(SeekFrom::End(-5000)).await.unwrap();
    let mut tail = vec![0; 5000];
    within(reader.read_exact(&mut tail)).await.unwrap();
    assert_eq!(tail, &video[video.len() - 5000..]);
    let progress = torrent.progress().borrow().clone();
    println!(
        "tail read after {:.2} s with {} of {} pieces verified",
        started.elapsed().as_secs_f64(),
        progress.pieces_have,
        progress.piece_count
    );
    assert!(
        progress.pieces_have < progress.piece_count / 2,
        "the tail came first: {} of {} pieces verified",
        progress.pieces_have,
        progress.piece_count
    );
    assert_eq!(reader.read(&mut tail).await.unwrap(), 0, "end of file");

    // Two readers at once: the start, and the middle.
    let mut second = torrent.open_file(1).unwrap();
    reader.seek(SeekFrom::Start(0)).await.unwrap();
    second.seek(SeekFrom::Start(LEN / 2)).await.unwrap();
    let (mut head, mut middle) = (vec![0; 300_000], vec![0; 300_000]);
    let (a, b) = within(async {
        tokio::join!(reader.read_exact(&mut head), second.read_exact(&mut middle))
    })
    .await;
    a.unwrap();
    b.unwrap();
    assert_eq!(head, &video[..300_000]);
    let mid = (LEN / 2) as usize;
    assert_eq!(middle, &video[mid..mid + 300_000]);
    let with_two = torrent.details().await.unwrap().deadline_pieces;
    assert!(with_two > 0, "readers' windows are deadlines");
    drop(second);

    // The whole file, byte for byte, while the rest downloads.
    reader.seek(SeekFrom::Start(0)).await.unwrap();
    let mut whole = Vec::new();
    within(reader.read_to_end(&mut whole)).await.unwrap();
    assert_eq!(whole, video);
    drop(reader);
    within(torrent.wait_complete()).await.unwrap();
    torrent.stop().await.unwrap();
}

#[tokio::test]
async fn a_reader_of_a_stopped_torrent_fails_instead_of_waiting() {
    let f = fixture_with(16 * 1024, vec![(vec!["only.bin"], 200_000)]);
    let dir = tempfile::tempdir().unwrap();
    let s = session(SessionConfig::default()).await;
    let torrent = s
        .add_torrent_with(f.metainfo.clone(), dir.path(), AddTorrentOptions::default())
        .await
        .unwrap();
    assert!(!torrent.sequential());
    torrent.set_sequential(true);
    assert!(torrent.sequential());
    torrent.set_sequential(false);
    // A reader's window becomes deadlines, and dropped, they are cleared (the owner takes each
    // change in its own time: asked until it has, bounded).
    let deadlines = |want: fn(usize) -> bool| {
        let torrent = &torrent;
        within(async move {
            while !want(torrent.details().await.unwrap().deadline_pieces) {
                tokio::task::yield_now().await;
            }
        })
    };
    let probe = torrent.open_file(0).unwrap();
    deadlines(|n| n == 13).await;
    drop(probe);
    deadlines(|n| n == 0).await;
    let mut reader = torrent.open_file(0).unwrap();
    // No peer: the read waits for a piece that never comes, until the torrent stops.
    let read = tokio::spawn(async move {
        let mut buf = [0; 10];
        reader.read(&mut buf).await
    });
    tokio::task::yield_now().await;
    torrent.stop().await.unwrap();
    let err = within(read).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_download_verifies_pieces_in_order() {
    // 4 MiB in 16 KiB pieces (256), from a seeder sending 512 KiB/s.
    let f = fixture_with(16 * 1024, vec![(vec!["film.bin"], 4 << 20)]);
    let limited = SessionConfig {
        max_upload_rate: Some(512 * 1024),
        ..SessionConfig::default()
    };
    let (_seed_dir, seed_session, _seed) = seeder(&f, limited).await;
    let dir = tempfile::tempdir().unwrap();
    let leech_session = session(SessionConfig::default()).await;
    let mut torrent = leech_session
        .add_torrent_with(
            f.metainfo.clone(),
            dir.path(),
            AddTorrentOptions {
                sequential: true,
                ..AddTorrentOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(torrent.sequential());
    torrent.add_peers(vec![seed_session.listen_addr()]).await;
    let mut progress = torrent.progress();
    within(progress.wait_for(|p| p.pieces_have >= 80))
        .await
        .unwrap();
    let have = torrent.details().await.unwrap().have;
    let verified: Vec<usize> = have.iter_ones().collect();
    let early = verified.iter().filter(|&&i| i < 128).count();
    println!(
        "{} pieces verified, {early} of them in the first half",
        verified.len()
    );
    assert!(
        early * 10 >= verified.len() * 9,
        "not in order: {verified:?}"
    );
    within(torrent.wait_complete()).await.unwrap();
    torrent.stop().await.unwrap();
}
