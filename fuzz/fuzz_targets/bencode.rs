//! Fuzz target for the bencode decoder and encoder: no input may panic, and every accepted input must be
//! canonical, so decoding and re-encoding gives back the same bytes. The lenient decoder must agree with
//! the strict one wherever the strict one succeeds.
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
    // The lenient decoder accepts everything `decode` does, with the same result; whatever else it accepts
    // (unsorted keys) re-encodes, keys sorted, to something the strict decoder takes.
    match (bencode::decode(data), bencode::decode_lenient(data)) {
        (Ok(strict), lenient) => assert_eq!(lenient, Ok(strict)),
        (Err(_), Ok(value)) => {
            assert_eq!(value.raw(), data);
            let owned = value.to_owned_value();
            let sorted = bencode::encode(&owned);
            let again = bencode::decode(&sorted).expect("a sorted re-encoding decodes");
            assert_eq!(again.to_owned_value(), owned);
        }
        (Err(_), Err(error)) => assert!(error.offset <= data.len()),
    }
});
