//! A flow as mitmproxy's `get_state()` dict (flow format version 21), and back.
//!
//! The field names, types and nesting are those mitmproxy 11.0.2 writes and its
//! `from_state` demands (it rejects missing or extra fields and wrong types), so a
//! file we write opens in mitmproxy, and a file mitmproxy writes opens here.
//! Reading is lenient where mitmproxy's own history was (bytes or text for the
//! same field) and strict where a value would be meaningless; every error names
//! the field, e.g. `request.port: expected int, found bytes`.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use mitmrs_core::connection::{CertDer, Client, Server, TlsFacts, TransportProtocol};
use mitmrs_core::flow::{FlowError, MetaDict, MetaValue};
use mitmrs_core::{
    Headers, HttpFlow, MessageType, Request, Response, WebSocketData, WebSocketMessage,
};

use crate::tnetstring::{key, DecodeError, Item, Plain, Shallow, Tape, Value, Writer};

mod canonical;

pub(crate) use canonical::http_flow as canonical_http_flow;

/// The flow format version this module reads and writes (mitmproxy 11.0's).
pub const FLOW_FORMAT_VERSION: i64 = 21;

/// Why a decoded record is not a flow we can use. `field` is a dotted path.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct StateError {
    pub field: String,
    pub message: String,
}

/// Boxed inside this module: a field read returns `Result<Shallow>`, and an
/// unboxed error (two `String`s) made every such value twice as large.
type Result<T> = std::result::Result<T, Box<StateError>>;

// ---------------------------------------------------------------- writing
//
// Written straight into the record's bytes with a [`Writer`]; the key order is
// the one mitmproxy's files have.

/// Appends the record of `f` (its state dict, format 21) to `out`.
pub fn write_flow(f: &HttpFlow, out: &mut Vec<u8>) {
    // Room for the whole record up front, so a flow with a large body is not
    // copied again each time the buffer would double.
    let size = size_hint(f);
    out.reserve(size);
    Writer::new(out).dict_of_size(size, |w| {
        w.key(key!("websocket"));
        w.opt(f.websocket.as_ref(), websocket_state);
        w.key(key!("response"));
        w.opt(f.response.as_ref(), response_state);
        w.key(key!("request"));
        request_state(w, &f.request);
        w.key(key!("backup"));
        w.null();
        w.key(key!("timestamp_created"));
        w.float(f.timestamp_created);
        w.key(key!("comment"));
        w.str(&f.comment);
        w.key(key!("metadata"));
        meta_map(w, &f.metadata);
        w.key(key!("marked"));
        w.str(&f.marked);
        w.key(key!("is_replay"));
        w.opt(f.is_replay.as_deref(), Writer::str);
        w.key(key!("intercepted"));
        w.bool(f.intercepted());
        w.key(key!("server_conn"));
        server_state(w, &f.server_conn);
        w.key(key!("client_conn"));
        client_state(w, &f.client_conn);
        w.key(key!("error"));
        w.opt(f.error.as_ref(), |w, e| {
            w.dict(|w| {
                w.key(key!("timestamp"));
                w.float(e.timestamp);
                w.key(key!("msg"));
                w.str(&e.msg);
            })
        });
        w.key(key!("id"));
        w.str(&f.id);
        w.key(key!("type"));
        w.str("http");
        w.key(key!("version"));
        w.int(FLOW_FORMAT_VERSION);
    });
}

/// About the size of `f`'s record: its bodies, headers and messages, and a
/// little over what the rest of a flow takes.
fn size_hint(f: &HttpFlow) -> usize {
    let headers = |h: &Headers| {
        h.fields()
            .iter()
            .map(|(n, v)| n.len() + v.len() + 12)
            .sum::<usize>()
    };
    let body = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
    let mut n = 3072 + headers(&f.request.headers) + body(&f.request.content);
    if let Some(r) = &f.response {
        n += headers(&r.headers) + body(&r.content);
    }
    if let Some(w) = &f.websocket {
        n += w
            .messages
            .iter()
            .map(|m| m.content.len() + 48)
            .sum::<usize>();
    }
    n
}

/// The state dict of an HTTP flow as a [`Value`] (what [`write_flow`] writes,
/// read back), for tests that edit a record.
#[cfg(test)]
pub fn flow_to_state(f: &HttpFlow) -> Value {
    let mut out = Vec::new();
    write_flow(f, &mut out);
    match crate::tnetstring::decode(&Bytes::from(out)) {
        Ok((v, _)) => v,
        Err(e) => unreachable!("write_flow wrote an invalid record: {e}"),
    }
}

/// mitmproxy's `WebSocketData` state; each message is
/// `[type, from_client, content, timestamp, dropped, injected]`.
fn websocket_state(w: &mut Writer<'_>, ws: &WebSocketData) {
    w.dict(|w| {
        w.key(key!("timestamp_end"));
        w.opt(ws.timestamp_end, Writer::float);
        w.key(key!("close_reason"));
        w.opt(ws.close_reason.as_deref(), Writer::str);
        w.key(key!("close_code"));
        w.opt(ws.close_code, |w, c| w.int(c.into()));
        w.key(key!("closed_by_client"));
        w.opt(ws.closed_by_client, Writer::bool);
        w.key(key!("messages"));
        w.list(|w| {
            for m in &ws.messages {
                w.list(|w| {
                    w.int(m.kind as i64);
                    w.bool(m.from_client);
                    w.bytes(&m.content);
                    w.float(m.timestamp);
                    w.bool(m.dropped);
                    w.bool(m.injected);
                });
            }
        });
    });
}

fn headers_state(w: &mut Writer<'_>, h: &Headers) {
    w.list(|w| {
        for (n, v) in h.fields() {
            w.scalar_list(&[(n, b','), (v, b',')]);
        }
    });
}

/// The fields requests and responses share, in file order.
fn message_fields(
    w: &mut Writer<'_>,
    (start, end): (f64, Option<f64>),
    trailers: &Option<Headers>,
    content: &Option<Bytes>,
    headers: &Headers,
    http_version: &str,
) {
    w.key(key!("timestamp_end"));
    w.opt(end, Writer::float);
    w.key(key!("timestamp_start"));
    w.float(start);
    w.key(key!("trailers"));
    w.opt(trailers.as_ref(), headers_state);
    w.key(key!("content"));
    w.opt(content.as_deref(), Writer::bytes);
    w.key(key!("headers"));
    headers_state(w, headers);
    w.key(key!("http_version"));
    w.bytes(http_version.as_bytes());
}

