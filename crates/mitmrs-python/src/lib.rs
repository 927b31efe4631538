//! mitmrs-python: Python addon support. CPython is embedded through PyO3 so that
//! mitmproxy addon scripts run unmodified with `mitmrs -s script.py`.
//!
//! The binary provides its own `mitmproxy` package: a built-in module registered
//! with `append_to_inittab!` before the interpreter starts (so it wins over any
//! pip-installed mitmproxy), whose submodules are Python sources embedded in the
//! binary (`python/mitmproxy/*.py`) and served by an import finder. The script host
//! (`mitmproxy._mitmrs`) loads scripts and runs hooks; this crate converts flows,
//! runs flow and connection hooks on one Python worker thread fed by a channel
//! (off the tokio runtime, the GIL held while there is work) and bridges options
//! and logs.
//!
//! See docs/PYTHON.md for what works and what does not yet.

mod native;
mod sync;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use mitmrs_core::addon::{
    ClientHelloData, Hook, HookSet, LayerKind, Loader, NextLayer, ServerConnectionHookData,
    Socks5AuthData, TlsData, TlsSide,
};
use mitmrs_core::connection::Client;
use mitmrs_core::options::{Options, OptionsError};
use mitmrs_core::{Addon, HookResult, HttpFlow};
use pyo3::prelude::*;
use pyo3::types::PyList;

