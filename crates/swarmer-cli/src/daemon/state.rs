//! What every HTTP handler shares: the manager to ask and the guard's access rules. Its own module
//! so that the JSON API and the Transmission RPC both depend on it, not on each other.

use std::path::PathBuf;
use std::sync::Arc;

use super::download_dir::Roots;
use super::guard::Guard;
use super::manager::Manager;

/// The state axum hands to the JSON API's and the Transmission RPC's handlers.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The torrent manager's handle.
    pub(crate) manager: Manager,
    /// The access rules (the login endpoint checks the token with them).
    pub(crate) guard: Arc<Guard>,
    /// The watch folder, resolved: the one directory `torrent-add` may read a local .torrent from.
    pub(crate) watch_dir: Option<PathBuf>,
    /// The download roots (the manager checks every download directory against its own copy;
    /// this one bounds what `free-space` may look at).
    pub(crate) roots: Roots,
}