fn request_state(w: &mut Writer<'_>, r: &Request) {
    w.dict(|w| {
        w.key(key!("path"));
        w.bytes(r.path.as_bytes());
        w.key(key!("authority"));
        w.bytes(r.authority.as_bytes());
        w.key(key!("scheme"));
        w.bytes(r.scheme.as_bytes());
        w.key(key!("method"));
        w.bytes(r.method.as_bytes());
        w.key(key!("port"));
        w.int(i64::from(r.port));
        w.key(key!("host"));
        w.str(&r.host);
        message_fields(
            w,
            (r.timestamp_start, r.timestamp_end),
            &r.trailers,
            &r.content,
            &r.headers,
            &r.http_version,
        );
    });
}

fn response_state(w: &mut Writer<'_>, r: &Response) {
    w.dict(|w| {
        w.key(key!("reason"));
        w.bytes(r.reason.as_bytes());
        w.key(key!("status_code"));
        w.int(i64::from(r.status_code));
        message_fields(
            w,
            (r.timestamp_start, r.timestamp_end),
            &r.trailers,
            &r.content,
            &r.headers,
            &r.http_version,
        );
    });
}

/// mitmproxy writes socket addresses as Python's `getpeername()` returns them:
/// `[host, port]` for IPv4, `[host, port, flowinfo, scope_id]` for IPv6.
fn sockaddr_state(w: &mut Writer<'_>, a: &SocketAddr) {
    use std::io::Write as _;
    let mut ip = [0u8; 48];
    let n = match a.ip() {
        // Four small integers: `core::fmt` took ~1,000 instructions for them,
        // itoa ~60 each.
        IpAddr::V4(v4) => {
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    ip[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    ip[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    ip[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                ip[n] = b'0' + octet % 10;
                n += 1;
            }
            n
        }
        // An IPv6 address is at most 45 characters.
        v6 => {
            let mut cur = std::io::Cursor::new(&mut ip[..]);
            let _ = write!(cur, "{v6}");
            cur.position() as usize
        }
    };
    let mut port = itoa::Buffer::new();
    let port = port.format(a.port()).as_bytes();
    match a {
        SocketAddr::V4(_) => w.scalar_list(&[(&ip[..n], b';'), (port, b'#')]),
        SocketAddr::V6(a) => {
            let (mut flow, mut scope) = (itoa::Buffer::new(), itoa::Buffer::new());
            w.scalar_list(&[
                (&ip[..n], b';'),
                (port, b'#'),
                (flow.format(a.flowinfo()).as_bytes(), b'#'),
                (scope.format(a.scope_id()).as_bytes(), b'#'),
            ]);
        }
    }
}

/// A certificate as the PEM mitmproxy writes (64-column base64, LF line ends).
/// Done with `base64` directly: the `pem` crate's parser built its base64 text a
/// char at a time, a fifth of the time `-r` spent on a flow with a certificate.
fn pem_of(w: &mut Writer<'_>, der: &CertDer) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = Vec::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    w.bytes(&out);
}

/// The DER inside a PEM certificate.
fn der_of_pem(pem: &[u8]) -> std::result::Result<Vec<u8>, String> {
    use base64::Engine as _;
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let start = find(pem, BEGIN).ok_or("no -----BEGIN CERTIFICATE----- line")? + BEGIN.len();
    let len = find(&pem[start..], END).ok_or("no -----END CERTIFICATE----- line")?;
    let b64: Vec<u8> = pem[start..start + len]
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("bad base64: {e}"))
}

/// The TLS fields both connection kinds share, from `sni` to `tls`.
fn tls_state(w: &mut Writer<'_>, tls: &TlsFacts) {
    w.key(key!("sni"));
    w.opt(tls.sni.as_deref(), Writer::str);
    w.key(key!("tls_version"));
    w.opt(tls.tls_version.as_deref(), Writer::str);
    w.key(key!("cipher_list"));
    w.list(|w| tls.cipher_list.iter().for_each(|c| w.str(c)));
    w.key(key!("cipher"));
    w.opt(tls.cipher.as_deref(), Writer::str);
    w.key(key!("alpn_offers"));
    w.list(|w| tls.alpn_offers.iter().for_each(|a| w.bytes(a)));
    w.key(key!("alpn"));
    w.opt(tls.alpn.as_deref(), Writer::bytes);
    w.key(key!("certificate_list"));
    w.list(|w| tls.certificate_list.iter().for_each(|c| pem_of(w, c)));
    w.key(key!("tls"));
    w.bool(tls.tls);
}

/// The fields after the TLS ones, the same for both connection kinds but for
/// the addresses (a server may not have them yet).
fn conn_tail(
    w: &mut Writer<'_>,
    error: Option<&str>,
    transport: TransportProtocol,
    id: &str,
    (sockname, peername): (Option<&SocketAddr>, Option<&SocketAddr>),
) {
    w.key(key!("error"));
    w.opt(error, Writer::str);
    w.key(key!("transport_protocol"));
    w.str(transport.as_str());
    w.key(key!("id"));
    w.str(id);
    w.key(key!("sockname"));
    w.opt(sockname, sockaddr_state);
    w.key(key!("peername"));
    w.opt(peername, sockaddr_state);
}

fn client_state(w: &mut Writer<'_>, c: &Client) {
    w.dict(|w| {
        w.key(key!("proxy_mode"));
        w.str(&c.proxy_mode);
        w.key(key!("mitmcert"));
        w.opt(c.mitmcert.as_ref(), pem_of);
        w.key(key!("timestamp_tls_setup"));
        w.opt(c.tls.timestamp_tls_setup, Writer::float);
        w.key(key!("timestamp_end"));
        w.opt(c.timestamp_end, Writer::float);
        w.key(key!("timestamp_start"));
        w.float(c.timestamp_start);
        tls_state(w, &c.tls);
        conn_tail(
            w,
            c.error.as_deref(),
            c.transport_protocol,
            &c.id,
            (Some(&c.sockname), Some(&c.peername)),
        );
    });
}

fn server_state(w: &mut Writer<'_>, c: &Server) {
    w.dict(|w| {
        w.key(key!("via"));
        w.null();
        w.key(key!("timestamp_tcp_setup"));
        w.opt(c.timestamp_tcp_setup, Writer::float);
        w.key(key!("address"));
        w.opt(c.address.as_ref(), |w, (h, p)| {
            let mut port = itoa::Buffer::new();
            w.scalar_list(&[(h.as_bytes(), b';'), (port.format(*p).as_bytes(), b'#')]);
        });
        w.key(key!("timestamp_tls_setup"));
        w.opt(c.tls.timestamp_tls_setup, Writer::float);
        w.key(key!("timestamp_end"));
        w.opt(c.timestamp_end, Writer::float);
        w.key(key!("timestamp_start"));
        w.opt(c.timestamp_start, Writer::float);
        tls_state(w, &c.tls);
        conn_tail(
            w,
            c.error.as_deref(),
            c.transport_protocol,
            &c.id,
            (c.sockname.as_ref(), c.peername.as_ref()),
        );
    });
}

fn meta_map(w: &mut Writer<'_>, m: &MetaDict) {
    w.dict(|w| {
        for (k, v) in &m.0 {
            meta_state(w, k);
            meta_state(w, v);
        }
    });
}

fn meta_state(w: &mut Writer<'_>, v: &MetaValue) {
    match v {
        MetaValue::Null => w.null(),
        MetaValue::Bool(b) => w.bool(*b),
        MetaValue::Int(i) => w.int(*i),
        MetaValue::BigInt(s) => w.big_int(s),
        MetaValue::Float(f) => w.float(*f),
        MetaValue::Str(t) => w.str(t),
        MetaValue::Bytes(b) => w.bytes(b),
        MetaValue::List(l) => w.list(|w| l.iter().for_each(|x| meta_state(w, x))),
        MetaValue::Dict(m) => meta_map(w, m),
    }
}

// ---------------------------------------------------------------- reading

/// A dict being read, with the dotted path of where it sits for error messages.
struct Fields<'a> {
    item: Item<'a>,
    path: Cow<'static, str>,
    /// Where the last field was found (see [`Item::field_from`]).
    hint: std::cell::Cell<u32>,
}

