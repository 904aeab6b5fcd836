//! `swarmer download`: runs a session with one torrent until every piece is verified, showing progress
//! as a bar on a terminal and as a status line every few seconds otherwise.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use swarmer::{Progress, Session, SessionConfig, TorrentState};
use swarmer_proto::metainfo::Metainfo;

use crate::DownloadArgs;

/// Exit code after Ctrl-C (128 + SIGINT, as shells report it).
const INTERRUPTED: u8 = 130;
/// How often a plain status line is printed when standard error is not a terminal.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// Reads and parses a .torrent file; errors name the file.
pub(crate) fn read_metainfo(path: &Path) -> anyhow::Result<Metainfo> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Metainfo::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid torrent", path.display()))
}

pub(crate) fn run(args: DownloadArgs) -> anyhow::Result<ExitCode> {
    let metainfo = read_metainfo(&args.torrent)?;
    init_logging(args.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(download(args, metainfo))
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("swarmer={level},swarmer_proto={level}"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogWriter)
        .try_init();
}

/// The progress bar while one is shown, so log lines can be printed above it instead of through it.
static BAR: OnceLock<ProgressBar> = OnceLock::new();

/// Standard error for log lines: while a progress bar is drawn, each line is written with the bar
/// briefly cleared, so logs and the bar never garble each other.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match BAR.get() {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

async fn download(args: DownloadArgs, metainfo: Metainfo) -> anyhow::Result<ExitCode> {
    let config = SessionConfig {
        bind_ip: args.bind_address,
        listen_port: args.port,
        max_peers_per_torrent: usize::from(args.max_peers),
        ..SessionConfig::default()
    };
    let name = metainfo.info.name.clone();
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create output directory {}", args.output.display()))?;
    let session = Session::new(config).await?;
    let mut torrent = session
        .add_torrent(metainfo, &args.output)
        .await
        .with_context(|| format!("cannot start {name}"))?;
    let reporter = Reporter::new(&name, args.quiet, args.verbose > 0);
    let mut progress = torrent.progress();
    let outcome = tokio::select! {
        r = torrent.wait_complete() => Outcome::Finished(r),
        _ = reporter.follow(&mut progress) => unreachable!("progress ends only when the torrent ends"),
        _ = tokio::signal::ctrl_c() => Outcome::Interrupted,
    };
    let last = progress.borrow().clone();
    reporter.finish(&last);
    // Announce `stopped` and flush, whatever happened.
    let stopped = torrent.stop().await;
    match outcome {
        Outcome::Finished(Ok(())) => {
            stopped?;
            if !args.quiet {
                eprintln!(
                    "{name}: done, {} verified in {} pieces",
                    human_bytes(last.total_bytes),
                    last.piece_count
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Finished(Err(e)) => Err(e).with_context(|| format!("{name}: download failed")),
        Outcome::Interrupted => {
            eprintln!(
                "{name}: interrupted at {} of {} verified",
                human_bytes(last.verified_bytes),
                human_bytes(last.total_bytes)
            );
            Ok(ExitCode::from(INTERRUPTED))
        }
    }
}

enum Outcome {
    Finished(Result<(), swarmer::TorrentError>),
    Interrupted,
}

/// Shows progress: a bar on a terminal, periodic lines otherwise, nothing when quiet.
struct Reporter {
    bar: Option<ProgressBar>,
    plain: bool,
    name: String,
}

impl Reporter {
    fn new(name: &str, quiet: bool, verbose: bool) -> Reporter {
        let terminal = std::io::stderr().is_terminal();
        let bar = (!quiet && terminal && !verbose).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(name.to_string());
            let _ = BAR.set(bar.clone());
            bar
        });
        Reporter {
            plain: !quiet && bar.is_none(),
            bar,
            name: name.to_string(),
        }
    }

    async fn follow(&self, progress: &mut tokio::sync::watch::Receiver<Progress>) {
        let mut last_line = Instant::now();
        loop {
            let p = progress.borrow_and_update().clone();
            if let Some(bar) = &self.bar {
                bar.set_length(p.total_bytes);
                bar.set_position(p.verified_bytes);
                bar.set_message(rates(&p));
            } else if self.plain && last_line.elapsed() >= STATUS_INTERVAL {
                last_line = Instant::now();
                eprintln!("{}: {}", self.name, status_line(&p));
            }
            // Redraw at most ten times a second, however fast blocks arrive.
            tokio::time::sleep(Duration::from_millis(100)).await;
            if progress.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    fn finish(&self, p: &Progress) {
        if let Some(bar) = &self.bar {
            bar.set_position(p.verified_bytes);
            bar.abandon();
        } else if self.plain && p.state == TorrentState::Complete {
            eprintln!("{}: {}", self.name, status_line(p));
        }
    }
}

fn rates(p: &Progress) -> String {
    format!(
        "↓ {}/s ↑ {}/s, {} peers, ETA {}",
        human_bytes(p.download_rate),
        human_bytes(p.upload_rate),
        p.peers,
        eta(p)
    )
}

/// Time left at the current download rate, or `?` while nothing is arriving.
fn eta(p: &Progress) -> String {
    let left = p.total_bytes.saturating_sub(p.verified_bytes);
    if left == 0 {
        return "0s".into();
    }
    if p.download_rate == 0 {
        return "?".into();
    }
    let secs = left.div_ceil(p.download_rate);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

fn status_line(p: &Progress) -> String {
    let percent = if p.total_bytes == 0 {
        100.0
    } else {
        p.verified_bytes as f64 * 100.0 / p.total_bytes as f64
    };
    format!(
        "{percent:5.1}% {}/{} ({}/{} pieces), {}",
        human_bytes(p.verified_bytes),
        human_bytes(p.total_bytes),
        p.pieces_have,
        p.piece_count,
        rates(p)
    )
}

/// Formats a byte count with binary units (KiB, MiB, GiB).
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn eta_from_the_download_rate() {
        let p = |verified, rate| swarmer::Progress {
            state: swarmer::TorrentState::Downloading,
            total_bytes: 10_000,
            verified_bytes: verified,
            downloaded_bytes: 0,
            wasted_bytes: 0,
            uploaded_bytes: 0,
            download_rate: rate,
            upload_rate: 0,
            peers: 1,
            pieces_have: 0,
            piece_count: 1,
            hash_failures: 0,
        };
        assert_eq!(super::eta(&p(0, 0)), "?");
        assert_eq!(super::eta(&p(10_000, 0)), "0s");
        assert_eq!(super::eta(&p(0, 100)), "1m40s");
        assert_eq!(super::eta(&p(0, 1)), "2h46m");
        assert_eq!(super::eta(&p(9_990, 1000)), "1s");
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
