//! Client-facing server configuration and the connection facts recorded
//! on flows ([`TlsInfo`]).

use std::sync::Arc;

use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConnection, ProtocolVersion, ServerConfig, ServerConnection};
use rustls_pki_types::CertificateDer;

use crate::provider;

/// TLS 1.3 and 1.2: the versions offered on both sides.
pub(crate) static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Server-side (towards the client) rustls config presenting `leaf`, TLS
/// 1.2 minimum, offering the given ALPN protocols (may be empty).
pub fn client_facing_config(leaf: Arc<CertifiedKey>, alpn: &[Vec<u8>]) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        // Invariant: ring's default provider (with the `tls12` feature this
        // workspace enables) has cipher suites and key exchange groups for
        // both TLS 1.3 and 1.2, which is all this checks; the unit test
        // `configs_build` exercises it.
        .expect("ring's default provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(leaf)));
    config.alpn_protocols = alpn.to_vec();
    // Pick the cipher suite by our order (SHA-256 suites first, see `provider`),
    // not the client's: clients such as rustls list AES-256/SHA-384 first, and its
    // key schedule runs SHA-512 in software on many CPUs (M3: ~5% of the proxy's
    // CPU per connection). Every suite offered is a strong TLS 1.3/1.2 AEAD suite.
    config.ignore_client_order = true;
    // One bounded session cache for every client-facing config (a config is made
    // per connection), so returning clients can resume instead of a full handshake.
    // rustls checks on resumption that the SNI matches the original session.
    config.session_storage = session_cache();
    Arc::new(config)
}

/// The most TLS sessions kept for client resumption.
const SESSION_CACHE_SIZE: usize = 4096;

fn session_cache() -> Arc<dyn rustls::server::StoresServerSessions> {
    static CACHE: std::sync::OnceLock<Arc<rustls::server::ServerSessionMemoryCache>> =
        std::sync::OnceLock::new();
    CACHE
        .get_or_init(|| rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_SIZE))
        .clone()
}

/// Connection facts recorded on flows, with mitmproxy's names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// Server name indication.
    pub sni: Option<String>,
    /// Negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
    /// "TLSv1.2" / "TLSv1.3", as mitmproxy writes them.
    pub tls_version: Option<String>,
    /// IANA cipher suite name, e.g. "TLS_AES_128_GCM_SHA256".
    pub cipher: Option<String>,
    /// The certificates the peer sent (leaf first); empty if none.
    pub certificate_list: Vec<CertificateDer<'static>>,
}

/// Facts about a connection with a client (we are the TLS server); the
/// SNI is the one the client sent.
pub fn tls_info_client_side(conn: &ServerConnection) -> TlsInfo {
    TlsInfo {
        sni: conn.server_name().map(str::to_owned),
        ..common(&**conn)
    }
}

/// Facts about a connection with a server (we are the TLS client); `sni`
/// is what we sent, since rustls does not report it back.
pub fn tls_info_server_side(conn: &ClientConnection, sni: Option<String>) -> TlsInfo {
    TlsInfo {
        sni,
        ..common(&**conn)
    }
}

fn common<Data>(conn: &rustls::ConnectionCommon<Data>) -> TlsInfo {
    TlsInfo {
        sni: None,
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        tls_version: conn.protocol_version().map(version_name),
        cipher: conn
            .negotiated_cipher_suite()
            .map(|suite| cipher_name(suite.suite())),
        certificate_list: conn
            .peer_certificates()
            .map(<[CertificateDer<'static>]>::to_vec)
            .unwrap_or_default(),
    }
}

/// OpenSSL's / mitmproxy's protocol version names.
fn version_name(version: ProtocolVersion) -> String {
    match version {
        ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        ProtocolVersion::TLSv1_1 => "TLSv1.1".into(),
        ProtocolVersion::TLSv1_0 => "TLSv1".into(),
        ProtocolVersion::SSLv3 => "SSLv3".into(),
        other => format!("{other:?}"),
    }
}

/// IANA name: rustls spells TLS 1.3 suites "TLS13_...", IANA "TLS_...".
fn cipher_name(suite: rustls::CipherSuite) -> String {
    match suite.as_str() {
        Some(name) => match name.strip_prefix("TLS13_") {
            Some(rest) => format!("TLS_{rest}"),
            None => name.to_owned(),
        },
        None => format!("0x{:04X}", u16::from(suite)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            cipher_name(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            cipher_name(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(cipher_name(rustls::CipherSuite::from(0x1234)), "0x1234");
        assert_eq!(version_name(ProtocolVersion::TLSv1_2), "TLSv1.2");
        assert_eq!(version_name(ProtocolVersion::TLSv1_3), "TLSv1.3");
    }
}
