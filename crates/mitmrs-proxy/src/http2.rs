//! HTTP/2: a client connection whose TLS handshake chose `h2` by ALPN is served
//! here with the `h2` crate (framing, HPACK, flow control, stream states; nothing
//! of that is written by hand). Each stream is one flow, run on its own task
//! through the same hooks and body rules as an HTTP/1 exchange (`requestheaders`,
//! [body], `request`, server, `responseheaders`, [body], `response`, or `error`),
//! so a hook that waits pauses only its stream.
//!
//! Towards the server: when the tunnel's server connection negotiated `h2` (the
//! eager TLS handshake offers it when the client did), every stream to that
//! server goes over that one HTTP/2 connection (`h2::client`). Otherwise requests
//! go over HTTP/1.1, converted as mitmproxy converts them (the authority becomes
//! the Host field, Cookie fields are joined; see [`crate::wire::request_head`]),
//! on a pool of idle server connections (at most one per stream in flight).
//!
//! Memory per connection is bounded by the flow-control windows the proxy
//! announces ([`STREAM_WINDOW`] per stream, [`CONN_WINDOW`] in all, both sides):
//! a body piece is acknowledged to its sender only once it was buffered (within
//! `body_size_limit`) or passed on, and it is passed on only as fast as the
//! receiver's window opens.

use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use mitmrs_core::{
    now, Client, FlowError, Headers, HttpFlow, Request, Response, Server, StreamMode,
};
use mitmrs_http1::{parse_response_head, response_framing, BodyDecoder, BodyEvent, Framing};
use tracing::{debug, info};

use crate::body::{self, BodyError, BodyWriter, Buffered};
use crate::config::ProxyConfig;
use crate::ctx::{ProxyCtx, Runtime};
use crate::http1::exchange::{response_from_head, send_buffered_request, sni_for_host};
use crate::http1::session::{Session, Tunnel};
use crate::io::{Conn, Rewind, Stream, READ_CHUNK};
use crate::upstream::{self, ServerConn};
use crate::wire::{self, BodyPlan};

/// The receive window of each stream: how much of a body a peer may send ahead
/// of the proxy.
pub const STREAM_WINDOW: u32 = 64 * 1024;
/// Streams a client may have open at once (as nginx's default, about).
pub const MAX_STREAMS: u32 = 100;
/// The receive window of a whole connection: room for every stream's window, so
/// streams that do not read (a hook waiting, a slow server) cannot use up the
/// window the others need (with a smaller one, four stalled uploads stopped every
/// other stream of the connection).
pub const CONN_WINDOW: u32 = MAX_STREAMS * STREAM_WINDOW;

/// Why a body read from an HTTP/2 peer failed when nothing came for `tcp_timeout`.
const IDLE_READ: &str = "no data for tcp_timeout";
/// Why a body write to an HTTP/2 peer failed when its window stayed shut for `tcp_timeout`.
const IDLE_WRITE: &str = "the peer's flow-control window stayed closed for tcp_timeout";

/// The `h2` ALPN protocol id.
pub const ALPN_H2: &[u8] = b"h2";

/// What the streams of one connection share.
struct Shared {
    ctx: Arc<ProxyCtx>,
    rt: Arc<Runtime>,
    client: Arc<Client>,
    tunnel: Option<Tunnel>,
    /// Idle HTTP/1.1 server connections, kept for the next stream.
    idle: Mutex<Vec<ServerConn>>,
    /// The HTTP/2 connection to the tunnel's server, if it chose h2.
    h2: Option<H2Server>,
}

/// An HTTP/2 connection to a server, shared by the streams.
struct H2Server {
    send: SendRequest<Bytes>,
    info: Arc<Server>,
    host: String,
    port: u16,
}

impl H2Server {
    fn serves(&self, req: &Request) -> bool {
        req.scheme == "https" && req.host == self.host && req.port == self.port
    }
}

/// Takes the stream out of a connection, with the bytes already read in front.
fn take_io(conn: &mut Conn, timeout: std::time::Duration) -> Rewind {
    let old = std::mem::replace(conn, Conn::new(Stream::empty(), timeout));
    let (io, rbuf) = old.into_parts();
    Rewind::new(rbuf.freeze(), io)
}

/// Starts HTTP/2 on a server connection that chose h2: the connection's driver
/// runs on its own task; `sc` stays behind as the record (its stream taken).
async fn start_h2_server(
    rt: &Runtime,
    peer: std::net::SocketAddr,
    sc: &mut ServerConn,
) -> Result<(H2Server, tokio::task::JoinHandle<()>), String> {
    let io = take_io(&mut sc.conn, rt.cfg.tcp_timeout);
    let (host, port) = sc.info.address.clone().unwrap_or_default();
    let max_header = u32::try_from(rt.cfg.max_header_size).unwrap_or(u32::MAX);
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_header_list_size(max_header)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| format!("HTTP/2 handshake with the server failed: {e}"))?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(client = %peer, "HTTP/2 server connection: {e}");
        }
    });
    Ok((
        H2Server {
            send,
            info: sc.shared(),
            host,
            port,
        },
        driver,
    ))
}

/// Serves the session's connection as HTTP/2 until it ends.
pub async fn serve(s: &mut Session) {
    let io = take_io(&mut s.conn, s.rt.cfg.tcp_timeout);
    let mut server = s.server.take();
    let mut h2_server = None;
    let mut h2_record = None;
    let mut driver = None;
    if let Some(mut sc) = server.take_if(|sc| sc.info.tls.alpn.as_deref() == Some(ALPN_H2)) {
        match start_h2_server(&s.rt, s.client.peername, &mut sc).await {
            Ok((h, d)) => {
                h2_server = Some(h);
                driver = Some(d);
            }
            Err(msg) => info!(client = %s.client.peername, "{msg}"),
        }
        h2_record = Some(sc);
    }
    let shared = Arc::new(Shared {
        ctx: s.ctx.clone(),
        rt: s.rt.clone(),
        client: s.client.clone(),
        tunnel: s.tunnel.clone(),
        idle: Mutex::new(server.into_iter().collect()),
        h2: h2_server,
    });
    serve_streams(&s.rt, s.client.peername, &shared, io).await;
    let idle = std::mem::take(&mut *shared.idle.lock().unwrap_or_else(|e| e.into_inner()));
    for sc in idle {
        upstream::disconnect(&shared.ctx, &shared.client, sc).await;
    }
    // The last handle to the server's HTTP/2 connection goes: its driver says
    // goodbye and ends.
    drop(shared);
    if let Some(d) = driver {
        let _ = tokio::time::timeout(s.rt.cfg.tcp_timeout, d).await;
    }
    if let Some(sc) = h2_record {
        upstream::disconnect(&s.ctx, &s.client, sc).await;
    }
}

