//! `swarmer info`: what a .torrent file contains, for people.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use swarmer_proto::metainfo::{MAX_METAINFO_BYTES, Metainfo};

use crate::transfer::human_bytes;

pub(crate) fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let m = read_bounded(path)?;
    let layout = &m.info.layout;
    let mut out = String::new();
    use std::fmt::Write;
    let _ = writeln!(out, "name:        {}", m.info.name);
    let _ = writeln!(out, "info hash:   {}", m.info_hash);
    let _ = writeln!(
        out,
        "size:        {} ({} bytes)",
        human_bytes(layout.total_length()),
        layout.total_length()
    );
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

/// Reads and parses a .torrent file, reading at most one byte more than
/// [`MAX_METAINFO_BYTES`], so that a huge file (or an endless one such as `/dev/zero`) is refused without
/// being loaded into memory.
fn read_bounded(path: &Path) -> anyhow::Result<Metainfo> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_METAINFO_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Metainfo::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid torrent", path.display()))
}
