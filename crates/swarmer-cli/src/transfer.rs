//! `swarmer download` and `swarmer seed`: run a session with one torrent (check existing data,
//! download, seed) until it is done or interrupted, showing progress as a bar on a terminal and as a
//! status line every few seconds otherwise.

use crate::encryption::EncryptionMode;
use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget};
use swarmer::storage::StorageError;
use swarmer::{
    AddTorrentOptions, ExistingData, FetchedMetadata, MetadataProgress, Progress, SeedLimits,
    Session, SessionConfig, TorrentError, TorrentState, human_bytes,
};
use swarmer_proto::magnet::{Magnet, MagnetPeer, is_magnet_uri};
use swarmer_proto::metainfo::Metainfo;

use crate::dht_args::DhtArgs;
use crate::metainfo_file::{fetch_metainfo, is_torrent_url, read_metainfo};
use crate::progress_bar::{self, Phase};
use crate::select::{self, SelectArgs, Selection};
use crate::state_dir::{self, default_state_dir};
use crate::transport_arg::TransportArg;
use crate::{logging, units};

/// `swarmer download` options.
#[derive(Debug, clap::Args)]
pub(crate) struct DownloadArgs {
    /// The .torrent file, its http(s) URL, or a magnet link (`'magnet:?xt=urn:btih:...'`, quoted for
    /// the shell), whose metadata is fetched from peers first (BEP 9).
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
    /// Download the pieces in order, so a file can be played while it downloads: the first 16 MiB
    /// of missing pieces get deadlines and come first, from the fastest peers; the other peers'
    /// spare capacity still goes to the rest, rarest first.
    #[arg(long)]
    sequential: bool,
    /// Download the first and last piece of every file first (what players read first).
    #[arg(long)]
    first_last_pieces: bool,
    #[command(flatten)]
    select: select::SelectArgs,
    #[command(flatten)]
    limits: SeedLimitArgs,
    #[command(flatten)]
    common: CommonArgs,
}

/// `swarmer seed` options.
#[derive(Debug, clap::Args)]
pub(crate) struct SeedArgs {
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
pub(crate) struct SeedLimitArgs {
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
pub(crate) struct CommonArgs {
    /// TCP and UDP (uTP, DHT, UDP trackers) port to listen on for peers (0 picks a free one).
    #[arg(long, default_value_t = 6881)]
    port: u16,
    /// Local IP address for the listener, outgoing peer connections and tracker requests. Without it swarmer is dual-stack
    /// (IPv4 and IPv6 on one port); with it, only that address and its family.
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
    /// Do not ask the router to forward the listen port (UPnP IGD, then NAT-PMP and PCP; on by
    /// default, renewed while running and removed on exit).
    #[arg(long)]
    no_port_mapping: bool,
    /// Encrypt peer connections (MSE/PE): prefer (encrypted first, plaintext if a peer refuses),
    /// require (RC4 only: plaintext peers are not talked to), disable (plaintext only).
    #[arg(long, value_enum, default_value_t = EncryptionMode::Prefer)]
    encryption: EncryptionMode,
    /// Give up with an error when no peer has been connected for this long while the download is
    /// incomplete (e.g. 60s); by default swarmer waits for peers as long as it runs.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    give_up_after: Option<Duration>,
    /// Which transports carry peer connections: tcp, utp (BEP 29, on the UDP port of --port) or
    /// both (incoming on either; outgoing over TCP, then uTP if TCP fails before the handshake).
    #[arg(long, value_enum, default_value_t = TransportArg::Both)]
    transport: TransportArg,
    /// A peer to connect to at start, besides those from trackers (repeatable; IPv6 as [ADDR]:PORT).
    #[arg(long = "peer", value_name = "HOST:PORT")]
    peers: Vec<String>,
    /// Where to keep fast-resume state and fetched magnet metadata, so a rerun continues without
    /// hashing; nothing of swarmer's goes into the download directory. Default:
    /// $XDG_STATE_HOME/swarmer, else ~/.local/state/swarmer.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl CommonArgs {
    /// The state directory: `--state-dir`, else the default; `None` (and no state kept) when
    /// neither it nor `$HOME` is set.
    fn state_dir(&self) -> Option<PathBuf> {
        self.state_dir.clone().or_else(default_state_dir)
    }
}

/// Exit code after Ctrl-C before the download completed (128 + SIGINT, as shells report it).
const INTERRUPTED: u8 = 130;
/// Exit code after SIGTERM before the download completed (128 + SIGTERM).
const TERMINATED: u8 = 143;
/// How often a plain status line is printed when standard error is not a terminal.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// One run of the command: which torrent, where, and how.
pub(crate) struct Job {
    torrent: PathBuf,
    /// Where to write a magnet link's fetched torrent (`--save-torrent`).
    save_torrent: Option<PathBuf>,
    output: PathBuf,
    options: AddTorrentOptions,
    select: SelectArgs,
    common: CommonArgs,
}

impl Job {
    /// `swarmer download`: fetch every piece; seed afterwards with `--seed`.
    pub(crate) fn download(args: DownloadArgs) -> Job {
        let seeding =
            args.seed || args.limits.seed_ratio.is_some() || args.limits.seed_time.is_some();
        Job {
            torrent: args.torrent,
            save_torrent: args.save_torrent,
            output: args.output,
            options: AddTorrentOptions {
                seed: seeding.then(|| limits(&args.limits)),
                // Continue where an earlier run stopped: fast-resume state, else hashing what is there.
                existing: ExistingData::Check,
                sequential: args.sequential,
                first_last_pieces: args.first_last_pieces,
                ..AddTorrentOptions::default()
            },
            select: args.select,
            common: args.common,
        }
    }

