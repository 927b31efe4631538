use mitmrs_http1::{
    parse_request_head, parse_response_head, Error, RequestHead, RequestTarget, Version,
};

use crate::{b, buf};

const MAX: usize = 16 * 1024;

fn origin(path: &str) -> RequestTarget {
    RequestTarget::Origin { path: path.into() }
}

fn absolute(scheme: &str, authority: &str, host: &str, port: u16, path: &str) -> RequestTarget {
    RequestTarget::Absolute {
        scheme: scheme.into(),
        authority: authority.into(),
        host: host.into(),
        port,
        path: path.into(),
    }
}

fn authority(authority: &str, host: &str, port: u16) -> RequestTarget {
    RequestTarget::Authority {
        authority: authority.into(),
        host: host.into(),
        port,
    }
}

fn bad_target(t: &str) -> Error {
    Error::InvalidTarget { target: t.into() }
}

fn parse_line(line: &str) -> Result<(String, RequestTarget, Version), Error> {
    let mut input = buf(format!("{line}\r\nHost: x\r\n\r\n"));
    let head = parse_request_head(&mut input, MAX)?.ok_or(Error::InvalidRequestLine)?;
    assert!(input.is_empty());
    Ok((head.method, head.target, head.version))
}

#[test]
fn request_lines() {
    use Version::*;
    #[rustfmt::skip]
    let cases: Vec<(&str, Result<(&str, RequestTarget, Version), Error>)> = vec![
        ("GET / HTTP/1.1", Ok(("GET", origin("/"), Http11))),
        ("GET /a/b?c=d&e HTTP/1.0", Ok(("GET", origin("/a/b?c=d&e"), Http10))),
        ("GET //double HTTP/1.1", Ok(("GET", origin("//double"), Http11))),
        ("GET /caf\u{e9} HTTP/1.1", Ok(("GET", origin("/caf\u{e9}"), Http11))),
        ("OPTIONS * HTTP/1.1", Ok(("OPTIONS", origin("*"), Http11))),
        ("GET * HTTP/1.1", Err(bad_target("*"))),
        ("PROPFIND /x HTTP/1.1", Ok(("PROPFIND", origin("/x"), Http11))),
        ("get / HTTP/1.1", Ok(("get", origin("/"), Http11))),
        ("GET http://example.com/x?y HTTP/1.1", Ok(("GET", absolute("http", "example.com", "example.com", 80, "/x?y"), Http11))),
        ("GET HTTP://Example.com HTTP/1.1", Ok(("GET", absolute("http", "Example.com", "Example.com", 80, "/"), Http11))),
        ("GET https://example.com HTTP/1.1", Ok(("GET", absolute("https", "example.com", "example.com", 443, "/"), Http11))),
        ("GET https://example.com:8443/p HTTP/1.1", Ok(("GET", absolute("https", "example.com:8443", "example.com", 8443, "/p"), Http11))),
        ("GET http://example.com:/p HTTP/1.1", Ok(("GET", absolute("http", "example.com:", "example.com", 80, "/p"), Http11))),
        ("GET http://example.com?q=1 HTTP/1.1", Ok(("GET", absolute("http", "example.com", "example.com", 80, "/?q=1"), Http11))),
        ("GET http://[::1]:8080/x HTTP/1.1", Ok(("GET", absolute("http", "[::1]:8080", "::1", 8080, "/x"), Http11))),
        ("GET http://[2001:db8::1]/ HTTP/1.1", Ok(("GET", absolute("http", "[2001:db8::1]", "2001:db8::1", 80, "/"), Http11))),
        ("GET http://10.0.0.1:81/ HTTP/1.1", Ok(("GET", absolute("http", "10.0.0.1:81", "10.0.0.1", 81, "/"), Http11))),
        ("GET ftp://example.com/ HTTP/1.1", Err(Error::UnsupportedScheme { scheme: "ftp".into() })),
        ("GET ws://example.com/ HTTP/1.1", Err(Error::UnsupportedScheme { scheme: "ws".into() })),
        ("GET http:///x HTTP/1.1", Err(bad_target("http:///x"))),
        ("GET http://user:pw@example.com/ HTTP/1.1", Err(bad_target("http://user:pw@example.com/"))),
        ("GET http://example.com:99999/ HTTP/1.1", Err(bad_target("http://example.com:99999/"))),
        ("GET http://example.com:0/ HTTP/1.1", Err(bad_target("http://example.com:0/"))),
        ("GET http://example.com:8a/ HTTP/1.1", Err(bad_target("http://example.com:8a/"))),
        ("GET http://[::1/ HTTP/1.1", Err(bad_target("http://[::1/"))),
        ("GET http://[zz::1]/ HTTP/1.1", Err(bad_target("http://[zz::1]/"))),
        ("GET http://::1/ HTTP/1.1", Err(bad_target("http://::1/"))),
        ("GET 1http://x/ HTTP/1.1", Err(bad_target("1http://x/"))),
        ("CONNECT example.com:443 HTTP/1.1", Ok(("CONNECT", authority("example.com:443", "example.com", 443), Http11))),
        ("CONNECT [::1]:443 HTTP/1.1", Ok(("CONNECT", authority("[::1]:443", "::1", 443), Http11))),
        ("CONNECT 127.0.0.1:8443 HTTP/1.0", Ok(("CONNECT", authority("127.0.0.1:8443", "127.0.0.1", 8443), Http10))),
        ("CONNECT example.com HTTP/1.1", Err(bad_target("example.com"))),
        ("CONNECT example.com: HTTP/1.1", Err(bad_target("example.com:"))),
        ("CONNECT [::1] HTTP/1.1", Err(bad_target("[::1]"))),
        ("CONNECT / HTTP/1.1", Err(bad_target("/"))),
        ("CONNECT http://example.com:443/ HTTP/1.1", Err(bad_target("http://example.com:443/"))),
        ("GET example.com:443 HTTP/1.1", Err(bad_target("example.com:443"))),
        ("connect example.com:443 HTTP/1.1", Err(bad_target("example.com:443"))),
        ("GET / HTTP/2.0", Err(Error::UnsupportedVersion)),
        ("GET / HTTP/1.2", Err(Error::UnsupportedVersion)),
        ("GET / HTTP/0.9", Err(Error::UnsupportedVersion)),
        ("GET / http/1.1", Err(Error::InvalidRequestLine)),
        ("GET / HTTP/1", Err(Error::InvalidRequestLine)),
        ("GET / HTTP/1.1 ", Err(Error::InvalidRequestLine)),
        ("GET /", Err(Error::InvalidRequestLine)),
        ("GET", Err(Error::InvalidRequestLine)),
        ("GET  / HTTP/1.1", Err(Error::InvalidRequestLine)),
        ("GET\t/ HTTP/1.1", Err(Error::InvalidRequestLine)),
        (" GET / HTTP/1.1", Err(Error::InvalidRequestLine)),
        ("G(T / HTTP/1.1", Err(Error::InvalidRequestLine)),
        ("G\u{e9}T / HTTP/1.1", Err(Error::InvalidRequestLine)),
        ("GET /a\rb HTTP/1.1", Err(bad_target("/a\rb"))),
        ("GET /a\x7fb HTTP/1.1", Err(bad_target("/a\x7fb"))),
        ("GET / HTTP/1.1\r", Err(Error::InvalidRequestLine)),
    ];
    for (line, expected) in cases {
        let expected = expected.map(|(m, t, v)| (m.to_owned(), t, v));
        assert_eq!(parse_line(line), expected, "{line:?}");
    }
}

