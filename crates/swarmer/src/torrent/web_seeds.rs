//! A running torrent's web seeds (BEP 19 `url-list`, BEP 17 `httpseeds`, magnet `ws=`): the HTTP
//! side of the engine's [`Action::WebFetch`](swarmer_proto::torrent::Action::WebFetch). Each fetch
//! is planned by `swarmer_proto::webseed::plan` (one ranged GET per file it crosses, one GET per
//! piece for BEP 17, zeros for padding) and run by one task that checks each reply's head with
//! `check_reply` before using a byte, reads at most the asked bytes, and hands them to the owner
//! over a bounded queue in order; the owner feeds them to the engine, which judges them as it
//! judges a peer's blocks.
//!
//! Every wait is bounded: connecting (`SessionConfig::connect_timeout`, 10 s), each reply's head
//! and each read of its body (`SessionConfig::web_seed_timeout`, 20 s: a stalled server), a whole
//! fetch 60 s plus 1 s per 16 KiB, at most [`MAX_REDIRECTS`] redirects
//! (a redirect loop is an error), a `503` body 64 bytes. A failed fetch is logged once with the
//! seed's URL and what went wrong; the engine backs the seed off.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use swarmer_proto::metainfo::Metainfo;
use swarmer_proto::torrent::{FetchEnd, WebSeedKey, WebSeedStatus};
use swarmer_proto::webseed::{
    self, ReplyError, ReplyHead, Request, Segment, WebSeed, WebSeedKind, check_reply,
};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::rate::LimiterPair;

/// At most this many HTTP redirects are followed per request; a loop fails after them.
const MAX_REDIRECTS: usize = 5;
/// Bound on a whole fetch: this, plus a second per [`FETCH_MIN_RATE`] bytes asked.
const FETCH_BASE_TIMEOUT: Duration = Duration::from_secs(60);
/// The slowest average rate a fetch may have beyond [`FETCH_BASE_TIMEOUT`], bytes/s.
const FETCH_MIN_RATE: u64 = 16 * 1024;
/// How long an idle connection to a web seed is kept for the next fetch.
const POOL_IDLE: Duration = Duration::from_secs(4);
/// Most bytes of a `503` body read (BEP 17 puts the seconds to wait there).
const MAX_BUSY_BODY: usize = 64;
/// Most bytes handed to the owner in one message; larger reads are split (without copying).
const MAX_CHUNK: usize = 64 * 1024;
/// Capacity of the queue of messages from fetch tasks to the owner: with [`MAX_CHUNK`], at most
/// 1 MiB waits there, and a full queue holds the tasks back (and through TCP, the servers).
const QUEUE: usize = 16;

/// A message from a fetch task to the torrent's owner.
pub(crate) enum WebEvent {
    /// The next bytes of the seed's fetch.
    Data(WebSeedKey, Bytes),
    /// The fetch ended; after a failure, what went wrong (logged by the task).
    End(WebSeedKey, FetchEnd, Option<String>),
}

/// One web seed as the torrent shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSeedDetails {
    /// The URL, as the metainfo or magnet link gave it.
    pub url: String,
    /// BEP 19 (GetRight) or BEP 17 (Hoffman).
    pub kind: WebSeedKind,
    /// How it stands in the engine; `None` once it was dropped for sending bad data.
    pub status: Option<WebSeedStatus>,
    /// What went wrong last (the last failed fetch, or why it was dropped), if anything.
    pub last_error: Option<String>,
}

struct Entry {
    seed: WebSeed,
    key: Option<WebSeedKey>,
    fetch: Option<AbortHandle>,
    last_error: Option<String>,
}

/// The torrent's web seeds and their fetch tasks.
pub(crate) struct WebSeeds {
    metainfo: Arc<Metainfo>,
    limits: LimiterPair,
    stall: Duration,
    entries: Vec<Entry>,
    by_key: HashMap<WebSeedKey, usize>,
    /// Made only for a torrent with web seeds (and `entries` is empty without it): a tokio
    /// channel allocates its first block of slots (about 2 KiB here) up front, and a daemon holds
    /// thousands of torrents without any web seed.
    fetcher: Option<Fetcher>,
}

/// The HTTP client fetches go out on, and the queue of the fetch tasks' messages to the torrent
/// (at most [`QUEUE`] wait).
struct Fetcher {
    client: reqwest::Client,
    tx: mpsc::Sender<WebEvent>,
    rx: mpsc::Receiver<WebEvent>,
}

