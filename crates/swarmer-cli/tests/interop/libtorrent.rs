//! libtorrent peers, driven by `lt_peer.py` under the system Python (the only interpreter that
//! has python3-libtorrent).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
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
        .arg(scene.deadline.remaining().as_secs().to_string());
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
    command
}

/// Starts a seeder and waits until it has checked its data and seeds. It re-announces every
/// 2 s, ignoring opentracker's long min interval, so the tracker lists it promptly.
pub(crate) fn seed(scene: &Scene, name: &str, options: &LtOptions<'_>) -> Proc {
    let mut proc = download_and_seed(scene, name, options);
    proc.wait_for_line("seeding", scene.deadline, |l| {
        l.contains(r#""event": "seeding""#)
    });
    scene.mark(&format!("{name} seeds on {}", options.listen));
    proc
}

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

/// The JSON events a libtorrent peer printed with the given `event` name.
pub(crate) fn events(proc: &Proc, event: &str) -> Vec<serde_json::Value> {
    proc.stdout_text()
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
