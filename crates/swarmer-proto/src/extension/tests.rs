//! Tests of the extension message codecs: the BEP 10 handshake, BEP 9 `ut_metadata` messages and
//! piece arithmetic, and BEP 11 `ut_pex`, on the BEP examples and on malformed input.

use super::*;

#[test]
fn handshake_bep10_example_and_round_trip() {
    // The example of BEP 10, with `yourip` and the BEP 9 size added.
    let payload = b"d1:md11:LT_metadatai1e7:\xc2\xb5T_PEXi2ee1:pi6881e1:v13:\xc2\xb5Torrent 1.2e";
    let h = ExtensionHandshake::decode(payload).unwrap();
    assert_eq!(
        h.messages,
        vec![("LT_metadata".to_owned(), 1), ("µT_PEX".to_owned(), 2)]
    );
    assert_eq!(h.listen_port, Some(6881));
    assert_eq!(h.client.as_deref(), Some("µTorrent 1.2"));
    assert_eq!(h.id_of("µT_PEX"), Some(2));
    assert_eq!(h.id_of(UT_PEX), None);

    let full = ExtensionHandshake {
        messages: vec![(UT_METADATA.into(), 3), (UT_PEX.into(), 1)],
        listen_port: Some(6881),
        client: Some("swarmer 0.1".into()),
        your_ip: Some(IpAddr::from([127, 0, 0, 2])),
        reqq: Some(250),
        metadata_size: Some(31_235),
        upload_only: true,
    };
    assert_eq!(ExtensionHandshake::decode(&full.encode()).unwrap(), full);
    let v6 = ExtensionHandshake {
        your_ip: Some("::1".parse().unwrap()),
        ..ExtensionHandshake::default()
    };
    assert_eq!(ExtensionHandshake::decode(&v6.encode()).unwrap(), v6);
}

#[test]
fn handshake_is_lenient_on_optional_keys() {
    let h = ExtensionHandshake::decode(
        b"d1:md11:ut_metadatai3e6:ut_pexi0e1:xi300e1:y3:abce13:metadata_sizei-1e1:p\
          i70000e4:reqqi0e1:vi5e6:yourip3:abc11:upload_only3:yese",
    )
    .unwrap();
    // Unsorted top-level keys are fine too.
    assert_eq!(
        h,
        ExtensionHandshake {
            messages: vec![("ut_metadata".into(), 3), ("ut_pex".into(), 0)],
            ..ExtensionHandshake::default()
        }
    );
    assert_eq!(h.id_of(UT_PEX), None, "id 0 means not supported");
    assert_eq!(h.id_of(UT_METADATA), Some(3));
    let unsorted = ExtensionHandshake::decode(b"d4:reqqi9e11:upload_onlyi1e1:md1:xi1eee");
    assert_eq!(unsorted.as_ref().unwrap().reqq, Some(9));
    assert!(unsorted.unwrap().upload_only);
    assert_eq!(
        ExtensionHandshake::decode(b"d1:m3:abce").unwrap(),
        ExtensionHandshake::default()
    );
    // Too large a metadata size is not believed.
    let huge = format!("d13:metadata_sizei{}ee", u64::from(MAX_METADATA_SIZE) + 1);
    assert_eq!(
        ExtensionHandshake::decode(huge.as_bytes())
            .unwrap()
            .metadata_size,
        None
    );
}

#[test]
fn handshake_bounds_what_it_keeps() {
    let mut m = String::new();
    for i in 0..500 {
        m.push_str(&format!("{}:x{i:05}i1e", 6));
    }
    let name = "é".repeat(200);
    let payload = format!("d1:md{m}e1:v{}:{name}e", name.len());
    let h = ExtensionHandshake::decode(payload.as_bytes()).unwrap();
    assert_eq!(h.messages.len(), MAX_HANDSHAKE_MESSAGES);
    let client = h.client.unwrap();
    assert!(client.len() <= MAX_CLIENT_NAME && client.len() >= MAX_CLIENT_NAME - 1);
}

