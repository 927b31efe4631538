//! SOCKS5 (RFC 1928) server side, as mitmproxy's `socks5` mode speaks it: the "no
//! authentication" method, or username/password (RFC 1929) when `proxyauth` is
//! set, and the CONNECT command, with IPv4, IPv6 and domain-name targets. After the handshake the connection is a tunnel to the target, like a
//! CONNECT tunnel (TLS is intercepted, HTTP is parsed, anything else relayed).
//!
//! Written by hand: the two messages are a few bytes each, and the crates.io SOCKS
//! servers own the socket and the connect step, where we need the bytes to stay in
//! our read buffer (a client may send its first TLS record with the request) and
//! the server connection to go through the `server_connect` hooks. The parsers
//! are sans-IO: they look at a buffer and say how much they used, or that they
//! need more.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const VERSION: u8 = 0x05;
const METHOD_NO_AUTH: u8 = 0x00;
const METHOD_USER_PASS: u8 = 0x02;
const CMD_CONNECT: u8 = 0x01;
const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;

/// The answer to a greeting that offers "no authentication".
pub const METHOD_ACCEPTED: [u8; 2] = [VERSION, METHOD_NO_AUTH];
/// The answer to a greeting that offers username/password.
pub const USER_PASS_CHOSEN: [u8; 2] = [VERSION, METHOD_USER_PASS];
/// RFC 1929's answers: the subnegotiation's version (1), then success or not.
pub const AUTH_SUCCEEDED: [u8; 2] = [0x01, 0x00];
pub const AUTH_FAILED: [u8; 2] = [0x01, 0x01];
/// The answer to a greeting that does not.
pub const NO_ACCEPTABLE_METHODS: [u8; 2] = [VERSION, 0xff];

/// Reply codes (RFC 1928 section 6) we send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Succeeded = 0x00,
    HostUnreachable = 0x04,
    CommandNotSupported = 0x07,
    AddressTypeNotSupported = 0x08,
}

impl Reply {
    /// The reply message; like mitmproxy, the bound address is always 0.0.0.0:0.
    pub fn bytes(self) -> [u8; 10] {
        [VERSION, self as u8, 0x00, ATYP_IPV4, 0, 0, 0, 0, 0, 0]
    }
}

/// A handshake the proxy cannot go on with: what to log, and what to answer
/// (if anything) before closing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub answer: Option<Vec<u8>>,
}

/// Parses the client's greeting (VER, NMETHODS, METHODS). `Ok(None)`: need more
/// bytes; `Ok(Some(n))`: a greeting of `n` bytes offering the method we need
/// ("no authentication", or username/password if `user_pass`).
pub fn parse_greeting(buf: &[u8], user_pass: bool) -> Result<Option<usize>, Refusal> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[0] != VERSION {
        return Err(wrong_version(buf));
    }
    let n = 2 + usize::from(buf[1]);
    if buf.len() < n {
        return Ok(None);
    }
    let (method, name) = match user_pass {
        true => (METHOD_USER_PASS, "user/password"),
        false => (METHOD_NO_AUTH, "no"),
    };
    if !buf[2..n].contains(&method) {
        return Err(Refusal {
            message: format!("Client does not support SOCKS5 with {name} authentication."),
            answer: Some(NO_ACCEPTABLE_METHODS.to_vec()),
        });
    }
    Ok(Some(n))
}

/// Parses RFC 1929's request (VER, ULEN, UNAME, PLEN, PASSWD) as mitmproxy does
/// (the version byte is not checked; bytes that are not UTF-8 become `\xNN`).
/// `Some((username, password, n))`, or `None`: need more bytes.
pub fn parse_user_pass(buf: &[u8]) -> Option<(String, String, usize)> {
    if buf.len() < 3 {
        return None;
    }
    let ulen = usize::from(buf[1]);
    let plen = usize::from(*buf.get(2 + ulen)?);
    let n = 3 + ulen + plen;
    if buf.len() < n {
        return None;
    }
    Some((
        backslash_replace(&buf[2..2 + ulen]),
        backslash_replace(&buf[3 + ulen..n]),
        n,
    ))
}

