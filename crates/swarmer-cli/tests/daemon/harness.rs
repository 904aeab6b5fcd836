//! Runs `swarmer daemon` for a test and talks to its HTTP API: [`Daemon`] starts it on 127.0.0.20
//! with every discovery off, reads the URL it prints, and offers a small blocking HTTP client.
//!
//! Use it inside `netns::isolated` like the interop tests, and declare the scene first so the
//! daemon is killed before the scene reports:
//!
//! ```ignore
//! isolated("my_test", &[], |scene| {
//!     let daemon = Daemon::start(scene, DaemonOptions::default());
//!     let torrents = daemon.get_json("/api/v1/torrents");
//!     let response = daemon.post_json("/api/v1/torrents", &json!({ "magnet": MAGNET }));
//!     assert_eq!(response.status(), 201);
//!     daemon.stop(); // SIGTERM, and it must exit 0
//! });
//! ```
//!
//! Every non-GET request carries `X-Requested-By: swarmer` (the daemon's CSRF check), and the
//! token of [`DaemonOptions::token`] as a bearer token; [`Daemon::raw`] builds a request with
//! neither, for tests of those checks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder, Response, multipart};
use serde_json::Value;

use crate::procs::Proc;
use crate::scene::Scene;

/// The daemon's address, for both its HTTP API and its peer port; every other test peer has
/// another 127.0.0.x.
pub(crate) const IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 20);
/// The daemon's peer (BitTorrent) port unless [`DaemonOptions::port`] says otherwise.
pub(crate) const PEER_PORT: u16 = 6881;
/// The line the daemon prints on stdout when its HTTP server is ready, before the URL.
const READY: &str = "swarmer daemon: listening on ";
/// How long the daemon may take to print [`READY`].
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the daemon may take to stop its torrents and exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The bound on one HTTP request to the daemon.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// How to start a daemon; `DaemonOptions::default()` is a fresh daemon with its directories in
/// the scene.
#[derive(Clone, Debug)]
pub(crate) struct DaemonOptions {
    /// The process's name in the scene's logs.
    pub(crate) name: String,
    /// `-o`; a new `<scene>/<name>-download` when `None`. Pass the same directories again to
    /// restart a daemon on its saved state.
    pub(crate) download_dir: Option<PathBuf>,
    /// `--state-dir`; a new `<scene>/<name>-state` when `None`.
    pub(crate) state_dir: Option<PathBuf>,
    /// `--port` (the BitTorrent listening port, on [`IP`]).
    pub(crate) port: u16,
    /// The HTTP port (`--http-listen 127.0.0.20:PORT`); 0, any free port, unless a test restarts
    /// a daemon where a client (a browser page) expects it.
    pub(crate) http_port: u16,
    /// The API token, given to the daemon as `SWARMER_TOKEN` and sent by the helpers as
    /// `Authorization: Bearer`.
    pub(crate) token: Option<String>,
    /// More arguments, e.g. `--max-active-downloads 1`.
    pub(crate) args: Vec<String>,
    /// The HTTP listen address (`--http-listen ADDR:PORT`); [`IP`] when `None`. With an
    /// unspecified address (`0.0.0.0`) the helpers still talk to [`IP`].
    pub(crate) http_ip: Option<Ipv4Addr>,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            name: "daemon".to_owned(),
            download_dir: None,
            state_dir: None,
            port: PEER_PORT,
            http_port: 0,
            token: None,
            args: Vec::new(),
            http_ip: None,
        }
    }
}

/// A running `swarmer daemon`, killed (SIGKILL) when dropped unless [`Daemon::stop`] ended it.
pub(crate) struct Daemon {
    proc: Proc,
    /// `http://127.0.0.20:PORT`, as the daemon printed it (no trailing slash).
    url: String,
    /// Where it saves downloads (`-o`).
    pub(crate) download_dir: PathBuf,
    /// Its `--state-dir`.
    pub(crate) state_dir: PathBuf,
    token: Option<String>,
    http: Client,
}

