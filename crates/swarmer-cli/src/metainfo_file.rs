//! Reading a .torrent file from disk with a size bound: one reader for `swarmer info`, `verify`,
//! `download`, `seed` and `add`, and for the daemon's watch folder and Transmission `torrent-add`
//! of a local path, so a huge file (or `/dev/zero`) is never loaded whole by any of them.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use swarmer_proto::metainfo::{MAX_METAINFO_BYTES, Metainfo};

/// Reads and parses a .torrent file. Blocking.
///
/// Errors: the file cannot be read, or is not a valid torrent (the message names the file).
pub(crate) fn read_metainfo(path: &Path) -> anyhow::Result<Metainfo> {
    let bytes = read_torrent_file(path)?;
    Metainfo::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid torrent", path.display()))
}

/// Reads a .torrent file's bytes, at most one byte past [`MAX_METAINFO_BYTES`], so a larger file
/// is refused by the parser's size check without being loaded. Blocking.
///
/// Errors: the file cannot be opened or read (the message names it).
pub(crate) fn read_torrent_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    read_at_most(path, MAX_METAINFO_BYTES as u64)
}

/// Reads at most `limit + 1` bytes of `path`: a result longer than `limit` tells the caller the
/// file is too large without the rest of it being read. Blocking.
///
/// Errors: the file cannot be opened or read (the message names it).
pub(crate) fn read_at_most(path: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bytes)
}