/// The web seeds of `metainfo`: its `url-list` (BEP 19) and `httpseeds` (BEP 17).
pub(crate) fn seeds_of(metainfo: &Metainfo) -> Vec<WebSeed> {
    let get_right = metainfo.url_list.iter().map(|url| WebSeed {
        url: url.clone(),
        kind: WebSeedKind::GetRight,
    });
    let hoffman = metainfo.http_seeds.iter().map(|url| WebSeed {
        url: url.clone(),
        kind: WebSeedKind::Hoffman,
    });
    get_right.chain(hoffman).collect()
}

/// The web seeds of `metainfo` as shown before they are used (while the data is checked).
pub(crate) fn listed(metainfo: &Metainfo) -> Vec<WebSeedDetails> {
    seeds_of(metainfo)
        .into_iter()
        .map(|seed| WebSeedDetails {
            url: seed.url,
            kind: seed.kind,
            status: None,
            last_error: None,
        })
        .collect()
}

impl WebSeeds {
    /// The web seeds of `metainfo`, none of them added to the engine yet. HTTP goes out from
    /// `bind` when set, as the tracker client's does; `timeouts` bound connecting and each wait for
    /// a reply or more of its body. A client that cannot be built (no TLS backend) leaves the
    /// torrent without web seeds, logged.
    pub(crate) fn new(
        metainfo: Arc<Metainfo>,
        bind: Option<IpAddr>,
        timeouts: (Duration, Duration),
        limits: LimiterPair,
    ) -> Self {
        let (connect, stall) = timeouts;
        let seeds = seeds_of(&metainfo);
        let client = if seeds.is_empty() {
            None
        } else {
            reqwest::Client::builder()
                .use_rustls_tls()
                .local_address(bind)
                .connect_timeout(connect)
                // Fetches follow each other at once; a connection idle longer may have been closed
                // by the server (Apache keeps them 5 s), and a fetch sent on it would fail.
                .pool_idle_timeout(POOL_IDLE)
                .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
                .no_proxy()
                .user_agent(concat!("swarmer/", env!("CARGO_PKG_VERSION")))
                .build()
                .inspect_err(|e| tracing::warn!("web seeds unused: no HTTP client: {e}"))
                .ok()
        };
        let fetcher = client.map(|client| {
            let (tx, rx) = mpsc::channel(QUEUE);
            Fetcher { client, tx, rx }
        });
        let entries = seeds
            .into_iter()
            .filter(|_| fetcher.is_some())
            .map(|seed| Entry {
                seed,
                key: None,
                fetch: None,
                last_error: None,
            })
            .collect();
        WebSeeds {
            metainfo,
            entries,
            limits,
            stall,
            by_key: HashMap::new(),
            fetcher,
        }
    }

    /// Adds every web seed not yet in the engine (and not dropped) with `add`.
    pub(crate) fn start(&mut self, mut add: impl FnMut() -> WebSeedKey) {
        for (i, entry) in self.entries.iter_mut().enumerate() {
            if entry.key.is_none() && entry.last_error.is_none() {
                let key = add();
                entry.key = Some(key);
                self.by_key.insert(key, i);
                tracing::info!(url = %entry.seed.url, "using web seed");
            }
        }
    }

    /// Stops every fetch and forgets the seeds' keys (the engine is told by the caller).
    pub(crate) fn stop_all(&mut self) -> Vec<WebSeedKey> {
        let keys: Vec<WebSeedKey> = self.by_key.keys().copied().collect();
        for entry in &mut self.entries {
            if let Some(fetch) = entry.fetch.take() {
                fetch.abort();
            }
            entry.key = None;
        }
        self.by_key.clear();
        keys
    }

    /// The next message of a fetch task. Never resolves while there are none (the queue's sender
    /// is kept here), nor ever for a torrent without web seeds.
    pub(crate) async fn recv(&mut self) -> WebEvent {
        match &mut self.fetcher {
            Some(fetcher) => fetcher.rx.recv().await.expect("a sender is kept"),
            None => std::future::pending().await,
        }
    }

    /// Records the end of `key`'s fetch and logs the failure the task reported, if any, with
    /// the wait before the next fetch (`retry_in`, as the engine decided it).
    pub(crate) fn fetch_ended(
        &mut self,
        key: WebSeedKey,
        error: Option<String>,
        retry_in: Option<Duration>,
    ) {
        let Some(&i) = self.by_key.get(&key) else {
            return;
        };
        let entry = &mut self.entries[i];
        entry.fetch = None;
        if let Some(error) = error {
            let retry = retry_in.map_or(0, |d| d.as_secs());
            tracing::info!(
                web_seed = %entry.seed.url,
                "web seed fetch failed: {error}; next try in {retry} s"
            );
            entry.last_error = Some(error);
        }
    }

