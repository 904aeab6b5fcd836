//! Web seeds (BEP 19) served by Debian's nginx (nginx-light), started by the test with its own
//! configuration on 127.0.0.20:8080 inside the test's namespace: a torrent whose only source is a
//! web seed downloads byte-identical (single-file and multi-file); a rate-limited libtorrent
//! seeder and a rate-limited web seed are both used (nginx's access log shows the range requests,
//! libtorrent's upload counter what it sent), timed against the seeder alone (reported, not
//! asserted; `SWARMER_WEBSEED_RUNS=3` for a median of three); and web seeds that
//! answer 404, serve wrong bytes (a corrupted copy, from the same nginx) or stall (a listener that
//! never answers, on 127.0.0.22) do not prevent completion.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::libtorrent::{self, LtOptions};
use crate::netns::{NGINX, Need, isolated};
use crate::payload::{self, Payload};
use crate::procs::Proc;
use crate::scene::Scene;
use crate::tracker::{HTTP_ANNOUNCE, Tracker};
use crate::{LIBTORRENT_SEEDER, MIB, stop_and_count_uploaded, swarmer};

/// nginx's address inside the test's namespace.
const NGINX_ADDR: &str = "127.0.0.20:8080";
/// An address that accepts connections and never answers (a stalled web seed).
const STALL_ADDR: &str = "127.0.0.22:8080";

const WITH_NGINX: &[Need] = &[Need::Mktorrent, Need::Nginx];
const WITH_NGINX_AND_LIBTORRENT: &[Need] = &[
    Need::Opentracker,
    Need::Mktorrent,
    Need::Libtorrent,
    Need::Nginx,
];

/// nginx serving `root` on [`NGINX_ADDR`], each connection limited to `rate` bytes/s if given,
/// its access log recording each request's URI, status, `Range` and body bytes. Stopped when
/// dropped.
struct Nginx {
    _proc: Proc,
    access_log: PathBuf,
}

impl Nginx {
    fn start(scene: &Scene, root: &Path, rate: Option<u64>) -> Nginx {
        let dir = scene.subdir("nginx");
        for temp in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.join(temp)).expect("nginx temp dir");
        }
        let access_log = dir.join("access.log");
        let limit = rate.map_or(String::new(), |r| format!("limit_rate {r};"));
        let conf = format!(
            "daemon off;\n\
             master_process off;\n\
             user root;\n\
             worker_processes 1;\n\
             pid {dir}/nginx.pid;\n\
             error_log {dir}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
               log_format ranges '$request_uri $status \"$http_range\" $body_bytes_sent';\n\
               access_log {log} ranges;\n\
               client_body_temp_path {dir}/body;\n\
               proxy_temp_path {dir}/proxy;\n\
               fastcgi_temp_path {dir}/fastcgi;\n\
               uwsgi_temp_path {dir}/uwsgi;\n\
               scgi_temp_path {dir}/scgi;\n\
               default_type application/octet-stream;\n\
               sendfile on;\n\
               keepalive_requests 10000;\n\
               server {{\n\
                 listen {NGINX_ADDR};\n\
                 root {root};\n\
                 {limit}\n\
               }}\n\
             }}\n",
            dir = dir.display(),
            log = access_log.display(),
            root = root.display(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let mut command = std::process::Command::new(NGINX);
        command
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path);
        let mut proc = Proc::spawn("nginx", &mut command, &scene.logs);
        // Up once it accepts connections (the harness's bounded wait, as for opentracker).
        let addr: SocketAddr = NGINX_ADDR.parse().expect("address");
        scene
            .deadline
            .poll("nginx to listen", Duration::from_millis(20), || {
                proc.assert_running();
                std::net::TcpStream::connect(addr).ok()
            });
        scene.mark(&format!("nginx serves {} on {NGINX_ADDR}", root.display()));
        Nginx {
            _proc: proc,
            access_log,
        }
    }

    /// The access log's lines: `URI STATUS "RANGE" BYTES`.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The web seed URL of nginx's root (`/`), or of a directory under it.
fn url(path: &str) -> String {
    format!("http://{NGINX_ADDR}/{path}")
}

