//! Message Stream Encryption between whole clients on loopback: swarmer to swarmer with RC4
//! required both ways, `prefer` falling back to plaintext against a peer that refuses MSE, each
//! policy refusing what it must, and scripted hostile handshakes (garbage instead of a key, padding
//! over 512, a sync pattern that never comes, an unknown torrent, a stall mid-handshake), each
//! closed within its bound while another peer's download goes on undisturbed.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Fixture, assert_files_match, fixture, seeder, session};
use swarmer::{Encryption, Session, SessionConfig, TorrentHandle};
use swarmer_proto::InfoHash;
use swarmer_proto::mse::{DH_KEY_LEN, Handshake, Methods, Secrets, Status};
use swarmer_proto::time::Instant as ProtoInstant;
use swarmer_proto::wire::{Handshake as BtHandshake, reserved_bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(60);

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, f).await.expect("timed out")
}

fn with(encryption: Encryption) -> SessionConfig {
    SessionConfig {
        encryption,
        ..SessionConfig::default()
    }
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
async fn rc4_required_both_ways_dialling_and_accepting() {
    let f = fixture(16 * 1024);
    let (_seed_dir, seed_session, seed) = seeder(&f, with(Encryption::Require)).await;
    let (dir, _s, mut torrent) = leecher(&f, with(Encryption::Require)).await;
    torrent.add_peers(vec![seed_session.listen_addr()]).await;
    within(torrent.wait_complete()).await.unwrap();
    assert_files_match(&f, dir.path());
    torrent.stop().await.unwrap();
    // The seeder dials a leecher that never dials.
    let (dir, passive, mut torrent) = leecher(&f, with(Encryption::Require)).await;
    seed.add_peers(vec![passive.listen_addr()]).await;
    within(torrent.wait_complete()).await.unwrap();
    assert_files_match(&f, dir.path());
    torrent.stop().await.unwrap();
    seed.stop().await.unwrap();
}

#[tokio::test]
async fn prefer_falls_back_to_plaintext_when_the_peer_refuses_mse() {
    let f = fixture(16 * 1024);
    let (_seed_dir, seed_session, seed) = seeder(&f, with(Encryption::Disable)).await;
    let (dir, _s, mut torrent) = leecher(&f, with(Encryption::Prefer)).await;
    torrent.add_peers(vec![seed_session.listen_addr()]).await;
    within(torrent.wait_complete()).await.unwrap();
    assert_files_match(&f, dir.path());
    torrent.stop().await.unwrap();
    seed.stop().await.unwrap();
}

/// Reads until the peer closes (or resets) the connection; returns how long that took.
async fn closed_after(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut sink = [0u8; 4096];
    within(async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    start.elapsed()
}

fn plaintext_handshake(info_hash: InfoHash) -> [u8; 68] {
    BtHandshake {
        reserved: reserved_bytes(false, true, true),
        info_hash,
        peer_id: swarmer_proto::PeerId(*b"-XX0001-scriptedpeer"),
    }
    .encode()
}

#[tokio::test]
async fn require_refuses_plaintext_and_disable_refuses_mse() {
    let f = fixture(16 * 1024);
    let (_d, required, seed) = seeder(&f, with(Encryption::Require)).await;
    let mut plain = TcpStream::connect(required.listen_addr()).await.unwrap();
    plain
        .write_all(&plaintext_handshake(f.metainfo.info_hash))
        .await
        .unwrap();
    closed_after(&mut plain).await;
    seed.stop().await.unwrap();

    let (_d, disabled, seed) = seeder(&f, with(Encryption::Disable)).await;
    let mut a = initiator(f.metainfo.info_hash, Methods::BOTH);
    let mut mse = TcpStream::connect(disabled.listen_addr()).await.unwrap();
    mse.write_all(&a.poll_transmit().unwrap()).await.unwrap();
    closed_after(&mut mse).await;
    seed.stop().await.unwrap();
}

fn initiator(info_hash: InfoHash, provide: Methods) -> Handshake {
    let secrets = Secrets::generate(&mut rand::thread_rng());
    let deadline = ProtoInstant::from_origin(TIMEOUT);
    Handshake::initiator(secrets, info_hash, provide, &[], deadline)
}

/// Runs `a` against the listener at `addr` up to step 3, which `tamper` may change before it is
/// sent; returns the connection.
async fn up_to_step3(
    addr: SocketAddr,
    mut a: Handshake,
    tamper: impl Fn(&mut Vec<u8>),
) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&a.poll_transmit().unwrap()).await.unwrap();
    let mut key = [0u8; DH_KEY_LEN];
    within(stream.read_exact(&mut key)).await.unwrap();
    a.handle_input(&key).unwrap();
    assert_eq!(a.status(), Status::NeedInput);
    let mut step3 = a.poll_transmit().unwrap();
    tamper(&mut step3);
    stream.write_all(&step3).await.unwrap();
    stream
}

#[tokio::test]
async fn hostile_handshakes_are_closed_within_bounds_and_others_go_on() {
    let f = fixture(16 * 1024);
    let handshake_timeout = Duration::from_secs(2);
    let config = SessionConfig {
        handshake_timeout,
        ..SessionConfig::default()
    };
    let (_seed_dir, seed_session, seed) = seeder(&f, config).await;
    let addr = seed_session.listen_addr();
    let info_hash = f.metainfo.info_hash;

    // An honest leecher downloads meanwhile.
    let (dir, _s, mut torrent) = leecher(&f, SessionConfig::default()).await;
    torrent.add_peers(vec![addr]).await;

    // Garbage instead of a key: no sync within 628 bytes, closed without waiting for the deadline.
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage.write_all(&[0x5A; 700]).await.unwrap();
    assert!(closed_after(&mut garbage).await < handshake_timeout);

    // A key, then padding that never ends in the sync pattern.
    let mut a = initiator(info_hash, Methods::BOTH);
    let mut no_sync = TcpStream::connect(addr).await.unwrap();
    no_sync
        .write_all(&a.poll_transmit().unwrap())
        .await
        .unwrap();
    no_sync.write_all(&[0u8; 600]).await.unwrap();
    assert!(closed_after(&mut no_sync).await < handshake_timeout);

    // len(PadC) of 513: flipping ciphertext bits flips the same plaintext bits (RC4).
    let over = |s: &mut Vec<u8>| {
        s[52] ^= 0x02;
        s[53] ^= 0x01;
    };
    let mut padding = up_to_step3(addr, initiator(info_hash, Methods::BOTH), over).await;
    assert!(closed_after(&mut padding).await < handshake_timeout);

    // A torrent the session does not have (a wrong req2 xor req3).
    let mut unknown = up_to_step3(addr, initiator(InfoHash([7; 20]), Methods::BOTH), |_| {}).await;
    assert!(closed_after(&mut unknown).await < handshake_timeout);

    // A stall after the key: closed at the handshake's deadline, not before.
    let mut a = initiator(info_hash, Methods::BOTH);
    let mut stall = TcpStream::connect(addr).await.unwrap();
    stall.write_all(&a.poll_transmit().unwrap()).await.unwrap();
    let waited = closed_after(&mut stall).await;
    assert!(
        waited >= handshake_timeout - Duration::from_millis(100),
        "{waited:?}"
    );
    assert!(waited < handshake_timeout * 3, "{waited:?}");

    within(torrent.wait_complete()).await.unwrap();
    assert_files_match(&f, dir.path());
    torrent.stop().await.unwrap();
    seed.stop().await.unwrap();
}
