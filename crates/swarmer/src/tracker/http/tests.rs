//! Tests of the HTTP tracker client (BEP 3, BEP 23) against scripted HTTP servers on loopback: replies, refusals, timeouts, oversized bodies and peer caps.

use std::net::SocketAddr;
use std::time::Duration;

use swarmer_proto::tracker::{AnnounceEvent, MAX_PEERS, MIN_ANNOUNCE_INTERVAL, TrackerError};
use swarmer_proto::{InfoHash, PeerId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::super::{AnnounceError, TrackerClient, TrackerClientConfig};
use super::*;

pub(crate) fn request() -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash(*b"\x12\x20\x34+abcdefghijklmnop"),
        peer_id: PeerId(*b"-SW0100-123456789012"),
        port: 6881,
        uploaded: 0,
        downloaded: 0,
        left: 100,
        event: AnnounceEvent::Started,
        num_want: Some(50),
        key: 1,
        tracker_id: None,
        crypto: Default::default(),
        ipv6: None,
    }
}

fn client(timeout_ms: u64) -> TrackerClient {
    TrackerClient::new(TrackerClientConfig {
        http_timeout: Duration::from_millis(timeout_ms),
        ..TrackerClientConfig::default()
    })
    .unwrap()
}

/// A one-request-per-connection HTTP server on 127.0.0.1 that answers every request with `reply`
/// (raw bytes after the status line's headers are built by the caller) and reports the request line.
async fn fake_tracker(reply: Vec<u8>) -> (String, mpsc::UnboundedReceiver<String>) {
    fake_tracker_at("127.0.0.1:0", reply).await
}

/// [`fake_tracker`] listening at `bind`.
async fn fake_tracker_at(bind: &str, reply: Vec<u8>) -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16_384 {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let line = String::from_utf8_lossy(&buf)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            let _ = tx.send(line);
            let _ = sock.write_all(&reply).await;
            let _ = sock.shutdown().await;
        }
    });
    (format!("http://{addr}/announce"), rx)
}

pub(crate) fn ok_reply(body: &[u8]) -> Vec<u8> {
    reply_with_status("200 OK", body)
}

