//! Tests of the peer wire codec: round trips and known encodings of every BEP 3, BEP 5, BEP 6 and
//! BEP 10 message, split streams, length limits, the handshake, and random bytes.

use super::*;
use rand::{Rng, SeedableRng, rngs::SmallRng};

const MAX: u32 = 1 << 16;

fn sample_messages() -> Vec<Message<'static>> {
    let r = BlockRequest {
        index: 7,
        begin: 16384,
        length: 16384,
    };
    vec![
        Message::KeepAlive,
        Message::Choke,
        Message::Unchoke,
        Message::Interested,
        Message::NotInterested,
        Message::Have(0xdead_beef),
        Message::Bitfield(&[0xff, 0x80]),
        Message::Bitfield(&[]),
        Message::Request(r),
        Message::Piece {
            index: 3,
            begin: 0,
            data: b"some block bytes",
        },
        Message::Piece {
            index: 3,
            begin: 1,
            data: &[],
        },
        Message::Cancel(r),
        Message::Port(6881),
        Message::Suggest(9),
        Message::HaveAll,
        Message::HaveNone,
        Message::Reject(r),
        Message::AllowedFast(u32::MAX),
        Message::Extended {
            id: 0,
            payload: b"d1:md11:ut_metadatai3eee",
        },
        Message::Extended {
            id: 3,
            payload: &[],
        },
        Message::Unknown {
            id: 200,
            payload: b"xyz",
        },
        Message::Unknown {
            id: 10,
            payload: &[],
        },
    ]
}

fn encode_all(msgs: &[Message<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        m.encode(&mut out);
    }
    out
}

#[test]
fn every_variant_round_trips() {
    for m in sample_messages() {
        let mut buf = Vec::new();
        m.encode(&mut buf);
        assert_eq!(buf.len(), m.encoded_len(), "{m:?}");
        // Trailing bytes of the next message are left alone.
        buf.extend_from_slice(&[0, 0]);
        let (decoded, used) = Message::decode(&buf, MAX).unwrap().unwrap();
        assert_eq!(decoded, m);
        assert_eq!(used, m.encoded_len());
    }
}

/// The connection cuts frames with `frame_len` and the owner decodes their bodies: the same
/// messages as `Message::decode`, and a frame's length is known from its prefix alone.
#[test]
fn frames_cut_then_decoded_match_decode() {
    let msgs = sample_messages();
    let stream = encode_all(&msgs);
    let mut at = 0;
    let mut decoded = Vec::new();
    while let Some(end) = frame_len(&stream[at..], MAX).unwrap() {
        let frame = &stream[at..at + end];
        for short in 0..LENGTH_PREFIX_LEN {
            assert_eq!(frame_len(&frame[..short], MAX), Ok(None));
        }
        assert_eq!(frame_len(&frame[..LENGTH_PREFIX_LEN], MAX), Ok(Some(end)));
        decoded.push(Message::decode_frame(&frame[LENGTH_PREFIX_LEN..]).unwrap());
        at += end;
    }
    assert_eq!(at, stream.len());
    assert_eq!(decoded, msgs);
    assert_eq!(
        frame_len(&[0, 1, 0, 0], 1 << 15),
        Err(WireError::MessageTooLong {
            len: 1 << 16,
            max: 1 << 15
        })
    );
    assert_eq!(Message::decode_frame(&[]), Ok(Message::KeepAlive));
    assert_eq!(
        Message::decode_frame(&[4, 0, 0]),
        Err(WireError::BadLength { id: 4, len: 3 })
    );
}

#[test]
fn known_encodings() {
    let mut buf = Vec::new();
    Message::Have(1).encode(&mut buf);
    assert_eq!(buf, [0, 0, 0, 5, 4, 0, 0, 0, 1]);
    buf.clear();
    Message::Port(0x1ae1).encode(&mut buf);
    assert_eq!(buf, [0, 0, 0, 3, 9, 0x1a, 0xe1]);
    buf.clear();
    Message::KeepAlive.encode(&mut buf);
    assert_eq!(buf, [0, 0, 0, 0]);
}

/// Decodes a stream delivered in `chunks`, as a connection would: append, decode all whole
/// messages from the front, keep the rest.
fn decode_chunked(chunks: &[&[u8]]) -> Vec<(Vec<u8>, usize)> {
    let mut pending = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        let mut start = 0;
        while let Some((msg, used)) = Message::decode(&pending[start..], MAX).unwrap() {
            let mut re = Vec::new();
            msg.encode(&mut re);
            out.push((re, used));
            start += used;
        }
        pending.drain(..start);
    }
    assert!(pending.is_empty(), "{} bytes left over", pending.len());
    out
}

#[test]
fn any_split_of_a_stream_decodes_the_same() {
    let msgs = sample_messages();
    let stream = encode_all(&msgs);
    let expected: Vec<(Vec<u8>, usize)> = msgs
        .iter()
        .map(|m| (encode_all(&[*m]), m.encoded_len()))
        .collect();
    assert_eq!(decode_chunked(&[&stream]), expected);
    for split in 0..=stream.len() {
        let (a, b) = stream.split_at(split);
        assert_eq!(decode_chunked(&[a, b]), expected, "split at {split}");
    }
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    for _ in 0..500 {
        let mut chunks = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = rng.gen_range(0..=rest.len().min(20));
            let (a, b) = rest.split_at(n);
            chunks.push(a);
            rest = b;
        }
        assert_eq!(decode_chunked(&chunks), expected);
    }
}

