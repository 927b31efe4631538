//! Table-driven tests of the codec's public API.

#![allow(clippy::type_complexity)] // case tables spell their types out

mod body;
mod encode;
mod framing;
mod head;

use bytes::{Bytes, BytesMut};
use mitmrs_http1::Headers;

/// Headers from string pairs.
pub fn hdrs(pairs: &[(&str, &str)]) -> Headers {
    Headers::from_pairs(pairs.iter().copied())
}

pub fn buf(s: impl AsRef<[u8]>) -> BytesMut {
    BytesMut::from(s.as_ref())
}

pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}
