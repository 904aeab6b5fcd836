//! Daemon tests: `swarmer daemon` with its HTTP API, CLI client, watch folder, web UI and
//! Transmission RPC, run as a real process inside a private network namespace, like the interop
//! tests (see `interop/netns.rs`).
//!
//! `daemon/harness.rs` starts the daemon and talks to its API; each further file under
//! `tests/daemon/` holds the tests of one area: `api.rs` (the JSON API, its refusals, the CLI, the
//! watch folder, and a `kill -9` in the middle of a download), `insides.rs` (a torrent's peers,
//! trackers and pieces), `rpc.rs` (the real
//! `transmission-remote`), `qbt.rs` (the real `qbittorrent-api` Python package through an
//! *arr-style workflow, `qbt_client.py`), `port.rs` (the peer port), `security.rs` (download
//! roots, local files, Host, credentials, throttling, file modes), `browser.rs` (the web UI in
//! headless Chromium through chromedriver, `webdriver.rs`, and each of its screens at two sizes
//! in `screens.rs`) and `web_ui.rs` (the UI's files and headers).
//!
//! Run: `cargo test -p swarmer-cli --test daemon -- --nocapture` (as root, for `unshare`).

// The interop harness, shared by path; the daemon tests use only part of each module.
#[allow(dead_code)]
#[path = "interop/bencode.rs"]
mod bencode;
#[allow(dead_code)]
#[path = "interop/deadline.rs"]
mod deadline;
#[allow(dead_code)]
#[path = "interop/libtorrent.rs"]
mod libtorrent;
#[allow(dead_code)]
#[path = "interop/netns.rs"]
mod netns;
#[allow(dead_code)]
#[path = "interop/payload.rs"]
mod payload;
#[allow(dead_code)]
#[path = "interop/procs.rs"]
mod procs;
#[allow(dead_code)]
#[path = "interop/scene.rs"]
mod scene;
#[allow(dead_code)]
#[path = "interop/swarmer.rs"]
mod swarmer;
#[allow(dead_code)]
#[path = "interop/tracker.rs"]
mod tracker;
#[allow(dead_code)]
#[path = "interop/transmission.rs"]
mod transmission;

#[allow(dead_code)]
#[path = "daemon/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "daemon/webdriver.rs"]
mod webdriver;

#[path = "daemon/api.rs"]
mod api;
#[path = "daemon/browser.rs"]
mod browser;
#[path = "daemon/insides.rs"]
mod insides;
#[path = "daemon/port.rs"]
mod port;
#[path = "daemon/qbt.rs"]
mod qbt;
#[path = "daemon/rpc.rs"]
mod rpc;
#[path = "daemon/security.rs"]
mod security;
#[path = "daemon/stream.rs"]
mod stream;
#[path = "daemon/web_ui.rs"]
mod web_ui;
