//! The certificate authority: loading mitmproxy's CA files or creating new
//! ones, and issuing (cached) leaf certificates.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256,
};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pemfile::Item;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::der::{self, OID_P256, OID_P384};
use crate::leaf::{self, LeafSpec};
use crate::{provider, CaError};

/// Key and certificate, as mitmproxy names it.
pub const CA_FILE: &str = "mitmproxy-ca.pem";
/// Certificate only (PEM).
pub const CA_CERT_PEM_FILE: &str = "mitmproxy-ca-cert.pem";
/// Certificate only, same PEM content (mitmproxy writes PEM here too).
pub const CA_CERT_CER_FILE: &str = "mitmproxy-ca-cert.cer";
/// Default number of leaf certificates kept in memory.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

/// CA validity, as mitmproxy (`CA_EXPIRY`, 10 years).
const CA_VALIDITY: Duration = Duration::days(3650);
const CA_BACKDATE: Duration = Duration::days(2);
/// Subject CN and O of a new CA, the same as mitmproxy's.
const CA_NAME: &str = "mitmproxy";

/// mitmproxy-compatible certificate authority stored in a confdir
/// (default `~/.mitmproxy`).
///
/// Files read and written:
/// * `mitmproxy-ca.pem`: private key then certificate (mode 0600).
/// * `mitmproxy-ca-cert.pem` and `mitmproxy-ca-cert.cer`: the certificate
///   in PEM (both, as mitmproxy does), for installing in clients.
///
/// Not written: `mitmproxy-ca-cert.p12` / `mitmproxy-ca.p12` (no
/// well-kept PKCS#12 writer is available without another crypto backend)
/// and `mitmproxy-dhparam.pem` (not needed by rustls).
///
/// A new CA gets an ECDSA P-256 key, not RSA-2048 like mitmproxy's: ring
/// cannot generate RSA keys. Existing RSA CAs made by mitmproxy load fine.
pub struct CertAuthority {
    confdir: PathBuf,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    /// Re-signed copy of the CA cert; only its subject name, key identifier
    /// and key usages are used, to sign leafs exactly like the original.
    issuer: rcgen::Certificate,
    key: KeyPair,
    provider: Arc<CryptoProvider>,
    cache: LeafCache,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("confdir", &self.confdir)
            .field("cache_capacity", &self.cache.capacity)
            .finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// Loads `<confdir>/mitmproxy-ca.pem` (private key in PKCS#1 "RSA
    /// PRIVATE KEY", PKCS#8 "PRIVATE KEY" or SEC1 "EC PRIVATE KEY" form,
    /// plus the certificate), or, if it does not exist, creates the confdir
    /// (mode 0700 if new) and a new CA with mitmproxy's file names.
    pub fn load_or_create(confdir: &Path) -> Result<Self, CaError> {
        let path = confdir.join(CA_FILE);
        match fs::read(&path) {
            Ok(bytes) => Self::load(confdir, &path, &bytes),
            Err(e) if e.kind() == ErrorKind::NotFound => Self::create(confdir, &path),
            Err(source) => Err(CaError::Io {
                path,
                action: "read",
                source,
            }),
        }
    }

