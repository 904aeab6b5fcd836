//! Web seeds, sans-IO: HTTP servers that hold a torrent's whole content (BEP 19 `url-list`,
//! GetRight style: plain files fetched with `Range` requests; BEP 17 `httpseeds`, Hoffman style: a
//! script asked `?info_hash=..&piece=..&ranges=..`). This module plans the requests for a run of
//! the torrent's bytes and judges each reply's head before a byte of its body is used; the engine
//! ([`crate::torrent`]) decides which bytes a web seed fetches and when it is backed off or
//! dropped, and the driver does the HTTP.
//!
//! - [`plan`] turns a byte range of the torrent into [`Segment`]s: one ranged GET per file it
//!   crosses (BEP 19; a URL ending in `/` gets the torrent's name, and for a multi-file torrent its
//!   file path, percent-encoded), one GET per piece (BEP 17), and zeros for BEP 47 padding files,
//!   which no server holds.
//! - [`check_reply`] says whether a reply's status and headers promise exactly the asked bytes:
//!   `206` with a [`ContentRange`] that names the asked range (and the file's length, when the
//!   server tells it), or `200` where the body starts with the asked bytes (a range from the start of
//!   the file, or a BEP 17 reply). The driver then reads at most the asked length.
//! - [`backoff`] is the schedule after failures: exponential, bounded.

use std::fmt::Write as _;
use std::time::Duration;

use crate::metainfo::Info;
use crate::{InfoHash, PieceIndex};

/// The first wait after a failed fetch; each further failure in a row doubles it.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(5);
/// The longest wait between fetches of a failing web seed.
pub const BACKOFF_MAX: Duration = Duration::from_secs(600);
/// The longest wait a server's `Retry-After` (or a BEP 17 `503` body) can ask for; longer is cut.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The longest `Content-Range` value parsed; longer ones are malformed.
pub const MAX_CONTENT_RANGE_LEN: usize = 128;

/// How long to wait before the next fetch from a web seed after `failures` failed fetches in a row
/// (at least 1): [`BACKOFF_FIRST`] doubled per further failure, at most [`BACKOFF_MAX`].
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (BACKOFF_FIRST * (1u32 << doublings)).min(BACKOFF_MAX)
}

/// The two kinds of web seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebSeedKind {
    /// BEP 19 (`url-list`, magnet `ws=`): the URL names the file (single-file torrent) or the
    /// directory holding the torrent's top directory (multi-file), fetched with `Range` requests.
    GetRight,
    /// BEP 17 (`httpseeds`): a script that serves pieces by info hash and piece index.
    Hoffman,
}

/// A web seed: its URL and kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WebSeed {
    /// The URL as the metainfo or magnet link gave it.
    pub url: String,
    /// How it is asked.
    pub kind: WebSeedKind,
}

/// One part of a fetch, in order: the fetch's bytes are the segments' bytes one after another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// One HTTP GET.
    Get(Request),
    /// Bytes of BEP 47 padding files: zeros, made locally, never asked of a server.
    Zeros(u64),
}

/// One HTTP GET of a fetch and what its reply must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The URL, percent-encoded.
    pub url: String,
    /// The byte range to send as `Range: bytes=START-END` (END inclusive), offsets in the file at
    /// the server; `None` for BEP 17, whose range is in the query.
    pub range: Option<(u64, u64)>,
    /// Bytes of the body to use.
    pub length: u64,
    /// The file's length per the torrent (BEP 19): a `Content-Range` total must match it.
    pub file_length: Option<u64>,
}

/// Why a byte range cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The range is empty or goes past the torrent's end.
    #[error("bytes {offset}+{length} are not in the torrent")]
    OutOfRange {
        /// First byte.
        offset: u64,
        /// Bytes.
        length: u64,
    },
}

