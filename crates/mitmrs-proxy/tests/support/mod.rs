//! Shared helpers for the in-process end-to-end tests: a proxy started inside the
//! test process, a recording addon, small configurable addons, real origin servers
//! (`origin`) and precise clients (`client`). Everything talks over 127.0.0.1 only.
#![allow(dead_code)]

pub mod client;
pub mod origin;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use mitmrs_core::addon::{
    ClientHelloData, Hook, HookSet, NextLayer, ServerConnectionHookData, TlsData,
};
use mitmrs_core::connection::TlsFacts;
use mitmrs_core::{Addon, AddonChain, Client, HookResult, HttpFlow, Options};
use mitmrs_proxy::{Proxy, ProxyCtx, Runtime, Workers};
use tokio::sync::watch;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// A unique directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("mitmrs-proxy-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
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

/// A proxy running in this process; stopped on drop.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub ctx: Arc<ProxyCtx>,
    pub workers: Workers,
    shutdown: watch::Sender<bool>,
    _dir: TempDir,
}

impl TestProxy {
    pub fn builder() -> ProxyBuilder {
        ProxyBuilder {
            sets: Vec::new(),
            addons: Vec::new(),
            workers: 0,
        }
    }

    /// The proxy's CA certificate (DER), for clients that connect through CONNECT.
    pub fn ca_der(&self) -> mitmrs_tls::CertificateDer<'static> {
        self.ctx.ca.ca_cert_der().clone()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        self.workers.stop();
    }
}

pub struct ProxyBuilder {
    sets: Vec<String>,
    addons: Vec<Arc<dyn Addon>>,
    workers: usize,
}

impl ProxyBuilder {
    /// An option as `--set name=value`.
    pub fn set(mut self, s: impl Into<String>) -> Self {
        self.sets.push(s.into());
        self
    }

    /// Trusts this CA (PEM file) for upstream TLS.
    pub fn trust(self, ca_pem: &Path) -> Self {
        self.set(format!(
            "ssl_verify_upstream_trusted_ca={}",
            ca_pem.display()
        ))
    }

    /// Runs connections on this many worker threads instead of the test's runtime.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    pub fn addon(mut self, a: Arc<dyn Addon>) -> Self {
        self.addons.push(a);
        self
    }

    pub async fn start(self) -> TestProxy {
        let dir = TempDir::new("confdir");
        let options = Options::new();
        mitmrs_core::options::register_core_options(&options).expect("register options");
        options
            .parse_set("listen_host=127.0.0.1", false)
            .expect("listen_host");
        options
            .parse_set("listen_port=0", false)
            .expect("listen_port");
        options
            .parse_set(&format!("confdir={}", dir.path().display()), false)
            .expect("confdir");
        for s in &self.sets {
            options
                .parse_set(s, false)
                .unwrap_or_else(|e| panic!("--set {s}: {e}"));
        }
        let mut chain = AddonChain::new();
        for a in self.addons {
            chain.add(a, &options).expect("add addon");
        }
        let all: BTreeSet<String> = options.names().into_iter().collect();
        chain.configure(&options, &all).expect("configure");
        mitmrs_tls::install_crypto_provider();
        let rt = Runtime::build(&options).expect("runtime");
        let ca = mitmrs_tls::CertAuthority::load_or_create(&rt.cfg.confdir).expect("CA");
        let ctx = Arc::new(ProxyCtx::new(chain, options, Arc::new(ca), rt));
        let workers = Workers::start(self.workers).expect("worker threads");
        let proxy = Proxy::bind(ctx.clone())
            .await
            .expect("bind proxy")
            .with_workers(workers.clone());
        let addr = proxy.local_addr().expect("proxy addr");
        let (tx, rx) = watch::channel(false);
        tokio::spawn(proxy.run(rx));
        TestProxy {
            addr,
            ctx,
            workers,
            shutdown: tx,
            _dir: dir,
        }
    }
}

// ---------------------------------------------------------------------------
// The recording addon

