//! Tests of the extension messages: the BEP 10 extension handshake, BEP 9 metadata serving and
//! BEP 11 peer exchange, and their absence from a private torrent (BEP 27).

use std::sync::Arc;

use super::*;
use crate::extension::{
    ExtensionHandshake, MetadataMessage, OUR_UT_METADATA, OUR_UT_PEX, PexFlags, PexMessage,
    UT_METADATA, UT_PEX,
};

#[test]
fn extension_handshake_round_trips_reqq() {
    let ours = ExtensionHandshake::decode(&Fixture::new(2).t.extension_handshake()).unwrap();
    assert_eq!(ours.reqq, Some(250));
    assert!(!ours.upload_only);
    let seeding = Fixture::with_have(2, &[0, 1]).t.extension_handshake();
    assert!(ExtensionHandshake::decode(&seeding).unwrap().upload_only);
    let mut f = Fixture::new(2);
    let p = f.peer(2, false);
    f.t.handle_message(
        p,
        Message::Extended {
            id: 0,
            payload: b"d4:reqqi3ee",
        },
        f.now,
    );
    f.t.handle_message(p, Message::Bitfield(Bitfield::full(2).as_bytes()), f.now);
    f.t.handle_message(p, Message::Unchoke, f.now);
    let requests = sends(&f.drain(), p)
        .into_iter()
        .filter(|m| matches!(m, Outgoing::Request(_)))
        .count();
    assert_eq!(requests, 3, "the peer's reqq caps our queue");
}

// Extension messages: serving metadata (BEP 9) and peer exchange (BEP 11).

/// A torrent of 2 pieces (we have none: seeds stay connected) whose engine has `config`.
fn ext_fixture(config: Config) -> Fixture {
    let mut f = Fixture::new(2);
    let layout = f.t.layout.clone();
    f.t = Torrent::new(layout, InfoHash([0xaa; 20]), Bitfield::new(2), config, 1);
    f
}

/// A connection from 127.0.0.`ip`:`port` (dialled by us when `outgoing`) with both extensions,
/// whose extension handshake is `handshake`.
fn ext_peer(f: &mut Fixture, ip: u8, port: u16, outgoing: bool, handshake: &[u8]) -> PeerKey {
    ext_peer_at(
        f,
        SocketAddr::from(([127, 0, 0, ip], port)),
        outgoing,
        handshake,
    )
}

/// [`ext_peer`] at any address (IPv6 too).
fn ext_peer_at(f: &mut Fixture, addr: SocketAddr, outgoing: bool, handshake: &[u8]) -> PeerKey {
    let key = f.t.add_peer(
        PeerInfo {
            addr,
            fast: true,
            extensions: true,
            outgoing,
            encrypted: false,
            utp: false,
        },
        f.now,
    );
    let ext = |payload| Message::Extended { id: 0, payload };
    f.t.handle_message(key, ext(handshake), f.now);
    f.t.handle_message(key, Message::HaveNone, f.now);
    key
}

/// The extended messages sent to `key` under `id`.
fn extended(actions: &[Action], key: PeerKey, id: u8) -> Vec<Vec<u8>> {
    sends(actions, key)
        .into_iter()
        .filter_map(|m| match m {
            Outgoing::Extended(i, payload) if i == id => Some(payload),
            _ => None,
        })
        .collect()
}

fn metadata_request(f: &mut Fixture, key: PeerKey, id: u8, piece: u32) {
    let mut payload = Vec::new();
    MetadataMessage::Request { piece }.encode(&mut payload);
    let msg = Message::Extended {
        id,
        payload: &payload,
    };
    f.t.handle_message(key, msg, f.now);
}

/// Info dictionary bytes of 40 000 bytes: three metadata pieces, the last 7 232 bytes.
fn info_bytes() -> Arc<[u8]> {
    let mut v = b"d4:name4:test6:pieces39972:".to_vec();
    v.extend((0..39_972u32).map(|i| (i * 7 % 256) as u8));
    v.push(b'e');
    assert_eq!(v.len(), 40_000);
    v.into()
}

