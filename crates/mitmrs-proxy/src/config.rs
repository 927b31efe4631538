//! [`ProxyConfig`]: the options the data path needs, resolved once from the option
//! registry into plain typed fields, so the hot path never touches the registry.
//! A new snapshot is taken whenever options change; each connection reads the
//! current one when it starts.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use mitmrs_core::mode::ProxyMode;
use mitmrs_core::options::{proxy_mode, size_option, Options, OptionsError};

/// When to connect to the server of a CONNECT tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionStrategy {
    /// At CONNECT time, before the client's TLS handshake (mitmproxy's default).
    Eager,
    /// At the first request.
    Lazy,
}

#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub confdir: PathBuf,
    pub ssl_insecure: bool,
    pub ssl_verify_upstream_trusted_ca: Option<PathBuf>,
    pub upstream_cert: bool,
    pub stream_large_bodies: Option<u64>,
    pub body_size_limit: Option<u64>,
    pub store_streamed_bodies: bool,
    pub connection_strategy: ConnectionStrategy,
    pub tcp_timeout: Duration,
    pub max_header_size: usize,
    pub max_connections: usize,
    /// `regular`, `reverse:…` or `socks5` (its `@` listen address is already in `listen`).
    pub mode: ProxyMode,
    pub keep_host_header: bool,
    /// Relay tunnels that do not look like TLS or HTTP as raw TCP.
    pub rawtcp: bool,
    /// `proxyauth` is set: SOCKS5 clients must authenticate (username/password).
    pub proxyauth: bool,
    /// Turn 101 upgrades to `websocket` into WebSocket flows.
    pub websocket: bool,
    pub stream_websockets: bool,
    /// Bytes of message content a WebSocket flow keeps.
    pub websocket_history: usize,
    pub websocket_max_message_size: u64,
    /// Offer HTTP/2 to clients (ALPN `h2`).
    pub http2: bool,
}

/// Expands a leading `~` to $HOME.
pub fn expand_home(p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    } else if p == "~" {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home);
        }
    }
    PathBuf::from(p)
}

fn invalid(name: &str, value: String, expected: &str) -> OptionsError {
    OptionsError::InvalidValue {
        name: name.into(),
        value,
        expected: expected.into(),
    }
}

impl ProxyConfig {
    /// Resolves the options; every error names the option and what is accepted.
    pub fn from_options(o: &Options) -> Result<Self, OptionsError> {
        let mode = proxy_mode(o)?;
        let host = match &mode.listen_host {
            Some(h) => h.clone(),
            None => o
                .get_str("listen_host")
                .unwrap_or_else(|| "127.0.0.1".into()),
        };
        let port = match mode.listen_port {
            Some(p) => i64::from(p),
            None => o
                .get_int("listen_port")
                .unwrap_or_else(|| i64::from(mode.default_port())),
        };
        let port = u16::try_from(port).map_err(|_| {
            invalid(
                "listen_port",
                port.to_string(),
                "a port number from 0 to 65535",
            )
        })?;
        let host_ip: std::net::IpAddr = if host.is_empty() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| {
                    invalid(
                        "listen_host",
                        host.clone(),
                        "an IP address such as 127.0.0.1, 0.0.0.0 or ::1",
                    )
                })?
        };
        let strategy = match o.get_str("connection_strategy").as_deref() {
            Some("lazy") => ConnectionStrategy::Lazy,
            _ => ConnectionStrategy::Eager,
        };
        let tcp_timeout = o.get_int("tcp_timeout").unwrap_or(600);
        if tcp_timeout <= 0 {
            return Err(invalid(
                "tcp_timeout",
                tcp_timeout.to_string(),
                "a positive number of seconds",
            ));
        }
        let max_header = size_option(o, "max_header_size")?.unwrap_or(64 * 1024);
        let max_connections = o.get_int("max_connections").unwrap_or(10_000);
        if max_connections <= 0 {
            return Err(invalid(
                "max_connections",
                max_connections.to_string(),
                "a positive number",
            ));
        }
        Ok(Self {
            listen: SocketAddr::new(host_ip, port),
            confdir: expand_home(
                &o.get_str("confdir")
                    .unwrap_or_else(|| "~/.mitmproxy".into()),
            ),
            ssl_insecure: o.get_bool("ssl_insecure"),
            ssl_verify_upstream_trusted_ca: o
                .get_str("ssl_verify_upstream_trusted_ca")
                .map(|p| expand_home(&p)),
            upstream_cert: o.get_bool("upstream_cert"),
            stream_large_bodies: size_option(o, "stream_large_bodies")?,
            body_size_limit: size_option(o, "body_size_limit")?,
            store_streamed_bodies: o.get_bool("store_streamed_bodies"),
            connection_strategy: strategy,
            tcp_timeout: Duration::from_secs(tcp_timeout as u64),
            max_header_size: usize::try_from(max_header).unwrap_or(usize::MAX),
            max_connections: max_connections as usize,
            mode,
            keep_host_header: o.get_bool("keep_host_header"),
            rawtcp: o.get_bool("rawtcp"),
            proxyauth: o.get_str("proxyauth").is_some_and(|s| !s.is_empty()),
            websocket: o.get_bool("websocket"),
            stream_websockets: o.get_bool("stream_websockets"),
            websocket_history: size_option(o, "websocket_history")?
                .map_or(16 << 20, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            websocket_max_message_size: size_option(o, "websocket_max_message_size")?
                .unwrap_or(256 << 20),
            http2: o.get_bool("http2"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(sets: &[&str]) -> SocketAddr {
        let o = Options::new();
        mitmrs_core::options::register_core_options(&o).unwrap();
        for s in sets {
            o.parse_set(s, false).unwrap();
        }
        ProxyConfig::from_options(&o).unwrap().listen
    }

    #[test]
    fn listen_port_defaults_by_mode_as_mitmproxy() {
        assert_eq!(listen(&[]).port(), 8080);
        assert_eq!(listen(&["mode=socks5"]).port(), 1080);
        assert_eq!(listen(&["mode=reverse:http://a:1"]).port(), 8080);
        assert_eq!(listen(&["mode=socks5", "listen_port=9000"]).port(), 9000);
        assert_eq!(
            listen(&["mode=socks5@127.0.0.2:9001", "listen_port=9000"]),
            "127.0.0.2:9001".parse().unwrap()
        );
    }
}