/// Downloads `torrent` with swarmer into a directory of its own under `name` (its own state
/// directory too, so no run resumes another's), and checks it against `payload`. Returns the
/// time from the spawn to its exit and the process, for its log.
fn download(
    scene: &Scene,
    name: &str,
    torrent: &Path,
    payload: &Payload,
    extra: &[&str],
) -> (Duration, Proc) {
    let out = scene.subdir(name).join("out");
    std::fs::create_dir_all(&out).expect("create output dir");
    let started = Instant::now();
    let mut proc = swarmer::start_download(scene, name, torrent, &out, extra);
    swarmer::expect_success(scene, &mut proc);
    let took = started.elapsed();
    let file_name = payload.root.file_name().expect("payload name");
    payload.assert_same(&out.join(file_name));
    scene.mark(&format!(
        "{name}: byte-identical in {:.2}s",
        took.as_secs_f64()
    ));
    (took, proc)
}

#[test]
fn a_web_seed_alone_serves_single_and_multi_file_torrents() {
    isolated(
        "webseed::a_web_seed_alone_serves_single_and_multi_file_torrents",
        WITH_NGINX,
        |scene| {
            let seed_dir = scene.subdir("seed");
            let single = payload::single_file(&seed_dir, "single.bin", 5 * MIB + 333, 3);
            let multi = payload::multi_file(&seed_dir, "multi", 4);
            let nginx = Nginx::start(scene, &seed_dir, None);
            // A single-file torrent's URL ending in `/` gets the name; a multi-file torrent's
            // gets the name and each file's path.
            let single_torrent = single.make_torrent_with_web_seeds(
                &scene.dir.join("single.torrent"),
                16,
                &[],
                &[&url("")],
            );
            let multi_torrent = multi.make_torrent_with_web_seeds(
                &scene.dir.join("multi.torrent"),
                15,
                &[],
                &[&url("")],
            );
            download(scene, "single", &single_torrent, &single, &[]);
            download(scene, "multi", &multi_torrent, &multi, &[]);
            let requests = nginx.requests();
            let ranged = |prefix: &str| {
                requests
                    .iter()
                    .filter(|r| r.starts_with(prefix) && r.contains(" 206 \"bytes="))
                    .count()
            };
            assert!(ranged("/single.bin ") > 0, "{requests:#?}");
            assert!(ranged("/multi/dir1/dir2/b.bin ") > 0, "{requests:#?}");
            // Zero-length files are never asked for; nothing else failed.
            assert!(
                requests.iter().all(|r| !r.contains("empty")),
                "{requests:#?}"
            );
            assert!(
                requests.iter().all(|r| r.contains(" 206 ")),
                "{requests:#?}"
            );
            scene.mark(&format!("nginx answered {} range requests", requests.len()));
        },
    );
}

/// The libtorrent seeder's upload limit, bytes/s.
const SEEDER_RATE: u64 = 2 * MIB;
/// nginx's `limit_rate`, bytes/s. nginx lets each request send a second's worth at once before
/// it throttles, so a web seed's effective rate lies between this and twice this, depending on
/// how large its fetches are; the test reports what it was.
const WEB_RATE: u64 = MIB / 2;

