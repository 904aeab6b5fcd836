//! Streaming with seek from the daemon (`GET /api/v1/torrents/{id}/files/{index}/stream`) while the
//! torrent downloads, with real players' tools: ffmpeg makes a one-minute MP4 whose index (`moov`)
//! is at the end, a rate-limited libtorrent seeder serves it, and during the download `ffprobe`
//! reads the duration through the stream URL (a read of the start, then a seek to the end),
//! random Range reads come back byte-identical, and `ffmpeg -i URL -f null -` decodes all of it
//! without an error. Also: the playlist, the JSON views' stream links, and the download order
//! (sequential, first and last pieces) through the JSON API and the Transmission RPC, saved
//! across a restart; the API's token and Host rules on streams and playlists, and their OpenAPI
//! description.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Daemon, DaemonOptions, expect_json, magnet};
use crate::libtorrent::{self, LtOptions};
use crate::netns::{Need, isolated};
use crate::payload::Payload;
use crate::procs::Proc;
use crate::scene::Scene;

/// The libtorrent seeder's address.
const SEEDER: std::net::SocketAddr = std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(127, 0, 0, 31),
    6899,
));
/// Its upload limit, bytes/s: the 4 MB video takes about 20 s.
const SEEDER_RATE: u64 = 200 * 1024;
/// A tracker URL where nothing listens: the daemon finds the seeder through the magnet link.
const NO_TRACKER: &str = "http://127.0.0.1:9/announce";
/// The video's length, seconds.
const DURATION: f64 = 60.0;

