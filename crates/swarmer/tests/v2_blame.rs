//! A v2 download on loopback from two scripted seeders, one of which corrupts the first block of
//! every piece it sends: the library checks the pieces against the merkle tree, asks a peer for
//! the failed pieces' leaf hashes (BEP 52 `hash request`, answered here only by the honest
//! seeder), and pins the bad blocks on the liar alone. Proven from the library's own warnings,
//! captured: only the liar is ever named or banned, and the honest seeder serves to the end. And
//! the other side: a seeding swarmer answers such a request from the piece on disk, with a proof
//! up to the file's root.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swarmer::{
    AddTorrentOptions, CreateTorrent, Encryption, ExistingData, SeedLimits, Session, SessionConfig,
    create_torrent,
};
use swarmer_proto::hashes::{self, HashMessage, HashRequest};
use swarmer_proto::merkle;
use swarmer_proto::metainfo::{MetaVersion, Metainfo};
use swarmer_proto::wire::{Handshake, Message, max_message_len, reserved_bytes};
use swarmer_proto::{Bitfield, PeerId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIAR: &str = "127.0.0.3";
const HONEST: &str = "127.0.0.2";

/// What a scripted seeder saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    hash_requests: AtomicUsize,
}

/// A seeder of `metainfo`'s one file `content` on `ip`. The liar flips a byte in the first block
/// of every piece and rejects hash requests; the honest one answers them from the content.
async fn spawn_seeder(
    ip: &str,
    metainfo: Arc<Metainfo>,
    content: Arc<Vec<u8>>,
    seen: Arc<Seen>,
) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let liar = ip == LIAR;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen.connections.fetch_add(1, Ordering::SeqCst);
            let (m, c, s) = (
                Arc::clone(&metainfo),
                Arc::clone(&content),
                Arc::clone(&seen),
            );
            tokio::spawn(serve(stream, m, c, s, liar));
        }
    });
    addr
}

async fn serve(
    mut stream: TcpStream,
    metainfo: Arc<Metainfo>,
    content: Arc<Vec<u8>>,
    seen: Arc<Seen>,
    liar: bool,
) -> std::io::Result<()> {
    let mut hs = [0u8; 68];
    stream.read_exact(&mut hs).await?;
    let Ok(Some(theirs)) = Handshake::decode(&hs) else {
        return Ok(());
    };
    let ours = Handshake {
        reserved: reserved_bytes(false, false, false),
        info_hash: theirs.info_hash,
        peer_id: PeerId(*b"-XX0001-scripted-v2-"),
    };
    stream.write_all(&ours.encode()).await?;
    let layout = &metainfo.info.layout;
    let mut out = Vec::new();
    let bits = Bitfield::full(layout.piece_count() as usize);
    Message::Bitfield(bits.as_bytes()).encode(&mut out);
    Message::Unchoke.encode(&mut out);
    stream.write_all(&out).await?;
    let max = max_message_len(layout.piece_count());
    let mut buf = Vec::new();
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
            match message {
                Message::Request(r) => {
                    let piece = layout.piece(r.index).unwrap();
                    let start = (layout.piece_offset(piece) + u64::from(r.begin)) as usize;
                    // A v2 torrent pads its last piece to the full length with zeros.
                    let mut data = vec![0; r.length as usize];
                    let end = (start + data.len()).min(content.len());
                    data[..end.saturating_sub(start)]
                        .copy_from_slice(&content[start.min(end)..end]);
                    if liar && r.begin == 0 {
                        data[7] ^= 0x55;
                    }
                    let msg = Message::Piece {
                        index: r.index,
                        begin: r.begin,
                        data: &data,
                    };
                    msg.encode(&mut out);
                }
                Message::Unknown { id, payload } if id == hashes::HASH_REQUEST => {
                    seen.hash_requests.fetch_add(1, Ordering::SeqCst);
                    let Ok(HashMessage::Request(request)) = HashMessage::decode(id, payload) else {
                        panic!("malformed hash request");
                    };
                    out.extend(hashes::frame(&answer(&metainfo, &content, request, liar)));
                }
                _ => {}
            }
        }
        buf.drain(..used_total);
        stream.write_all(&out).await?;
    }
}

/// The honest answer to a leaf request: the piece's leaf hashes; a reject from the liar.
fn answer(
    metainfo: &Metainfo,
    content: &[u8],
    request: hashes::HashRequest,
    liar: bool,
) -> HashMessage {
    let v2 = metainfo.info.v2.as_ref().unwrap();
    let file = &v2.files[0];
    let piece_length = metainfo.info.piece_length;
    let served = hashes::leaf_request_piece(file, &request, piece_length).and_then(|index| {
        let start = index as usize * piece_length as usize;
        let end = (start + piece_length as usize).min(content.len());
        hashes::serve_leaves(file, &request, piece_length, index, &content[start..end])
    });
    match served {
        Some(hashes) if !liar => HashMessage::Hashes { request, hashes },
        _ => HashMessage::Reject(request),
    }
}

