//! `mitmrs-bench load`: the load client for what wrk cannot do.
//!
//! * plain HTTP straight to an origin (origin-form) or through a forward proxy
//!   (absolute-form), and HTTPS through a proxy via CONNECT + TLS trusting the
//!   proxy's CA (or straight to the TLS origin trusting the origin CA);
//! * keep-alive or a new connection per request (`--new-conn`);
//! * fixed concurrency, bounded by duration and/or request count;
//! * open-loop fixed-rate mode (`--rate`) whose latencies are measured from
//!   the scheduled send time (no coordinated omission);
//! * uploads (`--body-size`) and throttled downloads (`--read-rate`);
//! * `--hold N`: open N keep-alive connections, one request each, print
//!   `HELD ok errors`, and keep them open until stdin closes.
//!
//! Latencies go into an hdrhistogram. The last stdout line is
//! `RESULT key=value ...`, parsed by the runner.

use crate::body::RepeatBody;
use crate::tlsutil;
use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Command-line options of `mitmrs-bench load`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Origin URL, e.g. http://127.0.0.1:8080/small or https://127.0.0.1:8443/small.
    #[arg(long)]
    pub url: String,
    /// Forward proxy HOST:PORT. http URLs are sent in absolute form, https
    /// URLs through CONNECT + TLS.
    #[arg(long)]
    pub proxy: Option<String>,
    /// CA PEM to trust for TLS (the proxy's CA when intercepting).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Concurrent connections.
    #[arg(long, short = 'c', default_value_t = 32)]
    pub connections: usize,
    /// Run time bound in seconds.
    #[arg(long, short = 'd', default_value_t = 5.0)]
    pub duration: f64,
    /// Request count bound (whichever bound is hit first ends the run).
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,
    /// A new connection (and TLS handshake) for every request.
    #[arg(long)]
    pub new_conn: bool,
    /// Open-loop mode: total requests per second across all connections.
    #[arg(long)]
    pub rate: Option<f64>,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Request body size in bytes (streamed, with Content-Length).
    #[arg(long, default_value_t = 0)]
    pub body_size: u64,
    /// Throttle response-body reading to this many bytes per second.
    #[arg(long)]
    pub read_rate: Option<f64>,
    /// Hold mode: open this many keep-alive connections and keep them.
    #[arg(long)]
    pub hold: Option<usize>,
    /// Hold mode: give up holding after this many seconds.
    #[arg(long, default_value_t = 300.0)]
    pub hold_secs: f64,
    /// Tokio worker threads (1 = current-thread runtime, like wrk -t1).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where and how to connect, resolved once.
struct Target {
    connect_addr: String,
    host: String,
    authority: String,
    request_uri: Uri,
    tls: Option<TlsConnector>,
    via_proxy: bool,
    args: LoadArgs,
}