/// Writes a one-minute 320x240 H.264 + AAC MP4 of about 4 MB to `path` (noise keeps it from
/// compressing to nothing), without `-movflags +faststart`, and checks that its `moov` box comes
/// after its `mdat`, as a player must seek to the end first.
fn make_video(scene: &Scene, path: &Path) {
    let mut command = Command::new("ffmpeg");
    command
        .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=320x240:rate=25:duration={DURATION}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={DURATION}"))
        .args([
            "-vf",
            "noise=alls=30:allf=t",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args(["-b:v", "500k", "-maxrate", "500k", "-bufsize", "1000k"])
        .args(["-c:a", "aac", "-b:a", "64k", "-shortest"])
        .arg(path);
    let mut proc = Proc::spawn("ffmpeg-make", &mut command, &scene.logs);
    let status = proc.wait_exit(scene.deadline).expect("ffmpeg ends");
    assert!(status.success(), "ffmpeg failed: {}", proc.stderr_text());
    let data = std::fs::read(path).unwrap();
    let (mut at, mut boxes) = (0usize, Vec::new());
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        boxes.push(String::from_utf8_lossy(&data[at + 4..at + 8]).into_owned());
        assert!(size >= 8, "a box of {size} bytes at {at}");
        at += size;
    }
    let position = |name: &str| boxes.iter().position(|b| b == name);
    assert!(
        position("moov") > position("mdat"),
        "the index must be at the end: {boxes:?}"
    );
    scene.mark(&format!("made a {} byte video: {boxes:?}", data.len()));
}

/// Runs `program args... URL` (ffprobe or ffmpeg) to its end within the test's deadline; returns
/// its stdout and stderr after asserting it exited 0.
fn run_tool(scene: &Scene, name: &str, program: &str, args: &[&str]) -> (String, String) {
    let mut command = Command::new(program);
    command.args(args);
    let mut proc = Proc::spawn(name, &mut command, &scene.logs);
    let status = proc.wait_exit(scene.deadline).unwrap_or_else(|| {
        panic!("{name} did not end in time: {}", proc.stderr_text());
    });
    let (out, err) = (proc.stdout_text(), proc.stderr_text());
    assert!(status.success(), "{name} exited with {status}: {err}");
    (out, err)
}

fn id_of(torrent: &Value) -> u64 {
    torrent["id"].as_u64().expect("id")
}

/// Whether torrent `id` has every piece.
fn complete(daemon: &Daemon, id: u64) -> bool {
    let t = daemon.torrent(id);
    t["piece_count"].as_u64().is_some_and(|n| n > 0) && t["pieces_have"] == t["piece_count"]
}

/// A small deterministic generator for the random ranges (xorshift64).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn a_video_streams_with_seek_while_it_downloads() {
    isolated(
        "stream::a_video_streams_with_seek_while_it_downloads",
        &[Need::Libtorrent, Need::Mktorrent, Need::Ffmpeg],
        |scene| {
            let seed_dir = scene.subdir("seeder");
            let video_path = seed_dir.join("video.mp4");
            make_video(scene, &video_path);
            let video = std::fs::read(&video_path).unwrap();
            let len = video.len() as u64;
            let payload = Payload {
                root: video_path.clone(),
                files: vec![(PathBuf::new(), len)],
            };
            // 64 KiB pieces: 61 of them.
            let torrent = payload.make_torrent(&scene.dir.join("video.torrent"), 16, &[NO_TRACKER]);
            let hash = crate::tracker::hex(&crate::bencode::info_hash(
                &std::fs::read(&torrent).unwrap(),
            ));
            let _seeder = libtorrent::seed(
                scene,
                "lt-seeder",
                &LtOptions {
                    upload_rate_limit: Some(SEEDER_RATE),
                    ..LtOptions::new(&torrent, &seed_dir, SEEDER)
                },
            );
            let daemon = Daemon::start(scene, DaemonOptions::default());
            let added = expect_json(
                daemon.post_json(
                    "/api/v1/torrents",
                    &json!({ "magnet": magnet(&hash, "video.mp4", &[SEEDER]) }),
                ),
                201,
                "POST",
                "the magnet link",
            );
            let id = id_of(&added);
            let started = Instant::now();
            let detail = scene
                .deadline
                .poll("the metadata", Duration::from_millis(50), || {
                    let t = daemon.torrent(id);
                    (t["files"].as_array().is_some_and(|f| !f.is_empty())).then_some(t)
                });
            let file = &detail["files"][0];
            assert_eq!(file["mime_type"], "video/mp4", "{file}");
            let stream_path = format!("/api/v1/torrents/{id}/files/0/stream");
            assert_eq!(file["stream_url"], stream_path.as_str());
            let url = format!("{}{stream_path}", daemon.url());

            // ffprobe: the start, then a seek to the index at the end, while the rest downloads.
            let probe_started = Instant::now();
            let (out, _) = run_tool(
                scene,
                "ffprobe",
                "ffprobe",
                &[
                    "-v",
                    "error",
                    "-show_entries",
                    "format=duration",
                    "-of",
                    "csv=p=0",
                    &url,
                ],
            );
            let probed = probe_started.elapsed();
            let during = daemon.torrent(id);
            let duration: f64 = out
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("ffprobe said {out:?}"));
            assert!((duration - DURATION).abs() < 0.1, "duration {duration}");
            let (have, count) = (
                during["pieces_have"].as_u64().unwrap(),
                during["piece_count"].as_u64().unwrap(),
            );
            scene.mark(&format!(
                "ffprobe read the duration ({duration} s) in {:.2} s, {:.2} s after the add, with \
                 {have} of {count} pieces verified",
                probed.as_secs_f64(),
                started.elapsed().as_secs_f64()
            ));
            assert!(
                have < count / 2,
                "ffprobe finished with {have} of {count} pieces: not long before the end"
            );

            // Random ranges, byte-identical, and the edges of the Range grammar.
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            let get = |range: &str| {
                daemon.send(
                    daemon
                        .request(Method::GET, &stream_path)
                        .header("Range", range),
                )
            };
            for _ in 0..8 {
                let first = next(&mut state) % len;
                let last = (first + next(&mut state) % (96 * 1024)).min(len - 1);
                let response = get(&format!("bytes={first}-{last}"));
                assert_eq!(response.status(), 206);
                let headers = response.headers().clone();
                assert_eq!(headers["accept-ranges"], "bytes");
                assert_eq!(headers["content-type"], "video/mp4");
                assert_eq!(
                    headers["content-range"],
                    format!("bytes {first}-{last}/{len}").as_str()
                );
                let body = response.bytes().unwrap();
                assert!(
                    body[..] == video[first as usize..=last as usize],
                    "bytes {first}-{last} differ"
                );
            }
            let response = get("bytes=-1000");
            assert_eq!(
                response.headers()["content-range"],
                format!("bytes {}-{}/{len}", len - 1000, len - 1).as_str()
            );
            assert!(response.bytes().unwrap()[..] == video[len as usize - 1000..]);
            let response = get(&format!("bytes={}-", len - 2000));
            assert_eq!(response.status(), 206);
            assert!(response.bytes().unwrap()[..] == video[len as usize - 2000..]);
            let response = get(&format!("bytes={len}-"));
            assert_eq!(response.status(), 416);
            assert_eq!(
                response.headers()["content-range"],
                format!("bytes */{len}").as_str()
            );
            scene.mark(&format!(
                "random ranges read byte-identical; {} of {count} pieces verified now",
                daemon.torrent(id)["pieces_have"]
            ));

            // The playlist names the stream on the host the request used.
            let playlist = daemon
                .send(daemon.request(Method::GET, &format!("/api/v1/torrents/{id}/playlist.m3u")));
            assert_eq!(playlist.status(), 200);
            assert!(
                playlist.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("audio/x-mpegurl")
            );
            let text = playlist.text().unwrap();
            assert!(text.starts_with("#EXTM3U\n"), "{text}");
            assert!(text.contains(&format!("\n{url}\n")), "{text}");

            // The whole stream decodes, from the start, whatever is still downloading.
            let (_, errors) = run_tool(
                scene,
                "ffmpeg-decode",
                "ffmpeg",
                &["-v", "error", "-nostdin", "-i", &url, "-f", "null", "-"],
            );
            assert!(errors.trim().is_empty(), "ffmpeg reported: {errors}");
            let decoded = started.elapsed();
            scene.mark(&format!(
                "ffmpeg decoded the whole stream without an error, {:.2} s after the add",
                decoded.as_secs_f64()
            ));

            scene
                .deadline
                .poll("the download to finish", Duration::from_millis(50), || {
                    complete(&daemon, id).then_some(())
                });
            let downloaded = started.elapsed();
            scene.mark(&format!(
                "ffprobe waited {:.2} s; the whole download took {:.2} s",
                probed.as_secs_f64(),
                downloaded.as_secs_f64()
            ));
            assert!(
                probed * 3 < downloaded,
                "{probed:?} is not long before {downloaded:?}"
            );
            payload.assert_same(&daemon.download_dir.join("video.mp4"));
            daemon.stop();
        },
    );
}

