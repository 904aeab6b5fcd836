//! libtorrent peers, driven by `lt_peer.py` under the system Python (the only interpreter that
//! has python3-libtorrent).

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, SystemTime};

use crate::procs::Proc;
use crate::scene::Scene;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/lt_peer.py")
}

/// How a libtorrent peer is started.
pub(crate) struct LtOptions<'a> {
    pub(crate) torrent: &'a Path,
    /// The parent of the payload's file or top directory.
    pub(crate) save_path: &'a Path,
    pub(crate) listen: SocketAddr,
    /// Trust the data without checking it or verifying it while serving: a lying seeder.
    pub(crate) seed_mode: bool,
    /// Addresses it never connects to nor accepts (libtorrent's IP filter).
    pub(crate) block: &'a [Ipv4Addr],
    /// Upload limit in bytes per second, applied to loopback peers too.
    pub(crate) upload_rate_limit: Option<u64>,
    /// Report every verified piece as a `piece` event.
    pub(crate) progress: bool,
    /// Local Service Discovery (BEP 14) on; off by default, like every discovery but the tracker.
    pub(crate) lsd: bool,
    /// Turn the DHT on, joining through these nodes (`ip:port,ip:port`).
    pub(crate) dht_bootstrap: Option<&'a str>,
    /// Exchange peers (BEP 11 PEX); off unless a test is about it.
    pub(crate) pex: bool,
    /// Add the torrent by its info hash only, fetching the metadata from peers (BEP 9).
    pub(crate) magnet: bool,
    /// Add the torrent by its v2 info hash alone (`urn:btmh:` with the torrent's trackers): it
    /// announces, and connects, under the truncated SHA-256 only until it has the metadata.
    pub(crate) magnet_v2: bool,
    /// Resume up to this many times after libtorrent stops the torrent with error 217 ("v1 and
    /// v2 hashes do not describe the same data"), each logged as an `inconsistent_hashes` event.
    pub(crate) recover_inconsistent_hashes: u32,
    /// Peers it dials as soon as the torrent is added.
    pub(crate) connect: &'a [SocketAddr],
    /// List the connected peers, with the bytes exchanged with each, in its `stopped` event.
    pub(crate) report_peers: bool,
    /// `forced`: RC4 (MSE) only, both ways; `plaintext`: no MSE; `None`: libtorrent's default.
    pub(crate) encryption: Option<&'a str>,
    /// Connect and accept over uTP only (TCP connections are closed at once).
    pub(crate) utp_only: bool,
    /// Give up (exit 2 if unfinished) after this long rather than at the test's deadline.
    pub(crate) timeout: Option<Duration>,
}

impl<'a> LtOptions<'a> {
    /// An honest, unlimited peer that blocks nobody.
    pub(crate) fn new(torrent: &'a Path, save_path: &'a Path, listen: SocketAddr) -> Self {
        LtOptions {
            torrent,
            save_path,
            listen,
            seed_mode: false,
            block: &[],
            upload_rate_limit: None,
            progress: false,
            lsd: false,
            dht_bootstrap: None,
            pex: false,
            magnet: false,
            magnet_v2: false,
            recover_inconsistent_hashes: 0,
            connect: &[],
            report_peers: false,
            encryption: None,
            utp_only: false,
            timeout: None,
        }
    }
}

fn command(mode: &str, options: &LtOptions<'_>, scene: &Scene) -> Command {
    let mut command = Command::new("/usr/bin/python3");
    command
        .arg(script())
        .arg(mode)
        .arg("--torrent")
        .arg(options.torrent)
        .arg("--save-path")
        .arg(options.save_path)
        .arg("--listen")
        .arg(options.listen.to_string())
        .arg("--high-performance")
        .arg("--timeout")
        .arg(
            options
                .timeout
                .map_or(scene.deadline.remaining(), |t| {
                    t.min(scene.deadline.remaining())
                })
                .as_secs()
                .to_string(),
        );
    if options.seed_mode {
        command.arg("--seed-mode");
    }
    for ip in options.block {
        command.arg("--block-ip").arg(ip.to_string());
    }
    if let Some(limit) = options.upload_rate_limit {
        command.arg("--upload-rate-limit").arg(limit.to_string());
    }
    if options.progress {
        command.arg("--progress");
    }
    if options.lsd {
        command.arg("--lsd");
    }
    if let Some(nodes) = options.dht_bootstrap {
        command.arg("--dht-bootstrap").arg(nodes);
    }
    if options.pex {
        command.arg("--pex");
    }
    if options.magnet {
        command.arg("--magnet");
    }
    if options.magnet_v2 {
        command.arg("--magnet-v2");
    }
    if options.recover_inconsistent_hashes > 0 {
        command
            .arg("--recover-inconsistent-hashes")
            .arg(options.recover_inconsistent_hashes.to_string());
    }
    for peer in options.connect {
        command.arg("--connect").arg(peer.to_string());
    }
    if options.report_peers {
        command.arg("--report-peers");
    }
    if let Some(encryption) = options.encryption {
        command.arg("--encryption").arg(encryption);
    }
    if options.utp_only {
        // 4 MiB socket buffers, as swarmer's: the default UDP receive buffer drops datagrams on
        // loopback (see docs: interop notes).
        command.args(["--utp-only", "--socket-buffer", "4194304"]);
    }
    command
}

