//! A second reader for the one record layout that nearly every file holds:
//! an HTTP flow of format 21 exactly as mitmrs and mitmproxy 11 write it
//! (every key, in their order), without WebSocket messages or metadata.
//! It reads the record once, front to back, comparing each key's whole text
//! with the expected one, and builds the flow as it goes: no [`Tape`], no
//! lookups. Anything else, or anything it doubts (an unexpected key or type,
//! an integer beyond 64 bits, an IPv6 address, WebSocket messages), makes it
//! give up with `None`, and the record goes through the general reader, which
//! then gives the same flow or the error message. For a record it does read,
//! the result is the general reader's (property tests below, and the
//! `flowfile` fuzz target compares the two on every record): it checks the
//! structure the tape would (length prefixes by the same functions, bounds,
//! tags, the value budget, nothing after the record) and each value the
//! general reader would read (UTF-8 of text, numbers).
//!
//! Why: the general reader spent ~37k instructions per flow (a third of it
//! building the tape, the rest finding and converting fields) and was the
//! re-save's bottleneck; see bench/NOTES.md, session 11.
//!
//! [`Tape`]: crate::tnetstring::Tape

use std::sync::Arc;

use bytes::Bytes;
use mitmrs_core::connection::{
    CertDer, Client, ConnectionState, Server, TlsFacts, TransportProtocol,
};
use mitmrs_core::flow::{FlowError, MetaDict};
use mitmrs_core::{Headers, HttpFlow, Request, Response};

use super::{der_of_pem, dotted_quad, lossy, FlowParts, FLOW_FORMAT_VERSION};
use crate::tnetstring::{self, key};

/// The HTTP flow in `rec` (one whole record), if it has the layout this
/// module reads; `budget` is the most values the general reader accepts in it.
pub(crate) fn http_flow(rec: &Bytes, budget: usize) -> Option<HttpFlow> {
    let mut r = Reader {
        rec,
        buf: rec,
        pos: 0,
        values: 0,
        budget,
    };
    let end = r.open(rec.len(), b'}')?;
    if end + 1 != rec.len() {
        return None;
    }
    let parts = flow(&mut r, end)?;
    r.close(end)?;
    Some(parts.into_flow())
}

/// A cursor over a record. Each read takes the end of the list or dict it is
/// in (`lim`: where that one's tag byte is), as the tape's parser does.
struct Reader<'b> {
    rec: &'b Bytes,
    buf: &'b [u8],
    pos: usize,
    /// Values read so far, against `budget`.
    values: usize,
    budget: usize,
}