#[test]
fn request_line_not_utf8_target() {
    let mut input = buf(b"GET /\xff HTTP/1.1\r\n\r\n");
    assert!(matches!(
        parse_request_head(&mut input, MAX),
        Err(Error::InvalidTarget { .. })
    ));
}

fn parse_fields(fields: &[u8]) -> Result<Vec<(bytes::Bytes, bytes::Bytes)>, Error> {
    let mut input = buf([&b"GET / HTTP/1.1\r\n"[..], fields, b"\r\n"].concat());
    let head = parse_request_head(&mut input, MAX)?.ok_or(Error::InvalidHeader)?;
    Ok(head.headers.fields().to_vec())
}

#[test]
fn header_fields() {
    #[rustfmt::skip]
    let cases: Vec<(&[u8], Result<Vec<(&[u8], &[u8])>, Error>)> = vec![
        (b"", Ok(vec![])),
        (b"Host: a\r\n", Ok(vec![(b"Host", b"a")])),
        (b"hOsT:a\r\n", Ok(vec![(b"hOsT", b"a")])),
        (b"Host:   a b  \t\r\n", Ok(vec![(b"Host", b"a b")])),
        (b"X-Empty:\r\n", Ok(vec![(b"X-Empty", b"")])),
        (b"X-Empty:   \r\n", Ok(vec![(b"X-Empty", b"")])),
        (b"B: 1\r\nA: 2\r\nb: 3\r\n", Ok(vec![(b"B", b"1"), (b"A", b"2"), (b"b", b"3")])),
        (b"X: caf\xe9 \xff\r\n", Ok(vec![(b"X", b"caf\xe9 \xff")])),
        (b"X: a\tb\r\n", Ok(vec![(b"X", b"a\tb")])),
        (b"Bare: lf\nNext: x\n", Ok(vec![(b"Bare", b"lf"), (b"Next", b"x")])),
        (b"Host : a\r\n", Err(Error::InvalidHeader)),
        (b"Host\t: a\r\n", Err(Error::InvalidHeader)),
        (b"X: a\r\n b\r\n", Err(Error::InvalidHeader)),
        (b"X: a\r\n\tb\r\n", Err(Error::InvalidHeader)),
        (b" X: a\r\n", Err(Error::InvalidHeader)),
        (b": a\r\n", Err(Error::InvalidHeader)),
        (b"X(: a\r\n", Err(Error::InvalidHeader)),
        (b"X\xe9: a\r\n", Err(Error::InvalidHeader)),
        (b"NoColon\r\n", Err(Error::InvalidHeader)),
        (b"X: a\x00b\r\n", Err(Error::InvalidHeader)),
        (b"X: a\rb\r\n", Err(Error::InvalidHeader)),
        (b"X: a\x7f\r\n", Err(Error::InvalidHeader)),
    ];
    for (fields, expected) in cases {
        let expected = expected.map(|v| {
            v.into_iter()
                .map(|(n, v)| {
                    (
                        bytes::Bytes::copy_from_slice(n),
                        bytes::Bytes::copy_from_slice(v),
                    )
                })
                .collect::<Vec<_>>()
        });
        assert_eq!(
            parse_fields(fields),
            expected,
            "{:?}",
            String::from_utf8_lossy(fields)
        );
    }
}

