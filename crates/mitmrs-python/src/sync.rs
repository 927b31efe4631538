//! Rust flow <-> Python flow: an owned snapshot of the Rust flow is taken on the
//! tokio side, turned into flat tuples under the GIL for the host's `flow_in` (the
//! order is documented in `_mitmrs.py`, "flow sync"), and what the hook changed
//! comes back as a [`FlowOut`] (only the parts that changed) applied to the Rust flow.

use std::net::SocketAddr;

use bytes::Bytes;
use mitmrs_core::connection::{Client, ConnectionState, Server};
use mitmrs_core::flow::{MetaDict, MetaValue};
use mitmrs_core::message::ChunkTransform;
use mitmrs_core::{Headers, HttpFlow, Request, Response, StreamMode, WebSocketData};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyTuple};

/// The Python flow object, kept in the Rust flow's extensions between hooks.
pub(crate) struct PyFlow(pub Py<PyAny>);

/// How many of the flow's WebSocket messages (counted since the flow began,
/// trimmed ones included) the Python flow has been given; kept next to
/// [`PyFlow`]. Each hook sends only the messages after these, so a long
/// conversation costs one conversion per message, not one per message per hook.
pub(crate) struct WsSeen(pub u64);

/// An owned value to turn into a Python object.
pub(crate) enum V {
    None,
    Bool(bool),
    Int(i64),
    F(f64),
    S(String),
    B(Bytes),
    L(Vec<V>),
    T(Vec<V>),
    D(Vec<(&'static str, V)>),
    Meta(MetaDict),
    Handle(mitmrs_core::flow::InterceptHandle),
    /// Converted when Python first calls it (a [`Lazy`]).
    Lazy(Box<V>),
    /// A tuple of (name, value) bytes tuples.
    Headers(Headers),
    /// As [`client_v`] (cloned, converted when needed).
    Client(std::sync::Arc<Client>),
    /// As [`server_v`].
    Server(std::sync::Arc<Server>),
}

/// A value converted to Python only if and when a hook needs it: calling it
/// converts once and returns the same object after.
#[pyclass(module = "mitmproxy._rs", frozen)]
pub(crate) struct Lazy {
    v: V,
    cell: pyo3::sync::GILOnceCell<PyObject>,
}

#[pymethods]
impl Lazy {
    fn __call__(&self, py: Python<'_>) -> PyResult<PyObject> {
        self.cell
            .get_or_try_init(py, || self.v.to_py(py))
            .map(|o| o.clone_ref(py))
    }
}

fn meta_to_py(py: Python<'_>, m: &MetaValue) -> PyResult<PyObject> {
    Ok(match m {
        MetaValue::Null => py.None(),
        MetaValue::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        MetaValue::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        MetaValue::BigInt(s) => py
            .import("builtins")?
            .getattr("int")?
            .call1((s.as_str(),))?
            .unbind(),
        MetaValue::Float(f) => f.into_pyobject(py)?.into_any().unbind(),
        MetaValue::Str(s) => s.into_pyobject(py)?.into_any().unbind(),
        MetaValue::Bytes(b) => PyBytes::new(py, b).into_any().unbind(),
        MetaValue::List(l) => {
            let items: Vec<PyObject> = l
                .iter()
                .map(|x| meta_to_py(py, x))
                .collect::<PyResult<_>>()?;
            PyList::new(py, items)?.into_any().unbind()
        }
        MetaValue::Dict(m) => meta_dict_to_py(py, m)?,
    })
}

fn meta_dict_to_py(py: Python<'_>, m: &MetaDict) -> PyResult<PyObject> {
    let d = PyDict::new(py);
    for (k, v) in &m.0 {
        // A list key (a tuple, as the file keeps it) must be a tuple to hash.
        let key = match k {
            MetaValue::List(items) => {
                let items: Vec<PyObject> = items
                    .iter()
                    .map(|x| meta_to_py(py, x))
                    .collect::<PyResult<_>>()?;
                PyTuple::new(py, items)?.into_any().unbind()
            }
            k => meta_to_py(py, k)?,
        };
        d.set_item(key, meta_to_py(py, v)?)?;
    }
    Ok(d.into_any().unbind())
}

/// A Python value as flow metadata, or `None` if a flow file cannot hold it
/// (mitmproxy could not save it either). Inside a dict or list, what cannot be
/// held is left out with a warning naming it, and the rest is kept.
fn meta_from_py(v: &Bound<'_, PyAny>) -> Option<MetaValue> {
    if v.is_none() {
        return Some(MetaValue::Null);
    }
    if let Ok(b) = v.downcast::<PyBool>() {
        return Some(MetaValue::Bool(b.is_true()));
    }
    if v.downcast::<PyInt>().is_ok() {
        return Some(match v.extract::<i64>() {
            Ok(i) => MetaValue::Int(i),
            Err(_) => MetaValue::BigInt(v.str().ok()?.to_string()),
        });
    }
    if let Ok(f) = v.downcast::<PyFloat>() {
        return Some(MetaValue::Float(f.value()));
    }
    if let Ok(s) = v.extract::<String>() {
        return Some(MetaValue::Str(s));
    }
    if let Ok(b) = v.downcast::<PyBytes>() {
        return Some(MetaValue::Bytes(Bytes::copy_from_slice(b.as_bytes())));
    }
    if let Ok(d) = v.downcast::<PyDict>() {
        let mut m = MetaDict::default();
        for (k, v) in d.iter() {
            match (meta_from_py(&k), meta_from_py(&v)) {
                (Some(k), Some(v)) => m.0.push((k, v)),
                _ => unsaveable(&k, &v),
            }
        }
        return Some(MetaValue::Dict(m));
    }
    if v.downcast::<PyList>().is_ok() || v.downcast::<PyTuple>().is_ok() {
        let mut out = Vec::new();
        for x in v.try_iter().ok()? {
            let x = x.ok()?;
            match meta_from_py(&x) {
                Some(m) => out.push(m),
                None => unsaveable(v, &x),
            }
        }
        return Some(MetaValue::List(out));
    }
    None
}

fn unsaveable(at: &Bound<'_, PyAny>, what: &Bound<'_, PyAny>) {
    let repr = |o: &Bound<'_, PyAny>| {
        o.repr()
            .map(|r| r.to_string())
            .unwrap_or_else(|_| "?".into())
    };
    // Once per type: metadata goes back to Rust after every hook.
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let ty = what
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.contains(&ty) {
        return;
    }
    tracing::warn!(
        "flow.metadata: {} (in {}) is a {ty}, which a flow file cannot hold; Python addons still see it, \
         but it is left out of what Rust addons and -w see (use None, bool, int, float, str, bytes, \
         list, tuple or dict to have it saved)",
        repr(what),
        repr(at),
    );
    warned.push(ty);
}

impl V {
    /// Like `to_py`, but moves lazy parts into [`Lazy`] objects.
    pub(crate) fn into_py(self, py: Python<'_>) -> PyResult<PyObject> {
        match self {
            V::Lazy(v) => Ok(Py::new(
                py,
                Lazy {
                    v: *v,
                    cell: pyo3::sync::GILOnceCell::new(),
                },
            )?
            .into_any()),
            V::T(items) => {
                let items: Vec<PyObject> = items
                    .into_iter()
                    .map(|x| x.into_py(py))
                    .collect::<PyResult<_>>()?;
                Ok(PyTuple::new(py, items)?.into_any().unbind())
            }
            v => v.to_py(py),
        }
    }