/// The embedded `mitmproxy` package: (module name, source, is a package).
/// Add WebSocket/TCP/flowfilter/io modules here as more files.
pub(crate) const SOURCES: &[(&str, &str, bool)] = &[
    (
        "mitmproxy.coretypes",
        include_str!("../python/mitmproxy/coretypes/__init__.py"),
        true,
    ),
    (
        "mitmproxy.coretypes.multidict",
        include_str!("../python/mitmproxy/coretypes/multidict.py"),
        false,
    ),
    (
        "mitmproxy.utils",
        include_str!("../python/mitmproxy/utils/__init__.py"),
        true,
    ),
    (
        "mitmproxy.utils.strutils",
        include_str!("../python/mitmproxy/utils/strutils.py"),
        false,
    ),
    (
        "mitmproxy.exceptions",
        include_str!("../python/mitmproxy/exceptions.py"),
        false,
    ),
    (
        "mitmproxy.hooks",
        include_str!("../python/mitmproxy/hooks.py"),
        false,
    ),
    (
        "mitmproxy.log",
        include_str!("../python/mitmproxy/log.py"),
        false,
    ),
    (
        "mitmproxy.ctx",
        include_str!("../python/mitmproxy/ctx.py"),
        false,
    ),
    (
        "mitmproxy.flow",
        include_str!("../python/mitmproxy/flow.py"),
        false,
    ),
    (
        "mitmproxy.connection",
        include_str!("../python/mitmproxy/connection.py"),
        false,
    ),
    (
        "mitmproxy.http",
        include_str!("../python/mitmproxy/http.py"),
        false,
    ),
    (
        "mitmproxy.command",
        include_str!("../python/mitmproxy/command.py"),
        false,
    ),
    (
        "mitmproxy.script",
        include_str!("../python/mitmproxy/script/__init__.py"),
        true,
    ),
    (
        "mitmproxy.script.concurrent",
        include_str!("../python/mitmproxy/script/concurrent.py"),
        false,
    ),
    (
        "mitmproxy.addonmanager",
        include_str!("../python/mitmproxy/addonmanager.py"),
        false,
    ),
    (
        "mitmproxy.proxy",
        include_str!("../python/mitmproxy/proxy/__init__.py"),
        true,
    ),
    (
        "mitmproxy.proxy.mode_specs",
        include_str!("../python/mitmproxy/proxy/mode_specs.py"),
        false,
    ),
    (
        "mitmproxy.proxy.context",
        include_str!("../python/mitmproxy/proxy/context.py"),
        false,
    ),
    (
        "mitmproxy.proxy.server_hooks",
        include_str!("../python/mitmproxy/proxy/server_hooks.py"),
        false,
    ),
    (
        "mitmproxy.proxy.layer",
        include_str!("../python/mitmproxy/proxy/layer.py"),
        false,
    ),
    (
        "mitmproxy.proxy.commands",
        include_str!("../python/mitmproxy/proxy/commands.py"),
        false,
    ),
    (
        "mitmproxy.proxy.events",
        include_str!("../python/mitmproxy/proxy/events.py"),
        false,
    ),
    (
        "mitmproxy.proxy.layers",
        include_str!("../python/mitmproxy/proxy/layers/__init__.py"),
        true,
    ),
    (
        "mitmproxy.proxy.layers.dns",
        include_str!("../python/mitmproxy/proxy/layers/dns.py"),
        false,
    ),
    (
        "mitmproxy.proxy.layers.http",
        include_str!("../python/mitmproxy/proxy/layers/http/__init__.py"),
        true,
    ),
    (
        "mitmproxy.proxy.layers.http._http1",
        include_str!("../python/mitmproxy/proxy/layers/http/_http1.py"),
        false,
    ),
    (
        "mitmproxy.proxy.layers.modes",
        include_str!("../python/mitmproxy/proxy/layers/modes.py"),
        false,
    ),
    (
        "mitmproxy.proxy.layers.quic",
        include_str!("../python/mitmproxy/proxy/layers/quic.py"),
        false,
    ),
    (
        "mitmproxy.proxy.layers.tcp",
        include_str!("../python/mitmproxy/proxy/layers/tcp.py"),
        false,
    ),
    (
        "mitmproxy.proxy.layers.tls",
        include_str!("../python/mitmproxy/proxy/layers/tls.py"),
        false,
    ),
    (
        "mitmproxy.proxy.layers.udp",
        include_str!("../python/mitmproxy/proxy/layers/udp.py"),
        false,
    ),
    (
        "mitmproxy.proxy.layers.websocket",
        include_str!("../python/mitmproxy/proxy/layers/websocket.py"),
        false,
    ),
    (
        "mitmproxy.tls",
        include_str!("../python/mitmproxy/tls.py"),
        false,
    ),
    (
        "mitmproxy._later",
        include_str!("../python/mitmproxy/_later.py"),
        false,
    ),
    (
        "mitmproxy.types",
        include_str!("../python/mitmproxy/types.py"),
        false,
    ),
    (
        "mitmproxy.tcp",
        include_str!("../python/mitmproxy/tcp.py"),
        false,
    ),
    (
        "mitmproxy.udp",
        include_str!("../python/mitmproxy/udp.py"),
        false,
    ),
    (
        "mitmproxy.websocket",
        include_str!("../python/mitmproxy/websocket.py"),
        false,
    ),
    (
        "mitmproxy.dns",
        include_str!("../python/mitmproxy/dns.py"),
        false,
    ),
    (
        "mitmproxy.flowfilter",
        include_str!("../python/mitmproxy/flowfilter.py"),
        false,
    ),
    (
        "mitmproxy.io",
        include_str!("../python/mitmproxy/io/__init__.py"),
        true,
    ),
    (
        "mitmproxy.contentviews",
        include_str!("../python/mitmproxy/contentviews/__init__.py"),
        true,
    ),
    (
        "mitmproxy.contentviews.grpc",
        include_str!("../python/mitmproxy/contentviews/grpc.py"),
        false,
    ),
    (
        "mitmproxy.addons",
        include_str!("../python/mitmproxy/addons/__init__.py"),
        true,
    ),
    (
        "mitmproxy.addons.asgiapp",
        include_str!("../python/mitmproxy/addons/asgiapp.py"),
        false,
    ),
    (
        "mitmproxy._mitmrs",
        include_str!("../python/mitmproxy/_mitmrs.py"),
        false,
    ),
];
pub(crate) const PACKAGE_INIT: &str = include_str!("../python/mitmproxy/__init__.py");

/// Shared state reachable from the native module's functions.
pub(crate) struct Global {
    pub options: Options,
    /// Options that scripts defined (to name the option a `configure` rejected).
    pub script_options: std::sync::Mutex<Vec<String>>,
}

