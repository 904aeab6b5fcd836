//! Whole-client seeding tests on loopback: swarmer seeding to swarmer (it accepts, and it dials a
//! leecher that never dials), seeding refused for missing or corrupt data, scripted hostile leechers
//! next to an honest one, and the upload and download rate limits measured with a tolerance.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Fixture, assert_files_match, fixture, fixture_with, seeder, session, write_content};
use swarmer::{
    AddTorrentOptions, ExistingData, Progress, SeedLimits, Session, SessionConfig, SessionError,
    TorrentError, TorrentHandle, TorrentState,
};
use swarmer_proto::wire::{BlockRequest, Handshake, Message, reserved_bytes};
use swarmer_proto::{BLOCK_SIZE, PeerId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Flips one bit of the file at `path`, at `offset` bytes; returns the file's new content.
fn corrupt(path: &Path, offset: usize) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 1;
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// Adds the fixture to `session` to seed (until `limits`) from `dir`, taking `existing` data as given.
async fn add_seed(
    session: &Session,
    f: &Fixture,
    dir: &Path,
    limits: SeedLimits,
    existing: ExistingData,
) -> TorrentHandle {
    session
        .add_torrent_with(
            f.metainfo.clone(),
            dir,
            AddTorrentOptions {
                seed: Some(limits),
                existing,
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, f).await.expect("timed out")
}

async fn leecher(
    f: &Fixture,
    config: SessionConfig,
) -> (tempfile::TempDir, Session, TorrentHandle) {
    let dir = tempfile::tempdir().unwrap();
    let session = session(config).await;
    let torrent = session
        .add_torrent(f.metainfo.clone(), dir.path())
        .await
        .unwrap();
    (dir, session, torrent)
}

#[tokio::test]
async fn swarmer_seeds_to_swarmer_accepting_and_dialling() {
    let f = fixture(16 * 1024);
    let (_seed_dir, seed_session, seed) = seeder(&f, SessionConfig::default()).await;
    // The leecher dials the seeder.
    let (dir, _s, mut torrent) = leecher(&f, SessionConfig::default()).await;
    torrent.add_peers(vec![seed_session.listen_addr()]).await;
    within(torrent.wait_complete()).await.unwrap();
    assert_files_match(&f, dir.path());
    torrent.stop().await.unwrap();
    // The seeder dials a leecher that never dials anyone (as Transmission does on loopback).
    let (dir, passive, mut torrent) = leecher(&f, SessionConfig::default()).await;
    seed.add_peers(vec![passive.listen_addr()]).await;
    within(torrent.wait_complete()).await.unwrap();
    assert_files_match(&f, dir.path());
    let total = f.metainfo.info.layout.total_length();
    let mut progress = seed.progress();
    within(progress.wait_for(|p| p.uploaded_bytes == 2 * total))
        .await
        .expect("the seeder reports what it uploaded");
    assert_eq!(torrent.progress().borrow().downloaded_bytes, total);
    seed.stop().await.unwrap();
}

#[tokio::test]
async fn seeding_stops_at_the_ratio_limit() {
    let f = fixture(16 * 1024);
    let dir = tempfile::tempdir().unwrap();
    write_content(&f, dir.path());
    let seed_session = session(SessionConfig::default()).await;
    let limits = SeedLimits {
        ratio: Some(1.0),
        time: None,
    };
    let mut seed = add_seed(
        &seed_session,
        &f,
        dir.path(),
        limits,
        ExistingData::Complete,
    )
    .await;
    // Connections that arrive while the seeder checks its data are refused (a client retries later),
    // so the leecher starts once the check is done.
    within(seed.wait_complete()).await.unwrap();
    let (_dir, _s, mut torrent) = leecher(&f, SessionConfig::default()).await;
    torrent.add_peers(vec![seed_session.listen_addr()]).await;
    within(torrent.wait_complete()).await.unwrap();
    within(seed.wait_finished()).await.unwrap();
    let p = seed.progress().borrow().clone();
    assert_eq!(p.state, TorrentState::Complete);
    assert!(p.uploaded_bytes >= p.total_bytes);
    assert_eq!(p.peers, 0, "connections close when seeding ends");
}

#[tokio::test]
async fn seeding_refuses_missing_or_corrupt_data() {
    let f = fixture(16 * 1024);
    let s = session(SessionConfig::default()).await;
    let options = AddTorrentOptions {
        seed: Some(SeedLimits::default()),
        existing: ExistingData::Complete,
        ..Default::default()
    };
    let empty = tempfile::tempdir().unwrap();
    match s
        .add_torrent_with(f.metainfo.clone(), empty.path(), options.clone())
        .await
    {
        Err(SessionError::Storage(e)) => assert!(e.to_string().contains("is missing"), "{e}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("seeding without data must fail"),
    }
    assert!(
        std::fs::read_dir(empty.path()).unwrap().next().is_none(),
        "nothing is created"
    );
    let dir = tempfile::tempdir().unwrap();
    write_content(&f, dir.path());
    let big = dir.path().join("fixture/sub/deeper/big.bin");
    let bytes = corrupt(&big, 200_000);
    let mut torrent = s
        .add_torrent_with(f.metainfo.clone(), dir.path(), options)
        .await
        .unwrap();
    match within(torrent.wait_complete()).await {
        Err(TorrentError::Incomplete {
            bad, first, file, ..
        }) => {
            assert_eq!(bad, 1);
            assert_eq!(first, (100_000 + 1_000 + 200_000) / (16 * 1024));
            assert_eq!(file, Path::new("fixture/sub/deeper/big.bin"));
        }
        other => panic!("expected Incomplete, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&big).unwrap(),
        bytes,
        "the data is left alone"
    );
}

/// A leecher speaking the peer wire protocol by hand.
struct Scripted {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A message as the scripted leecher sees it.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Unchoke,
    Choke,
    Piece(BlockRequest),
    Reject(BlockRequest),
    Other(Option<u8>),
}

impl Scripted {
    async fn connect(to: SocketAddr, f: &Fixture, fast: bool, ip: &str) -> Scripted {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        let mut stream = socket.connect(to).await.unwrap();
        let hs = Handshake {
            reserved: reserved_bytes(false, fast, false),
            info_hash: f.metainfo.info_hash,
            peer_id: PeerId(*b"-XX0001-hostile-peer"),
        };
        stream.write_all(&hs.encode()).await.unwrap();
        let mut theirs = [0u8; 68];
        stream.read_exact(&mut theirs).await.unwrap();
        Scripted {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, messages: &[Message<'_>]) {
        let mut out = Vec::new();
        for m in messages {
            m.encode(&mut out);
        }
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next message, or `None` once the other side closed the connection.
    async fn recv(&mut self) -> Option<Got> {
        loop {
            if let Ok(Some((m, used))) = Message::decode(&self.buf, 1 << 20) {
                let got = match m {
                    Message::Unchoke => Got::Unchoke,
                    Message::Choke => Got::Choke,
                    Message::Piece { index, begin, data } => Got::Piece(BlockRequest {
                        index,
                        begin,
                        length: data.len() as u32,
                    }),
                    Message::Reject(r) => Got::Reject(r),
                    other => Got::Other(other.id()),
                };
                self.buf.drain(..used);
                return Some(got);
            }
            let mut chunk = [0u8; 65536];
            let n = within(self.stream.read(&mut chunk)).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until `want` arrives, skipping everything else (have, bitfield, extension handshake).
    async fn expect(&mut self, want: Got) {
        loop {
            match self.recv().await {
                Some(got) if got == want => return,
                Some(Got::Piece(p)) => panic!("unexpected piece {p:?} while waiting for {want:?}"),
                Some(_) => {}
                None => panic!("closed while waiting for {want:?}"),
            }
        }
    }

    async fn expect_closed(&mut self) {
        while self.recv().await.is_some() {}
    }
}

fn req(index: u32, begin: u32, length: u32) -> BlockRequest {
    BlockRequest {
        index,
        begin,
        length,
    }
}

#[tokio::test]
async fn hostile_leechers_are_refused_or_dropped_while_others_are_served() {
    // 64 KiB pieces: 7 pieces of 401,000 bytes. The seeder lacks piece 3: it checks its data, finds
    // that piece corrupt, and serves the rest while it would download it.
    let f = fixture(64 * 1024);
    let dir = tempfile::tempdir().unwrap();
    write_content(&f, dir.path());
    let big = dir.path().join("fixture/sub/deeper/big.bin");
    corrupt(&big, 3 * 65536 - 101_000 + 10);
    let seed_session = session(SessionConfig::default()).await;
    let seed = add_seed(
        &seed_session,
        &f,
        dir.path(),
        SeedLimits::default(),
        ExistingData::Check,
    )
    .await;
    let mut progress = seed.progress();
    within(progress.wait_for(|p| p.state == TorrentState::Downloading))
        .await
        .unwrap();
    assert_eq!(progress.borrow().pieces_have, 6);
    let to = seed_session.listen_addr();

    // With the Fast Extension: refused requests are rejected; a cancel of a queued request is
    // answered by a reject; a burst of 10,000 requests ends the connection.
    let mut fast = Scripted::connect(to, &f, true, "127.0.0.21").await;
    fast.send(&[Message::HaveNone]).await;
    let choked = req(0, 0, BLOCK_SIZE);
    fast.send(&[Message::Request(choked)]).await;
    fast.send(&[Message::Interested]).await;
    // The request sent before the unchoke is answered, by a reject or the piece (piece 0 may be in
    // the allowed-fast set).
    loop {
        match fast.recv().await.expect("open") {
            Got::Reject(r) | Got::Piece(r) if r == choked => break,
            _ => {}
        }
    }
    fast.expect(Got::Unchoke).await;
    for bad in [req(3, 0, BLOCK_SIZE), req(0, 0, 1 << 20)] {
        fast.send(&[Message::Request(bad)]).await;
        fast.expect(Got::Reject(bad)).await;
    }
    // 40 distinct requests: the first ones are handed out at once, the last waits, and is cancelled.
    let many: Vec<BlockRequest> = (0..40).map(|i| req(0, i * 100, 100)).collect();
    let messages: Vec<Message<'_>> = many.iter().map(|r| Message::Request(*r)).collect();
    fast.send(&messages).await;
    fast.send(&[Message::Cancel(many[39])]).await;
    let mut pieces = 0;
    let mut rejected = false;
    while pieces + usize::from(rejected) < 40 {
        match fast.recv().await.expect("open") {
            Got::Piece(_) => pieces += 1,
            Got::Reject(r) if r == many[39] => rejected = true,
            _ => {}
        }
    }
    assert!(pieces >= 32, "the window's worth is sent: {pieces}");

    // An honest swarmer leecher downloads meanwhile, and keeps being served through the flood.
    let (_ldir, _ls, honest) = leecher(&f, SessionConfig::default()).await;
    honest.add_peers(vec![to]).await;
    let burst: Vec<BlockRequest> = (0..10_000).map(|i| req(i % 3, (i / 3) % 1000, 1)).collect();
    let messages: Vec<Message<'_>> = burst.iter().map(|r| Message::Request(*r)).collect();
    fast.send(&messages).await;
    fast.expect_closed().await;

    // Without it: a request while choked is ignored (no reply, still connected); out of range
    // closes the connection.
    let mut plain = Scripted::connect(to, &f, false, "127.0.0.22").await;
    plain.send(&[Message::Request(req(0, 0, BLOCK_SIZE))]).await;
    plain.send(&[Message::Interested]).await;
    plain.expect(Got::Unchoke).await;
    plain.send(&[Message::Request(req(1, 0, BLOCK_SIZE))]).await;
    match plain.recv().await {
        Some(Got::Piece(r)) => assert_eq!(r, req(1, 0, BLOCK_SIZE), "only the unchoked request"),
        other => {
            // Skip availability messages sent after the unchoke.
            let mut got = other;
            while let Some(Got::Other(_)) = got {
                got = plain.recv().await;
            }
            assert_eq!(got, Some(Got::Piece(req(1, 0, BLOCK_SIZE))));
        }
    }
    plain.send(&[Message::Request(req(7, 0, BLOCK_SIZE))]).await;
    plain.expect_closed().await;

    // The honest leecher gets every piece the seeder has.
    let mut hp = honest.progress();
    within(hp.wait_for(|p| p.pieces_have == 6)).await.unwrap();
    honest.stop().await.unwrap();
    seed.stop().await.unwrap();
}

/// One 6 MiB file in 256 KiB pieces.
fn big_fixture() -> Fixture {
    fixture_with(256 * 1024, vec![(vec!["big.bin"], 6 << 20)])
}

/// How often the rate tests sample progress.
const SAMPLE: Duration = Duration::from_millis(100);

/// Samples `bytes` of `progress` every [`SAMPLE`] until `total` is reached: the elapsed time and the
/// bytes moved in each interval.
async fn sample_rates(
    mut progress: tokio::sync::watch::Receiver<Progress>,
    bytes: fn(&Progress) -> u64,
    total: u64,
) -> (Duration, Vec<u64>) {
    let start = Instant::now();
    let mut ticks = tokio::time::interval(SAMPLE);
    let mut samples = Vec::new();
    let mut last = 0;
    loop {
        ticks.tick().await;
        let now = bytes(&progress.borrow_and_update());
        samples.push(now - last);
        last = now;
        if now >= total {
            return (start.elapsed(), samples);
        }
        assert!(start.elapsed() < TIMEOUT, "transfer stalled at {now} bytes");
    }
}

fn assert_rate(what: &str, elapsed: Duration, samples: &[u64], total: u64, rate: u64) {
    let expected = total as f64 / rate as f64;
    let secs = elapsed.as_secs_f64();
    // Bytes per whole second, after the first sample (the connection being set up).
    let per_second: Vec<u64> = samples[1..]
        .chunks_exact(10)
        .map(|c| c.iter().sum())
        .collect();
    eprintln!(
        "{what}: {total} bytes in {secs:.2} s at a limit of {rate} B/s (expected {expected:.2} s); bytes per second: {per_second:?}"
    );
    assert!(
        secs >= expected * 0.85 && secs <= expected * 1.15 + SAMPLE.as_secs_f64(),
        "{what}: {total} bytes at {rate} B/s took {secs:.2} s, expected {expected:.2} s"
    );
    // Smooth, not bursty: every whole second moves the rate within 20 %.
    assert!(!per_second.is_empty());
    for s in &per_second {
        let ratio = *s as f64 / rate as f64;
        assert!(
            (0.8..=1.2).contains(&ratio),
            "{what}: a second moved {s} bytes at a limit of {rate} B/s: {per_second:?}"
        );
    }
}

#[tokio::test]
async fn upload_rate_limit_is_held_smoothly() {
    let f = big_fixture();
    let rate = 2 << 20;
    let (_d, seed_session, seed) = seeder(
        &f,
        SessionConfig {
            max_upload_rate: Some(rate),
            ..SessionConfig::default()
        },
    )
    .await;
    let (_dir, _s, torrent) = leecher(&f, SessionConfig::default()).await;
    let total = f.metainfo.info.layout.total_length();
    torrent.add_peers(vec![seed_session.listen_addr()]).await;
    let (elapsed, samples) = sample_rates(seed.progress(), |p| p.uploaded_bytes, total).await;
    assert_rate("upload", elapsed, &samples, total, rate);
    torrent.stop().await.unwrap();
    seed.stop().await.unwrap();
}

#[tokio::test]
async fn download_rate_limit_is_held_smoothly() {
    let f = big_fixture();
    let rate = 2 << 20;
    let (_d, seed_session, seed) = seeder(&f, SessionConfig::default()).await;
    let (_dir, _s, torrent) = leecher(
        &f,
        SessionConfig {
            max_download_rate: Some(rate),
            ..SessionConfig::default()
        },
    )
    .await;
    let total = f.metainfo.info.layout.total_length();
    torrent.add_peers(vec![seed_session.listen_addr()]).await;
    let (elapsed, samples) = sample_rates(torrent.progress(), |p| p.downloaded_bytes, total).await;
    assert_rate("download", elapsed, &samples, total, rate);
    torrent.stop().await.unwrap();
    seed.stop().await.unwrap();
}
