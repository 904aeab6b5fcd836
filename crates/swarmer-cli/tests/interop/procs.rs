//! Child processes owned by a test: output captured to files, killed and reaped on drop.
//!
//! Each child's stdout and stderr go to `<logs>/<name>.stdout` and `<logs>/<name>.stderr`, so a
//! test can poll them for events and the scene can print them when the test fails. The guard
//! kills by PID with SIGKILL and waits, which also stops opentracker: it drops its privileges,
//! which would clear a parent-death signal, so nothing but an explicit kill is reliable.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::deadline::Deadline;

/// A running child process that is killed and reaped when dropped.
pub(crate) struct Proc {
    name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Starts `command` with stdin closed and its output redirected into `logs`.
    pub(crate) fn spawn(name: &str, command: &mut Command, logs: &Path) -> Proc {
        let stdout = logs.join(format!("{name}.stdout"));
        let stderr = logs.join(format!("{name}.stderr"));
        let child = command
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create stdout log"))
            .stderr(File::create(&stderr).expect("create stderr log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        eprintln!("started {name} (pid {}): {command:?}", child.id());
        Proc {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub(crate) fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Panics with the process's output if it has exited.
    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "{} exited early with {status}\n--- stdout\n{}\n--- stderr\n{}",
                self.name,
                self.stdout_text(),
                self.stderr_text()
            );
        }
    }

    /// Waits until a stdout line satisfies `matches` and returns it; fails if the process exits
    /// first or the deadline passes.
    pub(crate) fn wait_for_line(
        &mut self,
        what: &str,
        deadline: Deadline,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        let label = format!("{what} from {}", self.name);
        deadline.poll(&label, Duration::from_millis(50), || {
            let found = self
                .stdout_text()
                .lines()
                .find(|l| matches(l))
                .map(str::to_owned);
            if found.is_none() {
                self.assert_running();
            }
            found
        })
    }

    /// Waits for the process to exit on its own; `None` if the deadline passed first.
    pub(crate) fn wait_exit(&mut self, deadline: Deadline) -> Option<ExitStatus> {
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if deadline.expired() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50).min(deadline.remaining()));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Errors here mean it exited in between; either way `wait` reaps it.
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