impl<'a> Fields<'a> {
    fn root(item: Item<'a>) -> Result<Self> {
        match item.get() {
            Ok(Shallow::Dict(_)) => Ok(Fields {
                item,
                path: "".into(),
                hint: Default::default(),
            }),
            other => Err(Box::new(StateError {
                field: "flow".into(),
                message: match other {
                    Ok(v) => format!("expected a dict, found {}", v.type_name()),
                    Err(e) => e.to_string(),
                },
            })),
        }
    }

    fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn err(&self, key: &str, message: impl Into<String>) -> Box<StateError> {
        Box::new(StateError {
            field: self.name(key),
            message: message.into(),
        })
    }

    fn wrong(&self, key: &str, expected: &str, found: &Shallow<'_>) -> Box<StateError> {
        self.err(
            key,
            format!("expected {expected}, found {}", found.type_name()),
        )
    }

    /// `v` read, a bad scalar (text that is not UTF-8, a malformed number)
    /// named as this field's problem.
    #[inline]
    fn read(&self, key: &str, v: Item<'a>) -> Result<Shallow<'a>> {
        v.get().map_err(|e| self.err(key, e.to_string()))
    }

    /// See [`Item::skip_plain_fields`].
    fn skip_plain(&self, fields: &[(&str, Plain)]) -> bool {
        let mut hint = self.hint.get();
        let skipped = self.item.skip_plain_fields(fields, &mut hint);
        self.hint.set(hint);
        skipped
    }

    /// The item of `key`, if the dict has it.
    #[inline]
    fn field(&self, key: &str) -> Option<Item<'a>> {
        let mut hint = self.hint.get();
        let found = self.item.field_from(key, &mut hint);
        self.hint.set(hint);
        found
    }

