//! Whole-client tests on loopback against scripted peers: an honest seeder, a seeder that lies about
//! piece data, one that announces a 4 GiB message, one for another torrent, and one that trickles
//! its answer a byte at a time. They exercise the session, connection tasks, engine, verification
//! and storage together, without a tracker.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Fixture, assert_files_match, fixture};
use swarmer::{Session, SessionConfig, TorrentHandle};
use swarmer_proto::wire::{Handshake, Message, max_message_len, reserved_bytes};
use swarmer_proto::{InfoHash, Layout, PeerId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Honest,
    /// Flips a byte in every block it sends.
    Liar,
    /// Announces a message of 4 GiB after the handshake.
    Giant,
    /// Answers with a handshake for another torrent.
    WrongTorrent,
}

/// Starts a scripted peer on its own loopback address (bans are per address) and returns its address.
async fn spawn_peer(f: &Fixture, behaviour: Behaviour) -> SocketAddr {
    let ip = match behaviour {
        Behaviour::Honest => "127.0.0.2",
        Behaviour::Liar => "127.0.0.3",
        Behaviour::Giant => "127.0.0.4",
        Behaviour::WrongTorrent => "127.0.0.5",
    };
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let info_hash = f.metainfo.info_hash;
    let layout = f.metainfo.info.layout.clone();
    let content = Arc::clone(&f.content);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (layout, content) = (layout.clone(), Arc::clone(&content));
            tokio::spawn(serve(stream, info_hash, layout, content, behaviour));
        }
    });
    addr
}

async fn serve(
    mut stream: TcpStream,
    info_hash: InfoHash,
    layout: Layout,
    content: Arc<Vec<u8>>,
    behaviour: Behaviour,
) -> std::io::Result<()> {
    let mut hs = [0u8; 68];
    stream.read_exact(&mut hs).await?;
    let theirs = Handshake::decode(&hs).unwrap().unwrap();
    assert_eq!(theirs.info_hash, info_hash);
    let ours = Handshake {
        reserved: reserved_bytes(false, false, false),
        info_hash: if behaviour == Behaviour::WrongTorrent {
            InfoHash([9; 20])
        } else {
            info_hash
        },
        peer_id: PeerId(*b"-XX0001-scriptedpeer"),
    };
    stream.write_all(&ours.encode()).await?;
    if behaviour == Behaviour::Giant {
        stream.write_all(&u32::MAX.to_be_bytes()).await?;
        stream.write_all(&[7; 1024]).await?;
        // Hold the connection open: the client must close it without waiting for the body.
        let mut sink = Vec::new();
        stream.read_to_end(&mut sink).await?;
        return Ok(());
    }
    let mut out = Vec::new();
    let bits = swarmer_proto::Bitfield::full(layout.piece_count() as usize);
    Message::Bitfield(bits.as_bytes()).encode(&mut out);
    Message::Unchoke.encode(&mut out);
    stream.write_all(&out).await?;
    let mut buf = Vec::new();
    let max = max_message_len(layout.piece_count());
    loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut used_total = 0;
        out.clear();
        while let Some((message, used)) = Message::decode(&buf[used_total..], max).unwrap() {
            used_total += used;
            if let Message::Request(r) = message {
                let piece = layout.piece(r.index).unwrap();
                let start = (layout.piece_offset(piece) + u64::from(r.begin)) as usize;
                let mut data = content[start..start + r.length as usize].to_vec();
                if behaviour == Behaviour::Liar {
                    data[0] ^= 0x55;
                }
                Message::Piece {
                    index: r.index,
                    begin: r.begin,
                    data: &data,
                }
                .encode(&mut out);
            }
        }
        buf.drain(..used_total);
        stream.write_all(&out).await?;
    }
}

/// A session on 127.0.0.1 (any port) with the fixture's torrent added, downloading into a new
/// temporary directory. The session must outlive the torrent, so it is returned too.
async fn start(f: &Fixture) -> (tempfile::TempDir, Session, TorrentHandle) {
    let dir = tempfile::tempdir().unwrap();
    let config = SessionConfig {
        listen_port: 0,
        bind_ip: Some("127.0.0.1".parse().unwrap()),
        ..SessionConfig::default()
    };
    let session = Session::new(config).await.unwrap();
    let torrent = session
        .add_torrent(f.metainfo.clone(), dir.path())
        .await
        .unwrap();
    (dir, session, torrent)
}