    /// `swarmer seed`: verify the data we have, then upload it.
    pub(crate) fn seed(args: SeedArgs) -> Job {
        Job {
            torrent: args.torrent,
            save_torrent: None,
            output: args.output,
            options: AddTorrentOptions {
                seed: Some(limits(&args.limits)),
                existing: ExistingData::Complete,
                ..AddTorrentOptions::default()
            },
            select: args.select,
            common: args.common,
        }
    }
}

fn limits(args: &SeedLimitArgs) -> SeedLimits {
    SeedLimits {
        ratio: args.seed_ratio,
        time: args.seed_time,
    }
}

/// What to transfer: a torrent read from a file, or a magnet link whose metadata comes from peers.
enum Source {
    File(Metainfo),
    Magnet(Magnet),
}

/// A magnet link when `arg` starts with `magnet:`, a .torrent file fetched when it is an http(s)
/// URL, else the .torrent file it names; errors say which.
async fn read_source(arg: &Path) -> anyhow::Result<Source> {
    match arg.to_str() {
        Some(s) if is_magnet_uri(s) => {
            let magnet = Magnet::parse(s).context("invalid magnet link")?;
            Ok(Source::Magnet(magnet))
        }
        Some(url) if is_torrent_url(url) => fetch_metainfo(url).await.map(Source::File),
        _ => read_metainfo(arg).map(Source::File),
    }
}

/// Runs a `download` or `seed` job to its end; the exit code says how it ended.
pub(crate) fn run(mut job: Job) -> anyhow::Result<ExitCode> {
    let selection = Selection::parse(&job.select)?;
    if job.output.exists() && !job.output.is_dir() {
        anyhow::bail!(
            "{} is a file; -o takes the directory to download into",
            job.output.display()
        );
    }
    logging::init(job.common.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let source = read_source(&job.torrent).await?;
        if let Source::File(metainfo) = &source {
            job.options.file_priorities = selection.priorities(&metainfo.info)?;
        }
        transfer(job, source, selection).await
    })
}

async fn transfer(job: Job, source: Source, selection: Selection) -> anyhow::Result<ExitCode> {
    let common = &job.common;
    let config = SessionConfig {
        bind_ip: common.bind_address,
        listen_port: common.port,
        max_peers_per_torrent: usize::from(common.max_peers),
        max_upload_rate: common.max_upload_rate,
        max_download_rate: common.max_download_rate,
        lsd: !common.no_lsd,
        dht: common.dht.config(),
        pex: !common.no_pex,
        encryption: common.encryption.into(),
        transport: common.transport.into(),
        port_mapping: !common.no_port_mapping,
        engine: swarmer_proto::torrent::Config {
            upload_slots: usize::from(common.upload_slots),
            ..Default::default()
        },
        ..SessionConfig::default()
    };
    if job.options.existing != ExistingData::Complete {
        std::fs::create_dir_all(&job.output)
            .with_context(|| format!("cannot create output directory {}", job.output.display()))?;
    }
    // `--peer` addresses: dialled for a magnet link's metadata, then by the torrent.
    let given_peers = resolve_peers(&common.peers).await?;
    let session = crate::peer_port::start_session(config).await?;
    let result = run_torrent(&session, job, source, selection, given_peers).await;
    // uTP connections end only if we end them: a peer left holding one refuses our next start.
    session.close_utp(UTP_CLOSE).await;
    // Take the router's forwarding down again (bounded: a vanished router costs seconds).
    if let Some(mapping) = session.port_mapping() {
        mapping.close().await;
    }
    // Keep the DHT nodes for the next start, however the run ended (bounded by the save's own
    // timeout).
    if let Some(dht) = session.dht() {
        dht.save().await;
    }
    result
}

/// Adds the torrent to `session` (a magnet link's metadata fetched first) and follows it until it
/// is done, fails or a signal comes; returns the exit code.
async fn run_torrent(
    session: &Session,
    mut job: Job,
    source: Source,
    selection: Selection,
    given_peers: Vec<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let common = &job.common;
    let seeding = job.options.seed.is_some();
    let signals = Signals::new()?;
    let (metainfo, mut peers, mut reporter) = match source {
        Source::File(metainfo) => {
            let reporter = Reporter::new(&metainfo.info.name, common.quiet, common.verbose > 0);
            (metainfo, Vec::new(), reporter)
        }
        Source::Magnet(mut magnet) => {
            magnet
                .peers
                .extend(given_peers.iter().copied().map(MagnetPeer::Addr));
            let name = magnet
                .display_name
                .clone()
                .unwrap_or_else(|| magnet.info_hash.to_string());
            let reporter = Reporter::new(&name, common.quiet, common.verbose > 0);
            let fetched = match magnet_metainfo(session, &magnet, &job, &reporter, &signals).await?
            {
                Ok(fetched) => fetched,
                Err(code) => {
                    eprintln!("{name}: interrupted while fetching the metadata");
                    return Ok(ExitCode::from(code));
                }
            };
            job.options.file_priorities = match &magnet.select_only {
                Some(so) if selection.is_everything() => {
                    select::select_only(so, &fetched.metainfo.info)
                }
                _ => selection.priorities(&fetched.metainfo.info)?,
            };
            (fetched.metainfo, fetched.peers, reporter)
        }
    };
    let name = metainfo.info.name.clone();
    reporter.set_name(&name);
    let resume = resume_store(common, &job.output, metainfo.info_hash);
    let options = AddTorrentOptions {
        resume,
        ..job.options.clone()
    };
    let mut torrent = session
        .add_torrent_with(metainfo, &job.output, options)
        .await
        .with_context(|| format!("cannot start {name}"))?;
    peers.extend(given_peers);
    if !peers.is_empty() {
        torrent.add_peers(peers).await;
    }
    let mut progress = torrent.progress();
    let give_up = no_peer_for(torrent.progress(), common.give_up_after);
    let outcome = tokio::select! {
        r = async {
            torrent.wait_complete().await?;
            if seeding {
                let done = match job.options.existing {
                    ExistingData::Complete => "data verified",
                    ExistingData::Ignore | ExistingData::Check => "download complete",
                };
                reporter.println(&format!("{name}: {done}, seeding (Ctrl-C to stop)"));
                torrent.wait_finished().await?;
            }
            Ok(())
        } => Outcome::Finished(r),
        _ = reporter.follow(&mut progress) => unreachable!("progress ends only when the torrent ends"),
        code = signals.recv() => Outcome::Interrupted(code),
        limit = give_up => Outcome::GaveUp(limit),
    };
    let last = progress.borrow().clone();
    reporter.finish(&last);
    // Announce `stopped` and flush, whatever happened.
    let stopped = torrent.stop().await;
    let done = last.is_done();
    match outcome {
        Outcome::Finished(Ok(())) => {
            stopped?;
            if !common.quiet {
                eprintln!("{name}: {}", summary(&last));
            }
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Finished(Err(e)) => {
            let action = match job.options.existing {
                ExistingData::Complete => "cannot seed",
                _ => "download failed",
            };
            let e = match e {
                // The pieces verified so far are on disk and in the resume state.
                TorrentError::Storage(StorageError::DiskFull { .. }) => anyhow::anyhow!(
                    "{e}; the verified pieces are saved: free some space and run the same command again to continue"
                ),
                e => e.into(),
            };
            Err(e.context(format!("{name}: {action}")))
        }
        // Stopping a seed is how seeding normally ends: the download itself succeeded.
        Outcome::Interrupted(_) if done => {
            if !common.quiet {
                eprintln!("{name}: stopped; {}", summary(&last));
            }
            Ok(ExitCode::SUCCESS)
        }
        Outcome::GaveUp(limit) => Err(anyhow::anyhow!(
            "{name}: download failed: no peer connected for {} ({} of {} verified)",
            humantime::format_duration(limit),
            human_bytes(last.wanted_done_bytes()),
            human_bytes(last.wanted_bytes)
        )),
        Outcome::Interrupted(code) => {
            eprintln!(
                "{name}: interrupted at {} of {} verified",
                human_bytes(last.wanted_done_bytes()),
                human_bytes(last.wanted_bytes)
            );
            Ok(ExitCode::from(code))
        }
    }
}

/// The metainfo of a magnet link: from the copy an earlier run saved in the output directory, or
/// fetched from peers while the reporter shows how it goes. Writes the copy (and `--save-torrent`).
/// `Err(code)` inside: interrupted by a signal, with the exit code to use.
async fn magnet_metainfo(
    session: &Session,
    magnet: &Magnet,
    job: &Job,
    reporter: &Reporter,
    signals: &Signals,
) -> anyhow::Result<Result<FetchedMetadata, u8>> {
    let cached = job.common.state_dir().map(|state| {
        let cached = state_dir::metadata_file(&state, magnet.info_hash);
        state_dir::migrate(&old_metadata_path(&job.output, magnet.info_hash), &cached);
        cached
    });
    let saved = cached
        .as_deref()
        .and_then(|cached| read_metainfo(cached).ok())
        .filter(|m| m.info_hash == magnet.info_hash);
    let fetched = match saved {
        Some(mut metainfo) => {
            tracing::info!("using the metadata an earlier run saved");
            // The link's trackers and peers, not those saved, are what the user gave this time.
            metainfo.announce_tiers = magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
            metainfo.url_list = magnet.web_seeds.clone();
            FetchedMetadata {
                metainfo,
                peers: swarmer::resolve_peers(&magnet.peers).await,
            }
        }
        None => {
            let fetch = session.fetch_metadata(magnet);
            let mut progress = fetch.progress();
            let fetched = tokio::select! {
                r = fetch.wait() => r?,
                _ = reporter.follow_metadata(&mut progress) => unreachable!("progress ends only when the fetch ends"),
                code = signals.recv() => return Ok(Err(code)),
            };
            if let Some(cached) = &cached {
                let torrent = fetched.metainfo.to_torrent_bytes();
                let written = cached
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| swarmer::write_atomically(cached, &torrent));
                if let Err(e) = written {
                    tracing::warn!("cannot save the metadata in {}: {e}", cached.display());
                }
            }
            fetched
        }
    };
    if let Some(path) = &job.save_torrent {
        swarmer::write_atomically(path, &fetched.metainfo.to_torrent_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        reporter.println(&format!("saved the torrent as {}", path.display()));
    }
    Ok(Ok(fetched))
}

/// Where swarmer before 0.2 kept a magnet link's fetched torrent: in the download directory.
fn old_metadata_path(dir: &Path, info_hash: swarmer_proto::InfoHash) -> PathBuf {
    dir.join(format!(".swarmer-{info_hash}.torrent"))
}

/// The fast-resume state of `info_hash` downloaded into `output`, kept in the state directory (a
/// state an older swarmer left in `output` is moved there first); `None` without a state directory.
fn resume_store(
    common: &CommonArgs,
    output: &Path,
    info_hash: swarmer_proto::InfoHash,
) -> Option<Arc<dyn swarmer::resume::ResumeStore>> {
    let Some(state) = common.state_dir() else {
        tracing::info!("no state directory ($HOME is not set): a rerun will hash the data again");
        return None;
    };
    let path = state_dir::resume_file(&state, output, info_hash);
    state_dir::migrate(&swarmer::resume::default_path(output, info_hash), &path);
    if let Some(parent) = path.parent() {
        if let Err(e) = std::fs::create_dir_all(parent) {
            tracing::warn!(
                "cannot create {}: {e}; no fast-resume state kept",
                parent.display()
            );
            return None;
        }
    }
    Some(Arc::new(swarmer::resume::ResumeFile::new(path)))
}

/// The closing line: what was verified and what was uploaded.
fn summary(p: &Progress) -> String {
    format!(
        "done, {} verified in {} pieces; uploaded {} (ratio {:.2})",
        human_bytes(p.wanted_bytes),
        p.pieces_have,
        human_bytes(p.uploaded_bytes),
        ratio(p)
    )
}

/// Uploaded bytes over the selected size: the ratio `--seed-ratio` compares against.
fn ratio(p: &Progress) -> f64 {
    if p.wanted_bytes == 0 {
        0.0
    } else {
        p.uploaded_bytes as f64 / p.wanted_bytes as f64
    }
}

enum Outcome {
    Finished(Result<(), swarmer::TorrentError>),
    /// `--give-up-after`: no peer connected for this long while incomplete.
    GaveUp(Duration),
    /// Ctrl-C or SIGTERM; the exit code to use if the download was not complete.
    Interrupted(u8),
}

/// Resolves once no peer has been connected, and no web seed has sent anything, for `limit` while
/// the download is incomplete (the `--give-up-after` option); never without a limit, nor once the
/// download is done.
async fn no_peer_for(
    mut progress: tokio::sync::watch::Receiver<swarmer::Progress>,
    limit: Option<Duration>,
) -> Duration {
    let Some(limit) = limit else {
        return std::future::pending().await;
    };
    loop {
        // Ended torrents end the select! through their other arm.
        let sources = |p: &Progress| p.peers + p.web_seeds_sending;
        if progress.wait_for(|p| sources(p) == 0).await.is_err() {
            return std::future::pending().await;
        }
        let back = progress.wait_for(|p| sources(p) > 0 || p.is_done());
        match tokio::time::timeout(limit, back).await {
            Err(_) => return limit,
            Ok(Ok(p)) if p.is_done() => return std::future::pending().await,
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return std::future::pending().await,
        }
    }
}

/// SIGINT (Ctrl-C) and SIGTERM both stop gracefully: flush, announce `stopped`, exit.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::sync::Mutex<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            #[cfg(unix)]
            terminate: tokio::sync::Mutex::new(
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("cannot install the SIGTERM handler")?,
            ),
        })
    }

    /// Waits for a signal; returns the exit code for an unfinished download.
    async fn recv(&self) -> u8 {
        #[cfg(unix)]
        {
            let mut terminate = self.terminate.lock().await;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => INTERRUPTED,
                _ = terminate.recv() => TERMINATED,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            INTERRUPTED
        }
    }
}