/// The requests that fetch `length` bytes of the torrent from byte `offset` on from `seed`.
///
/// BEP 19: one ranged GET per file the range crosses (files of length 0 are skipped, padding files
/// become [`Segment::Zeros`]). The URL of a file: for a single-file torrent the seed's URL, with the
/// torrent's `name` appended when it ends in `/`; for a multi-file torrent the seed's URL with a `/`
/// added when missing, then the file's path (the torrent's `name` first), each component
/// percent-encoded.
///
/// BEP 17: one GET per piece the range touches, `URL?info_hash=..&piece=N`, with `&ranges=A-B`
/// (inclusive, within the piece) unless the whole piece is asked; padding is fetched like any byte,
/// as the script maps pieces to files itself.
pub fn plan(
    seed: &WebSeed,
    info: &Info,
    info_hash: &InfoHash,
    offset: u64,
    length: u64,
) -> Result<Vec<Segment>, PlanError> {
    let layout = &info.layout;
    if length == 0
        || offset
            .checked_add(length)
            .is_none_or(|end| end > layout.total_length())
    {
        return Err(PlanError::OutOfRange { offset, length });
    }
    let mut segments: Vec<Segment> = Vec::new();
    match seed.kind {
        WebSeedKind::GetRight => {
            for slice in layout.slices(offset, length) {
                let file = &info.files[slice.file.as_usize()];
                if file.padding {
                    match segments.last_mut() {
                        Some(Segment::Zeros(n)) => *n += slice.length,
                        _ => segments.push(Segment::Zeros(slice.length)),
                    }
                    continue;
                }
                segments.push(Segment::Get(Request {
                    url: file_url(&seed.url, info, &file.path),
                    range: Some((slice.offset, slice.offset + slice.length - 1)),
                    length: slice.length,
                    file_length: Some(file.length),
                }));
            }
        }
        WebSeedKind::Hoffman => {
            let piece_length = u64::from(layout.piece_length());
            let end = offset + length;
            let mut at = offset;
            while at < end {
                let index = (at / piece_length) as u32;
                let piece = layout.piece(index).expect("offset is within the torrent");
                let piece_start = layout.piece_offset(piece);
                let piece_end = piece_start + u64::from(layout.piece_len(piece));
                let stop = end.min(piece_end);
                let (first, last) = (at - piece_start, stop - piece_start - 1);
                let whole = first == 0 && stop == piece_end;
                segments.push(Segment::Get(Request {
                    url: hoffman_url(
                        &seed.url,
                        info_hash,
                        piece,
                        (!whole).then_some((first, last)),
                    ),
                    range: None,
                    length: stop - at,
                    file_length: None,
                }));
                at = stop;
            }
        }
    }
    Ok(segments)
}

/// The BEP 19 URL of the file at `path` (as [`crate::metainfo::FileEntry::path`]: the torrent's
/// name first for a multi-file torrent, just the name for a single-file one).
pub fn file_url(base: &str, info: &Info, path: &[String]) -> String {
    let mut url = base.to_owned();
    if info.multi_file {
        if !url.ends_with('/') {
            url.push('/');
        }
        for (i, component) in path.iter().enumerate() {
            if i > 0 {
                url.push('/');
            }
            percent_encode_into(component.as_bytes(), &mut url);
        }
    } else if url.ends_with('/') {
        percent_encode_into(info.name.as_bytes(), &mut url);
    }
    url
}

/// The BEP 17 URL asking for `piece` (all of it, or the inclusive byte range `range` within it).
pub fn hoffman_url(
    base: &str,
    info_hash: &InfoHash,
    piece: PieceIndex,
    range: Option<(u64, u64)>,
) -> String {
    let mut url = base.to_owned();
    url.push(if base.contains('?') { '&' } else { '?' });
    url.push_str("info_hash=");
    percent_encode_into(&info_hash.0, &mut url);
    let _ = write!(url, "&piece={}", piece.get());
    if let Some((first, last)) = range {
        let _ = write!(url, "&ranges={first}-{last}");
    }
    url
}

