//! Client configuration for connecting to servers (upstream).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::config::VERSIONS;
use crate::{provider, CaError};

/// Distinct ALPN lists kept; past this the map is cleared (it only ever
/// holds a handful: h2+http/1.1, http/1.1, none).
const MAX_CACHED_CONFIGS: usize = 16;

/// Options for connecting to servers.
#[derive(Clone, Debug, Default)]
pub struct UpstreamTlsOptions {
    /// Accept any server certificate (`-k`, mitmproxy's `ssl_insecure`).
    pub insecure: bool,
    /// `ssl_verify_upstream_trusted_ca`: a PEM file with one or more CA
    /// certificates trusted in addition to the webpki roots.
    pub extra_ca_file: Option<PathBuf>,
}

/// Builds the client configs used to connect to servers.
///
/// By default the server certificate is verified against the Mozilla roots
/// from `webpki-roots` plus the CAs in `extra_ca_file` (unlike mitmproxy,
/// where that option replaces the default roots). With `insecure`, any
/// certificate is accepted, but the handshake signatures are still checked
/// with the provider's algorithms. TLS 1.2 minimum, SNI sent.
#[derive(Debug)]
pub struct UpstreamTls {
    base: Arc<ClientConfig>,
    by_alpn: Mutex<HashMap<Vec<Vec<u8>>, Arc<ClientConfig>>>,
}

impl UpstreamTls {
    /// Builds the base configuration. A missing, unreadable or invalid
    /// `extra_ca_file` is an error naming the path and the option (it is
    /// checked even with `insecure`, so a typo never goes unnoticed).
    pub fn new(opts: &UpstreamTlsOptions) -> Result<Self, CaError> {
        let provider = provider();
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &opts.extra_ca_file {
            for cert in read_ca_file(path)? {
                roots.add(cert).map_err(|e| CaError::ExtraCaFile {
                    path: path.clone(),
                    reason: format!("certificate rejected as a trust anchor: {e}"),
                })?;
            }
        }
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(VERSIONS)
            // Invariant: ring's default provider supports both versions;
            // see `client_facing_config` and the `configs_build` test.
            .expect("ring's default provider supports TLS 1.2 and 1.3");
        let mut config = if opts.insecure {
            let verifier = AcceptAnyServerCert {
                algorithms: provider.signature_verification_algorithms,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        } else {
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.enable_sni = true;
        Ok(UpstreamTls {
            base: Arc::new(config),
            by_alpn: Mutex::new(HashMap::new()),
        })
    }

    /// A config offering exactly these ALPN protocols (cached per list).
    pub fn config(&self, alpn: &[Vec<u8>]) -> Arc<ClientConfig> {
        // The map is always consistent, so a poisoned lock is still usable.
        let mut map = self.by_alpn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(config) = map.get(alpn) {
            return config.clone();
        }
        if map.len() >= MAX_CACHED_CONFIGS {
            map.clear();
        }
        let mut config = (*self.base).clone();
        config.alpn_protocols = alpn.to_vec();
        let config = Arc::new(config);
        map.insert(alpn.to_vec(), config.clone());
        config
    }
}

fn read_ca_file(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let err = |reason: String| CaError::ExtraCaFile {
        path: path.clone(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let certs = rustls_pemfile::certs(&mut &bytes[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("no PEM \"CERTIFICATE\" found".into()));
    }
    Ok(certs)
}

/// `ssl_insecure`: accepts any server certificate, still checks signatures.
#[derive(Debug)]
struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