/// Accepts the client's streams and runs each on its own task until the
/// connection ends; then waits for the streams still running.
async fn serve_streams(rt: &Runtime, peer: std::net::SocketAddr, shared: &Arc<Shared>, io: Rewind) {
    let max_header = u32::try_from(rt.cfg.max_header_size).unwrap_or(u32::MAX);
    let handshake = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(max_header)
        .handshake::<_, Bytes>(io);
    let mut conn = match tokio::time::timeout(rt.cfg.tcp_timeout, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            info!(client = %peer, "HTTP/2 protocol error in client connection: {e}");
            return;
        }
        Err(_) => {
            info!(client = %peer, "HTTP/2 connection preface not received within tcp_timeout");
            return;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    let idle = rt.cfg.tcp_timeout;
    let mut closing = false;
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((req, respond))) => {
                    tasks.spawn(stream(shared.clone(), req, respond));
                }
                Some(Err(e)) if e.is_io() => {
                    debug!(client = %peer, "HTTP/2 client connection: {e}");
                    break;
                }
                Some(Err(e)) => {
                    info!(client = %peer, "HTTP/2 protocol error in client connection: {e}");
                    break;
                }
                None => {
                    // The client said goodbye: streams already open still finish.
                    let _ = poll_fn(|cx| conn.poll_closed(cx)).await;
                    break;
                }
            },
            // Finished streams are reaped as they end, so the set holds what is in flight.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            // No stream for tcp_timeout: goodbye (GOAWAY), as an idle HTTP/1
            // connection is closed. Streams the client opened before it saw the
            // GOAWAY are still accepted and served; `accept` ends when they are done.
            // Quiet for another tcp_timeout after that: the connection is dropped.
            _ = tokio::time::sleep(idle), if tasks.is_empty() => {
                if closing {
                    break;
                }
                debug!(client = %peer, "HTTP/2 connection idle for tcp_timeout; closing");
                conn.graceful_shutdown();
                closing = true;
            }
        }
    }
    drop(conn);
    // Streams still running see the connection gone and end with an error.
    while tasks.join_next().await.is_some() {}
}

fn headers_of(map: &http::HeaderMap) -> Headers {
    let mut h = Headers::with_capacity(map.len());
    for (name, value) in map {
        h.push(
            Bytes::copy_from_slice(name.as_str().as_bytes()),
            Bytes::copy_from_slice(value.as_bytes()),
        );
    }
    h
}

/// The request of one stream as the flow's `Request`.
fn request_of(sh: &Shared, parts: &http::request::Parts) -> Request {
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let (scheme, host, port) = match &sh.tunnel {
        Some(t) => (
            if t.https() { "https" } else { "http" }.to_string(),
            t.host.clone(),
            t.port,
        ),
        None => {
            let scheme = parts.uri.scheme_str().unwrap_or("https").to_string();
            let default = if scheme == "http" { 80 } else { 443 };
            let (h, p) =
                mitmrs_core::message::split_authority(&authority, default).unwrap_or_default();
            (scheme, h, p)
        }
    };
    let mut req = Request {
        method: parts.method.as_str().to_string(),
        scheme,
        authority,
        host,
        port,
        path,
        http_version: "HTTP/2.0".into(),
        headers: headers_of(&parts.headers),
        content: None,
        trailers: None,
        timestamp_start: now(),
        timestamp_end: None,
        stream: StreamMode::Off,
    };
    if sh.tunnel.as_ref().is_some_and(Tunnel::is_reverse) && !sh.rt.cfg.keep_host_header {
        // As mitmproxy in reverse mode: the host header (for HTTP/2 the
        // authority, and a Host field if the client sent one too) names the target.
        req.authority = req.hostport();
        if req.headers.contains("host") {
            let hp = req.authority.clone();
            req.headers.set("host", hp);
        }
    }
    req
}

/// The client side of one stream.
struct Client2 {
    respond: SendResponse<Bytes>,
    /// Set once the response head went out.
    send: Option<SendStream<Bytes>>,
}

/// Where a body's pieces come from.
enum Source<'a> {
    /// An HTTP/1 body on a connection.
    H1 {
        conn: &'a mut Conn,
        dec: &'a mut BodyDecoder,
    },
    /// An HTTP/2 stream. The last piece handed out is released to the sender's
    /// window when the next one is asked for: only once it was passed on.
    H2 {
        body: &'a mut RecvStream,
        unreleased: usize,
        /// `tcp_timeout`: the longest wait for the next piece.
        idle: Duration,
    },
}

impl Source<'_> {
    fn h2(body: &mut RecvStream, idle: Duration) -> Source<'_> {
        Source::H2 {
            body,
            unreleased: 0,
            idle,
        }
    }

    async fn next(&mut self) -> Result<BodyEvent, BodyError> {
        match self {
            Source::H1 { conn, dec } => body::next_event(conn, dec).await,
            Source::H2 {
                body,
                unreleased,
                idle,
            } => {
                if *unreleased > 0 {
                    let _ = body.flow_control().release_capacity(*unreleased);
                    *unreleased = 0;
                }
                let next = tokio::time::timeout(*idle, body.data())
                    .await
                    .map_err(|_| BodyError::Read(IDLE_READ.into()))?;
                match next {
                    Some(Ok(b)) => {
                        *unreleased = b.len();
                        Ok(BodyEvent::Data(b))
                    }
                    Some(Err(e)) => Err(BodyError::Read(e.to_string())),
                    None => {
                        let trailers = tokio::time::timeout(*idle, body.trailers())
                            .await
                            .map_err(|_| BodyError::Read(IDLE_READ.into()))?;
                        let trailers = match trailers {
                            Ok(t) => t.map(|m| headers_of(&m)),
                            Err(e) => return Err(BodyError::Read(e.to_string())),
                        };
                        Ok(BodyEvent::End { trailers })
                    }
                }
            }
        }
    }
}