    #[inline]
    fn get(&self, key: &str) -> Result<Shallow<'a>> {
        match self.field(key) {
            Some(v) => self.read(key, v),
            None => Err(self.err(key, "missing (a flow written by mitmproxy has it)")),
        }
    }

    /// A field that older files may lack (None if they do).
    #[inline]
    fn maybe(&self, key: &str) -> Result<Shallow<'a>> {
        match self.field(key) {
            Some(v) => self.read(key, v),
            None => Ok(Shallow::Null),
        }
    }

    fn dict(&self, key: &'static str) -> Result<Fields<'a>> {
        self.dict_of(key, self.get(key)?)
    }

    /// `v`, the value of `key`, as a dict.
    fn dict_of(&self, key: &'static str, v: Shallow<'a>) -> Result<Fields<'a>> {
        match v {
            Shallow::Dict(item) => Ok(Fields {
                item,
                // No allocation for the flow's own dicts (`request`, ...).
                path: if self.path.is_empty() {
                    key.into()
                } else {
                    self.name(key).into()
                },
                hint: Default::default(),
            }),
            other => Err(self.wrong(key, "dict", &other)),
        }
    }

    fn opt_dict(&self, key: &'static str) -> Result<Option<Fields<'a>>> {
        match self.maybe(key)? {
            Shallow::Null => Ok(None),
            v => self.dict_of(key, v).map(Some),
        }
    }

    fn opt_text_of(&self, key: &str, v: Shallow<'a>) -> Result<Option<String>> {
        Ok(self.opt_str_of(key, v)?.map(Cow::into_owned))
    }

    /// [`Fields::opt_text_of`] borrowed from the record where it can be.
    fn opt_str_of(&self, key: &str, v: Shallow<'a>) -> Result<Option<Cow<'a, str>>> {
        match v {
            Shallow::Null => Ok(None),
            Shallow::Str(t) => Ok(Some(t.into())),
            // Older files stored some text fields as bytes.
            Shallow::Bytes(b) => Ok(Some(String::from_utf8_lossy(b))),
            other => Err(self.wrong(key, "str", &other)),
        }
    }

    fn opt_text(&self, key: &str) -> Result<Option<String>> {
        self.opt_text_of(key, self.maybe(key)?)
    }

    fn text(&self, key: &str) -> Result<String> {
        let v = self.get(key)?;
        self.opt_text_of(key, v)?
            .ok_or_else(|| self.wrong(key, "str", &v))
    }

    /// The bytes of `v` (a slice of the record, not a copy).
    fn bytes_of(&self, key: &str, v: Item<'a>) -> Result<Option<Bytes>> {
        if let Some(b) = v.bytes_or_text() {
            return Ok(Some(b));
        }
        // Text that is not UTF-8 fails in `read`, with its offset.
        match self.read(key, v)? {
            Shallow::Null => Ok(None),
            other => Err(self.wrong(key, "bytes", &other)),
        }
    }

    fn opt_bytes(&self, key: &str) -> Result<Option<Bytes>> {
        match self.field(key) {
            Some(v) => self.bytes_of(key, v),
            None => Ok(None),
        }
    }

    fn int(&self, key: &str) -> Result<i64> {
        match self.get(key)? {
            Shallow::Int(i) => Ok(i),
            other => Err(self.wrong(key, "int", &other)),
        }
    }

    fn float_of(&self, key: &str, v: Shallow<'_>) -> Result<Option<f64>> {
        match v {
            Shallow::Null => Ok(None),
            Shallow::Float(f) => Ok(Some(f)),
            Shallow::Int(i) => Ok(Some(i as f64)),
            other => Err(self.wrong(key, "float", &other)),
        }
    }

    fn opt_float(&self, key: &str) -> Result<Option<f64>> {
        self.float_of(key, self.maybe(key)?)
    }

    fn float(&self, key: &str) -> Result<f64> {
        let v = self.get(key)?;
        self.float_of(key, v)?
            .ok_or_else(|| self.wrong(key, "float", &v))
    }

    fn bool(&self, key: &str) -> Result<bool> {
        match self.maybe(key)? {
            Shallow::Null => Ok(false),
            Shallow::Bool(b) => Ok(b),
            other => Err(self.wrong(key, "bool", &other)),
        }
    }

    /// The items of a list field (none if it is missing or None).
    fn list(&self, key: &str) -> Result<impl Iterator<Item = Item<'a>> + 'a> {
        let items = match self.maybe(key)? {
            Shallow::Null => None,
            Shallow::List(l) => Some(l.children()),
            other => return Err(self.wrong(key, "list", &other)),
        };
        Ok(items.into_iter().flatten())
    }

    fn port(&self, key: &str, v: Shallow<'_>) -> Result<u16> {
        match v {
            Shallow::Int(i) => {
                u16::try_from(i).map_err(|_| self.err(key, format!("port {i} is not in 0..65535")))
            }
            other => Err(self.wrong(key, "int (a port)", &other)),
        }
    }

    /// `[host, port]` (a server's address: host may be a name).
    fn opt_address(&self, key: &str) -> Result<Option<(String, u16)>> {
        Ok(self
            .address_list(key)?
            .map(|(host, port, _)| (host.into_owned(), port)))
    }

    /// `[host, port, ...]`, and the list itself for what follows.
    fn address_list(&self, key: &str) -> Result<Option<(Cow<'a, str>, u16, Item<'a>)>> {
        self.address_list_of(key, self.maybe(key)?)
    }

    /// [`Fields::address_list`] of `v`, the value of `key`.
    fn address_list_of(
        &self,
        key: &str,
        v: Shallow<'a>,
    ) -> Result<Option<(Cow<'a, str>, u16, Item<'a>)>> {
        let (host, port, list) = match v {
            Shallow::Null => return Ok(None),
            Shallow::List(l) => {
                let mut it = l.children();
                match (it.next(), it.next()) {
                    (Some(h), Some(p)) => (self.read(key, h)?, self.read(key, p)?, l),
                    _ => return Err(self.wrong(key, "a list [host, port]", &v)),
                }
            }
            other => return Err(self.wrong(key, "a list [host, port]", &other)),
        };
        let host = self
            .opt_str_of(key, host)?
            .ok_or_else(|| self.wrong(key, "[host, port]", &host))?;
        Ok(Some((host, self.port(key, port)?, list)))
    }

    /// A socket address: `[ip, port]` or `[ip, port, flowinfo, scope_id]`.
    fn opt_sockaddr(&self, key: &str) -> Result<Option<SocketAddr>> {
        let v = match self.field(key) {
            Some(item) => {
                // The usual `[IPv4, port]`, read without the general path's
                // text, `Cow` and `IpAddr` parser (~600 instructions each).
                if let Some((h, p)) = item.scalar_pair() {
                    if let (Some(ip), Ok(Shallow::Int(port))) =
                        (h.bytes_or_text_unchecked().and_then(dotted_quad), p.get())
                    {
                        if let Ok(port) = u16::try_from(port) {
                            return Ok(Some(SocketAddr::from((ip, port))));
                        }
                    }
                }
                self.read(key, item)?
            }
            None => Shallow::Null,
        };
        let Some((host, port, list)) = self.address_list_of(key, v)? else {
            return Ok(None);
        };
        // Old formats wrote an unknown address as ("", 0), and some a server's
        // name where its IP address belongs: both read as "not known".
        let Ok(ip) = host.parse::<IpAddr>() else {
            return Ok(None);
        };
        Ok(Some(match ip {
            IpAddr::V4(_) => SocketAddr::new(ip, port),
            IpAddr::V6(ip6) => {
                // flowinfo and scope_id, kept so a re-save writes them back.
                let mut extra = list.children().skip(2).map(|v| match v.get() {
                    Ok(Shallow::Int(i)) => u32::try_from(i).unwrap_or(0),
                    _ => 0,
                });
                let (flowinfo, scope_id) = (extra.next().unwrap_or(0), extra.next().unwrap_or(0));
                SocketAddr::V6(std::net::SocketAddrV6::new(ip6, port, flowinfo, scope_id))
            }
        }))
    }

    fn headers(&self, key: &str) -> Result<Option<Headers>> {
        let items = match self.maybe(key)? {
            Shallow::Null => return Ok(None),
            Shallow::List(l) => l,
            other => return Err(self.wrong(key, "a list of [name, value] pairs", &other)),
        };
        // A pair is three values (the list, its name and its value).
        let mut fields = Vec::with_capacity(items.descendants() / 3);
        for item in items.children() {
            let pair = match item.scalar_pair() {
                Some((n, v)) => (n.bytes_or_text(), v.bytes_or_text()),
                None => (None, None),
            };
            match pair {
                (Some(n), Some(v)) => fields.push((n, v)),
                _ => return Err(self.err(key, "a header is not a [name, value] pair of bytes")),
            }
        }
        Ok(Some(Headers::from_fields(fields)))
    }

    /// The items of the list field `key`, each read by `f` (none if it is
    /// missing or None). An empty list (most connections' TLS lists) costs
    /// no collecting.
    fn list_of<T>(&self, key: &str, f: impl FnMut(Item<'a>) -> Result<T>) -> Result<Vec<T>> {
        let mut items = self.list(key)?.peekable();
        if items.peek().is_none() {
            return Ok(Vec::new());
        }
        items.map(f).collect()
    }

    fn certs(&self, key: &str) -> Result<Arc<[CertDer]>> {
        let certs = self.list_of(key, |v| self.cert_of(key, v))?;
        // An empty `Arc<[_]>` is not allocated.
        Ok(if certs.is_empty() {
            Arc::default()
        } else {
            certs.into()
        })
    }

    fn cert_of(&self, key: &str, v: Item<'a>) -> Result<CertDer> {
        let Some(raw) = v.bytes_or_text() else {
            return Err(self.wrong(key, "a PEM certificate (bytes)", &self.read(key, v)?));
        };
        der_of_pem(&raw)
            .map(Bytes::from)
            .map_err(|e| self.err(key, format!("not a PEM certificate: {e}")))
    }
}

/// An IPv4 address in its canonical form (four decimal octets, no leading
/// zeros), which `IpAddr`'s parser reads the same; `None` for anything else,
/// which then goes through that parser.
fn dotted_quad(b: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = b.split(|&c| c == b'.');
    for o in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part[0] == b'0') {
            return None;
        }
        let mut n: u16 = 0;
        for &c in part {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u16::from(c - b'0');
        }
        *o = u8::try_from(n).ok()?;
    }
    parts
        .next()
        .is_none()
        .then_some(std::net::Ipv4Addr::from(octets))
}

