use bytes::BytesMut;
use mitmrs_http1::{
    encode_chunk, encode_last_chunk, encode_request_head, encode_response_head, parse_request_head,
    parse_response_head, reason_phrase, BodyDecoder, BodyEvent, Framing, Headers, Version,
};

use crate::{buf, hdrs};

fn encoded(f: impl FnOnce(&mut BytesMut)) -> String {
    let mut out = BytesMut::new();
    f(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn request_heads() {
    let h = hdrs(&[("Host", "a"), ("x-dup", "1"), ("X-DUP", "2"), ("Empty", "")]);
    assert_eq!(
        encoded(|o| encode_request_head("GET", "/p?q", Version::Http11, &h, o)),
        "GET /p?q HTTP/1.1\r\nHost: a\r\nx-dup: 1\r\nX-DUP: 2\r\nEmpty: \r\n\r\n"
    );
    assert_eq!(
        encoded(|o| encode_request_head("CONNECT", "h:443", Version::Http10, &Headers::new(), o)),
        "CONNECT h:443 HTTP/1.0\r\n\r\n"
    );
}

#[test]
fn response_heads() {
    #[rustfmt::skip]
    let cases: Vec<(Version, u16, &str, &[(&str, &str)], &str)> = vec![
        (Version::Http11, 200, "OK", &[("Content-Length", "0")], "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        (Version::Http10, 404, "Not Found", &[], "HTTP/1.0 404 Not Found\r\n\r\n"),
        (Version::Http11, 204, "", &[], "HTTP/1.1 204 \r\n\r\n"),
        (Version::Http11, 599, "Custom reason", &[("a", "b"), ("A", "c")], "HTTP/1.1 599 Custom reason\r\na: b\r\nA: c\r\n\r\n"),
        (Version::Http11, 100, "Continue", &[], "HTTP/1.1 100 Continue\r\n\r\n"),
        (Version::Http11, 999, "", &[], "HTTP/1.1 999 \r\n\r\n"),
        // Out of the three-digit range (a hook can set anything): still written, padded.
        (Version::Http11, 42, "", &[], "HTTP/1.1 042 \r\n\r\n"),
        (Version::Http11, 1000, "", &[], "HTTP/1.1 1000 \r\n\r\n"),
        (Version::Http11, 200, "O\rK", &[("X\0", "a\nb")], "HTTP/1.1 200 O K\r\nX : a b\r\n\r\n"),
    ];
    for (version, status, reason, fields, expected) in cases {
        assert_eq!(
            encoded(|o| encode_response_head(version, status, reason, &hdrs(fields), o)),
            expected
        );
    }
}

#[test]
fn chunks() {
    assert_eq!(encoded(|o| encode_chunk(b"hello", o)), "5\r\nhello\r\n");
    assert_eq!(
        encoded(|o| encode_chunk(&[b'x'; 26], o)),
        format!("1a\r\n{}\r\n", "x".repeat(26))
    );
    assert_eq!(encoded(|o| encode_chunk(b"", o)), "");
    assert_eq!(encoded(|o| encode_last_chunk(None, o)), "0\r\n\r\n");
    assert_eq!(
        encoded(|o| encode_last_chunk(Some(&Headers::new()), o)),
        "0\r\n\r\n"
    );
    let t = hdrs(&[("X-Sum", "1"), ("x-other", "2")]);
    assert_eq!(
        encoded(|o| encode_last_chunk(Some(&t), o)),
        "0\r\nX-Sum: 1\r\nx-other: 2\r\n\r\n"
    );
}

#[test]
fn reason_phrases() {
    #[rustfmt::skip]
    let cases = [
        (100, "Continue"), (101, "Switching Protocols"), (200, "OK"), (204, "No Content"),
        (301, "Moved Permanently"), (304, "Not Modified"), (400, "Bad Request"), (404, "Not Found"),
        (407, "Proxy Authentication Required"), (431, "Request Header Fields Too Large"),
        (500, "Internal Server Error"), (502, "Bad Gateway"), (504, "Gateway Timeout"),
        (0, ""), (299, ""), (999, ""),
    ];
    for (status, reason) in cases {
        assert_eq!(reason_phrase(status), reason, "{status}");
    }
}

#[test]
fn request_round_trip() {
    let inputs = [
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST http://[::1]:8080/x?y HTTP/1.0\r\nhost: [::1]:8080\r\nX-A: 1\r\nx-a: 2\r\nX-Raw: \u{e9}\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\n\r\n",
    ];
    for input in inputs {
        let head = parse_request_head(&mut buf(input), 4096).unwrap().unwrap();
        let mut out = BytesMut::new();
        encode_request_head(
            &head.method,
            &head.raw_target,
            head.version,
            &head.headers,
            &mut out,
        );
        assert_eq!(&out[..], input.as_bytes());
        let again = parse_request_head(&mut out, 4096).unwrap().unwrap();
        assert_eq!(again, head);
    }
}

#[test]
fn response_round_trip() {
    let inputs = [
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.0 404 Not Found\r\nServer: x\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\n",
        "HTTP/1.1 204 \r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    ];
    for input in inputs {
        let head = parse_response_head(&mut buf(input), 4096).unwrap().unwrap();
        let mut out = BytesMut::new();
        encode_response_head(
            head.version,
            head.status,
            &head.reason,
            &head.headers,
            &mut out,
        );
        assert_eq!(&out[..], input.as_bytes());
        assert_eq!(parse_response_head(&mut out, 4096).unwrap().unwrap(), head);
    }
}

#[test]
fn chunked_round_trip() {
    let pieces: [&[u8]; 4] = [b"hello", b"", b" ", &[0u8; 300]];
    let trailers = hdrs(&[("X-Checksum", "abc"), ("x-checksum", "def")]);
    let mut wire = BytesMut::new();
    for p in pieces {
        encode_chunk(p, &mut wire);
    }
    encode_last_chunk(Some(&trailers), &mut wire);
    let mut dec = BodyDecoder::new(Framing::Chunked, 1 << 16);
    let mut body = Vec::new();
    loop {
        match dec.decode(&mut wire).unwrap().unwrap() {
            BodyEvent::Data(d) => body.extend_from_slice(&d),
            BodyEvent::End { trailers: t } => {
                assert_eq!(t, Some(trailers));
                break;
            }
        }
    }
    assert_eq!(body, pieces.concat());
    assert!(wire.is_empty());
}