/// Where a body's pieces go.
enum Sink<'a> {
    /// An HTTP/1 message (framing, transformer and stored copy in the writer).
    H1(BodyWriter<'a>),
    /// An HTTP/2 stream.
    H2 {
        send: &'a mut SendStream<Bytes>,
        mode: &'a mut StreamMode,
        store: Option<BytesMut>,
        idle: Duration,
    },
}

impl<'a> Sink<'a> {
    fn h2(
        send: &'a mut SendStream<Bytes>,
        mode: &'a mut StreamMode,
        store: bool,
        idle: Duration,
    ) -> Self {
        Sink::H2 {
            send,
            mode,
            store: store.then(BytesMut::new),
            idle,
        }
    }

    async fn piece(&mut self, data: Bytes) -> Result<(), BodyError> {
        match self {
            Sink::H1(w) => w.piece(data).await,
            Sink::H2 {
                send,
                mode,
                store,
                idle,
            } => {
                for out in body::transform(mode, data, false).await? {
                    if let Some(s) = store.as_mut() {
                        s.extend_from_slice(&out);
                    }
                    send_data(send, out, false, *idle).await?;
                }
                Ok(())
            }
        }
    }

    async fn finish(&mut self, trailers: Option<&Headers>) -> Result<(), BodyError> {
        match self {
            Sink::H1(w) => w.finish(trailers).await,
            Sink::H2 {
                send,
                mode,
                store,
                idle,
            } => {
                for out in body::transform(mode, Bytes::new(), true).await? {
                    if let Some(s) = store.as_mut() {
                        s.extend_from_slice(&out);
                    }
                    send_data(send, out, false, *idle).await?;
                }
                end_stream(send, trailers)
            }
        }
    }

    fn take_store(&mut self) -> Option<BytesMut> {
        match self {
            Sink::H1(w) => w.store.take(),
            Sink::H2 { store, .. } => store.take(),
        }
    }
}

/// Moves the rest of a body from `src` to `sink`, after `prefix`; returns the
/// trailers. `limit` is `body_size_limit`, counted over the whole body.
async fn pump(
    src: &mut Source<'_>,
    prefix: Vec<Bytes>,
    sink: &mut Sink<'_>,
    limit: Option<u64>,
) -> Result<Option<Headers>, BodyError> {
    let mut total: u64 = prefix.iter().map(|p| p.len() as u64).sum();
    for p in prefix {
        sink.piece(p).await?;
    }
    loop {
        match src.next().await? {
            BodyEvent::Data(b) => {
                total += b.len() as u64;
                if limit.is_some_and(|l| total > l) {
                    return Err(BodyError::TooLarge(limit.unwrap_or(0)));
                }
                sink.piece(b).await?;
            }
            BodyEvent::End { trailers } => {
                sink.finish(trailers.as_ref()).await?;
                return Ok(trailers);
            }
        }
    }
}

/// Buffers a body from an HTTP/2 stream. Past `stream_threshold` it stops and
/// hands back what it read; past `limit` it fails.
async fn buffer_h2(
    body: &mut RecvStream,
    limit: Option<u64>,
    stream_threshold: Option<u64>,
    idle: Duration,
) -> Result<Buffered, BodyError> {
    let mut src = Source::h2(body, idle);
    let mut pieces: Vec<Bytes> = Vec::new();
    let mut total: u64 = 0;
    loop {
        match src.next().await? {
            BodyEvent::Data(b) => {
                total += b.len() as u64;
                if limit.is_some_and(|l| total > l) {
                    return Err(BodyError::TooLarge(limit.unwrap_or(0)));
                }
                pieces.push(b);
                if stream_threshold.is_some_and(|t| total > t) {
                    return Ok(Buffered::Overflow(pieces));
                }
            }
            BodyEvent::End { trailers } => {
                return Ok(Buffered::Complete(body::join(pieces, total), trailers));
            }
        }
    }
}