    pub(crate) fn to_py(&self, py: Python<'_>) -> PyResult<PyObject> {
        Ok(match self {
            V::None => py.None(),
            V::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
            V::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
            V::F(f) => f.into_pyobject(py)?.into_any().unbind(),
            V::S(s) => s.into_pyobject(py)?.into_any().unbind(),
            V::B(b) => PyBytes::new(py, b).into_any().unbind(),
            V::L(l) => {
                let items: Vec<PyObject> =
                    l.iter().map(|x| x.to_py(py)).collect::<PyResult<_>>()?;
                PyList::new(py, items)?.into_any().unbind()
            }
            V::T(l) => {
                let items: Vec<PyObject> =
                    l.iter().map(|x| x.to_py(py)).collect::<PyResult<_>>()?;
                PyTuple::new(py, items)?.into_any().unbind()
            }
            V::D(kv) => {
                let d = PyDict::new(py);
                for (k, v) in kv {
                    d.set_item(*k, v.to_py(py)?)?;
                }
                d.into_any().unbind()
            }
            V::Meta(m) => meta_dict_to_py(py, m)?,
            V::Handle(h) => Py::new(py, crate::native::ResumeHandle(h.clone()))?.into_any(),
            V::Headers(h) => {
                let items: Vec<Bound<'_, PyTuple>> = h
                    .fields()
                    .iter()
                    .map(|(n, v)| PyTuple::new(py, [PyBytes::new(py, n), PyBytes::new(py, v)]))
                    .collect::<PyResult<_>>()?;
                PyTuple::new(py, items)?.into_any().unbind()
            }
            V::Client(c) => client_v(c).to_py(py)?,
            V::Server(sv) => server_v(sv).to_py(py)?,
            // only `into_py` makes Lazy objects
            V::Lazy(_) => {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "lazy value converted by reference",
                ))
            }
        })
    }
}