#[test]
fn metadata_is_served_piece_by_piece() {
    let info = info_bytes();
    let mut f = ext_fixture(Config {
        metadata: Some(Arc::clone(&info)),
        ..Config::default()
    });
    let p = ext_peer(&mut f, 2, 6881, true, b"d1:md11:ut_metadatai7eee");
    let ours = extended(&f.drain(), p, 0);
    let ours = ExtensionHandshake::decode(&ours[0]).unwrap();
    assert_eq!(ours.id_of(UT_METADATA), Some(OUR_UT_METADATA));
    assert_eq!(ours.id_of(UT_PEX), Some(OUR_UT_PEX));
    assert_eq!(ours.metadata_size, Some(40_000));

    let mut assembled = Vec::new();
    for piece in 0..3 {
        metadata_request(&mut f, p, OUR_UT_METADATA, piece);
        let answers = extended(&f.drain(), p, 7);
        assert_eq!(answers.len(), 1, "answered at once");
        match MetadataMessage::decode(&answers[0]).unwrap() {
            MetadataMessage::Data {
                piece: got,
                total_size,
                data,
            } => {
                assert_eq!((got, total_size), (piece, 40_000));
                assembled.extend_from_slice(data);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sha1(&assembled), sha1(&info));
    assert_eq!(&assembled[..], &info[..]);
    // Past the end: rejected.
    metadata_request(&mut f, p, OUR_UT_METADATA, 3);
    let answers = extended(&f.drain(), p, 7);
    assert_eq!(
        MetadataMessage::decode(&answers[0]),
        Ok(MetadataMessage::Reject { piece: 3 })
    );
    // Under an id we did not assign: ignored, and no fault.
    metadata_request(&mut f, p, 9, 0);
    assert!(f.drain().is_empty());
    // A malformed request is the peer's fault.
    f.t.handle_message(
        p,
        Message::Extended {
            id: OUR_UT_METADATA,
            payload: b"d8:msg_typei0ee",
        },
        f.now,
    );
    assert!(matches!(faults(&f.drain())[..], [PeerFault::Malformed(_)]));

    // A peer that gave no id for ut_metadata gets no answer (there is no id to send it under).
    let q = ext_peer(&mut f, 3, 6881, true, b"d1:md6:ut_pexi1eee");
    f.drain();
    metadata_request(&mut f, q, OUR_UT_METADATA, 0);
    assert!(f.drain().is_empty());
}

/// What a peer list shows of a peer: its client name from the extension handshake (`v`), the
/// pieces it has and the choke and interest state of both sides.
#[test]
fn peer_status_shows_client_pieces_and_choking() {
    let mut f = ext_fixture(Config::default());
    let p = ext_peer(
        &mut f,
        2,
        6881,
        true,
        b"d1:md6:ut_pexi1ee1:v13:qBittorrent 5e",
    );
    let status = f.t.peer_status(p).expect("connected");
    assert_eq!(status.client.as_deref(), Some("qBittorrent 5"));
    assert_eq!(status.pieces, 0);
    assert!(status.am_choking && status.peer_choking);
    assert!(!status.peer_interested);
    f.t.handle_message(p, Message::Have(1), f.now);
    f.t.handle_message(p, Message::Interested, f.now);
    let status = f.t.peer_status(p).expect("connected");
    assert_eq!(status.pieces, 1);
    assert!(status.peer_interested);
    f.t.remove_peer(p);
    assert_eq!(f.t.peer_status(p), None);
}

#[test]
fn metadata_requests_are_bounded_per_minute() {
    let mut f = ext_fixture(Config {
        metadata: Some(info_bytes()),
        ..Config::default()
    });
    let p = ext_peer(&mut f, 2, 6881, true, b"d1:md11:ut_metadatai7eee");
    f.drain();
    for _ in 0..METADATA_REQUESTS_PER_MINUTE {
        metadata_request(&mut f, p, OUR_UT_METADATA, 0);
    }
    assert_eq!(
        extended(&f.drain(), p, 7).len(),
        METADATA_REQUESTS_PER_MINUTE as usize
    );
    // A minute later the allowance is back.
    f.now += Duration::from_secs(60);
    for _ in 0..METADATA_REQUESTS_PER_MINUTE {
        metadata_request(&mut f, p, OUR_UT_METADATA, 1);
    }
    let actions = f.drain();
    assert!(faults(&actions).is_empty());
    metadata_request(&mut f, p, OUR_UT_METADATA, 1);
    assert_eq!(
        faults(&f.drain()),
        vec![PeerFault::Misbehaved(Offence::MetadataFlood(
            METADATA_REQUESTS_PER_MINUTE
        ))]
    );
}

#[test]
fn a_private_torrent_advertises_serves_and_exchanges_nothing() {
    let mut f = ext_fixture(Config {
        metadata: Some(info_bytes()),
        pex: true,
        private: true,
        ..Config::default()
    });
    let p = ext_peer(
        &mut f,
        2,
        6881,
        true,
        b"d1:md11:ut_metadatai7e6:ut_pexi5eee",
    );
    let _other = ext_peer(&mut f, 3, 6881, true, b"d1:md6:ut_pexi5eee");
    let ours = extended(&f.drain(), p, 0);
    let ours = ExtensionHandshake::decode(&ours[0]).unwrap();
    assert!(ours.messages.is_empty());
    assert_eq!(ours.metadata_size, None);
    metadata_request(&mut f, p, OUR_UT_METADATA, 0);
    let pex = pex_payload(&[([127, 0, 0, 9], 6881)]);
    f.t.handle_message(
        p,
        Message::Extended {
            id: OUR_UT_PEX,
            payload: &pex,
        },
        f.now,
    );
    assert!(f.drain().is_empty());
    let (actions, events) = advance(&mut f, 130);
    assert!(extended(&actions, p, 5).is_empty(), "no PEX sent");
    assert!(events.is_empty(), "{events:?}");
}

fn pex_payload(added: &[([u8; 4], u16)]) -> Vec<u8> {
    PexMessage {
        added: added
            .iter()
            .map(|(ip, port)| (SocketAddr::from((*ip, *port)), PexFlags(0)))
            .collect(),
        dropped: vec![],
    }
    .encode()
}

/// Moves the clock on `seconds` seconds, one tick at a time, with every peer sending a
/// keep-alive each second (so none goes silent). Returns the actions and events meanwhile.
fn advance(f: &mut Fixture, seconds: u64) -> (Vec<Action>, Vec<Event>) {
    let mut actions = Vec::new();
    for _ in 0..seconds {
        f.now += Duration::from_secs(1);
        let keys: Vec<PeerKey> = f.t.peers.keys().copied().collect();
        for key in keys {
            f.t.handle_message(key, Message::KeepAlive, f.now);
        }
        f.t.handle_timeout(f.now);
        actions.extend(f.drain());
    }
    let events = std::iter::from_fn(|| f.t.poll_event()).collect();
    (actions, events)
}

/// The PEX messages in `actions` sent to `key` (under id 5), with the second of each.
fn pex_sent(actions: &[Action], key: PeerKey) -> Vec<PexMessage> {
    extended(actions, key, 5)
        .iter()
        .map(|p| PexMessage::decode(p).unwrap())
        .collect()
}

#[test]
fn pex_tells_each_peer_of_the_others_at_most_once_a_minute() {
    let mut f = ext_fixture(Config::default());
    let v4 = |ip: u8, port: u16| SocketAddr::from(([127, 0, 0, ip], port));
    let x = ext_peer(&mut f, 2, 6881, true, b"d1:md6:ut_pexi5ee1:pi6881ee");
    let y = ext_peer(&mut f, 3, 6881, true, b"d1:md6:ut_pexi5eee");
    // Incoming: its listening port comes from its handshake. Encrypted (MSE): flag 0x01; over
    // uTP: flag 0x04.
    let z = ext_peer(&mut f, 4, 50_000, false, b"d1:md6:ut_pexi5ee1:pi7000ee");
    f.t.peers.get_mut(&z).unwrap().info.encrypted = true;
    f.t.peers.get_mut(&z).unwrap().info.utp = true;
    // Incoming without `p`: we do not know where it listens, so it is not passed on.
    let _w = ext_peer(&mut f, 5, 50_001, false, b"d1:md6:ut_pexi5eee");
    // A seed, dialled by us.
    let s = ext_peer(
        &mut f,
        6,
        6881,
        true,
        b"d1:md6:ut_pexi5ee11:upload_onlyi1ee",
    );
    f.drain();
    let (actions, _) = advance(&mut f, PEX_FIRST_DELAY.as_secs());
    let to_x = pex_sent(&actions, x);
    assert_eq!(
        to_x.len(),
        1,
        "the first message comes soon after the handshake"
    );
    let reachable = PexFlags(PexFlags::REACHABLE);
    assert_eq!(
        to_x[0],
        PexMessage {
            added: vec![
                (v4(3, 6881), reachable),
                (v4(4, 7000), PexFlags(PexFlags::ENCRYPTION | PexFlags::UTP)),
                (v4(6, 6881), PexFlags(PexFlags::REACHABLE | PexFlags::SEED)),
            ],
            dropped: vec![],
        },
        "the others, never x itself nor w"
    );
    assert!(
        pex_sent(&actions, y)[0]
            .added
            .iter()
            .all(|(a, _)| *a != v4(3, 6881))
    );

    // y leaves and a new peer arrives: x hears of both a minute after the first message, not
    // earlier.
    f.t.remove_peer(y);
    let n = ext_peer(&mut f, 7, 6881, true, b"d1:md6:ut_pexi5eee");
    let (actions, _) = advance(&mut f, PEX_INTERVAL.as_secs() - 1);
    assert!(pex_sent(&actions, x).is_empty(), "not within a minute");
    let (actions, _) = advance(&mut f, 1);
    assert_eq!(
        pex_sent(&actions, x),
        vec![PexMessage {
            added: vec![(v4(7, 6881), reachable)],
            dropped: vec![v4(3, 6881)],
        }]
    );
    // Nothing new: nothing sent, however long we wait.
    let (actions, _) = advance(&mut f, 2 * PEX_INTERVAL.as_secs());
    assert!(pex_sent(&actions, x).is_empty());
    let _ = (n, s);
}

#[test]
fn pex_tells_of_ipv6_peers_in_added6_and_dropped6() {
    let mut f = ext_fixture(Config::default());
    let x = ext_peer(&mut f, 2, 6881, true, b"d1:md6:ut_pexi5eee");
    let v6: SocketAddr = "[2001:db8::5]:6881".parse().unwrap();
    let y = ext_peer_at(&mut f, v6, true, b"d1:md6:ut_pexi5eee");
    f.drain();
    let (actions, _) = advance(&mut f, PEX_FIRST_DELAY.as_secs());
    let raw = extended(&actions, x, 5);
    assert_eq!(
        PexMessage::decode(&raw[0]).unwrap().added,
        vec![(v6, PexFlags(PexFlags::REACHABLE))]
    );
    let has = |bytes: &[u8], key: &[u8]| bytes.windows(key.len()).any(|w| w == key);
    assert!(has(&raw[0], b"6:added618:"), "BEP 11 added6");
    f.t.remove_peer(y);
    let (actions, _) = advance(&mut f, PEX_INTERVAL.as_secs());
    let raw = extended(&actions, x, 5);
    assert!(has(&raw[0], b"8:dropped618:"), "BEP 11 dropped6");
}

#[test]
fn pex_lists_at_most_fifty_peers_per_message() {
    let mut f = ext_fixture(Config::default());
    let x = ext_peer(&mut f, 2, 6881, true, b"d1:md6:ut_pexi5eee");
    for port in 0..120u16 {
        ext_peer(&mut f, 3, 10_000 + port, true, b"de");
    }
    f.drain();
    let (actions, _) = advance(&mut f, PEX_FIRST_DELAY.as_secs());
    let sent = pex_sent(&actions, x);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].added.len(), PEX_MAX_PER_MESSAGE);
    // The rest follow a minute apart.
    let (actions, _) = advance(&mut f, 2 * PEX_INTERVAL.as_secs());
    let sent = pex_sent(&actions, x);
    assert_eq!(
        sent.iter().map(|m| m.added.len()).collect::<Vec<_>>(),
        vec![50, 20]
    );
}

