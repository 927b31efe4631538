//! Rust flow <-> Python flow: an owned snapshot of the Rust flow is taken on the
//! tokio side, turned into a dict under the GIL for the host's `flow_in`, and what
//! the hook may have changed comes back as a [`FlowOut`] applied to the Rust flow.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use mitmrs_core::connection::{Client, ConnectionState, Server};
use mitmrs_core::flow::MetaValue;
use mitmrs_core::message::ChunkTransform;
use mitmrs_core::{Headers, HttpFlow, Request, Response, StreamMode};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyTuple};

/// The Python flow object, kept in the Rust flow's extensions between hooks.
pub(crate) struct PyFlow(pub Py<PyAny>);

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
    Meta(BTreeMap<String, MetaValue>),
    Handle(mitmrs_core::flow::InterceptHandle),
}

fn meta_to_py(py: Python<'_>, m: &MetaValue) -> PyResult<PyObject> {
    Ok(match m {
        MetaValue::Null => py.None(),
        MetaValue::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        MetaValue::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        MetaValue::Float(f) => f.into_pyobject(py)?.into_any().unbind(),
        MetaValue::Str(s) => s.into_pyobject(py)?.into_any().unbind(),
        MetaValue::Bytes(b) => PyBytes::new(py, b).into_any().unbind(),
        MetaValue::List(l) => {
            let items: Vec<PyObject> = l.iter().map(|x| meta_to_py(py, x)).collect::<PyResult<_>>()?;
            PyList::new(py, items)?.into_any().unbind()
        }
        MetaValue::Map(m) => {
            let d = PyDict::new(py);
            for (k, v) in m {
                d.set_item(k, meta_to_py(py, v)?)?;
            }
            d.into_any().unbind()
        }
    })
}

fn meta_from_py(v: &Bound<'_, PyAny>) -> Option<MetaValue> {
    if v.is_none() {
        return Some(MetaValue::Null);
    }
    if let Ok(b) = v.downcast::<PyBool>() {
        return Some(MetaValue::Bool(b.is_true()));
    }
    if let Ok(i) = v.extract::<i64>() {
        return Some(MetaValue::Int(i));
    }
    if let Ok(f) = v.extract::<f64>() {
        return Some(MetaValue::Float(f));
    }
    if let Ok(s) = v.extract::<String>() {
        return Some(MetaValue::Str(s));
    }
    if let Ok(b) = v.downcast::<PyBytes>() {
        return Some(MetaValue::Bytes(Bytes::copy_from_slice(b.as_bytes())));
    }
    if let Ok(d) = v.downcast::<PyDict>() {
        let mut m = BTreeMap::new();
        for (k, v) in d.iter() {
            m.insert(k.extract::<String>().ok()?, meta_from_py(&v)?);
        }
        return Some(MetaValue::Map(m));
    }
    if let Ok(l) = v.try_iter() {
        let mut out = Vec::new();
        for x in l {
            out.push(meta_from_py(&x.ok()?)?);
        }
        return Some(MetaValue::List(out));
    }
    None
}

