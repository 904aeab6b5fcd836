//! `swarmer info`: what a .torrent file contains, for people, and with `--scrape` what its trackers
//! say of its swarm (BEP 48, BEP 15).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use swarmer::human_bytes;
use swarmer::tracker::{TrackerClient, TrackerClientConfig};
use swarmer_proto::metainfo::Metainfo;
use swarmer_proto::tracker::scrape::ScrapeCounts;

use crate::metainfo_file::read_metainfo;

/// How long `--scrape` waits for all trackers together.
const SCRAPE_BUDGET: Duration = Duration::from_secs(30);

/// Runs `swarmer info TORRENT [--scrape]`: prints the torrent's description to standard output,
/// then, with `scrape`, each tracker's seeders, leechers and completed downloads. Fails (after
/// printing every tracker's answer) when no tracker answered a scrape.
pub(crate) fn run(path: &Path, scrape: bool) -> anyhow::Result<ExitCode> {
    let m = read_metainfo(path)?;
    let layout = &m.info.layout;
    let mut out = String::new();
    use std::fmt::Write;
    let _ = writeln!(out, "name:        {}", m.info.name);
    let _ = writeln!(out, "version:     {}", m.info.version().describe());
    // The wire hash: v1's SHA-1, or for a v2-only torrent the first 20 bytes of its SHA-256 (BEP 52).
    let _ = writeln!(out, "info hash:   {}", m.info_hash);
    if let Some(v2) = m.info_hash_v2() {
        let hex: String = v2.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(out, "info hash v2: {hex}");
    }
    // The files' bytes; BEP 47 padding (and the alignment of a v2 torrent) is said apart.
    let content: u64 = m
        .info
        .files
        .iter()
        .filter(|f| !f.padding)
        .map(|f| f.length)
        .sum();
    let padding = layout.total_length() - content;
    let _ = write!(
        out,
        "size:        {} ({content} bytes)",
        human_bytes(content)
    );
    let _ = if padding > 0 {
        writeln!(out, " + {padding} bytes of padding")
    } else {
        writeln!(out)
    };
    let _ = writeln!(
        out,
        "pieces:      {} x {} ({} bytes)",
        layout.piece_count(),
        human_bytes(u64::from(layout.piece_length())),
        layout.piece_length()
    );
    let _ = writeln!(
        out,
        "private:     {}",
        if m.info.private { "yes" } else { "no" }
    );
    if let Some(c) = &m.comment {
        let _ = writeln!(out, "comment:     {c}");
    }
    if let Some(c) = &m.created_by {
        let _ = writeln!(out, "created by:  {c}");
    }
    let _ = writeln!(out, "trackers:");
    if m.announce_tiers.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for (i, tier) in m.announce_tiers.iter().enumerate() {
        for url in tier {
            let _ = writeln!(out, "  tier {i}: {url}");
        }
    }
    if !m.url_list.is_empty() || !m.http_seeds.is_empty() {
        let _ = writeln!(out, "web seeds:");
        for url in &m.url_list {
            let _ = writeln!(out, "  {url}");
        }
        for url in &m.http_seeds {
            let _ = writeln!(out, "  {url} (BEP 17)");
        }
    }
    let files: Vec<_> = m.info.files.iter().filter(|f| !f.padding).collect();
    // The index in brackets is what `--files` takes; padding files (BEP 47) keep their index but
    // are not listed.
    let _ = writeln!(out, "files:       {} ([index] for --files)", files.len());
    for (i, f) in m.info.files.iter().enumerate() {
        if f.padding {
            continue;
        }
        let _ = writeln!(out, "  [{i}] {} ({} bytes)", f.path.join("/"), f.length);
    }
    let mut code = ExitCode::SUCCESS;
    if scrape {
        let answers = scrape_trackers(&m)?;
        let _ = writeln!(out, "scrape:");
        if answers.is_empty() {
            let _ = writeln!(out, "  (no trackers)");
        }
        let mut answered = false;
        for (url, answer) in answers {
            let _ = match answer {
                Ok(Some(c)) => {
                    answered = true;
                    writeln!(
                        out,
                        "  {url}: {} seeders, {} leechers, {} completed",
                        c.seeders, c.leechers, c.completed
                    )
                }
                Ok(None) => {
                    answered = true;
                    writeln!(out, "  {url}: torrent unknown to the tracker")
                }
                Err(e) => writeln!(out, "  {url}: {e}"),
            };
        }
        if !answered {
            code = ExitCode::FAILURE;
        }
    }
    use std::io::Write as _;
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("writing to standard output")?;
    Ok(code)
}

/// One tracker's scrape answer: the counts, `None` when the tracker does not know the torrent,
/// or why it failed.
type ScrapeAnswer = Result<Option<ScrapeCounts>, String>;

/// Scrapes every tracker of `m` at once for the torrent's wire info hash (a hybrid's v1 hash), all
/// within [`SCRAPE_BUDGET`]; answers in the metainfo's tracker order.
fn scrape_trackers(m: &Metainfo) -> anyhow::Result<Vec<(String, ScrapeAnswer)>> {
    let urls: Vec<String> = m.announce_tiers.iter().flatten().cloned().collect();
    let client = TrackerClient::new(TrackerClientConfig::default())
        .context("cannot start the tracker client")?;
    let hash = m.info_hash;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(async {
        let scrapes = urls.iter().map(|url| {
            let client = &client;
            async move {
                let answer =
                    match tokio::time::timeout(SCRAPE_BUDGET, client.scrape(url, &[hash])).await {
                        Err(_) => Err(format!("no answer within {} s", SCRAPE_BUDGET.as_secs())),
                        Ok(Err(e)) => Err(e.to_string()),
                        Ok(Ok(counts)) => Ok(counts.first().map(|(_, c)| *c)),
                    };
                (url.clone(), answer)
            }
        });
        futures_util::future::join_all(scrapes).await
    }))
}
