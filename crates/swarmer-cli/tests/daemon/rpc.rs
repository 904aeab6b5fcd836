//! The daemon's Transmission RPC driven by Debian's real `transmission-remote` 3.00: adding a
//! .torrent and a magnet link, listing, stopping, starting, details, session info and stats,
//! removing with and without the data, the token via `--auth`, and a whole download from a
//! `swarmer seed` through opentracker; then every command the daemon once refused or faked: adding
//! by http(s) URL, `-pi` peers, `-it` trackers, `-v` verify (it repairs a damaged piece), `--move`,
//! `--find`, `-L` labels, `-p` moving the peer port at run time, and `session-set` refusing what
//! it cannot apply (`-as`). The
//! handshake and error envelope are checked on the wire.
//!
//! Gotchas: transmission-remote posts to `/transmission/rpc/` (trailing slash) and exits 0 even
//! when a listed torrent has an error, but non-zero when `result` is not `success`; its `-l`
//! shows a downloading torrent without traffic as `Idle`, and one with no wanted bytes yet (a
//! magnet link) as `n/a` done.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{self, Daemon, DaemonOptions};
use crate::netns::{Need, isolated};
use crate::payload;
use crate::procs::Waited;
use crate::scene::Scene;
use crate::swarmer;
use crate::tracker::{self, Tracker};

const REMOTE: &str = "transmission-remote";
/// The bound on one transmission-remote run.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(20);
/// How often state that announces nothing (the daemon's list) is looked at again.
const POLL: Duration = Duration::from_millis(250);

/// What one transmission-remote run printed.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self, what: &str) -> String {
        assert!(
            self.status.success(),
            "transmission-remote {what} failed ({}): {}{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self.stdout
    }
}

/// Runs `transmission-remote 127.0.0.20:PORT [--auth AUTH] ARGS...` (bounded by
/// [`REMOTE_TIMEOUT`]).
fn remote(scene: &Scene, daemon: &Daemon, auth: Option<&str>, args: &[&str]) -> Run {
    let target = format!("{}:{}", harness::IP, daemon.http_port());
    remote_at(scene, &target, auth, args)
}

