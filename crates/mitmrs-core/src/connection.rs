//! Connection records: [`Client`] (the side that connected to us) and [`Server`]
//! (the side we connect to), with mitmproxy's field names so they can be written to
//! flow files field for field.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::now;

/// mitmproxy's `ConnectionState` as bit flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConnectionState {
    #[default]
    Closed,
    CanRead,
    CanWrite,
    Open,
}

/// mitmproxy's `transport_protocol`: TCP, or UDP (QUIC, DNS) in flows read from
/// files written by mitmproxy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TransportProtocol {
    #[default]
    Tcp,
    Udp,
}

impl TransportProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportProtocol::Tcp => "tcp",
            TransportProtocol::Udp => "udp",
        }
    }
}

/// A DER-encoded certificate, shared cheaply between flows.
pub type CertDer = Bytes;

/// TLS facts shared by both connection kinds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsFacts {
    /// TLS was established on this connection.
    pub tls: bool,
    /// The peer's certificate chain (DER), leaf first. Empty for the client side
    /// unless the client sent one.
    pub certificate_list: Arc<[CertDer]>,
    /// The negotiated ALPN protocol.
    pub alpn: Option<Bytes>,
    /// The ALPN protocols offered (by the client, or by us to the server).
    pub alpn_offers: Vec<Bytes>,
    /// The negotiated cipher suite, IANA name.
    pub cipher: Option<String>,
    /// The cipher suites offered.
    pub cipher_list: Vec<String>,
    /// "TLSv1.2" or "TLSv1.3".
    pub tls_version: Option<String>,
    /// The Server Name Indication sent by the client, or by us to the server.
    pub sni: Option<String>,
    pub timestamp_tls_setup: Option<f64>,
}

/// The connection from a client to the proxy (mitmproxy's `connection.Client`).
#[derive(Clone, Debug, PartialEq)]
pub struct Client {
    pub id: String,
    pub peername: SocketAddr,
    pub sockname: SocketAddr,
    pub state: ConnectionState,
    pub transport_protocol: TransportProtocol,
    pub error: Option<String>,
    pub tls: TlsFacts,
    /// DER of the certificate we presented to the client.
    pub mitmcert: Option<CertDer>,
    /// mitmproxy's proxy mode spec, e.g. "regular".
    pub proxy_mode: String,
    pub timestamp_start: f64,
    pub timestamp_end: Option<f64>,
}

impl Client {
    pub fn new(peername: SocketAddr, sockname: SocketAddr) -> Self {
        Self {
            id: crate::new_id(),
            peername,
            sockname,
            state: ConnectionState::Open,
            transport_protocol: TransportProtocol::Tcp,
            error: None,
            tls: TlsFacts::default(),
            mitmcert: None,
            proxy_mode: "regular".into(),
            timestamp_start: now(),
            timestamp_end: None,
        }
    }
}

/// The connection from the proxy to a server (mitmproxy's `connection.Server`).
#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    pub id: String,
    /// Where we want to connect: (host, port) as named by the client.
    pub address: Option<(String, u16)>,
    pub peername: Option<SocketAddr>,
    pub sockname: Option<SocketAddr>,
    pub state: ConnectionState,
    pub transport_protocol: TransportProtocol,
    pub error: Option<String>,
    pub tls: TlsFacts,
    pub timestamp_start: Option<f64>,
    pub timestamp_tcp_setup: Option<f64>,
    pub timestamp_end: Option<f64>,
    /// An upstream proxy this connection goes through (for later modes).
    pub via: Option<String>,
}

impl Server {
    pub fn new(address: Option<(String, u16)>) -> Self {
        Self {
            id: crate::new_id(),
            address,
            peername: None,
            sockname: None,
            state: ConnectionState::Closed,
            transport_protocol: TransportProtocol::Tcp,
            error: None,
            tls: TlsFacts::default(),
            timestamp_start: None,
            timestamp_tcp_setup: None,
            timestamp_end: None,
            via: None,
        }
    }

    /// "host:port" of [`Server::address`], or "" if unset.
    pub fn address_str(&self) -> String {
        match &self.address {
            Some((h, p)) => format_host_port(h, *p),
            None => String::new(),
        }
    }
}

/// Formats a host and port, bracketing IPv6 literals.
pub fn format_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