/// What a flow looked like when a hook saw it.
#[derive(Clone, Debug)]
pub struct FlowSnap {
    pub id: String,
    pub method: String,
    pub url: String,
    pub path: String,
    pub req_content: Option<Bytes>,
    pub req_stream: String,
    pub status: Option<u16>,
    pub resp_content: Option<Bytes>,
    pub resp_stream: Option<String>,
    pub error: Option<String>,
    pub client_tls: TlsFacts,
    pub server_tls: TlsFacts,
    pub server_addr: Option<(String, u16)>,
}

impl FlowSnap {
    fn of(f: &HttpFlow) -> Self {
        FlowSnap {
            id: f.id.clone(),
            method: f.request.method.clone(),
            url: f.request.url(),
            path: f.request.path.clone(),
            req_content: f.request.content.clone(),
            req_stream: format!("{:?}", f.request.stream),
            status: f.response.as_ref().map(|r| r.status_code),
            resp_content: f.response.as_ref().and_then(|r| r.content.clone()),
            resp_stream: f.response.as_ref().map(|r| format!("{:?}", r.stream)),
            error: f.error.as_ref().map(|e| e.msg.clone()),
            client_tls: f.client_conn.tls.clone(),
            server_tls: f.server_conn.tls.clone(),
            server_addr: f.server_conn.address.clone(),
        }
    }
}

/// One hook call as the recorder saw it.
#[derive(Clone, Debug)]
pub struct Ev {
    pub hook: &'static str,
    pub flow: Option<FlowSnap>,
    /// Server-side TLS facts for connection and TLS hooks.
    pub server_tls: Option<TlsFacts>,
    /// SNI for `tls_clienthello`.
    pub sni: Option<String>,
}

/// Implements every hook and records each call, in order.
pub struct Recorder {
    log: Mutex<Vec<Ev>>,
    version: watch::Sender<u64>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Recorder {
            log: Mutex::new(Vec::new()),
            version: watch::channel(0).0,
        })
    }

    fn push(&self, ev: Ev) {
        self.log.lock().unwrap().push(ev);
        self.version.send_modify(|v| *v += 1);
    }

    fn flow(&self, hook: &'static str, f: &HttpFlow) -> HookResult {
        self.push(Ev {
            hook,
            flow: Some(FlowSnap::of(f)),
            server_tls: None,
            sni: None,
        });
        Ok(())
    }

    fn conn(&self, hook: &'static str, tls: Option<TlsFacts>) -> HookResult {
        self.push(Ev {
            hook,
            flow: None,
            server_tls: tls,
            sni: None,
        });
        Ok(())
    }

    pub fn events(&self) -> Vec<Ev> {
        self.log.lock().unwrap().clone()
    }

    pub fn hooks(&self) -> Vec<&'static str> {
        self.log.lock().unwrap().iter().map(|e| e.hook).collect()
    }

    /// The flow snapshots of every call of `hook`.
    pub fn flows(&self, hook: &str) -> Vec<FlowSnap> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.hook == hook)
            .filter_map(|e| e.flow.clone())
            .collect()
    }

    pub fn count(&self, hook: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.hook == hook)
            .count()
    }

    /// Waits until `pred` holds for the log (re-checked after every new event).
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Ev]) -> bool) {
        let mut rx = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if pred(&self.log.lock().unwrap()) {
                return;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => panic!(
                    "timed out waiting for {what}; hooks so far: {:?}",
                    self.hooks()
                ),
            }
        }
    }

    /// Waits until `hook` has been called at least `n` times.
    pub async fn wait_count(&self, hook: &str, n: usize) {
        self.wait_for(&format!("{n} x {hook}"), |evs| {
            evs.iter().filter(|e| e.hook == hook).count() >= n
        })
        .await
    }
}