fn lossy(b: Option<Bytes>) -> String {
    let Some(b) = b else {
        return String::new();
    };
    // ASCII (nearly always) by a word-at-a-time check, not `Utf8Chunks`.
    match crate::tnetstring::ascii(&b) {
        Some(s) => s.to_owned(),
        None => String::from_utf8_lossy(&b).into_owned(),
    }
}

/// The TLS fields of a connection without TLS, as mitmproxy and mitmrs write
/// them: every one unset.
const NO_TLS: [(&str, Plain); 8] = [
    ("sni", Plain::Null),
    ("tls_version", Plain::Null),
    ("cipher_list", Plain::EmptyList),
    ("cipher", Plain::Null),
    ("alpn_offers", Plain::EmptyList),
    ("alpn", Plain::Null),
    ("certificate_list", Plain::EmptyList),
    ("tls", Plain::False),
];

/// [`tls_fields`], in a few instructions per field when they are [`NO_TLS`]
/// (half the connections of a plain-HTTP file; ~2k instructions each
/// otherwise).
fn tls_facts(c: &Fields<'_>, timestamp_tls_setup: Option<f64>) -> Result<TlsFacts> {
    if c.skip_plain(&NO_TLS) {
        return Ok(TlsFacts {
            timestamp_tls_setup,
            ..TlsFacts::default()
        });
    }
    tls_fields(c, timestamp_tls_setup)
}

/// The TLS fields both connection kinds share, from `sni` to `tls`, read one
/// by one (in file order, so each is found at once).
fn tls_fields(c: &Fields<'_>, timestamp_tls_setup: Option<f64>) -> Result<TlsFacts> {
    Ok(TlsFacts {
        timestamp_tls_setup,
        sni: c.opt_text("sni")?,
        tls_version: c.opt_text("tls_version")?,
        cipher_list: c.list_of("cipher_list", |v| {
            let v = c.read("cipher_list", v)?;
            c.opt_text_of("cipher_list", v)?
                .ok_or_else(|| c.wrong("cipher_list", "a list of str", &v))
        })?,
        cipher: c.opt_text("cipher")?,
        alpn_offers: c.list_of("alpn_offers", |v| match v.bytes_or_text() {
            Some(b) => Ok(b),
            None => Err(c.wrong("alpn_offers", "a list of bytes", &c.read("alpn_offers", v)?)),
        })?,
        alpn: c.opt_bytes("alpn")?,
        certificate_list: c.certs("certificate_list")?,
        tls: c.bool("tls")?,
    })
}

fn transport(c: &Fields<'_>) -> Result<TransportProtocol> {
    let v = c.maybe("transport_protocol")?;
    match c.opt_str_of("transport_protocol", v)?.as_deref() {
        None | Some("tcp") => Ok(TransportProtocol::Tcp),
        Some("udp") => Ok(TransportProtocol::Udp),
        Some(other) => Err(c.err(
            "transport_protocol",
            format!("{other:?} is neither \"tcp\" nor \"udp\""),
        )),
    }
}

fn client_from(c: &Fields<'_>) -> Result<Client> {
    let proxy_mode = c
        .opt_text("proxy_mode")?
        .unwrap_or_else(|| "regular".into());
    let mitmcert = match c.field("mitmcert") {
        Some(v) if !matches!(v.get(), Ok(Shallow::Null)) => Some(c.cert_of("mitmcert", v)?),
        _ => None,
    };
    let timestamp_tls_setup = c.opt_float("timestamp_tls_setup")?;
    let timestamp_end = c.opt_float("timestamp_end")?;
    let timestamp_start = c.opt_float("timestamp_start")?.unwrap_or(0.0);
    let tls = tls_facts(c, timestamp_tls_setup)?;
    let error = c.opt_text("error")?;
    let transport_protocol = transport(c)?;
    let id = c.text("id")?;
    let unknown = || SocketAddr::from(([0, 0, 0, 0], 0));
    let sockname = c.opt_sockaddr("sockname")?.unwrap_or_else(unknown);
    let peername = c.opt_sockaddr("peername")?.unwrap_or_else(unknown);
    Ok(Client {
        id,
        peername,
        sockname,
        state: mitmrs_core::connection::ConnectionState::Closed,
        transport_protocol,
        error,
        tls,
        mitmcert,
        proxy_mode,
        timestamp_start,
        timestamp_end,
    })
}

fn server_from(c: &Fields<'_>) -> Result<Server> {
    // Each field in file order (see `Fields::field`).
    let timestamp_tcp_setup = c.opt_float("timestamp_tcp_setup")?;
    let address = c.opt_address("address")?;
    let timestamp_tls_setup = c.opt_float("timestamp_tls_setup")?;
    let timestamp_end = c.opt_float("timestamp_end")?;
    let timestamp_start = c.opt_float("timestamp_start")?;
    let tls = tls_facts(c, timestamp_tls_setup)?;
    let error = c.opt_text("error")?;
    let transport_protocol = transport(c)?;
    let id = c.text("id")?;
    let sockname = c.opt_sockaddr("sockname")?;
    let peername = c.opt_sockaddr("peername")?;
    Ok(Server {
        id,
        address,
        peername,
        sockname,
        state: mitmrs_core::connection::ConnectionState::Closed,
        transport_protocol,
        error,
        tls,
        timestamp_start,
        timestamp_tcp_setup,
        timestamp_end,
        via: None,
    })
}

fn request_from(r: &Fields<'_>) -> Result<Request> {
    Ok(Request {
        path: lossy(r.opt_bytes("path")?),
        authority: lossy(r.opt_bytes("authority")?),
        scheme: lossy(r.opt_bytes("scheme")?),
        method: lossy(r.opt_bytes("method")?),
        port: r.port("port", r.get("port")?)?,
        host: r.text("host")?,
        timestamp_end: r.opt_float("timestamp_end")?,
        timestamp_start: r.float("timestamp_start")?,
        trailers: r.headers("trailers")?,
        content: r.opt_bytes("content")?,
        headers: r.headers("headers")?.unwrap_or_default(),
        http_version: lossy(r.opt_bytes("http_version")?),
        stream: Default::default(),
    })
}

