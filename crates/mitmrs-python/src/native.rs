//! The built-in `mitmproxy` module (registered with `append_to_inittab!`) and its
//! native helper submodule `mitmproxy._rs`: encodings, options, logging, hooks.

use std::sync::atomic::Ordering;
use std::sync::Once;

use bytes::Bytes;
use mitmrs_core::addon::{Hook, HookSet};
use mitmrs_core::options::{OptionSpec, OptionType, OptionValue, Options};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::{GLOBAL, HOOKS, PACKAGE_INIT, SOURCES, TICK};

/// The hooks [`crate::PythonAddon`] implements: all of them.
const DISPATCHED: &[Hook] = Hook::ALL;

fn options() -> PyResult<&'static Options> {
    GLOBAL
        .get()
        .map(|g| &g.options)
        .ok_or_else(|| PyValueError::new_err("mitmrs options are not set up"))
}

#[pyfunction]
fn encode<'py>(py: Python<'py>, encoding: &str, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let out = py
        .allow_threads(|| mitmrs_core::encoding::encode(encoding, data))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &out))
}

#[pyfunction]
fn decode<'py>(py: Python<'py>, encoding: &str, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let b = Bytes::copy_from_slice(data);
    let out = py
        .allow_threads(|| {
            mitmrs_core::encoding::decode(encoding, &b, mitmrs_core::message::DEFAULT_DECODE_LIMIT)
        })
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &out))
}

/// A filter expression as mitmproxy's grammar reads it (`flowfilter.parse`
/// compiles the regexes with Python's `re`): nested tuples, `("and", [..])`,
/// `("or", [..])`, `("not", x)`, `("unary", code)`, `("rex", code, regex)`,
/// `("int", code, digits)`. A ValueError with mitmproxy's message otherwise.
#[pyfunction]
fn filter_syntax(py: Python<'_>, expr: &str) -> PyResult<PyObject> {
    use mitmrs_core::flowfilter::Syntax;
    fn conv(py: Python<'_>, s: &Syntax) -> PyResult<PyObject> {
        let list =
            |v: &[Syntax]| -> PyResult<Vec<PyObject>> { v.iter().map(|x| conv(py, x)).collect() };
        Ok(match s {
            Syntax::And(v) => ("and", list(v)?).into_pyobject(py)?.into_any().unbind(),
            Syntax::Or(v) => ("or", list(v)?).into_pyobject(py)?.into_any().unbind(),
            Syntax::Not(x) => ("not", conv(py, x)?).into_pyobject(py)?.into_any().unbind(),
            Syntax::Unary(code) => ("unary", *code).into_pyobject(py)?.into_any().unbind(),
            Syntax::Rex(code, rex) => ("rex", *code, rex.as_str())
                .into_pyobject(py)?
                .into_any()
                .unbind(),
            Syntax::Code(digits) => ("int", "c", digits.as_str())
                .into_pyobject(py)?
                .into_any()
                .unbind(),
        })
    }
    let syntax = mitmrs_core::flowfilter::parse_syntax(expr)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    conv(py, &syntax)
}

#[pyfunction]
fn reason(code: u16) -> &'static str {
    mitmrs_core::status::reason(code)
}

#[pyfunction]
#[pyo3(signature = (level, msg, client=None))]
fn log(py: Python<'_>, level: i32, msg: &str, client: Option<String>) {
    py.allow_threads(|| match (level, client) {
        (l, Some(c)) if l >= 40 => {
            tracing::error!(target: "mitmrs_python", client = c.as_str(), "{msg}")
        }
        (l, None) if l >= 40 => tracing::error!(target: "mitmrs_python", "{msg}"),
        (l, Some(c)) if l >= 30 => {
            tracing::warn!(target: "mitmrs_python", client = c.as_str(), "{msg}")
        }
        (l, None) if l >= 30 => tracing::warn!(target: "mitmrs_python", "{msg}"),
        (l, Some(c)) if l >= 20 => {
            tracing::info!(target: "mitmrs_python", client = c.as_str(), "{msg}")
        }
        (l, None) if l >= 20 => tracing::info!(target: "mitmrs_python", "{msg}"),
        (_, Some(c)) => tracing::debug!(target: "mitmrs_python", client = c.as_str(), "{msg}"),
        (_, None) => tracing::debug!(target: "mitmrs_python", "{msg}"),
    })
}