    /// Replaces the leaf cache by an empty one holding at most `capacity`
    /// leafs (at least 1).
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache = LeafCache::new(capacity);
        self
    }

    /// The CA certificate (DER).
    pub fn ca_cert_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The CA certificate (PEM).
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The configuration directory the CA lives in.
    pub fn confdir(&self) -> &Path {
        &self.confdir
    }

    /// A leaf certificate and its private key (chain = [leaf, CA]), cached.
    ///
    /// Each leaf gets its own fresh ECDSA P-256 key (never the CA key).
    /// Invalid names (they come from peers) give `Err`, never a panic.
    pub fn leaf(&self, spec: &LeafSpec) -> Result<Arc<CertifiedKey>, CaError> {
        if let Some(hit) = self.cache.get(spec) {
            return Ok(hit);
        }
        // Generated outside the lock; a concurrent miss for the same spec
        // keeps whichever was inserted first, so callers share one Arc.
        let fresh = leaf::issue(spec, &self.issuer, &self.key, &self.ca_der, &self.provider)?;
        Ok(self.cache.insert(spec, fresh))
    }

    fn load(confdir: &Path, path: &Path, bytes: &[u8]) -> Result<Self, CaError> {
        let file_err = |reason: String| CaError::CaFile {
            path: path.to_owned(),
            reason,
        };
        let key_err = |reason: String| CaError::CaKey {
            path: path.to_owned(),
            reason,
        };
        let cert_err = |reason: String| CaError::CaCert {
            path: path.to_owned(),
            reason,
        };

        let mut key = None;
        let mut cert = None;
        for item in rustls_pemfile::read_all(&mut &bytes[..]) {
            let item = item.map_err(|e| file_err(format!("bad PEM: {e}")))?;
            match item {
                Item::Pkcs1Key(k) if key.is_none() => {
                    let pkcs8 = PrivatePkcs8KeyDer::from(der::pkcs1_to_pkcs8(k.secret_pkcs1_der()));
                    let kp = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &PKCS_RSA_SHA256)
                        .map_err(|e| {
                            key_err(format!(
                                "RSA key rejected (ring needs 2048 to 8192 bits): {e}"
                            ))
                        })?;
                    key = Some(kp);
                }
                Item::Pkcs8Key(k) if key.is_none() => {
                    let kp = KeyPair::try_from(k.secret_pkcs8_der()).map_err(|e| {
                        key_err(format!(
                            "PKCS#8 key rejected (supported: RSA, ECDSA P-256/P-384, Ed25519): {e}"
                        ))
                    })?;
                    key = Some(kp);
                }
                Item::Sec1Key(k) if key.is_none() => {
                    let sec1 = k.secret_sec1_der();
                    let p256 = PrivatePkcs8KeyDer::from(der::sec1_to_pkcs8(sec1, OID_P256));
                    let p384 = PrivatePkcs8KeyDer::from(der::sec1_to_pkcs8(sec1, OID_P384));
                    let kp = KeyPair::from_pkcs8_der_and_sign_algo(&p256, &PKCS_ECDSA_P256_SHA256)
                        .or_else(|_| {
                            KeyPair::from_pkcs8_der_and_sign_algo(&p384, &PKCS_ECDSA_P384_SHA384)
                        })
                        .map_err(|e| key_err(format!("EC key rejected (P-256/P-384 only): {e}")))?;
                    key = Some(kp);
                }
                Item::X509Certificate(c) if cert.is_none() => cert = Some(c),
                _ => {}
            }
        }
        let key = key.ok_or_else(|| file_err("no private key found".into()))?;
        let ca_der = cert.ok_or_else(|| file_err("no certificate found".into()))?;

        let (_, x509) = x509_parser::parse_x509_certificate(&ca_der)
            .map_err(|e| cert_err(format!("cannot parse: {e}")))?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(key_err(
                "the private key does not match the certificate".into(),
            ));
        }
        if !x509.is_ca() {
            return Err(cert_err(
                "not a CA certificate (basicConstraints CA:TRUE missing)".into(),
            ));
        }
        // rcgen panics on an empty RDN; refuse such names before it sees them.
        if x509.subject().iter().any(|rdn| rdn.iter().next().is_none()) {
            return Err(cert_err("empty RDN in subject name".into()));
        }
        let params = CertificateParams::from_ca_cert_der(&ca_der)
            .map_err(|e| cert_err(format!("cannot use as issuer: {e}")))?;
        let issuer = params
            .self_signed(&key)
            .map_err(|e| cert_err(format!("cannot use as issuer: {e}")))?;
        // Leafs must carry the issuer name byte for byte (webpki compares raw bytes).
        let (_, reissued) = x509_parser::parse_x509_certificate(issuer.der())
            .map_err(|e| cert_err(format!("cannot re-parse issuer: {e}")))?;
        if reissued.subject().as_raw() != x509.subject().as_raw() {
            return Err(cert_err(
                "subject name cannot be reproduced exactly (multi-valued or repeated attributes)"
                    .into(),
            ));
        }
        tracing::debug!(path = %path.display(), "loaded CA");
        Ok(Self::assemble(confdir, ca_der, issuer, key))
    }

    fn create(confdir: &Path, path: &Path) -> Result<Self, CaError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(confdir)
            .map_err(|source| CaError::Io {
                path: confdir.to_owned(),
                action: "create directory",
                source,
            })?;
        let provider = provider();
        let gen_err = |source| CaError::GenerateCa {
            confdir: confdir.to_owned(),
            source,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, CA_NAME);
        params
            .distinguished_name
            .push(DnType::OrganizationName, CA_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - CA_BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(leaf::random_serial(&provider)?);
        let issuer = params.self_signed(&key).map_err(gen_err)?;
        let ca_der = issuer.der().clone();
        let cert_pem = der::cert_to_pem(&ca_der);
        let key_pem = der::pem("PRIVATE KEY", key.serialized_der());

        // create_new: never clobber a CA another process just wrote.
        match write_private(path, format!("{key_pem}{cert_pem}").as_bytes()) {
            Ok(()) => {}
            Err(CaError::Io { source, .. }) if source.kind() == ErrorKind::AlreadyExists => {
                return Self::load_or_create(confdir);
            }
            Err(e) => return Err(e),
        }
        for name in [CA_CERT_PEM_FILE, CA_CERT_CER_FILE] {
            let cert_path = confdir.join(name);
            fs::write(&cert_path, &cert_pem).map_err(|source| CaError::Io {
                path: cert_path,
                action: "write",
                source,
            })?;
        }
        tracing::info!(path = %path.display(), "created a new CA");
        Ok(Self::assemble(confdir, ca_der, issuer, key))
    }

    fn assemble(
        confdir: &Path,
        ca_der: CertificateDer<'static>,
        issuer: rcgen::Certificate,
        key: KeyPair,
    ) -> Self {
        CertAuthority {
            confdir: confdir.to_owned(),
            ca_pem: der::cert_to_pem(&ca_der),
            ca_der,
            issuer,
            key,
            provider: provider(),
            cache: LeafCache::new(DEFAULT_CACHE_CAPACITY),
        }
    }
}

