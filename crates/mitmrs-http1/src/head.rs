//! Request and response heads (RFC 9112 sections 2 to 5).

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use mitmrs_core::Headers;

use crate::{Error, RequestTarget, Version, MAX_HEADERS};

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, case preserved (methods are case-sensitive).
    pub method: String,
    pub target: RequestTarget,
    /// The request target exactly as received.
    pub raw_target: String,
    pub version: Version,
    pub headers: Headers,
}

/// A parsed response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub version: Version,
    pub status: u16,
    /// The reason phrase, lossily decoded (obs-text bytes become U+FFFD).
    pub reason: String,
    pub headers: Headers,
}

/// Parses a request head from the front of `buf`.
///
/// `Ok(None)`: the head is not complete yet, `buf` is untouched. On success the
/// head's bytes (through the blank line) are removed from `buf`; what follows (the
/// body, a pipelined request) stays. Empty lines before the request line are
/// skipped (RFC 9112 section 2.2). A head not complete within `max_head` bytes is
/// [`Error::HeadTooLarge`]. An obviously bad request line (a method byte that is
/// not a token character, e.g. a TLS handshake) is an error as soon as it is seen.
pub fn parse_request_head(
    buf: &mut BytesMut,
    max_head: usize,
) -> Result<Option<RequestHead>, Error> {
    let Some((line, headers)) =
        split_head(buf, max_head, check_request_prefix, parse_request_line)?
    else {
        return Ok(None);
    };
    let (method, raw_target, version, target) = line;
    Ok(Some(RequestHead {
        method,
        target,
        raw_target,
        version,
        headers,
    }))
}

/// Parses a response head from the front of `buf`; see [`parse_request_head`] for
/// the buffer contract. A `1xx` head is returned like any other.
pub fn parse_response_head(
    buf: &mut BytesMut,
    max_head: usize,
) -> Result<Option<ResponseHead>, Error> {
    let Some(((version, status, reason), headers)) =
        split_head(buf, max_head, check_status_prefix, parse_status_line)?
    else {
        return Ok(None);
    };
    Ok(Some(ResponseHead {
        version,
        status,
        reason,
        headers,
    }))
}

/// Finds a complete head at the front of `buf`, parses its start line with `parse_line`
/// and its fields with httparse, and splits it off `buf`.
fn split_head<T>(
    buf: &mut BytesMut,
    max_head: usize,
    check_prefix: fn(&[u8]) -> Result<(), Error>,
    parse_line: fn(&[u8]) -> Result<T, Error>,
) -> Result<Option<(T, Headers)>, Error> {
    let window = &buf[..buf.len().min(max_head)];
    let too_large = buf.len() >= max_head;
    let need_more = || {
        if too_large {
            Err(Error::HeadTooLarge { limit: max_head })
        } else {
            Ok(None)
        }
    };

    let skip = skip_empty_lines(window);
    let rest = &window[skip..];
    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
        check_prefix(rest)?;
        return need_more();
    };
    let line = rest[..lf].strip_suffix(b"\r").unwrap_or(&rest[..lf]);
    let parsed = parse_line(line)?;

    let fields_start = skip + lf + 1;
    let fields = &window[fields_start..];
    let base = window.as_ptr() as usize;
    // Most heads have a handful of fields: try a small slot array first, so the
    // common case does not initialise MAX_HEADERS slots (8 KiB) per message.
    let parsed_fields = match field_ranges::<FEW_HEADERS>(fields, base) {
        Err(httparse::Error::TooManyHeaders) => field_ranges::<MAX_HEADERS>(fields, base),
        other => other,
    };
    let (len, ranges) = match parsed_fields {
        Ok(Some((len, ranges))) => (fields_start + len, ranges),
        Ok(None) => return need_more(),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::TooManyHeaders { limit: MAX_HEADERS })
        }
        Err(_) => return Err(Error::InvalidHeader),
    };

    let head = buf.split_to(len).freeze();
    Ok(Some((parsed, fields_from_ranges(&head, ranges))))
}

/// The slot count tried first by [`split_head`].
const FEW_HEADERS: usize = 32;

/// Name and value ranges of a parsed header field (offsets from `base`).
type FieldRanges = Vec<(Range<usize>, Range<usize>)>;

