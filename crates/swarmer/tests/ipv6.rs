//! IPv6 and dual-stack sessions on loopback: a session without a bind address listens on both
//! families (TCP and the UDP socket of uTP), so leechers bound to `::1` and to `127.0.0.1` both
//! download from it, and it dials IPv6 peers; a session bound to one family listens on that one
//! alone. A leecher bound to `::1` has no IPv4 socket, so its transfers prove the IPv6 path. The
//! IPv6 DHT (BEP 32): a trackerless torrent found through it alone, both tables in the state file.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{Fixture, assert_files_match, fixture, seed_in};
use swarmer::{DhtConfig, Session, SessionConfig, Transport};

/// Every wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(60);

const V6: &str = "::1";
const V4: &str = "127.0.0.1";

/// A session on any free port, bound to `bind` (`None`: dual-stack), over `transport`.
async fn session(bind: Option<&str>, transport: Transport) -> Session {
    Session::new(SessionConfig {
        listen_port: 0,
        bind_ip: bind.map(|ip| ip.parse().unwrap()),
        transport,
        ..SessionConfig::default()
    })
    .await
    .unwrap()
}

/// `port` on loopback of `ip`'s family.
fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port)
}

/// A leecher bound to `bind` downloads `f` from `peer` and its files match.
async fn download(f: &Fixture, bind: Option<&str>, transport: Transport, peer: SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let s = session(bind, transport).await;
    let mut torrent = s.add_torrent(f.metainfo.clone(), dir.path()).await.unwrap();
    torrent.add_peers(vec![peer]).await;
    tokio::time::timeout(TIMEOUT, torrent.wait_complete())
        .await
        .expect("timed out")
        .unwrap();
    assert_files_match(f, dir.path());
    torrent.stop().await.unwrap();
}

#[tokio::test]
async fn a_default_session_serves_both_families_over_tcp_and_utp() {
    let f = fixture(16 * 1024);
    let (_dir, seed_session, seed) = seed_in(&f, session(None, Transport::Both).await).await;
    let addrs = seed_session.listen_addrs();
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    assert!(addrs[0].ip().is_unspecified() && addrs[0].is_ipv4());
    assert!(addrs[1].ip().is_unspecified() && addrs[1].is_ipv6());
    assert_eq!(addrs[0].port(), addrs[1].port());
    let port = addrs[0].port();
    for transport in [Transport::Tcp, Transport::Utp] {
        download(&f, Some(V6), transport, at(V6, port)).await;
        download(&f, Some(V4), transport, at(V4, port)).await;
    }
    seed.stop().await.unwrap();
}

#[tokio::test]
async fn a_default_session_dials_ipv6_peers() {
    let f = fixture(16 * 1024);
    for transport in [Transport::Tcp, Transport::Utp] {
        let (_dir, seed_session, seed) = seed_in(&f, session(Some(V6), transport).await).await;
        assert_eq!(seed_session.listen_addrs().len(), 1);
        let port = seed_session.listen_addr().port();
        download(&f, None, transport, at(V6, port)).await;
        seed.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_bind_address_keeps_the_session_to_its_family() {
    let f = fixture(16 * 1024);
    let (_dir, seed_session, seed) = seed_in(&f, session(Some(V4), Transport::Tcp).await).await;
    assert_eq!(
        seed_session.listen_addrs(),
        vec![seed_session.listen_addr()]
    );
    let port = seed_session.listen_addr().port();
    // Nothing listens on [::1] at the IPv4 session's port.
    assert!(
        tokio::net::TcpStream::connect(at(V6, port)).await.is_err(),
        "an IPv4-bound session accepted IPv6"
    );
    seed.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trackerless_torrent_is_found_through_the_ipv6_dht() {
    let f = fixture(16 * 1024);
    assert!(f.metainfo.announce_tiers.is_empty());
    let state = tempfile::tempdir().unwrap();
    let dht_session = |bootstrap: Vec<String>, file: &str| {
        Session::new(SessionConfig {
            listen_port: 0,
            dht: Some(DhtConfig {
                bootstrap,
                state_file: Some(state.path().join(file)),
            }),
            ..SessionConfig::default()
        })
    };
    // Both dual-stack; the leecher joins through the seeder's IPv6 node only, so its IPv4
    // network stays empty and whatever it finds, it finds on the IPv6 one.
    let seed_session = dht_session(vec![], "seeder.dat").await.unwrap();
    let port = seed_session.listen_addr().port();
    let (_dir, seed_session, seed) = seed_in(&f, seed_session).await;
    let leech = dht_session(vec![format!("[::1]:{port}")], "leecher.dat")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut torrent = leech
        .add_torrent(f.metainfo.clone(), dir.path())
        .await
        .unwrap();
    tokio::time::timeout(TIMEOUT, torrent.wait_complete())
        .await
        .expect("download through the IPv6 DHT timed out")
        .unwrap();
    assert_files_match(&f, dir.path());
    let leech_nodes = leech.dht().unwrap().nodes().await;
    assert!(leech_nodes.contains(&at(V6, port)), "{leech_nodes:?}");
    assert!(leech_nodes.iter().all(|a| a.is_ipv6()), "{leech_nodes:?}");
    torrent.stop().await.unwrap();
    seed.stop().await.unwrap();
    // The seeder learned the leecher on the IPv6 network; its state file keeps it in `nodes6`.
    let seed_dht = seed_session.dht().unwrap();
    assert!(seed_dht.nodes().await.iter().any(|a| a.is_ipv6()));
    seed_dht.save().await;
    let saved = std::fs::read(state.path().join("seeder.dat")).unwrap();
    let nodes6 = b"6:nodes638:";
    assert!(
        saved.windows(nodes6.len()).any(|w| w == nodes6),
        "one IPv6 node saved: {saved:?}"
    );
}
