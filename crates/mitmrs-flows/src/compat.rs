//! Upgrading flow records written by older mitmproxy releases to format 21.
//!
//! Built so far: formats 19 and 20 (mitmproxy 9 and 10). Their differences from 21
//! are a dropped `state` field (ignored by the reader) and QUIC's TLS version
//! name. Older formats renamed and retyped fields release by release; until that
//! chain is built (with the flow-file issue), they get an error that says how to
//! upgrade the file with mitmproxy itself.

use crate::state::{StateError, FLOW_FORMAT_VERSION};
use crate::tnetstring::Value;

/// The record's format version as mitmproxy names it: an integer, or for
/// releases before 1.0 the release tuple (e.g. "0.10").
fn version_of(state: &Value) -> Result<i64, String> {
    match state.get("version") {
        Some(Value::Int(v)) => Ok(*v),
        Some(Value::List(parts)) => Err(parts
            .iter()
            .take(2)
            .map(|p| match p {
                Value::Int(i) => i.to_string(),
                _ => "?".into(),
            })
            .collect::<Vec<_>>()
            .join(".")),
        _ => Err("unknown".into()),
    }
}

/// Upgrades `state` in place to format 21, or says why it cannot.
pub fn upgrade(mut state: Value) -> Result<Value, StateError> {
    let err = |message: String| StateError {
        field: "version".into(),
        message,
    };
    let too_old = |v: String| {
        err(format!(
            "flow format {v} is not readable yet: mitmrs reads formats 19 to {FLOW_FORMAT_VERSION} \
             (mitmproxy 9 to 11). Upgrade the file with mitmproxy: `mitmdump -nr OLD -w NEW`"
        ))
    };
    match version_of(&state) {
        Ok(v) if v == FLOW_FORMAT_VERSION => Ok(state),
        Ok(v @ (19 | 20)) => {
            let _ = v;
            if let Value::Dict(items) = &mut state {
                for (k, val) in items.iter_mut() {
                    if k == &Value::str("version") {
                        *val = Value::Int(FLOW_FORMAT_VERSION);
                    } else if k == &Value::str("client_conn") || k == &Value::str("server_conn") {
                        rename_quic(val);
                    }
                }
            }
            Ok(state)
        }
        Ok(v) if v > FLOW_FORMAT_VERSION => Err(err(format!(
            "flow format {v} is newer than this mitmrs reads ({FLOW_FORMAT_VERSION}); \
             update mitmrs"
        ))),
        Ok(v) => Err(too_old(v.to_string())),
        Err(v) => Err(too_old(v)),
    }
}

/// mitmproxy 11 calls QUIC's version "QUICv1" (format 21).
fn rename_quic(conn: &mut Value) {
    if let Value::Dict(items) = conn {
        for (k, v) in items.iter_mut() {
            if k == &Value::str("tls_version") && v == &Value::str("QUIC") {
                *v = Value::str("QUICv1");
            }
        }
    }
}
