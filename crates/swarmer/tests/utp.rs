//! uTP (BEP 29) on loopback between swarmer sessions: downloads and seeding over uTP only, a TCP
//! attempt to a uTP-only session refused (so the transfers above cannot have been TCP), the `Both`
//! policy falling back from TCP to uTP, and a few megabytes through the flow control.

mod common;

use std::time::Duration;

use common::{Fixture, assert_files_match, fixture, fixture_with, seeder, session};
use swarmer::{Session, SessionConfig, TorrentHandle, Transport};
use swarmer_proto::PeerId;
use swarmer_proto::wire::{Handshake, reserved_bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(60);

fn config(transport: Transport) -> SessionConfig {
    SessionConfig {
        transport,
        ..SessionConfig::default()
    }
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, f).await.expect("timed out")
}

async fn leecher(f: &Fixture, transport: Transport) -> (tempfile::TempDir, Session, TorrentHandle) {
    let dir = tempfile::tempdir().unwrap();
    let session = session(config(transport)).await;
    let torrent = session
        .add_torrent(f.metainfo.clone(), dir.path())
        .await
        .unwrap();
    (dir, session, torrent)
}

#[tokio::test]
async fn downloads_and_seeds_over_utp_only() {
    let f = fixture(16 * 1024);
    let (_seed_dir, seed_session, seed) = seeder(&f, config(Transport::Utp)).await;
    // The leecher dials the seeder.
    let (dir, _s, mut torrent) = leecher(&f, Transport::Utp).await;
    torrent.add_peers(vec![seed_session.listen_addr()]).await;
    within(torrent.wait_complete()).await.unwrap();
    assert_files_match(&f, dir.path());
    torrent.stop().await.unwrap();
    // The seeder dials a leecher that never dials.
    let (dir, passive, mut torrent) = leecher(&f, Transport::Utp).await;
    seed.add_peers(vec![passive.listen_addr()]).await;
    within(torrent.wait_complete()).await.unwrap();
    assert_files_match(&f, dir.path());
    seed.stop().await.unwrap();
}

#[tokio::test]
async fn a_utp_only_session_closes_tcp_connections_at_once() {
    let f = fixture(16 * 1024);
    let (_seed_dir, seed_session, seed) = seeder(&f, config(Transport::Utp)).await;
    let mut tcp = TcpStream::connect(seed_session.listen_addr())
        .await
        .unwrap();
    let ours = Handshake {
        reserved: reserved_bytes(false, true, true),
        info_hash: f.metainfo.info_hash,
        peer_id: PeerId(*b"-XX0001-tcp-onlypeer"),
    };
    // The write may fail if the close arrived first; the read must see the close either way.
    let _ = tcp.write_all(&ours.encode()).await;
    let mut buf = [0u8; 68];
    let read = within(tcp.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "got {read:?}");
    seed.stop().await.unwrap();
}

#[tokio::test]
async fn both_falls_back_to_utp_and_accepts_it() {
    let f = fixture(16 * 1024);
    // A dual-stack leecher dials a uTP-only seeder: TCP is closed at once, uTP carries the data.
    let (_seed_dir, seed_session, seed) = seeder(&f, config(Transport::Utp)).await;
    let (dir, _s, mut torrent) = leecher(&f, Transport::Both).await;
    torrent.add_peers(vec![seed_session.listen_addr()]).await;
    within(torrent.wait_complete()).await.unwrap();
    assert_files_match(&f, dir.path());
    torrent.stop().await.unwrap();
    seed.stop().await.unwrap();
    // A uTP-only leecher dials a dual-stack seeder: it accepts uTP.
    let (_seed_dir, seed_session, seed) = seeder(&f, config(Transport::Both)).await;
    let (dir, _s, mut torrent) = leecher(&f, Transport::Utp).await;
    torrent.add_peers(vec![seed_session.listen_addr()]).await;
    within(torrent.wait_complete()).await.unwrap();
    assert_files_match(&f, dir.path());
    seed.stop().await.unwrap();
}

#[tokio::test]
async fn megabytes_flow_through_the_windows() {
    let f = fixture_with(256 * 1024, vec![(vec!["big.bin"], 24 << 20)]);
    let (_seed_dir, seed_session, seed) = seeder(&f, config(Transport::Utp)).await;
    let (dir, _s, mut torrent) = leecher(&f, Transport::Utp).await;
    torrent.add_peers(vec![seed_session.listen_addr()]).await;
    within(torrent.wait_complete()).await.unwrap();
    assert_files_match(&f, dir.path());
    seed.stop().await.unwrap();
}

#[tokio::test]
async fn the_dht_shares_the_listen_port_with_utp() {
    let s = session(SessionConfig {
        dht: Some(swarmer::DhtConfig::default()),
        ..SessionConfig::default()
    })
    .await;
    assert_eq!(s.dht().unwrap().local_addr(), s.listen_addr());
}