/// One stream: one flow.
async fn stream(sh: Arc<Shared>, req: http::Request<RecvStream>, respond: SendResponse<Bytes>) {
    let (parts, mut body) = req.into_parts();
    let request = request_of(&sh, &parts);
    drop(parts);
    let server_info = match sh.h2.as_ref().filter(|h| h.serves(&request)) {
        Some(h) => h.info.clone(),
        None => Arc::new(Server::new(Some((request.host.clone(), request.port)))),
    };
    let mut flow = Box::new(HttpFlow::new(sh.client.clone(), server_info, request));
    let mut client = Client2 {
        respond,
        send: None,
    };
    let cfg = &sh.rt.cfg;
    let body_follows = !body.is_end_stream();
    // The length as the client announced it (h2 holds the DATA frames to it); a
    // hook may change the field, but the framing towards the server follows the
    // bytes that actually come.
    let wire_len = content_length(&flow.request.headers);
    if body_follows && stream_at_headers(cfg.stream_large_bodies, wire_len) {
        flow.request.stream = StreamMode::On;
    }
    sh.ctx.chain.requestheaders(&mut flow).await;
    if flow.killed() {
        return fail_killed(&sh, flow, &mut client).await;
    }
    if flow.response.is_some() {
        flow.request.timestamp_end = Some(now());
        return reply_from_hook(&sh, flow, &mut client).await;
    }

    if body_follows && expects_continue(&flow.request.headers) {
        // As for HTTP/1 (and mitmproxy): the proxy answers `100 Continue` itself
        // and the server does not see the field.
        flow.request.headers.remove("expect");
        let mut cont = http::Response::new(());
        *cont.status_mut() = http::StatusCode::CONTINUE;
        let _ = client.respond.send_informational(cont);
    }
    let mut prefix = Vec::new();
    if !body_follows {
        flow.request.content = Some(Bytes::new());
        flow.request.timestamp_end = Some(now());
    } else if !flow.request.stream.is_streaming() {
        match buffer_h2(
            &mut body,
            cfg.body_size_limit,
            cfg.stream_large_bodies,
            cfg.tcp_timeout,
        )
        .await
        {
            Ok(Buffered::Complete(b, trailers)) => {
                flow.request.content = Some(b);
                flow.request.trailers = trailers;
                flow.request.timestamp_end = Some(now());
            }
            Ok(Buffered::Overflow(pieces)) => {
                flow.request.stream = StreamMode::On;
                prefix = pieces;
            }
            Err(e) => return request_body_failed(&sh, flow, &mut client, e).await,
        }
    }
    let streaming = body_follows && flow.request.stream.is_streaming();
    if !streaming {
        sh.ctx.chain.request(&mut flow).await;
        if flow.killed() {
            return fail_killed(&sh, flow, &mut client).await;
        }
        if flow.response.is_some() {
            return reply_from_hook(&sh, flow, &mut client).await;
        }
    }
    let req_body = ReqBody {
        body,
        prefix,
        streaming,
        follows: body_follows,
        len: wire_len,
    };
    match sh.h2.as_ref().filter(|h| h.serves(&flow.request)) {
        Some(h2) => exchange_h2(&sh, h2, flow, &mut client, req_body).await,
        None => exchange_h1(&sh, flow, &mut client, req_body).await,
    }
}

/// A request body not yet sent: the client's stream, the pieces already read
/// (when buffering passed `stream_large_bodies`), and whether it streams.
struct ReqBody {
    body: RecvStream,
    prefix: Vec<Bytes>,
    streaming: bool,
    /// The client sent a body (possibly empty).
    follows: bool,
    /// The body's length as the client announced it.
    len: Option<u64>,
}

/// The request goes to an HTTP/1.1 server connection.
async fn exchange_h1(sh: &Shared, mut flow: Box<HttpFlow>, client: &mut Client2, rb: ReqBody) {
    let cfg = &sh.rt.cfg;
    let ReqBody {
        mut body,
        prefix,
        streaming,
        follows,
        len,
    } = rb;
    let mut sc = match server_for(sh, &flow).await {
        Ok(sc) => sc,
        Err(msg) => return fail(sh, flow, client, Some(502), msg).await,
    };
    flow.server_conn = sc.shared();
    let reused = sc
        .info
        .timestamp_tcp_setup
        .is_some_and(|t| t < flow.request.timestamp_start);

    if streaming {
        let plan = match (&flow.request.stream, len) {
            (StreamMode::Transform(_), _) | (_, None) => BodyPlan::StreamUnknown,
            (_, Some(n)) => BodyPlan::StreamLength(n),
        };
        let mut out = BytesMut::with_capacity(1024);
        let framing = wire::request_head(&flow.request, plan, false, &mut out);
        if let Err(e) = sc.conn.write_all(&out).await {
            let msg = format!("error sending request to server: {e}");
            return server_failed(sh, flow, client, sc, msg).await;
        }
        let mut mode = std::mem::take(&mut flow.request.stream);
        let w = BodyWriter::new(&mut sc.conn, framing, &mut mode, cfg.store_streamed_bodies);
        let res = stream_request_body(&mut flow, &mut body, prefix, Sink::H1(w), cfg).await;
        flow.request.stream = mode;
        if let Err(e) = res {
            sc.reusable = false;
            upstream::disconnect(&sh.ctx, &sh.client, sc).await;
            return request_body_failed(sh, flow, client, e).await;
        }
        sh.ctx.chain.request(&mut flow).await;
        if flow.killed() {
            upstream::disconnect(&sh.ctx, &sh.client, sc).await;
            return fail_killed(sh, flow, client).await;
        }
    } else if let Err(msg) = unless_reset(
        &mut client.respond,
        send_buffered_request(&mut sc, &flow.request, follows),
    )
    .await
    .and_then(|r| r)
    {
        return server_failed(sh, flow, client, sc, msg).await;
    }

    let head = unless_reset(&mut client.respond, read_response_head(sh, &mut sc))
        .await
        .and_then(|r| r);
    let head = match head {
        Ok(Some(h)) => h,
        Ok(None) if reused && !streaming => {
            // A stale keep-alive connection: once more on a fresh one.
            debug!(client = %sh.client.peername, "server closed a reused connection; reconnecting");
            upstream::disconnect(&sh.ctx, &sh.client, sc).await;
            sc = match connect(sh, &flow.request).await {
                Ok(sc) => sc,
                Err(msg) => return fail(sh, flow, client, Some(502), msg).await,
            };
            flow.server_conn = sc.shared();
            if let Err(msg) = send_buffered_request(&mut sc, &flow.request, follows).await {
                return server_failed(sh, flow, client, sc, msg).await;
            }
            let head = unless_reset(&mut client.respond, read_response_head(sh, &mut sc))
                .await
                .and_then(|r| r);
            match head {
                Ok(Some(h)) => h,
                Ok(None) => {
                    let msg = "server closed the connection without sending a response".into();
                    return server_failed(sh, flow, client, sc, msg).await;
                }
                Err(msg) => return server_failed(sh, flow, client, sc, msg).await,
            }
        }
        Ok(None) => {
            let msg = "server closed the connection without sending a response".into();
            return server_failed(sh, flow, client, sc, msg).await;
        }
        Err(msg) => return server_failed(sh, flow, client, sc, msg).await,
    };
    let framing = match response_framing(&flow.request.method, head.status, &head.headers) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("malformed response from server: {e}");
            return server_failed(sh, flow, client, sc, msg).await;
        }
    };
    let (resp, keep) = response_from_head(head, framing);
    let up = Upstream::H1 {
        sc,
        dec: BodyDecoder::new(framing, READ_CHUNK),
        keep,
    };
    handle_response(sh, flow, client, resp, up).await
}

