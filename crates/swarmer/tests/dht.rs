//! The DHT end to end on loopback (127.0.0.1 only): a seeder of a torrent without trackers, and a
//! downloader whose only way to find it is the DHT, bootstrapped from the seeder's node.

mod common;

use std::time::{Duration, Instant};

use common::{assert_files_match, fixture, seeder, session};
use swarmer::{DhtConfig, SessionConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trackerless_torrent_is_found_through_the_dht() {
    let f = fixture(16 * 1024);
    assert!(f.metainfo.announce_tiers.is_empty());
    let state_dir = tempfile::tempdir().unwrap();
    let seeder_state = state_dir.path().join("seeder-dht.dat");
    let (_seed_dir, seed_session, seed_torrent) = seeder(
        &f,
        SessionConfig {
            dht: Some(DhtConfig {
                bootstrap: vec![],
                state_file: Some(seeder_state.clone()),
            }),
            ..SessionConfig::default()
        },
    )
    .await;
    let seed_dht = seed_session.dht().expect("DHT on");
    // Same port as the TCP listener, on the bind address.
    assert_eq!(seed_dht.local_addr(), seed_session.listen_addr());

    let start = Instant::now();
    let leech = session(SessionConfig {
        dht: Some(DhtConfig {
            bootstrap: vec![seed_dht.local_addr().to_string()],
            state_file: None,
        }),
        ..SessionConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut torrent = leech
        .add_torrent(f.metainfo.clone(), dir.path())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), torrent.wait_complete())
        .await
        .expect("download through the DHT timed out")
        .unwrap();
    eprintln!(
        "found through the DHT and downloaded in {:?}",
        start.elapsed()
    );
    assert_files_match(&f, dir.path());
    // Each node learned the other.
    assert!(
        leech
            .dht()
            .unwrap()
            .nodes()
            .await
            .contains(&seed_dht.local_addr())
    );
    // The seeder added the leecher when it first queried it.
    let leech_addr = leech.dht().unwrap().local_addr();
    assert!(seed_dht.nodes().await.contains(&leech_addr));
    torrent.stop().await.unwrap();
    seed_torrent.stop().await.unwrap();
    // The seeder's table (it knows the leecher) is written on request.
    seed_dht.save().await;
    let saved = std::fs::read(&seeder_state).expect("DHT state saved");
    assert!(saved.starts_with(b"d2:id20:"), "bencoded state");
    // A new session from that file knows the leecher's node without any bootstrap list.
    drop(seed_dht);
    drop(seed_session);
    let again = session(SessionConfig {
        dht: Some(DhtConfig {
            bootstrap: vec![],
            state_file: Some(seeder_state.clone()),
        }),
        ..SessionConfig::default()
    })
    .await;
    // Saved nodes are bootstrap addresses: queried at once, they enter the table when they answer,
    // which the node reports to nobody; so its table is looked at every 10 ms, not in a busy loop.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut every = tokio::time::interval(Duration::from_millis(10));
    loop {
        every.tick().await;
        if again.dht().unwrap().nodes().await.contains(&leech_addr) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "saved node never rejoined"
        );
    }
}