fn response_from(r: &Fields<'_>) -> Result<Response> {
    Ok(Response {
        reason: lossy(r.opt_bytes("reason")?),
        status_code: {
            let code = r.int("status_code")?;
            u16::try_from(code)
                .map_err(|_| r.err("status_code", format!("{code} is not an HTTP status code")))?
        },
        timestamp_end: r.opt_float("timestamp_end")?,
        timestamp_start: r.float("timestamp_start")?,
        trailers: r.headers("trailers")?,
        content: r.opt_bytes("content")?,
        headers: r.headers("headers")?.unwrap_or_default(),
        http_version: lossy(r.opt_bytes("http_version")?),
        stream: Default::default(),
    })
}

/// Metadata as the file holds it; every tnetstring value has a metadata twin.
fn meta_from(v: Item<'_>) -> std::result::Result<MetaValue, DecodeError> {
    Ok(match v.get()? {
        Shallow::Null => MetaValue::Null,
        Shallow::Bool(b) => MetaValue::Bool(b),
        Shallow::Int(i) => MetaValue::Int(i),
        Shallow::BigInt(s) => MetaValue::BigInt(s.to_owned()),
        Shallow::Float(x) => MetaValue::Float(x),
        Shallow::Bytes(_) => MetaValue::Bytes(v.bytes()),
        Shallow::Str(t) => MetaValue::Str(t.to_owned()),
        Shallow::List(l) => MetaValue::List(
            l.children()
                .map(meta_from)
                .collect::<std::result::Result<_, _>>()?,
        ),
        Shallow::Dict(d) => MetaValue::Dict(meta_dict(d)?),
    })
}

fn meta_dict(d: Item<'_>) -> std::result::Result<MetaDict, DecodeError> {
    let mut pairs = Vec::new();
    let mut it = d.children();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        pairs.push((meta_from(k)?, meta_from(v)?));
    }
    Ok(MetaDict(pairs))
}

fn websocket_from(w: &Fields<'_>) -> Result<WebSocketData> {
    let mut data = WebSocketData::default();
    data.closed_by_client = match w.maybe("closed_by_client")? {
        Shallow::Null => None,
        _ => Some(w.bool("closed_by_client")?),
    };
    data.close_code = match w.maybe("close_code")? {
        Shallow::Null => None,
        _ => Some(
            u16::try_from(w.int("close_code")?)
                .map_err(|_| w.err("close_code", "not a close code (0 to 65535)"))?,
        ),
    };
    data.close_reason = w.opt_text("close_reason")?;
    data.timestamp_end = w.opt_float("timestamp_end")?;
    for (i, m) in w.list("messages")?.enumerate() {
        let bad = |what: &str| w.err(&format!("messages[{i}]"), what.to_string());
        let Ok(Shallow::List(_)) = m.get() else {
            return Err(bad("expected a list"));
        };
        let parts: Vec<Item<'_>> = m.children().take(6).collect();
        let part = |n: usize| parts.get(n).and_then(|p| p.get().ok());
        let kind = match part(0) {
            Some(Shallow::Int(1)) => MessageType::Text,
            Some(Shallow::Int(2)) => MessageType::Binary,
            _ => return Err(bad("the type is not 1 (text) or 2 (binary)")),
        };
        let flag = |n: usize| matches!(part(n), Some(Shallow::Bool(true)));
        let content = match parts.get(2).and_then(Item::bytes_or_text) {
            Some(b) => b,
            None => return Err(bad("the content is not bytes")),
        };
        let timestamp = match part(3) {
            Some(Shallow::Float(t)) => t,
            Some(Shallow::Int(t)) => t as f64,
            _ => return Err(bad("the timestamp is not a number")),
        };
        // Every message of a file is kept, whatever `websocket_history` says.
        data.push(
            WebSocketMessage {
                kind,
                from_client: flag(1),
                content,
                timestamp,
                dropped: flag(4),
                injected: flag(5),
            },
            usize::MAX,
        );
    }
    Ok(data)
}

/// What kind of flow a state dict holds (mitmproxy's `type`: http, tcp, udp, dns).
pub fn flow_type(state: Item<'_>) -> Option<Cow<'_, str>> {
    type_at(state, &mut 0)
}

fn type_at<'t>(state: Item<'t>, hint: &mut u32) -> Option<Cow<'t, str>> {
    match state.field_from("type", hint)?.get() {
        Ok(Shallow::Str(t)) => Some(t.into()),
        Ok(Shallow::Bytes(b)) => Some(String::from_utf8_lossy(b)),
        _ => None,
    }
}

/// [`flow_type`] and the format version (if it is an integer) of a state
/// dict, found with one search (`version` follows `type` in every file).
pub fn flow_type_version(state: Item<'_>) -> (Option<Cow<'_, str>>, Option<i64>) {
    let mut hint = 0;
    let kind = type_at(state, &mut hint);
    let version = match state.field_from("version", &mut hint).map(|v| v.get()) {
        Some(Ok(Shallow::Int(v))) => Some(v),
        _ => None,
    };
    (kind, version)
}

/// An HTTP flow from its state dict as a [`Value`] tree (format version 21;
/// see [`crate::compat`] for older ones). The flow is not live.
pub fn flow_from_state(state: &Value) -> std::result::Result<HttpFlow, StateError> {
    let tape =
        Tape::decode(Bytes::from(crate::tnetstring::to_vec(state)), usize::MAX).map_err(|e| {
            StateError {
                field: "flow".into(),
                message: e.to_string(),
            }
        })?;
    flow_from_tape(tape.root())
}

/// An HTTP flow from its state dict, read straight from the record's
/// [`Tape`] (format version 21). The flow is not live.
pub fn flow_from_tape(state: Item<'_>) -> std::result::Result<HttpFlow, StateError> {
    checked_flow_from_tape(state).map_err(|e| *e)
}

fn checked_flow_from_tape(state: Item<'_>) -> Result<HttpFlow> {
    let f = Fields::root(state)?;
    match flow_type(state).as_deref() {
        Some("http") => {}
        Some(other) => {
            return Err(f.err(
                "type",
                format!("{other} flows are not supported yet (only http flows are)"),
            ))
        }
        None => return Err(f.err("type", "missing or not text")),
    }
    let version = f.int("version")?;
    if version != FLOW_FORMAT_VERSION {
        return Err(f.err(
            "version",
            format!("expected {FLOW_FORMAT_VERSION} after upgrading, found {version}"),
        ));
    }
    http_flow_from(&f)
}