#[test]
fn handshake_rejects_what_is_not_a_dict() {
    for bad in [&b"garbage"[..], b"", b"li1ee", b"i5e", b"d1:m"] {
        assert!(ExtensionHandshake::decode(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        ExtensionHandshake::decode(b"le"),
        Err(ExtensionError::NotADict)
    );
}

fn encoded(m: MetadataMessage<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out);
    out
}

#[test]
fn metadata_bep9_examples() {
    // The three examples of BEP 9.
    assert_eq!(
        MetadataMessage::decode(b"d8:msg_typei0e5:piecei0ee"),
        Ok(MetadataMessage::Request { piece: 0 })
    );
    let mut data = b"d8:msg_typei1e5:piecei0e10:total_sizei34256ee".to_vec();
    data.extend(std::iter::repeat_n(b'x', 16384));
    assert_eq!(
        MetadataMessage::decode(&data),
        Ok(MetadataMessage::Data {
            piece: 0,
            total_size: 34256,
            data: &[b'x'; 16384]
        })
    );
    assert_eq!(
        MetadataMessage::decode(b"d8:msg_typei2e5:piecei0ee"),
        Ok(MetadataMessage::Reject { piece: 0 })
    );
    assert_eq!(
        encoded(MetadataMessage::Request { piece: 0 }),
        b"d8:msg_typei0e5:piecei0ee"
    );
    assert_eq!(encoded(MetadataMessage::decode(&data).unwrap()), data);
    // The last piece is what is left.
    let last = MetadataMessage::Data {
        piece: 2,
        total_size: 34256,
        data: &[7; 34256 - 32768],
    };
    assert_eq!(MetadataMessage::decode(&encoded(last)), Ok(last));
    // Unsorted keys on a request.
    assert_eq!(
        MetadataMessage::decode(b"d5:piecei7e8:msg_typei2ee"),
        Ok(MetadataMessage::Reject { piece: 7 })
    );
}

#[test]
fn metadata_rejects_malformed_messages() {
    use ExtensionError as E;
    let data = |dict: &str, n: usize| {
        let mut v = dict.as_bytes().to_vec();
        v.extend(std::iter::repeat_n(0u8, n));
        v
    };
    let cases: Vec<(Vec<u8>, ExtensionError)> = vec![
        (b"le".to_vec(), E::NotADict),
        (b"d5:piecei0ee".to_vec(), E::MissingKey("msg_type")),
        (b"d8:msg_typei0ee".to_vec(), E::MissingKey("piece")),
        (
            b"d8:msg_type1:05:piecei0ee".to_vec(),
            E::BadValue("msg_type"),
        ),
        (b"d8:msg_typei0e5:piecei-1ee".to_vec(), E::BadValue("piece")),
        (
            b"d8:msg_typei0e5:piecei4294967296ee".to_vec(),
            E::BadValue("piece"),
        ),
        (b"d8:msg_typei9e5:piecei0ee".to_vec(), E::UnknownMsgType(9)),
        (b"d8:msg_typei0e5:piecei0eexx".to_vec(), E::TrailingBytes),
        (
            data("d8:msg_typei1e5:piecei0ee", 10),
            E::MissingKey("total_size"),
        ),
        (
            data("d8:msg_typei1e5:piecei0e10:total_sizei0ee", 0),
            E::BadValue("total_size"),
        ),
        (
            data("d8:msg_typei1e5:piecei0e10:total_sizei99999999999ee", 0),
            E::BadValue("total_size"),
        ),
        (
            data("d8:msg_typei1e5:piecei2e10:total_sizei32768ee", 0),
            E::PieceOutOfRange {
                piece: 2,
                total_size: 32768,
            },
        ),
        (
            data("d8:msg_typei1e5:piecei0e10:total_sizei100ee", 99),
            E::DataLength {
                piece: 0,
                expected: 100,
                got: 99,
            },
        ),
        (
            data("d8:msg_typei1e5:piecei0e10:total_sizei20000ee", 16385),
            E::DataLength {
                piece: 0,
                expected: 16384,
                got: 16385,
            },
        ),
    ];
    for (payload, expected) in cases {
        assert_eq!(
            MetadataMessage::decode(&payload),
            Err(expected),
            "{:?}",
            String::from_utf8_lossy(&payload)
        );
    }
    for bad in [&b""[..], b"garbage", b"d8:msg_typei0e"] {
        assert!(matches!(MetadataMessage::decode(bad), Err(E::Bencode(_))));
    }
}

#[test]
fn metadata_piece_arithmetic() {
    assert_eq!(metadata_piece_count(1), 1);
    assert_eq!(metadata_piece_count(16384), 1);
    assert_eq!(metadata_piece_count(16385), 2);
    assert_eq!(metadata_piece_len(1, 16385), Some(1));
    assert_eq!(metadata_piece_len(1, 16384), None);
    assert_eq!(metadata_piece_len(u32::MAX, MAX_METADATA_SIZE), None);
}

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((a, port))
}

