//! Child processes owned by a test: output captured to files, killed and reaped on drop.
//!
//! Each child's stdout and stderr are piped to a thread that copies them to `<logs>/<name>.stdout`
//! and `<logs>/<name>.stderr`, where a test looks for events and the scene finds them to print when
//! the test fails. Every write there, and every exit, is announced through [`changed`], so waits on
//! a process wake when it prints or exits instead of polling. The guard kills by PID with SIGKILL and
//! waits, which also stops opentracker: it drops its privileges, which would clear a parent-death
//! signal, so nothing but an explicit kill is reliable.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Condvar, Mutex, mpsc};
use std::time::{Duration, SystemTime};

use crate::deadline::Deadline;

/// A counter bumped whenever a child process writes output or exits, with a condition variable to
/// wait for the next bump.
pub(crate) struct Changes {
    generation: Mutex<u64>,
    bumped: Condvar,
}

static CHANGES: Changes = Changes {
    generation: Mutex::new(0),
    bumped: Condvar::new(),
};

/// The process-wide record of child output and exits.
pub(crate) fn changed() -> &'static Changes {
    &CHANGES
}

impl Changes {
    /// The current generation: read it before looking at the state a wait is about.
    pub(crate) fn generation(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.bumped.notify_all();
    }

    /// Waits until the generation moves past `seen`, or `timeout` passes.
    pub(crate) fn wait_past(&self, seen: u64, timeout: Duration) {
        let generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .bumped
            .wait_timeout_while(generation, timeout, |g| *g == seen);
    }
}

/// Copies everything `pipe` delivers into the file at `path`, announcing each write. The returned
/// channel disconnects once the pipe is drained (the writer closed it) and all is in the file.
fn copy_to_log(mut pipe: impl Read + Send + 'static, path: &Path) -> mpsc::Receiver<()> {
    let mut log = File::create(path).expect("create log file");
    let (drained, done) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let _drained = drained;
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 || log.write_all(&buf[..n]).is_err() {
                break;
            }
            changed().bump();
        }
    });
    done
}

/// How long an exited process's output may take to reach its log files before the exit is
/// reported anyway (a grandchild may hold the pipes open).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A child process whose exit arrives as an event: a thread owns the `Child` and blocks in `wait`,
/// so waiting with a timeout is a channel receive, not a polling loop.
pub(crate) struct Waited {
    pid: u32,
    status: Option<ExitStatus>,
    exits: mpsc::Receiver<ExitStatus>,
}

impl Waited {
    pub(crate) fn new(child: Child) -> Waited {
        Waited::with_logs(child, Vec::new())
    }

    /// Like [`Waited::new`], but the exit is reported only once the output copied by
    /// [`copy_to_log`] (`drained`) is all in the log files (or after [`DRAIN_TIMEOUT`]), so whoever
    /// sees the exit also sees the last lines.
    fn with_logs(mut child: Child, drained: Vec<mpsc::Receiver<()>>) -> Waited {
        let pid = child.id();
        let (tx, exits) = mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let until = std::time::Instant::now() + DRAIN_TIMEOUT;
                for log in drained {
                    let _ = log
                        .recv_timeout(until.saturating_duration_since(std::time::Instant::now()));
                }
                let _ = tx.send(status);
            }
            changed().bump();
        });
        Waited {
            pid,
            status: None,
            exits,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status if the process has exited, without waiting.
    pub(crate) fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.exits.try_recv().ok();
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit.
    pub(crate) fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.exits.recv_timeout(timeout).ok();
        }
        self.status
    }

    /// Sends SIGKILL to `target` (a PID, or `-PGID` for a process group) unless the process has
    /// already exited, then waits for it to be reaped (bounded).
    pub(crate) fn kill(&mut self, target: &str) {
        self.signal("KILL", target, Duration::from_secs(10));
    }

    /// Sends `signal` (a name such as `TERM`) to `target` unless the process has already exited,
    /// then waits up to `timeout` for it to exit.
    pub(crate) fn signal(
        &mut self,
        signal: &str,
        target: &str,
        timeout: Duration,
    ) -> Option<ExitStatus> {
        if self.try_status().is_none() {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), "--", target])
                .status();
            self.wait_timeout(timeout);
        }
        self.status
    }
}

/// A running child process that is killed and reaped when dropped.
pub(crate) struct Proc {
    name: String,
    child: Waited,
    stdout: PathBuf,
    stderr: PathBuf,
    /// Wall-clock time just before the spawn: nothing in its logs can be older.
    spawned_at: SystemTime,
}

