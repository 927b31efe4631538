//! Building the heads the proxy sends: hop-by-hop fields removed (RFC 9110 7.6.1),
//! body framing chosen for the receiving side, and the message's other fields
//! written exactly as they are in the flow.

use bytes::BytesMut;
use mitmrs_core::{Headers, Request, Response};
use std::borrow::Cow;

use mitmrs_http1::{
    encode_request_head, encode_response_head, is_hop_by_hop, strip_hop_by_hop, Version,
};

use crate::body::OutFraming;

fn version_of(s: &str) -> Version {
    if s == "HTTP/1.0" {
        Version::Http10
    } else {
        Version::Http11
    }
}

/// How the body of an outgoing message is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyPlan {
    /// No body at all (GET without body, 101).
    None,
    /// A response that never has a body (to HEAD, 204, 304): the head is sent with
    /// its Content-Length kept (it describes the resource for HEAD and 304), except
    /// for 204, which must not carry one.
    HeadOnly,
    /// A buffered body of this length.
    Full(u64),
    /// Streamed with a known, unchanged length.
    StreamLength(u64),
    /// Streamed with unknown or changing length.
    StreamUnknown,
}

/// Sets Content-Length to `n` ([`Headers::set`] semantics), without touching the
/// fields when they already say exactly that (the common case: an unchanged
/// length as received), and without a heap-formatted number.
fn set_content_length(h: &mut Cow<'_, Headers>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let text = &digits[i..];
    let unchanged = {
        let mut existing = h.get_all_bytes("content-length");
        existing.next().is_some_and(|v| v[..] == *text) && existing.next().is_none()
    };
    if unchanged {
        return;
    }
    h.to_mut().set("content-length", text);
}

/// The fields to send for a message with body `plan`: hop-by-hop fields removed,
/// the framing fields set for the receiving side; and how the body is framed.
/// The fields are copied only if something changes: the usual head has no
/// hop-by-hop field and a Content-Length that stays, and goes out as it is.
fn framed_headers(
    headers: &Headers,
    plan: BodyPlan,
    peer_http11: bool,
    keep_upgrade: bool,
    force_chunked: bool,
) -> (Cow<'_, Headers>, OutFraming) {
    let mut h = Cow::Borrowed(headers);
    let chunked_before = h.has_token("transfer-encoding", "chunked");
    // Without a hop-by-hop field there is no Connection field either, so
    // nothing it names to remove.
    if headers.fields().iter().any(|(n, _)| is_hop_by_hop(n)) {
        strip_hop_by_hop(h.to_mut(), keep_upgrade);
    }
    let framing = match plan {
        BodyPlan::None => OutFraming::Length,
        BodyPlan::HeadOnly => {
            // strip_hop_by_hop removed Transfer-Encoding; Content-Length stays.
            OutFraming::Length
        }
        BodyPlan::Full(n) => {
            if (chunked_before || force_chunked) && peer_http11 {
                let h = h.to_mut();
                h.remove("content-length");
                h.add("transfer-encoding", "chunked");
                OutFraming::Chunked
            } else {
                if n > 0 || h.contains("content-length") {
                    set_content_length(&mut h, n);
                }
                OutFraming::Length
            }
        }
        BodyPlan::StreamLength(n) => {
            set_content_length(&mut h, n);
            OutFraming::Length
        }
        BodyPlan::StreamUnknown => {
            let h = h.to_mut();
            h.remove("content-length");
            if peer_http11 {
                h.add("transfer-encoding", "chunked");
                OutFraming::Chunked
            } else {
                OutFraming::Close
            }
        }
    };
    (h, framing)
}