#[test]
fn pex_round_trip_and_bep11_shapes() {
    let v6: SocketAddr = "[2001:db8::1]:51413".parse().unwrap();
    let m = PexMessage {
        added: vec![
            (v4([10, 0, 0, 1], 6881), PexFlags(PexFlags::REACHABLE)),
            (v4([10, 0, 0, 2], 6882), PexFlags(PexFlags::SEED)),
            (v6, PexFlags(PexFlags::UTP | PexFlags::ENCRYPTION)),
        ],
        dropped: vec![v4([10, 0, 0, 3], 1), v6],
    };
    let bytes = m.encode();
    assert_eq!(PexMessage::decode(&bytes), Ok(m));
    let v4_only = PexMessage {
        added: vec![(v4([1, 2, 3, 4], 0x1ae1), PexFlags(0))],
        dropped: vec![],
    };
    assert_eq!(
        v4_only.encode(),
        b"d5:added6:\x01\x02\x03\x04\x1a\xe17:added.f1:\x007:dropped0:e"
    );
    // An empty message, missing keys and missing flags.
    assert_eq!(PexMessage::decode(b"de"), Ok(PexMessage::default()));
    assert_eq!(
        PexMessage::decode(
            b"d5:added12:\x01\x02\x03\x04\x1a\xe1\x05\x06\x07\x08\x00\x507:added.f1:\x02e"
        ),
        Ok(PexMessage {
            added: vec![
                (v4([1, 2, 3, 4], 0x1ae1), PexFlags(2)),
                (v4([5, 6, 7, 8], 80), PexFlags(0))
            ],
            dropped: vec![],
        })
    );
}

#[test]
fn pex_rejects_malformed_and_bounds_lists() {
    use ExtensionError as E;
    assert_eq!(
        PexMessage::decode(b"d5:added5:abcdee"),
        Err(E::CompactLength {
            key: "added",
            len: 5
        })
    );
    assert_eq!(
        PexMessage::decode(b"d8:dropped66:abcdefe"),
        Err(E::CompactLength {
            key: "dropped6",
            len: 6
        })
    );
    assert_eq!(
        PexMessage::decode(b"d5:addedi5ee"),
        Err(E::BadValue("added"))
    );
    assert_eq!(PexMessage::decode(b"l5:addede"), Err(E::NotADict));
    assert!(matches!(PexMessage::decode(b"\xff"), Err(E::Bencode(_))));

    // Port 0, unspecified, multicast and broadcast entries are skipped.
    let mut added = Vec::new();
    for (ip, port) in [
        ([0, 0, 0, 0], 80),
        ([1, 1, 1, 1], 0),
        ([224, 0, 0, 1], 80),
        ([255, 255, 255, 255], 80),
        ([10, 1, 1, 1], 80),
    ] {
        crate::compact::encode_into(&mut added, &v4(ip, port));
    }
    let mut payload = format!("d5:added{}:", added.len()).into_bytes();
    payload.extend(&added);
    payload.push(b'e');
    assert_eq!(
        PexMessage::decode(&payload).unwrap().added,
        vec![(v4([10, 1, 1, 1], 80), PexFlags(0))]
    );

    // A huge list keeps MAX_PEX_PEERS entries of each.
    let many = PexMessage {
        added: (0..1000u32)
            .map(|i| (v4([10, 0, (i >> 8) as u8, i as u8], 1000), PexFlags(0)))
            .collect(),
        dropped: (0..1000u32)
            .map(|i| v4([10, 1, (i >> 8) as u8, i as u8], 1000))
            .collect(),
    };
    let decoded = PexMessage::decode(&many.encode()).unwrap();
    assert_eq!(decoded.added[..], many.added[..MAX_PEX_PEERS]);
    assert_eq!(decoded.dropped[..], many.dropped[..MAX_PEX_PEERS]);
}