pub(crate) static GLOBAL: OnceLock<Global> = OnceLock::new();
/// The hooks the loaded scripts define, as [`HookSet`] bits.
pub(crate) static HOOKS: AtomicU64 = AtomicU64::new(0);
/// Whether a script defines `tick`.
pub(crate) static TICK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static SHUTDOWN: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Resolves once a script called `ctx.master.shutdown()`.
pub async fn shutdown_requested() {
    SHUTDOWN.notified().await
}

pub(crate) fn request_shutdown() {
    SHUTDOWN.notify_one();
}

/// Formats a Python exception with its traceback, as Python prints it.
pub(crate) fn format_err(py: Python<'_>, e: &PyErr) -> String {
    let r = (|| -> PyResult<String> {
        let tb = py.import("traceback")?;
        let lines = tb.call_method1("format_exception", (e.value(py),))?;
        let s: Vec<String> = lines.extract()?;
        Ok(s.concat())
    })();
    r.unwrap_or_else(|_| e.to_string()).trim_end().to_string()
}

/// The Python addon: every script given with `-s`, as one addon in the chain.
pub struct PythonAddon {
    host: Py<PyAny>,
    name: String,
    worker: std::sync::mpsc::Sender<Arc<Slot>>,
    /// The host again, usable without the GIL (for jobs run off the worker).
    shared_host: Arc<Py<PyAny>>,
}

/// A hook for the Python worker thread.
struct Job {
    /// `flow_hook` or `conn_hook` of the host.
    method: &'static str,
    hook: &'static str,
    /// The Python flow kept from an earlier hook (flow hooks only).
    pyflow: Option<Py<PyAny>>,
    state: sync::V,
    reply: Reply,
}

type FlowResult = Result<(sync::PyFlow, sync::FlowOut), String>;

enum ReplyTx {
    Flow(tokio::sync::oneshot::Sender<FlowResult>),
    Conn(tokio::sync::oneshot::Sender<Result<ConnOut, String>>),
}

/// Where the result of a hook goes. The worker thread delivers it when the hooks
/// ran there; when an async hook took over, `Host._run` calls it (or `fail`) from
/// the asyncio thread once all hooks ran. Dropped unanswered, the hook fails.
#[pyclass(module = "mitmproxy._rs", frozen)]
pub(crate) struct Reply(std::sync::Mutex<Option<ReplyTx>>);

impl Reply {
    fn deliver(&self, py: Python<'_>, r: Result<&Bound<'_, PyAny>, String>) {
        let Some(tx) = self.0.lock().unwrap().take() else {
            return;
        };
        match tx {
            ReplyTx::Flow(tx) => {
                let v = r.and_then(|out| {
                    (|| -> PyResult<(sync::PyFlow, sync::FlowOut)> {
                        let (f, out): (Py<PyAny>, Bound<'_, PyAny>) = out.extract()?;
                        Ok((sync::PyFlow(f), sync::FlowOut::extract(&out)?))
                    })()
                    .map_err(|e| format_err(py, &e))
                });
                let _ = tx.send(v);
            }
            ReplyTx::Conn(tx) => {
                let v = r.and_then(|out| ConnOut::extract(out).map_err(|e| format_err(py, &e)));
                let _ = tx.send(v);
            }
        }
    }
}

#[pymethods]
impl Reply {
    fn __call__(&self, py: Python<'_>, out: &Bound<'_, PyAny>) {
        self.deliver(py, Ok(out))
    }

