use mitmrs_http1::{
    is_hop_by_hop, request_framing, response_framing, strip_hop_by_hop, Error, Framing, Version,
};

use crate::hdrs;

fn bad_cl(v: &str) -> Error {
    Error::InvalidContentLength { value: v.into() }
}

fn bad_te(v: &str) -> Error {
    Error::UnsupportedTransferEncoding { value: v.into() }
}

#[test]
fn request_framing_table() {
    use Framing::*;
    use Version::*;
    #[rustfmt::skip]
    let cases: Vec<(Version, &[(&str, &str)], Result<Framing, Error>)> = vec![
        (Http11, &[], Ok(None)),
        (Http11, &[("Host", "a")], Ok(None)),
        (Http11, &[("Content-Length", "0")], Ok(Length(0))),
        (Http11, &[("content-length", "42")], Ok(Length(42))),
        (Http10, &[("Content-Length", "42")], Ok(Length(42))),
        (Http11, &[("Content-Length", "007")], Ok(Length(7))),
        (Http11, &[("Content-Length", "18446744073709551615")], Ok(Length(u64::MAX))),
        (Http11, &[("Content-Length", "18446744073709551616")], Err(bad_cl("18446744073709551616"))),
        (Http11, &[("Content-Length", "42"), ("Content-Length", "42")], Ok(Length(42))),
        (Http11, &[("Content-Length", "42, 42")], Ok(Length(42))),
        (Http11, &[("Content-Length", "42"), ("Content-Length", "43")], Err(Error::ConflictingFraming)),
        (Http11, &[("Content-Length", "42,43")], Err(Error::ConflictingFraming)),
        (Http11, &[("Content-Length", "")], Err(bad_cl(""))),
        (Http11, &[("Content-Length", "42,")], Err(bad_cl("42,"))),
        (Http11, &[("Content-Length", "-1")], Err(bad_cl("-1"))),
        (Http11, &[("Content-Length", "+1")], Err(bad_cl("+1"))),
        (Http11, &[("Content-Length", "0x10")], Err(bad_cl("0x10"))),
        (Http11, &[("Content-Length", "4 2")], Err(bad_cl("4 2"))),
        (Http11, &[("Transfer-Encoding", "chunked")], Ok(Chunked)),
        (Http11, &[("Transfer-Encoding", "Chunked")], Ok(Chunked)),
        (Http11, &[("Transfer-Encoding", "gzip, chunked")], Ok(Chunked)),
        (Http11, &[("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "chunked")], Ok(Chunked)),
        (Http11, &[("Transfer-Encoding", "chunked"), ("Content-Length", "5")], Ok(Chunked)),
        (Http11, &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")], Ok(Chunked)),
        (Http11, &[("Content-Length", "bogus"), ("Transfer-Encoding", "chunked")], Ok(Chunked)),
        (Http11, &[("Transfer-Encoding", "gzip")], Err(bad_te("gzip"))),
        (Http11, &[("Transfer-Encoding", "chunked, gzip")], Err(bad_te("chunked, gzip"))),
        (Http11, &[("Transfer-Encoding", "chunked, chunked")], Err(bad_te("chunked, chunked"))),
        (Http11, &[("Transfer-Encoding", "")], Err(bad_te(""))),
        (Http11, &[("Transfer-Encoding", "xchunked")], Err(bad_te("xchunked"))),
        (Http10, &[("Transfer-Encoding", "chunked")], Err(Error::ConflictingFraming)),
    ];
    for (version, fields, expected) in cases {
        assert_eq!(
            request_framing(&hdrs(fields), version),
            expected,
            "{version:?} {fields:?}"
        );
    }
}

#[test]
fn response_framing_table() {
    use Framing::*;
    let cl = &[("Content-Length", "10")][..];
    let te = &[("Transfer-Encoding", "chunked")][..];
    #[rustfmt::skip]
    let cases: Vec<(&str, u16, &[(&str, &str)], Result<Framing, Error>)> = vec![
        ("GET", 200, cl, Ok(Length(10))),
        ("GET", 200, te, Ok(Chunked)),
        ("GET", 200, &[], Ok(UntilClose)),
        ("GET", 200, &[("Transfer-Encoding", "gzip")], Ok(UntilClose)),
        ("GET", 200, &[("Transfer-Encoding", "chunked, gzip")], Ok(UntilClose)),
        ("GET", 200, &[("Transfer-Encoding", "gzip, chunked")], Ok(Chunked)),
        ("GET", 200, &[("Transfer-Encoding", "chunked"), ("Content-Length", "10")], Ok(Chunked)),
        ("GET", 200, &[("Content-Length", "10"), ("Content-Length", "10")], Ok(Length(10))),
        ("GET", 200, &[("Content-Length", "10"), ("Content-Length", "11")], Err(Error::ConflictingFraming)),
        ("GET", 200, &[("Content-Length", "ten")], Err(bad_cl("ten"))),
        ("HEAD", 200, cl, Ok(None)),
        ("HEAD", 200, te, Ok(None)),
        ("GET", 100, &[], Ok(None)),
        ("GET", 101, &[], Ok(None)),
        ("GET", 103, cl, Ok(None)),
        ("GET", 204, cl, Ok(None)),
        ("GET", 304, cl, Ok(None)),
        ("GET", 205, &[], Ok(UntilClose)),
        ("CONNECT", 200, &[], Ok(None)),
        ("CONNECT", 299, cl, Ok(None)),
        ("CONNECT", 407, cl, Ok(Length(10))),
        ("CONNECT", 502, &[], Ok(UntilClose)),
        ("POST", 404, cl, Ok(Length(10))),
    ];
    for (method, status, fields, expected) in cases {
        assert_eq!(
            response_framing(method, status, &hdrs(fields)),
            expected,
            "{method} {status} {fields:?}"
        );
    }
}

#[test]
fn hop_by_hop_names() {
    for name in [
        "Connection",
        "proxy-connection",
        "KEEP-ALIVE",
        "te",
        "Transfer-Encoding",
        "Upgrade",
        "Proxy-Authorization",
        "Trailer",
    ] {
        assert!(is_hop_by_hop(name.as_bytes()), "{name}");
    }
    for name in [
        "Host",
        "Content-Length",
        "Trailers",
        "Connection2",
        "",
        "Authorization",
        // A proxy's own 407 carries it to the client (see is_hop_by_hop).
        "Proxy-Authenticate",
    ] {
        assert!(!is_hop_by_hop(name.as_bytes()), "{name}");
    }
}

#[test]
fn strip_hop_by_hop_table() {
    #[rustfmt::skip]
    let cases: Vec<(bool, &[(&str, &str)], &[(&str, &str)])> = vec![
        (false, &[("Host", "a"), ("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"), ("Accept", "*/*")],
                &[("Host", "a"), ("Accept", "*/*")]),
        (false, &[("Connection", "close, X-Foo"), ("x-foo", "1"), ("X-Bar", "2"), ("X-FOO", "3")],
                &[("X-Bar", "2")]),
        (false, &[("Connection", "x-a"), ("Connection", " , X-B ,"), ("X-A", "1"), ("X-B", "2"), ("X-C", "3")],
                &[("X-C", "3")]),
        (false, &[("TE", "trailers"), ("Trailer", "X"), ("Transfer-Encoding", "chunked"), ("Proxy-Authorization", "Basic x"),
                  ("Proxy-Connection", "keep-alive"), ("Proxy-Authenticate", "Basic"), ("Upgrade", "websocket"), ("Date", "d")],
                &[("Proxy-Authenticate", "Basic"), ("Date", "d")]),
        (false, &[("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Host", "a")],
                &[("Host", "a")]),
        (true,  &[("Host", "a"), ("connection", "keep-alive, Upgrade"), ("Upgrade", "websocket"), ("Connection", "x-a"), ("X-A", "1")],
                &[("Host", "a"), ("connection", "Upgrade"), ("Upgrade", "websocket")]),
        (true,  &[("Connection", "keep-alive"), ("Upgrade", "websocket"), ("Host", "a")],
                &[("Host", "a")]),
        (true,  &[("Host", "a"), ("Keep-Alive", "1")],
                &[("Host", "a")]),
    ];
    for (keep_upgrade, input, expected) in cases {
        let mut headers = hdrs(input);
        strip_hop_by_hop(&mut headers, keep_upgrade);
        assert_eq!(headers, hdrs(expected), "{keep_upgrade} {input:?}");
    }
}
