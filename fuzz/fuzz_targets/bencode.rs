//! Fuzz target for the bencode decoder and encoder: no input may panic, and every accepted input must be
//! canonical, so decoding and re-encoding gives back the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmer_proto::bencode;

fuzz_target!(|data: &[u8]| {
    match bencode::decode_prefix(data) {
        Ok((value, used)) => {
            assert_eq!(value.raw(), &data[..used]);
            let owned = value.to_owned_value();
            let encoded = bencode::encode(&owned);
            // The decoder accepts only canonical encodings, so the round trip is byte-exact.
            assert_eq!(encoded, value.raw());
            let again = bencode::decode(&encoded).expect("a re-encoded value decodes");
            assert_eq!(again.to_owned_value(), owned);
            // `decode` agrees with `decode_prefix` about trailing bytes.
            assert_eq!(bencode::decode(data).is_ok(), used == data.len());
        }
        Err(error) => {
            assert!(error.offset <= data.len());
            assert!(bencode::decode(data).is_err());
        }
    }
});
