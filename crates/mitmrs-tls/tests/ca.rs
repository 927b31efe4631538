//! The certificate authority: creating, loading (incl. openssl-made
//! mitmproxy-style CAs) and issuing leafs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::{client_trusting, handshake, run, TempDir};
use mitmrs_tls::{
    cert_to_pem, client_facing_config, CaError, CertAuthority, LeafSpec, San, CA_CERT_CER_FILE,
    CA_CERT_PEM_FILE, CA_FILE,
};
use x509_parser::prelude::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).unwrap().1
}

fn now() -> i64 {
    ::time::OffsetDateTime::now_utc().unix_timestamp()
}

const DAY: i64 = 86_400;

#[test]
fn creates_mitmproxy_files_and_reloads_them() {
    let dir = TempDir::new("create");
    let confdir = dir.path().join("conf");
    let ca = CertAuthority::load_or_create(&confdir).unwrap();
    assert_eq!(ca.confdir(), confdir);

    assert_eq!(mode(&confdir), 0o700);
    assert_eq!(mode(&confdir.join(CA_FILE)), 0o600);
    let key_and_cert = std::fs::read_to_string(confdir.join(CA_FILE)).unwrap();
    assert!(key_and_cert.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(key_and_cert.contains("-----BEGIN CERTIFICATE-----"));
    let cert_pem = std::fs::read_to_string(confdir.join(CA_CERT_PEM_FILE)).unwrap();
    let cert_cer = std::fs::read_to_string(confdir.join(CA_CERT_CER_FILE)).unwrap();
    assert_eq!(cert_pem, ca.ca_cert_pem());
    assert_eq!(cert_cer, cert_pem);
    assert!(!cert_pem.contains("PRIVATE KEY"));

    let pem_certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(pem_certs, vec![ca.ca_cert_der().clone()]);

    let x509 = parse(ca.ca_cert_der());
    assert!(x509.is_ca());
    let bc = x509.basic_constraints().unwrap().unwrap();
    assert!(bc.critical);
    let ku = x509.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(x509.iter_extensions().any(|e| matches!(
        e.parsed_extension(),
        ParsedExtension::SubjectKeyIdentifier(_)
    )));
    let subject = x509.subject();
    assert_eq!(
        subject.iter_common_name().next().unwrap().as_str().unwrap(),
        "mitmproxy"
    );
    assert_eq!(
        subject
            .iter_organization()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "mitmproxy"
    );
    assert_eq!(x509.subject().as_raw(), x509.issuer().as_raw());
    let nb = x509.validity().not_before.timestamp();
    let na = x509.validity().not_after.timestamp();
    assert!((nb - (now() - 2 * DAY)).abs() < 600, "not_before {nb}");
    assert!((na - (now() + 3650 * DAY)).abs() < 600, "not_after {na}");

    let again = CertAuthority::load_or_create(&confdir).unwrap();
    assert_eq!(again.ca_cert_der(), ca.ca_cert_der());
    assert_eq!(again.ca_cert_pem(), ca.ca_cert_pem());

    // A leaf from the reloaded CA is signed by the same key as before.
    let leaf = again.leaf(&LeafSpec::for_host("example.test")).unwrap();
    let leaf_x509 = parse(&leaf.cert[0]);
    leaf_x509.verify_signature(Some(x509.public_key())).unwrap();

    // OpenSSL's strict mode accepts our CA and leaf.
    let leaf_path = dir.path().join("leaf.pem");
    std::fs::write(&leaf_path, cert_to_pem(&leaf.cert[0])).unwrap();
    let out = run(Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile"])
        .arg(confdir.join(CA_CERT_PEM_FILE))
        .arg(&leaf_path));
    assert!(out.trim_end().ends_with(": OK"), "{out}");
}

fn openssl_ca(dir: &Path, key_cmd: &[&str]) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let key = dir.join("key.pem");
    let cert = dir.join("cert.pem");
    // "OUT" in the command stands for the key file.
    run(Command::new("openssl").args(key_cmd.iter().map(|a| {
        if *a == "OUT" {
            key.as_os_str()
        } else {
            a.as_ref()
        }
    })));
    run(Command::new("openssl")
        .args(["req", "-x509", "-new", "-key"])
        .arg(&key)
        .args(["-subj", "/CN=mitmproxy/O=mitmproxy", "-days", "3650"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE", "-out"])
        .arg(&cert));
    let confdir = dir.join("conf");
    std::fs::create_dir_all(&confdir).unwrap();
    let combined = format!(
        "{}{}",
        std::fs::read_to_string(&key).unwrap(),
        std::fs::read_to_string(&cert).unwrap()
    );
    std::fs::write(confdir.join(CA_FILE), combined).unwrap();
    confdir
}

async fn check_openssl_ca(tag: &str, key_cmd: &[&str], key_header: &str) {
    let dir = TempDir::new(tag);
    let confdir = openssl_ca(dir.path(), key_cmd);
    let key_text = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
    assert!(key_text.starts_with(key_header), "{key_text:.40}");

    let ca = CertAuthority::load_or_create(&confdir).unwrap();
    let cert_pem = std::fs::read_to_string(dir.path().join("cert.pem")).unwrap();
    let orig: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        ca.ca_cert_der(),
        &orig[0],
        "the user's CA cert is used as is"
    );

    let leaf = ca.leaf(&LeafSpec::for_host("localhost")).unwrap();
    assert_eq!(leaf.cert.len(), 2);
    assert_eq!(&leaf.cert[1], &orig[0]);
    let leaf_path = dir.path().join("leaf.pem");
    std::fs::write(&leaf_path, cert_to_pem(&leaf.cert[0])).unwrap();
    let out = run(Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(dir.path().join("cert.pem"))
        .arg(&leaf_path));
    assert!(out.trim_end().ends_with(": OK"), "{out}");

    let ca_x509 = parse(&orig[0]);
    let leaf_x509 = parse(&leaf.cert[0]);
    assert_ne!(leaf_x509.public_key().raw, ca_x509.public_key().raw);
    assert_eq!(leaf_x509.issuer().as_raw(), ca_x509.subject().as_raw());

    // rustls/webpki accepts the chain too.
    let server = client_facing_config(leaf, &[]);
    let client = client_trusting(&orig[0], &[]);
    handshake(server, client, "localhost").await.unwrap();
}

#[tokio::test]
async fn loads_openssl_rsa_pkcs1_ca_like_mitmproxy() {
    check_openssl_ca(
        "rsa1",
        &["genrsa", "-traditional", "-out", "OUT", "2048"],
        "-----BEGIN RSA PRIVATE KEY-----",
    )
    .await;
}

#[tokio::test]
async fn loads_openssl_rsa_pkcs8_ca() {
    check_openssl_ca(
        "rsa8",
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "OUT",
        ],
        "-----BEGIN PRIVATE KEY-----",
    )
    .await;
}

