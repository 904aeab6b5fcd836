//! Fuzzes the peer wire codec (`swarmer_proto::wire`): the handshake and a stream of length-prefixed
//! messages decoded from arbitrary bytes must never panic, and every decoded value must re-encode to
//! exactly the bytes it was decoded from (decoding is canonical: one encoding per message).
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmer_proto::wire::{HANDSHAKE_LEN, Handshake, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(handshake)) = Handshake::decode(data) {
        assert_eq!(handshake.encode()[..], data[..HANDSHAKE_LEN]);
    }

    // The first byte picks the length limit, so that both the "too long" path and complete messages
    // of every id are reached; the rest is the stream.
    let Some((&limit, mut rest)) = data.split_first() else {
        return;
    };
    let max_len = u32::from(limit) * 4;
    let mut reencoded = Vec::new();
    loop {
        match Message::decode(rest, max_len) {
            Ok(Some((msg, used))) => {
                assert!(used >= 4 && used <= rest.len());
                assert_eq!(msg.encoded_len(), used);
                reencoded.clear();
                msg.encode(&mut reencoded);
                assert_eq!(reencoded[..], rest[..used]);
                // A message must not decode differently when more bytes follow it.
                let (again, used_again) = Message::decode(&rest[..used], max_len)
                    .expect("a prefix that decoded once decodes again")
                    .expect("a whole message is not 'need more bytes'");
                assert_eq!((again, used_again), (msg, used));
                rest = &rest[used..];
            }
            Ok(None) | Err(_) => break,
        }
    }
});
