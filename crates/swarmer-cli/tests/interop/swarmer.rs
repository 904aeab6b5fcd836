//! Runs the `swarmer` binary under test: `swarmer download` as the leecher of each case.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::procs::Proc;
use crate::scene::Scene;

/// swarmer's own address; every real client has another.
pub(crate) const IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
pub(crate) const PORT: u16 = 6890;

/// Runs `swarmer download TORRENT -o OUT -v` from 127.0.0.10 and asserts that it exits 0 before
/// the test's deadline. Returns the output directory. Its stderr (the tracing log) is printed if
/// the test fails.
pub(crate) fn download(scene: &Scene, torrent: &Path) -> PathBuf {
    let out = scene.subdir("swarmer-download");
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarmer"));
    command
        .arg("download")
        .arg(torrent)
        .arg("-o")
        .arg(&out)
        .args([
            "--bind-address",
            &IP.to_string(),
            "--port",
            &PORT.to_string(),
            "-v",
        ])
        .env_remove("RUST_LOG");
    scene.mark("starting swarmer download");
    let mut proc = Proc::spawn("swarmer", &mut command, &scene.logs);
    match proc.wait_exit(scene.deadline) {
        Some(status) if status.success() => scene.mark("swarmer download exited 0"),
        Some(status) => panic!("{} exited with {status}", proc.name()),
        None => panic!("{} did not finish before the test's deadline", proc.name()),
    }
    out
}
