//! Who may use the qBittorrent API, the way qBittorrent decides it: `auth/login` exchanges a
//! username and password for an `SID` cookie; every other request needs a live SID. With a
//! `[qbittorrent]` username and password configured, that holds for every client, loopback
//! included. Without them, the daemon's own rule applies: no credentials on loopback, else the
//! token (as a bearer token, the Basic password, or the password of `auth/login` with any name).
//!
//! Cross-site requests are refused as qBittorrent refuses them: an `Origin` (or, without one, a
//! `Referer`) naming another host than the request's `Host` gets 401. Wrong passwords count toward
//! the daemon's per-address ban.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::form::Params;
use super::shared::{Qbt, SESSION_TIMEOUT, text};
use crate::daemon::guard::{BANNED, ClientIp, Credentials};

/// The session cookie's name.
const SID: &str = "SID";

/// The middleware in front of every `/api/v2/` route.
pub(super) async fn check(State(qbt): State<Arc<Qbt>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if cross_site(headers) {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let path = request.uri().path();
    if path == "/api/v2/auth/login" || allowed(&qbt, headers) {
        return next.run(request).await;
    }
    text(StatusCode::FORBIDDEN, "Forbidden")
}

/// Whether the request may proceed without logging in now: a live SID, or (without configured
/// credentials) the daemon's own rule.
fn allowed(qbt: &Qbt, headers: &HeaderMap) -> bool {
    if sid(headers).is_some_and(|s| qbt.session_valid(s)) {
        return true;
    }
    qbt.credentials.is_none() && qbt.app.guard.credentials(headers) == Credentials::Accepted
}

/// The `SID` cookie's value.
fn sid(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SID)
        .map(|(_, v)| v)
}

/// Whether `Origin` (or else `Referer`) names another host than `Host`.
fn cross_site(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(source) = source else {
        return false;
    };
    let authority = source
        .split_once("://")
        .map_or(source, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("");
    !authority.eq_ignore_ascii_case(host)
}

/// Compares without an early exit.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `POST auth/login` (`username`, `password`): `Ok.` with a `SID` cookie, or `Fails.`; 403 for a
/// banned address.
pub(super) async fn login(
    State(qbt): State<Arc<Qbt>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    params: Params,
) -> Response {
    let username = params.get("username").unwrap_or("");
    let password = params.get("password").unwrap_or("");
    let ok = match &qbt.credentials {
        Some((u, p)) => same(username, u) & same(password, p),
        None => qbt.app.guard.accepts(password.as_bytes()),
    };
    if !qbt.app.guard.login_attempt(ip, ok) {
        return text(StatusCode::FORBIDDEN, BANNED);
    }
    if !ok {
        return text(StatusCode::OK, "Fails.");
    }
    let sid = qbt.open_session();
    let cookie = format!(
        "{SID}={sid}; HttpOnly; SameSite=Strict; path=/; Max-Age={}",
        SESSION_TIMEOUT.as_secs()
    );
    let mut response = text(StatusCode::OK, "Ok.");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// `POST auth/logout`: ends the session.
pub(super) async fn logout(State(qbt): State<Arc<Qbt>>, headers: HeaderMap) -> Response {
    if let Some(s) = sid(&headers) {
        qbt.close_session(s);
    }
    let mut response = StatusCode::OK.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("SID=; HttpOnly; SameSite=Strict; path=/; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cross_site_by_origin_then_referer() {
        let host = ("host", "10.0.0.2:8080");
        assert!(!cross_site(&headers(&[host])));
        assert!(!cross_site(&headers(&[
            host,
            ("origin", "http://10.0.0.2:8080")
        ])));
        assert!(cross_site(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(!cross_site(&headers(&[
            host,
            ("referer", "http://10.0.0.2:8080/index.html")
        ])));
        assert!(cross_site(&headers(&[
            host,
            ("referer", "http://10.0.0.2:8081/")
        ])));
        // The Origin decides when both are there.
        assert!(cross_site(&headers(&[
            host,
            ("origin", "http://evil.example"),
            ("referer", "http://10.0.0.2:8080/")
        ])));
        assert_eq!(sid(&headers(&[("cookie", "a=b; SID=xyz")])), Some("xyz"));
    }
}
