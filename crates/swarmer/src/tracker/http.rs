//! HTTP(S) announces (BEP 3): one GET with the percent-encoded query, the body read in chunks up to
//! [`MAX_HTTP_BODY`] bytes, then parsed by `swarmer_proto::tracker::http`.

use swarmer_proto::tracker::http::{announce_url, parse_announce_response};
use swarmer_proto::tracker::{AnnounceRequest, AnnounceResponse, TrackerError};

use super::{AnnounceError, MAX_HTTP_BODY, TrackerClient};

pub(super) async fn announce(
    client: &TrackerClient,
    announce: &str,
    req: &AnnounceRequest,
) -> Result<AnnounceResponse, AnnounceError> {
    let url = announce_url(announce, req);
    let timeout = client.config.http_timeout;
    let map_err = |e: reqwest::Error| {
        if e.is_timeout() {
            AnnounceError::Timeout(timeout)
        } else {
            AnnounceError::Http(e.without_url())
        }
    };
    // reqwest's own timeout covers connect, redirects and the body; this outer one is a backstop so the
    // bound holds whatever the HTTP stack does (with a little slack to let reqwest report first).
    let exchange = async {
        let mut resp = client.http.get(&url).send().await.map_err(map_err)?;
        let status = resp.status();
        if resp
            .content_length()
            .is_some_and(|len| len > MAX_HTTP_BODY as u64)
        {
            return Err(AnnounceError::BodyTooLarge {
                limit: MAX_HTTP_BODY,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(map_err)? {
            if body.len() + chunk.len() > MAX_HTTP_BODY {
                return Err(AnnounceError::BodyTooLarge {
                    limit: MAX_HTTP_BODY,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(timeout + timeout / 10, exchange)
        .await
        .map_err(|_| AnnounceError::Timeout(timeout))??;
    match parse_announce_response(&body) {
        // Some trackers send their bencoded refusal with a 4xx status: the reason is more useful.
        Err(TrackerError::Failure(reason)) => Err(TrackerError::Failure(reason).into()),
        _ if !status.is_success() => Err(AnnounceError::HttpStatus(status.as_u16())),
        result => Ok(result?),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use swarmer_proto::tracker::{AnnounceEvent, TrackerError};
    use swarmer_proto::{InfoHash, PeerId};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
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
}
