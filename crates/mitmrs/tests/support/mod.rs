//! Shared helpers for the end-to-end tests of the real `mitmrs` binary: starting
//! and stopping it, small hand-written HTTP/1.1 origins (plain and TLS, loopback
//! only) and running curl through the proxy.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_mitmrs");

/// How long to wait for the proxy to start or for an expected output line.
pub const WAIT: Duration = Duration::from_secs(10);

/// The venv's Python with mitmproxy 11.0.2 and `websockets` (installed by
/// `scripts/test-all`).
pub fn venv_python() -> PathBuf {
    let p = workspace_root().join(".venv/bin/python");
    assert!(
        p.is_file(),
        "{} not found: run ./scripts/test-all, which installs mitmproxy 11.0.2 and websockets into .venv",
        p.display()
    );
    p
}

/// The workspace root (for `.venv/bin/mitmdump`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

// ---------------------------------------------------------------------------
// Output capture

#[derive(Default)]
struct LinesState {
    lines: Vec<String>,
    eof: bool,
}

/// The lines of a child's output stream, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Lines {
    inner: Arc<(Mutex<LinesState>, Condvar)>,
}

impl Lines {
    fn spawn(stream: impl Read + Send + 'static) -> (Lines, JoinHandle<()>) {
        let lines = Lines::default();
        let l = lines.clone();
        let handle = std::thread::spawn(move || {
            let mut r = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let s = String::from_utf8_lossy(&buf)
                            .trim_end_matches(['\r', '\n'])
                            .to_string();
                        let (m, cv) = &*l.inner;
                        m.lock().unwrap().lines.push(s);
                        cv.notify_all();
                    }
                }
            }
            let (m, cv) = &*l.inner;
            m.lock().unwrap().eof = true;
            cv.notify_all();
        });
        (lines, handle)
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.inner.0.lock().unwrap().lines.clone()
    }

    /// Waits (bounded by `timeout`) for a line matching `pred`; `None` on timeout or
    /// end of stream.
    pub fn wait_for(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.inner;
        let mut st = m.lock().unwrap();
        let mut seen = 0;
        loop {
            if let Some(l) = st.lines[seen..].iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            seen = st.lines.len();
            if st.eof {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }
}

// ---------------------------------------------------------------------------
// The proxy

/// A running `mitmrs` child, killed on drop.
pub struct Proxy {
    child: Child,
    pub port: u16,
    pub confdir: PathBuf,
    _tmp: Option<TempDir>,
    pub stdout: Lines,
    pub stderr: Lines,
    readers: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Starts the binary with a fresh confdir and `extra` arguments.
    pub fn start(extra: &[&str]) -> Proxy {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = Proxy::start_in(tmp.path(), extra);
        p._tmp = Some(tmp);
        p
    }

    /// Starts the binary with `-p 0 --set confdir=<confdir>` plus `extra`, and reads
    /// its stdout until it says where it listens (at most [`WAIT`]).
    pub fn start_in(confdir: &Path, extra: &[&str]) -> Proxy {
        Proxy::start_in_env(confdir, extra, &[])
    }

    /// [`Proxy::start`] with extra environment variables (e.g. `MITMRS_LOG`, which
    /// replaces the log filter, to see the listening line under `-q`).
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Proxy {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = Proxy::start_in_env(tmp.path(), extra, env);
        p._tmp = Some(tmp);
        p
    }

    pub fn start_in_env(confdir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Proxy {
        let mut child = Command::new(BIN)
            .args([
                "-p",
                "0",
                "--set",
                &format!("confdir={}", confdir.display()),
            ])
            .args(extra)
            .env_remove("MITMRS_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start the mitmrs binary");
        let (stdout, h1) = Lines::spawn(child.stdout.take().unwrap());
        let (stderr, h2) = Lines::spawn(child.stderr.take().unwrap());
        let mut proxy = Proxy {
            child,
            port: 0,
            confdir: confdir.to_path_buf(),
            _tmp: None,
            stdout,
            stderr,
            readers: vec![h1, h2],
        };
        const MARK: &str = " listening at 127.0.0.1:";
        let Some(line) = proxy.stdout.wait_for(|l| l.contains(MARK), WAIT) else {
            let _ = proxy.child.kill();
            let _ = proxy.child.wait();
            for h in proxy.readers.drain(..) {
                let _ = h.join();
            }
            panic!(
                "mitmrs {extra:?} did not print {MARK:?}PORT within {WAIT:?}\nstdout:\n{}\nstderr:\n{}",
                proxy.stdout.snapshot().join("\n"),
                proxy.stderr.snapshot().join("\n")
            );
        };
        let rest = &line[line.find(MARK).unwrap() + MARK.len()..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        assert!(
            rest[digits.len()..].starts_with('.'),
            "unexpected listening line: {line}"
        );
        proxy.port = digits
            .parse()
            .unwrap_or_else(|_| panic!("no port in listening line: {line}"));
        assert_ne!(proxy.port, 0, "listening line shows port 0: {line}");
        proxy
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The CA certificate the proxy signs its leaf certificates with.
    pub fn ca_cert(&self) -> PathBuf {
        self.confdir.join("mitmproxy-ca-cert.pem")
    }

    /// Waits for a stdout line containing `needle`; panics with the output so far.
    pub fn expect_stdout(&self, needle: &str) -> String {
        self.stdout
            .wait_for(|l| l.contains(needle), WAIT)
            .unwrap_or_else(|| {
                panic!(
                    "no stdout line containing {needle:?} within {WAIT:?}; output:\n{}",
                    self.output()
                )
            })
    }

    /// Everything printed so far, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.stdout.snapshot().join("\n"),
            self.stderr.snapshot().join("\n")
        )
    }

    /// Kills the proxy and returns its whole stdout.
    pub fn stop(mut self) -> Vec<String> {
        self.kill();
        self.stdout.snapshot()
    }

    /// Ctrl-C (SIGINT), as a user stops it: the addons' `done` runs (so `-w` has
    /// flushed its file). Waits at most 30 s for the exit; returns the exit status.
    pub fn interrupt(self) -> std::process::ExitStatus {
        self.stop_with("INT")
    }

    /// SIGTERM, as a service manager stops it; otherwise as [`Proxy::interrupt`].
    pub fn terminate(self) -> std::process::ExitStatus {
        self.stop_with("TERM")
    }

    fn stop_with(mut self, signal: &str) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status();
        // Wait on another thread, so a proxy that does not exit fails the test
        // after 30 s instead of hanging it (the placeholder child exits at once).
        let placeholder = Command::new("true").spawn().expect("cannot run true");
        let mut child = std::mem::replace(&mut self.child, placeholder);
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(status) => status.expect("cannot wait for mitmrs"),
            Err(_) => {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!(
                    "mitmrs did not exit within 30 s of SIG{signal}\n{}",
                    self.output()
                );
            }
        };
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
        status
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the binary to completion (for flags that exit at once). A binary that is
/// still running after 30 s (it started serving, say) is killed, so a test that
/// expected an exit fails instead of hanging.
pub fn run_bin(args: &[&str]) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let child = Command::new(BIN)
        .args(args)
        .arg("--set")
        .arg(format!("confdir={}", tmp.path().display()))
        .env_remove("MITMRS_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run the mitmrs binary");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => out,
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let out = rx
                .recv()
                .expect("the waiting thread ends once mitmrs is killed");
            panic!("mitmrs {args:?} did not exit within 30 s; output: {out:?}");
        }
    };
    out.expect("cannot wait for the mitmrs binary")
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------
// Origins

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Response {
    pub status: u16,
    pub reason: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn ok(body: impl Into<Vec<u8>>) -> Response {
        Response {
            status: 200,
            reason: "OK",
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: body.into(),
        }
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A small HTTP/1.1 origin on 127.0.0.1 (thread per connection, keep-alive,
/// Content-Length and chunked request bodies). It records every request and
/// counts connections. Stopped on drop.
pub struct Origin {
    pub port: u16,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Origin {
    pub fn http(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> Origin {
        Origin::start(None, Arc::new(handler))
    }

    pub fn https(
        pki: &TestPki,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Origin {
        Origin::start(Some(pki.server_config.clone()), Arc::new(handler))
    }

    fn start(tls: Option<Arc<rustls::ServerConfig>>, handler: Handler) -> Origin {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, r, s) = (connections.clone(), requests.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let (tls, handler, r) = (tls.clone(), handler.clone(), r.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
                    match tls {
                        None => serve(stream, &handler, &r),
                        Some(cfg) => {
                            let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            serve(rustls::StreamOwned::new(conn, stream), &handler, &r)
                        }
                    }
                });
            }
        });
        Origin {
            port,
            connections,
            requests,
            stop,
            accept: Some(accept),
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn serve<S: Read + Write>(stream: S, handler: &Handler, log: &Mutex<Vec<Request>>) {
    let mut r = BufReader::new(stream);
    // Bounded: at most 1000 requests per connection.
    for _ in 0..1000 {
        let Some(req) = read_request(&mut r) else {
            return;
        };
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let resp = handler(&req);
        log.lock().unwrap().push(req);
        let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason);
        for (k, v) in &resp.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", resp.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&resp.body);
        let w = r.get_mut();
        if w.write_all(&bytes).and_then(|_| w.flush()).is_err() || close {
            return;
        }
    }
}

fn read_line(r: &mut impl BufRead) -> Option<String> {
    let mut buf = Vec::new();
    match r.read_until(b'\n', &mut buf) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(
            String::from_utf8_lossy(&buf)
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
    }
}

fn read_request(r: &mut impl BufRead) -> Option<Request> {
    let line = read_line(r)?;
    let mut parts = line.split(' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let l = read_line(r)?;
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
        if headers.len() > 200 {
            return None;
        }
    }
    let mut req = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let size_line = read_line(r)?;
            let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !read_line(r)?.is_empty() {}
                break;
            }
            let start = req.body.len();
            req.body.resize(start + size, 0);
            r.read_exact(&mut req.body[start..]).ok()?;
            if !read_line(r)?.is_empty() {
                return None;
            }
        }
    } else if let Some(n) = req.header("content-length") {
        let n: usize = n.parse().ok()?;
        req.body.resize(n, 0);
        r.read_exact(&mut req.body).ok()?;
    }
    Some(req)
}

// ---------------------------------------------------------------------------
// A test PKI for TLS origins

/// A throwaway CA and a leaf for `localhost` and `127.0.0.1` signed by it; the CA
/// certificate is written to a PEM file for `ssl_verify_upstream_trusted_ca`.
pub struct TestPki {
    pub ca_path: PathBuf,
    /// The leaf (then the CA) and its key as PEM files, for origins that are not
    /// rustls (the Python HTTP/2 origin).
    pub leaf_chain_path: PathBuf,
    pub leaf_key_path: PathBuf,
    pub server_config: Arc<rustls::ServerConfig>,
    _dir: TempDir,
}

impl TestPki {
    pub fn new() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mitmrs e2e test origin CA");
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

        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("origin-ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        let leaf_chain_path = dir.path().join("origin-leaf.pem");
        std::fs::write(&leaf_chain_path, leaf.pem() + &ca.pem()).unwrap();
        let leaf_key_path = dir.path().join("origin-key.pem");
        std::fs::write(&leaf_key_path, leaf_key.serialize_pem()).unwrap();

        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
        );
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
            .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        TestPki {
            ca_path,
            leaf_chain_path,
            leaf_key_path,
            server_config: Arc::new(cfg),
            _dir: dir,
        }
    }
}

