//! mitmrs-http1: a pure HTTP/1.0 and HTTP/1.1 codec for an intercepting proxy.
//!
//! # What it does
//!
//! - Parses request and response heads ([`parse_request_head`],
//!   [`parse_response_head`]) from the front of a [`BytesMut`], keeping every header
//!   field exactly as received: name case, order, duplicates and raw value bytes
//!   (obs-text included). Names and values are zero-copy slices of the input buffer,
//!   stored in a [`mitmrs_core::Headers`].
//! - Parses the request target into its RFC 9112 form ([`RequestTarget`]: origin,
//!   absolute, authority, asterisk).
//! - Decides how a body is delimited ([`request_framing`], [`response_framing`],
//!   RFC 9112 section 6.3).
//! - Decodes bodies incrementally ([`BodyDecoder`]): one [`BodyEvent::Data`] at a
//!   time, bounded in size, so the caller can stream a body piece by piece under
//!   hook control; chunked trailers are returned as headers so they can be
//!   forwarded.
//! - Serialises heads, chunks and the last chunk with trailers ([`encode_request_head`],
//!   [`encode_response_head`], [`encode_chunk`], [`encode_last_chunk`]), writing
//!   header fields exactly as given.
//! - Knows the hop-by-hop fields ([`is_hop_by_hop`], [`strip_hop_by_hop`]) and the
//!   standard reason phrases ([`reason_phrase`]).
//!
//! # Why it is written by hand
//!
//! A proxy must forward what it received as faithfully as it can, which general
//! purpose HTTP libraries do not allow: they normalise header case, merge or reorder
//! duplicates, swallow chunked trailers, buffer or re-chunk bodies on their own and
//! handle `1xx` responses internally. Here `httparse` is used only to tokenise header
//! lines; everything else (start lines, targets, framing, chunked coding) is this
//! crate's own code. A `1xx` head is returned like any other response head, with
//! [`Framing::None`], so the caller can pass it through and read the next head.
//!
//! # What it refuses to do
//!
//! - No I/O and no clock: every function works on bytes already in memory;
//!   `Ok(None)` means "give me more bytes". Timeouts and connection handling are
//!   the caller's.
//! - No HTTP/0.9 and no HTTP/2: only `HTTP/1.0` and `HTTP/1.1` (exactly, upper
//!   case) are accepted.
//! - No obsolete line folding, no whitespace between a field name and its colon,
//!   no bare CR, no header names that are not tokens, no userinfo in request
//!   targets, no absolute targets other than `http` and `https`: these are errors,
//!   not guesses, because differing guesses between a proxy and a server are how
//!   requests get smuggled.
//! - No content codings: `gzip` and friends are left to the caller. Transfer codings
//!   other than `chunked` are not decoded either.
//! - It never panics on input: every malformed input is an [`Error`].

mod body;
mod encode;
mod error;
mod framing;
mod head;
mod target;
pub mod websocket;

pub use body::{BodyDecoder, BodyEvent};
pub use encode::{
    encode_chunk, encode_last_chunk, encode_request_head, encode_response_head, reason_phrase,
};
pub use error::Error;
pub use framing::{is_hop_by_hop, request_framing, response_framing, strip_hop_by_hop, Framing};
pub use head::{parse_request_head, parse_response_head, RequestHead, ResponseHead};
pub use target::RequestTarget;

pub use bytes::{Bytes, BytesMut};
pub use mitmrs_core::Headers;

/// Most header fields accepted in one head (and in one trailer section).
pub const MAX_HEADERS: usize = 256;
/// Longest chunk-size line (size, extensions and CRLF included).
pub const MAX_CHUNK_LINE: usize = 1024;
/// Largest trailer section of a chunked body (final blank line included).
pub const MAX_TRAILERS: usize = 64 * 1024;

/// The HTTP version of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    /// `"HTTP/1.0"` or `"HTTP/1.1"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
