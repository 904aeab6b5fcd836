//! Tests of the storage: file creation and sparse lengths, pieces across files, refused paths and symlinks, skipped files and the parts file, many files with few handles.

use super::*;
use swarmer_proto::metainfo::FileEntry;

fn entry(path: &[&str], length: u64, padding: bool) -> FileEntry {
    FileEntry {
        path: path.iter().map(|s| s.to_string()).collect(),
        length,
        padding,
    }
}

fn info(piece_length: u32, files: Vec<FileEntry>) -> Info {
    let layout = Layout::new(u64::from(piece_length), files.iter().map(|f| f.length)).unwrap();
    Info {
        name: files[0].path[0].clone(),
        piece_length,
        piece_hashes: vec![[0; 20]; layout.piece_count() as usize],
        v2: None,
        multi_file: files.len() > 1,
        private: false,
        files,
        layout,
    }
}

/// 16-byte pieces over: a(10) empty(0) b(4) pad(2) c(30).
fn multi() -> Info {
    info(
        16,
        vec![
            entry(&["t", "a"], 10, false),
            entry(&["t", "sub", "empty"], 0, false),
            entry(&["t", "sub", "b"], 4, false),
            entry(&["t", ".pad", "2"], 2, true),
            entry(&["t", "c"], 30, false),
        ],
    )
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 1) as u8).collect()
}

#[test]
fn storage_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Storage>();
}

#[test]
fn creates_files_with_their_lengths_but_no_padding() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("out");
    Storage::create(&root, &multi()).unwrap();
    assert_eq!(std::fs::metadata(root.join("t/a")).unwrap().len(), 10);
    assert_eq!(
        std::fs::metadata(root.join("t/sub/empty")).unwrap().len(),
        0
    );
    assert_eq!(std::fs::metadata(root.join("t/sub/b")).unwrap().len(), 4);
    assert_eq!(std::fs::metadata(root.join("t/c")).unwrap().len(), 30);
    assert!(!root.join("t/.pad").exists());
}

#[test]
fn piece_spanning_three_files_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let info = multi();
    let s = Storage::create(dir.path(), &info).unwrap();
    let p0 = s.layout().piece(0).unwrap();
    // Piece 0 covers a[0..10], b[0..4], pad[0..2]; piece 1 starts in c.
    let data = content(16);
    s.write(p0, 0, &data).unwrap();
    let mut back = [0u8; 16];
    s.read(p0, 0, &mut back).unwrap();
    // The padding bytes were not stored: they read as zeros.
    assert_eq!(&back[..14], &data[..14]);
    assert_eq!(&back[14..], &[0, 0]);
    assert_eq!(std::fs::read(dir.path().join("t/a")).unwrap(), &data[..10]);
    assert_eq!(
        std::fs::read(dir.path().join("t/sub/b")).unwrap(),
        &data[10..14]
    );

    // A write in the middle of a piece, crossing a -> b.
    s.write(p0, 8, &[0xaa; 4]).unwrap();
    let mut mid = [0u8; 6];
    s.read(p0, 6, &mut mid).unwrap();
    assert_eq!(mid, [data[6], data[7], 0xaa, 0xaa, 0xaa, 0xaa]);

    // The last, short piece.
    let last = s.layout().piece(2).unwrap();
    assert_eq!(s.layout().piece_len(last), 14);
    s.write(last, 0, &content(14)).unwrap();
    let mut tail = [0u8; 14];
    s.read(last, 0, &mut tail).unwrap();
    assert_eq!(tail.to_vec(), content(14));
    s.sync_all().unwrap();
}

#[test]
fn out_of_range_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::create(dir.path(), &multi()).unwrap();
    let last = s.layout().piece(2).unwrap();
    assert!(matches!(
        s.write(last, 10, &[0; 5]),
        Err(StorageError::OutOfRange { piece: 2, .. })
    ));
    assert!(matches!(
        s.read(last, u32::MAX, &mut [0; 1]),
        Err(StorageError::OutOfRange { .. })
    ));
}

