//! TLS for mitmrs: a mitmproxy-compatible certificate authority and the
//! rustls configurations on both sides of the proxy.
//!
//! What it does:
//! * [`CertAuthority`] loads mitmproxy's CA from a confdir (`~/.mitmproxy`,
//!   `mitmproxy-ca.pem`: RSA PKCS#1 as mitmproxy writes it, or PKCS#8 / EC
//!   keys), or creates one with mitmproxy's file names and subject, so users
//!   keep the CA they already installed.
//! * It issues leaf certificates for hosts (from SNI / CONNECT, see
//!   [`LeafSpec::for_host`]) or copied from an upstream certificate
//!   ([`LeafSpec::from_upstream_cert`]), each with its own fresh ECDSA P-256
//!   key, cached in a bounded LRU cache.
//! * [`client_facing_config`] and [`UpstreamTls`] build the rustls server
//!   and client configs (TLS 1.2 and 1.3), and [`TlsInfo`] records the
//!   negotiated facts with mitmproxy's names.
//!
//! What it refuses to do:
//! * No crypto provider but ring, always passed explicitly (no reliance on
//!   rustls' process-wide default); no TLS below 1.2, no SSLv3.
//! * No signing leafs with the CA key (mitmproxy reuses it; we don't).
//! * No certificate for a name that is not a valid DNS name or IP address
//!   (names come from peers): that is an `Err`, never a panic.
//! * New CAs are ECDSA P-256, not RSA-2048: ring cannot generate RSA keys
//!   (it can sign with existing ones, so mitmproxy's RSA CAs load).
//! * No PKCS#12 files (`mitmproxy-ca-cert.p12`) and no `dhparam` file.
//! * No silent upstream trust: an unusable `ssl_verify_upstream_trusted_ca`
//!   file is an error, and "insecure" must be asked for.

use std::sync::{Arc, OnceLock};

pub use rustls;
pub use rustls_pki_types::CertificateDer;

mod ca;
mod config;
mod der;
mod error;
mod leaf;
mod upstream;

pub use ca::{CertAuthority, CA_CERT_CER_FILE, CA_CERT_PEM_FILE, CA_FILE, DEFAULT_CACHE_CAPACITY};
pub use config::{client_facing_config, tls_info_client_side, tls_info_server_side, TlsInfo};
pub use der::cert_to_pem;
pub use error::CaError;
pub use leaf::{LeafSpec, San};
pub use upstream::{UpstreamTls, UpstreamTlsOptions};

/// Installs ring as rustls' process-wide default provider, for code that
/// uses rustls' plain `builder()`. Idempotent: an already installed
/// provider is left as it is. This crate itself never depends on it.
pub fn install_crypto_provider() {
    // Err only means a default is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The ring provider every config of this crate is built with: ring's defaults,
/// with the SHA-256 suites preferred over the SHA-384 ones. Both are strong; the
/// SHA-256 ones cost less per handshake (SHA-384 runs SHA-512 in software on many
/// CPUs), and every proxied connection has two handshakes.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut p = rustls::crypto::ring::default_provider();
            p.cipher_suites.sort_by_key(|s| match s.suite() {
                rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
                rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => 1,
                rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => 2,
                _ => 3,
            });
            Arc::new(p)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shareable_across_tasks() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<CertAuthority>();
        send_sync::<UpstreamTls>();
        send_sync::<TlsInfo>();
        send_sync::<CaError>();
    }

    #[test]
    fn configs_build() {
        install_crypto_provider();
        install_crypto_provider();
        let upstream = UpstreamTls::new(&UpstreamTlsOptions::default()).unwrap();
        let a = upstream.config(&[b"h2".to_vec(), b"http/1.1".to_vec()]);
        let b = upstream.config(&[b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(upstream.config(&[]).alpn_protocols.is_empty());

        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signer = provider().key_provider.load_private_key(der).unwrap();
        let leaf = Arc::new(rustls::sign::CertifiedKey::new(
            vec![cert.der().clone()],
            signer,
        ));
        let server = client_facing_config(leaf, &[b"http/1.1".to_vec()]);
        assert_eq!(server.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