/// The qBittorrent API's user in the download-order test.
const QBT_USER: &str = "arr";
/// Its password.
const QBT_PASSWORD: &str = "qbt-secret-9e2";

/// A qBittorrent API session (the `SID` cookie of a login).
struct Qbt<'a> {
    daemon: &'a Daemon,
    http: reqwest::blocking::Client,
    cookie: String,
}

impl<'a> Qbt<'a> {
    fn login(daemon: &'a Daemon) -> Qbt<'a> {
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client");
        let login = http
            .post(format!("{}/api/v2/auth/login", daemon.url()))
            .form(&[("username", QBT_USER), ("password", QBT_PASSWORD)])
            .send()
            .expect("login");
        let cookie = login
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("a SID cookie")
            .to_owned();
        assert_eq!(login.text().unwrap_or_default(), "Ok.");
        Qbt {
            daemon,
            http,
            cookie,
        }
    }

    fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.daemon.url()))
            .header("cookie", &self.cookie)
            .send()
            .expect("GET");
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().expect("JSON")
    }

    /// POSTs `hashes=HASHES` to `path`, which must answer 200.
    fn post(&self, path: &str, hashes: &str) {
        let response = self
            .http
            .post(format!("{}{path}", self.daemon.url()))
            .header("cookie", &self.cookie)
            .form(&[("hashes", hashes)])
            .send()
            .expect("POST");
        assert_eq!(response.status(), 200, "POST {path}");
    }
}

