//! Web seeds against scripted HTTP servers on loopback: an honest BEP 19 server (multi-file and
//! single-file torrents, percent-encoded paths), a BEP 17 script, and hostile servers that answer
//! 404, lie in their bytes, send a body far longer than the range, lie in `Content-Range`, answer
//! `200` to a range, redirect in a loop, truncate bodies or stall. The download must come out
//! byte-identical whatever they do, the liar must be dropped, and nobody may make us read the
//! long body.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Fixture, assert_files_match, fixture_with};
use swarmer::{Session, SessionConfig, TorrentHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Behaviour {
    /// Serves files with `Range`, keeping connections open (BEP 19).
    Honest,
    /// A BEP 17 script: `?info_hash=..&piece=..[&ranges=..]`.
    Hoffman,
    /// 404 for everything.
    NotFound,
    /// Serves the asked range with one byte flipped.
    Liar,
    /// The right `Content-Range`, no `Content-Length`, then the asked bytes followed by up to
    /// 1 GiB more, until the client goes away.
    Endless,
    /// `Content-Length` of 1 GiB for whatever range is asked.
    HugeLength,
    /// `Content-Range` names other bytes than those asked (and sends those).
    LyingRange,
    /// `200` with the whole file, whatever the range.
    IgnoresRange,
    /// Redirects every request to itself.
    RedirectLoop,
    /// Promises the range, sends half, closes.
    Truncates,
    /// Reads the request and never answers.
    Stalls,
}

/// A scripted HTTP server: its address and how many body bytes it managed to write in all.
struct Server {
    addr: SocketAddr,
    written: Arc<AtomicU64>,
}

/// The fixture's files by URL path (`/fixture/sub%20dir/...` decoded), and its pieces for BEP 17.
struct Files {
    by_path: HashMap<String, Vec<u8>>,
    content: Arc<Vec<u8>>,
    piece_length: u64,
}

fn files_of(f: &Fixture) -> Arc<Files> {
    let mut by_path = HashMap::new();
    let mut offset = 0usize;
    for file in &f.metainfo.info.files {
        let path = format!("/{}", file.path.join("/"));
        by_path.insert(
            path,
            f.content[offset..offset + file.length as usize].to_vec(),
        );
        offset += file.length as usize;
    }
    Arc::new(Files {
        by_path,
        content: Arc::clone(&f.content),
        piece_length: u64::from(f.metainfo.info.piece_length),
    })
}

async fn spawn_server(files: Arc<Files>, behaviour: Behaviour) -> Server {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&written);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (files, counter) = (Arc::clone(&files), Arc::clone(&counter));
            tokio::spawn(async move {
                let _ = serve(stream, &files, behaviour, &counter).await;
            });
        }
    });
    Server { addr, written }
}

/// Reads one request head (at most 8 KiB): the path (percent-decoded, query apart) and the range.
async fn read_request(
    stream: &mut TcpStream,
) -> std::io::Result<Option<(String, String, Option<(u64, u64)>)>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || stream.read(&mut byte).await? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let target = text.split(' ').nth(1).unwrap_or("/").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let range = text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.eq_ignore_ascii_case("range") {
            return None;
        }
        let (a, b) = value.trim().strip_prefix("bytes=")?.split_once('-')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    });
    Ok(Some((percent_decode(path), query.to_owned(), range)))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn write_body(
    stream: &mut TcpStream,
    head: String,
    body: &[u8],
    counter: &AtomicU64,
) -> std::io::Result<()> {
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    counter.fetch_add(body.len() as u64, Ordering::Relaxed);
    Ok(())
}

