//! HTTP/2 towards the client: a connection whose TLS handshake chose `h2` by ALPN
//! is served here with the `h2` crate (framing, HPACK, flow control, stream
//! states; nothing of that is written by hand). Each stream is one flow, run on
//! its own task through the same hooks and body rules as an HTTP/1 exchange
//! (`requestheaders`, [body], `request`, server, `responseheaders`, [body],
//! `response`, or `error`), so a hook that waits pauses only its stream.
//!
//! Requests go to the server over HTTP/1.1, converted as mitmproxy converts them
//! (the authority becomes the Host field, Cookie fields are joined; see
//! [`crate::wire::request_head`]). The connection keeps a pool of idle server
//! connections, one per stream in flight at most, reused across streams. A server
//! that negotiated HTTP/1.1 by ALPN during an eager TLS handshake makes the proxy
//! answer the client with HTTP/1.1 too (mitmproxy mirrors the server's choice);
//! HTTP/2 towards servers is not built yet.
//!
//! Memory per connection is bounded by the flow-control windows the proxy
//! announces ([`STREAM_WINDOW`] per stream, [`CONN_WINDOW`] in all): a request
//! body is acknowledged to the client only once it was buffered (within
//! `body_size_limit`) or written to the server, and a response body is read from
//! the server only as fast as the client's window lets it out.

use std::future::poll_fn;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use mitmrs_core::{
    now, Client, FlowError, Headers, HttpFlow, Request, Response, Server, StreamMode,
};
use mitmrs_http1::{parse_response_head, response_framing, BodyDecoder, BodyEvent, Framing};
use tracing::{debug, info};

use crate::body::{self, BodyError, BodyWriter, Buffered};
use crate::ctx::{ProxyCtx, Runtime};
use crate::http1::exchange::{send_buffered_request, sni_for_host};
use crate::http1::session::{Session, Tunnel};
use crate::io::{Rewind, Stream, READ_CHUNK};
use crate::upstream::{self, ServerConn};
use crate::wire::{self, BodyPlan};

/// The receive window of each stream: how much of a request body the client may
/// send ahead of the proxy.
pub const STREAM_WINDOW: u32 = 256 * 1024;
/// The receive window of the whole connection.
pub const CONN_WINDOW: u32 = 1024 * 1024;
/// Streams a client may have open at once (as nginx's default, about).
pub const MAX_STREAMS: u32 = 100;

/// The `h2` ALPN protocol id.
pub const ALPN_H2: &[u8] = b"h2";

/// What the streams of one connection share.
struct Shared {
    ctx: Arc<ProxyCtx>,
    rt: Arc<Runtime>,
    client: Arc<Client>,
    tunnel: Option<TunnelFacts>,
    /// Idle server connections, kept for the next stream.
    idle: Mutex<Vec<ServerConn>>,
}

/// The facts of the session's tunnel the streams need.
struct TunnelFacts {
    host: String,
    port: u16,
    https: bool,
    reverse: bool,
    sni: Option<String>,
    server_error: Option<String>,
}

impl TunnelFacts {
    fn of(t: &Tunnel) -> Self {
        Self {
            host: t.host.clone(),
            port: t.port,
            https: t.server_tls.unwrap_or(t.tls),
            reverse: t.is_reverse(),
            sni: t.sni.clone(),
            server_error: t.server_error.clone(),
        }
    }
}

