//! `swarmer add`, `swarmer list` and `swarmer remove`: talk to a running `swarmer daemon` over its
//! HTTP API (`--url`, else $SWARMER_URL, else http://127.0.0.1:9091) with its token (`--token`, else
//! $SWARMER_TOKEN, else the daemon's generated STATE_DIR/token when readable).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::metainfo_file::read_at_most;
use crate::state_dir::{default_state_dir, token_file};

/// How long one API call may take (connect included).
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest .torrent file sent (the daemon's upload limit).
const MAX_TORRENT_BYTES: u64 = 10 << 20;

/// Where the daemon is.
#[derive(Debug, clap::Args)]
pub(crate) struct DaemonAddress {
    /// The daemon's API [default: $SWARMER_URL, else http://127.0.0.1:9091].
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The daemon's token [default: $SWARMER_TOKEN, else the daemon's STATE_DIR/token].
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
}

/// What `swarmer add` sends.
#[derive(Debug, clap::Args)]
pub(crate) struct AddArgs {
    /// A .torrent file or a magnet link (quoted for the shell).
    torrent: String,
    /// Directory for its files (absolute, or relative to here) [default: the daemon's].
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    output: Option<PathBuf>,
    /// Add it paused.
    #[arg(long)]
    paused: bool,
    #[command(flatten)]
    daemon: DaemonAddress,
}

/// The fields of the API's torrent that the CLI prints.
#[derive(Debug, Deserialize)]
struct Torrent {
    id: u64,
    name: String,
    state: String,
    progress: f64,
    wanted_bytes: u64,
    download_rate: u64,
    upload_rate: u64,
    peers: u32,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(address: &DaemonAddress) -> anyhow::Result<Client> {
        let base = address
            .url
            .clone()
            .or_else(|| std::env::var("SWARMER_URL").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "http://127.0.0.1:9091".into());
        let token = address
            .token
            .clone()
            .or_else(|| {
                std::env::var("SWARMER_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty())
            })
            .or_else(|| {
                let path = token_file(&default_state_dir()?);
                std::fs::read_to_string(path)
                    .ok()
                    .map(|t| t.trim().to_string())
            });
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Requested-By", "swarmer-cli");
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    /// Sends, and turns a non-2xx answer into the daemon's error message.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach the daemon at {} (is `swarmer daemon` running?)",
                self.base
            )
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        bail!("the daemon refused: {message} ({status})")
    }
}

async fn parse<T: for<'de> Deserialize<'de>>(response: reqwest::Response) -> anyhow::Result<T> {
    let bytes = response
        .bytes()
        .await
        .context("reading the daemon's answer")?;
    serde_json::from_slice(&bytes).context("unexpected answer from the daemon")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `swarmer add`: prints the new torrent's id and name.
pub(crate) fn add(args: AddArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.daemon)?;
    let dir = match &args.output {
        Some(d) => Some(
            std::path::absolute(d)
                .with_context(|| format!("cannot resolve {}", d.display()))?
                .display()
                .to_string(),
        ),
        None => None,
    };
    let request = if swarmer_proto::magnet::is_magnet_uri(&args.torrent) {
        let body = serde_json::json!({
            "magnet": args.torrent,
            "download_dir": dir,
            "paused": args.paused,
        });
        client
            .request(reqwest::Method::POST, "/api/v1/torrents")
            .header("Content-Type", "application/json")
            .body(body.to_string())
    } else {
        let path = PathBuf::from(&args.torrent);
        let bytes = read_at_most(&path, MAX_TORRENT_BYTES)?;
        if bytes.len() as u64 > MAX_TORRENT_BYTES {
            bail!(
                "{} is larger than 10 MiB: not a torrent file",
                path.display()
            );
        }
        let file_name = path.file_name().map_or_else(
            || "file.torrent".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut form = reqwest::multipart::Form::new()
            .part(
                "torrent",
                reqwest::multipart::Part::bytes(bytes).file_name(file_name),
            )
            .text("paused", args.paused.to_string());
        if let Some(dir) = dir {
            form = form.text("download_dir", dir);
        }
        client
            .request(reqwest::Method::POST, "/api/v1/torrents")
            .multipart(form)
    };
    runtime()?.block_on(async {
        let response = client.send(request).await?;
        let t: Torrent = parse(response).await?;
        println!("added {} {}", t.id, t.name);
        Ok(ExitCode::SUCCESS)
    })
}

/// `swarmer list`: one line per torrent.
pub(crate) fn list(daemon: DaemonAddress) -> anyhow::Result<ExitCode> {
    let client = Client::new(&daemon)?;
    runtime()?.block_on(async {
        let response = client
            .send(client.request(reqwest::Method::GET, "/api/v1/torrents"))
            .await?;
        let torrents: Vec<Torrent> = parse(response).await?;
        println!(
            "{:>5}  {:<18} {:>6}  {:>10}  {:>10}  {:>10}  {:>5}  NAME",
            "ID", "STATE", "DONE", "SIZE", "DOWN/s", "UP/s", "PEERS"
        );
        for t in torrents {
            println!(
                "{:>5}  {:<18} {:>5.1}%  {:>10}  {:>10}  {:>10}  {:>5}  {}",
                t.id,
                t.state,
                t.progress * 100.0,
                swarmer::human_bytes(t.wanted_bytes),
                swarmer::human_bytes(t.download_rate),
                swarmer::human_bytes(t.upload_rate),
                t.peers,
                t.name
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `swarmer remove ID [--delete-data]`.
pub(crate) fn remove(
    id: u64,
    delete_data: bool,
    daemon: DaemonAddress,
) -> anyhow::Result<ExitCode> {
    let client = Client::new(&daemon)?;
    runtime()?.block_on(async {
        client
            .send(client.request(
                reqwest::Method::DELETE,
                &format!("/api/v1/torrents/{id}?delete_data={delete_data}"),
            ))
            .await?;
        println!(
            "removed {id}{}",
            if delete_data { " and its data" } else { "" }
        );
        Ok(ExitCode::SUCCESS)
    })
}