impl Reader<'_> {
    /// The next value: its tag and payload range, with the cursor moved past
    /// it. The checks of the tape's parser, without its messages.
    #[inline]
    fn value(&mut self, lim: usize) -> Option<(u8, usize, usize)> {
        self.count(1)?;
        let rest = self.buf.get(self.pos..lim)?;
        let (len, prefix) = match tnetstring::short_prefix(rest) {
            Some(p) => p,
            None => tnetstring::parse_prefix(rest).ok()??,
        };
        let start = self.pos + prefix;
        let end = start.checked_add(len)?;
        if end >= lim {
            return None;
        }
        let tag = self.buf[end];
        match tag {
            b',' | b';' | b'#' | b'^' | b'!' | b']' | b'}' => {}
            b'~' if len == 0 => {}
            _ => return None,
        }
        self.pos = end + 1;
        Some((tag, start, end))
    }

    #[inline]
    fn count(&mut self, n: usize) -> Option<()> {
        self.values += n;
        (self.values <= self.budget).then_some(())
    }

    /// If `text` (whole values, `values` of them) is next: skips it and
    /// returns true; false if something else is.
    #[inline]
    fn skip(&mut self, lim: usize, text: &[u8], values: usize) -> Option<bool> {
        if !self.buf.get(self.pos..lim)?.starts_with(text) {
            return Some(false);
        }
        self.count(values)?;
        self.pos += text.len();
        Some(true)
    }

    /// `text` (whole values, `values` of them), which must be next.
    #[inline]
    fn literal(&mut self, lim: usize, text: &[u8], values: usize) -> Option<()> {
        self.skip(lim, text, values)?.then_some(())
    }

    /// A key made by [`key!`], which must be next.
    #[inline]
    fn key(&mut self, lim: usize, text: &[u8]) -> Option<()> {
        self.literal(lim, text, 1)
    }

    /// Null next: skips it and returns true.
    #[inline]
    fn null(&mut self, lim: usize) -> Option<bool> {
        self.skip(lim, b"0:~", 1)
    }

    /// A list or dict (`tag`) next: moves into it and returns its end, for
    /// the reads inside and then [`Reader::close`].
    #[inline]
    fn open(&mut self, lim: usize, tag: u8) -> Option<usize> {
        let (t, start, end) = self.value(lim)?;
        (t == tag).then(|| {
            self.pos = start;
            end
        })
    }

    /// The list or dict ending at `end` has been read to its end.
    #[inline]
    fn close(&mut self, end: usize) -> Option<()> {
        (self.pos == end).then(|| self.pos = end + 1)
    }

    #[inline]
    fn scalar(&mut self, lim: usize, tag: u8) -> Option<(usize, usize)> {
        let (t, start, end) = self.value(lim)?;
        (t == tag).then_some((start, end))
    }

    fn bytes(&mut self, lim: usize) -> Option<Bytes> {
        let (start, end) = self.scalar(lim, b',')?;
        Some(self.rec.slice(start..end))
    }

    fn opt_bytes(&mut self, lim: usize) -> Option<Option<Bytes>> {
        if self.null(lim)? {
            return Some(None);
        }
        self.bytes(lim).map(Some)
    }

    /// Text, checked as the general reader checks it.
    fn text(&mut self, lim: usize) -> Option<String> {
        let (start, end) = self.scalar(lim, b';')?;
        let b = &self.buf[start..end];
        Some(match tnetstring::ascii(b) {
            Some(s) => s.to_owned(),
            None => std::str::from_utf8(b).ok()?.to_owned(),
        })
    }

    fn opt_text(&mut self, lim: usize) -> Option<Option<String>> {
        if self.null(lim)? {
            return Some(None);
        }
        self.text(lim).map(Some)
    }

    /// An integer that `i64` holds (a bigger one is left to the general
    /// reader).
    fn int(&mut self, lim: usize) -> Option<i64> {
        let (start, end) = self.scalar(lim, b'#')?;
        tnetstring::ascii(&self.buf[start..end])?.parse().ok()
    }

    fn float(&mut self, lim: usize) -> Option<f64> {
        let (start, end) = self.scalar(lim, b'^')?;
        let b = &self.buf[start..end];
        tnetstring::fast_float(b).or_else(|| tnetstring::ascii(b)?.parse().ok())
    }

    fn opt_float(&mut self, lim: usize) -> Option<Option<f64>> {
        if self.null(lim)? {
            return Some(None);
        }
        self.float(lim).map(Some)
    }

    fn bool(&mut self, lim: usize) -> Option<bool> {
        let (start, end) = self.scalar(lim, b'!')?;
        match &self.buf[start..end] {
            b"true" => Some(true),
            b"false" => Some(false),
            _ => None,
        }
    }

    /// A list, each item read by `item`.
    fn list<T>(
        &mut self,
        lim: usize,
        mut item: impl FnMut(&mut Self, usize) -> Option<T>,
    ) -> Option<Vec<T>> {
        let end = self.open(lim, b']')?;
        let mut items = Vec::new();
        while self.pos < end {
            items.push(item(self, end)?);
        }
        self.close(end)?;
        Some(items)
    }

    /// A list of `[name, value]` pairs of bytes.
    fn headers(&mut self, lim: usize) -> Option<Headers> {
        let fields = self.list(lim, |r, end| {
            let pair = r.open(end, b']')?;
            let field = (r.bytes(pair)?, r.bytes(pair)?);
            r.close(pair)?;
            Some(field)
        })?;
        Some(Headers::from_fields(fields))
    }

    fn opt_headers(&mut self, lim: usize) -> Option<Option<Headers>> {
        if self.null(lim)? {
            return Some(None);
        }
        self.headers(lim).map(Some)
    }

    fn port(&mut self, lim: usize) -> Option<u16> {
        u16::try_from(self.int(lim)?).ok()
    }

    /// `[host, port]`, or null.
    fn address(&mut self, lim: usize) -> Option<Option<(String, u16)>> {
        if self.null(lim)? {
            return Some(None);
        }
        let end = self.open(lim, b']')?;
        let address = (self.text(end)?, self.port(end)?);
        self.close(end)?;
        Some(Some(address))
    }

    /// `[IPv4, port]`, or null. A host that is not an IP address (old
    /// files wrote `["", 0]` for "unknown") reads as unknown, as the general
    /// reader has it; an IPv6 address is left to that reader.
    fn sockaddr(&mut self, lim: usize) -> Option<Option<std::net::SocketAddr>> {
        if self.null(lim)? {
            return Some(None);
        }
        let end = self.open(lim, b']')?;
        let (start, stop) = self.scalar(end, b';')?;
        let port = self.port(end)?;
        self.close(end)?;
        let host = &self.buf[start..stop];
        if let Some(ip) = dotted_quad(host) {
            return Some(Some((ip, port).into()));
        }
        match std::str::from_utf8(host).ok()?.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) => Some(Some((ip, port).into())),
            Ok(std::net::IpAddr::V6(_)) => None,
            Err(_) => Some(None),
        }
    }

    /// A PEM certificate, as its DER.
    fn cert(&mut self, lim: usize) -> Option<CertDer> {
        der_of_pem(&self.bytes(lim)?).ok().map(Bytes::from)
    }

    /// The TLS fields, `sni` to `tls`: those of a connection without TLS
    /// ([`super::NO_TLS`]) compared as one text, others read one by one.
    fn tls(&mut self, lim: usize, timestamp_tls_setup: Option<f64>) -> Option<TlsFacts> {
        const NO_TLS: &[u8] = b"3:sni;0:~11:tls_version;0:~11:cipher_list;0:]6:cipher;0:~\
            11:alpn_offers;0:]4:alpn;0:~16:certificate_list;0:]3:tls;5:false!";
        if self.skip(lim, NO_TLS, 2 * super::NO_TLS.len())? {
            return Some(TlsFacts {
                timestamp_tls_setup,
                ..TlsFacts::default()
            });
        }
        self.key(lim, key!("sni"))?;
        let sni = self.opt_text(lim)?;
        self.key(lim, key!("tls_version"))?;
        let tls_version = self.opt_text(lim)?;
        self.key(lim, key!("cipher_list"))?;
        let cipher_list = self.list(lim, Self::text)?;
        self.key(lim, key!("cipher"))?;
        let cipher = self.opt_text(lim)?;
        self.key(lim, key!("alpn_offers"))?;
        let alpn_offers = self.list(lim, Self::bytes)?;
        self.key(lim, key!("alpn"))?;
        let alpn = self.opt_bytes(lim)?;
        self.key(lim, key!("certificate_list"))?;
        let certs = self.list(lim, Self::cert)?;
        self.key(lim, key!("tls"))?;
        let tls = self.bool(lim)?;
        Some(TlsFacts {
            timestamp_tls_setup,
            sni,
            tls_version,
            cipher_list,
            cipher,
            alpn_offers,
            alpn,
            // An empty `Arc<[_]>` is not allocated.
            certificate_list: if certs.is_empty() {
                Arc::default()
            } else {
                certs.into()
            },
            tls,
        })
    }

    fn transport(&mut self, lim: usize) -> Option<TransportProtocol> {
        let (start, end) = self.scalar(lim, b';')?;
        match &self.buf[start..end] {
            b"tcp" => Some(TransportProtocol::Tcp),
            b"udp" => Some(TransportProtocol::Udp),
            _ => None,
        }
    }
}

