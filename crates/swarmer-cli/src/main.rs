//! The `swarmer` binary: command-line parsing, terminal output and exit codes around the `swarmer`
//! library. Errors are printed as one line naming the file and the problem; nothing here panics on input.

mod client;
mod create;
mod daemon;
mod dht_args;
mod encryption;
mod info;
mod logging;
mod metainfo_file;
mod peer_port;
mod progress_bar;
mod select;
mod state_dir;
mod transfer;
mod transport_arg;
mod units;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc (docs/design.md, "Allocator", has the measurements).
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
    Download(transfer::DownloadArgs),
    /// Verify files you already have against a torrent (on all cores), then upload them to peers
    /// until Ctrl-C or a --seed-ratio/--seed-time limit.
    Seed(transfer::SeedArgs),
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
    /// Make a .torrent file of a file or directory: hybrid v1 + v2 by default, hashed on all cores.
    Create(create::CreateArgs),
    /// Print a .torrent file's name, version, info hashes, sizes, files and trackers.
    Info {
        /// The .torrent file.
        torrent: PathBuf,
        /// Also ask each tracker how many seeders, leechers and completed downloads the torrent
        /// has (scrape: BEP 48 over HTTP, BEP 15 over UDP); waits at most 30 s.
        #[arg(long)]
        scrape: bool,
    },
    /// Run in the foreground hosting many torrents, controlled over HTTP: a JSON API, a web UI
    /// and the Transmission RPC (for transmission-remote and tools that speak it). Ctrl-C or
    /// SIGTERM stops it cleanly; run it under systemd (docs/swarmer.service) to keep it running.
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
        Command::Create(args) => create::run(args),
        Command::Info { torrent, scrape } => info::run(&torrent, scrape),
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// The help a new user reads first says what the program does today.
    #[test]
    fn help_texts_are_current() {
        Cli::command().debug_assert();
        let top = Cli::command().render_help().to_string();
        assert!(top.contains("a BitTorrent client"), "{top}");
        assert!(!top.contains("(later)"), "{top}");
        let mut cli = Cli::command();
        let daemon = cli
            .find_subcommand_mut("daemon")
            .expect("daemon")
            .render_help()
            .to_string();
        assert!(daemon.contains("in the foreground"), "{daemon}");
        assert!(!daemon.contains("in the background"), "{daemon}");
    }
}
