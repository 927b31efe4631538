//! Proxy mode specs (the `mode` option, `--mode`), in mitmproxy's syntax:
//! `MODE[:CONFIGURATION][@[LISTEN_HOST:]LISTEN_PORT]`, e.g. `regular`,
//! `reverse:http://127.0.0.1:8000` or `reverse:https://example.com@8081`.
//!
//! Written by hand: the syntax is mitmproxy's and small (one `rpartition('@')`, one
//! `partition(':')`, then a server spec `[scheme://]host[:port][/]`).
//!
//! Supported: `regular`, `socks5`, and `reverse:` with an `http` or `https` target
//! (the scheme defaults to `https` and the port to the scheme's, as in mitmproxy).
//! Every other mode or reverse scheme is refused with a message saying so.

use std::fmt;

/// A parsed `mode` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyMode {
    /// The spec as given, e.g. `reverse:http://127.0.0.1:8000@8081` (mitmproxy's
    /// `client.proxy_mode` text).
    pub spec: String,
    pub kind: ModeKind,
    /// From `@HOST:PORT`: overrides `listen_host`.
    pub listen_host: Option<String>,
    /// From `@PORT` or `@HOST:PORT`: overrides `listen_port`.
    pub listen_port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModeKind {
    /// An explicit HTTP(S) proxy.
    Regular,
    /// Every request goes to one server.
    Reverse(ReverseTarget),
    /// A SOCKS5 proxy (no authentication, CONNECT).
    Socks5,
}

