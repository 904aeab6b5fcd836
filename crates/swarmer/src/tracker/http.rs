//! HTTP(S) announces (BEP 3) and scrapes (BEP 48): one GET with the percent-encoded query, the body
//! read in chunks up to [`MAX_HTTP_BODY`] bytes within the configured deadline, then parsed by
//! `swarmer_proto::tracker::http` or `::scrape`.

use swarmer_proto::InfoHash;
use swarmer_proto::tracker::http::{announce_url, parse_announce_response};
use swarmer_proto::tracker::scrape::{ScrapeCounts, http_scrape_url, parse_http_scrape};
use swarmer_proto::tracker::{AnnounceRequest, AnnounceResponse, TrackerError};

use super::{AnnounceError, MAX_HTTP_BODY, TrackerClient};

pub(super) async fn announce(
    client: &TrackerClient,
    announce: &str,
    req: &AnnounceRequest,
    family: Option<bool>,
) -> Result<AnnounceResponse, AnnounceError> {
    let (status, body) = get(client, family, &announce_url(announce, req)).await?;
    match parse_announce_response(&body) {
        // Some trackers send their bencoded refusal with a 4xx status: the reason is more useful.
        Err(TrackerError::Failure(reason)) => Err(TrackerError::Failure(reason).into()),
        _ if !status.is_success() => Err(AnnounceError::HttpStatus(status.as_u16())),
        result => Ok(result?),
    }
}

/// One BEP 48 scrape of the `hashes` (at most
/// [`MAX_HTTP_SCRAPE`](swarmer_proto::tracker::scrape::MAX_HTTP_SCRAPE) of them) at the scrape URL
/// `scrape`: the counts of those the tracker answered for, in `hashes` order.
pub(super) async fn scrape(
    client: &TrackerClient,
    scrape: &str,
    hashes: &[InfoHash],
) -> Result<Vec<(InfoHash, ScrapeCounts)>, AnnounceError> {
    let (status, body) = get(client, None, &http_scrape_url(scrape, hashes)).await?;
    match parse_http_scrape(&body, hashes) {
        Err(TrackerError::Failure(reason)) => Err(TrackerError::Failure(reason).into()),
        _ if !status.is_success() => Err(AnnounceError::HttpStatus(status.as_u16())),
        result => Ok(result?),
    }
}

/// One GET of `url` over `family` if set (`Some(true)`: IPv4): the status and the body, at most
/// [`MAX_HTTP_BODY`] bytes of it, all within the client's HTTP timeout.
async fn get(
    client: &TrackerClient,
    family: Option<bool>,
    url: &str,
) -> Result<(reqwest::StatusCode, Vec<u8>), AnnounceError> {
    let timeout = client.config.http_timeout;
    let map_err = |e: reqwest::Error| {
        if e.is_timeout() {
            AnnounceError::Timeout(timeout)
        } else {
            AnnounceError::Http(e.without_url())
        }
    };
    // reqwest's own timeout covers connect, redirects and the body; this outer one is a backstop so the
    // bound holds whatever the HTTP stack does (with a little slack to let reqwest report first).
    let exchange = async {
        let mut resp = client
            .http_for(family)
            .get(url)
            .send()
            .await
            .map_err(map_err)?;
        let status = resp.status();
        if resp
            .content_length()
            .is_some_and(|len| len > MAX_HTTP_BODY as u64)
        {
            return Err(AnnounceError::BodyTooLarge {
                limit: MAX_HTTP_BODY,
            });
        }
        // Sized by the declared length when there is one; otherwise grown by doubling, but never past the cap,
        // so the buffer holds at most MAX_HTTP_BODY bytes whatever the server sends.
        let declared = resp.content_length().map_or(0, |len| len as usize);
        let mut body = Vec::with_capacity(declared.clamp(16 * 1024, MAX_HTTP_BODY));
        while let Some(chunk) = resp.chunk().await.map_err(map_err)? {
            let needed = body.len() + chunk.len();
            if needed > MAX_HTTP_BODY {
                return Err(AnnounceError::BodyTooLarge {
                    limit: MAX_HTTP_BODY,
                });
            }
            if needed > body.capacity() {
                let grown = (body.capacity() * 2).clamp(needed, MAX_HTTP_BODY);
                body.reserve_exact(grown - body.len());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    };
    tokio::time::timeout(timeout + timeout / 10, exchange)
        .await
        .map_err(|_| AnnounceError::Timeout(timeout))?
}

#[cfg(test)]
pub(super) mod tests;
