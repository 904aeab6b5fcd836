//! Deleting a removed torrent's downloaded files (`delete_data`), on a blocking thread.

use std::path::Path;

use swarmer_proto::metainfo::Metainfo;

/// Deletes a removed torrent's files under `dir`, then the directories they leave empty (never
/// `dir` itself), and its parts file. Paths come from a validated metainfo (no `..`, no absolute
/// components), so nothing outside `dir` is touched.
pub(super) fn delete_files(dir: &Path, m: &Metainfo) -> Result<(), String> {
    let mut failed = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for f in m.info.files.iter().filter(|f| !f.padding) {
        let path = f.path.iter().fold(dir.to_path_buf(), |p, c| p.join(c));
        let mut parent = path.parent();
        while let Some(p) = parent {
            if p == dir {
                break;
            }
            dirs.insert(p.to_path_buf());
            parent = p.parent();
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => failed.push(format!("{}: {e}", path.display())),
        }
    }
    let parts = dir.join(swarmer::storage::parts_file_name(&m.info_hash));
    let _ = std::fs::remove_file(parts);
    // Deepest first; a directory holding other files stays.
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("could not delete {}", failed.join(", ")))
    }
}