impl Daemon {
    /// Starts `swarmer daemon --http-listen 127.0.0.20:HTTP_PORT -o DIR --state-dir DIR --port PORT
    /// --bind-address 127.0.0.20 --no-dht --no-lsd --no-pex --no-port-mapping` plus `options.args`, and waits
    /// (bounded) until it prints the URL it listens on.
    pub(crate) fn start(scene: &Scene, options: DaemonOptions) -> Daemon {
        let name = &options.name;
        let download_dir = options
            .download_dir
            .clone()
            .unwrap_or_else(|| scene.subdir(&format!("{name}-download")));
        let state_dir = options
            .state_dir
            .clone()
            .unwrap_or_else(|| scene.subdir(&format!("{name}-state")));
        let mut command = Command::new(env!("CARGO_BIN_EXE_swarmer"));
        command
            .arg("daemon")
            .args([
                "--http-listen",
                &format!("{}:{}", options.http_ip.unwrap_or(IP), options.http_port),
            ])
            .arg("-o")
            .arg(&download_dir)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(["--port", &options.port.to_string()])
            .args(["--bind-address", &IP.to_string()])
            .args(["--no-dht", "--no-lsd", "--no-pex", "--no-port-mapping"])
            .args(&options.args)
            // Nothing from the user's environment: no config, no token, no cache in $HOME.
            .env("XDG_CONFIG_HOME", scene.dir.join("xdg-config"))
            .env("XDG_CACHE_HOME", scene.dir.join("xdg-cache"))
            .env("XDG_STATE_HOME", scene.dir.join("xdg-state"))
            .env_remove("SWARMER_TOKEN")
            // `SWARMER_TEST_LOG` (a `RUST_LOG` filter) makes the daemon log more, to look into a
            // failure.
            .env(
                "RUST_LOG",
                std::env::var("SWARMER_TEST_LOG").unwrap_or("info".into()),
            );
        if let Some(token) = &options.token {
            command.env("SWARMER_TOKEN", token);
        }
        scene.mark(&format!("starting swarmer daemon ({name})"));
        let mut proc = Proc::spawn(name, &mut command, &scene.logs);
        let deadline =
            crate::deadline::Deadline::after(START_TIMEOUT.min(scene.deadline.remaining()));
        let line = proc.wait_for_line("the `listening on` line", deadline, |l| {
            l.starts_with(READY)
        });
        let url = parse_ready_line(&line, options.http_ip.unwrap_or(IP))
            .unwrap_or_else(|| panic!("{name} printed an unusable ready line: {line:?}"));
        scene.mark(&format!("{name} listens on {url}"));
        let http = Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("build the HTTP client");
        Daemon {
            proc,
            url,
            download_dir,
            state_dir,
            token: options.token,
            http,
        }
    }

