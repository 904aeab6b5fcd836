//! Tests of the BEP 52 hash messages: the codec (round trips, every split bound), serving a piece
//! layer with its proof, and checking replies against the pieces root, forged ones refused.

use super::*;
use crate::metainfo::Metainfo;

const V2: &[u8] = include_bytes!("../../../../testdata/libtorrent-v2.torrent");

fn request(root: Hash256) -> HashRequest {
    HashRequest {
        pieces_root: root,
        base_layer: 1,
        index: 0,
        length: 4,
        proof_layers: 0,
    }
}

#[test]
fn messages_round_trip_and_bad_ones_are_refused() {
    let r = request([9; 32]);
    let messages = [
        HashMessage::Request(r),
        HashMessage::Reject(r),
        HashMessage::Hashes {
            request: HashRequest {
                proof_layers: 2,
                ..r
            },
            hashes: vec![[1; 32]; 6],
        },
    ];
    for m in messages {
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(HashMessage::decode(out[0], &out[1..]), Ok(m.clone()));
        for cut in 0..out.len() - 1 {
            // A reply cut after whole uncles is a shorter proof, still well formed.
            let whole_proof = cut >= 48 + 4 * 32 && (cut - 48) % 32 == 0;
            if !whole_proof {
                assert!(
                    HashMessage::decode(out[0], &out[1..1 + cut]).is_err(),
                    "{cut}"
                );
            }
        }
    }
    let mut out = Vec::new();
    HashMessage::Request(HashRequest { length: 3, ..r }).encode(&mut out);
    assert_eq!(
        HashMessage::decode(21, &out[1..]),
        Err(HashMessageError::OutOfRange)
    );
    out.clear();
    HashMessage::Request(HashRequest { index: 2, ..r }).encode(&mut out);
    assert_eq!(
        HashMessage::decode(21, &out[1..]),
        Err(HashMessageError::OutOfRange)
    );
    out.clear();
    HashMessage::Request(HashRequest { length: 16384, ..r }).encode(&mut out);
    assert_eq!(
        HashMessage::decode(21, &out[1..]),
        Err(HashMessageError::OutOfRange)
    );
    out.clear();
    let too_many = HashMessage::Hashes {
        request: r,
        hashes: vec![[1; 32]; 5],
    };
    too_many.encode(&mut out);
    assert_eq!(
        HashMessage::decode(22, &out[1..]),
        Err(HashMessageError::WrongCount { got: 5, length: 4 })
    );
    assert_eq!(
        HashMessage::decode(7, &[]),
        Err(HashMessageError::NotAHashMessage(7))
    );
}

#[test]
fn a_served_layer_verifies_against_the_root_and_a_forged_one_does_not() {
    let m = Metainfo::from_bytes(V2).unwrap();
    let v2 = m.info.v2.as_ref().unwrap();
    let piece_length = m.info.piece_length;
    for file in v2.files.iter().filter(|f| f.piece_count > 1) {
        let layer = file.layer.as_ref().unwrap();
        for request in layer_requests(file, piece_length) {
            let hashes = serve(file, &request, piece_length).unwrap();
            let proven = verify(&file.pieces_root, file.piece_count, &request, &hashes).unwrap();
            let start = request.index as usize;
            for (i, hash) in proven.iter().enumerate() {
                if let Some(real) = layer.get(start + i) {
                    assert_eq!(hash, real);
                }
            }
            // Through the wire and back.
            let mut out = Vec::new();
            HashMessage::Hashes {
                request,
                hashes: hashes.clone(),
            }
            .encode(&mut out);
            let HashMessage::Hashes { hashes: got, .. } =
                HashMessage::decode(out[0], &out[1..]).unwrap()
            else {
                panic!("not hashes");
            };
            assert_eq!(got, hashes);
            // A changed hash, a missing uncle, another root: refused.
            let mut forged = hashes.clone();
            forged[0][0] ^= 1;
            assert_eq!(
                verify(&file.pieces_root, file.piece_count, &request, &forged),
                None
            );
            assert_eq!(
                verify(
                    &file.pieces_root,
                    file.piece_count,
                    &request,
                    &hashes[..hashes.len() - 1]
                )
                .filter(|_| request.proof_layers > 0),
                None
            );
            assert_eq!(verify(&[0; 32], file.piece_count, &request, &hashes), None);
        }
        // Smaller requests with proofs up to the root verify too.
        let width = file.piece_count.next_power_of_two();
        for index in 0..width {
            let request = HashRequest {
                pieces_root: file.pieces_root,
                base_layer: piece_layer(piece_length),
                index,
                length: 1,
                proof_layers: width.trailing_zeros(),
            };
            let hashes = serve(file, &request, piece_length).unwrap();
            assert!(verify(&file.pieces_root, file.piece_count, &request, &hashes).is_some());
        }
    }
    // Other layers and unknown roots are rejected.
    let file = v2.files.iter().find(|f| f.piece_count > 1).unwrap();
    let mut other = layer_requests(file, piece_length)[0];
    other.base_layer = 0;
    assert_eq!(serve(file, &other, piece_length), None);
    other.base_layer = piece_layer(piece_length);
    other.pieces_root = [0; 32];
    assert_eq!(serve(file, &other, piece_length), None);
}

#[test]
fn a_running_torrent_answers_requests_and_ignores_the_rest() {
    let m = Metainfo::from_bytes(V2).unwrap();
    let v2 = m.info.v2.as_deref();
    let file = v2
        .unwrap()
        .files
        .iter()
        .find(|f| f.piece_count > 1)
        .unwrap();
    let request = layer_requests(file, m.info.piece_length)[0];
    let mut asked = Vec::new();
    HashMessage::Request(request).encode(&mut asked);
    let framed = answer(v2, m.info.piece_length, asked[0], &asked[1..])
        .unwrap()
        .unwrap();
    let len = u32::from_be_bytes(framed[..4].try_into().unwrap()) as usize;
    assert_eq!(len, framed.len() - 4);
    let HashMessage::Hashes { hashes, .. } = HashMessage::decode(framed[4], &framed[5..]).unwrap()
    else {
        panic!("expected hashes");
    };
    assert!(verify(&file.pieces_root, file.piece_count, &request, &hashes).is_some());
    // A v1 torrent, or an unknown root, gets a reject; replies are ignored; garbage is an error.
    let rejected = answer(None, m.info.piece_length, asked[0], &asked[1..])
        .unwrap()
        .unwrap();
    assert_eq!(rejected[4], HASH_REJECT);
    let mut reject = Vec::new();
    HashMessage::Reject(request).encode(&mut reject);
    assert_eq!(
        answer(v2, m.info.piece_length, reject[0], &reject[1..]),
        Ok(None)
    );
    assert!(answer(v2, m.info.piece_length, HASH_REQUEST, &[1, 2, 3]).is_err());
}