#[test]
fn a_rate_limited_seeder_and_a_web_seed_are_both_used() {
    isolated(
        "webseed::a_rate_limited_seeder_and_a_web_seed_are_both_used",
        WITH_NGINX_AND_LIBTORRENT,
        |scene| {
            let seed_dir = scene.subdir("seed");
            let payload = payload::single_file(&seed_dir, "single.bin", 16 * MIB, 5);
            // The same info dictionary, with and without the web seed: one info hash.
            let plain =
                payload.make_torrent(&scene.dir.join("plain.torrent"), 18, &[HTTP_ANNOUNCE]);
            let seeded = payload.make_torrent_with_web_seeds(
                &scene.dir.join("seeded.torrent"),
                18,
                &[HTTP_ANNOUNCE],
                &[&url("")],
            );
            let tracker = Tracker::start(scene, &[&plain]);
            let nginx = Nginx::start(scene, &seed_dir, Some(WEB_RATE));
            let runs: usize = std::env::var("SWARMER_WEBSEED_RUNS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let (mut alone, mut both) = (Vec::new(), Vec::new());
            for run in 0..runs {
                for (torrent, times) in [(&plain, &mut alone), (&seeded, &mut both)] {
                    let with_web = std::ptr::eq(torrent, &seeded);
                    let options = LtOptions {
                        upload_rate_limit: Some(SEEDER_RATE),
                        ..LtOptions::new(&plain, &seed_dir, LIBTORRENT_SEEDER)
                    };
                    let name = if with_web { "both" } else { "alone" };
                    let mut seeder = libtorrent::seed(scene, &format!("lt-{name}-{run}"), &options);
                    tracker.wait_until_listed(scene, &plain, &[LIBTORRENT_SEEDER]);
                    let before = nginx.requests().len();
                    let (took, proc) =
                        download(scene, &format!("{name}-{run}"), torrent, &payload, &[]);
                    let uploaded = stop_and_count_uploaded(&mut seeder);
                    let ranges: Vec<String> = nginx.requests().split_off(before);
                    let from_web: u64 = ranges
                        .iter()
                        .filter_map(|r| r.rsplit(' ').next()?.parse::<u64>().ok())
                        .sum();
                    let secs = took.as_secs_f64();
                    scene.mark(&format!(
                        "{name} run {run}: {secs:.2}s; libtorrent sent {uploaded} bytes ({:.2} MiB/s), \
                         nginx {from_web} ({:.2} MiB/s) in {} range requests",
                        uploaded as f64 / secs / MIB as f64,
                        from_web as f64 / secs / MIB as f64,
                        ranges.len()
                    ));
                    if with_web {
                        assert!(
                            uploaded > 0,
                            "libtorrent sent nothing\n{}",
                            proc.stderr_text()
                        );
                        assert!(
                            ranges.iter().any(|r| r.contains(" 206 \"bytes=")),
                            "nginx saw no range request: {ranges:#?}"
                        );
                    } else {
                        assert!(ranges.is_empty(), "{ranges:#?}");
                    }
                    times.push(took);
                }
            }
            let median = |times: &mut Vec<Duration>| {
                times.sort();
                times[times.len() / 2]
            };
            // Measured and reported, not asserted: timing on a shared machine is noisy.
            eprintln!(
                "web seed benchmark: 16 MiB, libtorrent seeder limited to 2 MiB/s, nginx to 512 KiB/s \
                 per request, {runs} run(s): seeder alone median {:.2}s {alone:.2?}; seeder + web seed median {:.2}s \
                 {both:.2?}",
                median(&mut alone).as_secs_f64(),
                median(&mut both).as_secs_f64(),
            );
        },
    );
}

/// Accepts connections on [`STALL_ADDR`] and never answers, until the test ends (the thread and
/// its sockets die with the test's process).
fn stalling_server() {
    let listener = TcpListener::bind(STALL_ADDR).expect("bind the stalling server");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept() {
            if held.len() < 64 {
                held.push(stream);
            }
        }
    });
}

#[test]
fn broken_web_seeds_do_not_prevent_completion() {
    isolated(
        "webseed::broken_web_seeds_do_not_prevent_completion",
        WITH_NGINX,
        |scene| {
            let root = scene.subdir("www");
            let good = scene.subdir("www/good");
            let payload = payload::multi_file(&good, "multi", 6);
            // Every piece of the copy under /bad/ is wrong.
            let piece_len = 1 << 15;
            let total: u64 = payload.files.iter().map(|f| f.1).sum();
            let all: Vec<u64> = (0..total.div_ceil(piece_len)).collect();
            payload.corrupted_copy(&scene.subdir("www/bad"), piece_len, &all);
            let nginx = Nginx::start(scene, &root, None);
            stalling_server();
            let seeds = [
                url("missing/"),
                url("bad/"),
                format!("http://{STALL_ADDR}/"),
                url("good/"),
            ];
            let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
            let torrent = payload.make_torrent_with_web_seeds(
                &scene.dir.join("multi.torrent"),
                15,
                &[],
                &seeds,
            );
            let (_, proc) = download(scene, "swarmer", &torrent, &payload, &[]);
            let requests = nginx.requests();
            assert!(
                requests
                    .iter()
                    .any(|r| r.starts_with("/missing/") && r.contains(" 404 ")),
                "{requests:#?}"
            );
            assert!(
                requests
                    .iter()
                    .any(|r| r.starts_with("/good/") && r.contains(" 206 ")),
                "{requests:#?}"
            );
            let log = proc.stderr_text();
            let failed = log
                .lines()
                .filter(|l| l.contains("web seed fetch failed"))
                .count();
            let dropped: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("dropping web seed"))
                .collect();
            scene.mark(&format!(
                "{failed} failed fetches logged; dropped: {dropped:?}"
            ));
            assert!(failed > 0, "no failed fetch was logged");
            // A piece the bad seed sent alone fails and drops it, when it got to send one.
            if requests
                .iter()
                .any(|r| r.starts_with("/bad/") && r.contains(" 206 "))
            {
                assert!(
                    dropped.iter().any(|l| l.contains("/bad/")),
                    "the bad seed was not dropped:\n{log}"
                );
            }
        },
    );
}
