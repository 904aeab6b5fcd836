//! The bencode decoder: an iterative parser with an explicit, depth-limited stack, so that no input can
//! overflow the call stack, and typed errors that carry the offending byte offset.

use super::value::{Dict, Value, ValueKind};

/// The deepest nesting of lists and dictionaries the decoder accepts: 256. Real metainfo files and
/// protocol messages nest a handful of levels; the limit only bounds what a hostile input can make us hold.
pub const MAX_DEPTH: usize = 256;

/// Why a byte string is not one canonical bencode value, and where (`offset` counts bytes from the
/// start of the input passed to the decoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bencode: {kind} at byte {offset}")]
pub struct DecodeError {
    /// Offset of the offending byte (for [`DecodeErrorKind::Incomplete`]: where more input is needed).
    pub offset: usize,
    /// What is wrong.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    /// True when the input is a valid but unfinished prefix: a streaming caller should retry with more
    /// bytes. For a complete buffer it means the data is truncated.
    pub fn is_incomplete(&self) -> bool {
        self.kind == DecodeErrorKind::Incomplete
    }
}

/// The kinds of [`DecodeError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The input ends before the value is complete; every byte so far is valid.
    #[error("input ends before the value is complete")]
    Incomplete,
    /// A byte that cannot start a value here (for example `x`, or `e` where a dictionary value is due).
    #[error("unexpected byte {0:#04x}")]
    UnexpectedByte(u8),
    /// An integer that is empty (`ie`, `i-e`) or holds a byte other than a digit.
    #[error("malformed integer")]
    InvalidInteger,
    /// An integer or string length with a superfluous leading zero (`i03e`, `03:abc`).
    #[error("leading zero in integer")]
    LeadingZero,
    /// The integer `-0`, which has no canonical meaning.
    #[error("negative zero")]
    NegativeZero,
    /// An integer outside `i64`, or a string length that does not fit in memory.
    #[error("integer too large")]
    IntegerOverflow,
    /// A string length holding a byte other than a digit before the colon.
    #[error("malformed string length")]
    InvalidLength,
    /// A dictionary key that is not a byte string.
    #[error("dictionary key is not a byte string")]
    KeyNotString,
    /// A dictionary key that sorts before the previous key.
    #[error("dictionary keys out of order")]
    UnsortedKeys,
    /// A dictionary key equal to the previous key.
    #[error("duplicate dictionary key")]
    DuplicateKey,
    /// Lists and dictionaries nested more than [`MAX_DEPTH`] deep.
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Bytes after a complete top-level value ([`decode`] only).
    #[error("trailing bytes after the value")]
    TrailingBytes,
}

/// Decodes `input`, which must hold exactly one canonical bencode value.
///
/// Errors: any [`DecodeErrorKind`]; `Incomplete` means the input is truncated, `TrailingBytes` that
/// something follows the value.
pub fn decode(input: &[u8]) -> Result<Value<'_>, DecodeError> {
    let (value, used) = decode_prefix(input)?;
    if used != input.len() {
        return Err(DecodeError {
            offset: used,
            kind: DecodeErrorKind::TrailingBytes,
        });
    }
    Ok(value)
}

/// Decodes the one canonical bencode value at the start of `input` and returns it with the number of
/// bytes it spans; bytes after it are not looked at.
///
/// When `input` is a valid prefix of a value that has not ended yet, fails with
/// [`DecodeErrorKind::Incomplete`]: append more bytes and call again. Any other error is final.
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), DecodeError> {
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut pos = 0;
    loop {
        let Some(&byte) = input.get(pos) else {
            return Err(error(pos, DecodeErrorKind::Incomplete));
        };
        // Reject a non-string key before parsing it: otherwise a nested container in key position would
        // be read in full before being refused.
        if let Some(Frame::Dict { key: None, .. }) = stack.last() {
            if byte != b'e' && !byte.is_ascii_digit() {
                return Err(error(pos, DecodeErrorKind::KeyNotString));
            }
        }
        let value = match byte {
            b'i' => {
                let (n, end) = parse_int(input, pos)?;
                let value = Value::new(&input[pos..end], ValueKind::Int(n));
                pos = end;
                value
            }
            b'0'..=b'9' => {
                let (bytes, end) = parse_bytes(input, pos)?;
                let value = Value::new(&input[pos..end], ValueKind::Bytes(bytes));
                pos = end;
                value
            }
            b'l' | b'd' => {
                if stack.len() >= MAX_DEPTH {
                    return Err(error(pos, DecodeErrorKind::TooDeep));
                }
                stack.push(if byte == b'l' {
                    Frame::List {
                        start: pos,
                        items: Vec::new(),
                    }
                } else {
                    Frame::Dict {
                        start: pos,
                        entries: Vec::new(),
                        key: None,
                    }
                });
                pos += 1;
                continue;
            }
            b'e' => {
                let value = match stack.pop() {
                    Some(Frame::List { start, items }) => {
                        Value::new(&input[start..=pos], ValueKind::List(items))
                    }
                    Some(Frame::Dict {
                        start,
                        entries,
                        key: None,
                    }) => Value::new(
                        &input[start..=pos],
                        ValueKind::Dict(Dict::from_sorted(entries)),
                    ),
                    // A key without a value, or an `e` with nothing open.
                    Some(Frame::Dict { key: Some(_), .. }) | None => {
                        return Err(error(pos, DecodeErrorKind::UnexpectedByte(byte)));
                    }
                };
                pos += 1;
                value
            }
            _ => return Err(error(pos, DecodeErrorKind::UnexpectedByte(byte))),
        };
        match stack.last_mut() {
            None => return Ok((value, pos)),
            Some(Frame::List { items, .. }) => items.push(value),
            Some(Frame::Dict { entries, key, .. }) => match key.take() {
                Some(k) => entries.push((k, value)),
                None => *key = Some(check_key(&value, entries, pos)?),
            },
        }
    }
}

