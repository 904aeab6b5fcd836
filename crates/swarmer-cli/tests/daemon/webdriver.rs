//! A small blocking W3C WebDriver client: starts `/usr/bin/chromedriver` on a free loopback port
//! and drives headless Chromium through it, for the web UI's end-to-end test.
//!
//! WebDriver is JSON over HTTP (<https://www.w3.org/TR/webdriver2/>), so a few requests with the
//! harness's blocking reqwest cover what the test needs (navigate, find, click, type, read the
//! DOM, screenshot) without an async runtime in the test. Chromium gets no network beyond
//! loopback and no proxy, and is told not to phone home: the netns check counts every packet
//! that tries to leave (`Ip: OutNoRoutes`).
//!
//! Elements are looked up by CSS selector each time they are used, so a re-rendered row never
//! leaves the test holding a stale reference.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::deadline::Deadline;
use crate::procs::Proc;
use crate::scene::Scene;

pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";
pub(crate) const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The W3C name of an element reference in a JSON answer.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one WebDriver command may take (starting the browser is the slowest).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A chromedriver process and one browser session in it; the session is closed (Chromium quits)
/// and chromedriver is killed when this is dropped.
pub(crate) struct Browser {
    http: reqwest::blocking::Client,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    _driver: Proc,
}

/// A found element, as WebDriver's opaque id.
#[derive(Clone, Debug)]
pub(crate) struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium whose viewport is `width` x `height` CSS pixels
    /// and whose profile lives in the scene directory.
    pub(crate) fn start(scene: &Scene, width: u32, height: u32) -> Browser {
        let port = free_port();
        let home = scene.subdir("chromium-home");
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_CACHE_HOME", home.join("cache"));
        for proxy in ["http_proxy", "https_proxy", "all_proxy", "no_proxy"] {
            command
                .env_remove(proxy)
                .env_remove(proxy.to_ascii_uppercase());
        }
        let mut driver = Proc::spawn("chromedriver", &mut command, &scene.logs);
        driver.wait_for_line(
            "chromedriver's `started successfully`",
            scene.deadline,
            |l| l.contains("started successfully"),
        );
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(COMMAND_TIMEOUT)
            .build()
            .expect("build the WebDriver HTTP client");
        let base = format!("http://127.0.0.1:{port}");
        let args = chromium_args(&scene.subdir("chromium-profile"), width, height);
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                    "timeouts": { "implicit": 0, "pageLoad": 30_000, "script": 10_000 },
                }
            }
        });
        let answer = send(
            &http,
            "POST",
            &format!("{base}/session"),
            Some(&capabilities),
        );
        let id = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {answer}"));
        scene.mark(&format!(
            "headless Chromium {} started through chromedriver on port {port}",
            answer["capabilities"]["browserVersion"]
                .as_str()
                .unwrap_or("?")
        ));
        let browser = Browser {
            http,
            session: format!("{base}/session/{id}"),
            _driver: driver,
        };
        browser.set_viewport(width, height);
        browser
    }

    /// Resizes the viewport to `width` x `height` CSS pixels (at one device pixel each). The new
    /// headless mode counts window decorations in --window-size, so the viewport itself is pinned
    /// (Chrome DevTools Protocol, through chromedriver's extension command).
    pub(crate) fn set_viewport(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/goog/cdp/execute",
            Some(&json!({
                "cmd": "Emulation.setDeviceMetricsOverride",
                "params": { "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false },
            })),
        );
    }

    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        send(&self.http, method, &format!("{}{path}", self.session), body)
    }

    /// Loads `url` and waits for the page's load event.
    pub(crate) fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(&json!({ "url": url })));
    }

    /// The first element matching the CSS `selector`, if any.
    pub(crate) fn find(&self, selector: &str) -> Option<Element> {
        let answer = self.command(
            "POST",
            "/elements",
            Some(&json!({ "using": "css selector", "value": selector })),
        );
        answer
            .as_array()
            .and_then(|all| all.first())
            .and_then(|e| e[ELEMENT_KEY].as_str())
            .map(|id| Element(id.to_owned()))
    }

    /// Like `find`, but the element must exist.
    pub(crate) fn get(&self, selector: &str) -> Element {
        self.find(selector)
            .unwrap_or_else(|| panic!("no element matches {selector:?}"))
    }

    /// Clicks the element matching `selector` as a user would (it must be visible and enabled).
    pub(crate) fn click(&self, selector: &str) {
        let element = self.get(selector);
        self.command(
            "POST",
            &format!("/element/{}/click", element.0),
            Some(&json!({})),
        );
    }

    /// Types `text` into the element matching `selector`; for a file input, `text` is the path of
    /// the file to choose.
    pub(crate) fn type_into(&self, selector: &str, text: &str) {
        let element = self.get(selector);
        self.command(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(&json!({ "text": text })),
        );
    }

    /// Replaces what a text field holds with `text`, as a user does: select all (Ctrl+A), then
    /// type, in one keystroke command, so the field keeps the focus throughout and fires `input`.
    /// (`clear` then `type_into` leaves the field unfocused in between, where the page may refill
    /// it.)
    pub(crate) fn replace_text(&self, selector: &str, text: &str) {
        self.type_into(selector, &format!("\u{E009}a\u{E009}{text}"));
    }

    /// Clears a text field.
    pub(crate) fn clear(&self, selector: &str) {
        let element = self.get(selector);
        self.command(
            "POST",
            &format!("/element/{}/clear", element.0),
            Some(&json!({})),
        );
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns its
    /// result.
    pub(crate) fn execute(&self, script: &str, args: &[Value]) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// The rendered text of the first element matching `selector`, or `None` if there is none.
    pub(crate) fn text(&self, selector: &str) -> Option<String> {
        let value = self.execute(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            &[json!(selector)],
        );
        value.as_str().map(str::to_owned)
    }

    /// Whether an element matches `selector` and is displayed (not `hidden`, not `display: none`).
    pub(crate) fn visible(&self, selector: &str) -> bool {
        self.execute(
            "const e = document.querySelector(arguments[0]); \
             return !!e && e.getClientRects().length > 0;",
            &[json!(selector)],
        )
        .as_bool()
            == Some(true)
    }

    /// Polls the DOM until `probe` returns `Some`, every 100 ms, failing at `deadline`.
    pub(crate) fn wait_for<T>(
        &self,
        deadline: Deadline,
        what: &str,
        mut probe: impl FnMut(&Browser) -> Option<T>,
    ) -> T {
        deadline.poll(what, Duration::from_millis(100), || probe(self))
    }

    /// A PNG of the viewport.
    pub(crate) fn screenshot(&self) -> Vec<u8> {
        let answer = self.command("GET", "/screenshot", None);
        let encoded = answer.as_str().expect("a base64 screenshot");
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("screenshot is base64")
    }

    /// The browser's console messages since the last call (errors include CSP violations and
    /// exceptions thrown by the page's script).
    pub(crate) fn console_errors(&self) -> Vec<String> {
        let answer = send(
            &self.http,
            "POST",
            &format!("{}/se/log", self.session),
            Some(&json!({ "type": "browser" })),
        );
        answer
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Quits Chromium; chromedriver itself is killed by its Proc guard.
        let _ = self
            .http
            .delete(&self.session)
            .timeout(Duration::from_secs(10))
            .send();
    }
}

