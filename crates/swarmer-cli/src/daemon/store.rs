//! The daemon's state on disk: the torrent list, each torrent's settings and metainfo, the session
//! settings and every torrent's fast-resume state, in one redb database (`STATE_DIR/swarmer.redb`).
//!
//! redb commits are atomic and durable when `commit` returns (copy-on-write B-trees, two commit
//! slots, checksummed), so `kill -9` or a power cut leaves the last committed state. Records are JSON
//! (small, readable with `redb` tools, easy to extend with defaulted fields); metainfo and resume state
//! are the bytes we were given and `swarmer_proto::resume`'s bencoded format. ARCHITECTURE.md says
//! why redb and not SQLite.
//!
//! [`Store::load`] reads the resume state of every torrent that will start in the same read
//! transaction and keeps it until that torrent's start reads it ([`ResumeStore::load`] takes it),
//! so each state is read from the database once at start-up, not once for the list and again
//! for the start.
//!
//! Info hashes are [`InfoHash`] for the rest of the daemon; a record's JSON keeps them as the 40 hex
//! digits it has always held (see `hex_info_hash`), and the tables are keyed by their 20 bytes.

use crate::encryption::EncryptionMode;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use swarmer::resume::ResumeStore;
use swarmer_proto::InfoHash;

use super::download_dir::DownloadDir;

/// Torrent id -> [`TorrentRecord`] as JSON.
const TORRENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("torrents");
/// Info hash -> the metainfo file's bytes (absent while a magnet link's metadata is being fetched).
const METAINFO: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("metainfo");
/// Info hash -> fast-resume state (`swarmer_proto::resume` format).
const RESUME: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("resume");
/// Small named values: `next_id` (u64 as JSON), `settings` ([`Settings`] as JSON).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// What the daemon keeps of one torrent besides its metainfo and resume state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TorrentRecord {
    /// The daemon's id for the torrent, never reused (Transmission RPC `id`).
    pub(crate) id: u64,
    /// The info hash (40 lowercase hex digits in the JSON).
    #[serde(with = "hex_info_hash")]
    pub(crate) info_hash: InfoHash,
    /// The magnet link it was added from, if any (kept until the metadata is fetched, and after).
    #[serde(default)]
    pub(crate) magnet: Option<String>,
    /// The name to show before the metadata is known.
    pub(crate) name: String,
    /// Where the files go (single-file: `DIR/name`, multi-file: `DIR/name/...`).
    pub(crate) download_dir: DownloadDir,
    /// Paused by the user: not started until resumed.
    pub(crate) paused: bool,
    /// When it was added, seconds since the Unix epoch.
    pub(crate) added_at: u64,
    /// One `FilePriority` number per file (`swarmer_proto::FilePriority` as u8); empty: all normal.
    #[serde(default)]
    pub(crate) priorities: Vec<u8>,
    /// Per-torrent upload limit, bytes/s.
    #[serde(default)]
    pub(crate) max_upload_rate: Option<u64>,
    /// Per-torrent download limit, bytes/s.
    #[serde(default)]
    pub(crate) max_download_rate: Option<u64>,
    /// Place in the queue: lower starts first.
    #[serde(default)]
    pub(crate) queue_position: u32,
    /// Its category (qBittorrent), if any. Fields from here on are left out of the JSON while
    /// unset, so records without them read and write as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) category: Option<String>,
    /// Its tags (qBittorrent), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) tags: Vec<String>,
    /// A name the user gave it (qBittorrent `rename`), shown instead of `info.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) display_name: Option<String>,
    /// When every wanted piece was first verified, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) completed_at: Option<u64>,
    /// Take the data on disk as complete at the next start (qBittorrent `skip_checking`); cleared
    /// once it started.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) trust_data: bool,
    /// Download in order (through piece deadlines; Transmission `sequentialDownload`,
    /// qBittorrent `seq_dl`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) sequential: bool,
    /// First and last piece of every file first (qBittorrent `f_l_piece_prio`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) first_last_piece: bool,
}

/// Session-wide settings the API can change; saved so they survive a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Settings {
    /// Session upload limit, bytes/s; null: none.
    pub(crate) max_upload_rate: Option<u64>,
    /// Session download limit, bytes/s; null: none.
    pub(crate) max_download_rate: Option<u64>,
    /// Most torrents downloading at once; null: no limit.
    pub(crate) max_active_downloads: Option<u32>,
    /// Most torrents seeding at once; null: no limit.
    pub(crate) max_active_seeds: Option<u32>,
    /// Where added torrents go unless the request says otherwise.
    #[schema(value_type = String)]
    pub(crate) download_dir: DownloadDir,
    /// Message Stream Encryption of peer connections: prefer, require or disable (settings saved
    /// before it existed read as prefer).
    #[serde(default)]
    pub(crate) encryption: EncryptionMode,
}