/// Runs `transmission-remote TARGET [--auth AUTH] ARGS...` against any RPC server.
fn remote_at(scene: &Scene, target: &str, auth: Option<&str>, args: &[&str]) -> Run {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let out = scene.dir.join(format!("remote-{n}.out"));
    let err = scene.dir.join(format!("remote-{n}.err"));
    let mut command = Command::new(REMOTE);
    command.arg(target);
    if let Some(auth) = auth {
        command.args(["--auth", auth]);
    }
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("create stdout file"))
        .stderr(std::fs::File::create(&err).expect("create stderr file"))
        .env("HOME", &scene.dir);
    for proxy in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
        command.env_remove(proxy);
    }
    let child = command.spawn().expect("run transmission-remote");
    let mut waited = Waited::new(child);
    let Some(status) = waited.wait_timeout(REMOTE_TIMEOUT) else {
        waited.kill(&waited.pid().to_string());
        panic!("transmission-remote {args:?} did not finish in {REMOTE_TIMEOUT:?}");
    };
    Run {
        status,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

/// One row of `transmission-remote -l`.
#[derive(Debug)]
struct Row {
    id: u64,
    done: String,
    line: String,
}

/// The row of `-l` whose name is `name`, if listed.
fn row(list: &str, name: &str) -> Option<Row> {
    list.lines()
        .skip(1)
        .filter(|l| !l.starts_with("Sum:"))
        .find(|l| l.trim_end().ends_with(&format!(" {name}")))
        .map(|l| {
            let mut words = l.split_whitespace();
            let id = words
                .next()
                .and_then(|w| w.trim_end_matches('*').parse().ok())
                .unwrap_or_else(|| panic!("no id in {l:?}"));
            Row {
                id,
                done: words.next().unwrap_or("").to_owned(),
                line: l.to_owned(),
            }
        })
}

fn list(scene: &Scene, daemon: &Daemon) -> String {
    remote(scene, daemon, None, &["-l"]).ok("-l")
}

/// Polls `-l` until `name`'s row satisfies `check`, and returns it.
fn wait_row(
    scene: &Scene,
    daemon: &Daemon,
    name: &str,
    what: &str,
    check: impl Fn(&Row) -> bool,
) -> Row {
    scene.deadline.poll(
        &format!("transmission-remote -l to show {name} {what}"),
        POLL,
        || row(&list(scene, daemon), name).filter(|r| check(r)),
    )
}

fn info_hash_hex(torrent: &Path) -> String {
    tracker::hex(&crate::bencode::info_hash(
        &std::fs::read(torrent).expect("read torrent"),
    ))
}

/// Posts one RPC request the way a client does after the handshake.
fn rpc(daemon: &Daemon, session: &str, body: &Value) -> (u16, Value) {
    let response = daemon.send(
        daemon
            .raw(Method::POST, "/transmission/rpc")
            .header("X-Transmission-Session-Id", session)
            .json(body),
    );
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON ({e}): {text}"));
    (status, value)
}

/// The session id from a 409 handshake on `POST /transmission/rpc`.
fn session_id(daemon: &Daemon) -> String {
    let response = daemon.send(daemon.raw(Method::POST, "/transmission/rpc").body("{}"));
    assert_eq!(response.status(), 409, "a request without the session id");
    response
        .headers()
        .get("X-Transmission-Session-Id")
        .and_then(|v| v.to_str().ok())
        .expect("the 409 carries X-Transmission-Session-Id")
        .to_owned()
}

#[test]
fn transmission_remote_manages_torrents() {
    isolated(
        "rpc::transmission_remote_manages_torrents",
        &[Need::Transmission, Need::Mktorrent],
        |scene| {
            let daemon = Daemon::start(scene, DaemonOptions::default());
            // A torrent whose tracker refuses connections and which nobody seeds.
            let src = scene.subdir("src");
            let alpha = payload::single_file(&src, "alpha.bin", 300_000, 1);
            let alpha_torrent = alpha.make_torrent(
                &scene.dir.join("alpha.torrent"),
                15,
                &["http://127.0.0.1:9/announce"],
            );
            // A torrent whose data is already in the daemon's download directory.
            let beta = payload::single_file(&daemon.download_dir, "beta.bin", 100_000, 2);
            let beta_torrent = beta.make_torrent(
                &scene.dir.join("beta.torrent"),
                15,
                &["http://127.0.0.1:9/announce"],
            );
            let gamma_hash = "1234567890abcdef1234567890abcdef12345678";
            let magnet = harness::magnet(gamma_hash, "gamma", &[]);

            for torrent in [&alpha_torrent, &beta_torrent] {
                let out = remote(scene, &daemon, None, &["-a", torrent.to_str().unwrap()]);
                assert!(out.ok("-a").contains("success"));
            }
            remote(scene, &daemon, None, &["-a", &magnet]).ok("-a magnet");
            scene.mark("added a .torrent twice and a magnet link");
            // Adding again is a duplicate, which 3.00 reports as success.
            remote(
                scene,
                &daemon,
                None,
                &["-a", alpha_torrent.to_str().unwrap()],
            )
            .ok("-a again");

            let listed = list(scene, &daemon);
            let a = row(&listed, "alpha.bin").unwrap_or_else(|| panic!("alpha missing:\n{listed}"));
            let g = row(&listed, "gamma").unwrap_or_else(|| panic!("gamma missing:\n{listed}"));
            assert_eq!(
                listed.lines().filter(|l| l.contains("alpha.bin")).count(),
                1
            );
            let b = wait_row(scene, &daemon, "beta.bin", "100% done", |r| {
                r.done == "100%"
            });
            scene.mark("-l lists all three; beta's data is checked");
            assert!(
                b.line.contains("Seeding") || b.line.contains("Idle"),
                "{}",
                b.line
            );
            assert!(!a.line.contains("Stopped"), "{}", a.line);

            let a_id = a.id.to_string();
            remote(scene, &daemon, None, &["-t", &a_id, "-S"]).ok("-S");
            wait_row(scene, &daemon, "alpha.bin", "Stopped", |r| {
                r.line.contains("Stopped")
            });
            remote(scene, &daemon, None, &["-t", &a_id, "-s"]).ok("-s");
            wait_row(scene, &daemon, "alpha.bin", "started", |r| {
                !r.line.contains("Stopped")
            });
            scene.mark("-S stops and -s starts a torrent");

            let info = remote(scene, &daemon, None, &["-t", &a_id, "-i"]).ok("-i");
            let hash = info_hash_hex(&alpha_torrent);
            for expected in [
                "Name: alpha.bin".to_owned(),
                format!("Hash: {hash}"),
                format!("Magnet: magnet:?xt=urn:btih:{hash}"),
                "Total size: 300.0 kB".to_owned(),
                "Piece Size: 32.00 KiB".to_owned(),
            ] {
                assert!(info.contains(&expected), "-i lacks {expected:?}:\n{info}");
            }
            let files = remote(scene, &daemon, None, &["-t", &a_id, "-if"]).ok("-if");
            assert!(files.contains("alpha.bin (1 files)"), "{files}");
            let session = remote(scene, &daemon, None, &["-si"]).ok("-si");
            for expected in ["Daemon version: 3.00 (swarmer", "RPC version: 16", "LIMITS"] {
                assert!(
                    session.contains(expected),
                    "-si lacks {expected:?}:\n{session}"
                );
            }
            remote(scene, &daemon, None, &["-d", "250"]).ok("-d");
            let settings = daemon.get_json("/api/v1/settings");
            assert_eq!(settings["max_download_rate"], json!(250_000));
            remote(scene, &daemon, None, &["-er"]).ok("-er");
            let settings = daemon.get_json("/api/v1/settings");
            assert_eq!(settings["encryption"], "require");
            let session = remote(scene, &daemon, None, &["-si"]).ok("-si");
            assert!(session.contains("Encryption: required"), "{session}");
            remote(scene, &daemon, None, &["-ep"]).ok("-ep");
            let stats = remote(scene, &daemon, None, &["-st"]).ok("-st");
            assert!(
                stats.contains("CURRENT SESSION") && stats.contains("TOTAL"),
                "{stats}"
            );
            scene.mark("-i, -if, -si, -d and -st answer");

            // A running torrent reannounces; one that is not running cannot, and says so rather
            // than answering a silent success.
            remote(scene, &daemon, None, &["-t", &a_id, "--reannounce"]).ok("--reannounce");
            let g_id = g.id.to_string();
            remote(scene, &daemon, None, &["-t", &g_id, "-S"]).ok("-S gamma");
            let reannounce = remote(scene, &daemon, None, &["-t", &g_id, "--reannounce"]);
            assert!(!reannounce.status.success());
            assert!(
                reannounce.stderr.contains("not running")
                    || reannounce.stdout.contains("not running"),
                "{}{}",
                reannounce.stdout,
                reannounce.stderr
            );
            // A tracker that refuses connections shows as the torrent's tracker error.
            let info = scene
                .deadline
                .poll("-i to show the tracker's error", POLL, || {
                    let info = remote(scene, &daemon, None, &["-t", &a_id, "-i"]).ok("-i");
                    info.contains("Tracker gave an error").then_some(info)
                });
            scene.mark(&format!(
                "-i shows the tracker error: {}",
                info.lines()
                    .find(|l| l.contains("Tracker gave"))
                    .unwrap_or("")
            ));

            remote(scene, &daemon, None, &["-t", &g.id.to_string(), "-r"]).ok("-r");
            let listed = list(scene, &daemon);
            assert!(
                row(&listed, "gamma").is_none(),
                "gamma still listed:\n{listed}"
            );
            let beta_file = daemon.download_dir.join("beta.bin");
            assert!(beta_file.is_file());
            remote(
                scene,
                &daemon,
                None,
                &["-t", &b.id.to_string(), "--remove-and-delete"],
            )
            .ok("--remove-and-delete");
            assert!(!beta_file.exists(), "--remove-and-delete left the data");
            let listed = list(scene, &daemon);
            assert!(
                row(&listed, "beta.bin").is_none(),
                "beta still listed:\n{listed}"
            );
            assert!(row(&listed, "alpha.bin").is_some());
            scene.mark("-r removes a torrent, --remove-and-delete its data too");

            // The wire: the handshake, method errors in `result`, malformed JSON.
            let get = daemon.send(daemon.raw(Method::GET, "/transmission/rpc"));
            assert_eq!(get.status(), 409);
            let session = session_id(&daemon);
            let (status, reply) = rpc(&daemon, &session, &json!({"method": "nope", "tag": 5}));
            assert_eq!(status, 200);
            assert_eq!(reply["result"], json!("method name not recognized"));
            assert_eq!(reply["tag"], json!(5));
            let (_, reply) = rpc(
                &daemon,
                &session,
                &json!({"method": "torrent-get", "arguments": {"ids": [hash], "fields": ["id", "status", "files"]}}),
            );
            assert_eq!(reply["result"], json!("success"));
            assert_eq!(reply["arguments"]["torrents"][0]["id"], json!(a.id));
            assert_eq!(
                reply["arguments"]["torrents"][0]["files"][0]["length"],
                json!(300_000)
            );
            let bad = daemon.send(
                daemon
                    .raw(Method::POST, "/transmission/rpc")
                    .header("X-Transmission-Session-Id", &session)
                    .body("{not json"),
            );
            assert_eq!(bad.status(), 400);
            let stale = daemon.send(
                daemon
                    .raw(Method::POST, "/transmission/rpc")
                    .header("X-Transmission-Session-Id", "stale")
                    .body("{}"),
            );
            assert_eq!(stale.status(), 409);
            scene.mark("the handshake and the error envelope hold on the wire");
            daemon.stop();
        },
    );
}

#[test]
fn transmission_remote_needs_the_token() {
    isolated(
        "rpc::transmission_remote_needs_the_token",
        &[Need::Transmission],
        |scene| {
            let token = "rpc-test-token";
            let daemon = Daemon::start(
                scene,
                DaemonOptions {
                    token: Some(token.to_owned()),
                    ..DaemonOptions::default()
                },
            );
            let without = remote(scene, &daemon, None, &["-l"]);
            assert!(!without.status.success(), "-l without --auth succeeded");
            // transmission-remote prints the daemon's 401 body after "Unexpected response".
            let said = format!("{}{}", without.stdout, without.stderr);
            assert!(said.contains("a token is required"), "{said}");
            let wrong = remote(scene, &daemon, Some("user:wrong"), &["-l"]);
            assert!(!wrong.status.success(), "-l with a wrong token succeeded");
            let magnet =
                harness::magnet("abcdefabcdefabcdefabcdefabcdefabcdefabcd", "tokened", &[]);
            let auth = format!("anyone:{token}");
            remote(scene, &daemon, Some(&auth), &["-a", &magnet]).ok("-a with --auth");
            let listed = remote(scene, &daemon, Some(&auth), &["-l"]).ok("-l with --auth");
            assert!(row(&listed, "tokened").is_some(), "{listed}");
            scene.mark("transmission-remote needs --auth with the token, and works with it");
            daemon.stop();
        },
    );
}

#[test]
fn transmission_remote_downloads_from_a_seed() {
    isolated(
        "rpc::transmission_remote_downloads_from_a_seed",
        &[Need::Transmission, Need::Mktorrent, Need::Opentracker],
        |scene| {
            let src = scene.subdir("seed");
            let payload = payload::multi_file(&src, "delta", 4);
            let torrent = payload.make_torrent(
                &scene.dir.join("delta.torrent"),
                16,
                &[tracker::HTTP_ANNOUNCE],
            );
            let tracker = Tracker::start(scene, &[&torrent]);
            let _seed = swarmer::seed(scene, &torrent, &src, &[]);
            let daemon = Daemon::start(scene, DaemonOptions::default());
            remote(scene, &daemon, None, &["-a", torrent.to_str().unwrap()]).ok("-a");
            let started = Instant::now();
            let done = wait_row(scene, &daemon, "delta", "100% done", |r| r.done == "100%");
            scene.mark(&format!(
                "transmission-remote -l shows the download done after {:.1}s",
                started.elapsed().as_secs_f64()
            ));
            payload.assert_same(&daemon.download_dir.join("delta"));
            let daemon_addr = SocketAddr::from((harness::IP, harness::PEER_PORT));
            tracker.wait_until_listed(scene, &torrent, &[daemon_addr]);
            let info = remote(scene, &daemon, None, &["-t", &done.id.to_string(), "-i"]).ok("-i");
            assert!(info.contains("Percent Done: 100%"), "{info}");
            scene.mark("the daemon's copy is byte-identical and it announces as a seed");
            daemon.stop();
        },
    );
}

/// The daemon scrapes a torrent's trackers soon after it is added, and `trackerStats` shows the
/// counts opentracker's own statistics show, over HTTP (BEP 48) and UDP (BEP 15) alike: for a
/// paused torrent too, which never announced, so the counts can only come from the scrape.
#[test]
fn tracker_stats_show_the_scrape_counts() {
    isolated(
        "rpc::tracker_stats_show_the_scrape_counts",
        &[Need::Mktorrent, Need::Opentracker],
        |scene| {
            let src = scene.subdir("seed");
            let payload = payload::single_file(&src, "scraped.bin", 300_000, 9);
            let torrent = payload.make_torrent(
                &scene.dir.join("scraped.torrent"),
                15,
                &[tracker::HTTP_ANNOUNCE, tracker::UDP_ANNOUNCE],
            );
            let _tracker = Tracker::start(scene, &[&torrent]);
            let _seed = swarmer::seed(scene, &torrent, &src, &[]);
            tracker::add_fake_leecher(&torrent);
            tracker::add_fake_completion(&torrent);
            tracker::add_fake_completion(&torrent);
            let (peers, seeds) = tracker::own_stats(&torrent);
            let completed = tracker::own_completed_total();
            let expected = (
                i64::from(seeds),
                i64::from(peers - seeds),
                i64::from(completed),
            );
            assert_eq!(expected, (1, 1, 2), "opentracker's own statistics");

            let daemon = Daemon::start(scene, DaemonOptions::default());
            let session = session_id(&daemon);
            use base64::Engine as _;
            let metainfo = base64::engine::general_purpose::STANDARD
                .encode(std::fs::read(&torrent).expect("read torrent"));
            let (status, added) = rpc(
                &daemon,
                &session,
                &json!({"method": "torrent-add", "arguments": {"metainfo": metainfo, "paused": true}}),
            );
            assert_eq!(status, 200, "{added}");
            let stats = scene.deadline.poll(
                "trackerStats to show both trackers scraped",
                Duration::from_millis(200),
                || {
                    let (_, got) = rpc(
                        &daemon,
                        &session,
                        &json!({"method": "torrent-get", "arguments": {"fields": ["trackerStats"]}}),
                    );
                    let stats = got["arguments"]["torrents"][0]["trackerStats"].clone();
                    let all = stats.as_array().is_some_and(|s| {
                        s.len() == 2 && s.iter().all(|t| t["hasScraped"] == json!(true))
                    });
                    all.then_some(stats)
                },
            );
            for t in stats.as_array().expect("trackerStats") {
                let got = (
                    t["seederCount"].as_i64().unwrap(),
                    t["leecherCount"].as_i64().unwrap(),
                    t["downloadCount"].as_i64().unwrap(),
                );
                assert_eq!(got, expected, "{}: {t}", t["announce"]);
                assert_eq!(t["lastScrapeSucceeded"], json!(true), "{t}");
            }
            scene.mark("trackerStats shows opentracker's counts for the HTTP and the UDP tracker");
            daemon.stop();
        },
    );
}

#[test]
fn torrent_get_over_many_torrents() {
    isolated(
        "rpc::torrent_get_over_many_torrents",
        &[Need::Transmission],
        |scene| {
            const TORRENTS: usize = 300;
            let daemon = Daemon::start(scene, DaemonOptions::default());
            for i in 0..TORRENTS {
                let hash = format!("{i:040x}");
                let response = daemon.post_json(
                "/api/v1/torrents",
                &json!({ "magnet": harness::magnet(&hash, &format!("m{i}"), &[]), "paused": true }),
            );
                assert_eq!(response.status(), 201);
            }
            scene.mark(&format!("added {TORRENTS} paused magnet links"));
            let session = session_id(&daemon);
            let fields = [
                "error",
                "errorString",
                "eta",
                "id",
                "isFinished",
                "leftUntilDone",
                "name",
                "peersGettingFromUs",
                "peersSendingToUs",
                "rateDownload",
                "rateUpload",
                "sizeWhenDone",
                "status",
                "uploadRatio",
            ];
            let started = Instant::now();
            let (_, reply) = rpc(
                &daemon,
                &session,
                &json!({"method": "torrent-get", "arguments": {"fields": fields}}),
            );
            let list_time = started.elapsed();
            assert_eq!(
                reply["arguments"]["torrents"].as_array().map(Vec::len),
                Some(TORRENTS)
            );
            let started = Instant::now();
            let (_, reply) = rpc(
                &daemon,
                &session,
                &json!({"method": "torrent-get", "arguments": {"fields": ["id", "files", "trackers"]}}),
            );
            let detail_time = started.elapsed();
            assert_eq!(
                reply["arguments"]["torrents"].as_array().map(Vec::len),
                Some(TORRENTS)
            );
            let started = Instant::now();
            let listed = list(scene, &daemon);
            let remote_time = started.elapsed();
            assert_eq!(
                listed.lines().filter(|l| l.contains("Stopped")).count(),
                TORRENTS
            );
            scene.mark(&format!(
                "torrent-get over {TORRENTS} torrents: list fields {:.1} ms, with files {:.1} ms; \
             transmission-remote -l {:.1} ms",
                list_time.as_secs_f64() * 1e3,
                detail_time.as_secs_f64() * 1e3,
                remote_time.as_secs_f64() * 1e3,
            ));
            daemon.stop();
        },
    );
}

/// Serves the files of `dir` over HTTP on `addr` (a small Python server that skips the DNS lookup
/// `HTTPServer` does when binding), until the test ends; it says `serving` once it listens. The
/// JSON API's tests use it too.
pub(crate) fn http_server(scene: &Scene, dir: &Path, addr: SocketAddr) -> crate::procs::Proc {
    let code = "import functools, http.server, sys\n\
        class S(http.server.ThreadingHTTPServer):\n\
        \x20   def server_bind(self):\n\
        \x20       import socketserver; socketserver.TCPServer.server_bind(self)\n\
        \x20       self.server_name, self.server_port = 'test', self.server_address[1]\n\
        h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n\
        s = S((sys.argv[2], int(sys.argv[3])), h)\n\
        print('serving', flush=True)\n\
        s.serve_forever()\n";
    let mut command = Command::new("/usr/bin/python3");
    command
        .args(["-c", code])
        .arg(dir)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string());
    let mut proc = crate::procs::Proc::spawn("http-server", &mut command, &scene.logs);
    proc.wait_for_line("serving", scene.deadline, |l| l.starts_with("serving"));
    proc
}

