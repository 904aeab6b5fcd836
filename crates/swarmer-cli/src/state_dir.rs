//! Where the daemon keeps its state (`swarmer.redb` and the generated API token): shared by
//! `swarmer daemon`, which writes there, and `swarmer add/list/remove`, which read the token.

use std::path::{Path, PathBuf};

/// The default state directory: `$XDG_STATE_HOME/swarmer`, else `$HOME/.local/state/swarmer`;
/// `None` when neither variable is set.
pub(crate) fn default_state_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })
        .map(|d| d.join("swarmer"))
}

/// The file holding the API token the daemon generated in `state_dir`.
pub(crate) fn token_file(state_dir: &Path) -> PathBuf {
    state_dir.join("token")
}
