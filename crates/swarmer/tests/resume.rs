//! Fast-resume tests: a restart with unchanged files hashes nothing, a changed file is hashed again
//! (only its pieces), damaged data is found by checking, and an interrupted download continues from
//! where it stopped without fetching the verified pieces again; state kept in a custom
//! [`ResumeStore`] does the same, and a torrent stopped and added again (a daemon's pause and resume)
//! needs no hashing.

mod common;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Fixture, assert_files_match, fixture, session, write_content};
use swarmer::resume::{ResumeFile, ResumeStore};
use swarmer::{
    AddTorrentOptions, ExistingData, Progress, Session, SessionConfig, TorrentHandle, TorrentState,
};
use swarmer_proto::InfoHash;

/// Every wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(60);

fn resume_path(f: &Fixture, root: &Path) -> PathBuf {
    swarmer::resume::default_path(root, f.metainfo.info_hash)
}

/// Adds the fixture in `root` keeping resume state there, checking what is on disk.
async fn add(s: &Session, f: &Fixture, root: &Path) -> TorrentHandle {
    s.add_torrent_with(
        f.metainfo.clone(),
        root,
        AddTorrentOptions {
            existing: ExistingData::Check,
            resume: Some(Arc::new(ResumeFile::new(resume_path(f, root)))),
            ..AddTorrentOptions::default()
        },
    )
    .await
    .unwrap()
}

