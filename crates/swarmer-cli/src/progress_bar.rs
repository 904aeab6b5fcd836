//! The terminal progress bar's looks and the one bar on screen: `download`, `seed` and `verify`
//! draw the same styles, and log lines (see `logging`) are printed above the bar that is shown.

use std::fmt::Write;
use std::sync::OnceLock;

use indicatif::{ProgressBar, ProgressState, ProgressStyle};
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

    /// The bar's look for this phase (also `swarmer verify`'s, which only checks). One line that
    /// fits 80 columns: the name cut to 18 columns, the bar taking what the rest leaves,
    /// the percentage rounded down (so 100 % means every piece is in), then the message. A bar
    /// whose length is not known yet is drawn empty, never full.
    pub(crate) fn style(self) -> ProgressStyle {
        let template = match self {
            Phase::Checking => "{prefix:18!} checking [{wide_bar}] {pct}% {pos}/{len} pieces",
            Phase::Transfer => "{prefix:18!} [{wide_bar}] {pct}% {msg}",
        };
        ProgressStyle::with_template(template)
            .expect("valid template")
            .with_key("pct", |state: &ProgressState, w: &mut dyn Write| {
                let _ = write!(w, "{:>3}", floor_percent(state.pos(), state.len()));
            })
            .progress_chars("=> ")
    }
}

/// `done` of `total` in whole percent, rounded down: 100 only when `done == total`, however
/// large the total (indicatif's own `{percent}` rounds 99.5 % up, in single precision). 0 while
/// the total is unknown or zero.
pub(crate) fn floor_percent(done: u64, total: Option<u64>) -> u64 {
    match total {
        Some(total) if total > 0 => (u128::from(done.min(total)) * 100 / u128::from(total)) as u64,
        _ => 0,
    }
}

/// "1 peer", "3 peers".
pub(crate) fn peers(n: usize) -> String {
    if n == 1 {
        "1 peer".to_owned()
    } else {
        format!("{n} peers")
    }
}

/// "1 peer", "3 peers, 1 web seed", "0 peers, 2 web seeds": the peers, and the web seeds in use
/// when there are any.
pub(crate) fn sources(peers_n: usize, web_seeds: usize) -> String {
    match web_seeds {
        0 => peers(peers_n),
        1 => format!("{}, 1 web seed", peers(peers_n)),
        n => format!("{}, {n} web seeds", peers(peers_n)),
    }
}

/// The bar's look before the torrent says what it counts (its files opening, its check starting).
pub(crate) fn starting_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:18!} starting {msg}").expect("valid template")
}

/// The bar's look while a magnet link's metadata is fetched.
pub(crate) fn metadata_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {spinner} fetching metadata: {msg}")
        .expect("valid template")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentage_reaches_100_only_when_everything_is_in() {
        assert_eq!(floor_percent(0, None), 0);
        assert_eq!(floor_percent(0, Some(0)), 0);
        assert_eq!(floor_percent(995, Some(1000)), 99);
        assert_eq!(floor_percent(1000, Some(1000)), 100);
        // One 16 KiB block short of 4 TiB: single precision would say 100.
        let total = 4u64 << 40;
        assert_eq!(floor_percent(total - 16384, Some(total)), 99);
        assert_eq!(floor_percent(u64::MAX - 1, Some(u64::MAX)), 99);
    }

    #[test]
    fn one_peer_is_a_peer() {
        assert_eq!(peers(0), "0 peers");
        assert_eq!(peers(1), "1 peer");
        assert_eq!(peers(2), "2 peers");
        assert_eq!(sources(2, 0), "2 peers");
        assert_eq!(sources(2, 1), "2 peers, 1 web seed");
        assert_eq!(sources(0, 3), "0 peers, 3 web seeds");
    }
}