/// A v2-only torrent of one file `v2.bin` written in `dir`: 24 pieces of 32 KiB (two blocks
/// each), the last one short; its metainfo and content.
fn v2_torrent(dir: &Path) -> (Arc<Metainfo>, Arc<Vec<u8>>) {
    let mut x: u32 = 0x9e37_79b9;
    let content: Vec<u8> = (0..24 * 32 * 1024 - 5000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let source = dir.join("v2.bin");
    std::fs::write(&source, &content).unwrap();
    let request = CreateTorrent {
        path: source,
        version: MetaVersion::V2,
        piece_length: Some(32 * 1024),
        options: Default::default(),
        threads: Some(1),
    };
    let bytes = create_torrent(&request, |_| {}).unwrap();
    (
        Arc::new(Metainfo::from_bytes(&bytes).unwrap()),
        Arc::new(content),
    )
}

/// Collects the library's log lines (warnings and up).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread: the torrent task logs on the thread that holds the subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_corrupt_block_is_pinned_on_its_sender_alone() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let (metainfo, content) = v2_torrent(dir.path());

    let (liar_seen, honest_seen) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
    let liar = spawn_seeder(
        LIAR,
        Arc::clone(&metainfo),
        Arc::clone(&content),
        Arc::clone(&liar_seen),
    )
    .await;
    let honest = spawn_seeder(
        HONEST,
        Arc::clone(&metainfo),
        Arc::clone(&content),
        Arc::clone(&honest_seen),
    )
    .await;

    let out = tempfile::tempdir().unwrap();
    let config = SessionConfig {
        listen_port: 0,
        bind_ip: Some("127.0.0.1".parse().unwrap()),
        encryption: Encryption::Disable,
        ..SessionConfig::default()
    };
    let session = Session::new(config).await.unwrap();
    let mut torrent = session
        .add_torrent(Arc::clone(&metainfo), out.path())
        .await
        .unwrap();
    // The liar first, so it fills blocks before the honest seeder takes most of the work.
    torrent.add_peers(vec![liar]).await;
    torrent.add_peers(vec![honest]).await;
    tokio::time::timeout(Duration::from_secs(60), torrent.wait_complete())
        .await
        .expect("download timed out")
        .expect("download failed");
    let progress = torrent.progress().borrow().clone();
    torrent.stop().await.unwrap();
    assert_eq!(std::fs::read(out.path().join("v2.bin")).unwrap(), *content);

    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(
        progress.hash_failures >= 1,
        "no corrupt block arrived:\n{log}"
    );
    assert!(
        honest_seen.hash_requests.load(Ordering::SeqCst) >= 1,
        "the honest seeder was never asked for leaf hashes:\n{log}"
    );
    let pinned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pins the piece's bad blocks"))
        .collect();
    assert!(!pinned.is_empty(), "no bad block was pinned:\n{log}");
    for line in &pinned {
        assert!(line.contains(LIAR) && !line.contains(HONEST), "{line}");
    }
    assert!(
        log.lines()
            .any(|l| l.contains("banning peer") && l.contains(LIAR)),
        "the liar was not banned:\n{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("banning") && l.contains(HONEST)),
        "the honest seeder was banned:\n{log}"
    );
    assert_eq!(
        honest_seen.connections.load(Ordering::SeqCst),
        1,
        "the honest seeder's one connection served to the end"
    );
    drop(session);
}

#[tokio::test]
async fn a_seeding_swarmer_answers_a_leaf_hash_request_with_a_proof() {
    let dir = tempfile::tempdir().unwrap();
    let (metainfo, content) = v2_torrent(dir.path());
    let session = Session::new(SessionConfig {
        listen_port: 0,
        bind_ip: Some("127.0.0.1".parse().unwrap()),
        encryption: Encryption::Disable,
        ..SessionConfig::default()
    })
    .await
    .unwrap();
    let options = AddTorrentOptions {
        seed: Some(SeedLimits::default()),
        existing: ExistingData::Complete,
        ..AddTorrentOptions::default()
    };
    let mut seed = session
        .add_torrent_with(Arc::clone(&metainfo), dir.path(), options)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), seed.wait_complete())
        .await
        .expect("timed out")
        .unwrap();

    let mut stream = TcpStream::connect(session.listen_addr()).await.unwrap();
    let ours = Handshake {
        reserved: reserved_bytes(false, false, false),
        info_hash: metainfo.info_hash,
        peer_id: PeerId(*b"-XX0001-leaf-asker--"),
    };
    stream.write_all(&ours.encode()).await.unwrap();
    let mut hs = [0u8; 68];
    stream.read_exact(&mut hs).await.unwrap();
    // The leaves of piece 3 (layer 0, two hashes), with the five uncles up to the root of the
    // file's 64-leaf tree (48 blocks, padded).
    let file = &metainfo.info.v2.as_ref().unwrap().files[0];
    let request = HashRequest {
        pieces_root: file.pieces_root,
        base_layer: 0,
        index: 6,
        length: 2,
        proof_layers: 5,
    };
    stream
        .write_all(&hashes::frame(&HashMessage::Request(request)))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let mut len = [0u8; 4];
            stream.read_exact(&mut len).await.unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            stream.read_exact(&mut body).await.unwrap();
            if body.first() == Some(&hashes::HASHES) || body.first() == Some(&hashes::HASH_REJECT) {
                return HashMessage::decode(body[0], &body[1..]).unwrap();
            }
        }
    })
    .await
    .expect("no answer to the hash request");
    let HashMessage::Hashes {
        request: echoed,
        hashes: got,
    } = reply
    else {
        panic!("the request was rejected: {reply:?}");
    };
    assert_eq!(echoed, request);
    let proven = hashes::verify(&file.pieces_root, 48, &request, &got)
        .expect("the leaves and their proof hash up to the pieces root");
    let piece = 32 * 1024;
    assert_eq!(
        proven,
        merkle::leaf_hashes(&content[3 * piece..4 * piece]),
        "the leaves of piece 3"
    );
    seed.stop().await.unwrap();
}
