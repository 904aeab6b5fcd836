//! `swarmer info`: what a .torrent file contains, for people.

use std::path::Path;

use std::process::ExitCode;

use anyhow::Context;
use swarmer::human_bytes;

use crate::metainfo_file::read_metainfo;

/// Runs `swarmer info TORRENT`: prints the torrent's description to standard output.
pub(crate) fn run(path: &Path) -> anyhow::Result<ExitCode> {
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
    use std::io::Write as _;
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("writing to standard output")?;
    Ok(ExitCode::SUCCESS)
}