/// Appends `bytes` to `out` with every byte other than the unreserved characters of RFC 3986
/// (`A-Z a-z 0-9 - . _ ~`) percent-encoded.
pub fn percent_encode_into(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// A parsed `Content-Range` header (RFC 9110 §14.4) of a byte range reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// First and last byte (inclusive) of the body in the file; `None` for `bytes */LENGTH` (the
    /// range was not satisfiable).
    pub range: Option<(u64, u64)>,
    /// The file's complete length, `None` for `*` (unknown).
    pub complete_length: Option<u64>,
}

/// Why a `Content-Range` value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Content-Range header")]
pub struct ContentRangeError;

impl ContentRange {
    /// Parses `bytes FIRST-LAST/LENGTH`, `bytes FIRST-LAST/*` or `bytes */LENGTH` (white space around
    /// it ignored, the unit in any case). Fails on anything else, on numbers past `u64::MAX`, on
    /// `LAST < FIRST`, on a range past a known length, and on more than
    /// [`MAX_CONTENT_RANGE_LEN`] bytes.
    pub fn parse(value: &[u8]) -> Result<ContentRange, ContentRangeError> {
        if value.len() > MAX_CONTENT_RANGE_LEN {
            return Err(ContentRangeError);
        }
        let value = std::str::from_utf8(value)
            .map_err(|_| ContentRangeError)?
            .trim();
        let rest = value
            .get(..6)
            .filter(|unit| unit.eq_ignore_ascii_case("bytes "))
            .map(|_| value[6..].trim_start())
            .ok_or(ContentRangeError)?;
        let (range, length) = rest.split_once('/').ok_or(ContentRangeError)?;
        let complete_length = match length {
            "*" => None,
            n => Some(parse_number(n)?),
        };
        let range = match range {
            "*" if complete_length.is_some() => None,
            r => {
                let (first, last) = r.split_once('-').ok_or(ContentRangeError)?;
                let (first, last) = (parse_number(first)?, parse_number(last)?);
                if last < first || complete_length.is_some_and(|len| last >= len) {
                    return Err(ContentRangeError);
                }
                Some((first, last))
            }
        };
        Ok(ContentRange {
            range,
            complete_length,
        })
    }
}

/// A decimal number of 1 to 20 digits that fits a `u64` (no sign, no spaces).
fn parse_number(text: &str) -> Result<u64, ContentRangeError> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ContentRangeError);
    }
    text.parse().map_err(|_| ContentRangeError)
}

/// What the head of a reply says, as the driver read it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplyHead<'a> {
    /// The HTTP status after redirects.
    pub status: u16,
    /// The `Content-Range` header's value, if any.
    pub content_range: Option<&'a [u8]>,
    /// The body's declared length (`Content-Length`), if any.
    pub content_length: Option<u64>,
    /// The `Content-Type` header's value, if any.
    pub content_type: Option<&'a [u8]>,
    /// The `Retry-After` header's value, if any.
    pub retry_after: Option<&'a [u8]>,
}

