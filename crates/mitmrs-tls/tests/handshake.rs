//! Real handshakes over 127.0.0.1: the client-facing config, TlsInfo, and
//! the upstream (server-facing) configs.

mod common;

use std::sync::Arc;

use common::{client_trusting, handshake, TempDir};
use mitmrs_tls::rustls::{self, ClientConfig};
use mitmrs_tls::{
    client_facing_config, CaError, CertAuthority, LeafSpec, UpstreamTls, UpstreamTlsOptions,
    CA_CERT_PEM_FILE,
};

#[tokio::test]
async fn client_facing_handshake_fills_tls_info() {
    let dir = TempDir::new("hs");
    let ca = CertAuthority::load_or_create(dir.path()).unwrap();
    let leaf = ca.leaf(&LeafSpec::for_host("localhost")).unwrap();
    let server = client_facing_config(leaf.clone(), &[b"h2".to_vec(), b"http/1.1".to_vec()]);
    let client = client_trusting(ca.ca_cert_der(), &[b"http/1.1"]);

    let (client_side, server_side) = handshake(server, client, "localhost").await.unwrap();

    assert_eq!(client_side.sni.as_deref(), Some("localhost"));
    assert_eq!(client_side.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(client_side.tls_version.as_deref(), Some("TLSv1.3"));
    // The client (rustls defaults) lists AES-256/SHA-384 first; the proxy picks by
    // its own order, SHA-256 suites first. The name is IANA's, not rustls' TLS13_.
    assert_eq!(
        client_side.cipher.as_deref(),
        Some("TLS_AES_128_GCM_SHA256")
    );
    assert!(
        client_side.certificate_list.is_empty(),
        "no client certificate"
    );

    assert_eq!(server_side.sni.as_deref(), Some("localhost"));
    assert_eq!(server_side.alpn, client_side.alpn);
    assert_eq!(server_side.tls_version.as_deref(), Some("TLSv1.3"));
    assert_eq!(server_side.cipher, client_side.cipher);
    assert_eq!(server_side.certificate_list, leaf.cert);
}

#[tokio::test]
async fn tls12_and_no_alpn() {
    let dir = TempDir::new("hs12");
    let ca = CertAuthority::load_or_create(dir.path()).unwrap();
    let leaf = ca.leaf(&LeafSpec::for_host("127.0.0.1")).unwrap();
    let server = client_facing_config(leaf, &[]);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.ca_cert_der().clone()).unwrap();
    let client =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();

    let (client_side, _) = handshake(server, Arc::new(client), "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(client_side.tls_version.as_deref(), Some("TLSv1.2"));
    assert_eq!(client_side.alpn, None);
    assert_eq!(client_side.sni, None, "no SNI is sent for an IP address");
    let cipher = client_side.cipher.unwrap();
    assert!(cipher.starts_with("TLS_ECDHE_ECDSA_WITH_"), "{cipher}");
}

/// A "server" with a certificate from a CA the upstream config doesn't know.
fn unknown_server(dir: &TempDir) -> (CertAuthority, Arc<rustls::ServerConfig>) {
    let ca = CertAuthority::load_or_create(dir.path()).unwrap();
    let leaf = ca.leaf(&LeafSpec::for_host("localhost")).unwrap();
    let server = client_facing_config(leaf, &[b"http/1.1".to_vec()]);
    (ca, server)
}

#[tokio::test]
async fn upstream_verified_rejects_unknown_ca() {
    let dir = TempDir::new("up-reject");
    let (_ca, server) = unknown_server(&dir);
    let upstream = UpstreamTls::new(&UpstreamTlsOptions::default()).unwrap();
    let err = handshake(
        server,
        upstream.config(&[b"http/1.1".to_vec()]),
        "localhost",
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("UnknownIssuer") || msg.contains("certificate"),
        "{msg}"
    );
}

#[tokio::test]
async fn upstream_trusts_extra_ca_file() {
    let dir = TempDir::new("up-extra");
    let (_ca, server) = unknown_server(&dir);
    let upstream = UpstreamTls::new(&UpstreamTlsOptions {
        insecure: false,
        extra_ca_file: Some(dir.path().join(CA_CERT_PEM_FILE)),
    })
    .unwrap();
    let (_, server_side) = handshake(
        server,
        upstream.config(&[b"http/1.1".to_vec()]),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(server_side.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(server_side.certificate_list.len(), 2);

    // Verification still checks the name.
    let (ca, _) = unknown_server(&dir);
    let leaf = ca.leaf(&LeafSpec::for_host("localhost")).unwrap();
    let server = client_facing_config(leaf, &[]);
    let err = handshake(server, upstream.config(&[]), "127.0.0.1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn upstream_insecure_accepts_anything() {
    let dir = TempDir::new("up-insecure");
    let (_ca, server) = unknown_server(&dir);
    let upstream = UpstreamTls::new(&UpstreamTlsOptions {
        insecure: true,
        extra_ca_file: None,
    })
    .unwrap();
    // Even a name the certificate doesn't have.
    let (_, server_side) = handshake(server, upstream.config(&[]), "not-localhost.test")
        .await
        .unwrap();
    assert_eq!(server_side.sni.as_deref(), Some("not-localhost.test"));
    assert_eq!(server_side.tls_version.as_deref(), Some("TLSv1.3"));
}

#[test]
fn upstream_extra_ca_file_errors_name_the_option() {
    let dir = TempDir::new("up-missing");
    let missing = dir.path().join("nope.pem");
    let err = UpstreamTls::new(&UpstreamTlsOptions {
        insecure: false,
        extra_ca_file: Some(missing.clone()),
    })
    .unwrap_err();
    assert!(matches!(err, CaError::ExtraCaFile { .. }));
    let msg = err.to_string();
    assert!(msg.contains("ssl_verify_upstream_trusted_ca"), "{msg}");
    assert!(msg.contains("nope.pem"), "{msg}");

    std::fs::create_dir_all(dir.path()).unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificates here\n").unwrap();
    let msg = UpstreamTls::new(&UpstreamTlsOptions {
        insecure: true,
        extra_ca_file: Some(empty),
    })
    .unwrap_err()
    .to_string();
    assert!(msg.contains("ssl_verify_upstream_trusted_ca"), "{msg}");
}

/// A returning client resumes its TLS session, even though the proxy builds a new
/// client-facing config for every connection (they share one session cache).
#[tokio::test]
async fn returning_clients_resume_across_configs() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TempDir::new("resume");
    let ca = CertAuthority::load_or_create(dir.path()).unwrap();
    let leaf = ca.leaf(&LeafSpec::for_host("localhost")).unwrap();
    let client = client_trusting(ca.ca_cert_der(), &[b"http/1.1"]);
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let server = client_facing_config(leaf.clone(), &[b"http/1.1".to_vec()]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let srv = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut b = [0u8; 1];
            tls.read_exact(&mut b).await.unwrap();
            tls.write_all(b"y").await.unwrap();
            tls.flush().await.unwrap();
            let _ = tls.shutdown().await;
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(client.clone())
            .connect(name, tcp)
            .await
            .unwrap();
        tls.write_all(b"x").await.unwrap();
        tls.flush().await.unwrap();
        // Reading lets the client take in the session ticket sent after the handshake.
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest).await;
        kinds.push(tls.get_ref().1.handshake_kind());
        srv.await.unwrap();
    }
    assert_eq!(kinds[0], Some(rustls::HandshakeKind::Full));
    assert_eq!(kinds[1], Some(rustls::HandshakeKind::Resumed), "{kinds:?}");
}
