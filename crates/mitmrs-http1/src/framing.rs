//! Message body framing (RFC 9112 section 6.3) and hop-by-hop fields
//! (RFC 9110 section 7.6.1).

use bytes::Bytes;
use mitmrs_core::headers::trim_ascii;
use mitmrs_core::Headers;

use crate::{Error, Version};

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding, possibly with trailers.
    Chunked,
    /// Everything until the connection closes (responses only).
    UntilClose,
}

/// The body framing of a request.
///
/// - Transfer-Encoding whose final coding is `chunked` → [`Framing::Chunked`], even
///   with a Content-Length (the caller must drop Content-Length before forwarding);
///   any other Transfer-Encoding, or `chunked` applied more than once →
///   [`Error::UnsupportedTransferEncoding`]; Transfer-Encoding in an HTTP/1.0 request
///   → [`Error::ConflictingFraming`] (RFC 9112 section 6.1).
/// - Content-Length (all fields and list elements must be the same decimal number)
///   → [`Framing::Length`]; a bad value → [`Error::InvalidContentLength`], differing
///   values → [`Error::ConflictingFraming`].
/// - Neither → [`Framing::None`].
pub fn request_framing(headers: &Headers, version: Version) -> Result<Framing, Error> {
    if headers.contains("transfer-encoding") {
        if version == Version::Http10 {
            return Err(Error::ConflictingFraming);
        }
        return match final_coding_is_chunked(headers)? {
            true => Ok(Framing::Chunked),
            false => Err(unsupported_te(headers)),
        };
    }
    Ok(content_length(headers)?.map_or(Framing::None, Framing::Length))
}

/// The body framing of a response to a request with `request_method`.
///
/// HEAD requests, `1xx`, `204` and `304` responses, and `2xx` responses to CONNECT
/// have no body; then Transfer-Encoding with `chunked` last → [`Framing::Chunked`]
/// (other Transfer-Encoding → [`Framing::UntilClose`]); then Content-Length →
/// [`Framing::Length`]; otherwise [`Framing::UntilClose`].
pub fn response_framing(
    request_method: &str,
    status: u16,
    headers: &Headers,
) -> Result<Framing, Error> {
    if request_method == "HEAD"
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (request_method == "CONNECT" && (200..300).contains(&status))
    {
        return Ok(Framing::None);
    }
    if headers.contains("transfer-encoding") {
        return match final_coding_is_chunked(headers)? {
            true => Ok(Framing::Chunked),
            false => Ok(Framing::UntilClose),
        };
    }
    Ok(content_length(headers)?.map_or(Framing::UntilClose, Framing::Length))
}

fn unsupported_te(headers: &Headers) -> Error {
    Error::UnsupportedTransferEncoding {
        value: headers
            .get("transfer-encoding")
            .unwrap_or_default()
            .into_owned(),
    }
}

/// Whether the last transfer coding (over all Transfer-Encoding fields) is
/// `chunked`. `chunked` applied twice is an error; only empty list elements is an
/// error too (a Transfer-Encoding without a coding).
fn final_coding_is_chunked(headers: &Headers) -> Result<bool, Error> {
    let mut last: Option<&[u8]> = None;
    let mut chunked_count = 0usize;
    for coding in headers
        .get_all_bytes("transfer-encoding")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ascii)
        .filter(|c| !c.is_empty())
    {
        if coding.eq_ignore_ascii_case(b"chunked") {
            chunked_count += 1;
        }
        last = Some(coding);
    }
    match last {
        Some(c) if c.eq_ignore_ascii_case(b"chunked") => {
            if chunked_count > 1 {
                Err(unsupported_te(headers))
            } else {
                Ok(true)
            }
        }
        Some(_) => Ok(false),
        None => Err(unsupported_te(headers)),
    }
}

/// The Content-Length, if any. Every field and every comma-separated element must
/// be the same decimal number (RFC 9110 section 8.6).
fn content_length(headers: &Headers) -> Result<Option<u64>, Error> {
    let mut length: Option<u64> = None;
    for value in headers.get_all_bytes("content-length") {
        for element in value.split(|&b| b == b',') {
            let n =
                parse_decimal(trim_ascii(element)).ok_or_else(|| Error::InvalidContentLength {
                    value: String::from_utf8_lossy(value).into_owned(),
                })?;
            match length {
                Some(l) if l != n => return Err(Error::ConflictingFraming),
                _ => length = Some(n),
            }
        }
    }
    Ok(length)
}

/// `1*DIGIT` fitting in u64.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "trailer",
];

/// Whether `name` is a hop-by-hop field: Connection, Proxy-Connection, Keep-Alive,
/// TE, Transfer-Encoding, Upgrade, Proxy-Authorization, Trailer (ASCII
/// case-insensitive). Proxy-Authorization is the client's credentials for this
/// proxy and goes no further. Proxy-Authenticate is not in the list (RFC 9110
/// no longer names it, mitmproxy forwards it): the 407 the proxy itself sends
/// for `proxyauth`, or a script's, must reach the client with it.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| h.as_bytes().eq_ignore_ascii_case(name))
}

/// Removes the hop-by-hop fields and every field named by a Connection option
/// (RFC 9110 section 7.6.1).
///
/// With `keep_upgrade`, if a Connection field carries the `upgrade` option, the
/// `Upgrade` fields are kept and the first Connection field is kept with just that
/// option (as written, e.g. `Connection: Upgrade`); other Connection fields go.
/// Without the `upgrade` option there is nothing to keep and everything is stripped.
pub fn strip_hop_by_hop(headers: &mut Headers, keep_upgrade: bool) {
    let mut named: Vec<Bytes> = Vec::new();
    let mut upgrade_token: Option<Bytes> = None;
    for value in headers.get_all_bytes("connection") {
        for token in value.split(|&b| b == b',') {
            let token = trim_ascii(token);
            if token.is_empty() {
                continue;
            }
            if token.eq_ignore_ascii_case(b"upgrade") {
                if upgrade_token.is_none() {
                    upgrade_token = Some(value.slice_ref(token));
                }
            } else {
                named.push(value.slice_ref(token));
            }
        }
    }
    let keep = if keep_upgrade { upgrade_token } else { None };
    let mut connection_kept = false;
    headers.fields_mut().retain_mut(|(name, value)| {
        if let Some(token) = &keep {
            if name.eq_ignore_ascii_case(b"upgrade") {
                return true;
            }
            if name.eq_ignore_ascii_case(b"connection") && !connection_kept {
                connection_kept = true;
                *value = token.clone();
                return true;
            }
        }
        !is_hop_by_hop(name) && !named.iter().any(|n| n.eq_ignore_ascii_case(name))
    });
}
