//! A small, strict, iterative bencode decoder (BEP 3, "bencoding") private to the tracker codecs.
//!
//! It exists only so the tracker reply parser does not wait for `crate::bencode`; it will be replaced by
//! that module. It never recurses (an explicit stack with [`MAX_DEPTH`] frames), caps the number of
//! values it builds ([`MAX_VALUES`]) and borrows every byte string from the input, so a hostile reply costs
//! at most a bounded amount of memory and stack.
//!
//! Strictness: integers have no leading zeros, no `-0` and fit in an `i64`; string lengths have no leading
//! zeros; dictionary keys are unique; nothing may follow the top-level value. One deliberate leniency:
//! dictionary keys need not be sorted, because tracker replies are never hashed and some trackers emit
//! unsorted keys.

/// Containers nested deeper than this are rejected. Tracker replies nest at most three levels.
pub(crate) const MAX_DEPTH: usize = 32;

/// At most this many values (of any kind, containers included) are built from one input.
pub(crate) const MAX_VALUES: usize = 200_000;

/// A decoded bencode value borrowing its byte strings from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    /// Entries in input order; keys are unique.
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The value stored under `key` if `self` is a dictionary.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        match self {
            Value::Dict(entries) => entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub(crate) fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// Why an input is not a single valid bencode value. `at` is the byte offset of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("bencode ends early at byte {at}")]
    Eof { at: usize },
    #[error("invalid bencode at byte {at}: {what}")]
    Invalid { at: usize, what: &'static str },
    #[error("bencode nested deeper than {MAX_DEPTH} levels at byte {at}")]
    TooDeep { at: usize },
    #[error("bencode has more than {MAX_VALUES} values")]
    TooManyValues,
    #[error("trailing bytes after the bencode value at byte {at}")]
    Trailing { at: usize },
}

enum Frame<'a> {
    List(Vec<Value<'a>>),
    Dict {
        entries: Vec<(&'a [u8], Value<'a>)>,
        key: Option<&'a [u8]>,
    },
}

/// Decodes `input`, which must hold exactly one bencoded value.
pub(crate) fn decode(input: &[u8]) -> Result<Value<'_>, DecodeError> {
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut pos = 0usize;
    let mut count = 0usize;
    loop {
        let at = pos;
        let &byte = input.get(pos).ok_or(DecodeError::Eof { at })?;
        let expecting_key = matches!(stack.last(), Some(Frame::Dict { key: None, .. }));
        if byte != b'e' && expecting_key && !byte.is_ascii_digit() {
            return Err(DecodeError::Invalid {
                at,
                what: "dictionary key is not a byte string",
            });
        }
        let completed = match byte {
            b'e' => {
                pos += 1;
                match stack.pop() {
                    None => {
                        return Err(DecodeError::Invalid {
                            at,
                            what: "unexpected end marker",
                        });
                    }
                    Some(Frame::List(items)) => Value::List(items),
                    Some(Frame::Dict { key: Some(_), .. }) => {
                        return Err(DecodeError::Invalid {
                            at,
                            what: "dictionary key without a value",
                        });
                    }
                    Some(Frame::Dict { entries, key: None }) => Value::Dict(entries),
                }
            }
            b'l' | b'd' => {
                pos += 1;
                count += 1;
                if count > MAX_VALUES {
                    return Err(DecodeError::TooManyValues);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(DecodeError::TooDeep { at });
                }
                stack.push(if byte == b'l' {
                    Frame::List(Vec::new())
                } else {
                    Frame::Dict {
                        entries: Vec::new(),
                        key: None,
                    }
                });
                continue;
            }
            b'i' => {
                count += 1;
                let (value, next) = decode_int(input, pos)?;
                pos = next;
                Value::Int(value)
            }
            b'0'..=b'9' => {
                count += 1;
                let (bytes, next) = decode_bytes(input, pos)?;
                pos = next;
                if expecting_key {
                    if let Some(Frame::Dict { entries, key }) = stack.last_mut() {
                        if entries.iter().any(|(k, _)| *k == bytes) {
                            return Err(DecodeError::Invalid {
                                at,
                                what: "duplicate dictionary key",
                            });
                        }
                        *key = Some(bytes);
                    }
                    continue;
                }
                Value::Bytes(bytes)
            }
            _ => {
                return Err(DecodeError::Invalid {
                    at,
                    what: "unexpected byte",
                });
            }
        };
        if count > MAX_VALUES {
            return Err(DecodeError::TooManyValues);
        }
        match stack.last_mut() {
            None => {
                return if pos == input.len() {
                    Ok(completed)
                } else {
                    Err(DecodeError::Trailing { at: pos })
                };
            }
            Some(Frame::List(items)) => items.push(completed),
            Some(Frame::Dict { entries, key }) => match key.take() {
                Some(k) => entries.push((k, completed)),
                // Unreachable in practice: a value in key position was rejected above.
                None => {
                    return Err(DecodeError::Invalid {
                        at,
                        what: "dictionary key is not a byte string",
                    });
                }
            },
        }
    }
}

