//! Leaf certificate specifications ([`LeafSpec`]), name validation, and
//! issuing a leaf under the CA.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, DnsName, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;

use crate::CaError;

/// Leafs are valid from `now - LEAF_BACKDATE` ...
const LEAF_BACKDATE: Duration = Duration::days(2);
/// ... to `now + LEAF_VALIDITY`.
const LEAF_VALIDITY: Duration = Duration::days(199);
/// RFC 5280 `ub-common-name`: longer names are left out of the subject
/// (the SAN still carries them), as mitmproxy does.
const MAX_CN_LEN: usize = 64;

/// One subjectAltName entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum San {
    /// A DNS name (may start with `*.` when copied from an upstream cert).
    Dns(String),
    /// An IP address; an IP host always becomes this, never a DNS SAN.
    Ip(IpAddr),
}

impl San {
    /// For a host string: IP literal (incl. bracketed IPv6) -> `Ip`, else
    /// `Dns` (lower-cased, one trailing dot removed).
    pub fn for_host(host: &str) -> San {
        let trimmed = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match trimmed.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) => {
                let dns = host.strip_suffix('.').unwrap_or(host);
                San::Dns(dns.to_ascii_lowercase())
            }
        }
    }

    fn display(&self) -> String {
        match self {
            San::Dns(name) => name.clone(),
            San::Ip(ip) => ip.to_string(),
        }
    }
}

/// What a leaf certificate must contain. Used as the cache key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeafSpec {
    /// Subject CN; `None` means "use the first SAN".
    pub common_name: Option<String>,
    /// subjectAltName entries, in order.
    pub sans: Vec<San>,
}

impl LeafSpec {
    /// For a host string (SNI or CONNECT host): IP literal (incl. bracketed
    /// IPv6) -> `Ip` SAN, else `Dns` SAN; CN = host (as in the SAN).
    ///
    /// Never fails: an invalid host is reported by
    /// [`CertAuthority::leaf`](crate::CertAuthority::leaf).
    pub fn for_host(host: &str) -> LeafSpec {
        let san = San::for_host(host);
        LeafSpec {
            common_name: Some(san.display()),
            sans: vec![san],
        }
    }

    /// mitmproxy's `upstream_cert` behaviour: copy the upstream
    /// certificate's CN and SANs (DNS and IP) from its DER, and add `host`
    /// (SNI/CONNECT host) if missing. Upstream names that could not go into
    /// a certificate are skipped; if the upstream CN is unusable, `host` is
    /// the CN.
    pub fn from_upstream_cert(host: &str, upstream_der: &[u8]) -> Result<LeafSpec, CaError> {
        let err = |reason: String| CaError::UpstreamCert {
            host: host.to_owned(),
            reason,
        };
        let (_, cert) =
            x509_parser::parse_x509_certificate(upstream_der).map_err(|e| err(e.to_string()))?;

        let mut sans: Vec<San> = Vec::new();
        let san_ext = cert
            .subject_alternative_name()
            .map_err(|e| err(format!("subjectAltName: {e}")))?;
        for name in san_ext.iter().flat_map(|ext| &ext.value.general_names) {
            let san = match name {
                GeneralName::DNSName(dns) => {
                    let dns = dns.to_ascii_lowercase();
                    match validate_dns_name(&dns) {
                        Ok(()) => San::Dns(dns),
                        Err(reason) => {
                            tracing::debug!(host, name = dns, reason, "skipping upstream SAN");
                            continue;
                        }
                    }
                }
                GeneralName::IPAddress(bytes) => match ip_from_bytes(bytes) {
                    Some(ip) => San::Ip(ip),
                    None => continue,
                },
                _ => continue,
            };
            if !sans.contains(&san) {
                sans.push(san);
            }
        }

        let host_san = San::for_host(host);
        if !sans.contains(&host_san) {
            sans.push(host_san.clone());
        }

        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .filter(|cn| validate_common_name(cn).is_ok())
            .map(str::to_owned)
            .or_else(|| Some(host_san.display()));

        Ok(LeafSpec { common_name, sans })
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// A DNS name fit for a SAN: a valid host name, optionally `*.`-prefixed.
fn validate_dns_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    let base = name.strip_prefix("*.").unwrap_or(name);
    if base.ends_with('.') {
        return Err("trailing dot");
    }
    DnsName::try_from(base)
        .map(|_| ())
        .map_err(|_| "not a valid DNS name or IP address")
}

/// A CN: non-empty, no control characters. Length is handled by the caller.
fn validate_common_name(cn: &str) -> Result<(), &'static str> {
    if cn.is_empty() {
        return Err("empty common name");
    }
    if cn.chars().any(char::is_control) {
        return Err("control character in common name");
    }
    Ok(())
}