/// Streams the client's request body (after `prefix`) into `sink`, and records
/// the outcome in the flow: trailers, the stored copy if any, the end time.
async fn stream_request_body(
    flow: &mut HttpFlow,
    body: &mut RecvStream,
    prefix: Vec<Bytes>,
    mut sink: Sink<'_>,
    cfg: &ProxyConfig,
) -> Result<(), BodyError> {
    let mut src = Source::h2(body, cfg.tcp_timeout);
    let trailers = pump(&mut src, prefix, &mut sink, cfg.body_size_limit).await?;
    flow.request.trailers = trailers;
    flow.request.content = sink.take_store().map(BytesMut::freeze);
    flow.request.timestamp_end = Some(now());
    Ok(())
}

/// The request as an HTTP/2 request head for the server.
fn h2_request(req: &Request) -> Result<http::Request<()>, String> {
    let authority = if req.authority.is_empty() {
        req.hostport()
    } else {
        req.authority.clone()
    };
    let uri = http::Uri::builder()
        .scheme(req.scheme.as_str())
        .authority(authority.as_str())
        .path_and_query(req.path.as_str())
        .build()
        .map_err(|e| format!("the request cannot be sent over HTTP/2: {e}"))?;
    let method = http::Method::from_bytes(req.method.as_bytes())
        .map_err(|e| format!("the request cannot be sent over HTTP/2: {e}"))?;
    let mut out = http::Request::new(());
    *out.method_mut() = method;
    *out.uri_mut() = uri;
    *out.headers_mut() = header_map(&req.headers);
    if req.headers.has_token("te", "trailers") {
        // The one TE value HTTP/2 allows, and gRPC servers require.
        out.headers_mut()
            .insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
    Ok(out)
}

/// The request goes over the server's HTTP/2 connection.
async fn exchange_h2(
    sh: &Shared,
    h2: &H2Server,
    mut flow: Box<HttpFlow>,
    client: &mut Client2,
    rb: ReqBody,
) {
    let cfg = &sh.rt.cfg;
    let ReqBody {
        mut body,
        prefix,
        streaming,
        ..
    } = rb;
    flow.server_conn = h2.info.clone();
    let head = match h2_request(&flow.request) {
        Ok(h) => h,
        Err(msg) => return fail(sh, flow, client, Some(502), msg).await,
    };
    let content = flow.request.content.clone().unwrap_or_default();
    let trailers = flow.request.trailers.clone().filter(|t| !t.is_empty());
    let end = !streaming && content.is_empty() && trailers.is_none();
    let mut send = h2.send.clone();
    let sent = match unless_reset(&mut client.respond, poll_fn(|cx| send.poll_ready(cx))).await {
        Ok(Ok(())) => send.send_request(head, end),
        Ok(Err(e)) => Err(e),
        Err(msg) => return fail(sh, flow, client, None, msg).await,
    };
    let (response, mut up) = match sent {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("server connection failed: {e}");
            return fail(sh, flow, client, Some(502), msg).await;
        }
    };
    if streaming {
        let mut mode = std::mem::take(&mut flow.request.stream);
        let sink = Sink::h2(
            &mut up,
            &mut mode,
            cfg.store_streamed_bodies,
            cfg.tcp_timeout,
        );
        let res = stream_request_body(&mut flow, &mut body, prefix, sink, cfg).await;
        flow.request.stream = mode;
        if let Err(e) = res {
            up.send_reset(Reason::CANCEL);
            return request_body_failed(sh, flow, client, e).await;
        }
        sh.ctx.chain.request(&mut flow).await;
        if flow.killed() {
            up.send_reset(Reason::CANCEL);
            return fail_killed(sh, flow, client).await;
        }
    } else if !end {
        let res = match &trailers {
            None => send_data(&mut up, content, true, cfg.tcp_timeout).await,
            Some(t) => match send_data(&mut up, content, false, cfg.tcp_timeout).await {
                Ok(()) => end_stream(&mut up, Some(t)),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = res {
            let msg = format!("error sending request to server: {}", error_text(&e));
            return fail(sh, flow, client, Some(502), msg).await;
        }
    }
    let resp = match unless_reset(&mut client.respond, response).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let msg = format!("server connection failed: {e}");
            return fail(sh, flow, client, Some(502), msg).await;
        }
        Err(msg) => return fail(sh, flow, client, None, msg).await,
    };
    let (parts, rbody) = resp.into_parts();
    let resp = Response::received(
        "HTTP/2.0",
        parts.status.as_u16(),
        String::new(),
        headers_of(&parts.headers),
    );
    handle_response(sh, flow, client, resp, Upstream::H2 { body: rbody }).await
}

/// Where the response body comes from.
enum Upstream {
    H1 {
        sc: ServerConn,
        dec: BodyDecoder,
        /// The connection may carry another request after this response.
        keep: bool,
    },
    H2 {
        body: RecvStream,
    },
}

impl Upstream {
    fn body_follows(&self) -> bool {
        match self {
            Upstream::H1 { dec, .. } => dec.framing() != Framing::None,
            Upstream::H2 { body } => !body.is_end_stream(),
        }
    }

    /// The body's length, if the server announced it.
    fn known_length(&self, resp: &Response) -> Option<u64> {
        match self {
            Upstream::H1 { dec, .. } => body::known_length(dec.framing()),
            Upstream::H2 { .. } => content_length(&resp.headers),
        }
    }