fn s(x: &str) -> V {
    V::S(x.to_string())
}
fn opt_s(x: &Option<String>) -> V {
    x.as_ref().map(|x| s(x)).unwrap_or(V::None)
}
fn opt_f(x: Option<f64>) -> V {
    x.map(V::F).unwrap_or(V::None)
}
fn addr(a: &SocketAddr) -> V {
    V::T(vec![s(&a.ip().to_string()), V::Int(a.port() as i64)])
}
fn opt_addr(a: &Option<SocketAddr>) -> V {
    a.as_ref().map(addr).unwrap_or(V::None)
}
fn headers(h: &Headers) -> V {
    V::Headers(h.clone())
}
fn opt_bytes(b: &Option<Bytes>) -> V {
    b.as_ref().map(|b| V::B(b.clone())).unwrap_or(V::None)
}
fn alpn(a: &Option<Bytes>) -> V {
    opt_bytes(a)
}

fn tls_offers(v: &[Bytes]) -> V {
    V::L(v.iter().map(|b| V::B(b.clone())).collect())
}

/// A client connection, as the tuple `_mitmrs._client` reads.
pub(crate) fn client_v(c: &Client) -> V {
    V::T(vec![
        s(&c.id),
        addr(&c.peername),
        addr(&c.sockname),
        V::F(c.timestamp_start),
        opt_f(c.timestamp_end),
        opt_f(c.tls.timestamp_tls_setup),
        opt_s(&c.tls.sni),
        alpn(&c.tls.alpn),
        tls_offers(&c.tls.alpn_offers),
        opt_s(&c.tls.tls_version),
        opt_s(&c.tls.cipher),
        V::Bool(c.tls.tls),
        opt_s(&c.error),
        V::Bool(c.state != ConnectionState::Closed),
        s(&c.proxy_mode),
    ])
}

/// A server connection, as the tuple `_mitmrs._server` reads.
pub(crate) fn server_v(sv: &Server) -> V {
    V::T(vec![
        s(&sv.id),
        sv.address
            .as_ref()
            .map(|(h, p)| V::T(vec![s(h), V::Int(*p as i64)]))
            .unwrap_or(V::None),
        opt_addr(&sv.peername),
        opt_addr(&sv.sockname),
        opt_f(sv.timestamp_start),
        opt_f(sv.timestamp_tcp_setup),
        opt_f(sv.tls.timestamp_tls_setup),
        opt_f(sv.timestamp_end),
        opt_s(&sv.tls.sni),
        alpn(&sv.tls.alpn),
        tls_offers(&sv.tls.alpn_offers),
        opt_s(&sv.tls.tls_version),
        opt_s(&sv.tls.cipher),
        opt_s(&sv.via),
        V::Bool(sv.tls.tls),
        opt_s(&sv.error),
        V::Bool(sv.state != ConnectionState::Closed),
    ])
}

/// The flow as the tuple `_mitmrs.flow_in` reads.
/// `flow.websocket` for the Python flow: (closed_by_client, close_code,
/// close_reason, timestamp_end, how many messages the history holds, the
/// messages the Python flow has not seen yet).
fn websocket_v(w: &WebSocketData, seen: u64) -> V {
    let skip = usize::try_from(seen.saturating_sub(w.messages_trimmed)).unwrap_or(usize::MAX);
    let new = w
        .messages
        .iter()
        .skip(skip)
        .map(|m| {
            V::T(vec![
                V::Int(m.kind as i64),
                V::Bool(m.from_client),
                V::B(m.content.clone()),
                V::F(m.timestamp),
                V::Bool(m.dropped),
                V::Bool(m.injected),
            ])
        })
        .collect();
    V::T(vec![
        w.closed_by_client.map_or(V::None, V::Bool),
        w.close_code.map_or(V::None, |c| V::Int(c.into())),
        opt_s(&w.close_reason),
        opt_f(w.timestamp_end),
        V::Int(w.messages.len() as i64),
        V::L(new),
    ])
}