#[async_trait]
impl Addon for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    async fn client_connected(&self, _c: &mut Client) -> HookResult {
        self.conn("client_connected", None)
    }
    async fn client_disconnected(&self, _c: &Client) -> HookResult {
        self.conn("client_disconnected", None)
    }
    async fn server_connect(&self, d: &mut ServerConnectionHookData) -> HookResult {
        self.conn("server_connect", Some(d.server.tls.clone()))
    }
    async fn server_connected(&self, d: &ServerConnectionHookData) -> HookResult {
        self.conn("server_connected", Some(d.server.tls.clone()))
    }
    async fn server_disconnected(&self, d: &ServerConnectionHookData) -> HookResult {
        self.conn("server_disconnected", Some(d.server.tls.clone()))
    }
    async fn server_connect_error(&self, d: &ServerConnectionHookData) -> HookResult {
        self.conn("server_connect_error", Some(d.server.tls.clone()))
    }
    async fn next_layer(&self, _d: &mut NextLayer) -> HookResult {
        self.conn("next_layer", None)
    }
    async fn http_connect(&self, f: &mut HttpFlow) -> HookResult {
        self.flow("http_connect", f)
    }
    async fn http_connect_upstream(&self, f: &mut HttpFlow) -> HookResult {
        self.flow("http_connect_upstream", f)
    }
    async fn http_connected(&self, f: &mut HttpFlow) -> HookResult {
        self.flow("http_connected", f)
    }
    async fn http_connect_error(&self, f: &mut HttpFlow) -> HookResult {
        self.flow("http_connect_error", f)
    }
    async fn requestheaders(&self, f: &mut HttpFlow) -> HookResult {
        self.flow("requestheaders", f)
    }
    async fn request(&self, f: &mut HttpFlow) -> HookResult {
        self.flow("request", f)
    }
    async fn responseheaders(&self, f: &mut HttpFlow) -> HookResult {
        self.flow("responseheaders", f)
    }
    async fn response(&self, f: &mut HttpFlow) -> HookResult {
        self.flow("response", f)
    }
    async fn error(&self, f: &mut HttpFlow) -> HookResult {
        self.flow("error", f)
    }
    async fn tls_clienthello(&self, d: &mut ClientHelloData) -> HookResult {
        self.push(Ev {
            hook: "tls_clienthello",
            flow: None,
            server_tls: None,
            sni: d.sni.clone(),
        });
        Ok(())
    }
    async fn tls_established_client(&self, _d: &TlsData) -> HookResult {
        self.conn("tls_established_client", None)
    }
    async fn tls_established_server(&self, d: &TlsData) -> HookResult {
        self.conn("tls_established_server", Some(d.server.tls.clone()))
    }
    async fn tls_failed_client(&self, _d: &TlsData) -> HookResult {
        self.conn("tls_failed_client", None)
    }
    async fn tls_failed_server(&self, d: &TlsData) -> HookResult {
        self.conn("tls_failed_server", Some(d.server.tls.clone()))
    }
}

// ---------------------------------------------------------------------------
// A configurable addon

pub type FlowFn = Box<dyn Fn(&mut HttpFlow) + Send + Sync>;

/// An addon that runs a closure in some of the flow hooks.
pub struct FnAddon {
    name: &'static str,
    hooks: Vec<(Hook, FlowFn)>,
}

impl FnAddon {
    pub fn new(name: &'static str) -> Self {
        FnAddon {
            name,
            hooks: Vec::new(),
        }
    }

    pub fn on(mut self, hook: Hook, f: impl Fn(&mut HttpFlow) + Send + Sync + 'static) -> Self {
        self.hooks.push((hook, Box::new(f)));
        self
    }

    pub fn arc(self) -> Arc<Self> {
        Arc::new(self)
    }

    fn run(&self, hook: Hook, flow: &mut HttpFlow) -> HookResult {
        for (h, f) in &self.hooks {
            if *h == hook {
                f(flow);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Addon for FnAddon {
    fn name(&self) -> &str {
        self.name
    }
    fn hooks(&self) -> HookSet {
        HookSet::of(&self.hooks.iter().map(|(h, _)| *h).collect::<Vec<_>>())
    }
    async fn http_connect(&self, f: &mut HttpFlow) -> HookResult {
        self.run(Hook::HttpConnect, f)
    }
    async fn requestheaders(&self, f: &mut HttpFlow) -> HookResult {
        self.run(Hook::RequestHeaders, f)
    }
    async fn request(&self, f: &mut HttpFlow) -> HookResult {
        self.run(Hook::Request, f)
    }
    async fn responseheaders(&self, f: &mut HttpFlow) -> HookResult {
        self.run(Hook::ResponseHeaders, f)
    }
    async fn response(&self, f: &mut HttpFlow) -> HookResult {
        self.run(Hook::Response, f)
    }
}

/// Lowercase hex of the SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(data))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