fn flow(r: &mut Reader<'_>, e: usize) -> Option<FlowParts> {
    r.key(e, key!("websocket"))?;
    if !r.null(e)? {
        return None;
    }
    r.key(e, key!("response"))?;
    let response = if r.null(e)? {
        None
    } else {
        Some(response(r, e)?)
    };
    r.key(e, key!("request"))?;
    let request = request(r, e)?;
    r.key(e, key!("backup"))?;
    if !r.null(e)? {
        return None;
    }
    r.key(e, key!("timestamp_created"))?;
    let timestamp_created = r.opt_float(e)?;
    r.key(e, key!("comment"))?;
    let comment = r.text(e)?;
    r.key(e, key!("metadata"))?;
    r.literal(e, b"0:}", 1)?;
    r.key(e, key!("marked"))?;
    let marked = r.text(e)?;
    r.key(e, key!("is_replay"))?;
    let is_replay = r.opt_text(e)?;
    r.key(e, key!("intercepted"))?;
    r.bool(e)?;
    r.key(e, key!("server_conn"))?;
    let server = server(r, e)?;
    r.key(e, key!("client_conn"))?;
    let client = client(r, e)?;
    r.key(e, key!("error"))?;
    let error = if r.null(e)? {
        None
    } else {
        let d = r.open(e, b'}')?;
        r.key(d, key!("timestamp"))?;
        let timestamp = r.opt_float(d)?.unwrap_or(0.0);
        r.key(d, key!("msg"))?;
        let msg = r.text(d)?;
        r.close(d)?;
        Some(FlowError { timestamp, msg })
    };
    r.key(e, key!("id"))?;
    let id = r.text(e)?;
    r.key(e, key!("type"))?;
    r.literal(e, b"4:http;", 1)?;
    r.key(e, key!("version"))?;
    if r.int(e)? != FLOW_FORMAT_VERSION {
        return None;
    }
    Some(FlowParts {
        websocket: None,
        response,
        request,
        timestamp_created,
        comment,
        metadata: MetaDict::default(),
        marked,
        is_replay,
        server,
        client,
        error,
        id,
    })
}

