//! Tests of the UDP tracker codec (BEP 15): connect and announce packets, replies (hostile ones
//! clamped and filtered), error packets and short packets.

use super::super::MIN_ANNOUNCE_INTERVAL;
use super::*;
use crate::{InfoHash, PeerId};

fn header(action: u32, tid: u32) -> Vec<u8> {
    [action.to_be_bytes(), tid.to_be_bytes()].concat()
}

#[test]
fn connect_round_trip() {
    let req = encode_connect(0xdead_beef);
    assert_eq!(
        req,
        *b"\x00\x00\x04\x17\x27\x10\x19\x80\x00\x00\x00\x00\xde\xad\xbe\xef"
    );
    let mut reply = header(0, 0xdead_beef);
    reply.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
    assert_eq!(
        decode_connect_response(&reply, 0xdead_beef),
        Ok(0x0102_0304_0506_0708)
    );
    assert_eq!(
        decode_connect_response(&reply, 7),
        Err(TrackerError::TransactionMismatch {
            expected: 7,
            got: 0xdead_beef
        })
    );
    assert!(matches!(
        decode_connect_response(&reply[..15], 0xdead_beef),
        Err(TrackerError::Malformed(_))
    ));
    let mut wrong = header(1, 9);
    wrong.extend_from_slice(&[0; 8]);
    assert_eq!(
        decode_connect_response(&wrong, 9),
        Err(TrackerError::UnexpectedAction {
            expected: 0,
            got: 1
        })
    );
}

#[test]
fn announce_layout() {
    let req = AnnounceRequest {
        info_hash: InfoHash([0x11; 20]),
        peer_id: PeerId([0x22; 20]),
        port: 6881,
        uploaded: 3,
        downloaded: 1,
        left: 2,
        event: AnnounceEvent::Started,
        num_want: None,
        key: 0xabcd,
        tracker_id: None,
        crypto: Default::default(),
        ipv6: None,
    };
    let p = encode_announce(0x99, 0x42, &req);
    assert_eq!(&p[0..8], &0x99u64.to_be_bytes());
    assert_eq!(&p[8..12], &1u32.to_be_bytes());
    assert_eq!(&p[12..16], &0x42u32.to_be_bytes());
    assert_eq!(&p[16..36], &[0x11; 20]);
    assert_eq!(&p[36..56], &[0x22; 20]);
    assert_eq!(&p[56..64], &1u64.to_be_bytes());
    assert_eq!(&p[64..72], &2u64.to_be_bytes());
    assert_eq!(&p[72..80], &3u64.to_be_bytes());
    assert_eq!(&p[80..84], &2u32.to_be_bytes());
    assert_eq!(&p[84..88], &[0; 4]);
    assert_eq!(&p[88..92], &0xabcdu32.to_be_bytes());
    assert_eq!(&p[92..96], &(-1i32).to_be_bytes());
    assert_eq!(&p[96..98], &6881u16.to_be_bytes());
    let p = encode_announce(
        0,
        0,
        &AnnounceRequest {
            event: AnnounceEvent::Stopped,
            num_want: Some(u32::MAX),
            ..req
        },
    );
    assert_eq!(&p[80..84], &3u32.to_be_bytes());
    assert_eq!(&p[92..96], &i32::MAX.to_be_bytes());
}

#[test]
fn announce_reply_v4_and_v6() {
    let mut reply = header(1, 5);
    for v in [1800u32, 7, 9] {
        reply.extend_from_slice(&v.to_be_bytes());
    }
    let v4 = reply.clone();
    let mut v4 = v4;
    v4.extend_from_slice(&[127, 0, 0, 2, 0x1a, 0xe1, 10, 0, 0, 1, 0, 0]);
    let r = decode_announce_response(&v4, 5, AddressFamily::V4).unwrap();
    assert_eq!(r.interval, 1800);
    assert_eq!((r.seeders, r.leechers), (Some(9), Some(7)));
    // The second peer has port 0 and is dropped.
    assert_eq!(r.peers, vec!["127.0.0.2:6881".parse().unwrap()]);
    // The same 12 peer bytes are not a whole number of 18-byte entries.
    assert!(matches!(
        decode_announce_response(&v4, 5, AddressFamily::V6),
        Err(TrackerError::Malformed(_))
    ));

    let mut v6 = reply;
    v6.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    v6.extend_from_slice(&6881u16.to_be_bytes());
    let r = decode_announce_response(&v6, 5, AddressFamily::V6).unwrap();
    assert_eq!(r.peers, vec!["[::1]:6881".parse().unwrap()]);

    let mut tiny = header(1, 5);
    tiny.extend_from_slice(&[0; 12]);
    let r = decode_announce_response(&tiny, 5, AddressFamily::V4).unwrap();
    assert_eq!(r.interval, MIN_ANNOUNCE_INTERVAL);
    assert!(r.peers.is_empty());
    assert!(matches!(
        decode_announce_response(&tiny[..19], 5, AddressFamily::V4),
        Err(TrackerError::Malformed(_))
    ));
    // What opentracker sends for an info hash that is not on its whitelist.
    assert_eq!(
        decode_announce_response(&tiny[..8], 5, AddressFamily::V4),
        Err(TrackerError::Failure(EMPTY_ANNOUNCE_REPLY.into()))
    );
    assert!(matches!(
        decode_announce_response(&tiny[..8], 6, AddressFamily::V4),
        Err(TrackerError::TransactionMismatch { .. })
    ));
}