pub(crate) fn value_to_py(py: Python<'_>, v: &OptionValue) -> PyResult<PyObject> {
    Ok(match v {
        OptionValue::Bool(b) => b.into_pyobject(py)?.to_owned().into_any().unbind(),
        OptionValue::Str(s) => s.into_pyobject(py)?.into_any().unbind(),
        OptionValue::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        OptionValue::Float(f) => f.into_pyobject(py)?.into_any().unbind(),
        OptionValue::None => py.None(),
        OptionValue::StrSeq(v) => PyList::new(py, v)?.into_any().unbind(),
        #[allow(unreachable_patterns)]
        _ => py.None(),
    })
}

fn value_from_py(typ: &OptionType, v: &Bound<'_, PyAny>) -> PyResult<OptionValue> {
    if v.is_none() {
        return Ok(OptionValue::None);
    }
    Ok(match typ {
        OptionType::Bool => OptionValue::Bool(v.extract()?),
        OptionType::Str | OptionType::OptStr => OptionValue::Str(v.extract()?),
        OptionType::Int | OptionType::OptInt => OptionValue::Int(v.extract()?),
        OptionType::Float => OptionValue::Float(v.extract()?),
        OptionType::StrSeq => OptionValue::StrSeq(v.extract()?),
        #[allow(unreachable_patterns)]
        _ => return Err(PyValueError::new_err("unsupported option type")),
    })
}

#[pyfunction]
fn option_get(py: Python<'_>, name: &str) -> PyResult<PyObject> {
    let v = options()?
        .get(name)
        .ok_or_else(|| PyKeyError::new_err(name.to_string()))?;
    value_to_py(py, &v)
}

#[pyfunction]
fn option_set(py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
    let opts = options()?;
    let spec = opts
        .spec(name)
        .ok_or_else(|| PyKeyError::new_err(name.to_string()))?;
    let v = value_from_py(&spec.typ, value)
        .map_err(|e| PyValueError::new_err(format!("option {name}: {e}")))?;
    // Setting may run configure hooks (which take the GIL again): release it.
    py.allow_threads(|| opts.set(name, v))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(())
}