/// Python's `decode("utf-8", "backslashreplace")`.
fn backslash_replace(b: &[u8]) -> String {
    let mut out = String::new();
    for chunk in b.utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

fn wrong_version(buf: &[u8]) -> Refusal {
    let looks_http = buf.len() >= 3 && buf[..3].iter().all(u8::is_ascii_uppercase);
    let guess = if looks_http {
        "Probably not a SOCKS request but a regular HTTP request (this port runs socks5 mode). "
    } else {
        ""
    };
    Refusal {
        message: format!(
            "{guess}Invalid SOCKS version. Expected 0x05, got 0x{:x}",
            buf[0]
        ),
        answer: None,
    }
}

/// Parses the CONNECT request (VER, CMD, RSV, ATYP, DST.ADDR, DST.PORT).
/// `Ok(Some((host, port, n)))`: the target and the request's length.
pub fn parse_request(buf: &[u8]) -> Result<Option<(String, u16, usize)>, Refusal> {
    if buf.len() < 5 {
        return Ok(None);
    }
    if buf[..3] != [VERSION, CMD_CONNECT, 0x00] {
        return Err(Refusal {
            message: format!(
                "Unsupported SOCKS5 request: {:02x?} (only CONNECT is supported)",
                &buf[..3]
            ),
            answer: Some(Reply::CommandNotSupported.bytes().to_vec()),
        });
    }
    let n = match buf[3] {
        ATYP_IPV4 => 4 + 4 + 2,
        ATYP_IPV6 => 4 + 16 + 2,
        ATYP_DOMAIN => 4 + 1 + usize::from(buf[4]) + 2,
        other => {
            return Err(Refusal {
                message: format!("Unknown SOCKS5 address type: {other}"),
                answer: Some(Reply::AddressTypeNotSupported.bytes().to_vec()),
            })
        }
    };
    if buf.len() < n {
        return Ok(None);
    }
    let addr = &buf[4..n - 2];
    let host = match buf[3] {
        ATYP_IPV4 => Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string(),
        ATYP_IPV6 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(addr);
            Ipv6Addr::from(octets).to_string()
        }
        _ => {
            let name = &addr[1..];
            if name.is_empty() || !name.iter().all(|c| c.is_ascii_graphic()) {
                return Err(Refusal {
                    message: format!(
                        "Invalid SOCKS5 host name: {:?}",
                        String::from_utf8_lossy(name)
                    ),
                    answer: Some(Reply::HostUnreachable.bytes().to_vec()),
                });
            }
            String::from_utf8_lossy(name).into_owned()
        }
    };
    let port = u16::from_be_bytes([buf[n - 2], buf[n - 1]]);
    Ok(Some((host, port, n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(atyp: u8, addr: &[u8], port: u16) -> Vec<u8> {
        let mut v = vec![VERSION, CMD_CONNECT, 0, atyp];
        v.extend_from_slice(addr);
        v.extend_from_slice(&port.to_be_bytes());
        v
    }

    #[test]
    fn greetings() {
        assert_eq!(parse_greeting(b"", false), Ok(None));
        assert_eq!(parse_greeting(&[5], false), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 2], false), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 2, 0, 0x16], false), Ok(Some(4)));
        let e = parse_greeting(&[5, 1, 2], false).unwrap_err();
        assert_eq!(e.answer, Some(vec![5, 0xff]));
        assert_eq!(parse_greeting(&[5, 1, 2], true), Ok(Some(3)));
        let e = parse_greeting(&[5, 1, 0], true).unwrap_err();
        assert!(e.message.contains("user/password"), "{}", e.message);
        let e = parse_greeting(b"GET / HTTP/1.1", false).unwrap_err();
        assert!(e.message.contains("regular HTTP request"), "{}", e.message);
        assert!(e.message.contains("got 0x47"), "{}", e.message);
        assert_eq!(
            parse_greeting(&[4], false),
            Ok(None),
            "two bytes first, as mitmproxy"
        );
        assert!(parse_greeting(&[4, 1], false).is_err());
        let crlf = request(ATYP_DOMAIN, b"\x03a\r\n", 80);
        assert!(parse_request(&crlf)
            .unwrap_err()
            .message
            .contains("host name"));
    }

    #[test]
    fn user_pass() {
        assert_eq!(parse_user_pass(&[1, 1]), None);
        assert_eq!(parse_user_pass(&[1, 1, b'u', 2, b'p']), None);
        assert_eq!(
            parse_user_pass(&[1, 1, b'u', 2, b'p', 0xff, 5]),
            Some(("u".into(), "p\\xff".into(), 6))
        );
    }

    #[test]
    fn requests() {
        let r = request(ATYP_IPV4, &[127, 0, 0, 1], 8080);
        assert_eq!(parse_request(&r), Ok(Some(("127.0.0.1".into(), 8080, 10))));
        let mut r = request(ATYP_DOMAIN, b"\x0bexample.com", 443);
        let n = r.len();
        r.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(parse_request(&r), Ok(Some(("example.com".into(), 443, n))));
        let r = request(ATYP_IPV6, &Ipv6Addr::LOCALHOST.octets(), 1);
        assert_eq!(parse_request(&r), Ok(Some(("::1".into(), 1, 22))));
        let bind = [VERSION, 0x02, 0, ATYP_IPV4, 1, 2, 3, 4, 0, 80];
        assert_eq!(
            parse_request(&bind).unwrap_err().answer,
            Some(Reply::CommandNotSupported.bytes().to_vec())
        );
        let bad_atyp = [VERSION, CMD_CONNECT, 0, 9, 0];
        assert_eq!(
            parse_request(&bad_atyp).unwrap_err().answer,
            Some(Reply::AddressTypeNotSupported.bytes().to_vec())
        );
    }

    proptest! {
        /// Arbitrary bytes never panic, and never claim more bytes than given.
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Some(n)) = parse_greeting(&buf, buf.first() == Some(&0)) {
                prop_assert!(n <= buf.len());
            }
            if let Some((_, _, n)) = parse_user_pass(&buf) {
                prop_assert!(n <= buf.len());
            }
            if let Ok(Some((_, _, n))) = parse_request(&buf) {
                prop_assert!(n <= buf.len());
            }
        }

        /// A request cut anywhere asks for more, and whole gives the target back.
        #[test]
        fn any_prefix_needs_more(
            host in "[a-z0-9.-]{1,255}",
            port in any::<u16>(),
            extra in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut r = vec![VERSION, CMD_CONNECT, 0, ATYP_DOMAIN, host.len() as u8];
            r.extend_from_slice(host.as_bytes());
            r.extend_from_slice(&port.to_be_bytes());
            let n = r.len();
            for cut in 0..n {
                prop_assert_eq!(parse_request(&r[..cut]), Ok(None));
            }
            r.extend_from_slice(&extra);
            prop_assert_eq!(parse_request(&r), Ok(Some((host, port, n))));
        }
    }
}