fn reply_with_status(status: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[tokio::test]
async fn compact_reply_and_exact_query() {
    let (url, mut requests) = fake_tracker(ok_reply(
        b"d8:intervali1800e5:peers12:\x7f\x00\x00\x02\x1a\xe1\x7f\x00\x00\x03\x1a\xe2e",
    ))
    .await;
    let r = client(2000).announce(&url, &request()).await.unwrap();
    assert_eq!(r.interval, 1800);
    let expected: Vec<SocketAddr> = vec![
        "127.0.0.2:6881".parse().unwrap(),
        "127.0.0.3:6882".parse().unwrap(),
    ];
    assert_eq!(r.peers, expected);
    let line = requests.recv().await.unwrap();
    assert!(
        line.starts_with(
            "GET /announce?info_hash=%12%204%2Babcdefghijklmnop&peer_id=-SW0100-123456789012&port=6881"
        ),
        "{line}"
    );
    assert!(line.contains("&compact=1&event=started&numwant=50&key=00000001 "));
}

#[tokio::test]
async fn dictionary_peers() {
    let (url, _requests) = fake_tracker(ok_reply(
        b"d8:intervali60e5:peersld2:ip9:127.0.0.54:porti7000eed2:ip3:::14:porti7001eeee",
    ))
    .await;
    let r = client(2000).announce(&url, &request()).await.unwrap();
    let expected: Vec<SocketAddr> = vec![
        "127.0.0.5:7000".parse().unwrap(),
        "[::1]:7001".parse().unwrap(),
    ];
    assert_eq!(r.peers, expected);
}

#[tokio::test]
async fn failure_reason_even_with_error_status() {
    let (url, _r) = fake_tracker(reply_with_status(
        "400 Bad Request",
        b"d14:failure reason9:not todaye",
    ))
    .await;
    let e = client(2000).announce(&url, &request()).await.unwrap_err();
    assert!(
        matches!(&e, AnnounceError::Tracker(TrackerError::Failure(m)) if m == "not today"),
        "{e:?}"
    );
    let (url, _r) = fake_tracker(reply_with_status("503 Busy", b"")).await;
    let e = client(2000).announce(&url, &request()).await.unwrap_err();
    assert!(matches!(e, AnnounceError::HttpStatus(503)), "{e:?}");
}

#[tokio::test]
async fn html_reply_is_malformed() {
    let (url, _r) = fake_tracker(ok_reply(
        b"<html><head><title>Welcome to nginx!</title></head></html>",
    ))
    .await;
    let e = client(2000).announce(&url, &request()).await.unwrap_err();
    assert!(
        matches!(&e, AnnounceError::Tracker(TrackerError::Malformed(m)) if m.contains("HTML")),
        "{e:?}"
    );
}

#[tokio::test]
async fn silent_tracker_times_out_on_time() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/announce", listener.local_addr().unwrap());
    // Accept and hold connections without ever answering.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let started = tokio::time::Instant::now();
    let e = client(200).announce(&url, &request()).await.unwrap_err();
    assert!(matches!(e, AnnounceError::Timeout(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn oversized_bodies_are_cut_off() {
    // Declared too large: refused before reading.
    let (url, _r) = fake_tracker(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_HTTP_BODY + 1
        )
        .into_bytes(),
    )
    .await;
    let e = client(5000).announce(&url, &request()).await.unwrap_err();
    assert!(matches!(e, AnnounceError::BodyTooLarge { .. }), "{e:?}");
    // No length, streamed until close: cut off once past the cap.
    let mut reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
    reply.resize(reply.len() + MAX_HTTP_BODY + 10, b'x');
    let (url, _r) = fake_tracker(reply).await;
    let e = client(5000).announce(&url, &request()).await.unwrap_err();
    assert!(matches!(e, AnnounceError::BodyTooLarge { .. }), "{e:?}");
}

/// A tracker that answers each connection with `head`, then writes `chunk_len` bytes of `x` at a time
/// (every `pause`, or as fast as the client reads) until the client goes away, and reports how many
/// body bytes it managed to write.
async fn endless_tracker(
    head: &'static [u8],
    chunk_len: usize,
    pause: Option<Duration>,
) -> (String, mpsc::UnboundedReceiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/announce", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = sock.read(&mut request).await;
                let mut sent = 0;
                if sock.write_all(head).await.is_ok() {
                    let chunk = vec![b'x'; chunk_len];
                    // A pause between writes is the hostile behaviour under test (a trickle), not a wait
                    // for an event.
                    let mut pace = pause.map(tokio::time::interval);
                    loop {
                        if let Some(pace) = &mut pace {
                            pace.tick().await;
                        }
                        if sock.write_all(&chunk).await.is_err() {
                            break;
                        }
                        sent += chunk_len;
                    }
                }
                let _ = tx.send(sent);
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn a_100_mb_body_is_refused_without_buffering_it() {
    // No Content-Length: the size is only known by reading, and the client stops at the cap.
    const HUNDRED_MB: usize = 100 * 1000 * 1000;
    let (url, mut sent) = endless_tracker(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
        64 * 1024,
        None,
    )
    .await;
    let started = Instant::now();
    let e = client(10_000).announce(&url, &request()).await.unwrap_err();
    assert!(
        matches!(
            e,
            AnnounceError::BodyTooLarge {
                limit: MAX_HTTP_BODY
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!("tracker reply is larger than {MAX_HTTP_BODY} bytes")
    );
    // The server could only write what the cap and the socket buffers took before the client hung up.
    let sent = sent.recv().await.unwrap();
    assert!(sent < 4 * MAX_HTTP_BODY, "{sent}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Declared as 100 MB: refused before reading any of it.
    let (url, _r) = fake_tracker(
        format!("HTTP/1.1 200 OK\r\nContent-Length: {HUNDRED_MB}\r\n\r\n").into_bytes(),
    )
    .await;
    let e = client(10_000).announce(&url, &request()).await.unwrap_err();
    assert!(matches!(e, AnnounceError::BodyTooLarge { .. }), "{e:?}");
}

#[tokio::test]
async fn a_body_that_never_ends_hits_the_deadline() {
    let timeout = Duration::from_millis(300);
    let client = client(timeout.as_millis() as u64);
    // Headers, a start of a body, then nothing more, with the connection held open.
    let (url, _r) = endless_tracker(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nd8:interval",
        0,
        Some(Duration::from_secs(3600)),
    )
    .await;
    let started = Instant::now();
    let e = client.announce(&url, &request()).await.unwrap_err();
    assert!(
        matches!(e, AnnounceError::Timeout(t) if t == timeout),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // A trickle: one byte every 10 ms, forever. Each read makes progress, so only the total deadline
    // can end it.
    let (url, _r) = endless_tracker(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
        1,
        Some(Duration::from_millis(10)),
    )
    .await;
    let started = Instant::now();
    let e = client.announce(&url, &request()).await.unwrap_err();
    assert!(matches!(e, AnnounceError::Timeout(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_million_peers_are_cut_to_the_cap() {
    const PEERS: u32 = 1_000_000;
    let mut body = format!("d8:intervali-5e5:peers{}:", PEERS * 6).into_bytes();
    // Port 0, broadcast, unspecified and multicast entries first: dropped, they do not use up the cap.
    for ip in [
        [1, 2, 3, 4],
        [255, 255, 255, 255],
        [0, 0, 0, 0],
        [239, 1, 1, 1],
    ] {
        body.extend_from_slice(&ip);
        body.extend_from_slice(&(if ip[0] == 1 { 0u16 } else { 6881u16 }).to_be_bytes());
    }
    for i in 4..PEERS {
        body.extend_from_slice(&(0x0a00_0000 + i).to_be_bytes());
        body.extend_from_slice(&6881u16.to_be_bytes());
    }
    body.push(b'e');
    assert!(body.len() > 6_000_000 && body.len() < MAX_HTTP_BODY);
    let (url, _r) = fake_tracker(ok_reply(&body)).await;
    let r = client(10_000).announce(&url, &request()).await.unwrap();
    assert_eq!(r.peers.len(), MAX_PEERS);
    assert_eq!(r.peers[0], "10.0.0.4:6881".parse::<SocketAddr>().unwrap());
    assert_eq!(r.interval, MIN_ANNOUNCE_INTERVAL);
}

#[tokio::test]
async fn unknown_scheme_and_refused_connection() {
    let c = client(2000);
    let e = c
        .announce("wss://t.example/announce", &request())
        .await
        .unwrap_err();
    assert!(matches!(&e, AnnounceError::UnsupportedScheme(s) if s == "wss"));
    let e = c.announce("no-scheme", &request()).await.unwrap_err();
    assert!(matches!(e, AnnounceError::InvalidUrl { .. }));
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/announce", closed.local_addr().unwrap());
    drop(closed);
    let e = c.announce(&url, &request()).await.unwrap_err();
    assert!(matches!(e, AnnounceError::Http(_)), "{e:?}");
}

#[tokio::test]
async fn scrape_goes_to_the_bep_48_url_in_chunks_of_64() {
    let hashes: Vec<InfoHash> = (0..70u8).map(|i| InfoHash([i; 20])).collect();
    // The reply answers for hash 0 and for one nobody asked about.
    let mut body = b"d5:filesd20:".to_vec();
    body.extend_from_slice(&[0u8; 20]);
    body.extend_from_slice(b"d8:completei5e10:downloadedi7e10:incompletei3ee20:");
    body.extend_from_slice(&[0xffu8; 20]);
    body.extend_from_slice(b"d8:completei1eeee");
    let (url, mut requests) = fake_tracker(ok_reply(&body)).await;
    let got = client(2000).scrape(&url, &hashes).await.unwrap();
    // Hash 0 is in the first request only, so it is answered once; 0xff.. was not asked about.
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, hashes[0]);
    assert_eq!(
        (got[0].1.seeders, got[0].1.completed, got[0].1.leechers),
        (5, 7, 3)
    );
    let first = requests.recv().await.unwrap();
    let second = requests.recv().await.unwrap();
    assert!(first.starts_with("GET /scrape?info_hash="), "{first}");
    assert_eq!(first.matches("info_hash=").count(), 64);
    assert_eq!(second.matches("info_hash=").count(), 6);
}

#[tokio::test]
async fn a_tracker_without_a_bep_48_scrape_url_is_not_scraped() {
    let e = client(2000)
        .scrape("http://127.0.0.1:1/tracker.php", &[InfoHash([1; 20])])
        .await
        .unwrap_err();
    assert!(matches!(e, AnnounceError::NotScrapable(_)), "{e:?}");
}

#[tokio::test]
async fn a_dual_stack_client_tells_its_ipv6_address_and_keeps_each_family_to_itself() {
    let (url, mut requests) = fake_tracker_at(
        "[::1]:0",
        ok_reply(b"d8:intervali1800e6:peers618:\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x02\x1a\xe1e"),
    )
    .await;
    let mut c = client(2000);
    c.set_dual_stack(Some("2001:db8::7".parse().unwrap()))
        .unwrap();
    // BEP 7: `peers6` read, our address told.
    let r = c.announce(&url, &request()).await.unwrap();
    assert_eq!(r.peers, vec!["[::2]:6881".parse::<SocketAddr>().unwrap()]);
    let line = requests.recv().await.unwrap();
    assert!(line.contains("&ipv6=2001%3Adb8%3A%3A7 "), "{line}");
    // The per-family clients reach only their own family: the IPv4 one cannot reach [::1].
    let req = request();
    assert!(c.announce_over(&url, &req, Some(false)).await.is_ok());
    assert!(c.announce_over(&url, &req, Some(true)).await.is_err());
}