/// Flips one byte in the middle of `file`.
fn damage(file: &Path) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .expect("open");
    let middle = f.metadata().expect("stat").len() / 2;
    let mut byte = [0u8];
    f.seek(SeekFrom::Start(middle)).unwrap();
    f.read_exact(&mut byte).unwrap();
    f.seek(SeekFrom::Start(middle)).unwrap();
    f.write_all(&[byte[0] ^ 0xFF]).unwrap();
}

#[test]
fn transmission_remote_runs_every_command() {
    isolated(
        "rpc::transmission_remote_runs_every_command",
        &[Need::Transmission, Need::Mktorrent, Need::Opentracker],
        |scene| {
            let src = scene.subdir("seed");
            let payload = payload::single_file(&src, "delta.bin", 3_000_000, 4);
            let torrents = scene.subdir("served");
            let torrent = payload.make_torrent(
                &torrents.join("delta.torrent"),
                15,
                &[tracker::HTTP_ANNOUNCE],
            );
            let tracker = Tracker::start(scene, &[&torrent]);
            // Slow enough that the download lasts a few seconds, to see the seeder in `-pi`.
            let _seed = swarmer::seed(scene, &torrent, &src, &["--max-upload-rate", "600K"]);
            let web: SocketAddr = "127.0.0.40:8080".parse().unwrap();
            let _web = http_server(scene, &torrents, web);
            let daemon = Daemon::start(scene, DaemonOptions::default());

            let url = format!("http://{web}/delta.torrent");
            remote(scene, &daemon, None, &["-a", &url]).ok("-a URL");
            let missing = remote(
                scene,
                &daemon,
                None,
                &["-a", &format!("http://{web}/nope.torrent")],
            );
            assert!(
                !missing.status.success(),
                "a URL that answers 404 is an error"
            );
            let row = wait_row(scene, &daemon, "delta.bin", "listed", |_| true);
            let id = row.id.to_string();
            scene.mark("-a with an http URL adds the .torrent it serves");

            let peers = scene.deadline.poll("-pi to list the seeder", POLL, || {
                let out = remote(scene, &daemon, None, &["-t", &id, "-pi"]).ok("-pi");
                out.contains(&swarmer::addr().ip().to_string())
                    .then_some(out)
            });
            scene.mark(&format!("-pi lists the seeder:\n{peers}"));
            wait_row(scene, &daemon, "delta.bin", "100% done", |r| {
                r.done == "100%"
            });
            let file = daemon.download_dir.join("delta.bin");
            payload.assert_same(&file);
            let trackers = remote(scene, &daemon, None, &["-t", &id, "-it"]).ok("-it");
            assert!(trackers.contains("127.0.0.1:6969"), "{trackers}");
            assert!(!trackers.contains("error"), "{trackers}");
            let files = remote(scene, &daemon, None, &["-t", &id, "-if"]).ok("-if");
            assert!(files.contains("100%"), "per-file progress:\n{files}");
            // The completion time is stamped within a second of the download's end.
            scene
                .deadline
                .poll("-i to show a completion date", POLL, || {
                    let info = remote(scene, &daemon, None, &["-t", &id, "-i"]).ok("-i");
                    info.contains("Date finished:").then_some(())
                });
            scene.mark("-it, -if and -i show real tracker state, file progress and dates");

            damage(&file);
            assert!(std::fs::read(&file).unwrap() != std::fs::read(src.join("delta.bin")).unwrap());
            remote(scene, &daemon, None, &["-t", &id, "-v"]).ok("-v");
            scene
                .deadline
                .poll("-v to find and repair the damaged piece", POLL, || {
                    (std::fs::read(&file).ok()? == std::fs::read(src.join("delta.bin")).ok()?)
                        .then_some(())
                });
            scene.mark("-v re-checks: the damaged piece is found and downloaded again");

            let library = daemon.download_dir.join("library");
            remote(
                scene,
                &daemon,
                None,
                &["-t", &id, "--move", library.to_str().unwrap()],
            )
            .ok("--move");
            assert!(!file.exists(), "--move left the old copy");
            payload.assert_same(&library.join("delta.bin"));
            let info = remote(scene, &daemon, None, &["-t", &id, "-i"]).ok("-i");
            assert!(
                info.contains(&format!("Location: {}", library.display())),
                "{info}"
            );
            let outside = remote(scene, &daemon, None, &["-t", &id, "--move", "/tmp"]);
            assert!(
                !outside.status.success(),
                "--move out of the download roots"
            );
            // --find: the data is said to be elsewhere; it is looked for (and hashed) there.
            let copy = daemon.download_dir.join("copy");
            std::fs::create_dir_all(&copy).unwrap();
            std::fs::copy(library.join("delta.bin"), copy.join("delta.bin")).unwrap();
            remote(
                scene,
                &daemon,
                None,
                &["-t", &id, "--find", copy.to_str().unwrap()],
            )
            .ok("--find");
            wait_row(
                scene,
                &daemon,
                "delta.bin",
                "100% done at the found place",
                |r| r.done == "100%",
            );
            scene.mark("--move moves the data, --find points at a copy");

            remote(scene, &daemon, None, &["-t", &id, "-L", "tv,hd"]).ok("-L");
            let reply = daemon.rpc(&json!({
                "method": "torrent-get",
                "arguments": { "ids": [row.id], "fields": ["labels"] }
            }));
            assert_eq!(
                reply["arguments"]["torrents"][0]["labels"],
                json!(["hd", "tv"])
            );
            scene.mark("-L sets labels (the qBittorrent API's tags)");

            let turtle = remote(scene, &daemon, None, &["-as"]);
            assert!(!turtle.status.success(), "-as claimed success");
            assert!(
                turtle.stdout.contains("alt-speed-enabled")
                    || turtle.stderr.contains("alt-speed-enabled"),
                "{}{}",
                turtle.stdout,
                turtle.stderr
            );
            remote(scene, &daemon, None, &["-AS"]).ok("-AS asks for what is already so");
            // The peer port moves at run time: the torrent stops, and seeds again on the new port.
            remote(scene, &daemon, None, &["-p", "51413"]).ok("-p");
            let session = remote(scene, &daemon, None, &["-si"]).ok("-si");
            assert!(session.contains("Listenport: 51413"), "{session}");
            std::net::TcpStream::connect((harness::IP, 51413)).expect("peers reach the new port");
            assert!(
                std::net::TcpStream::connect((harness::IP, harness::PEER_PORT)).is_err(),
                "the old port is closed"
            );
            wait_row(scene, &daemon, "delta.bin", "seeding again", |r| {
                r.done == "100%" && !r.line.contains("Stopped")
            });
            scene.mark("session-set refuses what it cannot apply");
            tracker.wait_until_listed(scene, &torrent, &[swarmer::addr()]);
            daemon.stop();
        },
    );
}

