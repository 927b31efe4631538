//! A raw HTTP/1.1 client that writes exact bytes and parses responses itself
//! (independently of the proxy's codec), over TCP or over TLS inside a CONNECT
//! tunnel.

use std::net::SocketAddr;
use std::sync::Arc;

use mitmrs_tls::rustls;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::origin::find;
use super::{hex, within};

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A parsed response.
#[derive(Debug, Default)]
pub struct Resp {
    pub status: u16,
    pub reason: String,
    /// The head exactly as received (status line and fields).
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How a response body is read.
enum Framing {
    None,
    Length(usize),
    Chunked,
    Close,
}

pub struct RawClient {
    io: Box<dyn Stream>,
    buf: Vec<u8>,
    /// A read failed (e.g. the connection was reset) rather than ending cleanly.
    pub read_error: Option<std::io::Error>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let tcp = within("connect to the proxy", TcpStream::connect(addr))
            .await
            .expect("connect to proxy");
        tcp.set_nodelay(true).unwrap();
        RawClient {
            io: Box::new(tcp),
            buf: Vec::new(),
            read_error: None,
        }
    }

    /// Opens a CONNECT tunnel to `host:port` and runs TLS in it, trusting `ca`
    /// (the proxy's CA), with SNI `host` and ALPN http/1.1.
    pub async fn tunnel(
        proxy: SocketAddr,
        host: &str,
        port: u16,
        ca: &mitmrs_tls::CertificateDer<'static>,
    ) -> RawClient {
        let mut c = RawClient::connect(proxy).await;
        c.send(format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n").as_bytes())
            .await;
        let r = c.read_head().await;
        assert_eq!(r.status, 200, "CONNECT answered {}", r.head);
        assert!(c.buf.is_empty(), "bytes after the CONNECT response");
        c.start_tls(host, ca).await
    }

    /// TLS straight to the proxy (reverse mode), trusting `ca`, with SNI `sni`.
    pub async fn tls(
        proxy: SocketAddr,
        sni: &str,
        ca: &mitmrs_tls::CertificateDer<'static>,
    ) -> RawClient {
        RawClient::connect(proxy).await.start_tls(sni, ca).await
    }

    /// Runs TLS on this connection, trusting `ca`, with SNI `host` and ALPN http/1.1.
    async fn start_tls(
        mut self,
        host: &str,
        ca: &mitmrs_tls::CertificateDer<'static>,
    ) -> RawClient {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let io = std::mem::replace(&mut self.io, Box::new(tokio::io::empty()));
        let tls = within("TLS handshake with the proxy", connector.connect(name, io))
            .await
            .expect("TLS handshake with the proxy");
        RawClient {
            io: Box::new(tls),
            buf: Vec::new(),
            read_error: None,
        }
    }

    pub async fn send(&mut self, data: &[u8]) {
        within("a write", self.io.write_all(data))
            .await
            .expect("write to proxy");
        within("a flush", self.io.flush())
            .await
            .expect("flush to proxy");
    }

    /// Sends the first `total` bytes of the test pattern.
    pub async fn send_pattern(&mut self, total: u64) {
        let mut off = 0;
        while off < total {
            let n = (total - off).min(super::origin::FRAME as u64) as usize;
            self.send(&super::origin::pattern(off, n)).await;
            off += n as u64;
        }
    }

    /// Like [`RawClient::send`], but a failure is returned (the proxy may have closed).
    pub async fn try_send(&mut self, data: &[u8]) -> std::io::Result<()> {
        within("a write", self.io.write_all(data)).await?;
        within("a flush", self.io.flush()).await
    }

    /// Closes the write side.
    pub async fn shutdown(&mut self) {
        let _ = within("shutdown", self.io.shutdown()).await;
    }

    /// Reads more bytes; 0 on EOF or a reset.
    async fn fill(&mut self) -> usize {
        let mut tmp = vec![0u8; 64 * 1024];
        match within("data from the proxy", self.io.read(&mut tmp)).await {
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                n
            }
            Err(e) => {
                self.read_error = Some(e);
                0
            }
        }
    }