#[test]
fn header_values_share_the_input_buffer() {
    let mut input = buf("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
    let start = input.as_ptr() as usize;
    let head = parse_request_head(&mut input, MAX).unwrap().unwrap();
    let (name, value) = &head.headers.fields()[0];
    assert_eq!(name.as_ptr() as usize, start + 16);
    assert_eq!(value.as_ptr() as usize, start + 22);
}

#[test]
fn too_many_headers() {
    let ok: String = (0..256).map(|i| format!("X-{i}: v\r\n")).collect();
    let mut input = buf(format!("GET / HTTP/1.1\r\n{ok}\r\n"));
    assert_eq!(
        parse_request_head(&mut input, 1 << 20)
            .unwrap()
            .unwrap()
            .headers
            .len(),
        256
    );
    let mut input = buf(format!("GET / HTTP/1.1\r\n{ok}X: v\r\n\r\n"));
    assert_eq!(
        parse_request_head(&mut input, 1 << 20),
        Err(Error::TooManyHeaders { limit: 256 })
    );
}

#[test]
fn partial_heads_leave_the_buffer_alone() {
    let full = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\nBODY";
    for cut in 0..full.len() - 4 {
        let mut input = buf(&full[..cut]);
        assert_eq!(
            parse_request_head(&mut input, MAX),
            Ok(None),
            "cut at {cut}"
        );
        assert_eq!(&input[..], &full.as_bytes()[..cut]);
    }
    let mut input = buf(full);
    let head = parse_request_head(&mut input, MAX).unwrap().unwrap();
    assert_eq!(head.method, "GET");
    assert_eq!(head.headers.get("x").as_deref(), Some("y"));
    assert_eq!(&input[..], b"BODY");
}

#[test]
fn pipelined_requests() {
    let mut input = buf("GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3");
    assert_eq!(
        parse_request_head(&mut input, MAX)
            .unwrap()
            .unwrap()
            .raw_target,
        "/1"
    );
    assert_eq!(
        parse_request_head(&mut input, MAX)
            .unwrap()
            .unwrap()
            .raw_target,
        "/2"
    );
    assert_eq!(parse_request_head(&mut input, MAX), Ok(None));
    assert_eq!(&input[..], b"GET /3");
}

#[test]
fn head_size_limit() {
    let head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"; // 27 bytes
    assert!(parse_request_head(&mut buf(head), 27).unwrap().is_some());
    assert_eq!(
        parse_request_head(&mut buf(head), 26),
        Err(Error::HeadTooLarge { limit: 26 })
    );
    // Incomplete and already at the limit: it can only get larger.
    assert_eq!(
        parse_request_head(&mut buf(&head[..20]), 20),
        Err(Error::HeadTooLarge { limit: 20 })
    );
    assert_eq!(parse_request_head(&mut buf(&head[..20]), 21), Ok(None));
    // An endless request line.
    let long = format!("GET /{}", "a".repeat(100));
    assert_eq!(
        parse_request_head(&mut buf(&long), 64),
        Err(Error::HeadTooLarge { limit: 64 })
    );
    let response = "HTTP/1.1 200 OK\r\n\r\n";
    assert_eq!(
        parse_response_head(&mut buf(response), 10),
        Err(Error::HeadTooLarge { limit: 10 })
    );
}

#[test]
fn bad_request_lines_fail_before_the_line_ends() {
    // A TLS ClientHello sent to a plain HTTP port.
    let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    assert_eq!(
        parse_request_head(&mut buf(hello), MAX),
        Err(Error::InvalidRequestLine)
    );
    assert_eq!(
        parse_request_head(&mut buf(" GET"), MAX),
        Err(Error::InvalidRequestLine)
    );
    assert_eq!(parse_request_head(&mut buf("GET"), MAX), Ok(None));
    assert_eq!(parse_request_head(&mut buf("\r"), MAX), Ok(None));
    assert_eq!(
        parse_response_head(&mut buf(hello), MAX),
        Err(Error::InvalidStatusLine)
    );
    assert_eq!(parse_response_head(&mut buf("HTT"), MAX), Ok(None));
    assert_eq!(
        parse_response_head(&mut buf("HTTX"), MAX),
        Err(Error::InvalidStatusLine)
    );
}

fn parse_status(line: &str) -> Result<(Version, u16, String), Error> {
    let mut input = buf(format!("{line}\r\nServer: x\r\n\r\n"));
    let head = parse_response_head(&mut input, MAX)?.ok_or(Error::InvalidStatusLine)?;
    assert!(input.is_empty());
    assert_eq!(head.headers.get("server").as_deref(), Some("x"));
    Ok((head.version, head.status, head.reason))
}

#[test]
fn status_lines() {
    use Version::*;
    #[rustfmt::skip]
    let cases: Vec<(&str, Result<(Version, u16, &str), Error>)> = vec![
        ("HTTP/1.1 200 OK", Ok((Http11, 200, "OK"))),
        ("HTTP/1.0 404 Not Found", Ok((Http10, 404, "Not Found"))),
        ("HTTP/1.1 100 Continue", Ok((Http11, 100, "Continue"))),
        ("HTTP/1.1 204 ", Ok((Http11, 204, ""))),
        ("HTTP/1.1 204", Ok((Http11, 204, ""))),
        ("HTTP/1.1 999 Whatever  it\tis", Ok((Http11, 999, "Whatever  it\tis"))),
        ("HTTP/1.1 200 caf\u{e9}", Ok((Http11, 200, "caf\u{e9}"))),
        ("HTTP/1.1 099 Low", Err(Error::InvalidStatusLine)),
        ("HTTP/1.1 20 OK", Err(Error::InvalidStatusLine)),
        ("HTTP/1.1 2000 OK", Err(Error::InvalidStatusLine)),
        ("HTTP/1.1 2x0 OK", Err(Error::InvalidStatusLine)),
        ("HTTP/1.1  200 OK", Err(Error::InvalidStatusLine)),
        ("HTTP/1.1 200 O\x01K", Err(Error::InvalidStatusLine)),
        ("HTTP/1.1", Err(Error::InvalidStatusLine)),
        ("HTTP/2 200 OK", Err(Error::InvalidStatusLine)),
        ("HTTP/2.0 200 OK", Err(Error::UnsupportedVersion)),
        ("http/1.1 200 OK", Err(Error::InvalidStatusLine)),
        ("ICY 200 OK", Err(Error::InvalidStatusLine)),
    ];
    for (line, expected) in cases {
        let expected = expected.map(|(v, s, r)| (v, s, r.to_owned()));
        assert_eq!(parse_status(line), expected, "{line:?}");
    }
}

#[test]
fn status_line_obs_text_reason_is_decoded_lossily() {
    let mut input = buf(b"HTTP/1.1 200 O\xffK\r\n\r\n");
    assert_eq!(
        parse_response_head(&mut input, MAX)
            .unwrap()
            .unwrap()
            .reason,
        "O\u{fffd}K"
    );
}

#[test]
fn informational_responses_come_one_head_at_a_time() {
    let mut input = buf("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let statuses: Vec<u16> = std::iter::from_fn(|| parse_response_head(&mut input, MAX).unwrap())
        .map(|h| h.status)
        .collect();
    assert_eq!(statuses, vec![100, 103, 200]);
}

#[test]
fn request_head_fields() {
    let mut input =
        buf("\r\nPOST http://h:81/p HTTP/1.1\r\nHost: h:81\r\nContent-Length: 3\r\n\r\nabc");
    let head = parse_request_head(&mut input, MAX).unwrap().unwrap();
    assert_eq!(
        head,
        RequestHead {
            method: "POST".into(),
            target: absolute("http", "h:81", "h", 81, "/p"),
            raw_target: "http://h:81/p".into(),
            version: Version::Http11,
            headers: mitmrs_http1::Headers::from_fields(vec![
                (b("Host"), b("h:81")),
                (b("Content-Length"), b("3")),
            ]),
        }
    );
    assert_eq!(&input[..], b"abc");
}

/// Past the small first slot array (32), fields still parse in order, and an
/// incomplete head with that many fields still asks for more.
#[test]
fn more_fields_than_the_first_try_holds() {
    let fields: String = (0..40).map(|i| format!("X-{i}: v{i}\r\n")).collect();
    let mut partial = buf(format!("GET / HTTP/1.1\r\n{fields}"));
    assert_eq!(parse_request_head(&mut partial, 1 << 20), Ok(None));
    let mut input = buf(format!("GET / HTTP/1.1\r\n{fields}\r\nbody"));
    let head = parse_request_head(&mut input, 1 << 20).unwrap().unwrap();
    let got: Vec<String> = head
        .headers
        .fields()
        .iter()
        .map(|(n, v)| {
            format!(
                "{}={}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            )
        })
        .collect();
    let want: Vec<String> = (0..40).map(|i| format!("X-{i}=v{i}")).collect();
    assert_eq!(got, want);
    assert_eq!(&input[..], b"body");
}