/// Why the store failed: the message names the database file.
#[derive(Debug, thiserror::Error)]
#[error("state store {}: {message}", path.display())]
pub(crate) struct StoreError {
    path: PathBuf,
    message: String,
}

/// The open database. Cheap to share (`Arc`); every method is a short blocking transaction, so async
/// callers use `spawn_blocking` or accept a few milliseconds.
#[derive(Debug)]
pub(crate) struct Store {
    db: Database,
    path: PathBuf,
    /// Resume states [`Store::load`] read for torrents that will start, until their start takes
    /// them; any write of a state drops its copy here.
    preloaded: Mutex<HashMap<[u8; 20], Vec<u8>>>,
}

/// Everything read at start-up.
pub(crate) struct Loaded {
    /// Every torrent's record with its metainfo bytes (`None` while a magnet link's are fetched).
    pub(crate) torrents: Vec<(TorrentRecord, Option<Vec<u8>>)>,
    /// The saved settings, if any were saved.
    pub(crate) settings: Option<Settings>,
}

impl Store {
    /// Opens (or creates) `dir/swarmer.redb`, creating `dir` if needed. A database left by a killed
    /// process is repaired by redb on open (it falls back to the last committed transaction).
    ///
    /// Errors: the directory cannot be created, the file is not a redb database or another process
    /// holds it.
    pub(crate) fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("swarmer.redb");
        let err = |e: &dyn std::fmt::Display| StoreError {
            path: path.clone(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        let db = Database::create(&path).map_err(|e| err(&e))?;
        // Readable by the daemon's user only: it holds every torrent and the paths of their data.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| err(&e))?;
        }
        let store = Store {
            db,
            path: path.clone(),
            preloaded: Mutex::new(HashMap::new()),
        };
        // Create the tables so that read transactions never meet a missing one.
        store.write(|tx| {
            tx.open_table(TORRENTS)?;
            tx.open_table(METAINFO)?;
            tx.open_table(RESUME)?;
            tx.open_table(META)?;
            Ok(())
        })?;
        Ok(store)
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Runs `f` in one write transaction and commits it durably.
    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.error(e))?;
        let value = f(&tx).map_err(|e| self.error(e))?;
        tx.commit().map_err(|e| self.error(e))?;
        Ok(value)
    }

    /// Every torrent record with its metainfo bytes (`None` for a magnet link still fetching), in id
    /// order, and the saved settings. Records that do not parse are skipped with a warning.
    pub(crate) fn load(&self) -> Result<Loaded, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.error(e))?;
        let read = || -> Result<Loaded, redb::Error> {
            let torrents = tx.open_table(TORRENTS)?;
            let metainfo = tx.open_table(METAINFO)?;
            let meta = tx.open_table(META)?;
            let resume = tx.open_table(RESUME)?;
            let mut preloaded = HashMap::new();
            let mut out = Vec::new();
            for row in torrents.iter()? {
                let (id, bytes) = row?;
                let record: TorrentRecord = match serde_json::from_slice(bytes.value()) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!("skipping torrent {} in the state store: {e}", id.value());
                        continue;
                    }
                };
                let bytes = metainfo
                    .get(&record.info_hash.0)?
                    .map(|v| v.value().to_vec());
                if !record.paused {
                    if let Some(state) = resume.get(&record.info_hash.0)? {
                        preloaded.insert(record.info_hash.0, state.value().to_vec());
                    }
                }
                out.push((record, bytes));
            }
            let settings = meta
                .get("settings")?
                .and_then(|v| serde_json::from_slice(v.value()).ok());
            *self.preloaded.lock().expect("not poisoned") = preloaded;
            Ok(Loaded {
                torrents: out,
                settings,
            })
        };
        read().map_err(|e| self.error(e))
    }

    /// The next torrent id (1 for the first), reserved durably so ids are never reused.
    pub(crate) fn next_id(&self) -> Result<u64, StoreError> {
        self.write(|tx| {
            let mut meta = tx.open_table(META)?;
            let next = meta
                .get("next_id")?
                .and_then(|v| serde_json::from_slice::<u64>(v.value()).ok())
                .unwrap_or(1);
            let after = serde_json::to_vec(&(next + 1)).expect("u64 serializes");
            meta.insert("next_id", after.as_slice())?;
            Ok(next)
        })
    }

    /// Saves a torrent's record, and its metainfo bytes when given, in one transaction.
    pub(crate) fn put_torrent(
        &self,
        record: &TorrentRecord,
        metainfo: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_vec(record).expect("records serialize");
        self.write(|tx| {
            tx.open_table(TORRENTS)?
                .insert(record.id, json.as_slice())?;
            if let Some(bytes) = metainfo {
                tx.open_table(METAINFO)?
                    .insert(&record.info_hash.0, bytes)?;
            }
            Ok(())
        })
    }

    /// Forgets a torrent: its record, metainfo and resume state.
    pub(crate) fn remove_torrent(&self, id: u64, info_hash: InfoHash) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.open_table(TORRENTS)?.remove(id)?;
            tx.open_table(METAINFO)?.remove(&info_hash.0)?;
            tx.open_table(RESUME)?.remove(&info_hash.0)?;
            Ok(())
        })?;
        self.unload(info_hash);
        Ok(())
    }

    /// Reads a torrent's resume state with `f`: the copy [`Store::load`] kept (left for the
    /// torrent's start), else the table's. `None`: there is none, or it cannot be read.
    pub(crate) fn with_resume<T>(
        &self,
        info_hash: InfoHash,
        f: impl FnOnce(&[u8]) -> T,
    ) -> Option<T> {
        if let Some(bytes) = self
            .preloaded
            .lock()
            .expect("not poisoned")
            .get(&info_hash.0)
        {
            return Some(f(bytes));
        }
        let bytes = ResumeStore::load(self, info_hash).ok()??;
        Some(f(&bytes))
    }

    /// Drops the copy of a resume state that is about to change in the table.
    fn unload(&self, info_hash: InfoHash) {
        self.preloaded
            .lock()
            .expect("not poisoned")
            .remove(&info_hash.0);
    }

    /// The value saved under `key` in the small-values table (`None` if absent or unreadable).
    pub(crate) fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.error(e))?;
        let read = || -> Result<Option<T>, redb::Error> {
            let meta = tx.open_table(META)?;
            Ok(meta
                .get(key)?
                .and_then(|v| serde_json::from_slice(v.value()).ok()))
        };
        read().map_err(|e| self.error(e))
    }

    /// Saves `value` under `key` in the small-values table (the qBittorrent categories and tags).
    pub(crate) fn put_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let json = serde_json::to_vec(value).expect("values serialize");
        self.write(|tx| {
            tx.open_table(META)?.insert(key, json.as_slice())?;
            Ok(())
        })
    }

    /// Forgets a torrent's resume state, so its next start hashes all of its data (a re-check).
    pub(crate) fn forget_resume(&self, info_hash: InfoHash) -> Result<(), StoreError> {
        self.unload(info_hash);
        self.write(|tx| {
            tx.open_table(RESUME)?.remove(&info_hash.0)?;
            Ok(())
        })
    }

    /// Saves the session settings.
    pub(crate) fn put_settings(&self, settings: &Settings) -> Result<(), StoreError> {
        let json = serde_json::to_vec(settings).expect("settings serialize");
        self.write(|tx| {
            tx.open_table(META)?.insert("settings", json.as_slice())?;
            Ok(())
        })
    }
}

