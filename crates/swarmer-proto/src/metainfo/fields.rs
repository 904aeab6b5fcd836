//! Typed access to the fields of a decoded metainfo dictionary, with errors naming the key's dotted
//! path, and the check every path component passes: shared by the v1 and v2 parsers.

use crate::bencode::{Dict, Value};
use crate::metainfo::error::MetainfoError;

/// Checks that `component` is a single, relative path component that every platform can create; returns
/// the reason when it is not.
pub(super) fn check_component(component: &str) -> Result<(), &'static str> {
    let bytes = component.as_bytes();
    if bytes.is_empty() {
        return Err("empty path component");
    }
    if component == "." || component == ".." {
        return Err("`.` or `..` path component");
    }
    if bytes.contains(&0) {
        return Err("NUL byte in path component");
    }
    if bytes.contains(&b'/') || bytes.contains(&b'\\') {
        return Err("path separator inside a path component");
    }
    if let [drive, b':', ..] = bytes {
        if drive.is_ascii_alphabetic() {
            return Err("absolute path (Windows drive letter)");
        }
    }
    Ok(())
}

/// `key` in `dict` (found at dotted path `at`), or a `Missing` error.
pub(super) fn required<'d, 'a>(
    dict: &'d Dict<'a>,
    at: &str,
    key: &str,
) -> Result<&'d Value<'a>, MetainfoError> {
    dict.get(key.as_bytes())
        .ok_or_else(|| MetainfoError::Missing(dotted(at, key)))
}

pub(super) fn required_int(dict: &Dict<'_>, at: &str, key: &str) -> Result<i64, MetainfoError> {
    let value = required(dict, at, key)?;
    value
        .as_int()
        .ok_or_else(|| wrong_type(at, key, "an integer", value))
}

pub(super) fn required_bytes<'a>(
    dict: &Dict<'a>,
    at: &str,
    key: &str,
) -> Result<&'a [u8], MetainfoError> {
    let value = required(dict, at, key)?;
    value
        .as_bytes()
        .ok_or_else(|| wrong_type(at, key, "a byte string", value))
}

pub(super) fn required_list<'d, 'a>(
    dict: &'d Dict<'a>,
    at: &str,
    key: &str,
) -> Result<&'d [Value<'a>], MetainfoError> {
    let value = required(dict, at, key)?;
    value
        .as_list()
        .ok_or_else(|| wrong_type(at, key, "a list", value))
}

pub(super) fn wrong_type(
    at: &str,
    key: &str,
    expected: &'static str,
    found: &Value<'_>,
) -> MetainfoError {
    MetainfoError::WrongType {
        key: dotted(at, key),
        expected,
        found: found.type_name(),
    }
}

pub(super) fn dotted(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}