    fn source(&mut self, idle: Duration) -> Source<'_> {
        match self {
            Upstream::H1 { sc, dec, .. } => Source::H1 {
                conn: &mut sc.conn,
                dec,
            },
            Upstream::H2 { body } => Source::h2(body, idle),
        }
    }

    async fn buffer(
        &mut self,
        limit: Option<u64>,
        threshold: Option<u64>,
        idle: Duration,
    ) -> Result<Buffered, BodyError> {
        match self {
            Upstream::H1 { sc, dec, .. } => body::buffer(&mut sc.conn, dec, limit, threshold).await,
            Upstream::H2 { body } => buffer_h2(body, limit, threshold, idle).await,
        }
    }

    /// Done with the response: an HTTP/1 connection goes back to the pool if
    /// `ok` and reusable, else it is closed; an unfinished HTTP/2 stream is reset.
    async fn done(self, sh: &Shared, ok: bool) {
        match self {
            Upstream::H1 { sc, keep, .. } => finish_server(sh, sc, keep && ok).await,
            Upstream::H2 { .. } => {}
        }
    }
}

async fn handle_response(
    sh: &Shared,
    mut flow: Box<HttpFlow>,
    client: &mut Client2,
    mut resp: Response,
    mut up: Upstream,
) {
    let cfg = &sh.rt.cfg;
    if stream_at_headers(cfg.stream_large_bodies, up.known_length(&resp)) {
        resp.stream = StreamMode::On;
    }
    flow.response = Some(resp);
    sh.ctx.chain.responseheaders(&mut flow).await;
    if flow.killed() {
        up.done(sh, false).await;
        return fail_killed(sh, flow, client).await;
    }
    let mut prefix = Vec::new();
    let Some(resp) = flow.response.as_mut() else {
        up.done(sh, false).await;
        return fail(
            sh,
            flow,
            client,
            Some(502),
            "response removed by an addon".into(),
        )
        .await;
    };
    let body_follows = up.body_follows();
    if !body_follows {
        resp.content = Some(Bytes::new());
        resp.timestamp_end = Some(now());
    } else if !resp.stream.is_streaming() {
        let buffered = unless_reset(
            &mut client.respond,
            up.buffer(
                cfg.body_size_limit,
                cfg.stream_large_bodies,
                cfg.tcp_timeout,
            ),
        )
        .await;
        match buffered {
            Err(msg) => {
                flow.response = None;
                up.done(sh, false).await;
                return fail(sh, flow, client, None, msg).await;
            }
            Ok(Ok(Buffered::Complete(b, trailers))) => {
                resp.content = Some(b);
                resp.trailers = trailers;
                resp.timestamp_end = Some(now());
            }
            Ok(Ok(Buffered::Overflow(pieces))) => {
                resp.stream = StreamMode::On;
                prefix = pieces;
            }
            Ok(Err(e)) => {
                flow.response = None;
                up.done(sh, false).await;
                let msg = match e {
                    BodyError::TooLarge(l) => {
                        format!("response body larger than body_size_limit ({l} bytes)")
                    }
                    e => format!("error reading response body: {}", error_text(&e)),
                };
                return fail(sh, flow, client, Some(502), msg).await;
            }
        }
    }
    let streaming = body_follows && resp.stream.is_streaming();
    if !streaming {
        up.done(sh, true).await;
        return respond_buffered(sh, flow, client).await;
    }

    // Streamed: head now, the body as it arrives, then `response`.
    let known = match resp.stream {
        StreamMode::Transform(_) => None,
        _ => up.known_length(resp),
    };
    let head = match response_head(resp, known, false) {
        Ok(h) => h,
        Err(msg) => {
            up.done(sh, false).await;
            return fail(sh, flow, client, Some(502), msg).await;
        }
    };
    let mut send = match client.respond.send_response(head, false) {
        Ok(s) => s,
        Err(e) => {
            up.done(sh, false).await;
            return fail(sh, flow, client, None, format!("client disconnected: {e}")).await;
        }
    };
    let mut mode = std::mem::take(&mut resp.stream);
    let (res, stored) = {
        let mut sink = Sink::h2(
            &mut send,
            &mut mode,
            cfg.store_streamed_bodies,
            cfg.tcp_timeout,
        );
        // A reset is seen here when the next piece is written (h2 allows no
        // `poll_reset` on the response once its head went out).
        let r = pump(
            &mut up.source(cfg.tcp_timeout),
            prefix,
            &mut sink,
            cfg.body_size_limit,
        )
        .await;
        (r, sink.take_store())
    };
    client.send = Some(send);
    if let Some(resp) = flow.response.as_mut() {
        resp.stream = mode;
    }
    match res {
        Ok(trailers) => {
            if let Some(resp) = flow.response.as_mut() {
                resp.trailers = trailers;
                resp.content = stored.map(BytesMut::freeze);
                resp.timestamp_end = Some(now());
            }
        }
        Err(e) => {
            up.done(sh, false).await;
            let msg = match &e {
                BodyError::Read(m) => format!("server connection failed mid-response: {m}"),
                BodyError::Write(m) => format!("client disconnected mid-response: {m}"),
                BodyError::TooLarge(l) => {
                    format!("response body larger than body_size_limit ({l} bytes)")
                }
                BodyError::Transform(m) => format!("stream transformer failed: {m}"),
            };
            return fail(sh, flow, client, None, msg).await;
        }
    }
    up.done(sh, true).await;
    sh.ctx.chain.response(&mut flow).await;
    flow.live = false;
}

/// Runs `fut` unless the client resets the stream (or the connection fails)
/// first: then `fut` is dropped and the error says why. mitmproxy likewise ends
/// the flow with an error when its client resets the stream; without this, the
/// flow would go on waiting for the server (a "rapid reset" client could have the
/// proxy open one server connection per reset stream).
async fn unless_reset<F: std::future::Future>(
    respond: &mut SendResponse<Bytes>,
    fut: F,
) -> Result<F::Output, String> {
    tokio::select! {
        out = fut => Ok(out),
        r = poll_fn(|cx| respond.poll_reset(cx)) => Err(match r {
            Ok(reason) => format!("stream reset by client ({reason:?})"),
            Err(e) => format!("client disconnected: {e}"),
        }),
    }
}

