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
    /// A dictionary key that sorts before the previous key ([`decode`] and [`decode_prefix`] only;
    /// [`decode_lenient`] accepts it).
    #[error("dictionary keys out of order")]
    UnsortedKeys,
    /// A dictionary key equal to an earlier key of the same dictionary (in canonical input, the
    /// previous one). Rejected by every entry point.
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
/// Use this for anything that is hashed or re-encoded, metainfo above all: every accepted input is the
/// canonical encoding of its value.
///
/// Errors: any [`DecodeErrorKind`]; `Incomplete` means the input is truncated, `TrailingBytes` that
/// something follows the value.
pub fn decode(input: &[u8]) -> Result<Value<'_>, DecodeError> {
    whole(input, Keys::Canonical)
}

/// Decodes `input`, which must hold exactly one bencode value, accepting dictionary keys in any order.
///
/// For data that is never hashed or re-encoded and comes from encoders that do not sort their keys:
/// HTTP tracker replies (and, later, KRPC messages). Metainfo must use the strict [`decode`]: an info
/// dictionary with unsorted keys has no single canonical encoding, so its info hash would be ambiguous.
///
/// Everything else is as strict as [`decode`]: the same integer and length rules, [`MAX_DEPTH`], string
/// lengths checked before slicing, no trailing bytes. **Duplicate keys are still rejected**
/// ([`DecodeErrorKind::DuplicateKey`], at the later of the two keys; for a dictionary that is not in
/// order this is found when the dictionary ends), so a key never has two competing values.
///
/// Each dictionary's entries are sorted by key once it has been read, so [`Dict::get`] and [`Dict::iter`]
/// behave as for a strictly decoded one. [`Value::raw`] is still the exact input span of each value;
/// re-encoding [`Value::to_owned_value`] writes the keys sorted, so it may differ from `raw`.
pub fn decode_lenient(input: &[u8]) -> Result<Value<'_>, DecodeError> {
    whole(input, Keys::AnyOrder)
}

/// Decodes the one canonical bencode value at the start of `input` and returns it with the number of
/// bytes it spans; bytes after it are not looked at.
///
/// When `input` is a valid prefix of a value that has not ended yet, fails with
/// [`DecodeErrorKind::Incomplete`]: append more bytes and call again. Any other error is final.
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), DecodeError> {
    parse(input, Keys::Canonical)
}

/// Decodes the one bencode value at the start of `input`, accepting dictionary keys in any order
/// (as [`decode_lenient`]), and returns it with the number of bytes it spans; bytes after it are not
/// looked at. For .torrent files written by encoders that do not sort keys or that append a newline:
/// the info hash is the hash of the bytes as received, so neither changes it.
pub fn decode_prefix_lenient(input: &[u8]) -> Result<(Value<'_>, usize), DecodeError> {
    parse(input, Keys::AnyOrder)
}

/// Which dictionary key orders the parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// Strictly ascending byte order, as BEP 3 requires.
    Canonical,
    /// Any order, but still no duplicates; entries are sorted after the dictionary is read.
    AnyOrder,
}

/// Parses one value that must span all of `input`.
fn whole(input: &[u8], keys: Keys) -> Result<Value<'_>, DecodeError> {
    let (value, used) = parse(input, keys)?;
    if used != input.len() {
        return Err(DecodeError {
            offset: used,
            kind: DecodeErrorKind::TrailingBytes,
        });
    }
    Ok(value)
}

/// Parses the value at the start of `input`; returns it and the number of bytes it spans.
fn parse(input: &[u8], keys: Keys) -> Result<(Value<'_>, usize), DecodeError> {
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
                        key_offsets: Vec::new(),
                        in_order: true,
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
                        key_offsets,
                        in_order,
                    }) => {
                        let entries = if in_order {
                            entries
                        } else {
                            sort_entries(entries, key_offsets)?
                        };
                        Value::new(
                            &input[start..=pos],
                            ValueKind::Dict(Dict::from_sorted(entries)),
                        )
                    }
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
            Some(Frame::Dict {
                entries,
                key,
                key_offsets,
                in_order,
                ..
            }) => match key.take() {
                Some(k) => entries.push((k, value)),
                None => {
                    let start = pos - value.raw().len();
                    *key = Some(check_key(&value, entries, start, keys, in_order)?);
                    if keys == Keys::AnyOrder {
                        key_offsets.push(start);
                    }
                }
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
        /// Where each key of `entries` starts, for [`Keys::AnyOrder`] only (empty otherwise): a duplicate
        /// found when sorting is reported there.
        key_offsets: Vec<usize>,
        /// False once a key sorted before its predecessor ([`Keys::AnyOrder`] only).
        in_order: bool,
    },
}

/// Checks that `value`, just read in key position at `start`, is a byte string and differs from the
/// previous key; with [`Keys::Canonical`] it must sort strictly after it, with [`Keys::AnyOrder`] a key
/// sorting before it clears `in_order`.
fn check_key<'a>(
    value: &Value<'a>,
    entries: &[(&'a [u8], Value<'a>)],
    start: usize,
    keys: Keys,
    in_order: &mut bool,
) -> Result<&'a [u8], DecodeError> {
    let key = value
        .as_bytes()
        .ok_or(error(start, DecodeErrorKind::KeyNotString))?;
    if let Some((previous, _)) = entries.last() {
        match (*previous).cmp(key) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => return Err(error(start, DecodeErrorKind::DuplicateKey)),
            std::cmp::Ordering::Greater => match keys {
                Keys::Canonical => return Err(error(start, DecodeErrorKind::UnsortedKeys)),
                Keys::AnyOrder => *in_order = false,
            },
        }
    }
    Ok(key)
}

/// Sorts the entries of a dictionary read with [`Keys::AnyOrder`] by key. `offsets` holds where each
/// key starts; a duplicate key fails with [`DecodeErrorKind::DuplicateKey`] at the earliest key that
/// repeats an earlier one.
fn sort_entries<'a>(
    entries: Vec<(&'a [u8], Value<'a>)>,
    offsets: Vec<usize>,
) -> Result<Vec<(&'a [u8], Value<'a>)>, DecodeError> {
    let mut tagged: Vec<(usize, (&'a [u8], Value<'a>))> =
        offsets.into_iter().zip(entries).collect();
    // Stable, so equal keys stay in input order and the second of a pair is the repeat.
    tagged.sort_by_key(|(_, (key, _))| *key);
    let repeat = tagged
        .windows(2)
        .filter(|pair| pair[0].1.0 == pair[1].1.0)
        .map(|pair| pair[1].0)
        .min();
    if let Some(offset) = repeat {
        return Err(error(offset, DecodeErrorKind::DuplicateKey));
    }
    Ok(tagged.into_iter().map(|(_, entry)| entry).collect())
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
mod tests;
