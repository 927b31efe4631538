//! Request targets (RFC 9112 section 3.2).

use std::net::Ipv6Addr;

use crate::Error;

/// A parsed request target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestTarget {
    /// `/path?query` (origin form), also `*` (asterisk form, OPTIONS only) as path `"*"`.
    Origin { path: String },
    /// `http://host:port/path?query` (absolute form, as sent to a proxy).
    ///
    /// `scheme` is lower case; `port` defaults from the scheme (80/443) when absent;
    /// `path` is `"/"` when empty (and `"/?q"` for `http://h?q`); `host` has no
    /// brackets for IPv6; `authority` is the raw `host:port` text as sent.
    Absolute {
        scheme: String,
        authority: String,
        host: String,
        port: u16,
        path: String,
    },
    /// `host:port` (authority form, CONNECT only). The port is required; an IPv6
    /// host is written in brackets (`[::1]:443`) and stored without them.
    Authority {
        authority: String,
        host: String,
        port: u16,
    },
}

impl RequestTarget {
    /// Parses `raw` as the target of a request with `method`.
    pub(crate) fn parse(method: &str, raw: &str) -> Result<RequestTarget, Error> {
        let invalid = || Error::InvalidTarget {
            target: raw.to_owned(),
        };
        if raw.is_empty() || !raw.bytes().all(is_target_byte) {
            return Err(invalid());
        }
        if method == "CONNECT" {
            let (host, port) = parse_authority(raw, None).ok_or_else(invalid)?;
            return Ok(RequestTarget::Authority {
                authority: raw.to_owned(),
                host,
                port,
            });
        }
        if raw.starts_with('/') {
            return Ok(RequestTarget::Origin {
                path: raw.to_owned(),
            });
        }
        if raw == "*" {
            if method == "OPTIONS" {
                return Ok(RequestTarget::Origin {
                    path: raw.to_owned(),
                });
            }
            return Err(invalid());
        }
        // Absolute form: scheme "://" authority [path-abempty] ["?" query].
        // A byte search for ':' instead of a substring search for "://",
        // whose searcher setup cost more than the rest of this parse.
        let Some((scheme, rest)) = raw
            .split_once(':')
            .and_then(|(scheme, rest)| Some((scheme, rest.strip_prefix("//")?)))
        else {
            // Authority form (or garbage) with a method other than CONNECT.
            return Err(invalid());
        };
        if !is_scheme(scheme) {
            return Err(invalid());
        }
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(Error::UnsupportedScheme { scheme }),
        };
        let end = rest
            .bytes()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let (host, port) = parse_authority(authority, Some(default_port)).ok_or_else(invalid)?;
        let path = if path.is_empty() {
            "/".to_owned()
        } else if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        Ok(RequestTarget::Absolute {
            scheme,
            authority: authority.to_owned(),
            host,
            port,
            path,
        })
    }
}

/// Bytes allowed in a request target: visible ASCII, and non-ASCII (the target was
/// already checked to be UTF-8). Controls, space and DEL are not.
fn is_target_byte(b: u8) -> bool {
    b > 0x20 && b != 0x7f
}

/// `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// reg-name / IPv4address characters: unreserved, pct-encoded, sub-delims.
fn is_reg_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'%'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                )
        })
}

/// Parses `host [":" port]`. With `default_port` = None the port is required
/// (authority form); otherwise a missing or empty port takes the default.
/// Userinfo (`user@host`) is refused. Port 0 is refused.
fn parse_authority(s: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (v6, port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if !s.starts_with('[') && !is_reg_name(host) {
        return None;
    }
    let port = match port {
        None | Some("") => default_port?,
        Some(p) => parse_port(p)?,
    };
    Some((host.to_owned(), port))
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(port) => Some(port),
    }
}