async fn serve(
    mut stream: TcpStream,
    files: &Files,
    behaviour: Behaviour,
    counter: &AtomicU64,
) -> std::io::Result<()> {
    while let Some((path, query, range)) = read_request(&mut stream).await? {
        if behaviour == Behaviour::Hoffman {
            let param = |name: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .map(str::to_owned)
            };
            let piece: u64 = param("piece").and_then(|p| p.parse().ok()).unwrap();
            assert!(param("info_hash").is_some());
            let start = piece * files.piece_length;
            let end = (start + files.piece_length).min(files.content.len() as u64);
            let mut body = Vec::new();
            match param("ranges") {
                Some(ranges) => {
                    for r in ranges.split(',') {
                        let (a, b) = r.split_once('-').unwrap();
                        let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                        body.extend_from_slice(
                            &files.content[(start + a) as usize..=(start + b) as usize],
                        );
                    }
                }
                None => body.extend_from_slice(&files.content[start as usize..end as usize]),
            }
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            write_body(&mut stream, head, &body, counter).await?;
            continue;
        }
        let found = files
            .by_path
            .get(&path)
            .filter(|_| behaviour != Behaviour::NotFound);
        let Some(file) = found else {
            let head = "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n".to_owned();
            write_body(&mut stream, head, b"not found", counter).await?;
            continue;
        };
        let total = file.len() as u64;
        let (first, last) = range.unwrap_or((0, total - 1));
        let slice = &file[first as usize..=last as usize];
        let partial = |first: u64, last: u64, len: usize| {
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{last}/{total}\r\n\
                 Content-Length: {len}\r\n\r\n"
            )
        };
        match behaviour {
            Behaviour::Honest | Behaviour::Hoffman => {
                write_body(
                    &mut stream,
                    partial(first, last, slice.len()),
                    slice,
                    counter,
                )
                .await?
            }
            Behaviour::NotFound => unreachable!("no path is found"),
            Behaviour::Liar => {
                let mut body = slice.to_vec();
                let middle = body.len() / 2;
                body[middle] ^= 0x55;
                write_body(
                    &mut stream,
                    partial(first, last, body.len()),
                    &body,
                    counter,
                )
                .await?;
            }
            Behaviour::Endless => {
                let head = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{last}/{total}\r\n\
                     Connection: close\r\n\r\n"
                );
                write_body(&mut stream, head, slice, counter).await?;
                let junk = vec![0xa5u8; 64 * 1024];
                for _ in 0..(1u64 << 30) / junk.len() as u64 {
                    stream.write_all(&junk).await?;
                    counter.fetch_add(junk.len() as u64, Ordering::Relaxed);
                }
                return Ok(());
            }
            Behaviour::HugeLength => {
                let head = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{last}/{total}\r\n\
                     Content-Length: 1073741824\r\n\r\n"
                );
                write_body(&mut stream, head, slice, counter).await?;
                return Ok(());
            }
            Behaviour::LyingRange => {
                let (first, last) = (0, last - first);
                let body = &file[..=last as usize];
                write_body(&mut stream, partial(first, last, body.len()), body, counter).await?;
            }
            Behaviour::IgnoresRange => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n");
                write_body(&mut stream, head, file, counter).await?;
            }
            Behaviour::RedirectLoop => {
                let head =
                    format!("HTTP/1.1 302 Found\r\nLocation: {path}\r\nContent-Length: 0\r\n\r\n");
                write_body(&mut stream, head, b"", counter).await?;
            }
            Behaviour::Truncates => {
                let head = partial(first, last, slice.len());
                write_body(&mut stream, head, &slice[..slice.len() / 2], counter).await?;
                return Ok(());
            }
            Behaviour::Stalls => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A fixture whose torrent lists `urls` as its BEP 19 web seeds (or BEP 17 ones with `hoffman`).
fn with_seeds(mut f: Fixture, urls: Vec<String>, hoffman: bool) -> Fixture {
    if hoffman {
        f.metainfo.http_seeds = urls;
    } else {
        f.metainfo.url_list = urls;
    }
    f
}

fn multi_file() -> Fixture {
    fixture_with(
        32 * 1024,
        vec![
            (vec!["a.bin"], 100_000),
            (vec!["empty.txt"], 0),
            (vec!["sub dir", "ü #1.txt"], 1_000),
            (vec!["sub dir", "deeper", "big.bin"], 300_000),
        ],
    )
}

fn single_file() -> Fixture {
    let mut f = fixture_with(32 * 1024, vec![(vec![], 200_000)]);
    f.metainfo.info.multi_file = false;
    f
}

/// A session on 127.0.0.1 whose web seeds fail a fetch after `stall` without data.
async fn session(stall: Duration) -> Session {
    Session::new(SessionConfig {
        listen_port: 0,
        bind_ip: Some("127.0.0.1".parse().unwrap()),
        web_seed_timeout: stall,
        ..SessionConfig::default()
    })
    .await
    .unwrap()
}

