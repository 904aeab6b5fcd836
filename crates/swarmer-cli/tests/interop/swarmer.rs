//! Runs the `swarmer` binary under test: `swarmer download` as a leecher, `swarmer seed` as a
//! seeder, and `swarmer download --seed` as a peer that relays while it downloads.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::procs::Proc;
use crate::scene::Scene;
use crate::tracker;

/// swarmer's own address; every real client has another.
pub(crate) const IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
pub(crate) const PORT: u16 = 6890;
/// How long swarmer may take to announce `stopped` and exit after a signal.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The address swarmer listens on and announces.
pub(crate) fn addr() -> SocketAddr {
    SocketAddr::from((IP, PORT))
}

/// The flags that turn off swarmer's discovery of peers beyond the test's tracker (on by default in
/// the CLI). Every test passes them all, except a test about one of them, which drops that one.
pub(crate) const DISCOVERY_OFF: &[&str] =
    &["--no-lsd", "--no-dht", "--no-pex", "--no-port-mapping"];

/// `swarmer SUBCOMMAND TORRENT -o OUT --bind-address 127.0.0.10 --port 6890 -v` plus
/// [`DISCOVERY_OFF`], without RUST_LOG from the environment, so `-v` decides what the log shows.
fn command(subcommand: &str, torrent: &Path, out: &Path) -> Command {
    command_at(subcommand, torrent, out, addr(), DISCOVERY_OFF)
}

/// [`DISCOVERY_OFF`] without `flag`: for a test about that kind of discovery.
fn discovery_off_except(flag: &str) -> Vec<&'static str> {
    DISCOVERY_OFF
        .iter()
        .copied()
        .filter(|f| *f != flag)
        .collect()
}

/// `command` with the DHT on (the CLI's default); callers add `--dht-bootstrap`.
fn command_with_dht(subcommand: &str, torrent: &Path, out: &Path) -> Command {
    command_with_dht_at(subcommand, torrent, out, addr())
}

/// [`command_with_dht`] bound to `at` (unspecified: dual-stack).
fn command_with_dht_at(subcommand: &str, torrent: &Path, out: &Path, at: SocketAddr) -> Command {
    command_at(
        subcommand,
        torrent,
        out,
        at,
        &discovery_off_except("--no-dht"),
    )
}

/// `command` with peer exchange on (the CLI's default).
pub(crate) fn command_with_pex(subcommand: &str, torrent: &Path, out: &Path) -> Command {
    command_at(
        subcommand,
        torrent,
        out,
        addr(),
        &discovery_off_except("--no-pex"),
    )
}

/// `swarmer SUBCOMMAND TORRENT -o OUT --bind-address IP --port PORT -v` plus `flags`; an
/// unspecified IP (`0.0.0.0`) gives no `--bind-address`: swarmer's default, dual-stack.
/// `XDG_CACHE_HOME` and `XDG_STATE_HOME` point into the scene (next to `OUT`), so no run writes
/// to the real home, and reruns in one scene find the state the first run kept.
fn command_at(
    subcommand: &str,
    torrent: &Path,
    out: &Path,
    at: SocketAddr,
    flags: &[&str],
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarmer"));
    let scene_dir = out.parent().unwrap_or(out);
    command.env("XDG_CACHE_HOME", scene_dir.join("xdg-cache"));
    command.env("XDG_STATE_HOME", scene_dir.join("xdg-state"));
    command.arg(subcommand).arg(torrent).arg("-o").arg(out);
    if !at.ip().is_unspecified() {
        command.args(["--bind-address", &at.ip().to_string()]);
    }
    command
        .args(["--port", &at.port().to_string(), "-v"])
        .args(flags)
        .env_remove("RUST_LOG");
    command
}

/// Runs `swarmer download TORRENT -o OUT -v` from 127.0.0.10 and asserts that it exits 0 before
/// the test's deadline. Returns the output directory. Its stderr (the tracing log) is printed if
/// the test fails.
pub(crate) fn download(scene: &Scene, torrent: &Path) -> PathBuf {
    download_with(scene, torrent, &[])
}

/// `download` with `extra` arguments.
pub(crate) fn download_with(scene: &Scene, torrent: &Path, extra: &[&str]) -> PathBuf {
    let out = scene.subdir("swarmer-download");
    let mut proc = start_download(scene, "swarmer", torrent, &out, extra);
    expect_success(scene, &mut proc);
    out
}