#[test]
fn the_download_order_is_set_through_every_api_and_survives_a_restart() {
    isolated(
        "stream::the_download_order_is_set_through_every_api_and_survives_a_restart",
        &[],
        |scene| {
            let config = scene.dir.join("daemon.toml");
            std::fs::write(
                &config,
                format!(
                    "[qbittorrent]\nusername = \"{QBT_USER}\"\npassword = \"{QBT_PASSWORD}\"\n"
                ),
            )
            .unwrap();
            let with_qbt = DaemonOptions {
                args: vec!["--config".into(), config.display().to_string()],
                ..DaemonOptions::default()
            };
            let daemon = Daemon::start(scene, with_qbt.clone());
            let link = magnet("0123456789abcdef0123456789abcdef01234567", "parked", &[]);
            let added = expect_json(
                daemon.post_json(
                    "/api/v1/torrents",
                    &json!({ "magnet": link, "paused": true }),
                ),
                201,
                "POST",
                "a magnet link",
            );
            let id = id_of(&added);
            assert_eq!(added["sequential"], false);
            assert_eq!(added["first_last_piece"], false);
            let order = format!("/api/v1/torrents/{id}/download_order");
            let set = expect_json(
                daemon.put_json(&order, &json!({ "sequential": true })),
                200,
                "PUT",
                &order,
            );
            assert_eq!(
                (set["sequential"].clone(), set["first_last_piece"].clone()),
                (json!(true), json!(false))
            );
            let get = json!({ "method": "torrent-get", "arguments": { "ids": [id], "fields": ["id", "sequentialDownload"] } });
            let reply = daemon.rpc(&get);
            assert_eq!(
                reply["arguments"]["torrents"][0]["sequentialDownload"], true,
                "{reply}"
            );
            let reply = daemon.rpc(&json!({ "method": "torrent-set", "arguments": { "ids": [id], "sequentialDownload": false } }));
            assert_eq!(reply["result"], "success", "{reply}");
            assert_eq!(daemon.torrent(id)["sequential"], false);
            let set = expect_json(
                daemon.put_json(
                    &order,
                    &json!({ "first_last_piece": true, "sequential": true }),
                ),
                200,
                "PUT",
                &order,
            );
            assert_eq!(
                (set["sequential"].clone(), set["first_last_piece"].clone()),
                (json!(true), json!(true))
            );
            // qBittorrent: each toggle flips the torrent's setting; torrents/info shows both.
            let qbt = Qbt::login(&daemon);
            let hash = "0123456789abcdef0123456789abcdef01234567";
            let info = |qbt: &Qbt| {
                let list = qbt.get(&format!("/api/v2/torrents/info?hashes={hash}"));
                (list[0]["seq_dl"].clone(), list[0]["f_l_piece_prio"].clone())
            };
            assert_eq!(info(&qbt), (json!(true), json!(true)));
            qbt.post("/api/v2/torrents/toggleSequentialDownload", hash);
            assert_eq!(info(&qbt), (json!(false), json!(true)));
            qbt.post("/api/v2/torrents/toggleFirstLastPiecePrio", hash);
            assert_eq!(info(&qbt), (json!(false), json!(false)));
            qbt.post("/api/v2/torrents/toggleSequentialDownload", hash);
            qbt.post("/api/v2/torrents/toggleFirstLastPiecePrio", hash);
            assert_eq!(info(&qbt), (json!(true), json!(true)));
            let (download_dir, state_dir) = (daemon.download_dir.clone(), daemon.state_dir.clone());
            daemon.stop();
            let daemon = Daemon::start(
                scene,
                DaemonOptions {
                    name: "daemon-again".into(),
                    download_dir: Some(download_dir),
                    state_dir: Some(state_dir),
                    ..with_qbt
                },
            );
            let restored = daemon.torrent(id);
            assert_eq!(
                (
                    restored["sequential"].clone(),
                    restored["first_last_piece"].clone()
                ),
                (json!(true), json!(true))
            );
            assert_eq!(info(&Qbt::login(&daemon)), (json!(true), json!(true)));
            daemon.stop();
        },
    );
}