/// Serves the session's connection as HTTP/2 until it ends.
pub async fn serve(s: &mut Session) {
    let old = std::mem::replace(
        &mut s.conn,
        crate::io::Conn::new(Stream::empty(), s.rt.cfg.tcp_timeout),
    );
    let (io, rbuf) = old.into_parts();
    let io = Rewind::new(rbuf.freeze(), io);
    let shared = Arc::new(Shared {
        ctx: s.ctx.clone(),
        rt: s.rt.clone(),
        client: s.client.clone(),
        tunnel: s.tunnel.as_ref().map(TunnelFacts::of),
        idle: Mutex::new(s.server.take().into_iter().collect()),
    });
    let max_header = u32::try_from(s.rt.cfg.max_header_size).unwrap_or(u32::MAX);
    let handshake = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(max_header)
        .handshake::<_, Bytes>(io);
    let mut conn = match tokio::time::timeout(s.rt.cfg.tcp_timeout, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            info!(client = %s.client.peername, "HTTP/2 protocol error in client connection: {e}");
            return;
        }
        Err(_) => {
            info!(client = %s.client.peername, "HTTP/2 connection preface not received within tcp_timeout");
            return;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    let idle = s.rt.cfg.tcp_timeout;
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((req, respond))) => {
                    tasks.spawn(stream(shared.clone(), req, respond));
                }
                Some(Err(e)) if e.is_io() => {
                    debug!(client = %s.client.peername, "HTTP/2 client connection: {e}");
                    break;
                }
                Some(Err(e)) => {
                    info!(client = %s.client.peername, "HTTP/2 protocol error in client connection: {e}");
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
            // No stream for tcp_timeout: goodbye (GOAWAY), as an idle HTTP/1 connection is closed.
            _ = tokio::time::sleep(idle), if tasks.is_empty() => {
                debug!(client = %s.client.peername, "HTTP/2 connection idle for tcp_timeout; closing");
                conn.graceful_shutdown();
                let _ = tokio::time::timeout(idle, poll_fn(|cx| conn.poll_closed(cx))).await;
                break;
            }
        }
    }
    drop(conn);
    // Streams still running see the connection gone and end with an error.
    while tasks.join_next().await.is_some() {}
    let idle = std::mem::take(&mut *shared.idle.lock().unwrap_or_else(|e| e.into_inner()));
    for sc in idle {
        upstream::disconnect(&shared.ctx, &shared.client, sc).await;
    }
}

/// The request of one stream as the flow's `Request`.
fn request_of(sh: &Shared, parts: &http::request::Parts) -> Request {
    let mut headers = Headers::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        headers.push(
            Bytes::copy_from_slice(name.as_str().as_bytes()),
            Bytes::copy_from_slice(value.as_bytes()),
        );
    }
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
            if t.https { "https" } else { "http" }.to_string(),
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
        headers,
        content: None,
        trailers: None,
        timestamp_start: now(),
        timestamp_end: None,
        stream: StreamMode::Off,
    };
    if sh.tunnel.as_ref().is_some_and(|t| t.reverse) && !sh.rt.cfg.keep_host_header {
        // As mitmproxy in reverse mode: the host header (for HTTP/2 the
        // authority) names the target.
        req.authority = req.hostport();
    }
    req
}

/// The client side of one stream.
struct Client2 {
    respond: SendResponse<Bytes>,
    /// Set once the response head went out.
    send: Option<SendStream<Bytes>>,
}