fn expects_continue(h: &Headers) -> bool {
    h.get("expect")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

fn stream_at_headers(limit: Option<u64>, len: Option<u64>) -> bool {
    matches!((limit, len), (Some(l), Some(n)) if n > l)
}

/// A message's Content-Length, if it has exactly one valid one.
fn content_length(h: &Headers) -> Option<u64> {
    let mut it = h.get_all_bytes("content-length");
    let v = it.next()?;
    if it.next().is_some() {
        return None;
    }
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// An idle HTTP/1.1 server connection to the flow's server, else a new one.
async fn server_for(sh: &Shared, flow: &HttpFlow) -> Result<ServerConn, String> {
    let req = &flow.request;
    let tls = req.scheme == "https";
    let in_tunnel = sh
        .tunnel
        .as_ref()
        .filter(|t| t.host == req.host && t.port == req.port);
    if let Some(err) = in_tunnel.and_then(|t| t.server_error.as_ref()) {
        return Err(err.clone());
    }
    let found = {
        let mut idle = sh.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.iter()
            .rposition(|sc| sc.reusable && sc.target() == Some((req.host.as_str(), req.port, tls)))
            .map(|i| idle.swap_remove(i))
    };
    match found {
        Some(sc) => Ok(sc),
        None => Box::pin(connect(sh, req)).await,
    }
}

/// Opens a new HTTP/1.1 server connection for `req` (TLS if https, with the
/// tunnel's SNI).
async fn connect(sh: &Shared, req: &Request) -> Result<ServerConn, String> {
    let mut sc = upstream::connect(&sh.ctx, &sh.rt, &sh.client, &req.host, req.port).await?;
    if req.scheme == "https" {
        let sni = match sh
            .tunnel
            .as_ref()
            .filter(|t| t.host == req.host && t.port == req.port)
        {
            Some(t) => t.sni.clone().or_else(|| sni_for_host(&t.host)),
            None => sni_for_host(&req.host),
        };
        let alpn = [b"http/1.1".to_vec()];
        if let Err(msg) =
            upstream::start_tls(&sh.ctx, &sh.rt, &sh.client, &mut sc, sni.as_deref(), &alpn).await
        {
            upstream::disconnect(&sh.ctx, &sh.client, sc).await;
            return Err(msg);
        }
    }
    Ok(sc)
}

/// Reads the server's response head, skipping informational responses (HTTP/2
/// clients get none). `Ok(None)`: the server closed before sending anything.
async fn read_response_head(
    sh: &Shared,
    sc: &mut ServerConn,
) -> Result<Option<mitmrs_http1::ResponseHead>, String> {
    let max = sh.rt.cfg.max_header_size;
    let mut got_any = false;
    loop {
        match parse_response_head(&mut sc.conn.rbuf, max) {
            Ok(Some(h)) if (100..200).contains(&h.status) && h.status != 101 => {
                got_any = true;
                continue;
            }
            Ok(Some(h)) if h.status == 101 => {
                return Err(
                    "the server switched protocols (101), which an HTTP/2 client cannot follow"
                        .into(),
                )
            }
            Ok(Some(h)) => return Ok(Some(h)),
            Ok(None) => {}
            Err(e) => return Err(format!("malformed response from server: {e}")),
        }
        match sc.conn.fill().await {
            Ok(0) if !got_any && sc.conn.rbuf.is_empty() => return Ok(None),
            Ok(0) => {
                return Err(
                    "server closed the connection in the middle of the response head".into(),
                )
            }
            Ok(_) => {}
            Err(e) => return Err(format!("error reading response from server: {e}")),
        }
    }
}

/// Ends a stream: with trailers if there are any, else an empty final DATA frame.
fn end_stream(send: &mut SendStream<Bytes>, trailers: Option<&Headers>) -> Result<(), BodyError> {
    let res = match trailers.filter(|t| !t.is_empty()) {
        Some(t) => send.send_trailers(header_map(t)),
        None => send.send_data(Bytes::new(), true),
    };
    res.map_err(|e| BodyError::Write(e.to_string()))
}

/// Sends `data` on a stream as the peer's window opens; `end` ends the stream with it.
async fn send_data(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    idle: Duration,
) -> Result<(), BodyError> {
    let gone = |e: h2::Error| BodyError::Write(e.to_string());
    if data.is_empty() {
        if end {
            send.send_data(data, true).map_err(gone)?;
        }
        return Ok(());
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let cap = tokio::time::timeout(idle, poll_fn(|cx| send.poll_capacity(cx)))
            .await
            .map_err(|_| BodyError::Write(IDLE_WRITE.into()))?;
        let cap = match cap {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(gone(e)),
            None => return Err(BodyError::Write("the peer closed the stream".into())),
        };
        if cap == 0 {
            continue;
        }
        let piece = data.split_to(cap.min(data.len()));
        send.send_data(piece, end && data.is_empty())
            .map_err(gone)?;
    }
    Ok(())
}

/// Fields as an HTTP/2 header block (or trailers): names lowercased,
/// connection-specific fields (not allowed in HTTP/2, and refused by the h2 crate)
/// and Host (the authority carries it) left out, as are fields HTTP/2 cannot carry.
fn header_map(h: &Headers) -> http::HeaderMap {
    let mut h = h.clone();
    mitmrs_http1::strip_hop_by_hop(&mut h, false);
    let mut map = http::HeaderMap::with_capacity(h.len());
    for (name, value) in h.fields() {
        let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_maybe_shared(value.clone()),
        ) else {
            debug!(
                "field {:?} left out: not valid in HTTP/2",
                String::from_utf8_lossy(name)
            );
            continue;
        };
        if n == http::header::HOST {
            continue;
        }
        map.append(n, v);
    }
    map
}

/// The response head for the client. `length`: the body's length if it is known
/// and sent unchanged (else no Content-Length: HTTP/2 frames the body itself).
fn response_head(
    resp: &Response,
    length: Option<u64>,
    head_only: bool,
) -> Result<http::Response<()>, String> {
    let status = http::StatusCode::from_u16(resp.status_code)
        .map_err(|_| format!("invalid response status code {}", resp.status_code))?;
    let mut map = header_map(&resp.headers);
    if !head_only {
        map.remove(http::header::CONTENT_LENGTH);
        if let Some(n) = length {
            map.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(n));
        }
    } else if resp.status_code == 204 {
        map.remove(http::header::CONTENT_LENGTH);
    }
    let mut out = http::Response::new(());
    *out.status_mut() = status;
    *out.headers_mut() = map;
    Ok(out)
}