/// The head to send to the server for `req`, and the body framing to use.
pub fn request_head(
    req: &Request,
    plan: BodyPlan,
    upgrade: bool,
    out: &mut BytesMut,
) -> OutFraming {
    let chunked_trailers = req.trailers.is_some();
    let (mut h, framing) = framed_headers(&req.headers, plan, true, upgrade, chunked_trailers);
    if upgrade {
        // Keep the upgrade negotiation intact.
        if !h.contains("connection") {
            h.to_mut().add("Connection", "Upgrade");
        }
        // No WebSocket extension is negotiated, so messages stay readable and
        // changeable (permessage-deflate would compress them). mitmproxy lets
        // the offer through and decompresses; the flow keeps the header here
        // too, only the server does not see it.
        if h.has_token("upgrade", "websocket") {
            h.to_mut().remove("sec-websocket-extensions");
        }
    }
    if req.is_http2() || req.is_http3() {
        // An HTTP/2 request goes to an HTTP/1 server (as mitmproxy converts it):
        // the authority becomes the Host field, and several Cookie fields (allowed
        // in HTTP/2 only) become one.
        if !h.contains("host") && !req.authority.is_empty() {
            h.to_mut().insert(0, "Host", &req.authority);
        }
        let cookies = h.get_all("cookie");
        if cookies.len() > 1 {
            let joined = cookies.join("; ");
            h.to_mut().set("Cookie", joined);
        }
    }
    let target = if req.method.eq_ignore_ascii_case("CONNECT") {
        req.authority.as_str()
    } else {
        req.path.as_str()
    };
    encode_request_head(&req.method, target, version_of(&req.http_version), &h, out);
    framing
}

/// True when a response to `method` with `status` never carries a body.
pub fn bodyless_response(method: &str, status: u16) -> bool {
    method.eq_ignore_ascii_case("HEAD")
        || status == 204
        || status == 304
        || (100..200).contains(&status)
}

/// The head to send to the client for `resp`, and the body framing to use.
/// `close` adds `Connection: close`.
pub fn response_head(
    resp: &Response,
    plan: BodyPlan,
    client_http11: bool,
    upgrade: bool,
    close: bool,
    out: &mut BytesMut,
) -> OutFraming {
    let chunked_trailers = resp.trailers.is_some();
    let (mut h, framing) = framed_headers(
        &resp.headers,
        plan,
        client_http11,
        upgrade,
        chunked_trailers,
    );
    if plan == BodyPlan::HeadOnly
        && (resp.status_code == 204 || resp.status_code < 200)
        && h.contains("content-length")
    {
        h.to_mut().remove("content-length");
    }
    if close || framing == OutFraming::Close {
        h.to_mut().set("Connection", "close");
    }
    if upgrade && !h.contains("connection") {
        h.to_mut().add("Connection", "Upgrade");
    }
    encode_response_head(
        version_of(&resp.http_version),
        resp.status_code,
        &resp.reason,
        &h,
        out,
    );
    framing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(h: &Headers) -> Vec<(String, String)> {
        h.fields()
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    fn owned(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn content_length_is_set_like_headers_set() {
        // Unchanged: the very same field stays (no copy).
        let fields = Headers::from_pairs([("A", "1"), ("Content-Length", "166"), ("B", "2")]);
        let mut h = Cow::Borrowed(&fields);
        set_content_length(&mut h, 166);
        assert!(matches!(h, Cow::Borrowed(_)));
        assert_eq!(
            pairs(&h),
            owned(&[("A", "1"), ("Content-Length", "166"), ("B", "2")])
        );

        // Changed: first field keeps its name and place, duplicates go.
        let mut h = Cow::Owned(Headers::from_pairs([
            ("content-LENGTH", "5"),
            ("X", "y"),
            ("Content-Length", "5"),
        ]));
        set_content_length(&mut h, 1234567890);
        assert_eq!(
            pairs(&h),
            owned(&[("content-LENGTH", "1234567890"), ("X", "y")])
        );

        // Same value twice is still collapsed to one field.
        let mut h = Cow::Owned(Headers::from_pairs([
            ("Content-Length", "7"),
            ("Content-Length", "7"),
        ]));
        set_content_length(&mut h, 7);
        assert_eq!(pairs(&h), owned(&[("Content-Length", "7")]));

        // Absent: appended; the extremes format right.
        let mut h = Cow::Owned(Headers::new());
        set_content_length(&mut h, 0);
        assert_eq!(pairs(&h), owned(&[("content-length", "0")]));
        set_content_length(&mut h, u64::MAX);
        assert_eq!(
            pairs(&h),
            owned(&[("content-length", "18446744073709551615")])
        );
    }
}
