//! The first ten minutes on the command line, as a new user meets them: the progress bar on an
//! 80-column terminal (a real pseudo-terminal, through util-linux's `script`), a download given by
//! the URL of its .torrent file, `-o` naming a file, and a machine without a multicast route, where
//! Local Service Discovery cannot run and must not say so as a warning.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::netns::isolated;
use crate::procs::Proc;
use crate::scene::Scene;
use crate::tracker::{HTTP_ANNOUNCE, Tracker};
use crate::{MIB, WITH_TRACKER, single_file, swarmer};

/// Where the downloading swarmer of these tests runs (the seeder is at `swarmer::addr()`).
const LEECHER_IP: &str = "127.0.0.20";
const LEECHER_PORT: &str = "6890";

/// `swarmer download TORRENT -o OUT` from [`LEECHER_IP`] with discovery off, its state in the scene,
/// plus `extra`, as a shell command line (the paths of a scene hold no spaces or quotes).
fn download_line(scene: &Scene, torrent: &str, out: &Path, extra: &str) -> String {
    format!(
        "{bin} download {torrent} -o {out} --bind-address {LEECHER_IP} --port {LEECHER_PORT} \
         --no-dht --no-lsd --no-pex --no-port-mapping --state-dir {state} {extra}",
        bin = env!("CARGO_BIN_EXE_swarmer"),
        out = out.display(),
        state = scene.dir.join("leecher-state").display(),
    )
}

/// Runs `line` in a pseudo-terminal of 80 columns and 24 rows (util-linux `script`, which
/// passes the command's exit status on).
fn in_terminal(scene: &Scene, name: &str, line: &str) -> Proc {
    let mut command = Command::new("script");
    command
        .args(["-q", "-e", "-f", "-c"])
        .arg(format!("stty cols 80 rows 24 && exec {line}"))
        .arg("/dev/null")
        .env("TERM", "xterm")
        .env_remove("RUST_LOG");
    Proc::spawn(name, &mut command, &scene.logs)
}

/// The lines a terminal showed, each redraw separately: split at carriage returns and line
/// feeds, with the escape sequences (colours, cursor moves, line clears) taken out.
fn screen_lines(raw: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ parameters final-byte.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' | '\n' => {
                if !line.trim().is_empty() {
                    out.push(std::mem::take(&mut line));
                }
                line.clear();
            }
            c => line.push(c),
        }
    }
    if !line.trim().is_empty() {
        out.push(line);
    }
    out
}

/// The percentage a bar line shows (`... [====>   ]  42% ...`), if it is one.
fn bar_percent(line: &str) -> Option<u64> {
    let after = &line[line.find("] ")? + 2..];
    after.split('%').next()?.trim().parse().ok()
}

/// The bar lines of `raw` (those that start with the torrent's name, cut to 18 columns).
fn bar_lines(raw: &str, name: &str) -> Vec<String> {
    let shown: String = name.chars().take(18).collect();
    screen_lines(raw)
        .into_iter()
        .filter(|l| l.starts_with(&shown))
        .collect()
}

/// Asserts what every bar of one run must be: one line of at most 80 columns, "1 peer" (never
/// "1 peers"), and a percentage that only grows, so no full bar flashes before the real one.
fn assert_bars(scene: &Scene, bars: &[String], run: &str) {
    assert!(!bars.is_empty(), "{run}: no progress bar was drawn");
    for line in bars {
        let columns = line.chars().count();
        assert!(
            columns <= 80,
            "{run}: a bar line of {columns} columns: {line:?}"
        );
        assert!(!line.contains("1 peers"), "{run}: {line:?}");
    }
    let percents: Vec<u64> = bars.iter().filter_map(|l| bar_percent(l)).collect();
    assert!(
        percents.windows(2).all(|w| w[0] <= w[1]),
        "{run}: the bar went back: {percents:?}"
    );
    scene.mark(&format!(
        "{run}: {} bar lines, all within 80 columns, percentages {:?}..{:?}",
        bars.len(),
        percents.first(),
        percents.last()
    ));
}

