//! `swarmer daemon`: one session hosting many torrents, kept in a redb store across restarts, and
//! controlled over HTTP: a JSON API (`api`), the Transmission RPC (`rpc`), the qBittorrent Web API
//! (`qbt`), a web UI (`ui`), and a watch folder (`watch`). `manager` owns the torrents; `http` puts the three HTTP front ends behind
//! `guard`, which decides who may ask. Below them: `state` (what handlers share), `error` (the one
//! mapping of errors to HTTP statuses), `model` (the JSON views) and `store` (redb).
//!
//! Dependencies point one way: each module uses only modules in the layers below its own, so no two
//! files import each other. Top to bottom: this file; `http`, `watch`; `api`, `rpc`, `qbt`, `ui`;
//! `fetch`, `state`;
//! `guard`; `throttle`, `error`; `manager`; `model`, `store`; `download_dir`.

mod api;
mod download_dir;
mod error;
mod fetch;
mod guard;
mod http;
mod insides;
mod json;
mod manager;
mod media;
mod model;
mod qbt;
mod rpc;
mod scrape;
mod scrape_board;
mod state;
mod store;
mod stream;
mod throttle;
mod ui;
mod watch;

use crate::encryption::EncryptionMode;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use swarmer::SessionConfig;

use self::download_dir::{DownloadDir, Roots};
use crate::dht_args::DhtArgs;
use crate::state_dir::{default_state_dir, token_file};
use crate::transport_arg::TransportArg;
use crate::{logging, units};

/// The API's default address: loopback only, so no token is needed.
const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9091";
/// Length of a generated token, in characters (base-62: about 190 bits).
const TOKEN_CHARS: usize = 32;

/// `swarmer daemon` options. Every one can also be set in the config file (same names, with
/// underscores); the command line wins.
#[derive(Debug, clap::Args)]
pub(crate) struct DaemonArgs {
    /// A TOML config file (keys as the long options, with underscores, plus `token`,
    /// `allowed_hosts`, `download_roots` and a `[qbittorrent]` section).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the HTTP API, web UI and Transmission RPC [default: 127.0.0.1:9091]. Any address
    /// other than loopback needs a token (config `token` or $SWARMER_TOKEN; one is generated into
    /// STATE_DIR/token if neither is set).
    #[arg(long, value_name = "ADDR:PORT")]
    http_listen: Option<SocketAddr>,
    /// Default directory for downloads [default: the current directory, or the one saved].
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    output: Option<PathBuf>,
    /// A directory downloads may go under (repeatable); no API may put files anywhere else
    /// [default: the default download directory].
    #[arg(long = "download-root", value_name = "DIR")]
    download_roots: Vec<PathBuf>,
    /// Where the daemon keeps its state (swarmer.redb) [default: $XDG_STATE_HOME/swarmer, else
    /// ~/.local/state/swarmer].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// A directory to watch: a .torrent file put there is added and renamed to NAME.torrent.added
    /// (NAME.torrent.invalid if it is not a valid torrent).
    #[arg(long, value_name = "DIR")]
    watch_dir: Option<PathBuf>,
    /// TCP and UDP (uTP, DHT, UDP trackers) port to listen on for peers [default: 6881; 0 picks a
    /// free one].
    #[arg(long)]
    port: Option<u16>,
    /// Local IP address for the peer listener, outgoing connections and tracker requests. Without it swarmer is dual-stack
    /// (IPv4 and IPv6 on one port); with it, only that address and its family.
    #[arg(long, value_name = "IP")]
    bind_address: Option<IpAddr>,
    /// Most bytes per second sent to all peers together (e.g. 500K, 2M); saved, and changeable over
    /// the API.
    #[arg(long, value_name = "RATE", value_parser = units::parse_rate)]
    max_upload_rate: Option<u64>,
    /// Most bytes per second received from all peers together (e.g. 500K, 2M).
    #[arg(long, value_name = "RATE", value_parser = units::parse_rate)]
    max_download_rate: Option<u64>,
    /// Most torrents downloading at once; the others queue [default: 5].
    #[arg(long, value_name = "N")]
    max_active_downloads: Option<u32>,
    /// Most torrents seeding at once; the others queue [default: no limit].
    #[arg(long, value_name = "N")]
    max_active_seeds: Option<u32>,
    #[command(flatten)]
    dht: DhtArgs,
    /// Do not use Local Service Discovery (BEP 14).
    #[arg(long)]
    no_lsd: bool,
    /// Do not exchange peers with connected peers (BEP 11).
    #[arg(long)]
    no_pex: bool,
    /// Do not ask the router to forward the peer port (UPnP IGD, then NAT-PMP and PCP).
    #[arg(long)]
    no_port_mapping: bool,
    /// Encrypt peer connections (MSE/PE): prefer, require or disable; saved, and changeable over
    /// the API [default: prefer].
    #[arg(long, value_enum)]
    encryption: Option<EncryptionMode>,
    /// Which transports carry peer connections: tcp, utp (BEP 29) or both [default: both].
    #[arg(long, value_enum)]
    transport: Option<TransportArg>,
    /// Log more (-v: debug, -vv: trace); the default logs what the daemon does (info).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// The config file (TOML). Unknown keys are an error, so a typo does not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    http_listen: Option<SocketAddr>,
    output: Option<PathBuf>,
    /// Directories downloads may go under (the command line's `--download-root` adds to them).
    #[serde(default)]
    download_roots: Vec<PathBuf>,
    state_dir: Option<PathBuf>,
    watch_dir: Option<PathBuf>,
    port: Option<u16>,
    bind_address: Option<IpAddr>,
    max_upload_rate: Option<u64>,
    max_download_rate: Option<u64>,
    max_active_downloads: Option<u32>,
    max_active_seeds: Option<u32>,
    /// The API token (also $SWARMER_TOKEN).
    token: Option<String>,
    /// Host names besides loopback and the listen address that may appear in the Host header.
    #[serde(default)]
    allowed_hosts: Vec<String>,
    no_dht: Option<bool>,
    no_lsd: Option<bool>,
    no_pex: Option<bool>,
    no_port_mapping: Option<bool>,
    encryption: Option<EncryptionMode>,
    /// `"tcp"`, `"utp"` or `"both"`.
    transport: Option<TransportArg>,
    /// The qBittorrent API's login (`username`, `password`).
    #[serde(default)]
    qbittorrent: qbt::QbtConfig,
}