/// An open list or dictionary: the decoder's explicit stack instead of recursion.
enum Frame<'a> {
    List {
        /// Offset of the `l`.
        start: usize,
        items: Vec<Value<'a>>,
    },
    Dict {
        /// Offset of the `d`.
        start: usize,
        entries: Vec<(&'a [u8], Value<'a>)>,
        /// A key read and waiting for its value.
        key: Option<&'a [u8]>,
    },
}

/// Checks that `value`, just read in key position and ending before `end`, is a byte string sorting
/// strictly after the previous key.
fn check_key<'a>(
    value: &Value<'a>,
    entries: &[(&'a [u8], Value<'a>)],
    end: usize,
) -> Result<&'a [u8], DecodeError> {
    let start = end - value.raw().len();
    let key = value
        .as_bytes()
        .ok_or(error(start, DecodeErrorKind::KeyNotString))?;
    if let Some((previous, _)) = entries.last() {
        match (*previous).cmp(key) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => return Err(error(start, DecodeErrorKind::DuplicateKey)),
            std::cmp::Ordering::Greater => {
                return Err(error(start, DecodeErrorKind::UnsortedKeys));
            }
        }
    }
    Ok(key)
}

/// Parses the integer whose `i` is at `start`; returns it and the offset just past its `e`.
fn parse_int(input: &[u8], start: usize) -> Result<(i64, usize), DecodeError> {
    let mut pos = start + 1;
    let negative = input.get(pos) == Some(&b'-');
    if negative {
        pos += 1;
    }
    let digits_start = pos;
    let mut value: i64 = 0;
    loop {
        let Some(&byte) = input.get(pos) else {
            return Err(error(pos, DecodeErrorKind::Incomplete));
        };
        match byte {
            b'0'..=b'9' => {
                if value == 0 && pos > digits_start {
                    // The only way to have read digits and still be at 0 is a lone leading `0`.
                    return Err(error(digits_start, DecodeErrorKind::LeadingZero));
                }
                if byte == b'0' && negative && pos == digits_start {
                    return Err(error(pos, DecodeErrorKind::NegativeZero));
                }
                let digit = i64::from(byte - b'0');
                // Accumulate negatives downwards so that i64::MIN is reachable.
                value = value
                    .checked_mul(10)
                    .and_then(|v| {
                        if negative {
                            v.checked_sub(digit)
                        } else {
                            v.checked_add(digit)
                        }
                    })
                    .ok_or(error(digits_start, DecodeErrorKind::IntegerOverflow))?;
                pos += 1;
            }
            b'e' if pos > digits_start => return Ok((value, pos + 1)),
            _ => return Err(error(pos, DecodeErrorKind::InvalidInteger)),
        }
    }
}

/// Parses the byte string whose length starts at `start` (a digit); returns the bytes and the offset
/// just past them. The length is checked against the remaining input before anything is sliced.
fn parse_bytes(input: &[u8], start: usize) -> Result<(&[u8], usize), DecodeError> {
    let mut pos = start;
    let mut length: usize = 0;
    loop {
        let Some(&byte) = input.get(pos) else {
            return Err(error(pos, DecodeErrorKind::Incomplete));
        };
        match byte {
            b'0'..=b'9' => {
                if length == 0 && pos > start {
                    return Err(error(start, DecodeErrorKind::LeadingZero));
                }
                length = length
                    .checked_mul(10)
                    .and_then(|l| l.checked_add(usize::from(byte - b'0')))
                    .ok_or(error(start, DecodeErrorKind::IntegerOverflow))?;
                pos += 1;
            }
            b':' if pos > start => break,
            _ => return Err(error(pos, DecodeErrorKind::InvalidLength)),
        }
    }
    let data_start = pos + 1;
    let bytes = input
        .get(data_start..)
        .and_then(|rest| rest.get(..length))
        .ok_or(error(input.len(), DecodeErrorKind::Incomplete))?;
    Ok((bytes, data_start + length))
}

fn error(offset: usize, kind: DecodeErrorKind) -> DecodeError {
    DecodeError { offset, kind }
}

#[cfg(test)]
mod tests {
    use super::super::{OwnedValue, encode};
    use super::*;
    use DecodeErrorKind::*;

    /// Decodes `input` (which must be fully valid) and checks it re-encodes to itself.
    fn ok(input: &[u8]) -> OwnedValue {
        let v =
            decode(input).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(input)));
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
}