/// `lt_peer.py MODE --listen ADDR --timeout T` with no torrent (the `dht` mode); callers add the rest.
pub(crate) fn bare_command(mode: &str, listen: SocketAddr, scene: &Scene) -> Command {
    let mut command = Command::new("/usr/bin/python3");
    command
        .arg(script())
        .arg(mode)
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--timeout")
        .arg(scene.deadline.remaining().as_secs().to_string());
    command
}

/// Starts a seeder and waits until it has checked its data and seeds. It re-announces every
/// 2 s, ignoring opentracker's long min interval, so the tracker lists it promptly.
///
/// python3-libtorrent 2.0.8 now and then dies of SIGSEGV while it checks its files (about once
/// in a few hundred starts here). A seeder that crashed before it seeded has not met the client
/// under test, so it is started once more rather than failing the test.
pub(crate) fn seed(scene: &Scene, name: &str, options: &LtOptions<'_>) -> Proc {
    let mut proc = download_and_seed(scene, name, options);
    wait_seeding(scene, name, options, &mut proc);
    scene.mark(&format!("{name} seeds on {}", options.listen));
    proc
}

/// Waits until `proc`, started by `download_and_seed` as `name` with `options`, has every piece
/// and seeds; returns its `seeding` event line. python3-libtorrent 2.0.8 now and then dies of
/// SIGSEGV inside its own threads (while checking, or while downloading as a relay); such a peer is
/// started once more with the same options as `NAME-again`, replacing `proc`, and resumes from the
/// data it has. Any other exit, or a second crash, fails.
pub(crate) fn wait_seeding(
    scene: &Scene,
    name: &str,
    options: &LtOptions<'_>,
    proc: &mut Proc,
) -> String {
    let seeding = |l: &str| l.contains(r#""event": "seeding""#);
    match proc.wait_for_line_or_exit("seeding", scene.deadline, seeding) {
        Ok(line) => line,
        Err(status) => {
            assert_eq!(
                status.signal(),
                Some(SIGSEGV),
                "{name} exited before it seeded with {status}\n{}",
                proc.stderr_text()
            );
            scene.mark(&format!("{name} crashed ({status}); starting it again"));
            *proc = download_and_seed(scene, &format!("{name}-again"), options);
            proc.wait_for_line("seeding", scene.deadline, seeding)
        }
    }
}

const SIGSEGV: i32 = 11;

/// Starts a peer that downloads what is missing from its save path, then seeds (printing a
/// `seeding` event) and re-announces every 2 s, until killed. Does not wait for anything.
pub(crate) fn download_and_seed(scene: &Scene, name: &str, options: &LtOptions<'_>) -> Proc {
    let mut command = command("seed", options, scene);
    command.args(["--reannounce", "2"]);
    Proc::spawn(name, &mut command, &scene.logs)
}

/// Starts a leecher; it exits 0 once every piece is verified.
pub(crate) fn leech(scene: &Scene, name: &str, options: &LtOptions<'_>) -> Proc {
    Proc::spawn(name, &mut command("leech", options, scene), &scene.logs)
}

/// Waits until a leecher started by `leech` as `name` exits and returns its status (`None` past the
/// deadline). python3-libtorrent 2.0.8 now and then dies of SIGSEGV inside its own threads (seen in
/// leechers and seeders alike, whoever the other peer is); such a leecher is started once more with the
/// same options, resumes from the data it has, and its status is returned instead. Another crash fails.
pub(crate) fn wait_leecher(
    scene: &Scene,
    name: &str,
    options: &LtOptions<'_>,
    leecher: &mut Proc,
) -> Option<ExitStatus> {
    let status = leecher.wait_exit(scene.deadline)?;
    if status.signal() != Some(SIGSEGV) {
        return Some(status);
    }
    scene.mark(&format!(
        "{name} crashed inside libtorrent ({status}); starting it again\n{}",
        leecher.stderr_text()
    ));
    *leecher = leech(scene, &format!("{name}-again"), options);
    leecher.wait_exit(scene.deadline)
}

/// The JSON events a libtorrent peer printed with the given `event` name.
pub(crate) fn events(proc: &Proc, event: &str) -> Vec<serde_json::Value> {
    events_in(&proc.stdout_text(), event)
}

/// The events named `event` of a leecher started as `name` over all its runs: [`wait_leecher`]
/// starts a crashed one again as `NAME-again`, and each run reports only what it did itself.
pub(crate) fn leecher_events(scene: &Scene, name: &str, event: &str) -> Vec<serde_json::Value> {
    [name.to_owned(), format!("{name}-again")]
        .iter()
        .flat_map(|run| {
            let log = std::fs::read_to_string(scene.logs.join(format!("{run}.stdout")));
            events_in(&log.unwrap_or_default(), event)
        })
        .collect()
}

fn events_in(stdout: &str, event: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == event)
        .collect()
}

/// The wall-clock time an event was printed (its `time` field).
pub(crate) fn event_time(event: &serde_json::Value) -> SystemTime {
    let seconds = event["time"].as_f64().expect("event without a time");
    SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds)
}