/// Adds an honest peer to `torrent`, which must then complete with the files right in `dir`.
async fn finish_from_an_honest_peer(
    f: &Fixture,
    mut torrent: TorrentHandle,
    dir: &std::path::Path,
) {
    let honest = spawn_peer(f, Behaviour::Honest).await;
    torrent.add_peers(vec![honest]).await;
    tokio::time::timeout(Duration::from_secs(60), torrent.wait_complete())
        .await
        .expect("download timed out")
        .expect("download failed");
    torrent.stop().await.unwrap();
    assert_files_match(f, dir);
}

async fn download(f: &Fixture, peers: Vec<SocketAddr>) -> (tempfile::TempDir, swarmer::Progress) {
    let (dir, _session, mut torrent) = start(f).await;
    torrent.add_peers(peers).await;
    tokio::time::timeout(Duration::from_secs(60), torrent.wait_complete())
        .await
        .expect("download timed out")
        .expect("download failed");
    let progress = torrent.progress().borrow().clone();
    torrent.stop().await.unwrap();
    (dir, progress)
}

#[tokio::test]
async fn downloads_multi_file_torrent_from_one_seeder() {
    for piece_length in [16 * 1024, 64 * 1024] {
        let f = fixture(piece_length);
        let seeder = spawn_peer(&f, Behaviour::Honest).await;
        let (dir, progress) = download(&f, vec![seeder]).await;
        assert_files_match(&f, dir.path());
        assert_eq!(progress.verified_bytes, progress.total_bytes);
        assert_eq!(progress.hash_failures, 0);
    }
}

#[tokio::test]
async fn survives_a_lying_peer_a_giant_message_and_a_wrong_torrent() {
    let f = fixture(16 * 1024);
    let liar = spawn_peer(&f, Behaviour::Liar).await;
    let giant = spawn_peer(&f, Behaviour::Giant).await;
    let wrong = spawn_peer(&f, Behaviour::WrongTorrent).await;
    let honest = spawn_peer(&f, Behaviour::Honest).await;
    let (dir, progress) = download(&f, vec![liar, giant, wrong, honest]).await;
    assert_files_match(&f, dir.path());
    assert_eq!(progress.verified_bytes, progress.total_bytes);
}

#[tokio::test]
async fn lying_peer_is_banned_and_its_pieces_fetched_again() {
    let f = fixture(16 * 1024);
    let liar = spawn_peer(&f, Behaviour::Liar).await;
    // Only the liar at first: every piece it sends fails, and it gets banned.
    let (dir, _session, torrent) = start(&f).await;
    let mut progress = torrent.progress();
    torrent.add_peers(vec![liar]).await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while progress.borrow_and_update().hash_failures < 2 || progress.borrow().peers > 0 {
            progress.changed().await.unwrap();
        }
    })
    .await
    .expect("the liar was not caught");
    assert_eq!(progress.borrow().verified_bytes, 0);
    finish_from_an_honest_peer(&f, torrent, dir.path()).await;
}