impl Proc {
    /// Starts `command` with stdin closed and its output redirected into `logs`.
    pub(crate) fn spawn(name: &str, command: &mut Command, logs: &Path) -> Proc {
        let stdout = logs.join(format!("{name}.stdout"));
        let stderr = logs.join(format!("{name}.stderr"));
        let spawned_at = SystemTime::now();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        let drained = vec![
            copy_to_log(child.stdout.take().expect("stdout pipe"), &stdout),
            copy_to_log(child.stderr.take().expect("stderr pipe"), &stderr),
        ];
        eprintln!("started {name} (pid {}): {command:?}", child.id());
        Proc {
            name: name.to_owned(),
            child: Waited::with_logs(child, drained),
            stdout,
            stderr,
            spawned_at,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub(crate) fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub(crate) fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Panics with the process's output if it has exited.
    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.child.try_status() {
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
        match self.wait_for_line_or_exit(what, deadline, matches) {
            Ok(line) => line,
            Err(_) => {
                self.assert_running();
                unreachable!("assert_running panics for a process that exited")
            }
        }
    }

    /// Like `wait_for_line`, but returns the exit status if the process exits first.
    pub(crate) fn wait_for_line_or_exit(
        &mut self,
        what: &str,
        deadline: Deadline,
        matches: impl Fn(&str) -> bool,
    ) -> Result<String, ExitStatus> {
        let label = format!("{what} from {}", self.name);
        deadline.wait(&label, || {
            let found = self
                .stdout_text()
                .lines()
                .find(|l| matches(l))
                .map(str::to_owned);
            match found {
                Some(line) => Some(Ok(line)),
                None => self.child.try_status().map(Err),
            }
        })
    }

    /// Waits until a stderr line satisfies `matches` and returns a wall-clock time at which that
    /// line had not been written yet: the start of the last look (each after the process wrote
    /// something) that did not find it. Comparing
    /// it with another process's timestamps therefore never favours this process's line being
    /// later than it was. Fails if the process exits first or the deadline passes.
    pub(crate) fn wait_for_stderr_line(
        &mut self,
        what: &str,
        deadline: Deadline,
        matches: impl Fn(&str) -> bool,
    ) -> SystemTime {
        let label = format!("{what} on the stderr of {}", self.name);
        let mut absent_at = self.spawned_at;
        deadline.wait(&label, || {
            let reading_at = SystemTime::now();
            if self.stderr_text().lines().any(&matches) {
                return Some(absent_at);
            }
            absent_at = reading_at;
            self.assert_running();
            None
        })
    }

    /// Sends `signal` (`TERM`, `INT`) and waits up to `timeout` for the process to exit;
    /// `None` if it is still running.
    pub(crate) fn signal(&mut self, signal: &str, timeout: Duration) -> Option<ExitStatus> {
        let pid = self.child.pid().to_string();
        self.child.signal(signal, &pid, timeout)
    }

    /// Waits for the process to exit on its own; `None` if the deadline passed first.
    pub(crate) fn wait_exit(&mut self, deadline: Deadline) -> Option<ExitStatus> {
        self.child.wait_timeout(deadline.remaining())
    }

    /// Like `wait_exit`, and also returns the process's peak resident set size in KiB: its
    /// `VmHWM` (a high-water mark, so it only grows) as last read from `/proc/PID/status` while
    /// it ran, at most `PEAK_RSS_SAMPLE` before it exited.
    pub(crate) fn wait_exit_peak_rss(&mut self, deadline: Deadline) -> (Option<ExitStatus>, u64) {
        let status_file = format!("/proc/{}/status", self.child.pid());
        let mut peak = 0;
        loop {
            // A zombie has no VmHWM line any more: keep the last value read.
            if let Some(kib) = std::fs::read_to_string(&status_file)
                .ok()
                .and_then(|s| vm_hwm_kib(&s))
            {
                peak = kib;
            }
            let wait = PEAK_RSS_SAMPLE.min(deadline.remaining());
            if let Some(status) = self.child.wait_timeout(wait) {
                return (Some(status), peak);
            }
            if deadline.expired() {
                return (None, peak);
            }
        }
    }
}

/// How often `Proc::wait_exit_peak_rss` reads the high-water mark.
const PEAK_RSS_SAMPLE: Duration = Duration::from_millis(20);

/// The `VmHWM` line of a `/proc/PID/status` text, in KiB.
fn vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.child.pid().to_string();
        self.child.kill(&pid);
    }
}