/// [`flow_from_tape`] for a state dict whose `type` ("http") and `version`
/// (21) the caller has checked.
pub(crate) fn http_flow_from_tape(state: Item<'_>) -> std::result::Result<HttpFlow, StateError> {
    Fields::root(state)
        .and_then(|f| http_flow_from(&f))
        .map_err(|e| *e)
}

fn http_flow_from(f: &Fields<'_>) -> Result<HttpFlow> {
    // In file order (see `Fields::field`).
    let websocket = f
        .opt_dict("websocket")?
        .map(|w| websocket_from(&w))
        .transpose()?;
    let response = f
        .opt_dict("response")?
        .map(|r| response_from(&r))
        .transpose()?;
    let request = request_from(&f.dict("request")?)?;
    let timestamp_created = f.opt_float("timestamp_created")?;
    let comment = f.opt_text("comment")?.unwrap_or_default();
    let metadata = match f.maybe("metadata")? {
        Shallow::Null => MetaDict::default(),
        Shallow::Dict(d) => meta_dict(d).map_err(|e| f.err("metadata", e.to_string()))?,
        other => return Err(f.wrong("metadata", "dict", &other)),
    };
    let marked = match f.maybe("marked")? {
        // Before format 17, `marked` was a bool.
        Shallow::Bool(true) => ":default:".into(),
        Shallow::Bool(false) | Shallow::Null => String::new(),
        v => f.opt_text_of("marked", v)?.unwrap_or_default(),
    };
    let is_replay = f.opt_text("is_replay")?;
    let server = server_from(&f.dict("server_conn")?)?;
    let client = client_from(&f.dict("client_conn")?)?;
    let error = f
        .opt_dict("error")?
        .map(|e| -> Result<FlowError> {
            Ok(FlowError {
                timestamp: e.opt_float("timestamp")?.unwrap_or(0.0),
                msg: e.text("msg")?,
            })
        })
        .transpose()?;
    let id = f.text("id")?;
    Ok(FlowParts {
        websocket,
        response,
        request,
        timestamp_created,
        comment,
        metadata,
        marked,
        is_replay,
        server: Arc::new(server),
        client: Arc::new(client),
        error,
        id,
    }
    .into_flow())
}

/// A flow's fields as a record holds them, made into the flow the same way
/// by both readers (this module's and [`canonical`]'s).
struct FlowParts {
    websocket: Option<WebSocketData>,
    response: Option<Response>,
    request: Request,
    timestamp_created: Option<f64>,
    comment: String,
    metadata: MetaDict,
    marked: String,
    is_replay: Option<String>,
    server: Arc<Server>,
    client: Arc<Client>,
    error: Option<FlowError>,
    id: String,
}

