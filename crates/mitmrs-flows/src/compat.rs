//! Upgrading flow records written by older mitmproxy releases to format 21.
//!
//! Built so far: formats 10 to 20 (mitmproxy 4 to 10). The reader is lenient
//! (fields a format lacks get mitmproxy's upgrade defaults, extra fields are
//! ignored, bytes and text are both accepted), so what is left to do here is
//! the renames: `alpn_proto_negotiated` → `alpn` (format 11), the connection
//! addresses, `cipher_name` and `via2` (format 19), QUIC's TLS version name
//! (21), and two fix-ups: `tls_established` dropped (19) and a missing response
//! `timestamp_start` (mitmproxy issue 4576, fixed up in format 14).
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
                            &[
                                ("ip_address", "peername"),
                                ("source_address", "sockname"),
                                ("via2", "via"),
                            ],
                        );
                    }
                }
                if v < 14 {
                    fix_response_start(items);
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

/// Before format 14 a response could lack `timestamp_start`: it becomes the
/// request's end, and its end one second later (as mitmproxy's upgrade does).
fn fix_response_start(flow: &mut [(Value, Value)]) {
    let request_end = flow
        .iter()
        .find(|(k, _)| k.key_is("request"))
        .and_then(|(_, r)| match r.get("timestamp_end") {
            Some(Value::Float(t)) => Some(*t),
            Some(Value::Int(t)) => Some(*t as f64),
            _ => None,
        });
    let Some(end) = request_end else { return };
    let Some((_, Value::Dict(resp))) = flow.iter_mut().find(|(k, _)| k.key_is("response")) else {
        return;
    };
    if !matches!(
        resp.iter().find(|(k, _)| k.key_is("timestamp_start")),
        None | Some((_, Value::Null))
    ) {
        return;
    }
    resp.retain(|(k, _)| !k.key_is("timestamp_start") && !k.key_is("timestamp_end"));
    resp.push((Value::str("timestamp_start"), Value::Float(end)));
    resp.push((Value::str("timestamp_end"), Value::Float(end + 1.0)));
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
        // Formats 10 to 18 hold both `tls` and the older `tls_established`.
        items.retain(|(k, _)| !k.key_is("tls_established"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{flow_from_state, flow_to_state};
    use mitmrs_core::{Client, Headers, HttpFlow, Request, Response, Server};
    use std::sync::Arc;

    fn set(dict: &mut Value, key: &str, v: Value) {
        let Value::Dict(items) = dict else { panic!() };
        items.retain(|(k, _)| !k.key_is(key));
        items.insert(0, (Value::str(key.to_string()), v));
    }

    fn child<'a>(dict: &'a mut Value, key: &str) -> &'a mut Value {
        let Value::Dict(items) = dict else { panic!() };
        &mut items.iter_mut().find(|(k, _)| k.key_is(key)).unwrap().1
    }

    #[test]
    fn old_fields_are_dropped_and_missing_timestamps_fixed_up() {
        let mut flow = HttpFlow::new(
            Arc::new(Client::new(
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            )),
            Arc::new(Server::new(None)),
            Request::make("GET", "http://h/", "", Headers::new()).unwrap(),
        );
        flow.request.timestamp_end = Some(100.5);
        flow.response = Some(Response::make(200, "", Headers::new()));
        let mut state = flow_to_state(&flow);
        set(&mut state, "version", Value::Int(13));
        // Written before `tls`, so a rename would shadow the real value.
        set(
            child(&mut state, "client_conn"),
            "tls_established",
            Value::Bool(true),
        );
        set(
            child(&mut state, "response"),
            "timestamp_start",
            Value::Null,
        );
        let up = upgrade(state).unwrap();
        let client = up.get("client_conn").unwrap();
        assert!(client.get("tls_established").is_none());
        assert_eq!(client.get("tls"), Some(&Value::Bool(false)));
        let f = flow_from_state(&up).unwrap();
        let r = f.response.unwrap();
        assert_eq!((r.timestamp_start, r.timestamp_end), (100.5, Some(101.5)));
    }
}