#[tokio::test]
async fn loads_openssl_ec_sec1_ca() {
    check_openssl_ca(
        "ec1",
        &[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
            "OUT",
        ],
        "-----BEGIN EC PRIVATE KEY-----",
    )
    .await;
}

#[tokio::test]
async fn loads_openssl_ec_p384_sec1_ca() {
    check_openssl_ca(
        "ec384",
        &[
            "ecparam",
            "-genkey",
            "-name",
            "secp384r1",
            "-noout",
            "-out",
            "OUT",
        ],
        "-----BEGIN EC PRIVATE KEY-----",
    )
    .await;
}

#[test]
fn rejects_bad_ca_files() {
    let dir = TempDir::new("bad");
    let confdir = dir.path().to_owned();
    std::fs::create_dir_all(&confdir).unwrap();
    let path = confdir.join(CA_FILE);

    std::fs::write(&path, "not pem at all\n").unwrap();
    let err = CertAuthority::load_or_create(&confdir).unwrap_err();
    assert!(matches!(err, CaError::CaFile { .. }), "{err}");
    assert!(err.to_string().contains(CA_FILE), "{err}");

    // A key from one CA with the certificate of another.
    let a = CertAuthority::load_or_create(&dir.path().join("a")).unwrap();
    let b = CertAuthority::load_or_create(&dir.path().join("b")).unwrap();
    let a_file = std::fs::read_to_string(dir.path().join("a").join(CA_FILE)).unwrap();
    let a_key = &a_file[..a_file.find("-----BEGIN CERTIFICATE").unwrap()];
    std::fs::write(&path, format!("{a_key}{}", b.ca_cert_pem())).unwrap();
    let err = CertAuthority::load_or_create(&confdir).unwrap_err();
    assert!(matches!(err, CaError::CaKey { .. }), "{err}");
    drop(a);

    // Only a certificate.
    std::fs::write(&path, b.ca_cert_pem()).unwrap();
    let err = CertAuthority::load_or_create(&confdir).unwrap_err();
    assert!(err.to_string().contains("no private key"), "{err}");
}