/// The lines of `text` that start with one of `keys` (after indentation), with runs of spaces
/// made one: what both servers must print alike.
fn lines_with(text: &str, keys: &[&str]) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| keys.iter().any(|k| l.starts_with(k)))
        .collect()
}

#[test]
fn transmission_remote_shows_what_transmission_daemon_shows() {
    isolated(
        "rpc::transmission_remote_shows_what_transmission_daemon_shows",
        &[Need::Transmission, Need::Mktorrent, Need::Opentracker],
        |scene| {
            let src = scene.subdir("seed");
            let payload = payload::multi_file(&src, "echo", 6);
            let torrent = payload.make_torrent(
                &scene.dir.join("echo.torrent"),
                16,
                &[tracker::HTTP_ANNOUNCE],
            );
            let _tracker = Tracker::start(scene, &[&torrent]);
            let transmission = crate::transmission::Transmission::start(
                scene,
                std::net::Ipv4Addr::new(127, 0, 0, 50),
            );
            transmission.seed(scene, &torrent, &src);
            let daemon = Daemon::start(scene, DaemonOptions::default());
            payload.copy_to(&daemon.download_dir);
            remote(scene, &daemon, None, &["-a", torrent.to_str().unwrap()]).ok("-a");
            let ours = wait_row(scene, &daemon, "echo", "checked and seeding", |r| {
                r.done == "100%"
            });
            let theirs = transmission.rpc_addr().to_string();
            let ours_id = ours.id.to_string();
            let show = |args: &[&str]| {
                let mut ours_args = vec!["-t", ours_id.as_str()];
                ours_args.extend(args);
                let mut theirs_args = vec!["-t", "1"];
                theirs_args.extend(args);
                (
                    remote(scene, &daemon, None, &ours_args).ok("ours"),
                    remote_at(scene, &theirs, None, &theirs_args).ok("transmission's"),
                )
            };
            let (a, b) = show(&["-i"]);
            let keys = [
                "Name:",
                "Hash:",
                "Total size:",
                "Piece Count:",
                "Piece Size:",
                "Percent Done:",
                "Have:",
                "Public torrent:",
                "Magnet:",
            ];
            assert_eq!(
                lines_with(&a, &keys),
                lines_with(&b, &keys),
                "-i\nours:\n{a}\ntheirs:\n{b}"
            );
            let (a, b) = show(&["-if"]);
            let rows = |t: &str| -> Vec<String> {
                t.lines()
                    .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                    .filter(|l| !l.is_empty())
                    .collect()
            };
            assert_eq!(rows(&a), rows(&b), "-if\nours:\n{a}\ntheirs:\n{b}");
            let (a, b) = show(&["-it"]);
            let tracker_keys = ["Tracker 0:", "Active in tier"];
            assert_eq!(
                lines_with(&a, &tracker_keys),
                lines_with(&b, &tracker_keys),
                "-it\nours:\n{a}\ntheirs:\n{b}"
            );
            scene.mark("-i, -if and -it show what transmission-daemon shows for the same torrent");
            daemon.stop();
        },
    );
}