/// Chromium's flags: headless, no sandbox (the tests run as root), a profile in the scene, and
/// nothing that would reach for the network on its own.
fn chromium_args(profile: &Path, width: u32, height: u32) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-domain-reliability",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        // Host names never resolve, so no DNS query leaves (Chromium sends over a hundred
        // packets for its own services even with the flags above: the netns counts them as
        // OutNoRoutes); loopback addresses, which the tests use, stay as they are.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.*",
    ]
    .map(str::to_owned)
    .to_vec();
    args.push(format!("--window-size={width},{height}"));
    args.push(format!("--user-data-dir={}", profile.display()));
    args
}

/// A TCP port free on 127.0.0.1 right now (the OS picks it; the listener is closed at once).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe socket");
    listener.local_addr().expect("probe address").port()
}

/// Sends one WebDriver command and returns its `value`; panics with WebDriver's error otherwise.
fn send(http: &reqwest::blocking::Client, method: &str, url: &str, body: Option<&Value>) -> Value {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = http.request(method.clone(), url);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .unwrap_or_else(|e| panic!("WebDriver {method} {url}: {e}"));
    let status = response.status();
    let answer: Value = response
        .json()
        .unwrap_or_else(|e| panic!("WebDriver {method} {url} answered {status} without JSON: {e}"));
    if !status.is_success() {
        panic!(
            "WebDriver {method} {url} failed with {status}: {} {}",
            answer["value"]["error"], answer["value"]["message"]
        );
    }
    answer["value"].clone()
}
