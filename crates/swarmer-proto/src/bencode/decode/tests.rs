//! Tests of the bencode decoder: every value kind, key order and uniqueness (strict and lenient),
//! the depth limit without recursion, raw spans, split input and error offsets.

use super::super::{OwnedValue, encode};
use super::*;
use DecodeErrorKind::*;

/// Decodes `input` (which must be fully valid) and checks it re-encodes to itself.
fn ok(input: &[u8]) -> OwnedValue {
    let v = decode(input).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(input)));
    assert_eq!(v.raw(), input);
    let owned = v.to_owned_value();
    assert_eq!(encode(&owned), input);
    owned
}

/// Checks that `input` fails with `kind` at `offset`.
fn bad(input: &[u8], offset: usize, kind: DecodeErrorKind) {
    assert_eq!(
        decode(input).map(|v| v.to_owned_value()),
        Err(DecodeError { offset, kind }),
        "{:?}",
        String::from_utf8_lossy(input)
    );
}

#[test]
fn integers() {
    assert_eq!(ok(b"i0e"), OwnedValue::Int(0));
    assert_eq!(ok(b"i42e"), OwnedValue::Int(42));
    assert_eq!(ok(b"i-42e"), OwnedValue::Int(-42));
    assert_eq!(ok(b"i9223372036854775807e"), OwnedValue::Int(i64::MAX));
    assert_eq!(ok(b"i-9223372036854775808e"), OwnedValue::Int(i64::MIN));
    bad(b"i9223372036854775808e", 1, IntegerOverflow);
    bad(b"i-9223372036854775809e", 2, IntegerOverflow);
    bad(b"i99999999999999999999999999e", 1, IntegerOverflow);
    bad(b"ie", 1, InvalidInteger);
    bad(b"i-e", 2, InvalidInteger);
    bad(b"i--1e", 2, InvalidInteger);
    bad(b"i1-e", 2, InvalidInteger);
    bad(b"i+1e", 1, InvalidInteger);
    bad(b"i 1e", 1, InvalidInteger);
    bad(b"i03e", 1, LeadingZero);
    bad(b"i00e", 1, LeadingZero);
    bad(b"i-0e", 2, NegativeZero);
    bad(b"i-01e", 2, NegativeZero);
    bad(b"i1", 2, Incomplete);
    bad(b"i", 1, Incomplete);
}

#[test]
fn byte_strings() {
    assert_eq!(ok(b"0:"), OwnedValue::Bytes(vec![]));
    assert_eq!(ok(b"4:spam"), OwnedValue::from("spam"));
    assert_eq!(ok(b"3:\x00\xff:"), OwnedValue::Bytes(vec![0, 0xff, b':']));
    bad(b"03:abc", 0, LeadingZero);
    bad(b"00:", 0, LeadingZero);
    bad(b"5:abc", 5, Incomplete);
    bad(b"3x:abc", 1, InvalidLength);
    bad(b"3", 1, Incomplete);
    // A huge length is checked against the input, never allocated.
    bad(b"18446744073709551615:x", 22, Incomplete);
    bad(b"99999999999999999999999:x", 0, IntegerOverflow);
}

#[test]
fn lists_and_dicts() {
    assert_eq!(ok(b"le"), OwnedValue::List(vec![]));
    assert_eq!(ok(b"de"), OwnedValue::Dict(Default::default()));
    let v = ok(b"d3:cow3:moo4:spaml1:a1:bi-3eee");
    assert_eq!(
        v,
        OwnedValue::dict([
            ("cow", OwnedValue::from("moo")),
            (
                "spam",
                OwnedValue::list([
                    OwnedValue::from("a"),
                    OwnedValue::from("b"),
                    OwnedValue::Int(-3)
                ])
            ),
        ])
    );
    bad(b"l", 1, Incomplete);
    bad(b"li1e", 4, Incomplete);
    bad(b"d3:cow", 6, Incomplete);
    bad(b"d3:cowe", 6, UnexpectedByte(b'e'));
    bad(b"e", 0, UnexpectedByte(b'e'));
    bad(b"x", 0, UnexpectedByte(b'x'));
    bad(b"", 0, Incomplete);
    bad(b"i1ei2e", 3, TrailingBytes);
    bad(b"lee", 2, TrailingBytes);
}

