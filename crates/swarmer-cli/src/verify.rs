//! `swarmer verify`: checks a torrent's data in an output directory (read-only, on every core) and
//! reports missing files, files of the wrong length and pieces that do not match, with exit code 0
//! only when everything is there and matches.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget};
use swarmer::{VerifyReport, human_bytes};
use swarmer_proto::metainfo::Info;

use crate::metainfo_file::read_metainfo;
use crate::progress_bar::Phase;

/// Runs `swarmer verify TORRENT -o OUTPUT`; `quiet` drops the progress bar.
pub(crate) fn run(torrent: &Path, output: &Path, quiet: bool) -> anyhow::Result<ExitCode> {
    let metainfo = Arc::new(read_metainfo(torrent)?);
    let name = metainfo.info.name.clone();
    let pieces = metainfo.info.layout.piece_count();
    let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let bar =
            ProgressBar::with_draw_target(Some(u64::from(pieces)), ProgressDrawTarget::stderr());
        bar.set_style(Phase::Checking.style());
        bar.set_prefix(name.clone());
        bar
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let started = std::time::Instant::now();
    let report = runtime
        .block_on(swarmer::verify(Arc::clone(&metainfo), output, |hashed| {
            if let Some(bar) = &bar {
                bar.set_position(u64::from(hashed));
            }
        }))
        .with_context(|| format!("cannot verify {name}"))?;
    let took = started.elapsed();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    print!("{}", describe(&name, &metainfo.info, &report));
    if !quiet {
        let bytes = metainfo.info.layout.total_length();
        eprintln!(
            "{name}: checked {} in {:.2} s ({}/s)",
            human_bytes(bytes),
            took.as_secs_f64(),
            human_bytes((bytes as f64 / took.as_secs_f64().max(1e-9)) as u64)
        );
    }
    Ok(if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The report as lines for standard output.
fn describe(name: &str, info: &Info, report: &VerifyReport) -> String {
    let good = report.pieces - report.bad_pieces.len() as u32;
    let mut out = format!("{name}: {good} of {} pieces match\n", report.pieces);
    for path in &report.missing_files {
        out += &format!("missing: {}\n", path.display());
    }
    for (path, expected, actual) in &report.wrong_length {
        out += &format!(
            "wrong length: {} has {actual} bytes, the torrent says {expected}\n",
            path.display()
        );
    }
    if let Some(&first) = report.bad_pieces.first() {
        let file = info
            .layout
            .piece(first)
            .and_then(|p| info.layout.piece_slices(p).next())
            .map(|slice| info.files[slice.file.as_usize()].path.join("/"))
            .unwrap_or_default();
        out += &format!(
            "bad pieces: {} (the first starts in {file})\n",
            ranges(&report.bad_pieces)
        );
    }
    if report.is_complete() {
        out += "all data is present and matches\n";
    }
    out
}

/// Sorted piece indices as ranges: `[1, 2, 3, 7]` becomes `1-3, 7`.
fn ranges(sorted: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn piece_ranges() {
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[4]), "4");
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10]), "1-3, 7, 9-10");
    }
}