fn request(r: &mut Reader<'_>, lim: usize) -> Option<Request> {
    let e = r.open(lim, b'}')?;
    r.key(e, key!("path"))?;
    let path = lossy(Some(r.bytes(e)?));
    r.key(e, key!("authority"))?;
    let authority = lossy(Some(r.bytes(e)?));
    r.key(e, key!("scheme"))?;
    let scheme = lossy(Some(r.bytes(e)?));
    r.key(e, key!("method"))?;
    let method = lossy(Some(r.bytes(e)?));
    r.key(e, key!("port"))?;
    let port = r.port(e)?;
    r.key(e, key!("host"))?;
    let host = r.text(e)?;
    let m = message_tail(r, e)?;
    Some(Request {
        path,
        authority,
        scheme,
        method,
        port,
        host,
        timestamp_end: m.timestamp_end,
        timestamp_start: m.timestamp_start,
        trailers: m.trailers,
        content: m.content,
        headers: m.headers,
        http_version: m.http_version,
        stream: Default::default(),
    })
}

/// The fields requests and responses share, last in both, in file order.
struct MessageTail {
    timestamp_end: Option<f64>,
    timestamp_start: f64,
    trailers: Option<Headers>,
    content: Option<Bytes>,
    headers: Headers,
    http_version: String,
}