/// Decodes `i<digits>e` starting at `start` (which holds `i`); returns the value and the next offset.
fn decode_int(input: &[u8], start: usize) -> Result<(i64, usize), DecodeError> {
    let body_start = start + 1;
    let rest = input.get(body_start..).unwrap_or(&[]);
    let len = rest
        .iter()
        .position(|&b| b == b'e')
        .ok_or(DecodeError::Eof { at: input.len() })?;
    let digits = &rest[..len];
    let invalid = |what| DecodeError::Invalid {
        at: body_start,
        what,
    };
    let (negative, magnitude) = match digits.split_first() {
        Some((b'-', m)) => (true, m),
        _ => (false, digits),
    };
    if magnitude.is_empty() || !magnitude.iter().all(u8::is_ascii_digit) {
        return Err(invalid("integer is not decimal digits"));
    }
    if magnitude.len() > 1 && magnitude[0] == b'0' {
        return Err(invalid("integer has a leading zero"));
    }
    if negative && magnitude == b"0" {
        return Err(invalid("negative zero"));
    }
    let mut value: i64 = 0;
    for &d in magnitude {
        let digit = i64::from(d - b'0');
        value = value
            .checked_mul(10)
            .and_then(|v| {
                if negative {
                    v.checked_sub(digit)
                } else {
                    v.checked_add(digit)
                }
            })
            .ok_or_else(|| invalid("integer does not fit in 64 bits"))?;
    }
    Ok((value, body_start + len + 1))
}

/// Decodes `<len>:<bytes>` starting at `start`; returns the bytes and the next offset.
fn decode_bytes(input: &[u8], start: usize) -> Result<(&[u8], usize), DecodeError> {
    let rest = input.get(start..).unwrap_or(&[]);
    let colon = rest
        .iter()
        .take(21) // a usize has at most 20 digits
        .position(|&b| b == b':')
        .ok_or(if rest.len() < 21 {
            DecodeError::Eof { at: input.len() }
        } else {
            DecodeError::Invalid {
                at: start,
                what: "string length too long",
            }
        })?;
    let digits = &rest[..colon];
    let invalid = |what| DecodeError::Invalid { at: start, what };
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid("string length is not decimal digits"));
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return Err(invalid("string length has a leading zero"));
    }
    let mut len: usize = 0;
    for &d in digits {
        len = len
            .checked_mul(10)
            .and_then(|l| l.checked_add(usize::from(d - b'0')))
            .ok_or_else(|| invalid("string length overflows"))?;
    }
    let data_start = start + colon + 1;
    let data_end = data_start
        .checked_add(len)
        .filter(|&end| end <= input.len())
        .ok_or(DecodeError::Eof { at: input.len() })?;
    Ok((&input[data_start..data_end], data_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_nested_values() {
        let v = decode(b"d1:ai-3e1:bl4:spam0:e1:cdee").unwrap();
        assert_eq!(v.get(b"a"), Some(&Value::Int(-3)));
        assert_eq!(
            v.get(b"b"),
            Some(&Value::List(vec![Value::Bytes(b"spam"), Value::Bytes(b"")]))
        );
        assert_eq!(v.get(b"c"), Some(&Value::Dict(vec![])));
        assert_eq!(v.get(b"zz"), None);
    }

    #[test]
    fn accepts_unsorted_keys_but_not_duplicates() {
        assert!(decode(b"d1:bi1e1:ai2ee").is_ok());
        assert!(decode(b"d1:ai1e1:ai2ee").is_err());
    }

    #[test]
    fn rejects_non_canonical_and_truncated_input() {
        for bad in [
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
            b"e",
            b"i1ei2e",
            b"x",
            b"99999999999999999999999:a",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(decode(b"i-9223372036854775808e"), Ok(Value::Int(i64::MIN)));
    }

    #[test]
    fn depth_is_limited() {
        let ok = [vec![b'l'; MAX_DEPTH], vec![b'e'; MAX_DEPTH]].concat();
        assert!(decode(&ok).is_ok());
        let deep = [vec![b'l'; MAX_DEPTH + 1], vec![b'e'; MAX_DEPTH + 1]].concat();
        assert!(matches!(decode(&deep), Err(DecodeError::TooDeep { .. })));
        // Far deeper than any stack could recurse: still a clean error.
        let very_deep = vec![b'l'; 1_000_000];
        assert!(decode(&very_deep).is_err());
    }

    #[test]
    fn value_count_is_limited() {
        let mut many = vec![b'l'];
        many.extend(std::iter::repeat_n(&b"i0e"[..], MAX_VALUES).flatten());
        many.push(b'e');
        assert_eq!(decode(&many), Err(DecodeError::TooManyValues));
    }
}
