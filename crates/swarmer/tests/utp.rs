//! uTP (BEP 29) on loopback between swarmer sessions: downloads and seeding over uTP only, a TCP
//! attempt to a uTP-only session refused (so the transfers above cannot have been TCP), the `Both`
//! policy falling back from TCP to uTP, dialling uTP first a peer PEX says speaks it (and TCP
//! first the others, and TCP after a uTP attempt that is not answered), each carrier read back
//! from both sides' peer details, and a few megabytes through the flow control.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Fixture, assert_files_match, fixture, fixture_with, seeder, session};
use swarmer::{Session, SessionConfig, TorrentHandle, Transport};
use swarmer_proto::PeerId;
use swarmer_proto::extension::{OUR_UT_PEX, PexFlags, PexMessage};
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

/// Connects to `to` as a scripted peer for `f`'s torrent and tells it of `peers` in a PEX message
/// (BEP 11), under the id swarmer gives `ut_pex`. The connection must stay open while it counts.
async fn tell_by_pex(f: &Fixture, to: SocketAddr, peers: Vec<(SocketAddr, PexFlags)>) -> TcpStream {
    let mut tcp = TcpStream::connect(to).await.unwrap();
    let ours = Handshake {
        reserved: reserved_bytes(false, true, true),
        info_hash: f.metainfo.info_hash,
        peer_id: PeerId(*b"-XX0001-pex-teller00"),
    };
    tcp.write_all(&ours.encode()).await.unwrap();
    let mut theirs = [0u8; 68];
    within(tcp.read_exact(&mut theirs)).await.unwrap();
    let extended = |id: u8, payload: &[u8]| {
        let mut frame = ((payload.len() + 2) as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&[20, id]);
        frame.extend_from_slice(payload);
        frame
    };
    let pex = PexMessage {
        added: peers,
        dropped: vec![],
    };
    tcp.write_all(&extended(0, b"d1:md6:ut_pexi1eee"))
        .await
        .unwrap();
    tcp.write_all(&extended(OUR_UT_PEX, &pex.encode()))
        .await
        .unwrap();
    tcp
}

/// Waits until `torrent` has `n` peers past the handshake and returns its peer details.
async fn peers_when(torrent: &TorrentHandle, n: usize) -> Vec<swarmer::PeerDetails> {
    let mut progress = torrent.progress();
    within(progress.wait_for(|p| p.peers >= n)).await.unwrap();
    torrent.details().await.unwrap().peers
}

/// The carrier (`true`: uTP) of `torrent`'s connection with `addr`.
fn carrier(peers: &[swarmer::PeerDetails], addr: SocketAddr) -> bool {
    let peer = peers.iter().find(|p| p.addr == addr);
    peer.unwrap_or_else(|| panic!("no peer {addr} in {peers:?}"))
        .status
        .utp
}

#[tokio::test]
async fn both_dials_utp_first_only_to_peers_known_to_speak_it() {
    let f = fixture(16 * 1024);
    // Empty leechers, so every connection stays open while the test reads it back.
    let (_l_dir, l_session, l) = leecher(&f, Transport::Both).await;
    let (_a_dir, a_session, a) = leecher(&f, Transport::Both).await;
    let (_b_dir, b_session, b) = leecher(&f, Transport::Both).await;
    // TCP only: its UDP socket takes no uTP connection, so the uTP attempt fails.
    let (_c_dir, c_session, c) = leecher(&f, Transport::Tcp).await;
    let utp = PexFlags(PexFlags::UTP);
    let told = vec![
        (a_session.listen_addr(), utp),
        (b_session.listen_addr(), PexFlags(0)),
        (c_session.listen_addr(), utp),
    ];
    let _teller = tell_by_pex(&f, l_session.listen_addr(), told).await;
    // The teller, a, b and c.
    let peers = peers_when(&l, 4).await;
    assert!(
        carrier(&peers, a_session.listen_addr()),
        "PEX said a speaks uTP: dialled over uTP"
    );
    assert!(
        !carrier(&peers, b_session.listen_addr()),
        "nothing said b speaks uTP: dialled over TCP"
    );
    assert!(
        !carrier(&peers, c_session.listen_addr()),
        "c did not answer uTP: dialled over TCP after it"
    );
    assert!(peers.iter().all(|p| p.outgoing || !p.status.utp));
    // Each side sees the same carrier, and one connection per pair.
    for (torrent, utp) in [(&a, true), (&b, false), (&c, false)] {
        let theirs = peers_when(torrent, 1).await;
        assert_eq!(theirs.len(), 1, "{theirs:?}");
        assert!(!theirs[0].outgoing);
        assert_eq!(theirs[0].status.utp, utp, "{theirs:?}");
    }
}

#[tokio::test]
async fn closing_a_session_ends_its_utp_connections_at_the_peer() {
    let f = fixture(16 * 1024);
    // Two empty uTP-only leechers: their connection would otherwise stay until the idle timeout.
    let (_a_dir, a_session, a) = leecher(&f, Transport::Utp).await;
    let (_b_dir, b_session, b) = leecher(&f, Transport::Utp).await;
    b.add_peers(vec![a_session.listen_addr()]).await;
    peers_when(&a, 1).await;
    b_session.close_utp(Duration::from_secs(1)).await;
    let mut progress = a.progress();
    within(progress.wait_for(|p| p.peers == 0)).await.unwrap();
    drop(b);
}