#[test]
fn dict_keys_must_be_sorted_unique_strings() {
    bad(b"d1:bi1e1:ai2ee", 7, UnsortedKeys);
    bad(b"d1:ai1e1:ai2ee", 7, DuplicateKey);
    bad(b"di1ei2ee", 1, KeyNotString);
    bad(b"dlei2ee", 1, KeyNotString);
    // Byte order, not length order: "ab" < "b", and a prefix sorts first.
    ok(b"d2:abi1e1:bi2ee");
    ok(b"d1:ai1e2:abi2ee");
    bad(b"d2:abi1e1:ai2ee", 8, UnsortedKeys);
    // Keys are compared as raw bytes, not as text.
    ok(b"d1:\x7fi1e1:\x80i2ee");
}

/// Checks that [`decode_lenient`] rejects `input` with `kind` at `offset`.
fn bad_lenient(input: &[u8], offset: usize, kind: DecodeErrorKind) {
    assert_eq!(
        decode_lenient(input).map(|v| v.to_owned_value()),
        Err(DecodeError { offset, kind }),
        "{:?}",
        String::from_utf8_lossy(input)
    );
}

#[test]
fn lenient_accepts_unsorted_keys_and_sorts_them() {
    let input = b"d1:bi1e1:ad1:zi0e1:yl2:abi-2eee2:abi3ee";
    let v = decode_lenient(input).unwrap();
    assert_eq!(v.raw(), input);
    let dict = v.as_dict().unwrap();
    let keys: Vec<_> = dict.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![&b"a"[..], b"ab", b"b"]);
    assert_eq!(v.get(b"b").unwrap().as_int(), Some(1));
    assert_eq!(v.get(b"ab").unwrap().as_int(), Some(3));
    let inner = v.get(b"a").unwrap();
    assert_eq!(inner.raw(), b"d1:zi0e1:yl2:abi-2eee");
    assert_eq!(inner.get(b"z").unwrap().raw(), b"i0e");
    assert_eq!(inner.get(b"y").unwrap().raw(), b"l2:abi-2ee");
    assert!(v.get(b"c").is_none());
    // Re-encoding writes the keys sorted: the canonical form, which the strict decoder accepts.
    let canonical = encode(&v.to_owned_value());
    assert_eq!(canonical, b"d1:ad1:yl2:abi-2ee1:zi0ee2:abi3e1:bi1ee");
    assert_eq!(
        decode(&canonical).unwrap().to_owned_value(),
        v.to_owned_value()
    );
    // The strict decoder still refuses the original.
    bad(input, 7, UnsortedKeys);
}

#[test]
fn lenient_agrees_with_strict_on_canonical_input() {
    for input in [
        &b"d3:cow3:moo4:spaml1:a1:bi-3eee"[..],
        b"d4:infod6:lengthi5ee3:zzzl0:ee",
        b"d1:\x7fi1e1:\x80i2ee",
        b"lld0:lee0:i0eee",
        b"i-9223372036854775808e",
    ] {
        assert_eq!(decode_lenient(input), decode(input));
    }
}

#[test]
fn lenient_still_rejects_duplicate_keys() {
    // Adjacent: found at once, like the strict decoder.
    bad_lenient(b"d1:ai1e1:ai2ee", 7, DuplicateKey);
    // Not adjacent, in an unsorted dictionary: found when it ends, reported at the repeat.
    bad_lenient(b"d1:bi1e1:ai2e1:bi3ee", 13, DuplicateKey);
    bad_lenient(b"d1:ci0e1:bi0e1:ci0e1:bi0ee", 13, DuplicateKey);
    bad_lenient(b"ld1:bi1e1:ai2e1:bi3eee", 14, DuplicateKey);
}