/// The count [`WsSeen`] holds once the Python flow has had `flow`'s messages.
pub(crate) fn websocket_seen(flow: &HttpFlow) -> u64 {
    flow.websocket
        .as_ref()
        .map_or(0, |w| w.messages_trimmed + w.messages.len() as u64)
}

/// `seen`: the messages the Python flow already has (see [`WsSeen`]).
pub(crate) fn snapshot(flow: &HttpFlow, seen: u64) -> V {
    let r = &flow.request;
    let req = V::T(vec![
        s(&r.host),
        V::Int(r.port as i64),
        s(&r.method),
        s(&r.scheme),
        s(&r.authority),
        s(&r.path),
        s(&r.http_version),
        headers(&r.headers),
        opt_bytes(&r.content),
        r.trailers.as_ref().map(headers).unwrap_or(V::None),
        V::F(r.timestamp_start),
        opt_f(r.timestamp_end),
    ]);
    let resp = match &flow.response {
        None => V::None,
        Some(r) => V::Lazy(Box::new(V::T(vec![
            s(&r.http_version),
            V::Int(r.status_code as i64),
            s(&r.reason),
            headers(&r.headers),
            opt_bytes(&r.content),
            r.trailers.as_ref().map(headers).unwrap_or(V::None),
            V::F(r.timestamp_start),
            opt_f(r.timestamp_end),
        ]))),
    };
    V::T(vec![
        s(&flow.id),
        V::Lazy(Box::new(V::Client(flow.client_conn.clone()))),
        V::Lazy(Box::new(V::Server(flow.server_conn.clone()))),
        V::Lazy(Box::new(req)),
        resp,
        flow.error.as_ref().map(|e| s(&e.msg)).unwrap_or(V::None),
        s(&flow.marked),
        s(&flow.comment),
        opt_s(&flow.is_replay),
        V::Bool(flow.live),
        V::Bool(flow.intercepted()),
        V::F(flow.timestamp_created),
        V::Meta(flow.metadata.clone()),
        V::Handle(flow.intercept_handle()),
        flow.websocket
            .as_ref()
            .map_or(V::None, |w| websocket_v(w, seen)),
    ])
}

pub(crate) enum StreamOut {
    Off,
    On,
    Callable(Py<PyAny>),
}

/// A changed request (`None` fields: unchanged).
pub(crate) struct ReqOut {
    host: String,
    port: u16,
    method: String,
    scheme: String,
    authority: String,
    path: String,
    http_version: String,
    headers: Option<Headers>,
    content: Option<Option<Bytes>>,
    trailers: Option<Option<Headers>>,
    stream: StreamOut,
}

/// A changed response (`None` fields: unchanged).
pub(crate) struct RespOut {
    http_version: String,
    status_code: u16,
    reason: String,
    headers: Option<Headers>,
    content: Option<Option<Bytes>>,
    trailers: Option<Option<Headers>>,
    stream: StreamOut,
}

/// What a hook changed, read from the tuple `_mitmrs.flow_out` returns.
pub(crate) struct FlowOut {
    /// None: unchanged.
    request: Option<ReqOut>,
    /// None: unchanged; Some(None): no response (any more).
    response: Option<Option<RespOut>>,
    killed: bool,
    intercepted: bool,
    marked: String,
    comment: String,
    /// None: unchanged.
    metadata: Option<MetaDict>,
    /// None: unchanged.
    websocket: Option<WsOut>,
}

/// What a hook did to `flow.websocket`.
enum WsOut {
    /// Set it to None (in `response`: the connection is relayed as raw bytes).
    Removed,
    /// The last message's content (None: unchanged) and whether it is dropped.
    Last(Option<Bytes>, bool),
}