#[test]
fn received_pex_becomes_peers_discovered_and_is_bounded() {
    let mut f = ext_fixture(Config::default());
    let p = ext_peer(&mut f, 2, 6881, true, b"d1:md6:ut_pexi5eee");
    f.drain();
    let receive = |f: &mut Fixture, payload: &[u8]| {
        let msg = Message::Extended {
            id: OUR_UT_PEX,
            payload,
        };
        f.t.handle_message(p, msg, f.now);
        std::iter::from_fn(|| f.t.poll_event()).collect::<Vec<Event>>()
    };
    // The sender itself and port 0 are left out.
    let events = receive(
        &mut f,
        &pex_payload(&[
            ([127, 0, 0, 13], 6881),
            ([127, 0, 0, 2], 6881),
            ([127, 0, 0, 14], 0),
        ]),
    );
    assert_eq!(
        events,
        vec![Event::PeersDiscovered(vec![(
            SocketAddr::from(([127, 0, 0, 13], 6881)),
            PexFlags(0)
        )])]
    );
    // Another within 45 s is ignored.
    f.now += PEX_MIN_RECEIVE_INTERVAL - Duration::from_secs(1);
    assert!(receive(&mut f, &pex_payload(&[([127, 0, 0, 15], 1)])).is_empty());
    // After that, a huge one is cut to MAX_PEX_PEERS.
    f.now += Duration::from_secs(1);
    let many: Vec<([u8; 4], u16)> = (0..1000).map(|i| ([127, 1, 0, 1], 1000 + i)).collect();
    match &receive(&mut f, &pex_payload(&many))[..] {
        [Event::PeersDiscovered(addrs)] => {
            assert_eq!(addrs.len(), crate::extension::MAX_PEX_PEERS)
        }
        other => panic!("{other:?}"),
    }
    assert!(faults(&f.drain()).is_empty());
    // A malformed one is the peer's fault.
    f.now += PEX_MIN_RECEIVE_INTERVAL;
    receive(&mut f, b"d5:added5:abcdee");
    assert!(matches!(faults(&f.drain())[..], [PeerFault::Malformed(_)]));

    // With PEX off we do not offer it, and ignore what comes under its id.
    let mut f = ext_fixture(Config {
        pex: false,
        ..Config::default()
    });
    let p = ext_peer(&mut f, 2, 6881, true, b"d1:md6:ut_pexi5eee");
    let ours = ExtensionHandshake::decode(&extended(&f.drain(), p, 0)[0]).unwrap();
    assert_eq!(ours.id_of(UT_PEX), None);
    let msg = Message::Extended {
        id: OUR_UT_PEX,
        payload: &pex_payload(&[([127, 0, 0, 13], 6881)]),
    };
    f.t.handle_message(p, msg, f.now);
    assert_eq!(f.t.poll_event(), None);
    let (actions, _) = advance(&mut f, 70);
    assert!(pex_sent(&actions, p).is_empty());
}