#[test]
fn streams_and_playlists_follow_the_apis_token_and_host_rules() {
    isolated(
        "stream::streams_and_playlists_follow_the_apis_token_and_host_rules",
        &[],
        |scene| {
            const TOKEN: &str = "stream-token-51c3";
            let daemon = Daemon::start(
                scene,
                DaemonOptions {
                    token: Some(TOKEN.to_owned()),
                    ..DaemonOptions::default()
                },
            );
            // A torrent of one small "video" nobody seeds: its file is known, never verified.
            let data = crate::payload::single_file(&scene.subdir("data"), "clip.mp4", 100_000, 7);
            let torrent = data.make_torrent(&scene.dir.join("clip.torrent"), 14, &[NO_TRACKER]);
            let bytes = std::fs::read(&torrent).unwrap();
            let part = reqwest::blocking::multipart::Part::bytes(bytes).file_name("clip.torrent");
            let form = reqwest::blocking::multipart::Form::new().part("torrent", part);
            let added = expect_json(
                daemon.post_multipart("/api/v1/torrents", form),
                201,
                "POST",
                "the torrent",
            );
            let id = id_of(&added);
            let stream = format!("/api/v1/torrents/{id}/files/0/stream");
            let playlist = format!("/api/v1/torrents/{id}/playlist.m3u");
            for path in [&stream, &playlist] {
                let response = daemon.send(daemon.raw(Method::GET, path));
                assert_eq!(response.status(), 401, "{path} without the token");
                assert_eq!(
                    response.headers()["www-authenticate"],
                    "Basic realm=\"swarmer\"",
                    "a player is asked for the credentials of its URL"
                );
                let response = daemon.send(
                    daemon
                        .raw(Method::GET, path)
                        .bearer_auth(TOKEN)
                        .header("Host", "evil.example"),
                );
                assert_eq!(response.status(), 421, "{path} for a foreign Host");
            }
            // With the token (as Basic credentials, as a player sends those of its URL), the
            // handler answers: an unsatisfiable range at once, a file that is not there 404.
            let response = daemon.send(
                daemon
                    .raw(Method::GET, &stream)
                    .basic_auth("swarmer", Some(TOKEN))
                    .header("Range", "bytes=100000-"),
            );
            assert_eq!(response.status(), 416);
            assert_eq!(response.headers()["content-range"], "bytes */100000");
            let missing = format!("/api/v1/torrents/{id}/files/5/stream");
            let response = daemon.send(daemon.request(Method::GET, &missing));
            assert_eq!(response.status(), 404);
            let text = daemon
                .send(daemon.request(Method::GET, &playlist))
                .text()
                .unwrap();
            let host = daemon.url().trim_start_matches("http://");
            assert_eq!(
                text,
                format!("#EXTM3U\n#EXTINF:-1,clip.mp4\nhttp://swarmer:{TOKEN}@{host}{stream}\n")
            );
            // The OpenAPI document describes them.
            let doc = daemon.get_json("/api/openapi.json");
            let paths = &doc["paths"];
            let get = &paths["/api/v1/torrents/{id}/files/{index}/stream"]["get"];
            for status in ["200", "206", "404", "409", "416"] {
                assert!(
                    get["responses"].get(status).is_some(),
                    "no {status} in {get}"
                );
            }
            assert!(
                paths["/api/v1/torrents/{id}/playlist.m3u"]
                    .get("get")
                    .is_some()
            );
            assert!(
                paths["/api/v1/torrents/{id}/download_order"]
                    .get("put")
                    .is_some()
            );
            daemon.stop();
        },
    );
}