/// [`MessageTail`], and the end of the message's dict (`e`).
fn message_tail(r: &mut Reader<'_>, e: usize) -> Option<MessageTail> {
    r.key(e, key!("timestamp_end"))?;
    let timestamp_end = r.opt_float(e)?;
    r.key(e, key!("timestamp_start"))?;
    let timestamp_start = r.float(e)?;
    r.key(e, key!("trailers"))?;
    let trailers = r.opt_headers(e)?;
    r.key(e, key!("content"))?;
    let content = r.opt_bytes(e)?;
    r.key(e, key!("headers"))?;
    let headers = r.headers(e)?;
    r.key(e, key!("http_version"))?;
    let http_version = lossy(Some(r.bytes(e)?));
    r.close(e)?;
    Some(MessageTail {
        timestamp_end,
        timestamp_start,
        trailers,
        content,
        headers,
        http_version,
    })
}

fn response(r: &mut Reader<'_>, lim: usize) -> Option<Response> {
    let e = r.open(lim, b'}')?;
    r.key(e, key!("reason"))?;
    let reason = lossy(Some(r.bytes(e)?));
    r.key(e, key!("status_code"))?;
    let status_code = u16::try_from(r.int(e)?).ok()?;
    let m = message_tail(r, e)?;
    Some(Response {
        reason,
        status_code,
        timestamp_end: m.timestamp_end,
        timestamp_start: m.timestamp_start,
        trailers: m.trailers,
        content: m.content,
        headers: m.headers,
        http_version: m.http_version,
        stream: Default::default(),
    })
}

/// What both connection kinds have after their timestamps, in file order.
struct ConnTail {
    tls: TlsFacts,
    error: Option<String>,
    transport_protocol: TransportProtocol,
    id: String,
    sockname: Option<std::net::SocketAddr>,
    peername: Option<std::net::SocketAddr>,
}

fn conn_tail(r: &mut Reader<'_>, e: usize, timestamp_tls_setup: Option<f64>) -> Option<ConnTail> {
    let tls = r.tls(e, timestamp_tls_setup)?;
    r.key(e, key!("error"))?;
    let error = r.opt_text(e)?;
    r.key(e, key!("transport_protocol"))?;
    let transport_protocol = r.transport(e)?;
    r.key(e, key!("id"))?;
    let id = r.text(e)?;
    r.key(e, key!("sockname"))?;
    let sockname = r.sockaddr(e)?;
    r.key(e, key!("peername"))?;
    let peername = r.sockaddr(e)?;
    r.close(e)?;
    Some(ConnTail {
        tls,
        error,
        transport_protocol,
        id,
        sockname,
        peername,
    })
}

fn server(r: &mut Reader<'_>, lim: usize) -> Option<Arc<Server>> {
    let e = r.open(lim, b'}')?;
    r.key(e, key!("via"))?;
    if !r.null(e)? {
        return None;
    }
    r.key(e, key!("timestamp_tcp_setup"))?;
    let timestamp_tcp_setup = r.opt_float(e)?;
    r.key(e, key!("address"))?;
    let address = r.address(e)?;
    r.key(e, key!("timestamp_tls_setup"))?;
    let timestamp_tls_setup = r.opt_float(e)?;
    r.key(e, key!("timestamp_end"))?;
    let timestamp_end = r.opt_float(e)?;
    r.key(e, key!("timestamp_start"))?;
    let timestamp_start = r.opt_float(e)?;
    let t = conn_tail(r, e, timestamp_tls_setup)?;
    Some(Arc::new(Server {
        id: t.id,
        address,
        peername: t.peername,
        sockname: t.sockname,
        state: ConnectionState::Closed,
        transport_protocol: t.transport_protocol,
        error: t.error,
        tls: t.tls,
        timestamp_start,
        timestamp_tcp_setup,
        timestamp_end,
        via: None,
    }))
}

