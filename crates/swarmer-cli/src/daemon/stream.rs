//! Streaming a torrent's file over HTTP while it downloads (`GET /api/v1/torrents/{id}/files/
//! {index}/stream`) and an `.m3u` playlist of a torrent's audio and video files for players.
//!
//! A stream is a `swarmer::FileReader` sent as the response body: its position and read-ahead
//! become piece deadlines, and it sends only verified bytes, waiting for each piece as long as
//! the client keeps the connection. HTTP Range (RFC 9110 14): one range gets 206 with
//! `Content-Range`; none, another unit or several ranges get the whole file (a server may ignore
//! Range); a malformed or unsatisfiable one gets 416 with `Content-Range: bytes */LENGTH`. The
//! header's grammar and its checks against the length are `http-range-header`'s.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_range_header::{StartPosition, parse_range_header};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::error::ApiError;
use super::media;
use super::model::{File, Priority};
use super::state::AppState;

/// Bytes of the body read from the file at a time.
const BODY_CHUNK: usize = 64 * 1024;

/// What to send for a request's Range header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    /// The whole file, 200.
    Whole,
    /// Bytes `first..=last`, 206.
    Part(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// The plan for the Range header `range` (absent: `None`) on a file of `len` bytes.
pub(super) fn plan(range: Option<&str>, len: u64) -> Plan {
    let Some(value) = range else {
        return Plan::Whole;
    };
    // Another range unit is ignored (RFC 9110 14.2).
    if !value.trim_start().starts_with("bytes=") {
        return Plan::Whole;
    }
    let Ok(mut parsed) = parse_range_header(value.trim()) else {
        return Plan::Unsatisfiable;
    };
    if len == 0 {
        return Plan::Unsatisfiable;
    }
    // A suffix longer than the file selects all of it (RFC 9110 14.1.2).
    for r in &mut parsed.ranges {
        if matches!(r.start, StartPosition::FromLast(n) if n > len) {
            r.start = StartPosition::Index(0);
        }
    }
    match parsed.validate(len).as_deref() {
        Ok([one]) if *one.start() < len && one.start() <= one.end() => {
            Plan::Part(*one.start(), *one.end())
        }
        Ok([_]) | Err(_) => Plan::Unsatisfiable,
        // Several ranges: the whole file rather than a multipart body.
        Ok(_) => Plan::Whole,
    }
}

/// Path parameters: a torrent id and a file index.
#[derive(Deserialize)]
pub(super) struct FilePath {
    id: u64,
    index: usize,
}

/// Path parameter: a torrent id.
#[derive(Deserialize)]
pub(super) struct TorrentPath {
    id: u64,
}

/// The file `index` of torrent `id`, from its detail view.
async fn file_of(s: &AppState, id: u64, index: usize) -> Result<File, ApiError> {
    let detail = s.manager.get(id).await?;
    detail
        .files
        .into_iter()
        .find(|f| f.index as usize == index)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no file {index}")))
}

#[utoipa::path(get, path = "/api/v1/torrents/{id}/files/{index}/stream", tag = "streaming",
    params(("id" = u64, Path, description = "Torrent id"),
        ("index" = usize, Path, description = "File index (`index` in the torrent's `files`)"),
        ("Range" = Option<String>, Header, description = "One byte range (RFC 9110 14.1.2): \
            `bytes=FIRST-LAST`, `bytes=FIRST-` or `bytes=-SUFFIX`")),
    responses(
        (status = 200, description = "The whole file, sent as its pieces are verified (the \
            torrent downloads the bytes under the reader's position and a read-ahead first); \
            `Accept-Ranges: bytes`, `Content-Type` from the file's extension", content_type = "application/octet-stream"),
        (status = 206, description = "The range asked for, with `Content-Range: bytes FIRST-LAST/LENGTH`"),
        (status = 404, description = "No such torrent or file"),
        (status = 409, description = "The torrent is not running, or the file is skipped"),
        (status = 416, description = "A malformed or unsatisfiable range; `Content-Range: bytes */LENGTH`")))]