#[test]
fn reopening_keeps_existing_data_and_fixes_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let info = info(
        16,
        vec![entry(&["t", "a"], 20, false), entry(&["t", "b"], 20, false)],
    );
    {
        let s = Storage::create(dir.path(), &info).unwrap();
        s.write(s.layout().piece(0).unwrap(), 0, &content(16))
            .unwrap();
    }
    // b is too long, as if an older version of the torrent left it behind.
    std::fs::write(dir.path().join("t/b"), [9u8; 50]).unwrap();
    let s = Storage::create(dir.path(), &info).unwrap();
    let mut back = [0u8; 16];
    s.read(s.layout().piece(0).unwrap(), 0, &mut back).unwrap();
    assert_eq!(back.to_vec(), content(16));
    assert_eq!(std::fs::metadata(dir.path().join("t/b")).unwrap().len(), 20);
    let mut b = [0u8; 4];
    // Bytes 20..24 of the content are the first bytes of b, which survived the cut.
    s.read(s.layout().piece(1).unwrap(), 4, &mut b).unwrap();
    assert_eq!(b, [9; 4]);
}

#[test]
fn open_existing_reads_but_never_creates_or_changes() {
    let dir = tempfile::tempdir().unwrap();
    let info = multi();
    let missing = Storage::open_existing(dir.path(), &info).unwrap_err();
    assert!(matches!(missing, StorageError::Missing { .. }), "{missing}");
    let written = Storage::create(dir.path(), &info).unwrap();
    // Piece 1 lies wholly in file c (piece 0 holds padding, which reads as zeros).
    let len = info.layout.piece_len(info.layout.piece(1).unwrap()) as usize;
    let data = content(len);
    written
        .write(info.layout.piece(1).unwrap(), 0, &data)
        .unwrap();
    written.sync_all().unwrap();
    drop(written);
    let seeded = Storage::open_existing(dir.path(), &info).unwrap();
    let mut back = vec![0; len];
    seeded
        .read(info.layout.piece(1).unwrap(), 0, &mut back)
        .unwrap();
    assert_eq!(back, data);
    assert!(
        seeded
            .write(info.layout.piece(1).unwrap(), 0, &data)
            .is_err()
    );
    // A file of the wrong length is reported, not fixed.
    let first = dir.path().join(info.files[0].path.join("/"));
    let before = std::fs::metadata(&first).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(before + 1)
        .unwrap();
    let wrong = Storage::open_existing(dir.path(), &info).unwrap_err();
    assert!(
        matches!(wrong, StorageError::WrongLength { actual, .. } if actual == before + 1),
        "{wrong}"
    );
    assert_eq!(std::fs::metadata(&first).unwrap().len(), before + 1);
}

#[test]
fn files_are_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let len = 64 << 20;
    let info = info(1 << 20, vec![entry(&["big"], len, false)]);
    let s = Storage::create(dir.path(), &info).unwrap();
    s.write(s.layout().piece(3).unwrap(), 0, &[1; 4096])
        .unwrap();
    let meta = std::fs::metadata(dir.path().join("big")).unwrap();
    assert_eq!(meta.len(), len);
    // `blocks` counts 512-byte units actually allocated.
    assert!(meta.blocks() * 512 < len / 2, "{} blocks", meta.blocks());
}

#[test]
fn symlinked_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("t")).unwrap();
    let err = Storage::create(&root, &multi()).unwrap_err();
    assert!(
        matches!(&err, StorageError::Symlink { path } if *path == root.join("t")),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn symlinked_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    std::fs::write(&target, b"keep me").unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("file")).unwrap();
    let info = info(16, vec![entry(&["file"], 100, false)]);
    assert!(matches!(
        Storage::create(dir.path(), &info),
        Err(StorageError::Symlink { .. })
    ));
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
}

#[test]
fn unsafe_and_duplicate_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        &["t", ".."][..],
        &["..", "x"],
        &["/etc"],
        &["a/b"],
        &["."],
        &[""],
        &["a\0b"],
        &[],
    ] {
        let mut i = info(16, vec![entry(&["x"], 10, false)]);
        i.files[0].path = bad.iter().map(|s| s.to_string()).collect();
        assert!(
            matches!(
                Storage::create(dir.path(), &i),
                Err(StorageError::UnsafePath(_))
            ),
            "{bad:?}"
        );
    }
    let dup = info(
        16,
        vec![entry(&["t", "a"], 10, false), entry(&["t", "a"], 10, false)],
    );
    assert!(matches!(
        Storage::create(dir.path(), &dup),
        Err(StorageError::DuplicatePath { .. })
    ));
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // A file where a directory should be.
    std::fs::write(dir.path().join("t"), b"").unwrap();
    let err = Storage::create(dir.path(), &multi()).unwrap_err();
    assert!(
        err.to_string()
            .contains(&dir.path().join("t").display().to_string()),
        "{err}"
    );
}

