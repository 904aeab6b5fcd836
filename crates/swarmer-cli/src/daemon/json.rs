//! The JSON response of the daemon's big replies (listings), cheaper to build than axum's `Json`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::error_response;

/// A JSON response for large bodies (a listing of 10,000 torrents is megabytes), serialized into
/// one `Vec` that starts at `capacity_hint` bytes (the second field). axum's `Json` writes through
/// an `io::Write` adapter around a `BytesMut` that starts at 128 bytes: one bounds-checked
/// `put_slice` per token and a dozen regrowths, a third of the listing's CPU in perf. Listing
/// 10,000 torrents through `/api/v1/torrents`: 29.5 ms -> 20.9 ms (medians of 80).
pub(crate) struct BigJson<T>(pub(crate) T, pub(crate) usize);

impl<T: serde::Serialize> IntoResponse for BigJson<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(self.1);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(e) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode the reply: {e}"),
            ),
        }
    }
}
