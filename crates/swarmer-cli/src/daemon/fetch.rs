//! Fetching a .torrent file by http(s) URL for `torrent-add` (Transmission RPC) and
//! `torrents/add` (qBittorrent API): bounded in size ([`MAX_METAINFO_BYTES`], refused as soon as the
//! body grows past it), in time ([`FETCH_TIMEOUT`] for the whole exchange, so a trickling server
//! ends too) and in redirects, and only for `http` and `https` URLs.

use std::time::Duration;

use swarmer_proto::metainfo::MAX_METAINFO_BYTES;

/// The bound on one fetch: connecting, redirects and the whole body.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Most redirects followed.
const MAX_REDIRECTS: usize = 5;

/// Whether `text` is an http(s) URL this module fetches.
pub(crate) fn is_http_url(text: &str) -> bool {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The body at `url`: at most [`MAX_METAINFO_BYTES`] bytes, within [`FETCH_TIMEOUT`].
///
/// Errors: not an http(s) URL, the server cannot be reached or answers other than 2xx, the body is
/// too large, or the time is up (the message says which).
pub(crate) async fn fetch_torrent(url: &str) -> Result<Vec<u8>, String> {
    if !is_http_url(url) {
        return Err("only http and https URLs are fetched".into());
    }
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .build()
        .map_err(|e| format!("cannot fetch: {e}"))?;
    let fetch = async {
        let mut response = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("cannot fetch {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("cannot fetch {url}: {e}"))?
        {
            if body.len() + chunk.len() > MAX_METAINFO_BYTES {
                return Err(format!(
                    "{url} is larger than a .torrent may be ({MAX_METAINFO_BYTES} bytes)"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .unwrap_or_else(|_| Err(format!("fetching {url} took over {FETCH_TIMEOUT:?}")))
}