    fn fail(&self, py: Python<'_>, msg: String) {
        self.deliver(py, Err(msg))
    }
}

/// A queued job; whoever takes it first runs it (the worker thread, or the
/// waiting flow itself when the worker is stuck in a slow hook).
struct Slot(std::sync::Mutex<Option<Job>>);

/// When the worker thread started its current job (ms since [`epoch`] + 1; 0 while
/// it has none).
static BUSY_SINCE: AtomicU64 = AtomicU64::new(0);
/// How long a job may wait behind one hook before it runs elsewhere.
const STALL: Duration = Duration::from_millis(50);

fn epoch() -> std::time::Instant {
    static E: OnceLock<std::time::Instant> = OnceLock::new();
    *E.get_or_init(std::time::Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// Whether the worker thread has been in one job for longer than [`STALL`].
fn worker_stalled() -> bool {
    let since = BUSY_SINCE.load(Ordering::Relaxed);
    since != 0 && now_ms().saturating_sub(since) > STALL.as_millis() as u64
}

/// The Python worker thread: runs the jobs in order, holding the GIL while there
/// are any and releasing it while it waits. A plain `def` hook runs here (as plain
/// hooks run on mitmproxy's one event loop); async and `@concurrent` hooks go on
/// to the asyncio thread without holding it up. A hook that blocks for long (sleeps,
/// network I/O) does not hold up the others for more than [`STALL`]: their flows
/// then run them on blocking threads (see [`PythonAddon::run`]).
fn run_worker(host: Py<PyAny>, rx: std::sync::mpsc::Receiver<Arc<Slot>>) {
    use std::sync::mpsc::TryRecvError;
    Python::with_gil(|py| {
        let host = host.bind(py);
        let mut rx = rx;
        loop {
            let slot = match rx.try_recv() {
                Ok(j) => j,
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => {
                    // Move the receiver in and out: &Receiver is not Send.
                    let (r, j) = py.allow_threads(move || {
                        let j = rx.recv();
                        (rx, j)
                    });
                    rx = r;
                    match j {
                        Ok(j) => j,
                        Err(_) => return,
                    }
                }
            };
            let Some(job) = slot.0.lock().unwrap().take() else {
                continue;
            };
            drop(slot);
            BUSY_SINCE.store(now_ms(), Ordering::Relaxed);
            // A nested with_gil also drops the Python objects released without the
            // GIL meanwhile (flows that ended on tokio threads).
            Python::with_gil(|py| run_job(py, host, job));
            BUSY_SINCE.store(0, Ordering::Relaxed);
        }
    })
}

impl PythonAddon {
    /// Runs a job on the Python worker thread and waits for its result. If the
    /// worker is stuck in one hook for longer than [`STALL`] while this job waits,
    /// the job runs on a blocking thread instead.
    async fn run<T>(
        &self,
        job: Job,
        rx: tokio::sync::oneshot::Receiver<Result<T, String>>,
    ) -> Result<T, String> {
        let hook = job.hook;
        let slot = Arc::new(Slot(std::sync::Mutex::new(Some(job))));
        self.worker
            .send(slot.clone())
            .map_err(|_| "the Python worker thread is gone".to_string())?;
        let mut rx = rx;
        loop {
            match tokio::time::timeout(STALL, &mut rx).await {
                Ok(r) => return r.map_err(|_| format!("{hook}: the hook did not finish"))?,
                Err(_) => {
                    if worker_stalled() {
                        let job = slot.0.lock().unwrap().take();
                        if let Some(job) = job {
                            let host = self.shared_host.clone();
                            tokio::task::spawn_blocking(move || {
                                Python::with_gil(|py| run_job(py, host.bind(py), job))
                            });
                        }
                    }
                }
            }
        }
    }
}

fn run_job(py: Python<'_>, host: &Bound<'_, PyAny>, job: Job) {
    let Job {
        method,
        hook,
        pyflow,
        state,
        reply,
    } = job;
    let reply = match Bound::new(py, reply) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(target: "mitmrs_python", "Addon error: {hook}: {}", format_err(py, &e));
            return;
        }
    };
    let r = (|| -> PyResult<Bound<'_, PyAny>> {
        let st = state.into_py(py)?;
        if method == "flow_hook" {
            let m = pyo3::intern!(py, "flow_hook");
            host.call_method1(
                m,
                (hook, pyflow.unwrap_or_else(|| py.None()), st, reply.clone()),
            )
        } else {
            host.call_method1(method, (hook, st, reply.clone()))
        }
    })();
    match r {
        // None: an async hook took over; the host calls `reply` when all ran.
        Ok(r) if r.is_none() => {}
        Ok(r) => reply.get().deliver(py, Ok(&r)),
        Err(e) => reply.get().deliver(py, Err(format_err(py, &e))),
    }
}

