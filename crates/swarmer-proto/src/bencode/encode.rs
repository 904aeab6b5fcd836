//! The bencode encoder: an owned value tree, [`OwnedValue`], written out canonically (dictionary keys in
//! ascending byte order, which a `BTreeMap` keeps for free) without recursion.

use std::collections::BTreeMap;

/// An owned bencode value, for building messages and files to encode.
///
/// Dictionaries are `BTreeMap`s keyed by raw bytes, so keys are unique and always encoded in the sorted
/// order BEP 3 requires; any tree therefore has exactly one encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OwnedValue {
    /// An integer (`i42e`).
    Int(i64),
    /// A byte string (`4:spam`).
    Bytes(Vec<u8>),
    /// A list (`l...e`).
    List(Vec<OwnedValue>),
    /// A dictionary (`d...e`), keys sorted by byte order.
    Dict(BTreeMap<Vec<u8>, OwnedValue>),
}

/// The canonical bencoding of `value`. Same as [`OwnedValue::encode`].
pub fn encode(value: &OwnedValue) -> Vec<u8> {
    value.encode()
}

impl OwnedValue {
    /// A dictionary from key/value pairs; a repeated key keeps its last value.
    ///
    /// `OwnedValue::dict([("length", OwnedValue::Int(5)), ("name", "a".into())])`
    pub fn dict<K: AsRef<[u8]>>(entries: impl IntoIterator<Item = (K, OwnedValue)>) -> OwnedValue {
        OwnedValue::Dict(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_vec(), v))
                .collect(),
        )
    }

    /// A list from its items.
    pub fn list(items: impl IntoIterator<Item = OwnedValue>) -> OwnedValue {
        OwnedValue::List(items.into_iter().collect())
    }

    /// The canonical bencoding of this value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical bencoding of this value to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        /// Work left to do, popped from the end: an explicit stack, so a deep tree cannot overflow the
        /// call stack.
        enum Todo<'v> {
            Value(&'v OwnedValue),
            Key(&'v Vec<u8>),
            End,
        }
        let mut todo = vec![Todo::Value(self)];
        while let Some(item) = todo.pop() {
            match item {
                Todo::Value(OwnedValue::Int(n)) => {
                    out.push(b'i');
                    out.extend_from_slice(n.to_string().as_bytes());
                    out.push(b'e');
                }
                Todo::Value(OwnedValue::Bytes(b)) | Todo::Key(b) => write_bytes(out, b),
                Todo::Value(OwnedValue::List(items)) => {
                    out.push(b'l');
                    todo.push(Todo::End);
                    todo.extend(items.iter().rev().map(Todo::Value));
                }
                Todo::Value(OwnedValue::Dict(entries)) => {
                    out.push(b'd');
                    todo.push(Todo::End);
                    for (k, v) in entries.iter().rev() {
                        todo.push(Todo::Value(v));
                        todo.push(Todo::Key(k));
                    }
                }
                Todo::End => out.push(b'e'),
            }
        }
    }
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(bytes);
}

impl From<i64> for OwnedValue {
    fn from(n: i64) -> OwnedValue {
        OwnedValue::Int(n)
    }
}

impl From<u32> for OwnedValue {
    fn from(n: u32) -> OwnedValue {
        OwnedValue::Int(i64::from(n))
    }
}

impl From<&str> for OwnedValue {
    fn from(s: &str) -> OwnedValue {
        OwnedValue::Bytes(s.as_bytes().to_vec())
    }
}

impl From<String> for OwnedValue {
    fn from(s: String) -> OwnedValue {
        OwnedValue::Bytes(s.into_bytes())
    }
}

impl From<&[u8]> for OwnedValue {
    fn from(b: &[u8]) -> OwnedValue {
        OwnedValue::Bytes(b.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for OwnedValue {
    fn from(b: &[u8; N]) -> OwnedValue {
        OwnedValue::Bytes(b.to_vec())
    }
}

impl From<Vec<u8>> for OwnedValue {
    fn from(b: Vec<u8>) -> OwnedValue {
        OwnedValue::Bytes(b)
    }
}

impl From<Vec<OwnedValue>> for OwnedValue {
    fn from(items: Vec<OwnedValue>) -> OwnedValue {
        OwnedValue::List(items)
    }
}

impl From<BTreeMap<Vec<u8>, OwnedValue>> for OwnedValue {
    fn from(entries: BTreeMap<Vec<u8>, OwnedValue>) -> OwnedValue {
        OwnedValue::Dict(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode;
    use super::*;

    #[test]
    fn encodes_canonically() {
        let v = OwnedValue::dict([
            ("zz", OwnedValue::Int(-7)),
            (
                "a",
                OwnedValue::list([OwnedValue::from("xy"), OwnedValue::Int(0)]),
            ),
            ("ab", OwnedValue::dict::<&str>([])),
        ]);
        assert_eq!(encode(&v), b"d1:al2:xyi0ee2:abde2:zzi-7ee");
        assert_eq!(
            encode(&OwnedValue::from(i64::MIN)),
            b"i-9223372036854775808e"
        );
        assert_eq!(encode(&OwnedValue::from(&b""[..])), b"0:");
    }

    #[test]
    fn round_trips() {
        let values = [
            OwnedValue::Int(0),
            OwnedValue::Int(i64::MAX),
            OwnedValue::Bytes((0..=255).collect()),
            OwnedValue::list([]),
            OwnedValue::dict([
                (
                    "",
                    OwnedValue::list([OwnedValue::list([OwnedValue::dict::<&str>([])])]),
                ),
                ("\u{7f}\u{80}", OwnedValue::from(String::from("é"))),
                (
                    "info",
                    OwnedValue::dict([("length", OwnedValue::from(5u32))]),
                ),
            ]),
        ];
        for v in values {
            let bytes = encode(&v);
            assert_eq!(decode(&bytes).unwrap().to_owned_value(), v);
        }
    }

    #[test]
    fn deep_trees_encode_without_recursion() {
        let mut v = OwnedValue::list([]);
        for _ in 0..100_000 {
            v = OwnedValue::List(vec![v]);
        }
        let bytes = encode(&v);
        assert_eq!(bytes.len(), 2 * 100_001);
        // Unwind the tree by hand: dropping it recursively could overflow the test thread's stack.
        let mut items = vec![v];
        while let Some(OwnedValue::List(inner)) = items.pop() {
            items.extend(inner);
        }
    }
}