/// Writes a new file holding a private key: created with mode 0600 (never
/// chmod-ed afterwards), failing if it exists.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), CaError> {
    let io_err = |action, source| CaError::Io {
        path: path.to_owned(),
        action,
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err("create", e))?;
    file.write_all(contents).map_err(|e| io_err("write", e))?;
    file.sync_all().map_err(|e| io_err("sync", e))
}

/// Bounded leaf cache evicting the least recently used entry. Eviction
/// scans the map (O(capacity)), which is cheap next to issuing a leaf.
struct LeafCache {
    capacity: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<LeafSpec, (Arc<CertifiedKey>, u64)>,
    clock: u64,
}

impl LeafCache {
    fn new(capacity: usize) -> Self {
        LeafCache {
            capacity: capacity.max(1),
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CacheInner> {
        // Every critical section leaves the map consistent, so a poisoned
        // lock's data is still good.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, spec: &LeafSpec) -> Option<Arc<CertifiedKey>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        inner.map.get_mut(spec).map(|entry| {
            entry.1 = now;
            entry.0.clone()
        })
    }

    fn insert(&self, spec: &LeafSpec, fresh: Arc<CertifiedKey>) -> Arc<CertifiedKey> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if let Some(entry) = inner.map.get_mut(spec) {
            entry.1 = now;
            return entry.0.clone();
        }
        if inner.map.len() >= self.capacity {
            let oldest = inner
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                inner.map.remove(&oldest);
            }
        }
        inner.map.insert(spec.clone(), (fresh.clone(), now));
        fresh
    }
}