impl V {
    pub(crate) fn to_py(&self, py: Python<'_>) -> PyResult<PyObject> {
        Ok(match self {
            V::None => py.None(),
            V::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
            V::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
            V::F(f) => f.into_pyobject(py)?.into_any().unbind(),
            V::S(s) => s.into_pyobject(py)?.into_any().unbind(),
            V::B(b) => PyBytes::new(py, b).into_any().unbind(),
            V::L(l) => {
                let items: Vec<PyObject> = l.iter().map(|x| x.to_py(py)).collect::<PyResult<_>>()?;
                PyList::new(py, items)?.into_any().unbind()
            }
            V::T(l) => {
                let items: Vec<PyObject> = l.iter().map(|x| x.to_py(py)).collect::<PyResult<_>>()?;
                PyTuple::new(py, items)?.into_any().unbind()
            }
            V::D(kv) => {
                let d = PyDict::new(py);
                for (k, v) in kv {
                    d.set_item(*k, v.to_py(py)?)?;
                }
                d.into_any().unbind()
            }
            V::Meta(m) => {
                let d = PyDict::new(py);
                for (k, v) in m {
                    d.set_item(k, meta_to_py(py, v)?)?;
                }
                d.into_any().unbind()
            }
            V::Handle(h) => Py::new(py, crate::native::ResumeHandle(h.clone()))?.into_any(),
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
    V::L(h.fields().iter().map(|(n, v)| V::T(vec![V::B(n.clone()), V::B(v.clone())])).collect())
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

/// A client connection, as the dict `_mitmrs._client` reads.
pub(crate) fn client_v(c: &Client) -> V {
    V::D(vec![
        ("id", s(&c.id)),
        ("peername", addr(&c.peername)),
        ("sockname", addr(&c.sockname)),
        ("timestamp_start", V::F(c.timestamp_start)),
        ("timestamp_end", opt_f(c.timestamp_end)),
        ("timestamp_tls_setup", opt_f(c.tls.timestamp_tls_setup)),
        ("sni", opt_s(&c.tls.sni)),
        ("alpn", alpn(&c.tls.alpn)),
        ("alpn_offers", tls_offers(&c.tls.alpn_offers)),
        ("tls_version", opt_s(&c.tls.tls_version)),
        ("cipher", opt_s(&c.tls.cipher)),
        ("tls", V::Bool(c.tls.tls)),
        ("error", opt_s(&c.error)),
        ("open", V::Bool(c.state != ConnectionState::Closed)),
        ("proxy_mode", s(&c.proxy_mode)),
    ])
}

/// A server connection, as the dict `_mitmrs._server` reads.
pub(crate) fn server_v(sv: &Server) -> V {
    V::D(vec![
        ("id", s(&sv.id)),
        ("address", sv.address.as_ref().map(|(h, p)| V::T(vec![s(h), V::Int(*p as i64)])).unwrap_or(V::None)),
        ("peername", opt_addr(&sv.peername)),
        ("sockname", opt_addr(&sv.sockname)),
        ("timestamp_start", opt_f(sv.timestamp_start)),
        ("timestamp_tcp_setup", opt_f(sv.timestamp_tcp_setup)),
        ("timestamp_tls_setup", opt_f(sv.tls.timestamp_tls_setup)),
        ("timestamp_end", opt_f(sv.timestamp_end)),
        ("sni", opt_s(&sv.tls.sni)),
        ("alpn", alpn(&sv.tls.alpn)),
        ("alpn_offers", tls_offers(&sv.tls.alpn_offers)),
        ("tls_version", opt_s(&sv.tls.tls_version)),
        ("cipher", opt_s(&sv.tls.cipher)),
        ("via", opt_s(&sv.via)),
        ("tls", V::Bool(sv.tls.tls)),
        ("error", opt_s(&sv.error)),
        ("open", V::Bool(sv.state != ConnectionState::Closed)),
    ])
}

pub(crate) fn snapshot(flow: &HttpFlow) -> V {
    let r = &flow.request;
    let req = V::D(vec![
        ("host", s(&r.host)),
        ("port", V::Int(r.port as i64)),
        ("method", s(&r.method)),
        ("scheme", s(&r.scheme)),
        ("authority", s(&r.authority)),
        ("path", s(&r.path)),
        ("http_version", s(&r.http_version)),
        ("headers", headers(&r.headers)),
        ("content", opt_bytes(&r.content)),
        ("trailers", r.trailers.as_ref().map(headers).unwrap_or(V::None)),
        ("timestamp_start", V::F(r.timestamp_start)),
        ("timestamp_end", opt_f(r.timestamp_end)),
    ]);
    let resp = match &flow.response {
        None => V::None,
        Some(r) => V::D(vec![
            ("http_version", s(&r.http_version)),
            ("status_code", V::Int(r.status_code as i64)),
            ("reason", s(&r.reason)),
            ("headers", headers(&r.headers)),
            ("content", opt_bytes(&r.content)),
            ("trailers", r.trailers.as_ref().map(headers).unwrap_or(V::None)),
            ("timestamp_start", V::F(r.timestamp_start)),
            ("timestamp_end", opt_f(r.timestamp_end)),
        ]),
    };
    let client = client_v(&flow.client_conn);
    let server = server_v(&flow.server_conn);
    V::D(vec![
        ("id", s(&flow.id)),
        ("client", client),
        ("server", server),
        ("request", req),
        ("response", resp),
        ("error", flow.error.as_ref().map(|e| s(&e.msg)).unwrap_or(V::None)),
        ("marked", s(&flow.marked)),
        ("comment", s(&flow.comment)),
        ("is_replay", opt_s(&flow.is_replay)),
        ("live", V::Bool(flow.live)),
        ("intercepted", V::Bool(flow.intercepted())),
        ("timestamp_created", V::F(flow.timestamp_created)),
        ("metadata", V::Meta(flow.metadata.clone())),
        ("handle", V::Handle(flow.intercept_handle())),
    ])
}

pub(crate) enum StreamOut {
    Off,
    On,
    Callable(Py<PyAny>),
}

pub(crate) struct ReqOut {
    host: String,
    port: u16,
    method: String,
    scheme: String,
    authority: String,
    path: String,
    http_version: String,
    headers: Headers,
    content: Option<Bytes>,
    trailers: Option<Headers>,
    stream: StreamOut,
}

pub(crate) struct RespOut {
    http_version: String,
    status_code: u16,
    reason: String,
    headers: Headers,
    content: Option<Bytes>,
    trailers: Option<Headers>,
    stream: StreamOut,
}

pub(crate) struct FlowOut {
    request: ReqOut,
    response: Option<RespOut>,
    killed: bool,
    intercepted: bool,
    marked: String,
    comment: String,
    metadata: Option<BTreeMap<String, MetaValue>>,
}

fn get<'py>(d: &Bound<'py, PyDict>, k: &str) -> PyResult<Bound<'py, PyAny>> {
    d.get_item(k)?.ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(k.to_string()))
}

fn ex_headers(v: &Bound<'_, PyAny>) -> PyResult<Headers> {
    let fields: Vec<(Vec<u8>, Vec<u8>)> = v.extract()?;
    Ok(Headers::from_fields(fields.into_iter().map(|(n, v)| (Bytes::from(n), Bytes::from(v))).collect()))
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
    let b: Vec<u8> = v.extract().map_err(|_| pyo3::exceptions::PyTypeError::new_err("message content must be bytes"))?;
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

impl FlowOut {
    pub(crate) fn extract(v: &Bound<'_, PyAny>) -> PyResult<FlowOut> {
        let d = v.downcast::<PyDict>()?;
        let r = get(d, "request")?;
        let r = r.downcast::<PyDict>()?;
        let request = ReqOut {
            host: get(r, "host")?.extract()?,
            port: get(r, "port")?.extract()?,
            method: get(r, "method")?.extract()?,
            scheme: get(r, "scheme")?.extract()?,
            authority: get(r, "authority")?.extract()?,
            path: get(r, "path")?.extract()?,
            http_version: get(r, "http_version")?.extract()?,
            headers: ex_headers(&get(r, "headers")?)?,
            content: ex_content(&get(r, "content")?)?,
            trailers: ex_opt_headers(&get(r, "trailers")?)?,
            stream: ex_stream(&get(r, "stream")?),
        };
        let resp = get(d, "response")?;
        let response = if resp.is_none() {
            None
        } else {
            let r = resp.downcast::<PyDict>()?;
            Some(RespOut {
                http_version: get(r, "http_version")?.extract()?,
                status_code: get(r, "status_code")?.extract()?,
                reason: get(r, "reason")?.extract()?,
                headers: ex_headers(&get(r, "headers")?)?,
                content: ex_content(&get(r, "content")?)?,
                trailers: ex_opt_headers(&get(r, "trailers")?)?,
                stream: ex_stream(&get(r, "stream")?),
            })
        };
        let metadata = get(d, "metadata")?;
        let metadata = match meta_from_py(&metadata) {
            Some(MetaValue::Map(m)) => Some(m),
            _ => None,
        };
        Ok(FlowOut {
            request,
            response,
            killed: get(d, "killed")?.extract()?,
            intercepted: get(d, "intercepted")?.extract()?,
            marked: get(d, "marked")?.extract()?,
            comment: get(d, "comment")?.extract()?,
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
    fn transform(&mut self, chunk: Bytes, end: bool) -> Result<Vec<Bytes>, String> {
        Python::with_gil(|py| {
            let report = |e: PyErr| {
                let msg = crate::format_err(py, &e);
                tracing::error!(target: "mitmrs_python", "Addon error: stream: {msg}");
                format!("stream callable failed: {e}")
            };
            if self.adapter.is_none() {
                let m = py.import("mitmproxy._mitmrs").map_err(|e| e.to_string())?;
                let a = m.call_method1("StreamAdapter", (self.func.bind(py),)).map_err(report)?;
                self.adapter = Some(a.unbind());
            }
            let adapter = self.adapter.as_ref().unwrap().bind(py);
            let out = adapter.call_method1("feed", (PyBytes::new(py, &chunk), end)).map_err(report)?;
            let pieces: Vec<Vec<u8>> = out.extract().map_err(|e| e.to_string())?;
            Ok(pieces.into_iter().filter(|p| !p.is_empty()).map(Bytes::from).collect())
        })
    }
}

fn apply_stream(cur: &mut StreamMode, s: StreamOut, host: &Py<PyAny>) {
    match s {
        StreamOut::Off => {}
        StreamOut::On => {
            if matches!(cur, StreamMode::Off) {
                *cur = StreamMode::On;
            }
        }
        StreamOut::Callable(func) => {
            if !matches!(cur, StreamMode::Transform(_)) {
                let _ = host;
                *cur = StreamMode::Transform(Box::new(PyTransform { func, adapter: None }));
            }
        }
    }
}

pub(crate) fn apply(flow: &mut HttpFlow, out: FlowOut, host: Py<PyAny>) {
    let r = out.request;
    let q: &mut Request = &mut flow.request;
    q.host = r.host;
    q.port = r.port;
    q.method = r.method;
    q.scheme = r.scheme;
    q.authority = r.authority;
    q.path = r.path;
    q.http_version = r.http_version;
    q.headers = r.headers;
    q.content = r.content;
    q.trailers = r.trailers;
    apply_stream(&mut q.stream, r.stream, &host);
    match out.response {
        None => flow.response = None,
        Some(r) => {
            let resp = flow.response.get_or_insert_with(|| Response::make(r.status_code, Bytes::new(), Headers::new()));
            resp.http_version = r.http_version;
            resp.status_code = r.status_code;
            resp.reason = r.reason;
            resp.headers = r.headers;
            resp.content = r.content;
            resp.trailers = r.trailers;
            apply_stream(&mut resp.stream, r.stream, &host);
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
    flow.marked = out.marked;
    flow.comment = out.comment;
    if let Some(m) = out.metadata {
        flow.metadata = m;
    }
    drop(host);
}
