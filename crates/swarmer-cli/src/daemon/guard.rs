//! Who may talk to the daemon: the Host-header check (against DNS rebinding), authentication (a
//! token, as a bearer token, an HTTP Basic password or a login cookie) and cross-site request
//! forgery protection (a custom header on every state-changing API request, and a same-origin
//! `Origin`). One middleware runs all three before any handler.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::error_response;

/// The cookie `POST /api/v1/login` sets.
pub(crate) const COOKIE: &str = "swarmer_token";
/// The header every non-GET `/api/` request must carry (a browser cannot add it cross-site without
/// a CORS preflight, which the daemon never grants).
pub(crate) const CSRF_HEADER: &str = "x-requested-by";

/// The access rules of one daemon.
#[derive(Debug)]
pub(crate) struct Guard {
    /// The token; `None` only when listening on loopback.
    pub(crate) token: Option<String>,
    /// The address the API listens on.
    pub(crate) listen: SocketAddr,
    /// Extra host names allowed in the Host header (for a daemon behind a name).
    pub(crate) allowed_hosts: Vec<String>,
}

impl Guard {
    /// Whether `host` (the Host header, with or without a port) names this daemon.
    fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host);
        if name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return ip.is_loopback() || ip == self.listen.ip();
        }
        self.allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Whether `candidate` is the token (always, when there is none).
    pub(crate) fn accepts(&self, candidate: &[u8]) -> bool {
        self.token
            .as_ref()
            .is_none_or(|token| constant_time_eq(candidate, token.as_bytes()))
    }

    /// Whether the request carries the token.
    pub(crate) fn authenticated(&self, headers: &HeaderMap) -> bool {
        if self.token.is_none() {
            return true;
        }
        if let Some(auth) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            if let Some(bearer) = auth.strip_prefix("Bearer ") {
                return self.accepts(bearer.trim().as_bytes());
            }
            if let Some(basic) = auth.strip_prefix("Basic ") {
                return decode_basic(basic.trim())
                    .is_some_and(|(_, password)| self.accepts(&password));
            }
        }
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .any(|(k, v)| k == COOKIE && self.accepts(v.as_bytes()))
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host
            .split_once("]:")
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `user:password` from an HTTP Basic credential (RFC 7617); credentials over 4 KiB are refused
/// before decoding.
fn decode_basic(b64: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    use base64::Engine;
    if b64.len() > 4096 {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let colon = bytes.iter().position(|&b| b == b':')?;
    Some((bytes[..colon].to_vec(), bytes[colon + 1..].to_vec()))
}

/// The middleware: Host, then authentication, then CSRF. The web UI's files and the login endpoint
/// need no token (the page must load to ask for it).
pub(crate) async fn check(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !guard.host_allowed(host) {
        return error_response(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "host {host:?} is not this daemon's (set allowed_hosts in the config to use a name)"
            ),
        );
    }
    let path = request.uri().path();
    let public = path == "/" || path.starts_with("/ui/") || path == "/api/v1/login";
    if !public && !guard.authenticated(headers) {
        let mut response = error_response(StatusCode::UNAUTHORIZED, "a token is required".into());
        if path.starts_with("/transmission/") {
            // transmission-remote answers the challenge with its --auth credentials.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"swarmer\""),
            );
        }
        return response;
    }
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe {
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            if !origin_host.eq_ignore_ascii_case(host) {
                return error_response(
                    StatusCode::FORBIDDEN,
                    format!("cross-origin request from {origin} refused"),
                );
            }
        }
        let has_csrf_header = headers
            .get(CSRF_HEADER)
            .is_some_and(|v| !v.as_bytes().is_empty());
        if path.starts_with("/api/") && !has_csrf_header {
            return error_response(
                StatusCode::FORBIDDEN,
                "state-changing API requests need the header X-Requested-By".into(),
            );
        }
    }
    next.run(request).await.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(token: Option<&str>) -> Guard {
        Guard {
            token: token.map(str::to_string),
            listen: "192.168.1.5:9091".parse().unwrap(),
            allowed_hosts: vec!["nas.lan".into()],
        }
    }

    #[test]
    fn hosts_are_loopback_the_listen_address_or_configured_names() {
        let g = guard(None);
        for ok in [
            "localhost:9091",
            "127.0.0.1:9091",
            "127.0.0.20",
            "[::1]:9091",
            "192.168.1.5:9091",
            "NAS.lan:9091",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:9091",
            "",
            "192.168.1.6:9091",
            "localhost.evil.example",
        ] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn token_as_bearer_basic_password_or_cookie() {
        let g = guard(Some("s3cret"));
        let with = |name: header::HeaderName, value: &str| {
            let mut h = HeaderMap::new();
            h.insert(name, value.parse().unwrap());
            g.authenticated(&h)
        };
        assert!(with(header::AUTHORIZATION, "Bearer s3cret"));
        assert!(!with(header::AUTHORIZATION, "Bearer s3cre"));
        // "any:s3cret"
        assert!(with(header::AUTHORIZATION, "Basic YW55OnMzY3JldA=="));
        // "any:wrong"
        assert!(!with(header::AUTHORIZATION, "Basic YW55Ondyb25n"));
        assert!(with(header::COOKIE, "a=b; swarmer_token=s3cret"));
        assert!(!with(header::COOKIE, "swarmer_token=nope"));
        assert!(!g.authenticated(&HeaderMap::new()));
        assert!(guard(None).authenticated(&HeaderMap::new()));
    }
}