/// Asserts that a swarmer run exits 0 before the test's deadline.
pub(crate) fn expect_success(scene: &Scene, proc: &mut Proc) {
    let status = proc.wait_exit(scene.deadline);
    check_success(scene, proc, status);
}

fn check_success(scene: &Scene, proc: &Proc, status: Option<std::process::ExitStatus>) {
    match status {
        Some(status) if status.success() => scene.mark(&format!("{} exited 0", proc.name())),
        Some(status) => panic!("{} exited with {status}", proc.name()),
        None => panic!("{} did not finish before the test's deadline", proc.name()),
    }
}

/// Asserts that a swarmer run fails before the test's deadline (a non-zero exit code, not death by a
/// signal) and returns its error message: the last line of its stderr.
pub(crate) fn expect_failure(scene: &Scene, proc: &mut Proc) -> String {
    expect_error_exit(proc, scene.deadline, "; expected an error exit");
    last_line(&proc.stderr_text()).to_owned()
}

/// Waits for `proc` to exit with an error (a non-zero code, not death by a signal) before
/// `deadline`; panics otherwise, saying after "still runs" what was `expected`.
fn expect_error_exit(proc: &mut Proc, deadline: crate::deadline::Deadline, expected: &str) {
    match proc.wait_exit(deadline) {
        Some(status) => assert!(
            !status.success() && status.code().is_some(),
            "{} exited with {status}; expected an error exit",
            proc.name()
        ),
        None => panic!("{} still runs{}", proc.name(), expected),
    }
}

/// The last non-empty line of `text`: a failed swarmer's error message, from its stderr.
pub(crate) fn last_line(text: &str) -> &str {
    let line = text.lines().rev().find(|l| !l.trim().is_empty());
    line.expect("an error message on stderr")
}

/// Starts `swarmer download TORRENT -o OUT -v` plus `extra` arguments from 127.0.0.10 as the
/// process `name` (its log files' name), without waiting for anything.
pub(crate) fn start_download(
    scene: &Scene,
    name: &str,
    torrent: &Path,
    out: &Path,
    extra: &[&str],
) -> Proc {
    start_download_at(scene, name, torrent, out, addr(), extra)
}

/// [`start_download`] bound to `at` (unspecified: dual-stack, on `at`'s port).
pub(crate) fn start_download_at(
    scene: &Scene,
    name: &str,
    torrent: &Path,
    out: &Path,
    at: SocketAddr,
    extra: &[&str],
) -> Proc {
    let mut command = command_at("download", torrent, out, at, DISCOVERY_OFF);
    command.args(extra);
    scene.mark(&format!("starting swarmer download ({name})"));
    Proc::spawn(name, &mut command, &scene.logs)
}

/// A finished `swarmer download`, measured.
pub(crate) struct Measured {
    /// Its output directory.
    pub(crate) out: PathBuf,
    /// The process, for its log.
    pub(crate) proc: Proc,
    /// From the spawn to the exit.
    pub(crate) took: Duration,
    /// Its peak resident set size (`VmHWM`), KiB.
    pub(crate) peak_rss_kib: u64,
}

/// `download_with`, measuring the time to exit and the peak memory of the process. `listening` runs
/// once swarmer says it listens for peers (its `-v` log), before the download is waited for.
pub(crate) fn download_measured(
    scene: &Scene,
    torrent: &Path,
    extra: &[&str],
    listening: impl FnOnce(),
) -> Measured {
    let out = scene.subdir("swarmer-download");
    let started = std::time::Instant::now();
    let mut proc = start_download(scene, "swarmer", torrent, &out, extra);
    proc.wait_for_stderr_line("`listening for peers`", scene.deadline, |l| {
        l.contains("listening for peers")
    });
    listening();
    let (status, peak_rss_kib) = proc.wait_exit_peak_rss(scene.deadline);
    let took = started.elapsed();
    check_success(scene, &proc, status);
    Measured {
        out,
        proc,
        took,
        peak_rss_kib,
    }
}

/// Starts `swarmer seed TORRENT -o DIR -v` (the payload is `DIR/NAME`) from 127.0.0.10 plus
/// `extra` arguments, and waits until the tracker lists it, which it does once it has verified
/// its data. The returned process seeds until stopped.
pub(crate) fn seed(scene: &Scene, torrent: &Path, dir: &Path, extra: &[&str]) -> Proc {
    let mut command = command("seed", torrent, dir);
    command.args(extra);
    scene.mark("starting swarmer seed");
    let mut proc = Proc::spawn("swarmer", &mut command, &scene.logs);
    let what = format!("the tracker to list swarmer seed at {}", addr());
    scene.deadline.poll(&what, Duration::from_millis(100), || {
        proc.assert_running();
        tracker::listed(torrent).contains(&addr()).then_some(())
    });
    scene.mark("tracker lists swarmer seed");
    proc
}

