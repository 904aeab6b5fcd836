//! `swarmer create`: make a .torrent file (v1, v2 or hybrid, BEP 52) from a file or directory,
//! hashing on all cores with a progress bar. The work is `swarmer::create_torrent`'s.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgGroup, Args};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use swarmer::{CreateTorrent, human_bytes};
use swarmer_proto::create::CreateOptions;
use swarmer_proto::metainfo::{MetaVersion, Metainfo};

/// `swarmer create`'s arguments.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("version").args(["v1", "v2", "hybrid"])))]
pub(crate) struct CreateArgs {
    /// The file or directory to make a torrent of; its name becomes the torrent's name.
    path: PathBuf,
    /// Where to write the .torrent file.
    #[arg(short = 'o', long = "output", value_name = "OUT.torrent")]
    output: PathBuf,
    /// A v1-only torrent (BEP 3): SHA-1 pieces, readable by every client.
    #[arg(long)]
    v1: bool,
    /// A v2-only torrent (BEP 52): per-file SHA-256 merkle trees; older clients cannot use it.
    #[arg(long)]
    v2: bool,
    /// A hybrid v1 + v2 torrent (the default, as libtorrent and qBittorrent make them).
    #[arg(long)]
    hybrid: bool,
    /// Piece length in bytes (`262144`, `256K`, `4M`): a power of two from 16 KiB (any multiple of
    /// 16 KiB with --v1). Default: chosen from the total size as libtorrent does.
    #[arg(long, value_name = "BYTES", value_parser = parse_piece_length)]
    piece_length: Option<u64>,
    /// A tracker URL (repeatable; each becomes its own tier, tried in order).
    #[arg(long = "tracker", value_name = "URL")]
    trackers: Vec<String>,
    /// A web seed URL (BEP 19; repeatable).
    #[arg(long = "web-seed", value_name = "URL")]
    web_seeds: Vec<String>,
    /// Mark the torrent private (BEP 27): peers only from its trackers.
    #[arg(long)]
    private: bool,
    /// A comment.
    #[arg(long, value_name = "TEXT")]
    comment: Option<String>,
    /// `info.source`: gives the same files a different info hash (private trackers ask for it).
    #[arg(long, value_name = "TEXT")]
    source: Option<String>,
    /// Leave out the creation date, so the same files and options always make the same file.
    #[arg(long)]
    no_date: bool,
}

fn parse_piece_length(s: &str) -> Result<u64, String> {
    crate::units::parse_rate(s)
        .map_err(|_| format!("{s:?} is not a size such as 262144, 256K or 4M"))
}

/// Runs `swarmer create`.
pub(crate) fn run(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let version = match (args.v1, args.v2) {
        (true, _) => MetaVersion::V1,
        (_, true) => MetaVersion::V2,
        _ => MetaVersion::Hybrid,
    };
    let creation_date = (!args.no_date).then(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    });
    let request = CreateTorrent {
        path: args.path.clone(),
        version,
        piece_length: args.piece_length,
        options: CreateOptions {
            trackers: args.trackers.iter().map(|t| t.trim().to_owned()).collect(),
            web_seeds: args.web_seeds,
            private: args.private,
            comment: args.comment,
            source: args.source,
            created_by: Some(concat!("swarmer ", env!("CARGO_PKG_VERSION")).to_owned()),
            creation_date,
        },
        threads: None,
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} hashing [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(args.path.display().to_string());
        bar
    });
    let started = std::time::Instant::now();
    let bytes = swarmer::create_torrent(&request, |p| {
        if let Some(bar) = &bar {
            bar.set_length(p.total);
            bar.set_position(p.hashed);
        }
    })
    .with_context(|| format!("cannot make a torrent of {}", args.path.display()))?;
    let took = started.elapsed();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    swarmer::write_atomically(&args.output, &bytes)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let m = Metainfo::from_bytes(&bytes).context("the torrent just made does not parse")?;
    let total = m
        .info
        .files
        .iter()
        .filter(|f| !f.padding)
        .map(|f| f.length)
        .sum::<u64>();
    eprintln!(
        "{}: {} {} torrent, {} in {} files, {} pieces of {}, hashed in {:.2} s ({}/s)",
        args.output.display(),
        m.info.name,
        m.info.version().describe(),
        human_bytes(total),
        m.info.files.iter().filter(|f| !f.padding).count(),
        m.piece_count(),
        human_bytes(u64::from(m.info.piece_length)),
        took.as_secs_f64(),
        human_bytes((total as f64 / took.as_secs_f64().max(1e-9)) as u64),
    );
    if m.info.version() != MetaVersion::V2 {
        println!("info hash:    {}", m.info_hash);
    }
    if let Some(v2) = m.info_hash_v2() {
        println!(
            "info hash v2: {}",
            v2.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
    }
    Ok(ExitCode::SUCCESS)
}