    /// Starts fetching `length` bytes from byte `offset` of the torrent from seed `key`.
    pub(crate) fn fetch(&mut self, key: WebSeedKey, offset: u64, length: u64) {
        let Some(&i) = self.by_key.get(&key) else {
            return;
        };
        let Some(fetcher) = &self.fetcher else {
            return;
        };
        let entry = &mut self.entries[i];
        let info = &self.metainfo.info;
        let segments =
            match webseed::plan(&entry.seed, info, &self.metainfo.info_hash, offset, length) {
                Ok(segments) => segments,
                Err(e) => {
                    // The engine asks only for bytes of the torrent; never happens.
                    tracing::error!(url = %entry.seed.url, "cannot plan a web seed fetch: {e}");
                    let end = FetchEnd::Failed { retry_after: None };
                    let _ = fetcher
                        .tx
                        .try_send(WebEvent::End(key, end, Some(e.to_string())));
                    return;
                }
            };
        let job = Fetch {
            client: fetcher.client.clone(),
            key,
            tx: fetcher.tx.clone(),
            limits: self.limits.clone(),
            stall: self.stall,
        };
        let deadline = FETCH_BASE_TIMEOUT + Duration::from_secs(length / FETCH_MIN_RATE);
        let handle = tokio::spawn(async move { job.run(segments, deadline).await });
        entry.fetch = Some(handle.abort_handle());
    }

    /// The engine dropped seed `key` for `reason`: its fetch stops and it is never added again.
    pub(crate) fn drop_seed(&mut self, key: WebSeedKey, reason: String) {
        let Some(i) = self.by_key.remove(&key) else {
            return;
        };
        let entry = &mut self.entries[i];
        if let Some(fetch) = entry.fetch.take() {
            fetch.abort();
        }
        entry.key = None;
        tracing::warn!(url = %entry.seed.url, "dropping web seed: {reason}");
        entry.last_error = Some(format!("dropped: {reason}"));
    }

    /// The URLs of the seeds `keys`, for log lines.
    pub(crate) fn urls(&self, keys: &[WebSeedKey]) -> Vec<String> {
        keys.iter()
            .filter_map(|k| self.entries.iter().find(|e| e.key == Some(*k)))
            .map(|e| e.seed.url.clone())
            .collect()
    }

    /// Every web seed of the torrent with its engine state from `status`.
    pub(crate) fn details(
        &self,
        status: impl Fn(WebSeedKey) -> Option<WebSeedStatus>,
    ) -> Vec<WebSeedDetails> {
        self.entries
            .iter()
            .map(|entry| WebSeedDetails {
                url: entry.seed.url.clone(),
                kind: entry.seed.kind,
                status: entry.key.and_then(&status),
                last_error: entry.last_error.clone(),
            })
            .collect()
    }
}

/// One fetch's task (its failure is logged by the owner, with the back-off).
struct Fetch {
    client: reqwest::Client,
    key: WebSeedKey,
    tx: mpsc::Sender<WebEvent>,
    limits: LimiterPair,
    stall: Duration,
}

/// Why a fetch failed, for the log line.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{url}: {source}")]
    Reply {
        url: String,
        #[source]
        source: ReplyError,
    },
    #[error("{url}: {error}")]
    Http { url: String, error: String },
    #[error("{url}: nothing received for {after:?}")]
    Stalled { url: String, after: Duration },
    #[error("{url}: body ended after {got} of {expected} bytes")]
    Truncated {
        url: String,
        got: u64,
        expected: u64,
    },
    #[error("{url}: body longer than the {expected} bytes asked; read those and closed")]
    TooLong { url: String, expected: u64 },
    #[error("fetch took longer than {0:?}")]
    Deadline(Duration),
    /// The owner is gone.
    #[error("torrent stopped")]
    Closed,
}

impl Fetch {
    async fn run(self, segments: Vec<Segment>, deadline: Duration) {
        let result = tokio::time::timeout(deadline, self.segments(&segments))
            .await
            .unwrap_or(Err(FetchError::Deadline(deadline)));
        let (end, error) = match result {
            Ok(()) => (FetchEnd::Done, None),
            Err(FetchError::Closed) => return,
            Err(e) => {
                let retry_after = match &e {
                    FetchError::Reply {
                        source: ReplyError::Busy { retry_after, .. },
                        ..
                    } => *retry_after,
                    _ => None,
                };
                (FetchEnd::Failed { retry_after }, Some(e.to_string()))
            }
        };
        let _ = self.tx.send(WebEvent::End(self.key, end, error)).await;
    }