fn ex_headers(v: &Bound<'_, PyAny>) -> PyResult<Headers> {
    let fields: Vec<(Vec<u8>, Vec<u8>)> = v.extract()?;
    Ok(Headers::from_fields(
        fields
            .into_iter()
            .map(|(n, v)| (Bytes::from(n), Bytes::from(v)))
            .collect(),
    ))
}

fn ex_opt_headers(v: &Bound<'_, PyAny>) -> PyResult<Option<Headers>> {
    if v.is_none() {
        Ok(None)
    } else {
        ex_headers(v).map(Some)
    }
}

fn ex_content(v: &Bound<'_, PyAny>) -> PyResult<Option<Bytes>> {
    if v.is_none() {
        return Ok(None);
    }
    if let Ok(b) = v.downcast::<PyBytes>() {
        return Ok(Some(Bytes::copy_from_slice(b.as_bytes())));
    }
    let b: Vec<u8> = v
        .extract()
        .map_err(|_| pyo3::exceptions::PyTypeError::new_err("message content must be bytes"))?;
    Ok(Some(Bytes::from(b)))
}

fn ex_stream(v: &Bound<'_, PyAny>) -> StreamOut {
    if v.is_callable() {
        StreamOut::Callable(v.clone().unbind())
    } else if v.is_truthy().unwrap_or(false) {
        StreamOut::On
    } else {
        StreamOut::Off
    }
}

/// `...` (Ellipsis) stands for "unchanged".
fn changed<'py, T>(
    v: Bound<'py, PyAny>,
    f: impl FnOnce(&Bound<'py, PyAny>) -> PyResult<T>,
) -> PyResult<Option<T>> {
    if v.is(v.py().Ellipsis()) {
        Ok(None)
    } else {
        f(&v).map(Some)
    }
}

impl FlowOut {
    pub(crate) fn extract(v: &Bound<'_, PyAny>) -> PyResult<FlowOut> {
        let t = v.downcast::<PyTuple>()?;
        let request = changed(t.get_item(0)?, |r| {
            let r = r.downcast::<PyTuple>()?;
            Ok(ReqOut {
                host: r.get_item(0)?.extract()?,
                port: r.get_item(1)?.extract()?,
                method: r.get_item(2)?.extract()?,
                scheme: r.get_item(3)?.extract()?,
                authority: r.get_item(4)?.extract()?,
                path: r.get_item(5)?.extract()?,
                http_version: r.get_item(6)?.extract()?,
                headers: changed(r.get_item(7)?, ex_headers)?,
                content: changed(r.get_item(8)?, ex_content)?,
                trailers: changed(r.get_item(9)?, ex_opt_headers)?,
                stream: ex_stream(&r.get_item(10)?),
            })
        })?;
        let response = changed(t.get_item(1)?, |r| {
            if r.is_none() {
                return Ok(None);
            }
            let r = r.downcast::<PyTuple>()?;
            Ok(Some(RespOut {
                http_version: r.get_item(0)?.extract()?,
                status_code: r.get_item(1)?.extract()?,
                reason: r.get_item(2)?.extract()?,
                headers: changed(r.get_item(3)?, ex_headers)?,
                content: changed(r.get_item(4)?, ex_content)?,
                trailers: changed(r.get_item(5)?, ex_opt_headers)?,
                stream: ex_stream(&r.get_item(6)?),
            }))
        })?;
        let metadata = changed(t.get_item(6)?, |m| {
            Ok(match meta_from_py(m) {
                Some(MetaValue::Dict(m)) => Some(m),
                _ => None,
            })
        })?
        .flatten();
        let websocket = changed(t.get_item(7)?, |w| {
            if w.is_none() {
                return Ok(WsOut::Removed);
            }
            let w = w.downcast::<PyTuple>()?;
            Ok(WsOut::Last(
                changed(w.get_item(0)?, |c| Ok(ex_content(c)?.unwrap_or_default()))?,
                w.get_item(1)?.extract()?,
            ))
        })?;
        Ok(FlowOut {
            request,
            response,
            websocket,
            killed: t.get_item(2)?.extract()?,
            intercepted: t.get_item(3)?.extract()?,
            marked: t.get_item(4)?.extract()?,
            comment: t.get_item(5)?.extract()?,
            metadata,
        })
    }
}

/// A `.stream` callable: each chunk goes through it under the GIL, via the
/// per-flow adapter `_mitmrs.StreamAdapter` (plain callables and seed-era
/// generator functions that take the iterable of chunks).
struct PyTransform {
    func: Py<PyAny>,
    adapter: Option<Py<PyAny>>,
}