#[test]
fn huge_length_prefix_fails_from_four_bytes() {
    assert_eq!(Message::decode(&[0xff, 0xff, 0xff], MAX), Ok(None));
    assert_eq!(
        Message::decode(&[0xff, 0xff, 0xff, 0xff], MAX),
        Err(WireError::MessageTooLong {
            len: u32::MAX,
            max: MAX
        })
    );
    // Exactly the limit is fine: it waits for the body.
    assert_eq!(Message::decode(&MAX.to_be_bytes(), MAX), Ok(None));
    assert!(Message::decode(&(MAX + 1).to_be_bytes(), MAX).is_err());
    // Even a limit of u32::MAX never overflows.
    assert_eq!(Message::decode(&[0xff; 10], u32::MAX), Ok(None));
}

#[test]
fn fixed_lengths_are_enforced() {
    // (id, payload lengths that are wrong)
    let cases: &[(u8, &[usize])] = &[
        (CHOKE, &[1]),
        (UNCHOKE, &[2]),
        (INTERESTED, &[4]),
        (NOT_INTERESTED, &[1]),
        (HAVE, &[0, 3, 5]),
        (REQUEST, &[0, 12 - 1, 12 + 1]),
        (PIECE, &[0, 7]),
        (CANCEL, &[11, 13]),
        (PORT, &[1, 3]),
        (SUGGEST, &[3]),
        (HAVE_ALL, &[1]),
        (HAVE_NONE, &[1]),
        (REJECT, &[0]),
        (ALLOWED_FAST, &[5]),
        (EXTENDED, &[0]),
    ];
    for &(id, lens) in cases {
        for &n in lens {
            let len = 1 + n as u32;
            let mut buf = len.to_be_bytes().to_vec();
            buf.push(id);
            buf.resize(4 + len as usize, 0);
            assert_eq!(
                Message::decode(&buf, MAX),
                Err(WireError::BadLength { id, len }),
                "id {id} payload {n}"
            );
        }
    }
}

#[test]
fn piece_header_matches_encoded_piece() {
    let data = [0xab; 100];
    let mut full = Vec::new();
    Message::Piece {
        index: 5,
        begin: 16384,
        data: &data,
    }
    .encode(&mut full);
    let mut header = [0u8; PIECE_HEADER_LEN];
    encode_piece_header(5, 16384, 100, &mut header);
    assert_eq!(&full[..PIECE_HEADER_LEN], &header);
    assert_eq!(&full[PIECE_HEADER_LEN..], &data);
}

fn handshake() -> Handshake {
    Handshake {
        reserved: reserved_bytes(true, true, true),
        info_hash: InfoHash([0x11; 20]),
        peer_id: PeerId(*b"-SW0100-abcdefghijkl"),
    }
}

#[test]
fn handshake_round_trips_and_waits_for_68_bytes() {
    let h = handshake();
    let bytes = h.encode();
    assert_eq!(bytes[0], 19);
    assert_eq!(&bytes[1..20], PROTOCOL);
    for n in 0..HANDSHAKE_LEN {
        assert_eq!(Handshake::decode(&bytes[..n]), Ok(None), "{n} bytes");
    }
    assert_eq!(Handshake::decode(&bytes), Ok(Some(h)));
    let mut longer = bytes.to_vec();
    longer.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(Handshake::decode(&longer), Ok(Some(h)));
    assert!(h.supports_fast() && h.supports_extensions() && h.supports_dht());
    let plain = Handshake {
        reserved: [0; 8],
        ..h
    };
    assert!(!plain.supports_fast() && !plain.supports_extensions() && !plain.supports_dht());
    assert_eq!(reserved_bytes(false, true, false), RESERVED_FAST);
    assert_eq!(reserved_bytes(false, false, true), RESERVED_EXTENSIONS);
}

#[test]
fn bad_handshake_fails_early() {
    // An HTTP request: wrong from its first byte.
    assert_eq!(Handshake::decode(b"G"), Err(WireError::BadProtocol));
    // Right length byte, wrong protocol string: fails at the first differing byte.
    assert_eq!(Handshake::decode(b"\x13Bit"), Ok(None));
    assert_eq!(Handshake::decode(b"\x13Bix"), Err(WireError::BadProtocol));
    let mut bytes = handshake().encode();
    bytes[19] = b'X';
    assert_eq!(Handshake::decode(&bytes[..19]), Ok(None));
    assert_eq!(Handshake::decode(&bytes[..20]), Err(WireError::BadProtocol));
    assert_eq!(Handshake::decode(&bytes), Err(WireError::BadProtocol));
}

#[test]
fn random_bytes_never_panic_and_reencode_exactly() {
    let mut rng = SmallRng::seed_from_u64(7);
    for _ in 0..2000 {
        let n = rng.gen_range(0..64);
        let mut bytes: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
        // Keep length prefixes small so messages are often complete.
        if let Some(b) = bytes.first_mut() {
            *b = 0;
        }
        let _ = Handshake::decode(&bytes);
        let mut rest = &bytes[..];
        while let Ok(Some((msg, used))) = Message::decode(rest, 64) {
            let mut re = Vec::new();
            msg.encode(&mut re);
            assert_eq!(re, rest[..used]);
            rest = &rest[used..];
        }
    }
}