fn client(r: &mut Reader<'_>, lim: usize) -> Option<Arc<Client>> {
    let e = r.open(lim, b'}')?;
    r.key(e, key!("proxy_mode"))?;
    let proxy_mode = r.text(e)?;
    r.key(e, key!("mitmcert"))?;
    let mitmcert = if r.null(e)? { None } else { Some(r.cert(e)?) };
    r.key(e, key!("timestamp_tls_setup"))?;
    let timestamp_tls_setup = r.opt_float(e)?;
    r.key(e, key!("timestamp_end"))?;
    let timestamp_end = r.opt_float(e)?;
    r.key(e, key!("timestamp_start"))?;
    let timestamp_start = r.opt_float(e)?.unwrap_or(0.0);
    let t = conn_tail(r, e, timestamp_tls_setup)?;
    let unknown = || std::net::SocketAddr::from(([0, 0, 0, 0], 0));
    Some(Arc::new(Client {
        id: t.id,
        peername: t.peername.unwrap_or_else(unknown),
        sockname: t.sockname.unwrap_or_else(unknown),
        state: ConnectionState::Closed,
        transport_protocol: t.transport_protocol,
        error: t.error,
        tls: t.tls,
        mitmcert,
        proxy_mode,
        timestamp_start,
        timestamp_end,
    }))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use bytes::Bytes;
    use mitmrs_core::connection::{Client, Server, TlsFacts};
    use mitmrs_core::flow::{FlowError, MetaValue};
    use mitmrs_core::{Headers, HttpFlow, Request, Response};
    use proptest::prelude::*;

    use super::http_flow;
    use crate::io::{encode_flow, FlowReader};

    /// Both readers give the same flows and errors for `data`.
    fn same_reading(data: &[u8]) -> std::result::Result<(), TestCaseError> {
        let both = FlowReader::new(data, 1 << 24).outcomes(1000);
        let general = FlowReader::new(data, 1 << 24)
            .without_canonical_reader()
            .outcomes(1000);
        prop_assert_eq!(both, general);
        Ok(())
    }

    fn headers() -> impl Strategy<Value = Headers> {
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<u8>(), 0..12),
                proptest::collection::vec(any::<u8>(), 0..40),
            ),
            0..5,
        )
        .prop_map(Headers::from_pairs)
    }

    fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            4 => (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            1 => (any::<[u16; 8]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        ]
    }

    fn time() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => 1.0e9f64..2.0e9,
            1 => any::<f64>(),
            1 => (0u32..100).prop_map(f64::from),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-z]{1,8}", any::<String>()]
    }

    fn bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
    }

    prop_compose! {
        fn tls()(
            tls in any::<bool>(),
            (sni, tls_version, cipher) in (proptest::option::of(text()), proptest::option::of(text()), proptest::option::of(text())),
            cipher_list in proptest::collection::vec(text(), 0..3),
            alpn_offers in proptest::collection::vec(bytes(), 0..3),
            alpn in proptest::option::of(bytes()),
            certs in proptest::collection::vec(bytes(), 0..3),
        ) -> TlsFacts {
            TlsFacts {
                tls,
                sni,
                tls_version,
                cipher,
                cipher_list,
                alpn_offers,
                alpn,
                certificate_list: certs.into(),
                timestamp_tls_setup: None,
            }
        }
    }

    prop_compose! {
        fn request()(
            (method, scheme, authority, path, http_version) in (bytes(), bytes(), bytes(), bytes(), bytes()),
            host in text(),
            port in any::<u16>(),
            headers in headers(),
            trailers in proptest::option::of(headers()),
            content in proptest::option::of(bytes()),
            (timestamp_start, timestamp_end) in (time(), proptest::option::of(time())),
        ) -> Request {
            let s = |b: Bytes| String::from_utf8_lossy(&b).into_owned();
            Request {
                method: s(method),
                scheme: s(scheme),
                authority: s(authority),
                host,
                port,
                path: s(path),
                http_version: s(http_version),
                headers,
                content,
                trailers,
                timestamp_start,
                timestamp_end,
                stream: Default::default(),
            }
        }
    }

    prop_compose! {
        fn response()(
            status_code in any::<u16>(),
            reason in bytes(),
            headers in headers(),
            trailers in proptest::option::of(headers()),
            content in proptest::option::of(bytes()),
            (timestamp_start, timestamp_end) in (time(), proptest::option::of(time())),
        ) -> Response {
            let mut r = Response::make(status_code, Bytes::new(), headers);
            r.reason = String::from_utf8_lossy(&reason).into_owned();
            r.content = content;
            r.trailers = trailers;
            r.timestamp_start = timestamp_start;
            r.timestamp_end = timestamp_end;
            r
        }
    }

    prop_compose! {
        fn client()(
            (peername, sockname) in (addr(), addr()),
            tls in proptest::option::weighted(0.3, tls()),
            mitmcert in proptest::option::weighted(0.2, bytes()),
            error in proptest::option::of(text()),
            mode in prop_oneof![Just("regular".to_string()), text()],
            times in (time(), proptest::option::of(time()), proptest::option::of(time())),
            udp in prop::bool::weighted(0.1),
        ) -> Client {
            let mut c = Client::new(peername, sockname);
            if udp {
                c.transport_protocol = mitmrs_core::connection::TransportProtocol::Udp;
            }
            c.tls = tls.unwrap_or_default();
            c.mitmcert = mitmcert;
            c.error = error;
            c.proxy_mode = mode;
            (c.timestamp_start, c.timestamp_end, c.tls.timestamp_tls_setup) = times;
            c
        }
    }

    prop_compose! {
        fn server()(
            address in proptest::option::of((text(), any::<u16>())),
            (peername, sockname) in (proptest::option::of(addr()), proptest::option::of(addr())),
            tls in proptest::option::weighted(0.3, tls()),
            error in proptest::option::of(text()),
            times in proptest::collection::vec(proptest::option::of(time()), 4),
        ) -> Server {
            let mut s = Server::new(address);
            (s.peername, s.sockname) = (peername, sockname);
            s.tls = tls.unwrap_or_default();
            s.error = error;
            (s.timestamp_start, s.timestamp_tcp_setup, s.timestamp_end, s.tls.timestamp_tls_setup) =
                (times[0], times[1], times[2], times[3]);
            s
        }
    }

    prop_compose! {
        fn flow()(
            // Boxed: unboxed, the strategies' value trees overflow a debug
            // build's test thread stack.
            (client, server, request) in (client().boxed(), server().boxed(), request().boxed()),
            response in proptest::option::of(response().boxed()),
            error in proptest::option::of((time(), text())),
            (marked, comment) in (text(), text()),
            is_replay in proptest::option::of(prop_oneof![Just("request".to_string()), text()]),
            metadata in prop::bool::weighted(0.1),
            created in time(),
        ) -> HttpFlow {
            let mut f = HttpFlow::new(Arc::new(client), Arc::new(server), request);
            f.response = response;
            f.error = error.map(|(timestamp, msg)| FlowError { timestamp, msg });
            (f.marked, f.comment, f.is_replay) = (marked, comment, is_replay);
            if metadata {
                f.metadata.insert("k", MetaValue::Int(1));
            }
            f.timestamp_created = created;
            f
        }
    }

    /// A flow the canonical reader must read itself (not give up on).
    fn canonical(f: &HttpFlow) -> bool {
        let (c, s) = (&f.client_conn, &f.server_conn);
        let v4 = |a: &SocketAddr| a.is_ipv4();
        f.metadata.0.is_empty()
            && v4(&c.peername)
            && v4(&c.sockname)
            && s.peername.as_ref().is_none_or(v4)
            && s.sockname.as_ref().is_none_or(v4)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn reads_flows_as_the_general_reader_does(f in flow()) {
            let mut rec = Vec::new();
            encode_flow(&f, &mut rec);
            if canonical(&f) {
                prop_assert!(http_flow(&Bytes::from(rec.clone()), usize::MAX).is_some());
            }
            same_reading(&rec)?;
        }

        #[test]
        fn reads_damaged_records_as_the_general_reader_does(
            f in flow(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            how in 0..4,
        ) {
            let mut rec = Vec::new();
            encode_flow(&f, &mut rec);
            let i = at.index(rec.len());
            match how {
                0 => rec[i] = byte,
                1 => rec.truncate(i),
                2 => {
                    rec.remove(i);
                }
                _ => rec.insert(i, byte),
            }
            same_reading(&rec)?;
        }
    }

    #[test]
    fn refuses_a_record_past_the_value_budget() {
        let f = HttpFlow::new(
            Arc::new(Client::new(
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            )),
            Arc::new(Server::new(None)),
            Request::make("GET", "http://h/", "", Headers::new()).unwrap(),
        );
        let mut rec = Vec::new();
        encode_flow(&f, &mut rec);
        let rec = Bytes::from(rec);
        assert!(http_flow(&rec, usize::MAX).is_some());
        // The tape counts the same values: fine at its count, refused below.
        let values = crate::tnetstring::Tape::decode(rec.clone(), usize::MAX)
            .unwrap()
            .root()
            .descendants()
            + 1;
        assert!(http_flow(&rec, values).is_some());
        assert!(http_flow(&rec, values - 1).is_none());
    }

    /// The records of a flow file, each whole.
    fn records(data: &[u8]) -> Vec<Bytes> {
        let data = Bytes::copy_from_slice(data);
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let (_, used) =
                crate::tnetstring::Tape::decode_prefix(data.slice(at..), usize::MAX).unwrap();
            out.push(data.slice(at..at + used));
            at += used;
        }
        out
    }

    /// Files mitmproxy 11.0.2 wrote take the canonical path: live flows
    /// (plain and HTTPS, by `mitmdump -w`) all, and its re-save of older
    /// files (`mitmdump -nr OLD -w NEW`) but for the WebSocket flows and the
    /// HTTP/3 one (an IPv6 address) — and read as the general reader reads
    /// them.
    #[test]
    fn reads_what_mitmproxy_11_writes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../mitmrs/tests/data/mitmproxy-flows");
        let read = |name: &str| {
            let data = std::fs::read(dir.join(name)).unwrap();
            same_reading(&data).unwrap();
            let records = records(&data);
            let canonical = records
                .iter()
                .filter(|r| http_flow(r, usize::MAX).is_some())
                .count();
            (canonical, records.len())
        };
        assert_eq!(read("mitmproxy-11-live.mitm"), (5, 5));
        let (canonical, all) = read("mitmproxy-11-resaved.mitm");
        assert_eq!(all, 13);
        // All but the three WebSocket flows and the HTTP/3 one (IPv6).
        assert_eq!(canonical, 9, "{canonical} of {all}");
    }

    /// Every mitmproxy-written test file, and every input of the local fuzz
    /// corpus if there is one (it is not in the repository), reads the same
    /// with and without the canonical reader.
    #[test]
    fn reads_mitmproxy_files_and_the_corpus_as_the_general_reader_does() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let files = |dir: &str| {
            std::fs::read_dir(root.join(dir))
                .into_iter()
                .flatten()
                .map(|e| e.unwrap().path())
                .collect::<Vec<_>>()
        };
        let fixtures = files("../mitmrs/tests/data/mitmproxy-flows");
        assert!(fixtures.len() >= 5, "{fixtures:?}");
        for path in fixtures.iter().chain(&files("fuzz/corpus/flowfile")) {
            same_reading(&std::fs::read(path).unwrap()).unwrap();
        }
    }
}
