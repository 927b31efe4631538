//! Serialisation of heads and chunks.
//!
//! Header fields are written exactly as given: name case, order, duplicates, raw
//! value bytes, as `Name: value\r\n`. One exception, for safety: CR, LF and NUL
//! bytes in a start-line part, name or value (which a hook could have put there)
//! are written as spaces, so no field or message can be smuggled into the output.

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
    checked(out, headers.len() + 2, |out, put| {
        put(method.as_bytes(), out);
        out.put_u8(b' ');
        put(target.as_bytes(), out);
        out.put_u8(b' ');
        out.put_slice(version.as_str().as_bytes());
        out.put_slice(b"\r\n");
        put_fields(headers, out, put);
        out.put_slice(b"\r\n");
    });
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
    checked(out, headers.len() + 2, |out, put| {
        out.put_slice(version.as_str().as_bytes());
        if (100..1000).contains(&status) {
            let digits = [
                b' ',
                b'0' + (status / 100) as u8,
                b'0' + (status / 10 % 10) as u8,
                b'0' + (status % 10) as u8,
                b' ',
            ];
            out.put_slice(&digits);
        } else {
            // Infallible for BytesMut; the result is ignored rather than unwrapped.
            let _ = write!(out, " {status:03} ");
        }
        put(reason.as_bytes(), out);
        out.put_slice(b"\r\n");
        put_fields(headers, out, put);
        out.put_slice(b"\r\n");
    });
}

/// How a start-line part, name or value is written: as is, or made safe.
type Put = fn(&[u8], &mut BytesMut);

/// Runs `write` with parts written as they are, then checks the result in one
/// vectorised pass: exactly `lines` CRs and LFs (the ones `write` put at line
/// ends) and no NUL, counted together. A head that fails (a hook put CR, LF or NUL into a part) is
/// written again with [`put_safe`]. Checking each part byte by byte instead cost
/// ~3 instructions per head byte on every message.
fn checked(out: &mut BytesMut, lines: usize, write: impl Fn(&mut BytesMut, Put)) {
    let start = out.len();
    write(out, |b, out| out.put_slice(b));
    // `write` itself puts exactly `lines` CRs and `lines` LFs, so any other CR,
    // LF or NUL makes the count larger.
    if line_breaks(&out[start..]) != 2 * lines {
        out.truncate(start);
        write(out, put_safe);
    }
}

/// How many CR, LF and NUL bytes `b` holds: one pass that compilers vectorise
/// (byte lanes, summed per 255 bytes so the byte counters cannot overflow).
fn line_breaks(b: &[u8]) -> usize {
    b.chunks(255)
        .map(|c| {
            c.iter()
                .map(|&x| u8::from(x == b'\r' || x == b'\n' || x == 0))
                .fold(0u8, u8::wrapping_add) as usize
        })
        .sum()
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
        put_fields(trailers, out, put_safe);
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

/// Writes `b`, with CR, LF and NUL replaced by spaces.
fn put_safe(b: &[u8], out: &mut BytesMut) {
    if !b.iter().any(|c| matches!(c, b'\r' | b'\n' | 0)) {
        out.put_slice(b);
        return;
    }
    out.extend(b.iter().map(|&c| {
        if matches!(c, b'\r' | b'\n' | 0) {
            b' '
        } else {
            c
        }
    }));
}

fn put_fields(headers: &Headers, out: &mut BytesMut, put: Put) {
    for (name, value) in headers.fields() {
        put(name, out);
        out.put_slice(b": ");
        put(value, out);
        out.put_slice(b"\r\n");
    }
}

/// The standard reason phrase for `status`, or `""` if unknown (the table lives
/// in `mitmrs_core::status`, shared with `Response::make`).
pub fn reason_phrase(status: u16) -> &'static str {
    mitmrs_core::status::reason(status)
}

#[cfg(test)]
mod safety_tests {
    use super::*;

    #[test]
    fn crlf_in_fields_cannot_inject() {
        let h = Headers::from_pairs([("X-A", "1\r\nInjected: yes"), ("X\nB", "2")]);
        let mut out = BytesMut::new();
        encode_response_head(Version::Http11, 200, "OK\r\nX: y", &h, &mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK  X: y\r\nX-A: 1  Injected: yes\r\nX B: 2\r\n\r\n"
        );
    }
}
