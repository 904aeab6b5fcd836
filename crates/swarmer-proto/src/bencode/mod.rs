//! Bencoding (BEP 3, "bencoding"): a strict, zero-copy, iterative decoder and a canonical encoder.
//!
//! Decoding borrows from the input: every [`Value`] keeps the exact bytes it was decoded from
//! ([`Value::raw`]), which is how the info hash of a torrent is computed (the SHA-1 of the `info`
//! dictionary's raw bytes). Encoding works on an owned tree, [`OwnedValue`], whose dictionaries are
//! always written with sorted keys.
//!
//! **Strictness.** The decoder accepts only canonical bencode: no leading zeros, no `-0`, integers that fit
//! an `i64`, and dictionary keys that are byte strings in strictly ascending byte order (unsorted and
//! duplicate keys are errors, not silently fixed). Because every accepted encoding is the canonical one,
//! `encode(decode(x)) == x` for every accepted `x`, so a decoded info dictionary re-encodes to the same
//! info hash. The cost is rejecting the rare sloppy encoder's output, which we accept.
//!
//! **Leniency, on request.** [`decode_lenient`] additionally accepts dictionary keys in any order (still
//! not duplicates), and sorts each dictionary's entries after reading it, so lookups work the same. It is
//! for data that is never hashed or re-encoded and whose senders do not always sort keys: HTTP tracker
//! replies (later, KRPC). Metainfo must use the strict [`decode`].
//!
//! **Bounds.** The decoder never recurses: it keeps an explicit stack limited to [`MAX_DEPTH`] open lists
//! and dictionaries, and checks every string length against the remaining input before slicing, so no
//! input can overflow the stack or make it allocate more than a small multiple of the input's size.
//!
//! **Streaming.** [`decode_prefix`] decodes one value from the front of a buffer and says how many bytes
//! it used; when the buffer ends early it fails with [`DecodeErrorKind::Incomplete`]
//! ([`DecodeError::is_incomplete`]), which a caller receiving bytes in chunks treats as "wait for more".

mod decode;
mod encode;
mod value;

pub use decode::{
    DecodeError, DecodeErrorKind, MAX_DEPTH, decode, decode_lenient, decode_prefix,
    decode_prefix_lenient,
};
pub use encode::{OwnedValue, encode};
pub use value::{Dict, Value, ValueKind};