/// Where a reverse proxy sends everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReverseTarget {
    /// TLS towards the server (`https://`).
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl ReverseTarget {
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

/// Why a mode spec was refused; the text names the spec and what is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeError(pub String);

impl fmt::Display for ModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ModeError {}

const LATER: &[&str] = &[
    "transparent",
    "upstream",
    "wireguard",
    "local",
    "dns",
    "tun",
];

impl ProxyMode {
    pub fn regular() -> Self {
        Self {
            spec: "regular".into(),
            kind: ModeKind::Regular,
            listen_host: None,
            listen_port: None,
        }
    }

    pub fn parse(spec: &str) -> Result<Self, ModeError> {
        let (head, listen_at) = match spec.rfind('@') {
            Some(i) if i > 0 => (&spec[..i], &spec[i + 1..]),
            _ => (spec, ""),
        };
        let (mode, data) = match head.find(':') {
            Some(i) => (&head[..i], Some(&head[i + 1..])),
            None => (head, None),
        };
        let (listen_host, listen_port) = if listen_at.is_empty() {
            (None, None)
        } else {
            let (host, port) = match listen_at.rfind(':') {
                Some(i) => (Some(listen_at[..i].to_string()), &listen_at[i + 1..]),
                None => (None, listen_at),
            };
            let port = port.parse::<u16>().map_err(|_| {
                ModeError(format!(
                    "invalid listen port {port:?} after '@' (a port number from 0 to 65535)"
                ))
            })?;
            (host, Some(port))
        };
        let kind = match mode.to_ascii_lowercase().as_str() {
            "regular" => {
                if data.is_some_and(|d| !d.is_empty()) {
                    return Err(ModeError("regular mode takes no configuration".into()));
                }
                ModeKind::Regular
            }
            "reverse" => ModeKind::Reverse(parse_reverse(data.unwrap_or(""))?),
            "socks5" => {
                if data.is_some_and(|d| !d.is_empty()) {
                    return Err(ModeError("socks5 mode takes no configuration".into()));
                }
                ModeKind::Socks5
            }
            m if LATER.contains(&m) => {
                return Err(ModeError(format!(
                    "{m} mode is not built yet: mitmrs runs \"regular\", \"reverse:http(s)://HOST[:PORT]\" and \"socks5\" for now"
                )))
            }
            _ => {
                return Err(ModeError(format!(
                    "unknown mode {mode:?}: expected \"regular\", \"reverse:http(s)://HOST[:PORT]\" or \"socks5\""
                )))
            }
        };
        Ok(Self {
            spec: spec.to_string(),
            kind,
            listen_host,
            listen_port,
        })
    }

    /// The reverse target, in reverse mode.
    pub fn reverse(&self) -> Option<&ReverseTarget> {
        match &self.kind {
            ModeKind::Reverse(t) => Some(t),
            ModeKind::Regular | ModeKind::Socks5 => None,
        }
    }

    /// The port to listen on when neither the spec nor `listen_port` names one
    /// (mitmproxy's `default_port`).
    pub fn default_port(&self) -> u16 {
        match self.kind {
            ModeKind::Socks5 => 1080,
            ModeKind::Regular | ModeKind::Reverse(_) => 8080,
        }
    }

    /// How the listening line names this mode (mitmdump's wording).
    pub fn description(&self) -> String {
        match &self.kind {
            ModeKind::Regular => "HTTP(S) proxy".into(),
            ModeKind::Reverse(t) => format!(
                "reverse proxy to {}://{}",
                t.scheme(),
                crate::connection::format_host_port(&t.host, t.port)
            ),
            ModeKind::Socks5 => "SOCKS v5 proxy".into(),
        }
    }
}

/// `[scheme://]host[:port][/]`, mitmproxy's server spec (scheme default `https`).
fn parse_reverse(data: &str) -> Result<ReverseTarget, ModeError> {
    let bad = |why: &str| {
        ModeError(format!(
            "invalid reverse proxy specification {data:?}: {why} (expected reverse:http(s)://HOST[:PORT], e.g. reverse:http://127.0.0.1:8000)"
        ))
    };
    if data.is_empty() {
        return Err(bad("no server given"));
    }
    let (scheme, rest) = match data.find("://") {
        Some(i) => (&data[..i], &data[i + 3..]),
        None => ("https", data),
    };
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        "http3" | "tls" | "dtls" | "tcp" | "udp" | "dns" | "quic" => {
            return Err(bad(&format!(
                "the {scheme} scheme is not built yet; http and https are"
            )))
        }
        _ => return Err(bad(&format!("unknown scheme {scheme:?}"))),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err(bad("no path allowed"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let end = v6.find(']').ok_or_else(|| bad("unclosed '['"))?;
        let host = &v6[..end];
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad("invalid IPv6 address"))?;
        (host, &v6[end + 1..])
    } else {
        match rest.find(':') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        }
    };
    let port = if port.is_empty() {
        if tls {
            443
        } else {
            80
        }
    } else {
        let digits = port
            .strip_prefix(':')
            .ok_or_else(|| bad(&format!("unexpected {port:?} after the host")))?;
        match digits.parse::<u16>() {
            Ok(p) if p > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(bad(&format!("invalid port {digits:?}"))),
        }
    };
    // mitmproxy's check: labels of letters, digits, '-' and '_', up to 63 bytes.
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let valid = host.parse::<std::net::IpAddr>().is_ok()
        || (!host.is_empty()
            && host.len() <= 255
            && host.trim_end_matches('.').split('.').all(label_ok));
    if !valid {
        return Err(bad(&format!("invalid host {host:?}")));
    }
    Ok(ReverseTarget {
        tls,
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(spec: &str) -> (ReverseTarget, Option<String>, Option<u16>) {
        let m = ProxyMode::parse(spec).unwrap();
        (m.reverse().cloned().unwrap(), m.listen_host, m.listen_port)
    }

    fn target(tls: bool, host: &str, port: u16) -> ReverseTarget {
        ReverseTarget {
            tls,
            host: host.into(),
            port,
        }
    }

    #[test]
    fn regular_and_listen_suffix() {
        assert_eq!(ProxyMode::parse("regular").unwrap(), ProxyMode::regular());
        let m = ProxyMode::parse("regular@8081").unwrap();
        assert_eq!((m.listen_host, m.listen_port), (None, Some(8081)));
        let m = ProxyMode::parse("regular@0.0.0.0:8081").unwrap();
        assert_eq!(
            (m.listen_host.as_deref(), m.listen_port),
            (Some("0.0.0.0"), Some(8081))
        );
        assert!(ProxyMode::parse("regular@x").is_err());
        assert!(ProxyMode::parse("regular@70000").is_err());
    }

    #[test]
    fn socks5_and_default_ports() {
        let m = ProxyMode::parse("socks5").unwrap();
        assert_eq!((m.kind.clone(), m.default_port()), (ModeKind::Socks5, 1080));
        assert_eq!(
            ProxyMode::parse("socks5@1081").unwrap().listen_port,
            Some(1081)
        );
        assert_eq!(ProxyMode::regular().default_port(), 8080);
    }

    #[test]
    fn reverse_specs_as_mitmproxy_reads_them() {
        assert_eq!(
            rev("reverse:http://127.0.0.1:8000").0,
            target(false, "127.0.0.1", 8000)
        );
        assert_eq!(
            rev("reverse:example.com").0,
            target(true, "example.com", 443)
        );
        assert_eq!(
            rev("reverse:http://example.com/").0,
            target(false, "example.com", 80)
        );
        assert_eq!(
            rev("reverse:https://[::1]:9000").0,
            target(true, "::1", 9000)
        );
        let (t, h, p) = rev("reverse:https://example.com@127.0.0.1:8443");
        assert_eq!(t, target(true, "example.com", 443));
        assert_eq!((h.as_deref(), p), (Some("127.0.0.1"), Some(8443)));
        assert_eq!(
            ProxyMode::parse("reverse:http://a:1@2").unwrap().spec,
            "reverse:http://a:1@2"
        );
    }

    #[test]
    fn refusals_say_why() {
        for (spec, says) in [
            ("reverse", "no server given"),
            ("reverse:", "no server given"),
            ("reverse:http://example.com/path", "no path allowed"),
            ("reverse:http://example.com:0", "invalid port"),
            ("reverse:http://example.com:99999", "invalid port"),
            ("reverse:ftp://example.com", "unknown scheme"),
            ("reverse:tcp://example.com:22", "not built yet"),
            ("reverse:http://exa mple.com", "invalid host"),
            ("reverse:http://[::1", "unclosed"),
            ("reverse:http://[::1]x", "unexpected \"x\""),
            ("reverse:http://example.com:+80", "invalid port"),
            ("socks5:x", "no configuration"),
            ("transparent", "not built yet"),
            ("upstream:http://proxy:3128", "not built yet"),
            ("bogus", "unknown mode"),
            ("regular:x", "no configuration"),
        ] {
            let e = ProxyMode::parse(spec).unwrap_err().0;
            assert!(e.contains(says), "{spec}: {e}");
        }
    }
}
