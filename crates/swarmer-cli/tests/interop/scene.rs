//! One interop test's workspace: a scratch directory, its logs and its deadline.
//!
//! Declare the scene before the processes of a test: locals drop in reverse order, so every
//! process is killed before the scene prints the logs of a failed test and removes the directory.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::deadline::Deadline;

/// The whole-test budget; the slowest case (Transmission) needs about a third of it.
pub(crate) const TEST_BUDGET: Duration = Duration::from_secs(120);

pub(crate) struct Scene {
    pub(crate) name: String,
    /// Scratch directory, readable by `nobody` (opentracker chroots into a subdirectory).
    pub(crate) dir: PathBuf,
    /// Where every process's stdout and stderr go.
    pub(crate) logs: PathBuf,
    pub(crate) deadline: Deadline,
    started: Instant,
}

impl Scene {
    pub(crate) fn new(name: &str) -> Scene {
        let dir =
            std::env::temp_dir().join(format!("swarmer-interop-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scene dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod scene dir");
        let logs = dir.join("logs");
        std::fs::create_dir(&logs).expect("create logs dir");
        Scene {
            name: name.to_owned(),
            dir,
            logs,
            deadline: Deadline::after(TEST_BUDGET),
            started: Instant::now(),
        }
    }

    /// A new empty subdirectory of the scene.
    pub(crate) fn subdir(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::create_dir_all(&path).expect("create subdir");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    /// Prints how long the test has taken so far, tagged with `step`.
    pub(crate) fn mark(&self, step: &str) {
        eprintln!(
            "[{} +{:.2}s] {step}",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
    }

    fn dump_logs(&self) {
        let Ok(entries) = std::fs::read_dir(&self.logs) else {
            return;
        };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(150)..];
            eprintln!("===== {} (last {} lines)", path.display(), tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
            eprintln!(
                "[{}] failed; files kept in {}",
                self.name,
                self.dir.display()
            );
        } else if std::env::var_os("SWARMER_INTEROP_KEEP").is_some() {
            eprintln!("[{}] files kept in {}", self.name, self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