/// The process `script` runs the command as (its only child).
fn child_of(proc: &Proc) -> u32 {
    let pid = proc.pid();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .expect("read the children of script");
    children
        .split_whitespace()
        .next()
        .expect("script runs the command")
        .parse()
        .expect("a pid")
}

#[test]
fn progress_bar_fits_80_columns_says_1_peer_and_never_flashes_full() {
    isolated(
        "cli::progress_bar_fits_80_columns_says_1_peer_and_never_flashes_full",
        WITH_TRACKER,
        |scene| {
            let fixture = single_file(scene, 8 * MIB, 16, &[HTTP_ANNOUNCE]);
            let _tracker = Tracker::start(scene, &[&fixture.torrent]);
            let mut seeder = swarmer::seed(scene, &fixture.torrent, &fixture.seed_dir, &[]);
            let out = scene.subdir("download");
            let torrent = fixture.torrent.display().to_string();
            let name = "single.bin";
            let peer = format!("--peer {}", swarmer::addr());

            // A first run at 2 MiB/s, interrupted with Ctrl-C once the bar shows a third.
            let line = download_line(
                scene,
                &torrent,
                &out,
                &format!("{peer} --max-download-rate 2M"),
            );
            let mut first = in_terminal(scene, "swarmer-first", &line);
            scene
                .deadline
                .poll("the bar to pass 30 %", Duration::from_millis(50), || {
                    first.assert_running();
                    let shown = bar_lines(&first.stdout_text(), name);
                    shown
                        .iter()
                        .filter_map(|l| bar_percent(l))
                        .any(|p| p >= 30)
                        .then_some(())
                });
            let status = Command::new("kill")
                .args(["-INT", &child_of(&first).to_string()])
                .status()
                .expect("run kill");
            assert!(status.success());
            let exit = first
                .wait_exit(scene.deadline)
                .expect("the first run ends on Ctrl-C");
            assert_eq!(exit.code(), Some(130), "interrupted downloads exit 130");
            let bars = bar_lines(&first.stdout_text(), name);
            assert_bars(scene, &bars, "first run");
            assert!(
                bars.iter().any(|l| l.contains(" 1 peer ")),
                "no bar said `1 peer`: {bars:#?}"
            );

            // The rerun continues from the saved state: its bar starts where the first stopped,
            // without a full bar on the way, and ends at 100 % only once every piece is in.
            let line = download_line(
                scene,
                &torrent,
                &out,
                &format!("{peer} --max-download-rate 4M"),
            );
            let mut second = in_terminal(scene, "swarmer-second", &line);
            let exit = second
                .wait_exit(scene.deadline)
                .expect("the rerun completes");
            assert!(exit.success(), "the rerun failed: {}", second.stdout_text());
            let bars = bar_lines(&second.stdout_text(), name);
            assert_bars(scene, &bars, "rerun");
            let first_percent = bars.iter().find_map(|l| bar_percent(l));
            assert!(
                first_percent.is_some_and(|p| (30..100).contains(&p)),
                "the rerun's first bar should resume at 30-99 %: {bars:#?}"
            );
            fixture.payload.assert_same(&out.join(name));
            swarmer::stop(scene, &mut seeder, "TERM", &fixture.torrent);
        },
    );
}

/// Serves `body` at `http://127.0.0.1:PORT/t.torrent` on a thread, for one request; returns the
/// port and a handle that yields the request line it got.
fn serve_once(body: Vec<u8>) -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).expect("read the request");
            assert!(n > 0, "the client closed before its request ended");
            request.extend_from_slice(&buf[..n]);
        }
        let header = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-bittorrent\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(header.as_bytes()).expect("write");
        stream.write_all(&body).expect("write");
        String::from_utf8_lossy(&request)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    });
    (port, server)
}

