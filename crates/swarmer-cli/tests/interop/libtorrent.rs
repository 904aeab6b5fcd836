//! libtorrent peers, driven by `lt_peer.py` under the system Python (the only interpreter that
//! has python3-libtorrent).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    command
}

/// Starts a seeder and waits until it has checked its data and seeds. It re-announces every
/// 2 s, ignoring opentracker's long min interval, so the tracker lists it promptly.
pub(crate) fn seed(scene: &Scene, name: &str, options: &LtOptions<'_>) -> Proc {
    let mut command = command("seed", options, scene);
    command.args(["--reannounce", "2"]);
    let mut proc = Proc::spawn(name, &mut command, &scene.logs);
    proc.wait_for_line("seeding", scene.deadline, |l| {
        l.contains(r#""event": "seeding""#)
    });
    scene.mark(&format!("{name} seeds on {}", options.listen));
    proc
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