/// Starts `swarmer download TORRENT -o OUT --seed -v` from 127.0.0.10 plus `extra` arguments,
/// without waiting for anything. Returns the process and the output directory.
pub(crate) fn download_and_seed(scene: &Scene, torrent: &Path, extra: &[&str]) -> (Proc, PathBuf) {
    let out = scene.subdir("swarmer-download");
    let mut command = command("download", torrent, &out);
    command.arg("--seed").args(extra);
    scene.mark("starting swarmer download --seed");
    let proc = Proc::spawn("swarmer", &mut command, &scene.logs);
    (proc, out)
}

/// Waits until a `swarmer download --seed` says its download is complete, and returns a
/// wall-clock time before it said so (see `Proc::wait_for_stderr_line`).
pub(crate) fn wait_download_complete(scene: &Scene, proc: &mut Proc) -> SystemTime {
    let before = proc.wait_for_stderr_line("`download complete`", scene.deadline, |l| {
        l.contains("download complete")
    });
    scene.mark("swarmer says its download is complete");
    before
}

/// Stops a seeding swarmer the way a user or a service manager does (`signal` is `INT` or
/// `TERM`) and asserts that it shuts down gracefully: it exits 0 by itself, promptly, and has
/// announced `stopped`, so the tracker no longer hands it out.
pub(crate) fn stop(scene: &Scene, proc: &mut Proc, signal: &str, torrent: &Path) {
    proc.assert_running();
    let status = proc
        .signal(signal, STOP_TIMEOUT)
        .unwrap_or_else(|| panic!("swarmer still runs {STOP_TIMEOUT:?} after SIG{signal}"));
    // Death by the signal itself would mean it never handled it (and announced nothing); and
    // stopping a seed is how seeding normally ends, so anything but exit 0 is wrong.
    assert!(
        status.success(),
        "swarmer exited with {status} after SIG{signal}; expected a graceful exit 0"
    );
    scene.mark(&format!("swarmer exited 0 after SIG{signal}"));
    assert_unlisted(scene, torrent);
}

/// Asserts that a seeding swarmer stops by itself (a --seed-ratio or --seed-time limit) with
/// exit 0 within `within`, and has announced `stopped`.
pub(crate) fn wait_stops_by_itself(
    scene: &Scene,
    proc: &mut Proc,
    torrent: &Path,
    within: Duration,
) {
    let deadline = crate::deadline::Deadline::after(within.min(scene.deadline.remaining()));
    match proc.wait_exit(deadline) {
        Some(status) => assert!(status.success(), "swarmer exited with {status}"),
        None => panic!("swarmer still seeds {within:?} later; expected it to stop by itself"),
    }
    scene.mark("swarmer stopped seeding by itself and exited 0");
    assert_unlisted(scene, torrent);
}

fn assert_unlisted(scene: &Scene, torrent: &Path) {
    let peers = tracker::listed(torrent);
    assert!(
        !peers.contains(&addr()),
        "tracker still lists swarmer at {} after it stopped: {peers:?}",
        addr()
    );
    scene.mark("tracker no longer lists swarmer");
}

/// Runs `swarmer seed TORRENT -o DIR -v` where the data is missing or corrupt, asserts that it
/// fails (a non-zero exit within `within`, not a seeder that serves bad data) and returns its
/// stderr, which should say why.
pub(crate) fn seed_fails(
    scene: &Scene,
    name: &str,
    torrent: &Path,
    dir: &Path,
    within: Duration,
) -> String {
    let mut proc = Proc::spawn(name, &mut command("seed", torrent, dir), &scene.logs);
    let deadline = crate::deadline::Deadline::after(within.min(scene.deadline.remaining()));
    expect_error_exit(
        &mut proc,
        deadline,
        &format!(" after {within:?}; expected it to refuse the data"),
    );
    let stderr = proc.stderr_text();
    // A usage error would mean the command line is wrong, not that the data was judged.
    assert!(
        !stderr.contains("Usage:"),
        "{name} rejected its command line instead of its data:\n{stderr}"
    );
    stderr
}

