//! Helpers for the extension-protocol interop tests: metadata served to a libtorrent magnet
//! leecher (BEP 9) and peers learnt through libtorrent's peer exchange (BEP 11).
//!
//! libtorrent 2.0.8 facts these tests rely on (measured here):
//! - A magnet added with `parse_magnet_uri("magnet:?xt=urn:btih:HEX")` and `connect_peer` fetches
//!   the metadata from that peer alone; no tracker is needed.
//! - Its ut_pex plugin sends a peer PEX messages on a timer of about a minute (60 s between
//!   messages); only peers it dialled, or that told it a listening port, are listed. A torrent
//!   added with `disable_pex` neither sends nor takes PEX, so a seeder with it off cannot learn
//!   swarmer's address from the relaying peer and dial swarmer itself.
//! - libtorrent drops a connection between two seeds, so the relaying peer must stay a leecher
//!   (its seeder's upload is rate-limited) until it has passed the seeder's address on.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::libtorrent;
use crate::procs::Proc;
use crate::scene::Scene;
use crate::swarmer;

/// Starts `swarmer download TORRENT -o OUT -vv` with peer exchange on (the CLI default) and
/// `--peer` for each of `peers`, as the only source of peers it is told about. Returns the
/// process and the output directory.
pub(crate) fn download_with_pex(
    scene: &Scene,
    torrent: &Path,
    peers: &[SocketAddr],
) -> (Proc, PathBuf) {
    let out = scene.subdir("swarmer-download");
    let mut command = swarmer::command_with_pex("download", torrent, &out);
    // A second -v: debug, which logs the peers each PEX message brought.
    command.arg("-v");
    for peer in peers {
        command.arg("--peer").arg(peer.to_string());
    }
    scene.mark("starting swarmer download with PEX");
    (Proc::spawn("swarmer", &mut command, &scene.logs), out)
}

/// What a libtorrent peer started with `report_peers` said, when stopped, of its (last) connection to
/// `ip`: (payload bytes it uploaded there, whether it dialled that peer itself). `None` when it
/// was not connected to `ip`.
pub(crate) fn connection_to(proc: &Proc, ip: IpAddr) -> Option<(u64, bool)> {
    let stopped = libtorrent::events(proc, "stopped");
    let peers = stopped.last()?["peers"].as_array()?.clone();
    peers
        .iter()
        .find(|p| p["ip"].as_str() == Some(&ip.to_string()))
        .map(|p| {
            (
                p["uploaded"].as_u64().unwrap_or(0),
                p["outgoing"].as_bool().unwrap_or(true),
            )
        })
}

/// The debug log lines in which swarmer reported peers from a PEX message.
pub(crate) fn pex_lines(proc: &Proc) -> Vec<String> {
    proc.stderr_text()
        .lines()
        .filter(|l| l.contains("peers from peer exchange"))
        .map(str::to_owned)
        .collect()
}