impl PythonAddon {
    /// Starts the interpreter (once) and runs the scripts' module code. A script
    /// that cannot be read or raises (a syntax error, say) is an `Err` with the file,
    /// line and traceback, for the CLI to print before exiting with status 2.
    pub fn new(options: &Options, scripts: &[String]) -> Result<Arc<PythonAddon>, String> {
        let _ = GLOBAL.set(Global {
            options: options.clone(),
            script_options: Default::default(),
        });
        native::init_interpreter();
        let host = Python::with_gil(|py| -> Result<Py<PyAny>, String> {
            // sys.argv is the proxy's command line, as under mitmdump (scripts such as
            // mitmproxy's io-write-flow-file.py read sys.argv[1])
            let argv = PyList::new(
                py,
                std::env::args_os().map(|a| a.to_string_lossy().into_owned()),
            )
            .map_err(|e| e.to_string())?;
            py.import("sys")
                .and_then(|s| s.setattr("argv", argv))
                .map_err(|e| format_err(py, &e))?;
            let m = py
                .import("mitmproxy._mitmrs")
                .map_err(|e| format_err(py, &e))?;
            let paths = PyList::new(py, scripts).map_err(|e| e.to_string())?;
            let host = m
                .getattr("Host")
                .and_then(|h| h.call1((paths,)))
                .map_err(|e| {
                    let msg = format_err(py, &e);
                    format!("Error loading script:\n{msg}")
                })?;
            Ok(host.unbind())
        })?;
        let (tx, rx) = std::sync::mpsc::channel();
        let (worker_host, shared_host) =
            Python::with_gil(|py| (host.clone_ref(py), Arc::new(host.clone_ref(py))));
        std::thread::Builder::new()
            .name("mitmrs-python".into())
            .spawn(move || run_worker(worker_host, rx))
            .map_err(|e| format!("cannot start the Python worker thread: {e}"))?;
        let addon = Arc::new(PythonAddon {
            host,
            name: scripts.join(", "),
            worker: tx,
            shared_host,
        });
        addon.start_poller(scripts);
        Ok(addon)
    }

    fn host_ref(&self) -> Py<PyAny> {
        Python::with_gil(|py| self.host.clone_ref(py))
    }

    /// A thread that calls `tick` about every 100 ms (if a script defines it) and
    /// polls the scripts' mtimes about every 0.5 s for hot reload. It takes the GIL
    /// only for those.
    fn start_poller(&self, scripts: &[String]) {
        let host = self.host_ref();
        let paths: Vec<std::path::PathBuf> = scripts.iter().map(std::path::PathBuf::from).collect();
        let mtime = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut last: Vec<Option<SystemTime>> = paths.iter().map(|p| mtime(p)).collect();
        std::thread::Builder::new()
            .name("mitmrs-python-poll".into())
            .spawn(move || {
                let mut n: u64 = 0;
                loop {
                    std::thread::sleep(Duration::from_millis(100));
                    n += 1;
                    if TICK.load(Ordering::Relaxed) {
                        Python::with_gil(|py| {
                            if let Err(e) = host.call_method0(py, "tick") {
                                tracing::error!(target: "mitmrs_python", "Addon error: tick: {}", format_err(py, &e));
                            }
                        });
                    }
                    if n.is_multiple_of(5) {
                        let now: Vec<Option<SystemTime>> = paths.iter().map(|p| mtime(p)).collect();
                        if now != last {
                            last = now;
                            Python::with_gil(|py| {
                                if let Err(e) = host.call_method0(py, "check_reload") {
                                    tracing::error!(target: "mitmrs_python", "reload failed: {}", format_err(py, &e));
                                }
                            });
                        }
                    }
                }
            })
            .expect("spawn the script poller thread");
    }