/// The log lines in which swarmer dropped a peer for misbehaving, without colour codes.
pub(crate) fn dropped_as_misbehaving(proc: &Proc) -> Vec<String> {
    proc.stderr_text()
        .lines()
        .filter(|l| l.contains("disconnecting peer: misbehaved"))
        .map(strip_ansi)
        .collect()
}

/// `line` without ANSI SGR sequences (`ESC [ ... m`), which the tracing log contains.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A second swarmer's address, for tests with two swarmers.
pub(crate) const SECOND_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    Ipv4Addr::new(127, 0, 0, 20),
    6891,
));

/// Starts `swarmer SUBCOMMAND TORRENT -o OUT -v` bound to `at` as the process `name`, with Local
/// Service Discovery on (BEP 14; every other discovery flag of [`DISCOVERY_OFF`] still given), plus
/// `extra` arguments. Does not wait for anything.
pub(crate) fn start_with_lsd(
    scene: &Scene,
    name: &str,
    subcommand: &str,
    torrent: &Path,
    out: &Path,
    at: SocketAddr,
    extra: &[&str],
) -> Proc {
    let mut flags = discovery_off_except("--no-lsd");
    flags.extend_from_slice(extra);
    let mut command = command_at(subcommand, torrent, out, at, &flags);
    scene.mark(&format!(
        "starting swarmer {subcommand} ({name}) on {at} with LSD"
    ));
    Proc::spawn(name, &mut command, &scene.logs)
}

/// The peers a swarmer's `-v` log says Local Service Discovery found, as written in the log
/// (`ADDR`, without colour codes).
pub(crate) fn found_by_lsd(proc: &Proc) -> Vec<String> {
    proc.stderr_text()
        .lines()
        .filter(|l| l.contains("peer found by local service discovery"))
        .map(strip_ansi)
        .collect()
}

/// Starts `swarmer download TORRENT -o OUT --seed -v` from 127.0.0.10 with the DHT on, plus `extra`
/// arguments (`--dht-bootstrap`), without waiting for anything. Returns the process and the output
/// directory.
pub(crate) fn download_and_seed_with_dht(
    scene: &Scene,
    torrent: &Path,
    extra: &[&str],
) -> (Proc, PathBuf) {
    download_and_seed_with_dht_at(scene, torrent, addr(), extra)
}

/// [`download_and_seed_with_dht`] bound to `at` (unspecified: dual-stack, on `at`'s port).
pub(crate) fn download_and_seed_with_dht_at(
    scene: &Scene,
    torrent: &Path,
    at: SocketAddr,
    extra: &[&str],
) -> (Proc, PathBuf) {
    let out = scene.subdir("swarmer-download");
    let mut command = command_with_dht_at("download", torrent, &out, at);
    command.arg("--seed").args(extra);
    scene.mark("starting swarmer download --seed with the DHT");
    let proc = Proc::spawn("swarmer", &mut command, &scene.logs);
    (proc, out)
}

/// Starts `swarmer download SOURCE -o OUT -v` from 127.0.0.10 with the DHT on (plus `extra`, e.g.
/// `--dht-bootstrap`), without waiting for anything. `source` may be a magnet link.
pub(crate) fn start_download_with_dht(
    scene: &Scene,
    source: &str,
    out: &Path,
    extra: &[&str],
) -> Proc {
    let mut command = command_with_dht("download", Path::new(source), out);
    command.args(extra);
    scene.mark("starting swarmer download with the DHT");
    Proc::spawn("swarmer", &mut command, &scene.logs)
}

/// Starts `swarmer seed TORRENT -o DIR -v` (the payload is `DIR/NAME`) as the process `name`,
/// bound to `at`, with every discovery flag of [`DISCOVERY_OFF`], and waits until it says it seeds
/// (its data verified). Needs no tracker: for peers that dial it directly, such as a magnet
/// link's `x.pe`. Used by tests/daemon.rs, which shares this module.
#[allow(dead_code)]
pub(crate) fn seed_at(
    scene: &Scene,
    name: &str,
    torrent: &Path,
    dir: &Path,
    at: SocketAddr,
) -> Proc {
    let mut command = command_at("seed", torrent, dir, at, DISCOVERY_OFF);
    scene.mark(&format!("starting swarmer seed ({name}) on {at}"));
    let mut proc = Proc::spawn(name, &mut command, &scene.logs);
    proc.wait_for_stderr_line("`seeding`", scene.deadline, |l| {
        l.contains("seeding (Ctrl-C to stop)")
    });
    scene.mark(&format!("{name} seeds"));
    proc
}
