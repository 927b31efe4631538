//! Serialisation of heads and chunks.
//!
//! Header fields are written exactly as given: name case, order, duplicates, raw
//! value bytes, as `Name: value\r\n`. Nothing is validated here: a caller that
//! lets a hook put CR or LF into a name or value must check it itself.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use mitmrs_core::Headers;

use crate::Version;

/// Writes `method SP target SP version CRLF`, the fields and the blank line.
pub fn encode_request_head(
    method: &str,
    target: &str,
    version: Version,
    headers: &Headers,
    out: &mut BytesMut,
) {
    out.reserve(method.len() + target.len() + 12 + fields_len(headers) + 2);
    out.put_slice(method.as_bytes());
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_u8(b' ');
    out.put_slice(version.as_str().as_bytes());
    out.put_slice(b"\r\n");
    put_fields(headers, out);
    out.put_slice(b"\r\n");
}

/// Writes `version SP status SP reason CRLF`, the fields and the blank line. The
/// space before `reason` is written even when it is empty, as RFC 9112 requires.
pub fn encode_response_head(
    version: Version,
    status: u16,
    reason: &str,
    headers: &Headers,
    out: &mut BytesMut,
) {
    out.reserve(8 + 5 + reason.len() + 2 + fields_len(headers) + 2);
    out.put_slice(version.as_str().as_bytes());
    // Infallible for BytesMut; the result is ignored rather than unwrapped.
    let _ = write!(out, " {status:03} ");
    out.put_slice(reason.as_bytes());
    out.put_slice(b"\r\n");
    put_fields(headers, out);
    out.put_slice(b"\r\n");
}

/// Writes one chunk: `{len:x}\r\n{data}\r\n`. An empty `data` writes nothing (an
/// empty chunk would end the body; use [`encode_last_chunk`] for that).
pub fn encode_chunk(data: &[u8], out: &mut BytesMut) {
    if data.is_empty() {
        return;
    }
    out.reserve(16 + 2 + data.len() + 2);
    let _ = write!(out, "{:x}\r\n", data.len());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Writes the last chunk: `0\r\n`, the trailer fields if any, and the blank line.
pub fn encode_last_chunk(trailers: Option<&Headers>, out: &mut BytesMut) {
    out.put_slice(b"0\r\n");
    if let Some(trailers) = trailers {
        put_fields(trailers, out);
    }
    out.put_slice(b"\r\n");
}

fn fields_len(headers: &Headers) -> usize {
    headers
        .fields()
        .iter()
        .map(|(n, v)| n.len() + v.len() + 4)
        .sum()
}

fn put_fields(headers: &Headers, out: &mut BytesMut) {
    for (name, value) in headers.fields() {
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
}

/// The standard reason phrase for `status` (IANA HTTP status code registry), or
/// `""` if unknown.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "",
    }
}