    /// `http://127.0.0.20:PORT` (no trailing slash).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The HTTP port it listens on.
    pub(crate) fn http_port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in the URL")
    }

    /// The daemon's process, for its logs.
    pub(crate) fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Stops the daemon as a service manager does (SIGTERM) and asserts that it exits 0 within
    /// [`STOP_TIMEOUT`].
    pub(crate) fn stop(mut self) {
        self.proc.assert_running();
        let status = self
            .proc
            .signal("TERM", STOP_TIMEOUT)
            .unwrap_or_else(|| panic!("the daemon still runs {STOP_TIMEOUT:?} after SIGTERM"));
        assert!(
            status.success(),
            "the daemon exited with {status} after SIGTERM; expected a graceful exit 0"
        );
    }

    /// Kills the daemon without warning (SIGKILL), as a crash or power loss would, and waits
    /// until it is gone.
    pub(crate) fn kill9(mut self) {
        self.proc.assert_running();
        let status = self.proc.signal("KILL", STOP_TIMEOUT);
        assert!(status.is_some(), "the daemon survived SIGKILL");
    }

    /// A request with no extra header at all (no `X-Requested-By`, no token), for tests of the
    /// daemon's protections. `path` starts with `/`.
    pub(crate) fn raw(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url))
    }

    /// A request as the web UI sends it: the token if there is one, and `X-Requested-By:
    /// swarmer` unless the method is GET or HEAD.
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let safe = method == Method::GET || method == Method::HEAD;
        let mut request = self.raw(method, path);
        if !safe {
            request = request.header("X-Requested-By", "swarmer");
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Sends `request`; panics only if there is no HTTP answer at all.
    pub(crate) fn send(&self, request: RequestBuilder) -> Response {
        request
            .send()
            .unwrap_or_else(|e| panic!("no answer from the daemon at {}: {e}", self.url))
    }

    /// `GET path`; the answer must be 200 with JSON, which is returned.
    pub(crate) fn get_json(&self, path: &str) -> Value {
        expect_json(self.send(self.request(Method::GET, path)), 200, "GET", path)
    }

    /// `POST path` with a JSON body; returns the response whatever its status.
    pub(crate) fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send(self.request(Method::POST, path).json(body))
    }

    /// `PUT path` with a JSON body; returns the response whatever its status.
    pub(crate) fn put_json(&self, path: &str, body: &Value) -> Response {
        self.send(self.request(Method::PUT, path).json(body))
    }

    /// `POST path` with no body; returns the response whatever its status.
    pub(crate) fn post(&self, path: &str) -> Response {
        self.send(self.request(Method::POST, path))
    }

    /// `DELETE path`; returns the response whatever its status.
    pub(crate) fn delete(&self, path: &str) -> Response {
        self.send(self.request(Method::DELETE, path))
    }

    /// `POST path` with a multipart form (e.g. a .torrent in the field `torrent`).
    pub(crate) fn post_multipart(&self, path: &str, form: multipart::Form) -> Response {
        self.send(self.request(Method::POST, path).multipart(form))
    }

    /// Adds a .torrent file through the API (multipart, like the web UI) and returns the new
    /// Torrent; the answer must be 201.
    pub(crate) fn add_torrent_file(&self, torrent: &std::path::Path) -> Value {
        let bytes = std::fs::read(torrent).expect("read the .torrent");
        let part = multipart::Part::bytes(bytes)
            .file_name("upload.torrent")
            .mime_str("application/x-bittorrent")
            .expect("mime type");
        let form = multipart::Form::new().part("torrent", part);
        let response = self.post_multipart("/api/v1/torrents", form);
        expect_json(response, 201, "POST", "/api/v1/torrents")
    }

    /// One Transmission RPC call (`{"method", "arguments"}`) after the session-id handshake, with
    /// the token if there is one; returns the reply envelope (the HTTP status must be 200).
    pub(crate) fn rpc(&self, body: &Value) -> Value {
        let path = "/transmission/rpc";
        let with_token = |request: RequestBuilder| match &self.token {
            Some(token) => request.basic_auth("any", Some(token)),
            None => request,
        };
        let first = self.send(with_token(self.raw(Method::POST, path)).body("{}"));
        assert_eq!(first.status(), 409, "an RPC request without the session id");
        let session = first
            .headers()
            .get("X-Transmission-Session-Id")
            .and_then(|v| v.to_str().ok())
            .expect("the 409 carries X-Transmission-Session-Id")
            .to_owned();
        let request = with_token(self.raw(Method::POST, path))
            .header("X-Transmission-Session-Id", session)
            .json(body);
        expect_json(self.send(request), 200, "POST", path)
    }

    /// The torrent `id` (`GET /api/v1/torrents/{id}`, a TorrentDetail).
    pub(crate) fn torrent(&self, id: u64) -> Value {
        self.get_json(&format!("/api/v1/torrents/{id}"))
    }

    /// Every torrent (`GET /api/v1/torrents`).
    pub(crate) fn torrents(&self) -> Vec<Value> {
        match self.get_json("/api/v1/torrents") {
            Value::Array(list) => list,
            other => panic!("GET /api/v1/torrents answered {other}, not a list"),
        }
    }
}

/// Asserts `response` has status `status` and a JSON body, and returns the body.
pub(crate) fn expect_json(response: Response, status: u16, method: &str, path: &str) -> Value {
    let got = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    assert_eq!(got, status, "{method} {path} answered {got}: {text}");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path} answered {got} with non-JSON ({e}): {text}"))
}

/// The URL in `swarmer daemon: listening on http://ADDR:PORT`, checked to be a socket address on
/// `ip`; an unspecified `ip` (0.0.0.0) is reached at [`IP`].
fn parse_ready_line(line: &str, ip: Ipv4Addr) -> Option<String> {
    let url = line.strip_prefix(READY)?.trim().trim_end_matches('/');
    let addr: SocketAddr = url.strip_prefix("http://")?.parse().ok()?;
    if addr.ip() != IpAddr::V4(ip) || addr.port() == 0 {
        return None;
    }
    Some(format!("http://{IP}:{}", addr.port()))
}

/// A magnet link for the info hash `info_hash` (40 hex digits) named `name` (URL-safe), with the peer
/// addresses `peers` as `x.pe` (so the daemon needs no tracker to find them).
pub(crate) fn magnet(info_hash: &str, name: &str, peers: &[SocketAddr]) -> String {
    let mut link = format!("magnet:?xt=urn:btih:{info_hash}&dn={name}");
    for peer in peers {
        link.push_str(&format!("&x.pe={peer}"));
    }
    link
}
