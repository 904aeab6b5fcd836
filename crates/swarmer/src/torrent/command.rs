//! What a torrent's owner task is asked to do by its handle, the session's listener and LSD
//! ([`Command`]), through its bounded command queue.

use std::net::SocketAddr;

use swarmer_proto::FilePriority;
use tokio::sync::oneshot;

use crate::error::TorrentError;
use crate::peer::Incoming;

/// A request to a torrent's owner task.
pub(crate) enum Command {
    /// A connection for this torrent that the listener accepted. Boxed: the other commands are
    /// small, and a channel allocates room for 32 commands up front, per torrent.
    Incoming(Box<Incoming>),
    /// Addresses to dial (from the user, a magnet link or LSD).
    AddPeers(Vec<SocketAddr>),
    /// New file priorities, answered when they are in effect.
    SetFilePriorities(Vec<FilePriority>, oneshot::Sender<Result<(), TorrentError>>),
    /// Announce to the trackers now, answered with whether there are trackers to ask.
    Reannounce(oneshot::Sender<bool>),
    /// A [`Details`](super::progress::Details) snapshot.
    Details(oneshot::Sender<super::progress::Details>),
    /// Stop, answered once the torrent has let go of its peers.
    Stop(oneshot::Sender<()>),
}
