//! The daemon's HTTP errors: [`ApiError`] (a status and a message, sent as `{"error": "..."}`) and
//! the one mapping of the manager's errors to HTTP statuses ([`status_of`]). The JSON API and the
//! guard answer their errors through it; the Transmission RPC reports errors in its own envelope.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::manager::ManagerError;

/// An API error: a status and a message, sent as `{"error": "..."}` (with `"id"` for a duplicate).
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    /// The existing torrent's id, for a duplicate add.
    id: Option<u64>,
}

impl ApiError {
    /// An error with this status and message.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            id: None,
        }
    }

    /// A 400: the request is malformed.
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

/// The HTTP status of each manager error: the only such mapping in the daemon.
pub(crate) fn status_of(error: &ManagerError) -> StatusCode {
    match error {
        ManagerError::NotFound(_) => StatusCode::NOT_FOUND,
        ManagerError::Duplicate { .. } => StatusCode::CONFLICT,
        ManagerError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ManagerError::Forbidden(_) => StatusCode::FORBIDDEN,
        ManagerError::Conflict(_) => StatusCode::CONFLICT,
        ManagerError::Full => StatusCode::INSUFFICIENT_STORAGE,
        ManagerError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        ManagerError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl From<ManagerError> for ApiError {
    fn from(error: ManagerError) -> ApiError {
        let id = match &error {
            ManagerError::Duplicate { id, .. } => Some(*id),
            _ => None,
        };
        ApiError {
            status: status_of(&error),
            message: error.to_string(),
            id,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(id) = self.id {
            body["id"] = id.into();
        }
        (self.status, Json(body)).into_response()
    }
}

/// A JSON error response, for code that answers outside a handler (the guard, the fallback).
pub(crate) fn error_response(status: StatusCode, message: String) -> Response {
    ApiError::new(status, message).into_response()
}
