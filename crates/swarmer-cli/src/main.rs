//! The `swarmer` binary: command-line parsing, terminal output and exit codes around the `swarmer`
//! library. Errors are printed as one line naming the file and the problem; nothing here panics on input.

mod download;
mod info;
#[allow(dead_code)] // Until the download command takes the rate and seeding options.
mod units;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A fast, careful BitTorrent client.
#[derive(Debug, Parser)]
#[command(name = "swarmer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Download a torrent's files into a directory, verifying every piece.
    Download(DownloadArgs),
    /// Print a .torrent file's name, info hash, sizes, files and trackers.
    Info {
        /// The .torrent file.
        torrent: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct DownloadArgs {
    /// The .torrent file.
    torrent: PathBuf,
    /// Directory to download into: a single-file torrent becomes DIR/NAME, a multi-file one DIR/NAME/...
    #[arg(short = 'o', long = "output", value_name = "DIR", default_value = ".")]
    output: PathBuf,
    /// TCP port to listen on for peers (0 picks a free one).
    #[arg(long, default_value_t = 6881)]
    port: u16,
    /// Local IP address for the listener, outgoing peer connections and tracker requests.
    #[arg(long, value_name = "IP")]
    bind_address: Option<IpAddr>,
    /// Most peer connections.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u16).range(1..))]
    max_peers: u16,
    /// Print nothing but errors.
    #[arg(short, long, conflicts_with = "verbose")]
    quiet: bool,
    /// Log what happens (-v: info, -vv: debug, -vvv: trace) to standard error.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Download(args) => download::run(args),
        Command::Info { torrent } => info::run(&torrent),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("swarmer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