/// Parses the header fields at the front of `fields` with up to `N` slots:
/// `Ok(None)` if incomplete, else the length consumed and each field's ranges
/// relative to `base` (the address of the window `fields` lies in).
fn field_ranges<const N: usize>(
    fields: &[u8],
    base: usize,
) -> Result<Option<(usize, FieldRanges)>, httparse::Error> {
    let mut slots = [httparse::EMPTY_HEADER; N];
    match httparse::parse_headers(fields, &mut slots)? {
        httparse::Status::Complete((len, parsed)) => {
            let offset = |s: &[u8]| {
                let start = s.as_ptr() as usize - base;
                start..start + s.len()
            };
            let ranges = parsed
                .iter()
                .map(|h| (offset(h.name.as_bytes()), offset(h.value)))
                .collect();
            Ok(Some((len, ranges)))
        }
        httparse::Status::Partial => Ok(None),
    }
}

/// Builds headers from (name, value) ranges into `head`, without copying.
pub(crate) fn fields_from_ranges(head: &Bytes, ranges: FieldRanges) -> Headers {
    Headers::from_fields(
        ranges
            .into_iter()
            .map(|(n, v)| (head.slice(n), head.slice(v)))
            .collect(),
    )
}

/// Length of the empty lines (CRLF or LF) at the front of `b`.
fn skip_empty_lines(b: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match &b[i..] {
            [b'\r', b'\n', ..] => i += 2,
            [b'\n', ..] => i += 1,
            _ => return i,
        }
    }
}

/// tchar (RFC 9110 section 5.6.2).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Rejects an incomplete request line early when its method is already bad.
fn check_request_prefix(partial: &[u8]) -> Result<(), Error> {
    let method = partial.split(|&b| b == b' ').next().unwrap_or(&[]);
    let complete = method.len() < partial.len();
    // A lone CR may be the start of an empty line's CRLF.
    if partial == b"\r" {
        return Ok(());
    }
    if !method.iter().all(|&b| is_tchar(b)) || (complete && method.is_empty()) {
        return Err(Error::InvalidRequestLine);
    }
    Ok(())
}

/// Rejects an incomplete status line early when it cannot start with "HTTP/".
fn check_status_prefix(partial: &[u8]) -> Result<(), Error> {
    let n = partial.len().min(5);
    if partial == b"\r" || partial[..n] == b"HTTP/"[..n] {
        Ok(())
    } else {
        Err(Error::InvalidStatusLine)
    }
}

/// Parses an HTTP-version token. `Err(true)`: well-formed but unsupported;
/// `Err(false)`: not a version at all.
fn parse_version(v: &[u8]) -> Result<Version, bool> {
    match v {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(true)
        }
        _ => Err(false),
    }
}

/// `method SP request-target SP HTTP-version`
fn parse_request_line(line: &[u8]) -> Result<(String, String, Version, RequestTarget), Error> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::InvalidRequestLine);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(Error::InvalidRequestLine);
    }
    let version = parse_version(version).map_err(|supported_syntax| {
        if supported_syntax {
            Error::UnsupportedVersion
        } else {
            Error::InvalidRequestLine
        }
    })?;
    // Only ASCII tchars, so this cannot fail; no unwrap all the same.
    let method = String::from_utf8_lossy(method).into_owned();
    let raw_target = std::str::from_utf8(target).map_err(|_| Error::InvalidTarget {
        target: String::from_utf8_lossy(target).into_owned(),
    })?;
    let parsed = RequestTarget::parse(&method, raw_target)?;
    Ok((method, raw_target.to_owned(), version, parsed))
}

/// `HTTP-version SP 3DIGIT SP reason-phrase`; the space before an empty reason may
/// be missing.
fn parse_status_line(line: &[u8]) -> Result<(Version, u16, String), Error> {
    let (version, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    let version = parse_version(version).map_err(|supported_syntax| {
        if supported_syntax {
            Error::UnsupportedVersion
        } else {
            Error::InvalidStatusLine
        }
    })?;
    let (code, reason) = match rest {
        [a, b, c] => ([*a, *b, *c], &[][..]),
        [a, b, c, b' ', reason @ ..] => ([*a, *b, *c], reason),
        _ => return Err(Error::InvalidStatusLine),
    };
    if !code.iter().all(u8::is_ascii_digit) || code[0] == b'0' {
        return Err(Error::InvalidStatusLine);
    }
    let status = code
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    // reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
    if !reason
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
    {
        return Err(Error::InvalidStatusLine);
    }
    Ok((
        version,
        status,
        String::from_utf8_lossy(reason).into_owned(),
    ))
}
