//! Who may talk to the daemon: the Host-header check (against DNS rebinding), authentication (a
//! token, as a bearer token, an HTTP Basic password or a login cookie) and cross-site request
//! forgery protection (a custom header on every state-changing API request, and a same-origin
//! `Origin`). One middleware runs all three before any handler, and counts wrong credentials per
//! client address (`throttle`): an address that sent too many is refused for a while.
//!
//! The qBittorrent API (`/api/v2/`) passes the Host check here and does its own login (the `SID`
//! cookie) and cross-site checks (by Origin and Referer, as qBittorrent does), since its clients
//! send neither a token nor `X-Requested-By`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::error_response;
use super::throttle::Throttle;

/// The address a request came from, put in its extensions by [`check`] for the login handlers
/// (`None` when the server was not given connection info, as in unit tests).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(pub(crate) Option<IpAddr>);

/// The answer to a banned address, in qBittorrent's words.
pub(crate) const BANNED: &str =
    "Your IP address has been banned after too many failed authentication attempts.";

/// What a request's credentials are worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// Right, or none are needed.
    Accepted,
    /// None given where they are needed.
    Missing,
    /// Given and wrong: counts toward a ban.
    Wrong,
}

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
    /// Extra host names allowed in the Host header (for a daemon behind a name).
    pub(crate) allowed_hosts: Vec<String>,
    /// Failed logins per client address.
    pub(crate) throttle: Throttle,
}

impl Guard {
    /// Whether `host` (the Host header, with or without a port) names this daemon: `localhost`,
    /// any IP address (a DNS-rebinding page can only send a name, so an address is safe, as
    /// Transmission's host whitelist treats it), or a configured name.
    pub(crate) fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host);
        if name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() {
            return true;
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

    /// What the request's token (bearer, Basic password or cookie) is worth.
    pub(crate) fn credentials(&self, headers: &HeaderMap) -> Credentials {
        let verdict = |ok: bool| {
            if ok {
                Credentials::Accepted
            } else {
                Credentials::Wrong
            }
        };
        if self.token.is_none() {
            return Credentials::Accepted;
        }
        if let Some(auth) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            if let Some(bearer) = auth.strip_prefix("Bearer ") {
                return verdict(self.accepts(bearer.trim().as_bytes()));
            }
            if let Some(basic) = auth.strip_prefix("Basic ") {
                return verdict(
                    decode_basic(basic.trim()).is_some_and(|(_, password)| self.accepts(&password)),
                );
            }
        }
        let mut cookies = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .filter(|(k, _)| *k == COOKIE)
            .peekable();
        if cookies.peek().is_none() {
            return Credentials::Missing;
        }
        verdict(cookies.any(|(_, v)| self.accepts(v.as_bytes())))
    }

    /// Records a login attempt from `ip` (`ok`: the credentials were right) and says whether it
    /// may proceed: `false` for a banned address, whatever it sent.
    pub(crate) fn login_attempt(&self, ip: Option<IpAddr>, ok: bool) -> bool {
        let Some(ip) = ip else {
            return true;
        };
        let now = Instant::now();
        if self.throttle.banned(ip, now) {
            return false;
        }
        if ok {
            self.throttle.succeeded(ip);
        } else {
            self.throttle.failed(ip, now);
        }
        true
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
    mut request: Request,
    next: Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    request.extensions_mut().insert(ClientIp(ip));
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
    if path.starts_with("/api/v2/") {
        return next.run(request).await.into_response();
    }
    if ip.is_some_and(|ip| guard.throttle.banned(ip, Instant::now())) {
        return error_response(StatusCode::FORBIDDEN, BANNED.into());
    }
    let public = path == "/" || path.starts_with("/ui/") || path == "/api/v1/login";
    let credentials = guard.credentials(headers);
    // The page and the login need no token; a stale cookie sent with them is no guess.
    if !public && credentials != Credentials::Accepted {
        if credentials == Credentials::Wrong {
            if let Some(ip) = ip {
                guard.throttle.failed(ip, Instant::now());
            }
        }
        let mut response = error_response(StatusCode::UNAUTHORIZED, "a token is required".into());
        if credentials == Credentials::Wrong {
            // A stale login cookie (the token changed) is dropped, so the browser stops sending
            // it and the page asks for the token instead of running into the ban.
            response.headers_mut().insert(
                header::SET_COOKIE,
                header::HeaderValue::from_static(
                    "swarmer_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
                ),
            );
        }
        // transmission-remote answers the challenge with its --auth credentials, and a player
        // with those of a stream URL (`http://swarmer:TOKEN@HOST/...`, as the playlist writes).
        if path.starts_with("/transmission/") || path.ends_with("/stream") || path.ends_with(".m3u")
        {
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
            allowed_hosts: vec!["nas.lan".into()],
            throttle: Throttle::default(),
        }
    }

    #[test]
    fn hosts_are_localhost_ip_addresses_or_configured_names() {
        let g = guard(None);
        for ok in [
            "localhost:9091",
            "127.0.0.1:9091",
            "127.0.0.20",
            "[::1]:9091",
            "192.168.1.5:9091",
            "192.168.1.6:9091",
            "[fd00::5]:9091",
            "NAS.lan:9091",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:9091",
            "",
            "192.168.1.6.evil.example",
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
            g.credentials(&h) == Credentials::Accepted
        };
        assert!(with(header::AUTHORIZATION, "Bearer s3cret"));
        assert!(!with(header::AUTHORIZATION, "Bearer s3cre"));
        // "any:s3cret"
        assert!(with(header::AUTHORIZATION, "Basic YW55OnMzY3JldA=="));
        // "any:wrong"
        assert!(!with(header::AUTHORIZATION, "Basic YW55Ondyb25n"));
        assert!(with(header::COOKIE, "a=b; swarmer_token=s3cret"));
        assert!(!with(header::COOKIE, "swarmer_token=nope"));
        assert_eq!(g.credentials(&HeaderMap::new()), Credentials::Missing);
        assert_eq!(
            guard(None).credentials(&HeaderMap::new()),
            Credentials::Accepted
        );
    }
}