/// Shows progress: a bar on a terminal, periodic lines otherwise, nothing when quiet.
struct Reporter {
    bar: Option<ProgressBar>,
    plain: bool,
    name: String,
}

/// The metadata phase in words: peers found and connected, metadata pieces in.
fn metadata_line(p: &MetadataProgress) -> String {
    let pieces = if p.metadata.piece_count == 0 {
        "size not known yet".to_owned()
    } else {
        format!(
            "{}/{} pieces",
            p.metadata.pieces_have, p.metadata.piece_count
        )
    };
    format!(
        "{} peers found, {} connected, {} with metadata; {pieces}",
        p.peers_known, p.peers_connected, p.metadata.peers
    )
}

impl Reporter {
    fn new(name: &str, quiet: bool, verbose: bool) -> Reporter {
        let terminal = std::io::stderr().is_terminal();
        let bar = (!quiet && terminal && !verbose).then(|| {
            // No length until the torrent says what it counts: a bar of length 0 is drawn full.
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(progress_bar::starting_style());
            bar.set_prefix(name.to_string());
            progress_bar::show(&bar);
            bar
        });
        Reporter {
            plain: !quiet && bar.is_none(),
            bar,
            name: name.to_string(),
        }
    }

    /// Names the torrent in the bar and status lines (a magnet link's name is known only once its
    /// metadata is), and ends the metadata phase's spinner: the transfer redraws on progress.
    fn set_name(&mut self, name: &str) {
        self.name = name.to_string();
        if let Some(bar) = &self.bar {
            bar.disable_steady_tick();
            bar.set_prefix(name.to_string());
        }
    }