#[test]
fn lenient_is_otherwise_strict() {
    for input in [
        &b""[..],
        b"i01e",
        b"i-0e",
        b"ie",
        b"i-e",
        b"i12",
        b"i9223372036854775808e",
        b"01:a",
        b"5:abc",
        b"l",
        b"d1:a",
        b"d1:ae",
        b"di1ei2ee",
        b"d1:bi1edlei2ee",
        b"e",
        b"i1ei2e",
        b"x",
        b"99999999999999999999999:a",
        b"18446744073709551615:x",
    ] {
        let strict = decode(input).unwrap_err();
        assert_eq!(
            decode_lenient(input),
            Err(strict),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // Unsorted keys do not lift any other rule.
    bad_lenient(b"d1:bi1e1:ai01ee", 11, LeadingZero);
    bad_lenient(b"d1:bi1e1:ai1ee1:x", 14, TrailingBytes);
    bad_lenient(b"d1:bi1e1:a", 10, Incomplete);
    bad_lenient(b"d1:bi1e1:ae", 10, UnexpectedByte(b'e'));
    bad_lenient(b"d1:bi1ei0ei1ee", 7, KeyNotString);
}

#[test]
fn lenient_depth_is_limited() {
    let deep = |n: usize| [vec![b'l'; n], vec![b'e'; n]].concat();
    decode_lenient(&deep(MAX_DEPTH)).unwrap();
    bad_lenient(&deep(MAX_DEPTH + 1), MAX_DEPTH, TooDeep);
    bad_lenient(&vec![b'l'; 1_000_000], MAX_DEPTH, TooDeep);
    // Unsorted dictionaries nested past the limit: 10 bytes per level before the next `d`.
    bad_lenient(&b"d1:bi0e1:a".repeat(100_000), 10 * MAX_DEPTH, TooDeep);
}

#[test]
fn values_expose_raw_spans_and_lookup() {
    let input = b"d4:infod6:lengthi5ee3:zzzl0:ee";
    let v = decode(input).unwrap();
    let info = v.get(b"info").unwrap();
    assert_eq!(info.raw(), b"d6:lengthi5ee");
    assert_eq!(info.get(b"length").unwrap().raw(), b"i5e");
    assert_eq!(info.get(b"length").unwrap().as_int(), Some(5));
    assert_eq!(
        v.get(b"zzz").unwrap().as_list().unwrap()[0].as_str(),
        Some("")
    );
    assert!(v.get(b"nope").is_none());
    assert!(info.get(b"length").unwrap().get(b"x").is_none());
    assert_eq!(v.as_dict().unwrap().len(), 2);
    let keys: Vec<_> = v.as_dict().unwrap().iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![&b"info"[..], b"zzz"]);
    assert_eq!(decode(b"1:\xff").unwrap().as_str(), None);
    assert_eq!(decode(b"1:\xff").unwrap().as_bytes(), Some(&b"\xff"[..]));
}

#[test]
fn depth_is_limited_without_recursion() {
    let deep = |n: usize| [vec![b'l'; n], vec![b'e'; n]].concat();
    ok(&deep(MAX_DEPTH));
    bad(&deep(MAX_DEPTH + 1), MAX_DEPTH, TooDeep);
    bad(&vec![b'l'; 100_000], MAX_DEPTH, TooDeep);
    bad(&b"d1:a".repeat(100_000), 4 * MAX_DEPTH, TooDeep);
    // Unterminated but within the limit: just incomplete.
    bad(&vec![b'l'; MAX_DEPTH], MAX_DEPTH, Incomplete);
}

#[test]
fn any_split_decodes_the_same() {
    let samples: [&[u8]; 5] = [
        b"d3:cow3:moo4:spaml1:a1:bi-3eee",
        b"i-1234567e",
        b"10:0123456789",
        b"d4:infod6:lengthi0e4:name1:x12:piece lengthi16384e6:pieces0:ee",
        b"lld0:lee0:i0eee",
    ];
    for whole in samples {
        let expected = decode(whole).unwrap();
        for cut in 0..whole.len() {
            let err = decode_prefix(&whole[..cut]).unwrap_err();
            assert!(err.is_incomplete(), "{whole:?} cut at {cut}: {err}");
        }
        let mut longer = whole.to_vec();
        longer.extend_from_slice(b"i1e garbage");
        let (v, used) = decode_prefix(&longer).unwrap();
        assert_eq!(used, whole.len());
        assert_eq!(v, expected);
    }
}

#[test]
fn error_messages_name_the_byte() {
    let err = decode(b"d3:keyi01ee").unwrap_err();
    assert_eq!(
        err.to_string(),
        "bencode: leading zero in integer at byte 7"
    );
    assert_eq!(
        decode(b"x").unwrap_err().to_string(),
        "bencode: unexpected byte 0x78 at byte 0"
    );
}
