//! The decoded, borrowed bencode tree: [`Value`] (a node plus the raw bytes it came from) and [`Dict`]
//! (key/value pairs sorted by key, with lookup by key).

use super::OwnedValue;

/// One decoded bencode value, borrowing from the input it was decoded from.
///
/// Built only by the decoder, so [`Value::raw`] is always the exact encoding the value was read from and
/// the nesting depth is at most [`super::MAX_DEPTH`]. From [`super::decode`] and [`super::decode_prefix`]
/// that encoding is the canonical one; from [`super::decode_lenient`] its dictionaries' keys may be in
/// any order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value<'a> {
    raw: &'a [u8],
    kind: ValueKind<'a>,
}

/// What a [`Value`] is: one of the four bencode types of BEP 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueKind<'a> {
    /// An integer (`i42e`).
    Int(i64),
    /// A byte string (`4:spam`): the bytes after the colon, not necessarily UTF-8.
    Bytes(&'a [u8]),
    /// A list (`l...e`).
    List(Vec<Value<'a>>),
    /// A dictionary (`d...e`).
    Dict(Dict<'a>),
}

/// A decoded dictionary: byte-string keys in strictly ascending byte order, each with its value.
///
/// The order holds for leniently decoded dictionaries too ([`super::decode_lenient`] sorts their entries
/// after reading them), so lookup and iteration never depend on the input's key order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dict<'a> {
    /// Sorted by key and free of duplicates: the decoder rejects duplicates and either rejects or sorts
    /// out-of-order keys.
    entries: Vec<(&'a [u8], Value<'a>)>,
}

impl<'a> Value<'a> {
    /// Only the decoder builds values; it guarantees that `raw` is the encoding of `kind`.
    pub(super) fn new(raw: &'a [u8], kind: ValueKind<'a>) -> Value<'a> {
        Value { raw, kind }
    }

    /// The exact bytes this value was decoded from, delimiters included (`i42e`, `4:spam`, `d...e`).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// What the value is, for matching on all four types.
    pub fn kind(&self) -> &ValueKind<'a> {
        &self.kind
    }

    /// The integer, or `None` if the value is not an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            ValueKind::Int(n) => Some(n),
            _ => None,
        }
    }

    /// The byte string, or `None` if the value is not a byte string.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.kind {
            ValueKind::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as UTF-8 text, or `None` if the value is not a byte string or not valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The list's items, or `None` if the value is not a list.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match &self.kind {
            ValueKind::List(items) => Some(items),
            _ => None,
        }
    }

    /// The dictionary, or `None` if the value is not a dictionary.
    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match &self.kind {
            ValueKind::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The value under `key` if this value is a dictionary holding that key; `None` otherwise.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.as_dict()?.get(key)
    }

    /// The bencode type's name ("integer", "byte string", "list", "dictionary"), for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ValueKind::Int(_) => "integer",
            ValueKind::Bytes(_) => "byte string",
            ValueKind::List(_) => "list",
            ValueKind::Dict(_) => "dictionary",
        }
    }

    /// An owned copy of the tree, for editing and re-encoding. For a value from [`super::decode`] or
    /// [`super::decode_prefix`], `encode(&v.to_owned_value())` equals `v.raw()` because those accept only
    /// canonical encodings; for one from [`super::decode_lenient`] the keys are written sorted, so the
    /// bytes may differ from `v.raw()`.
    pub fn to_owned_value(&self) -> OwnedValue {
        // Recursion is bounded: a decoded value is at most `MAX_DEPTH` levels deep.
        match &self.kind {
            ValueKind::Int(n) => OwnedValue::Int(*n),
            ValueKind::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            ValueKind::List(items) => {
                OwnedValue::List(items.iter().map(Value::to_owned_value).collect())
            }
            ValueKind::Dict(d) => OwnedValue::Dict(
                d.iter()
                    .map(|(k, v)| (k.to_vec(), v.to_owned_value()))
                    .collect(),
            ),
        }
    }
}

impl<'a> Dict<'a> {
    /// Only the decoder builds dictionaries; it guarantees `entries` is sorted and duplicate-free (for
    /// lenient decoding, by sorting them first).
    pub(super) fn from_sorted(entries: Vec<(&'a [u8], Value<'a>)>) -> Dict<'a> {
        Dict { entries }
    }

    /// The value under `key`, or `None`. A binary search: keys are sorted.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.entries
            .binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .and_then(|i| self.entries.get(i))
            .map(|(_, v)| v)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True for an empty dictionary (`de`).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The key/value pairs in ascending key order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &Value<'a>)> + '_ {
        self.entries.iter().map(|(k, v)| (*k, v))
    }
}