    /// Shows a metadata fetch until it ends (this future never completes by itself).
    async fn follow_metadata(&self, progress: &mut tokio::sync::watch::Receiver<MetadataProgress>) {
        if let Some(bar) = &self.bar {
            bar.set_style(progress_bar::metadata_style());
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        let mut last_line = Instant::now();
        loop {
            let p = *progress.borrow_and_update();
            if let Some(bar) = &self.bar {
                bar.set_message(metadata_line(&p));
            } else if self.plain && last_line.elapsed() >= STATUS_INTERVAL {
                last_line = Instant::now();
                eprintln!("{}: fetching metadata: {}", self.name, metadata_line(&p));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if progress.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Prints a line above the bar (or as a plain line); nothing when quiet.
    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None if self.plain => eprintln!("{line}"),
            None => {}
        }
    }

    async fn follow(&self, progress: &mut tokio::sync::watch::Receiver<Progress>) {
        let mut last_line = Instant::now();
        let mut shown = None;
        loop {
            let p = progress.borrow_and_update().clone();
            if let Some(bar) = &self.bar {
                let phase = Phase::of(&p.state);
                let (length, position) = match phase {
                    Phase::Checking => (u64::from(p.pieces_to_check), u64::from(p.checked_pieces)),
                    Phase::Transfer => (p.wanted_bytes, p.wanted_done_bytes()),
                };
                // Until the check has counted what it will hash, the bar keeps saying "starting".
                // Numbers first, then the look: a new style draws at once, with what the bar holds.
                bar.set_message(message(&p));
                if length > 0 {
                    bar.set_length(length);
                    bar.set_position(position);
                    if shown != Some(phase) {
                        bar.set_style(phase.style());
                        shown = Some(phase);
                    }
                }
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

    /// Takes the bar off the screen (the closing line that follows says how it ended), or prints
    /// the last status line.
    fn finish(&self, p: &Progress) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        } else if self.plain && p.is_done() {
            eprintln!("{}: {}", self.name, status_line(p));
        }
    }
}

/// The bar's message, short enough for the bar to fit 80 columns: sizes, rate, peers and time left
/// while downloading; upload totals while seeding.
fn message(p: &Progress) -> String {
    match p.state {
        TorrentState::Checking => String::new(),
        TorrentState::Seeding => format!(
            "seeding ↑{}/s, up {} (ratio {:.2}), {}",
            human_bytes(p.upload_rate),
            human_bytes(p.uploaded_bytes),
            ratio(p),
            progress_bar::peers(p.peers)
        ),
        // Done and no longer serving: rates and peers are over.
        TorrentState::Complete => format!(
            "complete, uploaded {} (ratio {:.2})",
            human_bytes(p.uploaded_bytes),
            ratio(p)
        ),
        _ => format!(
            "{} ↓{}/s {} {}",
            sizes(p.wanted_done_bytes(), p.wanted_bytes),
            human_bytes(p.download_rate),
            progress_bar::sources(p.peers, p.web_seeds),
            eta(p)
        ),
    }
}

/// `done` of `total` bytes, the unit written once when they share it: `1.2/4.7 GiB`.
fn sizes(done: u64, total: u64) -> String {
    let (done, total) = (human_bytes(done), human_bytes(total));
    match (done.split_once(' '), total.split_once(' ')) {
        (Some((d, unit)), Some((t, total_unit))) if unit == total_unit => format!("{d}/{t} {unit}"),
        _ => format!("{done}/{total}"),
    }
}

fn rates(p: &Progress) -> String {
    format!(
        "↓ {}/s ↑ {}/s, {}, ETA {}",
        human_bytes(p.download_rate),
        human_bytes(p.upload_rate),
        progress_bar::sources(p.peers, p.web_seeds),
        eta(p)
    )
}

/// Time left at the current download rate, or `?` while nothing is arriving.
fn eta(p: &Progress) -> String {
    let left = p.left_bytes;
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
    if p.state == TorrentState::Checking {
        return format!("checking {}/{} pieces", p.checked_pieces, p.pieces_to_check);
    }
    // Tenths of a percent, rounded down: 100.0 only when every wanted piece is verified.
    let tenths = match p.wanted_bytes {
        0 => 1000,
        wanted => u128::from(p.wanted_done_bytes()) * 1000 / u128::from(wanted),
    };
    let percent = format!("{}.{}", tenths / 10, tenths % 10);
    let detail = match p.state {
        TorrentState::Seeding | TorrentState::Complete => message(p),
        _ => rates(p),
    };
    format!(
        "{percent:>5}% {}/{} ({}/{} pieces), {detail}",
        human_bytes(p.wanted_done_bytes()),
        human_bytes(p.wanted_bytes),
        p.pieces_have,
        p.piece_count,
    )
}

/// How long the uTP connections get to close (FIN answered) when the command ends, before those
/// still open are reset: a loopback or LAN peer answers in well under a millisecond.
const UTP_CLOSE: Duration = Duration::from_millis(300);

/// How long resolving the host names of `--peer` may take, all together.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The addresses of the `--peer HOST:PORT` arguments (a host name may give several). Errors name
/// the argument that does not resolve.
async fn resolve_peers(peers: &[String]) -> anyhow::Result<Vec<std::net::SocketAddr>> {
    let resolve = async {
        let mut addrs = Vec::new();
        for peer in peers {
            let found = tokio::net::lookup_host(peer.as_str())
                .await
                .with_context(|| format!("--peer {peer}: not a HOST:PORT that resolves"))?;
            addrs.extend(found);
        }
        anyhow::Ok(addrs)
    };
    tokio::time::timeout(RESOLVE_TIMEOUT, resolve)
        .await
        .context("--peer: resolving host names timed out")?
}

#[cfg(test)]
mod tests {

    #[test]
    fn peers_are_addresses_with_a_port() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let peers = ["127.0.0.2:6881".to_owned(), "[::1]:51413".to_owned()];
        let addrs = runtime.block_on(super::resolve_peers(&peers)).unwrap();
        assert_eq!(
            addrs,
            vec![
                "127.0.0.2:6881".parse().unwrap(),
                "[::1]:51413".parse().unwrap()
            ]
        );
        let error = runtime
            .block_on(super::resolve_peers(&["127.0.0.2".to_owned()]))
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("--peer 127.0.0.2"),
            "{error:#}"
        );
    }

    #[test]
    fn eta_from_the_download_rate() {
        let p = |verified, rate| swarmer::Progress {
            state: swarmer::TorrentState::Downloading,
            total_bytes: 10_000,
            wanted_bytes: 10_000,
            left_bytes: 10_000 - verified,
            verified_bytes: verified,
            downloaded_bytes: 0,
            wasted_bytes: 0,
            uploaded_bytes: 0,
            download_rate: rate,
            upload_rate: 0,
            peers: 1,
            web_seeds: 0,
            web_seeds_sending: 0,
            pieces_have: 0,
            piece_count: 1,
            hash_failures: 0,
            checked_pieces: 0,
            pieces_to_check: 0,
        };
        assert_eq!(super::eta(&p(0, 0)), "?");
        assert_eq!(super::eta(&p(10_000, 0)), "0s");
        assert_eq!(super::eta(&p(0, 100)), "1m40s");
        assert_eq!(super::eta(&p(0, 1)), "2h46m");
        assert_eq!(super::eta(&p(9_990, 1000)), "1s");
    }
}