/// Waits until the torrent's state satisfies `done`; returns that progress.
async fn wait_for(t: &TorrentHandle, done: impl Fn(&Progress) -> bool) -> Progress {
    let mut progress = t.progress();
    tokio::time::timeout(TIMEOUT, async {
        loop {
            let p = progress.borrow_and_update().clone();
            if done(&p) {
                return p;
            }
            progress.changed().await.expect("torrent ended early");
        }
    })
    .await
    .expect("timed out")
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_files_need_no_hashing_and_a_changed_file_only_its_own() {
    let f = fixture(16 * 1024);
    let dir = tempfile::tempdir().unwrap();
    write_content(&f, dir.path());
    let count = f.metainfo.info.layout.piece_count();

    // First run: no state, so everything is hashed; completing saves the state.
    let s = session(SessionConfig::default()).await;
    let mut t = add(&s, &f, dir.path()).await;
    t.wait_complete().await.unwrap();
    assert_eq!(t.progress().borrow().checked_pieces, count);
    t.stop().await.unwrap();
    assert!(resume_path(&f, dir.path()).exists());

    // Second run: the state vouches for every piece.
    let mut t = add(&s, &f, dir.path()).await;
    t.wait_complete().await.unwrap();
    let p = t.progress().borrow().clone();
    assert_eq!((p.checked_pieces, p.pieces_have), (0, count));
    t.stop().await.unwrap();

    // A newer modification time on one file: only the pieces touching it are hashed.
    let big = dir.path().join("fixture/sub/deeper/big.bin");
    let file = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(10))
        .unwrap();
    drop(file);
    let layout = &f.metainfo.info.layout;
    let big_index = layout.file(3).unwrap();
    let touching = layout.file_pieces(big_index).len() as u32;
    assert!(touching < count);
    let mut t = add(&s, &f, dir.path()).await;
    t.wait_complete().await.unwrap();
    let p = t.progress().borrow().clone();
    assert_eq!(
        (p.pieces_to_check, p.checked_pieces, p.pieces_have),
        (touching, touching, count)
    );
    t.stop().await.unwrap();
    assert_files_match(&f, dir.path());
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_data_is_found_by_checking_and_the_result_is_saved() {
    let f = fixture(16 * 1024);
    let dir = tempfile::tempdir().unwrap();
    write_content(&f, dir.path());
    let count = f.metainfo.info.layout.piece_count();
    // Damage the first piece (it lies in a.bin).
    let a = dir.path().join("fixture/a.bin");
    let mut bytes = std::fs::read(&a).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&a, &bytes).unwrap();

    let s = session(SessionConfig::default()).await;
    let t = add(&s, &f, dir.path()).await;
    let p = wait_for(&t, |p| p.state == TorrentState::Downloading).await;
    assert_eq!((p.checked_pieces, p.pieces_have), (count, count - 1));
    t.stop().await.unwrap();

    // Restart: nothing is hashed again, and the damaged piece is still missing.
    let t = add(&s, &f, dir.path()).await;
    let p = wait_for(&t, |p| p.state == TorrentState::Downloading).await;
    assert_eq!((p.checked_pieces, p.pieces_have), (0, count - 1));
    t.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_download_continues_without_fetching_verified_pieces_again() {
    let f = fixture(16 * 1024);
    let total = f.metainfo.info.layout.total_length();
    // A seeder, and a leecher held to 64 KiB/s so it can be stopped part-way.
    let (_seed_dir, seeder, seed) = common::seeder(&f, SessionConfig::default()).await;

    let dir = tempfile::tempdir().unwrap();
    let slow = session(SessionConfig {
        max_download_rate: Some(64 * 1024),
        ..SessionConfig::default()
    })
    .await;
    let t = add(&slow, &f, dir.path()).await;
    t.add_peers(vec![seeder.listen_addr()]).await;
    let p = wait_for(&t, |p| p.verified_bytes >= total / 4).await;
    assert!(p.verified_bytes < total);
    let progress = t.progress();
    t.stop().await.unwrap();
    let first = progress.borrow().downloaded_bytes;
    assert!(resume_path(&f, dir.path()).exists());
    drop(slow);

    // Restart at full speed: the verified pieces are not fetched again.
    let fast = session(SessionConfig::default()).await;
    let mut t = add(&fast, &f, dir.path()).await;
    let resumed = wait_for(&t, |p| p.state != TorrentState::Checking).await;
    assert_eq!(
        resumed.checked_pieces, 0,
        "the saved state needs no hashing"
    );
    assert!(resumed.verified_bytes >= total / 4);
    t.add_peers(vec![seeder.listen_addr()]).await;
    tokio::time::timeout(TIMEOUT, t.wait_complete())
        .await
        .expect("timed out")
        .unwrap();
    let progress = t.progress();
    t.stop().await.unwrap();
    let second = progress.borrow().downloaded_bytes;
    seed.stop().await.unwrap();
    assert_files_match(&f, dir.path());
    assert!(
        first + second <= total + total / 10,
        "fetched {first} + {second} bytes of a {total}-byte torrent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_selection_is_saved_and_pieces_in_the_parts_file_are_vouched_for_only_while_it_is_unchanged()
 {
    // Eight 16 KiB pieces: piece 2 straddles a.bin|skip.bin and piece 5 skip.bin|c.bin, so both live
    // in the parts file; 3 and 4 are skip.bin's alone; 0, 1, 6 and 7 are plain.
    let f = common::fixture_with(
        16 * 1024,
        vec![
            (vec!["a.bin"], 40_000),
            (vec!["skip.bin"], 50_000),
            (vec!["c.bin"], 30_000),
        ],
    );
    let (_seed_dir, seeder, seed) = common::seeder(&f, SessionConfig::default()).await;

    let dir = tempfile::tempdir().unwrap();
    let s = session(SessionConfig::default()).await;
    use swarmer::FilePriority::{Normal, Skip};
    let options = |priorities| AddTorrentOptions {
        existing: ExistingData::Check,
        resume: Some(Arc::new(ResumeFile::new(resume_path(&f, dir.path())))),
        file_priorities: priorities,
        ..AddTorrentOptions::default()
    };
    let mut t = s
        .add_torrent_with(
            f.metainfo.clone(),
            dir.path(),
            options(vec![Normal, Skip, Normal]),
        )
        .await
        .unwrap();
    t.add_peers(vec![seeder.listen_addr()]).await;
    tokio::time::timeout(TIMEOUT, t.wait_complete())
        .await
        .expect("timed out")
        .unwrap();
    t.stop().await.unwrap();
    let skipped = dir.path().join("fixture/skip.bin");
    assert!(!skipped.exists());

    // No priorities given: the saved ones apply, and the state vouches for everything wanted.
    let mut t = s
        .add_torrent_with(f.metainfo.clone(), dir.path(), options(Vec::new()))
        .await
        .unwrap();
    t.wait_complete().await.unwrap();
    let p = t.progress().borrow().clone();
    assert_eq!((p.checked_pieces, p.pieces_have), (0, 6), "all but 3 and 4");
    t.stop().await.unwrap();
    assert!(!skipped.exists(), "the saved selection still skips it");

    // The parts file is gone: its pieces are hashed again, found missing, and fetched again.
    let parts = dir
        .path()
        .join(swarmer::storage::parts_file_name(&f.metainfo.info_hash));
    std::fs::remove_file(&parts).unwrap();
    let mut t = s
        .add_torrent_with(f.metainfo.clone(), dir.path(), options(Vec::new()))
        .await
        .unwrap();
    let p = wait_for(&t, |p| p.state != TorrentState::Checking).await;
    assert_eq!(
        (p.pieces_to_check, p.pieces_have),
        (2, 4),
        "pieces 2 and 5 were in the parts file"
    );
    t.add_peers(vec![seeder.listen_addr()]).await;
    tokio::time::timeout(TIMEOUT, t.wait_complete())
        .await
        .expect("timed out")
        .unwrap();
    t.stop().await.unwrap();
    seed.stop().await.unwrap();
    let a = std::fs::read(dir.path().join("fixture/a.bin")).unwrap();
    let c = std::fs::read(dir.path().join("fixture/c.bin")).unwrap();
    assert!(a == f.content[..40_000] && c == f.content[90_000..]);
}

/// A resume store in memory, as a daemon's database would be, counting the saves.
#[derive(Debug, Default)]
struct Memory {
    states: Mutex<HashMap<InfoHash, Vec<u8>>>,
    saves: Mutex<usize>,
}

impl ResumeStore for Memory {
    fn load(&self, info_hash: InfoHash) -> io::Result<Option<Vec<u8>>> {
        Ok(self.states.lock().unwrap().get(&info_hash).cloned())
    }

    fn save(&self, info_hash: InfoHash, state: &[u8]) -> io::Result<()> {
        *self.saves.lock().unwrap() += 1;
        self.states
            .lock()
            .unwrap()
            .insert(info_hash, state.to_vec());
        Ok(())
    }
}

/// Adds the fixture in `root` checking what is on disk, with its state in `store` and `options`
/// otherwise.
async fn add_with_store(
    s: &Session,
    f: &Fixture,
    root: &Path,
    store: &Arc<Memory>,
    options: AddTorrentOptions,
) -> TorrentHandle {
    let store: Arc<dyn ResumeStore> = store.clone();
    s.add_torrent_with(
        f.metainfo.clone(),
        root,
        AddTorrentOptions {
            existing: ExistingData::Check,
            resume: Some(store),
            ..options
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn state_in_a_custom_store_makes_a_restart_need_no_hashing() {
    let f = fixture(16 * 1024);
    let dir = tempfile::tempdir().unwrap();
    write_content(&f, dir.path());
    let count = f.metainfo.info.layout.piece_count();
    let store = Arc::new(Memory::default());

    let s = session(SessionConfig::default()).await;
    let mut t = add_with_store(&s, &f, dir.path(), &store, AddTorrentOptions::default()).await;
    t.wait_complete().await.unwrap();
    assert_eq!(t.progress().borrow().checked_pieces, count);
    t.stop().await.unwrap();
    assert!(*store.saves.lock().unwrap() >= 1);
    assert!(
        store
            .states
            .lock()
            .unwrap()
            .contains_key(&f.metainfo.info_hash)
    );
    assert!(
        !resume_path(&f, dir.path()).exists(),
        "nothing is written beside the data"
    );

    let mut t = add_with_store(&s, &f, dir.path(), &store, AddTorrentOptions::default()).await;
    t.wait_complete().await.unwrap();
    let p = t.progress().borrow().clone();
    assert_eq!(
        (p.pieces_to_check, p.checked_pieces, p.pieces_have),
        (0, 0, count)
    );
    t.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torrent_stopped_and_added_again_continues_without_hashing() {
    // A daemon pauses a torrent by stopping it and resumes it by adding it again to the same session
    // with the same store.
    let f = fixture(16 * 1024);
    let total = f.metainfo.info.layout.total_length();
    let (_seed_dir, seeder, seed) = common::seeder(&f, SessionConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Memory::default());
    let s = session(SessionConfig::default()).await;

    // Held to 64 KiB/s by its own limit, so it can be paused part-way.
    let slow = AddTorrentOptions {
        max_download_rate: Some(64 * 1024),
        ..AddTorrentOptions::default()
    };
    let t = add_with_store(&s, &f, dir.path(), &store, slow).await;
    assert_eq!(t.rate_limits(), (None, Some(64 * 1024)));
    assert_eq!(s.rate_limits(), (None, None));
    t.add_peers(vec![seeder.listen_addr()]).await;
    let p = wait_for(&t, |p| p.verified_bytes >= total / 4).await;
    assert!(p.verified_bytes < total);
    let progress = t.progress();
    t.stop().await.unwrap();
    let paused = progress.borrow().clone();
    assert_eq!(paused.state, TorrentState::Stopped);

    // Added again at once: the session forgot it when it stopped, and the state needs no hashing.
    let mut t = add_with_store(&s, &f, dir.path(), &store, AddTorrentOptions::default()).await;
    assert_eq!(t.rate_limits(), (None, None));
    let resumed = wait_for(&t, |p| p.state != TorrentState::Checking).await;
    assert_eq!(
        (resumed.pieces_to_check, resumed.checked_pieces),
        (0, 0),
        "the saved state needs no hashing"
    );
    assert_eq!(resumed.verified_bytes, paused.verified_bytes);
    t.add_peers(vec![seeder.listen_addr()]).await;
    tokio::time::timeout(TIMEOUT, t.wait_complete())
        .await
        .expect("timed out")
        .unwrap();
    let progress = t.progress();
    t.stop().await.unwrap();
    seed.stop().await.unwrap();
    assert_files_match(&f, dir.path());
    let fetched = paused.downloaded_bytes + progress.borrow().downloaded_bytes;
    assert!(
        fetched <= total + total / 10,
        "fetched {fetched} bytes of a {total}-byte torrent"
    );

    // Paused and resumed once more, complete: still nothing to hash.
    let mut t = add_with_store(&s, &f, dir.path(), &store, AddTorrentOptions::default()).await;
    t.wait_complete().await.unwrap();
    let p = t.progress().borrow().clone();
    assert_eq!((p.checked_pieces, p.verified_bytes), (0, total));
    t.stop().await.unwrap();
}
