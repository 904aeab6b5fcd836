//! Log output for every command and the daemon: `tracing` to standard error at a level chosen by
//! `-v`, overridden by `RUST_LOG`, printed above the progress bar when one is shown. The last
//! [`KEPT_LINES`] lines are also kept in memory ([`recent`]), for the daemon's qBittorrent
//! `log/main`.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::progress_bar;

/// Sends `swarmer` and `swarmer_proto` logs to standard error: warnings with `verbose` 0, then
/// info, debug and trace; `RUST_LOG` replaces the filter. Calling it again does nothing.
pub(crate) fn init(verbose: u8) {
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
        // Colour codes only where a terminal will interpret them, not in redirected logs.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| LogWriter)
        .try_init();
}

/// Most log lines kept in memory.
pub(crate) const KEPT_LINES: usize = 1000;

/// One log line as kept.
#[derive(Debug, Clone)]
pub(crate) struct LogLine {
    /// Its number, counting from 0 since the process started.
    pub(crate) id: u64,
    /// When it was written, seconds since the Unix epoch.
    pub(crate) unix_time: u64,
    /// The line as printed (time, level, target, message), without the line break.
    pub(crate) text: String,
}

/// The kept lines (oldest first) and the number the next one gets.
static RECENT: Mutex<(u64, VecDeque<LogLine>)> = Mutex::new((0, VecDeque::new()));

/// The kept lines numbered after `after` (all with `None`), oldest first.
pub(crate) fn recent(after: Option<u64>) -> Vec<LogLine> {
    let recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    recent
        .1
        .iter()
        .filter(|l| after.is_none_or(|a| l.id > a))
        .cloned()
        .collect()
}

/// Keeps `buf` (one formatted event) among the recent lines.
fn keep(buf: &[u8]) {
    let text = without_colours(&String::from_utf8_lossy(buf))
        .trim_end()
        .to_owned();
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    let id = recent.0;
    recent.0 += 1;
    if recent.1.len() >= KEPT_LINES {
        recent.1.pop_front();
    }
    recent.1.push_back(LogLine {
        id,
        unix_time,
        text,
    });
}

/// `text` without ANSI colour sequences (`ESC [ ... m`), which a terminal's log lines carry.
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the sequence.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Standard error for log lines: while a progress bar is drawn, each line is written with the bar
/// briefly cleared, so logs and the bar never garble each other.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        keep(buf);
        match progress_bar::shown() {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_lines_are_numbered_and_bounded() {
        let before = recent(None).last().map(|l| l.id);
        for i in 0..(KEPT_LINES + 5) {
            keep(format!("line {i}\n").as_bytes());
        }
        let all = recent(None);
        assert_eq!(all.len(), KEPT_LINES);
        assert_eq!(all.last().unwrap().text, format!("line {}", KEPT_LINES + 4));
        let last = all.last().unwrap().id;
        assert!(before.is_none_or(|b| last > b));
        assert_eq!(recent(Some(last - 2)).len(), 2);
        assert_eq!(
            without_colours("\u{1b}[2mtime\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m x"),
            "time  INFO x"
        );
    }
}