/// One stream: one flow.
async fn stream(sh: Arc<Shared>, req: http::Request<RecvStream>, respond: SendResponse<Bytes>) {
    let (parts, mut body) = req.into_parts();
    let request = request_of(&sh, &parts);
    drop(parts);
    let server_info = Arc::new(Server::new(Some((request.host.clone(), request.port))));
    let mut flow = Box::new(HttpFlow::new(sh.client.clone(), server_info, request));
    let mut client = Client2 {
        respond,
        send: None,
    };
    let cfg = &sh.rt.cfg;
    let body_follows = !body.is_end_stream();
    if body_follows
        && stream_at_headers(
            cfg.stream_large_bodies,
            content_length(&flow.request.headers),
        )
    {
        flow.request.stream = StreamMode::On;
    }
    sh.ctx.chain.requestheaders(&mut flow).await;
    if flow.killed() {
        return fail(
            &sh,
            flow,
            &mut client,
            None,
            FlowError::KILLED_MESSAGE.into(),
        )
        .await;
    }
    if flow.response.is_some() {
        flow.request.timestamp_end = Some(now());
        return reply_from_hook(&sh, flow, &mut client).await;
    }

    let mut prefix = Vec::new();
    if !body_follows {
        flow.request.content = Some(Bytes::new());
        flow.request.timestamp_end = Some(now());
    } else if !flow.request.stream.is_streaming() {
        match buffer_request(&mut body, cfg.body_size_limit, cfg.stream_large_bodies).await {
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
            return fail(
                &sh,
                flow,
                &mut client,
                None,
                FlowError::KILLED_MESSAGE.into(),
            )
            .await;
        }
        if flow.response.is_some() {
            return reply_from_hook(&sh, flow, &mut client).await;
        }
    }

    let mut sc = match server_for(&sh, &flow).await {
        Ok(sc) => sc,
        Err(msg) => return fail(&sh, flow, &mut client, Some(502), msg).await,
    };
    flow.server_conn = sc.shared();
    let reused = sc
        .info
        .timestamp_tcp_setup
        .is_some_and(|t| t < flow.request.timestamp_start);

    if streaming {
        let plan = match (&flow.request.stream, content_length(&flow.request.headers)) {
            (StreamMode::Transform(_), _) | (_, None) => BodyPlan::StreamUnknown,
            (_, Some(n)) => BodyPlan::StreamLength(n),
        };
        let mut out = BytesMut::with_capacity(1024);
        let framing = wire::request_head(&flow.request, plan, false, &mut out);
        if let Err(e) = sc.conn.write_all(&out).await {
            let msg = format!("error sending request to server: {e}");
            return server_failed(&sh, flow, &mut client, sc, msg).await;
        }
        let mut mode = std::mem::take(&mut flow.request.stream);
        let res = {
            let mut w =
                BodyWriter::new(&mut sc.conn, framing, &mut mode, cfg.store_streamed_bodies);
            let r = stream_request(&mut body, prefix, &mut w, cfg.body_size_limit).await;
            (r, w.store.take())
        };
        flow.request.stream = mode;
        match res {
            (Ok(trailers), stored) => {
                flow.request.trailers = trailers;
                flow.request.content = stored.map(BytesMut::freeze);
                flow.request.timestamp_end = Some(now());
            }
            (Err(e), _) => {
                sc.reusable = false;
                upstream::disconnect(&sh.ctx, &sh.client, sc).await;
                return request_body_failed(&sh, flow, &mut client, e).await;
            }
        }
        sh.ctx.chain.request(&mut flow).await;
        if flow.killed() {
            upstream::disconnect(&sh.ctx, &sh.client, sc).await;
            return fail(
                &sh,
                flow,
                &mut client,
                None,
                FlowError::KILLED_MESSAGE.into(),
            )
            .await;
        }
    } else if let Err(msg) = send_buffered_request(&mut sc, &flow.request, body_follows).await {
        return server_failed(&sh, flow, &mut client, sc, msg).await;
    }

    let head = match read_response_head(&sh, &mut sc).await {
        Ok(Some(h)) => h,
        Ok(None) if reused && !streaming => {
            // A stale keep-alive connection: once more on a fresh one.
            debug!(client = %sh.client.peername, "server closed a reused connection; reconnecting");
            upstream::disconnect(&sh.ctx, &sh.client, sc).await;
            sc = match connect(&sh, &flow.request).await {
                Ok(sc) => sc,
                Err(msg) => return fail(&sh, flow, &mut client, Some(502), msg).await,
            };
            flow.server_conn = sc.shared();
            if let Err(msg) = send_buffered_request(&mut sc, &flow.request, body_follows).await {
                return server_failed(&sh, flow, &mut client, sc, msg).await;
            }
            match read_response_head(&sh, &mut sc).await {
                Ok(Some(h)) => h,
                Ok(None) => {
                    let msg = "server closed the connection without sending a response".into();
                    return server_failed(&sh, flow, &mut client, sc, msg).await;
                }
                Err(msg) => return server_failed(&sh, flow, &mut client, sc, msg).await,
            }
        }
        Ok(None) => {
            let msg = "server closed the connection without sending a response".into();
            return server_failed(&sh, flow, &mut client, sc, msg).await;
        }
        Err(msg) => return server_failed(&sh, flow, &mut client, sc, msg).await,
    };
    handle_response(&sh, flow, &mut client, sc, head).await
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

/// Buffers a request body from the client, acknowledging each piece as it comes.
async fn buffer_request(
    body: &mut RecvStream,
    limit: Option<u64>,
    stream_threshold: Option<u64>,
) -> Result<Buffered, BodyError> {
    let mut pieces: Vec<Bytes> = Vec::new();
    let mut total: u64 = 0;
    while let Some(piece) = body.data().await {
        let piece = piece.map_err(|e| BodyError::Read(e.to_string()))?;
        let _ = body.flow_control().release_capacity(piece.len());
        total += piece.len() as u64;
        if limit.is_some_and(|l| total > l) {
            return Err(BodyError::TooLarge(limit.unwrap_or(0)));
        }
        pieces.push(piece);
        if stream_threshold.is_some_and(|t| total > t) {
            return Ok(Buffered::Overflow(pieces));
        }
    }
    let trailers = request_trailers(body).await?;
    let content = match pieces.len() {
        0 => Bytes::new(),
        1 => pieces.pop().unwrap_or_default(),
        _ => {
            let mut all = BytesMut::with_capacity(total as usize);
            for p in pieces {
                all.extend_from_slice(&p);
            }
            all.freeze()
        }
    };
    Ok(Buffered::Complete(content, trailers))
}

async fn request_trailers(body: &mut RecvStream) -> Result<Option<Headers>, BodyError> {
    match body.trailers().await {
        Ok(Some(map)) => Ok(Some(headers_of(&map))),
        Ok(None) => Ok(None),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
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

/// Streams a request body to the server: `prefix` first, then each piece as the
/// client sends it, acknowledged to the client only once written (backpressure).
async fn stream_request(
    body: &mut RecvStream,
    prefix: Vec<Bytes>,
    w: &mut BodyWriter<'_>,
    limit: Option<u64>,
) -> Result<Option<Headers>, BodyError> {
    let mut total: u64 = prefix.iter().map(|p| p.len() as u64).sum();
    for p in prefix {
        w.piece(p).await?;
    }
    while let Some(piece) = body.data().await {
        let piece = piece.map_err(|e| BodyError::Read(e.to_string()))?;
        let n = piece.len();
        total += n as u64;
        if limit.is_some_and(|l| total > l) {
            return Err(BodyError::TooLarge(limit.unwrap_or(0)));
        }
        w.piece(piece).await?;
        let _ = body.flow_control().release_capacity(n);
    }
    let trailers = request_trailers(body).await?;
    w.finish(trailers.as_ref()).await?;
    Ok(trailers)
}

/// A server connection for the flow: an idle one to the same place, else a new one.
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

/// Opens a new server connection for `req` (TLS if https, with the tunnel's SNI).
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

async fn handle_response(
    sh: &Shared,
    mut flow: Box<HttpFlow>,
    client: &mut Client2,
    mut sc: ServerConn,
    head: mitmrs_http1::ResponseHead,
) {
    let cfg = &sh.rt.cfg;
    let framing = match response_framing(&flow.request.method, head.status, &head.headers) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("malformed response from server: {e}");
            return server_failed(sh, flow, client, sc, msg).await;
        }
    };
    let server_keep = head.version == mitmrs_http1::Version::Http11
        && !head.headers.has_token("connection", "close")
        && framing != Framing::UntilClose;
    let mut resp = Response {
        http_version: head.version.as_str().into(),
        status_code: head.status,
        reason: head.reason,
        headers: head.headers,
        content: None,
        trailers: None,
        timestamp_start: now(),
        timestamp_end: None,
        stream: StreamMode::Off,
    };
    if stream_at_headers(cfg.stream_large_bodies, body::known_length(framing)) {
        resp.stream = StreamMode::On;
    }
    flow.response = Some(resp);
    sh.ctx.chain.responseheaders(&mut flow).await;
    if flow.killed() {
        upstream::disconnect(&sh.ctx, &sh.client, sc).await;
        return fail(sh, flow, client, None, FlowError::KILLED_MESSAGE.into()).await;
    }
    let mut dec = BodyDecoder::new(framing, READ_CHUNK);
    let mut prefix = Vec::new();
    let Some(resp) = flow.response.as_mut() else {
        upstream::disconnect(&sh.ctx, &sh.client, sc).await;
        return fail(
            sh,
            flow,
            client,
            Some(502),
            "response removed by an addon".into(),
        )
        .await;
    };
    let body_follows = framing != Framing::None;
    if !body_follows {
        resp.content = Some(Bytes::new());
        resp.timestamp_end = Some(now());
    } else if !resp.stream.is_streaming() {
        match body::buffer(
            &mut sc.conn,
            &mut dec,
            cfg.body_size_limit,
            cfg.stream_large_bodies,
        )
        .await
        {
            Ok(Buffered::Complete(b, trailers)) => {
                resp.content = Some(b);
                resp.trailers = trailers;
                resp.timestamp_end = Some(now());
            }
            Ok(Buffered::Overflow(pieces)) => {
                resp.stream = StreamMode::On;
                prefix = pieces;
            }
            Err(e) => {
                flow.response = None;
                let msg = match e {
                    BodyError::TooLarge(l) => {
                        format!("response body larger than body_size_limit ({l} bytes)")
                    }
                    e => format!("error reading response body: {}", error_text(&e)),
                };
                return server_failed(sh, flow, client, sc, msg).await;
            }
        }
    }
    let streaming = body_follows && resp.stream.is_streaming();
    if !streaming {
        finish_server(sh, sc, server_keep).await;
        sh.ctx.chain.response(&mut flow).await;
        flow.live = false;
        if flow.killed() {
            client.respond.send_reset(Reason::CANCEL);
            return;
        }
        send_buffered_response(&flow, client).await;
        return;
    }

    // Streamed: head now, the body as it arrives, then `response`.
    let Some(resp) = flow.response.as_mut() else {
        return;
    };
    let known = match (&resp.stream, body::known_length(framing)) {
        (StreamMode::Transform(_), _) => None,
        (_, n) => n,
    };
    let head = match response_head(resp, known, false) {
        Ok(h) => h,
        Err(msg) => {
            upstream::disconnect(&sh.ctx, &sh.client, sc).await;
            return fail(sh, flow, client, Some(502), msg).await;
        }
    };
    let mut send = match client.respond.send_response(head, false) {
        Ok(s) => s,
        Err(e) => {
            upstream::disconnect(&sh.ctx, &sh.client, sc).await;
            return fail(sh, flow, client, None, format!("client disconnected: {e}")).await;
        }
    };
    let mut mode = std::mem::take(&mut resp.stream);
    let mut store = cfg.store_streamed_bodies.then(BytesMut::new);
    let res = stream_response(
        &mut sc,
        &mut dec,
        prefix,
        &mut send,
        &mut mode,
        store.as_mut(),
        cfg.body_size_limit,
    )
    .await;
    client.send = Some(send);
    if let Some(resp) = flow.response.as_mut() {
        resp.stream = mode;
    }
    match res {
        Ok(trailers) => {
            if let Some(resp) = flow.response.as_mut() {
                resp.trailers = trailers;
                resp.content = store.map(BytesMut::freeze);
                resp.timestamp_end = Some(now());
            }
        }
        Err(e) => {
            sc.reusable = false;
            upstream::disconnect(&sh.ctx, &sh.client, sc).await;
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
    finish_server(sh, sc, server_keep).await;
    sh.ctx.chain.response(&mut flow).await;
    flow.live = false;
}

/// Moves a response body from the server to the client stream, as fast as the
/// client's flow-control window allows. Returns the trailers.
async fn stream_response(
    sc: &mut ServerConn,
    dec: &mut BodyDecoder,
    prefix: Vec<Bytes>,
    send: &mut SendStream<Bytes>,
    mode: &mut StreamMode,
    mut store: Option<&mut BytesMut>,
    limit: Option<u64>,
) -> Result<Option<Headers>, BodyError> {
    let mut total: u64 = prefix.iter().map(|p| p.len() as u64).sum();
    for p in prefix {
        for out in body::transform(mode, p, false).await? {
            if let Some(s) = store.as_deref_mut() {
                s.extend_from_slice(&out);
            }
            send_data(send, out, false).await?;
        }
    }
    let trailers = loop {
        match body::next_event(&mut sc.conn, dec).await? {
            BodyEvent::Data(b) => {
                total += b.len() as u64;
                if limit.is_some_and(|l| total > l) {
                    return Err(BodyError::TooLarge(limit.unwrap_or(0)));
                }
                for out in body::transform(mode, b, false).await? {
                    if let Some(s) = store.as_deref_mut() {
                        s.extend_from_slice(&out);
                    }
                    send_data(send, out, false).await?;
                }
            }
            BodyEvent::End { trailers } => break trailers,
            #[allow(unreachable_patterns)]
            _ => {}
        }
    };
    for out in body::transform(mode, Bytes::new(), true).await? {
        if let Some(s) = store.as_deref_mut() {
            s.extend_from_slice(&out);
        }
        send_data(send, out, false).await?;
    }
    end_stream(send, trailers.as_ref())?;
    Ok(trailers)
}

/// Ends a response stream: with trailers if there are any, else an empty final DATA frame.
fn end_stream(send: &mut SendStream<Bytes>, trailers: Option<&Headers>) -> Result<(), BodyError> {
    let res = match trailers.filter(|t| !t.is_empty()) {
        Some(t) => send.send_trailers(header_map(t, false)),
        None => send.send_data(Bytes::new(), true),
    };
    res.map_err(|e| BodyError::Write(e.to_string()))
}

/// Sends `data` on a stream as the peer's window opens; `end` ends the stream with it.
async fn send_data(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
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
        let cap = match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(gone(e)),
            None => return Err(BodyError::Write("the client closed the stream".into())),
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

/// Fields as an HTTP/2 header block: names lowercased, connection-specific fields
/// (not allowed in HTTP/2) left out, as are fields HTTP/2 cannot carry.
fn header_map(h: &Headers, drop_hop_by_hop: bool) -> http::HeaderMap {
    let mut h = h.clone();
    if drop_hop_by_hop {
        mitmrs_http1::strip_hop_by_hop(&mut h, false);
    }
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
    let mut map = header_map(&resp.headers, true);
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
async fn send_buffered_response(flow: &HttpFlow, client: &mut Client2) {
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
        Some(t) => match send_data(&mut send, content, false).await {
            Ok(()) => send
                .send_trailers(header_map(t, false))
                .map_err(|e| BodyError::Write(e.to_string())),
            Err(e) => Err(e),
        },
        None => send_data(&mut send, content, true).await,
    };
    if let Err(e) = res {
        debug!(client = %flow.client_conn.peername, "client stream gone: {}", error_text(&e));
    }
}

/// Sends the response an addon set, running `responseheaders` and `response`.
async fn reply_from_hook(sh: &Shared, mut flow: Box<HttpFlow>, client: &mut Client2) {
    sh.ctx.chain.responseheaders(&mut flow).await;
    if flow.killed() {
        return fail(sh, flow, client, None, FlowError::KILLED_MESSAGE.into()).await;
    }
    sh.ctx.chain.response(&mut flow).await;
    flow.live = false;
    if flow.killed() {
        client.respond.send_reset(Reason::CANCEL);
        return;
    }
    send_buffered_response(&flow, client).await;
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
                    let _ = send_data(&mut send, content, true).await;
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