impl FlowParts {
    fn into_flow(self) -> HttpFlow {
        let mut flow = HttpFlow::with_id(self.id, self.client, self.server, self.request);
        flow.websocket = self.websocket;
        flow.response = self.response;
        flow.error = self.error;
        flow.metadata = self.metadata;
        flow.marked = self.marked;
        flow.comment = self.comment;
        flow.is_replay = self.is_replay;
        flow.timestamp_created = self
            .timestamp_created
            .unwrap_or(flow.request.timestamp_start);
        flow.live = false;
        flow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tnetstring;

    fn sample() -> HttpFlow {
        let mut client = Client::new(
            "[::1]:5000".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
        );
        client.tls.tls = true;
        client.tls.sni = Some("example.com".into());
        client.tls.alpn_offers = vec![Bytes::from_static(b"h2"), Bytes::from_static(b"http/1.1")];
        client.tls.alpn = Some(Bytes::new());
        client.tls.cipher = Some("TLS_AES_256_GCM_SHA384".into());
        client.tls.tls_version = Some("TLSv1.3".into());
        client.tls.timestamp_tls_setup = Some(2.5);
        let mut server = Server::new(Some(("example.com".into(), 443)));
        server.peername = Some("127.0.0.1:443".parse().unwrap());
        server.tls.certificate_list = vec![Bytes::from_static(b"\x30\x03\x02\x01\x05")].into();
        let mut req =
            Request::make("POST", "https://example.com/a?b=1", "body", Headers::new()).unwrap();
        req.headers.add("X-Bin", b"\xff\x00".as_slice());
        req.trailers = Some(Headers::from_pairs([("t", "1")]));
        let mut f = HttpFlow::new(Arc::new(client), Arc::new(server), req);
        let mut resp = Response::make(
            201,
            "ok",
            Headers::from_pairs([("Content-Type", "text/plain")]),
        );
        resp.timestamp_end = Some(3.25);
        f.response = Some(resp);
        f.error = Some(FlowError::new("boom"));
        f.marked = ":default:".into();
        f.comment = "c".into();
        f.metadata.insert(
            "k",
            MetaValue::List(vec![
                MetaValue::Int(1),
                MetaValue::Str("x".into()),
                MetaValue::Null,
                MetaValue::BigInt("-123456789012345678901234567890".into()),
            ]),
        );
        // Python allows any hashable key; the file keeps it, and the order.
        f.metadata
            .0
            .push((MetaValue::Int(7), MetaValue::Bool(true)));
        f.metadata.insert("a", MetaValue::Null);
        f
    }

    #[test]
    fn a_flow_survives_the_round_trip() {
        let f = sample();
        let enc = bytes::Bytes::from(tnetstring::to_vec(&flow_to_state(&f)));
        let (v, _) = tnetstring::decode(&enc).unwrap();
        let g = flow_from_state(&v).unwrap();
        assert_eq!(g.id, f.id);
        assert_eq!(
            *g.client_conn,
            Client {
                state: g.client_conn.state,
                ..(*f.client_conn).clone()
            }
        );
        assert_eq!(*g.server_conn, *f.server_conn);
        assert_eq!(g.request.url(), f.request.url());
        assert_eq!(g.request.headers.fields(), f.request.headers.fields());
        assert_eq!(
            g.request.trailers.as_ref().unwrap().fields(),
            f.request.trailers.as_ref().unwrap().fields()
        );
        assert_eq!(g.request.content, f.request.content);
        assert_eq!(g.request.timestamp_start, f.request.timestamp_start);
        let (gr, fr) = (g.response.as_ref().unwrap(), f.response.as_ref().unwrap());
        assert_eq!(
            (gr.status_code, &gr.reason, &gr.content),
            (fr.status_code, &fr.reason, &fr.content)
        );
        assert_eq!(gr.timestamp_end, Some(3.25));
        assert_eq!(g.error, f.error);
        assert_eq!(g.metadata, f.metadata);
        assert_eq!((g.marked.as_str(), g.comment.as_str()), (":default:", "c"));
        assert!(!g.live);
        // Written again, the record is byte for byte the same.
        assert_eq!(tnetstring::to_vec(&flow_to_state(&g)), enc.to_vec());
    }

    #[test]
    fn a_bad_scalar_is_named_by_its_field() {
        let mut enc = Vec::new();
        write_flow(&sample(), &mut enc);
        // request.host is the first text "example.com" of the record.
        let at = enc
            .windows(15)
            .position(|w| w == b"11:example.com;")
            .unwrap();
        enc[at + 3] = 0xff;
        let tape = Tape::decode(Bytes::from(enc), usize::MAX).unwrap();
        let e = flow_from_tape(tape.root()).unwrap_err().to_string();
        assert!(
            e.starts_with("request.host: byte ") && e.ends_with("is not valid UTF-8"),
            "{e}"
        );
    }

    proptest::proptest! {
        #[test]
        fn dotted_quad_reads_as_ipaddr_does(s in "[0-9.]{0,17}", o in proptest::prelude::any::<[u8; 4]>()) {
            if let Some(ip) = dotted_quad(s.as_bytes()) {
                proptest::prop_assert_eq!(Ok(IpAddr::V4(ip)), s.parse::<IpAddr>());
            }
            let canonical = std::net::Ipv4Addr::from(o).to_string();
            proptest::prop_assert_eq!(dotted_quad(canonical.as_bytes()), Some(std::net::Ipv4Addr::from(o)));
        }
    }

    #[test]
    fn unset_tls_fields_read_as_one_by_one() {
        // The fast path for a plain connection's TLS fields gives what
        // reading them one by one gives, for the form it takes and any other.
        let mut f = sample();
        f.server_conn = Arc::new(Server {
            tls: TlsFacts::default(),
            ..(*f.server_conn).clone()
        });
        let candidates = [
            Value::Null,
            Value::List(vec![]),
            Value::Bool(false),
            Value::Bool(true),
            Value::str("x"),
            Value::Bytes(Bytes::from_static(b"h2")),
            Value::List(vec![Value::str("a")]),
            Value::Int(0),
        ];
        let mut fast_taken = 0;
        for key in NO_TLS.iter().map(|k| Some(k.0)).chain([None]) {
            for value in &candidates {
                let mut state = flow_to_state(&f);
                if let Some(key) = key {
                    set_field(&mut state, "server_conn", key, value.clone());
                }
                let enc = tnetstring::to_vec(&state);
                let tape = Tape::decode(Bytes::from(enc), usize::MAX).unwrap();
                let root = Fields::root(tape.root()).unwrap();
                let read = |fast: bool| {
                    let s = root.dict("server_conn").unwrap();
                    // Where the reader is when it gets to the TLS fields.
                    assert!(s.field("timestamp_start").is_some());
                    if fast {
                        tls_facts(&s, None)
                    } else {
                        tls_fields(&s, None)
                    }
                };
                let s = root.dict("server_conn").unwrap();
                s.field("timestamp_start");
                fast_taken += usize::from(s.skip_plain(&NO_TLS));
                assert_eq!(
                    format!("{:?}", read(true)),
                    format!("{:?}", read(false)),
                    "{key:?} = {value:?}"
                );
            }
        }
        // Unchanged (8 cases), or a field set to the form it already had (8).
        assert_eq!(fast_taken, 16);
    }

    #[test]
    fn fields_are_found_in_any_order() {
        let mut enc = Vec::new();
        write_flow(&sample(), &mut enc);
        let tape = Tape::decode(Bytes::from(enc), usize::MAX).unwrap();
        let f = Fields::root(tape.root()).unwrap();
        let r = f.dict("request").unwrap();
        // File order, then backwards, then a missing key: each is found (or
        // not) whatever the last lookup was.
        let keys = ["path", "port", "host", "headers", "http_version"];
        for k in keys.iter().chain(keys.iter().rev()) {
            assert!(r.field(k).is_some(), "{k}");
        }
        assert!(r.field("nope").is_none());
        assert_eq!(r.text("host").unwrap(), "example.com");
        assert_eq!(r.port("port", r.get("port").unwrap()).unwrap(), 443);
    }

    proptest::proptest! {
        #[test]
        fn a_mutated_record_never_panics(at in proptest::prelude::any::<usize>(), byte in proptest::prelude::any::<u8>()) {
            let mut enc = Vec::new();
            write_flow(&sample(), &mut enc);
            let i = at % enc.len();
            enc[i] = byte;
            if let Ok(tape) = Tape::decode(Bytes::from(enc), usize::MAX) {
                let _ = flow_from_tape(tape.root());
            }
        }
    }

    #[test]
    fn ipv6_flowinfo_and_scope_id_survive_a_round_trip() {
        let mut f = sample();
        let mut c = (*f.client_conn).clone();
        c.peername = SocketAddr::V6(std::net::SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            5000,
            7,
            3,
        ));
        f.client_conn = Arc::new(c);
        let mut enc = Vec::new();
        write_flow(&f, &mut enc);
        let tape = Tape::decode(Bytes::from(enc.clone()), usize::MAX).unwrap();
        let g = flow_from_tape(tape.root()).unwrap();
        assert_eq!(g.client_conn.peername, f.client_conn.peername);
        let mut again = Vec::new();
        write_flow(&g, &mut again);
        assert_eq!(again, enc);
    }

    /// Sets `state[dict][key]` (both present) to `value`.
    fn set_field(state: &mut Value, dict: &str, key: &str, value: Value) {
        let Value::Dict(d) = state else {
            unreachable!()
        };
        let Some((_, Value::Dict(inner))) = d
            .iter_mut()
            .find(|(k, _)| matches!(k, Value::Str(t) if t.as_str() == dict))
        else {
            panic!("no dict {dict}")
        };
        let Some((_, v)) = inner
            .iter_mut()
            .find(|(k, _)| matches!(k, Value::Str(t) if t.as_str() == key))
        else {
            panic!("no {dict}.{key}")
        };
        *v = value;
    }

    #[test]
    fn errors_name_the_field() {
        let mut state = flow_to_state(&sample());
        set_field(
            &mut state,
            "request",
            "port",
            Value::Bytes(Bytes::from_static(b"80")),
        );
        let e = flow_from_state(&state).unwrap_err();
        assert_eq!(
            e.to_string(),
            "request.port: expected int (a port), found bytes"
        );
        let e = flow_from_state(&Value::Dict(vec![(Value::str("type"), Value::str("tcp"))]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "type: tcp flows are not supported yet (only http flows are)"
        );
    }
}