/// A record's info hash as 40 hex digits in its JSON: the format the store has always written, so
/// databases from before the hash was typed still load.
mod hex_info_hash {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use swarmer_proto::InfoHash;

    /// Writes the hash as 40 lowercase hex digits.
    pub(super) fn serialize<S: Serializer>(hash: &InfoHash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hash.to_hex())
    }

    /// Reads 40 hex digits (either case).
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<InfoHash, D::Error> {
        let hex = String::deserialize(d)?;
        InfoHash::from_hex(&hex)
            .ok_or_else(|| D::Error::custom(format!("{hex:?} is not 40 hex digits")))
    }
}

impl ResumeStore for Store {
    fn load(&self, info_hash: InfoHash) -> io::Result<Option<Vec<u8>>> {
        if let Some(bytes) = self
            .preloaded
            .lock()
            .expect("not poisoned")
            .remove(&info_hash.0)
        {
            return Ok(Some(bytes));
        }
        let tx = self.db.begin_read().map_err(io::Error::other)?;
        let table = tx.open_table(RESUME).map_err(io::Error::other)?;
        let value = table.get(&info_hash.0).map_err(io::Error::other)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn save(&self, info_hash: InfoHash, state: &[u8]) -> io::Result<()> {
        self.unload(info_hash);
        self.write(|tx| {
            tx.open_table(RESUME)?.insert(&info_hash.0, state)?;
            Ok(())
        })
        .map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64) -> TorrentRecord {
        TorrentRecord {
            id,
            info_hash: InfoHash::from_hex("0123456789abcdef0123456789abcdef01234567").unwrap(),
            magnet: None,
            name: "x".into(),
            download_dir: DownloadDir::new("/tmp/d").unwrap(),
            paused: false,
            added_at: 1,
            priorities: vec![],
            max_upload_rate: Some(5),
            max_download_rate: None,
            queue_position: 0,
            category: None,
            tags: Vec::new(),
            display_name: None,
            completed_at: None,
            trust_data: false,
            sequential: false,
            first_last_piece: false,
        }
    }

    /// A resume state `load` kept answers the start once and never outlives a write of it: a
    /// save or a re-check's forget replaces it, so a later start does not read a stale copy.
    #[test]
    fn a_preloaded_resume_state_is_read_once_and_dropped_on_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hash = record(1).info_hash;
        store.put_torrent(&record(1), Some(b"d4:infoe")).unwrap();
        ResumeStore::save(&store, hash, b"old").unwrap();
        store.load().unwrap();
        assert_eq!(
            store.with_resume(hash, <[u8]>::to_vec),
            Some(b"old".to_vec())
        );
        ResumeStore::save(&store, hash, b"new").unwrap();
        assert_eq!(
            ResumeStore::load(&store, hash).unwrap(),
            Some(b"new".to_vec())
        );
        store.load().unwrap();
        store.forget_resume(hash).unwrap();
        assert_eq!(ResumeStore::load(&store, hash).unwrap(), None);
        assert_eq!(store.with_resume(hash, <[u8]>::to_vec), None);
    }

