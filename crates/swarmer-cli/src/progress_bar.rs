//! The terminal progress bar's looks and the one bar on screen: `download`, `seed` and `verify`
//! draw the same styles, and log lines (see `logging`) are printed above the bar that is shown.

use std::sync::OnceLock;

use indicatif::{ProgressBar, ProgressStyle};
use swarmer::TorrentState;

/// The progress bar while one is shown, so log lines can be printed above it instead of through it.
static SHOWN: OnceLock<ProgressBar> = OnceLock::new();

/// Makes `bar` the one log lines are printed above (the first bar shown keeps the place).
pub(crate) fn show(bar: &ProgressBar) {
    let _ = SHOWN.set(bar.clone());
}

/// The bar on screen, if one was shown.
pub(crate) fn shown() -> Option<&'static ProgressBar> {
    SHOWN.get()
}

/// What the bar counts: pieces checked, or bytes verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Hashing data already on disk: the bar counts pieces.
    Checking,
    /// Downloading or seeding: the bar counts verified bytes.
    Transfer,
}

impl Phase {
    /// The phase a torrent in `state` is in.
    pub(crate) fn of(state: &TorrentState) -> Phase {
        match state {
            TorrentState::Checking => Phase::Checking,
            _ => Phase::Transfer,
        }
    }

    /// The bar's look for this phase (also `swarmer verify`'s, which only checks).
    pub(crate) fn style(self) -> ProgressStyle {
        let template = match self {
            Phase::Checking => {
                "{prefix} checking [{bar:30}] {percent:>3}% {pos}/{len} pieces {msg}"
            }
            Phase::Transfer => "{prefix} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {msg}",
        };
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> ")
    }
}

/// The bar's look while a magnet link's metadata is fetched.
pub(crate) fn metadata_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {spinner} fetching metadata: {msg}")
        .expect("valid template")
}
