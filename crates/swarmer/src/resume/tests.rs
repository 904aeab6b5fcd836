//! Tests of the fast-resume state on disk: states load while files are unchanged, changed files are reported, other torrents' states are refused, custom stores.

use super::*;
use std::fs::OpenOptions;
use swarmer_proto::metainfo::FileEntry;
use swarmer_proto::{Bitfield, Layout};

fn info(files: &[(&str, u64)]) -> Info {
    let entries: Vec<FileEntry> = files
        .iter()
        .map(|(name, length)| FileEntry {
            path: vec!["t".into(), name.to_string()],
            length: *length,
            padding: false,
        })
        .collect();
    let layout = Layout::new(16, entries.iter().map(|f| f.length)).unwrap();
    Info {
        name: "t".into(),
        piece_length: 16,
        piece_hashes: vec![[0; 20]; layout.piece_count() as usize],
        v2: None,
        multi_file: true,
        private: false,
        files: entries,
        layout,
    }
}

fn state(info: &Info, root: &Path) -> ResumeState {
    let mut have = Bitfield::new(info.layout.piece_count() as usize);
    have.set(1);
    ResumeState {
        info_hash: InfoHash([7; 20]),
        have,
        files: stamps(root, info),
        parts: None,
        priorities: Vec::new(),
        uploaded: 5,
        downloaded: 1 << 40,
    }
}

/// `load` against the files as they are now under `root`, with no parts file.
fn load_here(
    path: &Path,
    root: &Path,
    info_hash: InfoHash,
    info: &Info,
) -> Result<Option<Loaded>, ResumeError> {
    load(
        &ResumeFile::new(path.to_path_buf()),
        info_hash,
        info,
        &stamps(root, info),
        None,
    )
}

fn write_files(root: &Path, info: &Info) {
    std::fs::create_dir_all(root.join("t")).unwrap();
    for f in &info.files {
        std::fs::write(root.join("t").join(&f.path[1]), vec![1; f.length as usize]).unwrap();
    }
}

#[test]
fn saved_state_loads_while_files_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let info = info(&[("a", 20), ("b", 30)]);
    write_files(dir.path(), &info);
    let s = state(&info, dir.path());
    assert!(s.files.iter().all(Option::is_some));
    let path = default_path(dir.path(), s.info_hash);
    save(&s, &ResumeFile::new(path.clone())).unwrap();
    assert!(!path.with_extension("resume.tmp").exists());
    let loaded = load_here(&path, dir.path(), s.info_hash, &info)
        .unwrap()
        .unwrap();
    assert!(loaded.unchanged());
    assert_eq!(loaded.state, s);
}

#[test]
fn changed_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let info = info(&[("a", 20), ("b", 30)]);
    write_files(dir.path(), &info);
    let s = state(&info, dir.path());
    let path = default_path(dir.path(), s.info_hash);
    save(&s, &ResumeFile::new(path.clone())).unwrap();
    // Same length, newer modification time: a write after the save.
    let b = dir.path().join("t/b");
    let f = OpenOptions::new().write(true).open(&b).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    let loaded = load_here(&path, dir.path(), s.info_hash, &info)
        .unwrap()
        .unwrap();
    assert_eq!(loaded.changed, [false, true]);
    // A deleted file too.
    std::fs::remove_file(dir.path().join("t/a")).unwrap();
    let loaded = load_here(&path, dir.path(), s.info_hash, &info)
        .unwrap()
        .unwrap();
    assert_eq!(loaded.changed, [true, true]);
}

#[test]
fn states_of_other_torrents_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let info = info(&[("a", 20), ("b", 30)]);
    write_files(dir.path(), &info);
    let s = state(&info, dir.path());
    let path = dir.path().join("state");
    save(&s, &ResumeFile::new(path.clone())).unwrap();
    let other = InfoHash([8; 20]);
    assert!(matches!(
        load_here(&path, dir.path(), other, &info),
        Err(ResumeError::OtherTorrent(h)) if h == s.info_hash
    ));
    assert!(matches!(
        load_here(&path, dir.path(), s.info_hash, &self::info(&[("a", 20)])),
        Err(ResumeError::Format(ResumeFormatError::Mismatch(
            "file count"
        )))
    ));
    assert!(
        load_here(&dir.path().join("none"), dir.path(), s.info_hash, &info)
            .unwrap()
            .is_none()
    );
    std::fs::write(&path, b"garbage").unwrap();
    assert!(matches!(
        load_here(&path, dir.path(), s.info_hash, &info),
        Err(ResumeError::Format(ResumeFormatError::Malformed(_)))
    ));
}

/// A store in memory that can be made to fail.
#[derive(Debug, Default)]
struct Memory {
    states: std::sync::Mutex<std::collections::HashMap<InfoHash, Vec<u8>>>,
    broken: bool,
}

impl ResumeStore for Memory {
    fn load(&self, info_hash: InfoHash) -> io::Result<Option<Vec<u8>>> {
        if self.broken {
            return Err(io::Error::other("disk on fire"));
        }
        Ok(self.states.lock().unwrap().get(&info_hash).cloned())
    }

    fn save(&self, info_hash: InfoHash, state: &[u8]) -> io::Result<()> {
        self.states
            .lock()
            .unwrap()
            .insert(info_hash, state.to_vec());
        Ok(())
    }
}

#[test]
fn a_custom_store_keeps_states_by_info_hash() {
    let dir = tempfile::tempdir().unwrap();
    let info = info(&[("a", 20), ("b", 30)]);
    write_files(dir.path(), &info);
    let s = state(&info, dir.path());
    let store = Memory::default();
    let current = stamps(dir.path(), &info);
    assert!(
        load(&store, s.info_hash, &info, &current, None)
            .unwrap()
            .is_none()
    );
    save(&s, &store).unwrap();
    let loaded = load(&store, s.info_hash, &info, &current, None)
        .unwrap()
        .unwrap();
    assert!(loaded.unchanged());
    assert_eq!(loaded.state, s);
    assert!(
        load(&store, InfoHash([8; 20]), &info, &current, None)
            .unwrap()
            .is_none()
    );
}

#[test]
fn errors_name_where_the_state_came_from() {
    let info = info(&[("a", 20)]);
    let hash = InfoHash([7; 20]);
    let broken = Memory {
        broken: true,
        ..Memory::default()
    };
    let e = load(&broken, hash, &info, &[None], None).unwrap_err();
    assert_eq!(e.to_string(), "cannot read resume store: disk on fire");
    let huge = Memory::default();
    huge.save(hash, &vec![0; MAX_RESUME_BYTES as usize + 1])
        .unwrap();
    let e = load(&huge, hash, &info, &[None], None).unwrap_err();
    assert!(matches!(e, ResumeError::TooLarge { .. }));
    assert!(
        e.to_string().starts_with("resume store is larger than"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    std::fs::write(&path, vec![0; MAX_RESUME_BYTES as usize + 1]).unwrap();
    let e = load(&ResumeFile::new(path.clone()), hash, &info, &[None], None).unwrap_err();
    assert!(
        e.to_string().starts_with(&path.display().to_string()),
        "{e}"
    );
    // A directory where the file should be: reading fails, and the message names the path.
    let e = load(
        &ResumeFile::new(dir.path().to_path_buf()),
        hash,
        &info,
        &[None],
        None,
    )
    .unwrap_err();
    assert!(matches!(e, ResumeError::Io { .. }));
    assert!(
        e.to_string().contains(&dir.path().display().to_string()),
        "{e}"
    );
}