    async fn need(&mut self, n: usize, what: &str) {
        while self.buf.len() < n {
            if self.fill().await == 0 {
                panic!(
                    "connection closed while reading {what}; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    async fn line(&mut self, what: &str) -> String {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return line;
            }
            if self.fill().await == 0 {
                panic!(
                    "connection closed while reading {what}; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    /// Reads exactly `n` bytes.
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        self.need(n, "bytes").await;
        self.buf.drain(..n).collect()
    }

    /// Reads a response head only.
    pub async fn read_head(&mut self) -> Resp {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..i + 4]).into_owned();
                self.buf.drain(..i + 4);
                let mut lines = head.split("\r\n");
                let status_line = lines.next().unwrap_or_default();
                let mut parts = status_line.splitn(3, ' ');
                let version = parts.next().unwrap_or_default();
                assert!(version.starts_with("HTTP/1."), "not a response: {head:?}");
                let status = parts
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
                let reason = parts.next().unwrap_or_default().to_string();
                let headers = lines.filter(|l| !l.is_empty()).map(split_field).collect();
                return Resp {
                    status,
                    reason,
                    head,
                    headers,
                    ..Default::default()
                };
            }
            if self.fill().await == 0 {
                panic!(
                    "connection closed before a response head; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    /// Reads a whole response to a request with this method.
    pub async fn read_response_to(&mut self, method: &str) -> Resp {
        let mut r = self.read_head().await;
        let framing = if method == "HEAD"
            || (100..200).contains(&r.status)
            || r.status == 204
            || r.status == 304
        {
            Framing::None
        } else if r
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            Framing::Chunked
        } else if let Some(n) = r.header("content-length") {
            Framing::Length(n.trim().parse().expect("content-length"))
        } else {
            Framing::Close
        };
        match framing {
            Framing::None => {}
            Framing::Length(n) => r.body = self.read_exact(n).await,
            Framing::Close => r.body = self.read_to_end().await,
            Framing::Chunked => loop {
                let size_line = self.line("a chunk size").await;
                let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                    .expect("chunk size");
                if size == 0 {
                    loop {
                        let t = self.line("trailers").await;
                        if t.is_empty() {
                            break;
                        }
                        r.trailers.push(split_field(&t));
                    }
                    break;
                }
                let data = self.read_exact(size + 2).await;
                assert_eq!(&data[size..], b"\r\n", "chunk not followed by CRLF");
                r.body.extend_from_slice(&data[..size]);
            },
        }
        r
    }

    pub async fn read_response(&mut self) -> Resp {
        self.read_response_to("GET").await
    }

    /// Reads a large response body with a known length without keeping it:
    /// returns (bytes read, SHA-256 hex).
    pub async fn read_body_sha(&mut self, len: u64) -> (u64, String) {
        let mut h = Sha256::new();
        let mut got = 0u64;
        while got < len {
            if self.buf.is_empty() && self.fill().await == 0 {
                break;
            }
            let take = self.buf.len().min((len - got) as usize);
            h.update(&self.buf[..take]);
            self.buf.drain(..take);
            got += take as u64;
        }
        (got, hex(&h.finalize()))
    }

    /// Everything until the peer closes (EOF or reset).
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill().await > 0 {}
        std::mem::take(&mut self.buf)
    }

    /// Asserts the connection is closed with nothing more sent.
    pub async fn expect_closed(&mut self) {
        let rest = self.read_to_end().await;
        assert!(
            rest.is_empty(),
            "expected the connection to close, got {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

fn split_field(l: &str) -> (String, String) {
    let (k, v) = l.split_once(':').unwrap_or((l, ""));
    (k.to_string(), v.trim().to_string())
}

/// One GET through the proxy on a new connection (absolute-form target).
pub async fn get(proxy: SocketAddr, url: &str) -> Resp {
    let mut c = RawClient::connect(proxy).await;
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("");
    c.send(format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await;
    c.read_response().await
}