    /// Runs a method of the host off the tokio runtime.
    async fn call_blocking(&self, method: &'static str) -> HookResult {
        let host = self.host_ref();
        tokio::task::spawn_blocking(move || {
            Python::with_gil(|py| {
                host.call_method0(py, method)
                    .map(|_| ())
                    .map_err(|e| format_err(py, &e))
            })
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(Into::into)
    }

    async fn flow_hook(&self, hook: Hook, flow: &mut HttpFlow) -> HookResult {
        let pyflow = flow.extensions.remove::<sync::PyFlow>().map(|p| p.0);
        // A new Python flow has seen no WebSocket message yet.
        let seen = match (&pyflow, flow.extensions.get::<sync::WsSeen>()) {
            (Some(_), Some(s)) => s.0,
            _ => 0,
        };
        let state = sync::snapshot(flow, seen);
        let now_seen = sync::websocket_seen(flow);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            method: "flow_hook",
            hook: hook.name(),
            pyflow,
            state,
            reply: Reply(std::sync::Mutex::new(Some(ReplyTx::Flow(tx)))),
        };
        let (pf, out) = self.run(job, rx).await?;
        flow.extensions.insert(pf);
        flow.extensions.insert(sync::WsSeen(now_seen));
        sync::apply(flow, out);
        Ok(())
    }
}

/// What a connection hook changed (read from the dict `Host.conn_hook` returns).
#[derive(Default)]
struct ConnOut {
    client_error: Option<String>,
    server_address: Option<(String, u16)>,
    server_error: Option<String>,
    layer: Option<Option<String>>,
    ignore_connection: bool,
    establish_server_tls_first: bool,
    valid: bool,
}

impl ConnOut {
    fn extract(d: &Bound<'_, PyAny>) -> PyResult<ConnOut> {
        let get = |k: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
            match d.get_item(k) {
                Ok(v) if !v.is_none() => Ok(Some(v)),
                Ok(_) => Ok(None),
                Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyError>(d.py()) => Ok(None),
                Err(e) => Err(e),
            }
        };
        Ok(ConnOut {
            client_error: get("client_error")?
                .map(|v| v.str().map(|s| s.to_string()))
                .transpose()?,
            server_address: get("server_address")?.map(|v| v.extract()).transpose()?,
            server_error: get("server_error")?
                .map(|v| v.str().map(|s| s.to_string()))
                .transpose()?,
            layer: match d.get_item("layer") {
                Ok(v) => Some(v.extract()?),
                Err(_) => None,
            },
            ignore_connection: get("ignore_connection")?
                .map(|v| v.is_truthy())
                .transpose()?
                .unwrap_or(false),
            establish_server_tls_first: get("establish_server_tls_first")?
                .map(|v| v.is_truthy())
                .transpose()?
                .unwrap_or(false),
            valid: get("valid")?
                .map(|v| v.is_truthy())
                .transpose()?
                .unwrap_or(false),
        })
    }
}

fn layer_name(l: Option<LayerKind>) -> sync::V {
    match l {
        Some(LayerKind::Http) => sync::V::S("http".into()),
        Some(LayerKind::Tls) => sync::V::S("tls".into()),
        Some(LayerKind::Tcp) => sync::V::S("tcp".into()),
        _ => sync::V::None,
    }
}