impl Target {
    fn new(args: &LoadArgs) -> Result<Self> {
        let uri: Uri = args.url.parse().context("--url")?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => bail!("--url must be http:// or https://"),
        };
        let host = uri
            .host()
            .ok_or_else(|| anyhow!("--url needs a host"))?
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = format!("{host}:{port}");
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let via_proxy = args.proxy.is_some();
        let request_uri: Uri = if via_proxy && !https {
            format!("http://{authority}{path}").parse()?
        } else {
            path.parse()?
        };
        let tls = if https {
            let ca = args
                .ca
                .as_ref()
                .ok_or_else(|| anyhow!("https needs --ca"))?;
            Some(TlsConnector::from(tlsutil::client_config(ca)?))
        } else {
            None
        };
        Ok(Self {
            connect_addr: args.proxy.clone().unwrap_or_else(|| authority.clone()),
            host,
            authority,
            request_uri,
            tls,
            via_proxy,
            args: args.clone(),
        })
    }

    async fn connect(&self) -> Result<SendRequest<RepeatBody>> {
        let tcp = TcpStream::connect(&self.connect_addr)
            .await
            .with_context(|| format!("connect {}", self.connect_addr))?;
        tcp.set_nodelay(true)?;
        if self.args.new_conn {
            // RST on close: no TIME_WAIT pile-up on the client side.
            linger_zero(&tcp);
        }
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let mut tcp = tcp;
                if self.via_proxy {
                    connect_tunnel(&mut tcp, &self.authority).await?;
                }
                let name = tlsutil::server_name(&self.host)?;
                Box::new(tls.connect(name, tcp).await.context("TLS handshake")?)
            }
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }

    fn request(&self) -> Result<Request<RepeatBody>> {
        let mut b = Request::builder()
            .method(self.args.method.as_str())
            .uri(self.request_uri.clone())
            .header(hyper::header::HOST, self.authority.as_str());
        if self.args.body_size > 0 {
            b = b.header(hyper::header::CONTENT_LENGTH, self.args.body_size);
        }
        Ok(b.body(RepeatBody::new(self.args.body_size))?)
    }

    /// One request on `sender`; returns body bytes moved (both directions).
    async fn exchange(&self, sender: &mut SendRequest<RepeatBody>) -> Result<u64> {
        sender.ready().await?;
        let resp = sender.send_request(self.request()?).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut n = 0u64;
        let start = Instant::now();
        while let Some(frame) = body.frame().await {
            if let Some(d) = frame?.data_ref() {
                n += d.len() as u64;
                if let Some(rate) = self.args.read_rate {
                    let due = Duration::from_secs_f64(n as f64 / rate);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        if !status.is_success() {
            bail!("HTTP status {status}");
        }
        Ok(n + self.args.body_size)
    }
}

/// SO_LINGER 0: close with RST. tokio deprecates its setter because it blocks
/// on drop for non-zero timeouts; zero never blocks.
fn linger_zero(tcp: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a valid socket with a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

async fn connect_tunnel(tcp: &mut TcpStream, authority: &str) -> Result<()> {
    let req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            bail!("proxy closed during CONNECT");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("CONNECT refused: {status}");
    }
    Ok(())
}

struct Stats {
    hist: Histogram<u64>,
    requests: u64,
    errors: u64,
    bytes: u64,
    first_error: Option<String>,
}

impl Stats {
    fn new() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds"),
            requests: 0,
            errors: 0,
            bytes: 0,
            first_error: None,
        }
    }
    fn error(&mut self, e: anyhow::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{e:#}"));
        }
    }
    fn merge(&mut self, o: Stats) {
        let _ = self.hist.add(&o.hist);
        self.requests += o.requests;
        self.errors += o.errors;
        self.bytes += o.bytes;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

async fn worker(t: Arc<Target>, issued: Arc<AtomicU64>, deadline: Instant, slot: usize) -> Stats {
    let mut st = Stats::new();
    let mut sender: Option<SendRequest<RepeatBody>> = None;
    let per_req = Duration::from_secs_f64(t.args.timeout);
    let interval = t
        .args
        .rate
        .map(|r| Duration::from_secs_f64(t.args.connections as f64 / r.max(0.001)));
    let start = Instant::now();
    let mut next = interval.map(|i| start + i.mul_f64(slot as f64 / t.args.connections as f64));
    loop {
        // Open loop: latency counts from the scheduled time when we are behind
        // schedule (no coordinated omission), else from the actual send, so
        // tokio's 1 ms timer granularity does not inflate every sample.
        let mut t0 = None;
        if let Some(due) = next {
            if due >= deadline {
                break;
            }
            if Instant::now() >= due {
                t0 = Some(due);
            } else {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        if let Some(max) = t.args.requests {
            if issued.fetch_add(1, Ordering::Relaxed) >= max {
                break;
            }
        }
        let t0 = t0.unwrap_or_else(Instant::now);
        let res = tokio::time::timeout(per_req, async {
            if sender.is_none() || t.args.new_conn {
                sender = Some(t.connect().await?);
            }
            match sender.as_mut() {
                Some(s) => t.exchange(s).await,
                None => Err(anyhow!("no connection")),
            }
        })
        .await
        .unwrap_or_else(|_| Err(anyhow!("request timed out after {per_req:?}")));
        match res {
            Ok(n) => {
                st.requests += 1;
                st.bytes += n;
                st.hist.saturating_record(t0.elapsed().as_micros() as u64);
            }
            Err(e) => {
                st.error(e);
                sender = None;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        if let (Some(n), Some(i)) = (next.as_mut(), interval) {
            *n += i;
        }
    }
    st
}

async fn run_load(args: LoadArgs) -> Result<()> {
    let t = Arc::new(Target::new(&args)?);
    if let Some(n) = args.hold {
        return hold(t, n).await;
    }
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let tasks: Vec<_> = (0..args.connections.max(1))
        .map(|i| tokio::spawn(worker(t.clone(), issued.clone(), deadline, i)))
        .collect();
    let mut total = Stats::new();
    for task in tasks {
        total.merge(task.await?);
    }
    let secs = start.elapsed().as_secs_f64();
    print_result(&total, secs);
    Ok(())
}

fn print_result(st: &Stats, secs: f64) {
    let h = &st.hist;
    let q = |p: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(p)
        }
    };
    if let Some(e) = &st.first_error {
        println!("ERROR {e}");
    }
    println!(
        "RESULT requests={} errors={} secs={:.4} rps={:.1} bytes={} bytes_per_sec={:.0} \
         mean_us={:.1} p50_us={} p90_us={} p99_us={} p999_us={} max_us={}",
        st.requests,
        st.errors,
        secs,
        st.requests as f64 / secs,
        st.bytes,
        st.bytes as f64 / secs,
        h.mean(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        h.max()
    );
}

async fn hold(t: Arc<Target>, n: usize) -> Result<()> {
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (t, sem) = (t.clone(), sem.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await?;
            tokio::time::timeout(Duration::from_secs_f64(t.args.timeout), async {
                let mut s = t.connect().await?;
                t.exchange(&mut s).await?;
                Ok::<_, anyhow::Error>(s)
            })
            .await
            .unwrap_or_else(|_| Err(anyhow!("timed out")))
        });
    }
    let mut held = Vec::with_capacity(n);
    let mut st = Stats::new();
    while let Some(r) = set.join_next().await {
        match r? {
            Ok(s) => held.push(s),
            Err(e) => st.error(e),
        }
    }
    if let Some(e) = &st.first_error {
        println!("ERROR {e}");
    }
    println!("HELD {} {}", held.len(), st.errors);
    // Hold until stdin closes or the time bound passes.
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    });
    let _ = tokio::time::timeout(Duration::from_secs_f64(t.args.hold_secs), stdin_closed).await;
    drop(held);
    Ok(())
}

pub fn run(args: LoadArgs) -> Result<()> {
    let limit = crate::procs::raise_nofile_limit();
    if let Some(n) = args.hold {
        if (n as u64) + 64 > limit {
            bail!("fd limit {limit} too low to hold {n} connections");
        }
    }
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(run_load(args))
}