#[test]
fn hostile_announce_replies_are_clamped_and_filtered() {
    use super::super::{MAX_ANNOUNCE_INTERVAL, MAX_PEERS};
    let reply = |interval: i32, leechers: i32, seeders: i32| {
        let mut p = header(1, 5);
        for v in [interval, leechers, seeders] {
            p.extend_from_slice(&v.to_be_bytes());
        }
        p
    };
    for (interval, expected) in [
        (-1, MIN_ANNOUNCE_INTERVAL),
        (i32::MIN, MIN_ANNOUNCE_INTERVAL),
        (0, MIN_ANNOUNCE_INTERVAL),
        (i32::MAX, MAX_ANNOUNCE_INTERVAL),
    ] {
        let r = decode_announce_response(&reply(interval, -1, -7), 5, AddressFamily::V4).unwrap();
        assert_eq!(r.interval, expected);
        assert_eq!((r.seeders, r.leechers), (None, None));
    }
    // A largest-possible datagram: 10,914 entries, mostly unusable; the usable ones are capped.
    let mut p = reply(1800, 1, 1);
    let bad: [[u8; 6]; 4] = [
        [0, 0, 0, 0, 0x1a, 0xe1],
        [255, 255, 255, 255, 0x1a, 0xe1],
        [224, 0, 0, 1, 0x1a, 0xe1],
        [127, 0, 0, 1, 0, 0],
    ];
    for entry in bad {
        p.extend_from_slice(&entry);
    }
    p.extend_from_slice(&[127, 0, 0, 3, 0x1a, 0xe1]);
    let mut i = 0u32;
    while p.len() + 6 <= 65_507 {
        p.extend_from_slice(&(0x0a00_0000 + i).to_be_bytes());
        p.extend_from_slice(&6881u16.to_be_bytes());
        i += 1;
    }
    let r = decode_announce_response(&p, 5, AddressFamily::V4).unwrap();
    assert_eq!(r.peers.len(), MAX_PEERS);
    assert_eq!(r.peers[0], "127.0.0.3:6881".parse().unwrap());
    // IPv6: unspecified and multicast are dropped, loopback kept.
    let mut p = reply(1800, 1, 1);
    for (ip, port) in [
        (std::net::Ipv6Addr::UNSPECIFIED, 1u16),
        ("ff02::1".parse().unwrap(), 1),
        (std::net::Ipv6Addr::LOCALHOST, 0),
        (std::net::Ipv6Addr::LOCALHOST, 2),
    ] {
        p.extend_from_slice(&ip.octets());
        p.extend_from_slice(&port.to_be_bytes());
    }
    let r = decode_announce_response(&p, 5, AddressFamily::V6).unwrap();
    assert_eq!(r.peers, vec!["[::1]:2".parse().unwrap()]);
}

#[test]
fn error_packets_become_failures() {
    let mut err = header(3, 77);
    err.extend_from_slice(b"Connection ID missmatch.\n");
    assert_eq!(
        decode_announce_response(&err, 77, AddressFamily::V4),
        Err(TrackerError::Failure("Connection ID missmatch.".into()))
    );
    assert_eq!(
        decode_connect_response(&header(3, 77), 77),
        Err(TrackerError::Failure(String::new()))
    );
    // An error packet for another transaction is not ours.
    assert!(matches!(
        decode_connect_response(&err, 78),
        Err(TrackerError::TransactionMismatch { .. })
    ));
}

#[test]
fn short_packets_never_panic() {
    for len in 0..40 {
        let p = vec![0u8; len];
        let _ = decode_connect_response(&p, 0);
        let _ = decode_announce_response(&p, 0, AddressFamily::V4);
        let _ = decode_announce_response(&p, 0, AddressFamily::V6);
    }
}