impl PythonAddon {
    /// Runs a connection hook off the tokio runtime: `data` becomes mitmproxy's data
    /// object in `Host.conn_hook`, which returns what the scripts changed.
    async fn conn_hook(
        &self,
        hook: Hook,
        data: Vec<(&'static str, sync::V)>,
    ) -> Result<ConnOut, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            method: "conn_hook",
            hook: hook.name(),
            pyflow: None,
            state: sync::V::D(data),
            reply: Reply(std::sync::Mutex::new(Some(ReplyTx::Conn(tx)))),
        };
        self.run(job, rx).await
    }

    async fn server_hook(
        &self,
        hook: Hook,
        data: &ServerConnectionHookData,
    ) -> Result<ConnOut, String> {
        self.conn_hook(
            hook,
            vec![
                ("client", sync::client_v(&data.client)),
                ("server", sync::server_v(&data.server)),
            ],
        )
        .await
    }

    async fn tls_hook(&self, hook: Hook, data: &TlsData) -> HookResult {
        let side = match data.side {
            TlsSide::Client => "client",
            TlsSide::Server => "server",
        };
        self.conn_hook(
            hook,
            vec![
                ("client", sync::client_v(&data.client)),
                ("server", sync::server_v(&data.server)),
                ("side", sync::V::S(side.into())),
                (
                    "error",
                    data.error.clone().map(sync::V::S).unwrap_or(sync::V::None),
                ),
            ],
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Addon for PythonAddon {
    fn name(&self) -> &str {
        &self.name
    }

    fn hooks(&self) -> HookSet {
        HookSet::from_bits(HOOKS.load(Ordering::Relaxed))
    }

    fn load(&self, _loader: &mut Loader<'_>) -> HookResult {
        Python::with_gil(|py| {
            self.host
                .call_method0(py, "load")
                .map(|_| ())
                .map_err(|e| format_err(py, &e).into())
        })
    }

    fn configure(
        &self,
        _options: &Options,
        updated: &BTreeSet<String>,
    ) -> Result<(), OptionsError> {
        let msg = Python::with_gil(|py| -> Result<Option<String>, String> {
            let names: Vec<&str> = updated.iter().map(String::as_str).collect();
            let r = self
                .host
                .call_method1(py, "configure", (names,))
                .map_err(|e| format_err(py, &e))?;
            r.extract::<Option<String>>(py).map_err(|e| e.to_string())
        });
        let message = match msg {
            Ok(None) => return Ok(()),
            Ok(Some(m)) => m,
            Err(e) => e,
        };
        let script_opts = GLOBAL
            .get()
            .map(|g| g.script_options.lock().unwrap().clone())
            .unwrap_or_default();
        let name = script_opts
            .iter()
            .find(|n| updated.contains(*n))
            .cloned()
            .or_else(|| updated.iter().next().cloned())
            .unwrap_or_default();
        Err(OptionsError::Rejected { name, message })
    }

    async fn running(&self) -> HookResult {
        self.call_blocking("running").await
    }
    async fn done(&self) -> HookResult {
        self.call_blocking("done").await
    }
    async fn requestheaders(&self, flow: &mut HttpFlow) -> HookResult {
        self.flow_hook(Hook::RequestHeaders, flow).await
    }
    async fn request(&self, flow: &mut HttpFlow) -> HookResult {
        self.flow_hook(Hook::Request, flow).await
    }
    async fn responseheaders(&self, flow: &mut HttpFlow) -> HookResult {
        self.flow_hook(Hook::ResponseHeaders, flow).await
    }
    async fn response(&self, flow: &mut HttpFlow) -> HookResult {
        self.flow_hook(Hook::Response, flow).await
    }
    async fn error(&self, flow: &mut HttpFlow) -> HookResult {
        self.flow_hook(Hook::Error, flow).await
    }
    async fn websocket_start(&self, flow: &mut HttpFlow) -> HookResult {
        self.flow_hook(Hook::WebsocketStart, flow).await
    }
    async fn websocket_message(&self, flow: &mut HttpFlow) -> HookResult {
        self.flow_hook(Hook::WebsocketMessage, flow).await
    }
    async fn websocket_end(&self, flow: &mut HttpFlow) -> HookResult {
        self.flow_hook(Hook::WebsocketEnd, flow).await
    }
    async fn http_connect(&self, flow: &mut HttpFlow) -> HookResult {
        self.flow_hook(Hook::HttpConnect, flow).await
    }
    async fn http_connect_upstream(&self, flow: &mut HttpFlow) -> HookResult {
        self.flow_hook(Hook::HttpConnectUpstream, flow).await
    }
    async fn http_connected(&self, flow: &mut HttpFlow) -> HookResult {
        self.flow_hook(Hook::HttpConnected, flow).await
    }
    async fn http_connect_error(&self, flow: &mut HttpFlow) -> HookResult {
        self.flow_hook(Hook::HttpConnectError, flow).await
    }

    async fn client_connected(&self, client: &mut Client) -> HookResult {
        let out = self
            .conn_hook(
                Hook::ClientConnected,
                vec![("client", sync::client_v(client))],
            )
            .await?;
        if let Some(e) = out.client_error {
            client.error = Some(e);
        }
        Ok(())
    }
    async fn client_disconnected(&self, client: &Client) -> HookResult {
        self.conn_hook(
            Hook::ClientDisconnected,
            vec![("client", sync::client_v(client))],
        )
        .await?;
        Ok(())
    }
    async fn server_connect(&self, data: &mut ServerConnectionHookData) -> HookResult {
        let out = self.server_hook(Hook::ServerConnect, data).await?;
        if let Some(a) = out.server_address {
            data.server.address = Some(a);
        }
        if let Some(e) = out.server_error {
            data.server.error = Some(e);
        }
        Ok(())
    }
    async fn server_connected(&self, data: &ServerConnectionHookData) -> HookResult {
        self.server_hook(Hook::ServerConnected, data).await?;
        Ok(())
    }
    async fn server_disconnected(&self, data: &ServerConnectionHookData) -> HookResult {
        self.server_hook(Hook::ServerDisconnected, data).await?;
        Ok(())
    }
    async fn server_connect_error(&self, data: &ServerConnectionHookData) -> HookResult {
        self.server_hook(Hook::ServerConnectError, data).await?;
        Ok(())
    }
    async fn next_layer(&self, data: &mut NextLayer) -> HookResult {
        let out = self
            .conn_hook(
                Hook::NextLayer,
                vec![
                    ("client", sync::client_v(&data.client)),
                    ("server", sync::server_v(&data.server)),
                    ("data_client", sync::V::B(data.data_client.clone())),
                    ("layer", layer_name(data.layer)),
                ],
            )
            .await?;
        if let Some(l) = out.layer {
            data.layer = match l.as_deref() {
                Some("http") => Some(LayerKind::Http),
                Some("tls") => Some(LayerKind::Tls),
                Some("tcp") => Some(LayerKind::Tcp),
                _ => data.layer,
            };
        }
        Ok(())
    }
    async fn socks5_auth(&self, data: &mut Socks5AuthData) -> HookResult {
        let out = self
            .conn_hook(
                Hook::Socks5Auth,
                vec![
                    ("client", sync::client_v(&data.client)),
                    ("username", sync::V::S(data.username.clone())),
                    ("password", sync::V::S(data.password.clone())),
                    ("valid", sync::V::Bool(data.valid)),
                ],
            )
            .await?;
        data.valid = out.valid;
        Ok(())
    }
    async fn tls_clienthello(&self, data: &mut ClientHelloData) -> HookResult {
        let out = self
            .conn_hook(
                Hook::TlsClientHello,
                vec![
                    ("client", sync::client_v(&data.client)),
                    ("server", sync::server_v(&data.server)),
                    (
                        "sni",
                        data.sni.clone().map(sync::V::S).unwrap_or(sync::V::None),
                    ),
                    (
                        "alpn_protocols",
                        sync::V::L(
                            data.alpn_protocols
                                .iter()
                                .map(|b| sync::V::B(b.clone()))
                                .collect(),
                        ),
                    ),
                    ("ignore_connection", sync::V::Bool(data.ignore_connection)),
                    (
                        "establish_server_tls_first",
                        sync::V::Bool(data.establish_server_tls_first),
                    ),
                ],
            )
            .await?;
        data.ignore_connection = out.ignore_connection;
        data.establish_server_tls_first = out.establish_server_tls_first;
        Ok(())
    }
    async fn tls_established_client(&self, data: &TlsData) -> HookResult {
        self.tls_hook(Hook::TlsEstablishedClient, data).await
    }
    async fn tls_established_server(&self, data: &TlsData) -> HookResult {
        self.tls_hook(Hook::TlsEstablishedServer, data).await
    }
    async fn tls_failed_client(&self, data: &TlsData) -> HookResult {
        self.tls_hook(Hook::TlsFailedClient, data).await
    }
    async fn tls_failed_server(&self, data: &TlsData) -> HookResult {
        self.tls_hook(Hook::TlsFailedServer, data).await
    }
}
