//! TLS helpers: a self-generated CA + leaf certificate for the origin (rcgen
//! with ring), rustls server/client configs, and PEM loading.
//!
//! The origin writes its CA certificate as PEM so the proxies under test can
//! be told to trust it (`ssl_verify_upstream_trusted_ca`); the load client
//! trusts whatever CA file it is given (the proxy's CA for intercepted
//! traffic, the origin's CA for direct TLS).

use anyhow::{anyhow, Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;

/// The crypto provider used everywhere in the bench (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA certificate (PEM) plus a server config whose leaf is signed by it and
/// valid for `127.0.0.1`, `::1` and `localhost`.
pub struct OriginTls {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

/// Generate the origin CA and leaf. ALPN offers h2 and http/1.1.
pub fn origin_tls() -> Result<OriginTls> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mitmrs-bench origin CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
    ])?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let leaf = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key)?;

    let key =
        PrivateKeyDer::try_from(leaf_key.serialize_der()).map_err(|e| anyhow!("leaf key: {e}"))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(OriginTls {
        ca_pem: ca_cert.pem(),
        server_config: Arc::new(cfg),
    })
}

/// Writes a self-signed certificate for 127.0.0.1 and its key into `dir`
/// (`cert.pem`, `key.pem`), for a TLS listener whose clients do not verify it
/// (nginx in M10; h2load does not check certificates).
pub fn write_self_signed(dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = params.self_signed(&key)?;
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem())?;
    std::fs::write(&k, key.serialize_pem())?;
    Ok((c, k))
}

/// Load every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("no certificate in {}", path.display()));
    }
    Ok(certs)
}

/// A client config trusting only the CA(s) in `ca_file`, ALPN http/1.1, no
/// session resumption (every new connection does a full handshake).
pub fn client_config(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(ca_file)? {
        roots.add(cert)?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// The rustls server name for a host (IP literal or DNS name).
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| anyhow!("bad server name {host}: {e}"))
}