fn piece(s: &Storage, i: u32) -> PieceIndex {
    s.layout().piece(i).unwrap()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_hundred_thousand_tiny_files_with_few_open_handles() {
    // On tmpfs where there is one: 100,000 `fsync`s on a real disk take minutes.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let n = 100_000;
    let files: Vec<FileEntry> = (0..n)
        .map(|i| {
            entry(
                &["t", &format!("d{}", i / 1000), &format!("f{i}")],
                10,
                false,
            )
        })
        .collect();
    let info = info(16 * 1024, files);
    let options = StorageOptions {
        max_open_files: 16,
        ..StorageOptions::default()
    };
    let before = open_fds();
    let s = Storage::create_with(dir.path(), &info, &options).unwrap();
    assert!(open_fds() < before + 100, "create keeps files open");
    let all = content(info.layout.total_length() as usize);
    for p in info.layout.pieces() {
        let start = info.layout.piece_offset(p) as usize;
        s.write(p, 0, &all[start..start + info.layout.piece_len(p) as usize])
            .unwrap();
        assert!(s.open_file_count() <= 16);
    }
    s.sync_all().unwrap();
    for p in info.layout.pieces() {
        let start = info.layout.piece_offset(p) as usize;
        let mut back = vec![0; info.layout.piece_len(p) as usize];
        s.read(p, 0, &mut back).unwrap();
        assert_eq!(back, &all[start..start + back.len()], "piece {}", p.get());
    }
    assert!(s.open_file_count() <= 16);
    assert!(open_fds() < before + 100);
    let last = dir.path().join(format!("t/d{}/f{}", (n - 1) / 1000, n - 1));
    assert_eq!(std::fs::read(last).unwrap(), &all[all.len() - 10..]);
}

/// 16-byte pieces over a(20) b(40, skipped) c(20): piece 1 straddles a|b, 3 straddles b|c, 2 is
/// only b.
fn skipped_middle() -> (Info, StorageOptions, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let info = info(
        16,
        vec![
            entry(&["t", "a"], 20, false),
            entry(&["t", "b"], 40, false),
            entry(&["t", "c"], 20, false),
        ],
    );
    let options = StorageOptions {
        priorities: vec![
            FilePriority::Normal,
            FilePriority::Skip,
            FilePriority::Normal,
        ],
        parts_file: Some(dir.path().join(".swarmer-x.parts")),
        ..StorageOptions::default()
    };
    (info, options, dir)
}

fn write_all_pieces(s: &Storage, data: &[u8]) {
    for p in s.layout().pieces() {
        let start = s.layout().piece_offset(p) as usize;
        s.write(p, 0, &data[start..start + s.layout().piece_len(p) as usize])
            .unwrap();
    }
}

fn assert_pieces_read_back(s: &Storage, data: &[u8], pieces: &[u32]) {
    for &i in pieces {
        let p = piece(s, i);
        let start = s.layout().piece_offset(p) as usize;
        let mut back = vec![0; s.layout().piece_len(p) as usize];
        s.read(p, 0, &mut back).unwrap();
        assert_eq!(back, &data[start..start + back.len()], "piece {i}");
    }
}

#[test]
fn a_skipped_middle_file_is_not_created_and_straddling_pieces_use_the_parts_file() {
    let (info, options, dir) = skipped_middle();
    let data = content(80);
    let s = Storage::create_with(dir.path(), &info, &options).unwrap();
    assert!(!dir.path().join("t/b").exists());
    assert!(!s.is_on_disk(info.layout.file(1).unwrap()));
    assert!(
        !dir.path().join(".swarmer-x.parts").exists(),
        "created lazily"
    );
    write_all_pieces(&s, &data);
    s.sync_all().unwrap();
    assert_pieces_read_back(&s, &data, &[0, 1, 2, 3, 4]);
    assert!(!dir.path().join("t/b").exists());
    assert_eq!(std::fs::read(dir.path().join("t/a")).unwrap(), &data[..20]);
    assert_eq!(std::fs::read(dir.path().join("t/c")).unwrap(), &data[60..]);
    drop(s);
    // Straddling pieces survive a restart in the parts file; seeding the selection reads them too.
    let s = Storage::create_with(dir.path(), &info, &options).unwrap();
    assert_pieces_read_back(&s, &data, &[1, 3]);
    drop(s);
    let seeded = Storage::open_existing_with(dir.path(), &info, &options).unwrap();
    assert_pieces_read_back(&seeded, &data, &[0, 1, 3, 4]);
    assert!(matches!(
        seeded.want_file(info.layout.file(1).unwrap(), &Bitfield::full(5)),
        Err(StorageError::Missing { .. })
    ));
    drop(seeded);
    // Without the parts file, a straddling piece cannot be read while seeding.
    std::fs::remove_file(dir.path().join(".swarmer-x.parts")).unwrap();
    let seeded = Storage::open_existing_with(dir.path(), &info, &options).unwrap();
    assert!(matches!(
        seeded.read(piece(&seeded, 1), 0, &mut [0; 16]),
        Err(StorageError::Missing { .. })
    ));
    assert_pieces_read_back(&seeded, &data, &[0, 4]);
}

#[test]
fn wanting_a_skipped_file_creates_it_from_the_parts_file() {
    let (info, options, dir) = skipped_middle();
    let data = content(80);
    let s = Storage::create_with(dir.path(), &info, &options).unwrap();
    write_all_pieces(&s, &data);
    let b = info.layout.file(1).unwrap();
    s.want_file(b, &Bitfield::new(5)).unwrap();
    assert!(s.is_on_disk(b));
    assert_eq!(
        std::fs::read(dir.path().join("t/b")).unwrap(),
        &data[20..60]
    );
    // Now every piece is read from the files.
    std::fs::remove_file(dir.path().join(".swarmer-x.parts")).unwrap();
    assert_pieces_read_back(&s, &data, &[0, 1, 2, 3, 4]);
}

#[test]
fn two_names_for_one_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("t")).unwrap();
    std::fs::write(dir.path().join("t/A"), [0; 10]).unwrap();
    // As "a" and "A" are on a case-insensitive filesystem.
    std::fs::hard_link(dir.path().join("t/A"), dir.path().join("t/a")).unwrap();
    let info = info(
        16,
        vec![entry(&["t", "A"], 10, false), entry(&["t", "a"], 10, false)],
    );
    let err = Storage::create(dir.path(), &info).unwrap_err();
    assert!(matches!(err, StorageError::SameFile { .. }), "{err}");
    assert!(err.to_string().contains("t/A"), "{err}");
}

