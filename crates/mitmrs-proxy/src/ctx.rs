//! [`ProxyCtx`]: what every connection task shares: the addon chain, the CA, the
//! upstream TLS settings and the current configuration snapshot.

use std::sync::{Arc, RwLock};

use mitmrs_core::options::{Options, OptionsError};
use mitmrs_core::AddonChain;
use mitmrs_tls::{CertAuthority, UpstreamTls, UpstreamTlsOptions};

use crate::config::ProxyConfig;

/// A configuration snapshot: options resolved, plus the TLS client settings built from them.
pub struct Runtime {
    pub cfg: ProxyConfig,
    pub upstream_tls: Arc<UpstreamTls>,
}

impl Runtime {
    pub fn build(options: &Options) -> Result<Runtime, OptionsError> {
        let cfg = ProxyConfig::from_options(options)?;
        let upstream_tls = UpstreamTls::new(&UpstreamTlsOptions {
            insecure: cfg.ssl_insecure,
            extra_ca_file: cfg.ssl_verify_upstream_trusted_ca.clone(),
        })
        .map_err(|e| OptionsError::InvalidValue {
            name: "ssl_verify_upstream_trusted_ca".into(),
            value: cfg
                .ssl_verify_upstream_trusted_ca
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            expected: format!("a readable PEM file with CA certificates ({e})"),
        })?;
        Ok(Runtime {
            cfg,
            upstream_tls: Arc::new(upstream_tls),
        })
    }
}

pub struct ProxyCtx {
    pub chain: AddonChain,
    pub options: Options,
    pub ca: Arc<CertAuthority>,
    runtime: RwLock<Arc<Runtime>>,
}

impl ProxyCtx {
    pub fn new(chain: AddonChain, options: Options, ca: Arc<CertAuthority>, rt: Runtime) -> Self {
        Self {
            chain,
            options,
            ca,
            runtime: RwLock::new(Arc::new(rt)),
        }
    }

    /// The current snapshot; connections take one when they start.
    pub fn runtime(&self) -> Arc<Runtime> {
        match self.runtime.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn set_runtime(&self, rt: Runtime) {
        match self.runtime.write() {
            Ok(mut g) => *g = Arc::new(rt),
            Err(p) => *p.into_inner() = Arc::new(rt),
        }
    }
}
