//! Upgrading flow records written by older mitmproxy releases to format 21.
//!
//! Built so far: formats 10 to 20 (mitmproxy 4 to 10). The reader is lenient
//! (fields a format lacks get mitmproxy's upgrade defaults, extra fields are
//! ignored, bytes and text are both accepted), so what is left to do here is
//! the renames: `alpn_proto_negotiated` → `alpn` (format 11), the connection
//! addresses and `cipher_name` (format 19), and QUIC's TLS version name (21).
//! Older formats (mitmproxy 0.x to 3) reshaped flows release by release; until
//! that chain is built (with the flow-file issue) they get an error that says how
//! to upgrade the file with mitmproxy itself.

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
            "flow format {v} is not readable yet: mitmrs reads formats 10 to {FLOW_FORMAT_VERSION}. \
             Upgrade the file with mitmproxy: `mitmdump -nr OLD -w NEW`"
        ))
    };
    match version_of(&state) {
        Ok(v) if v == FLOW_FORMAT_VERSION => Ok(state),
        Ok(v) if (10..FLOW_FORMAT_VERSION).contains(&v) => {
            if let Value::Dict(items) = &mut state {
                for (k, val) in items.iter_mut() {
                    if k.key_is("version") {
                        *val = Value::Int(FLOW_FORMAT_VERSION);
                    } else if k.key_is("client_conn") {
                        upgrade_conn(val, v, &[("address", "peername")]);
                    } else if k.key_is("server_conn") {
                        upgrade_conn(
                            val,
                            v,
                            &[("ip_address", "peername"), ("source_address", "sockname")],
                        );
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

/// Renames one connection's fields from format `from` to 21.
fn upgrade_conn(conn: &mut Value, from: i64, addresses: &[(&'static str, &'static str)]) {
    let Value::Dict(items) = conn else { return };
    let mut renames: Vec<(&'static str, &'static str)> = Vec::new();
    if from < 11 {
        renames.push(("alpn_proto_negotiated", "alpn"));
    }
    if from < 19 {
        renames.extend_from_slice(addresses);
        renames.push(("cipher_name", "cipher"));
        renames.push(("tls_established", "tls"));
    }
    for (key, _) in items.iter_mut() {
        if let Some((_, to)) = renames.iter().find(|(from, _)| key.key_is(from)) {
            *key = Value::str(*to);
        }
    }
    // Before format 19 a server's `sni` could be `True`: "the address's host".
    let host = items
        .iter()
        .find(|(k, _)| k.key_is("address"))
        .and_then(|(_, a)| match a {
            Value::List(l) => l.first().cloned(),
            _ => None,
        });
    for (k, v) in items.iter_mut() {
        if k.key_is("sni") && matches!(v, Value::Bool(_)) {
            *v = match (&*v, &host) {
                (Value::Bool(true), Some(h)) => h.clone(),
                _ => Value::Null,
            };
        }
        if k.key_is("tls_version") && v == &Value::str("QUIC") {
            // mitmproxy 11 calls QUIC's version "QUICv1" (format 21).
            *v = Value::str("QUICv1");
        }
    }
}
