//! The `swarmer` binary: command-line parsing, terminal output and exit codes around the `swarmer`
//! library. Errors are printed as one line naming the file and the problem; nothing here panics on input.

mod client;
mod daemon;
mod info;
mod select;
mod transfer;
mod units;
mod verify;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc (see ARCHITECTURE.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A fast, careful BitTorrent client.
#[derive(Debug, Parser)]
#[command(name = "swarmer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Download a torrent's files into a directory, verifying every piece; with --seed, keep
    /// uploading afterwards.
    Download(DownloadArgs),
    /// Verify files you already have against a torrent (on all cores), then upload them to peers
    /// until Ctrl-C or a --seed-ratio/--seed-time limit.
    Seed(SeedArgs),
    /// Check the data of a torrent in a directory (read-only, on all cores): report missing files,
    /// wrong lengths and pieces that do not match; exit 0 only if everything matches.
    Verify {
        /// The .torrent file.
        torrent: PathBuf,
        /// Directory holding the data, as `download -o DIR` left it: DIR/NAME.
        #[arg(short = 'o', long = "output", value_name = "DIR", default_value = ".")]
        output: PathBuf,
        /// Print only the report, no progress.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print a .torrent file's name, info hash, sizes, files and trackers.
    Info {
        /// The .torrent file.
        torrent: PathBuf,
    },
    /// Run in the background hosting many torrents, controlled over HTTP: a JSON API, a web UI
    /// and the Transmission RPC (for transmission-remote and tools that speak it).
    Daemon(daemon::DaemonArgs),
    /// Add a torrent (.torrent file or magnet link) to a running daemon.
    Add(client::AddArgs),
    /// List a running daemon's torrents.
    List {
        #[command(flatten)]
        daemon: client::DaemonAddress,
    },
    /// Remove a torrent from a running daemon (its files stay unless --delete-data).
    Remove {
        /// The torrent's id, as `swarmer list` shows it.
        id: u64,
        /// Delete the torrent's downloaded files too.
        #[arg(long)]
        delete_data: bool,
        #[command(flatten)]
        daemon: client::DaemonAddress,
    },
}

#[derive(Debug, clap::Args)]
struct DownloadArgs {
    /// The .torrent file, or a magnet link (`'magnet:?xt=urn:btih:...'`, quoted for the shell): its
    /// metadata is fetched from peers first (BEP 9).
    torrent: PathBuf,
    /// With a magnet link: also write the fetched torrent to FILE (a .torrent with the link's
    /// trackers).
    #[arg(long, value_name = "FILE")]
    save_torrent: Option<PathBuf>,
    /// Directory to download into: a single-file torrent becomes DIR/NAME, a multi-file one DIR/NAME/...
    #[arg(short = 'o', long = "output", value_name = "DIR", default_value = ".")]
    output: PathBuf,
    /// Keep seeding after the download completes, until Ctrl-C or a --seed-ratio/--seed-time limit.
    #[arg(long)]
    seed: bool,
    #[command(flatten)]
    select: select::SelectArgs,
    #[command(flatten)]
    limits: SeedLimitArgs,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, clap::Args)]
struct SeedArgs {
    /// The .torrent file.
    torrent: PathBuf,
    /// Directory holding the data, as `download -o DIR` left it: DIR/NAME.
    #[arg(short = 'o', long = "output", value_name = "DIR", default_value = ".")]
    output: PathBuf,
    /// With --only/--exclude/--files, only the selected files are checked and served; the others
    /// need not exist.
    #[command(flatten)]
    select: select::SelectArgs,
    #[command(flatten)]
    limits: SeedLimitArgs,
    #[command(flatten)]
    common: CommonArgs,
}

/// When seeding stops by itself (otherwise: on Ctrl-C).
#[derive(Debug, clap::Args)]
struct SeedLimitArgs {
    /// Stop seeding once uploaded bytes reach R times the torrent's size, or the selected files' size
    /// (e.g. 1.5).
    #[arg(long, value_name = "R", value_parser = units::parse_ratio)]
    seed_ratio: Option<f64>,
    /// Stop seeding after this long (e.g. 90s, 30m, 2h, 1h30m).
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    seed_time: Option<Duration>,
}

/// Network and output options shared by `download` and `seed`.
#[derive(Debug, clap::Args)]
struct CommonArgs {
    /// TCP port to listen on for peers (0 picks a free one).
    #[arg(long, default_value_t = 6881)]
    port: u16,
    /// Local IP address for the listener, outgoing peer connections and tracker requests.
    #[arg(long, value_name = "IP")]
    bind_address: Option<IpAddr>,
    /// Most peer connections.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u16).range(1..))]
    max_peers: u16,
    /// Peers uploaded to at once, chosen by rate every 10 s; one more is picked at random every 30 s.
    #[arg(long, value_name = "N", default_value_t = 4)]
    upload_slots: u16,
    /// Most bytes per second sent to all peers together (e.g. 500K, 2M; K = 1024).
    #[arg(long, value_name = "RATE", value_parser = units::parse_rate)]
    max_upload_rate: Option<u64>,
    /// Most bytes per second received from all peers together (e.g. 500K, 2M; K = 1024).
    #[arg(long, value_name = "RATE", value_parser = units::parse_rate)]
    max_download_rate: Option<u64>,
    #[command(flatten)]
    dht: DhtArgs,
    /// Print nothing but errors.
    #[arg(short, long, conflicts_with = "verbose")]
    quiet: bool,
    /// Log what happens (-v: info, -vv: debug, -vvv: trace) to standard error.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Do not use Local Service Discovery (BEP 14: multicast announces to 239.192.152.143:6771 that
    /// find peers on the local network). Private torrents never use it.
    #[arg(long)]
    no_lsd: bool,
    /// Do not exchange peers with connected peers (BEP 11 PEX; never done for private torrents).
    #[arg(long)]
    no_pex: bool,
    /// A peer to connect to at start, besides those from trackers (repeatable; IPv6 as [ADDR]:PORT).
    #[arg(long = "peer", value_name = "HOST:PORT")]
    peers: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Download(args) => transfer::run(transfer::Job::download(args)),
        Command::Seed(args) => transfer::run(transfer::Job::seed(args)),
        Command::Verify {
            torrent,
            output,
            quiet,
        } => verify::run(&torrent, &output, quiet),
        Command::Info { torrent } => info::run(&torrent),
        Command::Daemon(args) => daemon::run(args),
        Command::Add(args) => client::add(args),
        Command::List { daemon } => client::list(daemon),
        Command::Remove {
            id,
            delete_data,
            daemon,
        } => client::remove(id, delete_data, daemon),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("swarmer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The DHT (BEP 5): on by default, on the same port as --port (UDP).
#[derive(Debug, clap::Args)]
struct DhtArgs {
    /// Do not use the DHT to find peers (trackers only).
    #[arg(long)]
    no_dht: bool,
    /// A DHT node to join through (repeatable); replaces the default public routers.
    #[arg(long, value_name = "HOST:PORT")]
    dht_bootstrap: Vec<String>,
}

impl DhtArgs {
    /// The session's DHT settings: `None` with --no-dht. The routing table is kept in
    /// `$XDG_CACHE_HOME/swarmer/dht.dat` (else `$HOME/.cache/swarmer/dht.dat`; not kept if neither is set).
    fn config(&self) -> Option<swarmer::DhtConfig> {
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
