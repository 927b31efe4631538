//! Shared test helpers: temporary directories and loopback handshakes.
#![allow(dead_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mitmrs_tls::rustls::{self, ClientConfig, ServerConfig};
use mitmrs_tls::{tls_info_client_side, tls_info_server_side, TlsInfo};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A unique, not yet existing path under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("mitmrs-tls-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs one TLS handshake over 127.0.0.1 and exchanges a byte each way.
/// Returns (what the server saw of the client, what the client saw of the
/// server), or the client's error.
pub async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> io::Result<(TlsInfo, TlsInfo)> {
    tokio::time::timeout(
        Duration::from_secs(20),
        handshake_inner(server, client, name),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake test timed out"))?
}

async fn handshake_inner(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> io::Result<(TlsInfo, TlsInfo)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let mut buf = [0u8; 1];
        tls.read_exact(&mut buf).await?;
        tls.write_all(b"y").await?;
        tls.flush().await?;
        let info = tls_info_client_side(tls.get_ref().1);
        tls.shutdown().await?;
        Ok::<_, io::Error>(info)
    });

    let client_result = async {
        let tcp = TcpStream::connect(addr).await?;
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let connector = tokio_rustls::TlsConnector::from(client);
        let mut tls = connector.connect(server_name, tcp).await?;
        tls.write_all(b"x").await?;
        tls.flush().await?;
        let mut buf = [0u8; 1];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"y");
        Ok::<_, io::Error>(tls_info_server_side(tls.get_ref().1, Some(name.to_owned())))
    }
    .await;

    match client_result {
        Ok(client_info) => {
            let server_info = server_task.await.map_err(io::Error::other)??;
            Ok((server_info, client_info))
        }
        Err(e) => {
            // The server side fails too; its error is not interesting.
            let _ = server_task.await;
            Err(e)
        }
    }
}

/// A client config trusting only `ca` (DER), TLS 1.2 + 1.3, given ALPN.
pub fn client_trusting(
    ca: &rustls_pki_types::CertificateDer<'static>,
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.clone())
        .expect("test CA is a valid trust anchor");
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Runs a command, panicking with its output if it fails; returns stdout.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