// ---------------------------------------------------------------------------
// curl

/// The result of one curl transfer run with [`curl`].
#[derive(Debug)]
pub struct CurlResult {
    pub ok: bool,
    pub status: u16,
    pub body: Vec<u8>,
    pub stderr: String,
}

impl CurlResult {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A curl command through `proxy`, trusting only the proxy's CA, with no proxy
/// environment and a time limit.
pub fn curl_cmd(proxy: &Proxy, cacert: &Path) -> Command {
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "--noproxy",
        "",
        "--max-time",
        "30",
        "-x",
        &proxy.url(),
    ])
    .arg("--cacert")
    .arg(cacert)
    .env_remove("CURL_CA_BUNDLE")
    .env_remove("SSL_CERT_FILE")
    .env_remove("SSL_CERT_DIR")
    .stdin(Stdio::null());
    c
}

/// Runs curl with `args` (no `-x`: for clients that talk to the proxy as a server
/// or a SOCKS proxy), trusting only the proxy's CA, with no proxy or CA settings
/// from the environment and a time limit: (success, stdout, stderr).
pub fn curl_plain(proxy: &Proxy, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(proxy.ca_cert())
        .args(args)
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("CURL_CA_BUNDLE")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs curl for one URL (in `args`) through the proxy and splits off the status.
pub fn curl(proxy: &Proxy, args: &[&str]) -> CurlResult {
    curl_trusting(proxy, &proxy.ca_cert(), args)
}

pub fn curl_trusting(proxy: &Proxy, cacert: &Path, args: &[&str]) -> CurlResult {
    let out = curl_cmd(proxy, cacert)
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("cannot run curl");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let pos = out
        .stdout
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap_or_else(|| {
            panic!(
                "curl {args:?}: no status in output {:?}; stderr: {stderr}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
    let status = String::from_utf8_lossy(&out.stdout[pos + 1..])
        .trim()
        .parse()
        .unwrap_or(0);
    CurlResult {
        ok: out.status.success(),
        status,
        body: out.stdout[..pos].to_vec(),
        stderr,
    }
}

/// Deterministic, non-repeating-looking test bytes.
pub fn test_bytes(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}