/// Checks a spec and returns the name used for its CN (if it fits).
fn check_spec(spec: &LeafSpec) -> Result<String, CaError> {
    let invalid = |name: &str, reason| CaError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    for san in &spec.sans {
        if let San::Dns(name) = san {
            validate_dns_name(name).map_err(|reason| invalid(name, reason))?;
        }
    }
    match (&spec.common_name, spec.sans.first()) {
        (Some(cn), _) => {
            validate_common_name(cn).map_err(|reason| invalid(cn, reason))?;
            Ok(cn.clone())
        }
        (None, Some(first)) => Ok(first.display()),
        (None, None) => Err(invalid("", "no common name and no subjectAltName")),
    }
}

/// A positive, non-zero 128-bit serial from the provider's secure RNG.
pub(crate) fn random_serial(provider: &CryptoProvider) -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    provider
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| CaError::Random)?;
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x40; // non-zero, and always 16 bytes long
    Ok(SerialNumber::from_slice(&bytes))
}

/// Issues a leaf for `spec` with a fresh ECDSA P-256 key, signed by the CA.
pub(crate) fn issue(
    spec: &LeafSpec,
    issuer: &rcgen::Certificate,
    issuer_key: &KeyPair,
    ca_der: &CertificateDer<'static>,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, CaError> {
    let cn = check_spec(spec)?;
    let fail = |reason: String| CaError::IssueLeaf {
        name: cn.clone(),
        reason,
    };

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if cn.len() <= MAX_CN_LEN {
        params
            .distinguished_name
            .push(DnType::CommonName, cn.as_str());
    }
    params.subject_alt_names = spec
        .sans
        .iter()
        .map(|san| match san {
            San::Dns(name) => name
                .as_str()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| fail(format!("subjectAltName {name:?}: {e}"))),
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
        })
        .collect::<Result<_, _>>()?;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - LEAF_BACKDATE;
    params.not_after = now + LEAF_VALIDITY;
    params.serial_number = Some(random_serial(provider)?);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| fail(format!("key generation: {e}")))?;
    let cert = params
        .signed_by(&key, issuer, issuer_key)
        .map_err(|e| fail(format!("signing: {e}")))?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| fail(format!("loading the leaf key into rustls: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone(), ca_der.clone()],
        signing_key,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_host_kinds() {
        assert_eq!(
            LeafSpec::for_host("Example.TEST."),
            LeafSpec {
                common_name: Some("example.test".into()),
                sans: vec![San::Dns("example.test".into())]
            }
        );
        assert_eq!(
            LeafSpec::for_host("[::1]").sans,
            vec![San::Ip("::1".parse().unwrap())]
        );
        assert_eq!(
            LeafSpec::for_host("::1").common_name.as_deref(),
            Some("::1")
        );
        assert_eq!(
            LeafSpec::for_host("127.0.0.1").sans,
            vec![San::Ip("127.0.0.1".parse().unwrap())]
        );
    }

    #[test]
    fn name_validation() {
        assert!(validate_dns_name("example.test").is_ok());
        assert!(validate_dns_name("*.example.test").is_ok());
        assert!(validate_dns_name("under_score.test").is_ok());
        for bad in [
            "", "a\u{0}b", "a b", "-a.test", "a..b", "*", "*.", "x.", "1.2.3",
        ] {
            assert!(validate_dns_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_common_name("My Server").is_ok());
        assert!(validate_common_name("").is_err());
        assert!(validate_common_name("a\nb").is_err());
        let spec = LeafSpec {
            common_name: None,
            sans: vec![],
        };
        assert!(check_spec(&spec).is_err());
    }
}