#[pyfunction]
fn option_parse_set(py: Python<'_>, spec: &str) -> PyResult<()> {
    let opts = options()?;
    py.allow_threads(|| opts.parse_set(spec, false))
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

#[pyfunction]
fn option_names() -> PyResult<Vec<String>> {
    Ok(options()?.names())
}

#[pyfunction]
#[pyo3(signature = (name, kind, default, help, choices=None))]
fn option_add(
    py: Python<'_>,
    name: &str,
    kind: &str,
    default: &Bound<'_, PyAny>,
    help: &str,
    choices: Option<Vec<String>>,
) -> PyResult<()> {
    let typ = match kind {
        "bool" => OptionType::Bool,
        "str" => OptionType::Str,
        "optstr" => OptionType::OptStr,
        "int" => OptionType::Int,
        "optint" => OptionType::OptInt,
        "float" => OptionType::Float,
        "seq" => OptionType::StrSeq,
        _ => {
            return Err(PyValueError::new_err(format!(
                "unsupported option type {kind}"
            )))
        }
    };
    let default = value_from_py(&typ, default)
        .map_err(|e| PyValueError::new_err(format!("option {name}: bad default: {e}")))?;
    let mut spec = OptionSpec::new(name, typ, default, help);
    if let Some(c) = choices {
        spec = spec.with_choices(c);
    }
    let opts = options()?;
    py.allow_threads(|| opts.add_option(spec))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    if let Some(g) = GLOBAL.get() {
        let mut so = g.script_options.lock().unwrap();
        if !so.iter().any(|n| n == name) {
            so.push(name.to_string());
        }
    }
    Ok(())
}

#[pyfunction]
fn set_hooks(names: Vec<String>) {
    let mut set = HookSet::EMPTY;
    for n in &names {
        if let Some(h) = Hook::from_name(n) {
            if DISPATCHED.contains(&h) {
                set = set.with(h);
            }
        }
    }
    TICK.store(names.iter().any(|n| n == "tick"), Ordering::Relaxed);
    HOOKS.store(set.bits(), Ordering::Relaxed);
}

/// `inject.websocket`: hands a message to the live WebSocket flow `flow_id`;
/// returns why it could not, if it could not.
#[pyfunction]
fn inject_websocket(
    flow_id: &str,
    to_client: bool,
    content: &[u8],
    is_text: bool,
) -> Option<String> {
    use mitmrs_core::flow::MessageType;
    let m = mitmrs_core::inject::Injected {
        to_client,
        kind: if is_text {
            MessageType::Text
        } else {
            MessageType::Binary
        },
        content: Bytes::copy_from_slice(content),
    };
    mitmrs_core::inject::websocket(flow_id, m)
        .err()
        .map(|e| e.to_string())
}

#[pyfunction]
fn shutdown() {
    crate::request_shutdown();
}

/// A flow's resume handle, for `flow.resume()` from Python.
#[pyclass(name = "ResumeHandle", module = "mitmproxy._rs")]
pub(crate) struct ResumeHandle(pub mitmrs_core::flow::InterceptHandle);

#[pymethods]
impl ResumeHandle {
    fn resume(&self) {
        self.0.resume();
    }
}

const BOOTSTRAP: &str = r#"
import sys, importlib.abc, importlib.util

class _MitmrsFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the mitmproxy submodules embedded in the mitmrs binary."""
    def __init__(self, sources):
        self.sources = sources
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.sources:
            return None
        is_pkg = self.sources[fullname][1]
        origin = "<mitmrs>/" + fullname.replace(".", "/") + ("/__init__.py" if is_pkg else ".py")
        return importlib.util.spec_from_loader(fullname, self, origin=origin, is_package=is_pkg)
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        src, is_pkg = self.sources[module.__name__]
        exec(compile(src, module.__spec__.origin, "exec"), module.__dict__)

sys.meta_path.insert(0, _MitmrsFinder(_SOURCES))
"#;

#[pymodule]
#[pyo3(name = "mitmproxy")]
fn mitmproxy_package(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.setattr("__path__", PyList::empty(py))?;
    m.setattr("__file__", "<mitmrs>/mitmproxy/__init__.py")?;
    let rs = PyModule::new(py, "mitmproxy._rs")?;
    rs.add_function(wrap_pyfunction!(encode, &rs)?)?;
    rs.add_function(wrap_pyfunction!(inject_websocket, &rs)?)?;
    rs.add_function(wrap_pyfunction!(decode, &rs)?)?;
    rs.add_function(wrap_pyfunction!(reason, &rs)?)?;
    rs.add_function(wrap_pyfunction!(filter_syntax, &rs)?)?;
    rs.add_function(wrap_pyfunction!(log, &rs)?)?;
    rs.add_function(wrap_pyfunction!(option_get, &rs)?)?;
    rs.add_function(wrap_pyfunction!(option_set, &rs)?)?;
    rs.add_function(wrap_pyfunction!(option_parse_set, &rs)?)?;
    rs.add_function(wrap_pyfunction!(option_names, &rs)?)?;
    rs.add_function(wrap_pyfunction!(option_add, &rs)?)?;
    rs.add_function(wrap_pyfunction!(set_hooks, &rs)?)?;
    rs.add_function(wrap_pyfunction!(shutdown, &rs)?)?;
    rs.add_class::<ResumeHandle>()?;
    m.setattr("_rs", &rs)?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("mitmproxy._rs", &rs)?;
    let sources = PyDict::new(py);
    for (name, src, is_pkg) in SOURCES {
        sources.set_item(*name, (*src, *is_pkg))?;
    }
    let g = PyDict::new(py);
    g.set_item("_SOURCES", sources)?;
    g.set_item("__builtins__", py.import("builtins")?)?;
    py.import("builtins")?
        .getattr("exec")?
        .call1((BOOTSTRAP, &g))?;
    py.import("builtins")?
        .getattr("exec")?
        .call1((PACKAGE_INIT, m.dict()))?;
    Ok(())
}

/// Registers the built-in `mitmproxy` package and starts the interpreter, once.
pub(crate) fn init_interpreter() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        pyo3::append_to_inittab!(mitmproxy_package);
        pyo3::prepare_freethreaded_python();
    });
}