    async fn segments(&self, segments: &[Segment]) -> Result<(), FetchError> {
        for segment in segments {
            match segment {
                Segment::Zeros(n) => {
                    let mut left = *n;
                    while left > 0 {
                        let take = left.min(MAX_CHUNK as u64) as usize;
                        self.send(Bytes::from(vec![0; take])).await?;
                        left -= take as u64;
                    }
                }
                Segment::Get(request) => self.get(request).await?,
            }
        }
        Ok(())
    }

    async fn send(&self, bytes: Bytes) -> Result<(), FetchError> {
        if self.limits.is_limited() {
            self.limits.acquire(bytes.len()).await;
        }
        self.tx
            .send(WebEvent::Data(self.key, bytes))
            .await
            .map_err(|_| FetchError::Closed)
    }

    async fn get(&self, request: &Request) -> Result<(), FetchError> {
        let url = || request.url.clone();
        let http = |e: reqwest::Error| FetchError::Http {
            url: url(),
            error: if e.is_redirect() {
                format!("more than {MAX_REDIRECTS} redirects")
            } else {
                error_chain(&e.without_url())
            },
        };
        let mut builder = self.client.get(&request.url);
        if let Some((first, last)) = request.range {
            builder = builder.header(reqwest::header::RANGE, format!("bytes={first}-{last}"));
        }
        let mut reply = tokio::time::timeout(self.stall, builder.send())
            .await
            .map_err(|_| FetchError::Stalled {
                url: url(),
                after: self.stall,
            })?
            .map_err(http)?;
        let headers = reply.headers();
        let header = |name| {
            headers
                .get(name)
                .map(|v: &reqwest::header::HeaderValue| v.as_bytes())
        };
        let head = ReplyHead {
            status: reply.status().as_u16(),
            content_range: header(reqwest::header::CONTENT_RANGE),
            content_length: reply.content_length(),
            content_type: header(reqwest::header::CONTENT_TYPE),
            retry_after: header(reqwest::header::RETRY_AFTER),
        };
        if let Err(e) = check_reply(request, &head) {
            let e = match e {
                // BEP 17: a 503's body is the seconds to wait.
                ReplyError::Busy {
                    status,
                    retry_after: None,
                } => ReplyError::Busy {
                    status,
                    retry_after: busy_body(&mut reply, self.stall).await,
                },
                e => e,
            };
            return Err(FetchError::Reply {
                url: url(),
                source: e,
            });
        }
        let whole_file = head.status == 200 && request.range.is_some();
        let mut left = request.length;
        while left > 0 {
            let chunk = tokio::time::timeout(self.stall, reply.chunk())
                .await
                .map_err(|_| FetchError::Stalled {
                    url: url(),
                    after: self.stall,
                })?
                .map_err(http)?;
            let Some(mut chunk) = chunk else {
                return Err(FetchError::Truncated {
                    url: url(),
                    got: request.length - left,
                    expected: request.length,
                });
            };
            if chunk.len() as u64 > left {
                chunk.truncate(left as usize);
                if !whole_file {
                    // Use what was asked, then refuse the rest: the connection closes with the reply.
                    self.send_chunks(chunk).await?;
                    return Err(FetchError::TooLong {
                        url: url(),
                        expected: request.length,
                    });
                }
            }
            left -= chunk.len() as u64;
            self.send_chunks(chunk).await?;
        }
        Ok(())
    }

    /// Sends `chunk` in pieces of at most [`MAX_CHUNK`] bytes.
    async fn send_chunks(&self, mut chunk: Bytes) -> Result<(), FetchError> {
        while !chunk.is_empty() {
            let piece = chunk.split_to(chunk.len().min(MAX_CHUNK));
            self.send(piece).await?;
        }
        Ok(())
    }
}

/// The seconds to wait in a `503` body (BEP 17), reading at most [`MAX_BUSY_BODY`] bytes of it
/// within `stall`.
async fn busy_body(reply: &mut reqwest::Response, stall: Duration) -> Option<Duration> {
    let mut body = Vec::new();
    let read = async {
        while let Ok(Some(chunk)) = reply.chunk().await {
            let take = chunk.len().min(MAX_BUSY_BODY + 1 - body.len());
            body.extend_from_slice(&chunk[..take]);
            if body.len() > MAX_BUSY_BODY {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(stall, read).await;
    (body.len() <= MAX_BUSY_BODY)
        .then(|| webseed::parse_retry_after(&body))
        .flatten()
}

/// An error with its sources, `: `-separated (reqwest's own message is often just "error sending
/// request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
