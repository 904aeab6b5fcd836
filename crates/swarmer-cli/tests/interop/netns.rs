//! Runs each interop test inside a private network namespace that holds only `lo`, and a private
//! mount namespace (so a test may mount a small tmpfs that vanishes with it).
//!
//! The test function first runs in the ordinary test process. There it checks that every real
//! client it needs is installed and that `unshare --net` works, then re-executes the test binary
//! for just this test inside a fresh namespace (`SWARMER_IN_NETNS=1` marks the inner run) and
//! forwards its output. Anything that ignores its loopback configuration then fails with
//! ENETUNREACH instead of leaving the machine, and every socket dies with the namespace.
//!
//! A missing client fails the test when `CI` is set and otherwise skips it loudly on stderr:
//! never silently.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::deadline::Deadline;
use crate::procs::Waited;
use crate::scene::{Scene, TEST_BUDGET};

/// A real program a test depends on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Need {
    Opentracker,
    Mktorrent,
    Libtorrent,
    /// Debian's nginx-light, serving web seeds (BEP 19).
    Nginx,
    Transmission,
    /// Debian's miniupnpd with its nftables backend, and `nft` (tests/interop/port_mapping.rs).
    Miniupnpd,
    /// Headless Chromium and its WebDriver server, for the daemon's web UI test (tests/daemon.rs;
    /// the interop binary never asks for it).
    #[allow(dead_code)]
    Chromium,
    /// The `qbittorrent-api` Python package in the virtualenv [`qbt_python`] names, for the
    /// daemon's qBittorrent API test (the interop binary never asks for it).
    #[allow(dead_code)]
    QbittorrentApi,
    /// `ffmpeg` and `ffprobe` (Debian's ffmpeg), for the daemon's streaming test.
    #[allow(dead_code)]
    Ffmpeg,
}

/// The Python interpreter that has `qbittorrent-api`: `$SWARMER_QBT_PYTHON`, else the virtualenv
/// `.ci/run` creates in `target/qbt-venv`.
#[allow(dead_code)]
pub(crate) fn qbt_python() -> std::path::PathBuf {
    match std::env::var_os("SWARMER_QBT_PYTHON") {
        Some(p) => p.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/qbt-venv/bin/python3"),
    }
}

const IN_NETNS: &str = "SWARMER_IN_NETNS";

/// Where Debian's nginx-light puts the server.
pub(crate) const NGINX: &str = "/usr/sbin/nginx";

/// Runs `body` as the interop test `name` (its exact libtest name) inside a private network
/// namespace, after checking that `needs` are installed.
pub(crate) fn isolated(name: &str, needs: &[Need], body: impl FnOnce(&Scene)) {
    if std::env::var_os(IN_NETNS).is_some() {
        run_inside(name, body);
        return;
    }
    if let Some(thread) = std::thread::current().name() {
        // libtest names each test's thread after the test: catch a copy-pasted wrong name, which
        // would re-execute a different test (or none at all).
        assert!(
            thread == name || thread == "main",
            "isolated() called with {name:?} from test {thread:?}"
        );
    }
    if let Err(reason) = check_needs(needs) {
        let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        if in_ci {
            panic!("interop test {name} cannot run in CI: {reason}");
        }
        eprintln!("interop test {name} did not run: {reason}");
        return;
    }
    reexec_in_netns(name);
}

fn run_inside(name: &str, body: impl FnOnce(&Scene)) {
    // /proc/self/net follows the network namespace; /sys/class/net would show the host's,
    // since sysfs is not remounted.
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("read /proc/self/net/dev");
    let interfaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(str::trim))
        .collect();
    assert_eq!(
        interfaces,
        ["lo"],
        "{IN_NETNS} is set but this is not a private namespace"
    );
    let started = Instant::now();
    {
        let scene = Scene::new(name);
        body(&scene);
    }
    let no_routes = out_no_routes();
    eprintln!(
        "interop test {name} passed in {:.2}s",
        started.elapsed().as_secs_f64()
    );
    // Every packet must have been for loopback; a non-zero count means some program tried to
    // reach another network despite its configuration.
    assert_eq!(no_routes, Some(0), "Ip OutNoRoutes in the test's namespace");
}