/// Runs `swarmer daemon` until SIGINT or SIGTERM, then stops every torrent.
pub(crate) fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let file: ConfigFile = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("{} is not a valid config", path.display()))?
        }
        None => ConfigFile::default(),
    };
    logging::init(args.verbose + 1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args, file))
}

async fn serve(args: DaemonArgs, file: ConfigFile) -> anyhow::Result<ExitCode> {
    let http_listen = args
        .http_listen
        .or(file.http_listen)
        .unwrap_or_else(|| DEFAULT_HTTP_LISTEN.parse().expect("a valid address"));
    let state_dir = args
        .state_dir
        .or(file.state_dir)
        .or_else(default_state_dir)
        .context(
            "no state directory: pass --state-dir (neither $XDG_STATE_HOME nor $HOME is set)",
        )?;
    let state_dir = absolute(&state_dir)?;
    let store = Arc::new(store::Store::open(&state_dir)?);
    let token = file
        .token
        .or_else(|| std::env::var("SWARMER_TOKEN").ok())
        .filter(|t| !t.is_empty());
    let token = match token {
        Some(t) => Some(t),
        None if http_listen.ip().is_loopback() => None,
        None => Some(generated_token(&state_dir)?),
    };
    let no = |flag: bool, saved: Option<bool>| flag || saved.unwrap_or(false);
    let mut dht = args.dht;
    dht.no_dht = no(dht.no_dht, file.no_dht);
    let config = SessionConfig {
        bind_ip: args.bind_address.or(file.bind_address),
        listen_port: args.port.or(file.port).unwrap_or(6881),
        lsd: !no(args.no_lsd, file.no_lsd),
        pex: !no(args.no_pex, file.no_pex),
        port_mapping: !no(args.no_port_mapping, file.no_port_mapping),
        // The saved setting (applied with the others below) may say otherwise; until then, the
        // option or the file.
        encryption: args
            .encryption
            .or(file.encryption)
            .unwrap_or_default()
            .into(),
        transport: args.transport.or(file.transport).unwrap_or_default().into(),
        dht: dht.config(),
        ..SessionConfig::default()
    };
    let session = Arc::new(crate::peer_port::start_session(config.clone()).await?);
    let output = match args.output.or(file.output) {
        Some(dir) => Some(DownloadDir::new(absolute(&dir)?)?),
        None => None,
    };
    let saved: Option<store::Settings> = store.get_meta("settings")?;
    let default_dir = match (&output, saved) {
        (Some(d), _) => d.clone(),
        (None, Some(saved)) => saved.download_dir,
        (None, None) => DownloadDir::new(absolute(Path::new("."))?)?,
    };
    let roots = {
        let mut dirs = Vec::new();
        for dir in file.download_roots.iter().chain(&args.download_roots) {
            dirs.push(DownloadDir::new(absolute(dir)?)?);
        }
        if dirs.is_empty() {
            dirs.push(default_dir.clone());
        }
        Roots::new(&dirs).context("cannot create or resolve a download root")?
    };
    roots.confine(&default_dir).with_context(|| {
        format!(
            "the download directory {} is outside the download roots",
            default_dir.as_path().display()
        )
    })?;
    let defaults = store::Settings {
        max_upload_rate: None,
        max_download_rate: None,
        max_active_downloads: Some(5),
        max_active_seeds: None,
        download_dir: default_dir,
        encryption: EncryptionMode::Prefer,
    };
    tracing::info!(roots = ?roots.dirs(), "downloads are confined to these directories");
    let tracker_bind = config.bind_ip;
    let (manager, manager_task) =
        manager::start(Arc::clone(&session), store, defaults, roots.clone(), config)?;
    let scraper = {
        let client = swarmer::tracker::TrackerClient::new(swarmer::tracker::TrackerClientConfig {
            bind: tracker_bind,
            ..Default::default()
        })
        .context("cannot start the tracker client")?;
        tokio::spawn(scrape::run(manager.clone(), client, manager.scrape_board()))
    };
    // Options given now override what was saved.
    let patch = manager::SettingsPatch {
        max_upload_rate: args.max_upload_rate.or(file.max_upload_rate).map(Some),
        max_download_rate: args.max_download_rate.or(file.max_download_rate).map(Some),
        max_active_downloads: args
            .max_active_downloads
            .or(file.max_active_downloads)
            .map(Some),
        max_active_seeds: args.max_active_seeds.or(file.max_active_seeds).map(Some),
        download_dir: output.map(PathBuf::from),
        encryption: args.encryption.or(file.encryption),
    };
    manager.set_settings(patch).await?;
    let settings = manager.settings().await.context("the manager stopped")?;
    let download_dir = settings.download_dir.as_path();
    std::fs::create_dir_all(download_dir).with_context(|| {
        format!(
            "cannot create download directory {}",
            download_dir.display()
        )
    })?;
    let listener = tokio::net::TcpListener::bind(http_listen)
        .await
        .with_context(|| format!("cannot listen on {http_listen}"))?;
    let local = listener.local_addr()?;
    let guard = Arc::new(guard::Guard {
        token,
        allowed_hosts: file.allowed_hosts,
        throttle: throttle::Throttle::default(),
    });
    let watch_dir = match args.watch_dir.or(file.watch_dir) {
        Some(dir) => {
            let dir = absolute(&dir)?;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create watch directory {}", dir.display()))?;
            Some(std::fs::canonicalize(&dir)?)
        }
        None => None,
    };
    let state = state::AppState {
        manager: manager.clone(),
        guard,
        watch_dir: watch_dir.clone(),
        roots,
    };
    let app = http::router(state, file.qbittorrent);
    let watcher = watch_dir.map(|dir| tokio::spawn(watch::run(dir, manager.clone())));
    let shutdown = shutdown_signal()?;
    println!("swarmer daemon: listening on http://{local}");
    println!(
        "swarmer daemon: peers connect to port {}",
        session.listen_addr().port()
    );
    tracing::info!(
        peers = %session.listen_addr(),
        state = %state_dir.display(),
        downloads = %download_dir.display(),
        "daemon ready"
    );
    // The manager holds the session from here on (and replaces it when the peer port changes).
    drop(session);
    // No graceful HTTP shutdown: event streams never end by themselves, and every request's effect is
    // in the store before its answer is sent, so connections can simply be dropped.
    let served = tokio::select! {
        served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        ) => served,
        () = shutdown => Ok(()),
    };
    tracing::info!("shutting down");
    if let Some(w) = watcher {
        w.abort();
    }
    scraper.abort();
    // Keep the DHT's nodes and id for the next start however short this run was (its own first
    // save comes a minute after start), and while the runtime still runs the write.
    if let Some(dht) = manager.dht().await {
        dht.save().await;
    }
    // Take the router's forwarding down (bounded) while the runtime still runs the requests.
    if let Some(mapping) = manager.port_mapping().await {
        mapping.close().await;
    }
    manager.shutdown().await;
    let _ = manager_task.await;
    served.context("the HTTP server failed")?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves `dir` against the current directory (the daemon's paths are saved, so they must not
/// depend on where it was started).
fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))
}