/// Starts a seeder on 127.0.0.6 that claims every piece, unchokes, and answers the first request
/// it gets at 5 bytes/s, never finishing a message in time. The receiver gets how long after the
/// request the connection was closed on it.
async fn spawn_trickler(f: &Fixture) -> (SocketAddr, tokio::sync::oneshot::Receiver<Duration>) {
    let listener = TcpListener::bind(("127.0.0.6", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (info_hash, pieces) = (f.metainfo.info_hash, f.metainfo.info.layout.piece_count());
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut hs = [0u8; 68];
        stream.read_exact(&mut hs).await.unwrap();
        let ours = Handshake {
            reserved: reserved_bytes(false, false, false),
            info_hash,
            peer_id: PeerId(*b"-XX0001-tricklerpeer"),
        };
        let mut out = ours.encode().to_vec();
        let bits = swarmer_proto::Bitfield::full(pieces as usize);
        Message::Bitfield(bits.as_bytes()).encode(&mut out);
        Message::Unchoke.encode(&mut out);
        stream.write_all(&out).await.unwrap();
        // Wait for the first request (its 17 bytes are all a request message is).
        let mut buf = Vec::new();
        let request = loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before asking for anything");
            buf.extend_from_slice(&chunk[..n]);
            let max = max_message_len(pieces);
            let mut at = 0;
            let mut found = None;
            while let Some((message, used)) = Message::decode(&buf[at..], max).unwrap() {
                at += used;
                if let Message::Request(r) = message {
                    found = Some(r);
                    break;
                }
            }
            if let Some(r) = found {
                break r;
            }
            buf.drain(..at);
        };
        let asked = Instant::now();
        let data = vec![0u8; request.length as usize];
        let mut answer = Vec::new();
        Message::Piece {
            index: request.index,
            begin: request.begin,
            data: &data,
        }
        .encode(&mut answer);
        let (mut reader, mut writer) = stream.into_split();
        let trickle = async {
            for byte in answer {
                if writer.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let closed = async {
            let mut sink = [0u8; 4096];
            while reader.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        };
        tokio::select! {
            () = trickle => panic!("the whole block went out"),
            () = closed => {}
        }
        let _ = closed_tx.send(asked.elapsed());
    });
    (addr, closed_rx)
}

#[tokio::test]
async fn a_trickling_peer_is_snubbed_then_dropped() {
    let f = fixture(16 * 1024);
    let (trickler, closed) = spawn_trickler(&f).await;
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(1);
    let mut config = SessionConfig {
        listen_port: 0,
        bind_ip: Some("127.0.0.1".parse().unwrap()),
        ..SessionConfig::default()
    };
    config.engine.request_timeout = timeout;
    let session = Session::new(config).await.unwrap();
    let torrent = session
        .add_torrent(f.metainfo.clone(), dir.path())
        .await
        .unwrap();
    // Alone, it holds our requests: they time out each `timeout` (checked on the engine's 1 s
    // tick) and after the third in a row it is dropped, though bytes keep arriving.
    torrent.add_peers(vec![trickler]).await;
    let after = tokio::time::timeout(Duration::from_secs(30), closed)
        .await
        .expect("the trickler was never dropped")
        .expect("the trickler's task ended without a report");
    let timeouts = swarmer_proto::torrent::MAX_REQUEST_TIMEOUTS;
    assert!(
        after >= timeout * (timeouts - 1)
            && after <= (timeout + Duration::from_secs(1)) * (timeouts + 1),
        "dropped {after:?} after the first request"
    );
    assert_eq!(torrent.progress().borrow().verified_bytes, 0);
    finish_from_an_honest_peer(&f, torrent, dir.path()).await;
}

/// The engine's timers and its view of when a peer last spoke run on one clock, tokio's: on a
/// paused clock, a peer that sends a keep-alive every 60 s for 5 minutes stays connected, and once
/// it falls silent it is dropped 120 s (the engine's `peer_timeout`) after its last message. It
/// takes no real time. With the engine's "last heard" stamped from the system clock and its timers
/// from tokio's (as before the one-clock change), the peer was dropped 120 s after its handshake
/// however often it spoke.
#[tokio::test(start_paused = true)]
async fn silence_is_measured_on_tokios_paused_clock() {
    let f = fixture(16 * 1024);
    let listener = TcpListener::bind(("127.0.0.6", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let info_hash = f.metainfo.info_hash;
    let (spoke_tx, last_spoke) = tokio::sync::oneshot::channel();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let mut hs = [0u8; 68];
        read.read_exact(&mut hs).await.unwrap();
        let ours = Handshake {
            reserved: reserved_bytes(false, false, false),
            info_hash,
            peer_id: PeerId(*b"-XX0001-silentpeer00"),
        };
        write.write_all(&ours.encode()).await.unwrap();
        // Read what the client sends (keep-alives, its bitfield) until it closes.
        tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = read.read_to_end(&mut sink).await;
            let _ = closed_tx.send(tokio::time::Instant::now());
        });
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(60)).await;
            if write.write_all(&[0, 0, 0, 0]).await.is_err() {
                return;
            }
        }
        let _ = spoke_tx.send(tokio::time::Instant::now());
        // Then silence, with the connection held open.
        std::future::pending::<()>().await;
    });
    let (_dir, _session, torrent) = start(&f).await;
    torrent.add_peers(vec![addr]).await;
    let closed = closed.await.unwrap();
    let last_spoke = last_spoke
        .await
        .expect("the client closed the connection while the peer was still speaking");
    let silent = closed - last_spoke;
    assert!(
        (Duration::from_secs(120)..Duration::from_secs(125)).contains(&silent),
        "dropped after {silent:?} of silence on the paused clock"
    );
    torrent.stop().await.unwrap();
}
