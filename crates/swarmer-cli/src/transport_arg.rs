//! The `--transport tcp|utp|both` option of `download`, `seed` and the daemon (also `transport` in
//! the daemon's config file): which transports carry peer connections.

/// Which transports carry peer connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TransportArg {
    /// TCP only.
    Tcp,
    /// uTP (BEP 29) only: TCP connections from peers are closed at once.
    Utp,
    /// Both: incoming on either; outgoing over TCP, then uTP if TCP fails before the handshake.
    #[default]
    Both,
}

impl From<TransportArg> for swarmer::Transport {
    fn from(t: TransportArg) -> swarmer::Transport {
        match t {
            TransportArg::Tcp => swarmer::Transport::Tcp,
            TransportArg::Utp => swarmer::Transport::Utp,
            TransportArg::Both => swarmer::Transport::Both,
        }
    }
}