    #[test]
    fn records_metainfo_and_resume_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let hash = InfoHash::from_hex("0123456789abcdef0123456789abcdef01234567").unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.next_id().unwrap(), 1);
            assert_eq!(store.next_id().unwrap(), 2);
            store.put_torrent(&record(1), Some(b"d4:infoe")).unwrap();
            ResumeStore::save(&store, hash, b"state").unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.next_id().unwrap(), 3, "ids are never reused");
        let loaded = store.load().unwrap();
        assert_eq!(
            loaded.torrents,
            vec![(record(1), Some(b"d4:infoe".to_vec()))]
        );
        assert_eq!(
            ResumeStore::load(&store, hash).unwrap(),
            Some(b"state".to_vec())
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("swarmer.redb"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the database is the daemon user's only"
        );
        store.put_meta("tags", &vec!["a".to_string()]).unwrap();
        assert_eq!(
            store.get_meta::<Vec<String>>("tags").unwrap(),
            Some(vec!["a".to_string()])
        );
        store.remove_torrent(1, record(1).info_hash).unwrap();
        assert!(store.load().unwrap().torrents.is_empty());
        assert_eq!(ResumeStore::load(&store, hash).unwrap(), None);
    }

    /// A database written before records held a typed info hash still loads: a record as that
    /// code wrote it, and one from before the defaulted fields existed. Records are still written
    /// byte for byte as before.
    #[test]
    fn records_in_the_old_format_load() {
        let written_before: &[u8] = br#"{"id":1,"info_hash":"0123456789abcdef0123456789abcdef01234567","magnet":null,"name":"x","download_dir":"/tmp/d","paused":false,"added_at":1,"priorities":[],"max_upload_rate":5,"max_download_rate":null,"queue_position":0}"#;
        let oldest: &[u8] = br#"{"id":2,"info_hash":"0123456789ABCDEF0123456789abcdef01234567","name":"x","download_dir":"/tmp/d","paused":false,"added_at":1,"max_upload_rate":5}"#;
        let hash = InfoHash::from_hex("0123456789abcdef0123456789abcdef01234567").unwrap();
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .write(|tx| {
                    let mut torrents = tx.open_table(TORRENTS)?;
                    torrents.insert(1, written_before)?;
                    torrents.insert(2, oldest)?;
                    tx.open_table(METAINFO)?
                        .insert(&hash.0, b"d4:infoe".as_slice())?;
                    Ok(())
                })
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let metainfo = Some(b"d4:infoe".to_vec());
        assert_eq!(
            store.load().unwrap().torrents,
            vec![(record(1), metainfo.clone()), (record(2), metainfo)]
        );
        assert_eq!(serde_json::to_vec(&record(1)).unwrap(), written_before);
    }
}