/// `Ip: OutNoRoutes` of /proc/net/snmp in the current network namespace.
fn out_no_routes() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut ip_lines = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip_lines.next()?, ip_lines.next()?);
    let column = names.split_whitespace().position(|n| n == "OutNoRoutes")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

fn check_needs(needs: &[Need]) -> Result<(), String> {
    for program in ["unshare", "ip"] {
        find_program(program)?;
    }
    for need in needs {
        match need {
            Need::Opentracker => find_program("opentracker")?,
            Need::Mktorrent => find_program("mktorrent")?,
            Need::Nginx => {
                if !std::path::Path::new(NGINX).is_file() {
                    return Err(format!(
                        "`{}` is not installed (install nginx-light)",
                        NGINX
                    ));
                }
            }
            Need::Ffmpeg => {
                find_program("ffmpeg")?;
                find_program("ffprobe")?;
            }
            Need::Miniupnpd => {
                find_program("miniupnpd")?;
                find_program("nft")?;
            }
            Need::Transmission => {
                find_program("transmission-daemon")?;
                find_program("transmission-remote")?;
            }
            Need::Chromium => {
                for path in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
                    if !std::path::Path::new(path).is_file() {
                        return Err(format!(
                            "`{path}` is not installed (install chromium chromium-driver)"
                        ));
                    }
                }
            }
            Need::QbittorrentApi => {
                let python = qbt_python();
                let ok = Command::new(&python)
                    .args(["-c", "import qbittorrentapi"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    return Err(format!(
                        "{} cannot `import qbittorrentapi` (.ci/run installs it: python3 -m venv \
                         target/qbt-venv && target/qbt-venv/bin/pip install qbittorrent-api)",
                        python.display()
                    ));
                }
            }
            Need::Libtorrent => {
                let ok = Command::new("/usr/bin/python3")
                    .args(["-c", "import libtorrent"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    return Err("/usr/bin/python3 cannot `import libtorrent` \
                                (install python3-libtorrent)"
                        .into());
                }
            }
        }
    }
    let probe = Command::new("unshare")
        .args(["--net", "--mount", "--", "true"])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if !probe.status.success() {
        return Err(format!(
            "`unshare --net --mount` failed (needs root or user namespaces): {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    Ok(())
}

fn find_program(program: &str) -> Result<(), String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(std::path::PathBuf::from);
    let found = std::env::split_paths(&path)
        .chain(extra)
        .any(|dir| dir.join(program).is_file());
    if found {
        Ok(())
    } else {
        Err(format!("`{program}` is not installed"))
    }
}

fn reexec_in_netns(name: &str) {
    let exe = std::env::current_exe().expect("current test executable");
    let mut command = Command::new("unshare");
    command
        .args([
            "--net",
            "--mount",
            "--",
            "sh",
            "-c",
            r#"ip link set lo up && exec "$0" "$@""#,
        ])
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout can kill it together with every real client.
        .process_group(0);
    // Some PATHs lack sbin; `ip` lives there.
    let path = std::env::var("PATH").unwrap_or_default();
    command.env("PATH", format!("{path}:/usr/sbin:/sbin"));
    let mut child = command.spawn().expect("spawn unshare");
    let pid = child.id();
    let stdout = reader(child.stdout.take().expect("stdout pipe"));
    let stderr = reader(child.stderr.take().expect("stderr pipe"));

    // The inner test enforces TEST_BUDGET itself; this outer bound only catches a hang in the
    // harness, and kills the whole process group so no real client outlives the test.
    let deadline = Deadline::after(TEST_BUDGET + Duration::from_secs(60));
    let mut child = Waited::new(child);
    let status = child.wait_timeout(deadline.remaining());
    if status.is_none() {
        child.kill(&format!("-{pid}"));
    }
    print!("{}", stdout.join().unwrap_or_default());
    eprint!("{}", stderr.join().unwrap_or_default());
    match status {
        Some(status) => assert!(
            status.success(),
            "interop test {name} failed in its network namespace ({status}); output above"
        ),
        None => panic!("interop test {name} hung past its deadline and was killed"),
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