#[test]
fn download_takes_a_torrent_url_and_refuses_a_file_as_output() {
    isolated(
        "cli::download_takes_a_torrent_url_and_refuses_a_file_as_output",
        WITH_TRACKER,
        |scene| {
            let fixture = single_file(scene, MIB, 16, &[HTTP_ANNOUNCE]);
            let _tracker = Tracker::start(scene, &[&fixture.torrent]);
            let mut seeder = swarmer::seed(scene, &fixture.torrent, &fixture.seed_dir, &[]);
            let out = scene.subdir("download");

            // `-o` naming a file is refused at once, with a line that says what -o wants.
            let file = scene.dir.join("not-a-directory");
            std::fs::write(&file, b"x").expect("write");
            let refused = Command::new("sh")
                .arg("-c")
                .arg(download_line(
                    scene,
                    &fixture.torrent.display().to_string(),
                    &file,
                    "",
                ))
                .output()
                .expect("run swarmer");
            let stderr = String::from_utf8_lossy(&refused.stderr);
            assert!(!refused.status.success());
            assert!(
                stderr.contains("is a file; -o takes the directory to download into"),
                "{stderr}"
            );
            assert_eq!(
                std::fs::read(&file).expect("read"),
                b"x",
                "the file is untouched"
            );
            scene.mark("-o naming a file is refused");

            // The .torrent by URL: fetched over HTTP, then downloaded as from a file.
            let body = std::fs::read(&fixture.torrent).expect("read torrent");
            let (port, server) = serve_once(body);
            let url = format!("http://127.0.0.1:{port}/t.torrent");
            let line = download_line(scene, &url, &out, &format!("--peer {}", swarmer::addr()));
            let mut command = Command::new("sh");
            command.arg("-c").arg(line);
            let mut download = Proc::spawn("swarmer-url", &mut command, &scene.logs);
            let exit = download
                .wait_exit(scene.deadline)
                .expect("the download ends");
            assert!(exit.success(), "{}", download.stderr_text());
            let request = server.join().expect("the server thread");
            assert_eq!(request, "GET /t.torrent HTTP/1.1");
            fixture.payload.assert_same(&out.join("single.bin"));
            scene.mark("downloaded by the .torrent's URL");
            swarmer::stop(scene, &mut seeder, "TERM", &fixture.torrent);
        },
    );
}

#[test]
fn no_multicast_route_is_not_a_warning() {
    isolated(
        "cli::no_multicast_route_is_not_a_warning",
        WITH_TRACKER,
        |scene| {
            let fixture = single_file(scene, MIB, 16, &[HTTP_ANNOUNCE]);
            let _tracker = Tracker::start(scene, &[&fixture.torrent]);
            // `swarmer seed` with Local Service Discovery on (the default) and no bind address, so
            // it joins the multicast group on the default interface: this namespace has only `lo`,
            // which takes no multicast route. It seeds for a second, then exits by itself.
            let seed = |name: &str, verbose: &[&str]| {
                let mut command = Command::new(env!("CARGO_BIN_EXE_swarmer"));
                command
                    .arg("seed")
                    .arg(&fixture.torrent)
                    .arg("-o")
                    .arg(&fixture.seed_dir)
                    .args([
                        "--port",
                        "6891",
                        "--no-dht",
                        "--no-port-mapping",
                        "--seed-time",
                        "1s",
                    ])
                    .arg("--state-dir")
                    .arg(scene.dir.join(format!("{name}-state")))
                    .args(verbose)
                    .env_remove("RUST_LOG");
                let mut proc = Proc::spawn(name, &mut command, &scene.logs);
                let exit = proc
                    .wait_exit(scene.deadline)
                    .expect("seeding ends by itself");
                assert!(exit.success(), "{}", proc.stderr_text());
                proc.stderr_text()
            };
            // Shown with -v: the condition is really there.
            let verbose = seed("swarmer-verbose", &["-v"]);
            assert!(
                verbose
                    .contains("local service discovery over IPv4 not started: no multicast route"),
                "{verbose}"
            );
            // Not a warning without it.
            let quiet = seed("swarmer-plain", &[]);
            assert!(
                !quiet.contains("WARN") && !quiet.contains("local service discovery"),
                "{quiet}"
            );
            scene.mark("no multicast route: info with -v, nothing without");
        },
    );
}