fn sans_of(x509: &X509Certificate<'_>) -> Vec<GeneralName<'static>> {
    x509.subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => {
                GeneralName::DNSName(Box::leak(d.to_string().into_boxed_str()))
            }
            GeneralName::IPAddress(b) => {
                GeneralName::IPAddress(Box::leak(b.to_vec().into_boxed_slice()))
            }
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect()
}

#[test]
fn leaf_contents() {
    let dir = TempDir::new("leaf");
    let ca = CertAuthority::load_or_create(dir.path()).unwrap();
    let ca_x509 = parse(ca.ca_cert_der());
    let ca_ski = ca_x509
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap();

    let leaf = ca.leaf(&LeafSpec::for_host("example.test")).unwrap();
    assert_eq!(&leaf.cert[1], ca.ca_cert_der());
    let x509 = parse(&leaf.cert[0]);
    x509.verify_signature(Some(ca_x509.public_key())).unwrap();
    assert_eq!(sans_of(&x509), vec![GeneralName::DNSName("example.test")]);
    assert_eq!(
        x509.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "example.test"
    );
    assert!(!x509.is_ca());
    assert_ne!(x509.public_key().raw, ca_x509.public_key().raw);
    let eku = x509.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth);
    let aki = x509
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(aki, ca_ski);
    let nb = x509.validity().not_before.timestamp();
    let na = x509.validity().not_after.timestamp();
    assert!((nb - (now() - 2 * DAY)).abs() < 600, "not_before {nb}");
    assert!((na - (now() + 199 * DAY)).abs() < 600, "not_after {na}");

    // Two leafs never share a key or a serial.
    let other = ca.leaf(&LeafSpec::for_host("other.test")).unwrap();
    let other_x509 = parse(&other.cert[0]);
    assert_ne!(other_x509.public_key().raw, x509.public_key().raw);
    assert_ne!(other_x509.raw_serial(), x509.raw_serial());

    for (host, bytes) in [
        ("127.0.0.1", vec![127, 0, 0, 1]),
        ("::1", std::net::Ipv6Addr::LOCALHOST.octets().to_vec()),
        ("[::1]", std::net::Ipv6Addr::LOCALHOST.octets().to_vec()),
    ] {
        let leaf = ca.leaf(&LeafSpec::for_host(host)).unwrap();
        let x509 = parse(&leaf.cert[0]);
        assert_eq!(
            sans_of(&x509),
            vec![GeneralName::IPAddress(Box::leak(bytes.into_boxed_slice()))],
            "{host}"
        );
    }

    // A very long (but valid) name goes in the SAN only.
    let long = format!("{}.{}.test", "a".repeat(60), "b".repeat(60));
    let leaf = ca.leaf(&LeafSpec::for_host(&long)).unwrap();
    let x509 = parse(&leaf.cert[0]);
    assert!(x509.subject().iter_common_name().next().is_none());
}