#[test]
fn a_file_replaced_after_creation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let info = info(
        16,
        vec![entry(&["t", "a"], 16, false), entry(&["t", "b"], 16, false)],
    );
    let options = StorageOptions {
        max_open_files: 1,
        ..StorageOptions::default()
    };
    let s = Storage::create_with(dir.path(), &info, &options).unwrap();
    s.write(piece(&s, 0), 0, &[1; 16]).unwrap();
    // Writing b closes a (one handle at most); a is then swapped for another file.
    s.write(piece(&s, 1), 0, &[2; 16]).unwrap();
    assert_eq!(s.open_file_count(), 1);
    // Renamed over a, so the new file cannot reuse a's freed inode number.
    std::fs::write(dir.path().join("other"), [9; 16]).unwrap();
    std::fs::rename(dir.path().join("other"), dir.path().join("t/a")).unwrap();
    assert!(matches!(
        s.read(piece(&s, 0), 0, &mut [0; 16]),
        Err(StorageError::Replaced { .. })
    ));
}

#[test]
fn selection_options_are_checked() {
    let (info, mut options, dir) = skipped_middle();
    options.parts_file = None;
    assert!(matches!(
        Storage::create_with(dir.path(), &info, &options),
        Err(StorageError::NoPartsFile)
    ));
    options.priorities.pop();
    assert!(matches!(
        Storage::create_with(dir.path(), &info, &options),
        Err(StorageError::LayoutMismatch)
    ));
}