/// The token in `STATE_DIR/token`, created (mode 0600) with a random one if missing.
fn generated_token(state_dir: &Path) -> anyhow::Result<String> {
    use rand::Rng;
    use std::os::unix::fs::OpenOptionsExt;
    let path = token_file(state_dir);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            tracing::info!("API token in {}", path.display());
            return Ok(existing);
        }
    }
    let token: String = rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(TOKEN_CHARS)
        .map(char::from)
        .collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut f, token.as_bytes())?;
    f.sync_all()?;
    eprintln!(
        "swarmer daemon: listening beyond loopback; the API token is in {}",
        path.display()
    );
    Ok(token)
}

/// Registers the SIGTERM and SIGINT handlers now and returns a future that ends at the first of
/// them. Registered before the daemon says it is ready: a request can be answered (on another
/// worker) before the serving `select!` first polls its other branches, and a SIGTERM sent
/// right after must already be ours, or it kills the process instead of stopping it.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::ConfigFile;

    /// The example config the README points to parses, so it cannot drift from the keys the
    /// daemon reads (unknown keys are an error).
    #[test]
    fn the_documented_example_config_is_valid() {
        let example = include_str!("../../../../docs/swarmer.toml");
        let config: ConfigFile = toml::from_str(example).expect("docs/swarmer.toml");
        assert_eq!(config.port, Some(6881));
        assert_eq!(config.allowed_hosts, ["nas.local"]);
        assert_eq!(config.no_port_mapping, Some(false));
    }
}
