//! Real origin servers on 127.0.0.1:0: a hyper HTTP/1.1 server (plain or TLS with a
//! throwaway rcgen CA) with echo endpoints, and a raw TCP origin whose responses
//! the test writes byte for byte.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use mitmrs_tls::rustls;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use super::{hex, TempDir};

/// Size of the frames the origin sends bodies in.
pub const FRAME: usize = 64 * 1024;

fn pattern_table() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| (0..FRAME + 251).map(|i| (i % 251) as u8).collect())
}

/// `len` (≤ 64 KiB) bytes of the test pattern starting at body offset `off`.
pub fn pattern(off: u64, len: usize) -> Bytes {
    let start = (off % 251) as usize;
    Bytes::copy_from_slice(&pattern_table()[start..start + len])
}

/// The SHA-256 (hex) of the first `total` bytes of the test pattern.
pub fn pattern_sha(total: u64) -> String {
    let mut h = Sha256::new();
    let mut off = 0;
    while off < total {
        let n = (total - off).min(FRAME as u64) as usize;
        h.update(pattern(off, n));
        off += n as u64;
    }
    hex(&h.finalize())
}

/// A body of `total` pattern bytes in 64 KiB frames; `known` announces the length.
struct PatternBody {
    off: u64,
    total: u64,
    known: bool,
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.off >= self.total {
            return Poll::Ready(None);
        }
        let n = (self.total - self.off).min(FRAME as u64) as usize;
        let b = pattern(self.off, n);
        self.off += n as u64;
        Poll::Ready(Some(Ok(Frame::data(b))))
    }
    fn is_end_stream(&self) -> bool {
        self.off >= self.total
    }
    fn size_hint(&self) -> SizeHint {
        if self.known {
            SizeHint::with_exact(self.total - self.off)
        } else {
            SizeHint::default()
        }
    }
}

type OBody = BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> OBody {
    Full::new(b.into()).boxed()
}

async fn handle(req: hyper::Request<Incoming>) -> Result<hyper::Response<OBody>, Infallible> {
    let path = req.uri().path().to_string();
    let resp = |status: u16, body: OBody| {
        hyper::Response::builder()
            .status(status)
            .body(body)
            .unwrap()
    };
    if path == "/small" {
        return Ok(resp(200, full("hello from origin\n")));
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let total: u64 = n.parse().unwrap_or(0);
        let body = PatternBody {
            off: 0,
            total,
            known: true,
        }
        .boxed();
        let mut r = resp(200, body);
        r.headers_mut()
            .insert("content-length", total.to_string().parse().unwrap());
        return Ok(r);
    }
    if let Some(n) = path.strip_prefix("/chunked/") {
        let total: u64 = n.parse().unwrap_or(0);
        return Ok(resp(
            200,
            PatternBody {
                off: 0,
                total,
                known: false,
            }
            .boxed(),
        ));
    }
    if path == "/upload" {
        let mut body = req.into_body();
        let mut h = Sha256::new();
        let mut n: u64 = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        h.update(d);
                        n += d.len() as u64;
                    }
                }
                Err(e) => return Ok(resp(400, full(format!("body error: {e}")))),
            }
        }
        let mut r = resp(200, full(hex(&h.finalize())));
        r.headers_mut()
            .insert("x-received-len", n.to_string().parse().unwrap());
        return Ok(r);
    }
    if path == "/echo" {
        let mut out = format!("{} {}\n", req.method(), req.uri());
        for (k, v) in req.headers() {
            out.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
        }
        out.push('\n');
        let body = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let mut out = out.into_bytes();
        out.extend_from_slice(&body);
        return Ok(resp(200, full(out)));
    }
    Ok(resp(404, full("no such endpoint\n")))
}

async fn serve_http<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: I) {
    let svc = hyper::service::service_fn(handle);
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

/// A hyper origin. `conns` counts accepted TCP connections.
pub struct HttpOrigin {
    pub addr: SocketAddr,
    pub conns: Arc<AtomicUsize>,
    /// For the TLS origin: its CA certificate as a PEM file.
    pub ca_pem: Option<PathBuf>,
    _dir: Option<TempDir>,
}

impl HttpOrigin {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// A plain HTTP/1.1 origin.
    pub async fn plain() -> HttpOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_http(tcp));
            }
        });
        HttpOrigin {
            addr,
            conns,
            ca_pem: None,
            _dir: None,
        }
    }

    /// An HTTPS origin with a certificate for `localhost` and 127.0.0.1 from its own CA.
    pub async fn tls() -> HttpOrigin {
        let (config, dir, ca_pem) = origin_pki();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve_http(tls).await;
                    }
                });
            }
        });
        HttpOrigin {
            addr,
            conns,
            ca_pem: Some(ca_pem),
            _dir: Some(dir),
        }
    }
}

fn origin_pki() -> (Arc<rustls::ServerConfig>, TempDir, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mitmrs-proxy test origin CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();

    let dir = TempDir::new("origin-ca");
    let ca_pem = dir.path().join("origin-ca.pem");
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        leaf_key.serialize_der(),
    ));
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
    .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(cfg), dir, ca_pem)
}

/// A TCP origin whose connections are handed to a test-written handler.
pub struct RawOrigin {
    pub addr: SocketAddr,
    pub conns: Arc<AtomicUsize>,
}

impl RawOrigin {
    pub async fn start<F, Fut>(handler: F) -> RawOrigin
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw origin");
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(handler(tcp));
            }
        });
        RawOrigin { addr, conns }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
}

/// Reads from `s` into `buf` until `done(buf)` holds; `false` if the peer closed
/// first. Bounded by the amount of data the peer sends (and by EOF).
pub async fn read_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> bool,
) -> bool {
    let mut tmp = [0u8; 16 * 1024];
    while !done(buf) {
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    true
}

/// Reads one request head (through the blank line) into `buf`; returns it as text,
/// leaving any body bytes after it in `buf`.
pub async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    if !read_until(s, buf, |b| find(b, b"\r\n\r\n").is_some()).await {
        return None;
    }
    let end = find(buf, b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    Some(head)
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A port on 127.0.0.1 that was bound and released, so connecting is refused.
pub async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}
