//! The web UI's files as the daemon serves them: types, the security headers, 404s, and that the
//! page loads without the token (it has to, to ask for it) while the API does not.

use reqwest::Method;
use reqwest::blocking::Response;

use crate::harness::{Daemon, DaemonOptions};
use crate::netns::isolated;

/// The policy the UI is written for: no inline code, nothing from another origin, no framing.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'";

#[test]
fn files_have_their_types_and_the_security_headers() {
    isolated(
        "web_ui::files_have_their_types_and_the_security_headers",
        &[],
        |scene| {
            let daemon = Daemon::start(
                scene,
                DaemonOptions {
                    token: Some("web-ui-token".to_owned()),
                    ..DaemonOptions::default()
                },
            );
            let get = |path: &str| daemon.send(daemon.raw(Method::GET, path));
            for (path, content_type, contains) in [
                (
                    "/",
                    "text/html",
                    "<script type=\"module\" src=\"/ui/app.js\">",
                ),
                ("/ui/index.html", "text/html", "<table id=\"torrents\""),
                ("/ui/app.js", "text/javascript", "X-Requested-By"),
                ("/ui/style.css", "text/css", "prefers-color-scheme"),
                ("/ui/favicon.svg", "image/svg+xml", "<svg"),
            ] {
                let response = get(path);
                assert_eq!(response.status(), 200, "GET {path} without the token");
                assert_eq!(
                    header(&response, "content-type").split(';').next(),
                    Some(content_type)
                );
                check_security_headers(&response, path);
                let body = response.text().expect("body");
                assert!(body.contains(contains), "GET {path} lacks {contains:?}");
            }
            for path in ["/ui/missing.js", "/ui/", "/ui/..%2FCargo.toml"] {
                let response = get(path);
                assert_eq!(response.status(), 404, "GET {path}");
            }
            let response = get("/ui/nope.css");
            check_security_headers(&response, "/ui/nope.css");
            scene
                .mark("every UI file is served with its type and the policy; unknown ones are 404");

            // The page loads without the token, the API it calls does not answer without it.
            let response = get("/api/v1/torrents");
            assert_eq!(response.status(), 401, "the API answered without the token");
            assert_eq!(daemon.torrents().len(), 0, "with the token");
            daemon.stop();
        },
    );
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header on {}", response.url()))
}

fn check_security_headers(response: &Response, path: &str) {
    assert_eq!(header(response, "content-security-policy"), CSP, "{path}");
    assert_eq!(
        header(response, "x-content-type-options"),
        "nosniff",
        "{path}"
    );
}