impl ChunkTransform for PyTransform {
    /// Waits for the GIL and runs arbitrary Python (which may sleep or wait on
    /// other threads, as seed-era generator streams do).
    fn may_block(&self) -> bool {
        true
    }

    fn transform(&mut self, chunk: Bytes, end: bool) -> Result<Vec<Bytes>, String> {
        Python::with_gil(|py| {
            let report = |e: PyErr| {
                let msg = crate::format_err(py, &e);
                tracing::error!(target: "mitmrs_python", "Addon error: stream: {msg}");
                format!("stream callable failed: {e}")
            };
            if self.adapter.is_none() {
                let m = py.import("mitmproxy._mitmrs").map_err(|e| e.to_string())?;
                let a = m
                    .call_method1("StreamAdapter", (self.func.bind(py),))
                    .map_err(report)?;
                self.adapter = Some(a.unbind());
            }
            let adapter = self.adapter.as_ref().unwrap().bind(py);
            let out = adapter
                .call_method1("feed", (PyBytes::new(py, &chunk), end))
                .map_err(report)?;
            let pieces: Vec<Vec<u8>> = out.extract().map_err(|e| e.to_string())?;
            Ok(pieces
                .into_iter()
                .filter(|p| !p.is_empty())
                .map(Bytes::from)
                .collect())
        })
    }
}

fn apply_stream(cur: &mut StreamMode, s: StreamOut) {
    match s {
        StreamOut::Off => {}
        StreamOut::On => {
            if matches!(cur, StreamMode::Off) {
                *cur = StreamMode::On;
            }
        }
        StreamOut::Callable(func) => {
            if !matches!(cur, StreamMode::Transform(_)) {
                *cur = StreamMode::Transform(Box::new(PyTransform {
                    func,
                    adapter: None,
                }));
            }
        }
    }
}

fn set<T: PartialEq>(cur: &mut T, new: T) {
    if *cur != new {
        *cur = new;
    }
}

/// Applies what a hook changed to the Rust flow.
pub(crate) fn apply(flow: &mut HttpFlow, out: FlowOut) {
    if let Some(r) = out.request {
        let q: &mut Request = &mut flow.request;
        set(&mut q.host, r.host);
        q.port = r.port;
        set(&mut q.method, r.method);
        set(&mut q.scheme, r.scheme);
        set(&mut q.authority, r.authority);
        set(&mut q.path, r.path);
        set(&mut q.http_version, r.http_version);
        if let Some(h) = r.headers {
            q.headers = h;
        }
        if let Some(c) = r.content {
            q.content = c;
        }
        if let Some(t) = r.trailers {
            q.trailers = t;
        }
        apply_stream(&mut q.stream, r.stream);
    }
    match out.response {
        None => {}
        Some(None) => flow.response = None,
        Some(Some(r)) => {
            let resp = flow
                .response
                .get_or_insert_with(|| Response::make(r.status_code, Bytes::new(), Headers::new()));
            set(&mut resp.http_version, r.http_version);
            resp.status_code = r.status_code;
            set(&mut resp.reason, r.reason);
            if let Some(h) = r.headers {
                resp.headers = h;
            }
            if let Some(c) = r.content {
                resp.content = c;
            }
            if let Some(t) = r.trailers {
                resp.trailers = t;
            }
            apply_stream(&mut resp.stream, r.stream);
        }
    }
    if out.killed && !flow.killed() {
        flow.kill();
    }
    if out.intercepted && !flow.intercepted() {
        flow.intercept();
    } else if !out.intercepted && flow.intercepted() {
        flow.resume();
    }
    set(&mut flow.marked, out.marked);
    set(&mut flow.comment, out.comment);
    if let Some(m) = out.metadata {
        flow.metadata = m;
    }
    match (out.websocket, flow.websocket.as_mut()) {
        (Some(WsOut::Removed), _) => flow.websocket = None,
        // The relay accounts for a changed length in the history (last_changed).
        (Some(WsOut::Last(content, dropped)), Some(w)) => {
            if let Some(m) = w.messages.back_mut() {
                if let Some(c) = content {
                    m.content = c;
                }
                m.dropped = dropped;
            }
        }
        _ => {}
    }
}