/// Sends a complete (buffered) response.
async fn send_buffered_response(flow: &HttpFlow, client: &mut Client2, idle: Duration) {
    let Some(resp) = flow.response.as_ref() else {
        client.respond.send_reset(Reason::INTERNAL_ERROR);
        return;
    };
    let head_only = wire::bodyless_response(&flow.request.method, resp.status_code);
    let content = resp.content.clone().unwrap_or_default();
    let trailers = resp.trailers.as_ref().filter(|t| !t.is_empty());
    let head = match response_head(resp, Some(content.len() as u64), head_only) {
        Ok(h) => h,
        Err(msg) => {
            info!(client = %flow.client_conn.peername, "{msg}");
            client.respond.send_reset(Reason::INTERNAL_ERROR);
            return;
        }
    };
    let empty = head_only || (content.is_empty() && trailers.is_none());
    let mut send = match client.respond.send_response(head, empty) {
        Ok(s) => s,
        Err(e) => {
            debug!(client = %flow.client_conn.peername, "client stream gone: {e}");
            return;
        }
    };
    if empty {
        return;
    }
    let res = match trailers {
        Some(t) => match send_data(&mut send, content, false, idle).await {
            Ok(()) => end_stream(&mut send, Some(t)),
            Err(e) => Err(e),
        },
        None => send_data(&mut send, content, true, idle).await,
    };
    if let Err(e) = res {
        debug!(client = %flow.client_conn.peername, "client stream gone: {}", error_text(&e));
    }
}

/// Sends the response an addon set, running `responseheaders` and `response`.
async fn reply_from_hook(sh: &Shared, mut flow: Box<HttpFlow>, client: &mut Client2) {
    sh.ctx.chain.responseheaders(&mut flow).await;
    if flow.killed() {
        return fail_killed(sh, flow, client).await;
    }
    respond_buffered(sh, flow, client).await
}

/// Runs `response` for a complete response, then sends it (or resets the
/// stream if an addon killed the flow).
async fn respond_buffered(sh: &Shared, mut flow: Box<HttpFlow>, client: &mut Client2) {
    sh.ctx.chain.response(&mut flow).await;
    flow.live = false;
    if flow.killed() {
        client.respond.send_reset(Reason::CANCEL);
        return;
    }
    send_buffered_response(&flow, client, sh.rt.cfg.tcp_timeout).await;
}

/// Keeps the server connection for later streams, or closes it.
async fn finish_server(sh: &Shared, mut sc: ServerConn, keep: bool) {
    sc.reusable = sc.reusable && keep;
    if sc.reusable {
        sc.conn.release_idle();
        let mut idle = sh.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_STREAMS as usize {
            idle.push(sc);
            return;
        }
    }
    upstream::disconnect(&sh.ctx, &sh.client, sc).await;
}

async fn request_body_failed(sh: &Shared, flow: Box<HttpFlow>, client: &mut Client2, e: BodyError) {
    let (status, msg) = match e {
        BodyError::TooLarge(l) => (
            413,
            format!("request body larger than body_size_limit ({l} bytes)"),
        ),
        BodyError::Read(m) => (400, format!("error reading request body from client: {m}")),
        BodyError::Write(m) => (502, format!("error sending request body to server: {m}")),
        BodyError::Transform(m) => (502, format!("stream transformer failed: {m}")),
    };
    fail(sh, flow, client, Some(status), msg).await
}

/// Ends a flow an addon killed (its stream is reset).
async fn fail_killed(sh: &Shared, flow: Box<HttpFlow>, client: &mut Client2) {
    fail(sh, flow, client, None, FlowError::KILLED_MESSAGE.into()).await
}

async fn server_failed(
    sh: &Shared,
    flow: Box<HttpFlow>,
    client: &mut Client2,
    mut sc: ServerConn,
    msg: String,
) {
    sc.reusable = false;
    upstream::disconnect(&sh.ctx, &sh.client, sc).await;
    fail(sh, flow, client, Some(502), msg).await
}

/// Ends a flow with an error: sets `flow.error`, runs `error`, and answers the
/// stream with `status` and `msg` if the response has not started, else resets it.
async fn fail(
    sh: &Shared,
    mut flow: Box<HttpFlow>,
    client: &mut Client2,
    status: Option<u16>,
    msg: String,
) {
    if flow.error.is_none() {
        flow.error = Some(FlowError::new(msg.clone()));
    }
    flow.live = false;
    sh.ctx.chain.error(&mut flow).await;
    if let Some(send) = client.send.as_mut() {
        send.send_reset(Reason::INTERNAL_ERROR);
        return;
    }
    match status {
        Some(status) if !flow.killed() => {
            let page = Response::error_page(status, &msg);
            let content = page.content.clone().unwrap_or_default();
            if let Ok(head) = response_head(&page, Some(content.len() as u64), false) {
                if let Ok(mut send) = client.respond.send_response(head, false) {
                    let _ = send_data(&mut send, content, true, sh.rt.cfg.tcp_timeout).await;
                    return;
                }
            }
            client.respond.send_reset(Reason::INTERNAL_ERROR);
        }
        _ => client.respond.send_reset(Reason::CANCEL),
    }
}

fn error_text(e: &BodyError) -> String {
    match e {
        BodyError::Read(m) | BodyError::Write(m) | BodyError::Transform(m) => m.clone(),
        BodyError::TooLarge(l) => format!("larger than {l} bytes"),
    }
}
