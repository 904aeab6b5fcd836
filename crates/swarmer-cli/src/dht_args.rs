//! The DHT options (`--no-dht`, `--dht-bootstrap`) shared by `download`, `seed` and the daemon, and
//! where the DHT's routing table is cached between runs.

use std::path::PathBuf;

/// The DHT (BEP 5): on by default, on the same port as --port (UDP).
#[derive(Debug, clap::Args)]
pub(crate) struct DhtArgs {
    /// Do not use the DHT to find peers (trackers only).
    #[arg(long)]
    pub(crate) no_dht: bool,
    /// A DHT node to join through (repeatable); replaces the default public routers.
    #[arg(long, value_name = "HOST:PORT")]
    dht_bootstrap: Vec<String>,
}

impl DhtArgs {
    /// The session's DHT settings: `None` with --no-dht. The routing table is kept in
    /// `$XDG_CACHE_HOME/swarmer/dht.dat` (else `$HOME/.cache/swarmer/dht.dat`; not kept if neither is set).
    pub(crate) fn config(&self) -> Option<swarmer::DhtConfig> {
        if self.no_dht {
            return None;
        }
        let bootstrap = if self.dht_bootstrap.is_empty() {
            swarmer::DEFAULT_BOOTSTRAP
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            self.dht_bootstrap.clone()
        };
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".cache"))
            });
        Some(swarmer::DhtConfig {
            bootstrap,
            state_file: cache.map(|c| c.join("swarmer").join("dht.dat")),
        })
    }
}