/// Downloads `f` with no peers at all into a new directory; returns the directory, the last
/// progress and the details at the end.
async fn download(f: &Fixture) -> (tempfile::TempDir, swarmer::Progress, swarmer::Details) {
    let dir = tempfile::tempdir().unwrap();
    let session = session(Duration::from_secs(2)).await;
    let mut torrent: TorrentHandle = session
        .add_torrent(f.metainfo.clone(), dir.path())
        .await
        .unwrap();
    let mut progress = torrent.progress();
    let wait = async {
        loop {
            let p = progress.borrow_and_update().clone();
            if p.is_done() {
                break;
            }
            if progress.changed().await.is_err() {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(90), wait)
        .await
        .expect("download timed out");
    let details = torrent.details().await.unwrap();
    torrent.wait_complete().await.expect("download failed");
    let progress = torrent.progress().borrow().clone();
    torrent.stop().await.unwrap();
    (dir, progress, details)
}

#[tokio::test]
async fn a_multi_file_torrent_downloads_from_a_web_seed_alone() {
    let f = multi_file();
    let server = spawn_server(files_of(&f), Behaviour::Honest).await;
    // Without a trailing slash: a multi-file torrent's URL is a directory anyway.
    let f = with_seeds(f, vec![format!("http://{}", server.addr)], false);
    let (dir, progress, details) = download(&f).await;
    assert_files_match(&f, dir.path());
    assert_eq!(progress.hash_failures, 0);
    assert_eq!(progress.downloaded_bytes, f.content.len() as u64);
    assert_eq!(details.web_seeds.len(), 1);
    assert_eq!(details.web_seeds[0].last_error, None);
    // Every byte served once: ranges spanning files were split per file.
    assert_eq!(
        server.written.load(Ordering::Relaxed),
        f.content.len() as u64
    );
}

#[tokio::test]
async fn a_single_file_torrent_downloads_from_a_web_seed_alone() {
    let f = single_file();
    let server = spawn_server(files_of(&f), Behaviour::Honest).await;
    // A URL ending in `/` gets the torrent's name; one naming the file is used as is.
    for url in [
        format!("http://{}/", server.addr),
        format!("http://{}/fixture", server.addr),
    ] {
        let f = with_seeds(single_file(), vec![url], false);
        let (dir, progress, _) = download(&f).await;
        assert_files_match(&f, dir.path());
        assert_eq!(progress.hash_failures, 0);
    }
}

#[tokio::test]
async fn a_bep17_script_serves_pieces() {
    let f = multi_file();
    let server = spawn_server(files_of(&f), Behaviour::Hoffman).await;
    let f = with_seeds(f, vec![format!("http://{}/seed.php", server.addr)], true);
    let (dir, progress, details) = download(&f).await;
    assert_files_match(&f, dir.path());
    assert_eq!(progress.hash_failures, 0);
    assert_eq!(
        details.web_seeds[0].kind,
        swarmer_proto::webseed::WebSeedKind::Hoffman
    );
}

#[tokio::test]
async fn hostile_web_seeds_never_stop_or_corrupt_the_download() {
    let f = multi_file();
    let files = files_of(&f);
    let mut servers = Vec::new();
    for behaviour in [
        Behaviour::NotFound,
        Behaviour::Liar,
        Behaviour::Endless,
        Behaviour::HugeLength,
        Behaviour::LyingRange,
        Behaviour::IgnoresRange,
        Behaviour::RedirectLoop,
        Behaviour::Truncates,
        Behaviour::Stalls,
        Behaviour::Honest,
    ] {
        servers.push((behaviour, spawn_server(Arc::clone(&files), behaviour).await));
    }
    let urls = servers
        .iter()
        .map(|(_, s)| format!("http://{}/", s.addr))
        .collect();
    let f = with_seeds(f, urls, false);
    let (dir, progress, details) = download(&f).await;
    assert_files_match(&f, dir.path());
    assert_eq!(details.web_seeds.len(), servers.len());
    for ((behaviour, server), seed) in servers.iter().zip(&details.web_seeds) {
        let written = server.written.load(Ordering::Relaxed);
        eprintln!(
            "{behaviour:?}: wrote {written} bytes; {:?}",
            seed.last_error
        );
        match behaviour {
            // A piece it sent alone failed: dropped for good.
            Behaviour::Liar if progress.hash_failures > 0 => {
                assert!(seed.status.is_none());
                assert!(seed.last_error.as_deref().unwrap().starts_with("dropped"));
            }
            // Only what was asked was read: the socket buffers hold a few MiB at most, far
            // from the 1 GiB it tried to send.
            Behaviour::Endless => assert!(written < 64 << 20, "{written}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_stalled_web_seed_times_out_and_backs_off_and_is_shown() {
    let f = multi_file();
    let server = spawn_server(files_of(&f), Behaviour::Stalls).await;
    let url = format!("http://{}/", server.addr);
    let f = with_seeds(f, vec![url.clone()], false);
    let dir = tempfile::tempdir().unwrap();
    let session = session(Duration::from_millis(500)).await;
    let torrent = session
        .add_torrent(f.metainfo.clone(), dir.path())
        .await
        .unwrap();
    // Shown while it fetches: one web seed in use.
    let mut progress = torrent.progress();
    tokio::time::timeout(
        Duration::from_secs(10),
        progress.wait_for(|p| p.web_seeds == 1),
    )
    .await
    .expect("the web seed is not shown")
    .unwrap();
    let backed_off = async {
        loop {
            let details = torrent.details().await.unwrap();
            let seed = &details.web_seeds[0];
            if let Some(status) = seed.status.filter(|s| s.failures > 0) {
                assert_eq!(seed.url, url);
                assert!(status.retry_at.is_some());
                assert!(!status.fetching);
                return seed.last_error.clone().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let error = tokio::time::timeout(Duration::from_secs(10), backed_off)
        .await
        .expect("the stall was not noticed");
    assert!(error.contains("nothing received for 500ms"), "{error}");
    assert_eq!(torrent.progress().borrow().web_seeds_sending, 0);
    torrent.stop().await.unwrap();
}
