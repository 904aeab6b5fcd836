//! Tests of the KRPC codec (BEP 5, with BEP 32 `nodes6`): the BEP examples, round trips of both
//! address families, malformed messages, and bounds on node lists.

use super::*;

fn id(s: &[u8; 20]) -> NodeId {
    NodeId(*s)
}

/// Every literal example of BEP 5, decoded and re-encoded byte for byte.
#[test]
fn bep5_examples_round_trip() {
    let cases: Vec<(&[u8], Message)> = vec![
        (
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
            query(b"aa", Method::Ping),
        ),
        (
            b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
            response(
                b"aa",
                Response {
                    id: id(b"mnopqrstuvwxyz123456"),
                    ..Response::default()
                },
            ),
        ),
        (
            b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe",
            query(
                b"aa",
                Method::FindNode {
                    target: id(b"mnopqrstuvwxyz123456"),
                },
            ),
        ),
        (
            b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe",
            query(
                b"aa",
                Method::GetPeers {
                    info_hash: InfoHash(*b"mnopqrstuvwxyz123456"),
                },
            ),
        ),
        (
            b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re",
            response(
                b"aa",
                Response {
                    id: id(b"abcdefghij0123456789"),
                    token: Some(b"aoeusnth".to_vec()),
                    values: vec![
                        crate::compact::decode(b"axje.u").unwrap(),
                        crate::compact::decode(b"idhtnm").unwrap(),
                    ],
                    ..Response::default()
                },
            ),
        ),
        (
            b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
            query(
                b"aa",
                Method::AnnouncePeer {
                    info_hash: InfoHash(*b"mnopqrstuvwxyz123456"),
                    port: 6881,
                    implied_port: true,
                    token: b"aoeusnth".to_vec(),
                },
            ),
        ),
        (
            b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee",
            Message {
                transaction: b"aa".to_vec(),
                version: None,
                ip: None,
                read_only: false,
                body: Body::Error {
                    code: 201,
                    message: "A Generic Error Ocurred".into(),
                },
            },
        ),
    ];
    for (bytes, expected) in cases {
        let got = Message::decode(bytes).unwrap();
        assert_eq!(got, expected, "{}", String::from_utf8_lossy(bytes));
        assert_eq!(got.encode(), bytes);
    }
}

fn query(t: &[u8], method: Method) -> Message {
    Message {
        transaction: t.to_vec(),
        version: None,
        ip: None,
        read_only: false,
        body: Body::Query(Query {
            id: id(b"abcdefghij0123456789"),
            method,
        }),
    }
}

fn response(t: &[u8], r: Response) -> Message {
    Message {
        transaction: t.to_vec(),
        version: None,
        ip: None,
        read_only: false,
        body: Body::Response(r),
    }
}

#[test]
fn nodes_round_trip_both_families() {
    let n4 = CompactNode {
        id: id(b"01234567890123456789"),
        addr: "1.2.3.4:6881".parse().unwrap(),
    };
    let n6 = CompactNode {
        id: id(b"abcdefghijabcdefghij"),
        addr: "[2001:db8::1]:51413".parse().unwrap(),
    };
    let mut m = response(
        b"xy",
        Response {
            id: id(b"mnopqrstuvwxyz123456"),
            nodes: vec![n4, n4],
            nodes6: vec![n6],
            values: vec!["[2001:db8::2]:1".parse().unwrap()],
            token: Some(vec![1, 2, 3]),
        },
    );
    m.version = Some(b"SW\x00\x01".to_vec());
    m.ip = Some("5.6.7.8:9".parse().unwrap());
    m.read_only = true;
    let bytes = m.encode();
    assert_eq!(Message::decode(&bytes).unwrap(), m);
}

#[test]
fn malformed_messages_are_rejected() {
    let bad: &[&[u8]] = &[
        b"",
        b"garbage",
        b"le",
        b"d1:t2:aae",
        b"d1:t2:aa1:y1:xe",
        b"d1:t0:1:y1:qe",
        // id of 19 bytes
        b"d1:ad2:id19:abcdefghij012345678e1:q4:ping1:t2:aa1:y1:qe",
        // id is an integer
        b"d1:ad2:idi5ee1:q4:ping1:t2:aa1:y1:qe",
        // a is a list
        b"d1:ali1ee1:q4:ping1:t2:aa1:y1:qe",
        // missing target
        b"d1:ad2:id20:abcdefghij0123456789e1:q9:find_node1:t2:aa1:y1:qe",
        // port out of range
        b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti70000e5:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe",
        // truncated compact node info (25 bytes)
        b"d1:rd2:id20:mnopqrstuvwxyz1234565:nodes25:0123456789012345678901234e1:t2:aa1:y1:re",
        // a value of 5 bytes
        b"d1:rd2:id20:mnopqrstuvwxyz1234566:valuesl5:abcdeee1:t2:aa1:y1:re",
        // values not a list
        b"d1:rd2:id20:mnopqrstuvwxyz1234566:values6:abcdefe1:t2:aa1:y1:re",
        // error without list
        b"d1:ei201e1:t2:aa1:y1:ee",
        // truncated bencode
        b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:r",
    ];
    for b in bad {
        assert!(
            Message::decode(b).is_err(),
            "{}",
            String::from_utf8_lossy(b)
        );
    }
    assert!(matches!(
        Message::decode(&vec![b'x'; MAX_PACKET + 1]),
        Err(KrpcError::TooLarge(_))
    ));
}

#[test]
fn huge_node_lists_are_truncated() {
    // 300 nodes in one response (7,800 bytes of compact info): decoded, but only MAX_NODES kept.
    let mut compact = Vec::new();
    for i in 0..300u32 {
        compact.extend_from_slice(&[i as u8; 20]);
        compact.extend_from_slice(&[10, 0, (i >> 8) as u8, i as u8, 0x1a, 0xe1]);
    }
    let mut packet = b"d1:rd2:id20:mnopqrstuvwxyz1234565:nodes".to_vec();
    packet.extend_from_slice(format!("{}:", compact.len()).as_bytes());
    packet.extend_from_slice(&compact);
    packet.extend_from_slice(b"e1:t2:aa1:y1:re");
    let m = Message::decode(&packet).unwrap();
    let Body::Response(r) = m.body else {
        panic!("not a response")
    };
    assert_eq!(r.nodes.len(), MAX_NODES);
    // 10,000 peers do not fit a packet at all.
    let mut packet = b"d1:rd2:id20:mnopqrstuvwxyz1234566:valuesl".to_vec();
    for _ in 0..10_000 {
        packet.extend_from_slice(b"6:abcdef");
    }
    packet.extend_from_slice(b"ee1:t2:aa1:y1:re");
    assert!(matches!(
        Message::decode(&packet),
        Err(KrpcError::TooLarge(_))
    ));
}

#[test]
fn unknown_keys_and_methods() {
    let m = Message::decode(
        b"d1:ad2:id20:abcdefghij01234567894:wantl2:n4e3:zzzi1ee1:q4:vote1:t2:aa1:v4:LT\x01\x001:y1:qe",
    )
    .unwrap();
    let Body::Query(q) = m.body else {
        panic!("not a query")
    };
    assert_eq!(q.method, Method::Unknown(b"vote".to_vec()));
    assert_eq!(m.version.as_deref(), Some(&b"LT\x01\x00"[..]));
}