#[test]
fn invalid_names_are_errors() {
    let dir = TempDir::new("invalid");
    let ca = CertAuthority::load_or_create(dir.path()).unwrap();
    let too_long = format!("{}.test", "a".repeat(300));
    let bad_label = format!("{}.test", "a".repeat(64));
    for host in [
        "",
        "a\u{0}b",
        "a b",
        "-x.test",
        "x-.test",
        "a..b",
        ".",
        "ünïcode.test",
        "1.2.3",
        "fe80::1%eth0",
        "[::1",
        "exa/mple",
        &too_long,
        &bad_label,
    ] {
        let err = ca.leaf(&LeafSpec::for_host(host)).unwrap_err();
        assert!(
            matches!(err, CaError::InvalidName { .. }),
            "{host:?}: {err}"
        );
    }
    let empty = LeafSpec {
        common_name: None,
        sans: vec![],
    };
    assert!(ca.leaf(&empty).is_err());
    let control_cn = LeafSpec {
        common_name: Some("evil\r\nname".into()),
        sans: vec![San::Dns("ok.test".into())],
    };
    assert!(ca.leaf(&control_cn).is_err());
}

#[test]
fn leafs_are_cached_and_evicted() {
    let dir = TempDir::new("cache");
    let ca = CertAuthority::load_or_create(dir.path())
        .unwrap()
        .with_cache_capacity(2);
    let a = LeafSpec::for_host("a.test");
    let b = LeafSpec::for_host("b.test");
    let c = LeafSpec::for_host("c.test");
    let a1 = ca.leaf(&a).unwrap();
    let b1 = ca.leaf(&b).unwrap();
    assert!(Arc::ptr_eq(&a1, &ca.leaf(&a).unwrap())); // a is now most recent
    assert!(!Arc::ptr_eq(&a1, &b1));
    ca.leaf(&c).unwrap(); // evicts b, the least recently used
    assert!(Arc::ptr_eq(&a1, &ca.leaf(&a).unwrap()));
    assert!(!Arc::ptr_eq(&b1, &ca.leaf(&b).unwrap()));
}

#[test]
fn upstream_cert_names_are_copied() {
    let mut params = rcgen::CertificateParams::new(vec![
        "upstream.example".to_string(),
        "*.upstream.example".to_string(),
        "10.0.0.1".to_string(),
    ])
    .unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Upstream CN");
    let key = rcgen::KeyPair::generate().unwrap();
    let upstream = params.self_signed(&key).unwrap();

    let spec = LeafSpec::from_upstream_cert("other.test", upstream.der()).unwrap();
    assert_eq!(spec.common_name.as_deref(), Some("Upstream CN"));
    assert_eq!(
        spec.sans,
        vec![
            San::Dns("upstream.example".into()),
            San::Dns("*.upstream.example".into()),
            San::Ip("10.0.0.1".parse().unwrap()),
            San::Dns("other.test".into()),
        ]
    );
    let again = LeafSpec::from_upstream_cert("upstream.example", upstream.der()).unwrap();
    assert_eq!(again.sans.len(), 3, "host already present is not repeated");
    let ip_host = LeafSpec::from_upstream_cert("10.0.0.1", upstream.der()).unwrap();
    assert_eq!(ip_host.sans.len(), 3);

    let dir = TempDir::new("upstream");
    let ca = CertAuthority::load_or_create(dir.path()).unwrap();
    let leaf = ca.leaf(&spec).unwrap();
    let x509 = parse(&leaf.cert[0]);
    assert_eq!(sans_of(&x509).len(), 4);
    assert_eq!(
        x509.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "Upstream CN"
    );

    let err = LeafSpec::from_upstream_cert("x.test", b"\x30\x03garbage").unwrap_err();
    assert!(matches!(err, CaError::UpstreamCert { .. }), "{err}");
    assert!(err.to_string().contains("x.test"));
}