pub(super) async fn stream_file(
    State(s): State<AppState>,
    path: Result<Path<FilePath>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(FilePath { id, index }) =
        path.map_err(|_| ApiError::bad_request("the torrent id and file index must be numbers"))?;
    let file = file_of(&s, id, index).await?;
    if file.priority == Priority::Skip {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the file is skipped; give it a priority to stream it",
        ));
    }
    let len = file.length;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, first, count) = match plan(range, len) {
        Plan::Whole => (StatusCode::OK, 0, len),
        Plan::Part(first, last) => (StatusCode::PARTIAL_CONTENT, first, last - first + 1),
        Plan::Unsatisfiable => {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the range is malformed or outside the file's {len} bytes"),
            )
            .into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{len}")),
            );
            return Ok(response);
        }
    };
    tracing::debug!(id, index, ?range, "streaming a file");
    let mut reader = s.manager.open_file(id, index).await?;
    reader
        .seek(std::io::SeekFrom::Start(first))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let body = Body::from_stream(ReaderStream::with_capacity(reader.take(count), BODY_CHUNK));
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(&file.mime_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::PARTIAL_CONTENT {
        let last = first + count - 1;
        h.insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {first}-{last}/{len}")),
        );
    }
    Ok(response)
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

#[utoipa::path(get, path = "/api/v1/torrents/{id}/playlist.m3u", tag = "streaming",
    params(("id" = u64, Path, description = "Torrent id")),
    responses(
        (status = 200, description = "An extended M3U playlist with one stream URL per audio or \
            video file that is not skipped, in file order, on the host the request named; with a \
            token, each URL carries it as Basic credentials (`http://swarmer:TOKEN@HOST/...`)",
            content_type = "audio/x-mpegurl"),
        (status = 404, description = "No such torrent")))]
pub(super) async fn playlist(
    State(s): State<AppState>,
    path: Result<Path<TorrentPath>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(TorrentPath { id }) =
        path.map_err(|_| ApiError::bad_request("the torrent id must be a number"))?;
    let detail = s.manager.get(id).await?;
    // The guard has checked the Host: an address, localhost or an allowed name.
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let auth = s.guard.token.as_ref().map_or_else(String::new, |token| {
        let token: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
        format!("swarmer:{token}@")
    });
    let mut body = String::from("#EXTM3U\n");
    for f in &detail.files {
        let path: Vec<String> = f.path.split('/').map(str::to_owned).collect();
        if f.priority == Priority::Skip || !media::is_media(&path) {
            continue;
        }
        // One line each: a newline in a file name would start another entry.
        let title = f.path.replace(['\n', '\r'], " ");
        body.push_str(&format!(
            "#EXTINF:-1,{title}\nhttp://{auth}{host}{}\n",
            f.stream_url
        ));
    }
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("audio/x-mpegurl; charset=utf-8"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_become_plans() {
        let check = |range: Option<&str>, len: u64, want: Plan| {
            assert_eq!(plan(range, len), want, "{range:?} of {len} bytes");
        };
        check(None, 1000, Plan::Whole);
        check(Some("bytes=0-99"), 1000, Plan::Part(0, 99));
        check(Some("bytes=0-0"), 1000, Plan::Part(0, 0));
        // Open-ended, and an end past the file's, stop at its last byte.
        check(Some("bytes=900-"), 1000, Plan::Part(900, 999));
        check(Some("bytes=900-5000"), 1000, Plan::Part(900, 999));
        // Suffix ranges: the last N bytes, all of them when N is larger.
        check(Some("bytes=-100"), 1000, Plan::Part(900, 999));
        check(Some("bytes=-1000"), 1000, Plan::Part(0, 999));
        check(Some("bytes=-5000"), 1000, Plan::Part(0, 999));
        // Unsatisfiable: a start at or past the end, a reversed range, a zero suffix, any range
        // of an empty file.
        check(Some("bytes=1000-"), 1000, Plan::Unsatisfiable);
        check(Some("bytes=1000-1010"), 1000, Plan::Unsatisfiable);
        check(Some("bytes=50-10"), 1000, Plan::Unsatisfiable);
        check(Some("bytes=-0"), 1000, Plan::Unsatisfiable);
        check(Some("bytes=0-"), 0, Plan::Unsatisfiable);
        // Malformed.
        check(Some("bytes=abc"), 1000, Plan::Unsatisfiable);
        check(Some("bytes="), 1000, Plan::Unsatisfiable);
        check(Some("bytes=1-2-3"), 1000, Plan::Unsatisfiable);
        // Another unit is ignored; several ranges get the whole file; overlapping ones are
        // refused.
        check(Some("items=0-5"), 1000, Plan::Whole);
        check(Some("bytes=0-9, 20-29"), 1000, Plan::Whole);
        check(Some("bytes=0-15, 10-20"), 1000, Plan::Unsatisfiable);
    }
}
