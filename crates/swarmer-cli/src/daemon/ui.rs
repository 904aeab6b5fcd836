//! The daemon's web UI: the files under `crates/swarmer-cli/ui/`, embedded in the binary and served
//! at `GET /` and `GET /ui/{file}` with a strict Content-Security-Policy.
//!
//! The UI is plain HTML, CSS and one ES module with no build step and no external URL, so the
//! policy can forbid everything that does not come from the daemon itself: no inline script or
//! style, no framing (clickjacking), and `connect-src 'self'` keeps the API calls on this origin.
//! The routes carry no state and need no authentication: the page holds no data until the API
//! (which checks the token) answers it.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The Content-Security-Policy sent with every UI response.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'";

/// One embedded file of the UI.
struct Asset {
    /// Its name under `/ui/`.
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file the UI serves; anything else under `/ui/` is a 404.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../ui/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../ui/style.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../ui/favicon.svg"),
    },
];

/// The UI's routes: `GET /` (index.html) and `GET /ui/{file}`; HEAD is answered too. Stateless,
/// so the daemon merges it into its router with `.merge(ui::router())`.
pub(crate) fn router() -> Router {
    Router::new()
        .route("/", get(|| async { serve("index.html") }))
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>| async move { serve(&file) }),
        )
}

/// The response for `/ui/{name}`: the file with its type, or a JSON 404; both with the security
/// headers.
fn serve(name: &str) -> Response {
    let mut response = match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            asset.body,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"no such file in the web UI"}"#,
        )
            .into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(name: &str) -> &'static str {
        let asset = ASSETS.iter().find(|a| a.name == name).expect("asset");
        std::str::from_utf8(asset.body).expect("utf-8")
    }

    #[test]
    fn files_are_served_with_their_type_and_the_policy() {
        for (name, content_type) in [
            ("index.html", "text/html; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("favicon.svg", "image/svg+xml"),
        ] {
            let response = serve(name);
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], content_type, "{name}");
            assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP);
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
    }

    #[test]
    fn unknown_files_are_404_with_the_policy() {
        for name in ["", "nope.js", "../Cargo.toml", "index.html/", "APP.JS"] {
            let response = serve(name);
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{name:?}");
            assert_eq!(response.headers()[header::CONTENT_SECURITY_POLICY], CSP);
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        }
    }

    /// The policy forbids inline code and other origins, and the tests run without network: every
    /// reference in the page must be a file served here, and nothing may be inline.
    #[test]
    fn the_page_only_references_served_files() {
        let index = text("index.html");
        let mut referenced = 0;
        for attr in ["src=\"", "href=\""] {
            for (at, _) in index.match_indices(attr) {
                let rest = &index[at + attr.len()..];
                let url = &rest[..rest.find('"').expect("closing quote")];
                let name = url.strip_prefix("/ui/").unwrap_or_else(|| panic!("{url}"));
                assert!(ASSETS.iter().any(|a| a.name == name), "{url} is not served");
                referenced += 1;
            }
        }
        assert_eq!(referenced, 3, "the icon, the stylesheet and the script");
        assert!(
            !index.contains("style=\""),
            "inline styles break the policy"
        );
        assert!(
            !index.contains("<script>"),
            "inline scripts break the policy"
        );
        let handler = index.match_indices(" on").any(|(at, _)| {
            let rest = &index[at + 3..];
            let word = rest.len()
                - rest
                    .trim_start_matches(|c: char| c.is_ascii_lowercase())
                    .len();
            word > 0 && rest[word..].starts_with('=')
        });
        assert!(!handler, "inline event handlers break the policy");
        for name in ["app.js", "style.css"] {
            assert!(!text(name).contains("://"), "{name} names an external URL");
        }
    }

    /// Unminified, without a build step: the list, the details tabs, settings and the add dialog
    /// came to about 60 KiB; this leaves room for a little more, not for a framework.
    #[test]
    fn the_ui_stays_small() {
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        assert!(total < 80 * 1024, "the UI is {total} bytes");
    }
}
