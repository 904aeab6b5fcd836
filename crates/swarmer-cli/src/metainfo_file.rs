//! Reading a .torrent file with a size bound, from disk or from an http(s) URL: one reader for
//! `swarmer info`, `verify`, `download`, `seed` and `add`, and for the daemon's watch folder and
//! Transmission `torrent-add` of a local path, so a huge file (or `/dev/zero`, or a server that
//! never stops sending) is never loaded whole by any of them.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

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

/// How long fetching a .torrent file from a URL may take in all, the body included.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `arg` names a .torrent file by URL (`http://` or `https://`) rather than by path.
pub(crate) fn is_torrent_url(arg: &str) -> bool {
    let lower = arg.get(..8).unwrap_or(arg).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Fetches a .torrent file from an http(s) URL (redirects followed, at most 5) and parses it: at
/// most [`MAX_METAINFO_BYTES`] are read, and the whole exchange must end within
/// [`FETCH_TIMEOUT`].
///
/// Errors: the server cannot be reached, answers with an error status, sends too much or too
/// slowly, or the body is not a valid torrent (the message names the URL).
pub(crate) async fn fetch_metainfo(url: &str) -> anyhow::Result<Metainfo> {
    let fetch = async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()?;
        let mut response = client.get(url).send().await?.error_for_status()?;
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if bytes.len() + chunk.len() > MAX_METAINFO_BYTES {
                anyhow::bail!("the file is over {} bytes", MAX_METAINFO_BYTES);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    };
    let bytes = tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .unwrap_or_else(|_| {
            let secs = FETCH_TIMEOUT.as_secs();
            Err(anyhow::anyhow!("timed out after {secs} s"))
        })
        .with_context(|| format!("cannot fetch {url}"))?;
    Metainfo::from_bytes(&bytes).with_context(|| format!("{url} is not a valid torrent"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths() {
        assert!(is_torrent_url("http://example.org/a.torrent"));
        assert!(is_torrent_url("HTTPS://example.org/a.torrent"));
        assert!(!is_torrent_url("http.torrent"));
        assert!(!is_torrent_url("./https://x"));
        assert!(!is_torrent_url("magnet:?xt=urn:btih:00"));
        assert!(!is_torrent_url(""));
    }
}
