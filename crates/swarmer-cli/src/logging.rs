//! Log output for every command and the daemon: `tracing` to standard error at a level chosen by
//! `-v`, overridden by `RUST_LOG`, printed above the progress bar when one is shown.

use std::io::{IsTerminal, Write};

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

/// Standard error for log lines: while a progress bar is drawn, each line is written with the bar
/// briefly cleared, so logs and the bar never garble each other.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
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