/// Why a reply cannot be used. Every one fails the fetch (the web seed is backed off).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A status other than the ones that carry the asked bytes.
    #[error("HTTP status {0}")]
    Status(u16),
    /// `503` or `429`: the server is busy and asks to come back later (BEP 17 puts the seconds in
    /// the body, HTTP in `Retry-After`).
    #[error("server busy (HTTP {status}), retry after {retry_after:?}")]
    Busy {
        /// The status.
        status: u16,
        /// The wait the server asked for, at most [`MAX_RETRY_AFTER`].
        retry_after: Option<Duration>,
    },
    /// `206` without a `Content-Range`, or a multipart reply to our single range.
    #[error("206 reply without a single Content-Range")]
    NoContentRange,
    /// A `Content-Range` that does not parse.
    #[error("malformed Content-Range")]
    BadContentRange,
    /// A `Content-Range` naming other bytes than the ones asked.
    #[error(
        "Content-Range says bytes {}, asked for bytes {}-{}",
        got.map_or("*".to_owned(), |(a, b)| format!("{a}-{b}")),
        asked.0,
        asked.1
    )]
    WrongRange {
        /// Asked, first and last byte.
        asked: (u64, u64),
        /// Got, or `None` for `*`.
        got: Option<(u64, u64)>,
    },
    /// The server's file has another length than the torrent's file: it is not the same file.
    #[error("the server's file is {got} bytes, the torrent's {expected}")]
    WrongFileLength {
        /// The torrent's file length.
        expected: u64,
        /// The server's.
        got: u64,
    },
    /// A `Content-Length` that cannot hold the asked bytes, or that disagrees with the range.
    #[error("Content-Length {got}, expected {expected}")]
    WrongContentLength {
        /// What the body must be.
        expected: u64,
        /// What the server declared.
        got: u64,
    },
    /// `200` (the whole file) to a range that does not start at the file's first byte: the server
    /// ignores `Range`, and the bytes asked would come only after a body we do not want.
    #[error("the server ignores Range (200 for bytes {0}-)")]
    IgnoresRange(u64),
}

/// Whether a reply whose head is `head` carries the bytes `request` asks for, first byte first.
/// On `Ok`, the driver reads `request.length` bytes of the body and no more: a body that ends
/// sooner is truncated; one that goes on is cut (for `200` to a range from byte 0, the rest of the
/// file follows, which is expected).
pub fn check_reply(request: &Request, head: &ReplyHead<'_>) -> Result<(), ReplyError> {
    match head.status {
        206 => {
            let Some((first, last)) = request.range else {
                // BEP 17 asks without `Range`; a script answering 206 is not one we know.
                return Err(ReplyError::Status(206));
            };
            if head
                .content_type
                .is_some_and(|t| t.len() >= 9 && t[..9].eq_ignore_ascii_case(b"multipart"))
            {
                return Err(ReplyError::NoContentRange);
            }
            let value = head.content_range.ok_or(ReplyError::NoContentRange)?;
            let got = ContentRange::parse(value).map_err(|_| ReplyError::BadContentRange)?;
            if got.range != Some((first, last)) {
                return Err(ReplyError::WrongRange {
                    asked: (first, last),
                    got: got.range,
                });
            }
            if let (Some(expected), Some(got)) = (request.file_length, got.complete_length) {
                if expected != got {
                    return Err(ReplyError::WrongFileLength { expected, got });
                }
            }
            if let Some(got) = head.content_length {
                if got != request.length {
                    return Err(ReplyError::WrongContentLength {
                        expected: request.length,
                        got,
                    });
                }
            }
            Ok(())
        }
        200 => {
            match (request.range, request.file_length) {
                (Some((first, _)), _) if first != 0 => return Err(ReplyError::IgnoresRange(first)),
                // The whole file: its length must be the torrent's file's.
                (Some(_), Some(expected)) => {
                    if let Some(got) = head.content_length.filter(|got| *got != expected) {
                        return Err(ReplyError::WrongFileLength { expected, got });
                    }
                }
                // BEP 17: exactly the asked bytes.
                _ => {
                    if let Some(got) = head.content_length.filter(|got| *got != request.length) {
                        return Err(ReplyError::WrongContentLength {
                            expected: request.length,
                            got,
                        });
                    }
                }
            }
            Ok(())
        }
        429 | 503 => Err(ReplyError::Busy {
            status: head.status,
            retry_after: head.retry_after.and_then(parse_retry_after),
        }),
        status => Err(ReplyError::Status(status)),
    }
}

/// Seconds to wait from a `Retry-After` header or a BEP 17 `503` body: a decimal number (white
/// space around it ignored, at most 10 digits), capped at [`MAX_RETRY_AFTER`]. HTTP dates and
/// anything else give `None`.
pub fn parse_retry_after(value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = text.parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests;
