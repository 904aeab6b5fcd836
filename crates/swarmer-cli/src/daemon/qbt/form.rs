//! The parameters of a qBittorrent API request ([`Params`]): its query string and, for a POST, its
//! `application/x-www-form-urlencoded` or `multipart/form-data` body (every part with a file name
//! is a file), read within the router's body limit. qBittorrent clients send the same names either
//! way, so handlers read one map.

use std::collections::HashMap;

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{StatusCode, header};
use axum::response::Response;

use super::shared::text;

/// Most files one request may carry.
const MAX_FILES: usize = 100;

/// A request's parameters.
#[derive(Debug, Default)]
pub(super) struct Params {
    values: HashMap<String, String>,
    /// The `.torrent` files uploaded (every part with a file name), with their file names.
    pub(super) files: Vec<(String, Vec<u8>)>,
}

impl Params {
    /// The value of `name`, if given.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The value of `name`, or qBittorrent's 400 for a missing parameter.
    pub(super) fn require(&self, name: &str) -> Result<&str, Response> {
        self.get(name).ok_or_else(|| {
            text(
                StatusCode::BAD_REQUEST,
                format!("Missing parameter: {name}"),
            )
        })
    }

    /// `name` as a boolean (`true`/`false`, any case; absent: `None`).
    pub(super) fn flag(&self, name: &str) -> Option<bool> {
        self.get(name)
            .map(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// `name` as an integer.
    ///
    /// Errors: 400 if it is given and is not an integer.
    pub(super) fn int(&self, name: &str) -> Result<Option<i64>, Response> {
        match self.get(name).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| text(StatusCode::BAD_REQUEST, format!("{name} is not an integer"))),
        }
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Params, Response> {
        let mut params = Params::default();
        if let Some(query) = request.uri().query() {
            params
                .values
                .extend(form_urlencoded::parse(query.as_bytes()).into_owned());
        }
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            let mut multipart = Multipart::from_request(request, state)
                .await
                .map_err(|e| text(StatusCode::BAD_REQUEST, e.body_text()))?;
            while let Some(field) = multipart
                .next_field()
                .await
                .map_err(|e| text(StatusCode::BAD_REQUEST, e.body_text()))?
            {
                let name = field.name().unwrap_or("").to_owned();
                let file_name = field.file_name().map(str::to_owned);
                let data = field
                    .bytes()
                    .await
                    .map_err(|e| text(StatusCode::BAD_REQUEST, e.body_text()))?;
                match file_name {
                    // Every part with a file name is a .torrent, whatever the field is called
                    // (qBittorrent reads them so; clients name it `torrents` or after the file).
                    Some(file_name) => {
                        if params.files.len() >= MAX_FILES {
                            return Err(text(StatusCode::BAD_REQUEST, "too many files"));
                        }
                        params.files.push((file_name, data.to_vec()));
                    }
                    _ => {
                        params
                            .values
                            .insert(name, String::from_utf8_lossy(&data).into_owned());
                    }
                }
            }
        } else {
            let body = axum::body::Bytes::from_request(request, state)
                .await
                .map_err(|e| text(StatusCode::PAYLOAD_TOO_LARGE, e.body_text()))?;
            params
                .values
                .extend(form_urlencoded::parse(&body).into_owned());
        }
        Ok(params)
    }
}
